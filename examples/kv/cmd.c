/* The commands that work on keys (cmd.h). Replies and errors are worded as Redis's. */
#include "cmd.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define E_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define E_NOTINT    "ERR value is not an integer or out of range"
#define E_SYNTAX    "ERR syntax error"
#define E_OVERFLOW  "ERR increment or decrement would overflow"
#define E_NOTFLOAT  "ERR value is not a valid float"

typedef const char *const *argv_t;
#define ARGS struct kv_db *db, size_t argc, const char **argv, const size_t *argl, struct sbuf *out

static int is(const char *a, size_t al, const char *word)
{
    return strlen(word) == al && strncasecmp(a, word, al) == 0;
}

uint64_t key_slot_hash(const char *key, size_t klen)
{
    const char *open = memchr(key, '{', klen);
    if (open) {
        const char *close = memchr(open + 1, '}', klen - (size_t)(open + 1 - key));
        if (close && close > open + 1)
            return kv_hash(open + 1, (size_t)(close - open - 1));
    }
    return kv_hash(key, klen);
}

void db_set_expire(struct kv_db *db, struct entry *e, int64_t at)
{
    db->expires += (at != 0) - (e->expire != 0);
    e->expire = at;
}

void db_del(struct kv_db *db, struct entry *e)
{
    db->expires -= e->expire != 0;
    dict_delete(&db->keys, e);
}

void db_flush(struct kv_db *db)
{
    dict_free(&db->keys, true);
    db->expires = 0;
    db->avg_ttl = 0; /* (as Redis: the next walk starts it afresh) */
}

struct entry *db_lookup(struct kv_db *db, const char *key, size_t klen)
{
    struct entry *e = dict_find(&db->keys, key, klen, kv_hash(key, klen));
    if (e && e->expire && e->expire <= db->now && !db->loading) {
        if (db->expiring)
            db->expiring(db->expiring_arg, e);
        db_del(db, e);
        db->expired++;
        return NULL;
    }
    return e;
}

struct expire_walk {
    struct kv_db *db;
    size_t n;
    int64_t ttl_sum; /* what the keys with a time that stay have left */
    size_t ttl_n;
};
static void expire_one(void *arg, struct entry *e)
{
    struct expire_walk *w = arg;
    if (!e->expire)
        return;
    if (e->expire <= w->db->now) {
        if (w->db->expiring && !w->db->loading)
            w->db->expiring(w->db->expiring_arg, e);
        db_del(w->db, e);
        w->db->expired++;
        w->n++;
    } else {
        w->ttl_sum += e->expire - w->db->now;
        w->ttl_n++;
    }
}

/* Every key whose time has passed goes (after a log's replay). */
size_t db_expire_all(struct kv_db *db)
{
    struct expire_walk w = {db, 0};
    uint64_t cursor = 0;
    do
        cursor = dict_scan(&db->keys, cursor, expire_one, &w);
    while (cursor);
    return w.n;
}

size_t db_expire_some(struct kv_db *db, uint64_t *cursor, int buckets)
{
    struct expire_walk w = {db, 0, 0, 0};
    for (int i = 0; i < buckets; i++) {
        *cursor = dict_scan(&db->keys, *cursor, expire_one, &w);
        if (*cursor == 0)
            break;
    }
    if (!db->expires) {
        db->avg_ttl = 0;
    } else if (w.ttl_n) { /* each walk moves it a fiftieth of the way, a first one all of it */
        int64_t avg = w.ttl_sum / (int64_t)w.ttl_n;
        db->avg_ttl = db->avg_ttl ? db->avg_ttl / 50 * 49 + avg / 50 : avg;
    }
    return w.n;
}

/* A new entry for key of type t (the key must be absent). */
static struct entry *db_add(struct kv_db *db, const char *key, size_t klen, uint8_t t, void *val)
{
    struct entry *e = dict_add(&db->keys, key, klen, kv_hash(key, klen));
    e->type = t;
    e->val = val;
    return e;
}

/* The key's entry of type t, or NULL if absent; -1 in *bad (and the error written) if it has
 * another type. */
static struct entry *typed(ARGS, size_t i, uint8_t t, int *bad)
{
    (void)argc;
    struct entry *e = db_lookup(db, argv[i], argl[i]);
    *bad = 0;
    if (e && e->type != t) {
        sb_error(out, E_WRONGTYPE);
        *bad = 1;
        return NULL;
    }
    return e;
}

/* ---- Strings ---- */

static void c_get(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_STRING, &bad);
    if (bad)
        return;
    if (!e)
        sb_nil(out);
    else
        sb_bulk(out, ((struct str *)e->val)->d, ((struct str *)e->val)->len);
}

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses SET's options; returns 0, or -1 with the error written. *expire: 0 none, -1 keep. As
 * Redis: an option may come again (a time of the same kind: the last one counts), the time is
 * checked once every option is known. */
static int set_options(ARGS, int *nx, int *xx, int *get, int64_t *expire)
{
    (void)db;
    *nx = *xx = *get = 0;
    *expire = 0;
    int kind = 0; /* 1 EX, 2 PX, 3 EXAT, 4 PXAT, 5 KEEPTTL */
    size_t at = 0;
    for (size_t i = 3; i < argc; i++) {
        const char *a = argv[i];
        size_t l = argl[i];
        int unit = is(a, l, "EX")     ? 1
                   : is(a, l, "PX")   ? 2
                   : is(a, l, "EXAT") ? 3
                   : is(a, l, "PXAT") ? 4
                                      : 0;
        if (is(a, l, "NX") && !*xx) {
            *nx = 1;
        } else if (is(a, l, "XX") && !*nx) {
            *xx = 1;
        } else if (is(a, l, "GET")) {
            *get = 1;
        } else if (is(a, l, "KEEPTTL") && (!kind || kind == 5)) {
            kind = 5;
        } else if (unit && (!kind || kind == unit) && i + 1 < argc) {
            kind = unit;
            at = ++i;
        } else {
            sb_error(out, E_SYNTAX);
            return -1;
        }
    }
    if (kind == 5)
        *expire = -1;
    if (!kind || kind == 5)
        return 0;
    long long v;
    if (resp_ll(argv[at], argl[at], &v) < 0) {
        sb_error(out, E_NOTINT);
        return -1;
    }
    if (v <= 0 || (kind % 2 == 1 && v > INT64_MAX / 1000)) {
        sb_errorf(out, "ERR invalid expire time in '%s' command", "set");
        return -1;
    }
    int64_t ms = kind % 2 == 1 ? v * 1000 : v, wall = wall_ms();
    if (kind < 3 && ms > INT64_MAX - wall) { /* (the log writes it as a wall time) */
        sb_errorf(out, "ERR invalid expire time in '%s' command", "set");
        return -1;
    }
    if (kind >= 3)
        ms = ms > wall ? ms - wall : 0;                            /* absolute: the time left */
    *expire = ms > INT64_MAX - db->now ? INT64_MAX : db->now + ms; /* 0 left: it goes at once */
    return 0;
}

static void c_set(ARGS)
{
    int nx, xx, get;
    int64_t expire;
    if (set_options(db, argc, argv, argl, out, &nx, &xx, &get, &expire) < 0)
        return;
    struct entry *e = db_lookup(db, argv[1], argl[1]);
    if (get) {
        if (e && e->type != T_STRING) {
            sb_error(out, E_WRONGTYPE);
            return;
        }
        if (e)
            sb_bulk(out, ((struct str *)e->val)->d, ((struct str *)e->val)->len);
        else
            sb_nil(out);
    }
    if ((nx && e) || (xx && !e)) {
        if (!get)
            sb_nil(out);
        return;
    }
    struct str *old = e && e->type == T_STRING ? e->val : NULL;
    if (old && argl[2] <= old->len && old->len - argl[2] <= 8) {
        /* A string overwritten by one of about its size (a counter, a fixed-size record):
         * in place, without a free and a malloc (a tenth of a SET's CPU in user space). */
        memcpy(old->d, argv[2], argl[2]);
        old->d[argl[2]] = 0;
        old->len = (uint32_t)argl[2];
        if (expire != -1)
            db_set_expire(db, e, expire);
    } else if (e) {
        value_free(e->type, e->val);
        e->type = T_STRING;
        e->val = str_new(argv[2], argl[2]);
        if (expire != -1)
            db_set_expire(db, e, expire);
    } else {
        struct str *v = str_new(argv[2], argl[2]);
        e = db_add(db, argv[1], argl[1], T_STRING, v);
        db_set_expire(db, e, expire > 0 ? expire : 0);
    }
    if (e->expire && e->expire <= db->now && !db->loading) {
        db_del(db, e);
        db->expired++;
    }
    if (!get)
        sb_simple(out, "OK");
}

static void c_setnx(ARGS)
{
    (void)argc;
    if (db_lookup(db, argv[1], argl[1])) {
        sb_int(out, 0);
        return;
    }
    db_add(db, argv[1], argl[1], T_STRING, str_new(argv[2], argl[2]));
    sb_int(out, 1);
}

/* Redis's arity error, naming the command as called (lower case: HMSET's is 'hmset'). */
static void arity_error(struct sbuf *out, const char *name, size_t len)
{
    char n[32];
    size_t k = len < sizeof(n) - 1 ? len : sizeof(n) - 1;
    for (size_t i = 0; i < k; i++)
        n[i] = (char)tolower((unsigned char)name[i]);
    n[k] = 0;
    sb_errorf(out, "ERR wrong number of arguments for '%s' command", n);
}

/* MSET on one shard: the pairs in order (a later pair of the same key wins). */
static void c_mset(ARGS)
{
    if (argc % 2 == 0) {
        arity_error(out, argv[0], argl[0]);
        return;
    }
    for (size_t i = 1; i + 1 < argc; i += 2) {
        struct entry *e = db_lookup(db, argv[i], argl[i]);
        struct str *v = str_new(argv[i + 1], argl[i + 1]);
        if (e) {
            value_free(e->type, e->val);
            e->type = T_STRING;
            e->val = v;
            db_set_expire(db, e, 0);
        } else {
            db_add(db, argv[i], argl[i], T_STRING, v);
        }
    }
    sb_simple(out, "OK");
}

static void c_mget(ARGS)
{
    (void)argl;
    sb_array(out, (long long)argc - 1);
    for (size_t i = 1; i < argc; i++) {
        struct entry *e = db_lookup(db, argv[i], argl[i]);
        if (e && e->type == T_STRING)
            sb_bulk(out, ((struct str *)e->val)->d, ((struct str *)e->val)->len);
        else
            sb_nil(out);
    }
}

static void incr_by(ARGS, long long by)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_STRING, &bad);
    if (bad)
        return;
    long long v = 0;
    if (e && resp_ll(((struct str *)e->val)->d, ((struct str *)e->val)->len, &v) < 0) {
        sb_error(out, E_NOTINT);
        return;
    }
    if ((by > 0 && v > LLONG_MAX - by) || (by < 0 && v < LLONG_MIN - by)) {
        sb_error(out, E_OVERFLOW);
        return;
    }
    v += by;
    char num[24];
    size_t n = resp_fmt_ll(num, v);
    struct str *old = e ? e->val : NULL;
    if (old && n <= old->len) { /* fits where the old number was */
        memcpy(old->d, num, n);
        old->d[n] = 0;
        old->len = (uint32_t)n;
    } else if (old) {
        e->val = str_new(num, n);
        free(old);
    } else {
        db_add(db, argv[1], argl[1], T_STRING, str_new(num, n));
    }
    sb_int_text(out, num, n);
}

static void c_incr(ARGS)
{
    incr_by(db, argc, argv, argl, out, 1);
}
static void c_decr(ARGS)
{
    incr_by(db, argc, argv, argl, out, -1);
}
static void c_incrby(ARGS)
{
    long long by;
    if (resp_ll(argv[2], argl[2], &by) < 0) {
        sb_error(out, E_NOTINT);
        return;
    }
    incr_by(db, argc, argv, argl, out, by);
}
static void c_decrby(ARGS)
{
    long long by;
    if (resp_ll(argv[2], argl[2], &by) < 0) {
        sb_error(out, E_NOTINT);
        return;
    }
    if (by == LLONG_MIN) {
        sb_error(out, "ERR decrement would overflow");
        return;
    }
    incr_by(db, argc, argv, argl, out, -by);
}

static void c_append(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_STRING, &bad);
    if (bad)
        return;
    if (!e) {
        db_add(db, argv[1], argl[1], T_STRING, str_new(argv[2], argl[2]));
        sb_int(out, (long long)argl[2]);
        return;
    }
    struct str *s = e->val;
    if ((uint64_t)s->len + argl[2] > UINT32_MAX) {
        sb_error(out, "ERR string exceeds maximum allowed size");
        return;
    }
    struct str *n = realloc(s, sizeof(*s) + s->len + argl[2] + 1);
    if (!n)
        abort();
    memcpy(n->d + n->len, argv[2], argl[2]);
    n->len += (uint32_t)argl[2];
    n->d[n->len] = 0;
    e->val = n;
    sb_int(out, n->len);
}

static void c_strlen(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_STRING, &bad);
    if (!bad)
        sb_int(out, e ? ((struct str *)e->val)->len : 0);
}

/* ---- Keys ---- */

static void c_del(ARGS)
{
    long long n = 0;
    for (size_t i = 1; i < argc; i++) {
        struct entry *e = db_lookup(db, argv[i], argl[i]);
        if (e) {
            db_del(db, e);
            n++;
        }
    }
    sb_int(out, n);
}

static void c_exists(ARGS)
{
    long long n = 0;
    for (size_t i = 1; i < argc; i++)
        n += db_lookup(db, argv[i], argl[i]) != NULL;
    sb_int(out, n);
}

static void c_type(ARGS)
{
    (void)argc;
    static const char *names[] = {"none", "string", "list", "hash", "set", "zset"};
    struct entry *e = db_lookup(db, argv[1], argl[1]);
    sb_simple(out, names[e ? e->type : 0]);
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT as Redis 7: the options first, then the time (in unit_ms;
 * absolute: a Unix time), then the key. A time that passed deletes the key. */
static void expire_generic(ARGS, int64_t unit_ms, bool absolute)
{
    int nx = 0, xx = 0, gt = 0, lt = 0;
    for (size_t i = 3; i < argc; i++) {
        if (is(argv[i], argl[i], "NX"))
            nx = 1;
        else if (is(argv[i], argl[i], "XX"))
            xx = 1;
        else if (is(argv[i], argl[i], "GT"))
            gt = 1;
        else if (is(argv[i], argl[i], "LT"))
            lt = 1;
        else {
            sb_errorf(out, "ERR Unsupported option %.*s", (int)argl[i], argv[i]);
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        sb_error(out, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if (gt && lt) {
        sb_error(out, "ERR GT and LT options at the same time are not compatible");
        return;
    }
    long long v;
    if (resp_ll(argv[2], argl[2], &v) < 0) {
        sb_error(out, E_NOTINT);
        return;
    }
    int64_t wall = wall_ms();
    if (v > INT64_MAX / unit_ms || v < INT64_MIN / unit_ms ||
        (!absolute && v * unit_ms > INT64_MAX - wall)) {
        sb_errorf(out, "ERR invalid expire time in '%s%s%s' command", unit_ms == 1 ? "p" : "",
                  "expire", absolute ? "at" : "");
        return;
    }
    struct entry *e = db_lookup(db, argv[1], argl[1]);
    if (!e) {
        sb_int(out, 0);
        return;
    }
    int64_t ms = v * unit_ms; /* from now, or a Unix time */
    int64_t left = !absolute ? ms : ms > wall ? ms - wall : 0;
    bool passed = absolute ? ms <= wall : ms <= 0;
    int64_t at = passed ? db->now : left > INT64_MAX - db->now ? INT64_MAX : db->now + left;
    int64_t cur = e->expire ? e->expire : INT64_MAX; /* no expiry: infinite for GT / LT */
    if ((nx && e->expire) || (xx && !e->expire) || (gt && at <= cur) || (lt && at >= cur)) {
        sb_int(out, 0);
        return;
    }
    if (passed && !db->loading)
        db_del(db, e);
    else
        db_set_expire(db, e, at > 0 ? at : 1); /* (0: no expiry) */
    sb_int(out, 1);
}

static void c_expireat(ARGS)
{
    expire_generic(db, argc, argv, argl, out, 1000, true);
}
static void c_pexpireat(ARGS)
{
    expire_generic(db, argc, argv, argl, out, 1, true);
}

static void c_expire(ARGS)
{
    expire_generic(db, argc, argv, argl, out, 1000, false);
}
static void c_pexpire(ARGS)
{
    expire_generic(db, argc, argv, argl, out, 1, false);
}

static void ttl_generic(ARGS, int64_t unit)
{
    (void)argc;
    struct entry *e = db_lookup(db, argv[1], argl[1]);
    if (!e)
        sb_int(out, -2);
    else if (!e->expire)
        sb_int(out, -1);
    else
        sb_int(out, (e->expire - db->now + unit / 2) / unit);
}
static void c_ttl(ARGS)
{
    ttl_generic(db, argc, argv, argl, out, 1000);
}
static void c_pttl(ARGS)
{
    ttl_generic(db, argc, argv, argl, out, 1);
}

static void c_persist(ARGS)
{
    (void)argc;
    struct entry *e = db_lookup(db, argv[1], argl[1]);
    if (!e || !e->expire) {
        sb_int(out, 0);
        return;
    }
    db_set_expire(db, e, 0);
    sb_int(out, 1);
}

/* ---- Lists ---- */

static void push(ARGS, int left)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_LIST, &bad);
    if (bad)
        return;
    if (!e)
        e = db_add(db, argv[1], argl[1], T_LIST, calloc(1, sizeof(struct list)));
    struct list *l = e->val;
    for (size_t i = 2; i < argc; i++)
        list_push(l, argv[i], argl[i], left);
    sb_int(out, (long long)l->n);
}

static void c_lpush(ARGS)
{
    push(db, argc, argv, argl, out, 1);
}
static void c_rpush(ARGS)
{
    push(db, argc, argv, argl, out, 0);
}

/* The optional count of LPOP, RPOP, SPOP, ZPOPMIN: 0 with none; -1 (error written) if bad. */
static long long pop_count(ARGS, int *given)
{
    (void)db;
    *given = argc > 2;
    if (argc > 3) {
        sb_error(out, E_SYNTAX);
        return -1;
    }
    long long n = 1;
    if (argc == 3 && (resp_ll(argv[2], argl[2], &n) < 0 || n < 0)) {
        sb_error(out, "ERR value is out of range, must be positive");
        return -1;
    }
    return n;
}

static void pop(ARGS, int left)
{
    if (argc > 3) { /* (SPOP and ZPOPMIN say syntax error, as Redis) */
        arity_error(out, argv[0], argl[0]);
        return;
    }
    int given;
    long long n = pop_count(db, argc, argv, argl, out, &given);
    if (n < 0)
        return;
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_LIST, &bad);
    if (bad)
        return;
    if (!e) {
        if (given)
            sb_array(out, -1);
        else
            sb_nil(out);
        return;
    }
    struct list *l = e->val;
    if ((size_t)n > l->n)
        n = (long long)l->n;
    if (given)
        sb_array(out, n);
    for (long long k = 0; k < n; k++) {
        const char *d;
        size_t len;
        list_end(l, left, &d, &len);
        sb_bulk(out, d, len);
        list_pop(l, left);
    }
    if (l->n == 0)
        db_del(db, e);
}

static void c_lpop(ARGS)
{
    pop(db, argc, argv, argl, out, 1);
}
static void c_rpop(ARGS)
{
    pop(db, argc, argv, argl, out, 0);
}

/* Redis's range arithmetic: negative from the end, clamped; false when empty. */
static int range(long long start, long long stop, size_t n, size_t *from, size_t *to)
{
    long long len = (long long)n;
    if (start < 0)
        start += len;
    if (stop < 0)
        stop += len;
    if (start < 0)
        start = 0;
    if (start > stop || start >= len)
        return 0;
    if (stop >= len)
        stop = len - 1;
    *from = (size_t)start;
    *to = (size_t)stop;
    return 1;
}

static void c_lrange(ARGS)
{
    long long a, b;
    if (resp_ll(argv[2], argl[2], &a) < 0 || resp_ll(argv[3], argl[3], &b) < 0) {
        sb_error(out, E_NOTINT);
        return;
    }
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_LIST, &bad);
    if (bad)
        return;
    size_t from, to;
    if (!e || !range(a, b, ((struct list *)e->val)->n, &from, &to)) {
        sb_array(out, 0);
        return;
    }
    sb_array(out, (long long)(to - from + 1));
    struct list_it it;
    list_seek(e->val, from, &it);
    const char *d;
    size_t len;
    for (size_t i = from; i <= to && list_next(&it, &d, &len); i++)
        sb_bulk(out, d, len);
}

static void c_llen(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_LIST, &bad);
    if (!bad)
        sb_int(out, e ? (long long)((struct list *)e->val)->n : 0);
}

/* ---- Hashes and sets: a dict per key ---- */

static struct dict *new_dict(void)
{
    struct dict *d = malloc(sizeof(*d));
    if (!d)
        abort();
    dict_init(d);
    return d;
}

static struct entry *member(struct dict *d, const char *m, size_t n)
{
    return dict_find(d, m, n, kv_hash(m, n));
}

static void c_hset(ARGS)
{
    if (argc % 2 != 0) {
        arity_error(out, argv[0], argl[0]);
        return;
    }
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_HASH, &bad);
    if (bad)
        return;
    if (!e)
        e = db_add(db, argv[1], argl[1], T_HASH, new_dict());
    long long added = 0;
    for (size_t i = 2; i + 1 < argc; i += 2) {
        struct entry *f = member(e->val, argv[i], argl[i]);
        if (!f) {
            f = dict_add(e->val, argv[i], argl[i], kv_hash(argv[i], argl[i]));
            f->type = T_STRING;
            added++;
        } else {
            free(f->val);
        }
        f->val = str_new(argv[i + 1], argl[i + 1]);
    }
    if (is(argv[0], argl[0], "HMSET"))
        sb_simple(out, "OK");
    else
        sb_int(out, added);
}

static void c_hget(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_HASH, &bad);
    if (bad)
        return;
    struct entry *f = e ? member(e->val, argv[2], argl[2]) : NULL;
    if (f)
        sb_bulk(out, ((struct str *)f->val)->d, ((struct str *)f->val)->len);
    else
        sb_nil(out);
}

/* HDEL and SREM: removes members; deletes the key once empty. */
static void remove_members(ARGS, uint8_t t)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, t, &bad);
    if (bad)
        return;
    long long n = 0;
    for (size_t i = 2; e && i < argc; i++) {
        struct entry *f = member(e->val, argv[i], argl[i]);
        if (f) {
            dict_delete(e->val, f);
            n++;
        }
    }
    if (e && dict_size(e->val) == 0)
        db_del(db, e);
    sb_int(out, n);
}

static void c_hdel(ARGS)
{
    remove_members(db, argc, argv, argl, out, T_HASH);
}
static void c_srem(ARGS)
{
    remove_members(db, argc, argv, argl, out, T_SET);
}

struct emit {
    struct sbuf *out;
    int values;
};
static void emit_member(void *arg, struct entry *f)
{
    struct emit *m = arg;
    sb_bulk(m->out, f->key, f->klen);
    if (m->values)
        sb_bulk(m->out, ((struct str *)f->val)->d, ((struct str *)f->val)->len);
}

static void emit_all(struct dict *d, struct sbuf *out, int values)
{
    struct emit m = {out, values};
    uint64_t c = 0;
    do
        c = dict_scan(d, c, emit_member, &m);
    while (c);
}

static void c_hgetall(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_HASH, &bad);
    if (bad)
        return;
    if (!e) {
        sb_array(out, 0);
        return;
    }
    sb_array(out, 2 * (long long)dict_size(e->val));
    emit_all(e->val, out, 1);
}

static void c_hlen(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_HASH, &bad);
    if (!bad)
        sb_int(out, e ? (long long)dict_size(e->val) : 0);
}

static void c_hexists(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_HASH, &bad);
    if (!bad)
        sb_int(out, e && member(e->val, argv[2], argl[2]) ? 1 : 0);
}

static void c_sadd(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_SET, &bad);
    if (bad)
        return;
    if (!e)
        e = db_add(db, argv[1], argl[1], T_SET, new_dict());
    long long added = 0;
    for (size_t i = 2; i < argc; i++)
        if (!member(e->val, argv[i], argl[i])) {
            dict_add(e->val, argv[i], argl[i], kv_hash(argv[i], argl[i]));
            added++;
        }
    sb_int(out, added);
}

static void c_smembers(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_SET, &bad);
    if (bad)
        return;
    if (!e) {
        sb_array(out, 0);
        return;
    }
    sb_array(out, (long long)dict_size(e->val));
    emit_all(e->val, out, 0);
}

static void c_sismember(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_SET, &bad);
    if (!bad)
        sb_int(out, e && member(e->val, argv[2], argl[2]) ? 1 : 0);
}

static void c_scard(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_SET, &bad);
    if (!bad)
        sb_int(out, e ? (long long)dict_size(e->val) : 0);
}

static void c_spop(ARGS)
{
    int given;
    long long n = pop_count(db, argc, argv, argl, out, &given);
    if (n < 0)
        return;
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_SET, &bad);
    if (bad)
        return;
    if (!e) {
        if (given)
            sb_array(out, 0);
        else
            sb_nil(out);
        return;
    }
    struct dict *d = e->val;
    if ((size_t)n > dict_size(d))
        n = (long long)dict_size(d);
    if (given)
        sb_array(out, n);
    for (long long k = 0; k < n; k++) {
        struct entry *m = dict_random(d);
        sb_bulk(out, m->key, m->klen);
        dict_delete(d, m);
    }
    if (dict_size(d) == 0)
        db_del(db, e);
}

/* ---- Sorted sets ---- */

/* strtod over n bytes (copied: arguments are not NUL-terminated); *end_ok whether it took
 * them all. */
static double to_double(const char *p, size_t n, bool *end_ok)
{
    char tmp[128], *buf = n < sizeof(tmp) ? tmp : malloc(n + 1);
    if (!buf) {
        *end_ok = false;
        return 0;
    }
    memcpy(buf, p, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    *end_ok = end == buf + n;
    if (buf != tmp)
        free(buf);
    return v;
}

/* A score as Redis reads one (string2d): the whole text a number, not NaN, no overflow to an
 * infinity and no underflow to zero (a subnormal will do). */
static int parse_double(const char *p, size_t n, double *out)
{
    if (n == 0 || isspace((unsigned char)p[0]))
        return -1;
    bool all;
    double v = to_double(p, n, &all);
    if (!all || isnan(v) || (errno == ERANGE && (isinf(v) || v == 0)))
        return -1;
    *out = v + 0.0; /* (-0 is 0, as Redis answers it) */
    return 0;
}

static void sb_double(struct sbuf *out, double d);

/* ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ..., as Redis 7: GT / LT update an existing
 * member only to a greater / lesser score (new members are added all the same); INCR adds to
 * the score of its one member and answers the new score (nil when a condition held it back). */
static void c_zadd(ARGS)
{
    size_t i = 2;
    int nx = 0, xx = 0, ch = 0, gt = 0, lt = 0, incr = 0;
    for (; i < argc; i++) {
        if (is(argv[i], argl[i], "NX"))
            nx = 1;
        else if (is(argv[i], argl[i], "XX"))
            xx = 1;
        else if (is(argv[i], argl[i], "CH"))
            ch = 1;
        else if (is(argv[i], argl[i], "GT"))
            gt = 1;
        else if (is(argv[i], argl[i], "LT"))
            lt = 1;
        else if (is(argv[i], argl[i], "INCR"))
            incr = 1;
        else
            break;
    }
    if (i == argc || (argc - i) % 2 != 0) {
        sb_error(out, E_SYNTAX);
        return;
    }
    if (nx && xx) {
        sb_error(out, "ERR XX and NX options at the same time are not compatible");
        return;
    }
    if ((gt && nx) || (lt && nx) || (gt && lt)) {
        sb_error(out, "ERR GT, LT, and/or NX options at the same time are not compatible");
        return;
    }
    if (incr && argc - i > 2) {
        sb_error(out, "ERR INCR option supports a single increment-element pair");
        return;
    }
    for (size_t k = i; k < argc; k += 2) {
        double d;
        if (parse_double(argv[k], argl[k], &d) < 0) {
            sb_error(out, E_NOTFLOAT);
            return;
        }
    }
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_ZSET, &bad);
    if (bad)
        return;
    if (!e && xx) {
        if (incr)
            sb_nil(out);
        else
            sb_int(out, 0);
        return;
    }
    if (!e)
        e = db_add(db, argv[1], argl[1], T_ZSET, zset_new());
    struct zset *z = e->val;
    long long added = 0, changed = 0;
    double last = 0;
    bool done = false; /* INCR: the member's score was set */
    for (size_t k = i; k < argc; k += 2) {
        double d;
        parse_double(argv[k], argl[k], &d);
        struct znode *x = zset_find(z, argv[k + 1], argl[k + 1]);
        if (x) {
            double cur = x->score;
            if (incr) {
                d += cur;
                if (isnan(d)) {
                    sb_error(out, "ERR resulting score is not a number (NaN)");
                    return;
                }
            }
            if (nx || (gt && d <= cur) || (lt && d >= cur))
                continue;
            done = true;
            last = d;
            if (d == cur)
                continue;
            zset_rescore(z, x, d);
            changed++;
        } else if (!xx) {
            zset_add(z, d, argv[k + 1], argl[k + 1]);
            added++;
            done = true;
            last = d;
        }
    }
    if (z->n == 0)
        db_del(db, e);
    if (!incr)
        sb_int(out, ch ? added + changed : added);
    else if (done)
        sb_double(out, last);
    else
        sb_nil(out);
}

static void sb_double(struct sbuf *out, double d)
{
    char num[64];
    int n = snprintf(num, sizeof(num), "%.17g", d);
    if (isinf(d))
        n = snprintf(num, sizeof(num), "%s", d > 0 ? "inf" : "-inf");
    sb_bulk(out, num, (size_t)n);
}

static void c_zpopmin(ARGS)
{
    int given;
    long long n = pop_count(db, argc, argv, argl, out, &given);
    if (n < 0)
        return;
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_ZSET, &bad);
    if (bad)
        return;
    struct zset *z = e ? e->val : NULL;
    if (z && (size_t)n > z->n)
        n = (long long)z->n;
    if (!z)
        n = 0;
    sb_array(out, 2 * n);
    for (long long k = 0; k < n; k++) {
        struct znode *x = zset_first(z);
        sb_bulk(out, x->e->key, x->e->klen);
        sb_double(out, x->score);
        zset_remove(z, x);
    }
    if (z && z->n == 0)
        db_del(db, e);
}

/* A score bound of ZRANGE ... BYSCORE: a float, "(" before it for an open bound. */
/* A score bound as Redis reads one: strtod's, whatever it overflows to ("(" alone is "(0"). */
static int score_bound(const char *p, size_t n, double *v, bool *open)
{
    *open = n > 0 && p[0] == '(';
    bool all;
    *v = to_double(p + *open, n - *open, &all);
    return all && !isnan(*v) ? 0 : -1;
}

/* A member bound of ZRANGE ... BYLEX: "-", "+", or "[" / "(" (closed / open) before the member.
 * Returns -1 for anything else. kind: -1 below every member, 1 above every one, 0 the member. */
static int lex_bound(const char *p, size_t n, int *kind, bool *open)
{
    *kind = 0;
    *open = false;
    if (n == 1 && (p[0] == '-' || p[0] == '+')) {
        *kind = p[0] == '-' ? -1 : 1;
        return 0;
    }
    if (n == 0 || (p[0] != '[' && p[0] != '('))
        return -1;
    *open = p[0] == '(';
    return 0;
}

/* A bound of a ZRANGE BYSCORE (v, open) or BYLEX (kind, open, the bound's bytes p, n). */
struct zbound {
    double v;
    int kind;
    bool open;
    const char *p;
    size_t n;
};

/* Whether a node is short of a lower bound / within an upper bound: each holds for a prefix of
 * the set's order, which zset_count_while counts. BYLEX compares members in memcmp order, a
 * prefix first. */
static bool below_min(const struct znode *x, const void *arg)
{
    const struct zbound *b = arg;
    return x->score < b->v || (b->open && x->score == b->v);
}
static bool within_max(const struct znode *x, const void *arg)
{
    const struct zbound *b = arg;
    return x->score < b->v || (!b->open && x->score == b->v);
}
static int lex_cmp(const struct znode *x, const struct zbound *b)
{
    size_t xl = x->e->klen, n = b->n - 1;
    int c = memcmp(x->e->key, b->p + 1, xl < n ? xl : n);
    return c ? c : (xl > n) - (xl < n);
}
static bool lex_below_min(const struct znode *x, const void *arg)
{
    const struct zbound *b = arg;
    if (b->kind)
        return b->kind > 0;
    int c = lex_cmp(x, b);
    return b->open ? c <= 0 : c < 0;
}
static bool lex_within_max(const struct znode *x, const void *arg)
{
    const struct zbound *b = arg;
    if (b->kind)
        return b->kind > 0;
    int c = lex_cmp(x, b);
    return b->open ? c < 0 : c <= 0;
}

/* ZRANGE key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES], as Redis 7.
 * BYLEX, like Redis, expects members of one score (they are then in member order). */
static void c_zrange(ARGS)
{
    int scores = 0, byscore = 0, bylex = 0, rev = 0, limit = 0;
    long long offset = 0, count = -1;
    for (size_t i = 4; i < argc; i++) {
        if (is(argv[i], argl[i], "WITHSCORES")) {
            scores = 1;
        } else if (is(argv[i], argl[i], "BYSCORE")) {
            byscore = 1;
        } else if (is(argv[i], argl[i], "BYLEX")) {
            bylex = 1;
        } else if (is(argv[i], argl[i], "REV")) {
            rev = 1;
        } else if (is(argv[i], argl[i], "LIMIT") && i + 2 < argc) {
            if (resp_ll(argv[i + 1], argl[i + 1], &offset) < 0 ||
                resp_ll(argv[i + 2], argl[i + 2], &count) < 0) {
                sb_error(out, E_NOTINT);
                return;
            }
            limit = 1;
            i += 2;
        } else {
            sb_error(out, E_SYNTAX);
            return;
        }
    }
    if (byscore && bylex) {
        sb_error(out, E_SYNTAX);
        return;
    }
    if (limit && !byscore && !bylex) {
        sb_error(out, "ERR syntax error, LIMIT is only supported in combination with either "
                      "BYSCORE or BYLEX");
        return;
    }
    if (bylex && scores) {
        sb_error(out, "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return;
    }
    bool swap = rev && (byscore || bylex);
    struct zbound lo = {.p = argv[swap ? 3 : 2], .n = argl[swap ? 3 : 2]};
    struct zbound hi = {.p = argv[swap ? 2 : 3], .n = argl[swap ? 2 : 3]};
    long long a = 0, b = 0;
    if (byscore && (score_bound(lo.p, lo.n, &lo.v, &lo.open) < 0 ||
                    score_bound(hi.p, hi.n, &hi.v, &hi.open) < 0)) {
        sb_error(out, "ERR min or max is not a float");
        return;
    }
    if (bylex && (lex_bound(lo.p, lo.n, &lo.kind, &lo.open) < 0 ||
                  lex_bound(hi.p, hi.n, &hi.kind, &hi.open) < 0)) {
        sb_error(out, "ERR min or max not valid string range item");
        return;
    }
    if (!byscore && !bylex &&
        (resp_ll(argv[2], argl[2], &a) < 0 || resp_ll(argv[3], argl[3], &b) < 0)) {
        sb_error(out, E_NOTINT);
        return;
    }
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_ZSET, &bad);
    if (bad)
        return;
    struct zset *z = e ? e->val : NULL;
    size_t from = 0, to = 0, n = 0; /* positions in the direction asked: from..to, n of them */
    if (z && !byscore && !bylex && range(a, b, z->n, &from, &to)) {
        n = to - from + 1;
    } else if (z && (byscore || bylex) && offset >= 0) {
        /* the members within the bounds, in ascending ranks first..last - 1 */
        size_t first = zset_count_while(z, byscore ? below_min : lex_below_min, &lo);
        size_t last = zset_count_while(z, byscore ? within_max : lex_within_max, &hi);
        size_t within = last > first ? last - first : 0;
        n = (size_t)offset < within ? within - (size_t)offset : 0;
        if (count >= 0 && (size_t)count < n)
            n = (size_t)count;
        from = rev ? z->n - last + (size_t)offset : first + (size_t)offset;
    }
    sb_array(out, (long long)n * (scores ? 2 : 1));
    const struct znode *x = n ? zset_at(z, rev ? z->n - 1 - from : from) : NULL;
    for (size_t k = 0; k < n; k++, x = rev ? x->back : x->lv[0].fwd) {
        sb_bulk(out, x->e->key, x->e->klen);
        if (scores)
            sb_double(out, x->score);
    }
}

static void c_zcard(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_ZSET, &bad);
    if (!bad)
        sb_int(out, e ? (long long)((struct zset *)e->val)->n : 0);
}

static void c_zscore(ARGS)
{
    int bad;
    struct entry *e = typed(db, argc, argv, argl, out, 1, T_ZSET, &bad);
    if (bad)
        return;
    const struct znode *x = e ? zset_find(e->val, argv[2], argl[2]) : NULL;
    if (!x)
        sb_nil(out);
    else
        sb_double(out, x->score);
}

/* ---- The table ---- */

#define K1    1, 1, 1
#define KALL  1, -1, 1
#define KNONE 0, 0, 0
static const struct command commands[] = {
    {"append", 3, F_WRITE, K1, c_append},
    {"bgrewriteaof", 1, F_ALL, KNONE, NULL, OP_BGREWRITEAOF},
    {"command", -1, F_CONN, KNONE, NULL, OP_COMMAND},
    {"config", -2, F_CONN, KNONE, NULL, OP_CONFIG},
    {"dbsize", 1, F_ALL, KNONE, NULL, OP_DBSIZE},
    {"decr", 2, F_WRITE, K1, c_decr},
    {"decrby", 3, F_WRITE, K1, c_decrby},
    {"del", -2, F_WRITE | F_MULTI, KALL, c_del},
    {"echo", 2, F_CONN, KNONE, NULL, OP_ECHO},
    {"exists", -2, F_MULTI, KALL, c_exists},
    {"expire", -3, F_WRITE, K1, c_expire, OP_EXPIRE},
    {"expireat", -3, F_WRITE, K1, c_expireat, OP_EXPIREAT},
    {"flushall", -1, F_ALL | F_WRITE, KNONE, NULL, OP_FLUSHALL},
    {"flushdb", -1, F_ALL | F_WRITE, KNONE, NULL, OP_FLUSHDB},
    {"get", 2, 0, K1, c_get},
    {"hdel", -3, F_WRITE, K1, c_hdel},
    {"hexists", 3, 0, K1, c_hexists},
    {"hget", 3, 0, K1, c_hget},
    {"hgetall", 2, 0, K1, c_hgetall},
    {"hlen", 2, 0, K1, c_hlen},
    {"hmset", -4, F_WRITE, K1, c_hset},
    {"hset", -4, F_WRITE, K1, c_hset},
    {"incr", 2, F_WRITE, K1, c_incr},
    {"incrby", 3, F_WRITE, K1, c_incrby},
    {"info", -1, F_ALL, KNONE, NULL, OP_INFO},
    {"keys", 2, F_ALL, KNONE, NULL, OP_KEYS},
    {"llen", 2, 0, K1, c_llen},
    {"lpop", -2, F_WRITE, K1, c_lpop},
    {"lpush", -3, F_WRITE, K1, c_lpush},
    {"lrange", 4, 0, K1, c_lrange},
    {"mget", -2, F_MULTI, KALL, c_mget, OP_MGET},
    {"mset", -3, F_WRITE | F_MULTI, 1, -1, 2, c_mset, OP_MSET},
    {"persist", 2, F_WRITE, K1, c_persist},
    {"pexpire", -3, F_WRITE, K1, c_pexpire, OP_PEXPIRE},
    {"pexpireat", -3, F_WRITE, K1, c_pexpireat, OP_EXPIREAT},
    {"ping", -1, F_CONN, KNONE, NULL, OP_PING},
    {"pttl", 2, 0, K1, c_pttl},
    {"quit", -1, F_CONN, KNONE, NULL, OP_QUIT},
    {"rpop", -2, F_WRITE, K1, c_rpop},
    {"rpush", -3, F_WRITE, K1, c_rpush},
    {"sadd", -3, F_WRITE, K1, c_sadd},
    {"scan", -2, F_ALL, KNONE, NULL, OP_SCAN},
    {"scard", 2, 0, K1, c_scard},
    {"select", 2, F_CONN, KNONE, NULL, OP_SELECT},
    {"set", -3, F_WRITE, K1, c_set, OP_SET},
    {"setnx", 3, F_WRITE, K1, c_setnx},
    {"sismember", 3, 0, K1, c_sismember},
    {"smembers", 2, 0, K1, c_smembers},
    {"spop", -2, F_WRITE, K1, c_spop, OP_SPOP},
    {"srem", -3, F_WRITE, K1, c_srem},
    {"strlen", 2, 0, K1, c_strlen},
    {"ttl", 2, 0, K1, c_ttl},
    {"type", 2, 0, K1, c_type},
    {"unlink", -2, F_WRITE | F_MULTI, KALL, c_del},
    {"zadd", -4, F_WRITE, K1, c_zadd},
    {"zcard", 2, 0, K1, c_zcard},
    {"zpopmin", -2, F_WRITE, K1, c_zpopmin},
    {"zrange", -4, 0, K1, c_zrange},
    {"zscore", 3, 0, K1, c_zscore},
};

/* ASCII lower case: command names are letters, and the locale's tolower() costs a call. */
static char fold(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

size_t cmd_count(void)
{
    return sizeof(commands) / sizeof(commands[0]);
}

const struct command *cmd_lookup(const char *name, size_t len)
{
    /* Clients send the same command again and again (pipelines, benchmarks): the last one found
     * on this thread is tried first. */
    static _Thread_local const struct command *last;
    static _Thread_local size_t last_len;
    char low[16];
    if (len == 0 || len >= sizeof(low))
        return NULL;
    for (size_t i = 0; i < len; i++)
        low[i] = fold(name[i]);
    low[len] = 0;
    if (last && last_len == len) { /* (a loop: a call to memcmp cost 3 % of PING's CPU) */
        size_t i = 0;
        while (i < len && low[i] == last->name[i])
            i++;
        if (i == len)
            return last;
    }
    size_t lo = 0, hi = sizeof(commands) / sizeof(commands[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(low, commands[mid].name);
        if (c == 0 && strlen(commands[mid].name) != len)
            return NULL; /* a NUL inside the name */
        if (c == 0) {
            last = &commands[mid];
            last_len = len;
            return last;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int cmd_check(const struct command *c, size_t argc, struct sbuf *out)
{
    if ((c->arity > 0 && argc != (size_t)c->arity) || (c->arity < 0 && argc < (size_t)-c->arity)) {
        sb_errorf(out, "ERR wrong number of arguments for '%s' command", c->name);
        return -1;
    }
    return 0;
}

void cmd_unknown(size_t argc, const char **argv, const size_t *argl, struct sbuf *out)
{
    char msg[400];
    int n = snprintf(msg, sizeof(msg), "ERR unknown command '%.*s', with args beginning with: ",
                     (int)(argl[0] > 128 ? 128 : argl[0]), argv[0]);
    for (size_t i = 1; i < argc && n < 300; i++)
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, "'%.*s' ",
                      (int)(argl[i] > 64 ? 64 : argl[i]), argv[i]);
    sb_errorf(out, "%s", msg);
}

size_t cmd_keys(const struct command *c, size_t argc, size_t *idx, size_t max)
{
    if (!c->first)
        return 0;
    size_t last = c->last < 0 ? argc - (size_t)(-c->last) : (size_t)c->last, n = 0;
    for (size_t i = (size_t)c->first; i <= last && i < argc && n < max; i += (size_t)c->step)
        idx[n++] = i;
    return n;
}

void cmd_run(struct kv_db *db, const struct command *c, size_t argc, const char **argv,
             const size_t *argl, struct sbuf *out)
{
    c->fn(db, argc, argv, argl, out);
}

/* The pattern token at p (not '*': a character, \x, ?, or a class) against the character c:
 * its length in the pattern if it matches, 0 if not (a class without its ']' never matches). */
static size_t glob_one(const char *p, size_t pl, char c)
{
    if (*p == '?')
        return 1;
    if (*p == '\\' && pl > 1)
        return p[1] == c ? 2 : 0;
    if (*p != '[')
        return *p == c ? 1 : 0;
    size_t i = 1;
    int neg = i < pl && p[i] == '^', hit = 0;
    i += (size_t)neg;
    for (; i < pl && p[i] != ']'; i++) {
        if (p[i] == '\\' && i + 1 < pl) {
            hit |= p[++i] == c;
        } else if (i + 2 < pl && p[i + 1] == '-') {
            char a = p[i] < p[i + 2] ? p[i] : p[i + 2], b = p[i] < p[i + 2] ? p[i + 2] : p[i];
            hit |= c >= a && c <= b;
            i += 2;
        } else {
            hit |= p[i] == c;
        }
    }
    return i < pl && hit != neg ? i + 1 : 0;
}

/* Redis's glob (KEYS, SCAN MATCH, CONFIG GET): every token but '*' matches one character, so
 * on a mismatch only the last '*' need take one character more: at most pattern x string
 * steps, no recursion (a pattern of many stars against a long key used to take exponential
 * time, and one of thousands of stars the whole stack). */
int glob_match(const char *p, size_t pl, const char *s, size_t sl)
{
    size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;
    while (si < sl) {
        if (pi < pl && p[pi] == '*') {
            while (pi < pl && p[pi] == '*')
                pi++;
            if (pi == pl)
                return 1;
            star = pi;
            mark = si;
            continue;
        }
        size_t k = pi < pl ? glob_one(p + pi, pl - pi, s[si]) : 0;
        if (k) {
            pi += k;
            si++;
        } else if (star == SIZE_MAX) {
            return 0;
        } else {
            pi = star;
            si = ++mark;
        }
    }
    while (pi < pl && p[pi] == '*')
        pi++;
    return pi == pl;
}
