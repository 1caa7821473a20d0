/*
 * The loadable provider configured from openssl.cnf, with the key names pkcs11-provider
 * users know:
 *
 *   [m2mhsm_sect]
 *   module = /usr/lib/x86_64-linux-gnu/ossl-modules/m2mhsm.so
 *   pkcs11-module-path = /usr/lib/softhsm/libsofthsm2.so
 *   pkcs11-module-token-pin = file:/etc/m2mhsm/mef.pin      (a pin-source, never a PIN)
 *   m2mhsm-token-uri = pkcs11:token=mef
 *   m2mhsm-lock-file = /var/lib/m2mhsm/mef.lock            (optional)
 *   activate = 1
 *
 * An application then asks the provider for a PSK handle in its PSK callback, with no
 * link to libm2mhsm: OSSL_PROVIDER_get_params(prov, {"m2mhsm-psk-handle:kpm:<KpmID>" as an
 * octet string of 28 bytes}) and hands libssl the handle as the PSK, in a library context
 * whose TLS KDFs come from this provider ("?provider=m2mhsm").
 */
#include "handle.h"
#include "prov.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#define HANDLE_PARAM_PREFIX "m2mhsm-psk-handle:"

/*
 * OpenSSL tears providers down from its own atexit handler, which runs after the PKCS#11
 * module's C++ destructors (registered when the module was loaded, later than OpenSSL's
 * handler). A handler registered after the module loads runs before both and marks the
 * exit, so teardown then leaves the module alone: the process is ending anyway.
 */
static volatile int exiting;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void mark_exiting(void)
{
    exiting = 1;
}

static void register_exit(void)
{
    atexit(mark_exiting);
}

static const char *core_param(const OSSL_CORE_HANDLE *core, OSSL_FUNC_core_get_params_fn *get,
                              const char *name)
{
    const char *value = NULL;
    OSSL_PARAM p[] = {OSSL_PARAM_utf8_ptr(name, (char **)&value, 0), OSSL_PARAM_END};
    if (get == NULL || !get(core, p) || !OSSL_PARAM_modified(p))
        return NULL;
    return value;
}

int m2mhsm_prov_config_open(m2mhsm_provctx *pc, const OSSL_DISPATCH *in)
{
    OSSL_FUNC_core_get_params_fn *get = NULL;
    for (; in != NULL && in->function_id != 0; in++)
        if (in->function_id == OSSL_FUNC_CORE_GET_PARAMS)
            get = OSSL_FUNC_core_get_params(in);
    const char *uri = core_param(pc->core, get, "m2mhsm-token-uri");
    if (uri == NULL)
        return 1; /* nothing configured: handles come from m2mhsm_tls */
    m2mhsm_token_config cfg = {
        .module_path = core_param(pc->core, get, "pkcs11-module-path"),
        .token_uri = uri,
        .pin_source = core_param(pc->core, get, "pkcs11-module-token-pin"),
        .lock_file = core_param(pc->core, get, "m2mhsm-lock-file"),
    };
    /* Any OpenSSL application may load the provider: it only reads keys, so it never
     * repairs (or otherwise changes) a store that servers share. */
    m2mhsm_keystore_options opts = {.read_only = 1};
    if (m2mhsm_token_open(&cfg, &pc->own_tok) != M2MHSM_OK ||
        m2mhsm_keystore_open(pc->own_tok, &opts, &pc->own_ks, NULL) != M2MHSM_OK ||
        m2mhsm_handles_new(pc->own_ks, &pc->handles) != M2MHSM_OK) {
        M2MHSM_PROV_RAISE(pc, M2MHSM_R_TOKEN_OPEN_FAILED, "m2mhsm: %s: %s", uri,
                          m2mhsm_last_error());
        m2mhsm_prov_config_close(pc);
        return 0; /* a configured token that cannot be opened fails the provider's load */
    }
    pthread_once(&exit_once, register_exit);
    return 1;
}

void m2mhsm_prov_config_close(m2mhsm_provctx *pc)
{
    if ((pc->own_ks == NULL && pc->own_tok == NULL) || exiting)
        return;
    m2mhsm_handles_free(pc->handles);
    pc->handles = NULL;
    m2mhsm_keystore_close(pc->own_ks);
    m2mhsm_token_close(pc->own_tok);
    pc->own_ks = NULL;
    pc->own_tok = NULL;
}

static int kind_of(const char *name, size_t len, m2mhsm_kind *kind)
{
    if (len == 3 && memcmp(name, "kpm", 3) == 0)
        *kind = M2MHSM_KIND_KPM;
    else if (len == 2 && memcmp(name, "km", 2) == 0)
        *kind = M2MHSM_KIND_KM;
    else if (len == 4 && memcmp(name, "kpsa", 4) == 0)
        *kind = M2MHSM_KIND_KPSA;
    else
        return 0;
    return 1;
}

/* "m2mhsm-psk-handle:<kind>:<identity>": a handle for a valid key, or the request fails. */
static int answer_handle(m2mhsm_provctx *pc, OSSL_PARAM *p)
{
    const char *spec = p->key + strlen(HANDLE_PARAM_PREFIX);
    const char *colon = strchr(spec, ':');
    m2mhsm_kind kind;
    m2mhsm_record rec;
    uint8_t handle[M2MHSM_HANDLE_LEN];
    if (pc->own_ks == NULL || colon == NULL || !kind_of(spec, (size_t)(colon - spec), &kind) ||
        m2mhsm_keystore_lookup(pc->own_ks, kind, colon + 1, strlen(colon + 1), &rec) != M2MHSM_OK ||
        !m2mhsm_record_valid(pc->own_ks, &rec) ||
        m2mhsm_handles_issue(pc->handles, &rec, handle) != M2MHSM_OK)
        return 0;
    return OSSL_PARAM_set_octet_string(p, handle, sizeof(handle));
}

int m2mhsm_prov_config_get_params(m2mhsm_provctx *pc, OSSL_PARAM params[])
{
    for (OSSL_PARAM *p = params; p != NULL && p->key != NULL; p++)
        if (strncmp(p->key, HANDLE_PARAM_PREFIX, strlen(HANDLE_PARAM_PREFIX)) == 0 &&
            !answer_handle(pc, p))
            return 0;
    return 1;
}
