/* Layers above core. timer/, io/ and net/ each hang their per-shard state and their share of the
 * work on the runtime through one struct tpc__layer, so that core names nothing of them: the
 * table tpc__layers[] is filled in by the top layer (net/layers.c), and core only walks it.
 *
 * When the runtime starts, core calls every layer's runtime_init, bottom first; each shard thread,
 * once it has pinned itself and bound its memory, allocates each layer's state (state_size
 * bytes, zeroed, so on its own NUMA node) and calls shard_init. The loop calls poll in its timer
 * and I/O phase and asks timeout how long it may sleep. When it leaves its loop the shard calls
 * shard_fini (top first); runtime_fini and freeing the states come after every shard thread has
 * exited. Every
 * hook is optional. scripts/check-layers.py (the "layers" test) keeps the include and call graph
 * pointing down: core <- timer <- io <- net. */
#ifndef TPC_CORE_LAYER_H
#define TPC_CORE_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tpc.h"

struct tpc__shard;
struct tpc_runtime;

/* Room in the shard and the runtime for the layers' state pointers. */
#define TPC__LAYERS 3 /* timer 0, io 1, net 2 (each layer's internal.h names its slot) */

struct tpc__layer {
    const char *name;
    size_t state_size; /* per-shard state; 0: none */
    /* Runtime-wide set-up, from the thread calling tpc_start; may leave state in rt->layer[i].
     * A negative errno fails the start. */
    int (*runtime_init)(struct tpc_runtime *rt, const tpc_config *c);
    void (*runtime_fini)(struct tpc_runtime *rt);
    int (*shard_init)(struct tpc__shard *s, void *state); /* on the shard's thread */
    void (*shard_fini)(struct tpc__shard *s, void *state);
    /* The loop's timer and I/O phase: runs what is due; true if anything ran. */
    bool (*poll)(struct tpc__shard *s, void *state);
    /* ns until poll has work (0: now), -1: nothing pending. Bounds the loop's sleep. */
    int64_t (*timeout)(struct tpc__shard *s, void *state);
    /* Only the layer that keeps time provides these (core's waits have deadlines): t wakes
     * fn(t, arg) at `deadline` (ns, tpc_now's clock) unless disarmed first. */
    void (*arm)(struct tpc__shard *s, tpc_timer *t, uint64_t deadline, tpc_timer_fn fn, void *arg);
    void (*disarm)(struct tpc__shard *s, tpc_timer *t);
    /* Runtime-wide gauges for tpc_metrics_format (core/metrics.c): put(out, name, help, value)
     * once per gauge; may be called from any thread while the shards run. */
    void (*gauges)(struct tpc_runtime *rt,
                   void (*put)(void *out, const char *name, const char *help, uint64_t value),
                   void *out);
};

/* Indexed by the layers' own slot numbers, bottom first; NULL where no layer is. */
extern const struct tpc__layer *const tpc__layers[TPC__LAYERS];

/* core/layer.c walks the table for the runtime and the shard. */
int tpc__layers_runtime_init(struct tpc_runtime *rt, const tpc_config *c); /* sets rt->clock */
void tpc__layers_runtime_fini(struct tpc_runtime *rt);
int tpc__layers_shard_init(struct tpc__shard *s);
void tpc__layers_shard_fini(struct tpc__shard *s);
void tpc__layers_shard_free(struct tpc__shard *s); /* after the afterlife */
/* The loop's phase 5 (inline in core/internal.h: tpc__layers_poll). */
int64_t tpc__layers_timeout(struct tpc__shard *s); /* the soonest, -1: none */

#endif
