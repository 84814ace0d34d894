/* Metrics (include/tpc/metrics.h): what each shard publishes, and its formatting as Prometheus
 * text or a plain table.
 *
 * A shard writes its histograms as it goes (tpc__hist_add: relaxed load and store of its own
 * words, no read-modify-write), and copies its tpc_shard_stats counters and a few gauges into
 * m.pub every 64 loop iterations and before it sleeps (tpc__metrics_publish). Any thread may
 * read both at any time, so a report stops no shard and shows a stalled one as it stalled. A
 * histogram read while its shard writes may be one sample behind in a bucket or in its sum.
 * tpc_metrics_write, which writes to a descriptor, is the I/O layer's (io/file.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rings.h"
#include "tpc/metrics.h"

void tpc__stats_read(struct tpc__shard *s, tpc_shard_stats *out)
{
    *out = (tpc_shard_stats){
        .tasks = s->n_tasks,
        .switches = s->n_switches,
        .loops = s->n_loops,
        .msgs_in = s->n_msgs_in,
        .msgs_out = s->n_msgs_out,
        .wakeups_sent = s->n_wakes_sent,
        .wakeups = s->n_wakeups,
        .sleep_ns = s->n_sleep_ns,
        .io_submitted = s->n_io_submitted,
        .io_completed = s->n_io_completed,
        .timers = s->n_timers,
        .accept_backoffs = s->n_accept_backoffs,
        .io_enters = s->n_io_enters,
        .stalls = atomic_load_explicit(&s->n_stalls, memory_order_relaxed),
        .backend = s->ep ? TPC_BACKEND_EPOLL : TPC_BACKEND_URING,
        .cq_overflows = s->n_cq_overflows,
        .batched_sleeps = s->n_batched,
        .spins = s->n_spins,
    };
}

/* The counters of tpc_shard_stats, in its order, then the gauges. */
_Static_assert(sizeof(tpc_shard_stats) == (TPC__PUB_FIBERS + 5) * sizeof(uint64_t),
               "tpc_shard_stats: the published counters, then stalls, the backend, "
               "cq_overflows, batched_sleeps and spins");
void tpc__metrics_publish(struct tpc__shard *s)
{
    tpc_shard_stats st;
    tpc__stats_read(s, &st);
    const uint64_t *c = &st.tasks; /* every field is a uint64_t, in TPC__PUB_* order */
    for (unsigned i = 0; i < TPC__PUB_FIBERS; i++)
        atomic_store_explicit(&s->m.pub[i], c[i], memory_order_relaxed);
    const uint64_t g[] = {s->nlive, s->inflight, s->nmultishot, tpc__stacks_pooled(s)};
    for (unsigned i = TPC__PUB_FIBERS; i < TPC__PUB_N; i++)
        atomic_store_explicit(&s->m.pub[i], g[i - TPC__PUB_FIBERS], memory_order_relaxed);
}

unsigned tpc__io_class(unsigned opcode)
{
    switch (opcode) {
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_READ_FIXED:
        return TPC__IOC_READ;
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
    case IORING_OP_WRITE_FIXED:
        return TPC__IOC_WRITE;
    case IORING_OP_RECV:
    case IORING_OP_RECVMSG:
        return TPC__IOC_RECV;
    case IORING_OP_SEND:
    case IORING_OP_SENDMSG:
    case IORING_OP_SEND_ZC:
    case IORING_OP_SENDMSG_ZC:
        return TPC__IOC_SEND;
    case IORING_OP_ACCEPT:
        return TPC__IOC_ACCEPT;
    case IORING_OP_CONNECT:
        return TPC__IOC_CONNECT;
    case IORING_OP_FSYNC:
    case IORING_OP_SYNC_FILE_RANGE:
        return TPC__IOC_SYNC;
    case IORING_OP_POLL_ADD:
        return TPC__IOC_POLL;
    default:
        return TPC__IOC_OTHER;
    }
}

static const char *const io_class_names[TPC__IOC_N] = {
    "read", "write", "recv", "send", "accept", "connect", "sync", "poll", "other",
};

/* The published counters and gauges: name, help, and whether the value is ns (shown in s). */
static const struct {
    const char *name, *help;
    bool counter, ns;
} pubs[TPC__PUB_N] = {
    [TPC__PUB_TASKS] = {"tpc_tasks_total", "Tasks run (fibers resumed and callbacks).", true},
    [TPC__PUB_SWITCHES] = {"tpc_switches_total", "Fiber context switches.", true},
    [TPC__PUB_LOOPS] = {"tpc_loops_total", "Loop iterations.", true},
    [TPC__PUB_MSGS_IN] = {"tpc_messages_in_total",
                          "Messages run that came from other shards and threads.", true},
    [TPC__PUB_MSGS_OUT] = {"tpc_messages_out_total", "Messages sent to other shards.", true},
    [TPC__PUB_WAKES_SENT] = {"tpc_wakeups_sent_total", "Sleeping shards this shard woke.", true},
    [TPC__PUB_WAKEUPS] = {"tpc_wakeups_total", "Times another thread woke this shard.", true},
    [TPC__PUB_SLEEP_NS] = {"tpc_sleep_seconds_total", "Time spent asleep.", true, true},
    [TPC__PUB_IO_SUBMITTED] = {"tpc_io_submitted_total", "io_uring submissions.", true},
    [TPC__PUB_IO_COMPLETED] = {"tpc_io_completed_total", "io_uring completions.", true},
    [TPC__PUB_TIMERS] = {"tpc_timers_total", "Timer callbacks fired.", true},
    [TPC__PUB_ACCEPT_BACKOFFS] = {"tpc_accept_backoffs_total",
                                  "Acceptors that ran out of descriptors or memory and paused.",
                                  true},
    [TPC__PUB_IO_ENTERS] = {"tpc_io_enters_total", "The loop's kernel entries for I/O.", true},
    [TPC__PUB_FIBERS] = {"tpc_fibers", "Fibers that have not returned."},
    [TPC__PUB_INFLIGHT] = {"tpc_io_inflight", "Single-shot I/O operations in flight."},
    [TPC__PUB_MULTISHOT] = {"tpc_io_multishot", "Multishot operations armed."},
    [TPC__PUB_STACKS] = {"tpc_stacks_pooled", "Fiber stacks kept for reuse."},
};

/* Text that grows as snprintf counts: len may pass cap; what fits is in buf. */
struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

/* One histogram, read once (the buckets as one consistent-enough copy). */
struct hist {
    uint64_t n[TPC__HIST_BUCKETS], count, sum;
};

static void hist_read(const struct tpc__hist *h, struct hist *out)
{
    out->count = 0;
    for (unsigned k = 0; k < TPC__HIST_BUCKETS; k++) {
        out->n[k] = atomic_load_explicit(&h->n[k], memory_order_relaxed);
        out->count += out->n[k];
    }
    out->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (unsigned k = 0; k < TPC__HIST_BUCKETS; k++)
        into->n[k] += h->n[k];
    into->count += h->count;
    into->sum += h->sum;
}

/* The upper bound (ns) of the bucket holding quantile q. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count), seen = 0;
    for (unsigned k = 0; k < TPC__HIST_BUCKETS; k++) {
        seen += h->n[k];
        if (seen > want || seen == h->count)
            return k == 0 ? 1 : (uint64_t)1 << k;
    }
    return (uint64_t)1 << (TPC__HIST_BUCKETS - 1);
}

/* The buckets shown: 2^10 ns (about 1 us) to 2^34 ns (17 s), then +Inf. */
#define LE_FIRST 10
#define LE_LAST  34

static void prom_hist(struct out *o, const char *name, const char *labels, const struct hist *h)
{
    uint64_t cum = 0;
    for (unsigned k = 0; k <= LE_LAST; k++) {
        cum += h->n[k];
        if (k >= LE_FIRST)
            put(o, "%s_bucket{%s,le=\"%.9g\"} %llu\n", name, labels,
                (double)((uint64_t)1 << k) / 1e9, (unsigned long long)cum);
    }
    put(o, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)h->count);
    put(o, "%s_sum{%s} %.9f\n", name, labels, (double)h->sum / 1e9);
    put(o, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
}

/* The histograms of a shard, by index: task, loop, call, then io by class. */
#define NHIST (3 + TPC__IOC_N)
static const struct tpc__hist *shard_hist(const struct tpc__shard *s, unsigned i)
{
    return i == 0 ? &s->m.task : i == 1 ? &s->m.loop : i == 2 ? &s->m.call : &s->m.io[i - 3];
}
static const struct {
    const char *name, *help;
} hists[3] = {
    {"tpc_task_run_seconds", "Run time of one task in 64, from the loop's view."},
    {"tpc_loop_iteration_seconds", "A loop iteration's work, its sleep excluded."},
    {"tpc_call_round_trip_seconds", "tpc_call_on to another shard, from call to return."},
};

static uint64_t ring_queued(const struct tpc__shard *s)
{
    uint64_t n = 0;
    for (unsigned j = 0; s->in && j < s->rt->nshards; j++) {
        const struct tpc__ring *r = s->in[j];
        if (r)
            n += (uint32_t)(atomic_load_explicit(&r->tail, memory_order_relaxed) -
                            atomic_load_explicit(&r->head, memory_order_relaxed));
    }
    return n;
}

struct gauge_out {
    struct out *o;
    int format;
};

static void put_gauge(void *p, const char *name, const char *help, uint64_t v)
{
    struct gauge_out *g = p;
    if (g->format == TPC_METRICS_PROMETHEUS)
        put(g->o, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
            (unsigned long long)v);
    else
        put(g->o, "%-28s %llu\n", name, (unsigned long long)v);
}

/* "io_uring", "epoll", or "mixed" when some shards fell back and others did not (each shard's
 * backend is set before the shards start, so any thread may read it). */
static const char *backend_name(struct tpc_runtime *rt)
{
    unsigned epoll = 0;
    for (unsigned i = 0; i < rt->nshards; i++)
        epoll += rt->shards[i]->ep != NULL;
    return epoll == 0 ? "io_uring" : epoll == rt->nshards ? "epoll" : "mixed";
}

static void prometheus(struct out *o, struct tpc_runtime *rt)
{
    unsigned n = rt->nshards;
    put(o, "# HELP tpc_info libtpc's version and I/O backend.\n# TYPE tpc_info gauge\n");
    put(o, "tpc_info{version=\"%s\",backend=\"%s\"} 1\n", tpc_version_string(), backend_name(rt));
    put(o, "# HELP tpc_shards Shards of the runtime.\n# TYPE tpc_shards gauge\ntpc_shards %u\n", n);
    for (unsigned i = 0; i < TPC__PUB_N; i++) {
        put(o, "# HELP %s %s\n# TYPE %s %s\n", pubs[i].name, pubs[i].help, pubs[i].name,
            pubs[i].counter ? "counter" : "gauge");
        for (unsigned j = 0; j < n; j++) {
            uint64_t v = atomic_load_explicit(&rt->shards[j]->m.pub[i], memory_order_relaxed);
            if (pubs[i].ns)
                put(o, "%s{shard=\"%u\"} %.9f\n", pubs[i].name, j, (double)v / 1e9);
            else
                put(o, "%s{shard=\"%u\"} %llu\n", pubs[i].name, j, (unsigned long long)v);
        }
    }
    put(o, "# HELP tpc_stalls_total Times a shard stayed away from its loop past stall_ms.\n"
           "# TYPE tpc_stalls_total counter\n");
    for (unsigned j = 0; j < n; j++)
        put(o, "tpc_stalls_total{shard=\"%u\"} %llu\n", j,
            (unsigned long long)atomic_load_explicit(&rt->shards[j]->n_stalls,
                                                     memory_order_relaxed));
    put(o, "# HELP tpc_ring_queued Messages in the shard's incoming rings, not yet run.\n"
           "# TYPE tpc_ring_queued gauge\n");
    for (unsigned j = 0; j < n; j++)
        put(o, "tpc_ring_queued{shard=\"%u\"} %llu\n", j,
            (unsigned long long)ring_queued(rt->shards[j]));
    char labels[64];
    for (unsigned i = 0; i < 3; i++) {
        put(o, "# HELP %s %s\n# TYPE %s histogram\n", hists[i].name, hists[i].help, hists[i].name);
        for (unsigned j = 0; j < n; j++) {
            struct hist h;
            hist_read(shard_hist(rt->shards[j], i), &h);
            snprintf(labels, sizeof(labels), "shard=\"%u\"", j);
            prom_hist(o, hists[i].name, labels, &h);
        }
    }
    put(o, "# HELP tpc_io_seconds I/O operations a fiber waited for, by class, from the run phase "
           "that submitted to the one that resumed it.\n# TYPE tpc_io_seconds histogram\n");
    for (unsigned c = 0; c < TPC__IOC_N; c++)
        for (unsigned j = 0; j < n; j++) {
            struct hist h;
            hist_read(&rt->shards[j]->m.io[c], &h);
            snprintf(labels, sizeof(labels), "shard=\"%u\",class=\"%s\"", j, io_class_names[c]);
            prom_hist(o, "tpc_io_seconds", labels, &h);
        }
    struct gauge_out g = {o, TPC_METRICS_PROMETHEUS};
    for (unsigned i = 0; i < TPC__LAYERS; i++)
        if (tpc__layers[i] && tpc__layers[i]->gauges)
            tpc__layers[i]->gauges(rt, put_gauge, &g);
}

static void table_row(struct out *o, const char *name, const uint64_t *v, unsigned n, bool total)
{
    put(o, "%-28s", name);
    uint64_t sum = 0;
    for (unsigned j = 0; j < n; j++) {
        put(o, " %14llu", (unsigned long long)v[j]);
        sum += v[j];
    }
    if (total)
        put(o, " %14llu", (unsigned long long)sum);
    put(o, "\n");
}

static void table(struct out *o, struct tpc_runtime *rt)
{
    unsigned n = rt->nshards;
    uint64_t *v = calloc(n, sizeof(*v));
    struct hist *h = calloc((size_t)n + 1, sizeof(*h));
    if (!v || !h) {
        free(v);
        free(h);
        put(o, "(out of memory)\n");
        return;
    }
    put(o, "libtpc %s, %u shards\n%-28s", tpc_version_string(), n, "");
    for (unsigned j = 0; j < n; j++) {
        char col[24];
        snprintf(col, sizeof(col), "shard %u", j);
        put(o, " %14s", col);
    }
    put(o, " %14s\n", "total");
    for (unsigned i = 0; i < TPC__PUB_N; i++) {
        for (unsigned j = 0; j < n; j++)
            v[j] = atomic_load_explicit(&rt->shards[j]->m.pub[i], memory_order_relaxed);
        char name[64]; /* tpc_sleep_seconds_total: sleep_ns */
        int cut = (pubs[i].counter ? 6 : 0) + (pubs[i].ns ? 8 : 0);
        snprintf(name, sizeof(name), "%.*s%s", (int)strlen(pubs[i].name) - 4 - cut,
                 pubs[i].name + 4, pubs[i].ns ? "_ns" : "");
        table_row(o, name, v, n, true);
    }
    for (unsigned j = 0; j < n; j++)
        v[j] = atomic_load_explicit(&rt->shards[j]->n_stalls, memory_order_relaxed);
    table_row(o, "stalls", v, n, true);
    for (unsigned j = 0; j < n; j++)
        v[j] = ring_queued(rt->shards[j]);
    table_row(o, "ring_queued", v, n, true);
    for (unsigned i = 0; i < NHIST; i++) {
        memset(&h[n], 0, sizeof(h[n]));
        for (unsigned j = 0; j < n; j++) {
            hist_read(shard_hist(rt->shards[j], i), &h[j]);
            hist_merge(&h[n], &h[j]);
        }
        if (i >= 3 && !h[n].count)
            continue; /* an I/O class nobody used */
        char name[64];
        if (i < 3)
            snprintf(name, sizeof(name), "%.*s", (int)strlen(hists[i].name) - 12,
                     hists[i].name + 4);
        else
            snprintf(name, sizeof(name), "io_%s", io_class_names[i - 3]);
        static const char *const what[] = {"count", "mean ns", "p50 ns <=", "p99 ns <="};
        for (unsigned w = 0; w < 4; w++) {
            char row[96];
            snprintf(row, sizeof(row), "%s %s", name, what[w]);
            put(o, "%-28s", row);
            for (unsigned j = 0; j <= n; j++) {
                uint64_t x = w == 0   ? h[j].count
                             : w == 1 ? (h[j].count ? h[j].sum / h[j].count : 0)
                             : w == 2 ? hist_quantile(&h[j], 0.5)
                                      : hist_quantile(&h[j], 0.99);
                put(o, " %14llu", (unsigned long long)x);
            }
            put(o, "\n");
        }
    }
    struct gauge_out g = {o, TPC_METRICS_TABLE};
    for (unsigned i = 0; i < TPC__LAYERS; i++)
        if (tpc__layers[i] && tpc__layers[i]->gauges)
            tpc__layers[i]->gauges(rt, put_gauge, &g);
    free(v);
    free(h);
}

ssize_t tpc_metrics_format(char *buf, size_t cap, int format)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if ((format != TPC_METRICS_PROMETHEUS && format != TPC_METRICS_TABLE) || (!buf && cap))
        return -EINVAL;
    struct out o = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    if (format == TPC_METRICS_PROMETHEUS)
        prometheus(&o, s->rt);
    else
        table(&o, s->rt);
    return (ssize_t)o.len;
}
