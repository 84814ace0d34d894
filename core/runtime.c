/* tpc_run(): build the shards, start their threads, hand shard 0 the main fiber, wait. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#ifdef TPC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

static int main_fiber(void *p)
{
    struct tpc__runtime *rt = p;
    int status = rt->main_fn(rt->main_arg);
    tpc_shutdown(status);
    return status;
}

static int start_handshake(struct tpc__shard *s, int err)
{
    struct tpc__runtime *rt = s->rt;
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

static void *shard_thread(void *p)
{
    struct tpc__shard *s = p;
    int err = 0;
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
    if (s->cpu >= 0 && (err = tpc__pin_thread(s->cpu, s->node)) != 0)
        fprintf(stderr, "libtpc: shard %u: cannot pin to CPU %d: %s\n", s->id, s->cpu,
                strerror(-err));
    if (!err)
        err = tpc__overflow_guard_init(s);
    if (!err)
        err = tpc__shard_io_init(s);
    tpc__timers_init(s);
    if (start_handshake(s, err) == 0) {
        if (s->id == 0) {
            tpc_fiber *f;
            tpc_fiber_opts o = {.name = "main", .detached = true};
            int rc = tpc_spawn_opts(&f, &o, main_fiber, s->rt);
            if (rc < 0) {
                fprintf(stderr, "libtpc: cannot spawn the main fiber: %s\n", tpc_strerror(rc));
                tpc_shutdown(rc);
            }
        }
        tpc__shard_loop(s);
    }
    tpc__fiber_free_all(s);
    tpc__stack_pool_drain(s);
    tpc__shard_io_fini(s);
    tpc__overflow_guard_fini(s);
    tpc__self = NULL;
    return NULL;
}

static int check_config(const tpc_config *c)
{
    if (c->stack_size && (c->stack_size < TPC_MIN_STACK || c->stack_size > TPC_MAX_STACK)) {
        fprintf(stderr, "libtpc: tpc_config.stack_size %zu outside [%u, %zu]\n", c->stack_size,
                TPC_MIN_STACK, TPC_MAX_STACK);
        return -EINVAL;
    }
    if (c->timer_tick_ns && (c->timer_tick_ns < 10000 || c->timer_tick_ns > 1000000000)) {
        fprintf(stderr, "libtpc: tpc_config.timer_tick_ns %llu outside [10000, 1000000000]\n",
                (unsigned long long)c->timer_tick_ns);
        return -EINVAL;
    }
    if (c->ring_entries && (c->ring_entries & (c->ring_entries - 1) || c->ring_entries > 32768)) {
        fprintf(stderr, "libtpc: tpc_config.ring_entries %u is not a power of two <= 32768\n",
                c->ring_entries);
        return -EINVAL;
    }
    return 0;
}

int tpc_run(const tpc_config *config, tpc_fiber_fn main_fn, void *arg)
{
    if (tpc__self)
        return -EBUSY;
    if (!main_fn)
        return -EINVAL;
    tpc_config c;
    if (config)
        c = *config;
    else
        memset(&c, 0, sizeof(c));
    int rc = check_config(&c);
    if (rc < 0)
        return rc;
    unsigned n;
    struct tpc__place *places;
    rc = tpc__placement(&c, &n, &places);
    if (rc < 0)
        return rc;

    /* SIGINT and SIGTERM, where nobody else handles them, become a graceful shutdown: blocked
     * here (the shards inherit the mask) and read by shard 0 from a signalfd. */
    sigset_t sigs, oldmask;
    sigemptyset(&sigs);
    if (!c.no_signals) {
        static const int stop_signals[] = {SIGINT, SIGTERM};
        for (size_t i = 0; i < 2; i++) {
            struct sigaction cur;
            if (sigaction(stop_signals[i], NULL, &cur) == 0 && cur.sa_handler == SIG_DFL)
                sigaddset(&sigs, stop_signals[i]);
        }
    }
    bool signals = !sigisemptyset(&sigs);

    /* A write to a closed socket must return -EPIPE, not kill the process. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);

    struct tpc__runtime *rt = calloc(1, sizeof(*rt));
    struct tpc__shard *shards = aligned_alloc(TPC_CACHELINE, sizeof(*shards) * n);
    if (!rt || !shards) {
        free(rt);
        free(shards);
        free(places);
        return -ENOMEM;
    }
    memset(shards, 0, sizeof(*shards) * n);
    rt->nshards = n;
    rt->shards = shards;
    rt->stack_size = tpc__page_round(c.stack_size ? c.stack_size : TPC_DEFAULT_STACK);
    rt->stack_cache = c.stack_cache ? c.stack_cache : 64;
    rt->ring_entries = c.ring_entries ? c.ring_entries : 256;
    rt->main_fn = main_fn;
    rt->main_arg = arg;
    rt->signals = signals;
    rt->sigset = sigs;
    if (signals)
        pthread_sigmask(SIG_BLOCK, &sigs, &oldmask);
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->cond, NULL);
    for (unsigned i = 0; i < n; i++) {
        struct tpc__shard *s = &shards[i];
        s->rt = rt;
        s->id = i;
        s->cpu = places[i].cpu;
        s->core = places[i].core;
        s->node = places[i].node;
        s->wake_fd = -1;
        s->sig_fd = -1;
        s->time_slice = c.time_slice_ns ? c.time_slice_ns : 500000;
        s->tick_ns = c.timer_tick_ns ? c.timer_tick_ns : 1000000;
        s->spin_ns = c.spin_ns ? c.spin_ns : 10000;
        tpc__queue_init(&s->runq);
        tpc__list_init(&s->fibers);
        atomic_init(&s->inbox, NULL);
        atomic_init(&s->sleeping, 0);
    }
    free(places);

    unsigned created = 0;
    for (; created < n; created++) {
        rc = pthread_create(&shards[created].thread, NULL, shard_thread, &shards[created]);
        if (rc != 0) {
            fprintf(stderr, "libtpc: cannot start shard thread %u: %s\n", created, strerror(rc));
            break;
        }
    }
    pthread_mutex_lock(&rt->lock);
    if (created < n)
        rt->start_err = -rc;
    while (rt->started < created)
        pthread_cond_wait(&rt->cond, &rt->lock);
    rt->go = true;
    pthread_cond_broadcast(&rt->cond);
    pthread_mutex_unlock(&rt->lock);
    for (unsigned i = 0; i < created; i++)
        pthread_join(shards[i].thread, NULL);

    int status = rt->start_err ? rt->start_err : rt->exit_status;
    if (signals) {
        /* Signals that came during the shutdown were for this runtime: take them before
         * unblocking, or they would kill the process now. */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&sigs, NULL, &zero) > 0)
            ;
        pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
    }
    for (unsigned i = 0; i < n; i++) {
        tpc__inbox_free(&shards[i]);
        tpc__shard_wake_fini(&shards[i]);
    }
    pthread_mutex_destroy(&rt->lock);
    pthread_cond_destroy(&rt->cond);
    free(shards);
    free(rt);
    return status;
}

int tpc_shutdown(int status)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    struct tpc__runtime *rt = s->rt;
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
        if (&rt->shards[i] != s)
            tpc__shard_wake(&rt->shards[i]);
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
    struct tpc__runtime *rt = self->rt;
    for (unsigned i = 0; i < rt->nshards; i++) {
        struct tpc__shard *s = &rt->shards[i];
        if (s->cpu < 0)
            fprintf(out, "shard %u: not pinned\n", i);
        else
            fprintf(out, "shard %u: cpu %d, core %d, NUMA node %d\n", i, s->cpu, s->core, s->node);
    }
    return 0;
}

int tpc_submit_to(int shard, tpc_callback_fn fn, void *arg)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    struct tpc__runtime *rt = s->rt;
    if (shard < 0 || (unsigned)shard >= rt->nshards || !fn)
        return -EINVAL;
    if (atomic_load_explicit(&rt->stop, memory_order_acquire))
        return -ESHUTDOWN;
    struct tpc__shard *to = &rt->shards[shard];
    if (to == s)
        return tpc_defer(fn, arg);
    return tpc__post(to, fn, arg);
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
