/* Parsing a /fetchCredentials request's target and originator (request.h). */
#include "request.h"

#include <event2/http.h>
#include <stdio.h>
#include <string.h>

#define FETCH_PREFIX "/fetchCredentials/"

static int refused(mef_refusal *no, int code, const char *reason, const char *why)
{
    no->code = code;
    no->reason = reason;
    no->why = why;
    return -1;
}

int mef_request_target(const char *path, const char *mef_fqdn, mef_request *r, mef_refusal *no)
{
    if (path == NULL || strncmp(path, FETCH_PREFIX, strlen(FETCH_PREFIX)) != 0)
        return refused(no, HTTP_NOTFOUND, "Not Found", "no such resource");
    const char *id = path + strlen(FETCH_PREFIX), *slash = strchr(id, '/');
    if (slash == NULL || strchr(slash + 1, '/') != NULL)
        return refused(no, HTTP_BADREQUEST, "Bad Request",
                       "expected /fetchCredentials/<KeID>/<SUID>");
    if (strcmp(slash + 1, MEF_SUID_KM) == 0) {
        r->suid = MEF_SUID_KM;
        r->km = 1;
    } else if (strcmp(slash + 1, MEF_SUID_KPSA) == 0) {
        r->suid = MEF_SUID_KPSA;
    }
    if (m2mhsm_id_canonical(M2MHSM_ID_KE, id, (size_t)(slash - id), r->ke_id, sizeof(r->ke_id)) !=
        M2MHSM_OK)
        return refused(no, HTTP_BADREQUEST, "Bad Request", "malformed KeID");
    if (r->suid == NULL)
        return refused(no, HTTP_BADREQUEST, "Bad Request", "unknown SUID: 21 (Km) or 22 (Kpsa)");
    const char *at = strchr(r->ke_id, '@');
    if (at == NULL || strcmp(at + 1, mef_fqdn) != 0)
        return refused(no, HTTP_NOTFOUND, "Not Found", "KeID names another MEF");
    return 0;
}

int mef_request_origin(const char *header, mef_request *r, mef_refusal *no)
{
    if (header == NULL || m2mhsm_id_check_str(M2MHSM_ID_TARGET, header) != M2MHSM_OK ||
        strlen(header) >= sizeof(r->origin)) {
        if (header != NULL)
            snprintf(r->origin, sizeof(r->origin), "%.80s", header);
        return refused(no, HTTP_BADREQUEST, "Bad Request", "X-M2M-Origin missing or malformed");
    }
    strcpy(r->origin, header);
    return 0;
}

size_t mef_origin_host(const char *origin, char host[M2MHSM_FQDN_MAX + 1])
{
    const char *h = origin;
    size_t len = strlen(origin);
    if (strncmp(origin, "//", 2) == 0) {
        h = origin + 2;
        const char *slash = strchr(h, '/');
        len = slash != NULL ? (size_t)(slash - h) : strlen(h);
    }
    if (len == 0 || len > M2MHSM_FQDN_MAX)
        return 0;
    memcpy(host, h, len);
    host[len] = '\0';
    return len;
}
