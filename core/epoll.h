/* The epoll backend (core/epoll.c): a shard that cannot have an io_uring runs its I/O on epoll
 * behind the same seam. Every operation is still described by a `struct io_uring_sqe` and
 * completes through its `struct tpc__op`; on an epoll shard, tpc__sqe hands out an SQE from a
 * private array and this file carries the operation out: a non-blocking system call on
 * readiness (sockets, pipes, eventfd, signalfd), the blocking pool (regular files, path
 * calls), or -EOPNOTSUPP. Never installed. */
#ifndef TPC_CORE_EPOLL_H
#define TPC_CORE_EPOLL_H

#include "internal.h"

struct tpc__io;

/* Set-up and tear-down on the shard's thread (s->ep set, or left NULL on failure). */
int tpc__ep_init(struct tpc__shard *s);
void tpc__ep_fini(struct tpc__shard *s);
/* A free SQE of the shard's private array (carrying the queued ones out first when full). */
struct io_uring_sqe *tpc__ep_sqe(struct tpc__shard *s);
/* tpc__io_run on an epoll shard: tries the operation at once, then waits for readiness or
 * the blocking pool; the same cancellation and deadline contract. */
int tpc__ep_run(struct tpc__shard *s, struct tpc__io *io, struct io_uring_sqe *sqe);
/* The loop's I/O phase: carries out queued SQEs, retries, polls epoll without blocking when
 * `poll` (tasks are ready), or when `worked` unless the last call left epoll alone (the sleep
 * that usually follows asks it), and delivers completions. */
void tpc__ep_poll(struct tpc__shard *s, bool poll, bool worked);
/* The loop's sleep: as tpc__ep_poll, blocking in epoll_wait up to `timeout` ns (<= 0: none). */
void tpc__ep_block(struct tpc__shard *s, int64_t timeout);
/* Completions or retries wait: the loop must not sleep. */
bool tpc__ep_pending(struct tpc__shard *s);
/* While the loop spins: asks epoll, without waiting, whether descriptors are ready (their
 * events are kept for the next tpc__ep_poll or tpc__ep_block). True if so. */
bool tpc__ep_peek(struct tpc__shard *s);
/* A provided-buffer ring (net/bufpool.c) for receives with IOSQE_BUFFER_SELECT in group bgid:
 * the backend takes buffers from it as the kernel would. */
int tpc__ep_buf_ring(struct tpc__shard *s, struct io_uring_buf_ring *br, unsigned entries,
                     unsigned bgid);
void tpc__ep_buf_ring_drop(struct tpc__shard *s, unsigned bgid);
/* On an io_uring shard whose kernel lacks sqe's opcode (a file or path call): runs it on the
 * blocking pool from the calling fiber instead; sqe becomes a no-op nobody waits for. Returns
 * the result, or -EOPNOTSUPP for an operation only the ring could do. */
int tpc__ep_offload(struct tpc__shard *s, struct io_uring_sqe *sqe);

/* Tests only: the descriptor number from which operations fail with -EMFILE (0: the default,
 * 2^20, the table's size). */
void tpc__ep_set_fd_limit(unsigned n);

#endif
