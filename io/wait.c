/* One io_uring operation, waited for by a fiber, with cancellation that never lets the kernel
 * touch the caller's memory after the call returns.
 *
 * The operation's buffers usually live on the fiber's stack. When the fiber is cancelled or its
 * deadline passes while the operation is in flight, returning at once would leave the kernel
 * writing into a stack that is about to be reused; so the fiber asks the kernel to cancel the
 * operation (IORING_OP_ASYNC_CANCEL) and then waits, uninterruptibly, for the operation's own
 * final completion. If the operation finished anyway (the cancel came too late), its result
 * is returned: a read that consumed data reports it rather than losing it. */
#include "core/internal.h"

static void io_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    (void)flags;
    struct tpc__io *io = tpc__container_of(op, struct tpc__io, op);
    s->inflight--;
    io->res = res;
    io->done = true;
    if (io->w.fiber && io->w.fiber->wait == &io->w)
        tpc__wake(&io->w, 0);
}

int tpc__io_run(struct tpc__shard *s, struct tpc__io *io, struct io_uring_sqe *sqe)
{
    io->op.complete = io_complete;
    io->done = false;
    io->w.fiber = NULL;
    io_uring_sqe_set_data(sqe, &io->op);
    s->inflight++;
    int rc = tpc__park(NULL, &io->w);
    if (io->done)
        return io->res;
    struct io_uring_sqe *c = tpc__sqe(s);
    if (c) {
        io_uring_prep_cancel(c, &io->op, 0);
        io_uring_sqe_set_data(c, NULL); /* its own completion is not waited for */
    }
    /* Without a free SQE the operation is simply waited for: still correct, only slower. */
    while (!io->done)
        tpc__park_hard(&io->w);
    return io->res >= 0 ? io->res : rc;
}
