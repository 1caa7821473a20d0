/* SSL_CTXs whose PSKs are handles to token keys (include/m2mhsm/tls.h). */
#include <m2mhsm/tls.h>

#include "handle.h"
#include "prov.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/provider.h>

struct m2mhsm_tls {
    m2mhsm_keystore *ks;
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *dflt, *ours;
    m2mhsm_handles *handles;
    int watching; /* revoke_gone is registered with ks */
};

/* What a PSK callback needs: kept on the SSL_CTX (ex_data), freed with it. */
typedef struct {
    m2mhsm_tls *t;
    m2mhsm_tls_profile p;
    char identity[M2MHSM_ID_MAX + 1];
    char server_name[M2MHSM_FQDN_MAX + 1];
} ctx_state;

static int state_index = -1, expiry_index = -1;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;

static void state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void state_index_init(void)
{
    state_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, state_free);
    expiry_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, state_free);
}

/* What a connection was keyed with: the key's expiry, identity and record. */
typedef struct {
    m2mhsm_time expiry;
    char identity[M2MHSM_ID_MAX + 1];
    uint8_t record_id[M2MHSM_RECORD_ID_LEN];
} ssl_key_note;

/* Remember on the connection which key it was keyed with and when that key expires; 0 if
 * that cannot be recorded, and the handshake is then refused rather than left unbounded. */
static int note_key(SSL *ssl, const m2mhsm_record *rec)
{
    ssl_key_note *slot = SSL_get_ex_data(ssl, expiry_index);
    if (slot == NULL && (slot = malloc(sizeof(*slot))) != NULL &&
        !SSL_set_ex_data(ssl, expiry_index, slot)) {
        free(slot);
        slot = NULL;
    }
    if (slot == NULL)
        return 0;
    slot->expiry = rec->expiry;
    memcpy(slot->identity, rec->identity, sizeof(slot->identity));
    memcpy(slot->record_id, rec->record_id, sizeof(slot->record_id));
    return 1;
}

int m2mhsm_tls_ssl_keyed_with(SSL *ssl, const uint8_t record_id[M2MHSM_RECORD_ID_LEN])
{
    pthread_once(&state_once, state_index_init);
    const ssl_key_note *slot = SSL_get_ex_data(ssl, expiry_index);
    return slot != NULL && memcmp(slot->record_id, record_id, M2MHSM_RECORD_ID_LEN) == 0;
}

m2mhsm_time m2mhsm_tls_ssl_expiry(SSL *ssl)
{
    pthread_once(&state_once, state_index_init);
    const ssl_key_note *slot = SSL_get_ex_data(ssl, expiry_index);
    return slot != NULL ? slot->expiry : M2MHSM_NEVER;
}

const char *m2mhsm_tls_ssl_identity(SSL *ssl)
{
    pthread_once(&state_once, state_index_init);
    const ssl_key_note *slot = SSL_get_ex_data(ssl, expiry_index);
    return slot != NULL ? slot->identity : NULL;
}

int m2mhsm_tls_ssl_expired(m2mhsm_tls *t, SSL *ssl)
{
    return !m2mhsm_expiry_is_valid(m2mhsm_tls_ssl_expiry(ssl), m2mhsm_keystore_now(t->ks));
}

m2mhsm_status m2mhsm_tls_ssl_new(SSL_CTX *ctx, SSL **out)
{
    pthread_once(&state_once, state_index_init);
    ctx_state *cs = SSL_CTX_get_ex_data(ctx, state_index);
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return M2MHSM_E_NOMEM;
    if (cs != NULL && cs->server_name[0] != '\0' &&
        !SSL_set_tlsext_host_name(ssl, cs->server_name)) {
        SSL_free(ssl);
        return M2MHSM_E_CRYPTO;
    }
    *out = ssl;
    return M2MHSM_OK;
}

/* A record left the token (whatever erased it): its handles and session copies go too. */
static void revoke_gone(void *arg, const m2mhsm_record *rec, m2mhsm_gone how)
{
    (void)how;
    m2mhsm_handles_revoke(arg, rec->record_id);
}

m2mhsm_status m2mhsm_tls_new(m2mhsm_keystore *ks, m2mhsm_tls **out)
{
    *out = NULL;
    m2mhsm_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return M2MHSM_E_NOMEM;
    t->ks = ks;
    m2mhsm_status st = m2mhsm_handles_new(ks, &t->handles);
    if (st == M2MHSM_OK &&
        ((t->libctx = OSSL_LIB_CTX_new()) == NULL ||
         !OSSL_PROVIDER_add_builtin(t->libctx, M2MHSM_PROV_NAME, m2mhsm_provider_init) ||
         (t->dflt = OSSL_PROVIDER_load(t->libctx, "default")) == NULL ||
         (t->ours = OSSL_PROVIDER_load(t->libctx, M2MHSM_PROV_NAME)) == NULL))
        st = M2MHSM_E_CRYPTO;
    if (st == M2MHSM_OK) {
        /* Our provider instance in this context resolves this registry's handles. */
        m2mhsm_provctx *pc = OSSL_PROVIDER_get0_provider_ctx(t->ours);
        pc->handles = t->handles;
        st = m2mhsm_keystore_watch(ks, revoke_gone, t->handles);
        t->watching = st == M2MHSM_OK;
    }
    if (st != M2MHSM_OK) {
        m2mhsm_tls_free(t);
        return st;
    }
    *out = t;
    return M2MHSM_OK;
}

void m2mhsm_tls_free(m2mhsm_tls *t)
{
    if (t == NULL)
        return;
    if (t->watching)
        m2mhsm_keystore_unwatch(t->ks, revoke_gone, t->handles);
    OSSL_PROVIDER_unload(t->ours);
    OSSL_PROVIDER_unload(t->dflt);
    OSSL_LIB_CTX_free(t->libctx);
    m2mhsm_handles_free(t->handles);
    free(t);
}

OSSL_LIB_CTX *m2mhsm_tls_libctx(m2mhsm_tls *t)
{
    return t->libctx;
}

static ctx_state *state_of(SSL *ssl)
{
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), state_index);
}

static void observe(const ctx_state *cs, m2mhsm_tls_psk_event ev, const char *identity,
                    const m2mhsm_record *rec, size_t erased)
{
    if (cs->p.observer != NULL)
        cs->p.observer(cs->p.observer_arg, ev, identity, rec, erased);
}

/* A key stored without the form this connection's handshake signs with (its store kept
 * other forms, m2mhsm_keystore_options.psk_forms) cannot serve it: refused here, with the
 * form named in m2mhsm_last_error(), before libssl or the provider would meet a missing key.
 * A server of TLS 1.2 and 1.3 has chosen the version before it asks for the PSK. */
static int has_form(const ctx_state *cs, SSL *ssl, const m2mhsm_record *rec)
{
    int tls13 = cs->p.proto == M2MHSM_TLS_1_3 ||
                (cs->p.proto == M2MHSM_TLS_1_2_AND_1_3 && SSL_version(ssl) == TLS1_3_VERSION);
    m2mhsm_form need = tls13 ? M2MHSM_FORM_TLS13_ES : M2MHSM_FORM_TLS12_PMS;
    return m2mhsm_record_check_form(rec, need) == M2MHSM_OK;
}

static unsigned int server_psk(SSL *ssl, const char *identity, unsigned char *psk,
                               unsigned int max_psk_len)
{
    ctx_state *cs = state_of(ssl);
    m2mhsm_record rec;
    if (cs == NULL || identity == NULL || max_psk_len < M2MHSM_HANDLE_LEN)
        return 0;
    size_t id_len = strlen(identity);
    m2mhsm_status st = m2mhsm_keystore_lookup(cs->t->ks, cs->p.kind, identity, id_len, &rec);
    if (st == M2MHSM_E_NOT_FOUND && cs->p.resolver != NULL &&
        cs->p.resolver(cs->p.resolver_arg, ssl, identity) == 1)
        st = m2mhsm_keystore_lookup(cs->t->ks, cs->p.kind, identity, id_len, &rec);
    if (st != M2MHSM_OK) {
        /* An identity outside its grammar names no key: unknown, not a server error. */
        int unknown = st == M2MHSM_E_NOT_FOUND || st == M2MHSM_E_INVALID_ARG;
        observe(cs, unknown ? M2MHSM_TLS_PSK_UNKNOWN : M2MHSM_TLS_PSK_ERROR, identity, NULL, 0);
        return 0;
    }
    if (!m2mhsm_record_valid(cs->t->ks, &rec)) {
        /* The CR: the Target refuses, and erases the Enrolee's credentials. */
        size_t erased = 0;
        m2mhsm_keystore_erase_expired(cs->t->ks, &rec, &erased);
        m2mhsm_handles_revoke(cs->t->handles, rec.record_id);
        observe(cs, M2MHSM_TLS_PSK_EXPIRED, identity, &rec, erased);
        return 0;
    }
    if (cs->p.admit != NULL && !cs->p.admit(cs->p.admit_arg, &rec)) {
        observe(cs, M2MHSM_TLS_PSK_REFUSED, identity, &rec, 0);
        return 0;
    }
    if (!has_form(cs, ssl, &rec) || m2mhsm_handles_issue(cs->t->handles, &rec, psk) != M2MHSM_OK) {
        observe(cs, M2MHSM_TLS_PSK_ERROR, identity, &rec, 0);
        return 0;
    }
    if (!note_key(ssl, &rec)) {
        observe(cs, M2MHSM_TLS_PSK_ERROR, identity, &rec, 0);
        return 0;
    }
    observe(cs, M2MHSM_TLS_PSK_ACCEPTED, identity, &rec, 0);
    return M2MHSM_HANDLE_LEN;
}

static unsigned int client_psk(SSL *ssl, const char *hint, char *identity,
                               unsigned int max_identity_len, unsigned char *psk,
                               unsigned int max_psk_len)
{
    (void)hint;
    ctx_state *cs = state_of(ssl);
    m2mhsm_record rec;
    size_t id_len = cs != NULL ? strlen(cs->identity) : 0;
    if (cs == NULL || id_len + 1 > max_identity_len || max_psk_len < M2MHSM_HANDLE_LEN)
        return 0;
    if (m2mhsm_keystore_lookup(cs->t->ks, cs->p.kind, cs->identity, id_len, &rec) != M2MHSM_OK ||
        !m2mhsm_record_valid(cs->t->ks, &rec) || !has_form(cs, ssl, &rec) ||
        m2mhsm_handles_issue(cs->t->handles, &rec, psk) != M2MHSM_OK)
        return 0;
    if (!note_key(ssl, &rec))
        return 0;
    memcpy(identity, cs->identity, id_len + 1);
    return M2MHSM_HANDLE_LEN;
}

static const SSL_METHOD *method_for(const m2mhsm_tls_profile *p)
{
    int server = p->role == M2MHSM_TLS_SERVER;
    if (p->proto == M2MHSM_DTLS_1_2)
        return server ? DTLS_server_method() : DTLS_client_method();
    return server ? TLS_server_method() : TLS_client_method();
}

/* TS-0003 10.2.2: TLS implements PSK-AES128-CBC-SHA256 at least, DTLS PSK-AES128-CCM8. TLS 1.3
 * external PSK, an option beside it, uses TLS_AES_128_GCM_SHA256 (a SHA-256 suite, as the
 * stored early-secret form needs). One PSK callback serves both versions: libssl asks the
 * legacy psk_server_callback for a TLS 1.3 identity too when no psk_find_session_cb is set,
 * and keys that PSK with TLS_AES_128_GCM_SHA256; the handle it gets is the same, and the
 * provider picks the record's TLS 1.2 or TLS 1.3 form by the KDF libssl then calls. */
static int configure(SSL_CTX *ctx, const m2mhsm_tls_profile *p)
{
    int min = TLS1_2_VERSION, max = TLS1_2_VERSION;
    if (p->proto == M2MHSM_DTLS_1_2)
        min = max = DTLS1_2_VERSION;
    else if (p->proto == M2MHSM_TLS_1_3)
        min = max = TLS1_3_VERSION;
    else if (p->proto == M2MHSM_TLS_1_2_AND_1_3)
        max = TLS1_3_VERSION;
    const char *ciphers = p->proto == M2MHSM_DTLS_1_2
                              ? "PSK-AES128-CCM8"
                              : "PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256:PSK-AES128-CCM8";
    /* No resumption, no tickets: a security association never outlives its handshake's
     * key check (the CR), and every connection proves the key afresh. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    return SSL_CTX_set_min_proto_version(ctx, min) && SSL_CTX_set_max_proto_version(ctx, max) &&
           SSL_CTX_set_cipher_list(ctx, ciphers) &&
           (p->proto == M2MHSM_DTLS_1_2 || SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256"));
}

m2mhsm_status m2mhsm_tls_ctx_new(m2mhsm_tls *t, const m2mhsm_tls_profile *p, SSL_CTX **out)
{
    *out = NULL;
    if (p == NULL || (p->role != M2MHSM_TLS_SERVER && p->role != M2MHSM_TLS_CLIENT))
        return M2MHSM_E_INVALID_ARG;
    if (p->proto != M2MHSM_TLS_1_2 && p->proto != M2MHSM_DTLS_1_2 && p->proto != M2MHSM_TLS_1_3 &&
        p->proto != M2MHSM_TLS_1_2_AND_1_3)
        return M2MHSM_E_INVALID_ARG;
    pthread_once(&state_once, state_index_init);
    ctx_state *cs = calloc(1, sizeof(*cs));
    if (cs == NULL)
        return M2MHSM_E_NOMEM;
    cs->t = t;
    cs->p = *p;
    if (p->role == M2MHSM_TLS_CLIENT &&
        (p->identity == NULL || strlen(p->identity) >= sizeof(cs->identity))) {
        free(cs);
        return M2MHSM_E_INVALID_ARG;
    }
    if (p->identity != NULL)
        strcpy(cs->identity, p->identity);
    if (p->server_name != NULL &&
        (strlen(p->server_name) >= sizeof(cs->server_name) ||
         m2mhsm_id_check_str(M2MHSM_ID_FQDN, p->server_name) != M2MHSM_OK)) {
        free(cs);
        return M2MHSM_E_INVALID_ARG;
    }
    if (p->server_name != NULL)
        strcpy(cs->server_name, p->server_name);
    cs->p.identity = NULL;
    cs->p.server_name = NULL;
    /* "?provider=m2mhsm": prefer our KDFs; a mandatory query fails to find ciphers. */
    SSL_CTX *ctx = SSL_CTX_new_ex(t->libctx, "?provider=" M2MHSM_PROV_NAME, method_for(p));
    if (ctx == NULL || !SSL_CTX_set_ex_data(ctx, state_index, cs)) {
        SSL_CTX_free(ctx);
        free(cs);
        return M2MHSM_E_CRYPTO;
    }
    if (!configure(ctx, p)) {
        SSL_CTX_free(ctx);
        return M2MHSM_E_CRYPTO;
    }
    if (p->role == M2MHSM_TLS_SERVER)
        SSL_CTX_set_psk_server_callback(ctx, server_psk);
    else
        SSL_CTX_set_psk_client_callback(ctx, client_psk);
    *out = ctx;
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_tls_export_ke(SSL *ssl, m2mhsm_keystore *ks, const m2mhsm_enrolment *enr,
                                   m2mhsm_record *ke)
{
    uint8_t exported[M2MHSM_EXPORT_LEN];
    static const char label[] = M2MHSM_EXPORTER_BOOTSTRAP;
    /* Clause 10.3.1 and the project's decision: no context value. */
    if (SSL_export_keying_material(ssl, exported, sizeof(exported), label, sizeof(label) - 1, NULL,
                                   0, 0) != 1)
        return M2MHSM_E_CRYPTO;
    m2mhsm_status st = m2mhsm_keystore_store_ke(ks, enr, exported, ke);
    OPENSSL_cleanse(exported, sizeof(exported));
    return st;
}
