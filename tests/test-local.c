/* Per-shard storage: tpc_shard_key_create, tpc_shard_set, tpc_shard_get. Each shard sees its own
 * value; destructors run once per value, on the value's shard, after its fibers have returned;
 * misuse gets its errno. The case that uses up every key runs last. */
#include <errno.h>
#include "helpers.h"

static int key_a = -1, key_b = -1, key_plain = -1;
static atomic_int destroyed, destroyed_bad, fibers_live;

struct value {
    int shard;
};

static void value_destroy(void *p)
{
    struct value *v = p;
    /* On the value's own shard, with no fiber of the test left running. */
    if (v->shard != tpc_shard_id() || atomic_load(&fibers_live) != 0)
        atomic_fetch_add(&destroyed_bad, 1);
    atomic_fetch_add(&destroyed, 1);
    free(v);
}

static int set_mine(void *arg)
{
    (void)arg;
    struct value *v = malloc(sizeof(*v));
    v->shard = tpc_shard_id();
    CHECK_EQ(tpc_shard_get(key_a), NULL);
    CHECK_EQ(tpc_shard_set(key_a, v), 0);
    CHECK_EQ(tpc_shard_set(key_plain, (void *)(intptr_t)(100 + tpc_shard_id())), 0);
    return 0;
}

static int check_mine(void *arg)
{
    (void)arg;
    struct value *v = tpc_shard_get(key_a);
    CHECK(v != NULL);
    CHECK_EQ(v ? v->shard : -1, tpc_shard_id());
    CHECK_EQ((intptr_t)tpc_shard_get(key_plain), 100 + tpc_shard_id());
    CHECK_EQ(tpc_shard_get(key_b), NULL); /* made, never set */
    return 0;
}

static void from_callback(void *arg)
{
    (void)arg;
    CHECK_EQ((intptr_t)tpc_shard_get(key_plain), 100 + tpc_shard_id()); /* callbacks too */
}

static int basics_main(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_on_all(set_mine, NULL), 0);
    CHECK_EQ(tpc_on_all(check_mine, NULL), 0);
    CHECK_EQ(tpc_defer(from_callback, NULL), 0);
    tpc_yield();
    CHECK_EQ(tpc_shard_set(-1, NULL), -EINVAL);
    CHECK_EQ(tpc_shard_set(TPC_SHARD_KEYS, NULL), -EINVAL);
    CHECK_EQ(tpc_shard_set(key_b + 1, NULL), -EINVAL); /* not made yet */
    CHECK_EQ(tpc_shard_get(-1), NULL);
    CHECK_EQ(tpc_shard_get(key_b + 1), NULL);
    CHECK_EQ(atomic_load(&destroyed), 0);
    atomic_store(&fibers_live, 0);
    return 0;
}

static void test_basics(void **state)
{
    (void)state;
    key_a = tpc_shard_key_create(value_destroy);
    key_plain = tpc_shard_key_create(NULL);
    key_b = tpc_shard_key_create(value_destroy);
    assert_true(key_a >= 0 && key_plain >= 0 && key_b >= 0);
    assert_true(key_a != key_plain && key_plain != key_b && key_a != key_b);
    atomic_store(&destroyed, 0);
    atomic_store(&fibers_live, 1);
    run_main(3, basics_main, NULL);
    assert_int_equal(atomic_load(&destroyed), 3); /* one per shard, none for key_plain */
    assert_int_equal(atomic_load(&destroyed_bad), 0);
    assert_int_equal(tpc_shard_set(key_a, NULL), -EPERM);
    assert_null(tpc_shard_get(key_a));
}

/* A new runtime starts with every slot empty. */
static int empty_main(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_shard_get(key_a), NULL);
    CHECK_EQ(tpc_shard_get(key_plain), NULL);
    return 0;
}

static void test_fresh_runtime(void **state)
{
    (void)state;
    run_main(2, empty_main, NULL);
}

/* A destructor that sets a value again gets more rounds, at most four in all. */
static int key_again = -1;
static atomic_int again_rounds;
static void set_again(void *p)
{
    (void)p;
    atomic_fetch_add(&again_rounds, 1);
    tpc_shard_set(key_again, (void *)1);
}

static int again_main(void *arg)
{
    (void)arg;
    CHECK_EQ(tpc_shard_set(key_again, (void *)1), 0);
    return 0;
}

static void test_destructor_sets_again(void **state)
{
    (void)state;
    key_again = tpc_shard_key_create(set_again);
    assert_true(key_again >= 0);
    run_main(1, again_main, NULL);
    assert_int_equal(atomic_load(&again_rounds), 4);
}

/* Keys run out with -EAGAIN (the last case: it uses them all). */
static void test_keys_run_out(void **state)
{
    (void)state;
    int k, made = 0;
    while ((k = tpc_shard_key_create(NULL)) >= 0)
        made++;
    assert_int_equal(k, -EAGAIN);
    assert_true(made > 0 && made <= TPC_SHARD_KEYS - 4);
    assert_int_equal(tpc_shard_key_create(NULL), -EAGAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_fresh_runtime),
        cmocka_unit_test(test_destructor_sets_again),
        cmocka_unit_test(test_keys_run_out),
    };
    return cmocka_run_group_tests_name("local", tests, NULL, NULL);
}
