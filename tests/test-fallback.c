/* tpc-http (the program, its path in argv[1]) under a real seccomp filter that refuses
 * io_uring_setup, as Docker's default profile does: by default it runs on the epoll backend,
 * says so in one line (not one per shard) naming the cause, and serves HTTP; with
 * TPC_BACKEND=uring it refuses to start, naming the cause. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "seccomp-deny.h"
#include <cmocka.h>

static const char *server_path;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int64_t limit_ms(void)
{
    return getenv("TPC_TEST_SLOW") ? 80000 : 20000;
}

/* In the child: refuse io_uring_setup with EPERM from now on (and in what it executes). */
static void deny_io_uring(void)
{
    if (t_deny_io_uring() != 0)
        _exit(126);
}

/* Starts tpc-http under the filter with TPC_BACKEND=backend (NULL: unset), its stdout and
 * stderr into a pipe (*out). */
static pid_t start(const char *backend, int *out)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        if (backend)
            setenv("TPC_BACKEND", backend, 1);
        else
            unsetenv("TPC_BACKEND");
        deny_io_uring();
        char *argv[] = {(char *)server_path, "--shards", "2", "--listen", "127.0.0.1:0", NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* Reads what fd gives until `needle` is in it, the end, or the deadline; the text so far. */
static const char *read_until(int fd, const char *needle)
{
    static char text[16384];
    size_t have = 0;
    int64_t end = now_ms() + limit_ms();
    text[0] = 0;
    while (!strstr(text, needle) && have < sizeof(text) - 1) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int left = (int)(end - now_ms());
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t n = read(fd, text + have, sizeof(text) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        text[have] = 0;
    }
    return text;
}

static int count(const char *text, const char *part)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, part)) != NULL; p++)
        n++;
    return n;
}

/* Two keep-alive requests on one connection to addr ("127.0.0.1:PORT"); both answered. */
static void two_requests(const char *addr)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int port = 0;
    assert_int_equal(sscanf(addr, "127.0.0.1:%d", &port), 1);
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    char got[4096];
    size_t have = 0;
    int64_t end = now_ms() + limit_ms();
    got[0] = 0;
    while (count(got, "Hello, World!") < 2 && have < sizeof(got) - 1 && now_ms() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(end - now_ms())) <= 0)
            break;
        ssize_t n = read(fd, got + have, sizeof(got) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        got[have] = 0;
    }
    close(fd);
    if (count(got, "HTTP/1.1 200") != 2 || count(got, "Hello, World!") != 2)
        fail_msg("expected two answers, got:\n%s", got);
}

static void stop(pid_t pid, int *status)
{
    kill(pid, SIGTERM);
    int64_t end = now_ms() + limit_ms();
    while (waitpid(pid, status, WNOHANG) == 0) {
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            fail_msg("tpc-http did not stop on SIGTERM");
        }
        poll(NULL, 0, 10);
    }
}

/* Under valgrind the forked child is still valgrind's until it executes tpc-http, and valgrind
 * runs the client's system calls itself (a seccomp filter there is not the program's). */
static bool skip_under_valgrind(void)
{
    if (!getenv("TPC_TEST_VALGRIND"))
        return false;
    printf("# skipped: a seccomp filter under valgrind\n");
    return true;
}

static void test_auto_falls_back_and_serves(void **state)
{
    (void)state;
    if (skip_under_valgrind())
        skip();
    int fd, status;
    pid_t pid = start(NULL, &fd);
    const char *text = read_until(fd, "listening on ");
    const char *at = strstr(text, "listening on ");
    char addr[48] = "";
    if (!at || sscanf(at + strlen("listening on "), "%47s", addr) != 1) {
        stop(pid, &status);
        fail_msg("tpc-http did not start:\n%s", text);
    }
    /* One line for the process (two shards), naming the cause and the fallback. */
    assert_int_equal(count(text, "io_uring unavailable"), 1);
    assert_non_null(strstr(text, "io_uring is not permitted"));
    assert_non_null(strstr(text, "seccomp"));
    assert_non_null(strstr(text, "running on the epoll backend"));
    two_requests(addr);
    two_requests(addr);
    stop(pid, &status);
    close(fd);
    assert_true(WIFEXITED(status));
}

static void test_uring_forced_refuses(void **state)
{
    (void)state;
    if (skip_under_valgrind())
        skip();
    int fd, status;
    pid_t pid = start("uring", &fd);
    const char *text = read_until(fd, "\n\n"); /* to the end */
    int64_t end = now_ms() + limit_ms();
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("tpc-http ran without io_uring although TPC_BACKEND=uring");
        }
        poll(NULL, 0, 10);
    }
    close(fd);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    assert_non_null(strstr(text, "io_uring is not permitted"));
    assert_null(strstr(text, "epoll"));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-tpc-http\n", argv[0]);
        return 2;
    }
    server_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_falls_back_and_serves),
        cmocka_unit_test(test_uring_forced_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
