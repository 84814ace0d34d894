/* What a storage engine needs from the runtime (issue 25): registered buffers and files shared
 * by independent components (slots taken and given back, handles that go stale, registering
 * while fixed operations are in flight), io_uring's workers kept off the shard's CPU
 * (tpc_config.iowq_cpus, iowq_workers), and bounded durable operations (tpc_pending): a deadline
 * shorter than a big fdatasync is reported, the sync still completes, nothing leaks. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "helpers.h"

static char dir[64];

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* ---- Registered buffers: two components ---- */

/* A component that registers its own buffer and writes and reads it back through it. */
struct component {
    char *buf;
    int handle;
};

static void component_init(struct component *c, char fill)
{
    c->buf = tpc_alloc_aligned(4096, 8192);
    CHECK(c->buf != NULL);
    memset(c->buf, fill, 8192);
    c->handle = tpc_buffer_register(c->buf, 8192);
    CHECK(c->handle >= 0);
}

static void component_round_trip(struct component *c, int fd, int64_t off)
{
    char fill = c->buf[0];
    CHECK_EQ(tpc_write_fixed(fd, c->buf, 4096, off, c->handle), 4096);
    memset(c->buf + 4096, 0, 4096);
    CHECK_EQ(tpc_read_fixed(fd, c->buf + 4096, 4096, off, c->handle), 4096);
    CHECK(c->buf[4096] == fill && c->buf[8191] == fill);
}

static int two_components_main(void *arg)
{
    (void)arg;
    char p[96];
    path_in(p, sizeof(p), "two");
    int fd = tpc_open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    struct component engine, net;
    component_init(&engine, 'e');
    component_round_trip(&engine, fd, 0);
    component_init(&net, 'n'); /* registers on its own: the engine's buffer stays */
    CHECK(net.handle != engine.handle);
    component_round_trip(&engine, fd, 4096);
    component_round_trip(&net, fd, 8192);
    CHECK_EQ(tpc_buffer_unregister(engine.handle), 0);
    component_round_trip(&net, fd, 0); /* the other one's going leaves it alone */
    /* The engine's handle is stale, also once its slot is taken again. */
    int again = tpc_buffer_register(engine.buf, 8192);
    CHECK(again >= 0 && again != engine.handle);
    CHECK_EQ(tpc_write_fixed(fd, engine.buf, 4096, 0, engine.handle), -EINVAL);
    CHECK_EQ(tpc_buffer_unregister(engine.handle), -EBADF);
    CHECK_EQ(tpc_buffer_unregister(again), 0);
    CHECK_EQ(tpc_buffer_unregister(net.handle), 0);
    CHECK_EQ(tpc_buffer_unregister(-1), -EBADF);
    CHECK_EQ(tpc_buffer_register(engine.buf, (1u << 30) + 1), -EINVAL);
    free(engine.buf);
    free(net.buf);
    tpc_close(fd);
    tpc_unlink(p);
    return 0;
}

static void test_buffers_two_components(void **state)
{
    (void)state;
    run_main(1, two_components_main, NULL);
}

/* ---- Registering while a fixed operation is in flight ---- */

static struct {
    int rd, handle;
    char *buf;
    ssize_t got;
    tpc_event started;
} inflight;

static int fixed_reader(void *arg)
{
    (void)arg;
    tpc_event_set(&inflight.started);
    inflight.got = tpc_read_fixed(inflight.rd, inflight.buf, 4096, -1, inflight.handle);
    return 0;
}

static int inflight_main(void *arg)
{
    (void)arg;
    int pfd[2];
    CHECK_EQ(pipe(pfd), 0);
    inflight.rd = pfd[0];
    inflight.buf = tpc_alloc_aligned(4096, 4096);
    inflight.handle = tpc_buffer_register(inflight.buf, 4096);
    CHECK(inflight.handle >= 0);
    tpc_event_init(&inflight.started, false);
    tpc_fiber *f;
    CHECK_EQ(tpc_spawn(fixed_reader, NULL, &f), 0);
    CHECK_EQ(tpc_event_wait(&inflight.started), 0);
    loop_turns(2); /* its read is in the kernel, waiting for the pipe */
    char *other = tpc_alloc_aligned(4096, 4096);
    int h = tpc_buffer_register(other, 4096); /* a fixed read is in flight: fine */
    CHECK(h >= 0);
    CHECK_EQ(tpc_buffer_unregister(inflight.handle), -EBUSY); /* the one in use stays */
    CHECK_EQ(tpc_buffer_unregister(h), 0);
    CHECK_EQ(write(pfd[1], "fixed", 5), 5);
    CHECK_EQ(tpc_join(f, NULL), 0);
    CHECK_EQ(inflight.got, 5);
    CHECK(memcmp(inflight.buf, "fixed", 5) == 0);
    CHECK_EQ(tpc_buffer_unregister(inflight.handle), 0);
    free(other);
    free(inflight.buf);
    close(pfd[0]);
    close(pfd[1]);
    return 0;
}

static void test_register_while_fixed_in_flight(void **state)
{
    (void)state;
    run_main(1, inflight_main, NULL);
}

/* ---- A full table ---- */

static int full_main(void *arg)
{
    (void)arg;
    char *b = tpc_alloc_aligned(4096, 3 * 4096);
    int h0 = tpc_buffer_register(b, 4096), h1 = tpc_buffer_register(b + 4096, 4096);
    CHECK(h0 >= 0 && h1 >= 0);
    CHECK_EQ(tpc_buffer_register(b + 8192, 4096), -ENOSPC);
    CHECK_EQ(tpc_buffer_unregister(h0), 0);
    int h2 = tpc_buffer_register(b + 8192, 4096);
    CHECK(h2 >= 0);
    CHECK_EQ(tpc_buffer_unregister(h1), 0);
    CHECK_EQ(tpc_buffer_unregister(h2), 0);
    free(b);
    int f0 = tpc_file_register(0), f1 = tpc_file_register(1);
    CHECK(f0 >= 0 && f1 >= 0);
    CHECK_EQ(tpc_file_register(2), -ENOSPC);
    CHECK_EQ(tpc_file_unregister(f0), 0);
    CHECK_EQ(tpc_file_unregister(f1), 0);
    return 0;
}

static void test_full_table(void **state)
{
    (void)state;
    tpc_config c = {.shards = 1, .registered_slots = 2};
    run_config(&c, full_main, NULL);
    c.registered_slots = 16385;
    assert_int_equal(tpc_run(&c, full_main, NULL), -EINVAL);
}

/* ---- Registered files ---- */

/* On shard 1: the other shard's handles name nothing here, though this shard's tables have
 * slots of the same numbers taken (a file and a buffer of its own). */
static int foreign_handles(void *arg)
{
    const int *h = arg;
    char p[96];
    path_in(p, sizeof(p), "files1");
    int fd = tpc_open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    char *b = tpc_alloc_aligned(4096, 4096);
    int mine[8], mine_b[8], n = 0; /* up to the other shard's slots (fresh tables: 0, 1 ...) */
    do {
        mine[n] = tpc_file_register(fd);
        mine_b[n] = tpc_buffer_register(b, 4096);
        CHECK(mine[n] >= 0 && mine_b[n] >= 0);
    } while ((mine[n++] & 0x3fff) < (h[0] & 0x3fff) && n < 8);
    CHECK((mine[n - 1] & 0x3fff) == (h[0] & 0x3fff)); /* the same slot as the other shard's */
    CHECK((mine_b[n - 1] & 0x3fff) == (h[1] & 0x3fff));
    char got[4];
    CHECK_EQ(tpc_read(h[0], got, 1, 0), -EBADF);
    CHECK_EQ(tpc_file_unregister(h[0]), -EBADF);
    CHECK_EQ(tpc_buffer_unregister(h[1]), -EBADF);
    CHECK_EQ(tpc_write_fixed(fd, b, 16, 0, h[1]), -EINVAL);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(tpc_buffer_unregister(mine_b[i]), 0);
        CHECK_EQ(tpc_file_unregister(mine[i]), 0);
    }
    free(b);
    tpc_close(fd);
    tpc_unlink(p);
    return 0;
}

static int files_main(void *arg)
{
    (void)arg;
    char p[96];
    path_in(p, sizeof(p), "files");
    int fd = tpc_open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    int h = tpc_file_register(fd);
    CHECK(h >= (1 << 30));
    CHECK_EQ(tpc_close(fd), 0); /* the registration keeps the file open */
    CHECK_EQ(tpc_write(h, "registered", 10, 0), 10);
    struct iovec v = {.iov_base = " file", .iov_len = 5};
    CHECK_EQ(tpc_writev(h, &v, 1, 10), 5);
    CHECK_EQ(tpc_write_full(h, "!", 1, 15), 1);
    CHECK_EQ(tpc_fallocate(h, 0, 0, 8192), 0);
    CHECK_EQ(tpc_fdatasync(h), 0);
    CHECK_EQ(tpc_fsync(h), 0);
    char got[16] = {0};
    CHECK_EQ(tpc_read_full(h, got, 16, 0), 16);
    CHECK(memcmp(got, "registered file!", 16) == 0);
    char *b = tpc_alloc_aligned(4096, 4096);
    int bh = tpc_buffer_register(b, 4096);
    CHECK_EQ(tpc_read_fixed(h, b, 16, 0, bh), 16); /* a registered file and buffer */
    CHECK(memcmp(b, "registered file!", 16) == 0);
    CHECK_EQ(tpc_buffer_unregister(bh), 0);
    free(b);
    CHECK_EQ(tpc_file_unregister(h), 0);
    CHECK_EQ(tpc_read(h, got, 1, 0), -EBADF); /* given back */
    CHECK_EQ(tpc_fdatasync(h), -EBADF);
    CHECK_EQ(tpc_file_unregister(h), -EBADF);
    CHECK_EQ(tpc_file_unregister(3), -EBADF); /* a descriptor is not a handle */
    CHECK_EQ(tpc_file_register(-1), -EBADF);
    CHECK_EQ(tpc_read((1 << 30) | 5, got, 1, 0), -EBADF); /* never registered */
    /* A file handle is no buffer handle, nor the other way round, even with both registered. */
    fd = tpc_open(p, O_RDWR, 0);
    h = tpc_file_register(fd);
    b = tpc_alloc_aligned(4096, 4096);
    bh = tpc_buffer_register(b, 4096);
    CHECK(h >= 0 && bh >= 0);
    CHECK_EQ(tpc_buffer_unregister(h), -EBADF);
    CHECK_EQ(tpc_read_fixed(fd, b, 16, 0, h), -EINVAL);
    CHECK_EQ(tpc_file_unregister(bh), -EBADF);
    /* Handles stay with their shard: shard 1 has the same slots, and refuses these. */
    int handles[2] = {h, bh};
    CHECK_EQ(tpc_call_on(1, foreign_handles, handles, NULL), 0);
    CHECK_EQ(tpc_buffer_unregister(bh), 0);
    CHECK_EQ(tpc_file_unregister(h), 0);
    free(b);
    tpc_close(fd);
    tpc_unlink(p);
    return 0;
}

static void test_registered_files(void **state)
{
    (void)state;
    assert_int_equal(tpc_file_unregister(1 << 30), -EPERM);
    run_main(2, files_main, NULL);
}

/* ---- io-wq placement ---- */

/* The CPUs io_uring's workers of this process may run on, as a mask of CPUs 0..63 ORed over
 * every worker; 0 if there is none. */
static uint64_t worker_cpus(int *count)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    uint64_t mask = 0;
    *count = 0;
    while (d && (de = readdir(d))) {
        char p[300], line[256] = "";
        snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
        FILE *f = de->d_name[0] != '.' ? fopen(p, "r") : NULL;
        bool worker = f && fgets(line, sizeof(line), f) && !strncmp(line, "iou-wrk", 7);
        if (f)
            fclose(f);
        if (!worker)
            continue;
        cpu_set_t set;
        if (sched_getaffinity(atoi(de->d_name), sizeof(set), &set) != 0)
            continue;
        (*count)++;
        for (int c = 0; c < 64; c++)
            if (CPU_ISSET(c, &set))
                mask |= 1ull << c;
    }
    if (d)
        closedir(d);
    return mask;
}

/* Syncs a file (io_uring always hands a sync to a worker), then reports where the workers
 * may run through the exit status: bit 0 set if some worker may run on the shard's CPU, bit 1
 * if some may run elsewhere, 4 without a worker. */
static int placement_main(void *arg)
{
    (void)arg;
    char p[96];
    snprintf(p, sizeof(p), "%s/iowq-%d", dir, (int)getpid());
    int fd = tpc_open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(tpc_write(fd, "x", 1, 0), 1);
    CHECK_EQ(tpc_fdatasync(fd), 0);
    tpc_close(fd);
    tpc_unlink(p);
    int n;
    uint64_t mask = worker_cpus(&n), own = 1ull << tpc_shard_cpu();
    return n == 0 ? 4 : ((mask & own) ? 1 : 0) | ((mask & ~own) ? 2 : 0);
}

/* Runs placement_main in a child process (workers of an earlier runtime's shard may linger a
 * moment after it stopped) with the shard on `cpu`; returns its status. */
static int placement_in_child(const char *cpu, const char *iowq, int workers)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        tpc_config c = {.shards = 1, .cpus = cpu, .iowq_cpus = iowq, .iowq_workers = workers};
        _exit(tpc_run(&c, placement_main, NULL) & 0xff);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Two CPUs of the affinity mask as strings ("" if there are fewer). */
static void two_cpus(char a[8], char b[8])
{
    cpu_set_t set;
    a[0] = b[0] = 0;
    sched_getaffinity(0, sizeof(set), &set);
    for (int c = 0, n = 0; c < 64 && n < 2; c++)
        if (CPU_ISSET(c, &set))
            snprintf(n++ ? b : a, 8, "%d", c);
}

static void test_iowq_placement(void **state)
{
    (void)state;
    char a[8], b[8];
    two_cpus(a, b);
    SKIP_IF(!b[0], "needs two CPUs");
    SKIP_IF(under_valgrind(), "valgrind runs io_uring's workers as it likes");
    SKIP_IF(on_epoll(), "io_uring's workers: none on epoll");
    /* The kernel's default: on the shard's CPU only. */
    assert_int_equal(placement_in_child(a, "shard", 0), 1);
    /* The default: on a CPU that no shard runs on. */
    assert_int_equal(placement_in_child(a, NULL, 0), 2);
    /* An explicit list, and a bound on their number. */
    assert_int_equal(placement_in_child(a, b, 0), 2);
    assert_int_equal(placement_in_child(a, NULL, 1), 2);
}

static void test_iowq_bad_config(void **state)
{
    (void)state;
    tpc_config c = {.shards = 1, .iowq_cpus = "1-0"};
    assert_int_equal(tpc_run(&c, placement_main, NULL), -EINVAL);
    c.iowq_cpus = "zero";
    assert_int_equal(tpc_run(&c, placement_main, NULL), -EINVAL);
    c.iowq_cpus = "0,";
    assert_int_equal(tpc_run(&c, placement_main, NULL), -EINVAL);
    c.iowq_cpus = NULL;
    c.iowq_workers = -1;
    assert_int_equal(tpc_run(&c, placement_main, NULL), -EINVAL);
    c.iowq_workers = 1025;
    assert_int_equal(tpc_run(&c, placement_main, NULL), -EINVAL);
    setenv("TPC_IOWQ_CPUS", "all", 1);
    c.iowq_workers = 0;
    assert_int_equal(tpc_run(&c, placement_main, NULL), -EINVAL);
    unsetenv("TPC_IOWQ_CPUS");
}

/* ---- Bounded durable operations ---- */

#define DIRTY (32 << 20) /* dirty page cache to sync: far more than a disk writes in 1 ms */

/* A file with DIRTY bytes of pattern written through the page cache, not yet synced. */
static int dirty_file(const char *p)
{
    int fd = tpc_open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    char *buf = malloc(1 << 20);
    for (int i = 0; i < DIRTY >> 20; i++) {
        memset(buf, 'a' + i % 26, 1 << 20);
        CHECK_EQ(tpc_write_full(fd, buf, 1 << 20, (int64_t)i << 20), 1 << 20);
    }
    free(buf);
    return fd;
}

static int bounded_main(void *arg)
{
    bool *synced_in_time = arg;
    char p[96];
    snprintf(p, sizeof(p), "/var/tmp/tpc-test-storage-%d-b", (int)getpid()); /* a disk, where
                                                                             /tmp may be tmpfs */
    int fds = count_fds();
    int fd = dirty_file(p);
    tpc_pending *late = (tpc_pending *)&late;
    CHECK_EQ(tpc_deadline_set(1000000), 0); /* 1 ms */
    int rc = tpc_fdatasync_bounded(fd, &late);
    if (rc == 0 && !late) { /* the filesystem synced it within 1 ms (tmpfs): nothing to bound */
        *synced_in_time = true;
    } else {
        CHECK_EQ(rc, -ETIMEDOUT);
        CHECK(late != NULL);
        /* The deadline still holds, unless the sync has ended meanwhile: then its result. */
        int w = tpc_pending_wait(late);
        CHECK_EQ(tpc_deadline_clear(), 0);
        if (w == -ETIMEDOUT) {
            CHECK(tpc_pending_done(late) >= 0);
            CHECK_EQ(tpc_pending_wait(late), 0); /* the sync's own result: it was made */
        } else {
            CHECK_EQ(w, 0);
        }
    }
    tpc_deadline_clear();
    /* Nothing lost: every byte is there. */
    char got[2];
    for (int i = 0; i < DIRTY >> 20; i++) {
        CHECK_EQ(tpc_read(fd, got, 2, ((int64_t)i << 20) + (1 << 19)), 2);
        CHECK(got[0] == 'a' + i % 26 && got[1] == got[0]);
    }
    /* A sync that finishes in time returns at once with its result. */
    late = (tpc_pending *)&late;
    CHECK_EQ(tpc_fsync_bounded(fd, &late), 0);
    CHECK(late == NULL);
    CHECK_EQ(tpc_write_bounded(fd, "ok", 2, 0, &late), 2);
    CHECK(late == NULL);
    tpc_close(fd);
    tpc_unlink(p);
    CHECK_EQ(count_fds(), fds);
    return 0;
}

static void test_bounded_sync_deadline(void **state)
{
    (void)state;
    bool synced_in_time = false;
    run_main(1, bounded_main, &synced_in_time);
    SKIP_IF(synced_in_time, "/var/tmp synced 32 MiB within 1 ms: no deadline to miss");
}

/* A big O_DIRECT write past a 1 ms deadline: the caller learns it at once, the write is made
 * all the same (its count from tpc_pending_wait, its bytes in the file). */
static int bounded_write_main(void *arg)
{
    bool *in_time = arg;
    char p[96];
    snprintf(p, sizeof(p), "/var/tmp/tpc-test-storage-%d-w", (int)getpid());
    int fd = tpc_open(p, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (fd == -EINVAL) { /* no O_DIRECT here */
        *in_time = true;
        return 0;
    }
    CHECK(fd >= 0);
    size_t len = DIRTY / 2;
    char *buf = tpc_alloc_aligned(4096, len);
    CHECK(buf != NULL);
    memset(buf, 'w', len);
    tpc_pending *late;
    tpc_deadline_set(1000000);
    ssize_t n = tpc_write_bounded(fd, buf, len, 0, &late);
    tpc_deadline_clear();
    if (!late) {
        *in_time = true; /* written within 1 ms */
        CHECK_EQ(n, (ssize_t)len);
    } else {
        CHECK_EQ(n, -ETIMEDOUT);
        CHECK_EQ(tpc_pending_wait(late), (ssize_t)len); /* the buffer is ours again */
    }
    memset(buf, 0, 4096);
    CHECK_EQ(tpc_read(fd, buf, 4096, (int64_t)len - 4096), 4096);
    CHECK(buf[0] == 'w' && buf[4095] == 'w');
    free(buf);
    tpc_close(fd);
    tpc_unlink(p);
    return 0;
}

static void test_bounded_write_deadline(void **state)
{
    (void)state;
    bool in_time = false;
    run_main(1, bounded_write_main, &in_time);
    SKIP_IF(in_time, "/var/tmp wrote 16 MiB O_DIRECT within 1 ms (or has no O_DIRECT)");
}

/* Let go or never collected: freed once the operation completes or the shard stops (ASan and
 * valgrind see a leak otherwise); the shard waits for the operation before it stops. */
static int collect_cancelled(void *arg)
{
    tpc_cancel(tpc_self());
    return (int)tpc_pending_wait(arg);
}

static int released_main(void *arg)
{
    (void)arg;
    char p[96], q[96];
    snprintf(p, sizeof(p), "/var/tmp/tpc-test-storage-%d-r", (int)getpid());
    snprintf(q, sizeof(q), "/var/tmp/tpc-test-storage-%d-f", (int)getpid());
    int a = dirty_file(p), b = dirty_file(q);
    tpc_pending *la = NULL, *lb = NULL;
    tpc_deadline_set(1000000);
    int ra = tpc_fdatasync_bounded(a, &la);
    tpc_deadline_set(1000000);
    int rb = tpc_fdatasync_bounded(b, &lb);
    tpc_deadline_clear();
    CHECK(ra == (la ? -ETIMEDOUT : 0) && rb == (lb ? -ETIMEDOUT : 0));
    if (la) { /* once it has ended, even a cancelled fiber collects its result */
        WAIT_UNTIL(tpc_pending_done(la) == 1);
        tpc_fiber *f = NULL;
        int res = -1;
        CHECK_EQ(tpc_spawn(collect_cancelled, la, &f), 0);
        CHECK_EQ(tpc_join(f, &res), 0);
        CHECK_EQ(res, 0);
    }
    CHECK_EQ(tpc_pending_wait(NULL), -EINVAL);
    (void)lb; /* never collected: the shard frees it when it stops */
    tpc_close(a);
    tpc_close(b);
    tpc_unlink(p);
    tpc_unlink(q);
    return 0;
}

static void test_bounded_released_and_forgotten(void **state)
{
    (void)state;
    int fds = count_fds();
    run_main(1, released_main, NULL);
    assert_int_equal(count_fds(), fds);
}

/* A bounded write issued as the stop comes (the shard sees it at its next loop turn) is made
 * on both backends, as io.h says: the caller gets -ECANCELED with the write pending. The epoll
 * backend could not start the helper fiber on a stopping shard: -ESHUTDOWN, nothing written. */
static char at_stop_path[96];

static int write_at_stop_main(void *arg)
{
    (void)arg;
    int fd = tpc_open(at_stop_path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(tpc_shutdown(0), 0);
    tpc_pending *late = NULL;
    ssize_t rc = tpc_write_bounded(fd, "hello", 5, 0, &late);
    CHECK(rc == 5 || (rc == -ECANCELED && late)); /* (the shard frees late when it stops) */
    tpc_close(fd);
    return 0;
}

static void test_bounded_write_at_stop(void **state)
{
    (void)state;
    snprintf(at_stop_path, sizeof(at_stop_path), "/var/tmp/tpc-test-storage-%d-s", (int)getpid());
    tpc_config c = {.shards = 1, .no_signals = true};
    run_config(&c, write_at_stop_main, NULL);
    struct stat st;
    assert_int_equal(stat(at_stop_path, &st), 0);
    assert_int_equal(st.st_size, 5);
    unlink(at_stop_path);
}

/* A bounded write to a pipe nobody reads never completes: the stop cancels it (the runtime
 * waited for it for good), one released and one left to the stop; a file's write at the stop is
 * still made (test_bounded_write_at_stop). */
static int pipe_rfd = -1;

static int endless_main(void *arg)
{
    (void)arg;
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    static char junk[65536];
    while (write(p[1], junk, sizeof(junk)) > 0)
        ;
    CHECK_EQ(fcntl(p[1], F_SETFL, 0), 0); /* full, and blocking again */
    pipe_rfd = p[0];
    for (int i = 0; i < 2; i++) {
        tpc_pending *late = NULL;
        tpc_deadline_set(20 * 1000 * 1000);
        CHECK_EQ(tpc_write_bounded(p[1], junk, 4096, -1, &late), -ETIMEDOUT);
        tpc_deadline_clear();
        CHECK(late != NULL);
        if (i == 0)
            CHECK_EQ(tpc_pending_release(late), 0);
        CHECK_EQ(tpc_pending_done(i == 0 ? NULL : late), i == 0 ? -EINVAL : 0);
    }
    tpc_close(p[1]);
    return 0; /* the runtime stops with both writes waiting for room */
}

static void test_bounded_write_to_a_pipe_nobody_reads(void **state)
{
    (void)state;
    int fds = count_fds();
    alarm(60); /* a stop that waits for good: the process ends (SIGALRM) */
    run_main(1, endless_main, NULL);
    alarm(0);
    close(pipe_rfd);
    assert_int_equal(count_fds(), fds);
}

/* Misuse: a clear error, nothing started. */
static struct {
    tpc_pending *p;
    ssize_t waited;
} busy;

static int busy_waiter(void *arg)
{
    (void)arg;
    busy.waited = tpc_pending_wait(busy.p);
    return 0;
}

static int other_shard(void *arg)
{
    return tpc_pending_done(arg);
}

static int misuse_main(void *arg)
{
    (void)arg;
    char p[96];
    snprintf(p, sizeof(p), "/var/tmp/tpc-test-storage-%d-m", (int)getpid());
    int fd = dirty_file(p);
    tpc_pending *late = (tpc_pending *)&late;
    CHECK_EQ(tpc_fdatasync_bounded(fd, NULL), -EINVAL);
    CHECK_EQ(tpc_write_bounded(fd, NULL, 1, 0, &late), -EFAULT);
    CHECK(late == NULL);
    CHECK_EQ(tpc_write_bounded(fd, "x", 1, -2, &late), -EINVAL);
    CHECK_EQ(tpc_fdatasync_bounded((1 << 30) | 7, &late), -EBADF);
    CHECK_EQ(tpc_pending_wait(NULL), -EINVAL);
    CHECK_EQ(tpc_pending_done(NULL), -EINVAL);
    CHECK_EQ(tpc_pending_release(NULL), 0); /* as every release call */
    tpc_deadline_set(0);                    /* already passed: nothing starts */
    late = (tpc_pending *)&late;
    CHECK_EQ(tpc_fdatasync_bounded(fd, &late), -ETIMEDOUT);
    CHECK(late == NULL);
    tpc_deadline_set(1000000);
    int rc = tpc_fdatasync_bounded(fd, &late);
    tpc_deadline_clear();
    if (late) {
        CHECK_EQ(rc, -ETIMEDOUT);
        int other;
        CHECK_EQ(tpc_call_on(1, other_shard, late, &other), 0);
        CHECK_EQ(other, -EXDEV);
        busy.p = late;
        busy.waited = 1; /* not returned yet */
        tpc_fiber *f;
        CHECK_EQ(tpc_spawn(busy_waiter, NULL, &f), 0);
        tpc_yield(); /* it waits for the sync now, or (slow machine) has its result: late freed */
        bool waiting = busy.waited == 1;
        if (waiting) {
            CHECK_EQ(tpc_pending_wait(late), -EBUSY); /* one waiter at a time */
            CHECK_EQ(tpc_pending_release(late), 0);   /* the waiter is told, then it is gone */
        }
        CHECK_EQ(tpc_join(f, NULL), 0);
        CHECK_EQ(busy.waited, waiting ? -ECANCELED : 0);
    }
    tpc_close(fd);
    tpc_unlink(p);
    return 0;
}

static void test_bounded_misuse(void **state)
{
    (void)state;
    tpc_pending *late = NULL;
    assert_int_equal(tpc_fdatasync_bounded(0, &late), -EPERM);
    assert_int_equal(tpc_pending_done(NULL), -EPERM);
    run_main(2, misuse_main, NULL);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/tpc-test-storage-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffers_two_components),
        cmocka_unit_test(test_register_while_fixed_in_flight),
        cmocka_unit_test(test_full_table),
        cmocka_unit_test(test_registered_files),
        cmocka_unit_test(test_iowq_placement),
        cmocka_unit_test(test_iowq_bad_config),
        cmocka_unit_test(test_bounded_sync_deadline),
        cmocka_unit_test(test_bounded_write_deadline),
        cmocka_unit_test(test_bounded_released_and_forgotten),
        cmocka_unit_test(test_bounded_write_at_stop),
        cmocka_unit_test(test_bounded_write_to_a_pipe_nobody_reads),
        cmocka_unit_test(test_bounded_misuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
