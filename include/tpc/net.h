/* Sockets through the shard's io_uring: addresses, and TCP or Unix stream sockets. Calls that
 * wait suspend the calling fiber (fibers only: elsewhere -EPERM) and honour its deadline and
 * cancellation with the buffer safety of tpc/io.h. They return a descriptor, a count or 0, or a
 * negative errno. Sends never raise SIGPIPE: a send to a closed peer returns -EPIPE (or
 * -ECONNRESET). Close sockets with tpc_close. */
#ifndef TPC_NET_H
#define TPC_NET_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include "common.h"

/* An IPv4, IPv6 or Unix socket address. */
typedef struct tpc_addr {
    socklen_t len;
    union {
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
 * accepts on its own fds[i]. This is the default way to spread a TCP server; a single acceptor
 * that hands connections out (tpc_submit_to) suits long-lived connections whose load the kernel's
 * hash would spread badly. Returns 0 or a negative errno (then no listener is left open).
 * Does not suspend. */
TPC_EXTERN int tpc_listen_all(const tpc_addr *a, int backlog, int *fds);

/* Waits for a connection on listener fd; returns its descriptor (close-on-exec) and stores the
 * peer's address in *peer if not NULL. */
TPC_EXTERN int tpc_accept(int fd, tpc_addr *peer);

/* Connects a new stream socket to a; returns its descriptor. -ECONNREFUSED when nobody
 * listens; -ETIMEDOUT when the fiber's deadline passes first (the socket is closed). */
TPC_EXTERN int tpc_connect(const tpc_addr *a);

/* One receive or send (which may be short); recv returns 0 when the peer has closed its side. */
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

/* shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR. */
TPC_EXTERN int tpc_sock_shutdown(int fd, int how);

/* TCP_NODELAY on (1) or off (0). Does not suspend. */
TPC_EXTERN int tpc_sock_nodelay(int fd, int on);

#endif
