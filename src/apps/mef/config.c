/* The MEF's configuration file (docs/configuration.md) and its Bootstrap Instruction
 * Configuration per KpmID (TS-0003 tables 9.2.2.3-1/-2): target, Enrolee-ID, Enrolment
 * Expiry. The token holds the applied configuration; the file is its source. */
#include "mef.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const top_fields[] = {"pkcs11", "tls_key_pkcs11", "mef", "enrolees", NULL};
static const char *const mef_fields[] = {
    "fqdn", "bootstrap_tls", "bootstrap_dtls", "https",           "certificate", "key_label",
    "ca",   "tls13",         "sweep_interval", "max_connections", "metrics",     NULL};
static const char *const enrolee_fields[] = {"kpm_id", "enrolee_id", "enrolment_target",
                                             "enrolment_expiry", NULL};

/* One entry of "enrolees". */
static int check_enrolee(const char *path, size_t i, const json_t *e)
{
    const char *kpm_id = NULL, *target = NULL, *enrolee = NULL, *expiry = NULL;
    char where[32];
    m2mhsm_expiry_spec spec;
    snprintf(where, sizeof(where), "enrolees[%zu]", i);
    if (!json_is_object(e)) {
        fprintf(stderr, "config %s: %s: must be an object\n", path, where);
        return -1;
    }
    if (app_cfg_known(e, path, where, enrolee_fields) != 0 ||
        app_cfg_str(e, where, "kpm_id", 1, &kpm_id) != 0 ||
        app_cfg_str(e, where, "enrolment_target", 1, &target) != 0 ||
        app_cfg_str(e, where, "enrolee_id", 1, &enrolee) != 0 ||
        app_cfg_str(e, where, "enrolment_expiry", 1, &expiry) != 0)
        return -1;
    if (m2mhsm_id_check_str(M2MHSM_ID_KPM, kpm_id) != M2MHSM_OK ||
        m2mhsm_id_check_str(M2MHSM_ID_TARGET, target) != M2MHSM_OK ||
        m2mhsm_id_check_str(M2MHSM_ID_M2M_ABS, enrolee) != M2MHSM_OK ||
        m2mhsm_expiry_spec_parse(expiry, &spec) != M2MHSM_OK) {
        fprintf(stderr, "config %s: %s: %s\n", path, where, m2mhsm_last_error());
        return -1;
    }
    return 0;
}

/* Every entry is checked before the token is opened: a bad entry, or an Enrolee listed twice
 * (which of its two configurations would hold?), must not leave the entries before it
 * applied. */
static int check_enrolees(const char *path, const json_t *list)
{
    if (list == NULL)
        return 0;
    if (!json_is_array(list)) {
        fprintf(stderr, "config %s: enrolees: must be an array\n", path);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++)
        if (check_enrolee(path, i, json_array_get(list, i)) != 0)
            return -1;
    return app_cfg_unique(list, path, "enrolees", "kpm_id");
}

int mef_config_load(mef *m, const char *path)
{
    mef_config *c = &m->cfg;
    if ((m->root = app_config_load(path)) == NULL)
        return -1;
    const json_t *sec = json_object_get(m->root, "mef");
    const json_t *pkcs11 = json_object_get(m->root, "pkcs11");
    const json_t *tls_key = json_object_get(m->root, "tls_key_pkcs11");
    if (!json_is_object(sec)) {
        fprintf(stderr, "config %s: \"mef\" section missing\n", path);
        return -1;
    }
    if (app_cfg_known(m->root, path, "", top_fields) != 0 ||
        app_cfg_known(sec, path, "mef", mef_fields) != 0 ||
        (json_is_object(pkcs11) && app_cfg_known(pkcs11, path, "pkcs11", app_pkcs11_fields) != 0) ||
        (json_is_object(tls_key) &&
         app_cfg_known(tls_key, path, "tls_key_pkcs11", app_tls_key_fields) != 0) ||
        check_enrolees(path, json_object_get(m->root, "enrolees")) != 0)
        return -1;
    c->ck.tls_key_pkcs11 = json_is_object(tls_key) ? tls_key : NULL;
    c->sweep_interval_s = 60;
    c->max_connections = 4096;
    if (app_cfg_str(sec, "mef", "fqdn", 1, &c->fqdn) != 0 ||
        app_cfg_addr(sec, "mef", "bootstrap_tls", 0, &c->bootstrap_tls) != 0 ||
        app_cfg_addr(sec, "mef", "bootstrap_dtls", 0, &c->bootstrap_dtls) != 0 ||
        app_cfg_addr(sec, "mef", "https", 0, &c->https) != 0 ||
        app_cfg_addr(sec, "mef", "metrics", 0, &c->metrics) != 0 ||
        app_cfg_bool(sec, "mef", "tls13", &c->tls13) != 0 ||
        app_cfg_int(sec, "mef", "sweep_interval", 1, 86400, &c->sweep_interval_s) != 0 ||
        app_cfg_int(sec, "mef", "max_connections", 1, 1000000, &c->max_connections) != 0)
        return -1;
    if (m2mhsm_id_check_str(M2MHSM_ID_FQDN, c->fqdn) != M2MHSM_OK) {
        fprintf(stderr, "config: mef.fqdn: %s\n", m2mhsm_last_error());
        return -1;
    }
    if (c->https != NULL && (app_cfg_str(sec, "mef", "certificate", 1, &c->ck.certificate) != 0 ||
                             app_cfg_str(sec, "mef", "key_label", 1, &c->ck.key_label) != 0 ||
                             app_cfg_str(sec, "mef", "ca", 1, &c->ck.ca) != 0))
        return -1;
    if (c->bootstrap_tls == NULL && c->bootstrap_dtls == NULL && c->https == NULL) {
        fputs("config: mef: nothing to serve (bootstrap_tls, bootstrap_dtls, https)\n", stderr);
        return -1;
    }
    return 0;
}

/* 1 if the token already holds exactly this configuration for kpm_id (held: one listing
 * of the token, so that N entries cost one scan rather than N searches). */
static int unchanged(const m2mhsm_record *held, size_t nheld, const char *kpm_id,
                     const char *target, const char *enrolee, const m2mhsm_expiry_spec *spec)
{
    for (size_t i = 0; i < nheld; i++) {
        const m2mhsm_record *r = &held[i];
        if (r->kind == M2MHSM_KIND_ENROLMENT && strcmp(r->identity, kpm_id) == 0)
            return strcmp(r->target_id, target) == 0 && strcmp(r->enrolee_id, enrolee) == 0 &&
                   r->enrolment_expiry.kind == spec->kind &&
                   r->enrolment_expiry.value == spec->value;
    }
    return 0;
}

int mef_enrolee_parse(const json_t *e, size_t i, mef_enrolee *out)
{
    char where[32];
    snprintf(where, sizeof(where), "enrolees[%zu]", i);
    memset(out, 0, sizeof(*out));
    if (!json_is_object(e) || app_cfg_str(e, where, "kpm_id", 1, &out->kpm_id) != 0 ||
        app_cfg_str(e, where, "enrolment_target", 1, &out->target) != 0 ||
        app_cfg_str(e, where, "enrolee_id", 1, &out->enrolee_id) != 0 ||
        app_cfg_str(e, where, "enrolment_expiry", 1, &out->expiry) != 0)
        return -1;
    if (m2mhsm_expiry_spec_parse(out->expiry, &out->spec) != M2MHSM_OK) {
        fprintf(stderr, "config: %s: %s\n", where, m2mhsm_last_error());
        return -1;
    }
    return 0;
}

int mef_config_enrolees(const mef *m, mef_enrolee **out, size_t *n)
{
    const json_t *list = json_object_get(m->reloaded != NULL ? m->reloaded : m->root, "enrolees");
    *out = NULL;
    *n = 0;
    if (list == NULL)
        return 0;
    if (!json_is_array(list)) {
        fputs("config: enrolees: must be an array\n", stderr);
        return -1;
    }
    if (json_array_size(list) == 0)
        return 0;
    mef_enrolee *all = calloc(json_array_size(list), sizeof(*all));
    if (all == NULL) {
        fputs("config: enrolees: out of memory\n", stderr);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++)
        if (mef_enrolee_parse(json_array_get(list, i), i, &all[i]) != 0) {
            free(all);
            return -1;
        }
    *out = all;
    *n = json_array_size(list);
    return 0;
}

static int held_config(const m2mhsm_record *held, size_t nheld, const char *kpm_id)
{
    for (size_t i = 0; i < nheld; i++)
        if (held[i].kind == M2MHSM_KIND_ENROLMENT && strcmp(held[i].identity, kpm_id) == 0)
            return 1;
    return 0;
}

/* Take an Enrolee's configuration, Ke and what derives from them off the token. */
static size_t revoke(mef *m, const char *kpm_id)
{
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_revoke_enrolee(m->store.ks, kpm_id, 0, &n);
    if (st != M2MHSM_OK && st != M2MHSM_E_NOT_FOUND)
        app_log(APP_ERROR, "erase-failed", "kpm_id=%s error=%s", kpm_id, app_error(st));
    return n;
}

/* An absolute Enrolment Expiry already past: that Enrolee cannot enrol (the token refuses
 * to store such a configuration, and one stored earlier must not stay in force), but the
 * MEF serves every other one. */
static int expired_config(mef *m, const m2mhsm_record *held, size_t nheld, const mef_enrolee *c,
                          const char *at)
{
    if (c->spec.kind != M2MHSM_EXPIRY_ABSOLUTE ||
        m2mhsm_expiry_is_valid(c->spec.value, m2mhsm_keystore_now(m->store.ks)))
        return 0;
    size_t n = held_config(held, nheld, c->kpm_id) ? revoke(m, c->kpm_id) : 0;
    app_log(APP_WARN, "enrolee-expired-config",
            "kpm_id=%s enrolee_id=%s enrolment_expiry=%s erased=%zu at=%s", c->kpm_id,
            c->enrolee_id, c->expiry, n, at);
    return 1;
}

static int apply_one(mef *m, const m2mhsm_record *held, size_t nheld, size_t i,
                     const mef_enrolee *c, const char *at)
{
    if (expired_config(m, held, nheld, c, at) ||
        unchanged(held, nheld, c->kpm_id, c->target, c->enrolee_id, &c->spec))
        return 0;
    m2mhsm_status st =
        APP_TOKEN("configure", m2mhsm_keystore_configure_enrolee(m->store.ks, c->kpm_id, c->target,
                                                                 c->enrolee_id, &c->spec));
    if (st != M2MHSM_OK) {
        fprintf(stderr, "config: enrolees[%zu]: %s\n", i, m2mhsm_last_error());
        return -1;
    }
    app_log(APP_INFO, "configured", "kpm_id=%s enrolee_id=%s target=%s enrolment_expiry=%s",
            c->kpm_id, c->enrolee_id, c->target, c->expiry);
    return 0;
}

static int listed(const mef_enrolee *list, size_t n, const char *kpm_id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].kpm_id, kpm_id) == 0)
            return 1;
    return 0;
}

/* The file is the whole list: an Enrolee configured on the token but no longer in it is
 * revoked, so that it can neither enrol nor have its keys delivered. */
static void revoke_unlisted(mef *m, const m2mhsm_record *held, size_t nheld,
                            const mef_enrolee *list, size_t n, const char *at)
{
    for (size_t i = 0; i < nheld; i++) {
        const m2mhsm_record *r = &held[i];
        if (r->kind != M2MHSM_KIND_ENROLMENT || listed(list, n, r->identity))
            continue;
        size_t erased = revoke(m, r->identity);
        app_log(APP_INFO, "revoked", "kpm_id=%s enrolee_id=%s records=%zu at=%s", r->identity,
                r->enrolee_id, erased, at);
    }
}

/* Every entry is checked before any is applied: a mistake in one changes nothing. */
int mef_config_apply_enrolees(mef *m, const char *at)
{
    mef_enrolee *list = NULL;
    size_t n = 0;
    int managed = json_object_get(m->reloaded != NULL ? m->reloaded : m->root, "enrolees") != NULL;
    if (mef_config_enrolees(m, &list, &n) != 0)
        return -1;
    if (n == 0 && !managed)
        return 0;
    m2mhsm_record *held = NULL;
    size_t nheld = 0;
    m2mhsm_status st = APP_TOKEN("list", m2mhsm_keystore_list(m->store.ks, &held, &nheld));
    if (st != M2MHSM_OK) {
        fprintf(stderr, "config: enrolees: cannot list the token: %s\n", m2mhsm_last_error());
        free(list);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_one(m, held, nheld, i, &list[i], at);
    if (rc == 0)
        revoke_unlisted(m, held, nheld, list, n, at);
    free(held);
    free(list);
    return rc;
}

/* Applied at a reload: enrolees and sweep_interval. The listeners, the certificate and the
 * token are set up once, at start. */
static const char *const restart_fields[] = {
    "fqdn", "bootstrap_tls", "bootstrap_dtls",  "https", "metrics", "certificate", "key_label",
    "ca",   "tls13",         "max_connections", NULL};

int mef_config_reload(mef *m, const char *path, long long *sweep_interval_s)
{
    mef next = {0};
    char restart[256] = "";
    if (mef_config_load(&next, path) != 0) {
        json_decref(next.root);
        return -1;
    }
    app_cfg_restart_fields(m->root, next.root, "mef", restart_fields, restart, sizeof(restart));
    app_cfg_restart_fields(m->root, next.root, "pkcs11", NULL, restart, sizeof(restart));
    app_cfg_restart_fields(m->root, next.root, "tls_key_pkcs11", NULL, restart, sizeof(restart));
    if (restart[0] != '\0')
        app_log(APP_WARN, "restart-needed", "config=%s fields=%s", path, restart);
    json_decref(m->reloaded);
    m->reloaded = next.root;
    m->cfg.sweep_interval_s = next.cfg.sweep_interval_s;
    *sweep_interval_s = next.cfg.sweep_interval_s;
    return mef_config_apply_enrolees(m, "reload");
}
