/* Structured logs: one logfmt line per lifecycle event, on stderr. Every value is written
 * so that it stays one value (docs/architecture.md, "Logs"): peer-supplied text can neither
 * end the line nor form key=value pairs of its own. Key bytes and PINs are never formatted. */
#include "app.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define LINE_MAX_BYTES 2048
#define VALUE_MAX_BYTES 256 /* of a value's own bytes: a peer cannot flood the log */
#define TRUNCATED " truncated=true"

static const char *log_prog = "m2m";

void app_log_init(const char *prog)
{
    log_prog = prog;
    setvbuf(stderr, NULL, _IOLBF, 0);
}

static const char *level_name(app_level level)
{
    return level == APP_ERROR ? "error" : level == APP_WARN ? "warn" : "info";
}

/* A line under construction: pieces go in whole or not at all, and once one does not fit
 * the line ends with TRUNCATED, so a cut never leaves half a value. */
typedef struct {
    char buf[LINE_MAX_BYTES];
    size_t len;
    int full;
} line_buf;

static void put(line_buf *l, const char *s, size_t n)
{
    if (l->full || n > sizeof(l->buf) - sizeof(TRUNCATED) - l->len) {
        l->full = 1;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static int plain_byte(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("._:/@+-_", ch) != NULL);
}

/* In a quoted value: '"' and '\' are escaped with '\', and '=', control bytes and non-ASCII
 * as \xNN, so that not even a substring of a value reads as key=value or a second line. */
static size_t escape_byte(unsigned char ch, char out[5])
{
    if (ch == '"' || ch == '\\') {
        out[0] = '\\';
        out[1] = (char)ch;
        return 2;
    }
    if (ch < 0x20 || ch >= 0x7f || ch == '=') {
        snprintf(out, 5, "\\x%02x", ch);
        return 4;
    }
    out[0] = (char)ch;
    return 1;
}

/* One value: as it is when it is non-empty and made of plain bytes only, else quoted. NULL
 * is "-". At most max (<= VALUE_MAX_BYTES) of its bytes are written, then "...". */
static void put_value(line_buf *l, const char *v, size_t max)
{
    char out[4 * VALUE_MAX_BYTES + 8], esc[5];
    size_t n = 0, len = v != NULL ? strnlen(v, max + 1) : 0;
    int cut = len > max;
    if (cut)
        len = max;
    if (v == NULL) {
        put(l, "-", 1);
        return;
    }
    int plain = len > 0;
    for (size_t i = 0; plain && i < len; i++)
        plain = plain_byte((unsigned char)v[i]);
    if (!plain)
        out[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        size_t k = plain ? 1 : escape_byte((unsigned char)v[i], esc);
        memcpy(out + n, plain ? &v[i] : esc, k);
        n += k;
    }
    if (cut) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    if (!plain)
        out[n++] = '"';
    put(l, out, n);
}

/* A %s that is not a key's value: a list of fields the caller built from checked values
 * ("ready"). It still cannot end the line or open a quote. */
static void put_fields(line_buf *l, const char *v)
{
    char esc[5];
    for (size_t i = 0; v != NULL && v[i] != '\0' && !l->full; i++) {
        unsigned char ch = (unsigned char)v[i];
        int raw = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
        if (raw)
            put(l, &v[i], 1);
        else
            put(l, esc, escape_byte(ch, esc));
    }
}

/* One integer conversion without flags or width ("%d", "%lld", "%zu", "%lx") with its
 * argument → text. The spec goes to snprintf only as a literal format (-Wformat-nonliteral). */
static int put_number(line_buf *l, const char *spec, size_t n, va_list *ap)
{
    char out[32];
    const char *mod = spec + 1;
    size_t mlen = n - 2;
    char conv = spec[n - 1];
    int is_signed = conv == 'd' || conv == 'i';
    long long sv = 0;
    unsigned long long uv = 0;
    if (strchr("diux", conv) == NULL)
        return -1;
    if (mlen == 0)
        is_signed ? (void)(sv = va_arg(*ap, int)) : (void)(uv = va_arg(*ap, unsigned));
    else if (mlen == 1 && mod[0] == 'l')
        is_signed ? (void)(sv = va_arg(*ap, long)) : (void)(uv = va_arg(*ap, unsigned long));
    else if (mlen == 2 && mod[0] == 'l' && mod[1] == 'l')
        is_signed ? (void)(sv = va_arg(*ap, long long))
                  : (void)(uv = va_arg(*ap, unsigned long long));
    else if (mlen == 1 && mod[0] == 'z')
        is_signed ? (void)(sv = va_arg(*ap, ssize_t)) : (void)(uv = va_arg(*ap, size_t));
    else
        return -1;
    int w = is_signed     ? snprintf(out, sizeof(out), "%lld", sv)
            : conv == 'x' ? snprintf(out, sizeof(out), "%llx", uv)
                          : snprintf(out, sizeof(out), "%llu", uv);
    put(l, out, (size_t)w);
    return 0;
}

/* 1 if p[0..n) is "%s" or "%.Ns" (N > 0), with the most bytes of the value it writes. */
static int string_spec(const char *p, size_t n, size_t *max)
{
    *max = VALUE_MAX_BYTES;
    if (p[n - 1] != 's')
        return 0;
    if (n == 2)
        return 1;
    if (p[1] != '.' || n < 4 || strspn(p + 2, "0123456789") != n - 3)
        return 0;
    unsigned long v = strtoul(p + 2, NULL, 10);
    if (v < *max)
        *max = v;
    return v > 0;
}

/* printf with %s, %.Ns, %% and the integer conversions %d %i %u %x (with l, ll or z). A %s
 * right after '=' is a value (put_value); any other %s is a list of fields (put_fields). */
static void put_formatted(line_buf *l, const char *fmt, va_list *ap)
{
    const char *p = fmt;
    while (*p != '\0' && !l->full) {
        size_t lit = strcspn(p, "%"), key = l->len;
        put(l, p, lit);
        for (size_t i = l->len; i > key; i--) /* where the key of a value starts */
            if (l->buf[i - 1] == ' ') {
                key = i - 1;
                break;
            }
        p += lit;
        if (*p == '\0')
            break;
        if (p[1] == '%') {
            put(l, "%", 1);
            p += 2;
            continue;
        }
        size_t n = 1 + strspn(p + 1, ".0123456789hlzjt");
        if (p[n] == '\0') {
            put(l, " log_format=invalid", 19);
            return;
        }
        n++; /* the conversion */
        size_t max;
        if (string_spec(p, n, &max)) {
            const char *v = va_arg(*ap, const char *);
            if (p > fmt && p[-1] == '=')
                put_value(l, v, max);
            else
                put_fields(l, v);
            if (l->full) /* no key without its value */
                l->len = key;
        } else if (put_number(l, p, n, ap) != 0) {
            put(l, " log_format=unsupported", 23);
            return; /* the arguments after it cannot be located any more */
        }
        p += n;
    }
}

void app_log(app_level level, const char *event, const char *fields, ...)
{
    struct timespec ts;
    struct tm tm;
    char head[128];
    line_buf l = {.len = 0, .full = 0};
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
    put(&l, "time=", 5);
    put(&l, head, strlen(head));
    snprintf(head, sizeof(head), ".%03ldZ level=%s prog=", ts.tv_nsec / 1000000, level_name(level));
    put(&l, head, strlen(head));
    put_value(&l, log_prog, VALUE_MAX_BYTES);
    put(&l, " event=", 7);
    put_value(&l, event, VALUE_MAX_BYTES);
    if (fields != NULL && fields[0] != '\0') {
        va_list ap;
        put(&l, " ", 1);
        va_start(ap, fields);
        put_formatted(&l, fields, &ap);
        va_end(ap);
    }
    if (l.full) { /* put() kept room for it */
        memcpy(l.buf + l.len, TRUNCATED, sizeof(TRUNCATED) - 1);
        l.len += sizeof(TRUNCATED) - 1;
    }
    l.buf[l.len++] = '\n';
    fwrite(l.buf, 1, l.len, stderr);
}

const char *app_error(m2mhsm_status st)
{
    static __thread char buf[512];
    snprintf(buf, sizeof(buf), "%s(%s)", m2mhsm_status_name(st), m2mhsm_last_error());
    return buf;
}
