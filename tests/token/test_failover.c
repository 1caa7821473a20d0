/* Failover of a lost token, through tests/fault's forwarding module (set up by CMake:
 * M2MHSM_MODULE is libm2mfault.so, which answers the second C_Sign with CKR_DEVICE_ERROR, as
 * p11-kit's client does once its server is gone). The store must mark the token down, tell
 * its observer, re-attach in a new generation, and find its keys again. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "keystore/record.h"
#include "p11/handles.h"

static fixture_token token;

typedef struct {
    int lost, back;
    char detail[128];
} events;

static void observe(void *arg, m2mhsm_token_event ev, const char *detail, long long down_ms)
{
    events *e = arg;
    assert_true(down_ms >= 0);
    if (ev == M2MHSM_TOKEN_LOST)
        e->lost++;
    else if (ev == M2MHSM_TOKEN_BACK)
        e->back++;
    strncpy(e->detail, detail, sizeof(e->detail) - 1);
}

static int suite_setup(void **state)
{
    (void)state;
    /* Guard: without the fault module this suite would prove nothing. */
    const char *func = getenv("M2M_FAULT_FUNC");
    if (func == NULL || strcmp(func, "C_Sign") != 0 || getenv("M2M_FAULT_MODULE") == NULL)
        return -1;
    fixture_softhsm_setup("failover");
    fixture_token_make(&token, "failover");
    return 0;
}

static m2mhsm_status hmac_of(fixture_store *fs, const m2mhsm_record *kpm, uint8_t out[32])
{
    static const uint8_t msg[] = "failover";
    return m2mhsm_token_hmac_sha256(fs->tok, ks_obj(kpm)->key[M2MHSM_FORM_TLS12_PMS], msg,
                                    sizeof(msg), out);
}

static void test_lost_token_is_reattached_and_keys_found_again(void **state)
{
    (void)state;
    fixture_store fs = {0};
    events ev = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_token_observe(fs.tok, observe, &ev);
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs.ks, "failover-kpm", fixture_key32, 32, M2MHSM_NEVER, NULL),
        M2MHSM_OK);
    m2mhsm_record kpm;
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "failover-kpm", 12, &kpm),
                     M2MHSM_OK);
    unsigned gen = m2mhsm_token_generation(fs.tok);
    uint8_t first[32], again[32];
    assert_int_equal(hmac_of(&fs, &kpm, first), M2MHSM_OK); /* C_Sign #1 */
    assert_int_equal(ev.lost, 0);

    /* C_Sign #2: CKR_DEVICE_ERROR. Down, told once, the CKR and operation named. */
    assert_int_not_equal(hmac_of(&fs, &kpm, again), M2MHSM_OK);
    assert_non_null(strstr(m2mhsm_last_error(), "CKR_DEVICE_ERROR"));
    assert_int_equal(ev.lost, 1);
    assert_string_equal(ev.detail, "C_SignInit/C_Sign(CKM_SHA256_HMAC): CKR_DEVICE_ERROR");
    assert_true(m2mhsm_token_is_down(fs.tok));

    /* The caller's one retry: re-attached in a new generation, told once. */
    assert_int_equal(m2mhsm_token_recover(fs.tok, gen), M2MHSM_OK);
    assert_false(m2mhsm_token_is_down(fs.tok));
    assert_int_equal(m2mhsm_token_generation(fs.tok), gen + 1);
    assert_int_equal(ev.back, 1);
    assert_string_equal(ev.detail, "CKR_DEVICE_ERROR");
    /* A second caller of the same failure finds it mended, without another re-attach. */
    assert_int_equal(m2mhsm_token_recover(fs.tok, gen), M2MHSM_OK);
    assert_int_equal(m2mhsm_token_generation(fs.tok), gen + 1);
    assert_int_equal(ev.back, 1);

    /* The store finds the key again in the new generation, and it is the same key. */
    m2mhsm_record found;
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "failover-kpm", 12, &found),
                     M2MHSM_OK);
    assert_int_equal(ks_obj(&found)->generation, gen + 1);
    assert_memory_equal(found.record_id, kpm.record_id, M2MHSM_RECORD_ID_LEN);
    assert_int_equal(hmac_of(&fs, &found, again), M2MHSM_OK);
    assert_memory_equal(first, again, 32);

    /* An error that is not a lost token is not retried: the caller's error stands. */
    assert_int_not_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "nope", 4, &found),
                         M2MHSM_OK);
    assert_int_not_equal(m2mhsm_token_recover(fs.tok, gen + 1), M2MHSM_OK);
    assert_int_equal(m2mhsm_token_generation(fs.tok), gen + 1);
    assert_int_equal(ev.lost, 1);
    fixture_store_close(&fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_token_is_reattached_and_keys_found_again),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
