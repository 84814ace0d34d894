/* A /metrics endpoint for the example servers: a second tpc_server (one listener per shard)
 * that answers "GET /metrics" with tpc_metrics_format's Prometheus text, "GET /metrics?table"
 * with the plain table, and 404 to anything else, one request per connection.
 *   metrics_start("127.0.0.1:9100", &srv) ... metrics_stop(srv) */
#ifndef EXAMPLES_METRICS_HTTP_H
#define EXAMPLES_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <tpc.h>

/* Starts serving on addr (prints where, on stdout). Returns 0 or a negative errno. */
int metrics_start(const char *addr, tpc_server **out);
int metrics_stop(tpc_server *srv);

/* Reads a request's head from fd into req (NUL-terminated, at most cap - 1 bytes), for up to
 * 5 s, until its blank line. Returns true if the blank line came. */
bool http_read_head(int fd, char *req, size_t cap);

#endif
