/* Kernel and liburing differences, in one place: numbers newer than the headers this builds
 * against (kernel ABI, stable), and the one liburing internal the shard loop has to touch.
 * Included by core/internal.h. Never installed. */
#ifndef TPC_CORE_COMPAT_H
#define TPC_CORE_COMPAT_H

#include <liburing.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

/* The CPU-time clock of thread `tid` of this process (the kernel's encoding, which glibc's
 * pthread_getcpuclockid also uses): readable from another thread by id alone. */
#define TPC__THREAD_CPUCLOCK(tid) ((clockid_t)((~(unsigned)(tid) << 3) | 6))

/* IORING_OP_FTRUNCATE (Linux 6.9). */
#define TPC__OP_FTRUNCATE 55

/* IORING_FEAT_MIN_TIMEOUT (Linux 6.12): io_uring_getevents_arg's `pad` became the minimum
 * wait, in microseconds. */
#define TPC__FEAT_MIN_TIMEOUT (1U << 15)
/* Not a kernel feature bit: the byte limit of a multishot receive (IORING_RECV_MSHOT_LIM, Linux
 * 6.16), which no feature flag announces; only fault injection's hidden-feature mask uses it. */
#define TPC__FEAT_RECV_LIMIT (1U << 31)
/* IORING_FEAT_NO_IOWAIT and IORING_ENTER_NO_IOWAIT (Linux 6.15): a wait in io_uring_enter that
 * the kernel does not count as I/O wait (it does, since 6.5, while any operation is out). */
#define TPC__FEAT_NO_IOWAIT  (1U << 17)
#define TPC__ENTER_NO_IOWAIT (1U << 7)
struct tpc__getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;
};

/* MADV_GUARD_INSTALL (Linux 6.13): guard pages that do not split a mapping. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* Publishes the SQEs queued in ring to the kernel as io_uring_submit would, without entering
 * it, and returns how many the kernel has not consumed yet: for an io_uring_enter of the
 * shard's own (liburing 2.3 has no call that passes a minimum wait). Touches liburing's
 * private sqe_head/sqe_tail. */
static inline unsigned tpc__sq_publish(struct io_uring *ring)
{
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    return tail - IO_URING_READ_ONCE(*sq->khead);
}

/* STATX_DIOALIGN's two fields (Linux 6.1), which glibc's struct statx does not name yet: they
 * follow stx_mnt_id. */
static inline void tpc__statx_dioalign(const struct statx *st, uint32_t *mem, uint32_t *off)
{
    _Static_assert(sizeof(struct statx) == 0x100, "struct statx is the kernel's");
    memcpy(mem, (const char *)st + 0x98, sizeof(*mem));
    memcpy(off, (const char *)st + 0x9c, sizeof(*off));
}

#endif
