/* File and descriptor I/O (include/tpc/io.h): each call prepares one SQE and waits for it with
 * tpc__io_run (core/uring.c), which handles cancellation and deadlines. A new opcode needs its
 * case in core/epoll.c too (the backend without io_uring), or it is -EOPNOTSUPP there. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

/* io_uring's "current position" offset. */
static inline uint64_t io_off(int64_t offset)
{
    return offset < 0 ? (uint64_t)-1 : (uint64_t)offset;
}

int tpc_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    if (!path)
        return -EINVAL;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_openat(sqe, dirfd, path, flags | O_CLOEXEC, mode);
    return TPC__IO_END(sqe);
}

int tpc_open(const char *path, int flags, mode_t mode)
{
    return tpc_openat(AT_FDCWD, path, flags, mode);
}

/* A plain close(2): clean-up must work from anywhere, at once (a cancelled fiber, a callback,
 * a timer), and closing a socket or a file without O_SYNC data does not wait. */
int tpc_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    tpc__fd_closing(fd);
    return close(fd) == 0 || errno == EINTR ? 0 : -errno; /* Linux frees fd even on EINTR */
}

static ssize_t rw(int fd, void *buf, size_t len, int64_t offset, bool writing)
{
    if (!buf && len)
        return -EFAULT;
    if (offset < -1)
        return -EINVAL;
    TPC__IO_BEGIN_FD(sqe, fd, f);
    if (writing)
        io_uring_prep_write(sqe, f, buf, tpc__io_len(len), io_off(offset));
    else
        io_uring_prep_read(sqe, f, buf, tpc__io_len(len), io_off(offset));
    int rc = TPC__IO_FD_END(sqe);
    if (!writing)
        TPC__KERNEL_WROTE(buf, rc);
    return rc;
}

ssize_t tpc_read(int fd, void *buf, size_t len, int64_t offset)
{
    return rw(fd, buf, len, offset, false);
}

ssize_t tpc_write(int fd, const void *buf, size_t len, int64_t offset)
{
    return rw(fd, (void *)buf, len, offset, true);
}

static ssize_t rwv(int fd, const struct iovec *iov, int iovcnt, int64_t offset, bool writing)
{
    if ((!iov && iovcnt) || iovcnt < 0 || iovcnt > IOV_MAX || offset < -1)
        return -EINVAL;
    TPC__IO_BEGIN_FD(sqe, fd, f);
    if (writing)
        io_uring_prep_writev(sqe, f, iov, (unsigned)iovcnt, io_off(offset));
    else
        io_uring_prep_readv(sqe, f, iov, (unsigned)iovcnt, io_off(offset));
    int rc = TPC__IO_FD_END(sqe);
    if (!writing)
        tpc__kernel_wrote_iov(iov, iovcnt, rc);
    return rc;
}

ssize_t tpc_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
    return rwv(fd, iov, iovcnt, offset, false);
}

ssize_t tpc_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
    return rwv(fd, iov, iovcnt, offset, true);
}

/* The loop behind tpc_read_full and tpc_write_full. */
static ssize_t full(int fd, char *buf, size_t len, int64_t offset, bool writing)
{
    size_t done = 0;
    while (done < len) {
        int64_t at = offset < 0 ? -1 : offset + (int64_t)done;
        ssize_t n = writing ? tpc_write(fd, buf + done, len - done, at)
                            : tpc_read(fd, buf + done, len - done, at);
        if (n == -EINTR)
            continue; /* nothing moved: try again (io_uring waits for readiness itself) */
        if (n == -EAGAIN) {
            /* No free SQE (or a non-blocking descriptor that is not ready): trying again at
             * once would spin without the loop ever submitting or reaping, and starve every
             * other fiber. Pass through the loop first; a cancel or deadline ends it. */
            int rc = tpc_sleep(0);
            if (rc < 0)
                return done ? (ssize_t)done : rc;
            continue;
        }
        if (n < 0)
            return done ? (ssize_t)done : n;
        if (n == 0) {
            if (writing)
                return done ? (ssize_t)done : -EIO; /* a write that moves nothing */
            break;                                  /* end of file */
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t tpc_read_full(int fd, void *buf, size_t len, int64_t offset)
{
    if (offset < -1)
        return -EINVAL;
    if (!buf && len)
        return -EFAULT;
    return full(fd, buf, len, offset, false);
}

ssize_t tpc_write_full(int fd, const void *buf, size_t len, int64_t offset)
{
    if (offset < -1)
        return -EINVAL;
    if (!buf && len)
        return -EFAULT;
    return full(fd, (char *)buf, len, offset, true);
}

int tpc_fsync(int fd)
{
    TPC__IO_BEGIN_FD(sqe, fd, f);
    io_uring_prep_fsync(sqe, f, 0);
    return TPC__IO_FD_END(sqe);
}

int tpc_fdatasync(int fd)
{
    TPC__IO_BEGIN_FD(sqe, fd, f);
    io_uring_prep_fsync(sqe, f, IORING_FSYNC_DATASYNC);
    return TPC__IO_FD_END(sqe);
}

int tpc_fallocate(int fd, int mode, int64_t offset, int64_t len)
{
    if (offset < 0 || len <= 0)
        return -EINVAL;
    TPC__IO_BEGIN_FD(sqe, fd, f);
    io_uring_prep_fallocate(sqe, f, mode, (uint64_t)offset, (uint64_t)len);
    return TPC__IO_FD_END(sqe);
}

static long ftruncate_blocking(void *arg)
{
    const int64_t *a = arg;
    return ftruncate((int)a[0], (off_t)a[1]) == 0 ? 0 : -errno;
}

int tpc_ftruncate(int fd, int64_t len)
{
    TPC__CHECK_SUSPEND();
    if (len < 0)
        return -EINVAL;
    struct tpc__shard *s = tpc__self;
    if (!tpc__io_of(s)->has_ftruncate) { /* older kernels: on a helper thread */
        int64_t a[2] = {fd, len};
        long r = 0;
        int rc = tpc_blocking(ftruncate_blocking, a, &r);
        return rc < 0 ? rc : (int)r;
    }
    TPC__IO_BEGIN(sqe);
    io_uring_prep_rw(TPC__OP_FTRUNCATE, sqe, fd, NULL, 0, (uint64_t)len);
    return TPC__IO_END(sqe);
}

int tpc_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
    if (!path || !out)
        return -EINVAL;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_statx(sqe, dirfd, path, flags, mask, out);
    int rc = TPC__IO_END(sqe);
    if (rc == 0)
        TPC__KERNEL_WROTE(out, sizeof(*out));
    return rc;
}

int tpc_unlink(const char *path)
{
    if (!path)
        return -EINVAL;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_unlinkat(sqe, AT_FDCWD, path, 0);
    return TPC__IO_END(sqe);
}

int tpc_rmdir(const char *path)
{
    if (!path)
        return -EINVAL;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_unlinkat(sqe, AT_FDCWD, path, AT_REMOVEDIR);
    return TPC__IO_END(sqe);
}

int tpc_rename(const char *from, const char *to)
{
    if (!from || !to)
        return -EINVAL;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_renameat(sqe, AT_FDCWD, from, AT_FDCWD, to, 0);
    return TPC__IO_END(sqe);
}

int tpc_mkdir(const char *path, mode_t mode)
{
    if (!path)
        return -EINVAL;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_mkdirat(sqe, AT_FDCWD, path, mode);
    return TPC__IO_END(sqe);
}

int tpc_poll(int fd, short events)
{
    if (fd < 0)
        return -EBADF;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_poll_add(sqe, fd, (unsigned)(unsigned short)events);
    return TPC__IO_END(sqe);
}

/* ---- O_DIRECT ---- */

#define TPC_DIO_DEFAULT 4096u

/* For a file whose filesystem does not report its alignment (tmpfs, or any before Linux 6.1):
 * whether the file takes O_DIRECT at all. The kernel refuses to set O_DIRECT on an open file
 * that cannot do direct I/O (procfs, sysfs ...), so set it and put the flags back. (Another
 * thread doing I/O through the same open file at that instant would see O_DIRECT.) */
static bool dio_supported(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return false;
    if (fl & O_DIRECT)
        return true; /* it was opened so */
    if (fcntl(fd, F_SETFL, fl | O_DIRECT) < 0)
        return false;
    fcntl(fd, F_SETFL, fl);
    return true;
}

int tpc_dio_align(int fd)
{
    struct statx st;
    int rc = tpc_statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_DIOALIGN, &st);
    if (rc < 0)
        return rc;
    if (!S_ISREG(st.stx_mode) && !S_ISBLK(st.stx_mode))
        return -EINVAL;                  /* pipes, sockets, directories, character devices */
    if (!(st.stx_mask & STATX_DIOALIGN)) /* the filesystem does not say */
        return dio_supported(fd) ? (int)TPC_DIO_DEFAULT : -EINVAL;
    uint32_t mem, off;
    tpc__statx_dioalign(&st, &mem, &off);
    if (!mem || !off)
        return -EINVAL; /* no direct I/O on this file */
    return (int)(mem > off ? mem : off);
}

void *tpc_alloc_aligned(size_t align, size_t size)
{
    if (!align)
        align = TPC_DIO_DEFAULT;
    if (align & (align - 1) || align < sizeof(void *)) {
        errno = EINVAL;
        return NULL;
    }
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned_alloc(align, rounded ? rounded : align);
}

/* ---- Registered buffers (the table is io/registry.c's) ---- */

static ssize_t rw_fixed(int fd, void *buf, size_t len, int64_t offset, int handle, bool writing)
{
    TPC__CHECK_SUSPEND();
    struct tpc__shard *s = tpc__self;
    unsigned idx;
    struct tpc__reg_slot *b = tpc__io_buf(tpc__io_of(s), handle, buf, len, &idx);
    if (offset < -1 || !b)
        return -EINVAL;
    unsigned char flags = 0;
    int f, rc = tpc__io_file(fd, &f, &flags);
    if (rc < 0)
        return rc;
    struct io_uring_sqe *sqe = tpc__sqe(s);
    if (!sqe)
        return -EAGAIN;
    if (writing)
        io_uring_prep_write_fixed(sqe, f, buf, tpc__io_len(len), io_off(offset), (int)idx);
    else
        io_uring_prep_read_fixed(sqe, f, buf, tpc__io_len(len), io_off(offset), (int)idx);
    sqe->flags |= flags;
    struct tpc__io io;
    b->inflight++; /* the slot cannot be given back meanwhile (b stays valid: no realloc) */
    rc = tpc__io_run(s, &io, sqe);
    b->inflight--;
    if (!writing)
        TPC__KERNEL_WROTE(buf, rc);
    return rc;
}

ssize_t tpc_read_fixed(int fd, void *buf, size_t len, int64_t offset, int buf_handle)
{
    return rw_fixed(fd, buf, len, offset, buf_handle, false);
}

ssize_t tpc_write_fixed(int fd, const void *buf, size_t len, int64_t offset, int buf_handle)
{
    return rw_fixed(fd, (void *)buf, len, offset, buf_handle, true);
}

/* ---- The layer's hooks (core/layer.h) ---- */

static int io_runtime_init(struct tpc_runtime *rt, const tpc_config *c)
{
    return tpc__pool_init(rt, c->blocking_threads, c->blocking_queue);
}

static int io_shard_init(struct tpc__shard *s, void *state)
{
    struct tpc__io_shard *io = state;
    s->blocking = tpc_blocking; /* the epoll backend's way to files (core/epoll.c) */
    if (s->ep) {
        io->has_ftruncate = true; /* the blocking pool does it */
    } else {
        struct io_uring_probe *probe = io_uring_get_probe_ring(&s->ring);
        io->has_ftruncate = probe && io_uring_opcode_supported(probe, TPC__OP_FTRUNCATE);
        if (probe)
            io_uring_free_probe(probe);
    }
    io->bufs.free_head = io->files.free_head = io->bufs.free_tail = io->files.free_tail = -1;
    tpc__list_init(&io->pending);
    tpc__list_init(&io->watches);
    return tpc__iowq_setup(s);
}

static void io_shard_fini(struct tpc__shard *s, void *state)
{
    (void)s;
    tpc__pending_fini(state);
    tpc__registry_fini(state);
}

static bool io_poll(struct tpc__shard *s, void *state)
{
    bool watches = tpc__watch_poll(s, state);
    return tpc__pending_poll(s, state) || watches;
}

const struct tpc__layer tpc__io_layer = {
    .name = "io",
    .state_size = sizeof(struct tpc__io_shard),
    .runtime_init = io_runtime_init,
    .runtime_fini = tpc__pool_fini,
    .shard_init = io_shard_init,
    .shard_fini = io_shard_fini,
    .poll = io_poll,
    .gauges = tpc__pool_gauges,
};

int tpc_metrics_write(int fd, int format) /* include/tpc/metrics.h; formatted by core/metrics.c */
{
    TPC__CHECK_SUSPEND();
    ssize_t need = tpc_metrics_format(NULL, 0, format);
    if (need < 0)
        return (int)need;
    for (;;) { /* it may grow between the two passes */
        size_t cap = (size_t)need + 4096;
        char *buf = malloc(cap);
        if (!buf)
            return -ENOMEM;
        need = tpc_metrics_format(buf, cap, format);
        if (need >= 0 && (size_t)need < cap) {
            ssize_t w = tpc_write_full(fd, buf, (size_t)need, -1);
            free(buf);
            return w < 0 ? (int)w : 0;
        }
        free(buf);
        if (need < 0)
            return (int)need;
    }
}
