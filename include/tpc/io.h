/* File and descriptor I/O through the shard's io_uring. Every call here suspends the calling
 * fiber until the kernel has finished (so it is for fibers only: elsewhere -EPERM), and returns a
 * byte count or 0 on success, or a negative errno.
 *
 * Cancellation and deadlines: if the fiber is cancelled or its deadline passes while the
 * operation is in flight, the runtime asks the kernel to cancel it and still waits for the
 * operation's final completion, so the kernel never touches your buffer after the call has
 * returned. The call then returns -ECANCELED or -ETIMEDOUT, unless the operation completed
 * anyway, in which case its result is returned (a read that consumed data reports it).
 *
 * Offsets: `offset` is a byte position; -1 means the file's current position (which it then
 * advances), for descriptors that have one. Lengths above 2^31 - 4096 are cut to that, as Linux
 * itself does, and the short count is returned: nothing is lost silently. */
#ifndef TPC_IO_H
#define TPC_IO_H

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "common.h"

/* openat(2): dirfd is AT_FDCWD or a directory descriptor. Returns the new descriptor. */
TPC_EXTERN int tpc_openat(int dirfd, const char *path, int flags, mode_t mode);
TPC_EXTERN int tpc_open(const char *path, int flags, mode_t mode);
/* close(2), at once and from anywhere (a cancelled fiber, a callback, a timer, any thread):
 * clean-up never waits and never fails for the caller's state. Returns 0 or -EBADF. On the
 * epoll backend it also tells the shards that the number may now name another file (the
 * connections of tpc_server_start stay in their shard's epoll set between waits). */
TPC_EXTERN int tpc_close(int fd);

/* One read or write, which may be short; returns the count (0 at end of file). */
TPC_EXTERN ssize_t tpc_read(int fd, void *buf, size_t len, int64_t offset);
TPC_EXTERN ssize_t tpc_write(int fd, const void *buf, size_t len, int64_t offset);
TPC_EXTERN ssize_t tpc_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset);
TPC_EXTERN ssize_t tpc_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset);

/* Loop over short counts until len bytes moved, end of file (read: returns fewer) or an error
 * (returned, with the bytes moved before it lost only if none were: a partial transfer returns
 * its count). With offset -1 they use and advance the current position. -EINTR is retried at
 * once; -EAGAIN (no free SQE in the ring, or a non-blocking descriptor not ready) after a pass
 * through the shard's loop, so that other fibers run and the ring drains; a cancel or the
 * deadline ends the retries (-ECANCELED / -ETIMEDOUT, or the count moved before). On sockets
 * and pipes (offset -1) they are the send-all and receive-exactly-n calls:
 * tpc_write_full(sock, buf, len, -1) returns len once every byte is sent (a write to a socket
 * whose peer closed raises SIGPIPE if the program installed a handler for it, as write(2)
 * does; tpc_send(sock, buf, len, MSG_WAITALL) never does). */
TPC_EXTERN ssize_t tpc_read_full(int fd, void *buf, size_t len, int64_t offset);
TPC_EXTERN ssize_t tpc_write_full(int fd, const void *buf, size_t len, int64_t offset);

/* fsync(2), fdatasync(2). io_uring always runs them on a worker thread, where they cannot be
 * cancelled: past the fiber's deadline they still wait and return their own result (the
 * bounded calls below return at the deadline). */
TPC_EXTERN int tpc_fsync(int fd);
TPC_EXTERN int tpc_fdatasync(int fd);
/* fallocate(2). */
TPC_EXTERN int tpc_fallocate(int fd, int mode, int64_t offset, int64_t len);

struct statx; /* <sys/stat.h> with _GNU_SOURCE defines it */

/* ftruncate(2): through io_uring where the kernel has it (6.9+), else on a helper thread
 * (tpc_blocking). */
TPC_EXTERN int tpc_ftruncate(int fd, int64_t len);

/* statx(2) into *out. */
TPC_EXTERN int tpc_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out);
TPC_EXTERN int tpc_unlink(const char *path);
TPC_EXTERN int tpc_rmdir(const char *path);
TPC_EXTERN int tpc_rename(const char *from, const char *to);
TPC_EXTERN int tpc_mkdir(const char *path, mode_t mode);

/* Waits until fd is ready for `events` (POLLIN, POLLOUT, ...) and returns the events that are
 * ready (POLLERR and POLLHUP included when they happen). For descriptors owned by other
 * libraries. */
TPC_EXTERN int tpc_poll(int fd, short events);

/* The same wait with no fiber: fn(w, result, arg) runs once, on this shard as a callback (it
 * must not suspend), when fd is ready (result: the ready events, > 0), fails (a negative
 * errno), is stopped with tpc_watch_stop (-ECANCELED: unless it became ready first) or when
 * the runtime stops (-ESHUTDOWN: a shard does not leave while its watches wait, and ends them
 * as it stops). A waiting watch costs about 100 bytes and one poll in the ring, so a program
 * can keep many idle descriptors (keep-alive connections between requests) without a fiber's
 * stack on each: fn typically spawns a fiber to handle what arrived. w (in *out, may be NULL)
 * is valid until fn returns. Returns 0; -EBADF (fd < 0), -EINVAL (NULL fn, no events), -ENOMEM,
 * -ESHUTDOWN, -EPERM outside a shard: then fn never runs. fd stays the caller's. */
typedef struct tpc_watch tpc_watch;
typedef void (*tpc_watch_fn)(tpc_watch *w, int result, void *arg);
TPC_EXTERN int tpc_watch_start(int fd, short events, tpc_watch_fn fn, void *arg, tpc_watch **out);
/* Ends a waiting watch: its fn runs with -ECANCELED (or its readiness, if that came first),
 * never within this call; from fn itself, a no-op (it is being told). 0; -EINVAL for NULL;
 * -EXDEV from another shard; -EPERM outside one. */
TPC_EXTERN int tpc_watch_stop(tpc_watch *w);

/* ---- O_DIRECT ---- */

/* The alignment O_DIRECT needs for fd's buffers, offsets and lengths: what the filesystem
 * reports through statx (STATX_DIOALIGN, Linux 6.1+; the larger of its memory and offset
 * alignments), else 4096, which suits every common device. Returns it; -EINVAL if fd cannot do
 * direct I/O: not a regular file or block device (a pipe, socket, directory, character
 * device), or a file whose filesystem refuses O_DIRECT (procfs, sysfs ...: checked by setting
 * O_DIRECT on fd and putting its flags back); or a negative errno from statx. Suspends. */
TPC_EXTERN int tpc_dio_align(int fd);

/* size bytes aligned to `align` (a power of two; 0: 4096), size rounded up to a multiple of it;
 * release with free(). NULL (errno set) when out of memory or align is not a power of two. */
TPC_EXTERN void *tpc_alloc_aligned(size_t align, size_t size);

/* ---- Registered buffers and files ----
 * Each shard's io_uring has a table of registered buffers and one of registered files
 * (tpc_config.registered_slots slots each, made on first use). Independent parts of a program
 * take slots and give them back on their own: registering or giving back one never disturbs
 * the others, nor operations in flight. A slot is named by a handle (an int >= 0), valid on the
 * shard that made it until given back; a handle given back, one of another shard's, and a
 * file handle where a buffer handle goes (or the other way) are refused (-EBADF, or -EINVAL
 * from the fixed calls). Generations come from one counter for the whole process, so a stale
 * or foreign handle could match a slot again only after 65,535 registrations.
 *
 * Registered buffers skip the kernel's page pinning on every operation. tpc_buffer_register
 * registers base..base+len (anonymous or huge-page memory, at most 1 GiB) and returns its
 * handle, or -EINVAL (NULL base, len 0 or above 1 GiB), -ENOSPC (every slot taken), -ENOMEM,
 * -EPERM outside a shard, or the kernel's error (-EOPNOTSUPP for file-backed memory).
 * tpc_buffer_unregister gives it back: 0, -EBADF (not a handle of this shard's), -EBUSY while a
 * fixed operation on it is in flight. tpc_read_fixed / tpc_write_fixed use buffer `buf_handle`,
 * and buf..buf+len must lie inside it (else -EINVAL, also for an unknown handle).
 *
 * Registered files spare the kernel looking the descriptor up (and its reference counting) on
 * every operation. tpc_file_register(fd) returns a handle (>= 2^30, above any descriptor) that
 * tpc_read, tpc_write, tpc_readv, tpc_writev, tpc_read_full, tpc_write_full, tpc_read_fixed,
 * tpc_write_fixed, tpc_fsync, tpc_fdatasync, tpc_fallocate and the bounded calls below take in
 * place of a descriptor (others refuse it: -EBADF). The registration holds its own reference to
 * the open file: closing fd does not end it, tpc_file_unregister does (operations in flight keep
 * the file until they finish). Returns the handle, -EBADF (fd < 0 or a handle), -ENOSPC, -ENOMEM,
 * -EPERM outside a shard, or the kernel's error (-EBADF for a closed fd); tpc_file_unregister 0,
 * -EBADF. */
TPC_EXTERN int tpc_buffer_register(void *base, size_t len);
TPC_EXTERN int tpc_buffer_unregister(int buf_handle);
TPC_EXTERN ssize_t tpc_read_fixed(int fd, void *buf, size_t len, int64_t offset, int buf_handle);
TPC_EXTERN ssize_t tpc_write_fixed(int fd, const void *buf, size_t len, int64_t offset,
                                   int buf_handle);
TPC_EXTERN int tpc_file_register(int fd);
TPC_EXTERN int tpc_file_unregister(int file_handle);

/* ---- Bounded durable operations ----
 * The kernel cannot cancel an operation that one of io_uring's workers has started (fsync and
 * fdatasync always; O_DIRECT writes that extend a file on ext4), nor an O_DIRECT write whose
 * data went to the device. tpc_write / tpc_fdatasync then wait for it past the fiber's deadline
 * and return its own result. These calls return at the deadline instead:
 *
 * They wait until the operation completes (its result returned, *late set to NULL) or the
 * fiber is cancelled or its deadline passes: then they return -ECANCELED / -ETIMEDOUT and store
 * in *late the operation, which goes on in the kernel (it is not cancelled: a commit that was
 * late is still made). Collect it with tpc_pending_wait, which waits (with the fiber's deadline
 * again: -ETIMEDOUT leaves it pending), returns the operation's result and frees it; or let it
 * go with tpc_pending_release (freed when it completes, its result unseen). A write's buffer
 * must stay untouched until the operation has completed (tpc_pending_done > 0, or
 * tpc_pending_wait returned its result). Records never collected are freed when the shard
 * stops, which waits for their operations first: a stop does not cancel them on either backend
 * (on epoll, one still queued for the blocking pool runs), except a write to a pipe, socket or
 * character device, which may never complete (nobody reads): the stop cancels it. If the fiber is
 * already cancelled or past its deadline, nothing starts (-ECANCELED / -ETIMEDOUT, *late NULL).
 * Other errors as tpc_write / tpc_fdatasync, and -EINVAL for a NULL late. docs/guide.md, "Bounded
 * commits", shows the pattern of a storage engine's commit. */
typedef struct tpc_pending tpc_pending;
TPC_EXTERN ssize_t tpc_write_bounded(int fd, const void *buf, size_t len, int64_t offset,
                                     tpc_pending **late);
TPC_EXTERN int tpc_fsync_bounded(int fd, tpc_pending **late);
TPC_EXTERN int tpc_fdatasync_bounded(int fd, tpc_pending **late);
/* Returns p's result once it completes and frees p; -ECANCELED / -ETIMEDOUT (p kept; also
 * -ECANCELED when p is let go meanwhile), -EBUSY while another fiber waits for p, -EINVAL for
 * NULL, -EXDEV for another shard's p, -EPERM outside a fiber. */
TPC_EXTERN ssize_t tpc_pending_wait(tpc_pending *p);
/* 1 once p's operation has completed, else 0; -EINVAL, -EXDEV, -EPERM as above. Does not
 * suspend. */
TPC_EXTERN int tpc_pending_done(const tpc_pending *p);
/* Lets p go: freed when its operation completes (at once if it has); a fiber waiting for it in
 * tpc_pending_wait returns -ECANCELED. p must not be used again. Returns 0 (also for NULL),
 * -EXDEV, -EPERM as above (p then kept). */
TPC_EXTERN int tpc_pending_release(tpc_pending *p);

/* Writes a one-line description of this shard's io_uring (setup flags and kernel features in
 * use, whether its fd is registered) to buf, like snprintf, and returns the line's length.
 * Returns -EPERM outside a shard, -EINVAL for a NULL buf with a size. */
TPC_EXTERN int tpc_features(char *buf, size_t size);

/* ---- Work that can only block ---- */

/* A function run on a helper thread: it must not call libtpc (it is not on a shard). */
typedef long (*tpc_blocking_fn)(void *arg);

/* Runs fn(arg) on one of the runtime's helper threads (tpc_config.blocking_threads of them,
 * unpinned, started on first use) and suspends the calling fiber until it has returned; stores
 * its return value in *result (if not NULL). For calls that can only block (a library's
 * synchronous API, getaddrinfo) or that burn CPU for long. Jobs run in the order queued; when
 * tpc_config.blocking_queue jobs wait already, the caller waits for room (never dropped). If
 * the caller is cancelled or its deadline passes while its job still waits in the queue, the
 * job is removed and never runs (-ECANCELED / -ETIMEDOUT); once fn has started, the call waits
 * for it to return, since fn cannot be interrupted, and returns 0 with its result. Returns 0,
 * -EINVAL for NULL fn, -ENOMEM or -EAGAIN if no helper thread could start, -EPERM outside a
 * fiber. */
TPC_EXTERN int tpc_blocking(tpc_blocking_fn fn, void *arg, long *result);

#endif
