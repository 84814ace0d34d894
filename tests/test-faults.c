/* Fault injection (built with -Dfault_injection=true): chosen io_uring operations fail with
 * chosen errors or come back short, and the raw calls surface that while the _full helpers
 * retry EAGAIN and EINTR, gather short transfers, and report a partial count or the error. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "helpers.h"
#include "core/internal.h"

#ifdef TPC_FAULT_INJECTION
static char path[64];

static int faults_main(void *arg)
{
    (void)arg;
    int fd = tpc_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    const char *text = "0123456789abcdef";
    char buf[32];

    /* Short writes: the raw call returns the short count, write_full finishes the job. */
    tpc__fault_set(IORING_OP_WRITE, 0, 3, 1);
    CHECK_EQ(tpc_write(fd, text, 16, 0), 3);
    tpc__fault_set(IORING_OP_WRITE, 0, 3, 100);
    CHECK_EQ(tpc_write_full(fd, text, 16, 0), 16);
    tpc__fault_set(IORING_OP_WRITE, 0, 0, 0);

    /* Short reads, likewise. */
    tpc__fault_set(IORING_OP_READ, 0, 1, 100);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read(fd, buf, 16, 0), 1);
    CHECK_EQ(tpc_read_full(fd, buf, 16, 0), 16);
    CHECK(memcmp(buf, text, 16) == 0);
    tpc__fault_set(IORING_OP_READ, 0, 0, 0);

    /* EAGAIN and EINTR: surfaced by the raw call, retried by the helpers. */
    tpc__fault_set(IORING_OP_READ, EAGAIN, 0, 1);
    CHECK_EQ(tpc_read(fd, buf, 16, 0), -EAGAIN);
    tpc__fault_set(IORING_OP_READ, EINTR, 0, 3);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(tpc_read_full(fd, buf, 16, 0), 16);
    CHECK(memcmp(buf, text, 16) == 0);
    tpc__fault_set(IORING_OP_WRITE, EAGAIN, 0, 2);
    CHECK_EQ(tpc_write_full(fd, text, 16, 16), 16);

    /* ENOSPC: nothing written is an error; after a partial write, the count. */
    tpc__fault_set(IORING_OP_WRITE, ENOSPC, 0, 1);
    CHECK_EQ(tpc_write(fd, text, 16, 0), -ENOSPC);
    tpc__fault_set(IORING_OP_WRITE, ENOSPC, 0, 1);
    CHECK_EQ(tpc_write_full(fd, text, 16, 0), -ENOSPC);
    tpc__fault_set(IORING_OP_WRITE, 0, 5, 1); /* 5 bytes go, then the disk is full */
    CHECK_EQ(tpc_write(fd, text, 16, 32), 5);
    tpc__fault_set(IORING_OP_WRITE, ENOSPC, 0, 1);
    CHECK_EQ(tpc_write_full(fd, text + 5, 11, 37), -ENOSPC);

    /* ENOMEM from open, EIO from fsync: surfaced as they are. */
    tpc__fault_set(IORING_OP_OPENAT, ENOMEM, 0, 1);
    CHECK_EQ(tpc_open(path, O_RDONLY, 0), -ENOMEM);
    tpc__fault_set(IORING_OP_FSYNC, EIO, 0, 1);
    CHECK_EQ(tpc_fsync(fd), -EIO);
    CHECK_EQ(tpc_fsync(fd), 0); /* only once */

    /* A kernel without IORING_OP_FTRUNCATE: the call goes through a helper thread. */
    tpc__self->has_ftruncate = false;
    CHECK_EQ(tpc_ftruncate(fd, 7), 0);
    struct statx st;
    CHECK_EQ(tpc_statx(AT_FDCWD, path, 0, STATX_SIZE, &st), 0);
    CHECK_EQ(st.stx_size, 7);
    CHECK_EQ(tpc_ftruncate(-1, 7), -EBADF);
    tpc__self->has_ftruncate = true;

    CHECK_EQ(tpc_close(fd), 0);
    CHECK_EQ(tpc_unlink(path), 0);
    return 0;
}

static void test_faults(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/tpc-test-faults-%d", (int)getpid());
    run_main(1, faults_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void)
{
    puts("fault injection is not built in (meson -Dfault_injection=true): skipped");
    return 77;
}
#endif
