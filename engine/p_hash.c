/* P_SHA256 (RFC 5246 section 5) keyed by a token key. */
#include "handle.h"

#include <string.h>
#include <openssl/crypto.h>

#define HLEN 32

m2mhsm_status m2mhsm_token_p_sha256(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *seed,
                                    size_t seed_len, uint8_t *out, size_t olen)
{
    /* A(0) = seed; A(i) = HMAC(K, A(i-1)); out = HMAC(K, A(1) || seed) || ... */
    uint8_t *buf = OPENSSL_malloc(HLEN + seed_len);
    uint8_t a[HLEN], block[HLEN];
    if (buf == NULL)
        return M2MHSM_E_NOMEM;
    m2mhsm_status st = m2mhsm_token_hmac_sha256(tok, key, seed, seed_len, a);
    while (st == M2MHSM_OK && olen > 0) {
        memcpy(buf, a, HLEN);
        memcpy(buf + HLEN, seed, seed_len);
        st = m2mhsm_token_hmac_sha256(tok, key, buf, HLEN + seed_len, block);
        if (st != M2MHSM_OK)
            break;
        size_t n = olen < HLEN ? olen : HLEN;
        memcpy(out, block, n);
        out += n;
        olen -= n;
        if (olen > 0)
            st = m2mhsm_token_hmac_sha256(tok, key, a, HLEN, a);
    }
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(block, sizeof(block));
    OPENSSL_clear_free(buf, HLEN + seed_len);
    return st;
}
