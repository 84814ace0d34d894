/* A fiber that overflows its stack is reported by name and stack size, then the process aborts.
 * Runs the overflow in a child process and checks its stderr and its death by SIGABRT. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "helpers.h"

static volatile int limit = 1 << 30; /* opaque to the compiler: the recursion has an end */

static int __attribute__((noinline)) recurse(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    if (depth >= limit)
        return 0;
    return recurse(depth + 1) + pad[0];
}

static int deep(void *arg)
{
    (void)arg;
    return recurse(0);
}

static int overflow_main(void *arg)
{
    /* 64 KiB: a stack of its own mapping; 0: the default size, carved from a slab */
    tpc_fiber_opts o = {.stack_size = (size_t)(intptr_t)arg, .name = "deep"};
    tpc_fiber *f;
    tpc_spawn_opts(&o, deep, NULL, &f);
    return tpc_join(f, NULL);
}

static void overflow_report(size_t stack_size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        tpc_config c = {.shards = 1};
        tpc_run(&c, overflow_main, (void *)(intptr_t)stack_size);
        _exit(0); /* not reached if the overflow is caught */
    }
    close(fds[1]);
    char out[4096];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    print_message("child stderr: %s", out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(out, "stack overflow in fiber 'deep'"));
    if (stack_size)
        assert_non_null(strstr(out, "stack size 65536 bytes"));
}

static void test_overflow_report(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind reports the fault itself");
    overflow_report(64 * 1024);
}

static void test_overflow_report_slab_stack(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind reports the fault itself");
    overflow_report(0);
}

/* A fault that is not an overflow still kills the process as a plain SIGSEGV would. */
static int bad_pointer(void *arg)
{
    volatile int *p = arg;
    return *p;
}

static void test_other_faults_pass_through(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind reports the fault itself");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", 0);
        dup2(devnull, STDERR_FILENO);
        tpc_config c = {.shards = 1};
        tpc_run(&c, bad_pointer, (void *)16);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* Plain builds die of SIGSEGV; sanitizer builds report and exit non-zero. */
    assert_true((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
                (WIFEXITED(status) && WEXITSTATUS(status) != 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_report),
        cmocka_unit_test(test_overflow_report_slab_stack),
        cmocka_unit_test(test_other_faults_pass_through),
    };
    return cmocka_run_group_tests_name("overflow", tests, NULL, NULL);
}
