/* The libuv peer of bench/net.sh: epoll-server (../epoll/epoll-server.c) written the way a libuv
 * program would be, to put tpc-http and tpc-echo (examples/) next to a widely used event loop.
 *   uv-server http|echo ADDR        ADDR: 127.0.0.1:8080, [::1]:8080 (port 0: any)
 * http answers exactly as examples/http.c does, with its parser and answers
 * (examples/http-parse.c): keep-alive, the answers to the requests of one read in one write
 * (split only where tpc-http splits them, at 16 KiB), HEAD, bodies, "Connection: close" and
 * HTTP/1.0, error answers then close. echo sends back whatever it reads.
 *
 * One uv loop on one thread; a uv_tcp_t listener (backlog 4096); accepted connections get
 * TCP_NODELAY (uv_tcp_nodelay) and uv_read_start with an alloc callback that hands out the free
 * end of the connection's own input buffer (16 KiB), so reads allocate nothing. libuv reads a
 * ready socket once per wakeup (again only if a read filled the buffer). Replies go out first
 * with uv_try_write, a plain write() now; if the socket takes only part of it, the rest goes with
 * uv_write and the connection stops reading until that write completes. The rest stays in the
 * connection's own buffer (out[] for http, in[] for echo), which nothing touches while reading
 * is stopped, so uv_write needs no copy of it. SIGINT/SIGTERM (uv_signal) close every handle,
 * the loop ends, and it prints the number of requests served (http). */
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "../../netaddr.h"
#include "http-parse.h"

#define BUF_SIZE 16384 /* per direction and connection, as in examples/http.c */

enum mode { MODE_HTTP, MODE_ECHO }; /* ECHO is a termios flag, which uv.h brings in */

struct conn {
    uv_tcp_t tcp; /* tcp.data points back here; the listener's and signals' data are NULL */
    uv_write_t write;
    bool closing;   /* close once the output is gone */
    size_t have;    /* input bytes in in[] */
    size_t used;    /* http: input bytes already parsed */
    size_t out_len; /* http: output bytes in out[] */
    http_conn h;    /* http: the request parser */
    char in[BUF_SIZE];
    char out[BUF_SIZE];
};

static enum mode mode;
static uv_loop_t *loop;
static long served;

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed); /* cancels a pending write */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = h->data;
    *buf = uv_buf_init(c->in + c->have, (unsigned)(BUF_SIZE - c->have));
}

static void on_written(uv_write_t *req, int status);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Sends p[0..len): returns 1 when all of it is gone, 0 when uv_write carries on with the rest
 * (reading is stopped until on_written), -1 when the connection is being closed. */
static int send_out(struct conn *c, char *p, size_t len)
{
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    uv_buf_t b = uv_buf_init(p, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n == (int)len)
        return 1;
    if (n < 0 && n != UV_EAGAIN) {
        conn_close(c);
        return -1;
    }
    if (n > 0)
        b = uv_buf_init(p + n, (unsigned)(len - (size_t)n));
    if (uv_write(&c->write, s, &b, 1, on_written) < 0) {
        conn_close(c);
        return -1;
    }
    uv_read_stop(s);
    return 0;
}

/* Parses in[used..have) and sends the answers: all of them in one write unless they exceed
 * out[]. Returns false if the connection is closing or waits for a write. */
static bool http_serve(struct conn *c)
{
    for (;;) {
        if (!c->closing && c->used < c->have) {
            c->used += http_conn_feed(&c->h, c->in + c->used, c->have - c->used, c->out,
                                      &c->out_len, BUF_SIZE);
            served += c->h.answered;
            c->closing = http_conn_closing(&c->h);
        }
        if (c->out_len) {
            if (send_out(c, c->out, c->out_len) <= 0)
                return false; /* closing, or on_written continues where this stopped */
            c->out_len = 0;
        }
        if (c->closing) {
            conn_close(c);
            return false;
        }
        if (c->used == c->have)
            break;
    }
    c->have = c->used = 0; /* the parser keeps what it needs of a request in pieces */
    return true;
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0 || uv_is_closing((uv_handle_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    if (mode == MODE_HTTP) {
        c->out_len = 0;
        if (c->closing) {
            conn_close(c);
            return;
        }
        if (!http_serve(c)) /* requests that were waiting behind the full socket */
            return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = s->data;
    if (nread < 0) { /* UV_EOF, an error, or UV_ENOBUFS (cannot happen: in[] is empty when
                        reading, since http_serve parses all of it) */
        conn_close(c);
        return;
    }
    if (nread == 0)
        return; /* EAGAIN */
    if (mode == MODE_ECHO) {
        send_out(c, c->in, (size_t)nread);
        return;
    }
    c->have += (size_t)nread;
    http_serve(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "uv-server: accept: %s\n", uv_strerror(status));
        return;
    }
    /* Not accepting a connection would stop libuv from accepting any other: give up instead. */
    struct conn *c = malloc(sizeof(*c));
    if (!c || uv_tcp_init(loop, &c->tcp) < 0) {
        fprintf(stderr, "uv-server: out of memory\n");
        exit(1);
    }
    c->closing = false;
    c->have = c->used = c->out_len = 0;
    http_conn_init(&c->h);
    c->tcp.data = c;
    c->write.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->data ? on_closed : NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    uv_walk(sig->loop, close_any, NULL); /* the loop ends once every handle is closed */
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "http") && strcmp(argv[1], "echo"))) {
        fprintf(stderr, "usage: %s http|echo ADDR     (ADDR: 127.0.0.1:8080, [::1]:8080)\n",
                argv[0]);
        return 2;
    }
    mode = argv[1][0] == 'h' ? MODE_HTTP : MODE_ECHO;
    signal(SIGPIPE, SIG_IGN); /* libuv writes with write(), not send(MSG_NOSIGNAL) */
    loop = uv_default_loop();

    static uv_signal_t sigint, sigterm;
    static uv_tcp_t listener;
    struct addrinfo *ai = bench_addr("uv-server", argv[2], true);
    if (!ai)
        return 1;
    int rc = uv_tcp_init(loop, &listener);
    if (!rc)
        rc = uv_tcp_bind(&listener, ai->ai_addr, 0); /* libuv sets SO_REUSEADDR */
    if (!rc)
        rc = uv_listen((uv_stream_t *)&listener, 4096, on_connection);
    freeaddrinfo(ai);
    if (rc) {
        fprintf(stderr, "uv-server: cannot listen on %s: %s\n", argv[2], uv_strerror(rc));
        return 1;
    }
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);

    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char host[128] = "?", port[16] = "?";
    if (uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, (socklen_t)sl, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    printf("uv-server: %s listening on %s%s%s:%s (libuv %s, 1 thread)\n", argv[1],
           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port,
           uv_version_string());
    fflush(stdout);

    uv_run(loop, UV_RUN_DEFAULT);
    if (mode == MODE_HTTP)
        printf("uv-server: served %ld requests\n", served);
    uv_loop_close(loop);
    return 0;
}
