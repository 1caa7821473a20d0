/* Status names, CKR/CKM names and the per-thread error detail. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];
static _Thread_local char code_buf[32];
static _Thread_local CK_RV last_ckr; /* of the last m2mhsm_fail_ckr; CKR_OK after m2mhsm_fail */
/* A CKR that says the token itself is gone, until the token layer takes it
 * (m2mhsm_take_lost). */
static _Thread_local CK_RV pending_lost;
static _Thread_local char pending_op[64];

struct code_name {
    unsigned long code;
    const char *name;
};

#define CKR(x)                                                                                     \
    {                                                                                              \
        x, #x                                                                                      \
    }
static const struct code_name ckr_names[] = {
    CKR(CKR_OK),
    CKR(CKR_CANCEL),
    CKR(CKR_HOST_MEMORY),
    CKR(CKR_SLOT_ID_INVALID),
    CKR(CKR_GENERAL_ERROR),
    CKR(CKR_FUNCTION_FAILED),
    CKR(CKR_ARGUMENTS_BAD),
    CKR(CKR_NO_EVENT),
    CKR(CKR_NEED_TO_CREATE_THREADS),
    CKR(CKR_CANT_LOCK),
    CKR(CKR_ATTRIBUTE_READ_ONLY),
    CKR(CKR_ATTRIBUTE_SENSITIVE),
    CKR(CKR_ATTRIBUTE_TYPE_INVALID),
    CKR(CKR_ATTRIBUTE_VALUE_INVALID),
    CKR(CKR_ACTION_PROHIBITED),
    CKR(CKR_DATA_INVALID),
    CKR(CKR_DATA_LEN_RANGE),
    CKR(CKR_DEVICE_ERROR),
    CKR(CKR_DEVICE_MEMORY),
    CKR(CKR_DEVICE_REMOVED),
    CKR(CKR_ENCRYPTED_DATA_INVALID),
    CKR(CKR_ENCRYPTED_DATA_LEN_RANGE),
    CKR(CKR_FUNCTION_CANCELED),
    CKR(CKR_FUNCTION_NOT_PARALLEL),
    CKR(CKR_FUNCTION_NOT_SUPPORTED),
    CKR(CKR_KEY_HANDLE_INVALID),
    CKR(CKR_KEY_SIZE_RANGE),
    CKR(CKR_KEY_TYPE_INCONSISTENT),
    CKR(CKR_KEY_NOT_NEEDED),
    CKR(CKR_KEY_CHANGED),
    CKR(CKR_KEY_NEEDED),
    CKR(CKR_KEY_INDIGESTIBLE),
    CKR(CKR_KEY_FUNCTION_NOT_PERMITTED),
    CKR(CKR_KEY_NOT_WRAPPABLE),
    CKR(CKR_KEY_UNEXTRACTABLE),
    CKR(CKR_MECHANISM_INVALID),
    CKR(CKR_MECHANISM_PARAM_INVALID),
    CKR(CKR_OBJECT_HANDLE_INVALID),
    CKR(CKR_OPERATION_ACTIVE),
    CKR(CKR_OPERATION_NOT_INITIALIZED),
    CKR(CKR_PIN_INCORRECT),
    CKR(CKR_PIN_INVALID),
    CKR(CKR_PIN_LEN_RANGE),
    CKR(CKR_PIN_EXPIRED),
    CKR(CKR_PIN_LOCKED),
    CKR(CKR_SESSION_CLOSED),
    CKR(CKR_SESSION_COUNT),
    CKR(CKR_SESSION_HANDLE_INVALID),
    CKR(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    CKR(CKR_SESSION_READ_ONLY),
    CKR(CKR_SESSION_EXISTS),
    CKR(CKR_SESSION_READ_ONLY_EXISTS),
    CKR(CKR_SESSION_READ_WRITE_SO_EXISTS),
    CKR(CKR_SIGNATURE_INVALID),
    CKR(CKR_SIGNATURE_LEN_RANGE),
    CKR(CKR_TEMPLATE_INCOMPLETE),
    CKR(CKR_TEMPLATE_INCONSISTENT),
    CKR(CKR_TOKEN_NOT_PRESENT),
    CKR(CKR_TOKEN_NOT_RECOGNIZED),
    CKR(CKR_TOKEN_WRITE_PROTECTED),
    CKR(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    CKR(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    CKR(CKR_USER_ALREADY_LOGGED_IN),
    CKR(CKR_USER_NOT_LOGGED_IN),
    CKR(CKR_USER_PIN_NOT_INITIALIZED),
    CKR(CKR_USER_TYPE_INVALID),
    CKR(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    CKR(CKR_USER_TOO_MANY_TYPES),
    CKR(CKR_WRAPPED_KEY_INVALID),
    CKR(CKR_WRAPPED_KEY_LEN_RANGE),
    CKR(CKR_WRAPPING_KEY_HANDLE_INVALID),
    CKR(CKR_WRAPPING_KEY_SIZE_RANGE),
    CKR(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    CKR(CKR_RANDOM_SEED_NOT_SUPPORTED),
    CKR(CKR_RANDOM_NO_RNG),
    CKR(CKR_DOMAIN_PARAMS_INVALID),
    CKR(CKR_CURVE_NOT_SUPPORTED),
    CKR(CKR_BUFFER_TOO_SMALL),
    CKR(CKR_SAVED_STATE_INVALID),
    CKR(CKR_INFORMATION_SENSITIVE),
    CKR(CKR_STATE_UNSAVEABLE),
    CKR(CKR_CRYPTOKI_NOT_INITIALIZED),
    CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    CKR(CKR_MUTEX_BAD),
    CKR(CKR_MUTEX_NOT_LOCKED),
    CKR(CKR_NEW_PIN_MODE),
    CKR(CKR_NEXT_OTP),
    CKR(CKR_EXCEEDED_MAX_ITERATIONS),
    CKR(CKR_FIPS_SELF_TEST_FAILED),
    CKR(CKR_LIBRARY_LOAD_FAILED),
    CKR(CKR_PIN_TOO_WEAK),
    CKR(CKR_PUBLIC_KEY_INVALID),
    CKR(CKR_FUNCTION_REJECTED),
    CKR(CKR_VENDOR_DEFINED),
};
#undef CKR

#define CKM(x)                                                                                     \
    {                                                                                              \
        x, #x                                                                                      \
    }
static const struct code_name ckm_names[] = {
    CKM(CKM_SHA256_HMAC),
    CKM(CKM_SHA256),
    CKM(CKM_AES_KEY_WRAP),
    CKM(CKM_AES_KEY_WRAP_PAD),
    CKM(CKM_AES_KEY_WRAP_KWP),
    CKM(CKM_HKDF_DERIVE),
    CKM(CKM_SP800_108_FEEDBACK_KDF),
    CKM(CKM_GENERIC_SECRET_KEY_GEN),
    CKM(CKM_AES_ECB),
    CKM(CKM_AES_CBC_PAD),
    CKM(CKM_AES_KEY_GEN),
};
#undef CKM

static const char *lookup(const struct code_name *t, size_t n, unsigned long code,
                          const char *prefix)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].code == code)
            return t[i].name;
    snprintf(code_buf, sizeof(code_buf), "%s0x%lx", prefix, code);
    return code_buf;
}

const char *m2mhsm_ckr_name(CK_RV rv)
{
    return lookup(ckr_names, sizeof(ckr_names) / sizeof(ckr_names[0]), rv, "CKR_");
}

const char *m2mhsm_ckm_name(CK_MECHANISM_TYPE mech)
{
    return lookup(ckm_names, sizeof(ckm_names) / sizeof(ckm_names[0]), mech, "CKM_");
}

const char *m2mhsm_status_name(m2mhsm_status st)
{
    static const char *const names[] = {
        [M2MHSM_OK] = "M2MHSM_OK",
        [M2MHSM_E_INVALID_ARG] = "M2MHSM_E_INVALID_ARG",
        [M2MHSM_E_NOT_FOUND] = "M2MHSM_E_NOT_FOUND",
        [M2MHSM_E_EXISTS] = "M2MHSM_E_EXISTS",
        [M2MHSM_E_EXPIRED] = "M2MHSM_E_EXPIRED",
        [M2MHSM_E_MODULE] = "M2MHSM_E_MODULE",
        [M2MHSM_E_TOKEN] = "M2MHSM_E_TOKEN",
        [M2MHSM_E_PIN] = "M2MHSM_E_PIN",
        [M2MHSM_E_PKCS11] = "M2MHSM_E_PKCS11",
        [M2MHSM_E_UNSUPPORTED] = "M2MHSM_E_UNSUPPORTED",
        [M2MHSM_E_CORRUPT] = "M2MHSM_E_CORRUPT",
        [M2MHSM_E_IO] = "M2MHSM_E_IO",
        [M2MHSM_E_CRYPTO] = "M2MHSM_E_CRYPTO",
        [M2MHSM_E_NOMEM] = "M2MHSM_E_NOMEM",
        [M2MHSM_E_BUSY] = "M2MHSM_E_BUSY",
    };
    if ((unsigned)st < sizeof(names) / sizeof(names[0]) && names[st] != NULL)
        return names[st];
    return "M2MHSM_E_UNKNOWN";
}

const char *m2mhsm_last_error(void)
{
    return last_error[0] != '\0' ? last_error : "no error";
}

m2mhsm_status m2mhsm_fail(m2mhsm_status st, const char *fmt, ...)
{
    /* Format aside first: callers may pass m2mhsm_last_error() as an argument. */
    char buf[sizeof(last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    memcpy(last_error, buf, sizeof(buf));
    last_ckr = CKR_OK;
    return st;
}

CK_RV m2mhsm_last_ckr(void)
{
    return last_ckr;
}

m2mhsm_status m2mhsm_fail_ckr(const char *op, CK_RV rv)
{
    m2mhsm_status st = M2MHSM_E_PKCS11;
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_LEN_RANGE ||
        rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID)
        st = M2MHSM_E_PIN;
    else if (rv == CKR_HOST_MEMORY || rv == CKR_DEVICE_MEMORY)
        st = M2MHSM_E_NOMEM;
    else if (rv == CKR_MECHANISM_INVALID)
        st = M2MHSM_E_UNSUPPORTED;
    if (m2mhsm_ckr_lost(rv)) {
        pending_lost = rv;
        snprintf(pending_op, sizeof(pending_op), "%s", op);
    }
    m2mhsm_fail(st, "%s: %s", op, m2mhsm_ckr_name(rv));
    last_ckr = rv;
    return st;
}

int m2mhsm_ckr_lost(CK_RV rv)
{
    /* What a module answers when the device, its connection (p11-kit's RPC gives
     * CKR_DEVICE_ERROR once its server is gone) or its login state went away under us. */
    return rv == CKR_DEVICE_REMOVED || rv == CKR_DEVICE_ERROR || rv == CKR_SESSION_HANDLE_INVALID ||
           rv == CKR_SESSION_CLOSED || rv == CKR_TOKEN_NOT_PRESENT ||
           rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

CK_RV m2mhsm_take_lost(char *op, size_t cap)
{
    CK_RV rv = pending_lost;
    if (rv != CKR_OK && op != NULL)
        snprintf(op, cap, "%s", pending_op);
    pending_lost = CKR_OK;
    return rv;
}

void m2mhsm_clear_error(void)
{
    last_error[0] = '\0';
}
