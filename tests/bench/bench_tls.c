/*
 * Server-side TLS 1.2 PSK-AES128-CBC-SHA256 handshakes/s with the PSK in the token (m2mhsm
 * provider, handle path) against the same server with the PSK in memory, in one run, with 1
 * and 2 worker processes. Each worker runs client and server over an in-memory BIO pair and
 * times only the server's SSL_do_handshake calls. Prints figures; not a pass/fail test.
 *   bench_tls [--seconds S] [--dir DIR] [--module-kind direct|remote|both] [--count N]
 * --module-kind: SoftHSM loaded in the process (direct, the default), SoftHSM behind
 * `p11-kit server` reached through p11-kit-client.so (remote: every call a round trip, as
 * with a network HSM), or both in one run, with the remote/direct ratio.
 * --count N (default 200): the PKCS#11 calls per handshake of each token variant, counted
 * by tests/fault's module over N handshakes after a first one (0: no count).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <m2mhsm/tls.h>
#include "softhsm_conf.h"

#define KPM_ID "bench-kpm"

static uint8_t psk[32];
static char dir[400], uri[64] = "pkcs11:token=bench-tls", pin_source[800], lock_file[800];
static double seconds = 2.0;
static const char *module_path; /* NULL: SoftHSM in the process */
static char server_sock[600];
static pid_t server_pid = -1;
static long count_n = 200;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned int client_psk(SSL *ssl, const char *hint, char *id, unsigned int id_len,
                               unsigned char *out, unsigned int max)
{
    (void)ssl;
    (void)hint;
    (void)max;
    snprintf(id, id_len, "%s", KPM_ID);
    memcpy(out, psk, sizeof(psk));
    return sizeof(psk);
}

static unsigned int server_psk(SSL *ssl, const char *id, unsigned char *out, unsigned int max)
{
    (void)ssl;
    (void)id;
    (void)max;
    memcpy(out, psk, sizeof(psk));
    return sizeof(psk);
}

static SSL_CTX *plain(OSSL_LIB_CTX *lib, const char *props, int server)
{
    SSL_CTX *c = SSL_CTX_new_ex(lib, props, server ? TLS_server_method() : TLS_client_method());
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(c, "PSK-AES128-CBC-SHA256");
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    if (server)
        SSL_CTX_set_psk_server_callback(c, server_psk);
    else
        SSL_CTX_set_psk_client_callback(c, client_psk);
    return c;
}

/* One handshake; returns the seconds spent in the server's SSL_do_handshake calls. */
static double handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *bs, *bc;
    double server_time = 0;
    BIO_new_bio_pair(&bs, 0, &bc, 0);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    int ds = 0, dc = 0;
    for (int i = 0; i < 20 && !(ds && dc); i++) {
        if (!dc && SSL_do_handshake(c) == 1)
            dc = 1;
        double t0 = now_s();
        if (!ds && SSL_do_handshake(s) == 1)
            ds = 1;
        server_time += now_s() - t0;
    }
    SSL_free(s);
    SSL_free(c);
    if (!(ds && dc)) {
        fprintf(stderr, "bench_tls: a handshake failed\n");
        ERR_print_errors_fp(stderr);
        exit(1);
    }
    return server_time;
}

/* Handshakes for `slice` seconds; adds handshakes and server-side seconds to the totals. */
static void run(SSL_CTX *sctx, SSL_CTX *cctx, double slice, long *count, double *server_time)
{
    double end = now_s() + slice;
    while (now_s() < end) {
        *server_time += handshake(sctx, cctx);
        (*count)++;
    }
}

enum { V_PLAIN, V_DELEGATE, V_TOKEN_NOLOCK, V_TOKEN, V_TOKEN_REVALIDATE, V_COUNT };
static const char *const variant_names[V_COUNT] = {
    "PSK in memory, default provider only",
    "PSK in memory, m2mhsm provider (delegation)",
    "PSK in token, no lock file: hits read on token",
    "PSK in token, lock file: write epoch",
    "PSK in token, revalidate_ms=1000",
};

/* One worker: every variant in turn; rates written to fd. */
/* A store on its own token handle; lock_file NULL for the variant that reads every hit. */
typedef struct {
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_tls *tls;
} store;

static void store_open(store *st, const char *lock, int64_t revalidate_ms)
{
    m2mhsm_token_config cfg = {
        .module_path = module_path, .token_uri = uri, .pin_source = pin_source, .lock_file = lock};
    m2mhsm_keystore_options o = {.revalidate_ms = revalidate_ms};
    if (m2mhsm_token_open(&cfg, &st->tok) != M2MHSM_OK ||
        m2mhsm_keystore_open(st->tok, &o, &st->ks, NULL) != M2MHSM_OK ||
        m2mhsm_tls_new(st->ks, &st->tls) != M2MHSM_OK) {
        fprintf(stderr, "bench_tls: %s\n", m2mhsm_last_error());
        exit(1);
    }
}

static void store_close(store *st)
{
    m2mhsm_tls_free(st->tls);
    m2mhsm_keystore_close(st->ks);
    m2mhsm_token_close(st->tok);
}

static SSL_CTX *token_server(const store *st)
{
    m2mhsm_tls_profile p = {
        .role = M2MHSM_TLS_SERVER, .proto = M2MHSM_TLS_1_2, .kind = M2MHSM_KIND_KPM};
    SSL_CTX *ctx = NULL;
    if (m2mhsm_tls_ctx_new(st->tls, &p, &ctx) != M2MHSM_OK)
        exit(1);
    return ctx;
}

/* One worker: every variant in turn; rates written to fd. */
static int worker(int fd)
{
    store nolock, locked, fast;
    store_open(&nolock, NULL, 0);
    store_open(&locked, lock_file, 0);
    store_open(&fast, lock_file, 1000);
    SSL_CTX *client = plain(NULL, NULL, 0);
    SSL_CTX *servers[V_COUNT];
    servers[V_PLAIN] = plain(NULL, NULL, 1);
    servers[V_DELEGATE] = plain(m2mhsm_tls_libctx(locked.tls), "?provider=m2mhsm", 1);
    servers[V_TOKEN_NOLOCK] = token_server(&nolock);
    servers[V_TOKEN] = token_server(&locked);
    servers[V_TOKEN_REVALIDATE] = token_server(&fast);
    /* Interleave the variants in short slices, so that drift in the machine's speed
     * (frequency, neighbours) falls on every variant alike. */
    double rates[V_COUNT], server_time[V_COUNT] = {0};
    long count[V_COUNT] = {0};
    int rounds = 20;
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < V_COUNT; v++)
            run(servers[v], client, seconds / rounds, &count[v], &server_time[v]);
    for (int v = 0; v < V_COUNT; v++) {
        rates[v] = count[v] / server_time[v];
        SSL_CTX_free(servers[v]);
    }
    if (write(fd, rates, sizeof(rates)) != sizeof(rates))
        return 1;
    SSL_CTX_free(client);
    store_close(&fast);
    store_close(&locked);
    store_close(&nolock);
    return 0;
}

static void measure(int workers, double out[])
{
    int fds[2];
    double sum[V_COUNT] = {0};
    if (pipe(fds) != 0)
        exit(1);
    fflush(NULL);
    pid_t pids[8];
    for (int w = 0; w < workers && w < 8; w++)
        if ((pids[w] = fork()) == 0)
            _exit(worker(fds[1]));
    close(fds[1]);
    for (int w = 0; w < workers; w++) {
        double rates[V_COUNT];
        if (read(fds[0], rates, sizeof(rates)) != sizeof(rates)) {
            fprintf(stderr, "bench_tls: a worker failed\n");
            exit(1);
        }
        for (int v = 0; v < V_COUNT; v++)
            sum[v] += rates[v];
    }
    for (int w = 0; w < workers && w < 8; w++)
        waitpid(pids[w], NULL, 0); /* not wait(): the token's server is a child too */
    close(fds[0]);
    for (int v = 0; v < V_COUNT; v++) {
        out[v] = sum[v];
        printf("%d worker(s)  %-46s %9.0f /s  ratio to in-memory %.2f\n", workers, variant_names[v],
               sum[v], sum[v] / sum[V_PLAIN]);
    }
    for (int v = V_TOKEN_NOLOCK; v < V_COUNT; v++)
        printf("%d worker(s)  target token/in-memory >= 0.50 (%s): %s\n", workers, variant_names[v],
               sum[v] / sum[V_PLAIN] >= 0.5 ? "met" : "NOT met");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0)
        exit(1);
    fclose(f);
    chmod(path, 0600);
}

static void make_token(void)
{
    char path[500], so[520];
    if (softhsm_conf_write(dir) != 0)
        exit(1);
    snprintf(path, sizeof(path), "%s/so.pin", dir);
    write_file(path, "bench-so-pin\n");
    snprintf(so, sizeof(so), "file:%s", path);
    snprintf(path, sizeof(path), "%s/user.pin", dir);
    write_file(path, "bench-user-pin\n");
    snprintf(pin_source, sizeof(pin_source), "file:%s", path);
    snprintf(lock_file, sizeof(lock_file), "%s/m2mhsm.lock", dir);
    if (m2mhsm_token_init(NULL, "bench-tls", so, pin_source) != M2MHSM_OK) {
        fprintf(stderr, "bench_tls: %s\n", m2mhsm_last_error());
        exit(1);
    }
    m2mhsm_token_config cfg = {.token_uri = uri, .pin_source = pin_source, .lock_file = lock_file};
    m2mhsm_token *tok = NULL;
    m2mhsm_keystore *ks = NULL;
    RAND_bytes(psk, sizeof(psk));
    if (m2mhsm_token_open(&cfg, &tok) != M2MHSM_OK ||
        m2mhsm_keystore_open(tok, NULL, &ks, NULL) != M2MHSM_OK ||
        m2mhsm_keystore_import_kpm(ks, KPM_ID, psk, sizeof(psk), M2MHSM_NEVER, NULL) != M2MHSM_OK) {
        fprintf(stderr, "bench_tls: %s\n", m2mhsm_last_error());
        exit(1);
    }
    m2mhsm_keystore_close(ks);
    m2mhsm_token_close(tok);
}

/* ---- the remote kind: SoftHSM behind `p11-kit server`, reached through p11-kit-client ---- */

static const char *client_module(void)
{
    const char *env = getenv("M2M_P11_CLIENT_MODULE");
    return env != NULL ? env : "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";
}

static void start_remote(void)
{
    snprintf(server_sock, sizeof(server_sock), "%s/p11.sock", dir);
    fflush(NULL);
    server_pid = fork();
    if (server_pid == 0) {
        setsid(); /* its p11-kit-remote children go with its group */
        execlp("p11-kit", "p11-kit", "server", "--provider", BENCH_SOFTHSM_MODULE, "-f", "-n",
               server_sock, "pkcs11:token=bench-tls", (char *)NULL);
        _exit(127);
    }
    struct stat st;
    double end = now_s() + 10;
    while (stat(server_sock, &st) != 0 && now_s() < end)
        usleep(20000); /* a benchmark's start-up poll, not a test's synchronisation */
    if (stat(server_sock, &st) != 0) {
        fprintf(stderr, "bench_tls: p11-kit server did not create %s\n", server_sock);
        exit(1);
    }
    char addr[700];
    snprintf(addr, sizeof(addr), "unix:path=%s", server_sock);
    setenv("P11_KIT_SERVER_ADDRESS", addr, 1);
    module_path = client_module();
}

static void stop_remote(void)
{
    if (server_pid > 0) {
        kill(-server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    server_pid = -1;
    module_path = NULL;
    unsetenv("P11_KIT_SERVER_ADDRESS");
}

/* ---- PKCS#11 calls per handshake, counted by tests/fault's module ---- */

/* In a child: a store through the counting module, n handshakes on variant v; the module
 * writes "<pid> <function> <calls>" lines to report at the child's exit. */
static pid_t count_child(int v, long n, const char *report)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("M2M_FAULT_MODULE", module_path != NULL ? module_path : BENCH_SOFTHSM_MODULE, 1);
        setenv("M2M_FAULT_REPORT", report, 1);
        module_path = BENCH_FAULT_MODULE;
        store st;
        store_open(&st, v == V_TOKEN_NOLOCK ? NULL : lock_file, 0);
        SSL_CTX *client = plain(NULL, NULL, 0), *server = token_server(&st);
        for (long i = 0; i < n; i++)
            handshake(server, client);
        SSL_CTX_free(server);
        SSL_CTX_free(client);
        store_close(&st);
        exit(0); /* exit(), not _exit(): the module reports from its destructor */
    }
    waitpid(pid, NULL, 0);
    return pid;
}

typedef struct {
    char name[40];
    long calls;
} fn_count;

/* The lines of process `who` (the module reports once per process that used it). */
static size_t read_report(const char *path, long who, fn_count *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    char fn[40];
    long pid, calls;
    while (f != NULL && n < cap && fscanf(f, "%ld %39s %ld", &pid, fn, &calls) == 3) {
        if (pid != who)
            continue;
        snprintf(out[n].name, sizeof(out[n].name), "%s", fn);
        out[n++].calls = calls;
    }
    if (f != NULL)
        fclose(f);
    return n;
}

static void count_calls(const char *kind)
{
    static const int variants[] = {V_TOKEN_NOLOCK, V_TOKEN};
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        int v = variants[i];
        char one[600], many[600];
        snprintf(one, sizeof(one), "%s/count-%d-1", dir, v);
        snprintf(many, sizeof(many), "%s/count-%d-n", dir, v);
        pid_t pa = count_child(v, 1, one), pb = count_child(v, 1 + count_n, many);
        fn_count a[64], b[64];
        size_t na = read_report(one, pa, a, 64), nb = read_report(many, pb, b, 64);
        printf("%s  PKCS#11 calls per handshake, %s (over %ld):", kind, variant_names[v], count_n);
        for (size_t j = 0; j < nb; j++) {
            long base = 0;
            for (size_t k = 0; k < na; k++)
                if (strcmp(a[k].name, b[j].name) == 0)
                    base = a[k].calls;
            if (b[j].calls > base)
                printf(" %s %.2f", b[j].name, (double)(b[j].calls - base) / count_n);
        }
        printf("\n");
    }
}

static void run_kind(const char *kind, double direct[], double remote[])
{
    int is_remote = strcmp(kind, "remote") == 0;
    if (is_remote)
        start_remote();
    printf("-- module kind %s%s\n", kind, is_remote ? " (SoftHSM behind p11-kit server)" : "");
    measure(1, is_remote ? remote : direct);
    if (!is_remote)
        measure(2, direct + V_COUNT);
    else
        measure(2, remote + V_COUNT);
    if (count_n > 0)
        count_calls(kind);
    if (is_remote)
        stop_remote();
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"seconds", required_argument, NULL, 's'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"module-kind", required_argument, NULL, 'm'},
                                         {"count", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    const char *kind = "direct";
    const char *base = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 's')
            seconds = atof(optarg);
        else if (c == 'd')
            base = optarg;
        else if (c == 'm')
            kind = optarg;
        else if (c == 'c')
            count_n = atol(optarg);
        else
            return 2;
    }
    if (strcmp(kind, "direct") != 0 && strcmp(kind, "remote") != 0 && strcmp(kind, "both") != 0) {
        fprintf(stderr, "bench_tls: --module-kind direct, remote or both\n");
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/bench-tls-XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(dir) == NULL)
        return 1;
    make_token();
    printf("TLS 1.2 PSK-AES128-CBC-SHA256, server side, %.1f s per figure, SoftHSM token in %s\n",
           seconds, dir);
    double direct[2 * V_COUNT] = {0}, remote[2 * V_COUNT] = {0};
    if (strcmp(kind, "remote") != 0)
        run_kind("direct", direct, remote);
    if (strcmp(kind, "direct") != 0)
        run_kind("remote", direct, remote);
    if (strcmp(kind, "both") == 0)
        for (int w = 0; w < 2; w++)
            for (int v = V_TOKEN_NOLOCK; v < V_COUNT; v++)
                printf("%d worker(s)  remote/direct %-46s %.2f (%.0f vs %.0f /s)\n", w + 1,
                       variant_names[v], remote[w * V_COUNT + v] / direct[w * V_COUNT + v],
                       remote[w * V_COUNT + v], direct[w * V_COUNT + v]);
    char cmd[500];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
