/* Bounded durable operations (include/tpc/io.h): a write or a sync whose caller stops waiting
 * at its deadline while the operation goes on in the kernel.
 *
 * io_uring cannot cancel work that an io-wq worker has started (an fsync, an O_DIRECT write that
 * extends a file), so tpc__io_run, which must not return while the kernel may still touch the
 * caller's memory, waits for it past any deadline. Here the operation's record is on the heap
 * instead of the fiber's stack, so the fiber can return at its deadline and hand the record to
 * the caller, who collects the result later or lets it go. Records not let go are kept on a
 * per-shard list and freed when the shard stops (the shard's loop waits for every operation in
 * flight before it stops). */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "internal.h"

struct tpc_pending {
    struct tpc__op op;
    struct tpc__wait w;
    tpc_list node; /* in the shard's pending list */
    struct tpc__shard *shard;
    int res;
    bool done, released;
    /* On a pipe, socket or character device: it may never complete (nobody reads), so a
     * stopping shard cancels it (tpc__pending_poll). A file's write is never cancelled: the
     * stop waits for it, as a durable write must be made. */
    bool endless, cancelled;
};

static void pending_free(struct tpc_pending *p)
{
    tpc__list_remove(&p->node);
    free(p);
}

static void pending_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    (void)flags;
    struct tpc_pending *p = tpc__container_of(op, struct tpc_pending, op);
    s->inflight--;
    s->inflight_rw--;
    p->res = res;
    p->done = true;
    if (p->endless && !p->cancelled)
        tpc__io_of(s)->nendless--;
    if (p->w.fiber) { /* a fiber waits, or was woken and has not run yet: it takes over */
        if (p->w.fiber->wait == &p->w)
            tpc__wake(&p->w, 0);
        return;
    }
    if (p->released)
        pending_free(p); /* (a stopping shard that waited only for this leaves: core/shard.c) */
}

/* Waits for p until it completes (returns its result, p freed) or the fiber is cancelled or
 * its deadline passes (returns -ECANCELED / -ETIMEDOUT, p left as it is, *gone false). If p
 * was let go meanwhile (tpc_pending_release): -ECANCELED, and p is freed here if it completed
 * (else at its completion). */
static int pending_park(struct tpc_pending *p, bool *gone)
{
    int rc = p->done ? 0 : tpc__park(NULL, &p->w);
    p->w.fiber = NULL; /* from here on the completion handler frees a released p itself */
    *gone = p->done || p->released;
    if (p->released) {
        if (p->done)
            pending_free(p);
        return -ECANCELED;
    }
    if (!p->done)
        return rc < 0 ? rc : -ECANCELED;
    rc = p->res;
    pending_free(p);
    return rc;
}

/* Hands the operation prepared in sqe to the kernel as p's and waits for it (pending_park); if
 * it is left running, *late = p. */
static int bounded_run(struct tpc__shard *s, struct tpc_pending *p, struct io_uring_sqe *sqe,
                       tpc_pending **late)
{
    p->op.complete = pending_complete;
    p->shard = s;
    tpc__list_init(&p->w.node);
    tpc__list_push(&tpc__io_of(s)->pending, &p->node);
    io_uring_sqe_set_data(sqe, &p->op);
    s->inflight++;
    s->inflight_rw++; /* a write or a sync */
    if (p->endless)
        tpc__io_of(s)->nendless++;
    bool gone;
    int rc = pending_park(p, &gone);
    if (!gone)
        *late = p;
    return rc;
}

/* The common start of the bounded calls: checks, a record and an SQE. NULL with *rc set. */
static struct tpc_pending *bounded_begin(int fd, int *f, unsigned char *flags, tpc_pending **late,
                                         struct io_uring_sqe **sqe, int *rc)
{
    *rc = -EINVAL;
    if (!late)
        return NULL;
    *late = NULL;
    if ((*rc = tpc__io_file(fd, f, flags)) < 0)
        return NULL;
    struct tpc_pending *p = calloc(1, sizeof(*p));
    *rc = -ENOMEM;
    if (!p)
        return NULL;
    struct stat st; /* (a registered file is taken for a file) */
    p->endless = fd >= 0 && fd < TPC__FILE_BIT && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) &&
                 !S_ISBLK(st.st_mode);
    *rc = -EAGAIN;
    if (!(*sqe = tpc__sqe(tpc__self))) {
        free(p);
        return NULL;
    }
    return p;
}

ssize_t tpc_write_bounded(int fd, const void *buf, size_t len, int64_t offset, tpc_pending **late)
{
    if (late)
        *late = NULL;
    TPC__CHECK_SUSPEND();
    if ((!buf && len) || offset < -1)
        return late && !buf ? -EFAULT : -EINVAL;
    int f, rc;
    unsigned char flags = 0;
    struct io_uring_sqe *sqe;
    struct tpc_pending *p = bounded_begin(fd, &f, &flags, late, &sqe, &rc);
    if (!p)
        return rc;
    io_uring_prep_write(sqe, f, buf, tpc__io_len(len),
                        offset < 0 ? (uint64_t)-1 : (uint64_t)offset);
    sqe->flags |= flags;
    return bounded_run(tpc__self, p, sqe, late);
}

static int sync_bounded(int fd, unsigned how, tpc_pending **late)
{
    if (late)
        *late = NULL;
    TPC__CHECK_SUSPEND();
    int f, rc;
    unsigned char flags = 0;
    struct io_uring_sqe *sqe;
    struct tpc_pending *p = bounded_begin(fd, &f, &flags, late, &sqe, &rc);
    if (!p)
        return rc;
    io_uring_prep_fsync(sqe, f, how);
    sqe->flags |= flags;
    return bounded_run(tpc__self, p, sqe, late);
}

int tpc_fsync_bounded(int fd, tpc_pending **late)
{
    return sync_bounded(fd, 0, late);
}

int tpc_fdatasync_bounded(int fd, tpc_pending **late)
{
    return sync_bounded(fd, IORING_FSYNC_DATASYNC, late);
}

/* Checks that p is a live record of the calling shard's. */
static int pending_check(const tpc_pending *p)
{
    if (!tpc__self)
        return -EPERM;
    if (!p)
        return -EINVAL;
    if (p->shard != tpc__self)
        return -EXDEV; /* (nothing else of p is read from another shard) */
    return p->released ? -EINVAL : 0;
}

ssize_t tpc_pending_wait(tpc_pending *p)
{
    int rc = pending_check(p);
    if (rc < 0)
        return rc;
    if (p->w.fiber)
        return -EBUSY; /* another fiber waits for it */
    bool gone;
    if (!p->done) { /* a result already there is handed over even to a cancelled fiber */
        TPC__CHECK_SUSPEND();
    }
    return pending_park(p, &gone);
}

int tpc_pending_done(const tpc_pending *p)
{
    int rc = pending_check(p);
    return rc < 0 ? rc : p->done;
}

int tpc_pending_release(tpc_pending *p)
{
    if (!p)
        return 0;
    int rc = pending_check(p);
    if (rc < 0)
        return rc;
    if (p->w.fiber) { /* its waiter returns -ECANCELED and frees it if it has completed */
        p->released = true;
        if (p->w.fiber->wait == &p->w)
            tpc__wake(&p->w, -ECANCELED);
    } else if (p->done) {
        pending_free(p);
    } else {
        p->released = true;
    }
    return 0;
}

bool tpc__pending_poll(struct tpc__shard *s, struct tpc__io_shard *io)
{
    if (TPC_LIKELY(!s->stopping || !io->nendless))
        return false;
    bool sent = false;
    for (tpc_list *n = io->pending.next; n != &io->pending && io->nendless; n = n->next) {
        struct tpc_pending *p = tpc__container_of(n, struct tpc_pending, node);
        if (!p->endless || p->done || p->cancelled)
            continue;
        struct io_uring_sqe *sqe = tpc__sqe(s);
        if (!sqe)
            break; /* at the next turn */
        io_uring_prep_cancel(sqe, &p->op, 0);
        io_uring_sqe_set_data(sqe, NULL); /* its own completion is not waited for */
        p->cancelled = true;
        io->nendless--;
        sent = true;
    }
    return sent;
}

void tpc__pending_fini(struct tpc__io_shard *io)
{
    while (!tpc__list_empty(&io->pending))
        pending_free(tpc__container_of(tpc__list_first(&io->pending), struct tpc_pending, node));
}
