/* The Bootstrap Security Handshake (TS-0003 8.3.2.1): TLS 1.2 (with the tls13 option, TLS 1.3
 * beside it) and DTLS 1.2 PSK servers whose psk_identity is a KpmID and whose PSK is the Kpm
 * in the token. A completed handshake is an enrolment: Ke and RelativeKeID are exported
 * (10.3.1) straight into the token under KeID (10.3.4) with the Enrolment Expiry configured
 * for that KpmID; re-enrolling a KpmID replaces its Ke and erases what derived from the old
 * one. */
#include "mef.h"

#include <event2/listener.h>
#include <string.h>
#include <unistd.h>

/* A device that completed enrolment may keep the channel; it carries nothing more. */
#define MEF_BOOTSTRAP_IDLE_S 10
#define MEF_HANDSHAKE_TIMEOUT_S 10

static void on_psk(void *arg, m2mhsm_tls_psk_event ev, const char *identity,
                   const m2mhsm_record *rec, size_t erased)
{
    (void)arg;
    (void)rec;
    app_conn_psk_seen(ev);
    /* identity is the peer's unauthenticated psk_identity: app_log quotes it if need be,
     * and no more than 79 bytes of it are worth a log line. */
    if (ev == M2MHSM_TLS_PSK_UNKNOWN)
        app_log(APP_WARN, "rejected-unknown", "kpm_id=%.79s", identity);
    else if (ev == M2MHSM_TLS_PSK_EXPIRED)
        app_log(APP_WARN, "rejected-expired", "kpm_id=%.79s erased=%zu", identity, erased);
    else if (ev == M2MHSM_TLS_PSK_ERROR)
        app_log(APP_ERROR, "psk-error", "kpm_id=%.79s error=%s", identity, m2mhsm_last_error());
}

/* A Kpm is used only while its Enrolee is configured and its configured absolute Enrolment
 * Expiry (if any) is ahead: a revoked or expired Enrolee is refused in the handshake, as an
 * unknown identity, before anything is exported. */
static int admit(void *arg, const m2mhsm_record *kpm)
{
    mef *m = arg;
    m2mhsm_record cfg;
    const char *why = NULL;
    m2mhsm_status st = m2mhsm_keystore_lookup(m->store.ks, M2MHSM_KIND_ENROLMENT, kpm->identity,
                                              strlen(kpm->identity), &cfg);
    if (st != M2MHSM_OK)
        why = st == M2MHSM_E_NOT_FOUND ? "not-configured" : "token-error";
    else if (cfg.enrolment_expiry.kind == M2MHSM_EXPIRY_ABSOLUTE &&
             !m2mhsm_expiry_is_valid(cfg.enrolment_expiry.value, m2mhsm_keystore_now(m->store.ks)))
        why = "enrolment-expiry-passed";
    if (why == NULL)
        return 1;
    if (st != M2MHSM_OK && st != M2MHSM_E_NOT_FOUND) /* say which call failed, and how */
        app_log(APP_WARN, "rejected-unconfigured", "kpm_id=%s reason=%s error=%s", kpm->identity,
                why, app_error(st));
    else
        app_log(APP_WARN, "rejected-unconfigured", "kpm_id=%s reason=%s", kpm->identity, why);
    return 0;
}

static void enrol(mef *m, app_conn *c, const char *kpm_id)
{
    m2mhsm_record cfg, ke;
    const char *transport = SSL_is_dtls(app_conn_ssl(c)) ? "dtls" : "tls";
    m2mhsm_status st =
        APP_TOKEN("lookup", m2mhsm_keystore_lookup(m->store.ks, M2MHSM_KIND_ENROLMENT, kpm_id,
                                                   strlen(kpm_id), &cfg));
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "enrol-failed", "kpm_id=%s peer=%s reason=%s", kpm_id, app_conn_peer(c),
                "no-bootstrap-instruction-configuration");
        app_conn_close(c, "not configured");
        return;
    }
    m2mhsm_enrolment enr = {kpm_id, m->cfg.fqdn, cfg.enrolee_id, cfg.target_id,
                            cfg.enrolment_expiry};
    st = APP_TOKEN("store", m2mhsm_tls_export_ke(app_conn_ssl(c), m->store.ks, &enr, &ke));
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "enrol-failed", "kpm_id=%s peer=%s error=%s", kpm_id, app_conn_peer(c),
                app_error(st));
        app_conn_close(c, "enrolment failed");
        return;
    }
    char expiry[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_timestamp_format(ke.expiry, expiry, sizeof(expiry));
    app_metrics_enrolment(transport);
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

/* A peer that returned its DTLS cookie (common/dtls.c). */
static void on_dtls_accept(void *arg, SSL *ssl, int fd, const char *peer)
{
    mef *m = arg;
    if (too_many(m)) {
        SSL_free(ssl);
        close(fd);
        return;
    }
    app_conn_start(m->conns, ssl, fd, 1, peer);
}

static int psk_ctx(mef *m, m2mhsm_tls_proto proto, SSL_CTX **out)
{
    m2mhsm_tls_profile p = {.role = M2MHSM_TLS_SERVER,
                            .proto = proto,
                            .kind = M2MHSM_KIND_KPM,
                            .observer = on_psk,
                            .observer_arg = m,
                            .admit = admit,
                            .admit_arg = m};
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
        psk_ctx(m, m->cfg.tls13 ? M2MHSM_TLS_1_2_AND_1_3 : M2MHSM_TLS_1_2, &m->psk_tls) != 0)
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
            m->cfg.tls13 ? "tls1.2+tls1.3" : "tls1.2", m->cfg.bootstrap_tls);
    app_notify_listener("bootstrap", m->cfg.tls13 ? "tls1.2+tls1.3" : "tls1.2",
                        m->cfg.bootstrap_tls);
    return 0;
}

static int start_dtls(mef *m)
{
    if (psk_ctx(m, M2MHSM_DTLS_1_2, &m->psk_dtls) != 0)
        return -1;
    m->dtls = app_dtls_listen(m->base, m->psk_dtls, m->cfg.bootstrap_dtls, on_dtls_accept, m);
    if (m->dtls == NULL) {
        app_log(APP_ERROR, "listen-failed", "address=%s", m->cfg.bootstrap_dtls);
        return -1;
    }
    app_log(APP_INFO, "listening", "service=bootstrap transport=dtls1.2 address=%s",
            m->cfg.bootstrap_dtls);
    app_notify_listener("bootstrap", "dtls1.2", m->cfg.bootstrap_dtls);
    return 0;
}

int mef_bootstrap_start(mef *m)
{
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
    app_dtls_free(m->dtls);
    m->dtls = NULL;
    if (m->conns != NULL)
        app_conns_shutdown(m->conns);
}
