/*
 * What object templates the token accepts, probed once per attach with session objects (they
 * change nothing stored, vanish with their session even after a crash, and work in read-only
 * stores such as the provider's) and corrected by the first stored write that a module
 * refuses although its session object passed: NSS softokn accepts CKA_COPYABLE on a session
 * key and fails a token key carrying it with CKR_GENERAL_ERROR.
 */
#include "p11.h"
#include "../internal.h"

#include <string.h>

int m2mhsm_ckr_template_class(CK_RV rv)
{
    return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
           rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_TEMPLATE_INCOMPLETE ||
           rv == CKR_ATTRIBUTE_READ_ONLY;
}

/* *accepted = 0 when the module refuses the template for a template reason; any other
 * failure says nothing about it, and the stored write learns instead. */
static m2mhsm_status try_session_object(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s,
                                        CK_ATTRIBUTE *tmpl, CK_ULONG n, int *accepted)
{
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = fn->C_CreateObject(s, tmpl, n, &h);
    *accepted = !m2mhsm_ckr_template_class(rv);
    if (rv != CKR_OK)
        return M2MHSM_OK;
    rv = fn->C_DestroyObject(s, h);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_DestroyObject(template probe)", rv);
    return M2MHSM_OK;
}

/* CKA_COPYABLE (PKCS#11 2.40) on a sensitive, non-extractable secret key. */
static m2mhsm_status probe_copyable(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, int *accepted)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_BYTE value[32] = {0}; /* a throwaway key of zeros: it protects nothing */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},    {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &f, sizeof(f)},        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)},    {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_SIGN, &f, sizeof(f)},         {CKA_COPYABLE, &f, sizeof(f)},
        {CKA_VALUE, value, sizeof(value)},
    };
    return try_session_object(fn, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), accepted);
}

/* A private CKO_DATA object, the store's metadata form. */
static m2mhsm_status probe_private_data(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, int *accepted)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    static const char app[] = "m2mhsm-probe";
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},        {CKA_TOKEN, &f, sizeof(f)},
        {CKA_PRIVATE, &t, sizeof(t)},          {CKA_APPLICATION, (void *)app, strlen(app)},
        {CKA_VALUE, (void *)app, strlen(app)},
    };
    return try_session_object(fn, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), accepted);
}

m2mhsm_status m2mhsm_token_probe_templates(m2mhsm_token *tok)
{
    int copyable = 1, data = 1;
    m2mhsm_status st = probe_copyable(tok->fn, tok->login_session, &copyable);
    if (st == M2MHSM_OK)
        st = probe_private_data(tok->fn, tok->login_session, &data);
    if (st == M2MHSM_OK) {
        tok->caps.copyable_attr = copyable;
        tok->caps.private_data_objects = data;
    }
    return st;
}

int m2mhsm_token_takes_copyable(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    int v = tok->caps.copyable_attr;
    pthread_mutex_unlock(&tok->lock);
    return v;
}

void m2mhsm_token_note_no_copyable(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    tok->caps.copyable_attr = 0;
    pthread_mutex_unlock(&tok->lock);
}

int m2mhsm_token_takes_private_data(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    int v = tok->caps.private_data_objects;
    pthread_mutex_unlock(&tok->lock);
    return v;
}

void m2mhsm_token_note_no_private_data(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    tok->caps.private_data_objects = 0;
    pthread_mutex_unlock(&tok->lock);
}

int m2mhsm_token_needs_distinct_ids(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    int v = tok->caps.distinct_key_ids;
    pthread_mutex_unlock(&tok->lock);
    return v;
}

void m2mhsm_token_note_distinct_ids(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    tok->caps.distinct_key_ids = 1;
    pthread_mutex_unlock(&tok->lock);
}
