/* Observers of erasure: whatever a process made from a record (in-memory session copies,
 * PSK handles, connections keyed with it) must go when the record goes, whatever erased it
 * — an expiry found in a handshake, a sweep, the "all credentials of the Enrolee" rule, a
 * revocation, or another process (the admin CLI), which this one learns of at a lookup of
 * that identity or at its next sweep. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

m2mhsm_status m2mhsm_keystore_watch(m2mhsm_keystore *ks, m2mhsm_erase_observer fn, void *arg)
{
    if (ks == NULL || fn == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "keystore_watch: NULL argument");
    pthread_mutex_lock(&ks->lock);
    int full = ks->nwatch == M2MHSM_WATCH_MAX;
    if (!full) {
        ks->watch[ks->nwatch].fn = fn;
        ks->watch[ks->nwatch].arg = arg;
        ks->nwatch++;
    }
    pthread_mutex_unlock(&ks->lock);
    return full ? m2mhsm_fail(M2MHSM_E_INVALID_ARG, "keystore_watch: too many observers")
                : M2MHSM_OK;
}

void m2mhsm_keystore_unwatch(m2mhsm_keystore *ks, m2mhsm_erase_observer fn, void *arg)
{
    if (ks == NULL)
        return;
    pthread_mutex_lock(&ks->lock);
    for (size_t i = 0; i < ks->nwatch; i++)
        if (ks->watch[i].fn == fn && ks->watch[i].arg == arg) {
            memmove(&ks->watch[i], &ks->watch[i + 1], (ks->nwatch - i - 1) * sizeof(ks->watch[0]));
            ks->nwatch--;
            break;
        }
    pthread_mutex_unlock(&ks->lock);
}

void ks_notify_gone(m2mhsm_keystore *ks, const m2mhsm_record *rec, m2mhsm_gone how)
{
    /* A copy of the list: an observer runs without the lock (it may look records up). */
    m2mhsm_erase_observer fn[M2MHSM_WATCH_MAX];
    void *arg[M2MHSM_WATCH_MAX];
    pthread_mutex_lock(&ks->lock);
    size_t n = ks->nwatch;
    for (size_t i = 0; i < n; i++) {
        fn[i] = ks->watch[i].fn;
        arg[i] = ks->watch[i].arg;
    }
    pthread_mutex_unlock(&ks->lock);
    for (size_t i = 0; i < n; i++)
        fn[i](arg[i], rec, how);
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, M2MHSM_RECORD_ID_LEN);
}

/* The record ids of a scan, sorted for bsearch. */
static uint8_t *scanned_ids(const ks_scan *sc)
{
    uint8_t *ids = malloc((sc->count + 1) * M2MHSM_RECORD_ID_LEN);
    if (ids == NULL)
        return NULL;
    for (size_t i = 0; i < sc->count; i++)
        memcpy(ids + i * M2MHSM_RECORD_ID_LEN, sc->recs[i].record_id, M2MHSM_RECORD_ID_LEN);
    qsort(ids, sc->count, M2MHSM_RECORD_ID_LEN, cmp_id);
    return ids;
}

void ks_forget_vanished(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, const ks_scan *sc)
{
    m2mhsm_record *missing = NULL;
    size_t n = 0;
    uint8_t *ids = scanned_ids(sc);
    if (ids == NULL)
        return; /* the next sweep, or a lookup, finds them */
    pthread_mutex_lock(&ks->lock);
    m2mhsm_status st =
        ks->nwatch > 0 ? ks_index_missing(&ks->idx, ids, sc->count, &missing, &n) : M2MHSM_OK;
    pthread_mutex_unlock(&ks->lock);
    free(ids);
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++) {
        /* A record written after the scan began is on the token, and stays; so does one
         * whose read failed: only a definite absence is an erase. */
        if (ks_still_there(ks, s, &missing[i]) != M2MHSM_E_NOT_FOUND)
            continue;
        pthread_mutex_lock(&ks->lock);
        ks_index_forget(ks, &missing[i]);
        pthread_mutex_unlock(&ks->lock);
        ks_notify_gone(ks, &missing[i], M2MHSM_GONE_ELSEWHERE);
    }
    free(missing);
}
