/* The store operations of the provisioning flow: Kpm import, the MEF's configuration,
 * Ke enrolment (10.3.1, 10.3.4), Km/Kpsa derivation (10.3.2, 10.3.3) and import. */
#include "ks.h"
#include "write.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

static void set_str(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;
    if (n >= cap)
        n = cap - 1; /* callers have validated lengths; never overflow regardless */
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

static int empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

static m2mhsm_status check_opt(m2mhsm_id_type t, const char *s)
{
    return empty(s) ? M2MHSM_OK : m2mhsm_id_check_str(t, s);
}

static void record_init(m2mhsm_keystore *ks, m2mhsm_record *rec, m2mhsm_kind kind,
                        const char *identity)
{
    memset(rec, 0, sizeof(*rec));
    rec->kind = kind;
    set_str(rec->identity, sizeof(rec->identity), identity);
    rec->created = m2mhsm_keystore_now(ks);
    rec->expiry = M2MHSM_NEVER;
}

/* Replace semantics: erase the previous record only after the new one is written, so a
 * failure leaves the old one in place (nothing lost). */
static m2mhsm_status erase_previous(m2mhsm_keystore *ks, const m2mhsm_record *prev)
{
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(ks->tok, &s);
    if (st != M2MHSM_OK)
        return st;
    st = ks_record_destroy(ks, s, prev);
    m2mhsm_token_session_put(ks->tok, s);
    return st;
}

/* The record a write replaces, if this process knows one (*had). A failed confirmation is
 * an error: taken for "none", the replacement would leave the old record valid. */
static m2mhsm_status known_previous(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *identity,
                                    m2mhsm_record *prev, int *had)
{
    m2mhsm_status st = ks_lookup_known(ks, kind, identity, prev);
    *had = st == M2MHSM_OK;
    return st == M2MHSM_E_NOT_FOUND ? M2MHSM_OK : st;
}

/* A seq above `after` and, where the clock allows, above any other process's from an
 * earlier instant: milliseconds of the real time (the store's clock may be a test's). */
static uint64_t next_seq(uint64_t after)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    return after + 1 > ms ? after + 1 : ms;
}

/* What this process knows under (kind, identity): the record it holds there, and an older
 * one of the identity that a crash left beside it (twins). */
static m2mhsm_status known_under(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *identity,
                                 ks_known *k)
{
    m2mhsm_status st = known_previous(ks, kind, identity, &k->prev, &k->had);
    if (st != M2MHSM_OK)
        return st;
    pthread_mutex_lock(&ks->lock);
    const m2mhsm_record *twin = ks_index_get(&ks->twins, kind, identity, strlen(identity));
    k->had_twin = twin != NULL && (!k->had || memcmp(twin->record_id, k->prev.record_id,
                                                     M2MHSM_RECORD_ID_LEN) != 0);
    if (k->had_twin)
        k->twin = *twin;
    pthread_mutex_unlock(&ks->lock);
    return M2MHSM_OK;
}

/* The seq of a record that replaces what k holds: above both, so it is the newest. */
static uint64_t seq_after(const ks_known *k)
{
    uint64_t after = k->had ? k->prev.seq : 0;
    if (k->had_twin && k->twin.seq > after)
        after = k->twin.seq;
    return next_seq(after);
}

/* The index's older twin, confirmed first: its handles may name other objects by now. */
static m2mhsm_status erase_twin(m2mhsm_keystore *ks, const m2mhsm_record *twin)
{
    m2mhsm_status st = ks_confirm(ks, twin);
    if (st == M2MHSM_OK)
        return erase_previous(ks, twin);
    if (st == M2MHSM_E_NOT_FOUND) {
        pthread_mutex_lock(&ks->lock);
        ks_index_forget(ks, twin);
        pthread_mutex_unlock(&ks->lock);
        return M2MHSM_OK;
    }
    return st;
}

/* Whether a record whose erase failed is still whole: its objects go keys first, so it is
 * whole while the first of them exists. */
static int still_whole(m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    CK_OBJECT_HANDLE first = ks_obj(rec)->meta;
    for (int f = M2MHSM_FORM_COUNT - 1; f >= 0; f--)
        if (ks_obj(rec)->key[f] != CK_INVALID_HANDLE)
            first = ks_obj(rec)->key[f];
    CK_SESSION_HANDLE s;
    if (m2mhsm_token_session_get(ks->tok, &s) != M2MHSM_OK)
        return 1;
    int whole = ks_may_exist(ks->tok, s, first);
    m2mhsm_token_session_put(ks->tok, s);
    return whole;
}

/* The previous record (NULL: the Km/Kpsa of a Ke not yet erased) could not be erased. While it is
 * whole, take the new one back, so the store holds the old state rather than both (two valid Ke for
 * one KpmID, or two Km under one KeID); once it is torn (unusable, left to repair), the new one is
 * the state to keep. Either way the erase's error is reported. */
static m2mhsm_status undo_replacement(m2mhsm_keystore *ks, const m2mhsm_record *prev,
                                      const m2mhsm_record *fresh, m2mhsm_status st)
{
    char first[256];
    snprintf(first, sizeof(first), "replacing the previous record: %s", m2mhsm_last_error());
    CK_SESSION_HANDLE s;
    if (still_whole(ks, prev) && m2mhsm_token_session_get(ks->tok, &s) == M2MHSM_OK) {
        ks_record_destroy(ks, s, fresh);
        m2mhsm_token_session_put(ks->tok, s);
    }
    return m2mhsm_fail(st, "%s", first);
}

m2mhsm_status ks_replace_begin(m2mhsm_keystore *ks, m2mhsm_record *rec, ks_known *known)
{
    m2mhsm_status st = known_under(ks, rec->kind, rec->identity, known);
    if (st == M2MHSM_OK)
        rec->seq = seq_after(known);
    return st;
}

m2mhsm_status ks_replace_end(m2mhsm_keystore *ks, const ks_known *k, const m2mhsm_record *fresh)
{
    m2mhsm_status st;
    if (k->had && (st = erase_previous(ks, &k->prev)) != M2MHSM_OK)
        return undo_replacement(ks, &k->prev, fresh, st);
    if (k->had_twin && (st = erase_twin(ks, &k->twin)) != M2MHSM_OK)
        return m2mhsm_fail(st,
                           "the new record is stored and current, but an older one of its "
                           "identity could not be erased (the next open or sweep will): %s",
                           m2mhsm_last_error());
    return M2MHSM_OK;
}

m2mhsm_status ks_kpm_check(const char *kpm_id, const uint8_t *kpm, size_t kpm_len)
{
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_KPM, kpm_id);
    if (st != M2MHSM_OK)
        return st;
    if (kpm == NULL || kpm_len < M2MHSM_PSK_MIN || kpm_len > M2MHSM_PSK_MAX)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "Kpm must be %d to %d bytes", M2MHSM_PSK_MIN,
                           M2MHSM_PSK_MAX);
    return M2MHSM_OK;
}

m2mhsm_status ks_kpm_write(m2mhsm_keystore *ks, const char *kpm_id, const uint8_t *kpm,
                           size_t kpm_len, m2mhsm_time valid_until, m2mhsm_record *out)
{
    m2mhsm_status st = ks_kpm_check(kpm_id, kpm, kpm_len);
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_record rec;
    record_init(ks, &rec, M2MHSM_KIND_KPM, kpm_id);
    if (!m2mhsm_expiry_is_valid(valid_until, rec.created))
        return m2mhsm_fail(M2MHSM_E_EXPIRED, "--valid-until is not in the future");
    set_str(rec.kpm_id, sizeof(rec.kpm_id), kpm_id);
    rec.expiry = valid_until;
    st = ks_write_psk(ks, &rec, kpm, kpm_len);
    if (st == M2MHSM_OK && out != NULL)
        *out = rec;
    return st;
}

m2mhsm_status m2mhsm_keystore_import_kpm(m2mhsm_keystore *ks, const char *kpm_id,
                                         const uint8_t *kpm, size_t kpm_len,
                                         m2mhsm_time valid_until, m2mhsm_record *out)
{
    m2mhsm_status st = ks_kpm_check(kpm_id, kpm, kpm_len);
    if (st != M2MHSM_OK)
        return st;
    if (!m2mhsm_expiry_is_valid(valid_until, m2mhsm_keystore_now(ks)))
        return m2mhsm_fail(M2MHSM_E_EXPIRED, "--valid-until is not in the future");
    /* A search on a miss: no KpmID is imported twice, even by two processes. */
    m2mhsm_record prev;
    st = m2mhsm_keystore_lookup(ks, M2MHSM_KIND_KPM, kpm_id, strlen(kpm_id), &prev);
    if (st == M2MHSM_OK)
        return m2mhsm_fail(M2MHSM_E_EXISTS, "a Kpm with this KpmID exists; erase it first");
    if (st != M2MHSM_E_NOT_FOUND)
        return st;
    return ks_kpm_write(ks, kpm_id, kpm, kpm_len, valid_until, out);
}

m2mhsm_status m2mhsm_keystore_configure_enrolee(m2mhsm_keystore *ks, const char *kpm_id,
                                                const char *target_id, const char *enrolee_id,
                                                const m2mhsm_expiry_spec *expiry)
{
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_KPM, kpm_id);
    if (st == M2MHSM_OK)
        st = m2mhsm_id_check_str(M2MHSM_ID_TARGET, target_id);
    if (st == M2MHSM_OK)
        st = m2mhsm_id_check_str(M2MHSM_ID_M2M_ABS, enrolee_id);
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_record rec;
    record_init(ks, &rec, M2MHSM_KIND_ENROLMENT, kpm_id);
    m2mhsm_time probe;
    if (expiry == NULL || (st = m2mhsm_expiry_resolve(expiry, rec.created, &probe)) != M2MHSM_OK)
        return expiry == NULL ? m2mhsm_fail(M2MHSM_E_INVALID_ARG, "Enrolment Expiry missing") : st;
    set_str(rec.kpm_id, sizeof(rec.kpm_id), kpm_id);
    set_str(rec.target_id, sizeof(rec.target_id), target_id);
    set_str(rec.enrolee_id, sizeof(rec.enrolee_id), enrolee_id);
    rec.enrolment_expiry = *expiry;
    ks_known known;
    if ((st = ks_replace_begin(ks, &rec, &known)) != M2MHSM_OK)
        return st;
    ks_key_spec none[M2MHSM_FORM_COUNT] = {{0}};
    st = ks_record_write(ks, &rec, none);
    return st == M2MHSM_OK ? ks_replace_end(ks, &known, &rec) : st;
}

static m2mhsm_status check_enrolment(const m2mhsm_enrolment *enr)
{
    if (enr == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "enrolment is NULL");
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_KPM, enr->kpm_id);
    if (st == M2MHSM_OK)
        st = m2mhsm_id_check_str(M2MHSM_ID_FQDN, enr->mef_fqdn);
    if (st == M2MHSM_OK)
        st = check_opt(M2MHSM_ID_M2M_ABS, enr->enrolee_id);
    if (st == M2MHSM_OK)
        st = check_opt(M2MHSM_ID_TARGET, enr->target_id);
    return st;
}

/* Re-enrolment (8.3.2.1): the Ke records of the KpmID that the new one replaces, as this
 * process knows them (the index holds every record that existed at open and every one
 * written or found since), and the seq that puts the new Ke after all of them. */
static uint64_t replaced_ke(m2mhsm_keystore *ks, const char *kpm_id, ks_replaced *old)
{
    size_t len = strlen(kpm_id);
    uint64_t seq = 0;
    pthread_mutex_lock(&ks->lock);
    const m2mhsm_record *newest = ks_index_get(&ks->by_kpm, M2MHSM_KIND_KE, kpm_id, len);
    const m2mhsm_record *earlier = ks_index_get(&ks->displaced, M2MHSM_KIND_KE, kpm_id, len);
    set_str(old->ke_id[0], sizeof(old->ke_id[0]), newest != NULL ? newest->identity : "");
    set_str(old->ke_id[1], sizeof(old->ke_id[1]), earlier != NULL ? earlier->identity : "");
    if (newest != NULL)
        seq = newest->seq;
    pthread_mutex_unlock(&ks->lock);
    return next_seq(seq);
}

/* A replaced enrolment: its Ke and the Km/Kpsa derived from it (identity = KeID), as the
 * index knows them. No token scan: re-enrolment runs on a server's event loop, and a scan
 * costs time proportional to the token. A copy only another process has seen is left to
 * its expiry and the sweep. */
static m2mhsm_status erase_known_enrolment(m2mhsm_keystore *ks, const char *ke_id)
{
    static const m2mhsm_kind kinds[] = {M2MHSM_KIND_KM, M2MHSM_KIND_KPSA, M2MHSM_KIND_KE};
    m2mhsm_status st = M2MHSM_OK;
    for (size_t i = 0; st == M2MHSM_OK && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        ks_known known;
        st = known_under(ks, kinds[i], ke_id, &known);
        if (st == M2MHSM_OK && known.had)
            st = erase_previous(ks, &known.prev);
        if (st == M2MHSM_OK && known.had_twin)
            st = erase_twin(ks, &known.twin);
    }
    return st;
}

m2mhsm_status ks_ke_write(m2mhsm_keystore *ks, const m2mhsm_enrolment *enr,
                          const uint8_t exported[M2MHSM_EXPORT_LEN], m2mhsm_record *out,
                          ks_replaced *old)
{
    m2mhsm_status st = check_enrolment(enr);
    if (st != M2MHSM_OK)
        return st;
    if (exported == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "exported keying material is NULL");
    uint8_t rel[M2MHSM_RELATIVE_KE_ID_LEN], ke[M2MHSM_KE_LEN];
    m2mhsm_export_split(exported, rel, ke);
    m2mhsm_record rec;
    record_init(ks, &rec, M2MHSM_KIND_KE, "");
    rec.seq = replaced_ke(ks, enr->kpm_id, old);
    st = m2mhsm_ke_id_format(rel, enr->mef_fqdn, rec.identity, sizeof(rec.identity));
    if (st == M2MHSM_OK)
        st = m2mhsm_expiry_resolve(&enr->enrolment_expiry, rec.created, &rec.expiry);
    if (st == M2MHSM_OK) {
        set_str(rec.kpm_id, sizeof(rec.kpm_id), enr->kpm_id);
        set_str(rec.enrolee_id, sizeof(rec.enrolee_id), enr->enrolee_id);
        set_str(rec.target_id, sizeof(rec.target_id), enr->target_id);
        rec.enrolment_expiry = enr->enrolment_expiry;
        ks_key_spec specs[M2MHSM_FORM_COUNT] = {{0}};
        specs[M2MHSM_FORM_RAW] = (ks_key_spec){ke, sizeof(ke), CK_TRUE, NULL, NULL};
        st = ks_record_write(ks, &rec, specs);
    }
    OPENSSL_cleanse(ke, sizeof(ke));
    OPENSSL_cleanse(rel, sizeof(rel));
    if (st == M2MHSM_OK)
        *out = rec;
    return st;
}

m2mhsm_status ks_ke_erase_replaced(m2mhsm_keystore *ks, const m2mhsm_record *rec,
                                   const ks_replaced *old)
{
    m2mhsm_status st = M2MHSM_OK;
    for (size_t i = 0; st == M2MHSM_OK && i < sizeof(old->ke_id) / sizeof(old->ke_id[0]); i++)
        if (old->ke_id[i][0] != '\0' && strcmp(old->ke_id[i], rec->identity) != 0)
            st = erase_known_enrolment(ks, old->ke_id[i]);
    return st;
}

/* Write first, erase after: a failed write leaves the old enrolment as it was, and from the
 * moment the new Ke exists it alone is current (ks_record_newer), so a crash before the erase
 * leaves an old Ke that nobody uses and the next open or sweep erases. */
m2mhsm_status m2mhsm_keystore_store_ke(m2mhsm_keystore *ks, const m2mhsm_enrolment *enr,
                                       const uint8_t exported[M2MHSM_EXPORT_LEN],
                                       m2mhsm_record *out)
{
    m2mhsm_record rec;
    ks_replaced old;
    m2mhsm_status st = ks_ke_write(ks, enr, exported, &rec, &old);
    if (st != M2MHSM_OK)
        return st;
    st = ks_ke_erase_replaced(ks, &rec, &old);
    if (st != M2MHSM_OK)
        return m2mhsm_fail(st,
                           "the new Ke is stored and current, but the one it replaces "
                           "could not be erased (the next open or sweep will): %s",
                           m2mhsm_last_error());
    if (out != NULL)
        *out = rec;
    return M2MHSM_OK;
}

/* A Ke that may key a derivation now: valid, current, and named by this process's handles. */
static m2mhsm_status ke_usable(m2mhsm_keystore *ks, const m2mhsm_record *ke)
{
    if (ke == NULL || ke->kind != M2MHSM_KIND_KE)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "derive: needs a Ke record");
    if (!m2mhsm_record_valid(ks, ke))
        return m2mhsm_fail(M2MHSM_E_EXPIRED, "Ke has passed its Enrolment Expiry");
    /* A record looked up before a newer enrolment of its KpmID names a retired key. */
    if (m2mhsm_record_superseded(ks, ke))
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND, "Ke superseded by a newer enrolment of its KpmID");
    /* Handles are per module initialisation: a record from before a fork names nothing. */
    m2mhsm_status gst = m2mhsm_token_ensure_attached(ks->tok);
    if (gst != M2MHSM_OK)
        return gst;
    if (ks_obj(ke)->generation != m2mhsm_token_generation(ks->tok))
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND, "the Ke record predates a fork; look it up again");
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_keystore_derive(m2mhsm_keystore *ks, const m2mhsm_record *ke,
                                     m2mhsm_derivation which, const char *target_id,
                                     uint8_t out[M2MHSM_KEY_LEN])
{
    if (out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "derive: needs an output buffer");
    m2mhsm_status st = ke_usable(ks, ke);
    if (st != M2MHSM_OK)
        return st;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    if ((st = m2mhsm_derivation_input(which, target_id, &msg, &msg_len)) != M2MHSM_OK)
        return st;
    st = m2mhsm_token_hmac_sha256(ks->tok, ks_obj(ke)->key[M2MHSM_FORM_RAW], msg, msg_len, out);
    free(msg);
    return st;
}

static m2mhsm_kind derived_kind(m2mhsm_derivation which)
{
    return which == M2MHSM_DERIVE_KM ? M2MHSM_KIND_KM : M2MHSM_KIND_KPSA;
}

/* Store a Km/Kpsa under identity ke_id, replacing an earlier one: from key bytes, or (key
 * NULL) derived on the token from the Ke object by HKDF over msg. */
static m2mhsm_status write_derived(m2mhsm_keystore *ks, m2mhsm_record *rec, const uint8_t *key,
                                   size_t len, CK_OBJECT_HANDLE ke, const uint8_t *msg,
                                   size_t msg_len)
{
    ks_known known;
    m2mhsm_status st = ks_replace_begin(ks, rec, &known);
    if (st == M2MHSM_OK)
        st = key != NULL ? ks_write_psk(ks, rec, key, len)
                         : ks_write_hkdf(ks, rec, ke, msg, msg_len);
    return st == M2MHSM_OK ? ks_replace_end(ks, &known, rec) : st;
}

/* Today's path: C_Sign's HMAC output in host memory, imported and cleansed. */
static m2mhsm_status write_signed(m2mhsm_keystore *ks, m2mhsm_record *rec, const m2mhsm_record *ke,
                                  const uint8_t *msg, size_t msg_len)
{
    uint8_t key[M2MHSM_KEY_LEN];
    m2mhsm_status st =
        m2mhsm_token_hmac_sha256(ks->tok, ks_obj(ke)->key[M2MHSM_FORM_RAW], msg, msg_len, key);
    if (st == M2MHSM_OK)
        st = write_derived(ks, rec, key, sizeof(key), CK_INVALID_HANDLE, NULL, 0);
    OPENSSL_cleanse(key, sizeof(key));
    return st;
}

/* Inside the token where it offers CKM_HKDF_DERIVE. A token that refuses to digest the key
 * for its TLS 1.2 form (M2MHSM_E_UNSUPPORTED; nothing was written) gets today's path. */
static m2mhsm_status write_new_derived(m2mhsm_keystore *ks, m2mhsm_record *rec,
                                       const m2mhsm_record *ke, const uint8_t *msg, size_t msg_len)
{
    if (m2mhsm_token_caps_get(ks->tok)->hkdf_derive) {
        m2mhsm_status st =
            write_derived(ks, rec, NULL, 0, ks_obj(ke)->key[M2MHSM_FORM_RAW], msg, msg_len);
        if (st != M2MHSM_E_UNSUPPORTED)
            return st;
    }
    return write_signed(ks, rec, ke, msg, msg_len);
}

m2mhsm_status m2mhsm_keystore_derive_store(m2mhsm_keystore *ks, const m2mhsm_record *ke,
                                           m2mhsm_derivation which, const char *target_id,
                                           m2mhsm_time requested_expiry, m2mhsm_record *out)
{
    m2mhsm_status st = ke_usable(ks, ke);
    if (st != M2MHSM_OK)
        return st;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    if ((st = m2mhsm_derivation_input(which, target_id, &msg, &msg_len)) != M2MHSM_OK)
        return st;
    m2mhsm_record rec;
    record_init(ks, &rec, derived_kind(which), ke->identity);
    set_str(rec.kpm_id, sizeof(rec.kpm_id), ke->kpm_id);
    set_str(rec.ke_id, sizeof(rec.ke_id), ke->identity);
    set_str(rec.enrolee_id, sizeof(rec.enrolee_id), ke->enrolee_id);
    set_str(rec.target_id, sizeof(rec.target_id), target_id);
    /* The CR, clause 10.x: Km/Kpsa never outlive Ke. */
    rec.expiry = m2mhsm_expiry_clamp(requested_expiry, ke->expiry);
    if (!m2mhsm_expiry_is_valid(rec.expiry, rec.created))
        st = m2mhsm_fail(M2MHSM_E_EXPIRED, "the requested lifetime has already passed");
    else
        st = write_new_derived(ks, &rec, ke, msg, msg_len);
    free(msg);
    if (st == M2MHSM_OK && out != NULL)
        *out = rec;
    return st;
}

m2mhsm_status m2mhsm_keystore_store_fetched(m2mhsm_keystore *ks, const m2mhsm_fetched_key *fk,
                                            const uint8_t *key, size_t key_len, m2mhsm_record *out)
{
    if (fk == NULL || key == NULL || (fk->kind != M2MHSM_KIND_KM && fk->kind != M2MHSM_KIND_KPSA))
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "store_fetched: needs a Km or Kpsa");
    char ke_id[M2MHSM_KE_ID_MAX + 1];
    m2mhsm_status st = m2mhsm_id_canonical(
        M2MHSM_ID_KE, fk->ke_id, fk->ke_id != NULL ? strlen(fk->ke_id) : 0, ke_id, sizeof(ke_id));
    if (st == M2MHSM_OK)
        st = check_opt(M2MHSM_ID_M2M_ABS, fk->enrolee_id);
    if (st == M2MHSM_OK)
        st = check_opt(M2MHSM_ID_TARGET, fk->target_id);
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_record rec;
    record_init(ks, &rec, fk->kind, ke_id);
    rec.expiry = m2mhsm_expiry_clamp(fk->requested, fk->lifetime);
    if (!m2mhsm_expiry_is_valid(rec.expiry, rec.created))
        return m2mhsm_fail(M2MHSM_E_EXPIRED, "the key's lifetime has already passed");
    set_str(rec.ke_id, sizeof(rec.ke_id), ke_id);
    set_str(rec.enrolee_id, sizeof(rec.enrolee_id), fk->enrolee_id);
    set_str(rec.target_id, sizeof(rec.target_id), fk->target_id);
    st = write_derived(ks, &rec, key, key_len, CK_INVALID_HANDLE, NULL, 0);
    if (st == M2MHSM_OK && out != NULL)
        *out = rec;
    return st;
}
