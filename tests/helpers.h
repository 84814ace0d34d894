/* Test helpers. cmocka's assert_* longjmp back to the test function, which must not happen from
 * a shard thread; inside the runtime use CHECK*, which records the failure and stops the
 * runtime, and let the test function assert that no CHECK failed once tpc_run() has returned. */
#ifndef TPC_TEST_HELPERS_H
#define TPC_TEST_HELPERS_H

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include "tpc.h"

static atomic_int t_failures;

/* A failed check inside a shard also stops the runtime (every fiber's waits then fail at
 * once), so that the case ends with its first message instead of hanging until meson's
 * timeout; the test function's asserts report it. */
static inline void check_failed(void)
{
    atomic_fetch_add(&t_failures, 1);
    if (tpc_shard_id() >= 0)
        tpc_shutdown(99);
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                  \
            check_failed();                                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__,  \
                    #a, #b, a_, b_);                                                               \
            check_failed();                                                                        \
        }                                                                                          \
    } while (0)

/* Entries of a /proc directory (its "." and ".." included): leak and thread checks compare two
 * counts. */
static inline int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static inline int count_fds(void)
{
    return count_entries("/proc/self/fd");
}

/* Starts a server with default options on a free loopback port and stores the address it
 * listens on in *at. NULL (with a failed CHECK) if it could not. */
static inline tpc_server *loopback_server(tpc_conn_fn fn, void *arg, tpc_addr *at)
{
    tpc_addr a;
    tpc_server *srv = NULL;
    CHECK_EQ(tpc_addr_parse("127.0.0.1:0", &a), 0);
    CHECK_EQ(tpc_server_start(&a, NULL, fn, arg, &srv), 0);
    if (srv)
        CHECK_EQ(tpc_server_addr(srv, at), 0);
    return srv;
}

/* Runs fn as the main fiber of a runtime configured by c and asserts that it returned 0 and
 * that no CHECK failed. */
static inline void run_config(const tpc_config *c, tpc_fiber_fn fn, void *arg)
{
    atomic_store(&t_failures, 0);
    int rc = tpc_run(c, fn, arg);
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&t_failures), 0);
}

/* The same with n shards and defaults otherwise. */
static inline void run_main(unsigned shards, tpc_fiber_fn fn, void *arg)
{
    tpc_config c = {.shards = shards};
    run_config(&c, fn, arg);
}

#endif
