/*
 * Delegation: every parameter goes to the default provider's implementation, so any input
 * without a PSK handle gives exactly the default provider's result. An input with a handle
 * is computed on the token (see handle.h) and is never treated as key bytes.
 */
#include "kdf.h"

#include <stdlib.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

void *m2mhsm_kdf_new(void *provctx, const m2mhsm_kdf_kind *kind)
{
    m2mhsm_kdf_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->pc = provctx;
    c->kind = kind;
    if ((c->dflt = m2mhsm_prov_delegate(c->pc, kind->name)) == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void *m2mhsm_kdf_dup(void *vctx)
{
    const m2mhsm_kdf_ctx *src = vctx;
    m2mhsm_kdf_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    *c = *src;
    if ((c->dflt = EVP_KDF_CTX_dup(src->dflt)) == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void m2mhsm_kdf_free(void *vctx)
{
    m2mhsm_kdf_ctx *c = vctx;
    if (c == NULL)
        return;
    EVP_KDF_CTX_free(c->dflt);
    free(c);
}

void m2mhsm_kdf_reset(void *vctx)
{
    m2mhsm_kdf_ctx *c = vctx;
    EVP_KDF_CTX_reset(c->dflt);
    c->handle = 0;
}

int m2mhsm_kdf_set_params(void *vctx, const OSSL_PARAM params[])
{
    m2mhsm_kdf_ctx *c = vctx;
    if (params == NULL)
        return 1;
    return c->kind->note_params(c, params) && EVP_KDF_CTX_set_params(c->dflt, params);
}

int m2mhsm_kdf_derive(void *vctx, unsigned char *key, size_t keylen, const OSSL_PARAM params[])
{
    m2mhsm_kdf_ctx *c = vctx;
    if (!m2mhsm_kdf_set_params(c, params))
        return 0;
    if (c->handle) {
        /* No key is registered behind this handle in this process: fail, never fall back
         * to using the handle's bytes as a key. */
        ERR_raise_data(ERR_LIB_PROV, ERR_R_PASSED_INVALID_ARGUMENT, "m2mhsm: unknown PSK handle");
        return 0;
    }
    return EVP_KDF_derive(c->dflt, key, keylen, NULL);
}

const OSSL_PARAM *m2mhsm_kdf_settable(void *vctx, void *provctx)
{
    (void)provctx;
    const m2mhsm_kdf_ctx *c = vctx;
    return c != NULL ? c->kind->settable : NULL;
}

int m2mhsm_kdf_get_params(void *vctx, OSSL_PARAM params[])
{
    m2mhsm_kdf_ctx *c = vctx;
    return EVP_KDF_CTX_get_params(c->dflt, params);
}

const OSSL_PARAM *m2mhsm_kdf_gettable(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_size_t(OSSL_KDF_PARAM_SIZE, NULL),
        OSSL_PARAM_END,
    };
    return params;
}
