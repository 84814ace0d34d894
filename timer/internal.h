/* The timer layer's private definitions: its per-shard state (the wheel) and how io/ and net/
 * arm timers without the public checks. Includes core's. Never installed. */
#ifndef TPC_TIMER_INTERNAL_H
#define TPC_TIMER_INTERNAL_H

#include "core/internal.h"
#include "wheel.h"

/* Its slot in tpc__layers[] and in shard->layer[]. */
#define TPC__TIMER_LAYER 0

/* Per shard, allocated by the shard's own thread (the wheel is about 56 KB). */
struct tpc__timers {
    uint64_t tick_ns;
    struct tpc__wheel wheel;
};

extern const struct tpc__layer tpc__timer_layer;

static inline struct tpc__timers *tpc__timers_of(struct tpc__shard *s)
{
    return s->layer[TPC__TIMER_LAYER];
}

/* Arms t (already set up by tpc_timer_init or by the caller) for `deadline`, restarting it if
 * pending; disarm is a no-op for a timer that is not pending. */
void tpc__timer_arm(struct tpc__shard *s, struct tpc__timer *t, uint64_t deadline);
void tpc__timer_disarm(struct tpc__shard *s, struct tpc__timer *t);

#endif
