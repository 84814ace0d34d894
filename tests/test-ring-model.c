/* The rings' fuzz target (tests/fuzz/fuzz-ring.c: core/ring.c compiled in, checked against the
 * model of tests/ring-model.h after every operation) without libFuzzer, in every build of the
 * suite: its seed corpus, then random programs (seeded: the seed is printed, TPC_TEST_SEED
 * replays it). A finding aborts. Linked without the library, which would bring a second ring.c. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <cmocka.h>
#include "fuzz/fuzz-ring.c"

static uint8_t input[1 << 16];

static void test_ring_corpus(void **state)
{
    (void)state;
    DIR *d = opendir(RING_CORPUS);
    assert_non_null(d);
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", RING_CORPUS, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t len = fread(input, 1, sizeof(input), f);
        fclose(f);
        LLVMFuzzerTestOneInput(input, len);
        n++;
    }
    closedir(d);
    assert_true(n > 0);
    print_message("ring corpus: %ld inputs\n", n);
}

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_ring_random(void **state)
{
    (void)state;
    const char *env = getenv("TPC_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
    rng = seed ? seed : 1;
    print_message("ring model seed 0x%llx (TPC_TEST_SEED replays it)\n", (unsigned long long)seed);
    long programs = getenv("TPC_TEST_SLOW") ? 2000 : 20000;
    for (long k = 0; k < programs; k++) {
        size_t len = 1 + rnd() % 600;
        for (size_t i = 0; i < len; i++)
            input[i] = (uint8_t)rnd();
        LLVMFuzzerTestOneInput(input, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_corpus),
        cmocka_unit_test(test_ring_random),
    };
    return cmocka_run_group_tests_name("ring-model", tests, NULL, NULL);
}
