/* Identifier grammars: TS-0004 6.2.3 (CSE-ID, AE-ID), RFC 1035 (FQDN), TS-0003 10.3.4 (KeID)
 * and the project's KpmID rule. */
#include <m2mhsm/ids.h>
#include "internal.h"

#include <string.h>

const char *m2mhsm_id_type_name(m2mhsm_id_type type)
{
    switch (type) {
    case M2MHSM_ID_KPM:
        return "KpmID";
    case M2MHSM_ID_FQDN:
        return "FQDN";
    case M2MHSM_ID_M2M:
        return "CSE-ID/AE-ID";
    case M2MHSM_ID_M2M_ABS:
        return "absolute CSE-ID/AE-ID";
    case M2MHSM_ID_TARGET:
        return "Enrolment Target ID";
    case M2MHSM_ID_KE:
        return "KeID";
    }
    return "identifier";
}

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* unreserved = (ALPHA/DIGIT) *(ALPHA/DIGIT/"-"/"."/"_") (TS-0004 6.2.3) */
static int unreserved_ok(const char *s, size_t len)
{
    if (len == 0 || !is_alnum(s[0]))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
            return 0;
    return 1;
}

static int kpm_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(s[i]) && strchr("._@-", s[i]) == NULL)
            return 0;
    return 1;
}

/* RFC 1035/1123 host name, lower-case (the project stores FQDNs lower-case). */
static int fqdn_ok(const char *s, size_t len)
{
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && label > 0);
        if (!ok || ++label > 63)
            return 0;
    }
    return label > 0 && s[len - 1] != '-';
}

/* A run of '/'-separated unreserved segments. */
static int segments_ok(const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (!unreserved_ok(s + start, i - start))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

/*
 * CSE-ID "/cse1" (SP-relative) or "//fqdn/cse1" (absolute); AE-ID "C..."/"S..."
 * (SP-relative forms "/cse1/Cae", absolute "//fqdn/cse1/Cae") — all are '/'-separated
 * unreserved segments after an optional "//fqdn".
 */
static int m2m_ok(const char *s, size_t len)
{
    if (len >= 2 && s[0] == '/' && s[1] == '/') {
        const char *slash = memchr(s + 2, '/', len - 2);
        if (slash == NULL || !fqdn_ok(s + 2, (size_t)(slash - s - 2)))
            return 0;
        size_t rest = len - (size_t)(slash - s) - 1;
        return rest > 0 && segments_ok(slash + 1, rest);
    }
    if (len >= 1 && s[0] == '/')
        return len > 1 && segments_ok(s + 1, len - 1);
    /* A bare AE-ID ("Cae1", "Sae1") as registrars hand out. */
    return (s[0] == 'C' || s[0] == 'S') && unreserved_ok(s, len);
}

static int ke_ok(const char *s, size_t len)
{
    size_t hex = 2 * M2MHSM_RELATIVE_KE_ID_LEN;
    if (len < hex + 2 || s[hex] != '@')
        return 0;
    for (size_t i = 0; i < hex; i++)
        if (!is_hex(s[i]))
            return 0;
    return fqdn_ok(s + hex + 1, len - hex - 1);
}

static size_t max_len(m2mhsm_id_type type)
{
    switch (type) {
    case M2MHSM_ID_KPM:
        return M2MHSM_KPM_ID_MAX;
    case M2MHSM_ID_FQDN:
        return M2MHSM_FQDN_MAX;
    case M2MHSM_ID_M2M:
    case M2MHSM_ID_M2M_ABS:
    case M2MHSM_ID_TARGET:
        return M2MHSM_M2M_ID_MAX;
    case M2MHSM_ID_KE:
        return M2MHSM_KE_ID_MAX;
    }
    return 0;
}

static const char *grammar_hint(m2mhsm_id_type type)
{
    switch (type) {
    case M2MHSM_ID_KPM:
        return "characters A-Z a-z 0-9 . _ @ -";
    case M2MHSM_ID_FQDN:
        return "a lower-case host name";
    case M2MHSM_ID_M2M:
        return "a CSE-ID or AE-ID such as //sp.example.com/cse1 or /cse1/Cae1";
    case M2MHSM_ID_M2M_ABS:
        return "an absolute CSE-ID or AE-ID such as //sp.example.com/cse1/Cae1";
    case M2MHSM_ID_TARGET:
        return "a MAF FQDN or an absolute CSE-ID/AE-ID";
    case M2MHSM_ID_KE:
        return "32 hex digits, '@', the MEF's FQDN";
    }
    return "";
}

static int grammar_ok(m2mhsm_id_type type, const char *s, size_t len)
{
    switch (type) {
    case M2MHSM_ID_KPM:
        return kpm_ok(s, len);
    case M2MHSM_ID_FQDN:
        return fqdn_ok(s, len);
    case M2MHSM_ID_M2M:
        return m2m_ok(s, len);
    case M2MHSM_ID_M2M_ABS:
        return len > 2 && s[0] == '/' && s[1] == '/' && m2m_ok(s, len);
    case M2MHSM_ID_TARGET:
        return (len <= M2MHSM_FQDN_MAX && fqdn_ok(s, len)) ||
               (len > 2 && s[0] == '/' && s[1] == '/' && m2m_ok(s, len));
    case M2MHSM_ID_KE:
        return ke_ok(s, len);
    }
    return 0;
}

m2mhsm_status m2mhsm_id_check(m2mhsm_id_type type, const char *s, size_t len)
{
    const char *name = m2mhsm_id_type_name(type);
    if (s == NULL || len == 0)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "%s is empty", name);
    if (len > max_len(type))
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "%s is %zu characters; at most %zu", name, len,
                           max_len(type));
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0')
            return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "%s contains a NUL byte", name);
        if ((unsigned char)s[i] >= 0x80)
            return m2mhsm_fail(M2MHSM_E_INVALID_ARG,
                               "%s is not ASCII (non-ASCII identifiers are refused, not "
                               "NFKC-normalised)",
                               name);
    }
    /* The value is not echoed: it may hold control characters meant for a log. */
    if (!grammar_ok(type, s, len))
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "%s is malformed (expected %s)", name,
                           grammar_hint(type));
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_id_canonical(m2mhsm_id_type type, const char *s, size_t len, char *out,
                                  size_t cap)
{
    m2mhsm_status st = m2mhsm_id_check(type, s, len);
    if (st != M2MHSM_OK)
        return st;
    if (cap <= len)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "identifier buffer too small");
    memcpy(out, s, len);
    out[len] = '\0';
    for (size_t i = 0; type == M2MHSM_ID_KE && i < 2 * M2MHSM_RELATIVE_KE_ID_LEN; i++)
        if (out[i] >= 'a' && out[i] <= 'f')
            out[i] = (char)(out[i] - 'a' + 'A');
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_id_check_str(m2mhsm_id_type type, const char *s)
{
    return m2mhsm_id_check(type, s, s != NULL ? strlen(s) : 0);
}
