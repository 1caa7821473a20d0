/* Crash consistency of enrolment: re-enrolment writes the new Ke, then erases the old one.
 * A process killed between the two steps is made here by a child that runs the first step
 * (ks_ke_write, what m2mhsm_keystore_store_ke runs first) and _exit()s. Whatever the token
 * then holds, only the newest Ke of a KpmID may be looked up, derived from or erased last. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "keystore/ks.h"

#define KPM "crash-kpm"
#define ENROLEE "//sp.example.com/cse1/Ccrash"
#define MAF "maf.example.com"
#define KE_11 "11111111111111111111111111111111@mef.example.com"
#define KE_22 "22222222222222222222222222222222@mef.example.com"
#define KE_33 "33333333333333333333333333333333@mef.example.com"

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("crash");
    return 0;
}

/* The export of an enrolment whose RelativeKeID is `tag` x16; Ke differs per tag. */
static void export_of(uint8_t tag, uint8_t exported[M2MHSM_EXPORT_LEN])
{
    memset(exported, tag, 16);
    for (int i = 0; i < 32; i++)
        exported[16 + i] = (uint8_t)(tag ^ i);
}

static m2mhsm_enrolment enrolment(void)
{
    return (m2mhsm_enrolment){KPM, "mef.example.com", ENROLEE, MAF, {M2MHSM_EXPIRY_DURATION, 3600}};
}

static m2mhsm_record enrol(fixture_store *fs, uint8_t tag)
{
    uint8_t exported[M2MHSM_EXPORT_LEN];
    export_of(tag, exported);
    m2mhsm_enrolment e = enrolment();
    m2mhsm_record ke;
    if (m2mhsm_keystore_store_ke(fs->ks, &e, exported, &ke) != M2MHSM_OK)
        fail_msg("store_ke: %s", m2mhsm_last_error());
    return ke;
}

/* A process that re-enrols the KpmID with `tag` and is killed between writing the new Ke
 * and erasing the old one. With `first`, it first enrols with that tag and derives and
 * stores Km from it (an Enrolee's token), all completed. */
static void crashing_reenrolment(const fixture_token *t, uint8_t first, uint8_t tag)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fixture_store fs = {0};
        fixture_store_open(&fs, t);
        if (first != 0) {
            m2mhsm_record ke = enrol(&fs, first), km;
            if (m2mhsm_keystore_derive_store(fs.ks, &ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER,
                                             &km) != M2MHSM_OK)
                _exit(2);
        }
        uint8_t exported[M2MHSM_EXPORT_LEN];
        export_of(tag, exported);
        m2mhsm_enrolment e = enrolment();
        m2mhsm_record ke;
        ks_replaced old;
        _exit(ks_ke_write(fs.ks, &e, exported, &ke, &old) == M2MHSM_OK ? 0 : 3);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

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

static m2mhsm_status lookup(fixture_store *fs, m2mhsm_kind kind, const char *id, m2mhsm_record *r)
{
    return m2mhsm_keystore_lookup(fs->ks, kind, id, strlen(id), r);
}

/* The Ke records of the token as a listing shows them, by identity. */
static m2mhsm_record listed(fixture_store *fs, m2mhsm_kind kind, const char *identity)
{
    m2mhsm_record *recs = NULL, found = {0};
    size_t n = 0;
    assert_int_equal(m2mhsm_keystore_list(fs->ks, &recs, &n), M2MHSM_OK);
    for (size_t i = 0; i < n; i++)
        if (recs[i].kind == kind && strcmp(recs[i].identity, identity) == 0)
            found = recs[i];
    free(recs);
    if (found.kind != kind)
        fail_msg("%s not listed", identity);
    return found;
}

static void open_with(fixture_store *fs, int read_only, m2mhsm_open_report *rep)
{
    m2mhsm_keystore_close(fs->ks);
    m2mhsm_keystore_options o = {
        .clock = fixture_clock, .clock_arg = &fs->now, .read_only = read_only};
    assert_int_equal(m2mhsm_keystore_open(fs->tok, &o, &fs->ks, rep), M2MHSM_OK);
}

/* The token alone: the store is opened by open_with, so that the first open may be a
 * read-only one. */
static void open_token(fixture_store *fs, const fixture_token *t)
{
    m2mhsm_token_config cfg = {
        .token_uri = t->uri, .pin_source = t->pin_source, .lock_file = t->lock_file};
    fs->now = 1795000000;
    assert_int_equal(m2mhsm_token_open(&cfg, &fs->tok), M2MHSM_OK);
}

/* The MEF killed after writing the new Ke and before erasing the old one, then started
 * again: the old Ke (and the Km derived from it) is refused by lookup and derive even by a
 * read-only reader, which changes nothing; the first writer's open erases both. */
static void test_old_ke_is_refused_after_a_crash_and_erased_by_open(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "crash-open");
    crashing_reenrolment(&t, 0x11, 0x22);

    fixture_store fs = {0};
    open_token(&fs, &t);
    m2mhsm_open_report rep;
    open_with(&fs, 1, &rep);
    size_t before = object_count(&fs);
    assert_int_equal(rep.superseded, 2); /* the old Ke and its Km, found, not erased */
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11 ":raw"), 1);
    m2mhsm_record r, old_ke = listed(&fs, M2MHSM_KIND_KE, KE_11);
    assert_true(m2mhsm_record_valid(fs.ks, &old_ke)); /* not expired: only newer */
    assert_true(m2mhsm_record_superseded(fs.ks, &old_ke));
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_11, &r), M2MHSM_E_NOT_FOUND);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &r), M2MHSM_E_NOT_FOUND);
    uint8_t km[M2MHSM_KEY_LEN];
    assert_int_equal(m2mhsm_keystore_derive(fs.ks, &old_ke, M2MHSM_DERIVE_KM, MAF, km),
                     M2MHSM_E_NOT_FOUND);
    m2mhsm_record stored;
    assert_int_equal(
        m2mhsm_keystore_derive_store(fs.ks, &old_ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &stored),
        M2MHSM_E_NOT_FOUND);
    m2mhsm_record new_ke;
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_22, &new_ke), M2MHSM_OK);
    assert_false(m2mhsm_record_superseded(fs.ks, &new_ke));
    assert_true(new_ke.seq > old_ke.seq);
    assert_int_equal(m2mhsm_keystore_derive(fs.ks, &new_ke, M2MHSM_DERIVE_KM, MAF, km), M2MHSM_OK);
    assert_int_equal(object_count(&fs), before);

    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 2);
    assert_int_equal(object_count(&fs), before - 6); /* Ke: meta + raw; Km: meta + 3 forms */
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11 ":raw"), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" KE_11), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" KE_11 ":tls12-pms"), 0);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_22, &new_ke), M2MHSM_OK);
    assert_int_equal(m2mhsm_keystore_derive(fs.ks, &new_ke, M2MHSM_DERIVE_KM, MAF, km), M2MHSM_OK);
    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 0);
    fixture_store_close(&fs);
}

/* A process that was already running when another one crashed mid re-enrolment: once it
 * has seen the new Ke it refuses the old one, and its sweep erases the old one (a service
 * sweeps every sweep_interval). */
static void test_sweep_erases_a_ke_superseded_by_another_process(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "crash-sweep");
    fixture_store fs = {0};
    fixture_store_open(&fs, &t);
    m2mhsm_record old_ke = enrol(&fs, 0x11), km, r;
    assert_int_equal(
        m2mhsm_keystore_derive_store(fs.ks, &old_ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &km),
        M2MHSM_OK);
    crashing_reenrolment(&t, 0, 0x22);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_22, &r), M2MHSM_OK);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_11, &r), M2MHSM_E_NOT_FOUND);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &r), M2MHSM_E_NOT_FOUND);
    uint8_t out[M2MHSM_KEY_LEN];
    assert_int_equal(m2mhsm_keystore_derive(fs.ks, &old_ke, M2MHSM_DERIVE_KM, MAF, out),
                     M2MHSM_E_NOT_FOUND);
    size_t erased = 0;
    assert_int_equal(m2mhsm_keystore_sweep(fs.ks, &erased), M2MHSM_OK);
    assert_int_equal(erased, 2);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" KE_11), 0);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_22, &r), M2MHSM_OK);
    assert_int_equal(m2mhsm_keystore_sweep(fs.ks, &erased), M2MHSM_OK);
    assert_int_equal(erased, 0);
    fixture_store_close(&fs);
}

/* The same process re-enrols the KpmID next: the new enrolment erases the Ke it
 * replaces and the one left behind by the crash, with what derives from them. */
static void test_reenrolment_erases_every_ke_it_knows_superseded(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "crash-reenrol");
    fixture_store fs = {0};
    fixture_store_open(&fs, &t);
    m2mhsm_record old_ke = enrol(&fs, 0x11), km, r;
    assert_int_equal(
        m2mhsm_keystore_derive_store(fs.ks, &old_ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &km),
        M2MHSM_OK);
    crashing_reenrolment(&t, 0, 0x22);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_22, &r), M2MHSM_OK);
    m2mhsm_record newest = enrol(&fs, 0x33);
    assert_string_equal(newest.identity, KE_33);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11 ":raw"), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" KE_11), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_22), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_22 ":raw"), 0);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_33, &r), M2MHSM_OK);
    m2mhsm_open_report rep;
    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 0);
    assert_int_equal(rep.records, 1);
    fixture_store_close(&fs);
}

/* Records written before seq existed (read as 0) are ordered by created: the later one is
 * current, whichever was written last. */
static void test_records_without_seq_are_ordered_by_creation(void **state)
{
    (void)state;
    m2mhsm_record a = {.kind = M2MHSM_KIND_KE, .created = 100}, b = a;
    memset(a.record_id, 1, sizeof(a.record_id));
    memset(b.record_id, 2, sizeof(b.record_id));
    b.created = 101;
    assert_true(ks_record_newer(&b, &a));
    assert_false(ks_record_newer(&a, &b));
    a.seq = 1; /* seq decides before created */
    assert_true(ks_record_newer(&a, &b));
    b.seq = 1;
    b.created = a.created; /* a tie on both: the record id, the same in every process */
    assert_true(ks_record_newer(&b, &a) != ks_record_newer(&a, &b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_ke_is_refused_after_a_crash_and_erased_by_open),
        cmocka_unit_test(test_sweep_erases_a_ke_superseded_by_another_process),
        cmocka_unit_test(test_reenrolment_erases_every_ke_it_knows_superseded),
        cmocka_unit_test(test_records_without_seq_are_ordered_by_creation),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
