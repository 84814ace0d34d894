/* tpc-proxy: a TCP reverse proxy on libtpc (README.md).
 *   tpc-proxy -c FILE [--shards N] [--drain-ms MS] [--log]   run until SIGINT / SIGTERM
 *   tpc-proxy --check -c FILE                                validate FILE and exit
 *
 * Every shard accepts on each frontend (tpc_server_start: one SO_REUSEPORT listener per shard)
 * and runs a fiber per new connection: pick a server of the frontend's backend, connect (with
 * the connect timeout, the next healthy server on failure), then hand both sockets to a relay in
 * the background (tpc_relay_start) and return: an established connection holds no fiber and no
 * stack, only its relay_ctx and the relay's record; the relay's done callback counts, logs and
 * closes. The configuration in force is a "generation": an immutable px_config
 * with the state of its servers, reference counted. Each shard has its own pointer to the
 * current generation, changed only by a message to that shard (tpc_on_all), so a connection
 * takes its reference without a race against a reload, and keeps its generation to the end.
 * Health checks run on shard 0, a fiber per server; the state they find is one atomic word per
 * server that the other shards only read. SIGHUP reloads the file; SIGTERM / SIGINT drain. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <tpc.h>
#include <unistd.h>
#include "../metrics-http.h"
#include "config.h"
#include "http.h"
#include "proxy.h"

#define REQ_MAX 8192

const char *const err_name[E_COUNT] = {
    "connect_refused", "connect_timeout", "connect_other", "no_server",      "maxconn",
    "idle_timeout",    "reset",           "cancelled",     "relay_other",    "bad_request",
    "head_too_large",  "request_timeout", "bad_response",  "server_timeout", "body_aborted"};
shard_counters counters[TPC_MAX_SHARDS];
gen *shard_gen[TPC_MAX_SHARDS];
static gen *current; /* shard 0's: it owns the health checks (a reference) */

/* The frontends' HTTP counters, by name: they outlive a frontend's listener (a reload that
 * keeps the name keeps the counts). Slots are added by shard 0 only and never removed, so the
 * stats listener, on any shard, reads them without a lock (nfe_stats is published last). */
typedef struct fe_stat {
    char name[PX_NAME_MAX];
    atomic_int mode, users; /* users: listeners now (0: not shown) */
    fe_http *http;          /* [shard] */
} fe_stat;
#define FE_STATS_MAX 1024
static fe_stat fe_stats[FE_STATS_MAX];
static atomic_uint nfe_stats;

static fe_stat *fe_stat_for(const char *name)
{
    unsigned n = atomic_load(&nfe_stats);
    for (unsigned i = 0; i < n; i++)
        if (!strcmp(fe_stats[i].name, name))
            return &fe_stats[i];
    if (n == FE_STATS_MAX)
        return NULL;
    fe_stat *st = &fe_stats[n];
    st->http = calloc((size_t)nshards, sizeof(*st->http));
    if (!st->http)
        return NULL;
    snprintf(st->name, sizeof(st->name), "%s", name);
    atomic_store_explicit(&nfe_stats, n + 1, memory_order_release);
    return st;
}

/* An established connection, relayed in the background. */
struct relay_ctx {
    fe_rt *fe;
    gen *g;
    srv_rt *r;
    int fd, bfd;
    tpc_relay_handle *h;
    relay_ctx *prev, *next;   /* in fe->relays[shard] */
    relay_ctx *sprev, *snext; /* in shard_relays[shard] (every frontend's, old ones' too) */
    uint64_t up, down;        /* bytes already in the counters (relays_fold, relay_done) */
    char peer_text[80], srv_name[PX_NAME_MAX];
};

/* Each shard's running relays, whatever their frontend: their bytes are counted as they go
 * (relays_fold, before the statistics are shown), not only when the connection ends. */
static relay_ctx *shard_relays[TPC_MAX_SHARDS];

#define FE_MAX PX_FRONTENDS_MAX
static fe_rt *fes[FE_MAX];
static unsigned nfes;
static tpc_server *stats_srv;
static const char *config_file;
bool log_conns;
int nshards;
static tpc_mutex reload_lock; /* shard 0's: a reload and the drain, one at a time */
static bool draining;
static _Atomic uint64_t drain_at; /* the drain's deadline (tpc_now), 0: none */
static _Atomic unsigned retiring; /* frontends a reload removed whose connections go on */
#define RETIRE_MAX 64
static tpc_fiber *retirers[RETIRE_MAX]; /* shard 0's: their fibers, for the drain to cancel */

static void counts_put(srv_counts *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

void gen_put(gen *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    px_config *c = g->cfg;
    for (unsigned b = 0; b < c->nbackends; b++) {
        for (unsigned s = 0; s < c->backends[b].nservers; s++)
            counts_put(g->srv[b][s].c);
        free(g->srv[b]);
    }
    free(g->srv);
    free(g->rr);
    free(g->checks);
    px_config_free(c);
    free(g);
}

static gen *gen_new(px_config *c)
{
    static unsigned ids;
    gen *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->cfg = c;
    g->id = ++ids;
    atomic_init(&g->refs, 1);
    g->srv = calloc(c->nbackends, sizeof(*g->srv));
    g->rr = calloc(c->nbackends, sizeof(*g->rr));
    if (!g->srv || !g->rr)
        goto fail;
    for (unsigned b = 0; b < c->nbackends; b++) {
        g->srv[b] = calloc(c->backends[b].nservers, sizeof(srv_rt));
        if (!g->srv[b])
            goto fail;
        for (unsigned s = 0; s < c->backends[b].nservers; s++) {
            srv_rt *r = &g->srv[b][s];
            atomic_init(&r->up, 1); /* up until its checks say otherwise */
            r->c = calloc(1, sizeof(*r->c) + (size_t)nshards * sizeof(r->c->active[0]));
            if (!r->c)
                goto fail;
            atomic_init(&r->c->refs, 1);
        }
    }
    return g;
fail:
    g->cfg = NULL; /* the caller still owns c */
    if (g->srv)
        for (unsigned b = 0; b < c->nbackends; b++) {
            for (unsigned s = 0; g->srv[b] && s < c->backends[b].nservers; s++)
                counts_put(g->srv[b][s].c);
            free(g->srv[b]);
        }
    free(g->srv);
    free(g->rr);
    free(g);
    return NULL;
}

/* ---- Choosing a server ---- */

static long active_here(const srv_rt *r)
{
    return (long)atomic_load_explicit(&r->c->active[tpc_shard_id()], memory_order_relaxed);
}

static long active_all(const srv_rt *r)
{
    long n = 0;
    for (int i = 0; i < nshards; i++)
        n += (long)atomic_load_explicit(&r->c->active[i], memory_order_relaxed);
    return n;
}

/* The server up that owns weighted slot `slot` of the servers up (in [0, their total weight)):
 * a server down gives its share to the others in proportion to their weights. 0 if none is. */
static unsigned by_slot(const px_backend *b, const srv_rt *rt, uint64_t slot)
{
    uint64_t total = 0;
    for (unsigned s = 0; s < b->nservers; s++)
        if (atomic_load_explicit(&rt[s].up, memory_order_relaxed))
            total += b->servers[s].weight;
    if (total == 0)
        return 0;
    slot %= total;
    for (unsigned s = 0; s < b->nservers; s++) {
        if (!atomic_load_explicit(&rt[s].up, memory_order_relaxed))
            continue;
        if (slot < b->servers[s].weight)
            return s;
        slot -= b->servers[s].weight;
    }
    return 0;
}

static uint64_t hash_addr(const tpc_addr *a)
{
    const unsigned char *p = NULL;
    size_t n = 0;
    if (a->sa.sa_family == AF_INET)
        p = (const unsigned char *)&a->in4.sin_addr, n = 4;
    else if (a->sa.sa_family == AF_INET6)
        p = (const unsigned char *)&a->in6.sin6_addr, n = 16;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* The servers to try, in order, into order[]: the balance's choice first, then the next
 * servers in turn; only servers up. Returns how many. */
unsigned candidates(gen *g, unsigned bi, const tpc_addr *peer, unsigned *order)
{
    const px_backend *b = &g->cfg->backends[bi];
    srv_rt *rt = g->srv[bi];
    unsigned first = 0;
    uint64_t turn = atomic_fetch_add_explicit(&g->rr[bi], 1, memory_order_relaxed);
    if (b->balance == PX_BAL_ROUNDROBIN)
        first = by_slot(b, rt, turn);
    else if (b->balance == PX_BAL_SOURCE)
        first = by_slot(b, rt, hash_addr(peer));
    else { /* leastconn: fewest active per weight on this shard, ties in turn */
        long best_n = -1;
        unsigned best_w = 1;
        for (unsigned k = 0; k < b->nservers; k++) {
            unsigned s = (unsigned)((turn + k) % b->nservers);
            if (!atomic_load_explicit(&rt[s].up, memory_order_relaxed))
                continue;
            long n = active_here(&rt[s]);
            if (best_n < 0 || n * (long)best_w < best_n * (long)b->servers[s].weight)
                first = s, best_n = n, best_w = b->servers[s].weight;
        }
    }
    unsigned n = 0;
    for (unsigned k = 0; k < b->nservers; k++) {
        unsigned s = (first + k) % b->nservers;
        if (atomic_load_explicit(&rt[s].up, memory_order_relaxed))
            order[n++] = s;
    }
    return n;
}

/* ---- A connection ---- */

px_frontend *frontend_of(gen *g, const char *name)
{
    for (unsigned i = 0; i < g->cfg->nfrontends; i++)
        if (!strcmp(g->cfg->frontends[i].name, name))
            return &g->cfg->frontends[i];
    return NULL;
}

static int relay_error(int rc)
{
    switch (rc) {
    case -ETIMEDOUT:
        return E_IDLE_TIMEOUT;
    case -ECONNRESET:
    case -EPIPE:
        return E_RESET;
    case -ECANCELED:
    case -ESHUTDOWN: /* cut by the drain's deadline, or the runtime stopping */
        return E_CANCELLED;
    default:
        return E_RELAY_OTHER;
    }
}

void fe_put(fe_rt *fe)
{
    if (atomic_fetch_sub(&fe->refs, 1) == 1)
        free(fe);
}

static void log_conn(const fe_rt *fe, const char *peer, const char *srv, uint64_t up, uint64_t down,
                     const char *result)
{
    if (!log_conns)
        return;
    printf("conn shard=%d frontend=%s client=%s server=%s up=%llu down=%llu result=%s\n",
           tpc_shard_id(), fe->name, peer, srv, (unsigned long long)up, (unsigned long long)down,
           result);
    fflush(stdout);
}

/* The relay's end, on the connection's shard: counts, logs, closes both sockets. */
static void relay_done(tpc_relay_handle *h, int rc, const tpc_relay_stats *st, void *arg)
{
    (void)h;
    relay_ctx *x = arg;
    shard_counters *sc = &counters[tpc_shard_id()];
    count(&sc->bytes_in, st->a_to_b - x->up);
    count(&sc->bytes_out, st->b_to_a - x->down);
    const char *result = "ok";
    if (rc < 0) {
        count(&sc->errors[relay_error(rc)], 1);
        result = err_name[relay_error(rc)];
    }
    atomic_fetch_sub(&sc->active, 1);
    atomic_fetch_sub(&x->r->c->active[tpc_shard_id()], 1);
    tpc_close(x->bfd);
    tpc_close(x->fd); /* (tpc_close: on epoll an accepted number is kept) */
    log_conn(x->fe, x->peer_text, x->srv_name, st->a_to_b, st->b_to_a, result);
    relay_ctx **head = &x->fe->relays[tpc_shard_id()];
    if (x->prev)
        x->prev->next = x->next;
    else
        *head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->sprev)
        x->sprev->snext = x->snext;
    else
        shard_relays[tpc_shard_id()] = x->snext;
    if (x->snext)
        x->snext->sprev = x->sprev;
    atomic_fetch_sub(&x->fe->live, 1);
    fe_put(x->fe);
    gen_put(x->g);
    free(x);
}

/* Connects to the first of the backend's candidates that answers. Returns the socket (and *r,
 * with its active count taken) or -1, having counted each failure. */
static int connect_backend(gen *g, const px_frontend *f, const tpc_addr *peer, srv_rt **r,
                           char *srv_name, const char **result)
{
    shard_counters *sc = &counters[tpc_shard_id()];
    const px_backend *b = &g->cfg->backends[f->backend];
    unsigned order[PX_SERVERS_MAX];
    unsigned n = candidates(g, f->backend, peer, order);
    if (n == 0) {
        count(&sc->errors[E_NO_SERVER], 1);
        *result = err_name[E_NO_SERVER];
    }
    for (unsigned k = 0; k < n && !tpc_cancelled(); k++) {
        *r = &g->srv[f->backend][order[k]];
        /* a connect under way counts as load for leastconn */
        atomic_fetch_add(&(*r)->c->active[tpc_shard_id()], 1);
        uint64_t t0 = tpc_now_fresh();
        tpc_deadline_set(f->server_connect_ns);
        int bfd = tpc_connect(&b->servers[order[k]].addr);
        tpc_deadline_clear();
        if (bfd >= 0) {
            count(&(*r)->c->connect_ns, tpc_now_fresh() - t0);
            count(&(*r)->c->connects, 1);
            snprintf(srv_name, PX_NAME_MAX, "%s", b->servers[order[k]].name);
            return bfd;
        }
        int kind = bfd == -ECONNREFUSED ? E_CONNECT_REFUSED
                   : bfd == -ETIMEDOUT  ? E_CONNECT_TIMEOUT
                                        : E_CONNECT_OTHER;
        if (bfd == -ECANCELED)
            kind = E_CANCELLED;
        count(&sc->errors[kind], 1);
        count(&(*r)->c->errors, 1);
        atomic_fetch_sub(&(*r)->c->active[tpc_shard_id()], 1);
        *result = err_name[kind];
        snprintf(srv_name, PX_NAME_MAX, "%s", b->servers[order[k]].name); /* (the last tried) */
        if (log_conns && k + 1 < n) {
            printf("conn frontend=%s server=%s result=%s: trying the next server\n", f->name,
                   srv_name, *result);
            fflush(stdout);
        }
    }
    return -1;
}

/* A new connection: a server, then the relay in the background (the fiber ends there). */
static int connection(int fd, void *arg)
{
    fe_rt *fe = arg;
    shard_counters *sc = &counters[tpc_shard_id()];
    gen *g = shard_gen[tpc_shard_id()];
    atomic_fetch_add(&g->refs, 1); /* no suspension since it was read */
    count(&sc->conns, 1);
    px_frontend *f = frontend_of(g, fe->name);
    long live = atomic_fetch_add(&fe->live, 1) + 1;
    const char *result = "ok";
    relay_ctx *x = calloc(1, sizeof(*x));
    tpc_addr peer;
    if (!x) {
        result = err_name[E_RELAY_OTHER];
        count(&sc->errors[E_RELAY_OTHER], 1);
        goto out;
    }
    snprintf(x->peer_text, sizeof(x->peer_text), "?");
    snprintf(x->srv_name, sizeof(x->srv_name), "-");
    if (tpc_sock_peer(fd, &peer) < 0)
        memset(&peer, 0, sizeof(peer));
    else
        tpc_addr_format(&peer, x->peer_text, sizeof(x->peer_text));
    if (!f || live > (long)f->maxconn) { /* !f: the frontend went in a reload */
        int kind = f ? E_MAXCONN : E_NO_SERVER;
        count(&sc->errors[kind], 1);
        result = err_name[kind];
        goto out;
    }
    x->bfd = connect_backend(g, f, &peer, &x->r, x->srv_name, &result);
    if (x->bfd < 0)
        goto out;
    count(&x->r->c->conns, 1);
    atomic_fetch_add(&sc->active, 1);
    tpc_sock_nodelay(fd, 1);
    tpc_sock_nodelay(x->bfd, 1);
    /* tpc_relay has one idle clock, over both directions: the shorter timeout applies */
    tpc_relay_opts o = {.idle_ns = f->client_idle_ns < f->server_idle_ns ? f->client_idle_ns
                                                                         : f->server_idle_ns};
    x->fe = fe;
    x->g = g;
    x->fd = fd;
    atomic_fetch_add(&fe->refs, 1);
    int rc = tpc_relay_start(fd, x->bfd, &o, relay_done, x, &x->h);
    if (rc == 0) {
        relay_ctx **head = &fe->relays[tpc_shard_id()];
        x->next = *head;
        if (*head)
            (*head)->prev = x;
        *head = x;
        relay_ctx **all = &shard_relays[tpc_shard_id()];
        x->snext = *all;
        if (*all)
            (*all)->sprev = x;
        *all = x;
        return TPC_CONN_KEEP; /* relay_done closes fd, and the rest */
    }
    atomic_fetch_sub(&fe->refs, 1); /* the owner's stays: not the last */
    count(&sc->errors[relay_error(rc)], 1);
    result = err_name[relay_error(rc)];
    atomic_fetch_sub(&sc->active, 1);
    atomic_fetch_sub(&x->r->c->active[tpc_shard_id()], 1);
    tpc_close(x->bfd);
out:
    log_conn(fe, x ? x->peer_text : "?", x ? x->srv_name : "-", 0, 0, result);
    free(x);
    atomic_fetch_sub(&fe->live, 1);
    gen_put(g);
    return 0;
}

/* ---- Health checks: a fiber per server on shard 0 ---- */

typedef struct check_arg {
    gen *g;
    unsigned b, s;
} check_arg;

static int health_check(void *arg)
{
    check_arg a = *(check_arg *)arg;
    free(arg);
    const px_backend *b = &a.g->cfg->backends[a.b];
    const px_server *sv = &b->servers[a.s];
    srv_rt *r = &a.g->srv[a.b][a.s];
    while (!tpc_cancelled()) {
        uint64_t next = tpc_now() + (uint64_t)b->check_interval_ns;
        tpc_deadline_set(b->check_interval_ns);
        int fd = tpc_connect(&sv->addr);
        char why[96] = ""; /* an HTTP check's reason (else the errno's) */
        if (fd >= 0 && b->check == PX_CHECK_HTTP) {
            int rc = http_check(fd, b->check_path, &sv->addr, why, sizeof(why)); /* (deadline) */
            tpc_close(fd);
            fd = rc < 0 ? rc : 0;
        } else if (fd >= 0)
            tpc_close(fd);
        tpc_deadline_clear();
        if (fd == -ECANCELED || tpc_cancelled())
            break;
        bool up = atomic_load(&r->up);
        if (fd >= 0) {
            r->fail_run = 0;
            if (!up && (unsigned)++r->ok_run >= b->rise) {
                atomic_store(&r->up, 1);
                printf("tpc-proxy: server %s/%s is UP\n", b->name, sv->name);
                fflush(stdout);
            }
        } else {
            r->ok_run = 0;
            if (up && (unsigned)++r->fail_run >= b->fall) {
                atomic_store(&r->up, 0);
                printf("tpc-proxy: server %s/%s is DOWN (%s)\n", b->name, sv->name,
                       why[0] ? why : tpc_strerror(fd));
                fflush(stdout);
            }
        }
        if (tpc_sleep_until(next) == -ECANCELED)
            break;
    }
    return 0;
}

static int checks_start(gen *g)
{
    px_config *c = g->cfg;
    unsigned n = 0;
    for (unsigned b = 0; b < c->nbackends; b++)
        n += c->backends[b].nservers;
    free(g->checks); /* (started again after a failed reload) */
    g->checks = calloc(n ? n : 1, sizeof(*g->checks));
    if (!g->checks)
        return -ENOMEM;
    for (unsigned b = 0; b < c->nbackends; b++)
        for (unsigned s = 0; s < c->backends[b].nservers; s++) {
            if (c->backends[b].check == PX_CHECK_NONE)
                continue;
            check_arg *a = malloc(sizeof(*a));
            if (!a)
                return -ENOMEM;
            *a = (check_arg){g, b, s};
            tpc_fiber_opts o = {.stack_size = 64 * 1024, .name = "health-check"};
            int rc = tpc_spawn_opts(&o, health_check, a, &g->checks[g->nchecks]);
            if (rc < 0) {
                free(a);
                return rc;
            }
            g->nchecks++;
        }
    return 0;
}

static void checks_stop(gen *g)
{
    for (unsigned i = 0; i < g->nchecks; i++)
        tpc_cancel(g->checks[i]);
    for (unsigned i = 0; i < g->nchecks; i++)
        tpc_join(g->checks[i], NULL);
    g->nchecks = 0;
}

/* ---- Stats ---- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;

static void put(strbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(strbuf *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
        char *p = realloc(t->p, cap);
        if (!p)
            return;
        t->p = p, t->cap = cap;
    }
}

static unsigned long long load(atomic_ullong *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void stats_plain(strbuf *t, gen *g)
{
    shard_counters total = {0};
    for (int i = 0; i <= nshards; i++) {
        shard_counters *c = i < nshards ? &counters[i] : &total;
        if (i < nshards) {
            total.conns += load(&c->conns);
            total.active += c->active;
            total.bytes_in += load(&c->bytes_in);
            total.bytes_out += load(&c->bytes_out);
            for (int e = 0; e < E_COUNT; e++)
                total.errors[e] += load(&c->errors[e]);
            total.upstream_new += load(&c->upstream_new);
            total.upstream_reused += load(&c->upstream_reused);
            put(t, "shard %d:", i);
        } else
            put(t, "total:");
        put(t, " connections %llu active %lld bytes_in %llu bytes_out %llu", load(&c->conns),
            (long long)c->active, load(&c->bytes_in), load(&c->bytes_out));
        for (int e = 0; e < E_COUNT; e++)
            put(t, " %s %llu", err_name[e], load(&c->errors[e]));
        put(t, " upstream_new %llu upstream_reused %llu\n", load(&c->upstream_new),
            load(&c->upstream_reused));
    }
    unsigned nst = atomic_load_explicit(&nfe_stats, memory_order_acquire);
    for (unsigned i = 0; i < nst; i++) {
        fe_stat *st = &fe_stats[i];
        if (!atomic_load(&st->users))
            continue;
        unsigned long long req = 0, resp[6] = {0};
        for (int k = 0; k < nshards; k++) {
            req += load(&st->http[k].requests);
            for (int x = 0; x < 6; x++)
                resp[x] += load(&st->http[k].responses[x]);
        }
        put(t, "frontend %s: mode %s requests %llu 1xx %llu 2xx %llu 3xx %llu 4xx %llu 5xx %llu\n",
            st->name, atomic_load(&st->mode) == PX_MODE_HTTP ? "http" : "tcp", req, resp[1],
            resp[2], resp[3], resp[4], resp[5]);
    }
    px_config *c = g->cfg;
    for (unsigned b = 0; b < c->nbackends; b++)
        for (unsigned s = 0; s < c->backends[b].nservers; s++) {
            srv_rt *r = &g->srv[b][s];
            unsigned long long k = load(&r->c->connects), q = load(&r->c->responses);
            put(t,
                "server %s/%s: %s active %ld connections %llu errors %llu connect_avg_us %llu "
                "responses %llu response_avg_us %llu\n",
                c->backends[b].name, c->backends[b].servers[s].name,
                atomic_load(&r->up) ? "UP" : "DOWN", active_all(r), load(&r->c->conns),
                load(&r->c->errors), k ? load(&r->c->connect_ns) / k / 1000 : 0, q,
                q ? load(&r->c->response_ns) / q / 1000 : 0);
        }
}

static void stats_prometheus(strbuf *t, gen *g)
{
    static const char *const names[] = {"connections_total", "bytes_in_total", "bytes_out_total",
                                        "active_connections"};
    for (int m = 0; m < 4; m++) {
        put(t, "# TYPE tpc_proxy_%s %s\n", names[m], m == 3 ? "gauge" : "counter");
        for (int i = 0; i < nshards; i++) {
            shard_counters *c = &counters[i];
            long long v = m == 0   ? (long long)load(&c->conns)
                          : m == 1 ? (long long)load(&c->bytes_in)
                          : m == 2 ? (long long)load(&c->bytes_out)
                                   : (long long)c->active;
            put(t, "tpc_proxy_%s{shard=\"%d\"} %lld\n", names[m], i, v);
        }
    }
    put(t, "# TYPE tpc_proxy_errors_total counter\n");
    for (int i = 0; i < nshards; i++)
        for (int e = 0; e < E_COUNT; e++)
            put(t, "tpc_proxy_errors_total{shard=\"%d\",kind=\"%s\"} %llu\n", i, err_name[e],
                load(&counters[i].errors[e]));
    put(t, "# TYPE tpc_proxy_upstream_connections_total counter\n");
    for (int i = 0; i < nshards; i++) {
        put(t, "tpc_proxy_upstream_connections_total{shard=\"%d\",kind=\"new\"} %llu\n", i,
            load(&counters[i].upstream_new));
        put(t, "tpc_proxy_upstream_connections_total{shard=\"%d\",kind=\"reused\"} %llu\n", i,
            load(&counters[i].upstream_reused));
    }
    unsigned nst = atomic_load_explicit(&nfe_stats, memory_order_acquire);
    put(t, "# TYPE tpc_proxy_http_requests_total counter\n");
    for (unsigned i = 0; i < nst; i++) {
        unsigned long long req = 0;
        for (int k = 0; k < nshards && atomic_load(&fe_stats[i].users); k++)
            req += load(&fe_stats[i].http[k].requests);
        if (atomic_load(&fe_stats[i].users))
            put(t, "tpc_proxy_http_requests_total{frontend=\"%s\"} %llu\n", fe_stats[i].name, req);
    }
    put(t, "# TYPE tpc_proxy_http_responses_total counter\n");
    for (unsigned i = 0; i < nst; i++)
        for (int x = 1; x < 6 && atomic_load(&fe_stats[i].users); x++) {
            unsigned long long v = 0;
            for (int k = 0; k < nshards; k++)
                v += load(&fe_stats[i].http[k].responses[x]);
            put(t, "tpc_proxy_http_responses_total{frontend=\"%s\",class=\"%dxx\"} %llu\n",
                fe_stats[i].name, x, v);
        }
    px_config *c = g->cfg;
    static const char *const snames[] = {"server_up",
                                         "server_active_connections",
                                         "server_connections_total",
                                         "server_errors_total",
                                         "server_connect_seconds_sum",
                                         "server_connect_seconds_count",
                                         "server_response_seconds_sum",
                                         "server_response_seconds_count"};
    for (int m = 0; m < 8; m++) {
        put(t, "# TYPE tpc_proxy_%s %s\n", snames[m], m < 2 ? "gauge" : "counter");
        for (unsigned b = 0; b < c->nbackends; b++)
            for (unsigned s = 0; s < c->backends[b].nservers; s++) {
                srv_rt *r = &g->srv[b][s];
                put(t, "tpc_proxy_%s{backend=\"%s\",server=\"%s\"} ", snames[m],
                    c->backends[b].name, c->backends[b].servers[s].name);
                if (m == 4 || m == 6)
                    put(t, "%.6f\n",
                        (double)load(m == 4 ? &r->c->connect_ns : &r->c->response_ns) / 1e9);
                else if (m == 7)
                    put(t, "%llu\n", load(&r->c->responses));
                else
                    put(t, "%lld\n",
                        m == 0   ? (long long)atomic_load(&r->up)
                        : m == 1 ? (long long)active_all(r)
                        : m == 2 ? (long long)load(&r->c->conns)
                        : m == 3 ? (long long)load(&r->c->errors)
                                 : (long long)load(&r->c->connects));
            }
    }
}

/* Counts the bytes this shard's running relays moved since the last fold: a long connection's
 * traffic shows while it lasts. */
static int relays_fold(void *arg)
{
    (void)arg;
    shard_counters *sc = &counters[tpc_shard_id()];
    for (relay_ctx *x = shard_relays[tpc_shard_id()]; x; x = x->snext) {
        tpc_relay_stats st;
        if (tpc_relay_progress(x->h, &st) < 0)
            continue;
        count(&sc->bytes_in, st.a_to_b - x->up);
        count(&sc->bytes_out, st.b_to_a - x->down);
        x->up = st.a_to_b;
        x->down = st.b_to_a;
    }
    return 0;
}

static int stats_conn(int fd, void *arg)
{
    (void)arg;
    char req[REQ_MAX + 1];
    http_read_head(fd, req, sizeof(req)); /* (examples/metrics-http.c) */
    int status = 200;
    strbuf body = {0};
    gen *g = shard_gen[tpc_shard_id()];
    atomic_fetch_add(&g->refs, 1);
    bool prom = !strncmp(req, "GET /metrics ", 13);
    if (prom || !strncmp(req, "GET /stats ", 11))
        tpc_on_all(relays_fold, NULL); /* (a shard that cannot answer: its last fold stands) */
    if (prom) {
        stats_prometheus(&body, g);
        /* The runtime's own: the counters may gain digits between the measure and the text (on
         * other shards), so room to spare, and again with more if it was cut short. */
        ssize_t need = tpc_metrics_format(NULL, 0, TPC_METRICS_PROMETHEUS);
        for (int tries = 0; need > 0 && tries < 4; tries++) {
            size_t room = (size_t)need + 4096, before = body.len;
            put(&body, "%*s", (int)room, ""); /* (it leaves room for a NUL after) */
            if (body.len != before + room)
                break; /* (out of memory) */
            body.len = before;
            ssize_t n = tpc_metrics_format(body.p + body.len, room + 1, TPC_METRICS_PROMETHEUS);
            if (n >= 0 && (size_t)n <= room) {
                body.len += (size_t)n;
                break;
            }
            need = n;
        }
    } else if (!strncmp(req, "GET /stats ", 11))
        stats_plain(&body, g);
    else {
        status = 404;
        put(&body, "try /stats or /metrics\n");
    }
    gen_put(g);
    char head[256];
    int n = snprintf(
        head, sizeof(head),
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
        "Connection: close\r\n\r\n",
        status, status == 200 ? "OK" : "Not Found",
        prom ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8", body.len);
    if (tpc_write_full(fd, head, (size_t)n, -1) == n && body.len)
        tpc_write_full(fd, body.p, body.len, -1);
    free(body.p);
    return 0;
}

/* ---- Starting, reloading, stopping ---- */

static int set_gen(void *arg)
{
    gen *g = arg;
    atomic_fetch_add(&g->refs, 1);
    gen *old = shard_gen[tpc_shard_id()];
    shard_gen[tpc_shard_id()] = g;
    gen_put(old);
    return 0;
}

static void print_addr(const char *what, const char *name, tpc_server *srv)
{
    tpc_addr a;
    char text[128] = "?";
    if (tpc_server_addr(srv, &a) == 0)
        tpc_addr_format(&a, text, sizeof(text));
    printf("tpc-proxy: %s %s listening on %s\n", what, name, text);
    fflush(stdout);
}

/* A Unix socket's file, or NULL (another family, or an abstract name). */
static const char *unix_path(const tpc_addr *a)
{
    const struct sockaddr_un *u = (const struct sockaddr_un *)&a->sa;
    return a->sa.sa_family == AF_UNIX && u->sun_path[0] ? u->sun_path : NULL;
}

/* A Unix socket's file that nobody listens on any more (left by a crash, say) goes before its
 * frontend listens there; one that somebody does listen on stays (the listen then fails). */
static void unlink_stale(const tpc_addr *a)
{
    const char *path = unix_path(a);
    int fd = path ? socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
    if (fd < 0)
        return;
    if (connect(fd, &a->sa, a->len) < 0 && errno == ECONNREFUSED)
        unlink(path);
    close(fd);
}

static bool same_addr(const tpc_addr *a, const tpc_addr *b)
{
    return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

/* Whether one of this program's frontends listens on a: a frontend that replaces it (a
 * reload that changes its mode) listens beside it until it retires; any other listener there
 * is another program's, and the start fails (-EADDRINUSE). */
static bool ours(const tpc_addr *a)
{
    for (unsigned i = 0; i < nfes; i++)
        if (fes[i] && same_addr(&fes[i]->listen, a))
            return true;
    return false;
}

static fe_rt *fe_start(const px_frontend *f)
{
    fe_rt *fe = calloc(1, sizeof(*fe));
    if (!fe)
        return NULL;
    snprintf(fe->name, sizeof(fe->name), "%s", f->name);
    atomic_init(&fe->refs, 1);
    fe->listen = f->listen;
    fe->handoff = f->handoff;
    fe->mode = f->mode;
    fe_stat *st = fe_stat_for(f->name);
    fe->http = st ? st->http : NULL;
    unlink_stale(&f->listen);
    tpc_server_opts o = {.stack_size = 64 * 1024,
                         .flags = f->handoff         ? TPC_SERVER_HANDOFF
                                  : ours(&f->listen) ? TPC_SERVER_SHARE
                                                     : 0};
    int rc = !fe->http ? -ENOMEM
                       : tpc_server_start(&f->listen, &o,
                                          f->mode == PX_MODE_HTTP ? http_connection : connection,
                                          fe, &fe->srv);
    if (rc < 0) {
        char text[128];
        tpc_addr_format(&f->listen, text, sizeof(text));
        fprintf(stderr, "tpc-proxy: frontend %s cannot listen on %s: %s\n", f->name, text,
                tpc_strerror(rc));
        free(fe);
        return NULL;
    }
    atomic_store(&st->mode, f->mode);
    atomic_fetch_add(&st->users, 1);
    print_addr("frontend", f->name, fe->srv);
    return fe;
}

/* Ends this shard's relays of the frontend (at the drain's deadline). */
static int relays_cut(void *arg)
{
    fe_rt *fe = arg;
    for (relay_ctx *x = fe->relays[tpc_shard_id()]; x; x = x->next)
        tpc_relay_stop(x->h); /* relay_done runs later: the list stays as it is here */
    return http_cut(fe);
}

static void fe_release(void *fe)
{
    fe_put(fe);
}

/* relays_cut on every shard, each holding a reference to fe until it has returned: a stop
 * cancelled meanwhile (the runtime ends) goes on to drop its own, and the last relay_done would
 * free fe under a relays_cut still walking it (TSan, CI at f32070b). */
static void cut_everywhere(fe_rt *fe)
{
    tpc_call_item items[TPC_MAX_SHARDS];
    for (int i = 0; i < nshards; i++) {
        atomic_fetch_add(&fe->refs, 1);
        items[i] = (tpc_call_item){.shard = i, .arg = fe};
    }
    if (tpc_call_many(items, (size_t)nshards, relays_cut, fe_release) == 0)
        for (int i = 0; i < nshards; i++)
            fe_put(fe); /* (else the call released each, once its relays_cut returned) */
}

/* Stops a frontend: its listener closes at once, its connections get until the caller's
 * deadline to finish (none: cut at once). The relays run without a fiber, so the wait for them
 * looks at the frontend's count every few milliseconds. Cancelled (the runtime stops), it waits
 * no more: the runtime ends the relays itself, and the last one's relay_done frees fe. */
static void fe_stop(fe_rt *fe)
{
    if (!fe)
        return;
    tpc_server_stop(fe->srv); /* the connections still connecting (fibers) are done after it */
    const char *path = unix_path(&fe->listen);
    if (path) /* its file goes with it (as nginx's does) */
        unlink(path);
    fe_stat *st = fe_stat_for(fe->name);
    if (st)
        atomic_fetch_sub(&st->users, 1);
    bool cut = false;
    while (atomic_load(&fe->live) > 0) { /* (HTTP mode: none, its fibers were waited for) */
        int rc = tpc_sleep(5 * 1000 * 1000);
        uint64_t at = atomic_load(&drain_at); /* (a retired frontend's: the drain's deadline) */
        if ((rc == -ETIMEDOUT || (at && tpc_now() >= at)) && !cut) { /* the rest are cut */
            tpc_deadline_clear();
            cut_everywhere(fe);
            cut = true;
        } else if (rc < 0) {
            break;
        }
    }
    fe_put(fe);
}

static int retire(void *arg) /* (counted in retiring by its spawner) */
{
    int slot = -1;
    for (int i = 0; i < RETIRE_MAX && slot < 0; i++)
        if (!retirers[i])
            retirers[slot = i] = tpc_self();
    tpc_deadline_set(24LL * 3600 * 1000 * 1000 * 1000); /* established connections finish */
    fe_stop(arg);
    if (slot >= 0)
        retirers[slot] = NULL;
    atomic_fetch_sub(&retiring, 1);
    return 0;
}

/* A reload keeps what it knows of a server that stays (same backend, name and address): its
 * counters, shared with the old generation's connections (leastconn counts them), and, where
 * the new file checks it, what the checks found (a server found down does not come back into
 * the rotation with the new file; with checks off it is up, as nothing would bring it back). */
static void carry_state(gen *to, const gen *from)
{
    for (unsigned b = 0; b < to->cfg->nbackends; b++) {
        const px_backend *nb = &to->cfg->backends[b];
        int ob = px_backend_find(from->cfg, nb->name);
        for (unsigned s = 0; ob >= 0 && s < nb->nservers; s++) {
            const px_backend *old = &from->cfg->backends[ob];
            for (unsigned t = 0; t < old->nservers; t++)
                if (!strcmp(old->servers[t].name, nb->servers[s].name) &&
                    same_addr(&old->servers[t].addr, &nb->servers[s].addr)) {
                    srv_rt *r = &to->srv[b][s], *o = &from->srv[ob][t];
                    counts_put(r->c);
                    atomic_fetch_add(&o->c->refs, 1);
                    r->c = o->c;
                    if (nb->check == PX_CHECK_NONE)
                        break;
                    atomic_store(&r->up, atomic_load(&o->up));
                    r->ok_run = o->ok_run;
                    r->fail_run = o->fail_run;
                }
        }
    }
}

/* Puts configuration c in force (the first time, or a reload): starts the frontends that are
 * new, publishes the generation to every shard, retires the frontends that went. On failure
 * nothing changes and c is freed. */
static int apply(px_config *c)
{
    gen *g = gen_new(c);
    if (!g) {
        px_config_free(c);
        return -ENOMEM;
    }
    fe_rt *next[FE_MAX] = {0}, *started[FE_MAX] = {0};
    bool kept[FE_MAX] = {0};
    int rc = 0;
    for (unsigned i = 0; i < c->nfrontends && i < FE_MAX; i++) {
        const px_frontend *f = &c->frontends[i];
        for (unsigned j = 0; j < nfes; j++)
            if (!kept[j] && !strcmp(fes[j]->name, f->name) && fes[j]->handoff == f->handoff &&
                fes[j]->mode == f->mode && same_addr(&fes[j]->listen, &f->listen)) {
                next[i] = fes[j];
                kept[j] = true;
            }
        if (!next[i] && !(next[i] = started[i] = fe_start(f)))
            rc = -EADDRNOTAVAIL;
    }
    if (current) { /* the old checks end first: nothing they find after the carry is lost */
        checks_stop(current);
        carry_state(g, current);
    }
    if (rc == 0)
        rc = checks_start(g);
    if (rc == 0)
        rc = tpc_on_all(set_gen, g);
    if (rc < 0) {
        checks_stop(g);
        for (unsigned i = 0; i < c->nfrontends && i < FE_MAX; i++)
            fe_stop(started[i]);
        gen_put(g);
        if (current && checks_start(current) < 0)
            fputs("tpc-proxy: cannot restart the health checks\n", stderr);
        return rc;
    }
    for (unsigned j = 0; j < nfes; j++)
        if (!kept[j]) {
            tpc_fiber_opts o = {.stack_size = 64 * 1024, .name = "retire", .detached = true};
            atomic_fetch_add(&retiring, 1);
            if (tpc_spawn_opts(&o, retire, fes[j], NULL) < 0) {
                atomic_fetch_sub(&retiring, 1);
                fe_stop(fes[j]); /* no fiber: at once */
            }
        }
    nfes = c->nfrontends < FE_MAX ? c->nfrontends : FE_MAX;
    memcpy(fes, next, sizeof(fes[0]) * nfes);
    if (current)
        gen_put(current);
    current = g;
    return 0;
}

typedef struct stop_arg {
    fe_rt *fe;
    uint64_t deadline; /* the drain's, or 0 */
} stop_arg;

static int stop_one(void *arg)
{
    stop_arg *a = arg;
    if (a->deadline)
        tpc_deadline_set_at(a->deadline);
    fe_stop(a->fe);
    return 0;
}

/* The drain of a stop (tpc_config.drain): listeners close, connections get until the drain
 * deadline to finish, then are cancelled. */
static int drain(void *arg)
{
    (void)arg;
    draining = true;                       /* no reload from now on */
    int rc = tpc_mutex_lock(&reload_lock); /* one under way finishes first */
    printf("tpc-proxy: draining %u frontends\n", nfes);
    fflush(stdout);
    tpc_on_all(http_drain, NULL); /* idle HTTP keep-alive connections close now */
    /* All frontends at once, each in a fiber: every listener closes now, and each frontend's
     * connections have the whole drain deadline. */
    stop_arg args[FE_MAX];
    tpc_fiber *f[FE_MAX];
    unsigned n = nfes;
    atomic_store(&drain_at, tpc_deadline_get()); /* frontends a reload removed: cut then too */
    for (unsigned i = 0; i < n; i++) {
        args[i] = (stop_arg){fes[i], tpc_deadline_get()};
        fes[i] = NULL; /* taken out first: a shutdown meanwhile does not stop it twice */
        tpc_fiber_opts o = {.stack_size = 64 * 1024, .name = "drain-frontend"};
        if (tpc_spawn_opts(&o, stop_one, &args[i], &f[i]) < 0) {
            f[i] = NULL;
            fe_stop(args[i].fe);
        }
    }
    nfes = 0;
    for (unsigned i = 0; i < n; i++)
        if (f[i])
            tpc_join(f[i], NULL); /* at the deadline: cancels it, which cuts its connections */
    /* Frontends a reload removed: their connections get the same deadline, then are cut. */
    while (atomic_load(&retiring) > 0 && tpc_sleep(5 * 1000 * 1000) == 0)
        ;
    for (int i = 0; i < RETIRE_MAX; i++)
        if (retirers[i])
            tpc_cancel(retirers[i]);
    tpc_deadline_clear();
    while (atomic_load(&retiring) > 0)
        if (tpc_sleep(5 * 1000 * 1000) == -ECANCELED)
            break;
    if (rc == 0)
        tpc_mutex_unlock(&reload_lock);
    return 0;
}

static int proxy_main(void *arg)
{
    px_config *c = arg;
    nshards = tpc_shard_count();
    tpc_mutex_init(&reload_lock);
    if (apply(c) < 0)
        return 1;
    if (c->has_stats) {
        tpc_server_opts o = {.stack_size = 64 * 1024};
        int rc = tpc_server_start(&c->stats_listen, &o, stats_conn, NULL, &stats_srv);
        if (rc < 0) { /* (as a frontend's: the operator asked for it) */
            char text[128];
            tpc_addr_format(&c->stats_listen, text, sizeof(text));
            fprintf(stderr, "tpc-proxy: [stats] cannot listen on %s: %s\n", text, tpc_strerror(rc));
            return 1;
        }
        print_addr("stats", "http", stats_srv);
    }
    printf("tpc-proxy: running on %d shards\n", nshards);
    fflush(stdout);
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    while (tpc_signal_wait(&hup, NULL) == 0) {
        if (tpc_mutex_lock(&reload_lock) < 0)
            break;
        px_config *nc;
        int errors = draining ? 0 : px_config_load(config_file, &nc, stderr);
        if (draining)
            ; /* stopping: no reload */
        else if (errors != 0)
            fprintf(stderr,
                    "tpc-proxy: %s not reloaded (%d errors): the old configuration "
                    "stays\n",
                    config_file, errors < 0 ? 1 : errors);
        else {
            int rc = apply(nc);
            printf("tpc-proxy: reload %s\n",
                   rc == 0 ? "done" : "failed: the old configuration stays");
            fflush(stdout);
        }
        tpc_mutex_unlock(&reload_lock);
    }
    /* stopping: everything is being cancelled (after the drain, if there was one) */
    for (unsigned i = 0; i < nfes; i++) {
        fe_rt *fe = fes[i];
        fes[i] = NULL;
        fe_stop(fe);
    }
    nfes = 0;
    if (stats_srv)
        tpc_server_stop(stats_srv);
    if (current)
        checks_stop(current);
    gen_put(current);
    current = NULL;
    for (int i = 0; i < nshards; i++)
        gen_put(shard_gen[i]), shard_gen[i] = NULL;
    return 0;
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--check] -c FILE [--shards N] [--drain-ms MS] [--log]\n", argv0);
    return 2;
}

/* A whole number from lo to hi, or -1. */
static long number(const char *text, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    return errno || end == text || *end || v < lo || v > hi ? -1 : v;
}

int main(int argc, char **argv)
{
    tpc_config rc_config = {.drain = drain, .drain_ms = 5000};
    bool check = false;
    long v;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            config_file = argv[++i];
        else if (!strcmp(argv[i], "--check"))
            check = true;
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc &&
                 (v = number(argv[++i], 1, 4096)) > 0)
            rc_config.shards = (unsigned)v;
        else if (!strcmp(argv[i], "--drain-ms") && i + 1 < argc &&
                 (v = number(argv[++i], 1, 86400000)) > 0)
            rc_config.drain_ms = (unsigned)v;
        else if (!strcmp(argv[i], "--log"))
            log_conns = true;
        else
            return usage(argv[0]);
    }
    if (!config_file)
        return usage(argv[0]);
    px_config *c;
    if (px_config_load(config_file, &c, stderr) != 0)
        return 1;
    if (check) {
        printf("%s: ok\n", config_file);
        px_config_free(c);
        return 0;
    }
    /* SIGHUP waits for the shard that reads it (tpc_signal_wait), even if it comes before
     * that first wait: blocked here, every shard inherits the mask. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    int rc = tpc_run(&rc_config, proxy_main, c);
    return rc == 128 + SIGINT || rc == 128 + SIGTERM ? 0 : rc < 0 ? 1 : rc;
}
