/* The metadata record and the key template, without a token. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "keystore/ks.h"

static m2mhsm_record sample(void)
{
    m2mhsm_record r = {0};
    r.kind = M2MHSM_KIND_KM;
    strcpy(r.identity, "00112233445566778899AABBCCDDEEFF@mef.example.com");
    strcpy(r.kpm_id, "device-1");
    strcpy(r.ke_id, r.identity);
    strcpy(r.enrolee_id, "//sp.example.com/cse1/Cdev1");
    strcpy(r.target_id, "maf.example.com");
    r.enrolment_expiry = (m2mhsm_expiry_spec){M2MHSM_EXPIRY_DURATION, 3600};
    r.created = 1795000000;
    r.expiry = 1795003600;
    for (int i = 0; i < M2MHSM_RECORD_ID_LEN; i++)
        r.record_id[i] = (uint8_t)(0x10 + i);
    return r;
}

static void test_metadata_round_trips(void **state)
{
    (void)state;
    m2mhsm_record r = sample(), back;
    char buf[M2MHSM_META_MAX];
    size_t len = 0;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_int_equal(back.kind, r.kind);
    assert_string_equal(back.identity, r.identity);
    assert_string_equal(back.kpm_id, r.kpm_id);
    assert_string_equal(back.ke_id, r.ke_id);
    assert_string_equal(back.enrolee_id, r.enrolee_id);
    assert_string_equal(back.target_id, r.target_id);
    assert_int_equal(back.enrolment_expiry.kind, M2MHSM_EXPIRY_DURATION);
    assert_int_equal(back.enrolment_expiry.value, 3600);
    assert_int_equal(back.created, r.created);
    assert_int_equal(back.expiry, r.expiry);
    assert_memory_equal(back.record_id, r.record_id, M2MHSM_RECORD_ID_LEN);
    assert_int_equal(ks_obj(&back)->key[M2MHSM_FORM_RAW], CK_INVALID_HANDLE);
}

/* seq orders the records of one identity and the Ke of one KpmID: written for every kind
 * a write may replace, read back; absent (a record from before it) it reads as 0. A Kpm,
 * which nothing replaces, has none (older versions read it), and with one is corrupt. */
static void seq_round_trips(m2mhsm_kind kind)
{
    m2mhsm_record r = sample(), back;
    r.kind = kind;
    if (kind == M2MHSM_KIND_KE)
        r.ke_id[0] = '\0';
    r.seq = 1795000000123ULL;
    char buf[M2MHSM_META_MAX];
    size_t len = 0;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_true(back.seq == r.seq);
    char *line = strstr(buf, "seq=1795000000123\n");
    assert_non_null(line);
    memmove(line, line + strlen("seq=1795000000123\n"), len - (size_t)(line - buf));
    assert_int_equal(ks_meta_decode(buf, strlen(buf), &back), M2MHSM_OK);
    assert_true(back.seq == 0);
}

static void test_seq_round_trips_and_is_optional(void **state)
{
    (void)state;
    seq_round_trips(M2MHSM_KIND_KE);
    seq_round_trips(M2MHSM_KIND_KM);
    m2mhsm_record kpm = sample(), back;
    kpm.kind = M2MHSM_KIND_KPM;
    strcpy(kpm.identity, kpm.kpm_id);
    kpm.ke_id[0] = '\0';
    kpm.seq = 7; /* not written for a Kpm */
    char buf[M2MHSM_META_MAX];
    size_t len = 0;
    assert_int_equal(ks_meta_encode(&kpm, buf, &len), M2MHSM_OK);
    assert_null(strstr(buf, "seq="));
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_true(back.seq == 0);
    strcat(buf, "seq=1\n");
    assert_int_equal(ks_meta_decode(buf, strlen(buf), &back), M2MHSM_E_CORRUPT);
}

/* derived_in_token: written only when true, read back; a record without the line (made by
 * C_Sign, or before the field existed) reads as 0; on a kind other than Km/Kpsa, or with
 * another value, the record is corrupt. */
static void test_derived_in_token_round_trips_and_defaults_to_false(void **state)
{
    (void)state;
    m2mhsm_record r = sample(), back;
    char buf[M2MHSM_META_MAX];
    size_t len = 0;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    assert_null(strstr(buf, "derived_in_token"));
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_int_equal(back.derived_in_token, 0);
    r.derived_in_token = 1;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    assert_non_null(strstr(buf, "derived_in_token=1\n"));
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_int_equal(back.derived_in_token, 1);
    r.kind = M2MHSM_KIND_KPSA;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_int_equal(back.derived_in_token, 1);
    r.kind = M2MHSM_KIND_KE;
    r.ke_id[0] = '\0';
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_E_CORRUPT);
    r = sample();
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    strcat(buf, "derived_in_token=yes\n");
    assert_int_equal(ks_meta_decode(buf, strlen(buf), &back), M2MHSM_E_CORRUPT);
}

static void expect_corrupt(const char *text)
{
    m2mhsm_record back;
    if (ks_meta_decode(text, strlen(text), &back) != M2MHSM_E_CORRUPT)
        fail_msg("accepted: %s", text);
}

static void test_tampered_metadata_is_refused(void **state)
{
    (void)state;
    m2mhsm_record r = sample();
    char buf[M2MHSM_META_MAX], t[M2MHSM_META_MAX + 64];
    size_t len = 0;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    buf[len] = '\0';
    expect_corrupt("");
    expect_corrupt("m2mhsm-meta 2\nkind=km\n");
    /* a field twice */
    snprintf(t, sizeof(t), "%skind=kpm\n", buf);
    expect_corrupt(t);
    /* an unknown field */
    snprintf(t, sizeof(t), "%sextra=1\n", buf);
    expect_corrupt(t);
    /* a field missing */
    char *p = strstr(buf, "expiry=1795003600\n");
    assert_non_null(p);
    memcpy(t, buf, (size_t)(p - buf));
    t[p - buf] = '\0';
    expect_corrupt(t);
    /* an expiry past what a timestamp can name, which strtoll would clamp to "never" */
    char *e = strstr(buf, "expiry=1795003600");
    assert_non_null(e);
    snprintf(t, sizeof(t), "%.*sexpiry=99999999999999999999\n", (int)(e - buf), buf);
    expect_corrupt(t);
    /* a credential that never expires */
    snprintf(t, sizeof(t), "%.*sexpiry=9223372036854775807\n", (int)(e - buf), buf);
    expect_corrupt(t);
    /* a field name meant for a terminal is not echoed */
    snprintf(t, sizeof(t), "%s\x1b[2J=1\n", buf);
    expect_corrupt(t);
    assert_null(strchr(m2mhsm_last_error(), '\x1b'));
    /* an identity that is not a KeID */
    char *id = strstr(buf, "identity=");
    memcpy(id + 9, "zz", 2);
    expect_corrupt(buf);
}

/* forms= is written only for a PSK record with fewer forms than all, read back, and absent
 * (every record from before it) reads as all; a set no handshake can use is corrupt. */
static void test_forms_round_trip_and_default_to_all(void **state)
{
    (void)state;
    m2mhsm_record r = sample(), back;
    char buf[M2MHSM_META_MAX], t[M2MHSM_META_MAX + 64];
    size_t len = 0;
    r.forms = M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    buf[len] = '\0';
    assert_non_null(strstr(buf, "\nforms=tls12-pms,tls13-es\n"));
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_int_equal(back.forms, r.forms);
    r.forms = M2MHSM_FORMS_ALL;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    buf[len] = '\0';
    assert_null(strstr(buf, "forms="));
    assert_int_equal(ks_meta_decode(buf, len, &back), M2MHSM_OK);
    assert_int_equal(back.forms, M2MHSM_FORMS_ALL);
    static const char *const bad[] = {"raw", "", "tls12-pms,tls12-pms", "tls12", "tls13-es,x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(t, sizeof(t), "%sforms=%s\n", buf, bad[i]);
        expect_corrupt(t);
    }
    /* A Ke has its raw key only, whatever the store keeps for PSKs. */
    r.kind = M2MHSM_KIND_KE;
    r.ke_id[0] = '\0';
    r.forms = M2MHSM_FORMS_RAW;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_OK);
    buf[len] = '\0';
    assert_null(strstr(buf, "forms="));
    snprintf(t, sizeof(t), "%sforms=tls12-pms\n", buf);
    expect_corrupt(t);
    r.forms = M2MHSM_FORMS_TLS12;
    assert_int_equal(ks_meta_encode(&r, buf, &len), M2MHSM_E_INVALID_ARG);

    /* A record built without choosing (forms 0) must have all of its kind's forms. */
    m2mhsm_record km = sample();
    for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
        ks_obj(&km)->key[f] = (CK_OBJECT_HANDLE)(100 + f);
    assert_int_equal(ks_record_forms(&km), M2MHSM_FORMS_ALL);
    assert_int_equal(m2mhsm_record_check_form(&km, M2MHSM_FORM_TLS13_ES), M2MHSM_OK);
    ks_obj(&km)->key[M2MHSM_FORM_RAW] = CK_INVALID_HANDLE;
    assert_false(ks_record_complete(&km));
    km.forms = M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13;
    assert_true(ks_record_complete(&km));
    km.forms = M2MHSM_FORMS_TLS12;
    assert_int_equal(m2mhsm_record_check_form(&km, M2MHSM_FORM_TLS13_ES), M2MHSM_E_UNSUPPORTED);
    assert_non_null(strstr(m2mhsm_last_error(), "without its tls13-es form"));
}

static void test_labels_name_kind_identity_and_form(void **state)
{
    (void)state;
    m2mhsm_record r = sample();
    char label[M2MHSM_LABEL_MAX];
    ks_meta_label(&r, label, sizeof(label));
    assert_string_equal(label, "m2mhsm:km:00112233445566778899AABBCCDDEEFF@mef.example.com");
    ks_key_label(&r, M2MHSM_FORM_TLS12_PMS, label, sizeof(label));
    assert_int_equal(ks_label_form(label), M2MHSM_FORM_TLS12_PMS);
    assert_int_equal(ks_label_form("kek"), -1);
    assert_int_equal(ks_label_form("m2mhsm:km:x:bogus"), -1);
}

static const CK_ATTRIBUTE *find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

static CK_BBOOL flag(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    const CK_ATTRIBUTE *a = find(t, n, type);
    assert_non_null(a);
    return *(const CK_BBOOL *)a->pValue;
}

static void test_key_template_is_sensitive_unextractable_and_dated(void **state)
{
    (void)state;
    m2mhsm_record r = sample();
    ks_key_attrs a;
    CK_ATTRIBUTE t[KS_KEY_TEMPLATE_LEN];
    CK_ULONG n = ks_key_template(&r, M2MHSM_FORM_TLS12_PMS, CK_TRUE, &a, t);
    assert_true(n < KS_KEY_TEMPLATE_LEN);
    assert_true(flag(t, n, CKA_SENSITIVE));
    assert_false(flag(t, n, CKA_EXTRACTABLE));
    assert_true(flag(t, n, CKA_TOKEN));
    assert_true(flag(t, n, CKA_PRIVATE));
    assert_true(flag(t, n, CKA_SIGN));
    assert_false(flag(t, n, CKA_DERIVE));
    assert_false(flag(t, n, CKA_WRAP));
    assert_true(flag(t, n, CKA_MODIFIABLE)); /* a TLS form: copyable to a session object */
    assert_true(flag(t, n, CKA_COPYABLE));
    const CK_ATTRIBUTE *end = find(t, n, CKA_END_DATE);
    assert_non_null(end);
    assert_memory_equal(end->pValue, "20261118", 8); /* 1795003600 = 2026-11-18T12:06:40Z */
    const CK_ATTRIBUTE *start = find(t, n, CKA_START_DATE);
    assert_non_null(start);
    assert_memory_equal(start->pValue, "20261118", 8);
    r.expiry = M2MHSM_NEVER;
    n = ks_key_template(&r, M2MHSM_FORM_RAW, CK_FALSE, &a, t);
    assert_null(find(t, n, CKA_END_DATE));
    assert_false(flag(t, n, CKA_SIGN));
    assert_false(flag(t, n, CKA_MODIFIABLE)); /* the raw key: neither changed nor copied */
    assert_false(flag(t, n, CKA_COPYABLE));
}

/* Where a token takes no CKA_COPYABLE, the template loses that one attribute and keeps every
 * other, the protections first among them. */
static void test_template_without_copyable_keeps_everything_else(void **state)
{
    (void)state;
    m2mhsm_record r = sample();
    ks_key_attrs a;
    CK_ATTRIBUTE t[KS_KEY_TEMPLATE_LEN];
    CK_ULONG n = ks_key_template(&r, M2MHSM_FORM_RAW, CK_FALSE, &a, t);
    CK_ULONG m = ks_template_drop(t, n, CKA_COPYABLE);
    assert_int_equal(m, n - 1);
    assert_null(find(t, m, CKA_COPYABLE));
    assert_true(flag(t, m, CKA_SENSITIVE));
    assert_false(flag(t, m, CKA_EXTRACTABLE));
    assert_false(flag(t, m, CKA_MODIFIABLE));
    assert_non_null(find(t, m, CKA_ID));
    assert_int_equal(ks_template_drop(t, m, CKA_COPYABLE), m); /* absent: nothing changes */
}

/* A key's CKA_ID: the record id (every form), or the record id and its own form's number. */
static void test_key_ids_shared_or_per_form(void **state)
{
    (void)state;
    uint8_t id[KS_KEY_ID_MAX] = {0};
    assert_true(ks_key_id_ok(id, M2MHSM_RECORD_ID_LEN, M2MHSM_FORM_RAW));
    assert_true(ks_key_id_ok(id, M2MHSM_RECORD_ID_LEN, M2MHSM_FORM_TLS13_ES));
    id[M2MHSM_RECORD_ID_LEN] = (uint8_t)M2MHSM_FORM_TLS12_PMS;
    assert_true(ks_key_id_ok(id, KS_KEY_ID_MAX, M2MHSM_FORM_TLS12_PMS));
    assert_false(ks_key_id_ok(id, KS_KEY_ID_MAX, M2MHSM_FORM_TLS13_ES)); /* another form's */
    assert_false(ks_key_id_ok(id, KS_KEY_ID_MAX, -1));
    assert_false(ks_key_id_ok(id, M2MHSM_RECORD_ID_LEN - 1, M2MHSM_FORM_RAW));
    assert_false(ks_key_id_ok(id, 0, M2MHSM_FORM_RAW));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata_round_trips),
        cmocka_unit_test(test_seq_round_trips_and_is_optional),
        cmocka_unit_test(test_tampered_metadata_is_refused),
        cmocka_unit_test(test_derived_in_token_round_trips_and_defaults_to_false),
        cmocka_unit_test(test_forms_round_trip_and_default_to_all),
        cmocka_unit_test(test_labels_name_kind_identity_and_form),
        cmocka_unit_test(test_key_template_is_sensitive_unextractable_and_dated),
        cmocka_unit_test(test_template_without_copyable_keeps_everything_else),
        cmocka_unit_test(test_key_ids_shared_or_per_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
