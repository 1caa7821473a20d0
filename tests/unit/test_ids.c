/* Identifier grammars: what is accepted, and that every bad form gets a clear refusal. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <m2mhsm/ids.h>

static void ok(m2mhsm_id_type t, const char *s)
{
    if (m2mhsm_id_check_str(t, s) != M2MHSM_OK)
        fail_msg("%s \"%s\" refused: %s", m2mhsm_id_type_name(t), s, m2mhsm_last_error());
}

static void bad(m2mhsm_id_type t, const char *s, size_t len, const char *why)
{
    assert_int_equal(m2mhsm_id_check(t, s, len), M2MHSM_E_INVALID_ARG);
    if (strstr(m2mhsm_last_error(), why) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", why, m2mhsm_last_error());
}

static void test_kpm_id_accepts_its_alphabet(void **state)
{
    (void)state;
    ok(M2MHSM_ID_KPM, "device-0001");
    ok(M2MHSM_ID_KPM, "imei.35.209900.176148.1@operator_x");
    char max[M2MHSM_KPM_ID_MAX + 1];
    memset(max, 'a', M2MHSM_KPM_ID_MAX);
    max[M2MHSM_KPM_ID_MAX] = '\0';
    ok(M2MHSM_ID_KPM, max);
}

static void test_bad_identities_are_refused_with_the_reason(void **state)
{
    (void)state;
    char long_id[M2MHSM_KPM_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    bad(M2MHSM_ID_KPM, "", 0, "empty");
    bad(M2MHSM_ID_KPM, NULL, 0, "empty");
    bad(M2MHSM_ID_KPM, long_id, 129, "129 characters");
    bad(M2MHSM_ID_KPM, "dev\xc3\xa9", 5, "not ASCII");
    bad(M2MHSM_ID_KPM, "dev\0ice", 7, "NUL");
    bad(M2MHSM_ID_KPM, "dev ice", 7, "malformed");
    bad(M2MHSM_ID_KPM, "dev/ice", 7, "malformed");
    bad(M2MHSM_ID_FQDN, "maf..example.com", 16, "malformed");
    bad(M2MHSM_ID_FQDN, "-maf.example.com", 16, "malformed");
    bad(M2MHSM_ID_FQDN, "Maf.example.com", 15, "malformed");
    bad(M2MHSM_ID_M2M, "//sp.example.com", 16, "malformed");
    bad(M2MHSM_ID_M2M, "/cse1//x", 8, "malformed");
    bad(M2MHSM_ID_M2M, "cse1", 4, "malformed");
    bad(M2MHSM_ID_KE, "00112233@mef.example.com", 24, "malformed");
    bad(M2MHSM_ID_KE, "0011223344556677889900112233445Z@mef.example.com", 48, "malformed");
}

static void test_oneM2M_ids_follow_ts0004(void **state)
{
    (void)state;
    ok(M2MHSM_ID_M2M, "//sp.example.com/cse1");
    ok(M2MHSM_ID_M2M, "/cse1");
    ok(M2MHSM_ID_M2M, "/cse1/Cae-01");
    ok(M2MHSM_ID_M2M, "//sp.example.com/cse1/Sae_1");
    ok(M2MHSM_ID_M2M, "Cae1");
    ok(M2MHSM_ID_TARGET, "maf.example.com");
    ok(M2MHSM_ID_TARGET, "//sp.example.com/cse1");
    ok(M2MHSM_ID_FQDN, "maf.example.com");
    ok(M2MHSM_ID_KE, "0011223344556677889900AABBCCDDEE@mef.example.com");
    ok(M2MHSM_ID_KE, "0011223344556677889900aabbccddee@mef.example.com");
}

static void test_error_does_not_echo_the_input(void **state)
{
    (void)state;
    bad(M2MHSM_ID_KPM, "evil\x1b[2Jid", 10, "malformed");
    assert_null(strstr(m2mhsm_last_error(), "evil"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kpm_id_accepts_its_alphabet),
        cmocka_unit_test(test_bad_identities_are_refused_with_the_reason),
        cmocka_unit_test(test_oneM2M_ids_follow_ts0004),
        cmocka_unit_test(test_error_does_not_echo_the_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
