/* Tasks: fibers and callback tasks, the run queue, suspension and wake-up, cancellation.
 *
 * Scheduling is asymmetric: a fiber always switches back to its shard's loop context, and the
 * loop picks the next task. That keeps one place (the loop) deciding what runs, which is what
 * makes the run queue strictly FIFO (shuffled in -Dshuffle builds) and lets the loop poll I/O
 * between batches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "rings.h"
#include "uring.h"

#ifdef TPC_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef TPC_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TPC_HAVE_VALGRIND 1
#endif

__thread struct tpc__shard *tpc__self;

/* The clock. tpc/timer.h declares tpc_now, but every wait's deadline needs it, so it is core's:
 * the loop caches it once per iteration. */
uint64_t tpc__clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tpc_now(void)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return tpc__clock_ns();
    if (!s->now_valid) {
        s->now = tpc__clock_ns();
        s->now_valid = true;
    }
    return s->now;
}

uint64_t tpc_now_fresh(void)
{
    uint64_t now = tpc__clock_ns();
    struct tpc__shard *s = tpc__self;
    if (s) {
        s->now = now;
        s->now_valid = true;
    }
    return now;
}

void tpc__ready(struct tpc__task *t)
{
    if (t->queued)
        return;
    t->queued = 1;
    tpc__queue_push(&tpc__self->runq, &t->qnode);
}

void tpc__fiber_ready(tpc_fiber *f)
{
    f->state = TPC__F_READY;
    if (!f->task.queued) {
        f->task.queued = 1;
        tpc__queue_push(&f->shard->runq, &f->task.qnode);
    }
}

#ifdef TPC_SHUFFLE
void tpc__shuffle_runq(struct tpc__shard *s)
{
    /* The window ends at the first fiber that yielded: what was ready before it runs first. */
    struct tpc__qnode **links[TPC__SHUFFLE_WINDOW];
    unsigned n = 0;
    for (struct tpc__qnode **l = &s->runq.head; *l && n < TPC__SHUFFLE_WINDOW; l = &(*l)->next) {
        if (n > 0 && ((struct tpc__task *)*l)->yielded)
            break;
        links[n++] = l;
    }
    if (n < 2)
        return;
    uint64_t x = s->shuffle_rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->shuffle_rng = x;
    unsigned k = (unsigned)(x % n);
    if (k == 0)
        return;
    struct tpc__qnode *t = *links[k]; /* unlink it, then put it at the head */
    *links[k] = t->next;
    if (!t->next)
        s->runq.tail = links[k];
    t->next = s->runq.head;
    s->runq.head = t;
}

uint64_t tpc__shuffle_seed(void)
{
    const char *env = getenv("TPC_SHUFFLE_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 0) : 0;
    if (!seed)
        seed = (tpc__clock_ns() ^ ((uint64_t)getpid() << 32)) | 1;
    fprintf(stderr, "libtpc: shuffled run order, seed %llu (TPC_SHUFFLE_SEED=%llu replays it)\n",
            (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}
#endif

/* ---- Switching, with the sanitizers told about every stack change. ---- */

static inline void switch_ctx(tpc__ctx *from, void **from_fake, tpc__ctx *to, const void *to_stack,
                              size_t to_size, void *to_tsan)
{
#ifdef TPC_ASAN
    __sanitizer_start_switch_fiber(from_fake, to_stack, to_size);
#else
    (void)from_fake;
    (void)to_stack;
    (void)to_size;
#endif
#ifdef TPC_TSAN
    __tsan_switch_to_fiber(to_tsan, 0);
#else
    (void)to_tsan;
#endif
    tpc__ctx_switch(from, to);
#ifdef TPC_ASAN
    __sanitizer_finish_switch_fiber(from_fake ? *from_fake : NULL, NULL, NULL);
#endif
}

#ifdef TPC_ASAN
#define FAKE(f)       (&(f)->asan_fake)
#define LOOP_STACK(s) (s)->loop_stack_bottom, (s)->loop_stack_size
#else
#define FAKE(f)       NULL
#define LOOP_STACK(s) NULL, 0
#endif
#ifdef TPC_TSAN
#define TSAN_FIBER(f) (f)->tsan_fiber
#define TSAN_LOOP(s)  (s)->tsan_loop
#else
#define TSAN_FIBER(f) NULL
#define TSAN_LOOP(s)  NULL
#endif

static void switch_to_loop(struct tpc__shard *s, tpc_fiber *f, bool exiting)
{
    /* A fiber that exits passes NULL so that ASan frees its fake stack. */
    switch_ctx(&f->ctx, exiting ? NULL : FAKE(f), &s->loop_ctx, LOOP_STACK(s), TSAN_LOOP(s));
}

static void fiber_finished(struct tpc__shard *s, tpc_fiber *f);

/* A fiber that returned leaves itself as the shard's zombie; whatever runs next on the shard
 * releases its stack (it cannot free the stack it is running on). */
static inline void reap_zombie(struct tpc__shard *s)
{
    if (TPC_UNLIKELY(s->zombie != NULL)) {
        tpc_fiber *z = s->zombie;
        s->zombie = NULL;
        fiber_finished(s, z);
    }
}

/* Leaves fiber f, which is suspending (or, if exiting, has returned). While the loop's run phase
 * has budget left and the next queued task is a fiber, switch to it directly rather than
 * through the loop: one context switch per hand-off instead of two, and a return address the
 * branch predictor has seen when both sides suspended from here. */
static void switch_away(struct tpc__shard *s, tpc_fiber *f, bool exiting)
{
    s->n_switches++;
    tpc__shuffle_runq(s);
    struct tpc__task *next = (struct tpc__task *)s->runq.head;
    if (next && tpc__phase_goes_on(s) && next->kind == TPC__TASK_FIBER) {
        tpc__queue_pop(&s->runq);
        next->queued = 0;
        TPC__UNYIELD(next);
        s->phase_left--;
        s->n_tasks++;
        tpc_fiber *to = (tpc_fiber *)next;
        to->state = TPC__F_RUNNING;
        if (to == f) /* it was the only one ready (never when exiting: not queued) */
            return;
        s->current = to;
        /* An exiting fiber passes no fake-stack slot, so that ASan frees its fake stack. */
        switch_ctx(&f->ctx, exiting ? NULL : FAKE(f), &to->ctx, to->stack, to->stack_size,
                   TSAN_FIBER(to));
    } else {
        switch_to_loop(s, f, exiting);
    }
    reap_zombie(s); /* resumed */
}

/* Suspends the running fiber; it continues when something makes it ready again. */
static void suspend(tpc_fiber *f)
{
    switch_away(f->shard, f, false);
}

static void fiber_entry(void *p)
{
    tpc_fiber *f = p;
    struct tpc__shard *s = f->shard;
#ifdef TPC_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    reap_zombie(s); /* the fiber before may have returned straight into this one */
    f->fresh = false;
    f->result = f->fn(f->arg);
    if (TPC_UNLIKELY(f->remote != NULL))
        tpc__remote_return(f);
    f->state = TPC__F_DONE;
    if (f->joiner)
        tpc__wake(f->joiner, 0);
    s->zombie = f;
    switch_away(s, f, true);
    abort(); /* unreachable: a finished fiber is never resumed */
}

static void release_stack(struct tpc__shard *s, tpc_fiber *f)
{
#ifdef TPC_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(f->vg_stack);
#endif
    tpc__stack_free(s, f->stack, f->stack_size, f->guard);
    f->stack = NULL;
}

/* Fiber records are recycled per shard (up to stack_cache of them), like their stacks. */
static void fiber_free(struct tpc__shard *s, tpc_fiber *f)
{
    tpc__list_remove(&f->all);
#ifdef TPC_TSAN
    __tsan_destroy_fiber(f->tsan_fiber);
#endif
    if (s->nfree_fibers < s->rt->stack_cache) {
        f->task.qnode.next = (struct tpc__qnode *)s->free_fibers;
        s->free_fibers = f;
        s->nfree_fibers++;
    } else {
        free(f);
    }
}

/* Called by the loop after a fiber returned to it. */
static void fiber_finished(struct tpc__shard *s, tpc_fiber *f)
{
    release_stack(s, f);
    s->nlive--;
    if (f->detached)
        fiber_free(s, f);
}

void tpc__run_fiber(struct tpc__shard *s, tpc_fiber *f)
{
    s->current = f;
    f->state = TPC__F_RUNNING;
    s->n_switches++;
    switch_ctx(&s->loop_ctx, &s->loop_fake, &f->ctx, f->stack, f->stack_size, TSAN_FIBER(f));
    /* Whichever fiber came back to the loop (f may have handed over to others). */
    s->current = NULL;
    reap_zombie(s);
}

static void park_timeout(tpc_timer *t, void *arg)
{
    (void)t;
    struct tpc__wait *w = arg;
    tpc__wake(w, w->timeout_result);
}

int tpc__park_until(tpc_list *q, struct tpc__wait *w, uint64_t until)
{
    struct tpc__shard *s = tpc__self;
    tpc_fiber *f = s->current;
    if (f->cancelled)
        return -ECANCELED;
    uint64_t when = until;
    w->timeout_result = 0;
    if (f->deadline) {
        if (f->deadline <= tpc_now())
            return -ETIMEDOUT;
        if (!until || f->deadline <= until) {
            when = f->deadline;
            w->timeout_result = -ETIMEDOUT;
        }
    }
    w->fiber = f;
    w->result = 0;
    w->hard = false;
    w->since = s->now;
    w->until = when;
    if (q)
        tpc__list_push(q, &w->node);
    else
        tpc__list_init(&w->node);
    tpc_timer tm; /* the timer layer's (core/layer.h): core keeps no clockwork of its own */
    if (when)
        s->arm(s, &tm, when, park_timeout, w);
    f->wait = w;
    f->state = TPC__F_WAITING;
    suspend(f);
    f->wait = NULL;
    if (when)
        s->disarm(s, &tm);
    return w->result;
}

void tpc__park_hard(struct tpc__wait *w)
{
    tpc_fiber *f = tpc__self->current;
    w->fiber = f;
    w->result = 0;
    w->hard = true;
    w->since = tpc__self->now;
    w->until = 0;
    tpc__list_init(&w->node);
    f->wait = w;
    f->state = TPC__F_WAITING;
    suspend(f);
    f->wait = NULL;
}

void tpc__park_hard_until(struct tpc__wait *w, uint64_t until)
{
    struct tpc__shard *s = tpc__self;
    tpc_timer tm;
    w->timeout_result = 0;
    s->arm(s, &tm, until, park_timeout, w);
    tpc__park_hard(w);
    s->disarm(s, &tm);
}

void tpc__park_turn(void)
{
    struct tpc__wait w;
    tpc_fiber *f = tpc__self->current;
    w.fiber = f;
    w.result = 0;
    w.hard = true;
    w.since = tpc__self->now;
    w.until = 0;
    tpc__list_push(&tpc__self->turn_waiters, &w.node);
    f->wait = &w;
    f->state = TPC__F_WAITING;
    suspend(f);
    f->wait = NULL;
}

int tpc__park(tpc_list *q, struct tpc__wait *w)
{
    return tpc__park_until(q, w, 0);
}

void tpc__wake(struct tpc__wait *w, int result)
{
    /* The first wake wins. A fiber can be woken by its waker (handing it ownership, a unit or
     * a value) and, before it runs, by its own timer or a cancel: those later wakes must not
     * overwrite what the first delivered. */
    if (w->fiber->wait != w)
        return;
    tpc__list_remove(&w->node);
    w->result = result;
    w->fiber->wait = NULL;
    tpc__fiber_ready(w->fiber);
}

/* ---- Public task API. ---- */

#ifdef TPC_FAULT_INJECTION
static __thread int spawn_fault_err;
static __thread unsigned spawn_fault_count;

void tpc__fault_spawn(int err, unsigned count)
{
    spawn_fault_err = err;
    spawn_fault_count = count;
}
#endif

/* A cleared fiber record: a recycled one, or a new one (NULL when out of memory). */
static tpc_fiber *fiber_record(struct tpc__shard *s)
{
    tpc_fiber *f = s->free_fibers;
    if (f) {
        s->free_fibers = (tpc_fiber *)f->task.qnode.next;
        s->nfree_fibers--;
    } else if (!(f = malloc(sizeof(*f)))) {
        return NULL;
    }
    /* The fields spawn does not set, one by one: a memset of the record's head compiles to a
     * `rep stos`, whose start-up cost was a tenth of a spawn + join. */
    f->task = (struct tpc__task){0};
    f->state = TPC__F_READY;
    f->cancelled = f->joined = f->keep_at_stop = false;
    f->wait = f->joiner = NULL;
    f->called = NULL;
    f->fresh = true;
    f->result = 0;
    f->deadline = 0;
    f->vg_stack = 0;
#ifdef TPC_ASAN
    f->asan_fake = NULL;
#endif
#ifdef TPC_TSAN
    f->tsan_fiber = NULL;
#endif
    f->remote = NULL;
    f->serial = ++s->fiber_serial;
    return f;
}

static inline __attribute__((always_inline)) int spawn(const tpc_fiber_opts *opts, tpc_fiber_fn fn,
                                                       void *arg, tpc_fiber **out, const void *site,
                                                       bool at_stop)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    if (s->stopping && !at_stop)
        return -ESHUTDOWN;
#ifdef TPC_FAULT_INJECTION
    if (spawn_fault_count) {
        spawn_fault_count--;
        return -spawn_fault_err;
    }
#endif
    size_t size = s->rt->stack_size;
    if (opts && opts->stack_size) {
        if (opts->stack_size < TPC_MIN_STACK || opts->stack_size > TPC_MAX_STACK)
            return -EINVAL;
        size = opts->stack_size;
    }
    tpc_fiber *f = fiber_record(s);
    if (!f)
        return -ENOMEM;
    f->guard = !(opts && opts->no_guard);
    int rc = tpc__stack_alloc(s, size, f->guard, &f->stack);
    if (rc < 0) {
        free(f);
        return rc;
    }
    size = tpc__page_round(size);
    f->stack_size = size;
    f->task.kind = TPC__TASK_FIBER;
    f->spawn_site = site;
    f->shard = s;
    f->fn = fn;
    f->arg = arg;
    f->detached = !out || (opts && opts->detached);
    if (opts && opts->name) {
        strncpy(f->name, opts->name, sizeof(f->name) - 1);
        f->name[sizeof(f->name) - 1] = 0;
    } else {
        memcpy(f->name, "fiber", 6);
    }
    tpc__ctx_init(&f->ctx, f->stack, size, fiber_entry, f);
#ifdef TPC_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
#ifdef TPC_HAVE_VALGRIND
    f->vg_stack = VALGRIND_STACK_REGISTER(f->stack, (char *)f->stack + size);
#endif
    tpc__list_push(&s->fibers, &f->all);
    s->nlive++;
    tpc__fiber_ready(f);
    if (out)
        *out = (opts && opts->detached) ? NULL : f;
    return 0;
}

int tpc_spawn_opts(const tpc_fiber_opts *opts, tpc_fiber_fn fn, void *arg, tpc_fiber **out)
{
    return spawn(opts, fn, arg, out, __builtin_return_address(0), false);
}

int tpc_spawn(tpc_fiber_fn fn, void *arg, tpc_fiber **out)
{
    return spawn(NULL, fn, arg, out, __builtin_return_address(0), false);
}

int tpc__spawn_keep(tpc_fiber_fn fn, void *arg, tpc_fiber **out)
{
    tpc_fiber *f = NULL;
    int rc = spawn(NULL, fn, arg, &f, __builtin_return_address(0), true);
    if (rc == 0) {
        f->keep_at_stop = true;
        *out = f;
    }
    return rc;
}

#ifdef TPC__CTX_CALL
/* A child joined before it ever ran, on its own stack, called by its joiner (tpc__ctx_call). */
static void called_child(void *p)
{
    tpc_fiber *f = p;
#ifdef TPC_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    f->result = f->fn(f->arg);
    f->state = TPC__F_DONE;
#ifdef TPC_ASAN
    /* Back to the joiner's stack; an exiting fiber passes no fake-stack slot (ASan frees it). */
    tpc_fiber *parent = f->joiner->fiber;
    __sanitizer_start_switch_fiber(NULL, parent->stack, parent->stack_size);
#endif
}

/* Joins child f, which has not run yet and is next in the run queue, by calling it: what the
 * switch to it and back would do (in the run phase's budget), without saving registers or
 * mispredicted returns. The child
 * may suspend like any fiber; the joiner waits meanwhile (a cancel of the joiner reaches the
 * child, as a joiner's cancel does) and goes on as soon as the child returns. */
static int join_by_call(struct tpc__shard *s, tpc_fiber *self, tpc_fiber *f, int *result)
{
    tpc__queue_pop(&s->runq);
    f->task.queued = 0;
    f->fresh = false;
    struct tpc__wait w = {.fiber = self, .hard = true, .since = s->now};
    tpc__list_init(&w.node);
    self->wait = &w;
    self->state = TPC__F_WAITING;
    self->called = f;
    f->joined = true;
    f->joiner = &w;
    f->state = TPC__F_RUNNING;
    s->current = f;
    s->n_switches++;
    s->n_tasks++;
    s->phase_left--; /* a turn of the run phase, as the switch would take */
#ifdef TPC_ASAN
    __sanitizer_start_switch_fiber(&self->asan_fake, f->stack, f->stack_size);
#endif
#ifdef TPC_TSAN
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
    tpc__ctx_call((void *)(((uintptr_t)f->stack + f->stack_size) & ~(uintptr_t)15), called_child,
                  f);
#ifdef TPC_TSAN
    /* Here, not in called_child: its own function exit belongs to the child's fiber. */
    __tsan_switch_to_fiber(self->tsan_fiber, 0);
#endif
#ifdef TPC_ASAN
    __sanitizer_finish_switch_fiber(self->asan_fake, NULL, NULL);
#endif
    s->current = self;
    self->state = TPC__F_RUNNING;
    self->wait = NULL;
    self->called = NULL;
    release_stack(s, f);
    s->nlive--;
    if (result)
        *result = f->result;
    fiber_free(s, f);
    return self->cancelled ? -ECANCELED : 0;
}
#endif

int tpc_join(tpc_fiber *f, int *result)
{
    TPC__CHECK_FIBER();
    struct tpc__shard *s = tpc__self;
    if (!f)
        return -EINVAL;
    if (tpc__remote_of(f))
        return tpc__remote_join(tpc__remote_of(f), result);
    if (f->shard != s)
        return -EXDEV;
    if (f == s->current)
        return -EDEADLK;
    if (f->detached || f->joined)
        return -EINVAL;
#ifdef TPC__CTX_CALL
    tpc_fiber *self = s->current;
    if (f->fresh && s->runq.head == &f->task.qnode && !f->remote && !self->deadline &&
        !self->cancelled && tpc__phase_goes_on(s))
        return join_by_call(s, self, f, result);
#endif
    int rc = 0;
    if (f->state != TPC__F_DONE) {
        struct tpc__wait w;
        f->joined = true;
        f->joiner = &w;
        rc = tpc__park(NULL, &w); /* at once when the caller is cancelled or past its deadline */
        if (rc < 0) {
            /* The caller may not wait any longer, but the child must not outlive what the
             * caller lent it (its stack, a descriptor): cancel it and wait for its end. */
            f->joiner = NULL;
            tpc_cancel(f);
            while (f->state != TPC__F_DONE) {
                f->joiner = &w;
                tpc__park_hard(&w);
            }
        }
        f->joined = false;
        f->joiner = NULL;
    }
    if (result)
        *result = f->result;
    fiber_free(s, f);
    return rc;
}

int tpc_detach(tpc_fiber *f)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!f)
        return -EINVAL;
    if (tpc__remote_of(f))
        return tpc__remote_detach(tpc__remote_of(f));
    if (f->shard != s)
        return -EXDEV;
    if (f->detached || f->joined)
        return -EINVAL;
    f->detached = true;
    if (f->state == TPC__F_DONE && !f->stack)
        fiber_free(s, f);
    return 0;
}

int tpc_cancel(tpc_fiber *f)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!f)
        return -EINVAL;
    if (tpc__remote_of(f))
        return tpc__remote_cancel(tpc__remote_of(f));
    if (f->shard != s)
        return -EXDEV;
    if (f->state == TPC__F_DONE)
        return 0;
    f->cancelled = true;
    if (f->state == TPC__F_WAITING && f->wait && !f->wait->hard)
        tpc__wake(f->wait, -ECANCELED);
    if (f->called) /* it waits for a child running as its call: the child stops in its place */
        tpc_cancel(f->called);
    return 0;
}

int tpc__fiber_stopped(tpc_fiber *f)
{
    if (f->cancelled)
        return -ECANCELED;
    if (f->deadline && f->deadline <= tpc_now())
        return -ETIMEDOUT;
    return 0;
}

bool tpc_cancelled(void)
{
    struct tpc__shard *s = tpc__self;
    return s && s->current && s->current->cancelled;
}

int tpc_yield(void)
{
    TPC__CHECK_FIBER();
    tpc_fiber *f = tpc__self->current;
#ifdef TPC_SHUFFLE
    f->task.yielded = 1; /* shuffled builds keep tpc_yield's promise: the others run first */
#endif
    tpc__fiber_ready(f);
    suspend(f);
    return f->cancelled ? -ECANCELED : 0;
}

int tpc_maybe_yield(void)
{
    TPC__CHECK_FIBER();
    struct tpc__shard *s = tpc__self;
    if (TPC_LIKELY(atomic_load_explicit(&s->watched, memory_order_relaxed))) {
        /* The watchdog raises the flag once this run phase has lasted a time slice. */
        if (TPC_LIKELY(atomic_load_explicit(&s->preempt_beat, memory_order_relaxed) !=
                       s->n_loops)) {
            if (TPC_UNLIKELY(!s->wants_slices))
                tpc__stall_want_slices(s);
            return 0;
        }
    } else if (tpc__clock_ns() - s->slice_start < s->time_slice) {
        return 0;
    }
    return tpc_yield();
}

tpc_fiber *tpc_self(void)
{
    return tpc__self ? tpc__self->current : NULL;
}

const char *tpc_fiber_name(const tpc_fiber *f)
{
    if (tpc__remote_of(f))
        return tpc__remote_name(tpc__remote_of(f));
    return f ? f->name : "";
}

int tpc_defer(tpc_callback_fn fn, void *arg)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    struct tpc__callback *cb = s->cb_free;
    if (cb) {
        s->cb_free = (struct tpc__callback *)cb->task.qnode.next;
    } else {
        cb = malloc(sizeof(*cb));
        if (!cb)
            return -ENOMEM;
    }
    cb->task.kind = TPC__TASK_CALLBACK;
    cb->task.queued = 0;
    cb->fn = fn;
    cb->arg = arg;
    tpc__ready(&cb->task);
    return 0;
}

/* Runs one callback task and recycles its record. */
void tpc__run_callback(struct tpc__shard *s, struct tpc__callback *cb);
void tpc__run_callback(struct tpc__shard *s, struct tpc__callback *cb)
{
    tpc_callback_fn fn = cb->fn;
    void *arg = cb->arg;
    cb->task.qnode.next = (struct tpc__qnode *)s->cb_free;
    s->cb_free = cb;
    fn(arg);
}

void tpc__fiber_cancel_all(struct tpc__shard *s)
{
    for (tpc_list *n = s->fibers.next; n != &s->fibers;) {
        tpc_fiber *f = tpc__container_of(n, tpc_fiber, all);
        n = n->next; /* waking does not free, but keep the walk independent of it */
        if (!f->keep_at_stop)
            tpc_cancel(f);
    }
}

/* At shard exit: fibers that finished but were never joined, and pooled callback records. */
void tpc__fiber_free_all(struct tpc__shard *s)
{
    while (!tpc__list_empty(&s->fibers)) {
        tpc_fiber *f = tpc__container_of(s->fibers.next, tpc_fiber, all);
        if (f->stack)
            release_stack(s, f);
        fiber_free(s, f);
    }
    while (s->free_fibers) {
        tpc_fiber *f = s->free_fibers;
        s->free_fibers = (tpc_fiber *)f->task.qnode.next;
        free(f);
    }
    s->nfree_fibers = 0;
    tpc__callbacks_free(s);
}

void tpc__callbacks_free(struct tpc__shard *s)
{
    while (s->cb_free) {
        struct tpc__callback *cb = s->cb_free;
        s->cb_free = (struct tpc__callback *)cb->task.qnode.next;
        free(cb);
    }
}

bool tpc__run_callbacks(struct tpc__shard *s)
{
    bool ran = false;
    struct tpc__task *t;
    while ((t = (struct tpc__task *)tpc__queue_pop(&s->runq))) {
        t->queued = 0;
        if (t->kind == TPC__TASK_CALLBACK) { /* no fiber is left to be queued here */
            tpc__run_callback(s, (struct tpc__callback *)t);
            ran = true;
        }
    }
    return ran;
}
