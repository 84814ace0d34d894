/* Sorted sets (db.h): a skip list ordered by (score, member) whose links count the nodes they
 * pass over (spans), so that a rank is found in O(log n) as well as a score or a member bound,
 * and a dict from member to node for ZSCORE and ZADD's lookups. The member's bytes live once, in
 * its dict entry (the node points at it); the node is the entry's value, freed with it. */
#include <stdlib.h>
#include <string.h>
#include "db.h"

enum { ZSKIP_MAX = 32 }; /* with p = 1/4: 2^64 members before a level runs short */

static struct znode *node_new(int levels, double score)
{
    struct znode *x = calloc(1, sizeof(*x) + (size_t)levels * sizeof(x->lv[0]));
    if (!x)
        abort();
    x->score = score;
    x->levels = (uint8_t)levels;
    return x;
}

/* Each level above the first holds a quarter of the one below it. A shard's thread has its
 * own generator (xorshift64*): no lock, and no state shared between shards. */
static int random_level(void)
{
    static _Thread_local uint64_t s = 0x9e3779b97f4a7c15ull;
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    uint64_t r = s * 0x2545f4914f6cdd1dull;
    int level = 1;
    while (level < ZSKIP_MAX && (r & 3) == 0)
        r >>= 2, level++;
    return level;
}

struct zset *zset_new(void)
{
    struct zset *z = calloc(1, sizeof(*z));
    if (!z)
        abort();
    dict_init(&z->members);
    z->head = node_new(ZSKIP_MAX, 0);
    z->level = 1;
    return z;
}

void zset_release(struct zset *z)
{
    free(z->head);
    dict_free(&z->members, true); /* each entry's value is its node (type 0: freed plainly) */
}

size_t zset_bytes(const struct zset *z)
{
    /* a node of 1.33 levels on average, a dict entry with the member, a bucket */
    return sizeof(*z) + sizeof(struct znode) + ZSKIP_MAX * sizeof(z->head->lv[0]) +
           z->n * (sizeof(struct znode) + 22 + sizeof(struct entry) + 16 + sizeof(void *));
}

/* Whether node x comes before (score, m). */
static bool before(const struct znode *x, double score, const char *m, size_t ml)
{
    if (x->score != score)
        return x->score < score;
    size_t xl = x->e->klen;
    int c = memcmp(x->e->key, m, xl < ml ? xl : ml);
    return c ? c < 0 : xl < ml;
}

static void insert(struct zset *z, struct znode *x)
{
    struct znode *update[ZSKIP_MAX], *p = z->head;
    size_t rank[ZSKIP_MAX];
    for (int i = z->level - 1; i >= 0; i--) {
        rank[i] = i == z->level - 1 ? 0 : rank[i + 1];
        while (p->lv[i].fwd && before(p->lv[i].fwd, x->score, x->e->key, x->e->klen)) {
            rank[i] += p->lv[i].span;
            p = p->lv[i].fwd;
        }
        update[i] = p;
    }
    for (; z->level < x->levels; z->level++) {
        rank[z->level] = 0;
        update[z->level] = z->head;
        z->head->lv[z->level].span = z->n;
    }
    for (int i = 0; i < x->levels; i++) {
        x->lv[i].fwd = update[i]->lv[i].fwd;
        update[i]->lv[i].fwd = x;
        x->lv[i].span = update[i]->lv[i].span - (rank[0] - rank[i]);
        update[i]->lv[i].span = rank[0] - rank[i] + 1;
    }
    for (int i = x->levels; i < z->level; i++)
        update[i]->lv[i].span++;
    x->back = update[0] == z->head ? NULL : update[0];
    if (x->lv[0].fwd)
        x->lv[0].fwd->back = x;
    else
        z->tail = x;
    z->n++;
}

static void take_out(struct zset *z, struct znode *x)
{
    struct znode *update[ZSKIP_MAX], *p = z->head;
    for (int i = z->level - 1; i >= 0; i--) {
        while (p->lv[i].fwd && before(p->lv[i].fwd, x->score, x->e->key, x->e->klen))
            p = p->lv[i].fwd;
        update[i] = p;
    }
    for (int i = 0; i < z->level; i++) {
        if (update[i]->lv[i].fwd == x) {
            update[i]->lv[i].span += x->lv[i].span - 1;
            update[i]->lv[i].fwd = x->lv[i].fwd;
        } else {
            update[i]->lv[i].span--;
        }
    }
    if (x->lv[0].fwd)
        x->lv[0].fwd->back = x->back;
    else
        z->tail = x->back;
    while (z->level > 1 && !z->head->lv[z->level - 1].fwd)
        z->level--;
    z->n--;
}

struct znode *zset_find(struct zset *z, const char *m, size_t ml)
{
    struct entry *e = dict_find(&z->members, m, ml, kv_hash(m, ml));
    return e ? e->val : NULL;
}

struct znode *zset_add(struct zset *z, double score, const char *m, size_t ml)
{
    struct znode *x = node_new(random_level(), score);
    x->e = dict_add(&z->members, m, ml, kv_hash(m, ml));
    x->e->val = x;
    insert(z, x);
    return x;
}

void zset_rescore(struct zset *z, struct znode *x, double score)
{
    struct znode *next = x->lv[0].fwd;
    if ((!x->back || before(x->back, score, x->e->key, x->e->klen)) &&
        (!next || !before(next, score, x->e->key, x->e->klen))) {
        x->score = score; /* its place stays: no relinking */
        return;
    }
    take_out(z, x);
    x->score = score;
    insert(z, x);
}

void zset_remove(struct zset *z, struct znode *x)
{
    take_out(z, x);
    dict_delete(&z->members, x->e); /* frees the entry and x */
}

struct znode *zset_at(const struct zset *z, size_t rank)
{
    const struct znode *p = z->head;
    size_t passed = 0;
    for (int i = z->level - 1; i >= 0; i--) {
        while (p->lv[i].fwd && passed + p->lv[i].span <= rank + 1) {
            passed += p->lv[i].span;
            p = p->lv[i].fwd;
        }
        if (passed == rank + 1)
            return (struct znode *)p;
    }
    return NULL;
}

size_t zset_count_while(const struct zset *z, bool (*pred)(const struct znode *, const void *),
                        const void *arg)
{
    const struct znode *p = z->head;
    size_t passed = 0;
    for (int i = z->level - 1; i >= 0; i--)
        while (p->lv[i].fwd && pred(p->lv[i].fwd, arg)) {
            passed += p->lv[i].span;
            p = p->lv[i].fwd;
        }
    return passed;
}
