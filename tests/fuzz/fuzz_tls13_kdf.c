/* The provider's TLS13-KDF (engine/kdf.c, engine/kdf_tls13.c) and its handle recognition
 * (engine/handle.c), driven through EVP_KDF with fuzzed parameters: without a handle-shaped
 * key or salt the result is the default provider's, byte for byte; with one it is refused
 * (no token here, so every handle is unknown), never used as key bytes. */
#include "kdf_pair.h"

#include <string.h>
#include <openssl/core_names.h>
#include "handle.h"

static EVP_KDF *ours, *dflt;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    kdf_pair_init("TLS13-KDF", &ours, &dflt);
    return 0;
}

static int handle_shaped(const uint8_t *b, size_t n)
{
    static const uint8_t pad[M2MHSM_ES_HANDLE_LEN - M2MHSM_HANDLE_LEN];
    return (n == M2MHSM_HANDLE_LEN && memcmp(b, M2MHSM_HANDLE_MAGIC, 8) == 0) ||
           (n == M2MHSM_ES_HANDLE_LEN && memcmp(b, M2MHSM_ES_HANDLE_MAGIC, 8) == 0 &&
            memcmp(b + M2MHSM_HANDLE_LEN, pad, sizeof(pad)) == 0);
}

/* A PSK handle (28 bytes) or an early-secret handle (32) with a fuzzed index and tag. */
static size_t handle(fuzz_in *in, uint8_t out[M2MHSM_ES_HANDLE_LEN])
{
    int es = fuzz_u8(in) & 1;
    size_t n;
    const uint8_t *rest = fuzz_bytes(in, M2MHSM_HANDLE_LEN - M2MHSM_HANDLE_MAGIC_LEN, &n);
    memset(out, 0, M2MHSM_ES_HANDLE_LEN);
    memcpy(out, es ? M2MHSM_ES_HANDLE_MAGIC : M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN);
    memcpy(out + M2MHSM_HANDLE_MAGIC_LEN, rest, n);
    return es ? M2MHSM_ES_HANDLE_LEN : M2MHSM_HANDLE_LEN;
}

static const char *const modes[] = {"EXTRACT_ONLY", "EXPAND_ONLY", "EXTRACT_AND_EXPAND",
                                    "extract_only", "BOGUS"};

typedef struct {
    const uint8_t *key, *salt;
    size_t key_len, salt_len;
    int key_set, salt_set;
} last_seen;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    kdf_params sets[2];
    uint8_t built[2][KDF_MAX_PARAMS][M2MHSM_ES_HANDLE_LEN];
    char digest[2][KDF_MAX_PARAMS][24];
    int ints[2][KDF_MAX_PARAMS];
    last_seen seen = {0};
    memset(sets, 0, sizeof(sets));
    for (int s = 0; s < 2; s++) {
        int key_first = 1, salt_first = 1; /* both providers read a set's first key, salt */
        size_t count = fuzz_u8(&in) % (KDF_MAX_PARAMS + 1);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *v = NULL;
            size_t n = 0;
            uint8_t tag = fuzz_u8(&in) % 11;
            switch (tag) {
            case 0:
                kdf_params_add_string(&sets[s], OSSL_KDF_PARAM_MODE,
                                      modes[fuzz_u8(&in) % (sizeof(modes) / sizeof(modes[0]))]);
                continue;
            case 1:
                ints[s][i] = (int)(fuzz_u8(&in) % 5) - 1;
                kdf_params_add_int(&sets[s], OSSL_KDF_PARAM_MODE, &ints[s][i]);
                continue;
            case 2:
                kdf_params_add_string(&sets[s], OSSL_KDF_PARAM_DIGEST,
                                      kdf_digest(&in, digest[s][i]));
                continue;
            case 3: /* raw key, up to the ffdhe8192 (EC)DHE secret and beyond */
            case 4:
                if (tag == 3) {
                    v = fuzz_bytes(&in, 1100, &n);
                } else {
                    n = handle(&in, built[s][i]);
                    v = built[s][i];
                }
                kdf_params_add_octets(&sets[s], OSSL_KDF_PARAM_KEY, v, n);
                if (key_first)
                    seen.key = v, seen.key_len = n, seen.key_set = 1;
                key_first = 0;
                continue;
            case 5:
            case 6:
                if (tag == 5) {
                    v = fuzz_bytes(&in, 100, &n);
                } else {
                    n = handle(&in, built[s][i]);
                    v = built[s][i];
                }
                kdf_params_add_octets(&sets[s], OSSL_KDF_PARAM_SALT, v, n);
                if (salt_first)
                    seen.salt = v, seen.salt_len = n, seen.salt_set = 1;
                salt_first = 0;
                continue;
            case 7:
                v = fuzz_bytes(&in, 24, &n);
                kdf_params_add_octets(&sets[s], OSSL_KDF_PARAM_PREFIX, v, n);
                continue;
            case 8:
                v = fuzz_bytes(&in, 270, &n);
                kdf_params_add_octets(&sets[s], OSSL_KDF_PARAM_LABEL, v, n);
                continue;
            case 9:
                v = fuzz_bytes(&in, 80, &n);
                kdf_params_add_octets(&sets[s], OSSL_KDF_PARAM_DATA, v, n);
                continue;
            default:
                kdf_params_add_string(&sets[s], OSSL_KDF_PARAM_PROPERTIES,
                                      fuzz_u8(&in) & 1 ? "provider=default" : "");
                continue;
            }
        }
    }
    size_t out_len = 1 + ((size_t)fuzz_u8(&in) << 8 | fuzz_u8(&in)) % KDF_MAX_OUT;
    if (fuzz_u8(&in) & 1)
        out_len = 32; /* what extract and most expands produce */
    int dup = fuzz_u8(&in) & 1;
    uint8_t a[KDF_MAX_OUT], b[KDF_MAX_OUT];
    int ok_ours = kdf_run(ours, &sets[0], &sets[1], dup, a, out_len);
    int ok_dflt = kdf_run(dflt, &sets[0], &sets[1], dup, b, out_len);
    int handled = (seen.key_set && handle_shaped(seen.key, seen.key_len)) ||
                  (seen.salt_set && handle_shaped(seen.salt, seen.salt_len));
    if (handled) {
        if (ok_ours)
            fuzz_fail("TLS13-KDF computed with an unknown handle");
    } else if (ok_ours != ok_dflt || (ok_ours && memcmp(a, b, out_len) != 0)) {
        fuzz_fail("TLS13-KDF without a handle differs from the default provider");
    }
    return 0;
}
