/* The one cryptographic operation m2mhsm asks of a token, HMAC-SHA-256 with a key that
 * stays inside it, and what is built from it: P_SHA256, and the in-memory session copies
 * that make it fast. */
#include "p11.h"
#include "../internal.h"

#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

#define HLEN 32

/* One HMAC on a session the caller holds, inside a read section. */
static m2mhsm_status hmac_in(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                             const uint8_t *msg, size_t msg_len, uint8_t out[HLEN])
{
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG out_len = HLEN;
    CK_RV rv = tok->fn->C_SignInit(s, &mech, key);
    if (rv == CKR_OK)
        rv = tok->fn->C_Sign(s, (CK_BYTE *)msg, msg_len, out, &out_len);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_SignInit/C_Sign(CKM_SHA256_HMAC)", rv);
    if (out_len != HLEN)
        return m2mhsm_fail(M2MHSM_E_PKCS11, "C_Sign(CKM_SHA256_HMAC): %lu bytes, not 32",
                           (unsigned long)out_len);
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_token_hmac_sha256(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *msg,
                                       size_t msg_len, uint8_t out[32])
{
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_token_read_begin(tok);
    st = hmac_in(tok, s, key, msg, msg_len, out);
    m2mhsm_token_read_end(tok);
    m2mhsm_token_session_put(tok, s);
    if (st != M2MHSM_OK)
        OPENSSL_cleanse(out, HLEN);
    return st;
}

/* A(0) = seed; A(i) = HMAC(K, A(i-1)); out = HMAC(K, A(1) || seed) || HMAC(K, A(2) || seed)... */
static m2mhsm_status p_sha256_in(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                                 const uint8_t *seed, size_t seed_len, uint8_t *buf, uint8_t *out,
                                 size_t olen)
{
    uint8_t a[HLEN], block[HLEN];
    m2mhsm_status st = hmac_in(tok, s, key, seed, seed_len, a);
    while (st == M2MHSM_OK && olen > 0) {
        memcpy(buf, a, HLEN);
        memcpy(buf + HLEN, seed, seed_len);
        if ((st = hmac_in(tok, s, key, buf, HLEN + seed_len, block)) != M2MHSM_OK)
            break;
        size_t n = olen < HLEN ? olen : HLEN;
        memcpy(out, block, n);
        out += n;
        olen -= n;
        if (olen > 0)
            st = hmac_in(tok, s, key, a, HLEN, a);
    }
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(block, sizeof(block));
    return st;
}

m2mhsm_status m2mhsm_token_p_sha256(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *seed,
                                    size_t seed_len, uint8_t *out, size_t olen)
{
    uint8_t *buf = OPENSSL_malloc(HLEN + seed_len);
    if (buf == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st == M2MHSM_OK) {
        /* One session and one read section for the whole PRF. */
        m2mhsm_token_read_begin(tok);
        st = p_sha256_in(tok, s, key, seed, seed_len, buf, out, olen);
        m2mhsm_token_read_end(tok);
        m2mhsm_token_session_put(tok, s);
    }
    OPENSSL_clear_free(buf, HLEN + seed_len);
    return st;
}

m2mhsm_status m2mhsm_token_session_copy(m2mhsm_token *tok, CK_OBJECT_HANDLE key,
                                        CK_OBJECT_HANDLE *copy)
{
    m2mhsm_status st = m2mhsm_token_ensure_attached(tok);
    if (st != M2MHSM_OK)
        return st;
    CK_BBOOL f = CK_FALSE;
    static const char label[] = "m2mhsm-session-copy";
    /* Not on the token, and neither m2mhsm's label nor the record's CKA_ID: no scan or
     * erase may ever take the copy for the stored key (searches also ask CKA_TOKEN). */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_TOKEN, &f, sizeof(f)},
        {CKA_LABEL, (void *)label, sizeof(label) - 1},
        {CKA_ID, (void *)"", 0},
    };
    /* The login session lives as long as the token handle, so the copy does too; the
     * token lock keeps that session to one thread at a time. */
    m2mhsm_token_write_begin(tok);
    pthread_mutex_lock(&tok->lock);
    CK_RV rv = tok->fn->C_CopyObject(tok->login_session, key, tmpl, 3, copy);
    pthread_mutex_unlock(&tok->lock);
    m2mhsm_token_write_end(tok);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_CopyObject(CKA_TOKEN=FALSE)", rv);
    return M2MHSM_OK;
}

void m2mhsm_token_session_destroy(m2mhsm_token *tok, CK_OBJECT_HANDLE copy)
{
    m2mhsm_token_write_begin(tok);
    pthread_mutex_lock(&tok->lock);
    /* After a fork the copy is the parent's: nothing to destroy here. */
    if (tok->pid == getpid())
        tok->fn->C_DestroyObject(tok->login_session, copy);
    pthread_mutex_unlock(&tok->lock);
    m2mhsm_token_write_end(tok);
}
