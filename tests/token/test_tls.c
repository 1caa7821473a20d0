/* TLS-PSK handshakes whose PSK stays in the token, against OpenSSL peers holding the key in
 * memory (same process here; tests/interop/ runs real s_client/s_server). */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <m2mhsm/tls.h>

#include "handle.h"
#include "tls_pair.h"

#define M2MHSM_LABEL_BUF (32 + M2MHSM_ID_MAX)

#include "fixture.h"

static fixture_token token;

typedef struct {
    fixture_store fs;
    m2mhsm_tls *tls;
    m2mhsm_tls_psk_event last;
    size_t erased;
    int events;
} tls_fixture;

static void observer(void *arg, m2mhsm_tls_psk_event ev, const char *identity,
                     const m2mhsm_record *rec, size_t erased)
{
    (void)identity;
    (void)rec;
    tls_fixture *f = arg;
    f->last = ev;
    f->erased = erased;
    f->events++;
}

static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("tls");
    fixture_token_make(&token, "tls");
    return 0;
}

static int setup(void **state)
{
    tls_fixture *f = calloc(1, sizeof(*f));
    fixture_store_open(&f->fs, &token);
    assert_int_equal(m2mhsm_tls_new(f->fs.ks, &f->tls), M2MHSM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    tls_fixture *f = *state;
    m2mhsm_tls_free(f->tls);
    fixture_store_close(&f->fs);
    free(f);
    return 0;
}

/* ---- a plain OpenSSL peer with the PSK in memory ---- */

static uint8_t peer_psk[32];
static const char *peer_identity = "tls-kpm";

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

static SSL_CTX *plain_ctx(int server, const char *cipher)
{
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    assert_non_null(c);
    SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(c, cipher), 1);
    if (server)
        SSL_CTX_set_psk_server_callback(c, plain_server_psk);
    else
        SSL_CTX_set_psk_client_callback(c, plain_client_psk);
    return c;
}

/* Run a handshake in memory; on success fill the two sides' clause 10.3.1 exports. */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, uint8_t sexp[48], uint8_t cexp[48],
                     SSL **keep_server)
{
    SSL *s = SSL_new(sctx), *c = NULL;
    assert_int_equal(m2mhsm_tls_ssl_new(cctx, &c), M2MHSM_OK);
    int ok = tls_pair_handshake(s, c);
    if (ok) {
        const char *l = "EXPORTER-oneM2M-Bootstrap";
        assert_int_equal(SSL_export_keying_material(s, sexp, 48, l, strlen(l), NULL, 0, 0), 1);
        assert_int_equal(SSL_export_keying_material(c, cexp, 48, l, strlen(l), NULL, 0, 0), 1);
    }
    ERR_clear_error();
    SSL_free(c);
    if (keep_server != NULL && ok)
        *keep_server = s;
    else
        SSL_free(s);
    return ok;
}

/* The peer holds the fixture key in memory; the token holds it as Kpm "tls-kpm". */
static void given_tls_kpm(tls_fixture *f, m2mhsm_time valid_until)
{
    memcpy(peer_psk, fixture_key32, 32);
    assert_int_equal(
        m2mhsm_keystore_import_kpm(f->fs.ks, "tls-kpm", fixture_key32, 32, valid_until, NULL),
        M2MHSM_OK);
}

static SSL_CTX *token_ctx(tls_fixture *f, m2mhsm_tls_role role, m2mhsm_kind kind,
                          const char *identity)
{
    m2mhsm_tls_profile p = {.role = role,
                            .proto = M2MHSM_TLS_1_2,
                            .kind = kind,
                            .identity = identity,
                            .observer = observer,
                            .observer_arg = f};
    SSL_CTX *ctx = NULL;
    assert_int_equal(m2mhsm_tls_ctx_new(f->tls, &p, &ctx), M2MHSM_OK);
    return ctx;
}

static void test_token_server_completes_handshakes_with_a_plain_client(void **state)
{
    tls_fixture *f = *state;
    given_tls_kpm(f, M2MHSM_NEVER);
    SSL_CTX *server = token_ctx(f, M2MHSM_TLS_SERVER, M2MHSM_KIND_KPM, NULL);
    static const char *ciphers[] = {"PSK-AES128-CBC-SHA256", "PSK-AES128-GCM-SHA256",
                                    "PSK-AES128-CCM8"};
    for (int i = 0; i < 3; i++) {
        SSL_CTX *client = plain_ctx(0, ciphers[i]);
        uint8_t sexp[48], cexp[48];
        assert_true(handshake(server, client, sexp, cexp, NULL));
        assert_memory_equal(sexp, cexp, 48); /* same master secret on both sides */
        assert_int_equal(f->last, M2MHSM_TLS_PSK_ACCEPTED);
        SSL_CTX_free(client);
    }
    /* Negative control: the wrong key fails. */
    peer_psk[0] ^= 1;
    SSL_CTX *client = plain_ctx(0, "PSK-AES128-CBC-SHA256");
    uint8_t sexp[48], cexp[48];
    assert_false(handshake(server, client, sexp, cexp, NULL));
    peer_psk[0] ^= 1;
    /* An unknown identity is refused. */
    peer_identity = "no-such-kpm";
    assert_false(handshake(server, client, sexp, cexp, NULL));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_UNKNOWN);
    peer_identity = "tls-kpm";
    SSL_CTX_free(client);
    SSL_CTX_free(server);
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, "tls-kpm", NULL), M2MHSM_OK);
}

static void test_token_client_completes_a_handshake_with_a_plain_server(void **state)
{
    tls_fixture *f = *state;
    given_tls_kpm(f, M2MHSM_NEVER);
    SSL_CTX *client = token_ctx(f, M2MHSM_TLS_CLIENT, M2MHSM_KIND_KPM, "tls-kpm");
    SSL_CTX *server = plain_ctx(1, "PSK-AES128-CBC-SHA256");
    uint8_t sexp[48], cexp[48];
    assert_true(handshake(server, client, sexp, cexp, NULL));
    assert_memory_equal(sexp, cexp, 48);
    peer_psk[5] ^= 1;
    assert_false(handshake(server, client, sexp, cexp, NULL));
    SSL_CTX_free(client);
    SSL_CTX_free(server);
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, "tls-kpm", NULL), M2MHSM_OK);
}

static char seen_sni[64];

static int record_sni(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    const char *n = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(seen_sni, sizeof(seen_sni), "%s", n != NULL ? n : "");
    return SSL_TLSEXT_ERR_OK;
}

static void test_client_sends_sni_and_a_server_sees_open_connections_expire(void **state)
{
    tls_fixture *f = *state;
    given_tls_kpm(f, f->fs.now + 50);
    m2mhsm_tls_profile cp = {.role = M2MHSM_TLS_CLIENT,
                             .proto = M2MHSM_TLS_1_2,
                             .kind = M2MHSM_KIND_KPM,
                             .identity = "tls-kpm",
                             .server_name = "mef.example.com"};
    SSL_CTX *client = NULL;
    assert_int_equal(m2mhsm_tls_ctx_new(f->tls, &cp, &client), M2MHSM_OK);
    SSL_CTX *plain = plain_ctx(1, "PSK-AES128-CBC-SHA256");
    SSL_CTX_set_tlsext_servername_callback(plain, record_sni);
    uint8_t sexp[48], cexp[48];
    assert_true(handshake(plain, client, sexp, cexp, NULL));
    assert_string_equal(seen_sni, "mef.example.com");
    SSL_CTX_free(plain);
    /* Our server: an open connection carries its key's expiry. */
    SSL_CTX *server = token_ctx(f, M2MHSM_TLS_SERVER, M2MHSM_KIND_KPM, NULL);
    SSL_CTX *pc = plain_ctx(0, "PSK-AES128-CBC-SHA256");
    SSL *open_conn = NULL;
    assert_true(handshake(server, pc, sexp, cexp, &open_conn));
    assert_int_equal(m2mhsm_tls_ssl_expiry(open_conn), f->fs.now + 50);
    assert_string_equal(m2mhsm_tls_ssl_identity(open_conn), "tls-kpm");
    f->fs.now += 49;
    assert_false(m2mhsm_tls_ssl_expired(f->tls, open_conn));
    f->fs.now += 1;
    assert_true(m2mhsm_tls_ssl_expired(f->tls, open_conn));
    SSL_free(open_conn);
    SSL_CTX_free(pc);
    SSL_CTX_free(server);
    SSL_CTX_free(client);
    f->fs.now -= 50;
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, "tls-kpm", NULL), M2MHSM_OK);
}

static SSL_CTX *plain_ctx13(int server)
{
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    assert_non_null(c);
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256"), 1);
    if (server)
        SSL_CTX_set_psk_server_callback(c, plain_server_psk);
    else
        SSL_CTX_set_psk_client_callback(c, plain_client_psk);
    return c;
}

/* TLS 1.3 external PSK: the early secret is a token object; libssl only ever holds its
 * handle until the "derived" step. */
static void test_tls13_with_the_psk_in_the_token_both_ways(void **state)
{
    tls_fixture *f = *state;
    given_tls_kpm(f, M2MHSM_NEVER);
    m2mhsm_tls_profile sp = {.role = M2MHSM_TLS_SERVER,
                             .proto = M2MHSM_TLS_1_3,
                             .kind = M2MHSM_KIND_KPM,
                             .observer = observer,
                             .observer_arg = f};
    m2mhsm_tls_profile cp = {.role = M2MHSM_TLS_CLIENT,
                             .proto = M2MHSM_TLS_1_3,
                             .kind = M2MHSM_KIND_KPM,
                             .identity = "tls-kpm"};
    SSL_CTX *server = NULL, *client = NULL;
    assert_int_equal(m2mhsm_tls_ctx_new(f->tls, &sp, &server), M2MHSM_OK);
    assert_int_equal(m2mhsm_tls_ctx_new(f->tls, &cp, &client), M2MHSM_OK);
    SSL_CTX *pc = plain_ctx13(0), *ps = plain_ctx13(1);
    uint8_t sexp[48], cexp[48];
    SSL *conn13 = NULL;
    assert_true(handshake(server, pc, sexp, cexp, &conn13));
    assert_memory_equal(sexp, cexp, 48);
    /* TLS 1.3 leaves SSL_get_psk_identity() empty; the server still knows which key. */
    assert_string_equal(m2mhsm_tls_ssl_identity(conn13), "tls-kpm");
    SSL_free(conn13);
    assert_true(handshake(ps, client, sexp, cexp, NULL));
    assert_memory_equal(sexp, cexp, 48);
    assert_true(handshake(server, client, sexp, cexp, NULL));
    /* (EC)DHE secrets longer than a hash (P-521: 66 bytes, ffdhe2048: 256) key the
     * handshake-secret extract next to the early-secret handle; and a HelloRetryRequest. */
    static const char *groups[] = {"P-521", "ffdhe2048"};
    for (int g = 0; g < 2; g++) {
        SSL_CTX *pg = plain_ctx13(0), *sg = plain_ctx13(1);
        assert_int_equal(SSL_CTX_set1_groups_list(pg, groups[g]), 1);
        assert_int_equal(SSL_CTX_set1_groups_list(sg, groups[g]), 1);
        assert_true(handshake(server, pg, sexp, cexp, NULL));
        assert_memory_equal(sexp, cexp, 48);
        assert_true(handshake(sg, client, sexp, cexp, NULL)); /* our client: HRR to the group */
        assert_memory_equal(sexp, cexp, 48);
        SSL_CTX_free(pg);
        SSL_CTX_free(sg);
    }
    peer_psk[3] ^= 1; /* negative control */
    assert_false(handshake(server, pc, sexp, cexp, NULL));
    assert_false(handshake(ps, client, sexp, cexp, NULL));
    peer_psk[3] ^= 1;
    SSL_CTX_free(pc);
    SSL_CTX_free(ps);
    SSL_CTX_free(client);
    SSL_CTX_free(server);
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, "tls-kpm", NULL), M2MHSM_OK);
}

/* tls13 in the services: one server context serves TLS 1.2 with every TS-0003 suite and TLS 1.3
 * with TLS_AES_128_GCM_SHA256, each with the key in the token, whichever version comes first;
 * our own clients of either version reach it too. */
static void test_one_server_context_serves_tls12_and_tls13(void **state)
{
    tls_fixture *f = *state;
    given_tls_kpm(f, M2MHSM_NEVER);
    m2mhsm_tls_profile sp = {.role = M2MHSM_TLS_SERVER,
                             .proto = M2MHSM_TLS_1_2_AND_1_3,
                             .kind = M2MHSM_KIND_KPM,
                             .observer = observer,
                             .observer_arg = f};
    SSL_CTX *server = NULL;
    assert_int_equal(m2mhsm_tls_ctx_new(f->tls, &sp, &server), M2MHSM_OK);
    SSL_CTX *plain[] = {plain_ctx13(0), plain_ctx(0, "PSK-AES128-CBC-SHA256"),
                        plain_ctx(0, "PSK-AES128-GCM-SHA256"), plain_ctx(0, "PSK-AES128-CCM8"),
                        plain_ctx13(0)};
    static const int version[] = {TLS1_3_VERSION, TLS1_2_VERSION, TLS1_2_VERSION, TLS1_2_VERSION,
                                  TLS1_3_VERSION};
    static const char *cipher[] = {"TLS_AES_128_GCM_SHA256", "PSK-AES128-CBC-SHA256",
                                   "PSK-AES128-GCM-SHA256", "PSK-AES128-CCM8",
                                   "TLS_AES_128_GCM_SHA256"};
    for (int i = 0; i < 5; i++) {
        uint8_t sexp[48], cexp[48];
        SSL *conn = NULL;
        f->events = 0;
        assert_true(handshake(server, plain[i], sexp, cexp, &conn));
        assert_memory_equal(sexp, cexp, 48);
        assert_int_equal(SSL_version(conn), version[i]);
        assert_string_equal(SSL_get_cipher_name(conn), cipher[i]);
        assert_string_equal(m2mhsm_tls_ssl_identity(conn), "tls-kpm");
        assert_int_equal(f->last, M2MHSM_TLS_PSK_ACCEPTED);
        assert_true(f->events >= 1);
        SSL_free(conn);
    }
    /* Negative controls, both versions: a wrong key, an unknown identity. */
    uint8_t sexp[48], cexp[48];
    peer_psk[9] ^= 1;
    assert_false(handshake(server, plain[0], sexp, cexp, NULL));
    assert_false(handshake(server, plain[1], sexp, cexp, NULL));
    peer_psk[9] ^= 1;
    peer_identity = "no-such-kpm";
    assert_false(handshake(server, plain[0], sexp, cexp, NULL));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_UNKNOWN);
    assert_false(handshake(server, plain[1], sexp, cexp, NULL));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_UNKNOWN);
    peer_identity = "tls-kpm";
    /* Our clients: tls:// (1.2 only) and tls13:// (1.3 only) both reach the same context. */
    static const m2mhsm_tls_proto client_proto[] = {M2MHSM_TLS_1_2, M2MHSM_TLS_1_3};
    for (int i = 0; i < 2; i++) {
        m2mhsm_tls_profile cp = {.role = M2MHSM_TLS_CLIENT,
                                 .proto = client_proto[i],
                                 .kind = M2MHSM_KIND_KPM,
                                 .identity = "tls-kpm"};
        SSL_CTX *client = NULL;
        SSL *conn = NULL;
        assert_int_equal(m2mhsm_tls_ctx_new(f->tls, &cp, &client), M2MHSM_OK);
        assert_true(handshake(server, client, sexp, cexp, &conn));
        assert_memory_equal(sexp, cexp, 48);
        assert_int_equal(SSL_version(conn), i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION);
        SSL_free(conn);
        SSL_CTX_free(client);
    }
    for (int i = 0; i < 5; i++)
        SSL_CTX_free(plain[i]);
    SSL_CTX_free(server);
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, "tls-kpm", NULL), M2MHSM_OK);
}

/* The registry: many records, each handle resolves to its own; a forged tag, an unknown
 * slot or a changed magic resolves to nothing. */
static void test_handles_resolve_their_own_record_and_refuse_forgeries(void **state)
{
    tls_fixture *f = *state;
    m2mhsm_handles *h = NULL;
    assert_int_equal(m2mhsm_handles_new(f->fs.ks, &h), M2MHSM_OK);
    enum { N = 300 };
    static uint8_t handles[N][M2MHSM_HANDLE_LEN];
    for (int i = 0; i < N; i++) {
        m2mhsm_record rec = {.kind = M2MHSM_KIND_KM, .expiry = M2MHSM_NEVER};
        memcpy(rec.record_id, &i, sizeof(i));
        rec.record_id[15] = 0x5a;
        for (int k = 0; k < M2MHSM_FORM_COUNT; k++)
            ks_obj(&rec)->key[k] = CK_INVALID_HANDLE; /* no copies: resolve returns these */
        snprintf(rec.identity, sizeof(rec.identity), "rec-%d", i);
        assert_int_equal(m2mhsm_handles_issue(h, &rec, handles[i]), M2MHSM_OK);
    }
    for (int i = 0; i < N; i++) {
        m2mhsm_record out;
        char want[32];
        assert_int_equal(m2mhsm_handles_resolve(h, handles[i], M2MHSM_HANDLE_LEN, &out), M2MHSM_OK);
        snprintf(want, sizeof(want), "rec-%d", i);
        assert_string_equal(out.identity, want);
    }
    m2mhsm_record out;
    uint8_t forged[M2MHSM_HANDLE_LEN];
    memcpy(forged, handles[7], sizeof(forged));
    forged[M2MHSM_HANDLE_LEN - 1] ^= 1; /* tag */
    assert_int_equal(m2mhsm_handles_resolve(h, forged, sizeof(forged), &out), M2MHSM_E_NOT_FOUND);
    memcpy(forged, handles[7], sizeof(forged));
    forged[M2MHSM_HANDLE_MAGIC_LEN + 2] = 0x7f; /* slot far out of range */
    assert_int_equal(m2mhsm_handles_resolve(h, forged, sizeof(forged), &out), M2MHSM_E_NOT_FOUND);
    memcpy(forged, handles[7], sizeof(forged));
    forged[0] ^= 1; /* not a handle at all */
    assert_int_equal(m2mhsm_handles_resolve(h, forged, sizeof(forged), &out), M2MHSM_E_NOT_FOUND);
    /* The same record issued again gets the same handle. */
    m2mhsm_record again = {.kind = M2MHSM_KIND_KM, .expiry = M2MHSM_NEVER};
    int seven = 7;
    memcpy(again.record_id, &seven, sizeof(seven));
    again.record_id[15] = 0x5a;
    for (int k = 0; k < M2MHSM_FORM_COUNT; k++)
        ks_obj(&again)->key[k] = CK_INVALID_HANDLE;
    uint8_t same[M2MHSM_HANDLE_LEN];
    assert_int_equal(m2mhsm_handles_issue(h, &again, same), M2MHSM_OK);
    assert_memory_equal(same, handles[7], M2MHSM_HANDLE_LEN);
    /* A revoked (erased) record's handle resolves to nothing; issued again, it differs. */
    m2mhsm_handles_revoke(h, again.record_id);
    assert_int_equal(m2mhsm_handles_resolve(h, same, sizeof(same), &out), M2MHSM_E_NOT_FOUND);
    uint8_t fresh[M2MHSM_HANDLE_LEN];
    assert_int_equal(m2mhsm_handles_issue(h, &again, fresh), M2MHSM_OK);
    assert_memory_not_equal(fresh, same, M2MHSM_HANDLE_LEN);
    assert_int_equal(m2mhsm_handles_resolve(h, fresh, sizeof(fresh), &out), M2MHSM_OK);
    /* A handle whose key expires computes nothing from that instant, even mid-handshake. */
    again.expiry = f->fs.now + 5;
    assert_int_equal(m2mhsm_handles_issue(h, &again, same), M2MHSM_OK);
    f->fs.now += 4;
    assert_int_equal(m2mhsm_handles_resolve(h, same, sizeof(same), &out), M2MHSM_OK);
    f->fs.now += 1;
    assert_int_equal(m2mhsm_handles_resolve(h, same, sizeof(same), &out), M2MHSM_E_EXPIRED);
    f->fs.now -= 5;
    m2mhsm_handles_free(h);
}

static void test_export_goes_straight_into_a_ke_record(void **state)
{
    tls_fixture *f = *state;
    given_tls_kpm(f, M2MHSM_NEVER);
    SSL_CTX *server = token_ctx(f, M2MHSM_TLS_SERVER, M2MHSM_KIND_KPM, NULL);
    SSL_CTX *client = plain_ctx(0, "PSK-AES128-CBC-SHA256");
    uint8_t sexp[48], cexp[48];
    SSL *s = NULL;
    assert_true(handshake(server, client, sexp, cexp, &s));
    m2mhsm_enrolment e = {"tls-kpm",
                          "mef.example.com",
                          "//sp.example.com/cse1/Ctls",
                          "maf.example.com",
                          {M2MHSM_EXPIRY_DURATION, 600}};
    m2mhsm_record ke;
    assert_int_equal(m2mhsm_tls_export_ke(s, f->fs.ks, &e, &ke), M2MHSM_OK);
    char want[80];
    for (int i = 0; i < 16; i++)
        sprintf(want + 2 * i, "%02X", cexp[i]);
    strcpy(want + 32, "@mef.example.com");
    assert_string_equal(ke.identity, want); /* the client's RelativeKeID (10.3.1, 10.3.4) */
    assert_int_equal(ke.expiry, f->fs.now + 600);
    SSL_free(s);
    SSL_CTX_free(client);
    SSL_CTX_free(server);
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, "tls-kpm", NULL), M2MHSM_OK);
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, ke.identity, NULL), M2MHSM_OK);
}

/* Objects of any kind (token or session) labelled `label`. */
static size_t objects_labelled(tls_fixture *f, const char *label)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s;
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(f->fs.tok);
    assert_int_equal(m2mhsm_token_session_get(f->fs.tok, &s), M2MHSM_OK);
    assert_int_equal(fn->C_FindObjectsInit(s, &t, 1), CKR_OK);
    assert_int_equal(fn->C_FindObjects(s, h, 8, &n), CKR_OK);
    assert_int_equal(fn->C_FindObjectsFinal(s), CKR_OK);
    m2mhsm_token_session_put(f->fs.tok, s);
    return n;
}

static void test_expired_identity_is_refused_and_its_enrolee_erased(void **state)
{
    tls_fixture *f = *state;
    const char *enrolee = "//sp.example.com/cse1/Cexp";
    m2mhsm_record ke = fixture_enrol(&f->fs, "exp-kpm", enrolee, 0xe1, 100);
    m2mhsm_record km;
    assert_int_equal(m2mhsm_keystore_derive_store(f->fs.ks, &ke, M2MHSM_DERIVE_KM,
                                                  "maf.example.com", M2MHSM_NEVER, &km),
                     M2MHSM_OK);
    /* The device side holds Km in memory: the check value of the fixture Ke. */
    assert_int_equal(
        m2mhsm_keystore_derive(f->fs.ks, &ke, M2MHSM_DERIVE_KM, "maf.example.com", peer_psk),
        M2MHSM_OK);
    peer_identity = km.identity;
    SSL_CTX *server = token_ctx(f, M2MHSM_TLS_SERVER, M2MHSM_KIND_KM, NULL);
    SSL_CTX *client = plain_ctx(0, "PSK-AES128-CBC-SHA256");
    uint8_t sexp[48], cexp[48];
    f->fs.now += 99;
    assert_true(handshake(server, client, sexp, cexp, NULL));
    f->fs.now += 1; /* at the expiry instant */
    assert_false(handshake(server, client, sexp, cexp, NULL));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_EXPIRED);
    assert_int_equal(f->erased, 2); /* the Enrolee's Ke and Km */
    m2mhsm_record r;
    assert_int_equal(
        m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_KM, km.identity, strlen(km.identity), &r),
        M2MHSM_E_NOT_FOUND);
    assert_int_equal(
        m2mhsm_keystore_lookup(f->fs.ks, M2MHSM_KIND_KE, ke.identity, strlen(ke.identity), &r),
        M2MHSM_E_NOT_FOUND);
    /* Every stored object of the Km went, though the server signed with session copies. */
    static const char *forms[] = {"raw", "tls12-pms", "tls13-es"};
    for (int i = 0; i < 3; i++) {
        char label[M2MHSM_LABEL_BUF];
        snprintf(label, sizeof(label), "m2mhsm:km:%s:%s", km.identity, forms[i]);
        assert_int_equal(objects_labelled(f, label), 0);
    }
    peer_identity = "tls-kpm";
    SSL_CTX_free(client);
    SSL_CTX_free(server);
}

/* The in-memory session copies this process holds (of both TLS forms of each key used). */
static size_t session_copies(tls_fixture *f)
{
    return objects_labelled(f, "m2mhsm-session-copy");
}

typedef struct {
    int erased, elsewhere;
} gone_count;

static void count_gone(void *arg, const m2mhsm_record *rec, m2mhsm_gone how)
{
    gone_count *g = arg;
    if (rec->kind != M2MHSM_KIND_KM)
        return;
    g->erased += how == M2MHSM_GONE_ERASED;
    g->elsewhere += how == M2MHSM_GONE_ELSEWHERE;
}

/* A Km that a server handshake has used (so it holds session copies), with the device's
 * Km in peer_psk and its KeID as peer_identity. */
static m2mhsm_record used_km(tls_fixture *f, SSL_CTX *server, const char *kpm, const char *enrolee,
                             uint8_t tag)
{
    m2mhsm_record ke = fixture_enrol(&f->fs, kpm, enrolee, tag, 1000), km;
    assert_int_equal(m2mhsm_keystore_derive_store(f->fs.ks, &ke, M2MHSM_DERIVE_KM,
                                                  "maf.example.com", M2MHSM_NEVER, &km),
                     M2MHSM_OK);
    assert_int_equal(
        m2mhsm_keystore_derive(f->fs.ks, &ke, M2MHSM_DERIVE_KM, "maf.example.com", peer_psk),
        M2MHSM_OK);
    static char identity[M2MHSM_ID_MAX + 1];
    strcpy(identity, km.identity);
    peer_identity = identity;
    SSL_CTX *client = plain_ctx(0, "PSK-AES128-CBC-SHA256");
    uint8_t sexp[48], cexp[48];
    assert_true(handshake(server, client, sexp, cexp, NULL));
    SSL_CTX_free(client);
    assert_int_equal(session_copies(f), 2); /* of its tls12-pms and tls13-es forms */
    return km;
}

/* Every erase, whatever its cause, revokes the session copies of what it erased: at once for
 * this store's own erasures (here the "all credentials of the Enrolee" rule and a sweep);
 * at the next sweep for another process's (a second store on the token plays the CLI). */
static void test_every_erase_revokes_session_copies(void **state)
{
    tls_fixture *f = *state;
    gone_count seen = {0, 0};
    assert_int_equal(m2mhsm_keystore_watch(f->fs.ks, count_gone, &seen), M2MHSM_OK);
    SSL_CTX *server = token_ctx(f, M2MHSM_TLS_SERVER, M2MHSM_KIND_KM, NULL);
    SSL_CTX *client = plain_ctx(0, "PSK-AES128-CBC-SHA256");
    uint8_t sexp[48], cexp[48];

    m2mhsm_record km = used_km(f, server, "rv-kpm-1", "//sp.example.com/cse1/Crv1", 0xa1);
    assert_int_equal(m2mhsm_keystore_erase_enrolee(f->fs.ks, "//sp.example.com/cse1/Crv1", NULL),
                     M2MHSM_OK);
    assert_int_equal(session_copies(f), 0);
    assert_int_equal(seen.erased, 1);

    km = used_km(f, server, "rv-kpm-2", "//sp.example.com/cse1/Crv2", 0xa2);
    f->fs.now += 1000; /* the Enrolment Expiry */
    size_t n = 0;
    assert_int_equal(m2mhsm_keystore_sweep(f->fs.ks, &n), M2MHSM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(session_copies(f), 0);
    assert_int_equal(seen.erased, 2);
    f->fs.now -= 1000;

    km = used_km(f, server, "rv-kpm-3", "//sp.example.com/cse1/Crv3", 0xa3);
    fixture_store other = {.now = f->fs.now};
    fixture_store_open(&other, &token);
    assert_int_equal(m2mhsm_keystore_erase_id(other.ks, km.identity, &n), M2MHSM_OK);
    fixture_store_close(&other);
    assert_int_equal(session_copies(f), 2); /* this process has not learnt of it yet */
    assert_int_equal(seen.elsewhere, 0);
    assert_int_equal(m2mhsm_keystore_sweep(f->fs.ks, &n), M2MHSM_OK);
    assert_int_equal(n, 0); /* nothing of its own to erase, but it learnt of the erase */
    assert_int_equal(session_copies(f), 0);
    assert_int_equal(seen.elsewhere, 1);
    assert_false(handshake(server, client, sexp, cexp, NULL));
    assert_int_equal(f->last, M2MHSM_TLS_PSK_UNKNOWN);

    m2mhsm_keystore_unwatch(f->fs.ks, count_gone, &seen);
    assert_int_equal(m2mhsm_keystore_erase_enrolee(f->fs.ks, "//sp.example.com/cse1/Crv3", NULL),
                     M2MHSM_OK);
    peer_identity = "tls-kpm";
    SSL_CTX_free(client);
    SSL_CTX_free(server);
}

/* An admit hook has the last say on a valid key (a MEF refuses an Enrolee no longer
 * configured): refused as unknown, and the observer hears why. */
static int admit_none(void *arg, const m2mhsm_record *rec)
{
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

static void test_admit_hook_refuses_a_valid_key(void **state)
{
    tls_fixture *f = *state;
    int asked = 0;
    given_tls_kpm(f, M2MHSM_NEVER);
    m2mhsm_tls_profile p = {.role = M2MHSM_TLS_SERVER,
                            .proto = M2MHSM_TLS_1_2,
                            .kind = M2MHSM_KIND_KPM,
                            .observer = observer,
                            .observer_arg = f,
                            .admit = admit_none,
                            .admit_arg = &asked};
    SSL_CTX *server = NULL, *client = plain_ctx(0, "PSK-AES128-CBC-SHA256");
    assert_int_equal(m2mhsm_tls_ctx_new(f->tls, &p, &server), M2MHSM_OK);
    uint8_t sexp[48], cexp[48];
    assert_false(handshake(server, client, sexp, cexp, NULL));
    assert_int_equal(asked, 1);
    assert_int_equal(f->last, M2MHSM_TLS_PSK_REFUSED);
    SSL_CTX_free(client);
    SSL_CTX_free(server);
    assert_int_equal(m2mhsm_keystore_erase_id(f->fs.ks, "tls-kpm", NULL), M2MHSM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_server_completes_handshakes_with_a_plain_client,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_client_completes_a_handshake_with_a_plain_server,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_goes_straight_into_a_ke_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls13_with_the_psk_in_the_token_both_ways, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_one_server_context_serves_tls12_and_tls13, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_handles_resolve_their_own_record_and_refuse_forgeries,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_client_sends_sni_and_a_server_sees_open_connections_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_erase_revokes_session_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_hook_refuses_a_valid_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_identity_is_refused_and_its_enrolee_erased,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
