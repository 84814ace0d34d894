/* Shard-local synchronisation between fibers of one shard: channel, semaphore, mutex, event,
 * wait group. No atomics: an object belongs to the shard that initialised it, and any call from
 * another shard returns -EXDEV (as does any call on a destroyed object); the queries
 * (tpc_sem_value, tpc_event_is_set, tpc_chan_len) do not check, and read unsynchronised from
 * another thread. Waiters are served in FIFO order.
 *
 * Objects are embedded by the caller: init, use, destroy. Their contents are private (only their
 * size is part of the ABI). destroy returns -EBUSY (and does nothing) while fibers wait on the
 * object.
 *
 * Calls that wait suspend the calling fiber; they return -ECANCELED if it is cancelled (before
 * or while waiting, having taken nothing), -ETIMEDOUT once its deadline (tpc_deadline_set) has
 * passed, and -EPERM outside a fiber; both are checked first, so even a wait that would return
 * at once returns them. The try_ forms never suspend and
 * may be called from callback tasks too, except the mutex's: a mutex is owned by a fiber, so
 * tpc_mutex_trylock and tpc_mutex_unlock return -EPERM from a callback task. A NULL object (or
 * a NULL out for a channel's receive) is -EINVAL; the queries (tpc_sem_value, tpc_event_is_set,
 * tpc_chan_len) answer 0 / false for it. */
#ifndef TPC_SYNC_H
#define TPC_SYNC_H

#include <stdbool.h>
#include "common.h"

/* Private: an intrusive list, as libtpc uses inside its objects. */
typedef struct tpc_list {
    struct tpc_list *next, *prev;
} tpc_list;

/* ---- Mutex: one owner at a time; unlock hands ownership to the first waiter. ---- */
typedef struct tpc_mutex {
    uint64_t private_[4];
} tpc_mutex;

/* Returns 0, or -EPERM outside a shard. */
TPC_EXTERN int tpc_mutex_init(tpc_mutex *m);
/* Suspends until the caller owns m. -EDEADLK if it already does. */
TPC_EXTERN int tpc_mutex_lock(tpc_mutex *m);
/* 0, or -EBUSY if another fiber owns it. -EDEADLK if the caller does. */
TPC_EXTERN int tpc_mutex_trylock(tpc_mutex *m);
/* 0, or -EPERM if the caller does not own m. */
TPC_EXTERN int tpc_mutex_unlock(tpc_mutex *m);
/* -EBUSY if locked or waited on. */
TPC_EXTERN int tpc_mutex_destroy(tpc_mutex *m);

/* ---- Counting semaphore. ---- */
typedef struct tpc_sem {
    uint64_t private_[4];
} tpc_sem;

TPC_EXTERN int tpc_sem_init(tpc_sem *s, uint64_t count);
/* Suspends until one unit is available, then takes it. */
TPC_EXTERN int tpc_sem_acquire(tpc_sem *s);
/* 0, or -EAGAIN when no unit is free (or earlier waiters are queued). */
TPC_EXTERN int tpc_sem_tryacquire(tpc_sem *s);
/* Adds n units, handing them to waiters first. -EOVERFLOW if the count would wrap. */
TPC_EXTERN int tpc_sem_release(tpc_sem *s, uint64_t n);
TPC_EXTERN int tpc_sem_destroy(tpc_sem *s);
/* The number of free units. */
TPC_EXTERN uint64_t tpc_sem_value(const tpc_sem *s);

/* ---- Event: set wakes every waiter and stays set until reset. ---- */
typedef struct tpc_event {
    uint64_t private_[4];
} tpc_event;

TPC_EXTERN int tpc_event_init(tpc_event *e, bool set);
TPC_EXTERN int tpc_event_set(tpc_event *e);
TPC_EXTERN int tpc_event_reset(tpc_event *e);
/* Returns 0 at once if set (a cancelled fiber, or one past its deadline, gets -ECANCELED /
 * -ETIMEDOUT first); otherwise suspends until tpc_event_set(). */
TPC_EXTERN int tpc_event_wait(tpc_event *e);
TPC_EXTERN bool tpc_event_is_set(const tpc_event *e);
TPC_EXTERN int tpc_event_destroy(tpc_event *e);

/* ---- Wait group: wait until a counter of outstanding jobs drops to zero. ---- */
typedef struct tpc_waitgroup {
    uint64_t private_[4];
} tpc_waitgroup;

TPC_EXTERN int tpc_wg_init(tpc_waitgroup *wg);
/* Adds n (may be negative) to the counter; reaching zero wakes every waiter. -EINVAL if the
 * counter would become negative (it is left unchanged). */
TPC_EXTERN int tpc_wg_add(tpc_waitgroup *wg, int64_t n);
/* tpc_wg_add(wg, -1). */
TPC_EXTERN int tpc_wg_done(tpc_waitgroup *wg);
/* Suspends until the counter is zero (returns 0 at once if it is, after the cancel and deadline
 * checks above). */
TPC_EXTERN int tpc_wg_wait(tpc_waitgroup *wg);
TPC_EXTERN int tpc_wg_destroy(tpc_waitgroup *wg);

/* ---- Bounded channel of pointers. ----
 * Capacity 0 makes a rendezvous channel: a send completes when a receiver takes the value.
 * Values are delivered in send order. Closing wakes every waiter: blocked senders get -EPIPE
 * (their value was not delivered), receivers first drain what is buffered, then get -EPIPE. */
typedef struct tpc_chan {
    uint64_t private_[10];
} tpc_chan;

/* Allocates the buffer. -EINVAL if capacity > 2^31, -ENOMEM. */
TPC_EXTERN int tpc_chan_init(tpc_chan *c, size_t capacity);
/* Suspends while the channel is full. 0, or -EPIPE once closed (value not delivered). */
TPC_EXTERN int tpc_chan_send(tpc_chan *c, void *value);
/* -EAGAIN if it would have to wait, -EPIPE if closed. */
TPC_EXTERN int tpc_chan_trysend(tpc_chan *c, void *value);
/* Suspends while the channel is empty. 0 and *out set, or -EPIPE once closed and drained. */
TPC_EXTERN int tpc_chan_recv(tpc_chan *c, void **out);
/* -EAGAIN if it would have to wait, -EPIPE if closed and drained. */
TPC_EXTERN int tpc_chan_tryrecv(tpc_chan *c, void **out);
/* Closes the channel (idempotent: closing twice returns 0). */
TPC_EXTERN int tpc_chan_close(tpc_chan *c);
/* Values buffered now. */
TPC_EXTERN size_t tpc_chan_len(const tpc_chan *c);
/* Frees the buffer. -EBUSY while fibers wait. Buffered values are dropped (the caller owns what
 * they point to). */
TPC_EXTERN int tpc_chan_destroy(tpc_chan *c);

#endif
