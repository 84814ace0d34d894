/* Calls to other shards: tpc_call_on, tpc_on_all and tpc_stats, over the shards' inboxes.
 *
 * A call is one heap record with a leg per target. A leg travels to its target, which runs fn
 * and writes only that leg, and back to the caller's shard, which counts the replies and wakes
 * the caller after the last. The caller may stop waiting early (cancel, deadline): it then
 * marks the record abandoned and returns, so no reply ever writes into a dead stack frame.
 * `pending` and `abandoned` are touched only on the caller's shard; the record is freed by
 * whoever drops the last reference (the caller, a reply, or a target whose reply cannot be
 * posted because the caller's shard has stopped). */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

struct call;

struct leg {
    struct call *call;
    struct tpc__shard *target;
    int result;
    tpc_shard_stats stats; /* tpc_stats only */
};

struct call {
    tpc_call_fn fn; /* NULL: read the target's counters */
    void *arg;
    struct tpc__shard *origin;
    struct tpc__wait *w;
    _Atomic int refs; /* one per leg, one for the caller */
    int pending;      /* legs not yet back (caller's shard only) */
    bool abandoned;   /* the caller returned early (caller's shard only) */
    unsigned nlegs;
    struct leg legs[];
};

static void call_unref(struct call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

static void leg_home(void *p) /* on the caller's shard */
{
    struct leg *l = p;
    struct call *c = l->call;
    if (--c->pending == 0 && !c->abandoned)
        tpc__wake(c->w, 0);
    call_unref(c);
}

static void read_stats(struct tpc__shard *s, tpc_shard_stats *out)
{
    *out = (tpc_shard_stats){s->n_tasks,   s->n_switches, s->n_loops,
                             s->n_wakeups, s->n_timers,   s->n_inbox};
}

static void leg_run(void *p) /* on the target */
{
    struct leg *l = p;
    struct call *c = l->call;
    if (c->fn)
        l->result = c->fn(c->arg);
    else
        read_stats(tpc__self, &l->stats);
    if (c->origin == tpc__self) {
        leg_home(l);
        return;
    }
    if (tpc__post(c->origin, leg_home, l) < 0)
        call_unref(c); /* the caller's shard has stopped: the caller is gone */
}

static struct call *call_new(tpc_call_fn fn, void *arg, unsigned nlegs)
{
    struct call *c = calloc(1, sizeof(*c) + nlegs * sizeof(struct leg));
    if (!c)
        return NULL;
    c->fn = fn;
    c->arg = arg;
    c->origin = tpc__self;
    c->nlegs = nlegs;
    atomic_init(&c->refs, (int)nlegs + 1);
    for (unsigned i = 0; i < nlegs; i++)
        c->legs[i].call = c;
    return c;
}

/* Sends every leg, then waits for all to come back. On error the caller has no access to the
 * legs any more. */
static int call_go(struct call *c)
{
    struct tpc__shard *self = tpc__self;
    unsigned sent = 0;
    int rc = 0;
    for (unsigned i = 0; i < c->nlegs; i++) {
        struct leg *l = &c->legs[i];
        int r = l->target == self ? tpc_defer(leg_run, l) : tpc__post(l->target, leg_run, l);
        if (r < 0) {
            rc = r;
            call_unref(c); /* this leg will never run */
            continue;
        }
        sent++;
    }
    c->pending = (int)sent;
    if (!sent) {
        call_unref(c);
        return rc;
    }
    struct tpc__wait w;
    c->w = &w;
    int wrc = tpc__park(NULL, &w);
    if (wrc == 0 && rc == 0)
        return 0;
    if (c->pending > 0)
        c->abandoned = true; /* replies still to come: the last one frees the record */
    call_unref(c);
    return wrc < 0 ? wrc : rc;
}

static int check_call(int shard, bool need_shard)
{
    TPC__CHECK_FIBER();
    struct tpc__runtime *rt = tpc__self->rt;
    if (need_shard && (shard < 0 || (unsigned)shard >= rt->nshards))
        return -EINVAL;
    if (atomic_load_explicit(&rt->stop, memory_order_acquire))
        return -ESHUTDOWN;
    return 0;
}

/* One leg to one shard (fn NULL: read its counters); the finished leg is copied to *out. On the
 * caller's own shard the work is done at once. */
static int call_one(int shard, tpc_call_fn fn, void *arg, struct leg *out)
{
    struct tpc__shard *target = &tpc__self->rt->shards[shard];
    if (target == tpc__self) {
        if (fn)
            out->result = fn(arg);
        else
            read_stats(target, &out->stats);
        return 0;
    }
    struct call *c = call_new(fn, arg, 1);
    if (!c)
        return -ENOMEM;
    c->legs[0].target = target;
    int rc = call_go(c);
    if (rc < 0)
        return rc;
    *out = c->legs[0];
    call_unref(c);
    return 0;
}

int tpc_call_on(int shard, tpc_call_fn fn, void *arg, int *result)
{
    int rc = check_call(shard, true);
    if (rc < 0)
        return rc;
    if (!fn)
        return -EINVAL;
    struct leg l;
    rc = call_one(shard, fn, arg, &l);
    if (rc == 0 && result)
        *result = l.result;
    return rc;
}

int tpc_on_all(tpc_call_fn fn, void *arg)
{
    int rc = check_call(0, false);
    if (rc < 0)
        return rc;
    if (!fn)
        return -EINVAL;
    struct tpc__runtime *rt = tpc__self->rt;
    struct call *c = call_new(fn, arg, rt->nshards);
    if (!c)
        return -ENOMEM;
    for (unsigned i = 0; i < rt->nshards; i++)
        c->legs[i].target = &rt->shards[i];
    rc = call_go(c);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < rt->nshards && rc == 0; i++)
        if (c->legs[i].result < 0)
            rc = c->legs[i].result;
    call_unref(c);
    return rc;
}

int tpc_stats(int shard, tpc_shard_stats *out)
{
    int rc = check_call(shard, true);
    if (rc < 0)
        return rc;
    if (!out)
        return -EINVAL;
    struct leg l;
    rc = call_one(shard, NULL, NULL, &l);
    if (rc == 0)
        *out = l.stats;
    return rc;
}
