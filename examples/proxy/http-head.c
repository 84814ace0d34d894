/* HTTP/1.1 heads and body framing for tpc-proxy (http-head.h), on http_parser 2.9.
 *
 * http_parser is paused in on_headers_complete. It calls that callback with the head's last
 * byte (the LF of the empty line) not yet consumed, so hh_head_feed counts it into the head
 * itself and hands the parser a lone "\n" to move it to the body. on_message_complete pauses
 * it too, so that a body feed stops exactly at the end of the message (the rest is the next
 * pipelined message). Header callbacks give pointers into the caller's buffer: a header seen
 * in two feeds is one contiguous span there, so only offsets are kept. */
#include "http-head.h"
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(hh_msg *m, int status, const char *why)
{
    m->status = (short)status;
    m->why = why;
    return -1;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    hh_msg *m = p->data;
    if (m->target.len == 0)
        m->target.off = (uint32_t)(at - m->base);
    m->target.len = (uint32_t)(at + len - (m->base + m->target.off));
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    hh_msg *m = p->data;
    if (m->head_done)
        return 0; /* a trailer: passed on as body bytes */
    if (m->too_many)
        return 0;
    if (m->nfields == 0 || m->in_value) {
        if (m->nfields == HH_FIELDS_MAX) { /* told at the end of the head, where whole and
                                            * split input agree on what comes first */
            m->too_many = true;
            return 0;
        }
        m->name[m->nfields] = (hh_span){(uint32_t)(at - m->base), 0};
        m->value[m->nfields] = (hh_span){0, 0};
        m->nfields++;
        m->in_value = false;
    }
    hh_span *s = &m->name[m->nfields - 1];
    s->len = (uint32_t)(at + len - (m->base + s->off));
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hh_msg *m = p->data;
    if (m->head_done || m->nfields == 0 || m->too_many)
        return 0;
    hh_span *s = &m->value[m->nfields - 1];
    if (!m->in_value) {
        m->in_value = true;
        s->off = (uint32_t)(at - m->base);
    }
    s->len = (uint32_t)(at + len - (m->base + s->off));
    return 0;
}

static bool tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && !strncasecmp(s, lit, n);
}

static int classify(const char *s, size_t n)
{
    switch (n) {
    case 2:
        return is(s, n, "te") ? HK_HOP : HK_OTHER;
    case 4:
        return is(s, n, "host") ? HK_HOST : HK_OTHER;
    case 6:
        return is(s, n, "expect") ? HK_EXPECT : HK_OTHER;
    case 7:
        return is(s, n, "upgrade") ? HK_HOP : HK_OTHER; /* (Trailer is end to end, RFC 9110) */
    case 10:
        return is(s, n, "connection") ? HK_CONNECTION : is(s, n, "keep-alive") ? HK_HOP : HK_OTHER;
    case 14:
        return is(s, n, "content-length") ? HK_CONTENT_LENGTH : HK_OTHER;
    case 15:
        return is(s, n, "x-forwarded-for") ? HK_XFF : HK_OTHER;
    case 16:
        return is(s, n, "proxy-connection") ? HK_HOP : HK_OTHER;
    case 17:
        return is(s, n, "transfer-encoding") ? HK_TRANSFER_ENCODING : HK_OTHER;
    default:
        return HK_OTHER;
    }
}

/* Calls fn for each comma-separated element of v[0..n) (OWS trimmed, empty ones skipped);
 * stops at the first fn that returns true, and returns that. */
static bool each_token(const char *v, size_t n, bool (*fn)(const char *, size_t, void *), void *arg)
{
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end > start && fn(v + start, end - start, arg))
            return true;
    }
    return false;
}

typedef struct name_arg {
    const char *s;
    size_t n;
} name_arg;

/* Whether Connection's option t names the header a ("close" is an option, not a header
 * name: a header called close stays, as the proxy's own Connection: close would name it). */
static bool token_is(const char *t, size_t n, void *arg)
{
    name_arg *a = arg;
    return n == a->n && !strncasecmp(t, a->s, n) && !is(t, n, "close");
}

static bool count_token(const char *t, size_t n, void *arg)
{
    (void)t, (void)n;
    ++*(unsigned *)arg;
    return false;
}

static bool not_chunked(const char *t, size_t n, void *arg)
{
    (void)arg;
    return !is(t, n, "chunked");
}

static bool last_is_chunked(const char *t, size_t n, void *arg)
{
    *(bool *)arg = is(t, n, "chunked");
    return false;
}

/* The transfer codings of m's Transfer-Encoding headers: whether any is not chunked, and
 * (*last_chunked) whether chunked is the last. */
static bool te_codings(const hh_msg *m, bool *last_chunked)
{
    bool other = false;
    *last_chunked = false;
    for (unsigned i = 0; i < m->nfields; i++)
        if (m->kind[i] == HK_TRANSFER_ENCODING) {
            const char *v = m->base + m->value[i].off;
            other |= each_token(v, m->value[i].len, not_chunked, NULL);
            each_token(v, m->value[i].len, last_is_chunked, last_chunked);
        }
    return other;
}

/* The headers' kinds; those that Connection names become hop-by-hop, but for the ones the
 * proxy reads itself (Host, Content-Length, Transfer-Encoding, Expect): dropping a header that
 * frames the body while still framing by it would pass the body on as the next message (a
 * smuggled request), so "Connection: content-length" leaves Content-Length in place, as it
 * must be for every hop. Checks what every head must satisfy. */
static int classify_all(hh_msg *m)
{
    int bad = m->response ? 502 : 400;
    bool connection = false;
    for (unsigned i = 0; i < m->nfields; i++) {
        const char *s = m->base + m->name[i].off, *v = m->base + m->value[i].off;
        for (size_t k = 0; k < m->name[i].len; k++)
            if (!tchar((unsigned char)s[k]))
                return fail(m, bad, "malformed header field name");
        if (m->name[i].len == 0)
            return fail(m, bad, "empty header field name");
        for (size_t k = 0; k < m->value[i].len; k++)
            if (v[k] == '\r' || v[k] == '\n' || v[k] == '\0')
                return fail(m, bad, "line folding or a control character in a header value");
        m->kind[i] = (unsigned char)classify(s, m->name[i].len);
        connection |= m->kind[i] == HK_CONNECTION;
    }
    for (unsigned c = 0; connection && c < m->nfields; c++) {
        if (m->kind[c] != HK_CONNECTION)
            continue;
        for (unsigned i = 0; i < m->nfields; i++) {
            name_arg a = {m->base + m->name[i].off, m->name[i].len};
            if ((m->kind[i] == HK_OTHER || m->kind[i] == HK_XFF) &&
                each_token(m->base + m->value[c].off, m->value[c].len, token_is, &a))
                m->kind[i] = HK_HOP;
        }
    }
    return 0;
}

static bool is_100_continue(const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return is(v, n, "100-continue");
}

static int check_request(hh_msg *m, http_parser *p)
{
    if (p->http_major == 0)
        return fail(m, 400, "malformed request line");
    if (p->http_major != 1)
        return fail(m, 505, "only HTTP/1.0 and HTTP/1.1 are served");
    if (p->method == HTTP_CONNECT)
        return fail(m, 501, "CONNECT is not served");
    for (uint32_t i = 0; i < m->target.len; i++) { /* visible ASCII only (RFC 9112 3.2) */
        unsigned char ch = (unsigned char)m->base[m->target.off + i];
        if (ch <= 0x20 || ch >= 0x7f)
            return fail(m, 400, "malformed request target");
    }
    hh_span auth, rest;
    if (m->target.len && m->base[m->target.off] != '/' && m->base[m->target.off] != '*' &&
        !hh_absolute(m, m->base, &auth, &rest))
        return fail(m, 400, "malformed request target");
    unsigned hosts = 0, te = 0, cl = 0;
    for (unsigned i = 0; i < m->nfields; i++) {
        hosts += m->kind[i] == HK_HOST;
        cl += m->kind[i] == HK_CONTENT_LENGTH;
        if (m->kind[i] == HK_TRANSFER_ENCODING)
            each_token(m->base + m->value[i].off, m->value[i].len, count_token, &te);
        /* Expect: 100-continue is the proxy's to answer; another expectation goes on, but not
         * from an HTTP/1.0 client, which cannot have one (RFC 9110 10.1.1): dropped. */
        if (m->kind[i] == HK_EXPECT && p->http_minor >= 1) {
            if (is_100_continue(m->base + m->value[i].off, m->value[i].len))
                m->continue_100 = true;
            else
                m->kind[i] = HK_OTHER;
        }
    }
    bool last_chunked = false, other = te && te_codings(m, &last_chunked);
    if (te && !last_chunked) /* the body's length unknown: RFC 9112 6.3 says 400 */
        return fail(m, 400, "chunked must be the last transfer coding of a request");
    if (other)
        return fail(m, 501, "transfer coding not implemented (only chunked is)");
    if (p->http_minor >= 1 ? hosts != 1 : hosts > 1)
        return fail(m, 400, "an HTTP/1.1 request needs exactly one Host header");
    if (te && (p->http_minor == 0 || te != 1 || cl || !(p->flags & F_CHUNKED)))
        return fail(m, 400, "Transfer-Encoding must be chunked, once, in HTTP/1.1, alone");
    if (cl > 1)
        return fail(m, 400, "more than one Content-Length");
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hh_msg *m = p->data;
    if (m->head_done)
        return 0;
    if (m->too_many)
        return fail(m, m->response ? 502 : 431, "too many header fields");
    if (classify_all(m) < 0)
        return -1;
    if (m->response) {
        if (p->http_major != 1)
            return fail(m, 502, "a response not in HTTP/1.x");
        if (p->status_code == 101)
            return fail(m, 502, "a protocol switch nobody asked for");
        if (p->status_code < 100 || p->status_code > 999)
            return fail(m, 502, "a malformed status code");
    } else if (check_request(m, p) < 0)
        return -1;
    unsigned status = p->status_code;
    m->no_body =
        m->response && (m->head_request || status / 100 == 1 || status == 204 || status == 304);
    bool last_chunked;
    m->te_other = m->response && te_codings(m, &last_chunked);
    m->chunked = !m->no_body && (p->flags & F_CHUNKED);
    m->until_eof = m->response && !m->no_body && !m->chunked && p->content_length == ULLONG_MAX;
    if (m->no_body)
        m->chunked = false;
    m->keep_alive = p->http_major > 0 && p->http_minor > 0
                        ? !(p->flags & F_CONNECTION_CLOSE)
                        : (p->flags & F_CONNECTION_KEEP_ALIVE) != 0;
    if (m->until_eof)
        m->keep_alive = false;
    p->upgrade = 0; /* Upgrade is not taken up: the header is dropped, HTTP/1.1 goes on */
    http_parser_pause(p, 1);
    return m->no_body ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hh_msg *m = p->data;
    if (m->dechunk && m->on_data && m->on_data(m->arg, at, len) < 0)
        return -1;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hh_msg *m = p->data;
    m->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
    return on_url(p, at, len); /* the reason phrase, in the same span */
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void hh_init(hh_msg *m, bool response, bool head_request)
{
    /* only what a message needs cleared (the span arrays are written before they are read) */
    m->base = NULL;
    m->fed = m->head_len = 0;
    m->target = (hh_span){0, 0};
    m->nfields = 0;
    m->status = 0;
    m->why = NULL;
    m->response = response;
    m->head_request = head_request;
    m->in_value = m->head_done = m->done = m->no_body = m->chunked = m->until_eof = false;
    m->ck = (struct hh_chunks){0};
    m->keep_alive = m->continue_100 = m->dechunk = m->too_many = false;
    m->on_data = NULL;
    m->arg = NULL;
    m->body_bytes = 0;
    http_parser_init(&m->p, response ? HTTP_RESPONSE : HTTP_REQUEST);
    m->p.data = m;
}

/* have: the bytes of the head there are (an unknown method is told from a malformed request
 * line once the space after it has come: until then, HH_NEED). */
static int head_error(hh_msg *m, enum http_errno e, size_t have)
{
    if (!m->status && !m->response && e == HPE_INVALID_METHOD) {
        size_t i = 0;
        while (i < have && tchar((unsigned char)m->base[i]))
            i++;
        if (i == have)
            return HH_NEED;
        if (i > 0 && m->base[i] == ' ') /* a method, not one of http_parser's: RFC 9110 9.1 */
            fail(m, 501, "method not implemented (http_parser's list only)");
    }
    if (!m->status) {
        if (m->response)
            fail(m, 502, "a malformed response head");
        else if (e == HPE_HEADER_OVERFLOW)
            fail(m, 431, "request head too large");
        else
            fail(m, 400, http_errno_description(e));
    }
    return HH_ERROR;
}

int hh_head_feed(hh_msg *m, const char *base, size_t have)
{
    if (m->status)
        return HH_ERROR;
    if (m->head_done)
        return HH_HEAD;
    size_t n = have > HH_HEAD_MAX ? HH_HEAD_MAX - m->fed : have - m->fed;
    if (n == 0) {
        if (have > m->fed) /* a head longer than HH_HEAD_MAX */
            return fail(m, m->response ? 502 : 431,
                        m->response ? "response head too large" : "request head too large"),
                   HH_ERROR;
        return HH_NEED;
    }
    m->base = base;
    size_t used = http_parser_execute(&m->p, &settings, base + m->fed, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&m->p);
    if (e != HPE_PAUSED) {
        if (e != HPE_OK)
            return head_error(m, e, have);
        m->fed += (uint32_t)used;
        return hh_head_feed(m, base, have); /* 431 if it is full */
    }
    /* paused in on_headers_complete, on the head's last byte (the LF) */
    m->head_len = m->fed + (uint32_t)used + 1;
    m->fed = m->head_len;
    m->head_done = true;
    http_parser_pause(&m->p, 0);
    http_parser_execute(&m->p, &settings, "\n", 1);
    e = HTTP_PARSER_ERRNO(&m->p);
    if (e != HPE_OK && e != HPE_PAUSED)
        return head_error(m, e, have);
    if (m->done)
        m->no_body = true;
    return HH_HEAD;
}

enum {
    CK_SIZE,
    CK_SIZE1,
    CK_EXT,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TLINE,
    CK_TRAILER,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE
};

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9'                     ? c - '0'
           : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                    : -1;
}

/* Of in[0..len), how many bytes the chunked body still takes (all, or up to its last LF), or -1
 * for framing RFC 9112 does not allow (http-head.h). */
static long chunks_scan(struct hh_chunks *c, const char *in, size_t len)
{
    size_t i = 0;
    while (i < len && c->st != CK_DONE) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->st) {
        case CK_SIZE: /* the first digit */
        case CK_SIZE1: {
            int v = hexval(ch);
            if (v >= 0) {
                if (c->left >> 59)
                    return -1; /* a size past 2^63 */
                c->left = c->left << 4 | (uint64_t)v;
                c->st = CK_SIZE1;
            } else if (c->st == CK_SIZE1 && (ch == ';' || ch == ' ' || ch == '\t')) {
                c->st = CK_EXT;
            } else if (c->st == CK_SIZE1 && ch == '\r') {
                c->st = CK_SIZE_LF;
            } else {
                return -1;
            }
            break;
        }
        case CK_EXT: /* extensions: visible bytes, SP and HTAB, up to CR */
            if (ch == '\r')
                c->st = CK_SIZE_LF;
            else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return -1;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return -1;
            c->line = 0;
            c->st = c->left ? CK_DATA : CK_TLINE;
            break;
        case CK_DATA: {
            size_t n = len - i < c->left ? len - i : (size_t)c->left;
            c->left -= n;
            i += n;
            if (!c->left)
                c->st = CK_DATA_CR;
            continue;
        }
        case CK_DATA_CR:
            if (ch != '\r')
                return -1;
            c->st = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return -1;
            c->st = CK_SIZE;
            c->line = 0;
            break;
        case CK_TLINE: /* a trailer line's first byte, or the CR of the empty line */
            if (ch == '\r') {
                c->st = CK_END_LF;
                break;
            }
            if (++c->tlines > HH_FIELDS_MAX)
                return -1;
            c->nlen = 0;
            c->name_done = false;
            c->st = CK_TRAILER;
            /* fall through */
        case CK_TRAILER:
            if (ch == '\r') {
                if (!c->name_done)
                    return -1; /* no colon */
                c->st = CK_TRAILER_LF;
            } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                return -1;
            } else if (!c->name_done) {
                if (ch == ':') {
                    c->name_done = true;
                    if (c->nlen == 0 || is(c->name, c->nlen, "content-length") ||
                        is(c->name, c->nlen, "transfer-encoding") || is(c->name, c->nlen, "host"))
                        return -1; /* (no framing, no routing in a trailer) */
                } else if (!tchar(ch)) {
                    return -1;
                } else if (c->nlen < sizeof(c->name)) {
                    c->name[c->nlen++] = (char)ch;
                } else {
                    c->nlen = sizeof(c->name); /* longer than any name looked for */
                }
            }
            break;
        case CK_TRAILER_LF:
            if (ch != '\n')
                return -1;
            c->st = CK_TLINE;
            break;
        case CK_END_LF:
            if (ch != '\n')
                return -1;
            c->st = CK_DONE;
            break;
        }
        i++;
        if (c->st == CK_SIZE1 || c->st == CK_EXT || c->st == CK_SIZE_LF) {
            if (++c->line > HH_HEAD_MAX)
                return -1; /* a size line (its extensions) past the head's limit */
        } else if (c->st == CK_TRAILER || c->st == CK_TRAILER_LF || c->st == CK_TLINE ||
                   c->st == CK_END_LF) {
            if (++c->tbytes > HH_HEAD_MAX)
                return -1;
        }
    }
    return (long)i;
}

long hh_body_feed(hh_msg *m, const char *in, size_t len)
{
    if (m->done || len == 0)
        return 0;
    if (m->chunked) { /* (what http_parser then reads must end where this says) */
        long n = chunks_scan(&m->ck, in, len);
        if (n < 0)
            return -1;
        len = (size_t)n;
    }
    http_parser_pause(&m->p, 0);
    size_t used = http_parser_execute(&m->p, &settings, in, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&m->p);
    if (e != HPE_OK && e != HPE_PAUSED)
        return -1;
    if (m->chunked && (used != len || m->done != (m->ck.st == CK_DONE)))
        return -1; /* the two readings differ */
    m->body_bytes += used;
    return (long)used;
}

int hh_body_eof(hh_msg *m)
{
    if (m->done)
        return 0;
    if (!m->until_eof)
        return -1;
    http_parser_pause(&m->p, 0);
    http_parser_execute(&m->p, &settings, NULL, 0);
    return m->done ? 0 : -1;
}

int hh_find(const hh_msg *m, int kind)
{
    for (unsigned i = 0; i < m->nfields; i++)
        if (m->kind[i] == kind)
            return (int)i;
    return -1;
}

typedef struct writer {
    char *p, *end;
    bool full;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if ((size_t)(w->end - w->p) < n) {
        w->full = true;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

static void puts_(writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_field(writer *w, const hh_msg *m, const char *base, unsigned i)
{
    put(w, base + m->name[i].off, m->name[i].len);
    put(w, ": ", 2);
    put(w, base + m->value[i].off, m->value[i].len);
}

bool hh_absolute(const hh_msg *m, const char *base, hh_span *auth, hh_span *rest)
{
    const char *t = base + m->target.off;
    size_t n = m->target.len, skip = n >= 7 && !strncasecmp(t, "http://", 7)    ? 7
                                     : n >= 8 && !strncasecmp(t, "https://", 8) ? 8
                                                                                : 0;
    if (!skip)
        return false;
    size_t a = skip, e = skip;
    while (e < n && t[e] != '/' && t[e] != '?' && t[e] != '#')
        e++;
    for (size_t i = skip; i < e; i++) /* (userinfo, deprecated: not part of the host) */
        if (t[i] == '@')
            a = i + 1;
    if (a == e)
        return false; /* no host */
    *auth = (hh_span){m->target.off + (uint32_t)a, (uint32_t)(e - a)};
    *rest = (hh_span){m->target.off + (uint32_t)e, (uint32_t)(n - e)};
    return true;
}

size_t hh_request_write(const hh_msg *m, const char *base, const char *xff, char *out, size_t cap)
{
    writer w = {out, out + cap, false};
    puts_(&w, http_method_str((enum http_method)m->p.method));
    put(&w, " ", 1);
    hh_span auth, rest;
    bool absolute = hh_absolute(m, base, &auth, &rest);
    if (absolute) { /* to the server in origin form, its Host the target's (RFC 9112 3.2.2) */
        if (rest.len == 0 || base[rest.off] != '/')
            put(&w, "/", 1);
        put(&w, base + rest.off, rest.len);
    } else {
        put(&w, base + m->target.off, m->target.len);
    }
    put(&w, " HTTP/1.1\r\n", 11);
    int last_xff = -1;
    bool host = false;
    for (unsigned i = 0; i < m->nfields; i++) {
        last_xff = m->kind[i] == HK_XFF ? (int)i : last_xff;
        host |= m->kind[i] == HK_HOST;
    }
    if (absolute) {
        put(&w, "Host: ", 6);
        put(&w, base + auth.off, auth.len);
        put(&w, "\r\n", 2);
        host = true;
    }
    for (unsigned i = 0; i < m->nfields; i++) {
        int k = m->kind[i];
        if (k == HK_HOP || k == HK_CONNECTION || k == HK_EXPECT || (absolute && k == HK_HOST))
            continue;
        put_field(&w, m, base, i);
        if ((int)i == last_xff) {
            if (m->value[i].len)
                put(&w, ", ", 2);
            puts_(&w, xff);
        }
        put(&w, "\r\n", 2);
    }
    if (last_xff < 0) {
        put(&w, "X-Forwarded-For: ", 17);
        puts_(&w, xff);
        put(&w, "\r\n", 2);
    }
    if (!host)
        put(&w, "Host: \r\n", 8);
    put(&w, "\r\n", 2);
    return w.full ? 0 : (size_t)(w.p - out);
}

size_t hh_response_write(const hh_msg *m, const char *base, bool close, bool client_10,
                         bool dechunk, char *out, size_t cap)
{
    writer w = {out, out + cap, false};
    unsigned st = m->p.status_code % 1000;
    char line[] = {'H',
                   'T',
                   'T',
                   'P',
                   '/',
                   '1',
                   '.',
                   '1',
                   ' ',
                   (char)('0' + st / 100),
                   (char)('0' + st / 10 % 10),
                   (char)('0' + st % 10),
                   ' '};
    put(&w, line, sizeof(line));
    put(&w, base + m->target.off, m->target.len);
    put(&w, "\r\n", 2);
    /* Transfer-Encoding never goes to an HTTP/1.0 client (RFC 9112 6.1; a HEAD or 304 answer
     * carries it without a body), nor a length to a 1xx or 204 (RFC 9110 8.6). */
    bool unframed = st / 100 == 1 || st == 204;
    for (unsigned i = 0; i < m->nfields; i++) {
        int k = m->kind[i];
        if (k == HK_HOP || k == HK_CONNECTION ||
            (k == HK_TRANSFER_ENCODING && (client_10 || dechunk || unframed)) ||
            (k == HK_CONTENT_LENGTH && unframed))
            continue;
        put_field(&w, m, base, i);
        put(&w, "\r\n", 2);
    }
    if (close)
        puts_(&w, "Connection: close\r\n");
    else if (client_10)
        puts_(&w, "Connection: keep-alive\r\n");
    put(&w, "\r\n", 2);
    return w.full ? 0 : (size_t)(w.p - out);
}

static const char *reason(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

size_t hh_error_write(int status, const char *why, bool head_request, char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     status, reason(status), strlen(why) + 1, why);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return head_request ? (size_t)n - strlen(why) - 1 : (size_t)n;
}
