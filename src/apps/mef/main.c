/*
 * m2m-mef — the M2M Enrolment Function. Usage: m2m-mef --config FILE
 * Serves the bootstrap (D)TLS-PSK handshake and /fetchCredentials until SIGTERM/SIGINT.
 * Exit status: 0 after a clean shutdown, 1 on a start-up failure, 2 on a usage error.
 */
#include "mef.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

size_t mef_erase_expired(mef *m, const m2mhsm_record *ke, const char *where)
{
    size_t n = 0;
    m2mhsm_status st = APP_TOKEN("erase", m2mhsm_keystore_erase_expired(m->store.ks, ke, &n));
    if (st != M2MHSM_OK)
        app_log(APP_ERROR, "erase-failed", "ke_id=%s error=%s", ke->identity, app_error(st));
    app_log(APP_INFO, "erased", "ke_id=%s enrolee_id=%s records=%zu reason=expired at=%s",
            ke->identity, ke->enrolee_id, n, where);
    return n;
}

static void stop_serving(void *arg)
{
    mef *m = arg;
    mef_bootstrap_stop(m);
    mef_fetch_stop(m);
}

static int start(mef *m)
{
    /* Two pools of connections (bootstrap, HTTPS), each capped at max_connections. */
    m->cfg.max_connections = app_fd_budget(m->cfg.max_connections, 2);
    if (app_store_open(json_object_get(m->root, "pkcs11"), 0, &m->store) != 0 ||
        mef_config_apply_enrolees(m, "start") != 0 || (m->base = event_base_new()) == NULL ||
        mef_bootstrap_start(m) != 0 || app_conns_watch(m->conns, m->store.ks) != 0 ||
        (m->cfg.https != NULL && mef_fetch_start(m) != 0))
        return -1;
    return 0;
}

static int reload(void *arg, long long *sweep_interval_s)
{
    mef *m = arg;
    return mef_config_reload(m, m->config_path, sweep_interval_s);
}

static void stop(mef *m)
{
    mef_bootstrap_stop(m);
    mef_fetch_stop(m);
    app_conns_free(m->conns);
    SSL_CTX_free(m->psk_tls);
    SSL_CTX_free(m->psk_dtls);
    SSL_CTX_free(m->https_ctx);
    if (m->base != NULL)
        event_base_free(m->base);
    app_store_close(&m->store);
    app_certkey_cleanup();
    json_decref(m->reloaded);
    json_decref(m->root);
}

int main(int argc, char **argv)
{
    const char *config;
    int rc = app_service_args(argc, argv, "m2m-mef", &config);
    if (rc >= 0)
        return rc;
    app_log_init("m2m-mef");
    app_json_cleansing_alloc();
    signal(SIGPIPE, SIG_IGN);
    mef m = {.config_path = config};
    rc = app_metrics_init(1) != 0 || mef_config_load(&m, config) != 0 || start(&m) != 0;
    if (rc == 0) {
        char ready[M2MHSM_FQDN_MAX + 16];
        app_service svc = {.base = m.base,
                           .ks = m.store.ks,
                           .sweep_interval_s = m.cfg.sweep_interval_s,
                           .conns = m.conns,
                           .stop = stop_serving,
                           .arg = &m,
                           .metrics = m.cfg.metrics,
                           .reload = reload,
                           .config = config};
        snprintf(ready, sizeof(ready), "mef_fqdn=%s", m.cfg.fqdn);
        rc = app_service_run(&svc, ready) != 0;
    }
    if (rc != 0)
        app_log(APP_ERROR, "start-failed", "config=%s", config);
    stop(&m);
    app_metrics_cleanup();
    return rc == 0 ? 0 : 1;
}
