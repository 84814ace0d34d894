/* The context switch on its own: entry on an ABI-aligned stack, callee-saved integer and FP
 * registers preserved, FP control state (rounding mode) kept per context, many switches.
 * Built with cmocka in the suite; scripts/test.sh also cross-builds it for aarch64 with
 * -DTPC_TEST_STANDALONE and runs it under qemu, so both assembly backends are tested. */
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "context.h"

#ifdef TPC_TEST_STANDALONE
#define assert_true(c)                                                                             \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            printf("%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c);                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define assert_int_equal(a, b) assert_true((a) == (b))
#else
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#endif

static tpc__ctx main_ctx, co_ctx;
static volatile long co_counter;
static volatile int co_aligned, co_round;

static void co_entry(void *arg)
{
    _Alignas(16) volatile char probe[16];
    co_aligned = ((uintptr_t)probe % 16) == 0 && arg == (void *)&co_ctx;
    fesetround(FE_DOWNWARD); /* this context's own rounding mode */
    for (;;) {
        co_counter++;
        co_round = fegetround();
        tpc__ctx_switch(&co_ctx, &main_ctx);
    }
}

static void *new_stack(size_t size)
{
    void *p = malloc(size);
    assert_true(p != NULL);
    return p;
}

static void test_switch_basics(void **state)
{
    (void)state;
    void *stack = new_stack(64 * 1024);
    tpc__ctx_init(&co_ctx, stack, 64 * 1024, co_entry, &co_ctx);
    fesetround(FE_TONEAREST);
    tpc__ctx_switch(&main_ctx, &co_ctx);
    assert_true(co_aligned);
    assert_int_equal(co_counter, 1);
    /* The coroutine set FE_DOWNWARD; ours is unchanged, and its own persists. */
    assert_int_equal(fegetround(), FE_TONEAREST);
    assert_int_equal(co_round, FE_DOWNWARD);
    tpc__ctx_switch(&main_ctx, &co_ctx);
    assert_int_equal(co_round, FE_DOWNWARD);
    assert_int_equal(fegetround(), FE_TONEAREST);
    free(stack);
}

/* Many live integer and FP values across switches: whatever the compiler keeps in callee-saved
 * registers must survive. */
static volatile double co_fp_out;

/* One step of work on many locals, written once and used by both sides; a macro (not a
 * function) so that the locals stay in registers across the switch. */
#define FP_STEP(a, b, c, d, e, f, g, h)                                                            \
    do {                                                                                           \
        a = a * 1.0001 + b;                                                                        \
        b = b * 0.9999 + c;                                                                        \
        c = c + d * 0.5;                                                                           \
        d = d - e * 0.25;                                                                          \
        e = e + f;                                                                                 \
        f = f * 1.01;                                                                              \
        g = g + h;                                                                                 \
        h = h - 1.0;                                                                               \
    } while (0)

#define INT_STEP(i0, i1, i2, i3, i4, i5, x, y)                                                     \
    do {                                                                                           \
        i0 += i1;                                                                                  \
        i1 ^= i2;                                                                                  \
        i2 += i3 * 3;                                                                              \
        i3 -= i4;                                                                                  \
        i4 += i5;                                                                                  \
        i5 = i5 * 7 + 1;                                                                           \
        x = x * 1.5 + y;                                                                           \
        y = y * 0.5 + 1.0;                                                                         \
    } while (0)

static void fp_entry(void *arg)
{
    (void)arg;
    double a = 1.0, b = 2.0, c = 3.0, d = 4.0, e = 5.0, f = 6.0, g = 7.0, h = 8.0;
    for (;;) {
        FP_STEP(a, b, c, d, e, f, g, h);
        co_fp_out = a + b + c + d + e + f + g + h;
        tpc__ctx_switch(&co_ctx, &main_ctx);
    }
}

static double fp_reference(int rounds)
{
    double a = 1.0, b = 2.0, c = 3.0, d = 4.0, e = 5.0, f = 6.0, g = 7.0, h = 8.0, out = 0;
    for (int i = 0; i < rounds; i++) {
        FP_STEP(a, b, c, d, e, f, g, h);
        out = a + b + c + d + e + f + g + h;
    }
    return out;
}

static void test_registers_survive(void **state)
{
    (void)state;
    void *stack = new_stack(64 * 1024);
    tpc__ctx_init(&co_ctx, stack, 64 * 1024, fp_entry, NULL);
    unsigned long i0 = 11, i1 = 13, i2 = 17, i3 = 19, i4 = 23, i5 = 29;
    double x = 0.5, y = 0.25;
    for (int r = 0; r < 1000; r++) {
        tpc__ctx_switch(&main_ctx, &co_ctx);
        INT_STEP(i0, i1, i2, i3, i4, i5, x, y);
    }
    unsigned long j0 = 11, j1 = 13, j2 = 17, j3 = 19, j4 = 23, j5 = 29;
    double xx = 0.5, yy = 0.25;
    for (int r = 0; r < 1000; r++) {
        INT_STEP(j0, j1, j2, j3, j4, j5, xx, yy);
    }
    assert_true(i0 == j0 && i1 == j1 && i2 == j2 && i3 == j3 && i4 == j4 && i5 == j5);
    assert_true(x == xx && y == yy);
    assert_true(co_fp_out == fp_reference(1000));
    free(stack);
}

#ifndef TPC_TEST_STANDALONE
/* A profiling signal lands anywhere, also half-way through a switch, where the stack pointer
 * already points at the other context's saved registers: tpc__ctx_switching says so, and a
 * handler that then skips its backtrace (as the stall detector's does) never walks into them.
 * Thousands of signals over a loop of switches: without the check the unwinder crashed. */
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>

static volatile long prof_walked, prof_skipped;

static void on_prof(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info;
    void *frames[32];
    if (tpc__ctx_switching(uc))
        prof_skipped++;
    else if (backtrace(frames, 32) > 0)
        prof_walked++;
}

static void spin_entry(void *arg)
{
    (void)arg;
    for (;;)
        tpc__ctx_switch(&co_ctx, &main_ctx);
}

/* TSan and valgrind deliver a signal at points of their own, never inside the switch. */
static int signals_deferred(void)
{
#if defined(__SANITIZE_THREAD__)
    return 1;
#else
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
#endif
}

static void test_signal_during_switch(void **state)
{
    (void)state;
    if (signals_deferred()) {
        printf("# skipped: test_signal_during_switch: TSan and valgrind defer signals\n");
        skip();
    }
    void *frames[1];
    backtrace(frames, 1); /* loads the unwinder outside the handler */
    struct sigaction sa = {.sa_sigaction = on_prof, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGPROF, &sa, NULL), 0);
    void *stack = new_stack(64 * 1024);
    tpc__ctx_init(&co_ctx, stack, 64 * 1024, spin_entry, NULL);
    struct itimerval every = {{0, 100}, {0, 100}}; /* each 100 us of CPU time */
    assert_int_equal(setitimer(ITIMER_PROF, &every, NULL), 0);
    for (long i = 0; prof_skipped < 20 && i < 400000000; i++)
        tpc__ctx_switch(&main_ctx, &co_ctx);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    signal(SIGPROF, SIG_DFL);
    assert_true(prof_walked > 0);
    assert_true(prof_skipped >= 20); /* the loop did catch switches half-way */
    free(stack);
}
#endif

#ifdef TPC_TEST_STANDALONE
int main(void)
{
    test_switch_basics(NULL);
    printf("[       OK ] test_switch_basics\n");
    test_registers_survive(NULL);
    printf("[       OK ] test_registers_survive\n");
    return 0;
}
#else
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch_basics),
        cmocka_unit_test(test_registers_survive),
        cmocka_unit_test(test_signal_during_switch),
    };
    return cmocka_run_group_tests_name("context", tests, NULL, NULL);
}
#endif
