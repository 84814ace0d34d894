/* Sockets through the shard's io_uring: addresses, and TCP or Unix stream sockets. Calls that
 * wait suspend the calling fiber (fibers only: elsewhere -EPERM) and honour its deadline and
 * cancellation with the buffer safety of tpc/io.h. They return a descriptor, a count or 0, or a
 * negative errno. Sends never raise SIGPIPE: a send to a closed peer returns -EPIPE (or
 * -ECONNRESET). Close sockets with tpc_close. */
#ifndef TPC_NET_H
#define TPC_NET_H

#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include "common.h"

/* An IPv4, IPv6 or Unix socket address. */
typedef struct tpc_addr {
    socklen_t len;
    TPC_EXTENSION union { /* anonymous: standard from C11; also accepted in C99 */
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage storage;
    };
} tpc_addr;

/* Parses "1.2.3.4:80", "[::1]:80" or "unix:/path" (numeric hosts only; a port 0 lets the kernel
 * choose). Returns 0, or -EINVAL for anything else (a missing or out-of-range port, a host name,
 * a Unix path longer than sockaddr_un holds). Does not suspend; usable anywhere. */
TPC_EXTERN int tpc_addr_parse(const char *text, tpc_addr *out);

/* Formats a into buf in the syntax tpc_addr_parse reads, like snprintf: returns the length of
 * the whole text, or -EINVAL (NULL a, or an address family it does not know). */
TPC_EXTERN int tpc_addr_format(const tpc_addr *a, char *buf, size_t size);

/* The socket's own address (getsockname) or its peer's (getpeername). */
TPC_EXTERN int tpc_sock_local(int fd, tpc_addr *out);
TPC_EXTERN int tpc_sock_peer(int fd, tpc_addr *out);

/* Flags of tpc_listen. */
#define TPC_LISTEN_REUSEPORT 1 /* SO_REUSEPORT: several listeners, one per shard, same port */

/* A listening stream socket bound to a (TCP, or Unix: an existing socket file at the path is
 * not removed). Returns the descriptor. Does not suspend; usable anywhere. backlog <= 0: 511. */
TPC_EXTERN int tpc_listen(const tpc_addr *a, int backlog, int flags);

/* One SO_REUSEPORT listener per shard on the same TCP address, so that the kernel spreads
 * connections over the shards: fds[i] is shard i's listener (fds must hold tpc_shard_count()
 * entries). With port 0 the kernel's choice for the first is used for all. Each shard then
 * accepts on its own fds[i]. tpc_server_start does this (and the accepting) for you; see there
 * for when to hand connections out from one acceptor instead. Returns 0 or a negative errno
 * (then no listener is left open): -EADDRINUSE also when a socket listens on the same address
 * and port already, even with SO_REUSEPORT (which would have joined it; tpc_listen with
 * TPC_LISTEN_REUSEPORT shares on purpose). Does not suspend. */
TPC_EXTERN int tpc_listen_all(const tpc_addr *a, int backlog, int *fds);

/* Waits for a connection on listener fd; returns its descriptor (close-on-exec) and stores the
 * peer's address in *peer if not NULL. */
TPC_EXTERN int tpc_accept(int fd, tpc_addr *peer);

/* Connects a new stream socket to a; returns its descriptor. -ECONNREFUSED when nobody
 * listens; -ETIMEDOUT when the fiber's deadline passes first (the socket is closed). */
TPC_EXTERN int tpc_connect(const tpc_addr *a);

/* One receive or send (which may be short, unless MSG_WAITALL asks for the whole length); recv
 * returns 0 when the peer has closed its side. They wait as blocking calls do, a socket's
 * O_NONBLOCK notwithstanding: -EAGAIN at once only when asked not to wait (MSG_DONTWAIT; an
 * O_NONBLOCK socket may see -EAGAIN where the kernel gives up on a send half-way). A full ring, or
 * a send the kernel gave up on, is retried after a pass through the shard's loop (as are
 * tpc_sendv, tpc_recvv, tpc_sendto, tpc_recvfrom). With MSG_WAITALL, a call cut short by the
 * fiber's cancel or deadline returns the bytes it moved, if any. */
TPC_EXTERN ssize_t tpc_recv(int fd, void *buf, size_t len, int flags);
TPC_EXTERN ssize_t tpc_send(int fd, const void *buf, size_t len, int flags);

/* A datagram socket (UDP, or Unix datagram) bound to a (port 0 / an unused path: any). Returns
 * its descriptor. Does not suspend. */
TPC_EXTERN int tpc_dgram(const tpc_addr *a);

/* One datagram to `to`, or one datagram received with its sender stored in *from (if not
 * NULL). A datagram longer than len is cut to len and MSG_TRUNC is not reported: pass a buffer
 * as long as the largest datagram you expect. */
TPC_EXTERN ssize_t tpc_sendto(int fd, const void *buf, size_t len, const tpc_addr *to);
TPC_EXTERN ssize_t tpc_recvfrom(int fd, void *buf, size_t len, tpc_addr *from);

/* shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR. Never suspends: it works at once from anywhere,
 * in a cancelled fiber or past a deadline too. Returns 0, -EINVAL, or the kernel's error. */
TPC_EXTERN int tpc_sock_shutdown(int fd, int how);

/* The first half of a graceful close, for a server about to close a connection whose peer may
 * still be sending (after an error answer, or a Connection: close with more requests behind
 * it): ends the sending side (shutdown SHUT_WR: the peer reads all that was sent, then the end
 * of the stream), then reads and discards what the peer still sends until it closes its side,
 * for up to timeout_ns whatever the caller's deadline (which it leaves as it was). Why: closing a
 * socket with unread input makes Linux send a reset, and a reset makes the peer's kernel drop
 * what it had received but its program not yet read, the answer included. Returns 0 when the
 * peer closed, -ETIMEDOUT when it had not closed by timeout_ns (still sending, or silent),
 * -ECANCELED if the caller is
 * cancelled, -EINVAL for a negative timeout, -EPERM outside a fiber, or the socket's error
 * (-ENOTCONN: already shut down or never connected). Does not close fd. Not for a socket read
 * through a tpc_rx: tpc_rx_close it first. Suspends. */
TPC_EXTERN int tpc_sock_linger(int fd, int64_t timeout_ns);

/* Scatter/gather: one sendmsg or recvmsg (a plain send or recv for one buffer) over iovcnt
 * buffers (at most IOV_MAX, together at most 0x7ffff000 bytes, else -EINVAL); may be short like
 * tpc_send / tpc_recv. */
TPC_EXTERN ssize_t tpc_sendv(int fd, const struct iovec *iov, int iovcnt);
TPC_EXTERN ssize_t tpc_recvv(int fd, const struct iovec *iov, int iovcnt);

/* ---- Options (do not suspend; 0 or a negative errno) ---- */

/* TCP_NODELAY on (1) or off (0). */
TPC_EXTERN int tpc_sock_nodelay(int fd, int on);
/* TCP keep-alive: idle_s > 0 turns it on, probing after idle_s seconds without traffic (then
 * every min(idle_s, 75) s, 9 probes); 0 turns it off; negative or above 32767: -EINVAL. A
 * socket that is not TCP gets -EOPNOTSUPP (or the kernel's error) and is left unchanged. */
TPC_EXTERN int tpc_sock_keepalive(int fd, int idle_s);
/* SO_SNDBUF / SO_RCVBUF in bytes (the kernel doubles and caps them); 0 leaves one unchanged;
 * negative: -EINVAL. */
TPC_EXTERN int tpc_sock_buffers(int fd, int sndbuf, int rcvbuf);

/* ---- Names ---- */

/* Resolves host and port (a service name or number) with getaddrinfo on the runtime's blocking
 * helper threads (tpc_blocking), so a slow DNS server never stalls the shard. family: AF_UNSPEC,
 * AF_INET or AF_INET6. Stores up to max addresses, in getaddrinfo's order, and returns how many
 * (>= 1); -ENOENT when the name has no address, -EAGAIN for a temporary DNS failure, -EINVAL
 * for an empty name, an unknown service or family, or max == 0; or tpc_blocking's errors
 * (-ECANCELED / -ETIMEDOUT while queued). Fibers only. */
TPC_EXTERN int tpc_resolve(const char *host, const char *port, int family, tpc_addr *out,
                           unsigned max);

/* ---- Accepting: a multishot acceptor ---- */

typedef struct tpc_acceptor tpc_acceptor;

/* Starts accepting on listener fd with one multishot accept: the kernel accepts connections as
 * they come, with no request per connection, and the acceptor queues them until taken (up to
 * 1024; beyond that it pauses and the kernel's backlog holds the rest). When the process runs
 * out of descriptors (EMFILE, ENFILE) or memory, it retries from a timer that backs off from
 * 10 ms to 1 s, so it never spins a CPU and recovers by itself once descriptors are free; each
 * pause counts in tpc_shard_stats.accept_backoffs. Owned by the calling shard; the listener
 * stays the caller's. Returns 0, -EINVAL, -ENOMEM, -ESHUTDOWN while the runtime stops, -EPERM
 * outside a shard. */
TPC_EXTERN int tpc_acceptor_open(int fd, tpc_acceptor **out);
/* Waits for the next connection and returns its descriptor (close-on-exec). -ECANCELED /
 * -ETIMEDOUT when the fiber is cancelled or its deadline passes (a connection accepted later
 * stays queued for the next call); the listener's own error (-EBADF, -EINVAL when it does not
 * listen, ...) once every queued connection has been taken, and from then on; -ECANCELED
 * also when the acceptor is closed. -EXDEV from another shard, -EPERM outside a fiber. Several
 * fibers may wait; they are served in order. */
TPC_EXTERN int tpc_acceptor_next(tpc_acceptor *a);
/* Releases a (NULL: no-op) as every handle is released (docs/guide.md, "Objects and their
 * release"): stops accepting, wakes the fibers waiting in tpc_acceptor_next with -ECANCELED,
 * waits until the kernel has let go, closes the connections accepted but not taken; the memory
 * goes when the last waiter has left. Returns 0. Misuse leaves a untouched: -EXDEV from another
 * shard, -EPERM when the kernel must be waited for outside a fiber, -EINVAL while another fiber
 * closes it. */
TPC_EXTERN int tpc_acceptor_close(tpc_acceptor *a);

/* ---- Servers: a fiber per connection on every shard ---- */

typedef struct tpc_server tpc_server;

/* Serves one connection. The server closes fd after it returns: fn must not close it, unless
 * it returns TPC_CONN_KEEP, which hands fd over to the program (say to tpc_relay_start): the
 * server then leaves it open and counts the connection as ended; the program closes it (with
 * tpc_close or close(2), in fn or later). When the server stops, fn may
 * be cancelled (its current or next wait returns -ECANCELED): it should then return. */
typedef int (*tpc_conn_fn)(int fd, void *arg);
#define TPC_CONN_KEEP 1
/* fn returns TPC_CONN_PARK to wait for the connection's next bytes without a fiber: the server
 * keeps fd and a small record (no stack), and calls fn(fd, arg) again, in a new fiber, when fd
 * becomes readable (or the peer closes it). fn must have read everything it took from fd (a
 * receive stream closed with tpc_rx_close_idle, say): what it keeps in its own memory is
 * its business. A parked connection is closed when the server stops (at once: it is idle) or
 * the runtime stops. */
#define TPC_CONN_PARK 2

#define TPC_SERVER_HANDOFF 1 /* one acceptor hands connections to the least-loaded shard */
/* Without HANDOFF: listen beside sockets that listen on the same address and port already with
 * SO_REUSEPORT (another copy of the program taking over in a restart, or a server of this one
 * replacing another on the same address); the kernel then spreads connections over all of
 * them. Without this flag such an address is -EADDRINUSE (another address on the same port,
 * 0.0.0.0 beside 127.0.0.1 or [::], is not). Not with HANDOFF or a Unix socket (-EINVAL). */
#define TPC_SERVER_SHARE 2

typedef struct tpc_server_opts {
    int backlog;       /* listen backlog, 0: 4096 (the kernel caps it at net.core.somaxconn) */
    int flags;         /* TPC_SERVER_HANDOFF, TPC_SERVER_SHARE, or 0 */
    size_t stack_size; /* of connection fibers: 0 (the runtime's default), or 16 KiB to 1 GiB */
    bool no_guard;     /* connection fibers without a guard page (tpc_fiber_opts.no_guard) */
} tpc_server_opts;

/* Listens on a and runs fn(fd, arg) in a new detached fiber for each connection (opts may be
 * NULL). By default every shard has its own SO_REUSEPORT listener and multishot acceptor, and
 * the kernel spreads connections by a hash of their addresses: no cross-shard traffic at all,
 * the right choice for many short or similar connections. With TPC_SERVER_HANDOFF (always for
 * Unix sockets) one acceptor, on the calling shard, hands each connection to the shard with
 * the fewest live connections (ties in turn), which evens out few long-lived connections of
 * uneven weight at the cost of one cross-shard message per connection and of the accepting
 * shard's CPU. Returns 0 and the handle in *out once every shard accepts; -EINVAL (NULL a, fn or
 * out, unknown flags, a negative backlog, a stack_size that is neither 0 nor 16 KiB to 1 GiB),
 * the listen errors (-EADDRINUSE ...), -ENOMEM, -ECANCELED / -ETIMEDOUT (the caller was
 * cancelled or its deadline passed while the shards started accepting: what was started is
 * stopped and, unless cancelled, closed when it returns), -ESHUTDOWN (the runtime is
 * stopping), -EPERM outside a fiber. */
TPC_EXTERN int tpc_server_start(const tpc_addr *a, const tpc_server_opts *opts, tpc_conn_fn fn,
                                void *arg, tpc_server **out);
/* The address it listens on (with the port the kernel chose for port 0). */
TPC_EXTERN int tpc_server_addr(const tpc_server *srv, tpc_addr *out);
/* Live connections on shard `shard` (handed to it and not ended) and connections whose fn it
 * has started (either may be NULL). Returns 0, or -EINVAL for a bad shard. Usable from any
 * shard. */
TPC_EXTERN int tpc_server_load(const tpc_server *srv, int shard, long *live, uint64_t *accepted);
/* Stops the server and waits until nothing of it runs. At once: no fn starts any more (a
 * connection accepted but not yet started is closed), every shard stops accepting and closes
 * its listener. Running handlers get until the caller's deadline (tpc_deadline_set) to return
 * by themselves, a grace period; without a deadline, once it has passed, or if the caller is
 * cancelled, they are cancelled (their current or next wait returns -ECANCELED). stop returns
 * when every fn has returned and every descriptor of the server is closed (a connection still
 * on its way to a busy shard, with TPC_SERVER_HANDOFF, included: that shard closes it; but not
 * one sent to a shard that has left as the runtime ends: it is closed as the runtime ends), so
 * `arg` may be freed then; a fn that does
 * not return when cancelled holds it up. The same holds while the runtime stops. Frees the handle.
 * Returns 0, or the first error an acceptor ended with (the server is stopped either way). Call
 * from a fiber of the starting shard: -EXDEV from another shard, -EPERM outside a fiber, -EINVAL
 * for NULL or while another fiber stops it, -EDEADLK from one of the server's own handlers (stop
 * waits for them: a handler that wants the server stopped asks another fiber to stop it) (the
 * handle stays valid on these errors, until that stop returns). */
TPC_EXTERN int tpc_server_stop(tpc_server *srv);

/* ---- Receiving into a shared buffer pool (multishot recv, provided buffers) ---- */

typedef struct tpc_bufpool tpc_bufpool;
typedef struct tpc_rx tpc_rx;

/* A received chunk: len bytes at data, inside a buffer of the pool, until tpc_buf_release. A
 * copy of it is only good until one of the copies has been released. */
typedef struct tpc_buf {
    char *data;
    size_t len;
    void *pool_;   /* private */
    unsigned id_;  /* private */
    unsigned gen_; /* private */
} tpc_buf;

/* count buffers of size bytes (count a power of two, at most 32768), registered with this
 * shard's ring as a provided-buffer ring. Receive streams on it take a buffer only when data
 * arrives: idle connections hold none. Fairness: one stream holds at most a quarter of the
 * pool's buffers (count / 4, at least 1), queued and handed out together; at that point it
 * stops receiving (the data waits in the socket) until its caller releases one of them, so a
 * peer whose handler is stuck (say in a send to a peer that never reads) cannot starve the
 * other streams. Memory: the buffers are one mapping whose pages come as the kernel first
 * receives into them; once the pool has had no stream open and no buffer held for a second,
 * its pages go back to the system (a receive after that faults in zeroed ones). Returns 0, -EINVAL,
 * -ENOMEM, -ENOSPC (65535 pools live on this shard; a destroyed pool's id is reused), the kernel's
 * error if it has no buffer rings (before Linux 5.19), -EPERM outside a shard. */
TPC_EXTERN int tpc_bufpool_create(unsigned count, size_t size, tpc_bufpool **out);
/* Releases the pool (NULL: no-op): no stream opens on it any more (tpc_rx_open: -EINVAL), the
 * streams open on it go on, and it is freed once the last of them is closed and the last
 * buffer released. Returns 0; -EINVAL when already destroyed (while it waits for its users),
 * -EXDEV from another shard, -EPERM outside a shard. */
TPC_EXTERN int tpc_bufpool_destroy(tpc_bufpool *p);
/* Buffers free for the kernel to fill. */
TPC_EXTERN int tpc_bufpool_available(const tpc_bufpool *p);

/* Starts receiving from stream socket fd into pool p: one receive at a time stays in the ring
 * and takes a buffer when data arrives. Returns 0, -EINVAL, -ENOMEM, -EXDEV (p is another
 * shard's), -ESHUTDOWN while the runtime stops, -EPERM outside a shard. */
TPC_EXTERN int tpc_rx_open(int fd, tpc_bufpool *p, tpc_rx **out);
/* Waits for the next chunk received, in order, and returns its length (> 0) with *b
 * describing it; the caller holds the buffer until tpc_buf_release. Returns 0 at end of
 * stream; -ECANCELED / -ETIMEDOUT (data arriving later stays queued for the next call); the
 * socket's error (-ECONNRESET ...) after the data received before it; -ENOBUFS when nothing is
 * queued and the caller holds the stream's whole share of the pool (nothing can arrive until
 * it releases one); -EBUSY if another fiber already waits on rx; -ECANCELED also when rx is
 * closed while the caller waits; -EXDEV, -EPERM. When the pool
 * is empty, receiving pauses (the data waits in the socket) until some buffer is released;
 * when the ring has no free SQE, the stream tries again at the next loop iteration. */
TPC_EXTERN ssize_t tpc_rx_next(tpc_rx *rx, tpc_buf *b);
/* Gives a buffer back to its pool. Returns 0; -EINVAL for a buffer not held (released twice,
 * a stale copy of one released already, even if its buffer was handed out again since, or
 * never returned by tpc_rx_next); -EXDEV from another shard. */
TPC_EXTERN int tpc_buf_release(tpc_buf *b);
/* Releases rx (NULL: no-op): stops receiving, wakes a fiber waiting in tpc_rx_next with
 * -ECANCELED, waits until the kernel has let go and gives queued chunks back to the pool. Does
 * not close fd. Buffers the caller holds stay held and valid; the memory goes once the last of
 * them is released and the waiter has left. Returns 0. Misuse leaves rx untouched: -EXDEV,
 * -EPERM (the kernel must be waited for outside a fiber), -EINVAL while another fiber closes
 * it (tpc_rx_close or tpc_rx_close_idle). */
TPC_EXTERN int tpc_rx_close(tpc_rx *rx);
/* Closes rx if it is idle, losing nothing: its receive is taken out of the ring (waiting, in the
 * calling fiber, for the kernel to let go), and if no chunk arrived meanwhile the stream closes
 * as tpc_rx_close does; bytes that come later wait in the socket. For a connection about to
 * wait for its next request without a fiber (TPC_CONN_PARK). Returns 0 (closed); -EAGAIN if a
 * chunk is queued or arrived first (the stream stays open: read it); -EBUSY while the caller
 * holds chunks of it, another fiber waits on it or closes it, or it is a relay's; -EINVAL for
 * NULL; -EXDEV from another shard; -EPERM outside a fiber. Suspends. */
TPC_EXTERN int tpc_rx_close_idle(tpc_rx *rx);

/* ---- Buffered reading and writing on a stream socket ----
 * tpc_rbuf reads: it holds what was received and not yet consumed in one contiguous span, so
 * that a protocol parses in place (tpc_rbuf_data), and receives more only when asked (fill, or
 * line and need, which fill until they have what they want). tpc_wbuf writes: appends are
 * copied (or, for large payloads, referenced) and go out together, many segments per sendmsg,
 * when flushed. Both are bounded: a reader never holds more than `limit` bytes (a line or
 * payload longer than that is refused with -EMSGSIZE, a fill into a full buffer with -ENOBUFS),
 * a writer never more than `limit` pending bytes, nor much more than `limit` bytes of memory
 * for its copies (chunks of 16 KiB; a copy after a reference starts a small one): an append
 * past either fails with -ENOBUFS, appending nothing (flush, then append again). limit 0: 1 MiB.
 * Errors lose nothing: the bytes buffered stay buffered, so a call that failed with -ECANCELED or
 * -ETIMEDOUT may be made again. Neither owns fd (close it yourself) and neither suspends except in
 * fill, line, need and flush, which suspend as tpc_recv and tpc_sendv do and return their errors.
 * One fiber at a time per buffer; the structs are embedded by the caller and their fields are
 * private. For a plain send-all, tpc_send(fd, buf, len, MSG_WAITALL). */
typedef struct tpc_rbuf {
    int fd;
    char *data;
    size_t start, end, cap, limit, scan;
    uint64_t reserved[2];
} tpc_rbuf;

/* Sets b up to read from fd; allocates nothing yet (the first fill takes 16 KiB, grown by
 * doubling up to the limit). Returns 0, -EINVAL for NULL b, -EBADF for a negative fd. */
TPC_EXTERN int tpc_rbuf_init(tpc_rbuf *b, int fd, size_t limit);
/* Frees b's memory (NULL: no-op); unconsumed bytes are dropped. */
TPC_EXTERN void tpc_rbuf_destroy(tpc_rbuf *b);
/* One receive appended to the buffer. Returns the bytes received (> 0), 0 at end of stream,
 * -ENOBUFS when limit bytes are buffered already (consume some first), -ENOMEM, or tpc_recv's
 * error. */
TPC_EXTERN ssize_t tpc_rbuf_fill(tpc_rbuf *b);
/* The buffered bytes (peek): tpc_rbuf_len of them at tpc_rbuf_data, valid until the next call
 * that fills, consumes or destroys. */
TPC_EXTERN size_t tpc_rbuf_len(const tpc_rbuf *b);
TPC_EXTERN const char *tpc_rbuf_data(const tpc_rbuf *b);
/* Drops the first n buffered bytes. Returns 0, -EINVAL when fewer are buffered. An emptied
 * buffer that had grown past 64 KiB is freed (a large message does not pin its memory). */
TPC_EXTERN int tpc_rbuf_consume(tpc_rbuf *b, size_t n);
/* Fills until a '\n' is buffered, then points *line at the buffered bytes (the line starts
 * there) and returns the line's length with its '\n' (it stays buffered: consume it). Returns 0
 * when the stream ends first (what came stays buffered), -EMSGSIZE when limit bytes are
 * buffered without a '\n', -EINVAL for NULL arguments, or fill's errors. */
TPC_EXTERN ssize_t tpc_rbuf_line(tpc_rbuf *b, const char **line);
/* Fills until at least n bytes are buffered (exactly n bytes to read: read them at *data, then
 * consume n). Returns n, 0 when the stream ends first, -EMSGSIZE when n > limit, -EINVAL, or
 * fill's errors. n = 0 returns 0 at once (nothing to wait for: not the stream's end). */
TPC_EXTERN ssize_t tpc_rbuf_need(tpc_rbuf *b, size_t n, const char **data);

struct tpc__wseg;
typedef struct tpc_wbuf {
    int fd;
    size_t limit, len, resv;
    struct tpc__wseg *segs;
    unsigned head, nsegs, capsegs;
    char *spare;
    size_t mem; /* bytes of the copies' chunks held */
    uint64_t reserved[1];
} tpc_wbuf;

/* Sets w up to write to fd; allocates nothing yet. Returns 0, -EINVAL, -EBADF. */
TPC_EXTERN int tpc_wbuf_init(tpc_wbuf *w, int fd, size_t limit);
/* Frees w (NULL: no-op): pending bytes are dropped, and referenced ones released. */
TPC_EXTERN void tpc_wbuf_destroy(tpc_wbuf *w);
/* Bytes appended and not yet sent. */
TPC_EXTERN size_t tpc_wbuf_pending(const tpc_wbuf *w);
/* Copies n bytes to the end. Returns 0, -ENOBUFS (past the limit: nothing appended), -ENOMEM,
 * -EINVAL. Does not send. */
TPC_EXTERN int tpc_wbuf_append(tpc_wbuf *w, const void *p, size_t n);
/* Appends n bytes at p without copying them: they must stay valid and unchanged until
 * release(arg) (NULL: nothing to release) is called, exactly once, when they have been sent or
 * when w is destroyed. Fewer than 256 bytes are copied instead and released at once (so that
 * the limit bounds the writer's bookkeeping too: a reference costs a segment of about 48
 * bytes). Returns as tpc_wbuf_append; on an error release is not called (the caller keeps the
 * bytes). */
TPC_EXTERN int tpc_wbuf_append_ref(tpc_wbuf *w, const void *p, size_t n, tpc_release_fn release,
                                   void *arg);
/* Room for up to n bytes at the end, to write in place (formatting a number, say): *out points
 * at it; tpc_wbuf_commit(w, used) then appends the first used bytes written there. No other call
 * on w may come between the two. Returns 0, -ENOBUFS, -ENOMEM, -EINVAL; commit returns 0 or
 * -EINVAL (used larger than reserved). */
TPC_EXTERN int tpc_wbuf_reserve(tpc_wbuf *w, size_t n, void **out);
TPC_EXTERN int tpc_wbuf_commit(tpc_wbuf *w, size_t used);
/* Sends every pending byte (one sendmsg over up to 64 segments and 0x7ffff000 bytes at a time,
 * a plain send for one segment; again until done).
 * Returns the bytes sent (0 with nothing pending), or the error that stopped it (-EPIPE,
 * -ECONNRESET, -ECANCELED ...): the bytes sent before it are gone from w, the rest stay
 * pending (tpc_wbuf_pending). */
TPC_EXTERN ssize_t tpc_wbuf_flush(tpc_wbuf *w);

/* ---- Zero-copy transfers ---- */

/* One splice(2) of up to len bytes between fd_in and fd_out, one of which is a pipe; offsets
 * are -1 for "none" (a pipe or a socket) or a file position. flags: SPLICE_F_MOVE,
 * SPLICE_F_NONBLOCK, SPLICE_F_MORE. Returns the bytes moved, 0 at end of input, or -errno. */
TPC_EXTERN ssize_t tpc_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len,
                              unsigned flags);
/* One direction of a proxied connection, socket `from` to socket `to`. It holds the bytes
 * taken from `from` that `to` has not accepted yet, so that nothing is ever lost between calls;
 * an idle direction holds no memory and no descriptor. Set up with tpc_fwd_init, release with
 * tpc_fwd_destroy (which drops held bytes: the connection is being closed then). The fields
 * are private; `in` and `out` count the bytes taken from `from` and delivered to `to`. */
typedef struct tpc_fwd {
    int from, to;
    char *held;
    size_t held_off, held_len;
    uint64_t in, out;
} tpc_fwd;

/* Returns 0, -EINVAL for NULL f, -EBADF for a negative descriptor. Does not suspend. */
TPC_EXTERN int tpc_fwd_init(tpc_fwd *f, int from, int to);

/* Delivers the bytes held from an earlier call, or else waits until `from` is readable and
 * moves what is there (up to max, at most 64 KiB) to `to`, on the shard (no kernel worker
 * threads), copying through user memory only what `to` does not take at once. Returns the
 * bytes delivered by this call (> 0), 0 when `from` is at end of stream and nothing is held,
 * or -errno when nothing was delivered (an error after some bytes is returned by the next
 * call). Nothing taken from `from` is dropped: after an error, tpc_fwd_held(f) bytes wait in f.
 * So a timeout tells its cause: -ETIMEDOUT (or -ECANCELED) with nothing held means the source
 * was idle; with bytes held, the destination stalled. */
TPC_EXTERN ssize_t tpc_forward(tpc_fwd *f, size_t max);

/* Bytes taken from the source and not yet delivered. */
TPC_EXTERN size_t tpc_fwd_held(const tpc_fwd *f);

/* Frees what f holds. */
TPC_EXTERN void tpc_fwd_destroy(tpc_fwd *f);

/* Both directions of a proxied connection (tpc_relay, tpc_relay_start). */
typedef struct tpc_relay_opts {
    int64_t idle_ns; /* > 0: end once no byte has been delivered either way for this long; 0:
                        never (idle is both ways at once: a long one-way download is not idle) */
    size_t chunk;    /* the most one receive takes from a socket: 0 (or above 16 KiB): 16 KiB.
                        A direction whose destination stalls holds at most two chunks */
} tpc_relay_opts;

typedef struct tpc_relay_stats {
    uint64_t a_to_b, b_to_a; /* bytes delivered: read from a and written to b, and back */
    /* Bytes read from the source that never reached the destination: 0 after a clean end,
     * else what a stopped direction held (it is dropped, not left in the socket). */
    uint64_t a_to_b_unsent, b_to_a_unsent;
    int a_err, b_err; /* what socket a / b failed with (-ECONNRESET, -EPIPE ...), or 0 */
} tpc_relay_stats;

/* Relays bytes both ways between stream sockets a and b until both directions have ended. It
 * runs on completions alone (no fiber, no stack of its own): each direction keeps one receive
 * in the ring that takes a buffer from the shard's relay pool (16 KiB buffers) only when data
 * arrives, so an idle relay holds no buffer, and sends each chunk from where it landed. When a
 * reaches end of stream, everything read from it having been delivered, b is shut down for
 * writing (the half-close carried across) and the other direction goes on; the same the other
 * way. Anything else ends both directions at once: an error on either socket, the idle limit of
 * opts (NULL: no limit, 16 KiB chunks), the caller's cancellation or deadline. It returns only
 * when the kernel has let go of both sockets and every buffer, so nothing of it runs
 * afterwards. It never closes a or b, and leaves the caller's deadline as it was.
 * Returns 0 when both directions ended at end of stream; -ETIMEDOUT when idle_ns passed without
 * a byte delivered either way, or the caller's deadline passed (tpc_deadline_get() tells);
 * -ECANCELED when the caller was cancelled (also before it began: nothing relayed); the first
 * socket error (-ECONNRESET, -EPIPE ..., also of the shutdown), which out->a_err or b_err
 * attributes; -ENOMEM; -ESHUTDOWN (the runtime is stopping: nothing was relayed); -EBADF for a
 * negative descriptor; -EINVAL for a == b or a negative idle_ns; -EPERM outside a fiber. out
 * (may be NULL) is always written; its counts are exact however it ended. Suspends. */
TPC_EXTERN int tpc_relay(int a, int b, const tpc_relay_opts *opts, tpc_relay_stats *out);

/* The same relay in the background, for programs that keep many connections: nothing waits for
 * it, so a relayed connection costs no fiber and no stack, only the relay's record (about 300
 * bytes) and the kernel's sockets. tpc_relay_start returns at once; done(r, result, stats, arg)
 * runs on this shard, as a callback (it must not suspend), when the relay has ended as
 * tpc_relay's would (result as tpc_relay's, -ECANCELED for tpc_relay_stop, -ESHUTDOWN when
 * the runtime stops: a shard does not leave while its relays run, and ends them as it stops).
 * done owns a and b again (it closes them, or not) and r is freed when it returns. Returns 0
 * with the handle in *out (may be NULL; valid until done runs); -EINVAL (NULL done, a == b, a
 * negative idle_ns), -EBADF, -ENOMEM, -ESHUTDOWN, -EPERM outside a shard: then done never runs.
 * Callable from a fiber or a callback. */
typedef struct tpc_relay_handle tpc_relay_handle;
typedef void (*tpc_relay_done_fn)(tpc_relay_handle *r, int result, const tpc_relay_stats *stats,
                                  void *arg);
TPC_EXTERN int tpc_relay_start(int a, int b, const tpc_relay_opts *opts, tpc_relay_done_fn done,
                               void *arg, tpc_relay_handle **out);
/* Ends a running relay now: its done runs with -ECANCELED once the kernel has let go (at once,
 * or after this returns). Call from its shard: 0, -EINVAL for NULL, -EXDEV from another shard,
 * -EPERM outside a shard. */
TPC_EXTERN int tpc_relay_stop(tpc_relay_handle *r);
/* A running relay's counts so far, into *out: the bytes delivered each way, the bytes read and
 * not yet delivered (*_unsent: on their way, at most two chunks a direction), the socket errors
 * seen. A program that shows its traffic while connections last (a proxy's statistics) reads
 * them here rather than waiting for done. Call from its shard, before done has run: 0, -EINVAL
 * for NULL, -EXDEV from another shard, -EPERM outside a shard. */
TPC_EXTERN int tpc_relay_progress(const tpc_relay_handle *r, tpc_relay_stats *out);

/* Sends up to len bytes of file, from *offset (advanced by what was sent; NULL: the file's own
 * position), to socket sock through a pipe. Returns the bytes sent, fewer at end of file or if
 * an error came after some were sent; the error (-EPIPE ...) if none were. */
TPC_EXTERN ssize_t tpc_sendfile(int sock, int file, int64_t *offset, size_t len);

#endif
