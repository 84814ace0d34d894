/* tpc-proxy's HTTP/1.1 message heads and body framing, on Debian's http_parser 2.9
 * (libhttp-parser-dev). No I/O: http.c does it, http-head-fuzz.c fuzzes this part.
 *
 * A message is read in two phases. The head: the caller keeps it in one buffer from its first
 * byte (base[0]) and calls hh_head_feed as bytes arrive; the parser records where the request
 * line or status line and every header are (offsets into base, no copy), and stops at the end
 * of the head. Then the caller re-writes the head for the other side into a buffer of its own
 * (hh_request_write, hh_response_write: hop-by-hop headers removed, X-Forwarded-For appended,
 * Connection as this hop needs it) and sends it in one call. The body: hh_body_feed tells how
 * many of the bytes given belong to the message (Content-Length, chunked, or to the end of the
 * stream for a response without either), so that the caller forwards exactly those bytes as
 * they are (chunked framing passed on as framing) and keeps what follows (the next pipelined
 * request). For an HTTP/1.0 client a chunked response is de-chunked instead: the body's data
 * goes to a callback. */
#ifndef PX_HTTP_HEAD_H
#define PX_HTTP_HEAD_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HH_HEAD_MAX   16384 /* request line (status line) and headers: more is 431 (502) */
#define HH_FIELDS_MAX 100   /* headers in a head: more is 431 (502) */
#define HH_EXTRA      512   /* what a re-written head may add: X-Forwarded-For, Connection */

enum hh_result { HH_ERROR = -1, HH_NEED = 0, HH_HEAD = 1 };

/* What a header is, for the proxy. */
enum hh_kind {
    HK_OTHER,
    HK_HOP, /* Keep-Alive, Proxy-Connection, TE, Upgrade: dropped */
    HK_CONNECTION,
    HK_TRANSFER_ENCODING,
    HK_CONTENT_LENGTH,
    HK_HOST,
    HK_XFF,
    HK_EXPECT
};

typedef struct hh_span {
    uint32_t off, len;
} hh_span;

typedef struct hh_msg {
    http_parser p;
    const char *base; /* where the head's offsets count from (during a feed) */
    uint32_t fed;     /* head bytes parsed so far */
    uint32_t head_len;
    hh_span target; /* request target, or a response's reason phrase */
    unsigned nfields;
    hh_span name[HH_FIELDS_MAX], value[HH_FIELDS_MAX];
    unsigned char kind[HH_FIELDS_MAX];
    short status;    /* an error's status (400, 431, 501, 505; 502 for a response) */
    const char *why; /* and its reason */
    bool response;
    bool head_request; /* a response to HEAD: no body whatever the head says */
    bool in_value;     /* the last head callback was a value */
    bool head_done;    /* hh_head_feed returned HH_HEAD */
    bool done;         /* the message is complete (head and body) */
    bool no_body;      /* complete with its head */
    bool chunked;      /* the body is chunked */
    bool until_eof;    /* a response framed by the end of the stream */
    bool te_other;     /* a response with a transfer coding other than chunked */
    bool keep_alive;   /* the sender keeps the connection (http_should_keep_alive) */
    bool continue_100; /* a request with Expect: 100-continue */
    bool dechunk;      /* the body's data goes to on_data, not the bytes as they are */
    bool too_many;     /* more than HH_FIELDS_MAX headers */
    int (*on_data)(void *arg, const char *p, size_t n); /* dechunk: 0 or -1 (stops) */
    void *arg;
    uint64_t body_bytes; /* bytes of the body (framing included) taken by hh_body_feed */
    struct hh_chunks {   /* chunked framing, read strictly (RFC 9112 7.1) before http_parser */
        uint8_t st;
        bool name_done;  /* a trailer line: past its name */
        uint8_t nlen;    /* its name's length so far (18: longer than any looked for) */
        char name[18];   /* and its start, as written */
        uint64_t left;   /* a chunk's size, then its data still to come */
        uint32_t line;   /* bytes of the current size line or trailer line */
        uint32_t tbytes; /* of the trailer section */
        uint32_t tlines;
    } ck;
} hh_msg;

/* A request, or a response (head_request: the answer to a HEAD request). */
void hh_init(hh_msg *m, bool response, bool head_request);

/* The head is base[0..have); bytes before m->fed are parsed already. Returns HH_NEED (more
 * bytes needed), HH_HEAD (m->head_len bytes are the head; bytes after it are the body or the
 * next message) or HH_ERROR (m->status, m->why). */
int hh_head_feed(hh_msg *m, const char *base, size_t have);

/* The body: of in[0..len), the bytes that belong to the message (all, unless it ends inside);
 * m->done once it is complete. -1: malformed framing, or on_data failed. Chunked framing is
 * read as RFC 9112 writes it (CRLF and nothing else ends a line, CRLF after each chunk's data,
 * a size line and a trailer line within HH_HEAD_MAX, trailers within HH_HEAD_MAX and
 * HH_FIELDS_MAX, none that frames a message), because the bytes are passed on as they are: a
 * server that reads them as the RFC does then sees the same message (http_parser 2.9 lets
 * through a bare LF in an extension, any two bytes after a chunk's data, any byte after CR). */
long hh_body_feed(hh_msg *m, const char *in, size_t len);

/* The sender closed the stream: 0 when that ends the message (m->done), else -1. */
int hh_body_eof(hh_msg *m);

/* The re-written request head for the server, into out[0..cap): "METHOD TARGET HTTP/1.1"
 * (an absolute-form target in origin form, and Host then the target's authority in place of
 * the client's), the headers but hop-by-hop ones (Connection and those it names, Keep-Alive, Proxy-
 * Connection, TE, Upgrade) and Expect: 100-continue, with `xff` (the client's
 * address) appended to the last X-Forwarded-For or in one of its own, and Host added (empty)
 * to an HTTP/1.0 request without one. Returns its length, or 0 if it does not fit. */
size_t hh_request_write(const hh_msg *m, const char *base, const char *xff, char *out, size_t cap);

/* Whether a request's target is in absolute form ("http://host:port/path?query", https too):
 * then *auth is its authority (without userinfo) and *rest what follows it (path and query,
 * perhaps empty). */
bool hh_absolute(const hh_msg *m, const char *base, hh_span *auth, hh_span *rest);

/* The re-written response head for the client: "HTTP/1.1 STATUS REASON", the headers but
 * hop-by-hop ones (Transfer-Encoding too when dechunk), then "Connection: close" when close,
 * else "Connection: keep-alive" for an HTTP/1.0 client (client_10). Length, or 0. */
size_t hh_response_write(const hh_msg *m, const char *base, bool close, bool client_10,
                         bool dechunk, char *out, size_t cap);

/* The value of header i, and whether a request's Host (first one) is there. */
static inline const char *hh_value(const hh_msg *m, const char *base, unsigned i, size_t *len)
{
    *len = m->value[i].len;
    return base + m->value[i].off;
}
int hh_find(const hh_msg *m, int kind);

/* A complete error answer (status and a one-line reason), Connection: close. Length. */
size_t hh_error_write(int status, const char *why, bool head_request, char *out, size_t cap);

#endif
