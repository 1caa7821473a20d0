/* TS-0003 10.3.1-10.3.4 without a token: splits, KeID, HMAC messages, TLS forms. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <m2mhsm/derive.h>

#include "fixture.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void host_hmac(const uint8_t *key, size_t klen, m2mhsm_derivation which, const char *id,
                      char out_hex[65])
{
    uint8_t *msg = NULL, mac[32];
    size_t len = 0;
    unsigned int mlen = 0;
    assert_int_equal(m2mhsm_derivation_input(which, id, &msg, &len), M2MHSM_OK);
    assert_non_null(HMAC(EVP_sha256(), key, (int)klen, msg, len, mac, &mlen));
    free(msg);
    hex(mac, 32, out_hex);
}

/* The check values in shared/spec/TS-0003-notes.md, computed independently. */
static void test_km_formula_matches_check_value(void **state)
{
    (void)state;
    char h[65];
    host_hmac(fixture_key32, 32, M2MHSM_DERIVE_KM, "maf.example.com", h);
    assert_string_equal(h, "3055bf32dd9c95586aaffa2ae2e165dfeffd0803566e16bdd343171457da8a5e");
}

static void test_kpsa_formula_matches_check_value(void **state)
{
    (void)state;
    char h[65];
    host_hmac(fixture_key32, 32, M2MHSM_DERIVE_KPSA, "//sp.example.com/cse1", h);
    assert_string_equal(h, "0aa013cc8b374f98de90055eeb9f59c2e2d322af64888b8d3459433fc03639a3");
}

static void test_derivation_input_is_label_then_id(void **state)
{
    (void)state;
    uint8_t *msg = NULL;
    size_t len = 0;
    assert_int_equal(m2mhsm_derivation_input(M2MHSM_DERIVE_KM, "maf.example.com", &msg, &len),
                     M2MHSM_OK);
    assert_int_equal(strlen(M2MHSM_KM_LABEL), 52);
    assert_int_equal(len, 52 + 15);
    assert_memory_equal(msg, M2MHSM_KM_LABEL "maf.example.com", len);
    free(msg);
    assert_int_equal(strlen(M2MHSM_KPSA_LABEL), 68);
}

static void test_derivation_rejects_bad_targets(void **state)
{
    (void)state;
    uint8_t *msg = (uint8_t *)"untouched";
    size_t len = 0;
    assert_int_equal(m2mhsm_derivation_input(M2MHSM_DERIVE_KM, "MAF.Example.com", &msg, &len),
                     M2MHSM_E_INVALID_ARG);
    assert_null(msg);
    assert_int_equal(
        m2mhsm_derivation_input(M2MHSM_DERIVE_KM, "maf.ex\xc3\xa4mple.com", &msg, &len),
        M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_derivation_input(M2MHSM_DERIVE_KPSA, "not an id", &msg, &len),
                     M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_derivation_input(M2MHSM_DERIVE_KPSA, "", &msg, &len),
                     M2MHSM_E_INVALID_ARG);
    /* One Enrolee B, one spelling: SP-relative forms would derive a different Kpsa. */
    assert_int_equal(m2mhsm_derivation_input(M2MHSM_DERIVE_KPSA, "/cse1", &msg, &len),
                     M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_derivation_input(M2MHSM_DERIVE_KPSA, "Cae1", &msg, &len),
                     M2MHSM_E_INVALID_ARG);
}

static void test_export_split_is_big_endian(void **state)
{
    (void)state;
    uint8_t exported[48], rel[16], ke[32];
    for (int i = 0; i < 48; i++)
        exported[i] = (uint8_t)(0xa0 + i);
    m2mhsm_export_split(exported, rel, ke);
    assert_memory_equal(rel, exported, 16);     /* most significant 16 */
    assert_memory_equal(ke, exported + 16, 32); /* least significant 32 */
}

static void test_ke_id_format_upper_hex_at_fqdn(void **state)
{
    (void)state;
    uint8_t rel[16];
    for (int i = 0; i < 16; i++)
        rel[i] = (uint8_t)(0xf0 + i);
    char buf[M2MHSM_KE_ID_MAX + 1];
    assert_int_equal(m2mhsm_ke_id_format(rel, "mef.example.com", buf, sizeof(buf)), M2MHSM_OK);
    assert_string_equal(buf, "F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF@mef.example.com");
    assert_int_equal(m2mhsm_id_check_str(M2MHSM_ID_KE, buf), M2MHSM_OK);
    assert_int_equal(m2mhsm_ke_id_format(rel, "mef.example.com", buf, 20), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_ke_id_format(rel, "MEF.example.com", buf, sizeof(buf)),
                     M2MHSM_E_INVALID_ARG);
}

/* The stored TLS 1.2 form keys HMAC exactly like the RFC 4279 premaster does. */
static void check_pms_equivalent(size_t psk_len)
{
    uint8_t psk[64], pms[4 + 128], form[M2MHSM_PMS_KEY_MAX], a[32], b[32];
    size_t form_len = 0;
    unsigned int l = 0;
    for (size_t i = 0; i < psk_len; i++)
        psk[i] = (uint8_t)(i * 7 + 1);
    size_t n = 0;
    pms[n++] = 0;
    pms[n++] = (uint8_t)psk_len;
    memset(pms + n, 0, psk_len);
    n += psk_len;
    pms[n++] = 0;
    pms[n++] = (uint8_t)psk_len;
    memcpy(pms + n, psk, psk_len);
    n += psk_len;
    assert_int_equal(m2mhsm_psk_tls12_pms_key(psk, psk_len, form, &form_len), M2MHSM_OK);
    assert_int_equal(form_len, n > 64 ? 32 : n);
    HMAC(EVP_sha256(), pms, (int)n, (const uint8_t *)"seed", 4, a, &l);
    HMAC(EVP_sha256(), form, (int)form_len, (const uint8_t *)"seed", 4, b, &l);
    assert_memory_equal(a, b, 32);
}

static void test_tls12_form_keys_hmac_like_the_premaster(void **state)
{
    (void)state;
    check_pms_equivalent(16);
    check_pms_equivalent(30); /* 64-byte premaster: used as is */
    check_pms_equivalent(31); /* 66 bytes: hashed */
    check_pms_equivalent(32);
    check_pms_equivalent(64);
}

static void test_tls13_form_is_hkdf_extract(void **state)
{
    (void)state;
    uint8_t es[32], want[32];
    size_t len = sizeof(want);
    assert_int_equal(m2mhsm_psk_tls13_early_secret(fixture_key32, 32, es), M2MHSM_OK);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_hkdf_mode(ctx, EVP_PKEY_HKDEF_MODE_EXTRACT_ONLY), 1);
    assert_int_equal(EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_hkdf_key(ctx, fixture_key32, 32), 1);
    assert_int_equal(EVP_PKEY_derive(ctx, want, &len), 1);
    EVP_PKEY_CTX_free(ctx);
    assert_memory_equal(es, want, 32);
}

/* The in-token path (CKM_HKDF_DERIVE, extract only, salt = Ke, IKM = the clause's message)
 * computes the same bytes as the C_Sign path: HKDF-Extract(salt, IKM) = HMAC(salt, IKM). */
static void hkdf_extract_hex(const uint8_t *salt, size_t salt_len, m2mhsm_derivation which,
                             const char *id, char out_hex[65])
{
    uint8_t *msg = NULL, prk[32];
    size_t len = 0, prk_len = sizeof(prk);
    assert_int_equal(m2mhsm_derivation_input(which, id, &msg, &len), M2MHSM_OK);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_hkdf_mode(ctx, EVP_PKEY_HKDEF_MODE_EXTRACT_ONLY), 1);
    assert_int_equal(EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt, (int)salt_len), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_hkdf_key(ctx, msg, (int)len), 1);
    assert_int_equal(EVP_PKEY_derive(ctx, prk, &prk_len), 1);
    EVP_PKEY_CTX_free(ctx);
    free(msg);
    assert_int_equal(prk_len, 32);
    hex(prk, 32, out_hex);
}

static void test_hkdf_extract_with_ke_as_salt_gives_the_check_values(void **state)
{
    (void)state;
    char h[65];
    hkdf_extract_hex(fixture_key32, 32, M2MHSM_DERIVE_KM, "maf.example.com", h);
    assert_string_equal(h, "3055bf32dd9c95586aaffa2ae2e165dfeffd0803566e16bdd343171457da8a5e");
    hkdf_extract_hex(fixture_key32, 32, M2MHSM_DERIVE_KPSA, "//sp.example.com/cse1", h);
    assert_string_equal(h, "0aa013cc8b374f98de90055eeb9f59c2e2d322af64888b8d3459433fc03639a3");
}

static void test_psk_length_bounds(void **state)
{
    (void)state;
    uint8_t out[64];
    size_t len;
    assert_int_equal(m2mhsm_psk_tls12_pms_key(fixture_key32, 15, out, &len), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_psk_tls13_early_secret(fixture_key32, 65, out), M2MHSM_E_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_km_formula_matches_check_value),
        cmocka_unit_test(test_kpsa_formula_matches_check_value),
        cmocka_unit_test(test_derivation_input_is_label_then_id),
        cmocka_unit_test(test_derivation_rejects_bad_targets),
        cmocka_unit_test(test_export_split_is_big_endian),
        cmocka_unit_test(test_ke_id_format_upper_hex_at_fqdn),
        cmocka_unit_test(test_tls12_form_keys_hmac_like_the_premaster),
        cmocka_unit_test(test_tls13_form_is_hkdf_extract),
        cmocka_unit_test(test_hkdf_extract_with_ke_as_salt_gives_the_check_values),
        cmocka_unit_test(test_psk_length_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
