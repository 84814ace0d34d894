/* The shard's io_uring, as the layers above use it (core/uring.c): a fiber waits for one
 * operation (tpc__io_run), objects keep multishot operations in the ring, and tests inject
 * faults. Never installed. */
#ifndef TPC_CORE_URING_H
#define TPC_CORE_URING_H

#include "internal.h"
#include "epoll.h"

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

/* One io_uring operation waited for by a fiber (core/uring.c). */
struct tpc__io {
    struct tpc__op op;
    struct tpc__wait w;
    int res;
    bool done;
    bool rw; /* a read, write or sync: counted in inflight_rw */
};
/* An operation that stays in the ring across many completions (a multishot accept or recv),
 * owned by an object rather than by a waiting fiber (core/uring.c). Not counted in `inflight`. */
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

/* Opcodes this kernel lacks among those the blocking pool can carry out instead: probed once
 * per process on the first ring (tpc__probe_ops sets s->ops_missing), and such an operation
 * then runs on the pool (tpc__io_run). */
void tpc__probe_ops(struct tpc__shard *s);
bool tpc__op_missing(unsigned op);

/* A free SQE (submitting queued ones once if the ring is full), or NULL. */
struct io_uring_sqe *tpc__sqe(struct tpc__shard *s);
/* Submits the operation prepared in sqe and suspends until it completes; returns its result.
 * If the fiber is cancelled or its deadline passes first, asks the kernel to cancel it and
 * still waits for the final completion, so that the kernel never touches the caller's memory
 * after this returns: then returns -ECANCELED / -ETIMEDOUT, or the operation's result if it
 * completed anyway (nothing it did is lost). */
int tpc__io_run(struct tpc__shard *s, struct tpc__io *io, struct io_uring_sqe *sqe);
/* True when an operation with opcode `op` prepared now would go to the kernel by itself: an
 * io_uring shard with nothing queued to run before its loop submits and no other SQE waiting
 * (nor a fault armed for `op`). Then a socket send costs less as a non-blocking system call
 * from the fiber: one kernel entry either way, without the suspend, the submission and the
 * completion. */
bool tpc__io_alone(struct tpc__shard *s, unsigned op);

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
/* Every shard start reads kernel release `release` instead of uname's (NULL: uname's again). */
void tpc__fault_kernel_set(const char *release);
const char *tpc__fault_kernel(void);
/* Opcodes (bit n: opcode n < 64) that the next runtimes' probes report missing (0: none). */
void tpc__fault_hide_opcodes(uint64_t mask);
/* The next fallback to epoll is said on stderr again, as in a fresh process (core/shard.c). */
void tpc__fault_fallback_unsay(void);
/* The next `count` fiber spawns on this thread fail with -err (core/task.c). */
void tpc__fault_spawn(int err, unsigned count);
bool tpc__fault_no_sqe(void);
/* For operations that complete to a callback rather than through tpc__io_run: applies a fault
 * set with tpc__fault_set to the prepared sqe (a failure makes it a no-op) and returns the
 * result to report instead of its own (0: none). */
int tpc__fault_inject(struct io_uring_sqe *sqe);
#endif

#endif
