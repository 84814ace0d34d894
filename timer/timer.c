/* The timer layer: the shard's wheel, callback timers, sleeping, deadlines, and the timeouts of
 * every wait (core's waits reach them through the layer's arm and disarm hooks). Deadlines and
 * sleeps are waits like any other (core/task.c, tpc__park_until). */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

_Static_assert(sizeof(struct tpc__timer) <= sizeof(tpc_timer) &&
                   _Alignof(struct tpc__timer) <= _Alignof(tpc_timer),
               "tpc_timer must hold a struct tpc__timer");

static struct tpc__timer *inside(tpc_timer *t)
{
    return (struct tpc__timer *)(void *)t;
}

static uint64_t add_sat(uint64_t a, int64_t b)
{
    uint64_t r = a + (uint64_t)b;
    return r < a ? UINT64_MAX : r;
}

void tpc__timer_arm(struct tpc__shard *s, struct tpc__timer *t, uint64_t deadline)
{
    struct tpc__timers *tm = tpc__timers_of(s);
    if (t->pending)
        tpc__wheel_del(&tm->wheel, t);
    t->deadline = deadline;
    t->due = deadline / tm->tick_ns + (deadline % tm->tick_ns != 0); /* never early */
    t->pending = true;
    tpc__wheel_add(&tm->wheel, t);
}

void tpc__timer_disarm(struct tpc__shard *s, struct tpc__timer *t)
{
    if (t->pending) {
        tpc__wheel_del(&tpc__timers_of(s)->wheel, t);
        t->pending = false;
    }
}

static void fire(struct tpc__timer *t, void *ctx)
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
    t->fn((tpc_timer *)(void *)t, t->arg);
}

/* ---- The layer's hooks (core/layer.h) ---- */

static int timers_runtime_init(struct tpc_runtime *rt, const tpc_config *c)
{
    uint64_t *tick = malloc(sizeof(*tick));
    if (!tick)
        return -ENOMEM;
    *tick = c->timer_tick_ns;
    rt->layer[TPC__TIMER_LAYER] = tick;
    return 0;
}

static void timers_runtime_fini(struct tpc_runtime *rt)
{
    free(rt->layer[TPC__TIMER_LAYER]);
}

static int timers_shard_init(struct tpc__shard *s, void *state)
{
    struct tpc__timers *tm = state;
    tm->tick_ns = *(uint64_t *)s->rt->layer[TPC__TIMER_LAYER];
    tpc__wheel_init(&tm->wheel, tpc__clock_ns() / tm->tick_ns);
    return 0;
}

static bool timers_poll(struct tpc__shard *s, void *state)
{
    struct tpc__timers *tm = state;
    return tm->wheel.count &&
           tpc__wheel_advance(&tm->wheel, tpc_now_fresh() / tm->tick_ns, fire, s) > 0;
}

static int64_t timers_timeout(struct tpc__shard *s, void *state)
{
    (void)s;
    struct tpc__timers *tm = state;
    uint64_t next = tpc__wheel_next(&tm->wheel);
    if (next == UINT64_MAX)
        return -1;
    if (next > UINT64_MAX / tm->tick_ns)
        return INT64_MAX;
    /* A non-empty wheel means the poll just refreshed the cached clock. */
    uint64_t at = next * tm->tick_ns, now = tpc_now();
    if (at <= now)
        return 0;
    return at - now > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)(at - now);
}

static void timers_arm(struct tpc__shard *s, tpc_timer *pub, uint64_t deadline, tpc_timer_fn fn,
                       void *arg)
{
    struct tpc__timer *t = inside(pub);
    t->pending = false;
    t->fn = fn;
    t->arg = arg;
    t->period = 0;
    t->shard = s;
    tpc__timer_arm(s, t, deadline);
}

static void timers_disarm(struct tpc__shard *s, tpc_timer *pub)
{
    tpc__timer_disarm(s, inside(pub));
}

const struct tpc__layer tpc__timer_layer = {
    .name = "timer",
    .state_size = sizeof(struct tpc__timers),
    .runtime_init = timers_runtime_init,
    .runtime_fini = timers_runtime_fini,
    .shard_init = timers_shard_init,
    .poll = timers_poll,
    .timeout = timers_timeout,
    .arm = timers_arm,
    .disarm = timers_disarm,
};

/* ---- Public timers ---- */

#define CHECK_TIMER(pub)                                                                           \
    do {                                                                                           \
        if (!(pub))                                                                                \
            return -EINVAL;                                                                        \
        if (!tpc__self)                                                                            \
            return -EPERM;                                                                         \
        if (inside(pub)->shard != tpc__self)                                                       \
            return -EXDEV;                                                                         \
    } while (0)

int tpc_timer_init(tpc_timer *pub, tpc_timer_fn fn, void *arg)
{
    if (!tpc__self)
        return -EPERM;
    if (!pub || !fn)
        return -EINVAL;
    memset(pub, 0, sizeof(*pub));
    struct tpc__timer *t = inside(pub);
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
    inside(t)->period = (uint64_t)period;
    tpc__timer_arm(tpc__self, inside(t), deadline);
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
    tpc__timer_disarm(tpc__self, inside(t));
    return 0;
}

bool tpc_timer_pending(const tpc_timer *t)
{
    return t && ((const struct tpc__timer *)(const void *)t)->pending;
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
