/* Readiness without a fiber (tpc_watch_start, include/tpc/io.h): one POLL_ADD in the ring and a
 * record of about 100 bytes, so that a program can keep many idle descriptors (keep-alive
 * connections waiting for their next request) without a suspended fiber's stack on each.
 *
 * The record lives in its shard's list and counts as one operation in flight, so a stopping
 * shard waits for it; the io layer's loop hook ends every watch once the shard stops. A watch
 * is told exactly once, from its completion (ready, an error, or -ECANCELED after a stop) or,
 * when a stop found no poll in the ring, from its timer at the next turn of the loop; the
 * record is freed after fn returns. */
#include <poll.h>
#include <stdlib.h>
#include "internal.h"

struct tpc_watch {
    struct tpc__op op;
    struct tpc__shard *shard;
    tpc_watch_fn fn;
    void *arg;
    tpc_list node;
    int fd;
    short events;
    bool armed;   /* the poll is in the ring */
    bool stopped; /* tpc_watch_stop or the shard's stop: fn gets `why` */
    bool asked;   /* a cancel of the poll is in the ring */
    int why;
    tpc_timer later; /* no free SQE (for the poll or its cancel), or a stop before it was armed */
};

static void tell(tpc_watch *w, int res)
{
    tpc__list_remove(&w->node);
    tpc_timer_stop(&w->later);
    w->shard->inflight--;
    w->stopped = true; /* a tpc_watch_stop from fn finds it told: a no-op */
    w->fn(w, res, w->arg);
    free(w);
}

static void watch_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    (void)s, (void)flags;
    tpc_watch *w = tpc__container_of(op, tpc_watch, op);
    w->armed = false;
    tell(w, w->stopped && res < 0 ? w->why : res); /* a readiness that won the race is told */
}

/* Puts the poll, or its cancel, in the ring; without a free SQE, tries again at the next turn. */
static void step(tpc_watch *w)
{
    if (w->stopped && !w->armed) {
        tell(w, w->why);
        return;
    }
    if (w->asked)
        return;
    struct io_uring_sqe *sqe = tpc__sqe(w->shard);
    if (!sqe) {
        tpc_timer_start(&w->later, 0, 0);
        return;
    }
    if (w->stopped) {
        io_uring_prep_cancel(sqe, &w->op, 0);
        io_uring_sqe_set_data(sqe, NULL); /* its own completion is not waited for */
        w->asked = true;
        return;
    }
    io_uring_prep_poll_add(sqe, w->fd, (unsigned)(unsigned short)w->events);
    io_uring_sqe_set_data(sqe, &w->op);
    w->armed = true;
}

static void later(tpc_timer *t, void *arg)
{
    (void)t;
    step(arg);
}

int tpc_watch_start(int fd, short events, tpc_watch_fn fn, void *arg, tpc_watch **out)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (fd < 0)
        return -EBADF;
    if (!fn || !events)
        return -EINVAL;
    if (s->stopping)
        return -ESHUTDOWN;
    tpc_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (tpc_watch){.op.complete = watch_complete,
                     .shard = s,
                     .fn = fn,
                     .arg = arg,
                     .fd = fd,
                     .events = events};
    tpc_timer_init(&w->later, later, w);
    struct tpc__io_shard *io = tpc__io_of(s);
    tpc__list_push(&io->watches, &w->node);
    s->inflight++; /* the shard does not leave while a watch waits */
    if (out)
        *out = w;
    step(w);
    return 0;
}

int tpc_watch_stop(tpc_watch *w)
{
    if (!w)
        return -EINVAL;
    if (w->shard != tpc__self)
        return tpc__self ? -EXDEV : -EPERM;
    if (!w->stopped) {
        w->stopped = true;
        w->why = -ECANCELED;
        if (w->armed)
            step(w); /* the cancel; its completion tells */
        else
            tpc_timer_start(&w->later, 0, 0); /* told at the next turn, not inside this call */
    }
    return 0;
}

bool tpc__watch_poll(struct tpc__shard *s, void *state)
{
    struct tpc__io_shard *io = state;
    if (TPC_LIKELY(!s->stopping || io->watches_stopped))
        return false;
    io->watches_stopped = true;
    for (tpc_list *n = io->watches.next; n != &io->watches; n = n->next) {
        tpc_watch *w = tpc__container_of(n, tpc_watch, node);
        if (w->stopped)
            continue;
        w->stopped = true;
        w->why = -ESHUTDOWN;
        if (w->armed)
            step(w);
        else
            tpc_timer_start(&w->later, 0, 0);
    }
    return true;
}
