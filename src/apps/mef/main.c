/*
 * m2m-mef — the M2M Enrolment Function. Usage: m2m-mef --config FILE
 * Serves the bootstrap (D)TLS-PSK handshake and /fetchCredentials until SIGTERM/SIGINT.
 * Exit status: 0 after a clean shutdown, 1 on a start-up failure, 2 on a usage error.
 */
#include "mef.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define SHUTDOWN_GRACE_S 2

size_t mef_erase_expired(mef *m, const m2mhsm_record *ke, const char *where)
{
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_erase_expired(m->store.ks, ke, &n);
    if (st != M2MHSM_OK)
        app_log(APP_ERROR, "erase-failed", "ke_id=%s error=%s", ke->identity, app_error(st));
    app_log(APP_INFO, "erased", "ke_id=%s enrolee_id=%s records=%zu reason=expired at=%s",
            ke->identity, ke->enrolee_id, n, where);
    return n;
}

/* Expired enrolments go even if nobody asks for them again (the CR). */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mef *m = arg;
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_sweep(m->store.ks, &n);
    if (st != M2MHSM_OK)
        app_log(APP_ERROR, "sweep-failed", "error=%s", app_error(st));
    else if (n > 0)
        app_log(APP_INFO, "erased", "records=%zu reason=expired at=sweep", n);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    mef *m = arg;
    app_log(APP_INFO, "stopping", "signal=%s open_connections=%zu", strsignal((int)sig),
            m->conns != NULL ? app_conns_count(m->conns) : 0);
    mef_bootstrap_stop(m);
    mef_fetch_stop(m);
    app_conns_drain(m->base, m->conns, SHUTDOWN_GRACE_S);
}

static int start(mef *m)
{
    struct timeval every = {m->cfg.sweep_interval_s, 0};
    /* Two pools of connections (bootstrap, HTTPS), each capped at max_connections. */
    m->cfg.max_connections = app_fd_budget(m->cfg.max_connections, 2);
    if (app_store_open(json_object_get(m->root, "pkcs11"), &m->store) != 0 ||
        mef_config_apply_enrolees(m) != 0 || (m->base = event_base_new()) == NULL ||
        mef_bootstrap_start(m) != 0 || (m->cfg.https != NULL && mef_fetch_start(m) != 0))
        return -1;
    m->sweep_ev = event_new(m->base, -1, EV_PERSIST, on_sweep, m);
    return m->sweep_ev != NULL && event_add(m->sweep_ev, &every) == 0 ? 0 : -1;
}

static void stop(mef *m, struct event **sigs, size_t nsigs)
{
    for (size_t i = 0; i < nsigs; i++)
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    mef_bootstrap_stop(m);
    mef_fetch_stop(m);
    app_conns_free(m->conns);
    if (m->sweep_ev != NULL)
        event_free(m->sweep_ev);
    SSL_CTX_free(m->psk_tls);
    SSL_CTX_free(m->psk_dtls);
    SSL_CTX_free(m->https_ctx);
    if (m->base != NULL)
        event_base_free(m->base);
    app_store_close(&m->store);
    app_certkey_cleanup();
    json_decref(m->root);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (o != 'c') {
            fputs("usage: m2m-mef --config FILE   (docs/configuration.md)\n",
                  o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
        config = optarg;
    }
    if (config == NULL || optind != argc) {
        fputs("usage: m2m-mef --config FILE   (docs/configuration.md)\n", stderr);
        return 2;
    }
    app_log_init("m2m-mef");
    app_json_cleansing_alloc();
    signal(SIGPIPE, SIG_IGN);
    mef m = {.dtls_fd = -1};
    struct event *sigs[2] = {NULL, NULL};
    int rc = mef_config_load(&m, config) != 0 || start(&m) != 0;
    if (rc == 0) {
        sigs[0] = evsignal_new(m.base, SIGTERM, on_signal, &m);
        sigs[1] = evsignal_new(m.base, SIGINT, on_signal, &m);
        rc = sigs[0] == NULL || sigs[1] == NULL || event_add(sigs[0], NULL) != 0 ||
             event_add(sigs[1], NULL) != 0;
    }
    if (rc == 0) {
        app_log(APP_INFO, "ready", "mef_fqdn=%s", m.cfg.fqdn);
        event_base_dispatch(m.base);
        app_log(APP_INFO, "stopped", "open_connections=%zu",
                m.conns != NULL ? app_conns_count(m.conns) : 0);
    } else {
        app_log(APP_ERROR, "start-failed", "config=%s", config);
    }
    stop(&m, sigs, 2);
    return rc == 0 ? 0 : 1;
}
