/* Echo ping-pong load for bench/net.sh: CONNS connections to an echo server, each sending a
 * MSG_BYTES message, waiting for all of it to come back (and checking it), and sending the next.
 *   echo-load ADDR CONNS SECONDS [MSG_BYTES]     ADDR: 127.0.0.1:7000, [::1]:7000; MSG_BYTES: 64
 * One thread, nonblocking sockets with TCP_NODELAY, level-triggered epoll; no libtpc. The first
 * tenth of the time (at most 1 s) is a warm-up that is not counted. Prints three lines as
 * bench/bench.h does:
 *   bench echo_rtt_<conns>     round trips per second, all connections together
 *   bench echo_rtt_<conns>_p50 median round-trip time (send of the first byte to receipt of the
 *   bench echo_rtt_<conns>_p99 last), and its 99th percentile, in ns
 * and on stderr the number of all round trips, warm-up included (for CPU per round trip). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench.h"
#include "netaddr.h"

struct conn {
    int fd;
    bool writing; /* registered for EPOLLOUT: the message did not fit in the socket */
    size_t sent, got;
    uint64_t t0;
};

static size_t msg_bytes = 64;
static char *msg, *echo_buf;
static int ep;

static uint32_t *lat; /* round-trip times in ns, saturated at ~4.3 s */
static size_t nlat, cap_lat;

static void die(const char *what)
{
    fprintf(stderr, "echo-load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void record(uint64_t ns)
{
    if (nlat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
        lat = realloc(lat, cap_lat * sizeof(*lat));
        if (!lat)
            die("realloc");
    }
    lat[nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static void set_writing(struct conn *c, bool writing)
{
    if (c->writing == writing)
        return;
    c->writing = writing;
    struct epoll_event ev = {.events = writing ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Sends what is left of the message; the connection waits for EPOLLOUT if the socket is full. */
static void send_msg(struct conn *c)
{
    while (c->sent < msg_bytes) {
        ssize_t w = send(c->fd, msg + c->sent, msg_bytes - c->sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_writing(c, true);
                return;
            }
            die("send");
        }
        c->sent += (size_t)w;
    }
    set_writing(c, false);
}

static void start(struct conn *c, uint64_t now)
{
    c->sent = c->got = 0;
    c->t0 = now;
    send_msg(c);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int connect_to(const char *addr)
{
    struct addrinfo *ai = bench_addr("echo-load", addr, false);
    if (!ai)
        exit(2);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        fprintf(stderr, "echo-load: cannot connect to %s: %s\n", addr, strerror(errno));
        exit(1);
    }
    freeaddrinfo(ai);
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        die("TCP_NODELAY");
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("O_NONBLOCK");
    return fd;
}

int main(int argc, char **argv)
{
    long conns = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    double seconds = argc > 3 ? strtod(argv[3], NULL) : 0;
    if (argc > 4)
        msg_bytes = (size_t)strtoul(argv[4], NULL, 10);
    if (argc < 4 || argc > 5 || conns < 1 || conns > 100000 || !(seconds > 0) || msg_bytes < 1 ||
        msg_bytes > (1u << 20)) {
        fprintf(stderr,
                "usage: %s ADDR CONNS SECONDS [MSG_BYTES]   (ADDR: 127.0.0.1:7000; "
                "MSG_BYTES: 64, at most 1 MiB)\n",
                argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    msg = malloc(msg_bytes);
    echo_buf = malloc(msg_bytes);
    struct conn *cs = calloc((size_t)conns, sizeof(*cs));
    struct epoll_event *evs = calloc((size_t)conns, sizeof(*evs));
    if (!msg || !echo_buf || !cs || !evs)
        die("malloc");
    uint64_t seed = BENCH_SEED;
    for (size_t i = 0; i < msg_bytes; i++)
        msg[i] = (char)bench_rand(&seed);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    for (long i = 0; i < conns; i++) {
        cs[i].fd = connect_to(argv[1]);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
            die("epoll_ctl");
    }

    double warm_s = seconds / 10 < 1 ? seconds / 10 : 1;
    uint64_t t_start = bench_ns();
    uint64_t t_count = t_start + (uint64_t)(warm_s * 1e9);
    uint64_t t_end = t_count + (uint64_t)(seconds * 1e9);
    for (long i = 0; i < conns; i++)
        start(&cs[i], t_start);

    uint64_t counted = 0, total = 0, now = t_start;
    bool counting = false;
    while (now < t_end) {
        int n = epoll_wait(ep, evs, (int)conns, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        now = bench_ns();
        if (!counting && now >= t_count) {
            counting = true; /* round trips that end from now on count */
            nlat = 0;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->writing) {
                send_msg(c);
                continue;
            }
            ssize_t r = recv(c->fd, echo_buf + c->got, msg_bytes - c->got, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    continue;
                die("recv");
            }
            if (r == 0) {
                fprintf(stderr, "echo-load: the server closed a connection\n");
                return 1;
            }
            if (memcmp(echo_buf + c->got, msg + c->got, (size_t)r)) {
                fprintf(stderr, "echo-load: the echo differs from what was sent\n");
                return 1;
            }
            c->got += (size_t)r;
            if (c->got < msg_bytes)
                continue;
            total++;
            if (counting) {
                record(now - c->t0);
                counted++;
            }
            start(c, now);
        }
    }
    double secs = (double)(now - t_count) / 1e9;
    if (!counted) {
        fprintf(stderr, "echo-load: no round trip completed in %.1f s\n", seconds);
        return 1;
    }
    /* For CPU-per-round-trip figures (bench/net.sh): every round trip, warm-up included. */
    fprintf(stderr, "echo-load: %llu round trips in %.2f s, warm-up included\n",
            (unsigned long long)total, (double)(now - t_start) / 1e9);
    qsort(lat, nlat, sizeof(*lat), cmp_u32);
    char id[64];
    const char *cond = "echo-load, %ld conn%s, %zu-byte messages, ping-pong, %.1f s after %.1f s "
                       "warm-up, %s";
    snprintf(id, sizeof(id), "echo_rtt_%ld", conns);
    bench_report(id, (double)counted / secs, "ops/s", cond, conns, conns == 1 ? "" : "s", msg_bytes,
                 secs, warm_s, argv[1]);
    snprintf(id, sizeof(id), "echo_rtt_%ld_p50", conns);
    bench_report(id, lat[nlat / 2], "ns", cond, conns, conns == 1 ? "" : "s", msg_bytes, secs,
                 warm_s, argv[1]);
    snprintf(id, sizeof(id), "echo_rtt_%ld_p99", conns);
    bench_report(id, lat[nlat * 99 / 100], "ns", cond, conns, conns == 1 ? "" : "s", msg_bytes,
                 secs, warm_s, argv[1]);
    for (long i = 0; i < conns; i++)
        close(cs[i].fd);
    return 0;
}
