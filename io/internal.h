/* The I/O layer's private definitions: its per-shard state (registered buffers, what the
 * kernel's ring can do) and the blocking helper pool it keeps for the whole runtime. Includes
 * core's and the timer layer's. Never installed. */
#ifndef TPC_IO_INTERNAL_H
#define TPC_IO_INTERNAL_H

#include "core/uring.h"
#include "timer/internal.h"

/* Its slot in tpc__layers[] and in shard->layer[]. */
#define TPC__IO_LAYER 1

/* Per shard. */
struct tpc__io_shard {
    struct iovec *fixed; /* registered buffers (io/file.c) */
    unsigned nfixed, fixed_inflight;
    bool has_ftruncate; /* the kernel has IORING_OP_FTRUNCATE (Linux 6.9) */
};

static inline struct tpc__io_shard *tpc__io_of(struct tpc__shard *s)
{
    return s->layer[TPC__IO_LAYER];
}

/* The blocking helper pool (io/blocking.c), kept in rt->layer[TPC__IO_LAYER]. */
struct tpc__pool;
int tpc__pool_init(struct tpc_runtime *rt, unsigned threads, unsigned queue);
void tpc__pool_fini(struct tpc_runtime *rt); /* after the shards stopped: joins the helpers */
/* The pool's gauges for tpc_metrics_format (struct tpc__layer.gauges). */
void tpc__pool_gauges(struct tpc_runtime *rt,
                      void (*put)(void *out, const char *name, const char *help, uint64_t value),
                      void *out);

/* The layer's hooks: set-up and tear-down of the two above (io/file.c). */
extern const struct tpc__layer tpc__io_layer;

#endif
