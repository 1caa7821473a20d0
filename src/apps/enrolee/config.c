/* The Enrolee's configuration file (docs/configuration.md): its Bootstrap Instruction
 * Configuration and where to reach the MEF and the Enrolment Target. */
#include "enrolee.h"

#include <event2/http.h>
#include <stdio.h>
#include <string.h>

/* "tls://host:port", "tls13://host:port" or (where dtls is asked) "dtls://host:port", with
 * evhttp's URI parser. */
static int parse_uri(const char *key, const char *uri, char *hostport, size_t cap, int *dtls,
                     int *tls13)
{
    char where[32];
    unsigned port = 0;
    snprintf(where, sizeof(where), "enrolee.%s", key);
    if (app_url_port(where, uri, &port) < 0)
        return -1;
    struct evhttp_uri *u = evhttp_uri_parse(uri);
    const char *scheme = u != NULL ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u != NULL ? evhttp_uri_get_host(u) : NULL;
    int ok = scheme != NULL && host != NULL && port > 0 &&
             (strcmp(scheme, "tls") == 0 || (dtls != NULL && strcmp(scheme, "dtls") == 0) ||
              (tls13 != NULL && strcmp(scheme, "tls13") == 0));
    if (ok) {
        snprintf(hostport, cap, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host, port);
        if (dtls != NULL)
            *dtls = strcmp(scheme, "dtls") == 0;
        if (tls13 != NULL)
            *tls13 = strcmp(scheme, "tls13") == 0;
    } else {
        fprintf(stderr, "config: enrolee.%s: expected %s://host:port\n", key,
                dtls != NULL ? "tls|tls13|dtls" : "tls|tls13");
    }
    if (u != NULL) /* libevent 2.1's evhttp_uri_free does not take NULL */
        evhttp_uri_free(u);
    return ok ? 0 : -1;
}

static const char *const top_fields[] = {"pkcs11", "enrolee", NULL};
static const char *const enrolee_fields[] = {
    "kpm_id",           "enrolee_id",     "enrolment_target",
    "enrolment_expiry", "mef_fqdn",       "mef_uri",
    "target_uri",       "renewal_margin", NULL};

int enrolee_config_load(enrolee *e, const char *path)
{
    enrolee_config *c = &e->cfg;
    const char *expiry = NULL, *mef_uri = NULL, *target_uri = NULL;
    if ((e->root = app_config_load(path)) == NULL)
        return -1;
    const json_t *sec = json_object_get(e->root, "enrolee");
    const json_t *pkcs11 = json_object_get(e->root, "pkcs11");
    if (!json_is_object(sec)) {
        fprintf(stderr, "config %s: \"enrolee\" section missing\n", path);
        return -1;
    }
    if (app_cfg_known(e->root, path, "", top_fields) != 0 ||
        app_cfg_known(sec, path, "enrolee", enrolee_fields) != 0 ||
        (json_is_object(pkcs11) && app_cfg_known(pkcs11, path, "pkcs11", app_pkcs11_fields) != 0))
        return -1;
    if (app_cfg_str(sec, "enrolee", "kpm_id", 1, &c->kpm_id) != 0 ||
        app_cfg_str(sec, "enrolee", "enrolee_id", 0, &c->enrolee_id) != 0 ||
        app_cfg_str(sec, "enrolee", "enrolment_target", 1, &c->target) != 0 ||
        app_cfg_str(sec, "enrolee", "enrolment_expiry", 1, &expiry) != 0 ||
        app_cfg_str(sec, "enrolee", "mef_fqdn", 1, &c->mef_fqdn) != 0 ||
        app_cfg_str(sec, "enrolee", "mef_uri", 1, &mef_uri) != 0 ||
        app_cfg_str(sec, "enrolee", "target_uri", 1, &target_uri) != 0 ||
        app_cfg_int(sec, "enrolee", "renewal_margin", 0, M2MHSM_MAX_DURATION,
                    &c->renewal_margin_s) != 0 ||
        parse_uri("mef_uri", mef_uri, c->mef_hostport, sizeof(c->mef_hostport), &c->mef_dtls,
                  &c->mef_tls13) != 0 ||
        parse_uri("target_uri", target_uri, c->target_hostport, sizeof(c->target_hostport), NULL,
                  &c->target_tls13) != 0)
        return -1;
    if (m2mhsm_expiry_spec_parse(expiry, &c->enrolment_expiry) != M2MHSM_OK ||
        m2mhsm_id_check_str(M2MHSM_ID_KPM, c->kpm_id) != M2MHSM_OK ||
        m2mhsm_id_check_str(M2MHSM_ID_TARGET, c->target) != M2MHSM_OK ||
        m2mhsm_id_check_str(M2MHSM_ID_FQDN, c->mef_fqdn) != M2MHSM_OK ||
        (c->enrolee_id != NULL &&
         m2mhsm_id_check_str(M2MHSM_ID_M2M_ABS, c->enrolee_id) != M2MHSM_OK)) {
        fprintf(stderr, "config %s: enrolee: %s\n", path, m2mhsm_last_error());
        return -1;
    }
    return 0;
}
