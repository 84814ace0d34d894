/* tpc-numa: a NUMA experiment in one command. For a placement of shards it prints (and writes
 * as JSON) the topology as libtpc sees it, the shard-to-shard round-trip and stream matrices,
 * where each shard's memory really is, and each shard's latency and bandwidth to each node's
 * memory; it draws heat maps with gnuplot when it can, and compares two placements with
 * --compare. Only libtpc's public API (include/tpc/numa.h). See docs/numa.md. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include "kit.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void run_free(struct run *r)
{
    free(r->objs);
    free(r->place);
    free(r->busy);
    free(r->asleep);
    free(r->stream);
    free(r->loc);
    free(r->mem);
}

static int fail(struct run *r, const char *what, int rc)
{
    if (rc < 0 && !r->err) {
        r->err = rc;
        r->what = what;
    }
    return rc;
}

static int collect_topology(struct run *r)
{
    int rc = tpc_topology_info(&r->info);
    if (rc < 0)
        return fail(r, "tpc_topology_info", rc);
    r->nobjs = tpc_topology_objs(NULL, 0);
    if (r->nobjs < 0)
        return fail(r, "tpc_topology_objs", r->nobjs);
    r->objs = calloc((size_t)r->nobjs, sizeof(*r->objs));
    if (!r->objs || (rc = tpc_topology_objs(r->objs, r->nobjs)) < 0)
        return fail(r, "tpc_topology_objs", r->objs ? rc : -ENOMEM);
    r->nn = tpc_numa_nodes(r->nodes, KIT_MAX_NODES);
    if (r->nn < 0)
        return fail(r, "tpc_numa_nodes", r->nn);
    if (r->nn > KIT_MAX_NODES)
        r->nn = KIT_MAX_NODES;
    for (int a = 0; a < r->nn; a++)
        for (int b = 0; b < r->nn; b++)
            r->dist[a * r->nn + b] = tpc_numa_distance(r->nodes[a], r->nodes[b]);
    r->place = calloc((size_t)r->n, sizeof(*r->place));
    if (!r->place)
        return fail(r, "calloc", -ENOMEM);
    for (int i = 0; i < r->n; i++)
        if ((rc = tpc_shard_place_of(i, &r->place[i])) < 0)
            return fail(r, "tpc_shard_place_of", rc);
    return 0;
}

static int collect_matrices(struct run *r)
{
    size_t nn = (size_t)r->n * (size_t)r->n;
    r->busy = calloc(nn, sizeof(*r->busy));
    r->asleep = calloc(nn, sizeof(*r->asleep));
    r->stream = calloc(nn, sizeof(*r->stream));
    r->loc = calloc((size_t)r->n, sizeof(*r->loc));
    r->mem = calloc((size_t)r->n * (size_t)(r->nn ? r->nn : 1), sizeof(*r->mem));
    if (!r->busy || !r->asleep || !r->stream || !r->loc || !r->mem)
        return fail(r, "calloc", -ENOMEM);
    int rc;
    if ((rc = tpc_numa_rtt(&r->opts, true, r->busy)) < 0)
        return fail(r, "tpc_numa_rtt (busy)", rc);
    if ((rc = tpc_numa_rtt(&r->opts, false, r->asleep)) < 0)
        return fail(r, "tpc_numa_rtt (asleep)", rc);
    if ((rc = tpc_numa_stream(&r->opts, r->stream)) < 0)
        return fail(r, "tpc_numa_stream", rc);
    for (int i = 0; i < r->n; i++)
        if ((rc = tpc_mem_locality_of(i, &r->loc[i])) < 0)
            return fail(r, "tpc_mem_locality_of", rc);
    if (!r->skip_memory && (rc = tpc_numa_memory(&r->opts, r->mem, r->nn)) < 0)
        return fail(r, "tpc_numa_memory", rc);
    return 0;
}

static int collect(void *arg)
{
    struct run *r = arg;
    double t0 = now_s();
    r->n = tpc_shard_count();
    if (collect_topology(r) == 0)
        collect_matrices(r);
    r->seconds = now_s() - t0;
    return r->err ? 1 : 0;
}

static int placement_of(const char *s, tpc_placement *p)
{
    if (!strcmp(s, "pu"))
        *p = TPC_PLACE_PU;
    else if (!strcmp(s, "core"))
        *p = TPC_PLACE_CORE;
    else if (!strcmp(s, "node"))
        *p = TPC_PLACE_NODE;
    else
        return -1;
    return 0;
}

static int run_one(struct run *r)
{
    tpc_config c = {.shards = r->shards, .cpus = r->cpus};
    if (placement_of(r->placement, &c.placement) < 0) {
        fprintf(stderr, "tpc-numa: placement '%s' is not one of pu, core, node\n", r->placement);
        return -EINVAL;
    }
    int rc = tpc_run(&c, collect, r);
    if (rc < 0)
        fprintf(stderr, "tpc-numa: the runtime could not start: %s\n", tpc_strerror(rc));
    else if (r->err)
        fprintf(stderr, "tpc-numa: %s failed: %s\n", r->what, tpc_strerror(r->err));
    return rc < 0 ? rc : r->err;
}

static void usage(FILE *f)
{
    fputs("usage: tpc-numa [options]\n"
          "  --placement pu|core|node  where shards go (default pu)\n"
          "  --cpus LIST               CPUs to use, e.g. 0-3,8 (default: all allowed)\n"
          "  --shards N                number of shards (default: one per place)\n"
          "  --compare PLACEMENT       also run under this placement and print the ratios\n"
          "  --compare-cpus LIST       CPUs of the second run (default: --cpus)\n"
          "  --compare-shards N        shards of the second run (default: --shards)\n"
          "  --topology SRC            a simulated machine: hwloc XML file or synthetic\n"
          "                            description (sets TPC_TOPOLOGY)\n"
          "  --json FILE               where to write the JSON (default tpc-numa.json; - stdout)\n"
          "  --plots DIR               heat maps (.dat, .gp, .png) go here (default .)\n"
          "  --no-plots                no heat maps\n"
          "  --rounds N                round trips per pair (default 2000)\n"
          "  --idle-us N               quiet before each asleep round trip (default 50)\n"
          "  --msgs N                  stream messages per pair (default 200000)\n"
          "  --mem-bytes N[K|M|G]      memory matrix buffer per node (default 64M)\n"
          "  --mem-reads N             dependent loads per memory cell (default 2000000)\n"
          "  --no-memory               skip the memory matrix\n"
          "  --quick                   small sizes (a few hundred ms), for tests\n",
          f);
}

static int number(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1ull << 30, end++;
    if (end == s || *end || errno || *s == '-' || v > max / mult)
        return -1;
    *out = v * mult;
    return 0;
}

struct cli {
    struct run a, b;
    bool compare, plots;
    const char *json, *dir, *topology;
};

enum {
    O_CMP = 256,
    O_CMPCPUS,
    O_CMPSHARDS,
    O_TOPO,
    O_JSON,
    O_PLOTS,
    O_NOPLOTS,
    O_ROUNDS,
    O_IDLE,
    O_MSGS,
    O_MEMB,
    O_MEMR,
    O_NOMEM,
    O_QUICK
};

static int option(struct cli *c, int opt, const char *arg)
{
    unsigned long long v = 0;
    bool num = opt == 'n' || opt == O_CMPSHARDS || (opt >= O_ROUNDS && opt <= O_MEMR);
    if (num && number(arg, opt == O_MEMB ? 1ull << 36 : 1000000000, &v) < 0) {
        fprintf(stderr, "tpc-numa: '%s' is not a number in range\n", arg);
        return -1;
    }
    switch (opt) {
    case 'p':
        c->a.placement = arg;
        break;
    case 'c':
        c->a.cpus = arg;
        break;
    case 'n':
        c->a.shards = (unsigned)v;
        break;
    case O_CMP:
        c->compare = true, c->b.placement = arg;
        break;
    case O_CMPCPUS:
        c->b.cpus = arg;
        break;
    case O_CMPSHARDS:
        c->b.shards = (unsigned)v;
        break;
    case O_TOPO:
        c->topology = arg;
        break;
    case O_JSON:
        c->json = arg;
        break;
    case O_PLOTS:
        c->dir = arg;
        break;
    case O_NOPLOTS:
        c->plots = false;
        break;
    case O_ROUNDS:
        c->a.opts.rtt_rounds = (unsigned)v;
        break;
    case O_IDLE:
        c->a.opts.idle_us = (unsigned)v;
        break;
    case O_MSGS:
        c->a.opts.stream_msgs = (unsigned)v;
        break;
    case O_MEMB:
        c->a.opts.mem_bytes = (size_t)v;
        break;
    case O_MEMR:
        c->a.opts.mem_reads = (unsigned)v;
        break;
    case O_NOMEM:
        c->a.skip_memory = true;
        break;
    case O_QUICK:
        c->a.opts = (tpc_numa_opts){.rtt_rounds = 20,
                                    .idle_us = 30,
                                    .stream_msgs = 5000,
                                    .mem_bytes = 1 << 20,
                                    .mem_reads = 100000};
        break;
    default:
        return -1;
    }
    return 0;
}

static int parse(struct cli *c, int argc, char **argv)
{
    static const struct option longs[] = {{"placement", 1, 0, 'p'},
                                          {"cpus", 1, 0, 'c'},
                                          {"shards", 1, 0, 'n'},
                                          {"compare", 1, 0, O_CMP},
                                          {"compare-cpus", 1, 0, O_CMPCPUS},
                                          {"compare-shards", 1, 0, O_CMPSHARDS},
                                          {"topology", 1, 0, O_TOPO},
                                          {"json", 1, 0, O_JSON},
                                          {"plots", 1, 0, O_PLOTS},
                                          {"no-plots", 0, 0, O_NOPLOTS},
                                          {"rounds", 1, 0, O_ROUNDS},
                                          {"idle-us", 1, 0, O_IDLE},
                                          {"msgs", 1, 0, O_MSGS},
                                          {"mem-bytes", 1, 0, O_MEMB},
                                          {"mem-reads", 1, 0, O_MEMR},
                                          {"no-memory", 0, 0, O_NOMEM},
                                          {"quick", 0, 0, O_QUICK},
                                          {"help", 0, 0, 'h'},
                                          {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (opt == '?' || option(c, opt, optarg) < 0) {
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tpc-numa: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct cli c = {
        .a = {.name = "", .placement = "pu"}, .plots = true, .json = "tpc-numa.json", .dir = "."};
    if (parse(&c, argc, argv) < 0)
        return 2;
    if (c.plots && access(c.dir, W_OK | X_OK) != 0) { /* said now, not after the whole run */
        fprintf(stderr, "tpc-numa: --plots %s: %s\n", c.dir, strerror(errno));
        return 2;
    }
    if (c.topology)
        setenv("TPC_TOPOLOGY", c.topology, 1);
    const char *topo = getenv("TPC_TOPOLOGY");
    topo = topo && *topo ? topo : NULL;
    if (c.compare) {
        c.a.name = "A";
        c.b = (struct run){.name = "B",
                           .placement = c.b.placement,
                           .cpus = c.b.cpus ? c.b.cpus : c.a.cpus,
                           .shards = c.b.shards ? c.b.shards : c.a.shards,
                           .skip_memory = c.a.skip_memory,
                           .opts = c.a.opts};
    }
    int rc = run_one(&c.a);
    if (rc == 0 && c.compare)
        rc = run_one(&c.b);
    if (rc != 0) {
        run_free(&c.a);
        run_free(&c.b);
        return 1;
    }
    print_run(stdout, &c.a, topo);
    if (c.compare) {
        print_run(stdout, &c.b, topo);
        print_ratios(stdout, &c.a, &c.b);
    }
    FILE *j = strcmp(c.json, "-") ? fopen(c.json, "w") : stdout;
    int status = 0;
    if (!j) {
        fprintf(stderr, "tpc-numa: cannot write %s: %s\n", c.json, strerror(errno));
        status = 1;
    } else {
        json_write(j, c.compare ? (struct run[]){c.a, c.b} : &c.a, c.compare ? 2 : 1, topo);
        if (j != stdout) {
            fclose(j);
            printf("\nJSON written to %s\n", c.json);
        }
    }
    if (c.plots) {
        int made = heat_maps(&c.a, c.dir);
        if (made >= 0 && c.compare)
            made += heat_maps(&c.b, c.dir);
        if (made < 0)
            printf("heat maps: gnuplot not found (Debian: apt-get install gnuplot-nox); the .dat "
                   "and .gp files are in %s\n",
                   c.dir);
        else
            printf("heat maps: %d PNG files in %s\n", made, c.dir);
    }
    run_free(&c.a);
    run_free(&c.b);
    return status;
}
