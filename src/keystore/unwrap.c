/*
 * Kpm delivered wrapped under a KEK already in the token (AES key wrap, RFC 3394 / 5649):
 * the raw Kpm is unwrapped straight into a token object. Its TLS forms are hashes of the
 * key, computed with C_DigestKey so the Kpm itself never reaches host memory; the forms do,
 * briefly, before they are imported and cleansed (docs/threat-model.md). A store that keeps
 * no raw form unwraps into a session object, which is destroyed once the forms exist.
 */
#include "ks.h"
#include "write.h"
#include "../internal.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

typedef struct {
    CK_OBJECT_HANDLE kek;
    const uint8_t *wrapped;
    size_t wrapped_len;
    CK_MECHANISM_TYPE mech; /* CKM_AES_KEY_WRAP (RFC 3394) or an RFC 5649 mechanism */
    int unwrap_failed;      /* the C_UnwrapKey itself failed (not a later step) */
    CK_FUNCTION_LIST *fn;
    CK_OBJECT_HANDLE raw; /* the unwrapped key the forms are digested from */
} unwrap_ctx;

m2mhsm_status ks_find_kek(m2mhsm_keystore *ks, const char *label, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(ks->tok, &s);
    if (st != M2MHSM_OK)
        return st;
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    st = ks_find(ks->tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &h, &n);
    m2mhsm_token_session_put(ks->tok, s);
    if (st != M2MHSM_OK)
        return st;
    if (n == 1)
        *out = h[0];
    free(h);
    if (n != 1)
        return m2mhsm_fail(n == 0 ? M2MHSM_E_NOT_FOUND : M2MHSM_E_INVALID_ARG,
                           "%s secret key labelled as the KEK", n == 0 ? "no" : "more than one");
    return M2MHSM_OK;
}

/* Drop CKA_MODIFIABLE from a template (in place); returns the new count. */
static CK_ULONG without_modifiable(CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    CK_ULONG m = 0;
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type != CKA_MODIFIABLE)
            tmpl[m++] = tmpl[i];
    return m;
}

static m2mhsm_status make_unwrapped(const ks_key_spec *spec, CK_SESSION_HANDLE s,
                                    const m2mhsm_record *rec, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                    CK_OBJECT_HANDLE *out)
{
    (void)rec;
    unwrap_ctx *u = spec->make_arg;
    CK_MECHANISM mech = {u->mech, NULL, 0};
    CK_RV rv =
        u->fn->C_UnwrapKey(s, &mech, u->kek, (CK_BYTE *)u->wrapped, u->wrapped_len, tmpl, n, out);
    /* Some tokens apply the unwrap template after creating the object and so refuse
     * CKA_MODIFIABLE=FALSE as read-only. Without it the key is no weaker: PKCS#11 forbids
     * turning CKA_SENSITIVE off or CKA_EXTRACTABLE on whatever CKA_MODIFIABLE says. */
    if (rv == CKR_ATTRIBUTE_READ_ONLY)
        rv = u->fn->C_UnwrapKey(s, &mech, u->kek, (CK_BYTE *)u->wrapped, u->wrapped_len, tmpl,
                                without_modifiable(tmpl, n), out);
    if (rv != CKR_OK) {
        u->unwrap_failed = 1;
        char op[64];
        snprintf(op, sizeof(op), "C_UnwrapKey(%s)", m2mhsm_ckm_name(u->mech));
        return m2mhsm_fail_ckr(op, rv);
    }
    u->raw = *out;
    return M2MHSM_OK;
}

m2mhsm_status ks_digest_key(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                            const uint8_t *prefix, size_t prefix_len, uint8_t out[32])
{
    CK_MECHANISM mech = {CKM_SHA256, NULL, 0};
    CK_ULONG len = 32;
    CK_RV rv = fn->C_DigestInit(s, &mech);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_DigestInit(CKM_SHA256)", rv);
    if ((rv = fn->C_DigestUpdate(s, (CK_BYTE *)prefix, prefix_len)) != CKR_OK)
        return m2mhsm_fail_ckr("C_DigestUpdate", rv);
    if ((rv = fn->C_DigestKey(s, key)) == CKR_KEY_INDIGESTIBLE)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED,
                           "C_DigestKey: CKR_KEY_INDIGESTIBLE: this token will not hash a "
                           "sensitive key, so it cannot make the TLS forms of a key it holds");
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_DigestKey", rv);
    if ((rv = fn->C_DigestFinal(s, out, &len)) != CKR_OK)
        return m2mhsm_fail_ckr("C_DigestFinal", rv);
    return M2MHSM_OK;
}

static m2mhsm_status key_len(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                             size_t *out)
{
    CK_ULONG len = 0;
    CK_ATTRIBUTE a = {CKA_VALUE_LEN, &len, sizeof(len)};
    CK_RV rv = fn->C_GetAttributeValue(s, key, &a, 1);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_GetAttributeValue(CKA_VALUE_LEN)", rv);
    *out = len;
    return M2MHSM_OK;
}

/* TLS 1.2 form: SHA-256([u16 N][N zeros][u16 N] || Kpm), valid as the HMAC key only when
 * the premaster is longer than a block (N > 30; derive.h). */
static m2mhsm_status pms_form(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE raw,
                              size_t n, uint8_t out[32])
{
    if (4 + 2 * n <= 64)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED,
                           "a wrapped Kpm must be longer than 30 bytes: the TLS 1.2 form of a "
                           "shorter one contains the key itself");
    uint8_t prefix[2 + M2MHSM_PSK_MAX + 2] = {0};
    prefix[0] = (uint8_t)(n >> 8);
    prefix[1] = (uint8_t)n;
    prefix[2 + n] = (uint8_t)(n >> 8);
    prefix[3 + n] = (uint8_t)n;
    return ks_digest_key(fn, s, raw, prefix, 4 + n, out);
}

/* TLS 1.3 form: HMAC(0^32, Kpm) = SHA-256(opad || SHA-256(ipad || Kpm)) with a zero key. */
static m2mhsm_status es_form(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE raw,
                             uint8_t out[32])
{
    uint8_t pad[64 + 32], inner[32];
    memset(pad, 0x36, 64);
    m2mhsm_status st = ks_digest_key(fn, s, raw, pad, 64, inner);
    if (st == M2MHSM_OK) {
        memset(pad, 0x5c, 64);
        memcpy(pad + 64, inner, 32);
        if (!EVP_Digest(pad, sizeof(pad), out, NULL, EVP_sha256(), NULL))
            st = m2mhsm_fail(M2MHSM_E_CRYPTO, "SHA-256 failed");
    }
    OPENSSL_cleanse(inner, sizeof(inner));
    OPENSSL_cleanse(pad, sizeof(pad));
    return st;
}

static m2mhsm_status make_form(const ks_key_spec *spec, CK_SESSION_HANDLE s,
                               const m2mhsm_record *rec, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                               CK_OBJECT_HANDLE *out)
{
    (void)rec;
    const unwrap_ctx *u = spec->make_arg;
    CK_OBJECT_HANDLE raw = u->raw;
    uint8_t form[32];
    size_t len = 0;
    m2mhsm_status st = key_len(u->fn, s, raw, &len);
    /* Not every token fills CKA_VALUE_LEN on unwrap; RFC 3394 fixes it as blob - 8. */
    if (st == M2MHSM_OK && len == 0 && u->mech == CKM_AES_KEY_WRAP)
        len = u->wrapped_len - 8;
    if (st == M2MHSM_OK && len == 0)
        st = m2mhsm_fail(M2MHSM_E_UNSUPPORTED,
                         "the token does not tell the unwrapped Kpm's length (CKA_VALUE_LEN) "
                         "after an RFC 5649 unwrap; wrap a key whose length is a multiple of "
                         "8 with RFC 3394");
    if (st == M2MHSM_OK && (len < M2MHSM_PSK_MIN || len > M2MHSM_PSK_MAX))
        st = m2mhsm_fail(M2MHSM_E_INVALID_ARG, "unwrapped Kpm is %zu bytes; need %d to %d", len,
                         M2MHSM_PSK_MIN, M2MHSM_PSK_MAX);
    if (st == M2MHSM_OK)
        st = spec->len == 1 ? pms_form(u->fn, s, raw, len, form) : es_form(u->fn, s, raw, form);
    if (st == M2MHSM_OK) {
        tmpl[n++] = (CK_ATTRIBUTE){CKA_VALUE, form, sizeof(form)};
        CK_RV rv = u->fn->C_CreateObject(s, tmpl, n, out);
        if (rv != CKR_OK)
            st = m2mhsm_fail_ckr("C_CreateObject(CKO_SECRET_KEY)", rv);
    }
    OPENSSL_cleanse(form, sizeof(form));
    return st;
}

/* A store without the raw form: the key is unwrapped into a session object (CKA_TOKEN
 * false, otherwise the raw form's template), the record's forms are digested from it, and
 * it is destroyed whatever the outcome. */
static m2mhsm_status write_transient(m2mhsm_keystore *ks, m2mhsm_record *rec, unwrap_ctx *u,
                                     const ks_key_spec specs[M2MHSM_FORM_COUNT])
{
    CK_SESSION_HANDLE s;
    m2mhsm_status st = ks_check_writable(ks, "unwrap");
    if (st != M2MHSM_OK || (st = m2mhsm_token_session_get(ks->tok, &s)) != M2MHSM_OK)
        return st;
    ks_key_attrs a;
    CK_ATTRIBUTE tmpl[KS_KEY_TEMPLATE_LEN];
    CK_ULONG n = ks_key_template(rec, M2MHSM_FORM_RAW, CK_FALSE, &a, tmpl);
    if (!m2mhsm_token_takes_copyable(ks->tok)) /* a session object: the probe's own case */
        n = ks_template_drop(tmpl, n, CKA_COPYABLE);
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type == CKA_TOKEN)
            tmpl[i].pValue = &a.f;
    u->raw = CK_INVALID_HANDLE;
    st = make_unwrapped(&specs[M2MHSM_FORM_RAW], s, rec, tmpl, n, &u->raw);
    if (st == M2MHSM_OK) {
        st = ks_record_write(ks, rec, specs);
        char first[256];
        snprintf(first, sizeof(first), "%s", m2mhsm_last_error());
        m2mhsm_status dst = ks_destroy(ks->fn, s, u->raw);
        if (st != M2MHSM_OK)
            m2mhsm_fail(st, "%s", first);
        else
            st = dst;
    }
    m2mhsm_token_session_put(ks->tok, s);
    return st;
}

static m2mhsm_status write_unwrapped(m2mhsm_keystore *ks, m2mhsm_record *rec, unwrap_ctx *u)
{
    /* spec.len selects the form in make_form: 1 = TLS 1.2, 2 = TLS 1.3. */
    ks_key_spec specs[M2MHSM_FORM_COUNT] = {
        [M2MHSM_FORM_RAW] = {NULL, 0, CK_FALSE, make_unwrapped, u},
        [M2MHSM_FORM_TLS12_PMS] = {NULL, 1, CK_TRUE, make_form, u},
        [M2MHSM_FORM_TLS13_ES] = {NULL, 2, CK_TRUE, make_form, u},
    };
    const m2mhsm_token_caps *caps = m2mhsm_token_caps_get(ks->tok);
    CK_MECHANISM_TYPE rfc5649 =
        caps->aes_key_wrap_kwp ? CKM_AES_KEY_WRAP_KWP : CKM_AES_KEY_WRAP_PAD;
    int have5649 = caps->aes_key_wrap_kwp || caps->aes_key_wrap_pad;
    u->mech = caps->aes_key_wrap ? CKM_AES_KEY_WRAP : rfc5649;
    int keep_raw = (ks->psk_forms & M2MHSM_FORMS_RAW) != 0;
    m2mhsm_status st =
        keep_raw ? ks_record_write(ks, rec, specs) : write_transient(ks, rec, u, specs);
    if (st != M2MHSM_OK && u->unwrap_failed && u->mech == CKM_AES_KEY_WRAP && have5649) {
        /* An RFC 5649 blob fails RFC 3394's integrity check (and vice versa): try the
         * padded variant, and if that fails too, report both. */
        char first[256];
        snprintf(first, sizeof(first), "%s", m2mhsm_last_error());
        u->mech = rfc5649;
        u->unwrap_failed = 0;
        st = keep_raw ? ks_record_write(ks, rec, specs) : write_transient(ks, rec, u, specs);
        if (st != M2MHSM_OK)
            st = m2mhsm_fail(st, "%s; %s", first, m2mhsm_last_error());
    }
    return st;
}

m2mhsm_status ks_wrapped_check(const char *kpm_id, const uint8_t *wrapped, size_t wrapped_len,
                               const char *kek_label)
{
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_KPM, kpm_id);
    if (st != M2MHSM_OK)
        return st;
    if (wrapped == NULL || wrapped_len < 24 || wrapped_len % 8 != 0 ||
        wrapped_len > M2MHSM_PSK_MAX + 16)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG,
                           "wrapped Kpm must be 24 to %d bytes, a "
                           "multiple of 8 (RFC 3394/5649)",
                           M2MHSM_PSK_MAX + 16);
    if (kek_label == NULL || kek_label[0] == '\0')
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "the KEK label is empty");
    return M2MHSM_OK;
}

/* The unwrap mechanisms to try, in order: RFC 3394, then RFC 5649 where offered (a blob
 * of one fails the other's integrity check). */
static size_t unwrap_mechs(m2mhsm_keystore *ks, CK_MECHANISM_TYPE mechs[2])
{
    const m2mhsm_token_caps *caps = m2mhsm_token_caps_get(ks->tok);
    size_t n = 0;
    if (caps->aes_key_wrap)
        mechs[n++] = CKM_AES_KEY_WRAP;
    if (caps->aes_key_wrap_kwp)
        mechs[n++] = CKM_AES_KEY_WRAP_KWP;
    else if (caps->aes_key_wrap_pad)
        mechs[n++] = CKM_AES_KEY_WRAP_PAD;
    return n;
}

m2mhsm_status ks_kpm_unwrap_write(m2mhsm_keystore *ks, const char *kpm_id, const uint8_t *wrapped,
                                  size_t wrapped_len, CK_OBJECT_HANDLE kek, m2mhsm_time valid_until,
                                  m2mhsm_record *out)
{
    m2mhsm_record rec;
    memset(&rec, 0, sizeof(rec));
    rec.kind = M2MHSM_KIND_KPM;
    strcpy(rec.identity, kpm_id);
    strcpy(rec.kpm_id, kpm_id);
    rec.created = m2mhsm_keystore_now(ks);
    rec.expiry = valid_until;
    if (!m2mhsm_expiry_is_valid(valid_until, rec.created))
        return m2mhsm_fail(M2MHSM_E_EXPIRED, "--valid-until is not in the future");
    unwrap_ctx u = {.kek = kek, .wrapped = wrapped, .wrapped_len = wrapped_len, .fn = ks->fn};
    m2mhsm_status st = write_unwrapped(ks, &rec, &u);
    if (st == M2MHSM_OK && out != NULL)
        *out = rec;
    return st;
}

/* Unwrap into a session object, read its length, destroy it: the token checks the blob's
 * integrity under the KEK, and nothing is stored. */
static m2mhsm_status probe_one(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, CK_MECHANISM_TYPE type,
                               const uint8_t *wrapped, size_t wrapped_len, CK_OBJECT_HANDLE kek,
                               size_t *len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &f, sizeof(f)},     {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)}, {CKA_EXTRACTABLE, &f, sizeof(f)},
    };
    CK_MECHANISM mech = {type, NULL, 0};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = ks->fn->C_UnwrapKey(s, &mech, kek, (CK_BYTE *)wrapped, wrapped_len, tmpl,
                                   M2MHSM_ARRAY_LEN(tmpl), &h);
    if (rv != CKR_OK) {
        char op[64];
        snprintf(op, sizeof(op), "C_UnwrapKey(%s)", m2mhsm_ckm_name(type));
        return m2mhsm_fail_ckr(op, rv);
    }
    m2mhsm_status st = key_len(ks->fn, s, h, len);
    if (st == M2MHSM_OK && *len == 0 && type == CKM_AES_KEY_WRAP)
        *len = wrapped_len - 8;
    rv = ks->fn->C_DestroyObject(s, h);
    if (st == M2MHSM_OK && rv != CKR_OK)
        st = m2mhsm_fail_ckr("C_DestroyObject(session copy of an unwrapped Kpm)", rv);
    return st;
}

m2mhsm_status ks_kpm_unwrap_probe(m2mhsm_keystore *ks, const uint8_t *wrapped, size_t wrapped_len,
                                  CK_OBJECT_HANDLE kek)
{
    CK_MECHANISM_TYPE mechs[2];
    size_t n = unwrap_mechs(ks, mechs);
    if (n == 0)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED, "token offers no AES key unwrap mechanism");
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(ks->tok, &s);
    if (st != M2MHSM_OK)
        return st;
    size_t len = 0;
    char first[256] = "";
    for (size_t i = 0; i < n; i++) {
        st = probe_one(ks, s, mechs[i], wrapped, wrapped_len, kek, &len);
        if (st == M2MHSM_OK)
            break;
        if (i == 0)
            snprintf(first, sizeof(first), "%s", m2mhsm_last_error());
        else
            st = m2mhsm_fail(st, "%s; %s", first, m2mhsm_last_error());
    }
    m2mhsm_token_session_put(ks->tok, s);
    if (st != M2MHSM_OK)
        return st;
    if (len == 0)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED,
                           "the token does not tell the unwrapped Kpm's length (CKA_VALUE_LEN) "
                           "after an RFC 5649 unwrap; wrap a key whose length is a multiple of "
                           "8 with RFC 3394");
    if (len < M2MHSM_PSK_MIN || len > M2MHSM_PSK_MAX)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "unwrapped Kpm is %zu bytes; need %d to %d", len,
                           M2MHSM_PSK_MIN, M2MHSM_PSK_MAX);
    if (4 + 2 * len <= 64)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED,
                           "a wrapped Kpm must be longer than 30 bytes: the TLS 1.2 form of a "
                           "shorter one contains the key itself");
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_keystore_unwrap_kpm(m2mhsm_keystore *ks, const char *kpm_id,
                                         const uint8_t *wrapped, size_t wrapped_len,
                                         const char *kek_label, m2mhsm_time valid_until,
                                         m2mhsm_record *out)
{
    m2mhsm_status st = ks_wrapped_check(kpm_id, wrapped, wrapped_len, kek_label);
    if (st != M2MHSM_OK)
        return st;
    const m2mhsm_token_caps *caps = m2mhsm_token_caps_get(ks->tok);
    if (!caps->aes_key_wrap && !caps->aes_key_wrap_kwp && !caps->aes_key_wrap_pad)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED, "token offers no AES key unwrap mechanism");
    m2mhsm_record rec;
    if (m2mhsm_keystore_lookup(ks, M2MHSM_KIND_KPM, kpm_id, strlen(kpm_id), &rec) == M2MHSM_OK)
        return m2mhsm_fail(M2MHSM_E_EXISTS, "a Kpm with this KpmID exists; erase it first");
    CK_OBJECT_HANDLE kek;
    if ((st = ks_find_kek(ks, kek_label, &kek)) != M2MHSM_OK)
        return st;
    return ks_kpm_unwrap_write(ks, kpm_id, wrapped, wrapped_len, kek, valid_until, out);
}
