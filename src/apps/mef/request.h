/* What the MEF reads from a /fetchCredentials request (TS-0003 8.3.2.1; TS-0003 notes §7):
 * the request target and X-M2M-Origin, parsed apart from the HTTP connection, so that every
 * request a client can send is tested on its own (tests/fuzz/fuzz_mef_request.c). */
#ifndef M2M_MEF_REQUEST_H
#define M2M_MEF_REQUEST_H

#include <stddef.h>
#include <m2mhsm/ids.h>

#define MEF_SUID_KM "21"   /* symmetric key provisioned via an RSPF, shared with a MAF */
#define MEF_SUID_KPSA "22" /* project decision: the Kpsa for an Enrolee B */

typedef struct {
    char ke_id[M2MHSM_KE_ID_MAX + 1];   /* canonical */
    char origin[M2MHSM_M2M_ID_MAX + 1]; /* as sent (cut, when malformed, for the log) */
    const char *suid;                   /* MEF_SUID_KM or MEF_SUID_KPSA once parsed */
    int km;                             /* SUID 21 */
} mef_request;

/* Why a request is refused: the HTTP status and reason, and the errorString. */
typedef struct {
    int code;
    const char *reason, *why;
} mef_refusal;

/* The path of the request target: "/fetchCredentials/<KeID>/<SUID>" with a KeID of this MEF
 * (mef_fqdn). 0, or -1 with *no filled. path may be NULL (no parsable target). */
int mef_request_target(const char *path, const char *mef_fqdn, mef_request *r, mef_refusal *no);
/* The X-M2M-Origin header's value (NULL when absent): an Enrolment Target ID. 0, or -1. */
int mef_request_origin(const char *header, mef_request *r, mef_refusal *no);
/* The host the client certificate must name for origin: the MAF-ID itself, or the FQDN of
 * an absolute CSE-ID/AE-ID (//fqdn/...). Its length, or 0 when there is none. */
size_t mef_origin_host(const char *origin, char host[M2MHSM_FQDN_MAX + 1]);

#endif
