/* Time on a shard: sleeping fibers, per-fiber deadlines on every kind of wait, callback timers
 * (one-shot, periodic, restart and stop from their own callback, firing order), bad input, and
 * 100k sleeping fibers on one shard. Timing checks are bounds: never early, and late by no more
 * than a generous slack (multiplied under sanitizers and valgrind). The sleeps here are the
 * behaviour under test (a sleep measured, a time that must pass for a timer to fire or not),
 * never a wait for something else to happen. */
#include <errno.h>
#include <string.h>
#include "helpers.h"

#define MS 1000000LL

static int64_t slack(void)
{
    return (getenv("TPC_TEST_SLOW") ? 20 : 1) * 100 * MS;
}

/* ---- Sleep ---- */
static int order[8], norder;
static uint64_t sleep_base; /* the sleepers' common start, so that their order is their delays' */

static int sleeper(void *arg)
{
    int64_t ms = (int64_t)(intptr_t)arg;
    uint64_t t0 = tpc_now_fresh();
    CHECK_EQ(tpc_sleep(ms * MS), 0);
    int64_t took = (int64_t)(tpc_now_fresh() - t0);
    CHECK(took >= ms * MS);           /* never early */
    CHECK(took <= ms * MS + slack()); /* and not very late */
    /* Then in order of deadline, however late each fiber started (a loaded machine, valgrind,
     * or a shuffled build may start the 20 ms one well after the 30 ms one). */
    CHECK_EQ(tpc_sleep_until(sleep_base + (uint64_t)(2 * ms) * MS), 0);
    order[norder++] = (int)ms;
    return 0;
}

static int sleep_main(void *arg)
{
    (void)arg;
    norder = 0;
    sleep_base = tpc_now_fresh() + 2 * slack(); /* past every relative sleep below */
    tpc_fiber *f[3];
    tpc_spawn(sleeper, (void *)30, &f[0]);
    tpc_spawn(sleeper, (void *)10, &f[1]);
    tpc_spawn(sleeper, (void *)20, &f[2]);
    for (int i = 0; i < 3; i++)
        tpc_join(f[i], NULL);
    CHECK_EQ(norder, 3);
    CHECK_EQ(order[0], 10);
    CHECK_EQ(order[1], 20);
    CHECK_EQ(order[2], 30);
    CHECK_EQ(tpc_sleep(-1), -EINVAL);
    CHECK_EQ(tpc_sleep(0), 0);
    CHECK_EQ(tpc_sleep_until(0), 0); /* in the past: the next loop iteration */
    uint64_t t0 = tpc_now_fresh();
    CHECK_EQ(tpc_sleep_until(t0 + 5 * MS), 0);
    CHECK(tpc_now_fresh() >= t0 + 5 * MS);
    return 0;
}

static void test_sleep(void **state)
{
    (void)state;
    run_main(1, sleep_main, NULL);
    assert_int_equal(tpc_sleep(1), -EPERM);
}

/* A huge sleep is clamped, not overflowed, and cancelling wakes it promptly. */
static int long_sleeper(void *arg)
{
    (void)arg;
    return tpc_sleep(INT64_MAX);
}

static int cancel_sleep_main(void *arg)
{
    (void)arg;
    tpc_fiber *f;
    int r = 0;
    tpc_spawn(long_sleeper, NULL, &f);
    CHECK_EQ(tpc_yield(), 0);
    uint64_t t0 = tpc_now_fresh();
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    CHECK((int64_t)(tpc_now_fresh() - t0) < slack());
    return 0;
}

static void test_cancel_sleep(void **state)
{
    (void)state;
    run_main(1, cancel_sleep_main, NULL);
}

/* ---- Deadlines on every kind of wait ---- */
static tpc_mutex dl_mutex;
static tpc_sem dl_sem;
static tpc_event dl_event;
static tpc_waitgroup dl_wg;
static tpc_chan dl_empty, dl_full;

static int wait_cancelled(void *arg)
{
    (void)arg;
    tpc_event never;
    tpc_event_init(&never, false);
    return tpc_event_wait(&never); /* until cancelled */
}

/* A wait under a 20 ms deadline: -ETIMEDOUT, not before the deadline, not much after. */
static void expect_timeout(const char *what, int rc, uint64_t t0)
{
    int64_t took = (int64_t)(tpc_now_fresh() - t0);
    if (rc != -ETIMEDOUT || took < 20 * MS || took > 20 * MS + slack()) {
        fprintf(stderr, "%s: rc %d after %lld ns\n", what, rc, (long long)took);
        CHECK(0);
    }
}

#define TIMED(what, call)                                                                          \
    do {                                                                                           \
        uint64_t t0_ = tpc_now_fresh();                                                            \
        CHECK_EQ(tpc_deadline_set(20 * MS), 0);                                                    \
        expect_timeout(what, (call), t0_);                                                         \
        CHECK_EQ(tpc_deadline_clear(), 0);                                                         \
    } while (0)

static int mutex_locker(void *arg)
{
    (void)arg;
    TIMED("mutex", tpc_mutex_lock(&dl_mutex));
    return 0;
}

static int deadline_main(void *arg)
{
    (void)arg;
    tpc_fiber *other, *locker;
    void *v;
    tpc_mutex_init(&dl_mutex);
    tpc_sem_init(&dl_sem, 0);
    tpc_event_init(&dl_event, false);
    tpc_wg_init(&dl_wg);
    tpc_wg_add(&dl_wg, 1);
    tpc_chan_init(&dl_empty, 1);
    tpc_chan_init(&dl_full, 1);
    tpc_chan_trysend(&dl_full, (void *)1);
    tpc_spawn(wait_cancelled, NULL, &other);

    TIMED("sleep", tpc_sleep(10 * 1000 * MS));
    int other_result = 0;
    TIMED("join", tpc_join(other, &other_result)); /* then cancels other and waits for it */
    CHECK_EQ(other_result, -ECANCELED);
    TIMED("recv", tpc_chan_recv(&dl_empty, &v));
    TIMED("send", tpc_chan_send(&dl_full, (void *)2));
    TIMED("semaphore", tpc_sem_acquire(&dl_sem));
    TIMED("event", tpc_event_wait(&dl_event));
    TIMED("wait group", tpc_wg_wait(&dl_wg));
    CHECK_EQ(tpc_mutex_lock(&dl_mutex), 0);
    tpc_spawn(mutex_locker, NULL, &locker);
    CHECK_EQ(tpc_join(locker, NULL), 0);

    /* Nothing was taken or delivered, and no waiter was left behind. */
    CHECK_EQ(tpc_mutex_unlock(&dl_mutex), 0);
    CHECK_EQ(tpc_mutex_trylock(&dl_mutex), 0); /* nobody took it over */
    CHECK_EQ(tpc_mutex_unlock(&dl_mutex), 0);
    CHECK_EQ(tpc_chan_len(&dl_full), 1);
    CHECK_EQ(tpc_chan_tryrecv(&dl_full, &v), 0);
    CHECK_EQ((intptr_t)v, 1);
    CHECK_EQ(tpc_chan_len(&dl_empty), 0);
    CHECK_EQ(tpc_sem_value(&dl_sem), 0);
    CHECK_EQ(tpc_sem_destroy(&dl_sem), 0);
    CHECK_EQ(tpc_event_destroy(&dl_event), 0);
    CHECK_EQ(tpc_chan_destroy(&dl_empty), 0);
    CHECK_EQ(tpc_chan_destroy(&dl_full), 0);
    CHECK_EQ(tpc_wg_done(&dl_wg), 0);
    CHECK_EQ(tpc_wg_destroy(&dl_wg), 0);
    CHECK_EQ(tpc_mutex_destroy(&dl_mutex), 0);

    /* An expired deadline fails waits at once; a sleep shorter than the deadline succeeds. */
    CHECK_EQ(tpc_deadline_set(0), 0);
    CHECK_EQ(tpc_sleep(1 * MS), -ETIMEDOUT);
    CHECK_EQ(tpc_yield(), 0); /* a yield is not a wait */
    CHECK_EQ(tpc_deadline_set(-1), -EINVAL);
    CHECK_EQ(tpc_deadline_set(200 * MS), 0);
    CHECK(tpc_deadline_get() > tpc_now_fresh());
    CHECK_EQ(tpc_sleep(1 * MS), 0);
    CHECK_EQ(tpc_deadline_clear(), 0);
    CHECK_EQ(tpc_deadline_get(), 0);
    return 0;
}

static void test_deadlines(void **state)
{
    (void)state;
    run_main(1, deadline_main, NULL);
    assert_int_equal(tpc_deadline_set(1), -EPERM);
    assert_int_equal(tpc_deadline_clear(), -EPERM);
}

/* ---- Callback timers ---- */
static int fires[8], nfires;
static tpc_timer tm[5];
static tpc_event timers_done;

static void record(tpc_timer *t, void *arg)
{
    (void)t;
    fires[nfires++] = (int)(intptr_t)arg;
    if (nfires == 5)
        tpc_event_set(&timers_done);
}

static int order_main(void *arg)
{
    (void)arg;
    nfires = 0;
    tpc_event_init(&timers_done, false);
    uint64_t at = tpc_now_fresh() + 5 * MS;
    for (int i = 0; i < 5; i++)
        CHECK_EQ(tpc_timer_init(&tm[i], record, (void *)(intptr_t)i), 0);
    /* Equal deadlines fire in start order; a restart moves a timer to the back. */
    for (int i = 0; i < 5; i++)
        CHECK_EQ(tpc_timer_start_at(&tm[i], at, 0), 0);
    CHECK_EQ(tpc_timer_start_at(&tm[1], at, 0), 0);
    CHECK(tpc_timer_pending(&tm[0]));
    CHECK_EQ(tpc_event_wait(&timers_done), 0);
    CHECK(tpc_now_fresh() >= at);
    static const int want[] = {0, 2, 3, 4, 1};
    for (int i = 0; i < 5; i++)
        CHECK_EQ(fires[i], want[i]);
    CHECK(!tpc_timer_pending(&tm[0]));
    /* Stopping a stopped timer is a no-op; a timer started twice fires once. */
    CHECK_EQ(tpc_timer_stop(&tm[0]), 0);
    CHECK_EQ(tpc_timer_stop(&tm[0]), 0);
    nfires = 0;
    CHECK_EQ(tpc_timer_start(&tm[0], 2 * MS, 0), 0);
    CHECK_EQ(tpc_timer_start(&tm[0], 1 * MS, 0), 0);
    CHECK_EQ(tpc_sleep(10 * MS), 0); /* past both times: a second firing would have come */
    CHECK_EQ(nfires, 1);
    /* A deadline in the past fires on the next loop iteration. */
    CHECK_EQ(tpc_timer_start_at(&tm[0], 1, 0), 0);
    CHECK_EQ(tpc_sleep(0), 0);
    CHECK_EQ(nfires, 2);
    /* Bad input. */
    CHECK_EQ(tpc_timer_start(&tm[0], -1, 0), -EINVAL);
    CHECK_EQ(tpc_timer_start(&tm[0], 1, -5), -EINVAL);
    CHECK_EQ(tpc_timer_init(&tm[0], NULL, NULL), -EINVAL);
    CHECK_EQ(tpc_timer_start(NULL, 1, 0), -EINVAL); /* (was -EXDEV) */
    CHECK_EQ(tpc_timer_stop(NULL), -EINVAL);
    CHECK(!tpc_timer_pending(&tm[0]));
    return 0;
}

static void test_timer_order(void **state)
{
    (void)state;
    run_main(1, order_main, NULL);
    tpc_timer t;
    assert_int_equal(tpc_timer_init(&t, record, NULL), -EPERM);
}

/* Periodic, stopping itself after 5 firings; another restarting itself from its callback. */
static int periodic_count, restart_count;
static uint64_t periodic_start;

static void periodic(tpc_timer *t, void *arg)
{
    (void)arg;
    periodic_count++;
    /* The k-th firing is never before start + k periods. */
    CHECK(tpc_now_fresh() >= periodic_start + (uint64_t)periodic_count * 3 * MS);
    if (periodic_count == 5) {
        CHECK_EQ(tpc_timer_stop(t), 0);
        tpc_event_set(&timers_done);
    }
}

static void restarter(tpc_timer *t, void *arg)
{
    (void)arg;
    if (++restart_count < 4)
        CHECK_EQ(tpc_timer_start(t, 1 * MS, 0), 0);
}

static int periodic_main(void *arg)
{
    (void)arg;
    tpc_timer p, r;
    tpc_event_init(&timers_done, false);
    periodic_count = restart_count = 0;
    tpc_timer_init(&p, periodic, NULL);
    tpc_timer_init(&r, restarter, NULL);
    periodic_start = tpc_now_fresh();
    CHECK_EQ(tpc_timer_start(&p, 3 * MS, 3 * MS), 0);
    CHECK_EQ(tpc_timer_start(&r, 1 * MS, 0), 0);
    CHECK_EQ(tpc_event_wait(&timers_done), 0);
    CHECK_EQ(periodic_count, 5);
    CHECK(!tpc_timer_pending(&p));
    CHECK_EQ(tpc_sleep(20 * MS), 0); /* a period would have fired in this time */
    CHECK_EQ(periodic_count, 5);     /* stopped means stopped */
    CHECK_EQ(restart_count, 4);
    return 0;
}

static void test_timer_periodic(void **state)
{
    (void)state;
    run_main(1, periodic_main, NULL);
}
/* A timer belongs to the shard that initialised it. */
static tpc_timer foreign_timer;
static tpc_waitgroup foreign_wg;

static void foreign_back(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_wg_done(&foreign_wg), 0);
}

static void touch_foreign(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_shard_id(), 1);
    CHECK_EQ(tpc_timer_start(&foreign_timer, 1, 0), -EXDEV);
    CHECK_EQ(tpc_timer_stop(&foreign_timer), -EXDEV);
    CHECK_EQ(tpc_submit_to(0, foreign_back, NULL), 0);
}

static int foreign_main(void *arg)
{
    (void)arg;
    tpc_timer_init(&foreign_timer, record, NULL);
    tpc_wg_init(&foreign_wg);
    tpc_wg_add(&foreign_wg, 1);
    CHECK_EQ(tpc_submit_to(1, touch_foreign, NULL), 0);
    CHECK_EQ(tpc_wg_wait(&foreign_wg), 0);
    return 0;
}

static void test_timer_other_shard(void **state)
{
    (void)state;
    run_main(2, foreign_main, NULL);
}

/* ---- A fine tick: 50 us. ---- */
static int fine_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        uint64_t t0 = tpc_now_fresh();
        CHECK_EQ(tpc_sleep(300 * 1000), 0);
        int64_t took = (int64_t)(tpc_now_fresh() - t0);
        CHECK(took >= 300 * 1000);
        CHECK(took < 300 * 1000 + slack());
    }
    return 0;
}

static void test_fine_tick(void **state)
{
    (void)state;
    tpc_config c = {.shards = 1, .timer_tick_ns = 50 * 1000};
    run_config(&c, fine_main, NULL);
    c.timer_tick_ns = 1000; /* below the 10 us minimum */
    assert_int_equal(tpc_run(&c, fine_main, NULL), -EINVAL);
}

/* ---- 100k sleeping fibers on one shard ---- */
static int nwoke, nsleepers;
static tpc_event all_woke;
static int nap(void *arg)
{
    int64_t ns = (int64_t)(intptr_t)arg;
    uint64_t t0 = tpc_now_fresh();
    int rc = tpc_sleep(ns); /* the behaviour under test */
    CHECK(rc == 0 && tpc_now_fresh() - t0 >= (uint64_t)ns);
    if (++nwoke == nsleepers)
        tpc_event_set(&all_woke);
    return rc;
}

static int many_main(void *arg)
{
    (void)arg;
#if defined(__SANITIZE_THREAD__)
    int n = 4000; /* TSan gives every fiber a thread context, and allows 8128 */
#else
    int n = getenv("TPC_TEST_SLOW") ? 20000 : 100000;
#endif
    nwoke = 0;
    nsleepers = n;
    CHECK_EQ(tpc_event_init(&all_woke, false), 0);
    tpc_fiber_opts o = {.stack_size = 16 * 1024, .no_guard = true, .detached = true};
    uint64_t seed = 12345;
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t ns = (int64_t)(1 + (seed >> 33) % 100) * MS;
        CHECK_EQ(tpc_spawn_opts(&o, nap, (void *)(intptr_t)ns, NULL), 0);
    }
    CHECK_EQ(tpc_event_wait(&all_woke), 0);
    CHECK_EQ(nwoke, n);
    return 0;
}

static void test_many_sleepers(void **state)
{
    (void)state;
    run_main(1, many_main, NULL);
}

/* ---- A wake that delivered something is not overwritten by a later one. ---- */
static tpc_chan race_chan;
static tpc_fiber *race_victim;
static uint64_t race_at;

static void hand_value(tpc_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    CHECK_EQ(tpc_chan_trysend(&race_chan, (void *)42), 0); /* straight to the waiting receiver */
}

static int receive_by_deadline(void *arg)
{
    (void)arg;
    void *v = NULL;
    CHECK_EQ(tpc_deadline_set_at(race_at), 0); /* the same tick as the sender's timer */
    int rc = tpc_chan_recv(&race_chan, &v);
    return rc < 0 ? rc : (int)(intptr_t)v;
}

static void cancel_victim(tpc_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    CHECK_EQ(tpc_cancel(race_victim), 0);
}

static int sleep_to_race(void *arg)
{
    (void)arg;
    return tpc_sleep_until(race_at);
}

static int wake_race_main(void *arg)
{
    (void)arg;
    tpc_timer t;
    tpc_fiber *f;
    int r = 0;
    /* The timer started first fires first within the tick: it hands the receiver a value;
     * then the receiver's deadline fires in the same tick. The value must win. */
    CHECK_EQ(tpc_chan_init(&race_chan, 0), 0);
    race_at = tpc_now_fresh() + 5 * MS;
    CHECK_EQ(tpc_timer_init(&t, hand_value, NULL), 0);
    CHECK_EQ(tpc_timer_start_at(&t, race_at, 0), 0);
    CHECK_EQ(tpc_spawn(receive_by_deadline, NULL, &f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, 42);
    CHECK_EQ(tpc_chan_destroy(&race_chan), 0);
    /* A cancel in the same tick as the sleep's own end: -ECANCELED must win. */
    race_at = tpc_now_fresh() + 5 * MS;
    CHECK_EQ(tpc_timer_init(&t, cancel_victim, NULL), 0);
    CHECK_EQ(tpc_timer_start_at(&t, race_at, 0), 0);
    CHECK_EQ(tpc_spawn(sleep_to_race, NULL, &race_victim), 0);
    CHECK_EQ(tpc_join(race_victim, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    return 0;
}

static void test_first_wake_wins(void **state)
{
    (void)state;
    run_main(1, wake_race_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sleep),           cmocka_unit_test(test_cancel_sleep),
        cmocka_unit_test(test_deadlines),       cmocka_unit_test(test_timer_order),
        cmocka_unit_test(test_timer_periodic),  cmocka_unit_test(test_timer_other_shard),
        cmocka_unit_test(test_fine_tick),       cmocka_unit_test(test_many_sleepers),
        cmocka_unit_test(test_first_wake_wins),
    };
    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
