/* tpc-numa's parts: one run's measurements (collected by tpc-numa.c on libtpc's public API) and
 * their printing, JSON and heat maps (report.c). */
#ifndef TPC_NUMA_KIT_H
#define TPC_NUMA_KIT_H

#include <stdbool.h>
#include <stdio.h>
#include <tpc.h>

#define KIT_MAX_NODES 64

/* Everything one placement gives. Arrays are n x n (or n x nn for memory), row-major. */
struct run {
    const char *name;      /* "A", "B" in a comparison; "" alone */
    const char *placement; /* "pu", "core", "node" */
    const char *cpus;      /* NULL: all allowed */
    unsigned shards;       /* asked for; 0: one per place */
    bool skip_memory;
    tpc_numa_opts opts;
    /* Results. */
    int err;          /* 0, or the first error */
    const char *what; /* what failed */
    double seconds;
    int n; /* shards */
    tpc_topo_info info;
    tpc_topo_obj *objs;
    int nobjs;
    int nodes[KIT_MAX_NODES], nn;
    int dist[KIT_MAX_NODES * KIT_MAX_NODES];
    tpc_shard_place *place;
    tpc_numa_lat *busy, *asleep;
    double *stream;
    tpc_mem_locality *loc;
    tpc_numa_mem *mem;
};

void run_free(struct run *r);

/* report.c */
void print_run(FILE *f, const struct run *r, const char *topology);
void print_ratios(FILE *f, const struct run *a, const struct run *b);
void json_write(FILE *f, const struct run *runs, int nruns, const char *topology);
/* Writes DIR/PREFIX<matrix>.dat and .gp for each matrix and runs gnuplot on them if it is on
 * PATH. Returns the number of PNGs made, or -1 when gnuplot is missing. */
int heat_maps(const struct run *r, const char *dir);

#endif
