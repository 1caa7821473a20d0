/*
 * Which record counts when a crash left two: only the newest record of an identity, only
 * the newest Ke of a KpmID, and only what was derived from that Ke. A replacement (a Km
 * re-derived or fetched again, a new configuration, a re-enrolment) writes the new record
 * before it erases the old one, so a crash in between leaves both on the token; the order
 * below tells every process, now or after a restart, which one is current
 * (docs/key-lifecycle.md, crash safety).
 */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

/* seq first (written by every replaceable record, above the one it replaces); then, for
 * records from before seq or two processes writing at once, created and the record id: a
 * total order that every process computes alike from the token. */
int ks_record_newer(const m2mhsm_record *a, const m2mhsm_record *b)
{
    if (a->seq != b->seq)
        return a->seq > b->seq;
    if (a->created != b->created)
        return a->created > b->created;
    return memcmp(a->record_id, b->record_id, M2MHSM_RECORD_ID_LEN) > 0;
}

static int is_ke(const m2mhsm_record *r)
{
    return r->kind == M2MHSM_KIND_KE && r->kpm_id[0] != '\0' && ks_record_complete(r);
}

/* Derived on this token from a Ke of a known KpmID (an Enrolee's Km/Kpsa). An Enrolment
 * Target's fetched key names no KpmID: it holds no Ke to compare with. */
static int is_derived(const m2mhsm_record *r)
{
    return (r->kind == M2MHSM_KIND_KM || r->kind == M2MHSM_KIND_KPSA) && r->kpm_id[0] != '\0' &&
           ks_record_complete(r);
}

/* By KpmID, and within one KpmID newest first. */
static int cmp_kpm_newest(const void *a, const void *b)
{
    const m2mhsm_record *x = *(const m2mhsm_record *const *)a;
    const m2mhsm_record *y = *(const m2mhsm_record *const *)b;
    int c = strcmp(x->kpm_id, y->kpm_id);
    if (c != 0)
        return c;
    return ks_record_newer(x, y) ? -1 : ks_record_newer(y, x) ? 1 : 0;
}

/* By kind and identity, and within one identity newest first. */
static int cmp_identity_newest(const void *a, const void *b)
{
    const m2mhsm_record *x = *(const m2mhsm_record *const *)a;
    const m2mhsm_record *y = *(const m2mhsm_record *const *)b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    int c = strcmp(x->identity, y->identity);
    if (c != 0)
        return c;
    return ks_record_newer(x, y) ? -1 : ks_record_newer(y, x) ? 1 : 0;
}

static int cmp_head(const void *key, const void *elem)
{
    return strcmp(key, (*(const m2mhsm_record *const *)elem)->kpm_id);
}

static void mark(const ks_scan *sc, const m2mhsm_record *r, unsigned char *marks, size_t *count)
{
    if (!marks[r - sc->recs]) {
        marks[r - sc->recs] = 1;
        ++*count;
    }
}

/* A replacement cut short: every complete record of an identity but the newest. */
static void mark_older_twins(const ks_scan *sc, const m2mhsm_record **all, unsigned char *marks,
                             size_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < sc->count; i++)
        if (ks_record_complete(&sc->recs[i]))
            all[n++] = &sc->recs[i];
    if (n > 0)
        qsort(all, n, sizeof(*all), cmp_identity_newest);
    for (size_t i = 1; i < n; i++)
        if (all[i]->kind == all[i - 1]->kind && strcmp(all[i]->identity, all[i - 1]->identity) == 0)
            mark(sc, all[i], marks, count);
}

/* A re-enrolment cut short: every Ke of a KpmID but the newest, and what derives from them. */
static void mark_older_enrolments(const ks_scan *sc, const m2mhsm_record **kes,
                                  const m2mhsm_record **heads, unsigned char *marks, size_t *count)
{
    size_t n = 0, nheads = 0;
    for (size_t i = 0; i < sc->count; i++)
        if (is_ke(&sc->recs[i]))
            kes[n++] = &sc->recs[i];
    if (n > 0)
        qsort(kes, n, sizeof(*kes), cmp_kpm_newest);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(kes[i]->kpm_id, kes[i - 1]->kpm_id) == 0)
            mark(sc, kes[i], marks, count);
        else
            heads[nheads++] = kes[i];
    }
    for (size_t i = 0; nheads > 0 && i < sc->count; i++) {
        const m2mhsm_record *r = &sc->recs[i];
        if (!is_derived(r))
            continue;
        const m2mhsm_record **head = bsearch(r->kpm_id, heads, nheads, sizeof(*heads), cmp_head);
        if (head != NULL && strcmp((*head)->identity, r->ke_id) != 0)
            mark(sc, r, marks, count);
    }
}

m2mhsm_status ks_mark_superseded(const ks_scan *sc, unsigned char **marks, size_t *count)
{
    *count = 0;
    *marks = calloc(sc->count + 1, 1);
    const m2mhsm_record **work = calloc(sc->count + 1, sizeof(*work));
    const m2mhsm_record **heads = calloc(sc->count + 1, sizeof(*heads));
    if (*marks == NULL || work == NULL || heads == NULL) {
        free(*marks);
        free(work);
        free(heads);
        *marks = NULL;
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory while ordering records");
    }
    mark_older_twins(sc, work, *marks, count);
    mark_older_enrolments(sc, work, heads, *marks, count);
    free(work);
    free(heads);
    return M2MHSM_OK;
}
