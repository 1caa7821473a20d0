/* Keystore internals shared by src/keystore/ files. */
#ifndef M2MHSM_KS_H
#define M2MHSM_KS_H

#include <pthread.h>
#include <m2mhsm/keystore.h>
#include "../internal.h"
#include "record.h"
#include "../p11/handles.h"

#define M2MHSM_APPLICATION "m2mhsm"   /* CKA_APPLICATION of every metadata object */
#define M2MHSM_LABEL_PREFIX "m2mhsm:" /* CKA_LABEL prefix of every object we create */
#define M2MHSM_LABEL_MAX (sizeof(M2MHSM_LABEL_PREFIX) + 16 + M2MHSM_ID_MAX + 16)
#define M2MHSM_META_MAX 2048 /* metadata text is far shorter; larger is corrupt */

/* ---- meta.c: the metadata text in CKA_VALUE (docs/key-lifecycle.md) ---- */
/* Serialise rec into buf (>= M2MHSM_META_MAX); *len = bytes written. */
m2mhsm_status ks_meta_encode(const m2mhsm_record *rec, char *buf, size_t *len);
/* Parse and validate; handles in rec are set to CK_INVALID_HANDLE. */
m2mhsm_status ks_meta_decode(const char *buf, size_t len, m2mhsm_record *rec);
/* Bit (1u << form) for each form a record of this kind can have: what a record written
 * before forms= existed has (a Kpm, Km or Kpsa written since has rec->forms). */
unsigned ks_kind_forms(m2mhsm_kind kind);
const char *ks_form_name(m2mhsm_form form);
int ks_kind_is_credential(m2mhsm_kind kind); /* Ke, Km, Kpsa: subject to Enrolment Expiry */
int ks_kind_is_psk(m2mhsm_kind kind);        /* Kpm, Km, Kpsa: forms as the writer chose */
/* The forms a record must have: rec->forms, or for 0 (a record built without choosing,
 * written as before forms= existed) all of its kind's. */
unsigned ks_record_forms(const m2mhsm_record *rec);
/* A write may replace a record of this kind under the same identity (every kind but Kpm,
 * whose import refuses an existing KpmID): its metadata carries seq. */
int ks_kind_replaceable(m2mhsm_kind kind);
/* The grammar of a kind's identity: KpmID for kpm and enrolment records, KeID otherwise. */
m2mhsm_id_type ks_identity_type(m2mhsm_kind kind);
/* "m2mhsm:<kind>:<identity>" and, for a key object, ":<form>". */
void ks_meta_label(const m2mhsm_record *rec, char *buf, size_t len);
void ks_key_label(const m2mhsm_record *rec, m2mhsm_form form, char *buf, size_t len);
/* The form named by a key label's suffix, or -1. */
int ks_label_form(const char *label);
/* 1 if label is exactly "m2mhsm:<kind>:<identity>:<form>" with a known kind, an identity of
 * that kind's grammar and a known form: the only keys m2mhsm ever treats as its own. */
int ks_label_parse(const char *label, m2mhsm_kind *kind, int *form);
/* The record id of metadata too damaged to decode, so its keys can be protected. */
int ks_meta_salvage_id(const char *buf, size_t len, uint8_t id[M2MHSM_RECORD_ID_LEN]);

/* ---- objects.c: one wrapper per PKCS#11 object call ---- */
typedef struct ks_key_spec ks_key_spec;
/* Makes a key on the token from the record's base template (unwrap, digest-derive). */
typedef m2mhsm_status (*ks_key_maker)(const ks_key_spec *spec, CK_SESSION_HANDLE s,
                                      const m2mhsm_record *rec, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                      CK_OBJECT_HANDLE *out);
struct ks_key_spec {
    const uint8_t *value; /* key bytes to import, or NULL when `make` makes it */
    size_t len;
    CK_BBOOL sign; /* CKA_SIGN: HMAC with this key */
    ks_key_maker make;
    void *make_arg;
};

/* Create an object; C_CreateObject-like makers (unwrap) go through ks_create_adapting. */
typedef m2mhsm_status (*ks_creator)(void *arg, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                    CK_OBJECT_HANDLE *out);
/* tmpl without every attribute of that type (in place); returns the new count. */
CK_ULONG ks_template_drop(CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE type);
/* create(arg, tmpl) with CKA_COPYABLE where the token takes it (m2mhsm_token_caps), and once
 * more without it where a stored create with it fails (the token then takes it no more).
 * tmpl may be reordered. */
m2mhsm_status ks_create_adapting(m2mhsm_token *tok, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                 ks_creator create, void *arg, CK_OBJECT_HANDLE *out);
/* ks_create_adapting with C_CreateObject; `what` names the call in errors. */
m2mhsm_status ks_create_object(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl,
                               CK_ULONG n, const char *what, CK_OBJECT_HANDLE *out);

/* ---- metaobj.c: record metadata objects, in the form the token takes ---- */
/* Write rec's metadata: a private CKO_DATA object, or where the token refuses those, a
 * private metadata key (docs/key-lifecycle.md, "Metadata objects"). */
m2mhsm_status ks_create_meta(m2mhsm_token *tok, CK_SESSION_HANDLE s, const m2mhsm_record *rec,
                             CK_OBJECT_HANDLE *out);
/* Every stored metadata object of either form, of one record label ("m2mhsm:<kind>:<id>",
 * ks_meta_label) or of all (label NULL). *out is malloc'd. */
m2mhsm_status ks_find_meta(m2mhsm_token *tok, CK_SESSION_HANDLE s, const char *label,
                           CK_OBJECT_HANDLE **out, size_t *count);
/* Fill `tmpl` (>= KS_KEY_TEMPLATE_LEN entries) with the attributes every m2mhsm key
 * carries; the caller adds CKA_VALUE where it imports bytes. Returns the count. */
#define KS_KEY_TEMPLATE_LEN 24
typedef struct {
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE type;
    CK_BBOOL t, f, sign;
    CK_DATE start, end;
    char label[M2MHSM_LABEL_MAX];
} ks_key_attrs;
CK_ULONG ks_key_template(const m2mhsm_record *rec, m2mhsm_form form, CK_BBOOL sign, ks_key_attrs *a,
                         CK_ATTRIBUTE *tmpl);
m2mhsm_status ks_create_key(m2mhsm_token *tok, CK_SESSION_HANDLE s, const m2mhsm_record *rec,
                            m2mhsm_form form, const ks_key_spec *spec, CK_OBJECT_HANDLE *out);
/* Destroy; an object already gone counts as destroyed (another process got there first). */
m2mhsm_status ks_destroy(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h);
/* 0 if h names no object (CKR_OBJECT_HANDLE_INVALID); 1 if it does or the read failed. */
int ks_may_exist(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h);
/* All objects matching tmpl. *out is malloc'd. */
m2mhsm_status ks_find(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                      CK_OBJECT_HANDLE **out, size_t *count);
/* The two readers below return M2MHSM_E_NOT_FOUND when the object vanished meanwhile
 * (CKR_OBJECT_HANDLE_INVALID): another thread or process destroyed it. */
/* A key's CKA_ID: its record id, shared by the record's forms; or, on a token that keeps
 * only one stored key per CKA_ID (m2mhsm_token_caps.distinct_key_ids), the record id and
 * the form's number (docs/key-lifecycle.md). */
#define KS_KEY_ID_MAX (M2MHSM_RECORD_ID_LEN + 1)
/* 1 if id (id_len bytes) is a CKA_ID the key of `form` may carry; its first
 * M2MHSM_RECORD_ID_LEN bytes are then the record id. */
int ks_key_id_ok(const uint8_t *id, size_t id_len, int form);
/* Read CKA_LABEL (NUL-terminated, truncated to label_len-1) and CKA_ID (id: KS_KEY_ID_MAX
 * bytes) of a key object. *id_len = 0 if it has no CKA_ID. */
m2mhsm_status ks_read_key_ids(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                              char *label, size_t label_len, uint8_t *id, size_t *id_len);
/* Read and decode a metadata object of either form. On M2MHSM_E_CORRUPT, ks_obj(rec)->meta is h and
 * rec->record_id holds the record id if it could still be read, else ks_obj(rec)->meta is
 * CK_INVALID_HANDLE. */
m2mhsm_status ks_read_meta(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                           m2mhsm_record *rec);

/* SHA-256(prefix || key) on the token (C_DigestKey); M2MHSM_E_UNSUPPORTED if the token
 * will not digest the key (CKR_KEY_INDIGESTIBLE). unwrap.c. */
m2mhsm_status ks_digest_key(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                            const uint8_t *prefix, size_t prefix_len, uint8_t out[32]);

/* ---- index.c: (kind, identity) -> record, O(1) ---- */
typedef struct ks_entry ks_entry;
typedef struct {
    ks_entry **buckets;
    size_t nbuckets, count;
    uint64_t salt;
} ks_index;

m2mhsm_status ks_index_init(ks_index *idx, size_t expected);
void ks_index_free(ks_index *idx);
/* Insert or replace the entry under (kind, key) with a copy of rec. */
m2mhsm_status ks_index_put(ks_index *idx, m2mhsm_kind kind, const char *key,
                           const m2mhsm_record *rec);
const m2mhsm_record *ks_index_get(const ks_index *idx, m2mhsm_kind kind, const char *key,
                                  size_t len);
/* When the entry under (kind, key) was last confirmed on the token (monotonic ms), for
 * reading and updating under the keystore lock; NULL if there is no such entry. */
int64_t *ks_index_confirmed(ks_index *idx, m2mhsm_kind kind, const char *key, size_t len);
/* The shared write epoch (+1) at which the entry was last confirmed or, in the negative
 * cache, found absent; NULL if there is no such entry. Under the keystore lock. */
uint64_t *ks_index_confirmed_epoch(ks_index *idx, m2mhsm_kind kind, const char *key, size_t len);
/* Remove the entry under (kind, key) if it still holds the record with rec's record id. */
void ks_index_del(ks_index *idx, m2mhsm_kind kind, const char *key, const m2mhsm_record *rec);

/* ---- keystore.c ---- */
struct m2mhsm_keystore {
    m2mhsm_token *tok;
    CK_FUNCTION_LIST *fn;
    m2mhsm_clock_fn clock;
    void *clock_arg;
    int64_t orphan_grace;
    int64_t revalidate_ms;
    int read_only;        /* opened to inspect: never creates or destroys an object */
    unsigned psk_forms;   /* the forms of the Kpm, Km and Kpsa records it writes */
    pthread_mutex_t lock; /* guards idx and generation */
    m2mhsm_forksafe fork; /* lock, taken around fork() (internal.h) */
    unsigned generation;
    ks_index idx;       /* (kind, identity) -> record */
    ks_index by_kpm;    /* (M2MHSM_KIND_KE, KpmID) -> the newest Ke of that KpmID this process
                           has seen, kept after it is erased: older ones stay superseded */
    ks_index displaced; /* (M2MHSM_KIND_KE, KpmID) -> a Ke that by_kpm no longer names and
                           that may still be on the token: re-enrolment erases it */
    ks_index twins;     /* (kind, identity) -> an older record of the identity that idx no
                           longer names and that may still be on the token (a replacement
                           cut short): the next replacement erases it */
    ks_index absent;    /* (kind, identity) searched for and not found, with the epoch */
    struct {
        m2mhsm_erase_observer fn;
        void *arg;
    } watch[M2MHSM_WATCH_MAX]; /* told of every record that leaves the token; under lock */
    size_t nwatch;
};

/* Every m2mhsm record on the token, keys attached, plus what is wrong. */
typedef struct {
    m2mhsm_record *recs;
    size_t count, cap;
    CK_OBJECT_HANDLE *orphans; /* keys with our label and no metadata */
    size_t orphan_count, orphan_cap;
    size_t corrupt;   /* metadata that does not decode */
    size_t kept_keys; /* keys of corrupt metadata, kept for an operator */
} ks_scan;

m2mhsm_status ks_scan_token(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *out);
/* ---- supersede.c: only the newest record of an identity, the newest Ke of a KpmID ---- */
/* 1 if record a is newer than record b (same identity, or Ke of one KpmID): seq, then
 * created, then record id. */
int ks_record_newer(const m2mhsm_record *a, const m2mhsm_record *b);
/* (*marks)[i] = 1 for each complete record of the scan that is superseded: one older than
 * another complete record of its kind and identity, a Ke older than the newest complete Ke
 * of its KpmID, or a Km/Kpsa naming a KpmID whose newest Ke is not the one it names.
 * *marks (sc->count bytes) is malloc'd; *count = records marked. */
m2mhsm_status ks_mark_superseded(const ks_scan *sc, unsigned char **marks, size_t *count);
void ks_scan_free(ks_scan *sc);
int ks_record_complete(const m2mhsm_record *rec);
/* ---- watch.c: what made copies of a record learns that it is gone ---- */
/* Tell the observers that rec left the token. Caller does not hold ks->lock. */
void ks_notify_gone(m2mhsm_keystore *ks, const m2mhsm_record *rec, m2mhsm_gone how);
/* After a scan of the token: forget every record the index holds that the scan did not find
 * and that is no longer on the token (another process erased it), and tell the observers. */
void ks_forget_vanished(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, const ks_scan *sc);
/* 1 if rec's objects are still on the token, as this process's handles name them. */
/* M2MHSM_OK: the record is on the token; M2MHSM_E_NOT_FOUND: gone; else a failed read. */
m2mhsm_status ks_still_there(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, const m2mhsm_record *rec);
/* Copies of the records of an index whose record id is not among ids (nids sorted record
 * ids); *out malloc'd, NULL when none. Under ks->lock. */
m2mhsm_status ks_index_missing(const ks_index *idx, const uint8_t *ids, size_t nids,
                               m2mhsm_record **out, size_t *count);
/* Forget a record in both indexes. Caller holds ks->lock. */
void ks_index_forget(m2mhsm_keystore *ks, const m2mhsm_record *rec);
/* Destroy a record: keys first, metadata last, so a crash never leaves a usable key
 * without metadata. Removes it from the index. */
m2mhsm_status ks_record_destroy(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, const m2mhsm_record *rec);
/* The same without the index and without taking the write lock (the caller holds it). */
m2mhsm_status ks_record_destroy_objects(m2mhsm_keystore *ks, CK_SESSION_HANDLE s,
                                        const m2mhsm_record *rec);
/* A record this process's index knows (confirmed on the token), without searching the
 * token on a miss: for replacing a record, where an unseen duplicate written by another
 * process is harmless (the newest wins and erase removes all). */
m2mhsm_status ks_lookup_known(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *identity,
                              m2mhsm_record *out);
/* Whether a record this process knows is still on the token: M2MHSM_OK, M2MHSM_E_NOT_FOUND
 * (destroyed, or its handle now names another object), or the failed read's error. */
m2mhsm_status ks_confirm(m2mhsm_keystore *ks, const m2mhsm_record *rec);
/* M2MHSM_E_INVALID_ARG, naming `what`, on a store opened read_only; else M2MHSM_OK. */
m2mhsm_status ks_check_writable(const m2mhsm_keystore *ks, const char *what);
/* Make sure the index belongs to this process's module generation (fork). */
m2mhsm_status ks_sync_generation(m2mhsm_keystore *ks);
void ks_index_insert(m2mhsm_keystore *ks, const m2mhsm_record *rec);

/* ---- store.c: replacing the record of an identity (a Km or Kpsa, a configuration) ---- */
/* What a write under (kind, identity) replaces, as this process knows it: the record it
 * holds there, and an older one of the identity that a crash left beside it (twins). */
typedef struct {
    m2mhsm_record prev, twin;
    int had, had_twin;
} ks_known;
/* Before the write of rec (kind and identity set): what it replaces, and rec->seq above
 * that, so the new record is the newest of its identity from the moment it is complete
 * and a crash before ks_replace_end leaves an older twin that nobody serves. */
m2mhsm_status ks_replace_begin(m2mhsm_keystore *ks, m2mhsm_record *rec, ks_known *known);
/* After the write of fresh: erase what it replaces. If the previous record cannot be
 * erased and is still whole, fresh is taken back (the old state, not both); the error is
 * reported either way. */
m2mhsm_status ks_replace_end(m2mhsm_keystore *ks, const ks_known *known,
                             const m2mhsm_record *fresh);
/* ---- store.c, unwrap.c: Kpm import without the existence check (batch.c judges that
 * by the index) ---- */
/* The KpmID's grammar and the Kpm's length. */
m2mhsm_status ks_kpm_check(const char *kpm_id, const uint8_t *kpm, size_t kpm_len);
m2mhsm_status ks_kpm_write(m2mhsm_keystore *ks, const char *kpm_id, const uint8_t *kpm,
                           size_t kpm_len, m2mhsm_time valid_until, m2mhsm_record *out);
/* The KpmID's grammar, the blob's length (RFC 3394/5649) and a KEK label given. */
m2mhsm_status ks_wrapped_check(const char *kpm_id, const uint8_t *wrapped, size_t wrapped_len,
                               const char *kek_label);
/* The one secret key labelled `label` (M2MHSM_E_NOT_FOUND: none). Searches the token. */
m2mhsm_status ks_find_kek(m2mhsm_keystore *ks, const char *label, CK_OBJECT_HANDLE *out);
/* Unwrap under kek into a session object and destroy it: the blob's integrity and the
 * key's length are checked and nothing is stored. */
m2mhsm_status ks_kpm_unwrap_probe(m2mhsm_keystore *ks, const uint8_t *wrapped, size_t wrapped_len,
                                  CK_OBJECT_HANDLE kek);
m2mhsm_status ks_kpm_unwrap_write(m2mhsm_keystore *ks, const char *kpm_id, const uint8_t *wrapped,
                                  size_t wrapped_len, CK_OBJECT_HANDLE kek, m2mhsm_time valid_until,
                                  m2mhsm_record *out);

/* ---- store.c: enrolment (m2mhsm_keystore_store_ke) in its two steps ---- */
/* The KeIDs of a KpmID that a new Ke replaces, as this process knows them: the newest
 * before it, and one found superseded earlier and perhaps still on the token. */
typedef struct {
    char ke_id[2][M2MHSM_KE_ID_MAX + 1];
} ks_replaced;
/* Step 1: write the new Ke, newest of its KpmID (seq above any this process knows), and
 * index it; *old = what it replaces. From here on every process that knows the new Ke
 * refuses the old ones, so a crash before step 2 leaves no second current Ke. */
m2mhsm_status ks_ke_write(m2mhsm_keystore *ks, const m2mhsm_enrolment *enr,
                          const uint8_t exported[M2MHSM_EXPORT_LEN], m2mhsm_record *out,
                          ks_replaced *old);
/* Step 2: erase the replaced Ke records and what was derived from them. */
m2mhsm_status ks_ke_erase_replaced(m2mhsm_keystore *ks, const m2mhsm_record *rec,
                                   const ks_replaced *old);

#endif
