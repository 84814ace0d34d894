/* One runtime per CPU in a process, across copies and versions of libtpc.
 *
 * A plugin may carry a static copy of libtpc (symbols hidden) while its host links another, so
 * no C global can tell one runtime about another. Instead each copy keeps a table of the
 * runtimes it started in a small mapping of a memfd named "libtpc-runtimes"; every copy finds
 * every table by that name in /proc/self/maps and reads it. A copy writes only its own table,
 * so no two copies ever race to create a shared one. The layout is versioned (a magic word,
 * the layout number, the slot count and the slot size come first) so that a later version can
 * add fields after the ones here and still be read by this one; all fields are 64-bit words
 * read and written with atomics.
 *
 * A start claims the CPUs its shards are pinned to: it fills a slot of its table in (state
 * WRITING), publishes it (CLAIMING), then reads every slot of every table. Both sides of a race
 * store their claim before they read, so at least one sees the other. A conflict is an
 * overlapping RUNNING slot, or an overlapping CLAIMING slot made earlier (its key, the
 * CLOCK_MONOTONIC time of the claim, then the slot's address, is smaller): then this start
 * withdraws. An overlapping claim made later is waited for (it withdraws when it sees this
 * one, or becomes RUNNING if it did not, and then this one withdraws); waits only go towards
 * later claims, so they cannot form a cycle. A slot marked SHARE (tpc_config.share_cpus)
 * conflicts with nothing, and a claim with SHARE ignores every other slot.
 *
 * The mapping is private: a child made by fork gets a copy whose slots name its parent's pid,
 * which every reader ignores, and which the copy that owns the table clears at its first claim
 * in the child. Without memfd_create (or /proc) the table is plain anonymous memory that only
 * this copy reads: runtimes of this copy are still checked against each other. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

#define CLAIM_NAME  "libtpc-runtimes"
#define CLAIM_MAGIC 0x31534e5552435054ull /* "TPCRUNS1" in memory order */
enum { CLAIM_LAYOUT = 1, CLAIM_SLOTS = 63, CPU_WORDS = 16, MAX_TABLES = 64 };
enum { SLOT_FREE = 0, SLOT_WRITING, SLOT_CLAIMING, SLOT_RUNNING };
enum { SLOT_SHARE = 1 };

struct claim_slot {                   /* layout 1: 32 words */
    _Atomic uint64_t state;           /* SLOT_* */
    _Atomic uint64_t gen;             /* + 1 at every claim: a reader sees a slot reused under it */
    _Atomic uint64_t pid;             /* the process that claimed it */
    _Atomic uint64_t key;             /* CLOCK_MONOTONIC ns of the claim: the earlier wins */
    _Atomic uint64_t flags;           /* SLOT_SHARE */
    _Atomic uint64_t version[2];      /* the claiming copy's tpc_version_string(), NUL-padded */
    _Atomic uint64_t cpus[CPU_WORDS]; /* CPU c is bit c % 64 of word c / 64 */
    _Atomic uint64_t spare[9];
};

struct claim_table {
    _Atomic uint64_t magic; /* CLAIM_MAGIC once the header below is written */
    _Atomic uint64_t layout;
    _Atomic uint64_t nslots;
    _Atomic uint64_t slot_words; /* a slot's size in 64-bit words */
    _Atomic uint64_t spare[4];
    struct claim_slot slot[CLAIM_SLOTS];
};

/* What a reader copied out of a slot. */
struct claim_view {
    uint64_t state, gen, key, flags;
    char version[17];
    cpu_set_t cpus;
};

static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static struct claim_table *own; /* this copy's table, under own_lock */
static pid_t own_pid;           /* the process own's slots were last cleared for */

static struct claim_table *table_new(void)
{
    size_t size = sizeof(struct claim_table);
    void *p = MAP_FAILED;
    int fd = memfd_create(CLAIM_NAME, MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)size) == 0)
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (fd >= 0)
        close(fd);
    if (p == MAP_FAILED) /* seen by this copy only */
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct claim_table *t = p;
    atomic_store(&t->layout, CLAIM_LAYOUT);
    atomic_store(&t->nslots, CLAIM_SLOTS);
    atomic_store(&t->slot_words, sizeof(struct claim_slot) / 8);
    atomic_store(&t->magic, CLAIM_MAGIC);
    return t;
}

/* This copy's table, made on first use and cleared of a parent's slots after a fork. Called
 * under own_lock. */
static struct claim_table *own_table(void)
{
    if (!own && !(own = table_new()))
        return NULL;
    if (own_pid != getpid()) {
        for (unsigned i = 0; i < CLAIM_SLOTS; i++)
            atomic_store(&own->slot[i].state, SLOT_FREE);
        own_pid = getpid();
    }
    return own;
}

/* A table found, and the size of its mapping (a reader reads no further). */
struct table_ref {
    struct claim_table *t;
    size_t size;
};

/* Whether a line of /proc/self/maps is a table ("/memfd:libtpc-runtimes (deleted)", readable);
 * then where it is in *out. */
static bool table_line(const char *line, struct table_ref *out)
{
    unsigned long lo, hi;
    char perms[8];
    int path = 0;
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &path) < 3 || !path)
        return false;
    const char *name = "/memfd:" CLAIM_NAME;
    const char *p = line + path;
    if (strncmp(p, name, strlen(name)) != 0 || (p[strlen(name)] != ' ' && p[strlen(name)] != '\n'))
        return false;
    if (perms[0] != 'r' || hi - lo < offsetof(struct claim_table, slot))
        return false;
    *out = (struct table_ref){(struct claim_table *)lo, hi - lo};
    return true;
}

/* Every table in the process (this copy's too, even when /proc cannot be read): how many. */
static int tables_find(struct claim_table *mine, struct table_ref *out, int max)
{
    int n = 0;
    bool have_mine = false;
    FILE *f = fopen("/proc/self/maps", "re");
    if (f) {
        char line[512];
        while (fgets(line, sizeof(line), f) && n < max - 1)
            if (table_line(line, &out[n]))
                have_mine |= out[n++].t == mine;
        fclose(f);
    }
    if (!have_mine)
        out[n++] = (struct table_ref){mine, sizeof(*mine)};
    return n;
}

/* Slot i of table r, or NULL past its end (or if r is not a table of a layout this reads). */
static struct claim_slot *table_slot(const struct table_ref *r, uint64_t i)
{
    struct claim_table *t = r->t;
    if (atomic_load(&t->magic) != CLAIM_MAGIC || atomic_load(&t->layout) < CLAIM_LAYOUT)
        return NULL; /* not written yet: its claims, if any come, will see ours */
    uint64_t words = atomic_load(&t->slot_words);
    uint64_t end = offsetof(struct claim_table, slot) + (i + 1) * words * 8;
    if (i >= atomic_load(&t->nslots) || words < offsetof(struct claim_slot, spare) / 8 ||
        end > r->size)
        return NULL;
    return (struct claim_slot *)((char *)t->slot + i * words * 8);
}

/* Copies slot s out consistently (the fields with acquire loads, so that the state and generation
 * read again after them tell whether a claim changed it meanwhile: a seqlock without a fence,
 * which TSan does not model); false if it holds no claim of this process. */
static bool slot_read(struct claim_slot *s, struct claim_view *v)
{
    for (;;) {
        v->state = atomic_load(&s->state);
        v->gen = atomic_load(&s->gen);
        if (v->state < SLOT_CLAIMING)
            return false;
        uint64_t pid = atomic_load_explicit(&s->pid, memory_order_acquire);
        v->key = atomic_load_explicit(&s->key, memory_order_acquire);
        v->flags = atomic_load_explicit(&s->flags, memory_order_acquire);
        uint64_t w[2] = {atomic_load_explicit(&s->version[0], memory_order_acquire),
                         atomic_load_explicit(&s->version[1], memory_order_acquire)};
        memcpy(v->version, w, 16);
        v->version[16] = '\0';
        CPU_ZERO(&v->cpus);
        for (int i = 0; i < CPU_WORDS; i++) {
            uint64_t bits = atomic_load_explicit(&s->cpus[i], memory_order_acquire);
            for (int b = 0; b < 64; b++)
                if (bits >> b & 1)
                    CPU_SET(i * 64 + b, &v->cpus);
        }
        if (atomic_load(&s->state) == v->state && atomic_load(&s->gen) == v->gen)
            return pid == (uint64_t)getpid();
    }
}

/* Fills in a free slot of this copy's table with the claim and publishes it (CLAIMING). The
 * fields are release stores: a reader whose acquire load sees one of them then sees the slot's
 * new state and generation too (slot_read).
 * NULL when the table cannot be made or is full. */
static struct claim_slot *slot_claim(const cpu_set_t *cpus, bool share)
{
    pthread_mutex_lock(&own_lock);
    struct claim_table *t = own_table();
    struct claim_slot *s = NULL;
    for (unsigned i = 0; t && i < CLAIM_SLOTS && !s; i++)
        if (atomic_load(&t->slot[i].state) == SLOT_FREE) {
            s = &t->slot[i];
            atomic_store(&s->state, SLOT_WRITING);
            atomic_fetch_add(&s->gen, 1);
        }
    pthread_mutex_unlock(&own_lock);
    if (!s)
        return NULL;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t w[2] = {0, 0};
    const char *version = tpc_version_string();
    memcpy(w, version, strnlen(version, 16));
    atomic_store_explicit(&s->pid, (uint64_t)getpid(), memory_order_release);
    atomic_store_explicit(&s->key, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
                          memory_order_release);
    atomic_store_explicit(&s->flags, share ? SLOT_SHARE : 0, memory_order_release);
    for (int i = 0; i < 2; i++)
        atomic_store_explicit(&s->version[i], w[i], memory_order_release);
    for (int i = 0; i < CPU_WORDS; i++) {
        uint64_t bits = 0;
        for (int b = 0; b < 64; b++)
            if (CPU_ISSET(i * 64 + b, cpus))
                bits |= 1ull << b;
        atomic_store_explicit(&s->cpus[i], bits, memory_order_release);
    }
    atomic_store(&s->state, SLOT_CLAIMING); /* then read the others: see the header */
    return s;
}

/* Writes CPU set c as a list such as "0-3,8" into buf. */
static void cpu_list(const cpu_set_t *c, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < CPU_SETSIZE && n < size; i++) {
        if (!CPU_ISSET(i, c) || (i > 0 && CPU_ISSET(i - 1, c)))
            continue;
        int j = i;
        while (j + 1 < CPU_SETSIZE && CPU_ISSET(j + 1, c))
            j++;
        int k = j == i ? snprintf(buf + n, size - n, "%s%d", n ? "," : "", i)
                       : snprintf(buf + n, size - n, "%s%d-%d", n ? "," : "", i, j);
        n += k > 0 ? (size_t)k : 0;
    }
}

static bool claim_earlier(const struct claim_view *a, const void *sa, uint64_t key_b,
                          const void *sb)
{
    return a->key < key_b || (a->key == key_b && (uintptr_t)sa < (uintptr_t)sb);
}

/* Whether other slot o conflicts with claim `mine` (key `key`, cpus `cpus`): waits while o is
 * a later overlapping claim still being decided. On a conflict, *v is what o held. */
static bool slot_conflicts(struct claim_slot *o, struct claim_slot *mine, uint64_t key,
                           const cpu_set_t *cpus, struct claim_view *v)
{
    for (;;) {
        if (o == mine || !slot_read(o, v) || (v->flags & SLOT_SHARE))
            return false;
        cpu_set_t both;
        CPU_AND(&both, &v->cpus, cpus);
        if (!CPU_COUNT(&both))
            return false;
        if (v->state == SLOT_RUNNING || claim_earlier(v, o, key, mine))
            return true;
        while (atomic_load(&o->state) == SLOT_CLAIMING && atomic_load(&o->gen) == v->gen)
            sched_yield(); /* a later claim decides within a scan of the tables */
    }
}

static void conflict_message(const cpu_set_t *cpus, const struct claim_view *v)
{
    char ours[256], theirs[256];
    cpu_set_t both;
    CPU_AND(&both, &v->cpus, cpus);
    cpu_list(&both, ours, sizeof(ours));
    cpu_list(&v->cpus, theirs, sizeof(theirs));
    bool one = CPU_COUNT(&both) == 1;
    fprintf(stderr,
            "libtpc: cannot start: %s %s %s taken by another libtpc runtime in this process "
            "(libtpc %s, %s on %s %s). Give each runtime its own CPUs (tpc_config.cpus or "
            "TPC_CPUS), or let them share with tpc_config.share_cpus (TPC_SHARE_CPUS=1)\n",
            one ? "CPU" : "CPUs", ours, one ? "is" : "are", v->version,
            v->state == SLOT_RUNNING ? "running" : "starting",
            CPU_COUNT(&v->cpus) == 1 ? "CPU" : "CPUs", theirs);
}

int tpc__cpus_claim(const cpu_set_t *cpus, bool share, void **out)
{
    *out = NULL;
    if (!CPU_COUNT(cpus))
        return 0; /* no shard pinned: nothing to fight over */
    struct claim_slot *mine = slot_claim(cpus, share);
    if (!mine) {
        fprintf(stderr,
                "libtpc: cannot start: %d runtimes of this copy of libtpc already run "
                "in this process (or no memory for their table)\n",
                CLAIM_SLOTS);
        return -EAGAIN;
    }
    uint64_t key = atomic_load_explicit(&mine->key, memory_order_relaxed);
    struct table_ref tables[MAX_TABLES];
    int n = share ? 0 : tables_find(own, tables, MAX_TABLES);
    for (int t = 0; t < n; t++) {
        struct claim_slot *o;
        for (uint64_t i = 0; (o = table_slot(&tables[t], i)) != NULL; i++) {
            struct claim_view v;
            if (slot_conflicts(o, mine, key, cpus, &v)) {
                atomic_store(&mine->state, SLOT_FREE);
                conflict_message(cpus, &v);
                return -EBUSY;
            }
        }
    }
    atomic_store(&mine->state, SLOT_RUNNING);
    *out = mine;
    return 0;
}

void tpc__cpus_release(void *claim)
{
    if (claim)
        atomic_store(&((struct claim_slot *)claim)->state, SLOT_FREE);
}
