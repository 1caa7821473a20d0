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

m2mhsm_status m2mhsm_token_find_private_key(m2mhsm_token *tok, const char *label,
                                            CK_OBJECT_HANDLE *out)
{
    if (tok == NULL || label == NULL || out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "find_private_key: NULL argument");
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK)
        return st;
    st = find_in(tok, s, label, out);
    m2mhsm_token_session_put(tok, s);
    return st;
}

m2mhsm_status m2mhsm_token_sign(m2mhsm_token *tok, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech,
                                const uint8_t *in, size_t in_len, uint8_t *sig, size_t *sig_len)
{
    if (tok == NULL || in == NULL || sig == NULL || sig_len == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "token_sign: NULL argument");
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK)
        return st;
    CK_MECHANISM m = {mech, NULL, 0};
    CK_ULONG n = *sig_len;
    m2mhsm_token_read_begin(tok);
    CK_RV rv = tok->fn->C_SignInit(s, &m, key);
    if (rv == CKR_OK)
        rv = tok->fn->C_Sign(s, (CK_BYTE *)in, in_len, sig, &n);
    m2mhsm_token_read_end(tok);
    if (rv != CKR_OK) {
        char op[64];
        snprintf(op, sizeof(op), "C_SignInit/C_Sign(%s)", m2mhsm_ckm_name(mech));
        st = m2mhsm_fail_ckr(op, rv);
    }
    m2mhsm_token_session_put(tok, s);
    *sig_len = n;
    return st;
}
