/* The machine's floor for cross-core messaging, without libtpc: what the same two CPUs do with
 * two bare pinned threads, measured in the same process as the libtpc figure it is compared
 * with. On a shared VM the cost of moving a cache line between the two vCPUs changes from run to
 * run (this project's VM alternates between about 0.15 and 0.4 us), so libtpc's cross-shard
 * figures are reported together with this floor and as a ratio to it.
 *   floor_pingpong_ns  spinning round trip through two cache lines (mean)
 *   floor_stream_ns    per message through a 1024-slot SPSC ring of 16-byte {fn, arg} slots,
 *                      tail published every 64, the reader calling through fn */
#ifndef TPC_BENCH_FLOOR_H
#define TPC_BENCH_FLOOR_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include "bench.h"

#define FLOOR_SLOTS 1024u
#define FLOOR_BATCH 64u

struct floor_slot {
    void (*fn)(void *);
    void *arg;
};

static struct {
    _Alignas(64) _Atomic long ping;
    _Alignas(64) _Atomic long pong;
    _Alignas(64) _Atomic uint32_t tail;
    _Alignas(64) _Atomic uint32_t head;
    _Alignas(64) long sum;
    long n_rtt, n_msg;
    _Alignas(64) struct floor_slot slots[FLOOR_SLOTS];
} floor_;

static void floor_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* A spin that gives the CPU away now and then: on a machine where other work shares the two
 * CPUs, two pure spinners waiting on each other can wait a scheduler slice per round trip and
 * take minutes (the figure is then meaningless anyway, but the run must end). */
static inline void floor_relax(unsigned *spins)
{
    if (++*spins % 4096 == 0)
        sched_yield();
}

static void floor_add(void *arg)
{
    floor_.sum += (long)(intptr_t)arg;
}

static void *floor_peer(void *arg)
{
    (void)arg;
    floor_pin(1);
    unsigned spins = 0;
    for (long i = 1; i <= floor_.n_rtt; i++) {
        while (atomic_load_explicit(&floor_.ping, memory_order_acquire) != i)
            floor_relax(&spins);
        atomic_store_explicit(&floor_.pong, i, memory_order_release);
    }
    uint32_t h = 0;
    for (long got = 0; got < floor_.n_msg;) {
        uint32_t t = atomic_load_explicit(&floor_.tail, memory_order_acquire);
        if (t == h)
            floor_relax(&spins);
        for (; h != t; h++, got++)
            floor_.slots[h % FLOOR_SLOTS].fn(floor_.slots[h % FLOOR_SLOTS].arg);
        atomic_store_explicit(&floor_.head, h, memory_order_release);
    }
    return NULL;
}

/* Runs both floors on CPUs 0 and 1 (the calling thread moves to CPU 0 meanwhile). */
static void floor_measure(long n_rtt, long n_msg, double *pingpong_ns, double *stream_ns)
{
    cpu_set_t old;
    pthread_getaffinity_np(pthread_self(), sizeof(old), &old);
    memset(&floor_, 0, sizeof(floor_));
    floor_.n_rtt = n_rtt;
    floor_.n_msg = n_msg;
    pthread_t th;
    pthread_create(&th, NULL, floor_peer, NULL);
    floor_pin(0);
    uint64_t t0 = bench_ns();
    unsigned spins = 0;
    for (long i = 1; i <= n_rtt; i++) {
        atomic_store_explicit(&floor_.ping, i, memory_order_release);
        while (atomic_load_explicit(&floor_.pong, memory_order_acquire) != i)
            floor_relax(&spins);
    }
    *pingpong_ns = (double)(bench_ns() - t0) / (double)n_rtt;
    uint32_t tl = 0, hd = 0;
    t0 = bench_ns();
    for (long i = 0; i < n_msg; i++) {
        while (tl - hd >= FLOOR_SLOTS) {
            hd = atomic_load_explicit(&floor_.head, memory_order_acquire);
            floor_relax(&spins);
        }
        floor_.slots[tl % FLOOR_SLOTS] = (struct floor_slot){floor_add, (void *)(intptr_t)1};
        if (++tl % FLOOR_BATCH == 0)
            atomic_store_explicit(&floor_.tail, tl, memory_order_release);
    }
    atomic_store_explicit(&floor_.tail, tl, memory_order_release);
    pthread_join(th, NULL);
    *stream_ns = (double)(bench_ns() - t0) / (double)n_msg;
    pthread_setaffinity_np(pthread_self(), sizeof(old), &old);
}

#endif
