/* Accepting and serving: the multishot acceptor (queueing, deadlines, close with connections
 * queued, misuse, its pause at 1,024 queued connections), its back-off when the process runs
 * out of descriptors (alone and under a server), servers spreading connections by SO_REUSEPORT
 * and by hand-off, their options, how they stop (no handler begins after stop, running ones
 * are given the caller's deadline then cancelled, stop's error paths, cycles with live and
 * reset connections), a shared buffer pool that one peer which never reads cannot drain, and
 * 10,000 concurrent loopback connections served from a shared buffer pool. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "helpers.h"
#include "core/internal.h" /* a connection fiber's stack: its size and guard */

/* This executable is linked with -Wl,--wrap=calloc (tests/meson.build): a test makes the next
 * calloc of its thread fail, as under memory pressure. */
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
static __thread bool fail_next_calloc;
static __thread int fail_calloc_in; /* > 0: the calloc that many calls on fails */

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_next_calloc || (fail_calloc_in > 0 && --fail_calloc_in == 0)) {
        fail_next_calloc = false;
        return NULL;
    }
    return __real_calloc(n, size);
}

#define MS (1000 * 1000LL)

static bool under_tsan(void)
{
#if defined(__SANITIZE_THREAD__)
    return true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    return true;
#endif
#endif
    return false;
}

static int listener(tpc_addr *bound)
{
    tpc_addr a;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    int lfd = tpc_listen(&a, 0, 0);
    CHECK(lfd >= 0);
    CHECK_EQ(tpc_sock_local(lfd, bound), 0);
    return lfd;
}

/* ---- The acceptor. ---- */

static int waiter_main(void *arg)
{
    return tpc_acceptor_next(arg);
}

static int other_shard_next(void *arg)
{
    CHECK_EQ(tpc_acceptor_next(arg), -EXDEV);
    CHECK_EQ(tpc_acceptor_close(arg), -EXDEV);
    return 0;
}

static int close_rc;
static tpc_event closed_tried;
static void close_from_callback(void *arg)
{
    close_rc = tpc_acceptor_close(arg);
    tpc_event_set(&closed_tried);
}

/* Each case: a listener on a free loopback port and an acceptor on it. */
struct acc_setup {
    tpc_addr at;
    int lfd;
    tpc_acceptor *acc;
};

static void acc_open(struct acc_setup *f)
{
    f->lfd = listener(&f->at);
    f->acc = NULL;
    CHECK_EQ(tpc_acceptor_open(f->lfd, &f->acc), 0);
}

static void acc_close(struct acc_setup *f)
{
    CHECK_EQ(tpc_acceptor_close(f->acc), 0);
    tpc_close(f->lfd);
}

/* Connections made while nobody waits are queued, and come out in order. */
static int acc_queue_main(void *arg)
{
    (void)arg;
    struct acc_setup f;
    acc_open(&f);
    int cli[3];
    tpc_addr local[3];
    for (int i = 0; i < 3; i++) {
        cli[i] = tpc_connect(&f.at);
        CHECK(cli[i] >= 0);
        CHECK_EQ(tpc_sock_local(cli[i], &local[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        int fd = tpc_acceptor_next(f.acc);
        CHECK(fd >= 0);
        tpc_addr peer;
        CHECK_EQ(tpc_sock_peer(fd, &peer), 0);
        CHECK_EQ(peer.in4.sin_port, local[i].in4.sin_port);
        tpc_close(fd);
        tpc_close(cli[i]);
    }
    acc_close(&f);
    return 0;
}

static void test_acceptor_queues_in_order(void **state)
{
    (void)state;
    run_main(1, acc_queue_main, NULL);
}

/* A deadline interrupts the wait; the connection that comes later is not lost. */
static int acc_deadline_main(void *arg)
{
    (void)arg;
    struct acc_setup f;
    acc_open(&f);
    tpc_deadline_set(20 * MS);
    CHECK_EQ(tpc_acceptor_next(f.acc), -ETIMEDOUT);
    tpc_deadline_clear();
    int c = tpc_connect(&f.at);
    CHECK(c >= 0);
    loop_turns(3); /* the accept completes while nobody waits: it is queued */
    int fd = tpc_acceptor_next(f.acc);
    CHECK(fd >= 0);
    tpc_close(fd);
    tpc_close(c);
    acc_close(&f);
    return 0;
}

static void test_acceptor_deadline_loses_nothing(void **state)
{
    (void)state;
    run_main(1, acc_deadline_main, NULL);
}

/* Two waiters are served in order. */
static int acc_waiters_main(void *arg)
{
    (void)arg;
    struct acc_setup f;
    acc_open(&f);
    tpc_fiber *w1, *w2;
    CHECK_EQ(tpc_spawn(waiter_main, f.acc, &w1), 0);
    tpc_yield(); /* w1 waits first */
    CHECK_EQ(tpc_spawn(waiter_main, f.acc, &w2), 0);
    tpc_yield();
    int c1 = tpc_connect(&f.at), c2 = tpc_connect(&f.at);
    int r1 = -1, r2 = -1;
    CHECK_EQ(tpc_join(w1, &r1), 0);
    CHECK_EQ(tpc_join(w2, &r2), 0);
    CHECK(r1 >= 0 && r2 >= 0 && r1 != r2);
    tpc_addr p1, l1;
    CHECK_EQ(tpc_sock_peer(r1, &p1), 0); /* the first waiter got the first connection */
    CHECK_EQ(tpc_sock_local(c1, &l1), 0);
    CHECK_EQ(p1.in4.sin_port, l1.in4.sin_port);
    tpc_close(r1), tpc_close(r2), tpc_close(c1), tpc_close(c2);
    acc_close(&f);
    return 0;
}

static void test_acceptor_serves_waiters_in_order(void **state)
{
    (void)state;
    run_main(1, acc_waiters_main, NULL);
}

/* Closing needs a fiber while the kernel holds the acceptor: a callback gets -EPERM and the
 * acceptor stays usable. */
static int acc_callback_close_main(void *arg)
{
    (void)arg;
    struct acc_setup f;
    acc_open(&f);
    tpc_event_init(&closed_tried, false);
    CHECK_EQ(tpc_defer(close_from_callback, f.acc), 0);
    CHECK_EQ(tpc_event_wait(&closed_tried), 0);
    CHECK_EQ(close_rc, -EPERM);
    int c = tpc_connect(&f.at);
    int fd = tpc_acceptor_next(f.acc);
    CHECK(c >= 0 && fd >= 0);
    tpc_close(fd), tpc_close(c);
    acc_close(&f);
    return 0;
}

static void test_acceptor_close_from_callback_refused(void **state)
{
    (void)state;
    run_main(1, acc_callback_close_main, NULL);
}

/* Misuse from another shard. */
static int acc_other_shard_main(void *arg)
{
    (void)arg;
    struct acc_setup f;
    acc_open(&f);
    int rc = -1;
    CHECK_EQ(tpc_call_on(1, other_shard_next, f.acc, &rc), 0);
    CHECK_EQ(rc, 0);
    acc_close(&f);
    return 0;
}

static void test_acceptor_other_shard_refused(void **state)
{
    (void)state;
    run_main(2, acc_other_shard_main, NULL);
}

/* Closing with connections queued closes them (whether the kernel had accepted them yet or
 * not, no descriptor is left behind); their clients see the end. */
static int acc_close_queued_main(void *arg)
{
    (void)arg;
    struct acc_setup f;
    acc_open(&f);
    int fds_before = count_fds();
    int c1 = tpc_connect(&f.at);
    int c2 = tpc_connect(&f.at);
    CHECK(c1 >= 0 && c2 >= 0);
    loop_turns(10); /* through the loop, which submits and reaps: the accepts complete into
                     * the queue (or are still in the kernel: both must be closed) */
    CHECK_EQ(tpc_acceptor_close(f.acc), 0);
    tpc_close(f.lfd);
    char b;
    tpc_deadline_set(2000 * MS);
    int rc = (int)tpc_recv(c1, &b, 1, 0);
    CHECK(rc == 0 || rc == -ECONNRESET);
    rc = (int)tpc_recv(c2, &b, 1, 0);
    CHECK(rc == 0 || rc == -ECONNRESET);
    tpc_deadline_clear();
    tpc_close(c1), tpc_close(c2);
    CHECK_EQ(count_fds(), fds_before - 1); /* the listener */
    return 0;
}

static void test_acceptor_close_closes_queued(void **state)
{
    (void)state;
    run_main(1, acc_close_queued_main, NULL);
}

/* A socket that does not listen: its error, not a hang. */
static int acc_not_listening_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    tpc_acceptor *acc;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    int dg = tpc_dgram(&a);
    CHECK_EQ(tpc_acceptor_open(dg, &acc), 0);
    tpc_deadline_set(2000 * MS);
    int rc = tpc_acceptor_next(acc);
    CHECK(rc == -EINVAL || rc == -EOPNOTSUPP);
    CHECK_EQ(tpc_acceptor_next(acc), rc); /* and from then on */
    tpc_deadline_clear();
    CHECK_EQ(tpc_acceptor_close(acc), 0);
    tpc_close(dg);
    return 0;
}

static void test_acceptor_not_listening_fails(void **state)
{
    (void)state;
    run_main(1, acc_not_listening_main, NULL);
}

/* Two waiters on it, both woken by the error: while the second has not run yet, the acceptor
 * cannot be freed under it. */
static int acc_error_waiters_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    tpc_acceptor *acc;
    tpc_fiber *w1, *w2;
    int r1 = -1, r2 = -1;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    int dg = tpc_dgram(&a);
    CHECK_EQ(tpc_acceptor_open(dg, &acc), 0);
    CHECK_EQ(tpc_spawn(waiter_main, acc, &w1), 0);
    CHECK_EQ(tpc_spawn(waiter_main, acc, &w2), 0);
    CHECK_EQ(tpc_join(w1, &r1), 0);
    CHECK(r1 == -EINVAL || r1 == -EOPNOTSUPP);
    CHECK_EQ(tpc_acceptor_close(acc), 0); /* w2 may or may not have run by now */
    CHECK_EQ(tpc_join(w2, &r2), 0);
    CHECK(r2 == r1 || r2 == -ECANCELED);
    tpc_close(dg);
    return 0;
}

static void test_acceptor_error_wakes_every_waiter(void **state)
{
    (void)state;
    run_main(1, acc_error_waiters_main, NULL);
}

/* Closing while fibers wait wakes them with -ECANCELED; the last to leave frees it. */
static int acc_close_waiters_main(void *arg)
{
    (void)arg;
    struct acc_setup f;
    acc_open(&f);
    tpc_fiber *w1, *w2;
    int r1 = -1, r2 = -1;
    CHECK_EQ(tpc_spawn(waiter_main, f.acc, &w1), 0);
    CHECK_EQ(tpc_spawn(waiter_main, f.acc, &w2), 0);
    tpc_yield(); /* both wait */
    CHECK_EQ(tpc_acceptor_close(f.acc), 0);
    CHECK_EQ(tpc_join(w1, &r1), 0);
    CHECK_EQ(tpc_join(w2, &r2), 0);
    CHECK_EQ(r1, -ECANCELED);
    CHECK_EQ(r2, -ECANCELED);
    tpc_close(f.lfd);
    return 0;
}

static void test_acceptor_close_wakes_waiters(void **state)
{
    (void)state;
    run_main(1, acc_close_waiters_main, NULL);
}

static int acc_bad_args_main(void *arg)
{
    (void)arg;
    tpc_acceptor *acc;
    CHECK_EQ(tpc_acceptor_open(-1, &acc), -EINVAL);
    CHECK_EQ(tpc_acceptor_open(0, NULL), -EINVAL);
    CHECK_EQ(tpc_acceptor_next(NULL), -EINVAL);
    CHECK_EQ(tpc_acceptor_close(NULL), 0);
    return 0;
}

static void test_acceptor_bad_arguments(void **state)
{
    (void)state;
    assert_int_equal(tpc_acceptor_open(0, NULL), -EPERM);
    run_main(1, acc_bad_args_main, NULL);
}

/* ---- Out of descriptors: back off, do not spin, recover. ---- */

static int emfile_main(void *arg)
{
    (void)arg;
    tpc_addr at;
    int lfd = listener(&at);
    struct rlimit old, low;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 256;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0); /* before the accept is submitted */
    tpc_acceptor *acc;
    CHECK_EQ(tpc_acceptor_open(lfd, &acc), 0);
    int fill[256], n = 0;
    while (n < 256 && (fill[n] = dup(0)) >= 0)
        n++;
    CHECK(n > 0 && n < 256);
    close(fill[--n]); /* room for the client's socket, none for the server's */
    tpc_shard_stats before, after;
    CHECK_EQ(tpc_stats(0, &before), 0);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    uint64_t t0 = tpc_now_fresh();
    int c = tpc_connect(&at);
    CHECK(c >= 0);
    tpc_deadline_set(300 * MS);
    CHECK_EQ(tpc_acceptor_next(acc), -ETIMEDOUT); /* nothing can be accepted now */
    tpc_deadline_clear();
    uint64_t window = tpc_now_fresh() - t0;
    getrusage(RUSAGE_SELF, &r1);
    CHECK_EQ(tpc_stats(0, &after), 0);
    uint64_t pauses = after.accept_backoffs - before.accept_backoffs;
    /* Retries after 10, 20, 40, 80, 160 ms: at most 6 in 300 ms (a spinning acceptor makes
     * thousands), and it did hit the limit. */
    CHECK(pauses >= 1 && pauses <= 7);
    long cpu_us =
        (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) *
            1000000L +
        (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
    CHECK(cpu_us < (long)(window / 1000) / 2); /* well under one CPU busy */
    /* Descriptors come back: the acceptor recovers by itself (next retry within ~320 ms). */
    while (n)
        close(fill[--n]);
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    tpc_deadline_set(3000 * MS);
    int fd = tpc_acceptor_next(acc);
    tpc_deadline_clear();
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ(tpc_send(fd, "x", 1, 0), 1);
        char b = 0;
        CHECK_EQ(tpc_recv(c, &b, 1, 0), 1);
        CHECK_EQ(b, 'x');
        tpc_close(fd);
    }
    tpc_close(c);
    CHECK_EQ(tpc_acceptor_close(acc), 0);
    tpc_close(lfd);
    return 0;
}

static void test_emfile(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind keeps descriptors of its own above the soft limit");
    run_main(1, emfile_main, NULL);
}

/* ---- Servers. ---- */

static int echo_conn(int fd, void *arg)
{
    (void)arg;
    char buf[256];
    ssize_t n;
    while ((n = tpc_recv(fd, buf, sizeof(buf), 0)) > 0)
        if (tpc_send(fd, buf, (size_t)n, 0) != n)
            break;
    return 0;
}

static int echo_client(void *arg)
{
    const tpc_addr *at = arg;
    int fd = tpc_connect(at);
    CHECK(fd >= 0);
    if (fd < 0)
        return fd;
    char msg[32], back[32];
    int len = snprintf(msg, sizeof(msg), "hello from %p", (void *)&fd);
    CHECK_EQ(tpc_send(fd, msg, (size_t)len, 0), len);
    int got = 0;
    while (got < len) {
        ssize_t n = tpc_recv(fd, back + got, sizeof(back) - (size_t)got, 0);
        CHECK(n > 0);
        if (n <= 0)
            break;
        got += (int)n;
    }
    CHECK(got == len && !memcmp(msg, back, (size_t)len));
    tpc_close(fd);
    return 0;
}

static int server_main(void *arg)
{
    int flags = (int)(intptr_t)arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    tpc_server_opts o = {.flags = flags, .stack_size = 32 * 1024};
    CHECK_EQ(tpc_server_start(&a, &o, echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    CHECK(at.in4.sin_port != 0);
    enum { N = 64 };
    tpc_fiber *f[N];
    for (int i = 0; i < N; i++)
        CHECK_EQ(tpc_spawn(echo_client, &at, &f[i]), 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    uint64_t total = 0;
    for (int s = 0; s < tpc_shard_count(); s++) {
        uint64_t acc;
        CHECK_EQ(tpc_server_load(srv, s, NULL, &acc), 0);
        total += acc;
    }
    CHECK_EQ(total, N);
    CHECK_EQ(tpc_server_load(srv, 2, NULL, NULL), -EINVAL);
    CHECK_EQ(tpc_server_stop(srv), 0);
    CHECK_EQ(tpc_connect(&at), -ECONNREFUSED); /* the listeners are closed */
    return 0;
}

static void test_server_reuseport(void **state)
{
    (void)state;
    run_main(2, server_main, (void *)0);
}

/* A handler that returns TPC_CONN_KEEP owns the connection and may close it with close(2): the
 * next connection, which gets the same number, is served (on epoll it stayed "kept" and its
 * receive waited for good). */
static int close_keep_conn(int fd, void *arg)
{
    (void)arg;
    char b[8];
    ssize_t n = tpc_recv(fd, b, sizeof(b), 0);
    if (n > 0)
        CHECK_EQ(tpc_send(fd, b, (size_t)n, 0), n);
    close(fd);
    return TPC_CONN_KEEP;
}

static int close_keep_main(void *arg)
{
    (void)arg;
    tpc_deadline_set(t_wait_limit_ns());
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, NULL, close_keep_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    for (int i = 0; i < 3; i++) {
        int c = tpc_connect(&at);
        CHECK(c >= 0);
        loop_turns(4); /* the handler waits in its receive first */
        char b[8];
        CHECK_EQ(tpc_send(c, "ping", 4, 0), 4);
        CHECK_EQ(tpc_recv(c, b, sizeof(b), 0), 4);
        CHECK_EQ(tpc_recv(c, b, sizeof(b), 0), 0);
        tpc_close(c);
    }
    CHECK_EQ(tpc_server_stop(srv), 0);
    return 0;
}

static void test_server_keep_then_close(void **state)
{
    (void)state;
    run_main(1, close_keep_main, NULL);
}

/* tpc_server_opts.stack_size and no_guard reach the connection fibers. */
struct stack_seen {
    tpc_event ran;
    bool guard;
    size_t size;
};

static int stack_conn(int fd, void *arg)
{
    (void)fd;
    struct stack_seen *s = arg;
    s->guard = tpc__self->current->guard;
    s->size = tpc__self->current->stack_size;
    tpc_event_set(&s->ran);
    return 0;
}

static int server_stack_main(void *arg)
{
    (void)arg;
    for (int no_guard = 0; no_guard < 2; no_guard++) {
        tpc_addr a, at;
        CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
        struct stack_seen seen = {.guard = no_guard}; /* the opposite of what it must see */
        tpc_event_init(&seen.ran, false);
        tpc_server *srv;
        tpc_server_opts o = {.stack_size = 48 * 1024, .no_guard = no_guard};
        CHECK_EQ(tpc_server_start(&a, &o, stack_conn, &seen, &srv), 0);
        CHECK_EQ(tpc_server_addr(srv, &at), 0);
        int fd = tpc_connect(&at);
        CHECK(fd >= 0);
        CHECK_EQ(tpc_event_wait(&seen.ran), 0);
        CHECK_EQ(seen.guard, !no_guard);
        CHECK_EQ(seen.size, 48 * 1024);
        tpc_close(fd);
        CHECK_EQ(tpc_server_stop(srv), 0);
        tpc_event_destroy(&seen.ran);
    }
    return 0;
}

static void test_server_stack_options(void **state)
{
    (void)state;
    run_main(1, server_stack_main, NULL);
}

/* Hand-off: long-lived connections end up evenly spread, whatever the kernel's hash says. */
static int hold_conn(int fd, void *arg)
{
    (void)arg;
    char b;
    tpc_recv(fd, &b, 1, 0); /* until the client closes */
    return 0;
}

static int handoff_main(void *arg)
{
    const char *where = arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse(where, &a), 0);
    if (a.sa.sa_family == AF_UNIX)
        unlink(a.un.sun_path);
    tpc_server *srv;
    tpc_server_opts o = {.flags = a.sa.sa_family == AF_UNIX ? 0 : TPC_SERVER_HANDOFF};
    CHECK_EQ(tpc_server_start(&a, &o, hold_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    enum { N = 20 };
    int c[N];
    for (int i = 0; i < N; i++)
        CHECK((c[i] = tpc_connect(&at)) >= 0);
    long live[2] = {0, 0};
    WAIT_UNTIL(tpc_server_load(srv, 0, &live[0], NULL) == 0 &&
               tpc_server_load(srv, 1, &live[1], NULL) == 0 && live[0] + live[1] == N);
    CHECK_EQ(live[0], N / 2);
    CHECK_EQ(live[1], N / 2);
    for (int i = 0; i < N; i++)
        tpc_close(c[i]);
    CHECK_EQ(tpc_server_stop(srv), 0);
    if (a.sa.sa_family == AF_UNIX)
        unlink(a.un.sun_path);
    return 0;
}

static void test_server_handoff(void **state)
{
    (void)state;
    run_main(2, handoff_main, "127.0.0.1:0");
    char path[64];
    snprintf(path, sizeof(path), "unix:/tmp/tpc-test-%d.sock", (int)getpid());
    run_main(2, handoff_main, path); /* Unix sockets always hand off */
}

static int server_errors_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(NULL, NULL, echo_conn, NULL, &srv), -EINVAL);
    CHECK_EQ(tpc_server_start(&a, NULL, NULL, NULL, &srv), -EINVAL);
    tpc_server_opts bad = {.flags = 4};
    CHECK_EQ(tpc_server_start(&a, &bad, echo_conn, NULL, &srv), -EINVAL);
    /* A port in use (by a listener without SO_REUSEPORT: several SO_REUSEPORT listeners of
     * one user may share a port, which is how the shards share it). */
    CHECK_EQ(tpc_server_start(&a, NULL, echo_conn, NULL, &srv), 0);
    tpc_addr at;
    tpc_server_addr(srv, &at);
    CHECK_EQ(tpc_listen(&at, 0, 0), -EADDRINUSE);
    int lfd = tpc_listen(&a, 0, 0);
    tpc_addr taken;
    tpc_sock_local(lfd, &taken);
    tpc_server *again;
    CHECK_EQ(tpc_server_start(&taken, NULL, echo_conn, NULL, &again), -EADDRINUSE);
    tpc_server_opts ho = {.flags = TPC_SERVER_HANDOFF};
    CHECK_EQ(tpc_server_start(&taken, &ho, echo_conn, NULL, &again), -EADDRINUSE);
    tpc_close(lfd);
    CHECK_EQ(tpc_server_stop(NULL), -EINVAL);
    CHECK_EQ(tpc_server_stop(srv), 0);
    return 0;
}

static void test_server_errors(void **state)
{
    (void)state;
    run_main(1, server_errors_main, NULL);
}

/* Sends all of buf, over short sends; false on an error. */
static bool send_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = tpc_send(fd, buf, len, 0);
        if (w <= 0)
            return false;
        buf += w, len -= (size_t)w;
    }
    return true;
}

/* Echoes what it receives through the shard's pool until the peer ends or an error. */
static int rx_echo(int fd, tpc_bufpool *pool)
{
    tpc_rx *rx;
    CHECK_EQ(tpc_rx_open(fd, pool, &rx), 0);
    tpc_buf b;
    while (tpc_rx_next(rx, &b) > 0) {
        bool sent = send_all(fd, b.data, b.len);
        tpc_buf_release(&b);
        if (!sent)
            break;
    }
    CHECK_EQ(tpc_rx_close(rx), 0);
    return 0;
}

/* ---- Options. ---- */

/* A stack size the fiber layer refuses would make every connection's spawn fail: start says
 * so (-EINVAL) rather than run a server that drops every connection. */
static int opts_main(void *arg)
{
    (void)arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv = NULL;
    size_t bad[] = {1, 8 * 1024, 16 * 1024 - 1, ((size_t)1 << 30) + 1, (size_t)2 << 30};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tpc_server_opts o = {.stack_size = bad[i]};
        CHECK_EQ(tpc_server_start(&a, &o, echo_conn, NULL, &srv), -EINVAL);
    }
    tpc_server_opts neg = {.backlog = -1};
    CHECK_EQ(tpc_server_start(&a, &neg, echo_conn, NULL, &srv), -EINVAL);
    tpc_server_opts flags = {.flags = TPC_SERVER_HANDOFF | 4};
    CHECK_EQ(tpc_server_start(&a, &flags, echo_conn, NULL, &srv), -EINVAL);
    flags.flags = TPC_SERVER_HANDOFF | TPC_SERVER_SHARE; /* one listener of its own: no sharing */
    CHECK_EQ(tpc_server_start(&a, &flags, echo_conn, NULL, &srv), -EINVAL);
    /* The smallest stack allowed serves. */
    tpc_server_opts small = {.stack_size = 16 * 1024};
    CHECK_EQ(tpc_server_start(&a, &small, echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    CHECK_EQ(echo_client(&at), 0);
    uint64_t started = 0;
    CHECK_EQ(tpc_server_load(srv, 0, NULL, &started), 0);
    CHECK_EQ(started, 1);
    CHECK_EQ(tpc_server_stop(srv), 0);
    return 0;
}

static void test_server_opts(void **state)
{
    (void)state;
    run_main(1, opts_main, NULL);
}

/* ---- Stopping. ---- */

/* The application's state that handlers use: freed once tpc_server_stop has returned. */
struct app {
    atomic_int entered, returned, cancelled;
    atomic_bool stopped; /* set when tpc_server_stop returned: a handler must not begin after */
    atomic_int late;
};

static int app_conn(int fd, void *arg)
{
    struct app *app = arg;
    if (atomic_load(&app->stopped))
        atomic_fetch_add(&app->late, 1);
    atomic_fetch_add(&app->entered, 1);
    char b;
    ssize_t n;
    while ((n = tpc_recv(fd, &b, 1, 0)) > 0) /* echo until the peer ends, or cancelled */
        if (tpc_send(fd, &b, 1, 0) != 1)
            break;
    if (n == -ECANCELED)
        atomic_fetch_add(&app->cancelled, 1);
    atomic_fetch_add(&app->returned, 1);
    return 0;
}

/* Waits (bounded) until n handlers of app have begun. */
static void wait_entered(struct app *app, int n)
{
    WAIT_UNTIL(atomic_load(&app->entered) >= n);
}

/* A thread that keeps connecting to the server and hanging up, so that connections are on
 * their way (accepted, or handed to another shard) whenever the server stops. */
static atomic_bool hammer_on;
static tpc_addr hammer_at;

static void *hammer(void *arg)
{
    (void)arg;
    while (atomic_load(&hammer_on)) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        connect(fd, &hammer_at.sa, hammer_at.len); /* refused while no server listens */
        close(fd);
        /* The pace is the workload (about 10,000 connections a second at most), not a wait
         * for anything: it keeps sanitizer builds from drowning in handlers. */
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* No handler begins after tpc_server_stop has returned, and none is still running then, in
 * either mode, while connections stream in. (A hand-off used to start handlers from
 * messages still on their way: thousands of late starts over 200 stops, and a program that
 * freed `arg` after stop gave them freed memory.) */
static int no_late_start_main(void *arg)
{
    (void)arg;
    enum { CYCLES = 40 };
    static struct app apps[2][CYCLES]; /* kept to the end, so that a late start is counted */
    memset(apps, 0, sizeof(apps));
    tpc_addr a;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, NULL, echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &hammer_at), 0); /* a port for every cycle */
    CHECK_EQ(tpc_server_stop(srv), 0);
    atomic_store(&hammer_on, true);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, hammer, NULL), 0);
    long started = 0;
    for (int mode = 0; mode < 2; mode++) {
        tpc_server_opts o = {.flags = mode ? TPC_SERVER_HANDOFF : 0};
        for (int cy = 0; cy < CYCLES; cy++) {
            struct app *app = &apps[mode][cy];
            CHECK_EQ(tpc_server_start(&hammer_at, &o, app_conn, app, &srv), 0);
            wait_entered(app, 3);
            CHECK_EQ(tpc_server_stop(srv), 0);
            atomic_store(&app->stopped, true);
            CHECK_EQ(atomic_load(&app->returned), atomic_load(&app->entered));
            started += atomic_load(&app->entered);
        }
    }
    atomic_store(&hammer_on, false);
    pthread_join(t, NULL);
    all_loop_turns(3); /* through both loops: a late start would come now */
    int late = 0;
    for (int mode = 0; mode < 2; mode++)
        for (int cy = 0; cy < CYCLES; cy++)
            late += atomic_load(&apps[mode][cy].late);
    CHECK_EQ(late, 0);
    print_message("%ld handlers over %d stops, %d began after their server's stop\n", started,
                  2 * CYCLES, late);
    return 0;
}

static void test_server_no_late_start(void **state)
{
    (void)state;
    run_main(2, no_late_start_main, NULL);
}

/* Closes the clients: run while tpc_server_stop waits. */
static int closer(void *arg)
{
    int *c = arg;
    tpc_close(c[0]);
    tpc_close(c[1]);
    return 0;
}

/* Starts a hand-off server (one connection per shard) with two held connections. */
static tpc_server *two_held(struct app *app, int c[2])
{
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server_opts o = {.flags = TPC_SERVER_HANDOFF};
    tpc_server *srv = NULL;
    CHECK_EQ(tpc_server_start(&a, &o, app_conn, app, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    for (int i = 0; i < 2; i++)
        CHECK((c[i] = tpc_connect(&at)) >= 0);
    wait_entered(app, 2);
    return srv;
}

/* Running handlers: without a deadline stop cancels them and returns once they have returned;
 * a deadline is their grace: those that return by themselves before it are not cancelled, and
 * those still running when it passes are. */
static int stop_waits_main(void *arg)
{
    (void)arg;
    int c[2];
    char b;

    struct app *app = calloc(1, sizeof(*app));
    tpc_server *srv = two_held(app, c);
    CHECK_EQ(tpc_server_stop(srv), 0);
    CHECK_EQ(atomic_load(&app->returned), 2);
    CHECK_EQ(atomic_load(&app->cancelled), 2);
    free(app); /* nothing of the server uses it any more */
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(tpc_recv(c[i], &b, 1, 0), 0); /* the server closed its end */
        tpc_close(c[i]);
    }

    app = calloc(1, sizeof(*app));
    srv = two_held(app, c);
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(closer, c, &f), 0); /* runs once stop waits */
    uint64_t t0 = tpc_now_fresh();
    tpc_deadline_set(10000 * MS);
    CHECK_EQ(tpc_server_stop(srv), 0);
    tpc_deadline_clear();
    CHECK(tpc_now_fresh() - t0 < 5000 * MS);
    CHECK_EQ(atomic_load(&app->returned), 2);
    CHECK_EQ(atomic_load(&app->cancelled), 0); /* they saw their clients' end */
    CHECK_EQ(tpc_join(f, NULL), 0);
    free(app);

    app = calloc(1, sizeof(*app));
    srv = two_held(app, c);
    t0 = tpc_now_fresh();
    tpc_deadline_set(30 * MS);
    CHECK_EQ(tpc_server_stop(srv), 0);
    tpc_deadline_clear();
    CHECK(tpc_now_fresh() - t0 >= 30 * MS);
    CHECK_EQ(atomic_load(&app->returned), 2);
    CHECK_EQ(atomic_load(&app->cancelled), 2);
    free(app);
    for (int i = 0; i < 2; i++)
        tpc_close(c[i]);
    return 0;
}

/* Two stops at once: the second is refused (it dropped the handle's count again and
 * returned while a handler ran, and the first then waited for good); the first returns once
 * every handler has. */
static int stopper(void *arg)
{
    return tpc_server_stop(arg);
}

static int stop_twice_main(void *arg)
{
    (void)arg;
    int c[2];
    struct app *app = calloc(1, sizeof(*app));
    tpc_server *srv = two_held(app, c);
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(stopper, srv, &f), 0);
    tpc_yield(); /* the first stop is under way */
    CHECK_EQ(tpc_server_stop(srv), -EINVAL);
    int rc = -1;
    CHECK_EQ(tpc_join(f, &rc), 0);
    CHECK_EQ(rc, 0);
    CHECK_EQ(atomic_load(&app->returned), 2);
    free(app);
    for (int i = 0; i < 2; i++)
        tpc_close(c[i]);
    return 0;
}

static void test_server_stop_twice(void **state)
{
    (void)state;
    run_main(2, stop_twice_main, NULL);
}

static void test_server_stop_waits(void **state)
{
    (void)state;
    run_main(2, stop_waits_main, NULL);
}

/* ---- tpc_server_stop's error paths. ---- */

static int stop_elsewhere(void *arg)
{
    return tpc_server_stop(arg);
}

static int stop_rc;
static tpc_event stop_tried;
static void stop_from_callback(void *arg)
{
    stop_rc = tpc_server_stop(arg);
    tpc_event_set(&stop_tried);
}

/* On shard 1: a server, and its stop while a calloc fails (the remote call it used to make
 * failed with -ENOMEM there, which stop took for "that loop never ran": it closed the live
 * loop's listener and freed the server under it). */
static int stop_nomem(void *arg)
{
    (void)arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, NULL, echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    CHECK_EQ(echo_client(&at), 0);
    fail_next_calloc = true;
    CHECK_EQ(tpc_server_stop(srv), 0);
    fail_next_calloc = false;
    for (int i = 0; i < 10; i++) /* every shard's listener is closed: nobody is served */
        CHECK_EQ(tpc_connect(&at), -ECONNREFUSED);
    return 0;
}

/* tpc_on_all whose send to a shard fails (a calloc, here the 1st to the 4th of its callocs; the
 * test lives in this file for its calloc wrapper):
 * whatever failed, no fn it started is still running when it returns (it returned at once,
 * with the arg of a started fn still in use). */
static _Atomic int on_all_started[2], on_all_done[2];
static int slow_everywhere(void *arg)
{
    (void)arg;
    atomic_fetch_add(&on_all_started[tpc_shard_id()], 1);
    tpc_sleep(20 * MS);
    atomic_fetch_add(&on_all_done[tpc_shard_id()], 1);
    return 0;
}

static int on_all_nomem_main(void *arg)
{
    (void)arg;
    for (int k = 1; k <= 4; k++) {
        fail_calloc_in = k;
        int rc = tpc_on_all(slow_everywhere, NULL);
        fail_calloc_in = 0;
        CHECK(rc == 0 || rc == -ENOMEM);
        int started[2], done[2];
        for (int i = 0; i < 2; i++) {
            started[i] = atomic_load(&on_all_started[i]);
            done[i] = atomic_load(&on_all_done[i]);
            CHECK_EQ(started[i], done[i]);
        }
        tpc_sleep(3 * 20 * MS); /* a fn left behind would start or end meanwhile */
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(atomic_load(&on_all_started[i]), started[i]);
            CHECK_EQ(atomic_load(&on_all_done[i]), done[i]);
        }
    }
    return 0;
}

static void test_on_all_waits_after_a_failed_send(void **state)
{
    (void)state;
    run_main(2, on_all_nomem_main, NULL);
}

static int stop_errors_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_stop(NULL), -EINVAL);
    CHECK_EQ(tpc_server_start(&a, NULL, echo_conn, NULL, &srv), 0);
    int rc = 0;
    CHECK_EQ(tpc_call_on(1, stop_elsewhere, srv, &rc), 0);
    CHECK_EQ(rc, -EXDEV); /* and the handle is still valid: */
    tpc_event_init(&stop_tried, false);
    CHECK_EQ(tpc_defer(stop_from_callback, srv), 0);
    CHECK_EQ(tpc_event_wait(&stop_tried), 0);
    CHECK_EQ(stop_rc, -EPERM);
    tpc_addr at;
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    CHECK_EQ(echo_client(&at), 0);
    CHECK_EQ(tpc_server_stop(srv), 0);

    tpc_fiber *r;
    CHECK_EQ(tpc_spawn_on(1, NULL, stop_nomem, NULL, &r), 0);
    CHECK_EQ(tpc_join(r, &rc), 0);
    return 0;
}

static void test_server_stop_errors(void **state)
{
    (void)state;
    run_main(2, stop_errors_main, NULL);
}

/* Stop waits for connections still on their way to a busy shard (TPC_SERVER_HANDOFF): when it
 * returns every server-side descriptor is closed (those handed to the busy shard were still
 * open, closed only when it next ran its messages). */
static _Atomic int hog_running;
static int hog(void *arg)
{
    (void)arg;
    atomic_store(&hog_running, 1);
    int64_t until = t_now_ns() + 300 * MS; /* busy: its messages wait */
    while (t_now_ns() < until)
        ;
    return 0;
}

static int sleeping_conn(int fd, void *arg)
{
    (void)fd;
    (void)arg;
    tpc_sleep(60LL * 1000 * MS); /* until the stop cancels it */
    return 0;
}

static int handoff_stop_main(void *arg)
{
    (void)arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server_opts o = {.flags = TPC_SERVER_HANDOFF};
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, &o, sleeping_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    tpc_fiber *h;
    atomic_store(&hog_running, 0);
    CHECK_EQ(tpc_spawn_on(1, NULL, hog, NULL, &h), 0);
    WAIT_UNTIL(atomic_load(&hog_running));
    enum { N = 8 };
    int c[N];
    for (int i = 0; i < N; i++)
        CHECK((c[i] = tpc_connect(&at)) >= 0);
    long live0 = 0, live1 = 0; /* every connection handed out: half of them to the busy shard */
    WAIT_UNTIL(tpc_server_load(srv, 0, &live0, NULL) == 0 &&
               tpc_server_load(srv, 1, &live1, NULL) == 0 && live0 + live1 == N);
    CHECK(live1 > 0);
    CHECK_EQ(tpc_server_stop(srv), 0);
    int open = 0;
    for (int i = 0; i < N; i++) {
        struct pollfd p = {.fd = c[i], .events = POLLIN | POLLRDHUP};
        open += poll(&p, 1, 0) == 0; /* no end of stream: the server's end is open */
        close(c[i]);
    }
    CHECK_EQ(open, 0);
    CHECK_EQ(tpc_join(h, NULL), 0);
    return 0;
}

static void test_server_stop_waits_for_handoffs_on_their_way(void **state)
{
    (void)state;
    run_main(2, handoff_stop_main, NULL);
}

/* An address another socket listens on is -EADDRINUSE, SO_REUSEPORT or not (the server joined
 * it: a second copy of a program took half of the first one's connections); TPC_SERVER_SHARE
 * joins on purpose. */
static int addr_in_use_main(void *arg)
{
    (void)arg;
    tpc_addr any, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &any), 0);
    int other = tpc_listen(&any, 0, TPC_LISTEN_REUSEPORT); /* as another program's would */
    CHECK(other >= 0);
    CHECK_EQ(tpc_sock_local(other, &at), 0);
    tpc_server *srv = NULL;
    bool procfs = access("/proc/net/tcp", R_OK) == 0; /* (where the listeners are read) */
    CHECK_EQ(tpc_server_start(&at, NULL, echo_conn, NULL, &srv), procfs ? -EADDRINUSE : 0);
    if (!procfs)
        CHECK_EQ(tpc_server_stop(srv), 0);
    int fds[2] = {-1, -1};
    CHECK_EQ(tpc_listen_all(&at, 0, fds), procfs ? -EADDRINUSE : 0);
    for (int i = 0; i < 2 && !procfs; i++)
        close(fds[i]);
    tpc_server_opts o = {.flags = TPC_SERVER_SHARE};
    CHECK_EQ(tpc_server_start(&at, &o, echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_stop(srv), 0);
    tpc_addr unix_addr;
    CHECK_EQ(tpc_addr_parse("unix:/tmp/tpc-test-share.sock", &unix_addr), 0);
    CHECK_EQ(tpc_server_start(&unix_addr, &o, echo_conn, NULL, &srv), -EINVAL); /* SHARE, Unix */
    o.flags = 8;                                                                /* unknown */
    CHECK_EQ(tpc_server_start(&at, &o, echo_conn, NULL, &srv), -EINVAL);
    tpc_close(other);
    CHECK_EQ(tpc_server_start(&at, NULL, echo_conn, NULL, &srv), 0); /* free again */
    CHECK_EQ(echo_client(&at), 0);
    CHECK_EQ(tpc_server_stop(srv), 0);
    /* Only the same address and port count: a program may listen on 0.0.0.0:P and on
     * 127.0.0.1:P or [::]:P (a review: the probe had refused them). */
    CHECK_EQ(tpc_addr_parse("0.0.0.0:0", &any), 0);
    int wild = tpc_listen(&any, 0, TPC_LISTEN_REUSEPORT);
    CHECK(wild >= 0);
    CHECK_EQ(tpc_sock_local(wild, &at), 0);
    char text[64];
    tpc_addr near;
    snprintf(text, sizeof(text), "127.0.0.1:%d", ntohs(at.in4.sin_port));
    CHECK_EQ(tpc_addr_parse(text, &near), 0);
    CHECK_EQ(tpc_server_start(&near, NULL, echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_stop(srv), 0);
    snprintf(text, sizeof(text), "[::]:%d", ntohs(at.in4.sin_port));
    CHECK_EQ(tpc_addr_parse(text, &near), 0);
    int v6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0); /* (a kernel without IPv6: skip) */
    if (v6 >= 0) {
        close(v6);
        CHECK_EQ(tpc_server_start(&near, NULL, echo_conn, NULL, &srv), 0);
        CHECK_EQ(tpc_server_stop(srv), 0);
    }
    tpc_close(wild);
    return 0;
}

static void test_server_address_in_use(void **state)
{
    (void)state;
    run_main(2, addr_in_use_main, NULL);
}

/* A handler that stops its own server is told -EDEADLK (stop waits for every handler to
 * return: the process hung), and the server goes on until a fiber of its own stops it. */
static tpc_server *self_stop_srv;
static _Atomic int self_stop_rc = 1;
static int self_stopping_conn(int fd, void *arg)
{
    (void)arg;
    atomic_store(&self_stop_rc, tpc_server_stop(self_stop_srv));
    return echo_conn(fd, NULL);
}

static int self_stop_main(void *arg)
{
    (void)arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    CHECK_EQ(tpc_server_start(&a, NULL, self_stopping_conn, NULL, &self_stop_srv), 0);
    CHECK_EQ(tpc_server_addr(self_stop_srv, &at), 0);
    CHECK_EQ(echo_client(&at), 0);
    CHECK_EQ(atomic_load(&self_stop_rc), -EDEADLK);
    CHECK_EQ(echo_client(&at), 0); /* still serving */
    CHECK_EQ(tpc_server_stop(self_stop_srv), 0);
    return 0;
}

static void test_server_stop_from_its_handler(void **state)
{
    (void)state;
    run_main(1, self_stop_main, NULL);
}

/* A start whose caller's deadline passes while the shards start accepting fails with
 * -ETIMEDOUT and leaves nothing behind: no listener, no descriptor, no memory. */
static int start_interrupted_main(void *arg)
{
    (void)arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    int fds = count_fds();
    for (int mode = 0; mode < 2; mode++) {
        tpc_server_opts o = {.flags = mode ? TPC_SERVER_HANDOFF : 0};
        tpc_server *srv = NULL;
        tpc_deadline_set(0); /* already passed */
        CHECK_EQ(tpc_server_start(&a, &o, echo_conn, NULL, &srv), -ETIMEDOUT);
        tpc_deadline_clear();
        CHECK_EQ(count_fds(), fds);
    }
    /* And a start after it works. */
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, NULL, echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    CHECK_EQ(echo_client(&at), 0);
    CHECK_EQ(tpc_server_stop(srv), 0);
    CHECK_EQ(count_fds(), fds);
    return 0;
}

static void test_server_start_interrupted(void **state)
{
    (void)state;
    run_main(2, start_interrupted_main, NULL);
}

/* While the runtime stops (the caller is cancelled and calls to other shards fail with
 * -ESHUTDOWN), stop still stops every shard and waits for the handlers: it used to return
 * -ESHUTDOWN at once, leaving them to run after it. Everything is closed and freed when
 * tpc_run returns (LeakSanitizer, valgrind). */
static int stop_at_shutdown_main(void *arg)
{
    struct app *app = arg;
    int c[2];
    tpc_server *srv = two_held(app, c);
    CHECK_EQ(tpc_shutdown(0), 0);
    CHECK_EQ(tpc_server_stop(srv), 0);
    CHECK_EQ(atomic_load(&app->returned), 2);
    close(c[0]);
    close(c[1]);
    return 0;
}

static void test_server_stop_at_shutdown(void **state)
{
    (void)state;
    int fds = count_fds();
    struct app app = {0};
    run_main(2, stop_at_shutdown_main, &app);
    assert_int_equal(count_fds(), fds);
}

/* ---- Start and stop, over and over, with live and reset connections. ---- */

static int cycles_main(void *arg)
{
    (void)arg;
    int base = count_fds();
    for (int mode = 0; mode < 2; mode++) {
        tpc_server_opts o = {.flags = mode ? TPC_SERVER_HANDOFF : 0};
        for (int cy = 0; cy < 20; cy++) {
            struct app *app = calloc(1, sizeof(*app));
            tpc_addr a, at;
            CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
            tpc_server *srv;
            CHECK_EQ(tpc_server_start(&a, &o, app_conn, app, &srv), 0);
            CHECK_EQ(tpc_server_addr(srv, &at), 0);
            enum { N = 6 };
            int c[N];
            for (int i = 0; i < N; i++) {
                char b = (char)i;
                CHECK((c[i] = tpc_connect(&at)) >= 0);
                CHECK_EQ(tpc_send(c[i], &b, 1, 0), 1);
                CHECK_EQ(tpc_recv(c[i], &b, 1, 0), 1);
                CHECK_EQ(b, (char)i);
            }
            for (int i = N / 2; i < N; i++) { /* half reset their connection */
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                CHECK_EQ(setsockopt(c[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
                tpc_close(c[i]);
            }
            CHECK_EQ(tpc_server_stop(srv), 0);
            CHECK_EQ(atomic_load(&app->entered), N);
            CHECK_EQ(atomic_load(&app->returned), N);
            free(app);
            for (int i = 0; i < N / 2; i++) { /* the live ones see the end */
                char b;
                ssize_t n = tpc_recv(c[i], &b, 1, 0);
                CHECK(n == 0 || n == -ECONNRESET);
                tpc_close(c[i]);
            }
            CHECK_EQ(tpc_connect(&at), -ECONNREFUSED);
            CHECK_EQ(count_fds(), base); /* listeners, connections: all closed */
        }
    }
    return 0;
}

static void test_server_cycles(void **state)
{
    (void)state;
    run_main(2, cycles_main, NULL);
}

/* ---- Parked connections (TPC_CONN_PARK). ---- */

static atomic_int park_calls, park_inside;

/* Echoes one byte per call, then waits for the next without a fiber. */
static int park_conn(int fd, void *arg)
{
    (void)arg;
    atomic_fetch_add(&park_calls, 1);
    atomic_fetch_add(&park_inside, 1);
    char b;
    ssize_t n = tpc_recv(fd, &b, 1, 0);
    int rc = n == 1 && tpc_send(fd, &b, 1, 0) == 1 ? TPC_CONN_PARK : 0;
    atomic_fetch_sub(&park_inside, 1);
    return rc;
}

/* Connections whose handler parks them between bytes: no handler runs while they wait (each
 * call returned), each byte calls the handler again on the same connection, a peer that
 * closes a parked connection has it closed, and stopping the server closes the parked ones at
 * once (their peers see the end). Both ways of spreading connections. */
static int park_main(void *arg)
{
    (void)arg;
    int base = count_fds();
    for (int mode = 0; mode < 2; mode++) {
        tpc_server_opts o = {.flags = mode ? TPC_SERVER_HANDOFF : 0};
        tpc_addr a, at;
        CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
        tpc_server *srv;
        atomic_store(&park_calls, 0);
        CHECK_EQ(tpc_server_start(&a, &o, park_conn, NULL, &srv), 0);
        CHECK_EQ(tpc_server_addr(srv, &at), 0);
        enum { N = 40, ROUNDS = 3 };
        int c[N];
        for (int i = 0; i < N; i++)
            CHECK((c[i] = tpc_connect(&at)) >= 0);
        for (int r = 0; r < ROUNDS; r++) {
            for (int i = 0; i < N; i++) {
                char b = (char)(i + r);
                CHECK_EQ(tpc_send(c[i], &b, 1, 0), 1);
                CHECK_EQ(tpc_recv(c[i], &b, 1, 0), 1);
                CHECK_EQ(b, (char)(i + r));
            }
            WAIT_UNTIL(atomic_load(&park_inside) == 0); /* every handler returned: all parked */
        }
        CHECK_EQ(atomic_load(&park_calls), N * ROUNDS);
        int open_fds = count_fds();
        tpc_close(c[0]); /* a parked connection's peer closes: it is taken up, and closed */
        WAIT_UNTIL(count_fds() == open_fds - 2);
        CHECK_EQ(atomic_load(&park_calls), N * ROUNDS + 1);
        CHECK_EQ(tpc_server_stop(srv), 0);
        for (int i = 1; i < N; i++) { /* the parked ones were closed by the stop */
            char b;
            CHECK_EQ(tpc_recv(c[i], &b, 1, 0), 0);
            tpc_close(c[i]);
        }
        CHECK_EQ(atomic_load(&park_calls), N * ROUNDS + 1); /* not taken up to be closed */
        CHECK_EQ(count_fds(), base);
    }
    return 0;
}

static void test_server_park(void **state)
{
    (void)state;
    run_main(2, park_main, NULL);
}

/* The runtime stops with connections parked and the server never stopped: they are closed
 * and freed as the shards stop (LeakSanitizer, valgrind; the descriptors are counted). */
static int park_at_shutdown_main(void *arg)
{
    int *peers = arg;
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, NULL, park_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    for (int i = 0; i < 4; i++) {
        char b = 'p';
        CHECK((peers[i] = tpc_connect(&at)) >= 0);
        CHECK_EQ(tpc_send(peers[i], &b, 1, 0), 1);
        CHECK_EQ(tpc_recv(peers[i], &b, 1, 0), 1);
    }
    WAIT_UNTIL(atomic_load(&park_inside) == 0);
    CHECK_EQ(tpc_shutdown(0), 0);
    CHECK_EQ(tpc_server_stop(srv), 0);
    return 0;
}

static void test_server_park_at_shutdown(void **state)
{
    (void)state;
    int fds = count_fds(), peers[4];
    run_main(2, park_at_shutdown_main, peers);
    for (int i = 0; i < 4; i++) {
        char b;
        assert_int_equal(recv(peers[i], &b, 1, 0), 0); /* the server's end was closed */
        close(peers[i]);
    }
    assert_int_equal(count_fds(), fds);
}

/* ---- Out of descriptors under a server. ---- */

static int server_emfile_main(void *arg)
{
    (void)arg;
    struct rlimit old, low;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 256;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0); /* before the accept is submitted */
    struct app *app = calloc(1, sizeof(*app));
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, NULL, app_conn, app, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    int fill[256], n = 0;
    while (n < 256 && (fill[n] = dup(0)) >= 0)
        n++;
    CHECK(n > 0 && n < 256);
    close(fill[--n]); /* room for the client's socket, none for the server's */
    tpc_shard_stats before, after;
    CHECK_EQ(tpc_stats(0, &before), 0);
    int c = tpc_connect(&at);
    CHECK(c >= 0);
    after = before;
    WAIT_UNTIL(tpc_stats(0, &after) == 0 && after.accept_backoffs > before.accept_backoffs);
    CHECK(after.accept_backoffs > before.accept_backoffs);
    CHECK_EQ(atomic_load(&app->entered), 0);
    /* Descriptors come back: the server serves the connection by itself. */
    while (n)
        close(fill[--n]);
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    char b = 'x';
    tpc_deadline_set(3000 * MS);
    CHECK_EQ(tpc_send(c, &b, 1, 0), 1);
    b = 0;
    CHECK_EQ(tpc_recv(c, &b, 1, 0), 1);
    tpc_deadline_clear();
    CHECK_EQ(b, 'x');
    tpc_close(c);
    CHECK_EQ(tpc_server_stop(srv), 0);
    CHECK_EQ(atomic_load(&app->entered), 1);
    free(app);
    return 0;
}

static void test_server_emfile(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind keeps descriptors of its own above the soft limit");
    run_main(1, server_emfile_main, NULL);
}

/* ---- The acceptor's pause at 1,024 queued connections. ---- */

/* Connections waiting in the listener's accept queue (for a listener, TCP_INFO's unacked). */
static int backlog_of(int lfd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    return getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 ? (int)ti.tcpi_unacked : -1;
}

static int pause_main(void *arg)
{
    (void)arg;
    enum { N = 1200, CHUNK = 32, HIGH = 1024 };
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    int lfd = tpc_listen(&a, 2048, 0);
    CHECK(lfd >= 0);
    CHECK_EQ(tpc_sock_local(lfd, &at), 0);
    tpc_acceptor *acc;
    CHECK_EQ(tpc_acceptor_open(lfd, &acc), 0);
    static int c[N];
    /* Clients connect a chunk at a time (plain connects: the shard does not run meanwhile);
     * after each chunk the acceptor takes what it can. */
    int connected = 0;
    while (connected < N) {
        for (int i = 0; i < CHUNK && connected < N; i++, connected++) {
            c[connected] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            CHECK(c[connected] >= 0);
            CHECK_EQ(connect(c[connected], &at.sa, at.len), 0);
        }
        /* until it has taken them, or holds 1,024 */
        WAIT_UNTIL(backlog_of(lfd) == 0 || connected - backlog_of(lfd) >= HIGH);
    }
    loop_turns(10); /* through the loop: an acceptor that did not pause takes the rest */
    int waiting = backlog_of(lfd);
    /* It holds 1,024, plus what the kernel had accepted in the batch that crossed 1,024. */
    CHECK(waiting <= N - HIGH && waiting >= N - HIGH - CHUNK);
    print_message("acceptor paused with %d connections queued, %d left in the listen backlog\n",
                  N - waiting, waiting);
    /* Taken, the queue drains below 256 and it accepts again: every connection comes out. */
    tpc_deadline_set(20000 * MS);
    for (int i = 0; i < N; i++) {
        int fd = tpc_acceptor_next(acc);
        CHECK(fd >= 0);
        if (fd < 0)
            break;
        close(fd);
    }
    tpc_deadline_clear();
    CHECK_EQ(backlog_of(lfd), 0);
    for (int i = 0; i < N; i++)
        close(c[i]);
    CHECK_EQ(tpc_acceptor_close(acc), 0);
    tpc_close(lfd);
    return 0;
}

static void test_acceptor_pause(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "valgrind keeps descriptors of its own above the soft limit");
    struct rlimit old, want;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    want = old;
    if (want.rlim_cur < 4096) {
        SKIP_IF(want.rlim_max < 4096, "RLIMIT_NOFILE's hard limit is below 4096");
        want.rlim_cur = 4096;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &want), 0);
    }
    run_main(1, pause_main, NULL);
    setrlimit(RLIMIT_NOFILE, &old);
}

/* ---- One peer that sends and never reads, on a shared pool. ----
 * Its handler blocks in a send, and its stream stops at its share of the pool (a quarter):
 * the other connections are served. (Without a bound the stream took every buffer and every
 * other connection on the shard starved.) */

static tpc_bufpool *fair_pool;

static int small_echo_conn(int fd, void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_sock_buffers(fd, 4096, 4096), 0); /* so that the hog jams soon */
    return rx_echo(fd, fair_pool);
}

static int echo_through(const tpc_addr *at, int rounds)
{
    int fd = tpc_connect(at);
    CHECK(fd >= 0);
    char msg[100], back[100];
    int ok = 0;
    for (int r = 0; r < rounds; r++) {
        memset(msg, 'a' + r, sizeof(msg));
        tpc_deadline_set(2000 * MS); /* loose: a starved stream never answers */
        size_t got = 0;
        if (send_all(fd, msg, sizeof(msg)))
            while (got < sizeof(back)) {
                ssize_t n = tpc_recv(fd, back + got, sizeof(back) - got, 0);
                if (n <= 0)
                    break;
                got += (size_t)n;
            }
        tpc_deadline_clear();
        ok += got == sizeof(back) && !memcmp(msg, back, sizeof(msg));
    }
    tpc_close(fd);
    return ok;
}

static int fair_main(void *arg)
{
    (void)arg;
    enum { COUNT = 16, SHARE = COUNT / 4 };
    CHECK_EQ(tpc_bufpool_create(COUNT, 1024, &fair_pool), 0);
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    CHECK_EQ(tpc_server_start(&a, NULL, small_echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    int hog = tpc_connect(&at);
    CHECK(hog >= 0);
    CHECK_EQ(tpc_sock_buffers(hog, 4096, 4096), 0);
    CHECK_EQ(fcntl(hog, F_SETFL, fcntl(hog, F_GETFL) | O_NONBLOCK), 0);
    /* The hog writes until its connection is jammed: writes fail and it does not become
     * writable again within 50 ms. */
    static char junk[16384];
    long sent = 0;
    for (int round = 0; round < 400; round++) {
        ssize_t w;
        while ((w = write(hog, junk, sizeof(junk))) > 0)
            sent += w;
        tpc_deadline_set(50 * MS);
        int rc = tpc_poll(hog, POLLOUT);
        tpc_deadline_clear();
        if (rc == -ETIMEDOUT && tpc_bufpool_available(fair_pool) == COUNT - SHARE)
            break;
    }
    CHECK_EQ(tpc_bufpool_available(fair_pool), COUNT - SHARE);
    /* Others are served meanwhile, and the hog's stream takes no more. */
    CHECK_EQ(echo_through(&at, 5), 5);
    CHECK_EQ(echo_through(&at, 5), 5);
    /* (their handlers give their last buffer back when they next run: in shuffled builds that
     * may be after this fiber) */
    WAIT_UNTIL(tpc_bufpool_available(fair_pool) == COUNT - SHARE);
    CHECK_EQ(tpc_bufpool_available(fair_pool), COUNT - SHARE);
    print_message("a peer that never reads sent %ld bytes and holds %d of %d buffers\n", sent,
                  SHARE, COUNT);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK_EQ(setsockopt(hog, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(hog); /* its handler's send fails: it ends, and gives its buffers back */
    WAIT_UNTIL(tpc_bufpool_available(fair_pool) == COUNT);
    CHECK_EQ(tpc_bufpool_available(fair_pool), COUNT);
    CHECK_EQ(tpc_server_stop(srv), 0);
    CHECK_EQ(tpc_bufpool_destroy(fair_pool), 0);
    return 0;
}

static void test_pool_fairness(void **state)
{
    (void)state;
    run_main(1, fair_main, NULL);
}

/* ---- 10,000 concurrent connections. ----
 * The clients live in a child process (a runtime of their own), so that each process needs
 * only 10,000 descriptors: this machine's hard limit is 20,000 and raising it takes
 * CAP_SYS_RESOURCE. The two talk through pipes: port, "connected", "go", "done". */

static tpc_bufpool *pools[2];
static int nconn;
static int to_child[2], from_child[2];

static int make_pool(void *arg)
{
    (void)arg;
    return tpc_bufpool_create(256, 2048, &pools[tpc_shard_id()]);
}

static int drop_pool(void *arg)
{
    (void)arg;
    return tpc_bufpool_destroy(pools[tpc_shard_id()]);
}

static int rx_echo_conn(int fd, void *arg)
{
    (void)arg;
    return rx_echo(fd, pools[tpc_shard_id()]);
}

struct clients {
    const tpc_addr *at;
    int *fds;
    int from, to;
};

static int connect_some(void *arg)
{
    struct clients *c = arg;
    for (int i = c->from; i < c->to; i++) {
        c->fds[i] = tpc_connect(c->at);
        CHECK(c->fds[i] >= 0);
    }
    return 0;
}

static int ping_some(void *arg)
{
    struct clients *c = arg;
    for (int i = c->from; i < c->to; i++) {
        if (c->fds[i] < 0)
            continue;
        unsigned char b = (unsigned char)i, back = 0;
        tpc_deadline_set(60 * 1000 * MS); /* a failure, not a hang */
        CHECK_EQ(tpc_send(c->fds[i], &b, 1, 0), 1);
        CHECK_EQ(tpc_recv(c->fds[i], &back, 1, 0), 1);
        CHECK_EQ(back, b);
        tpc_deadline_clear();
        tpc_close(c->fds[i]);
    }
    return 0;
}

static char pipe_get(int fd)
{
    char c = 0;
    tpc_deadline_set(120 * 1000 * MS);
    ssize_t n = tpc_read(fd, &c, 1, -1);
    tpc_deadline_clear();
    CHECK_EQ(n, 1);
    return c;
}

static int child_main(void *arg) /* the clients */
{
    (void)arg;
    tpc_addr at;
    CHECK_EQ(tpc_read(to_child[0], &at, sizeof(at), -1), (ssize_t)sizeof(at));
    int *fds = calloc((size_t)nconn, sizeof(int));
    enum { FIBERS = 100 };
    struct clients c[FIBERS];
    tpc_fiber *f[FIBERS];
    for (int phase = 0; phase < 2; phase++) {
        if (phase == 1)
            CHECK_EQ(pipe_get(to_child[0]), 'G');
        for (int i = 0; i < FIBERS; i++) {
            c[i] = (struct clients){&at, fds, nconn * i / FIBERS, nconn * (i + 1) / FIBERS};
            tpc_fiber_opts fo = {.stack_size = 32 * 1024, .no_guard = true};
            CHECK_EQ(tpc_spawn_opts(&fo, phase ? ping_some : connect_some, &c[i], &f[i]), 0);
        }
        for (int i = 0; i < FIBERS; i++)
            CHECK_EQ(tpc_join(f[i], NULL), 0);
        CHECK_EQ(tpc_write(from_child[1], phase ? "D" : "C", 1, -1), 1);
    }
    free(fds);
    return 0;
}

static long live_total(tpc_server *srv)
{
    long live = 0, l;
    for (int s = 0; s < tpc_shard_count(); s++)
        live += tpc_server_load(srv, s, &l, NULL) == 0 ? l : 0;
    return live;
}

static int many_main(void *arg) /* the server */
{
    (void)arg;
    CHECK_EQ(tpc_on_all(make_pool, NULL), 0);
    tpc_addr a, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    tpc_server *srv;
    tpc_server_opts o = {.stack_size = 16 * 1024};
    CHECK_EQ(tpc_server_start(&a, &o, rx_echo_conn, NULL, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, &at), 0);
    uint64_t t0 = tpc_now_fresh();
    CHECK_EQ(tpc_write(to_child[1], &at, sizeof(at), -1), (ssize_t)sizeof(at));
    CHECK_EQ(pipe_get(from_child[0]), 'C');
    /* Every connection is open and served at once. */
    long live = 0;
    WAIT_UNTIL((live = live_total(srv)) == nconn);
    CHECK_EQ(live, nconn);
    CHECK_EQ(tpc_bufpool_available(pools[0]), 256); /* idle connections hold no buffer */
    CHECK_EQ(tpc_write(to_child[1], "G", 1, -1), 1);
    CHECK_EQ(pipe_get(from_child[0]), 'D');
    WAIT_UNTIL((live = live_total(srv)) == 0); /* the connection fibers see their clients' ends */
    CHECK_EQ(live, 0);
    double secs = (double)(tpc_now_fresh() - t0) / 1e9;
    printf("# %d connections opened, all open at once, echoed once and closed in %.2f s\n", nconn,
           secs);
    CHECK(secs < (getenv("TPC_TEST_SLOW") ? 120 : 30));
    CHECK_EQ(tpc_server_stop(srv), 0);
    CHECK_EQ(tpc_on_all(drop_pool, NULL), 0);
    return 0;
}

static void test_10k_connections(void **state)
{
    (void)state;
    /* TSan counts every fiber as a thread and stops at 8128; valgrind is slow. */
    nconn = under_valgrind() || under_tsan() ? 1000 : 10000;
    struct rlimit old, want;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    want = old;
    rlim_t need = (rlim_t)nconn + 500;
    if (want.rlim_cur < need) {
        want.rlim_cur = need;
        SKIP_IF(want.rlim_max < need, "RLIMIT_NOFILE's hard limit is below the connections needed");
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &want), 0);
    }
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(from_child), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(to_child[1]), close(from_child[0]); /* the parent's ends: their end is its end */
        tpc_config c = {.shards = 1};
        checks_reset();
        int rc = tpc_run(&c, child_main, NULL);
        _exit(rc == 0 && atomic_load(&t_failures) == 0 ? 0 : 1);
    }
    close(to_child[0]), close(from_child[1]);
    tpc_config c = {.shards = 2};
    checks_reset();
    int rc = tpc_run(&c, many_main, NULL);
    /* A child still waiting for the server (which failed) reads the end of the pipe: the case
     * ends instead of waiting for it forever. */
    close(to_child[1]), close(from_child[0]);
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    setrlimit(RLIMIT_NOFILE, &old);
    assert_no_check_failed();
    assert_int_equal(rc, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acceptor_queues_in_order),
        cmocka_unit_test(test_acceptor_deadline_loses_nothing),
        cmocka_unit_test(test_acceptor_serves_waiters_in_order),
        cmocka_unit_test(test_acceptor_close_from_callback_refused),
        cmocka_unit_test(test_acceptor_other_shard_refused),
        cmocka_unit_test(test_acceptor_close_closes_queued),
        cmocka_unit_test(test_acceptor_not_listening_fails),
        cmocka_unit_test(test_acceptor_error_wakes_every_waiter),
        cmocka_unit_test(test_acceptor_close_wakes_waiters),
        cmocka_unit_test(test_acceptor_bad_arguments),
        cmocka_unit_test(test_acceptor_pause),
        cmocka_unit_test(test_emfile),
        cmocka_unit_test(test_server_reuseport),
        cmocka_unit_test(test_server_keep_then_close),
        cmocka_unit_test(test_server_stack_options),
        cmocka_unit_test(test_server_handoff),
        cmocka_unit_test(test_server_errors),
        cmocka_unit_test(test_server_opts),
        cmocka_unit_test(test_server_no_late_start),
        cmocka_unit_test(test_server_stop_waits),
        cmocka_unit_test(test_server_stop_twice),
        cmocka_unit_test(test_on_all_waits_after_a_failed_send),
        cmocka_unit_test(test_server_stop_errors),
        cmocka_unit_test(test_server_stop_from_its_handler),
        cmocka_unit_test(test_server_address_in_use),
        cmocka_unit_test(test_server_stop_waits_for_handoffs_on_their_way),
        cmocka_unit_test(test_server_start_interrupted),
        cmocka_unit_test(test_server_stop_at_shutdown),
        cmocka_unit_test(test_server_cycles),
        cmocka_unit_test(test_server_park),
        cmocka_unit_test(test_server_park_at_shutdown),
        cmocka_unit_test(test_server_emfile),
        cmocka_unit_test(test_pool_fairness),
        cmocka_unit_test(test_10k_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
