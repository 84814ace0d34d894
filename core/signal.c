/* tpc_signal_wait: a fiber waits for chosen signals, read from a signalfd through its shard's
 * io_uring.
 *
 * A signal reaches a signalfd only while every thread that could take it blocks it. So the
 * first wait for a signal blocks it on every shard (tpc_on_all), and tpc_wait blocks all
 * asynchronous signals in the thread that waits for the runtime. Threads the application
 * created itself must block the signals too (best: before tpc_start, so that the shards
 * inherit the mask). */
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include "uring.h"

/* Signals that are sent to the thread that caused them, or cannot be caught at all. */
static bool unwaitable(int sig)
{
    return sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS || sig == SIGILL ||
           sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS;
}

/* On every shard: blocks every signal some fiber asked to wait for. It reads the set from the
 * runtime, not from the caller, whose frame may be gone by then (a wait that timed out). */
static int block_here(void *arg)
{
    struct tpc_runtime *rt = arg;
    sigset_t set;
    pthread_mutex_lock(&rt->lock);
    set = rt->sigwanted;
    pthread_mutex_unlock(&rt->lock);
    return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Checks set and blocks on every shard what is not blocked there yet, so that a signal in set
 * waits for a signalfd instead of its default action. Returns 0, -EINVAL, -EBUSY, or what
 * tpc_on_all returned. */
static int block_everywhere(struct tpc_runtime *rt, const sigset_t *set)
{
    bool any = false;
    sigset_t fresh; /* signals not blocked on every shard yet */
    sigemptyset(&fresh);
    pthread_mutex_lock(&rt->lock);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(set, sig) != 1)
            continue;
        if (unwaitable(sig)) {
            pthread_mutex_unlock(&rt->lock);
            return -EINVAL;
        }
        if (rt->signals && sigismember(&rt->sigset, sig) == 1) {
            pthread_mutex_unlock(&rt->lock);
            return -EBUSY; /* the runtime reads it for its shutdown: set no_signals */
        }
        if (sigismember(&rt->sigwaited, sig) != 1)
            sigaddset(&fresh, sig);
        any = true;
    }
    if (any && !sigisemptyset(&fresh))
        sigorset(&rt->sigwanted, &rt->sigwanted, &fresh);
    pthread_mutex_unlock(&rt->lock);
    if (!any)
        return -EINVAL;
    if (sigisemptyset(&fresh))
        return 0;
    int rc = tpc_on_all(block_here, rt);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&rt->lock);
    sigorset(&rt->sigwaited, &rt->sigwaited, &fresh);
    pthread_mutex_unlock(&rt->lock);
    return 0;
}

int tpc_signal_wait(const sigset_t *set, int *signo)
{
    TPC__CHECK_SUSPEND();
    struct tpc__shard *s = tpc__self;
    if (!set)
        return -EINVAL;
    int rc = block_everywhere(s->rt, set);
    if (rc < 0)
        return rc;
    int fd = signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct signalfd_siginfo info;
    struct tpc__io io;
    struct io_uring_sqe *sqe = tpc__sqe(s);
    if (!sqe) {
        rc = -EAGAIN;
    } else {
        io_uring_prep_read(sqe, fd, &info, sizeof(info), 0);
        rc = tpc__io_run(s, &io, sqe);
    }
    close(fd);
    if (rc < 0)
        return rc;
    TPC__KERNEL_WROTE(&info, rc);
    if (rc != (int)sizeof(info))
        return -EIO;
    if (signo)
        *signo = (int)info.ssi_signo;
    return 0;
}
