/* Opening a token and a store: every misconfiguration gets a clear error, and opening
 * repairs what a crash left behind. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

#define EEEE_KE_ID "EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE@mef.example.com"

static fixture_token token, other;

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("open");
    fixture_token_make(&token, "open-a");
    fixture_token_make(&other, "open-b");
    return 0;
}

static void expect_open_fails(const char *module, const char *uri, const char *pin_source,
                              m2mhsm_status want, const char *words)
{
    m2mhsm_token_config cfg = {.module_path = module, .token_uri = uri, .pin_source = pin_source};
    m2mhsm_token *tok = (m2mhsm_token *)&cfg; /* must be reset to NULL */
    assert_int_equal(m2mhsm_token_open(&cfg, &tok), want);
    assert_null(tok);
    if (strstr(m2mhsm_last_error(), words) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", words, m2mhsm_last_error());
}

static void write_pin(const char *path, const char *pin)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(pin, f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0); /* else refused for its mode, not for the PIN */
}

static void test_wrong_pin_is_refused_with_the_ckr(void **state)
{
    (void)state;
    char path[600], src[610];
    snprintf(path, sizeof(path), "%s/../wrong.pin", token.dir);
    write_pin(path, "not-the-pin\n");
    snprintf(src, sizeof(src), "file:%s", path);
    expect_open_fails(NULL, token.uri, src, M2MHSM_E_PIN, "C_Login(CKU_USER): CKR_PIN_INCORRECT");
}

static void test_pin_source_problems_are_named(void **state)
{
    (void)state;
    expect_open_fails(NULL, token.uri, "file:/nonexistent/pin", M2MHSM_E_PIN, "cannot read");
    expect_open_fails(NULL, token.uri, "env:PIN", M2MHSM_E_PIN, "file:PATH");
    expect_open_fails(NULL, token.uri, NULL, M2MHSM_E_PIN, "no pin-source");
}

static void test_pin_source_may_come_from_the_uri(void **state)
{
    (void)state;
    char uri[800];
    snprintf(uri, sizeof(uri), "%s?pin-source=%s", token.uri, token.pin_source);
    m2mhsm_token_config cfg = {.token_uri = uri};
    m2mhsm_token *tok = NULL;
    if (m2mhsm_token_open(&cfg, &tok) != M2MHSM_OK)
        fail_msg("%s", m2mhsm_last_error());
    assert_true(m2mhsm_token_caps_get(tok)->sha256_hmac);
    m2mhsm_token_close(tok);
}

static void test_wrong_token_uri_is_refused(void **state)
{
    (void)state;
    expect_open_fails(NULL, "pkcs11:token=no-such-token", token.pin_source, M2MHSM_E_TOKEN,
                      "no initialised token matches");
    expect_open_fails(NULL, "http://example.com", token.pin_source, M2MHSM_E_TOKEN, "token URI");
    /* Two tokens match a bare URI: picking one would be a guess. opencryptoki's token store
     * is global: it lists every lab's tokens, this suite's two among them. */
    expect_open_fails(NULL, "pkcs11:", token.pin_source, M2MHSM_E_TOKEN, " tokens match pkcs11:");
    long n = strtol(m2mhsm_last_error(), NULL, 10);
    if (strcmp(fixture_kind(), "opencryptoki") == 0)
        assert_true(n >= 2);
    else
        assert_int_equal(n, 2);
    expect_open_fails(NULL, "", token.pin_source, M2MHSM_E_INVALID_ARG, "token URI");
}

static void test_pin_value_in_the_uri_is_refused_and_not_echoed(void **state)
{
    (void)state;
    char uri[200];
    snprintf(uri, sizeof(uri), "%s?pin-value=hunter2-secret", token.uri);
    expect_open_fails(NULL, uri, token.pin_source, M2MHSM_E_PIN, "pin-value");
    assert_null(strstr(m2mhsm_last_error(), "hunter2"));
}

static void test_missing_module_is_refused(void **state)
{
    (void)state;
    expect_open_fails("/nonexistent/libpkcs11.so", token.uri, token.pin_source, M2MHSM_E_MODULE,
                      "/nonexistent/libpkcs11.so");
    expect_open_fails("/etc/hostname", token.uri, token.pin_source, M2MHSM_E_MODULE,
                      "p11_kit_module_load");
}

/* ---- repair at open ---- */

static CK_OBJECT_HANDLE create_raw_key_id(fixture_store *fs, const char *label, const uint8_t *id,
                                          size_t id_len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &t, sizeof(t)},     {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)}, {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)id, id_len},   {CKA_VALUE, (void *)fixture_key32, 32},
    };
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    assert_int_equal(m2mhsm_token_session_get(fs->tok, &s), M2MHSM_OK);
    assert_int_equal(m2mhsm_token_functions(fs->tok)->C_CreateObject(s, tmpl, 8, &h), CKR_OK);
    m2mhsm_token_session_put(fs->tok, s);
    return h;
}

static CK_OBJECT_HANDLE create_raw_key(fixture_store *fs, const char *label, const uint8_t id[16])
{
    return create_raw_key_id(fs, label, id, 16);
}

static int object_exists(fixture_store *fs, CK_OBJECT_HANDLE h)
{
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
    CK_SESSION_HANDLE s;
    assert_int_equal(m2mhsm_token_session_get(fs->tok, &s), M2MHSM_OK);
    CK_RV rv = m2mhsm_token_functions(fs->tok)->C_GetAttributeValue(s, h, &a, 1);
    m2mhsm_token_session_put(fs->tok, s);
    return rv == CKR_OK;
}

/* Handles do not survive a module re-initialisation: look objects up by label. */
static size_t labelled(fixture_store *fs, const char *label)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s;
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(fs->tok);
    assert_int_equal(m2mhsm_token_session_get(fs->tok, &s), M2MHSM_OK);
    assert_int_equal(fn->C_FindObjectsInit(s, &t, 1), CKR_OK);
    assert_int_equal(fn->C_FindObjects(s, h, 8, &n), CKR_OK);
    assert_int_equal(fn->C_FindObjectsFinal(s), CKR_OK);
    m2mhsm_token_session_put(fs->tok, s);
    return n;
}

static void test_open_removes_orphans_and_keeps_foreign_keys(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    uint8_t id[16] = {0xee};
    /* A key of ours without metadata (a crash between the two deletes of an erase). */
    create_raw_key(&fs, "m2mhsm:km:" EEEE_KE_ID ":tls12-pms", id);
    /* Someone else's key on the same token: never ours to touch. */
    create_raw_key(&fs, "operator-hmac-key", id);
    /* A record whose keys never got written (a crash mid-import). */
    m2mhsm_record kpm;
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs.ks, "torn-kpm", fixture_key32, 32, M2MHSM_NEVER, &kpm),
        M2MHSM_OK);
    CK_SESSION_HANDLE s;
    assert_int_equal(m2mhsm_token_session_get(fs.tok, &s), M2MHSM_OK);
    assert_int_equal(m2mhsm_token_functions(fs.tok)->C_DestroyObject(s, ks_obj(&kpm)->key[2]),
                     CKR_OK);
    m2mhsm_token_session_put(fs.tok, s);
    fixture_store_close(&fs);

    /* Within the grace period a torn record may be another process mid-write: kept. */
    m2mhsm_open_report rep;
    fs.now += 30;
    fixture_store_open(&fs, &token);
    m2mhsm_keystore_close(fs.ks);
    m2mhsm_keystore_options o = {.clock = fixture_clock, .clock_arg = &fs.now};
    assert_int_equal(m2mhsm_keystore_open(fs.tok, &o, &fs.ks, &rep), M2MHSM_OK);
    assert_int_equal(rep.orphan_keys, 0); /* the first open already removed it */
    assert_int_equal(rep.incomplete, 0);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:torn-kpm"), 1);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" EEEE_KE_ID ":tls12-pms"), 0);
    m2mhsm_keystore_close(fs.ks);

    fs.now += 60;
    assert_int_equal(m2mhsm_keystore_open(fs.tok, &o, &fs.ks, &rep), M2MHSM_OK);
    assert_int_equal(rep.incomplete, 1);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:torn-kpm"), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:torn-kpm:raw"), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:torn-kpm:tls12-pms"), 0);
    assert_int_equal(labelled(&fs, "operator-hmac-key"), 1);
    m2mhsm_record r;
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "torn-kpm", 8, &r),
                     M2MHSM_E_NOT_FOUND);
    fixture_store_close(&fs);
}

static void test_first_open_reports_the_orphan_key(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &other);
    uint8_t id[16] = {0xdd};
    CK_OBJECT_HANDLE orphan =
        create_raw_key(&fs, "m2mhsm:ke:DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD@mef.example.com:raw", id);
    m2mhsm_open_report rep;
    m2mhsm_keystore_close(fs.ks);
    m2mhsm_keystore_options o = {.clock = fixture_clock, .clock_arg = &fs.now};
    assert_int_equal(m2mhsm_keystore_open(fs.tok, &o, &fs.ks, &rep), M2MHSM_OK);
    assert_int_equal(rep.orphan_keys, 1);
    assert_false(object_exists(&fs, orphan));
    fixture_store_close(&fs);
}

static void create_meta_text(fixture_store *fs, const char *label, const char *text)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_APPLICATION, "m2mhsm", 6},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)text, strlen(text)},
    };
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    assert_int_equal(m2mhsm_token_session_get(fs->tok, &s), M2MHSM_OK);
    assert_int_equal(m2mhsm_token_functions(fs->tok)->C_CreateObject(s, tmpl, 6, &h), CKR_OK);
    m2mhsm_token_session_put(fs->tok, s);
}

static m2mhsm_open_report reopen(fixture_store *fs)
{
    m2mhsm_open_report rep;
    m2mhsm_keystore_close(fs->ks);
    m2mhsm_keystore_options o = {.clock = fixture_clock, .clock_arg = &fs->now};
    assert_int_equal(m2mhsm_keystore_open(fs->tok, &o, &fs->ks, &rep), M2MHSM_OK);
    return rep;
}

/* Metadata written by a newer version (or damaged) is reported, and its keys are kept:
 * a reader that cannot understand a record must not destroy its Kpm. */
static void test_keys_of_unreadable_metadata_are_kept(void **state)
{
    (void)state;
    fixture_store fs = {0};
    fixture_store_open(&fs, &other);
    uint8_t id[16];
    memset(id, 0xc1, sizeof(id));
    create_meta_text(&fs, "m2mhsm:kpm:future-kpm",
                     "m2mhsm-meta 2\nkind=kpm\nrecord_id=c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1\n"
                     "newfield=x\n");
    create_raw_key_id(&fs, "m2mhsm:kpm:future-kpm:raw", id, 16);
    create_raw_key_id(&fs, "m2mhsm:kpm:future-kpm:tls12-pms", id, 16);
    /* A foreign key that merely looks like ours (an 8-byte CKA_ID) is not ours. */
    create_raw_key_id(&fs, "m2mhsm:kpm:lookalike:raw", id, 8);
    m2mhsm_open_report rep = reopen(&fs);
    assert_int_equal(rep.corrupt, 1);
    assert_int_equal(rep.kept_keys, 2);
    assert_int_equal(rep.orphan_keys, 0);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:future-kpm:raw"), 1);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:future-kpm:tls12-pms"), 1);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:lookalike:raw"), 1);
    /* Metadata too damaged to name its record: then no key at all is called an orphan. */
    uint8_t lone[16];
    memset(lone, 0xc2, sizeof(lone));
    create_meta_text(&fs, "m2mhsm:kpm:mangled", "m2mhsm-meta 1\nkind=kp");
    create_raw_key_id(&fs, "m2mhsm:kpm:orphan-kpm:raw", lone, 16);
    rep = reopen(&fs);
    assert_int_equal(rep.corrupt, 2);
    assert_int_equal(rep.orphan_keys, 0);
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:orphan-kpm:raw"), 1);
    fixture_store_close(&fs);
}

/* Every object the session sees (all of them, logged in). */
static size_t object_count(fixture_store *fs)
{
    CK_OBJECT_HANDLE h[256];
    CK_ULONG n = 0, total = 0;
    CK_SESSION_HANDLE s;
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(fs->tok);
    assert_int_equal(m2mhsm_token_session_get(fs->tok, &s), M2MHSM_OK);
    assert_int_equal(fn->C_FindObjectsInit(s, NULL, 0), CKR_OK);
    do {
        assert_int_equal(fn->C_FindObjects(s, h, 256, &n), CKR_OK);
        total += n;
    } while (n > 0);
    assert_int_equal(fn->C_FindObjectsFinal(s), CKR_OK);
    m2mhsm_token_session_put(fs->tok, s);
    return total;
}

/* `m2mhsm list` opens read-only: a torn record (and an orphan key) long past the grace
 * period is reported, listed as nothing, and left exactly where it is; every write is
 * refused; the explicit repair (a writer's open) removes it. */
static void test_read_only_open_reports_and_never_repairs(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "open-ro");
    fixture_store fs = {0};
    fixture_store_open(&fs, &t);
    m2mhsm_record kpm, keep;
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs.ks, "torn-kpm", fixture_key32, 32, M2MHSM_NEVER, &kpm),
        M2MHSM_OK);
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs.ks, "whole-kpm", fixture_key32, 32, M2MHSM_NEVER, &keep),
        M2MHSM_OK);
    CK_SESSION_HANDLE s;
    assert_int_equal(m2mhsm_token_session_get(fs.tok, &s), M2MHSM_OK);
    assert_int_equal(m2mhsm_token_functions(fs.tok)->C_DestroyObject(s, ks_obj(&kpm)->key[1]),
                     CKR_OK);
    m2mhsm_token_session_put(fs.tok, s);
    uint8_t id[16];
    memset(id, 0xab, sizeof(id));
    create_raw_key(&fs, "m2mhsm:km:" EEEE_KE_ID ":raw", id);
    fs.now += 3600; /* long past the grace: a writer's open would remove both */
    size_t before = object_count(&fs);

    m2mhsm_keystore_close(fs.ks);
    m2mhsm_open_report rep;
    m2mhsm_keystore_options ro = {.clock = fixture_clock, .clock_arg = &fs.now, .read_only = 1};
    assert_int_equal(m2mhsm_keystore_open(fs.tok, &ro, &fs.ks, &rep), M2MHSM_OK);
    assert_int_equal(rep.incomplete, 1);
    assert_int_equal(rep.orphan_keys, 1);
    assert_int_equal(rep.records, 1);
    m2mhsm_record *recs = NULL;
    size_t n = 0;
    assert_int_equal(m2mhsm_keystore_list(fs.ks, &recs, &n), M2MHSM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(recs[0].identity, "whole-kpm");
    free(recs);
    size_t erased = 99;
    assert_int_equal(m2mhsm_keystore_sweep(fs.ks, &erased), M2MHSM_E_INVALID_ARG);
    assert_int_equal(erased, 0);
    assert_int_equal(m2mhsm_keystore_erase_id(fs.ks, "whole-kpm", NULL), M2MHSM_E_INVALID_ARG);
    assert_int_equal(
        m2mhsm_keystore_import_kpm(fs.ks, "new-kpm", fixture_key32, 32, M2MHSM_NEVER, NULL),
        M2MHSM_E_INVALID_ARG);
    assert_int_equal(object_count(&fs), before);
    m2mhsm_keystore_close(fs.ks);
    fs.ks = NULL;
    assert_int_equal(object_count(&fs), before);

    /* The explicit repair: a writer's open. */
    rep = reopen(&fs);
    assert_int_equal(rep.incomplete, 1);
    assert_int_equal(rep.orphan_keys, 1);
    assert_int_equal(object_count(&fs), before - 4); /* its metadata, its 2 keys, the orphan */
    assert_int_equal(labelled(&fs, "m2mhsm:kpm:torn-kpm"), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" EEEE_KE_ID ":raw"), 0);
    m2mhsm_record r;
    assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, "whole-kpm", 9, &r), M2MHSM_OK);
    fixture_store_close(&fs);
}

/* Another process writing records while this one opens the store again and again: open's
 * repair must never take a record that is being written for an orphan. The writer also
 * puts well over 128 keys on the token, past one C_FindObjects batch. */
#define RACE_RECORDS 50

static void test_repair_never_destroys_a_record_being_written(void **state)
{
    (void)state;
    fixture_token race;
    fixture_token_make(&race, "open-race");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fixture_store w = {0};
        fixture_store_open(&w, &race);
        int bad = 0;
        for (int i = 0; i < RACE_RECORDS; i++) {
            char id[32];
            snprintf(id, sizeof(id), "race-%03d", i);
            bad |= m2mhsm_keystore_import_kpm(w.ks, id, fixture_key32, 32, M2MHSM_NEVER, NULL) !=
                   M2MHSM_OK;
        }
        fixture_store_close(&w);
        _exit(bad);
    }
    fixture_store fs = {0};
    fixture_store_open(&fs, &race);
    int status = 0, opens = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        m2mhsm_open_report rep = reopen(&fs);
        assert_int_equal(rep.orphan_keys, 0);
        assert_int_equal(rep.incomplete, 0);
        opens++;
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(opens > 1);
    /* Long after: every record the writer reported written is complete and usable. */
    fs.now += 3600;
    m2mhsm_open_report rep = reopen(&fs);
    assert_int_equal(rep.records, RACE_RECORDS);
    for (int i = 0; i < RACE_RECORDS; i++) {
        char id[32];
        m2mhsm_record r;
        snprintf(id, sizeof(id), "race-%03d", i);
        assert_int_equal(m2mhsm_keystore_lookup(fs.ks, M2MHSM_KIND_KPM, id, strlen(id), &r),
                         M2MHSM_OK);
    }
    fixture_store_close(&fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_pin_is_refused_with_the_ckr),
        cmocka_unit_test(test_pin_source_problems_are_named),
        cmocka_unit_test(test_pin_source_may_come_from_the_uri),
        cmocka_unit_test(test_wrong_token_uri_is_refused),
        cmocka_unit_test(test_missing_module_is_refused),
        cmocka_unit_test(test_pin_value_in_the_uri_is_refused_and_not_echoed),
        cmocka_unit_test(test_open_removes_orphans_and_keeps_foreign_keys),
        cmocka_unit_test(test_first_open_reports_the_orphan_key),
        cmocka_unit_test(test_keys_of_unreadable_metadata_are_kept),
        cmocka_unit_test(test_read_only_open_reports_and_never_repairs),
        cmocka_unit_test(test_repair_never_destroys_a_record_being_written),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
