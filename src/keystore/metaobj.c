/*
 * Record metadata on the token (docs/key-lifecycle.md, "Metadata objects"), in one of two
 * forms, both private (invisible and unreadable before C_Login):
 *  - a token CKO_DATA object, CKA_APPLICATION "m2mhsm", CKA_LABEL "m2mhsm:<kind>:<id>", the
 *    metadata text in CKA_VALUE: wherever the token takes private data objects;
 *  - else a metadata key: a CKK_GENERIC_SECRET, sensitive, non-extractable, with no usage
 *    at all, CKA_LABEL "m2mhsm-meta:<kind>:<id>", the text in CKA_ID. Its CKA_VALUE is
 *    random and never used: tokens keep a stored key's value to themselves (softokn even a
 *    non-sensitive one), while CKA_ID is an ordinary readable attribute. Its label is not one
 *    of ours as a key (ks_label_parse), so no key scan takes it for an orphan.
 * Readers accept both forms, so a store keeps working if a module changes its mind.
 */
#include "ks.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define META_KEY_PREFIX "m2mhsm-meta:"
#define META_KEY_LABEL_MAX (M2MHSM_LABEL_MAX + sizeof(META_KEY_PREFIX))

/* "m2mhsm:<kind>:<id>" -> "m2mhsm-meta:<kind>:<id>" */
static void meta_key_label(const char *label, char *buf, size_t len)
{
    snprintf(buf, len, META_KEY_PREFIX "%s", label + strlen(M2MHSM_LABEL_PREFIX));
}

static m2mhsm_status create_data(m2mhsm_token *tok, CK_SESSION_HANDLE s, const char *label,
                                 const char *value, size_t vlen, CK_RV *rv, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    /* PKCS#11 data objects have no CKA_ID: the record id inside CKA_VALUE is the link to
     * the keys' CKA_ID. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)M2MHSM_APPLICATION, strlen(M2MHSM_APPLICATION)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)value, vlen},
    };
    *rv = m2mhsm_token_functions(tok)->C_CreateObject(s, tmpl, M2MHSM_ARRAY_LEN(tmpl), out);
    if (*rv != CKR_OK)
        return m2mhsm_fail_ckr("C_CreateObject(CKO_DATA metadata)", *rv);
    return M2MHSM_OK;
}

static m2mhsm_status create_key_form(m2mhsm_token *tok, CK_SESSION_HANDLE s, const char *label,
                                     const char *value, size_t vlen, CK_OBJECT_HANDLE *out)
{
    char klabel[META_KEY_LABEL_MAX];
    meta_key_label(label, klabel, sizeof(klabel));
    uint8_t filler[32];
    if (RAND_bytes(filler, sizeof(filler)) != 1)
        return m2mhsm_fail(M2MHSM_E_CRYPTO, "RAND_bytes for a metadata key failed");
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},      {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &t, sizeof(t)},          {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)},      {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_SIGN, &f, sizeof(f)},           {CKA_VERIFY, &f, sizeof(f)},
        {CKA_ENCRYPT, &f, sizeof(f)},        {CKA_DECRYPT, &f, sizeof(f)},
        {CKA_WRAP, &f, sizeof(f)},           {CKA_UNWRAP, &f, sizeof(f)},
        {CKA_DERIVE, &f, sizeof(f)},         {CKA_COPYABLE, &f, sizeof(f)},
        {CKA_LABEL, klabel, strlen(klabel)}, {CKA_ID, (void *)value, vlen},
        {CKA_VALUE, filler, sizeof(filler)},
    };
    m2mhsm_status st =
        ks_create_object(tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), "C_CreateObject(metadata key)", out);
    OPENSSL_cleanse(filler, sizeof(filler));
    return st;
}

m2mhsm_status ks_create_meta(m2mhsm_token *tok, CK_SESSION_HANDLE s, const m2mhsm_record *rec,
                             CK_OBJECT_HANDLE *out)
{
    char value[M2MHSM_META_MAX], label[M2MHSM_LABEL_MAX];
    size_t vlen = 0;
    m2mhsm_status st = ks_meta_encode(rec, value, &vlen);
    if (st != M2MHSM_OK)
        return st;
    ks_meta_label(rec, label, sizeof(label));
    if (!m2mhsm_token_takes_private_data(tok))
        return create_key_form(tok, s, label, value, vlen, out);
    CK_RV rv = CKR_OK;
    st = create_data(tok, s, label, value, vlen, &rv, out);
    if (st == M2MHSM_OK || !m2mhsm_ckr_template_class(rv))
        return st;
    /* The session probe passed, but the stored object is refused for its template: the
     * other form, and the token takes no private data objects from now on. If that fails
     * too, the error names both refusals, not only the last. */
    char first[256];
    snprintf(first, sizeof(first), "%s", m2mhsm_last_error());
    st = create_key_form(tok, s, label, value, vlen, out);
    if (st == M2MHSM_OK)
        m2mhsm_token_note_no_private_data(tok);
    else if (st == M2MHSM_E_PKCS11) {
        char second[512];
        snprintf(second, sizeof(second), "%s", m2mhsm_last_error());
        m2mhsm_fail(st, "%s; then as a metadata key: %s", first, second);
    }
    return st;
}

static m2mhsm_status append(CK_OBJECT_HANDLE **all, size_t *count, CK_OBJECT_HANDLE *more, size_t n)
{
    if (n == 0)
        return M2MHSM_OK;
    CK_OBJECT_HANDLE *grown = realloc(*all, (*count + n) * sizeof(**all));
    if (grown == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    memcpy(grown + *count, more, n * sizeof(*more));
    *all = grown;
    *count += n;
    return M2MHSM_OK;
}

/* Metadata keys whose label is klabel, or all whose label starts with META_KEY_PREFIX. */
static m2mhsm_status find_meta_keys(m2mhsm_token *tok, CK_SESSION_HANDLE s, const char *klabel,
                                    CK_OBJECT_HANDLE **out, size_t *count)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_SIGN, &f, sizeof(f)},
        {CKA_DERIVE, &f, sizeof(f)},
        {CKA_LABEL, (void *)klabel, klabel != NULL ? strlen(klabel) : 0},
    };
    m2mhsm_status st = ks_find(tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl) - (klabel == NULL), out, count);
    if (st != M2MHSM_OK || klabel != NULL)
        return st;
    /* All of them: keep those whose label says so (a key's raw form has no usage either). */
    size_t kept = 0;
    for (size_t i = 0; i < *count; i++) {
        char label[META_KEY_LABEL_MAX];
        CK_ATTRIBUTE a = {CKA_LABEL, label, sizeof(label) - 1};
        m2mhsm_token_read_begin(tok);
        CK_RV rv = m2mhsm_token_functions(tok)->C_GetAttributeValue(s, (*out)[i], &a, 1);
        m2mhsm_token_read_end(tok);
        if (rv == CKR_OK && a.ulValueLen >= strlen(META_KEY_PREFIX) &&
            memcmp(label, META_KEY_PREFIX, strlen(META_KEY_PREFIX)) == 0)
            (*out)[kept++] = (*out)[i];
    }
    *count = kept;
    return M2MHSM_OK;
}

m2mhsm_status ks_find_meta(m2mhsm_token *tok, CK_SESSION_HANDLE s, const char *label,
                           CK_OBJECT_HANDLE **out, size_t *count)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)M2MHSM_APPLICATION, strlen(M2MHSM_APPLICATION)},
        {CKA_LABEL, (void *)label, label != NULL ? strlen(label) : 0},
    };
    *out = NULL;
    *count = 0;
    m2mhsm_status st = ks_find(tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl) - (label == NULL), out, count);
    char klabel[META_KEY_LABEL_MAX];
    if (label != NULL)
        meta_key_label(label, klabel, sizeof(klabel));
    CK_OBJECT_HANDLE *keys = NULL;
    size_t nkeys = 0;
    if (st == M2MHSM_OK)
        st = find_meta_keys(tok, s, label != NULL ? klabel : NULL, &keys, &nkeys);
    if (st == M2MHSM_OK)
        st = append(out, count, keys, nkeys);
    free(keys);
    if (st != M2MHSM_OK) {
        free(*out);
        *out = NULL;
        *count = 0;
    }
    return st;
}

/* The size of h's metadata attribute, 0 if unknown. Metadata is called corrupt for its size
 * only when the token confirms it: a token that says a value which fits is too small
 * contradicts itself, and taking its record for corrupt would hide it from every write that
 * replaces it (a re-enrolment would then keep the old Ke valid). */
static CK_ULONG value_size(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                           CK_ATTRIBUTE_TYPE type)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    m2mhsm_token_read_begin(tok);
    CK_RV rv = m2mhsm_token_functions(tok)->C_GetAttributeValue(s, h, &a, 1);
    m2mhsm_token_read_end(tok);
    return rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION ? a.ulValueLen : 0;
}

/* One read for a data object, the common case: class and value together. A metadata key
 * refuses CKA_VALUE (CKR_ATTRIBUTE_SENSITIVE; a data object's value never is) and says its
 * class, though not every module fills the other attributes of a read that fails (softokn,
 * for an object another process wrote): then its CKA_ID. */
static CK_RV read_text(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, char *value,
                       CK_ULONG *len, CK_ATTRIBUTE_TYPE *type)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE a[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_VALUE, value, *len}};
    m2mhsm_token_read_begin(tok);
    CK_RV rv = fn->C_GetAttributeValue(s, h, a, M2MHSM_ARRAY_LEN(a));
    *type = CKA_VALUE;
    if ((a[0].ulValueLen == sizeof(cls) && cls == CKO_SECRET_KEY) ||
        rv == CKR_ATTRIBUTE_SENSITIVE) {
        *type = CKA_ID;
        a[1] = (CK_ATTRIBUTE){CKA_ID, value, *len};
        rv = fn->C_GetAttributeValue(s, h, &a[1], 1);
    }
    m2mhsm_token_read_end(tok);
    *len = a[1].ulValueLen;
    return rv;
}

m2mhsm_status ks_read_meta(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                           m2mhsm_record *rec)
{
    char value[M2MHSM_META_MAX];
    CK_ULONG len = sizeof(value);
    CK_ATTRIBUTE_TYPE type = CKA_VALUE;
    ks_obj(rec)->meta = CK_INVALID_HANDLE; /* on every error path: callers read it */
    CK_RV rv = read_text(tok, s, h, value, &len, &type);
    if (rv == CKR_BUFFER_TOO_SMALL && value_size(tok, s, h, type) > sizeof(value))
        return m2mhsm_fail(M2MHSM_E_CORRUPT, "metadata object larger than %d bytes",
                           M2MHSM_META_MAX);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND, "object destroyed meanwhile");
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr(type == CKA_ID ? "C_GetAttributeValue(CKA_ID of a metadata key)"
                                              : "C_GetAttributeValue(CKA_VALUE of metadata)",
                               rv);
    m2mhsm_status st = ks_meta_decode(value, len, rec);
    if (st == M2MHSM_OK)
        ks_obj(rec)->meta = h;
    else if (st == M2MHSM_E_CORRUPT)
        ks_obj(rec)->meta = ks_meta_salvage_id(value, len, rec->record_id) ? h : CK_INVALID_HANDLE;
    return st;
}
