/* tpc-proxy's configuration parser (config.c): good files load with their values and
 * defaults; bad ones give every error with its line number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "config.h"

/* Writes text to a temporary file and loads it; returns the error count, the errors in errs. */
static int load(const char *text, px_config **c, char *errs, size_t size)
{
    char path[] = "/tmp/tpc-proxy-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    FILE *e = fmemopen(errs, size, "w");
    assert_non_null(e);
    int rc = px_config_load(path, c, e);
    fclose(e);
    /* the messages name the file: make them independent of it */
    char *at;
    while ((at = strstr(errs, path)))
        memcpy(at, "F", 1), memmove(at + 1, at + strlen(path), strlen(at + strlen(path)) + 1);
    unlink(path);
    return rc;
}

static void good(void **state)
{
    (void)state;
    px_config *c;
    char errs[4096] = "";
    int rc = load("; a comment\n"
                  "[frontend web]\n"
                  "listen = 127.0.0.1:8000\n"
                  "mode = tcp\n"
                  "maxconn = 100\n"
                  "accept = handoff\n"
                  "timeout_client_idle = 30s\n"
                  "timeout_server_connect = 200ms\n"
                  "backend = app\n"
                  "\n"
                  "[backend app]\n"
                  "balance = leastconn\n"
                  "server = a 127.0.0.1:9001 weight=3\n"
                  "server = b [::1]:9002\n"
                  "check = tcp\n"
                  "check_interval = 1s\n"
                  "rise = 1\n"
                  "fall = 2\n"
                  "[stats]\n"
                  "listen = 127.0.0.1:8404\n",
                  &c, errs, sizeof(errs));
    assert_string_equal(errs, "");
    assert_int_equal(rc, 0);
    assert_int_equal(c->nfrontends, 1);
    px_frontend *f = &c->frontends[0];
    assert_string_equal(f->name, "web");
    assert_int_equal(f->maxconn, 100);
    assert_true(f->handoff);
    assert_true(f->client_idle_ns == 30LL * 1000000000);
    assert_true(f->server_connect_ns == 200LL * 1000000);
    assert_true(f->server_idle_ns == 60LL * 1000000000); /* the default */
    assert_int_equal(f->backend, 0);
    assert_int_equal(c->nbackends, 1);
    px_backend *b = &c->backends[0];
    assert_int_equal(b->balance, PX_BAL_LEASTCONN);
    assert_int_equal(b->nservers, 2);
    assert_string_equal(b->servers[0].name, "a");
    assert_int_equal(b->servers[0].weight, 3);
    assert_int_equal(b->servers[1].weight, 1);
    assert_int_equal(b->servers[1].addr.sa.sa_family, AF_INET6);
    assert_int_equal(b->rise, 1);
    assert_int_equal(b->fall, 2);
    assert_true(c->has_stats);
    px_config_free(c);
}

/* HTTP mode: routes in order, check = http with its path. */
static void http_mode(void **state)
{
    (void)state;
    px_config *c;
    char errs[4096] = "";
    int rc = load("[frontend web]\nlisten = 127.0.0.1:8000\nmode = http\nbackend = app\n"
                  "route = api.example.com /v1/ api\n"
                  "route = * /static/ files\n"
                  "timeout_http_request = 2s\n"
                  "[backend app]\nserver = a 127.0.0.1:9001\n"
                  "[backend api]\nserver = a 127.0.0.1:9002\ncheck = http\n"
                  "check_path = /health?full=1\n"
                  "[backend files]\nserver = a 127.0.0.1:9003\ncheck = http\n",
                  &c, errs, sizeof(errs));
    assert_string_equal(errs, "");
    assert_int_equal(rc, 0);
    px_frontend *f = &c->frontends[0];
    assert_int_equal(f->mode, PX_MODE_HTTP);
    assert_true(f->http_request_ns == 2LL * 1000000000);
    assert_int_equal(f->nroutes, 2);
    assert_string_equal(f->routes[0].host, "api.example.com");
    assert_string_equal(f->routes[0].prefix, "/v1/");
    assert_int_equal(f->routes[0].backend, 1);
    assert_string_equal(f->routes[1].host, "*");
    assert_int_equal(f->routes[1].prefix_len, 8);
    assert_int_equal(f->routes[1].backend, 2);
    assert_int_equal(c->backends[1].check, PX_CHECK_HTTP);
    assert_string_equal(c->backends[1].check_path, "/health?full=1");
    assert_string_equal(c->backends[2].check_path, "/"); /* the default */
    assert_int_equal(c->backends[0].check, PX_CHECK_TCP);
    px_config_free(c);
}

static void expect(const char *text, int errors, const char *const lines[])
{
    px_config *c = (px_config *)1;
    char errs[4096] = "";
    int rc = load(text, &c, errs, sizeof(errs));
    if (rc != errors)
        fail_msg("%d errors, expected %d:\n%s", rc, errors, errs);
    assert_null(c);
    for (int i = 0; lines[i]; i++)
        if (!strstr(errs, lines[i]))
            fail_msg("expected \"%s\" in:\n%s", lines[i], errs);
}

static void bad(void **state)
{
    (void)state;
    expect("[frontend a]\n"
           "listen = 127.0.0.1:8000\n"
           "bogus = 1\n"
           "backend = nowhere\n"
           "timeout_client_idle = 5 parsecs\n"
           "maxconn = -3\n"
           "[backend b]\n"
           "server = x 127.0.0.1:1\n"
           "server = x 127.0.0.1:2\n"
           "server = y localhost:80\n"
           "server = z 127.0.0.1:3 weight=0\n"
           "balance = random\n"
           "rise = 0\n",
           9,
           (const char *const[]){
               "F:3: unknown key 'bogus' in [frontend a]",
               "F:4: unknown backend 'nowhere' in [frontend a]",
               "F:5: bad duration '5 parsecs' for timeout_client_idle in [frontend a]",
               "F:6: bad maxconn '-3' in [frontend a]",
               "F:9: duplicate server 'x' in [backend b] (first on line 8)",
               "F:10: bad address 'localhost:80' for server in [backend b]",
               "F:11: bad server option 'weight=0' in [backend b]",
               "F:12: bad balance 'random' in [backend b]", "F:13: bad rise '0' in [backend b]",
               NULL});
    expect("[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\n"
           "[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\n"
           "[backend b]\nserver = s 127.0.0.1:2\n"
           "[backend b]\nserver = s 127.0.0.1:2\n"
           "[oops]\nkey = 1\n"
           "[backend empty]\ncheck = none\n",
           5,
           (const char *const[]){"F:4: duplicate frontend 'a' (first on line 1)",
                                 "F:4: [frontend a] listens where [frontend a] does",
                                 "F:9: duplicate backend 'b' (first on line 7)",
                                 "F:11: unknown section [oops]",
                                 "F:13: no server in [backend empty]", NULL});
    expect("[frontend a]\nthis line has no equals sign\nlisten = 127.0.0.1:1\n", 2,
           (const char *const[]){"F:2: syntax error", "F:1: no backend in [frontend a]", NULL});
    /* Every syntax error is said, not the first alone; a header without ] is one (libinih took
     * it for a header, and the errors that followed from that hid it). */
    const char *ok_rest = "[backend b]\nserver = s 127.0.0.1:2\n";
    char text[512];
    snprintf(text, sizeof(text),
             "[frontend a]\nbad one\nlisten = 127.0.0.1:1\nbad two\nbackend = b\n%s", ok_rest);
    expect(text, 2, (const char *const[]){"F:2: syntax error", "F:4: syntax error", NULL});
    expect("[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\n[backend b\nserver = s 127.0.0.1:2\n",
           3,
           (const char *const[]){"F:4: section header without ]",
                                 "F:5: unknown key 'server' in [frontend a]", NULL});
    /* [stats] with nothing to listen on; a wildcard address and another on its port. */
    snprintf(text, sizeof(text), "[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\n%s[stats]\n",
             ok_rest);
    expect(text, 1, (const char *const[]){"F:6: no listen address in [stats]", NULL});
    snprintf(text, sizeof(text),
             "[frontend a]\nlisten = 0.0.0.0:7\nbackend = b\n"
             "[frontend c]\nlisten = 127.0.0.1:7\nbackend = b\n%s",
             ok_rest);
    expect(text, 1,
           (const char *const[]){"F:4: [frontend c] listens where [frontend a] does", NULL});
    expect(
        "[frontend a]\nmode = http\nlisten = 1.2.3.4:5\nbackend = b\n"
        "route = example.com /api nowhere\n"
        "route = example.com api b\n"
        "route = example.com /api\n"
        "mode = gopher\n"
        "[frontend t]\nlisten = 1.2.3.4:6\nbackend = b\nroute = * / b\n"
        "[backend b]\nserver = s 127.0.0.1:2\ncheck = smoke\ncheck_path = health\n",
        7,
        (const char *const[]){"F:5: unknown backend 'nowhere' in a route of [frontend a]",
                              "F:6: bad route 'example.com api b' in [frontend a]",
                              "F:7: bad route 'example.com /api' in [frontend a]",
                              "F:8: duplicate key 'mode' in [frontend a] (first on line 2)",
                              "F:12: route in [frontend t] needs mode = http",
                              "F:15: bad check 'smoke' in [backend b] (expected tcp, http or none)",
                              "F:16: bad check_path 'health' in [backend b]", NULL});
    expect("", 1, (const char *const[]){"no [frontend NAME] section", NULL});
    expect("[frontend a]\nmode = gopher\nlisten = 1.2.3.4:5\nbackend = b\n[backend b]\n"
           "server = s 127.0.0.1:2\n",
           1,
           (const char *const[]){"F:2: bad mode 'gopher' in [frontend a] (expected tcp or http)",
                                 NULL});
    expect("listen = 127.0.0.1:9\n[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\n"
           "[backend b]\nserver = s 127.0.0.1:2\n",
           1,
           (const char *const[]){"F:1: 'listen' outside any section (a key goes under [frontend "
                                 "NAME], [backend NAME] or [stats])",
                                 NULL});
    char longer[1024];
    snprintf(longer, sizeof(longer),
             "[frontend a]\nlisten = 127.0.0.1:1\nbackend = %0300d\n[backend b]\n"
             "server = s 127.0.0.1:2\nfoo = 1\n",
             7);
    expect(longer, 3,
           (const char *const[]){"F:3: line too long", "F:1: no backend in [frontend a]",
                                 "F:6: unknown key 'foo' in [backend b]", NULL});
}

/* Indented files (as HAProxy's are written) and a byte order mark load as plain ones; a section
 * name longer than libinih keeps and a directory are told as such. */
static void layout(void **state)
{
    (void)state;
    px_config *c;
    char errs[2048] = "";
    int rc = load("\xEF\xBB\xBF; saved by an editor that marks UTF-8\n"
                  "[frontend web]\n"
                  "    listen = 127.0.0.1:8000\n"
                  "\tbackend = app\n"
                  "  [backend app]\n"
                  "    server = a 127.0.0.1:9001 weight=2\n",
                  &c, errs, sizeof(errs));
    assert_string_equal(errs, "");
    assert_int_equal(rc, 0);
    assert_int_equal(c->nfrontends, 1);
    assert_int_equal(c->nbackends, 1);
    assert_int_equal(c->backends[0].nservers, 1);
    assert_int_equal(c->backends[0].servers[0].weight, 2);
    px_config_free(c);
    char longer[512];
    snprintf(longer, sizeof(longer),
             "[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\n[backend %042d]\n"
             "server = s 127.0.0.1:2\n",
             7);
    memset(errs, 0, sizeof(errs));
    assert_true(load(longer, &c, errs, sizeof(errs)) > 0);
    assert_non_null(strstr(errs, "F:4: section name too long (at most 49 characters in [ ])"));
    memset(errs, 0, sizeof(errs)); /* names go into Prometheus labels as they are */
    assert_true(load("[frontend we\"b]\nlisten = 127.0.0.1:1\nbackend = b\n[backend b]\n"
                     "server = a\\b 127.0.0.1:2\n",
                     &c, errs, sizeof(errs)) > 0);
    assert_non_null(
        strstr(errs, "F:1: bad name in [frontend we\"b] (letters, digits and - _ . : only)"));
    assert_non_null(strstr(errs, "F:5: bad server name 'a\\b' in [backend b]"));
    memset(errs, 0, sizeof(errs)); /* a key given twice (server and route may repeat) */
    assert_true(load("[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\nlisten = 127.0.0.1:2\n"
                     "[backend b]\nserver = s 127.0.0.1:2\nserver = t 127.0.0.1:3\n"
                     "check = none\ncheck = tcp\n",
                     &c, errs, sizeof(errs)) == 2);
    assert_non_null(strstr(errs, "F:4: duplicate key 'listen' in [frontend a] (first on line 2)"));
    assert_non_null(strstr(errs, "F:9: duplicate key 'check' in [backend b] (first on line 8)"));
    memset(errs, 0, sizeof(errs));
    assert_true(load("[frontend a]\nlisten = 127.0.0.1:1\nbackend = b\n[backend b]\n"
                     "server = s 127.0.0.1:0\n",
                     &c, errs, sizeof(errs)) > 0);
    assert_non_null(strstr(errs, "F:5: server 's' in [backend b] has port 0"));
    FILE *e = fmemopen(errs, sizeof(errs), "w");
    assert_true(px_config_load("/tmp", &c, e) > 0);
    fclose(e);
    assert_non_null(strstr(errs, "/tmp:0: cannot read: Is a directory"));
}

static void missing_file(void **state)
{
    (void)state;
    px_config *c;
    char errs[512] = "";
    FILE *e = fmemopen(errs, sizeof(errs), "w");
    assert_true(px_config_load("/nonexistent/proxy.ini", &c, e) < 0);
    fclose(e);
    assert_non_null(strstr(errs, "/nonexistent/proxy.ini: cannot open"));
}

static void durations(void **state)
{
    (void)state;
    int64_t ns;
    assert_int_equal(px_duration_parse("5s", &ns), 0);
    assert_true(ns == 5000000000LL);
    assert_int_equal(px_duration_parse("200ms", &ns), 0);
    assert_true(ns == 200000000LL);
    assert_int_equal(px_duration_parse("2m", &ns), 0);
    assert_true(ns == 120000000000LL);
    assert_int_equal(px_duration_parse("750", &ns), 0);
    assert_true(ns == 750000000LL);
    assert_int_equal(px_duration_parse("10us", &ns), 0);
    assert_true(ns == 10000);
    assert_true(px_duration_parse("-1s", &ns) < 0);
    assert_true(px_duration_parse("5h", &ns) < 0);
    assert_true(px_duration_parse("s", &ns) < 0);
    assert_true(px_duration_parse("99999999999999999999s", &ns) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good),         cmocka_unit_test(http_mode), cmocka_unit_test(bad),
        cmocka_unit_test(missing_file), cmocka_unit_test(durations), cmocka_unit_test(layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
