/* HMAC-SHA-256 whose result is a key object that never leaves the token: PKCS#11 3.0's
 * CKM_HKDF_DERIVE with extraction only, HKDF-Extract(salt, IKM) = HMAC(salt, IKM)
 * (RFC 5869 section 2.2). With the salt a key and the IKM a session key holding a message,
 * that is the TS-0003 10.3.2/10.3.3 HMAC keyed by Ke; with a NULL salt (HashLen zeros)
 * over a PSK key, the TLS 1.3 early secret (RFC 8446 section 7.1). */
#include "p11.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

#define HLEN 32
#define TEMPLATE_MAX 32

m2mhsm_status m2mhsm_p11_data_key(m2mhsm_token *tok, CK_SESSION_HANDLE s, const uint8_t *data,
                                  size_t len, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    static const char label[] = "m2mhsm-hkdf-input";
    /* A session object: it dies with the session at the latest. The message is not
     * secret, but it is kept sensitive so the token treats it like any key it derives from. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &f, sizeof(f)},     {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)}, {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_DERIVE, &t, sizeof(t)},    {CKA_LABEL, (void *)label, sizeof(label) - 1},
        {CKA_VALUE, (void *)data, len},
    };
    CK_RV rv = tok->fn->C_CreateObject(s, tmpl, M2MHSM_ARRAY_LEN(tmpl), out);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_CreateObject(HKDF input session key)", rv);
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_p11_hkdf_extract(m2mhsm_token *tok, CK_SESSION_HANDLE s,
                                      CK_OBJECT_HANDLE salt_key, CK_OBJECT_HANDLE ikm,
                                      const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    if (n + 1 > TEMPLATE_MAX)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "HKDF: template too long");
    CK_HKDF_PARAMS p = {0};
    p.bExtract = CK_TRUE;
    p.bExpand = CK_FALSE;
    p.prfHashMechanism = CKM_SHA256;
    p.ulSaltType = salt_key != CK_INVALID_HANDLE ? CKF_HKDF_SALT_KEY : CKF_HKDF_SALT_NULL;
    p.hSaltKey = salt_key;
    CK_MECHANISM mech = {CKM_HKDF_DERIVE, &p, sizeof(p)};
    /* The PRK is exactly HashLen bytes; say so, since a generic secret has no length of
     * its own. */
    CK_ULONG value_len = HLEN;
    CK_ATTRIBUTE t[TEMPLATE_MAX];
    memcpy(t, tmpl, n * sizeof(*tmpl));
    t[n] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &value_len, sizeof(value_len)};
    CK_RV rv = tok->fn->C_DeriveKey(s, &mech, ikm, t, n + 1, out);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr(salt_key != CK_INVALID_HANDLE
                                   ? "C_DeriveKey(CKM_HKDF_DERIVE, CKF_HKDF_SALT_KEY)"
                                   : "C_DeriveKey(CKM_HKDF_DERIVE, CKF_HKDF_SALT_NULL)",
                               rv);
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_p11_hmac_derive(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                                     const uint8_t *msg, size_t msg_len, const CK_ATTRIBUTE *tmpl,
                                     CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_HANDLE data = CK_INVALID_HANDLE;
    m2mhsm_status st = m2mhsm_p11_data_key(tok, s, msg, msg_len, &data);
    if (st == M2MHSM_OK)
        st = m2mhsm_p11_hkdf_extract(tok, s, key, data, tmpl, n, out);
    if (data != CK_INVALID_HANDLE)
        tok->fn->C_DestroyObject(s, data);
    return st;
}

m2mhsm_status m2mhsm_token_hmac_derive(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *msg,
                                       size_t msg_len, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                       CK_OBJECT_HANDLE *out)
{
    if (tok == NULL || msg == NULL || msg_len == 0 || tmpl == NULL || out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "hmac_derive: missing argument");
    if (!tok->caps.hkdf_derive)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED, "the token offers no CKM_HKDF_DERIVE");
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_token_write_begin(tok);
    st = m2mhsm_p11_hmac_derive(tok, s, key, msg, msg_len, tmpl, n, out);
    m2mhsm_token_write_changed(tok, s);
    m2mhsm_token_write_end(tok);
    m2mhsm_token_session_put(tok, s);
    return st;
}

m2mhsm_status m2mhsm_token_hkdf_extract_key(m2mhsm_token *tok, CK_OBJECT_HANDLE ikm,
                                            const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                            CK_OBJECT_HANDLE *out)
{
    if (tok == NULL || tmpl == NULL || out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "hkdf_extract_key: missing argument");
    if (!tok->caps.hkdf_derive)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED, "the token offers no CKM_HKDF_DERIVE");
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_token_write_begin(tok);
    st = m2mhsm_p11_hkdf_extract(tok, s, CK_INVALID_HANDLE, ikm, tmpl, n, out);
    m2mhsm_token_write_changed(tok, s);
    m2mhsm_token_write_end(tok);
    m2mhsm_token_session_put(tok, s);
    return st;
}
