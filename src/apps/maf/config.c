/* The MAF's or Enrolee B's configuration file (docs/configuration.md): its own section
 * ("maf" or "enrolee_b", the same fields but for its identity) and the MEFs it fetches Km
 * or Kpsa from, each MEF's address resolved here, once, before the event loop runs. */
#include "maf.h"

#include <event2/http.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The MEF's address, resolved once at start: a lookup on the event loop would block every
 * connection (libevent resolves synchronously without an evdns base). */
static int resolve(const char *where, const char *host, char *out, size_t cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc == 0)
        rc = getnameinfo(ai->ai_addr, ai->ai_addrlen, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST);
    if (ai != NULL)
        freeaddrinfo(ai);
    if (rc != 0)
        fprintf(stderr, "config: %s: cannot resolve %s: %s\n", where, host, gai_strerror(rc));
    return rc == 0 ? 0 : -1;
}

const maf_role maf_role_maf = {"m2m-maf", "maf", "maf_id", M2MHSM_ID_FQDN, M2MHSM_KIND_KM, "21"};
const maf_role maf_role_enrolee_b = {"m2m-eb",          "enrolee_b",      "enrolee_b_id",
                                     M2MHSM_ID_M2M_ABS, M2MHSM_KIND_KPSA, "22"};

static const char *const mef_fields[] = {"fqdn", "url", NULL};

static int load_mef(maf *m, const char *file, size_t i, const json_t *e)
{
    const char *fqdn = NULL, *url = NULL;
    char where[16];
    snprintf(where, sizeof(where), "mefs[%zu]", i);
    if (!json_is_object(e)) {
        fprintf(stderr, "config %s: %s: must be an object\n", file, where);
        return -1;
    }
    if (app_cfg_known(e, file, where, mef_fields) != 0 ||
        app_cfg_str(e, where, "fqdn", 1, &fqdn) != 0 || app_cfg_str(e, where, "url", 1, &url) != 0)
        return -1;
    char url_where[24];
    unsigned port = 443;
    snprintf(url_where, sizeof(url_where), "%s.url", where);
    if (app_url_port(url_where, url, &port) < 0)
        return -1;
    struct evhttp_uri *u = evhttp_uri_parse(url);
    const char *scheme = u != NULL ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u != NULL ? evhttp_uri_get_host(u) : NULL;
    const char *path = u != NULL ? evhttp_uri_get_path(u) : NULL;
    maf_mef *mef = &m->cfg.mefs[i];
    /* The request path is fixed (/fetchCredentials/...): a URL path would be ignored. */
    int ok = scheme != NULL && strcmp(scheme, "https") == 0 && host != NULL &&
             (path == NULL || strcmp(path, "") == 0 || strcmp(path, "/") == 0) &&
             evhttp_uri_get_query(u) == NULL && strlen(fqdn) < sizeof(mef->fqdn) &&
             m2mhsm_id_check_str(M2MHSM_ID_FQDN, fqdn) == M2MHSM_OK;
    if (ok) {
        strcpy(mef->fqdn, fqdn);
        mef->port = (int)port;
        ok = resolve(where, host, mef->host, sizeof(mef->host)) == 0;
    } else {
        fprintf(stderr, "config: %s: needs a lower-case fqdn and an https://host[:port] url\n",
                where);
    }
    if (u != NULL) /* libevent 2.1's evhttp_uri_free does not take NULL */
        evhttp_uri_free(u);
    return ok ? 0 : -1;
}

int maf_config_load(maf *m, const char *path)
{
    maf_config *c = &m->cfg;
    const char *s = m->role->section;
    const char *const top_fields[] = {"pkcs11", s, "mefs", NULL};
    /* The same fields in either role's section, but for its identity's name. */
    const char *const fields[] = {m->role->id_field, "listen",
                                  "listen_dtls",     "metrics",
                                  "tls13",           "certificate",
                                  "key_label",       "ca",
                                  "max_lifetime",    "sweep_interval",
                                  "max_connections", "max_fetches",
                                  "fetch_timeout",   NULL};
    if ((m->root = app_config_load(path)) == NULL)
        return -1;
    const json_t *sec = json_object_get(m->root, s), *mefs = json_object_get(m->root, "mefs");
    const json_t *pkcs11 = json_object_get(m->root, "pkcs11");
    if (!json_is_object(sec) || !json_is_array(mefs) || json_array_size(mefs) == 0 ||
        json_array_size(mefs) > MAF_MAX_MEFS) {
        fprintf(stderr, "config %s: needs a \"%s\" section and 1 to %d \"mefs\"\n", path, s,
                MAF_MAX_MEFS);
        return -1;
    }
    if (app_cfg_known(m->root, path, "", top_fields) != 0 ||
        app_cfg_known(sec, path, s, fields) != 0 ||
        (json_is_object(pkcs11) && app_cfg_known(pkcs11, path, "pkcs11", app_pkcs11_fields) != 0) ||
        /* a MEF listed twice: which entry would a KeID select? */
        app_cfg_unique(mefs, path, "mefs", "fqdn") != 0)
        return -1;
    c->sweep_interval_s = 60;
    c->max_connections = 4096;
    c->max_fetches = 64;
    c->fetch_timeout_s = 5;
    if (app_cfg_str(sec, s, m->role->id_field, 1, &c->target_id) != 0 ||
        app_cfg_addr(sec, s, "listen", 1, &c->listen) != 0 ||
        app_cfg_addr(sec, s, "metrics", 0, &c->metrics) != 0 ||
        app_cfg_addr(sec, s, "listen_dtls", 0, &c->listen_dtls) != 0 ||
        app_cfg_bool(sec, s, "tls13", &c->tls13) != 0 ||
        app_cfg_str(sec, s, "certificate", 1, &c->ck.certificate) != 0 ||
        app_cfg_str(sec, s, "key_label", 1, &c->ck.key_label) != 0 ||
        app_cfg_str(sec, s, "ca", 1, &c->ck.ca) != 0 ||
        app_cfg_int(sec, s, "max_lifetime", 0, M2MHSM_MAX_DURATION, &c->max_lifetime_s) != 0 ||
        app_cfg_int(sec, s, "sweep_interval", 1, 86400, &c->sweep_interval_s) != 0 ||
        app_cfg_int(sec, s, "max_connections", 1, 1000000, &c->max_connections) != 0 ||
        app_cfg_int(sec, s, "max_fetches", 1, 100000, &c->max_fetches) != 0 ||
        app_cfg_int(sec, s, "fetch_timeout", 1, 300, &c->fetch_timeout_s) != 0)
        return -1;
    /* An Enrolee B-ID in absolute form (the TS-0003 notes' decision): its host is what the
     * MEF checks against this service's certificate. */
    if (m2mhsm_id_check_str(m->role->id_type, c->target_id) != M2MHSM_OK) {
        fprintf(stderr, "config: %s.%s: %s\n", s, m->role->id_field, m2mhsm_last_error());
        return -1;
    }
    for (c->nmefs = 0; c->nmefs < json_array_size(mefs); c->nmefs++)
        if (load_mef(m, path, c->nmefs, json_array_get(mefs, c->nmefs)) != 0)
            return -1;
    return 0;
}

/* Applied at a reload: max_lifetime, fetch_timeout, sweep_interval, mefs. The listener, the
 * certificate and the token are set up once, and the connection caps are sized against the
 * descriptor limit, at start. */
int maf_config_reload(maf *m, const char *path, long long *sweep_interval_s)
{
    maf *next = calloc(1, sizeof(*next));
    char restart[256] = "";
    const char *const restart_fields[] = {
        m->role->id_field, "listen", "listen_dtls",     "metrics",     "tls13", "certificate",
        "key_label",       "ca",     "max_connections", "max_fetches", NULL};
    if (next == NULL) {
        fputs("reload: out of memory\n", stderr);
        return -1;
    }
    next->role = m->role;
    int rc = maf_config_load(next, path);
    if (rc == 0) {
        maf_config *c = &m->cfg;
        const maf_config *n = &next->cfg;
        app_cfg_restart_fields(m->root, next->root, m->role->section, restart_fields, restart,
                               sizeof(restart));
        app_cfg_restart_fields(m->root, next->root, "pkcs11", NULL, restart, sizeof(restart));
        if (restart[0] != '\0')
            app_log(APP_WARN, "restart-needed", "config=%s fields=%s", path, restart);
        c->max_lifetime_s = n->max_lifetime_s;
        c->fetch_timeout_s = n->fetch_timeout_s;
        c->sweep_interval_s = n->sweep_interval_s;
        memcpy(c->mefs, n->mefs, sizeof(c->mefs));
        c->nmefs = n->nmefs;
        *sweep_interval_s = n->sweep_interval_s;
        app_log(APP_INFO, "reconfigured", "max_lifetime=%lld fetch_timeout=%lld mefs=%zu",
                c->max_lifetime_s, c->fetch_timeout_s, c->nmefs);
    }
    json_decref(next->root);
    free(next);
    return rc;
}
