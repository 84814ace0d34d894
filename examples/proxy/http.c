/* tpc-proxy's HTTP/1.1 mode (http.h, README.md).
 *
 * A fiber per client connection handles one request at a time: it reads the request head into
 * its client buffer (bytes after it stay there: the body, or the next pipelined request), picks
 * a backend by the routes and a server by the backend's balance, takes a keep-alive connection
 * to that server from this shard's pool (or connects), sends the re-written head with the
 * first body bytes in one call, streams the rest of the body, reads the response head, sends
 * its re-written head with the first body bytes in one call, streams the rest, and puts the
 * server connection back in the pool. Only then is the next request read. Buffers are fixed
 * per connection (allocated once, with the connection), so a slow reader on either side slows
 * the other down instead of making the proxy buffer. No allocation per request.
 *
 * Idle keep-alive connections hold no fiber: a connection that has waited PARK_AFTER for its
 * next request with nothing read gives back its buffers and its fiber, leaving a small hpark
 * record and a tpc_watch on its socket (or the server's connection fiber returns TPC_CONN_KEEP);
 * when bytes arrive, the watch spawns a fiber that takes the connection up again. Under load
 * the next request comes well within PARK_AFTER, so a busy connection never pays for it. */
#include "http.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include "http-head.h"
#include "proxy.h"

#define CBUF         (HH_HEAD_MAX + 16384) /* client input: a head and what follows it */
#define UBUF         (HH_HEAD_MAX + 16384) /* server input */
#define JOIN_MAX     8192 /* first body bytes up to this are copied after the head: one send */
#define OUTBUF       (HH_HEAD_MAX + HH_EXTRA + JOIN_MAX)
#define PARK_AFTER   (50 * 1000 * 1000LL)   /* ns idle before a keep-alive connection parks */
#define LINGER_NS    (2000 * 1000 * 1000LL) /* a lingering close reads on for this long, at most */
#define POOL_SERVERS 64                     /* servers with idle connections, per shard */
#define POOL_PER     512                    /* idle connections per server, per shard */

/* ---- The per-shard pool of idle keep-alive connections to servers, by address ---- */

typedef struct pool_slot {
    tpc_addr addr;
    int n;
    int fd[POOL_PER];
} pool_slot;

typedef struct shard_pool {
    unsigned nslots;
    pool_slot slot[POOL_SERVERS];
} shard_pool;

static shard_pool *pools[TPC_MAX_SHARDS]; /* each shard's own, made on first use */

static bool same_addr(const tpc_addr *a, const tpc_addr *b)
{
    return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

static pool_slot *pool_find(const tpc_addr *a, bool add)
{
    shard_pool **pp = &pools[tpc_shard_id()];
    if (!*pp && !(*pp = calloc(1, sizeof(**pp))))
        return NULL;
    shard_pool *p = *pp;
    for (unsigned i = 0; i < p->nslots; i++)
        if (same_addr(&p->slot[i].addr, a))
            return &p->slot[i];
    if (!add || p->nslots == POOL_SERVERS)
        return NULL;
    pool_slot *s = NULL;
    for (unsigned i = 0; i < p->nslots && !s; i++) /* one left empty (a server gone by reload) */
        s = p->slot[i].n == 0 ? &p->slot[i] : NULL;
    if (!s && p->nslots == POOL_SERVERS)
        return NULL;
    if (!s)
        s = &p->slot[p->nslots++];
    s->addr = *a;
    s->n = 0;
    return s;
}

/* Whether a pooled connection may carry a request: nothing arrived on it while it was idle
 * (not the server's close, not a stray answer such as an idle server's 408, which would be
 * taken for the next request's response). */
static bool pool_usable(int fd)
{
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* An idle connection to the server at a, or -1. The most recently used comes first, each looked
 * at before use (one system call): a server that spoke on it while it was idle, even
 * milliseconds after its last answer (a stray second response), would have its words taken
 * for the next client's response. */
static int pool_get(const tpc_addr *a)
{
    pool_slot *s = pools[tpc_shard_id()] ? pool_find(a, false) : NULL;
    while (s && s->n) {
        int fd = s->fd[--s->n];
        if (pool_usable(fd))
            return fd;
        tpc_close(fd);
    }
    return -1;
}

static void pool_put(const tpc_addr *a, int fd)
{
    pool_slot *s = pool_find(a, true);
    if (s && s->n < POOL_PER) {
        s->fd[s->n++] = fd;
    } else {
        tpc_close(fd);
    }
}

/* RFC 9110 9.2.2: a request that may be sent again when a connection fails before any
 * answer (nginx and HAProxy retry only these, too). */
static bool idempotent(const hh_msg *m)
{
    switch (m->p.method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
        return true;
    default:
        return false;
    }
}

/* ---- A client connection ---- */

typedef struct hconn {
    int cfd;
    fe_rt *fe;
    gen *g;
    const px_frontend *f;
    shard_counters *sc;
    fe_http *fh;
    tpc_addr peer;
    char xff[128]; /* the client's address without port: X-Forwarded-For */
    size_t cs, ce; /* client input not yet used: cbuf[cs..ce) */
    size_t us, ue; /* server input: ubuf[us..ue) */
    int kind;      /* the error kind of the last failure (E_COUNT: none) */
    bool linger;   /* the proxy answered last and closes: the client may still be sending */
    bool abort;    /* a response cut short: the client gets a reset, not an end that looks whole */
    struct hconn *idle_prev, *idle_next; /* in its shard's idle list (waiting, nothing read) */
    uint64_t idle_since; /* tpc_now() when the wait for the next request began (0: none) */
    bool owned;          /* parked once: the program owns cfd now (the server let go of it) */
    bool resumed;        /* runs in a fiber a watch spawned (in its shard's resumed list) */
    tpc_fiber *fiber;
    tpc_fiber *pump; /* sends the rest of a request body while the response is read */
    int pump_rc;     /* its result: XR_OK, or why it stopped */
    bool pump_done;
    uint64_t pump_done_at; /* tpc_now() when it was done */
    int pump_ufd;
    struct hconn *res_prev, *res_next;
    tpc_rx *rx;   /* the client's receive stream (NULL: plain tpc_recv) */
    tpc_buf held; /* a chunk of it not yet copied whole into cbuf */
    size_t held_off;
    hh_msg req, resp;
    char cbuf[CBUF], ubuf[UBUF], out[OUTBUF];
} hconn;

/* Busy connections' records (hconn, about 90 KB: three buffers) come from per-shard slabs of
 * HSLAB records in one mapping, not malloc: as mappings of their own (glibc's mmap threshold)
 * each busy connection took one of the 65,530 a process may have, and each start and end was an
 * mmap and a munmap; from the heap, a burst's peak stayed resident. A freed record stays warm for
 * the next connection up to HWARM of them a shard; past that its pages go back to the kernel
 * (MADV_DONTNEED) and it waits, cold, for a burst. */
#define HSLAB 16
#define HWARM 64
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h> /* a freed record is poisoned: ASan still sees its misuse */
#define HCONN_POISON(h)   ASAN_POISON_MEMORY_REGION(h, sizeof(hconn))
#define HCONN_UNPOISON(h) ASAN_UNPOISON_MEMORY_REGION(h, sizeof(hconn))
#else
#define HCONN_POISON(h)   ((void)(h))
#define HCONN_UNPOISON(h) ((void)(h))
#endif
typedef struct hpool {
    hconn **warm, **cold;
    size_t nwarm, ncold, capcold;
    size_t size; /* sizeof(hconn) in whole pages (mmap's and madvise's unit) */
} hpool;
static hpool hpools[TPC_MAX_SHARDS];

static hconn *hconn_take(void)
{
    hpool *hp = &hpools[tpc_shard_id()];
    if (hp->nwarm)
        return hp->warm[--hp->nwarm];
    if (!hp->ncold) {
        if (!hp->size) {
            size_t page = (size_t)sysconf(_SC_PAGESIZE);
            hp->size = (sizeof(hconn) + page - 1) / page * page;
        }
        if (!hp->warm && !(hp->warm = malloc(HWARM * sizeof(*hp->warm))))
            return NULL;
        if (hp->capcold < HSLAB) {
            hconn **c = realloc(hp->cold, HSLAB * sizeof(*c));
            if (!c)
                return NULL;
            hp->cold = c;
            hp->capcold = HSLAB;
        }
        char *m = mmap(NULL, hp->size * HSLAB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        for (size_t i = HSLAB; i-- > 0;)
            hp->cold[hp->ncold++] = (hconn *)(m + i * hp->size);
    }
    return hp->cold[--hp->ncold];
}

static hconn *hconn_new(void)
{
    hconn *h = hconn_take();
    if (h)
        HCONN_UNPOISON(h);
    return h;
}

static void hconn_free(hconn *h)
{
    if (!h)
        return;
    HCONN_POISON(h);
    hpool *hp = &hpools[tpc_shard_id()];
    if (hp->nwarm < HWARM) {
        hp->warm[hp->nwarm++] = h;
        return;
    }
    madvise(h, hp->size, MADV_DONTNEED);
    if (hp->ncold == hp->capcold) {
        size_t cap = hp->capcold * 2;
        hconn **c = realloc(hp->cold, cap * sizeof(*c));
        if (!c) /* kept out of the pool (its pages given back): lost to reuse only */
            return;
        hp->cold = c;
        hp->capcold = cap;
    }
    hp->cold[hp->ncold++] = h;
}

/* Each shard's keep-alive connections waiting for a request with nothing read of it, which a
 * drain closes at once (the others close after the response under way). */
typedef struct shard_idle {
    hconn *idle;
    bool draining;
} shard_idle;
static shard_idle idles[TPC_MAX_SHARDS];

/* Keep-alive connections parked (http_connection: park), and those taken up again. */
typedef struct hpark {
    int cfd;
    fe_rt *fe;
    gen *g;
    const px_frontend *f;
    shard_counters *sc;
    fe_http *fh;
    tpc_addr peer;
    char xff[128];
    uint64_t idle_since;
    int why; /* E_IDLE_TIMEOUT when its idle timer ended the wait, else E_COUNT */
    tpc_watch *w;
    tpc_timer idle;
    struct hpark *prev, *next; /* in its shard's parked list */
} hpark;

typedef struct shard_parked {
    hpark *parked;
    hconn *resumed; /* connections taken up again, in fibers of their own */
} shard_parked;
static shard_parked parkeds[TPC_MAX_SHARDS];

static void idle_add(hconn *h)
{
    shard_idle *s = &idles[tpc_shard_id()];
    h->idle_prev = NULL;
    h->idle_next = s->idle;
    if (s->idle)
        s->idle->idle_prev = h;
    s->idle = h;
}

static void idle_remove(hconn *h)
{
    shard_idle *s = &idles[tpc_shard_id()];
    if (h->idle_prev)
        h->idle_prev->idle_next = h->idle_next;
    else
        s->idle = h->idle_next;
    if (h->idle_next)
        h->idle_next->idle_prev = h->idle_prev;
}

int http_drain(void *arg)
{
    (void)arg;
    shard_idle *s = &idles[tpc_shard_id()];
    s->draining = true;
    for (hconn *h = s->idle; h; h = h->idle_next)
        tpc_sock_shutdown(h->cfd, SHUT_RD); /* its recv ends: the connection closes */
    for (hpark *p = parkeds[tpc_shard_id()].parked; p; p = p->next)
        tpc_watch_stop(p->w); /* park_wake closes it (later: the list stays as it is here) */
    return 0;
}

/* ---- Receiving from the client ----
 * With plain tpc_recv into cbuf; or, with TPC_PROXY_RX=1 in the environment, through a receive
 * stream on a per-shard pool of provided buffers (tpc_rx: the kernel keeps one receive armed
 * per connection instead of one per call), each chunk copied into cbuf (a head must be
 * contiguous there) and given back at once. Measured alike (wrk, 64 connections: within the
 * noise, recv a little ahead), so recv is the default. */

#define RX_BUFS     1024
#define RX_BUF_SIZE 16384

static tpc_bufpool *rx_pools[TPC_MAX_SHARDS];
static _Atomic int rx_mode = -1; /* 1: streams, 0: tpc_recv (every shard reads it) */

static void rx_open(hconn *h)
{
    h->rx = NULL;
    h->held.len = 0;
    if (rx_mode < 0) {
        const char *e = getenv("TPC_PROXY_RX");
        rx_mode = e && !strcmp(e, "1");
    }
    tpc_bufpool **p = &rx_pools[tpc_shard_id()];
    if (!rx_mode || (!*p && tpc_bufpool_create(RX_BUFS, RX_BUF_SIZE, p) < 0))
        return;
    if (tpc_rx_open(h->cfd, *p, &h->rx) < 0)
        h->rx = NULL;
}

static void rx_close(hconn *h)
{
    if (h->held.len)
        tpc_buf_release(&h->held);
    h->held.len = 0;
    tpc_rx_close(h->rx);
}

/* Up to cap bytes from the client into dst: like tpc_recv. */
static ssize_t client_recv(hconn *h, char *dst, size_t cap)
{
    if (!h->rx)
        return tpc_recv(h->cfd, dst, cap, 0);
    if (!h->held.len) {
        ssize_t n = tpc_rx_next(h->rx, &h->held);
        if (n <= 0) {
            h->held.len = 0;
            return n;
        }
        h->held_off = 0;
    }
    size_t n = h->held.len - h->held_off < cap ? h->held.len - h->held_off : cap;
    memcpy(dst, h->held.data + h->held_off, n);
    h->held_off += n;
    if (h->held_off == h->held.len) {
        tpc_buf_release(&h->held);
        h->held.len = 0;
    }
    return (ssize_t)n;
}

static void fail_kind(hconn *h, int kind)
{
    count(&h->sc->errors[kind], 1);
    h->kind = kind;
}

static void count_response(hconn *h, unsigned status)
{
    unsigned cls = status / 100;
    count(&h->fh->responses[cls < 6 ? cls : 0], 1);
}

/* Sends every byte of iov[0..n) (which it advances) to fd, with `idle_ns` for each send. One
 * buffer goes with a plain send, which costs the kernel less than a sendmsg. */
static int send_all(int fd, struct iovec *iov, int n, int64_t idle_ns)
{
    while (n > 0) {
        if (iov->iov_len == 0) {
            iov++, n--;
            continue;
        }
        tpc_deadline_set_at(tpc_now() + (uint64_t)idle_ns);
        ssize_t k = n == 1 || iov[1].iov_len == 0 ? tpc_send(fd, iov->iov_base, iov->iov_len, 0)
                                                  : tpc_sendv(fd, iov, n);
        if (k < 0)
            return (int)k;
        while (k > 0) {
            size_t step = (size_t)k < iov->iov_len ? (size_t)k : iov->iov_len;
            iov->iov_base = (char *)iov->iov_base + step;
            iov->iov_len -= step;
            k -= (ssize_t)step;
            if (iov->iov_len == 0)
                iov++, n--;
        }
    }
    return 0;
}

/* A head in h->out[0..hlen) and the first body bytes: a few are copied after the head, so
 * that both go in one send of one buffer. */
static void join(hconn *h, struct iovec iov[2])
{
    if (iov[0].iov_base == h->out && iov[1].iov_len && iov[1].iov_len <= JOIN_MAX &&
        iov[0].iov_len + iov[1].iov_len <= sizeof(h->out)) {
        memcpy(h->out + iov[0].iov_len, iov[1].iov_base, iov[1].iov_len);
        iov[0].iov_len += iov[1].iov_len;
        iov[1].iov_len = 0;
    }
}

static int send_client(hconn *h, const void *p1, size_t n1, const void *p2, size_t n2)
{
    struct iovec iov[2] = {{(void *)p1, n1}, {(void *)p2, n2}};
    join(h, iov);
    int rc = send_all(h->cfd, iov, 2, h->f->client_idle_ns);
    if (rc == 0)
        count(&h->sc->bytes_out, n1 + n2);
    return rc;
}

/* An error answer (the last on the connection). */
static void answer(hconn *h, int status, const char *why)
{
    count_response(h, (unsigned)status);
    size_t n = hh_error_write(status, why, h->req.p.method == HTTP_HEAD && h->req.head_done, h->out,
                              sizeof(h->out));
    h->linger = send_client(h, h->out, n, NULL, 0) == 0;
}

static void answer_error(hconn *h, int status, const char *why, int kind)
{
    fail_kind(h, kind);
    answer(h, status, why);
}

/* Reads the next request head into cbuf. 1: a head (h->req), 0: the client is gone or went
 * idle (closed quietly), -1: answered with an error. */
static int read_request(hconn *h)
{
    if (h->cs > 0) { /* what follows the last request moves to the front */
        memmove(h->cbuf, h->cbuf + h->cs, h->ce - h->cs);
        h->ce -= h->cs;
        h->cs = 0;
    }
    hh_init(&h->req, false, false);
    uint64_t first = h->ce ? tpc_now() : 0;
    for (;;) {
        int r = hh_head_feed(&h->req, h->cbuf, h->ce);
        if (r == HH_HEAD) {
            h->cs = h->req.head_len;
            return 1;
        }
        if (r == HH_ERROR) {
            answer_error(h, h->req.status, h->req.why,
                         h->req.status == 431 ? E_HEAD_TOO_LARGE : E_BAD_REQUEST);
            return -1;
        }
        bool idle = h->ce == 0;
        if (idle && idles[tpc_shard_id()].draining)
            return 0;
        if (idle && !h->idle_since)
            h->idle_since = tpc_now();
        uint64_t idle_end = h->idle_since + (uint64_t)h->f->client_idle_ns;
        bool may_park = idle && !h->rx && tpc_now() + PARK_AFTER < idle_end;
        tpc_deadline_set_at(first      ? first + (uint64_t)h->f->http_request_ns
                            : may_park ? tpc_now() + PARK_AFTER
                                       : idle_end);
        if (idle)
            idle_add(h);
        ssize_t n = client_recv(h, h->cbuf + h->ce, sizeof(h->cbuf) - h->ce);
        if (idle)
            idle_remove(h);
        if (n == -ETIMEDOUT && may_park && tpc_now() < idle_end)
            return 2; /* idle for PARK_AFTER: the caller parks the connection */
        if (n > 0)
            h->idle_since = 0;
        if (n > 0) {
            count(&h->sc->bytes_in, (uint64_t)n);
            if (!first)
                first = tpc_now();
            h->ce += (size_t)n;
            continue;
        }
        if (n == -ETIMEDOUT && first) {
            answer_error(h, 408, "the request head did not come in time", E_REQUEST_TIMEOUT);
            return -1;
        }
        if (n == -ETIMEDOUT)
            fail_kind(h, E_IDLE_TIMEOUT);
        else if (n == -ECANCELED)
            fail_kind(h, E_CANCELLED);
        else if (n < 0 && n != -ECONNRESET)
            fail_kind(h, E_RESET);
        return 0; /* (an end of stream mid-head: nothing to answer) */
    }
}

/* The backend for the request: the first route whose host and path prefix match. */
static unsigned route(const hconn *h)
{
    const px_frontend *f = h->f;
    if (f->nroutes == 0)
        return f->backend;
    const char *t = h->cbuf + h->req.target.off, *host = NULL;
    size_t tlen = h->req.target.len, hlen = 0;
    hh_span auth, rest;
    if (hh_absolute(&h->req, h->cbuf, &auth, &rest)) { /* its authority is the host */
        host = h->cbuf + auth.off;
        hlen = auth.len;
        t = rest.len && h->cbuf[rest.off] == '/' ? h->cbuf + rest.off : "/";
        tlen = rest.len && h->cbuf[rest.off] == '/' ? rest.len : 1;
    } else {
        int i = hh_find(&h->req, HK_HOST);
        if (i >= 0)
            host = hh_value(&h->req, h->cbuf, (unsigned)i, &hlen);
    }
    while (hlen && (host[hlen - 1] == ' ' || host[hlen - 1] == '\t'))
        hlen--;
    const char *colon = hlen && host[0] != '[' ? memchr(host, ':', hlen) : NULL;
    if (hlen && host[0] == '[')
        colon = memchr(host, ']', hlen) ? (const char *)memchr(host, ']', hlen) + 1 : NULL;
    if (colon && colon < host + hlen && *colon == ':')
        hlen = (size_t)(colon - host);
    for (unsigned r = 0; r < f->nroutes; r++) {
        const px_route *rt = &f->routes[r];
        bool host_ok = (rt->host[0] == '*' && !rt->host[1]) ||
                       (strlen(rt->host) == hlen && !strncasecmp(rt->host, host, hlen));
        if (host_ok && rt->prefix_len <= tlen && !memcmp(rt->prefix, t, rt->prefix_len))
            return rt->backend;
    }
    return f->backend;
}

/* How a request's exchange ended. XR_STOPPED: the body pump was stopped by the response's side,
 * which decides what the client is told. */
enum { XR_OK, XR_RETRY, XR_CLOSE, XR_400, XR_502, XR_504, XR_STOPPED };

/* Dechunked body data for an HTTP/1.0 client. */
static int to_client(void *arg, const char *p, size_t n)
{
    hconn *h = arg;
    return send_client(h, p, n, NULL, 0) < 0 ? -1 : 0;
}

/* The rest of a request body, client to server, in a fiber of its own beside the one that reads
 * the response: a server may answer before it has the whole body (a 413, a 401, a response it
 * streams while it reads), and must not wait for the proxy to finish sending first. A failure
 * on the client's side (it went, or sent a malformed body) shuts the server connection down, so
 * that the response's reader stops waiting. */
static int body_pump(void *arg)
{
    hconn *h = arg;
    const px_frontend *f = h->f;
    int rc = XR_OK;
    while (!h->req.done && rc == XR_OK) {
        if (h->cs == h->ce) {
            h->cs = h->ce = 0;
            tpc_deadline_set_at(tpc_now() + (uint64_t)f->client_idle_ns);
            ssize_t n = client_recv(h, h->cbuf, sizeof(h->cbuf));
            if (n == -ECANCELED) {
                rc = XR_STOPPED;
                break;
            }
            if (n <= 0) {
                fail_kind(h, E_BODY_ABORTED);
                rc = XR_CLOSE;
                break;
            }
            count(&h->sc->bytes_in, (uint64_t)n);
            h->ce = (size_t)n;
        }
        long used = hh_body_feed(&h->req, h->cbuf + h->cs, h->ce - h->cs);
        if (used < 0) {
            rc = XR_400;
            break;
        }
        struct iovec b = {h->cbuf + h->cs, (size_t)used};
        int s = send_all(h->pump_ufd, &b, 1, f->server_idle_ns);
        if (s < 0) /* the server went: its response (if any) tells the rest */
            rc = s == -ECANCELED ? XR_STOPPED : XR_502;
        h->cs += (size_t)used;
    }
    if (rc == XR_CLOSE || rc == XR_400)
        tpc_sock_shutdown(h->pump_ufd, SHUT_RDWR);
    h->pump_rc = rc;
    h->pump_done = true;
    h->pump_done_at = tpc_now();
    return 0;
}

/* Ends the body pump (cancel: now, else once it has sent all); its result (XR_OK: none ran). */
static int pump_end(hconn *h, bool cancel)
{
    if (!h->pump)
        return XR_OK;
    if (cancel && !h->pump_done)
        tpc_cancel(h->pump);
    tpc_join(h->pump, NULL);
    h->pump = NULL;
    return h->pump_rc;
}

/* Sends the request (head in out[0..hlen), the first body bytes cbuf[b0..b0+b0len)) to the
 * server on ufd, starts the body pump for the rest of the body, and reads the response head
 * into ubuf.
 * XR_RETRY: a reused connection failed before anything was taken from the client after the
 * head's first bytes (the server had closed it) and the request is idempotent: another
 * connection may try again. A request that is not gets the 502 (the server may have acted
 * on it). */
static int exchange(hconn *h, int ufd, bool reused, size_t hlen, size_t b0, size_t b0len,
                    bool *streamed)
{
    reused = reused && idempotent(&h->req); /* from here: whether a failure may be retried */
    const px_frontend *f = h->f;
    struct iovec iov[2] = {{h->out, hlen}, {h->cbuf + b0, b0len}};
    join(h, iov);
    int rc = send_all(ufd, iov, 2, f->server_idle_ns);
    if (rc < 0)
        return reused && !*streamed ? XR_RETRY : rc == -ETIMEDOUT ? XR_504 : XR_502;
    if (!h->req.done) { /* the rest of the request body, beside the response */
        *streamed = true;
        h->pump_ufd = ufd;
        h->pump_done = false;
        h->pump_rc = XR_OK;
        tpc_fiber_opts o = {.name = "body", .stack_size = 64 * 1024};
        if (tpc_spawn_opts(&o, body_pump, h, &h->pump) < 0) {
            h->pump = NULL;
            return XR_502;
        }
    }
    h->us = h->ue = 0;
    hh_init(&h->resp, true, h->req.p.method == HTTP_HEAD);
    bool got = false;   /* a byte of a response (a 1xx one too) */
    uint64_t until = 0; /* the wait's deadline when not an idle period from now */
    for (;;) {
        int r = hh_head_feed(&h->resp, h->ubuf, h->ue);
        if (r == HH_ERROR)
            return XR_502;
        if (r == HH_HEAD && h->resp.p.status_code / 100 != 1)
            return XR_OK;
        if (r == HH_HEAD) { /* 1xx: passed on to an HTTP/1.1 client, then the real one */
            size_t n =
                hh_response_write(&h->resp, h->ubuf, false, false, false, h->out, sizeof(h->out));
            if (h->req.p.http_minor >= 1 && n && send_client(h, h->out, n, NULL, 0) < 0)
                return XR_CLOSE;
            size_t len = h->resp.head_len;
            memmove(h->ubuf, h->ubuf + len, h->ue - len);
            h->ue -= len;
            hh_init(&h->resp, true, h->req.p.method == HTTP_HEAD);
            continue;
        }
        tpc_deadline_set_at(until ? until : tpc_now() + (uint64_t)f->server_idle_ns);
        until = 0;
        ssize_t n = tpc_recv(ufd, h->ubuf + h->ue, sizeof(h->ubuf) - h->ue, 0);
        if (n > 0) {
            h->ue += (size_t)n;
            got = true;
            continue;
        }
        if (n == -ECANCELED) {
            fail_kind(h, E_CANCELLED);
            return XR_CLOSE;
        }
        /* The server's idle clock starts once it has the whole request, as nginx's read timeout
         * does: an upload that lasts longer is no timeout (the pump's own waits are bounded). */
        if (n == -ETIMEDOUT && h->pump && !h->pump_done)
            continue;
        if (n == -ETIMEDOUT && h->pump && tpc_now() < h->pump_done_at + f->server_idle_ns) {
            until = h->pump_done_at + (uint64_t)f->server_idle_ns;
            continue;
        }
        if (n == -ETIMEDOUT)
            return XR_504;
        return reused && !*streamed && !got ? XR_RETRY : XR_502;
    }
}

/* Sends the response (its head is in ubuf) to the client and streams its body. 0: the
 * response is complete (the server connection may be reused: *reuse); 1: complete, and the
 * client connection closes after it (as its head said); -1: failed, the client connection
 * must close. A server that will not keep its connection and has not taken the whole request
 * body may never take the rest: the client is told that the connection closes. */
static int relay_response(hconn *h, int ufd, bool *reuse)
{
    hh_msg *m = &h->resp;
    bool client_10 = h->req.p.http_minor == 0;
    bool dechunk = client_10 && m->chunked;
    bool close = !h->req.keep_alive || m->until_eof || dechunk || idles[tpc_shard_id()].draining ||
                 (h->pump && !h->pump_done && !m->keep_alive);
    if (dechunk && m->te_other) { /* chunked taken off would leave gzip (say) unsaid */
        answer_error(h, 502, "a transfer coding an HTTP/1.0 client cannot be sent", E_BAD_RESPONSE);
        return -1;
    }
    count_response(h, m->p.status_code);
    size_t hlen = hh_response_write(m, h->ubuf, close, client_10, dechunk, h->out, sizeof(h->out));
    if (hlen == 0) {
        answer_error(h, 502, "response head too large", E_BAD_RESPONSE);
        return -1;
    }
    h->us = m->head_len;
    long used = 0;
    if (dechunk) {
        m->dechunk = true;
        m->on_data = to_client;
        m->arg = h;
        if (send_client(h, h->out, hlen, NULL, 0) < 0)
            goto client_gone;
    } else {
        used = hh_body_feed(m, h->ubuf + h->us, h->ue - h->us);
        if (used < 0)
            goto server_bad;
        if (send_client(h, h->out, hlen, h->ubuf + h->us, (size_t)used) < 0)
            goto client_gone;
        h->us += (size_t)used;
    }
    while (!m->done) {
        if (h->us == h->ue) {
            h->us = h->ue = 0;
            tpc_deadline_set_at(tpc_now() + (uint64_t)h->f->server_idle_ns);
            ssize_t n = tpc_recv(ufd, h->ubuf, sizeof(h->ubuf), 0);
            if (n == 0 && hh_body_eof(m) == 0)
                break;
            if (n <= 0) {
                fail_kind(h, n == -ECANCELED ? E_CANCELLED : E_BODY_ABORTED);
                h->abort = n != -ECANCELED;
                return -1;
            }
            h->ue = (size_t)n;
        }
        used = hh_body_feed(m, h->ubuf + h->us, h->ue - h->us);
        if (used < 0)
            goto server_bad;
        if (!dechunk && send_client(h, h->ubuf + h->us, (size_t)used, NULL, 0) < 0)
            goto client_gone;
        h->us += (size_t)used;
    }
    *reuse = m->keep_alive && h->us == h->ue; /* (bytes after the response: not reused) */
    h->linger = close;
    return close ? 1 : 0;
server_bad:
    fail_kind(h, E_BODY_ABORTED); /* a malformed body mid-way: the client's answer is cut */
    h->abort = true;
    return -1;
client_gone:
    fail_kind(h, E_RESET);
    return -1;
}

static int connect_error(int rc)
{
    return rc == -ECONNREFUSED ? E_CONNECT_REFUSED
           : rc == -ETIMEDOUT  ? E_CONNECT_TIMEOUT
           : rc == -ECANCELED  ? E_CANCELLED
                               : E_CONNECT_OTHER;
}

/* One request, whose head is in h->req: forwarded to a server, its response to the client.
 * 0: the next request may follow; -1: close the client connection. */
static int proxy_request(hconn *h)
{
    count(&h->fh->requests, 1);
    unsigned bi = route(h);
    const px_backend *b = &h->g->cfg->backends[bi];
    unsigned order[PX_SERVERS_MAX];
    unsigned n = candidates(h->g, bi, &h->peer, order);
    if (n == 0) {
        answer_error(h, 503, "no server is available", E_NO_SERVER);
        return -1;
    }
    size_t hlen = hh_request_write(&h->req, h->cbuf, h->xff, h->out, sizeof(h->out));
    if (hlen == 0) {
        answer_error(h, 431, "request head too large", E_HEAD_TOO_LARGE);
        return -1;
    }
    if (h->req.continue_100 && !h->req.done &&
        send_client(h, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0) < 0)
        return -1;
    size_t b0 = h->cs;
    long b0len = hh_body_feed(&h->req, h->cbuf + h->cs, h->ce - h->cs);
    if (b0len < 0) {
        answer_error(h, 400, "malformed request body", E_BAD_REQUEST);
        return -1;
    }
    h->cs += (size_t)b0len;
    bool streamed = false;
    int x = XR_502, kind = E_CONNECT_OTHER;
    for (unsigned k = 0; k < n && !tpc_cancelled(); k++) {
        const px_server *sv = &b->servers[order[k]];
        srv_rt *r = &h->g->srv[bi][order[k]];
        bool use_pool = true;
        atomic_fetch_add(&r->c->active[tpc_shard_id()], 1);
    again:;
        int ufd = use_pool ? pool_get(&sv->addr) : -1;
        bool reused = ufd >= 0;
        if (reused)
            count(&h->sc->upstream_reused, 1);
        else {
            uint64_t t0 = tpc_now_fresh();
            tpc_deadline_set(h->f->server_connect_ns);
            ufd = tpc_connect(&sv->addr);
            if (ufd < 0) {
                kind = connect_error(ufd);
                count(&h->sc->errors[kind], 1);
                count(&r->c->errors, 1);
                atomic_fetch_sub(&r->c->active[tpc_shard_id()], 1);
                continue; /* the next server */
            }
            tpc_sock_nodelay(ufd, 1);
            count(&r->c->connect_ns, tpc_now_fresh() - t0);
            count(&r->c->connects, 1);
            count(&h->sc->upstream_new, 1);
        }
        count(&r->c->conns, 1);
        uint64_t t_sent = tpc_now_fresh();
        x = exchange(h, ufd, reused, hlen, b0, (size_t)b0len, &streamed);
        if (x == XR_RETRY) {
            tpc_close(ufd);
            use_pool = false;
            goto again;
        }
        int rc = -1;
        if (x == XR_OK) {
            count(&r->c->response_ns, tpc_now_fresh() - t_sent);
            count(&r->c->responses, 1);
            bool reuse = false;
            int sent = relay_response(h, ufd, &reuse);
            rc = sent == 0 ? 0 : -1;
            if (h->pump) { /* the body goes on after a whole response: the server may want it */
                int p = pump_end(h, sent < 0);
                if (p != XR_OK) { /* the client's body not all taken */
                    reuse = false;
                    h->linger = !h->abort;
                    rc = -1;
                }
            }
            if (reuse) {
                pool_put(&sv->addr, ufd);
                ufd = -1;
            }
        } else {
            int p = pump_end(h, true);
            if (p == XR_400 || p == XR_CLOSE) /* the client's side failed first */
                x = p;
            if (x == XR_400)
                answer_error(h, 400, "malformed request body", E_BAD_REQUEST);
            else if (x == XR_502)
                answer_error(h, 502, "the server closed or sent a malformed response",
                             E_BAD_RESPONSE);
            else if (x == XR_504)
                answer_error(h, 504, "the server did not answer in time", E_SERVER_TIMEOUT);
        } /* (XR_CLOSE: the client went, or its body stopped coming: nothing to answer) */
        if (ufd >= 0)
            tpc_close(ufd);
        atomic_fetch_sub(&r->c->active[tpc_shard_id()], 1);
        return rc;
    }
    if (kind == E_CANCELLED || tpc_cancelled())
        return -1;
    h->kind = kind; /* counted with each connect */
    answer(h, 502, "no server could be reached");
    return -1;
}

static void address_text(const tpc_addr *a, char *out, size_t size)
{
    char text[128];
    if (tpc_addr_format(a, text, sizeof(text)) < 0 || a->sa.sa_family == AF_UNIX) {
        snprintf(out, size, "unknown");
        return;
    }
    char *start = text[0] == '[' ? text + 1 : text;
    char *end = strrchr(start, text[0] == '[' ? ']' : ':');
    if (end)
        *end = '\0';
    snprintf(out, size, "%s", start);
}

/* ---- Parked keep-alive connections: a record and a watch, no fiber, no buffers ---- */

static void log_conn(int shard, const char *fe, const char *xff, int kind)
{
    if (!log_conns)
        return;
    printf("conn shard=%d frontend=%s client=%s mode=http result=%s\n", shard, fe, xff,
           kind == E_COUNT ? "ok" : err_name[kind]);
    fflush(stdout);
}

/* The end of a connection: its counts and references; closes cfd if the program owns it. */
static void conn_end(int cfd, fe_rt *fe, gen *g, shard_counters *sc, bool owned)
{
    atomic_fetch_sub(&sc->active, 1);
    if (owned)
        tpc_close(cfd); /* (tpc_close: on epoll an accepted number is kept) */
    atomic_fetch_sub(&fe->live, 1);
    gen_put(g);
    if (owned)
        fe_put(fe);
}

static void resumed_remove(hconn *h)
{
    shard_parked *sp = &parkeds[tpc_shard_id()];
    if (h->res_prev)
        h->res_prev->res_next = h->res_next;
    else
        sp->resumed = h->res_next;
    if (h->res_next)
        h->res_next->res_prev = h->res_prev;
}

/* The end of a connection. One the proxy closes after its answer gets a lingering close: a
 * client still sending (pipelined requests after a Connection: close, the rest of a head too
 * large) would otherwise get a reset that can destroy the answer before it reads it. */
static void finish(hconn *h)
{
    rx_close(h);
    if (h->abort) { /* a reset: a body ended by the close must not look whole */
        struct linger now = {1, 0};
        setsockopt(h->cfd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
    } else if (h->linger && !tpc_cancelled()) {
        tpc_sock_linger(h->cfd, LINGER_NS);
    }
    if (h->resumed)
        resumed_remove(h);
    log_conn(tpc_shard_id(), h->fe->name, h->xff, h->kind);
    conn_end(h->cfd, h->fe, h->g, h->sc, h->owned);
    hconn_free(h);
}

static void park_unlink(hpark *p)
{
    shard_parked *sp = &parkeds[tpc_shard_id()];
    if (p->prev)
        p->prev->next = p->next;
    else
        sp->parked = p->next;
    if (p->next)
        p->next->prev = p->prev;
}

static int serve(hconn *h);

/* A watch's fiber: the connection taken up again with fresh buffers. */
static int resume(void *arg)
{
    hpark *p = arg;
    hconn *h = hconn_new();
    if (!h) {
        conn_end(p->cfd, p->fe, p->g, p->sc, true);
        free(p);
        return 0;
    }
    h->cfd = p->cfd;
    h->fe = p->fe;
    h->g = p->g;
    h->f = p->f;
    h->sc = p->sc;
    h->fh = p->fh;
    h->peer = p->peer;
    memcpy(h->xff, p->xff, sizeof(h->xff));
    free(p);
    h->cs = h->ce = h->us = h->ue = 0;
    h->kind = E_COUNT;
    h->linger = h->abort = false;
    h->pump = NULL;
    h->req.head_done = false;
    h->rx = NULL;
    h->held.len = 0;
    h->idle_since = 0;
    h->owned = h->resumed = true;
    h->fiber = tpc_self();
    shard_parked *sp = &parkeds[tpc_shard_id()];
    h->res_prev = NULL;
    h->res_next = sp->resumed;
    if (sp->resumed)
        sp->resumed->res_prev = h;
    sp->resumed = h;
    serve(h);
    return 0;
}

/* The watch told: bytes (a fiber takes the connection up: during a drain too, the request
 * then answered with Connection: close), or the end of the wait (the idle limit, a drain, an
 * error, the runtime stopping): the connection closes. */
static void park_wake(tpc_watch *w, int res, void *arg)
{
    (void)w;
    hpark *p = arg;
    park_unlink(p);
    tpc_timer_stop(&p->idle);
    if (res > 0) {
        tpc_fiber_opts o = {.name = "http", .detached = true, .stack_size = 64 * 1024};
        if (tpc_spawn_opts(&o, resume, p, NULL) == 0)
            return;
    }
    if (p->why != E_COUNT)
        count(&p->sc->errors[p->why], 1);
    log_conn(tpc_shard_id(), p->fe->name, p->xff, p->why);
    conn_end(p->cfd, p->fe, p->g, p->sc, true);
    free(p);
}

static void park_idle(tpc_timer *t, void *arg)
{
    (void)t;
    hpark *p = arg;
    p->why = E_IDLE_TIMEOUT;
    tpc_watch_stop(p->w);
}

/* Gives back h's fiber and buffers while the connection waits for its next request. 0, with h
 * freed; or a negative errno, h untouched. */
static int park(hconn *h)
{
    hpark *p = malloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    *p = (hpark){.cfd = h->cfd,
                 .fe = h->fe,
                 .g = h->g,
                 .f = h->f,
                 .sc = h->sc,
                 .fh = h->fh,
                 .peer = h->peer,
                 .idle_since = h->idle_since,
                 .why = E_COUNT};
    memcpy(p->xff, h->xff, sizeof(p->xff));
    tpc_timer_init(&p->idle, park_idle, p);
    int rc = tpc_watch_start(p->cfd, POLLIN, park_wake, p, &p->w);
    if (rc < 0) {
        free(p);
        return rc;
    }
    if (!h->owned)
        atomic_fetch_add(&h->fe->refs, 1); /* the connection outlives its server's handler */
    tpc_timer_start_at(&p->idle, p->idle_since + (uint64_t)p->f->client_idle_ns, 0);
    shard_parked *sp = &parkeds[tpc_shard_id()];
    p->prev = NULL;
    p->next = sp->parked;
    if (sp->parked)
        sp->parked->prev = p;
    sp->parked = p;
    rx_close(h);
    if (h->resumed)
        resumed_remove(h);
    hconn_free(h);
    return 0;
}

/* Requests until the connection ends (1: it parked instead; h is gone either way). */
static int serve(hconn *h)
{
    int r;
    while ((r = read_request(h)) == 1 && proxy_request(h) == 0)
        ;
    if (r == 2 && park(h) == 0)
        return 1;
    finish(h);
    return 0;
}

int http_cut(void *arg)
{
    fe_rt *fe = arg;
    shard_parked *sp = &parkeds[tpc_shard_id()];
    for (hconn *h = sp->resumed; h; h = h->res_next)
        if (h->fe == fe)
            tpc_cancel(h->fiber);
    for (hpark *p = sp->parked; p; p = p->next)
        if (p->fe == fe)
            tpc_watch_stop(p->w); /* park_wake runs later: the list stays as it is here */
    return 0;
}

int http_connection(int fd, void *arg)
{
    fe_rt *fe = arg;
    int shard = tpc_shard_id();
    gen *g = shard_gen[shard];
    atomic_fetch_add(&g->refs, 1); /* no suspension since it was read */
    shard_counters *sc = &counters[shard];
    count(&sc->conns, 1);
    long live = atomic_fetch_add(&fe->live, 1) + 1;
    px_frontend *f = frontend_of(g, fe->name);
    hconn *h = NULL;
    if (!f || live > (long)f->maxconn) {
        count(&sc->errors[f ? E_MAXCONN : E_NO_SERVER], 1);
        goto out;
    }
    h = hconn_new();
    if (!h)
        goto out;
    h->cfd = fd;
    h->fe = fe;
    h->g = g;
    h->f = f;
    h->sc = sc;
    h->fh = &fe->http[shard];
    h->cs = h->ce = h->us = h->ue = 0;
    h->kind = E_COUNT;
    h->linger = h->abort = false;
    h->pump = NULL;
    h->req.head_done = false;
    h->idle_since = 0;
    h->owned = h->resumed = false;
    if (tpc_sock_peer(fd, &h->peer) < 0)
        memset(&h->peer, 0, sizeof(h->peer));
    address_text(&h->peer, h->xff, sizeof(h->xff));
    tpc_sock_nodelay(fd, 1);
    atomic_fetch_add(&sc->active, 1);
    rx_open(h);
    return serve(h) ? TPC_CONN_KEEP : 0; /* parked: the program owns fd now */
out:
    hconn_free(h);
    atomic_fetch_sub(&fe->live, 1);
    gen_put(g);
    return 0;
}

/* ---- check = http ---- */

int http_check(int fd, const char *path, const tpc_addr *addr, char *why, size_t whylen)
{
    char host[128] = "localhost"; /* a Unix socket's path is no host */
    if (addr->sa.sa_family != AF_UNIX)
        tpc_addr_format(addr, host, sizeof(host));
    char req[PX_PATH_MAX + 256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tpc-proxy-check\r\n"
                     "Connection: close\r\n\r\n",
                     path, host);
    if (tpc_write_full(fd, req, (size_t)n, -1) != n)
        return -EIO;
    hh_msg *mp = malloc(sizeof(*mp));
    char *buf = malloc(HH_HEAD_MAX);
    int rc = -ENOMEM;
    if (!mp || !buf)
        goto out;
    hh_init(mp, true, false);
    size_t have = 0;
    for (;;) {
        int r = hh_head_feed(mp, buf, have);
        if (r == HH_HEAD && mp->p.status_code >= 100 && mp->p.status_code < 200 &&
            mp->p.status_code != 101) { /* an interim answer (100 Continue): the next head */
            have -= mp->head_len;
            memmove(buf, buf + mp->head_len, have);
            hh_init(mp, true, false);
            continue;
        }
        if (r == HH_HEAD) {
            unsigned st = mp->p.status_code;
            rc = st >= 200 && st < 400 ? 0 : -EPROTO;
            if (rc < 0)
                snprintf(why, whylen, "HTTP status %u", st);
            break;
        }
        if (r == HH_ERROR || have == HH_HEAD_MAX) {
            rc = -EPROTO;
            snprintf(why, whylen, "%s", r == HH_ERROR ? mp->why : "response head too large");
            break;
        }
        ssize_t k = tpc_recv(fd, buf + have, HH_HEAD_MAX - have, 0);
        if (k <= 0) {
            rc = k == 0 ? -EPROTO : (int)k;
            if (k == 0)
                snprintf(why, whylen, "closed before a whole response head");
            break;
        }
        have += (size_t)k;
    }
out:
    free(mp);
    free(buf);
    return rc;
}
