/* Per-shard storage for the program's own state (tpc_shard_key_create, tpc_shard_set,
 * tpc_shard_get). Keys are process-wide small integers, so that a lookup is one load from the
 * shard's own array: no lock, no hash. The destructors run on the shard's thread once its last
 * fiber has returned, and again (posing as the shard) for values set by messages run while the
 * runtime stopped. */
#include <string.h>
#include "internal.h"

static _Atomic unsigned nkeys;
static _Atomic(tpc_release_fn) dtors[TPC_SHARD_KEYS];

int tpc_shard_key_create(tpc_release_fn destructor)
{
    unsigned k = atomic_load_explicit(&nkeys, memory_order_relaxed);
    do {
        if (k >= TPC_SHARD_KEYS)
            return -EAGAIN;
    } while (!atomic_compare_exchange_weak(&nkeys, &k, k + 1));
    atomic_store_explicit(&dtors[k], destructor, memory_order_release);
    return (int)k;
}

static bool key_ok(int key)
{
    return key >= 0 && (unsigned)key < atomic_load_explicit(&nkeys, memory_order_acquire);
}

int tpc_shard_set(int key, void *value)
{
    if (!tpc__self)
        return -EPERM;
    if (!key_ok(key))
        return -EINVAL;
    tpc__self->locals[key] = value;
    return 0;
}

void *tpc_shard_get(int key)
{
    if (!tpc__self || !key_ok(key))
        return NULL;
    return tpc__self->locals[key];
}

/* Destroys s's values: each slot is cleared before its destructor runs, and a destructor that
 * sets a value again gets another round (four in all, as POSIX's thread keys; what the last
 * round set is dropped). Values of keys
 * without a destructor are dropped. */
bool tpc__locals_fini(struct tpc__shard *s)
{
    bool ran = false;
    for (int round = 0; round < 4; round++) {
        bool any = false;
        for (unsigned k = 0; k < TPC_SHARD_KEYS; k++) {
            void *v = s->locals[k];
            if (!v)
                continue;
            s->locals[k] = NULL;
            tpc_release_fn d = atomic_load_explicit(&dtors[k], memory_order_acquire);
            if (d) {
                d(v);
                any = ran = true;
            }
        }
        if (!any)
            return ran;
    }
    memset(s->locals, 0, sizeof(s->locals)); /* set again by the last round: dropped */
    return ran;
}
