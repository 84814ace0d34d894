/* Signals: tpc_signal_wait for signals blocked up front and for ones its first call blocks,
 * cancellation and deadlines of a wait, misuse, and SIGPIPE turning into -EPIPE. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include "helpers.h"

static sigset_t one(int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    return s;
}

static int waiter(void *arg)
{
    sigset_t s = one((int)(intptr_t)arg);
    int signo = 0;
    int rc = tpc_signal_wait(&s, &signo);
    return rc < 0 ? rc : signo;
}

static int timed_waiter(void *arg)
{
    tpc_deadline_set(2 * 1000 * 1000);
    int rc = waiter(arg);
    tpc_deadline_clear();
    return rc;
}

/* Polls until every shard blocks sig (the first tpc_signal_wait blocks it everywhere). */
static int blocked_here(void *arg)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, (int)(intptr_t)arg) == 1 ? 0 : -EAGAIN;
}

static void wait_blocked_everywhere(int sig)
{
    WAIT_UNTIL(tpc_on_all(blocked_here, (void *)(intptr_t)sig) == 0);
}

static atomic_int waiting;
static int flag_then_wait(void *arg)
{
    atomic_store(&waiting, 1);
    return waiter(arg);
}

static void from_callback(void *arg)
{
    (void)arg;
    sigset_t s = one(SIGUSR1);
    CHECK_EQ(tpc_signal_wait(&s, NULL), -EPERM);
}

static int signal_main(void *arg)
{
    (void)arg;
    /* SIGUSR1 was blocked before tpc_run, so the shards inherited the mask. */
    tpc_fiber *r;
    int res = 0;
    CHECK_EQ(tpc_spawn_on(1, NULL, waiter, (void *)SIGUSR1, &r), 0);
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, SIGUSR1);

    /* SIGUSR2 was not: the first wait blocks it on every shard (and times out here). */
    CHECK_EQ(tpc_spawn_on(1, NULL, timed_waiter, (void *)SIGUSR2, &r), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, -ETIMEDOUT);
    CHECK_EQ(tpc_spawn_on(1, NULL, waiter, (void *)SIGUSR2, &r), 0);
    wait_blocked_everywhere(SIGUSR2); /* the timed wait may have stopped before it finished */
    CHECK_EQ(kill(getpid(), SIGUSR2), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, SIGUSR2);

    /* A cancelled wait returns, and the kernel no longer writes into its frame. */
    tpc_fiber *f;
    atomic_store(&waiting, 0);
    CHECK_EQ(tpc_spawn(flag_then_wait, (void *)SIGUSR1, &f), 0);
    WAIT_UNTIL(atomic_load(&waiting));
    tpc_yield();
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, -ECANCELED);

    /* Misuse. */
    sigset_t s;
    CHECK_EQ(tpc_signal_wait(NULL, NULL), -EINVAL);
    sigemptyset(&s);
    CHECK_EQ(tpc_signal_wait(&s, NULL), -EINVAL);
    s = one(SIGKILL);
    CHECK_EQ(tpc_signal_wait(&s, NULL), -EINVAL);
    s = one(SIGSEGV);
    CHECK_EQ(tpc_signal_wait(&s, NULL), -EINVAL);
    s = one(SIGINT); /* the runtime reads it for its shutdown */
    CHECK_EQ(tpc_signal_wait(&s, NULL), -EBUSY);
    CHECK_EQ(tpc_defer(from_callback, NULL), 0);
    tpc_yield();

    /* SIGPIPE does not kill: the write fails with EPIPE. */
    int p[2];
    CHECK_EQ(pipe(p), 0);
    close(p[0]);
    errno = 0;
    CHECK_EQ(write(p[1], "x", 1), -1);
    CHECK_EQ(errno, EPIPE);
    close(p[1]);
    /* A signal of a waited-for kind that is still pending when the runtime stops is discarded,
     * not left to the caller (test_signal_wait checks). */
    CHECK_EQ(kill(getpid(), SIGUSR1), 0);
    return 0;
}

static void test_signal_wait(void **state)
{
    (void)state;
    sigset_t s = one(SIGUSR1), old;
    pthread_sigmask(SIG_BLOCK, &s, &old);
    sigset_t none;
    assert_int_equal(tpc_signal_wait(&s, NULL), -EPERM);
    run_main(2, signal_main, NULL);
    sigpending(&none); /* while still blocked here: unblocked, it would kill the process */
    int left = sigismember(&none, SIGUSR1);
    struct timespec zero = {0, 0};
    if (left) /* taken, so that the failure is reported rather than fatal */
        sigtimedwait(&s, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    assert_int_equal(left, 0);
}

static int own_sigint(void *arg)
{
    (void)arg;
    int res = 0;
    tpc_fiber *r;
    CHECK_EQ(tpc_spawn_on(1, NULL, timed_waiter, (void *)SIGINT, &r), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, -ETIMEDOUT); /* accepted: with no_signals SIGINT is the application's */
    CHECK_EQ(tpc_spawn_on(1, NULL, waiter, (void *)SIGINT, &r), 0);
    wait_blocked_everywhere(SIGINT);
    CHECK_EQ(kill(getpid(), SIGINT), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, SIGINT);
    return 0;
}

static void test_own_sigint(void **state)
{
    (void)state;
    tpc_config c = {.shards = 2, .no_signals = true};
    run_config(&c, own_sigint, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_wait),
        cmocka_unit_test(test_own_sigint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
