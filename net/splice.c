/* Transfers (include/tpc/net.h): splice, forwarding one direction of a proxied connection, and
 * file-to-socket sends through a pipe the kernel moves pages into and out of. Each transfer takes a
 * pipe from a small per-shard cache and returns it empty; a pipe left holding data after an error
 * is closed instead, so no fiber ever sees another's bytes. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "internal.h"

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

static int pipe_get(struct tpc__shard *sh, int p[2])
{
    struct tpc__net_shard *s = tpc__net_of(sh);
    if (s->npipes) {
        s->npipes--;
        p[0] = s->pipes[s->npipes][0];
        p[1] = s->pipes[s->npipes][1];
        return 0;
    }
    /* On epoll the backend makes a splice's descriptors non-blocking for the call: these are
     * made so once. */
    return pipe2(p, O_CLOEXEC | (sh->ep ? O_NONBLOCK : 0)) == 0 ? 0 : -errno;
}

static void pipe_put(struct tpc__shard *sh, int p[2], bool empty)
{
    struct tpc__net_shard *s = tpc__net_of(sh);
    if (empty && s->npipes < TPC__PIPE_CACHE) {
        s->pipes[s->npipes][0] = p[0];
        s->pipes[s->npipes][1] = p[1];
        s->npipes++;
        return;
    }
    close(p[0]);
    close(p[1]);
}

void tpc__net_shard_fini(struct tpc__shard *sh, void *state)
{
    (void)sh;
    struct tpc__net_shard *s = state;
    for (unsigned i = 0; i < s->nrelay_pools; i++) /* every relay has ended: the loop waited */
        tpc_bufpool_destroy(s->relay_pools[i]);
    s->nrelay_pools = 0;
    free(s->free_bgids);
    s->free_bgids = NULL;
    s->nfree_bgids = s->cap_free_bgids = 0;
    free(s->fwd_scratch);
    s->fwd_scratch = NULL;

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

/* ---- Forwarding one direction of a proxied connection (tpc_fwd). ----
 * It waits for the source to be readable before it takes anything (an idle direction holds no
 * buffer, pipe or kernel worker), then, without suspending in between, reads what is there into
 * the shard's scratch buffer and writes what the destination takes at once, with plain
 * non-blocking syscalls on the shard. Only bytes the destination did not take are copied into
 * a buffer of the direction's own (the scratch is shared by the shard's fibers), and the call
 * suspends to deliver them. So nothing taken from the source is lost, whatever ends a call. */
#define FWD_CHUNK (64 * 1024)

int tpc_fwd_init(tpc_fwd *f, int from, int to)
{
    if (!f)
        return -EINVAL;
    if (from < 0 || to < 0)
        return -EBADF;
    *f = (tpc_fwd){.from = from, .to = to};
    return 0;
}

size_t tpc_fwd_held(const tpc_fwd *f)
{
    return f ? f->held_len : 0;
}

void tpc_fwd_destroy(tpc_fwd *f)
{
    if (!f)
        return;
    free(f->held);
    f->held = NULL;
    f->held_off = f->held_len = 0;
}

/* Delivers the held bytes (suspending while `to` is full); adds what went to *moved. */
static int fwd_flush(tpc_fwd *f, size_t *moved)
{
    while (f->held_len) {
        ssize_t n = tpc_send(f->to, f->held + f->held_off, f->held_len, 0);
        if (n < 0)
            return (int)n;
        f->held_off += (size_t)n;
        f->held_len -= (size_t)n;
        f->out += (uint64_t)n;
        *moved += (size_t)n;
    }
    free(f->held);
    f->held = NULL;
    f->held_off = 0;
    return 0;
}

static char *fwd_scratch(struct tpc__shard *sh)
{
    struct tpc__net_shard *s = tpc__net_of(sh);
    if (!s->fwd_scratch)
        s->fwd_scratch = malloc(FWD_CHUNK);
    return s->fwd_scratch;
}

ssize_t tpc_forward(tpc_fwd *f, size_t max)
{
    TPC__CHECK_SUSPEND();
    if (!f)
        return -EINVAL;
    size_t moved = 0;
    int rc = fwd_flush(f, &moved);
    if (rc < 0 || moved || max == 0)
        return moved ? (ssize_t)moved : rc;
    if ((rc = tpc_poll(f->from, POLLIN)) < 0)
        return rc; /* nothing held: the source was idle */
    char *buf = fwd_scratch(tpc__self);
    if (!buf)
        return -ENOMEM;
    ssize_t n = recv(f->from, buf, max < FWD_CHUNK ? max : FWD_CHUNK, MSG_DONTWAIT);
    if (n <= 0) {
        if (n == 0)
            return 0; /* end of stream, nothing held */
        return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    f->in += (uint64_t)n;
    ssize_t w = send(f->to, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        w = -errno;
    else if (w < 0)
        w = 0;
    if (w > 0) {
        f->out += (uint64_t)w;
        moved = (size_t)w;
    }
    if (w < n) { /* keep the rest before anything can suspend */
        size_t rest = (size_t)(n - (w > 0 ? w : 0));
        if (!(f->held = malloc(rest)))
            return moved ? (ssize_t)moved : -ENOMEM; /* cannot happen silently: reported */
        memcpy(f->held, buf + (n - (ssize_t)rest), rest);
        f->held_len = rest;
        if (w < 0)
            return moved ? (ssize_t)moved : w; /* the destination failed: the bytes are held */
        rc = fwd_flush(f, &moved);
    }
    return moved ? (ssize_t)moved : rc;
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
