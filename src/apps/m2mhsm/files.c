/* Reading key material from files: never from argv, and every copy cleansed. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>

int cli_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

m2mhsm_status cli_read_hex_key(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return M2MHSM_E_IO;
    /* Unbuffered: a stdio buffer would keep a copy of the key we cannot cleanse. */
    setvbuf(f, NULL, _IONBF, 0);
    size_t n = 0;
    int hi = -1, c, ok = 1;
    while (ok && (c = fgetc(f)) != EOF) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == ':')
            continue;
        int v = cli_hexval(c);
        if (v < 0 || (hi < 0 && n == cap)) {
            ok = 0;
        } else if (hi < 0) {
            hi = v;
        } else {
            buf[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
        c = 0;
    }
    fclose(f);
    if (!ok || hi >= 0) {
        OPENSSL_cleanse(buf, cap);
        return M2MHSM_E_INVALID_ARG;
    }
    *len = n;
    return M2MHSM_OK;
}

m2mhsm_status cli_read_binary(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return M2MHSM_E_IO;
    size_t n = fread(buf, 1, cap, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    if (more)
        return M2MHSM_E_INVALID_ARG;
    *len = n;
    return M2MHSM_OK;
}
