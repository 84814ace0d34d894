/* One copy of libtpc in a shared object of its own (tests/test-copies.c): built twice, each
 * linking the static library with its symbols hidden (-Wl,--exclude-libs,ALL), so that the
 * copies share no symbol, as a plugin's static copy and its host's would. Exports only
 * COPY_start, COPY_stop and COPY_run (COPY is copy_a or copy_b). */
#include <errno.h>
#include <stdlib.h>
#include "tpc.h"

#define EXPORT        __attribute__((visibility("default")))
#define CAT2(a, b)    a##_##b
#define CAT(a, b)     CAT2(a, b)
#define COPY_FN(name) CAT(COPY_NAME, name)

int COPY_FN(start)(const char *cpus, int share, void **rt) EXPORT;
int COPY_FN(stop)(void *rt) EXPORT;
int COPY_FN(run)(const char *cpus, int share) EXPORT;

/* Stays up until COPY_stop stops it. */
static int idle(void *arg)
{
    (void)arg;
    while (!tpc_cancelled())
        tpc_sleep(1000 * 1000 * 1000); /* no timing: only the stop ends it */
    return 0;
}

static int three(void *arg)
{
    (void)arg;
    return 3;
}

static int stop(void *arg)
{
    (void)arg;
    return tpc_shutdown(0);
}

/* A runtime of one shard on `cpus`, sharing them if `share`: 0 with it in *rt, or tpc_start's
 * error. */
int COPY_FN(start)(const char *cpus, int share, void **rt)
{
    tpc_config c = {.shards = 1, .cpus = cpus, .no_signals = true, .share_cpus = share != 0};
    return tpc_start(&c, idle, NULL, (tpc_runtime **)rt);
}

/* Stops a runtime COPY_start started; its exit status (0). */
int COPY_FN(stop)(void *rt)
{
    int rc = tpc_call_from_thread(rt, 0, stop, NULL, NULL);
    int status = tpc_wait(rt);
    return rc < 0 ? rc : status;
}

/* tpc_run of a main that returns 3 at once, on `cpus`: 3, or tpc_run's error. */
int COPY_FN(run)(const char *cpus, int share)
{
    tpc_config c = {.shards = 1, .cpus = cpus, .no_signals = true, .share_cpus = share != 0};
    return tpc_run(&c, three, NULL);
}
