/* m2m-mef: the M2M Enrolment Function of TS-0003's Pre-Provisioned Symmetric Key
 * framework — bootstrap (D)TLS-PSK servers that enrol devices (8.3.2.1, 10.3.1) and the
 * HTTPS /fetchCredentials service for Enrolment Targets (8.3.2.1, 10.3.2, 10.3.3). */
#ifndef M2M_MEF_H
#define M2M_MEF_H

#include "../common/app.h"

#include <event2/event.h>

typedef struct {
    const char *fqdn; /* the MEF's FQDN: KeID suffix (10.3.4) */
    const char *bootstrap_tls, *bootstrap_dtls, *https;
    int tls13;
    app_certkey ck;
    long long sweep_interval_s;
    long long max_connections;
} mef_config;

typedef struct {
    json_t *root;
    mef_config cfg;
    app_store store;
    struct event_base *base;
    SSL_CTX *psk_tls, *psk_dtls, *https_ctx;
    app_conns *conns;
    struct evconnlistener *tls_listener;
    int dtls_fd;
    struct sockaddr_storage dtls_addr;
    socklen_t dtls_addr_len;
    struct event *dtls_ev;
    SSL *dtls_pending;
    struct evhttp *http;
    struct evconnlistener *https_listener; /* evhttp's, guarded against accept errors */
} mef;

/* config.c: read the file and apply the Bootstrap Instruction Configuration
 * (tables 9.2.2.3-1/-2) of every enrolee listed to the token. */
int mef_config_load(mef *m, const char *path);
/* One entry of "enrolees"; the strings point into the configuration's JSON. */
typedef struct {
    const char *kpm_id, *target, *enrolee_id, *expiry;
    m2mhsm_expiry_spec spec;
} mef_enrolee;
/* Entry i, its fields typed and its Enrolment Expiry parsed; prints why not. */
int mef_enrolee_parse(const json_t *e, size_t i, mef_enrolee *out);
/* Every entry of "enrolees" (*out malloc'd, NULL when there are none); prints why not. */
int mef_config_enrolees(const mef *m, mef_enrolee **out, size_t *n);
/* Check every entry, then apply each that the token does not already hold. */
int mef_config_apply_enrolees(mef *m);

/* bootstrap.c: the Bootstrap Security Handshake servers, TLS and DTLS. */
int mef_bootstrap_start(mef *m);
void mef_bootstrap_stop(mef *m);

/* fetch.c: HTTPS GET /fetchCredentials/<KeID>/<SUID>. */
int mef_fetch_start(mef *m);
void mef_fetch_stop(mef *m);

/* The CR: past its Enrolment Expiry a Ke is refused, and that Enrolee's credential ids
 * and credentials are erased. Returns the number of records erased. */
size_t mef_erase_expired(mef *m, const m2mhsm_record *ke, const char *where);

#endif
