/* The two KDF harnesses compare the m2mhsm provider with the default provider, loaded as an
 * application loads them, with no token: every handle is unknown to it. */
#ifndef M2MHSM_FUZZ_KDF_PAIR_H
#define M2MHSM_FUZZ_KDF_PAIR_H

#include <openssl/kdf.h>
#include <openssl/params.h>
#include "fuzz.h"

#define KDF_MAX_PARAMS 12
#define KDF_MAX_OUT 600

typedef struct {
    OSSL_PARAM params[KDF_MAX_PARAMS + 1];
    size_t n;
    char strings[KDF_MAX_PARAMS][48];
} kdf_params;

/* Fetch alg from both providers (once per process). */
void kdf_pair_init(const char *alg, EVP_KDF **ours, EVP_KDF **dflt);
void kdf_params_add_octets(kdf_params *ps, const char *name, const uint8_t *v, size_t n);
void kdf_params_add_string(kdf_params *ps, const char *name, const char *s);
void kdf_params_add_int(kdf_params *ps, const char *name, int *v);
/* A digest name: mostly those libssl uses, sometimes fuzzed text. */
const char *kdf_digest(fuzz_in *in, char buf[24]);
/* Set up to two parameter sets, derive out_len bytes (on a duplicate when dup); 1 on
 * success with the output in out. */
int kdf_run(EVP_KDF *kdf, const kdf_params *a, const kdf_params *b, int dup, uint8_t *out,
            size_t out_len);

#endif
