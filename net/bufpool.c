/* Receiving into shared buffers (include/tpc/net.h): a buffer pool registered with the shard's
 * ring as a provided-buffer ring, and receive streams that keep one receive each in the ring.
 *
 * The kernel picks a free buffer of the pool only when data arrives, so an idle connection
 * holds no buffer: 10,000 idle connections cost 10,000 armed requests, not 10,000 buffers.
 * Each completion names the buffer it filled; the stream queues it (linked through the pool's
 * per-buffer `next` array: no allocation per completion) until tpc_rx_next hands it to the
 * caller, who gives it back with tpc_buf_release. When the pool is empty the kernel ends the
 * receive with -ENOBUFS (the data stays in the socket); the stream then waits in the pool's
 * starved list and is re-armed when a buffer comes back (one stream per buffer: unstarve).
 *
 * Fairness. A stream counts the buffers it has queued and handed out (`owner` says whose a
 * buffer is, also after its stream has closed) and re-arms only while that is below the
 * pool's share (a quarter of its buffers, at least one); its handler's release re-arms it. The
 * receive in the ring is a multishot one limited to the bytes of the buffers the stream may
 * still take (Linux 6.16's byte limit, IORING_RECV_MSHOT_LIM): it ends by itself when a sender
 * fills the share with whole chunks, so one peer that sends much while its handler is stuck in
 * a send takes no more than its share. Smaller chunks could take more buffers than their bytes
 * suggest: a completion that reaches the share while the receive goes on cancels it, so the
 * overshoot is at most what the kernel delivered before the loop saw it. One receive serves
 * many chunks (an SQE and a poll arm per limit's worth of data instead of per chunk). A kernel
 * without the limit refuses it (-EINVAL, once per process) and the streams then keep one
 * single-shot receive in the ring per chunk, whose bound is exact; after a chunk that emptied
 * the socket the next receive waits for data before trying (POLL_FIRST).
 *
 * A stream that finds no free SQE re-arms from a timer at the next loop iteration, so it is
 * never left waiting with nothing in the ring. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

enum { IN_RING, QUEUED, HELD };

/* Whether the kernel takes a byte limit on a multishot receive: 1 yes, 0 not yet known (tried
 * as if it did), -1 no (it refused one). Per process: every ring has the same kernel. */
static int mshot_limit;

struct tpc_bufpool {
    struct tpc__shard *shard;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *mem;
    size_t size;
    unsigned count, mask;
    uint16_t bgid;
    uint16_t *next; /* queue links, by buffer id */
    uint32_t *len;  /* bytes received, by buffer id */
    uint32_t *gen;  /* hand-outs, by buffer id: a stale copy of a tpc_buf does not match */
    tpc_rx **owner; /* the stream a queued or held buffer counts against, by buffer id */
    uint8_t *state;
    unsigned share; /* buffers one stream may have queued and held: count / 4, at least 1 */
    unsigned nheld, nqueued, nstreams;
    unsigned promised; /* starved streams armed again whose receive has not completed yet */
    bool destroyed;    /* tpc_bufpool_destroy has run: gone once no stream or buffer uses it */
    tpc_list starved;  /* streams waiting for a free buffer, oldest first */
    size_t mem_bytes;  /* mem's mapping */
    tpc_timer unused;  /* no stream open and no buffer held since it started: trim */
};

/* How long a pool goes unused (no stream open on it, no buffer held) before its pages go back to
 * the system: after a burst of traffic a shard's pools would otherwise keep every page the
 * kernel ever received into. No receive can write into an unused pool, so the pages can go
 * while its buffers stay in the ring; the next receive into one faults a zeroed page back in. */
#define TRIM_AFTER_NS 1000000000
static int64_t trim_after = TRIM_AFTER_NS; /* (tests shorten it: tpc__bufpool_trim_after) */

static void trim(tpc_timer *t, void *arg)
{
    (void)t;
    tpc_bufpool *p = arg;
    if (!p->nstreams && !p->nheld)
        madvise(p->mem, p->mem_bytes, MADV_DONTNEED); /* (it cannot fail on a mapping of ours) */
}

struct tpc_rx {
    struct tpc__multishot ms; /* the receive in the ring (one at a time) */
    tpc_bufpool *pool;
    int fd;
    int head, tail;          /* queued buffer ids, -1: none */
    unsigned nqueued, nheld; /* its share of the pool */
    bool eof, starved;
    bool promised;   /* armed again by unstarve: counts in the pool's promised till it completes */
    bool closed;     /* tpc_rx_close has begun: a waiter leaves with -ECANCELED */
    bool close_done; /* and finished: freed once no fiber is inside and no buffer is held */
    bool inside;     /* a fiber is inside tpc_rx_next (woken or not) */
    bool poll_first; /* the last receive emptied the socket */
    bool limited;    /* the receive in the ring is a multishot one with a byte limit */
    bool pausing;    /* tpc_rx_close_idle waits for the receive to end: no re-arm */
    int forced;      /* fault injection: the receive's result */
    int err;
    /* Driven by callbacks (tpc__rx_hook, for net/relay.c) instead of a waiting fiber. */
    struct tpc__rx_hooks hooks;
    bool hooked, async_close;
    tpc_list starve_node;
    struct tpc__wait *waiter;
    tpc_timer retry; /* no free SQE: arm at the next loop iteration */
};

static void recycle(tpc_bufpool *p, unsigned bid)
{
    p->state[bid] = IN_RING;
    io_uring_buf_ring_add(p->br, p->mem + (size_t)bid * p->size, (unsigned)p->size,
                          (unsigned short)bid, (int)p->mask, 0);
    io_uring_buf_ring_advance(p->br, 1);
}

static void pool_free(tpc_bufpool *p)
{
    if (p->br)
        munmap(p->br, p->br_bytes);
    if (p->mem)
        munmap(p->mem, p->mem_bytes);
    tpc_timer_stop(&p->unused);
    free(p->next);
    free(p->len);
    free(p->gen);
    free(p->owner);
    free(p->state);
    free(p);
}

int tpc_bufpool_create(unsigned count, size_t size, tpc_bufpool **out)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!out || count == 0 || count > 32768 || (count & (count - 1)) || size == 0 ||
        size > UINT32_MAX || (size_t)count * size / count != size)
        return -EINVAL;
    struct tpc__net_shard *ns = tpc__net_of(s);
    if (ns->next_bgid == UINT16_MAX && !ns->nfree_bgids)
        return -ENOSPC;
    tpc_bufpool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->shard = s;
    p->count = count;
    p->mask = count - 1;
    p->size = size;
    p->share = count / 4 ? count / 4 : 1;
    bool reuse = ns->nfree_bgids > 0; /* a destroyed pool's id, else a new one */
    p->bgid = reuse ? ns->free_bgids[ns->nfree_bgids - 1] : ns->next_bgid;
    tpc__list_init(&p->starved);
    p->br_bytes = tpc__page_round(count * sizeof(struct io_uring_buf));
    p->br = mmap(NULL, p->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p->mem_bytes = tpc__page_round((size_t)count * size); /* (a mapping of its own: trimmed) */
    p->mem = mmap(NULL, p->mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    tpc_timer_init(&p->unused, trim, p);
    p->next = malloc(count * sizeof(*p->next));
    p->len = malloc(count * sizeof(*p->len));
    p->gen = calloc(count, sizeof(*p->gen));
    p->owner = calloc(count, sizeof(*p->owner));
    p->state = calloc(count, 1);
    int rc = -ENOMEM;
    if (p->br == MAP_FAILED)
        p->br = NULL;
    if (p->mem == MAP_FAILED)
        p->mem = NULL;
    if (!p->br || !p->mem || !p->next || !p->len || !p->gen || !p->owner || !p->state)
        goto fail;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)p->br, .ring_entries = count, .bgid = p->bgid};
    rc = s->ep ? tpc__ep_buf_ring(s, p->br, count, p->bgid)
               : io_uring_register_buf_ring(&s->ring, &reg, 0);
    if (rc < 0)
        goto fail;
    io_uring_buf_ring_init(p->br);
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(p->br, p->mem + (size_t)i * size, (unsigned)size, (unsigned short)i,
                              (int)p->mask, (int)i);
    io_uring_buf_ring_advance(p->br, (int)count);
    if (reuse)
        ns->nfree_bgids--;
    else
        ns->next_bgid++;
    *out = p;
    return 0;
fail:
    pool_free(p);
    return rc;
}

int64_t tpc__bufpool_trim_after(int64_t ns)
{
    int64_t was = trim_after;
    trim_after = ns >= 0 ? ns : TRIM_AFTER_NS;
    return was;
}

/* A stream closed or a buffer came back: once nothing uses the pool, a destroyed pool goes back
 * to the kernel, a live one starts the wait before its pages do. */
static void pool_unused(tpc_bufpool *p)
{
    if (p->nstreams || p->nheld)
        return;
    if (!p->destroyed) {
        tpc_timer_start(&p->unused, trim_after, 0);
        return;
    }
    if (!p->shard->ep && !p->shard->ring_ok) { /* run after its shard left: the ring went */
        pool_free(p);
        return;
    }
    if (p->shard->ep)
        tpc__ep_buf_ring_drop(p->shard, p->bgid);
    else
        io_uring_unregister_buf_ring(&p->shard->ring, p->bgid);
    /* The id goes back for the next pool (if the list cannot grow, it is simply not reused). */
    struct tpc__net_shard *s = tpc__net_of(p->shard);
    if (s->nfree_bgids == s->cap_free_bgids) {
        unsigned cap = s->cap_free_bgids ? 2 * s->cap_free_bgids : 16;
        uint16_t *ids = realloc(s->free_bgids, cap * sizeof(*ids));
        if (ids)
            s->free_bgids = ids, s->cap_free_bgids = cap;
    }
    if (s->nfree_bgids < s->cap_free_bgids)
        s->free_bgids[s->nfree_bgids++] = p->bgid;
    pool_free(p);
}

int tpc_bufpool_destroy(tpc_bufpool *p)
{
    if (!p)
        return 0;
    if (p->shard != tpc__self)
        return tpc__self ? -EXDEV : -EPERM;
    if (p->destroyed)
        return -EINVAL;
    p->destroyed = true;
    pool_unused(p); /* now, or when the last stream closes or the last buffer comes back */
    return 0;
}

unsigned tpc__bufpool_count(const tpc_bufpool *p)
{
    return p->count;
}

int tpc_bufpool_available(const tpc_bufpool *p)
{
    return p ? (int)(p->count - p->nheld - p->nqueued) : -EINVAL;
}

static void rx_wake(tpc_rx *rx)
{
    if (rx->waiter)
        tpc__wake(rx->waiter, 0);
}

static void arm(tpc_rx *rx);
static bool at_share(const tpc_rx *rx);

#ifdef TPC_FAULT_INJECTION
int tpc__rx_limit(int set)
{
    int was = __atomic_load_n(&mshot_limit, __ATOMIC_RELAXED);
    __atomic_store_n(&mshot_limit, set, __ATOMIC_RELAXED);
    return was;
}
#endif

/* A limited receive's completion: false if it says the kernel has no byte limit. */
static bool limit_known(int res)
{
    int known = __atomic_load_n(&mshot_limit, __ATOMIC_RELAXED);
    if (known == 0 && res == -EINVAL) {
        __atomic_store_n(&mshot_limit, -1, __ATOMIC_RELAXED);
        return false;
    }
    if (known == 0 && res > 0)
        __atomic_store_n(&mshot_limit, 1, __ATOMIC_RELAXED);
    return known >= 0 || res != -EINVAL;
}
static void close_finish(tpc_rx *rx);

static unsigned available(const tpc_bufpool *p)
{
    return p->count - p->nheld - p->nqueued;
}

static void unpromise(tpc_rx *rx)
{
    if (rx->promised) {
        rx->promised = false;
        rx->pool->promised--;
    }
}

/* Buffers came back: arm starved streams, oldest first, one per free buffer that no stream armed
 * before it is about to take (arming every starved stream for one buffer made all but one of
 * them fail again: a storm of receives when many starve). */
static void unstarve(tpc_bufpool *p)
{
    tpc_list *n;
    while (available(p) > p->promised && (n = tpc__list_first(&p->starved))) {
        tpc_rx *rx = tpc__container_of(n, tpc_rx, starve_node);
        tpc__list_remove(n);
        rx->starved = false;
        rx->promised = true;
        p->promised++;
        arm(rx); /* (or its retry timer will) */
        if (!rx->ms.armed && !tpc_timer_pending(&rx->retry))
            unpromise(rx); /* it wants none after all (at its share, ended, closing) */
    }
}

static void rx_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    tpc_rx *rx = tpc__container_of(op, tpc_rx, ms.op);
    tpc_bufpool *p = rx->pool;
#ifdef TPC_FAULT_INJECTION
    if (rx->forced) /* a no-op stood in for the receive (no buffer, no F_MORE) */
        res = rx->forced, rx->forced = 0;
#endif
    bool closing = tpc__multishot_seen(s, &rx->ms, flags);
    bool was_promised = rx->promised;
    unpromise(rx);
    if (was_promised && !(flags & IORING_CQE_F_BUFFER))
        unstarve(p); /* the buffer it was armed for is there for another */
    if (flags & IORING_CQE_F_BUFFER) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        if (closing || res <= 0) {
            if (closing && res > 0 && rx->hooks.dropped)
                *rx->hooks.dropped += (uint64_t)res; /* read from the socket, never delivered */
            recycle(p, bid); /* (the kernel names no buffer without data; a guard) */
            unstarve(p);
        } else {
            TPC__KERNEL_WROTE(p->mem + (size_t)bid * p->size, res);
            p->state[bid] = QUEUED;
            p->owner[bid] = rx;
            p->nqueued++;
            rx->nqueued++;
            p->len[bid] = (uint32_t)res;
            p->next[bid] = UINT16_MAX;
            if (rx->tail >= 0)
                p->next[rx->tail] = (uint16_t)bid;
            else
                rx->head = (int)bid;
            rx->tail = (int)bid;
        }
    }
    if (closing) {
        if (rx->async_close && !rx->ms.armed)
            close_finish(rx);
        return;
    }
    rx->poll_first = !(flags & IORING_CQE_F_SOCK_NONEMPTY);
    if (rx->limited && !s->ep && !limit_known(res)) { /* (what io_uring's kernel takes) */
        arm(rx);     /* the kernel has no byte limit: single shots from now on */
        rx_wake(rx); /* (tpc_rx_close_idle waits for this receive's end) */
        return;
    }
    if ((flags & IORING_CQE_F_MORE) && at_share(rx))
        tpc__multishot_cancel(s, &rx->ms); /* smaller chunks than the limit assumed */
    if (res == 0) {
        rx->eof = true;
    } else if (res == -ENOBUFS) {
        /* The ring was empty when the kernel looked. If a buffer has come back since (its
         * release found this stream not yet starved), simply re-arm below. */
        if (!rx->starved && available(p) == 0) {
            rx->starved = true; /* at the back; at the front if it was armed for a buffer that
                                   another stream's receive took first */
            tpc__list_push(was_promised ? p->starved.next : &p->starved, &rx->starve_node);
        }
    } else if (res == -EAGAIN) {
        rx->poll_first = true; /* the kernel gave up on it (it does under load): wait, again */
    } else if (res < 0 && res != -ECANCELED) {
        rx->err = res;
    }
    arm(rx); /* the next chunk, unless the stream is at its share */
    if (rx->hooked)
        rx->hooks.ready(rx->hooks.arg); /* last: it may close rx */
    else
        rx_wake(rx);
}

static unsigned share(const tpc_rx *rx)
{
    return rx->hooks.share ? rx->hooks.share : rx->pool->share;
}

static bool at_share(const tpc_rx *rx)
{
    return rx->nqueued + rx->nheld >= share(rx);
}

/* Puts a receive in the ring unless one is there, the stream has ended, waits for buffers, has
 * its share of the pool, or waits for its retry. */
static void arm(tpc_rx *rx)
{
    if (rx->ms.armed || rx->ms.closing || rx->pausing || rx->eof || rx->err || rx->starved ||
        at_share(rx) || tpc_timer_pending(&rx->retry) || rx->pool->shard->stopping)
        return; /* (stopping: nothing new, and after the shard left its ring is gone) */
    struct io_uring_sqe *sqe = tpc__sqe(rx->pool->shard);
    if (!sqe) {
        tpc_timer_start(&rx->retry, 0, 0); /* no SQE free now: at the next loop iteration */
        return;
    }
    io_uring_prep_recv(sqe, rx->fd, NULL, rx->hooks.len, 0); /* len 0: the buffer's */
    rx->limited = __atomic_load_n(&mshot_limit, __ATOMIC_RELAXED) >= 0;
    if (rx->limited) {
        uint64_t chunk = rx->hooks.len ? rx->hooks.len : rx->pool->size;
        uint64_t limit = (share(rx) - rx->nqueued - rx->nheld) * chunk;
        sqe->ioprio |= IORING_RECV_MULTISHOT;
        sqe->file_index = limit < UINT32_MAX ? (uint32_t)limit : UINT32_MAX; /* uapi's optlen */
#ifdef TPC_FAULT_INJECTION
        if (tpc__fault_hidden_features() & TPC__FEAT_RECV_LIMIT)
            sqe->ioprio &= ~IORING_RECV_MULTISHOT; /* a limit on a single shot: -EINVAL, as old */
#endif
    }
    if (rx->poll_first)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = rx->pool->bgid;
#ifdef TPC_FAULT_INJECTION
    if ((rx->forced = tpc__fault_inject(sqe)) != 0)
        sqe->flags &= (unsigned char)~IOSQE_BUFFER_SELECT; /* a no-op selects no buffer */
#endif
    tpc__multishot_arm(&rx->ms, sqe);
}

static void retry_fire(tpc_timer *t, void *arg)
{
    tpc_rx *rx = arg;
    if (!rx->async_close) {
        arm(rx);
        return;
    }
    tpc__multishot_cancel(rx->pool->shard, &rx->ms); /* the cancel found no free SQE */
    if (rx->ms.armed && !rx->ms.stopping)
        tpc_timer_start(t, 0, 0);
}

/* Frees a closed stream once its close has finished, no fiber is inside it and the caller holds
 * none of its buffers. */
static void rx_maybe_free(tpc_rx *rx)
{
    if (rx->close_done && !rx->inside && !rx->nheld)
        free(rx);
}

int tpc_buf_release(tpc_buf *b)
{
    if (!b || !b->pool_)
        return -EINVAL;
    tpc_bufpool *p = b->pool_;
    if (p->shard != tpc__self)
        return tpc__self ? -EXDEV : -EPERM;
    unsigned bid = b->id_;
    if (bid >= p->count || p->state[bid] != HELD || p->gen[bid] != b->gen_)
        return -EINVAL; /* not held, or held by whoever got it since: a double or stale release */
    tpc_rx *rx = p->owner[bid];
    p->owner[bid] = NULL;
    p->nheld--;
    rx->nheld--;
    recycle(p, bid);
    b->pool_ = NULL;
    b->data = NULL;
    b->len = 0;
    unstarve(p);
    if (!rx->closed)
        arm(rx); /* it may have stopped at its share */
    else
        rx_maybe_free(rx);
    pool_unused(p);
    return 0;
}

int tpc_rx_open(int fd, tpc_bufpool *p, tpc_rx **out)
{
    return tpc__rx_open(fd, p, NULL, out);
}

int tpc__rx_open(int fd, tpc_bufpool *p, const struct tpc__rx_hooks *h, tpc_rx **out)
{
    if (!tpc__self)
        return -EPERM;
    if (fd < 0 || !p || !out || p->destroyed)
        return -EINVAL;
    if (p->shard != tpc__self)
        return -EXDEV;
    if (tpc__self->stopping) /* (also: a message run after its shard left, whose ring is gone) */
        return -ESHUTDOWN;
    tpc_rx *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return -ENOMEM;
    tpc__multishot_init(&rx->ms, rx_complete);
    rx->pool = p;
    rx->fd = fd;
    rx->head = rx->tail = -1;
    tpc__list_init(&rx->starve_node);
    tpc_timer_init(&rx->retry, retry_fire, rx);
    p->nstreams++;
    tpc_timer_stop(&p->unused);
    if (h)
        tpc__rx_hook(rx, h); /* before the first receive: its limit is the hooks' share */
    arm(rx);
    *out = rx;
    return 0;
}

ssize_t tpc_rx_next(tpc_rx *rx, tpc_buf *b)
{
    TPC__CHECK_SUSPEND();
    if (!rx || !b)
        return -EINVAL;
    tpc_bufpool *p = rx->pool;
    if (p->shard != tpc__self)
        return -EXDEV;
    if (rx->inside)
        return -EBUSY;
    if (rx->closed)
        return -ECANCELED; /* a close is under way in another fiber */
    if (rx->head < 0 && !rx->eof && !rx->err && at_share(rx))
        return -ENOBUFS; /* the caller holds the stream's whole share: nothing can come */
    while (rx->head < 0 && !rx->eof && !rx->err) {
        arm(rx); /* (or its retry timer will) */
        struct tpc__wait w;
        rx->waiter = &w;
        rx->inside = true;
        int rc = tpc__park(NULL, &w);
        rx->waiter = NULL;
        rx->inside = false;
        if (rx->closed) {
            rx_maybe_free(rx);
            return -ECANCELED;
        }
        if (rc < 0)
            return rc; /* cancelled or timed out: whatever arrives stays queued */
    }
    return tpc__rx_take(rx, b);
}

ssize_t tpc__rx_take(tpc_rx *rx, tpc_buf *b)
{
    tpc_bufpool *p = rx->pool;
    if (rx->head >= 0) {
        unsigned bid = (unsigned)rx->head;
        rx->head = p->next[bid] == UINT16_MAX ? -1 : p->next[bid];
        if (rx->head < 0)
            rx->tail = -1;
        p->state[bid] = HELD;
        p->nqueued--;
        p->nheld++;
        rx->nqueued--;
        rx->nheld++;
        *b = (tpc_buf){.data = p->mem + (size_t)bid * p->size,
                       .len = p->len[bid],
                       .pool_ = p,
                       .id_ = bid,
                       .gen_ = ++p->gen[bid]};
        return (ssize_t)b->len;
    }
    return rx->err ? rx->err : rx->eof ? 0 : -EAGAIN;
}

/* The end of a close, once the kernel has let go: queued chunks go back to the pool. rx is freed
 * now or when the last buffer held from it comes back; a hooked stream's `gone` runs last. */
static void close_finish(tpc_rx *rx)
{
    tpc_bufpool *p = rx->pool;
    while (rx->head >= 0) {
        unsigned bid = (unsigned)rx->head;
        rx->head = p->next[bid] == UINT16_MAX ? -1 : p->next[bid];
        p->nqueued--;
        p->owner[bid] = NULL;
        if (rx->hooks.dropped)
            *rx->hooks.dropped += p->len[bid];
        recycle(p, bid);
    }
    if (rx->starved)
        tpc__list_remove(&rx->starve_node);
    unpromise(rx);
    p->nstreams--;
    tpc_timer_stop(&rx->retry);
    rx->close_done = true;
    struct tpc__rx_hooks h = rx->hooks;
    bool hooked = rx->hooked;
    rx_maybe_free(rx); /* else when the last fiber leaves or the last buffer comes back */
    unstarve(p);       /* buffers came back */
    pool_unused(p);
    if (hooked && h.gone)
        h.gone(h.arg);
}

int tpc_rx_close_idle(tpc_rx *rx)
{
    TPC__CHECK_SUSPEND();
    if (!rx)
        return -EINVAL;
    tpc_bufpool *p = rx->pool;
    if (p->shard != tpc__self)
        return -EXDEV;
    if (rx->inside || rx->closed || rx->hooked)
        return -EBUSY; /* another fiber waits on it or closes it; a relay's */
    if (rx->nheld)
        return -EBUSY; /* the caller holds chunks of it: release them first */
    /* Stop the receive without dropping what it brings: rx_complete queues as usual, and arm
     * refuses while `pausing`. The final completion wakes this fiber (it waits as tpc_rx_next's
     * callers do, uninterruptibly: the kernel must let go before the stream can close). */
    rx->pausing = true;
    while (rx->head < 0 && rx->ms.armed) {
        tpc__multishot_cancel(p->shard, &rx->ms);
        struct tpc__wait w;
        rx->waiter = &w;
        rx->inside = true;
        if (rx->ms.stopping)
            tpc__park_hard(&w);
        else
            tpc_yield(); /* no free SQE for the cancel: let the loop submit and reap */
        rx->waiter = NULL;
        rx->inside = false;
    }
    rx->pausing = false;
    if (rx->head >= 0) {
        arm(rx); /* a chunk came first: the stream goes on */
        return -EAGAIN;
    }
    return tpc_rx_close(rx); /* nothing in the ring, nothing queued: nothing is lost */
}

int tpc_rx_close(tpc_rx *rx)
{
    if (!rx)
        return 0;
    tpc_bufpool *p = rx->pool;
    if (p->shard != tpc__self)
        return tpc__self ? -EXDEV : -EPERM;
    if (rx->closed || rx->pausing)
        return -EINVAL; /* another fiber is closing it (tpc_rx_close_idle: it closes or goes on) */
    if (rx->ms.armed && !tpc__self->current)
        return -EPERM; /* the kernel must be waited for: that takes a fiber */
    rx->closed = true;
    if (rx->waiter) {
        tpc__wake(rx->waiter, -ECANCELED);
        rx->waiter = NULL;
    }
    tpc_timer_stop(&rx->retry);
    tpc__multishot_stop(p->shard, &rx->ms);
    close_finish(rx);
    return 0;
}

bool tpc__rx_starved_empty(const tpc_rx *rx)
{
    return rx->starved && !rx->nqueued && !rx->nheld && !rx->ms.armed;
}

void tpc__rx_hook(tpc_rx *rx, const struct tpc__rx_hooks *h)
{
    rx->hooks = h ? *h : (struct tpc__rx_hooks){0};
    rx->hooked = h != NULL;
}

void tpc__rx_close_async(tpc_rx *rx)
{
    if (rx->closed)
        return;
    rx->closed = rx->async_close = true;
    tpc_timer_stop(&rx->retry);
    if (!rx->ms.armed) {
        close_finish(rx);
        return;
    }
    rx->ms.closing = true; /* its final completion finishes the close (rx_complete) */
    tpc__multishot_cancel(rx->pool->shard, &rx->ms);
    if (!rx->ms.stopping)
        tpc_timer_start(&rx->retry, 0, 0); /* no free SQE for the cancel: at the next turn */
}
