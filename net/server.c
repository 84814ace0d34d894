/* Servers (include/tpc/net.h): accept on every shard and run a fiber per connection.
 *
 * Two ways to spread connections, one code path:
 *   - default: one SO_REUSEPORT listener per shard, each with its own accept loop; the kernel
 *     hashes each new connection to a listener, and its fiber runs where it was accepted;
 *   - TPC_SERVER_HANDOFF (and always for Unix sockets, which cannot share a port): one listener
 *     and accept loop on the starting shard, which hands each connection to the shard with the
 *     fewest live connections (ties: round-robin) as a remote fiber.
 *
 * Lifetime: the handle, each accept loop and each live connection hold a reference on the
 * server; the last one frees it. So tpc_server_stop may return (even when its caller is
 * cancelled at shutdown) while connections still run, and they still find their counters. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/internal.h"

struct srv_shard {
    _Alignas(TPC_CACHELINE) _Atomic long live; /* connections running on this shard */
    _Atomic uint64_t accepted;                 /* connections started on this shard */
    tpc_server *srv;
    unsigned id;
    int lfd;          /* its listener, or -1 */
    tpc_remote *loop; /* its accept loop (a handle of the starting shard) */
    tpc_fiber *fiber; /* the accept loop, once running (touched on this shard only) */
    bool stop;        /* (this shard only) */
};

struct tpc_server {
    tpc_conn_fn fn;
    void *arg;
    size_t stack_size;
    bool handoff;
    unsigned nshards, home, rr;
    tpc_addr addr;
    _Atomic unsigned refs;
    struct srv_shard *sh;
};

struct conn {
    tpc_server *srv;
    int fd;
    unsigned shard;
};

static void srv_unref_n(tpc_server *srv, unsigned n)
{
    if (atomic_fetch_sub(&srv->refs, n) == n) {
        free(srv->sh);
        free(srv);
    }
}

static void srv_unref(tpc_server *srv)
{
    srv_unref_n(srv, 1);
}

/* A connection that will not run: undo what dispatch counted. */
static void conn_drop(struct conn *c)
{
    atomic_fetch_sub(&c->srv->sh[c->shard].live, 1);
    close(c->fd); /* refused: the peer sees the connection close */
    srv_unref(c->srv);
    free(c);
}

static int conn_main(void *arg)
{
    struct conn *c = arg;
    tpc_server *srv = c->srv;
    srv->fn(c->fd, srv->arg);
    tpc_close(c->fd);
    atomic_fetch_sub(&srv->sh[c->shard].live, 1);
    free(c);
    srv_unref(srv);
    return 0;
}

/* Starts a connection's fiber on this shard; drops the connection if that fails. */
static void conn_start(void *arg)
{
    struct conn *c = arg;
    tpc_fiber_opts o = {.name = "connection", .detached = true, .stack_size = c->srv->stack_size};
    if (tpc_spawn_opts(NULL, &o, conn_main, c) < 0)
        conn_drop(c);
}

static unsigned least_loaded(tpc_server *srv)
{
    unsigned best = srv->rr, n = srv->nshards;
    long min = atomic_load_explicit(&srv->sh[best].live, memory_order_relaxed);
    for (unsigned k = 1; k < n && min > 0; k++) {
        unsigned i = (srv->rr + k) % n;
        long live = atomic_load_explicit(&srv->sh[i].live, memory_order_relaxed);
        if (live < min)
            min = live, best = i;
    }
    srv->rr = (best + 1) % n;
    return best;
}

static void dispatch(tpc_server *srv, unsigned self, int fd)
{
    unsigned to = srv->handoff ? least_loaded(srv) : self;
    struct conn *c = malloc(sizeof(*c));
    if (!c) {
        close(fd); /* refused: the peer sees the connection close */
        return;
    }
    *c = (struct conn){.srv = srv, .fd = fd, .shard = to};
    atomic_fetch_add(&srv->refs, 1);
    atomic_fetch_add(&srv->sh[to].live, 1);
    atomic_fetch_add_explicit(&srv->sh[to].accepted, 1, memory_order_relaxed);
    /* To another shard as a message whose callback spawns the fiber there, so that a spawn
     * failing on the target (out of memory, stopping) still closes the connection. */
    if (to == self)
        conn_start(c);
    else if (tpc_submit_to((int)to, conn_start, c) < 0)
        conn_drop(c);
}

static int accept_loop(void *arg)
{
    struct srv_shard *sh = arg;
    tpc_server *srv = sh->srv;
    int rc = 0;
    tpc_acceptor *acc = NULL;
    if (!sh->stop && (rc = tpc_acceptor_open(sh->lfd, &acc)) == 0) {
        sh->fiber = tpc_self();
        for (;;) {
            int fd = tpc_acceptor_next(acc);
            if (fd < 0) { /* cancelled: stopped, or the runtime is stopping */
                rc = fd == -ECANCELED ? 0 : fd;
                break;
            }
            dispatch(srv, sh->id, fd);
        }
        sh->fiber = NULL;
        tpc_acceptor_close(acc);
    }
    close(sh->lfd);
    sh->lfd = -1;
    srv_unref(srv);
    return rc;
}

static int stop_loop(void *arg)
{
    struct srv_shard *sh = arg;
    sh->stop = true;
    if (sh->fiber)
        tpc_cancel(sh->fiber);
    return 0;
}

int tpc_server_start(const tpc_addr *a, const tpc_server_opts *opts, tpc_conn_fn fn, void *arg,
                     tpc_server **out)
{
    TPC__CHECK_FIBER();
    tpc_server_opts o = opts ? *opts : (tpc_server_opts){0};
    if (!a || !fn || !out || (o.flags & ~TPC_SERVER_HANDOFF) || o.backlog < 0)
        return -EINVAL;
    struct tpc__shard *self = tpc__self;
    unsigned n = self->rt->nshards;
    tpc_server *srv = calloc(1, sizeof(*srv));
    struct srv_shard *sh = srv ? aligned_alloc(TPC_CACHELINE, n * sizeof(*sh)) : NULL;
    if (!sh) {
        free(srv);
        return -ENOMEM;
    }
    memset(sh, 0, n * sizeof(*sh));
    *srv = (tpc_server){.fn = fn,
                        .arg = arg,
                        .stack_size = o.stack_size,
                        .handoff = (o.flags & TPC_SERVER_HANDOFF) || a->sa.sa_family == AF_UNIX,
                        .nshards = n,
                        .home = self->id,
                        .refs = 1,
                        .sh = sh};
    int backlog = o.backlog ? o.backlog : 4096;
    int *fds = malloc(n * sizeof(*fds));
    int rc = -ENOMEM;
    if (!fds)
        goto fail;
    for (unsigned i = 0; i < n; i++)
        fds[i] = -1;
    if (srv->handoff)
        rc = fds[self->id] = tpc_listen(a, backlog, 0);
    else
        rc = tpc_listen_all(a, backlog, fds);
    if (rc < 0)
        goto fail;
    rc = tpc_sock_local(fds[srv->handoff ? self->id : 0], &srv->addr);
    if (rc < 0)
        goto fail;
    tpc_fiber_opts lo = {.name = "acceptor"};
    for (unsigned i = 0; i < n; i++) {
        sh[i] = (struct srv_shard){.srv = srv, .id = i, .lfd = fds[i]};
        if (fds[i] < 0)
            continue;
        atomic_fetch_add(&srv->refs, 1);
        rc = tpc_spawn_on((int)i, &sh[i].loop, &lo, accept_loop, &sh[i]);
        if (rc < 0) {
            atomic_fetch_sub(&srv->refs, 1);
            for (unsigned j = i; j < n; j++)
                if (fds[j] >= 0)
                    close(fds[j]);
            free(fds);
            tpc_server_stop(srv); /* the loops started so far */
            return rc;
        }
    }
    free(fds);
    *out = srv;
    return 0;
fail:
    if (fds)
        for (unsigned i = 0; i < n; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    free(fds);
    free(sh);
    free(srv);
    return rc;
}

int tpc_server_stop(tpc_server *srv)
{
    TPC__CHECK_FIBER();
    if (!srv)
        return -EINVAL;
    if (srv->home != tpc__self->id)
        return -EXDEV;
    int first = 0;
    unsigned drops = 0;
    for (unsigned i = 0; i < srv->nshards; i++) {
        if (!srv->sh[i].loop)
            continue;
        int rc = tpc_call_on((int)i, stop_loop, &srv->sh[i], NULL);
        int result = 0;
        if (rc == 0)
            rc = tpc_remote_join(srv->sh[i].loop, &result);
        if (rc == -ECANCELED || rc == -ETIMEDOUT || rc == -ESHUTDOWN) {
            /* Interrupted, or the runtime is stopping: the loop ends by itself. */
            tpc_remote_detach(srv->sh[i].loop);
        } else if (rc < 0) { /* the loop could not be spawned: it never ran, clean up for it */
            close(srv->sh[i].lfd);
            drops++; /* its reference */
        }
        srv->sh[i].loop = NULL;
        if (!first)
            first = rc < 0 ? rc : result;
    }
    srv_unref_n(srv, drops + 1); /* and the handle's */
    return first;
}

int tpc_server_addr(const tpc_server *srv, tpc_addr *out)
{
    if (!srv || !out)
        return -EINVAL;
    *out = srv->addr;
    return 0;
}

int tpc_server_load(const tpc_server *srv, int shard, long *live, uint64_t *accepted)
{
    if (!srv || shard < 0 || (unsigned)shard >= srv->nshards)
        return -EINVAL;
    if (live)
        *live = atomic_load(&srv->sh[shard].live);
    if (accepted)
        *accepted = atomic_load(&srv->sh[shard].accepted);
    return 0;
}
