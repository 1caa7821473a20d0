/*
 * Enrolment Expiry (the CR's clause 10.x): parsing the configured value, turning it into
 * an absolute UTC instant, clamping derived keys to Ke's lifetime, and m2m:timestamp
 * formatting (TS-0004: YYYYMMDDThhmmss[,ffffff], always UTC).
 */
#ifndef M2MHSM_EXPIRY_H
#define M2MHSM_EXPIRY_H

#include <stddef.h>
#include <stdint.h>
#include <m2mhsm/errors.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds since the Unix epoch, UTC. */
typedef int64_t m2mhsm_time;

/* "No expiry" (Kpm without --valid-until). */
#define M2MHSM_NEVER INT64_MAX

/* Longest lifetime we accept for a duration: 100 years; anything longer is a typo. */
#define M2MHSM_MAX_DURATION ((int64_t)100 * 366 * 24 * 3600)

/* m2m:timestamp "20261127T221000" is 15 characters; with ",ffffff" 22. */
#define M2MHSM_TIMESTAMP_LEN 16

typedef enum { M2MHSM_EXPIRY_DURATION = 1, M2MHSM_EXPIRY_ABSOLUTE } m2mhsm_expiry_kind;

/* The configured Enrolment Expiry, as the Bootstrap Instruction Configuration gives it. */
typedef struct {
    m2mhsm_expiry_kind kind;
    int64_t value; /* seconds (DURATION) or instant (ABSOLUTE) */
} m2mhsm_expiry_spec;

/* A source of "now"; tests inject one so that nothing sleeps. */
typedef m2mhsm_time (*m2mhsm_clock_fn)(void *arg);

/* time(NULL). */
m2mhsm_time m2mhsm_clock_system(void *arg);

/*
 * Parse an m2m:timestamp. The fraction, if present, is dropped (rounding down makes the
 * key expire earlier, never later). Rejects anything else, including out-of-range fields
 * and trailing characters. Pure.
 */
m2mhsm_status m2mhsm_timestamp_parse(const char *s, m2mhsm_time *out);

/* Format as "YYYYMMDDThhmmss" into buf (>= M2MHSM_TIMESTAMP_LEN). M2MHSM_NEVER gives
 * "never". Pure. */
m2mhsm_status m2mhsm_timestamp_format(m2mhsm_time t, char *buf, size_t len);

/* Parse a configured Enrolment Expiry: all digits = a duration in seconds (1 to
 * M2MHSM_MAX_DURATION), otherwise an m2m:timestamp. Pure. */
m2mhsm_status m2mhsm_expiry_spec_parse(const char *s, m2mhsm_expiry_spec *out);

/* Canonical text form of a spec ("3600" or "20261127T221000"). Pure. */
m2mhsm_status m2mhsm_expiry_spec_format(const m2mhsm_expiry_spec *spec, char *buf, size_t len);

/*
 * The absolute expiry of a Ke enrolled at `now`. An absolute spec that is not after `now`
 * is refused with M2MHSM_E_EXPIRED (the enrolment would be born dead). Pure.
 */
m2mhsm_status m2mhsm_expiry_resolve(const m2mhsm_expiry_spec *spec, m2mhsm_time now,
                                    m2mhsm_time *out);

/* Lifetime of a Km or Kpsa: min(requested, Ke's). The CR: it never outlives Ke. Pure. */
m2mhsm_time m2mhsm_expiry_clamp(m2mhsm_time requested, m2mhsm_time ke_expiry);

/* A key with expiry `expiry` is usable at `now` iff now < expiry. Pure. */
int m2mhsm_expiry_is_valid(m2mhsm_time expiry, m2mhsm_time now);

/* The PKCS#11 CK_DATE (8 ASCII digits YYYYMMDD) of the UTC day holding t. Pure. */
void m2mhsm_expiry_ck_date(m2mhsm_time t, CK_DATE *out);

#ifdef __cplusplus
}
#endif
#endif
