/* NUMA experiments: the topology the runtime placed its shards on, where a shard's memory
 * lives, memory on a shard's node, and the matrices tpc-numa prints (docs/numa.md).
 *
 * Every call here works on the runtime of the calling shard and returns -EPERM outside a shard
 * (the measurements: outside a fiber). The topology is this machine's, or the one named by the
 * environment variable TPC_TOPOLOGY when the runtime started: an hwloc XML file (lstopo
 * file.xml) or an hwloc synthetic description ("pack:2 numa:1 core:4 pu:2"). Such a simulated
 * machine places the shards on its PUs and reports them there, but does not pin the threads or
 * bind memory: the measurements then run on this machine's CPUs, and the locality report says
 * where memory really is. */
#ifndef TPC_NUMA_H
#define TPC_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"

/* ---- Topology ---- */

typedef enum tpc_topo_kind {
    TPC_TOPO_MACHINE = 0,
    TPC_TOPO_PACKAGE, /* a socket */
    TPC_TOPO_NODE,    /* a NUMA node (memory), listed where it attaches */
    TPC_TOPO_CACHE,   /* a data or unified cache */
    TPC_TOPO_CORE,
    TPC_TOPO_PU, /* a processing unit (hardware thread): what a shard is pinned to */
} tpc_topo_kind;

/* One object of the topology tree. */
typedef struct tpc_topo_obj {
    tpc_topo_kind kind;
    int depth;      /* in the tree: the machine is 0, its children 1 ... */
    int index;      /* PU and NUMA node: the OS index (CPU number, node number); others: the
                     * logical index among objects of that kind */
    int level;      /* caches: 1 for L1 ...; 0 otherwise */
    int node;       /* the first NUMA node it is local to, -1 if unknown */
    int shard;      /* PU: the lowest shard placed on it, -1 if none; -1 otherwise */
    uint64_t bytes; /* caches: size; NUMA nodes: local memory; 0 otherwise or unknown */
} tpc_topo_obj;

/* Summary of the topology. */
typedef struct tpc_topo_info {
    int packages, nodes, cores, pus;
    bool simulated;       /* loaded from TPC_TOPOLOGY, not this machine */
    bool distances_known; /* the system (or the XML) gave node distances; false: 10 for a node
                           * to itself, 20 to any other are assumed (Linux's defaults) */
    uint64_t reserved[4];
} tpc_topo_info;

/* Fills *out. Returns 0, -EINVAL for NULL, -ENODEV if no topology could be loaded, -EPERM. */
TPC_EXTERN int tpc_topology_info(tpc_topo_info *out);

/* Writes the topology tree, depth first (a parent before its children; NUMA nodes before the
 * other children of the object they attach to), into out[0 .. max). Returns the number of
 * objects in the tree, which may exceed max (call again with room for that many); -EINVAL (NULL
 * out with max > 0, or max < 0), -ENODEV, -EPERM. */
TPC_EXTERN int tpc_topology_objs(tpc_topo_obj *out, int max);

/* Stores the OS indices of the NUMA nodes, ascending, in nodes[0 .. max) and returns their
 * number (may exceed max); -EINVAL, -ENODEV, -EPERM as above. */
TPC_EXTERN int tpc_numa_nodes(int *nodes, int max);

/* The relative distance from NUMA node a to node b (OS indices): 10 for a node to itself,
 * larger when farther (the ACPI SLIT scale). Returns it, -EINVAL for a node that does not
 * exist, -ENODEV, -EPERM. */
TPC_EXTERN int tpc_numa_distance(int a, int b);

/* Where a shard sits. */
typedef struct tpc_shard_place {
    int cpu;     /* OS index of its PU, -1 if not placed (more shards than CPUs) */
    int core;    /* logical index of its core, -1 if unknown */
    int node;    /* OS index of its NUMA node, -1 if unknown */
    int package; /* logical index of its package, -1 if unknown */
} tpc_shard_place;

/* Fills *out for shard `shard`. Returns 0, -EINVAL (bad shard, NULL out), -EPERM. */
TPC_EXTERN int tpc_shard_place_of(int shard, tpc_shard_place *out);

/* Shard `shard`'s NUMA node (OS index): >= 0; -ENOENT if unknown (not placed); -EINVAL for a
 * bad shard; -EPERM. */
TPC_EXTERN int tpc_shard_node(int shard);

/* The distance between the nodes of shards a and b (tpc_numa_distance): 10 on the same node.
 * -ENOENT if either node is unknown; -EINVAL, -EPERM. */
TPC_EXTERN int tpc_shard_distance(int a, int b);

/* ---- Memory ---- */

/* Allocates size bytes (rounded up to whole pages, page-aligned, zeroed) whose pages are bound
 * to the calling shard's NUMA node (on a machine with more than one; elsewhere plain pages).
 * For buffers: small objects from malloc already come from the shard's node. Free it with
 * tpc_free_local from any thread, with the same size. Returns NULL with errno set: EPERM outside
 * a shard, EINVAL for size 0, ENOMEM. */
TPC_EXTERN void *tpc_alloc_local(size_t size);
TPC_EXTERN void tpc_free_local(void *p, size_t size);

/* The NUMA node holding the page at addr (move_pages(2) without moving it): >= 0; -ENOENT if
 * the page is not in memory (never touched, or swapped out); -EFAULT for an address not mapped;
 * -ENOSYS on a kernel without NUMA. Callable from any thread. */
TPC_EXTERN int tpc_mem_node(const void *addr);

/* Where sampled pages of one kind of a shard's memory are, against its node. */
typedef struct tpc_mem_where {
    unsigned pages;  /* pages sampled */
    unsigned local;  /* on the shard's node */
    unsigned remote; /* on another node */
    unsigned absent; /* not in memory yet (untouched), or unknown */
    int node;        /* the node most present pages are on, -1 if none is present */
} tpc_mem_where;

/* A shard's memory locality. */
typedef struct tpc_mem_locality {
    int node;             /* the shard's node, -1 if unknown: then every present page counts as
                           * remote */
    tpc_mem_where stacks; /* its fiber stack pool (the stack measuring it included) */
    tpc_mem_where rings;  /* the rings other shards send to it on */
    tpc_mem_where heap;   /* its shard record, and a malloc block it allocates and touches */
    tpc_mem_where local;  /* a tpc_alloc_local block it allocates and touches */
    uint64_t reserved[4];
} tpc_mem_locality;

/* Measures shard `shard`'s memory locality (on that shard, in a fiber the caller waits for;
 * suspends) into *out. Returns 0, -EINVAL (bad shard, NULL out), -ENOSYS (no move_pages),
 * -ENOMEM, -EPERM outside a fiber, or an error as tpc_join (-ECANCELED ...). */
TPC_EXTERN int tpc_mem_locality_of(int shard, tpc_mem_locality *out);

/* ---- Matrices ----
 * Each measures one pair at a time, from a fiber of the row's shard, while the other shards
 * idle: run them when the program has nothing else to do. Results go to caller-owned arrays
 * of n x n cells (n = tpc_shard_count()), row-major: out[i * n + j] for shard i to shard j.
 * Each cell runs in a fiber on the row's shard that the caller waits for (tpc_join): a cancelled
 * caller (or one past its deadline) stops the measurement and returns once that fiber has.
 * They return 0, -EINVAL (NULL out, bad options), -ENOMEM, -EPERM outside a fiber, or an error
 * as tpc_spawn_on and tpc_join (-ECANCELED, -ETIMEDOUT, -ESHUTDOWN). */

/* Sizes of the measurements; zero fields take the defaults; NULL: all defaults. A value out of
 * its bounds (rtt_rounds <= 10^7, idle_us <= 10^4: a pause spun on the caller's shard, kept
 * below the stall detector's threshold; stream_msgs <= 10^9, mem_bytes in [64 KiB, 64 GiB],
 * mem_reads <= 10^9) or a non-zero reserved word: -EINVAL. */
typedef struct tpc_numa_opts {
    unsigned rtt_rounds;  /* round trips per ordered pair; 0: 2000 */
    unsigned idle_us;     /* target asleep: the pause before each round trip, long enough
                           * for the target to go to sleep (tpc_config.spin_ns); 0: 50 */
    unsigned stream_msgs; /* messages per ordered pair in the stream matrix; 0: 200000 */
    size_t mem_bytes;     /* memory matrix: buffer per node, larger than the last-level cache
                           * for memory figures; 0: 64 MiB */
    unsigned mem_reads;   /* dependent loads per latency cell; 0: 2000000 */
    uint64_t reserved[4];
} tpc_numa_opts;

/* A round-trip time distribution. */
typedef struct tpc_numa_lat {
    uint64_t median_ns, p99_ns;
} tpc_numa_lat;

/* Round trips: shard i's fiber calls tpc_call_on(j, fn) where fn returns at once. busy: a
 * fiber on j keeps yielding meanwhile, so j never sleeps; otherwise each call starts after
 * idle_us of quiet, so it wakes j from sleep. The diagonal is a call on the caller's own shard. */
TPC_EXTERN int tpc_numa_rtt(const tpc_numa_opts *opts, bool busy, tpc_numa_lat *out);

/* One-way streams: shard i sends stream_msgs tpc_submit_to messages to j, each counted there;
 * messages per second until j has run the last, the median of three such streams. The diagonal is
 * the same to itself (its run queue). */
TPC_EXTERN int tpc_numa_stream(const tpc_numa_opts *opts, double *out);

/* One cell of the memory matrix: shard i reading a buffer placed on a node. */
typedef struct tpc_numa_mem {
    int node;      /* the node the buffer was meant for */
    int found;     /* the node its first page was found on (tpc_mem_node), or a negative errno */
    double lat_ns; /* dependent load latency (a random cyclic chase over cache lines) */
    double gbps;   /* sequential read bandwidth, 1e9 bytes a second */
} tpc_numa_mem;

/* Local against remote memory: for each shard i and each NUMA node k (tpc_numa_nodes order), a
 * buffer of mem_bytes bound to node k (on a simulated machine: wherever the kernel puts it,
 * which `found` shows) read by shard i. out has n x nodes cells (max_nodes at least the number
 * of nodes, else -EINVAL): out[i * nodes + k]. */
TPC_EXTERN int tpc_numa_memory(const tpc_numa_opts *opts, tpc_numa_mem *out, int max_nodes);

#endif
