/* One wrapper per PKCS#11 object call; each failure names the call and the CKR. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

m2mhsm_status ks_create_meta(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, const m2mhsm_record *rec,
                             CK_OBJECT_HANDLE *out)
{
    char value[M2MHSM_META_MAX], label[M2MHSM_LABEL_MAX];
    size_t vlen = 0;
    m2mhsm_status st = ks_meta_encode(rec, value, &vlen);
    if (st != M2MHSM_OK)
        return st;
    ks_meta_label(rec, label, sizeof(label));
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    /* PKCS#11 data objects have no CKA_ID: the record id inside CKA_VALUE is the link to
     * the keys' CKA_ID. Private, so nothing is readable without login. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)M2MHSM_APPLICATION, strlen(M2MHSM_APPLICATION)},
        {CKA_LABEL, label, strlen(label)},
        {CKA_VALUE, value, vlen},
    };
    CK_RV rv = fn->C_CreateObject(s, tmpl, M2MHSM_ARRAY_LEN(tmpl), out);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_CreateObject(CKO_DATA metadata)", rv);
    return M2MHSM_OK;
}

CK_ULONG ks_key_template(const m2mhsm_record *rec, m2mhsm_form form, CK_BBOOL sign, ks_key_attrs *a,
                         CK_ATTRIBUTE *tmpl)
{
    a->cls = CKO_SECRET_KEY;
    a->type = CKK_GENERIC_SECRET;
    a->t = CK_TRUE;
    a->f = CK_FALSE;
    a->sign = sign;
    ks_key_label(rec, form, a->label, sizeof(a->label));
    m2mhsm_expiry_ck_date(rec->created, &a->start);
    CK_ULONG n = 0;
#define ATTR(type, ptr, len) tmpl[n++] = (CK_ATTRIBUTE){type, (void *)(ptr), len}
    ATTR(CKA_CLASS, &a->cls, sizeof(a->cls));
    ATTR(CKA_KEY_TYPE, &a->type, sizeof(a->type));
    ATTR(CKA_TOKEN, &a->t, sizeof(CK_BBOOL));
    ATTR(CKA_PRIVATE, &a->t, sizeof(CK_BBOOL));
    /* The design card: never readable, never wrappable. */
    ATTR(CKA_SENSITIVE, &a->t, sizeof(CK_BBOOL));
    ATTR(CKA_EXTRACTABLE, &a->f, sizeof(CK_BBOOL));
    /* The raw key can be neither changed nor copied. The TLS forms can be copied into the
     * in-memory session objects that serve handshakes (m2mhsm_token_session_copy), which
     * needs CKA_MODIFIABLE too on modules (SoftHSM) that refuse any template change in a
     * copy of a non-modifiable object. PKCS#11 lets neither a change nor a copy weaken
     * CKA_SENSITIVE or CKA_EXTRACTABLE (tested for every key). */
    ATTR(CKA_MODIFIABLE, form == M2MHSM_FORM_RAW ? &a->f : &a->t, sizeof(CK_BBOOL));
    ATTR(CKA_COPYABLE, form == M2MHSM_FORM_RAW ? &a->f : &a->t, sizeof(CK_BBOOL));
    /* Only the usage each form needs: HMAC (C_Sign) or nothing. */
    ATTR(CKA_SIGN, &a->sign, sizeof(CK_BBOOL));
    ATTR(CKA_VERIFY, &a->f, sizeof(CK_BBOOL));
    ATTR(CKA_ENCRYPT, &a->f, sizeof(CK_BBOOL));
    ATTR(CKA_DECRYPT, &a->f, sizeof(CK_BBOOL));
    ATTR(CKA_WRAP, &a->f, sizeof(CK_BBOOL));
    ATTR(CKA_UNWRAP, &a->f, sizeof(CK_BBOOL));
    ATTR(CKA_DERIVE, &a->f, sizeof(CK_BBOOL));
    ATTR(CKA_ID, rec->record_id, M2MHSM_RECORD_ID_LEN);
    ATTR(CKA_LABEL, a->label, strlen(a->label));
    ATTR(CKA_START_DATE, &a->start, sizeof(CK_DATE));
    if (rec->expiry != M2MHSM_NEVER) {
        m2mhsm_expiry_ck_date(rec->expiry, &a->end);
        ATTR(CKA_END_DATE, &a->end, sizeof(CK_DATE));
    }
#undef ATTR
    return n;
}

m2mhsm_status ks_create_key(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, const m2mhsm_record *rec,
                            m2mhsm_form form, const ks_key_spec *spec, CK_OBJECT_HANDLE *out)
{
    ks_key_attrs a;
    CK_ATTRIBUTE tmpl[KS_KEY_TEMPLATE_LEN];
    CK_ULONG n = ks_key_template(rec, form, spec->sign, &a, tmpl);
    if (spec->make != NULL)
        return spec->make(spec, s, rec, tmpl, n, out);
    tmpl[n++] = (CK_ATTRIBUTE){CKA_VALUE, (void *)spec->value, spec->len};
    CK_RV rv = fn->C_CreateObject(s, tmpl, n, out);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_CreateObject(CKO_SECRET_KEY)", rv);
    return M2MHSM_OK;
}

m2mhsm_status ks_destroy(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_RV rv = fn->C_DestroyObject(s, h);
    if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
        return m2mhsm_fail_ckr("C_DestroyObject", rv);
    return M2MHSM_OK;
}

int ks_may_exist(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
    m2mhsm_token_read_begin(tok);
    CK_RV rv = m2mhsm_token_functions(tok)->C_GetAttributeValue(s, h, &a, 1);
    m2mhsm_token_read_end(tok);
    return rv != CKR_OBJECT_HANDLE_INVALID;
}

static m2mhsm_status find_all(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE **out,
                              size_t *count)
{
    size_t cap = 64, n = 0;
    CK_OBJECT_HANDLE *h = malloc(cap * sizeof(*h));
    if (h == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    for (;;) {
        if (n + 256 > cap) {
            while (n + 256 > cap)
                cap *= 2;
            CK_OBJECT_HANDLE *g = realloc(h, cap * sizeof(*h));
            if (g == NULL) {
                free(h);
                return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
            }
            h = g;
        }
        CK_ULONG got = 0;
        CK_RV rv = fn->C_FindObjects(s, h + n, 256, &got);
        if (rv != CKR_OK) {
            free(h);
            return m2mhsm_fail_ckr("C_FindObjects", rv);
        }
        if (got == 0)
            break;
        n += got;
    }
    *out = h;
    *count = n;
    return M2MHSM_OK;
}

m2mhsm_status ks_find(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                      CK_OBJECT_HANDLE **out, size_t *count)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    m2mhsm_token_search_begin(tok);
    CK_RV rv = fn->C_FindObjectsInit(s, tmpl, n);
    if (rv == CKR_OPERATION_ACTIVE) {
        /* A pooled session whose last search could not be finalised: finish it now. */
        fn->C_FindObjectsFinal(s);
        rv = fn->C_FindObjectsInit(s, tmpl, n);
    }
    if (rv != CKR_OK) {
        m2mhsm_token_search_end(tok);
        return m2mhsm_fail_ckr("C_FindObjectsInit", rv);
    }
    m2mhsm_status st = find_all(fn, s, out, count);
    rv = fn->C_FindObjectsFinal(s);
    m2mhsm_token_search_end(tok);
    if (st == M2MHSM_OK && rv != CKR_OK) {
        free(*out); /* callers free *out on error too */
        *out = NULL;
        *count = 0;
        return m2mhsm_fail_ckr("C_FindObjectsFinal", rv);
    }
    return st;
}

m2mhsm_status ks_read_key_ids(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                              char *label, size_t label_len, uint8_t *id, size_t *id_len)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_ATTRIBUTE a[] = {
        {CKA_LABEL, label, label_len - 1},
        {CKA_ID, id, M2MHSM_RECORD_ID_LEN},
    };
    m2mhsm_token_read_begin(tok);
    CK_RV rv = fn->C_GetAttributeValue(s, h, a, M2MHSM_ARRAY_LEN(a));
    m2mhsm_token_read_end(tok);
    /* Foreign keys may have longer labels or ids than ours: too small means "not ours".
     * But a key whose label came back as ours is ours whatever else failed: calling it
     * foreign would make its record look incomplete, and repair destroys those. */
    if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID) {
        int labelled_ours = a[0].ulValueLen != CK_UNAVAILABLE_INFORMATION &&
                            a[0].ulValueLen >= strlen(M2MHSM_LABEL_PREFIX) &&
                            memcmp(label, M2MHSM_LABEL_PREFIX, strlen(M2MHSM_LABEL_PREFIX)) == 0;
        if (labelled_ours)
            return m2mhsm_fail_ckr("C_GetAttributeValue(CKA_LABEL, CKA_ID) of an m2mhsm key", rv);
        label[0] = '\0';
        *id_len = 0;
        return M2MHSM_OK;
    }
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND, "object destroyed meanwhile");
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_GetAttributeValue(CKA_LABEL, CKA_ID)", rv);
    label[a[0].ulValueLen] = '\0';
    *id_len = a[1].ulValueLen;
    return M2MHSM_OK;
}

/* The size of h's CKA_VALUE, 0 if unknown. Metadata is called corrupt for its size only
 * when the token confirms it: a token that says a value which fits is too small contradicts
 * itself, and taking its record for corrupt would hide it from every write that replaces
 * it (a re-enrolment would then keep the old Ke valid). */
static CK_ULONG value_size(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
    m2mhsm_token_read_begin(tok);
    CK_RV rv = m2mhsm_token_functions(tok)->C_GetAttributeValue(s, h, &a, 1);
    m2mhsm_token_read_end(tok);
    return rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION ? a.ulValueLen : 0;
}

m2mhsm_status ks_read_meta(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                           m2mhsm_record *rec)
{
    char value[M2MHSM_META_MAX];
    CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof(value)};
    ks_obj(rec)->meta = CK_INVALID_HANDLE; /* on every error path: callers read it */
    m2mhsm_token_read_begin(tok);
    CK_RV rv = m2mhsm_token_functions(tok)->C_GetAttributeValue(s, h, &a, 1);
    m2mhsm_token_read_end(tok);
    if (rv == CKR_BUFFER_TOO_SMALL && value_size(tok, s, h) > sizeof(value))
        return m2mhsm_fail(M2MHSM_E_CORRUPT, "metadata object larger than %d bytes",
                           M2MHSM_META_MAX);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND, "object destroyed meanwhile");
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_GetAttributeValue(CKA_VALUE of metadata)", rv);
    m2mhsm_status st = ks_meta_decode(value, a.ulValueLen, rec);
    if (st == M2MHSM_OK)
        ks_obj(rec)->meta = h;
    else if (st == M2MHSM_E_CORRUPT)
        ks_obj(rec)->meta =
            ks_meta_salvage_id(value, a.ulValueLen, rec->record_id) ? h : CK_INVALID_HANDLE;
    return st;
}
