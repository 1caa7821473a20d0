/* Recognising PSK handles in what libssl passes to the KDFs. */
#include "handle.h"

#include <string.h>

int m2mhsm_handle_shaped(const uint8_t *psk, size_t len)
{
    return len == M2MHSM_HANDLE_LEN &&
           memcmp(psk, M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN) == 0;
}

int m2mhsm_premaster_psk(const uint8_t *secret, size_t len, const uint8_t **psk, size_t *psk_len)
{
    if (len < 4)
        return 0;
    size_t n = (size_t)secret[0] << 8 | secret[1];
    if (len != 4 + 2 * n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (secret[2 + i] != 0)
            return 0;
    if (((size_t)secret[2 + n] << 8 | secret[3 + n]) != n)
        return 0;
    *psk = secret + 4 + n;
    *psk_len = n;
    return 1;
}
