/*
 * Which enrolment of a KpmID counts: only its newest Ke, and what was derived from that Ke.
 * Re-enrolment writes the new Ke before it erases the old one, so a crash in between leaves
 * both on the token; the order below tells every process, now or after a restart, which
 * one is current (docs/key-lifecycle.md, crash safety).
 */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

/* seq first (written by enrolment); then, for records from before seq or two processes
 * enrolling the same KpmID at once, created and the record id: a total order that every
 * process computes alike from the token. */
int ks_ke_newer(const m2mhsm_record *a, const m2mhsm_record *b)
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
    return ks_ke_newer(x, y) ? -1 : ks_ke_newer(y, x) ? 1 : 0;
}

static int cmp_head(const void *key, const void *elem)
{
    return strcmp(key, (*(const m2mhsm_record *const *)elem)->kpm_id);
}

m2mhsm_status ks_mark_superseded(const ks_scan *sc, unsigned char **marks, size_t *count)
{
    *count = 0;
    *marks = calloc(sc->count + 1, 1);
    const m2mhsm_record **kes = calloc(sc->count + 1, sizeof(*kes));
    const m2mhsm_record **heads = calloc(sc->count + 1, sizeof(*heads));
    if (*marks == NULL || kes == NULL || heads == NULL) {
        free(*marks);
        free(kes);
        free(heads);
        *marks = NULL;
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory while ordering enrolments");
    }
    size_t n = 0, nheads = 0;
    for (size_t i = 0; i < sc->count; i++)
        if (is_ke(&sc->recs[i]))
            kes[n++] = &sc->recs[i];
    if (n > 0)
        qsort(kes, n, sizeof(*kes), cmp_kpm_newest);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(kes[i]->kpm_id, kes[i - 1]->kpm_id) == 0) {
            (*marks)[kes[i] - sc->recs] = 1;
            ++*count;
        } else {
            heads[nheads++] = kes[i];
        }
    }
    for (size_t i = 0; nheads > 0 && i < sc->count; i++) {
        const m2mhsm_record *r = &sc->recs[i];
        if (!is_derived(r))
            continue;
        const m2mhsm_record **head = bsearch(r->kpm_id, heads, nheads, sizeof(*heads), cmp_head);
        if (head != NULL && strcmp((*head)->identity, r->ke_id) != 0) {
            (*marks)[i] = 1;
            ++*count;
        }
    }
    free(kes);
    free(heads);
    return M2MHSM_OK;
}
