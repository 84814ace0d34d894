/* Benchmark helpers: a monotonic clock, and one result line per workload:
 *   bench <id> <value> <unit> | <conditions>
 * scripts/bench.sh parses these lines; people read them. */
#ifndef TPC_BENCH_H
#define TPC_BENCH_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread, for work that is spread over wall-clock time (timers). */
static inline uint64_t bench_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Iteration count: argv[1] if given, else the default (scripts may shorten runs). */
static inline long bench_iters(int argc, char **argv, long dflt)
{
    if (argc > 1) {
        long n = strtol(argv[1], NULL, 10);
        if (n > 0)
            return n;
    }
    return dflt;
}

/* xorshift64: the same sequence in every benchmark and peer that uses it, so that they draw the
 * same workload (e.g. the same timer deadlines). */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}
#define BENCH_SEED 88172645463325252ull

__attribute__((format(printf, 4, 5))) static inline void
bench_report(const char *id, double value, const char *unit, const char *fmt, ...)
{
    char cond[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cond, sizeof(cond), fmt, ap);
    va_end(ap);
    printf("bench %s %.2f %s | %s\n", id, value, unit, cond);
    fflush(stdout);
}

#endif
