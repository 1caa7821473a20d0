/* The MEF's configuration file (src/apps/mef/config.c, src/apps/common/config.c): the file
 * as jansson reads it, the "mef" section, and every "enrolees" entry, short of the token. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>
#include "apps/mef/mef.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    app_json_cleansing_alloc(); /* as the MEF runs */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mef m;
    memset(&m, 0, sizeof(m));
    if (mef_config_load(&m, fuzz_file(data, size)) == 0) {
        if (m.cfg.fqdn == NULL || m2mhsm_id_check_str(M2MHSM_ID_FQDN, m.cfg.fqdn) != M2MHSM_OK ||
            (m.cfg.https != NULL && m.cfg.ck.ca == NULL))
            fuzz_fail("an accepted MEF configuration without its required fields");
        mef_enrolee *list = NULL;
        size_t n = 0;
        if (mef_config_enrolees(&m, &list, &n) == 0)
            for (size_t i = 0; i < n; i++)
                if (list[i].kpm_id == NULL || list[i].target == NULL ||
                    list[i].enrolee_id == NULL || list[i].spec.kind == 0)
                    fuzz_fail("an accepted enrolee entry without its fields");
        free(list);
    }
    json_decref(m.root);
    return 0;
}
