/* Where shards run: the CPU list (config, TPC_CPUS, or the affinity mask) in hwloc's logical
 * PU order, so consecutive shards fill a core's hyperthreads and a NUMA node before the next;
 * the policy keeps every PU, or the first of each core or NUMA node. */

#include <hwloc.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "placement.h"

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

/* Topologies loaded from TPC_TOPOLOGY (an hwloc XML file, or a synthetic description such as
 * "pack:2 core:4 pu:2"), kept for the rest of the process like the real one: a runtime and its
 * reports read them without a lock. */
#define FAKE_MAX 16
static struct {
    char *src;
    hwloc_topology_t t;
} fakes[FAKE_MAX];
static pthread_mutex_t fakes_lock = PTHREAD_MUTEX_INITIALIZER;

static hwloc_topology_t fake_load(const char *src)
{
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0)
        return NULL;
    int rc = access(src, R_OK) == 0 ? hwloc_topology_set_xml(t, src)
                                    : hwloc_topology_set_synthetic(t, src);
    if (rc != 0 || hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        return NULL;
    }
    return t;
}

static hwloc_topology_t fake_topology(const char *src)
{
    hwloc_topology_t t = NULL;
    pthread_mutex_lock(&fakes_lock);
    int i = 0;
    for (; i < FAKE_MAX && fakes[i].src; i++)
        if (!strcmp(fakes[i].src, src)) {
            t = fakes[i].t;
            break;
        }
    if (!t && i < FAKE_MAX && (t = fake_load(src)) != NULL && (fakes[i].src = strdup(src)))
        fakes[i].t = t;
    else if (!t || i == FAKE_MAX)
        fprintf(stderr, "libtpc: TPC_TOPOLOGY='%s': %s\n", src,
                i == FAKE_MAX ? "too many topologies loaded in one process"
                              : "neither a readable hwloc XML file nor a synthetic description "
                                "hwloc accepts (such as \"pack:2 core:4 pu:2\")");
    pthread_mutex_unlock(&fakes_lock);
    return i == FAKE_MAX ? NULL : t;
}

/* The topology a runtime starting now works on: TPC_TOPOLOGY's if set (a simulation: shards
 * are placed on its PUs but not pinned, memory is not bound), else this machine's. */
static int topology_now(hwloc_topology_t *t, bool *fake)
{
    const char *src = getenv("TPC_TOPOLOGY");
    *fake = src && *src;
    *t = *fake ? fake_topology(src) : topology();
    return *fake && !*t ? -EINVAL : 0;
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

int tpc__place_on(hwloc_topology_t t, const cpu_set_t *want, int policy, struct tpc__place *out,
                  int max)
{
    int depth = hwloc_get_type_depth(t, HWLOC_OBJ_PU);
    unsigned npu = hwloc_get_nbobjs_by_depth(t, depth);
    hwloc_bitmap_t seen = hwloc_bitmap_alloc();
    if (!seen)
        return -ENOMEM;
    int n = 0;
    for (unsigned i = 0; i < npu && n < max; i++) {
        hwloc_obj_t pu = hwloc_get_obj_by_depth(t, depth, i);
        if (pu->os_index >= CPU_SETSIZE || !CPU_ISSET((int)pu->os_index, want))
            continue;
        hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_CORE, pu);
        int node = pu->nodeset ? hwloc_bitmap_first(pu->nodeset) : -1;
        int key = policy == TPC_PLACE_CORE   ? (core ? (int)core->logical_index : -1)
                  : policy == TPC_PLACE_NODE ? node
                                             : -1;
        if (key >= 0) { /* the first allowed PU of each core or node */
            if (hwloc_bitmap_isset(seen, (unsigned)key))
                continue;
            hwloc_bitmap_set(seen, (unsigned)key);
        }
        out[n++] =
            (struct tpc__place){(int)pu->os_index, core ? (int)core->logical_index : -1, node};
    }
    hwloc_bitmap_free(seen);
    return n;
}

static int parse_policy(const tpc_config *cfg, int *policy)
{
    *policy = cfg->placement;
    if (cfg->placement > TPC_PLACE_NODE) {
        fprintf(stderr, "libtpc: tpc_config.placement %d is not a tpc_placement\n",
                (int)cfg->placement);
        return -EINVAL;
    }
    const char *env = getenv("TPC_PLACEMENT");
    if (cfg->placement != TPC_PLACE_PU || !env || !*env)
        return 0;
    if (!strcmp(env, "pu"))
        *policy = TPC_PLACE_PU;
    else if (!strcmp(env, "core"))
        *policy = TPC_PLACE_CORE;
    else if (!strcmp(env, "node"))
        *policy = TPC_PLACE_NODE;
    else {
        fprintf(stderr, "libtpc: TPC_PLACEMENT='%s' is not one of pu, core, node\n", env);
        return -EINVAL;
    }
    return 0;
}

/* The CPUs the shards may use: tpc_config.cpus, else TPC_CPUS, else the affinity mask. */
static int wanted_cpus(const tpc_config *cfg, hwloc_topology_t t, bool fake, cpu_set_t *want)
{
    cpu_set_t allowed;
    if (fake) { /* a simulated machine: its PUs stand in for the affinity mask */
        CPU_ZERO(&allowed);
        hwloc_const_bitmap_t all = hwloc_topology_get_complete_cpuset(t);
        unsigned c;
        hwloc_bitmap_foreach_begin(c, all) if (c < CPU_SETSIZE) CPU_SET((int)c, &allowed);
        hwloc_bitmap_foreach_end();
    } else if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return -errno;
    const char *list = cfg->cpus;
    const char *src = "tpc_config.cpus";
    if (!list && (list = getenv("TPC_CPUS")) && *list)
        src = "TPC_CPUS";
    else if (list == NULL || !*list)
        list = NULL;
    if (!list) {
        *want = allowed;
        return 0;
    }
    if (parse_cpu_list(list, want) != 0) {
        fprintf(stderr, "libtpc: %s: cannot parse CPU list '%s' (want e.g. \"0-3,8\")\n", src,
                list);
        return -EINVAL;
    }
    cpu_set_t both;
    CPU_AND(&both, want, &allowed);
    if (!CPU_EQUAL(&both, want)) {
        fprintf(stderr, "libtpc: %s: CPU list '%s' names CPUs outside %s\n", src, list,
                fake ? "the simulated machine (TPC_TOPOLOGY)" : "this process's affinity mask");
        return -EINVAL;
    }
    return 0;
}

/* The number of shards: tpc_config.shards, else TPC_SHARDS, else one per place found. */
static int shard_count(const tpc_config *cfg, unsigned places, unsigned *n)
{
    const char *env = getenv("TPC_SHARDS");
    *n = cfg->shards;
    if (*n > TPC_MAX_SHARDS) {
        fprintf(stderr, "libtpc: tpc_config.shards = %u is more than %d\n", *n, TPC_MAX_SHARDS);
        return -EINVAL;
    }
    if (!*n && env && *env && parse_count(env, n) != 0) {
        fprintf(stderr, "libtpc: TPC_SHARDS='%s' is not a number from 1 to %d\n", env,
                TPC_MAX_SHARDS);
        return -EINVAL;
    }
    if (!*n)
        *n = places;
    return 0;
}

int tpc__placement(const tpc_config *cfg, unsigned *nshards, struct tpc__place **out,
                   void **topo_out, bool *fake)
{
    cpu_set_t want;
    int policy;
    hwloc_topology_t t;
    int rc = parse_policy(cfg, &policy);
    if (rc < 0 || (rc = topology_now(&t, fake)) < 0 || (rc = wanted_cpus(cfg, t, *fake, &want)) < 0)
        return rc;
    *topo_out = t;
    int ncpu = CPU_COUNT(&want);
    struct tpc__place *places = calloc((size_t)ncpu + 1, sizeof(*places));
    if (!places)
        return -ENOMEM;
    int k = t ? tpc__place_on(t, &want, policy, places, ncpu) : 0;
    if (k <= 0) { /* no topology, or it disagrees with the mask: plain OS order, one per CPU */
        k = 0;
        for (int c = 0; c < CPU_SETSIZE && k < ncpu; c++)
            if (CPU_ISSET(c, &want))
                places[k++] = (struct tpc__place){c, -1, -1};
    }
    unsigned n;
    if ((rc = shard_count(cfg, (unsigned)k, &n)) < 0) {
        free(places);
        return rc;
    }
    if (n > (unsigned)k) { /* oversubscribed: let the kernel schedule them */
        free(places);
        places = malloc(n * sizeof(*places));
        if (!places)
            return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
            places[i] = (struct tpc__place){-1, -1, -1};
    }
    *nshards = n;
    *out = places;
    return 0;
}

int tpc__pin_thread(int cpu, int node)
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
        rc = rc == 0 ? 0 : -errno;
        /* Memory the shard allocates from now on (stacks, rings, queues) comes from its own
         * node. Only worth a call where there is more than one node. */
        if (rc == 0 && node >= 0 && hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) > 1) {
            hwloc_bitmap_only(set, (unsigned)node);
            if (hwloc_set_membind(t, set, HWLOC_MEMBIND_BIND,
                                  HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0)
                fprintf(stderr, "libtpc: cannot bind memory to NUMA node %d: %s\n", node,
                        strerror(errno));
        }
        hwloc_bitmap_free(set);
        return rc;
    }
    (void)node;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}
