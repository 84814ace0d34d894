/* The hwloc side of the NUMA kit (include/tpc/numa.h): the topology tree, node distances and
 * memory bound to a node, read from the topology a runtime was placed on. With placement.c the
 * only file that sees hwloc; core/numa.c has the rest. */
#include <hwloc.h>
#include <string.h>
#include <sys/mman.h>
#include "placement.h"

static int kind_of(hwloc_obj_t o)
{
    switch (o->type) {
    case HWLOC_OBJ_MACHINE:
        return TPC_TOPO_MACHINE;
    case HWLOC_OBJ_PACKAGE:
        return TPC_TOPO_PACKAGE;
    case HWLOC_OBJ_NUMANODE:
        return TPC_TOPO_NODE;
    case HWLOC_OBJ_CORE:
        return TPC_TOPO_CORE;
    case HWLOC_OBJ_PU:
        return TPC_TOPO_PU;
    default:
        return hwloc_obj_type_is_dcache(o->type) ? TPC_TOPO_CACHE : -1;
    }
}

struct walk {
    tpc_topo_obj *out;
    int max, n;
    const int *shard_cpu; /* shard_cpu[i]: shard i's CPU */
    int nshards;
};

static void emit(struct walk *w, hwloc_obj_t o, int kind, int depth)
{
    if (w->n < w->max) {
        tpc_topo_obj *r = &w->out[w->n];
        memset(r, 0, sizeof(*r));
        r->kind = (tpc_topo_kind)kind;
        r->depth = depth;
        r->index =
            kind == TPC_TOPO_PU || kind == TPC_TOPO_NODE ? (int)o->os_index : (int)o->logical_index;
        r->node =
            o->nodeset && !hwloc_bitmap_iszero(o->nodeset) ? hwloc_bitmap_first(o->nodeset) : -1;
        r->shard = -1;
        if (kind == TPC_TOPO_CACHE) {
            r->level = (int)o->attr->cache.depth;
            r->bytes = o->attr->cache.size;
        } else if (kind == TPC_TOPO_NODE)
            r->bytes = o->attr->numanode.local_memory;
        for (int i = 0; kind == TPC_TOPO_PU && i < w->nshards && r->shard < 0; i++)
            if (w->shard_cpu[i] == (int)o->os_index)
                r->shard = i;
    }
    w->n++;
}

/* Objects hwloc has that the kit does not show (groups, dies, instruction caches) are skipped,
 * their children shown one level up. */
static void walk(struct walk *w, hwloc_obj_t o, int depth)
{
    int kind = kind_of(o);
    if (kind >= 0)
        emit(w, o, kind, depth++);
    for (hwloc_obj_t m = o->memory_first_child; m; m = m->next_sibling)
        walk(w, m, depth);
    for (hwloc_obj_t c = o->first_child; c; c = c->next_sibling)
        walk(w, c, depth);
}

int tpc__topo_objs(void *topo, const int *shard_cpu, int nshards, tpc_topo_obj *out, int max)
{
    hwloc_topology_t t = topo;
    struct walk w = {out, max, 0, shard_cpu, nshards};
    walk(&w, hwloc_get_root_obj(t), 0);
    return w.n;
}

int tpc__topo_nodes(void *topo, int *nodes, int max)
{
    hwloc_topology_t t = topo;
    hwloc_const_nodeset_t set = hwloc_topology_get_topology_nodeset(t);
    int n = 0;
    unsigned k;
    hwloc_bitmap_foreach_begin(k, set)
    {
        if (n < max)
            nodes[n] = (int)k;
        n++;
    }
    hwloc_bitmap_foreach_end();
    return n;
}

void tpc__topo_info(void *topo, tpc_topo_info *out)
{
    hwloc_topology_t t = topo;
    memset(out, 0, sizeof(*out));
    out->packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
    out->nodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
    out->cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    out->pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    out->simulated = !hwloc_topology_is_thissystem(t);
    out->distances_known = tpc__topo_distance(t, -1, -1) == 0;
}

/* The latency-like distance matrix between NUMA nodes, if the topology has one. (a, b) = (-1,
 * -1) asks only whether it has one (0, else -ENOENT). */
int tpc__topo_distance(void *topo, int a, int b)
{
    hwloc_topology_t t = topo;
    hwloc_obj_t na = hwloc_get_numanode_obj_by_os_index(t, (unsigned)a);
    hwloc_obj_t nb = hwloc_get_numanode_obj_by_os_index(t, (unsigned)b);
    if ((a >= 0 || b >= 0) && (!na || !nb))
        return -EINVAL;
    struct hwloc_distances_s *d[4];
    unsigned nr = 4;
    if (hwloc_distances_get_by_type(t, HWLOC_OBJ_NUMANODE, &nr, d,
                                    HWLOC_DISTANCES_KIND_MEANS_LATENCY, 0) != 0)
        nr = 0;
    int rc = -ENOENT;
    for (unsigned i = 0; i < nr && i < 4; i++) { /* nr may say more than were filled */
        int ia = na ? hwloc_distances_obj_index(d[i], na) : -1;
        int ib = nb ? hwloc_distances_obj_index(d[i], nb) : -1;
        if (rc == -ENOENT && (a < 0 || (ia >= 0 && ib >= 0)))
            rc = a < 0 ? 0 : (int)d[i]->values[(unsigned)ia * d[i]->nbobjs + (unsigned)ib];
        hwloc_distances_release(t, d[i]);
    }
    if (rc == -ENOENT && a >= 0) /* none known: Linux's defaults without a SLIT */
        rc = a == b ? 10 : 20;
    return rc;
}

int tpc__topo_package(void *topo, int cpu)
{
    hwloc_topology_t t = topo;
    hwloc_obj_t pu = cpu >= 0 ? hwloc_get_pu_obj_by_os_index(t, (unsigned)cpu) : NULL;
    hwloc_obj_t p = pu ? hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_PACKAGE, pu) : NULL;
    return p ? (int)p->logical_index : -1;
}

void *tpc__alloc_on(void *topo, bool bind, size_t size, int node)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    hwloc_topology_t t = topo;
    if (bind && node >= 0 && hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) > 1) {
        hwloc_nodeset_t set = hwloc_bitmap_alloc();
        if (!set) {
            munmap(p, size);
            return NULL;
        }
        hwloc_bitmap_only(set, (unsigned)node);
        /* The pages are placed when first touched, by whichever thread: the policy is the
         * area's. A failure leaves them to the kernel's default, which tpc_mem_node shows. */
        hwloc_set_area_membind(t, p, size, set, HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_BYNODESET);
        hwloc_bitmap_free(set);
    }
    return p;
}
