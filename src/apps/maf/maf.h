/* m2m-maf: an M2M Authentication Function — the Enrolment Target that Enrolees reach with
 * TLS-PSK or DTLS-PSK (psk_identity = KeID, psk = Km; TS-0003 8.3.1.2 as changed by the CR).
 * A KeID it does not hold is fetched from the MEF that issued it (8.3.2.1) while that
 * handshake waits. m2m-eb runs the same code as an Enrolee B, which "plays the role of M2M
 * Authentication Function" with Kpsa in place of Km (the CR's change 1). */
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

/* The Enrolment Target this process plays: what differs between a MAF and an Enrolee B. */
typedef struct {
    const char *program;    /* m2m-maf, m2m-eb: logs, usage, the handshake greeting */
    const char *section;    /* its configuration section: "maf", "enrolee_b" */
    const char *id_field;   /* its identity's field: "maf_id" (an FQDN), "enrolee_b_id" */
    m2mhsm_id_type id_type; /* M2MHSM_ID_FQDN, M2MHSM_ID_M2M_ABS (absolute CSE-ID/AE-ID) */
    m2mhsm_kind kind;       /* the key it fetches and serves: KM, KPSA */
    const char *suid;       /* /fetchCredentials/<KeID>/<SUID>: 21, 22 (TS-0004 m2m:suid) */
} maf_role;
extern const maf_role maf_role_maf, maf_role_enrolee_b;

typedef struct {
    char fqdn[M2MHSM_FQDN_MAX + 1];
    char host[64]; /* numeric address, resolved at start */
    int port;
} maf_mef;

typedef struct {
    /* The Enrolment Target Identity: the MAF-ID, or the Enrolee B-ID (absolute CSE-ID/AE-ID).
     * It is the X-M2M-Origin of fetches and the target of the keys stored. */
    const char *target_id;
    const char *listen, *listen_dtls;
    const char *metrics; /* plain HTTP GET /metrics, or NULL */
    int tls13;
    app_certkey ck;
    long long max_lifetime_s; /* local policy: 0 = the lifetime the MEF gives */
    long long sweep_interval_s, max_connections, max_fetches, fetch_timeout_s;
    maf_mef mefs[MAF_MAX_MEFS];
    size_t nmefs;
} maf_config;

typedef struct maf_fetch maf_fetch;

typedef struct {
    const maf_role *role;
    json_t *root; /* the file as at start: the settings that need a restart */
    const char *config_path;
    maf_config cfg;
    app_store store;
    struct event_base *base;
    SSL_CTX *psk_ctx, *psk_dtls, *mef_ctx;
    app_conns *conns; /* TLS and DTLS associations alike */
    struct evconnlistener *listener;
    app_dtls *dtls;
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

/* run.c: the whole program for a role (main.c, eb_main.c). */
int maf_main(int argc, char **argv, const maf_role *role);

/* config.c: the role's section ("maf" or "enrolee_b") and "mefs". */
int maf_config_load(maf *m, const char *path);
/* SIGHUP: load path afresh; if it is sound, put max_lifetime, fetch_timeout, sweep_interval
 * and mefs into force (fetches already under way keep their MEF) and report the settings
 * that need a restart (event=restart-needed). -1 if refused: the running configuration
 * stays (the loader's complaint is printed). */
int maf_config_reload(maf *m, const char *path, long long *sweep_interval_s);

/* serve.c: the TLS-PSK and DTLS-PSK services for Enrolees. */
int maf_serve_start(maf *m);
void maf_serve_stop(maf *m);

/* fetch.c: Km (or Kpsa) from the MEF over mutually authenticated HTTPS. */
int maf_fetch_init(maf *m);
/* m2mhsm_tls_resolver: pause the handshake until the KeID's key is fetched and stored. */
int maf_fetch_resolve(void *arg, SSL *ssl, const char *identity);
/* Fail every pending fetch (their handshakes are refused). */
void maf_fetch_stop(maf *m);
/* maf_fetch_stop, and release what fetching holds (before the event base goes). */
void maf_fetch_free(maf *m);

#endif
