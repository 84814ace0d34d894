/* Name resolution (include/tpc/net.h): getaddrinfo on the runtime's blocking helper threads, so
 * a slow DNS server never stalls a shard. */
#include <netdb.h>
#include <string.h>
#include "internal.h"

struct job {
    const char *host, *port;
    int family;
    struct addrinfo *res;
    int err; /* errno, for EAI_SYSTEM */
};

static long run(void *arg)
{
    struct job *j = arg;
    struct addrinfo hints = {.ai_family = j->family, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(j->host, j->port, &hints, &j->res);
    j->err = errno;
    return rc;
}

static int eai_errno(int eai, int err)
{
    switch (eai) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return err ? -err : -EIO;
    case EAI_SERVICE:
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS:
        return -EINVAL;
    default:
        return -EIO;
    }
}

int tpc_resolve(const char *host, const char *port, int family, tpc_addr *out, unsigned max)
{
    TPC__CHECK_SUSPEND();
    if (!host || !*host || !port || !*port || !out || max == 0 ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
        return -EINVAL;
    struct job j = {.host = host, .port = port, .family = family};
    long eai = 0;
    int rc = tpc_blocking(run, &j, &eai);
    if (rc < 0)
        return rc;
    if (eai)
        return eai_errno((int)eai, j.err);
    unsigned n = 0;
    for (struct addrinfo *ai = j.res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(out[n].storage))
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n].storage, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(j.res);
    return n ? (int)n : -ENOENT;
}
