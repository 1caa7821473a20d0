/* The provider's KDFs: every input without a PSK handle gives exactly the default
 * provider's result (thousands of random inputs, every mode and digest libssl uses), and an
 * input with a handle-shaped PSK is refused, never computed with the handle as key. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>

#include "handle.h"
#include "tls_pair.h"
#include "prov.h"

#define ROUNDS 3000

static OSSL_LIB_CTX *libctx;
static OSSL_PROVIDER *dflt, *ours;
static EVP_KDF *prf_d, *prf_m, *t13_d, *t13_m;

static int setup(void **state)
{
    (void)state;
    libctx = OSSL_LIB_CTX_new();
    assert_int_equal(OSSL_PROVIDER_add_builtin(libctx, M2MHSM_PROV_NAME, m2mhsm_provider_init), 1);
    assert_non_null(dflt = OSSL_PROVIDER_load(libctx, "default"));
    assert_non_null(ours = OSSL_PROVIDER_load(libctx, M2MHSM_PROV_NAME));
    assert_non_null(prf_d = EVP_KDF_fetch(libctx, "TLS1-PRF", "provider=default"));
    assert_non_null(prf_m = EVP_KDF_fetch(libctx, "TLS1-PRF", "provider=m2mhsm"));
    assert_non_null(t13_d = EVP_KDF_fetch(libctx, "TLS13-KDF", "provider=default"));
    assert_non_null(t13_m = EVP_KDF_fetch(libctx, "TLS13-KDF", "provider=m2mhsm"));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_KDF_free(prf_d);
    EVP_KDF_free(prf_m);
    EVP_KDF_free(t13_d);
    EVP_KDF_free(t13_m);
    OSSL_PROVIDER_unload(ours);
    OSSL_PROVIDER_unload(dflt);
    OSSL_LIB_CTX_free(libctx);
    return 0;
}

static unsigned rnd(unsigned n)
{
    unsigned v;
    RAND_bytes((unsigned char *)&v, sizeof(v));
    return v % n;
}

/* Derive with kdf and params; returns 1 on success, the output in out. */
static int derive(EVP_KDF *kdf, const OSSL_PARAM *p1, const OSSL_PARAM *p2, uint8_t *out,
                  size_t len)
{
    EVP_KDF_CTX *c = EVP_KDF_CTX_new(kdf);
    assert_non_null(c);
    int ok = EVP_KDF_CTX_set_params(c, p1) && (p2 == NULL || EVP_KDF_CTX_set_params(c, p2)) &&
             EVP_KDF_derive(c, out, len, NULL) == 1;
    EVP_KDF_CTX_free(c);
    return ok;
}

static void test_tls1_prf_is_byte_identical_to_default(void **state)
{
    (void)state;
    static const char *digests[] = {"SHA256", "SHA384", "MD5-SHA1", "SHA512"};
    int compared = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint8_t secret[100], seeds[5][64], a[256], b[256];
        size_t slen = 1 + rnd(sizeof(secret)), olen = 1 + rnd(sizeof(a)), nseeds = 1 + rnd(5);
        RAND_bytes(secret, sizeof(secret));
        RAND_bytes(&seeds[0][0], sizeof(seeds));
        OSSL_PARAM p[8], q[3];
        size_t n = 0;
        p[n++] =
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digests[rnd(4)], 0);
        p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, slen);
        for (size_t i = 0; i < nseeds; i++)
            p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seeds[i], 1 + rnd(64));
        p[n] = OSSL_PARAM_construct_end();
        /* Seeds given in a second call append, as libssl may do. */
        q[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seeds[4], rnd(64));
        q[1] = OSSL_PARAM_construct_end();
        const OSSL_PARAM *second = rnd(2) ? q : NULL;
        int ok_d = derive(prf_d, p, second, a, olen);
        int ok_m = derive(prf_m, p, second, b, olen);
        assert_int_equal(ok_d, ok_m);
        if (ok_d)
            assert_memory_equal(a, b, olen);
        compared += ok_d;
    }
    assert_int_equal(compared, ROUNDS); /* every input is valid: none compared vacuously */
}

static void test_tls13_kdf_is_byte_identical_to_default(void **state)
{
    (void)state;
    static const char *digests[] = {"SHA256", "SHA384"};
    int compared = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint8_t key[64], salt[64], label[40], data[64], a[64], b[64];
        RAND_bytes(key, sizeof(key));
        RAND_bytes(salt, sizeof(salt));
        RAND_bytes(label, sizeof(label));
        RAND_bytes(data, sizeof(data));
        const char *md = digests[rnd(2)];
        /* The modes libssl uses: 1 extract only, 2 expand only (TLS13-KDF has no other). */
        int mode = 1 + (int)rnd(2);
        size_t mdlen = strcmp(md, "SHA256") == 0 ? 32 : 48;
        size_t olen = mode == 1 ? mdlen : 1 + rnd(sizeof(a));
        OSSL_PARAM p[9];
        size_t n = 0;
        p[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
        p[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
        p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key,
                                                   mode == 2 ? mdlen : 1 + rnd(64));
        if (rnd(2))
            p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, 1 + rnd(64));
        p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, "tls13 ", 6);
        p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, label, 1 + rnd(40));
        p[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, data, rnd(64));
        p[n] = OSSL_PARAM_construct_end();
        int ok_d = derive(t13_d, p, NULL, a, olen);
        int ok_m = derive(t13_m, p, NULL, b, olen);
        assert_int_equal(ok_d, ok_m);
        if (ok_d)
            assert_memory_equal(a, b, olen);
        compared += ok_d;
    }
    assert_int_equal(compared, ROUNDS);
}

static void handle_bytes(uint8_t h[M2MHSM_HANDLE_LEN])
{
    RAND_bytes(h, M2MHSM_HANDLE_LEN);
    memcpy(h, M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN);
}

static void test_a_handle_is_never_used_as_key_bytes(void **state)
{
    (void)state;
    uint8_t h[M2MHSM_HANDLE_LEN], pms[4 + 2 * M2MHSM_HANDLE_LEN] = {0}, out[48];
    handle_bytes(h);
    pms[1] = M2MHSM_HANDLE_LEN;
    pms[3 + M2MHSM_HANDLE_LEN] = M2MHSM_HANDLE_LEN;
    memcpy(pms + 4 + M2MHSM_HANDLE_LEN, h, M2MHSM_HANDLE_LEN);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, pms, sizeof(pms)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, "master secret", 13),
        OSSL_PARAM_construct_end(),
    }; /* The default provider would happily key HMAC with it; ours must refuse. */
    assert_int_equal(derive(prf_d, p, NULL, out, sizeof(out)), 1);
    assert_int_equal(derive(prf_m, p, NULL, out, sizeof(out)), 0);
    /* Also inside an (EC)DHE-PSK premaster [u16 32][ECDH secret][u16 28][handle]. */
    uint8_t ecdhe[4 + 32 + M2MHSM_HANDLE_LEN] = {0, 32};
    RAND_bytes(ecdhe + 2, 32);
    ecdhe[34] = 0;
    ecdhe[35] = M2MHSM_HANDLE_LEN;
    memcpy(ecdhe + 36, h, M2MHSM_HANDLE_LEN);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, ecdhe, sizeof(ecdhe));
    assert_int_equal(derive(prf_d, p, NULL, out, sizeof(out)), 1);
    assert_int_equal(derive(prf_m, p, NULL, out, sizeof(out)), 0);
    int mode = 1;
    OSSL_PARAM q[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, h, sizeof(h)),
        OSSL_PARAM_construct_end(),
    };
    assert_int_equal(derive(t13_d, q, NULL, out, 32), 1);
    assert_int_equal(
        derive(t13_m, q, NULL, out, 32),
        0); /* A handle as a salt, or as the key next to an early-secret salt, is refused too. */
    uint8_t es[M2MHSM_ES_HANDLE_LEN] = {0};
    m2mhsm_es_handle_from(h, es);
    OSSL_PARAM r[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, h, sizeof(h)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, "tls13 ", 6),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, "derived", 7),
        OSSL_PARAM_construct_end(),
    };
    assert_int_equal(derive(t13_m, r, NULL, out, 32), 0);
    OSSL_PARAM r2[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, es, sizeof(es)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, h, sizeof(h)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, "tls13 ", 6),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, "derived", 7),
        OSSL_PARAM_construct_end(),
    };
    assert_int_equal(derive(t13_m, r2, NULL, out, 32), 0);
    /* The same bytes one short of a handle are an ordinary PSK and are delegated. */
    q[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, h, sizeof(h) - 1);
    assert_int_equal(derive(t13_m, q, NULL, out, 32), 1);
}

/* ---- through libssl ---- */

static uint8_t psk_bytes[M2MHSM_HANDLE_LEN];

static unsigned int client_psk(SSL *ssl, const char *hint, char *id, unsigned int id_len,
                               unsigned char *psk, unsigned int psk_len)
{
    (void)ssl;
    (void)hint;
    (void)psk_len;
    snprintf(id, id_len, "dev-1");
    memcpy(psk, psk_bytes, sizeof(psk_bytes));
    return sizeof(psk_bytes);
}

static unsigned int server_psk(SSL *ssl, const char *id, unsigned char *psk, unsigned int psk_len)
{
    (void)ssl;
    (void)id;
    (void)psk_len;
    memcpy(psk, psk_bytes, sizeof(psk_bytes));
    return sizeof(psk_bytes);
}

/* One TLS 1.2 PSK handshake in memory, in a library context whose KDFs come from `props`. */
static int handshake(const char *props)
{
    SSL_CTX *sc = SSL_CTX_new_ex(libctx, props, TLS_server_method());
    SSL_CTX *cc = SSL_CTX_new_ex(libctx, props, TLS_client_method());
    assert_non_null(sc);
    assert_non_null(cc);
    for (SSL_CTX *c = sc; c != NULL; c = c == sc ? cc : NULL) {
        SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
        SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
        assert_int_equal(SSL_CTX_set_cipher_list(c, "PSK-AES128-CBC-SHA256"), 1);
    }
    SSL_CTX_set_psk_server_callback(sc, server_psk);
    SSL_CTX_set_psk_client_callback(cc, client_psk);
    SSL *s = SSL_new(sc), *c = SSL_new(cc);
    int done = tls_pair_handshake(s, c);
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(sc);
    SSL_CTX_free(cc);
    return done;
}

static void test_libssl_uses_our_kdfs_and_they_refuse_handles(void **state)
{
    (void)state;
    RAND_bytes(psk_bytes, sizeof(psk_bytes));
    assert_true(handshake("?provider=m2mhsm")); /* an ordinary PSK: delegated */
    memcpy(psk_bytes, M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN);
    assert_true(handshake("provider=default")); /* the default PRF takes any bytes */
    /* Ours refuses the unknown handle: so libssl did fetch our TLS1-PRF. */
    assert_false(handshake("?provider=m2mhsm"));
}

/* An octet-string parameter with NULL data and a non-zero size (a caller's bug) is refused
 * by every KDF parameter we read, as the default provider refuses it; never read. */
static void test_null_data_parameters_are_refused(void **state)
{
    (void)state;
    static const char *const tls13_names[] = {OSSL_KDF_PARAM_KEY, OSSL_KDF_PARAM_SALT,
                                              OSSL_KDF_PARAM_PREFIX, OSSL_KDF_PARAM_LABEL,
                                              OSSL_KDF_PARAM_DATA};
    OSSL_PARAM p[2] = {OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, NULL, 48),
                       OSSL_PARAM_construct_end()};
    EVP_KDF_CTX *c = EVP_KDF_CTX_new(prf_m);
    assert_non_null(c);
    assert_int_equal(EVP_KDF_CTX_set_params(c, p), 0);
    EVP_KDF_CTX_free(c);
    for (size_t i = 0; i < sizeof(tls13_names) / sizeof(tls13_names[0]); i++) {
        p[0] = OSSL_PARAM_construct_octet_string(tls13_names[i], NULL, 32);
        assert_non_null(c = EVP_KDF_CTX_new(t13_m));
        assert_int_equal(EVP_KDF_CTX_set_params(c, p), 0);
        EVP_KDF_CTX_free(c);
    }
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls1_prf_is_byte_identical_to_default),
        cmocka_unit_test(test_tls13_kdf_is_byte_identical_to_default),
        cmocka_unit_test(test_a_handle_is_never_used_as_key_bytes),
        cmocka_unit_test(test_libssl_uses_our_kdfs_and_they_refuse_handles),
        cmocka_unit_test(test_null_data_parameters_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
