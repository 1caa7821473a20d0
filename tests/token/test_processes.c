/* Several processes and threads on one token: the index stays coherent, a forked child
 * re-initialises, threads share a store safely. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

static fixture_token token;

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("processes");
    fixture_token_make(&token, "processes");
    return 0;
}

/* Run fn in a child process with its own token and store; return its exit status. */
static int in_other_process(int (*fn)(fixture_store *fs))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fixture_store fs = {0};
        fixture_store_open(&fs, &token);
        int rc = fn(&fs);
        fixture_store_close(&fs);
        _exit(rc);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int create_kpm(fixture_store *fs)
{
    return m2mhsm_keystore_import_kpm(fs->ks, "other-proc-kpm", fixture_key32, 32, M2MHSM_NEVER,
                                      NULL) == M2MHSM_OK
               ? 0
               : 1;
}

static int erase_kpm(fixture_store *fs)
{
    return m2mhsm_keystore_erase_id(fs->ks, "other-proc-kpm", NULL) == M2MHSM_OK ? 0 : 1;
}

static void test_index_sees_another_process_create_and_destroy(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_record r;
    const char *id = "other-proc-kpm";
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, 14, &r),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(in_other_process(create_kpm), 0);
    /* A miss searches the token. */
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, 14, &r), M2MHSM_OK);
    assert_int_not_equal(ks_obj(&r)->key[M2MHSM_FORM_TLS12_PMS], CK_INVALID_HANDLE);
    /* Now a hit; the other process erases; the hit's confirmation notices. */
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, 14, &r), M2MHSM_OK);
    assert_int_equal(in_other_process(erase_kpm), 0);
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, 14, &r),
                     M2MHSM_E_NOT_FOUND);
    fixture_store_close(&fs);
}

/* With revalidate_ms, a hit confirmed moments ago is trusted: another process's erase is
 * seen only after the window (expiry is still exact). Without it, at once (above). */
static void test_revalidation_window_trades_coherence_for_speed(void **state)
{
    (void)state;
    assert_int_equal(in_other_process(create_kpm), 0);
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_keystore_close(fs.ks);
    m2mhsm_keystore_options o = {
        .clock = fixture_clock, .clock_arg = &fs.now, .revalidate_ms = 60000};
    assert_int_equal(m2mhsm_keystore_open(fs.tok, &o, &fs.ks, NULL), M2MHSM_OK);
    m2mhsm_record r;
    const char *id = "other-proc-kpm";
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, 14, &r), M2MHSM_OK);
    assert_int_equal(in_other_process(erase_kpm), 0);
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, 14, &r), M2MHSM_OK);
    m2mhsm_keystore_close(fs.ks);
    o.revalidate_ms = 0;
    assert_int_equal(m2mhsm_keystore_open(fs.tok, &o, &fs.ks, NULL), M2MHSM_OK);
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, 14, &r),
                     M2MHSM_E_NOT_FOUND);
    fixture_store_close(&fs);
}

/* Import a Kpm from another process that does not use the lock file, so the shared write
 * epoch does not move: a writer the epoch cannot see. */
static int import_without_lock(const char *kpm_id)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        m2mhsm_token_config cfg = {.token_uri = token.uri, .pin_source = token.pin_source};
        m2mhsm_token *tok = NULL;
        m2mhsm_keystore *ks = NULL;
        int bad = m2mhsm_token_open(&cfg, &tok) != M2MHSM_OK ||
                  m2mhsm_keystore_open(tok, NULL, &ks, NULL) != M2MHSM_OK ||
                  m2mhsm_keystore_import_kpm(ks, kpm_id, fixture_key32, 32, M2MHSM_NEVER, NULL) !=
                      M2MHSM_OK;
        m2mhsm_keystore_close(ks);
        m2mhsm_token_close(tok);
        _exit(bad);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* With a lock file, answers confirmed at the current write epoch are given from memory: a
 * flood of unknown identities costs one search, then one read of the token's epoch object
 * each, and hits are memory lookups. A writer without the lock file (another host) still
 * moves the token's epoch object, so its write is found at the next lookup (issue 10: it
 * was not, until a writer using the lock file wrote). */
static void test_write_epoch_answers_repeat_lookups_without_the_token(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_record r;
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "ghost-kpm", 9, &r),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(import_without_lock("ghost-kpm"), 0);
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "ghost-kpm", 9, &r), M2MHSM_OK);
    /* A write through the lock moves the lock file's counter too: still found. */
    assert_int_equal(in_other_process(create_kpm), 0);
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "ghost-kpm", 9, &r), M2MHSM_OK);
    assert_int_equal(in_other_process(erase_kpm), 0);
    assert_int_equal(m2mhsm_keystore_erase_id(fs.ks, "ghost-kpm", NULL), M2MHSM_OK);
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "ghost-kpm", 9, &r),
                     M2MHSM_E_NOT_FOUND);
    fixture_store_close(&fs);
}

static void test_forked_child_reinitialises_before_its_first_token_call(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_record ke = fixture_enrol(&fs, "fork-kpm", "//sp.example.com/cse1/Cfork", 0x42, 3600);
    uint8_t parent_km[32], child_km[32];
    assert_int_equal(
        m2mhsm_keystore_derive(fs.ks, &ke, M2MHSM_DERIVE_KM, "maf.example.com", parent_km),
        M2MHSM_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* The parent's store, used in the child: handles and sessions are void here. */
        close(fds[0]);
        m2mhsm_record k;
        /* The parent's record names handles of the parent's module instance: refused. */
        int rc = m2mhsm_keystore_derive(fs.ks, &ke, M2MHSM_DERIVE_KM, "maf.example.com",
                                        child_km) != M2MHSM_E_NOT_FOUND;
        rc |= m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KE, ke.identity, strlen(ke.identity), &k) !=
              M2MHSM_OK;
        rc |= m2mhsm_keystore_derive(fs.ks, &k, M2MHSM_DERIVE_KM, "maf.example.com", child_km) !=
              M2MHSM_OK;
        rc |= write(fds[1], child_km, 32) != 32;
        _exit(rc);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], child_km, 32), 32);
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_memory_equal(child_km, parent_km, 32);
    /* The parent is untouched by the child's re-initialisation. */
    assert_int_equal(
        m2mhsm_keystore_derive(fs.ks, &ke, M2MHSM_DERIVE_KM, "maf.example.com", child_km),
        M2MHSM_OK);
    assert_memory_equal(child_km, parent_km, 32);
    assert_int_equal(m2mhsm_keystore_erase_id(fs.ks, ke.identity, NULL), M2MHSM_OK);
    fixture_store_close(&fs);
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 150

typedef struct {
    fixture_store *fs;
    const m2mhsm_record *ke;
    int id, failures;
} worker;

/* Count a failure and say what it was (the detail is per thread). */
#define CHECKW(x)                                                                                  \
    do {                                                                                           \
        if ((x) != M2MHSM_OK) {                                                                    \
            w->failures++;                                                                         \
            fprintf(stderr, "worker %d: %s\n", w->id, m2mhsm_last_error());                        \
        }                                                                                          \
    } while (0)

static void *work(void *arg)
{
    worker *w = arg;
    char kpm_id[32];
    for (int i = 0; i < ROUNDS; i++) {
        m2mhsm_record r;
        uint8_t km[32];
        const char *ke_id = w->ke->identity;
        CHECKW(m2mhsm_keystore_lookup(w->fs->ks, M2MHSM_KIND_KE, ke_id, strlen(ke_id), &r));
        CHECKW(m2mhsm_keystore_derive(w->fs->ks, &r, M2MHSM_DERIVE_KM, "maf.example.com", km));
        if (i % 25 == 0) {
            snprintf(kpm_id, sizeof(kpm_id), "thread-%d-%d", w->id, i);
            CHECKW(m2mhsm_keystore_import_kpm(w->fs->ks, kpm_id, fixture_key32, 32, M2MHSM_NEVER,
                                              NULL));
            CHECKW(m2mhsm_keystore_lookup(w->fs->ks, M2MHSM_KIND_KPM, kpm_id, strlen(kpm_id), &r));
            CHECKW(m2mhsm_keystore_erase_id(w->fs->ks, kpm_id, NULL));
        }
    }
    return NULL;
}

static void test_threads_share_one_store(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_record ke = fixture_enrol(&fs, "thread-kpm", "//sp.example.com/cse1/Cthr", 0x77, 3600);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){&fs, &ke, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(m2mhsm_keystore_erase_id(fs.ks, ke.identity, NULL), M2MHSM_OK);
    fixture_store_close(&fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_sees_another_process_create_and_destroy),
        cmocka_unit_test(test_revalidation_window_trades_coherence_for_speed),
        cmocka_unit_test(test_write_epoch_answers_repeat_lookups_without_the_token),
        cmocka_unit_test(test_forked_child_reinitialises_before_its_first_token_call),
        cmocka_unit_test(test_threads_share_one_store),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
