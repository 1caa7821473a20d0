/* The MAF's TLS-PSK and DTLS-PSK services: psk_identity = KeID, PSK = Km in the token (Kpsa
 * at an Enrolee B, which plays the MAF's role with it: the CR's change 1). An
 * unknown KeID is fetched from its MEF while the handshake is paused (SSL_MODE_ASYNC, over
 * TCP and UDP alike), so the device's first connection succeeds; an expired one is refused
 * and that Enrolee's credentials are erased (the CR); an open connection is closed when its
 * key expires, and there are no sessions or tickets to outlive it. */
#include "maf.h"

#include <event2/listener.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/async.h>

#define MAF_HANDSHAKE_TIMEOUT_S 15

static void on_psk(void *arg, m2mhsm_tls_psk_event ev, const char *identity,
                   const m2mhsm_record *rec, size_t erased)
{
    (void)arg;
    app_conn_psk_seen(ev);
    /* identity is the peer's unauthenticated psk_identity: app_log quotes it if need be,
     * and no more than 79 bytes of it are worth a log line. */
    if (ev == M2MHSM_TLS_PSK_UNKNOWN)
        app_log(APP_WARN, "rejected-unknown", "ke_id=%.79s", identity);
    else if (ev == M2MHSM_TLS_PSK_EXPIRED)
        app_log(APP_WARN, "rejected-expired", "ke_id=%.79s enrolee_id=%s erased=%zu", identity,
                rec != NULL && rec->enrolee_id[0] ? rec->enrolee_id : "-", erased);
    else if (ev == M2MHSM_TLS_PSK_ERROR)
        app_log(APP_ERROR, "psk-error", "ke_id=%.79s error=%s", identity, m2mhsm_last_error());
}

static void established(app_conn *c, void *arg)
{
    maf *m = arg;
    SSL *ssl = app_conn_ssl(c);
    const char *ke_id = m2mhsm_tls_ssl_identity(ssl);
    m2mhsm_time expiry = m2mhsm_tls_ssl_expiry(ssl);
    char ts[M2MHSM_TIMESTAMP_LEN], line[768];
    m2mhsm_timestamp_format(expiry, ts, sizeof(ts));
    app_log(APP_INFO, "handshake-ok", "ke_id=%s expiry=%s cipher=%s peer=%s", ke_id, ts,
            SSL_get_cipher_name(ssl), app_conn_peer(c));
    app_conn_deadline(c, expiry, "key expired");
    int n = snprintf(line, sizeof(line), "%s %s: authenticated %s until %s\n", m->role->program,
                     m->cfg.target_id, ke_id, ts);
    app_conn_write(c, line, (size_t)n);
}

/* The association carries the device's application traffic; this reference MAF echoes it. */
static void data(app_conn *c, void *arg, const uint8_t *buf, size_t len)
{
    (void)arg;
    app_conn_write(c, buf, len);
}

static void closed(app_conn *c, void *arg, const char *why)
{
    (void)arg;
    SSL *ssl = app_conn_ssl(c);
    const char *ke_id = m2mhsm_tls_ssl_identity(ssl);
    if (strcmp(why, "key expired") == 0)
        app_log(APP_INFO, "closed-expired", "ke_id=%.79s peer=%s", ke_id, app_conn_peer(c));
    else if (strcmp(why, APP_CONN_KEY_ERASED) == 0)
        app_log(APP_INFO, "closed-erased", "ke_id=%.79s peer=%s", ke_id, app_conn_peer(c));
    else if (strncmp(why, "handshake", 9) == 0)
        app_log(APP_WARN, "handshake-failed", "ke_id=%.79s peer=%s reason=%s", ke_id,
                app_conn_peer(c), why);
}

static const app_conn_ops serve_ops = {established, data, closed};

static int room_for(maf *m, const char *peer)
{
    if (app_conns_count(m->conns) < (size_t)m->cfg.max_connections)
        return 1;
    app_log(APP_WARN, "connection-refused", "reason=max_connections limit=%lld peer=%s",
            m->cfg.max_connections, peer);
    return 0;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    (void)l;
    (void)len;
    maf *m = arg;
    char peer[64];
    SSL *ssl = NULL;
    app_addr_format(sa, peer, sizeof(peer));
    if (!room_for(m, peer)) {
        close(fd);
        return;
    }
    if (m2mhsm_tls_ssl_new(m->psk_ctx, &ssl) != M2MHSM_OK) {
        close(fd);
        return;
    }
    app_conn_start(m->conns, ssl, fd, 0, peer);
}

/* A DTLS peer that returned its cookie (common/dtls.c). */
static void on_dtls_accept(void *arg, SSL *ssl, int fd, const char *peer)
{
    maf *m = arg;
    if (!room_for(m, peer)) {
        SSL_free(ssl);
        close(fd);
        return;
    }
    app_conn_start(m->conns, ssl, fd, 1, peer);
}

/* A PSK server context whose unknown KeIDs are fetched while the handshake waits in an ASYNC
 * job (docs/architecture.md). */
static int psk_ctx(maf *m, m2mhsm_tls_proto proto, SSL_CTX **out)
{
    m2mhsm_tls_profile p = {.role = M2MHSM_TLS_SERVER,
                            .proto = proto,
                            .kind = m->role->kind,
                            .observer = on_psk,
                            .observer_arg = m,
                            .resolver = maf_fetch_resolve,
                            .resolver_arg = m};
    m2mhsm_status st = m2mhsm_tls_ctx_new(m->store.tls, &p, out);
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "tls-setup-failed", "error=%s", app_error(st));
        return -1;
    }
    SSL_CTX_set_mode(*out, SSL_MODE_ASYNC);
    return 0;
}

/* Bound before the TCP listener: once the TCP port accepts (what lab.sh start waits for),
 * the UDP one is served too. */
static int start_dtls(maf *m)
{
    if (psk_ctx(m, M2MHSM_DTLS_1_2, &m->psk_dtls) != 0)
        return -1;
    m->dtls = app_dtls_listen(m->base, m->psk_dtls, m->cfg.listen_dtls, on_dtls_accept, m);
    if (m->dtls == NULL) {
        app_log(APP_ERROR, "listen-failed", "address=%s", m->cfg.listen_dtls);
        return -1;
    }
    app_log(APP_INFO, "listening", "service=enrolees transport=dtls1.2 address=%s",
            m->cfg.listen_dtls);
    return 0;
}

int maf_serve_start(maf *m)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!ASYNC_is_capable()) {
        app_log(APP_ERROR, "start-failed", "reason=\"OpenSSL has no ASYNC job support\"");
        return -1;
    }
    /* tls13: TLS 1.3 beside TLS 1.2, whose TS-0003 suites stay available. */
    if (psk_ctx(m, m->cfg.tls13 ? M2MHSM_TLS_1_2_AND_1_3 : M2MHSM_TLS_1_2, &m->psk_ctx) != 0)
        return -1;
    if (app_addr_parse(m->cfg.listen, &ss, &sl) != 0 ||
        (m->conns = app_conns_new(m->base, &serve_ops, m, MAF_HANDSHAKE_TIMEOUT_S)) == NULL)
        return -1;
    if (m->cfg.listen_dtls != NULL && start_dtls(m) != 0)
        return -1;
    int fd = app_listen(&ss, sl, SOCK_STREAM);
    if (fd < 0 ||
        (m->listener = evconnlistener_new(m->base, on_accept, m, LEV_OPT_CLOSE_ON_FREE, -1, fd)) ==
            NULL ||
        app_listener_guard(m->base, m->listener) != 0) {
        app_log(APP_ERROR, "listen-failed", "address=%s", m->cfg.listen);
        if (fd >= 0 && m->listener == NULL) /* else the listener owns it */
            close(fd);
        return -1;
    }
    app_log(APP_INFO, "listening", "service=enrolees transport=%s address=%s",
            m->cfg.tls13 ? "tls1.2+tls1.3" : "tls1.2", m->cfg.listen);
    app_notify_listener("enrolees", m->cfg.tls13 ? "tls1.2+tls1.3" : "tls1.2", m->cfg.listen);
    return 0;
}

void maf_serve_stop(maf *m)
{
    if (m->listener != NULL) {
        app_listener_unguard(m->listener);
        evconnlistener_free(m->listener);
    }
    m->listener = NULL;
    app_dtls_free(m->dtls);
    m->dtls = NULL;
    if (m->conns != NULL)
        app_conns_shutdown(m->conns);
}
