/* TS-0003 clauses 10.3.1-10.3.4: the pure parts (splits, identifiers, HMAC messages) and
 * the TLS forms of a PSK computed from bytes the caller already holds. */
#include <m2mhsm/derive.h>
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SHA256_BLOCK 64

void m2mhsm_export_split(const uint8_t exported[M2MHSM_EXPORT_LEN],
                         uint8_t relative_ke_id[M2MHSM_RELATIVE_KE_ID_LEN],
                         uint8_t ke[M2MHSM_KE_LEN])
{
    memcpy(relative_ke_id, exported, M2MHSM_RELATIVE_KE_ID_LEN);
    memcpy(ke, exported + M2MHSM_RELATIVE_KE_ID_LEN, M2MHSM_KE_LEN);
}

m2mhsm_status m2mhsm_ke_id_format(const uint8_t relative_ke_id[M2MHSM_RELATIVE_KE_ID_LEN],
                                  const char *mef_fqdn, char *buf, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_FQDN, mef_fqdn);
    if (st != M2MHSM_OK)
        return st;
    size_t need = 2 * M2MHSM_RELATIVE_KE_ID_LEN + 1 + strlen(mef_fqdn) + 1;
    if (buf == NULL || len < need)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "KeID buffer too small");
    for (size_t i = 0; i < M2MHSM_RELATIVE_KE_ID_LEN; i++) {
        buf[2 * i] = hex[relative_ke_id[i] >> 4];
        buf[2 * i + 1] = hex[relative_ke_id[i] & 0xf];
    }
    buf[2 * M2MHSM_RELATIVE_KE_ID_LEN] = '@';
    strcpy(buf + 2 * M2MHSM_RELATIVE_KE_ID_LEN + 1, mef_fqdn);
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_derivation_input(m2mhsm_derivation which, const char *target_id, uint8_t **out,
                                      size_t *out_len)
{
    *out = NULL;
    /* 10.3.2: MAF-ID is the MAF's FQDN; 10.3.3: Enrolee B-ID is a CSE-ID or AE-ID, in its
     * absolute form (project decision: one spelling, one Kpsa). */
    m2mhsm_id_type type = which == M2MHSM_DERIVE_KM ? M2MHSM_ID_FQDN : M2MHSM_ID_M2M_ABS;
    m2mhsm_status st = m2mhsm_id_check_str(type, target_id);
    if (st != M2MHSM_OK)
        return st;
    const char *label = which == M2MHSM_DERIVE_KM ? M2MHSM_KM_LABEL : M2MHSM_KPSA_LABEL;
    size_t ll = strlen(label), tl = strlen(target_id);
    uint8_t *msg = malloc(ll + tl);
    if (msg == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    memcpy(msg, label, ll);
    memcpy(msg + ll, target_id, tl);
    *out = msg;
    *out_len = ll + tl;
    return M2MHSM_OK;
}

static m2mhsm_status psk_len_ok(size_t psk_len)
{
    if (psk_len < M2MHSM_PSK_MIN || psk_len > M2MHSM_PSK_MAX)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "PSK length %zu outside %d..%d bytes", psk_len,
                           M2MHSM_PSK_MIN, M2MHSM_PSK_MAX);
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_psk_tls12_pms_key(const uint8_t *psk, size_t psk_len,
                                       uint8_t out[M2MHSM_PMS_KEY_MAX], size_t *out_len)
{
    m2mhsm_status st = psk_len_ok(psk_len);
    if (st != M2MHSM_OK)
        return st;
    /* RFC 4279 section 2: other_secret = N zero bytes for plain PSK. */
    uint8_t pms[4 + 2 * M2MHSM_PSK_MAX];
    size_t n = 0;
    pms[n++] = (uint8_t)(psk_len >> 8);
    pms[n++] = (uint8_t)psk_len;
    memset(pms + n, 0, psk_len);
    n += psk_len;
    pms[n++] = (uint8_t)(psk_len >> 8);
    pms[n++] = (uint8_t)psk_len;
    memcpy(pms + n, psk, psk_len);
    n += psk_len;
    if (n <= SHA256_BLOCK) {
        /* RFC 2104: a key no longer than the block is used as it is. */
        memcpy(out, pms, n);
        *out_len = n;
        OPENSSL_cleanse(pms, sizeof(pms));
        return M2MHSM_OK;
    }
    /* RFC 2104: a longer key is replaced by its hash, so HMAC results are identical. */
    unsigned int md_len = 0;
    int ok = EVP_Digest(pms, n, out, &md_len, EVP_sha256(), NULL);
    OPENSSL_cleanse(pms, sizeof(pms));
    if (!ok || md_len != 32)
        return m2mhsm_fail(M2MHSM_E_CRYPTO, "SHA-256 of the premaster secret failed");
    *out_len = md_len;
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_psk_tls13_early_secret(const uint8_t *psk, size_t psk_len, uint8_t out[32])
{
    m2mhsm_status st = psk_len_ok(psk_len);
    if (st != M2MHSM_OK)
        return st;
    /* RFC 8446 7.1: Early Secret = HKDF-Extract(salt = 0^HashLen, IKM = PSK). */
    static const uint8_t zero[32];
    unsigned int md_len = 0;
    if (HMAC(EVP_sha256(), zero, sizeof(zero), psk, psk_len, out, &md_len) == NULL || md_len != 32)
        return m2mhsm_fail(M2MHSM_E_CRYPTO, "HMAC-SHA-256 for the early secret failed");
    return M2MHSM_OK;
}
