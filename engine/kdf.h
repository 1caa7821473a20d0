/* The shape shared by m2mhsm's KDFs: a default-provider context that receives every
 * parameter, plus a per-algorithm check for PSK handles among them. */
#ifndef M2MHSM_KDF_H
#define M2MHSM_KDF_H

#include "handle.h"
#include "prov.h"

typedef struct m2mhsm_kdf_ctx m2mhsm_kdf_ctx;

typedef struct {
    const char *name; /* the algorithm, as the default provider names it */
    /* Compute on the token with the key behind c->handle_bytes. */
    int (*derive_token)(m2mhsm_kdf_ctx *c, unsigned char *key, size_t keylen);
    /* Note whether params put a PSK handle where the PSK goes. 0 on malformed params. */
    int (*note_params)(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[]);
    const OSSL_PARAM *settable;
} m2mhsm_kdf_kind;

struct m2mhsm_kdf_ctx {
    m2mhsm_provctx *pc;
    const m2mhsm_kdf_kind *kind;
    EVP_KDF_CTX *dflt;
    int handle;       /* the key material set so far is a PSK handle */
    int handle_plain; /* TLS1-PRF: ... inside a plain-PSK premaster */
    uint8_t handle_bytes[M2MHSM_HANDLE_LEN];
    char digest[32];
    uint8_t *seed; /* seeds concatenate, as the default TLS1-PRF does */
    size_t seed_len;
    /* TLS13-KDF: the parameters the token path needs (libssl's sizes, bounded). */
    struct {
        int mode;
        uint8_t *key; /* any length: the (EC)DHE secret is up to 1024 bytes (ffdhe8192) */
        size_t key_len;
        int key_set;
        int oversize; /* a salt/prefix/label/data longer than libssl passes: refuse */
        uint8_t salt[64], prefix[16], label[255], data[64];
        size_t salt_len, prefix_len, label_len, data_len;
    } t13;
};

void *m2mhsm_kdf_new(void *provctx, const m2mhsm_kdf_kind *kind);
/* Track the digest and append the seeds of params (for the token path). */
int m2mhsm_kdf_note_digest_seed(m2mhsm_kdf_ctx *c, const OSSL_PARAM params[]);
/* The octet-string parameter `name`: 1 with (v, n) when present, -1 when absent, 0 when
 * malformed — including NULL data with a non-zero size, which the default provider refuses
 * too and which would otherwise be read. */
int m2mhsm_kdf_octets(const OSSL_PARAM params[], const char *name, const void **v, size_t *n);

/* The dispatch entries common to both KDFs, with the given newctx and settable list. */
#define M2MHSM_KDF_DISPATCH(newctx, settable_fn)                                                   \
    {OSSL_FUNC_KDF_NEWCTX, (void (*)(void))newctx},                                                \
        {OSSL_FUNC_KDF_DUPCTX, (void (*)(void))m2mhsm_kdf_dup},                                    \
        {OSSL_FUNC_KDF_FREECTX, (void (*)(void))m2mhsm_kdf_free},                                  \
        {OSSL_FUNC_KDF_RESET, (void (*)(void))m2mhsm_kdf_reset},                                   \
        {OSSL_FUNC_KDF_DERIVE, (void (*)(void))m2mhsm_kdf_derive},                                 \
        {OSSL_FUNC_KDF_SETTABLE_CTX_PARAMS, (void (*)(void))settable_fn},                          \
        {OSSL_FUNC_KDF_SET_CTX_PARAMS, (void (*)(void))m2mhsm_kdf_set_params},                     \
        {OSSL_FUNC_KDF_GETTABLE_CTX_PARAMS, (void (*)(void))m2mhsm_kdf_gettable},                  \
        {OSSL_FUNC_KDF_GET_CTX_PARAMS, (void (*)(void))m2mhsm_kdf_get_params},                     \
    {                                                                                              \
        0, NULL                                                                                    \
    }

void *m2mhsm_kdf_dup(void *vctx);
void m2mhsm_kdf_free(void *vctx);
void m2mhsm_kdf_reset(void *vctx);
int m2mhsm_kdf_derive(void *vctx, unsigned char *key, size_t keylen, const OSSL_PARAM params[]);
int m2mhsm_kdf_set_params(void *vctx, const OSSL_PARAM params[]);
int m2mhsm_kdf_get_params(void *vctx, OSSL_PARAM params[]);
const OSSL_PARAM *m2mhsm_kdf_gettable(void *vctx, void *provctx);

#endif
