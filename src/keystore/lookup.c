/* Identity -> record: an index hit confirmed by the write epoch or one attribute read, or a
 * token search. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The object a hit is confirmed on: the one a handshake uses next (a PSK's TLS 1.2 form,
 * or its TLS 1.3 form when it was stored without one). */
static CK_OBJECT_HANDLE primary(const m2mhsm_record *rec, int *form)
{
    *form = rec->kind == M2MHSM_KIND_KE ? M2MHSM_FORM_RAW : M2MHSM_FORM_TLS12_PMS;
    if (rec->kind == M2MHSM_KIND_ENROLMENT) {
        *form = -1;
        return ks_obj(rec)->meta;
    }
    if (!(ks_record_forms(rec) & (1u << *form)))
        *form = M2MHSM_FORM_TLS13_ES;
    return ks_obj(rec)->key[*form];
}

/* Another process may have destroyed the record (handle invalid) or, after a destroy, a
 * module may reuse the handle for another object: the label and CKA_ID must still match.
 * M2MHSM_OK if it is there, M2MHSM_E_NOT_FOUND if not; a failed read is an error, not an
 * absence, since callers act on absence (a replacement would keep the old record). */
m2mhsm_status ks_still_there(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, const m2mhsm_record *rec)
{
    int form;
    CK_OBJECT_HANDLE h = primary(rec, &form);
    char want[M2MHSM_LABEL_MAX], label[M2MHSM_LABEL_MAX];
    m2mhsm_status st;
    if (form < 0) {
        /* A configuration has no key; a replacement keeps the label, so compare the
         * record id inside the metadata (rare: the MEF reads it once per enrolment). */
        m2mhsm_record now;
        st = ks_read_meta(ks->tok, s, h, &now);
        if (st == M2MHSM_OK && memcmp(now.record_id, rec->record_id, M2MHSM_RECORD_ID_LEN) != 0)
            st = M2MHSM_E_NOT_FOUND;
        return st == M2MHSM_E_CORRUPT ? M2MHSM_E_NOT_FOUND : st;
    }
    ks_key_label(rec, (m2mhsm_form)form, want, sizeof(want));
    uint8_t id[M2MHSM_RECORD_ID_LEN];
    size_t id_len = 0;
    st = ks_read_key_ids(ks->tok, s, h, label, sizeof(label), id, &id_len);
    if (st != M2MHSM_OK)
        return st;
    int same = id_len == M2MHSM_RECORD_ID_LEN &&
               memcmp(id, rec->record_id, M2MHSM_RECORD_ID_LEN) == 0 && strcmp(label, want) == 0;
    return same ? M2MHSM_OK : M2MHSM_E_NOT_FOUND;
}

m2mhsm_status ks_confirm(m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(ks->tok, &s);
    if (st != M2MHSM_OK)
        return st;
    st = ks_still_there(ks, s, rec);
    m2mhsm_token_session_put(ks->tok, s);
    return st;
}

static m2mhsm_status attach_keys(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, m2mhsm_record *rec)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_ID, rec->record_id, M2MHSM_RECORD_ID_LEN},
    };
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    m2mhsm_status st = ks_find(ks->tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &h, &n);
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++) {
        char label[M2MHSM_LABEL_MAX];
        uint8_t id[M2MHSM_RECORD_ID_LEN];
        size_t id_len;
        st = ks_read_key_ids(ks->tok, s, h[i], label, sizeof(label), id, &id_len);
        if (st == M2MHSM_E_NOT_FOUND) {
            st = M2MHSM_OK;
            continue;
        }
        int form = st == M2MHSM_OK ? ks_label_form(label) : -1;
        if (form >= 0 && (ks_record_forms(rec) & (1u << form)))
            ks_obj(rec)->key[form] = h[i];
    }
    free(h);
    return st;
}

/* A miss: search the token for metadata with this label (another process may have written
 * it since we opened), then its keys. The newest complete record wins; every complete one
 * is indexed, so that an older one a crash left beside it is known to the next
 * replacement, which erases it. */
static m2mhsm_status search(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, m2mhsm_kind kind,
                            const char *identity, m2mhsm_record *out)
{
    m2mhsm_record probe = {.kind = kind};
    memcpy(probe.identity, identity, strlen(identity) + 1);
    char label[M2MHSM_LABEL_MAX];
    ks_meta_label(&probe, label, sizeof(label));
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)M2MHSM_APPLICATION, strlen(M2MHSM_APPLICATION)},
        {CKA_LABEL, label, strlen(label)},
    };
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    m2mhsm_status st = ks_find(ks->tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &h, &n);
    int found = 0;
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++) {
        m2mhsm_record rec;
        m2mhsm_status rs = ks_read_meta(ks->tok, s, h[i], &rec);
        if (rs != M2MHSM_OK && rs != M2MHSM_E_NOT_FOUND && rs != M2MHSM_E_CORRUPT)
            st = rs; /* a read error is no evidence of absence */
        if (rs != M2MHSM_OK || rec.kind != kind || strcmp(rec.identity, identity) != 0)
            continue;
        st = attach_keys(ks, s, &rec);
        if (st != M2MHSM_OK || !ks_record_complete(&rec))
            continue;
        pthread_mutex_lock(&ks->lock);
        ks_index_insert(ks, &rec);
        pthread_mutex_unlock(&ks->lock);
        if (!found || ks_record_newer(&rec, out)) {
            *out = rec;
            found = 1;
        }
    }
    free(h);
    if (st != M2MHSM_OK)
        return st;
    return found ? M2MHSM_OK : M2MHSM_E_NOT_FOUND;
}

/* Remember that (kind, identity) was searched for at this epoch and not found: a flood of
 * unknown psk_identity values then costs no search (lock file) or one attribute read
 * (epoch object) each until something is written. The cache is bounded; past the bound it
 * starts afresh. */
#define ABSENT_MAX 1024

static void note_absent(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *identity, uint64_t epoch)
{
    m2mhsm_record probe = {.kind = kind};
    pthread_mutex_lock(&ks->lock);
    if (ks->absent.count >= ABSENT_MAX || ks->absent.nbuckets == 0) {
        ks_index_free(&ks->absent);
        if (ks_index_init(&ks->absent, ABSENT_MAX) != M2MHSM_OK) {
            pthread_mutex_unlock(&ks->lock);
            return;
        }
    }
    if (ks_index_put(&ks->absent, kind, identity, &probe) == M2MHSM_OK) {
        uint64_t *at = ks_index_confirmed_epoch(&ks->absent, kind, identity, strlen(identity));
        if (at != NULL)
            *at = epoch + 1;
    }
    pthread_mutex_unlock(&ks->lock);
}

static m2mhsm_status lookup(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *id, size_t len,
                            m2mhsm_record *out, int search_on_miss)
{
    if (ks == NULL || out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "keystore_lookup: NULL argument");
    char identity[M2MHSM_ID_MAX + 1];
    m2mhsm_status st =
        m2mhsm_id_canonical(ks_identity_type(kind), id, len, identity, sizeof(identity));
    if (st != M2MHSM_OK)
        return st;
    if ((st = ks_sync_generation(ks)) != M2MHSM_OK)
        return st;

    int64_t t = ks->revalidate_ms > 0 ? monotonic_ms() : 0;
    /* An answer from memory must be the token's answer now: it is, if the write epoch
     * (which every writer moves) is what it was when the answer was confirmed. The lock
     * file's counter costs no call but speaks only for the processes sharing the file (a
     * write from outside it is noticed within M2MHSM_EPOCH_CHECK_MS), so it answers hits
     * only; a miss, and every lookup without a lock file, reads the token's epoch object:
     * one call, never stale (docs/key-lifecycle.md, "Answers from memory"). */
    uint64_t epoch = 0;
    int shared = m2mhsm_token_shared_epoch(ks->tok, &epoch), session = 0;
    pthread_mutex_lock(&ks->lock);
    int indexed = ks_index_get(&ks->idx, kind, identity, len) != NULL;
    pthread_mutex_unlock(&ks->lock);
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    if (!shared || !indexed) {
        if ((st = m2mhsm_token_session_get(ks->tok, &s)) != M2MHSM_OK)
            return st;
        session = 1;
        if ((st = m2mhsm_token_epoch_read(ks->tok, s, &epoch, &shared)) != M2MHSM_OK) {
            m2mhsm_token_session_put(ks->tok, s);
            return st;
        }
        epoch |= 1ull << 63; /* never equal to a lock file's counter */
    }
    pthread_mutex_lock(&ks->lock);
    const m2mhsm_record *hit = ks_index_get(&ks->idx, kind, identity, len);
    int have = hit != NULL, fresh = 0, known_absent = 0;
    if (have) {
        *out = *hit;
        int64_t *confirmed = ks_index_confirmed(&ks->idx, kind, identity, len);
        uint64_t *at = ks_index_confirmed_epoch(&ks->idx, kind, identity, len);
        fresh = (ks->revalidate_ms > 0 && t - *confirmed < ks->revalidate_ms) ||
                (shared && *at == epoch + 1);
    } else if (shared) {
        uint64_t *at = ks_index_confirmed_epoch(&ks->absent, kind, identity, len);
        known_absent = at != NULL && *at == epoch + 1;
    }
    pthread_mutex_unlock(&ks->lock);
    if ((fresh || known_absent) && session)
        m2mhsm_token_session_put(ks->tok, s);
    if (fresh) {
        ks_obj(out)->generation = m2mhsm_token_generation(ks->tok);
        return M2MHSM_OK;
    }
    if (known_absent)
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND, "no %s with that identity", m2mhsm_kind_name(kind));

    if (!session && (st = m2mhsm_token_session_get(ks->tok, &s)) != M2MHSM_OK)
        return st;
    unsigned gen = m2mhsm_token_generation(ks->tok);
    st = have ? ks_still_there(ks, s, out) : M2MHSM_E_NOT_FOUND;
    if (st != M2MHSM_OK && st != M2MHSM_E_NOT_FOUND) {
        m2mhsm_token_session_put(ks->tok, s);
        return st;
    }
    if (st == M2MHSM_OK) {
        m2mhsm_token_session_put(ks->tok, s);
        ks_obj(out)->generation = gen;
        pthread_mutex_lock(&ks->lock);
        int64_t *confirmed = ks_index_confirmed(&ks->idx, kind, identity, len);
        uint64_t *at = ks_index_confirmed_epoch(&ks->idx, kind, identity, len);
        if (confirmed != NULL)
            *confirmed = t;
        if (at != NULL && shared)
            *at = epoch + 1; /* the epoch read before the confirmation */
        pthread_mutex_unlock(&ks->lock);
        return M2MHSM_OK;
    }
    if (have) { /* another process erased or replaced it */
        pthread_mutex_lock(&ks->lock);
        ks_index_forget(ks, out);
        pthread_mutex_unlock(&ks->lock);
        ks_notify_gone(ks, out, M2MHSM_GONE_ELSEWHERE);
    }
    st = search_on_miss ? search(ks, s, kind, identity, out) : M2MHSM_E_NOT_FOUND;
    m2mhsm_token_session_put(ks->tok, s);
    if (st == M2MHSM_OK) {
        ks_obj(out)->generation = gen;
        pthread_mutex_lock(&ks->lock);
        ks_index_insert(ks, out);
        pthread_mutex_unlock(&ks->lock);
    } else if (st == M2MHSM_E_NOT_FOUND) {
        if (shared && search_on_miss)
            note_absent(ks, kind, identity, epoch);
        st = m2mhsm_fail(M2MHSM_E_NOT_FOUND, "no %s with that identity", m2mhsm_kind_name(kind));
    }
    return st;
}

/* Only the newest enrolment of a KpmID counts (a crash may have left an older one on the
 * token). A Km/Kpsa naming a Ke this process has not seen may come from a newer enrolment
 * by another process: looking that Ke up learns it. */
static m2mhsm_status refuse_superseded(m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    if (!m2mhsm_record_superseded(ks, rec))
        return M2MHSM_OK;
    m2mhsm_record ke;
    if (rec->kind != M2MHSM_KIND_KE &&
        lookup(ks, M2MHSM_KIND_KE, rec->ke_id, strlen(rec->ke_id), &ke, 1) == M2MHSM_OK &&
        !m2mhsm_record_superseded(ks, rec))
        return M2MHSM_OK;
    return m2mhsm_fail(M2MHSM_E_NOT_FOUND,
                       "no current %s with that identity: a newer enrolment "
                       "of its KpmID supersedes it",
                       m2mhsm_kind_name(rec->kind));
}

m2mhsm_status m2mhsm_keystore_lookup(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *id,
                                     size_t len, m2mhsm_record *out)
{
    unsigned gen = ks != NULL ? m2mhsm_token_generation(ks->tok) : 0;
    m2mhsm_status st = lookup(ks, kind, id, len, out, 1);
    /* A token lost and back: once more, in the new generation (the index is found again). */
    if (st != M2MHSM_OK && st != M2MHSM_E_NOT_FOUND && st != M2MHSM_E_INVALID_ARG && ks != NULL &&
        m2mhsm_token_recover(ks->tok, gen) == M2MHSM_OK)
        st = lookup(ks, kind, id, len, out, 1);
    return st == M2MHSM_OK ? refuse_superseded(ks, out) : st;
}

m2mhsm_status ks_lookup_known(m2mhsm_keystore *ks, m2mhsm_kind kind, const char *identity,
                              m2mhsm_record *out)
{
    return lookup(ks, kind, identity, strlen(identity), out, 0);
}
