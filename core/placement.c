/* Where shards run: the CPU list (config, TPC_CPUS, or the affinity mask) in hwloc's logical
 * PU order, so consecutive shards fill a core's hyperthreads and a NUMA node before the next. */

#include <hwloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static hwloc_topology_t topo;
static int topo_err;
static pthread_once_t topo_once = PTHREAD_ONCE_INIT;

/* Loaded once per process: loading costs milliseconds and the topology is read-only after. */
static void topo_load(void)
{
    if (hwloc_topology_init(&topo) != 0 || hwloc_topology_load(topo) != 0) {
        topo_err = -ENODEV;
        topo = NULL;
    }
}

static hwloc_topology_t topology(void)
{
    pthread_once(&topo_once, topo_load);
    return topo;
}

/* Parses "0-3,8,10-11" into set. Returns 0 or -EINVAL. */
static int parse_cpu_list(const char *str, cpu_set_t *set)
{
    CPU_ZERO(set);
    const char *p = str;
    if (!*p)
        return -EINVAL;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b;
        if (end == p || a < 0 || a >= CPU_SETSIZE)
            return -EINVAL;
        p = end;
        b = a;
        if (*p == '-') {
            p++;
            b = strtol(p, &end, 10);
            if (end == p || b < a || b >= CPU_SETSIZE)
                return -EINVAL;
            p = end;
        }
        for (long c = a; c <= b; c++)
            CPU_SET((int)c, set);
        if (*p == ',')
            p++;
        else if (*p)
            return -EINVAL;
    }
    return 0;
}

static int parse_count(const char *str, unsigned *out)
{
    char *end;
    long v = strtol(str, &end, 10);
    if (end == str || *end || v < 1 || v > TPC_MAX_SHARDS)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

int tpc__placement(const tpc_config *cfg, unsigned *nshards, int **cpus_out)
{
    cpu_set_t allowed, want;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return -errno;
    const char *list = cfg->cpus;
    const char *src = "tpc_config.cpus";
    if (!list && (list = getenv("TPC_CPUS")) && *list)
        src = "TPC_CPUS";
    else if (list == NULL || !*list)
        list = NULL;
    if (list) {
        if (parse_cpu_list(list, &want) != 0) {
            fprintf(stderr, "libtpc: %s: cannot parse CPU list '%s' (want e.g. \"0-3,8\")\n", src,
                    list);
            return -EINVAL;
        }
        cpu_set_t both;
        CPU_AND(&both, &want, &allowed);
        if (!CPU_EQUAL(&both, &want)) {
            fprintf(stderr,
                    "libtpc: %s: CPU list '%s' names CPUs outside this process's "
                    "affinity mask\n",
                    src, list);
            return -EINVAL;
        }
    } else {
        want = allowed;
    }

    int ncpu = CPU_COUNT(&want);
    int *cpus = calloc((size_t)ncpu + 1, sizeof(int));
    if (!cpus)
        return -ENOMEM;
    int k = 0;
    hwloc_topology_t t = topology();
    if (t) {
        int depth = hwloc_get_type_depth(t, HWLOC_OBJ_PU);
        unsigned npu = hwloc_get_nbobjs_by_depth(t, depth);
        for (unsigned i = 0; i < npu && k < ncpu; i++) {
            hwloc_obj_t pu = hwloc_get_obj_by_depth(t, depth, i);
            if (pu->os_index < CPU_SETSIZE && CPU_ISSET((int)pu->os_index, &want))
                cpus[k++] = (int)pu->os_index;
        }
    }
    if (k != ncpu) { /* no topology, or it disagrees with the mask: plain OS order */
        k = 0;
        for (int c = 0; c < CPU_SETSIZE && k < ncpu; c++)
            if (CPU_ISSET(c, &want))
                cpus[k++] = c;
    }

    unsigned n = cfg->shards;
    const char *env = getenv("TPC_SHARDS");
    if (n > TPC_MAX_SHARDS) {
        fprintf(stderr, "libtpc: tpc_config.shards = %u is more than %d\n", n, TPC_MAX_SHARDS);
        free(cpus);
        return -EINVAL;
    }
    if (!n && env && *env && parse_count(env, &n) != 0) {
        fprintf(stderr, "libtpc: TPC_SHARDS='%s' is not a number from 1 to %d\n", env,
                TPC_MAX_SHARDS);
        free(cpus);
        return -EINVAL;
    }
    if (!n)
        n = (unsigned)ncpu;
    if (n > (unsigned)ncpu) { /* oversubscribed: let the kernel schedule them */
        free(cpus);
        cpus = malloc(n * sizeof(int));
        if (!cpus)
            return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
            cpus[i] = -1;
    }
    *nshards = n;
    *cpus_out = cpus;
    return 0;
}

int tpc__pin_thread(int cpu)
{
    hwloc_topology_t t = topology();
    if (t) {
        hwloc_bitmap_t set = hwloc_bitmap_alloc();
        if (!set)
            return -ENOMEM;
        hwloc_bitmap_only(set, (unsigned)cpu);
        int rc = hwloc_set_cpubind(t, set, HWLOC_CPUBIND_THREAD | HWLOC_CPUBIND_STRICT);
        if (rc != 0)
            rc = hwloc_set_cpubind(t, set, HWLOC_CPUBIND_THREAD);
        hwloc_bitmap_free(set);
        return rc == 0 ? 0 : -errno;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}
