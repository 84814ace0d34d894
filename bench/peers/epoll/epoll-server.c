/* The raw epoll baseline of bench/net.sh: what a careful C server does with no library, to put
 * tpc-http and tpc-echo (examples/) in perspective.
 *   epoll-server http|echo ADDR [THREADS]   ADDR: 127.0.0.1:8080, [::1]:8080 (port 0: any)
 * http answers exactly as examples/http.c does, with its parser and answers
 * (examples/http-parse.c): keep-alive, the answers to the requests of one read in one send
 * (split only where tpc-http splits them, at 16 KiB), HEAD, bodies, "Connection: close" and
 * HTTP/1.0, error answers then close. echo sends back whatever it reads.
 *
 * THREADS (default 1; bench/net.sh runs one, on one core) event loops, each pinned to the next
 * CPU of the process's affinity mask with its own SO_REUSEPORT listener and epoll set: the raw
 * per-core baseline, sharing nothing (the build defines _GNU_SOURCE for the affinity calls). Per
 * thread: nonblocking sockets, level-triggered epoll; a readable connection gets exactly one
 * read() per wakeup (tpc-http does one recv per loop too), so no read is spent on EAGAIN; if more
 * is waiting, epoll reports it again. Replies go out with one send(); only when the socket buffer
 * is full does the connection switch to EPOLLOUT, and it reads nothing more until its output is
 * gone (tpc-http's fiber blocks in send the same way). Accepted sockets get TCP_NODELAY, as in
 * tpc-http and tpc-echo. SIGINT/SIGTERM stop it; it then prints the number of requests served. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "../../netaddr.h"
#include "http-parse.h"

#define BUF_SIZE   16384 /* per direction and connection, as in examples/http.c */
#define MAX_EVENTS 256

enum mode { HTTP, ECHO };

struct conn {
    int fd;
    bool closing;    /* close once the output is gone */
    bool writing;    /* waiting for EPOLLOUT (registered for it instead of EPOLLIN) */
    size_t have;     /* input bytes in in[] */
    size_t used;     /* http: input bytes already parsed */
    size_t out_len;  /* output bytes in out[] */
    size_t out_sent; /* of which already sent */
    http_conn h;     /* http: the request parser */
    char in[BUF_SIZE];
    char out[BUF_SIZE];
};

static enum mode mode;
static __thread int ep;        /* this thread's epoll set */
static __thread long served;   /* requests this thread answered */
static atomic_long served_all; /* summed as threads end */
static int stop_fd;            /* an eventfd in every epoll set: readable once it is time to stop */

static void conn_close(struct conn *c)
{
    close(c->fd); /* also takes it out of the epoll set */
    free(c);
}

static int want(struct conn *c, bool writing)
{
    if (c->writing == writing)
        return 0;
    c->writing = writing;
    struct epoll_event ev = {.events = writing ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends what is left of the output: out[], or in[] for echo, which sends back what it read.
 * Returns 1 when all is sent, 0 when the socket is full (the connection now waits for
 * EPOLLOUT), -1 on error. */
static int flush(struct conn *c)
{
    const char *buf = mode == ECHO ? c->in : c->out;
    while (c->out_sent < c->out_len) {
        ssize_t w = send(c->fd, buf + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return want(c, true) < 0 ? -1 : 0;
            return -1;
        }
        c->out_sent += (size_t)w;
    }
    c->out_len = c->out_sent = 0;
    return 1;
}

/* Parses in[used..have) and sends the answers: all of them in one send unless they exceed
 * out[] (tpc-http sends at the same point). Returns -1 if the connection must go. */
static int http_answer_all(struct conn *c)
{
    for (;;) {
        if (!c->closing && c->used < c->have) {
            c->used += http_conn_feed(&c->h, c->in + c->used, c->have - c->used, c->out,
                                      &c->out_len, BUF_SIZE);
            served += c->h.answered;
            c->closing = http_conn_closing(&c->h);
        }
        if (c->out_len) {
            int rc = flush(c);
            if (rc <= 0)
                return rc; /* error, or EPOLLOUT continues where this stopped */
        }
        if (c->closing)
            return -1;
        if (c->used == c->have)
            break;
    }
    c->have = c->used = 0; /* the parser keeps what it needs of a request in pieces */
    return 0;
}

/* One read, then the answer. Returns -1 if the connection must go. */
static int on_readable(struct conn *c)
{
    ssize_t n = read(c->fd, c->in + c->have, BUF_SIZE - c->have);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0)
        return -1;
    if (mode == ECHO) {
        c->out_len = (size_t)n; /* echo sends from in[]: out_len/out_sent count in it */
        c->out_sent = 0;
        return flush(c) < 0 ? -1 : 0;
    }
    c->have += (size_t)n;
    return http_answer_all(c);
}

static int on_writable(struct conn *c)
{
    int rc = flush(c);
    if (rc <= 0)
        return rc;
    if (mode == ECHO)
        return want(c, false);
    if (c->closing)
        return -1;
    if (want(c, false) < 0)
        return -1;
    return http_answer_all(c); /* requests that were waiting behind the full socket */
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("epoll-server: accept4");
            return; /* EMFILE and the like: epoll reports the listener again */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = malloc(sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        memset(c, 0, offsetof(struct conn, h));
        c->fd = fd;
        http_conn_init(&c->h);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(c);
    }
}

/* "host:port" or "[v6host]:port" to a listening, nonblocking socket; -1 with a message. */
static int listen_on(const char *addr)
{
    struct addrinfo *ai = bench_addr("epoll-server", addr, true);
    if (!ai)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "epoll-server: cannot listen on %s: %s\n", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* One thread's server: its own listener (SO_REUSEPORT: the kernel spreads connections over the
 * threads' listeners), its own epoll set, pinned to its CPU. */
struct worker {
    pthread_t thread;
    int lfd, cpu;
};

static void *serve(void *arg)
{
    struct worker *w = arg;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    static int listener_tag, stop_tag; /* data.ptr of the two that are not a struct conn */
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener_tag};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &stop_tag};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, w->lfd, &lev) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &sev) < 0) {
        perror("epoll-server: epoll");
        exit(1);
    }
    struct epoll_event evs[MAX_EVENTS];
    for (bool stop = false; !stop;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll-server: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &stop_tag) {
                stop = true; /* the rest of this batch is still served */
                continue;
            }
            if (evs[i].data.ptr == &listener_tag) {
                accept_all(w->lfd);
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            int rc;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN))
                rc = -1;
            else
                rc = c->writing ? on_writable(c) : on_readable(c);
            if (rc < 0)
                conn_close(c);
        }
    }
    atomic_fetch_add(&served_all, served);
    close(ep);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc == 4 ? atoi(argv[3]) : 1;
    if ((argc != 3 && argc != 4) || (strcmp(argv[1], "http") && strcmp(argv[1], "echo")) ||
        threads < 1 || threads > CPU_SETSIZE) {
        fprintf(stderr,
                "usage: %s http|echo ADDR [THREADS]     (ADDR: 127.0.0.1:8080, [::1]:8080; "
                "THREADS: 1 by default)\n",
                argv[0]);
        return 2;
    }
    mode = argv[1][0] == 'h' ? HTTP : ECHO;
    /* Signals go to the main thread only, which waits for them in sigwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    stop_fd = eventfd(0, EFD_CLOEXEC);
    if (stop_fd < 0) {
        perror("epoll-server: eventfd");
        return 1;
    }

    /* The threads' listeners, all on the first one's address (its port, if ADDR asked for 0). */
    struct worker *ws = calloc((size_t)threads, sizeof(*ws));
    if (!ws || (ws[0].lfd = listen_on(argv[2])) < 0)
        return 1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[128] = "?", port[16] = "?", bound[160];
    if (getsockname(ws[0].lfd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(bound, sizeof(bound), "%s%s%s:%s", strchr(host, ':') ? "[" : "", host,
             strchr(host, ':') ? "]" : "", port);
    for (int i = 1; i < threads; i++)
        if ((ws[i].lfd = listen_on(bound)) < 0)
            return 1;
    /* Thread i on the i-th CPU of the process's affinity mask (unpinned past its end). */
    cpu_set_t mask;
    CPU_ZERO(&mask);
    sched_getaffinity(0, sizeof(mask), &mask);
    for (int i = 0, cpu = 0; i < threads; i++) {
        while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &mask))
            cpu++;
        ws[i].cpu = cpu < CPU_SETSIZE ? cpu++ : -1;
    }
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ws[i].thread, NULL, serve, &ws[i]) != 0) {
            fprintf(stderr, "epoll-server: cannot start thread %d\n", i);
            return 1;
        }
    printf("epoll-server: %s listening on %s (level-triggered epoll, %d thread%s)\n", argv[1],
           bound, threads, threads == 1 ? "" : "s");
    fflush(stdout);

    int sig;
    while (sigwait(&sigs, &sig) != 0)
        ;
    uint64_t one = 1;
    if (write(stop_fd, &one, sizeof(one)) != sizeof(one))
        perror("epoll-server: eventfd write");
    for (int i = 0; i < threads; i++) {
        pthread_join(ws[i].thread, NULL);
        close(ws[i].lfd);
    }
    if (mode == HTTP)
        printf("epoll-server: served %ld requests\n", atomic_load(&served_all));
    free(ws);
    close(stop_fd);
    return 0;
}
