#include "fixture.h"
#include "softhsm_conf.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FIXTURE_ROOT
#error "FIXTURE_ROOT must name a directory under the build tree"
#endif

static char root[400];

const uint8_t fixture_key32[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                   16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

void fixture_softhsm_setup(const char *suite)
{
    char cmd[1200], text[1200];
    snprintf(root, sizeof(root), "%s/%s-%ld", FIXTURE_ROOT, suite, (long)getpid());
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(softhsm_conf_write(root), 0);
    snprintf(text, sizeof(text), "%s/so.pin", root);
    write_file(text, "so-secret-1234\n");
    snprintf(text, sizeof(text), "%s/user.pin", root);
    write_file(text, "user-secret-1234\n");
}

void fixture_token_make(fixture_token *t, const char *label)
{
    char so[600];
    memset(t, 0, sizeof(*t));
    snprintf(t->label, sizeof(t->label), "%s", label);
    snprintf(t->dir, sizeof(t->dir), "%s/tokens", root);
    snprintf(t->uri, sizeof(t->uri), "pkcs11:token=%s", label);
    snprintf(t->pin_source, sizeof(t->pin_source), "file:%s/user.pin", root);
    snprintf(so, sizeof(so), "file:%s/so.pin", root);
    snprintf(t->lock_file, sizeof(t->lock_file), "%s/m2mhsm.lock", root);
    m2mhsm_status st = m2mhsm_token_init(NULL, label, so, t->pin_source);
    if (st != M2MHSM_OK)
        fail_msg("token init: %s", m2mhsm_last_error());
}

m2mhsm_time fixture_clock(void *arg)
{
    return *(const m2mhsm_time *)arg;
}

void fixture_store_open(fixture_store *fs, const fixture_token *t)
{
    m2mhsm_token_config cfg = {
        .token_uri = t->uri, .pin_source = t->pin_source, .lock_file = t->lock_file};
    if (fs->now == 0)
        fs->now = 1795000000; /* 2026-11-18, fixed: tests never read the wall clock */
    m2mhsm_status st = m2mhsm_token_open(&cfg, &fs->tok);
    if (st != M2MHSM_OK)
        fail_msg("token_open: %s", m2mhsm_last_error());
    m2mhsm_keystore_options o = {.clock = fixture_clock, .clock_arg = &fs->now};
    st = m2mhsm_keystore_open(fs->tok, &o, &fs->ks, NULL);
    if (st != M2MHSM_OK)
        fail_msg("keystore_open: %s", m2mhsm_last_error());
}

m2mhsm_record fixture_enrol(fixture_store *fs, const char *kpm_id, const char *enrolee, uint8_t tag,
                            int64_t seconds)
{
    uint8_t exported[48];
    memset(exported, tag, 16);
    memcpy(exported + 16, fixture_key32, 32);
    m2mhsm_enrolment e = {
        kpm_id, "mef.example.com", enrolee, "maf.example.com", {M2MHSM_EXPIRY_DURATION, seconds}};
    m2mhsm_record ke;
    m2mhsm_status st = m2mhsm_keystore_store_ke(fs->ks, &e, exported, &ke);
    if (st != M2MHSM_OK)
        fail_msg("store_ke: %s", m2mhsm_last_error());
    return ke;
}

void fixture_store_close(fixture_store *fs)
{
    m2mhsm_keystore_close(fs->ks);
    m2mhsm_token_close(fs->tok);
    fs->ks = NULL;
    fs->tok = NULL;
}
