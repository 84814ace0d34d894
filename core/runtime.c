/* tpc_run(): build the shards, start their threads, hand shard 0 the main fiber, wait. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "rings.h"

#ifdef TPC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

static int main_fiber(void *p)
{
    struct tpc_runtime *rt = p;
    int status = rt->main_fn(rt->main_arg);
    tpc_shutdown(status);
    return status;
}

static int start_handshake(struct tpc_runtime *rt, int err)
{
    pthread_mutex_lock(&rt->lock);
    if (err && !rt->start_err)
        rt->start_err = err;
    rt->started++;
    pthread_cond_broadcast(&rt->cond);
    while (!rt->go)
        pthread_cond_wait(&rt->cond, &rt->lock);
    err = rt->start_err;
    pthread_mutex_unlock(&rt->lock);
    return err;
}

static struct tpc__shard *shard_new(struct tpc_runtime *rt, unsigned id,
                                    const struct tpc__place *place);

/* A shard's thread: pins itself, then allocates and sets up its shard (so that its memory is
 * on its own NUMA node), runs the loop, and tears its shard down. */
static void *shard_thread(void *p)
{
    struct tpc__thread *t = p;
    int err = 0;
    if (t->place.cpu >= 0 && !t->rt->topo_fake &&
        (err = tpc__pin_thread(t->place.cpu, t->place.node)) != 0)
        fprintf(stderr, "libtpc: shard %u: cannot pin to CPU %d: %s\n", t->id, t->place.cpu,
                strerror(-err));
    struct tpc__shard *s = err ? NULL : shard_new(t->rt, t->id, &t->place);
    if (!s) {
        start_handshake(t->rt, err ? err : -ENOMEM);
        return NULL;
    }
    s->tid = (pid_t)syscall(SYS_gettid);
    t->rt->shards[t->id] = s; /* others read it after the handshake */
    tpc__self = s;
#ifdef TPC_TSAN
    s->tsan_loop = __tsan_get_current_fiber();
#endif
#ifdef TPC_ASAN
    pthread_attr_t attr;
    void *lo;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &lo, &s->loop_stack_size);
        s->loop_stack_bottom = lo;
        pthread_attr_destroy(&attr);
    }
#endif
    err = tpc__overflow_guard_init(s);
    if (!err)
        err = tpc__rings_init(s);
    if (!err)
        err = tpc__shard_io_init(s);
    if (!err)
        err = tpc__layers_shard_init(s);
    if (start_handshake(s->rt, err) == 0) {
        if (s->id == 0) {
            tpc_fiber *f;
            tpc_fiber_opts o = {.name = "main", .detached = true};
            int rc = tpc_spawn_opts(&o, main_fiber, s->rt, &f);
            if (rc < 0) {
                fprintf(stderr, "libtpc: cannot spawn the main fiber: %s\n", tpc_strerror(rc));
                tpc_shutdown(rc);
            }
        }
        tpc__shard_loop(s);
    }
    tpc__locals_fini(s);
    tpc__fiber_free_all(s);
    tpc__stack_pool_drain(s);
    tpc__layers_shard_fini(s);
    tpc__shard_io_fini(s);
    tpc__overflow_guard_fini(s);
    tpc__self = NULL;
    return NULL;
}

/* Runtimes that threads which are not shards may still enter (tpc_call_from_thread). A foreign
 * thread's call may be under way while the thread that started the runtime is in tpc_wait, and
 * the call touches the shard (its inbox, its eventfd) after the message that lets the runtime
 * finish is visible. So a call enters under this lock, only while its runtime is listed and
 * not stopping, and is counted until it returns; tpc_wait, after joining the shards, unlists
 * the runtime and waits for the count to fall to zero before it frees anything. Every call
 * counted completes without the shards: its message either ran, or found the inbox closed. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tpc_runtime *live;

static void live_add(struct tpc_runtime *rt)
{
    pthread_mutex_lock(&live_lock);
    rt->live_next = live;
    live = rt;
    pthread_mutex_unlock(&live_lock);
}

static void live_remove(struct tpc_runtime *rt)
{
    pthread_mutex_lock(&live_lock);
    for (struct tpc_runtime **p = &live; *p; p = &(*p)->live_next)
        if (*p == rt) {
            *p = rt->live_next;
            break;
        }
    pthread_mutex_unlock(&live_lock);
    while (atomic_load(&rt->foreign_calls))
        sched_yield();
}

bool tpc__runtime_enter(struct tpc_runtime *rt)
{
    bool ok = false;
    pthread_mutex_lock(&live_lock);
    for (struct tpc_runtime *r = live; r; r = r->live_next)
        if (r == rt) {
            ok = !atomic_load_explicit(&rt->stop, memory_order_acquire);
            if (ok)
                atomic_fetch_add(&rt->foreign_calls, 1);
            break;
        }
    pthread_mutex_unlock(&live_lock);
    return ok;
}

void tpc__runtime_leave(struct tpc_runtime *rt)
{
    atomic_fetch_sub(&rt->foreign_calls, 1);
}

/* Frees what tpc_start built once every shard thread it created has been joined. */
static void runtime_free(struct tpc_runtime *rt)
{
    live_remove(rt);
    tpc__cpus_release(rt->cpu_claim);
    tpc__rings_afterlife(rt);
    tpc__layers_runtime_fini(rt);
    tpc__rings_free(rt);
    for (unsigned i = 0; i < rt->nshards; i++) {
        struct tpc__shard *s = rt->shards[i];
        if (!s)
            continue;
        tpc__self = s; /* values set in the afterlife: their destructors see their shard */
        tpc__locals_fini(s);
        tpc__self = NULL;
        tpc__layers_shard_free(s);
        tpc__inbox_free(s);
        tpc__remotes_free(s);
        tpc__shard_wake_fini(s);
        free(s);
    }
    pthread_mutex_destroy(&rt->lock);
    pthread_cond_destroy(&rt->cond);
    free(rt->shards);
    free(rt->threads);
    free(rt);
}

/* Joins the shard threads, then sets the calling thread's signal mask to `mask`. Signals that
 * came for the runtime (its stop signals, and those fibers waited for) while it stopped are
 * taken first: unblocking them now would run their default action. */
static void runtime_join(struct tpc_runtime *rt, const sigset_t *mask)
{
    for (unsigned i = 0; i < rt->nthreads; i++)
        pthread_join(rt->threads[i].thread, NULL);
    sigset_t ours = rt->sigwaited;
    if (rt->signals)
        sigorset(&ours, &ours, &rt->sigset);
    struct timespec zero = {0, 0};
    if (!sigisemptyset(&ours))
        while (sigtimedwait(&ours, NULL, &zero) > 0)
            ;
    pthread_sigmask(SIG_SETMASK, mask, NULL);
}

/* SIGINT and SIGTERM, where nobody else handles them, become a graceful stop: the runtime
 * blocks them (the shards inherit the mask) and shard 0 reads them from a signalfd. */
static void stop_signals(const tpc_config *c, sigset_t *sigs)
{
    sigemptyset(sigs);
    if (c->no_signals)
        return;
    static const int stop[] = {SIGINT, SIGTERM};
    for (size_t i = 0; i < sizeof(stop) / sizeof(stop[0]); i++) {
        struct sigaction cur;
        if (sigaction(stop[i], NULL, &cur) == 0 && cur.sa_handler == SIG_DFL)
            sigaddset(sigs, stop[i]);
    }
}

static struct tpc__shard *shard_new(struct tpc_runtime *rt, unsigned id,
                                    const struct tpc__place *place)
{
    const tpc_config *c = &rt->config;
    size_t size = (sizeof(struct tpc__shard) + TPC_CACHELINE - 1) & ~(size_t)(TPC_CACHELINE - 1);
    struct tpc__shard *s = aligned_alloc(TPC_CACHELINE, size);
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->rt = rt;
    s->id = id;
    s->cpu = rt->topo_fake ? -1 : place->cpu; /* a simulated machine's PUs are not pinned */
    s->place_cpu = place->cpu;
    s->core = place->core;
    s->node = place->node;
    s->wake_fd = -1;
    s->sig_fd = -1;
    s->time_slice = c->time_slice_ns;
    s->m.sample = TPC__TASK_SAMPLE;
#ifdef TPC_SHUFFLE
    s->shuffle_rng = (rt->shuffle_seed * 0x9e3779b97f4a7c15ull + id) | 1;
#endif
    s->spin_auto = c->spin_ns == 0;
    s->spin_ns = c->spin_ns ? c->spin_ns : TPC__SPIN_AUTO_NS;
    s->batch_auto = c->coalesce_us == 0; /* until the ring says it cannot (core/shard.c) */
    s->coalesce_us = c->coalesce_us > 0 ? (uint32_t)c->coalesce_us : 0;
    s->msg_batch = rt->msg_slots / 2 < 256 ? rt->msg_slots / 2 : 256;
    tpc__queue_init(&s->runq);
    tpc__list_init(&s->fibers);
    tpc__list_init(&s->remotes);
    tpc__list_init(&s->remote_cache);
    tpc__list_init(&s->flushq);
    tpc__list_init(&s->turn_waiters);
    atomic_init(&s->inbox, NULL);
    atomic_init(&s->sleeping, 0);
    atomic_init(&s->left, 0);
    return s;
}

/* Allocates the runtime, its shards and the table of rings, fills them in from c and blocks the
 * stop signals in the calling thread: nothing runs yet. NULL when out of memory (then nothing
 * is left allocated or blocked). */
static struct tpc_runtime *runtime_new(const tpc_config *c, const struct tpc__place *places,
                                       unsigned n, tpc_fiber_fn main_fn, void *arg)
{
    struct tpc_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return NULL;
    rt->config = *c;
#ifdef TPC_SHUFFLE
    rt->shuffle_seed = tpc__shuffle_seed();
#endif
    rt->shards = calloc(n, sizeof(*rt->shards));
    rt->threads = calloc(n, sizeof(*rt->threads));
    rt->rings = calloc((size_t)n * n, sizeof(*rt->rings));
    if (!rt->shards || !rt->threads || !rt->rings || tpc__layers_runtime_init(rt, c) < 0) {
        free(rt->shards);
        free(rt->threads);
        free(rt->rings);
        free(rt);
        return NULL;
    }
    rt->nshards = n;
    rt->stack_size = tpc__page_round(c->stack_size);
    rt->stack_cache = c->stack_cache;
    rt->ring_entries = c->ring_entries;
    rt->msg_slots = c->msg_slots;
    rt->main_fn = main_fn;
    rt->main_arg = arg;
    rt->drain = c->drain;
    rt->drain_arg = c->drain_arg;
    rt->drain_ns = (uint64_t)c->drain_ms * 1000000;
    stop_signals(c, &rt->sigset);
    rt->signals = !sigisemptyset(&rt->sigset);
    sigemptyset(&rt->sigwaited);
    sigemptyset(&rt->sigwanted);
    pthread_sigmask(SIG_BLOCK, &rt->sigset, &rt->oldmask);
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->cond, NULL);
    for (unsigned i = 0; i < n; i++)
        rt->threads[i] = (struct tpc__thread){.rt = rt, .id = i, .place = places[i]};
    return rt;
}

/* Starts a thread per shard and waits until each has set itself up (pinned, its rings and
 * io_uring made), then lets them all go. Returns 0, or the first error (a thread that could
 * not be created, or a shard that could not set up); the threads that started then stop. */
static int start_threads(struct tpc_runtime *rt)
{
    int rc = 0;
    for (; rt->nthreads < rt->nshards; rt->nthreads++) {
        struct tpc__thread *t = &rt->threads[rt->nthreads];
        rc = pthread_create(&t->thread, NULL, shard_thread, t);
        if (rc != 0) {
            fprintf(stderr, "libtpc: cannot start shard thread %u: %s\n", rt->nthreads,
                    strerror(rc));
            break;
        }
    }
    pthread_mutex_lock(&rt->lock);
    if (rt->nthreads < rt->nshards)
        rt->start_err = -rc;
    while (rt->started < rt->nthreads)
        pthread_cond_wait(&rt->cond, &rt->lock);
    if (!rt->start_err) /* before the shards run main_fn, which may hand rt to other threads */
        live_add(rt);
    rt->go = true;
    pthread_cond_broadcast(&rt->cond);
    rc = rt->start_err;
    pthread_mutex_unlock(&rt->lock);
    return rc;
}

/* Claims the CPUs the shards will be pinned to (none on a simulated machine), so that no other
 * runtime of this process, of any copy of libtpc, runs on them unless one of them shares. */
static int claim_cpus(const tpc_config *c, const struct tpc__place *places, unsigned n, bool fake,
                      void **claim)
{
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    for (unsigned i = 0; i < n && !fake; i++)
        if (places[i].cpu >= 0 && places[i].cpu < CPU_SETSIZE)
            CPU_SET(places[i].cpu, &cpus);
    return tpc__cpus_claim(&cpus, c->share_cpus, claim);
}

int tpc_start(const tpc_config *config, tpc_fiber_fn main_fn, void *arg, tpc_runtime **out)
{
    if (tpc__self)
        return -EBUSY;
    if (!main_fn || !out)
        return -EINVAL;
    tpc_config c;
    unsigned n;
    struct tpc__place *places;
    void *topo;
    bool fake;
    int rc = tpc__config_resolve(config, &c);
    if (rc < 0 || (rc = tpc__placement(&c, &n, &places, &topo, &fake)) < 0)
        return rc;
    if (!config || !config->msg_slots)
        c.msg_slots = tpc__default_msg_slots(n);
    if ((!config || !config->stall_ms) && !getenv("TPC_STALL_MS") && tpc__stall_off_by_default())
        c.stall_ms = -1;
    /* A write to a closed socket must return -EPIPE, not kill the process. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    void *claim;
    if ((rc = claim_cpus(&c, places, n, fake, &claim)) < 0) {
        free(places);
        return rc;
    }
    struct tpc_runtime *rt = runtime_new(&c, places, n, main_fn, arg);
    free(places);
    if (!rt) {
        tpc__cpus_release(claim);
        return -ENOMEM;
    }
    rt->cpu_claim = claim;
    rt->topo = topo;
    tpc__stall_prepare(&c);
    rt->topo_fake = fake;
    if ((rc = start_threads(rt)) < 0) {
        runtime_join(rt, &rt->oldmask);
        runtime_free(rt);
        return rc;
    }
    if (tpc__stall_start(rt) < 0)
        fputs("libtpc: cannot start the stall detector's thread; running without it\n", stderr);
    *out = rt;
    return 0;
}

int tpc_wait(tpc_runtime *rt)
{
    if (tpc__self)
        return -EBUSY;
    if (!rt)
        return -EINVAL;
    /* While this thread waits, it takes no asynchronous signal: those go to the shards, where
     * tpc_signal_wait can read them (or their default action happens there). */
    sigset_t async;
    sigfillset(&async);
    static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof(sync_signals) / sizeof(sync_signals[0]); i++)
        sigdelset(&async, sync_signals[i]);
    pthread_sigmask(SIG_BLOCK, &async, NULL);
    runtime_join(rt, &rt->oldmask);
    tpc__stall_stop(rt);
    int status = rt->exit_status;
    runtime_free(rt);
    return status;
}

int tpc_run(const tpc_config *config, tpc_fiber_fn main_fn, void *arg)
{
    tpc_runtime *rt;
    int rc = tpc_start(config, main_fn, arg, &rt);
    return rc < 0 ? rc : tpc_wait(rt);
}

tpc_runtime *tpc_runtime_self(void)
{
    return tpc__self ? tpc__self->rt : NULL;
}

int tpc_shutdown(int status)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    struct tpc_runtime *rt = s->rt;
    int expected = 0;
    /* exit_status is written before the flag's release, and read after all joins. */
    if (atomic_load(&rt->stop) == 0) {
        pthread_mutex_lock(&rt->lock);
        if (atomic_load(&rt->stop) == 0) {
            rt->exit_status = status;
            atomic_compare_exchange_strong(&rt->stop, &expected, 1);
        }
        pthread_mutex_unlock(&rt->lock);
    }
    for (unsigned i = 0; i < rt->nshards; i++)
        if (rt->shards[i] != s)
            tpc__shard_wake(rt->shards[i]);
    return 0;
}

/* The drain phase: the program's hook runs with every shard still up, bounded by drain_ms;
 * then the stop proper. */
static int drain_fiber(void *p)
{
    struct tpc_runtime *rt = p;
    tpc__self->current->deadline = tpc_now_fresh() + rt->drain_ns;
    rt->drain(rt->drain_arg);
    tpc_shutdown(rt->stop_status);
    return 0;
}

int tpc_stop(int status)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    struct tpc_runtime *rt = s->rt;
    if (!rt->drain || atomic_exchange(&rt->stopping, 1))
        return tpc_shutdown(status); /* no drain phase, or a second request: at once */
    rt->stop_status = status;
    tpc_fiber_opts o = {.name = "drain", .detached = true};
    if (tpc_spawn_opts(&o, drain_fiber, rt, NULL) < 0)
        return tpc_shutdown(status);
    return 0;
}

int tpc_shard_id(void)
{
    return tpc__self ? (int)tpc__self->id : -EPERM;
}

int tpc_shard_count(void)
{
    return tpc__self ? (int)tpc__self->rt->nshards : -EPERM;
}

int tpc_shard_cpu(void)
{
    if (!tpc__self)
        return -EPERM;
    return tpc__self->cpu >= 0 ? tpc__self->cpu : -ENOENT;
}

int tpc_topology_report(FILE *out)
{
    struct tpc__shard *self = tpc__self;
    if (!self)
        return -EPERM;
    if (!out)
        return -EINVAL;
    struct tpc_runtime *rt = self->rt;
    for (unsigned i = 0; i < rt->nshards; i++) {
        struct tpc__shard *s = rt->shards[i];
        const char *io = s->ep ? "epoll" : "io_uring";
        if (s->cpu < 0 && s->place_cpu >= 0)
            fprintf(out, "shard %u: not pinned, on simulated PU %d, core %d, NUMA node %d, %s\n", i,
                    s->place_cpu, s->core, s->node, io);
        else if (s->cpu < 0)
            fprintf(out, "shard %u: not pinned, %s\n", i, io);
        else
            fprintf(out, "shard %u: cpu %d, core %d, NUMA node %d, %s\n", i, s->cpu, s->core,
                    s->node, io);
    }
    return 0;
}

unsigned tpc_version(void)
{
    return TPC_VERSION_HEX;
}

#define TPC_STR2(x) #x
#define TPC_STR(x)  TPC_STR2(x)
const char *tpc_version_string(void)
{
    return TPC_STR(TPC_VERSION_MAJOR) "." TPC_STR(TPC_VERSION_MINOR) "." TPC_STR(TPC_VERSION_PATCH);
}
