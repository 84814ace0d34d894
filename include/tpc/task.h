/* Tasks: fibers (stackful, may suspend) and callback tasks (run once, never suspend).
 *
 * All tasks of a shard run on that shard's thread, one at a time, first come first served; a
 * task never moves to another shard. Which of two ready tasks runs first is not promised:
 * builds configured with -Dshuffle=true pick at random (the seed is printed; TPC_SHUFFLE_SEED
 * replays it) to find code that relies on it. Promised in every build: tpc_yield lets every
 * task ready before it run first; waiters of an object are granted it in the order they came;
 * messages from one shard to another run in the order sent; timers fire in order. A fiber suspends
 * only inside libtpc calls that say so ("suspends"). Calls that suspend may only be made from a
 * fiber: elsewhere they return -EPERM.
 *
 * Cancellation is cooperative. After tpc_cancel(f), the suspension f is in (or its next one)
 * returns -ECANCELED, and so does every later suspension of f: the fiber is expected to unwind
 * and return. tpc_yield() still yields when cancelled, and tpc_join still waits for the child
 * to end (it cancels it first) before it returns -ECANCELED. */
#ifndef TPC_TASK_H
#define TPC_TASK_H

#include <stdbool.h>
#include "common.h"

/* Options for tpc_spawn_opts(). Zero-initialise; zero fields take defaults. */
typedef struct tpc_fiber_opts {
    size_t stack_size; /* 0: the runtime's default. Minimum 16 KiB; rounded up to pages. */
    const char *name;  /* Shown in diagnostics such as a stack overflow report; copied
                          (first 31 bytes). NULL: "fiber". */
    bool detached;     /* The fiber frees itself when it returns; it cannot be joined. */
    bool no_guard;     /* No guard page under the stack: an overflow is not caught. Guarded
                          stacks come 16 to a mapping, their guards put in without splitting it
                          (MADV_GUARD_INSTALL, Linux 6.13); on older kernels each guarded stack
                          takes two of the vm.max_map_count mappings a process may hold (65530
                          by default), and many small fibers may want to go without. */
} tpc_fiber_opts;

/* Spawns fiber fn(arg) on the current shard, queued at the tail of the run queue (the caller
 * keeps running). On success stores the handle in *out (if out is not NULL) and returns 0.
 * With out == NULL the fiber is detached. The handle stays valid until tpc_join() returns or
 * tpc_detach() is called. Allowed from fibers and callback tasks. Returns -EPERM outside a
 * shard, -EINVAL for a bad stack size or fn == NULL, -ENOMEM, -ESHUTDOWN while stopping.
 * tpc_spawn_on (tpc/runtime.h) spawns on another shard and hands out the same kind of handle:
 * tpc_join, tpc_detach, tpc_cancel and tpc_fiber_name take either. */
TPC_EXTERN int tpc_spawn(tpc_fiber_fn fn, void *arg, tpc_fiber **out);
TPC_EXTERN int tpc_spawn_opts(const tpc_fiber_opts *opts, tpc_fiber_fn fn, void *arg,
                              tpc_fiber **out);

/* Suspends until fiber f has returned, stores its return value in *result (if not NULL), frees
 * f and returns 0. Structured: if the caller is cancelled or its deadline passes (before or
 * while it waits), f is cancelled and still waited for, so that no child outlives what its
 * parent lent it; then f is joined all the same (*result set, f freed) and the call returns
 * -ECANCELED / -ETIMEDOUT. Returns -EINVAL for a detached fiber or one that already has a
 * joiner (f untouched), -EDEADLK when f is the caller, -EXDEV when the handle was made on another
 * shard, -EPERM outside a fiber.
 * For a fiber from tpc_spawn_on: the same, from the shard that spawned it; if the target could
 * not spawn the fiber, its error (-ENOMEM, -ESHUTDOWN), before the caller's own -ECANCELED /
 * -ETIMEDOUT; -ESHUTDOWN also when the target shard
 * stopped before it could start the fiber (it never runs; the handle is freed). */
TPC_EXTERN int tpc_join(tpc_fiber *f, int *result);

/* Lets f free itself when it returns (for tpc_spawn_on's handle: the fiber runs to the end and its
 * result is dropped). Returns 0, -EINVAL if already detached or being joined, -EXDEV when the
 * handle was made on another shard, -EPERM outside a shard. */
TPC_EXTERN int tpc_detach(tpc_fiber *f);

/* Requests cancellation of f (which may be the caller). Returns 0 (also for a fiber that has
 * already returned), -EXDEV when the handle was made on another shard, -EPERM outside a shard.
 * Does not suspend. For tpc_spawn_on's handle the request travels to the fiber's shard (it
 * never blocks: a full ring keeps it until there is room) and takes effect there. */
TPC_EXTERN int tpc_cancel(tpc_fiber *f);

/* True once the calling fiber has been cancelled. */
TPC_EXTERN bool tpc_cancelled(void);

/* Moves the calling fiber to the tail of the run queue and runs the others. Suspends.
 * Returns 0, -ECANCELED if the fiber is cancelled (it still yielded), -EPERM outside a fiber. */
TPC_EXTERN int tpc_yield(void);

/* Yields only if the shard's time slice (tpc_config.time_slice_ns) is used up; otherwise
 * returns at once. For long computations. Returns as tpc_yield(), or 0 when it did not yield.
 * Costs a load: the stall detector's watchdog raises a flag once the run phase has lasted a
 * slice (so it yields between one and two slices in); with the detector off it reads the clock
 * (tens of ns). */
TPC_EXTERN int tpc_maybe_yield(void);

/* The calling fiber, or NULL outside a fiber. */
TPC_EXTERN tpc_fiber *tpc_self(void);

/* The fiber's name as given at spawn ("fiber" by default). */
TPC_EXTERN const char *tpc_fiber_name(const tpc_fiber *f);

/* Queues callback fn(arg) at the tail of this shard's run queue. Returns 0, -EINVAL for a NULL
 * fn, -ENOMEM, -EPERM outside a shard. If it fails fn is never called. */
TPC_EXTERN int tpc_defer(tpc_callback_fn fn, void *arg);

#endif
