/* What tpc-proxy's TCP side (proxy.c) and its HTTP mode (http.c) share: the counters, the
 * configuration generations with the state of their servers, the frontends' listeners, and
 * the choice of a server. */
#ifndef PX_PROXY_H
#define PX_PROXY_H

#include <stdatomic.h>
#include <tpc.h>
#include "config.h"

/* Errors by kind, per shard. */
enum {
    E_CONNECT_REFUSED,
    E_CONNECT_TIMEOUT,
    E_CONNECT_OTHER,
    E_NO_SERVER,
    E_MAXCONN,
    E_IDLE_TIMEOUT,
    E_RESET,
    E_CANCELLED,
    E_RELAY_OTHER,
    /* HTTP mode */
    E_BAD_REQUEST,     /* 400 (and 501, 505) */
    E_HEAD_TOO_LARGE,  /* 431 */
    E_REQUEST_TIMEOUT, /* the request head did not come in time (408) */
    E_BAD_RESPONSE,    /* 502: the server closed or sent a malformed head */
    E_SERVER_TIMEOUT,  /* 504 */
    E_BODY_ABORTED,    /* a body cut mid-way (either side): the connection closes */
    E_COUNT
};
extern const char *const err_name[E_COUNT];

/* Counters of one shard: written by it, read by the stats listener on any shard. */
typedef struct shard_counters {
    atomic_ullong conns, bytes_in, bytes_out, errors[E_COUNT];
    atomic_ullong upstream_new, upstream_reused; /* HTTP mode: server connections */
    atomic_llong active;
} shard_counters;
extern shard_counters counters[TPC_MAX_SHARDS];

static inline void count(atomic_ullong *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* A server's counters, shared by the generations it stays in (same backend, name and
 * address): a reload loses neither its figures nor leastconn's count of its connections. */
typedef struct srv_counts {
    atomic_long refs; /* the generations that hold it */
    atomic_ullong conns, errors, connect_ns, connects;
    atomic_ullong response_ns, responses; /* HTTP mode: request sent to response head */
    atomic_llong active[];                /* [shard]: connections relayed now (leastconn) */
} srv_counts;

/* A server's state in one generation. */
typedef struct srv_rt {
    atomic_int up;        /* written by its health check (shard 0), read by every shard */
    int ok_run, fail_run; /* the health check's own */
    srv_counts *c;
} srv_rt;

typedef struct gen {
    px_config *cfg;
    atomic_long refs;
    srv_rt **srv;       /* [backend][server] */
    atomic_ulong *rr;   /* [backend]: the round-robin cursor, shared by the shards */
    tpc_fiber **checks; /* shard 0's health-check fibers */
    unsigned nchecks;
    unsigned id;
} gen;

extern gen *shard_gen[TPC_MAX_SHARDS]; /* each shard's current generation (its reference) */
extern int nshards;
extern bool log_conns;

/* HTTP counters of a frontend on one shard. */
typedef struct fe_http {
    atomic_ullong requests, responses[6]; /* responses by class: [1] 1xx ... [5] 5xx */
    char pad[64];
} fe_http;

/* A frontend's listener: lives across generations while its name, address and mode stay. */
typedef struct relay_ctx relay_ctx; /* TCP mode: an established connection (proxy.c) */
typedef struct fe_rt {
    char name[PX_NAME_MAX];
    tpc_addr listen; /* as configured (port 0 stays 0) */
    bool handoff;
    int mode;
    tpc_server *srv;
    atomic_long live;                  /* connections now, all shards: maxconn, and the drain */
    atomic_long refs;                  /* its owner's and one per relay_ctx: the last frees */
    relay_ctx *relays[TPC_MAX_SHARDS]; /* TCP mode: each shard's running relays (its own) */
    fe_http *http;                     /* [shard] */
} fe_rt;

void gen_put(gen *g);
void fe_put(fe_rt *fe); /* the last reference frees it */
px_frontend *frontend_of(gen *g, const char *name);
/* The servers of backend bi to try, in order (the balance's choice first, only servers up),
 * into order[]; returns how many. */
unsigned candidates(gen *g, unsigned bi, const tpc_addr *peer, unsigned *order);

#endif
