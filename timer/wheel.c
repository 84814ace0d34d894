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

#define SLOT_DUE    0xFFFF /* in the due list */
#define SLOT_FIRING 0xFFFE /* taken out for firing */
#define SPAN(k)     ((uint64_t)1 << (TPC_WHEEL_BITS * (k)))

void tpc__wheel_init(struct tpc__wheel *w, uint64_t now)
{
    memset(w, 0, sizeof(*w));
    w->now = now;
    tpc__list_init(&w->due);
    for (int k = 0; k < TPC_WHEEL_LEVELS; k++)
        for (unsigned i = 0; i < TPC_WHEEL_SLOTS; i++)
            tpc__list_init(&w->slots[k][i]);
}

/* cascading: a timer due exactly now belongs to the level-0 slot being processed. */
static void place(struct tpc__wheel *w, tpc_timer *t, int cascading)
{
    uint64_t due = t->due;
    if (due < w->now || (due == w->now && !cascading)) {
        t->slot = SLOT_DUE;
        tpc__list_push(&w->due, &t->node);
        return;
    }
    uint64_t delta = due - w->now;
    int k = 0;
    while (k < TPC_WHEEL_LEVELS - 1 && delta >= SPAN(k + 1))
        k++;
    unsigned i = (unsigned)(due >> (TPC_WHEEL_BITS * k)) & (TPC_WHEEL_SLOTS - 1);
    t->slot = (uint16_t)(k * TPC_WHEEL_SLOTS + i);
    tpc__list_push(&w->slots[k][i], &t->node);
    w->occupied[k] |= (uint64_t)1 << i;
}

void tpc__wheel_add(struct tpc__wheel *w, tpc_timer *t)
{
    t->seq = w->seq++;
    w->count++;
    place(w, t, 0);
}

void tpc__wheel_del(struct tpc__wheel *w, tpc_timer *t)
{
    tpc__list_remove(&t->node);
    w->count--;
    if (t->slot < SLOT_FIRING) {
        unsigned k = t->slot / TPC_WHEEL_SLOTS, i = t->slot % TPC_WHEEL_SLOTS;
        if (tpc__list_empty(&w->slots[k][i]))
            w->occupied[k] &= ~((uint64_t)1 << i);
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

uint64_t tpc__wheel_next(const struct tpc__wheel *w)
{
    return tpc__list_empty(&w->due) ? next_slot_tick(w) : w->now;
}

/* Sorts a (usually already sorted) list by start order. */
static void sort_by_seq(tpc_list *l)
{
    tpc_list *n = l->next;
    int sorted = 1;
    for (; n->next != l; n = n->next)
        if (tpc__container_of(n, tpc_timer, node)->seq >
            tpc__container_of(n->next, tpc_timer, node)->seq) {
            sorted = 0;
            break;
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
                } else if (tpc__container_of(p, tpc_timer, node)->seq <=
                           tpc__container_of(q, tpc_timer, node)->seq) {
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
    tpc_list *prev = l;
    for (n = head; n; prev = n, n = n->next)
        n->prev = prev;
    prev->next = l;
    l->prev = prev;
    l->next = head;
}

/* Moves a list's timers to `out` for firing, so that callbacks may change the wheel freely. */
static void take(tpc_list *from, tpc_list *out)
{
    tpc__list_init(out);
    if (tpc__list_empty(from))
        return;
    for (tpc_list *n = from->next; n != from; n = n->next)
        tpc__container_of(n, tpc_timer, node)->slot = SLOT_FIRING;
    out->next = from->next;
    out->prev = from->prev;
    out->next->prev = out;
    out->prev->next = out;
    tpc__list_init(from);
}

static size_t fire_list(struct tpc__wheel *w, tpc_list *l, tpc__wheel_fire_fn fire, void *ctx)
{
    size_t n = 0;
    tpc_list *e;
    while ((e = tpc__list_first(l))) {
        tpc_timer *t = tpc__container_of(e, tpc_timer, node);
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
    take(&w->due, &local);
    fired += fire_list(w, &local, fire, ctx);
    while (w->now < to) {
        /* Already-due timers that callbacks add wait for the next advance. */
        uint64_t next = next_slot_tick(w);
        if (next > to) {
            w->now = to;
            break;
        }
        /* Jumping over ticks is safe: next_tick says no slot is processed in between. */
        w->now = next;
        for (int k = TPC_WHEEL_LEVELS - 1; k >= 1; k--) {
            if (next & (SPAN(k) - 1))
                continue;
            unsigned i = (unsigned)(next >> (TPC_WHEEL_BITS * k)) & (TPC_WHEEL_SLOTS - 1);
            if (!(w->occupied[k] & ((uint64_t)1 << i)))
                continue;
            w->occupied[k] &= ~((uint64_t)1 << i);
            take(&w->slots[k][i], &local);
            tpc_list *e;
            while ((e = tpc__list_first(&local))) {
                tpc__list_remove(e);
                place(w, tpc__container_of(e, tpc_timer, node), 1);
            }
        }
        unsigned i = (unsigned)next & (TPC_WHEEL_SLOTS - 1);
        if (w->occupied[0] & ((uint64_t)1 << i)) {
            w->occupied[0] &= ~((uint64_t)1 << i);
            take(&w->slots[0][i], &local);
            sort_by_seq(&local);
            fired += fire_list(w, &local, fire, ctx);
        }
    }
    return fired;
}
