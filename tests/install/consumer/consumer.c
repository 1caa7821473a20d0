/*
 * A program of someone else's, built against the installed libm2mhsm only (pkg-config or
 * find_package): it parses an identifier and an m2m:timestamp, then opens the token named
 * on the command line and counts its records.
 *   consumer MODULE TOKEN-URI PIN-SOURCE LOCK-FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <m2mhsm/errors.h>
#include <m2mhsm/expiry.h>
#include <m2mhsm/ids.h>
#include <m2mhsm/keystore.h>
#include <m2mhsm/token.h>

int main(int argc, char **argv)
{
    m2mhsm_time t = 0;
    char ts[M2MHSM_TIMESTAMP_LEN];
    if (argc != 5 || m2mhsm_timestamp_parse("20261129T120000", &t) != M2MHSM_OK ||
        m2mhsm_timestamp_format(t, ts, sizeof(ts)) != M2MHSM_OK ||
        m2mhsm_id_check_str(M2MHSM_ID_KPM, "kpm-lab-0001") != M2MHSM_OK) {
        fprintf(stderr, "consumer: %s\n", argc != 5 ? "usage" : m2mhsm_last_error());
        return 2;
    }
    m2mhsm_token_config cfg = {
        .module_path = argv[1], .token_uri = argv[2], .pin_source = argv[3], .lock_file = argv[4]};
    m2mhsm_token *tok = NULL;
    m2mhsm_keystore *ks = NULL;
    m2mhsm_record *recs = NULL;
    size_t n = 0;
    m2mhsm_status st = m2mhsm_token_open(&cfg, &tok);
    if (st == M2MHSM_OK)
        st = m2mhsm_keystore_open(tok, NULL, &ks, NULL);
    if (st == M2MHSM_OK)
        st = m2mhsm_keystore_list(ks, &recs, &n);
    if (st != M2MHSM_OK)
        fprintf(stderr, "consumer: %s: %s\n", m2mhsm_status_name(st), m2mhsm_last_error());
    else
        printf("timestamp %s, %zu records\n", ts, n);
    free(recs);
    m2mhsm_keystore_close(ks);
    m2mhsm_token_close(tok);
    return st == M2MHSM_OK ? 0 : 1;
}
