/* Shard-to-shard message rings.
 *
 * Every ordered pair of shards (i, j) has one bounded single-producer single-consumer ring of
 * {fn, arg} slots, allocated by j (the receiver) on its NUMA node. The sender fills slots
 * privately and publishes its tail in batches: at the latest every s->msg_batch messages, and
 * once per loop iteration (tpc__rings_flush). The receiver drains a ring all at once and
 * publishes its head once.
 *
 * Doorbells. Each shard has a bitmap with one bit per shard. A sender that publishes sets its
 * bit in the receiver's bitmap (if it is not set already), so an idle shard checks one word per
 * 64 shards instead of every ring. A receiver that frees room in a ring whose sender asked for
 * it (want_space) sets its own bit in the sender's bitmap. Bit j therefore means "look at the
 * rings between you and j": drain the one from j, and move pending messages into the one to j.
 *
 * Ordering. Publishing (store tail, then read the doorbell and the receiver's `sleeping` flag)
 * and draining (clear the doorbell, then read tail; or store sleeping, then read the doorbells)
 * are both store-then-load pairs, so they use sequentially consistent operations: of two
 * shards that race, at least one sees the other. A sleeping receiver is woken through its
 * eventfd (tpc__shard_wake), which only the sender that clears `sleeping` pays for.
 *
 * Full rings. A fiber that finds the ring full queues its message in the ring's pending list
 * and suspends; a reply (tpc__send_reply) queues there too but never waits. Pending messages
 * go out oldest first, before anything newer, as the receiver frees room. A plain callback
 * gets -EAGAIN instead. */
#include <stdlib.h>
#include <string.h>
#include "rings.h"

static inline struct tpc__ring *ring_new(unsigned slots)
{
    size_t size = sizeof(struct tpc__ring) + (size_t)slots * sizeof(struct tpc__slot);
    size = (size + TPC_CACHELINE - 1) & ~(size_t)(TPC_CACHELINE - 1);
    struct tpc__ring *r = aligned_alloc(TPC_CACHELINE, size);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->pmask = r->cmask = slots - 1;
    tpc__list_init(&r->pending);
    atomic_init(&r->tail, 0);
    atomic_init(&r->head, 0);
    atomic_init(&r->want_space, 0);
    return r;
}

/* Called by each shard thread before the start handshake: it allocates the rings it receives
 * on, and its doorbells, after it has been pinned and bound to its node. */
int tpc__rings_init(struct tpc__shard *s)
{
    struct tpc_runtime *rt = s->rt;
    unsigned n = rt->nshards;
    s->nbell = (n + 63) / 64;
    size_t bsize =
        ((size_t)s->nbell * sizeof(uint64_t) + TPC_CACHELINE - 1) & ~(size_t)(TPC_CACHELINE - 1);
    s->bell = aligned_alloc(TPC_CACHELINE, bsize);
    s->in = calloc(n, sizeof(*s->in));
    s->dirty = malloc(n * sizeof(*s->dirty));
    if (!s->bell || !s->in || !s->dirty)
        return -ENOMEM;
    for (unsigned w = 0; w < s->nbell; w++)
        atomic_init(&s->bell[w], 0);
    s->out = &rt->rings[(size_t)s->id * n];
    for (unsigned j = 0; j < n; j++) {
        if (j == s->id)
            continue;
        struct tpc__ring *r = ring_new(rt->msg_slots);
        if (!r)
            return -ENOMEM;
        rt->rings[(size_t)j * n + s->id] = s->in[j] = r;
    }
    return 0;
}

void tpc__rings_free(struct tpc_runtime *rt)
{
    for (unsigned i = 0; i < rt->nshards; i++) {
        struct tpc__shard *s = rt->shards[i];
        if (!s)
            continue;
        free(s->bell);
        free(s->in);
        free(s->dirty);
        s->bell = NULL;
        s->in = NULL;
        s->dirty = NULL;
    }
    if (rt->rings)
        for (size_t k = 0; k < (size_t)rt->nshards * rt->nshards; k++)
            free(rt->rings[k]);
    free(rt->rings);
    rt->rings = NULL;
}

/* Tells shard t that the rings between it and shard `from` need a look. */
static void ring_bell(struct tpc__shard *self, struct tpc__shard *t, unsigned from)
{
    _Atomic uint64_t *word = &t->bell[from / 64];
    uint64_t bit = (uint64_t)1 << (from % 64);
    if (!(atomic_load(word) & bit))
        atomic_fetch_or(word, bit);
    if (atomic_load(&t->sleeping) && tpc__shard_wake(t))
        self->n_wakes_sent++;
}

static void ring_publish(struct tpc__shard *s, unsigned to, struct tpc__ring *r)
{
    r->pub = r->ptail;
    atomic_store(&r->tail, r->ptail);
    ring_bell(s, s->rt->shards[to], s->id);
}

/* Room for n more slots. */
static inline bool ring_room_n(struct tpc__ring *r, unsigned n)
{
    if (TPC_UNLIKELY(r->ptail + n - 1 - r->head_cache > r->pmask)) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        return r->ptail + n - 1 - r->head_cache <= r->pmask;
    }
    return true;
}

static inline bool ring_room(struct tpc__ring *r)
{
    return ring_room_n(r, 1);
}

static inline void ring_dirty(struct tpc__shard *s, unsigned to, struct tpc__ring *r)
{
    s->n_msgs_out++;
    if (!r->dirty) {
        r->dirty = true;
        s->dirty[s->ndirty++] = to;
    }
    if (TPC_UNLIKELY(r->ptail - r->pub >= s->msg_batch))
        ring_publish(s, to, r);
}

/* Fills the next slot (the caller checked ring_room) and publishes when a batch is full. */
static inline void ring_push(struct tpc__shard *s, unsigned to, struct tpc__ring *r,
                             tpc_callback_fn fn, void *arg)
{
    struct tpc__slot *sl = &r->slots[r->ptail & r->pmask];
    sl->fn = fn;
    sl->arg = arg;
    r->ptail++;
    ring_dirty(s, to, r);
}

/* The same for a message of n slots (ring_room_n checked). */
static inline void ring_push_msg(struct tpc__shard *s, unsigned to, struct tpc__ring *r,
                                 const struct tpc__slot *m, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        r->slots[(r->ptail + i) & r->pmask] = m[i];
    r->ptail += n;
    ring_dirty(s, to, r);
}

/* Moves pending messages into the ring while it has room; if some are left, publishes what is
 * there and asks the receiver to ring back once it has drained. */
static bool flush_pending(struct tpc__shard *s, unsigned to, struct tpc__ring *r)
{
    bool moved = false;
    for (;;) {
        tpc_list *n;
        while ((n = tpc__list_first(&r->pending))) {
            struct tpc__pending *p = tpc__container_of(n, struct tpc__pending, node);
            if (!ring_room_n(r, p->n))
                break;
            struct tpc__slot m[2] = {p->m[0], p->m[1]};
            unsigned len = p->n;
            struct tpc__wait *w = p->w;
            tpc__list_remove(n);
            p->sent = true;
            if (w && w->fiber)
                tpc__wake(w, 0);
            ring_push_msg(s, to, r, m, len); /* may publish: p may be gone after this */
            moved = true;
        }
        if (tpc__list_empty(&r->pending))
            return moved;
        ring_publish(s, to, r);
        atomic_store(&r->want_space, 1);
        r->head_cache = atomic_load(&r->head);
        struct tpc__pending *first =
            tpc__container_of(tpc__list_first(&r->pending), struct tpc__pending, node);
        if (r->ptail + first->n - 1 - r->head_cache > r->pmask)
            return moved; /* the receiver will ring */
    }
}

/* Runs the flush queue: the updates it holds back (a cross-shard channel's index) are
 * published before any message sent after them, so a shard that learns of a channel send
 * through a message (a reply, say) and then closes the channel cannot close it ahead of the
 * values. Each flush is unlinked before it runs; one may send (a channel's kick) and so run the
 * rest of the queue itself. */
static void run_flushq(struct tpc__shard *s)
{
    tpc_list *n;
    while ((n = tpc__list_first(&s->flushq))) {
        tpc__list_remove(n);
        struct tpc__flush *f = tpc__container_of(n, struct tpc__flush, node);
        f->fn(f);
    }
}

static inline void flush_first(struct tpc__shard *s)
{
    if (TPC_UNLIKELY(!tpc__list_empty(&s->flushq)))
        run_flushq(s);
}

/* The slow path of a send: the ring is full, or older messages wait. */
static int send_wait(struct tpc__shard *s, unsigned to, struct tpc__ring *r, struct tpc__pending *p)
{
    if (!s->current)
        return -EAGAIN;
    struct tpc__wait w;
    w.fiber = NULL;
    p->w = &w;
    p->sent = false;
    tpc__list_push(&r->pending, &p->node);
    flush_pending(s, to, r);
    if (p->sent)
        return 0;
    int rc = tpc__park(NULL, &w);
    if (p->sent) /* it went out, even if a cancel or deadline came at the same time */
        return 0;
    tpc__list_remove(&p->node);
    return rc < 0 ? rc : -EAGAIN;
}

int tpc__send(struct tpc__shard *s, unsigned to, tpc_callback_fn fn, void *arg)
{
    flush_first(s);
    struct tpc__ring *r = s->out[to];
    if (TPC_LIKELY(tpc__list_empty(&r->pending) && ring_room(r))) {
        ring_push(s, to, r, fn, arg);
        return 0;
    }
    struct tpc__pending p = {.m = {{{.fn = fn, .arg = arg}}}, .n = 1};
    return send_wait(s, to, r, &p);
}

int tpc__send_msg(struct tpc__shard *s, unsigned to, struct tpc__pending *p)
{
    flush_first(s);
    struct tpc__ring *r = s->out[to];
    if (TPC_LIKELY(tpc__list_empty(&r->pending) && ring_room_n(r, p->n))) {
        ring_push_msg(s, to, r, p->m, p->n);
        return 0;
    }
    return send_wait(s, to, r, p);
}

int tpc_submit_to(int shard, tpc_callback_fn fn, void *arg)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    struct tpc_runtime *rt = s->rt;
    if (shard < 0 || (unsigned)shard >= rt->nshards || !fn)
        return -EINVAL;
    if (atomic_load_explicit(&rt->stop, memory_order_acquire))
        return -ESHUTDOWN;
    if ((unsigned)shard == s->id)
        return tpc_defer(fn, arg);
    return tpc__send(s, (unsigned)shard, fn, arg);
}

/* Runs a message on this shard as if it had come from shard `from`. */
static void run_msg(struct tpc__shard *s, unsigned from, const struct tpc__slot *m)
{
    if (TPC_UNLIKELY(m[0].w0 < TPC__MSG_MARKS))
        tpc__msg_wide(s, from, m[0].w0, m[0].arg, m[1]);
    else
        m[0].fn(m[0].arg);
}

void tpc__send_reply(struct tpc__shard *s, unsigned to, const struct tpc__slot *m, unsigned n,
                     struct tpc__pending *spare)
{
    flush_first(s);
    if (to == s->id) {
        run_msg(s, to, m);
        return;
    }
    struct tpc__ring *r = s->out[to];
    if (TPC_LIKELY(tpc__list_empty(&r->pending) && ring_room_n(r, n))) {
        ring_push_msg(s, to, r, m, n);
        if (r->ptail != r->pub)
            ring_publish(s, to, r); /* somebody waits for it: no batching */
        return;
    }
    spare->m[0] = m[0];
    if (n > 1)
        spare->m[1] = m[1];
    spare->n = n;
    spare->w = NULL;
    spare->sent = false;
    tpc__list_push(&r->pending, &spare->node);
    flush_pending(s, to, r);
}

void tpc__rings_flush(struct tpc__shard *s)
{
    run_flushq(s);
    for (unsigned i = 0; i < s->ndirty; i++) {
        unsigned to = s->dirty[i];
        struct tpc__ring *r = s->out[to];
        r->dirty = false;
        if (r->ptail != r->pub)
            ring_publish(s, to, r);
    }
    s->ndirty = 0;
}

/* Frees slots up to `head` and, if the sender waits for room, rings its doorbell. */
static void ring_release(struct tpc__shard *s, unsigned from, struct tpc__ring *r, uint32_t head)
{
    atomic_store(&r->head, head);
    if (atomic_load(&r->want_space) && atomic_exchange(&r->want_space, 0))
        ring_bell(s, s->rt->shards[from], s->id);
}

/* Runs every message published in ring r (from shard `from`) and returns how many. Slots are
 * freed every msg_batch messages, so that a sender waiting for room refills the ring while this
 * shard still drains. */
static uint32_t ring_drain(struct tpc__shard *s, unsigned from, struct tpc__ring *r)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t tail = atomic_load(&r->tail);
    if (head == tail)
        return 0;
    uint32_t n = tail - head;
    uint32_t batch = s->msg_batch, freed = head;
    while (head != tail) {
        struct tpc__slot *sl = &r->slots[head & r->cmask];
        tpc_callback_fn fn = sl->fn;
        void *arg = sl->arg;
        head++;
        s->n_msgs_in++;
        if (TPC_UNLIKELY((uintptr_t)fn < TPC__MSG_MARKS)) {
            struct tpc__slot data = r->slots[head & r->cmask];
            head++;
            tpc__msg_wide(s, from, (uintptr_t)fn, arg, data);
        } else {
            fn(arg);
        }
        if (TPC_UNLIKELY(head - freed >= batch) && head != tail)
            ring_release(s, from, r, freed = head);
    }
    ring_release(s, from, r, head);
    return n;
}

/* Doorbells stay set while their rings are busy. A receiver does not clear a bit each time it
 * drains (that would cost a cache-line round trip per message, with the sender setting it
 * again): it keeps polling the rings of set bits directly, and clears a bit only once its ring
 * has been empty for HOT_POLLS polls, or before sleeping. A sender that finds its bit set only
 * publishes. Clearing is "clear the bit, then re-read the tail", so a message published just
 * before the clear is seen by the re-read, and one published after it sets the bit again. */
#define HOT_POLLS 64

/* Something to do between this shard and shard j: messages from j, or pending messages to j
 * and room for the oldest of them (all its slots: a two-slot message does not fit in one free
 * slot, and counting that as work would keep the shard looping without ever running a task).
 * `order` is the loads' memory order: acquire to poll, sequentially consistent for the re-check
 * after a doorbell is cleared (cool), which must not be reordered before the clearing. */
static inline bool pair_ready_ordered(struct tpc__shard *s, unsigned j, memory_order order)
{
    struct tpc__ring *in = s->in[j];
    if (atomic_load_explicit(&in->tail, order) !=
        atomic_load_explicit(&in->head, memory_order_relaxed))
        return true;
    struct tpc__ring *o = s->out[j];
    tpc_list *first = tpc__list_first(&o->pending);
    if (!first)
        return false;
    unsigned n = tpc__container_of(first, struct tpc__pending, node)->n;
    return o->ptail + n - 1 - atomic_load_explicit(&o->head, order) <= o->pmask;
}

static inline bool pair_ready(struct tpc__shard *s, unsigned j)
{
    return pair_ready_ordered(s, j, memory_order_acquire);
}

bool tpc__rings_ready(struct tpc__shard *s)
{
    for (unsigned w = 0; w < s->nbell; w++)
        for (uint64_t b = atomic_load_explicit(&s->bell[w], memory_order_relaxed); b; b &= b - 1)
            if (pair_ready(s, w * 64 + (unsigned)__builtin_ctzll(b)))
                return true;
    return false;
}

bool tpc__rings_owe(struct tpc__shard *s)
{
    struct tpc_runtime *rt = s->rt;
    for (unsigned j = 0; j < rt->nshards; j++)
        if (j != s->id && !tpc__list_empty(&s->out[j]->pending) &&
            !atomic_load(&rt->shards[j]->left)) /* (seq_cst: against sleep_phase's sleeping) */
            return true;
    return false;
}

bool tpc__rings_rung(const struct tpc__shard *s)
{
    for (unsigned w = 0; w < s->nbell; w++)
        if (atomic_load(&s->bell[w]))
            return true;
    return false;
}

/* Clears doorbell bit j; if its rings turned out to have work after all, sets it again (so the
 * next poll sees them) and returns true.
 * With messages waiting for room in the ring to j, the bit may have been j's answer to
 * want_space from a release that freed nothing beyond the head this shard last saw (j consumed
 * want_space and rang, but the room is not there yet). Clearing it then would leave nobody
 * asking: j's later releases find want_space 0 and ring no more, and both shards sleep. So ask
 * again before looking (the same store-then-load as flush_pending's, against the receiver's
 * store of head then load of want_space in ring_release). */
static bool cool(struct tpc__shard *s, unsigned j)
{
    uint64_t bit = (uint64_t)1 << (j % 64);
    atomic_fetch_and(&s->bell[j / 64], ~bit);
    s->in[j]->idle = 0;
    if (!tpc__list_empty(&s->out[j]->pending))
        atomic_store(&s->out[j]->want_space, 1);
    if (!pair_ready_ordered(s, j, memory_order_seq_cst))
        return false;
    atomic_fetch_or(&s->bell[j / 64], bit);
    return true;
}

bool tpc__rings_cool(struct tpc__shard *s)
{
    bool ready = false;
    for (unsigned w = 0; w < s->nbell; w++)
        for (uint64_t b = atomic_load_explicit(&s->bell[w], memory_order_relaxed); b; b &= b - 1)
            ready |= cool(s, w * 64 + (unsigned)__builtin_ctzll(b));
    return ready;
}

bool tpc__rings_poll(struct tpc__shard *s)
{
    bool any = false;
    for (unsigned w = 0; w < s->nbell; w++) {
        uint64_t bits = atomic_load_explicit(&s->bell[w], memory_order_relaxed);
        while (bits) {
            unsigned j = w * 64 + (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            struct tpc__ring *in = s->in[j], *o = s->out[j];
            bool moved = ring_drain(s, j, in) != 0;
            if (!tpc__list_empty(&o->pending))
                moved |= flush_pending(s, j, o);
            if (moved) {
                in->idle = 0;
                any = true;
            } else if (++in->idle >= HOT_POLLS && cool(s, j)) {
                any |= ring_drain(s, j, in) != 0;
                if (!tpc__list_empty(&o->pending))
                    any |= flush_pending(s, j, o);
            }
        }
    }
    return any;
}

/* A message can be sent to a shard that has just left its loop (a reply racing with the
 * shutdown, or a send that checked the stop flag just before it was set). Once every shard
 * thread has been joined, this runs such messages on the runtime's thread, posing as their
 * shard in turn, until nothing moves: a sender that was told 0 is never lost, and no record
 * leaks. Spawning fails (-ESHUTDOWN) at this point, so only callbacks run: the messages, and
 * what they tpc_defer. */
void tpc__rings_afterlife(struct tpc_runtime *rt)
{
    bool moved = true;
    while (moved) {
        moved = false;
        for (unsigned i = 0; i < rt->nshards; i++) {
            struct tpc__shard *s = rt->shards[i];
            if (!s || !s->bell)
                continue;
            tpc__self = s;
            moved |= tpc__rings_poll(s);
            moved |= tpc__run_callbacks(s);
            tpc__rings_flush(s);
            tpc__self = NULL;
        }
        /* Once the messages are all run: the destructors of the per-shard values they set,
         * while the rings are there for what those send (a channel's close tells its peer). */
        for (unsigned i = 0; !moved && i < rt->nshards; i++) {
            struct tpc__shard *s = rt->shards[i];
            if (!s)
                continue;
            tpc__self = s;
            moved |= tpc__locals_fini(s);
            if (s->bell)
                tpc__rings_flush(s);
            tpc__self = NULL;
        }
    }
    for (unsigned i = 0; i < rt->nshards; i++)
        if (rt->shards[i])
            tpc__callbacks_free(rt->shards[i]);
}
