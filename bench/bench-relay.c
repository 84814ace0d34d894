/* relay_copy / relay_forward / relay_splice: one direction of a proxied TCP connection moving a
 * bulk transfer three ways: the relay (tpc_relay: a multishot receive into provided 16 KiB
 * buffers and an io_uring send from each, the bytes copied in and out of user memory), forward
 * (tpc_forward: a poll, then recv and send of up to 64 KiB with plain non-blocking system calls
 * through a scratch buffer), and splice (written here, not a libtpc call: a poll, then splice(2)
 * from the socket into a pipe and from the pipe to the other socket, both sockets non-blocking,
 * so pages move without a copy into user memory). A source thread writes `total` bytes in writes
 * of `size` bytes to one loopback connection, the shard moves them to another, a sink thread
 * reads them. The shard runs on CPU 0, the source and the sink on CPU 1. Reports the shard's
 * CPU time per MiB moved (its thread's CPU clock) and the wall-clock rate, for each write size.
 * Usage: bench-relay [MiB per run] */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <tpc.h>
#include "bench.h"

enum { COPY, FORWARD, SPLICE };
static const char *const mode_name[] = {"copy", "forward", "splice"};

struct run {
    int src, in, out, sink; /* src -> in (the shard) -> out (the shard) -> sink */
    size_t size, total;
    int mode;
    uint64_t cpu_ns, wall_ns, moved;
};

static void pin_cpu1(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *source(void *arg)
{
    struct run *r = arg;
    pin_cpu1();
    char *buf = malloc(r->size);
    memset(buf, 'x', r->size);
    for (size_t done = 0; done < r->total;) {
        size_t n = r->total - done < r->size ? r->total - done : r->size;
        ssize_t w = write(r->src, buf, n);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    shutdown(r->src, SHUT_WR);
    free(buf);
    return NULL;
}

static void *sink(void *arg)
{
    struct run *r = arg;
    pin_cpu1();
    shutdown(r->sink, SHUT_WR); /* nothing comes back: the relay's other direction ends */
    static char buf[256 * 1024];
    ssize_t n;
    while ((n = read(r->sink, buf, sizeof(buf))) > 0)
        r->moved += (uint64_t)n;
    return NULL;
}

/* Moves everything from r->in to r->out through a pipe, on the shard: splice(2) never suspends
 * (the sockets are non-blocking), a poll waits for the socket that is not ready. */
static int splice_all(struct run *r)
{
    int p[2];
    if (pipe2(p, O_NONBLOCK) < 0)
        return -1;
    fcntl(r->in, F_SETFL, fcntl(r->in, F_GETFL) | O_NONBLOCK);
    fcntl(r->out, F_SETFL, fcntl(r->out, F_GETFL) | O_NONBLOCK);
    size_t in_pipe = 0;
    bool eof = false;
    while (!eof || in_pipe) {
        if (in_pipe) {
            ssize_t n =
                splice(p[0], NULL, r->out, NULL, in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0)
                in_pipe -= (size_t)n;
            else if (n < 0 && errno == EAGAIN)
                tpc_poll(r->out, POLLOUT);
            else
                break;
            continue;
        }
        ssize_t n = splice(r->in, NULL, p[1], NULL, 64 * 1024, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
            in_pipe = (size_t)n;
        else if (n == 0)
            eof = true;
        else if (errno == EAGAIN)
            tpc_poll(r->in, POLLIN);
        else
            break;
    }
    close(p[0]);
    close(p[1]);
    return 0;
}

static int mover(void *arg)
{
    struct run *r = arg;
    uint64_t c0 = bench_thread_cpu_ns(), t0 = bench_ns();
    if (r->mode == FORWARD) {
        tpc_fwd f;
        tpc_fwd_init(&f, r->in, r->out);
        while (tpc_forward(&f, 64 * 1024) > 0)
            ;
        tpc_fwd_destroy(&f);
    } else if (r->mode == SPLICE) {
        splice_all(r);
    } else {
        tpc_relay(r->in, r->out, NULL, NULL); /* the other direction stays quiet */
    }
    if (r->mode != COPY)
        shutdown(r->out, SHUT_WR);
    r->cpu_ns = bench_thread_cpu_ns() - c0;
    r->wall_ns = bench_ns() - t0;
    return 0;
}

static void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&sa, &len))
        exit(1);
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*a, (struct sockaddr *)&sa, sizeof(sa)) || (*b = accept(l, NULL, NULL)) < 0)
        exit(1);
    close(l);
}

static void run_once(struct run *r)
{
    tcp_pair(&r->src, &r->in);
    tcp_pair(&r->out, &r->sink);
    pthread_t ts, tk;
    pthread_create(&ts, NULL, source, r);
    pthread_create(&tk, NULL, sink, r);
    tpc_config c = {.shards = 1, .cpus = "0"};
    if (tpc_run(&c, mover, r) != 0)
        exit(1);
    pthread_join(ts, NULL);
    pthread_join(tk, NULL);
    close(r->src), close(r->in), close(r->out), close(r->sink);
    if (r->moved != r->total) {
        fprintf(stderr, "bench-relay: moved %llu of %zu bytes\n", (unsigned long long)r->moved,
                r->total);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    size_t mib = (size_t)bench_iters(argc, argv, 256);
    static const size_t sizes[] = {1024, 16 * 1024, 256 * 1024};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int mode = COPY; mode <= SPLICE; mode++) {
            uint64_t best_cpu = UINT64_MAX, wall = 0;
            for (int round = 0; round < 3; round++) { /* the least CPU of three */
                struct run r = {.size = sizes[i], .total = mib << 20, .mode = mode};
                run_once(&r);
                if (r.cpu_ns < best_cpu)
                    best_cpu = r.cpu_ns, wall = r.wall_ns;
            }
            char id[64];
            snprintf(id, sizeof(id), "relay_%s_%zuk", mode_name[mode], sizes[i] / 1024);
            bench_report(id, (double)best_cpu / (double)mib, "ns CPU/MiB",
                         "%zu MiB in %zu-byte writes over loopback TCP, the shard on CPU 0, "
                         "source and sink on CPU 1; %.0f MiB/s; least CPU of 3 runs",
                         mib, sizes[i], (double)mib * 1e9 / (double)wall);
        }
    }
    return 0;
}
