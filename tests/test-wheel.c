/* The timing wheel against a simple reference, with a virtual clock: millions of random starts,
 * stops, restarts and advances (near, far, beyond the wheel's range, and already due), checking
 * after every advance exactly which timers fired and in which order, the pending count, and that
 * tpc__wheel_next() never promises work later than the earliest due timer. Seeded: the seed is
 * printed, and TPC_TEST_SEED replays one. */
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include "helpers.h"
#include "core/list.h"
#include "timer/wheel.h"
#include "wheel-model.h"

#define NT 256

static struct tpc__wheel wheel;
static struct tpc__timer timers[NT];
static struct wheel_ref ref[NT];
static int fired[NT], nfired;
static uint64_t rng_state;

static uint64_t rnd(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void on_fire(struct tpc__timer *t, void *ctx)
{
    (void)ctx;
    fired[nfired++] = (int)(t - timers);
}

static void record_fire(struct tpc__timer *t, void *ctx)
{
    ((struct tpc__timer **)ctx)[nfired++] = t;
}

static uint64_t random_due(void)
{
    uint64_t now = wheel.now;
    if (rnd() % 4 == 0) { /* the same tick as another pending timer, placed by another path */
        int j = (int)(rnd() % NT);
        if (ref[j].pending && ref[j].due > now)
            return ref[j].due;
    }
    switch (rnd() % 8) {
    case 0: /* already due */
        return now - (now ? rnd() % (now < 100 ? now + 1 : 100) : 0);
    case 1:
    case 2:
        return now + 1 + rnd() % 64;
    case 3:
    case 4:
        return now + 1 + rnd() % 5000;
    case 5:
        return now + 1 + rnd() % ((uint64_t)1 << 24);
    case 6:
        return now + 1 + rnd() % ((uint64_t)1 << 36);
    default: /* beyond the wheel's range */
        return now + ((uint64_t)1 << 36) + rnd() % ((uint64_t)1 << 40);
    }
}

static void start(int i)
{
    if (ref[i].pending)
        tpc__wheel_del(&wheel, &timers[i]);
    timers[i].due = random_due();
    tpc__wheel_add(&wheel, &timers[i]);
    ref[i] = (struct wheel_ref){true, timers[i].due <= wheel.now, timers[i].due, timers[i].seq};
}

static bool advance_and_check(uint64_t to)
{
    int expect[NT], n = wheel_ref_due(ref, NT, to, expect);
    nfired = 0;
    size_t got = tpc__wheel_advance(&wheel, to, on_fire, NULL);
    if ((int)got != n || nfired != n) {
        fprintf(stderr, "advance to %llu: fired %d, expected %d\n", (unsigned long long)to, nfired,
                n);
        return false;
    }
    for (int k = 0; k < n; k++) {
        if (fired[k] != expect[k]) {
            fprintf(stderr,
                    "advance to %llu: #%d fired timer %d (due %llu), expected %d (due %llu)\n",
                    (unsigned long long)to, k, fired[k], (unsigned long long)ref[fired[k]].due,
                    expect[k], (unsigned long long)ref[expect[k]].due);
            return false;
        }
        ref[expect[k]].pending = false;
    }
    return true;
}

static bool check_invariants(void)
{
    size_t pending = 0;
    uint64_t earliest = UINT64_MAX;
    bool immediate = false;
    for (int i = 0; i < NT; i++) {
        if (!ref[i].pending)
            continue;
        pending++;
        immediate |= ref[i].immediate;
        if (ref[i].due < earliest)
            earliest = ref[i].due;
    }
    if (pending != wheel.count) {
        fprintf(stderr, "count %zu, expected %zu\n", wheel.count, pending);
        return false;
    }
    uint64_t next = tpc__wheel_next(&wheel);
    if (immediate ? next != wheel.now
                  : (pending ? next > earliest || next <= wheel.now : next != UINT64_MAX)) {
        fprintf(stderr, "next %llu, now %llu, earliest due %llu\n", (unsigned long long)next,
                (unsigned long long)wheel.now, (unsigned long long)earliest);
        return false;
    }
    return true;
}

/* The rings of recent arrivals hold only timers that are still in their list: a later arrival
 * writes into the timer it replaces. */
static bool check_rings(void)
{
    for (unsigned id = 0; id < TPC_WHEEL_LISTS; id++)
        for (unsigned j = 0; j < TPC_WHEEL_AHEAD; j++) {
            struct tpc__timer *t = wheel.recent[id][j];
            if (t && (t < timers || t >= timers + NT || !ref[t - timers].pending || t->slot != id ||
                      t->recent != j)) {
                fprintf(stderr, "list %u ring entry %u: timer %td is not queued there\n", id, j,
                        t - timers);
                return false;
            }
        }
    return true;
}

static void test_wheel_model(void **state)
{
    (void)state;
    const char *env = getenv("TPC_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
    rng_state = seed ? seed : 1;
    print_message("wheel model seed 0x%llx (TPC_TEST_SEED replays it)\n", (unsigned long long)seed);
    long ops = getenv("TPC_TEST_SLOW") ? 500000 : 2000000;
    tpc__wheel_init(&wheel, rnd() % 1000000);
    memset(ref, 0, sizeof(ref));
    for (int i = 0; i < NT; i++)
        tpc__list_init(&timers[i].node);
    long advances = 0;
    for (long op = 0; op < ops; op++) {
        int i = (int)(rnd() % NT);
        unsigned r = (unsigned)(rnd() % 16);
        if (r < 7) {
            start(i); /* a start of a pending timer is a restart */
        } else if (r < 10) {
            if (ref[i].pending) {
                tpc__wheel_del(&wheel, &timers[i]);
                ref[i].pending = false;
            }
        } else {
            uint64_t step;
            unsigned kind = (unsigned)(rnd() % 16);
            if (kind < 8)
                step = rnd() % 4;
            else if (kind < 14)
                step = rnd() % 5000;
            else if (kind < 15)
                step = rnd() % ((uint64_t)1 << 26);
            else
                step = rnd() % ((uint64_t)1 << 38);
            advances++;
            if (!advance_and_check(wheel.now + step)) {
                fail_msg("mismatch after %ld operations (seed 0x%llx)", op,
                         (unsigned long long)seed);
            }
        }
        if (!check_invariants() || ((op & 31) == 0 && !check_rings()))
            fail_msg("invariant broken after %ld operations (seed 0x%llx)", op,
                     (unsigned long long)seed);
    }
    print_message("%ld operations, %ld advances, checked\n", ops, advances);
}

/* Callbacks that change the wheel while it fires: restart self, stop a timer due in the same
 * tick, add an already-due timer (fires at the next advance, not this one). */
static struct tpc__wheel w2;
static struct tpc__timer a, b, c, d;
static int log2_[16], nlog2;

static void cb_mutating(struct tpc__timer *t, void *ctx)
{
    (void)ctx;
    log2_[nlog2++] = t == &a ? 'a' : t == &b ? 'b' : t == &c ? 'c' : 'd';
    if (t == &a) {
        tpc__wheel_del(&w2, &b); /* b was due in the same tick, after a */
        a.due = w2.now + 10;     /* restart self */
        tpc__wheel_add(&w2, &a);
        d.due = w2.now; /* already due: waits for the next advance */
        tpc__wheel_add(&w2, &d);
    }
}

static void test_wheel_callbacks(void **state)
{
    (void)state;
    tpc__wheel_init(&w2, 100);
    a.due = b.due = c.due = 105;
    tpc__wheel_add(&w2, &a);
    tpc__wheel_add(&w2, &b);
    tpc__wheel_add(&w2, &c);
    assert_int_equal(tpc__wheel_advance(&w2, 104, cb_mutating, NULL), 0);
    assert_int_equal(tpc__wheel_advance(&w2, 105, cb_mutating, NULL), 2);
    assert_int_equal(nlog2, 2);
    assert_int_equal(log2_[0], 'a');
    assert_int_equal(log2_[1], 'c');
    assert_int_equal(w2.count, 2); /* a (restarted) and d */
    assert_int_equal(tpc__wheel_next(&w2), 105);
    assert_int_equal(tpc__wheel_advance(&w2, 105, cb_mutating, NULL), 1);
    assert_int_equal(log2_[2], 'd');
    assert_int_equal(tpc__wheel_next(&w2), 115);
}

/* A timer cascaded from level 1 lands behind a newer timer started straight into the same
 * level-0 slot; both are due in the same tick and fire in start order (older first). */
static void test_wheel_cascade_order(void **state)
{
    (void)state;
    static struct tpc__wheel w;
    static struct tpc__timer older, newer;
    tpc__wheel_init(&w, 0);
    older.due = 100; /* 100 ticks away: level 1, cascaded at tick 64 */
    tpc__wheel_add(&w, &older);
    assert_int_equal(tpc__wheel_advance(&w, 40, on_fire, NULL), 0);
    newer.due = 100; /* 60 ticks away: level 0 directly */
    tpc__wheel_add(&w, &newer);
    assert_int_equal(tpc__wheel_advance(&w, 64, on_fire, NULL), 0);
    assert_true(w.unsorted != 0); /* the cascade queued older behind newer */
    nfired = 0;
    struct tpc__timer *order[2];
    for (int k = 0; k < 2; k++)
        order[k] = NULL;
    assert_int_equal(tpc__wheel_advance(&w, 100, record_fire, order), 2);
    assert_ptr_equal(order[0], &older);
    assert_ptr_equal(order[1], &newer);
    assert_int_equal(w.unsorted, 0);
}

/* Each timer links to the one queued TPC_WHEEL_AHEAD after it in its list; a removed timer
 * leaves the ring, so later arrivals never write into it (it may have been freed). */
static void test_wheel_ahead_links(void **state)
{
    (void)state;
    enum { N = 2 * TPC_WHEEL_AHEAD + 8 };
    static struct tpc__wheel w;
    static struct tpc__timer t[N];
    tpc__wheel_init(&w, 0);
    memset(t, 0, sizeof(t));
    for (int i = 0; i < N - 1; i++) {
        t[i].due = 10;
        tpc__wheel_add(&w, &t[i]);
    }
    assert_int_equal(tpc__wheel_next(&w), 10); /* places the staged ones */
    for (int i = 0; i < N - 1; i++)
        assert_ptr_equal(t[i].ahead, i + TPC_WHEEL_AHEAD < N - 1 ? &t[i + TPC_WHEEL_AHEAD] : NULL);
    /* The next arrival replaces t[N - 1 - AHEAD] in the ring: remove that one first. */
    struct tpc__timer *gone = &t[N - 1 - TPC_WHEEL_AHEAD];
    tpc__wheel_del(&w, gone);
    memset(gone, 0xA5, sizeof(*gone)); /* as if freed and reused */
    t[N - 1].due = 10;
    tpc__wheel_add(&w, &t[N - 1]);
    assert_int_equal(tpc__wheel_next(&w), 10);
    for (size_t k = 0; k < sizeof(*gone); k++)
        assert_int_equal(((unsigned char *)gone)[k], 0xA5);
    memset(gone, 0, sizeof(*gone));
    assert_int_equal(tpc__wheel_advance(&w, 10, on_fire, NULL), N - 1);
    assert_int_equal(w.count, 0);
}

/* Started timers wait in a short array until the wheel looks at its slots or the array fills:
 * one stopped there leaves no trace (the last one staged) or a hole; an overflowing array places
 * what it holds; either way timers fire by due tick, then in start order. */
static void test_wheel_staged(void **state)
{
    (void)state;
    enum { N = TPC_WHEEL_STAGED + 5 };
    static struct tpc__wheel w;
    static struct tpc__timer t[N];
    tpc__wheel_init(&w, 0);
    memset(t, 0, sizeof(t));
    for (int i = 0; i < 3; i++) {
        t[i].due = 7;
        tpc__wheel_add(&w, &t[i]);
    }
    assert_int_equal(w.nstaged, 3);
    tpc__wheel_del(&w, &t[2]); /* the newest: popped */
    assert_int_equal(w.nstaged, 2);
    tpc__wheel_del(&w, &t[0]); /* a hole */
    assert_int_equal(w.nstaged, 2);
    assert_null(w.staged[0]);
    assert_int_equal(w.count, 1);
    assert_int_equal(tpc__wheel_next(&w), 7);
    assert_int_equal(w.nstaged, 0);
    assert_false(tpc__list_empty(&w.slots[0][7]));
    nfired = 0;
    struct tpc__timer *order[N];
    memset(order, 0, sizeof(order));
    assert_int_equal(tpc__wheel_advance(&w, 7, record_fire, order), 1);
    assert_ptr_equal(order[0], &t[1]);
    /* More than the array holds, due in falling ticks with pairs sharing one: the first
     * TPC_WHEEL_STAGED are placed when the next arrives. */
    for (int i = 0; i < N; i++) {
        t[i].due = 100 - (uint64_t)(i / 2);
        tpc__wheel_add(&w, &t[i]);
    }
    assert_int_equal(w.nstaged, N - TPC_WHEEL_STAGED);
    assert_int_equal(w.count, N);
    nfired = 0;
    memset(order, 0, sizeof(order));
    assert_int_equal(tpc__wheel_advance(&w, 100, record_fire, order), N);
    int k = 0; /* earliest tick first, then start order */
    for (uint64_t tick = 100 - (N - 1) / 2; tick <= 100; tick++)
        for (int i = 0; i < N; i++)
            if (t[i].due == tick)
                assert_ptr_equal(order[k++], &t[i]);
    assert_int_equal(k, N);
}

/* Timers already overdue when the wheel places them fire by due tick, then start order, as the
 * slots' timers do (the due list fired them in start order: a timer overdue by 50 ticks after
 * one overdue by 1). */
static void test_wheel_overdue_in_due_order(void **state)
{
    (void)state;
    enum { N = 40 };
    static struct tpc__wheel w;
    static struct tpc__timer t[N];
    tpc__wheel_init(&w, 1000);
    memset(t, 0, sizeof(t));
    for (int i = 0; i < N; i++) { /* overdue by 1 .. 20 ticks, falling, pairs sharing a tick */
        t[i].due = 1000 - 1 - (uint64_t)((N - 1 - i) / 2);
        if (i % 3 == 0)
            t[i].due = 1000 - 50 + (uint64_t)i; /* and some later-started ones due earlier */
        tpc__wheel_add(&w, &t[i]);
    }
    struct tpc__timer *order[N];
    memset(order, 0, sizeof(order));
    nfired = 0;
    assert_int_equal(tpc__wheel_advance(&w, 1000, record_fire, order), N);
    for (int k = 1; k < N; k++) {
        assert_true(order[k - 1]->due <= order[k]->due);
        if (order[k - 1]->due == order[k]->due)
            assert_true(order[k - 1] < order[k]); /* start order: t[] in the order started */
    }
    /* In order already: nothing moves. */
    for (int i = 0; i < N; i++) {
        t[i].due = 2000 - (uint64_t)(N - i);
        tpc__wheel_add(&w, &t[i]);
    }
    memset(order, 0, sizeof(order));
    nfired = 0;
    assert_int_equal(tpc__wheel_advance(&w, 2000, record_fire, order), N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(order[i], &t[i]);
}

/* Timers on the heap that callbacks free as they fire, and stopped timers freed at once, mixed
 * with new arrivals in the same slots: under ASan, a write into a freed timer is reported. */
static struct tpc__wheel w3;
static int freed_by_fire;

static void free_on_fire(struct tpc__timer *t, void *ctx)
{
    (void)ctx;
    free(t);
    freed_by_fire++;
}

static void test_wheel_freed_timers(void **state)
{
    (void)state;
    tpc__wheel_init(&w3, 0);
    size_t live = 0;
    for (int round = 0; round < 200; round++) {
        struct tpc__timer *batch[64];
        for (int i = 0; i < 64; i++) {
            batch[i] = calloc(1, sizeof(struct tpc__timer));
            assert_non_null(batch[i]);
            batch[i]->due = w3.now + 1 + (uint64_t)((round * 7 + i) % 3) * 70; /* levels 0 and 1 */
            tpc__wheel_add(&w3, batch[i]);
        }
        for (int i = 0; i < 64; i += 3) { /* stop and free every third, newest included */
            tpc__wheel_del(&w3, batch[i]);
            free(batch[i]);
        }
        live += 64 - 22;
        tpc__wheel_advance(&w3, w3.now + 1 + (uint64_t)(round % 5), free_on_fire, NULL);
    }
    tpc__wheel_advance(&w3, w3.now + 1000, free_on_fire, NULL);
    assert_int_equal(w3.count, 0);
    assert_int_equal((size_t)freed_by_fire, live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wheel_model),
        cmocka_unit_test(test_wheel_callbacks),
        cmocka_unit_test(test_wheel_cascade_order),
        cmocka_unit_test(test_wheel_ahead_links),
        cmocka_unit_test(test_wheel_freed_timers),
        cmocka_unit_test(test_wheel_staged),
        cmocka_unit_test(test_wheel_overdue_in_due_order),
    };
    return cmocka_run_group_tests_name("wheel", tests, NULL, NULL);
}
