/* A /metrics endpoint (metrics-http.h). The request is read up to its blank line (at most
 * 8 KiB, 5 s); only its request line matters. */
#include "metrics-http.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQ_MAX  8192
#define REQ_NS   (5LL * 1000 * 1000 * 1000)
#define HEAD_MAX 256

static int answer(int fd, int status, const char *type, const char *body, size_t len)
{
    char head[HEAD_MAX];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status,
                     status == 200   ? "OK"
                     : status == 404 ? "Not Found"
                     : status == 400 ? "Bad Request"
                                     : "Internal Server Error",
                     type, len);
    if (tpc_write_full(fd, head, (size_t)n, -1) < 0)
        return -1;
    return len && tpc_write_full(fd, body, len, -1) < 0 ? -1 : 0;
}

bool http_read_head(int fd, char *req, size_t cap)
{
    size_t got = 0;
    req[0] = '\0';
    tpc_deadline_set(REQ_NS);
    while (got + 1 < cap) {
        ssize_t n = tpc_recv(fd, req + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    tpc_deadline_clear();
    return strstr(req, "\r\n\r\n") != NULL;
}

static int metrics_conn(int fd, void *arg)
{
    (void)arg;
    char req[REQ_MAX + 1];
    if (!http_read_head(fd, req, sizeof(req)))
        return answer(fd, 400, "text/plain", "bad request\n", 12);
    int format = -1;
    if (!strncmp(req, "GET /metrics ", 13))
        format = TPC_METRICS_PROMETHEUS;
    else if (!strncmp(req, "GET /metrics?table ", 19))
        format = TPC_METRICS_TABLE;
    if (format < 0)
        return answer(fd, 404, "text/plain", "try /metrics\n", 13);
    ssize_t need = tpc_metrics_format(NULL, 0, format);
    char *body = need >= 0 ? malloc((size_t)need + 4096) : NULL;
    if (!body)
        return answer(fd, 500, "text/plain", "", 0);
    ssize_t len = tpc_metrics_format(body, (size_t)need + 4096, format);
    if (len > need + 4095)
        len = need + 4095; /* grew past the slack meanwhile: the rest is cut */
    answer(fd, 200,
           format == TPC_METRICS_PROMETHEUS ? "text/plain; version=0.0.4; charset=utf-8"
                                            : "text/plain; charset=utf-8",
           body, (size_t)len);
    free(body);
    return 0;
}

int metrics_start(const char *addr, tpc_server **out)
{
    tpc_addr a;
    int rc = tpc_addr_parse(addr, &a);
    if (rc < 0)
        return rc;
    tpc_server_opts o = {.stack_size = 64 * 1024};
    if ((rc = tpc_server_start(&a, &o, metrics_conn, NULL, out)) < 0)
        return rc;
    char text[128];
    tpc_server_addr(*out, &a);
    tpc_addr_format(&a, text, sizeof(text));
    printf("metrics on http://%s/metrics\n", text);
    fflush(stdout);
    return 0;
}

int metrics_stop(tpc_server *srv)
{
    return srv ? tpc_server_stop(srv) : 0;
}
