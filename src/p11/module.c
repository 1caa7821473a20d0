/* Loading a PKCS#11 module through p11-kit and calling its C_Initialize, with the module's
 * own init args when it needs them. */
#include "p11.h"
#include "../internal.h"

#include <stdlib.h>
#include <unistd.h>
#include <p11-kit/p11-kit.h>

const char *m2mhsm_module_init_args(const char *configured)
{
    if (configured != NULL)
        return configured;
    const char *env = getenv("M2MHSM_MODULE_INIT_ARGS");
    return env != NULL && env[0] != '\0' ? env : NULL;
}

m2mhsm_status m2mhsm_module_load(const char *path, CK_FUNCTION_LIST **out)
{
    *out = NULL;
    if (access(path, R_OK) != 0)
        return m2mhsm_fail(M2MHSM_E_MODULE, "PKCS#11 module %s: not found or not readable", path);
    /* Managed mode: p11-kit gives this store its own view of the module (sessions, and
     * C_Finalize only when its last user goes). */
    *out = p11_kit_module_load(path, 0);
    if (*out == NULL) {
        const char *why = p11_kit_message();
        return m2mhsm_fail(M2MHSM_E_MODULE, "p11_kit_module_load(%s): %s", path,
                           why != NULL ? why : "failed");
    }
    return M2MHSM_OK;
}

/*
 * PKCS#11 3.0 section 5.4: C_Initialize takes CK_C_INITIALIZE_ARGS whose pReserved "is
 * reserved for future use" and must be NULL, yet some modules (NSS softokn) read their
 * configuration from it and fail with CKR_ARGUMENTS_BAD without it. With no init args we
 * pass NULL, so that p11-kit supplies a module file's x-init-reserved if there is one.
 * p11-kit initialises a module once per process: the first caller's args win.
 */
m2mhsm_status m2mhsm_module_initialize(CK_FUNCTION_LIST *fn, const char *path,
                                       const char *init_args)
{
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK, .pReserved = (void *)init_args};
    CK_RV rv = fn->C_Initialize(init_args != NULL ? &args : NULL);
    if (rv == CKR_OK)
        return M2MHSM_OK;
    return m2mhsm_fail(M2MHSM_E_MODULE, "C_Initialize(%s%s): %s", path,
                       init_args != NULL ? ", with init args" : "", m2mhsm_ckr_name(rv));
}
