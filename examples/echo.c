/* A TCP (or Unix stream) echo server: one SO_REUSEPORT listener per shard, a fiber per
 * connection, everything a connection sends comes back. Ctrl-C stops it gracefully.
 *   tpc-echo [--shards N] [--listen ADDR]     ADDR: 127.0.0.1:7000 (default), [::1]:7000
 * Try: tpc-echo & then  printf 'hello\n' | nc -q1 127.0.0.1 7000 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tpc.h>

static int listeners[TPC_MAX_SHARDS];

static int connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = tpc_recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break; /* the peer closed, or an error, or the server stops */
        for (ssize_t done = 0; done < n;) {
            ssize_t w = tpc_send(fd, buf + done, (size_t)(n - done), 0);
            if (w < 0)
                goto out;
            done += w;
        }
    }
out:
    tpc_close(fd);
    return 0;
}

static int acceptor(void *arg)
{
    (void)arg;
    int lfd = listeners[tpc_shard_id()];
    for (;;) {
        int fd = tpc_accept(lfd, NULL);
        if (fd == -ECANCELED)
            return 0;
        if (fd < 0) {
            if (fd == -EMFILE || fd == -ENFILE)
                tpc_sleep(10 * 1000 * 1000); /* out of descriptors: back off, do not spin */
            continue;
        }
        tpc_sock_nodelay(fd, 1);
        tpc_fiber_opts o = {.name = "echo", .detached = true, .stack_size = 64 * 1024};
        if (tpc_spawn_opts(NULL, &o, connection, (void *)(intptr_t)fd) < 0)
            tpc_close(fd);
    }
}

static int start_acceptor(void *arg)
{
    tpc_fiber_opts o = {.name = "acceptor", .detached = true};
    return tpc_spawn_opts(NULL, &o, acceptor, arg);
}

static int serve(void *arg)
{
    const char *where = arg;
    tpc_addr a;
    if (tpc_addr_parse(where, &a) < 0) {
        fprintf(stderr, "tpc-echo: cannot parse address '%s'\n", where);
        return 2;
    }
    int rc = tpc_listen_all(&a, 0, listeners);
    if (rc < 0) {
        fprintf(stderr, "tpc-echo: cannot listen on %s: %s\n", where, tpc_strerror(rc));
        return 1;
    }
    tpc_sock_local(listeners[0], &a);
    char text[128];
    tpc_addr_format(&a, text, sizeof(text));
    printf("tpc-echo: %d shards listening on %s (Ctrl-C stops)\n", tpc_shard_count(), text);
    fflush(stdout);
    if ((rc = tpc_on_all(start_acceptor, NULL)) < 0)
        return 1;
    while (tpc_sleep(1000LL * 1000 * 1000 * 3600) == 0)
        ; /* until SIGINT/SIGTERM cancels us */
    for (int i = 0; i < tpc_shard_count(); i++)
        tpc_close(listeners[i]);
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
        else {
            fprintf(stderr, "usage: %s [--shards N] [--listen ADDR]\n", argv[0]);
            return 2;
        }
    }
    int rc = tpc_run(&c, serve, (void *)where);
    return rc == 128 + 2 || rc == 128 + 15 ? 0 : rc; /* stopped by a signal: a clean exit */
}
