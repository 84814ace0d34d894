/* Where each shard's io-wq workers run and how many there may be (tpc_config.iowq_cpus and
 * iowq_workers).
 *
 * io_uring hands what it cannot do without blocking (fsync, fdatasync, an O_DIRECT write that
 * extends a file on ext4, a buffered read that misses the cache) to worker threads of the
 * submitting thread, which inherit its CPU affinity: a pinned shard's one CPU. A shard that
 * commits then competes with its own workers, which preempt it every time the disk answers. The
 * kernel lets the ring's owner move them (IORING_REGISTER_IOWQ_AFF, within its cpuset, not its
 * own affinity) and bound them (IORING_REGISTER_IOWQ_MAX_WORKERS); both apply to the io-wq of
 * the calling thread, which exists once the ring's fd is registered or the first SQE went in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* Parses a CPU list such as "0-3,8" into *set. Returns 0 or -EINVAL. */
static int parse_cpus(const char *spec, cpu_set_t *set)
{
    CPU_ZERO(set);
    const char *p = spec;
    while (*p) {
        char *end;
        errno = 0;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p || errno || lo < 0 || lo >= CPU_SETSIZE)
            return -EINVAL;
        p = end;
        if (*p == '-') {
            hi = strtol(++p, &end, 10);
            if (end == p || errno || hi < lo || hi >= CPU_SETSIZE)
                return -EINVAL;
            p = end;
        }
        for (long c = lo; c <= hi; c++)
            CPU_SET((int)c, set);
        if (*p == ',' && p[1])
            p++;
        else if (*p)
            return -EINVAL;
    }
    return CPU_COUNT(set) ? 0 : -EINVAL;
}

/* tpc_config.iowq_cpus, else TPC_IOWQ_CPUS, else "auto". */
static const char *iowq_spec(const tpc_config *c)
{
    const char *spec = c->iowq_cpus;
    if (!spec || !*spec)
        spec = getenv("TPC_IOWQ_CPUS");
    return spec && *spec ? spec : "auto";
}

/* Says (once, from shard 0) why the setting is refused. */
static int refuse(struct tpc__shard *s, const char *spec)
{
    const tpc_config *c = &s->rt->config;
    if (s->id == 0)
        fprintf(stderr, "libtpc: %s '%s' is not a CPU list, \"auto\" or \"shard\"\n",
                c->iowq_cpus && *c->iowq_cpus ? "tpc_config.iowq_cpus" : "TPC_IOWQ_CPUS", spec);
    return -EINVAL;
}

/* "auto": the allowed CPUs no shard is pinned to; else the other shards' CPUs. False when
 * that leaves nothing (a single CPU) or the shard is not pinned. */
static bool auto_cpus(struct tpc__shard *s, cpu_set_t *set)
{
    if (s->cpu < 0)
        return false;
    struct tpc_runtime *rt = s->rt;
    *set = *tpc__pool_cpus(rt);
    for (unsigned i = 0; i < rt->nshards; i++)
        if (rt->threads[i].place.cpu >= 0)
            CPU_CLR(rt->threads[i].place.cpu, set);
    if (CPU_COUNT(set) == 0) {
        *set = *tpc__pool_cpus(rt);
        CPU_CLR(s->cpu, set);
    }
    return CPU_COUNT(set) > 0;
}

int tpc__iowq_setup(struct tpc__shard *s)
{
    const tpc_config *c = &s->rt->config;
    const char *spec = iowq_spec(c);
    cpu_set_t set;
    int rc = 0;
    if (s->ep) /* no io_uring, no workers: only a bad list is refused */
        return strcmp(spec, "auto") && strcmp(spec, "shard") && parse_cpus(spec, &set) < 0
                   ? refuse(s, spec)
                   : 0;
    if (!strcmp(spec, "auto")) {
        /* Best effort: a kernel or cpuset that refuses leaves the workers where they were. */
        if (auto_cpus(s, &set))
            io_uring_register_iowq_aff(&s->ring, sizeof(set), &set);
    } else if (strcmp(spec, "shard") != 0) {
        if (parse_cpus(spec, &set) < 0)
            return refuse(s, spec);
        rc = io_uring_register_iowq_aff(&s->ring, sizeof(set), &set);
        if (rc < 0) {
            fprintf(stderr, "libtpc: shard %u: cannot put its io_uring workers on CPUs %s: %s\n",
                    s->id, spec, strerror(-rc));
            return rc;
        }
    }
    if (c->iowq_workers > 0) {
        unsigned max[2] = {(unsigned)c->iowq_workers, 0}; /* bounded, unbounded (unchanged) */
        rc = io_uring_register_iowq_max_workers(&s->ring, max);
        if (rc < 0) {
            fprintf(stderr, "libtpc: shard %u: cannot bound its io_uring workers: %s\n", s->id,
                    strerror(-rc));
            return rc;
        }
    }
    return 0;
}
