/*
 * m2mhsm — administer oneM2M remote-provisioning keys in a PKCS#11 token.
 * Exit status: 0 success, 1 failure, 2 usage error. PINs only ever come from a file.
 */
#include "cli.h"
#include "../common/app.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: m2mhsm [--module PATH] [--token URI] [--pin-source file:PATH]\n"
    "              [--lock-file PATH] [--forms LIST] COMMAND ...\n"
    "\n"
    "  token-init --label LABEL --so-pin-source file:PATH   (lab/test tokens only)\n"
    "  kpm import --kpm-id ID (--key-file HEXFILE | --wrapped FILE --kek LABEL)\n"
    "             [--valid-until YYYYMMDDThhmmss]\n"
    "  kpm import --manifest FILE   (JSON Lines, one device a line: kpm_id, key_hex or\n"
    "             wrapped_b64 + kek, [valid_until], [enrolee_id target_id enrolment_expiry];\n"
    "             checked whole before any write; KpmIDs present are skipped)\n"
    "  enrolee configure --kpm-id ID --target-id ID --enrolee-id ID\n"
    "             --enrolment-expiry SECONDS|YYYYMMDDThhmmss\n"
    "  enrolee revoke --kpm-id ID [--erase-kpm]\n"
    "  ke import --kpm-id ID --mef-fqdn FQDN --exported-file HEXFILE\n"
    "             [--enrolee-id ID] [--target-id ID] [--enrolment-expiry SECONDS|TS]\n"
    "  derive (km --maf-id FQDN | kpsa --enrolee-b-id ID) --ke-id KEID [--valid-until TS]\n"
    "  list [--json]\n"
    "  erase (--enrolee ID | --key-id ID)\n"
    "  sweep\n"
    "  repair\n"
    "  caps [--json]   (mechanisms, and the self-test: can a key leave this token?)\n"
    "\n"
    "Defaults: --module $M2MHSM_MODULE or SoftHSM's (its C_Initialize init args, if it\n"
    "needs any: $M2MHSM_MODULE_INIT_ARGS); --token $M2MHSM_TOKEN;\n"
    "--pin-source $M2MHSM_PIN_SOURCE, else the URI's pin-source attribute;\n"
    "--lock-file $M2MHSM_LOCK_FILE: shared by every process using the token when its\n"
    "module is unsafe across processes (SoftHSM's file backend).\n"
    "--forms: the token objects of each Kpm, Km or Kpsa written, from tls12 (TLS and\n"
    "DTLS 1.2), tls13 (TLS 1.3) and raw (the key itself; nothing in m2mhsm needs it);\n"
    "default tls12,tls13. Each form is one object: HSMs cap the number of objects.\n";

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    fputs("m2mhsm: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see m2mhsm --help)\n", stderr);
    return EXIT_USAGE;
}

int cli_fail(const char *what, m2mhsm_status st)
{
    fprintf(stderr, "m2mhsm: %s: %s (%s)\n", what, m2mhsm_last_error(), m2mhsm_status_name(st));
    return EXIT_FAIL;
}

/* "tls12,tls13": the M2MHSM_FORMS_* bits of a comma-separated list; 0 if malformed. */
static unsigned parse_forms(const char *list)
{
    static const struct {
        const char *name, *stored; /* the option's word, and the form's name on the token */
        unsigned bit;
    } names[] = {{"raw", "raw", M2MHSM_FORMS_RAW},
                 {"tls12", "tls12-pms", M2MHSM_FORMS_TLS12},
                 {"tls13", "tls13-es", M2MHSM_FORMS_TLS13}};
    unsigned forms = 0;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ","), i = 0;
        while (i < 3 && !(strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0) &&
               !(strlen(names[i].stored) == n && strncmp(p, names[i].stored, n) == 0))
            i++;
        if (i == 3 || (forms & names[i].bit))
            return 0;
        forms |= names[i].bit;
        p += n + (p[n] == ',');
    }
    return forms;
}

static int open_store(cli_ctx *ctx, int read_only)
{
    if (ctx->token.token_uri == NULL) {
        fputs("m2mhsm: no token: give --token pkcs11:token=LABEL or set M2MHSM_TOKEN\n", stderr);
        return EXIT_USAGE;
    }
    m2mhsm_status st = m2mhsm_token_open(&ctx->token, &ctx->tok);
    if (st != M2MHSM_OK)
        return cli_fail("opening the token", st);
    m2mhsm_open_report rep = {0};
    m2mhsm_keystore_options opts = {.read_only = read_only, .psk_forms = ctx->psk_forms};
    st = m2mhsm_keystore_open(ctx->tok, &opts, &ctx->ks, &rep);
    ctx->report = rep;
    if (st != M2MHSM_OK) {
        m2mhsm_token_close(ctx->tok);
        ctx->tok = NULL;
        return cli_fail("opening the key store", st);
    }
    size_t damage = rep.orphan_keys + rep.incomplete + rep.superseded;
    if (damage > 0 && read_only)
        fprintf(stderr,
                "m2mhsm: warning: the store needs repair: %zu orphan key(s), %zu torn "
                "record(s), %zu superseded record(s), left in place (m2mhsm repair removes "
                "them)\n",
                rep.orphan_keys, rep.incomplete, rep.superseded);
    else if (damage > 0)
        fprintf(stderr,
                "m2mhsm: repaired the store: %zu orphan key(s), %zu torn record(s), %zu "
                "superseded record(s)\n",
                rep.orphan_keys, rep.incomplete, rep.superseded);
    if (rep.corrupt > 0)
        fprintf(stderr, "m2mhsm: warning: %zu metadata object(s) unreadable, left in place\n",
                rep.corrupt);
    return EXIT_OK;
}

int cli_open(cli_ctx *ctx)
{
    return open_store(ctx, 0);
}

int cli_open_read_only(cli_ctx *ctx)
{
    return open_store(ctx, 1);
}

void cli_close(cli_ctx *ctx)
{
    m2mhsm_keystore_close(ctx->ks);
    m2mhsm_token_close(ctx->tok);
    ctx->ks = NULL;
    ctx->tok = NULL;
}

static const struct {
    const char *name;
    int (*run)(int, char **, cli_ctx *);
} commands[] = {
    {"token-init", cmd_token_init}, {"kpm", cmd_kpm},
    {"enrolee", cmd_enrolee},       {"ke", cmd_ke},
    {"derive", cmd_derive},         {"list", cmd_list},
    {"erase", cmd_erase},           {"sweep", cmd_sweep},
    {"repair", cmd_repair},         {"caps", cmd_caps},
};

static void env_default(const char **slot, const char *var)
{
    const char *v = getenv(var);
    if (*slot == NULL && v != NULL && v[0] != '\0')
        *slot = v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"module", required_argument, NULL, 'm'},
        {"token", required_argument, NULL, 't'},
        {"pin-source", required_argument, NULL, 'p'},
        {"lock-file", required_argument, NULL, 'l'},
        {"forms", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* The CLI cannot know which protocol a key will serve: both TLS forms, no raw key. */
    cli_ctx ctx = {.psk_forms = M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13};
    int c;
    app_json_cleansing_alloc(); /* before any JSON: a manifest's strings hold keys */
    /* '+': stop at the first non-option, the command; it parses its own options. */
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            ctx.token.module_path = optarg;
            break;
        case 't':
            ctx.token.token_uri = optarg;
            break;
        case 'p':
            ctx.token.pin_source = optarg;
            break;
        case 'l':
            ctx.token.lock_file = optarg;
            break;
        case 'f':
            ctx.psk_forms = parse_forms(optarg);
            if ((ctx.psk_forms & (M2MHSM_FORMS_TLS12 | M2MHSM_FORMS_TLS13)) == 0)
                return cli_usage("--forms: a comma-separated list of tls12, tls13 and raw, "
                                 "with tls12 or tls13");
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        default:
            fputs(usage_text, stderr);
            return EXIT_USAGE;
        }
    }
    env_default(&ctx.token.token_uri, "M2MHSM_TOKEN");
    env_default(&ctx.token.pin_source, "M2MHSM_PIN_SOURCE");
    env_default(&ctx.token.lock_file, "M2MHSM_LOCK_FILE");
    if (optind >= argc)
        return cli_usage("no command given");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[optind], commands[i].name) != 0)
            continue;
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 1; /* restart getopt for the command's own options */
        return commands[i].run(sub_argc, sub_argv, &ctx);
    }
    return cli_usage("unknown command '%s'", argv[optind]);
}
