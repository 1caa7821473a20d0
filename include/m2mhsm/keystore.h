/*
 * The key store: Kpm, Ke, Km and Kpsa as non-extractable PKCS#11 secret keys, each with
 * a private CKO_DATA metadata object (identities, exact Enrolment Expiry) linked by
 * CKA_ID, and an in-process index from identity to objects. Schema and crash-safety
 * rules: docs/key-lifecycle.md.
 *
 * Thread safety: every function may be called from several threads on one keystore.
 * A record knows where its objects are for one process: after fork() the child looks its
 * records up again (m2mhsm_keystore_derive refuses one from before the fork).
 */
#ifndef M2MHSM_KEYSTORE_H
#define M2MHSM_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <m2mhsm/derive.h>
#include <m2mhsm/errors.h>
#include <m2mhsm/expiry.h>
#include <m2mhsm/ids.h>
#include <m2mhsm/token.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    M2MHSM_KIND_KPM = 1,  /* identity: KpmID */
    M2MHSM_KIND_KE,       /* identity: KeID */
    M2MHSM_KIND_KM,       /* identity: KmID (= KeID, per the CR) */
    M2MHSM_KIND_KPSA,     /* identity: KpsaID (= KeID) */
    M2MHSM_KIND_ENROLMENT /* MEF Bootstrap Instruction Configuration; identity: KpmID;
                             metadata only, no key */
} m2mhsm_kind;

/* The secret-key objects of a record. A PSK (Kpm, Km, Kpsa) has the forms its writer chose
 * (m2mhsm_keystore_options.psk_forms; all three by default); Ke has RAW. */
typedef enum {
    M2MHSM_FORM_RAW = 0,   /* the key itself */
    M2MHSM_FORM_TLS12_PMS, /* SHA-256 of the TLS 1.2 PSK premaster (derive.h) */
    M2MHSM_FORM_TLS13_ES,  /* TLS 1.3 early secret (derive.h) */
    M2MHSM_FORM_COUNT
} m2mhsm_form;

/* Sets of forms, as bits: each form is one object on the token, and hardware HSMs cap the
 * number of objects, so a deployment stores only those its handshakes use. */
#define M2MHSM_FORMS_RAW (1u << M2MHSM_FORM_RAW)         /* only if something derives from it */
#define M2MHSM_FORMS_TLS12 (1u << M2MHSM_FORM_TLS12_PMS) /* TLS 1.2 and DTLS 1.2 handshakes */
#define M2MHSM_FORMS_TLS13 (1u << M2MHSM_FORM_TLS13_ES)  /* TLS 1.3 handshakes */
#define M2MHSM_FORMS_ALL (M2MHSM_FORMS_RAW | M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13)

#define M2MHSM_RECORD_ID_LEN 16 /* CKA_ID shared by a record's objects: random */

/* A copy of one record's metadata, and (opaque) where its objects are on the token. */
typedef struct {
    m2mhsm_kind kind;
    char identity[M2MHSM_ID_MAX + 1];
    char kpm_id[M2MHSM_KPM_ID_MAX + 1];     /* KE, KM, KPSA (when known), ENROLMENT */
    char ke_id[M2MHSM_KE_ID_MAX + 1];       /* KM, KPSA: the Ke they come from */
    char enrolee_id[M2MHSM_M2M_ID_MAX + 1]; /* the Enrolee's CSE-ID/AE-ID ("" if unknown) */
    char target_id[M2MHSM_M2M_ID_MAX + 1];  /* Enrolment Target: MAF-ID or Enrolee B-ID */
    m2mhsm_expiry_spec enrolment_expiry;    /* ENROLMENT, KE: as configured */
    m2mhsm_time created;
    m2mhsm_time expiry; /* exact instant enforced; M2MHSM_NEVER if none */
    uint64_t seq;       /* its place among the records of its identity (a Ke: of its KpmID), the
                           newest highest (0: unknown; a Kpm has none) */
    uint8_t record_id[M2MHSM_RECORD_ID_LEN];
    unsigned forms; /* M2MHSM_FORMS_* the record was written with: the keys it must have
                       (0 in a record built by hand: all of its kind's) */
    /* The library's own: where the record's objects are on the token, for this process.
     * Opaque; zero in a record built by hand. */
    struct {
        uint64_t opaque[M2MHSM_FORM_COUNT + 2];
    } objects;
    /* KM, KPSA: 1 if the token derived it from Ke (CKM_HKDF_DERIVE), so the key never
     * existed in host memory; 0 if it was computed by C_Sign and imported, fetched from a
     * MEF, or written before this field existed (docs/threat-model.md). */
    int derived_in_token;
} m2mhsm_record;

typedef struct m2mhsm_keystore m2mhsm_keystore;

typedef struct {
    m2mhsm_clock_fn clock; /* NULL: m2mhsm_clock_system */
    void *clock_arg;
    /* Incomplete records (metadata whose keys are missing) younger than this are left
     * alone at open, since another process may be writing them; older ones are removed.
     * 0: 60 seconds. */
    int64_t orphan_grace;
    /* 0 (default): every index hit is confirmed on the token (one attribute read), so a
     * record another process erased is refused at once. N > 0: a hit confirmed less than N
     * milliseconds ago is trusted, so such a record stays usable here for up to N ms;
     * expiry is still checked exactly on every lookup. For servers where the token read
     * dominates the handshake (docs/performance.md). */
    int64_t revalidate_ms;
    /* 1: never write the token. Open repairs nothing (the report counts what a repair
     * would remove), and every operation that would create or destroy an object is
     * refused with M2MHSM_E_INVALID_ARG. For readers that must not change what they
     * inspect (m2mhsm list); repair is for writers and explicit commands. */
    int read_only;
    /* The forms of every Kpm, Km and Kpsa this store writes: M2MHSM_FORMS_TLS12 and/or
     * M2MHSM_FORMS_TLS13 for the handshakes the deployment runs with that key, plus
     * M2MHSM_FORMS_RAW only where something needs the key itself (nothing in m2mhsm does;
     * it is for tokens that derive forms later). 0 (default): all three, as before the
     * option existed. Any other set without a TLS form, or with unknown bits, is refused at
     * open (M2MHSM_E_INVALID_ARG). Records keep the forms they were written with; reading
     * does not depend on this option, and a handshake on a record lacking its form is
     * refused (tls.h). Ke always has RAW only (Km and Kpsa are derived from it). */
    unsigned psk_forms;
} m2mhsm_keystore_options;

/* What opening found and repaired (found only, with read_only). */
typedef struct {
    size_t records;     /* complete records indexed */
    size_t orphan_keys; /* m2mhsm keys without metadata: destroyed */
    size_t incomplete;  /* metadata with missing keys, older than the grace: destroyed */
    size_t corrupt;     /* unparseable metadata: left alone, reported */
    size_t kept_keys;   /* keys of unparseable metadata: left alone too */
    size_t superseded;  /* records older than another of their identity (a replacement
                           interrupted by a crash), Ke records older than their KpmID's
                           newest and what derives from them (an enrolment interrupted so):
                           erased */
} m2mhsm_open_report;

/*
 * Open the store on a logged-in token: enumerate m2mhsm objects once, remove orphans
 * (unless read_only), build the index. opts and report may be NULL. The keystore borrows
 * tok (close it after).
 */
m2mhsm_status m2mhsm_keystore_open(m2mhsm_token *tok, const m2mhsm_keystore_options *opts,
                                   m2mhsm_keystore **out, m2mhsm_open_report *report);
void m2mhsm_keystore_close(m2mhsm_keystore *ks);

/* The store's clock. */
m2mhsm_time m2mhsm_keystore_now(const m2mhsm_keystore *ks);

m2mhsm_token *m2mhsm_keystore_token(m2mhsm_keystore *ks);

/*
 * Find a record by kind and identity (id[0..len), as received on the wire). A hit in the
 * index is confirmed with one attribute read and never scans the token; a miss searches
 * the token (objects made by another process) and caches the result. Does not judge
 * expiry: see m2mhsm_record_valid. Of two records of one identity the newest is found; a
 * Ke superseded by a newer Ke of its KpmID, and a Km/Kpsa derived from one, is not found
 * (m2mhsm_record_superseded). An indexed record found gone (another process erased it) is
 * reported to the observers (m2mhsm_keystore_watch). Errors: M2MHSM_E_INVALID_ARG,
 * M2MHSM_E_NOT_FOUND.
 */
m2mhsm_status m2mhsm_keystore_lookup(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *id,
                                     size_t len, m2mhsm_record *out);

/* M2MHSM_OK if the record has the form (its key object for it); M2MHSM_E_UNSUPPORTED,
 * naming the form, if it was stored without it (m2mhsm_keystore_options.psk_forms):
 * e.g. a Km stored for TLS 1.2 only, asked for a TLS 1.3 handshake. */
m2mhsm_status m2mhsm_record_check_form(const m2mhsm_record *rec, m2mhsm_form form);

/* 1 if the record's exact expiry is still ahead of the store's clock. */
int m2mhsm_record_valid(const m2mhsm_keystore *ks, const m2mhsm_record *rec);

/* 1 if rec is older than another record of its kind and identity that this store knows, a
 * Ke older than the newest Ke of its KpmID that it knows, or a Km/Kpsa derived (on this
 * token) from a Ke other than that newest one: only the newest record of an identity and
 * the newest enrolment of a KpmID count (docs/key-lifecycle.md, crash safety). */
int m2mhsm_record_superseded(m2mhsm_keystore *ks, const m2mhsm_record *rec);

/*
 * Import a Kpm (8.3.2.1 Bootstrap Credential Configuration) from bytes the caller holds;
 * the caller cleanses them. valid_until: M2MHSM_NEVER or an instant (Kpm is not subject to
 * Enrolment Expiry). Errors: M2MHSM_E_EXISTS if the KpmID is present.
 */
m2mhsm_status m2mhsm_keystore_import_kpm(m2mhsm_keystore *ks, const char *kpm_id,
                                         const uint8_t *kpm, size_t kpm_len,
                                         m2mhsm_time valid_until, m2mhsm_record *out);

/*
 * Import a Kpm wrapped with AES key wrap (RFC 3394, or RFC 5649 when the length is not a
 * multiple of 8) under the token's secret key labelled kek_label. The unwrapped key never
 * reaches host memory; its TLS forms are computed on the token where it can
 * (M2MHSM_E_UNSUPPORTED otherwise, see docs/deployment-hsm.md).
 */
m2mhsm_status m2mhsm_keystore_unwrap_kpm(m2mhsm_keystore *ks, const char *kpm_id,
                                         const uint8_t *wrapped, size_t wrapped_len,
                                         const char *kek_label, m2mhsm_time valid_until,
                                         m2mhsm_record *out);

/*
 * The MEF's Bootstrap Instruction Configuration for one KpmID (tables 9.2.2.3-1/-2):
 * Enrolment Target, Enrolee-ID and Enrolment Expiry. Replaces an earlier configuration of
 * the same KpmID.
 */
m2mhsm_status m2mhsm_keystore_configure_enrolee(m2mhsm_keystore *ks, const char *kpm_id,
                                                const char *target_id, const char *enrolee_id,
                                                const m2mhsm_expiry_spec *expiry);

/*
 * Bulk provisioning (m2mhsm kpm import --manifest): many Kpms, each optionally with the
 * MEF's configuration of its KpmID, in time proportional to their number.
 *
 * m2mhsm_keystore_import_kpm searches the token for the KpmID before each write, and on
 * modules that visit every object per search (SoftHSM) N imports then cost O(N^2). A batch
 * instead asks the index that m2mhsm_keystore_open built and this process's writes keep:
 * no token search per item. The price: a KpmID that another process imports while the
 * batch runs is not seen, and the token then holds two Kpm records of it (lookups use the
 * newest; m2mhsm_keystore_erase_id removes both). A KEK is searched for once per label.
 *
 * Thread safety: a batch is used by one thread at a time; other threads may use the
 * keystore meanwhile. End the batch before closing the keystore; after fork() begin a new
 * one in the child.
 */
typedef struct m2mhsm_kpm_batch m2mhsm_kpm_batch;

/* One device of a batch. */
typedef struct {
    const char *kpm_id;
    const uint8_t *kpm; /* the Kpm (kpm_len bytes), or NULL when wrapped is given */
    size_t kpm_len;
    const uint8_t *wrapped; /* the Kpm AES-key-wrapped (RFC 3394/5649) under kek_label */
    size_t wrapped_len;
    const char *kek_label;
    m2mhsm_time valid_until; /* M2MHSM_NEVER or an instant */
    /* The MEF's Bootstrap Instruction Configuration of the KpmID (as
     * m2mhsm_keystore_configure_enrolee): all three, or all NULL for none. */
    const char *target_id;
    const char *enrolee_id;
    const m2mhsm_expiry_spec *enrolment_expiry;
} m2mhsm_kpm_item;

/* Start a batch on a store opened for writing (M2MHSM_E_INVALID_ARG if read_only). */
m2mhsm_status m2mhsm_kpm_batch_begin(m2mhsm_keystore *ks, m2mhsm_kpm_batch **out);

/*
 * Everything that can be known about an item without writing the token: the identifiers'
 * grammars, the key's length, a future valid_until, the configuration complete or absent;
 * for a wrapped Kpm, the KEK (M2MHSM_E_NOT_FOUND if no key has that label) and the blob,
 * unwrapped under it into a session object that is destroyed at once, so that a blob that
 * fails its integrity check or holds a key of the wrong length is refused here
 * (M2MHSM_E_INVALID_ARG, M2MHSM_E_UNSUPPORTED, or the CKR of C_UnwrapKey). Does not look at
 * whether the KpmID exists.
 */
m2mhsm_status m2mhsm_kpm_batch_check(m2mhsm_kpm_batch *b, const m2mhsm_kpm_item *item);

/* 1 if the store's index holds a Kpm with this KpmID (no token call), else 0. */
int m2mhsm_kpm_batch_known(m2mhsm_kpm_batch *b, const char *kpm_id);

/*
 * Import one item: M2MHSM_E_EXISTS (nothing written) if m2mhsm_kpm_batch_known says so;
 * otherwise the configuration (if any) is written first and then the Kpm, whose presence
 * marks the item done: a batch interrupted between the two writes the configuration again
 * when re-run (replacing the first). The caller cleanses the key bytes; out may be NULL.
 */
m2mhsm_status m2mhsm_kpm_batch_import(m2mhsm_kpm_batch *b, const m2mhsm_kpm_item *item,
                                      m2mhsm_record *out);

void m2mhsm_kpm_batch_end(m2mhsm_kpm_batch *b);

/* What enrolment knows besides the exported bytes. */
typedef struct {
    const char *kpm_id;     /* the bootstrap psk_identity */
    const char *mef_fqdn;   /* for the KeID (10.3.4) */
    const char *enrolee_id; /* may be NULL or "" */
    const char *target_id;  /* may be NULL or "" */
    m2mhsm_expiry_spec enrolment_expiry;
} m2mhsm_enrolment;

/*
 * Enrolment Key Generation (8.3.2.1, 10.3.1, 10.3.4): split the 48-byte export, store Ke
 * with expiry resolved from enrolment_expiry at the store's clock, under its KeID. Any
 * earlier Ke of the same KpmID, and what was derived from it, is erased once the new Ke is
 * stored. The new Ke is current from then on (the old ones are refused), so if that erase
 * fails the error is returned with the new Ke kept, and the next open or sweep erases the
 * old. The export buffer is the caller's to cleanse; internal copies are cleansed here.
 */
m2mhsm_status m2mhsm_keystore_store_ke(m2mhsm_keystore *ks, const m2mhsm_enrolment *enr,
                                       const uint8_t exported[M2MHSM_EXPORT_LEN],
                                       m2mhsm_record *out);

/*
 * Compute Km (10.3.2, target = MAF-ID) or Kpsa (10.3.3, target = Enrolee-B-ID) on the token
 * with C_Sign(CKM_SHA256_HMAC) keyed by the Ke object, into out[32] (the MEF sends it to the
 * Enrolment Target; the caller cleanses it). Refuses an expired Ke with M2MHSM_E_EXPIRED and
 * a superseded one with M2MHSM_E_NOT_FOUND.
 */
m2mhsm_status m2mhsm_keystore_derive(m2mhsm_keystore *ks, const m2mhsm_record *ke,
                                     m2mhsm_derivation which, const char *target_id,
                                     uint8_t out[M2MHSM_KEY_LEN]);

/*
 * Derive Km/Kpsa from Ke and store it (the Enrolee's side): identity = KeID, lifetime =
 * min(requested, Ke's); a lifetime already over is refused with M2MHSM_E_EXPIRED. Where the
 * token offers CKM_HKDF_DERIVE (caps.hkdf_derive) the key is derived inside it and never
 * reaches host memory (out->derived_in_token = 1; its TLS 1.2 form still passes through
 * memory as a C_DigestKey result, docs/threat-model.md); if that token will not digest the
 * key for the TLS 1.2 form, and elsewhere (PKCS#11 2.40 tokens such as SoftHSM), the HMAC
 * output of C_Sign is imported at once and cleansed (derived_in_token = 0).
 */
m2mhsm_status m2mhsm_keystore_derive_store(m2mhsm_keystore *ks, const m2mhsm_record *ke,
                                           m2mhsm_derivation which, const char *target_id,
                                           m2mhsm_time requested_expiry, m2mhsm_record *out);

/* What an Enrolment Target stores after fetching a key from the MEF (8.3.1.2). */
typedef struct {
    m2mhsm_kind kind;       /* M2MHSM_KIND_KM or M2MHSM_KIND_KPSA */
    const char *ke_id;      /* identity (KmID/KpsaID = KeID) */
    const char *enrolee_id; /* as the MEF passed it, or NULL */
    const char *target_id;  /* this Enrolment Target's own ID */
    m2mhsm_time lifetime;   /* as received from the MEF */
    m2mhsm_time requested;  /* local policy, M2MHSM_NEVER for none */
} m2mhsm_fetched_key;

/* Import a fetched Km/Kpsa with expiry min(requested, lifetime). An already-expired
 * lifetime is refused with M2MHSM_E_EXPIRED and nothing is stored. */
m2mhsm_status m2mhsm_keystore_store_fetched(m2mhsm_keystore *ks, const m2mhsm_fetched_key *fk,
                                            const uint8_t *key, size_t key_len, m2mhsm_record *out);

/*
 * Erase everything held for an Enrolee (the CR: its credential ids and all its
 * credentials): every Ke, Km and Kpsa record that names it, and every one derived from its
 * Ke records. Kpm and the MEF's configuration stay, so the device can re-enrol.
 * *erased (may be NULL) = records erased.
 */
m2mhsm_status m2mhsm_keystore_erase_enrolee(m2mhsm_keystore *ks, const char *enrolee_id,
                                            size_t *erased);

/* Erase every record whose identity is id, and every record derived from it (ke_id == id).
 * M2MHSM_E_NOT_FOUND if there was none. */
m2mhsm_status m2mhsm_keystore_erase_id(m2mhsm_keystore *ks, const char *id, size_t *erased);

/*
 * What the CR requires once a credential is found past its expiry: erase the Enrolee's
 * credential ids and credentials (m2mhsm_keystore_erase_enrolee), or, for a record that
 * names no Enrolee, the key and what derives from it (m2mhsm_keystore_erase_id). A Kpm past
 * its own validity end is not a provisioned credential: nothing is erased (M2MHSM_OK, 0).
 * *erased (may be NULL) = records erased.
 */
m2mhsm_status m2mhsm_keystore_erase_expired(m2mhsm_keystore *ks, const m2mhsm_record *rec,
                                            size_t *erased);

/*
 * Erase what has expired: every expired Ke, Km or Kpsa and what derives from it, and where
 * an Enrolment Expiry passed (a Ke's, or at an Enrolment Target a fetched Km/Kpsa's) all of
 * that Enrolee's credentials; and every record a newer one supersedes (a replacement or
 * enrolment that a crash cut short). *erased = records erased. The same scan finds the
 * records this process knows that another process erased: observers hear of them
 * (m2mhsm_keystore_watch).
 */
m2mhsm_status m2mhsm_keystore_sweep(m2mhsm_keystore *ks, size_t *erased);

/*
 * Revoke an Enrolee at the MEF (its KpmID is no longer configured): every Ke of the KpmID,
 * every Km/Kpsa that names the KpmID or derives from one of those Ke, then its Bootstrap
 * Instruction Configuration, and with erase_kpm its Kpm too. Credentials go before the
 * configuration, so a crash in between leaves a configuration that the next revocation
 * removes. M2MHSM_E_NOT_FOUND if the token held nothing of the KpmID. *erased (may be
 * NULL) = records erased.
 */
m2mhsm_status m2mhsm_keystore_revoke_enrolee(m2mhsm_keystore *ks, const char *kpm_id, int erase_kpm,
                                             size_t *erased);

/* How a record left the token, as told to an m2mhsm_erase_observer. */
typedef enum {
    M2MHSM_GONE_ERASED = 1, /* this store erased it: expiry, sweep, revocation, replacement */
    M2MHSM_GONE_ELSEWHERE   /* another process erased it; learnt at a lookup or a sweep */
} m2mhsm_gone;

typedef void (*m2mhsm_erase_observer)(void *arg, const m2mhsm_record *rec, m2mhsm_gone how);

/*
 * Be told of every record that leaves the token, whatever the cause, so that what was
 * made from it (in-memory session copies, PSK handles, connections keyed with it) goes
 * too. Called on the thread that erased the record, or that learnt another process had:
 * at once for this store's own erasures; for another process's, at the next lookup of
 * that identity or the next m2mhsm_keystore_sweep, whichever comes first. Called without
 * the store's lock held; an observer must not erase. At most M2MHSM_WATCH_MAX observers.
 */
#define M2MHSM_WATCH_MAX 4
m2mhsm_status m2mhsm_keystore_watch(m2mhsm_keystore *ks, m2mhsm_erase_observer fn, void *arg);
/* Stop telling fn (with arg). */
void m2mhsm_keystore_unwatch(m2mhsm_keystore *ks, m2mhsm_erase_observer fn, void *arg);

/* Every complete record on the token (searched afresh), sorted by kind then identity: of
 * two records of one identity only the newest, the one lookups find. The caller frees *out
 * with free(). */
m2mhsm_status m2mhsm_keystore_list(m2mhsm_keystore *ks, m2mhsm_record **out, size_t *count);

/* What the token reports of a record's key objects (not the template they were made with). */
typedef struct {
    int sensitive;   /* CKA_SENSITIVE true on every key object of the record */
    int extractable; /* CKA_EXTRACTABLE true on any of them */
} m2mhsm_key_protection;
/* rec as listed or looked up; M2MHSM_E_INVALID_ARG for a record with no key objects (an
 * Enrolment configuration), M2MHSM_E_PKCS11 if the token would not tell. */
m2mhsm_status m2mhsm_keystore_protection(m2mhsm_keystore *ks, const m2mhsm_record *rec,
                                         m2mhsm_key_protection *out);

const char *m2mhsm_kind_name(m2mhsm_kind kind); /* "kpm", "ke", ... */
const char *m2mhsm_form_name(m2mhsm_form form); /* "raw", "tls12-pms", "tls13-es" */

#ifdef __cplusplus
}
#endif
#endif
