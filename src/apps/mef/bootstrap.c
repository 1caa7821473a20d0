/* The Bootstrap Security Handshake (TS-0003 8.3.2.1): TLS 1.2 and DTLS 1.2 PSK servers whose
 * psk_identity is a KpmID and whose PSK is the Kpm in the token. A completed handshake is
 * an enrolment: Ke and RelativeKeID are exported (10.3.1) straight into the token under
 * KeID (10.3.4) with the Enrolment Expiry configured for that KpmID; re-enrolling a KpmID
 * replaces its Ke and erases what derived from the old one. */
#include "mef.h"

#include <arpa/inet.h>
#include <event2/listener.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/rand.h>

/* A device that completed enrolment may keep the channel; it carries nothing more. */
#define MEF_BOOTSTRAP_IDLE_S 10
#define MEF_HANDSHAKE_TIMEOUT_S 10

static uint8_t cookie_secret[32];

static void on_psk(void *arg, m2mhsm_tls_psk_event ev, const char *identity,
                   const m2mhsm_record *rec, size_t erased)
{
    (void)arg;
    (void)rec;
    /* identity is the peer's unauthenticated psk_identity: app_log quotes it if need be,
     * and no more than 79 bytes of it are worth a log line. */
    if (ev == M2MHSM_TLS_PSK_UNKNOWN)
        app_log(APP_WARN, "rejected-unknown", "kpm_id=%.79s", identity);
    else if (ev == M2MHSM_TLS_PSK_EXPIRED)
        app_log(APP_WARN, "rejected-expired", "kpm_id=%.79s erased=%zu", identity, erased);
    else if (ev == M2MHSM_TLS_PSK_ERROR)
        app_log(APP_ERROR, "psk-error", "kpm_id=%.79s error=%s", identity, m2mhsm_last_error());
}

static void enrol(mef *m, app_conn *c, const char *kpm_id)
{
    m2mhsm_record cfg, ke;
    const char *transport = SSL_is_dtls(app_conn_ssl(c)) ? "dtls" : "tls";
    m2mhsm_status st =
        m2mhsm_keystore_lookup(m->store.ks, M2MHSM_KIND_ENROLMENT, kpm_id, strlen(kpm_id), &cfg);
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "enrol-failed", "kpm_id=%s peer=%s reason=%s", kpm_id, app_conn_peer(c),
                "no-bootstrap-instruction-configuration");
        app_conn_close(c, "not configured");
        return;
    }
    m2mhsm_enrolment enr = {kpm_id, m->cfg.fqdn, cfg.enrolee_id, cfg.target_id,
                            cfg.enrolment_expiry};
    st = m2mhsm_tls_export_ke(app_conn_ssl(c), m->store.ks, &enr, &ke);
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "enrol-failed", "kpm_id=%s peer=%s error=%s", kpm_id, app_conn_peer(c),
                app_error(st));
        app_conn_close(c, "enrolment failed");
        return;
    }
    char expiry[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_timestamp_format(ke.expiry, expiry, sizeof(expiry));
    app_log(APP_INFO, "enrolled",
            "kpm_id=%s ke_id=%s enrolee_id=%s target=%s expiry=%s transport=%s peer=%s", kpm_id,
            ke.identity, ke.enrolee_id, ke.target_id, expiry, transport, app_conn_peer(c));
    app_conn_deadline(c, m2mhsm_keystore_now(m->store.ks) + MEF_BOOTSTRAP_IDLE_S, "idle");
}

static void established(app_conn *c, void *arg)
{
    const char *kpm_id = m2mhsm_tls_ssl_identity(app_conn_ssl(c));
    if (kpm_id == NULL) { /* cannot happen with PSK-only suites; refuse rather than guess */
        app_conn_close(c, "no psk identity");
        return;
    }
    enrol(arg, c, kpm_id);
}

static void closed(app_conn *c, void *arg, const char *why)
{
    (void)arg;
    if (strncmp(why, "handshake", 9) == 0)
        app_log(APP_WARN, "bootstrap-failed", "peer=%s reason=%s", app_conn_peer(c), why);
}

static const app_conn_ops bootstrap_ops = {established, NULL, closed};

static int too_many(mef *m)
{
    if (app_conns_count(m->conns) < (size_t)m->cfg.max_connections)
        return 0;
    app_log(APP_WARN, "connection-refused", "reason=max_connections limit=%lld",
            m->cfg.max_connections);
    return 1;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    (void)l;
    (void)len;
    mef *m = arg;
    char peer[64];
    SSL *ssl = NULL;
    app_addr_format(sa, peer, sizeof(peer));
    if (too_many(m) || m2mhsm_tls_ssl_new(m->psk_tls, &ssl) != M2MHSM_OK) {
        close(fd);
        return;
    }
    app_conn_start(m->conns, ssl, fd, 0, peer);
}

/* DTLS cookies (RFC 6347 4.2.1): HMAC of the peer's address under a per-process secret, so a
 * spoofed source address cannot make the MEF hold state or answer with a full flight. */
static int peer_cookie(SSL *ssl, unsigned char out[32])
{
    unsigned char raw[16 + 2];
    size_t alen = 0, olen = 0;
    BIO_ADDR *peer = BIO_ADDR_new();
    int ok = peer != NULL && BIO_dgram_get_peer(SSL_get_rbio(ssl), peer) > 0 &&
             BIO_ADDR_rawaddress(peer, NULL, &alen) && alen <= 16 &&
             BIO_ADDR_rawaddress(peer, raw, &alen);
    if (ok) {
        unsigned short port = BIO_ADDR_rawport(peer);
        memcpy(raw + alen, &port, sizeof(port));
        ok = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, cookie_secret, sizeof(cookie_secret),
                       raw, alen + sizeof(port), out, 32, &olen) != NULL;
    }
    BIO_ADDR_free(peer);
    return ok && olen == 32;
}

static int cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    if (!peer_cookie(ssl, cookie))
        return 0;
    *len = 32;
    return 1;
}

static int cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    unsigned char want[32];
    return len == 32 && peer_cookie(ssl, want) && CRYPTO_memcmp(want, cookie, 32) == 0;
}

static SSL *dtls_listening_ssl(mef *m)
{
    SSL *ssl = NULL;
    BIO *bio = BIO_new_dgram(m->dtls_fd, BIO_NOCLOSE);
    if (bio == NULL || m2mhsm_tls_ssl_new(m->psk_dtls, &ssl) != M2MHSM_OK) {
        BIO_free(bio);
        return NULL;
    }
    SSL_set_bio(ssl, bio, bio);
    SSL_set_options(ssl, SSL_OP_COOKIE_EXCHANGE);
    return ssl;
}

/* A socket of its own for a peer that returned our cookie: bound to the service address and
 * connected to the peer, so the kernel routes its datagrams there. */
static int dtls_peer_socket(mef *m, const BIO_ADDR *peer, char *name, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    size_t alen = sizeof(struct in6_addr);
    memset(&ss, 0, sizeof(ss));
    if (BIO_ADDR_family(peer) == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = BIO_ADDR_rawport(peer);
        BIO_ADDR_rawaddress(peer, &in->sin_addr, &alen);
        sl = sizeof(*in);
    } else if (BIO_ADDR_family(peer) == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = BIO_ADDR_rawport(peer);
        BIO_ADDR_rawaddress(peer, &in6->sin6_addr, &alen);
        sl = sizeof(*in6);
    } else {
        return -1;
    }
    app_addr_format((struct sockaddr *)&ss, name, cap);
    int fd = app_listen(&m->dtls_addr, m->dtls_addr_len, SOCK_DGRAM);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void dtls_accept(mef *m)
{
    BIO_ADDR *peer = BIO_ADDR_new();
    char name[64];
    SSL *ssl = m->dtls_pending;
    m->dtls_pending = NULL;
    int fd = peer != NULL && BIO_dgram_get_peer(SSL_get_rbio(ssl), peer) > 0
                 ? dtls_peer_socket(m, peer, name, sizeof(name))
                 : -1;
    if (fd < 0 || too_many(m)) {
        if (fd >= 0)
            close(fd);
        SSL_free(ssl);
    } else {
        BIO *bio = SSL_get_rbio(ssl);
        BIO_set_fd(bio, fd, BIO_NOCLOSE);
        BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, peer);
        app_conn_start(m->conns, ssl, fd, 1, name);
    }
    BIO_ADDR_free(peer);
}

static void on_dtls_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mef *m = arg;
    for (;;) {
        if (m->dtls_pending == NULL && (m->dtls_pending = dtls_listening_ssl(m)) == NULL)
            return;
        BIO_ADDR *peer = BIO_ADDR_new();
        int r = peer != NULL ? DTLSv1_listen(m->dtls_pending, peer) : -1;
        BIO_ADDR_free(peer);
        if (r == 1) {
            dtls_accept(m);
            continue;
        }
        if (r < 0) { /* garbage: start over with a fresh listening SSL */
            SSL_free(m->dtls_pending);
            m->dtls_pending = NULL;
        }
        ERR_clear_error();
        return; /* 0: nothing more to read now */
    }
}

static int psk_ctx(mef *m, m2mhsm_tls_proto proto, SSL_CTX **out)
{
    m2mhsm_tls_profile p = {.role = M2MHSM_TLS_SERVER,
                            .proto = proto,
                            .kind = M2MHSM_KIND_KPM,
                            .observer = on_psk,
                            .observer_arg = m};
    m2mhsm_status st = m2mhsm_tls_ctx_new(m->store.tls, &p, out);
    if (st != M2MHSM_OK)
        app_log(APP_ERROR, "tls-setup-failed", "error=%s", app_error(st));
    return st == M2MHSM_OK ? 0 : -1;
}

static int start_tls(mef *m)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (app_addr_parse(m->cfg.bootstrap_tls, &ss, &sl) != 0 ||
        psk_ctx(m, m->cfg.tls13 ? M2MHSM_TLS_1_3 : M2MHSM_TLS_1_2, &m->psk_tls) != 0)
        return -1;
    int fd = app_listen(&ss, sl, SOCK_STREAM);
    if (fd < 0 ||
        (m->tls_listener =
             evconnlistener_new(m->base, on_accept, m, LEV_OPT_CLOSE_ON_FREE, -1, fd)) == NULL ||
        app_listener_guard(m->base, m->tls_listener) != 0) {
        app_log(APP_ERROR, "listen-failed", "address=%s", m->cfg.bootstrap_tls);
        if (fd >= 0 && m->tls_listener == NULL) /* else the listener owns it */
            close(fd);
        return -1;
    }
    app_log(APP_INFO, "listening", "service=bootstrap transport=%s address=%s",
            m->cfg.tls13 ? "tls1.3" : "tls1.2", m->cfg.bootstrap_tls);
    return 0;
}

static int start_dtls(mef *m)
{
    if (app_addr_parse(m->cfg.bootstrap_dtls, &m->dtls_addr, &m->dtls_addr_len) != 0 ||
        psk_ctx(m, M2MHSM_DTLS_1_2, &m->psk_dtls) != 0)
        return -1;
    SSL_CTX_set_cookie_generate_cb(m->psk_dtls, cookie_generate);
    SSL_CTX_set_cookie_verify_cb(m->psk_dtls, cookie_verify);
    m->dtls_fd = app_listen(&m->dtls_addr, m->dtls_addr_len, SOCK_DGRAM);
    if (m->dtls_fd < 0 ||
        (m->dtls_ev = event_new(m->base, m->dtls_fd, EV_READ | EV_PERSIST, on_dtls_readable, m)) ==
            NULL ||
        event_add(m->dtls_ev, NULL) != 0) {
        app_log(APP_ERROR, "listen-failed", "address=%s", m->cfg.bootstrap_dtls);
        return -1;
    }
    app_log(APP_INFO, "listening", "service=bootstrap transport=dtls1.2 address=%s",
            m->cfg.bootstrap_dtls);
    return 0;
}

int mef_bootstrap_start(mef *m)
{
    m->dtls_fd = -1;
    if (RAND_priv_bytes(cookie_secret, sizeof(cookie_secret)) != 1)
        return -1;
    if ((m->conns = app_conns_new(m->base, &bootstrap_ops, m, MEF_HANDSHAKE_TIMEOUT_S)) == NULL)
        return -1;
    if (m->cfg.bootstrap_tls != NULL && start_tls(m) != 0)
        return -1;
    if (m->cfg.bootstrap_dtls != NULL && start_dtls(m) != 0)
        return -1;
    return 0;
}

void mef_bootstrap_stop(mef *m)
{
    if (m->tls_listener != NULL) {
        app_listener_unguard(m->tls_listener);
        evconnlistener_free(m->tls_listener);
    }
    m->tls_listener = NULL;
    if (m->dtls_ev != NULL)
        event_free(m->dtls_ev);
    m->dtls_ev = NULL;
    if (m->dtls_fd >= 0)
        close(m->dtls_fd);
    m->dtls_fd = -1;
    SSL_free(m->dtls_pending);
    m->dtls_pending = NULL;
    if (m->conns != NULL)
        app_conns_shutdown(m->conns);
}
