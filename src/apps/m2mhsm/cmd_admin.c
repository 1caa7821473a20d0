/* Commands that inspect, erase and repair: list, erase, sweep, repair. */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *state_of(cli_ctx *ctx, const m2mhsm_record *r)
{
    if (m2mhsm_record_superseded(ctx->ks, r))
        return "superseded"; /* refused by every lookup; m2mhsm repair erases it */
    return m2mhsm_record_valid(ctx->ks, r) ? "valid" : "expired";
}

/* The configured Enrolment Expiry as written ("3600s" or a timestamp), or "". */
static void spec_text(const m2mhsm_record *r, char *buf, size_t len)
{
    buf[0] = '\0';
    if (r->enrolment_expiry.kind == M2MHSM_EXPIRY_DURATION)
        snprintf(buf, len, "%llds", (long long)r->enrolment_expiry.value);
    else if (r->enrolment_expiry.kind == M2MHSM_EXPIRY_ABSOLUTE)
        m2mhsm_timestamp_format(r->enrolment_expiry.value, buf, len);
}

/* "sensitive"/"extractable" as the token reports them for a record with keys; with none
 * (an Enrolment configuration), or if the token would not tell (said on stderr), neither. */
static int add_protection(cli_ctx *ctx, const m2mhsm_record *r, json_t *obj)
{
    m2mhsm_key_protection p;
    if (r->kind == M2MHSM_KIND_ENROLMENT)
        return 0;
    m2mhsm_status st = m2mhsm_keystore_protection(ctx->ks, r, &p);
    if (st != M2MHSM_OK) {
        fprintf(stderr, "m2mhsm: list: %s: %s\n", r->identity, m2mhsm_last_error());
        return 0;
    }
    return json_object_set_new(obj, "sensitive", json_boolean(p.sensitive)) != 0 ||
                   json_object_set_new(obj, "extractable", json_boolean(p.extractable)) != 0
               ? -1
               : 0;
}

static json_t *record_json(cli_ctx *ctx, const m2mhsm_record *r)
{
    char ts[M2MHSM_TIMESTAMP_LEN], spec[32];
    m2mhsm_timestamp_format(r->expiry, ts, sizeof(ts));
    spec_text(r, spec, sizeof(spec));
    const char *state = r->kind == M2MHSM_KIND_ENROLMENT ? "config" : state_of(ctx, r);
    json_t *obj =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kind", m2mhsm_kind_name(r->kind),
                  "identity", r->identity, "enrolee", r->enrolee_id, "target", r->target_id,
                  "kpmId", r->kpm_id, "expires", ts, "enrolmentExpiry", spec, "state", state);
    /* Which path made a Km/Kpsa: inside the token (HKDF), or through host memory. */
    int derived = r->kind == M2MHSM_KIND_KM || r->kind == M2MHSM_KIND_KPSA;
    if (obj != NULL && ((derived && json_object_set_new(obj, "derived_in_token",
                                                        json_boolean(r->derived_in_token)) != 0) ||
                        add_protection(ctx, r, obj) != 0)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* A JSON array, one record a line, each printed as soon as it is made: the whole document
 * is never built in memory (a token may hold 100,000 records). */
static int print_json(cli_ctx *ctx, const m2mhsm_record *recs, size_t n)
{
    fputs("[", stdout);
    for (size_t i = 0; i < n; i++) {
        json_t *obj = record_json(ctx, &recs[i]);
        fputs(i > 0 ? ",\n" : "\n", stdout);
        if (obj == NULL || json_dumpf(obj, stdout, JSON_COMPACT) != 0) {
            json_decref(obj);
            fputs("m2mhsm: list: out of memory\n", stderr);
            return EXIT_FAIL;
        }
        json_decref(obj);
    }
    fputs(n > 0 ? "\n]\n" : "]\n", stdout);
    return EXIT_OK;
}

static void print_table(cli_ctx *ctx, const m2mhsm_record *recs, size_t n)
{
    printf("%-9s %-50s %-28s %-20s %-15s %s\n", "KIND", "IDENTITY", "ENROLEE", "TARGET", "EXPIRES",
           "STATE");
    for (size_t i = 0; i < n; i++) {
        const m2mhsm_record *r = &recs[i];
        char ts[M2MHSM_TIMESTAMP_LEN];
        if (r->kind == M2MHSM_KIND_ENROLMENT)
            spec_text(r, ts, sizeof(ts)); /* a configuration: its Enrolment Expiry */
        else
            m2mhsm_timestamp_format(r->expiry, ts, sizeof(ts));
        printf("%-9s %-50s %-28s %-20s %-15s %s\n", m2mhsm_kind_name(r->kind), r->identity,
               r->enrolee_id[0] ? r->enrolee_id : "-", r->target_id[0] ? r->target_id : "-", ts,
               r->kind == M2MHSM_KIND_ENROLMENT ? "config" : state_of(ctx, r));
    }
}

int cmd_list(int argc, char **argv, cli_ctx *ctx)
{
    int json = 0;
    if (argc == 2 && strcmp(argv[1], "--json") == 0)
        json = 1;
    else if (argc != 1)
        return cli_usage("list takes only --json");
    int rc = cli_open_read_only(ctx); /* a listing never changes what it lists */
    if (rc != EXIT_OK)
        return rc;
    m2mhsm_record *recs = NULL;
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_list(ctx->ks, &recs, &n);
    if (st != M2MHSM_OK)
        rc = cli_fail("list", st);
    else if (json)
        rc = print_json(ctx, recs, n);
    else
        print_table(ctx, recs, n);
    free(recs);
    cli_close(ctx);
    return rc;
}

int cmd_erase(int argc, char **argv, cli_ctx *ctx)
{
    static const struct option opts[] = {
        {"enrolee", required_argument, NULL, 'e'},
        {"key-id", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0},
    };
    const char *enrolee = NULL, *key_id = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'e')
            enrolee = optarg;
        else if (c == 'k')
            key_id = optarg;
        else
            return cli_usage("erase takes --enrolee ID or --key-id ID");
    }
    if (optind != argc || (enrolee == NULL) == (key_id == NULL))
        return cli_usage("erase takes exactly one of --enrolee ID and --key-id ID");
    int rc = cli_open(ctx);
    if (rc != EXIT_OK)
        return rc;
    size_t n = 0;
    m2mhsm_status st = enrolee != NULL ? m2mhsm_keystore_erase_enrolee(ctx->ks, enrolee, &n)
                                       : m2mhsm_keystore_erase_id(ctx->ks, key_id, &n);
    cli_close(ctx);
    if (st != M2MHSM_OK)
        return cli_fail("erase", st);
    printf("erased %zu record(s)\n", n);
    return EXIT_OK;
}

int cmd_sweep(int argc, char **argv, cli_ctx *ctx)
{
    (void)argv;
    if (argc != 1)
        return cli_usage("sweep takes no arguments");
    int rc = cli_open(ctx);
    if (rc != EXIT_OK)
        return rc;
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_sweep(ctx->ks, &n);
    cli_close(ctx);
    if (st != M2MHSM_OK)
        return cli_fail("sweep", st);
    printf("swept: erased %zu expired record(s)\n", n);
    return EXIT_OK;
}

/* What a crash left (docs/key-lifecycle.md, crash safety): opening for writing removes it,
 * so the command is the open itself; the report says what went. */
int cmd_repair(int argc, char **argv, cli_ctx *ctx)
{
    (void)argv;
    if (argc != 1)
        return cli_usage("repair takes no arguments");
    int rc = cli_open(ctx);
    if (rc != EXIT_OK)
        return rc;
    cli_close(ctx);
    printf("repaired: removed %zu orphan key(s), %zu torn record(s), %zu superseded record(s)\n",
           ctx->report.orphan_keys, ctx->report.incomplete, ctx->report.superseded);
    return EXIT_OK;
}
