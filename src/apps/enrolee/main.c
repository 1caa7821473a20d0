/*
 * m2m-enrolee — a reference oneM2M device.
 *   m2m-enrolee --config FILE bootstrap
 *   m2m-enrolee --config FILE connect [--message TEXT] [--hold SECONDS]
 *   m2m-enrolee --config FILE run --duration SECONDS
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include "enrolee.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/http.h>

static const char usage[] =
    "usage: m2m-enrolee --config FILE bootstrap\n"
    "       m2m-enrolee --config FILE connect [--message TEXT] [--hold SECONDS]\n"
    "       m2m-enrolee --config FILE run --duration SECONDS\n"
    "(docs/configuration.md)\n";

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
    evhttp_uri_free(u);
    return ok ? 0 : -1;
}

static const char *const top_fields[] = {"pkcs11", "enrolee", NULL};
static const char *const enrolee_fields[] = {
    "kpm_id",           "enrolee_id",     "enrolment_target",
    "enrolment_expiry", "mef_fqdn",       "mef_uri",
    "target_uri",       "renewal_margin", NULL};

static int load_config(enrolee *e, const char *path)
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

static int cmd_bootstrap(enrolee *e)
{
    m2mhsm_record key;
    return enrolee_provision(e, "requested", &key) ? 0 : 1;
}

static int cmd_connect(enrolee *e, const char *message, double hold)
{
    enrolee_session_opts o = {message, hold, 0};
    return enrolee_connect(e, &o) == ENROLEE_DONE ? 0 : 1;
}

/* Stay connected for duration_s: reconnect whenever an association ends, renewing the key
 * a margin before it expires. Reports how often the target closed or refused. */
static int cmd_run(enrolee *e, double duration_s)
{
    unsigned sessions = 0, closed = 0, failed = 0;
    time_t end = time(NULL) + (time_t)duration_s;
    while (time(NULL) < end) {
        enrolee_session_opts o = {NULL, (double)(end - time(NULL)), 1};
        enrolee_result r = enrolee_connect(e, &o);
        sessions++;
        closed += r == ENROLEE_CLOSED_BY_TARGET;
        failed += r == ENROLEE_FAILED || r == ENROLEE_REJECTED;
        if (r == ENROLEE_FAILED)
            nanosleep(&(struct timespec){0, 200000000}, NULL);
    }
    app_log(APP_INFO, "summary", "sessions=%u closed_by_target=%u failed=%u reprovisions=%u",
            sessions, closed, failed, e->reprovisions);
    return closed + failed == 0 ? 0 : 1;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return *s != '\0' && *end == '\0' && *out >= 0 && *out <= 86400 * 366;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"message", required_argument, NULL, 'm'},
        {"hold", required_argument, NULL, 'H'},   {"duration", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *config = NULL, *message = NULL;
    double hold = 0, duration = -1;
    int o;
    while ((o = getopt_long(argc, argv, "c:m:H:d:h", opts, NULL)) != -1) {
        if ((o == 'H' && !parse_seconds(optarg, &hold)) ||
            (o == 'd' && !parse_seconds(optarg, &duration)) || o == '?' || o == 'h') {
            fputs(usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
        if (o == 'c')
            config = optarg;
        else if (o == 'm')
            message = optarg;
    }
    const char *cmd = optind + 1 == argc ? argv[optind] : NULL;
    if (config == NULL || cmd == NULL ||
        (strcmp(cmd, "bootstrap") != 0 && strcmp(cmd, "connect") != 0 && strcmp(cmd, "run") != 0) ||
        (strcmp(cmd, "run") == 0 && duration < 0)) {
        fputs(usage, stderr);
        return 2;
    }
    app_log_init("m2m-enrolee");
    signal(SIGPIPE, SIG_IGN);
    enrolee e = {0};
    int rc = 1;
    if (load_config(&e, config) == 0 &&
        app_store_open(json_object_get(e.root, "pkcs11"), &e.store) == 0) {
        if (strcmp(cmd, "bootstrap") == 0)
            rc = cmd_bootstrap(&e);
        else if (strcmp(cmd, "connect") == 0)
            rc = cmd_connect(&e, message, hold);
        else
            rc = cmd_run(&e, duration);
        app_store_close(&e.store);
    }
    json_decref(e.root);
    return rc;
}
