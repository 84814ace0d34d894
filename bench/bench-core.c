/* Core executor benchmarks on one pinned shard:
 *   yield        two fibers yielding to each other: ns per yield (one fiber-to-fiber hand-off)
 *   spawn_join   spawn a fiber and join it (pooled stacks): ns per pair
 *   chan_pingpong two fibers bouncing a value over two capacity-1 channels: ns per message
 *   maybe_yield  one fiber calling tpc_maybe_yield in a loop: ns per call (it yields once a
 *                time slice; with the stall detector on, a flag the watchdog raises, else the
 *                clock: TPC_STALL_MS=-1 shows the latter)
 * Usage: bench-core [iterations] */
#include <tpc.h>
#include "bench.h"

static long iters;

static int yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++)
        tpc_yield();
    return 0;
}

static int slicer(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++)
        tpc_maybe_yield();
    return 0;
}

static int nothing(void *arg)
{
    return (int)(intptr_t)arg;
}

struct pp {
    tpc_chan ping, pong;
};

static int ponger(void *arg)
{
    struct pp *p = arg;
    void *v;
    while (tpc_chan_recv(&p->ping, &v) == 0)
        tpc_chan_send(&p->pong, v);
    return 0;
}

static int bench_main(void *arg)
{
    (void)arg;
    int cpu = tpc_shard_cpu();
    tpc_fiber *a, *b;

    /* warm-up, then measure */
    for (int round = 0; round < 2; round++) {
        uint64_t t0 = bench_ns();
        tpc_spawn(yielder, NULL, &a);
        tpc_spawn(yielder, NULL, &b);
        tpc_join(a, NULL);
        tpc_join(b, NULL);
        uint64_t t = bench_ns() - t0;
        if (round)
            bench_report("yield", (double)t / (2.0 * iters), "ns/op",
                         "2 fibers, %ld yields each, 1 shard on cpu %d", iters, cpu);
    }

    for (int round = 0; round < 2; round++) {
        uint64_t t0 = bench_ns();
        for (long i = 0; i < iters; i++) {
            tpc_spawn(nothing, NULL, &a);
            tpc_join(a, NULL);
        }
        uint64_t t = bench_ns() - t0;
        if (round)
            bench_report("spawn_join", (double)t / iters, "ns/op",
                         "%ld spawn+join pairs, pooled stacks, 1 shard on cpu %d", iters, cpu);
    }

    for (int round = 0; round < 2; round++) {
        struct pp p;
        tpc_chan_init(&p.ping, 1);
        tpc_chan_init(&p.pong, 1);
        tpc_spawn(ponger, &p, &b);
        void *v;
        uint64_t t0 = bench_ns();
        for (long i = 0; i < iters; i++) {
            tpc_chan_send(&p.ping, (void *)(intptr_t)i);
            tpc_chan_recv(&p.pong, &v);
        }
        uint64_t t = bench_ns() - t0;
        tpc_chan_close(&p.ping);
        tpc_join(b, NULL);
        tpc_chan_destroy(&p.ping);
        tpc_chan_destroy(&p.pong);
        if (round)
            bench_report("chan_pingpong", (double)t / (2.0 * iters), "ns/op",
                         "2 fibers, %ld round trips over capacity-1 channels, 1 shard on cpu %d",
                         iters, cpu);
    }

    for (int round = 0; round < 2; round++) {
        uint64_t t0 = bench_ns();
        tpc_spawn(slicer, NULL, &a);
        tpc_join(a, NULL);
        uint64_t t = bench_ns() - t0;
        const char *stall = getenv("TPC_STALL_MS");
        if (round)
            bench_report("maybe_yield", (double)t / (double)iters, "ns/op",
                         "1 fiber, %ld calls, stall detector %s, 1 shard on cpu %d", iters,
                         stall && atoi(stall) < 0 ? "off (clock)" : "on (flag)", cpu);
    }
    return 0;
}

int main(int argc, char **argv)
{
    iters = bench_iters(argc, argv, 5000000);
    tpc_config c = {.shards = 1};
    if (!getenv("TPC_CPUS"))
        c.cpus = "0";
    int rc = tpc_run(&c, bench_main, NULL);
    return rc == 0 ? 0 : 1;
}
