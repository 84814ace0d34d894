/* The blocking helper pool: results come back, helpers run in parallel, a full queue makes
 * callers wait (in order, nothing dropped), a queued job can be cancelled or time out and then
 * never runs, a running one is waited for, and misuse is refused. */
#include <errno.h>
#include <unistd.h>
#include "helpers.h"

static long times_ten(void *arg)
{
    return (long)(intptr_t)arg * 10 + (tpc_shard_id() == -EPERM); /* not on a shard */
}

/* Four jobs that each wait until all four run at once: proves four helpers. */
static t_count running = T_COUNT_INIT;
static long meet(void *arg)
{
    (void)arg;
    t_count_add(&running, 1);
    return t_count_wait(&running, 4);
}

static int call_meet(void *arg)
{
    (void)arg;
    long r = 0;
    CHECK_EQ(tpc_blocking(meet, NULL, &r), 0);
    CHECK_EQ(r, 1);
    return 0;
}

static int basics_main(void *arg)
{
    (void)arg;
    long r = 0;
    CHECK_EQ(tpc_blocking(times_ten, (void *)4, &r), 0);
    CHECK_EQ(r, 41);
    CHECK_EQ(tpc_blocking(NULL, NULL, &r), -EINVAL);
    t_count_set(&running, 0);
    tpc_fiber *f[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_spawn(call_meet, NULL, &f[i]), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    return 0;
}

static void in_callback(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_blocking(times_ten, NULL, NULL), -EPERM);
}

static int callback_main(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_defer(in_callback, NULL), 0);
    tpc_yield();
    return 0;
}

static void test_basics(void **state)
{
    (void)state;
    assert_int_equal(tpc_blocking(times_ten, NULL, NULL), -EPERM);
    run_main(2, basics_main, NULL);
    run_main(1, callback_main, NULL);
    tpc_config c = {.blocking_threads = 1000};
    assert_int_equal(tpc_run(&c, basics_main, NULL), -EINVAL);
}

/* ---- One helper, a queue of two, a gate that holds the helper. ---- */
static atomic_int order_len, ran_cancelled, started;
static t_count gate = T_COUNT_INIT;
static int order[16];

static long gated(void *arg)
{
    atomic_fetch_add(&started, 1);
    t_count_wait(&gate, 1); /* bounded: a failed case does not hold the runtime's stop */
    order[atomic_fetch_add(&order_len, 1)] = (int)(intptr_t)arg;
    return (long)(intptr_t)arg;
}

static long must_not_run(void *arg)
{
    (void)arg;
    atomic_store(&ran_cancelled, 1);
    return 0;
}

static atomic_int entered;
static int caller(void *arg)
{
    long r = -1;
    atomic_fetch_add(&entered, 1);
    int rc = tpc_blocking(gated, arg, &r);
    CHECK_EQ(rc, 0);
    CHECK_EQ(r, (long)(intptr_t)arg);
    return rc;
}

static int cancelled_caller(void *arg)
{
    (void)arg;
    atomic_fetch_add(&entered, 1);
    return tpc_blocking(must_not_run, NULL, NULL);
}

static int deadline_caller(void *arg)
{
    (void)arg;
    tpc_deadline_set(2 * 1000 * 1000);
    return tpc_blocking(must_not_run, NULL, NULL);
}

static int queue_main(void *arg)
{
    (void)arg;
    t_count_set(&gate, 0);
    atomic_store(&order_len, 0);
    atomic_store(&entered, 0);
    atomic_store(&ran_cancelled, 0);
    atomic_store(&started, 0);
    tpc_fiber *f[6];
    /* Five callers: one job runs, two are queued, two wait for room. */
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(tpc_spawn(caller, (void *)(intptr_t)i, &f[i]), 0);
        tpc_yield();
    }
    /* A sixth, cancelled while it waits for room: returns, its job never runs. */
    CHECK_EQ(tpc_spawn(cancelled_caller, NULL, &f[5]), 0);
    WAIT_UNTIL(atomic_load(&entered) == 6);
    tpc_yield();
    CHECK_EQ(tpc_cancel(f[5]), 0);
    int res = 0;
    CHECK_EQ(tpc_join(f[5], &res), 0);
    CHECK_EQ(res, -ECANCELED);
    /* A deadline while waiting: likewise. */
    tpc_fiber *d;
    CHECK_EQ(tpc_spawn(deadline_caller, NULL, &d), 0);
    CHECK_EQ(tpc_join(d, &res), 0);
    CHECK_EQ(res, -ETIMEDOUT);
    /* The first caller's job runs (once the helper thread has taken it): cancelling it waits
     * until it is done, and returns its result. */
    WAIT_UNTIL(atomic_load(&started) >= 1);
    CHECK_EQ(tpc_cancel(f[0]), 0);
    t_count_set(&gate, 1);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(tpc_join(f[i], &res), 0);
        CHECK_EQ(res, 0);
    }
    CHECK_EQ(atomic_load(&order_len), 5);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(order[i], i); /* in the order queued */
    /* One more job through the one helper: a wrongly queued must_not_run would have run
     * before it. */
    long last = -1;
    CHECK_EQ(tpc_blocking(gated, (void *)(intptr_t)9, &last), 0);
    CHECK_EQ(last, 9);
    CHECK_EQ(atomic_load(&ran_cancelled), 0);
    return 0;
}

static void test_queue(void **state)
{
    (void)state;
    tpc_config c = {.shards = 1, .blocking_threads = 1, .blocking_queue = 2};
    run_config(&c, queue_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
