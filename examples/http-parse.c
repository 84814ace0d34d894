/* http_parser does the framing (request line, headers, Content-Length, chunks); what RFC 9112
 * asks beyond it is checked in its callbacks (header names are seen in pieces when the input
 * comes in pieces, so they are matched as they grow). A callback that finds an error sets
 * c->status and returns -1, which stops the parser; http_conn_feed then writes the answer.
 * Answers are written in the callbacks, so they go out in request order. When out[] runs low
 * or the connection is to close, the parser is paused (http_parser_pause): it keeps its place,
 * and the next feed resumes it. */
#include "http-parse.h"
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define OK_HEAD                                                                                    \
    "HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
#define BODY "Hello, World!"
static const char OK_KEEP[] = OK_HEAD "\r\n" BODY;
static const char OK_KEEP10[] = OK_HEAD "Connection: keep-alive\r\n\r\n" BODY;
static const char OK_CLOSE[] = OK_HEAD "Connection: close\r\n\r\n" BODY;
static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum field { F_OTHER, F_HOST, F_TE, F_EXPECT };

static void put(http_conn *c, const char *s, size_t n)
{
    memcpy(c->out + c->out_len, s, n); /* fits: the caller keeps HTTP_ANSWER_MAX free */
    c->out_len += n;
}

static const char *reason(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 413:
        return "Content Too Large";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* The last answer on the connection: status, reason, and `why` as a one-line body (not for
 * HEAD). */
static void put_error(http_conn *c, int status, const char *why)
{
    char text[HTTP_ANSWER_MAX - sizeof(CONTINUE)];
    size_t body = strlen(why) + 1;
    int n = snprintf(text, sizeof(text),
                     "HTTP/1.1 %d %s\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                     status, reason(status), body, c->is_head ? "" : why);
    if (n < 0 || (size_t)n >= sizeof(text))
        n = 0; /* cannot happen: the reasons are short */
    put(c, text, c->is_head ? (size_t)n - 1 : (size_t)n);
    c->closing = c->failed = true;
}

/* Stops the parser with an error answer. */
static int fail(http_conn *c, int status, const char *why)
{
    c->status = (short)status;
    c->why = why;
    return -1;
}

static int on_message_begin(http_parser *p)
{
    http_conn *c = p->data;
    c->begun = true;
    c->head_done = c->is_head = c->in_value = c->bad_name = false;
    c->body = 0;
    c->field = F_OTHER;
    c->name_len = c->hosts = c->te_len = c->expect_len = 0;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    if (c->head_done)
        return 0;      /* a trailer: ignored */
    if (c->in_value) { /* a new field */
        c->in_value = false;
        c->name_len = 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (at[i] == ' ' || at[i] == '\t')
            c->bad_name = true; /* told at the end of the head, where whole and split input
                                 * agree on what comes first (http_parser's own errors) */
        if (c->name_len < sizeof(c->name))
            c->name[c->name_len] = (char)(at[i] | 0x20); /* lower case: tokens only here */
        if (c->name_len < 255)
            c->name_len++;
    }
    return 0;
}

static enum field classify(const http_conn *c)
{
    size_t n = c->name_len;
    if (n == 4 && !memcmp(c->name, "host", 4))
        return F_HOST;
    if (n == 17 && !memcmp(c->name, "transfer-encoding", 17))
        return F_TE;
    if (n == 6 && !memcmp(c->name, "expect", 6))
        return F_EXPECT;
    return F_OTHER;
}

/* Appends at[0..len) to a value buffer; a value too long for it gets size + 1 (unknown). */
static void keep(char *buf, unsigned char *have, size_t size, const char *at, size_t len)
{
    if (*have > size)
        return;
    if (*have + len > size) {
        *have = (unsigned char)(size + 1);
        return;
    }
    memcpy(buf + *have, at, len);
    *have = (unsigned char)(*have + len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    if (c->head_done)
        return 0;
    if (!c->in_value) { /* the name is complete */
        c->in_value = true;
        c->field = (unsigned char)classify(c);
        if (c->field == F_HOST && c->hosts < 2)
            c->hosts++;
        if (c->field == F_TE && c->te_len) /* a second Transfer-Encoding continues the list */
            keep(c->te, &c->te_len, sizeof(c->te), ",", 1);
    }
    if (c->field == F_TE)
        keep(c->te, &c->te_len, sizeof(c->te), at, len);
    else if (c->field == F_EXPECT)
        keep(c->expect, &c->expect_len, sizeof(c->expect), at, len);
    return 0;
}

/* Transfer-Encoding's codings: 0 when they are exactly "chunked" (OWS and empty list elements
 * aside), 501 when one is not chunked, 400 otherwise. */
static int check_codings(const char *v, size_t n)
{
    int chunked = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i == start)
            break;
        if (i - start != 7 || strncasecmp(v + start, "chunked", 7))
            return 501;
        chunked++;
    }
    return chunked == 1 ? 0 : 400;
}

static bool implemented(unsigned method)
{
    switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_POST:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_OPTIONS:
    case HTTP_PATCH:
        return true;
    default:
        return false;
    }
}

static int on_headers_complete(http_parser *p)
{
    http_conn *c = p->data;
    c->head_done = true;
    c->is_head = p->method == HTTP_HEAD;
    if (c->bad_name)
        return fail(c, 400, "whitespace in a header field name");
    if (p->http_major == 0) /* http_parser's HTTP/0.9: a request line without a version */
        return fail(c, 400, "malformed request line");
    if (p->http_major != 1)
        return fail(c, 505, "only HTTP/1.0 and HTTP/1.1 are served here");
    if (!implemented(p->method))
        return fail(c, 501, "method not implemented");
    if (p->http_minor >= 1 ? c->hosts != 1 : c->hosts > 1)
        return fail(c, 400, "an HTTP/1.1 request needs exactly one Host header");
    if (p->uses_transfer_encoding || c->te_len) {
        if (p->http_minor == 0)
            return fail(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
        int rc = c->te_len > sizeof(c->te) ? 501 : check_codings(c->te, c->te_len);
        if (rc == 501)
            return fail(c, 501, "transfer coding not implemented (only chunked is)");
        if (rc)
            return fail(c, 400, "Transfer-Encoding must be chunked, once");
    }
    bool has_body =
        (p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX);
    if (!(p->flags & F_CHUNKED) && has_body && p->content_length > HTTP_MAX_BODY)
        return fail(c, 413, "request body over 1048576 bytes");
    if (c->expect_len && p->http_minor >= 1) { /* HTTP/1.0 expectations are ignored (RFC 9110) */
        const char *v = c->expect;
        size_t n = c->expect_len;
        while (n && (*v == ' ' || *v == '\t'))
            v++, n--;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        if (c->expect_len > sizeof(c->expect) || n != 12 || strncasecmp(v, "100-continue", 12))
            return fail(c, 417, "the only expectation served is 100-continue");
        if (has_body)
            put(c, CONTINUE, sizeof(CONTINUE) - 1);
    }
    p->upgrade = 0; /* Upgrade is not taken up: the connection stays HTTP/1.1 */
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    http_conn *c = p->data;
    c->body += p->content_length;
    if (c->body > HTTP_MAX_BODY)
        return fail(c, 413, "request body over 1048576 bytes");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    bool keep_open = http_should_keep_alive(p);
    if (keep_open && p->http_minor != 0 && !c->is_head) {
        /* The common answer, with its size known here: the compiler copies it with a few
         * vector moves, where a size chosen at run time became a `rep movs` (5 % of the CPU
         * of pipelined requests on an Intel VM). */
        put(c, OK_KEEP, sizeof(OK_KEEP) - 1);
    } else {
        const char *a = !keep_open ? OK_CLOSE : p->http_minor == 0 ? OK_KEEP10 : OK_KEEP;
        size_t n = !keep_open           ? sizeof(OK_CLOSE)
                   : p->http_minor == 0 ? sizeof(OK_KEEP10)
                                        : sizeof(OK_KEEP);
        put(c, a, n - (c->is_head ? sizeof(BODY) : 1));
    }
    c->answered++;
    c->begun = false;
    if (!keep_open)
        c->closing = true;
    if (c->closing || c->out_cap - c->out_len < HTTP_ANSWER_MAX)
        http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

/* Byte classes, one bit each: a token character (RFC 9110 tchar), a request-target byte the
 * fast path takes (the unreserved and sub-delims of RFC 3986, '/', ':', '@', '?', '%'; no '#',
 * nothing above 0x7e), and a header value byte it takes (printable ASCII, space, tab). */
enum { C_TOKEN = 1, C_TARGET = 2, C_VALUE = 4 };
static unsigned char classes[256];
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;

static void set_classes(void)
{
    for (int ch = 0; ch < 256; ch++) {
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (alnum || (ch && strchr("!#$%&'*+-.^_`|~", ch)))
            classes[ch] |= C_TOKEN;
        if (alnum || (ch && strchr("-._~!$&'()*+,;=/:@?%", ch)))
            classes[ch] |= C_TARGET;
        if ((ch >= 0x20 && ch < 0x7f) || ch == '\t')
            classes[ch] |= C_VALUE;
    }
}

static pthread_once_t limits_once = PTHREAD_ONCE_INIT;

static void set_limits(void)
{
    http_parser_set_max_header_size(HTTP_MAX_HEAD); /* process-wide, hence once */
}

void http_conn_init(http_conn *c)
{
    pthread_once(&limits_once, set_limits);
    pthread_once(&classes_once, set_classes);
    memset(c, 0, sizeof(*c));
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

static bool tchar(unsigned char ch)
{
    return classes[ch] & C_TOKEN;
}

/* After http_parser found no method it knows: reads on through the method token. A token
 * followed by a space is a method not implemented (501); anything else is malformed. Returns
 * the bytes consumed (all of them while the token goes on). */
static size_t scan_method(http_conn *c, const char *in, size_t len)
{
    size_t i = 0;
    while (i < len && tchar((unsigned char)in[i]))
        i++;
    c->method_len += (unsigned)i;
    if (c->method_len > HTTP_MAX_HEAD)
        put_error(c, 431, "request line too long");
    else if (i < len && in[i] == ' ' && c->method_len)
        put_error(c, 501, "method not implemented");
    else if (i < len)
        put_error(c, 400, "malformed request line");
    return len;
}

bool http_fast_path = true;

/* Whether the header name n[0..len) starts with `lower` (lower case letters and '-'), case
 * aside. */
static bool name_starts(const char *n, size_t len, const char *lower, size_t llen)
{
    if (len < llen)
        return false;
    for (size_t i = 0; i < llen; i++)
        if ((n[i] | 0x20) != lower[i])
            return false;
    return true;
}

/* The fast path: answers, without http_parser, each whole request at the head of in[] that is
 * of the commonest kind: "GET /target HTTP/1.1", then header lines of token names and printable
 * values, exactly one Host, and none of the headers that change how a request is framed or
 * answered (Content-Length, Transfer-Encoding, Connection, Proxy-Connection, Upgrade, Expect).
 * Those get the answer http_parser's path gives them; it stops at the first request it does not
 * take (or not whole yet) and leaves it to http_parser, which is then at the start of a
 * message as well. Returns the bytes consumed. The fuzz target checks that the answers are the
 * same with the fast path and without. */
static size_t fast(http_conn *c, const char *in, size_t len)
{
    size_t used = 0;
    while (c->out_cap - c->out_len >= HTTP_ANSWER_MAX) {
        const char *p = in + used, *end = in + len, *q = p + 4;
        if (end - p < 18 || memcmp(p, "GET /", 5))
            break;
        while (q < end && (classes[(unsigned char)*q] & C_TARGET))
            q++;
        if (end - q < 11 || memcmp(q, " HTTP/1.1\r\n", 11))
            break;
        q += 11;
        int hosts = 0;
        bool whole = false;
        while (end - q >= 2 && q - p < HTTP_MAX_HEAD / 2) {
            if (q[0] == '\r') {
                whole = q[1] == '\n';
                q += 2;
                break;
            }
            const char *name = q;
            while (q < end && tchar((unsigned char)*q))
                q++;
            size_t n = (size_t)(q - name);
            if (q == end || *q != ':' || n == 0)
                break;
            /* Names that only start like the headers http_parser frames by are left to it
             * too: it takes some of them for those headers. */
            if (name_starts(name, n, "content-length", 14) ||
                name_starts(name, n, "transfer-encoding", 17) ||
                name_starts(name, n, "connection", 10) ||
                name_starts(name, n, "proxy-connection", 16) ||
                name_starts(name, n, "upgrade", 7) || name_starts(name, n, "expect", 6))
                break;
            hosts += n == 4 && name_starts(name, n, "host", 4);
            for (q++; q < end && (classes[(unsigned char)*q] & C_VALUE); q++)
                ;
            if (end - q < 2 || q[0] != '\r' || q[1] != '\n')
                break;
            q += 2;
        }
        if (!whole || hosts != 1)
            break;
        put(c, OK_KEEP, sizeof(OK_KEEP) - 1);
        c->answered++;
        used = (size_t)(q - in);
    }
    return used;
}

static int status_of(enum http_errno e, const char **why)
{
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        *why = "request line and headers over 16384 bytes";
        return 431;
    case HPE_INVALID_VERSION:
        *why = "malformed HTTP version";
        return 400;
    case HPE_INVALID_CONSTANT:
    case HPE_INVALID_URL:
        *why = "malformed request line";
        return 400;
    default:
        *why = http_errno_description(e);
        return 400;
    }
}

size_t http_conn_feed(http_conn *c, const char *in, size_t len, char *out, size_t *out_len,
                      size_t cap)
{
    c->answered = 0;
    if (c->closing || len == 0 || cap - *out_len < HTTP_ANSWER_MAX)
        return 0; /* (a length of 0 would tell http_parser the input has ended) */
    c->out = out;
    c->out_len = *out_len;
    c->out_cap = cap;
    size_t used = 0;
    if (c->scan_method) {
        used = scan_method(c, in, len);
    } else if (http_fast_path && !c->begun && (used = fast(c, in, len)) == len) {
        /* all answered */
    } else if (c->out_cap - c->out_len >= HTTP_ANSWER_MAX) {
        size_t fed = used;
        http_parser_pause(&c->parser, 0);
        used += http_parser_execute(&c->parser, &settings, in + fed, len - fed);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_INVALID_METHOD) {
            c->scan_method = true; /* http_parser stopped at the first byte it did not expect */
            c->method_len = c->begun ? 1 : 0;
            used += scan_method(c, in + used, len - used);
        } else if (e != HPE_OK && e != HPE_PAUSED) {
            const char *why = c->why;
            int status = c->status ? c->status : status_of(e, &why);
            put_error(c, status, why);
            used = len;
        }
    }
    *out_len = c->out_len;
    return used;
}
