/* The MEF's view of a /fetchCredentials request (src/apps/mef/request.c). Input: the
 * request target as sent on the request line, '\n', the X-M2M-Origin value. The target goes
 * through evhttp's URI parser with the flags evhttp uses for requests, as in the server. */
#include "fuzz.h"

#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include "apps/mef/request.h"

#define MEF_FQDN "mef.example.com"

static void target(const char *uri)
{
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(uri, EVHTTP_URI_NONCONFORMANT);
    mef_request r;
    mef_refusal no;
    memset(&r, 0, sizeof(r));
    if (mef_request_target(u != NULL ? evhttp_uri_get_path(u) : NULL, MEF_FQDN, &r, &no) == 0) {
        const char *at = strchr(r.ke_id, '@');
        if (m2mhsm_id_check_str(M2MHSM_ID_KE, r.ke_id) != M2MHSM_OK || at == NULL ||
            strcmp(at + 1, MEF_FQDN) != 0 || r.suid == NULL ||
            r.km != (strcmp(r.suid, MEF_SUID_KM) == 0))
            fuzz_fail("an accepted target without a KeID of this MEF and a SUID");
    } else if (no.code != 400 && no.code != 404) {
        fuzz_fail("a target refused with neither 400 nor 404");
    }
    if (u != NULL) /* libevent 2.1's evhttp_uri_free does not take NULL */
        evhttp_uri_free(u);
}

static void origin(const char *value)
{
    mef_request r;
    mef_refusal no;
    char host[M2MHSM_FQDN_MAX + 1];
    memset(&r, 0, sizeof(r));
    if (mef_request_origin(value, &r, &no) == 0) {
        size_t len = mef_origin_host(r.origin, host);
        if (strcmp(r.origin, value) != 0 || len == 0 || strlen(host) != len ||
            m2mhsm_id_check_str(M2MHSM_ID_FQDN, host) != M2MHSM_OK)
            fuzz_fail("an accepted originator without an FQDN to authenticate");
    } else if (no.code != 400 || strlen(r.origin) > 80) {
        fuzz_fail("a malformed originator not refused with 400, or logged in full");
    }
    mef_origin_host(value, host); /* whatever the header holds, within bounds */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size), *nl = strchr(s, '\n');
    if (nl != NULL)
        *nl = '\0';
    target(s);
    if (nl != NULL)
        origin(nl + 1);
    mef_request r;
    mef_refusal no;
    mef_request_origin(NULL, &r, &no);
    free(s);
    return 0;
}
