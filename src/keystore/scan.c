/* One enumeration of every m2mhsm object on the token: at open, and for the rare admin
 * operations (list, erase, sweep) that must see other processes' objects. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

/* A secret key whose label says it is ours. */
typedef struct {
    CK_OBJECT_HANDLE handle;
    uint8_t record_id[M2MHSM_RECORD_ID_LEN];
    int form;
} ks_key_seen;

typedef struct {
    ks_key_seen *keys;
    size_t count, cap;
    uint8_t (*protected_ids)[M2MHSM_RECORD_ID_LEN]; /* record ids of corrupt metadata */
    size_t protected_count, protected_cap;
    int unidentified_corrupt; /* corrupt metadata whose record id is unreadable too */
} ks_scan_work;

void ks_scan_free(ks_scan *sc)
{
    free(sc->recs);
    free(sc->orphans);
    memset(sc, 0, sizeof(*sc));
}

static void work_free(ks_scan_work *w)
{
    free(w->keys);
    free(w->protected_ids);
}

/* Make room for one more element in a growable array. */
static int grow(void **p, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return 1;
    size_t n = *cap ? *cap * 2 : 16;
    void *q = realloc(*p, n * size);
    if (q == NULL)
        return 0;
    *p = q;
    *cap = n;
    return 1;
}

static m2mhsm_status nomem(void)
{
    return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory while scanning the token");
}

static int cmp_record_id(const void *a, const void *b)
{
    return memcmp(((const m2mhsm_record *)a)->record_id, ((const m2mhsm_record *)b)->record_id,
                  M2MHSM_RECORD_ID_LEN);
}

/* Keys first: a key is created after its metadata and destroyed before it, so a key seen
 * here whose metadata is absent from the later metadata scan really has none. */
static m2mhsm_status scan_keys(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan_work *w)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL t = CK_TRUE;
    /* Stored keys only: session objects (our in-memory copies) are never records. */
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &t, sizeof(t)}};
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    m2mhsm_status st = ks_find(ks->tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &h, &n);
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++) {
        char label[M2MHSM_LABEL_MAX];
        ks_key_seen k = {.handle = h[i]};
        size_t id_len = 0;
        m2mhsm_kind kind;
        st = ks_read_key_ids(ks->tok, s, h[i], label, sizeof(label), k.record_id, &id_len);
        if (st == M2MHSM_E_NOT_FOUND) {
            st = M2MHSM_OK; /* destroyed meanwhile */
            continue;
        }
        /* Someone else's key (a KEK, another application) is never ours to touch. */
        if (st != M2MHSM_OK || id_len != M2MHSM_RECORD_ID_LEN ||
            !ks_label_parse(label, &kind, &k.form))
            continue;
        if (!grow((void **)&w->keys, &w->cap, w->count, sizeof(*w->keys)))
            st = nomem();
        else
            w->keys[w->count++] = k;
    }
    free(h);
    return st;
}

static m2mhsm_status push_record(ks_scan *sc, const m2mhsm_record *rec)
{
    if (!grow((void **)&sc->recs, &sc->cap, sc->count, sizeof(*sc->recs)))
        return nomem();
    sc->recs[sc->count++] = *rec;
    return M2MHSM_OK;
}

static m2mhsm_status note_corrupt(ks_scan *sc, ks_scan_work *w, const m2mhsm_record *rec)
{
    sc->corrupt++; /* left in place for an operator to inspect */
    if (ks_obj(rec)->meta == CK_INVALID_HANDLE) {
        w->unidentified_corrupt = 1;
        return M2MHSM_OK;
    }
    if (!grow((void **)&w->protected_ids, &w->protected_cap, w->protected_count,
              sizeof(*w->protected_ids)))
        return nomem();
    memcpy(w->protected_ids[w->protected_count++], rec->record_id, M2MHSM_RECORD_ID_LEN);
    return M2MHSM_OK;
}

static m2mhsm_status scan_meta(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *sc,
                               ks_scan_work *w)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)M2MHSM_APPLICATION, strlen(M2MHSM_APPLICATION)},
    };
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    m2mhsm_status st = ks_find(ks->tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &h, &n);
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++) {
        m2mhsm_record rec;
        m2mhsm_status rs = ks_read_meta(ks->tok, s, h[i], &rec);
        if (rs == M2MHSM_E_CORRUPT)
            st = note_corrupt(sc, w, &rec);
        else if (rs == M2MHSM_OK)
            st = push_record(sc, &rec);
        else if (rs != M2MHSM_E_NOT_FOUND)
            st = rs;
    }
    free(h);
    return st;
}

static int is_protected(const ks_scan_work *w, const uint8_t *id)
{
    for (size_t i = 0; i < w->protected_count; i++)
        if (memcmp(w->protected_ids[i], id, M2MHSM_RECORD_ID_LEN) == 0)
            return 1;
    return 0;
}

static m2mhsm_status push_orphan(ks_scan *sc, CK_OBJECT_HANDLE h)
{
    if (!grow((void **)&sc->orphans, &sc->orphan_cap, sc->orphan_count, sizeof(*sc->orphans)))
        return nomem();
    sc->orphans[sc->orphan_count++] = h;
    return M2MHSM_OK;
}

/* Attach each key to its record by CKA_ID; a key with no record is an orphan, unless its
 * record's metadata is merely unreadable (then it is kept, and if any metadata is too
 * damaged even to name its record, nothing is called an orphan at all). */
static m2mhsm_status attach_keys(ks_scan *sc, const ks_scan_work *w)
{
    for (size_t i = 0; i < w->count; i++) {
        const ks_key_seen *k = &w->keys[i];
        m2mhsm_record probe;
        memcpy(probe.record_id, k->record_id, M2MHSM_RECORD_ID_LEN);
        m2mhsm_record *rec = sc->count > 0
                                 ? bsearch(&probe, sc->recs, sc->count, sizeof(*rec), cmp_record_id)
                                 : NULL;
        if (rec != NULL && (ks_record_forms(rec) & (1u << k->form))) {
            ks_obj(rec)->key[k->form] = k->handle;
        } else if (is_protected(w, k->record_id) || w->unidentified_corrupt) {
            sc->kept_keys++;
        } else {
            m2mhsm_status st = push_orphan(sc, k->handle);
            if (st != M2MHSM_OK)
                return st;
        }
    }
    return M2MHSM_OK;
}

m2mhsm_status ks_scan_token(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *out)
{
    ks_scan_work w = {0};
    memset(out, 0, sizeof(*out));
    m2mhsm_status st = scan_keys(ks, s, &w);
    if (st == M2MHSM_OK)
        st = scan_meta(ks, s, out, &w);
    if (st == M2MHSM_OK && out->count > 0)
        qsort(out->recs, out->count, sizeof(*out->recs), cmp_record_id);
    if (st == M2MHSM_OK)
        st = attach_keys(out, &w);
    work_free(&w);
    if (st != M2MHSM_OK)
        ks_scan_free(out);
    return st;
}

int ks_record_complete(const m2mhsm_record *rec)
{
    unsigned need = ks_record_forms(rec);
    for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
        if ((need & (1u << f)) && ks_obj(rec)->key[f] == CK_INVALID_HANDLE)
            return 0;
    return 1;
}
