/* tpc-http (the program, its path in argv[1]) against the HTTP clients a user would point at
 * it, as Debian ships them: curl (GET, HEAD, a chunked POST, Expect: 100-continue), ApacheBench
 * with keep-alive (ab -k: HTTP/1.0 keep-alive), h2load --h1 and wrk. Each run is bounded: a
 * client that has not finished within its deadline is killed and the case fails. A client that
 * is not installed skips its case (scripts/setup.sh installs them all). At the end tpc-http
 * gets SIGTERM and must exit 0 (a sanitizer build exits non-zero on an error or a leak). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

static const char *server_path;
static pid_t server;
static int server_out;         /* its stdout and stderr */
static char url[64], addr[48]; /* http://127.0.0.1:PORT/ and 127.0.0.1:PORT */

static int64_t deadline_ms(void)
{
    return getenv("TPC_TEST_SLOW") ? 80000 : 20000;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Whether a program of this name is in PATH. */
static bool installed(const char *name)
{
    const char *path = getenv("PATH");
    char dir[4096];
    while (path && *path) {
        size_t n = strcspn(path, ":");
        snprintf(dir, sizeof(dir), "%.*s/%s", (int)n, path, name);
        if (access(dir, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    return false;
}

/* Starts argv with stdin from /dev/null and its stdout and stderr
 * into a pipe; returns the pid and the pipe's read end in *out. */
static pid_t start(char *const argv[], int *out)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* Runs argv to its end, within the deadline, and returns what it printed (malloc'd); fails
 * the case if it does not end in time or exits non-zero. */
static char *run(char *const argv[])
{
    int fd;
    pid_t pid = start(argv, &fd);
    size_t have = 0, size = 1 << 16;
    char *text = malloc(size + 1);
    assert_non_null(text);
    int64_t end = now_ms() + deadline_ms();
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int left = (int)(end - now_ms());
        if (left <= 0 || poll(&pf, 1, left) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("%s did not finish within %lld ms", argv[0], (long long)deadline_ms());
        }
        ssize_t n = read(fd, text + have, size - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        if (have == size) {
            size *= 2;
            text = realloc(text, size + 1);
            assert_non_null(text);
        }
    }
    close(fd);
    text[have] = 0;
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s failed (status %d): %s", argv[0], status, text);
    return text;
}

static void expect_in(const char *text, const char *part)
{
    if (!text || !strstr(text, part))
        fail_msg("expected \"%s\" in:\n%s", part, text ? text : "(nothing)");
}

/* Reads fd's lines until one holds `needle` (up to the deadline `end`); returns what follows the
 * needle in that line (in a static buffer), or NULL. */
static const char *line_with(int fd, const char *needle, int64_t end)
{
    static char line[512];
    for (;;) {
        size_t have = 0;
        while ((have == 0 || line[have - 1] != '\n') && have < sizeof(line) - 1) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            int left = (int)(end - now_ms());
            ssize_t n;
            if (left <= 0 || poll(&pf, 1, left) == 0 || (n = read(fd, line + have, 1)) <= 0)
                break;
            have += (size_t)n;
        }
        line[have] = 0;
        if (have == 0 || line[have - 1] != '\n')
            return NULL; /* the deadline, the end, or a line too long */
        const char *at = strstr(line, needle);
        if (at)
            return at + strlen(needle);
    }
}

static char murl[96]; /* http://127.0.0.1:PORT/metrics: its --metrics endpoint */

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    char *argv[] = {(char *)server_path, "--shards",  "2",           "--listen",
                    "127.0.0.1:0",       "--metrics", "127.0.0.1:0", NULL};
    int fd;
    server = start(argv, &fd);
    server_out = fd;
    /* "tpc-http: 2 shards listening on 127.0.0.1:PORT", after any other line (a stall report
     * of a slow start on a busy machine, say), then "metrics on http://127.0.0.1:PORT/metrics" */
    int64_t end = now_ms() + deadline_ms();
    const char *at = line_with(fd, "listening on ", end);
    if (!at || sscanf(at, "%47s", addr) != 1) {
        fprintf(stderr, "tpc-http did not start\n");
        return -1;
    }
    snprintf(url, sizeof(url), "http://%s/", addr);
    at = line_with(fd, "metrics on ", end);
    if (!at || sscanf(at, "%95s", murl) != 1) {
        fprintf(stderr, "tpc-http did not serve its metrics\n");
        return -1;
    }
    /* The rest of its output (the counts at the end) fits in the pipe, unread. */
    return 0;
}

/* Waits up to ms for child pid to exit and reaps it. Through a pidfd (readable once the child
 * has exited); where there is none (valgrind 3.19 does not know pidfd_open), by polling
 * waitpid every 10 ms against the same deadline. */
static bool exited_within(pid_t pid, int64_t ms, int *status)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0) {
        struct pollfd pf = {.fd = pidfd, .events = POLLIN};
        bool done = poll(&pf, 1, (int)ms) == 1;
        close(pidfd);
        return done && waitpid(pid, status, 0) == pid;
    }
    for (int64_t end = now_ms() + ms; now_ms() < end; poll(NULL, 0, 10))
        if (waitpid(pid, status, WNOHANG) == pid)
            return true;
    return false;
}

static int group_teardown(void **state)
{
    (void)state;
    if (server <= 0)
        return 0;
    kill(server, SIGTERM);
    int status = 0;
    if (!exited_within(server, deadline_ms(), &status)) {
        kill(server, SIGKILL);
        waitpid(server, &status, 0);
        fprintf(stderr, "tpc-http did not stop on SIGTERM\n");
        return -1;
    }
    close(server_out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "tpc-http exited with status %d\n", status);
        return -1;
    }
    return 0;
}

static void test_curl(void **state)
{
    (void)state;
    if (!installed("curl"))
        skip();
    char *get[] = {"curl", "-sS", "--max-time", "10", "-w", " %{http_code}", url, NULL};
    char *t = run(get);
    assert_string_equal(t, "Hello, World! 200");
    free(t);
    char *head[] = {"curl", "-sS", "--max-time", "10", "-I", url, NULL};
    t = run(head);
    expect_in(t, "HTTP/1.1 200 OK");
    expect_in(t, "Content-Length: 13");
    free(t);
    /* A chunked request body (as curl sends one read from a pipe) and Expect: 100-continue. */
    char *chunked[] = {
        "curl",  "-sS", "--max-time",    "10", "-H", "Transfer-Encoding: chunked", "--data-binary",
        "hello", "-w",  " %{http_code}", url,  NULL};
    t = run(chunked);
    assert_string_equal(t, "Hello, World! 200");
    free(t);
    char *expect[] = {"curl",
                      "-sS",
                      "--max-time",
                      "10",
                      "-H",
                      "Expect: 100-continue",
                      "--data-binary",
                      "0123456789abcdef",
                      "-w",
                      " %{http_code}",
                      url,
                      NULL};
    t = run(expect);
    assert_string_equal(t, "Hello, World! 200");
    free(t);
    /* HTTP/1.0, with and without keep-alive: curl gets its answers and ends. */
    char *old[] = {"curl", "-sS", "--max-time", "10", "-0", url, url, NULL};
    t = run(old);
    assert_string_equal(t, "Hello, World!Hello, World!");
    free(t);
}

/* ApacheBench with keep-alive: HTTP/1.0 requests with "Connection: Keep-Alive" (it hung when
 * the answers did not say keep-alive). */
static void test_ab_keep_alive(void **state)
{
    (void)state;
    if (!installed("ab"))
        skip();
    char *argv[] = {"ab", "-k", "-q", "-s", "10", "-n", "2000", "-c", "8", url, NULL};
    char *t = run(argv);
    expect_in(t, "Complete requests:      2000");
    expect_in(t, "Failed requests:        0");
    expect_in(t, "Keep-Alive requests:    2000");
    free(t);
    char *plain[] = {"ab", "-q", "-s", "10", "-n", "200", "-c", "4", url, NULL};
    t = run(plain);
    expect_in(t, "Complete requests:      200");
    expect_in(t, "Failed requests:        0");
    free(t);
}

static void test_h2load_h1(void **state)
{
    (void)state;
    if (!installed("h2load"))
        skip();
    char *argv[] = {"h2load", "--h1", "-n", "2000", "-c", "8", "-m", "4", url, NULL};
    char *t = run(argv);
    expect_in(t, "2000 succeeded, 0 failed, 0 errored");
    expect_in(t, "status codes: 2000 2xx");
    free(t);
}

static void test_wrk(void **state)
{
    (void)state;
    if (!installed("wrk"))
        skip();
    char *argv[] = {"wrk", "-t1", "-c8", "-d1s", url, NULL};
    char *t = run(argv);
    expect_in(t, "requests in");
    if (strstr(t, "Non-2xx") || strstr(t, "Socket errors"))
        fail_msg("wrk saw errors:\n%s", t);
    free(t);
}

/* Its /metrics endpoint (examples/metrics-http.c) after the load above: Prometheus text with
 * the shards' counters, the table, and 404 elsewhere. */
static void test_metrics_endpoint(void **state)
{
    (void)state;
    if (!installed("curl"))
        skip();
    char *get[] = {"curl", "-sS", "--max-time", "10", murl, NULL};
    char *t = run(get);
    expect_in(t, "# TYPE tpc_tasks_total counter\n");
    expect_in(t, "tpc_shards 2\n");
    expect_in(t, "tpc_io_seconds_count{shard=\"1\",class=\"send\"} ");
    free(t);
    char table[128];
    snprintf(table, sizeof(table), "%s?table", murl);
    char *get_table[] = {"curl", "-sS", "--max-time", "10", table, NULL};
    t = run(get_table);
    expect_in(t, "2 shards\n");
    free(t);
    char other[128];
    snprintf(other, sizeof(other), "%.*s/other", (int)(strlen(murl) - 8), murl);
    char *get_other[] = {"curl", "-sS", "--max-time", "10", "-w", " %{http_code}", other, NULL};
    t = run(get_other);
    expect_in(t, " 404");
    free(t);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-OF-TPC-HTTP\n", argv[0]);
        return 2;
    }
    server_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curl),
        cmocka_unit_test(test_ab_keep_alive),
        cmocka_unit_test(test_h2load_h1),
        cmocka_unit_test(test_wrk),
        cmocka_unit_test(test_metrics_endpoint),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
