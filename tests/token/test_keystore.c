/* The key store against a throwaway SoftHSM token. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fixture.h"

#define MEF "mef.example.com"
#define MAF "maf.example.com"
#define ENROLEE_B "//sp.example.com/cse1"

static fixture_token token;

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("keystore");
    fixture_token_make(&token, "keystore");
    return 0;
}

static int store_setup(void **state)
{
    fixture_store *fs = calloc(1, sizeof(*fs));
    fixture_store_open(fs, &token);
    *state = fs;
    return 0;
}

static int store_teardown(void **state)
{
    fixture_store *fs = *state;
    fixture_store_close(fs);
    free(fs);
    return 0;
}

static void check(m2mhsm_status st)
{
    if (st != M2MHSM_OK)
        fail_msg("%s: %s", m2mhsm_status_name(st), m2mhsm_last_error());
}

static size_t count_records(fixture_store *fs)
{
    m2mhsm_record *recs = NULL;
    size_t n = 0;
    check(m2mhsm_keystore_list(fs->ks, &recs, &n));
    free(recs);
    return n;
}

/* ---- attributes and non-extractability ---- */

static CK_FUNCTION_LIST *fn_of(fixture_store *fs)
{
    return m2mhsm_token_functions(fs->tok);
}

static void assert_bool_attr(fixture_store *fs, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                             CK_ATTRIBUTE_TYPE type, CK_BBOOL want)
{
    CK_BBOOL v = !want;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    assert_int_equal(fn_of(fs)->C_GetAttributeValue(s, h, &a, 1), CKR_OK);
    assert_int_equal(v, want);
}

static void assert_policy_refusal(CK_RV rv)
{
    if (rv != CKR_ATTRIBUTE_READ_ONLY && rv != CKR_ACTION_PROHIBITED)
        fail_msg("expected CKR_ATTRIBUTE_READ_ONLY or CKR_ACTION_PROHIBITED, got %s",
                 m2mhsm_ckr_name(rv));
}

static void assert_key_locked_down(fixture_store *fs, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE kek)
{
    CK_FUNCTION_LIST *fn = fn_of(fs);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(fs->tok, &s));
    assert_bool_attr(fs, s, h, CKA_SENSITIVE, CK_TRUE);
    assert_bool_attr(fs, s, h, CKA_EXTRACTABLE, CK_FALSE);
    assert_bool_attr(fs, s, h, CKA_PRIVATE, CK_TRUE);
    assert_bool_attr(fs, s, h, CKA_DERIVE, CK_FALSE);
    assert_bool_attr(fs, s, h, CKA_ENCRYPT, CK_FALSE);
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE ck[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    assert_int_equal(fn->C_GetAttributeValue(s, h, ck, 2), CKR_OK);
    assert_int_equal(cls, CKO_SECRET_KEY);
    assert_int_equal(kt, CKK_GENERIC_SECRET);

    uint8_t value[128];
    CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
    assert_int_equal(fn->C_GetAttributeValue(s, h, &v, 1), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(v.ulValueLen, CK_UNAVAILABLE_INFORMATION);

    /* The codes PKCS#11 2.40 prescribes (sections 5.18, 4.4.1 and 4.10), not just "failed":
     * an unrelated error must not pass for a refusal. Where the token lets a non-extractable
     * key be wrapped (softokn), its self-test must have said so: what we see here is what
     * the services are told at start (docs/tokens.md, "Self-test"). */
    CK_MECHANISM wrap = {CKM_AES_KEY_WRAP, NULL, 0};
    CK_ULONG wlen = sizeof(value);
    CK_RV wrv = fn->C_WrapKey(s, &wrap, kek, h, value, &wlen);
    OPENSSL_cleanse(value, sizeof(value));
    m2mhsm_selftest_report r;
    check(m2mhsm_token_selftest(fs->tok, &r));
    if (!m2mhsm_token_caps_get(fs->tok)->aes_key_wrap) {
        assert_int_equal(wrv, CKR_MECHANISM_INVALID); /* no RFC 3394 wrap on this token */
        assert_int_not_equal(r.probe[M2MHSM_PROBE_WRAP].outcome, M2MHSM_OUTCOME_LEAKED);
    } else if (r.probe[M2MHSM_PROBE_WRAP].outcome == M2MHSM_OUTCOME_LEAKED) {
        assert_int_equal(wrv, CKR_OK);
        assert_int_equal(r.non_extractable_enforced, 0);
    } else {
        assert_int_equal(wrv, CKR_KEY_UNEXTRACTABLE);
    }

    /* A read-only attribute, or a non-modifiable / non-copyable object: either refusal. */
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE ext = {CKA_EXTRACTABLE, &t, sizeof(t)};
    assert_policy_refusal(fn->C_SetAttributeValue(s, h, &ext, 1));
    CK_ATTRIBUTE sens = {CKA_SENSITIVE, &f, sizeof(f)};
    assert_policy_refusal(fn->C_SetAttributeValue(s, h, &sens, 1));
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    if (r.probe[M2MHSM_PROBE_COPY_EXTRACTABLE].outcome != M2MHSM_OUTCOME_LEAKED) {
        assert_policy_refusal(fn->C_CopyObject(s, h, &ext, 1, &copy));
        assert_int_equal(copy, CK_INVALID_HANDLE);
        assert_bool_attr(fs, s, h, CKA_EXTRACTABLE, CK_FALSE);
    } else {
        /* The self-test saw a copy leak (softokn), and it is there: copied into an
         * extractable object. Probed on a session copy: measured on NSS softokn 3.87, the
         * "copy" of a stored key is the stored key itself (same handle), made extractable
         * for good, which would spoil the checks of the keys after it. */
        CK_OBJECT_HANDLE sc = CK_INVALID_HANDLE;
        check(m2mhsm_token_session_copy(fs->tok, h, &sc));
        assert_int_equal(fn->C_CopyObject(s, sc, &ext, 1, &copy), CKR_OK);
        assert_bool_attr(fs, s, copy, CKA_EXTRACTABLE, CK_TRUE);
        assert_int_equal(r.non_extractable_enforced, 0);
        if (copy != sc)
            assert_int_equal(fn->C_DestroyObject(s, copy), CKR_OK);
        m2mhsm_token_session_destroy(fs->tok, sc);
        assert_bool_attr(fs, s, h, CKA_EXTRACTABLE, CK_FALSE);
    }
    m2mhsm_token_session_put(fs->tok, s);
}

static CK_OBJECT_HANDLE make_kek(fixture_store *fs, const char *label, const uint8_t *value)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &f, sizeof(f)},     {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_WRAP, &t, sizeof(t)},      {CKA_UNWRAP, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)}, {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)value, 32},
    };
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    check(m2mhsm_token_session_get(fs->tok, &s));
    assert_int_equal(fn_of(fs)->C_CreateObject(s, tmpl, 9, &h), CKR_OK);
    m2mhsm_token_session_put(fs->tok, s);
    return h;
}

static void test_every_key_kind_is_sensitive_and_unextractable(void **state)
{
    fixture_store *fs = *state;
    uint8_t kek_value[32] = {9};
    CK_OBJECT_HANDLE kek = make_kek(fs, "test-kek-attrs", kek_value);
    m2mhsm_record kpm, ke, km, kpsa;
    check(m2mhsm_keystore_import_kpm(fs->ks, "attr-kpm", fixture_key32, 32, M2MHSM_NEVER, &kpm));
    ke = fixture_enrol(fs, "attr-kpm", "//sp.example.com/cse1/Cattr", 0xa1, 3600);
    check(m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &km));
    check(m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KPSA, ENROLEE_B, M2MHSM_NEVER,
                                       &kpsa));
    /* The in-memory session copy a handshake signs with is just as locked down (checked
     * first: on softokn the copy probe below weakens the stored key it copies). */
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    check(m2mhsm_token_session_copy(fs->tok, ks_obj(&km)->key[M2MHSM_FORM_TLS12_PMS], &copy));
    assert_key_locked_down(fs, copy, kek);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(fs->tok, &s));
    assert_bool_attr(fs, s, copy, CKA_TOKEN, CK_FALSE);
    m2mhsm_token_session_put(fs->tok, s);
    m2mhsm_token_session_destroy(fs->tok, copy);
    const m2mhsm_record *recs[] = {&kpm, &ke, &km, &kpsa};
    size_t keys = 0;
    CK_SESSION_HANDLE ts;
    check(m2mhsm_token_session_get(fs->tok, &ts));
    for (size_t r = 0; r < 4; r++)
        for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
            if (ks_obj(recs[r])->key[f] != CK_INVALID_HANDLE) {
                assert_key_locked_down(fs, ks_obj(recs[r])->key[f], kek);
                assert_bool_attr(fs, ts, ks_obj(recs[r])->key[f], CKA_TOKEN, CK_TRUE);
                keys++;
            }
    m2mhsm_token_session_put(fs->tok, ts);
    assert_int_equal(keys, 3 + 1 + 3 + 3);
    /* The raw key cannot be copied at all where the token takes CKA_COPYABLE; elsewhere
     * (opencryptoki) a copy is as locked down as the key. */
    if (m2mhsm_token_caps_get(fs->tok)->copyable_attr) {
        assert_int_equal(
            m2mhsm_token_session_copy(fs->tok, ks_obj(&km)->key[M2MHSM_FORM_RAW], &copy),
            M2MHSM_E_PKCS11);
    } else {
        check(m2mhsm_token_session_copy(fs->tok, ks_obj(&km)->key[M2MHSM_FORM_RAW], &copy));
        assert_key_locked_down(fs, copy, kek);
        m2mhsm_token_session_destroy(fs->tok, copy);
    }
    check(m2mhsm_keystore_erase_id(fs->ks, "attr-kpm", NULL));
    check(m2mhsm_keystore_erase_enrolee(fs->ks, "//sp.example.com/cse1/Cattr", NULL));
}

/* m2mhsm list's "sensitive"/"extractable" come from the token: a fetched Kpsa reports
 * sensitive and not extractable; the same record pointed at a key the token made
 * extractable (a copy built by hand) reports that; an Enrolment configuration has no key. */
static void test_protection_is_what_the_token_reports(void **state)
{
    fixture_store *fs = *state;
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KPSA,
                             "ABCDEF0123456789ABCDEF0123456789@mef.example.com",
                             "//sp.example.com/cse1/Cprot",
                             ENROLEE_B,
                             fs->now + 600,
                             M2MHSM_NEVER};
    m2mhsm_record kpsa, bare;
    m2mhsm_key_protection p = {0, 1};
    check(m2mhsm_keystore_store_fetched(fs->ks, &fk, fixture_key32, 32, &kpsa));
    check(m2mhsm_keystore_protection(fs->ks, &kpsa, &p));
    assert_int_equal(p.sensitive, 1);
    assert_int_equal(p.extractable, 0);

    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &f, sizeof(f)},       {CKA_SENSITIVE, &f, sizeof(f)},
        {CKA_EXTRACTABLE, &t, sizeof(t)}, {CKA_VALUE, (void *)fixture_key32, 32},
    };
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE open_key;
    check(m2mhsm_token_session_get(fs->tok, &s));
    assert_int_equal(fn_of(fs)->C_CreateObject(s, tmpl, 6, &open_key), CKR_OK);
    m2mhsm_token_session_put(fs->tok, s);
    m2mhsm_record forged = kpsa;
    for (int i = 0; i < M2MHSM_FORM_COUNT; i++)
        if (ks_obj(&forged)->key[i] != CK_INVALID_HANDLE) {
            ks_obj(&forged)->key[i] = open_key;
            break;
        }
    check(m2mhsm_keystore_protection(fs->ks, &forged, &p));
    assert_int_equal(p.sensitive, 0);
    assert_int_equal(p.extractable, 1);

    bare = kpsa;
    for (int i = 0; i < M2MHSM_FORM_COUNT; i++)
        ks_obj(&bare)->key[i] = CK_INVALID_HANDLE;
    assert_int_equal(m2mhsm_keystore_protection(fs->ks, &bare, &p), M2MHSM_E_INVALID_ARG);
    assert_int_equal(m2mhsm_keystore_protection(fs->ks, NULL, &p), M2MHSM_E_INVALID_ARG);
    check(m2mhsm_token_session_get(fs->tok, &s));
    fn_of(fs)->C_DestroyObject(s, open_key);
    m2mhsm_token_session_put(fs->tok, s);
    check(m2mhsm_keystore_erase_id(fs->ks, kpsa.identity, NULL));
}

static void test_usage_flags_are_only_what_each_form_needs(void **state)
{
    fixture_store *fs = *state;
    m2mhsm_record kpm;
    check(m2mhsm_keystore_import_kpm(fs->ks, "usage-kpm", fixture_key32, 32, M2MHSM_NEVER, &kpm));
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(fs->tok, &s));
    assert_bool_attr(fs, s, ks_obj(&kpm)->key[M2MHSM_FORM_RAW], CKA_SIGN, CK_FALSE);
    assert_bool_attr(fs, s, ks_obj(&kpm)->key[M2MHSM_FORM_TLS12_PMS], CKA_SIGN, CK_TRUE);
    assert_bool_attr(fs, s, ks_obj(&kpm)->key[M2MHSM_FORM_TLS13_ES], CKA_SIGN, CK_TRUE);
    assert_bool_attr(fs, s, ks_obj(&kpm)->key[M2MHSM_FORM_TLS12_PMS], CKA_VERIFY, CK_FALSE);
    assert_bool_attr(fs, s, ks_obj(&kpm)->key[M2MHSM_FORM_RAW], CKA_MODIFIABLE, CK_FALSE);
    if (m2mhsm_token_caps_get(fs->tok)->copyable_attr) {
        assert_bool_attr(fs, s, ks_obj(&kpm)->key[M2MHSM_FORM_RAW], CKA_COPYABLE, CK_FALSE);
        assert_bool_attr(fs, s, ks_obj(&kpm)->key[M2MHSM_FORM_TLS12_PMS], CKA_COPYABLE, CK_TRUE);
    } else { /* the token refused CKA_COPYABLE (opencryptoki, softokn): the keys carry none */
        CK_BBOOL v = CK_TRUE;
        CK_ATTRIBUTE a = {CKA_COPYABLE, &v, sizeof(v)};
        assert_int_equal(
            fn_of(fs)->C_GetAttributeValue(s, ks_obj(&kpm)->key[M2MHSM_FORM_RAW], &a, 1),
            CKR_ATTRIBUTE_TYPE_INVALID);
    }
    /* The metadata is a private data object: nothing readable without login. */
    assert_bool_attr(fs, s, ks_obj(&kpm)->meta, CKA_PRIVATE, CK_TRUE);
    assert_bool_attr(fs, s, ks_obj(&kpm)->meta, CKA_TOKEN, CK_TRUE);
    m2mhsm_token_session_put(fs->tok, s);
    check(m2mhsm_keystore_erase_id(fs->ks, "usage-kpm", NULL));
}

/* ---- derivations on the token ---- */

static void hmac_on_token(fixture_store *fs, CK_OBJECT_HANDLE key, const char *msg, uint8_t out[32])
{
    CK_SESSION_HANDLE s;
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG len = 32;
    check(m2mhsm_token_session_get(fs->tok, &s));
    assert_int_equal(fn_of(fs)->C_SignInit(s, &m, key), CKR_OK);
    assert_int_equal(fn_of(fs)->C_Sign(s, (CK_BYTE *)msg, strlen(msg), out, &len), CKR_OK);
    m2mhsm_token_session_put(fs->tok, s);
}

/* The token's HMAC with `handle` equals the host's HMAC with `key`. */
static void assert_same_hmac(fixture_store *fs, CK_OBJECT_HANDLE handle, const uint8_t *key,
                             size_t key_len, const char *msg)
{
    uint8_t want[32], got[32];
    unsigned int l = 0;
    HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)msg, strlen(msg), want, &l);
    hmac_on_token(fs, handle, msg, got);
    assert_memory_equal(got, want, 32);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_token_derivations_equal_the_check_values(void **state)
{
    fixture_store *fs = *state;
    m2mhsm_record ke = fixture_enrol(fs, "derive-kpm", "//sp.example.com/cse1/Cderive", 0xb2, 3600);
    uint8_t km[32], kpsa[32];
    char h[65];
    check(m2mhsm_keystore_derive(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, km));
    hex(km, 32, h);
    assert_string_equal(h, "3055bf32dd9c95586aaffa2ae2e165dfeffd0803566e16bdd343171457da8a5e");
    check(m2mhsm_keystore_derive(fs->ks, &ke, M2MHSM_DERIVE_KPSA, ENROLEE_B, kpsa));
    hex(kpsa, 32, h);
    assert_string_equal(h, "0aa013cc8b374f98de90055eeb9f59c2e2d322af64888b8d3459433fc03639a3");
    assert_string_equal(ke.identity, "B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2@" MEF);

    /* The stored Km's TLS 1.2 form keys HMAC exactly as the premaster of that Km does. */
    m2mhsm_record kmrec;
    check(m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &kmrec));
    assert_string_equal(kmrec.identity, ke.identity); /* KmID = KeID (the CR) */
    uint8_t form[64];
    size_t form_len;
    check(m2mhsm_psk_tls12_pms_key(km, 32, form, &form_len));
    assert_same_hmac(fs, ks_obj(&kmrec)->key[M2MHSM_FORM_TLS12_PMS], form, form_len,
                     "master secret");
    check(m2mhsm_keystore_erase_id(fs->ks, ke.identity, NULL));
}

static void test_unwrapped_kpm_has_correct_tls_forms(void **state)
{
    fixture_store *fs = *state;
    uint8_t kek_value[32], wrapped[40], form[64];
    for (int i = 0; i < 32; i++)
        kek_value[i] = (uint8_t)(0x80 + i);
    make_kek(fs, "test-kek-unwrap", kek_value);
    /* RFC 3394 wrap on the host, as a key-distribution system would. */
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0;
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek_value, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(c, wrapped, &len, fixture_key32, 32), 1);
    assert_int_equal(EVP_EncryptFinal_ex(c, wrapped + len, &fin), 1);
    EVP_CIPHER_CTX_free(c);
    assert_int_equal(len + fin, 40);

    m2mhsm_record kpm;
    const m2mhsm_token_caps *caps = m2mhsm_token_caps_get(fs->tok);
    if (!caps->aes_key_wrap && !caps->aes_key_wrap_kwp && !caps->aes_key_wrap_pad) {
        /* opencryptoki's sw token, SoftHSM through p11-kit's RPC: refused, nothing written */
        assert_int_equal(m2mhsm_keystore_unwrap_kpm(fs->ks, "wrapped-kpm", wrapped, 40,
                                                    "test-kek-unwrap", M2MHSM_NEVER, &kpm),
                         M2MHSM_E_UNSUPPORTED);
        assert_non_null(strstr(m2mhsm_last_error(), "no AES key unwrap mechanism"));
        assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KPM, "wrapped-kpm", 11, &kpm),
                         M2MHSM_E_NOT_FOUND);
        return;
    }
    check(m2mhsm_keystore_unwrap_kpm(fs->ks, "wrapped-kpm", wrapped, 40, "test-kek-unwrap",
                                     M2MHSM_NEVER, &kpm));
    size_t form_len;
    check(m2mhsm_psk_tls12_pms_key(fixture_key32, 32, form, &form_len));
    assert_same_hmac(fs, ks_obj(&kpm)->key[M2MHSM_FORM_TLS12_PMS], form, form_len, "seed");
    check(m2mhsm_psk_tls13_early_secret(fixture_key32, 32, form));
    assert_same_hmac(fs, ks_obj(&kpm)->key[M2MHSM_FORM_TLS13_ES], form, 32, "seed");

    /* A wrong KEK, or a tampered blob, is refused and leaves nothing behind. */
    size_t before = count_records(fs);
    wrapped[5] ^= 1;
    assert_int_not_equal(m2mhsm_keystore_unwrap_kpm(fs->ks, "wrapped-kpm2", wrapped, 40,
                                                    "test-kek-unwrap", M2MHSM_NEVER, NULL),
                         M2MHSM_OK);
    assert_int_equal(m2mhsm_keystore_unwrap_kpm(fs->ks, "wrapped-kpm2", wrapped, 40, "no-such-kek",
                                                M2MHSM_NEVER, NULL),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(count_records(fs), before);
    check(m2mhsm_keystore_erase_id(fs->ks, "wrapped-kpm", NULL));
}

/* ---- Enrolment Expiry ---- */

static void test_km_lifetime_never_exceeds_ke(void **state)
{
    fixture_store *fs = *state;
    m2mhsm_record ke = fixture_enrol(fs, "clamp-kpm", "//sp.example.com/cse1/Cclamp", 0xc3, 600);
    assert_int_equal(ke.expiry, fs->now + 600);
    m2mhsm_record km;
    check(m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, fs->now + 99999, &km));
    assert_int_equal(km.expiry, ke.expiry);
    check(m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, fs->now + 60, &km));
    assert_int_equal(km.expiry, fs->now + 60);
    /* The same clamp on the Enrolment Target's side, and the value survives a re-read. */
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KM, ke.identity, "//sp.example.com/cse1/Cclamp", MAF,
                             ke.expiry,      M2MHSM_NEVER};
    check(m2mhsm_keystore_store_fetched(fs->ks, &fk, fixture_key32, 32, &km));
    m2mhsm_record again;
    fixture_store_close(fs);
    fixture_store_open(fs, &token);
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KM, ke.identity, strlen(ke.identity), &again));
    assert_int_equal(again.expiry, ke.expiry);
    check(m2mhsm_keystore_erase_id(fs->ks, ke.identity, NULL));
}

static void test_expiry_boundary_second_before_valid_at_expiry_refused(void **state)
{
    fixture_store *fs = *state;
    m2mhsm_time t0 = fs->now;
    m2mhsm_record ke = fixture_enrol(fs, "edge-kpm", "//sp.example.com/cse1/Cedge", 0xd4, 100);
    uint8_t km[32];
    fs->now = t0 + 99;
    assert_true(m2mhsm_record_valid(fs->ks, &ke));
    check(m2mhsm_keystore_derive(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, km));
    fs->now = t0 + 100;
    assert_false(m2mhsm_record_valid(fs->ks, &ke));
    assert_int_equal(m2mhsm_keystore_derive(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, km),
                     M2MHSM_E_EXPIRED);
    /* An already-expired lifetime from the MEF is refused and nothing is stored. */
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KM, ke.identity, NULL, MAF, t0 + 100, M2MHSM_NEVER};
    size_t before = count_records(fs);
    assert_int_equal(m2mhsm_keystore_store_fetched(fs->ks, &fk, fixture_key32, 32, NULL),
                     M2MHSM_E_EXPIRED);
    assert_int_equal(count_records(fs), before);
    fs->now = t0;
    check(m2mhsm_keystore_erase_id(fs->ks, ke.identity, NULL));
}

static void test_erase_enrolee_removes_only_that_enrolee(void **state)
{
    fixture_store *fs = *state;
    const char *a = "//sp.example.com/cse1/Calice", *b = "//sp.example.com/cse1/Cbob";
    check(m2mhsm_keystore_import_kpm(fs->ks, "kpm-alice", fixture_key32, 32, M2MHSM_NEVER, NULL));
    check(m2mhsm_keystore_import_kpm(fs->ks, "kpm-bob", fixture_key32, 32, M2MHSM_NEVER, NULL));
    m2mhsm_expiry_spec hour = {M2MHSM_EXPIRY_DURATION, 3600};
    check(m2mhsm_keystore_configure_enrolee(fs->ks, "kpm-alice", MAF, a, &hour));
    m2mhsm_record ke_a = fixture_enrol(fs, "kpm-alice", a, 0x0a, 3600);
    m2mhsm_record ke_b = fixture_enrol(fs, "kpm-bob", b, 0x0b, 3600);
    check(m2mhsm_keystore_derive_store(fs->ks, &ke_a, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, NULL));
    check(m2mhsm_keystore_derive_store(fs->ks, &ke_a, M2MHSM_DERIVE_KPSA, ENROLEE_B, M2MHSM_NEVER,
                                       NULL));
    check(m2mhsm_keystore_derive_store(fs->ks, &ke_b, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, NULL));
    size_t before = count_records(fs), erased = 0;
    check(m2mhsm_keystore_erase_enrolee(fs->ks, a, &erased));
    assert_int_equal(erased, 3); /* Ke, Km, Kpsa */
    assert_int_equal(count_records(fs), before - 3);
    m2mhsm_record r;
    const char *ida = ke_a.identity, *idb = ke_b.identity;
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KE, ida, strlen(ida), &r),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KM, ida, strlen(ida), &r),
                     M2MHSM_E_NOT_FOUND);
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KE, idb, strlen(idb), &r));
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KM, idb, strlen(idb), &r));
    /* Kpm and the MEF's configuration stay: the device must be able to re-enrol. */
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KPM, "kpm-alice", 9, &r));
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_ENROLMENT, "kpm-alice", 9, &r));
    assert_string_equal(r.enrolee_id, a);
    check(m2mhsm_keystore_erase_enrolee(fs->ks, b, NULL));
    check(m2mhsm_keystore_erase_id(fs->ks, "kpm-alice", NULL));
    check(m2mhsm_keystore_erase_id(fs->ks, "kpm-bob", NULL));
}

/* Revocation at the MEF: the KpmID's Ke, what derives from them and its configuration go;
 * its Kpm only when asked; another Enrolee is untouched; nothing left is NOT_FOUND. */
static void test_revoke_enrolee_erases_its_enrolment_and_keeps_the_kpm(void **state)
{
    fixture_store *fs = *state;
    const char *a = "//sp.example.com/cse1/Crva", *b = "//sp.example.com/cse1/Crvb";
    m2mhsm_expiry_spec hour = {M2MHSM_EXPIRY_DURATION, 3600};
    check(m2mhsm_keystore_import_kpm(fs->ks, "kpm-rva", fixture_key32, 32, M2MHSM_NEVER, NULL));
    check(m2mhsm_keystore_import_kpm(fs->ks, "kpm-rvb", fixture_key32, 32, M2MHSM_NEVER, NULL));
    check(m2mhsm_keystore_configure_enrolee(fs->ks, "kpm-rva", MAF, a, &hour));
    check(m2mhsm_keystore_configure_enrolee(fs->ks, "kpm-rvb", MAF, b, &hour));
    m2mhsm_record ke_a = fixture_enrol(fs, "kpm-rva", a, 0x3a, 3600);
    m2mhsm_record ke_b = fixture_enrol(fs, "kpm-rvb", b, 0x3b, 3600);
    check(m2mhsm_keystore_derive_store(fs->ks, &ke_a, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, NULL));
    size_t before = count_records(fs), erased = 0;
    check(m2mhsm_keystore_revoke_enrolee(fs->ks, "kpm-rva", 0, &erased));
    assert_int_equal(erased, 3); /* Ke, Km, configuration */
    assert_int_equal(count_records(fs), before - 3);
    m2mhsm_record r;
    const char *ida = ke_a.identity, *idb = ke_b.identity;
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KE, ida, strlen(ida), &r),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KM, ida, strlen(ida), &r),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_ENROLMENT, "kpm-rva", 7, &r),
                     M2MHSM_E_NOT_FOUND);
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KPM, "kpm-rva", 7, &r));
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KE, idb, strlen(idb), &r));
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_ENROLMENT, "kpm-rvb", 7, &r));
    /* Only the Kpm is left of it: revoking again erases it only when asked. */
    assert_int_equal(m2mhsm_keystore_revoke_enrolee(fs->ks, "kpm-rva", 0, &erased),
                     M2MHSM_E_NOT_FOUND);
    check(m2mhsm_keystore_revoke_enrolee(fs->ks, "kpm-rva", 1, &erased));
    assert_int_equal(erased, 1);
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KPM, "kpm-rva", 7, &r),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(m2mhsm_keystore_revoke_enrolee(fs->ks, "bad id!", 0, &erased),
                     M2MHSM_E_INVALID_ARG);
    check(m2mhsm_keystore_revoke_enrolee(fs->ks, "kpm-rvb", 1, &erased));
    assert_int_equal(erased, 3); /* Ke, configuration, Kpm */
}

static void test_reenrolment_replaces_ke_and_what_derives_from_it(void **state)
{
    fixture_store *fs = *state;
    const char *e = "//sp.example.com/cse1/Cre";
    m2mhsm_record ke1 = fixture_enrol(fs, "re-kpm", e, 0x01, 3600);
    check(m2mhsm_keystore_derive_store(fs->ks, &ke1, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, NULL));
    m2mhsm_record ke2 = fixture_enrol(fs, "re-kpm", e, 0x02, 3600);
    m2mhsm_record r;
    const char *old = ke1.identity;
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KE, old, strlen(old), &r),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KM, old, strlen(old), &r),
                     M2MHSM_E_NOT_FOUND);
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KE, ke2.identity, strlen(ke2.identity), &r));
    check(m2mhsm_keystore_erase_enrolee(fs->ks, e, NULL));
}

/* The CR's rule for an expired credential, shared by the TLS servers and the MEF's fetch. */
static void test_erase_expired_takes_the_enrolee_or_the_unnamed_key_and_never_a_kpm(void **state)
{
    fixture_store *fs = *state;
    const char *e = "//sp.example.com/cse1/Cexp";
    m2mhsm_record kpm, ke = fixture_enrol(fs, "exp-kpm", e, 0x5e, 3600), km, r;
    check(m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &km));
    check(m2mhsm_keystore_import_kpm(fs->ks, "exp-kpm", fixture_key32, 32, M2MHSM_NEVER, &kpm));
    size_t erased = 99;
    check(m2mhsm_keystore_erase_expired(fs->ks, &kpm, &erased));
    assert_int_equal(erased, 0);
    check(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KPM, "exp-kpm", 7, &r));
    /* Named Enrolee: its Ke and Km go (found through the Km, as a MAF would). */
    check(m2mhsm_keystore_erase_expired(fs->ks, &km, &erased));
    assert_int_equal(erased, 2);
    assert_int_equal(
        m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KE, ke.identity, strlen(ke.identity), &r),
        M2MHSM_E_NOT_FOUND);
    /* No Enrolee-ID: the key itself goes. */
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KM, ke.identity, NULL, MAF, ke.expiry, M2MHSM_NEVER};
    check(m2mhsm_keystore_store_fetched(fs->ks, &fk, fixture_key32, 32, &km));
    check(m2mhsm_keystore_erase_expired(fs->ks, &km, &erased));
    assert_int_equal(erased, 1);
    assert_int_equal(
        m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KM, ke.identity, strlen(ke.identity), &r),
        M2MHSM_E_NOT_FOUND);
    assert_int_equal(m2mhsm_keystore_erase_expired(fs->ks, NULL, &erased), M2MHSM_E_INVALID_ARG);
    check(m2mhsm_keystore_erase_id(fs->ks, "exp-kpm", NULL));
}

static int exists(fixture_store *fs, m2mhsm_kind kind, const char *id)
{
    m2mhsm_record r;
    return m2mhsm_keystore_lookup(fs->ks, kind, id, strlen(id), &r) == M2MHSM_OK;
}

static void test_sweep_erases_every_expired_enrolee_and_nothing_else(void **state)
{
    fixture_store *fs = *state;
    m2mhsm_time t0 = fs->now;
    const char *old = "//sp.example.com/cse1/Cold", *young = "//sp.example.com/cse1/Cyoung",
               *early = "//sp.example.com/cse1/Cearly", *tgt = "//sp.example.com/cse1/Ctgt";
    check(m2mhsm_keystore_import_kpm(fs->ks, "sweep-kpm", fixture_key32, 32, t0 + 10, NULL));
    /* Enrolee "old": Ke expires at +50; its Km (stored with no Enrolee-ID, as a Target may
     * hold it) derives from it and must go with it. */
    m2mhsm_record ke_old = fixture_enrol(fs, "sweep-old", old, 0x51, 50);
    m2mhsm_fetched_key orphan_km = {M2MHSM_KIND_KPSA, ke_old.identity, NULL, MAF,
                                    t0 + 5000,        M2MHSM_NEVER};
    check(m2mhsm_keystore_store_fetched(fs->ks, &orphan_km, fixture_key32, 32, NULL));
    /* Enrolee "early": its Km lapses at +20 by local choice; its Ke (Enrolment Expiry) does
     * not, so only the Km goes. */
    m2mhsm_record ke_early = fixture_enrol(fs, "sweep-early", early, 0x53, 5000);
    check(m2mhsm_keystore_derive_store(fs->ks, &ke_early, M2MHSM_DERIVE_KM, MAF, t0 + 20, NULL));
    /* At a Target (no Ke here) two keys of Enrolee "tgt": when the Enrolment Expiry passes
     * for one, all of that Enrolee's credentials go. */
    const char *ke_t1 = "1111111111111111111111111111111A@mef.example.com";
    const char *ke_t2 = "2222222222222222222222222222222B@mef.example.com";
    m2mhsm_fetched_key t1 = {M2MHSM_KIND_KM, ke_t1, tgt, MAF, t0 + 30, M2MHSM_NEVER};
    m2mhsm_fetched_key t2 = {M2MHSM_KIND_KM, ke_t2, tgt, MAF, t0 + 9000, M2MHSM_NEVER};
    check(m2mhsm_keystore_store_fetched(fs->ks, &t1, fixture_key32, 32, NULL));
    check(m2mhsm_keystore_store_fetched(fs->ks, &t2, fixture_key32, 32, NULL));
    m2mhsm_record ke_young = fixture_enrol(fs, "sweep-young", young, 0x52, 5000);
    check(
        m2mhsm_keystore_derive_store(fs->ks, &ke_young, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, NULL));
    size_t before = count_records(fs), erased = 0;

    fs->now = t0 + 19;
    check(m2mhsm_keystore_sweep(fs->ks, &erased));
    assert_int_equal(erased, 0);
    fs->now = t0 + 20; /* early's Km lapses: the Km only */
    check(m2mhsm_keystore_sweep(fs->ks, &erased));
    assert_int_equal(erased, 1);
    assert_false(exists(fs, M2MHSM_KIND_KM, ke_early.identity));
    assert_true(exists(fs, M2MHSM_KIND_KE, ke_early.identity));
    fs->now = t0 + 30; /* tgt's Enrolment Expiry at the Target: both its Km */
    check(m2mhsm_keystore_sweep(fs->ks, &erased));
    assert_int_equal(erased, 2);
    assert_false(exists(fs, M2MHSM_KIND_KM, ke_t2));
    fs->now = t0 + 50; /* old's Ke, and the Kpsa derived from it */
    check(m2mhsm_keystore_sweep(fs->ks, &erased));
    assert_int_equal(erased, 2);
    assert_false(exists(fs, M2MHSM_KIND_KPSA, ke_old.identity));
    assert_int_equal(count_records(fs), before - 5);
    assert_true(exists(fs, M2MHSM_KIND_KM, ke_young.identity));
    /* Kpm is not subject to Enrolment Expiry, even past its own validity end. */
    assert_true(exists(fs, M2MHSM_KIND_KPM, "sweep-kpm"));
    fs->now = t0;
    check(m2mhsm_keystore_erase_enrolee(fs->ks, young, NULL));
    check(m2mhsm_keystore_erase_enrolee(fs->ks, early, NULL));
    check(m2mhsm_keystore_erase_id(fs->ks, "sweep-kpm", NULL));
}

static void test_erase_enrolee_follows_its_ke_to_unnamed_derived_keys(void **state)
{
    fixture_store *fs = *state;
    const char *e = "//sp.example.com/cse1/Ccascade";
    m2mhsm_record ke = fixture_enrol(fs, "cascade-kpm", e, 0x61, 3600);
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KPSA, ke.identity, NULL, MAF, fs->now + 60, M2MHSM_NEVER};
    check(m2mhsm_keystore_store_fetched(fs->ks, &fk, fixture_key32, 32, NULL));
    size_t erased = 0;
    check(m2mhsm_keystore_erase_enrolee(fs->ks, e, &erased));
    assert_int_equal(erased, 2);
    assert_false(exists(fs, M2MHSM_KIND_KPSA, ke.identity));
}

static void test_ke_id_is_found_in_either_hex_case(void **state)
{
    fixture_store *fs = *state;
    m2mhsm_record ke = fixture_enrol(fs, "case-kpm", "//sp.example.com/cse1/Ccase", 0xab, 3600);
    char lower[M2MHSM_KE_ID_MAX + 1];
    strcpy(lower, ke.identity);
    for (int i = 0; i < 32; i++)
        lower[i] = (char)(lower[i] >= 'A' && lower[i] <= 'F' ? lower[i] - 'A' + 'a' : lower[i]);
    assert_string_not_equal(lower, ke.identity);
    assert_true(exists(fs, M2MHSM_KIND_KE, lower));
    check(m2mhsm_keystore_erase_id(fs->ks, lower, NULL));
    assert_false(exists(fs, M2MHSM_KIND_KE, ke.identity));
}

static void test_fetched_key_takes_the_shorter_of_policy_and_lifetime(void **state)
{
    fixture_store *fs = *state;
    const char *ke_id = "3333333333333333333333333333333C@mef.example.com";
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KM, ke_id,       "//sp.example.com/cse1/Cpol", MAF,
                             fs->now + 600,  fs->now + 60};
    m2mhsm_record r;
    check(m2mhsm_keystore_store_fetched(fs->ks, &fk, fixture_key32, 32, &r));
    assert_int_equal(r.expiry, fs->now + 60);
    fk.requested = fs->now + 6000;
    check(m2mhsm_keystore_store_fetched(fs->ks, &fk, fixture_key32, 32, &r));
    assert_int_equal(r.expiry, fs->now + 600);
    assert_int_equal(count_records(fs) > 0, 1);
    check(m2mhsm_keystore_erase_id(fs->ks, ke_id, NULL));
    /* A derived key whose requested lifetime is already over is refused, not stored. */
    m2mhsm_record ke = fixture_enrol(fs, "past-kpm", "//sp.example.com/cse1/Cpast", 0x71, 3600);
    assert_int_equal(
        m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, fs->now, NULL),
        M2MHSM_E_EXPIRED);
    assert_false(exists(fs, M2MHSM_KIND_KM, ke.identity));
    check(m2mhsm_keystore_erase_id(fs->ks, ke.identity, NULL));
}

/* ---- bad input changes nothing ---- */

static void test_bad_input_gets_a_clear_error_and_changes_nothing(void **state)
{
    fixture_store *fs = *state;
    size_t before = count_records(fs);
    char long_id[130];
    memset(long_id, 'k', 129);
    long_id[129] = '\0';
    const char *bad_ids[] = {"", long_id, "k\xc3\xa9y", "sp ace"};
    m2mhsm_expiry_spec hour = {M2MHSM_EXPIRY_DURATION, 3600};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(
            m2mhsm_keystore_import_kpm(fs->ks, bad_ids[i], fixture_key32, 32, M2MHSM_NEVER, NULL),
            M2MHSM_E_INVALID_ARG);
        assert_int_equal(m2mhsm_keystore_configure_enrolee(fs->ks, bad_ids[i], MAF,
                                                           "//sp.example.com/cse1/Cx", &hour),
                         M2MHSM_E_INVALID_ARG);
    }
    m2mhsm_record r;
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KPM, "nul\0id", 6, &r),
                     M2MHSM_E_INVALID_ARG);
    assert_non_null(strstr(m2mhsm_last_error(), "NUL"));
    assert_int_equal(m2mhsm_keystore_lookup(fs->ks, M2MHSM_KIND_KPM, long_id, 129, &r),
                     M2MHSM_E_INVALID_ARG);
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs->ks, "short-kpm", fixture_key32, 8, M2MHSM_NEVER, NULL),
        M2MHSM_E_INVALID_ARG);
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs->ks, "past-kpm", fixture_key32, 32, fs->now - 1, NULL),
        M2MHSM_E_EXPIRED);
    m2mhsm_expiry_spec past = {M2MHSM_EXPIRY_ABSOLUTE, fs->now};
    assert_int_equal(
        m2mhsm_keystore_configure_enrolee(fs->ks, "kpm-x", MAF, "//sp.example.com/cse1/Cx", &past),
        M2MHSM_E_EXPIRED);
    assert_int_equal(m2mhsm_keystore_configure_enrolee(fs->ks, "kpm-x", "MAF!",
                                                       "//sp.example.com/cse1/Cx", &hour),
                     M2MHSM_E_INVALID_ARG);
    uint8_t exported[48] = {0};
    m2mhsm_enrolment e = {"kpm-x", "Bad_FQDN", NULL, NULL, hour};
    assert_int_equal(m2mhsm_keystore_store_ke(fs->ks, &e, exported, NULL), M2MHSM_E_INVALID_ARG);
    assert_int_equal(count_records(fs), before);
    check(m2mhsm_keystore_import_kpm(fs->ks, "dup-kpm", fixture_key32, 32, M2MHSM_NEVER, NULL));
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs->ks, "dup-kpm", fixture_key32, 32, M2MHSM_NEVER, NULL),
        M2MHSM_E_EXISTS);
    assert_int_equal(count_records(fs), before + 1);
    check(m2mhsm_keystore_erase_id(fs->ks, "dup-kpm", NULL));
    assert_int_equal(m2mhsm_keystore_erase_id(fs->ks, "dup-kpm", NULL), M2MHSM_E_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_key_kind_is_sensitive_and_unextractable,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_protection_is_what_the_token_reports, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_usage_flags_are_only_what_each_form_needs, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_token_derivations_equal_the_check_values, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_unwrapped_kpm_has_correct_tls_forms, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_km_lifetime_never_exceeds_ke, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_expiry_boundary_second_before_valid_at_expiry_refused,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_enrolee_erases_its_enrolment_and_keeps_the_kpm,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_erase_enrolee_removes_only_that_enrolee, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_reenrolment_replaces_ke_and_what_derives_from_it,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_erases_every_expired_enrolee_and_nothing_else,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_gets_a_clear_error_and_changes_nothing,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_erase_enrolee_follows_its_ke_to_unnamed_derived_keys,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_ke_id_is_found_in_either_hex_case, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_fetched_key_takes_the_shorter_of_policy_and_lifetime,
                                        store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(
            test_erase_expired_takes_the_enrolee_or_the_unnamed_key_and_never_a_kpm, store_setup,
            store_teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
