/* tpc_config's numeric settings, resolved in one place: one row per field gives its default,
 * its bounds, what a value must be (for the message), and the environment variable read when
 * the field is left 0. The defaults, the checks and the environment all come from this table,
 * and docs/guide.md's configuration table lists the same rows. The placement fields (shards,
 * cpus, placement) are resolved by core/placement.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

enum { POW2 = 1 }; /* the value must be a power of two */

/*  field             default             min            max            flags env
 *  what a good value is (for messages) */
#define TPC__CONFIG_NUMBERS(X)                                                                     \
    X(stack_size, TPC_DEFAULT_STACK, TPC_MIN_STACK, TPC_MAX_STACK, 0, NULL,                        \
      "a stack size in bytes in [16 KiB, 1 GiB]")                                                  \
    X(stack_cache, 64, 1, 1 << 20, 0, NULL, "a count in [1, 2^20]")                                \
    X(time_slice_ns, 500000, 1000, 60000000000LL, 0, NULL, "ns in [1 us, 60 s]")                   \
    X(ring_entries, 256, 1, 32768, POW2, NULL, "a power of two up to 32768")                       \
    X(timer_tick_ns, 1000000, 10000, 1000000000, 0, NULL, "ns in [10 us, 1 s]")                    \
    X(spin_ns, 0, -1000000000, 1000000000, 0, "TPC_SPIN_NS",                                       \
      "a non-zero number of ns within a second (negative: never spin)")                            \
    /* (msg_slots and stall_ms: tpc_start puts in the run's default, core/runtime.c) */            \
    X(msg_slots, 1024, 2, 1 << 24, POW2, NULL, "a power of two in [2, 2^24]")                      \
    X(blocking_threads, 4, 1, 256, 0, NULL, "a count in [1, 256]")                                 \
    X(blocking_queue, 256, 1, 1 << 20, 0, NULL, "a count in [1, 2^20]")                            \
    X(coalesce_us, 0, -10000, 10000, 0, "TPC_COALESCE_US",                                         \
      "a non-zero number of us up to 10000 (negative: off)")                                       \
    X(drain_ms, 5000, 1, 3600000, 0, NULL, "ms in [1, 3600000] (an hour)")                         \
    X(stall_ms, 25, -1000000, 60000, 0, "TPC_STALL_MS",                                            \
      "a non-zero number of ms up to 60000 (negative: off)")                                       \
    X(iowq_workers, 0, 1, 1024, 0, NULL, "a count in [1, 1024] (0: the kernel's default)")         \
    X(registered_slots, 1024, 1, 16384, 0, NULL, "a count in [1, 16384]")

static bool in_bounds(long long v, long long min, long long max, int flags)
{
    return v >= min && v <= max && (!(flags & POW2) || (v & (v - 1)) == 0);
}

/* The value of environment variable `name` if set: a non-zero integer within bounds. 0 if
 * unset; -EINVAL (with a message) for anything else. */
static int from_env(const char *name, long long min, long long max, const char *what,
                    long long *out)
{
    const char *env = getenv(name);
    if (!env || !*env)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(env, &end, 10);
    if (*end || errno || v == 0 || !in_bounds(v, min, max, 0)) {
        fprintf(stderr, "libtpc: %s='%s' is not %s\n", name, env, what);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* tpc_config.backend, or TPC_BACKEND when it is left 0 (auto). */
static int resolve_backend(tpc_config *c)
{
    if ((unsigned)c->backend > TPC_BACKEND_EPOLL) {
        fprintf(stderr, "libtpc: tpc_config.backend %d is not a tpc_backend\n", (int)c->backend);
        return -EINVAL;
    }
    const char *env = getenv("TPC_BACKEND");
    if (c->backend != TPC_BACKEND_AUTO || !env || !*env || !strcmp(env, "auto"))
        return 0;
    if (!strcmp(env, "uring") || !strcmp(env, "io_uring"))
        c->backend = TPC_BACKEND_URING;
    else if (!strcmp(env, "epoll"))
        c->backend = TPC_BACKEND_EPOLL;
    else {
        fprintf(stderr, "libtpc: TPC_BACKEND='%s' is not auto, uring or epoll\n", env);
        return -EINVAL;
    }
    return 0;
}

/* tpc_config.share_cpus, or TPC_SHARE_CPUS ("1" or "0") when it is false. */
static int resolve_share(tpc_config *c)
{
    const char *env = getenv("TPC_SHARE_CPUS");
    if (c->share_cpus || !env || !*env || !strcmp(env, "0"))
        return 0;
    if (strcmp(env, "1") != 0) {
        fprintf(stderr, "libtpc: TPC_SHARE_CPUS='%s' is not 0 or 1\n", env);
        return -EINVAL;
    }
    c->share_cpus = true;
    return 0;
}

/* New fields come out of `reserved`: the struct keeps its size (on LP64, where a pointer takes
 * one reserved word). */
_Static_assert(sizeof(void *) != 8 || sizeof(tpc_config) == 184, "tpc_config changed size");

int tpc__config_resolve(const tpc_config *in, tpc_config *c)
{
    if (in)
        *c = *in;
    else
        memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < sizeof(c->reserved) / sizeof(c->reserved[0]); i++)
        if (c->reserved[i]) {
            fprintf(stderr,
                    "libtpc: tpc_config.reserved[%zu] is not zero (a field this version of "
                    "libtpc does not know)\n",
                    i);
            return -EINVAL;
        }
    long long v;
    const char *env_;
#define X(field, dflt, min, max, flags, env, what)                                                 \
    v = (long long)c->field;                                                                       \
    if (v == 0 && (env_ = env) != NULL) {                                                          \
        int rc_ = from_env(env_, (min), (max), what, &v);                                          \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
    } else if (v != 0 && !in_bounds(v, (min), (max), (flags))) {                                   \
        fprintf(stderr, "libtpc: tpc_config." #field " %lld is not %s\n", v, what);                \
        return -EINVAL;                                                                            \
    }                                                                                              \
    c->field = (__typeof__(c->field))(v ? v : (long long)(dflt));
    TPC__CONFIG_NUMBERS(X)
#undef X
    int rc = resolve_backend(c);
    return rc < 0 ? rc : resolve_share(c);
}

/* The default ring size for n shards: 1024 slots, halved until the n - 1 rings a shard receives
 * on take at most TPC__RING_BUDGET bytes, and never below 64 slots. So ring memory grows
 * linearly with the shards (1 MiB a shard), not with their square. */
unsigned tpc__default_msg_slots(unsigned n)
{
    unsigned slots = 1024;
    while (slots > 64 && (size_t)(n > 1 ? n - 1 : 1) * slots * 16 > TPC__RING_BUDGET)
        slots /= 2;
    return slots;
}
