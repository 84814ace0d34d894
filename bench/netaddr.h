/* "host:port" or "[v6host]:port" (numeric) to an addrinfo, for the benchmark's plain C network
 * programs (echo-load, peers/epoll/epoll-server), which do not use libtpc. */
#ifndef TPC_BENCH_NETADDR_H
#define TPC_BENCH_NETADDR_H

#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Returns the address (freeaddrinfo it), or NULL after a message naming prog. passive: for
 * bind (AI_PASSIVE). */
static inline struct addrinfo *bench_addr(const char *prog, const char *addr, bool passive)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
        fprintf(stderr, "%s: cannot parse address '%s'\n", prog, addr);
        return NULL;
    }
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    memcpy(host, h, hlen);
    host[hlen] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags =
                                 AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        fprintf(stderr, "%s: cannot parse address '%s': %s\n", prog, addr, gai_strerror(rc));
        return NULL;
    }
    return ai;
}

#endif
