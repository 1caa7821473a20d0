/*
 * "TLS13-KDF" (RFC 8446 section 7.1). An external PSK enters exactly once per handshake:
 * as the key of the first extract (early secret = HKDF-Extract(0, PSK)). A key that is a
 * handle marks the computation for the token.
 */
#include "handle.h"
#include "kdf.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>

static int note_params(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_KEY);
    if (p == NULL)
        return 1;
    const void *key = NULL;
    size_t len = 0;
    if (!OSSL_PARAM_get_octet_string_ptr(p, &key, &len))
        return 0;
    c->handle = m2mhsm_handle_shaped(key, len);
    return 1;
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

/* The TLS 1.3 token path (early secret as a token object) is not built yet: a handle is
 * refused, never used as key bytes. */
static int derive_token(m2mhsm_kdf_ctx *c, unsigned char *out, size_t olen)
{
    (void)c;
    (void)out;
    (void)olen;
    ERR_raise_data(ERR_LIB_PROV, ERR_R_UNSUPPORTED, "m2mhsm: TLS 1.3 with a token PSK");
    return 0;
}

static const m2mhsm_kdf_kind tls13 = {"TLS13-KDF", derive_token, note_params, settable};

static void *tls13_new(void *provctx)
{
    return m2mhsm_kdf_new(provctx, &tls13);
}

const OSSL_DISPATCH m2mhsm_kdf_tls13_functions[] = {M2MHSM_KDF_DISPATCH(tls13_new)};
