/* Enrolment Expiry: timestamps, specs, resolution, the lifetime clamp, the boundary. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <m2mhsm/expiry.h>

static void test_timestamp_round_trips(void **state)
{
    (void)state;
    m2mhsm_time t;
    char buf[M2MHSM_TIMESTAMP_LEN];
    assert_int_equal(m2mhsm_timestamp_parse("20261127T221000", &t), M2MHSM_OK);
    assert_int_equal(t, 1795817400);
    assert_int_equal(m2mhsm_timestamp_format(t, buf, sizeof(buf)), M2MHSM_OK);
    assert_string_equal(buf, "20261127T221000");
    assert_int_equal(m2mhsm_timestamp_parse("20240229T000000", &t), M2MHSM_OK);
    assert_int_equal(m2mhsm_timestamp_parse("19700101T000000", &t), M2MHSM_OK);
    assert_int_equal(t, 0);
}

static void test_fraction_rounds_down(void **state)
{
    (void)state;
    m2mhsm_time t;
    assert_int_equal(m2mhsm_timestamp_parse("20261127T221000,999999", &t), M2MHSM_OK);
    assert_int_equal(t, 1795817400);
}

static void test_malformed_timestamps_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "2026-11-27T22:10:00",
                         "20261127 221000",
                         "20261127T2210",
                         "20261127T221000Z",
                         "20261127T221000,",
                         "20261127T221000,1234567",
                         "20261327T221000",
                         "20230229T000000",
                         "20261127T246000",
                         "20261127T225960",
                         "2026112xT221000",
                         "19691231T235959"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m2mhsm_time t = 42;
        if (m2mhsm_timestamp_parse(bad[i], &t) != M2MHSM_E_INVALID_ARG)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(t, 42);
    }
}

static void test_spec_is_duration_or_timestamp(void **state)
{
    (void)state;
    m2mhsm_expiry_spec s;
    char buf[32];
    assert_int_equal(m2mhsm_expiry_spec_parse("3600", &s), M2MHSM_OK);
    assert_int_equal(s.kind, M2MHSM_EXPIRY_DURATION);
    assert_int_equal(s.value, 3600);
    assert_int_equal(m2mhsm_expiry_spec_format(&s, buf, sizeof(buf)), M2MHSM_OK);
    assert_string_equal(buf, "3600");
    assert_int_equal(m2mhsm_expiry_spec_parse("20261127T221000", &s), M2MHSM_OK);
    assert_int_equal(s.kind, M2MHSM_EXPIRY_ABSOLUTE);
    assert_int_equal(m2mhsm_expiry_spec_parse("0", &s), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_expiry_spec_parse("-5", &s), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_expiry_spec_parse("99999999999999999999999", &s), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_expiry_spec_parse("10s", &s), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_expiry_spec_parse("", &s), M2MHSM_E_INVALID_ARG);
}

static void test_resolve_makes_an_absolute_instant(void **state)
{
    (void)state;
    m2mhsm_expiry_spec d = {M2MHSM_EXPIRY_DURATION, 600}, a = {M2MHSM_EXPIRY_ABSOLUTE, 5000};
    m2mhsm_time out = 0;
    assert_int_equal(m2mhsm_expiry_resolve(&d, 1000, &out), M2MHSM_OK);
    assert_int_equal(out, 1600);
    assert_int_equal(m2mhsm_expiry_resolve(&a, 1000, &out), M2MHSM_OK);
    assert_int_equal(out, 5000);
    assert_int_equal(m2mhsm_expiry_resolve(&a, 5000, &out), M2MHSM_E_EXPIRED);
}

static void test_km_lifetime_never_exceeds_ke(void **state)
{
    (void)state;
    assert_int_equal(m2mhsm_expiry_clamp(9000, 5000), 5000);
    assert_int_equal(m2mhsm_expiry_clamp(4000, 5000), 4000);
    assert_int_equal(m2mhsm_expiry_clamp(M2MHSM_NEVER, 5000), 5000);
}

static void test_boundary_one_second_before_is_valid_at_expiry_invalid(void **state)
{
    (void)state;
    assert_true(m2mhsm_expiry_is_valid(5000, 4999));
    assert_false(m2mhsm_expiry_is_valid(5000, 5000));
    assert_false(m2mhsm_expiry_is_valid(5000, 5001));
    assert_true(m2mhsm_expiry_is_valid(M2MHSM_NEVER, 4102444800));
}

static void test_ck_date_is_the_utc_day(void **state)
{
    (void)state;
    CK_DATE d;
    m2mhsm_expiry_ck_date(1795817400, &d); /* 2026-11-27T22:10:00Z */
    assert_memory_equal(d.year, "2026", 4);
    assert_memory_equal(d.month, "11", 2);
    assert_memory_equal(d.day, "27", 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamp_round_trips),
        cmocka_unit_test(test_fraction_rounds_down),
        cmocka_unit_test(test_malformed_timestamps_are_refused),
        cmocka_unit_test(test_spec_is_duration_or_timestamp),
        cmocka_unit_test(test_resolve_makes_an_absolute_instant),
        cmocka_unit_test(test_km_lifetime_never_exceeds_ke),
        cmocka_unit_test(test_boundary_one_second_before_is_valid_at_expiry_invalid),
        cmocka_unit_test(test_ck_date_is_the_utc_day),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
