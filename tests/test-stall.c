/* The stall detector (core/stall.c): a fiber that keeps its shard from its loop is reported by
 * name with a backtrace while the stall lasts; a shard that sleeps or waits is not; a negative
 * stall_ms turns it off. The reports go to stderr, which each case redirects to a file. */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "helpers.h"

/* TSan delivers an asynchronous signal only when the thread next calls into it, so a spinning
 * fiber's snapshot comes after its stall: the cases that check the report's contents skip. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN true
#else
#define UNDER_TSAN false
#endif

/* stderr into a memory file for the duration of one runtime. */
static int saved_err = -1, capture_fd = -1;

static void capture_start(void)
{
    fflush(stderr);
    capture_fd = memfd_create("stderr", 0);
    assert_true(capture_fd >= 0);
    saved_err = dup(STDERR_FILENO);
    assert_true(dup2(capture_fd, STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written (static buffer), echoing it for the log. */
static const char *capture_end(void)
{
    static char text[65536];
    fflush(stderr);
    dup2(saved_err, STDERR_FILENO);
    close(saved_err);
    ssize_t n = pread(capture_fd, text, sizeof(text) - 1, 0);
    close(capture_fd);
    text[n > 0 ? n : 0] = 0;
    fputs(text, stderr);
    return text;
}

static void busy_for(int64_t ns)
{
    int64_t end = t_now_ns() + ns;
    while (t_now_ns() < end)
        ;
}

/* The spinner's share of its CPU: the detector reports no stall of a shard that other
 * threads kept off its CPU most of the time (not the program's doing), which a loaded machine
 * running other tests pinned to the same CPU can cause. */
static int64_t spin_wall_ns, spin_cpu_ns;

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int spinner(void *arg)
{
    int64_t w0 = t_now_ns(), c0 = thread_cpu_ns();
    busy_for((int64_t)(intptr_t)arg * 1000000);
    spin_wall_ns = t_now_ns() - w0;
    spin_cpu_ns = thread_cpu_ns() - c0;
    return 0;
}

/* Skips the rest of a case whose spinner had less than half its CPU. */
#define SKIP_IF_CONTENDED()                                                                        \
    SKIP_IF(spin_cpu_ns * 2 < spin_wall_ns,                                                        \
            "other threads had most of the spinning shard's CPU: no stall to report")

static int blocker(void *arg)
{
    poll(NULL, 0, (int)(intptr_t)arg); /* a blocking system call, not a libtpc wait */
    return 0;
}

static uint64_t stalls_seen;

/* Runs fn (spinner or blocker) for ms in a fiber named "culprit", then reads the counter. */
struct culprit {
    tpc_fiber_fn fn;
    int ms;
};

static int culprit_main(void *arg)
{
    struct culprit *c = arg;
    tpc_fiber_opts o = {.name = "culprit"};
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn_opts(&o, c->fn, (void *)(intptr_t)c->ms, &f), 0);
    CHECK_EQ(tpc_join(f, NULL), 0);
    tpc_shard_stats st;
    CHECK_EQ(tpc_stats(0, &st), 0);
    stalls_seen = st.stalls;
    return 0;
}

static void run_culprit(int stall_ms, tpc_fiber_fn fn, int ms)
{
    struct culprit c = {fn, ms};
    tpc_config cfg = {.shards = 1, .stall_ms = stall_ms};
    stalls_seen = 0;
    capture_start();
    int rc = tpc_run(&cfg, culprit_main, &c);
    capture_end();
    assert_int_equal(rc, 0);
    assert_no_check_failed();
}

/* The first report's "stalled for N ms". */
static long first_report_ms(const char *text)
{
    const char *p = strstr(text, "stalled for ");
    return p ? strtol(p + strlen("stalled for "), NULL, 10) : -1;
}

static void test_spinning_fiber_reported(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind runs the spin too slowly to time it");
    SKIP_IF(UNDER_TSAN, "TSan holds the stall signal back until the spin ends");
    bool slow = getenv("TPC_TEST_SLOW") != NULL; /* sanitizers may hold a signal back a while */
    struct culprit c = {spinner, slow ? 600 : 150};
    tpc_config cfg = {.shards = 1, .stall_ms = 20};
    capture_start();
    int rc = tpc_run(&cfg, culprit_main, &c);
    const char *text = capture_end();
    assert_int_equal(rc, 0);
    assert_no_check_failed();
    SKIP_IF_CONTENDED();
    assert_non_null(strstr(text, "libtpc: shard 0 (cpu "));
    assert_non_null(strstr(text, "in fiber 'culprit' spawned at "));
    assert_non_null(strstr(text, "libtpc: shard 0: #0 ")); /* the backtrace, one line a frame */
    assert_non_null(strstr(text, "libtpc-gdb.py, tpc fibers")); /* the process's first report */
    long ms = first_report_ms(text);
    assert_true(ms >= 20 && ms < (slow ? 500 : 100)); /* while it lasted: 20 ms, a look, slack */
    assert_true(stalls_seen == 1);                    /* one stall, however many reports */
}

/* tpc_config.stall_fn takes the whole report instead of stderr, on the watchdog's thread. */
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static char hook_text[16384];
static int hook_calls, hook_shard = -1;

static void stall_hook(void *arg, int shard, const char *report)
{
    pthread_mutex_lock(&hook_lock);
    if (arg == (void *)&hook_calls && hook_calls++ == 0) {
        snprintf(hook_text, sizeof(hook_text), "%s", report);
        hook_shard = shard;
    }
    pthread_mutex_unlock(&hook_lock);
}

static void test_report_to_a_hook(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind runs the spin too slowly to time it");
    SKIP_IF(UNDER_TSAN, "TSan holds the stall signal back until the spin ends");
    bool slow = getenv("TPC_TEST_SLOW") != NULL;
    struct culprit c = {spinner, slow ? 600 : 150};
    tpc_config cfg = {
        .shards = 1, .stall_ms = 20, .stall_fn = stall_hook, .stall_arg = &hook_calls};
    hook_calls = 0;
    capture_start();
    int rc = tpc_run(&cfg, culprit_main, &c);
    const char *text = capture_end();
    assert_int_equal(rc, 0);
    assert_no_check_failed();
    assert_null(strstr(text, "stalled for")); /* nothing on stderr */
    SKIP_IF_CONTENDED();
    pthread_mutex_lock(&hook_lock);
    assert_true(hook_calls >= 1);
    assert_int_equal(hook_shard, 0);
    assert_non_null(strstr(hook_text, "in fiber 'culprit' spawned at "));
    assert_non_null(strstr(hook_text, "\nlibtpc: shard 0: #0 "));
    assert_true(hook_text[strlen(hook_text) - 1] == '\n');
    pthread_mutex_unlock(&hook_lock);
    assert_true(stalls_seen == 1);
}

static void test_blocking_system_call_reported(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind runs the loop too slowly to time it");
    SKIP_IF(UNDER_TSAN, "TSan holds the stall signal back until the call returns");
    struct culprit c = {blocker, 150};
    tpc_config cfg = {.shards = 1, .stall_ms = 20};
    capture_start();
    int rc = tpc_run(&cfg, culprit_main, &c);
    const char *text = capture_end();
    assert_int_equal(rc, 0);
    assert_non_null(strstr(text, "in fiber 'culprit' spawned at "));
    assert_true(stalls_seen == 1);
}

static int sleeper(void *arg)
{
    return tpc_sleep((int64_t)(intptr_t)arg * 1000000); /* a libtpc wait: the loop runs */
}

static void test_waiting_fiber_not_reported(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind runs the loop too slowly to time it");
    struct culprit c = {sleeper, 150};
    tpc_config cfg = {.shards = 1, .stall_ms = 50}; /* slack for a busy machine's scheduler */
    capture_start();
    int rc = tpc_run(&cfg, culprit_main, &c);
    const char *text = capture_end();
    assert_int_equal(rc, 0);
    assert_null(strstr(text, "stalled"));
    assert_true(stalls_seen == 0);
}

static void test_negative_turns_it_off(void **state)
{
    (void)state;
    run_culprit(-1, spinner, 80);
    assert_true(stalls_seen == 0);
}

static void test_bad_value_refused(void **state)
{
    (void)state;
    tpc_config cfg = {.shards = 1, .stall_ms = 60001};
    capture_start();
    int rc = tpc_run(&cfg, culprit_main, NULL);
    const char *text = capture_end();
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(text, "tpc_config.stall_ms 60001 is not"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spinning_fiber_reported),
        cmocka_unit_test(test_report_to_a_hook),
        cmocka_unit_test(test_blocking_system_call_reported),
        cmocka_unit_test(test_waiting_fiber_not_reported),
        cmocka_unit_test(test_negative_turns_it_off),
        cmocka_unit_test(test_bad_value_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
