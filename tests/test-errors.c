/* Error names and descriptions, and the version. */
#include <errno.h>
#include <string.h>
#include "helpers.h"

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(tpc_err_name(-EPERM), "EPERM");
    assert_string_equal(tpc_err_name(-ECANCELED), "ECANCELED");
    assert_string_equal(tpc_err_name(-ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(tpc_err_name(0), "OK");
    assert_string_equal(tpc_err_name(-100000), "UNKNOWN");
    assert_string_equal(tpc_strerror(-100000), "unknown error");
    assert_non_null(strstr(tpc_strerror(-EXDEV), "another shard"));
    assert_non_null(strstr(tpc_strerror(-EXDEV), "cross-device")); /* the kernel's, first */
    assert_non_null(strstr(tpc_strerror(-ESHUTDOWN), "shutting down"));
    /* Every code in the table has a distinct, non-empty description. */
    static const int codes[] = {EPERM, EAGAIN,  ENOMEM,    EBUSY,     EXDEV,     EINVAL,
                                EPIPE, EDEADLK, ECANCELED, ETIMEDOUT, ESHUTDOWN, EOVERFLOW};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_true(strlen(tpc_strerror(-codes[i])) > 3);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(tpc_strerror(-codes[i]), tpc_strerror(-codes[j]));
    }
}

static void test_version(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", TPC_VERSION_MAJOR, TPC_VERSION_MINOR,
             TPC_VERSION_PATCH);
    assert_string_equal(tpc_version_string(), want);
    assert_int_equal(tpc_version(), TPC_VERSION_HEX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
