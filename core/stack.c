/* Fiber stacks: mmap'd with a guard page below (carved from slabs, a class per size), pooled
 * per shard (LIFO, so the most recently used, cache-warm stack is reused first), and a SIGSEGV
 * handler on an alternate signal stack that names the fiber whose stack overflowed into its
 * guard page. */
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

/* A pooled stack keeps its free-list record at its top, in the page the fiber used last, so
 * that pooling never touches (and faults in) a page the fiber did not. */
static struct tpc__stack *top_of(void *stack, size_t size)
{
    return (struct tpc__stack *)((char *)stack + size) - 1;
}

static void *pop(struct tpc__stack **list, unsigned *n, size_t size)
{
    struct tpc__stack *st = *list;
    if (!st || st->size != size)
        return NULL;
    *list = st->next;
    (*n)--;
    return (char *)(st + 1) - size;
}

size_t tpc__page_round(size_t size)
{
    size_t ps = page_size();
    return (size + ps - 1) & ~(ps - 1);
}

/* ---- Slabs: guarded stacks of one size, SLAB_STACKS to a mapping. ----
 * One mapping per stack costs a munmap (and its TLB shootdown on every CPU the process runs
 * on) per stack at shutdown, and two kernel mappings per stack with the guard page: Linux
 * allows 65,530 mappings per process by default. A slab holds SLAB_STACKS stacks, each with its
 * guard page below it. Where the kernel has MADV_GUARD_INSTALL (Linux 6.13) the guards do not
 * split the mapping; elsewhere mprotect puts them in (the old cost in mappings, one munmap per
 * slab). Stacks of a slab are never unmapped one by one: a freed stack goes to the pool, and
 * past the pool's size its pages are given back to the kernel (MADV_DONTNEED, all of them: it
 * is listed in an array, not by a record in its top page, which kept 4 KiB resident per stack
 * and made a proxy's parked connection cost 1 KB more). Slabs are unmapped when the shard
 * exits. Each size has its slabs and pools (a class): the default size, and the first
 * TPC__STACK_CLASSES - 1 other sizes asked for (a server's connections, say); a size beyond
 * those gets a mapping of its own per stack, its guard put in the same way. */
#define SLAB_STACKS 16

struct tpc__slab {
    struct tpc__slab *next;
    char *base;
    size_t len;
    size_t size;   /* of each stack (the guard page below it not counted) */
    unsigned used; /* slots handed out so far */
};

static int guard_install(char *page, size_t ps)
{
    static _Atomic int no_madv_guard; /* the kernel refused it once: do not ask again */
    if (!atomic_load_explicit(&no_madv_guard, memory_order_relaxed)) {
        if (madvise(page, ps, MADV_GUARD_INSTALL) == 0)
            return 0;
        atomic_store_explicit(&no_madv_guard, 1, memory_order_relaxed);
    }
    return mprotect(page, ps, PROT_NONE) == 0 ? 0 : -ENOMEM;
}

/* The class of guarded stacks of size (page-rounded), made if add and a class is free; or NULL. */
static struct tpc__stack_class *class_of(struct tpc__shard *s, size_t size, bool add)
{
    struct tpc__stack_class *c = s->stk;
    if (size == s->rt->stack_size) {
        if (!c->size) /* (once: no store on every spawn) */
            c->size = size;
        return c;
    }
    for (unsigned i = 1; i < TPC__STACK_CLASSES; i++)
        if (c[i].size == size || (add && c[i].size == 0)) {
            c[i].size = size;
            return &c[i];
        }
    return NULL;
}

static void *slab_take(struct tpc__stack_class *c)
{
    size_t ps = page_size(), slot = c->size + ps;
    struct tpc__slab *sl = c->slabs;
    if (!sl || sl->used == SLAB_STACKS) {
        if (!(sl = malloc(sizeof(*sl))))
            return NULL;
        sl->len = slot * SLAB_STACKS;
        sl->base = mmap(NULL, sl->len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (sl->base == MAP_FAILED) {
            free(sl);
            return NULL;
        }
        sl->size = c->size;
        sl->used = 0;
        sl->next = c->slabs;
        c->slabs = sl;
    }
    char *guard = sl->base + (size_t)sl->used * slot;
    if (guard_install(guard, ps) < 0)
        return NULL;
    sl->used++;
    return guard + ps;
}

int tpc__stack_sample(struct tpc__shard *s, void **pages, int max)
{
    size_t ps = page_size(), total = 0;
    for (unsigned i = 0; i < TPC__STACK_CLASSES; i++)
        for (struct tpc__slab *sl = s->stk[i].slabs; sl; sl = sl->next)
            total += sl->used * (sl->size / ps);
    size_t step = total > (size_t)max ? (total + (size_t)max - 1) / (size_t)max : 1;
    size_t k = 0; /* index among the stacks' pages, guards left out */
    int n = 0;
    for (unsigned i = 0; i < TPC__STACK_CLASSES; i++)
        for (struct tpc__slab *sl = s->stk[i].slabs; sl && n < max; sl = sl->next)
            for (unsigned u = 0; u < sl->used; u++)
                for (size_t off = 0; off < sl->size && n < max; off += ps, k++)
                    if (k % step == 0)
                        pages[n++] = sl->base + u * (sl->size + ps) + ps + off;
    return n;
}

unsigned tpc__stacks_pooled(const struct tpc__shard *s)
{
    unsigned n = s->nnog;
    for (unsigned i = 0; i < TPC__STACK_CLASSES; i++)
        n += s->stk[i].nhot + s->stk[i].ncold;
    return n;
}

int tpc__stack_alloc(struct tpc__shard *s, size_t size, bool guard, void **stack)
{
    size_t ps = page_size();
    size = (size + ps - 1) & ~(ps - 1);
    struct tpc__stack_class *c = guard ? class_of(s, size, true) : NULL;
    void *p;
    if (c) {
        if (!(p = pop(&c->hot, &c->nhot, size)) && !(p = c->ncold ? c->cold[--c->ncold] : NULL) &&
            !(p = slab_take(c)))
            return -ENOMEM;
        *stack = p;
        return 0;
    }
    if (!guard && (p = pop(&s->nog_stacks, &s->nnog, size))) {
        *stack = p;
        return 0;
    }
    size_t guard_size = guard ? ps : 0; /* unguarded neighbours merge into one mapping */
    char *base = mmap(NULL, size + guard_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return -ENOMEM;
    if (guard && guard_install(base, ps) != 0) {
        munmap(base, size + ps);
        return -ENOMEM;
    }
    *stack = base + guard_size;
    return 0;
}

static void push(struct tpc__stack **list, unsigned *n, void *stack, size_t size)
{
    struct tpc__stack *st = top_of(stack, size);
    st->next = *list;
    st->size = size;
    *list = st;
    (*n)++;
}

/* Room in c's list of cold stacks for one more (the list grows only as stacks go cold). */
static bool cold_room(struct tpc__stack_class *c)
{
    if (c->ncold < c->cap_cold)
        return true;
    unsigned cap = c->cap_cold ? 2 * c->cap_cold : 64;
    void **v = realloc(c->cold, cap * sizeof(*v));
    if (!v)
        return false;
    c->cold = v;
    c->cap_cold = cap;
    return true;
}

void tpc__stack_free(struct tpc__shard *s, void *stack, size_t size, bool guard)
{
#ifdef TPC_ASAN
    /* Frames of a fiber that exited by switching away stay poisoned: clear them for reuse. */
    ASAN_UNPOISON_MEMORY_REGION(stack, size);
#endif
    struct tpc__stack_class *c = guard ? class_of(s, size, false) : NULL;
    if (c) { /* from a slab (a class, once made, stays: its stacks all came from it) */
        if (atomic_load_explicit(&s->left, memory_order_relaxed))
            return; /* the shard is exiting: its slabs go whole */
        if (c->nhot < s->rt->stack_cache || !cold_room(c)) { /* (no room: kept hot) */
            push(&c->hot, &c->nhot, stack, size);
        } else {
            madvise(stack, size, MADV_DONTNEED);
            c->cold[c->ncold++] = stack;
        }
        return;
    }
    /* Unguarded ones are pooled at any size, though only a run of one size is reused (the
     * pool is LIFO and checks the head). */
    if (!guard && s->nnog < s->rt->stack_cache) {
        push(&s->nog_stacks, &s->nnog, stack, size);
        return;
    }
    size_t guard_size = guard ? page_size() : 0;
    munmap((char *)stack - guard_size, size + guard_size);
}

void tpc__stack_pool_drain(struct tpc__shard *s)
{
    for (unsigned i = 0; i < TPC__STACK_CLASSES; i++) {
        struct tpc__stack_class *c = &s->stk[i];
        c->hot = NULL; /* in the slabs */
        free(c->cold);
        c->cold = NULL;
        c->nhot = c->ncold = c->cap_cold = 0;
        while (c->slabs) {
            struct tpc__slab *sl = c->slabs;
            c->slabs = sl->next;
            munmap(sl->base, sl->len);
            free(sl);
        }
    }
    void *p;
    size_t size;
    while (s->nog_stacks && (size = s->nog_stacks->size, p = pop(&s->nog_stacks, &s->nnog, size)))
        munmap(p, size);
}

/* ---- Stack overflow report. ---- */

static struct sigaction old_segv, old_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    struct tpc__shard *s = tpc__self;
    tpc_fiber *f = s ? s->current : NULL;
    char *addr = si->si_addr;
    if (f && f->stack && f->guard && addr < (char *)f->stack &&
        addr >= (char *)f->stack - page_size()) {
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
