/* libFuzzer target for tpc-proxy's HTTP heads and body framing (http-head.c): a request or a
 * response (the input's first byte says which, whether it answers a HEAD request, whether its
 * body is de-chunked, and the size of the pieces) is fed whole and in pieces, as the proxy
 * does (the head in one buffer, then the body). Checked:
 * - both ways give the same result: error status, head length, re-written head, body bytes
 *   taken, end of message;
 * - a re-written head is a well-formed head of its own: parsed again it ends exactly where it
 *   ends, with the same method and target (or status), no hop-by-hop header, and for a request
 *   exactly one X-Forwarded-For ending with the client's address and one Host;
 * - the body is framed exactly: the re-written head followed by the body bytes taken (as the
 *   proxy forwards them) parse again as one complete message, ending at the last byte.
 * Built into the fuzz configuration (tests/fuzz/meson.build, target fuzz-proxy-head; seeds in
 * tests/fuzz/corpus/proxy-head). Linked with ../corpus-replay.c it replays files of hex lines: the
 * proxy-head-corpus test does so with http-head-corpus.hex. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http-head.h"

#define CAP (HH_HEAD_MAX + 2048) /* the proxy's buffer holds more than a head */
#define XFF "192.0.2.1"

typedef struct result {
    int r;
    short status;
    uint32_t head_len;
    size_t out_len;
    char out[HH_HEAD_MAX + HH_EXTRA];
    char *body; /* the body bytes taken (or de-chunked data) */
    size_t body_len;
    bool done, body_error;
    bool until_eof, dechunked;
} result;

static int collect(void *arg, const char *p, size_t n)
{
    result *res = arg;
    memcpy(res->body + res->body_len, p, n);
    res->body_len += n;
    return 0;
}

static void rewrite(const hh_msg *m, const char *buf, bool dechunk, result *res)
{
    if (m->response)
        res->out_len =
            hh_response_write(m, buf, !m->keep_alive, false, dechunk, res->out, sizeof(res->out));
    else
        res->out_len = hh_request_write(m, buf, XFF, res->out, sizeof(res->out));
    if (res->out_len == 0 || res->out_len > sizeof(res->out))
        abort(); /* HH_EXTRA is enough room for what a re-write adds */
}

static void run(const uint8_t *in, size_t len, size_t piece, bool response, bool head_request,
                bool dechunk, result *res)
{
    static char buf[CAP];
    hh_msg m;
    hh_init(&m, response, head_request);
    size_t have = 0, off = 0;
    int r = HH_NEED;
    while (r == HH_NEED && off < len) {
        size_t n = len - off < piece ? len - off : piece;
        if (n > CAP - have)
            n = CAP - have;
        if (n == 0)
            abort(); /* a full buffer must have been an error */
        memcpy(buf + have, in + off, n);
        have += n;
        off += n;
        r = hh_head_feed(&m, buf, have);
    }
    res->r = r;
    res->status = m.status;
    res->head_len = r == HH_HEAD ? m.head_len : 0;
    if (r == HH_ERROR && (m.status < 400 || m.status > 505 || !m.why))
        abort();
    if (r != HH_HEAD)
        return;
    if (m.head_len > have || m.head_len > HH_HEAD_MAX)
        abort();
    dechunk = dechunk && m.chunked;
    res->dechunked = dechunk;
    rewrite(&m, buf, dechunk, res);
    res->until_eof = m.until_eof;
    if (dechunk) {
        m.dechunk = true;
        m.on_data = collect;
        m.arg = res;
    }
    /* the body: what follows the head in buf, then the rest of the input, in pieces */
    size_t pos = m.head_len;
    while (!m.done) {
        const char *p;
        size_t n;
        if (pos < have) {
            p = buf + pos;
            n = have - pos < piece ? have - pos : piece;
        } else if (off < len) {
            p = (const char *)in + off;
            n = len - off < piece ? len - off : piece;
        } else {
            hh_body_eof(&m); /* done if framed by the end of the stream */
            break;
        }
        long used = hh_body_feed(&m, p, n);
        if (used < 0) {
            res->body_error = true;
            res->body_len = 0; /* what was taken before depends on the pieces: forget it */
            break;
        }
        if ((size_t)used > n || (used == 0 && !m.done))
            abort(); /* more than given, or no progress */
        if (!dechunk) {
            memcpy(res->body + res->body_len, p, (size_t)used);
            res->body_len += (size_t)used;
        }
        if (pos < have)
            pos += (size_t)used;
        else
            off += (size_t)used;
    }
    res->done = m.done;
}

/* The checks on a re-written head and the body bytes that follow it. */
static void check_rewritten(const result *res, const uint8_t *in, size_t len, bool response,
                            bool head_request)
{
    static char copy[CAP + HH_EXTRA];
    static hh_msg m, orig;
    if (res->out_len > HH_HEAD_MAX)
        return; /* (X-Forwarded-For made it longer than this parser takes) */
    hh_init(&m, response, head_request);
    memcpy(copy, res->out, res->out_len);
    int r = hh_head_feed(&m, copy, res->out_len);
    if (r == HH_ERROR && m.too_many)
        return; /* (X-Forwarded-For or Host was one more than this parser takes) */
    if (r != HH_HEAD || m.head_len != res->out_len)
        abort(); /* not a well-formed head, or not ending where it ends */
    unsigned xff = 0, host = 0, connection = 0;
    for (unsigned i = 0; i < m.nfields; i++) {
        if (m.kind[i] == HK_HOP)
            abort(); /* a hop-by-hop header went through */
        connection += m.kind[i] == HK_CONNECTION;
        xff += m.kind[i] == HK_XFF;
        host += m.kind[i] == HK_HOST;
    }
    if (connection > (response ? 1u : 0u))
        abort(); /* a response has at most the proxy's own */
    /* the original head, parsed again, for its method, target and status */
    hh_init(&orig, response, head_request);
    size_t n = len < CAP ? len : CAP;
    memcpy(copy, in, n);
    if (hh_head_feed(&orig, copy, n) != HH_HEAD)
        abort();
    if (!response) {
        unsigned xff_before = 0;
        for (unsigned i = 0; i < orig.nfields; i++)
            xff_before += orig.kind[i] == HK_XFF;
        int last = -1;
        for (unsigned i = 0; i < m.nfields; i++)
            last = m.kind[i] == HK_XFF ? (int)i : last;
        size_t vlen;
        const char *v = last >= 0 ? hh_value(&m, res->out, (unsigned)last, &vlen) : NULL;
        if (xff != (xff_before ? xff_before : 1) || host != 1 || !v || vlen < strlen(XFF) ||
            memcmp(v + vlen - strlen(XFF), XFF, strlen(XFF)))
            abort(); /* the client's address, last in the last X-Forwarded-For */
        hh_span auth, rest;
        const char *want = copy + orig.target.off, *got = res->out + m.target.off;
        size_t wlen = orig.target.len;
        if (hh_absolute(&orig, copy, &auth, &rest)) { /* origin form, the authority as Host */
            int hi = hh_find(&m, HK_HOST);
            size_t hlen;
            const char *hv = hi >= 0 ? hh_value(&m, res->out, (unsigned)hi, &hlen) : NULL;
            if (!hv || hlen != auth.len || memcmp(hv, copy + auth.off, hlen))
                abort();
            bool slash = rest.len && copy[rest.off] == '/';
            if (!slash && (m.target.len == 0 || got[0] != '/'))
                abort();
            want = copy + rest.off;
            wlen = rest.len;
            got += !slash;
            if (m.target.len != wlen + !slash)
                abort();
        } else if (m.target.len != wlen) {
            abort();
        }
        if (m.p.method != orig.p.method || memcmp(got, want, wlen))
            abort();
    } else if (m.p.status_code != orig.p.status_code) {
        abort();
    }
    /* framing: head + body bytes as forwarded make one complete message, exactly */
    if (res->dechunked || !res->done)
        return;
    hh_msg *b = &m;
    hh_init(b, response, head_request);
    memcpy(copy, res->out, res->out_len);
    if (hh_head_feed(b, copy, res->out_len) != HH_HEAD)
        abort();
    long used = res->body_len ? hh_body_feed(b, res->body, res->body_len) : 0;
    if (!b->done && res->until_eof)
        hh_body_eof(b);
    if (used < 0 || (size_t)used != res->body_len || !b->done)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool response = data[0] & 1, head_request = data[0] & 2, dechunk = data[0] & 4;
    size_t piece = (data[0] >> 3) + 1;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    static result whole, pieces;
    whole = (result){0};
    pieces = (result){0};
    whole.body = malloc(len + 1);
    pieces.body = malloc(len + 1);
    if (!whole.body || !pieces.body)
        abort();
    run(in, len, len ? len : 1, response, head_request, dechunk, &whole);
    run(in, len, piece, response, head_request, dechunk, &pieces);
    if (whole.r != pieces.r || whole.status != pieces.status || whole.head_len != pieces.head_len ||
        whole.out_len != pieces.out_len || memcmp(whole.out, pieces.out, whole.out_len) ||
        whole.body_len != pieces.body_len || memcmp(whole.body, pieces.body, whole.body_len) ||
        whole.done != pieces.done || whole.body_error != pieces.body_error)
        abort(); /* the result depends on how the input arrives */
    if (whole.r == HH_HEAD)
        check_rewritten(&whole, in, len, response, head_request);
    free(whole.body);
    free(pieces.body);
    return 0;
}
