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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include "helpers.h"
#include "core/epoll.h"
#include "core/internal.h"

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

/* ---- A bounded commit queued on the blocking pool is made at stop ----
 * The pool's one helper is held by another job; a bounded write queued behind it returns at its
 * deadline and the runtime stops. As on io_uring, where a stop does not cancel an operation in
 * the kernel, the write is still made: the helper is let go only once the stop has cancelled
 * the fibers (a fiber spawned after the write's, woken by that cancel). */
struct commit_case {
    int fd;
    t_count held, release;
    bool skipped;
};

static long hold_helper(void *arg)
{
    struct commit_case *k = arg;
    t_count_set(&k->held, 1);
    t_count_wait(&k->release, 1); /* bounded */
    return 0;
}

static int hold_fiber(void *arg)
{
    struct commit_case *k = arg;
    CHECK_EQ(tpc_blocking(hold_helper, k, NULL), 0);
    return 0;
}

static int releaser(void *arg)
{
    struct commit_case *k = arg;
    tpc_sleep(3600ull * 1000000000); /* until the stop cancels it */
    t_count_set(&k->release, 1);
    return 0;
}

static int commit_main(void *arg)
{
    struct commit_case *k = arg;
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(hold_fiber, k, &f), 0);
    CHECK_EQ(tpc_detach(f), 0);
    WAIT_UNTIL(t_count_get(&k->held) == 1);
    tpc_pending *late = NULL;
    CHECK_EQ(tpc_deadline_set(1000000), 0); /* 1 ms: the helper is held */
    ssize_t rc = tpc_write_bounded(k->fd, "commit", 6, 0, &late);
    tpc_deadline_clear();
    if (rc == 6 && !late) { /* written at once (a file system with RWF_NOWAIT writes) */
        k->skipped = true;
        t_count_set(&k->release, 1);
        return 0;
    }
    CHECK_EQ(rc, -ETIMEDOUT);
    CHECK(late != NULL);
    CHECK_EQ(tpc_spawn(releaser, k, &f), 0);
    CHECK_EQ(tpc_detach(f), 0);
    return 0; /* the runtime stops with the write queued behind the held job */
}

static void test_bounded_commit_made_at_stop(void **state)
{
    (void)state;
    struct commit_case k = {.held = T_COUNT_INIT, .release = T_COUNT_INIT};
    char path[64];
    snprintf(path, sizeof(path), "/var/tmp/tpc-test-epoll-%d", (int)getpid());
    k.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(k.fd >= 0);
    unlink(path);
    tpc_config c = backend_config(TPC_BACKEND_EPOLL);
    c.blocking_threads = 1;
    run_config(&c, commit_main, &k);
    char got[8] = {0};
    ssize_t n = pread(k.fd, got, sizeof(got), 0);
    close(k.fd);
    SKIP_IF(k.skipped, "the file system wrote at once (RWF_NOWAIT): nothing went to the pool");
    assert_int_equal(n, 6);
    assert_memory_equal(got, "commit", 6);
}

/* ---- A pool job holds its file: a number closed and reused meanwhile is another file ----
 * A bounded write waits for the held helper and returns at its deadline; the caller closes its
 * descriptor and opens another file, which takes the same number. The write still goes to the
 * first file (io_uring holds a reference to it; the pool's job holds a duplicate). */
struct reuse_case {
    struct commit_case c;
    char path[2][64];
    int other;
};

static int reuse_main(void *arg)
{
    struct reuse_case *k = arg;
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(hold_fiber, &k->c, &f), 0);
    CHECK_EQ(tpc_detach(f), 0);
    WAIT_UNTIL(t_count_get(&k->c.held) == 1);
    tpc_pending *late = NULL;
    CHECK_EQ(tpc_deadline_set(1000000), 0); /* 1 ms: the helper is held */
    ssize_t rc = tpc_write_bounded(k->c.fd, "commit", 6, 0, &late);
    tpc_deadline_clear();
    if (rc == 6 && !late) { /* written at once (a file system with RWF_NOWAIT writes) */
        k->c.skipped = true;
        t_count_set(&k->c.release, 1);
        return 0;
    }
    CHECK_EQ(rc, -ETIMEDOUT);
    CHECK(late != NULL);
    close(k->c.fd);
    k->other = open(k->path[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK_EQ(k->other, k->c.fd); /* the same number, another file */
    t_count_set(&k->c.release, 1);
    CHECK_EQ(tpc_pending_wait(late), 6);
    return 0;
}

static void test_pool_job_holds_its_file(void **state)
{
    (void)state;
    struct reuse_case k = {.c = {.held = T_COUNT_INIT, .release = T_COUNT_INIT}, .other = -1};
    for (int i = 0; i < 2; i++)
        snprintf(k.path[i], sizeof(k.path[i]), "/var/tmp/tpc-test-epoll-%d-%d", (int)getpid(), i);
    k.c.fd = open(k.path[0], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(k.c.fd >= 0);
    tpc_config c = backend_config(TPC_BACKEND_EPOLL);
    c.blocking_threads = 1;
    run_config(&c, reuse_main, &k);
    char got[2][8] = {{0}};
    ssize_t n[2];
    for (int i = 0; i < 2; i++) {
        int fd = open(k.path[i], O_RDONLY | O_CLOEXEC);
        n[i] = fd < 0 ? -1 : pread(fd, got[i], sizeof(got[i]), 0);
        if (fd >= 0)
            close(fd);
        unlink(k.path[i]);
    }
    if (k.other >= 0)
        close(k.other);
    else
        close(k.c.fd);
    SKIP_IF(k.c.skipped, "the file system wrote at once (RWF_NOWAIT): nothing went to the pool");
    assert_int_equal(n[1], 0); /* the new file untouched */
    assert_int_equal(n[0], 6);
    assert_memory_equal(got[0], "commit", 6);
}

/* ---- A Unix connect on a full backlog waits for room, as on io_uring ---- */
struct backlog_case {
    int l;
    tpc_addr a;
    int filler[8];
    int nfill;
    atomic_bool accepted;
};

static int backlog_acceptor(void *arg)
{
    struct backlog_case *k = arg;
    loop_turns(3); /* the connect is waiting by now */
    int c = accept4(k->l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    CHECK(c >= 0);
    atomic_store(&k->accepted, true);
    if (c >= 0)
        close(c);
    return 0;
}

static int backlog_main(void *arg)
{
    struct backlog_case *k = arg;
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(backlog_acceptor, k, &f), 0);
    int fd = tpc_connect(&k->a);
    CHECK(fd >= 0);
    CHECK(atomic_load(&k->accepted)); /* it returned once there was room */
    struct sockaddr_un peer;
    socklen_t len = sizeof(peer);
    CHECK_EQ(getpeername(fd, (struct sockaddr *)&peer, &len), 0); /* connected */
    CHECK_EQ(tpc_join(f, NULL), 0);
    if (fd >= 0)
        close(fd);
    return 0;
}

static void unix_backlog(tpc_backend b)
{
    struct backlog_case k = {0};
    char text[108];
    snprintf(text, sizeof(text), "unix:/tmp/tpc-test-epoll-%d.sock", (int)getpid());
    assert_int_equal(tpc_addr_parse(text, &k.a), 0);
    unlink(text + 5);
    k.l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(k.l >= 0);
    assert_int_equal(bind(k.l, &k.a.sa, k.a.len), 0);
    assert_int_equal(listen(k.l, 0), 0);
    for (; k.nfill < 8; k.nfill++) { /* fill the backlog */
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(c >= 0);
        if (connect(c, &k.a.sa, k.a.len) < 0) {
            assert_int_equal(errno, EAGAIN);
            close(c);
            break;
        }
        k.filler[k.nfill] = c;
    }
    assert_true(k.nfill > 0 && k.nfill < 8);
    tpc_config c = backend_config(b);
    run_config(&c, backlog_main, &k);
    for (int i = 0; i < k.nfill; i++)
        close(k.filler[i]);
    close(k.l);
    unlink(text + 5);
}

static void test_unix_connect_full_backlog_epoll(void **state)
{
    (void)state;
    unix_backlog(TPC_BACKEND_EPOLL);
}

static void test_unix_connect_full_backlog_uring(void **state)
{
    (void)state;
    unix_backlog(TPC_BACKEND_URING);
}

/* ---- A write to a tty (no RWF_NOWAIT) never blocks the shard ----
 * Nobody reads the pty: a 1 MiB write takes what fits and returns its count, as a write to a
 * full pipe or socket does on this backend, instead of waiting in write(2) for a reader. */
#define TTY_LEN (1 << 20)

struct tty_case {
    int master, slave;
    struct guard g;
    char *buf;
};

static void drain_tty(struct guard *g) /* in the guard: reads until the writer has returned */
{
    char b[4096];
    while (t_count_get(&g->ran) == 0) {
        struct pollfd p = {.fd = g->fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0 && read(g->fd, b, sizeof(b)) < 0)
            break;
    }
}

static int tty_main(void *arg)
{
    struct tty_case *k = arg;
    int fl = fcntl(k->master, F_GETFL);
    ssize_t n = tpc_write(k->master, k->buf, TTY_LEN, -1);
    t_count_set(&k->g.ran, 1);
    CHECK(!atomic_load(&k->g.fired));
    CHECK(n > 0 && n < TTY_LEN); /* what fitted */
    CHECK_EQ(fcntl(k->master, F_GETFL), fl);
    return 0;
}

static void test_tty_write_never_blocks(void **state)
{
    (void)state;
    struct tty_case k = {.buf = calloc(1, TTY_LEN)};
    assert_non_null(k.buf);
    k.master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    k.slave = -1;
    if (k.master >= 0 && grantpt(k.master) == 0 && unlockpt(k.master) == 0)
        k.slave = open(ptsname(k.master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (k.slave < 0) {
        if (k.master >= 0)
            close(k.master);
        free(k.buf);
    }
    SKIP_IF(k.slave < 0, "no pseudo-terminals here");
    struct termios t;
    assert_int_equal(tcgetattr(k.slave, &t), 0);
    cfmakeraw(&t); /* no echo back to the master */
    assert_int_equal(tcsetattr(k.slave, TCSANOW, &t), 0);
    guard_start(&k.g, drain_tty, k.slave);
    tpc_config c = backend_config(TPC_BACKEND_EPOLL);
    c.stall_ms = -1; /* its report's signal would cut a blocked write short */
    run_config(&c, tty_main, &k);
    guard_end(&k.g);
    close(k.slave);
    close(k.master);
    free(k.buf);
}

/* ---- A spinning shard notices ready descriptors ----
 * With a long spin (300 ms) after every piece of work, a thread's byte that lands while the
 * shard spins is echoed at once, not when the spin ends: ten round trips take far less than
 * one spin each. */
#define SPIN_NS     300000000
#define SPIN_ROUNDS 10

struct spin_case {
    int sv[2];
    int64_t took_ns;
    bool ok;
};

static void *spin_client(void *arg)
{
    struct spin_case *k = arg;
    int64_t t0 = t_now_ns();
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        char b = (char)i;
        struct pollfd p = {.fd = k->sv[1], .events = POLLIN};
        if (write(k->sv[1], &b, 1) != 1 || poll(&p, 1, 10000) != 1 || read(k->sv[1], &b, 1) != 1 ||
            b != (char)i)
            return NULL;
    }
    k->took_ns = t_now_ns() - t0;
    k->ok = true;
    return NULL;
}

static int spin_echo(void *arg)
{
    struct spin_case *k = arg;
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        char b;
        CHECK_EQ(tpc_recv(k->sv[0], &b, 1, 0), 1);
        CHECK_EQ(tpc_send(k->sv[0], &b, 1, 0), 1);
    }
    return 0;
}

static void test_spin_sees_ready_descriptors(void **state)
{
    (void)state;
    struct spin_case k = {0};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, k.sv), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spin_client, &k), 0);
    tpc_config c = backend_config(TPC_BACKEND_EPOLL);
    c.spin_ns = SPIN_NS;
    run_config(&c, spin_echo, &k);
    pthread_join(th, NULL);
    close(k.sv[0]);
    close(k.sv[1]);
    assert_true(k.ok);
    /* A blind spin costs up to SPIN_NS a round; noticing costs microseconds. */
    assert_true(k.took_ns < 3LL * SPIN_NS);
}

/* ---- A fiber's operations are counted in io_submitted and io_completed on both backends ---- */
#define COUNTED_OPS 20

static int counted_main(void *arg)
{
    long per = (long)(intptr_t)arg; /* operations counted per send + receive */
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tpc_shard_stats a, b;
    CHECK_EQ(tpc_stats(0, &a), 0);
    for (int i = 0; i < COUNTED_OPS; i++) {
        char c = (char)i;
        CHECK_EQ(tpc_send(sv[0], &c, 1, 0), 1);
        CHECK_EQ(tpc_recv(sv[1], &c, 1, 0), 1);
    }
    CHECK_EQ(tpc_stats(0, &b), 0);
    CHECK(b.io_submitted - a.io_submitted >= (uint64_t)(per * COUNTED_OPS));
    CHECK(b.io_completed - a.io_completed >= (uint64_t)(per * COUNTED_OPS));
    close(sv[0]);
    close(sv[1]);
    return 0;
}

static void test_fiber_io_counted_epoll(void **state)
{
    (void)state;
    tpc_config c = backend_config(TPC_BACKEND_EPOLL);
    run_config(&c, counted_main, (void *)2);
}

static void test_fiber_io_counted_uring(void **state)
{
    (void)state;
    tpc_config c = backend_config(TPC_BACKEND_URING);
    run_config(&c, counted_main, (void *)1); /* a lone send goes straight to the kernel */
}

/* ---- tpc_poll with POLLPRI: urgent data alone wakes it ----
 * The socket's send buffer is full and no ordinary data waits, so the urgent byte is its only
 * readiness: POLLPRI. */
struct pri_case {
    int tcp[2];
};

static int pri_sender(void *arg)
{
    struct pri_case *k = arg;
    CHECK_EQ(send(k->tcp[1], "!", 1, MSG_OOB | MSG_NOSIGNAL), 1);
    return 0;
}

static int pri_main(void *arg)
{
    struct pri_case *k = arg;
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(pri_sender, k, &f), 0); /* runs once the poll waits */
    CHECK_EQ(tpc_deadline_set(5000000000), 0);
    int r = tpc_poll(k->tcp[0], POLLPRI);
    tpc_deadline_clear();
    CHECK(r > 0 && (r & POLLPRI));
    CHECK_EQ(tpc_join(f, NULL), 0);
    return 0;
}

static void pollpri(tpc_backend b)
{
    struct pri_case k;
    tcp_pair(k.tcp);
    int small = 4096;
    setsockopt(k.tcp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(k.tcp[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    char buf[4096] = {0};
    while (send(k.tcp[0], buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) /* fill it */
        ;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    struct pollfd p = {.fd = k.tcp[0], .events = POLLIN | POLLOUT | POLLPRI};
    assert_int_equal(poll(&p, 1, 0), 0); /* nothing ready */
    tpc_config c = backend_config(b);
    run_config(&c, pri_main, &k);
    close(k.tcp[0]);
    close(k.tcp[1]);
}

static void test_pollpri_epoll(void **state)
{
    (void)state;
    pollpri(TPC_BACKEND_EPOLL);
}

static void test_pollpri_uring(void **state)
{
    (void)state;
    pollpri(TPC_BACKEND_URING);
}

/* ---- A descriptor beyond the backend's table: -EMFILE ----
 * The table covers descriptors below 2^20 (Linux's default fs.nr_open); the test lowers the
 * limit to 1000 (tpc__ep_set_fd_limit) and uses a descriptor above it: every operation on it
 * fails with -EMFILE, even one that could complete at once; those below work. */
#define LOW_LIMIT 1000
#define HIGH_FD   1050

static int limit_main(void *arg)
{
    int *sv = arg;
    char c;
    CHECK_EQ(tpc_recv(HIGH_FD, &c, 1, 0), -EMFILE); /* a byte waits: refused all the same */
    CHECK_EQ(tpc_poll(HIGH_FD, POLLIN), -EMFILE);
    CHECK_EQ(tpc_send(HIGH_FD, "y", 1, 0), -EMFILE);
    CHECK_EQ(tpc_recv(sv[0], &c, 1, 0), 1); /* the same socket under its low number */
    CHECK_EQ(c, 'x');
    return 0;
}

static void test_fd_beyond_table(void **state)
{
    (void)state;
    struct rlimit rl, old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    SKIP_IF(old.rlim_max <= HIGH_FD, "RLIMIT_NOFILE's hard limit is too low");
    rl = old;
    if (rl.rlim_cur <= HIGH_FD)
        rl.rlim_cur = HIGH_FD + 1;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(dup3(sv[0], HIGH_FD, O_CLOEXEC), HIGH_FD);
    assert_int_equal(write(sv[1], "x", 1), 1);
    tpc__ep_set_fd_limit(LOW_LIMIT);
    tpc_config c = backend_config(TPC_BACKEND_EPOLL);
    checks_reset();
    int rc = tpc_run(&c, limit_main, sv);
    tpc__ep_set_fd_limit(0);
    close(HIGH_FD);
    close(sv[0]);
    close(sv[1]);
    setrlimit(RLIMIT_NOFILE, &old);
    assert_no_check_failed();
    assert_int_equal(rc, 0);
}

/* ---- A receive that stops short at urgent data leaves the rest readable ----
 * On epoll, a TCP connection the runtime owns waits for an edge, without trying, after a
 * receive that got less than it asked for (nothing is left). A receive that stops at the
 * urgent mark is short with data left behind whose edge has come already: the next receive
 * must still get it. (The same for an end of stream: tests/test-netio.c's test_sendfile.) */
static int urgent_sender(void *arg)
{
    int a = (int)(intptr_t)arg;
    CHECK_EQ(send(a, "ab", 2, MSG_NOSIGNAL), 2);
    CHECK_EQ(send(a, "!", 1, MSG_OOB | MSG_NOSIGNAL), 1);
    CHECK_EQ(send(a, "cd", 2, MSG_NOSIGNAL), 2);
    return 0;
}

static int urgent_main(void *arg)
{
    (void)arg;
    tpc_addr any, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &any), 0);
    int l = tpc_listen(&any, 0, 0);
    CHECK(l >= 0);
    CHECK_EQ(tpc_sock_local(l, &at), 0);
    int a = tpc_connect(&at), b = tpc_accept(l, NULL);
    CHECK(a >= 0 && b >= 0);
    tpc__ep_keep(b); /* as tpc_server_start's connections: short reads leave it dry */
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(urgent_sender, (void *)(intptr_t)a, &f), 0);
    char got[8] = {0};
    size_t have = 0;
    CHECK_EQ(tpc_deadline_set(5000000000), 0);
    while (have < 4) { /* "ab" (stopped at the mark), then "cd" */
        ssize_t n = tpc_recv(b, got + have, sizeof(got) - have, 0);
        CHECK(n > 0);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    tpc_deadline_clear();
    CHECK(!memcmp(got, "abcd", 4));
    CHECK_EQ(tpc_join(f, NULL), 0);
    tpc_close(a), tpc_close(b), tpc_close(l);
    return 0;
}

static void test_urgent_data_after_short_read(void **state)
{
    (void)state;
    tpc_config c = backend_config(TPC_BACKEND_EPOLL);
    run_config(&c, urgent_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splice_blocking_socket_epoll),
        cmocka_unit_test(test_splice_blocking_socket_uring),
        cmocka_unit_test(test_bounded_commit_made_at_stop),
        cmocka_unit_test(test_pool_job_holds_its_file),
        cmocka_unit_test(test_unix_connect_full_backlog_epoll),
        cmocka_unit_test(test_unix_connect_full_backlog_uring),
        cmocka_unit_test(test_tty_write_never_blocks),
        cmocka_unit_test(test_spin_sees_ready_descriptors),
        cmocka_unit_test(test_fiber_io_counted_epoll),
        cmocka_unit_test(test_fiber_io_counted_uring),
        cmocka_unit_test(test_pollpri_epoll),
        cmocka_unit_test(test_pollpri_uring),
        cmocka_unit_test(test_fd_beyond_table),
        cmocka_unit_test(test_urgent_data_after_short_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
