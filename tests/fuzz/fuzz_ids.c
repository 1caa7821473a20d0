/* The identifier grammars (src/ids.c): every type checked on the raw bytes, and the
 * canonical spelling checked against what the grammar promises of it. */
#include "fuzz.h"

#include <string.h>
#include <m2mhsm/ids.h>

static const m2mhsm_id_type types[] = {M2MHSM_ID_KPM,     M2MHSM_ID_FQDN,   M2MHSM_ID_M2M,
                                       M2MHSM_ID_M2M_ABS, M2MHSM_ID_TARGET, M2MHSM_ID_KE};

static void one(m2mhsm_id_type type, const char *s, size_t len)
{
    char out[M2MHSM_ID_MAX + 2], again[M2MHSM_ID_MAX + 2];
    m2mhsm_status st = m2mhsm_id_check(type, s, len);
    m2mhsm_status canon = m2mhsm_id_canonical(type, s, len, out, sizeof(out));
    if (canon != st)
        fuzz_fail("id_canonical and id_check disagree");
    if (st != M2MHSM_OK)
        return;
    if (strlen(out) != len || memchr(s, '\0', len) != NULL)
        fuzz_fail("an accepted identifier has a NUL or changed length");
    /* Only a KeID's hex changes case; everything else is given back as it came. */
    size_t same_from = type == M2MHSM_ID_KE ? 2 * M2MHSM_RELATIVE_KE_ID_LEN : 0;
    if (memcmp(out + same_from, s + same_from, len - same_from) != 0)
        fuzz_fail("canonical spelling changed more than the KeID's hex");
    if (m2mhsm_id_check_str(type, out) != M2MHSM_OK ||
        m2mhsm_id_canonical(type, out, len, again, sizeof(again)) != M2MHSM_OK ||
        strcmp(out, again) != 0)
        fuzz_fail("the canonical spelling is not canonical");
    /* A buffer one byte short is refused, not overrun. */
    if (m2mhsm_id_canonical(type, s, len, again, len) == M2MHSM_OK)
        fuzz_fail("id_canonical accepted a buffer without room for the NUL");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The exact length (not NUL-terminated): what a peer's bytes look like. */
    const char *s = (const char *)data;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        one(types[i], size > 0 ? s : NULL, size);
    return 0;
}
