/* Runtime and shards: start, stop, and where am I. */
#ifndef TPC_RUNTIME_H
#define TPC_RUNTIME_H

#include <signal.h>
#include <sys/select.h> /* sigset_t in strict ISO C modes (POSIX puts it there too) */
#include <stdbool.h>
#include <stdio.h>
#include "common.h"
#include "task.h"

/* A running runtime, for threads that are not its shards (tpc_start, tpc_call_from_thread). */
typedef struct tpc_runtime tpc_runtime;

/* Maximum number of shards one runtime can run. */
#define TPC_MAX_SHARDS 1024

/* Where shards go, among the CPUs allowed (tpc_config.cpus, TPC_CPUS, or the affinity mask),
 * taken in hwloc's logical order (so neighbours share caches): */
typedef enum tpc_placement {
    TPC_PLACE_PU = 0, /* one shard per processing unit (hardware thread); the default */
    TPC_PLACE_CORE,   /* one per core: its first allowed PU */
    TPC_PLACE_NODE,   /* one per NUMA node: its first allowed PU */
} tpc_placement;

/* The I/O backend a shard runs (tpc_config.backend). */
typedef enum tpc_backend {
    TPC_BACKEND_AUTO = 0, /* io_uring; epoll if no ring can be set up at all (said once) */
    TPC_BACKEND_URING,    /* io_uring only: tpc_run fails if it cannot be set up */
    TPC_BACKEND_EPOLL,    /* epoll: readiness and the blocking pool (docs/guide.md) */
} tpc_backend;

/* Runtime configuration. Zero-initialise it, then set what you need; every zero field takes its
 * default. Fields left zero fall back to the environment where noted. core/config.c holds the
 * defaults and bounds of the numeric fields in one table; docs/guide.md lists them. */
typedef struct tpc_config {
    /* Number of shards. 0: TPC_SHARDS from the environment, else one per CPU of `cpus`
     * (or of the process's affinity mask). More shards than CPUs is allowed: the shards are then
     * not pinned, and the kernel schedules them. */
    unsigned shards;
    /* CPU list such as "0-3,8". NULL: TPC_CPUS from the environment, else the process's CPU
     * affinity mask. Every CPU listed must be in the affinity mask. */
    const char *cpus;
    /* Placement policy. TPC_PLACE_PU (0): TPC_PLACEMENT from the environment ("pu", "core" or
     * "node"), else one shard per PU. Each pinned shard binds its memory to its NUMA node when
     * the machine has more than one. TPC_TOPOLOGY places shards on a simulated machine instead
     * (tpc/numa.h). */
    tpc_placement placement;
    /* Default fiber stack size in bytes (rounded up to pages). 0: 128 KiB (256 KiB with ASan).
     * Minimum 16 KiB. */
    size_t stack_size;
    /* Fiber stacks each shard keeps for reuse. 0: 64. At most 2^20. */
    unsigned stack_cache;
    /* The shard's time slice in ns, after which tpc_maybe_yield() yields. 0: 500 us. Range
     * [1 us, 60 s]. */
    uint64_t time_slice_ns;
    /* io_uring submission queue entries per shard (power of two). 0: 256. */
    unsigned ring_entries;
    /* The timing wheel's tick in ns: timers fire at most one tick late. 0: 1 ms. Range
     * [10 us, 1 s]. */
    uint64_t timer_tick_ns;
    /* By default SIGINT and SIGTERM start tpc_stop(128 + signal number), for each of the two
     * whose disposition is the default when tpc_run starts (a handler of yours is left alone).
     * The runtime blocks them in the calling thread and the shards while it runs and reads them
     * through shard 0's io_uring; threads you created earlier should block them too. Once the
     * stop proper is under way (after the drain), each shard unblocks them: one more ends the
     * process (their default action), so that a fiber that ignores its cancellation cannot hold
     * it against the operator. true: leave both signals alone. */
    bool no_signals;
    /* Before it sleeps, a shard that has just done some work keeps checking its rings for this
     * many ns, so that a reply arriving soon costs no wake-up. 0: TPC_SPIN_NS from the
     * environment, else the runtime decides: 10 us within a millisecond of a message it sent to
     * or ran from another shard (or thread), no spin otherwise (I/O completions rarely land that
     * soon, and a spin costs the CPU it waits for). Positive: always this long. Negative: never
     * spin (lowest CPU use). */
    int64_t spin_ns;
    /* Slots of each shard-to-shard message ring (one per ordered pair of shards, 16 bytes a
     * slot), a power of two in [2, 2^24]. A fiber sending to a full ring suspends until it has
     * room. 0: 1024, halved while the n - 1 rings into one shard would take more than 1 MiB
     * (from 66 shards on; at least 64 slots), so ring memory grows with n, not n^2. */
    unsigned msg_slots;
    /* Helper threads of tpc_blocking(), started on its first use, at most 256. 0: 4. */
    unsigned blocking_threads;
    /* Jobs tpc_blocking() queues before callers wait for room, at most 2^20. 0: 256. */
    unsigned blocking_queue;
    /* Wake-up batching, in microseconds: a shard going to sleep asks the kernel to hold its
     * wake-up until a batch of completions waits or a window has passed, whichever comes first
     * (if none came in that time, the first one wakes it). Under load a shard then wakes and
     * enters the kernel once per batch of completions instead of once per completion, which
     * saves CPU per request. The price: a completion, or a message from another shard, may come
     * up to the window later, so a client that waits for each answer before it sends again,
     * over a few connections, would get fewer answers per second. Timers still fire on time.
     * 0: TPC_COALESCE_US from the environment, else adaptive: each millisecond the shard
     * measures its completions and how many operations they came from, and holds its
     * wake-ups for the time a sixteenth of those operations take to complete (at most 200 us)
     * when at least 2 would gather and it has idle time to trade; else it wakes for each
     * completion (docs/guide.md has the rule and figures). Positive: a fixed window of this many
     * us, with at least 8 operations out (a receive stream or accept counts as one), ending early
     * at 64 completions. Negative: off. In [-10000, 10000].
     * Needs Linux 6.12 (IORING_FEAT_MIN_TIMEOUT) and a ring with DEFER_TASKRUN: a fixed window
     * then makes tpc_run return -EOPNOTSUPP, the adaptive one stays off. Off under valgrind,
     * where shards sleep in ppoll(), and on the epoll backend. */
    int32_t coalesce_us;
    /* The drain phase of a graceful stop. A stop request (SIGINT or SIGTERM with the default
     * handling, or tpc_stop) first runs drain(drain_arg) as a fiber on the shard that took the
     * request, while every shard still runs and can still be called (stop accepting, let
     * connections finish, gather figures), with a deadline of drain_ms; when it returns, or
     * fails at its deadline, tpc_shutdown(status) cancels what is left. NULL: no drain phase,
     * the stop is immediate. A second stop request during the drain stops at once.
     * drain_ms 0: 5000. */
    int (*drain)(void *drain_arg);
    void *drain_arg;
    unsigned drain_ms;
    /* The stall detector: a shard that has not come back to its loop (a fiber or callback that
     * runs, or blocks in a system call, without suspending) for stall_ms is reported on stderr
     * with the running fiber's name, where it was spawned, and a backtrace, one line per frame
     * prefixed by the shard; again at doubling intervals while it lasts; counted in
     * tpc_shard_stats.stalls. Costs a thread per runtime that looks every stall_ms / 2 (every
     * time slice while a shard that calls tpc_maybe_yield is awake: the same thread raises the
     * flag that tpc_maybe_yield reads). 0: TPC_STALL_MS from the environment, else 25 (off under
     * valgrind, which runs everything far slower). Negative: off. At most 60000. */
    int32_t stall_ms;
    /* Where stall reports go instead of stderr: stall_fn(stall_arg, shard, report) with the
     * whole report (lines ending in '\n', NUL-terminated, valid during the call), on the
     * detector's own thread (not the stalled shard's), which it holds up while it runs. NULL:
     * stderr. */
    void (*stall_fn)(void *stall_arg, int shard, const char *report);
    void *stall_arg;
    /* Where each shard's io_uring workers run (io-wq: the kernel threads that do what cannot
     * be done without blocking: fsync and fdatasync always, buffered I/O that misses the page
     * cache, O_DIRECT writes that extend a file on ext4). By default they inherit the shard's
     * one CPU and compete with it. A CPU list such as "2-3" puts them there; "shard" leaves them
     * on the shard's CPU (the kernel's default); NULL: TPC_IOWQ_CPUS from the environment, else
     * "auto": the allowed CPUs that no shard is pinned to, or if every one has a shard, the
     * other shards' CPUs (unpinned shards keep the kernel's default). docs/guide.md, "io_uring's
     * workers", has the trade-off and figures. */
    const char *iowq_cpus;
    /* At most this many io-wq workers per shard for file work (the kernel's "bounded" workers).
     * 0: the kernel's default (the smaller of the SQ size and 4 x the CPUs). At most 1024. */
    int32_t iowq_workers;
    /* Slots of each shard's tables of registered buffers and of registered files
     * (tpc_buffer_register, tpc_file_register), each created on its first use. 0: 1024. In
     * [1, 16384]. */
    uint32_t registered_slots;
    /* The I/O backend. TPC_BACKEND_AUTO (0): TPC_BACKEND from the environment ("auto",
     * "uring" or "epoll"), else auto: io_uring, or, when the ring cannot be set up at all
     * (io_uring disabled by sysctl or blocked by seccomp, as in default container profiles;
     * not in the kernel; too little locked memory), epoll, printing once per process the cause
     * and the fallback; any other setup error (out of descriptors, say) fails tpc_run.
     * TPC_BACKEND_URING turns that case into an error. docs/guide.md says
     * what behaves differently on epoll. tpc_features() and tpc_shard_stats name the backend. */
    tpc_backend backend;
    /* One runtime per CPU: tpc_run refuses (-EBUSY, naming the other runtime's CPUs and
     * version) to pin a shard to a CPU that a shard of another runtime running in this process
     * is pinned to, whichever copy or version of libtpc started it (a plugin's static copy, say;
     * docs/design.md says how copies find each other). true: share them anyway, both ways (this
     * runtime starts whatever else runs, and later runtimes may take its CPUs). false:
     * TPC_SHARE_CPUS=1 from the environment shares too. Unpinned shards (more shards than CPUs,
     * a simulated topology) claim no CPU. */
    bool share_cpus;
    /* Room to grow without changing the struct's size: leave zero (a config initialised with
     * `{...}` or memset is). Later versions give these bytes meanings; this one refuses a
     * config with any of them set (-EINVAL). */
    uint64_t reserved[3];
} tpc_config;

/* Starts the runtime: one shard (an OS thread, pinned with hwloc when there are enough CPUs)
 * per CPU, each with its own run queue and io_uring. Runs main_fn(arg) as a fiber on shard 0.
 * Blocks the calling thread until every shard has stopped: that happens when main_fn returns
 * (its return value is the exit status) or when any fiber calls tpc_shutdown().
 * config may be NULL (all defaults). Returns the exit status (>= 0 when main_fn returns one),
 * or a negative errno when the runtime could not start (a message on stderr names the cause):
 * -EBUSY when called from inside a shard or when another runtime of this process runs on one of
 * its CPUs (tpc_config.share_cpus), -EINVAL for a bad config or environment value,
 * -EOPNOTSUPP for coalesce_us on a kernel without it.
 * Several runtimes may run at once from different threads, on different CPUs. */
TPC_EXTERN int tpc_run(const tpc_config *config, tpc_fiber_fn main_fn, void *arg);

/* tpc_run in two halves, so that the calling thread can do other things while the runtime runs
 * (such as tpc_call_from_thread). tpc_start returns once every shard has started, with the
 * runtime in *out, or a negative errno as tpc_run (then nothing is left running). tpc_wait
 * blocks until the runtime has stopped, frees it and returns the exit status; call it exactly
 * once, from the thread that called tpc_start (the signal mask set for SIGINT and SIGTERM is
 * restored there). tpc_wait returns -EBUSY inside a shard, -EINVAL for NULL. */
TPC_EXTERN int tpc_start(const tpc_config *config, tpc_fiber_fn main_fn, void *arg,
                         tpc_runtime **out);
TPC_EXTERN int tpc_wait(tpc_runtime *rt);

/* Suspends the calling fiber until one of the signals in `set` arrives (read from a signalfd
 * through the shard's io_uring) and stores its number in *signo (if not NULL). The first wait
 * for a signal blocks it on every shard, for the rest of the run (a first wait cancelled or
 * timed out before every shard did so leaves the rest to the next wait); tpc_wait (and so tpc_run)
 * blocks every asynchronous signal in its thread while it waits. Threads you created yourself
 * must block the signals too, or they may take them: best, block them in the main thread before
 * tpc_start and the shards inherit the mask. A signal is read by one waiter only. Signals of a
 * waited-for kind still pending when the runtime stops are discarded. SIGPIPE, at its default
 * action, is ignored while the runtime runs (a write to a closed pipe or socket returns -EPIPE),
 * so waiting for it returns nothing; a handler the program installed is left in place.
 * Returns 0; -EINVAL (NULL or empty set, or SIGKILL, SIGSTOP, or a synchronous signal such as
 * SIGSEGV in it); -EBUSY for SIGINT or SIGTERM while the runtime turns them into a shutdown
 * (set tpc_config.no_signals to handle them yourself); -ECANCELED / -ETIMEDOUT; -EPERM outside
 * a fiber; or a negative errno from signalfd. */
TPC_EXTERN int tpc_signal_wait(const sigset_t *set, int *signo);

/* The runtime of the calling shard, or NULL outside a shard: hand it to helper threads. */
TPC_EXTERN tpc_runtime *tpc_runtime_self(void);

/* A graceful stop of the runtime this shard belongs to: runs tpc_config.drain (if set) in a
 * fiber of its own on this shard, then tpc_shutdown(status). SIGINT and SIGTERM do this by
 * default (status 128 + the signal number). Does not suspend; callable from fibers and
 * callbacks. Returns 0, or -EPERM outside a shard. */
TPC_EXTERN int tpc_stop(int status);

/* Stops the runtime this shard belongs to: every fiber on every shard is cancelled (its current
 * or next suspension returns -ECANCELED) and each shard stops once its fibers have returned.
 * tpc_run() then returns `status`. Only the first call's status counts. Returns 0, or -EPERM
 * outside a shard. Does not suspend. */
TPC_EXTERN int tpc_shutdown(int status);

/* This shard's index in [0, tpc_shard_count()), or -EPERM outside a shard. */
TPC_EXTERN int tpc_shard_id(void);

/* Number of shards of the running runtime, or -EPERM outside a shard. */
TPC_EXTERN int tpc_shard_count(void);

/* The OS CPU this shard is pinned to, -ENOENT if it is not pinned (more shards than CPUs),
 * -EPERM outside a shard. */
TPC_EXTERN int tpc_shard_cpu(void);

/* Writes one line per shard to out: shard -> CPU (PU) -> core -> NUMA node, or "not pinned",
 * then the I/O backend it runs ("io_uring" or "epoll"). Returns 0, -EINVAL for a NULL out,
 * -EPERM outside a shard. */
TPC_EXTERN int tpc_topology_report(FILE *out);

/* ---- Work on other shards ----
 * Shard i sends to shard j over a ring of its own (one per ordered pair). Messages between two
 * shards run in the order they were sent. A sender publishes its messages when its task
 * waits for an answer, at the end of the shard's run phase, or every 256 messages (half the ring
 * if smaller), not one by one: a task that sends and then
 * computes for long delays them, so it should tpc_maybe_yield(). Ownership: arg is the
 * sender's until the call returns 0; from then on it belongs to the function run on the
 * target, which must not assume anything else about the sender's memory. */

/* Runs fn(arg) as a callback task on shard `shard`, fire and forget. From the same shard it is
 * queued like tpc_defer(). If the ring to that shard is full, a fiber suspends until it has
 * room; a callback gets -EAGAIN. Returns 0, -EINVAL for a bad shard index or NULL fn,
 * -EAGAIN, -ENOMEM, -ESHUTDOWN once the runtime is stopping, -ECANCELED / -ETIMEDOUT (the
 * fiber was cancelled or its deadline passed while it waited for room), -EPERM outside a
 * shard. On any error fn is never called and the caller keeps arg. */
TPC_EXTERN int tpc_submit_to(int shard, tpc_callback_fn fn, void *arg);

/* Spawns fiber fn(arg) on shard `shard` (which may be the caller's) with options opts (may be
 * NULL; opts->detached or out == NULL: fire and forget) and stores its handle in *out. The handle
 * is a tpc_fiber like tpc_spawn's: tpc_join, tpc_detach and tpc_cancel take it, from the
 * spawning shard only (tpc_join explains the errors particular to it). Suspends while the ring
 * to that shard is full (a callback gets -EAGAIN). Returns 0, -EINVAL (bad shard, NULL fn, bad
 * stack size), -EAGAIN, -ENOMEM, -ESHUTDOWN, -ECANCELED / -ETIMEDOUT, -EPERM outside a
 * shard. */
TPC_EXTERN int tpc_spawn_on(int shard, const tpc_fiber_opts *opts, tpc_fiber_fn fn, void *arg,
                            tpc_fiber **out);

/* A function run on a shard by tpc_call_on / tpc_on_all / tpc_call_from_thread. It runs in a
 * fiber there, so it may suspend (sleep, wait, call other shards); its int result travels
 * back. */
typedef int (*tpc_call_fn)(void *arg);

/* Runs fn(arg) on shard `shard` and suspends the calling fiber until its result came back, which
 * it stores in *result (if not NULL). On the caller's own shard fn runs at once, in the
 * caller's fiber. Calls may nest freely (A calls B, which calls A): replies never wait for
 * room. If the caller is cancelled or its deadline passes while it waits, this returns
 * -ECANCELED / -ETIMEDOUT at once; fn still runs (or has run) and its result is dropped, so arg
 * must stay valid until fn has returned; but if that happens while the call still waits for
 * room in the target's full inbox (a target far behind), the call is withdrawn and fn never
 * runs. The two cannot be told apart here: an arg that fn frees or that must outlive fn wants
 * tpc_call_owned, which knows. Returns 0, -EINVAL (bad shard, NULL fn), -ENOMEM,
 * -ESHUTDOWN (also when the target stopped before it could start fn), -EPERM outside a fiber. */
TPC_EXTERN int tpc_call_on(int shard, tpc_call_fn fn, void *arg, int *result);

/* Runs fn(arg) on every shard (the caller's too, in a fiber of its own) and suspends until all
 * have returned, also when a shard could not start fn. Returns 0 if every fn returned >= 0;
 * else the error of the first shard that could not start fn (-ENOMEM, -ESHUTDOWN); else the
 * first negative value fn returned (in shard order); or an error as tpc_call_on. */
TPC_EXTERN int tpc_on_all(tpc_call_fn fn, void *arg);

/* tpc_call_on for an argument the call owns, so that the caller may stop waiting without
 * keeping arg alive: a batch of work built on the heap, say. The call takes arg whatever it
 * returns. On 0, fn has returned and arg is the caller's again (read what fn left in it, then
 * free it). On any error, release(arg) (NULL: nothing to release) is called exactly once, on
 * the caller's shard: at once when fn never ran (-EINVAL, -EPERM, -ENOMEM, -ESHUTDOWN: the
 * target could not start fn; but when the target left with the request still unread in its
 * inbox, -ESHUTDOWN returns first and release runs as the runtime stops, in tpc_wait's thread);
 * when the caller was cancelled or its deadline passed while it
 * waited (-ECANCELED / -ETIMEDOUT, returned at once), only after fn has returned on the target
 * (while the runtime stops, possibly in tpc_wait's thread, posing as the caller's shard), or at
 * once if the call was still waiting for room in the target's inbox (withdrawn: fn never runs). On
 * the caller's own shard fn runs at once in the caller's fiber, as tpc_call_on. Suspends;
 * fibers only. */
TPC_EXTERN int tpc_call_owned(int shard, tpc_call_fn fn, void *arg, tpc_release_fn release,
                              int *result);

/* tpc_call_on with a copy of size bytes at arg (size 0: fn gets a valid pointer to nothing):
 * fn gets a pointer to the copy, which the call frees whatever happens, so that arg may be on
 * the caller's stack even if the caller stops waiting. Returns as tpc_call_owned (-EINVAL also
 * for a NULL arg with size > 0); fn's changes to the copy are lost. */
TPC_EXTERN int tpc_call_copy(int shard, tpc_call_fn fn, const void *arg, size_t size, int *result);

/* One call of tpc_call_many. */
typedef struct tpc_call_item {
    int shard;  /* in: where fn runs (the caller's own shard too, in a fiber of its own) */
    void *arg;  /* in: its argument */
    int result; /* out: fn's return value when err is 0, else 0 */
    int err;    /* out: 0 when fn ran; else why it did not: -EINVAL (bad shard), -ENOMEM,
                   -ESHUTDOWN */
} tpc_call_item;

/* A fan-out: runs fn(items[i].arg) on items[i].shard for every i at once (each in a fiber of its
 * own; several items may name the same shard) and suspends until every one has returned or could
 * not start. Returns 0 then, with each item's result and err filled in and every arg the
 * caller's again. The call owns the args while it runs: on an error return (-ECANCELED /
 * -ETIMEDOUT: the caller stopped waiting, at once; -ESHUTDOWN: a target stopped before it
 * started fn; -EINVAL for a NULL fn, or NULL items with n > 0; -ENOMEM; -EPERM outside a fiber)
 * it calls release (NULL: none) exactly once for every arg, each only after its fn has returned
 * (or never will), and never touches items again. n == 0 returns 0 at once. */
TPC_EXTERN int tpc_call_many(tpc_call_item *items, size_t n, tpc_call_fn fn,
                             tpc_release_fn release);

/* From a thread that is not a shard of any runtime (the thread that called tpc_start, a helper
 * thread, a foreign library's thread): runs fn(arg) in a fiber on shard `shard` of rt and
 * blocks this thread until it has returned, storing its result in *result (if not NULL).
 * Returns 0, -EINVAL (NULL rt or fn, bad shard), -ENOMEM, -ESHUTDOWN (the runtime is stopping:
 * fn did not run), -EPERM from inside a shard (a shard must never block: use tpc_call_on).
 * It may be called until tpc_wait(rt) has returned: a call made while the runtime stops returns
 * -ESHUTDOWN or completes, and tpc_wait waits for calls under way before it frees rt. */
TPC_EXTERN int tpc_call_from_thread(tpc_runtime *rt, int shard, tpc_call_fn fn, void *arg,
                                    int *result);

/* ---- Per-shard storage: the program's own state, one value per shard ----
 * A key is made once per process (from any thread, before or while runtimes run) and names a
 * slot that every shard of every runtime has, NULL until that shard sets it. A shard reads and
 * writes only its own slot, without locks: tpc_on_all(init, ...) is the usual way to fill each
 * shard's. When a shard stops, after its last fiber has returned, each non-NULL value whose key
 * has a destructor is cleared and passed to it, on the shard's thread (it may call what does not
 * suspend: tpc_close, tpc_shard_id ...); a destructor that sets a slot again gets up to three
 * more rounds. Values set by messages run while the runtime stops are destroyed when tpc_wait
 * frees the runtime, on its thread. A message that runs after its shard's destructors (a
 * tpc_submit_to or a reply racing with the stop, run by tpc_wait) finds the slot NULL: callbacks
 * that may be sent while the runtime stops must check what tpc_shard_get returns. Keys are
 * never deleted. */
#define TPC_SHARD_KEYS 64

/* Makes a key, with destructor (NULL: none) for its values. Returns the key (>= 0), or -EAGAIN
 * when TPC_SHARD_KEYS keys exist. Does not suspend; callable from any thread. */
TPC_EXTERN int tpc_shard_key_create(tpc_release_fn destructor);
/* Sets the calling shard's value of key (replacing a value without destroying it). Returns 0,
 * -EINVAL for a key that was not made, -EPERM outside a shard. */
TPC_EXTERN int tpc_shard_set(int key, void *value);
/* The calling shard's value of key; NULL when unset, outside a shard, or for a key that was not
 * made. */
TPC_EXTERN void *tpc_shard_get(int key);

/* Per-shard counters, each written only by its shard. */
typedef struct tpc_shard_stats {
    uint64_t tasks;           /* tasks run (fibers resumed and callbacks) */
    uint64_t switches;        /* fiber context switches */
    uint64_t loops;           /* loop iterations */
    uint64_t msgs_in;         /* messages run that came from other shards and threads */
    uint64_t msgs_out;        /* messages sent to other shards */
    uint64_t wakeups_sent;    /* sleeping shards it woke */
    uint64_t wakeups;         /* times it was woken from sleep by another thread */
    uint64_t sleep_ns;        /* time spent asleep */
    uint64_t io_submitted;    /* io_uring submissions (the runtime's own included; a lone
                               * socket send made straight from its fiber is not one) */
    uint64_t io_completed;    /* io_uring completions (the runtime's own included) */
    uint64_t timers;          /* timer callbacks fired (sleeps and deadlines included) */
    uint64_t accept_backoffs; /* acceptors that ran out of descriptors or memory and paused */
    uint64_t io_enters;       /* the loop's kernel entries for I/O: submit-and-reap, sleep
                               * (ppoll too, under valgrind), submit on a full SQ ring */
    uint64_t stalls;          /* times the shard stayed away from its loop past stall_ms */
    uint64_t backend;         /* the I/O backend it runs: TPC_BACKEND_URING or _EPOLL; on
                               * epoll, io_submitted and io_completed count the operations the
                               * backend carried out (a fiber's and the runtime's own, each
                               * once however often it was tried), io_enters its epoll_wait
                               * calls */
    uint64_t cq_overflows;    /* times the loop found io_uring's completion queue overflowed
                               * (the kernel kept the rest: nothing lost, flushed at once) */
    uint64_t batched_sleeps;  /* sleeps in which the kernel held the wake-up for a batch of
                               * completions (tpc_config.coalesce_us: fixed or adaptive) */
    uint64_t spins;           /* times it spun before sleeping (tpc_config.spin_ns) */
} tpc_shard_stats;

/* Reads shard `shard`'s counters into *out (by a message to that shard; suspends). Returns as
 * tpc_call_on. */
TPC_EXTERN int tpc_stats(int shard, tpc_shard_stats *out);

/* libtpc's version as TPC_VERSION_HEX, and as a "major.minor.patch" string. */
TPC_EXTERN unsigned tpc_version(void);
TPC_EXTERN const char *tpc_version_string(void);

#endif
