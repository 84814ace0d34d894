/* tpc-numa's output: the text report, the ratios of a comparison, the JSON document and the
 * heat maps (gnuplot). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "kit.h"

static const char *kind_name(tpc_topo_kind k)
{
    static const char *names[] = {"machine", "package", "numa_node", "cache", "core", "pu"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static void bytes_str(char *buf, size_t len, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, len, "%.1f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, len, "%.0f MiB", (double)b / (double)(1ull << 20));
    else
        snprintf(buf, len, "%.0f KiB", (double)b / 1024.0);
}

static void print_obj(FILE *f, const tpc_topo_obj *o)
{
    char b[32] = "";
    fprintf(f, "  %*s", 2 * o->depth, "");
    if (o->bytes)
        bytes_str(b, sizeof(b), o->bytes);
    switch (o->kind) {
    case TPC_TOPO_MACHINE:
        fprintf(f, "Machine\n");
        break;
    case TPC_TOPO_PACKAGE:
        fprintf(f, "Package %d\n", o->index);
        break;
    case TPC_TOPO_NODE:
        fprintf(f, "NUMA node %d (%s)\n", o->index, b);
        break;
    case TPC_TOPO_CACHE:
        fprintf(f, "L%d cache %d (%s)\n", o->level, o->index, b);
        break;
    case TPC_TOPO_CORE:
        fprintf(f, "Core %d\n", o->index);
        break;
    case TPC_TOPO_PU:
        if (o->shard >= 0)
            fprintf(f, "PU %d  <- shard %d\n", o->index, o->shard);
        else
            fprintf(f, "PU %d\n", o->index);
        break;
    }
}

static void print_topology(FILE *f, const struct run *r, const char *topology)
{
    fprintf(f, "\n== Topology (%s%s) ==\n", topology ? "simulated: " : "this machine",
            topology ? topology : "");
    fprintf(f, "  %d packages, %d NUMA nodes, %d cores, %d PUs; node distances %s\n",
            r->info.packages, r->info.nodes, r->info.cores, r->info.pus,
            r->info.distances_known ? "from the system" : "assumed (10 local, 20 remote)");
    for (int i = 0; i < r->nobjs; i++)
        print_obj(f, &r->objs[i]);
    fprintf(f, "  node distances:\n      ");
    for (int b = 0; b < r->nn; b++)
        fprintf(f, "%5d", r->nodes[b]);
    for (int a = 0; a < r->nn; a++) {
        fprintf(f, "\n  %4d", r->nodes[a]);
        for (int b = 0; b < r->nn; b++)
            fprintf(f, "%5d", r->dist[a * r->nn + b]);
    }
    fprintf(f, "\n");
}

static void print_shards(FILE *f, const struct run *r)
{
    fprintf(
        f,
        "\n== Shards (placement %s, cpus %s, %d shards) ==\n  shard   cpu  core  node  package\n",
        r->placement, r->cpus ? r->cpus : "all", r->n);
    for (int i = 0; i < r->n; i++)
        fprintf(f, "  %5d %5d %5d %5d %8d\n", i, r->place[i].cpu, r->place[i].core,
                r->place[i].node, r->place[i].package);
}

static void matrix_head(FILE *f, int n, int width)
{
    fprintf(f, "  from\\to");
    for (int j = 0; j < n; j++)
        fprintf(f, "%*d", width, j);
    fprintf(f, "\n");
}

static void print_lat(FILE *f, const char *title, const tpc_numa_lat *m, int n)
{
    fprintf(f, "\n== Round trip, %s: median ns (p99) ==\n", title);
    matrix_head(f, n, 18);
    for (int i = 0; i < n; i++) {
        fprintf(f, "  %7d", i);
        for (int j = 0; j < n; j++) {
            char cell[40];
            snprintf(cell, sizeof(cell), "%llu (%llu)", (unsigned long long)m[i * n + j].median_ns,
                     (unsigned long long)m[i * n + j].p99_ns);
            fprintf(f, "%18s", cell);
        }
        fprintf(f, "\n");
    }
}

static void print_stream(FILE *f, const struct run *r)
{
    int n = r->n;
    fprintf(f, "\n== One-way stream: million messages/s ==\n");
    matrix_head(f, n, 10);
    for (int i = 0; i < n; i++) {
        fprintf(f, "  %7d", i);
        for (int j = 0; j < n; j++)
            fprintf(f, "%10.2f", r->stream[i * n + j] / 1e6);
        fprintf(f, "\n");
    }
}

static void print_where(FILE *f, const char *name, const tpc_mem_where *w)
{
    fprintf(f, "  %-7s %3u pages: %3u local %3u remote %3u absent, mostly on node %d\n", name,
            w->pages, w->local, w->remote, w->absent, w->node);
}

static void print_locality(FILE *f, const struct run *r)
{
    fprintf(f, "\n== Memory locality (move_pages on sampled pages) ==\n");
    for (int i = 0; i < r->n; i++) {
        const tpc_mem_locality *l = &r->loc[i];
        fprintf(f, " shard %d, node %d:\n", i, l->node);
        print_where(f, "stacks", &l->stacks);
        print_where(f, "rings", &l->rings);
        print_where(f, "heap", &l->heap);
        print_where(f, "local", &l->local);
    }
}

static void print_memory(FILE *f, const struct run *r)
{
    if (r->skip_memory)
        return;
    fprintf(f,
            "\n== Local against remote memory: latency ns / bandwidth GB/s (buffer %zu MiB) ==\n",
            (r->opts.mem_bytes ? r->opts.mem_bytes : (size_t)64 << 20) >> 20);
    fprintf(f, "  shard\\node");
    for (int k = 0; k < r->nn; k++)
        fprintf(f, "%18d", r->nodes[k]);
    fprintf(f, "\n");
    for (int i = 0; i < r->n; i++) {
        fprintf(f, "  %10d", i);
        for (int k = 0; k < r->nn; k++) {
            const tpc_numa_mem *m = &r->mem[i * r->nn + k];
            char cell[48];
            snprintf(cell, sizeof(cell), "%.1f / %.1f%s", m->lat_ns, m->gbps,
                     m->found == m->node ? "" : "*");
            fprintf(f, "%18s", cell);
        }
        fprintf(f, "\n");
    }
    for (int k = 0; k < r->nn; k++)
        if (r->mem[k].found != r->mem[k].node)
            fprintf(f,
                    "  * the buffer for node %d was found on node %d (not bound: simulated "
                    "machine, or binding refused)\n",
                    r->mem[k].node, r->mem[k].found);
}

void print_run(FILE *f, const struct run *r, const char *topology)
{
    if (*r->name)
        fprintf(f, "\n######## Run %s: placement %s ########\n", r->name, r->placement);
    print_topology(f, r, topology);
    print_shards(f, r);
    print_lat(f, "target busy", r->busy, r->n);
    print_lat(f, "target asleep", r->asleep, r->n);
    print_stream(f, r);
    print_locality(f, r);
    print_memory(f, r);
    fprintf(f, "\n  (measured in %.2f s)\n", r->seconds);
}

/* One ratio matrix B / A over the shards both runs have (columns: shards, or with `cols` > 0
 * that many nodes), and its geometric mean. */
static void ratio(FILE *f, const char *title, const struct run *a, const struct run *b, int cols,
                  double (*get)(const struct run *, int, int))
{
    int n = a->n < b->n ? a->n : b->n, m = cols > 0 ? cols : n;
    double logsum = 0;
    int cells = 0;
    fprintf(f, "\n  %s, B / A:\n", title);
    matrix_head(f, m, 8);
    for (int i = 0; i < n; i++) {
        fprintf(f, "  %7d", i);
        for (int j = 0; j < m; j++) {
            double x = get(a, i, j), y = get(b, i, j), q = x > 0 ? y / x : 0;
            fprintf(f, "%8.2f", q);
            if (q > 0)
                logsum += log(q), cells++;
        }
        fprintf(f, "\n");
    }
    fprintf(f, "  geometric mean %.2f\n", cells ? exp(logsum / cells) : 0);
}

static double mem_lat_of(const struct run *r, int i, int k)
{
    return r->mem[i * r->nn + k].lat_ns;
}
static double mem_bw_of(const struct run *r, int i, int k)
{
    return r->mem[i * r->nn + k].gbps;
}
static double busy_of(const struct run *r, int i, int j)
{
    return (double)r->busy[i * r->n + j].median_ns;
}
static double asleep_of(const struct run *r, int i, int j)
{
    return (double)r->asleep[i * r->n + j].median_ns;
}
static double stream_of(const struct run *r, int i, int j)
{
    return r->stream[i * r->n + j];
}

void print_ratios(FILE *f, const struct run *a, const struct run *b)
{
    fprintf(f, "\n######## Comparison: B (%s, %d shards) against A (%s, %d shards) ########\n",
            b->placement, b->n, a->placement, a->n);
    fprintf(f, "  shards compared by index, 0 .. %d\n", (a->n < b->n ? a->n : b->n) - 1);
    ratio(f, "round trip median, target busy", a, b, 0, busy_of);
    ratio(f, "round trip median, target asleep", a, b, 0, asleep_of);
    ratio(f, "stream messages/s", a, b, 0, stream_of);
    if (!a->skip_memory && a->nn == b->nn) { /* columns: nodes, in the same order */
        ratio(f, "memory latency (columns: nodes)", a, b, a->nn, mem_lat_of);
        ratio(f, "memory bandwidth (columns: nodes)", a, b, a->nn, mem_bw_of);
    }
}

/* ---- JSON ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++)
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    fputc('"', f);
}

/* A matrix of rows x cols numbers from get(ctx, i, j) as nested arrays. */
static void json_matrix(FILE *f, int rows, int cols, const void *ctx,
                        double (*get)(const void *, int, int))
{
    fputc('[', f);
    for (int i = 0; i < rows; i++) {
        fprintf(f, "%s[", i ? "," : "");
        for (int j = 0; j < cols; j++)
            fprintf(f, "%s%.6g", j ? "," : "", get(ctx, i, j));
        fputc(']', f);
    }
    fputc(']', f);
}

#define GETTER(name, expr)                                                                         \
    static double name(const void *ctx, int i, int j)                                              \
    {                                                                                              \
        const struct run *r = ctx;                                                                 \
        return (double)(expr);                                                                     \
    }
GETTER(g_busy_med, r->busy[i * r->n + j].median_ns)
GETTER(g_busy_p99, r->busy[i * r->n + j].p99_ns)
GETTER(g_sleep_med, r->asleep[i * r->n + j].median_ns)
GETTER(g_sleep_p99, r->asleep[i * r->n + j].p99_ns)
GETTER(g_stream, r->stream[i * r->n + j])
GETTER(g_dist, r->dist[i * r->nn + j])
GETTER(g_mem_lat, r->mem[i * r->nn + j].lat_ns)
GETTER(g_mem_bw, r->mem[i * r->nn + j].gbps)
GETTER(g_mem_found, r->mem[i * r->nn + j].found)

static void json_where(FILE *f, const char *name, const tpc_mem_where *w)
{
    fprintf(f, "\"%s\":{\"pages\":%u,\"local\":%u,\"remote\":%u,\"absent\":%u,\"node\":%d}", name,
            w->pages, w->local, w->remote, w->absent, w->node);
}

static void json_topology(FILE *f, const struct run *r, const char *topology)
{
    fprintf(f, "\"topology\":{\"source\":");
    json_str(f, topology ? topology : "this machine");
    fprintf(f, ",\"simulated\":%s,\"packages\":%d,\"nodes\":[",
            r->info.simulated ? "true" : "false", r->info.packages);
    for (int k = 0; k < r->nn; k++)
        fprintf(f, "%s%d", k ? "," : "", r->nodes[k]);
    fprintf(f, "],\"cores\":%d,\"pus\":%d,\"distances_known\":%s,\"distances\":", r->info.cores,
            r->info.pus, r->info.distances_known ? "true" : "false");
    json_matrix(f, r->nn, r->nn, r, g_dist);
    fprintf(f, ",\"tree\":[");
    for (int i = 0; i < r->nobjs; i++) {
        const tpc_topo_obj *o = &r->objs[i];
        fprintf(f,
                "%s\n  {\"kind\":\"%s\",\"depth\":%d,\"index\":%d,\"level\":%d,\"node\":%d,"
                "\"shard\":%d,\"bytes\":%llu}",
                i ? "," : "", kind_name(o->kind), o->depth, o->index, o->level, o->node, o->shard,
                (unsigned long long)o->bytes);
    }
    fprintf(f, "]}");
}

static void json_run(FILE *f, const struct run *r, const char *topology)
{
    fprintf(f, "{\"name\":");
    json_str(f, r->name);
    fprintf(f, ",\"placement\":");
    json_str(f, r->placement);
    fprintf(f, ",\"cpus\":");
    if (r->cpus)
        json_str(f, r->cpus);
    else
        fprintf(f, "null");
    fprintf(f, ",\"shards\":%d,\"seconds\":%.3f,\n", r->n, r->seconds);
    json_topology(f, r, topology);
    fprintf(f, ",\n\"placement_of_shards\":[");
    for (int i = 0; i < r->n; i++)
        fprintf(f, "%s{\"shard\":%d,\"cpu\":%d,\"core\":%d,\"node\":%d,\"package\":%d}",
                i ? "," : "", i, r->place[i].cpu, r->place[i].core, r->place[i].node,
                r->place[i].package);
    fprintf(f, "],\n\"rtt_busy\":{\"median_ns\":");
    json_matrix(f, r->n, r->n, r, g_busy_med);
    fprintf(f, ",\"p99_ns\":");
    json_matrix(f, r->n, r->n, r, g_busy_p99);
    fprintf(f, "},\n\"rtt_asleep\":{\"median_ns\":");
    json_matrix(f, r->n, r->n, r, g_sleep_med);
    fprintf(f, ",\"p99_ns\":");
    json_matrix(f, r->n, r->n, r, g_sleep_p99);
    fprintf(f, "},\n\"stream_msgs_per_s\":");
    json_matrix(f, r->n, r->n, r, g_stream);
    fprintf(f, ",\n\"locality\":[");
    for (int i = 0; i < r->n; i++) {
        fprintf(f, "%s{\"shard\":%d,\"node\":%d,", i ? ",\n" : "", i, r->loc[i].node);
        json_where(f, "stacks", &r->loc[i].stacks);
        fputc(',', f);
        json_where(f, "rings", &r->loc[i].rings);
        fputc(',', f);
        json_where(f, "heap", &r->loc[i].heap);
        fputc(',', f);
        json_where(f, "local", &r->loc[i].local);
        fputc('}', f);
    }
    fprintf(f, "],\n\"memory\":");
    if (r->skip_memory)
        fprintf(f, "null");
    else {
        fprintf(f, "{\"lat_ns\":");
        json_matrix(f, r->n, r->nn, r, g_mem_lat);
        fprintf(f, ",\"gbps\":");
        json_matrix(f, r->n, r->nn, r, g_mem_bw);
        fprintf(f, ",\"found_node\":");
        json_matrix(f, r->n, r->nn, r, g_mem_found);
        fprintf(f, "}");
    }
    fprintf(f, "}");
}

void json_write(FILE *f, const struct run *runs, int nruns, const char *topology)
{
    fprintf(f, "{\"tool\":\"tpc-numa\",\"libtpc\":\"%s\",\"runs\":[\n", tpc_version_string());
    for (int i = 0; i < nruns; i++) {
        if (i)
            fprintf(f, ",\n");
        json_run(f, &runs[i], topology);
    }
    fprintf(f, "]}\n");
}

/* ---- Heat maps ---- */

static bool have_gnuplot(void)
{
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : "/usr/bin:/bin");
    bool found = false;
    for (char *save, *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char exe[4096];
        snprintf(exe, sizeof(exe), "%s/gnuplot", d);
        found = access(exe, X_OK) == 0;
    }
    free(copy);
    return found;
}

/* NAME.dat (the matrix, one row a line) and NAME.gp; then gnuplot NAME.gp if run. */
static int heat_map(const struct run *r, const char *dir, const char *what, const char *title,
                    int rows, int cols, double (*get)(const void *, int, int), bool run)
{
    char dat[1024], gp[1024], png[1024];
    snprintf(dat, sizeof(dat), "%s/numa%s%s-%s.dat", dir, *r->name ? "-" : "", r->name, what);
    snprintf(gp, sizeof(gp), "%s/numa%s%s-%s.gp", dir, *r->name ? "-" : "", r->name, what);
    snprintf(png, sizeof(png), "%s/numa%s%s-%s.png", dir, *r->name ? "-" : "", r->name, what);
    FILE *d = fopen(dat, "w"), *g = fopen(gp, "w");
    if (!d || !g) {
        fprintf(stderr, "tpc-numa: cannot write %s\n", d ? gp : dat);
        if (d)
            fclose(d);
        if (g)
            fclose(g);
        return 0;
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            fprintf(d, "%.6g%c", get(r, i, j), j + 1 < cols ? ' ' : '\n');
    fclose(d);
    fprintf(g,
            "set terminal pngcairo size 720,600\nset output '%s'\n"
            "set title \"%s (placement %s)\"\nset xlabel '%s'\nset ylabel 'shard'\n"
            "set yrange [%d.5:-0.5] reverse\nset xrange [-0.5:%d.5]\nset palette rgb 33,13,10\n"
            "set xtics 1\nset ytics 1\n"
            "plot '%s' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fc palette fs solid "
            "notitle, '%s' matrix using 1:2:(sprintf('%%.3g',$3)) with labels notitle\n",
            png, title, r->placement,
            cols == r->n && what[0] != 'm' ? "target shard" : "node index", rows - 1, cols - 1, dat,
            dat);
    fclose(g);
    if (!run)
        return 0;
    pid_t pid = fork(); /* gnuplot FILE, the path as one argument whatever it holds */
    if (pid == 0) {
        dup2(STDOUT_FILENO, STDERR_FILENO);
        execlp("gnuplot", "gnuplot", gp, (char *)NULL);
        _exit(127);
    }
    int st;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int heat_maps(const struct run *r, const char *dir)
{
    bool run = have_gnuplot();
    int made = 0;
    made += heat_map(r, dir, "rtt-busy", "round trip ns, target busy (median)", r->n, r->n,
                     g_busy_med, run);
    made += heat_map(r, dir, "rtt-asleep", "round trip ns, target asleep (median)", r->n, r->n,
                     g_sleep_med, run);
    made += heat_map(r, dir, "stream", "one-way stream, messages/s", r->n, r->n, g_stream, run);
    if (!r->skip_memory) {
        made += heat_map(r, dir, "mem-lat", "memory read latency ns", r->n, r->nn, g_mem_lat, run);
        made +=
            heat_map(r, dir, "mem-bw", "memory read bandwidth GB/s", r->n, r->nn, g_mem_bw, run);
    }
    return run ? made : -1;
}
