/* Socket I/O beyond plain send/recv: options, scatter/gather, name resolution, peer reset and
 * connect timeout, receive streams over a shared buffer pool (order, starvation, deadlines,
 * misuse, pools made and destroyed past the 65,535 group ids), zero-copy forwarding and file
 * sends, the loop's kernel entries per request-reply, and wake-up coalescing. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "helpers.h"
#include "net/internal.h" /* the shard's counters; tpc__rx_limit, the fault hooks */

#define MS (1000 * 1000LL)

/* A connected TCP pair over loopback: *a is the client end, *b the server end. */
static void tcp_pair(int *a, int *b)
{
    tpc_addr any, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &any), 0);
    int lfd = tpc_listen(&any, 0, 0);
    CHECK(lfd >= 0);
    CHECK_EQ(tpc_sock_local(lfd, &at), 0);
    *a = tpc_connect(&at);
    *b = tpc_accept(lfd, NULL);
    CHECK(*a >= 0 && *b >= 0);
    tpc_close(lfd);
}

static int getopt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    return getsockopt(fd, level, name, &v, &len) == 0 ? v : -errno;
}

/* Keep-alive, buffer sizes and Nagle's switch are set (and bad values refused). */
static int options_main(void *arg)
{
    (void)arg;
    int a, b;
    tcp_pair(&a, &b);
    CHECK_EQ(tpc_sock_keepalive(a, 30), 0);
    CHECK_EQ(getopt_int(a, SOL_SOCKET, SO_KEEPALIVE), 1);
    CHECK_EQ(getopt_int(a, IPPROTO_TCP, TCP_KEEPIDLE), 30);
    CHECK_EQ(tpc_sock_keepalive(a, 0), 0);
    CHECK_EQ(getopt_int(a, SOL_SOCKET, SO_KEEPALIVE), 0);
    CHECK_EQ(tpc_sock_keepalive(a, -1), -EINVAL);
    CHECK_EQ(tpc_sock_buffers(a, 65536, 0), 0);
    CHECK(getopt_int(a, SOL_SOCKET, SO_SNDBUF) >= 65536); /* the kernel doubles it */
    CHECK_EQ(tpc_sock_buffers(a, -1, 0), -EINVAL);
    CHECK_EQ(tpc_sock_nodelay(a, 1), 0);
    CHECK_EQ(getopt_int(a, IPPROTO_TCP, TCP_NODELAY), 1);
    CHECK_EQ(tpc_sock_keepalive(-1, 1), -EBADF);
    CHECK_EQ(tpc_sock_buffers(-1, 1, 1), -EBADF);
    tpc_close(a);
    tpc_close(b);
    return 0;
}

static void test_options(void **state)
{
    (void)state;
    run_main(1, options_main, NULL);
}

/* Scatter/gather: three pieces out, two buffers in; bad vectors refused. */
static int sendv_recvv_main(void *arg)
{
    (void)arg;
    int a, b;
    tcp_pair(&a, &b);
    struct iovec out[3] = {{"abc", 3}, {"", 0}, {"defgh", 5}};
    CHECK_EQ(tpc_sendv(a, out, 3), 8);
    char x[4], y[16];
    struct iovec in[2] = {{x, sizeof(x)}, {y, sizeof(y)}};
    ssize_t got = 0;
    while (got < 8) {
        struct iovec rest[2] = {in[0], in[1]}; /* simple: the pair delivers 8 bytes at once */
        ssize_t n = tpc_recvv(b, rest, 2);
        CHECK(n > 0);
        if (n <= 0)
            break;
        got += n;
    }
    CHECK_EQ(got, 8);
    CHECK(!memcmp(x, "abcd", 4) && !memcmp(y, "efgh", 4));
    CHECK_EQ(tpc_sendv(a, NULL, 1), -EINVAL);
    CHECK_EQ(tpc_sendv(a, out, -1), -EINVAL);
    CHECK_EQ(tpc_sendv(a, out, 1 << 20), -EINVAL);
    struct iovec nul = {NULL, 4};
    CHECK_EQ(tpc_recvv(b, &nul, 1), -EFAULT);
    tpc_close(a);
    tpc_close(b);
    return 0;
}

static void test_sendv_recvv(void **state)
{
    (void)state;
    run_main(1, sendv_recvv_main, NULL);
}

/* Peer reset: a close with a zero linger sends RST; the other side gets -ECONNRESET. */
static int peer_reset_main(void *arg)
{
    (void)arg;
    int a, b;
    tcp_pair(&a, &b);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK_EQ(setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    tpc_close(a);
    char c;
    CHECK_EQ(tpc_recv(b, &c, 1, 0), -ECONNRESET);
    tpc_close(b);
    return 0;
}

static void test_peer_reset(void **state)
{
    (void)state;
    run_main(1, peer_reset_main, NULL);
}

/* tpc_sock_linger: the client sent bytes the server never reads (a plain close would reset the
 * connection, and the client's kernel would drop the answer it had not read yet); with a
 * linger the client reads the whole answer and then the end of the stream, and its close ends
 * the linger (0). A client that neither closes nor stops: -ETIMEDOUT at the timeout. The
 * caller's deadline is left as it was; misuse is refused. */
struct linger_peer {
    int fd;
    size_t got;
    ssize_t end;
};

static int linger_client(void *arg)
{
    struct linger_peer *p = arg;
    char buf[4096];
    ssize_t n;
    while ((n = tpc_recv(p->fd, buf, sizeof(buf), 0)) > 0)
        p->got += (size_t)n;
    p->end = n;
    tpc_close(p->fd);
    return 0;
}

static int linger_main(void *arg)
{
    (void)arg;
    static char junk[32 * 1024], answer[256 * 1024];
    memset(answer, 'a', sizeof(answer));
    int a, b;
    tcp_pair(&a, &b);
    CHECK_EQ(send(a, junk, sizeof(junk), MSG_DONTWAIT), (ssize_t)sizeof(junk)); /* never read */
    struct linger_peer p = {.fd = a};
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(linger_client, &p, &f), 0);
    CHECK_EQ(tpc_write_full(b, answer, sizeof(answer), -1), (ssize_t)sizeof(answer));
    CHECK_EQ(tpc_deadline_set(60 * 1000 * MS), 0);
    uint64_t deadline = tpc_deadline_get();
    CHECK_EQ(tpc_sock_linger(b, 10 * 1000 * MS), 0);
    CHECK_EQ(tpc_deadline_get(), deadline);
    CHECK_EQ(tpc_join(f, NULL), 0);
    CHECK_EQ(p.got, sizeof(answer));
    CHECK_EQ(p.end, 0);
    tpc_close(b);
    tpc_deadline_clear();

    tcp_pair(&a, &b); /* a peer that stays: the timeout, and no deadline left behind */
    uint64_t t0 = tpc_now();
    CHECK_EQ(tpc_sock_linger(b, 50 * MS), -ETIMEDOUT);
    CHECK(tpc_now() - t0 >= 40 * MS);
    CHECK_EQ(tpc_deadline_get(), 0);
    CHECK_EQ(tpc_sock_linger(b, -1), -EINVAL);
    tpc_close(a);
    tpc_close(b);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_EQ(tpc_sock_linger(s, MS), -ENOTCONN);
    close(s);
    return 0;
}

static void test_sock_linger(void **state)
{
    (void)state;
    run_main(1, linger_main, NULL);
    assert_int_equal(tpc_sock_linger(0, MS), -EPERM); /* outside a fiber */
}

/* The flags of tpc_send / tpc_recv, the same on every backend: MSG_DONTWAIT returns -EAGAIN at
 * once where the call would wait; MSG_WAITALL waits for the whole length (the epoll backend
 * returned what the first receive got). */
static int send_later(void *arg)
{
    loop_turns(3); /* the receive below is waiting by then, with 5 of its 10 bytes */
    CHECK_EQ(tpc_send((int)(intptr_t)arg, "world", 5, 0), 5);
    return 0;
}

static int send_and_end_later(void *arg)
{
    loop_turns(3);
    int fd = (int)(intptr_t)arg;
    CHECK_EQ(write(fd, "abc", 3), 3); /* (plain calls: the two in one go) */
    CHECK_EQ(shutdown(fd, SHUT_WR), 0);
    return 0;
}

static int flags_main(void *arg)
{
    (void)arg;
    tpc_deadline_set(t_wait_limit_ns());
    int a, b;
    tcp_pair(&a, &b);
    char buf[16];
    CHECK_EQ(tpc_recv(b, buf, sizeof(buf), MSG_DONTWAIT), -EAGAIN);
    int small = 4096;
    CHECK_EQ(setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    CHECK_EQ(setsockopt(b, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    static char junk[64 * 1024];
    ssize_t n, sent = 0;
    while ((n = tpc_send(a, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
        sent += n;
    CHECK_EQ(n, -EAGAIN); /* full: the call returned instead of waiting for room */
    CHECK(sent > 0);
    while (sent > 0 && (n = tpc_recv(b, junk, sizeof(junk), 0)) > 0)
        sent -= n;
    CHECK_EQ(sent, 0);
    CHECK_EQ(tpc_send(a, "hello", 5, 0), 5);
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(send_later, (void *)(intptr_t)a, &f), 0);
    CHECK_EQ(tpc_recv(b, buf, 10, MSG_WAITALL), 10);
    CHECK(!memcmp(buf, "helloworld", 10));
    CHECK_EQ(tpc_join(f, NULL), 0);
    /* Cut short by the deadline: the bytes it moved, not -ETIMEDOUT. */
    CHECK_EQ(tpc_send(a, "hello", 5, 0), 5);
    tpc_deadline_set(50 * MS);
    CHECK_EQ(tpc_recv(b, buf, 10, MSG_WAITALL), 5);
    /* Fewer bytes than asked for, then the end of stream, while the call waits: the bytes at
     * once (the epoll backend took them at the edge, waited for another that would never come:
     * until the deadline, here the limit's whole wait). */
    tpc_deadline_set(t_wait_limit_ns());
    CHECK_EQ(tpc_spawn(send_and_end_later, (void *)(intptr_t)a, &f), 0);
    int64_t t0 = t_now_ns();
    CHECK_EQ(tpc_recv(b, buf, 10, MSG_WAITALL), 3);
    CHECK(t_now_ns() - t0 < t_wait_limit_ns() / 2);
    CHECK_EQ(tpc_recv(b, buf, 10, MSG_WAITALL), 0);
    CHECK_EQ(tpc_join(f, NULL), 0);
    tpc_close(a);
    tpc_close(b);
    return 0;
}

static void test_send_recv_flags(void **state)
{
    (void)state;
    run_main(1, flags_main, NULL);
}

/* Connect timeout: a listener whose backlog is full drops new SYNs, so the connect waits until
 * the fiber's deadline. */
static int connect_timeout_main(void *arg)
{
    (void)arg;
    tpc_addr any, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &any), 0);
    int lfd = tpc_listen(&any, 1, 0);
    CHECK_EQ(tpc_sock_local(lfd, &at), 0);
    int held[4], n = 0, rc = 0;
    for (; n < 4; n++) {
        tpc_deadline_set(100 * MS);
        rc = held[n] = tpc_connect(&at);
        tpc_deadline_clear();
        if (rc < 0)
            break;
    }
    CHECK_EQ(rc, -ETIMEDOUT);
    CHECK(n >= 1); /* the backlog took one or two before it filled */
    while (n--)
        tpc_close(held[n]);
    tpc_close(lfd);
    return 0;
}

static void test_connect_timeout(void **state)
{
    (void)state;
    run_main(1, connect_timeout_main, NULL);
}

/* The loop's syscall budget. A request-reply over a socket, with the shard idle while the
 * other side works (here a thread echoing one byte), takes at most two kernel entries: the send
 * goes in with one, the receive goes in with the entry that sleeps. (Submitting each SQE in an
 * entry of its own before sleeping took three.) Under valgrind shards sleep in ppoll, a third. */
static void *byte_echo(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    while (read(fd, &c, 1) == 1 && write(fd, &c, 1) == 1)
        ;
    return NULL;
}

/* Descriptor numbers closed with close(2) behind the runtime's back and taken again by new
 * sockets: waits on the new ones end as they should. Each round ends with a receive that
 * found nothing and timed out (on epoll: the number is marked "nothing to read" and is in the
 * epoll set), then the next round's socket, under the same number, has data before its first
 * receive. */
static int reuse_main(void *arg)
{
    (void)arg;
    enum { NUMBER = 900 }; /* every round's socket takes this number (dup2) */
    for (int round = 0; round < 4; round++) {
        int sv[2];
        CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        CHECK_EQ(dup2(sv[0], NUMBER), NUMBER);
        close(sv[0]);
        sv[0] = NUMBER;
        char c = 'x';
        CHECK_EQ(write(sv[1], &c, 1), 1); /* there before the receive */
        CHECK_EQ(tpc_recv(sv[0], &c, 1, 0), 1);
        CHECK_EQ(c, 'x');
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, byte_echo, (void *)(intptr_t)sv[1]), 0);
        for (int i = 0; i < 3; i++) { /* receives that wait for the thread */
            c = (char)('a' + i);
            CHECK_EQ(tpc_send(sv[0], &c, 1, 0), 1);
            CHECK_EQ(tpc_recv(sv[0], &c, 1, 0), 1);
            CHECK_EQ(c, (char)('a' + i));
        }
        tpc_deadline_set(5 * MS);
        CHECK_EQ(tpc_recv(sv[0], &c, 1, 0), -ETIMEDOUT); /* found nothing, waited, gave up */
        tpc_deadline_clear();
        CHECK_EQ(shutdown(sv[0], SHUT_WR), 0); /* the thread reads the end and leaves */
        CHECK_EQ(pthread_join(t, NULL), 0);
        close(sv[0]);
        close(sv[1]);
    }
    return 0;
}

static void test_reused_descriptor_numbers(void **state)
{
    (void)state;
    run_main(1, reuse_main, NULL);
}

/* Writes one byte to descriptor (intptr_t)arg: it runs once the receiving fiber has parked. */
static int write_byte(void *arg)
{
    char c = 'y';
    CHECK_EQ(write((int)(intptr_t)arg, &c, 1), 1);
    return 0;
}

/* On epoll, a connection the runtime owns (tpc_server_start's: tpc__ep_keep) stays in the epoll
 * set between waits (no epoll_ctl per wait), until tpc_close: then its number, taken by a new
 * socket, is added again, and a receive on it that waits is woken by the data that comes. One
 * tpc_accept gave the program, and the program closed with close(2), is not kept: its number
 * taken by a new socket works as well. */
static int accepted_reuse_main(void *arg)
{
    bool owned = arg != NULL;
    for (int round = 0; round < 3; round++) {
        int a, b;
        tcp_pair(&a, &b);
        if (owned)
            tpc__ep_keep(b);
        char c = 'x';
        tpc_fiber *w;
        CHECK_EQ(tpc_spawn(write_byte, (void *)(intptr_t)a, &w), 0);
        CHECK_EQ(tpc_recv(b, &c, 1, 0), 1); /* waits: b goes into the epoll set */
        CHECK_EQ(tpc_join(w, NULL), 0);
        CHECK_EQ(tpc_spawn(write_byte, (void *)(intptr_t)a, &w), 0);
        CHECK_EQ(tpc_recv(b, &c, 1, 0), 1); /* waits again: kept in the set */
        CHECK_EQ(tpc_join(w, NULL), 0);
        int number = b;
        if (owned)
            CHECK_EQ(tpc_close(b), 0);
        else
            CHECK_EQ(close(b), 0);
        tpc_close(a);
        int sv[2];
        CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        if (sv[1] == number) { /* the pair is symmetric: its end under that number reads */
            sv[1] = sv[0];
            sv[0] = number;
        }
        if (sv[0] != number) { /* the accepted socket's number, now free */
            CHECK_EQ(dup2(sv[0], number), number);
            close(sv[0]);
        }
        CHECK_EQ(tpc_spawn(write_byte, (void *)(intptr_t)sv[1], &w), 0);
        tpc_deadline_set(t_wait_limit_ns());
        CHECK_EQ(tpc_recv(number, &c, 1, 0), 1); /* waits on the new socket */
        tpc_deadline_clear();
        CHECK_EQ(c, 'y');
        CHECK_EQ(tpc_join(w, NULL), 0);
        tpc_close(number);
        tpc_close(sv[1]);
    }
    return 0;
}

static void test_accepted_descriptor_reused(void **state)
{
    (void)state;
    run_main(1, accepted_reuse_main, (void *)1);
    run_main(1, accepted_reuse_main, NULL);
}

static int enters_main(void *arg)
{
    (void)arg;
    enum { N = 200 };
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, byte_echo, (void *)(intptr_t)sv[1]), 0);
    tpc_shard_stats a, b;
    CHECK_EQ(tpc_stats(0, &a), 0);
    for (int i = 0; i < N; i++) {
        char c = (char)i;
        CHECK_EQ(tpc_send(sv[0], &c, 1, 0), 1);
        CHECK_EQ(tpc_recv(sv[0], &c, 1, 0), 1);
        CHECK_EQ(c, (char)i);
    }
    CHECK_EQ(tpc_stats(0, &b), 0);
    uint64_t enters = b.io_enters - a.io_enters, per = getenv("TPC_TEST_VALGRIND") ? 3 : 2;
    CHECK(enters >= N); /* every send is submitted by one */
    CHECK(enters <= per * N + 8);
    tpc_close(sv[0]); /* the thread reads end of file */
    pthread_join(t, NULL);
    close(sv[1]);
    return 0;
}

static void test_enters(void **state)
{
    (void)state;
    SKIP_IF(on_epoll(), "counts io_uring_enter calls");
    tpc_config c = {.shards = 1, .spin_ns = -1}; /* with a spin, it submits before spinning */
    run_config(&c, enters_main, NULL);
}

/* Wake-up coalescing (tpc_config.coalesce_us). Sixteen receives whose data a thread writes
 * 100 us apart: with a 10 ms window the shard wakes once for the lot, where without coalescing
 * each write wakes it. A lone completion after the window still wakes the shard, which sleeps
 * through an idle wait without waking every window (the kernel returns after the window only
 * with a general timeout). Timers due within the window end it, and a shard with fewer than 8
 * operations out does not coalesce: sends one after another, which complete as they are
 * submitted, would each wait out the window.
 * Under valgrind shards sleep in ppoll and coalescing is off: only the results are checked. */
enum { COALESCE_N = 16 }; /* at least twice the operations out that coalescing needs */
static int coalesce_fd[COALESCE_N];

static int recv_one(void *arg)
{
    char c = 0;
    int rc = (int)tpc_recv((int)(intptr_t)arg, &c, 1, 0);
    return rc == 1 ? c : -1;
}

static uint64_t writes_span; /* ns from the first write to the last */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *spaced_writes(void *arg)
{
    long gap_us = (long)(intptr_t)arg;
    uint64_t first = 0;
    for (int i = 0; i < COALESCE_N; i++) {
        /* The spacing is the workload: completions that trickle in, not synchronisation. */
        struct timespec ts = {0, gap_us * 1000};
        nanosleep(&ts, NULL);
        char c = (char)('a' + i);
        if (i == 0)
            first = mono_ns();
        CHECK_EQ(write(coalesce_fd[i], &c, 1), 1);
    }
    writes_span = mono_ns() - first;
    return NULL;
}

/* Returns the shard's kernel entries while COALESCE_N receives get data written gap_us apart. */
static uint64_t coalesced_recvs(long gap_us)
{
    int sv[COALESCE_N][2];
    tpc_fiber *f[COALESCE_N];
    for (int i = 0; i < COALESCE_N; i++) {
        CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        coalesce_fd[i] = sv[i][1];
        CHECK_EQ(tpc_spawn(recv_one, (void *)(intptr_t)sv[i][0], &f[i]), 0);
    }
    tpc_yield(); /* the receivers queue their SQEs */
    tpc_shard_stats a, b;
    CHECK_EQ(tpc_stats(0, &a), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, spaced_writes, (void *)(intptr_t)gap_us), 0);
    for (int i = 0; i < COALESCE_N; i++) {
        int r = -1;
        CHECK_EQ(tpc_join(f[i], &r), 0);
        CHECK_EQ(r, 'a' + i);
    }
    CHECK_EQ(tpc_stats(0, &b), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < COALESCE_N; i++) {
        tpc_close(sv[i][0]);
        close(sv[i][1]);
    }
    return b.io_enters - a.io_enters;
}

static int coalesce_main(void *arg)
{
    bool on = !getenv("TPC_TEST_VALGRIND");
    char line[512];
    CHECK(tpc_features(line, sizeof(line)) > 0);
    CHECK_EQ(strstr(line, "wake-ups coalesced over 10000 us") != NULL, on);
    uint64_t enters = coalesced_recvs(100);
    /* 16 without coalescing. Checked only when the writes fitted in the window: on a loaded
     * machine the writer may be descheduled past it, and once fewer than 8 receives are left
     * out each further write wakes the shard. */
    bool fitted = writes_span < 8 * MS;
    if (on && fitted)
        CHECK(enters <= COALESCE_N / 2);
    print_message("coalescing over 10 ms: %llu kernel entries for %d receives 100 us apart "
                  "(written over %.1f ms%s)\n",
                  (unsigned long long)enters, COALESCE_N, (double)writes_span / MS,
                  fitted ? "" : ": more than the window, not checked");
    /* Timers: twenty 1 ms sleeps, each ending the 10 ms window early, while receives that
     * get no data keep enough operations out for the shard to coalesce. Each sleep that waited
     * out the window is counted: all twenty if the timer does not clamp it, and most must not,
     * however loaded the machine. */
    int idle[COALESCE_N][2];
    tpc_fiber *rf[COALESCE_N];
    for (int i = 0; i < COALESCE_N; i++) {
        CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, idle[i]), 0);
        CHECK_EQ(tpc_spawn(recv_one, (void *)(intptr_t)idle[i][0], &rf[i]), 0);
    }
    int late = 0;
    for (int i = 0; i < 20; i++) {
        uint64_t t0 = tpc_now_fresh();
        CHECK_EQ(tpc_sleep(1 * MS), 0); /* the sleep is the behaviour under test */
        uint64_t took = tpc_now_fresh() - t0;
        CHECK(took >= 1 * MS);
        late += took >= 9 * MS;
    }
    CHECK(late < 10);
    for (int i = 0; i < COALESCE_N; i++) {
        int r = -1;
        CHECK_EQ(write(idle[i][1], "z", 1), 1);
        CHECK_EQ(tpc_join(rf[i], &r), 0);
        CHECK_EQ(r, 'z');
        tpc_close(idle[i][0]);
        close(idle[i][1]);
    }
    /* Operations one after another that complete as they are submitted, with no other
     * operation out: no coalescing, or each would wait out the window. */
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int slow_sends = 0;
    uint64_t t0 = tpc_now_fresh();
    for (int i = 0; i < 20; i++) {
        uint64_t t1 = tpc_now_fresh();
        CHECK_EQ(tpc_send(sv[0], "x", 1, 0), 1);
        slow_sends += tpc_now_fresh() - t1 >= 9 * MS;
    }
    uint64_t took = tpc_now_fresh() - t0;
    CHECK(slow_sends < 10);
    print_message("coalescing over 10 ms: %d of 20 sleeps of 1 ms lasted the window; 20 sends "
                  "one after another took %.1f ms\n",
                  late, (double)took / MS);
    tpc_close(sv[0]);
    close(sv[1]);
    (void)arg;
    return 0;
}

/* A window of 100 us, an idle 20 ms before each write: a wake per write, none in between. */
static int coalesce_idle_main(void *arg)
{
    (void)arg;
    uint64_t enters = coalesced_recvs(20 * 1000);
    if (!getenv("TPC_TEST_VALGRIND"))
        CHECK(enters <= 3 * COALESCE_N);
    print_message("coalescing over 100 us: %llu kernel entries for %d receives 20 ms apart\n",
                  (unsigned long long)enters, COALESCE_N);
    return 0;
}

static int no_op(void *arg)
{
    (void)arg;
    return 0;
}

/* Adaptive batching (tpc_config.coalesce_us left 0). A lone connection whose peer answers each
 * message never batches; 64 connections kept busy by a closed-loop peer batch; once they stop,
 * the lone connection goes back to a wake-up per completion within a few load windows (1 ms
 * each). The peer is a thread: the shard echoes, the thread drives. */
enum { BUSY_N = 64 };
static int busy_fd[BUSY_N];     /* the thread's ends */
static _Atomic int busy_rounds; /* rounds the thread is to drive over all BUSY_N */
static int busy_done_fd;        /* the thread writes a byte here when it is done */

static int echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    for (;;) {
        ssize_t n = tpc_recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return (int)n;
        CHECK_EQ(tpc_send(fd, buf, (size_t)n, 0), n);
    }
}

static void *busy_driver(void *arg)
{
    (void)arg;
    int rounds = atomic_load(&busy_rounds);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < BUSY_N; i++) { /* every connection has a message out ... */
            CHECK_EQ(write(busy_fd[i], "m", 1), 1);
            /* A client slower than the shard, as wrk is: the shard sleeps between arrivals
             * (the pacing is the workload, not synchronisation). */
            int64_t until = t_now_ns() + 3000;
            while (t_now_ns() < until)
                ;
        }
        for (int i = 0; i < BUSY_N; i++) { /* ... and the next waits for all the answers */
            char c;
            CHECK_EQ(read(busy_fd[i], &c, 1), 1);
        }
    }
    CHECK_EQ(write(busy_done_fd, "d", 1), 1);
    return NULL;
}

static void *lone_peer(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    while (read(fd, &c, 1) == 1)
        CHECK_EQ(write(fd, &c, 1), 1);
    return NULL;
}

/* Round trips over the lone connection: n of them, or (n == 0) for at least ms milliseconds.
 * Returns the shard's batched sleeps meanwhile. */
static uint64_t lone_round_trips(int fd, int n, uint64_t ms)
{
    tpc_shard_stats a, b;
    CHECK_EQ(tpc_stats(0, &a), 0);
    uint64_t end = tpc_now_fresh() + ms * MS;
    for (int i = 0; n ? i < n : tpc_now_fresh() < end; i++) {
        char c = 'p';
        CHECK_EQ(tpc_send(fd, &c, 1, 0), 1);
        CHECK_EQ(tpc_recv(fd, &c, 1, 0), 1);
    }
    CHECK_EQ(tpc_stats(0, &b), 0);
    return b.batched_sleeps - a.batched_sleeps;
}

static int adaptive_main(void *arg)
{
    bool can = *(bool *)arg;
    char line[512];
    CHECK(tpc_features(line, sizeof(line)) > 0);
    CHECK_EQ(strstr(line, "wake-ups batched under load (adaptive") != NULL, can);
    int lone[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, lone), 0);
    pthread_t peer;
    CHECK_EQ(pthread_create(&peer, NULL, lone_peer, (void *)(intptr_t)lone[1]), 0);
    uint64_t quiet = lone_round_trips(lone[0], 2000, 0);
    CHECK_EQ(quiet, 0);

    int sv[BUSY_N][2];
    tpc_fiber *f[BUSY_N];
    for (int i = 0; i < BUSY_N; i++) {
        CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        busy_fd[i] = sv[i][1];
        CHECK_EQ(tpc_spawn(echo_conn, (void *)(intptr_t)sv[i][0], &f[i]), 0);
    }
    tpc_shard_stats a, b;
    CHECK_EQ(tpc_stats(0, &a), 0);
    uint64_t t0 = tpc_now_fresh();
    atomic_store(&busy_rounds, getenv("TPC_TEST_SLOW") ? 100 : 200);
    int done[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, done), 0);
    busy_done_fd = done[1];
    pthread_t driver;
    CHECK_EQ(pthread_create(&driver, NULL, busy_driver, NULL), 0);
    char d;
    CHECK_EQ(tpc_recv(done[0], &d, 1, 0), 1); /* (a fiber polling a flag would keep the shard
                                               * awake) */
    uint64_t took = tpc_now_fresh() - t0;
    CHECK_EQ(tpc_stats(0, &b), 0);
    pthread_join(driver, NULL); /* before the close of what it wrote to */
    tpc_close(done[0]);
    close(done[1]);
    uint64_t busy = b.batched_sleeps - a.batched_sleeps;
    /* Batching starts at the first load window's end; the load lasts several. */
    if (can && took >= 5 * MS)
        CHECK(busy > 0);
    print_message("adaptive batching: 64 busy connections, %.1f ms: %llu batched sleeps, "
                  "%.2f kernel entries a completion\n",
                  (double)took / MS, (unsigned long long)busy,
                  (double)(b.io_enters - a.io_enters) /
                      (double)(b.io_completed - a.io_completed + 1));
    for (int i = 0; i < BUSY_N; i++) {
        close(sv[i][1]);
        int r = -1;
        CHECK_EQ(tpc_join(f[i], &r), 0);
        CHECK_EQ(r, 0);
        tpc_close(sv[i][0]);
    }
    /* The load is gone: within a few windows the lone connection wakes the shard for each
     * completion again. */
    (void)lone_round_trips(lone[0], 0, 10);
    uint64_t after = lone_round_trips(lone[0], 1000, 0);
    CHECK_EQ(after, 0);
    print_message("adaptive batching: lone connection, batched sleeps before the load %llu, "
                  "after %llu\n",
                  (unsigned long long)quiet, (unsigned long long)after);
    tpc_close(lone[0]);
    pthread_join(peer, NULL);
    return 0;
}

static void test_adaptive_batching(void **state)
{
    (void)state;
    /* Adaptive batching is on wherever a fixed window could run; the check of the features
     * line says so. */
    tpc_config probe = {.shards = 1, .spin_ns = -1, .coalesce_us = 50};
    bool can = !on_epoll() && !under_valgrind() && tpc_run(&probe, no_op, NULL) == 0;
    tpc_config c = {.shards = 1};
    run_config(&c, adaptive_main, &can);
}

/* The spin before sleeping, left to the runtime (spin_ns 0): none for I/O alone, a spin while
 * messages pass between shards; an explicit spin_ns spins after any work, a negative one never. */
static int ping(void *arg)
{
    (void)arg;
    return 0;
}

static int spin_main(void *arg)
{
    int64_t spin = *(int64_t *)arg;
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pthread_t peer;
    CHECK_EQ(pthread_create(&peer, NULL, lone_peer, (void *)(intptr_t)sv[1]), 0);
    tpc_shard_stats a, b;
    CHECK_EQ(tpc_stats(0, &a), 0);
    (void)lone_round_trips(sv[0], 200, 0);
    CHECK_EQ(tpc_stats(0, &b), 0);
    uint64_t io_spins = b.spins - a.spins;
    tpc_close(sv[0]);
    pthread_join(peer, NULL);
    CHECK_EQ(tpc_stats(1, &a), 0);
    for (int i = 0; i < 200; i++) {
        int r = -1;
        CHECK_EQ(tpc_call_on(1, ping, NULL, &r), 0);
    }
    CHECK_EQ(tpc_stats(1, &b), 0);
    uint64_t msg_spins = b.spins - a.spins;
    if (spin == 0) {
        CHECK_EQ(io_spins, 0);
        CHECK(msg_spins > 0);
    } else if (spin > 0) {
        CHECK(io_spins > 0);
        CHECK(msg_spins > 0);
    } else {
        CHECK_EQ(io_spins + msg_spins, 0);
    }
    print_message("spin_ns %lld: %llu spins over 200 I/O round trips, %llu on the callee of 200 "
                  "calls\n",
                  (long long)spin, (unsigned long long)io_spins, (unsigned long long)msg_spins);
    return 0;
}

static void test_adaptive_spin(void **state)
{
    (void)state;
    static const int64_t spins[] = {0, 5000, -1};
    for (int i = 0; i < 3; i++) {
        int64_t spin = spins[i];
        tpc_config c = {.shards = 2, .spin_ns = spin};
        run_config(&c, spin_main, &spin);
    }
}

static void test_coalesce(void **state)
{
    (void)state;
    SKIP_IF(on_epoll(), "wake-up coalescing is io_uring's (ignored on epoll)");
    tpc_config c = {.shards = 1, .spin_ns = -1, .coalesce_us = 10000};
    /* test-engine checks the error itself */
    SKIP_IF(tpc_run(&c, no_op, NULL) == -EOPNOTSUPP, "coalescing needs Linux 6.12");
    run_config(&c, coalesce_main, NULL);
    c.coalesce_us = 100;
    run_config(&c, coalesce_idle_main, NULL);
}

/* What the system's own getaddrinfo says for host and port: the number of stream addresses,
 * or -1 when it fails. A minimal system (a container image, debootstrap's minbase) may have no
 * localhost entry in /etc/hosts and no /etc/services: the test follows the system instead of
 * assuming a full install. */
static int system_resolve(const char *host, const char *port, int family)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    freeaddrinfo(res);
    return n;
}

static int resolve_main(void *arg)
{
    (void)arg;
    tpc_addr out[8];
    int n = tpc_resolve("localhost", "80", AF_UNSPEC, out, 8),
        sys = system_resolve("localhost", "80", AF_UNSPEC);
    if (sys < 0) { /* no such name, or no name server to ask */
        CHECK(n == -ENOENT || n == -EAGAIN);
    } else {
        CHECK_EQ(n, sys < 8 ? sys : 8);
        for (int i = 0; i < n; i++) {
            char text[64];
            CHECK(tpc_addr_format(&out[i], text, sizeof(text)) > 0);
            CHECK(!strcmp(text, "127.0.0.1:80") || !strcmp(text, "[::1]:80"));
        }
        CHECK_EQ(tpc_resolve("localhost", "80", AF_INET, out, 1), 1); /* at most max */
    }
    if (system_resolve("127.0.0.1", "http", AF_INET) == 1) { /* /etc/services is there */
        CHECK_EQ(tpc_resolve("127.0.0.1", "http", AF_INET, out, 8), 1);
        CHECK_EQ(ntohs(out[0].in4.sin_port), 80);
    } else {
        CHECK_EQ(tpc_resolve("127.0.0.1", "http", AF_INET, out, 8), -EINVAL);
    }
    CHECK_EQ(tpc_resolve("127.0.0.1", "8080", AF_INET, out, 8), 1); /* needs no file */
    CHECK_EQ(ntohs(out[0].in4.sin_port), 8080);
    CHECK_EQ(tpc_resolve("127.0.0.1", "no-such-service-tpc", AF_UNSPEC, out, 8), -EINVAL);
    CHECK_EQ(tpc_resolve("", "80", AF_UNSPEC, out, 8), -EINVAL);
    CHECK_EQ(tpc_resolve("127.0.0.1", "80", AF_UNIX, out, 8), -EINVAL);
    CHECK_EQ(tpc_resolve("127.0.0.1", "80", AF_UNSPEC, out, 0), -EINVAL);
    CHECK_EQ(tpc_resolve("127.0.0.1", "80", AF_INET6, out, 8), -ENOENT);
    return 0;
}

static void test_resolve(void **state)
{
    (void)state;
    tpc_addr a;
    assert_int_equal(tpc_resolve("localhost", "80", AF_UNSPEC, &a, 1), -EPERM);
    run_main(1, resolve_main, NULL);
}

/* ---- Receive streams over a buffer pool. ---- */

static int rx_close_rc;
static tpc_event rx_close_tried;
static void rx_close_from_callback(void *arg)
{
    rx_close_rc = tpc_rx_close(arg);
    tpc_event_set(&rx_close_tried);
}

/* Each case: a pool of 8 buffers of 16 bytes and a stream on the server end of a TCP pair. */
struct rx_setup {
    tpc_bufpool *p;
    int a, b;
    tpc_rx *rx;
};

static void rx_setup(struct rx_setup *f)
{
    CHECK_EQ(tpc_bufpool_create(8, 16, &f->p), 0);
    CHECK_EQ(tpc_bufpool_available(f->p), 8);
    tcp_pair(&f->a, &f->b);
    CHECK_EQ(tpc_rx_open(f->b, f->p, &f->rx), 0);
}

/* Closes the stream (unless it is closed already) and both ends; every buffer is back. */
static void rx_teardown(struct rx_setup *f)
{
    if (f->rx)
        CHECK_EQ(tpc_rx_close(f->rx), 0);
    if (f->a >= 0)
        tpc_close(f->a);
    tpc_close(f->b);
    CHECK_EQ(tpc_bufpool_available(f->p), 8);
    CHECK_EQ(tpc_bufpool_destroy(f->p), 0);
}

/* A deadline interrupts the wait and loses nothing: what comes later is received. */
static int rx_deadline_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    tpc_deadline_set(20 * MS);
    CHECK_EQ(tpc_rx_next(f.rx, &buf), -ETIMEDOUT);
    tpc_deadline_clear();
    CHECK_EQ(tpc_send(f.a, "later", 5, 0), 5);
    CHECK_EQ(tpc_rx_next(f.rx, &buf), 5);
    CHECK(buf.data && !memcmp(buf.data, "later", 5));
    CHECK_EQ(tpc_buf_release(&buf), 0);
    rx_teardown(&f);
    return 0;
}

static void test_rx_deadline_loses_nothing(void **state)
{
    (void)state;
    run_main(1, rx_deadline_main, NULL);
}

/* 200 bytes through buffers of 16, of which the stream may have 2 (a quarter of 8) queued and
 * held together: holding both, the caller gets -ENOBUFS and the other 6 buffers stay free while
 * the rest of the bytes wait in the socket; the stream goes on once they come back, and the
 * bytes arrive whole and in order. They are sent while nobody waits, so the first chunks are
 * queued, not handed to a waiter. */
static int rx_share_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    char msg[200], got[200];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)('a' + i % 26);
    CHECK_EQ(tpc_send(f.a, msg, sizeof(msg), 0), (ssize_t)sizeof(msg));
    WAIT_UNTIL(tpc_bufpool_available(f.p) == 6); /* the first chunks arrive with no waiter */
    tpc_buf held[2];
    size_t have = 0;
    int nheld = 0;
    while (have < sizeof(msg)) {
        ssize_t n = tpc_rx_next(f.rx, &held[nheld]);
        CHECK(n > 0 && n <= 16);
        if (n <= 0)
            break;
        memcpy(got + have, held[nheld].data, (size_t)n);
        have += (size_t)n;
        if (++nheld == 2) { /* its whole share */
            CHECK_EQ(tpc_rx_next(f.rx, &buf), -ENOBUFS);
            if (have < sizeof(msg))
                CHECK_EQ(tpc_bufpool_available(f.p), 6);
            while (nheld)
                CHECK_EQ(tpc_buf_release(&held[--nheld]), 0);
        }
    }
    CHECK(have == sizeof(msg) && !memcmp(got, msg, sizeof(msg)));
    while (nheld)
        CHECK_EQ(tpc_buf_release(&held[--nheld]), 0);
    rx_teardown(&f);
    return 0;
}

static void test_rx_share_and_order(void **state)
{
    (void)state;
    run_main(1, rx_share_main, NULL);
}

/* Buffers that come back to a pool whose streams starved are given out one per buffer: a
 * release arms one starved stream, not every one of them (each but one then failed again, a
 * storm of receives for every buffer that came back), and every starved stream gets its bytes
 * as buffers come back. Four streams hold the pool's 8 buffers; 32 more have a byte waiting. */
static int rx_unstarve_main(void *arg)
{
    (void)arg;
    enum { HOGS = 4, K = 32 };
    tpc_bufpool *p;
    CHECK_EQ(tpc_bufpool_create(8, 16, &p), 0); /* a stream's share: 2 */
    int ha[HOGS], hb[HOGS], va[K], vb[K];
    tpc_rx *hrx[HOGS], *vrx[K];
    tpc_buf hbuf[HOGS][2];
    for (int i = 0; i < HOGS; i++) {
        tcp_pair(&ha[i], &hb[i]);
        CHECK_EQ(tpc_rx_open(hb[i], p, &hrx[i]), 0);
        for (int k = 0; k < 2; k++) {
            CHECK_EQ(tpc_send(ha[i], "0123456789abcdef", 16, 0), 16);
            CHECK_EQ(tpc_rx_next(hrx[i], &hbuf[i][k]), 16);
        }
    }
    CHECK_EQ(tpc_bufpool_available(p), 0);
    for (int i = 0; i < K; i++)
        tcp_pair(&va[i], &vb[i]);
    uint64_t c0 = tpc__self->n_io_completed;
    for (int i = 0; i < K; i++)
        CHECK_EQ(tpc_rx_open(vb[i], p, &vrx[i]), 0);
    WAIT_UNTIL(tpc__self->n_io_completed - c0 >= K); /* each found the pool empty */
    for (int i = 0; i < K; i++)
        CHECK_EQ(tpc_send(va[i], "x", 1, 0), 1);
    loop_turns(2);
    uint64_t c1 = tpc__self->n_io_completed;
    CHECK_EQ(tpc_buf_release(&hbuf[0][0]), 0);
    WAIT_UNTIL(tpc_bufpool_available(p) == 0); /* a victim took it */
    loop_turns(4);
    CHECK(tpc__self->n_io_completed - c1 <= 4);
    CHECK_EQ(tpc_buf_release(&hbuf[0][1]), 0);
    for (int i = 1; i < HOGS; i++)
        for (int k = 0; k < 2; k++)
            CHECK_EQ(tpc_buf_release(&hbuf[i][k]), 0);
    for (int i = 0; i < K; i++) { /* every one gets its byte */
        tpc_buf b;
        CHECK_EQ(tpc_rx_next(vrx[i], &b), 1);
        CHECK(b.data && b.data[0] == 'x');
        CHECK_EQ(tpc_buf_release(&b), 0);
    }
    for (int i = 0; i < K; i++) {
        CHECK_EQ(tpc_rx_close(vrx[i]), 0);
        tpc_close(va[i]);
        tpc_close(vb[i]);
    }
    for (int i = 0; i < HOGS; i++) {
        CHECK_EQ(tpc_rx_close(hrx[i]), 0);
        tpc_close(ha[i]);
        tpc_close(hb[i]);
    }
    CHECK_EQ(tpc_bufpool_available(p), 8);
    CHECK_EQ(tpc_bufpool_destroy(p), 0);
    return 0;
}

static void test_rx_unstarve_one_per_buffer(void **state)
{
    (void)state;
    run_main(1, rx_unstarve_main, NULL);
}

/* A stream's receive serves many chunks, limited to the bytes of its share's buffers; chunks far
 * smaller than a buffer would take a buffer each past the share, so reaching the share cancels
 * the receive. A peer sending 400 single bytes, each reaped before the next is sent, to a
 * stream that takes nothing: the stream holds its share and a few more at most (without the
 * cancel it took the whole pool), and every byte arrives in order afterwards. */
static int rx_small_chunks_main(void *arg)
{
    (void)arg;
    tpc_bufpool *p;
    tpc_rx *rx;
    int a, b;
    CHECK_EQ(tpc_bufpool_create(64, 16, &p), 0); /* a stream's share: 16 buffers */
    tcp_pair(&a, &b);
    int one = 1;
    CHECK_EQ(setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    CHECK_EQ(tpc_rx_open(b, p, &rx), 0);
    enum { N = 400 };
    for (int i = 0; i < N; i++) {
        char c = (char)('a' + i % 26);
        CHECK_EQ(tpc_send(a, &c, 1, 0), 1);
        loop_turns(2); /* the byte is received before the next is sent */
        CHECK(tpc_bufpool_available(p) >= 64 - 16 - 4);
        if (tpc_bufpool_available(p) < 64 - 16 - 4)
            break;
    }
    char got[N];
    size_t have = 0;
    while (have < N) {
        tpc_buf buf;
        ssize_t n = tpc_rx_next(rx, &buf);
        CHECK(n > 0 && (size_t)n <= N - have);
        if (n <= 0 || (size_t)n > N - have)
            break;
        memcpy(got + have, buf.data, (size_t)n);
        have += (size_t)n;
        CHECK_EQ(tpc_buf_release(&buf), 0);
    }
    for (size_t i = 0; i < have; i++)
        CHECK_EQ(got[i], (char)('a' + i % 26));
    CHECK_EQ(tpc_rx_close(rx), 0);
    tpc_close(a);
    tpc_close(b);
    CHECK_EQ(tpc_bufpool_available(p), 64);
    CHECK_EQ(tpc_bufpool_destroy(p), 0);
    return 0;
}

static void test_rx_small_chunks_keep_share(void **state)
{
    (void)state;
    run_main(1, rx_small_chunks_main, NULL);
}

/* tpc_rx_close_idle closes an idle stream and loses nothing: bytes sent afterwards wait in the
 * socket; a queued chunk keeps the stream open (-EAGAIN) and is read; a held chunk is refused
 * (-EBUSY) until released. */
static int close_idle_cb_rc;
static void close_idle_from_callback(void *arg)
{
    close_idle_cb_rc = tpc_rx_close_idle(arg);
}

static int rx_close_idle_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    CHECK_EQ(tpc_rx_close_idle(NULL), -EINVAL);
    CHECK_EQ(tpc_defer(close_idle_from_callback, f.rx), 0);
    loop_turns(2);
    CHECK_EQ(close_idle_cb_rc, -EPERM);   /* it waits for the kernel: only a fiber can */
    CHECK_EQ(tpc_rx_close_idle(f.rx), 0); /* nothing came: closed */
    f.rx = NULL;
    CHECK_EQ(tpc_bufpool_available(f.p), 8);
    char got[8];
    CHECK_EQ(tpc_send(f.a, "later", 5, 0), 5);
    CHECK_EQ(tpc_recv(f.b, got, sizeof(got), 0), 5); /* it waited in the socket */
    CHECK(!memcmp(got, "later", 5));

    CHECK_EQ(tpc_rx_open(f.b, f.p, &f.rx), 0);
    CHECK_EQ(tpc_send(f.a, "queued", 6, 0), 6);
    WAIT_UNTIL(tpc_bufpool_available(f.p) < 8); /* a chunk is queued */
    CHECK_EQ(tpc_rx_close_idle(f.rx), -EAGAIN);
    tpc_buf b;
    CHECK_EQ(tpc_rx_next(f.rx, &b), 6);
    CHECK(!memcmp(b.data, "queued", 6));
    CHECK_EQ(tpc_rx_close_idle(f.rx), -EBUSY); /* b is held */
    CHECK_EQ(tpc_buf_release(&b), 0);
    CHECK_EQ(tpc_rx_close_idle(f.rx), 0);
    f.rx = NULL;
    rx_teardown(&f);
    return 0;
}

/* A close while another fiber is inside tpc_rx_close_idle is refused: that fiber closes the
 * stream (or it goes on); the close took the stream from under it, which then waited for good. */
static int close_idle_rc = 1, close_idle_done;
static int close_idle_fiber(void *arg)
{
    close_idle_rc = tpc_rx_close_idle(arg);
    close_idle_done = 1;
    return 0;
}

static int rx_close_during_close_idle_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    loop_turns(2); /* the receive in the ring */
    tpc_fiber *a;
    CHECK_EQ(tpc_spawn(close_idle_fiber, f.rx, &a), 0);
    tpc_yield(); /* a runs first and waits for the kernel to let go */
    CHECK(!close_idle_done);
    if (!close_idle_done)
        CHECK_EQ(tpc_rx_close(f.rx), -EINVAL);
    CHECK_EQ(tpc_join(a, NULL), 0);
    CHECK_EQ(close_idle_rc, 0);
    f.rx = NULL;
    rx_teardown(&f);
    return 0;
}

static void test_rx_close_during_close_idle(void **state)
{
    (void)state;
    run_main(1, rx_close_during_close_idle_main, NULL);
}

static void test_rx_close_idle(void **state)
{
    (void)state;
    run_main(1, rx_close_idle_main, NULL);
}

/* Closing idle streams while bytes arrive at any moment: every byte is read exactly once, in
 * order, either through a stream or, after a close, by the next stream. */
struct trickle {
    int fd, n;
};

static void *trickle_send(void *arg)
{
    struct trickle *t = arg;
    for (int i = 0; i < t->n; i++) {
        char c = (char)('a' + i % 26);
        if (send(t->fd, &c, 1, MSG_NOSIGNAL) != 1)
            break;
        if (i % 8 == 0)
            sched_yield();
    }
    return NULL;
}

static int rx_close_idle_race_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    CHECK_EQ(tpc_rx_close(f.rx), 0);
    f.rx = NULL;
    int one = 1;
    CHECK_EQ(setsockopt(f.a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    struct trickle t = {.fd = f.a, .n = 3000};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, trickle_send, &t), 0);
    int have = 0, closes = 0;
    while (have < t.n) {
        tpc_rx *rx;
        CHECK_EQ(tpc_rx_open(f.b, f.p, &rx), 0);
        for (;;) {
            int rc = tpc_rx_close_idle(rx);
            if (rc == 0) {
                closes++;
                break;
            }
            CHECK_EQ(rc, -EAGAIN);
            tpc_buf b;
            ssize_t n = tpc_rx_next(rx, &b);
            CHECK(n > 0);
            if (n <= 0)
                return 0;
            for (ssize_t i = 0; i < n; i++, have++)
                CHECK_EQ(b.data[i], (char)('a' + have % 26));
            CHECK_EQ(tpc_buf_release(&b), 0);
        }
        if (have < t.n)
            tpc_yield();
    }
    pthread_join(th, NULL);
    CHECK_EQ(have, t.n);
    CHECK(closes > 0);
    rx_teardown(&f);
    return 0;
}

static void test_rx_close_idle_race(void **state)
{
    (void)state;
    run_main(1, rx_close_idle_race_main, NULL);
}

/* -EAGAIN from a send or receive that is to wait (no free SQE, or a send the kernel gave up
 * on) is retried after a pass through the loop: the caller sees the bytes move. Asked not to
 * wait (MSG_DONTWAIT, an O_NONBLOCK socket), it is the caller's. */
#ifdef TPC_FAULT_INJECTION
static int eagain_main(void *arg)
{
    (void)arg;
    int a, b;
    tcp_pair(&a, &b);
    char buf[8];
    tpc__fault_set(IORING_OP_SEND, EAGAIN, 0, 3);
    CHECK_EQ(tpc_send(a, "retry", 5, 0), 5);
    CHECK_EQ(tpc_recv(b, buf, sizeof(buf), 0), 5);
    CHECK(!memcmp(buf, "retry", 5));
    tpc__fault_set(IORING_OP_RECV, EAGAIN, 0, 2);
    CHECK_EQ(tpc_send(a, "again", 5, 0), 5);
    CHECK_EQ(tpc_recv(b, buf, sizeof(buf), 0), 5);
    tpc__fault_set(IORING_OP_SEND, EAGAIN, 0, 1);
    CHECK_EQ(tpc_send(a, "x", 1, MSG_DONTWAIT), -EAGAIN);
    CHECK_EQ(fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK), 0);
    tpc__fault_set(IORING_OP_SEND, EAGAIN, 0, 1);
    CHECK_EQ(tpc_send(a, "x", 1, 0), -EAGAIN);
    tpc__fault_set(IORING_OP_SEND, 0, 0, 0);
    /* A receive stream's receive said -EAGAIN twice: it waits again, loses nothing, no error. */
    CHECK_EQ(fcntl(a, F_SETFL, fcntl(a, F_GETFL) & ~O_NONBLOCK), 0);
    tpc_bufpool *p;
    tpc_rx *rx;
    tpc_buf got;
    CHECK_EQ(tpc_bufpool_create(8, 64, &p), 0);
    tpc__fault_set(IORING_OP_RECV, EAGAIN, 0, 2);
    CHECK_EQ(tpc_rx_open(b, p, &rx), 0);
    loop_turns(3);
    CHECK_EQ(tpc_send(a, "stream", 6, 0), 6);
    CHECK_EQ(tpc_rx_next(rx, &got), 6);
    CHECK(!memcmp(got.data, "stream", 6));
    CHECK_EQ(tpc_buf_release(&got), 0);
    CHECK_EQ(tpc_rx_close(rx), 0);
    CHECK_EQ(tpc_bufpool_destroy(p), 0);
    tpc__fault_set(IORING_OP_RECV, 0, 0, 0);
    tpc_close(a);
    tpc_close(b);
    return 0;
}
#endif

static void test_send_recv_again(void **state)
{
    (void)state;
#ifdef TPC_FAULT_INJECTION
    run_main(1, eagain_main, NULL);
#else
    SKIP_IF(true, "fault injection is not built in (meson -Dfault_injection=true)");
#endif
}

/* A send the loop would submit by itself goes straight to the kernel, without a submission;
 * what the socket cannot take at once goes on through the ring, and a blocking send still sends
 * it all; MSG_DONTWAIT returns what went; errors are the send's own. */
#define DIRECT_BIG (4 << 20)

static int direct_reader(void *arg)
{
    int fd = *(int *)arg;
    static unsigned char buf[65536];
    size_t got = 0;
    while (got < DIRECT_BIG) {
        ssize_t n = tpc_recv(fd, buf, sizeof(buf), 0);
        CHECK(n > 0);
        if (n <= 0)
            return -1;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != (unsigned char)((got + (size_t)i) * 7))
                return -2;
        got += (size_t)n;
    }
    return 0;
}

static int send_direct_main(void *arg)
{
    (void)arg;
    struct tpc__shard *s = tpc__self;
    int a, b;
    tcp_pair(&a, &b);
    char buf[8];
    loop_turns(2); /* nothing left to submit */
    uint64_t before = s->n_io_submitted;
    CHECK_EQ(tpc_send(a, "alone", 5, 0), 5);
    if (!s->ep)                              /* (epoll makes every send at once, and counts it) */
        CHECK_EQ(s->n_io_submitted, before); /* no submission */
    CHECK_EQ(tpc_recv(b, buf, sizeof(buf), 0), 5);
    CHECK(!memcmp(buf, "alone", 5));
    /* Another fiber ready to run: the send goes with the ring's next submission. */
    tpc_fiber *other;
    CHECK_EQ(tpc_spawn(loop_turns_fn, (void *)(uintptr_t)1, &other), 0);
    before = s->n_io_submitted;
    CHECK_EQ(tpc_send(a, "queued", 6, 0), 6);
    CHECK(s->ep || s->n_io_submitted > before);
    CHECK_EQ(tpc_join(other, NULL), 0);
    CHECK_EQ(tpc_recv(b, buf, sizeof(buf), 0), 6);
    CHECK(!memcmp(buf, "queued", 6));
    /* More than the socket takes: part at once, the rest through the ring, all in order. */
    unsigned char *big = malloc(DIRECT_BIG);
    CHECK(big != NULL);
    for (size_t i = 0; i < DIRECT_BIG; i++)
        big[i] = (unsigned char)(i * 7);
    int small = 65536;
    CHECK_EQ(setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    tpc_fiber *reader;
    CHECK_EQ(tpc_spawn(direct_reader, &b, &reader), 0);
    loop_turns(2); /* the reader waits in its receive, submitted */
    before = s->n_io_submitted;
    ssize_t sent = tpc_send(a, big, DIRECT_BIG, 0);
    CHECK(sent > 0);
    CHECK(s->ep || s->n_io_submitted > before); /* the rest went through the ring */
    while (sent > 0 && sent < DIRECT_BIG) {     /* (a send may be short: io_uring's, epoll's) */
        ssize_t w = tpc_send(a, big + sent, DIRECT_BIG - (size_t)sent, 0);
        CHECK(w > 0);
        sent = w > 0 ? sent + w : -1;
    }
    CHECK_EQ(sent, DIRECT_BIG);
    int rc = -1;
    CHECK_EQ(tpc_join(reader, &rc), 0);
    CHECK_EQ(rc, 0);
    /* Nobody reading: MSG_DONTWAIT returns what the socket took. */
    loop_turns(2);
    ssize_t part = tpc_send(a, big, DIRECT_BIG, MSG_DONTWAIT);
    CHECK(part > 0 && part < DIRECT_BIG);
    free(big);
    /* The peer gone: the send's own error, and no SIGPIPE. */
    tpc_close(b);
    ssize_t w;
    for (int i = 0; i < 100 && (w = tpc_send(a, "x", 1, 0)) == 1; i++)
        loop_turns(1);
    CHECK(w == -EPIPE || w == -ECONNRESET);
    tpc_close(a);
    int p[2];
    CHECK_EQ(pipe(p), 0);
    loop_turns(2);
    CHECK_EQ(tpc_send(p[1], "x", 1, 0), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    return 0;
}

static void test_send_direct(void **state)
{
    (void)state;
    run_main(1, send_direct_main, NULL);
}

/* A kernel without the byte limit (before Linux 6.16) refuses the first limited receive with
 * -EINVAL: that is not the stream's error; the streams go on with one single-shot receive per
 * chunk, and the process remembers. */
static void test_rx_without_recv_limit(void **state)
{
    (void)state;
#ifdef TPC_FAULT_INJECTION
    int was = tpc__rx_limit(0);
    tpc__fault_hide_features(TPC__FEAT_RECV_LIMIT);
    run_main(1, rx_share_main, NULL);
    CHECK_EQ(tpc__rx_limit(0), -1); /* it learnt the kernel's answer */
    run_main(1, rx_small_chunks_main, NULL);
    tpc__fault_hide_features(0);
    tpc__rx_limit(was);
#else
    SKIP_IF(true, "fault injection is not built in (meson -Dfault_injection=true)");
#endif
}

/* A callback cannot close an armed stream (that waits for the kernel); the stream goes on. */
static int rx_callback_close_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    tpc_event_init(&rx_close_tried, false);
    CHECK_EQ(tpc_defer(rx_close_from_callback, f.rx), 0);
    CHECK_EQ(tpc_event_wait(&rx_close_tried), 0);
    CHECK_EQ(rx_close_rc, -EPERM);
    CHECK_EQ(tpc_send(f.a, "z", 1, 0), 1);
    CHECK_EQ(tpc_rx_next(f.rx, &buf), 1);
    CHECK_EQ(tpc_buf_release(&buf), 0);
    rx_teardown(&f);
    return 0;
}

static void test_rx_close_from_callback_refused(void **state)
{
    (void)state;
    run_main(1, rx_callback_close_main, NULL);
}

/* A buffer released twice, through a copy or itself, is refused. */
static int rx_release_twice_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    CHECK_EQ(tpc_send(f.a, "z", 1, 0), 1);
    CHECK_EQ(tpc_rx_next(f.rx, &buf), 1);
    tpc_buf copy = buf;
    CHECK_EQ(tpc_buf_release(&buf), 0);
    CHECK_EQ(tpc_buf_release(&copy), -EINVAL); /* released twice */
    CHECK_EQ(tpc_buf_release(&buf), -EINVAL);
    rx_teardown(&f);
    return 0;
}

static void test_rx_buffer_released_twice(void **state)
{
    (void)state;
    run_main(1, rx_release_twice_main, NULL);
}

static int rx_bad_args_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    tpc_rx *rx;
    tpc_bufpool *p;
    CHECK_EQ(tpc_buf_release(NULL), -EINVAL);
    CHECK_EQ(tpc_rx_next(NULL, &buf), -EINVAL);
    CHECK_EQ(tpc_rx_next(f.rx, NULL), -EINVAL);
    CHECK_EQ(tpc_rx_open(-1, f.p, &rx), -EINVAL);
    CHECK_EQ(tpc_bufpool_create(3, 16, &p), -EINVAL);
    CHECK_EQ(tpc_bufpool_create(65536, 16, &p), -EINVAL);
    CHECK_EQ(tpc_bufpool_create(4, 0, &p), -EINVAL);
    CHECK_EQ(tpc_bufpool_destroy(NULL), 0);
    rx_teardown(&f);
    return 0;
}

static void test_rx_bad_arguments(void **state)
{
    (void)state;
    tpc_bufpool *p;
    assert_int_equal(tpc_bufpool_create(4, 16, &p), -EPERM);
    run_main(1, rx_bad_args_main, NULL);
}

/* Closing with chunks queued gives them back. */
static int rx_close_queued_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    CHECK_EQ(tpc_send(f.a, "queued", 6, 0), 6);
    CHECK_EQ(tpc_rx_next(f.rx, &buf), 6); /* proof the data has arrived; hold it */
    CHECK_EQ(tpc_send(f.a, "more", 4, 0), 4);
    CHECK_EQ(tpc_rx_close(f.rx), 0);
    f.rx = NULL;
    CHECK_EQ(tpc_buf_release(&buf), 0);
    CHECK_EQ(tpc_bufpool_available(f.p), 8);
    rx_teardown(&f);
    return 0;
}

static void test_rx_close_gives_queued_back(void **state)
{
    (void)state;
    run_main(1, rx_close_queued_main, NULL);
}

/* Whether the page holding p is in memory. */
static bool resident(const void *p)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    unsigned char in = 0;
    CHECK_EQ(mincore((void *)((uintptr_t)p & ~(page - 1)), 1, &in), 0);
    return in & 1;
}

enum { TRIM_TOUCH = 16 };

/* Receives from a to the stream until TRIM_TOUCH chunks have come, recording where each was. */
static void touch_pool(int a, tpc_rx *rx, char **where)
{
    static char block[48 * 1024];
    for (int i = 0; i < TRIM_TOUCH; i++) {
        CHECK_EQ(tpc_send(a, block, sizeof(block), 0), (ssize_t)sizeof(block));
        tpc_buf b;
        CHECK(tpc_rx_next(rx, &b) > 0);
        where[i] = b.data;
        CHECK(resident(b.data)); /* the kernel wrote into it */
        size_t have = b.len;
        CHECK_EQ(tpc_buf_release(&b), 0);
        while (have < sizeof(block) && tpc_rx_next(rx, &b) > 0) { /* the rest of the block */
            have += b.len;
            CHECK_EQ(tpc_buf_release(&b), 0);
        }
    }
}

/* A pool that no stream uses gives its pages back, and a receive after that gets zeroed pages
 * filled as usual; a pool with a stream open (idle) keeps them. */
static int rx_trim_main(void *arg)
{
    (void)arg;
    tpc_bufpool *kept, *trimmed;
    CHECK_EQ(tpc_bufpool_create(8, 64 * 1024, &kept), 0);
    CHECK_EQ(tpc_bufpool_create(8, 64 * 1024, &trimmed), 0);
    int a1, b1, a2, b2;
    tcp_pair(&a1, &b1);
    tcp_pair(&a2, &b2);
    tpc_rx *r1, *r2;
    CHECK_EQ(tpc_rx_open(b1, kept, &r1), 0);
    CHECK_EQ(tpc_rx_open(b2, trimmed, &r2), 0);
    char *in_kept[TRIM_TOUCH], *in_trimmed[TRIM_TOUCH];
    touch_pool(a1, r1, in_kept);
    touch_pool(a2, r2, in_trimmed);
    CHECK_EQ(tpc_rx_close(r2), 0); /* `trimmed` is unused from here */
    for (int i = 0; i < TRIM_TOUCH; i++)
        WAIT_UNTIL(!resident(in_trimmed[i]));
    for (int i = 0; i < TRIM_TOUCH; i++)
        CHECK(resident(in_kept[i])); /* its stream is open: used since before the other's end */
    CHECK_EQ(tpc_rx_open(b2, trimmed, &r2), 0);
    CHECK_EQ(tpc_send(a2, "again", 5, 0), 5);
    tpc_buf b;
    CHECK_EQ(tpc_rx_next(r2, &b), 5);
    CHECK(!memcmp(b.data, "again", 5));
    CHECK_EQ(tpc_buf_release(&b), 0);
    CHECK_EQ(tpc_rx_close(r2), 0);
    CHECK_EQ(tpc_rx_close(r1), 0);
    CHECK_EQ(tpc_bufpool_available(kept), 8);
    CHECK_EQ(tpc_bufpool_available(trimmed), 8);
    CHECK_EQ(tpc_bufpool_destroy(kept), 0);
    CHECK_EQ(tpc_bufpool_destroy(trimmed), 0);
    tpc_close(a1), tpc_close(b1), tpc_close(a2), tpc_close(b2);
    return 0;
}

static void test_rx_unused_pool_gives_pages_back(void **state)
{
    (void)state;
    int64_t was = tpc__bufpool_trim_after(20 * MS);
    run_main(1, rx_trim_main, NULL);
    tpc__bufpool_trim_after(was);
}

/* The end of the stream is 0, and stays 0. */
static int rx_end_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    ssize_t n;
    CHECK_EQ(tpc_send(f.a, "data", 4, 0), 4);
    tpc_sock_shutdown(f.a, SHUT_WR);
    while ((n = tpc_rx_next(f.rx, &buf)) > 0)
        tpc_buf_release(&buf);
    CHECK_EQ(n, 0);
    CHECK_EQ(tpc_rx_next(f.rx, &buf), 0); /* and again */
    rx_teardown(&f);
    return 0;
}

static void test_rx_end_of_stream(void **state)
{
    (void)state;
    run_main(1, rx_end_main, NULL);
}

/* The peer's reset after data: -ECONNRESET once the data is taken. */
static int rx_reset_main(void *arg)
{
    (void)arg;
    struct rx_setup f;
    rx_setup(&f);
    tpc_buf buf;
    CHECK_EQ(tpc_send(f.a, "last", 4, 0), 4);
    CHECK_EQ(tpc_rx_next(f.rx, &buf), 4);
    CHECK_EQ(tpc_buf_release(&buf), 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(f.a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    tpc_close(f.a);
    f.a = -1;
    CHECK_EQ(tpc_rx_next(f.rx, &buf), -ECONNRESET);
    rx_teardown(&f);
    return 0;
}

static void test_rx_peer_reset(void **state)
{
    (void)state;
    run_main(1, rx_reset_main, NULL);
}

/* Four buffers (a share of one each), five streams: the first four have a chunk queued, which
 * empties the pool, and the fifth starves; closing the first gives its buffer back and the
 * fifth goes on. */
static int rx_starve_main(void *arg)
{
    (void)arg;
    tpc_bufpool *p;
    tpc_buf buf;
    CHECK_EQ(tpc_bufpool_create(4, 16, &p), 0);
    int ca[5], sa[5];
    tpc_rx *r[5];
    for (int i = 0; i < 5; i++) {
        tcp_pair(&ca[i], &sa[i]);
        CHECK_EQ(tpc_rx_open(sa[i], p, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_send(ca[i], "x", 1, 0), 1);
    WAIT_UNTIL(tpc_bufpool_available(p) == 0); /* the four chunks are queued */
    CHECK_EQ(tpc_bufpool_available(p), 0);
    CHECK_EQ(tpc_send(ca[4], "e", 1, 0), 1);
    loop_turns(3); /* through the loop: the fifth's data is in, and finds the pool empty */
    CHECK_EQ(tpc_rx_close(r[0]), 0);
    tpc_deadline_set(2000 * MS);
    CHECK_EQ(tpc_rx_next(r[4], &buf), 1);
    tpc_deadline_clear();
    CHECK_EQ(buf.data ? buf.data[0] : 0, 'e');
    CHECK_EQ(tpc_buf_release(&buf), 0);
    for (int i = 1; i < 5; i++)
        CHECK_EQ(tpc_rx_close(r[i]), 0);
    for (int i = 0; i < 5; i++)
        tpc_close(ca[i]), tpc_close(sa[i]);
    CHECK_EQ(tpc_bufpool_available(p), 4);
    CHECK_EQ(tpc_bufpool_destroy(p), 0);
    return 0;
}

static void test_rx_starved_stream_goes_on(void **state)
{
    (void)state;
    run_main(1, rx_starve_main, NULL);
}

/* A stale copy of a tpc_buf: once its buffer has been handed out again, releasing the copy
 * must not give the new holder's buffer back (-EINVAL), and the new holder's data stays. */
static int stale_main(void *arg)
{
    (void)arg;
    int a, b;
    tcp_pair(&a, &b);
    tpc_bufpool *p;
    tpc_rx *rx;
    CHECK_EQ(tpc_bufpool_create(1, 64, &p), 0); /* one buffer: every chunk reuses it */
    CHECK_EQ(tpc_rx_open(b, p, &rx), 0);
    tpc_buf first, stale, second;
    CHECK_EQ(tpc_send(a, "AAAA", 4, 0), 4);
    CHECK_EQ(tpc_rx_next(rx, &first), 4);
    stale = first; /* kept somewhere, say in a request record */
    CHECK_EQ(tpc_buf_release(&first), 0);
    CHECK_EQ(tpc_send(a, "BBBB", 4, 0), 4);
    CHECK_EQ(tpc_rx_next(rx, &second), 4);
    CHECK(second.data == stale.data); /* the same buffer, handed out again */
    CHECK_EQ(tpc_buf_release(&stale), -EINVAL);
    CHECK_EQ(tpc_bufpool_available(p), 0); /* still held by `second` */
    CHECK_EQ(tpc_send(a, "CCCC", 4, 0), 4);
    loop_turns(5); /* through the loop: a buffer wrongly given back would be filled */
    CHECK(!memcmp(second.data, "BBBB", 4));
    CHECK_EQ(tpc_rx_next(rx, &first), -ENOBUFS); /* `second` is the stream's whole share */
    CHECK_EQ(tpc_buf_release(&second), 0);
    CHECK_EQ(tpc_rx_next(rx, &first), 4);
    CHECK(!memcmp(first.data, "CCCC", 4));
    CHECK_EQ(tpc_buf_release(&first), 0);
    CHECK_EQ(tpc_rx_close(rx), 0);
    CHECK_EQ(tpc_bufpool_destroy(p), 0);
    tpc_close(a), tpc_close(b);
    return 0;
}

/* Releasing in use (docs/guide.md, "Objects and their release"): closing a stream a fiber waits on
 * wakes it with -ECANCELED; a pool destroyed while a stream and a buffer use it keeps serving
 * them and goes when the last lets go (ASan and valgrind see the memory freed). */
static int rx_waiter(void *arg)
{
    tpc_buf b;
    return (int)tpc_rx_next(arg, &b);
}

static int release_in_use_main(void *arg)
{
    (void)arg;
    int a, b;
    tcp_pair(&a, &b);
    tpc_bufpool *p;
    tpc_rx *rx, *rx2;
    CHECK_EQ(tpc_bufpool_create(8, 64, &p), 0); /* a stream's share: 2 buffers */
    CHECK_EQ(tpc_rx_open(b, p, &rx), 0);
    tpc_fiber *w;
    int r = 0;
    CHECK_EQ(tpc_spawn(rx_waiter, rx, &w), 0);
    CHECK_EQ(tpc_yield(), 0); /* it waits: nothing was sent */
    CHECK_EQ(tpc_rx_close(rx), 0);
    CHECK_EQ(tpc_join(w, &r), 0);
    CHECK_EQ(r, -ECANCELED);

    CHECK_EQ(tpc_rx_open(b, p, &rx), 0);
    tpc_buf held;
    CHECK_EQ(tpc_send(a, "held", 4, 0), 4);
    CHECK_EQ(tpc_rx_next(rx, &held), 4);
    CHECK_EQ(tpc_bufpool_destroy(p), 0); /* a stream and a buffer still use it */
    CHECK_EQ(tpc_bufpool_destroy(p), -EINVAL);
    CHECK_EQ(tpc_rx_open(b, p, &rx2), -EINVAL); /* no new streams on a destroyed pool */
    tpc_buf next;
    CHECK_EQ(tpc_send(a, "more", 4, 0), 4);
    CHECK_EQ(tpc_rx_next(rx, &next), 4); /* the open stream goes on */
    CHECK(!memcmp(next.data, "more", 4));
    CHECK_EQ(tpc_buf_release(&next), 0);
    CHECK_EQ(tpc_rx_close(rx), 0);
    CHECK(!memcmp(held.data, "held", 4)); /* the held buffer outlives its stream */
    CHECK_EQ(tpc_buf_release(&held), 0);  /* the last user: the pool goes now */
    tpc_close(a), tpc_close(b);
    return 0;
}

static void test_release_in_use(void **state)
{
    (void)state;
    run_main(1, release_in_use_main, NULL);
}

static void test_rx_stale_copy(void **state)
{
    (void)state;
    run_main(1, stale_main, NULL);
}

/* Pools made and destroyed 70,000 times on one shard: a destroyed pool's buffer group id is
 * reused (there are 65,535), and pools on reused ids receive what they should. */
static int pool_churn_main(void *arg)
{
    (void)arg;
    int fails = 0;
    for (int i = 0; i < 70000; i++) {
        tpc_bufpool *p;
        int rc = tpc_bufpool_create(1, 64, &p);
        if (rc < 0) {
            if (!fails++)
                fprintf(stderr, "pool %d: %s\n", i, tpc_strerror(rc));
            continue;
        }
        if (tpc_bufpool_destroy(p) != 0)
            fails++;
    }
    CHECK_EQ(fails, 0);
    tpc_bufpool *p[2];
    int a[2], b[2];
    tpc_rx *rx[2];
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(tpc_bufpool_create(2, 16, &p[i]), 0);
        tcp_pair(&a[i], &b[i]);
        CHECK_EQ(tpc_rx_open(b[i], p[i], &rx[i]), 0);
    }
    CHECK_EQ(tpc_send(a[1], "one", 3, 0), 3);
    CHECK_EQ(tpc_send(a[0], "zero", 4, 0), 4);
    for (int i = 0; i < 2; i++) {
        tpc_buf buf;
        CHECK_EQ(tpc_rx_next(rx[i], &buf), i ? 3 : 4);
        CHECK_EQ(memcmp(buf.data, i ? "one" : "zero", i ? 3 : 4), 0);
        CHECK_EQ(tpc_buf_release(&buf), 0);
        CHECK_EQ(tpc_bufpool_available(p[i]), 2);
        CHECK_EQ(tpc_rx_close(rx[i]), 0);
        CHECK_EQ(tpc_bufpool_destroy(p[i]), 0);
        tpc_close(a[i]), tpc_close(b[i]);
    }
    return 0;
}

static void test_pool_churn(void **state)
{
    (void)state;
    SKIP_IF(under_valgrind(), "70,000 ring registrations under valgrind take minutes");
    run_main(1, pool_churn_main, NULL);
}

/* ---- Zero-copy. ---- */

#define BIG (1 << 20)

static int source_main(void *arg) /* writes BIG patterned bytes, then closes */
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(BIG);
    for (int i = 0; i < BIG; i++)
        buf[i] = (char)(i * 7 + i / 4096);
    CHECK_EQ(tpc_write_full(fd, buf, BIG, -1), BIG);
    free(buf);
    tpc_sock_shutdown(fd, SHUT_WR);
    return 0;
}

static int sink_main(void *arg) /* reads to the end and checks the pattern */
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(BIG + 1);
    ssize_t have = 0, n;
    while ((n = tpc_recv(fd, buf + have, (size_t)(BIG + 1 - have), 0)) > 0)
        have += n;
    CHECK_EQ(have, BIG);
    int bad = 0;
    for (int i = 0; i < have; i++)
        bad += buf[i] != (char)(i * 7 + i / 4096);
    CHECK_EQ(bad, 0);
    free(buf);
    return (int)have;
}

/* Bytes through a proxy with tpc_forward: client -> (a1, b1) -> proxy forwards b1 to a2 ->
 * (a2, b2) -> sink; every byte arrives. */
static int splice_main(void *arg)
{
    (void)arg;
    int a1, b1, a2, b2;
    tcp_pair(&a1, &b1);
    tcp_pair(&a2, &b2);
    tpc_fiber *src, *dst;
    CHECK_EQ(tpc_spawn(source_main, (void *)(intptr_t)a1, &src), 0);
    CHECK_EQ(tpc_spawn(sink_main, (void *)(intptr_t)b2, &dst), 0);
    long total = 0;
    ssize_t n;
    tpc_fwd fw;
    CHECK_EQ(tpc_fwd_init(&fw, b1, a2), 0);
    while ((n = tpc_forward(&fw, 1 << 20)) > 0)
        total += n;
    CHECK_EQ(n, 0);
    CHECK_EQ(total, BIG);
    CHECK_EQ(fw.in, BIG);
    CHECK_EQ(fw.out, BIG);
    tpc_fwd_destroy(&fw);
    tpc_sock_shutdown(a2, SHUT_WR);
    int got = 0;
    CHECK_EQ(tpc_join(src, NULL), 0);
    CHECK_EQ(tpc_join(dst, &got), 0);
    CHECK_EQ(got, BIG);
    tpc_close(a1), tpc_close(b1), tpc_close(a2), tpc_close(b2);
    return 0;
}

/* An unlinked temporary file holding 200,000 bytes of a pattern (*data, freed by the caller). */
static int pattern_file(char **data)
{
    char path[] = "/tmp/tpc-sendfile-XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0);
    unlink(path);
    *data = malloc(200000);
    for (int i = 0; i < 200000; i++)
        (*data)[i] = (char)(i % 251);
    CHECK_EQ(tpc_write_full(file, *data, 200000, 0), 200000);
    return file;
}

/* A file to a socket: all of it from an offset, which advances. */
static int sendfile_main(void *arg)
{
    (void)arg;
    char *data;
    int file = pattern_file(&data);
    int a1, b1;
    tcp_pair(&a1, &b1);
    int64_t off = 1000;
    CHECK_EQ(tpc_sendfile(a1, file, &off, 300000), 199000); /* to the end of the file */
    CHECK_EQ(off, 200000);
    tpc_sock_shutdown(a1, SHUT_WR);
    char *back = malloc(200000);
    ssize_t have = 0, n;
    while ((n = tpc_recv(b1, back + have, (size_t)(200000 - have), 0)) > 0)
        have += n;
    CHECK_EQ(have, 199000);
    CHECK(!memcmp(back, data + 1000, 199000));
    free(back);
    free(data);
    tpc_close(a1), tpc_close(b1);
    tpc_close(file);
    return 0;
}

/* Errors: a closed peer, bad arguments. */
static int splice_errors_main(void *arg)
{
    (void)arg;
    char *data;
    int file = pattern_file(&data);
    free(data);
    int a1, b1;
    tcp_pair(&a1, &b1);
    tpc_close(b1);
    int64_t off = 0;
    ssize_t rc = 0;
    for (int i = 0; i < 20 && rc >= 0; i++) /* the first sends may still be buffered */
        rc = tpc_sendfile(a1, file, &off, 200000), off = 0;
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    tpc_close(a1);
    tpc_fwd fw;
    CHECK_EQ(tpc_fwd_init(&fw, -1, 0), -EBADF);
    CHECK_EQ(tpc_fwd_init(NULL, 0, 0), -EINVAL);
    CHECK_EQ(tpc_forward(NULL, 10), -EINVAL);
    CHECK_EQ(tpc_sendfile(-1, file, NULL, 10), -EBADF);
    off = -5;
    CHECK_EQ(tpc_sendfile(1, file, &off, 10), -EINVAL);
    CHECK_EQ(tpc_splice(file, 0, 1, -1, 10, 0x100), -EINVAL);
    CHECK_EQ(tpc_splice(file, -2, 1, -1, 10, 0), -EINVAL);
    CHECK_EQ(tpc_splice(file, 0, file, 0, 10, 0), -EINVAL); /* neither end is a pipe */
    tpc_close(file);
    return 0;
}

static void test_forward_through_a_proxy(void **state)
{
    (void)state;
    run_main(1, splice_main, NULL);
}

static void test_sendfile(void **state)
{
    (void)state;
    run_main(1, sendfile_main, NULL);
}

static void test_splice_errors(void **state)
{
    (void)state;
    run_main(1, splice_errors_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_sendv_recvv),
        cmocka_unit_test(test_peer_reset),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_reused_descriptor_numbers),
        cmocka_unit_test(test_accepted_descriptor_reused),
        cmocka_unit_test(test_enters),
        cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_rx_deadline_loses_nothing),
        cmocka_unit_test(test_rx_share_and_order),
        cmocka_unit_test(test_rx_small_chunks_keep_share),
        cmocka_unit_test(test_rx_unstarve_one_per_buffer),
        cmocka_unit_test(test_rx_close_idle),
        cmocka_unit_test(test_rx_close_during_close_idle),
        cmocka_unit_test(test_rx_close_idle_race),
        cmocka_unit_test(test_send_recv_again),
        cmocka_unit_test(test_send_direct),
        cmocka_unit_test(test_rx_without_recv_limit),
        cmocka_unit_test(test_rx_close_from_callback_refused),
        cmocka_unit_test(test_rx_buffer_released_twice),
        cmocka_unit_test(test_rx_bad_arguments),
        cmocka_unit_test(test_rx_close_gives_queued_back),
        cmocka_unit_test(test_rx_unused_pool_gives_pages_back),
        cmocka_unit_test(test_rx_end_of_stream),
        cmocka_unit_test(test_rx_peer_reset),
        cmocka_unit_test(test_rx_starved_stream_goes_on),
        cmocka_unit_test(test_rx_stale_copy),
        cmocka_unit_test(test_release_in_use),
        cmocka_unit_test(test_pool_churn),
        cmocka_unit_test(test_forward_through_a_proxy),
        cmocka_unit_test(test_sendfile),
        cmocka_unit_test(test_splice_errors),
        cmocka_unit_test(test_adaptive_batching),
        cmocka_unit_test(test_adaptive_spin),
        cmocka_unit_test(test_sock_linger),
        cmocka_unit_test(test_send_recv_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
