/* RESP2 parsing and reply writing (resp.h). */
#include "resp.h"
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void resp_args_clear(struct resp_args *a)
{
    a->n = a->resume.done;
}

void resp_args_free(struct resp_args *a)
{
    free(a->argv);
    free(a->argl);
    a->argv = NULL;
    a->argl = NULL;
    a->n = a->cap = 0;
    a->resume.done = 0;
}

static void args_grow(struct resp_args *a)
{
    size_t cap = a->cap ? a->cap * 2 : 64;
    const char **v = realloc(a->argv, cap * sizeof(*v));
    size_t *l = v ? realloc(a->argl, cap * sizeof(*l)) : NULL;
    if (!v || !l) {
        fputs("tpc-kv: out of memory\n", stderr);
        abort();
    }
    a->argv = v;
    a->argl = l;
    a->cap = cap;
}

static inline void args_push(struct resp_args *a, const char *p, size_t n)
{
    if (__builtin_expect(a->n == a->cap, 0))
        args_grow(a);
    a->argv[a->n] = p;
    a->argl[a->n++] = n;
}

int resp_ll(const char *p, size_t n, long long *out)
{
    if (n == 0 || n > 20)
        return -1;
    size_t i = 0;
    int neg = p[0] == '-';
    i += (size_t)neg;
    if (i == n || (p[i] == '0' && n - i > 1) || (neg && p[i] == '0'))
        return -1;
    /* Up to 19 digits cannot overflow an unsigned 64-bit accumulator (10^19 - 1 < 2^64): the
     * range is checked once, at the end. 20 digits are past any long long. */
    if (n - i > 19)
        return -1;
    unsigned long long v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned char)p[i] - (unsigned)'0';
        if (d > 9)
            return -1;
        v = v * 10 + d;
    }
    if (neg ? v > (unsigned long long)LLONG_MAX + 1 : v > (unsigned long long)LLONG_MAX)
        return -1;
    *out = neg ? (long long)(0 - v) : (long long)v;
    return 0;
}

/* A header line "<c><number>\r\n" at p (len bytes available). Returns the line's length, 0 if
 * not complete, -1 if malformed or longer than 32 bytes. */
static long header(const char *p, size_t len, long long *v)
{
    /* One or two digits (a command's count, a key's or short value's length) at a glance. */
    if (len >= 5) {
        unsigned d1 = (unsigned char)p[1] - (unsigned)'0', d2 = (unsigned char)p[2] - (unsigned)'0';
        if (d1 <= 9 && p[2] == '\r' && p[3] == '\n') {
            *v = d1;
            return 4;
        }
        if (d1 - 1 <= 8 && d2 <= 9 && p[3] == '\r' && p[4] == '\n') {
            *v = d1 * 10 + d2;
            return 5;
        }
    }
    /* Then up to 18 digits without a leading zero, then CRLF, in one pass. */
    size_t i = 1;
    unsigned long long x = 0;
    while (i < len && i < 19 && p[i] >= '0' && p[i] <= '9')
        x = x * 10 + (unsigned)(p[i++] - '0');
    if (i > 1 && i + 1 < len && p[i] == '\r' && p[i + 1] == '\n' && (p[1] != '0' || i == 2)) {
        *v = (long long)x;
        return (long)i + 2;
    }
    size_t max = len < 34 ? len : 34;
    const char *nl = memchr(p, '\n', max);
    if (!nl)
        return len >= 34 ? -1 : 0;
    size_t n = (size_t)(nl - p);
    if (n < 2 || p[n - 1] != '\r' || resp_ll(p + 1, n - 2, v) < 0)
        return -1;
    return (long)n + 1;
}

static long parse_multibulk(char *buf, size_t len, const struct resp_limits *lim,
                            struct resp_args *a, size_t *need, const char **err)
{
    long long count, i = 0;
    size_t pos, first = a->n, at;
    if (a->resume.done) { /* this command, parsed up to resume.pos before */
        count = a->resume.count;
        pos = a->resume.pos;
        i = (long long)a->resume.done;
        first = 0;
        a->resume.done = 0;
    } else {
        long h = header(buf, len, &count);
        if (h < 0 || (h > 0 && count > (long long)lim->max_args)) {
            *err = "Protocol error: invalid multibulk length";
            return -1;
        }
        if (h == 0)
            return 0;
        pos = (size_t)h;
    }
    for (; i < count; i++) {
        at = pos;
        if (pos == len)
            goto partial;
        if (buf[pos] != '$') {
            *err = "Protocol error: expected '$'";
            goto fail;
        }
        long long bl;
        long bh = header(buf + pos, len - pos, &bl);
        if (bh < 0 || (bh > 0 && (bl < 0 || (unsigned long long)bl > lim->max_bulk))) {
            *err = "Protocol error: invalid bulk length";
            goto fail;
        }
        if (bh == 0)
            goto partial;
        pos += (size_t)bh;
        if (len - pos < (size_t)bl + 2) {
            *need = pos + (size_t)bl + 2;
            goto partial;
        }
        if (buf[pos + (size_t)bl] != '\r' || buf[pos + (size_t)bl + 1] != '\n') {
            *err = "Protocol error: expected CRLF after bulk";
            goto fail;
        }
        args_push(a, (const char *)(uintptr_t)pos, (size_t)bl); /* an offset, until the end */
        pos += (size_t)bl + 2;
    }
    for (size_t k = first; k < a->n; k++)
        a->argv[k] = buf + (uintptr_t)a->argv[k];
    return (long)pos;
partial:
    if (first == 0 && i > 0) { /* the first command: its progress stays (resp.h) */
        a->resume.count = count;
        a->resume.done = (size_t)i;
        a->resume.pos = at;
        return 0;
    }
    a->n = first;
    return 0;
fail:
    a->n = first;
    return -1;
}

static int unhex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One quoted argument starting at *pp (on the opening quote), unescaped in place at dst.
 * Returns its length, or -1 for unbalanced quotes (or a closing quote not followed by a
 * space). */
static long unquote(char **pp, char *end, char *dst)
{
    char *p = *pp, q = *p++, *d = dst;
    for (;;) {
        if (p == end)
            return -1;
        if (q == '"' && *p == '\\' && p + 3 < end && p[1] == 'x' && unhex(p[2]) >= 0 &&
            unhex(p[3]) >= 0) {
            *d++ = (char)(unhex(p[2]) * 16 + unhex(p[3]));
            p += 4;
        } else if (*p == '\\' && p + 1 < end && (q == '"' || p[1] == '\'')) {
            char c = p[1];
            *d++ = q == '\''  ? c
                   : c == 'n' ? '\n'
                   : c == 'r' ? '\r'
                   : c == 't' ? '\t'
                   : c == 'b' ? '\b'
                   : c == 'a' ? '\a'
                              : c;
            p += 2;
        } else if (*p == q) {
            p++;
            if (p != end && *p != ' ' && *p != '\t')
                return -1;
            *pp = p;
            return d - dst;
        } else {
            *d++ = *p++;
        }
    }
}

static long parse_inline(char *buf, size_t len, const struct resp_limits *lim, struct resp_args *a,
                         const char **err)
{
    size_t max = len < lim->max_inline + 1 ? len : lim->max_inline + 1;
    char *nl = memchr(buf, '\n', max);
    if (!nl) {
        if (len > lim->max_inline) {
            *err = "Protocol error: too big inline request";
            return -1;
        }
        return 0;
    }
    char *end = nl > buf && nl[-1] == '\r' ? nl - 1 : nl, *p = buf;
    size_t first = a->n;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            break;
        if (a->n - first == lim->max_args) {
            *err = "Protocol error: invalid multibulk length";
            goto fail;
        }
        if (*p == '"' || *p == '\'') {
            char *dst = p;
            long n = unquote(&p, end, dst);
            if (n < 0) {
                *err = "Protocol error: unbalanced quotes in request";
                goto fail;
            }
            if ((size_t)n > lim->max_bulk)
                goto too_long;
            args_push(a, dst, (size_t)n);
        } else {
            char *s = p;
            while (p < end && *p != ' ' && *p != '\t')
                p++;
            if ((size_t)(p - s) > lim->max_bulk)
                goto too_long;
            args_push(a, s, (size_t)(p - s));
        }
    }
    return nl - buf + 1;
too_long: /* an argument past the bulk limit, whatever its form */
    *err = "Protocol error: invalid bulk length";
fail:
    a->n = first;
    return -1;
}

long resp_parse(char *buf, size_t len, const struct resp_limits *lim, struct resp_args *a,
                size_t *need, const char **err)
{
    *need = 0;
    if (len == 0)
        return 0;
    if (buf[0] == '*')
        return parse_multibulk(buf, len, lim, a, need, err);
    return parse_inline(buf, len, lim, a, err);
}

/* ---- Replies ---- */

void sb_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *sb_room(struct sbuf *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fputs("tpc-kv: out of memory\n", stderr);
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

void sb_put(struct sbuf *b, const void *p, size_t n)
{
    if (n) {
        memcpy(sb_room(b, n), p, n);
        b->len += n;
    }
}

/* Decimal digits of u, written backwards ending at end, two at a time; returns where they start. */
static char *fmt_u64(char *end, unsigned long long u)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        end -= 2;
        end[0] = pairs[2 * r];
        end[1] = pairs[2 * r + 1];
    }
    if (u >= 10) {
        end -= 2;
        end[0] = pairs[2 * u];
        end[1] = pairs[2 * u + 1];
    } else {
        *--end = (char)('0' + u);
    }
    return end;
}

/* v in decimal, written backwards ending at end (at most 20 bytes); returns where it starts. */
static char *fmt_ll(char *end, long long v)
{
    char *q = fmt_u64(end, v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v);
    if (v < 0)
        *--q = '-';
    return q;
}

size_t resp_fmt_ll(char out[24], long long v)
{
    char tmp[24], *end = tmp + sizeof(tmp), *q = fmt_ll(end, v);
    size_t n = (size_t)(end - q);
    memcpy(out, q, n);
    return n;
}

/* "<c><v>\r\n", formatted in place: a reply of many elements writes one per element. */
static void sb_line(struct sbuf *b, char c, long long v)
{
    char *p = sb_room(b, 24);
    char tmp[24], *end = tmp + sizeof(tmp), *q = fmt_ll(end, v);
    size_t n = (size_t)(end - q);
    p[0] = c;
    for (size_t i = 0; i < n; i++) /* (at most 20: a loop, not a call) */
        p[1 + i] = q[i];
    p[n + 1] = '\r';
    p[n + 2] = '\n';
    b->len += n + 3;
}

/* "<c><text>\r\n" with one room check. */
static void sb_text(struct sbuf *b, char c, const char *s, size_t n)
{
    char *p = sb_room(b, n + 3);
    p[0] = c;
    memcpy(p + 1, s, n);
    p[n + 1] = '\r';
    p[n + 2] = '\n';
    b->len += n + 3;
}

void sb_int_text(struct sbuf *b, const char *digits, size_t n)
{
    sb_text(b, ':', digits, n);
}

void sb_simple(struct sbuf *b, const char *s)
{
    sb_text(b, '+', s, strlen(s));
}

void sb_error(struct sbuf *b, const char *s)
{
    sb_text(b, '-', s, strlen(s));
}

void sb_errorf(struct sbuf *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* a reply line must not break */
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    sb_error(b, msg);
}

void sb_int(struct sbuf *b, long long v)
{
    sb_line(b, ':', v);
}

void sb_bulk(struct sbuf *b, const void *p, size_t n)
{
    sb_room(b, n + 26); /* the header's 23 at most, the bytes, CRLF: one check */
    sb_line(b, '$', (long long)n);
    char *d = b->p + b->len;
    if (n)
        memcpy(d, p, n);
    d[n] = '\r';
    d[n + 1] = '\n';
    b->len += n + 2;
}

void sb_nil(struct sbuf *b)
{
    sb_put(b, "$-1\r\n", 5);
}

void sb_array(struct sbuf *b, long long n)
{
    sb_line(b, '*', n);
}
