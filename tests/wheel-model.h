/* The reference the timing wheel is checked against (tests/test-wheel.c, tests/fuzz/fuzz-wheel.c):
 * what a timer is to the model, and the order timers due at one advance must fire in. */
#ifndef TPC_TEST_WHEEL_MODEL_H
#define TPC_TEST_WHEEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

struct wheel_ref {
    bool pending, immediate; /* immediate: already due when started */
    uint64_t due, seq;
};

/* Already-due timers first, then by due tick (the already-due ones too), then by start order
 * (qsort's sign). */
static inline int wheel_ref_order(const struct wheel_ref *x, const struct wheel_ref *y)
{
    if (x->immediate != y->immediate)
        return x->immediate ? -1 : 1;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* Fills expect[] with the indexes of ref[0..n) that an advance to tick `to` must fire, in the
 * order they must fire; returns how many. */
static inline int wheel_ref_due(const struct wheel_ref *ref, int n, uint64_t to, int *expect)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!ref[i].pending || (!ref[i].immediate && ref[i].due > to))
            continue;
        int j = k++;
        for (; j > 0 && wheel_ref_order(&ref[expect[j - 1]], &ref[i]) > 0; j--)
            expect[j] = expect[j - 1];
        expect[j] = i;
    }
    return k;
}

#endif
