/* Shard-to-shard message rings (core/ring.c), and the remote-call records built on them
 * (core/call.c). Never installed. */
#ifndef TPC_CORE_RINGS_H
#define TPC_CORE_RINGS_H

#include "internal.h"

/* Shard-to-shard message rings (core/ring.c): one bounded single-producer single-consumer ring
 * per ordered pair of shards, allocated by the receiving shard on its NUMA node. */
struct tpc__slot {
    union {
        struct {
            tpc_callback_fn fn;
            void *arg;
        };
        struct {
            uintptr_t w0, w1;
        };
    };
};

/* A message is one slot {fn, arg}, or two: a first slot whose fn is one of these marks (never
 * a real function's address) and whose arg is a record, and a second slot of two data words.
 * Remote calls use them so that neither side touches the other's memory in the common case:
 * the request carries the function and its argument, the reply carries the result. */
enum {
    TPC__MSG_CALL = 1,   /* {CALL, remote record}, {fn, arg}: spawn fn(arg) for that record */
    TPC__MSG_RESULT = 2, /* {RESULT, remote record}, {result, error}: the fiber returned */
    TPC__MSG_MARKS = 16, /* fn values below this are marks */
};
void tpc__msg_wide(struct tpc__shard *s, unsigned from, uintptr_t mark, void *rec,
                   struct tpc__slot data); /* call.c */

/* A message waiting for room in a full ring: a reply (w == NULL), which never blocks, or the
 * message of a fiber suspended until it fits. Pending messages go out in FIFO order, before
 * anything sent later on the same ring. */
struct tpc__pending {
    tpc_list node;
    struct tpc__slot m[2]; /* the message: m[0] only, or both (a wide message) */
    unsigned n;            /* slots: 1 or 2 */
    struct tpc__wait *w;   /* the suspended sender, or NULL */
    bool sent;
};

/* Something with unpublished updates (a cross-shard channel end): the shard calls fn once per
 * loop iteration, with the rings' batched publish (tpc__rings_flush), and before it sends any
 * message, so that no message overtakes the update. */
struct tpc__flush {
    tpc_list node; /* in shard->flushq; self-linked when not queued */
    void (*fn)(struct tpc__flush *f);
};

struct tpc__ring {
    /* The sending shard's line. */
    _Alignas(TPC_CACHELINE) uint32_t ptail; /* next slot to fill */
    uint32_t pub;                           /* tail as last published */
    uint32_t head_cache;                    /* head as last read */
    uint32_t pmask;
    bool dirty;       /* in the sender's list of rings to publish */
    tpc_list pending; /* struct tpc__pending, oldest first */
    /* Published by the sender. */
    _Alignas(TPC_CACHELINE) _Atomic uint32_t tail;
    /* Published by the receiver. */
    _Alignas(TPC_CACHELINE) _Atomic uint32_t head;
    _Atomic int want_space; /* the sender waits for room: ring its doorbell after draining */
    /* The receiving shard's line. */
    _Alignas(TPC_CACHELINE) uint32_t cmask;
    uint32_t idle; /* polls that found it empty while its doorbell was set */
    _Alignas(TPC_CACHELINE) struct tpc__slot slots[];
};

/* Shard-to-shard rings (core/ring.c). */
int tpc__rings_init(struct tpc__shard *s);
void tpc__rings_free(struct tpc_runtime *rt);
/* Sends fn(arg) to shard `to` (not the caller's). From a fiber a full ring suspends the caller
 * until the message fits (-ECANCELED or -ETIMEDOUT: not sent); elsewhere it returns -EAGAIN. */
int tpc__send(struct tpc__shard *s, unsigned to, tpc_callback_fn fn, void *arg);
/* The same for a message of p->n slots in p->m (p may be on the caller's stack). */
int tpc__send_msg(struct tpc__shard *s, unsigned to, struct tpc__pending *p);
/* Sends the n-slot message m to shard `to`, never blocking and never failing: when the ring is
 * full, the message waits in its pending list in `spare`, which must then stay valid until it
 * has run. On the caller's own shard it runs at once. */
void tpc__send_reply(struct tpc__shard *s, unsigned to, const struct tpc__slot *m, unsigned n,
                     struct tpc__pending *spare);
bool tpc__rings_poll(struct tpc__shard *s);       /* drains what the doorbells show; true: work */
void tpc__rings_flush(struct tpc__shard *s);      /* publishes every out ring with new messages */
bool tpc__rings_rung(const struct tpc__shard *s); /* a doorbell is set */
/* Messages wait for room in a ring to a shard that is still in its loop: a stopping shard
 * stays until they went (a reply among them may be what that shard waits for). */
bool tpc__rings_owe(struct tpc__shard *s);
bool tpc__rings_ready(struct tpc__shard *s); /* a ring with a doorbell set has work */
/* Clears every doorbell (before sleeping); true if a ring turned out to have work. */
bool tpc__rings_cool(struct tpc__shard *s);
/* Ends the run phase early when a doorbell rang, checked every 8 tasks: messages (replies
 * above all) wait at most 8 tasks, not a whole phase, on a busy shard. */
static inline bool tpc__phase_goes_on(struct tpc__shard *s)
{
    if (TPC_UNLIKELY((s->phase_left & 7) == 0) && s->phase_left && tpc__rings_ready(s))
        s->phase_left = 0;
    return s->phase_left != 0;
}
/* After every shard thread has exited: runs what is still in the rings, as its shard. */
void tpc__rings_afterlife(struct tpc_runtime *rt);

/* Remote fibers and calls (core/call.c). */
void tpc__remotes_free(struct tpc__shard *s);
struct tpc_remote;
int tpc__remote_join(struct tpc_remote *r, int *result);
int tpc__remote_detach(struct tpc_remote *r);
int tpc__remote_cancel(struct tpc_remote *r);
const char *tpc__remote_name(const struct tpc_remote *r);
/* A handle from tpc_spawn_on for a fiber on another shard, or NULL for a local fiber. */
static inline struct tpc_remote *tpc__remote_of(const tpc_fiber *f)
{
    return f && f->task.kind == TPC__TASK_REMOTE ? (struct tpc_remote *)f : NULL;
}
void tpc__remote_return(tpc_fiber *f); /* a fiber spawned for another shard returned */

#endif
