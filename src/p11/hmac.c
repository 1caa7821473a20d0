/* The one cryptographic operation m2mhsm asks of a token: HMAC-SHA-256 with a key that
 * stays inside it. */
#include "p11.h"
#include "../internal.h"

#include <openssl/crypto.h>

m2mhsm_status m2mhsm_token_hmac_sha256(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *msg,
                                       size_t msg_len, uint8_t out[32])
{
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK)
        return st;
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG out_len = 32;
    m2mhsm_token_read_begin(tok);
    CK_RV rv = tok->fn->C_SignInit(s, &mech, key);
    if (rv == CKR_OK)
        rv = tok->fn->C_Sign(s, (CK_BYTE *)msg, msg_len, out, &out_len);
    m2mhsm_token_read_end(tok);
    m2mhsm_token_session_put(tok, s);
    if (rv != CKR_OK)
        st = m2mhsm_fail_ckr("C_SignInit/C_Sign(CKM_SHA256_HMAC)", rv);
    else if (out_len != 32)
        st = m2mhsm_fail(M2MHSM_E_PKCS11, "C_Sign(CKM_SHA256_HMAC): %lu bytes, not 32",
                         (unsigned long)out_len);
    if (st != M2MHSM_OK)
        OPENSSL_cleanse(out, 32);
    return st;
}
