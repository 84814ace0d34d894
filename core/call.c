/* Work on other shards, over the shard-to-shard rings: tpc_spawn_on and the remote handle,
 * tpc_call_on and tpc_on_all (built on it), tpc_stats, and tpc_call_from_thread (over the
 * inbox, for threads that are not shards).
 *
 * A remote fiber is one heap record, kept by the origin (the spawning shard). The request is a
 * two-slot message {CALL, record}, {fn, arg}: the target spawns fn(arg) without reading the
 * record, and when the fiber returns it sends {RESULT, record}, {result, error} home
 * (tpc__send_reply: it never blocks or fails). So in the common case the record never leaves the
 * origin's cache. Spawns with options, and tpc_stats, send the record itself instead (the
 * target reads the options, or writes the counters, there). Only the origin frees the record:
 * after the result has come home and the handle has been released (joined, detached, or
 * abandoned by a call whose caller stopped waiting). So no reply ever writes into freed
 * memory, and a caller may stop waiting at any time. */
#include <stdlib.h>
#include <string.h>
#include "rings.h"

struct tpc_remote {
    struct tpc__task task; /* kind TPC__TASK_REMOTE: tells the handle from a local fiber's */
    /* Set by the origin before sending. */
    tpc_fiber_fn fn; /* NULL: read the target's counters */
    void *arg;
    tpc_release_fn release; /* owned calls: frees arg when the record goes, unless cleared */
    struct tpc__shard *origin;
    tpc_fiber_opts opts;
    char name[32];
    tpc_shard_stats stats;     /* written by the target (tpc_stats) */
    struct tpc__pending reply; /* the target's, only while the ring home is full */
    /* The origin's. */
    int rc; /* the spawn's error, or 0 */
    int result;
    unsigned target; /* the shard it was sent to */
    bool done;       /* the reply came home */
    bool released;   /* nobody will join: free on the reply */
    bool cancelled;  /* a cancel went (or waits to go) to the target */
    struct tpc__wait *joiner;
    struct tpc__pending cancel; /* the cancel, only while the ring to the target is full */
    tpc_list link;              /* in origin->remotes, until freed */
};

/* Records are recycled per shard (up to REMOTE_CACHE of them): a call costs no malloc. */
#define REMOTE_CACHE 64

static struct tpc_remote *remote_new(void)
{
    struct tpc__shard *s = tpc__self;
    struct tpc_remote *r;
    tpc_list *n = tpc__list_first(&s->remote_cache);
    if (n) {
        tpc__list_remove(n);
        s->nremote_cache--;
        r = tpc__container_of(n, struct tpc_remote, link);
        memset(r, 0, sizeof(*r));
    } else if (!(r = calloc(1, sizeof(*r)))) {
        return NULL;
    }
    r->task.kind = TPC__TASK_REMOTE;
    r->origin = s;
    tpc__list_push(&s->remotes, &r->link);
    return r;
}

static void remote_free(struct tpc_remote *r)
{
    struct tpc__shard *s = r->origin;
    if (r->release) { /* an owned call nobody took its argument back from */
        tpc_release_fn release = r->release;
        r->release = NULL;
        release(r->arg);
    }
    if (r->cancelled && !r->cancel.sent) /* the fiber returned before its cancel could go */
        tpc__list_remove(&r->cancel.node);
    tpc__list_remove(&r->link);
    if (s->nremote_cache < REMOTE_CACHE) {
        tpc__list_push(&s->remote_cache, &r->link);
        s->nremote_cache++;
    } else {
        free(r);
    }
}

/* When the runtime is freed: the cache, and handles nobody joined or detached. */
void tpc__remotes_free(struct tpc__shard *s)
{
    tpc_list *lists[] = {&s->remotes, &s->remote_cache};
    for (int i = 0; i < 2; i++)
        while (!tpc__list_empty(lists[i])) {
            tpc_list *n = lists[i]->next;
            tpc__list_remove(n);
            struct tpc_remote *r = tpc__container_of(n, struct tpc_remote, link);
            if (r->release) /* never the case while replies reach the afterlife: a safety net */
                r->release(r->arg);
            free(r);
        }
    s->nremote_cache = 0;
}

static void remote_home(struct tpc_remote *r) /* on the origin */
{
    r->done = true;
    if (r->released)
        remote_free(r);
    else if (r->joiner)
        tpc__wake(r->joiner, 0);
}

/* On the target: tells the origin that r's fiber returned `result`, or could not start. */
static void send_result(struct tpc__shard *s, unsigned origin, struct tpc_remote *r, int result,
                        int err)
{
    struct tpc__slot m[2] = {{{.w0 = TPC__MSG_RESULT, .w1 = (uintptr_t)r}},
                             {{.w0 = (uintptr_t)(intptr_t)result, .w1 = (uintptr_t)(intptr_t)err}}};
    tpc__send_reply(s, origin, m, 2, &r->reply);
}

void tpc__remote_return(tpc_fiber *f)
{
    send_result(f->shard, f->remote_origin, f->remote, f->result, 0);
}

/* On the target: spawns fn(arg) for record r; the fiber reports when it returns. */
static int remote_spawn(struct tpc__shard *s, unsigned origin, struct tpc_remote *r,
                        tpc_fiber_fn fn, void *arg, const tpc_fiber_opts *opts)
{
    (void)s;
    tpc_fiber_opts o = {0};
    if (opts)
        o = *opts;
    o.detached = false;
    tpc_fiber *f;
    int rc = tpc_spawn_opts(&o, fn, arg, &f);
    if (rc < 0)
        return rc;
    f->remote = r;
    f->remote_origin = origin;
    tpc_detach(f);
    return 0;
}

void tpc__msg_wide(struct tpc__shard *s, unsigned from, uintptr_t mark, void *rec,
                   struct tpc__slot data)
{
    struct tpc_remote *r = rec;
    if (mark == TPC__MSG_CALL) {
        int rc = remote_spawn(s, from, r, (tpc_fiber_fn)data.w0, (void *)data.w1, NULL);
        if (rc < 0)
            send_result(s, from, r, 0, rc);
    } else {
        r->result = (int)(intptr_t)data.w0;
        r->rc = (int)(intptr_t)data.w1;
        remote_home(r);
    }
}

static void remote_start(void *p) /* on the target: a record with options, or tpc_stats */
{
    struct tpc_remote *r = p;
    struct tpc__shard *s = tpc__self;
    int rc = 0;
    if (!r->fn) {
        tpc__stats_read(s, &r->stats);
    } else {
        tpc_fiber_opts o = r->opts;
        o.name = r->name[0] ? r->name : NULL;
        rc = remote_spawn(s, r->origin->id, r, r->fn, r->arg, &o);
        if (rc == 0)
            return;
    }
    send_result(s, r->origin->id, r, 0, rc);
}

static int check_shard(int shard)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (shard < 0 || (unsigned)shard >= s->rt->nshards)
        return -EINVAL;
    if (atomic_load_explicit(&s->rt->stop, memory_order_acquire))
        return -ESHUTDOWN;
    return 0;
}

static int remote_send(int shard, const tpc_fiber_opts *opts, tpc_fiber_fn fn, void *arg,
                       struct tpc_remote **out)
{
    struct tpc__shard *s = tpc__self;
    struct tpc_remote *r = remote_new();
    if (!r)
        return -ENOMEM;
    r->fn = fn;
    r->arg = arg;
    r->target = (unsigned)shard;
    if (opts) {
        r->opts = *opts;
        if (opts->name) {
            strncpy(r->name, opts->name, sizeof(r->name) - 1);
            r->name[sizeof(r->name) - 1] = 0;
        }
    }
    r->released = !out || (opts && opts->detached);
    int rc;
    if ((unsigned)shard == s->id) {
        tpc_fiber_opts o = r->opts;
        o.name = r->name[0] ? r->name : NULL;
        rc = remote_spawn(s, s->id, r, fn, arg, &o);
    } else if (opts) {
        rc = tpc__send(s, (unsigned)shard, remote_start, r);
    } else {
        struct tpc__pending p = {.m = {{{.w0 = TPC__MSG_CALL, .w1 = (uintptr_t)r}},
                                       {{.w0 = (uintptr_t)fn, .w1 = (uintptr_t)arg}}},
                                 .n = 2};
        rc = tpc__send_msg(s, (unsigned)shard, &p);
    }
    if (rc < 0) {
        remote_free(r);
        return rc;
    }
    if (out)
        *out = r->released ? NULL : r;
    return 0;
}

int tpc_spawn_on(int shard, const tpc_fiber_opts *opts, tpc_fiber_fn fn, void *arg, tpc_fiber **out)
{
    int rc = check_shard(shard);
    if (rc < 0)
        return rc;
    if (!fn)
        return -EINVAL;
    if (opts && opts->stack_size &&
        (opts->stack_size < TPC_MIN_STACK || opts->stack_size > TPC_MAX_STACK))
        return -EINVAL;
    struct tpc_remote *r;
    rc = remote_send(shard, opts, fn, arg, out ? &r : NULL);
    if (rc == 0 && out)
        *out = (tpc_fiber *)r; /* the handle: tpc_join, tpc_detach, tpc_cancel know its kind */
    return rc;
}

/* True when r's result will never come while the runtime runs: its target left its loop, and
 * a full turn of this shard's loop since then (which drains the rings) brought nothing. A
 * target that ran the fiber cannot leave before its reply is in this shard's ring (it stays
 * while it owes a live shard a message), so the request itself was never taken: it will fail
 * in the afterlife, where no fiber can wait for it. */
static bool remote_orphaned(struct tpc_remote *r)
{
    struct tpc__shard *s = tpc__self;
    if (r->target == s->id ||
        !atomic_load_explicit(&s->rt->shards[r->target]->left, memory_order_acquire))
        return false;
    tpc__park_turn();
    return !r->done;
}

/* Waits for r's result. On an early return (cancel, deadline) r stays the caller's to join
 * again, or, with `abandon`, is left for its reply to free. -ESHUTDOWN: the target stopped
 * before it could start the fiber; r is left for the afterlife to free. */
static int remote_await(struct tpc_remote *r, bool abandon)
{
    if (r->done)
        return 0;
    if (remote_orphaned(r)) {
        r->released = true;
        return -ESHUTDOWN;
    }
    if (r->done) /* the reply came during remote_orphaned's turn: nothing would wake a park */
        return 0;
    struct tpc__wait w;
    r->joiner = &w;
    tpc__rings_flush(tpc__self); /* about to wait: publish now, not at the loop's turn */
    int rc = tpc__park(NULL, &w);
    r->joiner = NULL;
    if (rc < 0 && r->done)
        rc = 0; /* the reply came after the cancel or deadline woke the caller, before it ran:
                   it wins (abandoned now, the record would never be freed) */
    if (rc < 0 && abandon)
        r->released = true;
    return rc;
}

/* On the target: cancels the fiber spawned for record p, if it still runs there. */
static void remote_cancel_run(void *p)
{
    struct tpc__shard *s = tpc__self;
    for (tpc_list *n = s->fibers.next; n != &s->fibers; n = n->next) {
        tpc_fiber *f = tpc__container_of(n, tpc_fiber, all);
        if (f->remote == p && f->state != TPC__F_DONE) {
            tpc_cancel(f);
            return;
        }
    }
}

/* Messages between two shards run in order, so the cancel finds the fiber its CALL spawned (or
 * none: it returned, or never started). It never blocks: a full ring keeps it in r->cancel. */
int tpc__remote_cancel(struct tpc_remote *r)
{
    if (r->origin != tpc__self)
        return -EXDEV;
    if (r->done || r->cancelled)
        return 0;
    r->cancelled = true;
    struct tpc__slot m = {{.fn = remote_cancel_run, .arg = r}};
    r->cancel.sent = true; /* tpc__send_reply clears it while the message waits in r->cancel */
    tpc__send_reply(tpc__self, r->target, &m, 1, &r->cancel);
    return 0;
}

/* Waits for r's result uninterruptibly (the caller is cancelled already). The result wakes it;
 * a timer looks again every millisecond for the one case where no result will come: the target
 * stopped after this shard sent the request and before it polled its rings. Returns false
 * then. */
static bool await_hard(struct tpc_remote *r)
{
    while (!r->done) {
        if (remote_orphaned(r))
            return false;
        struct tpc__wait w;
        r->joiner = &w;
        tpc__park_hard_until(&w, tpc_now() + 1000000);
        r->joiner = NULL;
    }
    return true;
}

/* As tpc_join for a local fiber: when the caller may not wait any longer, the remote fiber is
 * cancelled and its result still waited for, so that it never outlives what the caller lent
 * it. Only a target that stopped before it started the fiber ends the wait early. */
int tpc__remote_join(struct tpc_remote *r, int *result)
{
    TPC__CHECK_FIBER(); /* a result that came home can be joined by a cancelled caller too */
    if (r->origin != tpc__self)
        return -EXDEV; /* (before reading anything the spawning shard may be writing) */
    if (r->joiner || r->released)
        return -EINVAL;
    int rc = remote_await(r, false);
    if (rc < 0 && rc != -ESHUTDOWN) {
        tpc__remote_cancel(r);
        if (!await_hard(r))
            rc = -ESHUTDOWN;
    }
    if (rc == -ESHUTDOWN) {
        r->released = true; /* its request runs in the afterlife, which frees it */
        return rc;
    }
    int err = r->rc; /* the fiber never started: that says more than the caller's cancel */
    if (err == 0 && result)
        *result = r->result;
    remote_free(r);
    return err < 0 ? err : rc;
}

int tpc__remote_detach(struct tpc_remote *r)
{
    if (r->origin != tpc__self)
        return -EXDEV;
    if (r->joiner || r->released)
        return -EINVAL;
    if (r->done)
        remote_free(r);
    else
        r->released = true;
    return 0;
}

const char *tpc__remote_name(const struct tpc_remote *r)
{
    return r->name[0] ? r->name : "fiber";
}

/* Sends a remote record and waits for it (abandoning it on an early return). */
static int remote_wait(int shard, tpc_fiber_fn fn, void *arg, struct tpc_remote *copy)
{
    struct tpc_remote *r;
    int rc = remote_send(shard, NULL, fn, arg, &r);
    if (rc < 0 || (rc = remote_await(r, true)) < 0)
        return rc;
    *copy = *r;
    remote_free(r);
    return copy->rc;
}

int tpc_call_on(int shard, tpc_call_fn fn, void *arg, int *result)
{
    TPC__CHECK_SUSPEND();
    int rc = check_shard(shard);
    if (rc < 0)
        return rc;
    if (!fn)
        return -EINVAL;
    if ((unsigned)shard == tpc__self->id) {
        int v = fn(arg);
        if (result)
            *result = v;
        return 0;
    }
    struct tpc_remote r;
    uint64_t t0 = tpc__clock_ns();
    rc = remote_wait(shard, fn, arg, &r);
    if (rc == 0) /* the round trip (core/metrics.c) */
        tpc__hist_add(&tpc__self->m.call, tpc__clock_ns() - t0);
    if (rc == 0 && result)
        *result = r.result;
    return rc;
}

int tpc_on_all(tpc_call_fn fn, void *arg)
{
    TPC__CHECK_SUSPEND();
    int rc = check_shard(0);
    if (rc < 0)
        return rc;
    if (!fn)
        return -EINVAL;
    unsigned n = tpc__self->rt->nshards;
    struct tpc_remote **rs = calloc(n, sizeof(*rs));
    if (!rs)
        return -ENOMEM;
    unsigned sent = 0;
    int send_err = 0; /* a send that failed: those sent before it are still waited for */
    for (; sent < n && !send_err; sent++)
        send_err = remote_send((int)sent, NULL, fn, arg, &rs[sent]);
    if (send_err < 0)
        sent--;
    int first = 0, err = 0; /* the first fn result < 0; the first target that could not start */
    for (unsigned i = 0; i < sent; i++) {
        struct tpc_remote *r = rs[i];
        int jr = rc < 0 ? rc : remote_await(r, true); /* on an early return, r is abandoned */
        if (jr < 0) {
            rc = jr;
            if (!r->released) /* the caller stopped waiting: the rest are not waited for */
                tpc__remote_detach(r);
            continue;
        }
        /* The reply came: r is ours to free, whether fn ran or the target could not start it. */
        if (r->rc < 0 && err == 0)
            err = r->rc;
        else if (r->rc == 0 && r->result < 0 && first == 0)
            first = r->result;
        remote_free(r);
    }
    free(rs);
    return rc < 0 ? rc : send_err < 0 ? send_err : err < 0 ? err : first;
}

int tpc_stats(int shard, tpc_shard_stats *out)
{
    TPC__CHECK_SUSPEND();
    int rc = check_shard(shard);
    if (rc < 0)
        return rc;
    if (!out)
        return -EINVAL;
    if ((unsigned)shard == tpc__self->id) {
        tpc__stats_read(tpc__self, out);
        return 0;
    }
    struct tpc_remote *r = remote_new();
    if (!r)
        return -ENOMEM;
    rc = tpc__send(tpc__self, (unsigned)shard, remote_start, r);
    if (rc < 0) {
        remote_free(r);
        return rc;
    }
    if ((rc = remote_await(r, true)) < 0)
        return rc;
    *out = r->stats;
    remote_free(r);
    return 0;
}

/* ---- Calls that own their argument ----
 * The record carries `release`: remote_free calls it unless the caller took the argument back
 * (cleared it) first. A caller that stops waiting marks the record released, so the reply, when
 * it comes home, frees the record and with it the argument: after fn has returned, on the
 * caller's shard (or in the afterlife, posing as it), exactly once. */

static int owned_fail(tpc_release_fn release, void *arg, int rc)
{
    if (release)
        release(arg);
    return rc;
}

int tpc_call_owned(int shard, tpc_call_fn fn, void *arg, tpc_release_fn release, int *result)
{
    int rc = 0;
    if (!tpc__self || !tpc__self->current)
        rc = -EPERM;
    else if ((rc = tpc__fiber_stopped(tpc__self->current)) == 0 && (rc = check_shard(shard)) == 0 &&
             !fn)
        rc = -EINVAL;
    if (rc < 0)
        return owned_fail(release, arg, rc);
    if ((unsigned)shard == tpc__self->id) {
        int v = fn(arg);
        if (result)
            *result = v;
        return 0;
    }
    struct tpc_remote *r;
    if ((rc = remote_send(shard, NULL, fn, arg, &r)) < 0)
        return owned_fail(release, arg, rc);
    r->release = release;
    if ((rc = remote_await(r, true)) < 0)
        return rc; /* abandoned: the reply frees r, and arg with it */
    rc = r->rc;
    if (rc == 0) {
        r->release = NULL; /* fn ran: arg is the caller's again */
        if (result)
            *result = r->result;
    }
    remote_free(r); /* releases arg if fn never ran */
    return rc;
}

static void release_free(void *p)
{
    free(p);
}

int tpc_call_copy(int shard, tpc_call_fn fn, const void *arg, size_t size, int *result)
{
    TPC__CHECK_SUSPEND();
    if ((size && !arg) || !fn)
        return -EINVAL;
    void *copy = malloc(size ? size : 1);
    if (!copy)
        return -ENOMEM;
    if (size)
        memcpy(copy, arg, size);
    int rc = tpc_call_owned(shard, fn, copy, release_free, result);
    if (rc == 0)
        free(copy);
    return rc;
}

/* tpc_call_many's records: on the stack for a few calls. */
#define MANY_STACK 16

/* After an early return of tpc_call_many: items before `got` were collected (their records
 * freed, their arguments the caller's); the rest are abandoned with their arguments. */
static void many_abandon(tpc_call_item *items, struct tpc_remote **rs, size_t got, size_t n,
                         tpc_release_fn release)
{
    for (size_t i = 0; i < n; i++) {
        struct tpc_remote *r = i < got ? NULL : rs[i];
        if (!r) { /* collected, or never sent */
            if (release)
                release(items[i].arg);
        } else if (r->done) {
            remote_free(r);
        } else {
            r->released = true;
        }
    }
}

/* Sends every call; a call that could not be sent gets its error in items[i].err (its rs[i] stays
 * NULL). Returns 0, or -ECANCELED / -ETIMEDOUT when the caller stopped waiting for ring room. */
static int many_send(tpc_call_item *items, struct tpc_remote **rs, size_t n, tpc_call_fn fn,
                     tpc_release_fn release)
{
    for (size_t i = 0; i < n; i++) {
        items[i].err = 0;
        items[i].result = 0;
        int rc = check_shard(items[i].shard);
        if (rc == 0)
            rc = remote_send(items[i].shard, NULL, fn, items[i].arg, &rs[i]);
        if (rc == -ECANCELED || rc == -ETIMEDOUT)
            return rc;
        if (rc < 0)
            items[i].err = rc;
        else
            rs[i]->release = release;
    }
    return 0;
}

int tpc_call_many(tpc_call_item *items, size_t n, tpc_call_fn fn, tpc_release_fn release)
{
    int rc = 0;
    if (!tpc__self || !tpc__self->current)
        rc = -EPERM;
    else if ((rc = tpc__fiber_stopped(tpc__self->current)) == 0 && (!fn || (n && !items)))
        rc = -EINVAL;
    struct tpc_remote *stack[MANY_STACK] = {0}, **rs = stack;
    if (rc == 0 && n > MANY_STACK && !(rs = calloc(n, sizeof(*rs))))
        rc = -ENOMEM;
    if (rc < 0) {
        for (size_t i = 0; release && items && i < n; i++)
            release(items[i].arg);
        return rc;
    }
    size_t got = 0;
    if ((rc = many_send(items, rs, n, fn, release)) == 0)
        for (; got < n; got++) {
            struct tpc_remote *r = rs[got];
            if (!r)
                continue;
            if ((rc = remote_await(r, false)) < 0)
                break;
            r->release = NULL; /* the reply came: the argument is the caller's again */
            items[got].err = r->rc;
            items[got].result = r->rc == 0 ? r->result : 0;
            remote_free(r);
            rs[got] = NULL;
        }
    if (rc < 0)
        many_abandon(items, rs, got, n, release);
    if (rs != stack)
        free(rs);
    return rc;
}

/* ---- From threads that are not shards. ----
 * The record lives on the calling thread's stack, which blocks until the target has finished
 * with it: the fiber ran fn, or the message was refused, or the spawn failed. */
struct thread_call {
    tpc_call_fn fn;
    void *arg;
    int result;
    int rc;
    bool done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void thread_call_done(struct thread_call *tc, int rc)
{
    pthread_mutex_lock(&tc->lock);
    tc->rc = rc;
    tc->done = true;
    pthread_cond_signal(&tc->cond);
    pthread_mutex_unlock(&tc->lock);
}

static int thread_call_fiber(void *p)
{
    struct thread_call *tc = p;
    tc->result = tc->fn(tc->arg);
    thread_call_done(tc, 0);
    return 0;
}

static void thread_call_start(void *p)
{
    tpc_fiber_opts o = {.detached = true, .name = "call_from_thread"};
    int rc = tpc_spawn_opts(&o, thread_call_fiber, p, NULL);
    if (rc < 0)
        thread_call_done(p, rc);
}

int tpc_call_from_thread(tpc_runtime *rt, int shard, tpc_call_fn fn, void *arg, int *result)
{
    if (tpc__self)
        return -EPERM; /* a shard must not block its thread: use tpc_call_on */
    if (!rt || !fn || shard < 0)
        return -EINVAL;
    if (!tpc__runtime_enter(rt))
        return -ESHUTDOWN;
    if ((unsigned)shard >= rt->nshards) {
        tpc__runtime_leave(rt);
        return -EINVAL;
    }
    struct thread_call tc = {.fn = fn, .arg = arg};
    pthread_mutex_init(&tc.lock, NULL);
    pthread_cond_init(&tc.cond, NULL);
    int rc = tpc__post(rt->shards[shard], thread_call_start, &tc);
    if (rc == 0) {
        pthread_mutex_lock(&tc.lock);
        while (!tc.done)
            pthread_cond_wait(&tc.cond, &tc.lock);
        pthread_mutex_unlock(&tc.lock);
        rc = tc.rc;
    }
    pthread_mutex_destroy(&tc.lock);
    pthread_cond_destroy(&tc.cond);
    tpc__runtime_leave(rt);
    if (rc == 0 && result)
        *result = tc.result;
    return rc;
}
