/* The CLI's key files (src/apps/m2mhsm/files.c): the hex reader of --key-file and
 * --exported-file, checked against an independent decoding, and the binary reader of
 * --wrapped with the length rules the wrapped Kpm then meets before any token is used. */
#include "fuzz.h"

#include <string.h>
#include "apps/m2mhsm/cli.h"

/* The hex file's bytes as the CLI documents them: separators skipped, pairs of digits. */
static int reference_hex(const uint8_t *d, size_t n, uint8_t *out, size_t cap, size_t *len)
{
    static const char digits[] = "0123456789abcdef0123456789ABCDEF";
    size_t count = 0;
    int half = -1;
    for (size_t i = 0; i < n; i++) {
        if (d[i] != 0 && strchr(" \n\r\t:", d[i]) != NULL)
            continue;
        const char *p = d[i] != 0 ? strchr(digits, d[i]) : NULL;
        if (p == NULL)
            return 0;
        int v = (int)((p - digits) % 16);
        if (half < 0) {
            if (count == cap)
                return 0;
            half = v;
        } else {
            out[count++] = (uint8_t)(half << 4 | v);
            half = -1;
        }
    }
    *len = count;
    return half < 0;
}

static void hex(const uint8_t *data, size_t size, const char *path, size_t cap)
{
    uint8_t got[M2MHSM_PSK_MAX + 16], want[M2MHSM_PSK_MAX + 16];
    size_t got_len = 0, want_len = 0;
    int ok = cli_read_hex_key(path, got, cap, &got_len) == M2MHSM_OK;
    if (ok != reference_hex(data, size, want, cap, &want_len) ||
        (ok && (got_len != want_len || memcmp(got, want, got_len) != 0)))
        fuzz_fail("the hex key reader disagrees with the documented format");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    hex(data, size, path, M2MHSM_PSK_MAX + 16);   /* kpm import --key-file */
    hex(data, size, path, M2MHSM_EXPORT_LEN + 1); /* ke import --exported-file */

    uint8_t buf[M2MHSM_PSK_MAX + 16];
    size_t len = 0;
    int ok = cli_read_binary(path, buf, sizeof(buf), &len) == M2MHSM_OK;
    if (ok != (size <= sizeof(buf)) || (ok && (len != size || memcmp(buf, data, size) != 0)))
        fuzz_fail("the binary reader lost or invented bytes");
    /* With no KEK label the wrapped Kpm is judged on its length alone, token untouched. */
    if (ok &&
        m2mhsm_keystore_unwrap_kpm(NULL, "kpm-1", buf, len, "", M2MHSM_NEVER, NULL) == M2MHSM_OK)
        fuzz_fail("a wrapped Kpm accepted without a KEK");
    return 0;
}
