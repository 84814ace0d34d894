/* Timer benchmarks on one pinned shard:
 *   timers_1m     1,000,000 one-shot callback timers with deadlines spread over 1-101 ms:
 *                 start cost (ns/op) and total time from the first start until the last fired
 *                 (ms; the start phase is inside it, the deadlines count from its beginning),
 *                 whose excess over the longest deadline is the wheel's overhead; and the shard
 *                 thread's CPU time from the end of the start phase to the last firing, per
 *                 timer (ns): the cost of firing, which the total hides while it fits between
 *                 the deadlines
 *   timer_churn   start a timer and stop it before it fires: ns per start+stop pair
 *   sleepers_100k 100,000 fibers each sleeping a random 1-100 ms: time until all woke beyond
 *                 the longest sleep (ms)
 * Usage: bench-timer [timers] */
#include <stdlib.h>
#include <tpc.h>
#include "bench.h"

#define MS 1000000LL

static long ntimers;
static long nfired;
static uint64_t last_fire, last_fire_cpu;
static tpc_event all_fired;

static void on_fire(tpc_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    if (++nfired == ntimers) {
        last_fire = tpc_now_fresh();
        last_fire_cpu = bench_thread_cpu_ns();
        tpc_event_set(&all_fired);
    }
}

static uint64_t rng = BENCH_SEED;
static uint64_t rnd(void)
{
    return bench_rand(&rng);
}

static int nwoke, nsleepers;
static uint64_t last_wake;
static int sleeper(void *arg)
{
    tpc_sleep((int64_t)(intptr_t)arg);
    if (++nwoke == nsleepers)
        last_wake = tpc_now_fresh();
    return 0;
}

static int bench_main(void *arg)
{
    (void)arg;
    int cpu = tpc_shard_cpu();
    tpc_timer *timers = malloc(sizeof(tpc_timer) * (size_t)ntimers);
    int64_t *after = malloc(sizeof(int64_t) * (size_t)ntimers);
    for (long i = 0; i < ntimers; i++) {
        tpc_timer_init(&timers[i], on_fire, NULL);
        after[i] = (int64_t)(1 * MS + rnd() % (100 * MS));
    }

    /* timers_1m: the first round also grows the wheel's slot arrays (page faults); the second
     * finds them grown, as a long-running server does. */
    for (int round = 0; round < 2; round++) {
        tpc_event_init(&all_fired, false);
        nfired = 0;
        uint64_t t0 = tpc_now_fresh();
        for (long i = 0; i < ntimers; i++)
            tpc_timer_start_at(&timers[i], t0 + (uint64_t)after[i], 0);
        uint64_t t1 = tpc_now_fresh(), cpu1 = bench_thread_cpu_ns();
        tpc_event_wait(&all_fired);
        double total_ms = (double)(last_fire - t0) / 1e6;
        const char *r = round ? "" : "_cold";
        char id[64];
        snprintf(id, sizeof(id), "timers_1m_insert%s", r);
        bench_report(id, (double)(t1 - t0) / ntimers, "ns/op",
                     "%ld one-shot timers, deadlines 1-101 ms, 1 ms tick, %s, 1 shard on cpu %d",
                     ntimers, round ? "warm wheel" : "cold wheel", cpu);
        snprintf(id, sizeof(id), "timers_1m%s", r);
        bench_report(id, total_ms, "ms",
                     "all %ld fired after %.1f ms (start phase %.1f ms of it); longest deadline "
                     "101 ms; ratio %.3f; %s; cpu %d",
                     ntimers, total_ms, (double)(t1 - t0) / 1e6, total_ms / 101.0,
                     round ? "warm wheel" : "cold wheel", cpu);
        snprintf(id, sizeof(id), "timers_1m_fire_cpu%s", r);
        bench_report(id, (double)(last_fire_cpu - cpu1) / ntimers, "ns/op",
                     "shard thread CPU from the end of the start phase to the last firing: %.1f ms "
                     "for %ld timers (loop, wheel, callbacks, sleeps' syscalls); %s; cpu %d",
                     (double)(last_fire_cpu - cpu1) / 1e6, ntimers,
                     round ? "warm wheel" : "cold wheel", cpu);
    }
    uint64_t t0 = tpc_now_fresh();

    /* timer_churn: start then stop, never fires */
    long churn = ntimers * 10;
    uint64_t c0 = bench_ns();
    for (long i = 0; i < churn; i++) {
        tpc_timer *t = &timers[i % ntimers];
        tpc_timer_start_at(t, t0 + 10000 * MS + (uint64_t)after[i % ntimers], 0);
        tpc_timer_stop(t);
    }
    uint64_t c1 = bench_ns();
    bench_report("timer_churn", (double)(c1 - c0) / churn, "ns/op",
                 "%ld start+stop pairs, 1 shard on cpu %d", churn, cpu);

    /* sleepers_100k: the first round maps and faults in 100k fresh stacks; the second reuses
     * them from the shard's pool, which is what a long-running server sees. */
    for (int round = 0; round < 2; round++) {
        nsleepers = 100000;
        nwoke = 0;
        tpc_fiber_opts o = {.stack_size = 16 * 1024, .no_guard = true, .detached = true};
        uint64_t s0 = tpc_now_fresh();
        for (int i = 0; i < nsleepers; i++)
            tpc_spawn_opts(&o, sleeper, (void *)(intptr_t)(1 * MS + (int64_t)(rnd() % (99 * MS))),
                           NULL);
        while (nwoke < nsleepers)
            tpc_sleep(1 * MS);
        double sl_ms = (double)(last_wake - s0) / 1e6;
        bench_report(round ? "sleepers_100k" : "sleepers_100k_cold", sl_ms - 100.0, "ms",
                     "100000 fibers (16 KiB stacks, %s) sleeping 1-100 ms all woke after %.1f ms; "
                     "overhead beyond the longest sleep; cpu %d",
                     round ? "reused from the pool" : "freshly mapped", sl_ms, cpu);
    }
    free(timers);
    free(after);
    return 0;
}

int main(int argc, char **argv)
{
    ntimers = bench_iters(argc, argv, 1000000);
    tpc_config c = {.shards = 1, .stack_cache = 100000};
    if (!getenv("TPC_CPUS"))
        c.cpus = "0";
    return tpc_run(&c, bench_main, NULL) == 0 ? 0 : 1;
}
