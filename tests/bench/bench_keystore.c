/*
 * bench_keystore: the key store's performance targets, each printed beside a baseline of
 * raw PKCS#11 calls measured in the same run on the same token (docs/performance.md).
 * Run by hand; not a ctest. Keys are random test keys; no key byte or PIN is printed.
 *
 *   bench_keystore --dir DIR [--sizes 100,1000,10000] [--jobs 2] [--rounds 5]
 *                  [--lookups 5000] [--finds 10] [--opens 3] [--derives 5000]
 *                  [--enrols 40] [--populate-only] [--module PATH]
 *
 * DIR keeps one SoftHSM token directory per size (DIR/n<N>), populated once with N Kpm
 * records (m2mhsm_keystore_import_kpm: 1 metadata + 3 key objects each); reruns reuse it.
 * A new size is seeded with a copy of the largest complete smaller one.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <m2mhsm/keystore.h>
#include "keystore/record.h"
#include "p11/handles.h"
#include "softhsm_conf.h"

#ifndef BENCH_DEFAULT_MODULE
#define BENCH_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

#define MAX_SIZES 8
#define TOKEN_LABEL "m2mhsm-bench"
#define BENCH_ENROLEE "//sp.bench.example/cse1/Cbench" /* Enrolee-ID of every bench Ke */
#define BENCH_TARGET "maf.bench.example"               /* MAF-ID: the Km derivation's target */
#define BENCH_MEF "mef.bench.example"
#define RAW_APPLICATION "m2mbench" /* baseline objects: never taken for m2mhsm's */
#define LABEL_BUF 600              /* >= the library's longest label */

/* ---- options ---- */

typedef struct {
    const char *dir;
    const char *module;
    size_t sizes[MAX_SIZES];
    size_t nsizes;
    unsigned jobs;    /* processes populating a token */
    unsigned rounds;  /* alternating figure/baseline rounds of the per-call metrics */
    unsigned lookups; /* lookups (and raw C_GetAttributeValue calls) per round */
    unsigned finds;   /* C_FindObjects-by-label searches, and lookup misses, per size */
    unsigned opens;   /* timed opens per size (after one warm-up) */
    unsigned derives; /* derivations (and raw C_Sign) per round */
    unsigned enrols;  /* enrolments (and raw pairs of objects) per size */
    int populate_only;
} bench_opts;

/* One size's token: DIR/n<N>/{softhsm2.conf,tokens/,complete}; PINs shared in DIR. */
typedef struct {
    size_t n;
    char root[PATH_MAX];
    char conf[PATH_MAX + 32];
    char pin_path[PATH_MAX + 32];
    char pin_source[PATH_MAX + 32];
    char so_source[PATH_MAX + 32];
    char lock_file[PATH_MAX + 32];
    const char *uri;
} bench_token;

/* What one size measured. Rates per second, times in milliseconds. */
typedef struct {
    size_t n;
    double lookup, gav, find, miss;
    double lookup_index; /* with revalidate_ms: the index alone, no token read */
    double open_ms, p11_open_ms, floor_open_ms;
    double derive, sign;
    double enrol, create;
    int derive_match;
} bench_result;

static const bench_opts *opts_g; /* read-only after parsing */

/* ---- small helpers ---- */

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
    fputs("bench_keystore: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void check(m2mhsm_status st, const char *what)
{
    if (st != M2MHSM_OK)
        die("%s: %s (%s)", what, m2mhsm_status_name(st), m2mhsm_last_error());
}

static void check_rv(CK_RV rv, const char *what)
{
    if (rv != CKR_OK)
        die("%s: %s", what, m2mhsm_ckr_name(rv));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Deterministic choice of identities, so that reruns look up the same records. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static void kpm_id(size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "bench-kpm-%06zu", i);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void write_secret_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        die("%s: short write", path);
    close(fd);
}

/* ---- the raw module (baselines): SoftHSM's own function list, no p11-kit ---- */

static CK_FUNCTION_LIST *raw_fn;

static void raw_load(const char *module)
{
    void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL)
        die("dlopen(%s): %s", module, dlerror());
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    if (get == NULL)
        die("%s has no C_GetFunctionList", module);
    check_rv(get(&raw_fn), "C_GetFunctionList");
}

/* ---- token directories ---- */

static void pins_ensure(const char *dir)
{
    static const char *const names[] = {"so.pin", "user.pin"};
    for (size_t i = 0; i < 2; i++) {
        char path[PATH_MAX + 32], text[64];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (file_exists(path))
            continue;
        uint8_t r[12];
        if (RAND_bytes(r, sizeof(r)) != 1)
            die("RAND_bytes failed");
        for (size_t k = 0; k < sizeof(r); k++)
            snprintf(text + 2 * k, 3, "%02x", r[k]);
        strcat(text, "\n");
        write_secret_file(path, text);
        OPENSSL_cleanse(text, sizeof(text));
        OPENSSL_cleanse(r, sizeof(r));
    }
}

static void token_paths(bench_token *t, const char *dir, size_t n)
{
    memset(t, 0, sizeof(*t));
    t->n = n;
    snprintf(t->root, sizeof(t->root), "%s/n%zu", dir, n);
    snprintf(t->conf, sizeof(t->conf), "%s/softhsm2.conf", t->root);
    snprintf(t->pin_path, sizeof(t->pin_path), "%s/user.pin", dir);
    snprintf(t->pin_source, sizeof(t->pin_source), "file:%s/user.pin", dir);
    snprintf(t->so_source, sizeof(t->so_source), "file:%s/so.pin", dir);
    snprintf(t->lock_file, sizeof(t->lock_file), "%s/m2mhsm.lock", t->root);
    t->uri = "pkcs11:token=" TOKEN_LABEL;
}

static void token_select(const bench_token *t)
{
    setenv("SOFTHSM2_CONF", t->conf, 1);
}

static int token_complete(const char *root)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/complete", root);
    return file_exists(path);
}

static void token_mark_complete(const bench_token *t)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/complete", t->root);
    write_secret_file(path, "1\n");
}

/* The largest complete size below n in dir (its tokens seed size n), or 0. */
static size_t seed_size(const char *dir, size_t n)
{
    DIR *d = opendir(dir);
    size_t best = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char *end = NULL;
        if (e->d_name[0] != 'n')
            continue;
        unsigned long long m = strtoull(e->d_name + 1, &end, 10);
        char root[PATH_MAX];
        snprintf(root, sizeof(root), "%s/%s", dir, e->d_name);
        if (*end == '\0' && m < n && m > best && token_complete(root))
            best = (size_t)m;
    }
    if (d != NULL)
        closedir(d);
    return best;
}

/* Make DIR/n<N> with an initialised token: a copy of a smaller complete one, or fresh. */
static void token_ensure(const bench_token *t, const char *dir)
{
    char tokens[PATH_MAX + 32], text[PATH_MAX + 200];
    snprintf(tokens, sizeof(tokens), "%s/tokens", t->root);
    int fresh = !file_exists(tokens);
    if (softhsm_conf_write(t->root) != 0)
        exit(1);
    if (!fresh)
        return;
    size_t seed = seed_size(dir, t->n);
    if (seed > 0) {
        fprintf(stderr, "[n=%zu] seeding from the complete n=%zu token\n", t->n, seed);
        snprintf(text, sizeof(text), "cp -a '%s/n%zu/tokens/.' '%s'", dir, seed, tokens);
        if (system(text) != 0)
            die("copying the n=%zu token failed", seed);
        return;
    }
    token_select(t);
    check(m2mhsm_token_init(opts_g->module, TOKEN_LABEL, t->so_source, t->pin_source),
          "m2mhsm_token_init");
}

/* ---- opening through the library ---- */

typedef struct {
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_open_report rep;
} bench_store;

/* shared: the importers run in several processes, so they take the cross-process object
 * lock SoftHSM's file backend needs (token.h, lock_file). Measurements run in one process
 * with the default configuration, like their raw baselines. */
static void store_open_as(const bench_token *t, bench_store *bs, int shared)
{
    m2mhsm_token_config cfg = {.module_path = opts_g->module,
                               .token_uri = t->uri,
                               .pin_source = t->pin_source,
                               .lock_file = shared ? t->lock_file : NULL};
    check(m2mhsm_token_open(&cfg, &bs->tok), "m2mhsm_token_open");
    check(m2mhsm_keystore_open(bs->tok, NULL, &bs->ks, &bs->rep), "m2mhsm_keystore_open");
}

static void store_open(const bench_token *t, bench_store *bs)
{
    store_open_as(t, bs, 0);
}

static void store_close(bench_store *bs)
{
    m2mhsm_keystore_close(bs->ks);
    m2mhsm_token_close(bs->tok);
    bs->ks = NULL;
    bs->tok = NULL;
}

/* ---- population: N Kpm records through the public import ---- */

/* Wait for one byte on fd (a barrier between the importers and their parent). */
static void await_byte(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        die("an importer or its parent exited early");
}

static void send_byte(int fd)
{
    if (write(fd, "x", 1) != 1)
        die("barrier: %s", strerror(errno));
}

/* Import every record i with i % jobs == job. Every importer has opened its store before
 * any writes (ready/go), so no open's repair pass runs beside another's writes. */
static void import_range(const bench_token *t, unsigned job, unsigned jobs, int ready, int go)
{
    bench_store bs;
    store_open_as(t, &bs, 1);
    send_byte(ready);
    await_byte(go);
    double t0 = now_s(), last = t0;
    size_t done = 0, total = 0;
    for (size_t i = job; i < t->n; i += jobs)
        total++;
    for (size_t i = job; i < t->n; i += jobs) {
        char id[32];
        uint8_t kpm[32];
        kpm_id(i, id, sizeof(id));
        if (RAND_bytes(kpm, sizeof(kpm)) != 1)
            die("RAND_bytes failed");
        m2mhsm_status st =
            m2mhsm_keystore_import_kpm(bs.ks, id, kpm, sizeof(kpm), M2MHSM_NEVER, NULL);
        OPENSSL_cleanse(kpm, sizeof(kpm));
        if (st != M2MHSM_E_EXISTS)
            check(st, "m2mhsm_keystore_import_kpm");
        done++;
        if (now_s() - last >= 60 || done == total) {
            last = now_s();
            fprintf(stderr, "[n=%zu job %u] %zu/%zu Kpm records in place, %.1f s\n", t->n, job,
                    done, total, last - t0);
        }
    }
    store_close(&bs);
}

/* Fork `jobs` importers (SoftHSM scales by processes, not threads), opening their stores
 * one after another, then let them all write. The parent holds no module state. */
static void populate(const bench_token *t, unsigned jobs)
{
    double t0 = now_s();
    int go[2];
    if (pipe(go) != 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    for (unsigned j = 0; j < jobs; j++) {
        int ready[2];
        if (pipe(ready) != 0)
            die("pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(go[1]);
            close(ready[0]);
            import_range(t, j, jobs, ready[1], go[0]);
            _exit(0);
        }
        close(ready[1]);
        await_byte(ready[0]);
        close(ready[0]);
    }
    close(go[0]);
    for (unsigned j = 0; j < jobs; j++)
        send_byte(go[1]);
    close(go[1]);
    int failed = 0;
    for (unsigned j = 0; j < jobs; j++) {
        int status = 0;
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    if (failed)
        die("[n=%zu] population failed; rerun to resume", t->n);
    fprintf(stderr, "[n=%zu] population took %.1f s\n", t->n, now_s() - t0);
}

/* Leftovers of an interrupted run (bench Ke records) would skew the sizes: erase them. */
static void clean_leftovers(bench_store *bs, size_t n)
{
    if (bs->rep.records <= n)
        return;
    size_t erased = 0;
    m2mhsm_status st = m2mhsm_keystore_erase_enrolee(bs->ks, BENCH_ENROLEE, &erased);
    if (st != M2MHSM_OK && st != M2MHSM_E_NOT_FOUND)
        check(st, "m2mhsm_keystore_erase_enrolee(leftovers)");
    fprintf(stderr, "[n=%zu] erased %zu leftover bench records\n", n, erased);
}

static void token_prepare(const bench_token *t)
{
    token_ensure(t, opts_g->dir);
    token_select(t);
    if (token_complete(t->root))
        return;
    populate(t, opts_g->jobs);
    bench_store bs;
    store_open(t, &bs);
    if (bs.rep.records < t->n)
        die("[n=%zu] only %zu records after population", t->n, bs.rep.records);
    store_close(&bs);
    token_mark_complete(t);
}

/* ---- 2. store open vs C_Initialize + C_Login ---- */

static void read_pin(const char *path, char *pin, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(pin, (int)cap, f) == NULL)
        die("%s: unreadable", path);
    fclose(f);
    *len = strcspn(pin, "\r\n");
}

static CK_SLOT_ID raw_find_slot(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    check_rv(raw_fn->C_GetSlotList(CK_TRUE, slots, &n), "C_GetSlotList");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (raw_fn->C_GetTokenInfo(slots[i], &ti) == CKR_OK && (ti.flags & CKF_TOKEN_INITIALIZED) &&
            memcmp(ti.label, TOKEN_LABEL, strlen(TOKEN_LABEL)) == 0)
            return slots[i];
    }
    die("no token labelled " TOKEN_LABEL);
}

/* The least any store that learns every key's handle must do after logging in: one
 * C_FindObjects pass over the token and one C_GetAttributeValue per object. */
static void raw_enumerate(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE h[256];
    CK_ULONG got = 0;
    check_rv(raw_fn->C_FindObjectsInit(s, NULL, 0), "C_FindObjectsInit");
    size_t cap = 1024, n = 0;
    CK_OBJECT_HANDLE *all = malloc(cap * sizeof(*all));
    while (all != NULL && raw_fn->C_FindObjects(s, h, 256, &got) == CKR_OK && got > 0) {
        if (n + got > cap && (all = realloc(all, (cap *= 2) * sizeof(*all))) == NULL)
            break;
        memcpy(all + n, h, got * sizeof(*h));
        n += got;
    }
    if (all == NULL)
        die("out of memory");
    check_rv(raw_fn->C_FindObjectsFinal(s), "C_FindObjectsFinal");
    for (size_t i = 0; i < n; i++) {
        CK_OBJECT_CLASS cls;
        char label[LABEL_BUF];
        uint8_t id[M2MHSM_RECORD_ID_LEN];
        CK_ATTRIBUTE a[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_LABEL, label, sizeof(label)},
                            {CKA_ID, id, sizeof(id)}};
        /* Metadata objects have no CKA_ID: CKR_ATTRIBUTE_TYPE_INVALID, the rest is read. */
        raw_fn->C_GetAttributeValue(s, all[i], a, 3);
    }
    free(all);
}

/* SoftHSM's own cost of becoming usable: C_Initialize, find the slot, C_Login; with
 * `enumerate`, plus the floor of an open that reads every object (raw_enumerate). */
static double raw_open_once(const bench_token *t, int enumerate)
{
    char pin[128];
    size_t pin_len;
    read_pin(t->pin_path, pin, sizeof(pin), &pin_len);
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK}; /* as p11-kit passes */
    CK_SESSION_HANDLE s;
    double t0 = now_s();
    check_rv(raw_fn->C_Initialize(&args), "C_Initialize");
    CK_SLOT_ID slot = raw_find_slot();
    check_rv(raw_fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
             "C_OpenSession");
    check_rv(raw_fn->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, pin_len), "C_Login");
    if (enumerate)
        raw_enumerate(s);
    double dt = now_s() - t0;
    OPENSSL_cleanse(pin, sizeof(pin));
    raw_fn->C_CloseSession(s);
    check_rv(raw_fn->C_Finalize(NULL), "C_Finalize");
    return dt;
}

static double lib_open_once(const bench_token *t, size_t *records)
{
    bench_store bs;
    double t0 = now_s();
    store_open(t, &bs);
    double dt = now_s() - t0;
    *records = bs.rep.records;
    store_close(&bs);
    return dt;
}

/* Alternate the three, after one warm-up of each (page cache), and keep the medians. */
static void bench_open(const bench_token *t, bench_result *r)
{
    unsigned n = opts_g->opens;
    double *lib = calloc(n, sizeof(double)), *raw = calloc(n, sizeof(double));
    double *least = calloc(n, sizeof(double));
    size_t records = 0;
    if (lib == NULL || raw == NULL || least == NULL)
        die("out of memory");
    raw_open_once(t, 0);
    raw_open_once(t, 1);
    lib_open_once(t, &records);
    for (unsigned i = 0; i < n; i++) {
        raw[i] = raw_open_once(t, 0);
        lib[i] = lib_open_once(t, &records);
        least[i] = raw_open_once(t, 1);
    }
    r->p11_open_ms = median(raw, n) * 1e3;
    r->open_ms = median(lib, n) * 1e3;
    r->floor_open_ms = median(least, n) * 1e3;
    fprintf(stderr,
            "[n=%zu] open: %.1f ms (C_Initialize+C_Login %.1f ms, + one pass %.1f ms), "
            "%zu records\n",
            t->n, r->open_ms, r->p11_open_ms, r->floor_open_ms, records);
    free(lib);
    free(raw);
    free(least);
}

/* ---- 1. lookups vs raw C_GetAttributeValue and C_FindObjects by label ---- */

typedef struct {
    size_t n;
    char (*ids)[32];
    CK_OBJECT_HANDLE *pms; /* the object a hit is confirmed on, per record */
    size_t *seq;           /* random record indices, one round's worth */
} lookup_set;

static void lookup_set_init(lookup_set *ls, m2mhsm_keystore *ks, size_t n, unsigned per_round)
{
    ls->n = n;
    ls->ids = calloc(n, sizeof(*ls->ids));
    ls->pms = calloc(n, sizeof(*ls->pms));
    ls->seq = calloc(per_round, sizeof(*ls->seq));
    if (ls->ids == NULL || ls->pms == NULL || ls->seq == NULL)
        die("out of memory");
    uint64_t rng = 0x9E3779B97F4A7C15ULL ^ n;
    for (unsigned i = 0; i < per_round; i++)
        ls->seq[i] = (size_t)(rng_next(&rng) % n);
    /* One lookup of every record: proves the token holds all N, and finds the handles
     * the raw baseline reads. */
    for (size_t i = 0; i < n; i++) {
        m2mhsm_record rec;
        kpm_id(i, ls->ids[i], sizeof(ls->ids[i]));
        check(m2mhsm_keystore_lookup(ks, M2MHSM_KIND_KPM, ls->ids[i], strlen(ls->ids[i]), &rec),
              "m2mhsm_keystore_lookup(every record)");
        ls->pms[i] = ks_obj(&rec)->key[M2MHSM_FORM_TLS12_PMS];
    }
}

static void lookup_set_free(lookup_set *ls)
{
    free(ls->ids);
    free(ls->pms);
    free(ls->seq);
}

static double lookup_round(m2mhsm_keystore *ks, const lookup_set *ls, unsigned count)
{
    double t0 = now_s();
    for (unsigned i = 0; i < count; i++) {
        const char *id = ls->ids[ls->seq[i]];
        m2mhsm_record rec;
        check(m2mhsm_keystore_lookup(ks, M2MHSM_KIND_KPM, id, strlen(id), &rec),
              "m2mhsm_keystore_lookup");
    }
    return count / (now_s() - t0);
}

/* What a hit costs at the token: the same two attributes of the same objects. */
static double gav_round(m2mhsm_token *tok, const lookup_set *ls, unsigned count)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(tok, &s), "m2mhsm_token_session_get");
    double t0 = now_s();
    for (unsigned i = 0; i < count; i++) {
        char label[LABEL_BUF];
        uint8_t id[M2MHSM_RECORD_ID_LEN];
        CK_ATTRIBUTE a[] = {{CKA_LABEL, label, sizeof(label) - 1}, {CKA_ID, id, sizeof(id)}};
        check_rv(fn->C_GetAttributeValue(s, ls->pms[ls->seq[i]], a, 2), "C_GetAttributeValue");
    }
    double rate = count / (now_s() - t0);
    m2mhsm_token_session_put(tok, s);
    return rate;
}

/* What a lookup without an index costs: the search a miss makes (lookup.c). */
static double find_rate(m2mhsm_token *tok, const lookup_set *ls, unsigned count)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(tok, &s), "m2mhsm_token_session_get");
    double t0 = now_s();
    for (unsigned i = 0; i < count; i++) {
        char label[64];
        snprintf(label, sizeof(label), "m2mhsm:kpm:%s", ls->ids[ls->seq[i]]);
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},
            {CKA_APPLICATION, "m2mhsm", 6},
            {CKA_LABEL, label, strlen(label)},
        };
        CK_OBJECT_HANDLE h[4];
        CK_ULONG got = 0;
        check_rv(fn->C_FindObjectsInit(s, tmpl, 3), "C_FindObjectsInit");
        check_rv(fn->C_FindObjects(s, h, 4, &got), "C_FindObjects");
        check_rv(fn->C_FindObjectsFinal(s), "C_FindObjectsFinal");
        if (got != 1)
            die("C_FindObjects by label found %lu objects, not 1", (unsigned long)got);
    }
    double rate = count / (now_s() - t0);
    m2mhsm_token_session_put(tok, s);
    return rate;
}

/* An identity the index does not hold: the library searches the token for it, since
 * another process may have written it since the store was opened (lookup.c). */
static double miss_rate(m2mhsm_keystore *ks, unsigned count)
{
    double t0 = now_s();
    for (unsigned i = 0; i < count; i++) {
        char id[32];
        m2mhsm_record rec;
        snprintf(id, sizeof(id), "bench-absent-%u", i);
        if (m2mhsm_keystore_lookup(ks, M2MHSM_KIND_KPM, id, strlen(id), &rec) != M2MHSM_E_NOT_FOUND)
            die("lookup of an absent KpmID did not answer M2MHSM_E_NOT_FOUND");
    }
    return count / (now_s() - t0);
}

/* The same lookups through a second store that trusts hits confirmed within a minute
 * (m2mhsm_keystore_options.revalidate_ms): what the index itself costs. */
static double index_rate(bench_store *bs, const lookup_set *ls, unsigned rounds, unsigned per)
{
    m2mhsm_keystore_options o = {.revalidate_ms = 60000};
    m2mhsm_keystore *ks = NULL;
    check(m2mhsm_keystore_open(bs->tok, &o, &ks, NULL), "m2mhsm_keystore_open(revalidate)");
    lookup_round(ks, ls, per); /* confirms every record the rounds touch */
    double *rates = calloc(rounds, sizeof(double));
    if (rates == NULL)
        die("out of memory");
    for (unsigned i = 0; i < rounds; i++)
        rates[i] = lookup_round(ks, ls, per);
    double rate = median(rates, rounds);
    free(rates);
    m2mhsm_keystore_close(ks);
    return rate;
}

static void bench_lookup(bench_store *bs, size_t n, bench_result *r)
{
    unsigned rounds = opts_g->rounds, per = opts_g->lookups;
    lookup_set ls;
    double t0 = now_s();
    lookup_set_init(&ls, bs->ks, n, per);
    fprintf(stderr, "[n=%zu] first lookup of every record: %.0f/s\n", n, n / (now_s() - t0));
    double *lib = calloc(rounds, sizeof(double)), *raw = calloc(rounds, sizeof(double));
    if (lib == NULL || raw == NULL)
        die("out of memory");
    for (unsigned i = 0; i < rounds; i++) {
        lib[i] = lookup_round(bs->ks, &ls, per);
        raw[i] = gav_round(bs->tok, &ls, per);
    }
    r->lookup = median(lib, rounds);
    r->gav = median(raw, rounds);
    r->lookup_index = index_rate(bs, &ls, rounds, per);
    r->find = find_rate(bs->tok, &ls, opts_g->finds);
    r->miss = miss_rate(bs->ks, opts_g->finds);
    fprintf(stderr,
            "[n=%zu] lookup %.0f/s, C_GetAttributeValue %.0f/s, find-by-label %.2f/s, "
            "misses %.2f/s\n",
            n, r->lookup, r->gav, r->find, r->miss);
    free(lib);
    free(raw);
    lookup_set_free(&ls);
}

/* ---- 3. Km derivation vs raw C_SignInit + C_Sign ---- */

static void enrolment_for(const char *kpm, m2mhsm_enrolment *enr)
{
    *enr = (m2mhsm_enrolment){.kpm_id = kpm,
                              .mef_fqdn = BENCH_MEF,
                              .enrolee_id = BENCH_ENROLEE,
                              .target_id = BENCH_TARGET,
                              .enrolment_expiry = {M2MHSM_EXPIRY_DURATION, 86400}};
}

static void store_random_ke(m2mhsm_keystore *ks, const char *kpm, m2mhsm_record *out)
{
    m2mhsm_enrolment enr;
    uint8_t exported[M2MHSM_EXPORT_LEN];
    enrolment_for(kpm, &enr);
    if (RAND_bytes(exported, sizeof(exported)) != 1)
        die("RAND_bytes failed");
    m2mhsm_status st = m2mhsm_keystore_store_ke(ks, &enr, exported, out);
    OPENSSL_cleanse(exported, sizeof(exported));
    check(st, "m2mhsm_keystore_store_ke");
}

static double derive_round(m2mhsm_keystore *ks, const m2mhsm_record *ke, unsigned count)
{
    uint8_t km[M2MHSM_KEY_LEN];
    double t0 = now_s();
    for (unsigned i = 0; i < count; i++)
        check(m2mhsm_keystore_derive(ks, ke, M2MHSM_DERIVE_KM, BENCH_TARGET, km),
              "m2mhsm_keystore_derive");
    double rate = count / (now_s() - t0);
    OPENSSL_cleanse(km, sizeof(km));
    return rate;
}

static void raw_sign(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                     const uint8_t *msg, size_t len, uint8_t out[M2MHSM_KEY_LEN])
{
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG out_len = M2MHSM_KEY_LEN;
    check_rv(fn->C_SignInit(s, &mech, key), "C_SignInit(CKM_SHA256_HMAC)");
    check_rv(fn->C_Sign(s, (CK_BYTE *)msg, len, out, &out_len), "C_Sign");
}

static double sign_round(m2mhsm_token *tok, CK_OBJECT_HANDLE key, const uint8_t *msg, size_t len,
                         unsigned count)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_SESSION_HANDLE s;
    uint8_t mac[M2MHSM_KEY_LEN];
    check(m2mhsm_token_session_get(tok, &s), "m2mhsm_token_session_get");
    double t0 = now_s();
    for (unsigned i = 0; i < count; i++)
        raw_sign(fn, s, key, msg, len, mac);
    double rate = count / (now_s() - t0);
    m2mhsm_token_session_put(tok, s);
    OPENSSL_cleanse(mac, sizeof(mac));
    return rate;
}

/* The library's output must be the raw HMAC of the same message (compared, not shown). */
static int derive_matches(bench_store *bs, const m2mhsm_record *ke, const uint8_t *msg, size_t len)
{
    uint8_t a[M2MHSM_KEY_LEN], b[M2MHSM_KEY_LEN];
    CK_SESSION_HANDLE s;
    check(m2mhsm_keystore_derive(bs->ks, ke, M2MHSM_DERIVE_KM, BENCH_TARGET, a),
          "m2mhsm_keystore_derive");
    check(m2mhsm_token_session_get(bs->tok, &s), "m2mhsm_token_session_get");
    raw_sign(m2mhsm_token_functions(bs->tok), s, ks_obj(ke)->key[M2MHSM_FORM_RAW], msg, len, b);
    m2mhsm_token_session_put(bs->tok, s);
    int same = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return same;
}

static void bench_derive(bench_store *bs, size_t n, bench_result *r)
{
    unsigned rounds = opts_g->rounds, per = opts_g->derives;
    m2mhsm_record ke;
    store_random_ke(bs->ks, "bench-derive", &ke);
    uint8_t *msg = NULL;
    size_t len = 0;
    check(m2mhsm_derivation_input(M2MHSM_DERIVE_KM, BENCH_TARGET, &msg, &len),
          "m2mhsm_derivation_input");
    r->derive_match = derive_matches(bs, &ke, msg, len);
    double *lib = calloc(rounds, sizeof(double)), *raw = calloc(rounds, sizeof(double));
    if (lib == NULL || raw == NULL)
        die("out of memory");
    for (unsigned i = 0; i < rounds; i++) {
        lib[i] = derive_round(bs->ks, &ke, per);
        raw[i] = sign_round(bs->tok, ks_obj(&ke)->key[M2MHSM_FORM_RAW], msg, len, per);
    }
    r->derive = median(lib, rounds);
    r->sign = median(raw, rounds);
    fprintf(stderr, "[n=%zu] Km derive %.0f/s, C_SignInit+C_Sign %.0f/s, outputs %s\n", n,
            r->derive, r->sign, r->derive_match ? "match" : "DIFFER");
    free(lib);
    free(raw);
    free(msg);
}

/* ---- 4. enrolment vs raw C_CreateObject of the same objects ---- */

/* The attributes of a Ke record's two objects, as objects.c writes them. */
typedef struct {
    CK_OBJECT_CLASS data_cls, key_cls;
    CK_KEY_TYPE type;
    CK_BBOOL t, f;
    CK_DATE start, end;
    uint8_t rid[M2MHSM_RECORD_ID_LEN];
    uint8_t ke[M2MHSM_KE_LEN];
    char meta_label[LABEL_BUF], key_label[LABEL_BUF], value[1024];
} raw_enrolment;

static void raw_enrolment_init(raw_enrolment *e, const char *kpm)
{
    char ke_id[M2MHSM_KE_ID_MAX + 1], rid_hex[2 * M2MHSM_RECORD_ID_LEN + 1];
    uint8_t rel[M2MHSM_RELATIVE_KE_ID_LEN];
    m2mhsm_time now = time(NULL), expiry = now + 86400;
    memset(e, 0, sizeof(*e));
    e->data_cls = CKO_DATA;
    e->key_cls = CKO_SECRET_KEY;
    e->type = CKK_GENERIC_SECRET;
    e->t = CK_TRUE;
    e->f = CK_FALSE;
    if (RAND_bytes(e->rid, sizeof(e->rid)) != 1 || RAND_bytes(e->ke, sizeof(e->ke)) != 1 ||
        RAND_bytes(rel, sizeof(rel)) != 1)
        die("RAND_bytes failed");
    check(m2mhsm_ke_id_format(rel, BENCH_MEF, ke_id, sizeof(ke_id)), "m2mhsm_ke_id_format");
    for (size_t i = 0; i < sizeof(e->rid); i++)
        snprintf(rid_hex + 2 * i, 3, "%02x", e->rid[i]);
    m2mhsm_expiry_ck_date(now, &e->start);
    m2mhsm_expiry_ck_date(expiry, &e->end);
    /* Same lengths as the library's labels and metadata text (meta.c). */
    snprintf(e->meta_label, sizeof(e->meta_label), RAW_APPLICATION ":ke:%s", ke_id);
    snprintf(e->key_label, sizeof(e->key_label), RAW_APPLICATION ":ke:%s:raw", ke_id);
    snprintf(e->value, sizeof(e->value),
             "m2mhsm-meta 1\nkind=ke\nidentity=%s\nrecord_id=%s\nkpm_id=%s\nke_id=\n"
             "enrolee_id=" BENCH_ENROLEE "\ntarget_id=" BENCH_TARGET "\n"
             "enrolment_expiry=86400\ncreated=%" PRId64 "\nexpiry=%" PRId64 "\n",
             ke_id, rid_hex, kpm, now, expiry);
}

static void raw_enrol(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, raw_enrolment *e,
                      CK_OBJECT_HANDLE out[2])
{
    CK_ATTRIBUTE meta[] = {
        {CKA_CLASS, &e->data_cls, sizeof(e->data_cls)},
        {CKA_TOKEN, &e->t, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &e->t, sizeof(CK_BBOOL)},
        {CKA_APPLICATION, RAW_APPLICATION, strlen(RAW_APPLICATION)},
        {CKA_LABEL, e->meta_label, strlen(e->meta_label)},
        {CKA_VALUE, e->value, strlen(e->value)},
    };
    CK_ATTRIBUTE key[] = {
        {CKA_CLASS, &e->key_cls, sizeof(e->key_cls)},
        {CKA_KEY_TYPE, &e->type, sizeof(e->type)},
        {CKA_TOKEN, &e->t, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &e->t, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &e->t, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, &e->f, sizeof(CK_BBOOL)},
        {CKA_MODIFIABLE, &e->f, sizeof(CK_BBOOL)},
        {CKA_COPYABLE, &e->f, sizeof(CK_BBOOL)},
        {CKA_SIGN, &e->t, sizeof(CK_BBOOL)},
        {CKA_VERIFY, &e->f, sizeof(CK_BBOOL)},
        {CKA_ENCRYPT, &e->f, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, &e->f, sizeof(CK_BBOOL)},
        {CKA_WRAP, &e->f, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, &e->f, sizeof(CK_BBOOL)},
        {CKA_DERIVE, &e->f, sizeof(CK_BBOOL)},
        {CKA_ID, e->rid, sizeof(e->rid)},
        {CKA_LABEL, e->key_label, strlen(e->key_label)},
        {CKA_START_DATE, &e->start, sizeof(CK_DATE)},
        {CKA_END_DATE, &e->end, sizeof(CK_DATE)},
        {CKA_VALUE, e->ke, sizeof(e->ke)},
    };
    check_rv(fn->C_CreateObject(s, meta, 6, &out[0]), "C_CreateObject(CKO_DATA)");
    check_rv(fn->C_CreateObject(s, key, sizeof(key) / sizeof(key[0]), &out[1]),
             "C_CreateObject(CKO_SECRET_KEY)");
}

static double enrol_block(m2mhsm_keystore *ks, unsigned first, unsigned count)
{
    double spent = 0;
    for (unsigned i = first; i < first + count; i++) {
        char kpm[48];
        m2mhsm_record rec;
        snprintf(kpm, sizeof(kpm), "bench-enrol-%ld-%u", (long)getpid(), i);
        double t0 = now_s();
        store_random_ke(ks, kpm, &rec);
        spent += now_s() - t0;
    }
    return spent;
}

/* The key bytes are generated outside the timed calls, as store_ke is handed them. */
static double create_block(m2mhsm_token *tok, CK_OBJECT_HANDLE *made, unsigned first,
                           unsigned count)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_SESSION_HANDLE s;
    double spent = 0;
    check(m2mhsm_token_session_get(tok, &s), "m2mhsm_token_session_get");
    for (unsigned i = first; i < first + count; i++) {
        char kpm[48];
        raw_enrolment e;
        snprintf(kpm, sizeof(kpm), "bench-raw-%ld-%u", (long)getpid(), i);
        raw_enrolment_init(&e, kpm);
        double t0 = now_s();
        raw_enrol(fn, s, &e, &made[2 * i]);
        spent += now_s() - t0;
        OPENSSL_cleanse(&e, sizeof(e));
    }
    m2mhsm_token_session_put(tok, s);
    return spent;
}

static void raw_destroy_all(m2mhsm_token *tok, const CK_OBJECT_HANDLE *made, size_t count)
{
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_SESSION_HANDLE s;
    check(m2mhsm_token_session_get(tok, &s), "m2mhsm_token_session_get");
    for (size_t i = count; i-- > 0;)
        check_rv(fn->C_DestroyObject(s, made[i]), "C_DestroyObject");
    m2mhsm_token_session_put(tok, s);
}

/* Blocks of 10 alternate between the two so that drift hits both; then every object the
 * bench wrote is destroyed, so the token keeps exactly N enrolees for the next run. */
static void bench_enrol(bench_store *bs, size_t n, bench_result *r)
{
    unsigned total = opts_g->enrols, block = 10;
    CK_OBJECT_HANDLE *made = calloc(2 * (size_t)total, sizeof(*made));
    if (made == NULL)
        die("out of memory");
    double lib = 0, raw = 0;
    for (unsigned first = 0; first < total; first += block) {
        unsigned count = total - first < block ? total - first : block;
        lib += enrol_block(bs->ks, first, count);
        raw += create_block(bs->tok, made, first, count);
    }
    r->enrol = total / lib;
    r->create = total / raw;
    fprintf(stderr, "[n=%zu] enrol %.1f/s, 2x C_CreateObject %.1f/s; cleaning up\n", n, r->enrol,
            r->create);
    raw_destroy_all(bs->tok, made, 2 * (size_t)total);
    free(made);
    size_t erased = 0;
    check(m2mhsm_keystore_erase_enrolee(bs->ks, BENCH_ENROLEE, &erased),
          "m2mhsm_keystore_erase_enrolee");
    if (erased != (size_t)total + 1)
        die("erased %zu bench records, expected %u", erased, total + 1);
}

/* ---- one size ---- */

static void bench_size(size_t n, bench_result *r)
{
    bench_token t;
    token_paths(&t, opts_g->dir, n);
    token_prepare(&t);
    if (opts_g->populate_only)
        return;
    memset(r, 0, sizeof(*r));
    r->n = n;
    bench_store bs;
    store_open(&t, &bs);
    clean_leftovers(&bs, n);
    store_close(&bs);
    bench_open(&t, r);
    store_open(&t, &bs);
    bench_lookup(&bs, n, r);
    bench_derive(&bs, n, r);
    bench_enrol(&bs, n, r);
    store_close(&bs);
}

/* ---- the table ---- */

static const char *verdict(int met)
{
    return met ? "met" : "NOT MET";
}

static void print_table(const bench_result *res, size_t count)
{
    double best = 0, worst = 0, ibest = 0, iworst = 0;
    for (size_t i = 0; i < count; i++) {
        best = i == 0 || res[i].lookup > best ? res[i].lookup : best;
        worst = i == 0 || res[i].lookup < worst ? res[i].lookup : worst;
        ibest = i == 0 || res[i].lookup_index > ibest ? res[i].lookup_index : ibest;
        iworst = i == 0 || res[i].lookup_index < iworst ? res[i].lookup_index : iworst;
    }
    printf("\n| metric | enrolees | figure | baseline | ratio | target | result |\n");
    printf("|---|---:|---:|---|---:|---|---|\n");
    for (size_t i = 0; i < count; i++) {
        const bench_result *r = &res[i];
        printf("| lookups/s (Kpm hit, random) | %zu | %.0f | %.0f raw C_GetAttributeValue/s "
               "| %.2f | flat within 5%% across sizes | %.1f%% below the best size: %s |\n",
               r->n, r->lookup, r->gav, r->lookup / r->gav, 100 * (1 - r->lookup / best),
               verdict(r->lookup >= 0.95 * best));
        printf("| lookups/s, revalidate_ms=60000 (index only) | %zu | %.0f | %.0f raw "
               "C_GetAttributeValue/s | %.1fx | flat within 5%% across sizes | %.1f%% below the "
               "best size: %s |\n",
               r->n, r->lookup_index, r->gav, r->lookup_index / r->gav,
               100 * (1 - r->lookup_index / ibest), verdict(r->lookup_index >= 0.95 * ibest));
        printf("| (lookup without an index) | %zu | %.0f | %.2f C_FindObjects-by-label/s "
               "| %.0fx | (information) | |\n",
               r->n, r->lookup, r->find, r->lookup / r->find);
        printf("| (lookup misses/s: unknown identity) | %zu | %.2f | %.2f C_FindObjects-by-label/s "
               "| %.2f | (information) | |\n",
               r->n, r->miss, r->find, r->miss / r->find);
        printf(
            "| store open, ms | %zu | %.1f | %.1f C_Initialize+C_Login | %.2f | <= 1.2x | %s |\n",
            r->n, r->open_ms, r->p11_open_ms, r->open_ms / r->p11_open_ms,
            verdict(r->open_ms <= 1.2 * r->p11_open_ms));
        printf("| (open floor: + 1 C_FindObjects pass + 1 C_GetAttributeValue per object), "
               "ms | %zu | %.1f | %.1f C_Initialize+C_Login | %.2f | (information) | |\n",
               r->n, r->floor_open_ms, r->p11_open_ms, r->floor_open_ms / r->p11_open_ms);
        printf("| Km derivations/s | %zu | %.0f | %.0f C_SignInit+C_Sign/s | %.2f | >= 0.9x "
               "| %s%s |\n",
               r->n, r->derive, r->sign, r->derive / r->sign, verdict(r->derive >= 0.9 * r->sign),
               r->derive_match ? "" : " (OUTPUT DIFFERS)");
        printf("| enrolments/s | %zu | %.1f | %.1f (2 C_CreateObject)/s | %.2f | >= 0.9x | %s |\n",
               r->n, r->enrol, r->create, r->enrol / r->create,
               verdict(r->enrol >= 0.9 * r->create));
    }
    if (count > 1) {
        printf("| lookup flatness (slowest/fastest size) | all | %.3f | | | >= 0.95 | %s |\n",
               worst / best, verdict(worst >= 0.95 * best));
        printf("| index-only lookup flatness (revalidate_ms) | all | %.3f | | | >= 0.95 | %s |\n",
               iworst / ibest, verdict(iworst >= 0.95 * ibest));
    }
}

/* ---- command line ---- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_keystore --dir DIR [--sizes 100,1000,10000] [--jobs N]\n"
                    "         [--rounds N] [--lookups N] [--finds N] [--opens N] [--derives N]\n"
                    "         [--enrols N] [--populate-only] [--module PATH]\n");
    exit(2);
}

static unsigned parse_count(const char *s)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v == 0 || v > 10000000)
        usage();
    return (unsigned)v;
}

static void parse_sizes(const char *s, bench_opts *o)
{
    o->nsizes = 0;
    const char *p = s;
    while (*p != '\0') {
        char *end = NULL;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || v == 0 || v > 1000000 || o->nsizes == MAX_SIZES ||
            (*end != ',' && *end != '\0'))
            usage();
        o->sizes[o->nsizes++] = (size_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    if (o->nsizes == 0)
        usage();
}

static void parse_args(int argc, char **argv, bench_opts *o)
{
    const char *env = getenv("M2MHSM_MODULE");
    *o = (bench_opts){.module = env != NULL && env[0] ? env : BENCH_DEFAULT_MODULE,
                      .sizes = {100, 1000, 10000},
                      .nsizes = 3,
                      .jobs = 2,
                      .rounds = 5,
                      .lookups = 5000,
                      .finds = 10,
                      .opens = 3,
                      .derives = 5000,
                      .enrols = 40};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--populate-only") == 0) {
            o->populate_only = 1;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--dir") == 0)
            o->dir = v;
        else if (strcmp(a, "--module") == 0)
            o->module = v;
        else if (strcmp(a, "--sizes") == 0)
            parse_sizes(v, o);
        else if (strcmp(a, "--jobs") == 0)
            o->jobs = parse_count(v);
        else if (strcmp(a, "--rounds") == 0)
            o->rounds = parse_count(v);
        else if (strcmp(a, "--lookups") == 0)
            o->lookups = parse_count(v);
        else if (strcmp(a, "--finds") == 0)
            o->finds = parse_count(v);
        else if (strcmp(a, "--opens") == 0)
            o->opens = parse_count(v);
        else if (strcmp(a, "--derives") == 0)
            o->derives = parse_count(v);
        else if (strcmp(a, "--enrols") == 0)
            o->enrols = parse_count(v);
        else
            usage();
    }
    if (o->dir == NULL || strchr(o->dir, '\'') != NULL)
        usage();
}

int main(int argc, char **argv)
{
    static bench_opts opts;
    static bench_result res[MAX_SIZES];
    parse_args(argc, argv, &opts);
    opts_g = &opts;
    if (mkdir(opts.dir, 0700) != 0 && errno != EEXIST)
        die("%s: %s", opts.dir, strerror(errno));
    pins_ensure(opts.dir);
    raw_load(opts.module);
    for (size_t i = 0; i < opts.nsizes; i++)
        bench_size(opts.sizes[i], &res[i]);
    if (!opts.populate_only)
        print_table(res, opts.nsizes);
    return 0;
}
