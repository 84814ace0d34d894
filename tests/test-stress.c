/* A seeded, randomized stress test of every cross-thread protocol at once: per-pair FIFO
 * messages (one slot) mixed with remote spawns (two slots) through tiny and large rings,
 * remote calls abandoned by deadlines and cancels, tpc_on_all while targets stop, cross-shard
 * channels closed and released from either shard, calls from foreign threads, blocking jobs
 * cancelled, and a shutdown at a random moment with all of it in flight; more shards than CPUs
 * in some rounds.
 *
 * After each round it checks that every message told 0 ran exactly once and in order per pair
 * (the afterlife included), that every stream that ended with -EPIPE delivered all it sent in
 * order, that no cancelled blocking job ran, and that every result came back right. A watchdog
 * aborts a round that hangs. ASan and LeakSanitizer catch what leaks or is used after free.
 *
 * The seed is printed; replay a round's configuration and decisions with TPC_STRESS_SEED (the
 * threads' interleaving is the machine's). Longer runs: TPC_STRESS_ROUNDS=200 TPC_STRESS_MS=500
 * build/release/tests/test-stress. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "helpers.h"

#define MAXS 5

/* xorshift64*: one state per fiber or thread, seeded from the round's seed. */
static uint64_t rnd_next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ull;
}

static uint64_t rnd_mix(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t x = seed ^ (a * 0x9e3779b97f4a7c15ull) ^ (b * 0xc2b2ae3d27d4eb4full) ^ 1;
    for (int i = 0; i < 4; i++)
        rnd_next(&x);
    return x ? x : 1;
}

static uint64_t seed;
static unsigned nshards;

/* Counters of the round; each pair's FIFO slots are written by one shard only. */
static long sent_ok[MAXS][MAXS], recvd[MAXS][MAXS], last_seq[MAXS][MAXS], next_seq[MAXS][MAXS];
static atomic_long fifo_bad, wrong_result, calls_ok, calls_given_up, thread_calls, on_alls,
    jobs_cancelled, jobs_ran_after_cancel, jobs_ok, streams_done, streams_short, stream_disorder,
    spawns_ran;

static void wrong(int line, long v)
{
    atomic_fetch_add(&wrong_result, 1);
    fprintf(stderr, "stress: wrong result at line %d (%ld)\n", line, v);
}

static void on_msg(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    unsigned from = (unsigned)(v >> 56), to = (unsigned)tpc_shard_id();
    long seq = (long)(v & 0xffffffffffffull);
    if (seq <= last_seq[from][to])
        atomic_fetch_add(&fifo_bad, 1);
    last_seq[from][to] = seq;
    recvd[from][to]++;
}

/* Remote spawns not run yet, bounded: a fiber spawned by message has no backpressure of its
 * own, and thousands of stacks waiting would only measure the memory limit. */
static atomic_long spawns_out;

static int spawned(void *arg)
{
    (void)arg;
    atomic_fetch_add(&spawns_ran, 1);
    atomic_fetch_sub(&spawns_out, 1);
    return 0;
}

/* ---- Workers, one set per shard. ---- */
struct worker {
    uint64_t rng;
    unsigned me;
};

static int fifo_sender(void *arg)
{
    struct worker *w = arg;
    unsigned me = w->me;
    while (!tpc_cancelled()) {
        unsigned to = (unsigned)(rnd_next(&w->rng) % nshards);
        if (to == me)
            continue;
        int rc;
        if (rnd_next(&w->rng) % 8 == 0 && atomic_load(&spawns_out) < 256) {
            /* a two-slot message between the one-slot ones */
            atomic_fetch_add(&spawns_out, 1);
            rc = tpc_spawn_on((int)to, NULL, spawned, NULL, NULL);
            if (rc < 0)
                atomic_fetch_sub(&spawns_out, 1);
        } else {
            long seq = ++next_seq[me][to];
            rc = tpc_submit_to((int)to, on_msg, (void *)(((uintptr_t)me << 56) | (uintptr_t)seq));
            if (rc == 0)
                sent_ok[me][to]++;
        }
        if (rc < 0 && rc != -ESHUTDOWN && rc != -ECANCELED)
            wrong(__LINE__, 0);
        if (rc < 0 || (rnd_next(&w->rng) % 8 == 0 && tpc_yield() < 0))
            break;
    }
    free(w);
    return 0;
}

static int callee(void *arg)
{
    intptr_t depth = (intptr_t)arg;
    uint64_t x = rnd_mix(seed, (uint64_t)depth, (uint64_t)tpc_now());
    if (rnd_next(&x) & 1)
        tpc_sleep((int64_t)(rnd_next(&x) % 50000)); /* random timing: the workload */
    if (depth > 0) {
        int r = -1;
        if (tpc_call_on((int)(rnd_next(&x) % nshards), callee, (void *)(depth - 1), &r) == 0 &&
            r != (int)(depth - 1) * 7)
            wrong(__LINE__, 0);
    }
    return (int)depth * 7;
}

static int caller(void *arg)
{
    struct worker *w = arg;
    while (!tpc_cancelled()) {
        bool limit = rnd_next(&w->rng) & 1;
        if (limit)
            tpc_deadline_set((int64_t)(rnd_next(&w->rng) % 200000));
        intptr_t depth = (intptr_t)(rnd_next(&w->rng) % 3);
        int r = -1, rc = tpc_call_on((int)(rnd_next(&w->rng) % nshards), callee, (void *)depth, &r);
        tpc_deadline_clear();
        if (rc == 0) {
            atomic_fetch_add(&calls_ok, 1);
            if (r != (int)depth * 7)
                wrong(__LINE__, 0);
        } else if (rc == -ETIMEDOUT || rc == -ECANCELED) {
            atomic_fetch_add(&calls_given_up, 1);
        } else if (rc != -ESHUTDOWN) {
            wrong(__LINE__, rc);
        }
        if (rc == -ESHUTDOWN)
            break;
        if (rnd_next(&w->rng) % 16 == 0) {
            rc = tpc_on_all(callee, (void *)0);
            if (rc == 0)
                atomic_fetch_add(&on_alls, 1);
            else if (rc != -ESHUTDOWN && rc != -ECANCELED && rc != -ETIMEDOUT)
                wrong(__LINE__, rc);
        }
    }
    free(w);
    return 0;
}

/* Cancels a caller now and then: its call in flight is abandoned, a new caller takes over. */
static int canceller(void *arg)
{
    struct worker *w = arg;
    while (!tpc_cancelled()) {
        struct worker *cw = malloc(sizeof(*cw));
        *cw = (struct worker){.rng = rnd_next(&w->rng) | 1, .me = w->me};
        tpc_fiber *f;
        if (tpc_spawn(caller, cw, &f) < 0) {
            free(cw);
            break;
        }
        tpc_sleep((int64_t)(rnd_next(&w->rng) % 300000)); /* random timing: the workload */
        tpc_cancel(f);
        tpc_join(f, NULL);
    }
    free(w);
    return 0;
}

struct job {
    atomic_int ran, cancelled;
};

static long job_fn(void *arg)
{
    struct job *j = arg;
    atomic_store(&j->ran, 1);
    if (atomic_load(&j->cancelled))
        atomic_fetch_add(&jobs_ran_after_cancel, 1);
    return 7;
}

static int blocker(void *arg)
{
    struct job *j = arg;
    long res = 0;
    int rc = tpc_blocking(job_fn, j, &res);
    if (rc == -ECANCELED || rc == -ETIMEDOUT) {
        atomic_store(&j->cancelled, 1);
        if (atomic_load(&j->ran))
            atomic_fetch_add(&jobs_ran_after_cancel, 1);
        atomic_fetch_add(&jobs_cancelled, 1);
    } else if (rc == 0) {
        atomic_fetch_add(&jobs_ok, 1);
        if (res != 7)
            wrong(__LINE__, 0);
    }
    return rc;
}

static int blocking_driver(void *arg)
{
    struct worker *w = arg;
    while (!tpc_cancelled()) {
        enum { N = 6 };
        tpc_fiber *f[N];
        struct job jobs[N];
        memset(jobs, 0, sizeof(jobs));
        int n = 0;
        for (; n < N; n++)
            if (tpc_spawn(blocker, &jobs[n], &f[n]) < 0)
                break;
        tpc_sleep((int64_t)(rnd_next(&w->rng) % 100000)); /* random timing: the workload */
        for (int k = 0; k < n; k++) {
            if (rnd_next(&w->rng) & 1)
                tpc_cancel(f[k]);
            tpc_join(f[k], NULL); /* waits for it even when this fiber is cancelled */
        }
        if (n < N)
            break;
    }
    free(w);
    return 0;
}

/* A stream: values 1..n from the sending shard to a receiver on a random shard. Who releases
 * what varies: each side its own end, or the sending shard both ends once the receiver is done
 * (from the other shard than the receiving one). */
struct stream {
    tpc_xchan *c;
    atomic_long sent;
    bool sender_releases_both;
};

static int stream_rx(void *arg)
{
    struct stream *st = arg;
    void *v;
    long got = 0;
    int rc;
    while ((rc = tpc_xchan_recv(st->c, &v)) == 0) {
        if ((long)(intptr_t)v != got + 1)
            atomic_fetch_add(&stream_disorder, 1);
        got++;
    }
    if (rc == -EPIPE) {
        atomic_fetch_add(&streams_done, 1);
        if (got != atomic_load(&st->sent)) {
            atomic_fetch_add(&streams_short, 1);
            fprintf(stderr, "stress: stream received %ld of %ld\n", got, atomic_load(&st->sent));
        }
    }
    if (!st->sender_releases_both)
        tpc_xchan_release(st->c);
    return 0;
}

static int streamer(void *arg)
{
    struct worker *w = arg;
    while (!tpc_cancelled()) {
        struct stream *st = calloc(1, sizeof(*st));
        if (!st || tpc_xchan_create(1 + rnd_next(&w->rng) % 16, &st->c) < 0) {
            free(st);
            break;
        }
        st->sender_releases_both = rnd_next(&w->rng) & 1;
        tpc_fiber *r;
        if (tpc_spawn_on((int)(rnd_next(&w->rng) % nshards), NULL, stream_rx, st, &r) < 0) {
            tpc_xchan_release(st->c);
            tpc_xchan_release(st->c);
            free(st);
            break;
        }
        long n = 1 + (long)(rnd_next(&w->rng) % 300), i = 1;
        for (; i <= n; i++)
            if (tpc_xchan_send(st->c, (void *)(intptr_t)i) < 0)
                break;
        atomic_store(&st->sent, i - 1); /* before the close: the receiver reads it after -EPIPE */
        if (rnd_next(&w->rng) & 1)
            tpc_xchan_close(st->c); /* else the release closes */
        if (!st->sender_releases_both)
            tpc_xchan_release(st->c);
        /* st lives until the receiver returned (or could not start). One join: it waits for the
         * receiver even when this fiber is cancelled, and frees the handle whatever it returns
         * (retrying it on -ECANCELED used a freed handle). */
        int jr = tpc_join(r, NULL);
        bool rx_ran = jr == 0 || jr == -ECANCELED || jr == -ETIMEDOUT;
        if (st->sender_releases_both) {
            tpc_xchan_release(st->c);
            tpc_xchan_release(st->c);
        } else if (!rx_ran) { /* the receiver could not start: its end is released here */
            tpc_xchan_release(st->c);
        }
        free(st);
    }
    free(w);
    return 0;
}

static int start_workers(void *arg)
{
    (void)arg;
    static const tpc_fiber_fn kinds[] = {fifo_sender, fifo_sender,     canceller,
                                         caller,      blocking_driver, streamer};
    unsigned me = (unsigned)tpc_shard_id();
    for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct worker *w = malloc(sizeof(*w));
        if (!w)
            return -ENOMEM;
        *w = (struct worker){.rng = rnd_mix(seed, me, k), .me = me};
        if (tpc_spawn(kinds[k], w, NULL) < 0) {
            free(w);
            return -1;
        }
    }
    return 0;
}

static int stress_main(void *arg)
{
    int64_t ms = (int64_t)(intptr_t)arg;
    CHECK_EQ(tpc_on_all(start_workers, NULL), 0);
    tpc_sleep(ms * 1000000); /* the round's length (the workload): then it stops */
    return 0;                /* the runtime stops with everything in flight */
}

static int from_thread_fn(void *arg)
{
    tpc_sleep(5000); /* a call that suspends: the suspension is the workload */
    return (int)(intptr_t)arg + 1;
}

static void *foreign(void *p)
{
    tpc_runtime *rt = p;
    for (int i = 0;; i++) {
        int r = 0, rc = tpc_call_from_thread(rt, i % (int)nshards, from_thread_fn,
                                             (void *)(intptr_t)i, &r);
        if (rc == -ESHUTDOWN)
            break;
        if (rc != 0 || r != i + 1)
            wrong(__LINE__, 0);
        else
            atomic_fetch_add(&thread_calls, 1);
    }
    return NULL;
}

/* ---- The watchdog: a round that does not end in time is a hang. ---- */
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond = PTHREAD_COND_INITIALIZER;
static bool wd_done;
static int wd_round;

static void *watchdog(void *p)
{
    long seconds = (long)(intptr_t)p;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&wd_lock);
    while (!wd_done)
        if (pthread_cond_timedwait(&wd_cond, &wd_lock, &until) == ETIMEDOUT && !wd_done) {
            fprintf(stderr, "stress: round %d hung for %ld s (TPC_STRESS_SEED=%llu)\n", wd_round,
                    seconds, (unsigned long long)seed);
            abort();
        }
    pthread_mutex_unlock(&wd_lock);
    return NULL;
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static void test_stress(void **state)
{
    (void)state;
    bool slow = getenv("TPC_TEST_SLOW") != NULL;
    const char *s = getenv("TPC_STRESS_SEED");
    seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    long rounds = env_long("TPC_STRESS_ROUNDS", 6), ms = env_long("TPC_STRESS_MS", 60);
    printf("stress: TPC_STRESS_SEED=%llu TPC_STRESS_ROUNDS=%ld TPC_STRESS_MS=%ld\n",
           (unsigned long long)seed, rounds, ms);
    static const unsigned shard_choice[] = {2, 3, 5}, slot_choice[] = {2, 4, 1024};
    for (int round = 0; round < rounds; round++) {
        uint64_t x = rnd_mix(seed, 0xfeed, (uint64_t)round);
        nshards = shard_choice[rnd_next(&x) % 3];
        unsigned slots = slot_choice[rnd_next(&x) % 3];
        int64_t spin = rnd_next(&x) & 1 ? -1 : 0;
        long run_ms = 1 + (long)(rnd_next(&x) % (uint64_t)ms);
        memset(sent_ok, 0, sizeof(sent_ok));
        memset(recvd, 0, sizeof(recvd));
        memset(last_seq, 0, sizeof(last_seq));
        memset(next_seq, 0, sizeof(next_seq));
        atomic_long *counters[] = {
            &fifo_bad,      &wrong_result,    &calls_ok,  &calls_given_up,        &thread_calls,
            &on_alls,       &jobs_cancelled,  &jobs_ok,   &jobs_ran_after_cancel, &streams_done,
            &streams_short, &stream_disorder, &spawns_ran};
        for (size_t k = 0; k < sizeof(counters) / sizeof(counters[0]); k++)
            atomic_store(counters[k], 0);
        checks_reset();

        wd_done = false;
        wd_round = round;
        pthread_t wd;
        assert_int_equal(pthread_create(&wd, NULL, watchdog, (void *)(intptr_t)(slow ? 300 : 60)),
                         0);
        tpc_config c = {.shards = nshards,
                        .msg_slots = slots,
                        .spin_ns = spin,
                        .blocking_threads = 2,
                        .blocking_queue = 4,
                        .no_signals = true};
        tpc_runtime *rt;
        assert_int_equal(tpc_start(&c, stress_main, (void *)(intptr_t)run_ms, &rt), 0);
        pthread_t th[2];
        for (int k = 0; k < 2; k++)
            assert_int_equal(pthread_create(&th[k], NULL, foreign, rt), 0);
        int rc = tpc_wait(rt);
        for (int k = 0; k < 2; k++)
            pthread_join(th[k], NULL);
        pthread_mutex_lock(&wd_lock);
        wd_done = true;
        pthread_cond_signal(&wd_cond);
        pthread_mutex_unlock(&wd_lock);
        pthread_join(wd, NULL);

        long sent = 0, lost = 0, dup = 0;
        for (unsigned i = 0; i < nshards; i++)
            for (unsigned j = 0; j < nshards; j++) {
                sent += sent_ok[i][j];
                if (recvd[i][j] < sent_ok[i][j])
                    lost += sent_ok[i][j] - recvd[i][j];
                else
                    dup += recvd[i][j] - sent_ok[i][j];
            }
        printf("stress: round %d: %u shards, %u slots, spin %s, %ld ms: %ld messages, %ld calls "
               "(%ld given up), %ld on_all, %ld thread calls, %ld jobs (%ld cancelled), %ld "
               "streams, %ld spawns\n",
               round, nshards, slots, spin < 0 ? "off" : "on", run_ms, sent, atomic_load(&calls_ok),
               atomic_load(&calls_given_up), atomic_load(&on_alls), atomic_load(&thread_calls),
               atomic_load(&jobs_ok), atomic_load(&jobs_cancelled), atomic_load(&streams_done),
               atomic_load(&spawns_ran));
        if (lost || dup || fifo_bad || wrong_result || streams_short || stream_disorder ||
            jobs_ran_after_cancel || t_failures || rc != 0)
            fprintf(stderr,
                    "stress: round %d failed (TPC_STRESS_SEED=%llu): rc %d, lost %ld, duplicated "
                    "%ld, out of order %ld, wrong results %ld, short streams %ld, disordered "
                    "streams %ld, cancelled jobs that ran %ld\n",
                    round, (unsigned long long)seed, rc, lost, dup, atomic_load(&fifo_bad),
                    atomic_load(&wrong_result), atomic_load(&streams_short),
                    atomic_load(&stream_disorder), atomic_load(&jobs_ran_after_cancel));
        assert_int_equal(rc, 0);
        assert_int_equal(lost, 0);
        assert_int_equal(dup, 0);
        assert_int_equal(atomic_load(&fifo_bad), 0);
        assert_int_equal(atomic_load(&wrong_result), 0);
        assert_int_equal(atomic_load(&streams_short), 0);
        assert_int_equal(atomic_load(&stream_disorder), 0);
        assert_int_equal(atomic_load(&jobs_ran_after_cancel), 0);
        assert_no_check_failed();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
