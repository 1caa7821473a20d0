/* X.509 mutual TLS between MEF and Enrolment Targets (TS-0003 8.3.2.1, the CR's change 1)
 * with the private key kept in the token. The EVP_PKEY is the certificate's public key with
 * an EC_KEY_METHOD whose signatures are CKM_ECDSA on the store's own logged-in sessions: one
 * login per process whatever the module does with a second C_Initialize (p11-kit's client
 * opens a second, logged-out connection), and the store's failover serves this key too
 * (docs/deployment-hsm.md, "Login, PINs and processes"). A store on a token without EC
 * (opencryptoki's software token) has the key on a token of its own instead: the
 * "tls_key_pkcs11" section (docs/tokens.md). */
#define OPENSSL_SUPPRESS_DEPRECATED /* EC_KEY_METHOD: how a key's signatures are redirected */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/ec.h>
#include <openssl/x509.h>

typedef struct {
    m2mhsm_token *tok;
    char *label;
} token_key;

static EC_KEY_METHOD *method;
static int key_index = -1;
static m2mhsm_token *tls_tok; /* the tls_key_pkcs11 token, once opened */
static app_token_name tls_tok_name;

/* r || s from the token (PKCS#11 2.3.1) into an ECDSA_SIG. */
static ECDSA_SIG *token_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
                                 const BIGNUM *r, EC_KEY *eckey)
{
    (void)kinv;
    (void)r;
    token_key *k = EC_KEY_get_ex_data(eckey, key_index);
    uint8_t raw[2 * 66];
    size_t raw_len = sizeof(raw);
    if (k == NULL || dlen <= 0)
        return NULL;
    m2mhsm_status st = m2mhsm_token_sign_ecdsa(k->tok, k->label, dgst, (size_t)dlen, raw, &raw_len);
    if (st != M2MHSM_OK || raw_len == 0 || raw_len % 2 != 0) {
        app_log(APP_ERROR, "token-sign-failed", "key_label=%s error=%s", k->label, app_error(st));
        return NULL;
    }
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(raw, (int)(raw_len / 2), NULL);
    BIGNUM *bs = BN_bin2bn(raw + raw_len / 2, (int)(raw_len / 2), NULL);
    if (sig == NULL || br == NULL || bs == NULL || ECDSA_SIG_set0(sig, br, bs) != 1) {
        ECDSA_SIG_free(sig);
        BN_free(br);
        BN_free(bs);
        return NULL;
    }
    return sig;
}

static int token_sign(int type, const unsigned char *dgst, int dlen, unsigned char *der,
                      unsigned int *der_len, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
    (void)type;
    ECDSA_SIG *sig = token_sign_sig(dgst, dlen, kinv, r, eckey);
    unsigned char *p = der;
    int n = sig != NULL ? i2d_ECDSA_SIG(sig, &p) : -1;
    ECDSA_SIG_free(sig);
    if (n < 0)
        return 0;
    *der_len = (unsigned int)n;
    return 1;
}

static void key_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    token_key *k = ptr;
    if (k != NULL) {
        free(k->label);
        free(k);
    }
}

static int ready(void)
{
    if (key_index < 0)
        key_index = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, key_free);
    if (method == NULL && (method = EC_KEY_METHOD_new(EC_KEY_OpenSSL())) != NULL) {
        int (*setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
        EC_KEY_METHOD_get_sign(method, NULL, &setup, NULL);
        EC_KEY_METHOD_set_sign(method, token_sign, setup, token_sign_sig);
    }
    return key_index >= 0 && method != NULL;
}

/* The certificate's public key, signing on the token with the private key labelled label.
 * A first signature at start proves the key is there and signs (CKM_ECDSA). */
static EVP_PKEY *token_private_key(m2mhsm_token *tok, X509 *cert, const char *label)
{
    const EC_KEY *pub = EVP_PKEY_get0_EC_KEY(X509_get0_pubkey(cert));
    static const uint8_t probe[32];
    uint8_t raw[2 * 66];
    size_t raw_len = sizeof(raw);
    m2mhsm_status st = m2mhsm_token_sign_ecdsa(tok, label, probe, sizeof(probe), raw, &raw_len);
    if (st != M2MHSM_OK) {
        fprintf(stderr, "TLS identity: %s\n", app_error(st));
        return NULL;
    }
    if (pub == NULL || !ready()) {
        fprintf(stderr, "TLS identity: the certificate's key is not an EC key\n");
        return NULL;
    }
    token_key *k = calloc(1, sizeof(*k));
    EC_KEY *ec = EC_KEY_dup(pub);
    EVP_PKEY *pkey = EVP_PKEY_new();
    if (k == NULL || (k->label = strdup(label)) == NULL || ec == NULL || pkey == NULL ||
        EC_KEY_set_method(ec, method) != 1 || EC_KEY_set_ex_data(ec, key_index, k) != 1) {
        if (k != NULL)
            free(k->label);
        free(k);
        EC_KEY_free(ec);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->tok = tok;
    if (EVP_PKEY_assign_EC_KEY(pkey, ec) != 1) {
        EC_KEY_free(ec); /* frees k through the ex_data */
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return pkey;
}

static int load_identity(SSL_CTX *ctx, m2mhsm_token *tok, const app_certkey *ck)
{
    EVP_PKEY *pkey = NULL;
    int ok =
        SSL_CTX_use_certificate_chain_file(ctx, ck->certificate) == 1 &&
        (pkey = token_private_key(tok, SSL_CTX_get0_certificate(ctx), ck->key_label)) != NULL &&
        SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    if (!ok)
        fprintf(stderr, "TLS identity: certificate %s does not load with token key \"%s\"\n",
                ck->certificate, ck->key_label);
    return ok;
}

/* The token the key is on: the tls_key_pkcs11 section's, opened (and logged in to) at its
 * first use, or the store's. NULL, printed, if that token does not open. */
static m2mhsm_token *key_token(m2mhsm_token *tok, const app_certkey *ck)
{
    const json_t *sec = ck->tls_key_pkcs11;
    if (sec == NULL || tls_tok != NULL)
        return sec == NULL ? tok : tls_tok;
    m2mhsm_token_config cfg = {0};
    if (app_cfg_str(sec, "tls_key_pkcs11", "module", 1, &cfg.module_path) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "module_init_args", 0, &cfg.init_args) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "token", 1, &cfg.token_uri) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "pin_source", 1, &cfg.pin_source) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "lock_file", 0, &cfg.lock_file) != 0)
        return NULL;
    if (m2mhsm_token_open(&cfg, &tls_tok) != M2MHSM_OK) {
        fprintf(stderr, "tls_key_pkcs11: %s\n", m2mhsm_last_error());
        return NULL;
    }
    /* Its outages are the store's kind of event too: a server whose handshakes fail for a
     * lost TLS key token must say which token, and when it is back. */
    app_token_observe(tls_tok, &tls_tok_name, "tls_key_pkcs11", cfg.token_uri);
    return tls_tok;
}

SSL_CTX *app_certkey_ctx(m2mhsm_token *tok, const app_certkey *ck, int server)
{
    if ((tok = key_token(tok, ck)) == NULL)
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL)
        return NULL;
    /* Credentials cross this channel: no TLS below 1.2, plaintext records wiped after use,
     * no resumption (every request proves both certificates afresh). */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (!load_identity(ctx, tok, ck) || SSL_CTX_load_verify_locations(ctx, ck->ca, NULL) != 1) {
        fprintf(stderr, "TLS: cannot set up %s with CA %s\n", ck->certificate, ck->ca);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void app_certkey_cleanup(void)
{
    m2mhsm_token_close(tls_tok);
    tls_tok = NULL;
    if (method == NULL)
        return; /* EC_KEY_METHOD_free(NULL) is not a no-op in OpenSSL 3.0 */
    EC_KEY_METHOD_free(method);
    method = NULL;
}
