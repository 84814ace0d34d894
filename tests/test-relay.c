/* Relaying both directions of a proxied connection (tpc_relay): every byte both ways at once,
 * the half-close carried across, the idle limit (both ways silent, not one), a peer's reset on
 * either side, the caller's cancel and deadline (prompt, no fiber or descriptor left, counts
 * exact with bytes held), and misuse.
 *
 * The rig: client `cl` -- TCP -- `a` [tpc_relay(a, b)] `b` -- TCP -- `sv` server. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"
#include "io/internal.h"  /* tpc__self->nlive (the shard's live fibers); the fault hooks */
#include "net/internal.h" /* the shard's relay pools */

#define MS (1000 * 1000LL)

static int64_t slow(void)
{
    return getenv("TPC_TEST_SLOW") ? 4 : 1;
}

/* The byte at position i of stream `seed`: any position can be checked on its own. */
static uint8_t pat(uint64_t seed, uint64_t i)
{
    uint64_t z = (seed << 40) + (i >> 3) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (uint8_t)(z >> ((i & 7) * 8));
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV0 0xcbf29ce484222325ull

/* A bound on the case's own waits (spawned fibers are joined under it): a missing event makes
 * a wait fail, and a check with it, instead of hanging the case. */
static void bound(void)
{
    tpc_deadline_set(t_wait_limit_ns());
}

/* A connected TCP pair over loopback: *c the connecting end, *s the accepted one. */
static void tcp_pair(int *c, int *s)
{
    tpc_addr any, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &any), 0);
    int lfd = tpc_listen(&any, 0, 0);
    CHECK(lfd >= 0);
    CHECK_EQ(tpc_sock_local(lfd, &at), 0);
    *c = tpc_connect(&at);
    *s = tpc_accept(lfd, NULL);
    CHECK(*c >= 0 && *s >= 0);
    tpc_close(lfd);
}

struct rig {
    int cl, a, b, sv;
};

static void rig_open(struct rig *r)
{
    tcp_pair(&r->cl, &r->a);
    tcp_pair(&r->b, &r->sv);
}

static void rig_close(struct rig *r)
{
    close(r->cl);
    close(r->a);
    close(r->b);
    close(r->sv);
}

/* A zero linger: close sends RST. */
static void reset_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

/* tpc_relay in a fiber of its own, for cases where the main fiber plays the peers. */
struct run {
    int a, b;
    const tpc_relay_opts *opts;
    int64_t deadline_ns; /* > 0: the relaying fiber's deadline */
    tpc_relay_stats st;
    int rc;
    bool done;
    int64_t t_end;     /* t_now_ns() when tpc_relay returned */
    uint64_t deadline; /* tpc_deadline_get() before and after */
    uint64_t deadline_after;
    int sleep_after; /* tpc_sleep(0) afterwards: the caller's waits work as before */
};

static int relay_fiber(void *arg)
{
    struct run *x = arg;
    if (x->deadline_ns)
        tpc_deadline_set(x->deadline_ns);
    x->deadline = tpc_deadline_get();
    x->rc = tpc_relay(x->a, x->b, x->opts, &x->st);
    x->t_end = t_now_ns();
    x->deadline_after = tpc_deadline_get();
    if (x->deadline_ns)
        tpc_deadline_clear();
    x->sleep_after = tpc_sleep(0);
    x->done = true;
    return 0;
}

/* ---- Every byte, both ways at once ---- */

struct stream {
    int fd;
    uint64_t seed, total;
    uint64_t count, hash;
    bool bad; /* a byte not where the pattern puts it */
};

/* Sends `total` bytes of the pattern, then shuts the socket down for writing. */
static int writer(void *arg)
{
    struct stream *w = arg;
    enum { CH = 64 * 1024 };
    uint8_t *buf = malloc(CH);
    w->hash = FNV0;
    while (w->count < w->total) {
        size_t n = w->total - w->count < CH ? (size_t)(w->total - w->count) : CH;
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(w->seed, w->count + i);
        w->hash = fnv(w->hash, buf, n);
        size_t off = 0;
        while (off < n) {
            ssize_t m = tpc_send(w->fd, buf + off, n - off, 0);
            CHECK(m > 0);
            if (m <= 0) {
                free(buf);
                return 1;
            }
            off += (size_t)m;
        }
        w->count += n;
    }
    free(buf);
    CHECK_EQ(tpc_sock_shutdown(w->fd, SHUT_WR), 0);
    return 0;
}

/* Receives until end of stream, checking each byte's place in the pattern. */
static int reader(void *arg)
{
    struct stream *r = arg;
    enum { CH = 64 * 1024 };
    uint8_t *buf = malloc(CH);
    r->hash = FNV0;
    ssize_t n;
    while ((n = tpc_recv(r->fd, buf, CH, 0)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pat(r->seed, r->count + (uint64_t)i))
                r->bad = true;
        r->hash = fnv(r->hash, buf, (size_t)n);
        r->count += (uint64_t)n;
    }
    CHECK_EQ(n, 0);
    free(buf);
    return 0;
}

static int both_ways_main(void *arg)
{
    (void)arg;
    bound();
    uint64_t total = (under_valgrind() ? 4 : 32) << 20;
    int fds = count_fds();
    struct rig r;
    rig_open(&r);
    struct stream up_w = {.fd = r.cl, .seed = 1, .total = total};
    struct stream up_r = {.fd = r.sv, .seed = 1};
    struct stream down_w = {.fd = r.sv, .seed = 2, .total = total};
    struct stream down_r = {.fd = r.cl, .seed = 2};
    tpc_fiber *f[4] = {0};
    CHECK_EQ(tpc_spawn(writer, &up_w, &f[0]), 0);
    CHECK_EQ(tpc_spawn(reader, &up_r, &f[1]), 0);
    CHECK_EQ(tpc_spawn(writer, &down_w, &f[2]), 0);
    CHECK_EQ(tpc_spawn(reader, &down_r, &f[3]), 0);
    tpc_relay_stats st;
    CHECK_EQ(tpc_relay(r.a, r.b, NULL, &st), 0); /* in the main fiber itself */
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    CHECK_EQ(st.a_to_b, total);
    CHECK_EQ(st.b_to_a, total);
    CHECK_EQ(st.a_to_b_unsent, 0);
    CHECK_EQ(st.b_to_a_unsent, 0);
    CHECK_EQ(st.a_err, 0);
    CHECK_EQ(st.b_err, 0);
    CHECK_EQ(up_r.count, total);
    CHECK_EQ(down_r.count, total);
    CHECK(!up_r.bad && !down_r.bad);
    CHECK(up_r.hash == up_w.hash);
    CHECK(down_r.hash == down_w.hash);
    rig_close(&r);
    CHECK_EQ(count_fds(), fds); /* the relay closed nothing and opened nothing of its own */
    return 0;
}

static void test_relay_both_ways(void **state)
{
    (void)state;
    run_main(1, both_ways_main, NULL);
}

/* ---- Half-close ---- */

/* The client sends a request and shuts down its side; the server sees the end of the request
 * (the relay carried it across) while the way back is still open, then answers with 1 MiB and
 * shuts down; the client gets it all and its end; the relay ends with 0. */
static int half_close_main(void *arg)
{
    (void)arg;
    bound();
    enum { ANSWER = 1 << 20 };
    struct rig r;
    rig_open(&r);
    struct run x = {.a = r.a, .b = r.b};
    tpc_fiber *rf = NULL;
    CHECK_EQ(tpc_spawn(relay_fiber, &x, &rf), 0);
    CHECK_EQ(tpc_send(r.cl, "request", 7, 0), 7);
    CHECK_EQ(tpc_sock_shutdown(r.cl, SHUT_WR), 0);
    char req[16];
    size_t got = 0;
    ssize_t n;
    while ((n = tpc_recv(r.sv, req + got, sizeof(req) - got, 0)) > 0)
        got += (size_t)n;
    CHECK_EQ(n, 0); /* the end of the request, carried across */
    CHECK_EQ(got, 7);
    CHECK(!memcmp(req, "request", 7));
    CHECK(!x.done);
    struct stream w = {.fd = r.sv, .seed = 3, .total = ANSWER};
    struct stream rd = {.fd = r.cl, .seed = 3};
    tpc_fiber *wf = NULL;
    CHECK_EQ(tpc_spawn(writer, &w, &wf), 0);
    reader(&rd); /* to the client's end of stream */
    CHECK_EQ(tpc_join(wf, NULL), 0);
    CHECK_EQ(tpc_join(rf, NULL), 0);
    CHECK_EQ(x.rc, 0);
    CHECK_EQ(rd.count, ANSWER);
    CHECK(!rd.bad);
    CHECK_EQ(x.st.a_to_b, 7);
    CHECK_EQ(x.st.b_to_a, ANSWER);
    CHECK_EQ(x.st.a_err, 0);
    CHECK_EQ(x.st.b_err, 0);
    rig_close(&r);
    return 0;
}

static void test_relay_half_close(void **state)
{
    (void)state;
    run_main(1, half_close_main, NULL);
}

/* ---- Idle ---- */

/* The server trickles a byte every idle/8 for twice the idle limit while the client sends
 * nothing: one direction silent all along is not idle. Once the trickle stops, the relay ends
 * with -ETIMEDOUT, not before the limit has passed since the last byte, and leaves its caller's
 * deadline and waits as they were and both sockets open. */
static int idle_main(void *arg)
{
    (void)arg;
    bound();
    int64_t idle = 600 * MS * slow(); /* a trickle every 75 ms holds on a busy machine too */
    struct rig r;
    rig_open(&r);
    tpc_relay_opts o = {.idle_ns = idle};
    struct run x = {.a = r.a, .b = r.b, .opts = &o};
    tpc_fiber *rf = NULL;
    CHECK_EQ(tpc_spawn(relay_fiber, &x, &rf), 0);
    int64_t t_last = 0;
    for (int i = 0; i < 16 && !x.done; i++) {
        CHECK_EQ(tpc_sleep(idle / 8), 0); /* the workload: a trickle */
        t_last = t_now_ns();
        char c = (char)i, back;
        CHECK_EQ(tpc_send(r.sv, &c, 1, 0), 1);
        CHECK_EQ(tpc_recv(r.cl, &back, 1, 0), 1);
        CHECK_EQ(back, c);
    }
    CHECK(!x.done); /* 2 x idle of one-way traffic: not idle */
    CHECK_EQ(tpc_join(rf, NULL), 0);
    CHECK_EQ(x.rc, -ETIMEDOUT);
    int64_t quiet = x.t_end - t_last;
    CHECK(quiet >= idle - 2 * MS); /* never before the limit (the slack: clock reads) */
    CHECK(quiet <= idle + 1000 * MS * slow());
    CHECK_EQ(x.st.b_to_a, 16);
    CHECK_EQ(x.st.a_to_b, 0);
    CHECK_EQ(x.st.a_to_b_unsent + x.st.b_to_a_unsent, 0);
    CHECK_EQ(x.st.a_err, 0);
    CHECK_EQ(x.st.b_err, 0);
    CHECK_EQ(x.deadline_after, 0); /* the caller's (none) is back */
    CHECK_EQ(x.sleep_after, 0);
    /* The sockets are the caller's, open and readable as before. */
    CHECK_EQ(tpc_send(r.cl, "x", 1, 0), 1);
    char c;
    CHECK_EQ(tpc_recv(r.a, &c, 1, 0), 1);
    rig_close(&r);
    return 0;
}

static void test_relay_idle_both_ways(void **state)
{
    (void)state;
    run_main(1, idle_main, NULL);
}

/* The client has shut down its side (its direction has ended), the server says nothing: the
 * idle limit ends the direction that is left while the caller waits for it. */
static int idle_half_closed_main(void *arg)
{
    (void)arg;
    bound();
    struct rig r;
    rig_open(&r);
    CHECK_EQ(tpc_sock_shutdown(r.cl, SHUT_WR), 0);
    /* Long enough for the end of stream to cross first on a loaded machine (20 ms once was not,
     * under ASan with other suites running beside) */
    tpc_relay_opts o = {.idle_ns = 100 * MS * slow()};
    tpc_relay_stats st;
    uint64_t deadline = tpc_deadline_get();
    int live = (int)tpc__self->nlive;
    CHECK_EQ(tpc_relay(r.a, r.b, &o, &st), -ETIMEDOUT);
    CHECK_EQ((int)tpc__self->nlive, live);
    char c;
    CHECK_EQ(tpc_recv(r.sv, &c, 1, 0), 0); /* the half-close went across */
    CHECK_EQ(st.a_to_b + st.b_to_a, 0);
    CHECK_EQ(tpc_deadline_get(), deadline); /* the caller's, as it was */
    rig_close(&r);
    return 0;
}

static void test_relay_idle_half_closed(void **state)
{
    (void)state;
    run_main(1, idle_half_closed_main, NULL);
}

/* ---- A peer's reset ends both directions ---- */

/* Some bytes each way, then one peer resets its connection: the relay ends with -ECONNRESET
 * attributed to that side, the counts exact. server: the reset reaches the fiber the relay
 * started (b to a), which stops the caller's direction; client: the caller's direction sees
 * it and stops the other. */
static void reset_case(bool server)
{
    bound();
    struct rig r;
    rig_open(&r);
    struct run x = {.a = r.a, .b = r.b};
    tpc_fiber *rf = NULL;
    CHECK_EQ(tpc_spawn(relay_fiber, &x, &rf), 0);
    char buf[1000];
    memset(buf, 'u', sizeof(buf));
    CHECK_EQ(tpc_send(r.cl, buf, 1000, 0), 1000);
    size_t got = 0;
    ssize_t n;
    while (got < 1000 && (n = tpc_recv(r.sv, buf, sizeof(buf), 0)) > 0)
        got += (size_t)n;
    CHECK_EQ(got, 1000);
    CHECK_EQ(tpc_send(r.sv, buf, 500, 0), 500);
    for (got = 0; got < 500 && (n = tpc_recv(r.cl, buf, sizeof(buf), 0)) > 0;)
        got += (size_t)n;
    CHECK_EQ(got, 500);
    CHECK(!x.done);
    int64_t t0 = t_now_ns();
    reset_close(server ? r.sv : r.cl);
    WAIT_UNTIL(x.done);
    CHECK(x.t_end - t0 < 1000 * MS * slow());
    CHECK_EQ(tpc_join(rf, NULL), 0);
    CHECK_EQ(x.rc, -ECONNRESET);
    CHECK_EQ(server ? x.st.b_err : x.st.a_err, -ECONNRESET);
    CHECK_EQ(server ? x.st.a_err : x.st.b_err, 0);
    CHECK_EQ(x.st.a_to_b, 1000);
    CHECK_EQ(x.st.b_to_a, 500);
    CHECK_EQ(x.st.a_to_b_unsent + x.st.b_to_a_unsent, 0);
    CHECK_EQ(x.sleep_after, 0);
    close(server ? r.cl : r.sv);
    close(r.a);
    close(r.b);
}

static int reset_server_main(void *arg)
{
    (void)arg;
    reset_case(true);
    return 0;
}

static int reset_client_main(void *arg)
{
    (void)arg;
    reset_case(false);
    return 0;
}

static void test_relay_server_reset(void **state)
{
    (void)state;
    run_main(1, reset_server_main, NULL);
}

static void test_relay_client_reset(void **state)
{
    (void)state;
    run_main(1, reset_client_main, NULL);
}

/* ---- Cancelling the caller ---- */

/* Reads what is there now from fd (non-blocking), checking it against stream `seed` from
 * position *pos on. */
static void drain(int fd, uint64_t seed, uint64_t *pos, bool *bad)
{
    uint8_t buf[16384];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pat(seed, *pos + (uint64_t)i))
                *bad = true;
        *pos += (uint64_t)n;
    }
}

/* The client floods, the server reads nothing: the relay stalls holding bytes. Cancelling it
 * returns promptly, leaves no fiber behind, and the counts are exact: the server can read
 * exactly a_to_b bytes, a_to_b_unsent were dropped, and the rest of what the client sent is
 * still in a, in order; what it held is at most two chunks. Unix socket pairs: a send goes straight
 * into the peer's queue, with no window or acknowledgement timers, so once nothing goes in for a
 * few loop turns in which the relay could have run, the stall is for good. */
static int cancel_main(void *arg)
{
    (void)arg;
    bound();
    int fds = count_fds();
    int live = (int)tpc__self->nlive;
    struct rig r;
    int p[2], q[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, q), 0);
    r = (struct rig){.cl = p[0], .a = p[1], .b = q[0], .sv = q[1]};
    CHECK_EQ(tpc_sock_buffers(r.cl, 16384, 0), 0);
    CHECK_EQ(tpc_sock_buffers(r.b, 16384, 0), 0);
    tpc_relay_opts o = {.chunk = 4096};
    struct run x = {.a = r.a, .b = r.b, .opts = &o};
    tpc_fiber *rf = NULL;
    CHECK_EQ(tpc_spawn(relay_fiber, &x, &rf), 0);
    uint8_t buf[16384];
    uint64_t sent = 0;
    /* Until nothing more goes in for 20 rounds in which the relay could have run. */
    for (int stuck = 0; stuck < 20 && !tpc_cancelled();) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = pat(4, sent + i);
        ssize_t n = send(r.cl, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            sent += (uint64_t)n;
            stuck = 0;
        } else {
            CHECK(errno == EAGAIN);
            stuck++;
            loop_turns(2);
        }
    }
    CHECK_EQ((int)tpc__self->nlive, live + 1); /* the relaying fiber: the relay has none */
    CHECK(!x.done);
    int64_t t0 = t_now_ns();
    CHECK_EQ(tpc_cancel(rf), 0);
    CHECK_EQ(tpc_join(rf, NULL), 0);
    CHECK(t_now_ns() - t0 < 1000 * MS * slow());
    CHECK_EQ((int)tpc__self->nlive, live); /* nothing of the relay is left */
    CHECK_EQ(x.rc, -ECANCELED);
    CHECK_EQ(x.st.a_err, 0);
    CHECK_EQ(x.st.b_err, 0);
    CHECK(x.st.a_to_b > 0);
    CHECK(x.st.a_to_b_unsent > 0);         /* it held bytes when it stopped: dropped, and counted */
    CHECK(x.st.a_to_b_unsent <= 2 * 4096); /* at most two chunks */
    CHECK_EQ(x.st.b_to_a + x.st.b_to_a_unsent, 0);
    CHECK_EQ(x.sleep_after, -ECANCELED); /* the caller stays cancelled */
    /* Exactly a_to_b bytes reached the server, in order. */
    uint64_t at_server = 0;
    bool bad = false;
    WAIT_UNTIL((drain(r.sv, 4, &at_server, &bad), at_server >= x.st.a_to_b));
    loop_turns(4);
    drain(r.sv, 4, &at_server, &bad);
    CHECK_EQ(at_server, x.st.a_to_b);
    /* The rest of what the client sent waits in a, from where the dropped bytes end. */
    uint64_t in_a = x.st.a_to_b + x.st.a_to_b_unsent;
    CHECK(in_a <= sent);
    WAIT_UNTIL((drain(r.a, 4, &in_a, &bad), in_a >= sent));
    CHECK_EQ(in_a, sent);
    CHECK(!bad);
    rig_close(&r);
    CHECK_EQ(count_fds(), fds);
    return 0;
}

static void test_relay_cancel_exact(void **state)
{
    (void)state;
    run_main(1, cancel_main, NULL);
}

/* The client's direction has ended (it shut down), the server's stays open: the caller waits for
 * the fiber it started. Cancelling the caller then cancels that fiber and still waits for it. */
static int cancel_waiting_main(void *arg)
{
    (void)arg;
    bound();
    int live = (int)tpc__self->nlive;
    struct rig r;
    rig_open(&r);
    struct run x = {.a = r.a, .b = r.b};
    tpc_fiber *rf = NULL;
    CHECK_EQ(tpc_spawn(relay_fiber, &x, &rf), 0);
    CHECK_EQ(tpc_sock_shutdown(r.cl, SHUT_WR), 0);
    char c;
    CHECK_EQ(tpc_recv(r.sv, &c, 1, 0), 0); /* the caller's direction has ended */
    CHECK_EQ((int)tpc__self->nlive, live + 1);
    CHECK_EQ(tpc_cancel(rf), 0);
    CHECK_EQ(tpc_join(rf, NULL), 0);
    CHECK_EQ(x.rc, -ECANCELED);
    CHECK_EQ((int)tpc__self->nlive, live);
    rig_close(&r);
    return 0;
}

static void test_relay_cancel_while_joining(void **state)
{
    (void)state;
    run_main(1, cancel_waiting_main, NULL);
}

/* The caller's deadline ends the relay with -ETIMEDOUT and stays the caller's. */
static int deadline_main(void *arg)
{
    (void)arg;
    struct rig r;
    rig_open(&r);
    struct run x = {.a = r.a, .b = r.b, .deadline_ns = 20 * MS};
    tpc_fiber *rf = NULL;
    CHECK_EQ(tpc_spawn(relay_fiber, &x, &rf), 0);
    CHECK_EQ(tpc_join(rf, NULL), 0);
    CHECK_EQ(x.rc, -ETIMEDOUT);
    CHECK(x.deadline != 0);
    CHECK_EQ(x.deadline_after, x.deadline);
    CHECK_EQ(x.sleep_after, 0);
    rig_close(&r);
    return 0;
}

static void test_relay_caller_deadline(void **state)
{
    (void)state;
    run_main(1, deadline_main, NULL);
}

/* ---- In a server ---- */

/* A proxy as a connection handler of tpc_server_start: tpc_server_stop cancels the handler in
 * the middle of its relay, and returns once the relay and its fiber have ended. */
struct proxy {
    tpc_addr up;
    int rc;
    tpc_relay_stats st;
};

static int proxy_conn(int client, void *arg)
{
    struct proxy *p = arg;
    int upstream = tpc_connect(&p->up);
    CHECK(upstream >= 0);
    p->rc = tpc_relay(client, upstream, NULL, &p->st);
    tpc_close(upstream);
    return 0;
}

static int server_main(void *arg)
{
    (void)arg;
    bound();
    int fds = count_fds();
    tpc_addr any, at;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &any), 0);
    int lfd = tpc_listen(&any, 0, 0);
    struct proxy p = {.rc = 1};
    CHECK_EQ(tpc_sock_local(lfd, &p.up), 0);
    tpc_server *srv = loopback_server(proxy_conn, &p, &at);
    int cl = tpc_connect(&at);
    int sv = tpc_accept(lfd, NULL);
    CHECK(cl >= 0 && sv >= 0);
    char buf[8];
    CHECK_EQ(tpc_send(cl, "ping", 4, 0), 4);
    CHECK_EQ(tpc_recv(sv, buf, sizeof(buf), 0), 4);
    CHECK_EQ(tpc_send(sv, "pong", 4, 0), 4);
    CHECK_EQ(tpc_recv(cl, buf, sizeof(buf), 0), 4);
    tpc_deadline_clear(); /* no grace period: the handler is cancelled at once */
    CHECK_EQ(tpc_server_stop(srv), 0);
    bound();
    CHECK_EQ(p.rc, -ECANCELED);
    CHECK_EQ(p.st.a_to_b, 4);
    CHECK_EQ(p.st.b_to_a, 4);
    CHECK_EQ(tpc_recv(cl, buf, sizeof(buf), 0), 0); /* the server closed its end */
    CHECK_EQ(tpc_recv(sv, buf, sizeof(buf), 0), 0); /* and the handler the upstream */
    close(cl);
    close(sv);
    close(lfd);
    CHECK_EQ(count_fds(), fds);
    return 0;
}

static void test_relay_in_server_stop(void **state)
{
    (void)state;
    run_main(1, server_main, NULL);
}

/* ---- Faults (built with -Dfault_injection=true) ---- */

#ifdef TPC_FAULT_INJECTION
static int faults_main(void *arg)
{
    (void)arg;
    bound();
    int live = (int)tpc__self->nlive;
    struct rig r;
    rig_open(&r);
    tpc_relay_stats st;
    /* The first send (to b) fails: b's error, the other way stopped, nothing delivered. */
    CHECK_EQ(tpc_send(r.cl, "x", 1, 0), 1);
    tpc__fault_set(IORING_OP_SEND, ECONNRESET, 0, 1);
    CHECK_EQ(tpc_relay(r.a, r.b, NULL, &st), -ECONNRESET);
    CHECK_EQ(st.b_err, -ECONNRESET);
    CHECK_EQ(st.a_err, 0);
    CHECK_EQ(st.a_to_b, 0);
    CHECK_EQ(st.a_to_b_unsent, 1); /* read from a, dropped, and counted */
    CHECK_EQ((int)tpc__self->nlive, live);
    /* No free SQE, again and again: the directions let the loop run and lose nothing. */
    CHECK_EQ(tpc_send(r.cl, "request", 7, 0), 7);
    CHECK_EQ(tpc_sock_shutdown(r.cl, SHUT_WR), 0);
    CHECK_EQ(tpc_send(r.sv, "answer", 6, 0), 6);
    CHECK_EQ(tpc_sock_shutdown(r.sv, SHUT_WR), 0);
    tpc__fault_sqe(0, 20);
    CHECK_EQ(tpc_relay(r.a, r.b, NULL, &st), 0);
    tpc__fault_sqe(0, 0);
    CHECK_EQ(st.a_to_b, 7);
    CHECK_EQ(st.b_to_a, 6);
    char buf[16];
    CHECK_EQ(recv(r.sv, buf, sizeof(buf), MSG_DONTWAIT), 7);
    CHECK_EQ(recv(r.cl, buf, sizeof(buf), MSG_DONTWAIT), 6);
    rig_close(&r);
    /* Sends the kernel gave up on (-EAGAIN: io_uring caps a partial send's retries): sent
     * again once the destination has room; the relay goes on and loses nothing. */
    rig_open(&r);
    CHECK_EQ(tpc_send(r.cl, "again", 5, 0), 5);
    CHECK_EQ(tpc_sock_shutdown(r.cl, SHUT_WR), 0);
    CHECK_EQ(tpc_sock_shutdown(r.sv, SHUT_WR), 0);
    tpc__fault_set(IORING_OP_SEND, EAGAIN, 0, 2);
    CHECK_EQ(tpc_relay(r.a, r.b, NULL, &st), 0);
    CHECK_EQ(st.a_to_b, 5);
    CHECK_EQ(st.b_err, 0);
    CHECK_EQ(recv(r.sv, buf, sizeof(buf), MSG_DONTWAIT), 5);
    CHECK(!memcmp(buf, "again", 5));
    rig_close(&r);
    return 0;
}
#endif

static void test_relay_faults(void **state)
{
    (void)state;
#ifdef TPC_FAULT_INJECTION
    run_main(1, faults_main, NULL);
#else
    SKIP_IF(true, "fault injection is not built in (meson -Dfault_injection=true)");
#endif
}

/* ---- In the background: tpc_relay_start ---- */

struct bg {
    int calls, rc;
    tpc_relay_stats st;
    int a, b; /* closed by done */
};

static void bg_done(tpc_relay_handle *h, int rc, const tpc_relay_stats *st, void *arg)
{
    (void)h;
    struct bg *g = arg;
    g->calls++;
    g->rc = rc;
    g->st = *st;
    close(g->a);
    close(g->b);
}

/* Both ways at once with no fiber of the relay's: exact counts, the half-closes carried across,
 * done runs once and owns the sockets (it closes them). */
static int bg_both_ways_main(void *arg)
{
    (void)arg;
    bound();
    uint64_t total = (under_valgrind() ? 2 : 16) << 20;
    int fds = count_fds();
    int live = (int)tpc__self->nlive;
    struct rig r;
    rig_open(&r);
    struct bg g = {.a = r.a, .b = r.b};
    tpc_relay_handle *h = NULL;
    CHECK_EQ(tpc_relay_start(r.a, r.b, NULL, bg_done, &g, &h), 0);
    CHECK(h != NULL);
    CHECK_EQ((int)tpc__self->nlive, live); /* no fiber */
    struct stream up_w = {.fd = r.cl, .seed = 5, .total = total};
    struct stream up_r = {.fd = r.sv, .seed = 5};
    struct stream down_w = {.fd = r.sv, .seed = 6, .total = total};
    struct stream down_r = {.fd = r.cl, .seed = 6};
    tpc_fiber *f[4] = {0};
    CHECK_EQ(tpc_spawn(writer, &up_w, &f[0]), 0);
    CHECK_EQ(tpc_spawn(reader, &up_r, &f[1]), 0);
    CHECK_EQ(tpc_spawn(writer, &down_w, &f[2]), 0);
    CHECK_EQ(tpc_spawn(reader, &down_r, &f[3]), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    WAIT_UNTIL(g.calls > 0);
    loop_turns(2);
    CHECK_EQ(g.calls, 1);
    CHECK_EQ(g.rc, 0);
    CHECK_EQ(g.st.a_to_b, total);
    CHECK_EQ(g.st.b_to_a, total);
    CHECK_EQ(g.st.a_to_b_unsent + g.st.b_to_a_unsent, 0);
    CHECK(!up_r.bad && !down_r.bad);
    CHECK(up_r.hash == up_w.hash && down_r.hash == down_w.hash);
    close(r.cl);
    close(r.sv);
    CHECK_EQ(count_fds(), fds);
    return 0;
}

static void test_relay_start_both_ways(void **state)
{
    (void)state;
    run_main(1, bg_both_ways_main, NULL);
}

/* Relays whose destinations stopped reading hold their share of the chunks each; once they hold
 * a pool's worth, a new relay still carries bytes at once: it takes its buffers from a pool with
 * room (there was one pool a shard: the new relay waited, with every other relay of the shard,
 * until one of the stuck ones ended). */
static int fill_until_stuck(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static char junk[64 * 1024];
    while (tpc_send(fd, junk, sizeof(junk), 0) > 0)
        ;
    return 0;
}

static int held(struct tpc__net_shard *ns)
{
    int n = 0;
    for (unsigned i = 0; i < ns->nrelay_pools; i++)
        n +=
            (int)tpc__bufpool_count(ns->relay_pools[i]) - tpc_bufpool_available(ns->relay_pools[i]);
    return n;
}

static int stalled_main(void *arg)
{
    (void)arg;
    bound();
    enum { STALLED = 8, CHUNKS = 16 }; /* 8 directions x 2 chunks: a pool of 16's worth */
    unsigned old = tpc__relay_chunks(CHUNKS);
    struct tpc__net_shard *ns = tpc__net_of(tpc__self);
    CHECK_EQ(ns->nrelay_pools, 0);
    struct rig r[STALLED + 1];
    struct bg g[STALLED + 1];
    tpc_relay_handle *h[STALLED + 1];
    tpc_fiber *fill[STALLED];
    for (int i = 0; i < STALLED; i++) {
        rig_open(&r[i]);
        int small = 4096;
        CHECK_EQ(setsockopt(r[i].cl, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        CHECK_EQ(setsockopt(r[i].a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        g[i] = (struct bg){.a = r[i].a, .b = r[i].b};
        CHECK_EQ(tpc_relay_start(r[i].a, r[i].b, NULL, bg_done, &g[i], &h[i]), 0);
        CHECK_EQ(tpc_spawn(fill_until_stuck, (void *)(intptr_t)r[i].sv, &fill[i]), 0);
    }
    WAIT_UNTIL(held(ns) == 2 * STALLED); /* each stuck direction holds its share: a pool's worth */
    rig_open(&r[STALLED]);
    g[STALLED] = (struct bg){.a = r[STALLED].a, .b = r[STALLED].b};
    CHECK_EQ(tpc_relay_start(r[STALLED].a, r[STALLED].b, NULL, bg_done, &g[STALLED], &h[STALLED]),
             0);
    char buf[6];
    CHECK_EQ(tpc_send(r[STALLED].cl, "ping", 4, 0), 4);
    CHECK_EQ(tpc_read_full(r[STALLED].sv, buf, 4, -1), 4);
    CHECK_EQ(tpc_send(r[STALLED].sv, "pong!", 5, 0), 5);
    CHECK_EQ(tpc_read_full(r[STALLED].cl, buf, 5, -1), 5);
    CHECK(!memcmp(buf, "pong!", 5));
    for (int i = 0; i <= STALLED; i++) {
        CHECK_EQ(tpc_relay_stop(h[i]), 0);
        WAIT_UNTIL(g[i].calls == 1);
        close(r[i].cl);
        close(r[i].sv);
    }
    for (int i = 0; i < STALLED; i++) {
        tpc_cancel(fill[i]);
        CHECK_EQ(tpc_join(fill[i], NULL), 0);
    }
    tpc__relay_chunks(old);
    return 0;
}

static void test_relay_pool_taken_by_stuck_directions(void **state)
{
    (void)state;
    run_main(1, stalled_main, NULL);
}

/* Relays already on a pool that other relays' stuck directions hold whole carry on: a direction
 * that finds the pool empty, holding nothing, moves to a pool with room (it waited until a
 * stuck relay ended: a minute of a proxy's idle limit, or for good behind a slow reader). Four
 * streams hold the relays' pool here. */
static int victims_main(void *arg)
{
    (void)arg;
    bound();
    enum { CHUNKS = 16, HOGS = 4, VICTIMS = 4 }; /* a stream's share: a quarter, 4 chunks */
    unsigned old = tpc__relay_chunks(CHUNKS);
    struct tpc__net_shard *ns = tpc__net_of(tpc__self);
    struct rig v[VICTIMS];
    struct bg g[VICTIMS];
    tpc_relay_handle *h[VICTIMS];
    for (int i = 0; i < VICTIMS; i++) {
        rig_open(&v[i]);
        g[i] = (struct bg){.a = v[i].a, .b = v[i].b};
        CHECK_EQ(tpc_relay_start(v[i].a, v[i].b, NULL, bg_done, &g[i], &h[i]), 0);
    }
    CHECK_EQ(ns->nrelay_pools, 1);
    tpc_bufpool *pool = ns->relay_pools[0];
    int ha[HOGS], hb[HOGS];
    tpc_rx *hrx[HOGS];
    tpc_buf hbuf[HOGS][CHUNKS / 4];
    static char junk[CHUNKS / 4 * 16 * 1024];
    for (int i = 0; i < HOGS; i++) {
        tcp_pair(&ha[i], &hb[i]);
        CHECK_EQ(tpc_rx_open(hb[i], pool, &hrx[i]), 0);
        CHECK_EQ(tpc_write_full(ha[i], junk, sizeof(junk), -1), (ssize_t)sizeof(junk));
        size_t got = 0;
        for (int k = 0; k < CHUNKS / 4; k++) {
            ssize_t n = tpc_rx_next(hrx[i], &hbuf[i][k]);
            CHECK(n > 0);
            got += n > 0 ? (size_t)n : 0;
        }
        (void)got;
    }
    CHECK_EQ(tpc_bufpool_available(pool), 0);
    char buf[6];
    for (int i = 0; i < VICTIMS; i++) {
        CHECK_EQ(tpc_send(v[i].cl, "ping", 4, 0), 4);
        CHECK_EQ(tpc_read_full(v[i].sv, buf, 4, -1), 4);
        CHECK_EQ(tpc_send(v[i].sv, "pong!", 5, 0), 5);
        CHECK_EQ(tpc_read_full(v[i].cl, buf, 5, -1), 5);
        CHECK(!memcmp(buf, "pong!", 5));
    }
    CHECK_EQ(tpc_bufpool_available(pool), 0); /* the hogs' still */
    CHECK_EQ(ns->nrelay_pools, 2);
    for (int i = 0; i < VICTIMS; i++) {
        CHECK_EQ(tpc_relay_stop(h[i]), 0);
        WAIT_UNTIL(g[i].calls == 1);
        CHECK_EQ(g[i].st.a_to_b, 4);
        CHECK_EQ(g[i].st.b_to_a, 5);
        close(v[i].cl);
        close(v[i].sv);
    }
    for (int i = 0; i < HOGS; i++) {
        for (int k = 0; k < CHUNKS / 4; k++)
            CHECK_EQ(tpc_buf_release(&hbuf[i][k]), 0);
        CHECK_EQ(tpc_rx_close(hrx[i]), 0);
        close(ha[i]);
        close(hb[i]);
    }
    tpc__relay_chunks(old);
    return 0;
}

static void test_relay_moves_off_a_full_pool(void **state)
{
    (void)state;
    run_main(1, victims_main, NULL);
}

/* A relay started with bytes already waiting (the client sent its request while the proxy
 * connected to the server) and a destination that does not read holds its share of the pool,
 * 2 chunks, from its first receive on (that receive took the pool's default share, up to 16 of
 * 64 chunks, before the relay's own came into force); with a smaller chunk, its bytes. */
static int first_share_main(void *arg)
{
    (void)arg;
    bound();
    unsigned old = tpc__relay_chunks(64);
    struct tpc__net_shard *ns = tpc__net_of(tpc__self);
    static char junk[1 << 20];
    size_t chunks[2] = {0, 1000};
    for (int k = 0; k < 2; k++) {
        struct rig r;
        rig_open(&r);
        int small = 4096;
        CHECK_EQ(setsockopt(r.b, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        CHECK_EQ(setsockopt(r.sv, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        size_t sent = 0;
        ssize_t n;
        while (sent < sizeof(junk) &&
               (n = send(r.cl, junk, sizeof(junk) - sent, MSG_DONTWAIT | MSG_NOSIGNAL)) > 0)
            sent += (size_t)n;
        CHECK(sent >= 64 * 1024);
        struct bg g = {.a = r.a, .b = r.b};
        tpc_relay_opts o = {.chunk = chunks[k]};
        tpc_relay_handle *h;
        CHECK_EQ(tpc_relay_start(r.a, r.b, &o, bg_done, &g, &h), 0);
        WAIT_UNTIL(held(ns) >= 2);
        loop_turns(8);
        CHECK(held(ns) <= 2);
        CHECK_EQ(tpc_relay_stop(h), 0);
        WAIT_UNTIL(g.calls == 1);
        CHECK(g.st.a_to_b > 0);
        if (chunks[k]) /* what was sent went in chunks of at most 1000 bytes: 2 of them held */
            CHECK(g.st.a_to_b_unsent <= 2 * chunks[k]);
        close(r.cl);
        close(r.sv);
    }
    tpc__relay_chunks(old);
    return 0;
}

static void test_relay_first_receive_keeps_share(void **state)
{
    (void)state;
    run_main(1, first_share_main, NULL);
}

/* Many idle relays cost no fiber; tpc_relay_stop ends one (done: -ECANCELED, the other side
 * sees its socket close); the idle limit ends another; misuse is refused. */
static int bg_stop_main(void *arg)
{
    (void)arg;
    bound();
    int fds = count_fds();
    int live = (int)tpc__self->nlive;
    enum { N = 50 };
    struct rig r[N];
    struct bg g[N];
    tpc_relay_handle *h[N];
    for (int i = 0; i < N; i++) {
        rig_open(&r[i]);
        g[i] = (struct bg){.a = r[i].a, .b = r[i].b};
        CHECK_EQ(tpc_relay_start(r[i].a, r[i].b, NULL, bg_done, &g[i], &h[i]), 0);
    }
    CHECK_EQ((int)tpc__self->nlive, live);
    /* Each still carries bytes. */
    char buf[8];
    for (int i = 0; i < N; i++) {
        CHECK_EQ(tpc_send(r[i].cl, "hi", 2, 0), 2);
        CHECK_EQ(tpc_recv(r[i].sv, buf, sizeof(buf), 0), 2);
    }
    for (int i = 0; i < N; i++)
        CHECK_EQ(tpc_relay_stop(h[i]), 0);
    WAIT_UNTIL(g[N - 1].calls > 0);
    for (int i = 0; i < N; i++) {
        WAIT_UNTIL(g[i].calls > 0);
        CHECK_EQ(g[i].calls, 1);
        CHECK_EQ(g[i].rc, -ECANCELED);
        CHECK_EQ(g[i].st.a_to_b, 2);
        CHECK_EQ(tpc_recv(r[i].sv, buf, sizeof(buf), 0), 0); /* done closed b */
        close(r[i].cl);
        close(r[i].sv);
    }
    /* The idle limit, counted from the call: the loop turn's clock (tpc_now) is 20 ms old here,
     * as after a long run of the caller's (under valgrind the limit fired 5 ms early). */
    struct rig q;
    rig_open(&q);
    struct bg gi = {.a = q.a, .b = q.b};
    tpc_relay_opts o = {.idle_ns = 30 * MS};
    uint64_t turn = tpc_now();
    while (t_now_ns() - (int64_t)turn < 20 * MS)
        ;
    CHECK(tpc_now() == turn);
    int64_t t0 = t_now_ns();
    CHECK_EQ(tpc_relay_start(q.a, q.b, &o, bg_done, &gi, NULL), 0);
    WAIT_UNTIL(gi.calls > 0);
    CHECK(t_now_ns() - t0 >= 30 * MS);
    CHECK_EQ(gi.rc, -ETIMEDOUT);
    close(q.cl);
    close(q.sv);
    /* Misuse: nothing started, done never runs. */
    rig_open(&q);
    gi = (struct bg){0};
    CHECK_EQ(tpc_relay_start(q.a, q.b, NULL, NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(tpc_relay_start(q.a, q.a, NULL, bg_done, &gi, NULL), -EINVAL);
    CHECK_EQ(tpc_relay_start(-1, q.b, NULL, bg_done, &gi, NULL), -EBADF);
    o.idle_ns = -1;
    CHECK_EQ(tpc_relay_start(q.a, q.b, &o, bg_done, &gi, NULL), -EINVAL);
    CHECK_EQ(tpc_relay_stop(NULL), -EINVAL);
    loop_turns(2);
    CHECK_EQ(gi.calls, 0);
    rig_close(&q);
    CHECK_EQ(count_fds(), fds);
    return 0;
}

static void test_relay_start_stop(void **state)
{
    (void)state;
    run_main(1, bg_stop_main, NULL);
}

/* A running relay's counts so far: they move with the bytes, while the relay lasts; from
 * another shard or a plain thread the call is refused, and NULL is -EINVAL. */
static tpc_relay_handle *progress_h;
static int progress_elsewhere(void *arg)
{
    (void)arg;
    tpc_relay_stats st;
    return tpc_relay_progress(progress_h, &st);
}

static void *progress_thread(void *arg)
{
    (void)arg;
    tpc_relay_stats st;
    return (void *)(intptr_t)tpc_relay_progress(progress_h, &st);
}

static int progress_main(void *arg)
{
    (void)arg;
    struct rig r;
    rig_open(&r);
    struct bg g = {.a = r.a, .b = r.b};
    CHECK_EQ(tpc_relay_start(r.a, r.b, NULL, bg_done, &g, &progress_h), 0);
    tpc_relay_stats st;
    CHECK_EQ(tpc_relay_progress(progress_h, &st), 0);
    CHECK_EQ(st.a_to_b + st.b_to_a + st.a_to_b_unsent + st.b_to_a_unsent, 0);
    static char buf[100000];
    memset(buf, 'u', sizeof(buf));
    CHECK_EQ(tpc_send(r.cl, buf, 70000, MSG_WAITALL), 70000);
    CHECK_EQ(tpc_recv(r.sv, buf, 70000, MSG_WAITALL), 70000);
    WAIT_UNTIL(tpc_relay_progress(progress_h, &st) == 0 && st.a_to_b == 70000);
    CHECK_EQ(tpc_send(r.sv, buf, 1234, MSG_WAITALL), 1234);
    CHECK_EQ(tpc_recv(r.cl, buf, 1234, MSG_WAITALL), 1234);
    WAIT_UNTIL(tpc_relay_progress(progress_h, &st) == 0 && st.b_to_a == 1234);
    CHECK_EQ(st.a_to_b, 70000);
    CHECK_EQ(st.a_to_b_unsent + st.b_to_a_unsent, 0);
    CHECK_EQ(g.calls, 0); /* still running */
    int res = 0;
    CHECK_EQ(tpc_call_on(1, progress_elsewhere, NULL, &res), 0);
    CHECK_EQ(res, -EXDEV);
    pthread_t t;
    void *tres = NULL;
    CHECK_EQ(pthread_create(&t, NULL, progress_thread, NULL), 0);
    CHECK_EQ(pthread_join(t, &tres), 0);
    CHECK_EQ((int)(intptr_t)tres, -EPERM);
    CHECK_EQ(tpc_relay_progress(NULL, &st), -EINVAL);
    CHECK_EQ(tpc_relay_progress(progress_h, NULL), -EINVAL);
    CHECK_EQ(tpc_relay_stop(progress_h), 0);
    WAIT_UNTIL(g.calls > 0);
    CHECK_EQ(g.rc, -ECANCELED);
    CHECK_EQ(g.st.a_to_b, 70000); /* done's counts agree with the last progress */
    CHECK_EQ(g.st.b_to_a, 1234);
    close(r.cl);
    close(r.sv);
    return 0;
}

static void test_relay_progress(void **state)
{
    (void)state;
    run_main(2, progress_main, NULL);
}

/* A relay still running when the runtime stops: the shard ends it (done: -ESHUTDOWN) and leaves;
 * nothing hangs, nothing leaks. */
static struct bg shut_g;
static struct rig shut_r;
static int bg_shutdown_main(void *arg)
{
    (void)arg;
    rig_open(&shut_r);
    shut_g = (struct bg){.a = shut_r.a, .b = shut_r.b};
    CHECK_EQ(tpc_relay_start(shut_r.a, shut_r.b, NULL, bg_done, &shut_g, NULL), 0);
    return 0; /* the runtime stops with the relay idle */
}

static void test_relay_start_at_shutdown(void **state)
{
    (void)state;
    int fds = count_fds();
    run_main(1, bg_shutdown_main, NULL);
    CHECK_EQ(shut_g.calls, 1);
    CHECK_EQ(shut_g.rc, -ESHUTDOWN);
    close(shut_r.cl);
    close(shut_r.sv);
    CHECK_EQ(count_fds(), fds);
    assert_no_check_failed();
}

/* ---- Misuse ---- */

static int defer_rc;
static void relay_from_callback(void *arg)
{
    (void)arg;
    defer_rc = tpc_relay(0, 1, NULL, NULL);
}

static int cancelled_fiber(void *arg)
{
    struct rig *r = arg;
    tpc_cancel(tpc_self());
    tpc_relay_stats st;
    return tpc_relay(r->a, r->b, NULL, &st);
}

static int misuse_main(void *arg)
{
    (void)arg;
    bound();
    int live = (int)tpc__self->nlive;
    struct rig r;
    rig_open(&r);
    tpc_relay_stats st;
    memset(&st, 0xff, sizeof(st));
    CHECK_EQ(tpc_relay(-1, r.b, NULL, &st), -EBADF);
    CHECK_EQ(st.a_to_b + st.b_to_a + (uint64_t)st.a_err + (uint64_t)st.b_err, 0); /* written */
    CHECK_EQ(tpc_relay(r.a, -1, NULL, &st), -EBADF);
    CHECK_EQ(tpc_relay(r.a, r.a, NULL, &st), -EINVAL);
    tpc_relay_opts o = {.idle_ns = -1};
    CHECK_EQ(tpc_relay(r.a, r.b, &o, &st), -EINVAL);
    /* A descriptor that is not open fails in its direction and ends both. */
    int dead = dup(r.b);
    close(dead);
    CHECK_EQ(tpc_relay(r.a, dead, NULL, &st), -EBADF);
    CHECK_EQ(st.b_err, -EBADF);
    CHECK_EQ(st.a_err, 0);
    CHECK_EQ((int)tpc__self->nlive, live);
    /* A cancelled caller: nothing done. */
    tpc_fiber *f = NULL;
    int res = 0;
    CHECK_EQ(tpc_spawn(cancelled_fiber, &r, &f), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, -ECANCELED);
    /* Not in a fiber. */
    defer_rc = 1;
    CHECK_EQ(tpc_defer(relay_from_callback, NULL), 0);
    WAIT_UNTIL(defer_rc != 1);
    CHECK_EQ(defer_rc, -EPERM);
    rig_close(&r);
    return 0;
}

static void test_relay_misuse(void **state)
{
    (void)state;
    run_main(1, misuse_main, NULL);
    tpc_relay_stats st;
    assert_int_equal(tpc_relay(0, 1, NULL, &st), -EPERM); /* outside any runtime */
    assert_int_equal(st.a_to_b, 0);
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* The first runtime of a process loads the unwinder for the stall detector from its watchdog
 * thread (core/stall.c), which opens a file for a moment while the main fiber may already count
 * descriptors: a runtime before the cases takes that out of their counts. */
static int warm_up(void **state)
{
    (void)state;
    tpc_config c = {.shards = 1};
    return tpc_run(&c, nothing, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_both_ways),
        cmocka_unit_test(test_relay_half_close),
        cmocka_unit_test(test_relay_idle_both_ways),
        cmocka_unit_test(test_relay_idle_half_closed),
        cmocka_unit_test(test_relay_server_reset),
        cmocka_unit_test(test_relay_client_reset),
        cmocka_unit_test(test_relay_cancel_exact),
        cmocka_unit_test(test_relay_cancel_while_joining),
        cmocka_unit_test(test_relay_caller_deadline),
        cmocka_unit_test(test_relay_in_server_stop),
        cmocka_unit_test(test_relay_faults),
        cmocka_unit_test(test_relay_misuse),
        cmocka_unit_test(test_relay_start_both_ways),
        cmocka_unit_test(test_relay_start_stop),
        cmocka_unit_test(test_relay_progress),
        cmocka_unit_test(test_relay_start_at_shutdown),
        cmocka_unit_test(test_relay_pool_taken_by_stuck_directions),
        cmocka_unit_test(test_relay_moves_off_a_full_pool),
        cmocka_unit_test(test_relay_first_receive_keeps_share),
    };
    return cmocka_run_group_tests(tests, warm_up, NULL);
}
