/* X.509 mutual TLS between MEF and Enrolment Targets (TS-0003 8.3.2.1, the CR's change 1)
 * with the private key kept in the token: libp11 turns the token's private key object into
 * an EVP_PKEY whose signatures run on the token. */
#include "app.h"

#include <libp11.h>
#include <stdio.h>
#include <string.h>
#include <p11-kit/uri.h>

static PKCS11_CTX *p11;
static PKCS11_SLOT *slots;
static unsigned int nslots;
static m2mhsm_token *tls_tok; /* the tls_key_pkcs11 token's login, if configured */

/* libp11 reports token fields as C strings; p11-kit matches URIs on CK_TOKEN_INFO. */
static void pad(unsigned char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;
    memset(dst, ' ', cap);
    memcpy(dst, src, n < cap ? n : cap);
}

static PKCS11_SLOT *slot_for_uri(const char *token_uri)
{
    P11KitUri *uri = p11_kit_uri_new();
    PKCS11_SLOT *found = NULL;
    int matches = 0;
    if (uri == NULL || p11_kit_uri_parse(token_uri, P11_KIT_URI_FOR_TOKEN, uri) != P11_KIT_URI_OK) {
        p11_kit_uri_free(uri);
        return NULL;
    }
    for (unsigned int i = 0; i < nslots; i++) {
        PKCS11_TOKEN *t = slots[i].token;
        CK_TOKEN_INFO info;
        if (t == NULL)
            continue;
        memset(&info, 0, sizeof(info));
        pad(info.label, sizeof(info.label), t->label);
        pad(info.manufacturerID, sizeof(info.manufacturerID), t->manufacturer);
        pad(info.model, sizeof(info.model), t->model);
        pad(info.serialNumber, sizeof(info.serialNumber), t->serialnr);
        if (p11_kit_uri_match_token_info(uri, &info)) {
            found = &slots[i];
            matches++;
        }
    }
    p11_kit_uri_free(uri);
    return matches == 1 ? found : NULL;
}

/* A "tls_key_pkcs11" token is not the store's: nothing has logged in to it. Opening it as an
 * m2mhsm token logs this application in (p11-kit shares the module with libp11 below), with
 * the PIN read from its pin-source and never held here. */
static int tls_key_login(const json_t *sec)
{
    m2mhsm_token_config cfg = {0};
    if (app_cfg_str(sec, "tls_key_pkcs11", "module", 1, &cfg.module_path) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "module_init_args", 0, &cfg.init_args) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "token", 1, &cfg.token_uri) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "pin_source", 1, &cfg.pin_source) != 0 ||
        app_cfg_str(sec, "tls_key_pkcs11", "lock_file", 0, &cfg.lock_file) != 0)
        return -1;
    if (tls_tok == NULL && m2mhsm_token_open(&cfg, &tls_tok) != M2MHSM_OK) {
        fprintf(stderr, "tls_key_pkcs11: %s\n", m2mhsm_last_error());
        return -1;
    }
    return 0;
}

/* libp11 on the key's module: its session shares the login (per application). */
static EVP_PKEY *token_private_key(const json_t *root, const char *label)
{
    const json_t *sec = json_object_get(root, "tls_key_pkcs11");
    const char *where = sec != NULL ? "tls_key_pkcs11" : "pkcs11";
    if (sec == NULL)
        sec = json_object_get(root, "pkcs11");
    const char *module = NULL, *token = NULL, *init_args = NULL;
    /* libp11 loads the module by path itself: name it, rather than guess a default that
     * might differ from the one the store resolved. */
    if (app_cfg_str(sec, where, "module", 1, &module) != 0 ||
        app_cfg_str(sec, where, "module_init_args", 0, &init_args) != 0 ||
        app_cfg_str(sec, where, "token", 1, &token) != 0)
        return NULL;
    if (sec != json_object_get(root, "pkcs11") && tls_key_login(sec) != 0)
        return NULL;
    if (p11 == NULL) {
        if ((p11 = PKCS11_CTX_new()) == NULL)
            return NULL;
        if (init_args != NULL)
            PKCS11_CTX_init_args(p11, init_args);
        if (PKCS11_CTX_load(p11, module) != 0 ||
            PKCS11_enumerate_slots(p11, &slots, &nslots) != 0) {
            fprintf(stderr, "libp11: cannot load %s\n", module);
            return NULL;
        }
    }
    PKCS11_SLOT *slot = token != NULL ? slot_for_uri(token) : NULL;
    PKCS11_KEY *keys = NULL;
    unsigned int nkeys = 0;
    if (slot == NULL || PKCS11_enumerate_keys(slot->token, &keys, &nkeys) != 0) {
        fprintf(stderr, "libp11: no single token matches %s\n", token != NULL ? token : "-");
        return NULL;
    }
    for (unsigned int i = 0; i < nkeys; i++)
        if (keys[i].isPrivate && keys[i].label != NULL && strcmp(keys[i].label, label) == 0)
            return PKCS11_get_private_key(&keys[i]);
    fprintf(stderr, "libp11: no private key labelled \"%s\" on %s\n", label, token);
    return NULL;
}

static int load_identity(SSL_CTX *ctx, const json_t *root, const app_certkey *ck)
{
    EVP_PKEY *pkey = token_private_key(root, ck->key_label);
    int ok = pkey != NULL && SSL_CTX_use_certificate_chain_file(ctx, ck->certificate) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    if (!ok)
        fprintf(stderr, "TLS identity: certificate %s does not load with token key \"%s\"\n",
                ck->certificate, ck->key_label);
    return ok;
}

SSL_CTX *app_certkey_ctx(const json_t *root, const app_certkey *ck, int server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL)
        return NULL;
    /* Credentials cross this channel: no TLS below 1.2, plaintext records wiped after use,
     * no resumption (every request proves both certificates afresh). */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (!load_identity(ctx, root, ck) || SSL_CTX_load_verify_locations(ctx, ck->ca, NULL) != 1) {
        fprintf(stderr, "TLS: cannot set up %s with CA %s\n", ck->certificate, ck->ca);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void app_certkey_cleanup(void)
{
    if (p11 != NULL) {
        PKCS11_release_all_slots(p11, slots, nslots);
        PKCS11_CTX_unload(p11);
        PKCS11_CTX_free(p11);
        p11 = NULL;
    }
    m2mhsm_token_close(tls_tok);
    tls_tok = NULL;
}
