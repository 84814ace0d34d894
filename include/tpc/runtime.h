/* Runtime and shards: start, stop, and where am I. */
#ifndef TPC_RUNTIME_H
#define TPC_RUNTIME_H

#include <stdbool.h>
#include <stdio.h>
#include "common.h"

/* Maximum number of shards one runtime can run. */
#define TPC_MAX_SHARDS 1024

/* Where shards go, among the CPUs allowed (tpc_config.cpus, TPC_CPUS, or the affinity mask),
 * taken in hwloc's logical order (so neighbours share caches): */
typedef enum tpc_placement {
    TPC_PLACE_PU = 0, /* one shard per processing unit (hardware thread); the default */
    TPC_PLACE_CORE,   /* one per core: its first allowed PU */
    TPC_PLACE_NODE,   /* one per NUMA node: its first allowed PU */
} tpc_placement;

/* Runtime configuration. Zero-initialise it, then set what you need; every zero field takes its
 * default. Fields left zero fall back to the environment where noted. */
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
     * the machine has more than one. */
    tpc_placement placement;
    /* Default fiber stack size in bytes (rounded up to pages). 0: 128 KiB (256 KiB with ASan).
     * Minimum 16 KiB. */
    size_t stack_size;
    /* Fiber stacks each shard keeps for reuse. 0: 64. */
    unsigned stack_cache;
    /* The shard's time slice in ns, after which tpc_maybe_yield() yields. 0: 500 us. */
    uint64_t time_slice_ns;
    /* io_uring submission queue entries per shard (power of two). 0: 256. */
    unsigned ring_entries;
    /* The timing wheel's tick in ns: timers fire at most one tick late. 0: 1 ms. Range
     * [10 us, 1 s]. */
    uint64_t timer_tick_ns;
    /* By default SIGINT and SIGTERM start tpc_shutdown(128 + signal number), for each of the two
     * whose disposition is the default when tpc_run starts (a handler of yours is left alone).
     * The runtime blocks them in the calling thread and the shards while it runs and reads them
     * through shard 0's io_uring; threads you created earlier should block them too. true: leave
     * both signals alone. */
    bool no_signals;
    /* Before it sleeps, a shard that has just done some work keeps checking its inbox for this
     * many ns, so that a reply arriving soon costs no wake-up. 0: 10 us. Negative: never spin
     * (lowest CPU use). */
    int64_t spin_ns;
} tpc_config;

/* Starts the runtime: one shard (an OS thread, pinned with hwloc when there are enough CPUs)
 * per CPU, each with its own run queue and io_uring. Runs main_fn(arg) as a fiber on shard 0.
 * Blocks the calling thread until every shard has stopped: that happens when main_fn returns
 * (its return value is the exit status) or when any fiber calls tpc_shutdown().
 * config may be NULL (all defaults). Returns the exit status (>= 0 when main_fn returns one),
 * or a negative errno when the runtime could not start (a message on stderr names the cause):
 * -EBUSY when called from inside a shard, -EINVAL for a bad config or environment value.
 * Several runtimes may run at once from different threads. */
TPC_EXTERN int tpc_run(const tpc_config *config, tpc_fiber_fn main_fn, void *arg);

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

/* Writes one line per shard to out: shard -> CPU (PU) -> core -> NUMA node, or "not pinned".
 * Returns 0, -EINVAL for a NULL out, -EPERM outside a shard. */
TPC_EXTERN int tpc_topology_report(FILE *out);

/* Runs fn(arg) as a callback task on shard `shard`, fire and forget. From the same shard it is
 * queued like tpc_defer(). The callback owns arg once this returns 0; if it fails, fn is never
 * called and the caller keeps arg. Returns 0, -EINVAL for a bad shard index, -ENOMEM,
 * -ESHUTDOWN once the runtime is stopping, -EPERM outside a shard. */
TPC_EXTERN int tpc_submit_to(int shard, tpc_callback_fn fn, void *arg);

/* A function run on another shard by tpc_call_on / tpc_on_all: it runs there as a callback (it
 * must not suspend) and its int result travels back. */
typedef int (*tpc_call_fn)(void *arg);

/* Runs fn(arg) on shard `shard` and suspends the calling fiber until its result came back, which
 * it stores in *result (if not NULL). On the caller's own shard fn runs at once. If the caller
 * is cancelled or its deadline passes while it waits, this returns -ECANCELED / -ETIMEDOUT at
 * once; fn still runs (or has run) and its result is dropped, so arg must stay valid until fn
 * has run. Returns 0, -EINVAL (bad shard, NULL fn), -ENOMEM, -ESHUTDOWN, -EPERM outside a
 * fiber. */
TPC_EXTERN int tpc_call_on(int shard, tpc_call_fn fn, void *arg, int *result);

/* Runs fn(arg) on every shard (the caller's too) and suspends until all have run. Returns 0 if
 * every fn returned >= 0, else the first negative value returned; or an error as tpc_call_on. */
TPC_EXTERN int tpc_on_all(tpc_call_fn fn, void *arg);

/* Per-shard counters, each written only by its shard. */
typedef struct tpc_shard_stats {
    uint64_t tasks;    /* tasks run (fibers resumed and callbacks) */
    uint64_t switches; /* fiber context switches */
    uint64_t loops;    /* loop iterations */
    uint64_t wakeups;  /* times another thread woke it from sleep */
    uint64_t timers;   /* timer callbacks fired (sleeps and deadlines included) */
    uint64_t inbox;    /* messages received from other shards and threads */
} tpc_shard_stats;

/* Reads shard `shard`'s counters into *out (by a call to that shard; suspends). Returns as
 * tpc_call_on. */
TPC_EXTERN int tpc_stats(int shard, tpc_shard_stats *out);

/* libtpc's version as TPC_VERSION_HEX, and as a "major.minor.patch" string. */
TPC_EXTERN unsigned tpc_version(void);
TPC_EXTERN const char *tpc_version_string(void);

#endif
