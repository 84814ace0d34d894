/* Test helpers.
 *
 * Checks. cmocka's assert_* longjmp back to the test function, which must not happen from a
 * shard thread; inside the runtime use CHECK and CHECK_EQ. The contract:
 *  - A failed CHECK prints "file:line: CHECK failed: ..." at once, keeps the first such message
 *    and, inside a shard, calls tpc_shutdown(99): every fiber on every shard is cancelled, so
 *    every libtpc wait returns -ECANCELED at once and the case ends promptly instead of hanging
 *    until meson's timeout. A CHECK does not return from the fiber: the code after it runs on,
 *    with its waits failing.
 *  - So code inside the runtime never waits outside libtpc without a bound (a blocking read()
 *    on a socket, a pthread_join on a thread that waits for the runtime, a child process that
 *    waits for a pipe its parent keeps open), and a loop that retries a libtpc call stops once
 *    the fiber is cancelled (`&& !tpc_cancelled()`, or it stops on -ECANCELED). tpc_join is
 *    never retried: it frees the handle whatever it returns.
 *  - A case waits for an event, never for a time: WAIT_UNTIL(cond), loop_turns(n), a tpc_event
 *    or wait group, t_count for threads. A sleep that stays is the behaviour under test or
 *    the workload, and says so in a comment.
 *  - The test function then calls run_config/run_main/run_expect, or assert_no_check_failed()
 *    after its own tpc_run: it fails with the first CHECK's message before it looks at the
 *    exit status (which a failed CHECK turns into 99).
 *
 * Skips. SKIP_IF(cond, "why") in a test function skips the case when cond holds: it prints one
 * line "# skipped: <case>: <why>" and calls cmocka's skip(), which counts the case as skipped
 * (neither passed nor failed). Every missing kernel feature, limit or environment (valgrind)
 * goes through it. */
#ifndef TPC_TEST_HELPERS_H
#define TPC_TEST_HELPERS_H

#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "tpc.h"

static atomic_int t_failures;

/* TPC_TEST_FILTER=test_name (cmocka's pattern: * and ? work) runs only the matching cases. */
__attribute__((constructor)) static void t_filter(void)
{
    const char *f = getenv("TPC_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
}
static char t_first_failure[512]; /* the first failed check's message, written once */

/* Records a failed check: prints it, keeps the first message, and inside a shard stops the
 * runtime (every fiber's waits then fail at once), so that the case ends with its first message
 * instead of hanging until meson's timeout. */
static inline void check_failed(const char *fmt, ...)
{
    char msg[sizeof(t_first_failure)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", msg);
    if (atomic_fetch_add(&t_failures, 1) == 0)
        memcpy(t_first_failure, msg, sizeof(msg));
    if (tpc_shard_id() >= 0)
        tpc_shutdown(99);
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            check_failed("%s:%d: CHECK failed: %s", __FILE__, __LINE__, #c);                       \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            check_failed("%s:%d: CHECK failed: %s == %s (%lld != %lld)", __FILE__, __LINE__, #a,   \
                         #b, a_, b_);                                                              \
    } while (0)

/* Forgets earlier failed checks: before a run whose checks the case asserts. */
static inline void checks_reset(void)
{
    atomic_store(&t_failures, 0);
    t_first_failure[0] = 0;
}

/* Fails the case with the first failed check's message (and how many failed), if any did. */
#define assert_no_check_failed()                                                                   \
    do {                                                                                           \
        int n_ = atomic_load(&t_failures);                                                         \
        if (n_)                                                                                    \
            fail_msg("%d check(s) failed, the first: %s", n_, t_first_failure);                    \
    } while (0)

/* Skips the calling test case when cond holds, with one uniform line on stdout. Only in a test
 * function (cmocka's skip() jumps back to its runner). */
/* True in shuffled builds (-Dshuffle=true), where a shard runs its ready tasks in a random
 * order: a case that checks the FIFO policy itself skips there. */
#ifdef TPC_SHUFFLE
#define SHUFFLED 1
#else
#define SHUFFLED 0
#endif

#define SKIP_IF(cond, why)                                                                         \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("# skipped: %s: %s\n", __func__, (why));                                        \
            fflush(stdout);                                                                        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* True when the suite runs on the epoll backend (scripts/test.sh's `epoll` configuration): a
 * case that checks io_uring itself skips there. */
static inline bool on_epoll(void)
{
    const char *b = getenv("TPC_BACKEND");
    return b && !strcmp(b, "epoll");
}

static inline bool under_valgrind(void)
{
    return getenv("TPC_TEST_VALGRIND") != NULL;
}

/* stderr captured: t_capture_begin, the calls whose messages are wanted, then t_capture_end,
 * which restores stderr and leaves what was written in out (NUL-terminated, cut to size). */
struct t_capture {
    FILE *tmp;
    int saved;
};

static inline void t_capture_begin(struct t_capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(2);
    dup2(fileno(c->tmp), 2);
}

static inline void t_capture_end(struct t_capture *c, char *out, size_t size)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    rewind(c->tmp);
    size_t n = fread(out, 1, size - 1, c->tmp);
    out[n] = 0;
    fclose(c->tmp);
}

/* ---- Waiting for an event, never for a time. ----
 * A case never sleeps for "long enough": it waits for the event itself. Every wait is bounded
 * (T_WAIT_LIMIT_S seconds, four times that under TPC_TEST_SLOW) so that a missing event is a
 * failed check with its message, not a meson timeout; the bound is a safety net, no case
 * depends on it. */
#define T_WAIT_LIMIT_S 10

static inline int64_t t_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t t_wait_limit_ns(void)
{
    return (getenv("TPC_TEST_SLOW") ? 4 : 1) * (int64_t)T_WAIT_LIMIT_S * 1000000000;
}

/* In a fiber: yields a loop turn at a time until cond holds (another fiber, shard or thread
 * makes it so). Evaluates to cond's last value: false when the fiber was cancelled first (a
 * failed CHECK stops the runtime, so the case ends) or when the bound passed (a failed CHECK). */
#define WAIT_UNTIL(cond)                                                                           \
    __extension__({                                                                                \
        int64_t until_ = t_now_ns() + t_wait_limit_ns();                                           \
        bool ok_;                                                                                  \
        while (!(ok_ = (cond)) && !tpc_cancelled()) {                                              \
            if (t_now_ns() > until_) {                                                             \
                check_failed("%s:%d: WAIT_UNTIL gave up: %s", __FILE__, __LINE__, #cond);          \
                break;                                                                             \
            }                                                                                      \
            tpc_yield();                                                                           \
        }                                                                                          \
        ok_;                                                                                       \
    })

/* The calling shard's loop iterations so far (0 outside a shard). */
static inline uint64_t t_loops(void)
{
    tpc_shard_stats st;
    return tpc_stats(tpc_shard_id(), &st) == 0 ? st.loops : 0;
}

/* In a fiber: returns once the shard's loop has begun n more iterations, so that at least n - 1
 * whole ones ran (each submits and reaps I/O, the completions the kernel has by then included,
 * expires timers and publishes messages). "Through the loop", without a sleep. */
static inline void loop_turns(unsigned n)
{
    uint64_t from = t_loops();
    WAIT_UNTIL(t_loops() >= from + n);
}

static inline int loop_turns_fn(void *arg)
{
    loop_turns((unsigned)(uintptr_t)arg);
    return 0;
}

/* The same on every shard at once: messages any shard sent before the call have been run. */
static inline void all_loop_turns(unsigned n)
{
    CHECK_EQ(tpc_on_all(loop_turns_fn, (void *)(uintptr_t)n), 0);
}

/* A counter that threads outside the runtime (tpc_blocking's helpers, pthreads) wait on; fibers
 * read it with WAIT_UNTIL(t_count_get(...) >= n), since a shard must never block. */
typedef struct t_count {
    pthread_mutex_t m;
    pthread_cond_t cv;
    long n;
} t_count;
#define T_COUNT_INIT                                                                               \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0                                     \
    }

static inline long t_count_get(t_count *c)
{
    pthread_mutex_lock(&c->m);
    long n = c->n;
    pthread_mutex_unlock(&c->m);
    return n;
}

static inline void t_count_set(t_count *c, long n)
{
    pthread_mutex_lock(&c->m);
    c->n = n;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->m);
}

static inline void t_count_add(t_count *c, long d)
{
    pthread_mutex_lock(&c->m);
    c->n += d;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->m);
}

/* In a thread that is not a shard: blocks until the count is at least n; false (with a failed
 * CHECK) if the bound passed first. */
static inline bool t_count_wait(t_count *c, long n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(t_wait_limit_ns() / 1000000000);
    pthread_mutex_lock(&c->m);
    int rc = 0;
    while (c->n < n && rc == 0)
        rc = pthread_cond_timedwait(&c->cv, &c->m, &until);
    long now = c->n;
    pthread_mutex_unlock(&c->m);
    if (now < n)
        check_failed("t_count_wait: %ld, not %ld, before the bound", now, n);
    return now >= n;
}

/* Entries of a /proc directory (its "." and ".." included): leak and thread checks compare two
 * counts. */
static inline int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static inline int count_fds(void)
{
    return count_entries("/proc/self/fd");
}

/* Starts a server with default options on a free loopback port and stores the address it
 * listens on in *at. NULL (with a failed CHECK) if it could not. */
static inline tpc_server *loopback_server(tpc_conn_fn fn, void *arg, tpc_addr *at)
{
    tpc_addr a;
    tpc_server *srv = NULL;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    CHECK_EQ(tpc_server_start(&a, NULL, fn, arg, &srv), 0);
    if (srv)
        CHECK_EQ(tpc_server_addr(srv, at), 0);
    return srv;
}

/* Runs fn as the main fiber of a runtime configured by c and asserts that no CHECK failed (with
 * the first one's message) and then that tpc_run returned want. */
static inline void run_expect(const tpc_config *c, tpc_fiber_fn fn, void *arg, int want)
{
    checks_reset();
    int rc = tpc_run(c, fn, arg);
    assert_no_check_failed();
    assert_int_equal(rc, want);
}

/* The same for a main fiber that returns 0. */
static inline void run_config(const tpc_config *c, tpc_fiber_fn fn, void *arg)
{
    run_expect(c, fn, arg, 0);
}

/* The same with n shards and defaults otherwise. */
static inline void run_main(unsigned shards, tpc_fiber_fn fn, void *arg)
{
    tpc_config c = {.shards = shards};
    run_config(&c, fn, arg);
}

#endif
