/* core's private definitions: the fiber, the shard and the runtime, waiting and waking. The
 * layers above reach them through their own private headers (timer/internal.h, io/internal.h,
 * net/internal.h), which include this one; core/uring.h (the shard's io_uring) and
 * core/rings.h (shard-to-shard messages) add what only some files need. Never installed. */
#ifndef TPC_CORE_INTERNAL_H
#define TPC_CORE_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "tpc.h"
#include "compat.h"
#include "context.h"
#include "list.h"
#include "layer.h"

#if defined(__SANITIZE_ADDRESS__)
#define TPC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TPC_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TPC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TPC_TSAN 1
#endif
#endif

#define TPC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TPC_LIKELY(x)   __builtin_expect(!!(x), 1)
#define TPC_CACHELINE   64

#ifdef TPC_ASAN
#define TPC_DEFAULT_STACK (256u * 1024)
#else
#define TPC_DEFAULT_STACK (128u * 1024)
#endif
/* Tasks one run phase may run before the loop polls I/O, the inbox and timers. */
#define TPC_PHASE_TASKS 64
/* The spin before sleeping when tpc_config.spin_ns is left 0, while messages pass between
 * shards (core/shard.c). */
#define TPC__SPIN_AUTO_NS 10000
#define TPC_MIN_STACK     (16u * 1024)
#define TPC_MAX_STACK     ((size_t)1 << 30)

struct tpc__shard;
struct tpc_runtime;
struct tpc__ep;

/* What a suspended fiber waits on. A waker unlinks it (if queued) and calls tpc__wake();
 * cancellation does the same with -ECANCELED. */
struct tpc__wait {
    tpc_list node; /* in the object's waiter list; self-linked when not queued */
    tpc_fiber *fiber;
    int result;
    int timeout_result; /* result when its timer fires: 0 (sleep) or -ETIMEDOUT (deadline) */
    void *value;        /* payload for channels */
    bool hard;          /* neither cancel nor deadline wakes it (tpc__park_hard) */
    /* For debuggers (gdb/libtpc-gdb.py), set when the fiber parks: the shard's cached clock
     * then (s->now, no clock read), and when its timer wakes it (ns; 0: no timer). */
    uint64_t since, until;
};

/* The common head of everything the run queue holds. */
/* TPC__TASK_REMOTE is never queued: it marks a handle of a fiber on another shard (core/call.c),
 * which tpc_join, tpc_detach and tpc_cancel take as they take a local fiber. */
enum { TPC__TASK_FIBER = 1, TPC__TASK_CALLBACK = 2, TPC__TASK_REMOTE = 3 };
struct tpc__task {
    struct tpc__qnode qnode;
    uint8_t kind;
    uint8_t queued;
    uint8_t yielded; /* queued by tpc_yield (read only in shuffled builds) */
};

enum { TPC__F_READY = 0, TPC__F_RUNNING, TPC__F_WAITING, TPC__F_DONE };

struct tpc_fiber {
    struct tpc__task task;
    tpc__ctx ctx;
    struct tpc__shard *shard;
    uint8_t state;
    bool cancelled;
    bool detached;
    bool joined;            /* a joiner exists */
    bool guard;             /* the stack has a guard page */
    bool fresh;             /* spawned, never run yet */
    bool keep_at_stop;      /* the runtime's own, finishing what a stop must not cancel */
    struct tpc__wait *wait; /* while WAITING: the record to wake */
    struct tpc__wait *joiner;
    struct tpc_fiber *called; /* a child it joined before it started, running as its call */
    tpc_fiber_fn fn;
    void *arg;
    int result;
    uint64_t deadline; /* ns; 0: none */
    void *stack;       /* lowest usable byte; the guard page sits below */
    size_t stack_size;
    tpc_list all;      /* in shard->fibers */
    unsigned vg_stack; /* valgrind stack id */
#ifdef TPC_ASAN
    void *asan_fake;
#endif
#ifdef TPC_TSAN
    void *tsan_fiber;
#endif
    char name[32];
    /* Cold, set by tpc_spawn_opts: spawned for another shard, report the result there. */
    struct tpc_remote *remote;
    unsigned remote_origin;
    const void *spawn_site; /* the spawning call's return address, for the stall report */
    uint64_t serial;        /* this spawn's number on its shard (> 0): records are recycled, serials
                               not, so a mutex knows its owner even after the owner returned */
};

struct tpc__callback {
    struct tpc__task task;
    tpc_callback_fn fn;
    void *arg;
};

/* A message from another thread: runs fn(arg) on the target shard (multi-producer inbox). */
struct tpc__msg {
    struct tpc__msg *next;
    tpc_callback_fn fn;
    void *arg;
    bool owned; /* the sender's memory (tpc__post_msg), not freed by the drain */
};

/* An io_uring operation: the SQE's user_data points at it; the loop calls complete() for each
 * CQE. Every in-flight operation belongs to some waiting task or to the loop itself. */
struct tpc__op {
    void (*complete)(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags);
};

struct tpc__stack {
    struct tpc__stack *next;
    size_t size;
};

/* Guarded stacks of one size, carved from slabs (core/stack.c): the first class is the runtime's
 * default size, the others go to the first sizes asked for (0: not yet). */
#define TPC__STACK_CLASSES 4
struct tpc__stack_class {
    size_t size;
    struct tpc__stack *hot; /* pooled, most recently used first */
    unsigned nhot;
    void **cold; /* past stack_cache: their pages all given back, so listed here, not in them */
    unsigned ncold, cap_cold;
    struct tpc__slab *slabs;
};

/* A stalled shard's state, taken by the stall signal's handler on the shard's thread for the
 * watchdog to report (core/stall.c). */
#define TPC__STALL_FRAMES 32
enum { SNAP_IDLE, SNAP_ASKED, SNAP_WRITING, SNAP_DONE };
struct tpc__stall_snap {
    _Atomic int state; /* SNAP_IDLE, SNAP_ASKED (by the watchdog), SNAP_WRITING, SNAP_DONE */
    bool in_fiber;
    char name[32];
    const void *spawn_site;
    int depth;
    void *frames[TPC__STALL_FRAMES];
};

/* Metrics (core/metrics.c): latency histograms, and counters and gauges the shard publishes;
 * written by the shard with relaxed stores, read by any thread. */
#define TPC__HIST_BUCKETS 40 /* bucket k: (2^(k-1), 2^k] ns (0: 0 or 1 ns); the last: the rest */
struct tpc__hist {
    _Atomic uint64_t n[TPC__HIST_BUCKETS];
    _Atomic uint64_t sum; /* ns */
};
/* I/O operation classes, by opcode (tpc__io_class). */
enum {
    TPC__IOC_READ,
    TPC__IOC_WRITE,
    TPC__IOC_RECV,
    TPC__IOC_SEND,
    TPC__IOC_ACCEPT,
    TPC__IOC_CONNECT,
    TPC__IOC_SYNC,
    TPC__IOC_POLL,
    TPC__IOC_OTHER,
    TPC__IOC_N
};
/* Published: tpc_shard_stats' counters in its order (but stalls, kept apart), then gauges. */
enum {
    TPC__PUB_TASKS,
    TPC__PUB_SWITCHES,
    TPC__PUB_LOOPS,
    TPC__PUB_MSGS_IN,
    TPC__PUB_MSGS_OUT,
    TPC__PUB_WAKES_SENT,
    TPC__PUB_WAKEUPS,
    TPC__PUB_SLEEP_NS,
    TPC__PUB_IO_SUBMITTED,
    TPC__PUB_IO_COMPLETED,
    TPC__PUB_TIMERS,
    TPC__PUB_ACCEPT_BACKOFFS,
    TPC__PUB_IO_ENTERS,
    TPC__PUB_FIBERS,    /* gauges from here */
    TPC__PUB_INFLIGHT,  /* single-shot I/O operations in flight */
    TPC__PUB_MULTISHOT, /* multishot operations armed */
    TPC__PUB_STACKS,    /* pooled stacks */
    TPC__PUB_N
};
struct tpc__metrics {
    struct tpc__hist task, loop, call, io[TPC__IOC_N];
    _Atomic uint64_t pub[TPC__PUB_N];
    uint64_t loop_t0, slept0; /* the current loop iteration's start, and sleep_ns then */
    uint32_t sample;          /* tasks until the next timed one */
};
#define TPC__TASK_SAMPLE 64

static inline void tpc__hist_add(struct tpc__hist *h, uint64_t ns)
{
    unsigned k = ns <= 1 ? 0 : 64 - (unsigned)__builtin_clzll(ns - 1);
    if (k >= TPC__HIST_BUCKETS)
        k = TPC__HIST_BUCKETS - 1;
    atomic_store_explicit(&h->n[k], atomic_load_explicit(&h->n[k], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&h->sum, atomic_load_explicit(&h->sum, memory_order_relaxed) + ns,
                          memory_order_relaxed);
}

struct tpc__shard {
    /* Hot, owned by the shard thread. */
    tpc_fiber *current;
    tpc_fiber *zombie; /* returned, its stack not yet released */
    struct tpc__queue runq;
    size_t phase_left; /* tasks the current run phase may still run */
    tpc__ctx loop_ctx;
    void *loop_fake;      /* ASan's fake-stack handle of the loop context */
    uint64_t slice_start; /* ns, at the start of the current run phase */
    uint64_t time_slice;
#ifdef TPC_SHUFFLE
    uint64_t shuffle_rng; /* xorshift64 state */
#endif
    int64_t spin_ns;      /* watch the inbox this long before sleeping; <= 0: never */
    uint32_t coalesce_us; /* hold wake-ups this long while completions gather; 0: off */
    /* Left to the runtime (core/shard.c, "Adaptive batching"): spin only while messages pass
     * between shards; batch wake-ups only while the measured load gains from it. */
    bool spin_auto, batch_auto;
    uint32_t batch_n, batch_us; /* arrivals the next sleeps wait for (0: wake on the first), and
                                 * for how long at most */
    uint64_t load_t0, load_c0, load_m0, load_s0; /* the load window's start (ns), completions,
                                                  * messages and sleep_ns then */
    uint64_t active[4];             /* operations that completed in the window, hashed: 256 bits */
    uint64_t spin_msgs, spin_until; /* messages counted at the last check; spin until (ns) */
    struct tpc_runtime *rt;
    unsigned id;
    int cpu;        /* pinned OS CPU, or -1 */
    int place_cpu;  /* its PU in the topology in use: cpu, or a simulated machine's (numa.h) */
    int core, node; /* its core (hwloc logical index) and NUMA node, or -1 */
    bool stopping;
    size_t nlive;   /* fibers that have not returned */
    bool now_valid; /* cached clock for this loop iteration */
    uint64_t now;
    tpc_list fibers;
    struct tpc__callback *cb_free; /* callback task free list (linked through qnode) */
    tpc_fiber *free_fibers;        /* recycled fiber records (linked through task.qnode) */
    uint64_t fiber_serial;         /* the last spawn's serial */
    unsigned nfree_fibers;
    struct tpc__stack_class stk[TPC__STACK_CLASSES]; /* guarded stacks by size (core/stack.c) */
    struct tpc__stack *nog_stacks;                   /* pooled unguarded stacks */
    unsigned nnog;
    struct io_uring ring;
    struct tpc__ep
        *ep; /* the epoll backend's state (core/epoll.c); NULL: the shard runs io_uring */
    /* The blocking pool, as the io layer leaves it here (tpc_blocking): where the epoll backend
     * sends what only a helper thread can do. */
    int (*blocking)(long (*fn)(void *), void *arg, long *result);
    bool ops_missing; /* the kernel lacks an opcode the runtime uses (core/uring.c) */
    bool ring_ok;
    bool ring_fd_registered;
    unsigned ring_flags, ring_features; /* setup flags it got, IORING_FEAT_* */
    bool poll_wait;                     /* sleep in ppoll() on the ring fd (under valgrind) */
    unsigned inflight;    /* ops submitted and not completed, the wake-up read excluded */
    unsigned inflight_rw; /* of those, reads, writes and syncs: the shard's sleep is I/O wait */
    unsigned nmultishot;  /* multishot ops (accept, receive streams) in the ring */
    bool wake_armed;      /* the eventfd read is in the ring */
    bool submit_deferred; /* SQEs wait for the sleeping io_uring_enter (core/shard.c) */
    int wake_fd;
    uint64_t wake_buf;
    struct tpc__op wake_op;
    int sig_fd; /* shard 0: signalfd of rt->sigset, or -1 */
    struct tpc__op sig_op;
    struct signalfd_siginfo sig_buf;
    void *altstack;
#ifdef TPC_ASAN
    const void *loop_stack_bottom;
    size_t loop_stack_size;
#endif
#ifdef TPC_TSAN
    void *tsan_loop;
#endif
    struct tpc__ring **out; /* out[j]: the ring to shard j (NULL for itself) */
    struct tpc__ring **in;  /* in[j]: the ring from shard j; its own slot in rt->rings */
    unsigned *dirty;        /* shards whose out ring has unpublished messages */
    uint32_t msg_batch;     /* publish at least every msg_batch messages: 256, or half a ring */
    tpc_list remotes;       /* remote-fiber handles it spawned, not yet freed (call.c) */
    tpc_list remote_cache;  /* freed ones kept for reuse */
    unsigned nremote_cache;
    tpc_list flushq;              /* struct tpc__flush to run at the next tpc__rings_flush */
    tpc_list turn_waiters;        /* fibers in tpc__park_turn */
    void *layer[TPC__LAYERS];     /* each layer's state (core/layer.h), on this shard's node */
    void *locals[TPC_SHARD_KEYS]; /* the program's per-shard values (core/local.c) */
    /* The hooks the loop calls, gathered at start so that the hot path walks no table: the
     * layers with a poll (and their state), with a timeout, and the clock's arm and disarm. */
    unsigned npolls, ntimeouts;
    struct tpc__hook {
        union {
            bool (*poll)(struct tpc__shard *s, void *state);
            int64_t (*timeout)(struct tpc__shard *s, void *state);
        };
        void *state;
    } polls[TPC__LAYERS], timeouts[TPC__LAYERS];
    void (*arm)(struct tpc__shard *s, tpc_timer *t, uint64_t deadline, tpc_timer_fn fn, void *arg);
    void (*disarm)(struct tpc__shard *s, tpc_timer *t);
    unsigned ndirty;
    /* Counters, written only by this shard, read by tpc_stats(). */
    uint64_t n_tasks, n_switches, n_loops, n_msgs_in, n_msgs_out, n_wakes_sent, n_wakeups,
        n_sleep_ns, n_io_submitted, n_io_completed, n_timers, n_accept_backoffs, n_io_enters,
        n_cq_overflows, n_batched, n_spins;

    /* Written by other threads. */
    _Alignas(TPC_CACHELINE) _Atomic(struct tpc__msg *) inbox;
    _Atomic int sleeping;
    _Atomic int left; /* has left its loop: what is sent to it now runs in the afterlife */
    /* The stall detector's (core/stall.c): the loop counter as the watchdog sees it, how long
     * the current stall has lasted, and stalls so far. */
    _Atomic uint64_t beat, n_stalls;
    _Alignas(TPC_CACHELINE) struct tpc__metrics m; /* core/metrics.c */
    /* The watchdog also keeps time slices: it stores the loop counter here when a run phase has
     * lasted a time slice, which tpc_maybe_yield compares with its own (core/task.c). `watched`
     * says that the watchdog runs; without it, tpc_maybe_yield reads the clock. */
    _Atomic uint64_t preempt_beat;
    _Atomic bool watched;
    bool wants_slices; /* has called tpc_maybe_yield: the watchdog should keep its slices */
    struct tpc__stall_snap stall; /* what the stall signal's handler saw (core/stall.c) */
    pid_t tid;                    /* its thread's id, for the watchdog's signal */
    unsigned nbell;
    _Atomic uint64_t *bell; /* bit j: something happened on a ring between this shard and j */
};

/* Placement (core/placement.c). */
struct tpc__place {
    int cpu;  /* OS index of the PU, -1: not pinned */
    int core; /* hwloc logical index of its core, -1: unknown */
    int node; /* OS index of its NUMA node, -1: unknown */
};
/* Also gives the topology the places were taken from (an hwloc_topology_t, kept for the life of
 * the process; NULL if none could be loaded) and whether it is a simulated one (TPC_TOPOLOGY:
 * then the shards are not pinned and their memory is not bound). */
int tpc__placement(const tpc_config *cfg, unsigned *nshards, struct tpc__place **places,
                   void **topo, bool *fake);
int tpc__pin_thread(int cpu, int node);

/* The NUMA kit's reading of a runtime's topology (core/numa-topo.c; topo is rt->topo, never
 * NULL here): include/tpc/numa.h says what each gives. tpc__topo_distance(topo, -1, -1) is 0 if
 * the topology knows node distances, else -ENOENT. tpc__alloc_on maps size bytes whose pages
 * go to `node` (bound if `bind` and the machine has more than one node); munmap frees it. */
int tpc__topo_objs(void *topo, const int *shard_cpu, int nshards, tpc_topo_obj *out, int max);
int tpc__topo_nodes(void *topo, int *nodes, int max);
void tpc__topo_info(void *topo, tpc_topo_info *out);
int tpc__topo_distance(void *topo, int a, int b);
int tpc__topo_package(void *topo, int cpu);
void *tpc__alloc_on(void *topo, bool bind, size_t size, int node);
/* Runs fn(arg) on shard `shard` and returns its result (core/numa.c): in the caller's fiber on
 * its own shard, else in a fiber spawned there and joined, so that fn has returned before this
 * does, also when the caller is cancelled (then -ECANCELED): arg may be on the caller's stack. */
int tpc__numa_run_on(int shard, tpc_fiber_fn fn, void *arg);
/* Up to max page addresses spread over the shard's stack slabs (guard pages left out); returns
 * how many (core/stack.c). */
int tpc__stack_sample(struct tpc__shard *s, void **pages, int max);
/* Stacks the shard keeps for reuse, all kinds. */
unsigned tpc__stacks_pooled(const struct tpc__shard *s);

/* What the thread of shard `id` starts from: it allocates and fills in its shard itself. */
struct tpc__thread {
    pthread_t thread;
    struct tpc_runtime *rt;
    unsigned id;
    struct tpc__place place;
};

struct tpc_runtime {
    unsigned nshards;
    void *topo;     /* the hwloc topology of the placement (core/placement.c), or NULL */
    bool topo_fake; /* simulated (TPC_TOPOLOGY): shards not pinned, memory not bound */
    /* shards[i] is allocated by shard i's thread once pinned (so on its NUMA node), before the
     * start-up handshake; others read it only after the handshake. NULL if it never got that
     * far. */
    struct tpc__shard **shards;
    struct tpc__thread *threads;
    tpc_config config; /* resolved (core/config.c) */
    size_t stack_size;
    unsigned stack_cache;
    unsigned ring_entries;
    unsigned msg_slots;             /* slots per shard-to-shard ring */
    struct tpc__ring **rings;       /* rings[from * nshards + to] */
    void *layer[TPC__LAYERS];       /* each layer's runtime-wide state, if it keeps any */
    const struct tpc__layer *clock; /* the layer that arms the timeouts of waits */
    tpc_fiber_fn main_fn;
    void *main_arg;
    int (*drain)(void *arg); /* tpc_config.drain, its argument and deadline */
    void *drain_arg;
    uint64_t drain_ns;
    _Atomic int stopping; /* a stop was requested: the drain phase runs */
    int stop_status;
    _Atomic int stop;
    _Atomic int foreign_calls;     /* tpc_call_from_thread calls under way (core/runtime.c) */
    struct tpc_runtime *live_next; /* in the list of runtimes they may enter */
    void *cpu_claim;               /* its CPUs, held until it is freed (core/cpuclaim.c) */
    int exit_status;
    bool signals; /* shard 0 turns `sigset` into a shutdown */
    sigset_t sigset;
    sigset_t oldmask;   /* of the thread that called tpc_start */
    sigset_t sigwaited; /* blocked on every shard for tpc_signal_wait (under lock) */
    sigset_t sigwanted; /* asked for by tpc_signal_wait, maybe not blocked everywhere yet */
    unsigned nthreads;  /* shard threads created */
    /* The stall detector's watchdog thread (core/stall.c), under `lock`. */
    pthread_t watchdog;
    pthread_cond_t watchdog_cond;
    bool watchdog_running, watchdog_stop;
#ifdef TPC_SHUFFLE
    uint64_t shuffle_seed;
#endif
    _Atomic bool slices_wanted; /* some shard calls tpc_maybe_yield: look every time slice */
    /* Start-up handshake. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned started;
    int start_err;
    bool go;
};

/* Phase 5 of the loop: every layer's poll (core/layer.h). */
static inline bool tpc__layers_poll(struct tpc__shard *s)
{
    bool worked = false;
    for (unsigned i = 0; i < s->npolls; i++)
        worked |= s->polls[i].poll(s, s->polls[i].state);
    return worked;
}

/* A thread that is not a shard enters rt for a call (false: rt is stopping or gone) and leaves
 * once the call is over; tpc_wait frees rt only after every such call has left. */
bool tpc__runtime_enter(struct tpc_runtime *rt);
void tpc__runtime_leave(struct tpc_runtime *rt);

/* Copies config (NULL: all defaults) into c with every numeric field resolved: the environment
 * where the field was left 0, then the default; checks bounds and the reserved space. Returns 0
 * or -EINVAL, having said why on stderr (core/config.c). */
int tpc__config_resolve(const tpc_config *config, tpc_config *c);
/* Claims CPUs `cpus` for a runtime about to start, against every runtime of this process, of
 * any copy or version of libtpc (core/cpuclaim.c). Returns 0 with the claim in *claim (NULL when
 * cpus is empty), -EBUSY when a runtime that did not share its CPUs holds one of them and
 * `share` is false, -EAGAIN when this copy runs too many runtimes at once; each with a message
 * on stderr. tpc__cpus_release(claim) gives the CPUs back (NULL: nothing). */
int tpc__cpus_claim(const cpu_set_t *cpus, bool share, void **claim);
void tpc__cpus_release(void *claim);
/* Bytes of incoming ring slots a shard may take with the default msg_slots. */
#define TPC__RING_BUDGET ((size_t)1 << 20)
unsigned tpc__default_msg_slots(unsigned nshards);

/* The shard running on this thread, or NULL. */
extern __thread struct tpc__shard *tpc__self __attribute__((tls_model("initial-exec")));

uint64_t tpc__clock_ns(void);

/* Run queue. */
void tpc__ready(struct tpc__task *t);
#ifdef TPC_SHUFFLE
/* Shuffled builds (-Dshuffle=true): moves one of the first TPC__SHUFFLE_WINDOW ready tasks,
 * picked at random, to the head of the run queue; the window ends at the first fiber that
 * yielded, so that tpc_yield still lets every task ready before it run first. Seeded per
 * runtime (printed; TPC_SHUFFLE_SEED replays it). */
#define TPC__SHUFFLE_WINDOW 64
void tpc__shuffle_runq(struct tpc__shard *s);
uint64_t tpc__shuffle_seed(void);
#define TPC__UNYIELD(t) ((t)->yielded = 0)
#else
#define tpc__shuffle_runq(s) ((void)(s))
#define TPC__UNYIELD(t)      ((void)(t))
#endif
void tpc__fiber_ready(tpc_fiber *f);

/* Fibers. tpc__park suspends the calling fiber until tpc__wake(w); if q is not NULL, w is
 * appended to q first. Returns w->result, or -ECANCELED at once if already cancelled. */
int tpc__park(tpc_list *q, struct tpc__wait *w);
/* As tpc__park, and also woken with 0 at `until` (ns; 0: no limit). The fiber's deadline, if
 * earlier, wakes it with -ETIMEDOUT; one already passed fails at once. */
int tpc__park_until(tpc_list *q, struct tpc__wait *w, uint64_t until);
void tpc__wake(struct tpc__wait *w, int result);
/* Suspends until tpc__wake(w): cancellation and deadlines do not interrupt it. For the short
 * wait between asking the kernel to cancel an operation and its final completion. */
void tpc__park_hard(struct tpc__wait *w);
/* tpc__park_hard, also woken (0) at `until` (ns): for a wait that looks again now and then. */
void tpc__park_hard_until(struct tpc__wait *w, uint64_t until);
/* Suspends, uninterruptibly, until the loop has been round once more and polled its rings. */
void tpc__park_turn(void);
void tpc__run_fiber(struct tpc__shard *s, tpc_fiber *f);
void tpc__fiber_cancel_all(struct tpc__shard *s);
void tpc__fiber_free_all(struct tpc__shard *s);
/* After the shard's thread has left: runs the callbacks queued on it (a message run by
 * tpc__rings_afterlife may tpc_defer), true if any ran; frees its pooled callback records. */
bool tpc__run_callbacks(struct tpc__shard *s);
void tpc__callbacks_free(struct tpc__shard *s);
int tpc__spawn_main(struct tpc__shard *s);

/* The stall detector (core/stall.c): a watchdog thread, started once the shards run and stopped
 * before they are joined. Returns 0 (also when stall_ms turns it off) or -errno. */
/* Loads what a stall report needs (the unwinder: files opened, a library loaded) before any
 * shard runs, so that no descriptor comes and goes behind the program's back later. */
void tpc__stall_prepare(const tpc_config *c);
int tpc__stall_start(struct tpc_runtime *rt);
bool tpc__stall_off_by_default(void); /* under valgrind, where everything runs far slower */
void tpc__stall_stop(struct tpc_runtime *rt);
/* Metrics (core/metrics.c): publishes the shard's counters and gauges for other threads. */
void tpc__metrics_publish(struct tpc__shard *s);
void tpc__stats_read(struct tpc__shard *s, tpc_shard_stats *out); /* its own counters */
unsigned tpc__io_class(unsigned opcode);

/* The first tpc_maybe_yield of a shard: from now on the watchdog keeps its time slices. */
void tpc__stall_want_slices(struct tpc__shard *s);

/* A fiber of the runtime's own that finishes what a stop must not cancel (keep_at_stop): spawned
 * on a stopping shard too. */
int tpc__spawn_keep(tpc_fiber_fn fn, void *arg, tpc_fiber **out);

/* Destroys the shard's per-shard values (core/local.c); true if a destructor ran. */
bool tpc__locals_fini(struct tpc__shard *s);

/* Stacks. */
size_t tpc__page_round(size_t size);
int tpc__stack_alloc(struct tpc__shard *s, size_t size, bool guard, void **stack);
void tpc__stack_free(struct tpc__shard *s, void *stack, size_t size, bool guard);
void tpc__stack_pool_drain(struct tpc__shard *s);
int tpc__overflow_guard_init(struct tpc__shard *s);
void tpc__overflow_guard_fini(struct tpc__shard *s);

/* Shard loop and wake-ups. */
void tpc__shard_loop(struct tpc__shard *s);
int tpc__shard_io_init(struct tpc__shard *s);
void tpc__shard_io_fini(struct tpc__shard *s);
bool tpc__shard_wake(struct tpc__shard *s);
void tpc__shard_wake_fini(struct tpc__shard *s);
int tpc__post(struct tpc__shard *s, tpc_callback_fn fn, void *arg);
/* Posts m (owned = true, the caller's memory, valid until m->fn has started) without
 * allocating. Returns 0, or -ESHUTDOWN once the shard has closed its inbox. */
int tpc__post_msg(struct tpc__shard *s, struct tpc__msg *m);
void tpc__inbox_free(struct tpc__shard *s);

/* Checks shared by the sync objects. */
#define TPC__CHECK_SHARD(obj)                                                                      \
    do {                                                                                           \
        struct tpc__shard *s_ = tpc__self;                                                         \
        if (TPC_UNLIKELY(!(obj)))                                                                  \
            return -EINVAL;                                                                        \
        if (TPC_UNLIKELY(!s_))                                                                     \
            return -EPERM;                                                                         \
        if (TPC_UNLIKELY((obj)->shard != s_))                                                      \
            return -EXDEV;                                                                         \
    } while (0)

#define TPC__CHECK_FIBER()                                                                         \
    do {                                                                                           \
        if (TPC_UNLIKELY(!tpc__self || !tpc__self->current))                                       \
            return -EPERM;                                                                         \
    } while (0)

/* -ECANCELED if fiber f is cancelled, -ETIMEDOUT if its deadline has passed, else 0. */
int tpc__fiber_stopped(tpc_fiber *f);

/* The check every call that may suspend makes first: outside a fiber -EPERM; in a cancelled
 * fiber, or one past its deadline, it fails at once, having done nothing, whether or not it
 * would have had to wait. */
#define TPC__CHECK_SUSPEND()                                                                       \
    do {                                                                                           \
        TPC__CHECK_FIBER();                                                                        \
        tpc_fiber *f_ = tpc__self->current;                                                        \
        if (TPC_UNLIKELY(f_->cancelled || f_->deadline)) {                                         \
            int e_ = tpc__fiber_stopped(f_);                                                       \
            if (e_)                                                                                \
                return e_;                                                                         \
        }                                                                                          \
    } while (0)

/* tpc_close, before it closes fd (from any thread): an epoll shard that keeps fd in its epoll
 * set between waits (core/epoll.c) adds it afresh at its next wait. */
void tpc__fd_closing(int fd);
/* On an epoll shard, fd stays in its epoll set between waits until tpc_close closes it: for
 * descriptors the runtime owns and closes with tpc_close (tpc_server_start's connections), as
 * a number closed with close(2) and taken by another file would not be added again. */
void tpc__ep_keep(int fd);
void tpc__ep_unkeep(int fd);

#endif
