/* Time: the shard's clock, sleeping fibers, callback timers, and per-fiber deadlines.
 *
 * Times are nanoseconds of CLOCK_MONOTONIC. Each shard keeps its timers in a hierarchical timing
 * wheel whose tick is tpc_config.timer_tick_ns (1 ms by default). A timer never fires early and,
 * on a shard that is not overloaded, at most one tick late.
 *
 * Firing order: timers due by the same loop iteration fire in order of their due tick; timers
 * due in the same tick fire in the order they were (last) started, whatever their exact
 * deadlines within that tick. So equal deadlines fire in start order. */
#ifndef TPC_TIMER_H
#define TPC_TIMER_H

#include <stdbool.h>
#include "common.h"
#include "sync.h" /* tpc_list */

/* Durations beyond this (about 292 years) are clamped to it. */
#define TPC_NS_MAX ((int64_t)INT64_MAX)

/* The shard's clock, read once per loop iteration (cheap). Outside a shard: a fresh read. */
TPC_EXTERN uint64_t tpc_now(void);
/* A fresh read of the clock (also refreshes the shard's cached value). */
TPC_EXTERN uint64_t tpc_now_fresh(void);

/* Suspends the calling fiber for ns nanoseconds (0: until the next loop iteration).
 * Returns 0, -EINVAL for ns < 0, -ECANCELED, -ETIMEDOUT if the fiber's deadline comes first,
 * -EPERM outside a fiber. */
TPC_EXTERN int tpc_sleep(int64_t ns);
/* Suspends until tpc_now() >= deadline (a deadline in the past: the next loop iteration).
 * Returns as tpc_sleep(). */
TPC_EXTERN int tpc_sleep_until(uint64_t deadline);

/* Per-fiber deadline: once it passes, every suspension of the fiber (sleep, join, channel,
 * semaphore, mutex, event, wait group, and I/O waits) returns -ETIMEDOUT, having taken nothing.
 * tpc_deadline_set(ns) sets it ns from now (ns < 0: -EINVAL; 0: already expired), replacing any
 * earlier one; tpc_deadline_clear() removes it. tpc_deadline_get() returns it, or 0 when there
 * is none. Set/clear return 0 or -EPERM outside a fiber. A yield is not a wait: it still
 * yields. */
TPC_EXTERN int tpc_deadline_set(int64_t ns);
TPC_EXTERN int tpc_deadline_set_at(uint64_t deadline);
TPC_EXTERN int tpc_deadline_clear(void);
TPC_EXTERN uint64_t tpc_deadline_get(void);

/* ---- Callback timers, embedded by the caller. ---- */
typedef struct tpc_timer tpc_timer;
typedef void (*tpc_timer_fn)(tpc_timer *t, void *arg);

/* Embedded by the caller and set up by tpc_timer_init; the contents are private (their size is
 * the ABI). */
struct tpc_timer {
    uint64_t private_[12];
};

/* Prepares t to call fn(t, arg) on this shard's loop (a callback: it must not suspend).
 * Returns 0, -EINVAL for a NULL fn, -EPERM outside a shard. Not on a pending timer: stop it
 * first (the wheel still holds it, and init forgets that). */
TPC_EXTERN int tpc_timer_init(tpc_timer *t, tpc_timer_fn fn, void *arg);
/* (Re)starts t to fire after `after` ns, then every `period` ns if period > 0. Starting a pending
 * timer restarts it. A timer may start, restart or stop itself from its own callback. Returns 0,
 * -EINVAL for negative after or period, -EXDEV from another shard. */
TPC_EXTERN int tpc_timer_start(tpc_timer *t, int64_t after, int64_t period);
/* As tpc_timer_start, at an absolute deadline (in the past: the next loop iteration). */
TPC_EXTERN int tpc_timer_start_at(tpc_timer *t, uint64_t deadline, int64_t period);
/* Stops t; a stopped timer stays stopped (0 either way). -EXDEV from another shard. */
TPC_EXTERN int tpc_timer_stop(tpc_timer *t);
TPC_EXTERN bool tpc_timer_pending(const tpc_timer *t);

#endif
