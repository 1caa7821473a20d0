/* Crash consistency of replacement: re-enrolment writes the new Ke, then erases the old one,
 * and so does a Km, Kpsa or configuration replaced under its identity. A process killed
 * between the two steps is made here by a child that runs the first step (ks_ke_write, or
 * ks_replace_begin and the write) and _exit()s. Whatever the token then holds, only the
 * newest Ke of a KpmID, and the newest record of an identity, may be looked up, listed,
 * derived from or erased last. */
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
#include "keystore/write.h"

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

/* Metadata objects of a record, by the label the token's layout gives them: "m2mhsm:KIND:ID"
 * (a private CKO_DATA object), or "m2mhsm-meta:KIND:ID" where the token refuses those
 * (softokn: a secret key holding the text; src/keystore/metaobj.c). */
static size_t meta_labelled(fixture_store *fs, const char *kind_id)
{
    char label[256];
    snprintf(
        label, sizeof(label), "%s%s",
        m2mhsm_token_caps_get(fs->tok)->private_data_objects ? "m2mhsm:" : "m2mhsm-meta:", kind_id);
    return labelled(fs, label);
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
    assert_int_equal(meta_labelled(&fs, "ke:" KE_11), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11 ":raw"), 0);
    assert_int_equal(meta_labelled(&fs, "km:" KE_11), 0);
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
    assert_int_equal(meta_labelled(&fs, "ke:" KE_11), 0);
    assert_int_equal(meta_labelled(&fs, "km:" KE_11), 0);
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
    assert_int_equal(meta_labelled(&fs, "ke:" KE_11), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_11 ":raw"), 0);
    assert_int_equal(meta_labelled(&fs, "km:" KE_11), 0);
    assert_int_equal(meta_labelled(&fs, "ke:" KE_22), 0);
    assert_int_equal(labelled(&fs, "m2mhsm:ke:" KE_22 ":raw"), 0);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KE, KE_33, &r), M2MHSM_OK);
    m2mhsm_open_report rep;
    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 0);
    assert_int_equal(rep.records, 1);
    fixture_store_close(&fs);
}

/* ---- a record replaced under its identity ---- */

/* Runs fn in a child process with a store of its own, which exits with fn's result. */
static void in_child(const fixture_token *t, int (*fn)(fixture_store *fs, m2mhsm_time arg),
                     m2mhsm_time arg)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fixture_store fs = {0};
        fixture_store_open(&fs, t);
        _exit(fn(&fs, arg));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* m2mhsm_keystore_derive_store of the Km of KE_11, valid until `until`, completed. */
static int derive_km(fixture_store *fs, m2mhsm_time until)
{
    m2mhsm_record ke, km;
    if (lookup(fs, M2MHSM_KIND_KE, KE_11, &ke) != M2MHSM_OK)
        return 2;
    return m2mhsm_keystore_derive_store(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, until, &km) == M2MHSM_OK
               ? 0
               : 3;
}

/* The same killed between writing the new Km and erasing the one it replaces: what
 * derive_store runs before ks_replace_end. */
static int derive_km_and_crash(fixture_store *fs, m2mhsm_time until)
{
    m2mhsm_record ke, km = {.kind = M2MHSM_KIND_KM};
    uint8_t key[M2MHSM_KEY_LEN];
    if (lookup(fs, M2MHSM_KIND_KE, KE_11, &ke) != M2MHSM_OK ||
        m2mhsm_keystore_derive(fs->ks, &ke, M2MHSM_DERIVE_KM, MAF, key) != M2MHSM_OK)
        return 2;
    strcpy(km.identity, KE_11);
    strcpy(km.ke_id, KE_11);
    strcpy(km.kpm_id, KPM);
    strcpy(km.enrolee_id, ENROLEE);
    strcpy(km.target_id, MAF);
    km.created = m2mhsm_keystore_now(fs->ks);
    km.expiry = until;
    ks_known known;
    int ok = ks_replace_begin(fs->ks, &km, &known) == M2MHSM_OK &&
             ks_write_psk(fs->ks, &km, key, sizeof(key)) == M2MHSM_OK;
    memset(key, 0, sizeof(key));
    return ok ? 0 : 3;
}

/* m2mhsm_keystore_configure_enrolee of KPM with Enrolment Target `maf2.example.com`, killed
 * between writing the new configuration and erasing the one it replaces. */
static int configure_and_crash(fixture_store *fs, m2mhsm_time seconds)
{
    m2mhsm_record rec = {.kind = M2MHSM_KIND_ENROLMENT, .expiry = M2MHSM_NEVER};
    strcpy(rec.identity, KPM);
    strcpy(rec.kpm_id, KPM);
    strcpy(rec.enrolee_id, ENROLEE);
    strcpy(rec.target_id, "maf2.example.com");
    rec.enrolment_expiry = (m2mhsm_expiry_spec){M2MHSM_EXPIRY_DURATION, seconds};
    rec.created = m2mhsm_keystore_now(fs->ks);
    ks_known known;
    ks_key_spec none[M2MHSM_FORM_COUNT] = {{0}};
    return ks_replace_begin(fs->ks, &rec, &known) == M2MHSM_OK &&
                   ks_record_write(fs->ks, &rec, none) == M2MHSM_OK
               ? 0
               : 3;
}

/* How many records of (kind, identity) a listing shows; *shown = the last of them. */
static size_t listed_count(fixture_store *fs, m2mhsm_kind kind, const char *identity,
                           m2mhsm_record *shown)
{
    m2mhsm_record *recs = NULL;
    size_t n = 0, count = 0;
    assert_int_equal(m2mhsm_keystore_list(fs->ks, &recs, &n), M2MHSM_OK);
    for (size_t i = 0; i < n; i++)
        if (recs[i].kind == kind && strcmp(recs[i].identity, identity) == 0) {
            *shown = recs[i];
            count++;
        }
    free(recs);
    return count;
}

#define T0 1795000000 /* the fixture's clock */

/* A Km replaced (m2mhsm derive km, or a MAF storing a fetched Km again) by a process killed
 * between writing the new Km and erasing the old one: both are whole on the token, but a
 * read-only store finds and lists only the newer and writes nothing; the next writer's
 * open erases the older. */
static void test_older_km_is_hidden_after_a_crash_and_erased_by_open(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "twin-open");
    fixture_store fs = {0};
    fixture_store_open(&fs, &t);
    enrol(&fs, 0x11);
    m2mhsm_record old_km, r;
    assert_int_equal(derive_km(&fs, T0 + 1000), 0);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &old_km), M2MHSM_OK);
    fixture_store_close(&fs);
    in_child(&t, derive_km_and_crash, T0 + 2000);

    open_token(&fs, &t);
    m2mhsm_open_report rep;
    open_with(&fs, 1, &rep);
    size_t before = object_count(&fs);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" KE_11 ":tls12-pms"), 2);
    assert_int_equal(rep.superseded, 1); /* found, not erased */
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &r), M2MHSM_OK);
    assert_int_equal(r.expiry, T0 + 2000);
    assert_true(r.seq > old_km.seq);
    assert_memory_not_equal(r.record_id, old_km.record_id, M2MHSM_RECORD_ID_LEN);
    assert_true(m2mhsm_record_superseded(fs.ks, &old_km));
    assert_false(m2mhsm_record_superseded(fs.ks, &r));
    assert_int_equal(listed_count(&fs, M2MHSM_KIND_KM, KE_11, &r), 1);
    assert_int_equal(r.expiry, T0 + 2000);
    assert_int_equal(object_count(&fs), before);

    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 1);
    assert_int_equal(object_count(&fs), before - 4); /* the old Km: meta + 3 forms */
    assert_int_equal(meta_labelled(&fs, "km:" KE_11), 1);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" KE_11 ":tls12-pms"), 1);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &r), M2MHSM_OK);
    assert_int_equal(r.expiry, T0 + 2000);
    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 0);
    fixture_store_close(&fs);
}

/* A running process whose store held the old Km: its sweep erases the older twin that
 * another process's crash left, and from then on it finds the newer one. */
static void test_sweep_erases_an_older_km_left_by_another_process(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "twin-sweep");
    fixture_store fs = {0};
    fixture_store_open(&fs, &t);
    enrol(&fs, 0x11);
    assert_int_equal(derive_km(&fs, T0 + 1000), 0);
    in_child(&t, derive_km_and_crash, T0 + 2000);
    m2mhsm_record r;
    assert_int_equal(listed_count(&fs, M2MHSM_KIND_KM, KE_11, &r), 1);
    assert_int_equal(r.expiry, T0 + 2000);
    size_t erased = 0;
    assert_int_equal(m2mhsm_keystore_sweep(fs.ks, &erased), M2MHSM_OK);
    assert_int_equal(erased, 1);
    assert_int_equal(meta_labelled(&fs, "km:" KE_11), 1);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &r), M2MHSM_OK);
    assert_int_equal(r.expiry, T0 + 2000);
    assert_int_equal(m2mhsm_keystore_sweep(fs.ks, &erased), M2MHSM_OK);
    assert_int_equal(erased, 0);
    fixture_store_close(&fs);
}

/* A process that learns of both Km by a search (it had none when another process wrote the
 * first, and a third crashed replacing it) serves the newer, and its own next replacement
 * erases both. */
static void test_next_replacement_erases_both_km_it_knows(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "twin-replace");
    fixture_store fs = {0};
    fixture_store_open(&fs, &t);
    enrol(&fs, 0x11);
    in_child(&t, derive_km, T0 + 1000);
    in_child(&t, derive_km_and_crash, T0 + 2000);
    m2mhsm_record r;
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &r), M2MHSM_OK);
    assert_int_equal(r.expiry, T0 + 2000);
    assert_int_equal(meta_labelled(&fs, "km:" KE_11), 2);
    assert_int_equal(derive_km(&fs, T0 + 3000), 0);
    assert_int_equal(meta_labelled(&fs, "km:" KE_11), 1);
    assert_int_equal(labelled(&fs, "m2mhsm:km:" KE_11 ":tls12-pms"), 1);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_KM, KE_11, &r), M2MHSM_OK);
    assert_int_equal(r.expiry, T0 + 3000);
    m2mhsm_open_report rep;
    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 0);
    assert_int_equal(rep.records, 2); /* Ke and Km */
    fixture_store_close(&fs);
}

/* The MEF's configuration of a KpmID replaced by a process killed between the two steps:
 * the newer configuration alone is found and listed, and the next writer's open erases the
 * older one. */
static void test_older_configuration_is_hidden_after_a_crash(void **state)
{
    (void)state;
    fixture_token t;
    fixture_token_make(&t, "twin-config");
    fixture_store fs = {0};
    fixture_store_open(&fs, &t);
    m2mhsm_expiry_spec hour = {M2MHSM_EXPIRY_DURATION, 3600};
    assert_int_equal(m2mhsm_keystore_configure_enrolee(fs.ks, KPM, MAF, ENROLEE, &hour), M2MHSM_OK);
    fixture_store_close(&fs);
    in_child(&t, configure_and_crash, 7200);

    open_token(&fs, &t);
    m2mhsm_open_report rep;
    open_with(&fs, 1, &rep);
    assert_int_equal(rep.superseded, 1);
    assert_int_equal(meta_labelled(&fs, "enrolment:" KPM), 2);
    m2mhsm_record r;
    assert_int_equal(lookup(&fs, M2MHSM_KIND_ENROLMENT, KPM, &r), M2MHSM_OK);
    assert_string_equal(r.target_id, "maf2.example.com");
    assert_int_equal(listed_count(&fs, M2MHSM_KIND_ENROLMENT, KPM, &r), 1);
    assert_string_equal(r.target_id, "maf2.example.com");
    assert_int_equal(r.enrolment_expiry.value, 7200);

    open_with(&fs, 0, &rep);
    assert_int_equal(rep.superseded, 1);
    assert_int_equal(meta_labelled(&fs, "enrolment:" KPM), 1);
    assert_int_equal(lookup(&fs, M2MHSM_KIND_ENROLMENT, KPM, &r), M2MHSM_OK);
    assert_string_equal(r.target_id, "maf2.example.com");
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
        cmocka_unit_test(test_older_km_is_hidden_after_a_crash_and_erased_by_open),
        cmocka_unit_test(test_sweep_erases_an_older_km_left_by_another_process),
        cmocka_unit_test(test_next_replacement_erases_both_km_it_knows),
        cmocka_unit_test(test_older_configuration_is_hidden_after_a_crash),
        cmocka_unit_test(test_records_without_seq_are_ordered_by_creation),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
