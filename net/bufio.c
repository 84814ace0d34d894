/* Buffered socket reading and writing (tpc_rbuf, tpc_wbuf). The reader keeps one contiguous
 * buffer, compacted before it grows, so that a line or a counted payload is always one span the
 * caller can parse in place. The writer keeps a list of segments, copies of small appends and
 * references to large ones, and sends them with one sendmsg per batch of segments. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define RBUF_MIN   (16u * 1024) /* the first allocation, and the least room one receive gets */
#define WBUF_CHUNK (16u * 1024) /* a copy segment's size when appends are small */
#define WBUF_IOV   64           /* segments per sendmsg */
#define WBUF_SMALL 256u         /* the first size of a copy segment after a reference */
#define BUF_LIMIT  ((size_t)1 << 20)

int tpc_rbuf_init(tpc_rbuf *b, int fd, size_t limit)
{
    if (!b)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    memset(b, 0, sizeof(*b));
    b->fd = fd;
    b->limit = limit ? limit : BUF_LIMIT;
    return 0;
}

void tpc_rbuf_destroy(tpc_rbuf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->start = b->end = b->cap = b->scan = 0;
}

size_t tpc_rbuf_len(const tpc_rbuf *b)
{
    return b ? b->end - b->start : 0;
}

const char *tpc_rbuf_data(const tpc_rbuf *b)
{
    return b && b->data ? b->data + b->start : "";
}

int tpc_rbuf_consume(tpc_rbuf *b, size_t n)
{
    if (!b || n > b->end - b->start)
        return -EINVAL;
    b->start += n;
    b->scan = b->scan > n ? b->scan - n : 0;
    if (b->start == b->end) {
        b->start = b->end = 0;
        if (b->cap > 4 * RBUF_MIN) { /* a large message passed: give its memory back */
            free(b->data);
            b->data = NULL;
            b->cap = 0;
        }
    }
    return 0;
}

/* Makes room for a receive: compacts, then grows (doubling, up to the limit). Returns the room,
 * 0 when the limit is reached, or -ENOMEM. */
static ssize_t rbuf_room(tpc_rbuf *b)
{
    size_t len = b->end - b->start;
    if (b->cap - b->end >= RBUF_MIN || (b->cap == b->limit && b->end < b->cap))
        return (ssize_t)(b->cap - b->end);
    if (b->start && (b->cap - len >= RBUF_MIN || b->cap == b->limit)) {
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
        return (ssize_t)(b->cap - b->end);
    }
    if (b->cap >= b->limit) {
        if (b->start) {
            memmove(b->data, b->data + b->start, len);
            b->start = 0;
            b->end = len;
        }
        return (ssize_t)(b->cap - b->end);
    }
    size_t cap = b->cap ? b->cap * 2 : RBUF_MIN;
    while (cap - len < RBUF_MIN)
        cap *= 2;
    if (cap > b->limit)
        cap = b->limit;
    char *d = malloc(cap);
    if (!d)
        return -ENOMEM;
    if (len)
        memcpy(d, b->data + b->start, len);
    free(b->data);
    b->data = d;
    b->cap = cap;
    b->start = 0;
    b->end = len;
    return (ssize_t)(cap - len);
}

ssize_t tpc_rbuf_fill(tpc_rbuf *b)
{
    if (!b)
        return -EINVAL;
    if (b->end - b->start >= b->limit)
        return -ENOBUFS;
    ssize_t room = rbuf_room(b);
    if (room <= 0)
        return room < 0 ? room : -ENOBUFS;
    ssize_t n = tpc_recv(b->fd, b->data + b->end, (size_t)room, 0);
    if (n > 0)
        b->end += (size_t)n;
    return n;
}

ssize_t tpc_rbuf_line(tpc_rbuf *b, const char **line)
{
    if (!b || !line)
        return -EINVAL;
    for (;;) {
        size_t len = b->end - b->start;
        const char *p = b->data ? b->data + b->start : NULL;
        const char *nl = len > b->scan ? memchr(p + b->scan, '\n', len - b->scan) : NULL;
        if (nl) {
            b->scan = 0;
            *line = p;
            return nl - p + 1;
        }
        b->scan = len;
        if (len >= b->limit)
            return -EMSGSIZE;
        ssize_t n = tpc_rbuf_fill(b);
        if (n <= 0)
            return n;
    }
}

ssize_t tpc_rbuf_need(tpc_rbuf *b, size_t n, const char **data)
{
    if (!b || !data)
        return -EINVAL;
    if (n > b->limit)
        return -EMSGSIZE;
    while (b->end - b->start < n) {
        ssize_t got = tpc_rbuf_fill(b);
        if (got <= 0)
            return got;
    }
    *data = tpc_rbuf_data(b);
    return (ssize_t)n;
}

/* ---- The writer ---- */

struct tpc__wseg {
    char *p;
    size_t len; /* bytes from p still to send */
    size_t cap; /* a copy segment's size (its memory starts at base); 0: a reference */
    char *base; /* a copy segment's memory */
    tpc_release_fn release;
    void *arg;
};

int tpc_wbuf_init(tpc_wbuf *w, int fd, size_t limit)
{
    if (!w)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->limit = limit ? limit : BUF_LIMIT;
    return 0;
}

static void seg_drop(tpc_wbuf *w, struct tpc__wseg *g)
{
    if (g->cap) {
        w->mem -= g->cap;
        if (!w->spare && g->cap == WBUF_CHUNK)
            w->spare = g->base;
        else
            free(g->base);
    } else if (g->release) {
        g->release(g->arg);
    }
}

void tpc_wbuf_destroy(tpc_wbuf *w)
{
    if (!w)
        return;
    for (unsigned i = w->head; i < w->nsegs; i++)
        seg_drop(w, &w->segs[i]);
    free(w->segs);
    free(w->spare);
    w->segs = NULL;
    w->spare = NULL;
    w->head = w->nsegs = w->capsegs = 0;
    w->len = w->mem = 0;
}

size_t tpc_wbuf_pending(const tpc_wbuf *w)
{
    return w ? w->len : 0;
}

/* A new segment at the end (its fields zeroed), or NULL without memory. */
static struct tpc__wseg *seg_push(tpc_wbuf *w)
{
    if (w->head == w->nsegs)
        w->head = w->nsegs = 0;
    if (w->nsegs == w->capsegs) {
        if (w->head) { /* slide the live segments down before growing */
            memmove(w->segs, w->segs + w->head, (w->nsegs - w->head) * sizeof(*w->segs));
            w->nsegs -= w->head;
            w->head = 0;
        }
        if (w->nsegs == w->capsegs) {
            unsigned cap = w->capsegs ? w->capsegs * 2 : 8;
            struct tpc__wseg *s = realloc(w->segs, cap * sizeof(*s));
            if (!s)
                return NULL;
            w->segs = s;
            w->capsegs = cap;
        }
    }
    struct tpc__wseg *g = &w->segs[w->nsegs++];
    memset(g, 0, sizeof(*g));
    return g;
}

/* The free bytes at the end of the last segment if it is a copy (0 if none); *after_ref says
 * whether the last segment is a reference. */
static size_t tail_room(const tpc_wbuf *w, bool *after_ref)
{
    *after_ref = false;
    if (w->nsegs == w->head)
        return 0;
    const struct tpc__wseg *g = &w->segs[w->nsegs - 1];
    *after_ref = !g->cap;
    return g->cap ? g->cap - (size_t)(g->p - g->base) - g->len : 0;
}

/* A new copy segment with room for n bytes, in *out: 0, -ENOBUFS (the chunks' memory would pass
 * the limit, give or take one chunk) or -ENOMEM. A chunk that follows a reference starts small,
 * so that copies between references do not take a whole chunk each. */
static int wbuf_chunk(tpc_wbuf *w, size_t n, bool after_ref, char **out)
{
    size_t cap = n > WBUF_CHUNK                ? n
                 : after_ref && n < WBUF_SMALL ? WBUF_SMALL
                 : after_ref                   ? n
                                               : WBUF_CHUNK;
    size_t bound = w->limit > SIZE_MAX - WBUF_CHUNK ? SIZE_MAX : w->limit + WBUF_CHUNK;
    if (w->mem > bound || cap > bound - w->mem)
        return -ENOBUFS;
    char *mem = cap == WBUF_CHUNK && w->spare ? w->spare : malloc(cap);
    if (!mem)
        return -ENOMEM;
    struct tpc__wseg *g = seg_push(w);
    if (!g) {
        if (mem != w->spare)
            free(mem);
        return -ENOMEM;
    }
    if (mem == w->spare)
        w->spare = NULL;
    g->base = g->p = mem;
    g->cap = cap;
    w->mem += cap;
    *out = mem;
    return 0;
}

/* Room for n contiguous bytes at the end of a copy segment, in *out (wbuf_chunk's errors). */
static int wbuf_room(tpc_wbuf *w, size_t n, char **out)
{
    bool after_ref;
    if (tail_room(w, &after_ref) >= n) {
        struct tpc__wseg *g = &w->segs[w->nsegs - 1];
        *out = g->p + g->len;
        return 0;
    }
    return wbuf_chunk(w, n, after_ref, out);
}

int tpc_wbuf_reserve(tpc_wbuf *w, size_t n, void **out)
{
    if (!w || !out)
        return -EINVAL;
    if (n > w->limit - w->len)
        return -ENOBUFS;
    char *p;
    int rc = wbuf_room(w, n ? n : 1, &p);
    if (rc < 0)
        return rc;
    w->resv = n;
    *out = p;
    return 0;
}

int tpc_wbuf_commit(tpc_wbuf *w, size_t n)
{
    if (!w || n > w->resv)
        return -EINVAL;
    w->resv = 0;
    if (n) {
        w->segs[w->nsegs - 1].len += n;
        w->len += n;
    }
    return 0;
}

int tpc_wbuf_append(tpc_wbuf *w, const void *p, size_t n)
{
    if (!w || (!p && n))
        return -EINVAL;
    if (n > w->limit - w->len)
        return -ENOBUFS;
    if (!n)
        return 0;
    /* What fits goes at the end of the last chunk, the rest in a new one: no chunk is left
     * part empty, so that the chunks' memory stays close to the bytes pending. */
    bool after_ref;
    size_t k = tail_room(w, &after_ref);
    k = k < n ? k : n;
    if (k) {
        struct tpc__wseg *g = &w->segs[w->nsegs - 1];
        memcpy(g->p + g->len, p, k);
        g->len += k;
        w->len += k;
    }
    if (n > k) {
        char *dst;
        int rc = wbuf_chunk(w, n - k, after_ref, &dst);
        if (rc < 0) { /* nothing appended: the first part is taken back */
            if (k)
                w->segs[w->nsegs - 1].len -= k;
            w->len -= k;
            return rc;
        }
        memcpy(dst, (const char *)p + k, n - k);
        w->segs[w->nsegs - 1].len += n - k;
        w->len += n - k;
    }
    w->resv = 0;
    return 0;
}

/* A reference shorter than this is copied (and released at once): each reference costs a
 * segment, so the limit on pending bytes also bounds the segments (at most one per WBUF_REF_MIN
 * bytes), and a copy of a few bytes is cheaper than a segment anyway. */
#define WBUF_REF_MIN 256

int tpc_wbuf_append_ref(tpc_wbuf *w, const void *p, size_t n, tpc_release_fn release, void *arg)
{
    if (!w || (!p && n))
        return -EINVAL;
    if (n > w->limit - w->len)
        return -ENOBUFS;
    if (n && n < WBUF_REF_MIN) {
        int rc = tpc_wbuf_append(w, p, n);
        if (rc == 0 && release)
            release(arg);
        return rc;
    }
    struct tpc__wseg *g = seg_push(w);
    if (!g)
        return -ENOMEM;
    g->p = (char *)p;
    g->len = n;
    g->release = release;
    g->arg = arg;
    w->resv = 0;
    w->len += n;
    if (!n) { /* nothing to send: released at once, as if sent */
        w->nsegs--;
        if (release)
            release(arg);
    }
    return 0;
}

/* Takes n sent bytes off the front. */
static void wbuf_sent(tpc_wbuf *w, size_t n)
{
    w->len -= n;
    while (n) {
        struct tpc__wseg *g = &w->segs[w->head];
        size_t k = n < g->len ? n : g->len;
        g->p += k;
        g->len -= k;
        n -= k;
        if (g->len == 0) {
            seg_drop(w, g);
            w->head++;
        }
    }
    if (w->head == w->nsegs)
        w->head = w->nsegs = 0;
}

ssize_t tpc_wbuf_flush(tpc_wbuf *w)
{
    if (!w)
        return -EINVAL;
    size_t total = 0;
    while (w->len) {
        struct iovec iov[WBUF_IOV];
        int k = 0;
        size_t room = TPC_IO_MAX; /* what one send may carry: the rest goes in the next */
        for (unsigned i = w->head; i < w->nsegs && k < WBUF_IOV && room; i++)
            if (w->segs[i].len) {
                size_t n = w->segs[i].len < room ? w->segs[i].len : room;
                iov[k++] = (struct iovec){.iov_base = w->segs[i].p, .iov_len = n};
                room -= n;
            }
        ssize_t n = tpc_sendv(w->fd, iov, k);
        if (n < 0)
            return n;
        if (n == 0)
            return -EPIPE;
        wbuf_sent(w, (size_t)n);
        total += (size_t)n;
    }
    w->resv = 0;
    return (ssize_t)total;
}
