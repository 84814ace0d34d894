/* The epoll backend: what a shard runs when it cannot have an io_uring (docs/design.md,
 * "Backends").
 *
 * The seam is the SQE. Every operation in the runtime is prepared as a `struct io_uring_sqe`
 * whose user_data is a `struct tpc__op`; on an epoll shard tpc__sqe hands out SQEs from a
 * private array instead of the ring, so no caller changes, and this file carries each one out:
 *   - sockets, pipes, eventfd, signalfd: a non-blocking attempt (MSG_DONTWAIT, RWF_NOWAIT, a
 *     listener made O_NONBLOCK), and on EAGAIN a wait for readiness. Descriptors are added to
 *     the shard's epoll set edge-triggered for reading and writing at the first wait (again at
 *     each first wait: EEXIST is cheap, and a descriptor closed and reused behind our back is
 *     added afresh; only tpc_server_start's connections stay, until tpc_close: keep); an edge
 *     retries every operation waiting on that descriptor;
 *   - regular files and path calls (open, stat, sync...): the blocking pool, through the hook
 *     the io layer leaves in s->blocking (a regular file read tries RWF_NOWAIT first);
 *   - provided-buffer receives take a buffer from the pool's ring as the kernel would.
 * A fiber's operation (tpc__ep_run) is tried at once in the fiber and waits on its own stack;
 * an operation queued by an object (an acceptor, a receive stream, a watch, a relay's send, a
 * bounded write) gets a heap record and completes, as on io_uring, from the loop's I/O phase.
 * A cancel unlinks the waiting record before the call returns, so nothing touches the caller's
 * memory afterwards; an operation on the blocking pool is waited for, as io_uring's would be. */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include "epoll.h"
#include "uring.h"

#define EP_EVENTS    64
#define EP_CHUNK     1024    /* descriptors per chunk of the table */
#define EP_CHUNKS    1024    /* so descriptors below 2^20, Linux's default fs.nr_open */
#define EP_EAGER_MAX 64      /* operations a fiber completes at once before it yields */
#define EP_LATER_NS  1000000 /* how often operations with nothing to poll for are tried again */

enum { DIR_RD, DIR_WR, DIR_ANY };
enum { RUN_DONE, RUN_WAIT, RUN_POOL, RUN_LATER };

struct ep_op {
    tpc_list node;           /* in its descriptor's queue, or the retry list */
    struct ep_op *hnext;     /* a loop operation: in the table by op (for a cancel) */
    struct io_uring_sqe sqe; /* the operation, copied */
    struct tpc__op *op;      /* told the result (loop operations); NULL: nobody */
    struct tpc__io *io;      /* a fiber's operation (on its stack), else NULL */
    tpc_fiber *pool_fiber;   /* runs it on the blocking pool */
    int fd;
    int wfd;      /* the descriptor it waits on (a splice: either side) */
    int saved_fl; /* a connect: the socket's status flags to put back, -1: none */
    int res;
    unsigned cflags;
    uint8_t dir;
    bool waiting, done;
    bool later;     /* this attempt found nothing to poll for: try again in a while */
    bool drained;   /* a receive got less than it asked for: nothing was left */
    bool reconnect; /* a connect found the listener's backlog full: connect() again */
    bool want_pool; /* a fiber's operation found it needs a helper: the fiber calls it */
    bool fd_held;   /* fd is the pool job's own duplicate of orig_fd (fd_hold) */
    int orig_fd;
    uint32_t moved; /* a send or receive with MSG_WAITALL: the bytes moved so far */
};

struct ep_fd {
    tpc_list q[3]; /* waiting to read, to write, for either (a poll) */
    /* A read found nothing (EAGAIN) and no edge for reading has come since: the next read
     * waits without trying (the edge that data brings will retry it). Cleared by such an edge,
     * and when the descriptor is added to the epoll set afresh (a new file under that
     * number: its add reports data that is there already). */
    bool rd_dry;
    /* A connection this shard accepted stays in the epoll set between waits (keep), once added
     * (added), as long as tpc_close has not closed its number since (keep_gen: closes_of). */
    bool keep, added;
    bool stream; /* kept, and a TCP socket: a short read leaves it dry (sock_io, step) */
    bool hup;    /* kept, and its end of stream, an error or urgent data came: never dry again */
    uint32_t keep_gen;
    ino_t ino; /* kept: its socket's inode */
};

struct ep_cqe {
    struct tpc__op *op;
    int res;
    unsigned flags;
};

struct ep_bufring {
    struct io_uring_buf_ring *br;
    unsigned mask;
    uint16_t head;
};

struct tpc__ep {
    int epfd;
    struct io_uring_sqe *sq;
    unsigned nsq, capsq;
    struct ep_fd *fds[EP_CHUNKS];
    tpc_list again; /* edge-triggered: operations that must be tried again before a wait */
    tpc_list later; /* operations with nothing to poll for, tried again every EP_LATER_NS */
    uint64_t later_at;
    struct ep_cqe *cq;
    unsigned ncq, capcq;
    struct ep_bufring *brs; /* by group id */
    unsigned nbrs;
    unsigned eager;
    unsigned nwaiting;   /* loop operations waiting or on the pool */
    struct ep_op **byop; /* loop operations by their op (a chained hash table) */
    unsigned nbyop, mask;
    int npeeked;  /* events in ev taken while the loop spun (tpc__ep_peek), not yet handled */
    bool skipped; /* the last tpc__ep_poll left epoll alone (it had nothing to run) */
    struct epoll_event ev[EP_EVENTS];
};

/* ---- Descriptors ---- */

/* The descriptors the table covers: an operation on one numbered at or above (possible only
 * where fs.nr_open was raised past its default) fails with -EMFILE. Lowered by tests. */
static unsigned fd_limit = EP_CHUNK * EP_CHUNKS;

void tpc__ep_set_fd_limit(unsigned n)
{
    fd_limit = n && n < EP_CHUNK * EP_CHUNKS ? n : EP_CHUNK * EP_CHUNKS;
}

/* tpc_close's count of closes per descriptor number, for the whole process (any thread may
 * close), in chunks made when a shard first keeps a number of theirs (never freed). A wait on a
 * kept descriptor skips the epoll_ctl that an add costs only while its number's count is what
 * it was when it was accepted: a number closed with tpc_close and taken by another file is
 * added afresh. */
static _Atomic(_Atomic uint32_t *) closes[EP_CHUNKS];

static _Atomic uint32_t *closes_chunk(unsigned c, bool make)
{
    _Atomic uint32_t *p = atomic_load_explicit(&closes[c], memory_order_acquire);
    if (p || !make)
        return p;
    _Atomic uint32_t *n = calloc(EP_CHUNK, sizeof(*n)), *none = NULL;
    if (n && !atomic_compare_exchange_strong(&closes[c], &none, n)) {
        free(n); /* another shard made it first */
        return none;
    }
    return n;
}

static uint32_t closes_of(int fd)
{
    _Atomic uint32_t *p = closes_chunk((unsigned)fd / EP_CHUNK, false);
    return p ? atomic_load_explicit(&p[fd % EP_CHUNK], memory_order_acquire) : 0;
}

void tpc__fd_closing(int fd)
{
    if (fd < 0 || fd >= EP_CHUNK * EP_CHUNKS)
        return;
    _Atomic uint32_t *p = closes_chunk((unsigned)fd / EP_CHUNK, false);
    if (p) /* before the close: whoever gets the number next sees the count moved */
        atomic_fetch_add_explicit(&p[fd % EP_CHUNK], 1, memory_order_release);
}

static struct ep_fd *fd_of(struct tpc__ep *e, int fd)
{
    if (fd < 0 || (unsigned)fd >= fd_limit)
        return NULL;
    struct ep_fd **c = &e->fds[fd / EP_CHUNK];
    if (!*c) {
        *c = malloc(EP_CHUNK * sizeof(**c));
        if (!*c)
            return NULL;
        for (unsigned i = 0; i < EP_CHUNK; i++) {
            (*c)[i] = (struct ep_fd){.rd_dry = false};
            for (int d = 0; d < 3; d++)
                tpc__list_init(&(*c)[i].q[d]);
        }
    }
    return &(*c)[fd % EP_CHUNK];
}

static bool fd_idle(const struct ep_fd *f)
{
    return tpc__list_empty(&f->q[0]) && tpc__list_empty(&f->q[1]) && tpc__list_empty(&f->q[2]);
}

/* Queues o on its descriptor, adding the descriptor to the epoll set if nothing waited on it.
 * -EPERM: the descriptor cannot be polled (a regular file, a directory). */
static int fd_wait(struct tpc__ep *e, struct ep_op *o, int known)
{
    struct ep_fd *f = fd_of(e, o->wfd);
    if (!f)
        return o->wfd < 0 ? -EBADF : (unsigned)o->wfd >= fd_limit ? -EMFILE : -ENOMEM;
    if (fd_idle(f) && o->wfd != known && !(f->added && f->keep_gen == closes_of(o->wfd))) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI |
                                           EPOLLET, /* PRI: tpc_poll */
                                 .data.fd = o->wfd};
        if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, o->wfd, &ev) == 0)
            f->rd_dry = false;
        else if (errno != EEXIST)
            return -errno;
        f->added = f->keep && f->keep_gen == closes_of(o->wfd);
        f->keep = f->added;
    }
    tpc__list_push(&f->q[o->dir], &o->node);
    o->waiting = true;
    return 0;
}

static void unwait(struct tpc__ep *e, struct ep_op *o)
{
    if (!o->waiting)
        return;
    tpc__list_remove(&o->node);
    o->waiting = false;
    if (!o->io)
        e->nwaiting--;
}

/* ---- Loop operations by their op, for a cancel (which names only the op) ---- */

static unsigned op_hash(const struct tpc__ep *e, const struct tpc__op *op)
{
    uint64_t h = (uint64_t)(uintptr_t)op * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> 32) & e->mask;
}

/* Grows the table to keep chains short (without memory, the chains grow instead). */
static void byop_grow(struct tpc__ep *e)
{
    unsigned n = e->mask ? 2 * (e->mask + 1) : 64;
    struct ep_op **t = calloc(n, sizeof(*t));
    if (!t)
        return;
    struct ep_op **old = e->byop;
    unsigned oldn = e->mask ? e->mask + 1 : 0;
    e->byop = t;
    e->mask = n - 1;
    for (unsigned i = 0; i < oldn; i++)
        for (struct ep_op *o = old[i], *next; o; o = next) {
            next = o->hnext;
            unsigned h = op_hash(e, o->op);
            o->hnext = t[h];
            t[h] = o;
        }
    free(old);
}

static void byop_add(struct tpc__ep *e, struct ep_op *o)
{
    if (!o->op)
        return;
    if (e->nbyop >= 2 * (e->mask + 1) || !e->byop)
        byop_grow(e);
    if (!e->byop) {
        o->op = NULL; /* out of memory: it cannot be cancelled, but it completes */
        return;
    }
    unsigned h = op_hash(e, o->op);
    o->hnext = e->byop[h];
    e->byop[h] = o;
    e->nbyop++;
}

static void byop_del(struct tpc__ep *e, struct ep_op *o)
{
    if (!o->op || !e->byop)
        return;
    for (struct ep_op **p = &e->byop[op_hash(e, o->op)]; *p; p = &(*p)->hnext)
        if (*p == o) {
            *p = o->hnext;
            e->nbyop--;
            return;
        }
}

static struct ep_op *byop_find(struct tpc__ep *e, const struct tpc__op *op)
{
    if (!op || !e->byop)
        return NULL;
    for (struct ep_op *o = e->byop[op_hash(e, op)]; o; o = o->hnext)
        if (o->op == op)
            return o;
    return NULL;
}

/* ---- Carrying out one operation, without blocking ---- */

static struct ep_bufring *bufring(struct tpc__ep *e, unsigned bgid)
{
    return bgid < e->nbrs && e->brs[bgid].br ? &e->brs[bgid] : NULL;
}

/* A receive into a provided buffer: the next one in the group's ring, taken only if data came. */
static int recv_select(struct tpc__ep *e, struct ep_op *o)
{
    struct ep_bufring *r = bufring(e, o->sqe.buf_group);
    if (!r)
        return -ENOBUFS;
    uint16_t tail = __atomic_load_n(&r->br->tail, __ATOMIC_ACQUIRE);
    if (tail == r->head)
        return -ENOBUFS;
    struct io_uring_buf *b = &r->br->bufs[r->head & r->mask];
    size_t len = o->sqe.len && o->sqe.len < b->len ? o->sqe.len : b->len;
    ssize_t n = recv(o->fd, (void *)(uintptr_t)b->addr, len, (int)o->sqe.msg_flags | MSG_DONTWAIT);
    if (n <= 0)
        return n < 0 ? -errno : 0;
    o->drained = (size_t)n < len && !(o->sqe.msg_flags & MSG_PEEK);
    r->head++;
    o->cflags = IORING_CQE_F_BUFFER | ((unsigned)b->bid << IORING_CQE_BUFFER_SHIFT);
    return (int)n;
}

static int nb_take(int fd, int *saved);
static void nb_put(int fd, int saved);

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t t = 0;
    for (int i = 0; i < cnt; i++)
        t += iov[i].iov_len;
    return t;
}

/* A read or write at an offset came back short on a regular file that goes on past where it
 * stopped (RWF_NOWAIT did what needed no waiting): not the end of the file. */
static bool short_of_file(int fd, off_t at)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && at < st.st_size;
}

/* A read or write of a descriptor at sqe.off (-1: its position), RWF_NOWAIT; EOPNOTSUPP
 * (a descriptor without non-blocking reads and writes: a tty, a character device) falls back
 * to a plain call with the descriptor made non-blocking for it (a tty's write would otherwise
 * wait for a reader however ready poll said it was). */
static int rw_nowait(struct ep_op *o, bool write, const struct iovec *iov, int cnt)
{
    off_t off = (off_t)o->sqe.off;
    int status = fcntl(o->fd, F_GETFL);
    if (status >= 0 && (status & O_DIRECT))
        return -EPERM; /* RWF_NOWAIT does not keep it off the device: the pool */
    ssize_t n = write ? pwritev2(o->fd, iov, cnt, off, RWF_NOWAIT)
                      : preadv2(o->fd, iov, cnt, off, RWF_NOWAIT);
    if (n < 0 && errno == ESPIPE && off == 0) { /* io_uring takes 0 for a stream: so do we */
        o->sqe.off = (uint64_t)-1;
        return rw_nowait(o, write, iov, cnt);
    }
    if (n >= 0 && off >= 0 && (size_t)n < iov_total(iov, cnt) && short_of_file(o->fd, off + n))
        return -EPERM; /* part of a file was cached: the pool reads it whole, as io_uring does */
    if (n >= 0)
        return (int)n;
    if (errno != EOPNOTSUPP)
        return -errno;
    struct stat st;
    if (fstat(o->fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
        return -EPERM; /* a file without RWF_NOWAIT: the pool */
    int fl, rc = nb_take(o->fd, &fl);
    if (rc < 0)
        return rc;
    n = write ? pwritev2(o->fd, iov, cnt, off, 0) : preadv2(o->fd, iov, cnt, off, 0);
    rc = n < 0 ? -errno : (int)n;
    nb_put(o->fd, fl);
    return rc;
}

static int rw(struct ep_op *o)
{
    const struct io_uring_sqe *q = &o->sqe;
    bool vec = q->opcode == IORING_OP_READV || q->opcode == IORING_OP_WRITEV;
    bool write = q->opcode == IORING_OP_WRITE || q->opcode == IORING_OP_WRITEV ||
                 q->opcode == IORING_OP_WRITE_FIXED;
    struct iovec one = {.iov_base = (void *)(uintptr_t)q->addr, .iov_len = q->len};
    o->dir = write ? DIR_WR : DIR_RD;
    if (vec)
        return rw_nowait(o, write, (const struct iovec *)(uintptr_t)q->addr, (int)q->len);
    return rw_nowait(o, write, &one, 1);
}

/* A listener is made non-blocking once, so that an accept after an edge never blocks the
 * shard (another shard may take the connection first). */
static int accept_one(struct ep_op *o)
{
    if (o->saved_fl < 0) { /* once per operation (a multishot accept's lasts) */
        int fl = fcntl(o->fd, F_GETFL);
        if (fl >= 0 && !(fl & O_NONBLOCK))
            fcntl(o->fd, F_SETFL, fl | O_NONBLOCK);
        o->saved_fl = 0;
    }
    socklen_t *len = (socklen_t *)(uintptr_t)o->sqe.off;
    int fd =
        accept4(o->fd, (struct sockaddr *)(uintptr_t)o->sqe.addr, len, (int)o->sqe.accept_flags);
    return fd < 0 ? -errno : fd;
}

/* A connect: the socket is non-blocking for the call and put back as it was after. A Unix
 * socket whose listener's backlog is full fails with EAGAIN and nothing to poll for (room in
 * the backlog wakes only blocked connects): it connects again every EP_LATER_NS, as io_uring's
 * connect waits for room. */
static int connect_step(struct ep_op *o)
{
    o->dir = DIR_WR;
    if (o->saved_fl < 0) {
        int fl = fcntl(o->fd, F_GETFL);
        if (fl < 0)
            return -errno;
        if (!(fl & O_NONBLOCK) && fcntl(o->fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return -errno;
        o->saved_fl = fl;
    } else if (!o->reconnect) {
        struct pollfd p = {.fd = o->fd, .events = POLLOUT};
        if (poll(&p, 1, 0) <= 0)
            return -EAGAIN;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(o->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return -errno;
        return -err;
    }
    if (connect(o->fd, (const struct sockaddr *)(uintptr_t)o->sqe.addr, (socklen_t)o->sqe.off) == 0)
        return 0;
    if (errno == EAGAIN) {
        o->reconnect = o->later = true;
        return -EAGAIN;
    }
    o->reconnect = false;
    return errno == EINPROGRESS ? -EAGAIN : -errno;
}

static void connect_restore(struct ep_op *o)
{
    if (o->saved_fl >= 0 && !(o->saved_fl & O_NONBLOCK))
        fcntl(o->fd, F_SETFL, o->saved_fl);
    o->saved_fl = -1;
}

static int poll_now(struct ep_op *o)
{
    struct pollfd p = {.fd = o->fd, .events = (short)o->sqe.poll32_events};
    o->dir = DIR_ANY;
    int n = poll(&p, 1, 0);
    if (n < 0)
        return -errno;
    return n ? (p.revents & (POLLNVAL)) ? -EBADF : p.revents : -EAGAIN;
}

/* Makes fd non-blocking for one call that would otherwise block the shard (a splice reads a
 * socket as its file's O_NONBLOCK says, whatever SPLICE_F_NONBLOCK; a tty write waits for room):
 * *saved gets the flags to put back with nb_put, -1 when there is nothing to put back. */
static int nb_take(int fd, int *saved)
{
    *saved = -1;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (fl & O_NONBLOCK)
        return 0;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    *saved = fl;
    return 0;
}

static void nb_put(int fd, int saved)
{
    if (saved >= 0)
        fcntl(fd, F_SETFL, saved);
}

/* A splice, both sides non-blocking for the call (put back after: the caller sees its
 * descriptors as they were); it waits on whichever side is not ready. The destination is
 * checked for room first, so that a full one is waited for rather than the source. */
static int splice_now(struct ep_op *o)
{
    const struct io_uring_sqe *q = &o->sqe;
    int in = q->splice_fd_in, out = o->fd;
    struct pollfd p[2] = {{.fd = in, .events = POLLIN}, {.fd = out, .events = POLLOUT}};
    if (poll(p, 2, 0) < 0)
        return -errno;
    if (!(p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
        o->dir = DIR_WR;
        return -EAGAIN;
    }
    int fl_in, fl_out, rc = nb_take(in, &fl_in);
    if (rc < 0)
        return rc;
    if ((rc = nb_take(out, &fl_out)) < 0) {
        nb_put(in, fl_in);
        return rc;
    }
    int64_t oi = (int64_t)q->splice_off_in, oo = (int64_t)q->off;
    loff_t li = oi, lo = oo;
    ssize_t n = splice(in, oi < 0 ? NULL : &li, out, oo < 0 ? NULL : &lo, q->len,
                       q->splice_flags | SPLICE_F_NONBLOCK);
    int err = errno;
    nb_put(out, fl_out);
    nb_put(in, fl_in);
    if (n >= 0)
        return (int)n;
    if (err != EAGAIN)
        return -err;
    if (poll(&p[1], 1, 0) == 0) { /* the destination filled meanwhile: wait for room */
        o->dir = DIR_WR;
        return -EAGAIN;
    }
    o->wfd = in; /* waits for data on the source */
    o->dir = DIR_RD;
    return -EAGAIN;
}

/* A connection that tpc_server_start owns (tpc__ep_keep): kept in the epoll set from its first
 * wait on (fd_wait). On a
 * TCP connection (stream), a receive that got less than it asked for emptied the socket (TCP
 * copies what is queued until the length is reached; data that lands meanwhile brings an edge
 * when the call lets go of the socket), so the next receive waits for an edge without the
 * system call that would say EAGAIN, as the raw epoll loop waits for EPOLLIN. Not Unix stream
 * sockets, whose receives stop early at passed descriptors and at another writer's
 * credentials, nor after an end of stream, an error or urgent data (a receive stops at the
 * urgent mark), whose edge may have come before. */
void tpc__ep_keep(int fd)
{
    struct tpc__shard *s = tpc__self;
    struct ep_fd *f = s && s->ep && fd >= 0 ? fd_of(s->ep, fd) : NULL;
    if (!f || !closes_chunk((unsigned)fd / EP_CHUNK, true))
        return;
    struct stat st; /* (a number closed with close(2) and taken again: another inode) */
    if (fstat(fd, &st) < 0)
        return;
    if (f->keep && f->keep_gen == closes_of(fd) && f->ino == st.st_ino)
        return; /* kept already, the same file (a connection resumed after a park) */
    int type = 0;
    socklen_t tl = sizeof(type);
    f->keep = true;
    f->ino = st.st_ino;
    f->stream = getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &type, &tl) == 0 && type == IPPROTO_TCP;
    f->hup = false;
    f->added = f->rd_dry = false; /* a new file under the number */
    f->keep_gen = closes_of(fd);
}

/* The connection is the program's now (its handler returned TPC_CONN_KEEP): it may close it
 * with close(2), which tpc_close's count does not see, so nothing is assumed of the number
 * from here on (a file that gets it next is added to the epoll set as any other). */
void tpc__ep_unkeep(int fd)
{
    struct tpc__shard *s = tpc__self;
    struct ep_fd *f = s && s->ep && fd >= 0 ? fd_of(s->ep, fd) : NULL;
    if (f)
        f->keep = f->added = f->rd_dry = f->hup = false;
}

/* An operation on a descriptor beyond the table (fd_limit) fails before it is tried. */
static bool beyond_table(const struct ep_op *o)
{
    const struct io_uring_sqe *q = &o->sqe;
    return (o->fd >= 0 && (unsigned)o->fd >= fd_limit) ||
           (q->opcode == IORING_OP_SPLICE && (int)q->splice_fd_in >= 0 &&
            (unsigned)q->splice_fd_in >= fd_limit);
}

/* A socket's send or receive (MSG_DONTWAIT); a receive into a provided buffer takes one. With
 * the caller's MSG_WAITALL, as io_uring: a short one is tried again at once (the end of stream
 * or an error may wait behind the bytes, with no edge to come for them), waits for the rest
 * only when the socket has nothing, and the result counts every byte moved (an error or the
 * end of stream after some: their count). */
static int sock_io(struct tpc__ep *e, struct ep_op *o)
{
    const struct io_uring_sqe *q = &o->sqe;
    char *buf = (char *)(uintptr_t)q->addr + o->moved;
    int flags = (int)q->msg_flags | MSG_DONTWAIT;
    size_t len = q->len - o->moved;
    ssize_t r;
    switch (q->opcode) {
    case IORING_OP_RECV:
        if (q->flags & IOSQE_BUFFER_SELECT)
            return recv_select(e, o);
        r = recv(o->fd, buf, len, flags);
        o->drained = r > 0 && (size_t)r < len && !(flags & MSG_PEEK);
        goto all;
    case IORING_OP_SEND:
        o->dir = DIR_WR;
        r = send(o->fd, buf, len, flags);
    all:
        if (!(q->msg_flags & MSG_WAITALL))
            break;
        while (r > 0 && (size_t)r < len) {
            o->moved += (uint32_t)r;
            buf += r;
            len -= (size_t)r;
            r = q->opcode == IORING_OP_RECV ? recv(o->fd, buf, len, flags)
                                            : send(o->fd, buf, len, flags);
        }
        o->drained = false; /* (a receive that found nothing says so: EAGAIN) */
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -EAGAIN; /* the rest when the socket is ready */
        if (o->moved && r < 0)
            return (int)o->moved;
        return r < 0 ? -errno : (int)(r + o->moved);
    case IORING_OP_SENDMSG:
        o->dir = DIR_WR;
        r = sendmsg(o->fd, (const struct msghdr *)(uintptr_t)q->addr, flags);
        break;
    default:
        r = recvmsg(o->fd, (struct msghdr *)(uintptr_t)q->addr, flags);
    }
    return r < 0 ? -errno : (int)r;
}

/* One non-blocking attempt. RUN_DONE with o->res, RUN_WAIT (o->dir says for what), or
 * RUN_POOL (only a helper thread can do it). */
static int attempt(struct tpc__ep *e, struct ep_op *o)
{
    const struct io_uring_sqe *q = &o->sqe;
    int r;
    o->cflags = 0;
    o->dir = DIR_RD;
    o->wfd = o->fd;
    o->later = o->drained = false;
    if (TPC_UNLIKELY(beyond_table(o))) {
        o->res = -EMFILE;
        return RUN_DONE;
    }
    switch (q->opcode) {
    case IORING_OP_NOP:
        r = 0;
        break;
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READV:
    case IORING_OP_WRITEV:
    case IORING_OP_READ_FIXED:
    case IORING_OP_WRITE_FIXED:
        r = rw(o);
        if (r == -EPERM)
            return RUN_POOL;
        break;
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
        r = sock_io(e, o);
        break;
    case IORING_OP_ACCEPT:
        r = accept_one(o);
        break;
    case IORING_OP_CONNECT:
        r = connect_step(o);
        break;
    case IORING_OP_POLL_ADD:
        r = poll_now(o);
        break;
    case IORING_OP_SPLICE:
        r = splice_now(o);
        break;
    default: /* path calls, syncs, allocation: a helper thread does them */
        return RUN_POOL;
    }
    if (r == -EAGAIN || r == -EWOULDBLOCK)
        return o->later ? RUN_LATER : RUN_WAIT;
    o->res = r;
    return RUN_DONE;
}

/* ---- The same on a helper thread, blocking (it touches only the record) ---- */

static long rw_blocking(int fd, const struct io_uring_sqe *q, const struct iovec *iov, int cnt)
{
    bool write = q->opcode == IORING_OP_WRITE || q->opcode == IORING_OP_WRITEV ||
                 q->opcode == IORING_OP_WRITE_FIXED;
    off_t off = (off_t)q->off;
    long r = write ? pwritev2(fd, iov, cnt, off, 0) : preadv2(fd, iov, cnt, off, 0);
    if (r < 0 && errno == ESPIPE && off == 0)
        r = write ? pwritev2(fd, iov, cnt, -1, 0) : preadv2(fd, iov, cnt, -1, 0);
    return r;
}

static long run_blocking(void *arg)
{
    struct ep_op *o = arg;
    const struct io_uring_sqe *q = &o->sqe;
    const char *path = (const char *)(uintptr_t)q->addr;
    struct iovec one = {.iov_base = (void *)(uintptr_t)q->addr, .iov_len = q->len};
    const struct iovec *iov = &one;
    int cnt = 1;
    long r;
    switch (q->opcode) {
    case IORING_OP_READV:
    case IORING_OP_WRITEV:
        iov = (const struct iovec *)(uintptr_t)q->addr;
        cnt = (int)q->len;
        /* fall through */
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READ_FIXED:
    case IORING_OP_WRITE_FIXED:
        r = rw_blocking(o->fd, q, iov, cnt);
        break;
    case IORING_OP_FSYNC:
        r = (q->fsync_flags & IORING_FSYNC_DATASYNC) ? fdatasync(o->fd) : fsync(o->fd);
        break;
    case IORING_OP_FALLOCATE:
        r = fallocate(o->fd, (int)q->len, (off_t)q->off, (off_t)q->addr);
        break;
    case TPC__OP_FTRUNCATE:
        r = ftruncate(o->fd, (off_t)q->off);
        break;
    case IORING_OP_OPENAT:
        r = openat(o->fd, path, (int)q->open_flags, (mode_t)q->len);
        break;
    case IORING_OP_STATX:
        r = statx(o->fd, path, (int)q->statx_flags, q->len, (struct statx *)(uintptr_t)q->off);
        break;
    case IORING_OP_UNLINKAT:
        r = unlinkat(o->fd, path, (int)q->unlink_flags);
        break;
    case IORING_OP_RENAMEAT:
        r = renameat2(o->fd, path, (int)q->len, (const char *)(uintptr_t)q->off, q->rename_flags);
        break;
    case IORING_OP_MKDIRAT:
        r = mkdirat(o->fd, path, (mode_t)q->len);
        break;
    default:
        return -EOPNOTSUPP;
    }
    return r < 0 ? -errno : r;
}

/* ---- Completions ---- */

static void cq_push(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    struct tpc__ep *e = s->ep;
    if (!op)
        return;
    if (e->ncq == e->capcq) {
        unsigned cap = e->capcq ? 2 * e->capcq : 64;
        struct ep_cqe *cq = realloc(e->cq, cap * sizeof(*cq));
        if (!cq) {
            fprintf(stderr, "libtpc: shard %u: out of memory for a completion\n", s->id);
            abort(); /* a lost completion would hang its owner forever */
        }
        e->cq = cq;
        e->capcq = cap;
    }
    e->cq[e->ncq++] = (struct ep_cqe){op, res, flags};
}

static bool multishot(const struct ep_op *o)
{
    return o->sqe.opcode == IORING_OP_ACCEPT && (o->sqe.ioprio & IORING_ACCEPT_MULTISHOT);
}

/* A loop operation's record is freed with its final completion. */
static void loop_done(struct tpc__shard *s, struct ep_op *o, int res, unsigned flags)
{
    if (o->sqe.opcode == IORING_OP_CONNECT)
        connect_restore(o);
    byop_del(s->ep, o);
    cq_push(s, o->op, res, flags);
    free(o);
}

/* A fiber's operation is done: its record is on the fiber's stack. */
static void fiber_done(struct ep_op *o)
{
    o->done = true;
    struct tpc__io *io = o->io;
    io->res = o->res;
    io->done = true;
    if (io->w.fiber && io->w.fiber->wait == &io->w)
        tpc__wake(&io->w, 0);
}

static int pool_fiber(void *arg);

/* A job for the blocking pool holds its own reference to the file, a duplicate of the
 * descriptor taken on the shard when the job is queued: the caller's number may be closed and
 * reused before a helper runs it (a bounded write returned at its deadline), and the job must
 * never touch the new file. io_uring holds a reference to the file the same way. At the
 * descriptor limit the duplicate fails: the operation fails with -EMFILE. */
static int fd_hold(struct ep_op *o)
{
    if (o->fd < 0 || o->fd_held) /* AT_FDCWD for a path call */
        return 0;
    int d = fcntl(o->fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return -errno;
    o->orig_fd = o->fd;
    o->fd = d;
    o->fd_held = true;
    return 0;
}

static void fd_let_go(struct ep_op *o)
{
    if (!o->fd_held)
        return;
    close(o->fd);
    o->fd = o->orig_fd;
    o->fd_held = false;
}

/* Runs o on the blocking pool from the calling fiber, holding its file. */
static int pool_run(struct tpc__shard *s, struct ep_op *o, long *r)
{
    if (!s->blocking)
        return -EOPNOTSUPP;
    int rc = fd_hold(o);
    if (rc < 0)
        return rc;
    rc = s->blocking(run_blocking, o, r);
    fd_let_go(o);
    return rc;
}

/* Runs o, which needs a helper thread: in its fiber's own call (tpc__ep_run), or, for a loop
 * operation, in a fiber started for it. False if it went to a fiber (it completes later). */
static bool to_pool(struct tpc__shard *s, struct ep_op *o)
{
    if (o->sqe.opcode == IORING_OP_POLL_ADD) { /* a regular file is always ready */
        o->res = (int)(o->sqe.poll32_events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM));
        return true;
    }
    if (o->io) {
        if (s->current != o->io->w.fiber && o->io->w.fiber) {
            o->want_pool = true; /* found in the loop: the fiber's call takes it up */
            return true;
        }
        long r = 0;
        int rc = pool_run(s, o, &r);
        o->res = rc < 0 ? rc : (int)r;
        return true;
    }
    tpc_fiber *f;
    int rc = fd_hold(o); /* now: the fiber runs after others, which may close the number */
    /* A stop does not cancel it, nor keep it from starting: as io_uring's, an operation in
     * flight is cancelled only by its owner (cancel_op), so a bounded commit queued on the pool
     * as the stop comes is still made. */
    if (rc == 0 && (rc = tpc__spawn_keep(pool_fiber, o, &f)) < 0)
        fd_let_go(o);
    if (rc < 0) {
        o->res = rc;
        return true;
    }
    o->pool_fiber = f;
    tpc_detach(f);
    s->ep->nwaiting++;
    return false;
}

/* Queues o to wait for its descriptor (`known`: one known to be in the epoll set). False if
 * it cannot wait (o->res says why, or it went to the pool). */
static bool to_wait(struct tpc__shard *s, struct ep_op *o, int known, int *how)
{
    int rc = fd_wait(s->ep, o, known);
    if (rc == 0) {
        if (!o->io)
            s->ep->nwaiting++;
        return true;
    }
    if (rc == -EPERM) { /* a regular file: never "ready" to epoll, only a helper can wait */
        *how = RUN_POOL;
        return false;
    }
    o->res = rc;
    *how = RUN_DONE;
    return false;
}

/* Queues o to be tried again in a while (RUN_LATER). */
static void wait_later(struct tpc__shard *s, struct ep_op *o)
{
    struct tpc__ep *e = s->ep;
    if (tpc__list_empty(&e->later))
        e->later_at = tpc__clock_ns() + EP_LATER_NS;
    tpc__list_push(&e->later, &o->node);
    o->waiting = true;
    if (!o->io)
        e->nwaiting++;
}

/* Tries o (not waiting) and, unless it waits again, ends it: a fiber's is handed back, a loop
 * operation's result queued for the loop's completions. A multishot accept takes what is
 * queued (edge-triggered: until EAGAIN), 16 at a time, the rest at the next turn. */
static bool reads(const struct ep_op *o)
{
    unsigned op = o->sqe.opcode;
    return op == IORING_OP_RECV || op == IORING_OP_RECVMSG || op == IORING_OP_READ ||
           op == IORING_OP_READV || op == IORING_OP_ACCEPT;
}

/* A send or receive the caller asked not to wait (MSG_DONTWAIT): -EAGAIN, as io_uring says. */
static bool dontwait(const struct ep_op *o)
{
    unsigned op = o->sqe.opcode;
    return (op == IORING_OP_RECV || op == IORING_OP_SEND || op == IORING_OP_RECVMSG ||
            op == IORING_OP_SENDMSG) &&
           (o->sqe.msg_flags & MSG_DONTWAIT);
}

static void step(struct tpc__shard *s, struct ep_op *o, int known)
{
    struct tpc__ep *e = s->ep;
    struct ep_fd *f = reads(o) ? fd_of(e, o->fd) : NULL;
    bool nowait = dontwait(o);
    for (int round = 0;; round++) {
        /* nothing to read: skip the system call that says so (unless the caller will not wait) */
        bool dry = f && f->rd_dry && !nowait;
        int how = RUN_WAIT;
        if (dry)
            o->dir = DIR_RD, o->wfd = o->fd, o->cflags = 0;
        else
            how = attempt(e, o);
        if (how == RUN_WAIT && nowait) { /* MSG_DONTWAIT: what moved, or -EAGAIN */
            o->res = o->moved ? (int)o->moved : -EAGAIN;
            how = RUN_DONE;
        }
        /* A kept stream socket that a receive drained stays in the epoll set, where data
         * that comes brings an edge: the next receive waits for it without trying. Not once
         * its end of stream or an error came (its edge may be gone: a receive would end at
         * once). */
        if (o->drained && f && f->keep && f->stream && !f->hup && f->keep_gen == closes_of(o->fd))
            f->rd_dry = true;
        if (how == RUN_LATER) {
            wait_later(s, o);
            return;
        }
        if (how == RUN_WAIT && to_wait(s, o, known, &how)) {
            if (f && !dry && o->dir == DIR_RD)
                f->rd_dry = true; /* after the add: data since then brings an edge */
            return;
        }
        if (how == RUN_POOL && !to_pool(s, o))
            return;
        if (o->io) {
            if (!o->want_pool)
                fiber_done(o);
            else if (o->io->w.fiber->wait == &o->io->w)
                tpc__wake(&o->io->w, 0);
            return;
        }
        if (!multishot(o) || o->res < 0)
            break;
        cq_push(s, o->op, o->res, IORING_CQE_F_MORE);
        if (round == 15) {
            tpc__list_push(&e->again, &o->node);
            o->waiting = true;
            e->nwaiting++;
            return;
        }
    }
    loop_done(s, o, o->res, o->cflags);
}

/* A loop operation that needs a helper thread runs in a fiber of its own. */
static int pool_fiber(void *arg)
{
    struct ep_op *o = arg;
    struct tpc__shard *s = tpc__self;
    long r = 0;
    int rc = s->blocking ? s->blocking(run_blocking, o, &r) : -EOPNOTSUPP;
    fd_let_go(o);
    s->ep->nwaiting--;
    o->pool_fiber = NULL;
    loop_done(s, o, rc < 0 ? rc : (int)r, 0);
    return 0;
}

/* ---- Cancel, retries, events ---- */

/* An IORING_OP_ASYNC_CANCEL of a loop operation: one waiting ends with -ECANCELED now; one on
 * the blocking pool is cancelled there (dropped if still queued) and ends when its helper is
 * done. */
static void cancel_op(struct tpc__shard *s, struct tpc__op *target)
{
    struct ep_op *o = byop_find(s->ep, target);
    if (!o)
        return;
    if (o->pool_fiber) {
        tpc_cancel(o->pool_fiber);
        return;
    }
    if (o->waiting) {
        unwait(s->ep, o);
        loop_done(s, o, -ECANCELED, 0);
    }
}

/* Tries every operation of queue q again (an edge on descriptor fd). */
static void retry(struct tpc__shard *s, tpc_list *q, int fd)
{
    if (tpc__list_empty(q))
        return;
    tpc_list todo = {q->next, q->prev};
    todo.next->prev = todo.prev->next = &todo;
    tpc__list_init(q);
    tpc_list *n;
    while ((n = tpc__list_first(&todo)) != NULL) {
        struct ep_op *o = tpc__container_of(n, struct ep_op, node);
        tpc__list_remove(n);
        o->waiting = false;
        if (!o->io)
            s->ep->nwaiting--;
        step(s, o, fd);
    }
}

static void on_events(struct tpc__shard *s, int n)
{
    struct tpc__ep *e = s->ep;
    for (int i = 0; i < n; i++) {
        int fd = e->ev[i].data.fd;
        uint32_t m = e->ev[i].events;
        if (fd == s->wake_fd) {
            uint64_t v;
            ssize_t r = read(fd, &v, sizeof(v));
            (void)r;
            s->n_wakeups++;
            continue;
        }
        struct ep_fd *f = fd_of(e, fd);
        if (!f)
            continue;
        if (m & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) {
            f->rd_dry = false;
            f->hup |= (m & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) != 0;
            retry(s, &f->q[DIR_RD], fd);
        }
        if (m & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            retry(s, &f->q[DIR_WR], fd);
        retry(s, &f->q[DIR_ANY], fd);
    }
}

/* Carries out the SQEs queued since the last time, in order. */
static void submit(struct tpc__shard *s)
{
    struct tpc__ep *e = s->ep;
    for (unsigned i = 0; i < e->nsq; i++) {
        const struct io_uring_sqe *q = &e->sq[i];
        struct tpc__op *op = (struct tpc__op *)(uintptr_t)q->user_data;
        if (q->opcode == IORING_OP_NOP && !op)
            continue; /* taken back by tpc__ep_run */
        s->n_io_submitted++;
        if (q->opcode == IORING_OP_ASYNC_CANCEL) {
            cancel_op(s, (struct tpc__op *)(uintptr_t)q->addr);
            cq_push(s, op, 0, 0);
            continue;
        }
        struct ep_op *o = malloc(sizeof(*o));
        if (!o || (q->flags & IOSQE_FIXED_FILE)) {
            free(o);
            cq_push(s, op, o ? -EOPNOTSUPP : -ENOMEM, 0);
            continue;
        }
        *o = (struct ep_op){.sqe = *q, .op = op, .fd = q->fd, .saved_fl = -1};
        tpc__list_init(&o->node);
        byop_add(e, o);
        step(s, o, -1);
    }
    e->nsq = 0;
}

static void retry_again(struct tpc__shard *s)
{
    retry(s, &s->ep->again, -1);
}

/* The operations waiting with nothing to poll for, once their time has come. */
static void retry_later(struct tpc__shard *s)
{
    struct tpc__ep *e = s->ep;
    if (TPC_LIKELY(tpc__list_empty(&e->later)) || tpc__clock_ns() < e->later_at)
        return;
    retry(s, &e->later, -1); /* those still waiting queue again, due EP_LATER_NS from now */
}

/* A sleep's timeout, cut to the next retry of the operations waiting without a descriptor. */
static int64_t later_timeout(struct tpc__ep *e, int64_t timeout)
{
    if (tpc__list_empty(&e->later))
        return timeout;
    int64_t left = (int64_t)(e->later_at - tpc__clock_ns());
    if (left < 1)
        left = 1;
    return timeout <= 0 || timeout > left ? left : timeout;
}

static void deliver(struct tpc__shard *s)
{
    struct tpc__ep *e = s->ep;
    for (unsigned i = 0; i < e->ncq; i++) { /* a completion may queue more: they run too */
        struct ep_cqe c = e->cq[i];
        s->n_io_completed++;
        c.op->complete(s, c.op, c.res, c.flags);
    }
    e->ncq = 0;
}

/* ---- The loop's side ---- */

bool tpc__ep_pending(struct tpc__shard *s)
{
    return s->ep->ncq || !tpc__list_empty(&s->ep->again) || s->ep->npeeked;
}

bool tpc__ep_peek(struct tpc__shard *s)
{
    struct tpc__ep *e = s->ep;
    if (!e->npeeked) {
        int n = epoll_wait(e->epfd, e->ev, EP_EVENTS, 0);
        s->n_io_enters++;
        e->npeeked = n > 0 ? n : 0;
    }
    return e->npeeked != 0;
}

/* Events a spin took (tpc__ep_peek): handled before epoll is asked again (into the same array). */
static void take_peeked(struct tpc__shard *s)
{
    int n = s->ep->npeeked;
    if (TPC_UNLIKELY(n)) {
        s->ep->npeeked = 0;
        on_events(s, n);
    }
}

/* `poll`: the loop has tasks to run, so asks epoll now rather than when it sleeps. `worked`:
 * it ran some; if nothing is left, it usually sleeps next, and the sleeping epoll_pwait2 takes
 * what is ready at once: asking first would cost a system call per round trip (a lone
 * connection's echo: 3.7 calls against the raw epoll server's 3). But the loop may go round
 * without sleeping (a timer due), so it never leaves epoll alone twice in a row. */
void tpc__ep_poll(struct tpc__shard *s, bool poll, bool worked)
{
    struct tpc__ep *e = s->ep;
    submit(s);
    take_peeked(s);
    retry_again(s);
    retry_later(s);
    if (poll || (worked && e->skipped)) {
        int n = epoll_wait(e->epfd, e->ev, EP_EVENTS, 0);
        s->n_io_enters++;
        if (n > 0)
            on_events(s, n);
        e->skipped = false;
    } else {
        e->skipped = worked;
    }
    deliver(s);
}

void tpc__ep_block(struct tpc__shard *s, int64_t timeout)
{
    struct tpc__ep *e = s->ep;
    uint64_t slept = tpc__clock_ns();
    submit(s);
    take_peeked(s);
    timeout = later_timeout(e, timeout);
    struct timespec ts = {.tv_sec = timeout / 1000000000, .tv_nsec = timeout % 1000000000};
    if (tpc__ep_pending(s))
        ts = (struct timespec){0, 0};
    else if (timeout <= 0)
        ts.tv_sec = -1; /* none */
    /* epoll_pwait2 (Linux 5.11; valgrind 3.19 does not know it): nanoseconds. Else epoll_wait,
     * in milliseconds rounded up. */
    static _Atomic bool no_pwait2;
    int n = -1;
    errno = ENOSYS;
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed))
        n = epoll_pwait2(e->epfd, e->ev, EP_EVENTS, ts.tv_sec < 0 ? NULL : &ts, NULL);
    if (n < 0 && (errno == ENOSYS || errno == EPERM || errno == EINVAL)) {
        /* Missing, or refused by a seccomp filter older than the call (EPERM): epoll_wait. */
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
        long long ms =
            ts.tv_sec < 0 ? -1 : (ts.tv_sec * 1000000000LL + ts.tv_nsec + 999999) / 1000000;
        n = epoll_wait(e->epfd, e->ev, EP_EVENTS, ms > INT32_MAX ? INT32_MAX : (int)ms);
    }
    int err = errno;
    s->n_io_enters++;
    e->skipped = false;
    atomic_store(&s->sleeping, 0);
    s->submit_deferred = false;
    s->n_sleep_ns += tpc__clock_ns() - slept;
    if (n < 0 && err != EINTR) {
        fprintf(stderr, "libtpc: shard %u: epoll_wait: %s\n", s->id, strerror(err));
        abort();
    }
    if (n > 0)
        on_events(s, n);
    retry_again(s);
    retry_later(s);
    deliver(s);
}

struct io_uring_sqe *tpc__ep_sqe(struct tpc__shard *s)
{
    struct tpc__ep *e = s->ep;
    if (e->nsq == e->capsq)
        submit(s);
    struct io_uring_sqe *q = &e->sq[e->nsq++];
    memset(q, 0, sizeof(*q));
    return q;
}

int tpc__ep_run(struct tpc__shard *s, struct tpc__io *io, struct io_uring_sqe *sqe)
{
    struct tpc__ep *e = s->ep;
    struct ep_op o = {.sqe = *sqe, .io = io, .fd = sqe->fd, .saved_fl = -1};
    tpc__list_init(&o.node);
    if (e->nsq && sqe == &e->sq[e->nsq - 1]) /* taken back: this call carries it out */
        e->nsq--;
    else
        sqe->opcode = IORING_OP_NOP, sqe->user_data = 0;
    io->done = false;
    io->w.fiber = NULL;
    if (o.sqe.flags & IOSQE_FIXED_FILE)
        return -EOPNOTSUPP;
    uint64_t t0 = s->now;
    s->n_io_submitted++; /* as a loop operation is counted (submit); completed as it ends */
    step(s, &o, -1);
    bool parked = false;
    while (!io->done) {
        parked = true;
        int rc = tpc__park(NULL, &io->w);
        if (io->done)
            break;
        if (o.want_pool) { /* the loop found a file: the pool from here */
            o.want_pool = false;
            to_pool(s, &o);
            fiber_done(&o);
            break;
        }
        if (rc < 0) { /* cancelled or past its deadline: nothing of it stays behind */
            unwait(e, &o);
            if (o.sqe.opcode == IORING_OP_CONNECT)
                connect_restore(&o);
            s->n_io_completed++;
            return o.moved ? (int)o.moved : rc; /* (MSG_WAITALL: the bytes it moved) */
        }
    }
    if (o.sqe.opcode == IORING_OP_CONNECT)
        connect_restore(&o);
    tpc__hist_add(&s->m.io[tpc__io_class(o.sqe.opcode)], s->now - t0);
    s->n_io_completed++;
    if (parked) {
        e->eager = 0;
    } else if (++e->eager >= EP_EAGER_MAX) { /* as a suspension would: let the others run */
        e->eager = 0;
        tpc_yield();
    } else {
        /* As after a suspension, tpc_now() moves on: a fiber whose operations keep completing
         * at once would otherwise measure from a clock as old as the run phase. */
        s->now = tpc__clock_ns();
    }
    return io->res;
}

int tpc__ep_offload(struct tpc__shard *s, struct io_uring_sqe *sqe)
{
    struct ep_op o = {.sqe = *sqe, .fd = sqe->fd, .saved_fl = -1};
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, NULL);
    if (o.sqe.flags & IOSQE_FIXED_FILE)
        return -EOPNOTSUPP;
    long r = 0;
    int rc = pool_run(s, &o, &r);
    return rc < 0 ? rc : (int)r;
}

/* ---- Set-up ---- */

int tpc__ep_init(struct tpc__shard *s)
{
    struct tpc__ep *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    tpc__list_init(&e->again);
    tpc__list_init(&e->later);
    e->capsq = s->rt->ring_entries;
    e->sq = calloc(e->capsq, sizeof(*e->sq));
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    int rc = e->epfd < 0 ? -errno : e->sq ? 0 : -ENOMEM;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s->wake_fd};
    if (rc == 0 && epoll_ctl(e->epfd, EPOLL_CTL_ADD, s->wake_fd, &ev) < 0)
        rc = -errno;
    s->ep = e;
    if (rc < 0) {
        fprintf(stderr, "libtpc: shard %u: cannot set up its epoll backend: %s\n", s->id,
                strerror(-rc));
        tpc__ep_fini(s);
        return rc;
    }
    s->wake_armed = true; /* the eventfd is in the epoll set for good */
    return 0;
}

/* Loop operations still queued when the shard ends (an acceptor or stream never closed) go
 * without completion, as io_uring's do when the ring is torn down. */
static void free_chunk(struct ep_fd *c)
{
    for (unsigned i = 0; i < EP_CHUNK; i++)
        for (int d = 0; d < 3; d++)
            while (!tpc__list_empty(&c[i].q[d])) {
                struct ep_op *o = tpc__container_of(c[i].q[d].next, struct ep_op, node);
                tpc__list_remove(&o->node);
                if (!o->io)
                    free(o);
            }
    free(c);
}

void tpc__ep_fini(struct tpc__shard *s)
{
    struct tpc__ep *e = s->ep;
    if (!e)
        return;
    for (unsigned i = 0; i < EP_CHUNKS; i++)
        if (e->fds[i])
            free_chunk(e->fds[i]);
    for (tpc_list *l = &e->again; l; l = l == &e->again ? &e->later : NULL)
        while (!tpc__list_empty(l)) {
            struct ep_op *o = tpc__container_of(l->next, struct ep_op, node);
            tpc__list_remove(&o->node);
            if (!o->io)
                free(o);
        }
    if (e->epfd >= 0)
        close(e->epfd);
    free(e->sq);
    free(e->cq);
    free(e->brs);
    free(e->byop);
    free(e);
    s->ep = NULL;
}

int tpc__ep_buf_ring(struct tpc__shard *s, struct io_uring_buf_ring *br, unsigned entries,
                     unsigned bgid)
{
    struct tpc__ep *e = s->ep;
    if (bgid >= e->nbrs) {
        unsigned n = bgid + 16;
        struct ep_bufring *b = realloc(e->brs, n * sizeof(*b));
        if (!b)
            return -ENOMEM;
        memset(b + e->nbrs, 0, (n - e->nbrs) * sizeof(*b));
        e->brs = b;
        e->nbrs = n;
    }
    if (e->brs[bgid].br)
        return -EEXIST;
    e->brs[bgid] = (struct ep_bufring){.br = br, .mask = entries - 1, .head = 0};
    return 0;
}

void tpc__ep_buf_ring_drop(struct tpc__shard *s, unsigned bgid)
{
    if (bgid < s->ep->nbrs)
        s->ep->brs[bgid].br = NULL;
}
