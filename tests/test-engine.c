/* When io_uring cannot be used and TPC_BACKEND_URING is asked for, tpc_run fails with the errno
 * and a message that names the cause and the fix: ENOMEM, ENOSYS and EPERM forced through fault
 * injection (when built in), as is a kernel without the minimum wait that coalescing needs
 * (EOPNOTSUPP), then a real EPERM from a seccomp filter that refuses io_uring_setup (the last
 * test here: a filter cannot be removed), under which the default (auto) runs on epoll and
 * says so once per process. tests/test-fallback.c serves HTTP that way. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "helpers.h"
#include "seccomp-deny.h"
#include "core/uring.h"

static int never(void *arg)
{
    (void)arg;
    return 99;
}

/* Runs tpc_run with stderr captured into out; returns tpc_run's result. */
static int run_capturing(const tpc_config *c, char *out, size_t size)
{
    struct t_capture cap;
    t_capture_begin(&cap);
    int rc = tpc_run(c, never, NULL);
    t_capture_end(&cap, out, size);
    fputs(out, stderr); /* still show it */
    return rc;
}

#ifdef TPC_FAULT_INJECTION
static int count(const char *text, const char *part)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, part)) != NULL; p++)
        n++;
    return n;
}
#endif

static void test_forced_setup_errors(void **state)
{
    (void)state;
#ifdef TPC_FAULT_INJECTION
    static const struct {
        int err;
        const char *hint;
    } cases[] = {
        {ENOMEM, "RLIMIT_MEMLOCK"}, {ENOSYS, "no io_uring"}, {EPERM, "kernel.io_uring_disabled"}};
    char out[4096];
    tpc_config c = {.shards = 2, .backend = TPC_BACKEND_URING};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tpc__fault_setup(cases[i].err);
        assert_int_equal(run_capturing(&c, out, sizeof(out)), -cases[i].err);
        assert_non_null(strstr(out, "cannot create its io_uring"));
        assert_non_null(strstr(out, cases[i].hint));
    }
    tpc__fault_setup(0);
    assert_int_equal(tpc_run(&c, never, NULL), 99); /* and it works again */

    /* auto: the same failure runs on epoll, said once for the process with its cause. */
    const char *env = getenv("TPC_BACKEND");
    char *saved = env ? strdup(env) : NULL;
    unsetenv("TPC_BACKEND");
    c.backend = TPC_BACKEND_AUTO;
    tpc__fault_setup(ENOMEM);
    tpc__fault_fallback_unsay();
    assert_int_equal(run_capturing(&c, out, sizeof(out)), 99);
    assert_int_equal(count(out, "io_uring unavailable"), 1);
    assert_non_null(strstr(out, "RLIMIT_MEMLOCK"));
    assert_non_null(strstr(out, "running on the epoll backend"));
    tpc__fault_setup(0);

    /* Any other setup error (out of descriptors, say) is an error of the run, not a reason
     * to switch: auto fails too, and says so without a word of epoll. */
    tpc__fault_setup(EMFILE);
    tpc__fault_fallback_unsay();
    assert_int_equal(run_capturing(&c, out, sizeof(out)), -EMFILE);
    assert_non_null(strstr(out, "cannot create its io_uring"));
    assert_null(strstr(out, "epoll"));
    tpc__fault_setup(0);

    /* A kernel older than the oldest supported: refused with uring, epoll with auto. */
    tpc__fault_kernel_set("5.15.0-91-generic");
    tpc__fault_fallback_unsay();
    assert_int_equal(run_capturing(&c, out, sizeof(out)), 99);
    assert_non_null(strstr(out, "io_uring unavailable: Linux 5.15 is older than 5.19"));
    c.backend = TPC_BACKEND_URING;
    assert_int_equal(run_capturing(&c, out, sizeof(out)), -ENOSYS);
    assert_non_null(strstr(out, "Linux 5.15 is older than 5.19"));
    assert_null(strstr(out, "epoll"));
    tpc__fault_kernel_set("5.19.0");
    assert_int_equal(tpc_run(&c, never, NULL), 99);
    tpc__fault_kernel_set(NULL);
    tpc__fault_fallback_unsay(); /* test_seccomp_denies_io_uring expects the line again */
    if (saved)
        setenv("TPC_BACKEND", saved, 1);
    free(saved);

    /* Coalescing on a kernel older than 6.12, which lacks the minimum wait. */
    tpc__fault_hide_features(1U << 15); /* IORING_FEAT_MIN_TIMEOUT */
    c.coalesce_us = 50;
    assert_int_equal(run_capturing(&c, out, sizeof(out)), -EOPNOTSUPP);
    assert_non_null(strstr(out, "needs Linux 6.12"));
    c.coalesce_us = 0;
    assert_int_equal(tpc_run(&c, never, NULL), 99); /* without it, the same kernel runs */
    tpc__fault_hide_features(0);
#else
    SKIP_IF(true, "fault injection is not built in (meson -Dfault_injection=true)");
#endif
}

static void test_seccomp_denies_io_uring(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind runs the client's system calls itself");
    assert_int_equal(t_deny_io_uring(), 0);
    char out[4096];
    tpc_config c = {.shards = 2, .backend = TPC_BACKEND_URING};
    assert_int_equal(run_capturing(&c, out, sizeof(out)), -EPERM);
    assert_non_null(strstr(out, "io_uring is not permitted"));
    assert_non_null(strstr(out, "seccomp"));
    /* auto: epoll, said once per process with the cause, whatever the number of shards. */
    unsetenv("TPC_BACKEND");
    c.backend = TPC_BACKEND_AUTO;
    assert_int_equal(run_capturing(&c, out, sizeof(out)), 99);
    const char *line = strstr(out, "io_uring unavailable: io_uring is not permitted");
    assert_non_null(line);
    assert_non_null(strstr(line, "running on the epoll backend"));
    assert_null(strstr(line + 1, "io_uring unavailable"));
    assert_int_equal(run_capturing(&c, out, sizeof(out)), 99);
    assert_null(strstr(out, "io_uring unavailable")); /* once per process */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forced_setup_errors),
        cmocka_unit_test(test_seccomp_denies_io_uring), /* last: the filter stays */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
