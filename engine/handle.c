/* The handle registry, and recognising handles in what libssl passes to the KDFs. */
#include "handle.h"
#include "../src/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

/* The TLS forms a handshake signs with. */
static const m2mhsm_form hot_forms[] = {M2MHSM_FORM_TLS12_PMS, M2MHSM_FORM_TLS13_ES};
#define HOT_COUNT 2

typedef struct {
    m2mhsm_record rec;
    uint8_t tag[M2MHSM_HANDLE_TAG_LEN];
    int used;
    /* In-memory session copies of the TLS forms, which the module signs with several times
     * faster than with the stored keys; CK_INVALID_HANDLE where the token would not copy. */
    CK_OBJECT_HANDLE hot[HOT_COUNT];
} slot;

struct m2mhsm_handles {
    m2mhsm_keystore *ks;
    pthread_mutex_t lock;
    m2mhsm_forksafe fork; /* lock, taken around fork() (src/internal.h) */
    slot *slots;
    size_t count, cap;
    /* record id -> slot index + 1 (0: empty), open addressing: issuing a handle is O(1)
     * however many enrolees a server has seen. Record ids are random, so their first
     * bytes hash well. */
    uint32_t *map;
    size_t map_cap;
};

m2mhsm_status m2mhsm_handles_new(m2mhsm_keystore *ks, m2mhsm_handles **out)
{
    m2mhsm_handles *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return M2MHSM_E_NOMEM;
    h->ks = ks;
    pthread_mutex_init(&h->lock, NULL);
    h->fork = (m2mhsm_forksafe){.rank = M2MHSM_RANK_HANDLES, .mutex = &h->lock};
    if (m2mhsm_forksafe_add(&h->fork) != 0) {
        pthread_mutex_destroy(&h->lock);
        free(h);
        return M2MHSM_E_NOMEM;
    }
    *out = h;
    return M2MHSM_OK;
}

/* Destroy a slot's copies, if they belong to this process's module generation: after a
 * fork the numbers name the parent's objects, which are not ours to touch. */
static void drop_hot(m2mhsm_handles *h, slot *s)
{
    m2mhsm_token *tok = m2mhsm_keystore_token(h->ks);
    int ours = s->used && ks_obj(&s->rec)->generation == m2mhsm_token_generation(tok);
    for (int i = 0; i < HOT_COUNT; i++) {
        if (ours && s->hot[i] != CK_INVALID_HANDLE)
            m2mhsm_token_session_destroy(tok, s->hot[i]);
        s->hot[i] = CK_INVALID_HANDLE;
    }
}

static void make_hot(m2mhsm_handles *h, slot *s, const m2mhsm_record *rec)
{
    for (int i = 0; i < HOT_COUNT; i++)
        if (ks_obj(rec)->key[hot_forms[i]] == CK_INVALID_HANDLE || /* stored without that form */
            m2mhsm_token_session_copy(m2mhsm_keystore_token(h->ks), ks_obj(rec)->key[hot_forms[i]],
                                      &s->hot[i]) != M2MHSM_OK)
            s->hot[i] = CK_INVALID_HANDLE; /* sign with the stored key instead */
}

void m2mhsm_handles_free(m2mhsm_handles *h)
{
    if (h == NULL)
        return;
    m2mhsm_forksafe_remove(&h->fork);
    for (size_t i = 0; i < h->count; i++)
        if (h->slots[i].used)
            drop_hot(h, &h->slots[i]);
    OPENSSL_cleanse(h->slots, h->cap * sizeof(*h->slots));
    free(h->slots);
    free(h->map);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

m2mhsm_keystore *m2mhsm_handles_keystore(m2mhsm_handles *h)
{
    return h->ks;
}

pthread_mutex_t *m2mhsm_handles_lock(m2mhsm_handles *h)
{
    return &h->lock;
}

static size_t map_pos(const m2mhsm_handles *h, const uint8_t *record_id)
{
    uint64_t v;
    memcpy(&v, record_id, sizeof(v));
    return (size_t)v & (h->map_cap - 1);
}

static int map_put(m2mhsm_handles *h, uint32_t index)
{
    if (2 * (h->count + 1) > h->map_cap) {
        size_t cap = h->map_cap ? h->map_cap * 2 : 128;
        uint32_t *m = calloc(cap, sizeof(*m));
        if (m == NULL)
            return 0;
        free(h->map);
        h->map = m;
        h->map_cap = cap;
        for (size_t i = 0; i < h->count; i++) /* re-insert all but the new one */
            if (i != index)
                for (size_t p = map_pos(h, h->slots[i].rec.record_id);; p = (p + 1) & (cap - 1))
                    if (m[p] == 0) {
                        m[p] = (uint32_t)i + 1;
                        break;
                    }
    }
    for (size_t p = map_pos(h, h->slots[index].rec.record_id);; p = (p + 1) & (h->map_cap - 1))
        if (h->map[p] == 0) {
            h->map[p] = index + 1;
            return 1;
        }
}

/* The slot already holding this record, else a new one. Caller holds the lock. */
static slot *slot_for(m2mhsm_handles *h, const m2mhsm_record *rec, uint32_t *index)
{
    for (size_t p = h->map_cap ? map_pos(h, rec->record_id) : 0; h->map_cap && h->map[p];
         p = (p + 1) & (h->map_cap - 1)) {
        slot *s = &h->slots[h->map[p] - 1];
        if (memcmp(s->rec.record_id, rec->record_id, M2MHSM_RECORD_ID_LEN) == 0) {
            *index = h->map[p] - 1;
            return s;
        }
    }
    if (h->count == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        slot *n = realloc(h->slots, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        h->slots = n;
        h->cap = cap;
    }
    *index = (uint32_t)h->count;
    slot *s = &h->slots[h->count];
    memset(s, 0, sizeof(*s));
    memcpy(s->rec.record_id, rec->record_id, M2MHSM_RECORD_ID_LEN);
    if (!map_put(h, *index))
        return NULL;
    h->count++;
    return s;
}

/* New handles for the record (a new record, a fork, a re-lookup): fresh copies. */
static int stale(const slot *s, const m2mhsm_record *rec)
{
    return !s->used || ks_obj(&s->rec)->generation != ks_obj(rec)->generation ||
           memcmp(ks_obj(&s->rec)->key, ks_obj(rec)->key, sizeof(ks_obj(rec)->key)) != 0;
}

m2mhsm_status m2mhsm_handles_issue(m2mhsm_handles *h, const m2mhsm_record *rec,
                                   uint8_t out[M2MHSM_HANDLE_LEN])
{
    uint32_t index = 0;
    pthread_mutex_lock(&h->lock);
    slot *s = slot_for(h, rec, &index);
    m2mhsm_status st = M2MHSM_OK;
    if (s == NULL)
        st = M2MHSM_E_NOMEM;
    else if (!s->used && RAND_bytes(s->tag, sizeof(s->tag)) != 1)
        st = M2MHSM_E_CRYPTO;
    if (st == M2MHSM_OK && stale(s, rec)) {
        drop_hot(h, s);
        make_hot(h, s, rec);
    }
    if (st == M2MHSM_OK) {
        s->rec = *rec;
        s->used = 1;
        memcpy(out, M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN);
        memcpy(out + M2MHSM_HANDLE_MAGIC_LEN, &index, 4);
        memcpy(out + M2MHSM_HANDLE_MAGIC_LEN + 4, s->tag, M2MHSM_HANDLE_TAG_LEN);
    }
    pthread_mutex_unlock(&h->lock);
    return st;
}

void m2mhsm_handles_revoke(m2mhsm_handles *h, const uint8_t record_id[M2MHSM_RECORD_ID_LEN])
{
    pthread_mutex_lock(&h->lock);
    for (size_t p = h->map_cap ? map_pos(h, record_id) : 0; h->map_cap && h->map[p];
         p = (p + 1) & (h->map_cap - 1)) {
        slot *s = &h->slots[h->map[p] - 1];
        if (memcmp(s->rec.record_id, record_id, M2MHSM_RECORD_ID_LEN) == 0) {
            drop_hot(h, s);
            s->used = 0;
            OPENSSL_cleanse(s->tag, sizeof(s->tag));
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
}

m2mhsm_status m2mhsm_handles_resolve(m2mhsm_handles *h, const uint8_t *handle, size_t len,
                                     m2mhsm_record *rec)
{
    if (!m2mhsm_handle_shaped(handle, len) && !m2mhsm_es_handle_shaped(handle, len))
        return M2MHSM_E_NOT_FOUND;
    uint32_t index;
    memcpy(&index, handle + M2MHSM_HANDLE_MAGIC_LEN, 4);
    const uint8_t *tag = handle + M2MHSM_HANDLE_MAGIC_LEN + 4;
    m2mhsm_status st = M2MHSM_E_NOT_FOUND;
    pthread_mutex_lock(&h->lock);
    unsigned gen = m2mhsm_token_generation(m2mhsm_keystore_token(h->ks));
    /* A slot from before a fork names the parent's objects: stale until issued again. */
    if (index < h->count && h->slots[index].used &&
        ks_obj(&h->slots[index].rec)->generation == gen &&
        CRYPTO_memcmp(h->slots[index].tag, tag, M2MHSM_HANDLE_TAG_LEN) == 0) {
        const slot *s = &h->slots[index];
        *rec = s->rec;
        for (int i = 0; i < HOT_COUNT; i++)
            if (s->hot[i] != CK_INVALID_HANDLE)
                ks_obj(rec)->key[hot_forms[i]] = s->hot[i];
        st = M2MHSM_OK;
    }
    pthread_mutex_unlock(&h->lock);
    /* An expired key computes nothing, even mid-handshake. */
    if (st == M2MHSM_OK && !m2mhsm_record_valid(h->ks, rec))
        st = M2MHSM_E_EXPIRED;
    return st;
}

m2mhsm_status m2mhsm_handles_recover(m2mhsm_handles *h, unsigned generation, const uint8_t *handle,
                                     size_t len, m2mhsm_record *rec)
{
    m2mhsm_status st = m2mhsm_token_recover(m2mhsm_keystore_token(h->ks), generation);
    if (st != M2MHSM_OK)
        return st;
    /* The record's id is on the token, so the lookup finds the same slot: the handle
     * libssl holds keeps its tag and now names the new generation's objects. */
    m2mhsm_record fresh;
    uint8_t issued[M2MHSM_HANDLE_LEN];
    st = m2mhsm_keystore_lookup(h->ks, rec->kind, rec->identity, strlen(rec->identity), &fresh);
    if (st == M2MHSM_OK && memcmp(fresh.record_id, rec->record_id, M2MHSM_RECORD_ID_LEN) != 0)
        st = M2MHSM_E_NOT_FOUND; /* replaced meanwhile: this handshake's key is gone */
    if (st == M2MHSM_OK)
        st = m2mhsm_handles_issue(h, &fresh, issued);
    if (st == M2MHSM_OK)
        st = m2mhsm_handles_resolve(h, handle, len, rec);
    OPENSSL_cleanse(issued, sizeof(issued));
    return st;
}

int m2mhsm_handle_shaped(const uint8_t *psk, size_t len)
{
    return len == M2MHSM_HANDLE_LEN &&
           memcmp(psk, M2MHSM_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN) == 0;
}

int m2mhsm_es_handle_shaped(const uint8_t *b, size_t len)
{
    static const uint8_t pad[M2MHSM_ES_HANDLE_LEN - M2MHSM_HANDLE_LEN];
    return len == M2MHSM_ES_HANDLE_LEN &&
           memcmp(b, M2MHSM_ES_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN) == 0 &&
           memcmp(b + M2MHSM_HANDLE_LEN, pad, sizeof(pad)) == 0;
}

void m2mhsm_es_handle_from(const uint8_t psk_handle[M2MHSM_HANDLE_LEN],
                           uint8_t out[M2MHSM_ES_HANDLE_LEN])
{
    memset(out, 0, M2MHSM_ES_HANDLE_LEN);
    memcpy(out, psk_handle, M2MHSM_HANDLE_LEN);
    memcpy(out, M2MHSM_ES_HANDLE_MAGIC, M2MHSM_HANDLE_MAGIC_LEN);
}

int m2mhsm_premaster_psk(const uint8_t *secret, size_t len, const uint8_t **psk, size_t *psk_len,
                         int *plain)
{
    if (len < 4)
        return 0;
    size_t m = (size_t)secret[0] << 8 | secret[1];
    if (len < 4 + m)
        return 0;
    size_t n = (size_t)secret[2 + m] << 8 | secret[3 + m];
    if (len != 4 + m + n)
        return 0;
    int zeros = m == n;
    for (size_t i = 0; zeros && i < m; i++)
        zeros = secret[2 + i] == 0;
    *psk = secret + 4 + m;
    *psk_len = n;
    *plain = zeros;
    return 1;
}
