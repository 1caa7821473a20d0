/* m2m-enrolee: a reference device of TS-0003's Pre-Provisioned Symmetric Key framework. Its
 * own token holds Kpm; it runs the bootstrap handshake with the MEF, keeps Ke and the
 * derived Km (or Kpsa) in the token, and connects to its Enrolment Target with them. */
#ifndef M2M_ENROLEE_H
#define M2M_ENROLEE_H

#include "../common/app.h"

/* The Bootstrap Instruction Configuration of the Enrolee (tables 9.2.2.1-1/-2) and where
 * to reach the MEF and the Enrolment Target. */
typedef struct {
    const char *kpm_id, *enrolee_id, *target, *mef_fqdn;
    m2mhsm_expiry_spec enrolment_expiry;
    const char *mef_host, *target_host;
    char mef_hostport[300], target_hostport[300];
    int mef_dtls, mef_tls13, target_dtls, target_tls13;
    long long renewal_margin_s;
} enrolee_config;

typedef struct {
    json_t *root;
    enrolee_config cfg;
    app_store store;
    unsigned reprovisions;
} enrolee;

/* config.c: read the file; prints why not. */
int enrolee_config_load(enrolee *e, const char *path);

/* provision.c: Bootstrap Security Handshake + Enrolment Key Generation (8.3.2.1, 10.3.1)
 * and Km/Kpsa derivation for the configured target (10.3.2, 10.3.3). */
int enrolee_provision(enrolee *e, const char *reason, m2mhsm_record *key);
/* The current key for the configured target (valid or not): 1 and *key, 0 if there is none,
 * -1 if the token could not be read (logged): not a reason to provision. */
int enrolee_current_key(enrolee *e, m2mhsm_record *key);
/* The form that handshakes with the Enrolment Target sign with (target_uri's scheme): the one
 * form the device stores its Km/Kpsa with, as nothing derives from them. */
m2mhsm_form enrolee_target_form(const enrolee *e);
unsigned enrolee_psk_forms(const enrolee *e);
/* A connected blocking socket to "host:port" (UDP for DTLS), with I/O timeouts. */
int enrolee_dial(const char *hostport, int dtls);
/* Give ssl a BIO on the connected socket fd (a connected datagram BIO for DTLS); 0 if not. */
int enrolee_attach(SSL *ssl, int fd, int dtls);

/* connect.c */
typedef struct {
    const char *message; /* sent once connected; NULL: nothing */
    double hold_s;       /* keep the association this long (or until the target closes) */
    int renew;           /* close and return when the renewal margin is reached */
} enrolee_session_opts;
typedef enum {
    ENROLEE_DONE = 0,         /* ran as asked (or renewal margin reached) */
    ENROLEE_REJECTED,         /* the target refused the key: re-provision */
    ENROLEE_CLOSED_BY_TARGET, /* the target ended the association (its key expired) */
    ENROLEE_FAILED            /* network or local failure */
} enrolee_result;
/* One association with the target: provisions first when there is no usable key, and once
 * more when the target rejects the key (the CR: that rejection means re-provision). */
enrolee_result enrolee_connect(enrolee *e, const enrolee_session_opts *o);

#endif
