/* tpc-proxy's HTTP/1.1 mode (README.md, "HTTP mode"): a frontend with mode = http. */
#ifndef PX_HTTP_H
#define PX_HTTP_H

#include <tpc.h>

/* The connection fiber of an HTTP frontend (tpc_conn_fn; arg: its fe_rt). */
int http_connection(int fd, void *arg);

/* A drain (tpc_on_all): on the calling shard, keep-alive connections waiting for a request
 * close at once, and the others after the response under way (which says Connection: close). */
int http_drain(void *arg);

/* At a drain's deadline (tpc_on_all): the frontend's connections on the calling shard that
 * parked once (their fibers are not the server's) are cut: cancelled, or closed if parked. */
int http_cut(void *arg);

/* check = http on a connected socket: "GET path" to the server at addr; 0 when the answer's
 * status is 2xx or 3xx, else a negative errno (-EPROTO for another status or a malformed
 * answer, said in why[0..whylen): "HTTP status 500", ...). The caller's deadline bounds it. */
int http_check(int fd, const char *path, const tpc_addr *addr, char *why, size_t whylen);

#endif
