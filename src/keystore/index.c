/* A chained hash table from (kind, identity) to a record copy: the O(1) lookup that keeps
 * token scans off the handshake path. Not thread-safe; the keystore's lock guards it. */
#include "ks.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

struct ks_entry {
    ks_entry *next;
    uint64_t hash;
    m2mhsm_kind kind;
    size_t key_len;
    int64_t confirmed_ms;
    uint64_t confirmed_epoch; /* shared write epoch + 1 when last confirmed; 0: never */
    m2mhsm_record rec;
    char key[]; /* not NUL-terminated */
};

/* FNV-1a over kind and key. Identities come from the network, so a flood of colliding
 * names could lengthen chains; the table grows with the count, and the key is salted by
 * a per-table random value. */
static uint64_t hash_key(const ks_index *idx, m2mhsm_kind kind, const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ idx->salt;
    h = (h ^ (uint64_t)kind) * 1099511628211ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)key[i]) * 1099511628211ULL;
    return h;
}

m2mhsm_status ks_index_init(ks_index *idx, size_t expected)
{
    memset(idx, 0, sizeof(*idx));
    size_t n = 64;
    while (n < expected * 2)
        n *= 2;
    idx->buckets = calloc(n, sizeof(*idx->buckets));
    if (idx->buckets == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory for the index");
    idx->nbuckets = n;
    if (RAND_bytes((unsigned char *)&idx->salt, sizeof(idx->salt)) != 1)
        idx->salt = (uint64_t)(uintptr_t)idx;
    return M2MHSM_OK;
}

void ks_index_free(ks_index *idx)
{
    for (size_t i = 0; i < idx->nbuckets; i++) {
        ks_entry *e = idx->buckets[i];
        while (e != NULL) {
            ks_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(idx->buckets);
    memset(idx, 0, sizeof(*idx));
}

static ks_entry **find_slot(const ks_index *idx, m2mhsm_kind kind, const char *key, size_t len,
                            uint64_t h)
{
    ks_entry **p = &idx->buckets[h & (idx->nbuckets - 1)];
    for (; *p != NULL; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->kind == kind && (*p)->key_len == len &&
            memcmp((*p)->key, key, len) == 0)
            return p;
    return p;
}

static void grow(ks_index *idx)
{
    size_t n = idx->nbuckets * 2;
    ks_entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < idx->nbuckets; i++) {
        ks_entry *e = idx->buckets[i];
        while (e != NULL) {
            ks_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(idx->buckets);
    idx->buckets = b;
    idx->nbuckets = n;
}

m2mhsm_status ks_index_put(ks_index *idx, m2mhsm_kind kind, const char *key,
                           const m2mhsm_record *rec)
{
    if (idx->nbuckets == 0)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "index not initialised");
    size_t len = strlen(key);
    uint64_t h = hash_key(idx, kind, key, len);
    ks_entry **p = find_slot(idx, kind, key, len, h);
    if (*p != NULL) {
        (*p)->rec = *rec;
        (*p)->confirmed_ms = 0;
        (*p)->confirmed_epoch = 0;
        return M2MHSM_OK;
    }
    ks_entry *e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory for the index");
    e->next = NULL;
    e->hash = h;
    e->kind = kind;
    e->key_len = len;
    e->confirmed_ms = 0;
    e->confirmed_epoch = 0;
    e->rec = *rec;
    memcpy(e->key, key, len);
    *p = e;
    if (++idx->count > idx->nbuckets)
        grow(idx);
    return M2MHSM_OK;
}

const m2mhsm_record *ks_index_get(const ks_index *idx, m2mhsm_kind kind, const char *key,
                                  size_t len)
{
    if (idx->nbuckets == 0)
        return NULL;
    ks_entry **p = find_slot(idx, kind, key, len, hash_key(idx, kind, key, len));
    return *p != NULL ? &(*p)->rec : NULL;
}

int64_t *ks_index_confirmed(ks_index *idx, m2mhsm_kind kind, const char *key, size_t len)
{
    if (idx->nbuckets == 0)
        return NULL;
    ks_entry **p = find_slot(idx, kind, key, len, hash_key(idx, kind, key, len));
    return *p != NULL ? &(*p)->confirmed_ms : NULL;
}

uint64_t *ks_index_confirmed_epoch(ks_index *idx, m2mhsm_kind kind, const char *key, size_t len)
{
    if (idx->nbuckets == 0)
        return NULL;
    ks_entry **p = find_slot(idx, kind, key, len, hash_key(idx, kind, key, len));
    return *p != NULL ? &(*p)->confirmed_epoch : NULL;
}

void ks_index_del(ks_index *idx, m2mhsm_kind kind, const char *key, const m2mhsm_record *rec)
{
    if (idx->nbuckets == 0)
        return;
    size_t len = strlen(key);
    ks_entry **p = find_slot(idx, kind, key, len, hash_key(idx, kind, key, len));
    if (*p == NULL || memcmp((*p)->rec.record_id, rec->record_id, M2MHSM_RECORD_ID_LEN) != 0)
        return;
    ks_entry *e = *p;
    *p = e->next;
    free(e);
    idx->count--;
}

static int cmp_record_id(const void *a, const void *b)
{
    return memcmp(a, b, M2MHSM_RECORD_ID_LEN);
}

m2mhsm_status ks_index_missing(const ks_index *idx, const uint8_t *ids, size_t nids,
                               m2mhsm_record **out, size_t *count)
{
    m2mhsm_record *missing = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    *count = 0;
    for (size_t i = 0; i < idx->nbuckets; i++)
        for (const ks_entry *e = idx->buckets[i]; e != NULL; e = e->next) {
            if (bsearch(e->rec.record_id, ids, nids, M2MHSM_RECORD_ID_LEN, cmp_record_id) != NULL)
                continue;
            if (n == cap) {
                size_t grown_cap = cap ? 2 * cap : 8;
                m2mhsm_record *grown = realloc(missing, grown_cap * sizeof(*grown));
                if (grown == NULL) {
                    free(missing);
                    return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory comparing the index");
                }
                missing = grown;
                cap = grown_cap;
            }
            missing[n++] = e->rec;
        }
    *out = missing;
    *count = n;
    return M2MHSM_OK;
}
