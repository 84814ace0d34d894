/* Portable context backend on ucontext: slower (swapcontext saves the signal mask with a
 * syscall) but works on any architecture glibc supports. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include "context.h"

/* Set on this thread while swapcontext runs (this backend's switch is slow anyway); cleared by
 * whichever context resumes, or starts. */
static __thread volatile sig_atomic_t in_switch;

static void start(unsigned hi, unsigned lo, unsigned ahi, unsigned alo)
{
    in_switch = 0; /* a new context: the switch that started it is over */
    void (*entry)(void *) = (void (*)(void *))(((uintptr_t)hi << 32) | lo);
    void *arg = (void *)(((uintptr_t)ahi << 32) | alo);
    entry(arg);
    abort();
}

void tpc__ctx_init(tpc__ctx *ctx, void *stack, size_t size, void (*entry)(void *), void *arg)
{
    uint64_t e = (uintptr_t)entry, a = (uintptr_t)arg;
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    makecontext(&ctx->uc, (void (*)(void))start, 4, (unsigned)(e >> 32), (unsigned)e,
                (unsigned)(a >> 32), (unsigned)a);
}

void tpc__ctx_switch(tpc__ctx *from, tpc__ctx *to)
{
    /* swapcontext gives every context its own signal mask; the signal mask is the thread's
     * (tpc_signal_wait blocks signals on the thread), so carry the current one over. */
    pthread_sigmask(SIG_SETMASK, NULL, &to->uc.uc_sigmask);
    in_switch = 1;
    swapcontext(&from->uc, &to->uc);
    in_switch = 0; /* (on the context that resumes: the same thread) */
}

int tpc__ctx_switching(const void *ucontext)
{
    (void)ucontext;
    return in_switch;
}
