/* tpc-proxy's configuration: an INI file (Debian's libinih) read into an immutable px_config.
 * Sections: [frontend NAME], [backend NAME], [stats]; see README.md for every key. */
#ifndef PX_CONFIG_H
#define PX_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <tpc.h>

#define PX_NAME_MAX    64
#define PX_SERVERS_MAX 256 /* per backend */

enum px_mode { PX_MODE_TCP, PX_MODE_HTTP };
enum px_balance { PX_BAL_ROUNDROBIN, PX_BAL_LEASTCONN, PX_BAL_SOURCE };
#define PX_FRONTENDS_MAX 256 /* frontends a file may have */

enum px_check { PX_CHECK_NONE, PX_CHECK_TCP, PX_CHECK_HTTP };

#define PX_HOST_MAX 128
#define PX_PATH_MAX 256

typedef struct px_server {
    char name[PX_NAME_MAX];
    tpc_addr addr;
    unsigned weight; /* 1 to 256 */
    int line;
} px_server;

typedef struct px_backend {
    char name[PX_NAME_MAX];
    int balance; /* enum px_balance */
    px_server *servers;
    unsigned nservers;
    int check; /* enum px_check */
    int64_t check_interval_ns;
    unsigned rise, fall;
    char check_path[PX_PATH_MAX]; /* check = http: GET this (default "/") */
    int line;
} px_backend;

/* route = HOST PATHPREFIX BACKEND (HTTP mode): HOST is a name (compared without case, the
 * request's port ignored) or *; PATHPREFIX starts with /. The first that matches wins. */
typedef struct px_route {
    char host[PX_HOST_MAX];
    char prefix[PX_PATH_MAX];
    size_t prefix_len;
    char backend_name[PX_NAME_MAX];
    unsigned backend; /* index into px_config.backends, once validated */
    int line;
} px_route;

typedef struct px_frontend {
    char name[PX_NAME_MAX];
    tpc_addr listen;
    bool has_listen;
    int mode;         /* enum px_mode */
    unsigned maxconn; /* per process */
    bool handoff;     /* accept = handoff: TPC_SERVER_HANDOFF */
    int64_t client_idle_ns, server_connect_ns, server_idle_ns, http_request_ns;
    char backend_name[PX_NAME_MAX];
    int backend_line;
    unsigned backend; /* index into px_config.backends, once validated */
    px_route *routes; /* HTTP mode, in the order of the file */
    unsigned nroutes;
    int mode_line;
    int line;
} px_frontend;

typedef struct px_config {
    px_frontend *frontends;
    unsigned nfrontends;
    px_backend *backends;
    unsigned nbackends;
    bool has_stats;
    tpc_addr stats_listen;
} px_config;

/* Reads and validates `file`. Every error goes to errs (NULL: none written) as
 * "FILE:LINE: message". Returns the number of errors (0: *out holds the configuration, to free
 * with px_config_free), or a negative errno when the file cannot be read (also reported). */
int px_config_load(const char *file, px_config **out, FILE *errs);
void px_config_free(px_config *c);

/* "5s", "200ms", "1m", "250us", "0" (a bare number: milliseconds). 0 or -EINVAL. */
int px_duration_parse(const char *text, int64_t *ns);

/* Index of the backend or server named `name`, or -1. */
int px_backend_find(const px_config *c, const char *name);

#endif
