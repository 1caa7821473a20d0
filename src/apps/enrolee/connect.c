/* The device's association with its Enrolment Target: (D)TLS-PSK with psk_identity = KeID
 * and psk = Km from the token (8.3.1.2 as changed by the CR). No usable key, or a key inside
 * the renewal margin, means provisioning first; a rejection by the target means the
 * Enrolment Expiry has passed there (the CR), so the device re-provisions once and retries. */
#include "enrolee.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Read what arrives within timeout_s; prints it. 1 data, 0 peer closed, -1 timeout/error. */
static int read_some(SSL *ssl, int fd, double timeout_s)
{
    char buf[1024];
    if (SSL_pending(ssl) == 0) {
        struct pollfd p = {fd, POLLIN, 0};
        int ms = timeout_s > 0 ? (int)(timeout_s * 1000) : 0;
        if (poll(&p, 1, ms) <= 0)
            return -1;
    }
    ERR_clear_error();
    int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0)
        return SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN ||
                       SSL_get_error(ssl, n) == SSL_ERROR_SYSCALL
                   ? 0
                   : -1;
    fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
    return 1;
}

/* After the handshake: greeting, message, echo, then hold until the deadline. */
static enrolee_result converse(enrolee *e, SSL *ssl, int fd, const m2mhsm_record *key,
                               const enrolee_session_opts *o)
{
    double end = now_s() + o->hold_s;
    if (o->renew && e->cfg.renewal_margin_s > 0) {
        double renew_at = (double)(key->expiry - e->cfg.renewal_margin_s);
        if (renew_at < end)
            end = renew_at;
    }
    if (read_some(ssl, fd, 5) == 0)
        return ENROLEE_CLOSED_BY_TARGET;
    if (o->message != NULL) {
        char line[512];
        int n = snprintf(line, sizeof(line), "%s\n", o->message);
        if (SSL_write(ssl, line, n) != n || read_some(ssl, fd, 5) == 0)
            return ENROLEE_CLOSED_BY_TARGET;
    }
    for (double left; (left = end - now_s()) > 0;)
        if (read_some(ssl, fd, left) == 0) {
            app_log(APP_WARN, "closed-by-target", "ke_id=%s", key->identity);
            return ENROLEE_CLOSED_BY_TARGET;
        }
    SSL_shutdown(ssl);
    return ENROLEE_DONE;
}

static int target_rejected(void)
{
    int reason = ERR_GET_REASON(ERR_peek_last_error());
    /* TLS 1.2 refuses an identity with unknown_psk_identity; TLS 1.3 without the PSK has no
     * way to authenticate and ends with handshake_failure. */
    return reason == SSL_R_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY ||
           reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE;
}

static enrolee_result session(enrolee *e, const m2mhsm_record *key, const enrolee_session_opts *o)
{
    int maf = m2mhsm_id_check_str(M2MHSM_ID_FQDN, e->cfg.target) == M2MHSM_OK;
    m2mhsm_tls_profile p = {.role = M2MHSM_TLS_CLIENT,
                            .proto = e->cfg.target_dtls    ? M2MHSM_DTLS_1_2
                                     : e->cfg.target_tls13 ? M2MHSM_TLS_1_3
                                                           : M2MHSM_TLS_1_2,
                            .kind = key->kind,
                            .identity = key->identity,
                            .server_name = maf ? e->cfg.target : NULL};
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = -1;
    enrolee_result r = ENROLEE_FAILED;
    ERR_clear_error();
    if (m2mhsm_tls_ctx_new(e->store.tls, &p, &ctx) == M2MHSM_OK &&
        m2mhsm_tls_ssl_new(ctx, &ssl) == M2MHSM_OK &&
        (fd = enrolee_dial(e->cfg.target_hostport, e->cfg.target_dtls)) >= 0 &&
        enrolee_attach(ssl, fd, e->cfg.target_dtls)) {
        if (SSL_connect(ssl) == 1) {
            char ts[M2MHSM_TIMESTAMP_LEN];
            m2mhsm_timestamp_format(key->expiry, ts, sizeof(ts));
            app_log(APP_INFO, "connected", "ke_id=%s target=%s expiry=%s cipher=%s", key->identity,
                    e->cfg.target, ts, SSL_get_cipher_name(ssl));
            r = converse(e, ssl, fd, key, o);
        } else if (target_rejected()) {
            app_log(APP_WARN, "rejected-by-target", "ke_id=%s target=%s", key->identity,
                    e->cfg.target);
            r = ENROLEE_REJECTED;
        }
    }
    if (r == ENROLEE_FAILED) {
        unsigned long err = ERR_peek_last_error();
        app_log(APP_ERROR, "connect-failed", "target=%s reason=%s", e->cfg.target_hostport,
                fd < 0 ? "target unreachable"
                : err  ? ERR_reason_error_string(err)
                       : "failed");
    }
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    return r;
}

/* Why the current key cannot be used as it is, or NULL. */
static const char *needs_provisioning(enrolee *e, int have, const m2mhsm_record *key)
{
    m2mhsm_time now = m2mhsm_keystore_now(e->store.ks);
    if (!have)
        return "no-credential";
    if (!m2mhsm_record_valid(e->store.ks, key))
        return "expired";
    if (e->cfg.renewal_margin_s > 0 && key->expiry != M2MHSM_NEVER &&
        key->expiry - now <= e->cfg.renewal_margin_s)
        return "renewal-margin";
    /* Stored for the other TLS version (target_uri changed): derived again in this one. */
    if (m2mhsm_record_check_form(key, enrolee_target_form(e)) != M2MHSM_OK)
        return "missing-form";
    return NULL;
}

enrolee_result enrolee_connect(enrolee *e, const enrolee_session_opts *o)
{
    m2mhsm_record key;
    int have = enrolee_current_key(e, &key);
    if (have < 0)
        return ENROLEE_FAILED;
    const char *why = needs_provisioning(e, have, &key);
    if (why != NULL && !enrolee_provision(e, why, &key))
        return ENROLEE_FAILED;
    enrolee_result r = session(e, &key, o);
    if (r != ENROLEE_REJECTED)
        return r;
    if (!enrolee_provision(e, "rejected-by-target", &key))
        return ENROLEE_FAILED;
    return session(e, &key, o);
}
