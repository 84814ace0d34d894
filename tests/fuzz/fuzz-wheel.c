/* libFuzzer target: the timing wheel (timer/wheel.c) against a reference model. The input is a
 * program of operations on 64 timers: start (with a due tick near, far, beyond the wheel's
 * range, or already due), stop, and advance the clock; after every advance the timers that
 * fired, and their order, must be the model's, and the pending count and tpc__wheel_next must
 * agree with it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/list.h"
#include "timer/wheel.h"
#include "../wheel-model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NT 64

static struct tpc__wheel wheel;
static struct tpc__timer timers[NT];
static struct wheel_ref ref[NT];
static int fired[NT], nfired;

static void on_fire(struct tpc__timer *t, void *ctx)
{
    (void)ctx;
    if (nfired >= NT)
        abort(); /* fired more timers than exist */
    fired[nfired++] = (int)(t - timers);
}

/* Reads n bytes of the program as a little-endian number (0 past its end). */
static uint64_t take(const uint8_t **p, const uint8_t *end, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n && *p < end; i++)
        v |= (uint64_t) * (*p)++ << (8 * i);
    return v;
}

static uint64_t due_from(uint8_t kind, uint64_t x)
{
    uint64_t now = wheel.now;
    switch (kind % 6) {
    case 0: /* already due */
        return now - (x % (now + 1));
    case 1:
        return now + 1 + x % 64;
    case 2:
        return now + 1 + x % 5000;
    case 3:
        return now + 1 + x % ((uint64_t)1 << 24);
    case 4:
        return now + 1 + x % ((uint64_t)1 << 36);
    default: /* beyond the wheel's range */
        return now + ((uint64_t)1 << 36) + x % ((uint64_t)1 << 40);
    }
}

static void advance(uint64_t to)
{
    int expect[NT], n = wheel_ref_due(ref, NT, to, expect);
    nfired = 0;
    if (tpc__wheel_advance(&wheel, to, on_fire, NULL) != (size_t)n || nfired != n)
        abort();
    for (int k = 0; k < n; k++) {
        if (fired[k] != expect[k])
            abort();
        ref[expect[k]].pending = false;
    }
    size_t pending = 0;
    for (int i = 0; i < NT; i++)
        pending += ref[i].pending;
    if (pending != wheel.count)
        abort();
    uint64_t next = tpc__wheel_next(&wheel);
    for (int i = 0; i < NT; i++)
        if (ref[i].pending && next > ref[i].due)
            abort(); /* never promises work later than a due timer */
    if (!pending && next != UINT64_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    uint64_t start = take(&p, end, 4);
    tpc__wheel_init(&wheel, start);
    memset(ref, 0, sizeof(ref));
    memset(timers, 0, sizeof(timers));
    while (p < end) {
        uint8_t op = *p++;
        int i = (op >> 2) % NT;
        switch (op & 3) {
        case 0:
        case 1: { /* start (or restart) timer i */
            uint8_t kind = (uint8_t)take(&p, end, 1);
            uint64_t x = take(&p, end, 5);
            if (ref[i].pending)
                tpc__wheel_del(&wheel, &timers[i]);
            timers[i].due = due_from(kind, x);
            tpc__wheel_add(&wheel, &timers[i]);
            ref[i] =
                (struct wheel_ref){true, timers[i].due <= wheel.now, timers[i].due, timers[i].seq};
            break;
        }
        case 2: /* stop timer i */
            if (ref[i].pending) {
                tpc__wheel_del(&wheel, &timers[i]);
                ref[i].pending = false;
            }
            break;
        default: { /* advance by a small or a large step */
            uint64_t step = take(&p, end, 1 + (op >> 7) * 4);
            advance(wheel.now + step);
            break;
        }
        }
    }
    advance(wheel.now + 1);
    return 0;
}
