/* Fault injection (built with -Dfault_injection=true): chosen io_uring operations fail with
 * chosen errors or come back short, and the raw calls surface that while the _full helpers
 * retry EAGAIN and EINTR, gather short transfers, and report a partial count or the error; and
 * no free SQE: for a cancellation, for a receive stream's receive, under the _full helpers
 * (which must let the loop run), and for the server's close of a connection. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "helpers.h"
#include "io/internal.h"

#ifdef TPC_FAULT_INJECTION
#define MS (1000 * 1000LL)

static char path[64];

static int faults_main(void *arg)
{
    (void)arg;
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    const char *text = "0123456789abcdef";
    char buf[32];

    /* Short writes: the raw call returns the short count, write_full finishes the job. */
    tpc__fault_set(IORING_OP_WRITE, 0, 3, 1);
    CHECK_EQ(tpc_write(fd, text, 16, 0), 3);
    tpc__fault_set(IORING_OP_WRITE, 0, 3, 100);
    CHECK_EQ(tpc_write_full(fd, text, 16, 0), 16);
    tpc__fault_set(IORING_OP_WRITE, 0, 0, 0);

    /* Short reads, likewise. */
    tpc__fault_set(IORING_OP_READ, 0, 1, 100);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read(fd, buf, 16, 0), 1);
    CHECK_EQ(tpc_read_full(fd, buf, 16, 0), 16);
    CHECK(memcmp(buf, text, 16) == 0);
    tpc__fault_set(IORING_OP_READ, 0, 0, 0);

    /* EAGAIN and EINTR: surfaced by the raw call, retried by the helpers. */
    tpc__fault_set(IORING_OP_READ, EAGAIN, 0, 1);
    CHECK_EQ(tpc_read(fd, buf, 16, 0), -EAGAIN);
    tpc__fault_set(IORING_OP_READ, EINTR, 0, 3);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read_full(fd, buf, 16, 0), 16);
    CHECK(memcmp(buf, text, 16) == 0);
    tpc__fault_set(IORING_OP_WRITE, EAGAIN, 0, 2);
    CHECK_EQ(tpc_write_full(fd, text, 16, 16), 16);

    /* ENOSPC: nothing written is an error; after a partial write, the count. */
    tpc__fault_set(IORING_OP_WRITE, ENOSPC, 0, 1);
    CHECK_EQ(tpc_write(fd, text, 16, 0), -ENOSPC);
    tpc__fault_set(IORING_OP_WRITE, ENOSPC, 0, 1);
    CHECK_EQ(tpc_write_full(fd, text, 16, 0), -ENOSPC);
    tpc__fault_set(IORING_OP_WRITE, 0, 5, 1); /* 5 bytes go, then the disk is full */
    CHECK_EQ(tpc_write(fd, text, 16, 32), 5);
    tpc__fault_set(IORING_OP_WRITE, ENOSPC, 0, 1);
    CHECK_EQ(tpc_write_full(fd, text + 5, 11, 37), -ENOSPC);

    /* ENOMEM from open, EIO from fsync: surfaced as they are. */
    tpc__fault_set(IORING_OP_OPENAT, ENOMEM, 0, 1);
    CHECK_EQ(tpc_open(path, O_RDONLY, 0), -ENOMEM);
    tpc__fault_set(IORING_OP_FSYNC, EIO, 0, 1);
    CHECK_EQ(tpc_fsync(fd), -EIO);
    CHECK_EQ(tpc_fsync(fd), 0); /* only once */

    /* A kernel without IORING_OP_FTRUNCATE: the call goes through a helper thread. */
    tpc__io_of(tpc__self)->has_ftruncate = false;
    CHECK_EQ(tpc_ftruncate(fd, 7), 0);
    struct statx st;
    CHECK_EQ(tpc_statx(AT_FDCWD, path, 0, STATX_SIZE, &st), 0);
    CHECK_EQ(st.stx_size, 7);
    CHECK_EQ(tpc_ftruncate(-1, 7), -EBADF);
    tpc__io_of(tpc__self)->has_ftruncate = true;

    CHECK_EQ(tpc_close(fd), 0);
    CHECK_EQ(tpc_unlink(path), 0);
    return 0;
}

static void test_faults(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/tpc-test-faults-%d", (int)getpid());
    run_main(1, faults_main, NULL);
}

/* No free SQE when a wait must be cancelled (the kernel would not take the queued SQEs): the
 * cancel is retried after a loop iteration instead of waiting for an operation that may never
 * complete. A receive on an idle socket still times out; closing an idle multishot receive
 * stream still returns. (Before, both waited forever.) */
static int no_sqe_main(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char c;
    uint64_t t0 = tpc_now_fresh();
    CHECK_EQ(tpc_deadline_set(20 * 1000 * 1000), 0);
    tpc__fault_sqe(1, 5); /* the receive gets its SQE, its cancel finds none five times */
    CHECK_EQ(tpc_recv(sv[0], &c, 1, 0), -ETIMEDOUT);
    tpc__fault_sqe(0, 0);
    tpc_deadline_clear();
    CHECK(tpc_now_fresh() - t0 < 2000ull * 1000 * 1000);

    tpc_bufpool *pool;
    tpc_rx *rx;
    CHECK_EQ(tpc_bufpool_create(8, 256, &pool), 0);
    CHECK_EQ(tpc_rx_open(sv[0], pool, &rx), 0);
    loop_turns(2); /* through the loop: it submits the multishot receive */
    tpc__fault_sqe(0, 5);
    CHECK_EQ(tpc_rx_close(rx), 0);
    tpc__fault_sqe(0, 0);
    CHECK_EQ(tpc_bufpool_destroy(pool), 0); /* no stream left on it */
    close(sv[0]);
    close(sv[1]);
    return 0;
}

static void test_no_sqe_for_cancel(void **state)
{
    (void)state;
    run_main(1, no_sqe_main, NULL);
}

/* A receive stream that finds no free SQE for its receive tries again at the next loop
 * iteration: data that waits is delivered, whether the stream could not arm when it opened or
 * when its handler gave a buffer back. (It used to wait with nothing in the ring: until the
 * deadline, or forever.) */
static int rx_no_sqe_main(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tpc_bufpool *p;
    tpc_rx *rx;
    tpc_buf b = {0};
    CHECK_EQ(tpc_bufpool_create(4, 64, &p), 0);  /* a share of one buffer */
    CHECK_EQ(tpc_send(sv[0], "hello", 5, 0), 5); /* there from the start */
    tpc__fault_sqe(0, 3);
    CHECK_EQ(tpc_rx_open(sv[1], p, &rx), 0);
    uint64_t t0 = tpc_now_fresh();
    tpc_deadline_set(2000 * MS);
    CHECK_EQ(tpc_rx_next(rx, &b), 5);
    tpc_deadline_clear();
    CHECK(tpc_now_fresh() - t0 < 1000 * MS);
    CHECK(b.data && !memcmp(b.data, "hello", 5));
    CHECK_EQ(tpc_send(sv[0], "world", 5, 0), 5); /* waits: the stream is at its share */
    tpc__fault_sqe(0, 3);
    CHECK_EQ(tpc_buf_release(&b), 0); /* re-arms the stream */
    tpc_deadline_set(2000 * MS);
    CHECK_EQ(tpc_rx_next(rx, &b), 5);
    tpc_deadline_clear();
    tpc__fault_sqe(0, 0);
    CHECK(b.data && !memcmp(b.data, "world", 5));
    CHECK_EQ(tpc_buf_release(&b), 0);
    CHECK_EQ(tpc_rx_close(rx), 0);
    CHECK_EQ(tpc_bufpool_destroy(p), 0);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

static void test_rx_no_sqe(void **state)
{
    (void)state;
    run_main(1, rx_no_sqe_main, NULL);
}

/* The _full helpers, when no SQE is free, let the loop run before they try again: another
 * fiber runs meanwhile (here, the one that frees the ring), and a deadline ends the tries.
 * (They used to retry at once: a spin that starved every other fiber of the shard.) */
static bool unjammed;

static int unjam(void *arg)
{
    (void)arg;
    unjammed = tpc__fault_no_sqe(); /* the jam was still on: the helper has not spun it out */
    tpc__fault_sqe(0, 0);
    return 0;
}

static int full_no_sqe_main(void *arg)
{
    (void)arg;
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    char buf[4] = {0};
    for (int reading = 0; reading < 2; reading++) {
        tpc_fiber *f;
        unjammed = false;
        CHECK_EQ(tpc_spawn(unjam, NULL, &f), 0);
        tpc__fault_sqe(0, 1000 * 1000); /* jammed until the other fiber runs */
        ssize_t n = reading ? tpc_read_full(fd, buf, 3, 0) : tpc_write_full(fd, "abc", 3, 0);
        CHECK(unjammed);
        tpc__fault_sqe(0, 0);
        CHECK_EQ(n, 3);
        CHECK_EQ(tpc_join(f, NULL), 0);
    }
    CHECK(!memcmp(buf, "abc", 3));
    /* A ring that never has room: the deadline ends it. */
    tpc__fault_sqe(0, 100 * 1000 * 1000);
    tpc_deadline_set(20 * MS);
    ssize_t n = tpc_write_full(fd, "abc", 3, 0);
    tpc_deadline_clear();
    tpc__fault_sqe(0, 0);
    CHECK_EQ(n, -ETIMEDOUT);
    CHECK_EQ(tpc_close(fd), 0);
    CHECK_EQ(tpc_unlink(path), 0);
    return 0;
}

static void test_full_no_sqe(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/tpc-test-faults-full-%d", (int)getpid());
    run_main(1, full_no_sqe_main, NULL);
}

/* The server closes a connection while no SQE is free at all: its client sees the end and no
 * descriptor is left behind (tpc_close needs none). */
static int jammed;

static int jam_close_conn(int fd, void *arg)
{
    (void)fd, (void)arg;
    tpc__fault_sqe(0, 1000); /* the server's close, right after this returns, finds none */
    jammed = 1;
    return 0;
}

static int server_close_main(void *arg)
{
    (void)arg;
    tpc_addr at;
    tpc_server *srv = loopback_server(jam_close_conn, NULL, &at);
    int base = count_fds();
    for (int i = 0; i < 3; i++) {
        int c = tpc_connect(&at);
        CHECK(c >= 0);
        WAIT_UNTIL(jammed); /* the handler returns, and the server closes, in one turn */
        tpc__fault_sqe(0, 0);
        jammed = 0;
        char b;
        tpc_deadline_set(2000 * MS);
        CHECK_EQ(tpc_recv(c, &b, 1, 0), 0);
        tpc_deadline_clear();
        tpc_close(c);
    }
    CHECK_EQ(count_fds(), base);
    CHECK_EQ(tpc_server_stop(srv), 0);
    return 0;
}

static void test_server_close_no_sqe(void **state)
{
    (void)state;
    run_main(1, server_close_main, NULL);
}

/* A kernel without some opcodes (probed once per process; hidden here): those operations run on
 * the blocking pool instead of failing, and tpc_features says which. */
static int missing_main(void *arg)
{
    (void)arg;
    char line[512];
    CHECK(tpc_features(line, sizeof(line)) > 0);
    CHECK(on_epoll() || strstr(line, "on the blocking pool: op3 op18 op21;") != NULL);
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(tpc_write(fd, "abc", 3, 0), 3); /* WRITE is there: through the ring */
    CHECK_EQ(tpc_fsync(fd), 0);
    struct statx st;
    CHECK_EQ(tpc_statx(AT_FDCWD, path, 0, STATX_SIZE, &st), 0);
    CHECK_EQ(st.stx_size, 3);
    CHECK_EQ(tpc_statx(AT_FDCWD, "/nonexistent/x", 0, STATX_SIZE, &st), -ENOENT);
    CHECK_EQ(tpc_close(fd), 0);
    CHECK_EQ(tpc_unlink(path), 0);
    return 0;
}

static void test_missing_opcodes(void **state)
{
    (void)state;
    /* OPENAT (18), STATX (21), FSYNC (3) */
    tpc__fault_hide_opcodes(1ull << IORING_OP_OPENAT | 1ull << IORING_OP_STATX |
                            1ull << IORING_OP_FSYNC);
    run_main(1, missing_main, NULL);
    tpc__fault_hide_opcodes(0);
}

/* An accept that fails with an error of the connection being accepted (accept(2): ECONNABORTED,
 * EPROTO, ENETDOWN ... "treat them like EAGAIN") leaves the acceptor accepting: the next
 * connection comes (it took the error for the listener's and stopped for good). */
static int accept_errors_main(void *arg)
{
    (void)arg;
    static const int errs[] = {ECONNABORTED, EPROTO, ENETUNREACH};
    for (unsigned i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        tpc_addr any, at;
        CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &any), 0);
        int lfd = tpc_listen(&any, 0, 0);
        CHECK(lfd >= 0);
        CHECK_EQ(tpc_sock_local(lfd, &at), 0);
        tpc__fault_set(IORING_OP_ACCEPT, errs[i], 0, 1);
        tpc_acceptor *a;
        CHECK_EQ(tpc_acceptor_open(lfd, &a), 0);
        int c = tpc_connect(&at);
        CHECK(c >= 0);
        tpc_deadline_set(t_wait_limit_ns());
        int fd = tpc_acceptor_next(a);
        tpc_deadline_clear();
        CHECK(fd >= 0);
        tpc__fault_set(IORING_OP_ACCEPT, 0, 0, 0);
        if (fd >= 0)
            tpc_close(fd);
        tpc_close(c);
        CHECK_EQ(tpc_acceptor_close(a), 0);
        tpc_close(lfd);
    }
    return 0;
}

static void test_accept_connection_errors(void **state)
{
    (void)state;
    run_main(1, accept_errors_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_missing_opcodes),
        cmocka_unit_test(test_no_sqe_for_cancel),
        cmocka_unit_test(test_rx_no_sqe),
        cmocka_unit_test(test_full_no_sqe),
        cmocka_unit_test(test_server_close_no_sqe),
        cmocka_unit_test(test_accept_connection_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
static void test_fault_injection(void **state)
{
    (void)state;
    SKIP_IF(true, "fault injection is not built in (meson -Dfault_injection=true)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fault_injection)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
