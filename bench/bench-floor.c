/* The machine's cross-core floor (bench/floor.h) on its own.
 * Usage: bench-floor [round trips]   (messages: 20 times as many) */
#include <string.h>
#include "floor.h"

int main(int argc, char **argv)
{
    long n = bench_iters(argc, argv, 1000000);
    double pp, st;
    floor_measure(n, 20 * n, &pp, &st);
    bench_report("floor_pingpong", pp, "ns",
                 "spinning round trip between two bare threads pinned to cpus 0 and 1, mean of %ld",
                 n);
    bench_report("floor_stream", 1e9 / st, "msg/s",
                 "%ld messages through a %u-slot SPSC ring, tail published every %u, cpus 0 -> 1 "
                 "(%.1f ns each)",
                 20 * n, FLOOR_SLOTS, FLOOR_BATCH, st);
    return floor_.sum == 20 * n ? 0 : 1;
}
