/* Relaying both directions of a proxied connection (tpc_relay, tpc_relay_start: include/tpc/
 * net.h), driven by completions alone: no fiber of its own and no stack.
 *
 * Each direction is a receive stream (net/bufpool.c) on the shard's relay pool: a receive with a
 * provided buffer waits in the ring, so an idle direction holds no buffer, only its SQE's worth
 * of kernel state; a chunk that arrives is sent from the buffer it landed in (an io_uring send,
 * submitted with the loop's other SQEs: no system call of its own), and the buffer goes back to
 * the pool when the send has taken it all. A direction queues and holds at most RELAY_SHARE
 * chunks, so a destination that stops reading holds at most that much of the pool, and the
 * socket holds the rest (the source's sender sees its window close). A shard makes more pools
 * as stuck directions take them (relay_pool), and a direction that finds its pool empty while
 * it holds nothing moves to one with room (move_pool).
 *
 * The end: both sources at end of stream (each destination shut down for writing as its source
 * ended), a socket's error, the idle limit, or a stop (the caller's cancellation or deadline,
 * tpc_relay_stop, the shard stopping). Stopping cancels a send the destination holds up, closes
 * both streams, and waits for the kernel to let go of everything (sends completed, streams
 * gone) before it tells: tpc_relay's caller is woken, tpc_relay_start's done callback runs. */
#include <stdlib.h>
#include <sys/socket.h>
#include "internal.h"

#define RELAY_BUF   (16 * 1024) /* one chunk */
#define RELAY_POOL  1024        /* chunks per shard: 16 MiB, touched as used */
#define RELAY_SHARE 2           /* chunks one direction queues and holds */

struct relay_dir {
    struct tpc_relay_handle *r;
    tpc_rx *rx;
    tpc_bufpool *pool; /* rx's */
    int from, to;
    tpc_buf held; /* the chunk being sent (pool_ NULL: none) */
    size_t off;   /* how much of it has gone */
    uint64_t in, out, dropped;
    int *from_err, *to_err;
    struct tpc__op send_op;
    int forced;         /* fault injection: the send's result */
    bool sending;       /* a send is in the ring */
    bool cancelling;    /* and a cancel of it */
    bool wait_writable; /* the last send said -EAGAIN: the next waits for room first */
    bool ended;         /* its source ended and its destination was shut down */
    bool closing, gone;
};

struct tpc_relay_handle {
    struct relay_dir d[2]; /* a to b, b to a */
    struct tpc__shard *shard;
    int64_t idle;  /* ns; 0: no limit */
    unsigned len;  /* bytes a receive takes (0: a whole chunk) */
    uint64_t last; /* tpc_now() when a byte was last delivered, either way */
    tpc_timer idle_timer;
    tpc_timer retry; /* no free SQE: at the next loop iteration */
    bool stopped;    /* the end has begun */
    bool finished;   /* and nothing of the kernel's refers to it any more */
    int why;         /* what ended it: 0 or a negative errno, the first reason */
    tpc_relay_stats st;
    struct tpc__wait *waiter; /* tpc_relay: its caller, parked */
    tpc_relay_done_fn done;   /* tpc_relay_start */
    void *arg;
    tpc_list node; /* tpc_relay_start: in the shard's list */
};

static void finish_check(struct tpc_relay_handle *r);
static void pump(struct relay_dir *d);
static tpc_bufpool *relay_pool(struct tpc__shard *s, int *err);
static void dir_ready(void *arg);
static void dir_gone(void *arg);

static struct tpc__rx_hooks dir_hooks(struct relay_dir *d)
{
    return (struct tpc__rx_hooks){.ready = dir_ready,
                                  .gone = dir_gone,
                                  .arg = d,
                                  .share = RELAY_SHARE,
                                  .len = d->r->len,
                                  .dropped = &d->dropped};
}

/* Ends the relay for `why` (the first reason wins): no chunk goes out any more, a send the
 * destination holds up is cancelled, and the end goes on in finish_check. */
static void relay_end(struct tpc_relay_handle *r, int why)
{
    if (r->stopped)
        return;
    r->stopped = true;
    r->why = why;
    for (int i = 0; i < 2; i++) {
        struct relay_dir *d = &r->d[i];
        if (!d->sending || d->cancelling)
            continue;
        struct io_uring_sqe *sqe = tpc__sqe(r->shard);
        if (!sqe) {
            tpc_timer_start(&r->retry, 0, 0);
            continue;
        }
        io_uring_prep_cancel(sqe, &d->send_op, 0);
        io_uring_sqe_set_data(sqe, NULL); /* its own completion is not waited for */
        d->cancelling = true;
    }
    finish_check(r);
}

static void send_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    (void)s, (void)flags;
    struct relay_dir *d = tpc__container_of(op, struct relay_dir, send_op);
    struct tpc_relay_handle *r = d->r;
    d->sending = d->cancelling = false;
    if (d->forced)
        res = d->forced, d->forced = 0;
    if (res > 0) {
        d->out += (uint64_t)res;
        d->off += (size_t)res;
        r->last = tpc_now();
        if (d->off == d->held.len)
            tpc_buf_release(&d->held);
    } else if (res == -EAGAIN && !r->stopped) {
        /* The kernel gave up on a send it had begun (io_uring caps a partial send's retries),
         * or the destination is O_NONBLOCK: send the rest again once it is writable. */
        d->wait_writable = true;
    } else if (res < 0 && !r->stopped) {
        *d->to_err = res;
        relay_end(r, res);
    }
    if (r->stopped)
        finish_check(r);
    else
        pump(d);
}

/* Sends the rest of the held chunk. False when no SQE is free (the retry timer will). */
static bool send_held(struct relay_dir *d)
{
    struct io_uring_sqe *sqe = tpc__sqe(d->r->shard);
    if (!sqe) {
        tpc_timer_start(&d->r->retry, 0, 0);
        return false;
    }
    io_uring_prep_send(sqe, d->to, d->held.data + d->off, d->held.len - d->off, MSG_NOSIGNAL);
    if (d->wait_writable)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    d->wait_writable = false;
    io_uring_sqe_set_data(sqe, &d->send_op);
#ifdef TPC_FAULT_INJECTION
    d->forced = tpc__fault_inject(sqe);
#endif
    d->sending = true;
    return true;
}

/* The source ended with everything delivered: carries the half-close across. */
static void half_close(struct relay_dir *d)
{
    struct tpc_relay_handle *r = d->r;
    if (shutdown(d->to, SHUT_WR) < 0) {
        *d->to_err = -errno;
        relay_end(r, -errno);
        return;
    }
    d->ended = true;
    if (r->d[0].ended && r->d[1].ended)
        relay_end(r, 0);
}

/* Moves the direction on as far as it can without waiting. */
static void pump(struct relay_dir *d)
{
    struct tpc_relay_handle *r = d->r;
    while (!r->stopped && !d->sending && !d->ended) {
        if (!d->held.pool_) {
            ssize_t n = tpc__rx_take(d->rx, &d->held);
            if (n == -EAGAIN)
                return;
            if (n == 0) {
                half_close(d);
                return;
            }
            if (n < 0) {
                *d->from_err = (int)n;
                relay_end(r, (int)n);
                return;
            }
            d->in += (uint64_t)n;
            d->off = 0;
        }
        if (!send_held(d))
            return;
    }
}

/* A direction whose pool ran out of buffers while it held none moves to a pool with room, as a
 * new relay would: stuck directions elsewhere on its pool may hold its buffers for as long as
 * their destinations do not read. Its bytes wait in the socket meanwhile: nothing is lost. */
static void move_pool(struct relay_dir *d)
{
    struct tpc_relay_handle *r = d->r;
    if (r->stopped || d->ended || d->held.pool_ || !tpc__rx_starved_empty(d->rx))
        return;
    int err = 0;
    tpc_bufpool *p = relay_pool(r->shard, &err);
    if (!p || p == d->pool || tpc_bufpool_available(p) < (int)(tpc__bufpool_count(p) / 4))
        return;
    tpc__rx_hook(d->rx, NULL);
    tpc__rx_close_async(d->rx); /* (at once: nothing of it is in the ring) */
    d->rx = NULL;
    d->pool = p;
    struct tpc__rx_hooks h = dir_hooks(d);
    int rc = tpc__rx_open(d->from, p, &h, &d->rx);
    if (rc < 0) {
        d->rx = NULL;
        d->closing = d->gone = true; /* no stream to close */
        *d->from_err = rc;
        relay_end(r, rc);
    }
}

static void dir_ready(void *arg)
{
    struct relay_dir *d = arg;
    if (d->r->stopped) {
        finish_check(d->r);
        return;
    }
    pump(d);
    move_pool(d);
}

static void dir_gone(void *arg)
{
    struct relay_dir *d = arg;
    d->rx = NULL;
    d->gone = true;
    finish_check(d->r);
}

/* Once stopped: drops what is held, closes the streams, and when nothing of the kernel's refers
 * to the relay any more, tells its end (the relay may be freed then: nothing touches it after). */
static void finish_check(struct tpc_relay_handle *r)
{
    if (r->finished || !r->stopped)
        return;
    for (int i = 0; i < 2; i++) { /* first, both: nothing more is read from either socket, and a
                                     buffer released to an open stream would re-arm it */
        struct relay_dir *d = &r->d[i];
        if (!d->closing) {
            d->closing = true;
            tpc__rx_close_async(d->rx); /* gone may come back here at once */
            if (r->finished)
                return;
        }
    }
    for (int i = 0; i < 2; i++) {
        struct relay_dir *d = &r->d[i];
        if (d->sending)
            return; /* its completion comes back here */
        if (d->held.pool_)
            tpc_buf_release(&d->held); /* what it held is dropped (counted: in - out) */
        if (!d->gone)
            return;
    }
    r->finished = true;
    tpc_timer_stop(&r->idle_timer);
    tpc_timer_stop(&r->retry);
    struct relay_dir *ab = &r->d[0], *ba = &r->d[1];
    r->st.a_to_b = ab->out;
    r->st.b_to_a = ba->out;
    r->st.a_to_b_unsent = ab->in - ab->out + ab->dropped;
    r->st.b_to_a_unsent = ba->in - ba->out + ba->dropped;
    if (r->waiter) {
        if (r->waiter->fiber && r->waiter->fiber->wait == r->waiter)
            tpc__wake(r->waiter, 0);
    } else {
        /* done runs from the retry timer at the next turn of the loop: the calls that led here
         * may still touch r on their way out. */
        tpc_timer_start(&r->retry, 0, 0);
    }
}

static void tell_done(struct tpc_relay_handle *r)
{
    tpc__list_remove(&r->node);
    r->shard->inflight--;
    r->done(r, r->why, &r->st, r->arg);
    free(r);
}

/* Re-armed at the last delivery plus the limit: it fires at most once per limit while bytes
 * move, and the directions pay a store per delivery, not a timer restart. */
static void relay_idle(tpc_timer *t, void *arg)
{
    struct tpc_relay_handle *r = arg;
    if (r->stopped)
        return;
    uint64_t due = r->last + (uint64_t)r->idle;
    if (tpc_now() >= due)
        relay_end(r, -ETIMEDOUT);
    else
        tpc_timer_start_at(t, due, 0);
}

/* A background relay's end told, or, when no SQE was free: the cancels of a stopping relay, or
 * both directions' next step. */
static void relay_retry(tpc_timer *t, void *arg)
{
    (void)t;
    struct tpc_relay_handle *r = arg;
    if (r->finished) {
        tell_done(r);
        return;
    }
    if (r->stopped) {
        r->stopped = false;
        relay_end(r, r->why);
        return;
    }
    pump(&r->d[0]);
    pump(&r->d[1]);
}

static _Atomic unsigned pool_chunks = RELAY_POOL;

unsigned tpc__relay_chunks(unsigned set)
{
    return atomic_exchange(&pool_chunks, set ? set : RELAY_POOL);
}

/* The pool a new relay takes its buffers from: the newest with a quarter of its chunks free,
 * else a new one (up to TPC__RELAY_POOLS), else the one with the most free. Directions whose
 * destinations stopped reading hold RELAY_SHARE chunks each: enough of them take a whole pool,
 * and the relays on it then wait for buffers (the starved ones are armed again as chunks come
 * back); new relays go to a pool that has room. */
static tpc_bufpool *relay_pool(struct tpc__shard *s, int *err)
{
    struct tpc__net_shard *ns = tpc__net_of(s);
    tpc_bufpool *best = NULL;
    int most = -1;
    for (unsigned i = ns->nrelay_pools; i-- > 0;) {
        tpc_bufpool *p = ns->relay_pools[i];
        int free = tpc_bufpool_available(p);
        if (free >= (int)(tpc__bufpool_count(p) / 4))
            return p;
        if (free > most) {
            most = free;
            best = p;
        }
    }
    if (ns->nrelay_pools < TPC__RELAY_POOLS) {
        tpc_bufpool *p;
        int rc = tpc_bufpool_create(atomic_load(&pool_chunks), RELAY_BUF, &p);
        if (rc == 0)
            return ns->relay_pools[ns->nrelay_pools++] = p;
        if (!best)
            *err = rc;
    }
    return best;
}

/* Sets r up and starts both directions. On error nothing is left running. */
static int relay_init(struct tpc_relay_handle *r, int a, int b, const tpc_relay_opts *opts)
{
    if (a < 0 || b < 0)
        return -EBADF;
    if (a == b || (opts && opts->idle_ns < 0))
        return -EINVAL;
    struct tpc__shard *s = tpc__self;
    if (s->stopping)
        return -ESHUTDOWN;
    int rc = 0;
    tpc_bufpool *pool = relay_pool(s, &rc);
    if (!pool)
        return rc;
    size_t chunk = opts && opts->chunk ? opts->chunk : RELAY_BUF;
    r->shard = s;
    r->len = chunk < RELAY_BUF ? (unsigned)chunk : 0;
    r->idle = opts ? opts->idle_ns : 0;
    r->last = tpc_now_fresh(); /* the limit counts from this call, not the loop turn's clock */
    tpc_timer_init(&r->idle_timer, relay_idle, r);
    tpc_timer_init(&r->retry, relay_retry, r);
    int fds[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        struct relay_dir *d = &r->d[i];
        *d = (struct relay_dir){.r = r, .from = fds[i], .to = fds[1 - i]};
        d->send_op.complete = send_complete;
        d->from_err = i == 0 ? &r->st.a_err : &r->st.b_err;
        d->to_err = i == 0 ? &r->st.b_err : &r->st.a_err;
        d->pool = pool;
        struct tpc__rx_hooks h = dir_hooks(d);
        if ((rc = tpc__rx_open(d->from, pool, &h, &d->rx)) < 0)
            break;
    }
    if (rc < 0) { /* the stream opened goes quietly: r may be gone before the kernel lets go */
        for (int i = 0; i < 2; i++)
            if (r->d[i].rx) {
                tpc__rx_hook(r->d[i].rx, NULL);
                tpc__rx_close_async(r->d[i].rx);
            }
        return rc;
    }
    if (r->idle)
        tpc_timer_start_at(&r->idle_timer, r->last + (uint64_t)r->idle, 0);
    return 0;
}

int tpc_relay(int a, int b, const tpc_relay_opts *opts, tpc_relay_stats *out)
{
    if (out)
        *out = (tpc_relay_stats){0};
    TPC__CHECK_SUSPEND();
    int rc = tpc__fiber_stopped(tpc_self());
    if (rc < 0 && a >= 0 && b >= 0 && a != b)
        return rc; /* already cancelled or past its deadline: nothing relayed */
    struct tpc_relay_handle r = {0};
    if ((rc = relay_init(&r, a, b, opts)) < 0)
        return rc;
    struct tpc__wait w = {.fiber = NULL};
    r.waiter = &w;
    while (!r.finished) {
        rc = tpc__park(NULL, &w); /* woken by finish_check, a cancel or the deadline */
        if (rc < 0 && !r.stopped)
            relay_end(&r, rc);
        while (!r.finished) /* the kernel lets go of the sockets and the buffers */
            tpc__park_hard(&w);
    }
    if (out)
        *out = r.st;
    return r.why;
}

int tpc_relay_start(int a, int b, const tpc_relay_opts *opts, tpc_relay_done_fn done, void *arg,
                    tpc_relay_handle **out)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!done)
        return -EINVAL;
    struct tpc_relay_handle *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    int rc = relay_init(r, a, b, opts);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->done = done;
    r->arg = arg;
    struct tpc__net_shard *ns = tpc__net_of(s);
    if (!ns->relays.next)
        tpc__list_init(&ns->relays);
    tpc__list_push(&ns->relays, &r->node);
    s->inflight++; /* the shard does not leave while a relay runs */
    if (out)
        *out = r;
    pump(&r->d[0]); /* chunks may already be queued */
    pump(&r->d[1]);
    return 0;
}

int tpc_relay_stop(tpc_relay_handle *r)
{
    if (!r)
        return -EINVAL;
    if (r->shard != tpc__self)
        return tpc__self ? -EXDEV : -EPERM;
    relay_end(r, -ECANCELED);
    return 0;
}

int tpc_relay_progress(const tpc_relay_handle *r, tpc_relay_stats *out)
{
    if (!r || !out)
        return -EINVAL;
    if (r->shard != tpc__self)
        return tpc__self ? -EXDEV : -EPERM;
    const struct relay_dir *ab = &r->d[0], *ba = &r->d[1];
    *out = (tpc_relay_stats){.a_to_b = ab->out,
                             .b_to_a = ba->out,
                             .a_to_b_unsent = ab->in - ab->out,
                             .b_to_a_unsent = ba->in - ba->out,
                             .a_err = r->st.a_err,
                             .b_err = r->st.b_err};
    return 0;
}

bool tpc__relay_poll(struct tpc__shard *s, void *state)
{
    struct tpc__net_shard *ns = state;
    if (TPC_LIKELY(!s->stopping || ns->relays_stopped || !ns->relays.next))
        return false;
    ns->relays_stopped = true;
    /* Each may finish (and leave the list) within relay_end. */
    while (ns->relays.next != &ns->relays) {
        tpc_list *n = ns->relays.next;
        struct tpc_relay_handle *r = tpc__container_of(n, struct tpc_relay_handle, node);
        tpc__list_remove(n);
        tpc__list_init(n); /* its own removal at the end is then a no-op */
        relay_end(r, -ESHUTDOWN);
    }
    return true;
}
