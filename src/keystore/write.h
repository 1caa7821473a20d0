/* Record writing shared by the store operations. */
#ifndef M2MHSM_WRITE_H
#define M2MHSM_WRITE_H

#include "ks.h"

typedef struct {
    uint8_t pms[M2MHSM_PMS_KEY_MAX];
    size_t pms_len;
    uint8_t es[32];
} ks_psk_buf;

/* Write metadata then keys (specs indexed by form; only rec->forms are used: a PSK's are the
 * store's psk_forms, any other kind's all of its own), set the forms, handles and record id
 * in rec, and index it. rec->created/expiry are the caller's. */
m2mhsm_status ks_record_write(m2mhsm_keystore *ks, m2mhsm_record *rec,
                              const ks_key_spec specs[M2MHSM_FORM_COUNT]);
/* Compute the TLS forms of a PSK into buf (cleanse it after use) and fill specs. */
m2mhsm_status ks_psk_forms(const uint8_t *psk, size_t len, ks_psk_buf *buf,
                           ks_key_spec specs[M2MHSM_FORM_COUNT]);
/* ks_psk_forms + ks_record_write, cleansing the forms. */
m2mhsm_status ks_write_psk(m2mhsm_keystore *ks, m2mhsm_record *rec, const uint8_t *psk, size_t len);
/* A Km/Kpsa (rec) derived on the token as HMAC(ke, msg) by CKM_HKDF_DERIVE, its forms
 * made from it there (hkdf.c); rec->derived_in_token = 1 once written. */
m2mhsm_status ks_write_hkdf(m2mhsm_keystore *ks, m2mhsm_record *rec, CK_OBJECT_HANDLE ke,
                            const uint8_t *msg, size_t msg_len);

#endif
