/* Fiber stacks: mmap'd with a PROT_NONE guard page below, pooled per shard (LIFO, so the most
 * recently used, cache-warm stack is reused first), and a SIGSEGV handler on an alternate
 * signal stack that names the fiber whose stack overflowed into its guard page. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

#ifdef TPC_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define ALTSTACK_SIZE (64u * 1024)

static size_t page_size(void)
{
    /* Shards of several runtimes may race to fill it in; they all write the same value. */
    static _Atomic size_t ps;
    size_t v = atomic_load_explicit(&ps, memory_order_relaxed);
    if (!v) {
        v = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&ps, v, memory_order_relaxed);
    }
    return v;
}

int tpc__stack_alloc(struct tpc__shard *s, size_t size, bool guard, void **stack)
{
    size_t ps = page_size();
    size = (size + ps - 1) & ~(ps - 1);
    if (!guard) { /* neighbouring unguarded stacks merge into one mapping */
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (p == MAP_FAILED)
            return -ENOMEM;
        *stack = p;
        return 0;
    }
    if (size == s->rt->stack_size && s->stacks) {
        struct tpc__stack *st = s->stacks;
        s->stacks = st->next;
        s->nstacks--;
        *stack = st;
        return 0;
    }
    char *base = mmap(NULL, size + ps, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return -ENOMEM;
    if (mprotect(base, ps, PROT_NONE) != 0) {
        munmap(base, size + ps);
        return -ENOMEM;
    }
    *stack = base + ps;
    return 0;
}

void tpc__stack_free(struct tpc__shard *s, void *stack, size_t size, bool guard)
{
#ifdef TPC_ASAN
    /* Frames of a fiber that exited by switching away stay poisoned: clear them for reuse. */
    ASAN_UNPOISON_MEMORY_REGION(stack, size);
#endif
    if (!guard) {
        munmap(stack, size);
        return;
    }
    if (size == s->rt->stack_size && s->nstacks < s->rt->stack_cache) {
        struct tpc__stack *st = stack;
        st->next = s->stacks;
        s->stacks = st;
        s->nstacks++;
        return;
    }
    munmap((char *)stack - page_size(), size + page_size());
}

void tpc__stack_pool_drain(struct tpc__shard *s)
{
    while (s->stacks) {
        struct tpc__stack *st = s->stacks;
        s->stacks = st->next;
        munmap((char *)st - page_size(), s->rt->stack_size + page_size());
    }
    s->nstacks = 0;
}

/* ---- Stack overflow report. ---- */

static struct sigaction old_segv, old_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    struct tpc__shard *s = tpc__self;
    tpc_fiber *f = s ? s->current : NULL;
    char *addr = si->si_addr;
    if (f && f->stack && f->guard && addr < (char *)f->stack && addr >= (char *)f->stack - page_size()) {
        char msg[160];
        int n = snprintf(msg, sizeof(msg),
                         "libtpc: stack overflow in fiber '%s' on shard %u (stack size %zu "
                         "bytes); aborting\n",
                         f->name, s->id, f->stack_size);
        if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0)
            n = 0;
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    /* Not ours: hand the signal to whoever had it before. */
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uctx);
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
    } else {
        signal(sig, SIG_DFL); /* return: the fault repeats and kills the process */
    }
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
}

int tpc__overflow_guard_init(struct tpc__shard *s)
{
    pthread_once(&handler_once, install_handler);
    s->altstack = malloc(ALTSTACK_SIZE);
    if (!s->altstack)
        return -ENOMEM;
    stack_t ss = {.ss_sp = s->altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        free(s->altstack);
        s->altstack = NULL;
        return -errno;
    }
    return 0;
}

void tpc__overflow_guard_fini(struct tpc__shard *s)
{
    if (!s->altstack)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(s->altstack);
    s->altstack = NULL;
}
