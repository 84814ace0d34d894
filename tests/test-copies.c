/* One runtime per CPU in a process, across copies of libtpc: two shared objects each carry a
 * static copy with its symbols hidden (tests/copy-lib.c: copy_a_*, copy_b_*), and this program
 * links a third. Overlapping CPUs are refused with -EBUSY and a message naming the other
 * runtime's CPUs and version; disjoint CPUs, or share_cpus (TPC_SHARE_CPUS), run; a stopped
 * runtime gives its CPUs back; a child made by fork starts afresh; of two starts racing for one
 * CPU exactly one runs. */
#include <errno.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>
#include "helpers.h"

int copy_a_start(const char *cpus, int share, void **rt);
int copy_a_stop(void *rt);
int copy_a_run(const char *cpus, int share);
int copy_b_start(const char *cpus, int share, void **rt);
int copy_b_stop(void *rt);
int copy_b_run(const char *cpus, int share);

static char cpu0[16], cpu1[16]; /* two CPUs of the affinity mask ("" if there is one) */

static int find_cpus(void **state)
{
    (void)state;
    cpu_set_t m;
    int k = 0;
    if (sched_getaffinity(0, sizeof(m), &m) != 0)
        return -1;
    for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &m))
            snprintf(k++ ? cpu1 : cpu0, sizeof(cpu0), "%d", c);
    return 0;
}

/* Runs start(cpus, share, rt) with stderr going to a buffer: its result, and what it wrote in
 * msg. */
static int start_quoted(int (*start)(const char *, int, void **), const char *cpus, int share,
                        void **rt, char *msg, size_t size)
{
    struct t_capture cap;
    t_capture_begin(&cap);
    int rc = start(cpus, share, rt);
    t_capture_end(&cap, msg, size);
    return rc;
}

static void test_overlap_refused(void **state)
{
    (void)state;
    void *a, *b, *a2;
    char msg[1024], want[64];
    assert_int_equal(copy_a_start(cpu0, 0, &a), 0);
    assert_int_equal(start_quoted(copy_b_start, cpu0, 0, &b, msg, sizeof(msg)), -EBUSY);
    snprintf(want, sizeof(want), "CPU %s is taken", cpu0);
    assert_non_null(strstr(msg, want));
    snprintf(want, sizeof(want), "(libtpc %s, running on CPU %s)", tpc_version_string(), cpu0);
    assert_non_null(strstr(msg, want));
    /* The same copy, and a third (this program's), are refused too. */
    assert_int_equal(copy_a_start(cpu0, 0, &a2), -EBUSY);
    tpc_config c = {.shards = 1, .cpus = cpu0, .no_signals = true};
    assert_int_equal(tpc_run(&c, NULL, NULL), -EINVAL);
    assert_int_equal(copy_b_run(cpu0, 0), -EBUSY);
    assert_int_equal(copy_a_stop(a), 0);
    /* Stopped: its CPU is free again. */
    assert_int_equal(copy_b_start(cpu0, 0, &b), 0);
    assert_int_equal(copy_a_run(cpu0, 0), -EBUSY);
    assert_int_equal(copy_b_stop(b), 0);
    assert_int_equal(copy_a_run(cpu0, 0), 3);
}

static int three(void *arg)
{
    (void)arg;
    return 3;
}

static void test_third_copy(void **state)
{
    (void)state;
    void *a;
    tpc_config c = {.shards = 1, .cpus = cpu0, .no_signals = true};
    assert_int_equal(copy_a_start(cpu0, 0, &a), 0);
    assert_int_equal(tpc_run(&c, three, NULL), -EBUSY);
    c.share_cpus = true;
    assert_int_equal(tpc_run(&c, three, NULL), 3);
    assert_int_equal(copy_a_stop(a), 0);
    c.share_cpus = false;
    assert_int_equal(tpc_run(&c, three, NULL), 3);
}

static void test_disjoint_run(void **state)
{
    (void)state;
    SKIP_IF(!cpu1[0], "one CPU in the affinity mask");
    void *a, *b;
    assert_int_equal(copy_a_start(cpu0, 0, &a), 0);
    assert_int_equal(copy_b_start(cpu1, 0, &b), 0);
    assert_int_equal(copy_a_run(cpu1, 0), -EBUSY);
    assert_int_equal(copy_b_stop(b), 0);
    assert_int_equal(copy_a_run(cpu1, 0), 3);
    assert_int_equal(copy_a_stop(a), 0);
}

static void test_share_opt_in(void **state)
{
    (void)state;
    void *a, *b, *x;
    /* The later runtime shares: it runs beside one that does not. */
    assert_int_equal(copy_a_start(cpu0, 0, &a), 0);
    assert_int_equal(copy_b_start(cpu0, 1, &b), 0);
    assert_int_equal(copy_b_run(cpu0, 0), -EBUSY); /* a still holds it */
    assert_int_equal(copy_a_stop(a), 0);
    /* The earlier runtime shares: later ones may take its CPUs. */
    assert_int_equal(copy_a_run(cpu0, 0), 3);
    assert_int_equal(copy_a_start(cpu0, 0, &x), 0);
    assert_int_equal(copy_a_stop(x), 0);
    assert_int_equal(copy_b_stop(b), 0);
}

static void test_share_env(void **state)
{
    (void)state;
    void *a;
    assert_int_equal(copy_a_start(cpu0, 0, &a), 0);
    setenv("TPC_SHARE_CPUS", "1", 1);
    assert_int_equal(copy_b_run(cpu0, 0), 3);
    setenv("TPC_SHARE_CPUS", "yes", 1);
    assert_int_equal(copy_b_run(cpu0, 0), -EINVAL);
    setenv("TPC_SHARE_CPUS", "0", 1);
    assert_int_equal(copy_b_run(cpu0, 0), -EBUSY);
    unsetenv("TPC_SHARE_CPUS");
    assert_int_equal(copy_a_stop(a), 0);
}

/* Sequential runs, as a test suite makes them, alternate between the copies. */
static void test_stop_then_start(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(copy_a_run(cpu0, 0), 3);
        assert_int_equal(copy_b_run(cpu0, 0), 3);
    }
}

/* A child made by fork while runtimes run has none of their threads: its claims are stale. */
static void test_fork_child(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    SKIP_IF(1, "a child forked from a multi-threaded process under a sanitizer can deadlock in "
               "the sanitizer's allocator (a lock another thread held at the fork)");
#endif
    SKIP_IF(under_valgrind(), "the child inherits the parent's runtimes' memory, which valgrind "
                              "reports as lost when the child exits");
    void *a, *b;
    assert_int_equal(copy_a_start(cpu0, 0, &a), 0);
    assert_int_equal(copy_b_start(cpu0, 1, &b), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(copy_a_run(cpu0, 0) == 3 && copy_b_run(cpu0, 0) == 3 ? 0 : 1);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(copy_a_run(cpu0, 0), -EBUSY); /* the parent's still hold */
    assert_int_equal(copy_a_stop(a), 0);
    assert_int_equal(copy_b_stop(b), 0);
}

/* Two starts racing for one CPU from two copies: exactly one runs. */
static pthread_barrier_t race_go;
static void *race(void *arg)
{
    int (*start)(const char *, int, void **) = arg;
    void *rt;
    pthread_barrier_wait(&race_go);
    int rc = start(cpu0, 0, &rt);
    if (rc != 0 && rc != -EBUSY)
        fprintf(stderr, "race: start: %d\n", rc);
    return rc == 0 ? rt : NULL;
}

static void test_race(void **state)
{
    (void)state;
    int rounds = under_valgrind() ? 5 : 40;
    for (int i = 0; i < rounds; i++) {
        pthread_t ta, tb;
        void *ra, *rb;
        pthread_barrier_init(&race_go, NULL, 2);
        assert_int_equal(pthread_create(&ta, NULL, race, (void *)copy_a_start), 0);
        assert_int_equal(pthread_create(&tb, NULL, race, (void *)copy_b_start), 0);
        pthread_join(ta, &ra);
        pthread_join(tb, &rb);
        pthread_barrier_destroy(&race_go);
        if ((ra != NULL) == (rb != NULL))
            fprintf(stderr, "round %d: %s ran\n", i, ra ? "both" : "neither");
        assert_true((ra != NULL) != (rb != NULL));
        if (ra)
            assert_int_equal(copy_a_stop(ra), 0);
        if (rb)
            assert_int_equal(copy_b_stop(rb), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlap_refused), cmocka_unit_test(test_third_copy),
        cmocka_unit_test(test_disjoint_run),    cmocka_unit_test(test_share_opt_in),
        cmocka_unit_test(test_share_env),       cmocka_unit_test(test_stop_then_start),
        cmocka_unit_test(test_fork_child),      cmocka_unit_test(test_race),
    };
    return cmocka_run_group_tests_name("copies", tests, find_cpus, NULL);
}
