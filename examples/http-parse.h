/* The HTTP/1.1 request side of tpc-http (examples/http.c), shared with the plain-C peers of
 * bench/net.sh (bench/peers/epoll, bench/peers/libuv) so that they answer byte for byte alike,
 * and meant for tpc-proxy's HTTP mode too. Parsing is Debian's http_parser 2.9 (libhttp-parser-
 * dev), a streaming parser: input may arrive in any pieces, down to one byte at a time, and is
 * never copied. This file adds what RFC 9112 asks of a server on top of it and writes the
 * answers; it does no I/O. A fast path answers the commonest request, a whole GET over HTTP/1.1
 * with plain headers, without http_parser (its bytes are scanned once; 0.38 against 0.44 us of
 * server CPU a request with 16 pipelined, tpc-http, 2026-12-05); anything else goes to
 * http_parser, and the fuzz target checks that both answer alike.
 *
 * What it accepts and what it answers (one answer per request, in order; pipelining is fine):
 * - GET, HEAD, POST, PUT, DELETE, OPTIONS and PATCH get 200 "Hello, World!" (HEAD: the same
 *   headers, Content-Length 13 included, and no body). Any other method: 501.
 * - HTTP/1.1 keeps the connection unless the request says "Connection: close"; HTTP/1.0 keeps
 *   it only with "Connection: keep-alive", and the answer then says "Connection: keep-alive".
 *   An answer after which the connection closes says "Connection: close". HTTP/1.x for x > 1 is
 *   taken as 1.1 (RFC 9110, 2.5); any other major version gets 505.
 * - Request bodies, with Content-Length or chunked Transfer-Encoding (extensions and trailers
 *   allowed), are read and discarded, up to HTTP_MAX_BODY bytes: more gets 413, before the
 *   body is read when Content-Length says so. "Expect: 100-continue" on an HTTP/1.1 request
 *   with a body gets "HTTP/1.1 100 Continue" before its body is read; another expectation
 *   gets 417. Without Content-Length or Transfer-Encoding a request has no body (RFC 9112,
 *   6.3), so there is no case for 411 here.
 * - 400 for a malformed request line, header or chunk, an HTTP/1.1 request without exactly one
 *   Host, whitespace before a header's colon, Content-Length with Transfer-Encoding, a
 *   Transfer-Encoding in HTTP/1.0 or whose last coding is not chunked; 431 when the request
 *   line and headers exceed HTTP_MAX_HEAD bytes; 501 for a transfer coding other than chunked.
 *   An error answer is the last: the connection closes after it, and input after the bad
 *   request is ignored. Error answers carry a one-line text/plain reason.
 * http-parse-fuzz.c is its libFuzzer target; tests/test-http-conformance.c tests it over
 * sockets. */
#ifndef TPC_HTTP_PARSE_H
#define TPC_HTTP_PARSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD   16384     /* request line and headers */
#define HTTP_MAX_BODY   (1 << 20) /* a request body, read and discarded */
#define HTTP_ANSWER_MAX 512       /* the most one feed step appends: room the caller keeps */

/* One connection's request parser. Embed it; http_conn_init before use; no destroy. */
typedef struct http_conn {
    http_parser parser;
    char *out; /* where answers go, during http_conn_feed */
    size_t out_len, out_cap;
    unsigned answered;   /* 200s written by the last http_conn_feed */
    uint64_t body;       /* chunked body bytes of the request so far */
    const char *why;     /* the reason of an error answer decided in a callback */
    short status;        /* its status, 0 if none */
    bool closing;        /* no more input: close once the answers are sent */
    bool failed;         /* and the last answer is an error */
    bool begun;          /* a request has started (its first byte was parsed) */
    bool head_done;      /* its headers are complete: header callbacks are trailers */
    bool is_head;        /* it is a HEAD request */
    bool in_value;       /* the last header callback was a value */
    bool bad_name;       /* a header field name has whitespace in it */
    bool scan_method;    /* after an unknown method: reading its token to tell 501 from 400 */
    unsigned char field; /* which header the current field is (enum in http-parse.c) */
    unsigned char name_len, hosts, te_len, expect_len;
    unsigned method_len;
    char name[18];   /* the current field name, lower case, while it may be one we look at */
    char te[48];     /* Transfer-Encoding's value (the headers' values joined by commas) */
    char expect[16]; /* Expect's value */
} http_conn;

void http_conn_init(http_conn *c);

/* Parses in[0..len) and appends the answers to out[*out_len..cap). Returns the bytes consumed:
 * all of them, unless out has less than HTTP_ANSWER_MAX bytes free (then send out, empty it,
 * and call again with the rest) or the connection must close (http_conn_closing: send out,
 * then close; the rest of the input is not wanted). Sets c->answered to the number of 200s
 * written. Send whatever out holds before waiting for more input: a 100 Continue may be in it. */
size_t http_conn_feed(http_conn *c, const char *in, size_t len, char *out, size_t *out_len,
                      size_t cap);

/* Whether the commonest requests (a GET over HTTP/1.1 with plain headers) are answered without
 * http_parser (true by default; the fuzz target compares the answers with it off). */
extern bool http_fast_path;

static inline bool http_conn_closing(const http_conn *c)
{
    return c->closing;
}

/* Whether the last answer written was an error (then http_conn_closing is true too). */
static inline bool http_conn_failed(const http_conn *c)
{
    return c->failed;
}

#endif
