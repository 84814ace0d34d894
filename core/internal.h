/* Private core definitions shared by core/, timer/, io/ and net/. Never installed. */
#ifndef TPC_CORE_INTERNAL_H
#define TPC_CORE_INTERNAL_H

#include <hwloc.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "tpc.h"
#include "compat.h"
#include "context.h"
#include "list.h"
#include "timer/wheel.h"

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
#define TPC_MIN_STACK   (16u * 1024)
#define TPC_MAX_STACK   ((size_t)1 << 30)

struct tpc__shard;
struct tpc_runtime;

/* What a suspended fiber waits on. A waker unlinks it (if queued) and calls tpc__wake();
 * cancellation does the same with -ECANCELED. */
struct tpc__wait {
    tpc_list node; /* in the object's waiter list; self-linked when not queued */
    tpc_fiber *fiber;
    int result;
    int timeout_result; /* result when its timer fires: 0 (sleep) or -ETIMEDOUT (deadline) */
    void *value;        /* payload for channels */
    bool hard;          /* neither cancel nor deadline wakes it (tpc__park_hard) */
};

/* The common head of everything the run queue holds. */
/* TPC__TASK_REMOTE is never queued: it marks a handle of a fiber on another shard (core/call.c),
 * which tpc_join, tpc_detach and tpc_cancel take as they take a local fiber. */
enum { TPC__TASK_FIBER = 1, TPC__TASK_CALLBACK = 2, TPC__TASK_REMOTE = 3 };
struct tpc__task {
    struct tpc__qnode qnode;
    uint8_t kind;
    uint8_t queued;
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
    struct tpc__wait *wait; /* while WAITING: the record to wake */
    struct tpc__wait *joiner;
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

/* Shard-to-shard message rings (core/ring.c): one bounded single-producer single-consumer ring
 * per ordered pair of shards, allocated by the receiving shard on its NUMA node. */
struct tpc__slot {
    union {
        struct {
            tpc_callback_fn fn;
            void *arg;
        };
        struct {
            uintptr_t w0, w1;
        };
    };
};

/* A message is one slot {fn, arg}, or two: a first slot whose fn is one of these marks (never
 * a real function's address) and whose arg is a record, and a second slot of two data words.
 * Remote calls use them so that neither side touches the other's memory in the common case:
 * the request carries the function and its argument, the reply carries the result. */
enum {
    TPC__MSG_CALL = 1,   /* {CALL, remote record}, {fn, arg}: spawn fn(arg) for that record */
    TPC__MSG_RESULT = 2, /* {RESULT, remote record}, {result, error}: the fiber returned */
    TPC__MSG_MARKS = 16, /* fn values below this are marks */
};
void tpc__msg_wide(struct tpc__shard *s, unsigned from, uintptr_t mark, void *rec,
                   struct tpc__slot data); /* call.c */

/* A message waiting for room in a full ring: a reply (w == NULL), which never blocks, or the
 * message of a fiber suspended until it fits. Pending messages go out in FIFO order, before
 * anything sent later on the same ring. */
struct tpc__pending {
    tpc_list node;
    struct tpc__slot m[2]; /* the message: m[0] only, or both (a wide message) */
    unsigned n;            /* slots: 1 or 2 */
    struct tpc__wait *w;   /* the suspended sender, or NULL */
    bool sent;
};

/* Something with unpublished updates (a cross-shard channel end): the shard calls fn once per
 * loop iteration, with the rings' batched publish (tpc__rings_flush), and before it sends any
 * message, so that no message overtakes the update. */
struct tpc__flush {
    tpc_list node; /* in shard->flushq; self-linked when not queued */
    void (*fn)(struct tpc__flush *f);
};

struct tpc__ring {
    /* The sending shard's line. */
    _Alignas(TPC_CACHELINE) uint32_t ptail; /* next slot to fill */
    uint32_t pub;                           /* tail as last published */
    uint32_t head_cache;                    /* head as last read */
    uint32_t pmask;
    bool dirty;       /* in the sender's list of rings to publish */
    tpc_list pending; /* struct tpc__pending, oldest first */
    /* Published by the sender. */
    _Alignas(TPC_CACHELINE) _Atomic uint32_t tail;
    /* Published by the receiver. */
    _Alignas(TPC_CACHELINE) _Atomic uint32_t head;
    _Atomic int want_space; /* the sender waits for room: ring its doorbell after draining */
    /* The receiving shard's line. */
    _Alignas(TPC_CACHELINE) uint32_t cmask;
    uint32_t idle; /* polls that found it empty while its doorbell was set */
    _Alignas(TPC_CACHELINE) struct tpc__slot slots[];
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

#define TPC__PIPE_CACHE 8

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
    uint64_t tick_ns;
    int64_t spin_ns;      /* watch the inbox this long before sleeping; <= 0: never */
    uint32_t coalesce_us; /* hold wake-ups this long while completions gather; 0: off */
    struct tpc__wheel wheel;
    struct tpc_runtime *rt;
    unsigned id;
    int cpu;        /* pinned OS CPU, or -1 */
    int core, node; /* its core (hwloc logical index) and NUMA node, or -1 */
    bool stopping;
    size_t nlive;   /* fibers that have not returned */
    bool now_valid; /* cached clock for this loop iteration */
    uint64_t now;
    tpc_list fibers;
    struct tpc__callback *cb_free; /* callback task free list (linked through qnode) */
    tpc_fiber *free_fibers;        /* recycled fiber records (linked through task.qnode) */
    unsigned nfree_fibers;
    struct tpc__stack *stacks; /* pooled default-size stacks */
    unsigned nstacks;
    struct tpc__stack *cold_stacks; /* the same past stack_cache, their pages given back */
    unsigned ncold;
    struct tpc__slab *slabs;       /* where default-size stacks come from (core/stack.c) */
    struct tpc__stack *nog_stacks; /* pooled unguarded stacks */
    unsigned nnog;
    struct io_uring ring;
    bool ring_ok;
    bool ring_fd_registered;
    bool has_ftruncate;   /* the kernel has IORING_OP_FTRUNCATE (Linux 6.9) */
    uint16_t next_bgid;   /* provided-buffer group id for the next pool (net/bufpool.c) */
    uint16_t *free_bgids; /* ids of destroyed pools, for reuse */
    unsigned nfree_bgids, cap_free_bgids;
    unsigned npipes; /* cached empty pipes (net/splice.c) */
    int pipes[TPC__PIPE_CACHE][2];
    char *fwd_scratch;   /* tpc_forward's read buffer, never held across a suspension */
    struct iovec *fixed; /* registered buffers (io/file.c) */
    unsigned nfixed, fixed_inflight;
    unsigned ring_flags, ring_features; /* setup flags it got, IORING_FEAT_* */
    bool poll_wait;                     /* sleep in ppoll() on the ring fd (under valgrind) */
    unsigned inflight;    /* ops submitted and not completed, the wake-up read excluded */
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
    pthread_t thread;
    struct tpc__ring **out; /* out[j]: the ring to shard j (NULL for itself) */
    struct tpc__ring **in;  /* in[j]: the ring from shard j; its own slot in rt->rings */
    unsigned *dirty;        /* shards whose out ring has unpublished messages */
    uint32_t msg_batch;     /* publish at least every msg_batch messages: 256, or half a ring */
    tpc_list remotes;       /* remote-fiber handles it spawned, not yet freed (call.c) */
    tpc_list remote_cache;  /* freed ones kept for reuse */
    unsigned nremote_cache;
    tpc_list flushq; /* struct tpc__flush to run at the next tpc__rings_flush */
    unsigned ndirty;
    /* Counters, written only by this shard, read by tpc_stats(). */
    uint64_t n_tasks, n_switches, n_loops, n_msgs_in, n_msgs_out, n_wakes_sent, n_wakeups,
        n_sleep_ns, n_io_submitted, n_io_completed, n_timers, n_accept_backoffs, n_io_enters;

    /* Written by other threads. */
    _Alignas(TPC_CACHELINE) _Atomic(struct tpc__msg *) inbox;
    _Atomic int sleeping;
    _Atomic int left; /* has left its loop: what is sent to it now runs in the afterlife */
    unsigned nbell;
    _Atomic uint64_t *bell; /* bit j: something happened on a ring between this shard and j */
};

struct tpc_runtime {
    unsigned nshards;
    struct tpc__shard *shards;
    size_t stack_size;
    unsigned stack_cache;
    unsigned ring_entries;
    unsigned msg_slots;       /* slots per shard-to-shard ring */
    struct tpc__ring **rings; /* rings[from * nshards + to] */
    struct tpc__pool *pool;   /* blocking helper threads (io/blocking.c) */
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
    int exit_status;
    bool signals; /* shard 0 turns `sigset` into a shutdown */
    sigset_t sigset;
    sigset_t oldmask;   /* of the thread that called tpc_start */
    sigset_t sigwaited; /* blocked on every shard for tpc_signal_wait (under lock) */
    sigset_t sigwanted; /* asked for by tpc_signal_wait, maybe not blocked everywhere yet */
    unsigned nthreads;  /* shard threads created */
    /* Start-up handshake. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned started;
    int start_err;
    bool go;
};

/* A thread that is not a shard enters rt for a call (false: rt is stopping or gone) and leaves
 * once the call is over; tpc_wait frees rt only after every such call has left. */
bool tpc__runtime_enter(struct tpc_runtime *rt);
void tpc__runtime_leave(struct tpc_runtime *rt);

/* Copies config (NULL: all defaults) into c with every numeric field resolved: the environment
 * where the field was left 0, then the default; checks bounds and the reserved space. Returns 0
 * or -EINVAL, having said why on stderr (core/config.c). */
int tpc__config_resolve(const tpc_config *config, tpc_config *c);

/* The shard running on this thread, or NULL. */
extern __thread struct tpc__shard *tpc__self __attribute__((tls_model("initial-exec")));

uint64_t tpc__clock_ns(void);

/* Run queue. */
void tpc__ready(struct tpc__task *t);
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
void tpc__run_fiber(struct tpc__shard *s, tpc_fiber *f);
void tpc__fiber_cancel_all(struct tpc__shard *s);
void tpc__fiber_free_all(struct tpc__shard *s);
/* After the shard's thread has left: runs the callbacks queued on it (a message run by
 * tpc__rings_afterlife may tpc_defer), true if any ran; frees its pooled callback records. */
bool tpc__run_callbacks(struct tpc__shard *s);
void tpc__callbacks_free(struct tpc__shard *s);
int tpc__spawn_main(struct tpc__shard *s);

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

void tpc__pipes_fini(struct tpc__shard *s); /* net/splice.c */

/* The blocking helper pool (io/blocking.c). */
struct tpc__pool;
int tpc__pool_init(struct tpc_runtime *rt, unsigned threads, unsigned queue);
void tpc__pool_fini(struct tpc_runtime *rt); /* after the shards stopped: joins the helpers */

/* Linux's own cap for one read or write. */
#define TPC_IO_MAX 0x7ffff000u

/* Checks the caller, then hands a free SQE to the caller's preparation. */
#define TPC__IO_BEGIN(sqe)                                                                         \
    TPC__CHECK_SUSPEND();                                                                          \
    struct tpc__shard *s_ = tpc__self;                                                             \
    struct io_uring_sqe *sqe = tpc__sqe(s_);                                                       \
    if (!sqe)                                                                                      \
        return -EAGAIN;                                                                            \
    struct tpc__io io_

#define TPC__IO_END(sqe) tpc__io_run(s_, &io_, sqe)

static inline unsigned tpc__io_len(size_t len)
{
    return len > TPC_IO_MAX ? TPC_IO_MAX : (unsigned)len;
}

/* The kernel wrote n bytes at p through io_uring, which valgrind cannot see: tell it, so that
 * programs run under valgrind get no false "uninitialised" reports about data they read. */
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define TPC__KERNEL_WROTE(p, n)                                                                    \
    do {                                                                                           \
        if ((n) > 0)                                                                               \
            VALGRIND_MAKE_MEM_DEFINED((p), (size_t)(n));                                           \
    } while (0)
#else
#define TPC__KERNEL_WROTE(p, n) ((void)(p), (void)(n))
#endif

/* The same for n bytes scattered over iov[0..iovcnt) (a readv or recvmsg that returned n). */
static inline void tpc__kernel_wrote_iov(const struct iovec *iov, int iovcnt, int n)
{
    for (int i = 0, left = n; i < iovcnt && left > 0; i++) {
        size_t part = iov[i].iov_len < (size_t)left ? iov[i].iov_len : (size_t)left;
        TPC__KERNEL_WROTE(iov[i].iov_base, part);
        left -= (int)part;
    }
}

/* One io_uring operation waited for by a fiber (io/wait.c). */
struct tpc__io {
    struct tpc__op op;
    struct tpc__wait w;
    int res;
    bool done;
};
/* An operation that stays in the ring across many completions (a multishot accept or recv),
 * owned by an object rather than by a waiting fiber (io/wait.c). Not counted in `inflight`. */
struct tpc__multishot {
    struct tpc__op op;
    bool armed;    /* in the ring: its final completion (no IORING_CQE_F_MORE) not yet seen */
    bool stopping; /* a cancel of it is in the ring */
    bool closing;  /* tpc__multishot_stop waits for the final completion */
    struct tpc__wait closer;
};
void tpc__multishot_init(struct tpc__multishot *m,
                         void (*complete)(struct tpc__shard *, struct tpc__op *, int, unsigned));
/* Puts the operation prepared in sqe in the ring as m's. */
void tpc__multishot_arm(struct tpc__multishot *m, struct io_uring_sqe *sqe);
/* First thing in m's completion handler: notes a final completion. Returns true while m is
 * being stopped (the closer is woken once the final one came): the handler then only releases
 * what the completion carries. */
bool tpc__multishot_seen(struct tpc__shard *s, struct tpc__multishot *m, unsigned flags);
/* Asks the kernel to end m (no-op unless armed and not already asked). */
void tpc__multishot_cancel(struct tpc__shard *s, struct tpc__multishot *m);
/* From a fiber: ends m and waits, uninterruptibly, for its final completion. */
void tpc__multishot_stop(struct tpc__shard *s, struct tpc__multishot *m);

/* A free SQE (submitting queued ones once if the ring is full), or NULL. */
struct io_uring_sqe *tpc__sqe(struct tpc__shard *s);
/* Submits the operation prepared in sqe and suspends until it completes; returns its result.
 * If the fiber is cancelled or its deadline passes first, asks the kernel to cancel it and
 * still waits for the final completion, so that the kernel never touches the caller's memory
 * after this returns: then returns -ECANCELED / -ETIMEDOUT, or the operation's result if it
 * completed anyway (nothing it did is lost). */
int tpc__io_run(struct tpc__shard *s, struct tpc__io *io, struct io_uring_sqe *sqe);

#ifdef TPC_FAULT_INJECTION
/* Tests only (meson -Dfault_injection=true): the next `count` operations with io_uring opcode
 * `op` submitted from this thread fail with -err (err > 0), or, for plain reads and writes, move
 * at most `short_max` bytes (err == 0). count 0 clears the fault. */
void tpc__fault_set(unsigned op, int err, unsigned short_max, unsigned count);
/* Every shard's io_uring setup fails with -err from now on (0: no more). */
void tpc__fault_setup(int err);
int tpc__fault_setup_err(void);
/* Every new shard's ring reports the IORING_FEAT_* bits in mask missing (0: none), as an older
 * kernel would. */
void tpc__fault_hide_features(unsigned mask);
unsigned tpc__fault_hidden_features(void);
/* After `skip` more successful calls, the next `count` calls of tpc__sqe() on this thread find
 * no free SQE, as when the kernel will not take the queued ones. */
void tpc__fault_sqe(unsigned skip, unsigned count);
/* The next `count` fiber spawns on this thread fail with -err (core/task.c). */
void tpc__fault_spawn(int err, unsigned count);
bool tpc__fault_no_sqe(void);
#endif

/* Shard-to-shard rings (core/ring.c). */
int tpc__rings_init(struct tpc__shard *s);
void tpc__rings_free(struct tpc_runtime *rt);
/* Sends fn(arg) to shard `to` (not the caller's). From a fiber a full ring suspends the caller
 * until the message fits (-ECANCELED or -ETIMEDOUT: not sent); elsewhere it returns -EAGAIN. */
int tpc__send(struct tpc__shard *s, unsigned to, tpc_callback_fn fn, void *arg);
/* The same for a message of p->n slots in p->m (p may be on the caller's stack). */
int tpc__send_msg(struct tpc__shard *s, unsigned to, struct tpc__pending *p);
/* Sends the n-slot message m to shard `to`, never blocking and never failing: when the ring is
 * full, the message waits in its pending list in `spare`, which must then stay valid until it
 * has run. On the caller's own shard it runs at once. */
void tpc__send_reply(struct tpc__shard *s, unsigned to, const struct tpc__slot *m, unsigned n,
                     struct tpc__pending *spare);
bool tpc__rings_poll(struct tpc__shard *s);       /* drains what the doorbells show; true: work */
void tpc__rings_flush(struct tpc__shard *s);      /* publishes every out ring with new messages */
bool tpc__rings_rung(const struct tpc__shard *s); /* a doorbell is set */
/* Messages wait for room in a ring to a shard that is still in its loop: a stopping shard
 * stays until they went (a reply among them may be what that shard waits for). */
bool tpc__rings_owe(struct tpc__shard *s);
bool tpc__rings_ready(struct tpc__shard *s); /* a ring with a doorbell set has work */
/* Clears every doorbell (before sleeping); true if a ring turned out to have work. */
bool tpc__rings_cool(struct tpc__shard *s);
/* Ends the run phase early when a doorbell rang, checked every 8 tasks: messages (replies
 * above all) wait at most 8 tasks, not a whole phase, on a busy shard. */
static inline bool tpc__phase_goes_on(struct tpc__shard *s)
{
    if (TPC_UNLIKELY((s->phase_left & 7) == 0) && s->phase_left && tpc__rings_ready(s))
        s->phase_left = 0;
    return s->phase_left != 0;
}
/* After every shard thread has exited: runs what is still in the rings, as its shard. */
void tpc__rings_afterlife(struct tpc_runtime *rt);

void tpc__remotes_free(struct tpc__shard *s);
struct tpc_remote;
int tpc__remote_join(struct tpc_remote *r, int *result);
int tpc__remote_detach(struct tpc_remote *r);
int tpc__remote_cancel(struct tpc_remote *r);
const char *tpc__remote_name(const struct tpc_remote *r);
/* A handle from tpc_spawn_on for a fiber on another shard, or NULL for a local fiber. */
static inline struct tpc_remote *tpc__remote_of(const tpc_fiber *f)
{
    return f && f->task.kind == TPC__TASK_REMOTE ? (struct tpc_remote *)f : NULL;
}
void tpc__remote_return(tpc_fiber *f); /* a fiber spawned for another shard returned */

/* Timers (timer/timer.c). */
void tpc__timers_init(struct tpc__shard *s);
void tpc__timers_run(struct tpc__shard *s);
int64_t tpc__timers_timeout(struct tpc__shard *s); /* ns until the next timer work, -1: none */
void tpc__timer_arm(struct tpc__shard *s, tpc_timer *t, uint64_t deadline);
void tpc__timer_disarm(struct tpc__shard *s, tpc_timer *t);

/* Placement (core/placement.c). */
struct tpc__place {
    int cpu;  /* OS index of the PU, -1: not pinned */
    int core; /* hwloc logical index of its core, -1: unknown */
    int node; /* OS index of its NUMA node, -1: unknown */
};
int tpc__placement(const tpc_config *cfg, unsigned *nshards, struct tpc__place **places);
int tpc__pin_thread(int cpu, int node);
/* The places policy picks from `want` on topology t (tests pass synthetic topologies). */
int tpc__place_on(hwloc_topology_t t, const cpu_set_t *want, int policy, struct tpc__place *out,
                  int max);

/* Checks shared by the sync objects. */
#define TPC__CHECK_SHARD(obj)                                                                      \
    do {                                                                                           \
        struct tpc__shard *s_ = tpc__self;                                                         \
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

#endif
