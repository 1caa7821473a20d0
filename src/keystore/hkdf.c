/*
 * Km and Kpsa derived inside the token (10.3.2, 10.3.3) where it offers CKM_HKDF_DERIVE:
 * HKDF-Extract with salt = Ke and input = the clause's message is HMAC-SHA-256(Ke, message),
 * made as a key object (src/p11/hkdf.c). A session copy of the result with CKA_DERIVE is the
 * source of the TLS forms and is destroyed once they exist:
 *  - raw:      the derivation itself, into the record's template;
 *  - tls13-es: HKDF-Extract(0^32, Km) on the token (CKF_HKDF_SALT_NULL);
 *  - tls12-pms: SHA-256 of the RFC 4279 premaster, by C_DigestKey: the 32-byte form passes
 *    through host memory (imported and cleansed), Km itself never does.
 */
#include "ks.h"
#include "write.h"
#include "../internal.h"

#include <string.h>
#include <openssl/crypto.h>

typedef struct {
    m2mhsm_token *tok;
    CK_OBJECT_HANDLE ke;
    const uint8_t *msg;
    size_t msg_len;
    CK_OBJECT_HANDLE km; /* session Km with CKA_DERIVE: the forms' source */
} hkdf_ctx;

/* The session Km, made by the first form that needs it (inside the record's write). */
static m2mhsm_status source_km(hkdf_ctx *h, CK_SESSION_HANDLE s)
{
    if (h->km != CK_INVALID_HANDLE)
        return M2MHSM_OK;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    static const char label[] = "m2mhsm-hkdf-source";
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &f, sizeof(f)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)},
        {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_DERIVE, &t, sizeof(t)},
        {CKA_SIGN, &f, sizeof(f)},
        {CKA_LABEL, (void *)label, sizeof(label) - 1},
    };
    return m2mhsm_p11_hmac_derive(h->tok, s, h->ke, h->msg, h->msg_len, tmpl,
                                  M2MHSM_ARRAY_LEN(tmpl), &h->km);
}

static m2mhsm_status make_raw(const ks_key_spec *spec, CK_SESSION_HANDLE s,
                              const m2mhsm_record *rec, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                              CK_OBJECT_HANDLE *out)
{
    (void)rec;
    hkdf_ctx *h = spec->make_arg;
    return m2mhsm_p11_hmac_derive(h->tok, s, h->ke, h->msg, h->msg_len, tmpl, n, out);
}

static m2mhsm_status make_es(const ks_key_spec *spec, CK_SESSION_HANDLE s, const m2mhsm_record *rec,
                             CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
    (void)rec;
    hkdf_ctx *h = spec->make_arg;
    m2mhsm_status st = source_km(h, s);
    return st != M2MHSM_OK
               ? st
               : m2mhsm_p11_hkdf_extract(h->tok, s, CK_INVALID_HANDLE, h->km, tmpl, n, out);
}

/* SHA-256([00 20][32 zeros][00 20] || Km): the premaster of a 32-byte PSK is 68 bytes,
 * longer than the HMAC block, so its hash is the PRF key (derive.h). */
static m2mhsm_status make_pms(const ks_key_spec *spec, CK_SESSION_HANDLE s,
                              const m2mhsm_record *rec, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                              CK_OBJECT_HANDLE *out)
{
    (void)rec;
    hkdf_ctx *h = spec->make_arg;
    uint8_t prefix[2 + M2MHSM_KEY_LEN + 2] = {0}, form[32];
    prefix[1] = M2MHSM_KEY_LEN;
    prefix[3 + M2MHSM_KEY_LEN] = M2MHSM_KEY_LEN;
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(h->tok);
    m2mhsm_status st = source_km(h, s);
    if (st == M2MHSM_OK)
        st = ks_digest_key(fn, s, h->km, prefix, sizeof(prefix), form);
    if (st == M2MHSM_OK) {
        tmpl[n++] = (CK_ATTRIBUTE){CKA_VALUE, form, sizeof(form)};
        CK_RV rv = fn->C_CreateObject(s, tmpl, n, out);
        if (rv != CKR_OK)
            st = m2mhsm_fail_ckr("C_CreateObject(CKO_SECRET_KEY)", rv);
    }
    OPENSSL_cleanse(form, sizeof(form));
    return st;
}

static void destroy_source(hkdf_ctx *h)
{
    CK_SESSION_HANDLE s;
    if (h->km == CK_INVALID_HANDLE || m2mhsm_token_session_get(h->tok, &s) != M2MHSM_OK)
        return; /* a session object: it goes with its session at the latest */
    m2mhsm_token_write_begin(h->tok);
    m2mhsm_token_functions(h->tok)->C_DestroyObject(s, h->km);
    m2mhsm_token_write_end(h->tok);
    m2mhsm_token_session_put(h->tok, s);
}

m2mhsm_status ks_write_hkdf(m2mhsm_keystore *ks, m2mhsm_record *rec, CK_OBJECT_HANDLE ke,
                            const uint8_t *msg, size_t msg_len)
{
    hkdf_ctx h = {ks->tok, ke, msg, msg_len, CK_INVALID_HANDLE};
    ks_key_spec specs[M2MHSM_FORM_COUNT];
    specs[M2MHSM_FORM_RAW] = (ks_key_spec){NULL, 0, CK_FALSE, make_raw, &h};
    specs[M2MHSM_FORM_TLS12_PMS] = (ks_key_spec){NULL, 0, CK_TRUE, make_pms, &h};
    specs[M2MHSM_FORM_TLS13_ES] = (ks_key_spec){NULL, 0, CK_TRUE, make_es, &h};
    rec->derived_in_token = 1;
    m2mhsm_status st = ks_record_write(ks, rec, specs);
    destroy_source(&h);
    if (st != M2MHSM_OK)
        rec->derived_in_token = 0;
    return st;
}
