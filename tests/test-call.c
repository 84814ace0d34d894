/* Calls to other shards: tpc_call_on, tpc_on_all, tpc_stats. Results, errors, a caller that
 * stops waiting (deadline) while its call is still queued, and a call in flight at shutdown;
 * ASan and valgrind check that no record leaks or is used after it is freed. */
#include <errno.h>
#include "helpers.h"
#include "core/rings.h" /* tpc__rings_ready */

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

/* A reply that lands after the caller's cancel woke it but before it ran again wins: the call
 * returns fn's result. (The caller abandoned its record instead, which nobody freed, and the
 * result was lost.) The order is forced: shard 1 has replied before the cancel, and 100 ready
 * fibers queued ahead of the woken caller exceed a run phase's quota, so the loop drains the
 * rings (the reply) before it runs the caller. */
static atomic_int race_go;

static int race_fn(void *arg)
{
    (void)arg;
    while (!atomic_load(&race_go))
        tpc_yield();
    return 42;
}

static int race_caller(void *arg)
{
    int *out = arg;
    out[0] = tpc_call_on(1, race_fn, NULL, &out[1]);
    return 0;
}

static int nop_fiber(void *arg)
{
    (void)arg;
    return 0;
}

static int reply_race_main(void *arg)
{
    (void)arg;
    int out[2] = {-99, -99};
    atomic_store(&race_go, 0);
    tpc_fiber *c;
    CHECK_EQ(tpc_spawn(race_caller, out, &c), 0);
    loop_turns(3); /* it waits for shard 1 */
    atomic_store(&race_go, 1);
    int64_t until = t_now_ns() + t_wait_limit_ns();
    while (!tpc__rings_ready(tpc__self) && t_now_ns() < until)
        ; /* the reply is in this shard's ring: wait for it without letting the loop run */
    CHECK(tpc__rings_ready(tpc__self));
    for (int i = 0; i < 100; i++)
        CHECK_EQ(tpc_spawn(nop_fiber, NULL, NULL), 0);
    CHECK_EQ(tpc_cancel(c), 0);
    CHECK_EQ(tpc_join(c, NULL), 0);
    CHECK_EQ(out[0], 0);
    CHECK_EQ(out[1], 42);
    return 0;
}

static void test_reply_after_cancel_wins(void **state)
{
    (void)state;
    tpc_config c = {.shards = 2, .spin_ns = -1};
    run_expect(&c, reply_race_main, NULL, 0);
}

/* ---- Calls that own their argument: tpc_call_owned, tpc_call_copy, tpc_call_many ----
 * Every argument is released exactly once, and only after its fn has returned: an argument
 * records fn's return (fn_done) and the release checks it, counts itself, and poisons the
 * record so that a second release is caught (ASan sees the use after free as well). */
struct owned {
    int magic; /* OWNED_LIVE until released */
    int value;
    atomic_int *fn_done; /* set by fn when it returns */
    int released_on;     /* the shard the release ran on */
};
#define OWNED_LIVE 0x5eed
static atomic_int released, release_bad, fns_done;
static int released_shard = -2;

static struct owned *owned_new(int value)
{
    struct owned *o = calloc(1, sizeof(*o));
    o->magic = OWNED_LIVE;
    o->value = value;
    return o;
}

static void owned_release(void *p)
{
    struct owned *o = p;
    if (o->magic != OWNED_LIVE || (o->fn_done && !atomic_load(o->fn_done)))
        atomic_fetch_add(&release_bad, 1);
    o->magic = 0;
    released_shard = tpc_shard_id();
    atomic_fetch_add(&released, 1);
    free(o);
}

static void owned_reset(void)
{
    atomic_store(&released, 0);
    atomic_store(&release_bad, 0);
    atomic_store(&fns_done, 0);
    released_shard = -2;
}

static int owned_fn(void *p) /* doubles the value in place; returns the shard */
{
    struct owned *o = p;
    o->value *= 2;
    atomic_fetch_add(&fns_done, 1);
    return tpc_shard_id();
}

static void owned_from_callback(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_call_owned(1, owned_fn, owned_new(1), owned_release, NULL), -EPERM);
    CHECK_EQ(tpc_call_copy(1, owned_fn, &(int){1}, sizeof(int), NULL), -EPERM);
    tpc_call_item it = {.shard = 1, .arg = owned_new(1)};
    CHECK_EQ(tpc_call_many(&it, 1, owned_fn, owned_release), -EPERM);
}

static int owned_basics_main(void *arg)
{
    (void)arg;
    owned_reset();
    int r = -1;
    for (int sh = 0; sh < 2; sh++) { /* another shard, and the caller's own */
        struct owned *o = owned_new(21);
        CHECK_EQ(tpc_call_owned(sh, owned_fn, o, owned_release, &r), 0);
        CHECK_EQ(r, sh);
        CHECK_EQ(o->value, 42); /* fn ran: the argument is the caller's again */
        CHECK_EQ(atomic_load(&released), 0);
        free(o);
    }
    /* Misuse: an error, fn never runs, the argument is released at once, on the caller. */
    CHECK_EQ(tpc_call_owned(2, owned_fn, owned_new(1), owned_release, &r), -EINVAL);
    CHECK_EQ(tpc_call_owned(-1, owned_fn, owned_new(1), owned_release, &r), -EINVAL);
    CHECK_EQ(tpc_call_owned(1, NULL, owned_new(1), owned_release, &r), -EINVAL);
    CHECK_EQ(tpc_call_owned(1, my_shard, NULL, NULL, &r), 0); /* no release: fine */
    CHECK_EQ(atomic_load(&released), 3);
    CHECK_EQ(released_shard, 0);
    CHECK_EQ(atomic_load(&fns_done), 2);
    /* A cancelled caller: nothing is sent, the argument is released. */
    CHECK_EQ(tpc_cancel(tpc_self()), 0);
    CHECK_EQ(tpc_call_owned(1, owned_fn, owned_new(1), owned_release, &r), -ECANCELED);
    CHECK_EQ(atomic_load(&released), 4);
    CHECK_EQ(atomic_load(&fns_done), 2);
    CHECK_EQ(tpc_defer(owned_from_callback, NULL), 0);
    tpc_yield();
    CHECK_EQ(atomic_load(&released), 6);
    CHECK_EQ(atomic_load(&release_bad), 0);
    return 0;
}

static void test_owned_basics(void **state)
{
    (void)state;
    run_main(2, owned_basics_main, NULL);
    assert_int_equal(tpc_call_owned(0, owned_fn, owned_new(1), owned_release, NULL), -EPERM);
    assert_int_equal(atomic_load(&released), 7);
    assert_int_equal(atomic_load(&release_bad), 0);
}

static int late_owned(void *p) /* runs once shard 1 is free again */
{
    struct owned *o = p;
    o->value = 99;
    if (o->fn_done)
        atomic_store(o->fn_done, 1);
    return 0;
}

/* The caller's deadline passes while its call waits behind a busy target: it returns at once,
 * and the argument is released later, on the caller's shard, after fn has returned. */
static atomic_int late_done;
static int owned_deadline_main(void *arg)
{
    (void)arg;
    owned_reset();
    atomic_store(&late_done, 0);
    atomic_store(&gave_up, 0);
    CHECK_EQ(tpc_submit_to(1, busy_until_given_up, NULL), 0);
    struct owned *o = owned_new(1);
    o->fn_done = &late_done;
    CHECK_EQ(tpc_deadline_set(10 * 1000 * 1000), 0);
    CHECK_EQ(tpc_call_owned(1, late_owned, o, owned_release, NULL), -ETIMEDOUT);
    CHECK_EQ(tpc_deadline_clear(), 0);
    CHECK_EQ(atomic_load(&released), 0); /* fn has not run yet: the argument lives */
    atomic_store(&gave_up, 1);
    WAIT_UNTIL(atomic_load(&released) == 1);
    CHECK_EQ(atomic_load(&late_done), 1);
    CHECK_EQ(released_shard, 0);
    CHECK_EQ(atomic_load(&release_bad), 0);
    return 0;
}

static void test_owned_caller_gives_up(void **state)
{
    (void)state;
    run_main(2, owned_deadline_main, NULL);
}

/* Shutdown while owned calls wait behind a busy target: each argument is released exactly once,
 * after its fn ran or when it never will. */
static int owned_shutdown_main(void *arg)
{
    (void)arg;
    atomic_store(&gave_up, 0);
    CHECK_EQ(tpc_submit_to(1, busy_until_given_up, NULL), 0);
    CHECK_EQ(tpc_spawn(stopper, NULL, NULL), 0);
    CHECK_EQ(tpc_call_owned(1, owned_fn, owned_new(1), owned_release, NULL), -ECANCELED);
    atomic_store(&gave_up, 1);
    return 0;
}

static void test_owned_at_shutdown(void **state)
{
    (void)state;
    owned_reset();
    for (int i = 0; i < 3; i++)
        run_main(2, owned_shutdown_main, NULL);
    assert_int_equal(atomic_load(&released), 3);
    assert_int_equal(atomic_load(&release_bad), 0);
}

struct pair {
    int a, b;
};
static int sum_pair(void *p)
{
    struct pair *q = p;
    int s = q->a + q->b;
    q->a = 0; /* the copy's, lost */
    return s;
}

static int copy_main(void *arg)
{
    (void)arg;
    struct pair p = {.a = 40, .b = 2};
    int r = -1;
    CHECK_EQ(tpc_call_copy(1, sum_pair, &p, sizeof(p), &r), 0);
    CHECK_EQ(r, 42);
    CHECK_EQ(p.a, 40);
    CHECK_EQ(tpc_call_copy(0, sum_pair, &p, sizeof(p), &r), 0);
    CHECK_EQ(r, 42);
    CHECK_EQ(p.a, 40);
    CHECK_EQ(tpc_call_copy(1, sum_pair, NULL, sizeof(p), &r), -EINVAL);
    CHECK_EQ(tpc_call_copy(1, NULL, &p, sizeof(p), &r), -EINVAL);
    CHECK_EQ(tpc_call_copy(5, sum_pair, &p, sizeof(p), &r), -EINVAL); /* copy freed (ASan) */
    /* A copy outlives a caller that gave up: the stack struct can go at once. */
    atomic_store(&gave_up, 0);
    atomic_store(&late_ran, 0);
    CHECK_EQ(tpc_submit_to(1, busy_until_given_up, NULL), 0);
    CHECK_EQ(tpc_deadline_set(10 * 1000 * 1000), 0);
    CHECK_EQ(tpc_call_copy(1, late, &p, sizeof(p), &r), -ETIMEDOUT);
    CHECK_EQ(tpc_deadline_clear(), 0);
    atomic_store(&gave_up, 1);
    WAIT_UNTIL(atomic_load(&late_ran));
    return 0;
}

static void test_copy(void **state)
{
    (void)state;
    run_main(2, copy_main, NULL);
}

static int many_main(void *arg)
{
    (void)arg;
    owned_reset();
    int n = tpc_shard_count();
    tpc_call_item it[20];
    for (int i = 0; i < 20; i++) /* every shard, several times (more than MANY_STACK) */
        it[i] = (tpc_call_item){.shard = i % n, .arg = owned_new(i), .result = -7, .err = -7};
    it[3].shard = n; /* a bad shard fails alone */
    CHECK_EQ(tpc_call_many(it, 20, owned_fn, owned_release), 0);
    for (int i = 0; i < 20; i++) {
        struct owned *o = it[i].arg;
        if (i == 3) {
            CHECK_EQ(it[i].err, -EINVAL);
            CHECK_EQ(o->value, 3);
        } else {
            CHECK_EQ(it[i].err, 0);
            CHECK_EQ(it[i].result, i % n);
            CHECK_EQ(o->value, 2 * i);
        }
        free(o);
    }
    CHECK_EQ(atomic_load(&released), 0);
    CHECK_EQ(tpc_call_many(NULL, 0, owned_fn, owned_release), 0);
    CHECK_EQ(tpc_call_many(NULL, 1, owned_fn, owned_release), -EINVAL);
    it[0] = (tpc_call_item){.shard = 1, .arg = owned_new(0)};
    it[1] = (tpc_call_item){.shard = 2, .arg = owned_new(0)};
    CHECK_EQ(tpc_call_many(it, 2, NULL, owned_release), -EINVAL);
    CHECK_EQ(atomic_load(&released), 2);
    CHECK_EQ(atomic_load(&release_bad), 0);
    return 0;
}

static void test_many(void **state)
{
    (void)state;
    run_main(3, many_main, NULL);
}

/* The caller gives up while one target is busy: the calls that came back and the one still
 * queued are all released, each once and after its fn. */
static int many_deadline_main(void *arg)
{
    (void)arg;
    owned_reset();
    atomic_store(&late_done, 0);
    atomic_store(&gave_up, 0);
    CHECK_EQ(tpc_submit_to(2, busy_until_given_up, NULL), 0);
    tpc_call_item it[3];
    for (int i = 0; i < 3; i++)
        it[i] = (tpc_call_item){.shard = i, .arg = owned_new(i)};
    ((struct owned *)it[2].arg)->fn_done = &late_done;
    CHECK_EQ(tpc_deadline_set(20 * 1000 * 1000), 0);
    CHECK_EQ(tpc_call_many(it, 3, late_owned, owned_release), -ETIMEDOUT);
    CHECK_EQ(tpc_deadline_clear(), 0);
    CHECK(atomic_load(&released) <= 2); /* shard 2's argument waits for its fn */
    atomic_store(&gave_up, 1);
    WAIT_UNTIL(atomic_load(&released) == 3);
    CHECK_EQ(atomic_load(&late_done), 1);
    CHECK_EQ(atomic_load(&release_bad), 0);
    return 0;
}

static void test_many_caller_gives_up(void **state)
{
    (void)state;
    run_main(3, many_deadline_main, NULL);
}

static int many_shutdown_main(void *arg)
{
    (void)arg;
    atomic_store(&gave_up, 0);
    CHECK_EQ(tpc_submit_to(1, busy_until_given_up, NULL), 0);
    CHECK_EQ(tpc_spawn(stopper, NULL, NULL), 0);
    tpc_call_item it[2] = {{.shard = 0, .arg = owned_new(0)}, {.shard = 1, .arg = owned_new(1)}};
    CHECK_EQ(tpc_call_many(it, 2, owned_fn, owned_release), -ECANCELED);
    atomic_store(&gave_up, 1);
    return 0;
}

static void test_many_at_shutdown(void **state)
{
    (void)state;
    owned_reset();
    for (int i = 0; i < 3; i++)
        run_main(2, many_shutdown_main, NULL);
    assert_int_equal(atomic_load(&released), 6);
    assert_int_equal(atomic_load(&release_bad), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_caller_gives_up),
        cmocka_unit_test(test_call_at_shutdown),
        cmocka_unit_test(test_no_lost_wakeups),
        cmocka_unit_test(test_reply_after_cancel_wins),
        cmocka_unit_test(test_owned_basics),
        cmocka_unit_test(test_owned_caller_gives_up),
        cmocka_unit_test(test_owned_at_shutdown),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_many_caller_gives_up),
        cmocka_unit_test(test_many_at_shutdown),
    };
    return cmocka_run_group_tests_name("call", tests, NULL, NULL);
}
