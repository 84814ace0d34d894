/* Faults in the cross-thread protocols, one case each: a two-slot message pending on a ring with
 * one free slot, values sent before a channel's close, a channel end released from the other
 * shard, tpc_on_all with a target that cannot start the function, tpc_defer from a message run
 * after its shard stopped, and calls from a foreign thread while tpc_wait frees the runtime. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include "helpers.h"
#ifdef TPC_FAULT_INJECTION
#include "core/uring.h"
#endif

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin_ns(uint64_t ns)
{
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < ns)
        ;
}

static void noop(void *arg)
{
    (void)arg;
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* ---- A two-slot message pending on a ring with one free slot. ----
 * Shard 0 computes without draining its rings. Shard 1 fills its ring to shard 0 (4 slots)
 * so that one slot stays free, and queues a two-slot message behind it: the message cannot go
 * until shard 0 drains. Shard 0 then sends to shard 1, which sets shard 1's doorbell for the
 * pair. Shard 1 must go on running its fibers (its ticker), and sleep between ticks, instead
 * of taking the pending message for work it can do. */
static atomic_int ps_started, ps_busy, ps_filling;
static atomic_long ps_ticks;

static int ps_ticker(void *arg)
{
    (void)arg;
    /* Sleeping between ticks is the behaviour under test: shard 1 must go on sleeping and
     * waking for its timers while the wide message is pending. */
    while (tpc_sleep(1000000) == 0)
        atomic_fetch_add(&ps_ticks, 1);
    return 0;
}

static int ps_filler(void *arg) /* shard 1 */
{
    (void)arg;
    CHECK_EQ(tpc_spawn(ps_ticker, NULL, NULL), 0);
    atomic_store(&ps_started, 1);
    WAIT_UNTIL(atomic_load(&ps_busy));
    CHECK_EQ(tpc_submit_to(0, noop, NULL), 0);               /* 1 slot: 3 free */
    CHECK_EQ(tpc_spawn_on(0, NULL, nothing, NULL, NULL), 0); /* 2 slots: 1 free */
    atomic_store(&ps_filling, 1);
    CHECK_EQ(tpc_spawn_on(0, NULL, nothing, NULL, NULL), 0); /* pending until shard 0 drains */
    return 0;
}

static int ps_main(void *arg)
{
    (void)arg;
    tpc_fiber *r;
    CHECK_EQ(tpc_spawn_on(1, NULL, ps_filler, NULL, &r), 0);
    WAIT_UNTIL(atomic_load(&ps_started)); /* the request went out and runs */
    atomic_store(&ps_busy, 1);
    uint64_t t0 = now_ns();
    while (!atomic_load(&ps_filling) && now_ns() - t0 < 5000000000u)
        ;
    CHECK(atomic_load(&ps_filling));
    spin_ns(1000000); /* the pending message is queued by now (same turn of shard 1) */
    CHECK_EQ(tpc_submit_to(1, noop, NULL), 0); /* msg_batch is 2 with 4 slots: published */
    CHECK_EQ(tpc_submit_to(1, noop, NULL), 0);
    /* Shard 0 computes until shard 1 has ticked 3 times, or 5 s: under valgrind, which runs
     * one thread at a time, ticks come slowly; with the fault they never came. */
    long before = atomic_load(&ps_ticks);
    t0 = now_ns();
    while (atomic_load(&ps_ticks) - before < 3 && now_ns() - t0 < 5000000000u)
        ;
    long ticked = atomic_load(&ps_ticks) - before;
    tpc_shard_stats st;
    CHECK_EQ(tpc_stats(1, &st), 0);
    /* The fault made it none. */
    if (ticked < 3)
        fprintf(stderr, "shard 1 ticked %ld times in 5 s, %llu loops\n", ticked,
                (unsigned long long)st.loops);
    CHECK(ticked >= 3);
    CHECK(st.sleep_ns > 0);
    CHECK_EQ(tpc_join(r, NULL), 0);
    return 0;
}

static void test_pending_wide_message(void **state)
{
    (void)state;
    tpc_config c = {.shards = 2, .msg_slots = 4, .no_signals = true};
    run_config(&c, ps_main, NULL);
}

/* ---- Values sent before a close are received. ----
 * Fewer values than the channel's batch stay unpublished until the sending shard's loop turn;
 * a close (or release) from the sending shard, or from a shard that learned of the sends
 * through a message, must not overtake them. */
enum { XC_VALUES = 10, XC_ROUNDS = 50 };

static atomic_int xc_receivers;

static int xc_receiver(void *arg)
{
    tpc_xchan *c = arg;
    void *v;
    int got = 0, rc;
    atomic_fetch_add(&xc_receivers, 1); /* and then it waits in its first receive */
    while ((rc = tpc_xchan_recv(c, &v)) == 0) {
        CHECK_EQ((intptr_t)v, got + 1);
        got++;
    }
    CHECK_EQ(rc, -EPIPE);
    CHECK_EQ(tpc_xchan_release(c), 0);
    return got;
}

static int xc_send_all(tpc_xchan *c)
{
    for (int i = 0; i < XC_VALUES; i++)
        CHECK_EQ(tpc_xchan_send(c, (void *)(intptr_t)(i + 1)), 0);
    return 0;
}

static int xc_close_main(void *arg)
{
    bool close_first = arg != NULL;
    atomic_store(&xc_receivers, 0);
    for (int round = 0; round < XC_ROUNDS; round++) {
        tpc_xchan *c;
        CHECK_EQ(tpc_xchan_create(64, &c), 0);
        tpc_fiber *r;
        CHECK_EQ(tpc_spawn_on(1, NULL, xc_receiver, c, &r), 0);
        WAIT_UNTIL(atomic_load(&xc_receivers) == round + 1); /* the receiver has started */
        xc_send_all(c);
        if (close_first) {
            CHECK_EQ(tpc_xchan_close(c), 0);
            spin_ns(1000000); /* more work in the same turn: the loop publishes nothing */
        }
        CHECK_EQ(tpc_xchan_release(c), 0);
        int got = -1;
        CHECK_EQ(tpc_join(r, &got), 0);
        CHECK_EQ(got, XC_VALUES);
    }
    return 0;
}

static int xc_remote_sender(void *arg) /* shard 1: sends, returns, and its reply goes home */
{
    xc_send_all(arg);
    return 0;
}

static int xc_chain_main(void *arg) /* shard 0 receives; it closes once the sender returned */
{
    (void)arg;
    for (int round = 0; round < XC_ROUNDS; round++) {
        tpc_xchan *c;
        CHECK_EQ(tpc_xchan_create(64, &c), 0);
        tpc_fiber *r;
        CHECK_EQ(tpc_spawn_on(1, NULL, xc_remote_sender, c, &r), 0);
        CHECK_EQ(tpc_join(r, NULL), 0);
        CHECK_EQ(tpc_xchan_close(c), 0);
        void *v;
        int got = 0, rc;
        while ((rc = tpc_xchan_recv(c, &v)) == 0)
            got++;
        CHECK_EQ(rc, -EPIPE);
        CHECK_EQ(got, XC_VALUES);
        CHECK_EQ(tpc_xchan_release(c), 0);
        CHECK_EQ(tpc_xchan_release(c), 0);
    }
    return 0;
}

static void test_xchan_close_keeps_values(void **state)
{
    (void)state;
    run_main(2, xc_close_main, (void *)1);
}

static void test_xchan_release_keeps_values(void **state)
{
    (void)state;
    run_main(2, xc_close_main, NULL);
}

static void test_xchan_close_after_message(void **state)
{
    (void)state;
    run_main(2, xc_chain_main, NULL);
}

/* ---- Both ends released from one shard while the other end's update waits. ----
 * The receiving fiber on shard 1 leaves its head for shard 1's loop turn; shard 0 gets the
 * join's reply first and releases both ends (ASan saw the freed channel used). */
static int xr_recv_one(void *arg)
{
    void *v;
    int rc = tpc_xchan_recv(arg, &v);
    return rc < 0 ? rc : (int)(intptr_t)v;
}

static int xr_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 300; i++) {
        tpc_xchan *c;
        CHECK_EQ(tpc_xchan_create(8, &c), 0);
        CHECK_EQ(tpc_xchan_send(c, (void *)7), 0);
        tpc_fiber *r;
        CHECK_EQ(tpc_spawn_on(1, NULL, xr_recv_one, c, &r), 0);
        int res = 0;
        CHECK_EQ(tpc_join(r, &res), 0);
        CHECK_EQ(res, 7);
        CHECK_EQ(tpc_xchan_release(c), 0);
        CHECK_EQ(tpc_xchan_release(c), 0);
    }
    return 0;
}

static void test_xchan_release_from_other_shard(void **state)
{
    (void)state;
    run_main(2, xr_main, NULL);
}

/* ---- tpc_on_all with a target that cannot start the function. ----
 * More rounds than the per-shard record cache holds, so that a record freed twice is a real
 * double free. Needs fault injection to make one shard's spawn fail. */
#ifdef TPC_FAULT_INJECTION
static int oa_fail_next(void *arg)
{
    tpc__fault_spawn((int)(intptr_t)arg, 1); /* this thread's next spawn */
    return 0;
}

static atomic_int oa_ran;

static int oa_count(void *arg)
{
    (void)arg;
    atomic_fetch_add(&oa_ran, 1);
    return 0;
}

static int oa_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        /* tpc_call_on's fiber on shard 2 has started, so the fault hits the next spawn there */
        CHECK_EQ(tpc_call_on(2, oa_fail_next, (void *)(intptr_t)ENOMEM, NULL), 0);
        atomic_store(&oa_ran, 0);
        CHECK_EQ(tpc_on_all(oa_count, NULL), -ENOMEM);
        CHECK_EQ(atomic_load(&oa_ran), 2); /* the others ran, and were waited for */
    }
    CHECK_EQ(tpc_on_all(oa_count, NULL), 0);
    return 0;
}

static void test_on_all_target_cannot_spawn(void **state)
{
    (void)state;
    run_main(3, oa_main, NULL);
}
#endif

/* ---- tpc_defer from a message run after its shard left the loop. ----
 * Shard 1 sends shard 0 a message and keeps computing until shard 0's thread has exited; the
 * message then runs in the runtime's afterlife, where its tpc_defer must run too (or fail),
 * not return 0 and leak. */
static atomic_int ad_late_ran, ad_deferred_ran, ad_defer_rc = 99, ad_sent, ad_main_done;

static void ad_deferred(void *arg)
{
    (void)arg;
    atomic_store(&ad_deferred_ran, 1);
}

static void ad_late(void *arg)
{
    (void)arg;
    atomic_store(&ad_late_ran, 1);
    atomic_store(&ad_defer_rc, tpc_defer(ad_deferred, NULL));
}

static int ad_sender(void *arg) /* shard 1 */
{
    (void)arg;
    int threads = count_entries("/proc/self/task");
    CHECK_EQ(tpc_submit_to(0, ad_late, NULL), 0); /* published at this shard's loop turn */
    atomic_store(&ad_sent, 1);
    uint64_t t0 = now_ns();
    while (!atomic_load(&ad_main_done) && now_ns() - t0 < 10000000000u)
        ;
    /* Shard 0's thread is the only one that ends before this one returns to its loop. */
    while (count_entries("/proc/self/task") >= threads && now_ns() - t0 < 10000000000u)
        ;
    CHECK(count_entries("/proc/self/task") < threads);
    return 0;
}

static int ad_main(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_spawn_on(1, NULL, ad_sender, NULL, NULL), 0);
    WAIT_UNTIL(atomic_load(&ad_sent)); /* shard 1 has sent (and holds it unpublished) */
    atomic_store(&ad_main_done, 1);
    return 0;
}

static void test_defer_in_afterlife(void **state)
{
    (void)state;
    /* No stall detector: its watchdog thread, started while the shards already run, would
     * upset the count of threads that tells when shard 0 has exited. */
    tpc_config c = {.shards = 2, .no_signals = true, .stall_ms = -1};
    run_config(&c, ad_main, NULL);
    assert_int_equal(atomic_load(&ad_late_ran), 1);
    if (atomic_load(&ad_defer_rc) == 0)
        assert_int_equal(atomic_load(&ad_deferred_ran), 1);
    else
        assert_int_equal(atomic_load(&ad_defer_rc), -ESHUTDOWN);
}

/* ---- Foreign threads calling while the runtime stops and tpc_wait frees it. ---- */
struct ft_state {
    tpc_runtime *rt;
    atomic_long ok;
};

static int ft_fn(void *arg)
{
    return (int)(intptr_t)arg + 1;
}

static void *ft_thread(void *p)
{
    struct ft_state *st = p;
    for (int i = 0;; i++) {
        int r = 0, rc = tpc_call_from_thread(st->rt, i % 2, ft_fn, (void *)(intptr_t)i, &r);
        if (rc == -ESHUTDOWN)
            break;
        CHECK_EQ(rc, 0);
        CHECK_EQ(r, i + 1);
        atomic_fetch_add(&st->ok, 1);
    }
    return NULL;
}

static int ft_main(void *arg)
{
    struct ft_state *st = arg;
    WAIT_UNTIL(atomic_load(&st->ok) >= 20);
    return 0; /* the runtime stops with calls under way */
}

static void test_call_from_thread_while_waiting(void **state)
{
    (void)state;
    checks_reset();
    for (int round = 0; round < 20; round++) {
        struct ft_state st = {0};
        tpc_config c = {.shards = 2, .no_signals = true};
        assert_int_equal(tpc_start(&c, ft_main, &st, &st.rt), 0);
        pthread_t th[2];
        for (int k = 0; k < 2; k++)
            assert_int_equal(pthread_create(&th[k], NULL, ft_thread, &st), 0);
        assert_int_equal(tpc_wait(st.rt), 0); /* while the threads still call */
        for (int k = 0; k < 2; k++)
            pthread_join(th[k], NULL);
        /* After tpc_wait returned, the runtime is gone: refused, nothing touched. */
        assert_int_equal(tpc_call_from_thread(st.rt, 0, ft_fn, NULL, NULL), -ESHUTDOWN);
    }
    assert_no_check_failed();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_wide_message),
        cmocka_unit_test(test_xchan_close_keeps_values),
        cmocka_unit_test(test_xchan_release_keeps_values),
        cmocka_unit_test(test_xchan_close_after_message),
        cmocka_unit_test(test_xchan_release_from_other_shard),
#ifdef TPC_FAULT_INJECTION
        cmocka_unit_test(test_on_all_target_cannot_spawn),
#endif
        cmocka_unit_test(test_defer_in_afterlife),
        cmocka_unit_test(test_call_from_thread_while_waiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
