/* The m2mhsm OpenSSL 3 provider: shared declarations of engine/ files. */
#ifndef M2MHSM_PROV_H
#define M2MHSM_PROV_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/e_os2.h>
#include <openssl/types.h>
#include <stdint.h>

#define M2MHSM_PROV_NAME "m2mhsm"

struct m2mhsm_handles;
struct m2mhsm_token;
struct m2mhsm_keystore;

typedef struct {
    const OSSL_CORE_HANDLE *core;
    /* A token the provider opened itself from its openssl.cnf section (config.c); NULL
     * when built into an m2mhsm_tls context, which brings its own. */
    struct m2mhsm_token *own_tok;
    struct m2mhsm_keystore *own_ks;
    /* The handles this provider instance resolves; set by m2mhsm_tls after loading it into
     * its library context (NULL: every handle is unknown). */
    struct m2mhsm_handles *handles;
    /* A child of the library context that loaded us: where the default provider's
     * algorithms, to which every input without a PSK handle is delegated, are fetched. */
    OSSL_LIB_CTX *libctx;
    /* The core's error functions (err.c). */
    OSSL_FUNC_core_new_error_fn *new_error;
    OSSL_FUNC_core_set_error_debug_fn *set_error_debug;
    OSSL_FUNC_core_vset_error_fn *vset_error;
} m2mhsm_provctx;

/* err.c: the provider's own reasons, as ERR_print_errors names them under "m2mhsm". */
enum {
    M2MHSM_R_TOKEN_FAILED = 1,   /* a token call failed; the data names the call and CKR */
    M2MHSM_R_UNKNOWN_HANDLE = 2, /* a PSK handle this provider does not know (any more) */
    M2MHSM_R_REFUSED = 3,        /* a handle where it may not be, or a suite it cannot serve */
    M2MHSM_R_TOKEN_OPEN_FAILED = 4
};
void m2mhsm_prov_errors_init(m2mhsm_provctx *pc, const OSSL_DISPATCH *in);
const OSSL_ITEM *m2mhsm_prov_reason_strings(void *provctx);
/* Put an error on the calling thread's queue through the core: ERR_raise_data for a
 * provider. */
void m2mhsm_prov_raise_at(const m2mhsm_provctx *pc, uint32_t reason, const char *file, int line,
                          const char *func, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define M2MHSM_PROV_RAISE(pc, reason, ...)                                                         \
    m2mhsm_prov_raise_at(pc, reason, OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, __VA_ARGS__)

extern const OSSL_DISPATCH m2mhsm_kdf_tls1_prf_functions[];
extern const OSSL_DISPATCH m2mhsm_kdf_tls13_functions[];

/* Fetch the default provider's implementation of a KDF into a fresh context. */
EVP_KDF_CTX *m2mhsm_prov_delegate(const m2mhsm_provctx *pc, const char *name);

/* config.c: open the token named in the provider's configuration section, if any, and
 * answer the "m2mhsm-psk-handle:<kind>:<identity>" provider parameters. */
int m2mhsm_prov_config_open(m2mhsm_provctx *pc, const OSSL_DISPATCH *in);
void m2mhsm_prov_config_close(m2mhsm_provctx *pc);
int m2mhsm_prov_config_get_params(m2mhsm_provctx *pc, OSSL_PARAM params[]);

/* The provider's entry point, for OSSL_PROVIDER_add_builtin and (as OSSL_provider_init) for
 * the loadable module. */
int m2mhsm_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                         const OSSL_DISPATCH **out, void **provctx);

#endif
