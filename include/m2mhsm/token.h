/*
 * A logged-in PKCS#11 token: module loaded through p11-kit, token chosen by an
 * RFC 7512 URI, PIN taken from an RFC 7512 pin-source, sessions pooled for threads.
 */
#ifndef M2MHSM_TOKEN_H
#define M2MHSM_TOKEN_H

#include <stddef.h>
#include <stdint.h>
#include <m2mhsm/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2mhsm_token m2mhsm_token;

typedef struct {
    /* PKCS#11 module path; NULL: $M2MHSM_MODULE, else SoftHSM's default path. */
    const char *module_path;
    /* The module's own initialisation string, passed as CK_C_INITIALIZE_ARGS.pReserved (with
     * CKF_OS_LOCKING_OK) to C_Initialize, for modules that need one (NSS softokn:
     * "configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags="). NULL:
     * $M2MHSM_MODULE_INIT_ARGS if set and not empty, else none (then a p11-kit module file's
     * x-init-reserved applies). Never logged: modules may take secrets here. */
    const char *init_args;
    /* RFC 7512 URI selecting exactly one token ("pkcs11:token=mef"). Required. */
    const char *token_uri;
    /* "file:/path" (RFC 7512 pin-source); NULL: the URI's pin-source attribute.
     * The PIN is read, used for C_Login, and cleansed; it is never logged. */
    const char *pin_source;
    /* 0 (default): m2mhsm serialises object creation and destruction within the process,
     * because some modules fail concurrent C_CreateObject (SoftHSM 2.6.1 returns
     * CKR_GENERAL_ERROR, softhsm/SoftHSMv2#573). 1: the module is trusted with concurrent
     * object writes. Signing and lookups are concurrent either way. */
    int concurrent_writes;
    /* A file that every process using this token can open (created if missing): object
     * writes take flock(LOCK_EX) on it and object reads LOCK_SH, so processes sharing a
     * token whose module is unsafe across processes (SoftHSM's file backend) do not
     * interleave a creation with another's enumeration. Every writer also bumps a write
     * epoch kept in it, which lets lookups answer repeat questions without a token call;
     * all processes that write the token must then use it (docs/key-lifecycle.md).
     * NULL: no cross-process lock, and every index hit is read on the token. */
    const char *lock_file;
    /* At most this many sessions open at once for borrowing (the login session apart);
     * 0: only the module's limit (CK_TOKEN_INFO ulMaxSessionCount / ulMaxRwSessionCount,
     * less the login session), if it states one. Otherwise the smaller of the two. At least
     * 2 when set: an unwrap or an erase with observers holds two sessions at once. */
    unsigned max_sessions;
    /* How long a borrower waits when every allowed session is out before failing with
     * M2MHSM_E_BUSY; 0: 5000 ms. */
    unsigned session_wait_ms;
} m2mhsm_token_config;

/* Mechanisms m2mhsm may use, probed with C_GetMechanismInfo when the token opens. */
typedef struct {
    int sha256_hmac;        /* CKM_SHA256_HMAC with CKF_SIGN: required */
    int aes_key_wrap;       /* CKM_AES_KEY_WRAP (RFC 3394) with CKF_UNWRAP */
    int aes_key_wrap_kwp;   /* CKM_AES_KEY_WRAP_KWP (RFC 5649, PKCS#11 3.0) with CKF_UNWRAP */
    int aes_key_wrap_pad;   /* CKM_AES_KEY_WRAP_PAD with CKF_UNWRAP: PKCS#11 2.40 left its
                               padding open; some modules (SoftHSM) implement RFC 5649 here */
    int hkdf_derive;        /* CKM_HKDF_DERIVE (PKCS#11 3.0) with CKF_DERIVE */
    int sp800_108_feedback; /* CKM_SP800_108_FEEDBACK_KDF (PKCS#11 3.0) with CKF_DERIVE */
    /* Object templates, probed with session objects and corrected by the first stored
     * write the module refuses (docs/tokens.md): */
    int copyable_attr;        /* CKA_COPYABLE (PKCS#11 2.40) accepted on secret keys; else
                                 keys carry no CKA_COPYABLE (CKA_MODIFIABLE still guards them) */
    int private_data_objects; /* private CKO_DATA accepted; else record metadata is kept in
                                 private secret-key objects (docs/key-lifecycle.md) */
    int distinct_key_ids;     /* the token keeps only one stored key per CKA_CLASS and CKA_ID
                                 (softokn merges the second into the first): each form's key
                                 gets a CKA_ID of its own. Learnt from a write, never probed */
} m2mhsm_token_caps;

/*
 * Load the module, find the one token the URI names, read the PIN and log in.
 * Errors: M2MHSM_E_MODULE (missing/broken module), M2MHSM_E_TOKEN (no token or more
 * than one matches), M2MHSM_E_PIN (pin-source unreadable or PIN refused),
 * M2MHSM_E_UNSUPPORTED (no CKM_SHA256_HMAC). On failure *out is NULL and nothing on the
 * token has changed. Thread-safe.
 */
m2mhsm_status m2mhsm_token_open(const m2mhsm_token_config *cfg, m2mhsm_token **out);

/*
 * Initialise a fresh token (C_InitToken, then C_InitPIN) in the first slot whose token is
 * not yet initialised, with the given label; both PINs come from pin-sources. M2MHSM_E_TOKEN,
 * and no slot touched, if an initialised token already carries the label (RFC 7512 URIs
 * name tokens by label). For labs and tests; a production HSM is initialised with its
 * vendor's tools. module_path as above; the module's init args come from
 * $M2MHSM_MODULE_INIT_ARGS (see m2mhsm_token_config.init_args).
 */
m2mhsm_status m2mhsm_token_init(const char *module_path, const char *label,
                                const char *so_pin_source, const char *pin_source);

/* Log out, close sessions, release the module. Not concurrent with other calls on tok. */
void m2mhsm_token_close(m2mhsm_token *tok);

/* The probed mechanisms. Thread-safe. */
const m2mhsm_token_caps *m2mhsm_token_caps_get(const m2mhsm_token *tok);

/*
 * Failover. A call that fails with a CKR of a lost token (CKR_DEVICE_REMOVED,
 * CKR_DEVICE_ERROR, which p11-kit's RPC returns once its server is gone,
 * CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_TOKEN_NOT_PRESENT,
 * CKR_USER_NOT_LOGGED_IN, CKR_CRYPTOKI_NOT_INITIALIZED) marks the token down. While it is
 * down, calls fail at once, and at most one of them every M2MHSM_RECONNECT_MS tries to
 * re-attach: C_Finalize, C_Initialize, find the token by its URI, log in again from the
 * pin-source. After a re-attach the key store finds its records again at its next call;
 * lookups, the provider's PSK derivations and m2mhsm_token_sign_ecdsa retry once.
 */
#define M2MHSM_RECONNECT_MS 200
typedef enum {
    M2MHSM_TOKEN_LOST,
    M2MHSM_TOKEN_BACK,
    /* The lock file does not speak for every writer of the token (a write from another host,
     * or from a process with another lock file or none): its counter no longer answers
     * lookups, the token's epoch object does (one call each). Told once; detail names the
     * lock file. */
    M2MHSM_TOKEN_LOCK_NOT_SHARED
} m2mhsm_token_event;
/* Told once when the token is found lost (detail: "operation: CKR_NAME", down_ms 0) and
 * once when it is back (detail: the CKR that lost it, down_ms: how long it was down).
 * Runs inside the failing or recovering call: it must not call into the token. */
typedef void (*m2mhsm_token_observer)(void *arg, m2mhsm_token_event ev, const char *detail,
                                      long long down_ms);
void m2mhsm_token_observe(m2mhsm_token *tok, m2mhsm_token_observer fn, void *arg);
/* 1 while the token is down (a lost-token failure not yet recovered). Thread-safe. */
int m2mhsm_token_is_down(m2mhsm_token *tok);

/*
 * ECDSA (CKM_ECDSA) signature of a digest by the one private key (CKO_PRIVATE_KEY,
 * CKA_TOKEN) labelled key_label, on the token's own logged-in sessions: sig gets r || s,
 * *sig_len its size in and the signature's length out. M2MHSM_E_NOT_FOUND if no such key,
 * M2MHSM_E_TOKEN if several. Retried once after a failover. Thread-safe.
 */
m2mhsm_status m2mhsm_token_sign_ecdsa(m2mhsm_token *tok, const char *key_label, const uint8_t *dgst,
                                      size_t dgst_len, uint8_t *sig, size_t *sig_len);

/* ---- The self-test: can a key leave this token? (src/p11/selftest.c) ---- */

/* The ways a key can leave a token, each tried on a throwaway probe key. */
typedef enum {
    M2MHSM_PROBE_READ_VALUE = 0,     /* C_GetAttributeValue(CKA_VALUE) */
    M2MHSM_PROBE_SET_EXTRACTABLE,    /* C_SetAttributeValue(CKA_EXTRACTABLE=TRUE) */
    M2MHSM_PROBE_SET_NON_SENSITIVE,  /* C_SetAttributeValue(CKA_SENSITIVE=FALSE) */
    M2MHSM_PROBE_COPY_EXTRACTABLE,   /* C_CopyObject(CKA_EXTRACTABLE=TRUE), then read/wrap */
    M2MHSM_PROBE_COPY_NON_SENSITIVE, /* C_CopyObject(CKA_SENSITIVE=FALSE), then read/wrap */
    M2MHSM_PROBE_WRAP,               /* C_WrapKey under an AES key of our own */
    M2MHSM_PROBE_DIGEST_KEY,         /* C_DigestKey(CKM_SHA256) */
    M2MHSM_PROBE_COUNT
} m2mhsm_probe;

typedef enum {
    M2MHSM_OUTCOME_REFUSED = 0, /* the token refused (rv), or accepted and did nothing */
    M2MHSM_OUTCOME_WEAKENED,    /* the token weakened the key (or a copy) but this probe got
                                   no bytes out: not enforced all the same */
    M2MHSM_OUTCOME_LEAKED,      /* key bytes left the token (recovered: checked equal) */
    M2MHSM_OUTCOME_HASHED,      /* C_DigestKey gave SHA-256 of the key: not the key, and
                                   m2mhsm stores no form whose hash is an effective key */
    M2MHSM_OUTCOME_UNAVAILABLE  /* could not be tried (no mechanism; its probe key not made) */
} m2mhsm_probe_outcome;

typedef struct {
    m2mhsm_probe_outcome outcome;
    CK_RV rv;               /* the token's answer to the probe's call */
    CK_MECHANISM_TYPE mech; /* the wrap mechanism that leaked, else 0 */
    int recovered;          /* LEAKED: the bytes that came out equal the probe key's */
} m2mhsm_probe_result;

typedef struct {
    m2mhsm_probe_result probe[M2MHSM_PROBE_COUNT];
    /* 1 if no probe was WEAKENED or LEAKED: keys created sensitive and non-extractable stay
     * in the token whatever a logged-in user asks. */
    int non_extractable_enforced;
    /* 1 if the token made Km from Ke by CKM_HKDF_DERIVE (10.3.2 check value, Ke = 00..1f,
     * MAF-ID maf.example.com), and its TLS 1.3 early secret from Km, both non-extractable
     * keys whose HMACs match: Km/Kpsa can be derived without passing through memory. */
    int derive_in_token;
    char derive_detail[160]; /* why derive_in_token is 0 (the failing call and CKR), or "" */
    int probe_on_token;      /* 1: the token refused session keys, the probes were token objects */
} m2mhsm_selftest_report;

/*
 * Run every probe of m2mhsm_probe on throwaway keys (session objects where the token
 * allows, else token objects), and the HKDF derivation check. Every object it creates is
 * destroyed on every path. Key bytes it handles are random or test vectors and are
 * cleansed. Errors: the token failed a call the self-test needs to set up (creating its
 * probe key): M2MHSM_E_PKCS11 naming the call; out is then all zeros. Thread-safe.
 */
m2mhsm_status m2mhsm_token_selftest(m2mhsm_token *tok, m2mhsm_selftest_report *out);

/* "read_value", "set_extractable", ...; "refused", "weakened", "leaked", ... */
const char *m2mhsm_probe_name(m2mhsm_probe p);
const char *m2mhsm_probe_outcome_name(m2mhsm_probe_outcome o);

#ifdef __cplusplus
}
#endif
#endif
