/* Servers (include/tpc/net.h): accept on every shard and run a fiber per connection.
 *
 * Two ways to spread connections, one code path:
 *   - default: one SO_REUSEPORT listener per shard, each with its own accept loop; the kernel
 *     hashes each new connection to a listener, and its fiber runs where it was accepted;
 *   - TPC_SERVER_HANDOFF (and always for Unix sockets, which cannot share a port): one listener
 *     and accept loop on the starting shard, which hands each connection to the shard with the
 *     fewest live connections (ties: round-robin) as a message that starts its fiber there.
 *
 * Stopping, and why it always ends. Two counts:
 *   - `active`: the handle's own reference, each accept loop and each started connection. Only
 *     fibers hold one (from just before they are spawned until they end), and a shard never
 *     exits while it has fibers, so whoever waits for `active` to reach zero waits for fibers
 *     that run and can be cancelled, never for a message to a shard that is gone. Whatever is
 *     about to start takes its reference first and then checks `stopping`; tpc_server_stop sets
 *     `stopping` first and then drops the handle's reference (all sequentially consistent). So
 *     either the stop sees the newcomer and waits for it, or the newcomer sees the stop and backs
 *     out: once `active` has reached zero, no handler can begin. The one who drops the last
 *     reference tells the home shard (once: a newcomer that backs out later may reach zero again).
 *   - `refs`: memory. The handle, each loop and connection, and each message in flight between
 *     the shards hold one; the last one frees. Messages from the home shard (stop a loop, cancel
 *     connections) and to it (a loop started, the count reached zero) go through
 *     tpc__send_reply, which never fails or blocks (a full ring keeps them in a spare record of
 *     the server), so no error can leave a loop running unstopped or a waiter unwoken. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"
#include "core/rings.h"

struct srv_shard {
    _Alignas(TPC_CACHELINE) _Atomic long live; /* connections sent to this shard, not ended */
    _Atomic uint64_t accepted;                 /* connections started on this shard */
    tpc_server *srv;
    unsigned id;
    int lfd;          /* its listener, or -1; closed by its loop, or where the loop failed */
    int start_err;    /* why its loop could not start (written before it reports) */
    int err;          /* how its loop ended (written on this shard before it lets go) */
    bool has_loop;    /* a loop was started here (the home shard's) */
    tpc_fiber *fiber; /* the accept loop, while it accepts (this shard only) */
    bool stop;        /* the loop is to end (this shard only) */
    tpc_list conns;   /* connections whose fn runs (this shard only) */
    tpc_list parked;  /* connections waiting for bytes without a fiber (this shard only) */
    /* Spare records for messages that find their ring full (tpc__send_reply). */
    struct tpc__pending stop_msg, cancel_msg, unpark_msg; /* home -> this shard */
    struct tpc__pending started_msg;                      /* this shard -> home */
};

struct tpc_server {
    tpc_conn_fn fn;
    void *arg;
    size_t stack_size;
    bool no_guard;
    bool handoff;
    unsigned nshards, home, rr;
    tpc_addr addr;
    _Atomic bool stopping; /* no connection starts once it is set */
    _Atomic long active;   /* the handle, running accept loops, started connections */
    _Atomic bool zeroed;   /* `active` reached zero and the home shard was told */
    _Atomic unsigned refs; /* memory: the handle, loops, connections, messages in flight */
    /* The home shard's. */
    unsigned nstarting;       /* loops that have not reported yet */
    bool done;                /* `active` reached zero */
    bool stop_begun;          /* tpc_server_stop has been called: a second call is refused */
    struct tpc__wait *waiter; /* start or stop, waiting for one of the two above */
    struct tpc__pending zero_msg;
    struct srv_shard *sh;
};

struct conn {
    tpc_server *srv;
    int fd;
    unsigned shard;
    bool counted;     /* in its shard's `accepted` */
    tpc_fiber *fiber; /* while fn runs */
    tpc_watch *watch; /* while parked (TPC_CONN_PARK) */
    tpc_list node;    /* in its shard's conns while fn runs, in `parked` while parked */
};

static void srv_unref(tpc_server *srv)
{
    if (atomic_fetch_sub(&srv->refs, 1) == 1) {
        free(srv->sh);
        free(srv);
    }
}

/* Sends fn(arg) to shard `to` (at once when it is this one); never fails. The message holds a
 * memory reference, which fn drops. */
static void srv_send(tpc_server *srv, unsigned to, tpc_callback_fn fn, void *arg,
                     struct tpc__pending *spare)
{
    atomic_fetch_add(&srv->refs, 1);
    struct tpc__slot m = {.fn = fn, .arg = arg};
    tpc__send_reply(tpc__self, to, &m, 1, spare);
}

/* ---- On the home shard: what start and stop wait for. ---- */

static void home_wake(tpc_server *srv)
{
    if (srv->waiter)
        tpc__wake(srv->waiter, 0); /* the waiter checks its condition again */
}

static void zero_arrived(void *arg)
{
    tpc_server *srv = arg;
    srv->done = true;
    home_wake(srv);
    srv_unref(srv);
}

static void loop_reported(void *arg)
{
    struct srv_shard *sh = arg;
    tpc_server *srv = sh->srv;
    if (--srv->nstarting == 0)
        home_wake(srv);
    srv_unref(srv);
}

/* ---- The active count. ---- */

/* Drops an active reference (the caller still holds a memory one). */
static void srv_leave(tpc_server *srv)
{
    if (atomic_fetch_sub(&srv->active, 1) == 1 && !atomic_exchange(&srv->zeroed, true))
        srv_send(srv, srv->home, zero_arrived, srv, &srv->zero_msg);
}

/* Takes an active reference for something about to start, unless the server stops. */
static bool srv_enter(tpc_server *srv)
{
    atomic_fetch_add(&srv->active, 1);
    if (!atomic_load(&srv->stopping))
        return true;
    srv_leave(srv);
    return false;
}

/* ---- Connections. ---- */

/* Closes a connection's descriptor: tpc_close is a plain close(2), which works in any state
 * (fn may have left a deadline, or been cancelled), so it never leaks. */
static void conn_close(int fd)
{
    tpc_close(fd);
}

/* A connection that will not run (the server stops, or its fiber could not start). */
static void conn_drop(struct conn *c)
{
    atomic_fetch_sub(&c->srv->sh[c->shard].live, 1);
    tpc_close(c->fd); /* refused: the peer sees the connection close */
    srv_unref(c->srv);
    free(c);
}

static void conn_start(void *arg);

/* A parked connection's bytes came (or its peer closed): a fiber takes it up again. Or the
 * watch was stopped (the server stops) or the runtime stops: it closes. */
static void conn_ready(tpc_watch *w, int result, void *arg)
{
    (void)w;
    struct conn *c = arg;
    c->watch = NULL;
    tpc__list_remove(&c->node);
    if (result < 0)
        conn_drop(c);
    else
        conn_start(c);
}

/* fn returned TPC_CONN_PARK: waits for readability with no fiber. False if it cannot (the
 * server stops, or the watch cannot start): the connection then ends. */
static bool conn_park(struct conn *c)
{
    if (atomic_load(&c->srv->stopping) ||
        tpc_watch_start(c->fd, POLLIN | POLLRDHUP, conn_ready, c, &c->watch) < 0)
        return false;
    tpc__list_push(&c->srv->sh[c->shard].parked, &c->node);
    return true;
}

static int conn_main(void *arg)
{
    struct conn *c = arg;
    tpc_server *srv = c->srv;
    struct srv_shard *sh = &srv->sh[c->shard];
    int rc = 0;
    if (!atomic_load(&srv->stopping)) { /* else accepted but not started: closed */
        c->fiber = tpc_self();
        tpc__list_push(&sh->conns, &c->node);
        if (!c->counted)
            atomic_fetch_add_explicit(&sh->accepted, 1, memory_order_relaxed);
        c->counted = true;
        rc = srv->fn(c->fd, srv->arg);
        tpc__list_remove(&c->node);
        c->fiber = NULL;
    }
    if (rc == TPC_CONN_PARK && conn_park(c)) {
        srv_leave(srv); /* only fibers hold `active`; the record keeps its memory reference */
        return 0;
    }
    if (rc != TPC_CONN_KEEP)
        conn_close(c->fd);
    else
        tpc__ep_unkeep(c->fd); /* (the program may close it with close(2)) */
    atomic_fetch_sub(&sh->live, 1);
    srv_leave(srv);
    srv_unref(srv);
    free(c);
    return 0;
}

/* Starts a connection's fiber on this shard; drops the connection if the server stops or the
 * spawn fails. */
static void conn_start(void *arg)
{
    struct conn *c = arg;
    if (!srv_enter(c->srv)) {
        conn_drop(c);
        return;
    }
    tpc__ep_keep(c->fd); /* the server closes it, with tpc_close: on epoll it stays in the set */
    tpc_fiber_opts o = {.name = "connection",
                        .detached = true,
                        .stack_size = c->srv->stack_size,
                        .no_guard = c->srv->no_guard};
    if (tpc_spawn_opts(&o, conn_main, c, NULL) < 0) {
        srv_leave(c->srv);
        conn_drop(c);
    }
}

/* Cancels the connections whose fn runs on this shard (their current or next wait returns
 * -ECANCELED). Those not started yet see `stopping` and never start. */
static void conns_cancel(void *arg)
{
    struct srv_shard *sh = arg;
    for (tpc_list *n = sh->conns.next; n != &sh->conns; n = n->next)
        tpc_cancel(tpc__container_of(n, struct conn, node)->fiber);
    srv_unref(sh->srv);
}

/* Closes the parked connections of this shard (the server stops: they are idle). Each watch's
 * callback, which runs after this returns, closes its connection. */
static void conns_unpark(void *arg)
{
    struct srv_shard *sh = arg;
    for (tpc_list *n = sh->parked.next; n != &sh->parked; n = n->next)
        tpc_watch_stop(tpc__container_of(n, struct conn, node)->watch);
    srv_unref(sh->srv);
}

/* ---- Accept loops. ---- */

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
    struct conn *c = atomic_load(&srv->stopping) ? NULL : malloc(sizeof(*c));
    if (!c) {
        tpc_close(fd); /* stopping, or out of memory: the peer sees the connection close */
        return;
    }
    unsigned to = srv->handoff ? least_loaded(srv) : self;
    *c = (struct conn){.srv = srv, .fd = fd, .shard = to};
    atomic_fetch_add(&srv->refs, 1);
    atomic_fetch_add(&srv->sh[to].live, 1);
    /* To another shard as a message whose callback spawns the fiber there, so that a spawn
     * failing on the target (out of memory, stopping) still closes the connection. */
    if (to == self)
        conn_start(c);
    else if (tpc_submit_to((int)to, conn_start, c) < 0)
        conn_drop(c);
}

/* Ends the accept loop of this shard (or makes it end as soon as it runs). */
static void loop_stop(void *arg)
{
    struct srv_shard *sh = arg;
    sh->stop = true;
    if (sh->fiber)
        tpc_cancel(sh->fiber);
    srv_unref(sh->srv);
}

/* A loop that could not start: its listener goes, start hears why. */
static void loop_failed(struct srv_shard *sh, int err)
{
    close(sh->lfd);
    sh->lfd = -1;
    sh->start_err = err;
    srv_send(sh->srv, sh->srv->home, loop_reported, sh, &sh->started_msg);
    srv_unref(sh->srv); /* the loop's */
}

static int accept_loop(void *arg)
{
    struct srv_shard *sh = arg;
    tpc_server *srv = sh->srv;
    tpc_acceptor *acc = NULL;
    int rc =
        sh->stop || atomic_load(&srv->stopping) ? -ECANCELED : tpc_acceptor_open(sh->lfd, &acc);
    sh->start_err = rc;
    srv_send(srv, srv->home, loop_reported, sh, &sh->started_msg);
    if (rc == 0) {
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
        tpc_acceptor_close(acc); /* closes the connections accepted but not taken */
    }
    close(sh->lfd);
    sh->lfd = -1;
    sh->err = rc == -ECANCELED ? 0 : rc;
    srv_leave(srv);
    srv_unref(srv);
    return 0;
}

/* On shard i, from start: spawns the accept loop, which reports to the home shard. */
static void loop_start(void *arg)
{
    struct srv_shard *sh = arg;
    tpc_server *srv = sh->srv;
    if (!srv_enter(srv)) {
        loop_failed(sh, -ECANCELED);
        return;
    }
    tpc_fiber_opts o = {.name = "acceptor", .detached = true};
    int rc = tpc_spawn_opts(&o, accept_loop, sh, NULL);
    if (rc < 0) {
        srv_leave(srv);
        loop_failed(sh, rc);
    }
}

/* ---- Start and stop. ---- */

/* Waits until every shard has ended the connections it was sent: those whose fn ran are gone
 * by now, but a connection on its way to a busy shard (TPC_SERVER_HANDOFF) or parked (closing
 * now) holds no `active`, only its shard's `live`. A timer looks again every millisecond; a
 * shard that has left (the runtime ends) is not waited for: what it was sent runs as the
 * runtime ends. */
static void await_connections(tpc_server *srv)
{
    struct tpc__shard *s = tpc__self;
    for (unsigned i = 0; i < srv->nshards; i++)
        while (atomic_load(&srv->sh[i].live) > 0 &&
               !atomic_load_explicit(&s->rt->shards[i]->left, memory_order_acquire)) {
            struct tpc__wait w;
            tpc__park_hard_until(&w, tpc_now() + 1000000);
        }
}

/* Stops srv and waits until none of its loops and connections runs, then drops the handle's
 * references. Running handlers get until the caller's deadline when `grace` (none: cancelled
 * at once). Returns 0 or the first error a loop ended with. */
static int srv_shutdown(tpc_server *srv, bool grace)
{
    atomic_store(&srv->stopping, true);
    for (unsigned i = 0; i < srv->nshards; i++) {
        if (srv->sh[i].has_loop)
            srv_send(srv, i, loop_stop, &srv->sh[i], &srv->sh[i].stop_msg);
        srv_send(srv, i, conns_unpark, &srv->sh[i], &srv->sh[i].unpark_msg);
    }
    srv_leave(srv); /* the handle's */
    struct tpc__wait w;
    if (grace && tpc_deadline_get()) {
        while (!srv->done) {
            srv->waiter = &w;
            int rc = tpc__park(NULL, &w);
            srv->waiter = NULL;
            if (rc < 0)
                break; /* the deadline passed or the caller was cancelled */
        }
    }
    if (!srv->done) {
        for (unsigned i = 0; i < srv->nshards; i++)
            srv_send(srv, i, conns_cancel, &srv->sh[i], &srv->sh[i].cancel_msg);
        /* Only fibers hold `active`, and they have been cancelled: this ends. */
        while (!srv->done) {
            srv->waiter = &w;
            tpc__park_hard(&w);
            srv->waiter = NULL;
        }
    }
    await_connections(srv);
    int first = 0;
    for (unsigned i = 0; i < srv->nshards && !first; i++)
        first = srv->sh[i].err;
    srv_unref(srv);
    return first;
}

/* After a failed start: waits until every shard asked to start a loop has answered, so that
 * its listener is closed. They answer at once once `stopping` is set; the caller's deadline
 * (which may be what failed the start) does not cut this short, a cancel does (the runtime may
 * be stopping, and a shard gone: its listener then closes as it goes). */
static void await_reports(tpc_server *srv)
{
    uint64_t deadline = tpc_deadline_get();
    tpc_deadline_clear();
    struct tpc__wait w;
    while (srv->nstarting) {
        srv->waiter = &w;
        int rc = tpc__park(NULL, &w);
        srv->waiter = NULL;
        if (rc < 0)
            break;
    }
    if (deadline)
        tpc_deadline_set_at(deadline);
}

static int check_opts(const tpc_addr *a, const tpc_server_opts *o, tpc_conn_fn fn, tpc_server **out)
{
    if (!a || !fn || !out || (o->flags & ~(TPC_SERVER_HANDOFF | TPC_SERVER_SHARE)) ||
        (o->flags & (TPC_SERVER_HANDOFF | TPC_SERVER_SHARE)) ==
            (TPC_SERVER_HANDOFF | TPC_SERVER_SHARE) ||
        ((o->flags & TPC_SERVER_SHARE) && a->sa.sa_family == AF_UNIX) || o->backlog < 0)
        return -EINVAL;
    if (o->stack_size && (o->stack_size < TPC_MIN_STACK || o->stack_size > TPC_MAX_STACK))
        return -EINVAL; /* every connection's spawn would fail */
    return 0;
}

int tpc_server_start(const tpc_addr *a, const tpc_server_opts *opts, tpc_conn_fn fn, void *arg,
                     tpc_server **out)
{
    TPC__CHECK_FIBER();
    tpc_server_opts o = opts ? *opts : (tpc_server_opts){0};
    int rc = check_opts(a, &o, fn, out);
    if (rc < 0)
        return rc;
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
                        .no_guard = o.no_guard,
                        .handoff = (o.flags & TPC_SERVER_HANDOFF) || a->sa.sa_family == AF_UNIX,
                        .nshards = n,
                        .home = self->id,
                        .active = 1,
                        .refs = 1,
                        .sh = sh};
    for (unsigned i = 0; i < n; i++) {
        sh[i] = (struct srv_shard){.srv = srv, .id = i, .lfd = -1};
        tpc__list_init(&sh[i].conns);
        tpc__list_init(&sh[i].parked);
    }
    int backlog = o.backlog ? o.backlog : TPC__SERVER_BACKLOG;
    int *fds = malloc(n * sizeof(*fds));
    rc = -ENOMEM;
    if (!fds)
        goto fail;
    for (unsigned i = 0; i < n; i++)
        fds[i] = -1;
    if (srv->handoff)
        rc = fds[self->id] = tpc_listen(a, backlog, 0);
    else
        rc = tpc__listen_all(a, backlog, fds, o.flags & TPC_SERVER_SHARE);
    if (rc >= 0)
        rc = tpc_sock_local(fds[srv->handoff ? self->id : 0], &srv->addr);
    if (rc < 0)
        goto fail;
    for (unsigned i = 0; i < n; i++)
        sh[i].lfd = fds[i];
    free(fds);
    /* Each listening shard spawns its loop from a message, which reports back. */
    for (unsigned i = 0; i < n && rc >= 0; i++) {
        if (sh[i].lfd < 0)
            continue;
        atomic_fetch_add(&srv->refs, 1); /* the loop's */
        rc = tpc_submit_to((int)i, loop_start, &sh[i]);
        if (rc < 0) {
            atomic_fetch_sub(&srv->refs, 1);
            for (unsigned j = i; j < n; j++)
                if (sh[j].lfd >= 0)
                    close(sh[j].lfd), sh[j].lfd = -1;
        } else {
            sh[i].has_loop = true;
            srv->nstarting++;
        }
    }
    struct tpc__wait w;
    while (rc >= 0 && srv->nstarting) {
        srv->waiter = &w;
        rc = tpc__park(NULL, &w);
        srv->waiter = NULL;
    }
    for (unsigned i = 0; i < n && rc >= 0; i++)
        if (sh[i].start_err < 0)
            rc = sh[i].start_err;
    if (rc < 0) {
        atomic_store(&srv->stopping, true); /* loops still to start back out */
        await_reports(srv);
        srv_shutdown(srv, false); /* the loops that started */
        return rc;
    }
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
    if (srv->stop_begun)
        return -EINVAL; /* another fiber stops it: it returns once every fn has */
    struct srv_shard *sh = &srv->sh[srv->home];
    for (tpc_list *n = sh->conns.next; n != &sh->conns; n = n->next)
        if (tpc__container_of(n, struct conn, node)->fiber == tpc_self())
            return -EDEADLK; /* one of its own handlers: stop would wait for it to return */
    srv->stop_begun = true;
    return srv_shutdown(srv, true);
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
