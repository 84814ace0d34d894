/* Placement: which CPUs shards go to under each policy, checked on hwloc synthetic topologies
 * (2 NUMA nodes x 4 cores x 2 PUs) so the NUMA logic is tested on a one-node machine; the
 * policy from the environment; and the topology report of a running runtime. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include "helpers.h"
#include "core/placement.h"

static hwloc_topology_t synthetic(const char *desc)
{
    hwloc_topology_t t;
    assert_int_equal(hwloc_topology_init(&t), 0);
    assert_int_equal(hwloc_topology_set_synthetic(t, desc), 0);
    assert_int_equal(hwloc_topology_load(t), 0);
    return t;
}

static void set_of(cpu_set_t *set, const int *cpus, int n)
{
    CPU_ZERO(set);
    for (int i = 0; i < n; i++)
        CPU_SET(cpus[i], set);
}

static void test_policies_on_two_nodes(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic("numa:2 core:4 pu:2");
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < 16; c++)
        CPU_SET(c, &all);
    struct tpc__place p[32];

    /* One per PU, in logical order: cores 0..7, nodes 0 then 1. */
    assert_int_equal(tpc__place_on(t, &all, TPC_PLACE_PU, p, 32), 16);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(p[i].cpu, i);
        assert_int_equal(p[i].core, i / 2);
        assert_int_equal(p[i].node, i / 8);
    }
    /* One per core: its first PU. */
    assert_int_equal(tpc__place_on(t, &all, TPC_PLACE_CORE, p, 32), 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(p[i].cpu, 2 * i);
        assert_int_equal(p[i].core, i);
        assert_int_equal(p[i].node, i / 4);
    }
    /* One per NUMA node. */
    assert_int_equal(tpc__place_on(t, &all, TPC_PLACE_NODE, p, 32), 2);
    assert_int_equal(p[0].cpu, 0);
    assert_int_equal(p[0].node, 0);
    assert_int_equal(p[1].cpu, 8);
    assert_int_equal(p[1].node, 1);

    /* Only some CPUs allowed: the first allowed PU of each core or node is chosen. */
    cpu_set_t some;
    static const int allowed[] = {1, 2, 3, 9, 15};
    set_of(&some, allowed, 5);
    assert_int_equal(tpc__place_on(t, &some, TPC_PLACE_CORE, p, 32), 4);
    assert_int_equal(p[0].cpu, 1); /* core 0 */
    assert_int_equal(p[1].cpu, 2); /* core 1 (3 is its second PU) */
    assert_int_equal(p[2].cpu, 9); /* core 4 */
    assert_int_equal(p[3].cpu, 15);
    assert_int_equal(tpc__place_on(t, &some, TPC_PLACE_NODE, p, 32), 2);
    assert_int_equal(p[0].cpu, 1);
    assert_int_equal(p[1].cpu, 9);
    assert_int_equal(p[1].node, 1);
    /* The output array bounds the count. */
    assert_int_equal(tpc__place_on(t, &all, TPC_PLACE_PU, p, 3), 3);
    hwloc_topology_destroy(t);
}

static void test_packages_without_smt(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic("pack:2 numa:1 core:3 pu:1");
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < 6; c++)
        CPU_SET(c, &all);
    struct tpc__place p[8];
    assert_int_equal(tpc__place_on(t, &all, TPC_PLACE_CORE, p, 8), 6); /* PU == core */
    assert_int_equal(tpc__place_on(t, &all, TPC_PLACE_NODE, p, 8), 2);
    assert_int_equal(p[1].cpu, 3);
    assert_int_equal(p[1].node, 1);
    hwloc_topology_destroy(t);
}

/* The real machine: policies give as many shards as there are PUs / cores / nodes. */
static int count_shards(void *arg)
{
    (void)arg;
    return tpc_shard_count();
}

static char report[4096];
static int report_main(void *arg)
{
    (void)arg;
    FILE *f = fmemopen(report, sizeof(report), "w");
    CHECK_EQ(tpc_topology_report(f), 0);
    fclose(f);
    CHECK_EQ(tpc_topology_report(NULL), -EINVAL);
    return 0;
}

/* Ring memory grows with the shards, not with their square: with the default ring size a
 * shard's incoming rings take at most 1 MiB (docs/guide.md). */
static void test_ring_memory_bound(void **state)
{
    (void)state;
    assert_int_equal(tpc__default_msg_slots(1), 1024);
    assert_int_equal(tpc__default_msg_slots(2), 1024);
    assert_int_equal(tpc__default_msg_slots(65), 1024);
    assert_int_equal(tpc__default_msg_slots(66), 512);
    assert_int_equal(tpc__default_msg_slots(192), 256);
    assert_int_equal(tpc__default_msg_slots(1024), 64);
    for (unsigned n = 2; n <= 1024; n++) {
        size_t in = (size_t)(n - 1) * tpc__default_msg_slots(n) * 16;
        assert_true(in <= TPC__RING_BUDGET || tpc__default_msg_slots(n) == 64);
    }
}

static void test_real_machine(void **state)
{
    (void)state;
    hwloc_topology_t t;
    hwloc_topology_init(&t);
    hwloc_topology_load(t);
    cpu_set_t mask;
    sched_getaffinity(0, sizeof(mask), &mask);
    struct tpc__place p[CPU_SETSIZE];
    int cores = tpc__place_on(t, &mask, TPC_PLACE_CORE, p, CPU_SETSIZE);
    int nodes = tpc__place_on(t, &mask, TPC_PLACE_NODE, p, CPU_SETSIZE);
    hwloc_topology_destroy(t);
    tpc_config c = {.placement = TPC_PLACE_CORE};
    assert_int_equal(tpc_run(&c, count_shards, NULL), cores);
    c.placement = TPC_PLACE_NODE;
    assert_int_equal(tpc_run(&c, count_shards, NULL), nodes);
    setenv("TPC_PLACEMENT", "core", 1);
    assert_int_equal(tpc_run(NULL, count_shards, NULL), cores);
    setenv("TPC_PLACEMENT", "sideways", 1);
    assert_int_equal(tpc_run(NULL, count_shards, NULL), -EINVAL);
    unsetenv("TPC_PLACEMENT");
    c.placement = (tpc_placement)7;
    assert_int_equal(tpc_run(&c, count_shards, NULL), -EINVAL);

    memset(report, 0, sizeof(report));
    run_main(2, report_main, NULL);
    print_message("%s", report);
    assert_non_null(strstr(report, "shard 0: "));
    assert_non_null(strstr(report, "shard 1: "));
    assert_int_equal(tpc_topology_report(stdout), -EPERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policies_on_two_nodes),
        cmocka_unit_test(test_packages_without_smt),
        cmocka_unit_test(test_real_machine),
        cmocka_unit_test(test_ring_memory_bound),
    };
    return cmocka_run_group_tests_name("placement", tests, NULL, NULL);
}
