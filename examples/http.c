/* An HTTP/1.1 "plaintext" responder (the TechEmpower shape): every request gets a 13-byte
 * "Hello, World!" with keep-alive. Requests may be pipelined; the answers to all complete
 * requests in one read go back in one send. "Connection: close" and HTTP/1.0 close after the
 * answer; a malformed request gets 400 and the connection closes. tpc_server_start: one
 * SO_REUSEPORT listener per shard, a fiber per connection; SIGINT/SIGTERM stop it, and it prints
 * requests and connections per shard.
 *   tpc-http [--shards N] [--listen ADDR]       ADDR: 127.0.0.1:8080 (default) */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <tpc.h>

#define BUF_SIZE 16384

static const char OK[] = "HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
                         "Content-Length: 13\r\n\r\nHello, World!";
static const char BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n"
                          "\r\n";

enum { REQ_INCOMPLETE = 0, REQ_BAD = -1 };

/* Parses one request at the start of buf[0..len). Returns its length (headers and body), 0 if it
 * is not complete yet, or REQ_BAD. *close is set, for a complete request only, when the
 * connection must close after it. */
static long parse_request(const char *buf, size_t len, bool *close_after)
{
    bool close_flag, *close = &close_flag;
    const char *end = NULL, *lim = buf + len;
    for (const char *p = buf; (p = memchr(p, '\r', (size_t)(lim - p))) && lim - p >= 4; p++)
        if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
            end = p + 4;
            break;
        }
    if (!end)
        return len >= BUF_SIZE ? REQ_BAD : REQ_INCOMPLETE; /* headers larger than the buffer */
    /* Request line: METHOD SP TARGET SP HTTP/1.x CRLF */
    const char *eol = memchr(buf, '\r', (size_t)(end - buf));
    const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || sp1 == buf || !sp2 || sp2 == sp1 + 1 || eol - sp2 != 9 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) || (sp2[8] != '0' && sp2[8] != '1'))
        return REQ_BAD;
    for (const char *c = buf; c < sp1; c++)
        if (*c < 'A' || *c > 'Z')
            return REQ_BAD;
    *close = sp2[8] == '0';
    long body = 0;
    for (const char *h = eol + 2; h < end - 2;) { /* headers */
        const char *hend = memchr(h, '\r', (size_t)(end - h));
        const char *colon = memchr(h, ':', (size_t)(hend - h));
        if (!colon || colon == h)
            return REQ_BAD;
        size_t name = (size_t)(colon - h);
        const char *v = colon + 1;
        while (v < hend && (*v == ' ' || *v == '\t'))
            v++;
        size_t vlen = (size_t)(hend - v);
        if (name == 10 && !strncasecmp(h, "Connection", 10))
            *close = vlen == 5 && !strncasecmp(v, "close", 5);
        else if (name == 14 && !strncasecmp(h, "Content-Length", 14)) {
            if (v == hend)
                return REQ_BAD; /* empty */
            body = 0;
            for (const char *d = v; d < hend; d++) { /* digits only, within the header line */
                if (*d < '0' || *d > '9' || body > BUF_SIZE)
                    return REQ_BAD;
                body = body * 10 + (*d - '0');
            }
            if (body > BUF_SIZE)
                return REQ_BAD;
        } else if (name == 17 && !strncasecmp(h, "Transfer-Encoding", 17))
            return REQ_BAD; /* no chunked bodies here */
        h = hend + 2;
    }
    size_t total = (size_t)(end - buf) + (size_t)body;
    if (total > len)
        return total > BUF_SIZE ? REQ_BAD : REQ_INCOMPLETE;
    *close_after = close_flag;
    return (long)total;
}

static atomic_long served[TPC_MAX_SHARDS];

/* One more request answered on this shard: only the shard writes its counter (others read it),
 * so a plain load and store do, without a locked add per request. */
static inline void count_served(void)
{
    atomic_long *c = &served[tpc_shard_id()];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = tpc_send(fd, p, n, 0);
        if (w < 0)
            return (int)w;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Receive buffers: one pool per shard, shared by its connections (a receive stream each, with
 * provided buffers), so an idle connection holds none. NULL: the kernel has none; plain
 * tpc_recv then. */
static tpc_bufpool *pools[TPC_MAX_SHARDS];

/* Appends received bytes to in[have..BUF_SIZE): from the chunk held in *b (at *off) if any,
 * else from the next one. Returns the count, 0 at end of stream, or a negative errno. */
static ssize_t fill(int fd, tpc_rx *rx, tpc_buf *b, size_t *off, char *in, size_t have)
{
    if (!rx)
        return tpc_recv(fd, in + have, BUF_SIZE - have, 0);
    if (!b->data) {
        ssize_t n = tpc_rx_next(rx, b);
        if (n <= 0)
            return n;
        *off = 0;
    }
    size_t take = b->len - *off < BUF_SIZE - have ? b->len - *off : BUF_SIZE - have;
    memcpy(in + have, b->data + *off, take);
    *off += take;
    if (*off == b->len)
        tpc_buf_release(b); /* the rest waits for room in `in` */
    return (ssize_t)take;
}

/* Appends text[0..n) to out[0..*outlen), sending what out holds first if it would not fit.
 * Returns 0 or a negative errno from the send. */
static int append(int fd, char *out, size_t *outlen, const char *text, size_t n)
{
    if (*outlen + n > BUF_SIZE) {
        int rc = send_all(fd, out, *outlen);
        if (rc < 0)
            return rc;
        *outlen = 0;
    }
    memcpy(out + *outlen, text, n);
    *outlen += n;
    return 0;
}

/* Answers every complete request at the start of buf[0..len): the answers go out in one send
 * where they fit in out[BUF_SIZE] (a lone answer is sent as it is, without a copy). Sets *used
 * to the bytes consumed and *close when the connection must close. Returns 0 or a negative
 * errno from the send. */
static int answer(int fd, char *out, const char *buf, size_t len, size_t *used, bool *close)
{
    size_t outlen = 0;
    long n = 0;
    int rc = 0;
    *used = 0;
    *close = false;
    while (rc == 0 && !*close && (n = parse_request(buf + *used, len - *used, close)) > 0) {
        *used += (size_t)n;
        count_served();
        if (outlen == 0 && (*close || *used == len)) /* the only answer of this read */
            return send_all(fd, OK, sizeof(OK) - 1);
        rc = append(fd, out, &outlen, OK, sizeof(OK) - 1);
    }
    if (rc == 0 && n == REQ_BAD) {
        rc = append(fd, out, &outlen, BAD, sizeof(BAD) - 1);
        *close = true;
    }
    return rc < 0 ? rc : outlen ? send_all(fd, out, outlen) : 0;
}

/* Serves one connection (tpc_server_start's fn: the server closes fd afterwards). A received
 * chunk is parsed where the kernel put it; only an incomplete request's bytes are copied, into
 * `in`, to wait for the rest. */
static int connection(int fd, void *arg)
{
    (void)arg;
    int me = tpc_shard_id();
    tpc_sock_nodelay(fd, 1);
    tpc_rx *rx = NULL;
    if (pools[me] && tpc_rx_open(fd, pools[me], &rx) < 0)
        rx = NULL;
    tpc_buf chunk = {0};
    size_t off = 0, have = 0, used;
    bool close = false;
    char *in = malloc(BUF_SIZE), *out = malloc(BUF_SIZE);
    while (in && out) {
        if (rx && have == 0 && !chunk.data) { /* nothing pending: parse the next chunk in place */
            if (tpc_rx_next(rx, &chunk) <= 0)
                break; /* the peer closed, or an error, or the server stops */
            if (answer(fd, out, chunk.data, chunk.len, &used, &close) < 0 || close)
                break;
            off = used; /* the rest (an incomplete request) goes to `in` below */
            if (off == chunk.len) {
                tpc_buf_release(&chunk);
                continue;
            }
        }
        ssize_t n = fill(fd, rx, &chunk, &off, in, have);
        if (n <= 0)
            break;
        have += (size_t)n;
        if (answer(fd, out, in, have, &used, &close) < 0 || close)
            break;
        memmove(in, in + used, have - used);
        have -= used;
    }
    if (chunk.data)
        tpc_buf_release(&chunk);
    tpc_rx_close(rx);
    free(in);
    free(out);
    return 0;
}

static int pool_create(void *arg)
{
    (void)arg;
    int me = tpc_shard_id();
    if (!pools[me] && tpc_bufpool_create(1024, 4096, &pools[me]) < 0)
        pools[me] = NULL; /* no buffer rings in this kernel: plain recv */
    return 0;
}

static int pool_release(void *arg)
{
    (void)arg;
    int me = tpc_shard_id();
    tpc_bufpool_destroy(pools[me]); /* (freed once the last stream and buffer let go of it) */
    pools[me] = NULL;
    return 0;
}

/* Starts the server on every shard. */
static int http_start(const tpc_addr *a, tpc_server **srv)
{
    int rc = tpc_on_all(pool_create, NULL);
    tpc_server_opts o = {.stack_size = 64 * 1024};
    if (rc == 0 && (rc = tpc_server_start(a, &o, connection, NULL, srv)) < 0)
        tpc_on_all(pool_release, NULL);
    return rc;
}

/* Stops accepting; each shard's pool is freed once its last connection has ended. */
static int http_stop(tpc_server *srv)
{
    int rc = tpc_server_stop(srv);
    int rc2 = tpc_on_all(pool_release, NULL);
    return rc < 0 ? rc : rc2;
}

#ifndef TPC_HTTP_NO_MAIN /* tests/test-http.c includes this file for its parts */
static int serve(void *arg)
{
    const char *where = arg;
    tpc_addr a;
    if (tpc_addr_parse(where, &a) < 0) {
        fprintf(stderr, "tpc-http: cannot parse address '%s'\n", where);
        return 2;
    }
    tpc_server *srv;
    int rc = http_start(&a, &srv);
    if (rc < 0) {
        fprintf(stderr, "tpc-http: cannot listen on %s: %s\n", where, tpc_strerror(rc));
        return 1;
    }
    char text[128];
    tpc_server_addr(srv, &a);
    tpc_addr_format(&a, text, sizeof(text));
    printf("tpc-http: %d shards listening on %s\n", tpc_shard_count(), text);
    fflush(stdout);
    while (tpc_sleep(1000LL * 1000 * 1000 * 3600) == 0)
        ; /* until SIGINT/SIGTERM cancels us */
    for (int i = 0; i < tpc_shard_count(); i++) {
        uint64_t conns = 0;
        tpc_server_load(srv, i, NULL, &conns);
        printf("tpc-http: shard %d served %ld requests on %llu connections\n", i,
               atomic_load(&served[i]), (unsigned long long)conns);
    }
    http_stop(srv);
    return 0;
}

int main(int argc, char **argv)
{
    tpc_config c = {0};
    const char *where = "127.0.0.1:8080";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            c.shards = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            where = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--shards N] [--listen ADDR]\n", argv[0]);
            return 2;
        }
    }
    int rc = tpc_run(&c, serve, (void *)where);
    return rc == 128 + 2 || rc == 128 + 15 ? 0 : rc; /* stopped by a signal: a clean exit */
}
#endif
