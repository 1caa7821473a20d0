/* m2m-maf: an M2M Authentication Function — the Enrolment Target that Enrolees reach with
 * TLS-PSK (psk_identity = KeID, psk = Km; TS-0003 8.3.1.2 as changed by the CR). A KeID it
 * does not hold is fetched from the MEF that issued it (8.3.2.1) while that handshake waits. */
#ifndef M2M_MAF_H
#define M2M_MAF_H

#include "../common/app.h"

#include <event2/event.h>

#define MAF_MAX_MEFS 8
/* KeIDs a MEF refused, remembered this long so that replays cost no new request. */
#define MAF_REFUSED_SLOTS 256
#define MAF_REFUSED_TTL_S 30

typedef struct {
    char ke_id[M2MHSM_KE_ID_MAX + 1];
    m2mhsm_time until;
} maf_refused;

typedef struct {
    char fqdn[M2MHSM_FQDN_MAX + 1];
    char host[64]; /* numeric address, resolved at start */
    int port;
} maf_mef;

typedef struct {
    const char *maf_id, *listen;
    int tls13;
    app_certkey ck;
    long long max_lifetime_s; /* local policy: 0 = the lifetime the MEF gives */
    long long sweep_interval_s, max_connections, max_fetches, fetch_timeout_s;
    maf_mef mefs[MAF_MAX_MEFS];
    size_t nmefs;
} maf_config;

typedef struct maf_fetch maf_fetch;

typedef struct {
    json_t *root;
    maf_config cfg;
    app_store store;
    struct event_base *base;
    SSL_CTX *psk_ctx, *mef_ctx;
    app_conns *conns;
    struct evconnlistener *listener;
    maf_fetch *fetches;
    size_t nfetches;
    maf_refused refused[MAF_REFUSED_SLOTS]; /* a ring: the oldest entry is overwritten */
    size_t refused_next;
    /* Finished connections to MEFs, freed on the next loop turn (never inside their own
     * callback) or at stop. */
    struct evhttp_connection **spent;
    size_t nspent, capspent;
    struct event *reaper;
} maf;

/* config.c */
int maf_config_load(maf *m, const char *path);

/* serve.c: the TLS-PSK service for Enrolees. */
int maf_serve_start(maf *m);
void maf_serve_stop(maf *m);

/* fetch.c: Km from the MEF over mutually authenticated HTTPS. */
int maf_fetch_init(maf *m);
/* m2mhsm_tls_resolver: pause the handshake until the KeID's Km is fetched and stored. */
int maf_fetch_resolve(void *arg, SSL *ssl, const char *identity);
/* Fail every pending fetch (their handshakes are refused). */
void maf_fetch_stop(maf *m);
/* maf_fetch_stop, and release what fetching holds (before the event base goes). */
void maf_fetch_free(maf *m);

#endif
