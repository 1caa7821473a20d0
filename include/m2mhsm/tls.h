/*
 * TLS-PSK with keys that stay in the token: SSL_CTXs whose PSK callbacks hand libssl an
 * opaque handle, and a library context whose "TLS1-PRF" (the m2mhsm provider) computes the
 * master secret on the token from it (docs/threat-model.md).
 */
#ifndef M2MHSM_TLS_H
#define M2MHSM_TLS_H

#include <openssl/ssl.h>
#include <m2mhsm/keystore.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2mhsm_tls m2mhsm_tls;

/*
 * A library context with the default provider and the built-in m2mhsm provider, whose
 * handles resolve against ks. Every SSL_CTX made by m2mhsm_tls_ctx_new lives in it.
 * Thread-safe after creation; free after every SSL_CTX made from it, and before ks. It
 * watches ks: a record erased (or found erased by another process) loses its handles and
 * in-memory session copies at once.
 */
m2mhsm_status m2mhsm_tls_new(m2mhsm_keystore *ks, m2mhsm_tls **out);
void m2mhsm_tls_free(m2mhsm_tls *t);
OSSL_LIB_CTX *m2mhsm_tls_libctx(m2mhsm_tls *t);

typedef enum { M2MHSM_TLS_SERVER = 1, M2MHSM_TLS_CLIENT } m2mhsm_tls_role;
/* M2MHSM_TLS_1_2_AND_1_3: TLS 1.3 where the peer offers it, else TLS 1.2 with TS-0003's
 * suites, on one SSL_CTX (a server's port that serves both). */
typedef enum {
    M2MHSM_TLS_1_2 = 1,
    M2MHSM_DTLS_1_2,
    M2MHSM_TLS_1_3,
    M2MHSM_TLS_1_2_AND_1_3
} m2mhsm_tls_proto;

/* What a server did with a client's psk_identity; passed to the profile's observer. */
typedef enum {
    M2MHSM_TLS_PSK_ACCEPTED = 1, /* a handle for a valid key went to libssl */
    M2MHSM_TLS_PSK_UNKNOWN,      /* no such identity (or a malformed one): refused */
    M2MHSM_TLS_PSK_EXPIRED,      /* expired: refused, and the Enrolee's credentials erased */
    M2MHSM_TLS_PSK_ERROR,        /* a token or input error: refused */
    M2MHSM_TLS_PSK_REFUSED       /* a valid key that the profile's admit hook refused */
} m2mhsm_tls_psk_event;

typedef void (*m2mhsm_tls_observer)(void *arg, m2mhsm_tls_psk_event ev, const char *identity,
                                    const m2mhsm_record *rec, size_t erased);

/* Server: asked about a psk_identity the store does not hold, before it is refused. Return 1
 * once the key is in the store (the lookup is then repeated), 0 to refuse. It runs inside
 * the handshake; with SSL_MODE_ASYNC on the SSL_CTX it may ASYNC_pause_job() while it
 * fetches the key elsewhere (a MAF asking the MEF, TS-0003 8.3.2.1), so the same
 * connection completes once the key has arrived. */
typedef int (*m2mhsm_tls_resolver)(void *arg, SSL *ssl, const char *identity);

/* Server: asked about a valid key before its handle goes to libssl. Return 1 to use it, 0 to
 * refuse the identity as unknown (a MEF refuses a Kpm whose Enrolee is no longer
 * configured or whose configured Enrolment Expiry has passed). */
typedef int (*m2mhsm_tls_admit)(void *arg, const m2mhsm_record *rec);

typedef struct {
    m2mhsm_tls_role role;
    m2mhsm_tls_proto proto;
    /* Server: the kind of key a psk_identity names (KPM at the MEF, KM at a MAF, KPSA at
     * Enrolee B). Client: the kind of the key presented. */
    m2mhsm_kind kind;
    const char *identity;         /* client: the psk_identity to present (KpmID or KeID) */
    const char *server_name;      /* client: SNI to send, or NULL */
    m2mhsm_tls_observer observer; /* server: told of every identity it resolves; may be NULL */
    void *observer_arg;
    m2mhsm_tls_resolver resolver; /* server: for unknown identities; may be NULL */
    void *resolver_arg;
    m2mhsm_tls_admit admit; /* server: a last say on a valid key; may be NULL */
    void *admit_arg;
} m2mhsm_tls_profile;

/*
 * An SSL_CTX for a role and protocol with TS-0003 10.2.2's ciphersuites (TLS 1.2:
 * PSK-AES128-CBC-SHA256, PSK-AES128-GCM-SHA256, PSK-AES128-CCM8; DTLS 1.2: PSK-AES128-CCM8)
 * and PSK callbacks that resolve identities through the key store's index; TLS 1.3 (an
 * option, alone or beside TLS 1.2) with an external PSK and TLS_AES_128_GCM_SHA256. The same
 * callbacks, observer and resolver serve every version. Session caching and tickets are
 * off, so no security association outlives the handshake's key (the CR).
 */
m2mhsm_status m2mhsm_tls_ctx_new(m2mhsm_tls *t, const m2mhsm_tls_profile *p, SSL_CTX **out);

/* A connection on ctx, with the profile's per-connection settings applied (a client's SNI,
 * TS-0003 10.2.1). */
m2mhsm_status m2mhsm_tls_ssl_new(SSL_CTX *ctx, SSL **out);

/*
 * The Enrolment Expiry of the key a connection's handshake used (M2MHSM_NEVER before the
 * PSK callback ran), and whether it has passed: a server walks its open connections with
 * this and closes those whose key expired, so no security association outlives it (the
 * CR). Thread-safe for distinct connections.
 */
m2mhsm_time m2mhsm_tls_ssl_expiry(SSL *ssl);

/* The identity (KpmID or KeID) of the key a connection's handshake used, as stored; NULL
 * before the PSK callback ran. Unlike SSL_get_psk_identity() it is also set for TLS 1.3. */
const char *m2mhsm_tls_ssl_identity(SSL *ssl);
/* 1 if the connection's handshake used the key of this record: a server closes the
 * connections whose key was erased (m2mhsm_keystore_watch). */
int m2mhsm_tls_ssl_keyed_with(SSL *ssl, const uint8_t record_id[M2MHSM_RECORD_ID_LEN]);
int m2mhsm_tls_ssl_expired(m2mhsm_tls *t, SSL *ssl);

/* The clause 10.3.1 export of a finished session straight into a Ke record (the 48 bytes
 * are cleansed): EXPORTER-oneM2M-Bootstrap, no context. */
m2mhsm_status m2mhsm_tls_export_ke(SSL *ssl, m2mhsm_keystore *ks, const m2mhsm_enrolment *enr,
                                   m2mhsm_record *ke);

#ifdef __cplusplus
}
#endif
#endif
