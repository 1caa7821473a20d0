/*
 * The program of an Enrolment Target, in either role: m2m-maf (a MAF, Km) or m2m-eb (an
 * Enrolee B, Kpsa). Usage: m2m-maf|m2m-eb --config FILE
 * Serves Enrolees over (D)TLS-PSK until SIGTERM/SIGINT; every key lives in the token, so a
 * restart (or a second process on the same token) loses nothing.
 * Exit status: 0 after a clean shutdown, 1 on a start-up failure, 2 on a usage error.
 */
#include "maf.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static void stop_serving(void *arg)
{
    maf *m = arg;
    maf_fetch_stop(m);
    maf_serve_stop(m);
}

static int start(maf *m)
{
    /* Enrolee connections, plus one per fetch in flight. */
    m->cfg.max_connections =
        app_fd_budget(m->cfg.max_connections + m->cfg.max_fetches, 1) - m->cfg.max_fetches;
    if (m->cfg.max_connections < 1)
        m->cfg.max_connections = 1;
    /* A Km (Kpsa) serves the handshakes only: their forms, no raw key (nothing derives from
     * it), so a device costs the token one key per protocol besides its metadata. */
    unsigned forms = M2MHSM_FORMS_TLS12 | (m->cfg.tls13 ? M2MHSM_FORMS_TLS13 : 0);
    if (app_store_open(json_object_get(m->root, "pkcs11"), forms, &m->store) != 0 ||
        (m->base = event_base_new()) == NULL || maf_fetch_init(m) != 0 || maf_serve_start(m) != 0 ||
        app_conns_watch(m->conns, m->store.ks) != 0)
        return -1;
    return 0;
}

static int reload(void *arg, long long *sweep_interval_s)
{
    maf *m = arg;
    return maf_config_reload(m, m->config_path, sweep_interval_s);
}

static void stop(maf *m)
{
    maf_fetch_stop(m);
    maf_serve_stop(m);
    app_conns_free(m->conns);
    maf_fetch_free(m);
    SSL_CTX_free(m->psk_ctx);
    SSL_CTX_free(m->psk_dtls);
    SSL_CTX_free(m->mef_ctx);
    if (m->base != NULL)
        event_base_free(m->base);
    app_store_close(&m->store);
    app_certkey_cleanup();
    json_decref(m->root);
}

int maf_main(int argc, char **argv, const maf_role *role)
{
    const char *config;
    int rc = app_service_args(argc, argv, role->program, &config);
    if (rc >= 0)
        return rc;
    app_log_init(role->program);
    app_json_cleansing_alloc();
    signal(SIGPIPE, SIG_IGN);
    maf m = {.role = role, .config_path = config};
    rc = app_metrics_init(0) != 0 || maf_config_load(&m, config) != 0 || start(&m) != 0;
    if (rc == 0) {
        char ready[M2MHSM_M2M_ID_MAX + 32];
        app_service svc = {.base = m.base,
                           .ks = m.store.ks,
                           .sweep_interval_s = m.cfg.sweep_interval_s,
                           .conns = m.conns,
                           .stop = stop_serving,
                           .arg = &m,
                           .metrics = m.cfg.metrics,
                           .reload = reload,
                           .config = config};
        snprintf(ready, sizeof(ready), "%s=%s", role->id_field, m.cfg.target_id);
        rc = app_service_run(&svc, ready) != 0;
    }
    if (rc != 0)
        app_log(APP_ERROR, "start-failed", "config=%s", config);
    stop(&m);
    app_metrics_cleanup();
    return rc == 0 ? 0 : 1;
}
