/* Work on other shards, over the shard-to-shard rings: tpc_spawn_on and the remote handle,
 * tpc_call_on and tpc_on_all (built on it), tpc_stats, and tpc_call_from_thread (over the
 * inbox, for threads that are not shards).
 *
 * A remote fiber is one heap record. The origin (the spawning shard) fills it and sends it to
 * the target; the target spawns a fiber there, which runs fn and writes only the result fields,
 * then sends the record home as a reply (tpc__send_reply: it never blocks or fails). Only the
 * origin frees the record: after the reply has come home and the handle has been released
 * (joined, detached, or abandoned by a call whose caller stopped waiting). So no reply ever
 * writes into freed memory, and a caller may stop waiting at any time. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

struct tpc_remote {
    /* Set by the origin before sending. */
    tpc_fiber_fn fn; /* NULL: read the target's counters */
    void *arg;
    struct tpc__shard *origin;
    tpc_fiber_opts opts;
    char name[32];
    /* Written by the target before the reply. */
    int rc; /* the spawn's error, or 0 */
    int result;
    tpc_shard_stats stats;
    struct tpc__pending reply;
    /* The origin's. */
    bool done;     /* the reply came home */
    bool released; /* nobody will join: free on the reply */
    struct tpc__wait *joiner;
    tpc_list link; /* in origin->remotes, until freed */
};

static struct tpc_remote *remote_new(void)
{
    struct tpc_remote *r = calloc(1, sizeof(*r));
    if (r) {
        r->origin = tpc__self;
        tpc__list_push(&r->origin->remotes, &r->link);
    }
    return r;
}

static void remote_free(struct tpc_remote *r)
{
    tpc__list_remove(&r->link);
    free(r);
}

/* When the runtime is freed: handles nobody joined or detached. */
void tpc__remotes_free(struct tpc__shard *s)
{
    while (!tpc__list_empty(&s->remotes))
        remote_free(tpc__container_of(s->remotes.next, struct tpc_remote, link));
}

static void read_stats(struct tpc__shard *s, tpc_shard_stats *out)
{
    *out = (tpc_shard_stats){
        .tasks = s->n_tasks,
        .switches = s->n_switches,
        .loops = s->n_loops,
        .msgs_in = s->n_msgs_in,
        .msgs_out = s->n_msgs_out,
        .wakeups_sent = s->n_wakes_sent,
        .wakeups = s->n_wakeups,
        .sleep_ns = s->n_sleep_ns,
        .io_submitted = s->n_io_submitted,
        .io_completed = s->n_io_completed,
        .timers = s->n_timers,
    };
}

static void remote_home(void *p) /* on the origin */
{
    struct tpc_remote *r = p;
    r->done = true;
    if (r->released)
        remote_free(r);
    else if (r->joiner)
        tpc__wake(r->joiner, 0);
}

static void remote_reply(struct tpc_remote *r) /* on the target; r may be gone after this */
{
    r->reply.fn = remote_home;
    r->reply.arg = r;
    tpc__send_reply(tpc__self, r->origin->id, &r->reply);
}

static int remote_fiber(void *p)
{
    struct tpc_remote *r = p;
    int result = r->result = r->fn(r->arg);
    remote_reply(r);
    return result;
}

static void remote_start(void *p) /* on the target */
{
    struct tpc_remote *r = p;
    if (!r->fn) {
        read_stats(tpc__self, &r->stats);
    } else {
        tpc_fiber_opts o = r->opts;
        o.detached = true;
        o.name = r->name[0] ? r->name : NULL;
        r->rc = tpc_spawn_opts(NULL, &o, remote_fiber, r);
        if (r->rc == 0)
            return;
    }
    remote_reply(r);
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

static int remote_send(int shard, tpc_remote **out, const tpc_fiber_opts *opts, tpc_fiber_fn fn,
                       void *arg)
{
    struct tpc__shard *s = tpc__self;
    struct tpc_remote *r = remote_new();
    if (!r)
        return -ENOMEM;
    r->fn = fn;
    r->arg = arg;
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
        o.detached = true;
        o.name = r->name[0] ? r->name : NULL;
        rc = tpc_spawn_opts(NULL, &o, remote_fiber, r);
    } else {
        rc = tpc__send(s, (unsigned)shard, remote_start, r);
    }
    if (rc < 0) {
        remote_free(r);
        return rc;
    }
    if (out)
        *out = r->released ? NULL : r;
    return 0;
}

int tpc_spawn_on(int shard, tpc_remote **out, const tpc_fiber_opts *opts, tpc_fiber_fn fn,
                 void *arg)
{
    int rc = check_shard(shard);
    if (rc < 0)
        return rc;
    if (!fn)
        return -EINVAL;
    if (opts && opts->stack_size &&
        (opts->stack_size < TPC_MIN_STACK || opts->stack_size > TPC_MAX_STACK))
        return -EINVAL;
    return remote_send(shard, out, opts, fn, arg);
}

int tpc_remote_join(tpc_remote *r, int *result)
{
    TPC__CHECK_FIBER();
    if (!r || r->joiner)
        return -EINVAL;
    if (r->origin != tpc__self)
        return -EXDEV;
    if (!r->done) {
        struct tpc__wait w;
        r->joiner = &w;
        tpc__rings_flush(tpc__self); /* about to wait: publish now, not at the loop's turn */
        int rc = tpc__park(NULL, &w);
        r->joiner = NULL;
        if (rc < 0)
            return rc;
    }
    int rc = r->rc;
    if (rc == 0 && result)
        *result = r->result;
    remote_free(r);
    return rc;
}

int tpc_remote_detach(tpc_remote *r)
{
    if (!tpc__self)
        return -EPERM;
    if (!r || r->joiner)
        return -EINVAL;
    if (r->origin != tpc__self)
        return -EXDEV;
    if (r->done)
        remote_free(r);
    else
        r->released = true;
    return 0;
}

/* Sends a remote record and waits for it; on an early return (cancel, deadline) it is
 * abandoned and freed by its reply. */
static int remote_wait(int shard, tpc_fiber_fn fn, void *arg, struct tpc_remote *copy)
{
    tpc_remote *r;
    int rc = remote_send(shard, &r, NULL, fn, arg);
    if (rc < 0)
        return rc;
    if (!r->done) {
        struct tpc__wait w;
        r->joiner = &w;
        tpc__rings_flush(tpc__self);
        rc = tpc__park(NULL, &w);
        r->joiner = NULL;
        if (rc < 0) {
            r->released = true; /* the reply frees it */
            return rc;
        }
    }
    *copy = *r;
    remote_free(r);
    return copy->rc;
}

int tpc_call_on(int shard, tpc_call_fn fn, void *arg, int *result)
{
    TPC__CHECK_FIBER();
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
    rc = remote_wait(shard, fn, arg, &r);
    if (rc == 0 && result)
        *result = r.result;
    return rc;
}

int tpc_on_all(tpc_call_fn fn, void *arg)
{
    TPC__CHECK_FIBER();
    int rc = check_shard(0);
    if (rc < 0)
        return rc;
    if (!fn)
        return -EINVAL;
    unsigned n = tpc__self->rt->nshards;
    tpc_remote **rs = calloc(n, sizeof(*rs));
    if (!rs)
        return -ENOMEM;
    unsigned sent = 0;
    for (; sent < n && rc == 0; sent++)
        rc = remote_send((int)sent, &rs[sent], NULL, fn, arg);
    if (rc < 0)
        sent--;
    int first = 0;
    for (unsigned i = 0; i < sent; i++) {
        int result;
        int jr = rc < 0 ? rc : tpc_remote_join(rs[i], &result);
        if (jr < 0) {
            rc = jr;
            tpc_remote_detach(rs[i]);
        } else if (result < 0 && first == 0) {
            first = result;
        }
    }
    free(rs);
    return rc < 0 ? rc : first;
}

int tpc_stats(int shard, tpc_shard_stats *out)
{
    TPC__CHECK_FIBER();
    int rc = check_shard(shard);
    if (rc < 0)
        return rc;
    if (!out)
        return -EINVAL;
    if ((unsigned)shard == tpc__self->id) {
        read_stats(tpc__self, out);
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
    struct tpc__wait w;
    r->joiner = &w;
    tpc__rings_flush(tpc__self);
    rc = tpc__park(NULL, &w);
    r->joiner = NULL;
    if (rc < 0) {
        r->released = true;
        return rc;
    }
    *out = r->stats;
    remote_free(r);
    return 0;
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
    int rc = tpc_spawn_opts(NULL, &o, thread_call_fiber, p);
    if (rc < 0)
        thread_call_done(p, rc);
}

int tpc_call_from_thread(tpc_runtime *rt, int shard, tpc_call_fn fn, void *arg, int *result)
{
    if (tpc__self)
        return -EPERM; /* a shard must not block its thread: use tpc_call_on */
    if (!rt || !fn || shard < 0 || (unsigned)shard >= rt->nshards)
        return -EINVAL;
    if (atomic_load_explicit(&rt->stop, memory_order_acquire))
        return -ESHUTDOWN;
    struct thread_call tc = {.fn = fn, .arg = arg};
    pthread_mutex_init(&tc.lock, NULL);
    pthread_cond_init(&tc.cond, NULL);
    int rc = tpc__post(&rt->shards[shard], thread_call_start, &tc);
    if (rc == 0) {
        pthread_mutex_lock(&tc.lock);
        while (!tc.done)
            pthread_cond_wait(&tc.cond, &tc.lock);
        pthread_mutex_unlock(&tc.lock);
        rc = tc.rc;
    }
    pthread_mutex_destroy(&tc.lock);
    pthread_cond_destroy(&tc.cond);
    if (rc == 0 && result)
        *result = tc.result;
    return rc;
}
