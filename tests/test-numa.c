/* The NUMA kit (include/tpc/numa.h): topology, placement and distances on hwloc synthetic
 * topologies and on a saved two-socket XML topology (TPC_TOPOLOGY), the matrices' shape and
 * order with small sizes, memory locality on this machine, and every misuse. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>
#include "helpers.h"

#ifndef NUMA_XML
#define NUMA_XML "tests/numa-2socket.xml"
#endif

/* Small sizes: the matrices' shape and order are under test here, not their figures. */
static const tpc_numa_opts small = {
    .rtt_rounds = 20, .idle_us = 20, .stream_msgs = 2000, .mem_bytes = 65536, .mem_reads = 2000};

static int count_kind(const tpc_topo_obj *o, int n, tpc_topo_kind k)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += o[i].kind == k;
    return c;
}

/* Depth first: the machine first, and each object at most one level below the one before. */
static void check_tree(const tpc_topo_obj *o, int n)
{
    CHECK(n > 0);
    CHECK_EQ(o[0].kind, TPC_TOPO_MACHINE);
    CHECK_EQ(o[0].depth, 0);
    for (int i = 1; i < n; i++) {
        CHECK(o[i].depth >= 1);
        CHECK(o[i].depth <= o[i - 1].depth + 1);
        CHECK(o[i].kind != TPC_TOPO_PU || o[i].node >= 0);
    }
}

/* "pack:2 [numa] l3:1 core:2 pu:2", placement core: a shard on the first PU of each core. */
static int synthetic_main(void *arg)
{
    (void)arg;
    tpc_topo_info info;
    CHECK_EQ(tpc_topology_info(&info), 0);
    CHECK_EQ(info.packages, 2);
    CHECK_EQ(info.nodes, 2);
    CHECK_EQ(info.cores, 4);
    CHECK_EQ(info.pus, 8);
    CHECK(info.simulated);
    CHECK(!info.distances_known);
    CHECK_EQ(tpc_shard_count(), 4);
    tpc_topo_obj o[64];
    int n = tpc_topology_objs(o, 64);
    CHECK_EQ(n, tpc_topology_objs(NULL, 0));
    CHECK(n > 0 && n <= 64);
    check_tree(o, n);
    CHECK_EQ(count_kind(o, n, TPC_TOPO_PACKAGE), 2);
    CHECK_EQ(count_kind(o, n, TPC_TOPO_NODE), 2);
    CHECK_EQ(count_kind(o, n, TPC_TOPO_CACHE), 2); /* the two L3 */
    CHECK_EQ(count_kind(o, n, TPC_TOPO_PU), 8);
    for (int i = 0; i < n; i++)
        if (o[i].kind == TPC_TOPO_PU) /* shards on PUs 0, 2, 4, 6 */
            CHECK_EQ(o[i].shard, o[i].index % 2 ? -1 : o[i].index / 2);
    CHECK_EQ(tpc_topology_objs(o, 3), n); /* a short array: the count still */
    int nodes[4];
    CHECK_EQ(tpc_numa_nodes(nodes, 4), 2);
    CHECK_EQ(nodes[0], 0);
    CHECK_EQ(nodes[1], 1);
    tpc_shard_place p;
    CHECK_EQ(tpc_shard_place_of(3, &p), 0);
    CHECK_EQ(p.cpu, 6);
    CHECK_EQ(p.core, 3);
    CHECK_EQ(p.node, 1);
    CHECK_EQ(p.package, 1);
    CHECK_EQ(tpc_shard_cpu(), -ENOENT); /* a simulated PU: the thread is not pinned */
    CHECK_EQ(tpc_shard_node(1), 0);
    CHECK_EQ(tpc_shard_node(2), 1);
    CHECK_EQ(tpc_shard_distance(0, 1), 10); /* no SLIT: Linux's defaults */
    CHECK_EQ(tpc_shard_distance(0, 2), 20);
    CHECK_EQ(tpc_numa_distance(1, 1), 10);
    return 0;
}

static int count_shards(void *arg)
{
    (void)arg;
    return tpc_shard_count();
}

static void test_synthetic(void **state)
{
    (void)state;
    setenv("TPC_TOPOLOGY", "pack:2 [numa] l3:1 core:2 pu:2", 1);
    tpc_config c = {.placement = TPC_PLACE_CORE};
    run_config(&c, synthetic_main, NULL);
    /* The same topology, one shard per node. */
    c.placement = TPC_PLACE_NODE;
    assert_int_equal(tpc_run(&c, count_shards, NULL), 2);
    unsetenv("TPC_TOPOLOGY");
}

static int xml_main(void *arg)
{
    (void)arg;
    tpc_topo_info info;
    CHECK_EQ(tpc_topology_info(&info), 0);
    CHECK_EQ(info.packages, 2);
    CHECK_EQ(info.nodes, 2);
    CHECK_EQ(info.cores, 8);
    CHECK_EQ(info.pus, 16);
    CHECK(info.distances_known);
    CHECK(info.simulated);
    tpc_topo_obj o[128];
    int n = tpc_topology_objs(o, 128);
    check_tree(o, n);
    CHECK_EQ(count_kind(o, n, TPC_TOPO_CACHE), 2 + 8 + 8); /* L3, L2, L1d */
    for (int i = 0; i < n; i++)
        if (o[i].kind == TPC_TOPO_CACHE && o[i].level == 3)
            CHECK_EQ(o[i].bytes, 32000000);
    CHECK_EQ(tpc_numa_distance(0, 1), 21);
    CHECK_EQ(tpc_numa_distance(1, 0), 21);
    CHECK_EQ(tpc_numa_distance(0, 0), 10);
    CHECK_EQ(tpc_shard_count(), 2); /* placement node */
    CHECK_EQ(tpc_shard_node(0), 0);
    CHECK_EQ(tpc_shard_node(1), 1);
    CHECK_EQ(tpc_shard_distance(0, 1), 21);
    tpc_shard_place p;
    CHECK_EQ(tpc_shard_place_of(1, &p), 0);
    CHECK_EQ(p.cpu, 8);
    return 0;
}

static void test_xml_two_sockets(void **state)
{
    (void)state;
    setenv("TPC_TOPOLOGY", NUMA_XML, 1);
    tpc_config c = {.placement = TPC_PLACE_NODE};
    run_config(&c, xml_main, NULL);
    unsetenv("TPC_TOPOLOGY");
}

/* The matrices on the two-socket topology (4 shards, two per node): every cell filled, p99 at
 * least the median, the memory matrix one column per node. */
static int matrices_main(void *arg)
{
    (void)arg;
    enum { N = 4 };
    CHECK_EQ(tpc_shard_count(), N);
    tpc_numa_lat busy[N * N], asleep[N * N];
    double stream[N * N];
    tpc_numa_mem mem[N * 2];
    CHECK_EQ(tpc_numa_rtt(&small, true, busy), 0);
    CHECK_EQ(tpc_numa_rtt(&small, false, asleep), 0);
    CHECK_EQ(tpc_numa_stream(&small, stream), 0);
    CHECK_EQ(tpc_numa_memory(&small, mem, 2), 0);
    for (int i = 0; i < N * N; i++) {
        CHECK(busy[i].median_ns > 0 && busy[i].p99_ns >= busy[i].median_ns);
        CHECK(asleep[i].median_ns > 0 && asleep[i].p99_ns >= asleep[i].median_ns);
        CHECK(stream[i] > 0);
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 2; k++) {
            const tpc_numa_mem *m = &mem[i * 2 + k];
            CHECK_EQ(m->node, k);
            CHECK(m->found >= 0); /* not bound (simulated), but in memory somewhere */
            CHECK(m->lat_ns > 0);
            CHECK(m->gbps > 0);
        }
    return 0;
}

static void test_matrices(void **state)
{
    (void)state;
    setenv("TPC_TOPOLOGY", NUMA_XML, 1);
    tpc_config c = {.placement = TPC_PLACE_CORE, .cpus = "0,2,8,10"};
    run_config(&c, matrices_main, NULL);
    unsetenv("TPC_TOPOLOGY");
}

static void check_where(const char *what, const tpc_mem_where *w, int node)
{
    if (w->pages - w->absent == 0)
        return;
    if (w->remote != 0 || w->node != node || w->local == 0)
        check_failed("%s: %u pages, %u local, %u remote, %u absent, mostly on %d (want %d)", what,
                     w->pages, w->local, w->remote, w->absent, w->node, node);
}

/* This machine has one node: everything of every shard is on node 0. */
static int locality_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < tpc_shard_count(); i++) {
        tpc_mem_locality l;
        int rc = tpc_mem_locality_of(i, &l);
        CHECK_EQ(rc, 0);
        CHECK_EQ(l.node, 0);
        CHECK(l.heap.pages > 0 && l.heap.absent == 0);
        CHECK(l.local.pages > 0 && l.local.absent == 0);
        CHECK(l.stacks.pages > 0 && l.stacks.local > 0); /* the measuring fiber's own stack */
        CHECK(tpc_shard_count() == 1 || l.rings.pages > 0);
        check_where("stacks", &l.stacks, 0);
        check_where("rings", &l.rings, 0);
        check_where("heap", &l.heap, 0);
        check_where("local", &l.local, 0);
    }
    tpc_numa_mem mem[TPC_MAX_SHARDS];
    CHECK_EQ(tpc_numa_memory(&small, mem, 1), 0);
    for (int i = 0; i < tpc_shard_count(); i++)
        CHECK_EQ(mem[i].found, 0);
    return 0;
}

static void test_locality_here(void **state)
{
    (void)state;
    static int here = 1; /* a touched page */
    int node = tpc_mem_node(&here);
    SKIP_IF(node == -ENOSYS || node == -EPERM, "no move_pages(2) here");
    assert_int_equal(node, 0);
    run_main(2, locality_main, NULL);
}

static int memory_main(void *arg)
{
    (void)arg;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    char *p = tpc_alloc_local(3 * ps + 1);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & (ps - 1)) == 0);
    CHECK_EQ(tpc_mem_node(p), -ENOENT); /* not touched yet */
    p[0] = 1;
    p[3 * ps] = 1; /* the size was rounded up to 4 pages */
    CHECK_EQ(tpc_mem_node(p), tpc_shard_node(tpc_shard_id()));
    errno = 0;
    CHECK(tpc_alloc_local(0) == NULL && errno == EINVAL);
    CHECK(tpc_alloc_local(SIZE_MAX) == NULL && errno == ENOMEM);
    tpc_free_local(p, 3 * ps + 1);
    CHECK_EQ(tpc_mem_node(p), -EFAULT); /* unmapped */
    tpc_free_local(NULL, 10);           /* nothing */
    return 0;
}

/* Freed on another shard than the one that allocated it. */
static int free_there(void *arg)
{
    tpc_free_local(arg, 8192);
    return 0;
}

static int cross_free_main(void *arg)
{
    (void)arg;
    char *p = tpc_alloc_local(8192);
    CHECK(p != NULL);
    memset(p, 7, 8192);
    CHECK_EQ(tpc_call_on(1, free_there, p, NULL), 0);
    return 0;
}

static void test_local_memory(void **state)
{
    (void)state;
    static int here = 1; /* a touched page */
    int node = tpc_mem_node(&here);
    SKIP_IF(node == -ENOSYS || node == -EPERM, "no move_pages(2) here");
    run_main(2, memory_main, NULL);
    run_main(2, cross_free_main, NULL);
    errno = 0;
    assert_null(tpc_alloc_local(4096));
    assert_int_equal(errno, EPERM);
}

static void rtt_cb(void *arg)
{
    tpc_numa_lat l[4];
    *(int *)arg = tpc_numa_rtt(NULL, true, l);
}

static int misuse_main(void *arg)
{
    (void)arg;
    tpc_numa_lat l[4];
    double d[4];
    tpc_numa_mem m[4];
    tpc_numa_opts o = small;
    o.reserved[0] = 1;
    CHECK_EQ(tpc_numa_rtt(&o, true, l), -EINVAL);
    o = small;
    o.mem_bytes = 100;
    CHECK_EQ(tpc_numa_memory(&o, m, 1), -EINVAL);
    o = small;
    o.rtt_rounds = 20000000;
    CHECK_EQ(tpc_numa_rtt(&o, false, l), -EINVAL);
    o = small;
    o.idle_us = 10001; /* a spin that long would be a stall */
    CHECK_EQ(tpc_numa_rtt(&o, false, l), -EINVAL);
    CHECK_EQ(tpc_numa_rtt(&small, true, NULL), -EINVAL);
    CHECK_EQ(tpc_numa_stream(&small, NULL), -EINVAL);
    CHECK_EQ(tpc_numa_stream(&o, d), -EINVAL);
    CHECK_EQ(tpc_numa_memory(&small, m, 0), -EINVAL);
    CHECK_EQ(tpc_numa_memory(&small, NULL, 1), -EINVAL);
    int from_cb = 0;
    CHECK_EQ(tpc_defer(rtt_cb, &from_cb), 0);
    tpc_yield();
    CHECK_EQ(from_cb, -EPERM); /* a callback is not a fiber */
    CHECK_EQ(tpc_shard_node(2), -EINVAL);
    CHECK_EQ(tpc_shard_node(-1), -EINVAL);
    CHECK_EQ(tpc_shard_distance(0, 5), -EINVAL);
    CHECK_EQ(tpc_numa_distance(0, 77), -EINVAL);
    CHECK_EQ(tpc_numa_distance(-1, 0), -EINVAL);
    CHECK_EQ(tpc_shard_place_of(0, NULL), -EINVAL);
    CHECK_EQ(tpc_shard_place_of(9, &(tpc_shard_place){0}), -EINVAL);
    CHECK_EQ(tpc_topology_objs(NULL, 3), -EINVAL);
    CHECK_EQ(tpc_topology_objs(NULL, -1), -EINVAL);
    CHECK_EQ(tpc_numa_nodes(NULL, 2), -EINVAL);
    CHECK_EQ(tpc_topology_info(NULL), -EINVAL);
    CHECK_EQ(tpc_mem_locality_of(0, NULL), -EINVAL);
    CHECK_EQ(tpc_mem_locality_of(3, &(tpc_mem_locality){0}), -EINVAL);
    return 0;
}

static void test_misuse(void **state)
{
    (void)state;
    run_main(2, misuse_main, NULL);
    tpc_topo_info info;
    tpc_numa_lat l[1];
    assert_int_equal(tpc_topology_info(&info), -EPERM);
    assert_int_equal(tpc_topology_objs(NULL, 0), -EPERM);
    assert_int_equal(tpc_numa_nodes(NULL, 0), -EPERM);
    assert_int_equal(tpc_numa_distance(0, 0), -EPERM);
    assert_int_equal(tpc_shard_node(0), -EPERM);
    assert_int_equal(tpc_shard_distance(0, 0), -EPERM);
    assert_int_equal(tpc_shard_place_of(0, &(tpc_shard_place){0}), -EPERM);
    assert_int_equal(tpc_mem_locality_of(0, &(tpc_mem_locality){0}), -EPERM);
    assert_int_equal(tpc_numa_rtt(NULL, true, l), -EPERM);
    /* A topology that is neither a file nor a synthetic description. */
    setenv("TPC_TOPOLOGY", "frobnicate:2", 1);
    assert_int_equal(tpc_run(NULL, count_shards, NULL), -EINVAL);
    setenv("TPC_TOPOLOGY", "/nonexistent/topology.xml", 1);
    assert_int_equal(tpc_run(NULL, count_shards, NULL), -EINVAL);
    /* CPUs the simulated machine does not have. */
    setenv("TPC_TOPOLOGY", "pack:2 [numa] core:2 pu:1", 1);
    tpc_config c = {.cpus = "0-7"};
    assert_int_equal(tpc_run(&c, count_shards, NULL), -EINVAL);
    unsetenv("TPC_TOPOLOGY");
}

/* A measurement cancelled midway returns -ECANCELED at once and leaves nothing running or
 * allocated (the sanitizers and valgrind check the second half). */
enum { M_RTT_BUSY, M_RTT_ASLEEP, M_STREAM, M_MEMORY, M_N };
static _Atomic int started;

static int measure(void *arg)
{
    static const tpc_numa_opts big = {.rtt_rounds = 10000000,
                                      .stream_msgs = 1000000000,
                                      .mem_bytes = 16 << 20,
                                      .mem_reads = 1000000000};
    tpc_numa_lat l[4];
    double d[4];
    tpc_numa_mem m[2];
    atomic_store(&started, 1);
    switch ((int)(intptr_t)arg) {
    case M_RTT_BUSY:
        return tpc_numa_rtt(&big, true, l);
    case M_RTT_ASLEEP:
        return tpc_numa_rtt(&big, false, l);
    case M_STREAM:
        return tpc_numa_stream(&big, d);
    default:
        return tpc_numa_memory(&big, m, 2);
    }
}

static int cancel_main(void *arg)
{
    (void)arg;
    for (int what = 0; what < M_N; what++) {
        tpc_fiber *f;
        int r = 0;
        atomic_store(&started, 0);
        CHECK_EQ(tpc_spawn(measure, (void *)(intptr_t)what, &f), 0);
        while (!atomic_load(&started))
            tpc_yield();
        CHECK_EQ(tpc_cancel(f), 0);
        CHECK_EQ(tpc_join(f, &r), 0);
        CHECK_EQ(r, -ECANCELED);
    }
    return 0;
}

static void test_cancel(void **state)
{
    (void)state;
    run_main(2, cancel_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synthetic),    cmocka_unit_test(test_xml_two_sockets),
        cmocka_unit_test(test_matrices),     cmocka_unit_test(test_locality_here),
        cmocka_unit_test(test_local_memory), cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests_name("numa", tests, NULL, NULL);
}
