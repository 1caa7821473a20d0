/* The device side of remote provisioning: the Bootstrap Security Handshake with the MEF
 * (8.3.2.1; psk_identity = KpmID, psk = Kpm in this token), the Ke export (10.3.1) into the
 * token with the Enrolment Expiry this device was configured with, and the Km (10.3.2) or
 * Kpsa (10.3.3) for its Enrolment Target, never outliving Ke (the CR). */
#include "enrolee.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <openssl/err.h>

#define DIAL_TIMEOUT_S 10

int enrolee_dial(const char *hostport, int dtls)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    struct timeval tv = {DIAL_TIMEOUT_S, 0};
    if (app_addr_parse(hostport, &ss, &sl) != 0)
        return -1;
    int fd = socket(ss.ss_family, (dtls ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The connected UDP socket's peer, for BIO_dgram's connected mode. */
static BIO_ADDR *peer_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    BIO_ADDR *a = BIO_ADDR_new();
    if (a == NULL || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        BIO_ADDR_free(a);
        return NULL;
    }
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    int ok = ss.ss_family == AF_INET
                 ? BIO_ADDR_rawmake(a, AF_INET, &in->sin_addr, sizeof(in->sin_addr), in->sin_port)
                 : BIO_ADDR_rawmake(a, AF_INET6, &in6->sin6_addr, sizeof(in6->sin6_addr),
                                    in6->sin6_port);
    if (!ok) {
        BIO_ADDR_free(a);
        return NULL;
    }
    return a;
}

int enrolee_attach(SSL *ssl, int fd, int dtls)
{
    BIO *bio = dtls ? BIO_new_dgram(fd, BIO_NOCLOSE) : BIO_new_socket(fd, BIO_NOCLOSE);
    BIO_ADDR *peer = dtls ? peer_of(fd) : NULL;
    int ok = bio != NULL && (!dtls || peer != NULL);
    if (ok) {
        if (peer != NULL)
            BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, peer);
        SSL_set_bio(ssl, bio, bio);
        bio = NULL;
    }
    BIO_free(bio);
    BIO_ADDR_free(peer);
    return ok;
}

static int is_maf_target(const char *target)
{
    return m2mhsm_id_check_str(M2MHSM_ID_FQDN, target) == M2MHSM_OK;
}

int enrolee_current_key(enrolee *e, m2mhsm_record *key)
{
    m2mhsm_record *all = NULL;
    size_t n = 0;
    int found = 0;
    m2mhsm_kind want = is_maf_target(e->cfg.target) ? M2MHSM_KIND_KM : M2MHSM_KIND_KPSA;
    m2mhsm_status st = m2mhsm_keystore_list(e->store.ks, &all, &n);
    if (st != M2MHSM_OK) {
        /* A token that cannot be read says nothing about the key: enrolling again would
         * replace a valid enrolment at the MEF because of a token error. */
        app_log(APP_ERROR, "lookup-failed", "kpm_id=%s target=%s reason=%s", e->cfg.kpm_id,
                e->cfg.target, app_error(st));
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (all[i].kind == want && strcmp(all[i].kpm_id, e->cfg.kpm_id) == 0 &&
            strcmp(all[i].target_id, e->cfg.target) == 0 &&
            (!found || all[i].created >= key->created)) {
            *key = all[i];
            found = 1;
        }
    free(all);
    return found;
}

m2mhsm_form enrolee_target_form(const enrolee *e)
{
    return e->cfg.target_tls13 ? M2MHSM_FORM_TLS13_ES : M2MHSM_FORM_TLS12_PMS;
}

unsigned enrolee_psk_forms(const enrolee *e)
{
    return 1u << enrolee_target_form(e);
}

/* A Kpm imported without the form this bootstrap needs (m2mhsm kpm import --forms) is
 * reported by name rather than as an anonymous handshake failure. */
static m2mhsm_status kpm_has_form(enrolee *e, m2mhsm_tls_proto proto)
{
    m2mhsm_record kpm;
    const char *id = e->cfg.kpm_id;
    m2mhsm_status st = m2mhsm_keystore_lookup(e->store.ks, M2MHSM_KIND_KPM, id, strlen(id), &kpm);
    if (st != M2MHSM_OK)
        return st;
    return m2mhsm_record_check_form(&kpm, proto == M2MHSM_TLS_1_3 ? M2MHSM_FORM_TLS13_ES
                                                                  : M2MHSM_FORM_TLS12_PMS);
}

/* The handshake and export; the Ke record on success. */
static int bootstrap(enrolee *e, m2mhsm_record *ke)
{
    m2mhsm_tls_profile p = {.role = M2MHSM_TLS_CLIENT,
                            .proto = e->cfg.mef_dtls    ? M2MHSM_DTLS_1_2
                                     : e->cfg.mef_tls13 ? M2MHSM_TLS_1_3
                                                        : M2MHSM_TLS_1_2,
                            .kind = M2MHSM_KIND_KPM,
                            .identity = e->cfg.kpm_id,
                            .server_name = e->cfg.mef_fqdn};
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = -1, ok = 0;
    m2mhsm_status st = kpm_has_form(e, p.proto);
    if (st == M2MHSM_OK)
        st = m2mhsm_tls_ctx_new(e->store.tls, &p, &ctx);
    if (st == M2MHSM_OK)
        st = m2mhsm_tls_ssl_new(ctx, &ssl);
    if (st == M2MHSM_OK && (fd = enrolee_dial(e->cfg.mef_hostport, e->cfg.mef_dtls)) >= 0 &&
        enrolee_attach(ssl, fd, e->cfg.mef_dtls))
        ok = SSL_connect(ssl) == 1;
    if (ok) {
        m2mhsm_enrolment enr = {e->cfg.kpm_id, e->cfg.mef_fqdn, e->cfg.enrolee_id, e->cfg.target,
                                e->cfg.enrolment_expiry};
        st = m2mhsm_tls_export_ke(ssl, e->store.ks, &enr, ke);
        ok = st == M2MHSM_OK;
        if (!ok)
            app_log(APP_ERROR, "enrol-failed", "error=%s", app_error(st));
        SSL_shutdown(ssl);
    } else {
        unsigned long err = ERR_peek_last_error();
        app_log(APP_ERROR, "bootstrap-failed", "mef=%s reason=%s", e->cfg.mef_hostport,
                st != M2MHSM_OK ? app_error(st)
                : fd < 0        ? "MEF unreachable"
                : err != 0      ? ERR_reason_error_string(err)
                                : "handshake failed");
    }
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    return ok;
}

int enrolee_provision(enrolee *e, const char *reason, m2mhsm_record *key)
{
    m2mhsm_record ke;
    char ts[M2MHSM_TIMESTAMP_LEN];
    app_log(APP_INFO, "provisioning", "kpm_id=%s mef=%s reason=%s", e->cfg.kpm_id, e->cfg.mef_fqdn,
            reason);
    if (!bootstrap(e, &ke))
        return 0;
    m2mhsm_timestamp_format(ke.expiry, ts, sizeof(ts));
    app_log(APP_INFO, "enrolled", "kpm_id=%s ke_id=%s expiry=%s", e->cfg.kpm_id, ke.identity, ts);
    m2mhsm_derivation which = is_maf_target(e->cfg.target) ? M2MHSM_DERIVE_KM : M2MHSM_DERIVE_KPSA;
    m2mhsm_status st =
        m2mhsm_keystore_derive_store(e->store.ks, &ke, which, e->cfg.target, M2MHSM_NEVER, key);
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "derive-failed", "ke_id=%s error=%s", ke.identity, app_error(st));
        return 0;
    }
    m2mhsm_timestamp_format(key->expiry, ts, sizeof(ts));
    app_log(APP_INFO, "derived", "key=%s ke_id=%s target=%s expiry=%s", m2mhsm_kind_name(key->kind),
            key->identity, e->cfg.target, ts);
    e->reprovisions++;
    return 1;
}
