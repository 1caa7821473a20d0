/* Open a program's token, key store and TLS context from its "pkcs11" section. */
#include "app.h"

#include <stdio.h>
#include <string.h>

/* event=token_lost when a call finds the token gone (detail "operation: CKR_NAME"), and
 * event=token_back when a re-attach succeeds: the two ends of an outage in the log.
 * event=lock-file-not-shared when another writer of the token does not share lock_file.
 * Each line names the token (its URI: PINs never come in URIs) and the configuration
 * section that opened it, so an outage of the TLS key's token is told from the store's. */
static void on_token_event(void *arg, m2mhsm_token_event ev, const char *detail, long long down_ms)
{
    const app_token_name *name = arg;
    if (ev == M2MHSM_TOKEN_LOST) {
        const char *sep = strrchr(detail, ':');
        char op[128];
        size_t n = sep != NULL ? (size_t)(sep - detail) : 0;
        snprintf(op, sizeof(op), "%.*s", (int)n, detail);
        app_log(APP_ERROR, "token_lost", "token=%s section=%s op=%s ckr=%s", name->uri,
                name->section, op, sep != NULL ? sep + 2 : detail);
    } else if (ev == M2MHSM_TOKEN_LOCK_NOT_SHARED) {
        /* Not fatal (lookups confirm on the token from now on), but a deployment whose
         * processes were meant to share the lock file is misconfigured: say what to do. */
        app_log(APP_WARN, "lock-file-not-shared",
                "token=%s section=%s detail=\"%s\" action=\"every process on one machine must "
                "use the same lock_file; across hosts this is expected and costs one token call "
                "per lookup (deployment-hsm.md)\"",
                name->uri, name->section, detail);
    } else {
        app_log(APP_INFO, "token_back", "token=%s section=%s ckr=%s down_ms=%lld", name->uri,
                name->section, detail, down_ms);
    }
}

void app_token_observe(m2mhsm_token *tok, app_token_name *name, const char *section,
                       const char *uri)
{
    name->section = section;
    snprintf(name->uri, sizeof(name->uri), "%s", uri);
    m2mhsm_token_observe(tok, on_token_event, name);
}

/* The store's token, for the failover lines (one store per program). */
static app_token_name store_token;

const char *const app_pkcs11_fields[] = {
    "module",    "module_init_args", "token",           "pin_source",
    "lock_file", "max_sessions",     "session_wait_ms", "accept_extractable_keys",
    NULL};
/* The TLS key's own token (app_certkey_ctx): no pool bounds, it signs a handshake at a time. */
const char *const app_tls_key_fields[] = {"module",     "module_init_args", "token",
                                          "pin_source", "lock_file",        NULL};

/* The session pool's bounds (m2mhsm_token_config): absent, the module's limit and 5 s. */
static int pool_fields(const json_t *pkcs11, m2mhsm_token_config *cfg)
{
    long long max = 0, wait = 0;
    if (app_cfg_int(pkcs11, "pkcs11", "max_sessions", 0, 65536, &max) != 0 ||
        app_cfg_int(pkcs11, "pkcs11", "session_wait_ms", 0, 600000, &wait) != 0)
        return -1;
    if (max == 1) {
        fputs("config: pkcs11.max_sessions: must be 0 (the module's limit) or at least 2: an "
              "unwrap or an erase holds two sessions at once\n",
              stderr);
        return -1;
    }
    cfg->max_sessions = (unsigned)max;
    cfg->session_wait_ms = (unsigned)wait;
    return 0;
}

/* The token self-test (m2mhsm_token_selftest) at every start: a token that lets keys out
 * breaks the promise the store makes for every key on it, so the program refuses it unless
 * the configuration says, in so many words, that it accepts that; then it says so at every
 * start. */
static int token_checked(m2mhsm_token *tok, int accept_extractable)
{
    m2mhsm_selftest_report r;
    m2mhsm_status st = m2mhsm_token_selftest(tok, &r);
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "token-selftest-failed", "error=%s", app_error(st));
        return -1;
    }
    char leaks[256] = "";
    size_t n = 0;
    for (int i = 0; i < M2MHSM_PROBE_COUNT; i++) {
        m2mhsm_probe_outcome o = r.probe[i].outcome;
        if ((o == M2MHSM_OUTCOME_LEAKED || o == M2MHSM_OUTCOME_WEAKENED) && n < sizeof(leaks))
            n += (size_t)snprintf(leaks + n, sizeof(leaks) - n, "%s%s", n > 0 ? "," : "",
                                  m2mhsm_probe_name((m2mhsm_probe)i));
    }
    if (r.non_extractable_enforced) {
        app_log(APP_INFO, "token-selftest", "non_extractable_enforced=true derive_in_token=%s",
                r.derive_in_token ? "true" : "false");
        return 0;
    }
    if (!accept_extractable) {
        app_log(APP_ERROR, "token-lets-keys-out",
                "non_extractable_enforced=false leaks=%s: refusing this token; set "
                "pkcs11.accept_extractable_keys to true to run on it anyway (docs/tokens.md)",
                leaks);
        return -1;
    }
    app_log(APP_WARN, "token-lets-keys-out-accepted",
            "non_extractable_enforced=false leaks=%s accept_extractable_keys=true: keys on this "
            "token can be taken out by whoever holds its PIN",
            leaks);
    return 0;
}

int app_store_open(const json_t *pkcs11, unsigned psk_forms, app_store *out)
{
    memset(out, 0, sizeof(*out));
    m2mhsm_token_config cfg = {0};
    int accept_extractable = 0;
    if (!json_is_object(pkcs11)) {
        fputs("config: \"pkcs11\" section missing\n", stderr);
        return -1;
    }
    if (app_cfg_str(pkcs11, "pkcs11", "module", 0, &cfg.module_path) != 0 ||
        app_cfg_str(pkcs11, "pkcs11", "module_init_args", 0, &cfg.init_args) != 0 ||
        app_cfg_str(pkcs11, "pkcs11", "token", 1, &cfg.token_uri) != 0 ||
        app_cfg_str(pkcs11, "pkcs11", "pin_source", 1, &cfg.pin_source) != 0 ||
        app_cfg_str(pkcs11, "pkcs11", "lock_file", 0, &cfg.lock_file) != 0 ||
        pool_fields(pkcs11, &cfg) != 0 ||
        app_cfg_bool(pkcs11, "pkcs11", "accept_extractable_keys", &accept_extractable) != 0)
        return -1;
    m2mhsm_status st = m2mhsm_token_open(&cfg, &out->tok);
    if (st == M2MHSM_OK && token_checked(out->tok, accept_extractable) != 0) {
        app_store_close(out);
        return -1;
    }
    if (st == M2MHSM_OK) {
        app_token_observe(out->tok, &store_token, "pkcs11", cfg.token_uri);
        m2mhsm_open_report rep;
        m2mhsm_keystore_options opts = {.psk_forms = psk_forms};
        st = m2mhsm_keystore_open(out->tok, &opts, &out->ks, &rep);
        if (st == M2MHSM_OK && rep.orphan_keys + rep.incomplete + rep.superseded > 0)
            app_log(APP_WARN, "store-repaired", "orphan_keys=%zu torn_records=%zu superseded=%zu",
                    rep.orphan_keys, rep.incomplete, rep.superseded);
        if (st == M2MHSM_OK && rep.corrupt > 0)
            app_log(APP_WARN, "store-corrupt", "unreadable_metadata=%zu", rep.corrupt);
    }
    if (st == M2MHSM_OK)
        st = m2mhsm_tls_new(out->ks, &out->tls);
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "token-open-failed", "error=%s", app_error(st));
        app_store_close(out);
        return -1;
    }
    return 0;
}

void app_store_close(app_store *s)
{
    m2mhsm_tls_free(s->tls);
    m2mhsm_keystore_close(s->ks);
    m2mhsm_token_close(s->tok);
    memset(s, 0, sizeof(*s));
}
