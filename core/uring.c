/* One io_uring operation, waited for by a fiber, with cancellation that never lets the kernel
 * touch the caller's memory after the call returns.
 *
 * The operation's buffers usually live on the fiber's stack. When the fiber is cancelled or its
 * deadline passes while the operation is in flight, returning at once would leave the kernel
 * writing into a stack that is about to be reused; so the fiber asks the kernel to cancel the
 * operation (IORING_OP_ASYNC_CANCEL) and then waits, uninterruptibly, for the operation's own
 * final completion. If the operation finished anyway (the cancel came too late), its result
 * is returned: a read that consumed data reports it rather than losing it. */
#include "epoll.h"
#include "uring.h"

static void io_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    (void)flags;
    struct tpc__io *io = tpc__container_of(op, struct tpc__io, op);
    s->inflight--;
    s->inflight_rw -= io->rw;
    io->res = res;
    io->done = true;
    if (io->w.fiber && io->w.fiber->wait == &io->w)
        tpc__wake(&io->w, 0);
}

#ifdef TPC_FAULT_INJECTION
static __thread struct {
    int err;
    unsigned short_max, count;
} faults[64];

static _Atomic int setup_fault;

void tpc__fault_setup(int err)
{
    atomic_store(&setup_fault, err);
}

int tpc__fault_setup_err(void)
{
    return atomic_load(&setup_fault);
}

static _Atomic(const char *) fake_kernel;

void tpc__fault_kernel_set(const char *release)
{
    atomic_store(&fake_kernel, release);
}

const char *tpc__fault_kernel(void)
{
    return atomic_load(&fake_kernel);
}

static _Atomic unsigned hidden_features;

void tpc__fault_hide_features(unsigned mask)
{
    atomic_store(&hidden_features, mask);
}

unsigned tpc__fault_hidden_features(void)
{
    return atomic_load(&hidden_features);
}

static __thread unsigned sqe_skip, sqe_fail;

void tpc__fault_sqe(unsigned skip, unsigned count)
{
    sqe_skip = skip;
    sqe_fail = count;
}

bool tpc__fault_no_sqe(void)
{
    if (!sqe_fail)
        return false;
    if (sqe_skip) {
        sqe_skip--;
        return false;
    }
    sqe_fail--;
    return true;
}

void tpc__fault_set(unsigned op, int err, unsigned short_max, unsigned count)
{
    if (op < 64)
        faults[op].err = err, faults[op].short_max = short_max, faults[op].count = count;
}

/* Applies a fault to the prepared SQE: a failure becomes a no-op whose result is replaced
 * (returned through *forced), a short transfer a smaller length. */
static void inject(struct io_uring_sqe *sqe, int *forced)
{
    unsigned op = sqe->opcode;
    if (op >= 64 || !faults[op].count)
        return;
    faults[op].count--;
    if (faults[op].err) {
        *forced = -faults[op].err;
        io_uring_prep_nop(sqe);
    } else if ((op == IORING_OP_READ || op == IORING_OP_WRITE) && sqe->len > faults[op].short_max) {
        sqe->len = faults[op].short_max;
    }
}

int tpc__fault_inject(struct io_uring_sqe *sqe)
{
    int forced = 0;
    inject(sqe, &forced);
    return forced;
}
#endif

int tpc__io_run(struct tpc__shard *s, struct tpc__io *io, struct io_uring_sqe *sqe)
{
#ifdef TPC_FAULT_INJECTION
    int forced = 0;
    inject(sqe, &forced);
    if (forced) {
        io_uring_sqe_set_data(sqe, &io->op);
        io->op.complete = io_complete;
        io->done = false;
        io->w.fiber = NULL;
        io->rw = false;
        s->inflight++;
        while (!io->done) /* a no-op: completes at the loop's next reap */
            tpc__park_hard(&io->w);
        return forced;
    }
#endif
    if (TPC_UNLIKELY(s->ep))
        return tpc__ep_run(s, io, sqe);
    if (TPC_UNLIKELY(s->ops_missing) && tpc__op_missing(sqe->opcode))
        return tpc__ep_offload(s, sqe); /* (a registered file's handle: -EOPNOTSUPP) */
    io->op.complete = io_complete;
    io->done = false;
    io->w.fiber = NULL;
    io_uring_sqe_set_data(sqe, &io->op);
    s->inflight++;
    /* Latency by the loop's clock (no clock read): from the run phase that submits to the one
     * that resumes this fiber (core/metrics.c). */
    uint64_t t0 = s->now;
    unsigned cls = tpc__io_class(sqe->opcode);
    io->rw = cls == TPC__IOC_READ || cls == TPC__IOC_WRITE || cls == TPC__IOC_SYNC;
    s->inflight_rw += io->rw;
    int rc = tpc__park(NULL, &io->w);
    if (io->done) {
        tpc__hist_add(&s->m.io[cls], s->now - t0);
        return io->res;
    }
    /* Without a free SQE for the cancel (the kernel would not take the queued ones), let the
     * loop run, which submits and reaps, and try again: waiting for the operation instead could
     * wait forever (a receive on an idle socket). */
    struct io_uring_sqe *c = NULL;
    while (!io->done && !(c = tpc__sqe(s)))
        tpc_yield();
    if (c) {
        io_uring_prep_cancel(c, &io->op, 0);
        io_uring_sqe_set_data(c, NULL); /* its own completion is not waited for */
    }
    while (!io->done)
        tpc__park_hard(&io->w);
    return io->res >= 0 ? io->res : rc;
}

bool tpc__io_alone(struct tpc__shard *s, unsigned op)
{
#ifdef TPC_FAULT_INJECTION
    if ((op < 64 && faults[op].count) || sqe_fail)
        return false;
#else
    (void)op;
#endif
    return !s->ep && !s->runq.head && !io_uring_sq_ready(&s->ring);
}

/* ---- Opcodes the kernel lacks: probed once per process ---- */

static uint64_t missing[4]; /* bit per opcode, written once before any shard runs I/O */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static struct io_uring *probe_ring;

#ifdef TPC_FAULT_INJECTION
static _Atomic uint64_t hidden_ops;

void tpc__fault_hide_opcodes(uint64_t mask)
{
    atomic_store(&hidden_ops, mask);
}
#endif

/* The opcodes a shard may submit that the blocking pool can also carry out (core/epoll.c). */
static const unsigned char offloadable[] = {
    IORING_OP_READ,  IORING_OP_WRITE,     IORING_OP_READV,    IORING_OP_WRITEV,
    IORING_OP_FSYNC, IORING_OP_FALLOCATE, TPC__OP_FTRUNCATE,  IORING_OP_OPENAT,
    IORING_OP_STATX, IORING_OP_UNLINKAT,  IORING_OP_RENAMEAT, IORING_OP_MKDIRAT,
};

static void probe(void)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(probe_ring);
    for (size_t i = 0; i < sizeof(offloadable); i++) {
        unsigned op = offloadable[i];
        bool have = !p || io_uring_opcode_supported(p, (int)op); /* no probe: assume all */
        if (!have)
            missing[op / 64] |= 1ull << (op % 64);
    }
    if (p)
        io_uring_free_probe(p);
}

bool tpc__op_missing(unsigned op)
{
#ifdef TPC_FAULT_INJECTION
    if (op < 64 && (atomic_load(&hidden_ops) >> op & 1))
        return true;
#endif
    return op < 256 && (missing[op / 64] >> (op % 64) & 1);
}

/* On the shard's thread, its ring made. The first shard of the process probes (the others
 * wait for it in pthread_once). */
void tpc__probe_ops(struct tpc__shard *s)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    probe_ring = &s->ring;
    pthread_once(&probe_once, probe);
    pthread_mutex_unlock(&lock);
    s->ops_missing = (missing[0] | missing[1] | missing[2] | missing[3]) != 0;
#ifdef TPC_FAULT_INJECTION
    s->ops_missing |= atomic_load(&hidden_ops) != 0;
#endif
}

/* ---- Multishot operations owned by objects (net/accept.c, net/bufpool.c) ---- */

void tpc__multishot_init(struct tpc__multishot *m,
                         void (*complete)(struct tpc__shard *, struct tpc__op *, int, unsigned))
{
    *m = (struct tpc__multishot){.op.complete = complete};
    tpc__list_init(&m->closer.node);
}

void tpc__multishot_arm(struct tpc__multishot *m, struct io_uring_sqe *sqe)
{
    io_uring_sqe_set_data(sqe, &m->op);
    if (!m->armed)
        tpc__self->nmultishot++;
    m->armed = true;
}

void tpc__multishot_cancel(struct tpc__shard *s, struct tpc__multishot *m)
{
    if (!m->armed || m->stopping)
        return;
    struct io_uring_sqe *sqe = tpc__sqe(s);
    if (!sqe)
        return; /* retried by the next completion or stop */
    io_uring_prep_cancel(sqe, &m->op, 0);
    io_uring_sqe_set_data(sqe, NULL); /* its own completion is not waited for */
    m->stopping = true;
}

bool tpc__multishot_seen(struct tpc__shard *s, struct tpc__multishot *m, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE)) {
        if (m->armed)
            s->nmultishot--;
        m->armed = m->stopping = false;
    }
    if (!m->closing)
        return false;
    if (m->armed)
        tpc__multishot_cancel(s, m);
    else if (m->closer.fiber) /* else the closer is between tries (below), not parked */
        tpc__wake(&m->closer, 0);
    return true;
}

void tpc__multishot_stop(struct tpc__shard *s, struct tpc__multishot *m)
{
    m->closing = true;
    while (m->armed) {
        tpc__multishot_cancel(s, m);
        if (m->stopping) {
            tpc__park_hard(&m->closer);
        } else {
            /* No free SQE for the cancel: let the loop submit and reap, then try again. An
             * idle multishot receive would never complete on its own. */
            m->closer.fiber = NULL;
            tpc_yield();
        }
    }
}
