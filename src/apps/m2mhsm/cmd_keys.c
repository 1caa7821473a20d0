/* Commands that put keys and configuration into the token. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>

typedef struct {
    const char *kpm_id, *key_file, *wrapped, *kek, *valid_until, *target_id, *enrolee_id, *expiry,
        *mef_fqdn, *exported, *ke_id, *maf_id, *enrolee_b_id, *label, *so_pin_source, *manifest;
    int json;
} cli_args;

enum {
    O_KPM_ID = 256,
    O_KEY_FILE,
    O_WRAPPED,
    O_KEK,
    O_VALID_UNTIL,
    O_TARGET_ID,
    O_ENROLEE_ID,
    O_EXPIRY,
    O_MEF_FQDN,
    O_EXPORTED,
    O_KE_ID,
    O_MAF_ID,
    O_ENROLEE_B_ID,
    O_LABEL,
    O_SO_PIN,
    O_MANIFEST
};

static const struct option all_opts[] = {
    {"kpm-id", required_argument, NULL, O_KPM_ID},
    {"key-file", required_argument, NULL, O_KEY_FILE},
    {"wrapped", required_argument, NULL, O_WRAPPED},
    {"kek", required_argument, NULL, O_KEK},
    {"valid-until", required_argument, NULL, O_VALID_UNTIL},
    {"target-id", required_argument, NULL, O_TARGET_ID},
    {"enrolee-id", required_argument, NULL, O_ENROLEE_ID},
    {"enrolment-expiry", required_argument, NULL, O_EXPIRY},
    {"mef-fqdn", required_argument, NULL, O_MEF_FQDN},
    {"exported-file", required_argument, NULL, O_EXPORTED},
    {"ke-id", required_argument, NULL, O_KE_ID},
    {"maf-id", required_argument, NULL, O_MAF_ID},
    {"enrolee-b-id", required_argument, NULL, O_ENROLEE_B_ID},
    {"label", required_argument, NULL, O_LABEL},
    {"so-pin-source", required_argument, NULL, O_SO_PIN},
    {"manifest", required_argument, NULL, O_MANIFEST},
    {NULL, 0, NULL, 0},
};

/* Parse the command's options; `allowed` lists the O_* values it takes (0-terminated). */
static int parse(int argc, char **argv, const int *allowed, cli_args *a)
{
    memset(a, 0, sizeof(*a));
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", all_opts, NULL)) != -1) {
        int ok = 0;
        for (const int *p = allowed; *p != 0; p++)
            ok |= *p == c;
        if (!ok)
            return cli_usage("%s does not take that option", argv[0]);
        const char **slot[] = {
            [O_KPM_ID - 256] = &a->kpm_id,
            [O_KEY_FILE - 256] = &a->key_file,
            [O_WRAPPED - 256] = &a->wrapped,
            [O_KEK - 256] = &a->kek,
            [O_VALID_UNTIL - 256] = &a->valid_until,
            [O_TARGET_ID - 256] = &a->target_id,
            [O_ENROLEE_ID - 256] = &a->enrolee_id,
            [O_EXPIRY - 256] = &a->expiry,
            [O_MEF_FQDN - 256] = &a->mef_fqdn,
            [O_EXPORTED - 256] = &a->exported,
            [O_KE_ID - 256] = &a->ke_id,
            [O_MAF_ID - 256] = &a->maf_id,
            [O_ENROLEE_B_ID - 256] = &a->enrolee_b_id,
            [O_LABEL - 256] = &a->label,
            [O_SO_PIN - 256] = &a->so_pin_source,
            [O_MANIFEST - 256] = &a->manifest,
        };
        *slot[c - 256] = optarg;
    }
    if (optind != argc)
        return cli_usage("unexpected argument '%s'", argv[optind]);
    return EXIT_OK;
}

static int need(const char *value, const char *option)
{
    return value != NULL ? EXIT_OK : cli_usage("%s is required", option);
}

static int parse_instant(const char *text, m2mhsm_time *out)
{
    *out = M2MHSM_NEVER;
    if (text == NULL)
        return EXIT_OK;
    if (m2mhsm_timestamp_parse(text, out) != M2MHSM_OK)
        return cli_usage("--valid-until: %s", m2mhsm_last_error());
    return EXIT_OK;
}

int cmd_token_init(int argc, char **argv, cli_ctx *ctx)
{
    static const int allowed[] = {O_LABEL, O_SO_PIN, 0};
    cli_args a;
    int rc = parse(argc, argv, allowed, &a);
    if (rc == EXIT_OK)
        rc = need(a.label, "--label");
    if (rc == EXIT_OK)
        rc = need(a.so_pin_source, "--so-pin-source");
    if (rc == EXIT_OK)
        rc = need(ctx->token.pin_source, "--pin-source");
    if (rc != EXIT_OK)
        return rc;
    m2mhsm_status st =
        m2mhsm_token_init(ctx->token.module_path, a.label, a.so_pin_source, ctx->token.pin_source);
    if (st != M2MHSM_OK)
        return cli_fail("token-init", st);
    printf("initialised token %s\n", a.label);
    return EXIT_OK;
}

static int kpm_import(cli_ctx *ctx, const cli_args *a, m2mhsm_time until)
{
    uint8_t buf[M2MHSM_PSK_MAX + 16];
    size_t len = 0;
    m2mhsm_status st;
    if (a->key_file != NULL) {
        st = cli_read_hex_key(a->key_file, buf, sizeof(buf), &len);
        if (st != M2MHSM_OK) {
            fprintf(stderr, "m2mhsm: --key-file %s: %s\n", a->key_file,
                    st == M2MHSM_E_IO ? "cannot read" : "not hex, or longer than 80 bytes");
            return EXIT_FAIL;
        }
        st = m2mhsm_keystore_import_kpm(ctx->ks, a->kpm_id, buf, len, until, NULL);
    } else {
        st = cli_read_binary(a->wrapped, buf, sizeof(buf), &len);
        if (st != M2MHSM_OK) {
            fprintf(stderr, "m2mhsm: --wrapped %s: %s\n", a->wrapped,
                    st == M2MHSM_E_IO ? "cannot read" : "longer than a wrapped Kpm can be");
            return EXIT_FAIL;
        }
        st = m2mhsm_keystore_unwrap_kpm(ctx->ks, a->kpm_id, buf, len, a->kek, until, NULL);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    if (st != M2MHSM_OK)
        return cli_fail("kpm import", st);
    printf("imported Kpm %s\n", a->kpm_id);
    return EXIT_OK;
}

int cmd_kpm(int argc, char **argv, cli_ctx *ctx)
{
    static const int allowed[] = {O_KPM_ID,      O_KEY_FILE, O_WRAPPED, O_KEK,
                                  O_VALID_UNTIL, O_MANIFEST, 0};
    if (argc < 2 || strcmp(argv[1], "import") != 0)
        return cli_usage("kpm: the subcommand is 'import'");
    cli_args a;
    m2mhsm_time until;
    int rc = parse(argc - 1, argv + 1, allowed, &a);
    if (rc == EXIT_OK && a.manifest != NULL) {
        /* Every device's fields are in the file: one source of truth per device. */
        if (a.kpm_id != NULL || a.key_file != NULL || a.wrapped != NULL || a.kek != NULL ||
            a.valid_until != NULL)
            return cli_usage("--manifest takes no other option: put the fields in the file");
        return cli_kpm_import_manifest(ctx, a.manifest);
    }
    if (rc == EXIT_OK)
        rc = need(a.kpm_id, "--kpm-id");
    if (rc == EXIT_OK && (a.key_file == NULL) == (a.wrapped == NULL))
        rc = cli_usage("give exactly one of --key-file and --wrapped");
    if (rc == EXIT_OK && a.wrapped != NULL)
        rc = need(a.kek, "--kek");
    if (rc == EXIT_OK && a.key_file != NULL && a.kek != NULL)
        rc = cli_usage("--kek goes with --wrapped");
    if (rc == EXIT_OK)
        rc = parse_instant(a.valid_until, &until);
    if (rc == EXIT_OK && (rc = cli_open(ctx)) == EXIT_OK) {
        rc = kpm_import(ctx, &a, until);
        cli_close(ctx);
    }
    return rc;
}

/* De-enrolment by an operator, as the MEF does for an Enrolee removed from its file: the
 * configuration and every key of the enrolment go. The Kpm stays unless asked for: it is
 * the device's factory credential, and keeping it lets the Enrolee be configured again
 * without re-provisioning the device. */
static int enrolee_revoke(int argc, char **argv, cli_ctx *ctx)
{
    static const struct option opts[] = {{"kpm-id", required_argument, NULL, 'k'},
                                         {"erase-kpm", no_argument, NULL, 'e'},
                                         {NULL, 0, NULL, 0}};
    const char *kpm_id = NULL;
    int erase_kpm = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'k')
            kpm_id = optarg;
        else if (c == 'e')
            erase_kpm = 1;
        else
            return cli_usage("enrolee revoke takes --kpm-id ID [--erase-kpm]");
    }
    if (optind != argc || kpm_id == NULL)
        return cli_usage("enrolee revoke takes --kpm-id ID [--erase-kpm]");
    int rc = cli_open(ctx);
    if (rc != EXIT_OK)
        return rc;
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_revoke_enrolee(ctx->ks, kpm_id, erase_kpm, &n);
    cli_close(ctx);
    if (st != M2MHSM_OK)
        return cli_fail("enrolee revoke", st);
    printf("revoked %s: erased %zu record(s)%s\n", kpm_id, n, erase_kpm ? " with its Kpm" : "");
    return EXIT_OK;
}

int cmd_enrolee(int argc, char **argv, cli_ctx *ctx)
{
    static const int allowed[] = {O_KPM_ID, O_TARGET_ID, O_ENROLEE_ID, O_EXPIRY, 0};
    if (argc >= 2 && strcmp(argv[1], "revoke") == 0)
        return enrolee_revoke(argc - 1, argv + 1, ctx);
    if (argc < 2 || strcmp(argv[1], "configure") != 0)
        return cli_usage("enrolee: the subcommand is 'configure' or 'revoke'");
    cli_args a;
    m2mhsm_expiry_spec spec;
    int rc = parse(argc - 1, argv + 1, allowed, &a);
    if (rc == EXIT_OK)
        rc = need(a.kpm_id, "--kpm-id");
    if (rc == EXIT_OK)
        rc = need(a.target_id, "--target-id");
    if (rc == EXIT_OK)
        rc = need(a.enrolee_id, "--enrolee-id");
    if (rc == EXIT_OK)
        rc = need(a.expiry, "--enrolment-expiry");
    if (rc == EXIT_OK && m2mhsm_expiry_spec_parse(a.expiry, &spec) != M2MHSM_OK)
        rc = cli_usage("--enrolment-expiry: %s", m2mhsm_last_error());
    if (rc != EXIT_OK || (rc = cli_open(ctx)) != EXIT_OK)
        return rc;
    m2mhsm_status st =
        m2mhsm_keystore_configure_enrolee(ctx->ks, a.kpm_id, a.target_id, a.enrolee_id, &spec);
    cli_close(ctx);
    if (st != M2MHSM_OK)
        return cli_fail("enrolee configure", st);
    printf("configured enrolment of %s for %s\n", a.kpm_id, a.target_id);
    return EXIT_OK;
}

/* A Ke from exporter output computed elsewhere (openssl s_client -keymatexport): for labs
 * and interoperability tests; the services export straight into the token. */
static int ke_import(cli_ctx *ctx, const cli_args *a, const m2mhsm_expiry_spec *spec)
{
    uint8_t exported[M2MHSM_EXPORT_LEN + 1];
    size_t len = 0;
    m2mhsm_status st = cli_read_hex_key(a->exported, exported, sizeof(exported), &len);
    if (st != M2MHSM_OK || len != M2MHSM_EXPORT_LEN) {
        OPENSSL_cleanse(exported, sizeof(exported));
        fprintf(stderr, "m2mhsm: --exported-file %s: need 48 bytes of hex\n", a->exported);
        return EXIT_FAIL;
    }
    m2mhsm_enrolment e = {a->kpm_id, a->mef_fqdn, a->enrolee_id, a->target_id, *spec};
    m2mhsm_record ke;
    st = m2mhsm_keystore_store_ke(ctx->ks, &e, exported, &ke);
    OPENSSL_cleanse(exported, sizeof(exported));
    if (st != M2MHSM_OK)
        return cli_fail("ke import", st);
    char ts[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_timestamp_format(ke.expiry, ts, sizeof(ts));
    printf("stored Ke %s (expires %s)\n", ke.identity, ts);
    return EXIT_OK;
}

/* The Enrolment Expiry of a Ke: given, or from this token's configuration of the KpmID. */
static int ke_expiry(cli_ctx *ctx, cli_args *a, m2mhsm_expiry_spec *spec, m2mhsm_record *cfg)
{
    if (a->expiry != NULL) {
        if (m2mhsm_expiry_spec_parse(a->expiry, spec) != M2MHSM_OK)
            return cli_usage("--enrolment-expiry: %s", m2mhsm_last_error());
        return EXIT_OK;
    }
    if (m2mhsm_keystore_lookup(ctx->ks, M2MHSM_KIND_ENROLMENT, a->kpm_id, strlen(a->kpm_id), cfg) !=
        M2MHSM_OK) {
        fprintf(stderr, "m2mhsm: ke import: no --enrolment-expiry and %s is not configured\n",
                a->kpm_id);
        return EXIT_FAIL;
    }
    *spec = cfg->enrolment_expiry;
    if (a->enrolee_id == NULL)
        a->enrolee_id = cfg->enrolee_id;
    if (a->target_id == NULL)
        a->target_id = cfg->target_id;
    return EXIT_OK;
}

int cmd_ke(int argc, char **argv, cli_ctx *ctx)
{
    static const int allowed[] = {O_KPM_ID,    O_MEF_FQDN, O_EXPORTED, O_ENROLEE_ID,
                                  O_TARGET_ID, O_EXPIRY,   0};
    if (argc < 2 || strcmp(argv[1], "import") != 0)
        return cli_usage("ke: the subcommand is 'import'");
    cli_args a;
    int rc = parse(argc - 1, argv + 1, allowed, &a);
    if (rc == EXIT_OK)
        rc = need(a.kpm_id, "--kpm-id");
    if (rc == EXIT_OK)
        rc = need(a.mef_fqdn, "--mef-fqdn");
    if (rc == EXIT_OK)
        rc = need(a.exported, "--exported-file");
    if (rc != EXIT_OK || (rc = cli_open(ctx)) != EXIT_OK)
        return rc;
    m2mhsm_expiry_spec spec;
    m2mhsm_record cfg;
    rc = ke_expiry(ctx, &a, &spec, &cfg);
    if (rc == EXIT_OK)
        rc = ke_import(ctx, &a, &spec);
    cli_close(ctx);
    return rc;
}

int cmd_derive(int argc, char **argv, cli_ctx *ctx)
{
    static const int allowed[] = {O_KE_ID, O_MAF_ID, O_ENROLEE_B_ID, O_VALID_UNTIL, 0};
    if (argc < 2 || (strcmp(argv[1], "km") != 0 && strcmp(argv[1], "kpsa") != 0))
        return cli_usage("derive: say 'km' or 'kpsa'");
    int km = strcmp(argv[1], "km") == 0;
    cli_args a;
    m2mhsm_time until;
    int rc = parse(argc - 1, argv + 1, allowed, &a);
    const char *target = km ? a.maf_id : a.enrolee_b_id;
    if (rc == EXIT_OK)
        rc = need(a.ke_id, "--ke-id");
    if (rc == EXIT_OK)
        rc = need(target, km ? "--maf-id" : "--enrolee-b-id");
    if (rc == EXIT_OK)
        rc = parse_instant(a.valid_until, &until);
    if (rc != EXIT_OK || (rc = cli_open(ctx)) != EXIT_OK)
        return rc;
    m2mhsm_record ke, out;
    m2mhsm_status st =
        m2mhsm_keystore_lookup(ctx->ks, M2MHSM_KIND_KE, a.ke_id, strlen(a.ke_id), &ke);
    if (st == M2MHSM_OK)
        st = m2mhsm_keystore_derive_store(ctx->ks, &ke, km ? M2MHSM_DERIVE_KM : M2MHSM_DERIVE_KPSA,
                                          target, until, &out);
    cli_close(ctx);
    if (st != M2MHSM_OK)
        return cli_fail(km ? "derive km" : "derive kpsa", st);
    char ts[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_timestamp_format(out.expiry, ts, sizeof(ts));
    printf("stored %s %s for %s (expires %s; %s)\n", km ? "Km" : "Kpsa", out.identity, target, ts,
           out.derived_in_token ? "derived in the token" : "derived by C_Sign through host memory");
    return EXIT_OK;
}
