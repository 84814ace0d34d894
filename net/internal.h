/* The network layer's private definitions: its per-shard state. Includes the layers below.
 * Never installed. */
#ifndef TPC_NET_INTERNAL_H
#define TPC_NET_INTERNAL_H

#include "io/internal.h"

/* Its slot in tpc__layers[] and in shard->layer[]. */
#define TPC__NET_LAYER 2

#define TPC__PIPE_CACHE 8

/* Listen backlogs when the caller gives none: tpc_listen's is the common default of servers
 * (nginx, Redis); a tpc_server takes bursts of connections on every shard, so it asks for more
 * (the kernel caps both at net.core.somaxconn). */
#define TPC__LISTEN_BACKLOG 511
#define TPC__SERVER_BACKLOG 4096

/* Per shard. */
#define TPC__RELAY_POOLS 16 /* relay pools a shard makes at most (net/relay.c) */

struct tpc__net_shard {
    uint16_t next_bgid;   /* provided-buffer group id for the next pool (net/bufpool.c) */
    uint16_t *free_bgids; /* ids of destroyed pools, for reuse */
    unsigned nfree_bgids, cap_free_bgids;
    unsigned npipes; /* cached empty pipes (net/splice.c) */
    int pipes[TPC__PIPE_CACHE][2];
    char *fwd_scratch; /* tpc_forward's read buffer, never held across a suspension */
    tpc_bufpool *relay_pools[TPC__RELAY_POOLS]; /* the relays' buffers (net/relay.c), on use */
    unsigned nrelay_pools;
    tpc_list relays;     /* relays started with tpc_relay_start, running */
    bool relays_stopped; /* the shard stops: they were ended */
};

static inline struct tpc__net_shard *tpc__net_of(struct tpc__shard *s)
{
    return s->layer[TPC__NET_LAYER];
}

/* A receive stream driven by callbacks instead of a waiting fiber (net/bufpool.c, for
 * net/relay.c). ready(arg) runs on the shard after each completion that may have queued a chunk,
 * ended the stream or failed it; gone(arg) once, when a close (tpc__rx_close_async) has finished
 * and nothing of the kernel's refers to the stream any more. share: the most chunks the stream
 * queues and holds at once (0: the pool's share); len: the most one receive takes (0: a
 * buffer). dropped (may be NULL) adds up the bytes received and then thrown away by the close. */
struct tpc__rx_hooks {
    void (*ready)(void *arg);
    void (*gone)(void *arg);
    void *arg;
    unsigned share, len;
    uint64_t *dropped;
};
void tpc__rx_hook(tpc_rx *rx, const struct tpc__rx_hooks *h); /* NULL: unhooks */
/* tpc_rx_open with hooks (NULL: none) in place before its first receive is armed. */
int tpc__rx_open(int fd, tpc_bufpool *p, const struct tpc__rx_hooks *h, tpc_rx **out);
/* tpc_listen_all; share: join sockets that listen on the address already (TPC_SERVER_SHARE). */
int tpc__listen_all(const tpc_addr *a, int backlog, int *fds, bool share);
/* Whether rx waits for a buffer of its pool (none was free) holding and queuing none. */
bool tpc__rx_starved_empty(const tpc_rx *rx);
/* The next chunk without waiting: its length (> 0), 0 at end of stream, the stream's error, or
 * -EAGAIN when none is queued yet. */
ssize_t tpc__rx_take(tpc_rx *rx, tpc_buf *b);
#ifdef TPC_FAULT_INJECTION
/* Sets whether the kernel takes a multishot receive's byte limit (1 yes, 0 unknown, -1 no) and
 * returns what was known. */
int tpc__rx_limit(int set);
#endif
/* Sets the chunks of each relay pool made from now on (0: the default) and returns the old (for
 * tests: a small pool is soon taken whole). */
unsigned tpc__relay_chunks(unsigned set);
/* Starts closing rx from anywhere on its shard, fiber or not; gone runs when it is done. Buffers
 * held from it stay valid until released. */
void tpc__rx_close_async(tpc_rx *rx);

/* How many buffers the pool has. */
unsigned tpc__bufpool_count(const tpc_bufpool *p);
/* Sets how long a pool stays unused before its pages go (ns; negative: the default, 1 s) and
 * returns the old value. Process-wide; for tests, set while no shard runs. */
int64_t tpc__bufpool_trim_after(int64_t ns);

/* The net layer's loop work: ends the running relays once the shard stops (net/relay.c). */
bool tpc__relay_poll(struct tpc__shard *s, void *state);

/* Closes the cached pipes and frees the scratch buffer (net/splice.c). */
void tpc__net_shard_fini(struct tpc__shard *s, void *state);

#endif
