/* The session pool stays within max_sessions and the module's ulMaxSessionCount, and a
 * borrower that finds every session out fails cleanly after session_wait_ms. Sessions are
 * counted outside the library, by the fault module (tests/fault/m2mfault.c) between it and
 * SoftHSM: each scenario runs in a child process of its own, which loads the module with
 * the scenario's environment and reports its peak of open sessions when it exits. */
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
#include <time.h>
#include <unistd.h>

#include "fixture.h"

#define THREADS 4
#define HMACS_PER_THREAD 200
#define KPM_ID "sessions-kpm"

static fixture_token token;
static char report[700];

typedef struct {
    unsigned max_sessions, wait_ms;
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    CK_OBJECT_HANDLE key;
} scenario;

/* Open the token through the fault module, and the key every scenario signs with. */
static int scenario_open(scenario *sc)
{
    m2mhsm_token_config cfg = {.token_uri = token.uri,
                               .pin_source = token.pin_source,
                               .lock_file = token.lock_file,
                               .module_path = M2M_FAULT_PATH,
                               .max_sessions = sc->max_sessions,
                               .session_wait_ms = sc->wait_ms};
    m2mhsm_record rec;
    if (m2mhsm_token_open(&cfg, &sc->tok) != M2MHSM_OK ||
        m2mhsm_keystore_open(sc->tok, NULL, &sc->ks, NULL) != M2MHSM_OK) {
        fprintf(stderr, "open: %s\n", m2mhsm_last_error());
        return -1;
    }
    m2mhsm_status st =
        m2mhsm_keystore_lookup(sc->ks, M2MHSM_KIND_KPM, KPM_ID, strlen(KPM_ID), &rec);
    if (st == M2MHSM_E_NOT_FOUND && m2mhsm_keystore_import_kpm(sc->ks, KPM_ID, fixture_key32, 32,
                                                               M2MHSM_NEVER, NULL) == M2MHSM_OK)
        st = m2mhsm_keystore_lookup(sc->ks, M2MHSM_KIND_KPM, KPM_ID, strlen(KPM_ID), &rec);
    if (st != M2MHSM_OK) {
        fprintf(stderr, "key: %s\n", m2mhsm_last_error());
        return -1;
    }
    sc->key = ks_obj(&rec)->key[M2MHSM_FORM_TLS12_PMS];
    return 0;
}

static void scenario_close(scenario *sc)
{
    m2mhsm_keystore_close(sc->ks);
    m2mhsm_token_close(sc->tok);
}

typedef struct {
    unsigned long peak, refused;
} counts;

/* Run fn in a child that loads the fault module with max_module sessions (0: no limit;
 * stated in C_GetTokenInfo unless unstated); return its exit status, and the fault module's
 * session counts from the report. */
static int in_child(int (*fn)(void), unsigned max_module, int unstated, counts *n)
{
    unlink(report);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(120); /* a hang fails the scenario instead of the whole suite's timeout */
        char max[16];
        snprintf(max, sizeof(max), "%u", max_module);
        setenv("M2M_FAULT_MODULE", getenv("M2MHSM_MODULE"), 1);
        setenv("M2M_FAULT_REPORT", report, 1);
        if (max_module != 0)
            setenv("M2M_FAULT_MAX_SESSIONS", max, 1);
        if (unstated)
            setenv("M2M_FAULT_MAX_SESSIONS_UNSTATED", "1", 1);
        exit(fn()); /* exit, not _exit: the fault module reports at exit */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    FILE *f = fopen(report, "r");
    assert_non_null(f);
    char line[256];
    int found = 0;
    long reporter = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        found |=
            (sscanf(line, "%ld sessions-peak %lu", &reporter, &n->peak) == 2 && reporter == pid);
        found |= (sscanf(line, "%ld sessions-refused %lu", &reporter, &n->refused) == 2 &&
                  reporter == pid)
                 << 1;
    }
    fclose(f);
    assert_int_equal(found, 3);
    return WEXITSTATUS(status);
}

static scenario busy;
static const uint8_t msg[] = "pool";

static void *hmac_many(void *arg)
{
    (void)arg;
    intptr_t failures = 0;
    uint8_t out[32];
    for (int i = 0; i < HMACS_PER_THREAD; i++)
        if (m2mhsm_token_hmac_sha256(busy.tok, busy.key, msg, sizeof(msg), out) != M2MHSM_OK) {
            fprintf(stderr, "hmac: %s\n", m2mhsm_last_error());
            failures++;
        }
    return (void *)failures;
}

/* THREADS threads of HMACs; 0 if every one succeeded. */
static int run_threads(void)
{
    if (scenario_open(&busy) != 0)
        return 2;
    pthread_t t[THREADS];
    intptr_t failures = 0;
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, hmac_many, NULL) != 0)
            return 3;
    for (int i = 0; i < THREADS; i++) {
        void *n = NULL;
        pthread_join(t[i], &n);
        failures += (intptr_t)n;
    }
    scenario_close(&busy);
    return failures == 0 ? 0 : 4;
}

static int capped_by_config(void)
{
    busy = (scenario){.max_sessions = 2, .wait_ms = 30000};
    return run_threads();
}

static int capped_by_module(void)
{
    busy = (scenario){.wait_ms = 30000};
    return run_threads();
}

/* Two borrowed sessions are all max_sessions = 2 allows: a third borrow, and an HMAC, fail
 * with M2MHSM_E_BUSY after the wait, and work again once one is back. */
#define WAIT_MS 300
static int exhausted(void)
{
    scenario sc = {.max_sessions = 2, .wait_ms = WAIT_MS};
    if (scenario_open(&sc) != 0)
        return 2;
    CK_SESSION_HANDLE a, b, c;
    if (m2mhsm_token_session_get(sc.tok, &a) != M2MHSM_OK ||
        m2mhsm_token_session_get(sc.tok, &b) != M2MHSM_OK)
        return 3;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    m2mhsm_status st = m2mhsm_token_session_get(sc.tok, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("exhausted: %s after %ld ms: %s\n", m2mhsm_status_name(st), ms, m2mhsm_last_error());
    if (st != M2MHSM_E_BUSY || ms < WAIT_MS || ms > 10 * WAIT_MS ||
        strstr(m2mhsm_last_error(), "no PKCS#11 session free") == NULL)
        return 4;
    uint8_t out[32];
    if (m2mhsm_token_hmac_sha256(sc.tok, sc.key, msg, sizeof(msg), out) != M2MHSM_E_BUSY)
        return 5;
    m2mhsm_token_session_put(sc.tok, b);
    if (m2mhsm_token_hmac_sha256(sc.tok, sc.key, msg, sizeof(msg), out) != M2MHSM_OK)
        return 6;
    m2mhsm_token_session_put(sc.tok, a);
    scenario_close(&sc);
    return 0;
}

static int cap_of_one(void)
{
    m2mhsm_token_config cfg = {.token_uri = token.uri,
                               .pin_source = token.pin_source,
                               .module_path = M2M_FAULT_PATH,
                               .max_sessions = 1};
    m2mhsm_token *tok = NULL;
    return m2mhsm_token_open(&cfg, &tok) == M2MHSM_E_INVALID_ARG && tok == NULL &&
                   strstr(m2mhsm_last_error(), "max_sessions") != NULL
               ? 0
               : 2;
}

/* The login session and at most two pool sessions. */
static void test_max_sessions_bounds_the_pool_under_threads(void **state)
{
    (void)state;
    counts n = {0};
    assert_int_equal(in_child(capped_by_config, 0, 0, &n), 0);
    printf("max_sessions=2, %d threads x %d HMACs: peak %lu sessions open (login + pool)\n",
           THREADS, HMACS_PER_THREAD, n.peak);
    assert_true(n.peak <= 3);
}

/* A module that states ulMaxSessionCount = 3: the pool keeps to 2 besides the login
 * session without ever being refused a session. */
static void test_module_session_limit_bounds_the_pool(void **state)
{
    (void)state;
    counts n = {0};
    assert_int_equal(in_child(capped_by_module, 3, 0, &n), 0);
    printf("ulMaxSessionCount=3, %d threads x %d HMACs: peak %lu open, %lu C_OpenSession "
           "refused\n",
           THREADS, HMACS_PER_THREAD, n.peak, n.refused);
    assert_true(n.peak <= 3);
    assert_int_equal(n.refused, 0);
}

/* A module out of sessions it did not announce (others use the rest): CKR_SESSION_COUNT
 * while ours are out makes the pool wait for one of them, and no HMAC fails. */
static void test_session_count_refusal_makes_the_pool_wait(void **state)
{
    (void)state;
    counts n = {0};
    assert_int_equal(in_child(capped_by_module, 3, 1, &n), 0);
    printf("3 sessions, limit unstated, %d threads x %d HMACs: peak %lu open, %lu C_OpenSession "
           "refused\n",
           THREADS, HMACS_PER_THREAD, n.peak, n.refused);
    assert_true(n.peak <= 3);
}

static void test_exhausted_pool_fails_after_the_wait(void **state)
{
    (void)state;
    counts n = {0};
    assert_int_equal(in_child(exhausted, 0, 0, &n), 0);
    assert_true(n.peak <= 3);
}

/* Refused before the module is loaded. */
static void test_max_sessions_of_one_is_refused(void **state)
{
    (void)state;
    assert_int_equal(cap_of_one(), 0);
}

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("sessions");
    fixture_token_make(&token, "sessions");
    snprintf(report, sizeof(report), "%s.fault-report", token.dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_sessions_bounds_the_pool_under_threads),
        cmocka_unit_test(test_module_session_limit_bounds_the_pool),
        cmocka_unit_test(test_session_count_refusal_makes_the_pool_wait),
        cmocka_unit_test(test_exhausted_pool_fails_after_the_wait),
        cmocka_unit_test(test_max_sessions_of_one_is_refused),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
