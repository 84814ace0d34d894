/* An HTTP/1.1 server: every request gets a 13-byte "Hello, World!" (the TechEmpower
 * "plaintext" shape), with keep-alive and pipelining. What it accepts and answers follows
 * RFC 9112 and is written down in http-parse.h, the parser it shares with the bench peers:
 * GET, HEAD (headers only), POST, PUT, DELETE, OPTIONS and PATCH; HTTP/1.0 with and without
 * keep-alive; "Connection: close"; request bodies with Content-Length or chunked, which are
 * read and discarded (up to 1 MiB); "Expect: 100-continue"; 400, 413, 417, 431, 501 and 505
 * for what it does not take, after which the connection closes. tpc_server_start: one
 * SO_REUSEPORT listener per shard, a fiber per connection; SIGINT/SIGTERM stop it, and it
 * prints requests and connections per shard.
 *   tpc-http [--shards N] [--listen ADDR]       ADDR: 127.0.0.1:8080 (default) */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tpc.h>
#include "metrics-http.h"
#include "http-parse.h"

#define BUF_SIZE  16384 /* answers to send, and received bytes without buffer rings */
#define LINGER_NS (1000LL * 1000 * 1000) /* after an error answer: reading on, at most */
#define PARK_NS   (50LL * 1000 * 1000)   /* idle between requests this long: wait without a fiber */

static atomic_long served[TPC_MAX_SHARDS];

/* n more requests answered on this shard: only the shard writes its counter (others read it),
 * so a plain load and store do, without a locked add per request. */
static inline void count_served(unsigned n)
{
    atomic_long *c = &served[tpc_shard_id()];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
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

/* Parses received bytes in[0..len) and sends the answers: all those of one piece of input in
 * one send, unless they overflow out[] (then in several). Returns 0, or a negative errno from
 * a send. */
static int answer(int fd, http_conn *h, char *out, const char *in, size_t len)
{
    size_t out_len = 0;
    while (len && !http_conn_closing(h)) {
        size_t used = http_conn_feed(h, in, len, out, &out_len, BUF_SIZE);
        count_served(h->answered);
        in += used;
        len -= used;
        if (out_len && (len == 0 || !used || BUF_SIZE - out_len < HTTP_ANSWER_MAX)) {
            int rc = send_all(fd, out, out_len);
            if (rc < 0)
                return rc;
            out_len = 0;
        }
    }
    return out_len ? send_all(fd, out, out_len) : 0;
}

/* Serves one connection (tpc_server_start's fn: the server closes fd afterwards). A received
 * chunk is parsed where the kernel put it; the parser keeps its place between chunks, so
 * nothing is copied but the answers. A connection idle between two requests for PARK_NS gives
 * back its fiber, stack and buffers (TPC_CONN_PARK) and is called again when bytes come: an
 * idle keep-alive connection costs the server's small record, not a stack. */
static int connection(int fd, void *arg)
{
    (void)arg;
    int me = tpc_shard_id();
    tpc_sock_nodelay(fd, 1);
    tpc_rx *rx = NULL;
    if (pools[me] && tpc_rx_open(fd, pools[me], &rx) < 0)
        rx = NULL;
    http_conn h;
    http_conn_init(&h);
    /* The answers' buffer is on the fiber's stack, not the heap: a parked connection gives its
     * stack back, where a freed 16 KiB heap block between the small records that stay would
     * have stayed resident (10,000 idle connections: 0.7 KB of Rss each, 2.5 KB with it in the
     * heap, on the Intel VM). */
    char out[BUF_SIZE];
    char *in = rx ? NULL : malloc(BUF_SIZE);
    bool park = false;
    while ((rx || in) && !http_conn_closing(&h)) {
        tpc_buf chunk;
        bool between = !h.begun; /* no request under way: nothing would be lost by parking */
        if (between)
            tpc_deadline_set(PARK_NS);
        ssize_t n = rx ? tpc_rx_next(rx, &chunk) : tpc_recv(fd, in, BUF_SIZE, 0);
        if (between)
            tpc_deadline_clear();
        if (n == -ETIMEDOUT && between) {
            if (!rx || tpc_rx_close_idle(rx) == 0) {
                rx = NULL;
                park = true;
                break;
            }
            continue; /* a chunk came first */
        }
        if (n <= 0)
            break; /* the peer closed, or an error, or the server stops */
        int rc = answer(fd, &h, out, rx ? chunk.data : in, (size_t)n);
        if (rx)
            tpc_buf_release(&chunk);
        if (rc < 0)
            break;
    }
    tpc_rx_close(rx);
    if (http_conn_failed(&h)) /* an error answer went out: the client may still be sending */
        tpc_sock_linger(fd, LINGER_NS);
    free(in);
    return park ? TPC_CONN_PARK : 0;
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

#ifndef TPC_HTTP_NO_MAIN         /* tests/test-http.c includes this file for its parts */
static const char *metrics_addr; /* --metrics ADDR, or NULL */

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
    tpc_server *msrv = NULL; /* --metrics: a /metrics endpoint (metrics-http.c) */
    if (metrics_addr && metrics_start(metrics_addr, &msrv) < 0)
        fprintf(stderr, "tpc-http: cannot serve metrics on %s\n", metrics_addr);
    while (tpc_sleep(1000LL * 1000 * 1000 * 3600) == 0)
        ; /* until SIGINT/SIGTERM cancels us */
    for (int i = 0; i < tpc_shard_count(); i++) {
        uint64_t conns = 0;
        tpc_server_load(srv, i, NULL, &conns);
        printf("tpc-http: shard %d served %ld requests on %llu connections\n", i,
               atomic_load(&served[i]), (unsigned long long)conns);
    }
    http_stop(srv);
    metrics_stop(msrv);
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
        else if (!strcmp(argv[i], "--metrics") && i + 1 < argc)
            metrics_addr = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--shards N] [--listen ADDR] [--metrics ADDR]\n", argv[0]);
            return 2;
        }
    }
    int rc = tpc_run(&c, serve, (void *)where);
    return rc == 128 + 2 || rc == 128 + 15 ? 0 : rc; /* stopped by a signal: a clean exit */
}
#endif
