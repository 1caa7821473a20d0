/* Enrolment Expiry arithmetic and m2m:timestamp (TS-0004) parsing/formatting. */
#include <m2mhsm/expiry.h>
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

m2mhsm_time m2mhsm_clock_system(void *arg)
{
    (void)arg;
    return (m2mhsm_time)time(NULL);
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (H. Hinnant's days_from_civil), so
 * no locale or TZ variable can bend the result the way mktime would. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : days[m - 1];
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int fraction_ok(const char *f)
{
    size_t n = strlen(f);
    if (n == 0)
        return 1;
    if (f[0] != ',' || n < 2 || n > 7)
        return 0;
    for (size_t i = 1; i < n; i++)
        if (f[i] < '0' || f[i] > '9')
            return 0;
    return 1;
}

m2mhsm_status m2mhsm_timestamp_parse(const char *s, m2mhsm_time *out)
{
    int y, mo, d, h, mi, se;
    if (s == NULL || strlen(s) < 15 || s[8] != 'T' || !digits(s, 4, &y) || !digits(s + 4, 2, &mo) ||
        !digits(s + 6, 2, &d) || !digits(s + 9, 2, &h) || !digits(s + 11, 2, &mi) ||
        !digits(s + 13, 2, &se) || !fraction_ok(s + 15))
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG,
                           "timestamp is not an m2m:timestamp YYYYMMDDThhmmss[,ffffff]");
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        se > 59)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "timestamp has a field out of range");
    *out = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    return M2MHSM_OK;
}

/* 9999-12-31T23:59:59Z, the last instant a timestamp or CK_DATE can name. */
#define TIME_MAX 253402300799LL

static int civil(m2mhsm_time t, struct tm *tm)
{
    time_t tt = (time_t)t;
    if (t < 0 || t > TIME_MAX || gmtime_r(&tt, tm) == NULL) {
        memset(tm, 0, sizeof(*tm));
        return 0;
    }
    return 1;
}

m2mhsm_status m2mhsm_timestamp_format(m2mhsm_time t, char *buf, size_t len)
{
    int n;
    if (t == M2MHSM_NEVER) {
        n = snprintf(buf, len, "never");
    } else {
        struct tm tm;
        if (!civil(t, &tm))
            return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "time out of the m2m:timestamp range");
        n = snprintf(buf, len, "%04d%02d%02dT%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    }
    if (n < 0 || (size_t)n >= len)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "timestamp buffer too small");
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_expiry_spec_parse(const char *s, m2mhsm_expiry_spec *out)
{
    if (s == NULL || s[0] == '\0')
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "Enrolment Expiry is empty");
    size_t n = strspn(s, "0123456789");
    if (s[n] != '\0') {
        m2mhsm_time t;
        if (m2mhsm_timestamp_parse(s, &t) != M2MHSM_OK)
            return m2mhsm_fail(M2MHSM_E_INVALID_ARG,
                               "Enrolment Expiry must be seconds or an m2m:timestamp "
                               "YYYYMMDDThhmmss");
        out->kind = M2MHSM_EXPIRY_ABSOLUTE;
        out->value = t;
        return M2MHSM_OK;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > M2MHSM_MAX_DURATION)
            break;
    }
    if (v < 1 || v > M2MHSM_MAX_DURATION)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG,
                           "Enrolment Expiry of %s seconds is out of "
                           "range (1 to %lld)",
                           n > 20 ? "so many" : s, (long long)M2MHSM_MAX_DURATION);
    out->kind = M2MHSM_EXPIRY_DURATION;
    out->value = v;
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_expiry_spec_format(const m2mhsm_expiry_spec *spec, char *buf, size_t len)
{
    if (spec->kind == M2MHSM_EXPIRY_ABSOLUTE)
        return m2mhsm_timestamp_format(spec->value, buf, len);
    int n = snprintf(buf, len, "%lld", (long long)spec->value);
    if (n < 0 || (size_t)n >= len)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "expiry buffer too small");
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_expiry_resolve(const m2mhsm_expiry_spec *spec, m2mhsm_time now,
                                    m2mhsm_time *out)
{
    if (spec->kind == M2MHSM_EXPIRY_DURATION) {
        if (spec->value < 1 || spec->value > M2MHSM_MAX_DURATION)
            return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "Enrolment Expiry duration out of range");
        *out = now + spec->value;
        return M2MHSM_OK;
    }
    if (spec->kind != M2MHSM_EXPIRY_ABSOLUTE)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "Enrolment Expiry is not configured");
    if (!m2mhsm_expiry_is_valid(spec->value, now))
        return m2mhsm_fail(M2MHSM_E_EXPIRED, "the configured Enrolment Expiry has passed");
    *out = spec->value;
    return M2MHSM_OK;
}

m2mhsm_time m2mhsm_expiry_clamp(m2mhsm_time requested, m2mhsm_time ke_expiry)
{
    return requested < ke_expiry ? requested : ke_expiry;
}

int m2mhsm_expiry_is_valid(m2mhsm_time expiry, m2mhsm_time now)
{
    return now < expiry;
}

void m2mhsm_expiry_ck_date(m2mhsm_time t, CK_DATE *out)
{
    char buf[48];
    struct tm tm;
    civil(t, &tm);
    snprintf(buf, sizeof(buf), "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    memcpy(out->year, buf, 4);
    memcpy(out->month, buf + 4, 2);
    memcpy(out->day, buf + 6, 2);
}
