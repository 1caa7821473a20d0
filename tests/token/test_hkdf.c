/* Km and Kpsa derived inside the token (CKM_HKDF_DERIVE, Ke as the salt key) where it is
 * offered (NSS softokn), and the C_Sign path where it is not (SoftHSM 2.6.1): both give the
 * TS-0003 check values, and only the first keeps the key out of host memory. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fixture.h"
#include "softokn.h"

#define MAF "maf.example.com"
#define ENROLEE_B "//sp.example.com/cse1"

static fixture_token token;
static softokn_db nss;

static const uint8_t km_check[32] = {
    0x30, 0x55, 0xbf, 0x32, 0xdd, 0x9c, 0x95, 0x58, 0x6a, 0xaf, 0xfa, 0x2a, 0xe2, 0xe1, 0x65, 0xdf,
    0xef, 0xfd, 0x08, 0x03, 0x56, 0x6e, 0x16, 0xbd, 0xd3, 0x43, 0x17, 0x14, 0x57, 0xda, 0x8a, 0x5e};
static const uint8_t kpsa_check[32] = {
    0x0a, 0xa0, 0x13, 0xcc, 0x8b, 0x37, 0x4f, 0x98, 0xde, 0x90, 0x05, 0x5e, 0xeb, 0x9f, 0x59, 0xc2,
    0xe2, 0xd3, 0x22, 0xaf, 0x64, 0x88, 0x8b, 0x8d, 0x34, 0x59, 0x43, 0x3f, 0xc0, 0x36, 0x39, 0xa3};

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("hkdf");
    fixture_token_make(&token, "hkdf");
    softokn_db_make(&nss, "hkdf");
    return 0;
}

static void check(m2mhsm_status st)
{
    if (st != M2MHSM_OK)
        fail_msg("%s: %s", m2mhsm_status_name(st), m2mhsm_last_error());
}

/* The token's HMAC-SHA-256 with key h over a fixed text equals the host's with `expect`:
 * h holds expect, though it cannot be read. */
static void assert_key_is(m2mhsm_token *tok, CK_OBJECT_HANDLE h, const uint8_t expect[32])
{
    static const uint8_t text[] = "client finished";
    uint8_t want[32], got[32];
    unsigned wl = 0;
    assert_non_null(HMAC(EVP_sha256(), expect, 32, text, sizeof(text), want, &wl));
    check(m2mhsm_token_hmac_sha256(tok, h, text, sizeof(text), got));
    assert_memory_equal(got, want, 32);
}

typedef struct {
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE type;
    CK_BBOOL t, f;
    CK_ATTRIBUTE a[10];
    CK_ULONG n;
} key_tmpl;

/* A secret key as the key store makes one on a token (without the 2.40-only CKA_COPYABLE,
 * which softokn refuses on token keys): sensitive, non-extractable, HMAC only, and CKA_DERIVE
 * as asked. */
static void tmpl_init(key_tmpl *k, CK_BBOOL derive)
{
    k->cls = CKO_SECRET_KEY;
    k->type = CKK_GENERIC_SECRET;
    k->t = CK_TRUE;
    k->f = CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &k->cls, sizeof(k->cls)},
        {CKA_KEY_TYPE, &k->type, sizeof(k->type)},
        {CKA_TOKEN, &k->t, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &k->t, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &k->t, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, &k->f, sizeof(CK_BBOOL)},
        {CKA_SIGN, &k->t, sizeof(CK_BBOOL)},
        {CKA_DERIVE, derive ? &k->t : &k->f, sizeof(CK_BBOOL)},
    };
    memcpy(k->a, a, sizeof(a));
    k->n = sizeof(a) / sizeof(a[0]);
}

static CK_OBJECT_HANDLE import_ke(m2mhsm_token *tok)
{
    key_tmpl k;
    tmpl_init(&k, CK_FALSE);
    k.a[k.n++] = (CK_ATTRIBUTE){CKA_VALUE, (void *)fixture_key32, 32};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    check(m2mhsm_token_session_get(tok, &s));
    assert_int_equal(m2mhsm_token_functions(tok)->C_CreateObject(s, k.a, k.n, &h), CKR_OK);
    m2mhsm_token_session_put(tok, s);
    return h;
}

static void destroy(m2mhsm_token *tok, CK_OBJECT_HANDLE h)
{
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(tok, &s));
    assert_int_equal(m2mhsm_token_functions(tok)->C_DestroyObject(s, h), CKR_OK);
    m2mhsm_token_session_put(tok, s);
}

static void assert_unreadable(m2mhsm_token *tok, CK_OBJECT_HANDLE h)
{
    uint8_t buf[64];
    CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof(buf)};
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(tok, &s));
    assert_int_equal(m2mhsm_token_functions(tok)->C_GetAttributeValue(s, h, &a, 1),
                     CKR_ATTRIBUTE_SENSITIVE);
    m2mhsm_token_session_put(tok, s);
}

static CK_OBJECT_HANDLE derive(m2mhsm_token *tok, CK_OBJECT_HANDLE ke, m2mhsm_derivation which,
                               const char *id, CK_BBOOL derive_usage)
{
    uint8_t *msg = NULL;
    size_t len = 0;
    check(m2mhsm_derivation_input(which, id, &msg, &len));
    key_tmpl k;
    tmpl_init(&k, derive_usage);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    check(m2mhsm_token_hmac_derive(tok, ke, msg, len, k.a, k.n, &h));
    free(msg);
    return h;
}

static void test_softokn_derives_km_and_kpsa_in_the_token(void **state)
{
    (void)state;
    m2mhsm_token *tok = softokn_open(&nss);
    assert_int_equal(m2mhsm_token_caps_get(tok)->hkdf_derive, 1);
    CK_OBJECT_HANDLE ke = import_ke(tok);
    CK_OBJECT_HANDLE km = derive(tok, ke, M2MHSM_DERIVE_KM, MAF, CK_FALSE);
    assert_key_is(tok, km, km_check);
    assert_unreadable(tok, km);
    CK_OBJECT_HANDLE kpsa = derive(tok, ke, M2MHSM_DERIVE_KPSA, ENROLEE_B, CK_FALSE);
    assert_key_is(tok, kpsa, kpsa_check);
    assert_unreadable(tok, kpsa);
    destroy(tok, kpsa);
    destroy(tok, km);
    destroy(tok, ke);
    m2mhsm_token_close(tok);
}

/* tls13-es = HKDF-Extract(0^32, Km) (RFC 8446 7.1), from a Km that never left the token. */
static void test_softokn_derives_the_tls13_early_secret_from_km(void **state)
{
    (void)state;
    m2mhsm_token *tok = softokn_open(&nss);
    CK_OBJECT_HANDLE ke = import_ke(tok);
    CK_OBJECT_HANDLE km = derive(tok, ke, M2MHSM_DERIVE_KM, MAF, CK_TRUE);
    key_tmpl k;
    tmpl_init(&k, CK_FALSE);
    CK_OBJECT_HANDLE es = CK_INVALID_HANDLE;
    check(m2mhsm_token_hkdf_extract_key(tok, km, k.a, k.n, &es));
    uint8_t want[32];
    check(m2mhsm_psk_tls13_early_secret(km_check, 32, want));
    assert_key_is(tok, es, want);
    assert_unreadable(tok, es);
    destroy(tok, es);
    destroy(tok, km);
    destroy(tok, ke);
    m2mhsm_token_close(tok);
}

/* SoftHSM 2.6.1 offers no HKDF: the in-token call says so, and the store takes the C_Sign
 * path, recording it (derived_in_token 0, also after reopening). With $M2MHSM_TOKEN_KIND the
 * suite's token is of that kind: where it offers CKM_HKDF_DERIVE (softokn) the same store
 * derives in the token and records that; the keys equal the check values either way. */
static void test_suite_token_derives_as_its_mechanisms_allow(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    int in_token = m2mhsm_token_caps_get(fs.tok)->hkdf_derive;
    assert_int_equal(in_token, strcmp(fixture_kind(), "softokn") == 0); /* measured: caps */
    if (!in_token) {
        key_tmpl k;
        tmpl_init(&k, CK_FALSE);
        CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
        assert_int_equal(m2mhsm_token_hmac_derive(fs.tok, CK_INVALID_HANDLE, (const uint8_t *)"x",
                                                  1, k.a, k.n, &h),
                         M2MHSM_E_UNSUPPORTED);
    }
    m2mhsm_record ke = fixture_enrol(&fs, "hkdf-kpm", "//sp.example.com/cse1/Chkdf", 0x4b, 3600);
    m2mhsm_record km, kpsa, back;
    check(m2mhsm_keystore_derive_store(fs.ks, &ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &km));
    assert_int_equal(km.derived_in_token, in_token);
    uint8_t want[32];
    check(m2mhsm_psk_tls13_early_secret(km_check, 32, want));
    assert_key_is(fs.tok, ks_obj(&km)->key[M2MHSM_FORM_TLS13_ES], want);
    fixture_store_close(&fs);
    fixture_store_open(&fs, &token);
    check(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KM, ke.identity, strlen(ke.identity), &back));
    assert_int_equal(back.derived_in_token, in_token);
    check(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KE, ke.identity, strlen(ke.identity), &ke));
    check(m2mhsm_keystore_derive_store(fs.ks, &ke, M2MHSM_DERIVE_KPSA, ENROLEE_B, M2MHSM_NEVER,
                                       &kpsa));
    assert_int_equal(kpsa.derived_in_token, in_token);
    check(m2mhsm_psk_tls13_early_secret(kpsa_check, 32, want));
    assert_key_is(fs.tok, ks_obj(&kpsa)->key[M2MHSM_FORM_TLS13_ES], want);
    fixture_store_close(&fs);
}

static void test_hkdf_calls_refuse_bad_input(void **state)
{
    (void)state;
    m2mhsm_token *tok = softokn_open(&nss);
    key_tmpl k;
    tmpl_init(&k, CK_FALSE);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    const uint8_t msg[] = "m";
    assert_int_equal(m2mhsm_token_hmac_derive(NULL, 1, msg, 1, k.a, k.n, &h), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_token_hmac_derive(tok, 1, NULL, 1, k.a, k.n, &h), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_token_hmac_derive(tok, 1, msg, 0, k.a, k.n, &h), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_token_hmac_derive(tok, 1, msg, 1, NULL, 0, &h), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_token_hkdf_extract_key(tok, 1, k.a, k.n, NULL), M2MHSM_E_INVALID_ARG);
    /* A salt key that is no object: the token's refusal, named with the call. */
    assert_int_not_equal(m2mhsm_token_hmac_derive(tok, 0x7fffffff, msg, 1, k.a, k.n, &h),
                         M2MHSM_OK);
    assert_non_null(strstr(m2mhsm_last_error(), "C_DeriveKey(CKM_HKDF_DERIVE, CKF_HKDF_SALT_KEY)"));
    assert_int_equal(h, CK_INVALID_HANDLE);
    m2mhsm_token_close(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softokn_derives_km_and_kpsa_in_the_token),
        cmocka_unit_test(test_softokn_derives_the_tls13_early_secret_from_km),
        cmocka_unit_test(test_suite_token_derives_as_its_mechanisms_allow),
        cmocka_unit_test(test_hkdf_calls_refuse_bad_input),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
