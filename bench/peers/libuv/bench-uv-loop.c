/* libuv peer of bench/bench-idle.c and the round trips of bench/bench-xshard.c, same ids and
 * output format, for side-by-side runs (scripts/bench.sh):
 *   idle_loop    one uv_run iteration that finds nothing to do: a uv_idle_t keeps the loop from
 *                blocking (epoll_wait with timeout 0) and counts its callbacks; ns per
 *                iteration. One loop, one thread on CPU 0 (ours has 2 shards, the other asleep).
 *   xshard_rtt   a round trip between two loops on two threads pinned to CPUs 0 and 1:
 *                uv_async_send to loop B, whose async callback uv_async_send's back to loop A.
 *                B is busy: an active uv_idle_t keeps it iterating without sleeping (ours: a
 *                fiber there yields in a loop). A waits for the answer by spinning on
 *                uv_run(UV_RUN_NOWAIT), as a libtpc shard spins before it sleeps. Median of
 *                100,000 round trips after 10,000 warm-up ones; p99 in the conditions.
 *   wakeup       the same round trip with B idle, asleep in epoll_wait between calls; A spins
 *                20 us between calls, as bench-xshard does. Median of 20,000.
 * uv_async_send coalesces signals, so it has no equivalent of the xshard_stream workload.
 * Usage: bench-uv-loop [idle iterations]   (default 2,000,000, as bench-idle) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "../../bench.h"

static long idle_iters, idle_count;

static void on_idle_count(uv_idle_t *h)
{
    if (++idle_count == idle_iters)
        uv_idle_stop(h);
}

/* The two loops of the round trips: A (main thread, CPU 0) and B (CPU 1). */
static uv_loop_t loop_a, loop_b;
static uv_async_t req_async, reply_async;
static uv_idle_t busy_idle;
static _Atomic int busy = 1, quit;
static int replied; /* loop A only */

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0)
        fprintf(stderr, "bench-uv-loop: cannot pin to cpu %d: %s\n", cpu, strerror(rc));
    return rc == 0;
}

/* B: keeps iterating while `busy`, then stops its idle handle and sleeps in epoll_wait. */
static void on_busy_idle(uv_idle_t *h)
{
    if (!atomic_load_explicit(&busy, memory_order_relaxed))
        uv_idle_stop(h);
}

static void on_request(uv_async_t *h)
{
    if (atomic_load_explicit(&quit, memory_order_acquire)) {
        uv_close((uv_handle_t *)h, NULL);
        uv_close((uv_handle_t *)&busy_idle, NULL);
        return;
    }
    uv_async_send(&reply_async);
}

static void *thread_b(void *arg)
{
    (void)arg;
    pin(1);
    uv_run(&loop_b, UV_RUN_DEFAULT);
    return NULL;
}

static void on_reply(uv_async_t *h)
{
    (void)h;
    replied = 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void rtt(const char *id, const char *what, long warmup, long n, uint64_t gap_ns, int pinned)
{
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)n);
    for (long i = -warmup; i < n; i++) {
        replied = 0;
        uint64_t t0 = bench_ns();
        uv_async_send(&req_async);
        while (!replied)
            uv_run(&loop_a, UV_RUN_NOWAIT);
        uint64_t t = bench_ns() - t0;
        if (i >= 0)
            lat[i] = t;
        for (uint64_t t1 = bench_ns(); gap_ns && bench_ns() - t1 < gap_ns;)
            ;
    }
    qsort(lat, (size_t)n, sizeof(uint64_t), cmp_u64);
    bench_report(id, (double)lat[n / 2], "ns",
                 "libuv %s, uv_async_send A -> B -> A, %s, median of %ld round trips after %ld "
                 "warm-up; p99 %llu ns; loops on cpus 0 and 1%s",
                 uv_version_string(), what, n, warmup, (unsigned long long)lat[n * 99 / 100],
                 pinned ? "" : " (UNPINNED)");
    free(lat);
}

int main(int argc, char **argv)
{
    idle_iters = bench_iters(argc, argv, 2000000);
    int pinned = pin(0);

    /* idle_loop: the second of two rounds, as bench-idle reports it */
    for (int round = 0; round < 2; round++) {
        uv_loop_t loop;
        uv_idle_t idle;
        uv_loop_init(&loop);
        uv_idle_init(&loop, &idle);
        idle_count = 0;
        uv_idle_start(&idle, on_idle_count);
        uint64_t t0 = bench_ns();
        uv_run(&loop, UV_RUN_DEFAULT);
        uint64_t t = bench_ns() - t0;
        uv_close((uv_handle_t *)&idle, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        if (round)
            bench_report("idle_loop", (double)t / (double)idle_iters, "ns/iteration",
                         "libuv %s, one loop with an active uv_idle_t (epoll_wait timeout 0), "
                         "%ld iterations, cpu 0%s",
                         uv_version_string(), idle_iters, pinned ? "" : " (UNPINNED)");
    }

    /* round trips: B busy, then B asleep */
    uv_loop_init(&loop_a);
    uv_loop_init(&loop_b);
    uv_async_init(&loop_a, &reply_async, on_reply);
    uv_async_init(&loop_b, &req_async, on_request);
    uv_idle_init(&loop_b, &busy_idle);
    uv_idle_start(&busy_idle, on_busy_idle);
    pthread_t b;
    if (pthread_create(&b, NULL, thread_b, NULL) != 0) {
        fprintf(stderr, "bench-uv-loop: pthread_create failed\n");
        return 1;
    }
    rtt("xshard_rtt", "B busy (an active uv_idle_t keeps its loop iterating)", 10000, 100000, 0,
        pinned);
    atomic_store(&busy, 0); /* B's idle callback sees it and stops: B sleeps from then on */
    for (uint64_t t1 = bench_ns(); bench_ns() - t1 < 10000000;)
        uv_run(&loop_a, UV_RUN_NOWAIT);
    rtt("wakeup", "B asleep in epoll_wait between calls (20 us apart)", 1000, 20000, 20000, pinned);

    atomic_store_explicit(&quit, 1, memory_order_release);
    uv_async_send(&req_async);
    pthread_join(b, NULL);
    uv_close((uv_handle_t *)&reply_async, NULL);
    uv_run(&loop_a, UV_RUN_DEFAULT);
    uv_loop_close(&loop_a);
    uv_loop_close(&loop_b);
    return 0;
}
