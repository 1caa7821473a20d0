/*
 * "TLS1-PRF" (RFC 5246 section 5). libssl keys it with the premaster secret once per
 * handshake (the master secret) and with the master secret afterwards. For plain PSK the
 * premaster is [u16 N][N zeros][u16 N][psk] (RFC 4279): a psk that is a handle marks the
 * computation for the token.
 */
#include "handle.h"
#include "kdf.h"

#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>

static int note_params(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    if (!m2mhsm_kdf_note_digest_seed(c, params))
        return 0;
    const void *sec = NULL;
    size_t len = 0;
    int found = m2mhsm_kdf_octets(params, OSSL_KDF_PARAM_SECRET, &sec, &len);
    if (found <= 0)
        return found < 0;
    const uint8_t *psk;
    size_t psk_len;
    int plain = 0;
    c->handle = m2mhsm_premaster_psk(sec, len, &psk, &psk_len, &plain) &&
                m2mhsm_handle_shaped(psk, psk_len);
    c->handle_plain = c->handle && plain;
    if (c->handle)
        memcpy(c->handle_bytes, psk, M2MHSM_HANDLE_LEN);
    return 1;
}

/* P_SHA256(pms, seed) with the premaster as a token key: the Kpm/Km/Kpsa's TLS 1.2 form
 * (derive.h). The 48-byte master secret costs four token HMACs. */
static int derive_token(m2mhsm_kdf_ctx *c, unsigned char *out, size_t olen)
{
    m2mhsm_record rec;
    /* (EC)DHE-PSK / RSA-PSK would need the PSK joined with another secret: the stored form
     * is the plain-PSK premaster only, so such a premaster with a handle is refused. */
    if (!c->handle_plain) {
        M2MHSM_PROV_RAISE(c->pc, M2MHSM_R_REFUSED,
                          "m2mhsm: a token PSK serves plain-PSK suites only");
        return 0;
    }
    if (c->pc->handles == NULL || m2mhsm_handles_resolve(c->pc->handles, c->handle_bytes,
                                                         M2MHSM_HANDLE_LEN, &rec) != M2MHSM_OK) {
        M2MHSM_PROV_RAISE(c->pc, M2MHSM_R_UNKNOWN_HANDLE, "m2mhsm: TLS1-PRF premaster");
        return 0;
    }
    /* A key stored for TLS 1.3 only (a handle from openssl.cnf names any key). */
    if (m2mhsm_record_check_form(&rec, M2MHSM_FORM_TLS12_PMS) != M2MHSM_OK) {
        M2MHSM_PROV_RAISE(c->pc, M2MHSM_R_REFUSED, "m2mhsm: %s", m2mhsm_last_error());
        return 0;
    }
    /* The stored form is SHA-256 based; libssl asks for SHA256 in every TS-0003 suite. */
    if (OPENSSL_strcasecmp(c->digest, "SHA256") != 0 &&
        OPENSSL_strcasecmp(c->digest, "SHA2-256") != 0) {
        M2MHSM_PROV_RAISE(c->pc, M2MHSM_R_REFUSED, "m2mhsm: token PSKs need a SHA256 PRF");
        return 0;
    }
    if (c->seed_len == 0 || olen == 0)
        return 0;
    m2mhsm_token *tok = m2mhsm_keystore_token(m2mhsm_handles_keystore(c->pc->handles));
    unsigned gen = ks_obj(&rec)->generation;
    if (m2mhsm_token_p_sha256(tok, ks_obj(&rec)->key[M2MHSM_FORM_TLS12_PMS], c->seed, c->seed_len,
                              out, olen) == M2MHSM_OK)
        return 1;
    /* A token lost and back: once more with the new generation's objects. */
    if (m2mhsm_handles_recover(c->pc->handles, gen, c->handle_bytes, M2MHSM_HANDLE_LEN, &rec) ==
            M2MHSM_OK &&
        m2mhsm_token_p_sha256(tok, ks_obj(&rec)->key[M2MHSM_FORM_TLS12_PMS], c->seed, c->seed_len,
                              out, olen) == M2MHSM_OK)
        return 1;
    M2MHSM_PROV_RAISE(c->pc, M2MHSM_R_TOKEN_FAILED, "m2mhsm: TLS1-PRF of %s: %s", rec.identity,
                      m2mhsm_last_error());
    return 0;
}

static const OSSL_PARAM settable[] = {
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SECRET, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SEED, NULL, 0),
    OSSL_PARAM_END,
};

static const m2mhsm_kdf_kind tls1_prf = {"TLS1-PRF", derive_token, note_params, settable};

/* Also asked without a context (EVP_KDF_settable_ctx_params). */
static const OSSL_PARAM *settable_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return settable;
}

static void *tls1_prf_new(void *provctx)
{
    return m2mhsm_kdf_new(provctx, &tls1_prf);
}

const OSSL_DISPATCH m2mhsm_kdf_tls1_prf_functions[] = {
    M2MHSM_KDF_DISPATCH(tls1_prf_new, settable_params)};
