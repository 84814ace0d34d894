/* idle_loop: the cost of one shard loop iteration that finds nothing to do but check its
 * inbox, its ring and its timers, with 2, 8 and 32 shards in the runtime (the others asleep;
 * above 2 they are oversubscribed on this machine's 2 CPUs, unpinned). A fiber on shard 0 calls
 * tpc_sleep(0), which parks it until the next loop iteration: one iteration per call. The cost
 * must not grow with the number of shards.
 * Usage: bench-idle [iterations] */
#include <stdlib.h>
#include <tpc.h>
#include "bench.h"

static long iters;

static int bench_main(void *arg)
{
    unsigned shards = (unsigned)(uintptr_t)arg;
    for (int round = 0; round < 2; round++) {
        tpc_shard_stats a, b;
        tpc_stats(0, &a);
        uint64_t t0 = bench_ns();
        for (long i = 0; i < iters; i++)
            tpc_sleep(0);
        uint64_t t = bench_ns() - t0;
        tpc_stats(0, &b);
        if (round)
            bench_report("idle_loop", (double)t / (double)(b.loops - a.loops), "ns/iteration",
                         "%u shards, %llu loop iterations of shard 0 for %ld tpc_sleep(0)", shards,
                         (unsigned long long)(b.loops - a.loops), iters);
    }
    return 0;
}

int main(int argc, char **argv)
{
    iters = bench_iters(argc, argv, 2000000);
    static const unsigned counts[] = {2, 8, 32};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        tpc_config c = {.shards = counts[i]};
        if (tpc_run(&c, bench_main, (void *)(uintptr_t)counts[i]) != 0)
            return 1;
    }
    return 0;
}
