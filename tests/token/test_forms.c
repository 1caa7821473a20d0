/* The forms a store keeps (m2mhsm_keystore_options.psk_forms): the objects each role costs
 * per device, records of today's format with all three forms, and the refusal of a
 * handshake whose form a key was stored without. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <m2mhsm/tls.h>

#include "fixture.h"
#include "internal.h"
#include "keystore/ks.h"
#include "tls_pair.h"

#define KE_ID "0123456789ABCDEF0123456789ABCDEF@mef.example.com"
#define MAF "maf.example.com"
#define ENROLEE "//sp.example.com/cse1/Cforms"
#define TLS_BOTH (M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13)

static fixture_token token;

typedef struct {
    fixture_store fs;
    m2mhsm_tls *tls;
    m2mhsm_tls_psk_event last;
    char error[256]; /* m2mhsm_last_error() when the observer was told */
} forms_fixture;

static void check(m2mhsm_status st)
{
    if (st != M2MHSM_OK)
        fail_msg("%s: %s", m2mhsm_status_name(st), m2mhsm_last_error());
}

static void observer(void *arg, m2mhsm_tls_psk_event ev, const char *identity,
                     const m2mhsm_record *rec, size_t erased)
{
    (void)identity;
    (void)rec;
    (void)erased;
    forms_fixture *f = arg;
    f->last = ev;
    snprintf(f->error, sizeof(f->error), "%s", m2mhsm_last_error());
}

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("forms");
    fixture_token_make(&token, "forms");
    return 0;
}

/* A store that keeps `forms` (0: the default), with a TLS context on it. */
static void open_with(forms_fixture *f, unsigned forms)
{
    f->fs.psk_forms = forms;
    fixture_store_open(&f->fs, &token);
    check(m2mhsm_tls_new(f->fs.ks, &f->tls));
}

static void close_store(forms_fixture *f)
{
    m2mhsm_tls_free(f->tls);
    fixture_store_close(&f->fs);
    f->tls = NULL;
}

static int setup(void **state)
{
    *state = calloc(1, sizeof(forms_fixture));
    return 0;
}

static int teardown(void **state)
{
    forms_fixture *f = *state;
    if (f->tls != NULL)
        close_store(f);
    free(f);
    return 0;
}

/* ---- objects on the token ---- */

static CK_FUNCTION_LIST *fn_of(forms_fixture *f)
{
    return m2mhsm_token_functions(f->fs.tok);
}

static size_t find_count(forms_fixture *f, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h[16];
    CK_ULONG got = 0;
    check(m2mhsm_token_session_get(f->fs.tok, &s));
    assert_int_equal(fn_of(f)->C_FindObjectsInit(s, tmpl, n), CKR_OK);
    assert_int_equal(fn_of(f)->C_FindObjects(s, h, 16, &got), CKR_OK);
    assert_int_equal(fn_of(f)->C_FindObjectsFinal(s), CKR_OK);
    m2mhsm_token_session_put(f->fs.tok, s);
    return got;
}

/* Secret keys stored on the token for a record (its CKA_ID). */
static size_t keys_of(forms_fixture *f, const m2mhsm_record *rec)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_TOKEN, &t, sizeof(t)},
                           {CKA_ID, (void *)rec->record_id, M2MHSM_RECORD_ID_LEN}};
    return find_count(f, tmpl, 3);
}

/* Data objects stored on the token with a record's metadata label. */
static size_t data_of(forms_fixture *f, const m2mhsm_record *rec)
{
    char label[M2MHSM_LABEL_MAX];
    ks_meta_label(rec, label, sizeof(label));
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_TOKEN, &t, sizeof(t)},
                           {CKA_LABEL, label, strlen(label)}};
    return find_count(f, tmpl, 3);
}

/* The metadata text of a record as stored. */
static void meta_text(forms_fixture *f, const m2mhsm_record *rec, char *buf, size_t cap)
{
    CK_SESSION_HANDLE s;
    CK_ATTRIBUTE a = {CKA_VALUE, buf, cap - 1};
    check(m2mhsm_token_session_get(f->fs.tok, &s));
    assert_int_equal(fn_of(f)->C_GetAttributeValue(s, ks_obj(rec)->meta, &a, 1), CKR_OK);
    m2mhsm_token_session_put(f->fs.tok, s);
    buf[a.ulValueLen] = '\0';
}

/* The token's HMAC-SHA256 with `key` over msg equals the host's with `want_key`. */
static void assert_form_value(forms_fixture *f, CK_OBJECT_HANDLE key, const uint8_t *want_key,
                              size_t want_len)
{
    static const char msg[] = "form check";
    uint8_t want[32], got[32];
    unsigned int l = 0;
    CK_ULONG len = sizeof(got);
    CK_SESSION_HANDLE s;
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    HMAC(EVP_sha256(), want_key, (int)want_len, (const uint8_t *)msg, strlen(msg), want, &l);
    check(m2mhsm_token_session_get(f->fs.tok, &s));
    assert_int_equal(fn_of(f)->C_SignInit(s, &m, key), CKR_OK);
    assert_int_equal(fn_of(f)->C_Sign(s, (CK_BYTE *)msg, strlen(msg), got, &len), CKR_OK);
    m2mhsm_token_session_put(f->fs.tok, s);
    assert_memory_equal(got, want, 32);
}

/* ---- handshakes against a plain OpenSSL peer holding the key in memory ---- */

static uint8_t peer_psk[32];
static char peer_identity[M2MHSM_ID_MAX + 1];

static unsigned int plain_client_psk(SSL *ssl, const char *hint, char *id, unsigned int id_len,
                                     unsigned char *psk, unsigned int psk_len)
{
    (void)ssl;
    (void)hint;
    (void)psk_len;
    snprintf(id, id_len, "%s", peer_identity);
    memcpy(psk, peer_psk, sizeof(peer_psk));
    return sizeof(peer_psk);
}

static unsigned int plain_server_psk(SSL *ssl, const char *id, unsigned char *psk,
                                     unsigned int psk_len)
{
    (void)ssl;
    (void)psk_len;
    if (strcmp(id, peer_identity) != 0)
        return 0;
    memcpy(psk, peer_psk, sizeof(peer_psk));
    return sizeof(peer_psk);
}

static SSL_CTX *plain_ctx(int server, int tls13)
{
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    assert_non_null(c);
    if (tls13) {
        SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
        assert_int_equal(SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256"), 1);
    } else {
        SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
        assert_int_equal(SSL_CTX_set_cipher_list(c, "PSK-AES128-GCM-SHA256"), 1);
    }
    if (server)
        SSL_CTX_set_psk_server_callback(c, plain_server_psk);
    else
        SSL_CTX_set_psk_client_callback(c, plain_client_psk);
    return c;
}

/* Our side (server or client, with the key in the token) against the plain peer. */
static int handshake_as(forms_fixture *f, m2mhsm_tls_role role, int tls13, m2mhsm_kind kind,
                        const char *identity)
{
    m2mhsm_tls_profile p = {.role = role,
                            .proto = tls13 ? M2MHSM_TLS_1_3 : M2MHSM_TLS_1_2,
                            .kind = kind,
                            .identity = role == M2MHSM_TLS_CLIENT ? identity : NULL,
                            .observer = observer,
                            .observer_arg = f};
    SSL_CTX *ours = NULL, *plain = plain_ctx(role == M2MHSM_TLS_CLIENT, tls13);
    check(m2mhsm_tls_ctx_new(f->tls, &p, &ours));
    SSL *mine = NULL, *peer = SSL_new(plain);
    check(m2mhsm_tls_ssl_new(ours, &mine));
    f->last = 0;
    f->error[0] = '\0';
    int ok =
        role == M2MHSM_TLS_SERVER ? tls_pair_handshake(mine, peer) : tls_pair_handshake(peer, mine);
    ERR_clear_error();
    SSL_free(mine);
    SSL_free(peer);
    SSL_CTX_free(ours);
    SSL_CTX_free(plain);
    return ok;
}

static void peer_holds(const char *identity, const uint8_t key[32])
{
    snprintf(peer_identity, sizeof(peer_identity), "%s", identity);
    memcpy(peer_psk, key, 32);
}

/* A MAF's fetched Km (key = fixture_key32). */
static m2mhsm_record fetched_km(forms_fixture *f, const char *ke_id)
{
    m2mhsm_fetched_key fk = {M2MHSM_KIND_KM, ke_id, ENROLEE, MAF, f->fs.now + 3600, M2MHSM_NEVER};
    m2mhsm_record km;
    check(m2mhsm_keystore_store_fetched(f->fs.ks, &fk, fixture_key32, 32, &km));
    return km;
}

/* ---- tests ---- */

static void test_open_refuses_forms_no_handshake_can_use(void **state)
{
    (void)state;
    m2mhsm_token_config cfg = {
        .token_uri = token.uri, .pin_source = token.pin_source, .lock_file = token.lock_file};
    m2mhsm_token *tok = NULL;
    check(m2mhsm_token_open(&cfg, &tok));
    static const unsigned bad[] = {M2MHSM_FORMS_RAW, M2MHSM_FORMS_TLS12 | 1u << 7};
    for (size_t i = 0; i < 2; i++) {
        m2mhsm_keystore_options o = {.psk_forms = bad[i]};
        m2mhsm_keystore *ks = NULL;
        assert_int_equal(m2mhsm_keystore_open(tok, &o, &ks, NULL), M2MHSM_E_INVALID_ARG);
        assert_null(ks);
        assert_non_null(strstr(m2mhsm_last_error(), "psk_forms"));
    }
    m2mhsm_token_close(tok);
}

/* A MAF with TLS 1.2 only: one key per device, which serves TLS 1.2 and is refused, by
 * name, for TLS 1.3 on both sides; found again by another process's open. */
static void test_maf_tls12_km_is_one_key_and_refuses_tls13(void **state)
{
    forms_fixture *f = *state;
    open_with(f, M2MHSM_FORMS_TLS12);
    m2mhsm_record km = fetched_km(f, KE_ID);
    assert_int_equal(km.forms, M2MHSM_FORMS_TLS12);
    assert_int_equal(keys_of(f, &km), 1);
    assert_int_equal(data_of(f, &km), 1);
    char text[M2MHSM_META_MAX + 1];
    meta_text(f, &km, text, sizeof(text));
    assert_non_null(strstr(text, "\nforms=tls12-pms\n"));
    assert_int_equal(m2mhsm_record_check_form(&km, M2MHSM_FORM_TLS12_PMS), M2MHSM_OK);
    assert_int_equal(m2mhsm_record_check_form(&km, M2MHSM_FORM_TLS13_ES), M2MHSM_E_UNSUPPORTED);
    assert_non_null(strstr(m2mhsm_last_error(), "tls13-es"));
    close_store(f);

    /* Another process (default options) opens the token: the record is complete. */
    open_with(f, 0);
    m2mhsm_record found;
    check(m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_KM, KE_ID, strlen(KE_ID), &found));
    assert_int_equal(found.forms, M2MHSM_FORMS_TLS12);
    assert_int_equal(ks_obj(&found)->key[M2MHSM_FORM_RAW], CK_INVALID_HANDLE);
    assert_int_equal(ks_obj(&found)->key[M2MHSM_FORM_TLS13_ES], CK_INVALID_HANDLE);
    peer_holds(KE_ID, fixture_key32);
    assert_true(handshake_as(f, M2MHSM_TLS_SERVER, 0, M2MHSM_KIND_KM, KE_ID));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_ACCEPTED);
    assert_true(handshake_as(f, M2MHSM_TLS_CLIENT, 0, M2MHSM_KIND_KM, KE_ID));

    assert_false(handshake_as(f, M2MHSM_TLS_SERVER, 1, M2MHSM_KIND_KM, KE_ID));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_ERROR);
    assert_non_null(strstr(f->error, "without its tls13-es form"));
    assert_false(handshake_as(f, M2MHSM_TLS_CLIENT, 1, M2MHSM_KIND_KM, KE_ID));
    assert_non_null(strstr(m2mhsm_last_error(), "without its tls13-es form"));
    /* The refusal erased nothing: TLS 1.2 still works. */
    assert_true(handshake_as(f, M2MHSM_TLS_SERVER, 0, M2MHSM_KIND_KM, KE_ID));
    check(m2mhsm_keystore_erase_id(f->fs.ks, KE_ID, NULL));
}

/* A MAF with TLS 1.3: one key per device too, refused for TLS 1.2. */
static void test_maf_tls13_km_is_one_key_and_refuses_tls12(void **state)
{
    forms_fixture *f = *state;
    open_with(f, M2MHSM_FORMS_TLS13);
    m2mhsm_record km = fetched_km(f, KE_ID);
    assert_int_equal(keys_of(f, &km), 1);
    assert_int_equal(data_of(f, &km), 1);
    uint8_t es[32];
    check(m2mhsm_psk_tls13_early_secret(fixture_key32, 32, es));
    assert_form_value(f, ks_obj(&km)->key[M2MHSM_FORM_TLS13_ES], es, 32);
    peer_holds(KE_ID, fixture_key32);
    assert_true(handshake_as(f, M2MHSM_TLS_SERVER, 1, M2MHSM_KIND_KM, KE_ID));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_ACCEPTED);
    assert_true(handshake_as(f, M2MHSM_TLS_CLIENT, 1, M2MHSM_KIND_KM, KE_ID));
    assert_false(handshake_as(f, M2MHSM_TLS_SERVER, 0, M2MHSM_KIND_KM, KE_ID));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_ERROR);
    assert_non_null(strstr(f->error, "without its tls12-pms form"));
    assert_false(handshake_as(f, M2MHSM_TLS_CLIENT, 0, M2MHSM_KIND_KM, KE_ID));
    assert_non_null(strstr(m2mhsm_last_error(), "without its tls12-pms form"));
    check(m2mhsm_keystore_erase_id(f->fs.ks, KE_ID, NULL));
}

/* forms= does not hide a crash: a record missing one of the forms it names is torn. */
static void test_a_record_missing_a_form_it_names_is_torn(void **state)
{
    forms_fixture *f = *state;
    open_with(f, TLS_BOTH);
    m2mhsm_record km = fetched_km(f, KE_ID);
    assert_int_equal(keys_of(f, &km), 2);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(f->fs.tok, &s));
    assert_int_equal(fn_of(f)->C_DestroyObject(s, ks_obj(&km)->key[M2MHSM_FORM_TLS13_ES]), CKR_OK);
    m2mhsm_token_session_put(f->fs.tok, s);
    close_store(f);

    f->fs.now += 120; /* past the grace period, before the Km's expiry */
    f->fs.psk_forms = 0;
    m2mhsm_open_report rep;
    m2mhsm_token_config cfg = {
        .token_uri = token.uri, .pin_source = token.pin_source, .lock_file = token.lock_file};
    check(m2mhsm_token_open(&cfg, &f->fs.tok));
    m2mhsm_keystore_options o = {.clock = fixture_clock, .clock_arg = &f->fs.now};
    check(m2mhsm_keystore_open(f->fs.tok, &o, &f->fs.ks, &rep));
    assert_int_equal(rep.incomplete, 1);
    m2mhsm_record again;
    assert_int_equal(m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_KM, KE_ID, strlen(KE_ID), &again),
                     M2MHSM_E_NOT_FOUND);
    assert_int_equal(keys_of(f, &km), 0);
    assert_int_equal(data_of(f, &km), 0);
    check(m2mhsm_tls_new(f->fs.ks, &f->tls));
}

/* The MEF per enrolled device (Kpm for TLS 1.2, its configuration, Ke) and a TLS 1.2 device
 * (Kpm, Ke, Km), with each stored form computing what the key's form must. */
static void test_mef_and_device_objects_per_device(void **state)
{
    forms_fixture *f = *state;
    open_with(f, M2MHSM_FORMS_TLS12);
    m2mhsm_record kpm, cfg, ke, km;
    check(m2mhsm_keystore_import_kpm(f->fs.ks, "forms-kpm", fixture_key32, 32, M2MHSM_NEVER, &kpm));
    m2mhsm_expiry_spec exp = {M2MHSM_EXPIRY_DURATION, 3600};
    check(m2mhsm_keystore_configure_enrolee(f->fs.ks, "forms-kpm", MAF, ENROLEE, &exp));
    check(m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_ENROLMENT, "forms-kpm", 9, &cfg));
    ke = fixture_enrol(&f->fs, "forms-kpm", ENROLEE, 0x5a, 3600);
    size_t mef_keys = keys_of(f, &kpm) + keys_of(f, &ke);
    size_t mef_data = data_of(f, &kpm) + data_of(f, &cfg) + data_of(f, &ke);
    assert_int_equal(mef_keys, 2); /* was 4: Kpm raw, tls12-pms, tls13-es; Ke raw */
    assert_int_equal(mef_data, 3);
    assert_int_equal(ke.forms, M2MHSM_FORMS_RAW); /* Km and Kpsa derive from it */
    uint8_t pms[M2MHSM_PMS_KEY_MAX];
    size_t pms_len;
    check(m2mhsm_psk_tls12_pms_key(fixture_key32, 32, pms, &pms_len));
    assert_form_value(f, ks_obj(&kpm)->key[M2MHSM_FORM_TLS12_PMS], pms, pms_len);
    peer_holds("forms-kpm", fixture_key32);
    assert_true(handshake_as(f, M2MHSM_TLS_SERVER, 0, M2MHSM_KIND_KPM, "forms-kpm"));

    /* The device: the same Kpm and Ke, and the Km it derives for its MAF. */
    check(m2mhsm_keystore_derive_store(f->fs.ks, &ke, M2MHSM_DERIVE_KM, MAF, M2MHSM_NEVER, &km));
    assert_int_equal(keys_of(f, &km), 1);
    assert_int_equal(keys_of(f, &kpm) + keys_of(f, &ke) + keys_of(f, &km), 3); /* was 7 */
    uint8_t km_value[32];
    check(m2mhsm_keystore_derive(f->fs.ks, &ke, M2MHSM_DERIVE_KM, MAF, km_value));
    check(m2mhsm_psk_tls12_pms_key(km_value, 32, pms, &pms_len));
    assert_form_value(f, ks_obj(&km)->key[M2MHSM_FORM_TLS12_PMS], pms, pms_len);
    peer_holds(ke.identity, km_value);
    assert_true(handshake_as(f, M2MHSM_TLS_CLIENT, 0, M2MHSM_KIND_KM, ke.identity));
    check(m2mhsm_keystore_erase_id(f->fs.ks, "forms-kpm", NULL));
    check(m2mhsm_keystore_erase_id(f->fs.ks, ke.identity, NULL));
}

/* A record as every version before forms= wrote it, made here object by object: it is read
 * with all three forms by a store that keeps fewer, and serves both TLS versions. */
static void test_todays_format_is_read_and_serves_both_versions(void **state)
{
    forms_fixture *f = *state;
    open_with(f, M2MHSM_FORMS_TLS12);
    m2mhsm_record rec = {.kind = M2MHSM_KIND_KPM, .identity = "old-kpm"};
    for (int i = 0; i < M2MHSM_RECORD_ID_LEN; i++)
        rec.record_id[i] = (uint8_t)(0xa0 + i);
    rec.created = f->fs.now;
    rec.expiry = M2MHSM_NEVER;
    static const char text[] = "m2mhsm-meta 1\nkind=kpm\nidentity=old-kpm\n"
                               "record_id=a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\nkpm_id=old-kpm\n"
                               "ke_id=\nenrolee_id=\ntarget_id=\nenrolment_expiry=\n"
                               "created=1795000000\nexpiry=9223372036854775807\n";
    CK_OBJECT_CLASS data = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE meta[] = {
        {CKA_CLASS, &data, sizeof(data)},      {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},          {CKA_APPLICATION, "m2mhsm", 6},
        {CKA_LABEL, "m2mhsm:kpm:old-kpm", 18}, {CKA_VALUE, (void *)text, sizeof(text) - 1},
    };
    uint8_t pms[M2MHSM_PMS_KEY_MAX], es[32];
    size_t pms_len;
    check(m2mhsm_psk_tls12_pms_key(fixture_key32, 32, pms, &pms_len));
    check(m2mhsm_psk_tls13_early_secret(fixture_key32, 32, es));
    const uint8_t *value[M2MHSM_FORM_COUNT] = {fixture_key32, pms, es};
    size_t len[M2MHSM_FORM_COUNT] = {32, pms_len, 32};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    check(m2mhsm_token_session_get(f->fs.tok, &s));
    assert_int_equal(fn_of(f)->C_CreateObject(s, meta, 6, &h), CKR_OK);
    for (int form = 0; form < M2MHSM_FORM_COUNT; form++) {
        ks_key_attrs a;
        CK_ATTRIBUTE tmpl[KS_KEY_TEMPLATE_LEN + 1];
        CK_ULONG n = ks_key_template(&rec, (m2mhsm_form)form, form != M2MHSM_FORM_RAW, &a, tmpl);
        if (!m2mhsm_token_takes_copyable(f->fs.tok)) /* as the keystore writes it there */
            n = ks_template_drop(tmpl, n, CKA_COPYABLE);
        tmpl[n++] = (CK_ATTRIBUTE){CKA_VALUE, (void *)value[form], len[form]};
        assert_int_equal(fn_of(f)->C_CreateObject(s, tmpl, n, &h), CKR_OK);
    }
    m2mhsm_token_session_put(f->fs.tok, s);

    m2mhsm_record old;
    check(m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_KPM, "old-kpm", 7, &old));
    assert_int_equal(old.forms, M2MHSM_FORMS_ALL);
    for (int form = 0; form < M2MHSM_FORM_COUNT; form++)
        check(m2mhsm_record_check_form(&old, (m2mhsm_form)form));
    peer_holds("old-kpm", fixture_key32);
    assert_true(handshake_as(f, M2MHSM_TLS_SERVER, 0, M2MHSM_KIND_KPM, "old-kpm"));
    assert_true(handshake_as(f, M2MHSM_TLS_SERVER, 1, M2MHSM_KIND_KPM, "old-kpm"));
    assert_true(handshake_as(f, M2MHSM_TLS_CLIENT, 1, M2MHSM_KIND_KPM, "old-kpm"));
    close_store(f);

    /* And a store opened with the default writes exactly that format again. */
    open_with(f, 0);
    check(m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_KPM, "old-kpm", 7, &old));
    assert_int_equal(old.forms, M2MHSM_FORMS_ALL);
    m2mhsm_record fresh;
    check(m2mhsm_keystore_import_kpm(f->fs.ks, "new-kpm", fixture_key32, 32, M2MHSM_NEVER, &fresh));
    assert_int_equal(fresh.forms, M2MHSM_FORMS_ALL);
    assert_int_equal(keys_of(f, &fresh), 3);
    char stored[M2MHSM_META_MAX + 1];
    meta_text(f, &fresh, stored, sizeof(stored));
    assert_null(strstr(stored, "forms="));
    check(m2mhsm_keystore_erase_id(f->fs.ks, "old-kpm", NULL));
    check(m2mhsm_keystore_erase_id(f->fs.ks, "new-kpm", NULL));
}

/* A wrapped Kpm stored without its raw form: unwrapped into a session object, digested into
 * its one form, and that object destroyed. */
static void test_unwrapped_kpm_without_raw_keeps_one_key(void **state)
{
    forms_fixture *f = *state;
    open_with(f, M2MHSM_FORMS_TLS12);
    uint8_t kek_value[32], wrapped[40];
    for (int i = 0; i < 32; i++)
        kek_value[i] = (uint8_t)(0x40 + i);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL t = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE kek[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &no, sizeof(no)},   {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_UNWRAP, &t, sizeof(t)},    {CKA_SENSITIVE, &t, sizeof(t)},
        {CKA_LABEL, "forms-kek", 9},    {CKA_VALUE, kek_value, 32},
    };
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    check(m2mhsm_token_session_get(f->fs.tok, &s));
    assert_int_equal(fn_of(f)->C_CreateObject(s, kek, 8, &h), CKR_OK);
    m2mhsm_token_session_put(f->fs.tok, s);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0;
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek_value, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(c, wrapped, &len, fixture_key32, 32), 1);
    assert_int_equal(EVP_EncryptFinal_ex(c, wrapped + len, &fin), 1);
    EVP_CIPHER_CTX_free(c);

    m2mhsm_record kpm;
    const m2mhsm_token_caps *caps = m2mhsm_token_caps_get(f->fs.tok);
    if (!caps->aes_key_wrap && !caps->aes_key_wrap_kwp && !caps->aes_key_wrap_pad) {
        /* opencryptoki's sw token, SoftHSM through p11-kit's RPC: refused, nothing written */
        assert_int_equal(m2mhsm_keystore_unwrap_kpm(f->fs.ks, "wrapped-forms", wrapped, 40,
                                                    "forms-kek", M2MHSM_NEVER, &kpm),
                         M2MHSM_E_UNSUPPORTED);
        assert_int_equal(
            m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_KPM, "wrapped-forms", 13, &kpm),
            M2MHSM_E_NOT_FOUND);
        return;
    }
    check(m2mhsm_keystore_unwrap_kpm(f->fs.ks, "wrapped-forms", wrapped, 40, "forms-kek",
                                     M2MHSM_NEVER, &kpm));
    assert_int_equal(kpm.forms, M2MHSM_FORMS_TLS12);
    assert_int_equal(keys_of(f, &kpm), 1);
    uint8_t pms[M2MHSM_PMS_KEY_MAX];
    size_t pms_len;
    check(m2mhsm_psk_tls12_pms_key(fixture_key32, 32, pms, &pms_len));
    assert_form_value(f, ks_obj(&kpm)->key[M2MHSM_FORM_TLS12_PMS], pms, pms_len);
    /* No unwrapped key left behind, in the token or in this session's memory. */
    char raw_label[M2MHSM_LABEL_MAX];
    ks_key_label(&kpm, M2MHSM_FORM_RAW, raw_label, sizeof(raw_label));
    CK_ATTRIBUTE by_label[] = {{CKA_CLASS, &cls, sizeof(cls)},
                               {CKA_LABEL, raw_label, strlen(raw_label)}};
    assert_int_equal(find_count(f, by_label, 2), 0);
    check(m2mhsm_keystore_erase_id(f->fs.ks, "wrapped-forms", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_refuses_forms_no_handshake_can_use, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_maf_tls12_km_is_one_key_and_refuses_tls13, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_maf_tls13_km_is_one_key_and_refuses_tls12, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_record_missing_a_form_it_names_is_torn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mef_and_device_objects_per_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_todays_format_is_read_and_serves_both_versions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unwrapped_kpm_without_raw_keeps_one_key, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
