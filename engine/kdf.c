/*
 * Delegation: every parameter goes to the default provider's implementation, so any input
 * without a PSK handle gives exactly the default provider's result. An input with a handle
 * is computed on the token (see handle.h) and is never treated as key bytes.
 */
#include "kdf.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
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

static void clear_token_state(m2mhsm_kdf_ctx *c)
{
    OPENSSL_clear_free(c->t13.key, c->t13.key_len);
    OPENSSL_cleanse(&c->t13, sizeof(c->t13));
    OPENSSL_clear_free(c->seed, c->seed_len);
    c->seed = NULL;
    c->seed_len = 0;
    OPENSSL_cleanse(c->handle_bytes, sizeof(c->handle_bytes));
    c->handle = 0;
    c->handle_plain = 0;
    c->digest[0] = '\0';
}

void *m2mhsm_kdf_dup(void *vctx)
{
    const m2mhsm_kdf_ctx *src = vctx;
    m2mhsm_kdf_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    *c = *src;
    c->seed = NULL;
    c->t13.key = NULL;
    c->dflt = NULL;
    if ((src->seed_len > 0 && (c->seed = OPENSSL_memdup(src->seed, src->seed_len)) == NULL) ||
        (src->t13.key != NULL &&
         (c->t13.key = OPENSSL_memdup(src->t13.key, src->t13.key_len)) == NULL) ||
        (c->dflt = EVP_KDF_CTX_dup(src->dflt)) == NULL) {
        m2mhsm_kdf_free(c);
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
    clear_token_state(c);
    OPENSSL_clear_free(c, sizeof(*c));
}

void m2mhsm_kdf_reset(void *vctx)
{
    m2mhsm_kdf_ctx *c = vctx;
    EVP_KDF_CTX_reset(c->dflt);
    clear_token_state(c);
}

int m2mhsm_kdf_octets(const OSSL_PARAM params[], const char *name, const void **v, size_t *n)
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, name);
    if (p == NULL)
        return -1;
    if (p->data == NULL && p->data_size != 0)
        return 0;
    return OSSL_PARAM_get_octet_string_ptr(p, v, n);
}

int m2mhsm_kdf_note_digest_seed(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_DIGEST);
    char *digest = c->digest;
    if (p != NULL && !OSSL_PARAM_get_utf8_string(p, &digest, sizeof(c->digest)))
        return 0;
    for (p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SEED); p != NULL;
         p = OSSL_PARAM_locate_const(p + 1, OSSL_KDF_PARAM_SEED)) {
        const void *v = NULL;
        size_t n = 0;
        if (p->data == NULL || p->data_size == 0)
            continue;
        if (!OSSL_PARAM_get_octet_string_ptr(p, &v, &n))
            return 0;
        uint8_t *grown = OPENSSL_clear_realloc(c->seed, c->seed_len, c->seed_len + n);
        if (grown == NULL)
            return 0;
        memcpy(grown + c->seed_len, v, n);
        c->seed = grown;
        c->seed_len += n;
    }
    return 1;
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
    /* A handle is computed on the token or not at all: never as key bytes. */
    if (c->handle)
        return c->kind->derive_token(c, key, keylen);
    return EVP_KDF_derive(c->dflt, key, keylen, NULL);
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
