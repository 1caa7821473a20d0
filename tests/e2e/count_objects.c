/*
 * count_objects MODULE TOKEN-URI PIN-SOURCE: prints the number of stored (CKA_TOKEN) objects
 * of every class on the token, private ones included, and then one line per object class
 * ("class 0x3 2"). Any PKCS#11 module, through m2mhsm's token opening (init args from
 * $M2MHSM_MODULE_INIT_ARGS): so a test can show that a failed write left nothing behind on
 * tokens no other tool reaches (softokn needs init args that pkcs11-tool cannot pass).
 */
#include <stdio.h>
#include <stdlib.h>
#include "p11/handles.h"

static int count(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s)
{
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &t, sizeof(t)}};
    CK_OBJECT_HANDLE h[4096];
    CK_ULONG n = 0;
    if (fn->C_FindObjectsInit(s, tmpl, 1) != CKR_OK ||
        fn->C_FindObjects(s, h, sizeof(h) / sizeof(h[0]), &n) != CKR_OK)
        return -1;
    fn->C_FindObjectsFinal(s);
    printf("%lu\n", (unsigned long)n);
    unsigned long per_class[8] = {0};
    for (CK_ULONG i = 0; i < n; i++) {
        CK_OBJECT_CLASS cls = 0;
        CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
        if (fn->C_GetAttributeValue(s, h[i], &a, 1) != CKR_OK || cls >= 8)
            return -1;
        per_class[cls]++;
    }
    for (int c = 0; c < 8; c++)
        if (per_class[c] > 0)
            printf("class 0x%x %lu\n", c, per_class[c]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fputs("usage: count_objects MODULE TOKEN-URI PIN-SOURCE\n", stderr);
        return 2;
    }
    m2mhsm_token_config cfg = {.module_path = argv[1], .token_uri = argv[2], .pin_source = argv[3]};
    m2mhsm_token *tok = NULL;
    CK_SESSION_HANDLE s;
    if (m2mhsm_token_open(&cfg, &tok) != M2MHSM_OK ||
        m2mhsm_token_session_get(tok, &s) != M2MHSM_OK) {
        fprintf(stderr, "count_objects: %s\n", m2mhsm_last_error());
        m2mhsm_token_close(tok);
        return 1;
    }
    int rc = count(m2mhsm_token_functions(tok), s);
    m2mhsm_token_session_put(tok, s);
    m2mhsm_token_close(tok);
    if (rc != 0)
        fputs("count_objects: a PKCS#11 call failed\n", stderr);
    return rc == 0 ? 0 : 1;
}
