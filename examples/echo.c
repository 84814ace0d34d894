/* A TCP (or Unix stream) echo server on tpc_server_start: one SO_REUSEPORT listener per shard
 * (a Unix socket: one listener handing connections out), a fiber per connection that sends back
 * everything it receives (plain tpc_recv into its own buffer). Ctrl-C stops it gracefully.
 *   tpc-echo [--shards N] [--listen ADDR]     ADDR: 127.0.0.1:7000 (default), [::1]:7000
 * Try: tpc-echo & then  printf 'hello\n' | nc -q1 127.0.0.1 7000 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tpc.h>
#include "metrics-http.h"

/* Serves one connection (tpc_server_start closes fd after it returns). */
static int connection(int fd, void *arg)
{
    (void)arg;
    tpc_sock_nodelay(fd, 1);
    char buf[16384];
    for (;;) {
        ssize_t n = tpc_recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break; /* the peer closed, or an error, or the server stops */
        for (ssize_t done = 0; done < n;) {
            ssize_t w = tpc_send(fd, buf + done, (size_t)(n - done), 0);
            if (w < 0)
                return 0;
            done += w;
        }
    }
    return 0;
}

static const char *metrics_addr; /* --metrics ADDR, or NULL */

static int serve(void *arg)
{
    const char *where = arg;
    tpc_addr a;
    if (tpc_addr_parse(where, &a) < 0) {
        fprintf(stderr, "tpc-echo: cannot parse address '%s'\n", where);
        return 2;
    }
    tpc_server_opts o = {.stack_size = 64 * 1024};
    tpc_server *srv;
    int rc = tpc_server_start(&a, &o, connection, NULL, &srv);
    if (rc < 0) {
        fprintf(stderr, "tpc-echo: cannot listen on %s: %s\n", where, tpc_strerror(rc));
        return 1;
    }
    tpc_server_addr(srv, &a);
    char text[128];
    tpc_addr_format(&a, text, sizeof(text));
    printf("tpc-echo: %d shards listening on %s (Ctrl-C stops)\n", tpc_shard_count(), text);
    fflush(stdout);
    tpc_server *msrv = NULL; /* --metrics: a /metrics endpoint (metrics-http.c) */
    if (metrics_addr && metrics_start(metrics_addr, &msrv) < 0)
        fprintf(stderr, "tpc-echo: cannot serve metrics on %s\n", metrics_addr);
    while (tpc_sleep(1000LL * 1000 * 1000 * 3600) == 0)
        ; /* until SIGINT/SIGTERM cancels us */
    tpc_server_stop(srv);
    metrics_stop(msrv);
    return 0;
}

int main(int argc, char **argv)
{
    tpc_config c = {0};
    const char *where = "127.0.0.1:7000";
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
