/* Fibers and callback tasks: spawn, join, yield, FIFO order, cancel, detach, defer. */
#include <errno.h>
#include <fenv.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "helpers.h"

static int ret_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

static int spawn_join_main(void *arg)
{
    (void)arg;
    tpc_fiber *f[100];
    for (int i = 0; i < 100; i++)
        CHECK_EQ(tpc_spawn(ret_arg, (void *)(intptr_t)(i * 3), &f[i]), 0);
    for (int i = 99; i >= 0; i--) { /* join order does not matter */
        int r = -1;
        CHECK_EQ(tpc_join(f[i], &r), 0);
        CHECK_EQ(r, i * 3);
    }
    return 0;
}

static void test_spawn_join(void **state)
{
    (void)state;
    run_main(1, spawn_join_main, NULL);
}

/* ---- FIFO order and yield interleaving. ---- */
static int order[64], norder;

static int record(void *arg)
{
    order[norder++] = (int)(intptr_t)arg;
    return 0;
}

static void record_cb(void *arg)
{
    order[norder++] = (int)(intptr_t)arg;
}

static int fifo_main(void *arg)
{
    (void)arg;
    norder = 0;
    tpc_fiber *f[8];
    /* Fibers and callbacks share one FIFO queue. */
    for (int i = 0; i < 8; i++) {
        if (i % 2)
            CHECK_EQ(tpc_defer(record_cb, (void *)(intptr_t)i), 0);
        else
            CHECK_EQ(tpc_spawn(record, (void *)(intptr_t)i, &f[i]), 0);
    }
    CHECK_EQ(norder, 0); /* spawning does not run anything */
    for (int i = 0; i < 8; i += 2)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    CHECK_EQ(norder, 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(order[i], i);
    return 0;
}

static void test_fifo_order(void **state)
{
    (void)state;
    SKIP_IF(SHUFFLED, "checks the FIFO order that shuffled builds turn off");
    run_main(1, fifo_main, NULL);
}

static int yielder(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < 3; i++) {
        order[norder++] = id * 10 + i;
        CHECK_EQ(tpc_yield(), 0);
    }
    return 0;
}

static int yield_main(void *arg)
{
    (void)arg;
    norder = 0;
    tpc_fiber *a, *b;
    CHECK_EQ(tpc_spawn(yielder, (void *)1, &a), 0);
    CHECK_EQ(tpc_spawn(yielder, (void *)2, &b), 0);
    CHECK_EQ(tpc_join(a, NULL), 0);
    CHECK_EQ(tpc_join(b, NULL), 0);
    /* Each yield lets the other run first: they alternate, each in its own order (FIFO puts a
     * first; shuffled builds may start with b). */
    CHECK_EQ(norder, 6);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ(order[i] % 10, i / 2);
        if (i % 2)
            CHECK_EQ(order[i] / 10 + order[i - 1] / 10, 3);
    }
    if (!SHUFFLED)
        CHECK_EQ(order[0], 10);
    return 0;
}

static void test_yield_interleaving(void **state)
{
    (void)state;
    run_main(1, yield_main, NULL);
}

/* ---- Cancellation. ---- */
static int wait_forever(void *arg)
{
    tpc_event *e = arg;
    int rc = tpc_event_wait(e);
    /* Sticky: every later suspension fails too, but yield still yields. */
    CHECK_EQ(tpc_event_wait(e), -ECANCELED);
    CHECK_EQ(tpc_yield(), -ECANCELED);
    CHECK(tpc_cancelled());
    return rc;
}

static int wait_event(void *arg)
{
    return tpc_event_wait(arg);
}

static int cancel_self(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_cancel(tpc_self()), 0);
    CHECK(tpc_cancelled());
    return tpc_yield();
}

static int cancel_main(void *arg)
{
    (void)arg;
    tpc_event e;
    CHECK_EQ(tpc_event_init(&e, false), 0);
    tpc_fiber *f;
    int r = 0;
    /* Cancelled while waiting. */
    CHECK_EQ(tpc_spawn(wait_forever, &e, &f), 0);
    CHECK_EQ(tpc_yield(), 0); /* f runs and parks */
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    /* Cancelled before it first ran: its first suspension fails. */
    CHECK_EQ(tpc_spawn(wait_forever, &e, &f), 0);
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    /* Cancelling oneself. */
    CHECK_EQ(tpc_spawn(cancel_self, NULL, &f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    /* Cancelling a finished fiber is a no-op. */
    CHECK_EQ(tpc_spawn(ret_arg, (void *)7, &f), 0);
    CHECK_EQ(tpc_yield(), 0);
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, 7);
    CHECK_EQ(tpc_event_destroy(&e), 0);
    return 0;
}

static void test_cancel(void **state)
{
    (void)state;
    run_main(1, cancel_main, NULL);
}

/* A cancelled joiner cancels its target and still waits for it (structured join): it gets
 * -ECANCELED with the target joined and its result stored. */
static int joined_result;
static int joiner(void *arg)
{
    joined_result = 99;
    return tpc_join(arg, &joined_result);
}

static int cancel_join_main(void *arg)
{
    (void)arg;
    tpc_event e;
    tpc_event_init(&e, false);
    tpc_fiber *target, *j;
    int r;
    CHECK_EQ(tpc_spawn(wait_event, &e, &target), 0);
    CHECK_EQ(tpc_spawn(joiner, target, &j), 0);
    CHECK_EQ(tpc_yield(), 0);
    CHECK_EQ(tpc_cancel(j), 0);
    CHECK_EQ(tpc_join(j, &r), 0);
    CHECK_EQ(r, -ECANCELED);             /* j's join: cancelled, target waited for */
    CHECK_EQ(joined_result, -ECANCELED); /* the target's event wait was cancelled by j */
    CHECK_EQ(tpc_event_destroy(&e), 0);  /* nobody waits on it any more */
    return 0;
}

static void test_cancel_joiner(void **state)
{
    (void)state;
    run_main(1, cancel_join_main, NULL);
}

/* A cancelled joiner whose target finishes before the joiner runs still sees -ECANCELED, and
 * has joined the target (its result stored). */
static int yield_once_then_5(void *arg)
{
    (void)arg;
    tpc_yield();
    return 5;
}

static int cancel_join_race_main(void *arg)
{
    (void)arg;
    tpc_fiber *t, *j;
    int r = 0;
    CHECK_EQ(tpc_spawn(yield_once_then_5, NULL, &t), 0);
    CHECK_EQ(tpc_spawn(joiner, t, &j), 0);
    tpc_yield();                /* t yields, j parks joining t */
    CHECK_EQ(tpc_cancel(j), 0); /* j is queued behind t: t finishes first and wakes j too */
    CHECK_EQ(tpc_join(j, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    CHECK_EQ(joined_result, 5);
    return 0;
}

static void test_cancelled_joiner_target_finishes_first(void **state)
{
    (void)state;
    run_main(1, cancel_join_race_main, NULL);
}

/* ---- Detach and join misuse. ---- */
static int ndone;
static int count_done(void *arg)
{
    (void)arg;
    ndone++;
    return 0;
}

static int join_self(void *arg)
{
    (void)arg;
    return tpc_join(tpc_self(), NULL);
}

static int detach_main(void *arg)
{
    (void)arg;
    ndone = 0;
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(count_done, NULL, &f), 0);
    CHECK_EQ(tpc_detach(f), 0);
    CHECK_EQ(tpc_detach(f), -EINVAL);
    CHECK_EQ(tpc_join(f, NULL), -EINVAL);
    CHECK_EQ(tpc_spawn(count_done, NULL, NULL), 0); /* NULL out: detached */
    tpc_fiber_opts o = {.detached = true, .name = "d"};
    f = (tpc_fiber *)1;
    CHECK_EQ(tpc_spawn_opts(&o, count_done, NULL, &f), 0);
    CHECK(f == NULL);
    /* Detach after it finished frees it at once. */
    CHECK_EQ(tpc_spawn(count_done, NULL, &f), 0);
    CHECK_EQ(tpc_yield(), 0);
    CHECK_EQ(tpc_yield(), 0);
    CHECK_EQ(ndone, 4);
    CHECK_EQ(tpc_detach(f), 0);
    /* Joining oneself, joining twice at once. */
    int r;
    CHECK_EQ(tpc_spawn(join_self, NULL, &f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, -EDEADLK);
    tpc_event e;
    tpc_event_init(&e, false);
    tpc_fiber *j;
    CHECK_EQ(tpc_spawn(wait_event, &e, &f), 0);
    CHECK_EQ(tpc_spawn(joiner, f, &j), 0);
    CHECK_EQ(tpc_yield(), 0);
    CHECK_EQ(tpc_join(f, NULL), -EINVAL); /* j is already joining */
    tpc_event_set(&e);
    CHECK_EQ(tpc_join(j, &r), 0);
    CHECK_EQ(r, 0);
    CHECK_EQ(tpc_spawn(NULL, NULL, &f), -EINVAL);
    return 0;
}

static void test_detach_and_join_errors(void **state)
{
    (void)state;
    run_main(1, detach_main, NULL);
}

/* ---- Spawn options, stack reuse, deep stacks. ---- */
static int use_stack(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    volatile char buf[n];
    memset((char *)buf, 0x5a, n);
    CHECK(strcmp(tpc_fiber_name(tpc_self()), "big") == 0);
    return buf[n - 1];
}

static int where(void *arg)
{
    volatile char here = 0;
    *(uintptr_t *)arg = (uintptr_t)&here;
    return here;
}

static int opts_main(void *arg)
{
    (void)arg;
    tpc_fiber_opts o = {.stack_size = 1 << 20, .name = "big"};
    tpc_fiber *f;
    int r;
    CHECK_EQ(tpc_spawn_opts(&o, use_stack, (void *)(uintptr_t)(900 * 1024), &f), 0);
    CHECK_EQ(tpc_join(f, &r), 0);
    CHECK_EQ(r, 0x5a);
    o.stack_size = 1024;
    CHECK_EQ(tpc_spawn_opts(&o, use_stack, NULL, &f), -EINVAL);
    o.stack_size = (size_t)1 << 40;
    CHECK_EQ(tpc_spawn_opts(&o, use_stack, NULL, &f), -EINVAL);
    /* Spawn/join cycles reuse the pooled stack: a frame at the same place every time, give or
     * take the few bytes between a child started by a switch and one joined as a call. */
    int rounds = getenv("TPC_TEST_SLOW") ? 1000 : 10000;
    uintptr_t first = 0, at = 0;
    for (int i = 0; i < rounds; i++) {
        CHECK_EQ(tpc_spawn(where, &at, &f), 0);
        CHECK_EQ(tpc_join(f, &r), 0);
        if (i == 0)
            first = at;
        CHECK(at > first - 256 && at < first + 256);
    }
    CHECK(strcmp(tpc_fiber_name(tpc_self()), "main") == 0);
    return 0;
}

static void test_spawn_options(void **state)
{
    (void)state;
    run_main(1, opts_main, NULL);
}

/* ---- maybe_yield. ---- */
static int spinner_done;
static int spinner(void *arg)
{
    (void)arg;
    int yields = 0;
    while (!spinner_done) {
        int rc = tpc_maybe_yield();
        CHECK(rc == 0);
        yields++;
    }
    return 0;
}

static int setter(void *arg)
{
    (void)arg;
    spinner_done = 1;
    return 0;
}

static int maybe_yield_main(void *arg)
{
    (void)arg;
    spinner_done = 0;
    tpc_fiber *a, *b;
    /* The spinner never suspends on its own: only maybe_yield lets the setter run. */
    CHECK_EQ(tpc_spawn(spinner, NULL, &a), 0);
    CHECK_EQ(tpc_spawn(setter, NULL, &b), 0);
    CHECK_EQ(tpc_join(a, NULL), 0);
    CHECK_EQ(tpc_join(b, NULL), 0);
    return 0;
}

static int bystander_ran;
static int bystander(void *arg)
{
    (void)arg;
    bystander_ran = 1;
    return 0;
}

/* Within the slice, maybe_yield returns at once; once it is used up, it yields. */
static int slice_main(void *arg)
{
    (void)arg;
    bystander_ran = 0;
    tpc_fiber *b;
    CHECK_EQ(tpc_yield(), 0); /* start a fresh run phase */
    CHECK_EQ(tpc_spawn(bystander, NULL, &b), 0);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(tpc_maybe_yield(), 0);
    CHECK_EQ(bystander_ran, 0); /* 1000 calls are far inside a 100 ms slice */
    uint64_t t0 = tpc_now_fresh();
    while (tpc_now_fresh() - t0 < 1200000000ull) /* use the slice up (bounded) */
        if (tpc_maybe_yield() != 0 || bystander_ran)
            break;
    CHECK_EQ(bystander_ran, 1);
    CHECK_EQ(tpc_join(b, NULL), 0);
    return 0;
}

static void test_maybe_yield(void **state)
{
    (void)state;
    /* Both ways of keeping the slice: the stall detector's watchdog raising a flag (its default
     * when it runs), and the clock (without the detector). */
    for (int detector = 1; detector >= 0; detector--) {
        tpc_config c = {.shards = 1, .stall_ms = detector ? 25 : -1};
        run_config(&c, maybe_yield_main, NULL);
        c.time_slice_ns = 100 * 1000 * 1000;
        run_config(&c, slice_main, NULL);
    }
}

/* ---- Floating-point state is per fiber. ---- */
static int fp_work(void *arg)
{
    double x = (double)(intptr_t)arg;
    for (int i = 0; i < 100; i++) {
        x = x * 1.000001 + 0.5;
        tpc_yield();
    }
    return (int)x;
}

static int fp_main(void *arg)
{
    (void)arg;
    tpc_fiber *f[4];
    int r[4];
    for (int i = 0; i < 4; i++)
        tpc_spawn(fp_work, (void *)(intptr_t)(i * 1000), &f[i]);
    for (int i = 0; i < 4; i++)
        tpc_join(f[i], &r[i]);
    for (int i = 0; i < 4; i++) {
        double x = i * 1000;
        for (int k = 0; k < 100; k++)
            x = x * 1.000001 + 0.5;
        CHECK_EQ(r[i], (int)x);
    }
    return 0;
}

static void test_fp_state(void **state)
{
    (void)state;
    run_main(1, fp_main, NULL);
}

/* ---- A child joined before it ever ran runs as a call of its joiner (core/task.c). ----
 * It may suspend (others run meanwhile), join children of its own, be cancelled through its
 * joiner; it starts with its own floating-point state; and a joiner that spawns and joins in a
 * loop still lets the others run. */
static int named_waiter(void *arg)
{
    CHECK(strcmp(tpc_fiber_name(tpc_self()), "child") == 0);
    int rc = tpc_event_wait(arg);
    return rc == 0 ? 42 : rc;
}

static int set_event(void *arg)
{
    return tpc_event_set(arg);
}

static int join_grandchild(void *arg)
{
    (void)arg;
    tpc_fiber *g;
    int r = 0;
    CHECK_EQ(tpc_spawn(yield_once_then_5, NULL, &g), 0);
    CHECK_EQ(tpc_join(g, &r), 0);
    return r + 1;
}

struct two_events {
    tpc_event started, never;
};

static int start_then_wait(void *arg)
{
    struct two_events *ev = arg;
    CHECK_EQ(tpc_event_set(&ev->started), 0);
    return tpc_event_wait(&ev->never);
}

static int join_waiter(void *arg)
{
    tpc_fiber *c;
    int r = 0;
    CHECK_EQ(tpc_spawn(start_then_wait, arg, &c), 0); /* nothing else ready: joined as a call */
    int rc = tpc_join(c, &r);
    CHECK_EQ(r, -ECANCELED); /* the child's wait, cancelled in its joiner's place */
    return rc;
}

static int round_and_change(void *arg)
{
    (void)arg;
    int mode = fegetround();
    fesetround(FE_UPWARD);
    tpc_yield();
    return mode;
}

static volatile int turns_stop;
static int turns;
static int count_turns(void *arg) /* each turn waits for the loop's next pass (a timer) */
{
    (void)arg;
    while (!turns_stop) {
        turns++;
        tpc_sleep(0);
    }
    return 0;
}

static int called_main(void *arg)
{
    (void)arg;
    tpc_event e;
    tpc_event_init(&e, false);
    tpc_fiber_opts o = {.name = "child"};
    tpc_fiber *c, *other;
    int r = 0;
    CHECK_EQ(tpc_spawn_opts(&o, named_waiter, &e, &c), 0);
    CHECK_EQ(tpc_spawn(set_event, &e, &other), 0); /* runs while c waits */
    CHECK_EQ(tpc_join(c, &r), 0);
    CHECK_EQ(r, 42);
    CHECK_EQ(tpc_join(other, NULL), 0);
    CHECK_EQ(tpc_spawn(join_grandchild, NULL, &c), 0);
    CHECK_EQ(tpc_join(c, &r), 0);
    CHECK_EQ(r, 6);
    /* The joiner cancelled while its child waits: the child is, and the join says so. */
    struct two_events ev;
    tpc_event_init(&ev.started, false);
    tpc_event_init(&ev.never, false);
    CHECK_EQ(tpc_spawn(join_waiter, &ev, &c), 0);
    CHECK_EQ(tpc_event_wait(&ev.started), 0); /* c's child runs, then waits */
    CHECK_EQ(tpc_cancel(c), 0);
    CHECK_EQ(tpc_join(c, &r), 0);
    CHECK_EQ(r, -ECANCELED);
    /* Floating-point state: the child's own from the start (the default; with -Dcontext=
     * ucontext, the spawner's at the spawn), the joiner's kept. */
    fesetround(FE_DOWNWARD);
    CHECK_EQ(tpc_spawn(round_and_change, NULL, &c), 0);
    CHECK_EQ(tpc_join(c, &r), 0);
#ifndef TPC_CTX_UCONTEXT
    CHECK_EQ(r, FE_TONEAREST);
#endif
    CHECK_EQ(fegetround(), FE_DOWNWARD);
    fesetround(FE_TONEAREST);
    /* 20,000 spawn + join in a row (4,000 in slow builds): the loop still runs (every 64 tasks
     * or fewer), and the sleeping fiber gets its turns. */
    int joins = getenv("TPC_TEST_SLOW") ? 4000 : 20000;
    turns_stop = 0;
    turns = 0;
    CHECK_EQ(tpc_spawn(count_turns, NULL, &other), 0);
    CHECK_EQ(tpc_yield(), 0);
    int before = turns;
    for (int i = 0; i < joins; i++) {
        CHECK_EQ(tpc_spawn(ret_arg, (void *)(intptr_t)i, &c), 0);
        CHECK_EQ(tpc_join(c, &r), 0);
        if (r != i)
            CHECK_EQ(r, i);
    }
    CHECK(turns - before >= 10);
    turns_stop = 1;
    CHECK_EQ(tpc_join(other, NULL), 0);
    return 0;
}

static void test_join_by_call(void **state)
{
    (void)state;
    run_main(1, called_main, NULL);
}

/* ---- Stacks cost few kernel mappings. ----
 * Guarded stacks come 16 to a mapping, their guard pages put in without splitting it where
 * the kernel has MADV_GUARD_INSTALL (Linux 6.13): thousands of fibers fit under the default
 * limit of 65,530 mappings. Elsewhere (or under valgrind) a guard still splits the mapping. The
 * default size and the first three other sizes asked for have slabs of their own; a fifth size
 * gets a mapping per stack (its guard put in the same way). */
enum { MANY = 2048 };

static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;
    if (!f)
        return -1;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static bool kernel_has_madv_guard(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    char *p =
        mmap(NULL, (size_t)ps * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok = p != MAP_FAILED && madvise(p, (size_t)ps, 102 /* MADV_GUARD_INSTALL */) == 0;
    if (p != MAP_FAILED)
        munmap(p, (size_t)ps * 2);
    return ok;
}

static int park_on(void *arg)
{
    return tpc_event_wait(arg);
}

static int maps_main(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg; /* 0: the default */
    static tpc_fiber *f[MANY];
    tpc_event e;
    tpc_event_init(&e, false);
    int before = count_maps();
    tpc_fiber_opts o = {.stack_size = size};
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(tpc_spawn_opts(&o, park_on, &e, &f[i]), 0);
    tpc_yield(); /* all of them run and park */
    int grew = count_maps() - before;
#if defined(__SANITIZE_THREAD__)
    bool exact = false; /* TSan maps its own metadata for every stack it sees used */
#else
    bool exact = true;
#endif
    if (exact && kernel_has_madv_guard())
        CHECK(grew <= MANY / 8); /* 128 slabs, and a little else */
    else if (exact)
        CHECK(grew <= 2 * MANY + 64);
    printf("%d parked fibers with %zu KiB stacks: %d more mappings\n", MANY,
           (size ? size : 128 * 1024) >> 10, grew);
    CHECK_EQ(tpc_event_set(&e), 0);
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    CHECK_EQ(tpc_event_destroy(&e), 0);
    return 0;
}

static int sizes_main(void *arg)
{
    (void)arg;
    static const size_t sizes[] = {0, 64 * 1024, 256 * 1024, 40 * 1024};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        CHECK_EQ(maps_main((void *)(uintptr_t)sizes[i]), 0);
    /* a fifth size: no class left, a mapping per stack, guarded all the same */
    tpc_fiber_opts o = {.stack_size = 48 * 1024};
    tpc_fiber *f;
    tpc_event e;
    tpc_event_init(&e, false);
    CHECK_EQ(tpc_spawn_opts(&o, park_on, &e, &f), 0);
    tpc_yield();
    CHECK_EQ(tpc_event_set(&e), 0);
    CHECK_EQ(tpc_join(f, NULL), 0);
    CHECK_EQ(tpc_event_destroy(&e), 0);
    return 0;
}

static void test_stacks_share_mappings(void **state)
{
    (void)state;
    run_main(1, sizes_main, NULL);
}

/* Stacks freed past the pool's size give all their pages back: the page where each fiber's
 * first frame was is not resident once the fiber is gone (the pool used to keep a record in it:
 * 4 KiB per stack, a proxy's parked connection 1 KB dearer). */
#if !defined(__SANITIZE_ADDRESS__)
static uintptr_t frame_page[MANY];

static int note_frame(void *arg)
{
    volatile char here = 1;
    frame_page[(uintptr_t)arg] = (uintptr_t)&here & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1);
    return tpc_yield() + here - 1; /* all of them alive at once */
}

static int cold_main(void *arg)
{
    (void)arg;
    static tpc_fiber *f[MANY];
    for (uintptr_t i = 0; i < MANY; i++)
        CHECK_EQ(tpc_spawn(note_frame, (void *)i, &f[i]), 0);
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(tpc_join(f[i], NULL), 0);
    int resident = 0;
    for (int i = 0; i < MANY; i++) {
        unsigned char v = 0;
        CHECK_EQ(mincore((void *)frame_page[i], 1, &v), 0);
        resident += v & 1;
    }
    printf("%d of %d exited fibers' first-frame pages resident\n", resident, MANY);
    CHECK(resident <= MANY / 8); /* the pool's warm ones (64 by default), and slack */
    return 0;
}
#endif

static void test_freed_stacks_give_pages_back(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan may keep a frame's locals on its own fake stacks */
#else
    run_main(1, cold_main, NULL);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stacks_share_mappings),
        cmocka_unit_test(test_freed_stacks_give_pages_back),
        cmocka_unit_test(test_spawn_join),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_yield_interleaving),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_joiner),
        cmocka_unit_test(test_cancelled_joiner_target_finishes_first),
        cmocka_unit_test(test_detach_and_join_errors),
        cmocka_unit_test(test_spawn_options),
        cmocka_unit_test(test_maybe_yield),
        cmocka_unit_test(test_fp_state),
        cmocka_unit_test(test_join_by_call),
    };
    return cmocka_run_group_tests_name("fiber", tests, NULL, NULL);
}
