/* relay_copy / relay_splice: one direction of a proxied TCP connection moving a bulk transfer,
 * through the relay (tpc_relay: a receive into a provided buffer and a send from it, copied
 * twice) and through splice (tpc_forward: the pages moved through a pipe, on the shard). A
 * source thread writes `total` bytes in writes of `size` bytes to one loopback connection, the
 * shard moves them to another, a sink thread reads them. The shard runs on CPU 0, the source
 * and the sink on CPU 1. Reports the shard's CPU time per MiB moved (its thread's CPU clock)
 * and the wall-clock rate, for each write size.
 * Usage: bench-relay [MiB per run] */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <tpc.h>
#include "bench.h"

struct run {
    int src, in, out, sink; /* src -> in (the shard) -> out (the shard) -> sink */
    size_t size, total;
    bool splice;
    uint64_t cpu_ns, wall_ns, moved;
};

static void pin_cpu1(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *source(void *arg)
{
    struct run *r = arg;
    pin_cpu1();
    char *buf = malloc(r->size);
    memset(buf, 'x', r->size);
    for (size_t done = 0; done < r->total;) {
        size_t n = r->total - done < r->size ? r->total - done : r->size;
        ssize_t w = write(r->src, buf, n);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    shutdown(r->src, SHUT_WR);
    free(buf);
    return NULL;
}

static void *sink(void *arg)
{
    struct run *r = arg;
    pin_cpu1();
    shutdown(r->sink, SHUT_WR); /* nothing comes back: the relay's other direction ends */
    static char buf[256 * 1024];
    ssize_t n;
    while ((n = read(r->sink, buf, sizeof(buf))) > 0)
        r->moved += (uint64_t)n;
    return NULL;
}

static int mover(void *arg)
{
    struct run *r = arg;
    uint64_t c0 = bench_thread_cpu_ns(), t0 = bench_ns();
    if (r->splice) {
        tpc_fwd f;
        tpc_fwd_init(&f, r->in, r->out);
        while (tpc_forward(&f, 64 * 1024) > 0)
            ;
        tpc_fwd_destroy(&f);
        shutdown(r->out, SHUT_WR);
    } else {
        tpc_relay(r->in, r->out, NULL, NULL); /* the other direction stays quiet */
    }
    r->cpu_ns = bench_thread_cpu_ns() - c0;
    r->wall_ns = bench_ns() - t0;
    return 0;
}

static void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&sa, &len))
        exit(1);
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*a, (struct sockaddr *)&sa, sizeof(sa)) || (*b = accept(l, NULL, NULL)) < 0)
        exit(1);
    close(l);
}

static void run_once(struct run *r)
{
    tcp_pair(&r->src, &r->in);
    tcp_pair(&r->out, &r->sink);
    pthread_t ts, tk;
    pthread_create(&ts, NULL, source, r);
    pthread_create(&tk, NULL, sink, r);
    tpc_config c = {.shards = 1, .cpus = "0"};
    if (tpc_run(&c, mover, r) != 0)
        exit(1);
    pthread_join(ts, NULL);
    pthread_join(tk, NULL);
    close(r->src), close(r->in), close(r->out), close(r->sink);
    if (r->moved != r->total) {
        fprintf(stderr, "bench-relay: moved %llu of %zu bytes\n", (unsigned long long)r->moved,
                r->total);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    size_t mib = (size_t)bench_iters(argc, argv, 256);
    static const size_t sizes[] = {1024, 16 * 1024, 256 * 1024};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int sp = 0; sp < 2; sp++) {
            uint64_t best_cpu = UINT64_MAX, wall = 0;
            for (int round = 0; round < 3; round++) { /* the least CPU of three */
                struct run r = {.size = sizes[i], .total = mib << 20, .splice = sp};
                run_once(&r);
                if (r.cpu_ns < best_cpu)
                    best_cpu = r.cpu_ns, wall = r.wall_ns;
            }
            char id[64];
            snprintf(id, sizeof(id), "relay_%s_%zuk", sp ? "splice" : "copy", sizes[i] / 1024);
            bench_report(id, (double)best_cpu / (double)mib, "ns CPU/MiB",
                         "%zu MiB in %zu-byte writes over loopback TCP, the shard on CPU 0, "
                         "source and sink on CPU 1; %.0f MiB/s; least CPU of 3 runs",
                         mib, sizes[i], (double)mib * 1e9 / (double)wall);
        }
    }
    return 0;
}
