/* libFuzzer target: the shard-to-shard message rings (core/ring.c) against a reference model, a
 * FIFO queue per ordered pair of shards (tests/ring-model.h). Single-threaded and deterministic:
 * ring.c is compiled in here, and the few functions it calls elsewhere in core are replaced:
 * parking and waking a fiber, waking a sleeping shard, and running a two-slot message
 * (tpc__msg_wide). The shards are 2 to 4 shard structures with rings of 2 to 16 slots, set up
 * by tpc__rings_init as the runtime does (a batch is half a ring), so rings are often full.
 *
 * The input is a header byte (shards, slots, whether the end goes through the afterlife) and a
 * program: each operation runs on one shard, as its loop would. Sends from a callback
 * (tpc__send or tpc_submit_to, -EAGAIN on a full ring), from a fiber (a full ring parks it: the
 * program then goes on "while it sleeps", nested inside the parked call, until an operation
 * resumes it; a cancel or a passed deadline may end the wait), two-slot messages
 * (tpc__send_msg) and replies (tpc__send_reply, also to the shard itself), tpc__rings_poll
 * (once, or many times, to cool idle doorbells), tpc__rings_flush, the loop's way to sleep
 * (flush, tpc__rings_cool, store `sleeping`, tpc__rings_rung), a spurious wake-up, and
 * flush-queue entries (which may send). A delivered message may itself reply or send, as a
 * remote call's does, and may let the program run inside it: the other shards then act while
 * its shard is half-way through a drain, its last slots not yet released, as on their own
 * threads. When the program ends, every shard loops until all sleep.
 *
 * Checked: every message runs exactly once, on its receiver, in send order per pair (pending
 * messages before later sends), with its function, argument and both words of a wide message
 * intact; after every operation, the ring contents between head and the private tail, then the
 * pending list, are exactly the pair's queue in the model; the published tail, batching, the
 * dirty list, head_cache and the idle counts are consistent; a published message has its
 * doorbell set; a pending message has want_space set or its doorbell set; a sleeping shard has
 * no doorbell set, nothing unpublished and no queued flush; -EAGAIN only when the ring is full
 * or messages wait; a parked sender waits only while its message is pending and is woken, by
 * its own shard, once it went; flushes run before any message sent after them was queued;
 * tpc__rings_ready promises only work that tpc__rings_poll then does, and tpc__rings_owe and
 * tpc__rings_rung agree with the state; the msgs_in, msgs_out and wake-up counters agree with
 * the model. At the end, nothing is left anywhere: a lost wake-up leaves all shards asleep with
 * messages waiting. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/ring.c"

/* The harness's own paths do not guide the fuzzer (ring.c's and the features below do): they
 * would cost time every run (the checks after every operation above all) and say nothing new
 * about the rings. */
#ifdef __clang__
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

#include "../ring-model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NS        RING_MODEL_SHARDS
#define MAX_DEPTH 6  /* fibers parked at once (nested) */
#define NFLUSH    16 /* flush-queue entries */

static struct tpc_runtime rt;
static struct tpc__shard shard[NS];
static struct tpc__shard *shard_ptr[NS];
static unsigned nsh, slots;
static struct ring_model model;
static uint64_t wakes[NS]; /* sleeping shards each shard woke */

/* What the harness knows of a message besides the model's from, to and state. */
static struct msg {
    uint8_t n;      /* slots */
    uint8_t fn;     /* one slot: which of the two functions */
    uint8_t mark;   /* two slots: the first slot's mark */
    uint8_t action; /* what it does when it runs (ACT_*) */
    uint64_t w0, w1;
    struct tpc__pending *spare; /* a reply's, freed when it has run */
} msgs[RING_MODEL_MSGS];
enum { ACT_NONE, ACT_REPLY, ACT_REPLY_WIDE, ACT_SEND, ACT_FLUSH };

/* Sends under way, innermost last: a message joins the model when it goes into the ring or the
 * pending list, which is when its send parks or returns 0. */
static struct sending {
    unsigned id, from;
    uint32_t flush_seq; /* flushes queued before the send began */
    bool queued;
} sending[64];
static unsigned nsending;

/* Fibers parked in a send (innermost last), and how many woken ones each shard has. */
static struct frame {
    tpc_fiber *fiber;
    struct tpc__wait *w;
    unsigned shard, id;
    bool woken;
} frames[MAX_DEPTH];
static unsigned depth, runnable[NS];

static struct flush {
    struct tpc__flush f;
    unsigned shard;
    int to; /* it sends a message there, or -1 */
    uint32_t seq;
    bool queued;
} flushes[NFLUSH];
static uint32_t flush_seq;

/* Shards in the middle of draining a ring, whose message runs the program for a while: the
 * other shards act meanwhile, as they would on their own threads. */
static struct {
    unsigned from, to;
} draining[8];
static unsigned ndraining, busy[NS];
static bool interleave; /* the next message to run lets the program run */

static const uint8_t *ip, *iend; /* the program */
enum { TOP, PARKED, DRAINING };  /* what interpret runs in */

/* What guides the fuzzer besides ring.c's coverage (libFuzzer's extra counters): each operation
 * that ran, where (at the top, inside a parked send, inside a drain) and on a shard in which
 * state (asleep, draining, with messages pending, with messages to drain). ring.c's branches
 * alone cannot tell apart the interleavings that matter, a shard that sleeps while another is
 * half-way through its drain, say. */
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t features[3 * 16 * 16];

static void check_all(void);
static void interpret(int ctx);
static void settle(void);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static uint64_t take(unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n && ip < iend; i++)
        v |= (uint64_t)*ip++ << (8 * i);
    return v;
}

/* A data word: small (marks among them) or anything. */
static uint64_t word(uint8_t x)
{
    return x < 64 ? x : x * 0x9E3779B97F4A7C15ull;
}

static unsigned other(unsigned s, unsigned x)
{
    return (s + 1 + x % (nsh - 1)) % nsh;
}

static bool bell_has(unsigned s, unsigned j)
{
    return atomic_load(&shard[s].bell[j / 64]) >> (j % 64) & 1;
}

static void *arg_of(unsigned id)
{
    return (void *)(((uintptr_t)id << 8) | 0x5a);
}

static void *rec_of(unsigned id)
{
    return (void *)(((uintptr_t)id << 8) | 0xa5);
}

static unsigned id_from(const void *p, unsigned tag)
{
    uintptr_t v = (uintptr_t)p;
    CHECK((v & 0xff) == tag && (v >> 8) < model.nmsgs);
    return (unsigned)(v >> 8);
}

/* ---- Running as a shard. ---- */

struct saved {
    struct tpc__shard *self;
    tpc_fiber *current;
};

static struct tpc__shard *enter(unsigned i, tpc_fiber *fiber, struct saved *sv)
{
    struct tpc__shard *s = &shard[i];
    sv->self = tpc__self;
    sv->current = s->current;
    tpc__self = s;
    s->current = fiber;
    return s;
}

static void leave(struct tpc__shard *s, const struct saved *sv)
{
    s->current = sv->current;
    tpc__self = sv->self;
}

/* ---- Sends, as the model sees them. ---- */

static struct sending *begin(unsigned from, unsigned to, uint8_t n, uint8_t action)
{
    if (nsending == sizeof(sending) / sizeof(sending[0]))
        return NULL;
    int id = ring_model_new(&model, from, to);
    if (id < 0)
        return NULL;
    msgs[id] = (struct msg){.n = n, .action = action};
    struct sending *e = &sending[nsending++];
    *e = (struct sending){(unsigned)id, from, flush_seq, false};
    return e;
}

/* The flushes queued on the sender before the send of e began have run. */
static void check_flushed(const struct sending *e)
{
    for (unsigned k = 0; k < NFLUSH; k++)
        CHECK(!(flushes[k].queued && flushes[k].shard == e->from && flushes[k].seq < e->flush_seq));
}

/* The message of e is now the newest in its pair's ring or pending list. */
static void queue(struct sending *e)
{
    check_flushed(e);
    CHECK(ring_model_queue(&model, e->id));
    e->queued = true;
}

static void end(struct sending *e, int rc)
{
    CHECK(e == &sending[nsending - 1]);
    if (rc == 0 && !e->queued)
        queue(e);
    else if (rc < 0)
        CHECK(ring_model_drop(&model, e->id)); /* never ran: it was still pending */
    nsending--;
}

static void fill_slots(unsigned id, struct tpc__slot m[2]);

/* After a send from a callback: -EAGAIN only when the ring is full or messages wait; 0 only
 * straight into the ring. */
static void check_callback_send(struct tpc__shard *s, unsigned to, unsigned n, int rc)
{
    struct tpc__ring *r = s->out[to];
    if (rc == 0)
        CHECK(tpc__list_empty(&r->pending));
    else
        CHECK(rc == -EAGAIN && (!tpc__list_empty(&r->pending) ||
                                r->ptail + n - 1 - atomic_load(&r->head) > r->pmask));
}

static void on_msg(unsigned id, unsigned fn);

static void fn_a(void *arg)
{
    on_msg(id_from(arg, 0x5a), 0);
}

static void fn_b(void *arg)
{
    on_msg(id_from(arg, 0x5a), 1);
}

static void fill_slots(unsigned id, struct tpc__slot m[2])
{
    const struct msg *g = &msgs[id];
    if (g->n == 1) {
        m[0].fn = g->fn ? fn_b : fn_a;
        m[0].arg = arg_of(id);
    } else {
        m[0].w0 = g->mark;
        m[0].arg = rec_of(id);
        m[1].w0 = g->w0;
        m[1].w1 = g->w1;
    }
}

/* A one-slot message through tpc__send (or tpc_submit_to, from a callback), from s: the
 * current shard, in its current context. */
static void send_one(struct tpc__shard *s, unsigned to, unsigned fn, uint8_t action, bool submit)
{
    struct sending *e = begin(s->id, to, 1, action);
    if (!e)
        return;
    msgs[e->id].fn = (uint8_t)fn;
    bool fiber = s->current != NULL;
    int rc = submit && !fiber ? tpc_submit_to((int)to, fn ? fn_b : fn_a, arg_of(e->id))
                              : tpc__send(s, to, fn ? fn_b : fn_a, arg_of(e->id));
    if (!fiber)
        check_callback_send(s, to, 1, rc);
    end(e, rc);
}

/* A one- or two-slot message through tpc__send_msg. */
static void send_msg(struct tpc__shard *s, unsigned to, struct msg g)
{
    struct sending *e = begin(s->id, to, g.n, g.action);
    if (!e)
        return;
    msgs[e->id] = g;
    struct tpc__pending p = {.n = g.n};
    fill_slots(e->id, p.m);
    bool fiber = s->current != NULL;
    int rc = tpc__send_msg(s, to, &p);
    if (!fiber)
        check_callback_send(s, to, g.n, rc);
    end(e, rc);
}

/* A reply through tpc__send_reply, its spare on the heap until it has run. */
static void send_reply(struct tpc__shard *s, unsigned to, struct msg g)
{
    struct sending *e = begin(s->id, to, g.n, ACT_NONE);
    if (!e)
        return;
    g.action = ACT_NONE;
    g.spare = malloc(sizeof(*g.spare));
    CHECK(g.spare);
    msgs[e->id] = g;
    struct tpc__slot m[2];
    fill_slots(e->id, m);
    tpc__send_reply(s, to, m, g.n, g.spare);
    if (to == s->id) { /* ran at once */
        CHECK(model.msg[e->id].state == RING_MODEL_RAN);
        nsending--;
    } else {
        end(e, 0);
    }
}

/* ---- What a message does when it runs. ---- */

static void on_flush(struct tpc__flush *f);

static void queue_flush(struct tpc__shard *s, int to)
{
    for (unsigned k = 0; k < NFLUSH; k++) {
        struct flush *fl = &flushes[k];
        if (fl->queued)
            continue;
        CHECK(fl->f.node.next == &fl->f.node); /* unlinked when it ran */
        fl->shard = s->id;
        fl->to = to;
        fl->seq = flush_seq++;
        fl->queued = true;
        fl->f.fn = on_flush;
        tpc__list_push(&s->flushq, &fl->f.node);
        return;
    }
}

static void on_flush(struct tpc__flush *f)
{
    struct flush *fl = tpc__container_of(f, struct flush, f);
    struct tpc__shard *s = tpc__self;
    CHECK(fl->queued && s && fl->shard == s->id && f->node.next == &f->node);
    fl->queued = false;
    int to = fl->to; /* fl may be queued again while this send is parked */
    if (to >= 0)
        send_one(s, (unsigned)to, 0, ACT_NONE, false);
}

static void delivered(unsigned id, struct tpc__shard *s, unsigned from)
{
    CHECK(s && s == tpc__self && model.msg[id].to == s->id && model.msg[id].from == from);
    CHECK(ring_model_run(&model, id));
    struct msg *g = &msgs[id];
    free(g->spare);
    g->spare = NULL;
    if (from == s->id) { /* a reply to itself, run inside tpc__send_reply */
        CHECK(nsending && sending[nsending - 1].id == id);
        check_flushed(&sending[nsending - 1]);
        return;
    }
    uint64_t in = 0;
    for (unsigned i = 0; i < nsh; i++)
        if (i != s->id)
            in += ring_model_ran(&model, i, s->id);
    CHECK(s->n_msgs_in == in);
    CHECK(!s->current); /* messages run in the loop, as callbacks */
    if (interleave && ndraining < sizeof(draining) / sizeof(draining[0])) {
        /* The other shards run now, s in the middle of its drain (the slots of the messages
         * that ran may not be released yet). */
        interleave = false;
        draining[ndraining].from = from;
        draining[ndraining++].to = s->id;
        busy[s->id]++;
        check_all();
        interpret(DRAINING);
        busy[s->id]--;
        ndraining--;
        CHECK(tpc__self == s && !s->current);
    }
    switch (g->action) {
    case ACT_REPLY:
        send_reply(s, from, (struct msg){.n = 1, .fn = (uint8_t)(id & 1)});
        break;
    case ACT_REPLY_WIDE:
        send_reply(s, from,
                   (struct msg){.n = 2, .mark = TPC__MSG_RESULT, .w0 = g->w1, .w1 = g->w0 ^ id});
        break;
    case ACT_SEND:
        send_one(s, from, id & 1, ACT_NONE, id & 2);
        break;
    case ACT_FLUSH:
        queue_flush(s, (int)from);
        break;
    }
}

static void on_msg(unsigned id, unsigned fn)
{
    const struct msg *g = &msgs[id];
    CHECK(g->n == 1 && g->fn == fn);
    delivered(id, tpc__self, model.msg[id].from);
}

/* ---- What ring.c calls elsewhere in core. ---- */

__thread struct tpc__shard *tpc__self;

void tpc__msg_wide(struct tpc__shard *s, unsigned from, uintptr_t mark, void *rec,
                   struct tpc__slot data)
{
    unsigned id = id_from(rec, 0xa5);
    const struct msg *g = &msgs[id];
    CHECK(g->n == 2 && g->mark == mark && data.w0 == g->w0 && data.w1 == g->w1);
    delivered(id, s, from);
}

bool tpc__shard_wake(struct tpc__shard *s)
{
    if (atomic_load(&s->sleeping) && atomic_exchange(&s->sleeping, 0)) {
        CHECK(tpc__self && tpc__self != s);
        wakes[tpc__self->id]++;
        return true;
    }
    return false;
}

/* A fiber's send parks: the rest of the program runs until an operation resumes it (woken), or
 * until the program ends, when every shard loops until all sleep (it must be woken by then). */
int tpc__park(tpc_list *q, struct tpc__wait *w)
{
    struct tpc__shard *s = tpc__self;
    tpc_fiber *f = s->current;
    CHECK(!q && f && nsending && sending[nsending - 1].from == s->id);
    if (f->cancelled || depth == MAX_DEPTH || ndraining)
        return -ECANCELED; /* (a program that runs inside a drain cannot wait for it) */
    if (f->deadline)
        return -ETIMEDOUT;
    w->fiber = f;
    w->result = 0;
    tpc__list_init(&w->node);
    f->wait = w;
    struct sending *e = &sending[nsending - 1];
    queue(e);
    struct frame *fr = &frames[depth++];
    *fr = (struct frame){f, w, s->id, e->id, false};
    check_all();
    interpret(PARKED);
    if (ip == iend)
        settle();
    CHECK(fr == &frames[depth - 1] && fr->woken);
    CHECK(tpc__self == s && s->current == f && f->wait == NULL);
    runnable[s->id]--;
    depth--;
    return w->result;
}

void tpc__wake(struct tpc__wait *w, int result)
{
    if (w->fiber->wait != w)
        return; /* the first wake wins */
    tpc__list_remove(&w->node);
    w->result = result;
    w->fiber->wait = NULL;
    unsigned k = 0;
    while (k < depth && frames[k].w != w)
        k++;
    CHECK(k < depth && !frames[k].woken && tpc__self && tpc__self->id == frames[k].shard);
    frames[k].woken = true;
    runnable[frames[k].shard]++;
}

int tpc_defer(tpc_callback_fn fn, void *arg)
{
    (void)fn;
    (void)arg;
    abort(); /* only from tpc_submit_to to the caller's own shard, which the harness never asks */
}

bool tpc__run_callbacks(struct tpc__shard *s)
{
    (void)s;
    return false;
}

void tpc__callbacks_free(struct tpc__shard *s)
{
    (void)s;
}

bool tpc__locals_fini(struct tpc__shard *s)
{
    (void)s;
    return false;
}

/* ---- The checks after every operation. ---- */

static uint64_t stamp[RING_MODEL_MSGS], nstamp;
static uint8_t where[RING_MODEL_MSGS]; /* 1: in the ring, 2: pending (valid where stamped) */

static void check_slots(unsigned id, const struct tpc__slot *m, unsigned n)
{
    const struct msg *g = &msgs[id];
    CHECK(g->n == n);
    if (n == 1)
        CHECK(m[0].fn == (g->fn ? fn_b : fn_a) && m[0].arg == arg_of(id));
    else
        CHECK(m[0].w0 == g->mark && m[0].arg == rec_of(id) && m[1].w0 == g->w0 && m[1].w1 == g->w1);
}

static void check_pair(unsigned i, unsigned j, uint64_t *in_ring)
{
    struct tpc__shard *si = &shard[i];
    struct tpc__ring *r = rt.rings[(size_t)i * nsh + j];
    CHECK(si->out[j] == r && shard[j].in[i] == r);
    uint32_t head = atomic_load(&r->head), tail = atomic_load(&r->tail);
    CHECK(r->pub == tail && r->ptail - tail < si->msg_batch);
    CHECK(tail - head <= r->ptail - head && r->ptail - head <= slots);
    CHECK(head - r->head_cache <= r->ptail - r->head_cache && r->ptail - r->head_cache <= slots);
    CHECK(r->idle < HOT_POLLS);
    /* A ring being drained may start with messages that ran, their slots not yet released. */
    bool ran_first = false;
    for (unsigned d = 0; d < ndraining; d++)
        ran_first |= draining[d].from == i && draining[d].to == j;
    unsigned k = 0, len = ring_model_len(&model, i, j);
    for (uint32_t x = head; x != r->ptail;) {
        struct tpc__slot m[2] = {r->slots[x & r->pmask]};
        unsigned n = m[0].w0 < TPC__MSG_MARKS ? 2 : 1;
        if (n == 2) {
            CHECK(x + 1 != r->ptail);
            m[1] = r->slots[(x + 1) & r->pmask];
        }
        if (ran_first) {
            unsigned ran = id_from(m[0].arg, n == 1 ? 0x5a : 0xa5);
            if (model.msg[ran].state == RING_MODEL_RAN) {
                check_slots(ran, m, n);
                x += n;
                continue;
            }
            ran_first = false;
        }
        CHECK(k < len);
        unsigned id = ring_model_at(&model, i, j, k++);
        check_slots(id, m, n);
        x += n;
        stamp[id] = nstamp;
        where[id] = 1;
        ++*in_ring;
    }
    for (tpc_list *l = r->pending.next; l != &r->pending; l = l->next) {
        const struct tpc__pending *p = tpc__container_of(l, struct tpc__pending, node);
        CHECK(k < len && !p->sent && (p->n == 1 || p->n == 2));
        unsigned id = ring_model_at(&model, i, j, k++);
        check_slots(id, p->m, p->n);
        stamp[id] = nstamp;
        where[id] = 2;
    }
    CHECK(k == len);
    /* Unpublished messages: the ring is on the sender's dirty list. */
    bool listed = false;
    for (unsigned d = 0; d < si->ndirty; d++)
        listed |= si->dirty[d] == j;
    CHECK(r->dirty == listed && (r->ptail == r->pub || r->dirty));
    /* Published messages: the receiver's doorbell for the sender is set. */
    CHECK(tail == head || bell_has(j, i));
    /* Pending messages: the receiver will ring (want_space), or the sender's bit is set. */
    CHECK(tpc__list_empty(&r->pending) || atomic_load(&r->want_space) || bell_has(i, j));
}

static void check_all(void)
{
    nstamp++;
    for (unsigned i = 0; i < nsh; i++) {
        struct tpc__shard *s = &shard[i];
        uint64_t in_ring = 0, out = 0, in = 0;
        bool owe = false, rung = false;
        for (unsigned j = 0; j < nsh; j++) {
            if (j == i)
                continue;
            check_pair(i, j, &in_ring);
            out += ring_model_ran(&model, i, j);
            in += ring_model_ran(&model, j, i);
            owe |= !tpc__list_empty(&s->out[j]->pending);
            rung |= bell_has(i, j);
        }
        CHECK(!bell_has(i, i) && s->ndirty < nsh);
        CHECK(s->n_msgs_out == out + in_ring && s->n_msgs_in == in && s->n_wakes_sent == wakes[i]);
        CHECK(tpc__rings_owe(s) == owe && tpc__rings_rung(s) == rung);
        if (atomic_load(&s->sleeping)) {
            CHECK(!rung && !runnable[i] && tpc__list_empty(&s->flushq));
            for (unsigned j = 0; j < nsh; j++)
                CHECK(j == i || s->out[j]->ptail == s->out[j]->pub);
        }
    }
    /* A parked sender's message is pending; one woken with 0 went out. */
    for (unsigned k = 0; k < depth; k++) {
        const struct frame *fr = &frames[k];
        unsigned id = fr->id;
        bool seen = stamp[id] == nstamp;
        if (!fr->woken)
            CHECK(seen && where[id] == 2 && fr->fiber->wait == fr->w);
        else if (fr->w->result == 0)
            CHECK(seen ? where[id] == 1 : model.msg[id].state == RING_MODEL_RAN);
    }
}

/* ---- Operations. ---- */

static bool awake(unsigned i)
{
    CHECK(i < NS); /* (gcc's -Wstringop-overflow cannot tell) */
    return !atomic_load(&shard[i].sleeping);
}

/* Awake, and not in the middle of a drain. */
static bool can_run(unsigned i)
{
    return awake(i) && !busy[i];
}

static bool poll_once(struct tpc__shard *s)
{
    bool ready = tpc__rings_ready(s);
    bool worked = tpc__rings_poll(s);
    CHECK(worked || !ready); /* ready promises work */
    return worked;
}

static void flush(struct tpc__shard *s)
{
    tpc__rings_flush(s);
    for (unsigned k = 0; k < NFLUSH; k++)
        CHECK(!(flushes[k].queued && flushes[k].shard == s->id));
}

/* The loop's way to sleep (core/shard.c, sleep_phase, after phase 6): true if it sleeps. */
static bool try_sleep(struct tpc__shard *s)
{
    flush(s);
    if (tpc__rings_cool(s))
        return false;
    atomic_store(&s->sleeping, 1);
    if (tpc__rings_rung(s)) {
        atomic_store(&s->sleeping, 0);
        return false;
    }
    return true;
}

/* Every shard loops (poll, flush, sleep if no fiber of it is ready) until all that can sleep. */
static void settle(void)
{
    CHECK(!ndraining);
    for (unsigned round = 0;; round++) {
        CHECK(round < 10000); /* no livelock */
        bool more = false;
        for (unsigned i = 0; i < nsh; i++) {
            if (!awake(i))
                continue;
            struct saved sv;
            struct tpc__shard *s = enter(i, NULL, &sv);
            more |= poll_once(s);
            flush(s);
            if (!runnable[i])
                try_sleep(s);
            leave(s, &sv);
            check_all();
        }
        for (unsigned i = 0; i < nsh; i++)
            more |= awake(i) && !runnable[i]; /* did not sleep, or was woken since */
        if (!more)
            return;
    }
}

static struct msg wide_msg(uint8_t b)
{
    uint8_t x0 = (uint8_t)take(1), x1 = (uint8_t)take(1);
    return (struct msg){.n = 2,
                        .mark = (uint8_t)(1 + (b >> 3) % (TPC__MSG_MARKS - 1)),
                        .w0 = word(x0),
                        .w1 = word(x1)};
}

static void note(int ctx, unsigned code, unsigned i)
{
    unsigned state = awake(i) ? busy[i] ? 1 : 0 : 2;
    for (unsigned j = 0; j < nsh; j++)
        if (j != i) {
            state |= tpc__list_empty(&shard[i].out[j]->pending) ? 0 : 4;
            state |=
                atomic_load(&shard[i].in[j]->tail) == atomic_load(&shard[i].in[j]->head) ? 0 : 8;
        }
    unsigned k = ((unsigned)ctx * 16 + code) * 16 + state;
    if (features[k] < 255)
        features[k]++;
}

/* Runs the program from ip until it ends or, inside a parked send (ctx PARKED), an operation
 * resumes it (woken), or, inside a message that runs in a drain (DRAINING), one ends that.
 *
 * An operation is a byte: its high nibble (modulo the shards) is the shard, its low nibble
 * the code, some take argument bytes a and b.
 *   0 [a]  send from a callback (tpc__send; tpc_submit_to if a >> 6 == 1)
 *   1 [a]  send from a fiber (tpc__send)
 *   2 [a b (x0 x1)]  tpc__send_msg, one or two slots
 *   3 [a b (x0 x1)]  tpc__send_reply, one or two slots, maybe to the shard itself
 *   4 poll, 5 flush, 6 13 14 a turn of the loop (poll, flush), 7 go to sleep if it can
 *   8 a spurious wake-up, 9 [a] poll a % 80 times, 10 [a] queue a flush (sending if a & 1)
 *   11 [a] cancel parked fiber a % depth (or its deadline passes, if a & 0x80)
 *   12 resume the innermost parked fiber if woken, or end a drain's turn
 *   15 the next message that runs lets the program run inside it
 * a: bits 0-1 the receiver, 2 which function, 3-5 what the message does when it runs (4 to 7:
 * reply, wide reply, send, queue a flush), 6-7 a fiber cancelled (2) or past its deadline (3);
 * b: bit 0 two slots (x0 and x1 make the data words), 1 from a fiber, 3-7 the mark. */
static void interpret(int ctx)
{
    while (ip < iend) {
        uint8_t op = *ip++;
        unsigned i = (op >> 4) % nsh, code = op & 15;
        note(ctx, code, i);
        if (code == 12) { /* resume the innermost parked fiber, if woken; end a drain's turn */
            if (ctx == DRAINING || (ctx == PARKED && frames[depth - 1].woken))
                return;
            continue;
        }
        if (code == 15) { /* the next message that runs lets the program run inside it */
            interleave = true;
            continue;
        }
        if (code == 8) { /* a spurious wake-up (a timer) */
            atomic_store(&shard[i].sleeping, 0);
            check_all();
            continue;
        }
        if (code == 11) { /* cancel a parked fiber, or let its deadline pass */
            uint8_t a = (uint8_t)take(1);
            if (!depth)
                continue;
            struct frame *fr = &frames[a % depth];
            if (fr->woken || !can_run(fr->shard))
                continue;
            struct saved sv;
            struct tpc__shard *s = enter(fr->shard, NULL, &sv);
            if (a & 0x80)
                fr->fiber->deadline = 1;
            else
                fr->fiber->cancelled = true;
            tpc__wake(fr->w, a & 0x80 ? -ETIMEDOUT : -ECANCELED);
            leave(s, &sv);
            check_all();
            continue;
        }
        /* The rest run on shard i, which must be awake and not in a drain. */
        uint8_t a = code <= 3 || code == 9 || code == 10 ? (uint8_t)take(1) : 0;
        uint8_t b = code == 2 || code == 3 ? (uint8_t)take(1) : 0;
        struct msg wide = b & 1 ? wide_msg(b) : (struct msg){.n = 1, .fn = (a >> 2) & 1};
        if (!can_run(i))
            continue;
        unsigned to = other(i, a & 3);
        uint8_t action = (a >> 3) & 7;
        action = action < 4 ? ACT_NONE : (uint8_t)(action - 3);
        /* a fiber that runs the send; it may be cancelled or past its deadline already */
        tpc_fiber me;
        memset(&me, 0, sizeof(me));
        me.cancelled = (a >> 6) == 2;
        me.deadline = (a >> 6) == 3;
        bool fiber = code == 1 || ((code == 2 || code == 3) && (b & 2));
        struct saved sv;
        struct tpc__shard *s = enter(i, fiber ? &me : NULL, &sv);
        switch (code) {
        case 0:
        case 1:
            send_one(s, to, (a >> 2) & 1, action, (a >> 6) == 1);
            break;
        case 2:
            wide.action = action;
            send_msg(s, to, wide);
            break;
        case 3:
            send_reply(s, (i + (a & 3)) % nsh, wide);
            break;
        case 4:
            poll_once(s);
            break;
        case 5:
            flush(s);
            break;
        case 7:
            if (!runnable[i])
                try_sleep(s);
            break;
        case 9:
            for (unsigned k = a % 80; k > 0; k--)
                poll_once(s);
            break;
        case 10:
            queue_flush(s, a & 1 ? (int)other(i, a >> 1) : -1);
            break;
        default: /* a turn of the loop */
            poll_once(s);
            flush(s);
            break;
        }
        leave(s, &sv);
        check_all();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ip = data;
    iend = data + size;
    uint8_t h = (uint8_t)take(1);
    nsh = 2 + h % 3;
    slots = 2u << (h / 3 % 4);
    bool afterlife = h / 12 % 2;

    memset(&rt, 0, sizeof(rt));
    rt.nshards = nsh;
    rt.msg_slots = slots;
    rt.shards = shard_ptr;
    rt.rings = calloc((size_t)nsh * nsh, sizeof(*rt.rings));
    CHECK(rt.rings);
    for (unsigned i = 0; i < nsh; i++) {
        struct tpc__shard *s = &shard[i];
        memset(s, 0, sizeof(*s));
        shard_ptr[i] = s;
        s->rt = &rt;
        s->id = i;
        s->msg_batch = slots / 2 < 256 ? slots / 2 : 256; /* as core/runtime.c sets it */
        tpc__list_init(&s->flushq);
        atomic_init(&s->sleeping, 0);
        atomic_init(&s->left, 0);
        CHECK(tpc__rings_init(s) == 0);
        wakes[i] = runnable[i] = busy[i] = 0;
    }
    ring_model_init(&model, nsh);
    nsending = depth = ndraining = 0;
    interleave = false;
    flush_seq = 0;
    for (unsigned k = 0; k < NFLUSH; k++) {
        flushes[k].queued = false;
        tpc__list_init(&flushes[k].f.node);
    }

    check_all();
    interpret(TOP);
    if (afterlife) /* as tpc_wait does once the shard threads are gone */
        tpc__rings_afterlife(&rt);
    check_all();
    settle();
    CHECK(depth == 0 && nsending == 0 && ring_model_done(&model));
    for (unsigned i = 0; i < nsh; i++) {
        CHECK(!awake(i));
        for (unsigned j = 0; j < nsh; j++) {
            if (j == i)
                continue;
            struct tpc__ring *r = shard[i].out[j];
            CHECK(tpc__list_empty(&r->pending) && r->ptail == atomic_load(&r->head));
        }
    }
    for (unsigned k = 0; k < NFLUSH; k++)
        CHECK(!flushes[k].queued);
    tpc__rings_free(&rt);
    return 0;
}

#ifdef __clang__
#pragma clang attribute pop
#endif
