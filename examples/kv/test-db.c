/* tpc-kv's keyspace and helpers without a runtime: the table through incremental rehashing
 * (every key found at every step), SCAN's promise while the table grows under it, hashtags,
 * glob patterns, integer parsing, active expiry. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "cmd.h"
#include "db.h"
#include "resp.h"

static size_t key(char *buf, int i)
{
    return (size_t)snprintf(buf, 32, "key:%d", i);
}

static struct entry *find(struct dict *d, int i)
{
    char k[32];
    size_t n = key(k, i);
    return dict_find(d, k, n, kv_hash(k, n));
}

static void test_rehash_finds_everything(void **state)
{
    (void)state;
    struct dict d;
    dict_init(&d);
    int n = 20000;
    bool rehashed = false;
    for (int i = 0; i < n; i++) {
        char k[32];
        size_t l = key(k, i);
        assert_null(dict_find(&d, k, l, kv_hash(k, l)));
        struct entry *e = dict_add(&d, k, l, kv_hash(k, l));
        e->type = T_STRING;
        e->val = str_new(k, l);
        rehashed |= d.rehash >= 0;
        if (i % 997 == 0) /* mid-rehash too: every key so far is there */
            for (int j = 0; j <= i; j++)
                assert_non_null(find(&d, j));
    }
    assert_true(rehashed);
    assert_int_equal(dict_size(&d), n);
    for (int i = 0; i < n; i += 2)
        dict_delete(&d, find(&d, i));
    assert_int_equal(dict_size(&d), n / 2);
    for (int i = 0; i < n; i++)
        assert_true((find(&d, i) != NULL) == (i % 2 == 1));
    for (int k = 0; k < 100; k++) {
        struct entry *e = dict_random(&d);
        assert_non_null(e);
        assert_int_equal(atoi(e->key + 4) % 2, 1);
    }
    dict_free(&d, true);
    assert_int_equal(dict_size(&d), 0);
    assert_null(dict_random(&d));
}

static void mark(void *arg, struct entry *e)
{
    unsigned char *seen = arg;
    seen[atoi(e->key + 4)]++;
}

/* A table emptied to a few keys shrinks (a scan then crosses a few buckets, not 32,768), while
 * every key stays found, scanned and picked at random on the way. */
static void test_table_shrinks(void **state)
{
    (void)state;
    struct dict d;
    dict_init(&d);
    int n = 20000, keep = 10;
    for (int i = 0; i < n; i++) {
        char k[32];
        size_t l = key(k, i);
        struct entry *e = dict_add(&d, k, l, kv_hash(k, l));
        e->type = T_STRING;
        e->val = str_new(k, l);
    }
    while (d.rehash >= 0)
        dict_rehash_step(&d, 100);
    size_t big = d.size[0];
    assert_true(big >= (size_t)n);
    bool shrinking = false;
    for (int i = keep; i < n; i++) {
        dict_delete(&d, find(&d, i));
        shrinking |= d.rehash >= 0 && d.size[1] < d.size[0];
    }
    assert_true(shrinking);
    for (int round = 0; d.rehash >= 0 || round < 3; round++) { /* rehashing, then after */
        unsigned char seen[64] = {0};
        uint64_t cursor = 0;
        do
            cursor = dict_scan(&d, cursor, mark, seen);
        while (cursor);
        for (int i = 0; i < keep; i++) {
            assert_true(seen[i] >= 1); /* (twice is allowed while it moves) */
            assert_non_null(find(&d, i));
        }
        struct entry *e = dict_random(&d);
        assert_true(atoi(e->key + 4) < keep);
    }
    assert_true(d.size[0] <= 8 * (size_t)keep); /* (an eighth full or more) */
    assert_int_equal(dict_size(&d), keep);
    dict_free(&d, true);
}

/* Keys present from the start of a SCAN to its end are returned at least once, also when the
 * table grows (and rehashes) between the calls. */
static void test_scan_while_growing(void **state)
{
    (void)state;
    struct dict d;
    dict_init(&d);
    int first = 1000, total = 30000, next = first;
    for (int i = 0; i < first; i++) {
        char k[32];
        size_t l = key(k, i);
        dict_add(&d, k, l, kv_hash(k, l));
    }
    unsigned char *seen = calloc((size_t)total, 1);
    uint64_t c = 0;
    int calls = 0;
    do {
        c = dict_scan(&d, c, mark, seen);
        for (int k = 0; k < 20 && next < total; k++, next++) { /* grow between calls */
            char kb[32];
            size_t l = key(kb, next);
            dict_add(&d, kb, l, kv_hash(kb, l));
        }
        calls++;
    } while (c);
    for (int i = 0; i < first; i++)
        assert_true(seen[i] >= 1);
    assert_true(calls > 10);
    free(seen);
    dict_free(&d, true);
}

static void test_hashtags(void **state)
{
    (void)state;
    assert_true(key_slot_hash("{user}:a", 8) == key_slot_hash("{user}:b", 8));
    assert_true(key_slot_hash("{user}:a", 8) == kv_hash("user", 4));
    assert_true(key_slot_hash("{}x", 3) == kv_hash("{}x", 3));   /* empty tag: the whole key */
    assert_true(key_slot_hash("a{b", 3) == kv_hash("a{b", 3));   /* unclosed: the whole key */
    assert_true(key_slot_hash("a{b}{c}", 7) == kv_hash("b", 1)); /* the first tag */
}

static void test_glob(void **state)
{
    (void)state;
#define G(p, s) glob_match(p, strlen(p), s, strlen(s))
    assert_true(G("*", ""));
    assert_true(G("k*", "key:1"));
    assert_false(G("k*2", "key:1"));
    assert_true(G("key:?", "key:1"));
    assert_false(G("key:?", "key:10"));
    assert_true(G("key:[0-4]", "key:3"));
    assert_false(G("key:[^0-4]", "key:3"));
    assert_true(G("key:[^0-4]", "key:7"));
    assert_true(G("a\\*b", "a*b"));
    assert_false(G("a\\*b", "axb"));
    assert_false(G("key:[0-4", "key:3")); /* unterminated class: no match, no crash */
    assert_true(G("*[ab]*\\?", "xxbyy?"));
    assert_false(G("*[ab]*\\?", "xxbyyz"));
    assert_true(G("a*b*c", "aXbYbZc"));
    assert_false(G("a*b*c", "aXbYbZ"));
    assert_true(G("**x", "yyx"));
    assert_true(G("[\\]]", "]"));
    assert_true(G("[z-a]", "m")); /* a range written backwards */
#undef G
    /* Patterns that take exponential time (or a frame per star) to a naive matcher: each is
     * pattern x string steps here. */
    char key[5001], pat[10001];
    memset(key, 'a', 100);
    key[100] = 0;
    assert_false(glob_match("a*a*a*a*a*a*a*a*a*a*a*b", 23, key, 100));
    memset(key, 'a', 5000);
    key[5000] = 0;
    for (int i = 0; i < 5000; i++)
        pat[2 * i] = '*', pat[2 * i + 1] = 'a';
    assert_true(glob_match(pat, 10000, key, 5000));
    pat[9999] = 'b';
    assert_false(glob_match(pat, 10000, key, 5000));
}

static void test_integers(void **state)
{
    (void)state;
    long long v;
    assert_int_equal(resp_ll("0", 1, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(resp_ll("-12", 3, &v), 0);
    assert_int_equal(v, -12);
    assert_int_equal(resp_ll("9223372036854775807", 19, &v), 0);
    assert_int_equal(resp_ll("-9223372036854775808", 20, &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(resp_ll("9223372036854775808", 19, &v), -1);
    assert_int_equal(resp_ll("01", 2, &v), -1);
    assert_int_equal(resp_ll("-0", 2, &v), -1);
    assert_int_equal(resp_ll("+1", 2, &v), -1);
    assert_int_equal(resp_ll(" 1", 2, &v), -1);
    assert_int_equal(resp_ll("", 0, &v), -1);
    assert_int_equal(resp_ll("1.5", 3, &v), -1);
    assert_int_equal(resp_ll("9999999999999999999", 19, &v), -1);  /* 19 digits, past the range */
    assert_int_equal(resp_ll("18446744073709551616", 20, &v), -1); /* 2^64: would wrap */
    assert_int_equal(resp_ll("-9223372036854775809", 20, &v), -1);
    assert_int_equal(resp_ll("-99999999999999999999", 21, &v), -1); /* past 20 characters */
    assert_int_equal(resp_ll("12a", 3, &v), -1);
    assert_int_equal(resp_ll("1/", 2, &v), -1); /* the characters on either side of the digits */
    assert_int_equal(resp_ll("1:", 2, &v), -1);
}

/* Integers written (resp_fmt_ll, and the reply lines :n, $n) read back as they were, at every
 * length and at the ends of the range. */
static void test_integer_replies(void **state)
{
    (void)state;
    long long cases[] = {
        0,  1,  9,   10,  99,   100,       101,       999,           1000,         65535,
        -1, -9, -10, -99, -100, LLONG_MAX, LLONG_MIN, LLONG_MAX - 1, LLONG_MIN + 1};
    long long p10 = 1;
    char buf[24], want[32];
    for (int d = 0; d < 19; d++, p10 = d < 19 ? p10 * 10 : p10) {
        for (int k = -1; k <= 1; k++) {
            long long vs[2] = {p10 + k, -(p10 + k)};
            for (int j = 0; j < 2; j++) {
                size_t n = resp_fmt_ll(buf, vs[j]);
                snprintf(want, sizeof(want), "%lld", vs[j]);
                assert_int_equal(n, strlen(want));
                assert_memory_equal(buf, want, n);
                long long back;
                assert_int_equal(resp_ll(buf, n, &back), 0);
                assert_true(back == vs[j]);
            }
        }
    }
    struct sbuf b = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        b.len = 0;
        sb_int(&b, cases[i]);
        snprintf(want, sizeof(want), ":%lld\r\n", cases[i]);
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.p, want, b.len);
        size_t n = resp_fmt_ll(buf, cases[i]);
        b.len = 0;
        sb_int_text(&b, buf, n);
        assert_memory_equal(b.p, want, b.len);
    }
    /* A bulk reply whose header and bytes cross the buffer's growth. */
    for (size_t n = 0; n < 600; n += 37) {
        char data[600];
        memset(data, 'a' + (int)(n % 26), n);
        b.len = 0;
        sb_bulk(&b, data, n);
        int h = snprintf(want, sizeof(want), "$%zu\r\n", n);
        assert_int_equal(b.len, (size_t)h + n + 2);
        assert_memory_equal(b.p, want, (size_t)h);
        assert_memory_equal(b.p + h, data, n);
        assert_memory_equal(b.p + h + n, "\r\n", 2);
    }
    sb_free(&b);
}

static void run(struct kv_db *db, struct sbuf *out, size_t argc, const char **argv)
{
    size_t argl[8];
    for (size_t i = 0; i < argc; i++)
        argl[i] = strlen(argv[i]);
    const struct command *c = cmd_lookup(argv[0], argl[0]);
    assert_non_null(c);
    out->len = 0;
    cmd_run(db, c, argc, argv, argl, out);
}

/* Active expiry deletes what has expired and keeps, for INFO's avg_ttl, the running average of
 * what the keys with a time that stay have left. */
static void test_active_expiry_and_avg_ttl(void **state)
{
    (void)state;
    struct kv_db db = {0};
    struct sbuf out = {0};
    dict_init(&db.keys);
    db.now = 1000;
    run(&db, &out, 5, (const char *[]){"SET", "a", "v", "PX", "1000"});
    run(&db, &out, 5, (const char *[]){"SET", "b", "v", "PX", "3000"});
    run(&db, &out, 5, (const char *[]){"SET", "c", "v", "PX", "10"});
    run(&db, &out, 3, (const char *[]){"SET", "d", "v"});
    assert_int_equal(db.expires, 3);
    db.now = 1100;
    uint64_t cursor = 0;
    assert_int_equal(db_expire_some(&db, &cursor, 1 << 10), 1); /* c */
    assert_int_equal(cursor, 0);
    assert_int_equal(db.expires, 2);
    assert_int_equal(dict_size(&db.keys), 3);
    assert_int_equal(db.avg_ttl, (900 + 2900) / 2);
    db.now = 1600; /* a and b now have 400 and 2400 left: the average moves a fiftieth */
    assert_int_equal(db_expire_some(&db, &cursor, 1 << 10), 0);
    assert_int_equal(db.avg_ttl, 1900 / 50 * 49 + 1400 / 50);
    run(&db, &out, 3, (const char *[]){"DEL", "a", "b"});
    assert_int_equal(db.expires, 0);
    db_expire_some(&db, &cursor, 1 << 10);
    assert_int_equal(db.avg_ttl, 0);
    sb_free(&out);
    dict_free(&db.keys, true);
}

/* A sorted set's skip list after each of thousands of random adds, rescores and removals:
 * ordered by (score, member) both ways, every link's span the nodes it passes, each rank found
 * by zset_at, and bounds counted by zset_count_while; members found through the table. */
static int member_of(const struct znode *x)
{
    return atoi(x->e->key + 1);
}

static bool score_below(const struct znode *x, const void *arg)
{
    return x->score < *(const double *)arg;
}

static void check_zset(const struct zset *z, const double *score, const bool *in, int universe)
{
    size_t n = 0;
    const struct znode *prev = NULL;
    for (const struct znode *x = zset_first(z); x; prev = x, x = x->lv[0].fwd, n++) {
        assert_ptr_equal(x->back, prev);
        assert_ptr_equal(zset_at(z, n), x);
        assert_true(in[member_of(x)]);
        assert_true(x->score == score[member_of(x)]);
        if (prev) {
            int c = strcmp(prev->e->key, x->e->key);
            assert_true(prev->score < x->score || (prev->score == x->score && c < 0));
        }
    }
    assert_int_equal(n, z->n);
    assert_ptr_equal(z->tail, prev);
    assert_null(zset_at(z, n));
    for (int i = 0; i < z->level; i++) { /* spans: every link, every level */
        size_t rank = 0;
        for (const struct znode *x = z->head; x->lv[i].fwd; x = x->lv[i].fwd) {
            rank += x->lv[i].span;
            assert_ptr_equal(zset_at(z, rank - 1), x->lv[i].fwd);
        }
    }
    size_t members = 0;
    for (int m = 0; m < universe; m++)
        members += in[m];
    assert_int_equal(members, z->n);
    for (double b = -1; b <= 11; b += 0.5) {
        size_t below = 0;
        for (const struct znode *x = zset_first(z); x; x = x->lv[0].fwd)
            below += x->score < b;
        assert_int_equal(zset_count_while(z, score_below, &b), below);
    }
}

static void test_sorted_set_invariants(void **state)
{
    (void)state;
    enum { UNIVERSE = 600, STEPS = 6000 };
    static double score[UNIVERSE];
    static bool in[UNIVERSE];
    struct zset *z = zset_new();
    unsigned seed = 7;
    for (int step = 0; step < STEPS; step++) {
        int m = (int)(rand_r(&seed) % UNIVERSE);
        char name[16];
        int len = snprintf(name, sizeof(name), "m%d", m);
        double s = (double)(rand_r(&seed) % 21) / 2; /* many ties: member order decides */
        struct znode *x = zset_find(z, name, (size_t)len);
        assert_true((x != NULL) == in[m]);
        if (!x) {
            zset_add(z, s, name, (size_t)len);
            in[m] = true;
        } else if (rand_r(&seed) % 3) {
            zset_rescore(z, x, s);
        } else {
            zset_remove(z, x);
            in[m] = false;
        }
        score[m] = s;
        if (step % 500 == 0 || step == STEPS - 1)
            check_zset(z, score, in, UNIVERSE);
    }
    while (zset_first(z)) { /* empty it from the front, as ZPOPMIN does */
        in[member_of(zset_first(z))] = false;
        zset_remove(z, zset_first(z));
    }
    check_zset(z, score, in, UNIVERSE);
    assert_int_equal(z->level, 1);
    zset_release(z);
    free(z);
}

/* A list against a model: thousands of random pushes and pops at both ends, elements of 0 to
 * 9,000 bytes (one-byte and five-byte frames, nodes of their own), every position read through
 * list_seek/list_next and both ends through list_end; the nodes' bytes and counts agree. */
enum { LMODEL_MAX = 4096 };
static struct lmodel {
    unsigned len, seed;
} lmodel[2 * LMODEL_MAX];
static size_t lm_head = LMODEL_MAX, lm_tail = LMODEL_MAX; /* [head, tail) */

static void fill(char *buf, unsigned len, unsigned seed)
{
    for (unsigned i = 0; i < len; i++)
        buf[i] = (char)(seed + i * 31);
}

static void check_list(const struct list *l)
{
    static char want[9000];
    assert_int_equal(l->n, lm_tail - lm_head);
    size_t count = 0, bytes = 0;
    for (const struct lnode *x = l->head; x; x = x->next) {
        assert_true(x->count > 0);
        assert_true(x->start < x->end && x->end <= x->cap);
        assert_ptr_equal(x->next ? x->next->prev : l->tail, x);
        count += x->count;
        bytes += sizeof(*x) + x->cap;
    }
    assert_int_equal(count, l->n);
    assert_int_equal(bytes, l->bytes);
    for (size_t from = 0; from < l->n; from += 1 + l->n / 7) {
        struct list_it it;
        list_seek(l, from, &it);
        const char *d;
        size_t n;
        for (size_t i = lm_head + from; i < lm_tail; i++) {
            assert_true(list_next(&it, &d, &n));
            fill(want, lmodel[i].len, lmodel[i].seed);
            assert_int_equal(n, lmodel[i].len);
            assert_memory_equal(d, want, n);
        }
        assert_false(list_next(&it, &d, &n));
    }
    struct list_it it;
    list_seek(l, l->n, &it);
    const char *d;
    size_t n;
    assert_false(list_next(&it, &d, &n));
    for (int head = 0; head < 2 && l->n; head++) {
        assert_true(list_end(l, head, &d, &n));
        const struct lmodel *m = &lmodel[head ? lm_head : lm_tail - 1];
        fill(want, m->len, m->seed);
        assert_int_equal(n, m->len);
        assert_memory_equal(d, want, n);
    }
}

static void test_list_against_a_model(void **state)
{
    (void)state;
    static char buf[9000];
    struct list l = {0};
    unsigned seed = 11;
    for (int step = 0; step < 20000; step++) {
        unsigned r = (unsigned)rand_r(&seed);
        bool head = r & 1;
        bool grow = lm_tail - lm_head < 50 || (r >> 1) % 5 < 3;
        if (grow && lm_head > 0 && lm_tail < 2 * LMODEL_MAX) {
            unsigned k = (r >> 4) % 100;
            unsigned len = k < 80   ? (r >> 12) % 20
                           : k < 95 ? 200 + (r >> 12) % 200
                                    : 4000 + (r >> 12) % 5000;
            struct lmodel m = {len, r};
            fill(buf, len, r);
            list_push(&l, buf, len, head);
            lmodel[head ? --lm_head : lm_tail++] = m;
        } else if (lm_tail > lm_head) {
            list_pop(&l, head);
            if (head)
                lm_head++;
            else
                lm_tail--;
        }
        if (step % 1000 == 0)
            check_list(&l);
    }
    check_list(&l);
    while (l.n) {
        list_pop(&l, false);
        lm_tail--;
    }
    check_list(&l);
    assert_null(l.head);
    assert_null(l.tail);
    assert_int_equal(l.bytes, 0);
    const char *d;
    size_t n;
    assert_false(list_end(&l, true, &d, &n));
    list_pop(&l, true);          /* (nothing: no harm) */
    list_push(&l, "x", 1, true); /* a short list costs its bytes, not a page */
    assert_true(l.bytes <= sizeof(struct lnode) + 16);
    list_push(&l, "yz", 2, false);
    list_push(&l, "w", 1, true);
    assert_true(l.bytes <= sizeof(struct lnode) + 64);
    assert_ptr_equal(l.head, l.tail);
    struct list_it it;
    list_seek(&l, 0, &it);
    const char *want[] = {"w", "x", "yz"};
    for (int i = 0; i < 3; i++) {
        assert_true(list_next(&it, &d, &n));
        assert_int_equal(n, strlen(want[i]));
        assert_memory_equal(d, want[i], n);
    }
    list_release(&l);
    assert_int_equal(l.n, 0);
    assert_null(l.head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rehash_finds_everything),
        cmocka_unit_test(test_scan_while_growing),
        cmocka_unit_test(test_table_shrinks),
        cmocka_unit_test(test_hashtags),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_integer_replies),
        cmocka_unit_test(test_active_expiry_and_avg_ttl),
        cmocka_unit_test(test_sorted_set_invariants),
        cmocka_unit_test(test_list_against_a_model),
    };
    return cmocka_run_group_tests_name("kv-db", tests, NULL, NULL);
}
