/*
 * Errors to the application's OpenSSL error queue. A provider reaches the queue through the
 * core that loaded it (OSSL_FUNC_core_new_error, core_set_error_debug, core_vset_error):
 * a loadable module may not share libcrypto's state with the application. The reasons of
 * the provider's own library ("m2mhsm") carry the library's error detail, which names the
 * PKCS#11 call and its CKR ("C_SignInit/C_Sign(CKM_SHA256_HMAC): CKR_DEVICE_ERROR"), so that
 * ERR_print_errors after a failed handshake says why.
 */
#include "prov.h"

#include <stdarg.h>
#include <openssl/core_dispatch.h>
#include <openssl/err.h>

static const OSSL_ITEM reasons[] = {
    {M2MHSM_R_TOKEN_FAILED, "token operation failed"},
    {M2MHSM_R_UNKNOWN_HANDLE, "unknown, stale or expired PSK handle"},
    {M2MHSM_R_REFUSED, "input refused for a token PSK"},
    {M2MHSM_R_TOKEN_OPEN_FAILED, "configured token could not be opened"},
    {0, NULL},
};

const OSSL_ITEM *m2mhsm_prov_reason_strings(void *provctx)
{
    (void)provctx;
    return reasons;
}

void m2mhsm_prov_errors_init(m2mhsm_provctx *pc, const OSSL_DISPATCH *in)
{
    for (; in != NULL && in->function_id != 0; in++) {
        if (in->function_id == OSSL_FUNC_CORE_NEW_ERROR)
            pc->new_error = OSSL_FUNC_core_new_error(in);
        else if (in->function_id == OSSL_FUNC_CORE_SET_ERROR_DEBUG)
            pc->set_error_debug = OSSL_FUNC_core_set_error_debug(in);
        else if (in->function_id == OSSL_FUNC_CORE_VSET_ERROR)
            pc->vset_error = OSSL_FUNC_core_vset_error(in);
    }
}

void m2mhsm_prov_raise_at(const m2mhsm_provctx *pc, uint32_t reason, const char *file, int line,
                          const char *func, const char *fmt, ...)
{
    /* A core without the error functions is not OpenSSL 3's: nothing to report to. */
    if (pc == NULL || pc->new_error == NULL || pc->set_error_debug == NULL ||
        pc->vset_error == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    pc->new_error(pc->core);
    pc->set_error_debug(pc->core, file, line, func);
    pc->vset_error(pc->core, reason, fmt, ap);
    va_end(ap);
}
