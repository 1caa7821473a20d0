/* Several hosts on one token (docs/key-lifecycle.md, "Answers from memory"): each "host" is
 * a token and key store of its own, with its own lock file or none. An answer a host keeps
 * in memory must be the token's answer: a miss is found at the first lookup after another
 * host wrote it, an erase is seen, and a lock file that does not speak for every writer is
 * reported. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"

static fixture_token token;

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("multihost");
    fixture_token_make(&token, "multihost");
    return 0;
}

typedef struct {
    fixture_store fs;
    int not_shared; /* M2MHSM_TOKEN_LOCK_NOT_SHARED events */
    char detail[512];
} host;

static void observe(void *arg, m2mhsm_token_event ev, const char *detail, long long down_ms)
{
    host *h = arg;
    (void)down_ms;
    if (ev == M2MHSM_TOKEN_LOCK_NOT_SHARED) {
        h->not_shared++;
        snprintf(h->detail, sizeof(h->detail), "%s", detail);
    }
}

/* A host on the test token with lock file `lock` ("" for none). */
static void host_open(host *h, const char *lock)
{
    fixture_token t = token;
    memset(h, 0, sizeof(*h));
    if (lock[0] == '\0')
        t.lock_file[0] = '\0';
    else
        snprintf(t.lock_file, sizeof(t.lock_file), "%s/%s", token.dir, lock);
    if (lock[0] == '\0') {
        m2mhsm_token_config cfg = {.token_uri = t.uri, .pin_source = t.pin_source};
        h->fs.now = 1795000000;
        assert_int_equal(m2mhsm_token_open(&cfg, &h->fs.tok), M2MHSM_OK);
        m2mhsm_keystore_options o = {.clock = fixture_clock, .clock_arg = &h->fs.now};
        assert_int_equal(m2mhsm_keystore_open(h->fs.tok, &o, &h->fs.ks, NULL), M2MHSM_OK);
    } else {
        fixture_store_open(&h->fs, &t);
    }
    m2mhsm_token_observe(h->fs.tok, observe, h);
}

static m2mhsm_status kpm_lookup(host *h, const char *id)
{
    m2mhsm_record r;
    return m2mhsm_keystore_lookup(h->fs.ks, M2MHSM_KIND_KPM, id, strlen(id), &r);
}

static void kpm_import(host *h, const char *id)
{
    assert_int_equal(
        m2mhsm_keystore_import_kpm(h->fs.ks, id, fixture_key32, 32, M2MHSM_NEVER, NULL), M2MHSM_OK);
}

static void kpm_erase(host *h, const char *id)
{
    size_t n = 0;
    assert_int_equal(m2mhsm_keystore_erase_id(h->fs.ks, id, &n), M2MHSM_OK);
    assert_true(n >= 1);
}

/* The bug of issue 10: host B, with a lock file of its own, looked a KpmID up before host A
 * wrote it, and kept answering "not found" from memory until B wrote something. */
static void run_unknown_then_found(const char *lock_a, const char *lock_b, const char *id)
{
    host a, b;
    host_open(&a, lock_a);
    host_open(&b, lock_b);
    assert_int_equal(kpm_lookup(&b, id), M2MHSM_E_NOT_FOUND);
    assert_int_equal(kpm_lookup(&b, id), M2MHSM_E_NOT_FOUND); /* now answered from memory */
    kpm_import(&a, id);
    assert_int_equal(kpm_lookup(&b, id), M2MHSM_OK); /* the first lookup after the write */
    /* and the other way round: B erases what A wrote; a miss at A is never stale */
    kpm_erase(&b, id);
    assert_int_equal(kpm_lookup(&b, id), M2MHSM_E_NOT_FOUND);
    if (lock_a[0] == '\0') /* A's hits too are confirmed by the token's epoch */
        assert_int_equal(kpm_lookup(&a, id), M2MHSM_E_NOT_FOUND);
    fixture_store_close(&a.fs);
    fixture_store_close(&b.fs);
}

static void test_own_lock_files_unknown_then_found(void **state)
{
    (void)state;
    run_unknown_then_found("a.lock", "b.lock", "mh-kpm-1");
}

static void test_no_lock_files_unknown_then_found(void **state)
{
    (void)state;
    run_unknown_then_found("", "", "mh-kpm-2");
}

static void test_lock_file_on_one_host_only_unknown_then_found(void **state)
{
    (void)state;
    run_unknown_then_found("", "c.lock", "mh-kpm-3");
    run_unknown_then_found("d.lock", "", "mh-kpm-4");
}

/* Host B's lock file does not speak for host A's writes: B says so once (the services log
 * it as lock-file-not-shared), and from then on its hits are confirmed by the token's
 * epoch: A's erase of a record B had found is seen at once. */
static void test_lock_file_not_shared_is_reported_and_then_coherent(void **state)
{
    (void)state;
    host a, b;
    host_open(&a, "e.lock");
    host_open(&b, "f.lock");
    /* The report compares the lock file's count with the token's write-epoch object, a
     * private CKO_DATA object. A token that refuses those (softokn) has none: nothing can
     * be reported, and a hit is always confirmed on the token (docs/key-lifecycle.md). */
    const int told = m2mhsm_token_caps_get(b.fs.tok)->private_data_objects;
    kpm_import(&b, "mh-kpm-5");
    assert_int_equal(kpm_lookup(&b, "mh-kpm-5"), M2MHSM_OK);
    assert_int_equal(b.not_shared, 0);
    kpm_import(&a, "mh-kpm-6"); /* a write B's lock file does not see */
    kpm_import(&b, "mh-kpm-7"); /* B's next write notices it */
    assert_int_equal(b.not_shared, told);
    if (told)
        assert_non_null(strstr(b.detail, "f.lock"));
    kpm_erase(&a, "mh-kpm-5");
    assert_int_equal(kpm_lookup(&b, "mh-kpm-5"), M2MHSM_E_NOT_FOUND);
    assert_int_equal(kpm_lookup(&b, "mh-kpm-6"), M2MHSM_OK);
    assert_int_equal(b.not_shared, told); /* told once */

    /* A writer opening on B's lock file starts it afresh from the token (the counter moves,
     * so nothing seen before is answered from memory), and a write from outside that goes
     * on is noticed and reported again. */
    host c;
    host_open(&c, "f.lock");
    assert_int_equal(kpm_lookup(&c, "mh-kpm-7"), M2MHSM_OK);
    assert_int_equal(c.not_shared, 0);
    kpm_erase(&a, "mh-kpm-7");
    kpm_import(&c, "mh-kpm-9"); /* c's write notices a's */
    assert_int_equal(c.not_shared, told);
    assert_int_equal(kpm_lookup(&c, "mh-kpm-7"), M2MHSM_E_NOT_FOUND);
    fixture_store_close(&c.fs);
    fixture_store_close(&a.fs);
    fixture_store_close(&b.fs);
}

/* Processes that do share one lock file never report it, and see each other's writes. */
static void test_shared_lock_file_is_not_reported(void **state)
{
    (void)state;
    host a, b;
    host_open(&a, "g.lock");
    host_open(&b, "g.lock");
    assert_int_equal(kpm_lookup(&b, "mh-kpm-8"), M2MHSM_E_NOT_FOUND);
    kpm_import(&a, "mh-kpm-8");
    assert_int_equal(kpm_lookup(&b, "mh-kpm-8"), M2MHSM_OK);
    assert_int_equal(kpm_lookup(&b, "mh-kpm-8"), M2MHSM_OK);
    kpm_erase(&a, "mh-kpm-8");
    assert_int_equal(kpm_lookup(&b, "mh-kpm-8"), M2MHSM_E_NOT_FOUND);
    assert_int_equal(a.not_shared + b.not_shared, 0);
    fixture_store_close(&a.fs);
    fixture_store_close(&b.fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_lock_files_unknown_then_found),
        cmocka_unit_test(test_no_lock_files_unknown_then_found),
        cmocka_unit_test(test_lock_file_on_one_host_only_unknown_then_found),
        cmocka_unit_test(test_lock_file_not_shared_is_reported_and_then_coherent),
        cmocka_unit_test(test_shared_lock_file_is_not_reported),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
