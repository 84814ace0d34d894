/* File I/O against fio's io_uring engine, same machine, same file, same run, both pinned to
 * CPU 0:
 *   file_randread_qdN_{buffered,direct}  random 4 KiB reads of a 1 GiB file by N fibers (one
 *                                       read in flight each), IOPS; fio --rw=randread
 *                                       --iodepth=N with the same block size and direct flag
 *   file_randread_qdN_direct_fixed      the same at N = 32 and 128 with O_DIRECT, through a
 *                                       registered file and buffers, against fio tuned as a
 *                                       storage engine runs it: --iodepth_batch_submit=32
 *                                       --iodepth_batch_complete_max=N --fixedbufs --registerfiles
 *   file_seqwrite                       a 256 MiB file overwritten in 1 MiB writes by one fiber,
 *                                       then one fdatasync, MB/s; fio --rw=write --bs=1m
 *                                       --end_fsync=1 on the same file (fio's --fdatasync=N
 *                                       never syncs at the end of a job)
 * Each line gives the medians of three alternating rounds (ours, then fio; for file_seqwrite
 * fio first in odd rounds, counted from BENCH_ROUND if set; `rounds` changes it) and their ratio;
 * fio's median is in the conditions ("median N IOPS", "median N MB/s"). fio runs with its defaults
 * otherwise (no registered files or buffers, no SQPOLL), as libtpc does, except in the _fixed rows.
 * Buffered runs start from a warm page cache on both sides (fio with --invalidate=0). The files are
 * kept between runs (TPC_BENCH_FILE, default /var/tmp/tpc-bench-1g.dat, and the same name with
 * .write appended). Usage: bench-file [seconds per measurement [ID|all [rounds]]] ID: one of the
 * ids above; scripts/bench.sh runs one ID per call with 1 round and alternates the calls itself */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tpc.h>
#include <unistd.h>
#include "bench.h"

#define FILE_SIZE  (1ull << 30)
#define BLOCK      4096u
#define WRITE_SIZE (256ull << 20)

static const char *path;
static char wpath[256];
static long seconds;
static const char *only; /* one workload id, or NULL for all */
static int rounds = 3;
#define MAX_ROUNDS 99

/* One figure of fio's JSON output for its one job: the first `key` after `section`; -1 if fio
 * is missing or failed. */
static double run_fio(const char *args, const char *section, const char *key)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "fio --name=peer --ioengine=io_uring --cpus_allowed=0 --output-format=json %s "
             "2>/dev/null",
             args);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = 0;
    if (pclose(f) != 0)
        return -1;
    char *sec = strstr(out, section);
    char *k = sec ? strstr(sec, key) : NULL;
    char *colon = k ? strchr(k, ':') : NULL;
    return colon ? strtod(colon + 1, NULL) : -1;
}

struct reader {
    int fd;
    int buf_handle; /* a registered buffer holding buf, or -1 */
    uint64_t deadline;
    uint64_t rng;
    long ops;
    void *buf;
};

static int read_loop(void *arg)
{
    struct reader *r = arg;
    while (tpc_now_fresh() < r->deadline) {
        uint64_t off = bench_rand(&r->rng) % (FILE_SIZE / BLOCK) * BLOCK;
        ssize_t n = r->buf_handle >= 0
                        ? tpc_read_fixed(r->fd, r->buf, BLOCK, (int64_t)off, r->buf_handle)
                        : tpc_read(r->fd, r->buf, BLOCK, (int64_t)off);
        if (n != BLOCK)
            return -1;
        r->ops++;
    }
    return 0;
}

/* Creates `name` with `size` bytes of random data, unless it is there with that size. */
static int prepare_file(const char *name, uint64_t size)
{
    struct statx st;
    if (tpc_statx(AT_FDCWD, name, 0, STATX_SIZE, &st) == 0 && st.stx_size == size)
        return 0;
    int fd = tpc_open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return fd;
    char *buf = malloc(1 << 20);
    uint64_t rng = BENCH_SEED;
    for (size_t i = 0; i < (1 << 20) / 8; i++)
        ((uint64_t *)buf)[i] = bench_rand(&rng);
    int rc = 0;
    for (uint64_t off = 0; off < size && rc == 0; off += 1 << 20)
        if (tpc_write_full(fd, buf, 1 << 20, (int64_t)off) != 1 << 20)
            rc = -EIO;
    free(buf);
    if (rc == 0)
        rc = tpc_fsync(fd);
    tpc_close(fd);
    return rc;
}

/* Reads the whole file once, so that buffered runs (ours and fio's, which is told not to
 * drop the cache) both start from a warm page cache. */
static void warm(void)
{
    int fd = tpc_open(path, O_RDONLY, 0);
    char *buf = malloc(1 << 20);
    for (uint64_t off = 0; fd >= 0 && off < FILE_SIZE; off += 1 << 20)
        if (tpc_read_full(fd, buf, 1 << 20, (int64_t)off) <= 0)
            break;
    free(buf);
    if (fd >= 0)
        tpc_close(fd);
}

/* One measurement of ours: IOPS of `depth` fibers reading for `seconds`; negative on error.
 * fixed: through a registered file and one registered buffer for all the fibers' blocks, as a
 * storage engine would read. */
static double our_randread(int depth, bool direct, bool fixed)
{
    int fd = tpc_open(path, O_RDONLY | (direct ? O_DIRECT : 0), 0);
    if (fd < 0) {
        fprintf(stderr, "bench-file: open %s: %s\n", path, tpc_strerror(fd));
        return -1;
    }
    char *bufs = aligned_alloc(BLOCK, (size_t)depth * BLOCK);
    int file = fd, buf_handle = -1;
    if (fixed && ((file = tpc_file_register(fd)) < 0 ||
                  (buf_handle = tpc_buffer_register(bufs, (size_t)depth * BLOCK)) < 0)) {
        fprintf(stderr, "bench-file: registering: %s\n",
                tpc_strerror(file < 0 ? file : buf_handle));
        return -1;
    }
    struct reader *rs = calloc((size_t)depth, sizeof(*rs));
    tpc_fiber **fs = calloc((size_t)depth, sizeof(*fs));
    uint64_t t0 = tpc_now_fresh();
    for (int i = 0; i < depth; i++) {
        rs[i] = (struct reader){.fd = file,
                                .buf_handle = buf_handle,
                                .deadline = t0 + (uint64_t)seconds * 1000000000u,
                                .rng = BENCH_SEED + (uint64_t)i * 7919 + t0,
                                .buf = bufs + (size_t)i * BLOCK};
        tpc_spawn(read_loop, &rs[i], &fs[i]);
    }
    long ops = 0;
    int bad = 0;
    for (int i = 0; i < depth; i++) {
        int res = 0;
        tpc_join(fs[i], &res);
        bad |= res;
        ops += rs[i].ops;
    }
    double t = (double)(tpc_now_fresh() - t0) / 1e9;
    if (fixed) {
        tpc_buffer_unregister(buf_handle);
        tpc_file_unregister(file);
    }
    tpc_close(fd);
    free(bufs);
    free(rs);
    free(fs);
    return bad ? -1 : (double)ops / t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* `rounds` alternating measurements of ours and fio's; reports the medians and their ratio.
 * fixed: ours with a registered file and buffers, against fio tuned as a storage engine would
 * run it (batched submission and completion, registered buffers and files). */
static void randread(int depth, bool direct, bool fixed)
{
    double ours[MAX_ROUNDS], fio[MAX_ROUNDS], ratio[MAX_ROUNDS];
    char args[512], id[64], tuned[160] = "";
    snprintf(id, sizeof(id), "file_randread_qd%d_%s%s", depth, direct ? "direct" : "buffered",
             fixed ? "_fixed" : "");
    if (only && strcmp(only, id))
        return;
    if (fixed)
        snprintf(tuned, sizeof(tuned),
                 " --iodepth_batch_submit=%d --iodepth_batch_complete_max=%d --fixedbufs "
                 "--registerfiles",
                 depth < 32 ? depth : 32, depth);
    snprintf(args, sizeof(args),
             "--filename=%s --rw=randread --bs=4k --iodepth=%d --direct=%d --size=1g "
             "--runtime=%ld --time_based --randrepeat=0 --invalidate=0%s",
             path, depth, direct ? 1 : 0, seconds, tuned);
    for (int r = 0; r < rounds; r++) {
        if (!direct)
            warm();
        ours[r] = our_randread(depth, direct, fixed);
        fio[r] = run_fio(args, "\"read\" : {", "\"iops\"");
        ratio[r] = fio[r] > 0 ? ours[r] / fio[r] : 0;
    }
    qsort(ours, (size_t)rounds, sizeof(double), cmp_double);
    qsort(fio, (size_t)rounds, sizeof(double), cmp_double);
    qsort(ratio, (size_t)rounds, sizeof(double), cmp_double);
    bench_report(id, ours[rounds / 2], "IOPS",
                 "%d fibers x 1 read of 4 KiB%s, 1 GiB file, %s, cpu 0, median of %d x %ld s, "
                 "alternating with fio io_uring iodepth=%d%s: median %.0f IOPS; ratio of medians "
                 "%.2f (per round %.2f-%.2f)%s",
                 depth, fixed ? " (registered file and buffers)" : "",
                 direct ? "O_DIRECT" : "page cache", rounds, seconds, depth, tuned, fio[rounds / 2],
                 fio[rounds / 2] > 0 ? ours[rounds / 2] / fio[rounds / 2] : 0.0, ratio[0],
                 ratio[rounds - 1], ours[0] < 0 ? "; READ ERRORS" : "");
}

/* One measurement of ours: MB/s overwriting the 256 MiB file in 1 MiB writes, then fdatasync. */
static double our_seqwrite(void)
{
    int fd = tpc_open(wpath, O_WRONLY, 0);
    if (fd < 0)
        return -1;
    char *buf = aligned_alloc(BLOCK, 1 << 20);
    memset(buf, 0x5a, 1 << 20);
    uint64_t t0 = tpc_now_fresh();
    int rc = 0;
    for (uint64_t off = 0; off < WRITE_SIZE && rc == 0; off += 1 << 20)
        if (tpc_write_full(fd, buf, 1 << 20, (int64_t)off) != 1 << 20)
            rc = -EIO;
    if (rc == 0)
        rc = tpc_fdatasync(fd);
    double t = (double)(tpc_now_fresh() - t0) / 1e9;
    tpc_close(fd);
    free(buf);
    return rc < 0 ? -1 : (double)WRITE_SIZE / t / 1e6;
}

static void seqwrite(void)
{
    double ours[MAX_ROUNDS], fio[MAX_ROUNDS], ratio[MAX_ROUNDS];
    char args[512];
    if (only && strcmp(only, "file_seqwrite"))
        return;
    /* Both sides overwrite the same kept file. Writing a new file measured the VM's disk more
     * than the writer: this ext4 mounts with `discard`, and a 256 MiB write ran at 0.7 GB/s
     * after a two-second pause that let the previous file's blocks be discarded, but at 1.4
     * GB/s right after, by dd as by us (the order of ours and fio's then decided the ratio). */
    int rc = prepare_file(wpath, WRITE_SIZE);
    if (rc < 0) {
        fprintf(stderr, "bench-file: cannot prepare %s: %s\n", wpath, tpc_strerror(rc));
        return;
    }
    snprintf(args, sizeof(args),
             "--filename=%s --rw=write --bs=1m --iodepth=1 --size=256m --end_fsync=1 "
             "--fallocate=none --invalidate=0",
             wpath);
    /* Who goes first alternates from round to round (scripts/bench.sh passes its round in
     * BENCH_ROUND): in the runner, after its disk-heavy groups (kv, storage), whichever writer
     * came first was slowed (on the Intel VM: ours at 0.31-0.47 of fio's in the three rounds
     * it led, 0.97-1.05 alone; a 2 GiB file written and deleted just before did not do it). */
    const char *br = getenv("BENCH_ROUND");
    int first = br ? atoi(br) : 0;
    for (int r = 0; r < rounds; r++) {
        bool fio_first = (first + r) % 2 == 1;
        if (!fio_first)
            ours[r] = our_seqwrite();
        /* fio's write bandwidth leaves the final sync out: use the job's whole run time. */
        double ms = run_fio(args, "\"jobname\"", "\"job_runtime\"");
        fio[r] = ms > 0 ? (double)WRITE_SIZE / (ms / 1e3) / 1e6 : -1;
        if (fio_first)
            ours[r] = our_seqwrite();
        ratio[r] = fio[r] > 0 ? ours[r] / fio[r] : 0;
    }
    qsort(ours, (size_t)rounds, sizeof(double), cmp_double);
    qsort(fio, (size_t)rounds, sizeof(double), cmp_double);
    qsort(ratio, (size_t)rounds, sizeof(double), cmp_double);
    bench_report("file_seqwrite", ours[rounds / 2], "MB/s",
                 "256 MiB overwritten in 1 MiB writes from one fiber, then fdatasync, cpu 0, "
                 "median of %d, alternating with fio io_uring bs=1m iodepth=1 end_fsync=1 "
                 "fallocate=none invalidate=0 on the same file (its whole run time): median %.0f "
                 "MB/s; ratio of medians %.2f (per round %.2f-%.2f)%s",
                 rounds, fio[rounds / 2],
                 fio[rounds / 2] > 0 ? ours[rounds / 2] / fio[rounds / 2] : 0.0, ratio[0],
                 ratio[rounds - 1], ours[0] < 0 ? "; WRITE ERROR" : "");
}

static int bench_main(void *arg)
{
    (void)arg;
    int rc = prepare_file(path, FILE_SIZE);
    if (rc < 0) {
        fprintf(stderr, "bench-file: cannot prepare %s: %s\n", path, tpc_strerror(rc));
        return 1;
    }
    static const int depths[] = {1, 32, 128};
    for (int direct = 0; direct < 2; direct++)
        for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++)
            randread(depths[i], direct, false);
    randread(32, true, true);
    randread(128, true, true);
    seqwrite();
    return 0;
}

int main(int argc, char **argv)
{
    seconds = bench_iters(argc, argv, 5);
    path = getenv("TPC_BENCH_FILE") ? getenv("TPC_BENCH_FILE") : "/var/tmp/tpc-bench-1g.dat";
    snprintf(wpath, sizeof(wpath), "%s.write", path);
    if (argc > 2 && strcmp(argv[2], "all")) {
        only = argv[2];
        if (strcmp(only, "file_seqwrite") && strncmp(only, "file_randread_qd", 16)) {
            fprintf(stderr, "bench-file: unknown workload '%s'\n", only);
            return 2;
        }
    }
    if (argc > 3) {
        rounds = atoi(argv[3]);
        if (rounds < 1 || rounds > MAX_ROUNDS) {
            fprintf(stderr, "bench-file: rounds must be 1-%d\n", MAX_ROUNDS);
            return 2;
        }
    }
    if (system("fio --version >/dev/null 2>&1") != 0)
        fprintf(stderr, "bench-file: fio is not installed: the peer figures will read -1\n");
    tpc_config c = {.shards = 1, .cpus = "0"};
    return tpc_run(&c, bench_main, NULL) == 0 ? 0 : 1;
}
