/* Accepting connections (include/tpc/net.h): the multishot acceptor, and servers that run a
 * fiber per connection on every shard.
 *
 * An acceptor keeps one multishot accept in the shard's ring: each connection is one completion,
 * with no SQE per connection. Completions queue their descriptors in the acceptor; fibers take
 * them with tpc_acceptor_next. The operation belongs to the acceptor, not to a waiting fiber,
 * so a waiter that times out loses nothing. When the process runs out of descriptors or memory
 * the kernel ends the multishot accept with the error; the acceptor then re-arms from a timer
 * that backs off (10 ms doubling to 1 s), so a full descriptor table never spins a CPU and the
 * acceptor recovers by itself once descriptors are free. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

#define QUEUE_HIGH  1024 /* accepted, not yet taken: above this, stop accepting */
#define QUEUE_LOW   256  /* re-arm below this */
#define BACKOFF_MIN (10 * 1000 * 1000LL)
#define BACKOFF_MAX (1000 * 1000 * 1000LL)

struct tpc_acceptor {
    struct tpc__multishot ms; /* the multishot accept */
    struct tpc__shard *shard;
    int lfd;
    bool single; /* the kernel has no multishot accept: one accept at a time */
    int err;     /* the listener's error, reported once the queue is empty */
    int forced;  /* fault injection: the accept's result */
    int *q;      /* ring of accepted descriptors */
    unsigned qhead, qlen, qcap;
    tpc_list waiters;
    unsigned nwaiting; /* fibers inside tpc_acceptor_next, woken or not */
    bool closed;       /* tpc_acceptor_close has begun: waiters leave with -ECANCELED */
    bool close_done;   /* and finished: the last fiber to leave frees it */
    tpc_timer retry;
    int64_t backoff;
};

static void arm(tpc_acceptor *a);

static bool out_of_resources(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* An error of the connection being accepted, not of the listener (accept(2): "treat them like
 * EAGAIN by retrying"): that connection is gone, the next one is accepted. */
static bool connection_error(int err)
{
    switch (err) {
    case -ECONNABORTED:
    case -EPROTO:
    case -ENETDOWN:
    case -ENOPROTOOPT:
    case -EHOSTDOWN:
    case -ENONET:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
        return true;
    default:
        return false;
    }
}

static void wake_first(tpc_acceptor *a)
{
    tpc_list *n = tpc__list_first(&a->waiters);
    if (n)
        tpc__wake(tpc__container_of(n, struct tpc__wait, node), 0);
}

static bool push(tpc_acceptor *a, int fd)
{
    if (a->qlen == a->qcap) {
        unsigned cap = a->qcap ? a->qcap * 2 : 64;
        int *q = malloc(cap * sizeof(*q));
        if (!q)
            return false;
        for (unsigned i = 0; i < a->qlen; i++)
            q[i] = a->q[(a->qhead + i) % a->qcap];
        free(a->q);
        a->q = q, a->qhead = 0, a->qcap = cap;
    }
    a->q[(a->qhead + a->qlen++) % a->qcap] = fd;
    return true;
}

static void accept_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    tpc_acceptor *a = tpc__container_of(op, tpc_acceptor, ms.op);
#ifdef TPC_FAULT_INJECTION
    if (a->forced) /* a no-op stood in for the accept (no F_MORE) */
        res = a->forced, a->forced = 0;
#endif
    if (tpc__multishot_seen(s, &a->ms, flags)) { /* closing */
        if (res >= 0)
            tpc_close(res); /* (tpc_close: on epoll the number may be kept, core/epoll.c) */
        return;
    }
    if (res >= 0) {
        a->backoff = 0;
        if (!push(a, res)) {
            tpc_close(res); /* out of memory: the connection is refused rather than lost silently */
            res = -ENOMEM;
        } else {
            wake_first(a);
            if (a->qlen >= QUEUE_HIGH)
                tpc__multishot_cancel(s, &a->ms); /* re-armed once it drains */
        }
    }
    if (res == -EINVAL && !a->single && !a->ms.armed && a->qlen == 0 &&
        !(flags & IORING_CQE_F_MORE) && !a->err) {
        /* A kernel older than 5.19 rejects the multishot flag: fall back to one at a time. The
         * listener's own -EINVAL (not listening) comes back again from the plain accept. */
        a->single = true;
        arm(a);
        return;
    }
    if (out_of_resources(res)) {
        s->n_accept_backoffs++;
        a->backoff = a->backoff ? a->backoff * 2 : BACKOFF_MIN;
        if (a->backoff > BACKOFF_MAX)
            a->backoff = BACKOFF_MAX;
        if (!a->ms.armed)
            tpc_timer_start(&a->retry, a->backoff, 0);
        return;
    }
    if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN && !connection_error(res)) {
        a->err = res; /* the listener is unusable: report it, do not retry */
        tpc_list *n;
        while ((n = tpc__list_first(&a->waiters)))
            tpc__wake(tpc__container_of(n, struct tpc__wait, node), 0);
        return;
    }
    if (!a->ms.armed && a->qlen < QUEUE_LOW && !tpc_timer_pending(&a->retry))
        arm(a);
}

static void arm(tpc_acceptor *a)
{
    if (a->ms.armed || a->ms.closing || a->err)
        return;
    struct io_uring_sqe *sqe = tpc__sqe(a->shard);
    if (!sqe) {
        tpc_timer_start(&a->retry, 0, 0); /* no SQE free now: at the next loop iteration */
        return;
    }
    if (a->single)
        io_uring_prep_accept(sqe, a->lfd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_multishot_accept(sqe, a->lfd, NULL, NULL, SOCK_CLOEXEC);
#ifdef TPC_FAULT_INJECTION
    a->forced = tpc__fault_inject(sqe);
#endif
    tpc__multishot_arm(&a->ms, sqe);
}

static void retry_fire(tpc_timer *t, void *arg)
{
    (void)t;
    arm(arg);
}

int tpc_acceptor_open(int fd, tpc_acceptor **out)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (fd < 0 || !out)
        return -EINVAL;
    if (s->stopping) /* (also: a message run after its shard left, whose ring is gone) */
        return -ESHUTDOWN;
    tpc_acceptor *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    tpc__multishot_init(&a->ms, accept_complete);
    a->shard = s;
    a->lfd = fd;
    tpc__list_init(&a->waiters);
    tpc_timer_init(&a->retry, retry_fire, a);
    arm(a);
    *out = a;
    return 0;
}

/* Frees a closed acceptor once its close has finished and no fiber is inside it any more. */
static void maybe_free(tpc_acceptor *a)
{
    if (a->close_done && a->nwaiting == 0)
        free(a);
}

int tpc_acceptor_next(tpc_acceptor *a)
{
    TPC__CHECK_SUSPEND();
    if (!a)
        return -EINVAL;
    if (a->shard != tpc__self)
        return -EXDEV;
    if (a->closed)
        return -ECANCELED; /* a close is under way in another fiber */
    int rc = 0;
    a->nwaiting++;
    while (rc == 0 && a->qlen == 0 && !a->err && !a->closed) {
        struct tpc__wait w;
        rc = tpc__park(&a->waiters, &w);
    }
    a->nwaiting--;
    if (a->closed) {
        maybe_free(a);
        return -ECANCELED;
    }
    if (rc < 0) {
        if (a->qlen)
            wake_first(a); /* what this fiber was woken for goes to the next waiter */
        return rc;         /* cancelled or timed out: queued connections stay queued */
    }
    if (a->qlen) {
        int fd = a->q[a->qhead];
        a->qhead = (a->qhead + 1) % a->qcap;
        if (--a->qlen < QUEUE_LOW && !tpc_timer_pending(&a->retry))
            arm(a); /* (while backing off, the timer re-arms) */
        if (a->qlen)
            wake_first(a); /* another waiter may have been passed over */
        return fd;
    }
    return a->err;
}

int tpc_acceptor_close(tpc_acceptor *a)
{
    if (!a)
        return 0;
    if (a->shard != tpc__self)
        return tpc__self ? -EXDEV : -EPERM;
    if (a->closed)
        return -EINVAL; /* another fiber is closing it */
    if (a->ms.armed && !tpc__self->current)
        return -EPERM; /* the kernel must be waited for: that takes a fiber */
    a->closed = true;
    tpc_list *n;
    while ((n = tpc__list_first(&a->waiters)))
        tpc__wake(tpc__container_of(n, struct tpc__wait, node), -ECANCELED);
    tpc_timer_stop(&a->retry);
    tpc__multishot_stop(a->shard, &a->ms);
    for (; a->qlen; a->qlen--, a->qhead = (a->qhead + 1) % a->qcap)
        tpc_close(a->q[a->qhead]);
    free(a->q);
    a->q = NULL;
    a->close_done = true;
    maybe_free(a);
    return 0;
}
