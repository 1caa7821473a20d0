/*
 * fault_op: the library paths of the fault-injection sweep that the m2mhsm CLI has no
 * command for, each in a process of its own so that a module abort()s only it. The token
 * comes from M2MHSM_TOKEN, M2MHSM_PIN_SOURCE, M2MHSM_LOCK_FILE and M2MHSM_MODULE, as for
 * the CLI. Exit status: 0 done, 1 failed (the error on stderr), 2 usage.
 *
 *   store-fetched KE_ID KEY_HEXFILE TARGET_ID ENROLEE_ID LIFETIME
 *       what a MAF does with a Km fetched from the MEF (m2mhsm_keystore_store_fetched)
 *   sweep AT
 *       m2mhsm_keystore_sweep with the store's clock at the instant AT
 *   setup AT STAGE DIR
 *       build a sweep's starting state one stage further, with the store's clock at AT so
 *       that its records are as old as the test needs (a repair treats torn records by
 *       age): kpm (Kpm dev-1 from DIR/kpm.hex), ke (dev-1's configuration and a Ke from
 *       DIR/export1.hex), enrolled (a Km derived from it), full (a Kpsa derived from it and
 *       a Km fetched for another Enrolee, from DIR/km.hex)
 *   wrap-kpm KEK_LABEL KPM_HEXFILE OUT
 *       make an AES-256 KEK labelled KEK_LABEL in the token and write the Kpm wrapped
 *       under it (RFC 3394) to OUT, as a key-distribution system would deliver it
 *   tls 1.2|1.3 KPM_ID KPM_HEXFILE [MEF_FQDN ENROLEE_ID TARGET_ID EXPIRY]
 *       a handshake of a token-backed server (the MEF's side) with a plain OpenSSL client
 *       holding the Kpm in memory; with the enrolment arguments the server then exports
 *       the Ke into the store as the MEF does (m2mhsm_tls_export_ke)
 *
 * Instants (LIFETIME, AT, EXPIRY) are m2m:timestamps, YYYYMMDDThhmmss.
 */
#include "tls_pair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <m2mhsm/tls.h>
#include "p11/handles.h"

typedef struct {
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_time at; /* the clock, if fixed */
} store;

static int fail(const char *what, m2mhsm_status st)
{
    fprintf(stderr, "fault_op: %s: %s (%s)\n", what, m2mhsm_last_error(), m2mhsm_status_name(st));
    return 1;
}

static m2mhsm_time fixed_clock(void *arg)
{
    return ((store *)arg)->at;
}

static int store_open(store *s, int fixed)
{
    const char *lock = getenv("M2MHSM_LOCK_FILE");
    m2mhsm_token_config cfg = {.token_uri = getenv("M2MHSM_TOKEN"),
                               .pin_source = getenv("M2MHSM_PIN_SOURCE"),
                               .lock_file = lock != NULL && lock[0] != '\0' ? lock : NULL};
    m2mhsm_keystore_options opts = {.clock = fixed ? fixed_clock : NULL, .clock_arg = s};
    m2mhsm_status st = m2mhsm_token_open(&cfg, &s->tok);
    if (st != M2MHSM_OK)
        return fail("opening the token", st);
    if ((st = m2mhsm_keystore_open(s->tok, &opts, &s->ks, NULL)) != M2MHSM_OK) {
        m2mhsm_token_close(s->tok);
        return fail("opening the key store", st);
    }
    return 0;
}

static void store_close(store *s)
{
    m2mhsm_keystore_close(s->ks);
    m2mhsm_token_close(s->tok);
}

/* At most cap bytes of hex from a file; the caller cleanses buf. */
static int read_hex(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "r");
    unsigned v;
    *len = 0;
    while (f != NULL && *len < cap && fscanf(f, "%2x", &v) == 1)
        buf[(*len)++] = (uint8_t)v;
    if (f != NULL)
        fclose(f);
    if (*len == 0)
        fprintf(stderr, "fault_op: %s: no hex key\n", path);
    return *len > 0 ? 0 : 1;
}

static int instant(const char *text, m2mhsm_time *out)
{
    if (m2mhsm_timestamp_parse(text, out) == M2MHSM_OK)
        return 0;
    fprintf(stderr, "fault_op: %s: %s\n", text, m2mhsm_last_error());
    return 2;
}

static int store_fetched(char **argv)
{
    uint8_t key[64];
    size_t len = 0;
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KM, argv[0], argv[3], argv[2], 0, M2MHSM_NEVER};
    int rc = instant(argv[4], &fk.lifetime);
    if (rc == 0)
        rc = read_hex(argv[1], key, sizeof(key), &len);
    store s;
    if (rc == 0 && (rc = store_open(&s, 0)) == 0) {
        m2mhsm_status st = m2mhsm_keystore_store_fetched(s.ks, &fk, key, len, NULL);
        rc = st == M2MHSM_OK ? 0 : fail("store_fetched", st);
        store_close(&s);
    }
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

static int sweep(char **argv)
{
    store s;
    int rc = instant(argv[0], &s.at);
    if (rc != 0 || (rc = store_open(&s, 1)) != 0)
        return rc;
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_sweep(s.ks, &n);
    store_close(&s);
    if (st != M2MHSM_OK)
        return fail("sweep", st);
    printf("swept %zu\n", n);
    return 0;
}

static int make_kek(store *s, const char *label, const uint8_t value[32])
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &t, sizeof(t)},     {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)}, {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_UNWRAP, &t, sizeof(t)},    {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)value, 32},
    };
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(s->tok);
    CK_SESSION_HANDLE sh;
    CK_OBJECT_HANDLE h;
    m2mhsm_status st = m2mhsm_token_session_get(s->tok, &sh);
    if (st != M2MHSM_OK)
        return fail("making the KEK", st);
    CK_RV rv = fn->C_CreateObject(sh, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    m2mhsm_token_session_put(s->tok, sh);
    if (rv != CKR_OK)
        fprintf(stderr, "fault_op: C_CreateObject(KEK): %s\n", m2mhsm_ckr_name(rv));
    return rv == CKR_OK ? 0 : 1;
}

static int wrap_kpm(char **argv)
{
    uint8_t kek[32], kpm[64], wrapped[80];
    size_t len = 0;
    int wlen = 0, fin = 0;
    int rc = read_hex(argv[1], kpm, sizeof(kpm), &len);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (rc == 0 && (c == NULL || RAND_bytes(kek, sizeof(kek)) != 1 ||
                    EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL) != 1 ||
                    EVP_EncryptUpdate(c, wrapped, &wlen, kpm, (int)len) != 1 ||
                    EVP_EncryptFinal_ex(c, wrapped + wlen, &fin) != 1))
        rc = 1;
    EVP_CIPHER_CTX_free(c);
    store s;
    if (rc == 0 && (rc = store_open(&s, 0)) == 0) {
        rc = make_kek(&s, argv[0], kek);
        store_close(&s);
    }
    FILE *out = rc == 0 ? fopen(argv[2], "wb") : NULL;
    if (rc == 0 && (out == NULL || fwrite(wrapped, 1, (size_t)(wlen + fin), out) == 0))
        rc = 1;
    if (out != NULL)
        fclose(out);
    OPENSSL_cleanse(kek, sizeof(kek));
    OPENSSL_cleanse(kpm, sizeof(kpm));
    return rc;
}

/* ---- setup ---- */

#define SETUP_ENROLEE "//sp.example.com/cse1/Cdev1"
#define SETUP_EXPIRY ((m2mhsm_expiry_spec){M2MHSM_EXPIRY_ABSOLUTE, 2524608000}) /* 2050 */

static int read_key(const char *dir, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return read_hex(path, buf, cap, len);
}

/* The store's only Ke. */
static m2mhsm_status the_ke(store *s, m2mhsm_record *ke)
{
    m2mhsm_record *recs = NULL;
    size_t n = 0, found = 0;
    m2mhsm_status st = m2mhsm_keystore_list(s->ks, &recs, &n);
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++)
        if (recs[i].kind == M2MHSM_KIND_KE && found++ == 0)
            *ke = recs[i];
    free(recs);
    if (st == M2MHSM_OK && found != 1)
        st = M2MHSM_E_NOT_FOUND;
    return st;
}

static m2mhsm_status setup_stage(store *s, const char *stage, const char *dir)
{
    uint8_t key[64];
    size_t len = 0;
    m2mhsm_record ke;
    m2mhsm_status st = M2MHSM_E_INVALID_ARG;
    if (strcmp(stage, "kpm") == 0) {
        if (read_key(dir, "kpm.hex", key, sizeof(key), &len) == 0)
            st = m2mhsm_keystore_import_kpm(s->ks, "dev-1", key, len, M2MHSM_NEVER, NULL);
    } else if (strcmp(stage, "ke") == 0) {
        m2mhsm_enrolment e = {"dev-1", "mef.example.com", SETUP_ENROLEE, "maf.example.com",
                              SETUP_EXPIRY};
        st = m2mhsm_keystore_configure_enrolee(s->ks, "dev-1", "maf.example.com", SETUP_ENROLEE,
                                               &e.enrolment_expiry);
        if (st == M2MHSM_OK && read_key(dir, "export1.hex", key, sizeof(key), &len) == 0 &&
            len == M2MHSM_EXPORT_LEN)
            st = m2mhsm_keystore_store_ke(s->ks, &e, key, NULL);
    } else if (strcmp(stage, "enrolled") == 0) {
        if ((st = the_ke(s, &ke)) == M2MHSM_OK)
            st = m2mhsm_keystore_derive_store(s->ks, &ke, M2MHSM_DERIVE_KM, "maf.example.com",
                                              2208988800 /* 2040 */, NULL);
    } else if (strcmp(stage, "full") == 0) {
        m2mhsm_fetched_key fk = {M2MHSM_KIND_KM,
                                 "00112233445566778899AABBCCDDEEFF@mef.example.com",
                                 "//sp.example.com/cse1/Cdev2",
                                 "maf.example.com",
                                 2208988800,
                                 M2MHSM_NEVER};
        if ((st = the_ke(s, &ke)) == M2MHSM_OK)
            st = m2mhsm_keystore_derive_store(s->ks, &ke, M2MHSM_DERIVE_KPSA,
                                              "//sp.example.com/cse2", M2MHSM_NEVER, NULL);
        if (st == M2MHSM_OK && read_key(dir, "km.hex", key, sizeof(key), &len) == 0)
            st = m2mhsm_keystore_store_fetched(s->ks, &fk, key, len, NULL);
    }
    OPENSSL_cleanse(key, sizeof(key));
    return st;
}

static int setup(char **argv)
{
    store s;
    int rc = instant(argv[0], &s.at);
    if (rc != 0 || (rc = store_open(&s, 1)) != 0)
        return rc;
    m2mhsm_status st = setup_stage(&s, argv[1], argv[2]);
    store_close(&s);
    return st == M2MHSM_OK ? 0 : fail(argv[1], st);
}

/* ---- tls ---- */

static uint8_t client_psk[64];
static size_t client_psk_len;
static const char *client_identity;

static unsigned int plain_client_psk(SSL *ssl, const char *hint, char *id, unsigned int id_len,
                                     unsigned char *psk, unsigned int psk_len)
{
    (void)ssl;
    (void)hint;
    if (strlen(client_identity) >= id_len || client_psk_len > psk_len)
        return 0;
    strcpy(id, client_identity);
    memcpy(psk, client_psk, client_psk_len);
    return (unsigned int)client_psk_len;
}

static SSL_CTX *plain_client(int tls13)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (c == NULL)
        return NULL;
    if (tls13) {
        SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
        SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256");
    } else {
        SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
        SSL_CTX_set_cipher_list(c, "PSK-AES128-CBC-SHA256");
    }
    SSL_CTX_set_psk_client_callback(c, plain_client_psk);
    return c;
}

/* The handshake, then (enr != NULL) the Ke export into the store. */
static int handshake(store *s, int tls13, const m2mhsm_enrolment *enr)
{
    m2mhsm_tls *tls = NULL;
    SSL_CTX *sctx = NULL, *cctx = plain_client(tls13);
    m2mhsm_tls_profile p = {.role = M2MHSM_TLS_SERVER,
                            .proto = tls13 ? M2MHSM_TLS_1_3 : M2MHSM_TLS_1_2,
                            .kind = M2MHSM_KIND_KPM};
    m2mhsm_status st = m2mhsm_tls_new(s->ks, &tls);
    if (st == M2MHSM_OK)
        st = m2mhsm_tls_ctx_new(tls, &p, &sctx);
    if (st != M2MHSM_OK || cctx == NULL) {
        SSL_CTX_free(cctx);
        m2mhsm_tls_free(tls);
        return st != M2MHSM_OK ? fail("TLS context", st) : 1;
    }
    SSL *server = SSL_new(sctx), *client = SSL_new(cctx);
    int rc = 0;
    if (server == NULL || client == NULL || !tls_pair_handshake(server, client)) {
        /* The library has said why on its side; libssl's reason is the peer's view. */
        unsigned long e = ERR_peek_last_error();
        fprintf(stderr, "fault_op: handshake failed: %s; %s\n",
                e ? ERR_reason_error_string(e) : "no libssl error", m2mhsm_last_error());
        rc = 1;
    } else if (enr != NULL) {
        m2mhsm_record ke;
        if ((st = m2mhsm_tls_export_ke(server, s->ks, enr, &ke)) != M2MHSM_OK)
            rc = fail("exporting the Ke", st);
    }
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    m2mhsm_tls_free(tls);
    return rc;
}

static int tls(int argc, char **argv)
{
    int tls13 = strcmp(argv[0], "1.3") == 0;
    if (!tls13 && strcmp(argv[0], "1.2") != 0)
        return 2;
    client_identity = argv[1];
    m2mhsm_enrolment enr = {argv[1], NULL, NULL, NULL, {M2MHSM_EXPIRY_ABSOLUTE, 0}};
    int rc = argc == 7 ? instant(argv[6], &enr.enrolment_expiry.value) : 0;
    if (argc == 7) {
        enr.mef_fqdn = argv[3];
        enr.enrolee_id = argv[4];
        enr.target_id = argv[5];
    }
    if (rc == 0)
        rc = read_hex(argv[2], client_psk, sizeof(client_psk), &client_psk_len);
    store s;
    if (rc == 0 && (rc = store_open(&s, 0)) == 0) {
        rc = handshake(&s, tls13, argc == 7 ? &enr : NULL);
        store_close(&s);
    }
    OPENSSL_cleanse(client_psk, sizeof(client_psk));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "store-fetched") == 0)
        return store_fetched(argv + 2);
    if (argc == 3 && strcmp(argv[1], "sweep") == 0)
        return sweep(argv + 2);
    if (argc == 5 && strcmp(argv[1], "setup") == 0)
        return setup(argv + 2);
    if (argc == 5 && strcmp(argv[1], "wrap-kpm") == 0)
        return wrap_kpm(argv + 2);
    if ((argc == 5 || argc == 9) && strcmp(argv[1], "tls") == 0)
        return tls(argc - 2, argv + 2);
    fputs("usage: fault_op store-fetched KE_ID KEY_HEXFILE TARGET_ID ENROLEE_ID LIFETIME\n"
          "       fault_op sweep AT\n"
          "       fault_op setup AT kpm|ke|enrolled|full DIR\n"
          "       fault_op wrap-kpm KEK_LABEL KPM_HEXFILE OUT\n"
          "       fault_op tls 1.2|1.3 KPM_ID KPM_HEXFILE [MEF_FQDN ENROLEE_ID TARGET_ID "
          "EXPIRY]\n",
          stderr);
    return 2;
}
