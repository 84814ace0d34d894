/* Cross-shard channel (include/tpc/xchan.h).
 *
 * A ring of void * slots with the same index discipline as the shard-to-shard rings, and two
 * ends that never block each other. A fiber with nothing to do announces it (rx_sleeping or
 * tx_sleeping), re-checks, and parks in its end's waiter list. The other side, after publishing
 * its index, exchanges the flag and, if it was set, sends one "kick" message to the waiting
 * end's shard (tpc__send_reply: it never blocks or fails); the kick wakes every waiter there,
 * and they re-check. A kick already in flight (`kicking`) makes a second one unnecessary: it
 * runs after the new waiter parked. Store-then-load pairs are sequentially consistent, as in
 * core/ring.c. Each kick in flight holds a reference, so the channel outlives it.
 *
 * Both ends publish their index in batches, like the rings: at the latest every `batch`
 * values, once per loop iteration of their shard (struct tpc__flush), and before they wait. */
#include <stdlib.h>
#include <string.h>
#include "rings.h"

enum { TX, RX };

struct tpc_xchan {
    uint32_t mask;
    _Atomic int shard[2]; /* bound sending / receiving shard, -1 until first use */
    _Atomic int refs;
    _Atomic int closed;
    struct tpc_runtime *rt;
    uint32_t batch;
    /* The sending shard's. */
    _Alignas(TPC_CACHELINE) uint32_t ptail; /* next slot to fill */
    uint32_t tail_pub;                      /* as last published */
    uint32_t head_cache;
    tpc_list tx_waiters;
    struct tpc__flush tx_flush;
    struct tpc__pending kick_rx; /* sent by the sending shard */
    /* The receiving shard's. */
    _Alignas(TPC_CACHELINE) uint32_t chead; /* next slot to read */
    uint32_t head_pub;
    uint32_t tail_cache;
    tpc_list rx_waiters;
    struct tpc__flush rx_flush;
    struct tpc__pending kick_tx; /* sent by the receiving shard */
    _Alignas(TPC_CACHELINE) _Atomic uint32_t tail;
    _Alignas(TPC_CACHELINE) _Atomic uint32_t head;
    _Alignas(TPC_CACHELINE) _Atomic int sleeping[2]; /* an end has waiters */
    _Atomic int kicking[2];                          /* a kick to that end is in flight */
    _Alignas(TPC_CACHELINE) void *slots[];
};

static void unref(struct tpc_xchan *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

static void wake_all(tpc_list *waiters)
{
    tpc_list *n;
    while ((n = tpc__list_first(waiters)))
        tpc__wake(tpc__container_of(n, struct tpc__wait, node), 0);
}

static void kicked_rx(void *p) /* on the receiving shard */
{
    struct tpc_xchan *c = p;
    atomic_store(&c->kicking[RX], 0);
    wake_all(&c->rx_waiters);
    unref(c);
}

static void kicked_tx(void *p) /* on the sending shard */
{
    struct tpc_xchan *c = p;
    atomic_store(&c->kicking[TX], 0);
    wake_all(&c->tx_waiters);
    unref(c);
}

/* Wakes end `side` if it has waiters. */
static void kick(struct tpc_xchan *c, int side)
{
    if (!atomic_load(&c->sleeping[side]) || !atomic_exchange(&c->sleeping[side], 0))
        return;
    if (atomic_exchange(&c->kicking[side], 1))
        return; /* one is on its way */
    atomic_fetch_add(&c->refs, 1);
    struct tpc__pending *p = side == RX ? &c->kick_rx : &c->kick_tx;
    struct tpc__slot m = {{.fn = side == RX ? kicked_rx : kicked_tx, .arg = c}};
    tpc__send_reply(tpc__self, (unsigned)atomic_load(&c->shard[side]), &m, 1, p);
}

/* Publishes one end's index (tail or head) and wakes the other end if it waits. */
static void publish(struct tpc_xchan *c, _Atomic uint32_t *index, uint32_t *published,
                    uint32_t value, int other)
{
    if (*published == value)
        return;
    *published = value;
    atomic_store(index, value);
    if (atomic_load(&c->shard[other]) >= 0)
        kick(c, other);
}

static void publish_tail(struct tpc_xchan *c)
{
    publish(c, &c->tail, &c->tail_pub, c->ptail, RX);
}

static void publish_head(struct tpc_xchan *c)
{
    publish(c, &c->head, &c->head_pub, c->chead, TX);
}

/* An end's publish left for its shard's next loop turn. The queued flush holds a reference: an
 * end may be released from another shard, and the channel freed, before that turn comes. */
static void flush_later(struct tpc_xchan *c, struct tpc__flush *f)
{
    if (tpc__list_empty(&f->node)) {
        atomic_fetch_add(&c->refs, 1);
        tpc__list_push(&tpc__self->flushq, &f->node);
    }
}

static void flush_tx(struct tpc__flush *f)
{
    struct tpc_xchan *c = tpc__container_of(f, struct tpc_xchan, tx_flush);
    publish_tail(c);
    unref(c);
}

static void flush_rx(struct tpc__flush *f)
{
    struct tpc_xchan *c = tpc__container_of(f, struct tpc_xchan, rx_flush);
    publish_head(c);
    unref(c);
}

/* Publishes now what the caller's shard holds back for the end(s) bound to it: before a close,
 * so that values sent before it are visible to a receiver that sees the close. */
static void flush_own(struct tpc_xchan *c)
{
    int me = (int)tpc__self->id;
    struct tpc__flush *f[2] = {&c->tx_flush, &c->rx_flush};
    for (int side = 0; side < 2; side++)
        if (atomic_load(&c->shard[side]) == me && !tpc__list_empty(&f[side]->node)) {
            tpc__list_remove(&f[side]->node);
            f[side]->fn(f[side]); /* publishes and drops the flush's reference */
        }
}

int tpc_xchan_create(size_t capacity, tpc_xchan **out)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!out || capacity == 0 || capacity > ((size_t)1 << 24))
        return -EINVAL;
    size_t slots = 1;
    while (slots < capacity)
        slots <<= 1;
    size_t size = sizeof(struct tpc_xchan) + slots * sizeof(void *);
    size = (size + TPC_CACHELINE - 1) & ~(size_t)(TPC_CACHELINE - 1);
    struct tpc_xchan *c = aligned_alloc(TPC_CACHELINE, size);
    if (!c)
        return -ENOMEM;
    memset(c, 0, sizeof(*c));
    c->mask = (uint32_t)slots - 1;
    c->batch = slots / 4 < 64 ? (uint32_t)(slots + 3) / 4 : 64;
    tpc__list_init(&c->tx_flush.node);
    tpc__list_init(&c->rx_flush.node);
    c->tx_flush.fn = flush_tx;
    c->rx_flush.fn = flush_rx;
    c->rt = s->rt;
    for (int side = 0; side < 2; side++) {
        atomic_init(&c->shard[side], -1);
        atomic_init(&c->sleeping[side], 0);
        atomic_init(&c->kicking[side], 0);
    }
    atomic_init(&c->refs, 2);
    atomic_init(&c->closed, 0);
    atomic_init(&c->tail, 0);
    atomic_init(&c->head, 0);
    tpc__list_init(&c->tx_waiters);
    tpc__list_init(&c->rx_waiters);
    *out = c;
    return 0;
}

/* Checks the caller and binds the channel's end `side` to its shard on first use. */
static int enter(struct tpc_xchan *c, int side)
{
    TPC__CHECK_SUSPEND();
    if (!c)
        return -EINVAL;
    struct tpc__shard *s = tpc__self;
    if (c->rt != s->rt)
        return -EXDEV;
    int want = -1, me = (int)s->id;
    if (!atomic_compare_exchange_strong(&c->shard[side], &want, me) && want != me)
        return -EXDEV;
    return 0;
}

/* A fiber about to wait holds a reference until it returns: an end may be released (and the
 * channel freed) while a fiber of that end waits on it. Only the waiting path pays for it. */
static void hold(tpc_xchan *c, bool *held)
{
    if (!*held) {
        atomic_fetch_add(&c->refs, 1);
        *held = true;
    }
}

static int leave(tpc_xchan *c, bool held, int rc)
{
    if (held)
        unref(c);
    return rc;
}

int tpc_xchan_send(tpc_xchan *c, void *value)
{
    int rc = enter(c, TX);
    if (rc < 0)
        return rc;
    bool held = false;
    for (;;) {
        if (atomic_load_explicit(&c->closed, memory_order_relaxed))
            return leave(c, held, -EPIPE);
        if (c->ptail - c->head_cache <= c->mask ||
            c->ptail - (c->head_cache = atomic_load_explicit(&c->head, memory_order_acquire)) <=
                c->mask)
            break;
        publish_tail(c); /* let the receiver see everything before waiting for room */
        atomic_store(&c->sleeping[TX], 1);
        c->head_cache = atomic_load(&c->head);
        if (c->ptail - c->head_cache <= c->mask || atomic_load(&c->closed))
            continue;
        struct tpc__wait w;
        hold(c, &held);
        if ((rc = tpc__park(&c->tx_waiters, &w)) < 0)
            return leave(c, held, rc);
    }
    c->slots[c->ptail & c->mask] = value;
    c->ptail++;
    if (c->ptail - c->tail_pub >= c->batch)
        publish_tail(c);
    else
        flush_later(c, &c->tx_flush);
    return leave(c, held, 0);
}

int tpc_xchan_recv(tpc_xchan *c, void **value)
{
    if (!value)
        return -EINVAL; /* (before enter: it binds the receiving end to this shard) */
    int rc = enter(c, RX);
    if (rc < 0)
        return rc;
    bool held = false;
    for (;;) {
        if (c->chead != c->tail_cache ||
            c->chead != (c->tail_cache = atomic_load_explicit(&c->tail, memory_order_acquire)))
            break;
        publish_head(c); /* let the sender see all the room before waiting */
        if (atomic_load(&c->closed) && atomic_load(&c->tail) == c->chead)
            return leave(c, held, -EPIPE);
        atomic_store(&c->sleeping[RX], 1);
        if (atomic_load(&c->tail) != c->chead || atomic_load(&c->closed))
            continue;
        struct tpc__wait w;
        hold(c, &held);
        if ((rc = tpc__park(&c->rx_waiters, &w)) < 0)
            return leave(c, held, rc);
    }
    *value = c->slots[c->chead & c->mask];
    c->chead++;
    if (c->chead - c->head_pub >= c->batch)
        publish_head(c);
    else
        flush_later(c, &c->rx_flush);
    return leave(c, held, 0);
}

int tpc_xchan_close(tpc_xchan *c)
{
    if (!tpc__self)
        return -EPERM;
    if (!c)
        return -EINVAL;
    if (c->rt != tpc__self->rt)
        return -EXDEV;
    flush_own(c);
    if (atomic_exchange(&c->closed, 1))
        return 0;
    for (int side = 0; side < 2; side++)
        if (atomic_load(&c->shard[side]) >= 0)
            kick(c, side);
    return 0;
}

int tpc_xchan_release(tpc_xchan *c)
{
    int rc = tpc_xchan_close(c);
    if (rc < 0)
        return rc;
    unref(c);
    return 0;
}
