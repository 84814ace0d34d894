/* The NUMA kit (include/tpc/numa.h): where shards sit and how far apart, memory on a shard's
 * node and where a shard's memory really is (move_pages(2)), and the matrices tpc-numa prints.
 * The hwloc reading lives in core/numa-topo.c, the matrices in core/numa-matrix.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"
#include "rings.h"

static int runtime_of_self(struct tpc_runtime **rt)
{
    if (!tpc__self)
        return -EPERM;
    *rt = tpc__self->rt;
    return (*rt)->topo ? 0 : -ENODEV;
}

int tpc_topology_info(tpc_topo_info *out)
{
    struct tpc_runtime *rt;
    int rc = runtime_of_self(&rt);
    if (rc < 0 || !out)
        return rc < 0 ? rc : -EINVAL;
    tpc__topo_info(rt->topo, out);
    out->simulated = rt->topo_fake;
    return 0;
}

int tpc_topology_objs(tpc_topo_obj *out, int max)
{
    struct tpc_runtime *rt;
    int rc = runtime_of_self(&rt);
    if (rc < 0 || max < 0 || (!out && max > 0))
        return rc < 0 ? rc : -EINVAL;
    int *cpu = malloc(rt->nshards * sizeof(*cpu));
    if (!cpu)
        return -ENOMEM;
    for (unsigned i = 0; i < rt->nshards; i++)
        cpu[i] = rt->shards[i]->place_cpu;
    rc = tpc__topo_objs(rt->topo, cpu, (int)rt->nshards, out, max);
    free(cpu);
    return rc;
}

int tpc_numa_nodes(int *nodes, int max)
{
    struct tpc_runtime *rt;
    int rc = runtime_of_self(&rt);
    if (rc < 0 || max < 0 || (!nodes && max > 0))
        return rc < 0 ? rc : -EINVAL;
    return tpc__topo_nodes(rt->topo, nodes, max);
}

int tpc_numa_distance(int a, int b)
{
    struct tpc_runtime *rt;
    int rc = runtime_of_self(&rt);
    if (rc < 0 || a < 0 || b < 0)
        return rc < 0 ? rc : -EINVAL;
    return tpc__topo_distance(rt->topo, a, b);
}

static struct tpc__shard *shard_at(int shard, int *rc)
{
    *rc = tpc__self ? 0 : -EPERM;
    if (*rc == 0 && (shard < 0 || (unsigned)shard >= tpc__self->rt->nshards))
        *rc = -EINVAL;
    return *rc ? NULL : tpc__self->rt->shards[shard];
}

int tpc_shard_place_of(int shard, tpc_shard_place *out)
{
    int rc;
    struct tpc__shard *s = shard_at(shard, &rc);
    if (!s || !out)
        return s ? -EINVAL : rc;
    void *topo = s->rt->topo;
    *out = (tpc_shard_place){s->place_cpu, s->core, s->node,
                             topo ? tpc__topo_package(topo, s->place_cpu) : -1};
    return 0;
}

int tpc_shard_node(int shard)
{
    int rc;
    struct tpc__shard *s = shard_at(shard, &rc);
    if (!s)
        return rc;
    return s->node >= 0 ? s->node : -ENOENT;
}

int tpc_shard_distance(int a, int b)
{
    int na = tpc_shard_node(a), nb = tpc_shard_node(b);
    if (na < 0 || nb < 0)
        return na < 0 ? na : nb;
    return tpc_numa_distance(na, nb);
}

/* ---- Memory ---- */

static size_t page_round(size_t size)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    return (size + ps - 1) & ~(ps - 1);
}

void *tpc_alloc_local(size_t size)
{
    struct tpc__shard *s = tpc__self;
    if (!s || !size) {
        errno = s ? EINVAL : EPERM;
        return NULL;
    }
    void *p = NULL;
    if (size <= SIZE_MAX / 2 && s->rt->topo)
        p = tpc__alloc_on(s->rt->topo, !s->rt->topo_fake, page_round(size), s->node);
    else if (size <= SIZE_MAX / 2) {
        p = mmap(NULL, page_round(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                 0);
        p = p == MAP_FAILED ? NULL : p;
    }
    if (!p)
        errno = ENOMEM;
    return p;
}

void tpc_free_local(void *p, size_t size)
{
    if (p && size)
        munmap(p, page_round(size));
}

/* move_pages(2) asking only where each page is: status[i] is a node or a negative errno. */
static int pages_where(int n, void **pages, int *status)
{
    if (syscall(SYS_move_pages, 0, (unsigned long)n, pages, NULL, status, 0) != 0)
        return -errno;
    return 0;
}

int tpc_mem_node(const void *addr)
{
    void *page = (void *)((uintptr_t)addr & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));
    int status = -ENOENT;
    int rc = pages_where(1, &page, &status);
    return rc < 0 ? rc : status;
}

#define LOC_PAGES 64 /* pages sampled per kind of memory */

struct sample {
    void *pages[LOC_PAGES];
    int n;
};

/* Adds up to `want` pages spread evenly over [p, p + len). */
static void sample_range(struct sample *sm, const void *p, size_t len, int want)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(ps - 1), hi = (uintptr_t)p + len;
    size_t npages = (hi - lo + ps - 1) / ps;
    size_t step = npages > (size_t)want ? (npages + (size_t)want - 1) / (size_t)want : 1;
    for (size_t k = 0; k < npages && sm->n < LOC_PAGES; k += step)
        sm->pages[sm->n++] = (void *)(lo + k * ps);
}

static int where(struct sample *sm, int node, tpc_mem_where *w)
{
    int status[LOC_PAGES], count[LOC_PAGES], id[LOC_PAGES], nid = 0, best = -1;
    memset(w, 0, sizeof(*w));
    w->node = -1;
    int rc = sm->n ? pages_where(sm->n, sm->pages, status) : 0;
    for (int i = 0; rc == 0 && i < sm->n; i++) {
        w->pages++;
        if (status[i] < 0) {
            w->absent++;
            continue;
        }
        status[i] == node ? w->local++ : w->remote++;
        int k = 0;
        while (k < nid && id[k] != status[i])
            k++;
        if (k == nid) {
            id[nid++] = status[i];
            count[k] = 0;
        }
        count[k]++;
        if (best < 0 || count[k] > count[best])
            best = k;
    }
    w->node = best >= 0 ? id[best] : -1;
    return rc;
}

/* On the shard measured: samples each kind of its memory, the blocks it allocates touched. */
static int locality_here(void *arg)
{
    tpc_mem_locality *out = arg;
    struct tpc__shard *s = tpc__self;
    struct tpc_runtime *rt = s->rt;
    size_t block = 256 * 1024;
    char *heap = malloc(block), *local = tpc_alloc_local(block);
    struct sample st = {.n = 0}, rg = {.n = 0}, hp = {.n = 0}, lc = {.n = 0};
    int rc = heap && local ? 0 : -ENOMEM;
    if (rc == 0) {
        memset(heap, 1, block);
        memset(local, 1, block);
        st.n = tpc__stack_sample(s, st.pages, LOC_PAGES);
        size_t ring = sizeof(struct tpc__ring) + (size_t)rt->msg_slots * sizeof(struct tpc__slot);
        int per = rt->nshards > 1 ? LOC_PAGES / (int)(rt->nshards - 1) : LOC_PAGES;
        for (unsigned j = 0; j < rt->nshards; j++)
            if (s->in[j])
                sample_range(&rg, s->in[j], ring, per > 0 ? per : 1);
        sample_range(&hp, s, sizeof(*s), 8);
        sample_range(&hp, heap, block, LOC_PAGES);
        sample_range(&lc, local, block, LOC_PAGES);
        memset(out, 0, sizeof(*out));
        out->node = s->node;
        rc = where(&st, s->node, &out->stacks);
        rc = rc ? rc : where(&rg, s->node, &out->rings);
        rc = rc ? rc : where(&hp, s->node, &out->heap);
        rc = rc ? rc : where(&lc, s->node, &out->local);
    }
    free(heap);
    tpc_free_local(local, local ? block : 0);
    return rc;
}

int tpc__numa_run_on(int shard, tpc_fiber_fn fn, void *arg)
{
    tpc_fiber *f;
    int result = 0;
    if (shard == tpc_shard_id())
        return fn(arg);
    int rc = tpc_spawn_on(shard, NULL, fn, arg, &f);
    if (rc == 0)
        rc = tpc_join(f, &result);
    return rc < 0 ? rc : result;
}

int tpc_mem_locality_of(int shard, tpc_mem_locality *out)
{
    int rc;
    if (!shard_at(shard, &rc) || !out)
        return rc ? rc : -EINVAL;
    if (!tpc__self->current)
        return -EPERM;
    return tpc__numa_run_on(shard, locality_here, out);
}
