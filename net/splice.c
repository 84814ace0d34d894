/* Zero-copy transfers (include/tpc/net.h): splice, socket-to-socket forwarding and file-to-socket
 * sends, through a pipe the kernel moves pages into and out of. Each transfer takes a pipe from
 * a small per-shard cache and returns it empty; a pipe left holding data after an error is
 * closed instead, so no fiber ever sees another's bytes. */
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include "core/internal.h"

#define PIPE_CHUNK (64 * 1024) /* a default pipe's capacity */

ssize_t tpc_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len,
                   unsigned flags)
{
    if (flags & ~(unsigned)(SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE) || off_in < -1 ||
        off_out < -1)
        return -EINVAL;
    TPC__IO_BEGIN(sqe);
    io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, tpc__io_len(len), flags);
    return TPC__IO_END(sqe);
}

static int pipe_get(struct tpc__shard *s, int p[2])
{
    if (s->npipes) {
        s->npipes--;
        p[0] = s->pipes[s->npipes][0];
        p[1] = s->pipes[s->npipes][1];
        return 0;
    }
    return pipe2(p, O_CLOEXEC) == 0 ? 0 : -errno;
}

static void pipe_put(struct tpc__shard *s, int p[2], bool empty)
{
    if (empty && s->npipes < TPC__PIPE_CACHE) {
        s->pipes[s->npipes][0] = p[0];
        s->pipes[s->npipes][1] = p[1];
        s->npipes++;
        return;
    }
    close(p[0]);
    close(p[1]);
}

void tpc__pipes_fini(struct tpc__shard *s)
{
    while (s->npipes) {
        s->npipes--;
        close(s->pipes[s->npipes][0]);
        close(s->pipes[s->npipes][1]);
    }
}

/* Moves all n bytes in the pipe to fd_out. Returns 0 or a negative errno. */
static int drain(int p[2], int fd_out, size_t n, size_t *moved)
{
    while (*moved < n) {
        ssize_t m = tpc_splice(p[0], -1, fd_out, -1, n - *moved, SPLICE_F_MOVE);
        if (m <= 0)
            return m < 0 ? (int)m : -EPIPE;
        *moved += (size_t)m;
    }
    return 0;
}

ssize_t tpc_forward(int from, int to, size_t len)
{
    TPC__CHECK_SUSPEND();
    if (from < 0 || to < 0)
        return -EBADF;
    if (len == 0)
        return 0;
    if (len > PIPE_CHUNK)
        len = PIPE_CHUNK;
    struct tpc__shard *s = tpc__self;
    int p[2];
    int rc = pipe_get(s, p);
    if (rc < 0)
        return rc;
    ssize_t n;
    do { /* wait for data first: a splice from an empty socket would hold a kernel worker */
        if ((rc = tpc_poll(from, POLLIN)) < 0) {
            pipe_put(s, p, true);
            return rc;
        }
        n = tpc_splice(from, -1, p[1], -1, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n == -EAGAIN); /* readable, yet nothing to take (a wake-up without data) */
    if (n <= 0) {
        pipe_put(s, p, true);
        return n;
    }
    size_t moved = 0;
    rc = drain(p, to, (size_t)n, &moved);
    pipe_put(s, p, rc == 0);
    return rc < 0 ? rc : n;
}

ssize_t tpc_sendfile(int sock, int file, int64_t *offset, size_t len)
{
    TPC__CHECK_SUSPEND();
    if (sock < 0 || file < 0)
        return -EBADF;
    if (offset && *offset < 0)
        return -EINVAL;
    struct tpc__shard *s = tpc__self;
    int p[2];
    int rc = pipe_get(s, p);
    if (rc < 0)
        return rc;
    size_t total = 0;
    /* Explicit positions even for the file's own one, so that it moves by what was sent, not
     * by what went into the pipe; a file without positions (a pipe) reads as it comes. */
    int64_t off = offset ? *offset : lseek(file, 0, SEEK_CUR);
    while (total < len) {
        size_t chunk = len - total < PIPE_CHUNK ? len - total : PIPE_CHUNK;
        ssize_t n = tpc_splice(file, off, p[1], -1, chunk, SPLICE_F_MOVE);
        if (n <= 0) {
            rc = (int)n; /* 0: end of file */
            break;
        }
        size_t moved = 0;
        rc = drain(p, sock, (size_t)n, &moved);
        total += moved;
        if (off >= 0)
            off += (int64_t)moved;
        if (rc < 0)
            break;
    }
    pipe_put(s, p, rc >= 0);
    if (offset)
        *offset = off;
    else if (off >= 0)
        lseek(file, off, SEEK_SET);
    return total ? (ssize_t)total : rc;
}
