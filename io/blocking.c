/* The blocking helper pool (tpc_blocking): a bounded FIFO of jobs served by a few helper
 * threads that belong to the runtime, started on first use, unpinned (the CPUs the runtime was
 * started with), all signals blocked, joined when the runtime stops.
 *
 * A job lives on the calling fiber's stack. The fiber queues it and suspends; a helper runs it
 * and posts the job's own inbox message (no allocation) to the fiber's shard, which wakes it.
 * Once a helper has taken the job the fiber waits for that message whatever happens (cancel,
 * deadline), because the helper still writes into the job. A job still queued when its fiber is
 * cancelled is taken out again and never runs.
 *
 * A full queue suspends the caller the same way: it queues a "room" record (with its job) on its
 * stack and waits. Whoever frees a place queues the oldest waiter's job there and posts the
 * waiter its note; newcomers queue behind waiting callers. So jobs run in the order their
 * callers came, whatever order the woken callers then run in. */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

enum { QUEUED, TAKEN, DONE };

/* A wake-up posted to a fiber's shard by a helper thread, on the fiber's stack. */
struct note {
    struct tpc__shard *shard;
    struct tpc__msg msg;
    struct tpc__wait w; /* fiber NULL until the fiber first parks on it */
    bool delivered;     /* the message ran (set on the shard) */
};

struct job {
    tpc_blocking_fn fn;
    void *arg;
    long result;
    int state; /* under the pool's lock */
    struct job *next;
    struct note done; /* posted when the job is done */
};

/* A fiber waiting for room in the queue. */
struct room {
    tpc_list node;   /* in pool->room_waiters, under the lock */
    struct job *job; /* queued for it once there is room */
    bool posted;     /* under the lock: its job is queued and its note on its way */
    struct note note;
};

struct tpc__pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct job *head, **tail;
    unsigned len, cap;
    tpc_list room_waiters; /* oldest first */
    bool stopping;
    unsigned nthreads, started;
    pthread_t *threads;
    cpu_set_t cpus;
};

int tpc__pool_init(struct tpc_runtime *rt, unsigned threads, unsigned queue)
{
    struct tpc__pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    p->tail = &p->head;
    p->cap = queue;
    p->nthreads = threads;
    tpc__list_init(&p->room_waiters);
    if (sched_getaffinity(0, sizeof(p->cpus), &p->cpus) != 0)
        CPU_ZERO(&p->cpus);
    rt->layer[TPC__IO_LAYER] = p;
    return 0;
}

const cpu_set_t *tpc__pool_cpus(struct tpc_runtime *rt)
{
    struct tpc__pool *p = rt->layer[TPC__IO_LAYER];
    return &p->cpus;
}

void tpc__pool_fini(struct tpc_runtime *rt)
{
    struct tpc__pool *p = rt->layer[TPC__IO_LAYER];
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->started; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    free(p);
    rt->layer[TPC__IO_LAYER] = NULL;
}

void tpc__pool_gauges(struct tpc_runtime *rt,
                      void (*put)(void *out, const char *name, const char *help, uint64_t value),
                      void *out)
{
    struct tpc__pool *p = rt->layer[TPC__IO_LAYER];
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    unsigned len = p->len, started = p->started, waiting = 0;
    for (tpc_list *n = p->room_waiters.next; n != &p->room_waiters; n = n->next)
        waiting++;
    pthread_mutex_unlock(&p->lock);
    put(out, "tpc_blocking_queued", "Jobs queued for the blocking pool's helpers.", len);
    put(out, "tpc_blocking_waiting", "Callers waiting for room in the blocking pool's queue.",
        waiting);
    put(out, "tpc_blocking_helpers", "The blocking pool's helper threads started.", started);
}

static void note_ran(void *arg) /* on the fiber's shard */
{
    struct note *n = arg;
    n->delivered = true;
    if (n->w.fiber) /* a wake that a cancel or deadline beat is ignored by tpc__wake */
        tpc__wake(&n->w, 0);
}

static void note_init(struct note *n, struct tpc__shard *s)
{
    n->shard = s;
    n->delivered = false;
    n->w.fiber = NULL;
    n->msg = (struct tpc__msg){.fn = note_ran, .arg = n, .owned = true};
}

/* After an interrupted wait: the note may still be on its way, and it points into this frame. */
static void note_wait(struct note *n)
{
    while (!n->delivered)
        tpc__park_hard(&n->w);
}

static void enqueue(struct tpc__pool *p, struct job *j) /* under the lock */
{
    j->next = NULL;
    *p->tail = j;
    p->tail = &j->next;
    p->len++;
    pthread_cond_signal(&p->work);
}

/* Under the lock: queues the jobs of the oldest fibers waiting for room, while there is room. */
static void room_freed(struct tpc__pool *p)
{
    tpc_list *n;
    while (p->len < p->cap && (n = tpc__list_first(&p->room_waiters))) {
        tpc__list_remove(n);
        struct room *r = tpc__container_of(n, struct room, node);
        r->posted = true;
        enqueue(p, r->job);
        tpc__post_msg(r->note.shard, &r->note.msg); /* cannot fail: its shard waits for it */
    }
}

static void *helper(void *arg)
{
    struct tpc__pool *p = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    if (CPU_COUNT(&p->cpus))
        sched_setaffinity(0, sizeof(p->cpus), &p->cpus);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (!p->head)
            break;
        struct job *j = p->head;
        if (!(p->head = j->next))
            p->tail = &p->head;
        p->len--;
        j->state = TAKEN;
        room_freed(p);
        pthread_mutex_unlock(&p->lock);
        long result = j->fn(j->arg);
        pthread_mutex_lock(&p->lock);
        j->result = result;
        j->state = DONE;
        tpc__post_msg(j->done.shard, &j->done.msg); /* cannot fail: see above */
        /* j may be gone from here on */
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Under the lock: starts the helper threads if none runs yet. */
static int start_helpers(struct tpc__pool *p)
{
    if (p->started)
        return 0;
    p->threads = calloc(p->nthreads, sizeof(*p->threads));
    if (!p->threads)
        return -ENOMEM;
    for (; p->started < p->nthreads; p->started++) {
        int rc = pthread_create(&p->threads[p->started], NULL, helper, p);
        if (rc != 0) {
            if (p->started)
                break; /* fewer helpers than asked for still work */
            fprintf(stderr, "libtpc: cannot start a blocking helper thread: %s\n", strerror(rc));
            free(p->threads);
            p->threads = NULL;
            return -rc;
        }
    }
    return 0;
}

/* Removes j from the queue (under the lock); false if a helper took it already. */
static bool unqueue(struct tpc__pool *p, struct job *j)
{
    for (struct job **pp = &p->head; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            if (!(*pp = j->next))
                p->tail = pp;
            p->len--;
            room_freed(p);
            return true;
        }
    return false;
}

int tpc_blocking(tpc_blocking_fn fn, void *arg, long *result)
{
    TPC__CHECK_SUSPEND();
    if (!fn)
        return -EINVAL;
    struct tpc__shard *s = tpc__self;
    struct tpc__pool *p = s->rt->layer[TPC__IO_LAYER];
    struct job j = {.fn = fn, .arg = arg, .state = QUEUED};
    note_init(&j.done, s);
    pthread_mutex_lock(&p->lock);
    int rc = start_helpers(p);
    if (rc == 0 && (p->len >= p->cap || !tpc__list_empty(&p->room_waiters))) {
        struct room r = {.job = &j, .posted = false};
        note_init(&r.note, s);
        tpc__list_push(&p->room_waiters, &r.node);
        pthread_mutex_unlock(&p->lock);
        rc = tpc__park(NULL, &r.note.w);
        pthread_mutex_lock(&p->lock);
        if (rc < 0 && !r.posted) {
            tpc__list_remove(&r.node);
            pthread_mutex_unlock(&p->lock);
            return rc;
        }
        pthread_mutex_unlock(&p->lock);
        if (rc < 0) /* its job is queued and the note on its way: as cancelled when queued */
            note_wait(&r.note);
    } else if (rc == 0) {
        enqueue(p, &j);
        pthread_mutex_unlock(&p->lock);
    } else {
        pthread_mutex_unlock(&p->lock);
        return rc;
    }

    if (rc == 0 && !j.done.delivered) /* a job queued for it may be done already */
        rc = tpc__park(NULL, &j.done.w);
    if (rc < 0) {
        pthread_mutex_lock(&p->lock);
        bool removed = j.state == QUEUED && unqueue(p, &j);
        pthread_mutex_unlock(&p->lock);
        if (removed)
            return rc;      /* fn never runs */
        note_wait(&j.done); /* fn runs or ran: wait until the helper has let go of j */
    }
    if (result)
        *result = j.result;
    return 0;
}
