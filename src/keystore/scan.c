/* One enumeration of every m2mhsm object on the token: at open, and for the rare admin
 * operations (list, erase, sweep) that must see other processes' objects. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

void ks_scan_free(ks_scan *sc)
{
    free(sc->recs);
    free(sc->orphans);
    memset(sc, 0, sizeof(*sc));
}

static m2mhsm_status push_record(ks_scan *sc, const m2mhsm_record *rec)
{
    if (sc->count == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        m2mhsm_record *r = realloc(sc->recs, cap * sizeof(*r));
        if (r == NULL)
            return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
        sc->recs = r;
        sc->cap = cap;
    }
    sc->recs[sc->count++] = *rec;
    return M2MHSM_OK;
}

static int cmp_record_id(const void *a, const void *b)
{
    return memcmp(((const m2mhsm_record *)a)->record_id, ((const m2mhsm_record *)b)->record_id,
                  M2MHSM_RECORD_ID_LEN);
}

static m2mhsm_status scan_meta(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *sc)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_APPLICATION, (void *)M2MHSM_APPLICATION, strlen(M2MHSM_APPLICATION)},
    };
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    m2mhsm_status st = ks_find(ks->tok, s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &h, &n);
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++) {
        m2mhsm_record rec;
        m2mhsm_status rs = ks_read_meta(ks->tok, s, h[i], &rec);
        if (rs == M2MHSM_E_CORRUPT)
            sc->corrupt++; /* left in place for an operator to inspect */
        else if (rs == M2MHSM_E_NOT_FOUND)
            continue;
        else if (rs != M2MHSM_OK)
            st = rs;
        else
            st = push_record(sc, &rec);
    }
    free(h);
    return st;
}

static m2mhsm_status push_orphan(ks_scan *sc, CK_OBJECT_HANDLE h)
{
    CK_OBJECT_HANDLE *o = realloc(sc->orphans, (sc->orphan_count + 1) * sizeof(*o));
    if (o == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    sc->orphans = o;
    sc->orphans[sc->orphan_count++] = h;
    return M2MHSM_OK;
}

/* Attach one secret key to its record by CKA_ID, or note it as an orphan. Keys whose label
 * is not ours are someone else's (a KEK, another application) and are never touched. */
static m2mhsm_status attach_key(ks_scan *sc, m2mhsm_token *tok, CK_SESSION_HANDLE s,
                                CK_OBJECT_HANDLE h)
{
    char label[M2MHSM_LABEL_MAX];
    m2mhsm_record key = {0};
    size_t id_len = 0;
    m2mhsm_status st = ks_read_key_ids(tok, s, h, label, sizeof(label), key.record_id, &id_len);
    if (st == M2MHSM_E_NOT_FOUND)
        return M2MHSM_OK;
    if (st != M2MHSM_OK)
        return st;
    int form = ks_label_form(label);
    if (form < 0)
        return M2MHSM_OK;
    m2mhsm_record *rec = NULL;
    if (id_len == M2MHSM_RECORD_ID_LEN && sc->count > 0)
        rec = bsearch(&key, sc->recs, sc->count, sizeof(*rec), cmp_record_id);
    if (rec == NULL || !(ks_kind_forms(rec->kind) & (1u << form)))
        return push_orphan(sc, h);
    rec->key[form] = h;
    return M2MHSM_OK;
}

static m2mhsm_status scan_keys(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *sc)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    m2mhsm_status st = ks_find(ks->tok, s, tmpl, 1, &h, &n);
    for (size_t i = 0; st == M2MHSM_OK && i < n; i++)
        st = attach_key(sc, ks->tok, s, h[i]);
    free(h);
    return st;
}

m2mhsm_status ks_scan_token(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, ks_scan *out)
{
    memset(out, 0, sizeof(*out));
    m2mhsm_status st = scan_meta(ks, s, out);
    if (st == M2MHSM_OK && out->count > 0)
        qsort(out->recs, out->count, sizeof(*out->recs), cmp_record_id);
    if (st == M2MHSM_OK)
        st = scan_keys(ks, s, out);
    if (st != M2MHSM_OK)
        ks_scan_free(out);
    return st;
}

int ks_record_complete(const m2mhsm_record *rec)
{
    unsigned need = ks_kind_forms(rec->kind);
    for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
        if ((need & (1u << f)) && rec->key[f] == CK_INVALID_HANDLE)
            return 0;
    return 1;
}
