/* Typed status codes and error detail for every public m2mhsm function. */
#ifndef M2MHSM_ERRORS_H
#define M2MHSM_ERRORS_H

#include <p11-kit/pkcs11.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    M2MHSM_OK = 0,
    M2MHSM_E_INVALID_ARG, /* bad input; nothing was changed */
    M2MHSM_E_NOT_FOUND,   /* no such identity / object */
    M2MHSM_E_EXISTS,      /* an object with that identity already exists */
    M2MHSM_E_EXPIRED,     /* the key's Enrolment Expiry has passed */
    M2MHSM_E_MODULE,      /* the PKCS#11 module could not be loaded or initialised */
    M2MHSM_E_TOKEN,       /* no (or more than one) token matches the URI */
    M2MHSM_E_PIN,         /* pin-source unreadable, or the token refused the PIN */
    M2MHSM_E_PKCS11,      /* a PKCS#11 call failed; detail names the call and CKR */
    M2MHSM_E_UNSUPPORTED, /* the token lacks a required mechanism */
    M2MHSM_E_CORRUPT,     /* metadata on the token is malformed */
    M2MHSM_E_IO,          /* a file could not be read */
    M2MHSM_E_CRYPTO,      /* an OpenSSL primitive failed */
    M2MHSM_E_NOMEM,
    M2MHSM_E_BUSY /* every session the token allows is in use: timed out waiting for one */
} m2mhsm_status;

/* Short, constant name of a status ("M2MHSM_E_PKCS11"). Thread-safe. */
const char *m2mhsm_status_name(m2mhsm_status st);

/*
 * One-line description of the last failure on the calling thread, e.g.
 * "C_Sign(CKM_SHA256_HMAC): CKR_KEY_HANDLE_INVALID". Valid until the thread's next
 * m2mhsm call. Never contains key bytes or PINs. Thread-safe (per-thread storage).
 */
const char *m2mhsm_last_error(void);

/* "CKR_PIN_INCORRECT" for CKR_PIN_INCORRECT; "CKR_0x..." style for unknown codes is
 * written into a per-thread buffer. Thread-safe. */
const char *m2mhsm_ckr_name(CK_RV rv);

/* "CKM_SHA256_HMAC" for the mechanisms m2mhsm uses, else "CKM_0x...". Thread-safe. */
const char *m2mhsm_ckm_name(CK_MECHANISM_TYPE mech);

#ifdef __cplusplus
}
#endif
#endif
