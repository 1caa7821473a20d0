/* caps: what the token offers, and whether it keeps keys in (the self-test). */
#include "cli.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t offset;
} mechanisms[] = {
    {"CKM_SHA256_HMAC", offsetof(m2mhsm_token_caps, sha256_hmac)},
    {"CKM_AES_KEY_WRAP", offsetof(m2mhsm_token_caps, aes_key_wrap)},
    {"CKM_AES_KEY_WRAP_KWP", offsetof(m2mhsm_token_caps, aes_key_wrap_kwp)},
    {"CKM_AES_KEY_WRAP_PAD", offsetof(m2mhsm_token_caps, aes_key_wrap_pad)},
    {"CKM_HKDF_DERIVE", offsetof(m2mhsm_token_caps, hkdf_derive)},
    {"CKM_SP800_108_FEEDBACK_KDF", offsetof(m2mhsm_token_caps, sp800_108_feedback)},
};

static int has(const m2mhsm_token_caps *c, size_t i)
{
    return *(const int *)((const char *)c + mechanisms[i].offset);
}

static json_t *probe_json(const m2mhsm_probe_result *p)
{
    json_t *o = json_pack("{s:s, s:s}", "outcome", m2mhsm_probe_outcome_name(p->outcome), "ckr",
                          m2mhsm_ckr_name(p->rv));
    if (o != NULL && p->mech != 0)
        json_object_set_new(o, "mechanism", json_string(m2mhsm_ckm_name(p->mech)));
    if (o != NULL && p->outcome == M2MHSM_OUTCOME_LEAKED)
        json_object_set_new(o, "recovered", json_boolean(p->recovered));
    return o;
}

static int print_json(const m2mhsm_token_caps *c, const m2mhsm_selftest_report *r)
{
    json_t *mech = json_object(), *probes = json_object();
    for (size_t i = 0; mech != NULL && i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++)
        json_object_set_new(mech, mechanisms[i].name, json_boolean(has(c, i)));
    for (int i = 0; probes != NULL && i < M2MHSM_PROBE_COUNT; i++)
        json_object_set_new(probes, m2mhsm_probe_name((m2mhsm_probe)i), probe_json(&r->probe[i]));
    /* Probed with session objects at open; a stored write may still correct them
     * (docs/tokens.md). */
    json_t *tmpl = json_pack("{s:b, s:b}", "CKA_COPYABLE", c->copyable_attr, "private_CKO_DATA",
                             c->private_data_objects);
    json_t *doc = json_pack("{s:o, s:o, s:o, s:b, s:b, s:s, s:b}", "mechanisms", mech, "templates",
                            tmpl, "probes", probes, "non_extractable_enforced",
                            r->non_extractable_enforced, "derive_in_token", r->derive_in_token,
                            "derive_detail", r->derive_detail, "probe_on_token", r->probe_on_token);
    if (doc == NULL || json_dumpf(doc, stdout, JSON_INDENT(2)) != 0) {
        json_decref(doc);
        fputs("m2mhsm: caps: out of memory\n", stderr);
        return EXIT_FAIL;
    }
    fputc('\n', stdout);
    json_decref(doc);
    return EXIT_OK;
}

static void print_text(const m2mhsm_token_caps *c, const m2mhsm_selftest_report *r)
{
    for (size_t i = 0; i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++)
        printf("%-28s %s\n", mechanisms[i].name, has(c, i) ? "yes" : "no");
    /* Probed with session objects at open; a stored write may still correct them. */
    printf("%-28s %s\n", "CKA_COPYABLE on secret keys", c->copyable_attr ? "yes" : "no");
    printf("%-28s %s\n", "private CKO_DATA objects", c->private_data_objects ? "yes" : "no");
    printf("self-test (probe keys as %s objects):\n", r->probe_on_token ? "token" : "session");
    for (int i = 0; i < M2MHSM_PROBE_COUNT; i++) {
        const m2mhsm_probe_result *p = &r->probe[i];
        printf("  %-20s %-11s %s%s%s\n", m2mhsm_probe_name((m2mhsm_probe)i),
               m2mhsm_probe_outcome_name(p->outcome), m2mhsm_ckr_name(p->rv),
               p->mech != 0 ? " " : "", p->mech != 0 ? m2mhsm_ckm_name(p->mech) : "");
    }
    printf("non_extractable_enforced     %s\n", r->non_extractable_enforced ? "yes" : "NO");
    printf("derive_in_token              %s%s%s\n", r->derive_in_token ? "yes" : "no",
           r->derive_detail[0] ? ": " : "", r->derive_detail);
}

int cmd_caps(int argc, char **argv, cli_ctx *ctx)
{
    int json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc != 1 && !json)
        return cli_usage("caps takes only --json");
    int rc = cli_open_read_only(ctx);
    if (rc != EXIT_OK)
        return rc;
    m2mhsm_selftest_report r;
    m2mhsm_status st = m2mhsm_token_selftest(ctx->tok, &r);
    if (st != M2MHSM_OK)
        rc = cli_fail("caps: self-test", st);
    else if (json)
        rc = print_json(m2mhsm_token_caps_get(ctx->tok), &r);
    else
        print_text(m2mhsm_token_caps_get(ctx->tok), &r);
    cli_close(ctx);
    return rc;
}
