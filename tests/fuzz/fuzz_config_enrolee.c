/* The Enrolee's configuration file (src/apps/enrolee/config.c, src/apps/common/config.c):
 * identities, Enrolment Expiry and the tls/tls13/dtls URIs through evhttp's URI parser. */
#include "fuzz.h"

#include <string.h>
#include "apps/enrolee/enrolee.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static enrolee e;
    memset(&e, 0, sizeof(e));
    if (enrolee_config_load(&e, fuzz_file(data, size)) == 0) {
        const enrolee_config *c = &e.cfg;
        if (m2mhsm_id_check_str(M2MHSM_ID_KPM, c->kpm_id) != M2MHSM_OK ||
            m2mhsm_id_check_str(M2MHSM_ID_TARGET, c->target) != M2MHSM_OK ||
            m2mhsm_id_check_str(M2MHSM_ID_FQDN, c->mef_fqdn) != M2MHSM_OK ||
            c->enrolment_expiry.kind == 0 || strchr(c->mef_hostport, ':') == NULL ||
            strchr(c->target_hostport, ':') == NULL)
            fuzz_fail("an accepted Enrolee configuration without its required fields");
    }
    json_decref(e.root);
    return 0;
}
