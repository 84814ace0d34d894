/* Execution contexts: one per fiber plus the shard loop's own. The switch saves callee-saved
 * state only. One backend per file, chosen in meson: switch_x86_64.S, switch_aarch64.S, or the
 * portable switch_ucontext.c. */
#ifndef TPC_CORE_CONTEXT_H
#define TPC_CORE_CONTEXT_H

#include <stddef.h>

#ifdef TPC_CTX_UCONTEXT
#include <ucontext.h>
typedef struct tpc__ctx {
    ucontext_t uc;
} tpc__ctx;
#else
typedef struct tpc__ctx {
    void *sp;
} tpc__ctx;
#endif

/* Prepares ctx so that switching to it calls entry(arg) on the given stack. entry must never
 * return. */
void tpc__ctx_init(tpc__ctx *ctx, void *stack, size_t size, void (*entry)(void *), void *arg);

/* Saves the current context in from and resumes to. */
void tpc__ctx_switch(tpc__ctx *from, tpc__ctx *to);

#if defined(__x86_64__) && !defined(TPC_CTX_UCONTEXT)
/* Calls fn(arg) on the stack below stack_top (16-byte aligned) and returns when fn does; fn may
 * suspend its fiber (switch_x86_64.S). Not on the other backends: TPC__CTX_CALL says whether it
 * exists. */
#define TPC__CTX_CALL 1
void tpc__ctx_call(void *stack_top, void (*fn)(void *), void *arg);
#endif

/* For a signal handler on this thread: true if the signal interrupted a switch, given the
 * interrupted context (the handler's third argument). Half-way through a switch the stack
 * pointer already points at the other context's saved registers, which no unwinder can walk:
 * the stall detector takes no backtrace then. */
int tpc__ctx_switching(const void *ucontext);

#endif
