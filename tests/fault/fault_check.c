/*
 * fault_check: what is on the token, read object by object with plain PKCS#11 calls and
 * without opening the key store (opening repairs, and a check must not change what it
 * checks). Token from M2MHSM_TOKEN / M2MHSM_PIN_SOURCE / M2MHSM_MODULE; run it with the real
 * module. Prints, sorted:
 *
 *   record KIND IDENTITY kpm=.. ke=.. enrolee=.. target=.. expiry=..   a complete record
 *   torn KIND IDENTITY                       metadata whose keys are not all there
 *   problem orphan-key LABEL                 a key of ours whose record has no metadata
 *   problem duplicate-record KIND IDENTITY   two complete records of one identity
 *   problem valid-ke-twice KPMID N           N > 1 complete Ke of one KpmID still valid
 *
 * With --mask-ke-id, KeIDs (a Ke's, Km's and Kpsa's identity, the ke= field) print as
 * "KEID", for operations whose KeID is random. Exit 0 if there is no problem line, 1 if
 * there is one, 2 if the token could not be read.
 */
#include "ks.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint8_t id[M2MHSM_RECORD_ID_LEN];
    int form;
    char label[M2MHSM_LABEL_MAX];
    int claimed;
} key_seen;

static int mask;

static int read_all(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                    CK_OBJECT_HANDLE **h, size_t *count)
{
    if (ks_find(tok, s, tmpl, n, h, count) == M2MHSM_OK)
        return 0;
    fprintf(stderr, "fault_check: %s\n", m2mhsm_last_error());
    return -1;
}

static int keys(m2mhsm_token *tok, CK_SESSION_HANDLE s, key_seen **out, size_t *count)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &t, sizeof(t)}};
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    if (read_all(tok, s, tmpl, 2, &h, &n) != 0)
        return -1;
    *out = calloc(n + 1, sizeof(**out));
    *count = 0;
    for (size_t i = 0; *out != NULL && i < n; i++) {
        key_seen *k = &(*out)[*count];
        size_t id_len = 0;
        m2mhsm_kind kind;
        if (ks_read_key_ids(tok, s, h[i], k->label, sizeof(k->label), k->id, &id_len) !=
            M2MHSM_OK) {
            fprintf(stderr, "fault_check: %s\n", m2mhsm_last_error());
            free(h);
            return -1;
        }
        if (strncmp(k->label, M2MHSM_LABEL_PREFIX, strlen(M2MHSM_LABEL_PREFIX)) != 0)
            continue; /* not ours: a KEK */
        if (!ks_label_parse(k->label, &kind, &k->form))
            k->form = -1;
        (*count)++;
    }
    free(h);
    return *out != NULL ? 0 : -1;
}

static int metas(m2mhsm_token *tok, CK_SESSION_HANDLE s, m2mhsm_record **out, size_t *count)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)M2MHSM_APPLICATION, strlen(M2MHSM_APPLICATION)},
    };
    CK_OBJECT_HANDLE *h = NULL;
    size_t n = 0;
    if (read_all(tok, s, tmpl, 3, &h, &n) != 0)
        return -1;
    *out = calloc(n + 1, sizeof(**out));
    *count = 0;
    for (size_t i = 0; *out != NULL && i < n; i++) {
        if (ks_read_meta(tok, s, h[i], &(*out)[*count]) != M2MHSM_OK) {
            fprintf(stderr, "fault_check: metadata: %s\n", m2mhsm_last_error());
            free(h);
            return -1;
        }
        (*count)++;
    }
    free(h);
    return *out != NULL ? 0 : -1;
}

static const char *keid(const char *id)
{
    return mask && id[0] != '\0' ? "KEID" : id;
}

static void print_record(FILE *out, const char *what, const m2mhsm_record *r)
{
    int by_ke =
        r->kind == M2MHSM_KIND_KE || r->kind == M2MHSM_KIND_KM || r->kind == M2MHSM_KIND_KPSA;
    char ts[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_timestamp_format(r->expiry, ts, sizeof(ts));
    fprintf(out, "%s %s %s kpm=%s ke=%s enrolee=%s target=%s expiry=%s\n", what,
            m2mhsm_kind_name(r->kind), by_ke ? keid(r->identity) : r->identity, r->kpm_id,
            keid(r->ke_id), r->enrolee_id, r->target_id, ts);
}

static int same_identity(const m2mhsm_record *a, const m2mhsm_record *b)
{
    return a->kind == b->kind && strcmp(a->identity, b->identity) == 0;
}

/* Attach keys to records by CKA_ID and print what is there and what is wrong. */
static int judge(m2mhsm_record *recs, size_t nr, key_seen *ks, size_t nk)
{
    int problems = 0;
    unsigned *have = calloc(nr + 1, sizeof(*have));
    for (size_t k = 0; have != NULL && k < nk; k++)
        for (size_t r = 0; r < nr; r++)
            if (memcmp(ks[k].id, recs[r].record_id, M2MHSM_RECORD_ID_LEN) == 0 && ks[k].form >= 0) {
                have[r] |= 1u << ks[k].form;
                ks[k].claimed = 1;
            }
    for (size_t k = 0; k < nk; k++)
        if (!ks[k].claimed) {
            printf("problem orphan-key %s\n", ks[k].label);
            problems++;
        }
    m2mhsm_time now = (m2mhsm_time)time(NULL);
    for (size_t r = 0; have != NULL && r < nr; r++) {
        int complete = (have[r] & ks_kind_forms(recs[r].kind)) == ks_kind_forms(recs[r].kind);
        print_record(stdout, complete ? "record" : "torn", &recs[r]);
        size_t twins = 0, valid_ke = 0;
        for (size_t o = 0; complete && o < nr; o++) {
            int o_complete = (have[o] & ks_kind_forms(recs[o].kind)) == ks_kind_forms(recs[o].kind);
            if (!o_complete)
                continue;
            twins += same_identity(&recs[r], &recs[o]);
            valid_ke += recs[r].kind == M2MHSM_KIND_KE && recs[o].kind == M2MHSM_KIND_KE &&
                        strcmp(recs[r].kpm_id, recs[o].kpm_id) == 0 &&
                        m2mhsm_expiry_is_valid(recs[o].expiry, now);
        }
        if (twins > 1) {
            printf("problem duplicate-record %s %s\n", m2mhsm_kind_name(recs[r].kind),
                   recs[r].identity);
            problems++;
        }
        if (valid_ke > 1 && m2mhsm_expiry_is_valid(recs[r].expiry, now)) {
            printf("problem valid-ke-twice %s %zu\n", recs[r].kpm_id, valid_ke);
            problems++;
        }
    }
    free(have);
    return have == NULL ? 2 : problems > 0;
}

int main(int argc, char **argv)
{
    mask = argc == 2 && strcmp(argv[1], "--mask-ke-id") == 0;
    m2mhsm_token_config cfg = {.token_uri = getenv("M2MHSM_TOKEN"),
                               .pin_source = getenv("M2MHSM_PIN_SOURCE")};
    m2mhsm_token *tok = NULL;
    CK_SESSION_HANDLE s;
    m2mhsm_status st = m2mhsm_token_open(&cfg, &tok);
    if (st == M2MHSM_OK)
        st = m2mhsm_token_session_get(tok, &s);
    if (st != M2MHSM_OK) {
        fprintf(stderr, "fault_check: %s\n", m2mhsm_last_error());
        m2mhsm_token_close(tok);
        return 2;
    }
    key_seen *ks = NULL;
    m2mhsm_record *recs = NULL;
    size_t nk = 0, nr = 0;
    int rc =
        keys(tok, s, &ks, &nk) == 0 && metas(tok, s, &recs, &nr) == 0 ? judge(recs, nr, ks, nk) : 2;
    m2mhsm_token_session_put(tok, s);
    free(ks);
    free(recs);
    m2mhsm_token_close(tok);
    return rc;
}
