/* hello-shards: one shard per CPU; each shard runs its own fibers and reports back to shard 0.
 *
 * Shard 0's main fiber sends every shard a callback (tpc_submit_to). On each shard that callback
 * spawns worker fibers that count primes in their own slice of a range, yielding cooperatively
 * (tpc_maybe_yield), and hand their counts to a collector fiber over a shard-local channel. The
 * collector sends one report back to shard 0, where a wait group counts the replies. Nothing is
 * shared between shards except those messages.
 *
 *   tpc-hello-shards [numbers-per-shard]
 * TPC_SHARDS, TPC_CPUS and TPC_PLACEMENT (pu, core, node) choose the shards. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <tpc.h>

#define WORKERS 64

struct shard_job {
    uint64_t lo, hi;  /* this shard's range */
    tpc_chan results; /* workers -> collector, on the shard */
    uint64_t primes;  /* filled in by the collector */
    int shard, cpu, fibers;
    double ms;
    tpc_waitgroup *done; /* lives on shard 0 */
};

struct slice {
    struct shard_job *job;
    uint64_t lo, hi, count;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int is_prime(uint64_t n)
{
    if (n < 2)
        return 0;
    for (uint64_t d = 2; d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

static int worker(void *arg)
{
    struct slice *s = arg;
    for (uint64_t n = s->lo; n < s->hi; n++) {
        s->count += (uint64_t)is_prime(n);
        tpc_maybe_yield(); /* let the shard's other fibers run every time slice */
    }
    return tpc_chan_send(&s->job->results, s);
}

static void reported(void *arg) /* runs on shard 0 */
{
    struct shard_job *job = arg;
    tpc_wg_done(job->done);
}

static int collector(void *arg)
{
    struct shard_job *job = arg;
    uint64_t t0 = now_ns();
    struct slice slices[WORKERS];
    uint64_t step = (job->hi - job->lo + WORKERS - 1) / WORKERS;
    for (int i = 0; i < WORKERS; i++) {
        slices[i] = (struct slice){job, job->lo + i * step, job->lo + (i + 1) * step, 0};
        if (slices[i].hi > job->hi)
            slices[i].hi = job->hi;
        if (tpc_spawn(worker, &slices[i], NULL) == 0)
            job->fibers++;
    }
    for (int i = 0; i < job->fibers; i++) {
        void *v;
        if (tpc_chan_recv(&job->results, &v) == 0)
            job->primes += ((struct slice *)v)->count;
    }
    tpc_chan_destroy(&job->results);
    job->ms = (double)(now_ns() - t0) / 1e6;
    job->cpu = tpc_shard_cpu();
    return tpc_submit_to(0, reported, job);
}

static void start_job(void *arg) /* runs on the job's shard */
{
    struct shard_job *job = arg;
    job->shard = tpc_shard_id();
    tpc_chan_init(&job->results, WORKERS);
    tpc_spawn(collector, job, NULL);
}

static int main_fiber(void *arg)
{
    uint64_t per_shard = *(uint64_t *)arg;
    int n = tpc_shard_count();
    struct shard_job *jobs = calloc((size_t)n, sizeof(*jobs));
    tpc_waitgroup done;
    tpc_wg_init(&done);
    tpc_wg_add(&done, n);
    printf("libtpc %s: %d shard(s)\n", tpc_version_string(), n);
    tpc_topology_report(stdout);
    char features[256];
    if (tpc_features(features, sizeof(features)) > 0)
        printf("%s\n", features);
    printf("\neach shard counts the primes in its own %" PRIu64 " numbers with %d fibers\n\n",
           per_shard, WORKERS);
    uint64_t t0 = now_ns();
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct shard_job){.lo = i * per_shard, .hi = (i + 1) * per_shard, .done = &done};
        int rc = tpc_submit_to(i, start_job, &jobs[i]);
        if (rc < 0) {
            fprintf(stderr, "submit to shard %d: %s\n", i, tpc_strerror(rc));
            return 1;
        }
    }
    tpc_wg_wait(&done);
    double wall = (double)(now_ns() - t0) / 1e6;

    printf("shard  cpu   fibers  range                      primes   time (ms)\n");
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        char cpu[16];
        snprintf(cpu, sizeof(cpu), jobs[i].cpu >= 0 ? "%d" : "-", jobs[i].cpu);
        printf("%5d  %-4s  %6d  [%9" PRIu64 ", %9" PRIu64 ")  %8" PRIu64 "   %8.1f\n",
               jobs[i].shard, cpu, jobs[i].fibers + 1, jobs[i].lo, jobs[i].hi, jobs[i].primes,
               jobs[i].ms);
        total += jobs[i].primes;
    }
    printf("\n%" PRIu64 " primes below %" PRIu64 " in %.1f ms of wall time; every shard ran its "
           "own fibers\n(workers + 1 collector) on its own CPU and reported back through the "
           "cross-shard rings.\n",
           total, (uint64_t)n * per_shard, wall);
    printf("\nper-shard counters (tpc_stats):\nshard      tasks   switches    loops   msgs in  "
           "msgs out"
           "  woken  woke  asleep ms\n");
    for (int i = 0; i < n; i++) {
        tpc_shard_stats st;
        if (tpc_stats(i, &st) == 0)
            printf("%5d %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %9" PRIu64 " %9" PRIu64
                   " %6" PRIu64 " %5" PRIu64 " %10.1f\n",
                   i, st.tasks, st.switches, st.loops, st.msgs_in, st.msgs_out, st.wakeups,
                   st.wakeups_sent, (double)st.sleep_ns / 1e6);
    }
    tpc_wg_destroy(&done);
    free(jobs);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t per_shard = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    if (per_shard < WORKERS) {
        fprintf(stderr, "usage: %s [numbers-per-shard >= %d]\n", argv[0], WORKERS);
        return 2;
    }
    int rc = tpc_run(NULL, main_fiber, &per_shard);
    if (rc < 0) {
        fprintf(stderr, "tpc_run: %s\n", tpc_strerror(rc));
        return 1;
    }
    return rc;
}
