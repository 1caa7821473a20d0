/*
 * bench_services: a load client for the running services (docs/performance.md, "The
 * services under load"). It drives a lab's m2m-mef and m2m-maf over loopback and prints
 * each figure beside the token's raw rates, measured in the same run. Run by hand through
 * tests/bench/services.sh, which makes the lab; not a ctest.
 *
 *   bench_services --kpms FILE --mef HOST:PORT --maf HOST:PORT --raw-dir DIR
 *       [--mef-pid PID] [--maf-pid PID] [--mef-log FILE] [--maf-log FILE]
 *       [--clients 1,16,256] [--seconds 5] [--hold 1000] [--openers 16]
 *       [--raw-seconds 1] [--mef-fqdn mef.example.com] [--maf-id maf.example.com]
 *       [--module PATH] [--no-memory-server]
 *
 * The client is plain OpenSSL: every PSK is in its memory (FILE holds "KpmID hex-Kpm"
 * lines, the Kpms that services.sh imported into the MEF's token), and only the servers use
 * their tokens. One blocking client per thread; each thread owns one KpmID (MEF) or one
 * KeID (MAF), so no two concurrent clients touch the same record.
 *
 * Order of the run:
 *  1. MEF, first enrolments: each KpmID of the pool enrols once (no previous Ke). For c
 *     clients the phase uses max(c, 32) fresh KpmIDs; the rate is KpmIDs / makespan. The
 *     ones of the largest level are the MAF's Enrolees below.
 *  2. MAF: every Enrolee's first handshake (the MAF fetches Km from the MEF: warm-up, shown
 *     but not part of the handshake figures), then c clients handshaking for --seconds each,
 *     then the same clients against an in-memory OpenSSL server (a forked process with the
 *     same single-threaded shape as the MAF, PSKs in memory), once with the MAF's socket
 *     options and once with TCP_NODELAY: what this client and machine can do without the
 *     service and its token.
 *  3. MAF, --hold connections open at once, each checked with a one-byte echo.
 *  4. MEF, re-enrolments: c clients re-enrolling their own KpmID for --seconds (each
 *     replaces that KpmID's Ke: the MEF erases the previous one).
 * Before each figure: the token's raw rates on a scratch SoftHSM token (DIR), opened through
 * p11-kit exactly as the services open theirs, one thread (the services run one event loop).
 * Keys are random test keys; no key byte or PIN is printed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <m2mhsm/token.h>
#include "p11/handles.h"
#include "softhsm_conf.h"

#ifndef BENCH_DEFAULT_MODULE
#define BENCH_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

#define MAX_CLIENTS 4096
#define MAX_LEVELS 8
#define EXPORT_LABEL "EXPORTER-oneM2M-Bootstrap"
#define KM_LABEL "oneM2M Enrolment Key to Master Credential derivation"
#define IO_TIMEOUT_S 60 /* a client waits this long for a server before it gives up */
#define RAW_TOKEN "bench-services-raw"

/* ---- options ---- */

static struct {
    const char *kpms, *mef, *maf, *raw_dir, *mef_log, *maf_log, *module;
    const char *mef_fqdn, *maf_id;
    int mef_pid, maf_pid;
    int levels[MAX_LEVELS];
    int nlevels;
    double seconds, raw_seconds;
    int hold, openers, memory_server;
} opt = {.mef_fqdn = "mef.example.com",
         .maf_id = "maf.example.com",
         .levels = {1, 16, 256},
         .nlevels = 3,
         .seconds = 5,
         .raw_seconds = 1,
         .hold = 1000,
         .openers = 16,
         .memory_server = 1};

/* ---- helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_services: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    ERR_print_errors_fp(stderr);
    exit(1);
}

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile p (0..100) of sorted v[n], nearest rank. */
static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_levels(const char *s)
{
    opt.nlevels = 0;
    for (const char *p = s; *p != '\0' && opt.nlevels < MAX_LEVELS;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_CLIENTS)
            return -1;
        opt.levels[opt.nlevels++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return -1;
    }
    return opt.nlevels > 0 ? 0 : -1;
}

/* ---- CPU and memory of the client, the servers and the machine ---- */

typedef struct {
    double wall, self, mef, maf, other_srv, busy, total;
} cpu_mark;

static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* After "pid (comm)": state(3) ... utime(14) stime(15). */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void machine_cpu(double *busy, double *total)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *busy = *total = 0;
    if (f == NULL)
        return;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8)
        return;
    double t = 0;
    for (int i = 0; i < 8; i++) /* guest time is already in user */
        t += (double)v[i];
    *total = t;
    *busy = t - (double)v[3] - (double)v[4];
}

static int memory_server_pid; /* the forked in-memory server, while it runs */

static cpu_mark mark(void)
{
    cpu_mark m;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    m.wall = now_s();
    m.self = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    m.mef = proc_cpu_s(opt.mef_pid);
    m.maf = proc_cpu_s(opt.maf_pid);
    m.other_srv = proc_cpu_s(memory_server_pid);
    machine_cpu(&m.busy, &m.total);
    return m;
}

/* CPU use between two marks, in cores (1.00 = one vCPU all the time). */
typedef struct {
    double self, mef, maf, other_srv, machine; /* machine: busy share of all vCPUs, 0..1 */
} cpu_use;

static cpu_use cpu_between(const cpu_mark *a, const cpu_mark *b)
{
    double w = b->wall - a->wall;
    cpu_use u = {0};
    if (w <= 0)
        return u;
    u.self = (b->self - a->self) / w;
    u.mef = (b->mef - a->mef) / w;
    u.maf = (b->maf - a->maf) / w;
    u.other_srv = (b->other_srv - a->other_srv) / w;
    u.machine = b->total > a->total ? (b->busy - a->busy) / (b->total - a->total) : 0;
    return u;
}

/* VmRSS in KiB of pid, or -1. */
static long vm_rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static long open_fds(int pid)
{
    char path[64];
    long n = 0;
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Lines of a server log that contain needle (the servers log one line per event). */
static long count_log(const char *path, const char *needle)
{
    if (path == NULL)
        return -1;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[2048];
    long n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Wait until the count of needle in path reaches want or stops moving for 0.5 s (10 s at
 * most): the servers log after the client has seen its handshake end. */
static long settle_log(const char *path, const char *needle, long want)
{
    long last = count_log(path, needle);
    double still = now_s(), end = now_s() + 10;
    while (last >= 0 && last < want && now_s() < end && now_s() - still < 0.5) {
        usleep(50000);
        long n = count_log(path, needle);
        if (n != last) {
            last = n;
            still = now_s();
        }
    }
    return last;
}

/* ---- credentials ---- */

typedef struct {
    char identity[192];
    uint8_t key[32];
} cred;

typedef struct {
    cred kpm; /* KpmID, Kpm */
    cred km;  /* KeID, Km for maf_id; valid once enrolled */
    int enrolled;
} enrolee;

static enrolee *pool;
static size_t npool;
static size_t hold_pool = 1; /* --hold reuses pool[0..hold_pool): the MAF's Enrolees */

static void load_kpms(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char id[192], hex[160];
        if (line[0] == '#' || sscanf(line, "%191s %159s", id, hex) != 2)
            continue;
        if (strlen(hex) != 64)
            die("%s: every Kpm must be 32 bytes (64 hex digits)", path);
        if (npool == cap) {
            cap = cap ? 2 * cap : 256;
            pool = realloc(pool, cap * sizeof(*pool));
            if (pool == NULL)
                die("out of memory");
        }
        enrolee *e = &pool[npool++];
        memset(e, 0, sizeof(*e));
        snprintf(e->kpm.identity, sizeof(e->kpm.identity), "%s", id);
        for (int i = 0; i < 32; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                die("%s: bad hex", path);
            e->kpm.key[i] = (uint8_t)(hi << 4 | lo);
        }
        OPENSSL_cleanse(hex, sizeof(hex));
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
}

/* TS-0003 10.3.1, 10.3.4, 10.3.2: KeID and Km from the 48 exported bytes. */
static void derive_km(enrolee *e, const uint8_t exported[48])
{
    char *p = e->km.identity;
    for (int i = 0; i < 16; i++)
        p += sprintf(p, "%02X", exported[i]);
    snprintf(p, sizeof(e->km.identity) - 32, "@%s", opt.mef_fqdn);
    uint8_t msg[256];
    size_t ll = strlen(KM_LABEL), ml = strlen(opt.maf_id), outlen = 0;
    memcpy(msg, KM_LABEL, ll);
    memcpy(msg + ll, opt.maf_id, ml);
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, exported + 16, 32, msg, ll + ml, e->km.key,
                  32, &outlen) == NULL ||
        outlen != 32)
        die("HMAC-SHA256 failed");
    e->enrolled = 1;
}

/* ---- the TLS client ---- */

static SSL_CTX *cctx;
static struct sockaddr_storage mef_addr, maf_addr, mem_addr;
static socklen_t mef_addr_len, maf_addr_len, mem_addr_len;

static unsigned int client_psk(SSL *ssl, const char *hint, char *id, unsigned int id_len,
                               unsigned char *out, unsigned int max)
{
    (void)hint;
    const cred *c = SSL_get_app_data(ssl);
    if (c == NULL || strlen(c->identity) >= id_len || max < 32)
        return 0;
    memcpy(id, c->identity, strlen(c->identity) + 1);
    memcpy(out, c->key, 32);
    return 32;
}

static SSL_CTX *tls12_psk_ctx(int server)
{
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (c == NULL || !SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(c, "PSK-AES128-CBC-SHA256"))
        die("SSL_CTX setup failed");
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    return c;
}

static void parse_addr(const char *hostport, struct sockaddr_storage *out, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
        die("%s: expected HOST:PORT", hostport);
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        die("%s: cannot resolve", hostport);
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
}

static int tcp_connect(const struct sockaddr_storage *a, socklen_t len)
{
    int fd = socket(a->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct timeval tv = {IO_TIMEOUT_S, 0};
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)a, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct {
    int fd;
    SSL *ssl;
} conn;

/* Connect and complete a TLS 1.2 PSK handshake as c, with SNI. */
static int tls_open(const struct sockaddr_storage *a, socklen_t len, const cred *c, const char *sni,
                    conn *out)
{
    out->fd = tcp_connect(a, len);
    out->ssl = NULL;
    if (out->fd < 0)
        return -1;
    SSL *ssl = SSL_new(cctx);
    if (ssl == NULL || !SSL_set_fd(ssl, out->fd) || !SSL_set_tlsext_host_name(ssl, sni)) {
        SSL_free(ssl);
        close(out->fd);
        return -1;
    }
    SSL_set_app_data(ssl, (void *)c);
    if (SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        close(out->fd);
        ERR_clear_error();
        return -1;
    }
    out->ssl = ssl;
    return 0;
}

static void tls_close(conn *c)
{
    if (c->ssl != NULL) {
        SSL_shutdown(c->ssl); /* close_notify; the peer's is not awaited */
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    ERR_clear_error();
}

/* Read the server's greeting line (the MAF: "m2m-maf <id>: authenticated <KeID> until …"). */
static int read_greeting(conn *c, const char *ke_id)
{
    char buf[512];
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        int r = SSL_read(c->ssl, buf + n, (int)(sizeof(buf) - 1 - n));
        if (r <= 0)
            return -1;
        n += (size_t)r;
        if (memchr(buf, '\n', n) != NULL)
            break;
    }
    buf[n] = '\0';
    return strstr(buf, "authenticated") != NULL && strstr(buf, ke_id) != NULL ? 0 : -1;
}

/* One enrolment: bootstrap handshake as the KpmID, export, close. */
static int op_enrol(enrolee *e)
{
    conn c;
    uint8_t exported[48];
    if (tls_open(&mef_addr, mef_addr_len, &e->kpm, opt.mef_fqdn, &c) != 0)
        return -1;
    int ok = SSL_export_keying_material(c.ssl, exported, sizeof(exported), EXPORT_LABEL,
                                        strlen(EXPORT_LABEL), NULL, 0, 0) == 1;
    tls_close(&c);
    if (ok)
        derive_km(e, exported);
    OPENSSL_cleanse(exported, sizeof(exported));
    return ok ? 0 : -1;
}

/* One handshake at a MAF-like server: connect, handshake as KeID/Km, greeting, close. */
static int op_handshake_at(const struct sockaddr_storage *a, socklen_t len, enrolee *e)
{
    conn c;
    if (tls_open(a, len, &e->km, opt.maf_id, &c) != 0)
        return -1;
    int r = read_greeting(&c, e->km.identity);
    tls_close(&c);
    return r;
}

static int op_maf(enrolee *e)
{
    return op_handshake_at(&maf_addr, maf_addr_len, e);
}

static int op_mem(enrolee *e)
{
    return op_handshake_at(&mem_addr, mem_addr_len, e);
}

/* ---- load phases ---- */

typedef int (*op_fn)(enrolee *e);

typedef struct {
    /* in */
    op_fn op;
    enrolee *e; /* fixed: this thread's enrolee (timed phases) */
    double end; /* timed phases: stop starting operations at this instant */
    /* queue phases: take the next enrolee from a shared counter */
    atomic_size_t *next;
    size_t first, last;
    int retries;
    pthread_barrier_t *start;
    /* out */
    double *lat;
    size_t nlat, cap;
    long ok, failed, in_window;
    double last_done;
} worker;

static double phase_t0, phase_end;

static void record(worker *w, double t0, double t1)
{
    if (w->nlat == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        w->lat = realloc(w->lat, w->cap * sizeof(double));
        if (w->lat == NULL)
            die("out of memory");
    }
    w->lat[w->nlat++] = (t1 - t0) * 1000.0;
    if (t1 <= w->end)
        w->in_window++;
    if (t1 > w->last_done)
        w->last_done = t1;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->start);
    if (w->next == NULL) {
        while (now_s() < w->end) {
            double t0 = now_s();
            int r = w->op(w->e);
            double t1 = now_s();
            if (r == 0) {
                w->ok++;
                record(w, t0, t1);
            } else {
                w->failed++;
                usleep(10000); /* do not spin on a refusing server */
            }
        }
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(w->next, 1) + w->first;
        if (i >= w->last)
            break;
        for (int attempt = 0;; attempt++) {
            double t0 = now_s();
            int r = w->op(&pool[i]);
            double t1 = now_s();
            if (r == 0) {
                w->ok++;
                record(w, t0, t1);
                break;
            }
            w->failed++;
            if (attempt >= w->retries)
                break;
            usleep(100000);
        }
    }
    return NULL;
}

typedef struct {
    int clients;
    long ok, failed, in_window;
    double seconds; /* window (timed) or makespan (queue) */
    double rate, p50, p99, max;
    cpu_use cpu;
} result;

static void finish_result(result *r, worker *w, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += w[i].nlat;
    double *all = malloc((total + 1) * sizeof(double));
    if (all == NULL)
        die("out of memory");
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(all + k, w[i].lat, w[i].nlat * sizeof(double));
        k += w[i].nlat;
        r->ok += w[i].ok;
        r->failed += w[i].failed;
        r->in_window += w[i].in_window;
        free(w[i].lat);
    }
    qsort(all, total, sizeof(double), cmp_double);
    r->p50 = pct(all, total, 50);
    r->p99 = pct(all, total, 99);
    r->max = total ? all[total - 1] : 0;
    free(all);
}

static void run_threads(worker *w, int n)
{
    pthread_t *t = calloc((size_t)n, sizeof(*t));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (t == NULL)
        die("out of memory");
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], &attr, worker_main, &w[i]) != 0)
            die("pthread_create: %s", strerror(errno));
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_attr_destroy(&attr);
    free(t);
}

/* c clients, each with its own enrolee (pool[base + i]), each doing op for opt.seconds;
 * rate = operations completed inside the window / window. Operations still running at the
 * end of the window finish (their latency counts, the rate does not). */
static result timed_phase(op_fn op, int c, size_t base)
{
    result r = {.clients = c};
    worker *w = calloc((size_t)c, sizeof(*w));
    pthread_barrier_t b;
    if (w == NULL || pthread_barrier_init(&b, NULL, (unsigned)c + 1) != 0)
        die("out of memory");
    for (int i = 0; i < c; i++) {
        w[i].op = op;
        w[i].e = &pool[base + (size_t)i];
        w[i].start = &b;
        w[i].end = 1e300;
    }
    pthread_t *t = calloc((size_t)c, sizeof(*t));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < c; i++)
        if (pthread_create(&t[i], &attr, worker_main, &w[i]) != 0)
            die("pthread_create: %s", strerror(errno));
    usleep(20000);
    cpu_mark a = mark();
    phase_t0 = a.wall;
    phase_end = a.wall + opt.seconds;
    for (int i = 0; i < c; i++)
        w[i].end = phase_end;
    pthread_barrier_wait(&b);
    /* Sample the CPU over the window itself, not the drain after it. */
    while (now_s() < phase_end)
        usleep(10000);
    cpu_mark m = mark();
    for (int i = 0; i < c; i++)
        pthread_join(t[i], NULL);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&b);
    free(t);
    r.seconds = opt.seconds;
    r.cpu = cpu_between(&a, &m);
    finish_result(&r, w, c);
    r.rate = (double)r.in_window / r.seconds;
    free(w);
    return r;
}

/* c clients share the enrolees pool[first..last), one operation each (retried up to
 * retries times); rate = count / makespan. */
static result queue_phase(op_fn op, int c, size_t first, size_t last, int retries)
{
    result r = {.clients = c};
    atomic_size_t next = 0;
    worker *w = calloc((size_t)c, sizeof(*w));
    pthread_barrier_t b;
    if (w == NULL || pthread_barrier_init(&b, NULL, (unsigned)c) != 0)
        die("out of memory");
    for (int i = 0; i < c; i++) {
        w[i].op = op;
        w[i].next = &next;
        w[i].first = first;
        w[i].last = last;
        w[i].retries = retries;
        w[i].start = &b;
        w[i].end = 1e300;
    }
    cpu_mark a = mark();
    run_threads(w, c);
    cpu_mark m = mark();
    double done = a.wall;
    for (int i = 0; i < c; i++)
        if (w[i].last_done > done)
            done = w[i].last_done;
    r.seconds = done - a.wall;
    r.cpu = cpu_between(&a, &m);
    finish_result(&r, w, c);
    r.rate = r.seconds > 0 ? (double)r.ok / r.seconds : 0;
    free(w);
    return r;
}

/* ---- raw token rates (baselines), on a scratch SoftHSM token ---- */

static m2mhsm_token *raw_tok;
static CK_FUNCTION_LIST *raw_fn;
static CK_SESSION_HANDLE raw_s;
static CK_OBJECT_HANDLE raw_key_token, raw_key_session;

static void check_rv(CK_RV rv, const char *what)
{
    if (rv != CKR_OK)
        die("%s: CK_RV 0x%lx", what, (unsigned long)rv);
}

static void write_private(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        die("%s: %s", path, strerror(errno));
    close(fd);
}

static CK_OBJECT_HANDLE raw_make_key(CK_BBOOL token, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    uint8_t value[32];
    if (RAND_bytes(value, sizeof(value)) != 1)
        die("RAND_bytes failed");
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &token, sizeof(token)}, {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)},     {CKA_EXTRACTABLE, &f, sizeof(f)},
        {CKA_SIGN, &t, sizeof(t)},          {CKA_VERIFY, &f, sizeof(f)},
        {CKA_DERIVE, &f, sizeof(f)},        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, value, sizeof(value)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    check_rv(raw_fn->C_CreateObject(raw_s, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h),
             "C_CreateObject");
    OPENSSL_cleanse(value, sizeof(value));
    return h;
}

/* The scratch token: DIR/softhsm2.conf, DIR/tokens, PIN files in DIR; opened through
 * p11-kit by m2mhsm_token_open, as the services open theirs. */
static void raw_open(void)
{
    char path[1200], so[1220], pin[1220];
    if (softhsm_conf_write(opt.raw_dir) != 0)
        die("%s: cannot write a SoftHSM configuration", opt.raw_dir);
    uint8_t r[12];
    char hex[32];
    for (int k = 0; k < 2; k++) {
        if (RAND_bytes(r, sizeof(r)) != 1)
            die("RAND_bytes failed");
        for (int i = 0; i < 12; i++)
            snprintf(hex + 2 * i, 3, "%02x", r[i]);
        strcat(hex, "\n");
        snprintf(path, sizeof(path), "%s/%s", opt.raw_dir, k == 0 ? "so.pin" : "user.pin");
        write_private(path, hex);
        snprintf(k == 0 ? so : pin, sizeof(so), "file:%s", path);
    }
    OPENSSL_cleanse(hex, sizeof(hex));
    if (m2mhsm_token_init(opt.module, RAW_TOKEN, so, pin) != M2MHSM_OK)
        die("token-init of the scratch token: %s", m2mhsm_last_error());
    m2mhsm_token_config cfg = {
        .module_path = opt.module, .token_uri = "pkcs11:token=" RAW_TOKEN, .pin_source = pin};
    if (m2mhsm_token_open(&cfg, &raw_tok) != M2MHSM_OK ||
        m2mhsm_token_session_get(raw_tok, &raw_s) != M2MHSM_OK)
        die("opening the scratch token: %s", m2mhsm_last_error());
    raw_fn = m2mhsm_token_functions(raw_tok);
    raw_key_token = raw_make_key(CK_TRUE, "bench-hmac-token");
    raw_key_session = raw_make_key(CK_FALSE, "bench-hmac-session");
}

static void raw_close(void)
{
    raw_fn->C_DestroyObject(raw_s, raw_key_token);
    raw_fn->C_DestroyObject(raw_s, raw_key_session);
    m2mhsm_token_session_put(raw_tok, raw_s);
    m2mhsm_token_close(raw_tok);
}

typedef struct {
    double create;      /* C_CreateObject/s of the secret key alone */
    double create_data; /* C_CreateObject/s of a ~300-byte CKO_DATA object alone */
    double pairs;       /* (CKO_DATA + CKO_SECRET_KEY)/s: what an enrolment creates */
    double destroy;     /* C_DestroyObject/s */
    double hmac_token, hmac_session;
} raw_rates;

static CK_OBJECT_HANDLE raw_make_data(const char *label)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    char value[300];
    memset(value, 'm', sizeof(value));
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_APPLICATION, "m2mbench", 8},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, value, sizeof(value)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    check_rv(raw_fn->C_CreateObject(raw_s, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h),
             "C_CreateObject(CKO_DATA)");
    return h;
}

/* Pairs of C_CreateObject -- a ~300-byte private CKO_DATA token object, then a 32-byte
 * sensitive CKO_SECRET_KEY token object, as an enrolment writes -- for raw_seconds, each call
 * timed on its own; then C_DestroyObject of every object, timed separately. */
static void raw_create(raw_rates *out)
{
    enum { MAXH = 8192 };
    static CK_OBJECT_HANDLE h[MAXH];
    size_t n = 0;
    char label[64];
    double t_data = 0, t_key = 0, t0 = now_s(), end = t0 + opt.raw_seconds, t1;
    do {
        double a = now_s();
        snprintf(label, sizeof(label), "bench-raw-meta-%zu", n);
        h[n++] = raw_make_data(label);
        double b = now_s();
        snprintf(label, sizeof(label), "bench-raw-key-%zu", n);
        h[n++] = raw_make_key(CK_TRUE, label);
        t1 = now_s();
        t_data += b - a;
        t_key += t1 - b;
    } while (t1 < end && n < MAXH);
    out->pairs = (double)(n / 2) / (t1 - t0);
    out->create = (double)(n / 2) / t_key;
    out->create_data = (double)(n / 2) / t_data;
    double d0 = now_s();
    for (size_t i = 0; i < n; i++)
        check_rv(raw_fn->C_DestroyObject(raw_s, h[i]), "C_DestroyObject");
    out->destroy = (double)n / (now_s() - d0);
}

/* C_SignInit(CKM_SHA256_HMAC) + C_Sign of an 80-byte message for raw_seconds. */
static double raw_hmac(CK_OBJECT_HANDLE key)
{
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    uint8_t msg[80], mac[32];
    memset(msg, 0x5a, sizeof(msg));
    long n = 0;
    double t0 = now_s(), end = t0 + opt.raw_seconds, t1;
    do {
        for (int i = 0; i < 64; i++, n++) {
            CK_ULONG len = sizeof(mac);
            check_rv(raw_fn->C_SignInit(raw_s, &mech, key), "C_SignInit");
            check_rv(raw_fn->C_Sign(raw_s, msg, sizeof(msg), mac, &len), "C_Sign");
        }
    } while ((t1 = now_s()) < end);
    return (double)n / (t1 - t0);
}

static raw_rates raw_measure(int creates, int hmacs)
{
    raw_rates r = {0};
    if (creates)
        raw_create(&r);
    if (hmacs) {
        r.hmac_session = raw_hmac(raw_key_session);
        r.hmac_token = raw_hmac(raw_key_token);
    }
    return r;
}

/* ---- an in-memory TLS-PSK server: the same single-threaded shape as the MAF ---- */

typedef struct {
    int fd, established;
    SSL *ssl;
    char out[256];
    int out_len;
} mconn;

static unsigned int memory_psk(SSL *ssl, const char *identity, unsigned char *out, unsigned int max)
{
    (void)ssl;
    for (size_t i = 0; identity != NULL && i < npool; i++)
        if (pool[i].enrolled && max >= 32 && strcmp(pool[i].km.identity, identity) == 0) {
            memcpy(out, pool[i].km.key, 32);
            return 32;
        }
    return 0;
}

static void mconn_free(int ep, mconn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    free(c);
}

/* Drive one connection as far as it goes; returns 0 to keep it, -1 when it is finished. */
static int mconn_step(int ep, mconn *c)
{
    struct epoll_event ev = {.data.ptr = c};
    for (;;) {
        int r;
        if (!c->established) {
            r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                c->established = 1;
                c->out_len = snprintf(c->out, sizeof(c->out),
                                      "in-memory server: authenticated %s until never\n",
                                      SSL_get_psk_identity(c->ssl));
                continue;
            }
        } else if (c->out_len > 0) {
            r = SSL_write(c->ssl, c->out, c->out_len);
            if (r > 0) {
                c->out_len = 0;
                continue;
            }
        } else {
            char buf[256];
            r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r > 0) {
                memcpy(c->out, buf, (size_t)r); /* echo */
                c->out_len = r;
                continue;
            }
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            ev.events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        }
        ERR_clear_error();
        return -1;
    }
}

static void memory_server_run(int lfd, int nodelay)
{
    signal(SIGTERM, SIG_DFL);
    SSL_CTX *sctx = tls12_psk_ctx(1);
    SSL_CTX_set_psk_server_callback(sctx, memory_psk);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            mconn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    c = calloc(1, sizeof(*c));
                    if (c == NULL || (c->ssl = SSL_new(sctx)) == NULL) {
                        free(c);
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    if (nodelay) {
                        int one = 1;
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    }
                    SSL_set_fd(c->ssl, fd);
                    SSL_set_accept_state(c->ssl);
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                    if (mconn_step(ep, c) != 0)
                        mconn_free(ep, c);
                }
                continue;
            }
            if (mconn_step(ep, c) != 0)
                mconn_free(ep, c);
        }
    }
}

/* Fork the in-memory server on a free loopback port (after every thread has ended). */
static void memory_server_start(int nodelay)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 1024) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) != 0)
        die("in-memory server: cannot listen: %s", strerror(errno));
    memcpy(&mem_addr, &a, sizeof(a));
    mem_addr_len = sizeof(a);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        memory_server_run(lfd, nodelay);
        _exit(0);
    }
    close(lfd);
    memory_server_pid = (int)pid;
}

static void memory_server_stop(void)
{
    if (memory_server_pid > 0) {
        kill(memory_server_pid, SIGTERM);
        waitpid(memory_server_pid, NULL, 0);
    }
    memory_server_pid = 0;
}

/* ---- the --hold test ---- */

typedef struct {
    atomic_int *next;
    int total;
    conn *conns;
    atomic_long *failed;
    pthread_barrier_t *start;
} opener;

static void *opener_main(void *arg)
{
    opener *o = arg;
    pthread_barrier_wait(o->start);
    for (;;) {
        int i = atomic_fetch_add(o->next, 1);
        if (i >= o->total)
            return NULL;
        enrolee *e = &pool[(size_t)i % hold_pool];
        conn *c = &o->conns[i];
        c->fd = -1;
        for (int attempt = 0; attempt < 3; attempt++) {
            if (tls_open(&maf_addr, maf_addr_len, &e->km, opt.maf_id, c) == 0 &&
                read_greeting(c, e->km.identity) == 0)
                break;
            tls_close(c);
            atomic_fetch_add(o->failed, 1);
        }
    }
}

static int echo_ok(conn *c, char byte)
{
    char back = 0;
    return c->ssl != NULL && SSL_write(c->ssl, &byte, 1) == 1 && SSL_read(c->ssl, &back, 1) == 1 &&
           back == byte;
}

/* ---- output ---- */

static void print_cpu(const cpu_use *u, int mef, int maf)
{
    double srv = (mef ? u->mef : 0) + (maf ? u->maf : 0) + (!mef && !maf ? u->other_srv : 0);
    printf(" %.2f | %.2f | %.0f%% |", srv, u->self, 100 * u->machine);
}

static void print_row(const char *what, const result *r, int mef, int maf)
{
    printf("| %s | %d | %.1f | %.1f | %.1f | %ld | %ld |", what, r->clients, r->rate, r->p50,
           r->p99, r->ok, r->failed);
    print_cpu(&r->cpu, mef, maf);
}

static void print_raw_create(const raw_rates *r, double rate)
{
    printf(" %.0f | %.0f | %.1f | %.0f | %.2f |\n", r->create, r->create_data, r->pairs, r->destroy,
           rate / r->pairs);
}

static void usage(void)
{
    fputs("usage: bench_services --kpms FILE --mef HOST:PORT --maf HOST:PORT --raw-dir DIR\n"
          "         [--mef-pid PID] [--maf-pid PID] [--mef-log FILE] [--maf-log FILE]\n"
          "         [--clients 1,16,256] [--seconds 5] [--hold 1000] [--openers 16]\n"
          "         [--raw-seconds 1] [--mef-fqdn FQDN] [--maf-id FQDN] [--module PATH]\n"
          "         [--no-memory-server]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"kpms", required_argument, NULL, 'k'},
                                       {"mef", required_argument, NULL, 'e'},
                                       {"maf", required_argument, NULL, 'a'},
                                       {"raw-dir", required_argument, NULL, 'r'},
                                       {"mef-pid", required_argument, NULL, 'E'},
                                       {"maf-pid", required_argument, NULL, 'A'},
                                       {"mef-log", required_argument, NULL, 'L'},
                                       {"maf-log", required_argument, NULL, 'M'},
                                       {"clients", required_argument, NULL, 'c'},
                                       {"seconds", required_argument, NULL, 's'},
                                       {"hold", required_argument, NULL, 'H'},
                                       {"openers", required_argument, NULL, 'o'},
                                       {"raw-seconds", required_argument, NULL, 'R'},
                                       {"mef-fqdn", required_argument, NULL, 'F'},
                                       {"maf-id", required_argument, NULL, 'I'},
                                       {"module", required_argument, NULL, 'm'},
                                       {"no-memory-server", no_argument, NULL, 'N'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    opt.module = getenv("M2MHSM_MODULE") ? getenv("M2MHSM_MODULE") : BENCH_DEFAULT_MODULE;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'k':
            opt.kpms = optarg;
            break;
        case 'e':
            opt.mef = optarg;
            break;
        case 'a':
            opt.maf = optarg;
            break;
        case 'r':
            opt.raw_dir = optarg;
            break;
        case 'E':
            opt.mef_pid = atoi(optarg);
            break;
        case 'A':
            opt.maf_pid = atoi(optarg);
            break;
        case 'L':
            opt.mef_log = optarg;
            break;
        case 'M':
            opt.maf_log = optarg;
            break;
        case 'c':
            if (parse_levels(optarg) != 0)
                usage();
            break;
        case 's':
            opt.seconds = atof(optarg);
            break;
        case 'H':
            opt.hold = atoi(optarg);
            break;
        case 'o':
            opt.openers = atoi(optarg);
            break;
        case 'R':
            opt.raw_seconds = atof(optarg);
            break;
        case 'F':
            opt.mef_fqdn = optarg;
            break;
        case 'I':
            opt.maf_id = optarg;
            break;
        case 'm':
            opt.module = optarg;
            break;
        case 'N':
            opt.memory_server = 0;
            break;
        default:
            usage();
        }
    }
    if (opt.kpms == NULL || opt.mef == NULL || opt.maf == NULL || opt.raw_dir == NULL ||
        optind != argc || opt.seconds <= 0 || opt.raw_seconds <= 0 || opt.hold < 0 ||
        opt.openers < 1)
        usage();
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    load_kpms(opt.kpms);
    int maxc = 0;
    size_t fresh_need = 0;
    for (int i = 0; i < opt.nlevels; i++) {
        if (opt.levels[i] > maxc)
            maxc = opt.levels[i];
        fresh_need += (size_t)(opt.levels[i] > 32 ? opt.levels[i] : 32);
    }
    if (npool < fresh_need)
        die("%s holds %zu Kpms; --clients needs %zu (max(c, 32) fresh KpmIDs per level)", opt.kpms,
            npool, fresh_need);
    parse_addr(opt.mef, &mef_addr, &mef_addr_len);
    parse_addr(opt.maf, &maf_addr, &maf_addr_len);
    cctx = tls12_psk_ctx(0);
    SSL_CTX_set_psk_client_callback(cctx, client_psk);

    double la[3] = {0};
    if (getloadavg(la, 3) != 3)
        la[0] = la[1] = la[2] = -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("# bench_services: %ld vCPUs, load average %.2f %.2f %.2f at start; %.1f s per timed "
           "figure; client, servers and token on this machine\n",
           ncpu, la[0], la[1], la[2], opt.seconds);
    raw_open();

    /* ---- 1. MEF, first enrolments ---- */
    size_t next_fresh = 0, maf_base = 0;
    int maf_n = 0;
    result first[MAX_LEVELS];
    raw_rates first_raw[MAX_LEVELS];
    long enrolled_before = count_log(opt.mef_log, "event=enrolled");
    for (int i = 0; i < opt.nlevels; i++) {
        int c = opt.levels[i];
        size_t n = (size_t)(c > 32 ? c : 32);
        note("MEF: first enrolments, %d client(s), %zu fresh KpmIDs", c, n);
        first_raw[i] = raw_measure(1, 0);
        first[i] = queue_phase(op_enrol, c, next_fresh, next_fresh + n, 0);
        if (c == maxc) {
            maf_base = next_fresh;
            maf_n = c;
        }
        next_fresh += n;
    }
    long first_ok = 0;
    for (int i = 0; i < opt.nlevels; i++)
        first_ok += first[i].ok;
    long enrolled_after = settle_log(opt.mef_log, "event=enrolled",
                                     enrolled_before < 0 ? -1 : enrolled_before + first_ok);
    /* The MAF's Enrolees are the maxc fresh ones of the largest level; move them to the
     * front of the pool so that timed phases can index from 0. */
    for (int i = 0; i < maf_n; i++) {
        enrolee t = pool[(size_t)i];
        pool[(size_t)i] = pool[maf_base + (size_t)i];
        pool[maf_base + (size_t)i] = t;
    }
    size_t maf_pool = (size_t)maf_n;
    for (size_t i = 0; i < maf_pool; i++)
        if (!pool[i].enrolled)
            die("Enrolee %zu did not enrol; see the MEF log", i);

    /* ---- 2. MAF ---- */
    note("MAF: first handshake of %zu Enrolees (the MAF fetches each Km from the MEF)", maf_pool);
    long hs_before = count_log(opt.maf_log, "event=handshake-ok");
    long fetched_before = count_log(opt.maf_log, "event=fetched");
    int wc = opt.openers < 64 ? opt.openers : 64; /* below the MAF's default max_fetches */
    result warm = queue_phase(op_maf, wc, 0, maf_pool, 5);
    long fetched = settle_log(opt.maf_log, "event=fetched",
                              fetched_before < 0 ? -1 : fetched_before + (long)maf_pool);
    if (warm.ok != (long)maf_pool)
        die("only %ld of %zu Enrolees completed their first MAF handshake", warm.ok, maf_pool);
    hold_pool = maf_pool;

    result mafr[MAX_LEVELS], memr[2][MAX_LEVELS];
    raw_rates maf_raw[MAX_LEVELS];
    long hs_logged[MAX_LEVELS];
    for (int i = 0; i < opt.nlevels; i++) {
        int c = opt.levels[i];
        note("MAF: %d client(s), %.1f s", c, opt.seconds);
        maf_raw[i] = raw_measure(0, 1);
        long b = count_log(opt.maf_log, "event=handshake-ok");
        mafr[i] = timed_phase(op_maf, c, 0);
        long a = settle_log(opt.maf_log, "event=handshake-ok", b < 0 ? -1 : b + mafr[i].ok);
        hs_logged[i] = b < 0 || a < 0 ? -1 : a - b;
    }
    /* The reference server twice: with the MAF's socket options (Nagle on), and with
     * TCP_NODELAY on accepted sockets. */
    for (int v = 0; opt.memory_server && v < 2; v++) {
        memory_server_start(v);
        for (int i = 0; i < opt.nlevels; i++) {
            note("in-memory server%s: %d client(s), %.1f s", v ? ", TCP_NODELAY" : "",
                 opt.levels[i], opt.seconds);
            memr[v][i] = timed_phase(op_mem, opt.levels[i], 0);
        }
        memory_server_stop();
    }
    long hs_after = count_log(opt.maf_log, "event=handshake-ok");

    /* ---- 3. hold ---- */
    long rss_idle = -1, rss_held = -1, fds_idle = -1, fds_held = -1, echoed = 0, held_ok = 0;
    double hold_s = 0;
    atomic_long hold_failed = 0;
    cpu_use hold_cpu = {0};
    if (opt.hold > 0) {
        note("MAF: %d connections held open at once (%d openers)", opt.hold, opt.openers);
        conn *conns = calloc((size_t)opt.hold, sizeof(*conns));
        opener *op = calloc((size_t)opt.openers, sizeof(*op));
        pthread_t *t = calloc((size_t)opt.openers, sizeof(*t));
        atomic_int next = 0;
        pthread_barrier_t b;
        if (conns == NULL || op == NULL || t == NULL ||
            pthread_barrier_init(&b, NULL, (unsigned)opt.openers + 1) != 0)
            die("out of memory");
        rss_idle = opt.maf_pid > 0 ? vm_rss_kib(opt.maf_pid) : -1;
        fds_idle = opt.maf_pid > 0 ? open_fds(opt.maf_pid) : -1;
        for (int i = 0; i < opt.openers; i++) {
            op[i] = (opener){&next, opt.hold, conns, &hold_failed, &b};
            if (pthread_create(&t[i], NULL, opener_main, &op[i]) != 0)
                die("pthread_create: %s", strerror(errno));
        }
        usleep(20000);
        cpu_mark a = mark();
        pthread_barrier_wait(&b);
        for (int i = 0; i < opt.openers; i++)
            pthread_join(t[i], NULL);
        cpu_mark m = mark();
        hold_s = m.wall - a.wall;
        hold_cpu = cpu_between(&a, &m);
        for (int i = 0; i < opt.hold; i++)
            held_ok += conns[i].ssl != NULL;
        usleep(200000);
        rss_held = opt.maf_pid > 0 ? vm_rss_kib(opt.maf_pid) : -1;
        fds_held = opt.maf_pid > 0 ? open_fds(opt.maf_pid) : -1;
        /* Every connection is still open: each one echoes a byte now. */
        for (int i = 0; i < opt.hold; i++)
            echoed += echo_ok(&conns[i], (char)('a' + i % 26));
        for (int i = 0; i < opt.hold; i++)
            tls_close(&conns[i]);
        pthread_barrier_destroy(&b);
        free(conns);
        free(op);
        free(t);
    }

    /* ---- 4. MEF, re-enrolments ---- */
    result re[MAX_LEVELS];
    raw_rates re_raw[MAX_LEVELS];
    long re_logged[MAX_LEVELS];
    for (int i = 0; i < opt.nlevels; i++) {
        int c = opt.levels[i];
        note("MEF: re-enrolments, %d client(s), %.1f s", c, opt.seconds);
        re_raw[i] = raw_measure(1, 0);
        long b = count_log(opt.mef_log, "event=enrolled");
        re[i] = timed_phase(op_enrol, c, 0);
        long a = settle_log(opt.mef_log, "event=enrolled", b < 0 ? -1 : b + re[i].ok);
        re_logged[i] = b < 0 || a < 0 ? -1 : a - b;
    }
    raw_close();

    /* ---- report ---- */
    printf("\n## MEF: enrolments/s (TLS 1.2 PSK-AES128-CBC-SHA256 bootstrap + "
           "EXPORTER-oneM2M-Bootstrap)\n\n");
    printf("An enrolment makes the MEF create 2 token objects (metadata CKO_DATA + Ke "
           "CKO_SECRET_KEY). A re-enrolment also erases the KpmID's previous Ke: 2 "
           "C_DestroyObject, after the erase's scan of the token.\n"
           "Rate: first enrolments = fresh KpmIDs / makespan (max(c, 32) KpmIDs, each enrolled "
           "once); re-enrolments = enrolments completed in the %.1f s window (done also counts "
           "those still running at its end, which finish afterwards). CPU in cores (1.00 = one "
           "vCPU busy) during the window; machine = busy share of all %ld vCPUs. Raw rates: one "
           "thread, on the scratch token, just before the row.\n\n",
           opt.seconds, ncpu);
    printf(
        "| enrolment | clients | enrolments/s | p50 ms | p99 ms | done | failed | MEF CPU | "
        "client CPU | machine busy | raw C_CreateObject/s (secret key) | raw C_CreateObject/s "
        "(CKO_DATA) | raw pairs/s (CKO_DATA + key) | raw C_DestroyObject/s | ratio to pairs/s |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < opt.nlevels; i++) {
        print_row("first (no previous Ke)", &first[i], 1, 0);
        print_raw_create(&first_raw[i], first[i].rate);
    }
    for (int i = 0; i < opt.nlevels; i++) {
        print_row("re-enrolment (replaces Ke)", &re[i], 1, 0);
        print_raw_create(&re_raw[i], re[i].rate);
    }
    printf("\nMEF log: %ld `event=enrolled` lines for the %ld first enrolments",
           enrolled_before >= 0 && enrolled_after >= 0 ? enrolled_after - enrolled_before : -1,
           first_ok);
    for (int i = 0; i < opt.nlevels; i++)
        printf("; %ld for the %ld re-enrolments of %d client(s)", re_logged[i], re[i].ok,
               opt.levels[i]);
    printf(" (-1: no log given).\n");

    printf("\n## MAF: handshakes/s (TLS 1.2 PSK-AES128-CBC-SHA256, psk_identity = KeID, "
           "psk = Km; connect, handshake, greeting line, close)\n\n");
    printf("A full handshake makes the MAF compute P_SHA256 of the master secret with 4 "
           "C_Sign(CKM_SHA256_HMAC) on the token; the MAF signs with session-object copies of "
           "its keys. Ratio: handshakes/s ÷ (raw session-object HMAC/s ÷ 4). The in-memory "
           "server is a forked single-threaded epoll server of this bench with the same PSKs "
           "in memory and the default provider (no token, no service code).\n\n");
    printf("| server | clients | handshakes/s | p50 ms | p99 ms | done | failed | server CPU | "
           "client CPU | machine busy | raw HMAC/s (session object) | raw HMAC/s (token "
           "object) | ratio to HMAC/s ÷ 4 |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < opt.nlevels; i++) {
        print_row("m2m-maf", &mafr[i], 0, 1);
        printf(" %.0f | %.0f | %.3f |\n", maf_raw[i].hmac_session, maf_raw[i].hmac_token,
               mafr[i].rate / (maf_raw[i].hmac_session / 4));
    }
    for (int v = 0; opt.memory_server && v < 2; v++)
        for (int i = 0; i < opt.nlevels; i++) {
            print_row(v ? "in-memory server, TCP_NODELAY"
                        : "in-memory server, MAF's socket options",
                      &memr[v][i], 0, 0);
            printf(" | | m2m-maf = %.2f of this |\n", mafr[i].rate / memr[v][i].rate);
        }
    printf("\nFirst handshake of each of the %zu Enrolees (the MAF fetched Km from the MEF over "
           "HTTPS and stored it; %d clients, up to 5 retries): %.1f/s, p50 %.1f ms, p99 %.1f ms, "
           "%ld refused and retried. MAF log: %ld `event=fetched`.\n",
           maf_pool, wc, warm.rate, warm.p50, warm.p99, warm.failed,
           fetched >= 0 && fetched_before >= 0 ? fetched - fetched_before : -1);
    printf("MAF log: `event=handshake-ok` lines per level:");
    for (int i = 0; i < opt.nlevels; i++)
        printf(" %ld (client counted %ld)", hs_logged[i], mafr[i].ok);
    printf("; %ld in all during the MAF phases.\n",
           hs_before >= 0 && hs_after >= 0 ? hs_after - hs_before : -1);

    if (opt.hold > 0) {
        printf("\n## MAF: %d connections open at once\n\n", opt.hold);
        printf("| connections | established | failed attempts (retried) | time to establish s | "
               "handshakes/s | MAF CPU | client CPU | echo verified (all open) | MAF open fds | "
               "MAF VmRSS KiB idle | MAF VmRSS KiB, all open | KiB per connection |\n");
        printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        printf("| %d | %ld | %ld | %.2f | %.0f | %.2f | %.2f | %ld | %ld (idle %ld) | %ld | %ld | "
               "%.1f |\n",
               opt.hold, held_ok, (long)hold_failed, hold_s, held_ok / (hold_s > 0 ? hold_s : 1),
               hold_cpu.maf, hold_cpu.self, echoed, fds_held, fds_idle, rss_idle, rss_held,
               held_ok > 0 && rss_idle >= 0 ? (double)(rss_held - rss_idle) / (double)held_ok : 0);
        printf("\nConnections reuse the %zu KeIDs in turn. %s\n", maf_pool,
               held_ok == opt.hold && echoed == opt.hold
                   ? "All were established, held open together and each echoed a byte."
                   : "NOT all connections were established or echoed.");
    }
    int ok = held_ok == opt.hold && echoed == opt.hold;
    for (int i = 0; i < opt.nlevels; i++)
        ok = ok && mafr[i].failed == 0;
    return ok ? 0 : 1;
}
