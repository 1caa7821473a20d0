/*
 * TS-0003 key derivations. The pure functions here build inputs and check values; the
 * derivations keyed by Ke run on the token (see keystore.h for those that store).
 */
#ifndef M2MHSM_DERIVE_H
#define M2MHSM_DERIVE_H

#include <stddef.h>
#include <stdint.h>
#include <m2mhsm/errors.h>
#include <m2mhsm/ids.h>

#ifdef __cplusplus
extern "C" {
#endif

#define M2MHSM_KE_LEN 32
#define M2MHSM_KEY_LEN 32    /* Km, Kpsa: HMAC-SHA-256 outputs */
#define M2MHSM_EXPORT_LEN 48 /* clause 10.3.1: RelativeKeID (16) || Ke (32) */
#define M2MHSM_PSK_MIN 16
#define M2MHSM_PSK_MAX 64

/* Clause 10.3.1 exporter label (25 bytes, used with no context). */
#define M2MHSM_EXPORTER_BOOTSTRAP "EXPORTER-oneM2M-Bootstrap"
/* Clause 10.3.2 and 10.3.3 labels. */
#define M2MHSM_KM_LABEL "oneM2M Enrolment Key to Master Credential derivation"
#define M2MHSM_KPSA_LABEL "oneM2M Enrolment Key to Provisioned Secure Connection Key derivation"

/*
 * Clause 10.3.1: RelativeKeID = the 16 most significant bytes of the 48-byte export,
 * Ke = the 32 least significant (big-endian reading: out[0..15], out[16..47]). Pure.
 */
void m2mhsm_export_split(const uint8_t exported[M2MHSM_EXPORT_LEN],
                         uint8_t relative_ke_id[M2MHSM_RELATIVE_KE_ID_LEN],
                         uint8_t ke[M2MHSM_KE_LEN]);

/*
 * Clause 10.3.4: KeID = hexBinary(RelativeKeID) "@" MEF-FQDN, upper-case hex, lower-case
 * FQDN. buf must hold M2MHSM_KE_ID_MAX + 1. Errors: invalid FQDN, short buffer. Pure.
 */
m2mhsm_status m2mhsm_ke_id_format(const uint8_t relative_ke_id[M2MHSM_RELATIVE_KE_ID_LEN],
                                  const char *mef_fqdn, char *buf, size_t len);

/*
 * The HMAC message of clause 10.3.2 (label || MAF-ID) or 10.3.3 (label || Enrolee-B-ID),
 * after checking the identifier (ASCII; FQDN for a MAF-ID, CSE-ID/AE-ID for Enrolee B).
 * *out is malloc'd (not secret); the caller frees it. Pure.
 */
typedef enum { M2MHSM_DERIVE_KM, M2MHSM_DERIVE_KPSA } m2mhsm_derivation;
m2mhsm_status m2mhsm_derivation_input(m2mhsm_derivation which, const char *target_id, uint8_t **out,
                                      size_t *out_len);

/* Longest TLS 1.2 premaster key form: an HMAC-SHA-256 block. */
#define M2MHSM_PMS_KEY_MAX 64

/*
 * The TLS forms of a PSK that the provider keys HMAC with (docs/key-lifecycle.md):
 *  - TLS 1.2 plain PSK: the RFC 4279 premaster secret [u16 N][N zero bytes][u16 N][psk] as
 *    the HMAC key of the PRF. RFC 2104 replaces a key longer than SHA-256's 64-byte block by
 *    its hash, so for N > 30 the form is SHA-256(premaster) (32 bytes) and otherwise the
 *    premaster itself: P_SHA256 results are identical either way, and a 68-byte object,
 *    whose C_DigestKey output would be the effective key, is never stored.
 *  - TLS 1.3 external PSK: the early secret HKDF-Extract(0^32, psk) = HMAC(0^32, psk).
 * Computed in host memory from PSK bytes the caller already holds. Pure.
 */
m2mhsm_status m2mhsm_psk_tls12_pms_key(const uint8_t *psk, size_t psk_len,
                                       uint8_t out[M2MHSM_PMS_KEY_MAX], size_t *out_len);
m2mhsm_status m2mhsm_psk_tls13_early_secret(const uint8_t *psk, size_t psk_len, uint8_t out[32]);

#ifdef __cplusplus
}
#endif
#endif
