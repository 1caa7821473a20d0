/*
 * Provisioning by the batch (docs/performance.md): N devices, each a Kpm with its
 * enrolment configuration, imported through m2mhsm_kpm_batch (what `m2mhsm kpm import
 * --manifest` runs), against raw C_CreateObject of the same five objects per device in the
 * same run at the same token sizes: blocks of library imports into one token alternate with
 * blocks of raw devices into a twin token of the same module, so both always write to a
 * token of i devices. (Not one token with the raw objects destroyed after each block:
 * SoftHSM re-reads the whole token directory on every C_DestroyObject.) Then, with --cli, the
 * m2mhsm binary imports the same N devices from a manifest file into a fresh token, timed end to
 * end (process start, open, parsing, checks, writes), and `m2mhsm list --json` is timed on the
 * library's token at a tenth of the devices and at all of them (linear or not). Run by
 * hand; not a ctest.
 *
 *   bench_manifest [--devices 10000] [--block 100] --dir NEWDIR [--module PATH] [--cli PATH]
 *   bench_manifest --list-only --devices 100000 --dir NEWDIR --cli PATH
 *       N configuration records (one object each), list --json timed at N/10 and N
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
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
#include "p11/handles.h"
#include "softhsm_conf.h"

#ifndef BENCH_DEFAULT_MODULE
#define BENCH_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif
#define TOKEN_LABEL "m2mhsm-bench-batch"
#define TWIN_LABEL "m2mhsm-bench-raw" /* the raw baseline's token, beside TOKEN_LABEL */
#define RAW_PREFIX "m2mbench"         /* as long as "m2mhsm": the same label lengths, never ours */
#define ENROLEE_FMT "//sp.bench.example/cse1/Cdev%06zu"
#define TARGET "maf.bench.example"
#define EXPIRY "86400"
#define WINDOW 1000 /* devices in the first and last windows compared for linearity */

extern char **environ;

typedef struct {
    size_t devices, block;
    const char *dir, *module, *cli;
    int list_only; /* --list-only: N configuration records, then list --json at N/10 and N */
    int raw_only;  /* --raw-only: the raw baseline of the end-to-end figure (a child) */
} bench_opts;

typedef struct {
    char kpm_id[32], enrolee[64];
    uint8_t key[32];
} device;

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_manifest: ", stderr);
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
        die("%s: CKR 0x%lx", what, (unsigned long)rv);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_private(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || close(fd) != 0)
        die("%s: %s", path, strerror(errno));
}

/* Random test PINs for this run, mode 0600, never printed. */
static void make_pins(const char *dir)
{
    static const char *const names[] = {"so.pin", "user.pin"};
    for (size_t i = 0; i < 2; i++) {
        uint8_t r[12];
        char text[32], path[PATH_MAX];
        if (RAND_bytes(r, sizeof(r)) != 1)
            die("RAND_bytes failed");
        for (size_t k = 0; k < sizeof(r); k++)
            snprintf(text + 2 * k, 3, "%02x", r[k]);
        strcat(text, "\n");
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        write_private(path, text);
        OPENSSL_cleanse(text, sizeof(text));
        OPENSSL_cleanse(r, sizeof(r));
    }
}

typedef struct {
    char root[PATH_MAX], conf[PATH_MAX + 32], lock[PATH_MAX + 32];
    char pin_source[PATH_MAX + 32], so_source[PATH_MAX + 32];
} bench_token;

/* DIR/NAME with a fresh initialised token. */
static void token_make(bench_token *t, const bench_opts *o, const char *name)
{
    snprintf(t->root, sizeof(t->root), "%s/%s", o->dir, name);
    snprintf(t->conf, sizeof(t->conf), "%s/softhsm2.conf", t->root);
    snprintf(t->lock, sizeof(t->lock), "%s/m2mhsm.lock", t->root);
    snprintf(t->pin_source, sizeof(t->pin_source), "file:%s/user.pin", o->dir);
    snprintf(t->so_source, sizeof(t->so_source), "file:%s/so.pin", o->dir);
    if (mkdir(t->root, 0700) != 0)
        die("%s: %s (use a new --dir)", t->root, strerror(errno));
    if (softhsm_conf_write(t->root) != 0)
        exit(1);
    setenv("SOFTHSM2_CONF", t->conf, 1);
    check(m2mhsm_token_init(o->module, TOKEN_LABEL, t->so_source, t->pin_source), "token_init");
}

static device *make_devices(size_t n)
{
    device *d = calloc(n, sizeof(*d));
    if (d == NULL)
        die("out of memory");
    for (size_t i = 0; i < n; i++) {
        snprintf(d[i].kpm_id, sizeof(d[i].kpm_id), "bench-dev-%06zu", i);
        snprintf(d[i].enrolee, sizeof(d[i].enrolee), ENROLEE_FMT, i);
        if (RAND_bytes(d[i].key, sizeof(d[i].key)) != 1)
            die("RAND_bytes failed");
    }
    return d;
}

/* ---- the raw baseline: the five objects a device costs, as objects.c makes them ---- */

typedef struct {
    CK_OBJECT_CLASS data_cls, key_cls;
    CK_KEY_TYPE type;
    CK_BBOOL t, f;
    CK_DATE start;
    uint8_t rid[2][M2MHSM_RECORD_ID_LEN];
    uint8_t value[3][32]; /* raw, tls12-pms, tls13-es: 32 bytes each for a 32-byte Kpm */
    char cfg_label[96], kpm_label[96], key_label[3][112], cfg_text[512], kpm_text[512];
} raw_device;

static const char *const form_names[] = {"raw", "tls12-pms", "tls13-es"};

static void meta_text(char *buf, size_t cap, const char *kind, const char *kpm_id,
                      const char *enrolee, const char *target, const char *expiry, int64_t now)
{
    snprintf(buf, cap,
             "m2mhsm-meta 1\nkind=%s\nidentity=%s\nrecord_id=%032x\nkpm_id=%s\nke_id=\n"
             "enrolee_id=%s\ntarget_id=%s\nenrolment_expiry=%s\ncreated=%" PRId64
             "\nexpiry=%" PRId64 "\n",
             kind, kpm_id, 0, kpm_id, enrolee, target, expiry, now, (int64_t)INT64_MAX);
}

/* Labels and metadata text of the library's lengths (meta.c); values drawn outside the
 * timed calls. */
static void raw_device_init(raw_device *r, const device *d)
{
    int64_t now = (int64_t)time(NULL);
    memset(r, 0, sizeof(*r));
    r->data_cls = CKO_DATA;
    r->key_cls = CKO_SECRET_KEY;
    r->type = CKK_GENERIC_SECRET;
    r->t = CK_TRUE;
    r->f = CK_FALSE;
    if (RAND_bytes(r->rid[0], sizeof(r->rid)) != 1 ||
        RAND_bytes(r->value[0], sizeof(r->value)) != 1)
        die("RAND_bytes failed");
    m2mhsm_expiry_ck_date(now, &r->start);
    snprintf(r->cfg_label, sizeof(r->cfg_label), RAW_PREFIX ":enrolment:%s", d->kpm_id);
    snprintf(r->kpm_label, sizeof(r->kpm_label), RAW_PREFIX ":kpm:%s", d->kpm_id);
    for (int f = 0; f < 3; f++)
        snprintf(r->key_label[f], sizeof(r->key_label[f]), RAW_PREFIX ":kpm:%s:%s", d->kpm_id,
                 form_names[f]);
    meta_text(r->cfg_text, sizeof(r->cfg_text), "enrolment", d->kpm_id, d->enrolee, TARGET, EXPIRY,
              now);
    meta_text(r->kpm_text, sizeof(r->kpm_text), "kpm", d->kpm_id, "", "", "", now);
}

static void raw_meta(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, raw_device *r, const char *label,
                     const char *text, CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &r->data_cls, sizeof(r->data_cls)},
        {CKA_TOKEN, &r->t, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &r->t, sizeof(CK_BBOOL)},
        {CKA_APPLICATION, RAW_PREFIX, strlen(RAW_PREFIX)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)text, strlen(text)},
    };
    check_rv(fn->C_CreateObject(s, tmpl, 6, out), "C_CreateObject(CKO_DATA)");
}

static void raw_key(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, raw_device *r, int form,
                    CK_OBJECT_HANDLE *out)
{
    CK_BBOOL *copyable = form == 0 ? &r->f : &r->t, *sign = form == 0 ? &r->f : &r->t;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &r->key_cls, sizeof(r->key_cls)},
        {CKA_KEY_TYPE, &r->type, sizeof(r->type)},
        {CKA_TOKEN, &r->t, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &r->t, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &r->t, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, &r->f, sizeof(CK_BBOOL)},
        {CKA_MODIFIABLE, copyable, sizeof(CK_BBOOL)},
        {CKA_COPYABLE, copyable, sizeof(CK_BBOOL)},
        {CKA_SIGN, sign, sizeof(CK_BBOOL)},
        {CKA_VERIFY, &r->f, sizeof(CK_BBOOL)},
        {CKA_ENCRYPT, &r->f, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, &r->f, sizeof(CK_BBOOL)},
        {CKA_WRAP, &r->f, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, &r->f, sizeof(CK_BBOOL)},
        {CKA_DERIVE, &r->f, sizeof(CK_BBOOL)},
        {CKA_ID, r->rid[1], M2MHSM_RECORD_ID_LEN},
        {CKA_LABEL, r->key_label[form], strlen(r->key_label[form])},
        {CKA_START_DATE, &r->start, sizeof(CK_DATE)},
        {CKA_VALUE, r->value[form], sizeof(r->value[form])},
    };
    check_rv(fn->C_CreateObject(s, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), out),
             "C_CreateObject(CKO_SECRET_KEY)");
}

/* One device's five objects. */
static void raw_device_create(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, raw_device *r,
                              CK_OBJECT_HANDLE out[5])
{
    raw_meta(fn, s, r, r->cfg_label, r->cfg_text, &out[0]);
    raw_meta(fn, s, r, r->kpm_label, r->kpm_text, &out[1]);
    for (int f = 0; f < 3; f++)
        raw_key(fn, s, r, f, &out[2 + f]);
}

/* A logged-in read-write session on the token labelled `label`, through the library's
 * function list. */
static CK_SESSION_HANDLE twin_session(CK_FUNCTION_LIST *fn, const char *label, const char *pin_path)
{
    CK_ULONG n = 0;
    check_rv(fn->C_GetSlotList(CK_TRUE, NULL, &n), "C_GetSlotList");
    CK_SLOT_ID *slots = calloc(n + 1, sizeof(*slots));
    if (slots == NULL)
        die("out of memory");
    check_rv(fn->C_GetSlotList(CK_TRUE, slots, &n), "C_GetSlotList");
    char want[32];
    memset(want, ' ', sizeof(want));
    memcpy(want, label, strlen(label));
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    for (CK_ULONG i = 0; i < n && s == CK_INVALID_HANDLE; i++) {
        CK_TOKEN_INFO info;
        if (fn->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
            memcmp(info.label, want, sizeof(want)) == 0)
            check_rv(
                fn->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
                "C_OpenSession(twin)");
    }
    free(slots);
    if (s == CK_INVALID_HANDLE)
        die("no token labelled %s", label);
    char pin[64] = "";
    FILE *f = fopen(pin_path, "r");
    if (f == NULL || fgets(pin, sizeof(pin), f) == NULL)
        die("%s: cannot read", pin_path);
    fclose(f);
    pin[strcspn(pin, "\n")] = '\0';
    CK_RV rv = fn->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
    OPENSSL_cleanse(pin, sizeof(pin));
    if (rv != CKR_USER_ALREADY_LOGGED_IN)
        check_rv(rv, "C_Login(twin)");
    return s;
}

/* ---- the library path ---- */

static m2mhsm_kpm_item item_of(const device *d, const m2mhsm_expiry_spec *spec)
{
    m2mhsm_kpm_item it = {.kpm_id = d->kpm_id,
                          .kpm = d->key,
                          .kpm_len = sizeof(d->key),
                          .valid_until = M2MHSM_NEVER,
                          .target_id = TARGET,
                          .enrolee_id = d->enrolee,
                          .enrolment_expiry = spec};
    return it;
}

typedef struct {
    double *lib, *raw; /* seconds per device */
    double check_s, open_s;
    size_t records;
    double list_s[2]; /* m2mhsm list --json at a tenth of the devices and at all (--cli) */
    size_t listed[2];
} run_result;

static double sum(const double *v, size_t from, size_t n)
{
    double s = 0;
    for (size_t i = from; i < from + n; i++)
        s += v[i];
    return s;
}

/* `m2mhsm list --json` on the token as it is now, from another process (read-only): the
 * wall time and the records printed. The library's own store stays open meanwhile. */
static double list_run(const bench_opts *o, const bench_token *t, size_t *printed)
{
    char out[PATH_MAX + 32];
    snprintf(out, sizeof(out), "%s/list.json", t->root);
    char *argv[] = {(char *)o->cli,
                    "--module",
                    (char *)o->module,
                    "--token",
                    "pkcs11:token=" TOKEN_LABEL,
                    "--pin-source",
                    (char *)t->pin_source,
                    "--lock-file",
                    (char *)t->lock,
                    "list",
                    "--json",
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int status = 0;
    double t0 = now_s();
    if (posix_spawn(&pid, o->cli, &fa, NULL, argv, environ) != 0 || waitpid(pid, &status, 0) < 0 ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s list --json failed", o->cli);
    double spent = now_s() - t0;
    posix_spawn_file_actions_destroy(&fa);
    FILE *f = fopen(out, "r");
    char line[2048];
    *printed = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        *printed += line[0] == '{' || (line[0] == ',' && line[1] == '{');
    if (f != NULL)
        fclose(f);
    return spent;
}

static void interleaved(const bench_opts *o, const device *d, run_result *res)
{
    bench_token t;
    token_make(&t, o, "lib");
    check(m2mhsm_token_init(o->module, TWIN_LABEL, t.so_source, t.pin_source), "token_init(twin)");
    m2mhsm_token_config cfg = {.module_path = o->module,
                               .token_uri = "pkcs11:token=" TOKEN_LABEL,
                               .pin_source = t.pin_source,
                               .lock_file = t.lock};
    m2mhsm_token *tok = NULL;
    m2mhsm_keystore *ks = NULL;
    m2mhsm_kpm_batch *b = NULL;
    double t0 = now_s();
    check(m2mhsm_token_open(&cfg, &tok), "token_open");
    check(m2mhsm_keystore_open(tok, NULL, &ks, NULL), "keystore_open");
    res->open_s = now_s() - t0;
    check(m2mhsm_kpm_batch_begin(ks, &b), "kpm_batch_begin");
    m2mhsm_expiry_spec spec;
    check(m2mhsm_expiry_spec_parse(EXPIRY, &spec), "expiry_spec_parse");
    t0 = now_s();
    for (size_t i = 0; i < o->devices; i++) {
        m2mhsm_kpm_item it = item_of(&d[i], &spec);
        check(m2mhsm_kpm_batch_check(b, &it), "kpm_batch_check");
        if (m2mhsm_kpm_batch_known(b, d[i].kpm_id))
            die("%s is known before its import", d[i].kpm_id);
    }
    res->check_s = now_s() - t0;

    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_SESSION_HANDLE s = twin_session(fn, TWIN_LABEL, t.pin_source + strlen("file:"));
    raw_device *raw = malloc(o->block * sizeof(*raw));
    CK_OBJECT_HANDLE made[5];
    if (raw == NULL)
        die("out of memory");
    for (size_t first = 0; first < o->devices; first += o->block) {
        size_t n = o->devices - first < o->block ? o->devices - first : o->block;
        for (size_t i = first; i < first + n; i++) {
            m2mhsm_kpm_item it = item_of(&d[i], &spec);
            double a = now_s();
            check(m2mhsm_kpm_batch_import(b, &it, NULL), "kpm_batch_import");
            res->lib[i] = now_s() - a;
        }
        for (size_t k = 0; k < n; k++)
            raw_device_init(&raw[k], &d[first + k]);
        for (size_t k = 0; k < n; k++) {
            double a = now_s();
            raw_device_create(fn, s, &raw[k], made);
            res->raw[first + k] = now_s() - a;
        }
        OPENSSL_cleanse(raw, n * sizeof(*raw));
        if (o->cli != NULL && first < o->devices / 10 && first + n >= o->devices / 10)
            res->list_s[0] = list_run(o, &t, &res->listed[0]);
        if ((first / o->block) % 10 == 9 || first + n == o->devices)
            fprintf(stderr, "%zu/%zu devices: library %.1f/s, raw %.1f/s so far\n", first + n,
                    o->devices, (double)(first + n) / sum(res->lib, 0, first + n),
                    (double)(first + n) / sum(res->raw, 0, first + n));
    }
    fn->C_CloseSession(s);
    if (o->cli != NULL)
        res->list_s[1] = list_run(o, &t, &res->listed[1]);
    free(raw);
    m2mhsm_kpm_batch_end(b);

    /* Every device is on the token, with its configuration. */
    m2mhsm_record *recs = NULL;
    size_t count = 0;
    check(m2mhsm_keystore_list(ks, &recs, &count), "keystore_list");
    res->records = count;
    free(recs);
    m2mhsm_keystore_close(ks);
    m2mhsm_token_close(tok);
}

/* ---- --list-only: is m2mhsm list --json linear up to N records? ---- */

/* N records cheaply (one object each: the MEF's configuration of a KpmID), listing at N/10
 * and at N. */
static void list_only(const bench_opts *o, const device *d)
{
    bench_token t;
    token_make(&t, o, "list");
    m2mhsm_token_config cfg = {.module_path = o->module,
                               .token_uri = "pkcs11:token=" TOKEN_LABEL,
                               .pin_source = t.pin_source,
                               .lock_file = t.lock};
    m2mhsm_token *tok = NULL;
    m2mhsm_keystore *ks = NULL;
    check(m2mhsm_token_open(&cfg, &tok), "token_open");
    check(m2mhsm_keystore_open(tok, NULL, &ks, NULL), "keystore_open");
    m2mhsm_expiry_spec spec;
    check(m2mhsm_expiry_spec_parse(EXPIRY, &spec), "expiry_spec_parse");
    double t0 = now_s(), list_s[2] = {0, 0};
    size_t listed[2] = {0, 0};
    for (size_t i = 0; i < o->devices; i++) {
        check(m2mhsm_keystore_configure_enrolee(ks, d[i].kpm_id, TARGET, d[i].enrolee, &spec),
              "configure_enrolee");
        if (i + 1 == o->devices / 10)
            list_s[0] = list_run(o, &t, &listed[0]);
        if ((i + 1) % 10000 == 0)
            fprintf(stderr, "%zu/%zu records, %.0f/s\n", i + 1, o->devices,
                    (double)(i + 1) / (now_s() - t0));
    }
    list_s[1] = list_run(o, &t, &listed[1]);
    m2mhsm_keystore_close(ks);
    m2mhsm_token_close(tok);
    printf("m2mhsm list --json: %zu records in %.2f s, %zu records in %.2f s (%.2fx the time "
           "for %.2fx the records)\n",
           listed[0], list_s[0], listed[1], list_s[1], list_s[1] / list_s[0],
           (double)listed[1] / (double)listed[0]);
}

/* ---- the m2mhsm binary, end to end ---- */

static void write_manifest(const char *path, const device *d, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "{\"kpm_id\":\"%s\",\"key_hex\":\"", d[i].kpm_id);
        for (size_t k = 0; k < sizeof(d[i].key); k++)
            fprintf(f, "%02x", d[i].key[k]);
        fprintf(f,
                "\",\"enrolee_id\":\"%s\",\"target_id\":\"" TARGET
                "\",\"enrolment_expiry\":\"" EXPIRY "\"}\n",
                d[i].enrolee);
    }
    if (fclose(f) != 0)
        die("%s: %s", path, strerror(errno));
}

/* --raw-only (a fresh process, as the binary is): the raw devices alone into a fresh token
 * of their own; prints the seconds spent in C_CreateObject. SoftHSM's per-call cost grows
 * with every object the process has loaded, so this baseline must not share a process
 * with the tokens written before it. */
static void raw_only(const bench_opts *o, const device *d)
{
    bench_token t;
    token_make(&t, o, "raw");
    m2mhsm_token_config cfg = {.module_path = o->module,
                               .token_uri = "pkcs11:token=" TOKEN_LABEL,
                               .pin_source = t.pin_source,
                               .lock_file = t.lock};
    m2mhsm_token *tok = NULL;
    check(m2mhsm_token_open(&cfg, &tok), "token_open");
    CK_FUNCTION_LIST *fn = m2mhsm_token_functions(tok);
    CK_SESSION_HANDLE s = twin_session(fn, TOKEN_LABEL, t.pin_source + strlen("file:"));
    raw_device r;
    CK_OBJECT_HANDLE made[5];
    double spent = 0;
    for (size_t i = 0; i < o->devices; i++) {
        raw_device_init(&r, &d[i]);
        double a = now_s();
        raw_device_create(fn, s, &r, made);
        spent += now_s() - a;
    }
    OPENSSL_cleanse(&r, sizeof(r));
    fn->C_CloseSession(s);
    m2mhsm_token_close(tok);
    printf("%.6f\n", spent);
}

/* This program again with --raw-only, its output read back. */
static double raw_sequential(const bench_opts *o, const char *self)
{
    char n[32], cmd[PATH_MAX * 2 + 128];
    snprintf(n, sizeof(n), "%zu", o->devices);
    snprintf(cmd, sizeof(cmd), "'%s' --raw-only --devices %s --dir '%s' --module '%s'", self, n,
             o->dir, o->module);
    FILE *p = popen(cmd, "r");
    double spent = 0;
    if (p == NULL || fscanf(p, "%lf", &spent) != 1 || pclose(p) != 0 || spent <= 0)
        die("the --raw-only run failed");
    return spent;
}

static double cli_run(const bench_opts *o, const device *d, char *summary, size_t cap)
{
    bench_token t;
    token_make(&t, o, "cli");
    char manifest[PATH_MAX + 32], out[PATH_MAX + 32], err[PATH_MAX + 32];
    snprintf(manifest, sizeof(manifest), "%s/devices.jsonl", t.root);
    snprintf(out, sizeof(out), "%s/cli.out", t.root);
    snprintf(err, sizeof(err), "%s/cli.err", t.root);
    write_manifest(manifest, d, o->devices);
    char *argv[] = {
        (char *)o->cli, "--module",   (char *)o->module, "--token", "pkcs11:token=" TOKEN_LABEL,
        "--pin-source", t.pin_source, "--lock-file",     t.lock,    "kpm",
        "import",       "--manifest", manifest,          NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int status = 0;
    double t0 = now_s();
    if (posix_spawn(&pid, o->cli, &fa, NULL, argv, environ) != 0 || waitpid(pid, &status, 0) < 0)
        die("running %s failed", o->cli);
    double spent = now_s() - t0;
    posix_spawn_file_actions_destroy(&fa);
    unlink(manifest); /* it holds the keys */
    FILE *f = fopen(out, "r");
    summary[0] = '\0';
    if (f == NULL || fgets(summary, (int)cap, f) == NULL)
        summary[0] = '\0';
    if (f != NULL)
        fclose(f);
    summary[strcspn(summary, "\n")] = '\0';
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s exited with %d (see %s)", o->cli, WEXITSTATUS(status), err);
    return spent;
}

/* ---- report ---- */

static void report(const bench_opts *o, const run_result *r, double cli_s, double cli_raw_s,
                   const char *summary)
{
    size_t n = o->devices, w = n >= 2 * WINDOW ? WINDOW : n / 2;
    double lib = (double)n / sum(r->lib, 0, n), raw = (double)n / sum(r->raw, 0, n);
    double lib_first = (double)w / sum(r->lib, 0, w), lib_last = (double)w / sum(r->lib, n - w, w);
    double raw_first = (double)w / sum(r->raw, 0, w), raw_last = (double)w / sum(r->raw, n - w, w);
    printf("| figure | devices/s | baseline | ratio | target |\n|---|---:|---|---:|---|\n");
    printf("| m2mhsm_kpm_batch_import (Kpm + configuration: 5 objects) | %.1f | %.1f raw devices/s "
           "(5 C_CreateObject) | %.2f | >= 0.9 |\n",
           lib, raw, lib / raw);
    printf("| library, last %zu ÷ first %zu | %.1f / %.1f | | %.2f | >= 0.9 (linear) |\n", w, w,
           lib_last, lib_first, lib_last / lib_first);
    printf("| raw C_CreateObject, last %zu ÷ first %zu (SoftHSM itself) | %.1f / %.1f | | %.2f | "
           "(information) |\n",
           w, w, raw_last, raw_first, raw_last / raw_first);
    printf("| library, last %zu ÷ raw, last %zu | %.1f | %.1f | %.2f | (information) |\n", w, w,
           lib_last, raw_last, lib_last / raw_last);
    if (cli_s > 0)
        printf("| `m2mhsm kpm import --manifest`, end to end (%.1f s for %zu) | %.1f | %.1f raw "
               "devices/s | %.2f | >= 0.9 |\n",
               cli_s, n, (double)n / cli_s, raw, (double)n / cli_s / raw);
    if (cli_s > 0)
        printf("| the same, against the raw devices alone, fresh process and token, just after | "
               "%.1f | %.1f raw devices/s | %.2f | >= 0.9 |\n",
               (double)n / cli_s, (double)n / cli_raw_s, cli_raw_s / cli_s);
    printf("\nstore open %.2f s; checking all %zu items %.2f s; listing after: %zu records "
           "(want %zu)\n",
           r->open_s, n, r->check_s, r->records, 2 * n);
    if (cli_s > 0)
        printf("m2mhsm printed: %s\n", summary);
    if (r->list_s[1] > 0)
        printf("m2mhsm list --json: %zu records in %.2f s, %zu records in %.2f s (%.2fx the "
               "time for %.2fx the records)\n",
               r->listed[0], r->list_s[0], r->listed[1], r->list_s[1], r->list_s[1] / r->list_s[0],
               (double)r->listed[1] / (double)r->listed[0]);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"devices", required_argument, NULL, 'n'}, {"block", required_argument, NULL, 'b'},
        {"dir", required_argument, NULL, 'd'},     {"module", required_argument, NULL, 'm'},
        {"cli", required_argument, NULL, 'c'},     {"list-only", no_argument, NULL, 'l'},
        {"raw-only", no_argument, NULL, 'r'},      {NULL, 0, NULL, 0},
    };
    bench_opts o = {10000, 100, NULL, NULL, NULL, 0, 0};
    const char *env = getenv("M2MHSM_MODULE");
    o.module = env != NULL && env[0] != '\0' ? env : BENCH_DEFAULT_MODULE;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'n')
            o.devices = strtoul(optarg, NULL, 10);
        else if (c == 'b')
            o.block = strtoul(optarg, NULL, 10);
        else if (c == 'd')
            o.dir = optarg;
        else if (c == 'm')
            o.module = optarg;
        else if (c == 'c')
            o.cli = optarg;
        else if (c == 'l')
            o.list_only = 1;
        else if (c == 'r')
            o.raw_only = 1;
        else
            die("usage: bench_manifest [--devices N] [--block N] --dir NEWDIR [--module PATH] "
                "[--cli PATH-TO-m2mhsm] [--list-only]");
    }
    if (o.dir == NULL || o.devices < 2 || o.block == 0)
        die("give --dir NEWDIR (created here), --devices >= 2 and --block >= 1");
    if (o.raw_only) { /* in the parent's directory, with its PINs */
        device *d = make_devices(o.devices);
        raw_only(&o, d);
        OPENSSL_cleanse(d, o.devices * sizeof(*d));
        free(d);
        return 0;
    }
    if (mkdir(o.dir, 0700) != 0)
        die("%s: %s (give a new directory)", o.dir, strerror(errno));
    make_pins(o.dir);
    device *d = make_devices(o.devices);
    if (o.list_only) {
        if (o.cli == NULL)
            die("--list-only needs --cli");
        list_only(&o, d);
        OPENSSL_cleanse(d, o.devices * sizeof(*d));
        free(d);
        return 0;
    }
    run_result r = {.lib = calloc(o.devices, sizeof(double)),
                    .raw = calloc(o.devices, sizeof(double))};
    if (r.lib == NULL || r.raw == NULL)
        die("out of memory");
    interleaved(&o, d, &r);
    char summary[256] = "";
    double cli_s = o.cli != NULL ? cli_run(&o, d, summary, sizeof(summary)) : 0;
    double cli_raw_s = o.cli != NULL ? raw_sequential(&o, argv[0]) : 0;
    OPENSSL_cleanse(d, o.devices * sizeof(*d));
    report(&o, &r, cli_s, cli_raw_s, summary);
    free(d);
    free(r.lib);
    free(r.raw);
    return 0;
}
