/* fork() while another thread holds each of the library's locks, or a session: the child's
 * first token call works and nothing deadlocks (src/fork.c; the lock order in
 * src/p11/p11.h). Every wait is bounded: a child that deadlocks dies of SIGALRM after
 * CHILD_BOUND_S, and a fork() that deadlocks in its prepare handler kills the test after
 * PARENT_BOUND_S. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "handle.h"
#include "keystore/ks.h"
#include "p11/p11.h"

#define CHILD_BOUND_S 30
#define PARENT_BOUND_S 60
#define KPM_ID "fork-kpm"

static fixture_token token;
static fixture_store fs;
static m2mhsm_handles *handles;
static m2mhsm_record ke;
static uint8_t expected[32];
static const uint8_t msg[] = "an HMAC in a forked child";

/* What the holder thread and the forking thread tell each other. */
static struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int held, fork_started, forked;
} ev = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static void raise_flag(int *flag)
{
    pthread_mutex_lock(&ev.m);
    *flag = 1;
    pthread_cond_broadcast(&ev.c);
    pthread_mutex_unlock(&ev.m);
}

static void wait_flag(int *flag)
{
    pthread_mutex_lock(&ev.m);
    while (!*flag)
        pthread_cond_wait(&ev.c, &ev.m);
    pthread_mutex_unlock(&ev.m);
}

/* Registered after the library's handlers, so it runs before its prepare handler: fork()
 * has begun, with the lock still held. */
static void test_prepare(void)
{
    raise_flag(&ev.fork_started);
}

/*
 * A lock the holder takes before the fork. The locks the prepare handler takes are released
 * once fork() has begun (prepare waits for them, and the child inherits them free); a
 * borrowed session, which prepare does not wait for, stays out until fork() has returned in
 * the parent.
 */
typedef struct {
    void (*take)(void);
    void (*give)(void);
    int held_through_fork;
} lock_kind;

static void *holder(void *arg)
{
    const lock_kind *k = arg;
    k->take();
    raise_flag(&ev.held);
    wait_flag(k->held_through_fork ? &ev.forked : &ev.fork_started);
    k->give();
    /* Alive until fork() has returned: the child then has no finished, unjoined thread
     * (which ThreadSanitizer would report as leaked when the child exits). */
    wait_flag(&ev.forked);
    return NULL;
}

/* The child's first calls: look the Ke up again (the parent's handles mean nothing here),
 * HMAC with it on the token, and issue a PSK handle through the provider's registry. */
static int child_calls(void)
{
    m2mhsm_record r, kpm;
    uint8_t out[32], h[M2MHSM_HANDLE_LEN];
    if (m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KE, ke.identity, strlen(ke.identity), &r) !=
        M2MHSM_OK)
        return 2;
    if (m2mhsm_token_hmac_sha256(fs.tok, ks_obj(&r)->key[M2MHSM_FORM_RAW], msg, sizeof(msg), out) !=
        M2MHSM_OK)
        return 3;
    if (memcmp(out, expected, sizeof(out)) != 0)
        return 4;
    if (m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, KPM_ID, strlen(KPM_ID), &kpm) != M2MHSM_OK ||
        m2mhsm_handles_issue(handles, &kpm, h) != M2MHSM_OK ||
        m2mhsm_handles_resolve(handles, h, sizeof(h), &r) != M2MHSM_OK)
        return 5;
    return 0;
}

static void fork_while_held(const lock_kind *k)
{
    ev.held = ev.fork_started = ev.forked = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, holder, (void *)k), 0);
    wait_flag(&ev.held);
    alarm(PARENT_BOUND_S);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(CHILD_BOUND_S);
        _exit(child_calls());
    }
    raise_flag(&ev.forked);
    assert_true(pid > 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    alarm(0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(WIFEXITED(status)); /* not killed by SIGALRM: no deadlock */
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The parent carries on too. */
    uint8_t out[32];
    assert_int_equal(
        m2mhsm_token_hmac_sha256(fs.tok, ks_obj(&ke)->key[M2MHSM_FORM_RAW], msg, sizeof(msg), out),
        M2MHSM_OK);
    assert_memory_equal(out, expected, sizeof(out));
}

static void token_lock_take(void)
{
    pthread_mutex_lock(&fs.tok->lock);
}
static void token_lock_give(void)
{
    pthread_mutex_unlock(&fs.tok->lock);
}
static void count_lock_take(void)
{
    pthread_mutex_lock(&fs.tok->objlock.count_lock);
}
static void count_lock_give(void)
{
    pthread_mutex_unlock(&fs.tok->objlock.count_lock);
}
static void keystore_lock_take(void)
{
    pthread_mutex_lock(&fs.ks->lock);
}
static void keystore_lock_give(void)
{
    pthread_mutex_unlock(&fs.ks->lock);
}
static void handle_lock_take(void)
{
    pthread_mutex_lock(m2mhsm_handles_lock(handles));
}
static void handle_lock_give(void)
{
    pthread_mutex_unlock(m2mhsm_handles_lock(handles));
}
static void read_section_take(void)
{
    m2mhsm_token_read_begin(fs.tok);
}
static void read_section_give(void)
{
    m2mhsm_token_read_end(fs.tok);
}
static void search_section_take(void)
{
    m2mhsm_token_search_begin(fs.tok);
}
static void search_section_give(void)
{
    m2mhsm_token_search_end(fs.tok);
}
static void write_section_take(void)
{
    m2mhsm_token_write_begin(fs.tok);
}
static void write_section_give(void)
{
    m2mhsm_token_write_end(fs.tok);
}
static CK_SESSION_HANDLE borrowed;
static int borrowed_ok;
static void session_take(void)
{
    borrowed_ok = m2mhsm_token_session_get(fs.tok, &borrowed) == M2MHSM_OK;
}
static void session_give(void)
{
    if (borrowed_ok)
        m2mhsm_token_session_put(fs.tok, borrowed);
}

static void test_fork_while_token_and_pool_lock_held(void **state)
{
    (void)state;
    static const lock_kind k = {token_lock_take, token_lock_give, 0};
    fork_while_held(&k);
}

static void test_fork_while_lock_file_reader_count_held(void **state)
{
    (void)state;
    static const lock_kind k = {count_lock_take, count_lock_give, 0};
    fork_while_held(&k);
}

static void test_fork_while_keystore_lock_held(void **state)
{
    (void)state;
    static const lock_kind k = {keystore_lock_take, keystore_lock_give, 0};
    fork_while_held(&k);
}

static void test_fork_while_provider_handle_lock_held(void **state)
{
    (void)state;
    static const lock_kind k = {handle_lock_take, handle_lock_give, 0};
    fork_while_held(&k);
}

static void test_fork_while_object_read_section_held(void **state)
{
    (void)state;
    static const lock_kind k = {read_section_take, read_section_give, 0};
    fork_while_held(&k);
}

static void test_fork_while_object_search_section_held(void **state)
{
    (void)state;
    static const lock_kind k = {search_section_take, search_section_give, 0};
    fork_while_held(&k);
}

static void test_fork_while_object_write_section_held(void **state)
{
    (void)state;
    static const lock_kind k = {write_section_take, write_section_give, 0};
    fork_while_held(&k);
}

static void test_fork_while_a_session_is_borrowed(void **state)
{
    (void)state;
    static const lock_kind k = {session_take, session_give, 1};
    fork_while_held(&k);
    assert_true(borrowed_ok);
}

/* Threads busy with token calls while the main thread forks again and again. */
static int stop;
static void *hmac_loop(void *arg)
{
    (void)arg;
    int failures = 0;
    uint8_t out[32];
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE))
        failures += m2mhsm_token_hmac_sha256(fs.tok, ks_obj(&ke)->key[M2MHSM_FORM_RAW], msg,
                                             sizeof(msg), out) != M2MHSM_OK ||
                    memcmp(out, expected, sizeof(out)) != 0;
    return (void *)(intptr_t)failures;
}

static void test_fork_repeatedly_while_threads_sign(void **state)
{
    (void)state;
    pthread_t t[2];
    __atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hmac_loop, NULL), 0);
    for (int i = 0; i < 20; i++) {
        alarm(PARENT_BOUND_S);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(CHILD_BOUND_S);
            _exit(child_calls());
        }
        assert_true(pid > 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        alarm(0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        void *failures = NULL;
        assert_int_equal(pthread_join(t[i], &failures), 0);
        assert_int_equal((intptr_t)failures, 0);
    }
}

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("fork");
    fixture_token_make(&token, "fork");
    fixture_store_open(&fs, &token);
    ke = fixture_enrol(&fs, "fork-kpm-of-ke", "//sp.example.com/cse1/Cfork", 0x5a, 3600);
    if (m2mhsm_token_hmac_sha256(fs.tok, ks_obj(&ke)->key[M2MHSM_FORM_RAW], msg, sizeof(msg),
                                 expected) != M2MHSM_OK ||
        m2mhsm_keystore_import_kpm(fs.ks, KPM_ID, fixture_key32, 32, M2MHSM_NEVER, NULL) !=
            M2MHSM_OK ||
        m2mhsm_handles_new(fs.ks, &handles) != M2MHSM_OK)
        return -1;
    /* After the library's handlers (registered at the first open): ours runs first. */
    return pthread_atfork(test_prepare, NULL, NULL) == 0 ? 0 : -1;
}

static int suite_teardown(void **state)
{
    (void)state;
    m2mhsm_handles_free(handles);
    fixture_store_close(&fs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_while_token_and_pool_lock_held),
        cmocka_unit_test(test_fork_while_lock_file_reader_count_held),
        cmocka_unit_test(test_fork_while_keystore_lock_held),
        cmocka_unit_test(test_fork_while_provider_handle_lock_held),
        cmocka_unit_test(test_fork_while_object_read_section_held),
        cmocka_unit_test(test_fork_while_object_search_section_held),
        cmocka_unit_test(test_fork_while_object_write_section_held),
        cmocka_unit_test(test_fork_while_a_session_is_borrowed),
        cmocka_unit_test(test_fork_repeatedly_while_threads_sign),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
