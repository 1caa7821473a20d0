/* Signing with a private key of the token through the store's own logged-in sessions: the
 * services' TLS identities (src/apps/common/certkey.c), so that they share its login and its
 * failover whatever the module does with a second C_Initialize. */
#include "p11.h"
#include "../internal.h"

#include <stdio.h>
#include <string.h>

static m2mhsm_status find_in(m2mhsm_token *tok, CK_SESSION_HANDLE s, const char *label,
                             CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    m2mhsm_token_search_begin(tok);
    CK_RV rv = tok->fn->C_FindObjectsInit(s, tmpl, 3);
    if (rv == CKR_OK) {
        rv = tok->fn->C_FindObjects(s, found, 2, &n);
        CK_RV fin = tok->fn->C_FindObjectsFinal(s);
        if (rv == CKR_OK)
            rv = fin;
    }
    m2mhsm_token_search_end(tok);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_FindObjects(CKO_PRIVATE_KEY)", rv);
    if (n != 1)
        return m2mhsm_fail(n == 0 ? M2MHSM_E_NOT_FOUND : M2MHSM_E_TOKEN,
                           "%s private key labelled \"%s\" on the token",
                           n == 0 ? "no" : "more than one", label);
    *out = found[0];
    return M2MHSM_OK;
}

/* The key's handle in generation gen: remembered for the last label, found otherwise. */
static m2mhsm_status key_for(m2mhsm_token *tok, CK_SESSION_HANDLE s, const char *label,
                             unsigned gen, CK_OBJECT_HANDLE *key)
{
    pthread_mutex_lock(&tok->lock);
    int known = tok->signer.key != CK_INVALID_HANDLE && tok->signer.generation == gen &&
                strcmp(tok->signer.label, label) == 0;
    *key = tok->signer.key;
    pthread_mutex_unlock(&tok->lock);
    if (known)
        return M2MHSM_OK;
    m2mhsm_status st = find_in(tok, s, label, key);
    if (st == M2MHSM_OK && strlen(label) < sizeof(tok->signer.label)) {
        pthread_mutex_lock(&tok->lock);
        snprintf(tok->signer.label, sizeof(tok->signer.label), "%s", label);
        tok->signer.key = *key;
        tok->signer.generation = gen;
        pthread_mutex_unlock(&tok->lock);
    }
    return st;
}

static m2mhsm_status sign_once(m2mhsm_token *tok, const char *label, unsigned gen,
                               const uint8_t *in, size_t in_len, uint8_t *sig, size_t *sig_len)
{
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK)
        return st;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    if ((st = key_for(tok, s, label, gen, &key)) == M2MHSM_OK) {
        CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
        CK_ULONG n = *sig_len;
        m2mhsm_token_read_begin(tok);
        CK_RV rv = tok->fn->C_SignInit(s, &m, key);
        if (rv == CKR_OK)
            rv = tok->fn->C_Sign(s, (CK_BYTE *)in, in_len, sig, &n);
        m2mhsm_token_read_end(tok);
        if (rv != CKR_OK)
            st = m2mhsm_fail_ckr("C_SignInit/C_Sign(CKM_ECDSA)", rv);
        *sig_len = n;
    }
    m2mhsm_token_session_put(tok, s);
    return st;
}

m2mhsm_status m2mhsm_token_sign_ecdsa(m2mhsm_token *tok, const char *key_label, const uint8_t *dgst,
                                      size_t dgst_len, uint8_t *sig, size_t *sig_len)
{
    if (tok == NULL || key_label == NULL || dgst == NULL || sig == NULL || sig_len == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "token_sign_ecdsa: NULL argument");
    size_t cap = *sig_len;
    unsigned gen = m2mhsm_token_generation(tok);
    m2mhsm_status st = sign_once(tok, key_label, gen, dgst, dgst_len, sig, sig_len);
    /* A token lost and back: once more, the key found again in the new generation. */
    if (st != M2MHSM_OK && st != M2MHSM_E_NOT_FOUND &&
        m2mhsm_token_recover(tok, gen) == M2MHSM_OK) {
        *sig_len = cap;
        st = sign_once(tok, key_label, m2mhsm_token_generation(tok), dgst, dgst_len, sig, sig_len);
    }
    return st;
}
