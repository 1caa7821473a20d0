/*
 * "TLS1-PRF" (RFC 5246 section 5). libssl keys it with the premaster secret once per
 * handshake (the master secret) and with the master secret afterwards. For plain PSK the
 * premaster is [u16 N][N zeros][u16 N][psk] (RFC 4279): a psk that is a handle marks the
 * computation for the token.
 */
#include "handle.h"
#include "kdf.h"

#include <openssl/core_names.h>
#include <openssl/params.h>

static int note_params(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SECRET);
    if (p == NULL)
        return 1;
    const void *sec = NULL;
    size_t len = 0;
    if (!OSSL_PARAM_get_octet_string_ptr(p, &sec, &len))
        return 0;
    const uint8_t *psk;
    size_t psk_len;
    c->handle =
        m2mhsm_premaster_psk(sec, len, &psk, &psk_len) && m2mhsm_handle_shaped(psk, psk_len);
    return 1;
}

static const OSSL_PARAM settable[] = {
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SECRET, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SEED, NULL, 0),
    OSSL_PARAM_END,
};

static const m2mhsm_kdf_kind tls1_prf = {"TLS1-PRF", note_params, settable};

static void *tls1_prf_new(void *provctx)
{
    return m2mhsm_kdf_new(provctx, &tls1_prf);
}

const OSSL_DISPATCH m2mhsm_kdf_tls1_prf_functions[] = {M2MHSM_KDF_DISPATCH(tls1_prf_new)};
