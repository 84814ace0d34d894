/* The shard loop, its io_uring, and cross-thread wake-ups.
 *
 * One iteration, in this order (docs/design.md keeps the same list):
 *   1. run ready tasks FIFO until the queue is empty or TPC_PHASE_TASKS have run;
 *   2. drain the shard-to-shard rings whose doorbells rang (core/ring.c), then the inbox
 *      (messages from threads that are not shards);
 *   3. notice a runtime stop: cancel every fiber once, exit when none is left;
 *   4. submit prepared SQEs and reap CQEs (no syscall when nothing is pending);
 *   5. expire due timers;
 *   6. publish the messages this iteration sent;
 *   7. when nothing is ready, spin briefly if it just worked, then announce sleep and block in
 *      io_uring_enter until a completion (the eventfd read armed for wake-ups is one) or the
 *      next timer's tick; with coalescing, until a batch of completions or the window's end. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "epoll.h"
#include "rings.h"
#include "uring.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#define COALESCE_EVENTS  64 /* a coalesced wait ends early once this many completions wait */
#define COALESCE_MIN_OPS 8  /* and needs this many operations out */
/* Adaptive batching (sleep_phase): the load window, the batching window, and the share of the
 * operations seen active that a batch may wait for. */
#define LOAD_WINDOW_NS   1000000
#define BATCH_MAX_US     200
#define BATCH_SHARE      16
#define BATCH_IDLE_SHARE 8 /* and a shard asleep for less than 1/8 of the window does not */
#define BATCH_LATE_SHARE 4 /* a batch ends at 4 times the completions it expects */
/* An automatic spin goes on this long after the last message between shards. */
#define SPIN_HOLD_NS 1000000

#ifdef TPC_TSAN
#include <sys/mman.h>
/* liburing maps and unmaps its rings with raw syscalls that TSan does not see, so a new ring that
 * lands where an old one was would inherit the old owner's shadow state, and TSan would report
 * the new owner's SQE writes as races with a dead thread. Before liburing unmaps a ring, cover
 * its regions with an anonymous placeholder through libc's mmap, with writes ignored: TSan then
 * resets the range's shadow. liburing's own munmap removes the placeholder, so nothing else can
 * be mapped there in between. TSan builds only. */
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);

static void forget_range(void *p, size_t len)
{
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
    mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
}

static void ring_destroying(struct io_uring *r)
{
    forget_range(r->sq.sqes, (size_t)r->sq.ring_entries * sizeof(struct io_uring_sqe));
    forget_range(r->sq.ring_ptr, r->sq.ring_sz);
    if (r->cq.ring_ptr != r->sq.ring_ptr)
        forget_range(r->cq.ring_ptr, r->cq.ring_sz);
}
#define RING_DESTROYING(r) ring_destroying(r)
#else
#define RING_DESTROYING(r)
#endif

void tpc__run_callback(struct tpc__shard *s, struct tpc__callback *cb);

/* ---- io_uring set-up: the best flags this kernel takes, falling back one by one. ---- */

static void arm_wake(struct tpc__shard *s);

static void wake_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    (void)op;
    (void)res;
    (void)flags;
    s->n_wakeups++;
    s->wake_armed = false;
    arm_wake(s);
}

struct io_uring_sqe *tpc__sqe(struct tpc__shard *s)
{
#ifdef TPC_FAULT_INJECTION
    if (tpc__fault_no_sqe())
        return NULL;
#endif
    if (TPC_UNLIKELY(s->ep))
        return tpc__ep_sqe(s);
    if (TPC_UNLIKELY(!s->ring_ok)) /* a message run after its shard left: the ring is gone */
        return NULL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (!sqe) {
        if (io_uring_submit(&s->ring) > 0)
            s->n_io_enters++;
        sqe = io_uring_get_sqe(&s->ring);
    }
    return sqe;
}

static void arm_wake(struct tpc__shard *s)
{
    struct io_uring_sqe *sqe = tpc__sqe(s);
    if (!sqe) /* still full: the loop retries before it sleeps, and does not sleep unarmed */
        return;
    io_uring_prep_read(sqe, s->wake_fd, &s->wake_buf, sizeof(s->wake_buf), 0);
    io_uring_sqe_set_data(sqe, &s->wake_op);
    s->wake_armed = true;
}

/* Shard 0 reads the runtime's signals (SIGINT, SIGTERM) from a signalfd through its ring; the
 * first one starts the graceful shutdown. */
static void arm_signal(struct tpc__shard *s);

static void signal_complete(struct tpc__shard *s, struct tpc__op *op, int res, unsigned flags)
{
    (void)op;
    (void)flags;
    if (res == (int)sizeof(s->sig_buf)) {
        tpc_stop(128 + (int)s->sig_buf.ssi_signo);
        if (!atomic_load(&s->rt->stop))
            arm_signal(s); /* a second signal during the drain stops at once */
    } else if (res != -ECANCELED) {
        arm_signal(s);
    }
}

static void arm_signal(struct tpc__shard *s)
{
    struct io_uring_sqe *sqe = tpc__sqe(s);
    if (!sqe) {
        fputs("libtpc: no submission slot to watch for signals\n", stderr);
        return;
    }
    io_uring_prep_read(sqe, s->sig_fd, &s->sig_buf, sizeof(s->sig_buf), 0);
    io_uring_sqe_set_data(sqe, &s->sig_op);
}

/* Why io_uring_setup failed, and what to do about it. */
static const char *ring_why(int rc)
{
    return rc == -EPERM    ? "io_uring is not permitted (check sysctl kernel.io_uring_disabled "
                             "and seccomp filters)"
           : rc == -ENOMEM ? "not enough lockable memory (raise RLIMIT_MEMLOCK with ulimit -l, "
                             "or use fewer ring entries)"
           : rc == -ENOSYS ? "this kernel has no io_uring (Linux >= 5.19 needed)"
                           : "io_uring_setup failed";
}

/* Creates the shard's io_uring with the best flags this kernel takes, falling back one flag at a
 * time. Returns 0 or the kernel's error, having said why on stderr unless `quiet`. */
static int create_ring(struct tpc__shard *s, bool quiet)
{
    /* TASKRUN_FLAG: the kernel flags the SQ ring when completions wait for this thread to enter
     * it, so a spinning shard notices them (spin_for_work). */
    static const unsigned try_flags[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = s->poll_wait ? 1 : 0; i < sizeof(try_flags) / sizeof(try_flags[0]); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        /* A completion queue four times the submission queue (liburing's default is twice):
         * multishot operations and receive streams complete more than they submit, and an
         * overflow, though lossless (NODROP), costs the loop a flush (counted: cq_overflows). */
        p.flags = try_flags[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = 4 * s->rt->ring_entries; /* (the kernel allows 65,536 at most) */
        if (p.cq_entries > 65536)
            p.cq_entries = 65536;
        rc = io_uring_queue_init_params(s->rt->ring_entries, &s->ring, &p);
#ifdef TPC_FAULT_INJECTION
        int fault = tpc__fault_setup_err();
        if (fault && rc == 0) {
            io_uring_queue_exit(&s->ring);
            rc = -fault;
        }
#endif
        if (rc != -EINVAL)
            break;
    }
    if (rc < 0) {
        if (!quiet)
            fprintf(stderr, "libtpc: shard %u: cannot create its io_uring: %s: %s\n", s->id,
                    ring_why(rc), strerror(-rc));
        return rc;
    }
    s->ring_ok = true;
    s->ring_flags = s->ring.flags;
    s->ring_features = s->ring.features;
#ifdef TPC_FAULT_INJECTION
    s->ring_features &= ~tpc__fault_hidden_features();
#endif
    return 0;
}

/* Coalescing wake-ups needs the kernel's minimum wait, and DEFER_TASKRUN so that completions
 * wait for this thread instead of waking it one by one. -EOPNOTSUPP (said on stderr) when asked
 * for and not possible. */
static int check_coalescing(struct tpc__shard *s)
{
    if (s->poll_wait || s->ep)
        s->coalesce_us = 0; /* ppoll() has no such wait */
    bool can = (s->ring_features & TPC__FEAT_MIN_TIMEOUT) &&
               (s->ring_flags & IORING_SETUP_DEFER_TASKRUN) && !s->poll_wait && !s->ep;
    s->batch_auto = s->batch_auto && can; /* adaptive batching needs the same, silently */
    if (!s->coalesce_us || can)
        return 0;
    if (s->id == 0)
        fprintf(stderr,
                "libtpc: coalesce_us (TPC_COALESCE_US) needs Linux 6.12 "
                "(IORING_FEAT_MIN_TIMEOUT) and a ring with DEFER_TASKRUN; %s\n",
                s->ring_features & TPC__FEAT_MIN_TIMEOUT ? "this ring has no DEFER_TASKRUN"
                                                         : "this kernel has no minimum wait");
    return -EOPNOTSUPP;
}

/* The backend (tpc_config.backend): io_uring, or epoll when asked for, or, in auto, when no
 * ring can be set up at all (EPERM, ENOSYS, ENOMEM, or a kernel too old); then one line per
 * process says why (a silent fallback would hide a slowdown). Any other setup error fails. */
static atomic_flag fallback_said = ATOMIC_FLAG_INIT;

/* The oldest kernel whose io_uring has all the runtime uses (multishot accept, provided-buffer
 * rings: Linux 5.19). Fills `why` and returns -ENOSYS on an older one. */
#define MIN_MAJOR 5
#define MIN_MINOR 19
static int kernel_check(char *why, size_t size)
{
    struct utsname u;
    const char *rel = uname(&u) == 0 ? u.release : "";
#ifdef TPC_FAULT_INJECTION
    if (tpc__fault_kernel())
        rel = tpc__fault_kernel();
#endif
    int major = 0, minor = 0;
    if (sscanf(rel, "%d.%d", &major, &minor) != 2 || major > MIN_MAJOR ||
        (major == MIN_MAJOR && minor >= MIN_MINOR))
        return 0; /* (an unreadable version: io_uring_setup will tell) */
    snprintf(why, size,
             "Linux %d.%d is older than %d.%d, the oldest whose io_uring libtpc supports "
             "(multishot accept, buffer rings)",
             major, minor, MIN_MAJOR, MIN_MINOR);
    return -ENOSYS;
}

static int choose_backend(struct tpc__shard *s)
{
    tpc_backend b = s->rt->config.backend;
    if (b != TPC_BACKEND_EPOLL) {
        char why[160];
        int rc = kernel_check(why, sizeof(why));
        if (rc < 0 && b == TPC_BACKEND_URING) {
            fprintf(stderr, "libtpc: shard %u: cannot use io_uring: %s\n", s->id, why);
            return rc;
        }
        if (rc == 0) {
            rc = create_ring(s, b == TPC_BACKEND_AUTO);
            if (rc == 0)
                tpc__probe_ops(s);
            if (rc == 0 || b == TPC_BACKEND_URING)
                return rc;
            if (rc != -EPERM && rc != -ENOSYS && rc != -ENOMEM) {
                /* Not io_uring being unavailable (sysctl, seccomp, kernel, locked memory) but
                 * an error of this run (out of descriptors, say): an error, not a switch. */
                fprintf(stderr, "libtpc: shard %u: cannot create its io_uring: %s\n", s->id,
                        strerror(-rc));
                return rc;
            }
            snprintf(why, sizeof(why), "%s: %s", ring_why(rc), strerror(-rc));
        }
        if (!atomic_flag_test_and_set(&fallback_said))
            fprintf(stderr,
                    "libtpc: io_uring unavailable: %s; running on the epoll backend instead "
                    "(slower; TPC_BACKEND=uring makes this an error)\n",
                    why);
    }
    return tpc__ep_init(s);
}

#ifdef TPC_FAULT_INJECTION
void tpc__fault_fallback_unsay(void)
{
    atomic_flag_clear(&fallback_said);
}
#endif

/* The shard's event sources: its io_uring, the eventfd other threads wake it through, and on
 * shard 0 the signalfd of the runtime's stop signals. */
int tpc__shard_io_init(struct tpc__shard *s)
{
    /* valgrind (3.19) does not know that io_uring_enter can block and keeps its global lock
     * while a shard sleeps in it, freezing every other thread. Under valgrind, shards sleep in
     * ppoll() on the ring fd instead, which needs completions posted without DEFER_TASKRUN. */
    s->poll_wait = RUNNING_ON_VALGRIND != 0;
    s->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (s->wake_fd < 0) {
        int rc = -errno;
        fprintf(stderr, "libtpc: shard %u: eventfd: %s\n", s->id, strerror(errno));
        return rc;
    }
    int rc = choose_backend(s);
    if (rc < 0 || (rc = check_coalescing(s)) < 0)
        return rc;
    s->wake_op.complete = wake_complete;
    if (!s->ep) {
        /* The ring's own fd, registered: io_uring_enter skips the fd table lookup. */
        s->ring_fd_registered = io_uring_register_ring_fd(&s->ring) == 1;
        arm_wake(s);
    }
    if (s->id == 0 && s->rt->signals) {
        s->sig_fd = signalfd(-1, &s->rt->sigset, SFD_CLOEXEC);
        if (s->sig_fd < 0) {
            rc = -errno;
            fprintf(stderr, "libtpc: signalfd: %s\n", strerror(errno));
            return rc;
        }
        s->sig_op.complete = signal_complete;
        arm_signal(s);
    }
    if (!s->ep)
        io_uring_submit(&s->ring);
    return 0;
}

int tpc_features(char *buf, size_t size)
{
    struct tpc__shard *s = tpc__self;
    if (!s)
        return -EPERM;
    if (!buf && size)
        return -EINVAL;
    if (s->ep)
        return snprintf(buf, size, "epoll (%s), files on the blocking pool%s",
                        s->rt->config.backend == TPC_BACKEND_EPOLL ? "asked for"
                                                                   : "io_uring unavailable",
                        s->rt->config.coalesce_us > 0 ? "; coalesce_us ignored" : "");
    static const struct {
        unsigned bit;
        const char *name;
    } setup[] = {{IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
                 {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
                 {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
                 {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"}},
      feat[] = {{IORING_FEAT_NODROP, "NODROP"},         {IORING_FEAT_FAST_POLL, "FAST_POLL"},
                {IORING_FEAT_EXT_ARG, "EXT_ARG"},       {IORING_FEAT_RW_CUR_POS, "RW_CUR_POS"},
                {TPC__FEAT_MIN_TIMEOUT, "MIN_TIMEOUT"}, {TPC__FEAT_NO_IOWAIT, "NO_IOWAIT"}};
    char line[512];
    int n = snprintf(line, sizeof(line), "io_uring %u entries, setup:", s->ring.sq.ring_entries);
    for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
        if (s->ring_flags & setup[i].bit)
            n += snprintf(line + n, sizeof(line) - (size_t)n, " %s", setup[i].name);
    n += snprintf(line + n, sizeof(line) - (size_t)n, "; features:");
    for (size_t i = 0; i < sizeof(feat) / sizeof(feat[0]); i++)
        if (s->ring_features & feat[i].bit)
            n += snprintf(line + n, sizeof(line) - (size_t)n, " %s", feat[i].name);
    if (s->coalesce_us)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; wake-ups coalesced over %u us",
                      s->coalesce_us);
    else if (s->batch_auto)
        n += snprintf(line + n, sizeof(line) - (size_t)n,
                      "; wake-ups batched under load (adaptive, up to %u us)", BATCH_MAX_US);
    if (s->ops_missing) {
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; on the blocking pool:");
        for (unsigned op = 0; op < 64; op++)
            if (tpc__op_missing(op))
                n += snprintf(line + n, sizeof(line) - (size_t)n, " op%u", op);
    }
    n += snprintf(line + n, sizeof(line) - (size_t)n, "; ring fd %s%s",
                  s->ring_fd_registered ? "registered" : "not registered",
                  s->poll_wait ? "; sleeps in ppoll (valgrind)" : "");
    return snprintf(buf, size, "%s", line);
}

void tpc__shard_io_fini(struct tpc__shard *s)
{
    tpc__ep_fini(s);
    if (s->ring_ok) {
        RING_DESTROYING(&s->ring);
        io_uring_queue_exit(&s->ring); /* cancels the pending wake-up and signal reads */
    }
    s->ring_ok = false;
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    s->sig_fd = -1;
}

/* Other shards may still wake this one while it exits, so its eventfd is closed only once every
 * shard thread has been joined. */
void tpc__shard_wake_fini(struct tpc__shard *s)
{
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    s->wake_fd = -1;
}

/* ---- Wake-ups and the inbox. ----
 * A shard about to block stores sleeping = 1 and then checks its inbox; a sender pushes and then
 * checks sleeping. Both sides use sequentially consistent operations, so at least one of them
 * sees the other: either the shard finds the message, or the sender sees it asleep and pays
 * for the eventfd write. The exchange makes only one sender pay. */

bool tpc__shard_wake(struct tpc__shard *s)
{
    if (atomic_load(&s->sleeping) && atomic_exchange(&s->sleeping, 0)) {
        uint64_t one = 1;
        ssize_t n = write(s->wake_fd, &one, sizeof(one));
        (void)n; /* an eventfd write only fails when the counter is saturated: already woken */
        return true;
    }
    return false;
}

/* The inbox of a shard that has left its loop: posting fails instead of queueing a message that
 * would never run. */
static struct tpc__msg inbox_closed;
#define INBOX_CLOSED (&inbox_closed)

int tpc__post_msg(struct tpc__shard *s, struct tpc__msg *m)
{
    struct tpc__msg *head = atomic_load_explicit(&s->inbox, memory_order_relaxed);
    do {
        if (head == INBOX_CLOSED)
            return -ESHUTDOWN;
        m->next = head;
    } while (!atomic_compare_exchange_weak(&s->inbox, &head, m));
    tpc__shard_wake(s);
    return 0;
}

/* Inbox messages from tpc__post are heap records the drain frees; tpc__post_msg's belong to
 * their sender. The drain tells them apart by `owned`. */
int tpc__post(struct tpc__shard *s, tpc_callback_fn fn, void *arg)
{
    struct tpc__msg *m = malloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->fn = fn;
    m->arg = arg;
    m->owned = false;
    int rc = tpc__post_msg(s, m);
    if (rc < 0)
        free(m);
    return rc;
}

/* Runs every message in the inbox, in send order, and leaves `then` (NULL, or INBOX_CLOSED) in
 * its place. */
static void drain_inbox(struct tpc__shard *s, struct tpc__msg *then)
{
    struct tpc__msg *m = atomic_exchange(&s->inbox, then), *rev = NULL;
    while (m) { /* the stack is newest first: reverse it to run in send order */
        struct tpc__msg *next = m->next;
        m->next = rev;
        rev = m;
        m = next;
    }
    while (rev) {
        struct tpc__msg *next = rev->next;
        tpc_callback_fn fn = rev->fn;
        void *arg = rev->arg;
        s->n_msgs_in++;
        if (!rev->owned)
            free(rev);
        fn(arg); /* an owned message may be reused from here on */
        rev = next;
    }
}

void tpc__inbox_free(struct tpc__shard *s)
{
    struct tpc__msg *m = atomic_exchange(&s->inbox, NULL);
    while (m && m != INBOX_CLOSED) {
        struct tpc__msg *next = m->next;
        if (!m->owned)
            free(m);
        m = next;
    }
}

/* ---- The loop. ---- */

/* Adaptive batching. Batching wake-ups (the kernel holds a sleeping shard's wake-up until n
 * completions wait or a window has passed) saves a wake-up and a kernel entry per completion
 * under load, and costs each completion up to the window. It pays when many operations
 * complete while the shard sleeps; it hurts a client that waits for each answer before it
 * sends again over a few connections, which then spends the window idle. So a shard measures,
 * over windows of LOAD_WINDOW_NS: the completions (their rate gives how many will come within
 * a batching window), and how many distinct operations completed (hashed into 256 bits: with
 * closed-loop clients, at most that many answers can be awaited at once). The next sleeps hold
 * the wake-up for as long as n, 1/BATCH_SHARE of the operations seen active (a connection's
 * receive and send are two), take to complete at the measured rate, with half again as slack,
 * at most BATCH_MAX_US (or until BATCH_LATE_SHARE * n have completed: sleep_in_kernel), if n
 * is at least 2; else they wake on the first completion. A shard that slept less than 1/8 of the
 * window does not batch either: it is nearly saturated, gathers completions while it works,
 * and sleeps too seldom for batching to save anything, while a batch that waits the window out
 * (the VM's timers fire tens of us late) leaves the CPU idle. A lone connection, or a few, never
 * batch; ten thousand idle ones do not either (few are active). A shard that exchanged messages
 * with other shards in the window does not batch: a message would wait with the completions, and
 * those shards wait for it. A change of load takes effect at the next window. */
static inline void note_active(struct tpc__shard *s, const void *op)
{
    unsigned h = (unsigned)(((uintptr_t)op * 0x9e3779b97f4a7c15ull) >> 56);
    s->active[h >> 6] |= 1ull << (h & 63);
}

static void measure_load(struct tpc__shard *s, uint64_t now)
{
    uint64_t span = now - s->load_t0;
    if (span < LOAD_WINDOW_NS)
        return;
    unsigned active = 0;
    for (int i = 0; i < 4; i++) {
        active += (unsigned)__builtin_popcountll(s->active[i]);
        s->active[i] = 0;
    }
    /* Arrivals: about half the completions are of what the shard itself started just before
     * (a server's sends, done within the kernel entry that submits them). */
    uint64_t arrivals = (s->n_io_completed - s->load_c0) / 2;
    uint64_t msgs = s->n_msgs_in + s->n_msgs_out;
    bool idle_enough = (s->n_sleep_ns - s->load_s0) * BATCH_IDLE_SHARE >= span;
    uint64_t n = msgs == s->load_m0 && idle_enough ? active / BATCH_SHARE : 0, ns = 0;
    if (n > COALESCE_EVENTS)
        n = COALESCE_EVENTS;
    if (n >= 2 && arrivals) {
        ns = span * n / arrivals * 3 / 2; /* n arrivals' expected time, with slack */
        if (ns > BATCH_MAX_US * 1000) {   /* then as many as that brings, if fewer */
            ns = BATCH_MAX_US * 1000;
            if (arrivals * ns / span < n)
                n = arrivals * ns / span;
        }
    }
    s->batch_n = n >= 2 ? (uint32_t)n : 0;
    s->batch_us = (uint32_t)(ns / 1000);
    s->load_t0 = now;
    s->load_c0 = s->n_io_completed;
    s->load_m0 = msgs;
    s->load_s0 = s->n_sleep_ns;
}

/* Whether to spin before sleeping (tpc_config.spin_ns). A spin saves the wake-up of a message
 * or reply that lands within it (~10 us on this project's VM), and burns the CPU it waits for
 * otherwise; I/O completions rarely land that soon, so with spin_ns left to the runtime a shard
 * spins only within SPIN_HOLD_NS of a message it sent or ran. */
static inline bool want_spin(struct tpc__shard *s, bool worked)
{
    if (!worked || s->spin_ns <= 0)
        return false;
    if (!s->spin_auto)
        return true;
    uint64_t msgs = s->n_msgs_in + s->n_msgs_out;
    if (msgs != s->spin_msgs) {
        s->spin_msgs = msgs;
        s->spin_until = s->now + SPIN_HOLD_NS;
    }
    return s->now < s->spin_until;
}

#define REAP_AHEAD 4

static void reap(struct tpc__shard *s)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    io_uring_for_each_cqe(&s->ring, head, cqe)
    {
        /* Each op is a first touch (it lives on its fiber's stack or in its object): start
         * loading the one a few completions ahead. The slot may be stale; a prefetch never
         * faults. */
        __builtin_prefetch(
            (void *)s->ring.cq.cqes[(head + REAP_AHEAD) & s->ring.cq.ring_mask].user_data);
        struct tpc__op *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        unsigned flags = cqe->flags;
        s->n_io_completed++;
        note_active(s, op);
        /* Advance before the callback so that it may submit and reap re-entrantly. */
        io_uring_cq_advance(&s->ring, 1);
        if (op)
            op->complete(s, op, res, flags);
    }
    (void)head;
}

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* Completions wait: posted, (DEFER_TASKRUN) queued for this thread's next kernel entry, or
 * held in the kernel after the CQ ring overflowed (only an entry flushes them). */
static inline bool io_pending(struct tpc__shard *s)
{
    if (TPC_UNLIKELY(s->ep))
        return tpc__ep_pending(s);
    return io_uring_cq_ready(&s->ring) ||
           (IO_URING_READ_ONCE(*s->ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
}

/* Submits what is queued and sleeps until a completion or `timeout` ns (<= 0: none): one
 * io_uring_enter, as liburing's submit-and-wait calls make it, with one more argument. With
 * coalescing (tpc_config.coalesce_us), the kernel holds the wake-up until coalesce_us has passed
 * or COALESCE_EVENTS completions wait; if none came by then, it wakes on the first. It holds
 * every completion, those already there and those of operations that complete as they are
 * submitted too. So a shard coalesces only with COALESCE_MIN_OPS operations out: with fewer
 * there is no batch to gather, and a lone connection's round trip, or a fiber doing one
 * operation after another, would wait out the window each time. liburing 2.3 has no call for
 * the minimum wait, so this one publishes the queued SQEs as io_uring_submit would and enters
 * the kernel itself. */
static int sleep_in_kernel(struct tpc__shard *s, int64_t timeout)
{
    struct __kernel_timespec kts = {.tv_sec = timeout / 1000000000,
                                    .tv_nsec = timeout % 1000000000};
    uint32_t min_us = s->coalesce_us;
    if (s->inflight + s->nmultishot < COALESCE_MIN_OPS)
        min_us = 0;
    if (s->batch_n) /* adaptive (measure_load) */
        min_us = s->batch_us;
    unsigned to_submit = tpc__sq_publish(&s->ring);
    if (timeout > 0 && (uint64_t)timeout < (uint64_t)min_us * 1000)
        min_us = (uint32_t)(timeout / 1000); /* a timer due sooner ends the batch */
    s->n_batched += min_us != 0;
    /* After the minimum wait the kernel only goes on sleeping (for the first completion) up to
     * a general timeout; without one it returns at once, empty-handed. */
    if (min_us && timeout <= 0)
        kts = (struct __kernel_timespec){.tv_sec = 3600};
    struct tpc__getevents_arg arg = {
        .sigmask_sz = _NSIG / 8,
        .min_wait_usec = min_us,
        .ts = min_us || timeout > 0 ? (uint64_t)(uintptr_t)&kts : 0,
    };
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    /* The kernel counts a shard's sleep as I/O wait while any operation is out (Linux 6.5): an
     * idle server waiting on its sockets showed a CPU at 100 % iowait (top's wa, vmstat's b).
     * It is I/O wait only while a read, write or sync is out (a storage engine's). */
    if ((s->ring_features & TPC__FEAT_NO_IOWAIT) && !s->inflight_rw)
        flags |= TPC__ENTER_NO_IOWAIT;
    int fd = s->ring.ring_fd;
    if (s->ring_fd_registered) {
        flags |= IORING_ENTER_REGISTERED_RING;
        fd = s->ring.enter_ring_fd;
    }
    /* The window ends an adaptive batch (its own timer wakes the shard more cheaply than a
     * completion from another CPU), or BATCH_LATE_SHARE times the n completions it expects:
     * where the timer fires late (this project's Intel VM: ~100 us after a 20 us window), a
     * batch that only the window ended gathered every connection's request, and the clients
     * fell into step with it (echo, 32 connections: 150k against 270k round trips/s without
     * batching). */
    unsigned wait_nr = !min_us ? 1 : s->batch_n ? s->batch_n * BATCH_LATE_SHARE : COALESCE_EVENTS;
    long rc = syscall(__NR_io_uring_enter, fd, to_submit, wait_nr, flags, &arg, sizeof(arg));
    return rc < 0 ? -errno : (int)rc;
}

/* Before sleeping, a shard that just did some work watches its rings and inbox for a while
 * (tpc_config.spin_ns): a message or reply that lands within it costs no wake-up, which is an
 * eventfd write and a thread wake (~10 us on this project's VM). Returns true if work came. */
/* Checks between two readings of the clock while spinning: a clock read costs about as much as
 * 64 checks of the inbox and the doorbells. */
#define SPIN_CHECKS 64

static bool spin_for_work(struct tpc__shard *s, int64_t timeout)
{
    uint64_t limit = (uint64_t)s->spin_ns;
    s->n_spins++;
    if (timeout > 0 && (uint64_t)timeout < limit)
        limit = (uint64_t)timeout;
    uint64_t t0 = tpc__clock_ns();
    do {
        /* On epoll, readiness is not in memory the loop can watch: ask at each clock read (a
         * system call every SPIN_CHECKS checks, a few microseconds apart). */
        if (TPC_UNLIKELY(s->ep) && tpc__ep_peek(s))
            return true;
        for (int i = 0; i < SPIN_CHECKS; i++) {
            if (atomic_load_explicit(&s->inbox, memory_order_relaxed) || tpc__rings_ready(s) ||
                io_pending(s) ||
                (atomic_load_explicit(&s->rt->stop, memory_order_relaxed) && !s->stopping))
                return true;
            CPU_RELAX();
        }
    } while (tpc__clock_ns() - t0 < limit);
    return false;
}

static size_t run_phase(struct tpc__shard *s)
{
    /* Run until the queue is empty or the phase's task quota is spent, so that I/O completions,
     * inbound messages and timers are looked at least every TPC_PHASE_TASKS tasks. Fibers that
     * hand over to each other directly (task.c) spend the same quota. */
    s->phase_left = TPC_PHASE_TASKS;
    uint64_t now = s->slice_start = s->now = tpc__clock_ns(); /* for tpc_maybe_yield, tpc_now */
    s->now_valid = true;
    /* The last loop iteration's work, its sleep excluded (core/metrics.c). */
    if (TPC_LIKELY(s->m.loop_t0 != 0))
        tpc__hist_add(&s->m.loop, now - s->m.loop_t0 - (s->n_sleep_ns - s->m.slept0));
    s->m.loop_t0 = now;
    s->m.slept0 = s->n_sleep_ns;
    size_t ran = 0;
    while (s->runq.head && tpc__phase_goes_on(s)) {
        s->phase_left--;
        tpc__shuffle_runq(s);
        struct tpc__task *t = (struct tpc__task *)tpc__queue_pop(&s->runq);
        t->queued = 0;
        TPC__UNYIELD(t);
        s->n_tasks++;
        ran++;
        uint64_t t0 = 0;
        if (TPC_UNLIKELY(--s->m.sample == 0)) { /* one task in TPC__TASK_SAMPLE is timed */
            s->m.sample = TPC__TASK_SAMPLE;
            t0 = tpc__clock_ns();
        }
        if (t->kind == TPC__TASK_FIBER)
            tpc__run_fiber(s, (tpc_fiber *)t);
        else
            tpc__run_callback(s, (struct tpc__callback *)t);
        if (TPC_UNLIKELY(t0 != 0))
            tpc__hist_add(&s->m.task, tpc__clock_ns() - t0);
    }
    return ran;
}

/* Phase 2: messages from other shards (the rings whose doorbells rang), then from threads that
 * are not shards (the inbox). True if any ran. */
static inline bool poll_messages(struct tpc__shard *s)
{
    bool worked = tpc__rings_poll(s);
    if (atomic_load_explicit(&s->inbox, memory_order_relaxed)) {
        drain_inbox(s, NULL);
        worked = true;
    }
    tpc_list *n;
    while (TPC_UNLIKELY((n = tpc__list_first(&s->turn_waiters)) != NULL)) /* tpc__park_turn */
        tpc__wake(tpc__container_of(n, struct tpc__wait, node), 0);
    return worked;
}

/* A stopping shard may leave: nothing alive, queued, in flight, in its rings, or owed to a shard
 * still running. */
static inline bool may_leave(struct tpc__shard *s)
{
    return s->nlive == 0 && !s->runq.head && s->inflight == 0 && !atomic_load(&s->inbox) &&
           !tpc__rings_ready(s) && !tpc__rings_owe(s);
}

/* Phase 3: once the runtime stops, cancel every fiber (once); true when the shard may leave. */
static inline bool stop_phase(struct tpc__shard *s)
{
    if (TPC_LIKELY(!atomic_load_explicit(&s->rt->stop, memory_order_acquire)))
        return false;
    if (!s->stopping) {
        s->stopping = true;
        tpc__fiber_cancel_all(s);
        /* From now on a stop signal takes its default action: a fiber that ignores its
         * cancellation cannot hold the process against the operator's next SIGTERM. */
        if (s->rt->signals)
            pthread_sigmask(SIG_UNBLOCK, &s->rt->sigset, NULL);
    }
    return may_leave(s);
}

/* Phase 4: one kernel entry per loop where possible. New SQEs go in now only if the loop will
 * not sleep right after (fibers are runnable, or it will spin waiting for their completions);
 * otherwise the sleeping io_uring_enter submits them, saving a syscall per iteration (a
 * microsecond on this project's VM). The flag bounds the delay to one iteration whatever path
 * the loop takes. Completions are fetched when the kernel flags them (TASKRUN_FLAG) or, on
 * rings without that flag, while I/O is out. */
static inline void io_phase(struct tpc__shard *s, bool worked)
{
    if (TPC_UNLIKELY(s->ep)) {
        tpc__ep_poll(s, s->runq.head || s->submit_deferred, worked);
        s->submit_deferred = false;
        return;
    }
    if (TPC_UNLIKELY(IO_URING_READ_ONCE(*s->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW))
        s->n_cq_overflows++; /* flushed by the entry below (io_pending) */
    unsigned queued = io_uring_sq_ready(&s->ring);
    bool submit = queued && (s->runq.head || want_spin(s, worked) || s->submit_deferred);
    if (submit || io_pending(s) || (s->inflight && !(s->ring_flags & IORING_SETUP_TASKRUN_FLAG))) {
        int n = io_uring_submit_and_get_events(&s->ring);
        if (n > 0)
            s->n_io_submitted += (unsigned)n;
        s->n_io_enters++;
        s->submit_deferred = false;
    } else {
        s->submit_deferred = queued != 0;
    }
    reap(s);
}

/* Blocks in the kernel (ppoll on the ring under valgrind) until a completion, a wake-up or
 * `timeout` ns (<= 0: none); then reaps. */
static void block(struct tpc__shard *s, int64_t timeout)
{
    if (TPC_UNLIKELY(s->ep)) {
        tpc__ep_block(s, timeout);
        return;
    }
    int rc;
    uint64_t slept = tpc__clock_ns();
    s->n_io_submitted += io_uring_sq_ready(&s->ring);
    if (TPC_UNLIKELY(s->poll_wait)) {
        struct pollfd pfd = {.fd = s->ring.ring_fd, .events = POLLIN};
        if (io_uring_submit(&s->ring) > 0)
            s->n_io_enters++;
        struct timespec ts = {.tv_sec = timeout / 1000000000, .tv_nsec = timeout % 1000000000};
        rc = 0;
        if (!io_uring_cq_ready(&s->ring)) {
            s->n_io_enters++;
            rc = ppoll(&pfd, 1, timeout > 0 ? &ts : NULL, NULL);
        }
        rc = rc < 0 ? -errno : 0;
    } else {
        rc = sleep_in_kernel(s, timeout);
        s->n_io_enters++;
    }
    atomic_store(&s->sleeping, 0);
    s->submit_deferred = false;
    s->n_sleep_ns += tpc__clock_ns() - slept;
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
        fprintf(stderr, "libtpc: shard %u: io_uring_enter: %s\n", s->id, strerror(-rc));
        abort();
    }
    reap(s);
}

/* Phase 7: with nothing ready, spin briefly if the shard just worked, then announce sleep and
 * block until a completion, a wake-up or the next timer's tick. Returns at once when work
 * turns up on the way. */
static inline void sleep_phase(struct tpc__shard *s, bool worked)
{
    int64_t timeout = tpc__layers_timeout(s);
    if (!s->wake_armed)
        arm_wake(s);
    if (timeout == 0 || !s->wake_armed)
        return;
    if (TPC_UNLIKELY(s->stopping) && may_leave(s))
        return; /* the last work in flight ended in phases 4-5 (a layer's, with no fiber) */
    if (want_spin(s, worked) && spin_for_work(s, timeout))
        return;
    if (tpc__rings_cool(s))
        return;
    atomic_store(&s->sleeping, 1);
    /* (stopping: a shard this one owed messages may have left, and woken it, since the check
     * above, finding it not yet asleep: leave_loop stores `left`, then wakes.) */
    if (atomic_load(&s->inbox) || tpc__rings_rung(s) ||
        (atomic_load(&s->rt->stop) && !s->stopping) || (s->stopping && may_leave(s))) {
        atomic_store(&s->sleeping, 0);
        return;
    }
    if (s->batch_auto)
        measure_load(s, s->now);
    tpc__metrics_publish(s);
    block(s, timeout);
}

/* After the loop: close the inbox (messages that arrived since the last check still run, their
 * senders were told 0, with what they queue here; later senders get -ESHUTDOWN), and tell the
 * shards that still owe this one messages to stop waiting for room (tpc__rings_owe). */
static void leave_loop(struct tpc__shard *s)
{
    drain_inbox(s, INBOX_CLOSED);
    while (s->runq.head || tpc__rings_ready(s)) {
        run_phase(s);
        tpc__rings_poll(s);
    }
    tpc__rings_flush(s);
    tpc__metrics_publish(s);
    atomic_store(&s->left, 1);
    for (unsigned i = 0; i < s->rt->nshards; i++)
        if (i != s->id)
            tpc__shard_wake(s->rt->shards[i]);
}

/* The loop, one phase per line, in the order of docs/design.md's list. */
void tpc__shard_loop(struct tpc__shard *s)
{
    for (;;) {
        s->n_loops++;
        atomic_store_explicit(&s->beat, s->n_loops, memory_order_relaxed); /* core/stall.c */
        if (TPC_UNLIKELY((s->n_loops & 63) == 0))
            tpc__metrics_publish(s);    /* core/metrics.c */
        bool worked = run_phase(s) > 0; /* 1 */
        worked |= poll_messages(s);     /* 2 */
        if (stop_phase(s))              /* 3 */
            break;
        io_phase(s, worked); /* 4 */
        tpc__layers_poll(s); /* 5 */
        tpc__rings_flush(s); /* 6 */
        if (!s->runq.head)   /* 7 */
            sleep_phase(s, worked);
    }
    leave_loop(s);
}
