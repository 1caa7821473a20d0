/* Shared by fuzz_tls1_prf and fuzz_tls13_kdf (kdf_pair.h). */
#include "kdf_pair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/provider.h>
#include "prov.h"

void kdf_pair_init(const char *alg, EVP_KDF **ours, EVP_KDF **dflt)
{
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    if (libctx == NULL ||
        OSSL_PROVIDER_add_builtin(libctx, M2MHSM_PROV_NAME, m2mhsm_provider_init) != 1 ||
        OSSL_PROVIDER_load(libctx, "default") == NULL ||
        OSSL_PROVIDER_load(libctx, M2MHSM_PROV_NAME) == NULL ||
        (*ours = EVP_KDF_fetch(libctx, alg, "provider=" M2MHSM_PROV_NAME)) == NULL ||
        (*dflt = EVP_KDF_fetch(libctx, alg, "provider=default")) == NULL)
        fuzz_fail("cannot load the providers");
}

static OSSL_PARAM *next(kdf_params *ps)
{
    if (ps->n == KDF_MAX_PARAMS)
        return NULL;
    ps->params[ps->n + 1] = OSSL_PARAM_construct_end();
    return &ps->params[ps->n++];
}

void kdf_params_add_octets(kdf_params *ps, const char *name, const uint8_t *v, size_t n)
{
    OSSL_PARAM *p = next(ps);
    if (p != NULL)
        *p = OSSL_PARAM_construct_octet_string(name, (void *)v, n);
}

void kdf_params_add_string(kdf_params *ps, const char *name, const char *s)
{
    size_t i = ps->n;
    OSSL_PARAM *p = next(ps);
    if (p == NULL)
        return;
    snprintf(ps->strings[i], sizeof(ps->strings[i]), "%s", s);
    *p = OSSL_PARAM_construct_utf8_string(name, ps->strings[i], 0);
}

void kdf_params_add_int(kdf_params *ps, const char *name, int *v)
{
    OSSL_PARAM *p = next(ps);
    if (p != NULL)
        *p = OSSL_PARAM_construct_int(name, v);
}

const char *kdf_digest(fuzz_in *in, char buf[24])
{
    static const char *const names[] = {"SHA256",   "SHA2-256", "sha256", "SHA384",
                                        "MD5-SHA1", "SHA512",   "SHA1",   "MD5"};
    uint8_t pick = fuzz_u8(in);
    if (pick < 240)
        return names[pick % (sizeof(names) / sizeof(names[0]))];
    size_t n;
    const uint8_t *v = fuzz_bytes(in, 23, &n);
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

int kdf_run(EVP_KDF *kdf, const kdf_params *a, const kdf_params *b, int dup, uint8_t *out,
            size_t out_len)
{
    EVP_KDF_CTX *c = EVP_KDF_CTX_new(kdf), *d = NULL;
    if (c == NULL)
        fuzz_fail("EVP_KDF_CTX_new");
    int ok = EVP_KDF_CTX_set_params(c, a->params) == 1 &&
             (b->n == 0 || EVP_KDF_CTX_set_params(c, b->params) == 1);
    if (ok && dup) {
        /* OpenSSL 3.0's own TLS KDFs cannot be duplicated: then neither can ours, and
         * the two are compared on that failure like any other. */
        d = EVP_KDF_CTX_dup(c);
        ok = d != NULL;
        EVP_KDF_CTX_free(c);
        c = d;
    }
    ok = ok && EVP_KDF_derive(c, out, out_len, NULL) == 1;
    EVP_KDF_CTX_free(c);
    return ok;
}
