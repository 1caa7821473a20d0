/*
 * The metadata object's CKA_VALUE: "key=value" lines, version 1 (docs/key-lifecycle.md).
 * Text rather than a binary layout so an operator can read it with pkcs11-tool; every
 * field is validated on the way in, since another process (or a tamperer with the PIN)
 * may have written it.
 */
#include "ks.h"
#include "../internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_MAGIC "m2mhsm-meta 1\n"

static const char *const kind_names[] = {
    [M2MHSM_KIND_KPM] = "kpm",
    [M2MHSM_KIND_KE] = "ke",
    [M2MHSM_KIND_KM] = "km",
    [M2MHSM_KIND_KPSA] = "kpsa",
    [M2MHSM_KIND_ENROLMENT] = "enrolment",
};

const char *m2mhsm_kind_name(m2mhsm_kind kind)
{
    if ((unsigned)kind < M2MHSM_ARRAY_LEN(kind_names) && kind_names[kind] != NULL)
        return kind_names[kind];
    return "unknown";
}

static int kind_from_name(const char *s, m2mhsm_kind *out)
{
    for (unsigned k = M2MHSM_KIND_KPM; k <= M2MHSM_KIND_ENROLMENT; k++) {
        if (strcmp(s, kind_names[k]) == 0) {
            *out = (m2mhsm_kind)k;
            return 1;
        }
    }
    return 0;
}

static const char *const form_names[M2MHSM_FORM_COUNT] = {"raw", "tls12-pms", "tls13-es"};

const char *ks_form_name(m2mhsm_form form)
{
    return (unsigned)form < M2MHSM_FORM_COUNT ? form_names[form] : "unknown";
}

const char *m2mhsm_form_name(m2mhsm_form form)
{
    return ks_form_name(form);
}

int ks_kind_is_psk(m2mhsm_kind kind)
{
    return kind == M2MHSM_KIND_KPM || kind == M2MHSM_KIND_KM || kind == M2MHSM_KIND_KPSA;
}

unsigned ks_record_forms(const m2mhsm_record *rec)
{
    return rec->forms != 0 ? rec->forms : ks_kind_forms(rec->kind);
}

/* "raw,tls12-pms": the forms= field of a record that has fewer than its kind's all. */
static void forms_format(unsigned forms, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
        if (forms & (1u << f))
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n > 0 ? "," : "", form_names[f]);
}

static int forms_parse(const char *v, unsigned *out)
{
    char copy[64], *save = NULL;
    if (strlen(v) >= sizeof(copy))
        return 0;
    strcpy(copy, v);
    *out = 0;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        int f = 0;
        while (f < M2MHSM_FORM_COUNT && strcmp(t, form_names[f]) != 0)
            f++;
        if (f == M2MHSM_FORM_COUNT || (*out & (1u << f)))
            return 0;
        *out |= 1u << f;
    }
    return *out != 0;
}

unsigned ks_kind_forms(m2mhsm_kind kind)
{
    switch (kind) {
    case M2MHSM_KIND_KPM:
    case M2MHSM_KIND_KM:
    case M2MHSM_KIND_KPSA:
        return 1u << M2MHSM_FORM_RAW | 1u << M2MHSM_FORM_TLS12_PMS | 1u << M2MHSM_FORM_TLS13_ES;
    case M2MHSM_KIND_KE:
        return 1u << M2MHSM_FORM_RAW;
    case M2MHSM_KIND_ENROLMENT:
        return 0;
    }
    return 0;
}

int ks_kind_replaceable(m2mhsm_kind kind)
{
    return kind != M2MHSM_KIND_KPM;
}

int ks_kind_is_credential(m2mhsm_kind kind)
{
    return kind == M2MHSM_KIND_KE || kind == M2MHSM_KIND_KM || kind == M2MHSM_KIND_KPSA;
}

void ks_meta_label(const m2mhsm_record *rec, char *buf, size_t len)
{
    snprintf(buf, len, M2MHSM_LABEL_PREFIX "%s:%s", m2mhsm_kind_name(rec->kind), rec->identity);
}

void ks_key_label(const m2mhsm_record *rec, m2mhsm_form form, char *buf, size_t len)
{
    snprintf(buf, len, M2MHSM_LABEL_PREFIX "%s:%s:%s", m2mhsm_kind_name(rec->kind), rec->identity,
             ks_form_name(form));
}

int ks_label_form(const char *label)
{
    const char *colon = strrchr(label, ':');
    if (strncmp(label, M2MHSM_LABEL_PREFIX, strlen(M2MHSM_LABEL_PREFIX)) != 0 || colon == NULL)
        return -1;
    for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
        if (strcmp(colon + 1, form_names[f]) == 0)
            return f;
    return -1;
}

int ks_label_parse(const char *label, m2mhsm_kind *kind, int *form)
{
    char copy[M2MHSM_LABEL_MAX];
    size_t prefix = strlen(M2MHSM_LABEL_PREFIX);
    if (strncmp(label, M2MHSM_LABEL_PREFIX, prefix) != 0 || strlen(label) >= sizeof(copy))
        return 0;
    strcpy(copy, label + prefix);
    char *k = copy, *id = strchr(k, ':'), *f = strrchr(k, ':');
    if (id == NULL || f == id)
        return 0;
    *id++ = '\0';
    *f++ = '\0';
    *form = ks_label_form(label);
    return kind_from_name(k, kind) && *form >= 0 &&
           m2mhsm_id_check_str(ks_identity_type(*kind), id) == M2MHSM_OK;
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

m2mhsm_status ks_meta_encode(const m2mhsm_record *rec, char *buf, size_t *len)
{
    char rid[2 * M2MHSM_RECORD_ID_LEN + 1], spec[32] = "";
    hex_encode(rec->record_id, M2MHSM_RECORD_ID_LEN, rid);
    if (rec->enrolment_expiry.kind != 0 &&
        m2mhsm_expiry_spec_format(&rec->enrolment_expiry, spec, sizeof(spec)) != M2MHSM_OK)
        return M2MHSM_E_INVALID_ARG;
    int n = snprintf(buf, M2MHSM_META_MAX,
                     META_MAGIC "kind=%s\nidentity=%s\nrecord_id=%s\nkpm_id=%s\nke_id=%s\n"
                                "enrolee_id=%s\ntarget_id=%s\nenrolment_expiry=%s\n"
                                "created=%" PRId64 "\nexpiry=%" PRId64 "\n",
                     m2mhsm_kind_name(rec->kind), rec->identity, rid, rec->kpm_id, rec->ke_id,
                     rec->enrolee_id, rec->target_id, spec, rec->created, rec->expiry);
    /* A Kpm carries no seq (nothing replaces one), so it stays readable by older versions. */
    if (n > 0 && n < M2MHSM_META_MAX && ks_kind_replaceable(rec->kind))
        n += snprintf(buf + n, M2MHSM_META_MAX - (size_t)n, "seq=%" PRIu64 "\n", rec->seq);
    /* Only a record with fewer forms than its kind's all says which: a record with all of
     * them (or 0: not chosen) is written exactly as before forms= existed. */
    if (n > 0 && n < M2MHSM_META_MAX && rec->forms != 0 && rec->forms != ks_kind_forms(rec->kind)) {
        char forms[64];
        if (!ks_kind_is_psk(rec->kind) || (rec->forms & ~ks_kind_forms(rec->kind)) != 0)
            return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "metadata: forms not of this kind");
        forms_format(rec->forms, forms, sizeof(forms));
        n += snprintf(buf + n, M2MHSM_META_MAX - (size_t)n, "forms=%s\n", forms);
    }
    /* Written only when true, so a record made by C_Sign reads as before the field existed. */
    if (n > 0 && n < M2MHSM_META_MAX && rec->derived_in_token)
        n += snprintf(buf + n, M2MHSM_META_MAX - (size_t)n, "derived_in_token=1\n");
    if (n < 0 || n >= M2MHSM_META_MAX)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG, "metadata too long");
    *len = (size_t)n;
    return M2MHSM_OK;
}

/* ---- decoding ---- */

/* 9999-12-31T23:59:59Z: the last instant an m2m:timestamp can name. */
#define META_TIME_MAX 253402300799LL

/* A Unix time in [0, META_TIME_MAX], or exactly M2MHSM_NEVER when never_ok. */
static int parse_time(const char *s, int64_t *out, int never_ok)
{
    char *end = NULL;
    if (*s < '0' || *s > '9')
        return 0;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return 0;
    if (v == M2MHSM_NEVER && never_ok) {
        *out = v;
        return 1;
    }
    if (v > META_TIME_MAX)
        return 0;
    *out = v;
    return 1;
}

static int parse_seq(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (*s < '0' || *s > '9')
        return 0;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return 0;
    *out = v;
    return 1;
}

static int hex_decode(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return 0;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return 0;
        out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | v : v << 4);
    }
    return 1;
}

static int copy_field(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return 0;
    memcpy(dst, v, n + 1);
    return 1;
}

static int set_field(m2mhsm_record *rec, const char *k, const char *v, unsigned *seen)
{
    int ok = 0;
#define FIELD(name, bit, expr)                                                                     \
    if (strcmp(k, name) == 0) {                                                                    \
        ok = (*seen & (1u << bit)) == 0 && (expr);                                                 \
        *seen |= 1u << bit;                                                                        \
        return ok;                                                                                 \
    }
    FIELD("kind", 0, kind_from_name(v, &rec->kind))
    FIELD("identity", 1, copy_field(rec->identity, sizeof(rec->identity), v))
    FIELD("record_id", 2, hex_decode(v, rec->record_id, M2MHSM_RECORD_ID_LEN))
    FIELD("kpm_id", 3, copy_field(rec->kpm_id, sizeof(rec->kpm_id), v))
    FIELD("ke_id", 4, copy_field(rec->ke_id, sizeof(rec->ke_id), v))
    FIELD("enrolee_id", 5, copy_field(rec->enrolee_id, sizeof(rec->enrolee_id), v))
    FIELD("target_id", 6, copy_field(rec->target_id, sizeof(rec->target_id), v))
    FIELD("enrolment_expiry", 7,
          v[0] == '\0' || m2mhsm_expiry_spec_parse(v, &rec->enrolment_expiry) == M2MHSM_OK)
    FIELD("created", 8, parse_time(v, &rec->created, 0))
    FIELD("expiry", 9, parse_time(v, &rec->expiry, 1))
    FIELD("seq", 10, parse_seq(v, &rec->seq))
    FIELD("forms", 11, forms_parse(v, &rec->forms))
    FIELD("derived_in_token", 12, strcmp(v, "1") == 0 && (rec->derived_in_token = 1))
#undef FIELD
    return 0;
}

/* Every field but seq, which records written before it lack (read as 0), and forms, which
 * only a record with fewer than its kind's forms has. */
#define REQUIRED_FIELDS ((1u << 10) - 1)
#define FORMS_FIELD (1u << 11)

static int opt_id_ok(m2mhsm_id_type t, const char *s)
{
    return s[0] == '\0' || m2mhsm_id_check_str(t, s) == M2MHSM_OK;
}

m2mhsm_id_type ks_identity_type(m2mhsm_kind kind)
{
    return kind == M2MHSM_KIND_KPM || kind == M2MHSM_KIND_ENROLMENT ? M2MHSM_ID_KPM : M2MHSM_ID_KE;
}

int ks_meta_salvage_id(const char *buf, size_t len, uint8_t id[M2MHSM_RECORD_ID_LEN])
{
    static const char key[] = "\nrecord_id=";
    size_t kl = sizeof(key) - 1, hex = 2 * M2MHSM_RECORD_ID_LEN;
    for (size_t i = 0; i + kl + hex <= len; i++) {
        if (memcmp(buf + i, key, kl) != 0)
            continue;
        char v[2 * M2MHSM_RECORD_ID_LEN + 1];
        memcpy(v, buf + i + kl, hex);
        v[hex] = '\0';
        return hex_decode(v, id, M2MHSM_RECORD_ID_LEN);
    }
    return 0;
}

/* What each kind must carry: a credential always has a finite expiry (Enrolment Expiry
 * bounds it), a Ke its KpmID, a Km/Kpsa the KeID it is named after. */
static int kind_fields_ok(const m2mhsm_record *r)
{
    switch (r->kind) {
    case M2MHSM_KIND_KE:
        return r->expiry != M2MHSM_NEVER && r->kpm_id[0] != '\0';
    case M2MHSM_KIND_KM:
    case M2MHSM_KIND_KPSA:
        return r->expiry != M2MHSM_NEVER && strcmp(r->ke_id, r->identity) == 0;
    case M2MHSM_KIND_ENROLMENT:
        return r->enrolment_expiry.kind != 0 && r->enrolee_id[0] != '\0' && r->target_id[0] != '\0';
    case M2MHSM_KIND_KPM:
        return 1;
    }
    return 0;
}

static int record_ok(const m2mhsm_record *r)
{
    if (r->seq != 0 && !ks_kind_replaceable(r->kind))
        return 0;
    if (r->derived_in_token && r->kind != M2MHSM_KIND_KM && r->kind != M2MHSM_KIND_KPSA)
        return 0;
    /* A subset of the kind's forms, and for a PSK at least one a handshake can use. */
    unsigned all = ks_kind_forms(r->kind), tls = M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13;
    if ((r->forms & ~all) != 0 || (ks_kind_is_psk(r->kind) && (r->forms & tls) == 0))
        return 0;
    return m2mhsm_id_check_str(ks_identity_type(r->kind), r->identity) == M2MHSM_OK &&
           opt_id_ok(M2MHSM_ID_KPM, r->kpm_id) && opt_id_ok(M2MHSM_ID_KE, r->ke_id) &&
           opt_id_ok(M2MHSM_ID_M2M_ABS, r->enrolee_id) &&
           opt_id_ok(M2MHSM_ID_TARGET, r->target_id) && r->expiry > 0 && kind_fields_ok(r);
}

m2mhsm_status ks_meta_decode(const char *buf, size_t len, m2mhsm_record *rec)
{
    char text[M2MHSM_META_MAX + 1];
    size_t magic = strlen(META_MAGIC);
    memset(rec, 0, sizeof(*rec));
    if (len > M2MHSM_META_MAX || len < magic || memcmp(buf, META_MAGIC, magic) != 0 ||
        memchr(buf, '\0', len) != NULL)
        return m2mhsm_fail(M2MHSM_E_CORRUPT, "metadata: not an m2mhsm-meta 1 record");
    memcpy(text, buf + magic, len - magic);
    text[len - magic] = '\0';
    unsigned seen = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (eq == NULL)
            return m2mhsm_fail(M2MHSM_E_CORRUPT, "metadata: line without '='");
        *eq = '\0';
        /* The field name is not echoed: the text may come from whoever holds the PIN. */
        if (!set_field(rec, line, eq + 1, &seen))
            return m2mhsm_fail(M2MHSM_E_CORRUPT, "metadata: a field is unknown, repeated or "
                                                 "malformed");
    }
    if ((seen & REQUIRED_FIELDS) != REQUIRED_FIELDS)
        return m2mhsm_fail(M2MHSM_E_CORRUPT, "metadata: missing or invalid fields");
    if (!(seen & FORMS_FIELD))
        rec->forms = ks_kind_forms(rec->kind); /* written before forms= existed: all */
    if (!record_ok(rec))
        return m2mhsm_fail(M2MHSM_E_CORRUPT, "metadata: missing or invalid fields");
    ks_obj(rec)->meta = CK_INVALID_HANDLE;
    for (int f = 0; f < M2MHSM_FORM_COUNT; f++)
        ks_obj(rec)->key[f] = CK_INVALID_HANDLE;
    return M2MHSM_OK;
}
