/*
 * Identifier grammar checks (TS-0004 6.2.3, TS-0003 10.3.4; project decisions in
 * docs/ts-0003-map.md). Non-ASCII input is rejected, never normalised: NFKC is the
 * identity on the ASCII grammar these identifiers have.
 */
#ifndef M2MHSM_IDS_H
#define M2MHSM_IDS_H

#include <stddef.h>
#include <m2mhsm/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

#define M2MHSM_KPM_ID_MAX 128 /* project decision: 1-128 of [A-Za-z0-9._@-] */
#define M2MHSM_FQDN_MAX 253   /* RFC 1035 */
#define M2MHSM_M2M_ID_MAX 255 /* CSE-ID / AE-ID; bound chosen by the project */
#define M2MHSM_RELATIVE_KE_ID_LEN 16
#define M2MHSM_KE_ID_MAX (2 * M2MHSM_RELATIVE_KE_ID_LEN + 1 + M2MHSM_FQDN_MAX)
#define M2MHSM_ID_MAX M2MHSM_KE_ID_MAX /* longest identity of any kind */

typedef enum {
    M2MHSM_ID_KPM,     /* KpmID */
    M2MHSM_ID_FQDN,    /* MEF FQDN, MAF-ID */
    M2MHSM_ID_M2M,     /* CSE-ID or AE-ID in any TS-0004 form */
    M2MHSM_ID_M2M_ABS, /* CSE-ID or AE-ID in absolute form "//sp-fqdn/..." (project
                          decision: Enrolee-ID and Enrolee B-ID, so that one entity has one
                          spelling and 10.3.3 derives one Kpsa) */
    M2MHSM_ID_TARGET,  /* Enrolment Target: a MAF-ID (FQDN) or an absolute CSE-ID/AE-ID */
    M2MHSM_ID_KE       /* KeID = hex(RelativeKeID) "@" MEF-FQDN */
} m2mhsm_id_type;

/*
 * Check that s[0..len) is a well-formed identifier of the given type. Rejects empty,
 * over-long, NUL-containing and non-ASCII input with M2MHSM_E_INVALID_ARG and a message
 * naming the problem. Thread-safe, pure.
 */
m2mhsm_status m2mhsm_id_check(m2mhsm_id_type type, const char *s, size_t len);

/* The same for a NUL-terminated string. */
m2mhsm_status m2mhsm_id_check_str(m2mhsm_id_type type, const char *s);

/*
 * Check s[0..len) and write its canonical spelling into out (cap >= len + 1): a KeID's hex
 * in upper case (either case is accepted on input, TS-0003 notes §2); other types as given.
 */
m2mhsm_status m2mhsm_id_canonical(m2mhsm_id_type type, const char *s, size_t len, char *out,
                                  size_t cap);

/* Human name of the type for messages ("KpmID"). */
const char *m2mhsm_id_type_name(m2mhsm_id_type type);

#ifdef __cplusplus
}
#endif
#endif
