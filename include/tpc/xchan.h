/* Cross-shard channel: a bounded FIFO of pointers whose sending fibers live on one shard and
 * whose receiving fibers live on another (or the same) shard.
 *
 * Values travel through a single-producer single-consumer ring of the channel's own; a side
 * that has to wait suspends, and the other side wakes it with one message over the
 * shard-to-shard rings, only when somebody actually waits. Ownership of a value passes to the
 * receiver when tpc_xchan_recv returns it.
 *
 * The first shard that sends becomes the channel's sending shard and the first that receives
 * its receiving shard; calls from any other shard return -EXDEV. Several fibers of the sending
 * (receiving) shard may send (receive) at once.
 *
 * Lifetime, as for every handle (docs/guide.md, "Objects and their release"): the channel has
 * two ends, each released once with tpc_xchan_release(), which also closes it: fibers waiting
 * on it return -EPIPE (receivers once it is empty). It is freed when both ends are released and
 * the last waiting fiber has left. Releases and closes may come from any shard of the runtime.
 * Values sent before a close (on any shard that knew of the sends) are still received. */
#ifndef TPC_XCHAN_H
#define TPC_XCHAN_H

#include "common.h"

typedef struct tpc_xchan tpc_xchan;

/* Creates a channel holding up to `capacity` values (rounded up to a power of two; at most
 * 2^24). Hand it to the other shard (e.g. as a tpc_spawn_on argument). Returns 0, -EINVAL,
 * -ENOMEM, -EPERM outside a shard. */
TPC_EXTERN int tpc_xchan_create(size_t capacity, tpc_xchan **out);

/* Sends value, suspending while the channel is full. Returns 0; -EPIPE once the channel is
 * closed (value not sent); -ECANCELED / -ETIMEDOUT (not sent); -EXDEV from a shard other than
 * the sending one; -EINVAL for NULL c; -EPERM outside a fiber. */
TPC_EXTERN int tpc_xchan_send(tpc_xchan *c, void *value);

/* Receives the oldest value into *value, suspending while the channel is empty. Values sent
 * before a close are still received; then -EPIPE. Returns 0, -EPIPE, -ECANCELED / -ETIMEDOUT
 * (nothing taken), -EXDEV, -EINVAL, -EPERM as tpc_xchan_send. */
TPC_EXTERN int tpc_xchan_recv(tpc_xchan *c, void **value);

/* Closes the channel (from any shard; again: no effect). Waiting senders return -EPIPE, and
 * receivers do once the channel is empty. Returns 0, -EINVAL, -EXDEV for a channel of another
 * runtime, -EPERM outside a shard. */
TPC_EXTERN int tpc_xchan_close(tpc_xchan *c);

/* Closes the channel and drops one end; the second call frees it. Returns 0, -EINVAL, -EPERM
 * outside a shard, -EXDEV for a channel of another runtime (then nothing is released). */
TPC_EXTERN int tpc_xchan_release(tpc_xchan *c);

#endif
