/*
 * kpm import --manifest FILE: a factory batch of devices in one process. JSON Lines, one
 * device a line (docs/key-lifecycle.md, "Provisioning by the batch"). The whole file is
 * checked before the first write; KpmIDs already on the token are skipped, so a re-run
 * resumes; the writes go through m2mhsm_kpm_batch, which makes no token search per device.
 */
#include "cli.h"
#include "../common/app.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* Bad lines reported one by one before the rest are only counted. */
#define MAX_REPORTED 20
/* A manifest line is a few hundred bytes; longer is not a device. */
#define MAX_LINE 4096
/* Progress redraws at most this often (ms). */
#define PROGRESS_MS 250

/* One device, decoded. The key bytes are cleansed with the whole array. */
typedef struct {
    unsigned line;
    char *kpm_id, *kek, *target_id, *enrolee_id;
    int has_expiry, wrapped;
    m2mhsm_expiry_spec expiry;
    m2mhsm_time valid_until;
    size_t key_len;
    uint8_t key[M2MHSM_PSK_MAX + 16];
} manifest_entry;

typedef struct {
    const char *path;
    manifest_entry *entries;
    size_t count, cap;
    size_t bad; /* lines refused */
} manifest;

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* "m2mhsm: FILE:LINE: why" for the first MAX_REPORTED bad lines; every one is counted. */
static void bad_line(manifest *m, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad_line(manifest *m, unsigned line, const char *fmt, ...)
{
    if (m->bad++ >= MAX_REPORTED)
        return;
    va_list ap;
    fprintf(stderr, "m2mhsm: %s:%u: ", m->path, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- reading ---- */

/* The whole file in one buffer that the caller cleanses: no stdio buffer keeps a copy. */
static int read_all(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "m2mhsm: --manifest %s: %s\n", path,
                fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t cap = (size_t)sb.st_size + 1, n = 0;
    char *buf = malloc(cap);
    ssize_t r = 0;
    while (buf != NULL && n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    if (buf == NULL || r < 0) {
        fprintf(stderr, "m2mhsm: --manifest %s: %s\n", path,
                buf == NULL ? "out of memory" : strerror(errno));
        if (buf != NULL)
            OPENSSL_cleanse(buf, cap);
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* ---- one line ---- */

/* Pairs of hex digits, nothing else (-1); at most cap bytes (-2). */
static int decode_hex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 != 0)
        return -1;
    if (n / 2 > cap)
        return -2;
    for (size_t i = 0; i < n; i += 2) {
        int hi = cli_hexval((unsigned char)s[i]), lo = cli_hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return 0;
}

/* Standard base64 with padding (RFC 4648 section 4), at most cap bytes. */
static int decode_b64(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s), pad = 0;
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > cap + 2)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=' && i >= n - 2) {
            pad++;
            continue;
        }
        if (pad > 0 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return -1;
    }
    uint8_t tmp[(M2MHSM_PSK_MAX + 16) / 3 * 3 + 6];
    if (n / 4 * 3 > sizeof(tmp))
        return -1;
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
    int ok = got >= 0 && (size_t)got - pad <= cap;
    if (ok) {
        *len = (size_t)got - pad;
        memcpy(out, tmp, *len);
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return ok ? 0 : -1;
}

static const char *const fields[] = {"kpm_id",     "key_hex",   "wrapped_b64",      "kek",
                                     "enrolee_id", "target_id", "enrolment_expiry", "valid_until",
                                     NULL};

static const char *unknown_field(json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i = 0;
        while (fields[i] != NULL && strcmp(fields[i], key) != 0)
            i++;
        if (fields[i] == NULL)
            return key;
    }
    return NULL;
}

/* A string member, or NULL when absent; *wrong = 1 when present but not a string. */
static const char *str_member(json_t *obj, const char *key, const char **wrong)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return NULL;
    if (!json_is_string(v)) {
        if (*wrong == NULL)
            *wrong = key;
        return NULL;
    }
    return json_string_value(v);
}

static char *dup_or_null(const char *s, int *nomem)
{
    char *d = s != NULL ? strdup(s) : NULL;
    if (s != NULL && d == NULL)
        *nomem = 1;
    return d;
}

/* The key of a line: key_hex, or wrapped_b64 with kek. Returns NULL or why not. */
static const char *decode_key(const char *hex, const char *b64, const char *kek, manifest_entry *e)
{
    if ((hex == NULL) == (b64 == NULL))
        return "give exactly one of key_hex and wrapped_b64";
    if (b64 == NULL && kek != NULL)
        return "kek goes with wrapped_b64";
    if (b64 != NULL && kek == NULL)
        return "wrapped_b64 needs kek, the label of the wrapping key";
    e->wrapped = b64 != NULL;
    int hex_st = hex != NULL ? decode_hex(hex, e->key, M2MHSM_PSK_MAX, &e->key_len) : 0;
    if (hex_st == -1)
        return "key_hex: not hex digits in pairs";
    if (hex_st == -2)
        return "key_hex: a Kpm is 16 to 64 bytes, this one longer";
    if (b64 != NULL && decode_b64(b64, e->key, sizeof(e->key), &e->key_len) != 0)
        return "wrapped_b64: not base64, or longer than a wrapped Kpm can be";
    return NULL;
}

/* The identifiers' grammars, and the enrolment configuration whole or absent: what the
 * library would refuse, found before the token is opened. */
static const char *check_ids(const char *kpm_id, const char *target, const char *enrolee,
                             int has_expiry, char *why, size_t why_len)
{
    m2mhsm_status st = m2mhsm_id_check_str(M2MHSM_ID_KPM, kpm_id);
    int parts = (target != NULL) + (enrolee != NULL) + has_expiry;
    if (st == M2MHSM_OK && parts != 0 && parts != 3)
        return "enrolee_id, target_id and enrolment_expiry go together: give all or none";
    if (st == M2MHSM_OK && target != NULL)
        st = m2mhsm_id_check_str(M2MHSM_ID_TARGET, target);
    if (st == M2MHSM_OK && enrolee != NULL)
        st = m2mhsm_id_check_str(M2MHSM_ID_M2M_ABS, enrolee);
    if (st == M2MHSM_OK)
        return NULL;
    snprintf(why, why_len, "%s", m2mhsm_last_error());
    return why;
}

/* The line's fields into e; returns NULL or why the line is refused. */
static const char *decode_fields(json_t *obj, manifest_entry *e, char *why, size_t why_len)
{
    const char *wrong = NULL, *unknown = unknown_field(obj);
    if (unknown != NULL) {
        /* Quoted only when it looks like a field name: it could be anything, a key too. */
        size_t n = strlen(unknown);
        int plain = n > 0 && n <= 32 && strspn(unknown, "abcdefghijklmnopqrstuvwxyz_") == n;
        snprintf(why, why_len, "unknown field%s%s%s", plain ? " \"" : "", plain ? unknown : "",
                 plain ? "\"" : "");
        return why;
    }
    const char *kpm_id = str_member(obj, "kpm_id", &wrong);
    const char *hex = str_member(obj, "key_hex", &wrong);
    const char *b64 = str_member(obj, "wrapped_b64", &wrong);
    const char *kek = str_member(obj, "kek", &wrong);
    const char *enrolee = str_member(obj, "enrolee_id", &wrong);
    const char *target = str_member(obj, "target_id", &wrong);
    const char *expiry = str_member(obj, "enrolment_expiry", &wrong);
    const char *until = str_member(obj, "valid_until", &wrong);
    if (wrong != NULL) {
        snprintf(why, why_len, "%s must be a string", wrong);
        return why;
    }
    if (kpm_id == NULL)
        return "kpm_id is missing";
    const char *bad = decode_key(hex, b64, kek, e);
    if (bad != NULL)
        return bad;
    if (expiry != NULL && m2mhsm_expiry_spec_parse(expiry, &e->expiry) != M2MHSM_OK) {
        snprintf(why, why_len, "enrolment_expiry: %s", m2mhsm_last_error());
        return why;
    }
    e->has_expiry = expiry != NULL;
    e->valid_until = M2MHSM_NEVER;
    if (until != NULL && m2mhsm_timestamp_parse(until, &e->valid_until) != M2MHSM_OK) {
        snprintf(why, why_len, "valid_until: %s", m2mhsm_last_error());
        return why;
    }
    if ((bad = check_ids(kpm_id, target, enrolee, expiry != NULL, why, why_len)) != NULL)
        return bad;
    if (!e->wrapped && (e->key_len < M2MHSM_PSK_MIN || e->key_len > M2MHSM_PSK_MAX)) {
        snprintf(why, why_len, "key_hex: a Kpm is %d to %d bytes, not %zu", M2MHSM_PSK_MIN,
                 M2MHSM_PSK_MAX, e->key_len);
        return why;
    }
    int nomem = 0;
    e->kpm_id = dup_or_null(kpm_id, &nomem);
    e->kek = dup_or_null(kek, &nomem);
    e->enrolee_id = dup_or_null(enrolee, &nomem);
    e->target_id = dup_or_null(target, &nomem);
    return nomem ? "out of memory" : NULL;
}

static void entry_free(manifest_entry *e)
{
    free(e->kpm_id);
    free(e->kek);
    free(e->enrolee_id);
    free(e->target_id);
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

static int push_entry(manifest *m, const manifest_entry *e)
{
    if (m->count == m->cap) {
        size_t n = m->cap ? m->cap * 2 : 256;
        manifest_entry *p = malloc(n * sizeof(*p));
        if (p == NULL)
            return -1;
        if (m->count > 0)
            memcpy(p, m->entries, m->count * sizeof(*p));
        /* The old block held keys: wipe it before it goes back to malloc. */
        if (m->entries != NULL)
            OPENSSL_cleanse(m->entries, m->cap * sizeof(*p));
        free(m->entries);
        m->entries = p;
        m->cap = n;
    }
    m->entries[m->count++] = *e;
    return 0;
}

/* jansson's message without its "near '<text>'" part, which may quote a key. */
static const char *without_near(char *text)
{
    char *near = strstr(text, " near ");
    if (near != NULL)
        *near = '\0';
    return text;
}

static void parse_line(manifest *m, unsigned line, const char *text, size_t len)
{
    if (len > MAX_LINE) {
        bad_line(m, line, "longer than %d bytes", MAX_LINE);
        return;
    }
    json_error_t err;
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (obj == NULL || !json_is_object(obj)) {
        if (obj == NULL)
            bad_line(m, line, "not JSON: %s (column %d)", without_near(err.text), err.column);
        else
            bad_line(m, line, "not a JSON object");
        json_decref(obj);
        return;
    }
    manifest_entry e;
    memset(&e, 0, sizeof(e));
    e.line = line;
    char why[160];
    const char *bad = decode_fields(obj, &e, why, sizeof(why));
    json_decref(obj);
    if (bad == NULL && push_entry(m, &e) != 0)
        bad = "out of memory";
    if (bad != NULL) {
        bad_line(m, line, "%s", bad);
        entry_free(&e);
    }
    OPENSSL_cleanse(&e, sizeof(e));
}

static void parse_all(manifest *m, const char *buf, size_t len)
{
    unsigned line = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - (buf + at)) : len - at;
        line++;
        if (!blank(buf + at, n))
            parse_line(m, line, buf + at, n);
        at += n + 1;
    }
}

/* ---- the whole file ---- */

static int cmp_kpm_id(const void *a, const void *b)
{
    const manifest_entry *x = *(manifest_entry *const *)a, *y = *(manifest_entry *const *)b;
    int c = strcmp(x->kpm_id, y->kpm_id);
    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

/* A KpmID twice in one file is a mistake in the file: which key is right? */
static void find_duplicates(manifest *m)
{
    if (m->count < 2)
        return;
    manifest_entry **by_id = malloc(m->count * sizeof(*by_id));
    if (by_id == NULL) {
        bad_line(m, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < m->count; i++)
        by_id[i] = &m->entries[i];
    qsort(by_id, m->count, sizeof(*by_id), cmp_kpm_id);
    size_t first = 0;
    for (size_t i = 1; i < m->count; i++) {
        if (strcmp(by_id[i]->kpm_id, by_id[first]->kpm_id) != 0)
            first = i;
        else
            bad_line(m, by_id[i]->line, "KpmID \"%s\" is also on line %u", by_id[i]->kpm_id,
                     by_id[first]->line);
    }
    free(by_id);
}

static m2mhsm_kpm_item item_of(const manifest_entry *e)
{
    m2mhsm_kpm_item it = {
        .kpm_id = e->kpm_id,
        .kek_label = e->kek,
        .valid_until = e->valid_until,
        .target_id = e->target_id,
        .enrolee_id = e->enrolee_id,
        .enrolment_expiry = e->has_expiry ? &e->expiry : NULL,
    };
    if (e->wrapped) {
        it.wrapped = e->key;
        it.wrapped_len = e->key_len;
    } else {
        it.kpm = e->key;
        it.kpm_len = e->key_len;
    }
    return it;
}

/* What needs the token but writes nothing: grammars, lengths, KEKs, wrapped blobs. */
static void check_all(manifest *m, m2mhsm_kpm_batch *b)
{
    for (size_t i = 0; i < m->count; i++) {
        m2mhsm_kpm_item it = item_of(&m->entries[i]);
        if (m2mhsm_kpm_batch_check(b, &it) != M2MHSM_OK)
            bad_line(m, m->entries[i].line, "%s", m2mhsm_last_error());
    }
}

/* ---- importing ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    int on; /* stderr is a terminal */
    double start, last;
    size_t total;
} progress;

/* "done/total  rate/s  ETA", redrawn in place on a terminal only. */
static void progress_show(progress *p, size_t done, int final)
{
    if (!p->on)
        return;
    double t = now_s();
    if (!final && done > 0 && (t - p->last) * 1000 < PROGRESS_MS)
        return;
    p->last = t;
    double rate = t > p->start && done > 0 ? (double)done / (t - p->start) : 0;
    long eta = rate > 0 ? (long)((double)(p->total - done) / rate + 0.5) : 0;
    fprintf(stderr, "\r%zu/%zu  %.1f/s  ETA %ld:%02ld:%02ld\033[K%s", done, p->total, rate,
            eta / 3600, eta / 60 % 60, eta % 60, final ? "\n" : "");
    fflush(stderr);
}

typedef struct {
    size_t imported, skipped, failed;
} tally;

static void import_all(manifest *m, m2mhsm_kpm_batch *b, tally *t)
{
    /* Counted first, so that the progress total is what remains to be written. Without
     * the memory, each present KpmID is still skipped, by the import (M2MHSM_E_EXISTS). */
    unsigned char *skip = calloc(m->count ? m->count : 1, 1);
    for (size_t i = 0; skip != NULL && i < m->count; i++) {
        skip[i] = (unsigned char)m2mhsm_kpm_batch_known(b, m->entries[i].kpm_id);
        t->skipped += skip[i];
    }
    progress p = {isatty(STDERR_FILENO), now_s(), 0, m->count - t->skipped};
    size_t done = 0;
    for (size_t i = 0; i < m->count && !interrupted; i++) {
        if (skip != NULL && skip[i])
            continue;
        m2mhsm_kpm_item it = item_of(&m->entries[i]);
        m2mhsm_status st = m2mhsm_kpm_batch_import(b, &it, NULL);
        if (st == M2MHSM_E_EXISTS) {
            t->skipped++;
        } else if (st != M2MHSM_OK) {
            if (t->failed++ < MAX_REPORTED)
                fprintf(stderr, "%sm2mhsm: %s:%u: %s (%s)\n", p.on ? "\r\033[K" : "", m->path,
                        m->entries[i].line, m2mhsm_last_error(), m2mhsm_status_name(st));
        } else {
            t->imported++;
        }
        progress_show(&p, ++done, 0);
    }
    progress_show(&p, done, 1);
    free(skip);
}

static void manifest_free(manifest *m)
{
    for (size_t i = 0; i < m->count; i++)
        entry_free(&m->entries[i]);
    if (m->entries != NULL)
        OPENSSL_cleanse(m->entries, m->cap * sizeof(*m->entries));
    free(m->entries);
    m->entries = NULL;
}

/* Refuse the file as a whole: nothing has been written. */
static int refuse(const manifest *m)
{
    fprintf(stderr, "m2mhsm: %s: %zu bad line(s)%s; nothing imported\n", m->path, m->bad,
            m->bad > MAX_REPORTED ? " (the first reported)" : "");
    return EXIT_FAIL;
}

static int import_checked(cli_ctx *ctx, manifest *m)
{
    m2mhsm_kpm_batch *b = NULL;
    m2mhsm_status st = m2mhsm_kpm_batch_begin(ctx->ks, &b);
    if (st != M2MHSM_OK)
        return cli_fail("kpm import --manifest", st);
    check_all(m, b);
    if (m->bad > 0) {
        m2mhsm_kpm_batch_end(b);
        return refuse(m);
    }
    struct sigaction sa = {.sa_handler = on_interrupt}, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    tally t = {0};
    import_all(m, b, &t);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    m2mhsm_kpm_batch_end(b);
    size_t left = m->count - t.imported - t.skipped - t.failed;
    printf("imported %zu, skipped %zu (KpmID present), failed %zu", t.imported, t.skipped,
           t.failed);
    if (left > 0)
        printf(", not done %zu (interrupted: run again to resume)", left);
    putchar('\n');
    return t.failed == 0 && left == 0 ? EXIT_OK : EXIT_FAIL;
}

int cli_kpm_import_manifest(cli_ctx *ctx, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    if (read_all(path, &buf, &len) != 0)
        return EXIT_FAIL;
    manifest m = {.path = path};
    parse_all(&m, buf, len);
    OPENSSL_cleanse(buf, len);
    free(buf);
    find_duplicates(&m);
    int rc;
    if (m.bad > 0)
        rc = refuse(&m); /* before the token is opened: it stays exactly as it was */
    else if (m.count == 0)
        rc = (fprintf(stderr, "m2mhsm: %s: no devices in the manifest\n", path), EXIT_FAIL);
    else if ((rc = cli_open(ctx)) == EXIT_OK) {
        rc = import_checked(ctx, &m);
        cli_close(ctx);
    }
    manifest_free(&m);
    return rc;
}
