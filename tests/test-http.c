/* The HTTP example (examples/http.c, compiled in here without its main): its request parser
 * (examples/http-parse.c) on good, pipelined and malformed input, and the server end to end
 * over loopback: pipelined requests answered in order, "Connection: close" and HTTP/1.0
 * honoured, 400 then close for garbage; a restart while a connection of the first run is
 * open. */
#define TPC_HTTP_NO_MAIN
#include "../examples/http.c"
#include <errno.h>
#include <unistd.h>
#include "helpers.h"

static const char OK[] = "HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
                         "Content-Length: 13\r\n\r\nHello, World!";
static const char OK_CLOSE[] = "HTTP/1.1 200 OK\r\nServer: tpc\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 13\r\nConnection: close\r\n\r\nHello, World!";
static const char BAD[] = "HTTP/1.1 400 Bad Request\r\n";

/* Feeds text to a fresh parser in one piece; returns the bytes consumed, the answers in out. */
static size_t feed(const char *text, size_t len, char *out, size_t *out_len, bool *closing)
{
    http_conn h;
    http_conn_init(&h);
    *out_len = 0;
    size_t used = http_conn_feed(&h, text, len, out, out_len, BUF_SIZE);
    *closing = http_conn_closing(&h);
    return used;
}

/* The parser alone (tests/test-http-conformance.c has the protocol's cases over sockets). */
static void test_parser(void **state)
{
    (void)state;
    static char out[BUF_SIZE];
    size_t n;
    bool close = true;
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(feed(get, strlen(get), out, &n, &close), strlen(get));
    assert_int_equal(n, sizeof(OK) - 1);
    assert_memory_equal(out, OK, n);
    assert_false(close);
    assert_int_equal(feed(get, strlen(get) - 1, out, &n, &close), strlen(get) - 1);
    assert_int_equal(n, 0); /* incomplete: no answer yet */
    const char *post = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       "Connection: close\r\n\r\nhelloGET";
    assert_int_equal(feed(post, strlen(post), out, &n, &close), strlen(post) - 3);
    assert_int_equal(n, sizeof(OK_CLOSE) - 1);
    assert_memory_equal(out, OK_CLOSE, n);
    assert_true(close);
    static const char *bad[] = {"GET HTTP/1.1\r\n\r\n",
                                "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
                                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
                                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
                                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                                "GET / HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 99999999999999999999\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        feed(bad[i], strlen(bad[i]), out, &n, &close);
        assert_true(close);
        assert_memory_equal(out, BAD, sizeof(BAD) - 1);
    }
    /* An empty Content-Length followed by digits: parsing stays inside the header line (the
     * hand-written parser once read past the buffer, which ASan sees here: the buffer holds
     * exactly these bytes). */
    const char *head = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n";
    size_t hl = strlen(head), total = hl + 64;
    char *exact = malloc(total);
    memcpy(exact, head, hl);
    memset(exact + hl, '1', total - hl);
    feed(exact, total, out, &n, &close);
    assert_true(close);
    assert_memory_equal(out, BAD, sizeof(BAD) - 1);
    free(exact);
}

/* Reads until `want` bytes arrived or the peer closed; returns the count. */
static size_t read_some(int fd, char *buf, size_t size, size_t want)
{
    size_t got = 0;
    while (got < want && got < size) {
        ssize_t n = tpc_recv(fd, buf + got, size - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* Starts the example's server on a free loopback port, which it stores in *a. */
static tpc_server *start_local(tpc_addr *a)
{
    tpc_server *srv = NULL;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", a), 0);
    CHECK_EQ(http_start(a, &srv), 0);
    CHECK_EQ(tpc_server_addr(srv, a), 0);
    return srv;
}

/* Each case: the example's server on 2 shards, a fresh count of requests served, one client
 * connection; the case checks how many requests the server answered. */
static char buf[65536];
static const size_t ok = sizeof(OK) - 1;

static long served_total(void)
{
    long total = 0;
    for (int i = 0; i < TPC_MAX_SHARDS; i++)
        total += atomic_load(&served[i]);
    return total;
}

/* Runs case(fd) against a fresh server, then checks that it answered `answers` requests. */
struct http_case {
    void (*run)(int fd, const tpc_addr *a);
    long answers;
};

static int http_case_main(void *arg)
{
    const struct http_case *hc = arg;
    for (int i = 0; i < TPC_MAX_SHARDS; i++)
        atomic_store(&served[i], 0);
    tpc_addr a;
    tpc_server *srv = start_local(&a);
    int fd = tpc_connect(&a);
    CHECK(fd >= 0);
    hc->run(fd, &a);
    tpc_close(fd);
    CHECK_EQ(served_total(), hc->answers);
    CHECK_EQ(http_stop(srv), 0);
    return 0;
}

static void run_http_case(void (*run)(int fd, const tpc_addr *a), long answers)
{
    struct http_case hc = {run, answers};
    run_main(2, http_case_main, &hc);
}

/* 16 pipelined requests in one write: 16 answers, and the connection stays open. Then
 * Connection: close: one answer and the server closes. */
static void pipelined(int fd, const tpc_addr *a)
{
    (void)a;
    char req[2048] = "";
    for (int i = 0; i < 16; i++)
        strcat(req, "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    CHECK_EQ(tpc_send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    CHECK_EQ(read_some(fd, buf, sizeof(buf), 16 * ok), 16 * ok);
    for (int i = 0; i < 16; i++)
        CHECK(memcmp(buf + (size_t)i * ok, OK, ok) == 0);
    /* Then Connection: close: one answer and the server closes. */
    const char *last = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    CHECK_EQ(tpc_send(fd, last, strlen(last), 0), (ssize_t)strlen(last));
    CHECK_EQ(read_some(fd, buf, sizeof(buf), sizeof(buf)), sizeof(OK_CLOSE) - 1);
}

static void test_pipelined_then_close(void **state)
{
    (void)state;
    run_http_case(pipelined, 17);
}

/* 180 answers overflow the output buffer; the 400 for the garbage after them must still go out
 * whole, after them (it once overflowed the buffer). */
static void full_output(int fd, const tpc_addr *a)
{
    (void)a;
    static char many[8192];
    many[0] = 0;
    for (int i = 0; i < 180; i++)
        strcat(many, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    strcat(many, "HELLO\r\n\r\n");
    CHECK_EQ(tpc_send(fd, many, strlen(many), 0), (ssize_t)strlen(many));
    CHECK(read_some(fd, buf, sizeof(buf), sizeof(buf)) > 180 * ok + sizeof(BAD) - 1);
    CHECK(memcmp(buf + 180 * ok, BAD, sizeof(BAD) - 1) == 0);
}

static void test_400_after_a_full_output_buffer(void **state)
{
    (void)state;
    run_http_case(full_output, 180);
}

/* HTTP/1.0 with its body split over two writes: answered once complete, then closed. */
static void http10_split_body(int fd, const tpc_addr *a)
{
    (void)a;
    const char *head = "POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhel";
    CHECK_EQ(tpc_send(fd, head, strlen(head), 0), (ssize_t)strlen(head));
    /* Spaced out to vary how the parts arrive (the workload, not synchronisation): the answer
     * must be the same however they do. */
    tpc_sleep(1000 * 1000);
    CHECK_EQ(tpc_send(fd, "lo", 2, 0), 2);
    CHECK_EQ(read_some(fd, buf, sizeof(buf), sizeof(buf)), sizeof(OK_CLOSE) - 1);
}

static void test_http10_split_body(void **state)
{
    (void)state;
    run_http_case(http10_split_body, 1);
}

/* A body larger than a receive buffer (4 KiB) arrives in several chunks. */
static void large_body(int fd, const tpc_addr *a)
{
    (void)a;
    static char big[24000];
    int hl =
        snprintf(big, sizeof(big), "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 12000\r\n\r\n");
    memset(big + hl, 'x', 12000);
    CHECK_EQ(tpc_send(fd, big, (size_t)hl + 12000, 0), hl + 12000);
    CHECK_EQ(read_some(fd, buf, sizeof(buf), ok), ok);
}

static void test_large_body(void **state)
{
    (void)state;
    run_http_case(large_body, 1);
}

/* Headers larger than HTTP_MAX_HEAD (16 KiB) get 431. */
static void large_headers(int fd, const tpc_addr *a)
{
    (void)a;
    static char big[24000];
    int hl = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
    memset(big + hl, 'y', HTTP_MAX_HEAD + 1 - (size_t)hl); /* one byte over the limit */
    CHECK_EQ(tpc_send(fd, big, HTTP_MAX_HEAD + 1, 0), HTTP_MAX_HEAD + 1);
    CHECK(read_some(fd, buf, sizeof(buf), sizeof(buf)) > 12);
    CHECK(memcmp(buf, "HTTP/1.1 431 ", 13) == 0);
}

static void test_headers_larger_than_the_limit(void **state)
{
    (void)state;
    run_http_case(large_headers, 0);
}

/* A request that ends exactly where the request buffer fills, inside a received chunk, with the
 * next request in the rest of that chunk: the chunk must be drained before the next one is
 * taken (it used to be overwritten, losing the request and the buffer). */
static void request_at_buffer_end(int fd, const tpc_addr *a)
{
    (void)a;
    static char big[24000];
    const char *get = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t gl = strlen(get);
    memcpy(big, get, gl);
    int hl = snprintf(big + gl, sizeof(big) - gl,
                      "POST /ee HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n", BUF_SIZE - 53);
    CHECK_EQ(hl, 53); /* so that the POST is BUF_SIZE long */
    memset(big + gl + (size_t)hl, 'z', BUF_SIZE - 53);
    memcpy(big + gl + BUF_SIZE, get, gl);
    CHECK_EQ(tpc_send(fd, big, 2 * gl + BUF_SIZE, 0), (ssize_t)(2 * gl + BUF_SIZE));
    tpc_deadline_set(5000 * 1000 * 1000LL); /* a lost request shows as a short read, not a hang */
    CHECK_EQ(read_some(fd, buf, sizeof(buf), 3 * ok), 3 * ok);
    tpc_deadline_clear();
}

static void test_request_ending_at_the_buffer_end(void **state)
{
    (void)state;
    run_http_case(request_at_buffer_end, 3);
}

/* Garbage: 400, then closed. */
static void garbage(int fd, const tpc_addr *a)
{
    (void)a;
    const char *junk = "HELLO\r\n\r\n";
    CHECK_EQ(tpc_send(fd, junk, strlen(junk), 0), (ssize_t)strlen(junk));
    size_t n = read_some(fd, buf, sizeof(buf), sizeof(buf));
    CHECK(n > sizeof(BAD) - 1);
    CHECK(memcmp(buf, BAD, sizeof(BAD) - 1) == 0);
}

static void test_garbage_gets_400_and_close(void **state)
{
    (void)state;
    run_http_case(garbage, 0);
}

/* A request split over several writes. */
static void split_request(int fd, const tpc_addr *a)
{
    (void)a;
    const char *parts[] = {"GET / HT", "TP/1.1\r\nHo", "st: t\r\n", "\r\n"};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(tpc_send(fd, parts[i], strlen(parts[i]), 0), (ssize_t)strlen(parts[i]));
        tpc_sleep(1000 * 1000); /* spaced out, as above: the workload, not synchronisation */
    }
    CHECK_EQ(read_some(fd, buf, sizeof(buf), ok), ok);
}

static void test_request_split_over_writes(void **state)
{
    (void)state;
    run_http_case(split_request, 1);
}

/* Stop and start again while a connection of the first run is open. Without a grace period
 * (the caller has no deadline) stop cancels that connection's handler: its client sees the end
 * and the next run starts with a fresh pool. With one (a deadline), the stop runs in a fiber
 * of its own while the second run serves: the first run's connection is still answered, and
 * the stop returns once it has closed. LeakSanitizer and valgrind check that every pool goes. */
static int stop_with_grace(void *arg)
{
    tpc_deadline_set(60LL * 1000 * 1000 * 1000); /* far more than needed: must not pass */
    return http_stop(arg);
}

static int restart_main(void *arg)
{
    (void)arg;
    tpc_addr a;
    tpc_server *srv = start_local(&a);
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    int old = tpc_connect(&a);
    CHECK(old >= 0);
    CHECK_EQ(tpc_send(old, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    CHECK_EQ(read_some(old, buf, sizeof(buf), ok), ok);
    CHECK_EQ(http_stop(srv), 0); /* cancels the open connection's handler */
    CHECK_EQ(tpc_recv(old, buf, sizeof(buf), 0), 0);
    tpc_close(old);

    srv = start_local(&a);
    old = tpc_connect(&a);
    CHECK(old >= 0);
    CHECK_EQ(tpc_send(old, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    CHECK_EQ(read_some(old, buf, sizeof(buf), ok), ok);
    tpc_fiber *stopper;
    CHECK_EQ(tpc_spawn(stop_with_grace, srv, &stopper), 0);
    tpc_server *srv2 = start_local(&a); /* the stopper runs while this waits */
    int fd = tpc_connect(&a);
    CHECK(fd >= 0);
    CHECK_EQ(tpc_send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    CHECK_EQ(read_some(fd, buf, sizeof(buf), ok), ok);
    CHECK_EQ(tpc_send(old, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    CHECK_EQ(read_some(old, buf, sizeof(buf), ok), ok); /* the first run's connection too */
    tpc_close(old);
    int rc = -1;
    CHECK_EQ(tpc_join(stopper, &rc), 0); /* returns once that connection has ended */
    CHECK_EQ(rc, 0);
    tpc_close(fd);
    CHECK_EQ(http_stop(srv2), 0);
    return 0;
}

static void test_restart(void **state)
{
    (void)state;
    run_main(1, restart_main, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser),
        cmocka_unit_test(test_pipelined_then_close),
        cmocka_unit_test(test_400_after_a_full_output_buffer),
        cmocka_unit_test(test_http10_split_body),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_headers_larger_than_the_limit),
        cmocka_unit_test(test_request_ending_at_the_buffer_end),
        cmocka_unit_test(test_garbage_gets_400_and_close),
        cmocka_unit_test(test_request_split_over_writes),
        cmocka_unit_test(test_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
