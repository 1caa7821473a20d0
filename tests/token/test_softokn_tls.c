/*
 * A Km that never existed in host memory keys a handshake with a stock OpenSSL peer: on NSS
 * softokn, Km is derived from Ke in the token (CKM_HKDF_DERIVE, Ke as the salt key), its
 * TLS 1.3 form too, and its TLS 1.2 form by C_DigestKey; the m2mhsm provider runs the server
 * side on those objects through a PSK handle, and a client in OpenSSL's default library
 * context, holding Km as bytes (HMAC-SHA-256(Ke, message), as `openssl mac` computes it),
 * completes TLS 1.2 and TLS 1.3 handshakes with it. A client holding another key does not.
 * The key store's records cannot be written on softokn before its templates adapt to the
 * module (the `kinds` work), so the record here is made by hand from the derived objects.
 */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "handle.h"
#include "keystore/ks.h"
#include "prov.h"
#include "tls_pair.h"
#include "fixture.h"
#include "softokn.h"

#define KE_ID "0123456789ABCDEF0123456789ABCDEF@mef.example.com"
#define MAF "maf.example.com"

static softokn_db nss;

typedef struct {
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_handles *handles;
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *dflt, *ours;
    CK_OBJECT_HANDLE made[4];
    size_t nmade;
    m2mhsm_record km;
    uint8_t peer_key[32]; /* what the stock client holds */
} tls_fixture;

static tls_fixture *current;

static void check(m2mhsm_status st)
{
    if (st != M2MHSM_OK)
        fail_msg("%s: %s", m2mhsm_status_name(st), m2mhsm_last_error());
}

/* HMAC-SHA-256 with OpenSSL's EVP_MAC, the API `openssl mac` drives. */
static void openssl_mac(const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen,
                        uint8_t out[32])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t len = 0;
    assert_non_null(ctx);
    assert_int_equal(EVP_MAC_init(ctx, key, klen, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, msg, mlen), 1);
    assert_int_equal(EVP_MAC_final(ctx, out, &len, 32), 1);
    assert_int_equal(len, 32);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

static CK_OBJECT_HANDLE keep(tls_fixture *f, CK_OBJECT_HANDLE h)
{
    f->made[f->nmade++] = h;
    return h;
}

static CK_ULONG key_template(CK_ATTRIBUTE *a, CK_BBOOL *t, CK_BBOOL *f, CK_OBJECT_CLASS *cls,
                             CK_KEY_TYPE *type, CK_BBOOL derive)
{
    *cls = CKO_SECRET_KEY;
    *type = CKK_GENERIC_SECRET;
    *t = CK_TRUE;
    *f = CK_FALSE;
    CK_ULONG n = 0;
    a[n++] = (CK_ATTRIBUTE){CKA_CLASS, cls, sizeof(*cls)};
    a[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, type, sizeof(*type)};
    a[n++] = (CK_ATTRIBUTE){CKA_TOKEN, f, sizeof(CK_BBOOL)};
    a[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, t, sizeof(CK_BBOOL)};
    a[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, t, sizeof(CK_BBOOL)};
    a[n++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, f, sizeof(CK_BBOOL)};
    a[n++] = (CK_ATTRIBUTE){CKA_SIGN, t, sizeof(CK_BBOOL)};
    a[n++] = (CK_ATTRIBUTE){CKA_DERIVE, derive ? t : f, sizeof(CK_BBOOL)};
    return n;
}

/* Ke (the check vector 00..1f), then Km, tls13-es and tls12-pms on the token. */
static void derive_forms(tls_fixture *f)
{
    CK_ATTRIBUTE a[10];
    CK_BBOOL t, fa;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE type;
    CK_ULONG n = key_template(a, &t, &fa, &cls, &type, CK_FALSE);
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(f->tok);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(f->tok, &s));
    a[n] = (CK_ATTRIBUTE){CKA_VALUE, (void *)fixture_key32, 32};
    CK_OBJECT_HANDLE ke, km, es, pms;
    assert_int_equal(fn->C_CreateObject(s, a, n + 1, &ke), CKR_OK);
    keep(f, ke);
    uint8_t *msg = NULL;
    size_t len = 0;
    check(m2mhsm_derivation_input(M2MHSM_DERIVE_KM, MAF, &msg, &len));
    CK_ULONG nd = key_template(a, &t, &fa, &cls, &type, CK_TRUE);
    check(m2mhsm_token_hmac_derive(f->tok, ke, msg, len, a, nd, &km));
    keep(f, km);
    check(m2mhsm_token_hkdf_extract_key(f->tok, km, a, n, &es));
    keep(f, es);
    /* SHA-256([00 20][32 zeros][00 20] || Km): the 68-byte premaster's HMAC key (derive.h). */
    uint8_t prefix[36] = {0}, form[32];
    prefix[1] = 32;
    prefix[35] = 32;
    check(ks_digest_key(fn, s, km, prefix, sizeof(prefix), form));
    a[n] = (CK_ATTRIBUTE){CKA_VALUE, form, sizeof(form)};
    assert_int_equal(fn->C_CreateObject(s, a, n + 1, &pms), CKR_OK);
    OPENSSL_cleanse(form, sizeof(form));
    keep(f, pms);
    m2mhsm_token_session_put(f->tok, s);
    /* The peer's Km, from the same test vector on the host. */
    openssl_mac(fixture_key32, 32, msg, len, f->peer_key);
    free(msg);

    m2mhsm_record *r = &f->km;
    memset(r, 0, sizeof(*r));
    r->kind = M2MHSM_KIND_KM;
    strcpy(r->identity, KE_ID);
    strcpy(r->ke_id, KE_ID);
    strcpy(r->target_id, MAF);
    r->created = time(NULL);
    r->expiry = r->created + 3600;
    r->forms = M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13;
    r->derived_in_token = 1;
    assert_int_equal(RAND_bytes(r->record_id, M2MHSM_RECORD_ID_LEN), 1);
    ks_obj(r)->key[M2MHSM_FORM_TLS12_PMS] = pms;
    ks_obj(r)->key[M2MHSM_FORM_TLS13_ES] = es;
    ks_obj(r)->generation = m2mhsm_token_generation(f->tok);
}

static int setup(void **state)
{
    tls_fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->tok = softokn_open(&nss);
    assert_int_equal(m2mhsm_token_caps_get(f->tok)->hkdf_derive, 1);
    m2mhsm_keystore_options o = {.read_only = 1};
    check(m2mhsm_keystore_open(f->tok, &o, &f->ks, NULL));
    check(m2mhsm_handles_new(f->ks, &f->handles));
    f->libctx = OSSL_LIB_CTX_new();
    assert_non_null(f->libctx);
    assert_int_equal(OSSL_PROVIDER_add_builtin(f->libctx, M2MHSM_PROV_NAME, m2mhsm_provider_init),
                     1);
    assert_non_null(f->dflt = OSSL_PROVIDER_load(f->libctx, "default"));
    assert_non_null(f->ours = OSSL_PROVIDER_load(f->libctx, M2MHSM_PROV_NAME));
    ((m2mhsm_provctx *)OSSL_PROVIDER_get0_provider_ctx(f->ours))->handles = f->handles;
    derive_forms(f);
    current = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    tls_fixture *f = *state;
    OSSL_PROVIDER_unload(f->ours);
    OSSL_PROVIDER_unload(f->dflt);
    OSSL_LIB_CTX_free(f->libctx);
    m2mhsm_handles_free(f->handles);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(f->tok, &s));
    while (f->nmade > 0)
        m2mhsm_token_functions(f->tok)->C_DestroyObject(s, f->made[--f->nmade]);
    m2mhsm_token_session_put(f->tok, s);
    m2mhsm_keystore_close(f->ks);
    m2mhsm_token_close(f->tok);
    OPENSSL_cleanse(f, sizeof(*f));
    free(f);
    return 0;
}

/* Our server: the PSK it hands libssl is a handle to the record, never key bytes. */
static unsigned int server_psk(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max)
{
    (void)ssl;
    if (identity == NULL || strcmp(identity, KE_ID) != 0 || max < M2MHSM_HANDLE_LEN ||
        m2mhsm_handles_issue(current->handles, &current->km, psk) != M2MHSM_OK)
        return 0;
    return M2MHSM_HANDLE_LEN;
}

/* The stock client: Km as bytes. */
static unsigned int client_psk(SSL *ssl, const char *hint, char *identity, unsigned int max_id,
                               unsigned char *psk, unsigned int max)
{
    (void)ssl;
    (void)hint;
    if (max_id < sizeof(KE_ID) || max < 32)
        return 0;
    strcpy(identity, KE_ID);
    memcpy(psk, current->peer_key, 32);
    return 32;
}

static int handshake(tls_fixture *f, int version)
{
    SSL_CTX *sc = SSL_CTX_new_ex(f->libctx, "?provider=" M2MHSM_PROV_NAME, TLS_server_method());
    SSL_CTX *cc = SSL_CTX_new(TLS_client_method());
    assert_non_null(sc);
    assert_non_null(cc);
    SSL_CTX *both[] = {sc, cc};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(SSL_CTX_set_min_proto_version(both[i], version), 1);
        assert_int_equal(SSL_CTX_set_max_proto_version(both[i], version), 1);
        assert_int_equal(SSL_CTX_set_cipher_list(both[i], "PSK-AES128-CBC-SHA256"), 1);
        assert_int_equal(SSL_CTX_set_ciphersuites(both[i], "TLS_AES_128_GCM_SHA256"), 1);
        SSL_CTX_set_options(both[i], SSL_OP_NO_TICKET);
    }
    SSL_CTX_set_psk_server_callback(sc, server_psk);
    SSL_CTX_set_psk_client_callback(cc, client_psk);
    SSL *s = SSL_new(sc), *c = SSL_new(cc);
    int ok = tls_pair_handshake(s, c);
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(sc);
    SSL_CTX_free(cc);
    return ok;
}

static void test_km_derived_in_softokn_keys_a_tls12_handshake(void **state)
{
    tls_fixture *f = *state;
    assert_true(handshake(f, TLS1_2_VERSION));
}

static void test_km_derived_in_softokn_keys_a_tls13_handshake(void **state)
{
    tls_fixture *f = *state;
    assert_true(handshake(f, TLS1_3_VERSION));
}

/* The handshakes hang on the key: a peer holding another one fails both. */
static void test_a_peer_with_another_key_fails(void **state)
{
    tls_fixture *f = *state;
    f->peer_key[0] ^= 1;
    assert_false(handshake(f, TLS1_2_VERSION));
    assert_false(handshake(f, TLS1_3_VERSION));
    f->peer_key[0] ^= 1;
}

int main(void)
{
    softokn_db_make(&nss, "tls");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_km_derived_in_softokn_keys_a_tls12_handshake, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_km_derived_in_softokn_keys_a_tls13_handshake, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_peer_with_another_key_fails, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
