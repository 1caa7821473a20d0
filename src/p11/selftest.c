/*
 * The token self-test: a throwaway probe key is put through every way PKCS#11 offers to
 * get a key out of a token, so that a store which promises "sensitive, non-extractable"
 * learns whether this token keeps the promise (PKCS#11 2.40 section 4.4.1: CKA_SENSITIVE
 * cannot be turned off, CKA_EXTRACTABLE cannot be turned on, by a change or in a copy).
 * Every probe gets a fresh key, so one weakening cannot make another probe look leaky.
 */
#include "p11.h"
#include "../internal.h"
#include <m2mhsm/derive.h>

#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define KEYLEN 32
#define MAX_OBJECTS 8

typedef struct {
    m2mhsm_token *tok;
    CK_FUNCTION_LIST *fn;
    CK_SESSION_HANDLE s;
    CK_BBOOL on_token;          /* where probe keys live: session unless the token refuses */
    uint8_t value[KEYLEN];      /* the probe key's bytes: random, cleansed at the end */
    uint8_t wrap_value[KEYLEN]; /* our wrapping key's bytes, when we chose them */
    int wrap_known;
    CK_OBJECT_HANDLE made[MAX_OBJECTS]; /* every object created, destroyed at the end */
    size_t nmade;
} probe_ctx;

static const char probe_label[] = "m2mhsm-selftest-probe";

static int track(probe_ctx *c, CK_OBJECT_HANDLE h)
{
    if (c->nmade == MAX_OBJECTS) {
        c->fn->C_DestroyObject(c->s, h);
        return 0;
    }
    c->made[c->nmade++] = h;
    return 1;
}

/* Destroy every object made since index `from`. */
static void release(probe_ctx *c, size_t from)
{
    while (c->nmade > from)
        c->fn->C_DestroyObject(c->s, c->made[--c->nmade]);
}

static CK_RV create_probe(probe_ctx *c, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    /* As the key store's TLS forms are made: modifiable and copyable (by default), so the
     * probes meet the rules on sensitivity, not a blanket refusal to change the object. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &c->on_token, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)},
        {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_MODIFIABLE, &t, sizeof(t)},
        {CKA_SIGN, &t, sizeof(t)},
        {CKA_LABEL, (void *)probe_label, sizeof(probe_label) - 1},
        {CKA_VALUE, c->value, sizeof(c->value)},
    };
    CK_RV rv = c->fn->C_CreateObject(c->s, tmpl, M2MHSM_ARRAY_LEN(tmpl), out);
    if (rv == CKR_OK && !track(c, *out))
        rv = CKR_HOST_MEMORY;
    return rv;
}

/* A fresh probe key for one probe; a probe whose key cannot be made did not run. */
static int start_probe(probe_ctx *c, m2mhsm_probe_result *r, CK_OBJECT_HANDLE *k)
{
    if ((r->rv = create_probe(c, k)) == CKR_OK)
        return 1;
    r->outcome = M2MHSM_OUTCOME_UNAVAILABLE;
    return 0;
}

/* Session objects where the token allows them, so nothing of the self-test is ever stored;
 * token objects otherwise. */
static m2mhsm_status choose_home(probe_ctx *c, m2mhsm_selftest_report *r)
{
    CK_OBJECT_HANDLE h;
    c->on_token = CK_FALSE;
    CK_RV rv = create_probe(c, &h), session_rv = rv;
    if (rv != CKR_OK) {
        c->on_token = CK_TRUE;
        rv = create_probe(c, &h);
    }
    if (rv != CKR_OK) {
        /* Both refusals named: the first says why no session key, the second why no token
         * key either. The CKR kept (m2mhsm_last_ckr, failover) is the last call's. */
        char op[192];
        snprintf(op, sizeof(op),
                 "C_CreateObject(self-test probe key, session object): %s; "
                 "C_CreateObject(self-test probe key, token object)",
                 m2mhsm_ckr_name(session_rv));
        return m2mhsm_fail_ckr(op, rv);
    }
    r->probe_on_token = c->on_token;
    release(c, 0);
    return M2MHSM_OK;
}

/* An AES key to wrap with, whose bytes we know so a wrapped key can be checked; a
 * generated one if the token will not import AES keys. CK_INVALID_HANDLE: neither. */
static CK_OBJECT_HANDLE make_wrap_key(probe_ctx *c)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL t = CK_TRUE;
    CK_ULONG len = KEYLEN;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &c->on_token, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_WRAP, &t, sizeof(t)},
        {CKA_ENCRYPT, &t, sizeof(t)},
        {CKA_LABEL, (void *)probe_label, sizeof(probe_label) - 1},
        {CKA_VALUE, c->wrap_value, sizeof(c->wrap_value)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = M2MHSM_ARRAY_LEN(tmpl);
    if (c->fn->C_CreateObject(c->s, tmpl, n, &h) == CKR_OK && track(c, h)) {
        c->wrap_known = 1;
        return h;
    }
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
    tmpl[n - 1] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &len, sizeof(len)};
    if (c->fn->C_GenerateKey(c->s, &gen, tmpl, n, &h) == CKR_OK && track(c, h))
        return h;
    return CK_INVALID_HANDLE;
}

static int attr_is(probe_ctx *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_BBOOL want)
{
    CK_BBOOL v = !want;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    return c->fn->C_GetAttributeValue(c->s, h, &a, 1) == CKR_OK && v == want;
}

static const EVP_CIPHER *host_cipher(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_AES_KEY_WRAP:
        return EVP_aes_256_wrap();
    case CKM_AES_KEY_WRAP_PAD:
    case CKM_AES_KEY_WRAP_KWP:
        return EVP_aes_256_wrap_pad();
    case CKM_AES_ECB:
        return EVP_aes_256_ecb();
    default:
        return EVP_aes_256_cbc();
    }
}

/* Undo a wrap on the host with our wrapping key's bytes: 1 if it gives the probe key. */
static int host_unwrap_matches(probe_ctx *c, CK_MECHANISM_TYPE m, const uint8_t *in, int len)
{
    static const uint8_t iv[16];
    uint8_t out[128 + 32];
    int n1 = 0, n2 = 0, ok = 0;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (x == NULL || len > 128)
        goto done;
    EVP_CIPHER_CTX_set_flags(x, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    /* Key wrap: the RFC 3394/5649 default IV (NULL); ECB none; CBC_PAD the zero IV we gave. */
    int cbc = m == CKM_AES_CBC_PAD;
    if (EVP_DecryptInit_ex(x, host_cipher(m), NULL, c->wrap_value, cbc ? iv : NULL) != 1)
        goto done;
    if (m == CKM_AES_ECB)
        EVP_CIPHER_CTX_set_padding(x, 0);
    ok = EVP_DecryptUpdate(x, out, &n1, in, len) == 1 &&
         EVP_DecryptFinal_ex(x, out + n1, &n2) == 1 && n1 + n2 == KEYLEN &&
         CRYPTO_memcmp(out, c->value, KEYLEN) == 0;
done:
    EVP_CIPHER_CTX_free(x);
    OPENSSL_cleanse(out, sizeof(out));
    return ok;
}

static const CK_MECHANISM_TYPE wrap_mechs[] = {CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD,
                                               CKM_AES_KEY_WRAP_KWP, CKM_AES_ECB, CKM_AES_CBC_PAD};

static int offers_wrap(probe_ctx *c, CK_MECHANISM_TYPE m)
{
    CK_MECHANISM_INFO info = {0}; /* some modules leave fields unset on success */
    return c->fn->C_GetMechanismInfo(c->tok->slot, m, &info) == CKR_OK && (info.flags & CKF_WRAP);
}

/* C_WrapKey of h under our key with each wrap mechanism the token offers: 1 if one gave
 * bytes (r->mech, r->recovered), 0 if all refused (r->rv the most telling refusal), -1 if there was
 * nothing to try. */
static int try_wrap(probe_ctx *c, CK_OBJECT_HANDLE wrap_key, CK_OBJECT_HANDLE h,
                    m2mhsm_probe_result *r)
{
    static const uint8_t iv[16];
    int tried = 0;
    CK_RV refusal = CKR_OK; /* the most telling: a mechanism's refusal over its absence */
    for (size_t i = 0; wrap_key != CK_INVALID_HANDLE && i < M2MHSM_ARRAY_LEN(wrap_mechs); i++) {
        if (!offers_wrap(c, wrap_mechs[i]))
            continue;
        tried = 1;
        CK_MECHANISM mech = {wrap_mechs[i], NULL, 0};
        if (wrap_mechs[i] == CKM_AES_CBC_PAD)
            mech = (CK_MECHANISM){CKM_AES_CBC_PAD, (void *)iv, sizeof(iv)};
        uint8_t out[128];
        CK_ULONG len = sizeof(out);
        CK_RV rv = c->fn->C_WrapKey(c->s, &mech, wrap_key, h, out, &len);
        if (rv == CKR_OK) {
            r->rv = rv;
            r->mech = wrap_mechs[i];
            r->recovered = c->wrap_known && host_unwrap_matches(c, wrap_mechs[i], out, (int)len);
            OPENSSL_cleanse(out, sizeof(out));
            return 1;
        }
        if (refusal == CKR_OK || refusal == CKR_MECHANISM_INVALID)
            refusal = rv;
    }
    r->rv = refusal;
    return tried ? 0 : -1;
}

/* Bytes out of h by reading CKA_VALUE, else by wrapping: 1 if any came out. */
static int try_recover(probe_ctx *c, CK_OBJECT_HANDLE wrap_key, CK_OBJECT_HANDLE h,
                       m2mhsm_probe_result *r)
{
    uint8_t buf[64];
    CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof(buf)};
    CK_RV rv = c->fn->C_GetAttributeValue(c->s, h, &a, 1);
    int out = rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION;
    if (out)
        r->recovered = a.ulValueLen == KEYLEN && CRYPTO_memcmp(buf, c->value, KEYLEN) == 0;
    OPENSSL_cleanse(buf, sizeof(buf));
    m2mhsm_probe_result w = *r;
    if (!out && try_wrap(c, wrap_key, h, &w) == 1) {
        out = 1;
        r->mech = w.mech;
        r->recovered = w.recovered;
    }
    return out;
}

static void probe_read(probe_ctx *c, m2mhsm_probe_result *r)
{
    CK_OBJECT_HANDLE k;
    if (!start_probe(c, r, &k))
        return;
    uint8_t buf[64];
    CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof(buf)};
    r->rv = c->fn->C_GetAttributeValue(c->s, k, &a, 1);
    if (r->rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION) {
        r->outcome = M2MHSM_OUTCOME_LEAKED;
        r->recovered = a.ulValueLen == KEYLEN && CRYPTO_memcmp(buf, c->value, KEYLEN) == 0;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
}

/* C_SetAttributeValue(type = weak) on a probe key. A token that answers CKR_OK but leaves
 * the attribute as it was has refused in effect. */
static void probe_set(probe_ctx *c, CK_OBJECT_HANDLE wrap_key, CK_ATTRIBUTE_TYPE type,
                      CK_BBOOL weak, m2mhsm_probe_result *r)
{
    CK_OBJECT_HANDLE k;
    if (!start_probe(c, r, &k))
        return;
    CK_ATTRIBUTE a = {type, &weak, sizeof(weak)};
    r->rv = c->fn->C_SetAttributeValue(c->s, k, &a, 1);
    if (r->rv != CKR_OK || !attr_is(c, k, type, weak))
        return;
    r->outcome = M2MHSM_OUTCOME_WEAKENED;
    if (try_recover(c, wrap_key, k, r))
        r->outcome = M2MHSM_OUTCOME_LEAKED;
}

/* C_CopyObject into a session copy with type = weak, then the copy's bytes if it is
 * weaker (the NSS softokn leak: copy extractable, wrap the copy). */
static void probe_copy(probe_ctx *c, CK_OBJECT_HANDLE wrap_key, CK_ATTRIBUTE_TYPE type,
                       CK_BBOOL weak, m2mhsm_probe_result *r)
{
    CK_OBJECT_HANDLE k, copy;
    if (!start_probe(c, r, &k))
        return;
    CK_BBOOL f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &f, sizeof(f)}, {type, &weak, sizeof(weak)}};
    r->rv = c->fn->C_CopyObject(c->s, k, tmpl, M2MHSM_ARRAY_LEN(tmpl), &copy);
    if (r->rv != CKR_OK || !track(c, copy) || !attr_is(c, copy, type, weak))
        return;
    r->outcome = M2MHSM_OUTCOME_WEAKENED;
    if (try_recover(c, wrap_key, copy, r))
        r->outcome = M2MHSM_OUTCOME_LEAKED;
}

static void probe_wrap(probe_ctx *c, CK_OBJECT_HANDLE wrap_key, m2mhsm_probe_result *r)
{
    CK_OBJECT_HANDLE k;
    if (!start_probe(c, r, &k))
        return;
    int got = try_wrap(c, wrap_key, k, r);
    if (got == 1)
        r->outcome = M2MHSM_OUTCOME_LEAKED;
    else if (got < 0)
        r->outcome = M2MHSM_OUTCOME_UNAVAILABLE;
}

static void probe_digest(probe_ctx *c, m2mhsm_probe_result *r)
{
    CK_OBJECT_HANDLE k;
    if (!start_probe(c, r, &k))
        return;
    CK_MECHANISM mech = {CKM_SHA256, NULL, 0};
    if ((r->rv = c->fn->C_DigestInit(c->s, &mech)) != CKR_OK) {
        if (r->rv == CKR_MECHANISM_INVALID)
            r->outcome = M2MHSM_OUTCOME_UNAVAILABLE;
        return;
    }
    r->rv = c->fn->C_DigestKey(c->s, k);
    uint8_t out[32];
    CK_ULONG len = sizeof(out);
    if (r->rv == CKR_OK && (r->rv = c->fn->C_DigestFinal(c->s, out, &len)) == CKR_OK)
        r->outcome = M2MHSM_OUTCOME_HASHED;
    else if (r->rv == CKR_OK)
        c->fn->C_DigestFinal(c->s, NULL, &len); /* end the operation */
    OPENSSL_cleanse(out, sizeof(out));
}

static void run_probes(probe_ctx *c, m2mhsm_selftest_report *r)
{
    CK_OBJECT_HANDLE wrap_key = make_wrap_key(c);
    size_t base = c->nmade;
    m2mhsm_probe_result *p = r->probe;
    probe_read(c, &p[M2MHSM_PROBE_READ_VALUE]);
    release(c, base);
    probe_set(c, wrap_key, CKA_EXTRACTABLE, CK_TRUE, &p[M2MHSM_PROBE_SET_EXTRACTABLE]);
    release(c, base);
    probe_set(c, wrap_key, CKA_SENSITIVE, CK_FALSE, &p[M2MHSM_PROBE_SET_NON_SENSITIVE]);
    release(c, base);
    probe_copy(c, wrap_key, CKA_EXTRACTABLE, CK_TRUE, &p[M2MHSM_PROBE_COPY_EXTRACTABLE]);
    release(c, base);
    probe_copy(c, wrap_key, CKA_SENSITIVE, CK_FALSE, &p[M2MHSM_PROBE_COPY_NON_SENSITIVE]);
    release(c, base);
    probe_wrap(c, wrap_key, &p[M2MHSM_PROBE_WRAP]);
    release(c, base);
    probe_digest(c, &p[M2MHSM_PROBE_DIGEST_KEY]);
    release(c, 0);
}

/* HMAC-SHA-256 with key h on the token equals HMAC-SHA-256 with expect[32] on the host. */
static int signs_as(probe_ctx *c, CK_OBJECT_HANDLE h, const uint8_t expect[32])
{
    static const uint8_t text[] = "m2mhsm self-test";
    uint8_t want[32], got[32];
    unsigned wl = 0;
    CK_ULONG gl = sizeof(got);
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    int ok = HMAC(EVP_sha256(), expect, 32, text, sizeof(text), want, &wl) != NULL &&
             c->fn->C_SignInit(c->s, &mech, h) == CKR_OK &&
             c->fn->C_Sign(c->s, (CK_BYTE *)text, sizeof(text), got, &gl) == CKR_OK && gl == 32 &&
             CRYPTO_memcmp(want, got, 32) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    OPENSSL_cleanse(got, sizeof(got));
    return ok;
}

/* The 10.3.2 check value (Ke = 00..1f, MAF-ID maf.example.com), made the way the key store
 * makes Km on this token: Ke with the store's usage (sign, no derive), the derived Km
 * non-extractable; then its TLS 1.3 early secret. Each checked by an HMAC against the host's
 * computation of the same test vector. */
static int derive_check(probe_ctx *c, m2mhsm_selftest_report *r)
{
    uint8_t ke[KEYLEN], km[32], es[32];
    static const uint8_t zero[32];
    for (size_t i = 0; i < sizeof(ke); i++)
        ke[i] = (uint8_t)i;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &c->on_token, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)},
        {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_SIGN, &t, sizeof(t)},
        {CKA_LABEL, (void *)probe_label, sizeof(probe_label) - 1},
        {CKA_DERIVE, &f, sizeof(f)},
        {CKA_VALUE, ke, sizeof(ke)},
    };
    const CK_ULONG n_derived = M2MHSM_ARRAY_LEN(tmpl) - 2; /* no CKA_DERIVE, no CKA_VALUE */
    CK_OBJECT_HANDLE ke_h, km_h, es_h;
    unsigned l1 = 0, l2 = 0;
    int ok = 0;
    m2mhsm_status st = m2mhsm_derivation_input(M2MHSM_DERIVE_KM, "maf.example.com", &msg, &msg_len);
    CK_RV rv = st == M2MHSM_OK ? c->fn->C_CreateObject(c->s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &ke_h)
                               : CKR_HOST_MEMORY;
    if (rv != CKR_OK || !track(c, ke_h)) {
        snprintf(r->derive_detail, sizeof(r->derive_detail), "C_CreateObject(Ke): %s",
                 m2mhsm_ckr_name(rv));
        goto done;
    }
    /* Km needs CKA_DERIVE to be the early secret's input keying material. */
    tmpl[n_derived] = (CK_ATTRIBUTE){CKA_DERIVE, &t, sizeof(t)};
    st = m2mhsm_p11_hmac_derive(c->tok, c->s, ke_h, msg, msg_len, tmpl, n_derived + 1, &km_h);
    if (st == M2MHSM_OK && track(c, km_h))
        st = m2mhsm_p11_hkdf_extract(c->tok, c->s, CK_INVALID_HANDLE, km_h, tmpl, n_derived, &es_h);
    if (st == M2MHSM_OK && !track(c, es_h))
        st = M2MHSM_E_NOMEM;
    if (st != M2MHSM_OK) {
        snprintf(r->derive_detail, sizeof(r->derive_detail), "%s", m2mhsm_last_error());
        goto done;
    }
    ok = HMAC(EVP_sha256(), ke, sizeof(ke), msg, msg_len, km, &l1) != NULL &&
         HMAC(EVP_sha256(), zero, sizeof(zero), km, sizeof(km), es, &l2) != NULL &&
         signs_as(c, km_h, km) && signs_as(c, es_h, es) &&
         attr_is(c, km_h, CKA_EXTRACTABLE, CK_FALSE) && attr_is(c, km_h, CKA_SENSITIVE, CK_TRUE);
    if (!ok)
        snprintf(r->derive_detail, sizeof(r->derive_detail),
                 "CKM_HKDF_DERIVE gave keys that do not match the 10.3.2 check value");
done:
    free(msg);
    OPENSSL_cleanse(ke, sizeof(ke));
    OPENSSL_cleanse(km, sizeof(km));
    OPENSSL_cleanse(es, sizeof(es));
    return ok;
}

static int enforced(const m2mhsm_selftest_report *r)
{
    for (int i = 0; i < M2MHSM_PROBE_COUNT; i++)
        if (r->probe[i].outcome == M2MHSM_OUTCOME_WEAKENED ||
            r->probe[i].outcome == M2MHSM_OUTCOME_LEAKED)
            return 0;
    return 1;
}

static m2mhsm_status selftest_in(probe_ctx *c, m2mhsm_selftest_report *out)
{
    if (RAND_bytes(c->value, KEYLEN) != 1 || RAND_bytes(c->wrap_value, KEYLEN) != 1)
        return m2mhsm_fail(M2MHSM_E_CRYPTO, "RAND_bytes for the self-test's probe keys failed");
    m2mhsm_status st = choose_home(c, out);
    if (st != M2MHSM_OK)
        return st;
    run_probes(c, out);
    out->non_extractable_enforced = enforced(out);
    if (c->tok->caps.hkdf_derive)
        out->derive_in_token = derive_check(c, out);
    else
        snprintf(out->derive_detail, sizeof(out->derive_detail),
                 "the token offers no CKM_HKDF_DERIVE with CKF_DERIVE");
    release(c, 0);
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_token_selftest(m2mhsm_token *tok, m2mhsm_selftest_report *out)
{
    if (tok == NULL || out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "selftest: token and report are required");
    memset(out, 0, sizeof(*out));
    probe_ctx c = {.tok = tok, .fn = tok->fn};
    m2mhsm_status st = m2mhsm_token_session_get(tok, &c.s);
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_token_write_begin(tok);
    st = selftest_in(&c, out);
    release(&c, 0);
    if (c.on_token)
        m2mhsm_token_write_changed(tok, c.s);
    m2mhsm_token_write_end(tok);
    m2mhsm_token_session_put(tok, c.s);
    OPENSSL_cleanse(&c, sizeof(c));
    if (st != M2MHSM_OK)
        memset(out, 0, sizeof(*out));
    return st;
}

const char *m2mhsm_probe_name(m2mhsm_probe p)
{
    static const char *const names[M2MHSM_PROBE_COUNT] = {
        "read_value",       "set_extractable",    "set_non_sensitive",
        "copy_extractable", "copy_non_sensitive", "wrap",
        "digest_key",
    };
    return p >= 0 && p < M2MHSM_PROBE_COUNT ? names[p] : "?";
}

const char *m2mhsm_probe_outcome_name(m2mhsm_probe_outcome o)
{
    static const char *const names[] = {"refused", "weakened", "leaked", "hashed", "unavailable"};
    return o >= 0 && o < (int)M2MHSM_ARRAY_LEN(names) ? names[o] : "?";
}
