/* File and descriptor I/O through io_uring: a round trip through every call, errors, short
 * reads looped over by the _full helpers, readiness with tpc_poll, the cancellation
 * guarantee (a read that was cancelled or timed out never writes into its buffer afterwards),
 * O_DIRECT and what tpc_dio_align says for descriptors that cannot do it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "helpers.h"
#include "io/internal.h" /* tpc__self->nlive: the shard's live fibers */

static char dir[64];

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* A file "a" in the case's directory holding "hello, io_uring" (written with tpc_write and
 * tpc_writev, then synced), open read-write; its path in path_a. */
static char path_a[96];

static int file_with_text(void)
{
    path_in(path_a, sizeof(path_a), "a");
    int fd = tpc_open(path_a, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(tpc_write(fd, "hello, ", 7, 0), 7);
    struct iovec wv[2] = {{.iov_base = "io_", .iov_len = 3}, {.iov_base = "uring", .iov_len = 5}};
    CHECK_EQ(tpc_writev(fd, wv, 2, 7), 8);
    CHECK_EQ(tpc_fsync(fd), 0);
    CHECK_EQ(tpc_fdatasync(fd), 0);
    return fd;
}

static void file_done(int fd)
{
    CHECK_EQ(tpc_close(fd), 0);
    CHECK_EQ(tpc_unlink(path_a), 0);
}

/* What tpc_write and tpc_writev wrote, tpc_read and tpc_readv read back; then end of file. */
static int read_write_main(void *arg)
{
    (void)arg;
    int fd = file_with_text();
    char buf[32];
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read(fd, buf, sizeof(buf), 0), 15);
    CHECK(memcmp(buf, "hello, io_uring", 15) == 0);
    char x[5], y[10];
    memset(x, 0, sizeof(x));
    memset(y, 0, sizeof(y));
    struct iovec rv[2] = {{.iov_base = x, .iov_len = 5}, {.iov_base = y, .iov_len = 10}};
    CHECK_EQ(tpc_readv(fd, rv, 2, 2), 13);
    CHECK(memcmp(x, "llo, ", 5) == 0 && memcmp(y, "io_uring", 8) == 0);
    CHECK_EQ(tpc_read(fd, buf, sizeof(buf), 15), 0); /* end of file */
    file_done(fd);
    return 0;
}

static void test_read_write_round_trip(void **state)
{
    (void)state;
    char c;
    assert_int_equal(tpc_read(0, &c, 1, 0), -EPERM);
    run_main(1, read_write_main, NULL);
}

/* The current position (offset -1) moves with each call. */
static int position_main(void *arg)
{
    (void)arg;
    int fd = file_with_text();
    char buf[32];
    int fd2 = tpc_open(path_a, O_RDONLY, 0);
    CHECK(fd2 >= 0);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read(fd2, buf, 5, -1), 5);
    CHECK_EQ(tpc_read(fd2, buf + 5, 5, -1), 5);
    CHECK(memcmp(buf, "hello, io_", 10) == 0);
    CHECK_EQ(tpc_close(fd2), 0);
    file_done(fd);
    return 0;
}

static void test_current_position(void **state)
{
    (void)state;
    run_main(1, position_main, NULL);
}

/* tpc_fallocate and tpc_ftruncate set the size tpc_statx reports. */
static int size_main(void *arg)
{
    (void)arg;
    int fd = file_with_text();
    CHECK_EQ(tpc_fallocate(fd, 0, 0, 1 << 20), 0);
    struct statx st;
    CHECK_EQ(tpc_statx(AT_FDCWD, path_a, 0, STATX_SIZE | STATX_MODE, &st), 0);
    CHECK_EQ(st.stx_size, 1 << 20);
    CHECK_EQ(st.stx_mode & 0777, 0600);
    CHECK_EQ(tpc_ftruncate(fd, 12345), 0);
    CHECK_EQ(tpc_statx(AT_FDCWD, path_a, 0, STATX_SIZE, &st), 0);
    CHECK_EQ(st.stx_size, 12345);
    CHECK_EQ(tpc_ftruncate(fd, -1), -EINVAL);
    CHECK_EQ(tpc_ftruncate(-1, 0), -EBADF);
    file_done(fd);
    return 0;
}

static void test_fallocate_truncate_statx(void **state)
{
    (void)state;
    run_main(1, size_main, NULL);
}

/* Rename, mkdir (twice: -EEXIST), rmdir, unlink (twice: -ENOENT). */
static int names_main(void *arg)
{
    (void)arg;
    char b[96], sub[96];
    path_in(b, sizeof(b), "b");
    path_in(sub, sizeof(sub), "sub");
    int fd = file_with_text();
    CHECK_EQ(tpc_close(fd), 0);
    struct statx st;
    CHECK_EQ(tpc_rename(path_a, b), 0);
    CHECK_EQ(tpc_statx(AT_FDCWD, path_a, 0, STATX_SIZE, &st), -ENOENT);
    CHECK_EQ(tpc_mkdir(sub, 0700), 0);
    CHECK_EQ(tpc_mkdir(sub, 0700), -EEXIST);
    CHECK_EQ(tpc_rmdir(sub), 0);
    CHECK_EQ(tpc_unlink(b), 0);
    CHECK_EQ(tpc_unlink(b), -ENOENT);
    return 0;
}

static void test_rename_mkdir_rmdir_unlink(void **state)
{
    (void)state;
    run_main(1, names_main, NULL);
}

/* Errors come back as negative errno, and bad arguments are refused before the kernel. */
static int errors_main(void *arg)
{
    (void)arg;
    char a[96], buf[32];
    path_in(a, sizeof(a), "a");
    CHECK_EQ(tpc_open(a, O_RDONLY, 0), -ENOENT);
    CHECK_EQ(tpc_read(-1, buf, 1, 0), -EBADF);
    CHECK_EQ(tpc_close(-1), -EBADF);
    CHECK_EQ(tpc_read(0, NULL, 4, 0), -EFAULT);
    CHECK_EQ(tpc_read(0, buf, 4, -2), -EINVAL);
    CHECK_EQ(tpc_readv(0, NULL, 1, 0), -EINVAL);
    CHECK_EQ(tpc_open(NULL, O_RDONLY, 0), -EINVAL);
    CHECK_EQ(tpc_fallocate(0, 0, -1, 10), -EINVAL);
    CHECK_EQ(tpc_poll(-1, POLLIN), -EBADF);
    return 0;
}

static void test_errors_and_bad_arguments(void **state)
{
    (void)state;
    run_main(1, errors_main, NULL);
}

/* tpc_features: one line naming io_uring's features, truncated like snprintf. */
static int features_main(void *arg)
{
    (void)arg;
    char line[256];
    int n = tpc_features(line, sizeof(line));
    CHECK(n > 0 && (size_t)n == strlen(line));
    if (on_epoll()) {
        CHECK(strncmp(line, "epoll", 5) == 0);
    } else {
        CHECK(strstr(line, "io_uring") != NULL);
        CHECK(strstr(line, "NODROP") != NULL); /* every kernel this runs on has it */
    }
    CHECK_EQ(tpc_features(line, 4), n); /* truncated like snprintf, same length */
    CHECK_EQ(strlen(line), 3);
    CHECK_EQ(tpc_features(NULL, 1), -EINVAL);
    return 0;
}

static void test_features(void **state)
{
    (void)state;
    char c;
    assert_int_equal(tpc_features(&c, 1), -EPERM);
    run_main(1, features_main, NULL);
}

static void not_in_fiber(void *arg)
{
    char c;
    CHECK_EQ(tpc_read(*(int *)arg, &c, 1, -1), -EPERM);
}

/* ---- Pipes: short reads, the _full helpers, readiness, cancellation. ---- */
static int pfd[2];

static int reader_full(void *arg)
{
    char *buf = arg;
    return (int)tpc_read_full(pfd[0], buf, 12, -1);
}

static int read_one(void *arg)
{
    return (int)tpc_read(pfd[0], arg, 8, -1);
}

static int read_with_deadline(void *arg)
{
    tpc_deadline_set(2 * 1000 * 1000);
    int rc = read_one(arg);
    tpc_deadline_clear();
    return rc;
}

static atomic_int waiting;
static int flag_then_read(void *arg)
{
    atomic_store(&waiting, 1);
    return read_one(arg);
}

/* read_full gathers three short writes into one buffer. */
static int read_full_main(void *arg)
{
    (void)arg;
    CHECK_EQ(pipe(pfd), 0);
    char buf[16];
    memset(buf, 0, sizeof(buf));
    tpc_fiber *f;
    int res = 0;
    CHECK_EQ(tpc_spawn(reader_full, buf, &f), 0);
    for (int i = 0; i < 3; i++) {
        tpc_yield();
        CHECK_EQ(tpc_write(pfd[1], "abcd", 4, -1), 4);
    }
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, 12);
    CHECK(memcmp(buf, "abcdabcdabcd", 12) == 0);
    close(pfd[0]), close(pfd[1]);
    return 0;
}

static void test_read_full_gathers(void **state)
{
    (void)state;
    run_main(1, read_full_main, NULL);
}

/* Readiness. */
static int readiness_main(void *arg)
{
    (void)arg;
    CHECK_EQ(pipe(pfd), 0);
    char buf[16];
    CHECK_EQ(tpc_write_full(pfd[1], "z", 1, -1), 1);
    CHECK(tpc_poll(pfd[0], POLLIN) & POLLIN);
    CHECK_EQ(tpc_read(pfd[0], buf, 1, -1), 1);
    close(pfd[0]), close(pfd[1]);
    return 0;
}

static void test_poll_readiness(void **state)
{
    (void)state;
    run_main(1, readiness_main, NULL);
}

/* Readiness with no fiber (tpc_watch): told once, as a callback, with the events; a stop tells
 * -ECANCELED never within the call; many watches hold no fiber; misuse; the runtime's stop. */
struct watched {
    int calls, res;
    bool in_fiber;
};

static void on_ready(tpc_watch *w, int res, void *arg)
{
    (void)w;
    struct watched *x = arg;
    x->calls++;
    x->res = res;
    x->in_fiber = tpc_self() != NULL;
}

/* fn stops its own watch, as a handler that is done with it might: a no-op (w is told). */
static int self_stop_rc = 1;
static void on_ready_stop(tpc_watch *w, int res, void *arg)
{
    on_ready(w, res, arg);
    self_stop_rc = tpc_watch_stop(w);
}

static bool told_all(const struct watched *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!x[i].calls)
            return false;
    return true;
}

static int watch_main(void *arg)
{
    (void)arg;
    int p[2];
    CHECK_EQ(pipe(p), 0);
    int live = (int)tpc__self->nlive;
    struct watched x = {0};
    tpc_watch *w = NULL;
    CHECK_EQ(tpc_watch_start(p[0], POLLIN, on_ready, &x, &w), 0);
    CHECK(w != NULL);
    loop_turns(3);
    CHECK_EQ(x.calls, 0); /* nothing to read yet */
    CHECK_EQ((int)tpc__self->nlive, live);
    CHECK_EQ(write(p[1], "a", 1), 1);
    WAIT_UNTIL(x.calls > 0);
    CHECK_EQ(x.calls, 1);
    CHECK(x.res & POLLIN);
    CHECK(!x.in_fiber); /* a callback */
    /* Stopped: -ECANCELED, told later, once. */
    struct watched y = {0};
    int q[2];
    CHECK_EQ(pipe(q), 0);
    CHECK_EQ(tpc_watch_start(q[0], POLLIN, on_ready, &y, &w), 0);
    loop_turns(1);
    CHECK_EQ(tpc_watch_stop(w), 0);
    CHECK_EQ(y.calls, 0); /* never within the call */
    WAIT_UNTIL(y.calls > 0);
    loop_turns(2);
    CHECK_EQ(y.calls, 1);
    CHECK_EQ(y.res, -ECANCELED);
    /* A thousand waiting watches: no fiber each; all ready at once. */
    enum { N = 1000 };
    static struct watched many[N];
    memset(many, 0, sizeof(many));
    for (int i = 0; i < N; i++)
        CHECK_EQ(tpc_watch_start(q[0], POLLIN, on_ready, &many[i], NULL), 0);
    CHECK_EQ((int)tpc__self->nlive, live);
    CHECK_EQ(write(q[1], "b", 1), 1);
    WAIT_UNTIL(told_all(many, N));
    for (int i = 0; i < N; i++)
        CHECK(many[i].calls == 1 && (many[i].res & POLLIN));
    /* A hang-up is a readiness too. */
    struct watched z = {0};
    char c;
    CHECK_EQ(read(q[0], &c, 1), 1);
    CHECK_EQ(tpc_watch_start(q[0], POLLIN, on_ready, &z, NULL), 0);
    close(q[1]);
    WAIT_UNTIL(z.calls > 0);
    CHECK(z.res & POLLHUP);
    /* fn stopping its own watch: 0, and nothing more (it was freed under a timer once). */
    struct watched v = {0};
    CHECK_EQ(tpc_watch_start(p[0], POLLIN, on_ready_stop, &v, NULL), 0);
    WAIT_UNTIL(v.calls > 0); /* (p[0] still holds the byte written above) */
    loop_turns(3);
    CHECK_EQ(v.calls, 1);
    CHECK_EQ(self_stop_rc, 0);
    /* Misuse: nothing started, fn never runs. */
    CHECK_EQ(tpc_watch_start(-1, POLLIN, on_ready, &z, NULL), -EBADF);
    CHECK_EQ(tpc_watch_start(p[0], POLLIN, NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(tpc_watch_start(p[0], 0, on_ready, &z, NULL), -EINVAL);
    CHECK_EQ(tpc_watch_stop(NULL), -EINVAL);
    loop_turns(2);
    CHECK_EQ(z.calls, 1);
    close(p[0]), close(p[1]), close(q[0]);
    return 0;
}

static void test_watch(void **state)
{
    (void)state;
    assert_int_equal(tpc_watch_start(0, POLLIN, on_ready, NULL, NULL), -EPERM);
    run_main(1, watch_main, NULL);
}

/* A watch still waiting when the runtime stops: told -ESHUTDOWN, and the runtime ends. */
static struct watched at_stop;
static int watch_stop_main(void *arg)
{
    (void)arg;
    CHECK_EQ(pipe(pfd), 0);
    at_stop = (struct watched){0};
    CHECK_EQ(tpc_watch_start(pfd[0], POLLIN, on_ready, &at_stop, NULL), 0);
    return 0;
}

static void test_watch_at_shutdown(void **state)
{
    (void)state;
    run_main(1, watch_stop_main, NULL);
    assert_int_equal(at_stop.calls, 1);
    assert_int_equal(at_stop.res, -ESHUTDOWN);
    close(pfd[0]), close(pfd[1]);
}

/* A cancelled read: the pipe written afterwards leaves its buffer untouched, and the data is
 * still there for the next reader. */
static int cancelled_read_main(void *arg)
{
    (void)arg;
    CHECK_EQ(pipe(pfd), 0);
    tpc_fiber *f;
    int res = 0;
    char guard[8], buf[16];
    memset(guard, '.', sizeof(guard));
    atomic_store(&waiting, 0);
    CHECK_EQ(tpc_spawn(flag_then_read, guard, &f), 0);
    WAIT_UNTIL(atomic_load(&waiting));
    tpc_yield(); /* it is suspended in the read now */
    CHECK_EQ(tpc_cancel(f), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, -ECANCELED);
    CHECK_EQ(tpc_write(pfd[1], "DATA", 4, -1), 4);
    CHECK(tpc_poll(pfd[0], POLLIN) & POLLIN);
    CHECK(memcmp(guard, "........", 8) == 0);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read(pfd[0], buf, sizeof(buf), -1), 4); /* still there */
    CHECK(memcmp(buf, "DATA", 4) == 0);
    close(pfd[0]), close(pfd[1]);
    return 0;
}

static void test_cancelled_read_writes_nothing(void **state)
{
    (void)state;
    run_main(1, cancelled_read_main, NULL);
}

/* A read whose deadline passes, likewise; one with data waiting completes at once. */
static int deadline_read_main(void *arg)
{
    (void)arg;
    CHECK_EQ(pipe(pfd), 0);
    tpc_fiber *f;
    int res = 0;
    char guard2[8], buf[16];
    CHECK_EQ(tpc_write(pfd[1], "DATA", 4, -1), 4);
    memset(guard2, '.', sizeof(guard2));
    CHECK_EQ(tpc_spawn(read_with_deadline, guard2, &f), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, 4); /* the data written above was there: the read completed at once */
    CHECK(memcmp(guard2, "DATA", 4) == 0);
    memset(guard2, '.', sizeof(guard2));
    CHECK_EQ(tpc_spawn(read_with_deadline, guard2, &f), 0);
    CHECK_EQ(tpc_join(f, &res), 0);
    CHECK_EQ(res, -ETIMEDOUT);
    CHECK_EQ(tpc_write(pfd[1], "MORE", 4, -1), 4);
    CHECK(tpc_poll(pfd[0], POLLIN) & POLLIN);
    CHECK(memcmp(guard2, "........", 8) == 0);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read(pfd[0], buf, sizeof(buf), -1), 4);
    CHECK(memcmp(buf, "MORE", 4) == 0);
    close(pfd[0]), close(pfd[1]);
    return 0;
}

static void test_timed_out_read_writes_nothing(void **state)
{
    (void)state;
    run_main(1, deadline_read_main, NULL);
}

/* A writer into a pipe nobody reads gets EPIPE, not a signal; outside a fiber, -EPERM. */
static int epipe_main(void *arg)
{
    (void)arg;
    CHECK_EQ(pipe(pfd), 0);
    close(pfd[0]);
    CHECK_EQ(tpc_write(pfd[1], "x", 1, -1), -EPIPE);
    CHECK_EQ(tpc_write_full(pfd[1], "x", 1, -1), -EPIPE);
    CHECK_EQ(tpc_defer(not_in_fiber, &pfd[1]), 0);
    tpc_yield();
    close(pfd[1]);
    return 0;
}

static void test_write_to_closed_pipe(void **state)
{
    (void)state;
    run_main(1, epipe_main, NULL);
}

/* ---- O_DIRECT and registered buffers (on /var/tmp: /tmp may be a tmpfs). ---- */
static int set_true(void *arg)
{
    *(bool *)arg = true;
    return 0;
}

/* A read of a file whose first half is cached and second half not returns it whole, as on
 * io_uring (the epoll backend returned the cached half: RWF_NOWAIT's short count). */
static int part_cached_main(void *arg)
{
    (void)arg;
    char path[64];
    snprintf(path, sizeof(path), "/var/tmp/tpc-test-cached-%d", (int)getpid());
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    enum { SZ = 8 << 20 };
    char *a = malloc(SZ), *b = malloc(SZ);
    CHECK(a && b);
    for (size_t i = 0; i < SZ; i++)
        a[i] = (char)(i * 31 + (i >> 12));
    CHECK_EQ(tpc_write_full(fd, a, SZ, 0), SZ);
    CHECK_EQ(tpc_fdatasync(fd), 0);
    CHECK_EQ(posix_fadvise(fd, SZ / 2, SZ / 2, POSIX_FADV_DONTNEED), 0);
    memset(b, 0, SZ);
    CHECK_EQ(tpc_read(fd, b, SZ, 0), SZ);
    CHECK(!memcmp(a, b, SZ));
    free(a);
    free(b);
    CHECK_EQ(tpc_close(fd), 0);
    CHECK_EQ(tpc_unlink(path), 0);
    return 0;
}

static void test_read_of_a_part_cached_file(void **state)
{
    (void)state;
    run_main(1, part_cached_main, NULL);
}

static int direct_main(void *arg)
{
    (void)arg;
    char path[64];
    snprintf(path, sizeof(path), "/var/tmp/tpc-test-direct-%d", (int)getpid());
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (fd == -EINVAL) { /* no O_DIRECT on this filesystem */
        fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        CHECK_EQ(tpc_dio_align(fd), -EINVAL);
        tpc_close(fd);
        tpc_unlink(path);
        return 0;
    }
    CHECK(fd >= 0);
    int align = tpc_dio_align(fd);
    CHECK(align >= 512 && (align & (align - 1)) == 0);
    char *a = tpc_alloc_aligned((size_t)align, 8192), *b = tpc_alloc_aligned((size_t)align, 8192);
    CHECK(a && b && (uintptr_t)a % (uintptr_t)align == 0 && (uintptr_t)b % (uintptr_t)align == 0);
    for (int i = 0; i < 8192; i++)
        a[i] = (char)(i * 7);
    memset(b, 0, 8192);
    CHECK_EQ(tpc_write(fd, a, 8192, 0), 8192);
    /* The read waits for the device off the shard: a fiber queued before it runs meanwhile (the
     * epoll backend read on the shard, RWF_NOWAIT being no use with O_DIRECT: nothing ran). */
    static bool ran;
    ran = false;
    CHECK_EQ(tpc_spawn(set_true, &ran, NULL), 0);
    CHECK_EQ(tpc_read(fd, b, 8192, 0), 8192);
    CHECK(ran);
    CHECK(memcmp(a, b, 8192) == 0);
    CHECK_EQ(tpc_read(fd, b + 1, 4096, 0), -EINVAL); /* misaligned: the kernel says so */

    /* Registered buffers (tests/test-storage.c has the table's sharing). */
    CHECK_EQ(tpc_read_fixed(fd, b, 4096, 0, 0), -EINVAL); /* none registered yet */
    int ha = tpc_buffer_register(a, 8192), hb = tpc_buffer_register(b, 8192);
    CHECK(ha >= 0 && hb >= 0 && ha != hb);
    memset(b, 0, 8192);
    for (int i = 0; i < 4096; i++)
        a[i] = (char)(i * 13);
    CHECK_EQ(tpc_write_fixed(fd, a, 4096, 4096, ha), 4096);
    CHECK_EQ(tpc_read_fixed(fd, b, 4096, 4096, hb), 4096);
    CHECK(memcmp(a, b, 4096) == 0);
    CHECK_EQ(tpc_read_fixed(fd, b, 4096, 0, ha), -EINVAL);        /* b is not in buffer a */
    CHECK_EQ(tpc_read_fixed(fd, b + 4096, 8192, 0, hb), -EINVAL); /* runs past buffer b */
    CHECK_EQ(tpc_read_fixed(fd, b, 4096, 0, -1), -EINVAL);        /* no such handle */
    CHECK_EQ(tpc_read_fixed(fd, b, 4096, -2, hb), -EINVAL);       /* bad offset */
    CHECK_EQ(tpc_buffer_register(NULL, 4096), -EINVAL);
    CHECK_EQ(tpc_buffer_register(a, 0), -EINVAL);
    CHECK_EQ(tpc_buffer_unregister(hb), 0);
    CHECK_EQ(tpc_buffer_unregister(hb), -EBADF);
    CHECK_EQ(tpc_read_fixed(fd, b, 4096, 0, hb), -EINVAL); /* given back */
    CHECK_EQ(tpc_write_fixed(fd, a, 4096, 0, ha), 4096);   /* a is still there */
    CHECK_EQ(tpc_buffer_unregister(ha), 0);
    free(a);
    free(b);
    CHECK_EQ(tpc_close(fd), 0);
    CHECK_EQ(tpc_unlink(path), 0);

    errno = 0;
    CHECK(tpc_alloc_aligned(3, 10) == NULL && errno == EINVAL);
    void *d = tpc_alloc_aligned(0, 10);
    CHECK(d && (uintptr_t)d % 4096 == 0);
    free(d);
    return 0;
}

static void test_direct(void **state)
{
    (void)state;
    assert_int_equal(tpc_buffer_register(NULL, 0), -EPERM);
    assert_int_equal(tpc_buffer_unregister(0), -EPERM);
    assert_int_equal(tpc_file_register(0), -EPERM);
    run_main(1, direct_main, NULL);
}

/* tpc_dio_align for a file: what open(O_DIRECT) on it says, -EINVAL or an alignment. */
static void dio_like_open(const char *path)
{
    int fd = tpc_open(path, O_RDONLY, 0);
    if (fd < 0)
        return; /* not there on this system */
    int direct = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    int align = tpc_dio_align(fd);
    if (direct >= 0) {
        CHECK(align >= 512 && (align & (align - 1)) == 0);
        close(direct);
    } else {
        CHECK_EQ(align, -EINVAL);
    }
    tpc_close(fd);
}

/* Descriptors that cannot do direct I/O get -EINVAL, not a made-up 4096: pipes, sockets,
 * directories, character devices, procfs and sysfs files. A tmpfs file gets what
 * open(O_DIRECT) says there (tmpfs takes it since Linux 6.6 without reporting an alignment). */
static int dio_kinds_main(void *arg)
{
    (void)arg;
    int p[2], sv[2];
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    CHECK_EQ(tpc_dio_align(p[0]), -EINVAL);
    CHECK_EQ(tpc_dio_align(p[1]), -EINVAL);
    CHECK_EQ(tpc_dio_align(sv[0]), -EINVAL);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
    int d = tpc_open("/var/tmp", O_RDONLY | O_DIRECTORY, 0);
    CHECK(d >= 0);
    CHECK_EQ(tpc_dio_align(d), -EINVAL);
    tpc_close(d);
    int null = tpc_open("/dev/null", O_RDWR, 0);
    CHECK(null >= 0);
    CHECK_EQ(tpc_dio_align(null), -EINVAL);
    tpc_close(null);
    int proc = tpc_open("/proc/self/status", O_RDONLY, 0);
    CHECK(proc >= 0);
    CHECK_EQ(tpc_dio_align(proc), -EINVAL);
    CHECK_EQ(fcntl(proc, F_GETFL) & O_DIRECT, 0); /* the probe left its flags alone */
    tpc_close(proc);
    dio_like_open("/sys/kernel/mm/transparent_hugepage/enabled");
    char path[128];
    snprintf(path, sizeof(path), "/dev/shm/tpc-test-dio-%d", (int)getpid());
    int shm = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (shm >= 0) {
        tpc_close(shm);
        dio_like_open(path);
        CHECK_EQ(tpc_unlink(path), 0);
    }
    path_in(path, sizeof(path), "plain");
    int f = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(f >= 0);
    tpc_close(f);
    dio_like_open(path); /* /tmp: a disk or a tmpfs */
    CHECK_EQ(tpc_unlink(path), 0);
    CHECK_EQ(tpc_dio_align(-1), -EBADF);
    return 0;
}

static void test_dio_align_kinds(void **state)
{
    (void)state;
    run_main(1, dio_kinds_main, NULL);
}

/* ---- More completions at once than the completion queue holds: none is lost. ---- */
enum { OVERFLOW_PIPES = 300 };
static int ovp[OVERFLOW_PIPES][2];
static atomic_int ov_done;

static int ov_reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    char c = 0;
    ssize_t n = tpc_read(ovp[i][0], &c, 1, -1);
    CHECK_EQ(n, 1);
    CHECK_EQ(c, (char)('a' + i % 26));
    atomic_fetch_add(&ov_done, 1);
    return 0;
}

static int overflow_main(void *arg)
{
    (void)arg;
    atomic_store(&ov_done, 0);
    tpc_fiber *f[OVERFLOW_PIPES];
    for (int i = 0; i < OVERFLOW_PIPES; i++) {
        CHECK_EQ(pipe(ovp[i]), 0);
        CHECK_EQ(tpc_spawn(ov_reader, (void *)(intptr_t)i, &f[i]), 0);
    }
    tpc_yield(); /* all 300 reads are in flight (through an SQ of 8 entries) */
    tpc_yield();
    for (int i = 0; i < OVERFLOW_PIPES; i++) { /* 300 completions become ready at once */
        char c = (char)('a' + i % 26);
        CHECK_EQ(write(ovp[i][1], &c, 1), 1);
    }
    for (int i = 0; i < OVERFLOW_PIPES; i++) {
        CHECK_EQ(tpc_join(f[i], NULL), 0);
        close(ovp[i][0]);
        close(ovp[i][1]);
    }
    CHECK_EQ(atomic_load(&ov_done), OVERFLOW_PIPES);
    tpc_shard_stats st;
    CHECK_EQ(tpc_stats(0, &st), 0);
    if (!on_epoll()) /* 300 at once through a completion queue of 32: counted */
        CHECK(st.cq_overflows > 0);
    else
        CHECK_EQ(st.cq_overflows, 0);
    return 0;
}

static void test_cq_overflow(void **state)
{
    (void)state;
    tpc_config c = {.shards = 1, .ring_entries = 8}; /* a completion queue of 32 */
    run_config(&c, overflow_main, NULL);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/tpc-test-file-XXXXXX");
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
        cmocka_unit_test(test_read_write_round_trip),
        cmocka_unit_test(test_current_position),
        cmocka_unit_test(test_fallocate_truncate_statx),
        cmocka_unit_test(test_rename_mkdir_rmdir_unlink),
        cmocka_unit_test(test_errors_and_bad_arguments),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_read_full_gathers),
        cmocka_unit_test(test_poll_readiness),
        cmocka_unit_test(test_cancelled_read_writes_nothing),
        cmocka_unit_test(test_timed_out_read_writes_nothing),
        cmocka_unit_test(test_write_to_closed_pipe),
        cmocka_unit_test(test_cq_overflow),
        cmocka_unit_test(test_direct),
        cmocka_unit_test(test_dio_align_kinds),
        cmocka_unit_test(test_read_of_a_part_cached_file),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_watch_at_shutdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
