/*
 * A TLS-PSK peer whose key is in the token, for the interop scripts: a server that accepts
 * N connections (TCP, or one DTLS association per datagram peer) and a client that makes
 * one. It holds no PSK bytes: only the token. A server on --port 0 takes a port the kernel
 * chooses, so that parallel tests cannot collide, and names it in its "listening port=N"
 * line. --clock-offset S runs the key store's clock S seconds ahead: a test sees a key past
 * its expiry without waiting for it. Per connection it prints one line:
 *   ok identity=<id> cipher=<suite> export-sha256=<hex of SHA-256(EXPORTER-oneM2M-Bootstrap)>
 *   fail <reason>
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <m2mhsm/tls.h>

typedef struct {
    const char *role, *uri, *pin_source, *lock_file, *identity, *kind;
    int port, count, dtls, tls13;
    long clock_offset;
} args;

/* SIGTERM (a script's stop_server) ends a server that waits for a peer in an orderly way:
 * the token is closed, its sessions with it. Some modules count the sessions of a process
 * that dies in shared state and refuse C_InitToken on that slot until their daemon restarts
 * (opencryptoki: docs/tokens.md). The handler wakes the blocked socket call. */
static volatile sig_atomic_t stopping;
static volatile sig_atomic_t live_fd = -1;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
    if (live_fd >= 0)
        shutdown(live_fd, SHUT_RDWR);
}

static void stop_on_term(void)
{
    struct sigaction sa = {.sa_handler = on_term}; /* no SA_RESTART: accept() returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
}

static m2mhsm_time shifted_clock(void *arg)
{
    return m2mhsm_clock_system(NULL) + *(const long *)arg;
}

static m2mhsm_kind kind_of(const char *s)
{
    if (strcmp(s, "km") == 0)
        return M2MHSM_KIND_KM;
    if (strcmp(s, "kpsa") == 0)
        return M2MHSM_KIND_KPSA;
    return M2MHSM_KIND_KPM;
}

static const char *event_name(m2mhsm_tls_psk_event ev)
{
    switch (ev) {
    case M2MHSM_TLS_PSK_ACCEPTED:
        return "accepted";
    case M2MHSM_TLS_PSK_UNKNOWN:
        return "unknown";
    case M2MHSM_TLS_PSK_EXPIRED:
        return "expired";
    case M2MHSM_TLS_PSK_ERROR:
        return "error";
    case M2MHSM_TLS_PSK_REFUSED:
        return "refused";
    }
    return "?";
}

/* The identity of the connection being reported: libssl's SSL_get_psk_identity is NULL
 * for TLS 1.3 external PSKs, so the server takes it from the observer. */
static char last_identity[300] = "-";

static void observer(void *arg, m2mhsm_tls_psk_event ev, const char *identity,
                     const m2mhsm_record *rec, size_t erased)
{
    (void)arg;
    (void)rec;
    snprintf(last_identity, sizeof(last_identity), "%s", identity);
    printf("psk %s identity=%s erased=%zu\n", event_name(ev), identity, erased);
    fflush(stdout);
}

static void report(SSL *ssl, int ok)
{
    if (!ok) {
        unsigned long e = ERR_peek_last_error();
        printf("fail %s\n", e ? ERR_reason_error_string(e) : "handshake");
        ERR_clear_error();
        fflush(stdout);
        return;
    }
    uint8_t exp[48], md[32];
    const char *l = "EXPORTER-oneM2M-Bootstrap";
    SSL_export_keying_material(ssl, exp, sizeof(exp), l, strlen(l), NULL, 0, 0);
    EVP_Digest(exp, sizeof(exp), md, NULL, EVP_sha256(), NULL);
    OPENSSL_cleanse(exp, sizeof(exp));
    const char *id = SSL_get_psk_identity(ssl);
    printf("ok identity=%s cipher=%s export-sha256=", id ? id : last_identity,
           SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
    for (int i = 0; i < 32; i++)
        printf("%02x", md[i]);
    printf("\n");
    fflush(stdout);
}

static int make_socket(const args *a, int listening)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)a->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, a->dtls ? SOCK_DGRAM : SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (listening) {
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || (!a->dtls && listen(fd, 16) != 0))
            return -1;
    } else if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        return -1;
    }
    return fd;
}

/* A DTLS server without cookies: pin the socket to the first datagram's sender. */
static int dtls_accept_peer(int fd)
{
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);
    char b;
    if (recvfrom(fd, &b, 1, MSG_PEEK, (struct sockaddr *)&peer, &len) < 0)
        return -1;
    return connect(fd, (struct sockaddr *)&peer, len);
}

/* The port a bound socket has (the kernel's choice for port 0). */
static int bound_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    return getsockname(fd, (struct sockaddr *)&sa, &len) == 0 ? ntohs(sa.sin_port) : -1;
}

static int serve(SSL_CTX *ctx, const args *given)
{
    args bound = *given;
    const args *a = &bound;
    int lfd = make_socket(a, 1);
    if (lfd < 0 || (bound.port = bound_port(lfd)) <= 0)
        return 1;
    printf("listening port=%d\n", a->port);
    fflush(stdout);
    for (int i = 0; i < a->count && !stopping; i++) {
        int fd = lfd;
        if (a->dtls) {
            if (i > 0 && (lfd = fd = make_socket(a, 1)) < 0)
                return 1;
            live_fd = fd;
            if (stopping || dtls_accept_peer(fd) != 0)
                return 1;
        } else {
            live_fd = lfd;
            if (stopping || (fd = accept(lfd, NULL, NULL)) < 0)
                return 1;
            live_fd = fd;
            if (stopping)
                shutdown(fd, SHUT_RDWR);
        }
        SSL *ssl = SSL_new(ctx);
        BIO *bio = a->dtls ? BIO_new_dgram(fd, BIO_NOCLOSE) : BIO_new_socket(fd, BIO_NOCLOSE);
        SSL_set_bio(ssl, bio, bio);
        report(ssl, SSL_accept(ssl) == 1);
        SSL_shutdown(ssl);
        SSL_free(ssl);
        live_fd = a->dtls ? -1 : lfd;
        close(fd);
    }
    live_fd = -1;
    if (!a->dtls)
        close(lfd);
    return stopping ? 1 : 0;
}

static int connect_once(SSL_CTX *ctx, const args *a)
{
    int fd = make_socket(a, 0);
    if (fd < 0)
        return 1;
    SSL *ssl = SSL_new(ctx);
    BIO *bio = a->dtls ? BIO_new_dgram(fd, BIO_NOCLOSE) : BIO_new_socket(fd, BIO_NOCLOSE);
    SSL_set_bio(ssl, bio, bio);
    int ok = SSL_connect(ssl) == 1;
    report(ssl, ok);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"token", required_argument, NULL, 't'},
        {"pin-source", required_argument, NULL, 'p'},
        {"lock-file", required_argument, NULL, 'l'},
        {"identity", required_argument, NULL, 'i'},
        {"kind", required_argument, NULL, 'k'},
        {"port", required_argument, NULL, 'P'},
        {"count", required_argument, NULL, 'n'},
        {"dtls", no_argument, NULL, 'd'},
        {"tls13", no_argument, NULL, '3'},
        {"clock-offset", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    args a = {.kind = "kpm", .count = 1};
    int c;
    if (argc < 2)
        return 2;
    a.role = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            a.uri = optarg;
            break;
        case 'p':
            a.pin_source = optarg;
            break;
        case 'l':
            a.lock_file = optarg;
            break;
        case 'i':
            a.identity = optarg;
            break;
        case 'k':
            a.kind = optarg;
            break;
        case 'P':
            a.port = atoi(optarg);
            break;
        case 'n':
            a.count = atoi(optarg);
            break;
        case 'd':
            a.dtls = 1;
            break;
        case '3':
            a.tls13 = 1;
            break;
        case 'o':
            a.clock_offset = atol(optarg);
            break;
        default:
            return 2;
        }
    }
    m2mhsm_token_config cfg = {
        .token_uri = a.uri, .pin_source = a.pin_source, .lock_file = a.lock_file};
    m2mhsm_keystore_options ks_opts = {.clock = shifted_clock, .clock_arg = &a.clock_offset};
    m2mhsm_token *tok = NULL;
    m2mhsm_keystore *ks = NULL;
    m2mhsm_tls *tls = NULL;
    SSL_CTX *ctx = NULL;
    int server = strcmp(a.role, "server") == 0;
    m2mhsm_tls_profile p = {server ? M2MHSM_TLS_SERVER : M2MHSM_TLS_CLIENT,
                            a.dtls    ? M2MHSM_DTLS_1_2
                            : a.tls13 ? M2MHSM_TLS_1_3
                                      : M2MHSM_TLS_1_2,
                            kind_of(a.kind),
                            a.identity,
                            NULL,
                            observer,
                            NULL,
                            NULL,
                            NULL,
                            NULL,
                            NULL};
    if (m2mhsm_token_open(&cfg, &tok) != M2MHSM_OK ||
        m2mhsm_keystore_open(tok, &ks_opts, &ks, NULL) != M2MHSM_OK ||
        m2mhsm_tls_new(ks, &tls) != M2MHSM_OK || m2mhsm_tls_ctx_new(tls, &p, &ctx) != M2MHSM_OK) {
        fprintf(stderr, "tls_peer: %s\n", m2mhsm_last_error());
        return 1;
    }
    if (a.identity != NULL)
        snprintf(last_identity, sizeof(last_identity), "%s", a.identity);
    if (server)
        stop_on_term();
    int rc = server ? serve(ctx, &a) : connect_once(ctx, &a);
    SSL_CTX_free(ctx);
    m2mhsm_tls_free(tls);
    m2mhsm_keystore_close(ks);
    m2mhsm_token_close(tok);
    return rc;
}
