/* A storage engine's durable appends and what its commits do to its shard (issue 25).
 *
 * file_durable_append[_METHOD]: group commit. 16 fibers each append a 100-byte record and wait
 * until it is durable; one committer fiber writes the records gathered since its last commit as
 * a new 4 KiB block at the tail of an O_DIRECT segment and makes it durable; commits/s. Against
 * fio's O_DIRECT append of 4 KiB + fdatasync (--rw=write --bs=4k --direct=1 --fdatasync=1,
 * io_uring, a new file, no preallocation) on the same disk, alternating. METHOD:
 *   fdatasync          a new file: write (extends it) + tpc_fdatasync, as fio does
 *   falloc_fdatasync   a segment fallocated first: the write no longer extends it; + fdatasync
 *   dsync              a new file opened O_DSYNC: the write is the commit
 *   falloc_dsync       a fallocated segment, O_DSYNC
 *   zeroed_fdatasync   a segment written with zeros first (overwrites) + fdatasync
 *   zeroed_dsync       a zeroed segment, O_DSYNC
 * Without METHOD: the one docs/guide.md recommends (zeroed_dsync). Each line also gives the
 * io-wq workers' ("iou-wrk") context switches per commit: about 0 when no operation of a commit
 * went to a worker, 1 or more when some did.
 *
 * timer_late_committing[_iowq_shard|_iowq_bounded]: while one fiber commits 8 KiB O_DIRECT
 * appends + fdatasync as fast as it can, another sleeps 1 ms over and over: the 99th percentile
 * of how late it wakes, in us (timer tick 100 us), with the shard's wait for its CPU and its
 * involuntary switches. io-wq placed by default; with iowq_cpus "shard" (the kernel's default,
 * libtpc's before); and "shard" with iowq_workers 1 (bounded instead of moved).
 * timer_late_neighbour[_iowq_shard]: the same with a second shard on CPU 1 whose sleeps are
 * measured: with no CPU free of shards, the default puts the workers on the neighbour's CPU.
 *
 * The shard runs on CPU 0 of a process allowed CPUs 0 and 1 (scripts/bench.sh: taskset -c 0,1),
 * so the default placement puts the workers on CPU 1; fio is pinned to CPU 0 (its workers too).
 * Files: TPC_BENCH_DIR (default /var/tmp).
 * Usage: bench-storage [seconds per measurement [ID|all [rounds]]] */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tpc.h>
#include <unistd.h>
#include "bench.h"

#define BLOCK      4096u
#define SEGMENT    (256u << 20) /* preallocated segment: more than a run writes */
#define WRITERS    16
#define RECORD     100
#define MAX_ROUNDS 99

static const char *dir;
static char path[512];
static long seconds;
static const char *only;
static int rounds = 3;

static const char *const methods[] = {"fdatasync",    "falloc_fdatasync", "dsync",
                                      "falloc_dsync", "zeroed_fdatasync", "zeroed_dsync"};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))
#define BEST     5 /* zeroed_dsync: the default row */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* io-wq workers of this process now, and the sum of their context switches (*switches): a
 * worker switches at least once per operation handed to it. */
static int iowq_workers(uint64_t *switches)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    *switches = 0;
    while ((de = readdir(d))) {
        char p[300], line[128] = "";
        snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
        FILE *f = de->d_name[0] != '.' ? fopen(p, "r") : NULL;
        bool worker = f && fgets(line, sizeof(line), f) && !strncmp(line, "iou-wrk", 7);
        if (f)
            fclose(f);
        if (!worker)
            continue;
        n++;
        snprintf(p, sizeof(p), "/proc/self/task/%s/status", de->d_name);
        f = fopen(p, "r");
        unsigned long v;
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %lu", &v) == 1)
                *switches += v;
        if (f)
            fclose(f);
    }
    closedir(d);
    return n;
}

/* ---- Group commit ---- */

static struct {
    int fd, method;
    bool dsync_open, stop;
    uint64_t appended, durable, commits, records;
    char *block;
    tpc_event committed, work;
    int64_t tail;
} g;

static int writer(void *arg)
{
    (void)arg;
    while (!g.stop) {
        uint64_t mine = ++g.appended; /* the record itself: copied into the next block */
        tpc_event_set(&g.work);
        while (g.durable < mine && !g.stop)
            if (tpc_event_wait(&g.committed) < 0)
                return 0;
    }
    return 0;
}

static int committer(void *arg)
{
    (void)arg;
    uint64_t sent = 0;
    bool dsync = strstr(methods[g.method], "dsync") && !strstr(methods[g.method], "fdatasync");
    while (!g.stop) {
        while (g.appended == sent && !g.stop) {
            tpc_event_reset(&g.work);
            tpc_event_wait(&g.work);
        }
        uint64_t upto = g.appended;
        memset(g.block, (int)(upto & 0xff), (size_t)(upto - sent) * RECORD % BLOCK + 1);
        if (tpc_write(g.fd, g.block, BLOCK, g.tail) != BLOCK)
            return -EIO;
        if (!dsync && tpc_fdatasync(g.fd) != 0)
            return -EIO;
        g.tail += BLOCK;
        g.records += upto - sent;
        g.commits++;
        sent = g.durable = upto;
        tpc_event_set(&g.committed);
        tpc_event_reset(&g.committed);
    }
    return 0;
}

/* Lays the segment out as the method wants: new, fallocated or written with zeros. */
static int segment(int method)
{
    tpc_unlink(path);
    bool dsync = strstr(methods[method], "dsync") && !strstr(methods[method], "fdatasync");
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | (dsync ? O_DSYNC : 0), 0644);
    if (fd < 0)
        return fd;
    int rc = 0;
    if (!strncmp(methods[method], "falloc", 6))
        rc = tpc_fallocate(fd, 0, 0, SEGMENT);
    if (!strncmp(methods[method], "zeroed", 6)) {
        char *z = tpc_alloc_aligned(BLOCK, 1 << 20);
        memset(z, 0, 1 << 20);
        for (uint32_t off = 0; off < SEGMENT && rc >= 0; off += 1 << 20)
            rc = (int)tpc_write_full(fd, z, 1 << 20, off);
        free(z);
    }
    if (rc >= 0)
        rc = tpc_fsync(fd);
    if (rc < 0) {
        tpc_close(fd);
        return rc;
    }
    return fd;
}

static double our_append(int method, double *punts)
{
    uint64_t sw0, sw1;
    memset(&g, 0, sizeof(g));
    g.method = method;
    g.fd = segment(method);
    if (g.fd < 0)
        return -1;
    g.block = tpc_alloc_aligned(BLOCK, BLOCK);
    tpc_event_init(&g.committed, false);
    tpc_event_init(&g.work, false);
    tpc_fiber *c, *w[WRITERS];
    iowq_workers(&sw0);
    tpc_spawn(committer, NULL, &c);
    for (int i = 0; i < WRITERS; i++)
        tpc_spawn(writer, NULL, &w[i]);
    uint64_t t0 = tpc_now_fresh();
    tpc_sleep(seconds * 1000000000LL);
    g.stop = true;
    double t = (double)(tpc_now_fresh() - t0) / 1e9;
    tpc_event_set(&g.work);
    tpc_event_set(&g.committed);
    int rc;
    tpc_join(c, &rc);
    for (int i = 0; i < WRITERS; i++)
        tpc_join(w[i], NULL);
    iowq_workers(&sw1);
    *punts = g.commits && sw1 > sw0 ? (double)(sw1 - sw0) / (double)g.commits : 0;
    tpc_close(g.fd);
    tpc_unlink(path);
    free(g.block);
    return rc < 0 ? -1 : (double)g.commits / t;
}

static double fio_append(void)
{
    char cmd[1024];
    unlink(path);
    snprintf(cmd, sizeof(cmd),
             "fio --name=peer --ioengine=io_uring --cpus_allowed=0 --output-format=json "
             "--filename=%s --rw=write --bs=4k --direct=1 --fdatasync=1 --iodepth=1 --size=1g "
             "--fallocate=none --runtime=%ld --time_based 2>/dev/null",
             path, seconds);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = 0;
    unlink(path);
    if (pclose(f) != 0)
        return -1;
    char *w = strstr(out, "\"write\" : {");
    char *k = w ? strstr(w, "\"iops\"") : NULL;
    char *colon = k ? strchr(k, ':') : NULL;
    return colon ? strtod(colon + 1, NULL) : -1;
}

static void durable_append(int method)
{
    char id[96];
    snprintf(id, sizeof(id), "file_durable_append_%s", methods[method]);
    bool dflt = only && !strcmp(only, "file_durable_append");
    if (only && strcmp(only, id) && !(dflt && method == BEST))
        return;
    double ours[MAX_ROUNDS], fio[MAX_ROUNDS], ratio[MAX_ROUNDS], punts = 0;
    for (int r = 0; r < rounds; r++) {
        ours[r] = our_append(method, &punts);
        fio[r] = fio_append();
        ratio[r] = fio[r] > 0 ? ours[r] / fio[r] : 0;
    }
    qsort(ours, (size_t)rounds, sizeof(double), cmp_double);
    qsort(fio, (size_t)rounds, sizeof(double), cmp_double);
    qsort(ratio, (size_t)rounds, sizeof(double), cmp_double);
    bench_report(dflt ? "file_durable_append" : id, ours[rounds / 2], "commits/s",
                 "%s: %d fibers x %d-byte records, one 4 KiB O_DIRECT block per commit, shard "
                 "on cpu 0 (io-wq default placement), median of %d x %ld s, alternating with "
                 "fio io_uring 4 KiB append + fdatasync=1 on cpu 0: median %.0f commits/s; "
                 "ratio of medians %.2f (per round %.2f-%.2f); io-wq worker switches per commit "
                 "(last round): %.2f%s",
                 methods[method], WRITERS, RECORD, rounds, seconds, fio[rounds / 2],
                 fio[rounds / 2] > 0 ? ours[rounds / 2] / fio[rounds / 2] : 0.0, ratio[0],
                 ratio[rounds - 1], punts, ours[0] < 0 ? "; WRITE ERROR" : "");
}

/* ---- Timer lateness on a committing shard ---- */

static struct {
    volatile bool stop; /* read by the neighbour shard's sleeper too */
    uint64_t commits, n, late[1 << 16], delay_ns, involuntary;
} t;

static int commit_loop(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *b = tpc_alloc_aligned(BLOCK, 8192);
    memset(b, 'c', 8192);
    for (int64_t off = 0; !t.stop; off += 8192, t.commits++)
        if (tpc_write(fd, b, 8192, off) != 8192 || tpc_fdatasync(fd) != 0)
            break;
    free(b);
    return 0;
}

/* The calling thread's time waiting for its CPU while runnable (ns), and its involuntary
 * context switches: what competing threads cost it. */
static void thread_sched(uint64_t *run_delay, uint64_t *involuntary)
{
    char line[256];
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    *run_delay = *involuntary = 0;
    if (f && fgets(line, sizeof(line), f))
        sscanf(line, "%*u %lu", run_delay);
    if (f)
        fclose(f);
    f = fopen("/proc/thread-self/status", "r");
    while (f && fgets(line, sizeof(line), f))
        sscanf(line, "nonvoluntary_ctxt_switches: %lu", involuntary);
    if (f)
        fclose(f);
}

/* On the shard measured (the committing one, or its neighbour): 1 ms sleeps, and what the
 * shard's thread waited for its CPU meanwhile. */
static int sleep_loop(void *arg)
{
    (void)arg;
    uint64_t d0, i0, d1, i1;
    thread_sched(&d0, &i0);
    while (!t.stop && t.n < sizeof(t.late) / sizeof(t.late[0])) {
        uint64_t t0 = tpc_now_fresh();
        if (tpc_sleep(1000000) < 0)
            break;
        t.late[t.n++] = tpc_now_fresh() - t0 - 1000000;
    }
    thread_sched(&d1, &i1);
    t.delay_ns = d1 - d0;
    t.involuntary = i1 - i0;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The committer on shard 0, the sleeper on shard `neighbour` (0 or 1). */
static int late_main(void *arg)
{
    double *out = arg; /* p50, p99, max (us), commits/s, workers, run delay ms/s, invol./s */
    int neighbour = (int)out[7];
    memset((void *)&t, 0, sizeof(t));
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
    if (fd < 0)
        return 1;
    tpc_fiber *c, *s;
    tpc_spawn(commit_loop, (void *)(intptr_t)fd, &c);
    tpc_spawn_on(neighbour, NULL, sleep_loop, NULL, &s);
    tpc_sleep(seconds * 1000000000LL);
    uint64_t sw;
    out[4] = iowq_workers(&sw);
    t.stop = true;
    tpc_join(c, NULL);
    tpc_join(s, NULL);
    tpc_close(fd);
    tpc_unlink(path);
    out[5] = (double)t.delay_ns / 1e6 / (double)seconds;
    out[6] = (double)t.involuntary / (double)seconds;
    qsort(t.late, t.n, sizeof(t.late[0]), cmp_u64);
    out[0] = t.n ? (double)t.late[t.n / 2] / 1e3 : -1;
    out[1] = t.n ? (double)t.late[t.n * 99 / 100] / 1e3 : -1;
    out[2] = t.n ? (double)t.late[t.n - 1] / 1e3 : -1;
    out[3] = (double)t.commits / (double)seconds;
    return 0;
}

/* mode 0: the default placement; 1: iowq_cpus "shard"; 2: "shard" with one worker at most; 3
 * and 4: as 0 and 1 with a second shard on CPU 1, whose sleeps are measured (the default then
 * puts the workers on its CPU: no CPU is free of shards). */
static void timer_late(int mode)
{
    static const char *const ids[] = {"timer_late_committing", "timer_late_committing_iowq_shard",
                                      "timer_late_committing_iowq_bounded", "timer_late_neighbour",
                                      "timer_late_neighbour_iowq_shard"};
    static const char *const where[] = {
        "the default (cpu 1)", "the shard's cpu (iowq_cpus \"shard\")",
        "the shard's cpu, at most 1 (iowq_workers 1)",
        "the default (cpu 1: the neighbour's); the sleeps measured on the neighbour shard",
        "the shard's cpu (iowq_cpus \"shard\"); the sleeps measured on the neighbour shard"};
    const char *id = ids[mode];
    if (only && strcmp(only, id))
        return;
    double p50[MAX_ROUNDS], p99[MAX_ROUNDS], max[MAX_ROUNDS], cps[MAX_ROUNDS], out[8] = {0};
    double delay[MAX_ROUNDS], invol[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        tpc_config c = {.shards = mode >= 3 ? 2 : 1,
                        .cpus = mode >= 3 ? "0-1" : "0",
                        .timer_tick_ns = 100000,
                        .iowq_cpus = mode == 1 || mode == 2 || mode == 4 ? "shard" : NULL,
                        .iowq_workers = mode == 2 ? 1 : 0};
        out[7] = mode >= 3 ? 1 : 0;
        if (tpc_run(&c, late_main, out) != 0)
            out[0] = out[1] = out[2] = out[3] = -1;
        p50[r] = out[0], p99[r] = out[1], max[r] = out[2], cps[r] = out[3];
        delay[r] = out[5], invol[r] = out[6];
    }
    qsort(delay, (size_t)rounds, sizeof(double), cmp_double);
    qsort(invol, (size_t)rounds, sizeof(double), cmp_double);
    qsort(p50, (size_t)rounds, sizeof(double), cmp_double);
    qsort(p99, (size_t)rounds, sizeof(double), cmp_double);
    qsort(max, (size_t)rounds, sizeof(double), cmp_double);
    qsort(cps, (size_t)rounds, sizeof(double), cmp_double);
    bench_report(id, p99[rounds / 2], "us",
                 "99th percentile of how late a 1 ms sleep wakes while another fiber commits 8 "
                 "KiB O_DIRECT appends + fdatasync, io-wq on %s, shard on cpu 0 of 0-1, timer "
                 "tick 100 us, median of %d x %ld s: p50 %.0f us, max %.0f us (worst round "
                 "%.0f), %.0f commits/s; the shard waited for its cpu %.1f ms/s, %.0f "
                 "involuntary switches/s; io-wq workers: %.0f",
                 where[mode], rounds, seconds, p50[rounds / 2], max[rounds / 2], max[rounds - 1],
                 cps[rounds / 2], delay[rounds / 2], invol[rounds / 2], out[4]);
}

static int append_main(void *arg)
{
    (void)arg;
    for (size_t m = 0; m < NMETHODS; m++)
        durable_append((int)m);
    return 0;
}

int main(int argc, char **argv)
{
    seconds = bench_iters(argc, argv, 3);
    dir = getenv("TPC_BENCH_DIR") ? getenv("TPC_BENCH_DIR") : "/var/tmp";
    snprintf(path, sizeof(path), "%s/tpc-bench-storage.dat", dir);
    if (argc > 2 && strcmp(argv[2], "all")) {
        only = argv[2];
        if (strncmp(only, "file_durable_append", 19) && strncmp(only, "timer_late_", 11)) {
            fprintf(stderr, "bench-storage: unknown workload '%s'\n", only);
            return 2;
        }
    }
    if (argc > 3) {
        rounds = atoi(argv[3]);
        if (rounds < 1 || rounds > MAX_ROUNDS) {
            fprintf(stderr, "bench-storage: rounds must be 1-%d\n", MAX_ROUNDS);
            return 2;
        }
    }
    if (system("fio --version >/dev/null 2>&1") != 0)
        fprintf(stderr, "bench-storage: fio is not installed: the peer figures will read -1\n");
    for (int mode = 0; mode < 5; mode++)
        timer_late(mode);
    /* fio runs from the shard (popen), which then blocks on purpose: no stall reports. */
    tpc_config c = {.shards = 1, .cpus = "0", .stall_ms = -1};
    return tpc_run(&c, append_main, NULL) == 0 ? 0 : 1;
}
