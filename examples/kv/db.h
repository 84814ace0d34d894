/* One shard's keyspace: a hash table of keys with incremental rehashing (a resize moves a few
 * buckets per operation and per timer tick, so no command waits on it), typed values, and
 * expiry times. No libtpc here either: the tests drive it directly. */
#ifndef KV_DB_H
#define KV_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { T_STRING = 1, T_LIST, T_HASH, T_SET, T_ZSET };

/* A string value. */
struct str {
    uint32_t len;
    char d[];
};
struct str *str_new(const void *p, size_t n);

/* A list (list.c): its elements packed end to end in nodes of about a page, each framed by its
 * length before and after it, so that both ends are read and cut in O(1) and an element costs
 * its bytes and two more (up to 254 bytes), not an allocation of its own. */
struct lnode {
    struct lnode *prev, *next;
    uint32_t start, end; /* the elements lie in d[start, end) */
    uint32_t cap, count;
    unsigned char d[];
};
struct list {
    struct lnode *head, *tail;
    size_t n;     /* elements */
    size_t bytes; /* the nodes' memory */
};
/* A position in a list, for walking it forwards. */
struct list_it {
    struct lnode *node; /* NULL: past the end */
    uint32_t off;
};
void list_push(struct list *l, const void *d, size_t n, bool at_head);
/* The first (at_head) or last element, without taking it: false when the list is empty. Its
 * bytes stay valid until the list changes. */
bool list_end(const struct list *l, bool at_head, const char **d, size_t *n);
void list_pop(struct list *l, bool at_head); /* removes that element */
/* Places *it on element i (0-based; past the end: list_next says false at once). */
void list_seek(const struct list *l, size_t i, struct list_it *it);
/* The element at *it, moving it on: false past the end. */
bool list_next(struct list_it *it, const char **d, size_t *n);
void list_release(struct list *l); /* frees the elements, not l */

/* A table entry: the key, and its value by type. */
struct entry {
    struct entry *next;
    uint64_t hash;
    int64_t expire; /* monotonic ms; 0: none */
    void *val;      /* struct str / list / dict (hash: field -> str; set: member -> NULL) / zset */
    uint32_t klen;
    uint32_t epoch; /* the log rewrite that has written it out (aof.c); new entries: the table's */
    uint8_t type;
    char key[];
};

struct dict {
    struct entry **t[2];
    size_t size[2], used[2]; /* size: a power of two, or 0 */
    long rehash;             /* the next bucket of t[0] to move; -1: not rehashing */
    uint32_t epoch;          /* given to the entries added */
};

uint64_t kv_hash(const void *p, size_t n);

void dict_init(struct dict *d);
void dict_free(struct dict *d, bool values); /* values: free the entries' values too */
size_t dict_size(const struct dict *d);
struct entry *dict_find(struct dict *d, const void *key, size_t klen, uint64_t h);
/* Adds a new entry (the key must not be there) and returns it, its value NULL. */
struct entry *dict_add(struct dict *d, const void *key, size_t klen, uint64_t h);
/* Unlinks e (found with dict_find) and frees it and its value. */
void dict_delete(struct dict *d, struct entry *e);
void dict_rehash_step(struct dict *d, int buckets);
/* A random entry, or NULL when empty. */
struct entry *dict_random(struct dict *d);
/* SCAN over the table: calls fn for each entry of the buckets at cursor v, returns the next
 * cursor (0: done). An entry present for the whole scan is seen at least once. */
uint64_t dict_scan(struct dict *d, uint64_t v, void (*fn)(void *arg, struct entry *e), void *arg);

/* A sorted set (zset.c): a skip list of nodes ordered by (score, member), each link counting the
 * nodes it passes over, and a dict from member to node. Every operation is O(log n) but a walk. */
struct znode {
    double score;
    struct entry *e;    /* the member's entry in `members`: e->key, e->klen; e->val is the node */
    struct znode *back; /* the node before, NULL for the first */
    uint8_t levels;
    struct zlevel {
        struct znode *fwd;
        size_t span; /* nodes from this one to fwd (to the end past the last) */
    } lv[];
};
struct zset {
    struct dict members;
    struct znode *head; /* no member: its links lead into every level */
    struct znode *tail;
    size_t n;
    int level; /* levels in use */
};

struct zset *zset_new(void);
void zset_release(struct zset *z); /* frees what z holds, not z */
size_t zset_bytes(const struct zset *z);
struct znode *zset_find(struct zset *z, const char *m, size_t ml);
/* Adds member m (not in z yet) with its score. */
struct znode *zset_add(struct zset *z, double score, const char *m, size_t ml);
void zset_rescore(struct zset *z, struct znode *x, double score);
void zset_remove(struct zset *z, struct znode *x);
static inline struct znode *zset_first(const struct zset *z)
{
    return z->head->lv[0].fwd;
}
/* The node of 0-based rank `rank` in order, NULL past the end. */
struct znode *zset_at(const struct zset *z, size_t rank);
/* How many nodes from the first on satisfy pred (which must hold for a prefix of the order and
 * for nothing after it: a bound), in O(log n). */
size_t zset_count_while(const struct zset *z, bool (*pred)(const struct znode *, const void *),
                        const void *arg);

void value_free(uint8_t type, void *val);
size_t value_bytes(uint8_t type, const void *val); /* memory the value takes, roughly */

/* ms on a monotonic clock. */
int64_t kv_now_ms(void);

#endif
