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

static int copy_param(const OSSL_PARAM params[], const char *name, uint8_t *buf, size_t cap,
                      size_t *len)
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, name);
    if (p == NULL)
        return 1;
    const void *v = NULL;
    size_t n = 0;
    if (!OSSL_PARAM_get_octet_string_ptr(p, &v, &n))
        return 0;
    if (n > cap) {
        *len = (size_t)-1; /* longer than libssl ever passes: not ours to handle */
        return 1;
    }
    memcpy(buf, v, n);
    *len = n;
    return 1;
}

static int note_mode(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_MODE);
    if (p == NULL)
        return 1;
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
        const char *m = p->data;
        c->t13.mode = OPENSSL_strcasecmp(m, "EXTRACT_ONLY") == 0  ? EVP_KDF_HKDF_MODE_EXTRACT_ONLY
                      : OPENSSL_strcasecmp(m, "EXPAND_ONLY") == 0 ? EVP_KDF_HKDF_MODE_EXPAND_ONLY
                                                                  : -1;
        return 1;
    }
    return OSSL_PARAM_get_int(p, &c->t13.mode);
}

static int note_params(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    if (!m2mhsm_kdf_note_digest_seed(c, params) || !note_mode(c, params) ||
        !copy_param(params, OSSL_KDF_PARAM_KEY, c->t13.key, sizeof(c->t13.key), &c->t13.key_len) ||
        !copy_param(params, OSSL_KDF_PARAM_SALT, c->t13.salt, sizeof(c->t13.salt),
                    &c->t13.salt_len) ||
        !copy_param(params, OSSL_KDF_PARAM_PREFIX, c->t13.prefix, sizeof(c->t13.prefix),
                    &c->t13.prefix_len) ||
        !copy_param(params, OSSL_KDF_PARAM_LABEL, c->t13.label, sizeof(c->t13.label),
                    &c->t13.label_len) ||
        !copy_param(params, OSSL_KDF_PARAM_DATA, c->t13.data, sizeof(c->t13.data),
                    &c->t13.data_len))
        return 0;
    c->handle = m2mhsm_handle_shaped(c->t13.key, c->t13.key_len) ||
                m2mhsm_es_handle_shaped(c->t13.key, c->t13.key_len) ||
                m2mhsm_es_handle_shaped(c->t13.salt, c->t13.salt_len);
    return 1;
}

/* HKDF-Expand(PRK = the token key, info = HkdfLabel(L, prefix || label, data), L) (RFC 5869,
 * RFC 8446 7.1): T(i) = HMAC(PRK, T(i-1) || info || i). */
static int expand_label(m2mhsm_token *tok, CK_OBJECT_HANDLE prk, const m2mhsm_kdf_ctx *c,
                        const uint8_t *data, size_t data_len, uint8_t *out, size_t olen)
{
    uint8_t msg[HLEN + 2 + 1 + 16 + 255 + 1 + 64 + 1], t[HLEN];
    size_t info = 0, tlen = 0;
    uint8_t hkdf_label[2 + 1 + 16 + 255 + 1 + 64];
    hkdf_label[info++] = (uint8_t)(olen >> 8);
    hkdf_label[info++] = (uint8_t)olen;
    hkdf_label[info++] = (uint8_t)(c->t13.prefix_len + c->t13.label_len);
    memcpy(hkdf_label + info, c->t13.prefix, c->t13.prefix_len);
    info += c->t13.prefix_len;
    memcpy(hkdf_label + info, c->t13.label, c->t13.label_len);
    info += c->t13.label_len;
    hkdf_label[info++] = (uint8_t)data_len;
    memcpy(hkdf_label + info, data, data_len);
    info += data_len;
    int ok = 1;
    for (uint8_t i = 1; ok && olen > 0; i++) {
        memcpy(msg, t, tlen);
        memcpy(msg + tlen, hkdf_label, info);
        msg[tlen + info] = i;
        ok = m2mhsm_token_hmac_sha256(tok, prk, msg, tlen + info + 1, t) == M2MHSM_OK;
        tlen = HLEN;
        size_t n = olen < HLEN ? olen : HLEN;
        if (ok)
            memcpy(out, t, n);
        out += n;
        olen -= n;
    }
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(msg, sizeof(msg));
    return ok;
}

/* Handshake-secret extract with the early secret as the previous secret: the pre-extract
 * "derived" expand on the token, then HKDF-Extract(derived, IKM) here, as libcrypto's
 * TLS13-KDF does. */
static int extract_after_es(m2mhsm_token *tok, CK_OBJECT_HANDLE es, const m2mhsm_kdf_ctx *c,
                            uint8_t *out, size_t olen)
{
    static const uint8_t zeros[HLEN];
    uint8_t empty_hash[HLEN], derived[HLEN];
    unsigned int n = 0;
    if (olen != HLEN || !EVP_Digest(NULL, 0, empty_hash, NULL, EVP_sha256(), NULL) ||
        !expand_label(tok, es, c, empty_hash, HLEN, derived, HLEN))
        return 0;
    const uint8_t *ikm = c->t13.key_len > 0 ? c->t13.key : zeros;
    size_t ikm_len = c->t13.key_len > 0 ? c->t13.key_len : HLEN;
    int ok = HMAC(EVP_sha256(), derived, HLEN, ikm, ikm_len, out, &n) != NULL && n == HLEN;
    OPENSSL_cleanse(derived, sizeof(derived));
    return ok;
}

static int refuse(const char *why)
{
    ERR_raise_data(ERR_LIB_PROV, ERR_R_PASSED_INVALID_ARGUMENT, "m2mhsm: %s", why);
    return 0;
}

static int derive_token(m2mhsm_kdf_ctx *c, unsigned char *out, size_t olen)
{
    const uint8_t *h = c->t13.key;
    size_t hl = c->t13.key_len;
    int es_salt = m2mhsm_es_handle_shaped(c->t13.salt, c->t13.salt_len);
    if (es_salt) {
        h = c->t13.salt;
        hl = c->t13.salt_len;
    }
    m2mhsm_record rec;
    if (c->pc->handles == NULL || m2mhsm_handles_resolve(c->pc->handles, h, hl, &rec) != M2MHSM_OK)
        return refuse("unknown, stale or expired PSK handle");
    if (OPENSSL_strcasecmp(c->digest, "SHA256") != 0 &&
        OPENSSL_strcasecmp(c->digest, "SHA2-256") != 0)
        return refuse("token PSKs need a SHA256 TLS 1.3 suite");
    m2mhsm_token *tok = m2mhsm_keystore_token(m2mhsm_handles_keystore(c->pc->handles));
    CK_OBJECT_HANDLE es = rec.key[M2MHSM_FORM_TLS13_ES];
    int mode = c->t13.mode;
    if (mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY && m2mhsm_handle_shaped(h, hl)) {
        /* Early Secret = HKDF-Extract(0, PSK): the stored form; hand back its handle. */
        if (c->t13.salt_len != 0 || olen != M2MHSM_ES_HANDLE_LEN)
            return refuse("a PSK handle is only an early-secret extract's key");
        m2mhsm_es_handle_from(h, out);
        return 1;
    }
    if (mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY && es_salt)
        return extract_after_es(tok, es, c, out, olen);
    if (mode == EVP_KDF_HKDF_MODE_EXPAND_ONLY && m2mhsm_es_handle_shaped(h, hl))
        return expand_label(tok, es, c, c->t13.data, c->t13.data_len, out, olen);
    return refuse("a handle where TLS 1.3 never puts the PSK");
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

static void *tls13_new(void *provctx)
{
    return m2mhsm_kdf_new(provctx, &tls13);
}

const OSSL_DISPATCH m2mhsm_kdf_tls13_functions[] = {M2MHSM_KDF_DISPATCH(tls13_new)};
