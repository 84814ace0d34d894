/* The reference the shard-to-shard rings are checked against (tests/fuzz/fuzz-ring.c): one FIFO
 * queue per ordered pair of shards. A message joins its pair's queue when it goes into the ring
 * or into the ring's pending list (the order it must arrive in), leaves it when it runs (only
 * from the front: exactly once, in order), or when its send is called off while the message
 * still waits in the pending list (a fiber's send, cancelled). A message to the sender's own
 * shard never queues: it runs at once. */
#ifndef TPC_TEST_RING_MODEL_H
#define TPC_TEST_RING_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define RING_MODEL_SHARDS 4
#define RING_MODEL_MSGS   2048

enum {
    RING_MODEL_NEW,     /* its send has begun */
    RING_MODEL_QUEUED,  /* in its pair's queue: in the ring or its pending list */
    RING_MODEL_RAN,     /* delivered */
    RING_MODEL_DROPPED, /* not sent (-EAGAIN, a cancel) */
};

struct ring_model {
    unsigned nshards, nmsgs;
    struct {
        uint8_t from, to, state;
    } msg[RING_MODEL_MSGS];
    struct {
        uint16_t q[RING_MODEL_MSGS];
        unsigned head, tail; /* q[head..tail) */
        uint64_t ran;        /* messages of this pair delivered */
    } pair[RING_MODEL_SHARDS * RING_MODEL_SHARDS];
};

static inline void ring_model_init(struct ring_model *m, unsigned nshards)
{
    m->nshards = nshards;
    m->nmsgs = 0;
    for (unsigned k = 0; k < RING_MODEL_SHARDS * RING_MODEL_SHARDS; k++) {
        m->pair[k].head = m->pair[k].tail = 0;
        m->pair[k].ran = 0;
    }
}

/* A new message from `from` to `to`: its id, or -1 when the model is full. */
static inline int ring_model_new(struct ring_model *m, unsigned from, unsigned to)
{
    if (m->nmsgs == RING_MODEL_MSGS)
        return -1;
    unsigned id = m->nmsgs++;
    m->msg[id].from = (uint8_t)from;
    m->msg[id].to = (uint8_t)to;
    m->msg[id].state = RING_MODEL_NEW;
    return (int)id;
}

static inline unsigned ring_model_len(const struct ring_model *m, unsigned from, unsigned to)
{
    const unsigned k = from * RING_MODEL_SHARDS + to;
    return m->pair[k].tail - m->pair[k].head;
}

/* The i-th oldest message of a pair's queue. */
static inline unsigned ring_model_at(const struct ring_model *m, unsigned from, unsigned to,
                                     unsigned i)
{
    const unsigned k = from * RING_MODEL_SHARDS + to;
    return m->pair[k].q[m->pair[k].head + i];
}

static inline uint64_t ring_model_ran(const struct ring_model *m, unsigned from, unsigned to)
{
    return m->pair[from * RING_MODEL_SHARDS + to].ran;
}

/* The message went into its ring or pending list: it is the newest of its pair. */
static inline bool ring_model_queue(struct ring_model *m, unsigned id)
{
    if (id >= m->nmsgs || m->msg[id].state != RING_MODEL_NEW || m->msg[id].from == m->msg[id].to)
        return false;
    unsigned k = m->msg[id].from * RING_MODEL_SHARDS + m->msg[id].to;
    m->pair[k].q[m->pair[k].tail++] = (uint16_t)id;
    m->msg[id].state = RING_MODEL_QUEUED;
    return true;
}

/* The message runs: false unless it is the oldest of its pair (or, to its own shard, new). */
static inline bool ring_model_run(struct ring_model *m, unsigned id)
{
    if (id >= m->nmsgs)
        return false;
    unsigned k = m->msg[id].from * RING_MODEL_SHARDS + m->msg[id].to;
    if (m->msg[id].from == m->msg[id].to) {
        if (m->msg[id].state != RING_MODEL_NEW)
            return false;
    } else {
        if (m->msg[id].state != RING_MODEL_QUEUED || m->pair[k].head == m->pair[k].tail ||
            m->pair[k].q[m->pair[k].head] != id)
            return false;
        m->pair[k].head++;
    }
    m->pair[k].ran++;
    m->msg[id].state = RING_MODEL_RAN;
    return true;
}

/* The send was called off: a new message, or one still queued (it must not have run). */
static inline bool ring_model_drop(struct ring_model *m, unsigned id)
{
    if (id >= m->nmsgs)
        return false;
    if (m->msg[id].state == RING_MODEL_QUEUED) {
        unsigned k = m->msg[id].from * RING_MODEL_SHARDS + m->msg[id].to, i = m->pair[k].head;
        while (i < m->pair[k].tail && m->pair[k].q[i] != id)
            i++;
        if (i == m->pair[k].tail)
            return false;
        memmove(&m->pair[k].q[i], &m->pair[k].q[i + 1],
                (m->pair[k].tail - i - 1) * sizeof(m->pair[k].q[0]));
        m->pair[k].tail--;
    } else if (m->msg[id].state != RING_MODEL_NEW) {
        return false;
    }
    m->msg[id].state = RING_MODEL_DROPPED;
    return true;
}

/* Every message has run or was dropped. */
static inline bool ring_model_done(const struct ring_model *m)
{
    for (unsigned id = 0; id < m->nmsgs; id++)
        if (m->msg[id].state != RING_MODEL_RAN && m->msg[id].state != RING_MODEL_DROPPED)
            return false;
    return true;
}

#endif
