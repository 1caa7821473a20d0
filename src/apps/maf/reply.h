/* The MEF's answer to GET /fetchCredentials/<KeID>/21 (TS-0003 8.3.2.1), parsed apart from
 * the HTTP connection it came on, so that every reply a MEF (or whoever answers in its
 * place) can send is tested on its own (tests/fuzz/fuzz_maf_reply.c). */
#ifndef M2M_MAF_REPLY_H
#define M2M_MAF_REPLY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <m2mhsm/derive.h>
#include <m2mhsm/expiry.h>

/* A reply is ~150 bytes of JSON; a longer body is not read at all. */
#define MAF_REPLY_MAX 4096

typedef enum {
    MAF_REPLY_KM,        /* 200 with a well-formed credential: key, lifetime, enrolee_id */
    MAF_REPLY_MALFORMED, /* 200 with a JSON body that is not a credential */
    MAF_REPLY_REFUSED    /* anything else: no answer, an error status, or a body that is not
                            JSON; why holds the MEF's errorString if it gave one */
} maf_reply_kind;

typedef struct {
    maf_reply_kind kind;
    int code;
    json_t *body; /* the parsed body (NULL if none); the strings below point in it */
    uint8_t key[M2MHSM_KEY_LEN];
    m2mhsm_time lifetime;
    const char *enrolee_id; /* NULL when absent or empty */
    const char *why;        /* errorString, or NULL */
} maf_reply;

/* Classify the reply to a request: code is the HTTP status (0 when the MEF was unreachable or
 * TLS failed), body[0..len) the body. Pure; call maf_reply_clear afterwards. */
maf_reply_kind maf_reply_parse(int code, const char *body, size_t len, maf_reply *out);
/* Wipe the key and free the body. */
void maf_reply_clear(maf_reply *r);
/* The MEF said no for good (unknown, expired, not ours): not worth asking again soon. */
int maf_reply_is_refusal(int code);

#endif
