/* Writing a record: metadata first, then its keys, so a crash never leaves a usable key
 * without metadata (docs/key-lifecycle.md). */
#include "ks.h"
#include "write.h"
#include "../internal.h"

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

static m2mhsm_status write_objects(m2mhsm_keystore *ks, CK_SESSION_HANDLE s, m2mhsm_record *rec,
                                   const ks_key_spec specs[M2MHSM_FORM_COUNT])
{
    m2mhsm_status st = ks_create_meta(ks->fn, s, rec, &ks_obj(rec)->meta);
    for (int f = 0; st == M2MHSM_OK && f < M2MHSM_FORM_COUNT; f++)
        if (ks_record_forms(rec) & (1u << f))
            st = ks_create_key(ks->fn, s, rec, (m2mhsm_form)f, &specs[f], &ks_obj(rec)->key[f]);
    if (st != M2MHSM_OK) {
        /* Undo what was written; the error reported is the first one. */
        char first[256];
        strncpy(first, m2mhsm_last_error(), sizeof(first) - 1);
        first[sizeof(first) - 1] = '\0';
        ks_record_destroy_objects(ks, s, rec);
        return m2mhsm_fail(st, "%s", first);
    }
    return M2MHSM_OK;
}

m2mhsm_status ks_record_write(m2mhsm_keystore *ks, m2mhsm_record *rec,
                              const ks_key_spec specs[M2MHSM_FORM_COUNT])
{
    ks_obj(rec)->meta = CK_INVALID_HANDLE;
    for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
        ks_obj(rec)->key[f] = CK_INVALID_HANDLE;
    m2mhsm_status st = ks_check_writable(ks, "write");
    if (st != M2MHSM_OK)
        return st;
    /* A PSK gets the forms this store was opened for; every other kind all of its own. */
    rec->forms = ks_kind_is_psk(rec->kind) ? ks->psk_forms : ks_kind_forms(rec->kind);
    if (RAND_bytes(rec->record_id, M2MHSM_RECORD_ID_LEN) != 1)
        return m2mhsm_fail(M2MHSM_E_CRYPTO, "RAND_bytes for the record id failed");
    CK_SESSION_HANDLE s;
    if ((st = m2mhsm_token_session_get(ks->tok, &s)) != M2MHSM_OK)
        return st;
    m2mhsm_token_write_begin(ks->tok);
    st = write_objects(ks, s, rec, specs);
    m2mhsm_token_write_changed(ks->tok, s); /* even a failed write may have left objects */
    m2mhsm_token_write_end(ks->tok);
    ks_obj(rec)->generation = m2mhsm_token_generation(ks->tok);
    m2mhsm_token_session_put(ks->tok, s);
    if (st == M2MHSM_OK) {
        pthread_mutex_lock(&ks->lock);
        ks_index_insert(ks, rec);
        pthread_mutex_unlock(&ks->lock);
    }
    return st;
}

m2mhsm_status ks_psk_forms(const uint8_t *psk, size_t len, ks_psk_buf *buf,
                           ks_key_spec specs[M2MHSM_FORM_COUNT])
{
    m2mhsm_status st = m2mhsm_psk_tls12_pms_key(psk, len, buf->pms, &buf->pms_len);
    if (st == M2MHSM_OK)
        st = m2mhsm_psk_tls13_early_secret(psk, len, buf->es);
    if (st != M2MHSM_OK) {
        OPENSSL_cleanse(buf, sizeof(*buf));
        return st;
    }
    /* The raw PSK, where the store keeps it (psk_forms), has no usage: handshakes use its
     * forms. ks_record_write uses the specs of the forms the store keeps only. */
    specs[M2MHSM_FORM_RAW] = (ks_key_spec){psk, len, CK_FALSE, NULL, NULL};
    specs[M2MHSM_FORM_TLS12_PMS] = (ks_key_spec){buf->pms, buf->pms_len, CK_TRUE, NULL, NULL};
    specs[M2MHSM_FORM_TLS13_ES] = (ks_key_spec){buf->es, sizeof(buf->es), CK_TRUE, NULL, NULL};
    return M2MHSM_OK;
}

m2mhsm_status ks_write_psk(m2mhsm_keystore *ks, m2mhsm_record *rec, const uint8_t *psk, size_t len)
{
    ks_psk_buf buf;
    ks_key_spec specs[M2MHSM_FORM_COUNT];
    m2mhsm_status st = ks_psk_forms(psk, len, &buf, specs);
    if (st == M2MHSM_OK)
        st = ks_record_write(ks, rec, specs);
    OPENSSL_cleanse(&buf, sizeof(buf));
    return st;
}
