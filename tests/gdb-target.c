/* The program tests/test-gdb.py debugs: two shards, named fibers parked in known places, then
 * gdb_here(), where gdb has a breakpoint, called from the running main fiber:
 *   shard 0: main (running, in gdb_here), sleeper (waiting in tpc_sleep, from
 *            park_here_sleeping), locker (waiting in tpc_mutex_lock, from park_here_locking),
 *            finished (done, not joined yet), fresh (ready, never run);
 *   shard 1: receiver (waiting in tpc_chan_recv, from park_here_receiving).
 * Run alone, it goes on from gdb_here, ends every fiber and exits 0, so that it also checks
 * itself. The park_here_ functions are not inlined and do something after the call, so that
 * their frames stay in the fibers' backtraces. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <tpc.h>

void gdb_here(void);
int park_here_sleeping(void);
int park_here_locking(tpc_mutex *m);
int park_here_receiving(tpc_chan *c);

static _Atomic int parked; /* fibers about to park */
static _Atomic int sink;   /* what the park_here_ functions store after their call */
static tpc_mutex lock;     /* held by main while locker waits for it */
tpc_fiber *gdb_sleeper;    /* for `tpc bt gdb_sleeper`: a fiber given by an expression */

__attribute__((noinline)) void gdb_here(void)
{
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) int park_here_sleeping(void)
{
    int rc = tpc_sleep((int64_t)3600 * 1000000000);
    atomic_store_explicit(&sink, rc, memory_order_relaxed);
    return rc;
}

__attribute__((noinline)) int park_here_locking(tpc_mutex *m)
{
    int rc = tpc_mutex_lock(m);
    atomic_store_explicit(&sink, rc, memory_order_relaxed);
    return rc;
}

__attribute__((noinline)) int park_here_receiving(tpc_chan *c)
{
    void *v;
    int rc = tpc_chan_recv(c, &v);
    atomic_store_explicit(&sink, rc, memory_order_relaxed);
    return rc;
}

static void busy_ms(int ms)
{
    uint64_t end = tpc_now_fresh() + (uint64_t)ms * 1000000;
    while (tpc_now_fresh() < end)
        ;
}

static int sleeper(void *arg)
{
    (void)arg;
    parked++;
    return park_here_sleeping() == -ECANCELED ? 0 : 1;
}

static int locker(void *arg)
{
    (void)arg;
    parked++;
    int rc = park_here_locking(&lock);
    if (rc == 0)
        tpc_mutex_unlock(&lock);
    return rc;
}

static int receiver(void *arg)
{
    (void)arg;
    tpc_chan c;
    if (tpc_chan_init(&c, 1) < 0)
        return 1;
    parked++;
    int rc = park_here_receiving(&c);
    tpc_chan_destroy(&c);
    return rc == -ECANCELED ? 0 : 1;
}

static int callee(void *arg)
{
    (void)arg;
    parked++;
    return park_here_sleeping() == -ECANCELED ? 0 : 1;
}

/* Joins a child that has not run: the child runs as its call (core/task.c, join_by_call). */
static int caller(void *arg)
{
    (void)arg;
    tpc_fiber_opts o = {.name = "callee"};
    tpc_fiber *f;
    int r = 1;
    if (tpc_spawn_opts(&o, callee, NULL, &f) < 0)
        return 1;
    return tpc_join(f, &r) == -ECANCELED && r == 0 ? 0 : 1;
}

static int finished(void *arg)
{
    (void)arg;
    return 7;
}

static int main_fiber(void *arg)
{
    (void)arg;
    tpc_fiber *f[5], *call;
    tpc_fiber_opts o[5] = {{.name = "sleeper"},
                           {.name = "locker"},
                           {.name = "receiver"},
                           {.name = "finished"},
                           {.name = "fresh"}},
                   oc = {.name = "caller"};
    if (tpc_mutex_init(&lock) < 0 || tpc_mutex_lock(&lock) < 0)
        return 1;
    if (tpc_spawn_opts(&o[0], sleeper, NULL, &f[0]) < 0 ||
        tpc_spawn_opts(&o[1], locker, NULL, &f[1]) < 0 ||
        tpc_spawn_on(1, &o[2], receiver, NULL, &f[2]) < 0 ||
        tpc_spawn_opts(&o[3], finished, NULL, &f[3]) < 0 ||
        tpc_spawn_opts(&oc, caller, NULL, &call))
        return 1;
    gdb_sleeper = f[0];
    while (parked < 4) /* the receiver on shard 1 too */
        tpc_sleep(1000000);
    tpc_sleep(20000000); /* long enough for every one of them to have parked */
    if (tpc_spawn_opts(&o[4], finished, NULL, &f[4]) < 0)
        return 1;
    /* Away from the loop around gdb's pause, 210 ms in all, less than stall_ms: the watchdog
     * looks at this shard before the pause and after it, sees the same loop count, and would
     * report a stall if it took gdb's pause for one (test-gdb.py checks that it does not). */
    busy_ms(160);
    gdb_here();
    busy_ms(50);
    int bad = 0, r;
    tpc_cancel(f[0]);
    tpc_cancel(f[2]);
    tpc_cancel(call); /* and so its callee */
    if (tpc_join(call, &r) < 0 || r != 0)
        bad++;
    tpc_mutex_unlock(&lock);
    for (int i = 0; i < 5; i++)
        if (tpc_join(f[i], &r) < 0 || r != (i >= 3 ? 7 : 0))
            bad++;
    printf("gdb-target: %s\n", bad ? "FAILED" : "ok");
    return bad != 0;
}

int main(void)
{
    tpc_config c = {.shards = 2, .stall_ms = 300}; /* the watchdog looks every 150 ms */
    return tpc_run(&c, main_fiber, NULL);
}
