/* What tpc-http (examples/http.c, compiled in here without its main) accepts and answers, over
 * raw loopback sockets, case by case (RFC 9112; the rules are in examples/http-parse.h): HEAD,
 * HTTP/1.0 with and without keep-alive, "Connection: close", bodies with Content-Length and
 * chunked, "Expect: 100-continue", pipelining, byte-at-a-time arrival, and the error answers
 * (400, 413, 417, 431, 501, 505), each followed by the server closing the connection.
 *
 * The server runs in a runtime of its own (tpc_start) while this thread is a plain client
 * with blocking sockets; every wait is a poll() bounded by a deadline, so a server that does
 * not answer fails the case instead of hanging it. TPC_HTTP_CONFORMANCE_ADDR=HOST:PORT runs
 * the same cases against a server already running there instead (tpc-proxy in front of
 * tpc-http, say); the parser-only case is then skipped. */
#define TPC_HTTP_NO_MAIN
#include "../examples/http.c"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "helpers.h"

static struct sockaddr_in target;
static tpc_runtime *runtime;
static int to_server[2], from_server[2]; /* stop request; the address it listens on */

/* Every wait ends within this (longer in sanitizer and valgrind runs). */
static int64_t wait_ms(void)
{
    return getenv("TPC_TEST_SLOW") ? 40000 : 10000;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* ---- the server, in its own runtime ---- */

static int server_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    tpc_server *srv = NULL;
    char text[64] = "";
    if (tpc_addr_parse("127.0.0.1:0", &a) == 0 && http_start(&a, &srv) == 0)
        tpc_server_addr(srv, &a);
    if (srv)
        tpc_addr_format(&a, text, sizeof(text));
    if (write(from_server[1], text, sizeof(text)) != (ssize_t)sizeof(text) || !srv)
        return 1;
    char stop;
    tpc_recv(to_server[0], &stop, 1, 0); /* until the tests are done */
    return http_stop(srv) < 0 ? 1 : 0;
}

static int parse_target(const char *text)
{
    const char *colon = strrchr(text, ':');
    char host[64];
    if (!colon || (size_t)(colon - text) >= sizeof(host))
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &target.sin_addr) == 1 ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    const char *external = getenv("TPC_HTTP_CONFORMANCE_ADDR");
    if (external)
        return parse_target(external);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, to_server) < 0 || pipe(from_server) < 0)
        return -1;
    tpc_config c = {.shards = 2};
    if (tpc_start(&c, server_main, NULL, &runtime) < 0)
        return -1;
    char text[64];
    struct pollfd p = {.fd = from_server[0], .events = POLLIN};
    if (poll(&p, 1, (int)wait_ms()) != 1 || read(from_server[0], text, sizeof(text)) != 64 ||
        !text[0]) {
        fprintf(stderr, "the server did not start\n");
        return -1;
    }
    return parse_target(text);
}

static int group_teardown(void **state)
{
    (void)state;
    if (!runtime)
        return 0;
    if (write(to_server[1], "x", 1) != 1)
        return -1;
    int rc = tpc_wait(runtime);
    close(to_server[0]);
    close(to_server[1]);
    close(from_server[0]);
    close(from_server[1]);
    return rc;
}

/* ---- a plain client ---- */

struct client {
    int fd;
    size_t have;
    char buf[1 << 16];
};

struct response {
    int status;
    long length;         /* Content-Length, -1 if none */
    char connection[32]; /* the Connection header's value, "" if none */
    char body[256];
    size_t body_len;
};

static struct client *client_open(void)
{
    struct client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&target, sizeof(target)), 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
}

static void client_close(struct client *c)
{
    close(c->fd);
    free(c);
}

/* Sends all of p[0..n) (the server may have closed already: then what is left is dropped). */
static void send_bytes(struct client *c, const char *p, size_t n)
{
    int64_t end = now_ms() + wait_ms();
    while (n) {
        struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
        int left = (int)(end - now_ms());
        assert_true(left > 0 && poll(&pf, 1, left) == 1);
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0)
            return; /* EPIPE, ECONNRESET: the server has answered and closed */
        p += w;
        n -= (size_t)w;
    }
}

static void send_text(struct client *c, const char *text)
{
    send_bytes(c, text, strlen(text));
}

/* One send per byte, with TCP_NODELAY: each byte leaves in a segment of its own. */
static void send_bytewise(struct client *c, const char *text)
{
    for (; *text; text++)
        send_bytes(c, text, 1);
}

/* Reads more into c->buf, waiting until the deadline. Returns the count, 0 at the end of the
 * stream (or a reset), -1 at the deadline. */
static ssize_t fill(struct client *c, int64_t end)
{
    for (;;) {
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int left = (int)(end - now_ms());
        if (left <= 0 || poll(&pf, 1, left) == 0)
            return -1;
        ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0)
            return 0;
        c->have += (size_t)n;
        return n;
    }
}

static void consume(struct client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->have - n);
    c->have -= n;
}

/* A header's value in head[0..len), into v (size vsize); false if there is none. */
static bool header(const char *head, size_t len, const char *name, char *v, size_t vsize)
{
    size_t nl = strlen(name);
    for (const char *h = head; h && h < head + len; h = memchr(h, '\n', len - (size_t)(h - head))) {
        if (*h == '\n')
            h++;
        if ((size_t)(head + len - h) > nl && !strncasecmp(h, name, nl) && h[nl] == ':') {
            const char *s = h + nl + 1, *e = memchr(s, '\r', len - (size_t)(s - head));
            while (s < e && *s == ' ')
                s++;
            snprintf(v, vsize, "%.*s", (int)(e - s), s);
            return true;
        }
    }
    return false;
}

/* Reads the next response: status line, headers, and a body of Content-Length bytes (none for
 * a HEAD request or a 1xx). Fails the test if none arrives before the deadline. */
static void read_response(struct client *c, bool head_request, struct response *r)
{
    int64_t end = now_ms() + wait_ms();
    char *eoh;
    while (!(eoh = memmem(c->buf, c->have, "\r\n\r\n", 4)))
        if (fill(c, end) <= 0)
            fail_msg("no complete response head (%zu bytes: %.*s)", c->have, (int)c->have, c->buf);
    size_t hlen = (size_t)(eoh - c->buf) + 4;
    memset(r, 0, sizeof(*r));
    assert_int_equal(memcmp(c->buf, "HTTP/1.1 ", 9), 0);
    r->status = atoi(c->buf + 9);
    char v[64];
    r->length = header(c->buf, hlen, "Content-Length", v, sizeof(v)) ? atol(v) : -1;
    header(c->buf, hlen, "Connection", r->connection, sizeof(r->connection));
    consume(c, hlen);
    if (head_request || r->status < 200 || r->length <= 0)
        return;
    assert_true(r->length < (long)sizeof(r->body));
    while (c->have < (size_t)r->length)
        if (fill(c, end) <= 0)
            fail_msg("body cut short");
    memcpy(r->body, c->buf, (size_t)r->length);
    r->body_len = (size_t)r->length;
    consume(c, r->body_len);
}

/* A 200 "Hello, World!" (without its body for HEAD), with this Connection header. */
static void expect_hello(struct client *c, bool head_request, const char *connection)
{
    struct response r;
    read_response(c, head_request, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.length, 13);
    assert_string_equal(r.connection, connection);
    if (!head_request)
        assert_memory_equal(r.body, "Hello, World!", 13);
}

/* The server closes: the stream ends (a FIN, or a reset) with nothing more in it. */
static void expect_closed(struct client *c)
{
    int64_t end = now_ms() + wait_ms();
    ssize_t n;
    while ((n = fill(c, end)) > 0)
        ;
    assert_int_equal(n, 0); /* not the deadline */
    assert_int_equal(c->have, 0);
}

/* Nothing more arrives and the connection is still open: a request on it is answered. */
static void expect_open(struct client *c)
{
    assert_int_equal(c->have, 0);
    send_text(c, "GET /still-open HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_hello(c, false, "");
}

/* An error answer: the status, a text/plain reason, Connection: close, then the close. */
static void expect_error(struct client *c, int status)
{
    struct response r;
    read_response(c, false, &r);
    assert_int_equal(r.status, status);
    assert_string_equal(r.connection, "close");
    assert_true(r.length > 1 && r.body[r.length - 1] == '\n');
    expect_closed(c);
}

#define GET "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- the cases ---- */

static void test_keep_alive(void **state)
{
    (void)state;
    struct client *c = client_open();
    send_text(c, GET);
    expect_hello(c, false, "");
    expect_open(c);
    client_close(c);
}

/* HEAD: the headers of the GET (Content-Length 13) and no body, so that a GET pipelined after
 * it is read as its own response. */
static void test_head(void **state)
{
    (void)state;
    struct client *c = client_open();
    send_text(c, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" GET "HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_hello(c, true, "");
    expect_hello(c, false, "");
    expect_hello(c, true, "");
    expect_open(c);
    client_close(c);
}

static void test_http10_close(void **state)
{
    (void)state;
    struct client *c = client_open();
    send_text(c, "GET / HTTP/1.0\r\n\r\n" GET); /* the second one is not answered */
    expect_hello(c, false, "close");
    expect_closed(c);
    client_close(c);
}

/* HTTP/1.0 keep-alive (ab -k): the answer says so, and the connection stays open. */
static void test_http10_keep_alive(void **state)
{
    (void)state;
    struct client *c = client_open();
    const char *req = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    send_text(c, req);
    expect_hello(c, false, "keep-alive");
    send_text(c, "HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_hello(c, true, "keep-alive");
    send_text(c, "GET / HTTP/1.0\r\n\r\n"); /* without it: closed after the answer */
    expect_hello(c, false, "close");
    expect_closed(c);
    client_close(c);
}

static void test_connection_close(void **state)
{
    (void)state;
    static const char *reqs[] = {
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" GET,
        "GET / HTTP/1.1\r\nHost: t\r\nconnection:\tCLOSE\r\n\r\n" GET,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: te, close\r\n\r\n" GET,
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        struct client *c = client_open();
        send_text(c, reqs[i]);
        expect_hello(c, false, "close");
        expect_closed(c);
        client_close(c);
    }
}

/* Bodies are read and discarded: what follows them is the next request. */
static void test_bodies(void **state)
{
    (void)state;
    struct client *c = client_open();
    send_text(c, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" GET);
    expect_hello(c, false, "");
    expect_hello(c, false, "");
    send_text(c, "PUT /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n1a;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                 "Trailer-Field: x\r\n\r\n" GET);
    expect_hello(c, false, "");
    expect_hello(c, false, "");
    /* No Content-Length and no Transfer-Encoding: no body (RFC 9112 6.3), so no 411. */
    send_text(c, "POST / HTTP/1.1\r\nHost: t\r\n\r\n" GET);
    expect_hello(c, false, "");
    expect_hello(c, false, "");
    /* A body in pieces, the last with the next request. */
    send_text(c, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab");
    send_text(c, "c\r\n0\r\n\r\n" GET);
    expect_hello(c, false, "");
    expect_hello(c, false, "");
    expect_open(c);
    client_close(c);
}

/* Expect: 100-continue: the interim answer comes before the body is sent. */
static void test_expect_continue(void **state)
{
    (void)state;
    static const char *heads[] = {
        "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    static const char *bodies[] = {"hello", "5\r\nhello\r\n0\r\n\r\n"};
    struct client *c = client_open();
    for (int i = 0; i < 2; i++) {
        send_text(c, heads[i]);
        struct response r;
        read_response(c, false, &r);
        assert_int_equal(r.status, 100);
        send_text(c, bodies[i]);
        expect_hello(c, false, "");
    }
    /* Without a body there is nothing to continue: the answer comes at once. */
    send_text(c, "GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n");
    expect_hello(c, false, "");
    expect_open(c);
    client_close(c);
    /* A body over the limit: 413 instead of 100, and the body is not awaited. */
    c = client_open();
    send_text(c, "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                 "Content-Length: 1048577\r\n\r\n");
    expect_error(c, 413);
    client_close(c);
}

/* 64 requests in one write, of several kinds: 64 answers, in order. */
static void test_pipelining(void **state)
{
    (void)state;
    static char reqs[64 * 96];
    reqs[0] = 0;
    for (int i = 0; i < 64; i++)
        strcat(reqs, i % 4 == 1   ? "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                     : i % 4 == 2 ? "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                                  : GET);
    struct client *c = client_open();
    send_text(c, reqs);
    for (int i = 0; i < 64; i++)
        expect_hello(c, i % 4 == 1, "");
    expect_open(c);
    client_close(c);
}

/* Requests that arrive a byte at a time, a chunked body and Expect included. */
static void test_bytewise(void **state)
{
    (void)state;
    struct client *c = client_open();
    send_bytewise(c, "POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "4\r\nbody\r\n0\r\n\r\n" GET);
    expect_hello(c, false, "");
    expect_hello(c, false, "");
    send_bytewise(c,
                  "PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    struct response r;
    read_response(c, false, &r);
    assert_int_equal(r.status, 100);
    send_bytewise(c, "ok");
    expect_hello(c, false, "");
    send_bytewise(c, "GET / HTTP/1.0\r\n\r\n");
    expect_hello(c, false, "close");
    expect_closed(c);
    client_close(c);
    c = client_open();
    send_bytewise(c, "GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n");
    expect_error(c, 400);
    client_close(c);
}

struct error_case {
    const char *name, *request;
    int status;
};

/* One request each, on a connection of its own: the error answer, then the close. */
static void run_errors(const struct error_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        print_message("%s\n", cases[i].name);
        struct client *c = client_open();
        send_text(c, cases[i].request);
        expect_error(c, cases[i].status);
        client_close(c);
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_malformed(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"no version", "GET /\r\nHost: t\r\n\r\n", 400},
        {"no target", "GET HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"no method", " / HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"not a token", "G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"control byte", "\x01GET / HTTP/1.1\r\n\r\n", 400},
        {"version garbage", "GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400},
        {"not HTTP", "GET / HTTPS/1.1\r\nHost: t\r\n\r\n", 400},
        {"text after version", "GET / HTTP/1.1 x\r\nHost: t\r\n\r\n", 400},
        {"space in target", "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"header without colon", "GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400},
        {"header without name", "GET / HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n", 400},
        {"space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400},
        {"control byte in value", "GET / HTTP/1.1\r\nHost: t\x01\r\n\r\n", 400},
        {"bare CR", "GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", 400},
        {"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
        {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"Content-Length empty", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n\r\n", 400},
        {"Content-Length +2", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +2\r\n\r\nab", 400},
        {"Content-Length -1", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400},
        {"Content-Length twice",
         "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
        {"Content-Length and chunked",
         "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"chunked twice",
         "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
        {"Transfer-Encoding in HTTP/1.0",
         "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"bad chunk size", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         400},
        {"chunk without CRLF",
         "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400},
    };
    run_errors(cases, N(cases));
    /* Good requests before a bad one are answered first. */
    struct client *c = client_open();
    send_text(c, GET GET "HELLO\r\n\r\n");
    expect_hello(c, false, "");
    expect_hello(c, false, "");
    expect_error(c, 400);
    client_close(c);
}

static void test_too_large(void **state)
{
    (void)state;
    static char head[HTTP_MAX_HEAD + 64], line[HTTP_MAX_HEAD + 64];
    int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: t\r\nX: ");
    memset(head + n, 'a', HTTP_MAX_HEAD);
    strcpy(head + n + HTTP_MAX_HEAD, "\r\n\r\n");
    n = snprintf(line, sizeof(line), "GET /");
    memset(line + n, 'b', HTTP_MAX_HEAD);
    strcpy(line + n + HTTP_MAX_HEAD, " HTTP/1.1\r\nHost: t\r\n\r\n");
    const struct error_case cases[] = {
        {"oversize header", head, 431},
        {"oversize request line", line, 431},
        {"Content-Length over 1 MiB",
         "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413},
        {"Content-Length huge",
         "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000000000\r\n\r\n", 413},
        {"chunk over 1 MiB",
         "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", 413},
        {"chunks over 1 MiB in all",
         "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n80000\r\n", 0},
    };
    run_errors(cases, N(cases) - 1);
    /* Chunks that add up to more than the limit: 413 once the sum passes it. */
    struct client *c = client_open();
    static char chunk[0x80000 + 16];
    send_text(c, cases[5].request);
    memset(chunk, 'c', 0x80000);
    memcpy(chunk + 0x80000, "\r\n80001\r\n", 10);
    send_bytes(c, chunk, 0x80000 + 9);
    expect_error(c, 413);
    client_close(c);
}

static void test_not_implemented(void **state)
{
    (void)state;
    static const struct error_case cases[] = {
        {"unknown method", "FOO / HTTP/1.1\r\nHost: t\r\n\r\n", 501},
        {"lower-case method", "get / HTTP/1.1\r\nHost: t\r\n\r\n", 501},
        {"known prefix", "GE / HTTP/1.1\r\nHost: t\r\n\r\n", 501},
        {"CONNECT", "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 501},
        {"TRACE", "TRACE / HTTP/1.1\r\nHost: t\r\n\r\n", 501},
        {"gzip", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"gzip, chunked", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
         501},
        {"unknown expectation", "POST / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n", 417},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505},
        {"HTTP/3.1", "GET / HTTP/3.1\r\nHost: t\r\n\r\n", 505},
    };
    run_errors(cases, N(cases));
    /* HTTP/1.x for x > 1 is served as HTTP/1.1 (RFC 9110 2.5); an Upgrade is not taken up. */
    struct client *c = client_open();
    send_text(c, "GET / HTTP/1.2\r\nHost: t\r\n\r\n"
                 "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    expect_hello(c, false, "");
    expect_hello(c, false, "");
    expect_open(c);
    client_close(c);
}

/* The parser alone: every request above gives the same answers fed a byte at a time as fed
 * whole (the sockets above cannot force the server to read a byte at a time). */
static void test_parser_bytewise(void **state)
{
    (void)state;
    if (getenv("TPC_HTTP_CONFORMANCE_ADDR"))
        skip();
    static const char *inputs[] = {
        GET "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" GET,
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n" GET "FOO / HTTP/1.1\r\n\r\n",
        GET "GE / HTTP/1.1\r\n",
        GET "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" GET,
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : t\r\n\r\n",
    };
    static char whole[BUF_SIZE], bytes[BUF_SIZE];
    for (size_t i = 0; i < N(inputs); i++) {
        http_conn h;
        size_t wl = 0, bl = 0, len = strlen(inputs[i]);
        http_conn_init(&h);
        http_conn_feed(&h, inputs[i], len, whole, &wl, sizeof(whole));
        http_conn_init(&h);
        for (size_t j = 0; j < len && !http_conn_closing(&h); j++)
            assert_int_equal(http_conn_feed(&h, inputs[i] + j, 1, bytes, &bl, sizeof(bytes)), 1);
        assert_int_equal(bl, wl);
        assert_memory_equal(bytes, whole, wl);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive),       cmocka_unit_test(test_head),
        cmocka_unit_test(test_http10_close),     cmocka_unit_test(test_http10_keep_alive),
        cmocka_unit_test(test_connection_close), cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_expect_continue),  cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_bytewise),         cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_too_large),        cmocka_unit_test(test_not_implemented),
        cmocka_unit_test(test_parser_bytewise),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
