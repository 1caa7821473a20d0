/* The MAF's configuration file (docs/configuration.md): its own section and the MEFs it
 * fetches Km from, each MEF's address resolved here, once, before the event loop runs. */
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

static const char *const top_fields[] = {"pkcs11", "tls_key_pkcs11", "maf", "mefs", NULL};
static const char *const maf_fields[] = {
    "maf_id",        "listen", "listen_dtls",  "metrics",        "tls13",           "certificate",
    "key_label",     "ca",     "max_lifetime", "sweep_interval", "max_connections", "max_fetches",
    "fetch_timeout", NULL};
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
    if ((m->root = app_config_load(path)) == NULL)
        return -1;
    const json_t *sec = json_object_get(m->root, "maf"), *mefs = json_object_get(m->root, "mefs");
    const json_t *pkcs11 = json_object_get(m->root, "pkcs11");
    const json_t *tls_key = json_object_get(m->root, "tls_key_pkcs11");
    if (!json_is_object(sec) || !json_is_array(mefs) || json_array_size(mefs) == 0 ||
        json_array_size(mefs) > MAF_MAX_MEFS) {
        fprintf(stderr, "config %s: needs a \"maf\" section and 1 to %d \"mefs\"\n", path,
                MAF_MAX_MEFS);
        return -1;
    }
    if (app_cfg_known(m->root, path, "", top_fields) != 0 ||
        app_cfg_known(sec, path, "maf", maf_fields) != 0 ||
        (json_is_object(pkcs11) && app_cfg_known(pkcs11, path, "pkcs11", app_pkcs11_fields) != 0) ||
        (json_is_object(tls_key) &&
         app_cfg_known(tls_key, path, "tls_key_pkcs11", app_tls_key_fields) != 0) ||
        /* a MEF listed twice: which entry would a KeID select? */
        app_cfg_unique(mefs, path, "mefs", "fqdn") != 0)
        return -1;
    c->sweep_interval_s = 60;
    c->max_connections = 4096;
    c->max_fetches = 64;
    c->fetch_timeout_s = 5;
    if (app_cfg_str(sec, "maf", "maf_id", 1, &c->maf_id) != 0 ||
        app_cfg_addr(sec, "maf", "listen", 1, &c->listen) != 0 ||
        app_cfg_addr(sec, "maf", "metrics", 0, &c->metrics) != 0 ||
        app_cfg_addr(sec, "maf", "listen_dtls", 0, &c->listen_dtls) != 0 ||
        app_cfg_bool(sec, "maf", "tls13", &c->tls13) != 0 ||
        app_cfg_str(sec, "maf", "certificate", 1, &c->ck.certificate) != 0 ||
        app_cfg_str(sec, "maf", "key_label", 1, &c->ck.key_label) != 0 ||
        app_cfg_str(sec, "maf", "ca", 1, &c->ck.ca) != 0 ||
        app_cfg_int(sec, "maf", "max_lifetime", 0, M2MHSM_MAX_DURATION, &c->max_lifetime_s) != 0 ||
        app_cfg_int(sec, "maf", "sweep_interval", 1, 86400, &c->sweep_interval_s) != 0 ||
        app_cfg_int(sec, "maf", "max_connections", 1, 1000000, &c->max_connections) != 0 ||
        app_cfg_int(sec, "maf", "max_fetches", 1, 100000, &c->max_fetches) != 0 ||
        app_cfg_int(sec, "maf", "fetch_timeout", 1, 300, &c->fetch_timeout_s) != 0)
        return -1;
    if (m2mhsm_id_check_str(M2MHSM_ID_FQDN, c->maf_id) != M2MHSM_OK) {
        fprintf(stderr, "config: maf.maf_id: %s\n", m2mhsm_last_error());
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
static const char *const restart_fields[] = {
    "maf_id",    "listen", "listen_dtls",     "metrics",     "tls13", "certificate",
    "key_label", "ca",     "max_connections", "max_fetches", NULL};

int maf_config_reload(maf *m, const char *path, long long *sweep_interval_s)
{
    maf *next = calloc(1, sizeof(*next));
    char restart[256] = "";
    if (next == NULL) {
        fputs("reload: out of memory\n", stderr);
        return -1;
    }
    int rc = maf_config_load(next, path);
    if (rc == 0) {
        maf_config *c = &m->cfg;
        const maf_config *n = &next->cfg;
        app_cfg_restart_fields(m->root, next->root, "maf", restart_fields, restart,
                               sizeof(restart));
        app_cfg_restart_fields(m->root, next->root, "pkcs11", NULL, restart, sizeof(restart));
        app_cfg_restart_fields(m->root, next->root, "tls_key_pkcs11", NULL, restart,
                               sizeof(restart));
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
