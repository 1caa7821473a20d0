/* m2m:timestamp and the Enrolment Expiry setting (src/expiry.c): whatever parses formats
 * back to the same instant. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>
#include <m2mhsm/expiry.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    char buf[M2MHSM_TIMESTAMP_LEN], small[8];
    m2mhsm_time t, back;
    if (m2mhsm_timestamp_parse(s, &t) == M2MHSM_OK) {
        /* The fraction is dropped: the first 15 characters are the instant. */
        if (m2mhsm_timestamp_format(t, buf, sizeof(buf)) != M2MHSM_OK || strncmp(buf, s, 15) != 0)
            fuzz_fail("a parsed timestamp does not format back to itself");
        if (m2mhsm_timestamp_parse(buf, &back) != M2MHSM_OK || back != t)
            fuzz_fail("a formatted timestamp does not parse to the same instant");
        if (m2mhsm_timestamp_format(t, small, sizeof(small)) == M2MHSM_OK)
            fuzz_fail("timestamp_format wrote past a short buffer");
    }
    m2mhsm_expiry_spec spec;
    if (m2mhsm_expiry_spec_parse(s, &spec) == M2MHSM_OK) {
        char text[32];
        m2mhsm_expiry_spec again;
        if (spec.kind == M2MHSM_EXPIRY_DURATION &&
            (spec.value < 1 || spec.value > M2MHSM_MAX_DURATION))
            fuzz_fail("a duration out of range was accepted");
        if (m2mhsm_expiry_spec_format(&spec, text, sizeof(text)) != M2MHSM_OK ||
            m2mhsm_expiry_spec_parse(text, &again) != M2MHSM_OK || again.kind != spec.kind ||
            again.value != spec.value)
            fuzz_fail("an Enrolment Expiry does not survive format and parse");
        m2mhsm_time resolved;
        m2mhsm_expiry_resolve(&spec, 1795000000, &resolved);
    }
    free(s);
    return 0;
}
