/* AArch64 (AAPCS64) context switch: saves x19-x28, fp, lr, d8-d15 and FPCR in a 176-byte frame
 * on the old stack, stores sp in from->sp and loads to->sp.
 *   void tpc__ctx_switch(tpc__ctx *from, tpc__ctx *to)
 * A new context starts in tpc__ctx_trampoline with x19 = entry, x20 = arg (see context.c). */
    .text
    .globl  tpc__ctx_switch
    .hidden tpc__ctx_switch
    .type   tpc__ctx_switch, %function
    .p2align 4
tpc__ctx_switch:
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
    ldr     x9, [x1]
    mov     sp, x9
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldr     x9, [sp, #160]
    msr     fpcr, x9
    add     sp, sp, #176
    ret
    .globl  tpc__ctx_switch_end
    .hidden tpc__ctx_switch_end
tpc__ctx_switch_end: /* where the switch ends: a signal taken in between cannot be unwound */
    .size   tpc__ctx_switch, .-tpc__ctx_switch

    .globl  tpc__ctx_trampoline
    .hidden tpc__ctx_trampoline
    .type   tpc__ctx_trampoline, %function
    .p2align 4
tpc__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30 /* the outermost frame: unwinders (gdb) stop here */
    mov     x0, x20
    blr     x19
    brk     #0
    .cfi_endproc
    .size   tpc__ctx_trampoline, .-tpc__ctx_trampoline

    .section .note.GNU-stack, "", %progbits
