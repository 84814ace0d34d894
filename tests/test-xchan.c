/* The cross-shard channel: order and completeness with both ends waiting (a small capacity),
 * several fibers per end, close semantics, cancellation and deadlines that take nothing, both
 * ends on one shard, and misuse. */
#include <errno.h>
#include "helpers.h"

static long count_for(void)
{
    return getenv("TPC_TEST_VALGRIND") ? 5000 : getenv("TPC_TEST_SLOW") ? 20000 : 200000;
}

/* ---- One sender fiber, one receiver fiber, capacity 8: both sides keep waiting. ---- */
static int receive_in_order(void *arg)
{
    tpc_xchan *c = arg;
    long got = 0;
    void *v;
    int rc;
    while ((rc = tpc_xchan_recv(c, &v)) == 0) {
        CHECK_EQ((long)(intptr_t)v, got + 1);
        got++;
    }
    CHECK_EQ(rc, -EPIPE);
    CHECK_EQ(tpc_xchan_release(c), 0);
    return (int)got;
}

static int stream_main(void *arg)
{
    (void)arg;
    long n = count_for();
    tpc_xchan *c;
    CHECK_EQ(tpc_xchan_create(8, &c), 0);
    tpc_fiber *r;
    CHECK_EQ(tpc_spawn_on(1, NULL, receive_in_order, c, &r), 0);
    for (long i = 1; i <= n; i++)
        CHECK_EQ(tpc_xchan_send(c, (void *)(intptr_t)i), 0);
    CHECK_EQ(tpc_xchan_release(c), 0); /* closes: the receiver drains, then gets -EPIPE */
    int got = -1;
    CHECK_EQ(tpc_join(r, &got), 0);
    CHECK_EQ(got, n);
    tpc_shard_stats st;
    CHECK_EQ(tpc_stats(0, &st), 0);
    CHECK(st.msgs_out > 0); /* kicks went over the rings */
    return 0;
}

static void test_stream(void **state)
{
    (void)state;
    run_main(2, stream_main, NULL);
}

/* ---- Four senders on shard 0, four receivers on shard 1. ---- */
static tpc_xchan *many;
static _Atomic long many_sum, many_got;

static int many_sender(void *arg)
{
    long base = (long)(intptr_t)arg, n = count_for() / 4;
    for (long i = 0; i < n; i++)
        CHECK_EQ(tpc_xchan_send(many, (void *)(intptr_t)(base + i)), 0);
    return 0;
}

static int many_receiver(void *arg)
{
    (void)arg;
    void *v;
    while (tpc_xchan_recv(many, &v) == 0) {
        atomic_fetch_add(&many_sum, (long)(intptr_t)v);
        atomic_fetch_add(&many_got, 1);
    }
    return 0;
}

static int receivers(void *arg)
{
    (void)arg;
    tpc_fiber *f[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_spawn(many_receiver, NULL, &f[i]), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    CHECK_EQ(tpc_xchan_release(many), 0);
    return 0;
}

static int many_main(void *arg)
{
    (void)arg;
    long n = count_for() / 4;
    atomic_store(&many_sum, 0);
    atomic_store(&many_got, 0);
    CHECK_EQ(tpc_xchan_create(3, &many), 0); /* rounded up to 4 */
    tpc_fiber *r;
    CHECK_EQ(tpc_spawn_on(1, NULL, receivers, NULL, &r), 0);
    tpc_fiber *f[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_spawn(many_sender, (void *)(intptr_t)(i * 1000000L), &f[i]), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    CHECK_EQ(tpc_xchan_release(many), 0);
    CHECK_EQ(tpc_join(r, NULL), 0);
    long want = 0;
    for (int i = 0; i < 4; i++)
        want += i * 1000000L * n + n * (n - 1) / 2;
    CHECK_EQ(atomic_load(&many_got), 4 * n);
    CHECK_EQ(atomic_load(&many_sum), want);
    return 0;
}

static void test_many_fibers(void **state)
{
    (void)state;
    run_main(2, many_main, NULL);
}

/* ---- Close, deadlines, cancellation, misuse. ---- */
static int recv_one(void *arg)
{
    void *v = NULL;
    int rc = tpc_xchan_recv(arg, &v);
    return rc < 0 ? rc : (int)(intptr_t)v;
}

static int recv_with_deadline(void *arg)
{
    tpc_deadline_set(2 * 1000 * 1000);
    int rc = recv_one(arg);
    tpc_deadline_clear();
    return rc;
}

static int send_from_elsewhere(void *arg)
{
    CHECK_EQ(tpc_xchan_send(arg, (void *)1), -EXDEV);
    void *v;
    CHECK_EQ(tpc_xchan_recv(arg, &v), -EXDEV);
    return 0;
}

static void in_callback(void *arg)
{
    CHECK_EQ(tpc_xchan_send(arg, (void *)1), -EPERM);
}

static int edges_main(void *arg)
{
    (void)arg;
    tpc_xchan *c;
    CHECK_EQ(tpc_xchan_create(0, &c), -EINVAL);
    CHECK_EQ(tpc_xchan_create(((size_t)1 << 24) + 1, &c), -EINVAL);
    CHECK_EQ(tpc_xchan_create(4, NULL), -EINVAL);
    CHECK_EQ(tpc_xchan_create(2, &c), 0);
    int res = 0;
    tpc_fiber *r;

    /* A receiver whose deadline passes takes nothing; the value stays for the next one. */
    CHECK_EQ(tpc_spawn_on(1, NULL, recv_with_deadline, c, &r), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, -ETIMEDOUT);
    CHECK_EQ(tpc_xchan_send(c, (void *)7), 0);
    CHECK_EQ(tpc_xchan_send(c, (void *)8), 0);
    /* Full: a sender with a deadline does not send. */
    tpc_deadline_set(2 * 1000 * 1000);
    CHECK_EQ(tpc_xchan_send(c, (void *)9), -ETIMEDOUT);
    tpc_deadline_clear();
    CHECK_EQ(tpc_spawn_on(1, NULL, recv_one, c, &r), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, 7);

    /* Misuse. */
    CHECK_EQ(tpc_call_on(2, send_from_elsewhere, c, NULL), 0);
    CHECK_EQ(tpc_xchan_send(NULL, NULL), -EINVAL);
    void *v;
    CHECK_EQ(tpc_xchan_recv(NULL, &v), -EINVAL);
    CHECK_EQ(tpc_xchan_recv(c, NULL), -EINVAL); /* (it bound the receiving end here first) */
    CHECK_EQ(tpc_defer(in_callback, c), 0);
    tpc_yield();

    /* Close: what was sent is still received, then -EPIPE; sends fail at once. */
    CHECK_EQ(tpc_xchan_close(c), 0);
    CHECK_EQ(tpc_xchan_close(c), 0);
    CHECK_EQ(tpc_xchan_send(c, (void *)10), -EPIPE);
    CHECK_EQ(tpc_spawn_on(1, NULL, recv_one, c, &r), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, 8);
    CHECK_EQ(tpc_spawn_on(1, NULL, recv_one, c, &r), 0);
    CHECK_EQ(tpc_join(r, &res), 0);
    CHECK_EQ(res, -EPIPE);
    CHECK_EQ(tpc_xchan_release(c), 0);
    CHECK_EQ(tpc_xchan_release(c), 0);

    /* Both ends on one shard; a cancelled receiver takes nothing. */
    CHECK_EQ(tpc_xchan_create(1, &c), 0);
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(recv_one, c, &f), 0);
    tpc_yield(); /* it waits now */
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, -ECANCELED);
    CHECK_EQ(tpc_spawn(recv_one, c, &f), 0);
    tpc_yield();
    CHECK_EQ(tpc_xchan_send(c, (void *)42), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, 42);
    CHECK_EQ(tpc_xchan_release(c), 0);
    CHECK_EQ(tpc_xchan_release(c), 0);
    return 0;
}

/* Releasing an end while a fiber of that end waits on it: the fiber returns -EPIPE and the last
 * to leave frees the channel (ASan and valgrind check that nothing touches it afterwards). */
static int recv_until_closed(void *arg)
{
    void *v;
    return tpc_xchan_recv(arg, &v);
}

static int release_other_end(void *arg)
{
    return tpc_xchan_release(arg);
}

static int release_waiting_main(void *arg)
{
    (void)arg;
    tpc_xchan *c;
    CHECK_EQ(tpc_xchan_create(4, &c), 0);
    tpc_fiber *f;
    int r = 0;
    CHECK_EQ(tpc_spawn(recv_until_closed, c, &f), 0);
    CHECK_EQ(tpc_yield(), 0);          /* it waits: the channel is empty */
    CHECK_EQ(tpc_xchan_release(c), 0); /* this end, with the fiber inside */
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(tpc_call_on(1, release_other_end, c, NULL), 0); /* the other end, elsewhere */
    CHECK_EQ(r, -EPIPE);
    return 0;
}

static void test_release_while_waiting(void **state)
{
    (void)state;
    run_main(2, release_waiting_main, NULL);
}

static void test_edges(void **state)
{
    (void)state;
    tpc_xchan *c;
    assert_int_equal(tpc_xchan_create(4, &c), -EPERM);
    assert_int_equal(tpc_xchan_close(NULL), -EPERM);
    run_main(3, edges_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_many_fibers),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_release_while_waiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
