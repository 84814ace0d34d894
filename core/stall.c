/* The stall detector. A shard that has not come back to its loop for longer than stall_ms
 * (tpc_config.stall_ms, TPC_STALL_MS; 25 ms by default) is reported on stderr: which shard and
 * CPU, for how long, the running fiber's name and where it was spawned, and a backtrace of the
 * stalled thread, each line prefixed by the shard so that reports of several shards stay
 * apart. It reports again at doubling intervals while the stall lasts (25, 50, 100 ms ...).
 *
 * The shard's only cost is the loop counter it already keeps, stored where another thread may
 * read it (one relaxed store per loop iteration). A watchdog thread per runtime looks at every
 * shard each stall_ms / 2: a shard that is not asleep and whose counter has not moved since the
 * last look is stalled. To get the stalled thread's backtrace, the watchdog sends it
 * TPC__STALL_SIGNAL; the handler runs on that thread, on its alternate signal stack, in the
 * middle of whatever it was doing, and only takes a snapshot (the fiber, its spawn site, the
 * return addresses on its stack); the watchdog then formats the report and writes it, so that a
 * slow or full stderr holds up the watchdog, never the shard. The report gives the
 * thread's CPU time during the stall too: close to the stall's length, the shard computed; far
 * below, it blocked in a system call or the kernel ran other threads. Symbols come from
 * dladdr(), so functions not exported (static ones, or a stripped binary) show as an offset in
 * their object: addr2line -e OBJECT OFFSET names them. The process's first report ends with how
 * to see every fiber, waiting ones too, in gdb (gdb/libtpc-gdb.py). A watchdog that wakes more
 * than a second late was stopped with the whole process (by a debugger, or a suspended machine)
 * and starts its watches afresh instead of reporting that pause as a stall. */
#include <dlfcn.h>
#include <execinfo.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include "internal.h"
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif

#define TPC__STALL_SIGNAL (SIGRTMIN + 4)
#ifndef TPC_GDB_SCRIPT /* where meson installs the gdb extension (meson.build) */
#define TPC_GDB_SCRIPT "libtpc-gdb.py"
#endif
/* A watchdog that wakes this late (ns) was paused itself (watchdog()). */
#define PAUSED_NS 1000000000u

/* Appends a formatted piece to buf (n bytes used of cap), never past its end. */
static size_t put(char *buf, size_t n, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *buf, size_t n, size_t cap, const char *fmt, ...)
{
    if (n >= cap)
        return n;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
    return k < 0 ? n : n + (size_t)k < cap ? n + (size_t)k : cap - 1;
}

/* "name+0xoff (object)" for code address pc. */
static size_t put_symbol(char *buf, size_t n, size_t cap, const void *pc)
{
    Dl_info info;
    if (!pc || !dladdr(pc, &info) || !info.dli_fname)
        return put(buf, n, cap, "%p", pc);
    const char *obj = strrchr(info.dli_fname, '/');
    obj = obj ? obj + 1 : info.dli_fname;
    if (info.dli_sname)
        return put(buf, n, cap, "%s+0x%lx (%s)", info.dli_sname,
                   (unsigned long)((const char *)pc - (const char *)info.dli_saddr), obj);
    return put(buf, n, cap, "%s+0x%lx", obj,
               (unsigned long)((const char *)pc - (const char *)info.dli_fbase));
}

static void say(const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t k = write(STDERR_FILENO, buf, n);
        if (k <= 0)
            return;
        buf += k;
        n -= (size_t)k;
    }
}

/* On the stalled shard's thread: only takes the snapshot (what runs, and where); the watchdog
 * formats and writes it, so that a slow or full stderr never holds up the shard. */
static void on_stall_signal(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info;
    struct tpc__shard *s = tpc__self;
    if (!s)
        return;
    struct tpc__stall_snap *snap = &s->stall;
    int asked = SNAP_ASKED; /* only an asked-for snapshot, and only once */
    if (!atomic_compare_exchange_strong(&snap->state, &asked, SNAP_WRITING))
        return;
    int saved = errno;
    tpc_fiber *f = s->current;
    snap->in_fiber = f != NULL;
    if (f) {
        memcpy(snap->name, f->name, sizeof(snap->name));
        snap->spawn_site = f->spawn_site;
    }
    /* Half-way through a context switch the stack cannot be walked (the unwinder would read the
     * other context's saved registers as frames): no backtrace then, only the names. */
    snap->depth = tpc__ctx_switching(uc) ? 0 : backtrace(snap->frames, TPC__STALL_FRAMES);
    atomic_store_explicit(&snap->state, SNAP_DONE, memory_order_release);
    errno = saved;
}

/* On the watchdog's thread: the report of shard s's stall, from the snapshot if it came. */
static void report(struct tpc__shard *s, uint64_t ms, uint64_t cpu_ms, bool taken)
{
    struct tpc__stall_snap *snap = &s->stall;
    char text[8192]; /* the whole report, lines ending in \n, handed over at once */
    size_t cap = sizeof(text);
    size_t n =
        put(text, 0, cap, "libtpc: shard %u (cpu %d): stalled for %llu ms (%llu ms on the CPU) in ",
            s->id, s->cpu, (unsigned long long)ms, (unsigned long long)cpu_ms);
    if (!taken) {
        n = put(text, n, cap, "a task it did not say (no snapshot within 100 ms)");
    } else if (snap->in_fiber) {
        n = put(text, n, cap, "fiber '%.*s' spawned at ", (int)sizeof(snap->name), snap->name);
        n = put_symbol(text, n, cap, snap->spawn_site);
    } else {
        n = put(text, n, cap, "the loop itself (a callback, timer or message)");
    }
    n = put(text, n, cap,
            taken && !snap->depth ? " (caught in a context switch: no backtrace)\n" : "\n");
    for (int i = 2; taken && i < snap->depth; i++) { /* 0, 1: the handler, the signal frame */
        n = put(text, n, cap, "libtpc: shard %u: #%d ", s->id, i - 2);
        n = put_symbol(text, n, cap, snap->frames[i]);
        n = put(text, n, cap, "\n");
    }
    static _Atomic bool hinted; /* once per process */
    if (!atomic_exchange(&hinted, true))
        n = put(text, n, cap,
                "libtpc: shard %u: to list every fiber with gdb: gdb -p %d, then: source %s, "
                "tpc fibers\n",
                s->id, (int)getpid(), TPC_GDB_SCRIPT);
    if (s->rt->config.stall_fn)
        s->rt->config.stall_fn(s->rt->config.stall_arg, (int)s->id, text);
    else
        say(text, n);
}

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void install_handler(void)
{
    void *warm[1];
    backtrace(warm, 1); /* loads the unwinder now, not inside a signal handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_stall_signal;
    sa.sa_flags = SA_ONSTACK | SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(TPC__STALL_SIGNAL, &sa, NULL);
}

/* Asks shard s's thread for a snapshot and waits up to 100 ms for it. True: it is there to
 * read; the caller then gives it back (SNAP_IDLE). The states make every access ordered: the
 * handler writes only after taking SNAP_ASKED, which the watchdog stores after its last read. */
static bool wait_for(struct tpc__stall_snap *snap, int want)
{
    for (int i = 0; i < 100; i++) {
        if (atomic_load_explicit(&snap->state, memory_order_acquire) == want)
            return true;
        struct timespec ms1 = {0, 1000000};
        nanosleep(&ms1, NULL);
    }
    return false;
}

static bool snapshot(struct tpc__shard *s)
{
    struct tpc__stall_snap *snap = &s->stall;
    int st = atomic_load_explicit(&snap->state, memory_order_acquire);
    if (st == SNAP_DONE) /* a late one from an earlier stall: drop it */
        atomic_store_explicit(&snap->state, st = SNAP_IDLE, memory_order_release);
    if (st != SNAP_IDLE)
        return false; /* a handler is still writing the last one */
    atomic_store_explicit(&snap->state, SNAP_ASKED, memory_order_release);
    /* By thread id, not pthread_t: the thread may have exited, and the signal is then lost
     * (ESRCH), never sent through a freed descriptor. */
    if (syscall(SYS_tgkill, getpid(), s->tid, TPC__STALL_SIGNAL) == 0 && wait_for(snap, SNAP_DONE))
        return true;
    int asked = SNAP_ASKED; /* withdraw the request, unless the handler took it meanwhile */
    if (atomic_compare_exchange_strong(&snap->state, &asked, SNAP_IDLE))
        return false;
    return wait_for(snap, SNAP_DONE); /* it did: it finishes quickly */
}

/* What the watchdog remembers of each shard between two looks. */
struct watch {
    uint64_t beat;    /* the shard's loop counter at the last look */
    uint64_t since;   /* when it was last seen moving (or asleep), ns */
    uint64_t cpu;     /* its thread's CPU time at the first look that saw it stuck, ns */
    uint64_t cpu_at;  /* when that was, ns; 0: not read yet */
    uint64_t next_ms; /* report when the stall reaches this long; doubles */
    bool counted;     /* this stall is in n_stalls */
};

static uint64_t thread_cpu_ns(pid_t tid)
{
    struct timespec ts;
    if (clock_gettime(TPC__THREAD_CPUCLOCK(tid), &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The scheduler state of thread tid ('R': running or waiting for a CPU, 'S', 'D' ...), or 0. */
static char thread_state(pid_t tid)
{
    char path[64], text[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    const char *end = strrchr(text, ')'); /* the name may hold spaces and parentheses */
    return end && end[1] == ' ' ? end[2] : 0;
}

/* One look at shard s. Returns true if it is awake (running or about to). paused: the watchdog
 * itself was held up (below), so a counter that stood still says nothing. */
static bool look(struct tpc__shard *s, struct watch *w, uint64_t now, uint64_t stall_ms,
                 uint64_t slice_ns, bool paused)
{
    uint64_t beat = atomic_load_explicit(&s->beat, memory_order_relaxed);
    if (atomic_load_explicit(&s->left, memory_order_relaxed))
        return false; /* out of its loop for good */
    bool asleep = atomic_load_explicit(&s->sleeping, memory_order_relaxed);
    if (beat != w->beat || asleep || paused) {
        w->beat = beat;
        w->since = now;
        w->cpu_at = 0;
        w->next_ms = stall_ms;
        w->counted = false;
        return !asleep;
    }
    /* The same run phase since `since`: once it has lasted a time slice, tpc_maybe_yield
     * yields (core/task.c). */
    if (now - w->since >= slice_ns &&
        atomic_load_explicit(&s->preempt_beat, memory_order_relaxed) != beat)
        atomic_store_explicit(&s->preempt_beat, beat, memory_order_relaxed);
    if (!w->cpu_at) { /* read here, not at every look: a system call */
        w->cpu = thread_cpu_ns(s->tid);
        w->cpu_at = now;
    }
    uint64_t ms = (now - w->since) / 1000000;
    if (ms < w->next_ms)
        return true;
    /* CPU time since the first look that saw the stall, scaled to the whole stall. */
    uint64_t cpu = thread_cpu_ns(s->tid), seen = now - w->cpu_at;
    uint64_t cpu_ms =
        cpu > w->cpu && seen
            ? (uint64_t)((double)(cpu - w->cpu) / (double)seen * (double)(now - w->since) / 1e6)
            : 0;
    if (cpu_ms > ms)
        cpu_ms = ms;
    /* Mostly off the CPU while runnable: other threads had the CPU (a busy machine), not the
     * program's code; not a stall of the shard's. (Off the CPU while blocked in a system call
     * is one, and is reported.) */
    w->next_ms *= 2; /* (not reported: looked at again at twice the time) */
    if (cpu_ms * 4 < ms && thread_state(s->tid) == 'R')
        return true;
    if (!w->counted) /* one stall, however many reports */
        atomic_fetch_add_explicit(&s->n_stalls, 1, memory_order_relaxed);
    w->counted = true;
    bool taken = snapshot(s);
    report(s, ms, cpu_ms, taken);
    if (taken)
        atomic_store_explicit(&s->stall.state, SNAP_IDLE, memory_order_release);
    return true;
}

static struct timespec ns_to_ts(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
                             .tv_nsec = (long)(ns % 1000000000u)};
}

/* The watchdog looks at every shard each stall_ms / 2; while some shard that calls
 * tpc_maybe_yield is awake, each time slice instead (no more often than every 100 us), so that
 * the flag it raises is at most one slice late. A program that never calls tpc_maybe_yield, or
 * whose shards sleep, wakes it only at the slow pace. */
static void *watchdog(void *p)
{
    struct tpc_runtime *rt = p;
    uint64_t stall_ms = (uint64_t)rt->config.stall_ms;
    struct watch *w = calloc(rt->nshards, sizeof(*w));
    if (!w)
        return NULL;
    uint64_t now = tpc__clock_ns();
    for (unsigned i = 0; i < rt->nshards; i++) {
        w[i] = (struct watch){.since = now, .next_ms = stall_ms};
        atomic_store_explicit(&rt->shards[i]->watched, true, memory_order_relaxed);
    }
    uint64_t slow = stall_ms * 500000u, slice = rt->config.time_slice_ns;
    if (slow < 1000000)
        slow = 1000000;
    uint64_t fast = slice < slow ? slice : slow;
    if (fast < 100000)
        fast = 100000;
    bool awake = false;
    pthread_mutex_lock(&rt->lock);
    while (!rt->watchdog_stop) {
        bool quick = awake && atomic_load_explicit(&rt->slices_wanted, memory_order_relaxed);
        struct timespec until, d = ns_to_ts(quick ? fast : slow);
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += d.tv_sec;
        until.tv_nsec += d.tv_nsec;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&rt->watchdog_cond, &rt->lock, &until);
        if (rt->watchdog_stop)
            break;
        pthread_mutex_unlock(&rt->lock);
        now = tpc__clock_ns();
        /* Woken more than a second late, the watchdog was stopped with the rest of the process
         * (by a debugger, or the machine was suspended): the shards' counters stood still because
         * everything did, so every watch starts afresh rather than report the pause. */
        uint64_t due = (uint64_t)until.tv_sec * 1000000000u + (uint64_t)until.tv_nsec;
        bool paused = now > due + PAUSED_NS;
        awake = false;
        for (unsigned i = 0; i < rt->nshards; i++)
            awake |= look(rt->shards[i], &w[i], now, stall_ms, slice, paused);
        pthread_mutex_lock(&rt->lock);
    }
    pthread_mutex_unlock(&rt->lock);
    free(w);
    return NULL;
}

void tpc__stall_want_slices(struct tpc__shard *s)
{
    s->wants_slices = true;
    struct tpc_runtime *rt = s->rt;
    if (atomic_exchange_explicit(&rt->slices_wanted, true, memory_order_relaxed))
        return;
    pthread_mutex_lock(&rt->lock); /* once per runtime: look at the slice's pace from now on */
    if (!rt->watchdog_stop)
        pthread_cond_signal(&rt->watchdog_cond);
    pthread_mutex_unlock(&rt->lock);
}

bool tpc__stall_off_by_default(void)
{
#if __has_include(<valgrind/valgrind.h>)
    return RUNNING_ON_VALGRIND != 0;
#else
    return false;
#endif
}

void tpc__stall_prepare(const tpc_config *c)
{
    if (c->stall_ms > 0)
        pthread_once(&handler_once, install_handler);
}

int tpc__stall_start(struct tpc_runtime *rt)
{
    if (rt->config.stall_ms <= 0)
        return 0;
    pthread_once(&handler_once, install_handler);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->watchdog_cond, &ca);
    pthread_condattr_destroy(&ca);
    sigset_t all, old; /* the watchdog takes no signal meant for the shards */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&rt->watchdog, NULL, watchdog, rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&rt->watchdog_cond);
        return -rc;
    }
    rt->watchdog_running = true;
    return 0;
}

void tpc__stall_stop(struct tpc_runtime *rt)
{
    if (!rt->watchdog_running)
        return;
    for (unsigned i = 0; i < rt->nshards; i++) /* tpc_maybe_yield reads the clock again */
        atomic_store_explicit(&rt->shards[i]->watched, false, memory_order_relaxed);
    pthread_mutex_lock(&rt->lock);
    rt->watchdog_stop = true;
    pthread_cond_signal(&rt->watchdog_cond);
    pthread_mutex_unlock(&rt->lock);
    pthread_join(rt->watchdog, NULL);
    pthread_cond_destroy(&rt->watchdog_cond);
    rt->watchdog_running = false;
}
