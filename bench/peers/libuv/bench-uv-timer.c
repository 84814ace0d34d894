/* libuv peer of bench/bench-timer.c, same workloads and output format, for side-by-side runs:
 *   timers_1m_insert, timers_1m   1,000,000 one-shot uv_timer_t with deadlines spread over
 *                                 1-101 ms (the shape of libuv's own million_timers benchmark):
 *                                 start cost and time until the last fired; CPU time per
 *                                 timer from the end of the start phase to the last firing
 *   timer_churn                   uv_timer_start + uv_timer_stop before it fires
 * libuv keeps timers in a binary min-heap and has a 1 ms clock. Same random deadlines as
 * bench-timer (same generator and seed), one thread, pinned like ours by the runner.
 * Usage: bench-uv-timer [timers] */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>
#include "../../bench.h"

static long ntimers, nfired;
static uint64_t last_fire, last_fire_cpu;

static void on_fire(uv_timer_t *t)
{
    (void)t;
    if (++nfired == ntimers) {
        last_fire = bench_ns();
        last_fire_cpu = bench_thread_cpu_ns();
    }
}

static uint64_t rng = BENCH_SEED;
static uint64_t rnd(void)
{
    return bench_rand(&rng);
}

int main(int argc, char **argv)
{
    ntimers = bench_iters(argc, argv, 1000000);
    uv_loop_t *loop = uv_default_loop();
    uv_timer_t *timers = malloc(sizeof(uv_timer_t) * (size_t)ntimers);
    uint64_t *after_ms = malloc(sizeof(uint64_t) * (size_t)ntimers);
    for (long i = 0; i < ntimers; i++) {
        uv_timer_init(loop, &timers[i]);
        /* bench-timer draws ns in [1 ms, 101 ms); libuv takes whole ms: round up (never early) */
        uint64_t ns = 1000000 + rnd() % 100000000;
        after_ms[i] = (ns + 999999) / 1000000;
    }
    for (int round = 0; round < 2; round++) {
        nfired = 0;
        uv_update_time(loop);
        uint64_t t0 = bench_ns();
        for (long i = 0; i < ntimers; i++)
            uv_timer_start(&timers[i], on_fire, after_ms[i], 0);
        uint64_t t1 = bench_ns(), cpu1 = bench_thread_cpu_ns();
        uv_run(loop, UV_RUN_DEFAULT);
        double total_ms = (double)(last_fire - t0) / 1e6;
        const char *r = round ? "" : "_cold";
        char id[64];
        snprintf(id, sizeof(id), "timers_1m_insert%s", r);
        bench_report(id, (double)(t1 - t0) / ntimers, "ns/op",
                     "peer=libuv %s, %ld one-shot timers, deadlines 1-101 ms, %s heap",
                     uv_version_string(), ntimers, round ? "warm" : "cold");
        snprintf(id, sizeof(id), "timers_1m%s", r);
        bench_report(id, total_ms, "ms",
                     "peer=libuv, all %ld fired after %.1f ms; longest deadline 101 ms; ratio "
                     "%.3f",
                     ntimers, total_ms, total_ms / 101.0);
        snprintf(id, sizeof(id), "timers_1m_fire_cpu%s", r);
        bench_report(id, (double)(last_fire_cpu - cpu1) / ntimers, "ns/op",
                     "peer=libuv, thread CPU from the end of the start phase to the last firing: "
                     "%.1f ms for %ld timers",
                     (double)(last_fire_cpu - cpu1) / 1e6, ntimers);
    }
    long churn = ntimers * 10;
    uint64_t c0 = bench_ns();
    for (long i = 0; i < churn; i++) {
        uv_timer_t *t = &timers[i % ntimers];
        uv_timer_start(t, on_fire, 10000 + after_ms[i % ntimers], 0);
        uv_timer_stop(t);
    }
    uint64_t c1 = bench_ns();
    bench_report("timer_churn", (double)(c1 - c0) / churn, "ns/op",
                 "peer=libuv, %ld start+stop pairs", churn);
    for (long i = 0; i < ntimers; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    free(timers);
    free(after_ms);
    return 0;
}
