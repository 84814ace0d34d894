/* Shard-local sync: mutex, semaphore, event, wait group, channel. FIFO fairness, cancellation
 * while waiting, close, destroy while busy, misuse. */
#include <errno.h>
#include "helpers.h"

static int seq[64], nseq;

/* ---- Mutex ---- */
struct mx {
    tpc_mutex m;
    int id;
    int inside;
};

static int mx_worker(void *arg)
{
    struct mx *x = arg;
    static int next_id;
    int id = next_id++;
    CHECK_EQ(tpc_mutex_lock(&x->m), 0);
    CHECK_EQ(x->inside, 0);
    x->inside = 1;
    seq[nseq++] = id;
    tpc_yield(); /* others run, and must queue */
    x->inside = 0;
    CHECK_EQ(tpc_mutex_unlock(&x->m), 0);
    return 0;
}

static int mutex_main(void *arg)
{
    (void)arg;
    struct mx x = {.inside = 0};
    nseq = 0;
    CHECK_EQ(tpc_mutex_init(&x.m), 0);
    CHECK_EQ(tpc_mutex_trylock(&x.m), 0);
    CHECK_EQ(tpc_mutex_trylock(&x.m), -EDEADLK);
    CHECK_EQ(tpc_mutex_lock(&x.m), -EDEADLK);
    CHECK_EQ(tpc_mutex_destroy(&x.m), -EBUSY);
    tpc_fiber *f[5];
    for (int i = 0; i < 5; i++)
        tpc_spawn(mx_worker, &x, &f[i]);
    tpc_yield(); /* all five queue behind us, in spawn order */
    CHECK_EQ(tpc_mutex_unlock(&x.m), 0);
    CHECK_EQ(tpc_mutex_unlock(&x.m), -EPERM); /* not the owner any more */
    for (int i = 0; i < 5; i++)
        tpc_join(f[i], NULL);
    CHECK_EQ(nseq, 5);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(seq[i], i); /* FIFO hand-off */
    CHECK_EQ(tpc_mutex_destroy(&x.m), 0);
    return 0;
}

static void test_mutex(void **state)
{
    (void)state;
    run_main(1, mutex_main, NULL);
}

static int mx_lock_only(void *arg)
{
    return tpc_mutex_lock(arg);
}

static int mutex_cancel_main(void *arg)
{
    (void)arg;
    tpc_mutex m;
    tpc_mutex_init(&m);
    tpc_mutex_lock(&m);
    tpc_fiber *a, *b;
    int r;
    tpc_spawn(mx_lock_only, &m, &a);
    tpc_spawn(mx_lock_only, &m, &b);
    tpc_yield();
    CHECK_EQ(tpc_cancel(a), 0);
    CHECK_EQ(tpc_join(a, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    CHECK_EQ(tpc_mutex_unlock(&m), 0); /* goes to b, not the cancelled a */
    CHECK_EQ(tpc_join(b, &r), 0);
    CHECK_EQ(r, 0);
    CHECK_EQ(tpc_mutex_trylock(&m), -EBUSY); /* b returned holding it */
    return 0;
}

static void test_mutex_cancel(void **state)
{
    (void)state;
    run_main(1, mutex_cancel_main, NULL);
}

/* A fiber that returns holding a mutex keeps it (a bug of the program's, the waiters wait on),
 * and the next fiber that gets its recycled record is not taken for the owner: it cannot
 * unlock it, and is told it is busy (it was told -EDEADLK, and its unlock succeeded). */
static int mx_trylock(void *arg)
{
    return tpc_mutex_trylock(arg);
}

static int mx_unlock(void *arg)
{
    return tpc_mutex_unlock(arg);
}

static int mutex_owner_returned_main(void *arg)
{
    (void)arg;
    tpc_mutex m;
    CHECK_EQ(tpc_mutex_init(&m), 0);
    tpc_fiber *f;
    int r = -1;
    CHECK_EQ(tpc_spawn(mx_lock_only, &m, &f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, 0); /* it returned holding m */
    tpc_fiber *g;
    CHECK_EQ(tpc_spawn(mx_trylock, &m, &g), 0);
    CHECK(g == f); /* the same record, recycled */
    CHECK_EQ(tpc_join(g, &r), 0);
    CHECK_EQ(r, -EBUSY);
    CHECK_EQ(tpc_spawn(mx_unlock, &m, &g), 0);
    CHECK_EQ(tpc_join(g, &r), 0);
    CHECK_EQ(r, -EPERM);
    CHECK_EQ(tpc_mutex_trylock(&m), -EBUSY);
    CHECK_EQ(tpc_mutex_unlock(&m), -EPERM);
    return 0;
}

static void test_mutex_owner_returned(void **state)
{
    (void)state;
    run_main(1, mutex_owner_returned_main, NULL);
}

/* ---- Semaphore ---- */
static tpc_sem *sem_shared;
static int sem_taker(void *arg)
{
    int me = (int)(intptr_t)arg;
    int rc = tpc_sem_acquire(sem_shared);
    if (rc == 0)
        seq[nseq++] = me;
    return rc;
}

static int sem_main(void *arg)
{
    (void)arg;
    tpc_sem s;
    nseq = 0;
    CHECK_EQ(tpc_sem_init(&s, 2), 0);
    CHECK_EQ(tpc_sem_tryacquire(&s), 0);
    CHECK_EQ(tpc_sem_acquire(&s), 0);
    CHECK_EQ(tpc_sem_tryacquire(&s), -EAGAIN);
    tpc_fiber *f[4];
    sem_shared = &s;
    for (int i = 0; i < 4; i++) { /* each waits before the next starts: f0 first in line */
        tpc_spawn(sem_taker, (void *)(intptr_t)i, &f[i]);
        tpc_yield();
    }
    CHECK_EQ(nseq, 0);
    CHECK_EQ(tpc_sem_destroy(&s), -EBUSY);
    CHECK_EQ(tpc_cancel(f[1]), 0);
    CHECK_EQ(tpc_sem_release(&s, 2), 0); /* f0 and f2 (f1 left the queue) */
    /* Units handed to waiters are not free for a newcomer. */
    CHECK_EQ(tpc_sem_value(&s), 0);
    CHECK_EQ(tpc_sem_tryacquire(&s), -EAGAIN);
    tpc_yield();
    CHECK_EQ(nseq, 2); /* granted in line; they may run in either order (shuffled builds) */
    CHECK_EQ(seq[0] + seq[1], 2);
    CHECK_EQ(seq[0] * seq[1], 0);
    CHECK_EQ(tpc_sem_release(&s, 5), 0); /* f3 gets one, 4 stay */
    int r;
    for (int i = 0; i < 4; i++) {
        tpc_join(f[i], &r);
        CHECK_EQ(r, i == 1 ? -ECANCELED : 0);
    }
    CHECK_EQ(tpc_sem_value(&s), 4);
    CHECK_EQ(tpc_sem_release(&s, UINT64_MAX), -EOVERFLOW);
    CHECK_EQ(tpc_sem_value(&s), 4);
    CHECK_EQ(tpc_sem_destroy(&s), 0);
    return 0;
}

static void test_semaphore(void **state)
{
    (void)state;
    run_main(1, sem_main, NULL);
}

/* ---- Event and wait group ---- */
static int ev_waiter(void *arg)
{
    return tpc_event_wait(arg);
}

static int wg_worker(void *arg)
{
    tpc_waitgroup *wg = arg;
    tpc_yield();
    return tpc_wg_done(wg);
}

static int event_wg_main(void *arg)
{
    (void)arg;
    tpc_event e;
    CHECK_EQ(tpc_event_init(&e, false), 0);
    tpc_fiber *f[3];
    for (int i = 0; i < 3; i++)
        tpc_spawn(ev_waiter, &e, &f[i]);
    tpc_yield();
    CHECK_EQ(tpc_event_destroy(&e), -EBUSY);
    CHECK_EQ(tpc_event_set(&e), 0);
    CHECK(tpc_event_is_set(&e));
    CHECK_EQ(tpc_event_wait(&e), 0); /* set: no wait */
    int r;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(tpc_join(f[i], &r), 0);
        CHECK_EQ(r, 0);
    }
    CHECK_EQ(tpc_event_reset(&e), 0);
    CHECK(!tpc_event_is_set(&e));
    CHECK_EQ(tpc_event_destroy(&e), 0);

    tpc_waitgroup wg;
    CHECK_EQ(tpc_wg_init(&wg), 0);
    CHECK_EQ(tpc_wg_wait(&wg), 0); /* zero: no wait */
    CHECK_EQ(tpc_wg_add(&wg, 10), 0);
    for (int i = 0; i < 10; i++)
        tpc_spawn(wg_worker, &wg, NULL);
    CHECK_EQ(tpc_wg_wait(&wg), 0);
    CHECK_EQ(tpc_wg_done(&wg), -EINVAL); /* zero: it would go negative */
    CHECK_EQ(tpc_wg_done(&wg), -EINVAL); /* and is left at zero */
    CHECK_EQ(tpc_wg_add(&wg, INT64_MAX), 0);
    CHECK_EQ(tpc_wg_add(&wg, 1), -EINVAL);
    CHECK_EQ(tpc_wg_add(&wg, -INT64_MAX), 0);
    CHECK_EQ(tpc_wg_add(&wg, INT64_MIN), -EINVAL);
    CHECK_EQ(tpc_wg_done(&wg), -EINVAL); /* back at zero */
    CHECK_EQ(tpc_wg_destroy(&wg), 0);
    return 0;
}

static void test_event_and_waitgroup(void **state)
{
    (void)state;
    run_main(1, event_wg_main, NULL);
}

/* ---- Channel ---- */
static int producer(void *arg)
{
    tpc_chan *c = arg;
    for (intptr_t i = 1; i <= 1000; i++)
        CHECK_EQ(tpc_chan_send(c, (void *)i), 0);
    return tpc_chan_close(c);
}

static int chan_stream(size_t cap)
{
    tpc_chan c;
    CHECK_EQ(tpc_chan_init(&c, cap), 0);
    tpc_fiber *p;
    tpc_spawn(producer, &c, &p);
    intptr_t expect = 1;
    void *v;
    int rc;
    while ((rc = tpc_chan_recv(&c, &v)) == 0)
        CHECK_EQ((intptr_t)v, expect++);
    CHECK_EQ(rc, -EPIPE);
    CHECK_EQ(expect, 1001);
    CHECK_EQ(tpc_join(p, NULL), 0);
    CHECK_EQ(tpc_chan_send(&c, NULL), -EPIPE);
    CHECK_EQ(tpc_chan_destroy(&c), 0);
    return 0;
}

static int sender_one(void *arg)
{
    return tpc_chan_send(arg, (void *)42);
}

static int receiver_one(void *arg)
{
    void *v = NULL;
    int rc = tpc_chan_recv(arg, &v);
    return rc < 0 ? rc : (int)(intptr_t)v;
}

static int chan_main(void *arg)
{
    (void)arg;
    chan_stream(0);
    chan_stream(1);
    chan_stream(7); /* not a power of two */
    chan_stream(64);

    tpc_chan c;
    void *v;
    int r;
    CHECK_EQ(tpc_chan_init(&c, 2), 0);
    CHECK_EQ(tpc_chan_tryrecv(&c, &v), -EAGAIN);
    CHECK_EQ(tpc_chan_trysend(&c, (void *)1), 0);
    CHECK_EQ(tpc_chan_trysend(&c, (void *)2), 0);
    CHECK_EQ(tpc_chan_trysend(&c, (void *)3), -EAGAIN);
    CHECK_EQ(tpc_chan_len(&c), 2);
    /* Blocked senders: one is cancelled, one is woken by close with -EPIPE. */
    tpc_fiber *s1, *s2;
    tpc_spawn(sender_one, &c, &s1);
    tpc_spawn(sender_one, &c, &s2);
    tpc_yield();
    CHECK_EQ(tpc_chan_destroy(&c), -EBUSY);
    tpc_cancel(s1);
    CHECK_EQ(tpc_join(s1, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    CHECK_EQ(tpc_chan_close(&c), 0);
    CHECK_EQ(tpc_chan_close(&c), 0);
    CHECK_EQ(tpc_join(s2, &r), 0);
    CHECK_EQ(r, -EPIPE);
    /* Buffered values survive close, then -EPIPE. */
    CHECK_EQ(tpc_chan_recv(&c, &v), 0);
    CHECK_EQ((intptr_t)v, 1);
    CHECK_EQ(tpc_chan_tryrecv(&c, &v), 0);
    CHECK_EQ((intptr_t)v, 2);
    CHECK_EQ(tpc_chan_recv(&c, &v), -EPIPE);
    CHECK_EQ(tpc_chan_destroy(&c), 0);

    /* Receivers: direct hand-off, cancel while waiting, close. */
    CHECK_EQ(tpc_chan_init(&c, 4), 0);
    tpc_fiber *r1, *r2, *r3;
    tpc_spawn(receiver_one, &c, &r1); /* each waits before the next starts */
    tpc_yield();
    tpc_spawn(receiver_one, &c, &r2);
    tpc_yield();
    tpc_spawn(receiver_one, &c, &r3);
    tpc_yield();
    tpc_cancel(r1);
    CHECK_EQ(tpc_chan_send(&c, (void *)42), 0); /* to r2: r1 left */
    CHECK_EQ(tpc_chan_len(&c), 0);
    CHECK_EQ(tpc_chan_close(&c), 0);
    tpc_join(r1, &r);
    CHECK_EQ(r, -ECANCELED);
    tpc_join(r2, &r);
    CHECK_EQ(r, 42);
    tpc_join(r3, &r);
    CHECK_EQ(r, -EPIPE);
    CHECK_EQ(tpc_chan_destroy(&c), 0);
    CHECK_EQ(tpc_chan_init(&c, ((size_t)1 << 31) + 1), -EINVAL);
    return 0;
}

static void test_channel(void **state)
{
    (void)state;
    run_main(1, chan_main, NULL);
}

/* ---- Misuse: from a callback task, from another shard, outside a shard. ---- */
static tpc_event shared_ev;
static tpc_chan shared_ch;
static tpc_waitgroup done_wg;

static void in_callback(void *arg)
{
    (void)arg;
    void *v;
    /* Waiting calls need a fiber; non-waiting ones work. */
    CHECK_EQ(tpc_event_wait(&shared_ev), -EPERM);
    CHECK_EQ(tpc_chan_recv(&shared_ch, &v), -EPERM);
    CHECK_EQ(tpc_chan_trysend(&shared_ch, (void *)5), 0);
    CHECK_EQ(tpc_yield(), -EPERM);
    CHECK_EQ(tpc_join(NULL, NULL), -EPERM);
    tpc_mutex m; /* a mutex is owned by a fiber */
    CHECK_EQ(tpc_mutex_init(&m), 0);
    CHECK_EQ(tpc_mutex_trylock(&m), -EPERM);
    CHECK_EQ(tpc_mutex_unlock(&m), -EPERM);
    CHECK_EQ(tpc_mutex_destroy(&m), 0);
    CHECK(tpc_self() == NULL);
    CHECK_EQ(tpc_wg_done(&done_wg), 0);
}

static void wg_done_cb(void *arg)
{
    CHECK_EQ(tpc_wg_done(arg), 0);
}

static void on_other_shard(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_shard_id(), 1);
    CHECK_EQ(tpc_event_set(&shared_ev), -EXDEV);
    CHECK_EQ(tpc_chan_trysend(&shared_ch, NULL), -EXDEV);
    tpc_mutex m;
    CHECK_EQ(tpc_mutex_init(&m), 0);
    CHECK_EQ(tpc_mutex_destroy(&m), 0);
    CHECK_EQ(tpc_submit_to(0, wg_done_cb, &done_wg), 0);
}

static int misuse_main(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_event_init(&shared_ev, false), 0);
    CHECK_EQ(tpc_chan_init(&shared_ch, 1), 0);
    CHECK_EQ(tpc_wg_init(&done_wg), 0);
    CHECK_EQ(tpc_wg_add(&done_wg, 2), 0);
    CHECK_EQ(tpc_defer(in_callback, NULL), 0);
    CHECK_EQ(tpc_submit_to(1, on_other_shard, NULL), 0);
    CHECK_EQ(tpc_wg_wait(&done_wg), 0);
    void *v;
    CHECK_EQ(tpc_chan_recv(&shared_ch, &v), 0);
    CHECK_EQ((intptr_t)v, 5);
    /* NULL objects and outs: -EINVAL, no crash (they dereferenced NULL). */
    CHECK_EQ(tpc_mutex_init(NULL), -EINVAL);
    CHECK_EQ(tpc_mutex_lock(NULL), -EINVAL);
    CHECK_EQ(tpc_mutex_unlock(NULL), -EINVAL);
    CHECK_EQ(tpc_sem_init(NULL, 1), -EINVAL);
    CHECK_EQ(tpc_sem_acquire(NULL), -EINVAL);
    CHECK_EQ(tpc_sem_value(NULL), 0);
    CHECK_EQ(tpc_event_init(NULL, false), -EINVAL);
    CHECK_EQ(tpc_event_wait(NULL), -EINVAL);
    CHECK(!tpc_event_is_set(NULL));
    CHECK_EQ(tpc_wg_init(NULL), -EINVAL);
    CHECK_EQ(tpc_wg_wait(NULL), -EINVAL);
    CHECK_EQ(tpc_chan_init(NULL, 1), -EINVAL);
    CHECK_EQ(tpc_chan_send(NULL, NULL), -EINVAL);
    CHECK_EQ(tpc_chan_len(NULL), 0);
    CHECK_EQ(tpc_chan_trysend(&shared_ch, (void *)1), 0);
    CHECK_EQ(tpc_chan_tryrecv(&shared_ch, NULL), -EINVAL);
    CHECK_EQ(tpc_chan_recv(&shared_ch, NULL), -EINVAL);
    CHECK_EQ(tpc_chan_len(&shared_ch), 1); /* the value stays */
    CHECK_EQ(tpc_chan_recv(&shared_ch, &v), 0);
    tpc_chan_destroy(&shared_ch);
    tpc_event_destroy(&shared_ev);
    return 0;
}

static void test_misuse(void **state)
{
    (void)state;
    run_main(2, misuse_main, NULL);
    /* Outside any shard. */
    tpc_mutex m;
    tpc_chan c;
    assert_int_equal(tpc_mutex_init(&m), -EPERM);
    assert_int_equal(tpc_chan_init(&c, 1), -EPERM);
    assert_int_equal(tpc_mutex_lock(&m), -EPERM);
    assert_int_equal(tpc_yield(), -EPERM);
    assert_int_equal(tpc_maybe_yield(), -EPERM);
    assert_int_equal(tpc_spawn(NULL, NULL, NULL), -EPERM);
    assert_int_equal(tpc_defer(NULL, NULL), -EPERM);
    assert_int_equal(tpc_cancel(NULL), -EPERM);
    assert_int_equal(tpc_detach(NULL), -EPERM);
    assert_int_equal(tpc_shutdown(0), -EPERM);
    assert_int_equal(tpc_submit_to(0, NULL, NULL), -EPERM);
    assert_null(tpc_self());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutex),
        cmocka_unit_test(test_mutex_cancel),
        cmocka_unit_test(test_mutex_owner_returned),
        cmocka_unit_test(test_semaphore),
        cmocka_unit_test(test_event_and_waitgroup),
        cmocka_unit_test(test_channel),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests_name("sync", tests, NULL, NULL);
}
