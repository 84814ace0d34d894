/* A hierarchical hashed timing wheel over integer ticks: 6 levels of 64 slots, O(1) insert and
 * delete, cascading on advance, empty spans skipped with per-level occupancy bitmaps. Timers
 * further than 64^6 ticks away are clamped into the last level and re-placed when they cascade.
 * Each timer links to the one queued TPC_WHEEL_AHEAD after it in its list, so that walking a
 * list of timers scattered in memory keeps that many cache misses in flight. A timer started
 * waits in a short array until the wheel next looks at its slots (advance, next) or the array
 * fills: most timeouts are stopped soon after they start, and one stopped there never touches
 * the wheel's lists.
 * Pure data structure: no clock, no shard (tests drive it with a virtual clock). */
#ifndef TPC_TIMER_WHEEL_H
#define TPC_TIMER_WHEEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "tpc/timer.h"

#define TPC_WHEEL_BITS   6
#define TPC_WHEEL_SLOTS  (1u << TPC_WHEEL_BITS)
#define TPC_WHEEL_LEVELS 6
/* Lists: the slots of every level, then the due list. */
#define TPC_WHEEL_LISTS (TPC_WHEEL_LEVELS * TPC_WHEEL_SLOTS + 1)
/* How far ahead (in timers of the same list) a walk prefetches. */
#define TPC_WHEEL_AHEAD 16
/* How many started timers wait to be placed. */
#define TPC_WHEEL_STAGED 32

/* A timer as the wheel keeps it: the inside of the public, opaque tpc_timer (timer/timer.c checks
 * that it fits). The wheel uses node, ahead, due, seq, slot and recent; the rest is the timer
 * layer's. */
struct tpc__timer {
    tpc_list node;
    struct tpc__timer *ahead; /* queued 16 later in the same list: a prefetch hint, may be stale */
    uint64_t due;             /* tick */
    uint64_t seq;             /* start order */
    uint64_t deadline;        /* ns */
    uint64_t period;          /* ns; 0: one-shot */
    tpc_timer_fn fn;
    void *arg;
    void *shard;
    uint16_t slot;  /* where the wheel keeps it */
    uint8_t recent; /* its place in the slot's ring of recent arrivals, or in `staged` */
    bool pending;
};

struct tpc__wheel {
    uint64_t now; /* ticks up to and including now have been processed */
    uint64_t seq; /* start order given to timers */
    size_t count; /* pending timers */
    uint64_t occupied[TPC_WHEEL_LEVELS];
    uint64_t unsorted; /* level-0 slots where a timer was queued behind a newer one */
    bool due_unsorted; /* the due list: a timer queued behind one due later, or as late and newer */
    tpc_list due;      /* added already due: fire at the next advance */
    tpc_list slots[TPC_WHEEL_LEVELS][TPC_WHEEL_SLOTS];
    /* Per list, the last TPC_WHEEL_AHEAD timers queued that are still there (NULL where one
     * left), a ring indexed by cursor: the entry a new timer replaces is the timer queued
     * TPC_WHEEL_AHEAD before it, whose `ahead` then points to the new one. */
    uint8_t cursor[TPC_WHEEL_LISTS];
    struct tpc__timer *recent[TPC_WHEEL_LISTS][TPC_WHEEL_AHEAD];
    /* Started, not yet placed, in start order (NULL: stopped there). */
    unsigned nstaged;
    struct tpc__timer *staged[TPC_WHEEL_STAGED];
};

typedef void (*tpc__wheel_fire_fn)(struct tpc__timer *t, void *ctx);

void tpc__wheel_init(struct tpc__wheel *w, uint64_t now);
/* Adds t, whose t->due (tick) is set, and gives it the next start sequence number. */
void tpc__wheel_add(struct tpc__wheel *w, struct tpc__timer *t);
/* Removes a pending t (also from inside a fire callback). */
void tpc__wheel_del(struct tpc__wheel *w, struct tpc__timer *t);
/* Processes every tick up to `to`: timers fire in due-tick order, and in start order within a
 * tick; already-due timers first. fire() may add and delete timers; timers it adds that are
 * already due fire at the next advance, not this one. Returns the number fired. */
size_t tpc__wheel_advance(struct tpc__wheel *w, uint64_t to, tpc__wheel_fire_fn fire, void *ctx);
/* The next tick at which advance has work: w->now when something is already due, UINT64_MAX
 * when the wheel is empty. */
uint64_t tpc__wheel_next(struct tpc__wheel *w);

#endif
