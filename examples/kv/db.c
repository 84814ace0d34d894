/* The keyspace (db.h). */
#include "db.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fputs("tpc-kv: out of memory\n", stderr);
        abort();
    }
    return p;
}

struct str *str_new(const void *p, size_t n)
{
    struct str *s = xmalloc(sizeof(*s) + n + 1);
    s->len = (uint32_t)n;
    if (n)
        memcpy(s->d, p, n);
    s->d[n] = 0;
    return s;
}

uint64_t kv_hash(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

int64_t kv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dict_init(struct dict *d)
{
    memset(d, 0, sizeof(*d));
    d->rehash = -1;
}

void value_free(uint8_t type, void *val)
{
    if (!val)
        return;
    switch (type) {
    case T_LIST:
        list_release(val);
        break;
    case T_HASH:
    case T_SET:
        dict_free(val, true);
        break;
    case T_ZSET:
        zset_release(val);
        break;
    default:
        break;
    }
    free(val);
}

size_t value_bytes(uint8_t type, const void *val)
{
    if (!val)
        return 0;
    switch (type) {
    case T_STRING:
        return sizeof(struct str) + ((const struct str *)val)->len + 1;
    case T_LIST:
        return sizeof(struct list) + ((const struct list *)val)->bytes;
    case T_ZSET:
        return zset_bytes(val);
    default:
        return 64 * dict_size(val);
    }
}

void dict_free(struct dict *d, bool values)
{
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < d->size[t]; i++)
            for (struct entry *e = d->t[t][i], *next; e; e = next) {
                next = e->next;
                if (values)
                    value_free(e->type, e->val);
                free(e);
            }
        free(d->t[t]);
    }
    uint32_t epoch = d->epoch; /* a log rewrite in progress goes on */
    dict_init(d);
    d->epoch = epoch;
}

size_t dict_size(const struct dict *d)
{
    return d->used[0] + d->used[1];
}

/* Starts moving the entries into a table of `size` buckets, a few buckets per operation. */
static void resize(struct dict *d, size_t size)
{
    d->t[1] = calloc(size, sizeof(struct entry *));
    if (!d->t[1]) {
        fputs("tpc-kv: out of memory\n", stderr);
        abort();
    }
    d->size[1] = size;
    d->rehash = 0;
}

/* A table an eighth full or less shrinks to one half full or less: memory goes with the keys,
 * and a walk (SCAN, SPOP's random pick, expiry) does not cross empty buckets by the million
 * after mass deletions. */
static void shrink(struct dict *d)
{
    if (d->rehash >= 0 || d->size[0] <= 4 || d->used[0] > d->size[0] / 8)
        return;
    size_t size = 4;
    while (size < 2 * d->used[0])
        size *= 2;
    resize(d, size);
}

/* Moves up to n buckets of t[0] into t[1] (visiting at most 10 n empty ones). */
void dict_rehash_step(struct dict *d, int n)
{
    int empty = n * 10;
    while (n-- > 0 && d->rehash >= 0) {
        while (!d->t[0][d->rehash]) {
            if (++d->rehash == (long)d->size[0])
                goto done;
            if (--empty == 0)
                return;
        }
        for (struct entry *e = d->t[0][d->rehash], *next; e; e = next) {
            next = e->next;
            size_t b = e->hash & (d->size[1] - 1);
            e->next = d->t[1][b];
            d->t[1][b] = e;
            d->used[0]--;
            d->used[1]++;
        }
        d->t[0][d->rehash] = NULL;
        if (++d->rehash == (long)d->size[0])
            goto done;
    }
    return;
done:
    free(d->t[0]);
    d->t[0] = d->t[1];
    d->size[0] = d->size[1];
    d->used[0] = d->used[1];
    d->t[1] = NULL;
    d->size[1] = d->used[1] = 0;
    d->rehash = -1;
    shrink(d); /* keys went while it moved: again, smaller */
}

static void expand(struct dict *d)
{
    if (d->rehash >= 0)
        return;
    if (d->size[0] == 0) {
        d->t[0] = calloc(4, sizeof(struct entry *));
        if (!d->t[0])
            abort();
        d->size[0] = 4;
        return;
    }
    if (d->used[0] >= d->size[0])
        resize(d, d->size[0] * 2);
}

struct entry *dict_find(struct dict *d, const void *key, size_t klen, uint64_t h)
{
    if (d->rehash >= 0)
        dict_rehash_step(d, 1);
    for (int t = 0; t < 2; t++) {
        if (!d->size[t])
            continue;
        for (struct entry *e = d->t[t][h & (d->size[t] - 1)]; e; e = e->next)
            if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
                return e;
        if (d->rehash < 0)
            break;
    }
    return NULL;
}

struct entry *dict_add(struct dict *d, const void *key, size_t klen, uint64_t h)
{
    if (d->rehash >= 0)
        dict_rehash_step(d, 1);
    expand(d);
    int t = d->rehash >= 0 ? 1 : 0;
    struct entry *e = xmalloc(sizeof(*e) + klen + 1);
    e->hash = h;
    e->expire = 0;
    e->val = NULL;
    e->klen = (uint32_t)klen;
    e->type = 0;
    e->epoch = d->epoch;
    memcpy(e->key, key, klen);
    e->key[klen] = 0;
    size_t b = h & (d->size[t] - 1);
    e->next = d->t[t][b];
    d->t[t][b] = e;
    d->used[t]++;
    return e;
}

void dict_delete(struct dict *d, struct entry *e)
{
    for (int t = 0; t < 2; t++) {
        if (!d->size[t])
            continue;
        for (struct entry **pp = &d->t[t][e->hash & (d->size[t] - 1)]; *pp; pp = &(*pp)->next)
            if (*pp == e) {
                *pp = e->next;
                d->used[t]--;
                value_free(e->type, e->val);
                free(e);
                shrink(d);
                return;
            }
    }
}

struct entry *dict_random(struct dict *d)
{
    if (dict_size(d) == 0)
        return NULL;
    if (d->rehash >= 0)
        dict_rehash_step(d, 1); /* (SPOP's pick and removal find nothing: the move goes on) */
    for (;;) {
        int t = d->rehash >= 0 && (rand() & 1) ? 1 : 0;
        if (!d->size[t])
            continue;
        size_t b = (size_t)rand() & (d->size[t] - 1);
        if (t == 0 && d->rehash >= 0 && (long)b < d->rehash)
            continue; /* moved already: empty */
        size_t n = 0;
        for (struct entry *e = d->t[t][b]; e; e = e->next)
            n++;
        if (!n)
            continue;
        struct entry *e = d->t[t][b];
        for (size_t k = (size_t)rand() % n; k; k--)
            e = e->next;
        return e;
    }
}

static uint64_t rev(uint64_t v)
{
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
    return __builtin_bswap64(v);
}

static void scan_bucket(struct entry *e, void (*fn)(void *, struct entry *), void *arg)
{
    for (struct entry *next; e; e = next) {
        next = e->next;
        fn(arg, e);
    }
}

/* Redis's reverse-binary cursor: buckets are visited by incrementing the cursor's reversed bits,
 * so a table that doubles or halves between calls does not make the scan miss a bucket. While
 * rehashing, the small table's bucket and every bucket of the large one that it expands to. */
uint64_t dict_scan(struct dict *d, uint64_t v, void (*fn)(void *arg, struct entry *e), void *arg)
{
    if (dict_size(d) == 0)
        return 0;
    uint64_t m0, m1;
    int small = 0, large = 1;
    if (d->rehash < 0) {
        m0 = d->size[0] - 1;
        scan_bucket(d->t[0][v & m0], fn, arg);
        v |= ~m0;
    } else {
        if (d->size[0] > d->size[1]) {
            small = 1;
            large = 0;
        }
        m0 = d->size[small] - 1;
        m1 = d->size[large] - 1;
        scan_bucket(d->t[small][v & m0], fn, arg);
        do {
            scan_bucket(d->t[large][v & m1], fn, arg);
            v |= ~m1;
            v = rev(v);
            v++;
            v = rev(v);
        } while (v & (m0 ^ m1));
        return v;
    }
    v = rev(v);
    v++;
    v = rev(v);
    return v;
}
