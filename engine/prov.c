/*
 * The m2mhsm provider: entry point, algorithm table, and the delegation that lets every
 * KDF input without a PSK handle be computed by the default provider, byte for byte.
 */
#include "prov.h"

#include <stdlib.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

static const OSSL_ALGORITHM kdfs[] = {
    {"TLS1-PRF", "provider=" M2MHSM_PROV_NAME, m2mhsm_kdf_tls1_prf_functions,
     "TLS 1.2 PRF whose PSK premaster may be a handle to a PKCS#11 key"},
    {"TLS13-KDF", "provider=" M2MHSM_PROV_NAME, m2mhsm_kdf_tls13_functions,
     "TLS 1.3 KDF whose external PSK may be a handle to a PKCS#11 key"},
    {NULL, NULL, NULL, NULL},
};

EVP_KDF_CTX *m2mhsm_prov_delegate(const m2mhsm_provctx *pc, const char *name)
{
    EVP_KDF *kdf = EVP_KDF_fetch(pc->libctx, name, "provider=default");
    if (kdf == NULL)
        return NULL;
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    return ctx;
}

static const OSSL_ALGORITHM *query(void *provctx, int operation_id, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    return operation_id == OSSL_OP_KDF ? kdfs : NULL;
}

static const OSSL_PARAM *gettable_params(void *provctx)
{
    (void)provctx;
    static const OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, NULL, 0),
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, NULL, 0),
        OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
        OSSL_PARAM_END,
    };
    return params;
}

static int get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    if (!m2mhsm_prov_config_get_params(provctx, params))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, "m2mhsm: oneM2M TS-0003 PSKs in a PKCS#11 token"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, M2MHSM_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, M2MHSM_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
        !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static void teardown(void *provctx)
{
    m2mhsm_provctx *pc = provctx;
    if (pc == NULL)
        return;
    m2mhsm_prov_config_close(pc);
    OSSL_LIB_CTX_free(pc->libctx);
    free(pc);
}

static const OSSL_DISPATCH dispatch[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))query},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))m2mhsm_prov_reason_strings},
    {0, NULL},
};

int m2mhsm_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                         const OSSL_DISPATCH **out, void **provctx)
{
    m2mhsm_provctx *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return 0;
    pc->core = handle;
    m2mhsm_prov_errors_init(pc, in);
    pc->libctx = OSSL_LIB_CTX_new_child(handle, in);
    if (pc->libctx == NULL || !m2mhsm_prov_config_open(pc, in)) {
        OSSL_LIB_CTX_free(pc->libctx);
        free(pc);
        return 0;
    }
    *out = dispatch;
    *provctx = pc;
    return 1;
}

/* The loadable module's entry point (openssl.cnf, -provider m2mhsm): the one symbol the
 * module exports. */
__attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
                                                              const OSSL_DISPATCH *in,
                                                              const OSSL_DISPATCH **out,
                                                              void **provctx)
{
    return m2mhsm_provider_init(handle, in, out, provctx);
}
