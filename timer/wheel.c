/* The timing wheel. Placement invariant: a timer due at tick D with delta = D - now sits at the
 * lowest level k with delta < 64^(k+1), in slot (D >> 6k) & 63. That slot's range starts at
 * S = D with its low 6k bits cleared, and S is the first tick after now whose level-k index is
 * that slot, so processing level k's slot at each aligned tick S (cascading its timers to lower
 * levels, or firing them at level 0) meets every timer exactly when its range begins.
 * A timer beyond the wheel's range (64^6 ticks) goes to the top level, where its slot comes round
 * within 64^6 ticks, so before it is due; it is then placed again, nearer. */
#include <string.h>
#include "core/list.h"
#include "wheel.h"

#define SLOT_DUE    (TPC_WHEEL_LEVELS * TPC_WHEEL_SLOTS) /* the due list; also "in no list" */
#define SLOT_STAGED (SLOT_DUE + 1)                       /* waiting in w->staged */
#define SPAN(k)     ((uint64_t)1 << (TPC_WHEEL_BITS * (k)))

_Static_assert(TPC_WHEEL_AHEAD <= 256 && TPC_WHEEL_STAGED <= 256 && TPC_WHEEL_LISTS < 65536,
               "tpc_timer.recent and .slot must hold a ring position and a list number");

void tpc__wheel_init(struct tpc__wheel *w, uint64_t now)
{
    memset(w, 0, sizeof(*w));
    w->now = now;
    tpc__list_init(&w->due);
    for (int k = 0; k < TPC_WHEEL_LEVELS; k++)
        for (unsigned i = 0; i < TPC_WHEEL_SLOTS; i++)
            tpc__list_init(&w->slots[k][i]);
}

static tpc_list *list_of(struct tpc__wheel *w, unsigned id)
{
    return id == SLOT_DUE ? &w->due : &w->slots[id / TPC_WHEEL_SLOTS][id % TPC_WHEEL_SLOTS];
}

static struct tpc__timer *timer_of(tpc_list *n)
{
    return tpc__container_of(n, struct tpc__timer, node);
}

/* Both ends of a timer: 88 bytes (on 64-bit) at any alignment may span two cache lines. */
static inline void prefetch_timer(const struct tpc__timer *t)
{
    if (t) {
        __builtin_prefetch(t, 1);
        __builtin_prefetch((const char *)t + sizeof(*t) - 1, 1);
    }
}

/* Firing order: by due tick, then start order (within a level-0 slot every timer has the same
 * due tick, so there it is start order alone). */
static inline bool fires_before(const struct tpc__timer *a, const struct tpc__timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

/* Queues t at the tail of list id, and makes the timer queued TPC_WHEEL_AHEAD before it (if
 * still there) point to it. A list is walked once, when it is fired or cascaded, and in a large
 * one consecutive timers sit anywhere in memory (1M timers started in one pass are 88 MB, met
 * in deadline order): a plain walk waits for one cache miss per timer (~200 ns on the project's
 * VM), one after the other. Prefetching `ahead` keeps TPC_WHEEL_AHEAD misses in flight instead.
 * `ahead` is a hint: when its timer has left (stopped, or even freed), the walk prefetches a line
 * it does not need, which is harmless, and never dereferences it. The ring only holds timers that
 * are in the list (removal clears a timer's entry, taking the list clears the ring), so the
 * `back->ahead` store always lands in a live timer. */
static void enqueue(struct tpc__wheel *w, struct tpc__timer *t, unsigned id)
{
    tpc_list *l = list_of(w, id);
    /* Level-0 slots fire in start order: note one that a cascade appended out of order. The due
     * list (timers already due when placed) fires by due tick, then start order. */
    if (id < TPC_WHEEL_SLOTS && !tpc__list_empty(l) && timer_of(l->prev)->seq > t->seq)
        w->unsorted |= (uint64_t)1 << id;
    else if (id == SLOT_DUE && !tpc__list_empty(l) && !fires_before(timer_of(l->prev), t))
        w->due_unsorted = true;
    tpc__list_push(l, &t->node);
    unsigned c = w->cursor[id];
    struct tpc__timer *back = w->recent[id][c];
    if (back)
        back->ahead = t;
    w->recent[id][c] = t;
    w->cursor[id] = (uint8_t)((c + 1) % TPC_WHEEL_AHEAD);
    t->recent = (uint8_t)c;
    t->ahead = NULL;
    t->slot = (uint16_t)id;
}

/* cascading: a timer due exactly now belongs to the level-0 slot being processed. */
static void place(struct tpc__wheel *w, struct tpc__timer *t, int cascading)
{
    uint64_t due = t->due;
    if (due < w->now || (due == w->now && !cascading)) {
        enqueue(w, t, SLOT_DUE);
        return;
    }
    uint64_t delta = due - w->now;
    unsigned k = 0;
    while (k < TPC_WHEEL_LEVELS - 1 && delta >= SPAN(k + 1))
        k++;
    unsigned i = (unsigned)(due >> (TPC_WHEEL_BITS * k)) & (TPC_WHEEL_SLOTS - 1);
    enqueue(w, t, k * TPC_WHEEL_SLOTS + i);
    w->occupied[k] |= (uint64_t)1 << i;
}

/* Places the staged timers, in start order. */
static void unstage(struct tpc__wheel *w)
{
    for (unsigned i = 0; i < w->nstaged; i++)
        if (w->staged[i])
            place(w, w->staged[i], 0);
    w->nstaged = 0;
}

void tpc__wheel_add(struct tpc__wheel *w, struct tpc__timer *t)
{
    t->seq = w->seq++;
    w->count++;
    if (w->nstaged == TPC_WHEEL_STAGED)
        unstage(w);
    t->slot = SLOT_STAGED;
    t->recent = (uint8_t)w->nstaged;
    w->staged[w->nstaged++] = t;
}

/* t may also be in a list taken out for firing: its slot's list is then another (or empty), so
 * the occupancy bit stays right, and the ring no longer holds it. */
void tpc__wheel_del(struct tpc__wheel *w, struct tpc__timer *t)
{
    unsigned id = t->slot;
    w->count--;
    if (id == SLOT_STAGED) { /* the last one staged leaves no hole */
        if (t->recent + 1u == w->nstaged)
            w->nstaged--;
        else
            w->staged[t->recent] = NULL;
        t->slot = SLOT_DUE;
        return;
    }
    tpc__list_remove(&t->node);
    if (w->recent[id][t->recent] == t)
        w->recent[id][t->recent] = NULL;
    if (id < SLOT_DUE && tpc__list_empty(list_of(w, id))) {
        w->occupied[id / TPC_WHEEL_SLOTS] &= ~((uint64_t)1 << (id % TPC_WHEEL_SLOTS));
        if (id < TPC_WHEEL_SLOTS)
            w->unsorted &= ~((uint64_t)1 << id);
    }
    t->slot = SLOT_DUE;
}

/* The next tick after now at which some occupied slot is processed, or UINT64_MAX. */
static uint64_t next_slot_tick(const struct tpc__wheel *w)
{
    uint64_t best = UINT64_MAX;
    for (int k = 0; k < TPC_WHEEL_LEVELS; k++) {
        uint64_t bits = w->occupied[k];
        if (!bits)
            continue;
        /* The first m > now >> 6k (level-k index m & 63) whose slot is occupied. */
        uint64_t m0 = (w->now >> (TPC_WHEEL_BITS * k)) + 1;
        unsigned start = (unsigned)(m0 & (TPC_WHEEL_SLOTS - 1));
        uint64_t rot = start ? (bits >> start) | (bits << (64 - start)) : bits;
        uint64_t t = (m0 + (uint64_t)__builtin_ctzll(rot)) << (TPC_WHEEL_BITS * k);
        if (t < best)
            best = t;
    }
    return best;
}

uint64_t tpc__wheel_next(struct tpc__wheel *w)
{
    unstage(w);
    return tpc__list_empty(&w->due) ? next_slot_tick(w) : w->now;
}

/* Sorts a list in firing order (fires_before). The first pass walks it all with prefetching, so
 * that the merge passes (if it is out of order) find the timers in cache. */
static void sort_timers(tpc_list *l)
{
    int sorted = 1;
    for (tpc_list *n = l->next; n != l; n = n->next) {
        prefetch_timer(timer_of(n)->ahead);
        if (n->next != l && fires_before(timer_of(n->next), timer_of(n)))
            sorted = 0;
    }
    if (sorted)
        return;
    /* Bottom-up merge sort on the next pointers, then rebuild prev. */
    tpc_list *head = l->next;
    l->prev->next = NULL;
    for (size_t width = 1;; width *= 2) {
        tpc_list *p = head, *tail = NULL;
        head = NULL;
        size_t merges = 0;
        while (p) {
            merges++;
            tpc_list *q = p;
            size_t psize = 0, qsize = width;
            while (psize < width && q) {
                psize++;
                q = q->next;
            }
            while (psize || (qsize && q)) {
                tpc_list *e;
                if (!psize) {
                    e = q, q = q->next, qsize--;
                } else if (!qsize || !q) {
                    e = p, p = p->next, psize--;
                } else if (!fires_before(timer_of(q), timer_of(p))) {
                    e = p, p = p->next, psize--;
                } else {
                    e = q, q = q->next, qsize--;
                }
                if (tail)
                    tail->next = e;
                else
                    head = e;
                tail = e;
            }
            p = q;
        }
        tail->next = NULL;
        if (merges <= 1)
            break;
    }
    tpc_list *prev = l, *n;
    for (n = head; n; prev = n, n = n->next)
        n->prev = prev;
    prev->next = l;
    l->prev = prev;
    l->next = head;
}

/* Moves list id's timers to `out` for firing or cascading, so that callbacks may change the
 * wheel freely. O(1): the timers keep their slot number (see tpc__wheel_del). */
static void take(struct tpc__wheel *w, unsigned id, tpc_list *out)
{
    tpc_list *from = list_of(w, id);
    tpc__list_init(out);
    if (tpc__list_empty(from))
        return;
    out->next = from->next;
    out->prev = from->prev;
    out->next->prev = out;
    out->prev->next = out;
    tpc__list_init(from);
    memset(w->recent[id], 0, sizeof(w->recent[id]));
    w->cursor[id] = 0;
}

static size_t fire_list(struct tpc__wheel *w, tpc_list *l, tpc__wheel_fire_fn fire, void *ctx)
{
    size_t n = 0;
    tpc_list *e;
    while ((e = tpc__list_first(l))) {
        struct tpc__timer *t = timer_of(e);
        prefetch_timer(t->ahead);
        tpc__list_remove(e);
        t->slot = SLOT_DUE;
        w->count--;
        n++;
        fire(t, ctx);
    }
    return n;
}

size_t tpc__wheel_advance(struct tpc__wheel *w, uint64_t to, tpc__wheel_fire_fn fire, void *ctx)
{
    tpc_list local;
    size_t fired = 0;
    unstage(w);
    take(w, SLOT_DUE, &local);
    if (w->due_unsorted) {
        w->due_unsorted = false;
        sort_timers(&local);
    }
    fired += fire_list(w, &local, fire, ctx);
    while (w->now < to) {
        /* Already-due timers that callbacks add wait for the next advance. */
        unstage(w);
        uint64_t next = next_slot_tick(w);
        if (next > to) {
            w->now = to;
            break;
        }
        /* Jumping over ticks is safe: next_tick says no slot is processed in between. */
        w->now = next;
        for (unsigned k = TPC_WHEEL_LEVELS - 1; k >= 1; k--) {
            if (next & (SPAN(k) - 1))
                continue;
            unsigned i = (unsigned)(next >> (TPC_WHEEL_BITS * k)) & (TPC_WHEEL_SLOTS - 1);
            if (!(w->occupied[k] & ((uint64_t)1 << i)))
                continue;
            w->occupied[k] &= ~((uint64_t)1 << i);
            take(w, k * TPC_WHEEL_SLOTS + i, &local);
            tpc_list *e;
            while ((e = tpc__list_first(&local))) {
                struct tpc__timer *t = timer_of(e);
                prefetch_timer(t->ahead);
                tpc__list_remove(e);
                place(w, t, 1);
            }
        }
        unsigned i = (unsigned)next & (TPC_WHEEL_SLOTS - 1);
        uint64_t bit = (uint64_t)1 << i;
        if (w->occupied[0] & bit) {
            w->occupied[0] &= ~bit;
            take(w, i, &local);
            if (w->unsorted & bit) {
                w->unsorted &= ~bit;
                sort_timers(&local);
            }
            fired += fire_list(w, &local, fire, ctx);
        }
    }
    return fired;
}
