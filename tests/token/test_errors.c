/* A handshake that fails because the token does says why on the OpenSSL error queue: the
 * provider raises the failed PKCS#11 call and its CKR through the core (engine/err.c). The
 * token fails through the fault module (tests/fault/m2mfault.c), in a child process that
 * loads it with the fault in its environment. */
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
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <m2mhsm/tls.h>

#include "fixture.h"

#define KPM_ID "errors-kpm"

static fixture_token token;

static unsigned int client_psk(SSL *ssl, const char *hint, char *id, unsigned int id_len,
                               unsigned char *psk, unsigned int psk_len)
{
    (void)ssl;
    (void)hint;
    (void)psk_len;
    snprintf(id, id_len, "%s", KPM_ID);
    memcpy(psk, fixture_key32, 32);
    return 32;
}

/* Drive a token server and a plain client in memory until the server fails or both are
 * done; 1 if the server failed with an SSL error, whose queue is then left as it was. */
static int server_fails(SSL *server, SSL *client)
{
    BIO *bs, *bc;
    if (BIO_new_bio_pair(&bs, 0, &bc, 0) != 1)
        return 0;
    SSL_set_bio(server, bs, bs);
    SSL_set_bio(client, bc, bc);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    for (int i = 0; i < 20; i++) {
        SSL_do_handshake(client); /* libssl clears the queue at each call: client first */
        int rs = SSL_do_handshake(server);
        if (rs == 1)
            return 0;
        if (SSL_get_error(server, rs) == SSL_ERROR_SSL)
            return 1;
    }
    return 0;
}

/* In the child: CKR_FUNCTION_FAILED (an error of the operation, not of a lost token, which
 * would be retried after a re-attach) at the first C_Sign, which is the server's TLS1-PRF. 0 if
 * the handshake failed and the queue names the call, the CKR and the provider. */
static int handshake_on_a_failing_token(void)
{
    setenv("M2M_FAULT_MODULE", getenv("M2MHSM_MODULE"), 1);
    setenv("M2M_FAULT_FUNC", "C_Sign", 1);
    setenv("M2M_FAULT_K", "1", 1);
    setenv("M2M_FAULT_ACTION", "CKR_FUNCTION_FAILED", 1);
    setenv("M2MHSM_MODULE", M2M_FAULT_PATH, 1);
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_tls *tls = NULL;
    SSL_CTX *sctx = NULL, *cctx = SSL_CTX_new(TLS_client_method());
    m2mhsm_tls_profile p = {
        .role = M2MHSM_TLS_SERVER, .proto = M2MHSM_TLS_1_2, .kind = M2MHSM_KIND_KPM};
    if (m2mhsm_tls_new(fs.ks, &tls) != M2MHSM_OK ||
        m2mhsm_tls_ctx_new(tls, &p, &sctx) != M2MHSM_OK || cctx == NULL)
        return 2;
    SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(cctx, "PSK-AES128-CBC-SHA256");
    SSL_CTX_set_psk_client_callback(cctx, client_psk);
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    if (!server_fails(s, c))
        return 3;
    BIO *mem = BIO_new(BIO_s_mem());
    ERR_print_errors(mem);
    char *text = NULL;
    long len = BIO_get_mem_data(mem, &text);
    printf("ERR_print_errors after the failed handshake:\n%.*s", (int)len, text);
    int named = strstr(text, "CKR_FUNCTION_FAILED") != NULL && strstr(text, "C_Sign") != NULL &&
                strstr(text, "m2mhsm") != NULL && strstr(text, "token operation failed") != NULL;
    BIO_free(mem);
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    m2mhsm_tls_free(tls);
    fixture_store_close(&fs);
    return named ? 0 : 4;
}

static void test_failed_handshake_names_the_ckr_on_the_error_queue(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);
        int rc = handshake_on_a_failing_token();
        fflush(NULL);
        _exit(rc);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* The key, stored by this process, which then lets go of the module before the child
 * loads it under the fault module. */
static int suite_setup(void **state)
{
    (void)state;
    fixture_softhsm_setup("errors");
    fixture_token_make(&token, "errors");
    fixture_store fs = {0};
    fixture_store_open(&fs, &token);
    m2mhsm_status st =
        m2mhsm_keystore_import_kpm(fs.ks, KPM_ID, fixture_key32, 32, M2MHSM_NEVER, NULL);
    fixture_store_close(&fs);
    return st == M2MHSM_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_handshake_names_the_ckr_on_the_error_queue),
    };
    return cmocka_run_group_tests(tests, suite_setup, NULL);
}
