/* The HTTP side of the plain-C network peers of bench/net.sh (peers/epoll/epoll-server.c,
 * peers/libuv/uv-server.c): the request parser and the answers of examples/http.c (tpc-http),
 * byte for byte, so that bench/http-check.py passes on all of them. No I/O here: the servers
 * read into in[] and send out[] their own way. */
#ifndef TPC_BENCH_HTTPPARSE_H
#define TPC_BENCH_HTTPPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_BUF_SIZE 16384 /* per direction and connection, as in examples/http.c */

static const char HTTP_OK[] = "HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 13\r\n\r\nHello, World!";
static const char HTTP_BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n";

enum { HTTP_INCOMPLETE = 0, HTTP_MALFORMED = -1 };

/* One HTTP request at the start of p[0..len): its length (head and body), HTTP_INCOMPLETE or
 * HTTP_MALFORMED. Sets *close when the connection must close after it. The rules are those of
 * examples/http.c's parse_request: a head larger than the buffer, a request line that is not
 * "METHOD SP TARGET SP HTTP/1.0|1" with an upper-case method, a header line without a name and
 * colon, a Content-Length that is not digits only with a value in [0, 16384], any
 * Transfer-Encoding, or a request larger than the buffer are malformed. */
static inline long http_parse(const char *p, size_t len, bool *close)
{
    size_t head = 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (!memcmp(p + i, "\r\n\r\n", 4)) {
            head = i + 4;
            break;
        }
    if (!head)
        return len >= HTTP_BUF_SIZE ? HTTP_MALFORMED : HTTP_INCOMPLETE;

    const char *line_end = memchr(p, '\r', head);
    size_t line = (size_t)(line_end - p);
    const char *m_end = memchr(p, ' ', line);
    if (!m_end || m_end == p)
        return HTTP_MALFORMED;
    const char *t_end = memchr(m_end + 1, ' ', (size_t)(line_end - m_end - 1));
    if (!t_end || t_end == m_end + 1 || line_end - t_end != 9 || memcmp(t_end + 1, "HTTP/1.", 7))
        return HTTP_MALFORMED;
    char minor = t_end[8];
    if (minor != '0' && minor != '1')
        return HTTP_MALFORMED;
    for (const char *c = p; c < m_end; c++)
        if (*c < 'A' || *c > 'Z')
            return HTTP_MALFORMED;
    *close = minor == '0';

    long body = 0;
    const char *stop = p + head - 2; /* the final empty line */
    for (const char *h = line_end + 2; h < stop;) {
        const char *h_end = memchr(h, '\r', (size_t)(p + head - h));
        const char *colon = memchr(h, ':', (size_t)(h_end - h));
        if (!colon || colon == h)
            return HTTP_MALFORMED;
        size_t name_len = (size_t)(colon - h);
        const char *val = colon + 1;
        while (val < h_end && (*val == ' ' || *val == '\t'))
            val++;
        size_t val_len = (size_t)(h_end - val);
        if (name_len == 10 && !strncasecmp(h, "Connection", 10)) {
            *close = val_len == 5 && !strncasecmp(val, "close", 5);
        } else if (name_len == 14 && !strncasecmp(h, "Content-Length", 14)) {
            if (val == h_end)
                return HTTP_MALFORMED; /* empty */
            body = 0;
            for (const char *d = val; d < h_end; d++) { /* digits only (RFC 9110: 1*DIGIT) */
                if (*d < '0' || *d > '9' || body > HTTP_BUF_SIZE)
                    return HTTP_MALFORMED;
                body = body * 10 + (*d - '0');
            }
            if (body > HTTP_BUF_SIZE)
                return HTTP_MALFORMED;
        } else if (name_len == 17 && !strncasecmp(h, "Transfer-Encoding", 17)) {
            return HTTP_MALFORMED;
        }
        h = h_end + 2;
    }
    size_t total = head + (size_t)body;
    if (total <= len)
        return (long)total;
    return total > HTTP_BUF_SIZE ? HTTP_MALFORMED : HTTP_INCOMPLETE;
}

/* Appends to out[*out_len..HTTP_BUF_SIZE) the answers to the complete requests in
 * in[*used..have) and advances *used past them; counts them in *served. It stops early, setting
 * *more, when the next answer does not fit in out[] (tpc-http sends what it has at the same
 * point): send out[], empty it and call again. Returns true when the connection must close once
 * out[] is sent: after "Connection: close", HTTP/1.0, or a malformed request (400). */
static inline bool http_answer(const char *in, size_t have, size_t *used, char *out,
                               size_t *out_len, bool *more, long *served)
{
    bool close = false;
    long len;
    *more = false;
    while ((len = http_parse(in + *used, have - *used, &close)) > 0) {
        if (*out_len + sizeof(HTTP_OK) > HTTP_BUF_SIZE) {
            *more = true; /* send these, then carry on from this request */
            return false; /* it may have set close, but it is not answered yet */
        }
        *used += (size_t)len;
        memcpy(out + *out_len, HTTP_OK, sizeof(HTTP_OK) - 1);
        *out_len += sizeof(HTTP_OK) - 1;
        ++*served;
        if (close)
            return true;
    }
    if (len != HTTP_MALFORMED)
        return false;
    if (*out_len + sizeof(HTTP_BAD) > HTTP_BUF_SIZE) {
        *more = true; /* room first */
        return false;
    }
    memcpy(out + *out_len, HTTP_BAD, sizeof(HTTP_BAD) - 1);
    *out_len += sizeof(HTTP_BAD) - 1;
    return true;
}

#endif
