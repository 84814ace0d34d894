/* The epoll backend (core/epoll.c) where it must match io_uring: a shard never blocks in a
 * system call (splice from a blocking socket, a tty write), the blocking pool's jobs (bounded
 * commits at stop, descriptors closed and reused), Unix connects on a full backlog, the spin,
 * the counters, POLLPRI and the descriptor table's limit. Each case forces the backend in
 * tpc_config, so it runs the same in every configuration of scripts/test.sh; cases that compare
 * with io_uring run there too. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "helpers.h"

static tpc_config backend_config(tpc_backend b)
{
    tpc_config c = {.shards = 1, .backend = b};
    return c;
}

/* A connected loopback TCP pair, both ends blocking (plain system calls, before the runtime). */
static void tcp_pair(int sv[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(sv[0] >= 0);
    assert_int_equal(connect(sv[0], (struct sockaddr *)&a, sizeof(a)), 0);
    sv[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(sv[1] >= 0);
    close(l);
}

/* ---- A guard: a thread that unblocks a shard stuck in a system call ----
 * A case whose shard must not block starts one: if the fiber that proves the shard ran does not
 * say so within a few seconds, the guard does what the blocked call waits for (so the case ends
 * with a failed check instead of a hang) and records that it had to. */
struct guard {
    t_count ran;
    void (*unblock)(struct guard *g);
    int fd;
    atomic_bool fired;
    pthread_t th;
};

static void *guard_main(void *arg)
{
    struct guard *g = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&g->ran.m);
    int rc = 0;
    while (g->ran.n == 0 && rc == 0)
        rc = pthread_cond_timedwait(&g->ran.cv, &g->ran.m, &until);
    bool ran = g->ran.n != 0;
    pthread_mutex_unlock(&g->ran.m);
    if (!ran) {
        atomic_store(&g->fired, true);
        g->unblock(g);
    }
    return NULL;
}

static void guard_start(struct guard *g, void (*unblock)(struct guard *), int fd)
{
    *g = (struct guard){.ran = T_COUNT_INIT, .unblock = unblock, .fd = fd};
    assert_int_equal(pthread_create(&g->th, NULL, guard_main, g), 0);
}

static void guard_end(struct guard *g)
{
    t_count_set(&g->ran, 1);
    pthread_join(g->th, NULL);
}

/* ---- A splice from a blocking TCP socket never blocks the shard ---- */

struct splice_case {
    int tcp[2];
    int pipe[2];
    struct guard g;
};

static void send_hello(struct guard *g)
{
    ssize_t n = send(g->fd, "hello", 5, MSG_NOSIGNAL);
    (void)n;
}

static int splice_sender(void *arg)
{
    struct splice_case *k = arg;
    t_count_set(&k->g.ran, 1); /* the shard ran this fiber while the splice waited */
    CHECK_EQ(send(k->tcp[1], "hello", 5, MSG_NOSIGNAL), 5);
    return 0;
}

static int splice_main(void *arg)
{
    struct splice_case *k = arg;
    int fl = fcntl(k->tcp[0], F_GETFL);
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(splice_sender, k, &f), 0);
    /* Nothing to read yet: the splice waits, and the sender runs meanwhile. */
    CHECK_EQ(tpc_splice(k->tcp[0], -1, k->pipe[1], -1, 4096, 0), 5);
    CHECK(!atomic_load(&k->g.fired));
    CHECK_EQ(tpc_join(f, NULL), 0);
    char got[8] = {0};
    CHECK_EQ(read(k->pipe[0], got, sizeof(got)), 5);
    CHECK(!memcmp(got, "hello", 5));
    CHECK_EQ(fcntl(k->tcp[0], F_GETFL), fl); /* the caller's socket as it was: blocking */
    return 0;
}

static void splice_blocking_socket(tpc_backend b)
{
    struct splice_case k;
    tcp_pair(k.tcp);
    assert_int_equal(pipe2(k.pipe, O_CLOEXEC), 0);
    guard_start(&k.g, send_hello, k.tcp[1]);
    tpc_config c = backend_config(b);
    run_config(&c, splice_main, &k);
    guard_end(&k.g);
    for (int i = 0; i < 2; i++)
        close(k.tcp[i]), close(k.pipe[i]);
}

static void test_splice_blocking_socket_epoll(void **state)
{
    (void)state;
    splice_blocking_socket(TPC_BACKEND_EPOLL);
}

static void test_splice_blocking_socket_uring(void **state)
{
    (void)state;
    splice_blocking_socket(TPC_BACKEND_URING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splice_blocking_socket_epoll),
        cmocka_unit_test(test_splice_blocking_socket_uring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
