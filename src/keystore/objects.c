/* One wrapper per PKCS#11 object call; each failure names the call and the CKR. */
#include "ks.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

CK_ULONG ks_template_drop(CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    CK_ULONG m = 0;
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type != type)
            tmpl[m++] = tmpl[i];
    return m;
}

static int has_attr(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type == type)
            return 1;
    return 0;
}

m2mhsm_status ks_create_adapting(m2mhsm_token *tok, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                 ks_creator create, void *arg, CK_OBJECT_HANDLE *out)
{
    if (!m2mhsm_token_takes_copyable(tok))
        return create(arg, tmpl, ks_template_drop(tmpl, n, CKA_COPYABLE), out);
    m2mhsm_status st = create(arg, tmpl, n, out);
    CK_RV rv = m2mhsm_last_ckr();
    /* A template complaint, or a CKR that names no cause; never a device, session or
     * memory error, which another try without the attribute would only hide. */
    int retry =
        m2mhsm_ckr_template_class(rv) || rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED;
    if (st == M2MHSM_OK || !retry || !has_attr(tmpl, n, CKA_COPYABLE))
        return st;
    /* The session probe passed, yet a module may refuse the 2.40 attribute on a stored
     * object only, with a CKR that names no attribute (softokn: CKR_GENERAL_ERROR). Once
     * more without it; if that works, this token takes no CKA_COPYABLE. A failed
     * C_CreateObject creates nothing (PKCS#11 5.7), so the retry cannot leave a twin. */
    char first[256];
    snprintf(first, sizeof(first), "%s", m2mhsm_last_error());
    st = create(arg, tmpl, ks_template_drop(tmpl, n, CKA_COPYABLE), out);
    if (st == M2MHSM_OK)
        m2mhsm_token_note_no_copyable(tok);
    else if (st == M2MHSM_E_PKCS11) {
        char second[256];
        snprintf(second, sizeof(second), "%s", m2mhsm_last_error());
        m2mhsm_fail(st, "%s (also without CKA_COPYABLE: %s)", first, second);
    }
    return st;
}

typedef struct {
    CK_FUNCTION_LIST *fn;
    CK_SESSION_HANDLE s;
    const char *what; /* "C_CreateObject(...)" in errors */
} direct_create;

static m2mhsm_status ks_create_direct(void *arg, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                      CK_OBJECT_HANDLE *out)
{
    const direct_create *d = arg;
    CK_RV rv = d->fn->C_CreateObject(d->s, tmpl, n, out);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr(d->what, rv);
    return M2MHSM_OK;
}

m2mhsm_status ks_create_object(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl,
                               CK_ULONG n, const char *what, CK_OBJECT_HANDLE *out)
{
    direct_create d = {m2mhsm_token_functions(tok), s, what};
    return ks_create_adapting(tok, tmpl, n, ks_create_direct, &d, out);
}

typedef struct {
    const ks_key_spec *spec;
    CK_SESSION_HANDLE s;
    const m2mhsm_record *rec;
} made_create;

static m2mhsm_status create_made(void *arg, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    const made_create *m = arg;
    return m->spec->make(m->spec, m->s, m->rec, tmpl, n, out);
}

m2mhsm_status ks_create_key(m2mhsm_token *tok, CK_SESSION_HANDLE s, const m2mhsm_record *rec,
                            m2mhsm_form form, const ks_key_spec *spec, CK_OBJECT_HANDLE *out)
{
    ks_key_attrs a;
    CK_ATTRIBUTE tmpl[KS_KEY_TEMPLATE_LEN];
    CK_ULONG n = ks_key_template(rec, form, spec->sign, &a, tmpl);
    uint8_t id[KS_KEY_ID_MAX];
    if (m2mhsm_token_needs_distinct_ids(tok)) {
        memcpy(id, rec->record_id, M2MHSM_RECORD_ID_LEN);
        id[M2MHSM_RECORD_ID_LEN] = (uint8_t)form;
        for (CK_ULONG i = 0; i < n; i++)
            if (tmpl[i].type == CKA_ID)
                tmpl[i] = (CK_ATTRIBUTE){CKA_ID, id, sizeof(id)};
    }
    if (spec->make != NULL) {
        made_create m = {spec, s, rec};
        return ks_create_adapting(tok, tmpl, n, create_made, &m, out);
    }
    tmpl[n++] = (CK_ATTRIBUTE){CKA_VALUE, (void *)spec->value, spec->len};
    return ks_create_object(tok, s, tmpl, n, "C_CreateObject(CKO_SECRET_KEY)", out);
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

int ks_key_id_ok(const uint8_t *id, size_t id_len, int form)
{
    return id_len == M2MHSM_RECORD_ID_LEN ||
           (id_len == KS_KEY_ID_MAX && form >= 0 && id[M2MHSM_RECORD_ID_LEN] == (uint8_t)form);
}

m2mhsm_status ks_read_key_ids(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                              char *label, size_t label_len, uint8_t *id, size_t *id_len)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_ATTRIBUTE a[] = {
        {CKA_LABEL, label, label_len - 1},
        {CKA_ID, id, KS_KEY_ID_MAX},
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
