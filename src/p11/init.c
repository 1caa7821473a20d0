/* Token initialisation for labs and tests: no PIN ever on a command line. */
#include "p11.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>
#include <p11-kit/p11-kit.h>

/* The first slot whose token is not initialised, unless an initialised token already
 * carries the label: a second one would make every "pkcs11:token=LABEL" ambiguous (its users,
 * the servers included, then refuse to start). padded is the label as CKA_LABEL holds it. */
static m2mhsm_status free_slot(CK_FUNCTION_LIST *fn, const CK_UTF8CHAR padded[32],
                               const char *label, CK_SLOT_ID *out)
{
    CK_ULONG n = 0;
    CK_RV rv = fn->C_GetSlotList(CK_TRUE, NULL, &n);
    CK_SLOT_ID *slots = rv == CKR_OK && n > 0 ? calloc(n, sizeof(*slots)) : NULL;
    if (rv == CKR_OK && slots != NULL)
        rv = fn->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        free(slots);
        return m2mhsm_fail_ckr("C_GetSlotList", rv);
    }
    int found = 0;
    m2mhsm_status st = M2MHSM_OK;
    for (CK_ULONG i = 0; slots != NULL && i < n && st == M2MHSM_OK; i++) {
        CK_TOKEN_INFO ti;
        if ((rv = fn->C_GetTokenInfo(slots[i], &ti)) != CKR_OK)
            st = m2mhsm_fail_ckr("C_GetTokenInfo", rv);
        else if ((ti.flags & CKF_TOKEN_INITIALIZED) && memcmp(ti.label, padded, 32) == 0)
            st = m2mhsm_fail(M2MHSM_E_TOKEN,
                             "a token labelled \"%s\" exists already (slot %lu): a second one "
                             "would make pkcs11:token=%s match 2 tokens; choose another label",
                             label, (unsigned long)slots[i], label);
        else if (!(ti.flags & CKF_TOKEN_INITIALIZED) && !found) {
            *out = slots[i];
            found = 1;
        }
    }
    free(slots);
    if (st == M2MHSM_OK && !found)
        st = m2mhsm_fail(M2MHSM_E_TOKEN, "no slot with an uninitialised token");
    return st;
}

static m2mhsm_status init_pin(CK_FUNCTION_LIST *fn, CK_SLOT_ID slot, const char *so_pin,
                              size_t so_len, const char *pin, size_t pin_len)
{
    CK_SESSION_HANDLE s;
    CK_RV rv = fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_OpenSession", rv);
    m2mhsm_status st = M2MHSM_OK;
    if ((rv = fn->C_Login(s, CKU_SO, (CK_UTF8CHAR *)so_pin, so_len)) != CKR_OK)
        st = m2mhsm_fail_ckr("C_Login(CKU_SO)", rv);
    else if ((rv = fn->C_InitPIN(s, (CK_UTF8CHAR *)pin, pin_len)) != CKR_OK)
        st = m2mhsm_fail_ckr("C_InitPIN", rv);
    fn->C_CloseSession(s);
    return st;
}

static m2mhsm_status init_token(CK_FUNCTION_LIST *fn, const char *label, const char *so_pin,
                                size_t so_len, const char *pin, size_t pin_len)
{
    CK_SLOT_ID slot = 0;
    CK_UTF8CHAR padded[32];
    memset(padded, ' ', sizeof(padded));
    memcpy(padded, label, strlen(label));
    m2mhsm_status st = free_slot(fn, padded, label, &slot);
    if (st != M2MHSM_OK)
        return st;
    CK_RV rv = fn->C_InitToken(slot, (CK_UTF8CHAR *)so_pin, so_len, padded);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_InitToken", rv);
    return init_pin(fn, slot, so_pin, so_len, pin, pin_len);
}

m2mhsm_status m2mhsm_token_init(const char *module_path, const char *label,
                                const char *so_pin_source, const char *pin_source)
{
    if (module_path == NULL)
        module_path = getenv("M2MHSM_MODULE");
    if (module_path == NULL || module_path[0] == '\0')
        module_path = M2MHSM_DEFAULT_MODULE;
    if (label == NULL || label[0] == '\0' || strlen(label) > 32)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "token label must be 1 to 32 characters");
    char *so_pin = NULL, *pin = NULL;
    size_t so_len = 0, pin_len = 0;
    m2mhsm_status st = m2mhsm_pin_read(so_pin_source, label, &so_pin, &so_len);
    if (st == M2MHSM_OK)
        st = m2mhsm_pin_read(pin_source, label, &pin, &pin_len);
    CK_FUNCTION_LIST *fn = NULL;
    if (st == M2MHSM_OK)
        st = m2mhsm_module_load(module_path, &fn);
    int initialized = 0;
    if (st == M2MHSM_OK) {
        st = m2mhsm_module_initialize(fn, module_path, m2mhsm_module_init_args(NULL));
        initialized = st == M2MHSM_OK;
    }
    if (st == M2MHSM_OK)
        st = init_token(fn, label, so_pin, so_len, pin, pin_len);
    if (fn != NULL) {
        if (initialized)
            p11_kit_module_finalize(fn);
        p11_kit_module_release(fn);
    }
    m2mhsm_pin_free(so_pin, so_len);
    m2mhsm_pin_free(pin, pin_len);
    return st;
}
