/*
 * Puts a token into the states a crash leaves, with the library's own steps, for
 * tests/e2e/crash.sh. Never part of an installation.
 *   crash_tool MODULE TOKEN PIN-SOURCE LOCK-FILE reenrol-crash KPM FQDN ENROLEE TARGET SECONDS
 *       the first step of a re-enrolment (the new Ke written, the old one not yet erased),
 *       then _exit() as a kill there would; prints the new KeID
 *   crash_tool ... torn KPM     a Kpm record an hour old with one key missing
 *   crash_tool ... count        how many objects the token holds
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "keystore/ks.h"

static m2mhsm_time an_hour_ago(void *arg)
{
    (void)arg;
    return m2mhsm_clock_system(NULL) - 3600;
}

static int reenrol_crash(m2mhsm_keystore *ks, char **a)
{
    uint8_t exported[M2MHSM_EXPORT_LEN];
    m2mhsm_enrolment e = {a[0], a[1], a[2], a[3], {M2MHSM_EXPIRY_DURATION, atoll(a[4])}};
    m2mhsm_record ke;
    ks_replaced old;
    if (RAND_bytes(exported, sizeof(exported)) != 1)
        return 1;
    m2mhsm_status st = ks_ke_write(ks, &e, exported, &ke, &old);
    OPENSSL_cleanse(exported, sizeof(exported));
    if (st != M2MHSM_OK)
        return 1;
    printf("%s\n", ke.identity);
    fflush(stdout);
    _exit(0); /* killed before ks_ke_erase_replaced */
}

static int torn(m2mhsm_token *tok, const char *kpm_id)
{
    m2mhsm_keystore *ks = NULL;
    m2mhsm_keystore_options o = {.clock = an_hour_ago};
    m2mhsm_record kpm;
    uint8_t key[32];
    CK_SESSION_HANDLE s;
    if (RAND_bytes(key, sizeof(key)) != 1 || m2mhsm_keystore_open(tok, &o, &ks, NULL) != M2MHSM_OK)
        return 1;
    m2mhsm_status st = m2mhsm_keystore_import_kpm(ks, kpm_id, key, sizeof(key), M2MHSM_NEVER, &kpm);
    OPENSSL_cleanse(key, sizeof(key));
    if (st != M2MHSM_OK || m2mhsm_token_session_get(tok, &s) != M2MHSM_OK)
        return 1;
    CK_RV rv =
        m2mhsm_token_functions(tok)->C_DestroyObject(s, ks_obj(&kpm)->key[M2MHSM_FORM_TLS12_PMS]);
    m2mhsm_token_session_put(tok, s);
    m2mhsm_keystore_close(ks);
    return rv == CKR_OK ? 0 : 1;
}

static int count(m2mhsm_token *tok)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_OBJECT_HANDLE h[256];
    CK_ULONG n = 0, total = 0;
    CK_SESSION_HANDLE s;
    if (m2mhsm_token_session_get(tok, &s) != M2MHSM_OK ||
        fn->C_FindObjectsInit(s, NULL, 0) != CKR_OK)
        return 1;
    do {
        if (fn->C_FindObjects(s, h, 256, &n) != CKR_OK)
            return 1;
        total += n;
    } while (n > 0);
    fn->C_FindObjectsFinal(s);
    m2mhsm_token_session_put(tok, s);
    printf("%lu\n", (unsigned long)total);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fputs("usage: crash_tool MODULE TOKEN PIN-SOURCE LOCK-FILE COMMAND ARGS...\n", stderr);
        return 2;
    }
    m2mhsm_token_config cfg = {
        .module_path = argv[1], .token_uri = argv[2], .pin_source = argv[3], .lock_file = argv[4]};
    m2mhsm_token *tok = NULL;
    if (m2mhsm_token_open(&cfg, &tok) != M2MHSM_OK) {
        fprintf(stderr, "crash_tool: %s\n", m2mhsm_last_error());
        return 1;
    }
    const char *cmd = argv[5];
    int rc = 2;
    if (strcmp(cmd, "reenrol-crash") == 0 && argc == 11) {
        m2mhsm_keystore *ks = NULL;
        rc = m2mhsm_keystore_open(tok, NULL, &ks, NULL) == M2MHSM_OK ? reenrol_crash(ks, argv + 6)
                                                                     : 1;
    } else if (strcmp(cmd, "torn") == 0 && argc == 7) {
        rc = torn(tok, argv[6]);
    } else if (strcmp(cmd, "count") == 0 && argc == 6) {
        rc = count(tok);
    }
    if (rc == 1)
        fprintf(stderr, "crash_tool: %s: %s\n", cmd, m2mhsm_last_error());
    m2mhsm_token_close(tok);
    return rc;
}
