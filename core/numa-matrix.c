/* The NUMA kit's matrices (include/tpc/numa.h): round trips, one-way streams, and memory
 * latency and bandwidth per shard and node. The caller's fiber runs each cell on the row's shard
 * (in a fiber there, joined: tpc__numa_run_on), one at a time, so a cell has its pair of shards
 * to itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

struct opts {
    unsigned rounds, idle_us, msgs, reads;
    size_t bytes;
};

static int opts_resolve(const tpc_numa_opts *in, struct opts *o)
{
    tpc_numa_opts z = {0};
    if (!in)
        in = &z;
    for (size_t i = 0; i < sizeof(in->reserved) / sizeof(in->reserved[0]); i++)
        if (in->reserved[i])
            return -EINVAL;
    if (in->rtt_rounds > 10000000 || in->idle_us > 10000 || in->stream_msgs > 1000000000 ||
        (in->mem_bytes && in->mem_bytes < 65536) || in->mem_bytes > ((size_t)1 << 36) ||
        in->mem_reads > 1000000000)
        return -EINVAL;
    o->rounds = in->rtt_rounds ? in->rtt_rounds : 2000;
    o->idle_us = in->idle_us ? in->idle_us : 50;
    o->msgs = in->stream_msgs ? in->stream_msgs : 200000;
    o->bytes = in->mem_bytes ? in->mem_bytes : (size_t)64 << 20;
    o->reads = in->mem_reads ? in->mem_reads : 2000000;
    return 0;
}

static int matrix_start(const tpc_numa_opts *in, const void *out, struct opts *o, unsigned *n)
{
    if (!tpc__self || !tpc__self->current)
        return -EPERM;
    if (!out)
        return -EINVAL;
    *n = tpc__self->rt->nshards;
    return opts_resolve(in, o);
}

/* For long computations on a shard that has nothing else to run: tpc_maybe_yield, and once it
 * has yielded let the loop itself run (a lone fiber's yields come straight back to it until the
 * run phase's quota is spent), so the stall detector sees the loop. */
static int breathe(void)
{
    struct tpc__shard *s = tpc__self;
    uint64_t loops = s->n_loops;
    int rc = tpc_maybe_yield();
    if (rc < 0)
        return rc;
    bool due = atomic_load_explicit(&s->watched, memory_order_relaxed)
                   ? atomic_load_explicit(&s->preempt_beat, memory_order_relaxed) == s->n_loops
                   : tpc__clock_ns() - s->slice_start >= s->time_slice;
    while (rc == 0 && due && s->n_loops == loops)
        rc = tpc_yield();
    return rc;
}

/* ---- Round trips ---- */

struct rtt_cell {
    const struct opts *o;
    int to;
    bool busy;
    _Atomic int stop;
    tpc_numa_lat lat;
};

static int noop(void *arg)
{
    (void)arg;
    return 0;
}

static int spinner(void *arg)
{
    struct rtt_cell *c = arg;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed))
        tpc_yield();
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int rtt_here(void *arg)
{
    struct rtt_cell *c = arg;
    uint64_t *t = malloc(c->o->rounds * sizeof(*t));
    tpc_fiber *spin = NULL;
    int rc = t ? 0 : -ENOMEM;
    if (rc == 0 && c->busy && c->to != tpc_shard_id())
        rc = tpc_spawn_on(c->to, NULL, spinner, c, &spin);
    for (unsigned k = 0; rc == 0 && k < c->o->rounds; k++) {
        if (!c->busy) { /* quiet long enough for the target to fall asleep */
            uint64_t t0 = tpc__clock_ns();
            while (tpc__clock_ns() - t0 < (uint64_t)c->o->idle_us * 1000)
                ;
        }
        uint64_t t0 = tpc__clock_ns();
        rc = tpc_call_on(c->to, noop, NULL, NULL);
        t[k] = tpc__clock_ns() - t0;
        if (rc == 0) /* a call to its own shard never comes back to the loop */
            rc = breathe();
    }
    atomic_store_explicit(&c->stop, 1, memory_order_relaxed);
    if (spin)
        tpc_join(spin, NULL);
    if (rc == 0) {
        qsort(t, c->o->rounds, sizeof(*t), cmp_u64);
        c->lat = (tpc_numa_lat){t[c->o->rounds / 2], t[(size_t)c->o->rounds * 99 / 100]};
    }
    free(t);
    return rc;
}

int tpc_numa_rtt(const tpc_numa_opts *opts, bool busy, tpc_numa_lat *out)
{
    struct opts o;
    unsigned n;
    int rc = matrix_start(opts, out, &o, &n);
    for (unsigned i = 0; rc == 0 && i < n; i++)
        for (unsigned j = 0; rc == 0 && j < n; j++) {
            struct rtt_cell c = {.o = &o, .to = (int)j, .busy = busy};
            atomic_init(&c.stop, 0);
            rc = tpc__numa_run_on((int)i, rtt_here, &c);
            out[i * n + j] = c.lat;
        }
    return rc;
}

/* ---- Streams ---- */

/* On the heap: if the sender is cancelled with messages still in the ring, they run later and
 * count into it; a last message behind them frees it then (stream_release). */
struct stream_cell {
    unsigned msgs;
    int to;
    unsigned received;   /* written on the target only */
    _Atomic bool all_in; /* the target has run the last message */
    bool handed;         /* messages may still be in flight: stream_release frees it */
    double rate;
};

static void count(void *arg)
{
    struct stream_cell *c = arg;
    if (++c->received == c->msgs)
        atomic_store_explicit(&c->all_in, true, memory_order_release);
}

static void stream_free(void *arg)
{
    free(arg);
}

/* A fiber of the sender's shard, not cancelled: the message it sends to the target runs after
 * every message the cancelled sender got out, and frees the cell. Only a runtime that stops
 * before it gets out leaves the cell behind. */
static int stream_release(void *arg)
{
    struct stream_cell *c = arg;
    tpc_submit_to(c->to, stream_free, c);
    return 0;
}

static int stream_here(void *arg)
{
    struct stream_cell *c = arg;
    uint64_t t0 = tpc__clock_ns();
    int rc = 0;
    for (unsigned k = 0; rc == 0 && k < c->msgs; k++)
        if ((rc = tpc_submit_to(c->to, count, c)) == 0 && (k & 255) == 255)
            rc = breathe();
    while (rc == 0 && !atomic_load_explicit(&c->all_in, memory_order_acquire))
        rc = tpc_yield(); /* the sender's shard runs what else it has (its own count if j == i) */
    uint64_t t = tpc__clock_ns() - t0;
    c->rate = (double)c->msgs * 1e9 / (double)(t ? t : 1);
    if (rc < 0) {
        c->handed = true;
        if (tpc_spawn(stream_release, c, NULL) < 0)
            fprintf(stderr, "libtpc: tpc_numa_stream: a cell of %zu bytes left behind\n",
                    sizeof(*c));
    }
    return rc;
}

/* One stream from i to j: its rate, or a negative errno. */
static int stream_once(const struct opts *o, unsigned i, unsigned j, double *rate)
{
    struct stream_cell *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->msgs = o->msgs;
    c->to = (int)j;
    atomic_init(&c->all_in, false);
    int rc = tpc__numa_run_on((int)i, stream_here, c);
    if (rc == 0)
        *rate = c->rate;
    if (!c->handed) /* it never ran, or every message was counted: nothing refers to it */
        free(c);
    return rc;
}

/* A stream lasts milliseconds, so one preemption of either thread moves it a lot: the median of
 * STREAM_RUNS. */
#define STREAM_RUNS 3

int tpc_numa_stream(const tpc_numa_opts *opts, double *out)
{
    struct opts o;
    unsigned n;
    int rc = matrix_start(opts, out, &o, &n);
    for (unsigned i = 0; rc == 0 && i < n; i++)
        for (unsigned j = 0; rc == 0 && j < n; j++) {
            double r[STREAM_RUNS];
            for (int k = 0; rc == 0 && k < STREAM_RUNS; k++)
                rc = stream_once(&o, i, j, &r[k]);
            if (rc == 0) {
                double lo = r[0] < r[1] ? r[0] : r[1], hi = r[0] < r[1] ? r[1] : r[0];
                out[i * n + j] = r[2] < lo ? lo : r[2] > hi ? hi : r[2];
            }
        }
    return rc;
}

/* ---- Memory ---- */

#define LINE 64

struct mem_cell {
    const struct opts *o;
    char *buf;
    size_t bytes;
    double lat_ns, gbps;
};

/* Links the buffer's cache lines into one random cycle (Sattolo's shuffle), so that each load
 * depends on the last and the prefetchers cannot guess the next. */
static int chase_build(char *buf, size_t bytes)
{
    size_t lines = bytes / LINE;
    uint32_t *perm = malloc(lines * sizeof(*perm));
    if (!perm)
        return -ENOMEM;
    for (size_t i = 0; i < lines; i++)
        perm[i] = (uint32_t)i;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = lines - 1; i > 0; i--) {
        if ((i & 255) == 0)
            breathe();
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t k = (size_t)(x % i), tmp = perm[i];
        perm[i] = perm[k], perm[k] = (uint32_t)tmp;
    }
    for (size_t i = 0; i < lines; i++) { /* line perm[i] points to line perm[i + 1] */
        *(char **)(buf + (size_t)perm[i] * LINE) = buf + (size_t)perm[(i + 1) % lines] * LINE;
        if ((i & 255) == 255)
            breathe();
    }
    free(perm);
    return 0;
}

static _Atomic uint64_t sink;

static int mem_here(void *arg)
{
    struct mem_cell *c = arg;
    char *p = c->buf;
    uint64_t t0 = tpc__clock_ns();
    int rc = 0;
    for (unsigned k = 0; rc == 0 && k < c->o->reads; k++) {
        p = *(char *volatile *)p;
        if ((k & 255) == 255)
            rc = breathe();
    }
    uint64_t t1 = tpc__clock_ns();
    c->lat_ns = (double)(t1 - t0) / c->o->reads;
    const size_t chunk = (size_t)1 << 20;
    uint64_t sum = (uintptr_t)p;
    for (int pass = 0; rc == 0 && pass < 2; pass++)
        for (size_t off = 0; rc == 0 && off < c->bytes; off += chunk) {
            const uint64_t *w = (const uint64_t *)(c->buf + off);
            size_t nw = (c->bytes - off < chunk ? c->bytes - off : chunk) / sizeof(*w);
            for (size_t i = 0; i < nw; i++)
                sum += w[i];
            rc = breathe();
        }
    uint64_t t2 = tpc__clock_ns();
    c->gbps = 2.0 * (double)c->bytes / (double)(t2 - t1 ? t2 - t1 : 1);
    atomic_store_explicit(&sink, sum, memory_order_relaxed); /* keeps the reads */
    return rc;
}

static int mem_column(const struct opts *o, int node, unsigned n, unsigned nn, unsigned k,
                      tpc_numa_mem *out)
{
    struct tpc_runtime *rt = tpc__self->rt;
    size_t bytes = o->bytes & ~(size_t)(LINE - 1);
    char *buf = rt->topo ? tpc__alloc_on(rt->topo, !rt->topo_fake, bytes, node) : NULL;
    if (!buf)
        return -ENOMEM;
    int rc = chase_build(buf, bytes), found = tpc_mem_node(buf);
    for (unsigned i = 0; rc == 0 && i < n; i++) {
        struct mem_cell c = {.o = o, .buf = buf, .bytes = bytes};
        rc = tpc__numa_run_on((int)i, mem_here, &c);
        out[i * nn + k] = (tpc_numa_mem){node, found, c.lat_ns, c.gbps};
    }
    munmap(buf, bytes);
    return rc;
}

int tpc_numa_memory(const tpc_numa_opts *opts, tpc_numa_mem *out, int max_nodes)
{
    struct opts o;
    unsigned n;
    int rc = matrix_start(opts, out, &o, &n);
    if (rc < 0)
        return rc;
    int nn = tpc_numa_nodes(NULL, 0);
    if (nn <= 0)
        return nn < 0 ? nn : -ENODEV;
    if (max_nodes < nn)
        return -EINVAL;
    int *nodes = malloc((size_t)nn * sizeof(*nodes));
    if (!nodes)
        return -ENOMEM;
    tpc_numa_nodes(nodes, nn);
    for (int k = 0; rc == 0 && k < nn; k++)
        rc = mem_column(&o, nodes[k], n, (unsigned)nn, (unsigned)k, out);
    free(nodes);
    return rc;
}
