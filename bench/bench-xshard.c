/* Cross-shard messaging over the shard-to-shard rings (core/ring.c), two shards pinned to CPUs
 * 0 and 1:
 *   xshard_stream  shard 0 sends N fire-and-forget messages (tpc_submit_to) to shard 1, which
 *                  runs each (a callback counting them): messages/s until shard 1 has run the
 *                  last. The sender suspends whenever the 1024-slot ring is full.
 *   xshard_rtt     tpc_call_on round trip to shard 1 while it is busy (a fiber there keeps
 *                  yielding, so it never sleeps): median and p99. Each call spawns a fiber
 *                  there to run the function.
 *   wakeup         the same round trip to shard 1 idle, asleep in io_uring_enter between calls
 *   xchan_stream   a fiber on shard 0 sends N values through a cross-shard channel (capacity
 *                  512) to a fiber on shard 1: values/s. Tokio's peer is a bounded mpsc(512)
 *                  between two current_thread runtimes (bench/peers/tokio).
 * Usage: bench-xshard [messages [stream|xchan|rtt|wakeup]]  (default: all) */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <tpc.h>
#include "floor.h"

static long nmsg;
static double floor_pingpong, floor_stream; /* measured just before, same process */
static const char *only;

static bool want(const char *what)
{
    return !only || !strcmp(only, what);
}
static _Alignas(64) long received; /* shard 1 only, on a line of its own */
static _Alignas(64) _Atomic int all_received;
static _Atomic int stop_spinning;

static void count(void *arg)
{
    (void)arg;
    if (++received == nmsg)
        atomic_store_explicit(&all_received, 1, memory_order_release);
}

static int noop(void *arg)
{
    return (int)(intptr_t)arg;
}

static int spinner(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop_spinning, memory_order_relaxed))
        tpc_yield();
    return 0;
}

static void start_spinner(void *arg)
{
    (void)arg;
    tpc_spawn(spinner, NULL, NULL);
}

static int xchan_receiver(void *arg)
{
    tpc_xchan *c = arg;
    long n = 0;
    void *v;
    while (tpc_xchan_recv(c, &v) == 0)
        n += (long)(intptr_t)v;
    tpc_xchan_release(c);
    return n == nmsg ? 0 : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void rtt(const char *id, const char *what, long n)
{
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)n);
    for (long i = 0; i < n; i++) {
        uint64_t t0 = bench_ns();
        tpc_call_on(1, noop, NULL, NULL);
        lat[i] = bench_ns() - t0;
        if (!strcmp(id, "wakeup")) { /* let shard 1 fall asleep again */
            uint64_t t1 = bench_ns();
            while (bench_ns() - t1 < 20000)
                ;
        }
    }
    qsort(lat, (size_t)n, sizeof(uint64_t), cmp_u64);
    bench_report(id, (double)lat[n / 2], "ns",
                 "%s, median of %ld round trips; p99 %llu ns; shards on cpus 0 and 1; "
                 "%.2fx the bare spinning ping-pong (floor_pingpong %.0f ns)",
                 what, n, (unsigned long long)lat[n * 99 / 100],
                 (double)lat[n / 2] / floor_pingpong, floor_pingpong);
    free(lat);
}

static int bench_main(void *arg)
{
    (void)arg;
    uint64_t t0, t;
    if (want("stream")) {
        t0 = bench_ns();
        for (long i = 0, n = nmsg; i < n; i++)
            if (tpc_submit_to(1, count, NULL) < 0)
                return 1;
        while (!atomic_load_explicit(&all_received, memory_order_acquire))
            tpc_yield();
        t = bench_ns() - t0;
        bench_report("xshard_stream", (double)nmsg * 1e9 / (double)t, "msg/s",
                     "%ld tpc_submit_to messages shard 0 -> 1 (%.1f ns each), 1024-slot ring; "
                     "%.2fx the bare ring's time (floor_stream %.1f ns)",
                     nmsg, (double)t / (double)nmsg, (double)t / (double)nmsg / floor_stream,
                     floor_stream);
    }

    if (want("xchan")) {
        tpc_xchan *c;
        tpc_fiber *r;
        if (tpc_xchan_create(512, &c) < 0 || tpc_spawn_on(1, NULL, xchan_receiver, c, &r) < 0)
            return 1;
        t0 = bench_ns();
        for (long i = 0, n = nmsg; i < n; i++)
            tpc_xchan_send(c, (void *)(intptr_t)1);
        tpc_xchan_release(c);
        int got = 0;
        tpc_join(r, &got);
        t = bench_ns() - t0;
        bench_report("xchan_stream", (double)nmsg * 1e9 / (double)t, "msg/s",
                     "%ld values through a tpc_xchan (capacity 512), fiber on shard 0 -> fiber on "
                     "shard 1 (%.1f ns each)%s",
                     nmsg, (double)t / (double)nmsg, got == 0 ? "" : " (MISCOUNTED)");
    }

    /* round trips: busy target, then sleeping target */
    if (want("rtt")) {
        atomic_store(&stop_spinning, 0);
        tpc_submit_to(1, start_spinner, NULL);
        rtt("xshard_rtt", "target busy (a fiber there yields in a loop)", 100000);
        atomic_store(&stop_spinning, 1);
        tpc_sleep(10 * 1000 * 1000);
    }
    if (want("wakeup"))
        rtt("wakeup", "target asleep between calls (20 us apart)", 20000);
    return 0;
}

int main(int argc, char **argv)
{
    nmsg = bench_iters(argc, argv, 20000000);
    only = argc > 2 ? argv[2] : NULL;
    floor_measure(200000, 4000000, &floor_pingpong, &floor_stream);
    bench_report("floor_pingpong", floor_pingpong, "ns",
                 "bare threads on cpus 0 and 1, spinning (bench/floor.h), mean of 200000");
    bench_report("floor_stream", 1e9 / floor_stream, "msg/s",
                 "bare SPSC ring, cpus 0 -> 1 (bench/floor.h), %.1f ns each", floor_stream);
    tpc_config c = {.shards = 2};
    if (!getenv("TPC_CPUS"))
        c.cpus = "0,1";
    return tpc_run(&c, bench_main, NULL) == 0 ? 0 : 1;
}
