/* Bulk provisioning: Kpm imports whose existence check is the index built at open, not a
 * token search, so N imports cost O(N) (include/m2mhsm/keystore.h). */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

/* A KEK found on the token, by label. Manifests name few KEKs: a short list suffices. */
typedef struct {
    char *label;
    CK_OBJECT_HANDLE handle;
} batch_kek;

struct m2mhsm_kpm_batch {
    m2mhsm_keystore *ks;
    unsigned generation; /* the module generation the KEK handles belong to (fork) */
    batch_kek *keks;
    size_t kek_count, kek_cap;
};

m2mhsm_status m2mhsm_kpm_batch_begin(m2mhsm_keystore *ks, m2mhsm_kpm_batch **out)
{
    if (ks == NULL || out == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "kpm_batch_begin: NULL argument");
    *out = NULL;
    m2mhsm_status st = ks_check_writable(ks, "kpm batch");
    if (st != M2MHSM_OK)
        return st;
    m2mhsm_kpm_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    b->ks = ks;
    b->generation = m2mhsm_token_generation(ks->tok);
    *out = b;
    return M2MHSM_OK;
}

static void forget_keks(m2mhsm_kpm_batch *b)
{
    for (size_t i = 0; i < b->kek_count; i++)
        free(b->keks[i].label);
    b->kek_count = 0;
}

void m2mhsm_kpm_batch_end(m2mhsm_kpm_batch *b)
{
    if (b == NULL)
        return;
    forget_keks(b);
    free(b->keks);
    free(b);
}

static m2mhsm_status remember_kek(m2mhsm_kpm_batch *b, const char *label, CK_OBJECT_HANDLE h)
{
    if (b->kek_count == b->kek_cap) {
        size_t n = b->kek_cap ? b->kek_cap * 2 : 4;
        batch_kek *k = realloc(b->keks, n * sizeof(*k));
        if (k == NULL)
            return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
        b->keks = k;
        b->kek_cap = n;
    }
    char *copy = strdup(label);
    if (copy == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    b->keks[b->kek_count++] = (batch_kek){copy, h};
    return M2MHSM_OK;
}

/* The KEK labelled `label`: searched for on the token the first time, then remembered. */
static m2mhsm_status kek_of(m2mhsm_kpm_batch *b, const char *label, CK_OBJECT_HANDLE *out)
{
    m2mhsm_status st = ks_sync_generation(b->ks);
    if (st != M2MHSM_OK)
        return st;
    unsigned gen = m2mhsm_token_generation(b->ks->tok);
    if (gen != b->generation) { /* handles are per module initialisation */
        forget_keks(b);
        b->generation = gen;
    }
    for (size_t i = 0; i < b->kek_count; i++)
        if (strcmp(b->keks[i].label, label) == 0) {
            *out = b->keks[i].handle;
            return M2MHSM_OK;
        }
    if ((st = ks_find_kek(b->ks, label, out)) != M2MHSM_OK)
        return m2mhsm_fail(st, "KEK \"%s\": %s", label, m2mhsm_last_error());
    return remember_kek(b, label, *out);
}

static int given(const char *s)
{
    return s != NULL;
}

static m2mhsm_status check_configuration(const m2mhsm_kpm_item *it, m2mhsm_time now)
{
    int n = given(it->target_id) + given(it->enrolee_id) + (it->enrolment_expiry != NULL);
    if (n == 0)
        return M2MHSM_OK;
    if (n != 3)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "the enrolment configuration needs a target "
                                                 "ID, an Enrolee-ID and an Enrolment Expiry");
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_TARGET, it->target_id);
    if (st == M2MHSM_OK)
        st = m2mhsm_id_check_str(M2MHSM_ID_M2M_ABS, it->enrolee_id);
    m2mhsm_time probe;
    if (st == M2MHSM_OK)
        st = m2mhsm_expiry_resolve(it->enrolment_expiry, now, &probe);
    return st;
}

m2mhsm_status m2mhsm_kpm_batch_check(m2mhsm_kpm_batch *b, const m2mhsm_kpm_item *it)
{
    if (b == NULL || it == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "kpm_batch_check: NULL argument");
    if ((it->kpm == NULL) == (it->wrapped == NULL))
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "give the Kpm either plain or wrapped");
    m2mhsm_status st =
        it->kpm != NULL ? ks_kpm_check(it->kpm_id, it->kpm, it->kpm_len)
                        : ks_wrapped_check(it->kpm_id, it->wrapped, it->wrapped_len, it->kek_label);
    if (st == M2MHSM_OK && !m2mhsm_expiry_is_valid(it->valid_until, m2mhsm_keystore_now(b->ks)))
        st = m2mhsm_fail(M2MHSM_E_EXPIRED, "valid_until is not in the future");
    if (st == M2MHSM_OK)
        st = check_configuration(it, m2mhsm_keystore_now(b->ks));
    CK_OBJECT_HANDLE kek;
    if (st == M2MHSM_OK && it->wrapped != NULL &&
        (st = kek_of(b, it->kek_label, &kek)) == M2MHSM_OK)
        st = ks_kpm_unwrap_probe(b->ks, it->wrapped, it->wrapped_len, kek);
    return st;
}

int m2mhsm_kpm_batch_known(m2mhsm_kpm_batch *b, const char *kpm_id)
{
    if (b == NULL || kpm_id == NULL)
        return 0;
    m2mhsm_keystore *ks = b->ks;
    pthread_mutex_lock(&ks->lock);
    int known = ks_index_get(&ks->idx, M2MHSM_KIND_KPM, kpm_id, strlen(kpm_id)) != NULL;
    pthread_mutex_unlock(&ks->lock);
    return known;
}

m2mhsm_status m2mhsm_kpm_batch_import(m2mhsm_kpm_batch *b, const m2mhsm_kpm_item *it,
                                      m2mhsm_record *out)
{
    if (b == NULL || it == NULL || it->kpm_id == NULL)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "kpm_batch_import: NULL argument");
    if ((it->kpm == NULL) == (it->wrapped == NULL))
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "give the Kpm either plain or wrapped");
    m2mhsm_status st = check_configuration(it, m2mhsm_keystore_now(b->ks));
    if (st != M2MHSM_OK)
        return st;
    if (m2mhsm_kpm_batch_known(b, it->kpm_id))
        return m2mhsm_fail(M2MHSM_E_EXISTS, "a Kpm with this KpmID exists; erase it first");
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    if (it->wrapped != NULL && ((st = ks_wrapped_check(it->kpm_id, it->wrapped, it->wrapped_len,
                                                       it->kek_label)) != M2MHSM_OK ||
                                (st = kek_of(b, it->kek_label, &kek)) != M2MHSM_OK))
        return st;
    if (it->enrolment_expiry != NULL &&
        (st = m2mhsm_keystore_configure_enrolee(b->ks, it->kpm_id, it->target_id, it->enrolee_id,
                                                it->enrolment_expiry)) != M2MHSM_OK)
        return st;
    if (it->kpm != NULL)
        return ks_kpm_write(b->ks, it->kpm_id, it->kpm, it->kpm_len, it->valid_until, out);
    return ks_kpm_unwrap_write(b->ks, it->kpm_id, it->wrapped, it->wrapped_len, kek,
                               it->valid_until, out);
}
