#include "softokn.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void softokn_db_make(softokn_db *db, const char *suite)
{
    char cmd[2000], pin[520];
    snprintf(db->dir, sizeof(db->dir), "%s/softokn-%s-%ld", FIXTURE_ROOT, suite, (long)getpid());
    snprintf(pin, sizeof(pin), "%s.pin", db->dir);
    snprintf(db->pin_source, sizeof(db->pin_source), "file:%s", pin);
    snprintf(db->init_args, sizeof(db->init_args),
             "configdir='sql:%s' certPrefix='' keyPrefix='' secmod='secmod.db' flags=", db->dir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", db->dir, db->dir);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(pin, "w");
    assert_non_null(f);
    fputs("softokn-user-1234\n", f);
    fclose(f);
    chmod(pin, 0600);
    snprintf(cmd, sizeof(cmd), "certutil -N -d 'sql:%s' -f '%s'", db->dir, pin);
    assert_int_equal(system(cmd), 0);
}

m2mhsm_token *softokn_open(const softokn_db *db)
{
    m2mhsm_token_config cfg = {.module_path = SOFTOKN_MODULE,
                               .token_uri = SOFTOKN_URI,
                               .pin_source = db->pin_source,
                               .init_args = db->init_args};
    m2mhsm_token *tok = NULL;
    m2mhsm_status st = m2mhsm_token_open(&cfg, &tok);
    if (st != M2MHSM_OK)
        fail_msg("softokn open: %s", m2mhsm_last_error());
    return tok;
}
