/* Timers on the shard's wheel: the clock, callback timers, sleeping, and the loop's timer phase.
 * Deadlines and sleeps are waits like any other (core/task.c, tpc__park_until); this file gives
 * them a timer on the waiting fiber's stack. */
#include <string.h>
#include "core/internal.h"
#include "wheel.h"

static uint64_t add_sat(uint64_t a, int64_t b)
{
    uint64_t r = a + (uint64_t)b;
    return r < a ? UINT64_MAX : r;
}

/* A deadline's tick, rounded up so that no timer fires early. */
static uint64_t due_tick(const struct tpc__shard *s, uint64_t deadline)
{
    return deadline / s->tick_ns + (deadline % s->tick_ns != 0);
}

uint64_t tpc_now(void)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return tpc__clock_ns();
    if (!s->now_valid) {
        s->now = tpc__clock_ns();
        s->now_valid = true;
    }
    return s->now;
}

uint64_t tpc_now_fresh(void)
{
    uint64_t now = tpc__clock_ns();
    struct tpc__shard *s = tpc__self;
    if (s) {
        s->now = now;
        s->now_valid = true;
    }
    return now;
}

void tpc__timer_arm(struct tpc__shard *s, tpc_timer *t, uint64_t deadline)
{
    if (t->pending)
        tpc__wheel_del(&s->wheel, t);
    t->deadline = deadline;
    t->due = due_tick(s, deadline);
    t->pending = true;
    tpc__wheel_add(&s->wheel, t);
}

void tpc__timer_disarm(struct tpc__shard *s, tpc_timer *t)
{
    if (t->pending) {
        tpc__wheel_del(&s->wheel, t);
        t->pending = false;
    }
}

static void fire(tpc_timer *t, void *ctx)
{
    struct tpc__shard *s = ctx;
    t->pending = false;
    s->n_timers++;
    if (t->period) { /* re-armed first, so the callback may stop or restart it */
        uint64_t now = tpc_now(), next = t->deadline + t->period;
        if (next <= now) /* missed periods are skipped, not replayed */
            next = t->deadline + ((now - t->deadline) / t->period + 1) * t->period;
        tpc__timer_arm(s, t, next < t->deadline ? UINT64_MAX : next);
    }
    t->fn(t, t->arg);
}

void tpc__timers_init(struct tpc__shard *s)
{
    tpc__wheel_init(&s->wheel, tpc__clock_ns() / s->tick_ns);
}

void tpc__timers_run(struct tpc__shard *s)
{
    if (s->wheel.count)
        tpc__wheel_advance(&s->wheel, tpc_now_fresh() / s->tick_ns, fire, s);
}

int64_t tpc__timers_timeout(struct tpc__shard *s)
{
    uint64_t next = tpc__wheel_next(&s->wheel);
    if (next == UINT64_MAX)
        return -1;
    if (next > UINT64_MAX / s->tick_ns)
        return INT64_MAX;
    /* A non-empty wheel means tpc__timers_run just refreshed the cached clock. */
    uint64_t at = next * s->tick_ns, now = tpc_now();
    if (at <= now)
        return 0;
    return at - now > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)(at - now);
}

/* ---- Public timers ---- */

#define CHECK_TIMER(t)                                                                             \
    do {                                                                                           \
        if (!tpc__self)                                                                            \
            return -EPERM;                                                                         \
        if (!(t) || (t)->shard != tpc__self)                                                       \
            return -EXDEV;                                                                         \
    } while (0)

int tpc_timer_init(tpc_timer *t, tpc_timer_fn fn, void *arg)
{
    if (!tpc__self)
        return -EPERM;
    if (!t || !fn)
        return -EINVAL;
    memset(t, 0, sizeof(*t));
    tpc__list_init(&t->node);
    t->fn = fn;
    t->arg = arg;
    t->shard = tpc__self;
    return 0;
}

int tpc_timer_start_at(tpc_timer *t, uint64_t deadline, int64_t period)
{
    CHECK_TIMER(t);
    if (period < 0)
        return -EINVAL;
    t->period = (uint64_t)period;
    tpc__timer_arm(tpc__self, t, deadline);
    return 0;
}

int tpc_timer_start(tpc_timer *t, int64_t after, int64_t period)
{
    CHECK_TIMER(t);
    if (after < 0 || period < 0)
        return -EINVAL;
    return tpc_timer_start_at(t, add_sat(tpc_now_fresh(), after), period);
}

int tpc_timer_stop(tpc_timer *t)
{
    CHECK_TIMER(t);
    tpc__timer_disarm(tpc__self, t);
    return 0;
}

bool tpc_timer_pending(const tpc_timer *t)
{
    return t && t->pending;
}

/* ---- Sleeping and deadlines ---- */

int tpc_sleep_until(uint64_t deadline)
{
    TPC__CHECK_FIBER();
    struct tpc__wait w;
    return tpc__park_until(NULL, &w, deadline ? deadline : 1);
}

int tpc_sleep(int64_t ns)
{
    if (ns < 0)
        return -EINVAL;
    TPC__CHECK_FIBER();
    /* 0: a deadline in the past, which fires at the next loop iteration. */
    return tpc_sleep_until(ns ? add_sat(tpc_now_fresh(), ns) : 1);
}

int tpc_deadline_set_at(uint64_t deadline)
{
    TPC__CHECK_FIBER();
    tpc__self->current->deadline = deadline ? deadline : 1; /* 0 means none */
    return 0;
}

int tpc_deadline_set(int64_t ns)
{
    if (ns < 0)
        return -EINVAL;
    TPC__CHECK_FIBER();
    return tpc_deadline_set_at(add_sat(tpc_now_fresh(), ns));
}

int tpc_deadline_clear(void)
{
    TPC__CHECK_FIBER();
    tpc__self->current->deadline = 0;
    return 0;
}

uint64_t tpc_deadline_get(void)
{
    struct tpc__shard *s = tpc__self;
    return s && s->current ? s->current->deadline : 0;
}
