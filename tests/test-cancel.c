/* The cancellation rule, call by call (docs/guide.md, "In a cancelled fiber"): once a fiber is
 * cancelled or its deadline has passed, every call that may suspend fails at its start with
 * -ECANCELED / -ETIMEDOUT and does nothing, even when it could complete at once; joins still
 * wait for the child (cancelling it); clean-up (tpc_close, tpc_sock_shutdown) works at once
 * from anywhere. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"

enum { STOP_CANCEL, STOP_DEADLINE };

static void stop_self(int how)
{
    if (how == STOP_CANCEL)
        tpc_cancel(tpc_self());
    else
        tpc_deadline_set(0);
}

static int never(void *arg)
{
    tpc_event *e = arg;
    return tpc_event_wait(e); /* until cancelled */
}

static int ret7(void *arg)
{
    (void)arg;
    return 7;
}

static int owned_released; /* the case's shard only */
static void count_release(void *p)
{
    (void)p;
    owned_released++;
}

static long job_ran;
static long job(void *arg)
{
    (void)arg;
    job_ran = 1;
    return 0;
}

static void xch_noop(void *arg)
{
    (void)arg;
}

/* Walks the table: each call would complete at once, and must not. */
static int walk(void *arg)
{
    int how = (int)(intptr_t)arg;
    int want = how == STOP_CANCEL ? -ECANCELED : -ETIMEDOUT;
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char buf[128], data[100];
    memset(data, 'x', sizeof(data));
    CHECK_EQ(write(sv[1], data, sizeof(data)), (ssize_t)sizeof(data));
    tpc_mutex m;
    tpc_sem sem;
    tpc_event set, unset;
    tpc_waitgroup wg;
    tpc_chan ch;
    tpc_mutex_init(&m);
    tpc_sem_init(&sem, 1);
    tpc_event_init(&set, true);
    tpc_event_init(&unset, false);
    tpc_wg_init(&wg);
    tpc_chan_init(&ch, 2);
    CHECK_EQ(tpc_chan_trysend(&ch, (void *)1), 0);
    tpc_xchan *xc;
    CHECK_EQ(tpc_xchan_create(4, &xc), 0);
    tpc_fiber *running, *finished, *remote;
    CHECK_EQ(tpc_spawn(never, &unset, &running), 0);
    CHECK_EQ(tpc_spawn_on(0, NULL, never, &unset, &remote), 0); /* the handle of tpc_spawn_on */
    CHECK_EQ(tpc_spawn(ret7, NULL, &finished), 0);
    CHECK_EQ(tpc_yield(), 0); /* both start; `finished` returns */

    stop_self(how);
    void *v;
    long res;
    tpc_addr a;
    CHECK_EQ(tpc_recv(sv[0], buf, sizeof(buf), 0), want);
    CHECK_EQ(tpc_read(sv[0], buf, sizeof(buf), -1), want);
    CHECK_EQ(tpc_send(sv[0], "y", 1, 0), want);
    CHECK_EQ(tpc_write(sv[0], "y", 1, -1), want);
    CHECK_EQ(tpc_poll(sv[0], POLLIN), want);
    CHECK_EQ(tpc_open("/dev/null", O_RDONLY, 0), want);
    CHECK_EQ(tpc_sleep(0), want); /* the sleep is the call under test */
    CHECK_EQ(tpc_mutex_lock(&m), want);
    CHECK_EQ(tpc_sem_acquire(&sem), want);
    CHECK_EQ(tpc_sem_value(&sem), 1);
    CHECK_EQ(tpc_event_wait(&set), want);
    CHECK_EQ(tpc_wg_wait(&wg), want);
    CHECK_EQ(tpc_chan_send(&ch, (void *)2), want);
    CHECK_EQ(tpc_chan_recv(&ch, &v), want);
    CHECK_EQ(tpc_chan_len(&ch), 1);
    CHECK_EQ(tpc_xchan_send(xc, (void *)1), want);
    CHECK_EQ(tpc_xchan_recv(xc, &v), want);
    CHECK_EQ(tpc_call_on(0, ret7, NULL, NULL), want);
    CHECK_EQ(tpc_on_all(ret7, NULL), want);
    tpc_shard_stats st;
    CHECK_EQ(tpc_stats(0, &st), want);
    CHECK_EQ(tpc_blocking(job, NULL, &res), want);
    CHECK_EQ(job_ran, 0);
    CHECK_EQ(tpc_addr_parse("127.0.0.1:1", &a), 0); /* does not suspend */
    CHECK_EQ(tpc_connect(&a), want);
    CHECK_EQ(tpc_resolve("127.0.0.1", "80", 0, &a, 1), want);
    CHECK_EQ(tpc_submit_to(0, xch_noop, NULL), 0); /* does not suspend on its own shard */
    /* Calls that own their argument release it at once, here; nothing is sent. */
    int owned = 0;
    owned_released = 0;
    CHECK_EQ(tpc_call_owned(0, ret7, &owned, count_release, NULL), want);
    CHECK_EQ(owned_released, 1);
    CHECK_EQ(tpc_call_copy(0, ret7, &owned, sizeof(owned), NULL), want);
    tpc_call_item items[2] = {{.shard = 0, .arg = &owned}, {.shard = 0, .arg = &owned}};
    CHECK_EQ(tpc_call_many(items, 2, ret7, count_release), want);
    CHECK_EQ(owned_released, 3);
    /* The buffered reader and writer: nothing taken, nothing lost. */
    tpc_rbuf rb;
    CHECK_EQ(tpc_rbuf_init(&rb, sv[0], 0), 0);
    CHECK_EQ(tpc_rbuf_fill(&rb), want);
    CHECK_EQ(tpc_rbuf_len(&rb), 0);
    tpc_rbuf_destroy(&rb);
    tpc_wbuf wb;
    CHECK_EQ(tpc_wbuf_init(&wb, sv[0], 0), 0);
    CHECK_EQ(tpc_wbuf_append(&wb, "y", 1), 0);
    CHECK_EQ(tpc_wbuf_flush(&wb), want);
    CHECK_EQ(tpc_wbuf_pending(&wb), 1);
    tpc_wbuf_destroy(&wb);
    /* Nothing was taken: the 100 bytes are still there. */
    CHECK_EQ(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT), (ssize_t)sizeof(data));

    /* Joins wait: a finished child is joined, a running one is cancelled and waited for. */
    int r = 0;
    CHECK_EQ(tpc_join(finished, &r), 0);
    CHECK_EQ(r, 7);
    CHECK_EQ(tpc_join(running, &r), want);
    CHECK_EQ(r, -ECANCELED);
    r = 0;
    CHECK_EQ(tpc_join(remote, &r), want);
    CHECK_EQ(r, -ECANCELED);

    /* Clean-up works at once. */
    CHECK_EQ(tpc_sock_shutdown(sv[0], SHUT_WR), 0);
    /* The peer sees the end (at once: a failed shutdown must not block the case). */
    CHECK_EQ(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), 0);
    CHECK_EQ(tpc_close(sv[0]), 0);
    CHECK_EQ(tpc_close(sv[0]), -EBADF);
    close(sv[1]);
    CHECK_EQ(tpc_xchan_release(xc), 0);
    CHECK_EQ(tpc_xchan_release(xc), 0);
    CHECK_EQ(tpc_mutex_destroy(&m), 0);
    CHECK_EQ(tpc_sem_destroy(&sem), 0);
    CHECK_EQ(tpc_event_destroy(&set), 0);
    CHECK_EQ(tpc_event_destroy(&unset), 0);
    CHECK_EQ(tpc_wg_destroy(&wg), 0);
    CHECK_EQ(tpc_chan_close(&ch), 0);
    CHECK_EQ(tpc_chan_destroy(&ch), 0);
    return 0;
}

static int walk_main(void *arg)
{
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(walk, arg, &f), 0);
    int r = -1;
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, 0);
    return 0;
}

static void test_cancelled_calls_fail_at_start(void **state)
{
    (void)state;
    run_main(1, walk_main, (void *)(intptr_t)STOP_CANCEL);
}

static void test_expired_deadline_calls_fail_at_start(void **state)
{
    (void)state;
    run_main(1, walk_main, (void *)(intptr_t)STOP_DEADLINE);
}

/* Clean-up from a callback and from a timer: no fiber, and it still works. */
static int cb_fds[2];
static int cb_shutdown_rc = 1, cb_close_rc = 1;

static void cleanup_cb(void *arg)
{
    (void)arg;
    cb_shutdown_rc = tpc_sock_shutdown(cb_fds[0], SHUT_RDWR);
}

static void cleanup_timer(tpc_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    cb_close_rc = tpc_close(cb_fds[0]);
}

static int callbacks_main(void *arg)
{
    (void)arg;
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, cb_fds), 0);
    CHECK_EQ(tpc_defer(cleanup_cb, NULL), 0);
    tpc_timer t;
    CHECK_EQ(tpc_timer_init(&t, cleanup_timer, NULL), 0);
    CHECK_EQ(tpc_timer_start(&t, 1000000, 0), 0);
    WAIT_UNTIL(cb_close_rc != 1); /* the timer has fired (the callback ran before it) */
    CHECK_EQ(cb_shutdown_rc, 0);
    CHECK_EQ(cb_close_rc, 0);
    char c; /* the end is closed: end of file at once (never blocks, whatever happened) */
    CHECK_EQ(recv(cb_fds[1], &c, 1, MSG_DONTWAIT), 0);
    close(cb_fds[1]);
    return 0;
}

static void test_cleanup_from_callbacks(void **state)
{
    (void)state;
    run_main(1, callbacks_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancelled_calls_fail_at_start),
        cmocka_unit_test(test_expired_deadline_calls_fail_at_start),
        cmocka_unit_test(test_cleanup_from_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
