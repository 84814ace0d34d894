/* Sockets (include/tpc/net.h): address parsing and formatting, and stream sockets whose waits
 * go through the shard's io_uring (tpc__io_run, core/uring.c). A new opcode needs its case in
 * core/epoll.c too (the backend without io_uring), or it is -EOPNOTSUPP there. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

/* ---- Addresses ---- */

static int parse_port(const char *s, in_port_t *out)
{
    if (!*s)
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || errno || v > 65535 || *s == '-' || *s == '+')
        return -EINVAL;
    *out = htons((in_port_t)v);
    return 0;
}

int tpc_addr_parse(const char *text, tpc_addr *out)
{
    if (!text || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (!strncmp(text, "unix:", 5)) {
        const char *path = text + 5;
        size_t n = strlen(path);
        if (n == 0 || n >= sizeof(out->un.sun_path))
            return -EINVAL;
        out->un.sun_family = AF_UNIX;
        memcpy(out->un.sun_path, path, n + 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 2];
    const char *port;
    if (text[0] == '[') { /* [v6]:port */
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = 0;
        port = close + 2;
        out->in6.sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) != 1 ||
            parse_port(port, &out->in6.sin6_port) < 0)
            return -EINVAL;
        out->len = sizeof(out->in6);
        return 0;
    }
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof(host))
        return -EINVAL;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    out->in4.sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &out->in4.sin_addr) != 1 ||
        parse_port(colon + 1, &out->in4.sin_port) < 0)
        return -EINVAL;
    out->len = sizeof(out->in4);
    return 0;
}

int tpc_addr_format(const tpc_addr *a, char *buf, size_t size)
{
    if (!a || (!buf && size))
        return -EINVAL;
    char host[INET6_ADDRSTRLEN];
    switch (a->sa.sa_family) {
    case AF_INET:
        inet_ntop(AF_INET, &a->in4.sin_addr, host, sizeof(host));
        return snprintf(buf, size, "%s:%u", host, ntohs(a->in4.sin_port));
    case AF_INET6:
        inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof(host));
        return snprintf(buf, size, "[%s]:%u", host, ntohs(a->in6.sin6_port));
    case AF_UNIX:
        return snprintf(buf, size, "unix:%s", a->un.sun_path);
    default:
        return -EINVAL;
    }
}

static int sock_name(int fd, tpc_addr *out, bool peer)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->len = sizeof(out->storage);
    int rc = peer ? getpeername(fd, &out->sa, &out->len) : getsockname(fd, &out->sa, &out->len);
    return rc == 0 ? 0 : -errno;
}

int tpc_sock_local(int fd, tpc_addr *out)
{
    return sock_name(fd, out, false);
}

int tpc_sock_peer(int fd, tpc_addr *out)
{
    return sock_name(fd, out, true);
}

/* ---- Stream sockets ---- */

static bool valid(const tpc_addr *a)
{
    return a && a->len > 0 && a->len <= sizeof(a->storage) &&
           (a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6 ||
            a->sa.sa_family == AF_UNIX);
}

int tpc_listen(const tpc_addr *a, int backlog, int flags)
{
    if (!valid(a) || (flags & ~TPC_LISTEN_REUSEPORT))
        return -EINVAL;
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if ((a->sa.sa_family != AF_UNIX &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) ||
        ((flags & TPC_LISTEN_REUSEPORT) &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, &a->sa, a->len) < 0 ||
        listen(fd, backlog > 0 ? backlog : TPC__LISTEN_BACKLOG) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* Whether a socket listens on exactly a's address and port already (in this network namespace,
 * any process): the listeners SO_REUSEPORT would join. Read from /proc/net/tcp[6] (state 0A is
 * LISTEN; addresses as the kernel's words in hex, ports in hex); without /proc, no. Other
 * addresses on the port (0.0.0.0 against 127.0.0.1, or [::] against 0.0.0.0) are left alone:
 * a program may listen on both. */
static bool listened_on(const tpc_addr *a)
{
    bool v4 = a->sa.sa_family == AF_INET;
    unsigned want_port = ntohs(v4 ? a->in4.sin_port : a->in6.sin6_port);
    if (!want_port)
        return false; /* port 0: the kernel picks a free one */
    FILE *f = fopen(v4 ? "/proc/net/tcp" : "/proc/net/tcp6", "re");
    if (!f)
        return false;
    char line[512], addr[40];
    unsigned port, state;
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*s %x", addr, &port, &state) != 3 ||
            state != 0x0A || port != want_port || strlen(addr) != (v4 ? 8u : 32u))
            continue;
        uint32_t word[4];
        for (int i = 0; i < (v4 ? 1 : 4); i++) {
            char part[9];
            memcpy(part, addr + 8 * i, 8);
            part[8] = 0;
            word[i] = (uint32_t)strtoul(part, NULL, 16);
        }
        found = v4 ? word[0] == a->in4.sin_addr.s_addr
                   : !memcmp(word, a->in6.sin6_addr.s6_addr, sizeof(word));
    }
    fclose(f);
    return found;
}

int tpc__listen_all(const tpc_addr *a, int backlog, int *fds, bool share)
{
    struct tpc__shard *self = tpc__self;
    if (!self)
        return -EPERM;
    if (!valid(a) || a->sa.sa_family == AF_UNIX || !fds)
        return -EINVAL;
    if (!share && listened_on(a))
        return -EADDRINUSE; /* (SO_REUSEPORT would join it: another program's, or our own) */
    tpc_addr at = *a;
    unsigned n = self->rt->nshards;
    for (unsigned i = 0; i < n; i++) {
        int fd = tpc_listen(&at, backlog, TPC_LISTEN_REUSEPORT);
        if (fd >= 0 && i == 0) { /* the others take the port the kernel chose for the first */
            int rc = tpc_sock_local(fd, &at);
            if (rc < 0) {
                close(fd);
                fd = rc;
            }
        }
        if (fd < 0) {
            while (i--)
                close(fds[i]);
            return fd;
        }
        fds[i] = fd;
    }
    return 0;
}

int tpc_listen_all(const tpc_addr *a, int backlog, int *fds)
{
    return tpc__listen_all(a, backlog, fds, false);
}

int tpc_accept(int fd, tpc_addr *peer)
{
    TPC__IO_BEGIN(sqe);
    if (peer) {
        memset(peer, 0, sizeof(*peer));
        peer->len = sizeof(peer->storage);
    }
    io_uring_prep_accept(sqe, fd, peer ? &peer->sa : NULL, peer ? &peer->len : NULL, SOCK_CLOEXEC);
    int rc = TPC__IO_END(sqe);
    if (rc >= 0 && peer)
        TPC__KERNEL_WROTE(peer, sizeof(*peer));
    return rc;
}

int tpc_connect(const tpc_addr *a)
{
    TPC__CHECK_SUSPEND();
    if (!valid(a))
        return -EINVAL;
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct tpc__shard *s = tpc__self;
    struct io_uring_sqe *sqe = tpc__sqe(s);
    int rc = -EAGAIN;
    if (sqe) {
        io_uring_prep_connect(sqe, fd, &a->sa, a->len);
        struct tpc__io io;
        rc = tpc__io_run(s, &io, sqe);
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* -EAGAIN from a call that is to wait (no MSG_DONTWAIT, a descriptor without O_NONBLOCK) means
 * no SQE was free, or the kernel gave up on a send it had begun (io_uring caps the retries of a
 * partial send): neither is the caller's business. Passes through the loop, so that the ring
 * drains and other fibers run, and returns 0 to try again, or why not (-EAGAIN as asked, or the
 * fiber's cancel or deadline). */
static int again(int fd, int flags)
{
    int fl;
    if ((flags & MSG_DONTWAIT) || (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_NONBLOCK))
        return -EAGAIN;
    return tpc_sleep(0);
}

static ssize_t xfer_once(int fd, void *buf, size_t len, int flags, bool sending)
{
    TPC__IO_BEGIN(sqe);
    if (sending)
        io_uring_prep_send(sqe, fd, buf, tpc__io_len(len), flags | MSG_NOSIGNAL);
    else
        io_uring_prep_recv(sqe, fd, buf, tpc__io_len(len), flags);
    int rc = TPC__IO_END(sqe);
    if (!sending)
        TPC__KERNEL_WROTE(buf, rc);
    return rc;
}

/* A send the loop would submit by itself goes straight to the kernel, without waiting
 * (tpc__io_alone): returns what it sent (len: all), or a negative errno that is the send's
 * result, or 0 with nothing sent (not tried, or the socket's buffer is full). */
static ssize_t send_now(int fd, const void *buf, size_t len, int flags)
{
    struct tpc__shard *s = tpc__self;
    if (!s || !s->current || s->current->cancelled || s->current->deadline || fd < 0 ||
        fd >= TPC__FILE_BIT || !len || !tpc__io_alone(s, IORING_OP_SEND))
        return 0;
    ssize_t n = send(fd, buf, tpc__io_len(len), flags | MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
}

static ssize_t xfer(int fd, void *buf, size_t len, int flags, bool sending)
{
    if (!buf && len)
        return -EFAULT;
    ssize_t sent = 0, rc;
    if (sending) {
        sent = send_now(fd, buf, len, flags);
        if (sent < 0 || (size_t)sent == len || (sent > 0 && (flags & MSG_DONTWAIT)))
            return sent;
        buf = (char *)buf + sent, len -= (size_t)sent;
    }
    while ((rc = xfer_once(fd, buf, len, flags, sending)) == -EAGAIN) {
        int why = again(fd, flags);
        if (why < 0)
            return sent ? sent : why;
    }
    return rc < 0 && sent ? sent : rc + sent;
}

ssize_t tpc_recv(int fd, void *buf, size_t len, int flags)
{
    return xfer(fd, buf, len, flags, false);
}

ssize_t tpc_send(int fd, const void *buf, size_t len, int flags)
{
    return xfer(fd, (void *)buf, len, flags, true);
}

int tpc_dgram(const tpc_addr *a)
{
    if (!valid(a))
        return -EINVAL;
    int fd = socket(a->sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, &a->sa, a->len) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* One sendmsg or recvmsg; the message header lives in this frame, which tpc__io_run keeps
 * alive until the kernel is done with it. */
static ssize_t msg_io_once(int fd, struct iovec *iov, int iovcnt, tpc_addr *addr, bool sending)
{
    TPC__IO_BEGIN(sqe);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
    if (addr && !sending) {
        memset(addr, 0, sizeof(*addr));
        mh.msg_name = &addr->sa;
        mh.msg_namelen = sizeof(addr->storage);
    } else if (addr) {
        mh.msg_name = &addr->sa;
        mh.msg_namelen = addr->len;
    }
    if (sending)
        io_uring_prep_sendmsg(sqe, fd, &mh, MSG_NOSIGNAL);
    else
        io_uring_prep_recvmsg(sqe, fd, &mh, 0);
    int rc = TPC__IO_END(sqe);
    if (rc >= 0 && !sending) {
        tpc__kernel_wrote_iov(iov, iovcnt, rc);
        if (addr) {
            TPC__KERNEL_WROTE(&mh.msg_namelen, sizeof(mh.msg_namelen));
            TPC__KERNEL_WROTE(&addr->sa, mh.msg_namelen);
            addr->len = mh.msg_namelen;
        }
    }
    return rc;
}

static ssize_t msg_io(int fd, struct iovec *iov, int iovcnt, tpc_addr *addr, bool sending)
{
    ssize_t rc;
    while ((rc = msg_io_once(fd, iov, iovcnt, addr, sending)) == -EAGAIN) {
        int why = again(fd, 0);
        if (why < 0)
            return why;
    }
    return rc;
}

static ssize_t msg_one(int fd, void *buf, size_t len, tpc_addr *addr, bool sending)
{
    if (!buf && len)
        return -EFAULT;
    struct iovec iov = {.iov_base = buf, .iov_len = tpc__io_len(len)};
    return msg_io(fd, &iov, 1, addr, sending);
}

ssize_t tpc_sendto(int fd, const void *buf, size_t len, const tpc_addr *to)
{
    if (to && !valid(to))
        return -EINVAL;
    return msg_one(fd, (void *)buf, len, (tpc_addr *)to, true);
}

ssize_t tpc_recvfrom(int fd, void *buf, size_t len, tpc_addr *from)
{
    return msg_one(fd, buf, len, from, false);
}

static ssize_t vec_io(int fd, const struct iovec *iov, int iovcnt, bool sending)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX || (!iov && iovcnt))
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len)
            return -EFAULT;
        if (iov[i].iov_len > TPC_IO_MAX - total)
            return -EINVAL; /* more than one call can move: split it */
        total += iov[i].iov_len;
    }
    if (iovcnt == 1) /* a plain send or receive: no message header for the kernel to copy */
        return xfer(fd, iov[0].iov_base, iov[0].iov_len, 0, sending);
    return msg_io(fd, (struct iovec *)iov, iovcnt, NULL, sending);
}

ssize_t tpc_sendv(int fd, const struct iovec *iov, int iovcnt)
{
    return vec_io(fd, iov, iovcnt, true);
}

ssize_t tpc_recvv(int fd, const struct iovec *iov, int iovcnt)
{
    return vec_io(fd, iov, iovcnt, false);
}

/* A plain shutdown(2), which never blocks: clean-up works in any state, from anywhere. */
int tpc_sock_shutdown(int fd, int how)
{
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return -EINVAL;
    return shutdown(fd, how) == 0 ? 0 : -errno;
}

int tpc_sock_linger(int fd, int64_t timeout_ns)
{
    TPC__CHECK_SUSPEND();
    if (timeout_ns < 0)
        return -EINVAL;
    if (shutdown(fd, SHUT_WR) < 0)
        return -errno;
    uint64_t saved = tpc_deadline_get();
    tpc_deadline_set(timeout_ns);
    char buf[2048]; /* (discarded: small, on the caller's stack) */
    ssize_t n;
    while ((n = tpc_recv(fd, buf, sizeof(buf), 0)) > 0)
        ;
    if (saved)
        tpc_deadline_set_at(saved);
    else
        tpc_deadline_clear();
    return (int)n;
}

static int setopt(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v)) == 0 ? 0 : -errno;
}

int tpc_sock_nodelay(int fd, int on)
{
    return setopt(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int tpc_sock_keepalive(int fd, int idle_s)
{
    if (idle_s < 0 || idle_s > 32767) /* Linux's own bound for TCP_KEEPIDLE */
        return -EINVAL;
    if (idle_s == 0)
        return setopt(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
    int probe = idle_s < 75 ? idle_s : 75; /* then probe every min(idle, 75 s), 9 times */
    int rc = setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s);
    if (rc == 0)
        rc = setopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, probe);
    if (rc == 0)
        rc = setopt(fd, IPPROTO_TCP, TCP_KEEPCNT, 9);
    if (rc == 0) /* last, so that a socket that is not TCP is left as it was */
        rc = setopt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
    return rc;
}

int tpc_sock_buffers(int fd, int sndbuf, int rcvbuf)
{
    if (sndbuf < 0 || rcvbuf < 0)
        return -EINVAL;
    int rc = 0;
    if (sndbuf)
        rc = setopt(fd, SOL_SOCKET, SO_SNDBUF, sndbuf);
    if (rc == 0 && rcvbuf)
        rc = setopt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf);
    return rc;
}
