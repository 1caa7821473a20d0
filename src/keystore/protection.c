/* What the token itself says of a record's keys: that none of them can leave it. A listing
 * shows this rather than our word for the attributes we asked for at creation, since a
 * token may ignore or change a template (PKCS#11 v2.40 4.4, 4.10). */
#include "ks.h"
#include "../internal.h"

/* One key object's CKA_SENSITIVE and CKA_EXTRACTABLE, read in one call. (CKA_ALWAYS_SENSITIVE
 * and CKA_NEVER_EXTRACTABLE are false for every key entered with C_CreateObject, as a fetched
 * Km or Kpsa is: they say where a key came from, not whether it can leave.) */
static m2mhsm_status read_key(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                              m2mhsm_key_protection *out)
{
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE;
    CK_ATTRIBUTE a[] = {{CKA_SENSITIVE, &sens, sizeof(sens)},
                        {CKA_EXTRACTABLE, &extr, sizeof(extr)}};
    m2mhsm_token_read_begin(tok);
    CK_RV rv = m2mhsm_token_functions(tok)->C_GetAttributeValue(s, h, a, M2MHSM_ARRAY_LEN(a));
    m2mhsm_token_read_end(tok);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_GetAttributeValue(CKA_SENSITIVE, CKA_EXTRACTABLE)", rv);
    out->sensitive = out->sensitive && sens == CK_TRUE;
    out->extractable = out->extractable || extr != CK_FALSE;
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_keystore_protection(m2mhsm_keystore *ks, const m2mhsm_record *rec,
                                         m2mhsm_key_protection *out)
{
    if (ks == NULL || rec == NULL || out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "protection: NULL argument");
    m2mhsm_key_protection p = {.sensitive = 1, .extractable = 0};
    size_t keys = 0;
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(ks->tok, &s);
    if (st != M2MHSM_OK)
        return st;
    for (int f = 0; st == M2MHSM_OK && f < M2MHSM_FORM_COUNT; f++) {
        if (ks_obj(rec)->key[f] == CK_INVALID_HANDLE)
            continue;
        keys++;
        st = read_key(ks->tok, s, ks_obj(rec)->key[f], &p);
    }
    m2mhsm_token_session_put(ks->tok, s);
    if (st == M2MHSM_OK && keys == 0)
        st = m2mhsm_fail(M2MHSM_E_INVALID_ARG, "protection: a %s record has no key objects",
                         m2mhsm_kind_name(rec->kind));
    if (st == M2MHSM_OK)
        *out = p;
    return st;
}
