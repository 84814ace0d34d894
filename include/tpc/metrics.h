/* Metrics: every shard's counters, gauges and latency histograms, gathered without stopping any
 * shard, as Prometheus text or a plain table.
 *
 * Each shard keeps them as it runs and publishes them where another thread may read them: the
 * counters of tpc_shard_stats at least every 64 loop iterations and whenever it goes to sleep,
 * the histograms as they change. So a report costs the shards nothing, and a stalled shard
 * still shows (with its counters as they were when it stalled).
 *
 * The histograms, per shard, in nanoseconds, in power-of-two buckets (1 us to 17 s):
 *   task run time          one task in 64, from the loop's view (fibers that hand over to
 *                          each other directly count as one)
 *   loop iteration         one loop iteration's work, its sleep excluded
 *   I/O latency by class   each operation a fiber waits for (read, write, recv, send, accept,
 *                          connect, sync, poll, other), from the run phase that submitted it
 *                          to the run phase that resumed the fiber
 *   call round trip        tpc_call_on to another shard, from the call to its return
 * Gauges: live fibers, I/O operations in flight, multishot operations, messages in a shard's
 * incoming rings not yet run, pooled stacks, the blocking pool's queue and helpers. */
#ifndef TPC_METRICS_H
#define TPC_METRICS_H

#include <stddef.h>
#include <sys/types.h>
#include "common.h"

/* Formats (the `format` arguments below). */
enum {
    TPC_METRICS_PROMETHEUS = 0, /* Prometheus text exposition format 0.0.4, shard="N" labels */
    TPC_METRICS_TABLE = 1,      /* a plain table: one row per metric, a column per shard */
};

/* Formats the metrics of the calling shard's runtime into buf (at most cap bytes, always
 * NUL-terminated when cap > 0) and returns the length the whole text needs, not counting the
 * NUL, as snprintf does: a result >= cap means it was cut short. Does not suspend (callbacks may
 * call it). Returns -EPERM outside a shard, -EINVAL for an unknown format or a NULL buf with
 * cap > 0. */
TPC_EXTERN ssize_t tpc_metrics_format(char *buf, size_t cap, int format);

/* Writes the metrics to fd (a file, pipe or socket), all of them or an error: formats them into
 * memory, then writes as tpc_write_full does. Suspends. Returns 0, -EPERM outside a fiber,
 * -EINVAL, -ENOMEM, or the write's error. */
TPC_EXTERN int tpc_metrics_write(int fd, int format);

#endif
