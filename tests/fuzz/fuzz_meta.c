/* Record metadata from the token (src/keystore/meta.c): CKA_VALUE text decoded, damaged text
 * salvaged for its record id, CKA_LABEL parsed. Whoever holds the PIN writes these. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>
#include "keystore/ks.h"

static void same_record(const m2mhsm_record *a, const m2mhsm_record *b)
{
    if (a->kind != b->kind || strcmp(a->identity, b->identity) != 0 ||
        strcmp(a->kpm_id, b->kpm_id) != 0 || strcmp(a->ke_id, b->ke_id) != 0 ||
        strcmp(a->enrolee_id, b->enrolee_id) != 0 || strcmp(a->target_id, b->target_id) != 0 ||
        a->enrolment_expiry.kind != b->enrolment_expiry.kind ||
        a->enrolment_expiry.value != b->enrolment_expiry.value || a->created != b->created ||
        a->expiry != b->expiry || memcmp(a->record_id, b->record_id, M2MHSM_RECORD_ID_LEN) != 0)
        fuzz_fail("decoded metadata does not survive encode and decode");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    m2mhsm_record rec, back;
    uint8_t id[M2MHSM_RECORD_ID_LEN];
    if (ks_meta_decode((const char *)data, size, &rec) == M2MHSM_OK) {
        char buf[M2MHSM_META_MAX];
        size_t len = 0;
        if (ks_meta_encode(&rec, buf, &len) != M2MHSM_OK ||
            ks_meta_decode(buf, len, &back) != M2MHSM_OK)
            fuzz_fail("decoded metadata does not encode and decode again");
        same_record(&rec, &back);
        if (!ks_meta_salvage_id((const char *)data, size, id) ||
            memcmp(id, rec.record_id, M2MHSM_RECORD_ID_LEN) != 0)
            fuzz_fail("salvage misses the record id of metadata that decodes");
    }
    ks_meta_salvage_id((const char *)data, size, id);

    char *label = fuzz_cstr(data, size);
    m2mhsm_kind kind;
    int form;
    if (ks_label_parse(label, &kind, &form)) {
        if (form < 0 || form >= M2MHSM_FORM_COUNT || ks_label_form(label) != form)
            fuzz_fail("a parsed label names no form");
    }
    ks_label_form(label);
    free(label);
    return 0;
}
