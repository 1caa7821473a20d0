/* Parsing the MEF's /fetchCredentials reply (reply.h). */
#include "reply.h"

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* base64 of exactly 32 bytes. */
static int decode_key(const char *b64, uint8_t key[M2MHSM_KEY_LEN])
{
    uint8_t buf[48];
    size_t len = strlen(b64);
    if (len != 44 || b64[43] != '=' || b64[42] == '=')
        return 0;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)len);
    int ok = n == 33;
    if (ok)
        memcpy(key, buf, M2MHSM_KEY_LEN);
    OPENSSL_cleanse(buf, sizeof(buf));
    return ok;
}

static int credential(maf_reply *r)
{
    const char *cred = NULL, *enrolee = NULL, *lifetime = NULL;
    int status = 0;
    if (json_unpack(r->body, "{s:b,s:s,s?s,s:s}", "status", &status, "credential", &cred,
                    "enroleeID", &enrolee, "lifetime", &lifetime) != 0 ||
        !status || m2mhsm_timestamp_parse(lifetime, &r->lifetime) != M2MHSM_OK ||
        !decode_key(cred, r->key))
        return 0;
    r->enrolee_id = enrolee != NULL && enrolee[0] ? enrolee : NULL;
    return 1;
}

maf_reply_kind maf_reply_parse(int code, const char *body, size_t len, maf_reply *out)
{
    memset(out, 0, sizeof(*out));
    out->code = code;
    if (len > 0 && len <= MAF_REPLY_MAX)
        out->body = json_loadb(body, len, 0, NULL);
    if (code == 200 && out->body != NULL)
        out->kind = credential(out) ? MAF_REPLY_KM : MAF_REPLY_MALFORMED;
    else
        out->kind = MAF_REPLY_REFUSED;
    if (out->kind == MAF_REPLY_REFUSED && out->body != NULL)
        json_unpack(out->body, "{s:s}", "errorString", &out->why);
    return out->kind;
}

void maf_reply_clear(maf_reply *r)
{
    OPENSSL_cleanse(r->key, sizeof(r->key));
    json_decref(r->body);
    r->body = NULL;
    r->enrolee_id = NULL;
    r->why = NULL;
}

int maf_reply_is_refusal(int code)
{
    return code == 403 || code == 404 || code == 410;
}
