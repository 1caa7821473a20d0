/* Opening the store (scan, repair, index) and the lookup that serves every handshake. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

m2mhsm_time m2mhsm_keystore_now(const m2mhsm_keystore *ks)
{
    return ks->clock(ks->clock_arg);
}

m2mhsm_token *m2mhsm_keystore_token(m2mhsm_keystore *ks)
{
    return ks->tok;
}

m2mhsm_status m2mhsm_record_check_form(const m2mhsm_record *rec, m2mhsm_form form)
{
    if (rec == NULL || (unsigned)form >= M2MHSM_FORM_COUNT)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "check_form: no record or no such form");
    if ((ks_record_forms(rec) & (1u << form)) && ks_obj(rec)->key[form] != CK_INVALID_HANDLE)
        return M2MHSM_OK;
    static const char *const needed_by[M2MHSM_FORM_COUNT] = {"derivation", "(D)TLS 1.2 handshakes",
                                                             "TLS 1.3 handshakes"};
    return m2mhsm_fail(M2MHSM_E_UNSUPPORTED, "the %s was stored without its %s form, which %s need",
                       m2mhsm_kind_name(rec->kind), ks_form_name(form), needed_by[form]);
}

int m2mhsm_record_valid(const m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    return m2mhsm_expiry_is_valid(rec->expiry, m2mhsm_keystore_now(ks));
}

static int same_record(const m2mhsm_record *a, const m2mhsm_record *b)
{
    return memcmp(a->record_id, b->record_id, M2MHSM_RECORD_ID_LEN) == 0;
}

/* Caller holds ks->lock. */
void ks_index_insert(m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    /* The newest record of an identity wins when two exist (a replacement interrupted by a
     * crash); the other is remembered, so that the next replacement erases it too. */
    const m2mhsm_record *old =
        ks_index_get(&ks->idx, rec->kind, rec->identity, strlen(rec->identity));
    if (old != NULL && !same_record(old, rec) && !ks_record_newer(rec, old)) {
        ks_index_put(&ks->twins, rec->kind, rec->identity, rec);
    } else {
        if (old != NULL && !same_record(old, rec))
            ks_index_put(&ks->twins, rec->kind, rec->identity, old);
        ks_index_put(&ks->idx, rec->kind, rec->identity, rec);
    }
    if (rec->kind != M2MHSM_KIND_KE || rec->kpm_id[0] == '\0')
        return;
    old = ks_index_get(&ks->by_kpm, M2MHSM_KIND_KE, rec->kpm_id, strlen(rec->kpm_id));
    if (old != NULL && !ks_record_newer(rec, old)) {
        if (memcmp(old->record_id, rec->record_id, M2MHSM_RECORD_ID_LEN) != 0)
            ks_index_put(&ks->displaced, M2MHSM_KIND_KE, rec->kpm_id, rec);
        return;
    }
    /* The newest Ke of the KpmID: the one it displaces is superseded from now on. */
    if (old != NULL && memcmp(old->record_id, rec->record_id, M2MHSM_RECORD_ID_LEN) != 0)
        ks_index_put(&ks->displaced, M2MHSM_KIND_KE, rec->kpm_id, old);
    ks_index_put(&ks->by_kpm, M2MHSM_KIND_KE, rec->kpm_id, rec);
}

/* by_kpm keeps an erased Ke: the order it set still holds for the older ones. */
void ks_index_forget(m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    ks_index_del(&ks->idx, rec->kind, rec->identity, rec);
    ks_index_del(&ks->twins, rec->kind, rec->identity, rec);
    if (rec->kind == M2MHSM_KIND_KE && rec->kpm_id[0] != '\0')
        ks_index_del(&ks->displaced, M2MHSM_KIND_KE, rec->kpm_id, rec);
}

/* A newer record of rec's identity that this process knows. Caller holds ks->lock. */
static int has_newer_twin(const m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    const m2mhsm_record *newest =
        ks_index_get(&ks->idx, rec->kind, rec->identity, strlen(rec->identity));
    return newest != NULL && !same_record(newest, rec) && ks_record_newer(newest, rec);
}

int m2mhsm_record_superseded(m2mhsm_keystore *ks, const m2mhsm_record *rec)
{
    int derived = rec->kind == M2MHSM_KIND_KM || rec->kind == M2MHSM_KIND_KPSA;
    pthread_mutex_lock(&ks->lock);
    int superseded = has_newer_twin(ks, rec);
    if (superseded || (rec->kind != M2MHSM_KIND_KE && !derived) || rec->kpm_id[0] == '\0') {
        pthread_mutex_unlock(&ks->lock);
        return superseded;
    }
    const m2mhsm_record *newest =
        ks_index_get(&ks->by_kpm, M2MHSM_KIND_KE, rec->kpm_id, strlen(rec->kpm_id));
    if (newest != NULL && derived)
        superseded = strcmp(newest->identity, rec->ke_id) != 0;
    else if (newest != NULL)
        superseded = !same_record(newest, rec) && ks_record_newer(newest, rec);
    pthread_mutex_unlock(&ks->lock);
    return superseded;
}

m2mhsm_status ks_record_destroy_objects(m2mhsm_keystore *ks, CK_SESSION_HANDLE s,
                                        const m2mhsm_record *rec)
{
    m2mhsm_status st = M2MHSM_OK;
    for (int f = 0; st == M2MHSM_OK && f < M2MHSM_FORM_COUNT; f++)
        if (ks_obj(rec)->key[f] != CK_INVALID_HANDLE)
            st = ks_destroy(ks->fn, s, ks_obj(rec)->key[f]);
    if (st == M2MHSM_OK && ks_obj(rec)->meta != CK_INVALID_HANDLE)
        st = ks_destroy(ks->fn, s, ks_obj(rec)->meta);
    return st;
}

m2mhsm_status ks_record_destroy(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, const m2mhsm_record *rec)
{
    if (ks->read_only)
        return ks_check_writable(ks, "erase");
    pthread_mutex_lock(&ks->lock);
    ks_index_forget(ks, rec);
    pthread_mutex_unlock(&ks->lock);
    m2mhsm_token_write_begin(ks->tok);
    m2mhsm_status st = ks_record_destroy_objects(ks, s, rec);
    m2mhsm_token_write_changed(ks->tok, s);
    m2mhsm_token_write_end(ks->tok);
    if (st == M2MHSM_OK)
        ks_notify_gone(ks, rec, M2MHSM_GONE_ERASED);
    return st;
}

m2mhsm_status ks_check_writable(const m2mhsm_keystore *ks, const char *what)
{
    if (!ks->read_only)
        return M2MHSM_OK;
    return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "%s: the key store was opened read-only", what);
}

/* A torn record: metadata whose keys are missing, old enough that no process can still be
 * writing it. */
static int torn(const m2mhsm_keystore *ks, const m2mhsm_record *r, m2mhsm_time now)
{
    return !ks_record_complete(r) && now - r->created >= ks->orphan_grace;
}

/* What a repair would remove, for a read-only open: counted, nothing destroyed. */
static void count_damage(const m2mhsm_keystore *ks, const ks_scan *sc, m2mhsm_open_report *rep)
{
    m2mhsm_time now = m2mhsm_keystore_now(ks);
    rep->orphan_keys = sc->orphan_count;
    for (size_t i = 0; i < sc->count; i++)
        rep->incomplete += torn(ks, &sc->recs[i], now);
}

/* An enrolment that a crash interrupted between writing the new Ke and erasing the old: the
 * old Ke and what derives from it go. Read-only, they are counted (lookups refuse them). */
static m2mhsm_status erase_superseded(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *sc,
                                      m2mhsm_open_report *rep)
{
    unsigned char *marks = NULL;
    size_t n = 0;
    m2mhsm_status st = ks_mark_superseded(sc, &marks, &n);
    for (size_t i = 0; st == M2MHSM_OK && i < sc->count; i++) {
        if (!marks[i])
            continue;
        if (!ks->read_only && (st = ks_record_destroy(ks, s, &sc->recs[i])) != M2MHSM_OK)
            break;
        if (!ks->read_only)
            ks_obj(&sc->recs[i])->meta = CK_INVALID_HANDLE;
        rep->superseded++;
    }
    free(marks);
    return st;
}

/* Remove what a crash left: keys without metadata, and metadata whose keys are missing once
 * the grace period has passed (a younger one may be another process mid-write). */
static m2mhsm_status repair(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *sc,
                            m2mhsm_open_report *rep)
{
    if (ks->read_only) {
        count_damage(ks, sc, rep);
        return erase_superseded(ks, s, sc, rep);
    }
    for (size_t i = 0; i < sc->orphan_count; i++) {
        m2mhsm_token_write_begin(ks->tok);
        m2mhsm_status st = ks_destroy(ks->fn, s, sc->orphans[i]);
        m2mhsm_token_write_changed(ks->tok, s);
        m2mhsm_token_write_end(ks->tok);
        if (st != M2MHSM_OK)
            return st;
        rep->orphan_keys++;
    }
    m2mhsm_time now = m2mhsm_keystore_now(ks);
    for (size_t i = 0; i < sc->count; i++) {
        m2mhsm_record *r = &sc->recs[i];
        if (!torn(ks, r, now))
            continue;
        m2mhsm_status st = ks_record_destroy(ks, s, r);
        if (st != M2MHSM_OK)
            return st;
        ks_obj(r)->meta = CK_INVALID_HANDLE; /* marks it gone for build_index */
        rep->incomplete++;
    }
    return erase_superseded(ks, s, sc, rep);
}

static void build_index(m2mhsm_keystore *ks, const ks_scan *sc, m2mhsm_open_report *rep)
{
    for (size_t i = 0; i < sc->count; i++) {
        const m2mhsm_record *r = &sc->recs[i];
        if (ks_obj(r)->meta == CK_INVALID_HANDLE || !ks_record_complete(r))
            continue;
        ks_index_insert(ks, r);
        rep->records++;
    }
}

/* Scan, repair and (re)build both indexes. Caller owns ks exclusively or holds no lock. */
static m2mhsm_status load(m2mhsm_keystore *ks, m2mhsm_open_report *rep)
{
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_session_get(ks->tok, &s);
    if (st != M2MHSM_OK)
        return st;
    ks_scan sc;
    st = ks_scan_token(ks, s, &sc);
    if (st == M2MHSM_OK) {
        rep->corrupt = sc.corrupt;
        rep->kept_keys = sc.kept_keys;
        st = repair(ks, s, &sc, rep);
    }
    /* A writer makes sure other processes and hosts can see its writes (epoch.c). */
    if (st == M2MHSM_OK && !ks->read_only)
        st = m2mhsm_token_epoch_ensure(ks->tok, s);
    m2mhsm_token_session_put(ks->tok, s);
    if (st != M2MHSM_OK) {
        ks_scan_free(&sc);
        return st;
    }
    /* idx, by_kpm, displaced, twins: built afresh, swapped in at once */
    ks_index fresh[4];
    const size_t expected[4] = {sc.count, sc.count, 0, 0};
    size_t made = 0;
    for (; st == M2MHSM_OK && made < 4; made++)
        st = ks_index_init(&fresh[made], expected[made]); /* a failed one is empty */
    for (size_t i = 0; st != M2MHSM_OK && i < made; i++)
        ks_index_free(&fresh[i]);
    if (st == M2MHSM_OK) {
        pthread_mutex_lock(&ks->lock);
        ks_index *live[4] = {&ks->idx, &ks->by_kpm, &ks->displaced, &ks->twins};
        for (size_t i = 0; i < 4; i++) {
            ks_index_free(live[i]);
            *live[i] = fresh[i];
        }
        build_index(ks, &sc, rep);
        pthread_mutex_unlock(&ks->lock);
    }
    ks_scan_free(&sc);
    return st;
}

m2mhsm_status ks_sync_generation(m2mhsm_keystore *ks)
{
    /* Detect a fork first: it is the re-attach that starts a new generation. */
    m2mhsm_status st = m2mhsm_token_ensure_attached(ks->tok);
    if (st != M2MHSM_OK)
        return st;
    unsigned gen = m2mhsm_token_generation(ks->tok);
    pthread_mutex_lock(&ks->lock);
    int stale = gen != ks->generation;
    pthread_mutex_unlock(&ks->lock);
    if (!stale)
        return M2MHSM_OK;
    /* A new module generation (we are a forked child): every handle is void. */
    m2mhsm_open_report rep = {0};
    st = load(ks, &rep);
    if (st == M2MHSM_OK) {
        pthread_mutex_lock(&ks->lock);
        ks->generation = m2mhsm_token_generation(ks->tok);
        pthread_mutex_unlock(&ks->lock);
    }
    return st;
}

m2mhsm_status m2mhsm_keystore_open(m2mhsm_token *tok, const m2mhsm_keystore_options *opts,
                                   m2mhsm_keystore **out, m2mhsm_open_report *report)
{
    m2mhsm_open_report rep = {0};
    if (out == NULL || tok == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "keystore_open: NULL argument");
    *out = NULL;
    unsigned forms = opts != NULL && opts->psk_forms != 0 ? opts->psk_forms : M2MHSM_FORMS_ALL;
    if ((forms & ~M2MHSM_FORMS_ALL) != 0 ||
        (forms & (M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13)) == 0)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG,
                           "keystore_open: psk_forms needs a TLS form (tls12-pms or tls13-es) "
                           "and no unknown bits");
    m2mhsm_keystore *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    ks->tok = tok;
    ks->fn = m2mhsm_token_functions(tok);
    ks->clock = opts != NULL && opts->clock != NULL ? opts->clock : m2mhsm_clock_system;
    ks->clock_arg = opts != NULL ? opts->clock_arg : NULL;
    ks->orphan_grace = opts != NULL && opts->orphan_grace > 0 ? opts->orphan_grace : 60;
    ks->revalidate_ms = opts != NULL && opts->revalidate_ms > 0 ? opts->revalidate_ms : 0;
    ks->read_only = opts != NULL && opts->read_only;
    ks->psk_forms = forms;
    pthread_mutex_init(&ks->lock, NULL);
    ks->fork = (m2mhsm_forksafe){.rank = M2MHSM_RANK_KEYSTORE, .mutex = &ks->lock};
    if (m2mhsm_forksafe_add(&ks->fork) != 0) {
        pthread_mutex_destroy(&ks->lock);
        free(ks);
        return m2mhsm_fail(M2MHSM_E_NOMEM, "pthread_atfork failed");
    }
    ks->generation = m2mhsm_token_generation(tok);
    m2mhsm_status st = load(ks, &rep);
    if (st != M2MHSM_OK) {
        m2mhsm_keystore_close(ks);
        return st;
    }
    if (report != NULL)
        *report = rep;
    *out = ks;
    return M2MHSM_OK;
}

void m2mhsm_keystore_close(m2mhsm_keystore *ks)
{
    if (ks == NULL)
        return;
    m2mhsm_forksafe_remove(&ks->fork);
    ks_index_free(&ks->idx);
    ks_index_free(&ks->by_kpm);
    ks_index_free(&ks->displaced);
    ks_index_free(&ks->twins);
    ks_index_free(&ks->absent);
    pthread_mutex_destroy(&ks->lock);
    free(ks);
}
