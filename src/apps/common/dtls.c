/* A DTLS 1.2 service address, shared by the MEF's bootstrap and the MAF: one UDP socket on
 * which DTLSv1_listen answers every new peer with a HelloVerifyRequest, and for each peer that
 * returns its cookie a socket of its own, bound to the same address and connected to that
 * peer, so that the kernel routes the association's datagrams there and the connection runs
 * like a TCP one in conn.c. */
#include "app.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

struct app_dtls {
    SSL_CTX *ctx;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int fd;
    struct event *ev;
    SSL *pending; /* listening for the next ClientHello */
    app_dtls_accept accept;
    void *arg;
};

/* The cookies' key: random per process, so a restart invalidates cookies in flight (the
 * peer just retries). */
static uint8_t cookie_secret[32];
static int cookie_secret_set;

/* DTLS cookies (RFC 6347 4.2.1): HMAC of the peer's address under the process's secret, so a
 * spoofed source address cannot make a server hold state or answer with a full flight. */
static int peer_cookie(SSL *ssl, unsigned char out[32])
{
    unsigned char raw[16 + 2];
    size_t alen = 0, olen = 0;
    BIO_ADDR *peer = BIO_ADDR_new();
    int ok = peer != NULL && BIO_dgram_get_peer(SSL_get_rbio(ssl), peer) > 0 &&
             BIO_ADDR_rawaddress(peer, NULL, &alen) && alen <= 16 &&
             BIO_ADDR_rawaddress(peer, raw, &alen);
    if (ok) {
        unsigned short port = BIO_ADDR_rawport(peer);
        memcpy(raw + alen, &port, sizeof(port));
        ok = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, cookie_secret, sizeof(cookie_secret),
                       raw, alen + sizeof(port), out, 32, &olen) != NULL;
    }
    BIO_ADDR_free(peer);
    return ok && olen == 32;
}

static int cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    if (!peer_cookie(ssl, cookie))
        return 0;
    *len = 32;
    return 1;
}

static int cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    unsigned char want[32];
    return len == 32 && peer_cookie(ssl, want) && CRYPTO_memcmp(want, cookie, 32) == 0;
}

static SSL *listening_ssl(app_dtls *d)
{
    SSL *ssl = NULL;
    BIO *bio = BIO_new_dgram(d->fd, BIO_NOCLOSE);
    if (bio == NULL || m2mhsm_tls_ssl_new(d->ctx, &ssl) != M2MHSM_OK) {
        BIO_free(bio);
        return NULL;
    }
    SSL_set_bio(ssl, bio, bio);
    SSL_set_options(ssl, SSL_OP_COOKIE_EXCHANGE);
    return ssl;
}

/* A socket of its own for a peer that returned our cookie: bound to the service address and
 * connected to the peer, so the kernel routes its datagrams there. */
static int peer_socket(const app_dtls *d, const BIO_ADDR *peer, char *name, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    size_t alen = sizeof(struct in6_addr);
    memset(&ss, 0, sizeof(ss));
    if (BIO_ADDR_family(peer) == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = BIO_ADDR_rawport(peer);
        BIO_ADDR_rawaddress(peer, &in->sin_addr, &alen);
        sl = sizeof(*in);
    } else if (BIO_ADDR_family(peer) == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = BIO_ADDR_rawport(peer);
        BIO_ADDR_rawaddress(peer, &in6->sin6_addr, &alen);
        sl = sizeof(*in6);
    } else {
        return -1;
    }
    app_addr_format((struct sockaddr *)&ss, name, cap);
    int fd = app_listen(&d->addr, d->addr_len, SOCK_DGRAM);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* The pending SSL read a ClientHello with a valid cookie: move it to the peer's socket and
 * hand it over. */
static void hand_over(app_dtls *d)
{
    BIO_ADDR *peer = BIO_ADDR_new();
    char name[64];
    SSL *ssl = d->pending;
    d->pending = NULL;
    int fd = peer != NULL && BIO_dgram_get_peer(SSL_get_rbio(ssl), peer) > 0
                 ? peer_socket(d, peer, name, sizeof(name))
                 : -1;
    if (fd < 0) {
        SSL_free(ssl);
    } else {
        BIO *bio = SSL_get_rbio(ssl);
        BIO_set_fd(bio, fd, BIO_NOCLOSE);
        BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, peer);
        d->accept(d->arg, ssl, fd, name);
    }
    BIO_ADDR_free(peer);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_dtls *d = arg;
    for (;;) {
        if (d->pending == NULL && (d->pending = listening_ssl(d)) == NULL)
            return;
        BIO_ADDR *peer = BIO_ADDR_new();
        int r = peer != NULL ? DTLSv1_listen(d->pending, peer) : -1;
        BIO_ADDR_free(peer);
        if (r == 1) {
            hand_over(d);
            continue;
        }
        if (r < 0) { /* garbage: start over with a fresh listening SSL */
            SSL_free(d->pending);
            d->pending = NULL;
        }
        ERR_clear_error();
        return; /* 0: nothing more to read now */
    }
}

app_dtls *app_dtls_listen(struct event_base *base, SSL_CTX *ctx, const char *address,
                          app_dtls_accept accept, void *arg)
{
    if (!cookie_secret_set && RAND_priv_bytes(cookie_secret, sizeof(cookie_secret)) != 1)
        return NULL;
    cookie_secret_set = 1;
    app_dtls *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->ctx = ctx;
    d->accept = accept;
    d->arg = arg;
    d->fd = -1;
    SSL_CTX_set_cookie_generate_cb(ctx, cookie_generate);
    SSL_CTX_set_cookie_verify_cb(ctx, cookie_verify);
    if (app_addr_parse(address, &d->addr, &d->addr_len) != 0 ||
        (d->fd = app_listen(&d->addr, d->addr_len, SOCK_DGRAM)) < 0 ||
        (d->ev = event_new(base, d->fd, EV_READ | EV_PERSIST, on_readable, d)) == NULL ||
        event_add(d->ev, NULL) != 0) {
        app_dtls_free(d);
        return NULL;
    }
    return d;
}

void app_dtls_free(app_dtls *d)
{
    if (d == NULL)
        return;
    if (d->ev != NULL)
        event_free(d->ev);
    if (d->fd >= 0)
        close(d->fd);
    SSL_free(d->pending);
    free(d);
}
