/* Structured logs: one logfmt line per lifecycle event, on stderr. Values that come from a
 * peer go through app_safe() first; key bytes and PINs are never formatted at all. */
#include "app.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

void app_log(app_level level, const char *event, const char *fields, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[32], line[1024];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(line, sizeof(line), "time=%s.%03ldZ level=%s prog=%s event=%s", when,
                     ts.tv_nsec / 1000000, level_name(level), log_prog, event);
    if (n > 0 && (size_t)n < sizeof(line) - 2 && fields != NULL && fields[0] != '\0') {
        va_list ap;
        line[n++] = ' ';
        va_start(ap, fields);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fields, ap);
        va_end(ap);
    }
    fprintf(stderr, "%s\n", line);
}

const char *app_safe(const char *s, char *out, size_t cap)
{
    static const char ok[] = "._@/:,+=-";
    size_t i = 0;
    if (cap == 0)
        return "";
    for (; s != NULL && s[i] != '\0' && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || (ch != '\0' && strchr(ok, ch) != NULL);
        out[i] = plain ? (char)ch : '?';
    }
    out[i] = '\0';
    if (i == 0 && cap > 1) {
        out[0] = '-';
        out[1] = '\0';
    }
    return out;
}

const char *app_error(m2mhsm_status st)
{
    static __thread char buf[512];
    char safe[400];
    app_safe(m2mhsm_last_error(), safe, sizeof(safe));
    snprintf(buf, sizeof(buf), "%s(%s)", m2mhsm_status_name(st), safe);
    return buf;
}
