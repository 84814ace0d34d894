/* A /metrics endpoint for the example servers: a second tpc_server (one listener per shard)
 * that answers "GET /metrics" with tpc_metrics_format's Prometheus text, "GET /metrics?table"
 * with the plain table, and 404 to anything else, one request per connection.
 *   metrics_start("127.0.0.1:9100", &srv) ... metrics_stop(srv) */
#ifndef EXAMPLES_METRICS_HTTP_H
#define EXAMPLES_METRICS_HTTP_H

#include <tpc.h>

/* Starts serving on addr (prints where, on stdout). Returns 0 or a negative errno. */
int metrics_start(const char *addr, tpc_server **out);
int metrics_stop(tpc_server *srv);

#endif
