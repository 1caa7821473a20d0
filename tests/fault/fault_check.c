/*
 * fault_check: what is on the token, read object by object with plain PKCS#11 calls, then
 * what a read-only store serves of it (a check must not repair what it checks). Token from
 * M2MHSM_TOKEN / M2MHSM_PIN_SOURCE / M2MHSM_MODULE; run it with the real module. Prints, sorted:
 *
 *   record KIND IDENTITY kpm=.. ke=.. enrolee=.. target=.. expiry=..   a complete record,
 *                                            the newest of its identity
 *   hidden KIND IDENTITY kpm=.. ...          a complete record older than another of its
 *                                            identity (a replacement cut short by a crash):
 *                                            left for the next writer's open, sweep or
 *                                            replacement, never to be served
 *   torn KIND IDENTITY                       metadata whose keys are not all there
 *   problem orphan-key LABEL                 a key of ours whose record has no metadata
 *   problem older-twin-served KIND IDENTITY  the store finds the older of two complete
 *                                            records of one identity
 *   problem valid-ke-twice KPMID KEID        a complete, unexpired Ke older than its
 *                                            KpmID's newest that the store still finds
 *
 * Exit 0 if there is no problem line, 1 if there is one, 2 if the token could not be read.
 */
#include "ks.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint8_t id[KS_KEY_ID_MAX];
    int form;
    char label[M2MHSM_LABEL_MAX];
    int claimed;
} key_seen;

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

static void print_record(FILE *out, const char *what, const m2mhsm_record *r)
{
    char ts[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_timestamp_format(r->expiry, ts, sizeof(ts));
    fprintf(out, "%s %s %s kpm=%s ke=%s enrolee=%s target=%s expiry=%s\n", what,
            m2mhsm_kind_name(r->kind), r->identity, r->kpm_id, r->ke_id, r->enrolee_id,
            r->target_id, ts);
}

static int same_identity(const m2mhsm_record *a, const m2mhsm_record *b)
{
    return a->kind == b->kind && strcmp(a->identity, b->identity) == 0;
}

/* An older Ke of a KpmID, or an older record of an identity (a crash between writing the
 * new one and erasing the old), may stay on the token, but the store must never find it:
 * only the newest is current. */
static int served(m2mhsm_keystore *ks, const m2mhsm_record *old)
{
    m2mhsm_record found;
    return ks != NULL &&
           m2mhsm_keystore_lookup(ks, old->kind, old->identity, strlen(old->identity), &found) ==
               M2MHSM_OK &&
           memcmp(found.record_id, old->record_id, M2MHSM_RECORD_ID_LEN) == 0;
}

/* Every form the record's metadata names (its writer's choice, or all of its kind's). */
static int complete(const m2mhsm_record *r, unsigned have)
{
    return (have & ks_record_forms(r)) == ks_record_forms(r);
}

/* Attach keys to records by CKA_ID and print what is there and what is wrong. */
static int judge(m2mhsm_keystore *store, m2mhsm_record *recs, size_t nr, key_seen *ks, size_t nk)
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
        size_t newer_twin = 0, newer_ke = 0;
        for (size_t o = 0; complete(&recs[r], have[r]) && o < nr; o++) {
            if (!complete(&recs[o], have[o]) || !ks_record_newer(&recs[o], &recs[r]))
                continue;
            newer_twin += same_identity(&recs[r], &recs[o]);
            newer_ke += recs[r].kind == M2MHSM_KIND_KE && recs[o].kind == M2MHSM_KIND_KE &&
                        strcmp(recs[r].kpm_id, recs[o].kpm_id) == 0;
        }
        print_record(stdout,
                     !complete(&recs[r], have[r]) ? "torn"
                     : newer_twin > 0             ? "hidden"
                                                  : "record",
                     &recs[r]);
        if (newer_twin > 0 && served(store, &recs[r])) {
            printf("problem older-twin-served %s %s\n", m2mhsm_kind_name(recs[r].kind),
                   recs[r].identity);
            problems++;
        }
        if (newer_ke > 0 && m2mhsm_expiry_is_valid(recs[r].expiry, now) &&
            served(store, &recs[r])) {
            printf("problem valid-ke-twice %s %s\n", recs[r].kpm_id, recs[r].identity);
            problems++;
        }
    }
    free(have);
    return have == NULL ? 2 : problems > 0;
}

int main(void)
{
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
    int rc = keys(tok, s, &ks, &nk) == 0 && metas(tok, s, &recs, &nr) == 0 ? 0 : 2;
    m2mhsm_token_session_put(tok, s);
    /* Read-only: opening must not repair what this check is to see. */
    m2mhsm_keystore_options opts = {.read_only = 1};
    m2mhsm_keystore *store = NULL;
    if (rc == 0 && m2mhsm_keystore_open(tok, &opts, &store, NULL) != M2MHSM_OK) {
        fprintf(stderr, "fault_check: opening the store read-only: %s\n", m2mhsm_last_error());
        rc = 2;
    }
    if (rc == 0)
        rc = judge(store, recs, nr, ks, nk);
    m2mhsm_keystore_close(store);
    free(ks);
    free(recs);
    m2mhsm_token_close(tok);
    return rc;
}
