/*
 * A TLS-PSK server that knows nothing of libm2mhsm: OpenSSL loads the m2mhsm provider
 * from openssl.cnf (OPENSSL_CONF), which opens the token itself; the PSK callback asks the
 * provider for a handle with OSSL_PROVIDER_get_params. Accepts one TCP connection and
 * prints "ok identity=<id>" or "fail".   cnf_peer PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>

static OSSL_PROVIDER *prov;
static char seen[200] = "-";

static unsigned int server_psk(SSL *ssl, const char *identity, unsigned char *psk,
                               unsigned int max_psk_len)
{
    (void)ssl;
    char key[300];
    unsigned char handle[64];
    snprintf(seen, sizeof(seen), "%s", identity);
    snprintf(key, sizeof(key), "m2mhsm-psk-handle:kpm:%s", identity);
    OSSL_PARAM p[] = {OSSL_PARAM_octet_string(key, handle, sizeof(handle)), OSSL_PARAM_END};
    if (!OSSL_PROVIDER_get_params(prov, p) || p[0].return_size > max_psk_len)
        return 0;
    memcpy(psk, handle, p[0].return_size);
    return (unsigned int)p[0].return_size;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    /* The provider was loaded and activated by the configuration; take a reference. */
    if ((prov = OSSL_PROVIDER_load(NULL, "m2mhsm")) == NULL) {
        fprintf(stderr, "cnf_peer: the m2mhsm provider did not load from OPENSSL_CONF\n");
        return 1;
    }
    SSL_CTX *ctx = SSL_CTX_new_ex(NULL, "?provider=m2mhsm", TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, "PSK-AES128-CBC-SHA256");
    SSL_CTX_set_psk_server_callback(ctx, server_psk);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4) != 0)
        return 1;
    printf("listening\n");
    fflush(stdout);
    int fd = accept(lfd, NULL, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    int ok = SSL_accept(ssl) == 1;
    printf(ok ? "ok identity=%s\n" : "fail identity=%s\n", seen);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    close(lfd);
    SSL_CTX_free(ctx);
    OSSL_PROVIDER_unload(prov);
    return ok ? 0 : 1;
}
