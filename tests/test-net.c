/* Sockets: address parsing and formatting (good and bad input), a TCP and a Unix stream echo
 * across two shards, connect refused, half-close, a send to a closed peer (no SIGPIPE), and
 * accept interrupted by a deadline and by cancellation. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "helpers.h"

static void test_addresses(void **state)
{
    (void)state;
    static const char *good[] = {"127.0.0.1:8080", "0.0.0.0:0", "[::1]:80", "[fe80::1]:65535",
                                 "unix:/tmp/tpc.sock"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        tpc_addr a;
        char back[128];
        assert_int_equal(tpc_addr_parse(good[i], &a), 0);
        int n = tpc_addr_format(&a, back, sizeof(back));
        assert_int_equal(n, (int)strlen(good[i]));
        assert_string_equal(back, good[i]);
    }
    static const char *bad[] = {
        "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "1.2.3:80",     "localhost:80", "[::1]80",
        "[::1:80",   "::1:80",     "unix:",           "127.0.0.1:-1", ":80",          ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tpc_addr a;
        assert_int_equal(tpc_addr_parse(bad[i], &a), -EINVAL);
    }
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'x', sizeof(longpath) - 7);
    longpath[sizeof(longpath) - 1] = 0;
    tpc_addr a;
    assert_int_equal(tpc_addr_parse(longpath, &a), -EINVAL); /* longer than sun_path */
    assert_int_equal(tpc_addr_parse(NULL, &a), -EINVAL);
    assert_int_equal(tpc_addr_format(NULL, NULL, 0), -EINVAL);
    char small[4];
    assert_int_equal(tpc_addr_parse("10.0.0.1:80", &a), 0);
    assert_int_equal(tpc_addr_format(&a, small, sizeof(small)), 11); /* like snprintf */
    assert_string_equal(small, "10.");
}

/* ---- Echo between two shards. ---- */
static int echo_once(void *arg) /* on shard 1: accept one connection, echo until EOF */
{
    int lfd = (int)(intptr_t)arg;
    tpc_addr peer;
    int fd = tpc_accept(lfd, &peer);
    CHECK(fd >= 0);
    if (fd < 0)
        return fd;
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = tpc_recv(fd, buf, sizeof(buf), 0);
        CHECK(n >= 0);
        if (n <= 0)
            break;
        CHECK_EQ(tpc_send(fd, buf, (size_t)n, 0), n);
        total += n;
    }
    tpc_close(fd);
    return (int)total;
}

static void echo_through(const char *where)
{
    tpc_addr a;
    CHECK_EQ(tpc_addr_parse(where, &a), 0);
    if (a.sa.sa_family == AF_UNIX)
        unlink(a.un.sun_path);
    int lfd = tpc_listen(&a, 0, 0);
    CHECK(lfd >= 0);
    tpc_addr bound;
    CHECK_EQ(tpc_sock_local(lfd, &bound), 0); /* the port the kernel chose */
    tpc_fiber *r;
    CHECK_EQ(tpc_spawn_on(1, NULL, echo_once, (void *)(intptr_t)lfd, &r), 0);
    int fd = tpc_connect(&bound);
    CHECK(fd >= 0);
    if (a.sa.sa_family != AF_UNIX)
        CHECK_EQ(tpc_sock_nodelay(fd, 1), 0);
    char out[1000], in[1000];
    long sent = 0;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof(out); i++)
            out[i] = (char)(round + (int)i);
        CHECK_EQ(tpc_send(fd, out, sizeof(out), 0), (ssize_t)sizeof(out));
        sent += (long)sizeof(out);
        size_t got = 0;
        while (got < sizeof(in)) {
            ssize_t n = tpc_recv(fd, in + got, sizeof(in) - got, 0);
            CHECK(n > 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        CHECK(memcmp(in, out, sizeof(in)) == 0);
    }
    CHECK_EQ(tpc_sock_shutdown(fd, SHUT_WR), 0);  /* half-close: the server sees EOF */
    CHECK_EQ(tpc_recv(fd, in, sizeof(in), 0), 0); /* and closes its side */
    int echoed = -1;
    CHECK_EQ(tpc_join(r, &echoed), 0);
    CHECK_EQ(echoed, sent);
    tpc_close(fd);
    tpc_close(lfd);
    if (a.sa.sa_family == AF_UNIX)
        unlink(a.un.sun_path);
}

static int echo_main(void *arg)
{
    (void)arg;
    echo_through("127.0.0.1:0");
    echo_through("[::1]:0");
    char unix_path[64];
    snprintf(unix_path, sizeof(unix_path), "unix:/tmp/tpc-test-net-%d.sock", (int)getpid());
    echo_through(unix_path);
    return 0;
}

static void test_echo(void **state)
{
    (void)state;
    run_main(2, echo_main, NULL);
}

/* ---- Datagrams, IPv4 and Unix, across two shards. ---- */
static int dgram_echo(void *arg) /* on shard 1: echo 20 datagrams to their senders */
{
    int fd = (int)(intptr_t)arg;
    char buf[2048];
    for (int i = 0; i < 20; i++) {
        tpc_addr from;
        ssize_t n = tpc_recvfrom(fd, buf, sizeof(buf), &from);
        CHECK(n >= 0);
        if (n < 0)
            return -1;
        CHECK_EQ(tpc_sendto(fd, buf, (size_t)n, &from), n);
    }
    return 0;
}

static void dgram_through(const char *server, const char *client)
{
    tpc_addr sa, ca;
    CHECK_EQ(tpc_addr_parse(server, &sa), 0);
    CHECK_EQ(tpc_addr_parse(client, &ca), 0);
    if (sa.sa.sa_family == AF_UNIX) {
        unlink(sa.un.sun_path);
        unlink(ca.un.sun_path);
    }
    int sfd = tpc_dgram(&sa), cfd = tpc_dgram(&ca);
    CHECK(sfd >= 0 && cfd >= 0);
    tpc_addr to;
    CHECK_EQ(tpc_sock_local(sfd, &to), 0);
    tpc_fiber *r;
    CHECK_EQ(tpc_spawn_on(1, NULL, dgram_echo, (void *)(intptr_t)sfd, &r), 0);
    for (int i = 0; i < 20; i++) {
        char out[100], in[200];
        int len = snprintf(out, sizeof(out), "datagram %d", i) + 1;
        CHECK_EQ(tpc_sendto(cfd, out, (size_t)len, &to), len);
        tpc_addr from;
        CHECK_EQ(tpc_recvfrom(cfd, in, sizeof(in), &from), len);
        CHECK(strcmp(in, out) == 0);
        char a1[128], a2[128];
        tpc_addr_format(&from, a1, sizeof(a1));
        tpc_addr_format(&to, a2, sizeof(a2));
        CHECK(strcmp(a1, a2) == 0); /* it came from the server */
    }
    CHECK_EQ(tpc_join(r, NULL), 0);
    tpc_close(sfd);
    tpc_close(cfd);
    if (sa.sa.sa_family == AF_UNIX) {
        unlink(sa.un.sun_path);
        unlink(ca.un.sun_path);
    }
}

static int dgram_main(void *arg)
{
    (void)arg;
    dgram_through("127.0.0.1:0", "127.0.0.1:0");
    char s[64], c[64];
    snprintf(s, sizeof(s), "unix:/tmp/tpc-test-dgs-%d", (int)getpid());
    snprintf(c, sizeof(c), "unix:/tmp/tpc-test-dgc-%d", (int)getpid());
    dgram_through(s, c);
    return 0;
}

static void test_datagrams(void **state)
{
    (void)state;
    run_main(2, dgram_main, NULL);
}

/* ---- One listener per shard: the kernel spreads connections over both. ---- */
enum { SPREAD_CONNS = 64 };
static int spread_fds[2];
static atomic_int accepted[2];

static int acceptor(void *arg)
{
    (void)arg;
    int me = tpc_shard_id();
    for (;;) {
        int fd = tpc_accept(spread_fds[me], NULL);
        if (fd < 0)
            return fd == -ECANCELED ? 0 : fd;
        atomic_fetch_add(&accepted[me], 1);
        tpc_close(fd);
    }
}

static tpc_fiber *acceptors[2]; /* each used on its own shard */

static int start_acceptor(void *arg)
{
    (void)arg;
    return tpc_spawn(acceptor, NULL, &acceptors[tpc_shard_id()]);
}

static int stop_acceptor(void *arg)
{
    (void)arg;
    tpc_fiber *f = acceptors[tpc_shard_id()];
    int res = -1;
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    return res;
}

static int spread_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    CHECK_EQ(tpc_listen_all(&a, 0, spread_fds), 0);
    tpc_addr b0, b1;
    CHECK_EQ(tpc_sock_local(spread_fds[0], &b0), 0);
    CHECK_EQ(tpc_sock_local(spread_fds[1], &b1), 0);
    CHECK_EQ(b0.in4.sin_port, b1.in4.sin_port); /* one port */
    CHECK_EQ(tpc_on_all(start_acceptor, NULL), 0);
    for (int i = 0; i < SPREAD_CONNS; i++) {
        int fd = tpc_connect(&b0);
        CHECK(fd >= 0);
        tpc_close(fd);
    }
    WAIT_UNTIL(atomic_load(&accepted[0]) + atomic_load(&accepted[1]) == SPREAD_CONNS);
    CHECK(atomic_load(&accepted[0]) > 0 && atomic_load(&accepted[1]) > 0);
    CHECK_EQ(tpc_listen_all(NULL, 0, spread_fds), -EINVAL);
    CHECK_EQ(tpc_on_all(stop_acceptor, NULL), 0); /* each returned 0 when cancelled */
    tpc_close(spread_fds[0]);
    tpc_close(spread_fds[1]);
    return 0;
}

static void test_listen_all(void **state)
{
    (void)state;
    run_main(2, spread_main, NULL);
}

/* ---- Errors and interruptions. ---- */
static int accept_one(void *arg)
{
    return tpc_accept((int)(intptr_t)arg, NULL);
}

static int errors_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    int lfd = tpc_listen(&a, 8, 0);
    CHECK(lfd >= 0);
    tpc_addr bound;
    CHECK_EQ(tpc_sock_local(lfd, &bound), 0);

    /* Nobody listening on a port just freed: refused. */
    int spare = tpc_listen(&a, 8, 0);
    tpc_addr gone;
    CHECK_EQ(tpc_sock_local(spare, &gone), 0);
    tpc_close(spare);
    CHECK_EQ(tpc_connect(&gone), -ECONNREFUSED);

    /* Accept with a deadline, and accept cancelled. */
    tpc_deadline_set(2 * 1000 * 1000);
    CHECK_EQ(tpc_accept(lfd, NULL), -ETIMEDOUT);
    tpc_deadline_clear();
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(accept_one, (void *)(intptr_t)lfd, &f), 0);
    tpc_yield();
    CHECK_EQ(tpc_cancel(f), 0);
    int res = 0;
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, -ECANCELED);

    /* A peer that closes: sends fail with EPIPE or ECONNRESET, and no SIGPIPE. */
    int c = tpc_connect(&bound);
    CHECK(c >= 0);
    int s = tpc_accept(lfd, NULL);
    CHECK(s >= 0);
    tpc_close(s);
    char buf[4096] = {0};
    ssize_t n = 0;
    for (int i = 0; i < 100 && n >= 0; i++)
        n = tpc_send(c, buf, sizeof(buf), 0);
    CHECK(n == -EPIPE || n == -ECONNRESET);
    tpc_close(c);

    /* Bad arguments. */
    CHECK_EQ(tpc_listen(NULL, 0, 0), -EINVAL);
    CHECK_EQ(tpc_listen(&a, 0, 99), -EINVAL);
    CHECK_EQ(tpc_connect(NULL), -EINVAL);
    CHECK_EQ(tpc_recv(lfd, NULL, 10, 0), -EFAULT);
    CHECK_EQ(tpc_sock_shutdown(lfd, 42), -EINVAL);
    CHECK_EQ(tpc_accept(-1, NULL), -EBADF);
    tpc_close(lfd);
    return 0;
}

static void test_errors(void **state)
{
    (void)state;
    char c;
    assert_int_equal(tpc_recv(0, &c, 1, 0), -EPERM);
    run_main(1, errors_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses), cmocka_unit_test(test_echo),
        cmocka_unit_test(test_datagrams), cmocka_unit_test(test_listen_all),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
