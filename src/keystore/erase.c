/* Erasure (the CR: after expiry the Enrolment Target erases the Enrolee's credential ids and
 * credentials), sweeping, and listing. Each scans the token afresh so that records another
 * process wrote are seen: these are administrative or once-per-expiry events, never per
 * handshake. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

/* Picks record i of a scan for erasure. */
typedef int (*ks_select_fn)(const ks_scan *sc, size_t i, void *arg);

/* Scan, then destroy every record the selector picks: keys first, metadata last. With
 * reconcile, the scan also tells which records another process erased. */
static m2mhsm_status erase_where(m2mhsm_keystore *ks, ks_select_fn select, void *arg,
                                 size_t *erased, int reconcile)
{
    size_t n = 0;
    if (erased != NULL)
        *erased = 0;
    m2mhsm_status st = ks_check_writable(ks, "erase");
    if (st == M2MHSM_OK)
        st = ks_sync_generation(ks);
    CK_SESSION_HANDLE s;
    if (st != M2MHSM_OK || (st = m2mhsm_token_session_get(ks->tok, &s)) != M2MHSM_OK)
        return st;
    ks_scan sc;
    st = ks_scan_token(ks, s, &sc);
    if (st == M2MHSM_OK) {
        for (size_t i = 0; st == M2MHSM_OK && i < sc.count; i++) {
            if (!select(&sc, i, arg))
                continue;
            st = ks_record_destroy(ks, s, &sc.recs[i]);
            n += st == M2MHSM_OK;
        }
        if (st == M2MHSM_OK && reconcile)
            ks_forget_vanished(ks, s, &sc);
        ks_scan_free(&sc);
    }
    m2mhsm_token_session_put(ks->tok, s);
    if (erased != NULL)
        *erased = n;
    return st;
}

/* An Enrolee's credentials: those that name it, and those derived from its Ke records
 * (an Enrolment Target may hold a Km that the MEF sent without the Enrolee-ID). */
typedef struct {
    const char *enrolee_id;
    const char **ke_ids; /* identities of the Enrolee's Ke records, from the scan */
    size_t count;
    int ready, nomem;
} enrolee_ctx;

static int names_enrolee(const m2mhsm_record *rec, const char *enrolee_id)
{
    return ks_kind_is_credential(rec->kind) && strcmp(rec->enrolee_id, enrolee_id) == 0;
}

static void collect_ke_ids(const ks_scan *sc, enrolee_ctx *c)
{
    c->ready = 1;
    c->ke_ids = calloc(sc->count + 1, sizeof(*c->ke_ids));
    if (c->ke_ids == NULL) {
        c->nomem = 1;
        return;
    }
    for (size_t i = 0; i < sc->count; i++)
        if (sc->recs[i].kind == M2MHSM_KIND_KE && names_enrolee(&sc->recs[i], c->enrolee_id))
            c->ke_ids[c->count++] = sc->recs[i].identity;
}

static int of_enrolee(const ks_scan *sc, size_t i, void *arg)
{
    enrolee_ctx *c = arg;
    const m2mhsm_record *rec = &sc->recs[i];
    if (!c->ready)
        collect_ke_ids(sc, c);
    if (names_enrolee(rec, c->enrolee_id))
        return 1;
    for (size_t k = 0; ks_kind_is_credential(rec->kind) && k < c->count; k++)
        if (strcmp(rec->ke_id, c->ke_ids[k]) == 0)
            return 1;
    return 0;
}

m2mhsm_status m2mhsm_keystore_erase_enrolee(m2mhsm_keystore *ks, const char *enrolee_id,
                                            size_t *erased)
{
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_M2M_ABS, enrolee_id);
    if (st != M2MHSM_OK)
        return st;
    enrolee_ctx ctx = {.enrolee_id = enrolee_id};
    st = erase_where(ks, of_enrolee, &ctx, erased, 0);
    free(ctx.ke_ids);
    if (st == M2MHSM_OK && ctx.nomem)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory during erase");
    return st;
}

static int of_id(const ks_scan *sc, size_t i, void *arg)
{
    const m2mhsm_record *rec = &sc->recs[i];
    const char *id = arg;
    return strcmp(rec->identity, id) == 0 || strcmp(rec->ke_id, id) == 0;
}

m2mhsm_status m2mhsm_keystore_erase_id(m2mhsm_keystore *ks, const char *id, size_t *erased)
{
    size_t len = id != NULL ? strlen(id) : 0;
    char canon[M2MHSM_ID_MAX + 1];
    if (m2mhsm_id_canonical(M2MHSM_ID_KE, id, len, canon, sizeof(canon)) != M2MHSM_OK &&
        m2mhsm_id_canonical(M2MHSM_ID_KPM, id, len, canon, sizeof(canon)) != M2MHSM_OK)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "key id must be a KpmID or a KeID");
    size_t n = 0;
    m2mhsm_status st = erase_where(ks, of_id, canon, &n, 0);
    if (erased != NULL)
        *erased = n;
    if (st == M2MHSM_OK && n == 0)
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND, "no key with that id");
    return st;
}

m2mhsm_status m2mhsm_keystore_erase_expired(m2mhsm_keystore *ks, const m2mhsm_record *rec,
                                            size_t *erased)
{
    if (erased != NULL)
        *erased = 0;
    if (rec == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "erase_expired: record is NULL");
    if (!ks_kind_is_credential(rec->kind))
        return M2MHSM_OK;
    return rec->enrolee_id[0] != '\0' ? m2mhsm_keystore_erase_enrolee(ks, rec->enrolee_id, erased)
                                      : m2mhsm_keystore_erase_id(ks, rec->identity, erased);
}

/* ---- revocation ---- */

typedef struct {
    const char *kpm_id;
    int erase_kpm;
    const char **ke_ids; /* identities of the KpmID's Ke records, from the scan */
    size_t count;
    int ready, nomem;
} revoke_ctx;

static void collect_kpm_ke_ids(const ks_scan *sc, revoke_ctx *c)
{
    c->ready = 1;
    c->ke_ids = calloc(sc->count + 1, sizeof(*c->ke_ids));
    if (c->ke_ids == NULL) {
        c->nomem = 1;
        return;
    }
    for (size_t i = 0; i < sc->count; i++)
        if (sc->recs[i].kind == M2MHSM_KIND_KE && strcmp(sc->recs[i].kpm_id, c->kpm_id) == 0)
            c->ke_ids[c->count++] = sc->recs[i].identity;
}

/* Step 1: the KpmID's Ke and what names the KpmID or derives from one of them. */
static int of_kpm_credentials(const ks_scan *sc, size_t i, void *arg)
{
    revoke_ctx *c = arg;
    const m2mhsm_record *rec = &sc->recs[i];
    if (!c->ready)
        collect_kpm_ke_ids(sc, c);
    if (!ks_kind_is_credential(rec->kind))
        return 0;
    if (strcmp(rec->kpm_id, c->kpm_id) == 0)
        return 1;
    for (size_t k = 0; k < c->count; k++)
        if (strcmp(rec->ke_id, c->ke_ids[k]) == 0)
            return 1;
    return 0;
}

/* Step 2: the configuration, and the Kpm if asked. */
static int of_kpm_config(const ks_scan *sc, size_t i, void *arg)
{
    const revoke_ctx *c = arg;
    const m2mhsm_record *rec = &sc->recs[i];
    return strcmp(rec->identity, c->kpm_id) == 0 &&
           (rec->kind == M2MHSM_KIND_ENROLMENT || (c->erase_kpm && rec->kind == M2MHSM_KIND_KPM));
}

m2mhsm_status m2mhsm_keystore_revoke_enrolee(m2mhsm_keystore *ks, const char *kpm_id, int erase_kpm,
                                             size_t *erased)
{
    size_t creds = 0, config = 0;
    if (erased != NULL)
        *erased = 0;
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_KPM, kpm_id);
    if (st != M2MHSM_OK)
        return st;
    revoke_ctx ctx = {.kpm_id = kpm_id, .erase_kpm = erase_kpm};
    st = erase_where(ks, of_kpm_credentials, &ctx, &creds, 0);
    free(ctx.ke_ids);
    if (st == M2MHSM_OK && ctx.nomem)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory during revocation");
    if (st == M2MHSM_OK)
        st = erase_where(ks, of_kpm_config, &ctx, &config, 0);
    if (erased != NULL)
        *erased = creds + config;
    if (st == M2MHSM_OK && creds + config == 0)
        return m2mhsm_fail(M2MHSM_E_NOT_FOUND,
                           "no enrolment of that KpmID on the token (configuration or keys)");
    return st;
}

/* ---- sweep ---- */

typedef struct {
    m2mhsm_time now;
    const m2mhsm_record **expired; /* built from the scan on the first call */
    size_t count;
    unsigned char *superseded; /* ks_mark_superseded, also on the first call */
    int ready, nomem;
} sweep_ctx;

static int expired(const m2mhsm_record *r, m2mhsm_time now)
{
    return ks_kind_is_credential(r->kind) && !m2mhsm_expiry_is_valid(r->expiry, now);
}

static int has_ke(const ks_scan *sc, const char *ke_id)
{
    for (size_t i = 0; i < sc->count; i++)
        if (sc->recs[i].kind == M2MHSM_KIND_KE && strcmp(sc->recs[i].identity, ke_id) == 0)
            return 1;
    return 0;
}

/* An expiry that is the Enrolment Expiry: a Ke's, or at an Enrolment Target (which holds no
 * Ke) a Km/Kpsa's, whose lifetime is the one the MEF handed over. A Km that an Enrolee
 * chose to let lapse before its Ke says nothing about the enrolment. */
static int enrolment_expired(const ks_scan *sc, const m2mhsm_record *r)
{
    return r->enrolee_id[0] != '\0' && (r->kind == M2MHSM_KIND_KE || !has_ke(sc, r->ke_id));
}

static void collect_expired(const ks_scan *sc, sweep_ctx *c)
{
    size_t n;
    c->ready = 1;
    c->expired = calloc(sc->count + 1, sizeof(*c->expired));
    if (c->expired == NULL || ks_mark_superseded(sc, &c->superseded, &n) != M2MHSM_OK) {
        c->nomem = 1;
        return;
    }
    for (size_t i = 0; i < sc->count; i++)
        if (expired(&sc->recs[i], c->now))
            c->expired[c->count++] = &sc->recs[i];
}

/* A credential goes if it expired; if it derives from an expired record; if its
 * Enrolee's Enrolment Expiry passed (the CR: all of that Enrolee's credentials); or if a
 * newer enrolment of its KpmID superseded it (a crash cut the re-enrolment short). */
static int sweep_select(const ks_scan *sc, size_t i, void *arg)
{
    sweep_ctx *c = arg;
    const m2mhsm_record *rec = &sc->recs[i];
    if (!c->ready)
        collect_expired(sc, c);
    if (!ks_kind_is_credential(rec->kind))
        return 0;
    if (c->superseded != NULL && c->superseded[i])
        return 1;
    if (expired(rec, c->now))
        return 1;
    for (size_t k = 0; k < c->count; k++) {
        const m2mhsm_record *o = c->expired[k];
        if (rec->ke_id[0] != '\0' && strcmp(o->identity, rec->ke_id) == 0)
            return 1;
        if (rec->enrolee_id[0] != '\0' && strcmp(o->enrolee_id, rec->enrolee_id) == 0 &&
            enrolment_expired(sc, o))
            return 1;
    }
    return 0;
}

m2mhsm_status m2mhsm_keystore_sweep(m2mhsm_keystore *ks, size_t *erased)
{
    sweep_ctx ctx = {.now = m2mhsm_keystore_now(ks)};
    m2mhsm_status st = erase_where(ks, sweep_select, &ctx, erased, 1);
    free(ctx.expired);
    free(ctx.superseded);
    if (st == M2MHSM_OK && ctx.nomem)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory during sweep");
    return st;
}

/* ---- list ---- */

static int same_identity(const m2mhsm_record *x, const m2mhsm_record *y)
{
    return x->kind == y->kind && strcmp(x->identity, y->identity) == 0;
}

/* By kind and identity, and within one identity newest first. */
static int cmp_listing(const void *a, const void *b)
{
    const m2mhsm_record *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    int c = strcmp(x->identity, y->identity);
    if (c != 0)
        return c;
    return ks_record_newer(x, y) ? -1 : ks_record_newer(y, x) ? 1 : 0;
}

m2mhsm_status m2mhsm_keystore_list(m2mhsm_keystore *ks, m2mhsm_record **out, size_t *count)
{
    if (out == NULL || count == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "list: NULL argument");
    m2mhsm_status st = ks_sync_generation(ks);
    CK_SESSION_HANDLE s;
    if (st != M2MHSM_OK || (st = m2mhsm_token_session_get(ks->tok, &s)) != M2MHSM_OK)
        return st;
    ks_scan sc;
    st = ks_scan_token(ks, s, &sc);
    m2mhsm_token_session_put(ks->tok, s);
    if (st != M2MHSM_OK)
        return st;
    size_t n = 0;
    for (size_t i = 0; i < sc.count; i++)
        if (ks_record_complete(&sc.recs[i]))
            sc.recs[n++] = sc.recs[i];
    if (n > 0)
        qsort(sc.recs, n, sizeof(*sc.recs), cmp_listing);
    /* An older record of an identity (a replacement cut short) is served by no lookup. */
    size_t shown = 0;
    for (size_t i = 0; i < n; i++)
        if (shown == 0 || !same_identity(&sc.recs[i], &sc.recs[shown - 1]))
            sc.recs[shown++] = sc.recs[i];
    n = shown;
    free(sc.orphans);
    for (size_t i = 0; i < n; i++)
        ks_obj(&sc.recs[i])->generation = m2mhsm_token_generation(ks->tok);
    *out = sc.recs;
    *count = n;
    return M2MHSM_OK;
}
