/* x86_64 System V context switch: saves rbp, rbx, r12-r15, MXCSR and the x87 control word on
 * the old stack, stores the stack pointer in from->sp and loads to->sp.
 *   void tpc__ctx_switch(tpc__ctx *from, tpc__ctx *to)
 * A new context starts in tpc__ctx_trampoline with r12 = entry, r13 = arg (see context.c). */
    .text
    .globl  tpc__ctx_switch
    .hidden tpc__ctx_switch
    .type   tpc__ctx_switch, @function
    .p2align 4
tpc__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    /* A plain ret. Fibers mostly suspend from one call site (task.c, switch_away), so the
     * return address the predictor expects is the one it gets. Leaving by pop+jmp looks faster
     * in a two-context microbenchmark but leaves the return stack buffer one entry off, and a
     * later ret mispredicts: measured here, yield 17-19 ns with pop+jmp, 9 ns with ret. */
    ret
    .cfi_endproc
    .globl  tpc__ctx_switch_end
    .hidden tpc__ctx_switch_end
tpc__ctx_switch_end: /* where the switch ends: a signal taken in between cannot be unwound */
    .size   tpc__ctx_switch, .-tpc__ctx_switch

/* void tpc__ctx_call(void *stack_top, void (*fn)(void *), void *arg)
 * Calls fn(arg) on another stack (stack_top 16-byte aligned) and returns when fn returns, on
 * the caller's stack: a fiber joined before it started runs as a call of its joiner (task.c),
 * with no registers saved or restored and every return where the predictor expects it. fn may
 * suspend its fiber and be resumed from anywhere: the caller's stack pointer waits in rbp, which
 * every switch keeps. fn starts with the default MXCSR and x87 control word, as a new context
 * does; the caller's are restored when it returns. */
    .globl  tpc__ctx_call
    .hidden tpc__ctx_call
    .type   tpc__ctx_call, @function
    .p2align 4
tpc__ctx_call:
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, %rbp
    .cfi_def_cfa_register rbp
    movq    %rdi, %rsp
    movq    %rdx, %rdi
    ldmxcsr tpc__ctx_fpu_default(%rip)
    fldcw   tpc__ctx_fpu_default+4(%rip)
    callq   *%rsi
    movq    %rbp, %rsp
    .cfi_def_cfa_register rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbp
    ret
    .cfi_endproc
    .size   tpc__ctx_call, .-tpc__ctx_call

    .section .rodata
    .p2align 3
tpc__ctx_fpu_default: /* MXCSR, x87 control word: what a new context starts with */
    .long   0x1F80
    .short  0x037F
    .text

    .globl  tpc__ctx_trampoline
    .hidden tpc__ctx_trampoline
    .type   tpc__ctx_trampoline, @function
    .p2align 4
tpc__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   tpc__ctx_trampoline, .-tpc__ctx_trampoline

    .section .note.GNU-stack, "", @progbits
