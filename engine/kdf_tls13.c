/*
 * "TLS13-KDF" (RFC 8446 section 7.1). An external PSK enters once per handshake, as the key
 * of the early-secret extract. A PSK handle there yields an early-secret handle instead of
 * the early secret; that handle then comes back as the key of HKDF-Expand-Label (binder
 * key, "derived") and as the salt of the handshake-secret extract, each computed with
 * C_Sign on the record's early-secret form. Every other input is delegated.
 */
#include "handle.h"
#include "kdf.h"

#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#define HLEN 32

/* Copy a bounded parameter; one longer than libssl ever passes marks the context oversize,
 * which the token path refuses (the delegated path never reads these copies). */
static int copy_param(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[], const char *name, uint8_t *buf,
                      size_t cap, size_t *len)
{
    const void *v = NULL;
    size_t n = 0;
    int found = m2mhsm_kdf_octets(params, name, &v, &n);
    if (found <= 0)
        return found < 0;
    if (n > cap) {
        c->t13.oversize = 1;
        *len = 0;
        return 1;
    }
    memcpy(buf, v, n);
    *len = n;
    return 1;
}

/* The key at any length: the (EC)DHE secret of ffdhe8192 is 1024 bytes. */
static int copy_key(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    const void *v = NULL;
    size_t n = 0;
    int found = m2mhsm_kdf_octets(params, OSSL_KDF_PARAM_KEY, &v, &n);
    if (found <= 0)
        return found < 0;
    OPENSSL_clear_free(c->t13.key, c->t13.key_len);
    /* An empty key is kept as one zero byte, never read: copying a byte of it would read past
     * the caller's buffer. */
    c->t13.key = n > 0 ? OPENSSL_memdup(v, n) : OPENSSL_zalloc(1);
    c->t13.key_len = n;
    c->t13.key_set = 1;
    return c->t13.key != NULL;
}

static int note_mode(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_MODE);
    if (p == NULL)
        return 1;
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
        const char *m = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &m))
            return 0;
        c->t13.mode = OPENSSL_strcasecmp(m, "EXTRACT_ONLY") == 0  ? EVP_KDF_HKDF_MODE_EXTRACT_ONLY
                      : OPENSSL_strcasecmp(m, "EXPAND_ONLY") == 0 ? EVP_KDF_HKDF_MODE_EXPAND_ONLY
                                                                  : -1;
        return 1;
    }
    return OSSL_PARAM_get_int(p, &c->t13.mode);
}

static int note_params(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    if (!note_mode(c, params) || !copy_key(c, params) || !m2mhsm_kdf_note_digest_seed(c, params) ||
        !copy_param(c, params, OSSL_KDF_PARAM_SALT, c->t13.salt, sizeof(c->t13.salt),
                    &c->t13.salt_len) ||
        !copy_param(c, params, OSSL_KDF_PARAM_PREFIX, c->t13.prefix, sizeof(c->t13.prefix),
                    &c->t13.prefix_len) ||
        !copy_param(c, params, OSSL_KDF_PARAM_LABEL, c->t13.label, sizeof(c->t13.label),
                    &c->t13.label_len) ||
        !copy_param(c, params, OSSL_KDF_PARAM_DATA, c->t13.data, sizeof(c->t13.data),
                    &c->t13.data_len))
        return 0;
    /* Any handle anywhere goes to the token path, which computes the shapes it knows and
     * refuses every other: a handle is never key bytes. */
    const uint8_t *k = c->t13.key;
    size_t kl = c->t13.key_len;
    c->handle = m2mhsm_handle_shaped(k, kl) || m2mhsm_es_handle_shaped(k, kl) ||
                m2mhsm_handle_shaped(c->t13.salt, c->t13.salt_len) ||
                m2mhsm_es_handle_shaped(c->t13.salt, c->t13.salt_len);
    return 1;
}

/* HKDF-Expand(PRK = the token key, info = HkdfLabel(L, prefix || label, data), L) (RFC 5869,
 * RFC 8446 7.1): T(i) = HMAC(PRK, T(i-1) || info || i). The caller has bounded the lengths
 * (prefix + label <= 255, data <= 64, L <= 255 * 32). */
static int expand_label(m2mhsm_token *tok, CK_OBJECT_HANDLE prk, const m2mhsm_kdf_ctx *c,
                        const uint8_t *data, size_t data_len, uint8_t *out, size_t olen)
{
    uint8_t info[2 + 1 + 255 + 1 + 64], msg[HLEN + sizeof(info) + 1], t[HLEN];
    size_t n = 0, tlen = 0, total = olen;
    info[n++] = (uint8_t)(olen >> 8);
    info[n++] = (uint8_t)olen;
    info[n++] = (uint8_t)(c->t13.prefix_len + c->t13.label_len);
    memcpy(info + n, c->t13.prefix, c->t13.prefix_len);
    n += c->t13.prefix_len;
    memcpy(info + n, c->t13.label, c->t13.label_len);
    n += c->t13.label_len;
    info[n++] = (uint8_t)data_len;
    memcpy(info + n, data, data_len);
    n += data_len;
    int ok = 1;
    uint8_t *p = out;
    for (unsigned i = 1; ok && olen > 0; i++) {
        memcpy(msg, t, tlen);
        memcpy(msg + tlen, info, n);
        msg[tlen + n] = (uint8_t)i;
        ok = m2mhsm_token_hmac_sha256(tok, prk, msg, tlen + n + 1, t) == M2MHSM_OK;
        tlen = HLEN;
        size_t k = olen < HLEN ? olen : HLEN;
        if (ok)
            memcpy(p, t, k);
        p += k;
        olen -= k;
    }
    if (!ok) /* raised by the caller, after the failover retry (derive_token) */
        OPENSSL_cleanse(out, total);
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(msg, sizeof(msg));
    return ok;
}

/* Handshake-secret extract with the early secret as the previous secret: the pre-extract
 * "derived" expand on the token, then HKDF-Extract(derived, IKM) here, as libcrypto's
 * TLS13-KDF does (IKM: the (EC)DHE secret, or zeros when no key was set). */
static int extract_after_es(m2mhsm_token *tok, CK_OBJECT_HANDLE es, const m2mhsm_kdf_ctx *c,
                            uint8_t *out, size_t olen)
{
    static const uint8_t zeros[HLEN];
    uint8_t empty_hash[HLEN], derived[HLEN];
    unsigned int n = 0;
    if (olen != HLEN || !EVP_Digest(NULL, 0, empty_hash, NULL, EVP_sha256(), NULL) ||
        !expand_label(tok, es, c, empty_hash, HLEN, derived, HLEN))
        return 0;
    const uint8_t *ikm = c->t13.key_set ? c->t13.key : zeros;
    size_t ikm_len = c->t13.key_set ? c->t13.key_len : HLEN;
    int ok = HMAC(EVP_sha256(), derived, HLEN, ikm, ikm_len, out, &n) != NULL && n == HLEN;
    OPENSSL_cleanse(derived, sizeof(derived));
    if (!ok)
        OPENSSL_cleanse(out, olen);
    return ok;
}

static int refuse(const m2mhsm_kdf_ctx *c, uint32_t reason, const char *why)
{
    M2MHSM_PROV_RAISE(c->pc, reason, "m2mhsm: %s", why);
    return 0;
}

static int resolve(m2mhsm_kdf_ctx *c, const uint8_t *h, size_t hl, m2mhsm_record *rec)
{
    return c->pc->handles != NULL &&
           m2mhsm_handles_resolve(c->pc->handles, h, hl, rec) == M2MHSM_OK;
}

/*
 * The three places libssl puts an external PSK's secrets, and nothing else:
 *  - extract, key = PSK handle, no salt: the early secret -> its handle;
 *  - extract, salt = early-secret handle, key = (EC)DHE secret or none: the handshake secret;
 *  - expand, key = early-secret handle: binder key, "derived", early traffic secrets.
 */
static int derive_token(m2mhsm_kdf_ctx *c, unsigned char *out, size_t olen)
{
    const uint8_t *key = c->t13.key, *salt = c->t13.salt;
    size_t kl = c->t13.key_len, sl = c->t13.salt_len;
    int key_psk = m2mhsm_handle_shaped(key, kl), key_es = m2mhsm_es_handle_shaped(key, kl);
    int salt_es = m2mhsm_es_handle_shaped(salt, sl);
    if (c->t13.oversize || c->t13.prefix_len + c->t13.label_len > 255 || olen > 255 * HLEN)
        return refuse(c, M2MHSM_R_REFUSED, "TLS13-KDF input beyond what TLS 1.3 uses");
    if (OPENSSL_strcasecmp(c->digest, "SHA256") != 0 &&
        OPENSSL_strcasecmp(c->digest, "SHA2-256") != 0)
        return refuse(c, M2MHSM_R_REFUSED, "token PSKs need a SHA256 TLS 1.3 suite");
    m2mhsm_record rec;
    m2mhsm_token *tok = c->pc->handles != NULL
                            ? m2mhsm_keystore_token(m2mhsm_handles_keystore(c->pc->handles))
                            : NULL;
    int mode = c->t13.mode;
    if (mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY && key_psk && sl == 0) {
        /* Early Secret = HKDF-Extract(0, PSK): the stored form; hand back its handle. */
        if (olen != M2MHSM_ES_HANDLE_LEN || !resolve(c, key, kl, &rec))
            return refuse(c, M2MHSM_R_UNKNOWN_HANDLE, "TLS13-KDF");
        /* A key stored for TLS 1.2 only (a handle from openssl.cnf names any key). */
        if (m2mhsm_record_check_form(&rec, M2MHSM_FORM_TLS13_ES) != M2MHSM_OK)
            return refuse(c, M2MHSM_R_REFUSED, m2mhsm_last_error());
        m2mhsm_es_handle_from(key, out);
        return 1;
    }
    if (mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY && salt_es && !key_psk && !key_es) {
        if (!resolve(c, salt, sl, &rec))
            return refuse(c, M2MHSM_R_UNKNOWN_HANDLE, "TLS13-KDF");
        for (int retry = 0;; retry = 1) {
            unsigned gen = ks_obj(&rec)->generation;
            if (extract_after_es(tok, ks_obj(&rec)->key[M2MHSM_FORM_TLS13_ES], c, out, olen))
                return 1;
            if (retry || m2mhsm_handles_recover(c->pc->handles, gen, salt, sl, &rec) != M2MHSM_OK)
                return refuse(c, M2MHSM_R_TOKEN_FAILED, m2mhsm_last_error());
        }
    }
    if (mode == EVP_KDF_HKDF_MODE_EXPAND_ONLY && key_es && !m2mhsm_handle_shaped(salt, sl)) {
        if (!resolve(c, key, kl, &rec))
            return refuse(c, M2MHSM_R_UNKNOWN_HANDLE, "TLS13-KDF");
        for (int retry = 0;; retry = 1) {
            unsigned gen = ks_obj(&rec)->generation;
            if (expand_label(tok, ks_obj(&rec)->key[M2MHSM_FORM_TLS13_ES], c, c->t13.data,
                             c->t13.data_len, out, olen))
                return 1;
            /* A token lost and back: once more with the new generation's objects. */
            if (retry || m2mhsm_handles_recover(c->pc->handles, gen, key, kl, &rec) != M2MHSM_OK)
                return refuse(c, M2MHSM_R_TOKEN_FAILED, m2mhsm_last_error());
        }
    }
    return refuse(c, M2MHSM_R_REFUSED, "a handle where TLS 1.3 never puts the PSK");
}

static const OSSL_PARAM settable[] = {
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_MODE, NULL, 0),
    OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, NULL),
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_DATA, NULL, 0),
    OSSL_PARAM_END,
};

static const m2mhsm_kdf_kind tls13 = {"TLS13-KDF", derive_token, note_params, settable};

/* Also asked without a context (EVP_KDF_settable_ctx_params). */
static const OSSL_PARAM *settable_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return settable;
}

static void *tls13_new(void *provctx)
{
    return m2mhsm_kdf_new(provctx, &tls13);
}

const OSSL_DISPATCH m2mhsm_kdf_tls13_functions[] = {
    M2MHSM_KDF_DISPATCH(tls13_new, settable_params)};
