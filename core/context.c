/* Initial frames for the assembly switch backends: a new context's stack is laid out exactly
 * as tpc__ctx_switch() leaves a suspended one, with the trampoline as the return address. */
#include <stdint.h>
#include <string.h>
#include <ucontext.h>
#include "context.h"

void tpc__ctx_trampoline(void);
extern const char tpc__ctx_switch_end[];

int tpc__ctx_switching(const void *ucontext)
{
    const ucontext_t *uc = ucontext;
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.pc;
#endif
    return pc >= (uintptr_t)tpc__ctx_switch && pc < (uintptr_t)tpc__ctx_switch_end;
}

void tpc__ctx_init(tpc__ctx *ctx, void *stack, size_t size, void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Popped in order: csr word, r15, r14, r13, r12, rbx, rbp, then ret. The trampoline must
     * start with rsp 16-byte aligned so that its call gives entry the ABI's alignment. */
    uint64_t *sp = (uint64_t *)(top - 80);
    memset(sp, 0, 80);
    sp[0] = 0x1F80 | ((uint64_t)0x037F << 32); /* default MXCSR, x87 control word */
    sp[3] = (uint64_t)(uintptr_t)arg;          /* r13 */
    sp[4] = (uint64_t)(uintptr_t)entry;        /* r12 */
    sp[7] = (uint64_t)(uintptr_t)tpc__ctx_trampoline;
    ctx->sp = sp;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)entry;                /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;                  /* x20 */
    sp[11] = (uint64_t)(uintptr_t)tpc__ctx_trampoline; /* x30 */
    ctx->sp = sp;
#else
#error "no assembly context backend for this architecture: configure with -Dcontext=ucontext"
#endif
}
