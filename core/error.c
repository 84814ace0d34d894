/* One table gives every errno libtpc returns its name and its description. Where libtpc gives
 * an errno a meaning of its own (EPERM, EBUSY, EXDEV, ESHUTDOWN), the kernel's meaning comes
 * first: the same code also comes straight from the kernel (a rename across filesystems is
 * -EXDEV, a send on a shut-down socket -ESHUTDOWN). */
#include <errno.h>
#include <stddef.h>
#include "tpc.h"

#define TPC_ERRNO_MAP(X)                                                                           \
    X(EPERM, "operation not permitted (from libtpc: called outside a shard or a fiber)")           \
    X(ENOENT, "no such file, directory or entry")                                                  \
    X(ESRCH, "no such task")                                                                       \
    X(EINTR, "interrupted")                                                                        \
    X(EIO, "input/output error")                                                                   \
    X(EBADF, "bad file descriptor")                                                                \
    X(EAGAIN, "resource temporarily unavailable (would have to wait)")                             \
    X(ENOMEM, "out of memory")                                                                     \
    X(EACCES, "permission denied")                                                                 \
    X(EFAULT, "bad address")                                                                       \
    X(EBUSY, "resource busy (from libtpc: in use, or a runtime already runs here)")                \
    X(EEXIST, "already exists")                                                                    \
    X(EXDEV, "cross-device link (from libtpc: the object belongs to another shard)")               \
    X(ENODEV, "no such device")                                                                    \
    X(ENOTDIR, "not a directory")                                                                  \
    X(EISDIR, "is a directory")                                                                    \
    X(EINVAL, "invalid argument")                                                                  \
    X(ENFILE, "too many open files in the system")                                                 \
    X(EMFILE, "too many open files")                                                               \
    X(EFBIG, "file too large")                                                                     \
    X(ENOSPC, "no space left on device")                                                           \
    X(ESPIPE, "illegal seek")                                                                      \
    X(EPIPE, "closed (broken pipe)")                                                               \
    X(ERANGE, "result out of range")                                                               \
    X(EDEADLK, "would deadlock")                                                                   \
    X(ENAMETOOLONG, "name too long")                                                               \
    X(ENOSYS, "not implemented by this kernel")                                                    \
    X(ENOTEMPTY, "directory not empty")                                                            \
    X(EOVERFLOW, "value too large")                                                                \
    X(ENOTSOCK, "not a socket")                                                                    \
    X(EMSGSIZE, "message too long")                                                                \
    X(EOPNOTSUPP, "operation not supported")                                                       \
    X(EAFNOSUPPORT, "address family not supported")                                                \
    X(EADDRINUSE, "address already in use")                                                        \
    X(EADDRNOTAVAIL, "address not available")                                                      \
    X(ENETUNREACH, "network unreachable")                                                          \
    X(ECONNABORTED, "connection aborted")                                                          \
    X(ECONNRESET, "connection reset by peer")                                                      \
    X(ENOBUFS, "no buffer space available")                                                        \
    X(EISCONN, "already connected")                                                                \
    X(ENOTCONN, "not connected")                                                                   \
    X(ESHUTDOWN, "endpoint shut down (from libtpc: the runtime is shutting down)")                 \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(ECONNREFUSED, "connection refused")                                                          \
    X(EHOSTUNREACH, "host unreachable")                                                            \
    X(EALREADY, "already in progress")                                                             \
    X(EINPROGRESS, "in progress")                                                                  \
    X(ECANCELED, "cancelled")

const char *tpc_strerror(int err)
{
    switch (-err) {
#define X(name, text)                                                                              \
    case name:                                                                                     \
        return text;
        TPC_ERRNO_MAP(X)
#undef X
    case 0:
        return "success";
    default:
        return "unknown error";
    }
}

const char *tpc_err_name(int err)
{
    switch (-err) {
#define X(name, text)                                                                              \
    case name:                                                                                     \
        return #name;
        TPC_ERRNO_MAP(X)
#undef X
    case 0:
        return "OK";
    default:
        return "UNKNOWN";
    }
}
