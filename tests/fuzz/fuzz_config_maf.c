/* The MAF's configuration file (src/apps/maf/config.c, src/apps/common/config.c): the "maf"
 * section, or the "enrolee_b" one of the same program in its Enrolee B role (each input is
 * read in both roles), and the MEFs' URLs through evhttp's URI parser. Host names do not
 * reach DNS (no_dns.c). */
#include "fuzz.h"

#include <string.h>
#include "apps/maf/maf.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    app_json_cleansing_alloc(); /* as the MAF runs */
    return 0;
}

static void load_as(const maf_role *role, const uint8_t *data, size_t size)
{
    static maf m;
    memset(&m, 0, sizeof(m));
    m.role = role;
    if (maf_config_load(&m, fuzz_file(data, size)) == 0) {
        if (m.cfg.target_id == NULL || m.cfg.listen == NULL || m.cfg.nmefs == 0 ||
            m.cfg.nmefs > MAF_MAX_MEFS)
            fuzz_fail("an accepted MAF configuration without its required fields");
        if (m2mhsm_id_check_str(role->id_type, m.cfg.target_id) != M2MHSM_OK)
            fuzz_fail("an accepted identity that is not the role's kind of identifier");
        for (size_t i = 0; i < m.cfg.nmefs; i++)
            if (m2mhsm_id_check_str(M2MHSM_ID_FQDN, m.cfg.mefs[i].fqdn) != M2MHSM_OK ||
                m.cfg.mefs[i].port <= 0 || m.cfg.mefs[i].port > 65535 ||
                m.cfg.mefs[i].host[0] == '\0')
                fuzz_fail("an accepted MEF entry without an FQDN, a port or an address");
    }
    json_decref(m.root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_as(&maf_role_maf, data, size);
    load_as(&maf_role_enrolee_b, data, size);
    return 0;
}
