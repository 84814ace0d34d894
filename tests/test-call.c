/* Calls to other shards: tpc_call_on, tpc_on_all, tpc_stats. Results, errors, a caller that
 * stops waiting (deadline) while its call is still queued, and a call in flight at shutdown;
 * ASan and valgrind check that no record leaks or is used after it is freed. */
#include <errno.h>
#include "helpers.h"

static int my_shard(void *arg)
{
    return tpc_shard_id() * 10 + (int)(intptr_t)arg;
}

static atomic_int ran_on[8];
static int mark(void *arg)
{
    atomic_fetch_add(&ran_on[tpc_shard_id()], 1);
    return tpc_shard_id() == 2 ? (int)(intptr_t)arg : 0;
}

static void from_callback(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_call_on(1, my_shard, NULL, NULL), -EPERM);
    CHECK_EQ(tpc_on_all(mark, NULL), -EPERM);
}

static int basics_main(void *arg)
{
    (void)arg;
    int n = tpc_shard_count(), r = -1;
    for (int i = 0; i < n; i++) {
        CHECK_EQ(tpc_call_on(i, my_shard, (void *)3, &r), 0);
        CHECK_EQ(r, i * 10 + 3);
    }
    CHECK_EQ(tpc_call_on(n, my_shard, NULL, &r), -EINVAL);
    CHECK_EQ(tpc_call_on(-1, my_shard, NULL, &r), -EINVAL);
    CHECK_EQ(tpc_call_on(1, NULL, NULL, &r), -EINVAL);
    CHECK_EQ(tpc_call_on(1, my_shard, NULL, NULL), 0);

    for (int i = 0; i < 8; i++)
        atomic_store(&ran_on[i], 0);
    CHECK_EQ(tpc_on_all(mark, (void *)0), 0);
    for (int i = 0; i < n; i++)
        CHECK_EQ(atomic_load(&ran_on[i]), 1);
    CHECK_EQ(tpc_on_all(mark, (void *)-EIO), -EIO); /* shard 2's failure comes back */
    CHECK_EQ(tpc_on_all(NULL, NULL), -EINVAL);

    tpc_shard_stats st;
    CHECK_EQ(tpc_stats(1, &st), 0);
    /* Four calls reached shard 1 through its inbox (and ran there, not as queued tasks). */
    CHECK(st.loops > 0);
    CHECK(st.msgs_in >= 4);
    tpc_shard_stats again;
    CHECK_EQ(tpc_stats(1, &again), 0);
    CHECK(again.msgs_in > st.msgs_in);
    CHECK_EQ(tpc_stats(0, &st), 0);
    CHECK(st.switches > 0 && st.tasks > 0);
    CHECK_EQ(tpc_stats(n, &st), -EINVAL);
    CHECK_EQ(tpc_stats(1, NULL), -EINVAL);
    CHECK_EQ(tpc_defer(from_callback, NULL), 0);
    tpc_yield();
    return 0;
}

static void test_basics(void **state)
{
    (void)state;
    run_main(4, basics_main, NULL);
    assert_int_equal(tpc_call_on(0, my_shard, NULL, NULL), -EPERM);
    tpc_shard_stats st;
    assert_int_equal(tpc_stats(0, &st), -EPERM);
}

/* The target is busy for 100 ms without yielding; the caller's 10 ms deadline passes while its
 * call waits in the target's inbox. The call still runs later, and its record is freed then. */
static atomic_int late_ran;

/* Keeps shard 1 from running anything else until the caller on shard 0 has given up. */
static atomic_int gave_up;
static void busy_until_given_up(void *arg)
{
    (void)arg;
    while (!atomic_load(&gave_up))
        ;
}

static int late(void *arg)
{
    (void)arg;
    atomic_store(&late_ran, 1);
    return 7;
}

static int deadline_main(void *arg)
{
    (void)arg;
    atomic_store(&late_ran, 0);
    atomic_store(&gave_up, 0);
    CHECK_EQ(tpc_submit_to(1, busy_until_given_up, NULL), 0);
    int r = -1;
    CHECK_EQ(tpc_deadline_set(10 * 1000 * 1000), 0);
    CHECK_EQ(tpc_call_on(1, late, NULL, &r), -ETIMEDOUT);
    atomic_store(&gave_up, 1);
    CHECK_EQ(r, -1); /* nothing written */
    CHECK_EQ(tpc_deadline_clear(), 0);
    WAIT_UNTIL(atomic_load(&late_ran));
    CHECK_EQ(tpc_call_on(1, late, NULL, &r), 0); /* and the shard still answers */
    CHECK_EQ(r, 7);
    return 0;
}

static void test_caller_gives_up(void **state)
{
    (void)state;
    run_main(2, deadline_main, NULL);
}

/* Shutdown while a call waits behind a busy target: the caller is cancelled, the target runs
 * the call after the caller's shard may have stopped, and the record is freed either way. */
static int stopper(void *arg)
{
    (void)arg;
    /* It runs once the main fiber has suspended in tpc_call_on, whose message is out by then. */
    return tpc_shutdown(0);
}

static int shutdown_main(void *arg)
{
    (void)arg;
    atomic_store(&gave_up, 0);
    CHECK_EQ(tpc_submit_to(1, busy_until_given_up, NULL), 0);
    CHECK_EQ(tpc_spawn(stopper, NULL, NULL), 0);
    CHECK_EQ(tpc_call_on(1, late, NULL, NULL), -ECANCELED);
    atomic_store(&gave_up, 1);
    return 0;
}

static void test_call_at_shutdown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        run_main(2, shutdown_main, NULL);
}

/* No lost wake-ups: with spinning off, every exchange goes through the target's sleep and
 * eventfd wake-up. Shards 1-3 each make round trips to shard 0 and to each other at once, so
 * sends race with sleeps from several producers. A lost wake-up hangs (the test times out). */
static atomic_long round_trips;

static int pingpong(void *arg)
{
    long n = (long)(intptr_t)arg;
    int me = tpc_shard_id(), count = tpc_shard_count();
    for (long i = 0; i < n; i++) {
        int target = (int)((me + 1 + i % (count - 1)) % count), r = -1;
        if (tpc_call_on(target, my_shard, (void *)(intptr_t)(i & 7), &r) != 0 ||
            r != target * 10 + (int)(i & 7)) {
            CHECK(0);
            return -1;
        }
        atomic_fetch_add(&round_trips, 1);
    }
    return 0;
}

/* Shard 0 waits for shards 1-3 on a wait group that their last messages count down: it sleeps
 * in between, so that its own wake-ups are raced too. */
static tpc_waitgroup pingpongs_done;

static void pingpong_done(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_wg_done(&pingpongs_done), 0);
}

static int remote_pingpong(void *arg)
{
    int rc = pingpong(arg);
    CHECK_EQ(tpc_submit_to(0, pingpong_done, NULL), 0);
    return rc;
}

static void start_pingpong(void *arg)
{
    CHECK_EQ(tpc_spawn(remote_pingpong, arg, NULL), 0);
}

static int wakeup_main(void *arg)
{
    long n = (long)(intptr_t)arg;
    CHECK_EQ(tpc_wg_init(&pingpongs_done), 0);
    CHECK_EQ(tpc_wg_add(&pingpongs_done, 3), 0);
    for (int i = 1; i < 4; i++)
        CHECK_EQ(tpc_submit_to(i, start_pingpong, (void *)(intptr_t)n), 0);
    CHECK_EQ(pingpong((void *)(intptr_t)n), 0);
    CHECK_EQ(tpc_wg_wait(&pingpongs_done), 0);
    CHECK_EQ(atomic_load(&round_trips), 4 * n);
    CHECK_EQ(tpc_wg_destroy(&pingpongs_done), 0);
    return 0;
}

static void test_no_lost_wakeups(void **state)
{
    (void)state;
    long n = getenv("TPC_TEST_SLOW") ? 2000 : 20000;
    atomic_store(&round_trips, 0);
    tpc_config c = {.shards = 4, .spin_ns = -1};
    run_expect(&c, wakeup_main, (void *)(intptr_t)n, 0);
    assert_int_equal(atomic_load(&round_trips), 4 * n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_caller_gives_up),
        cmocka_unit_test(test_call_at_shutdown),
        cmocka_unit_test(test_no_lost_wakeups),
    };
    return cmocka_run_group_tests_name("call", tests, NULL, NULL);
}
