/* Module loading (p11-kit), token selection by RFC 7512 URI, capability probe, login. */
#include "p11.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static m2mhsm_status parse_uri(const char *text, P11KitUri **out)
{
    *out = p11_kit_uri_new();
    if (*out == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    int rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT, *out);
    m2mhsm_status st = M2MHSM_OK;
    if (rc != P11_KIT_URI_OK)
        st = m2mhsm_fail(M2MHSM_E_TOKEN, "token URI: %s", p11_kit_uri_message(rc));
    /* RFC 7512 allows pin-value; a PIN in a URI ends up in configs, logs and ps. */
    else if (p11_kit_uri_get_pin_value(*out) != NULL)
        st = m2mhsm_fail(M2MHSM_E_PIN, "token URI carries a pin-value: refused; use "
                                       "pin-source=file:PATH");
    if (st != M2MHSM_OK) {
        p11_kit_uri_free(*out);
        *out = NULL;
    }
    return st;
}

/* *match = 1 if the slot holds an initialised token that uri names. A slot or token the
 * module cannot describe is an error, not a mismatch: "no token matches" would send an
 * operator looking for the wrong fault. */
static m2mhsm_status slot_matches(CK_FUNCTION_LIST *fn, CK_SLOT_ID slot, P11KitUri *uri, int *match,
                                  CK_TOKEN_INFO *ti_out)
{
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    *match = 0;
    CK_RV rv = fn->C_GetSlotInfo(slot, &si);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_GetSlotInfo", rv);
    /* The token may have gone since C_GetSlotList: then this slot simply has none. */
    rv = fn->C_GetTokenInfo(slot, &ti);
    if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED)
        return M2MHSM_OK;
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_GetTokenInfo", rv);
    if (!(ti.flags & CKF_TOKEN_INITIALIZED))
        return M2MHSM_OK;
    CK_SLOT_ID want = p11_kit_uri_get_slot_id(uri);
    if (want != (CK_SLOT_ID)-1 && want != slot)
        return M2MHSM_OK;
    *match = p11_kit_uri_match_slot_info(uri, &si) && p11_kit_uri_match_token_info(uri, &ti);
    if (*match)
        *ti_out = ti;
    return M2MHSM_OK;
}

/* Exactly one initialised token must match: picking "the first" of several would let a
 * loose URI silently select the wrong key store. */
static m2mhsm_status find_slot(m2mhsm_token *tok)
{
    P11KitUri *uri = NULL;
    m2mhsm_status st = parse_uri(tok->token_uri, &uri);
    if (st != M2MHSM_OK)
        return st;
    CK_ULONG n = 0;
    CK_SLOT_ID *slots = NULL;
    CK_RV rv = tok->fn->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv == CKR_OK && n > 0) {
        slots = calloc(n, sizeof(*slots));
        rv = slots != NULL ? tok->fn->C_GetSlotList(CK_TRUE, slots, &n) : CKR_HOST_MEMORY;
    }
    if (rv != CKR_OK) {
        st = m2mhsm_fail_ckr("C_GetSlotList", rv);
        goto done;
    }
    size_t matches = 0;
    CK_TOKEN_INFO ti;
    for (CK_ULONG i = 0; st == M2MHSM_OK && i < n; i++) {
        int match = 0;
        st = slot_matches(tok->fn, slots[i], uri, &match, &ti);
        if (match) {
            tok->slot = slots[i];
            matches++;
        }
    }
    if (st != M2MHSM_OK)
        goto done;
    /* A module with no slot at all is often a token that is not there (a network HSM or
     * p11-kit server unreachable): say so rather than suggest a wrong URI. */
    if (matches == 0)
        st =
            m2mhsm_fail(M2MHSM_E_TOKEN, "no initialised token matches %s (the module lists %lu %s)",
                        tok->token_uri, (unsigned long)n,
                        n == 0   ? "slots: is its token or server reachable?"
                        : n == 1 ? "slot"
                                 : "slots");
    else if (matches > 1)
        st = m2mhsm_fail(M2MHSM_E_TOKEN, "%zu tokens match %s; name one (token=, serial=)", matches,
                         tok->token_uri);
    else
        m2mhsm_pool_set_limit(tok, &ti); /* the token info just read: no second call */
done:
    free(slots);
    p11_kit_uri_free(uri);
    return st;
}

/* *has = 1 if the token offers mechanism m with every flag in need. A mechanism the token
 * does not know is an answer; any other failure is an error to report, not "unsupported". */
static m2mhsm_status mech_has(CK_FUNCTION_LIST *fn, CK_SLOT_ID slot, CK_MECHANISM_TYPE m,
                              CK_FLAGS need, int *has)
{
    CK_MECHANISM_INFO info;
    CK_RV rv = fn->C_GetMechanismInfo(slot, m, &info);
    *has = rv == CKR_OK && (info.flags & need) == need;
    if (rv == CKR_OK || rv == CKR_MECHANISM_INVALID)
        return M2MHSM_OK;
    char op[64];
    snprintf(op, sizeof(op), "C_GetMechanismInfo(%s)", m2mhsm_ckm_name(m));
    return m2mhsm_fail_ckr(op, rv);
}

static m2mhsm_status probe(m2mhsm_token *tok)
{
    CK_FUNCTION_LIST *fn = tok->fn;
    CK_SLOT_ID slot = tok->slot;
    m2mhsm_token_caps *c = &tok->caps;
    m2mhsm_status st = mech_has(fn, slot, CKM_SHA256_HMAC, CKF_SIGN, &c->sha256_hmac);
    if (st == M2MHSM_OK)
        st = mech_has(fn, slot, CKM_AES_KEY_WRAP, CKF_UNWRAP, &c->aes_key_wrap);
    if (st == M2MHSM_OK)
        st = mech_has(fn, slot, CKM_AES_KEY_WRAP_KWP, CKF_UNWRAP, &c->aes_key_wrap_kwp);
    if (st == M2MHSM_OK)
        st = mech_has(fn, slot, CKM_AES_KEY_WRAP_PAD, CKF_UNWRAP, &c->aes_key_wrap_pad);
    if (st == M2MHSM_OK)
        st = mech_has(fn, slot, CKM_HKDF_DERIVE, CKF_DERIVE, &c->hkdf_derive);
    if (st == M2MHSM_OK)
        st = mech_has(fn, slot, CKM_SP800_108_FEEDBACK_KDF, CKF_DERIVE, &c->sp800_108_feedback);
    return st;
}

static m2mhsm_status login(m2mhsm_token *tok)
{
    CK_RV rv = tok->fn->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                      &tok->login_session);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_OpenSession", rv);
    char *pin = NULL;
    size_t pin_len = 0;
    m2mhsm_status st = m2mhsm_pin_read(tok->pin_source, tok->token_uri, &pin, &pin_len);
    if (st != M2MHSM_OK)
        return st;
    rv = tok->fn->C_Login(tok->login_session, CKU_USER, (CK_UTF8CHAR *)pin, pin_len);
    m2mhsm_pin_free(pin, pin_len);
    /* Another session of this application may have logged in already (p11-kit shares
     * the module); the login state is per application, so that is success. */
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        return m2mhsm_fail_ckr("C_Login(CKU_USER)", rv);
    return M2MHSM_OK;
}

/* Modules that take a configuration string get it in pReserved (PKCS#11 2.40 section
 * 5.4: reserved for the module's own use); the others get p11-kit's initialisation. */
static CK_RV initialize(m2mhsm_token *tok)
{
    if (tok->init_args == NULL)
        return p11_kit_module_initialize(tok->fn);
    CK_C_INITIALIZE_ARGS args = {0};
    args.flags = CKF_OS_LOCKING_OK;
    args.pReserved = tok->init_args;
    return tok->fn->C_Initialize(&args);
}

m2mhsm_status m2mhsm_token_attach_in_write(m2mhsm_token *tok)
{
    if (tok->initialized_pid != getpid()) {
        CK_RV rv = initialize(tok);
        if (rv != CKR_OK)
            return m2mhsm_fail(M2MHSM_E_MODULE, "C_Initialize(%s): %s", tok->module_path,
                               m2mhsm_ckr_name(rv));
        tok->initialized_pid = getpid();
    }
    if (tok->login_session != CK_INVALID_HANDLE)
        tok->fn->C_CloseSession(tok->login_session); /* a failed earlier attempt's */
    tok->login_session = CK_INVALID_HANDLE;
    m2mhsm_status st = find_slot(tok);
    if (st != M2MHSM_OK)
        return st;
    if ((st = probe(tok)) != M2MHSM_OK)
        return st;
    if (!tok->caps.sha256_hmac)
        return m2mhsm_fail(M2MHSM_E_UNSUPPORTED,
                           "token lacks CKM_SHA256_HMAC with CKF_SIGN, which TS-0003 needs");
    st = login(tok);
    /* Only a complete attach counts: a child whose login failed tries again next call
     * rather than carrying on with sessions that see no private objects. */
    if (st == M2MHSM_OK)
        tok->pid = getpid();
    return st;
}

m2mhsm_status m2mhsm_token_attach(m2mhsm_token *tok)
{
    /* Exclusive: SoftHSM's file backend can report an initialised token as absent when
     * another process enumerates or writes it while this one initialises. Attaching is
     * rare (open, fork), so the cost is nil. */
    m2mhsm_token_write_begin(tok);
    m2mhsm_status st = m2mhsm_token_attach_in_write(tok);
    m2mhsm_token_write_end(tok);
    return st;
}

static const char *default_module(void)
{
    const char *env = getenv("M2MHSM_MODULE");
    return env != NULL && env[0] != '\0' ? env : M2MHSM_DEFAULT_MODULE;
}

/* RFC 7512 lets the URI carry the pin-source ("pkcs11:token=x?pin-source=file:/p"). */
static m2mhsm_status pin_source_from_uri(m2mhsm_token *tok)
{
    P11KitUri *uri = NULL;
    m2mhsm_status st = parse_uri(tok->token_uri, &uri);
    if (st != M2MHSM_OK)
        return st;
    const char *src = p11_kit_uri_get_pin_source(uri);
    if (tok->pin_source == NULL && src != NULL && (tok->pin_source = strdup(src)) == NULL)
        st = m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    p11_kit_uri_free(uri);
    return st;
}

static const char *default_init_args(void)
{
    const char *env = getenv("M2MHSM_MODULE_INIT_ARGS");
    return env != NULL && env[0] != '\0' ? env : NULL;
}

static m2mhsm_status load_module(m2mhsm_token *tok)
{
    if (access(tok->module_path, R_OK) != 0)
        return m2mhsm_fail(M2MHSM_E_MODULE, "PKCS#11 module %s: not found or not readable",
                           tok->module_path);
    /* Managed mode: p11-kit gives this store its own view of the module (sessions, and
     * C_Finalize only when its last user goes). */
    tok->fn = p11_kit_module_load(tok->module_path, 0);
    if (tok->fn == NULL) {
        const char *why = p11_kit_message();
        return m2mhsm_fail(M2MHSM_E_MODULE, "p11_kit_module_load(%s): %s", tok->module_path,
                           why != NULL ? why : "failed");
    }
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_token_open(const m2mhsm_token_config *cfg, m2mhsm_token **out)
{
    if (out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "token_open: out is NULL");
    *out = NULL;
    if (cfg == NULL || cfg->token_uri == NULL || cfg->token_uri[0] == '\0')
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "a token URI (pkcs11:token=...) is required");
    m2mhsm_token *tok = calloc(1, sizeof(*tok));
    if (tok == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    pthread_mutex_init(&tok->lock, NULL);
    m2mhsm_status st = m2mhsm_objlock_init(
        &tok->objlock, !cfg->concurrent_writes || cfg->lock_file != NULL, cfg->lock_file);
    tok->module_path = strdup(cfg->module_path != NULL ? cfg->module_path : default_module());
    tok->token_uri = strdup(cfg->token_uri);
    tok->pin_source = dup_or_null(cfg->pin_source);
    tok->init_args = dup_or_null(cfg->init_args != NULL ? cfg->init_args : default_init_args());
    if (st == M2MHSM_OK &&
        (tok->module_path == NULL || tok->token_uri == NULL ||
         (cfg->pin_source != NULL && tok->pin_source == NULL) ||
         ((cfg->init_args != NULL || default_init_args() != NULL) && tok->init_args == NULL)))
        st = m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    if (st == M2MHSM_OK)
        st = m2mhsm_pool_init(tok, cfg);
    if (st == M2MHSM_OK)
        st = pin_source_from_uri(tok); /* also validates the URI before it is ever echoed */
    if (st == M2MHSM_OK)
        st = load_module(tok);
    if (st == M2MHSM_OK)
        st = m2mhsm_token_attach(tok);
    if (st != M2MHSM_OK) {
        m2mhsm_token_close(tok);
        return st;
    }
    *out = tok;
    return M2MHSM_OK;
}
