/* The MAF's view of a /fetchCredentials reply (src/apps/maf/reply.c): HTTP status, JSON
 * body, lifetime, base64 Km. Input: two bytes of status, then the body. */
#include "fuzz.h"

#include <string.h>
#include "apps/maf/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int code = (data[0] << 8 | data[1]) % 600;
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    maf_reply r;
    maf_reply_kind kind = maf_reply_parse(code, body, len, &r);
    if (r.code != code)
        fuzz_fail("the reply lost its status");
    if (kind == MAF_REPLY_KM) {
        char ts[M2MHSM_TIMESTAMP_LEN];
        m2mhsm_time back;
        if (code != 200 || r.body == NULL ||
            m2mhsm_timestamp_format(r.lifetime, ts, sizeof(ts)) != M2MHSM_OK ||
            m2mhsm_timestamp_parse(ts, &back) != M2MHSM_OK || back != r.lifetime)
            fuzz_fail("a credential without a 200, a body or a valid lifetime");
        if (r.enrolee_id != NULL && r.enrolee_id[0] == '\0')
            fuzz_fail("an empty enroleeID passed on");
    } else if (kind == MAF_REPLY_MALFORMED) {
        if (code != 200 || r.body == NULL)
            fuzz_fail("malformed reply without a 200 and a body");
    } else if (code == 200 && r.body != NULL) {
        fuzz_fail("a 200 with a JSON body classified as a refusal");
    }
    if (r.why != NULL)
        (void)strlen(r.why);
    maf_reply_clear(&r);
    for (size_t i = 0; i < sizeof(r.key); i++)
        if (r.key[i] != 0)
            fuzz_fail("maf_reply_clear left key bytes");
    (void)maf_reply_is_refusal(code);
    return 0;
}
