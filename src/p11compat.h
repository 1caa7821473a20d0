/*
 * PKCS#11 3.0 definitions that p11-kit's 2.40 header lacks. Values and layouts are the
 * OASIS PKCS#11 3.0 specification's; guarded so a newer header wins.
 */
#ifndef M2MHSM_P11COMPAT_H
#define M2MHSM_P11COMPAT_H

#include <p11-kit/pkcs11.h>

#ifndef CKM_AES_KEY_WRAP_PAD
#define CKM_AES_KEY_WRAP_PAD 0x210aUL
#endif
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210bUL
#endif
#ifndef CKM_SP800_108_FEEDBACK_KDF
#define CKM_SP800_108_FEEDBACK_KDF 0x3adUL
#define CK_SP800_108_BYTE_ARRAY 0x4UL

typedef CK_ULONG CK_PRF_DATA_TYPE;
typedef struct CK_PRF_DATA_PARAM {
    CK_PRF_DATA_TYPE type;
    void *pValue;
    CK_ULONG ulValueLen;
} CK_PRF_DATA_PARAM;

typedef struct CK_DERIVED_KEY {
    CK_ATTRIBUTE *pTemplate;
    CK_ULONG ulAttributeCount;
    CK_OBJECT_HANDLE *phKey;
} CK_DERIVED_KEY;

typedef struct CK_SP800_108_FEEDBACK_KDF_PARAMS {
    CK_MECHANISM_TYPE prfType; /* CK_SP800_108_PRF_TYPE */
    CK_ULONG ulNumberOfDataParams;
    CK_PRF_DATA_PARAM *pDataParams;
    CK_ULONG ulIVLen;
    CK_BYTE *pIV;
    CK_ULONG ulAdditionalDerivedKeys;
    CK_DERIVED_KEY *pAdditionalDerivedKeys;
} CK_SP800_108_FEEDBACK_KDF_PARAMS;
#endif
#ifndef CKM_HKDF_DERIVE
#define CKM_HKDF_DERIVE 0x402aUL
#endif
#ifndef CKF_HKDF_SALT_NULL
#define CKF_HKDF_SALT_NULL 0x1UL
#define CKF_HKDF_SALT_DATA 0x2UL
#define CKF_HKDF_SALT_KEY 0x4UL

typedef struct CK_HKDF_PARAMS {
    CK_BBOOL bExtract;
    CK_BBOOL bExpand;
    CK_MECHANISM_TYPE prfHashMechanism;
    CK_ULONG ulSaltType;
    CK_BYTE *pSalt;
    CK_ULONG ulSaltLen;
    CK_OBJECT_HANDLE hSaltKey;
    CK_BYTE *pInfo;
    CK_ULONG ulInfoLen;
} CK_HKDF_PARAMS;
#endif

#endif
