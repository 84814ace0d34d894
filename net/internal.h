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
struct tpc__net_shard {
    uint16_t next_bgid;   /* provided-buffer group id for the next pool (net/bufpool.c) */
    uint16_t *free_bgids; /* ids of destroyed pools, for reuse */
    unsigned nfree_bgids, cap_free_bgids;
    unsigned npipes; /* cached empty pipes (net/splice.c) */
    int pipes[TPC__PIPE_CACHE][2];
    char *fwd_scratch; /* tpc_forward's read buffer, never held across a suspension */
};

static inline struct tpc__net_shard *tpc__net_of(struct tpc__shard *s)
{
    return s->layer[TPC__NET_LAYER];
}

/* Closes the cached pipes and frees the scratch buffer (net/splice.c). */
void tpc__net_shard_fini(struct tpc__shard *s, void *state);

#endif
