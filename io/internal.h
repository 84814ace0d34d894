/* The I/O layer's private definitions: its per-shard state (registered buffers, what the
 * kernel's ring can do) and the blocking helper pool it keeps for the whole runtime. Includes
 * core's and the timer layer's. Never installed. */
#ifndef TPC_IO_INTERNAL_H
#define TPC_IO_INTERNAL_H

#include "core/uring.h"
#include "timer/internal.h"

/* Its slot in tpc__layers[] and in shard->layer[]. */
#define TPC__IO_LAYER 1

/* A slot of a shard's table of registered buffers or files (io/registry.c). */
struct tpc__reg_slot {
    char *base;        /* buffers: the registered range */
    size_t len;        /* buffers: its length; 0 for an empty buffer slot */
    uint32_t gen;      /* the generation part of the slot's handles */
    uint32_t inflight; /* buffers: fixed operations using it now */
    int next_free;     /* the table's free list, -1: end */
    int fd;            /* files on an epoll shard: the registered file's own descriptor (a dup) */
    bool used;
};

/* A table of registered resources: created sparse on first use, slots taken and given back. */
struct tpc__reg_table {
    struct tpc__reg_slot *slot;
    unsigned n;
    int free_head, free_tail; /* the free list, taken at the head, given back at the tail */
    int made;  /* 0: not yet; 1: registered with the kernel; < 0: the error that prevented it */
    bool dups; /* files on an epoll shard: each used slot holds a descriptor of its own */
};

/* Per shard. */
struct tpc__io_shard {
    struct tpc__reg_table bufs, files; /* io/registry.c */
    tpc_list pending;                  /* tpc_pending not yet released (io/bounded.c) */
    tpc_list watches;                  /* tpc_watch waiting (io/watch.c) */
    bool watches_stopped;              /* the shard stops: they were ended */
    unsigned nendless;  /* pending operations on pipes and sockets, not done nor cancelled */
    bool has_ftruncate; /* the kernel has IORING_OP_FTRUNCATE (Linux 6.9) */
};

/* The io layer's loop work once the shard stops: ends the waiting watches (io/watch.c) and
 * cancels the bounded operations on pipes and sockets (io/bounded.c). */
bool tpc__watch_poll(struct tpc__shard *s, void *state);
bool tpc__pending_poll(struct tpc__shard *s, struct tpc__io_shard *io);

static inline struct tpc__io_shard *tpc__io_of(struct tpc__shard *s)
{
    return s->layer[TPC__IO_LAYER];
}

/* Handles (io/registry.c): slot in bits 0-13, generation in bits 14-29; a registered file's
 * also has TPC__FILE_BIT, above every descriptor Linux hands out (at most 2^20). */
#define TPC__SLOT_BITS 14
#define TPC__FILE_BIT  (1 << 30)
/* An fd argument, from a fiber: a plain descriptor (*sqe_fd = fd) or a registered file's handle
 * (*sqe_fd = its slot, IOSQE_FIXED_FILE added to *sqe_flags). Returns 0, or -EBADF for a handle
 * not registered on this shard. */
int tpc__io_file(int fd, int *sqe_fd, unsigned char *sqe_flags);

/* TPC__IO_BEGIN for a call that takes a descriptor or a registered file's handle: `ffd` is what
 * the preparation gets; TPC__IO_FD_END adds the flag. */
#define TPC__IO_BEGIN_FD(sqe, fd, ffd)                                                             \
    TPC__CHECK_SUSPEND();                                                                          \
    unsigned char fflags_ = 0;                                                                     \
    int ffd;                                                                                       \
    int frc_ = tpc__io_file((fd), &ffd, &fflags_);                                                 \
    if (frc_ < 0)                                                                                  \
        return frc_;                                                                               \
    struct tpc__shard *s_ = tpc__self;                                                             \
    struct io_uring_sqe *sqe = tpc__sqe(s_);                                                       \
    if (!sqe)                                                                                      \
        return -EAGAIN;                                                                            \
    struct tpc__io io_

#define TPC__IO_FD_END(sqe) (sqe->flags |= fflags_, tpc__io_run(s_, &io_, sqe))
/* The registered buffer `handle` if buf..buf+len lies in it (its slot through *slot), else
 * NULL. */
struct tpc__reg_slot *tpc__io_buf(struct tpc__io_shard *io, int handle, const void *buf, size_t len,
                                  unsigned *slot);
void tpc__registry_fini(struct tpc__io_shard *io);
/* Bounded operations (io/bounded.c): frees those never released. */
void tpc__pending_fini(struct tpc__io_shard *io);

/* io-wq placement and bounds (io/iowq.c): applies tpc_config's fields on a shard's thread; a
 * negative errno (said on stderr: -EINVAL for a bad iowq_cpus) fails the start. */
int tpc__iowq_setup(struct tpc__shard *s);

/* The blocking helper pool (io/blocking.c), kept in rt->layer[TPC__IO_LAYER]. */
struct tpc__pool;
int tpc__pool_init(struct tpc_runtime *rt, unsigned threads, unsigned queue);
void tpc__pool_fini(struct tpc_runtime *rt); /* after the shards stopped: joins the helpers */
const cpu_set_t *tpc__pool_cpus(struct tpc_runtime *rt); /* the affinity tpc_start ran with */
/* The pool's gauges for tpc_metrics_format (struct tpc__layer.gauges). */
void tpc__pool_gauges(struct tpc_runtime *rt,
                      void (*put)(void *out, const char *name, const char *help, uint64_t value),
                      void *out);

/* The layer's hooks: set-up and tear-down of the two above (io/file.c). */
extern const struct tpc__layer tpc__io_layer;

#endif
