/* The provider's TLS1-PRF (engine/kdf.c, engine/kdf_tls1_prf.c) and its premaster/handle
 * parsing (engine/handle.c), driven through EVP_KDF with fuzzed parameters: without a PSK
 * handle in a premaster the result is the default provider's, byte for byte; with one it is
 * refused (no token here, so every handle is unknown), never used as key bytes. */
#include "kdf_pair.h"

#include <string.h>
#include <openssl/core_names.h>
#include "handle.h"

static EVP_KDF *ours, *dflt;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    kdf_pair_init("TLS1-PRF", &ours, &dflt);
    return 0;
}

/* The RFC 4279 premaster shape with a PSK handle as the psk, checked here on its own. */
static int handle_premaster(const uint8_t *s, size_t len)
{
    if (len < 4)
        return 0;
    size_t m = (size_t)s[0] << 8 | s[1];
    if (len < 4 + m)
        return 0;
    size_t n = (size_t)s[2 + m] << 8 | s[3 + m];
    return len == 4 + m + n && n == M2MHSM_HANDLE_LEN &&
           memcmp(s + 4 + m, M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN) == 0;
}

/* A premaster [u16 m][other][u16 28][handle]: other is zeros (plain PSK) or fuzzed. */
static size_t premaster(fuzz_in *in, uint8_t *out)
{
    size_t m = fuzz_u8(in) % 64, n = M2MHSM_HANDLE_LEN, len;
    int plain = fuzz_u8(in) & 1;
    const uint8_t *other = fuzz_bytes(in, m, &len);
    out[0] = 0;
    out[1] = (uint8_t)m;
    memset(out + 2, 0, m);
    if (!plain)
        memcpy(out + 2, other, len);
    out[2 + m] = 0;
    out[3 + m] = (uint8_t)n;
    memcpy(out + 4 + m, M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN);
    const uint8_t *rest = fuzz_bytes(in, n - M2MHSM_HANDLE_MAGIC_LEN, &len);
    memset(out + 4 + m + M2MHSM_HANDLE_MAGIC_LEN, 0x5a, n - M2MHSM_HANDLE_MAGIC_LEN);
    memcpy(out + 4 + m + M2MHSM_HANDLE_MAGIC_LEN, rest, len);
    return 4 + m + n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    kdf_params sets[2];
    uint8_t built[2][KDF_MAX_PARAMS][4 + 64 + M2MHSM_HANDLE_LEN];
    char digest[2][KDF_MAX_PARAMS][24];
    const uint8_t *secret = NULL;
    size_t secret_len = 0;
    memset(sets, 0, sizeof(sets));
    for (int s = 0; s < 2; s++) {
        int first_secret = 1;
        size_t count = fuzz_u8(&in) % (KDF_MAX_PARAMS + 1);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *v = NULL;
            size_t n = 0;
            switch (fuzz_u8(&in) % 5) {
            case 0:
                kdf_params_add_string(&sets[s], OSSL_KDF_PARAM_DIGEST,
                                      kdf_digest(&in, digest[s][i]));
                continue;
            case 1:
                v = fuzz_bytes(&in, 300, &n);
                break;
            case 2:
                n = premaster(&in, built[s][i]);
                v = built[s][i];
                break;
            case 3:
                v = fuzz_bytes(&in, 200, &n);
                kdf_params_add_octets(&sets[s], OSSL_KDF_PARAM_SEED, v, n);
                continue;
            default:
                kdf_params_add_string(&sets[s], OSSL_KDF_PARAM_PROPERTIES,
                                      fuzz_u8(&in) & 1 ? "provider=default" : "");
                continue;
            }
            kdf_params_add_octets(&sets[s], OSSL_KDF_PARAM_SECRET, v, n);
            if (first_secret) /* both providers read a set's first SECRET */
                secret = v, secret_len = n;
            first_secret = 0;
        }
    }
    size_t out_len = 1 + ((size_t)fuzz_u8(&in) << 8 | fuzz_u8(&in)) % KDF_MAX_OUT;
    int dup = fuzz_u8(&in) & 1;
    uint8_t a[KDF_MAX_OUT], b[KDF_MAX_OUT];
    int ok_ours = kdf_run(ours, &sets[0], &sets[1], dup, a, out_len);
    int ok_dflt = kdf_run(dflt, &sets[0], &sets[1], dup, b, out_len);
    if (secret != NULL && handle_premaster(secret, secret_len)) {
        if (ok_ours)
            fuzz_fail("TLS1-PRF computed with an unknown PSK handle");
    } else if (ok_ours != ok_dflt || (ok_ours && memcmp(a, b, out_len) != 0)) {
        fuzz_fail("TLS1-PRF without a handle differs from the default provider");
    }
    return 0;
}
