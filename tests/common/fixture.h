/* Throwaway tokens for the token suites, made under the build directory: SoftHSM tokens made
 * in-process, or, when $M2MHSM_TOKEN_KIND names another kind (softhsm-remote, opencryptoki,
 * softokn: hsm-config/kinds/), tokens of that kind from `hsm-config/lab.sh tokens`. */
#ifndef M2MHSM_TEST_FIXTURE_H
#define M2MHSM_TEST_FIXTURE_H

#include <m2mhsm/keystore.h>
#include "keystore/record.h"
#include "p11/handles.h"

typedef struct {
    char dir[512];        /* the token directory */
    char uri[128];        /* pkcs11:token=<label> */
    char pin_source[600]; /* file:<dir>/user.pin */
    char label[33];
    char lock_file[600];  /* shared by every process of the test: SoftHSM needs it */
    char module[256];     /* the kind's module ($M2MHSM_MODULE, or under m2mfault) */
    char init_args[4096]; /* C_Initialize's init args for this token, or "" */
} fixture_token;

/* Once per test binary. softhsm (no $M2MHSM_TOKEN_KIND): point SOFTHSM2_CONF at a fresh
 * directory. Another kind: choose the directory of its tokens, released at exit. */
void fixture_softhsm_setup(const char *suite);
/* Make and initialise a token labelled `label` (unique within the process). On another kind
 * it also sets, for this process and its children, what reaching the token takes:
 * M2MHSM_MODULE (or M2M_FAULT_MODULE, where the test runs the module under tests/fault's
 * m2mfault), M2MHSM_MODULE_INIT_ARGS and P11_KIT_SERVER_ADDRESS; so a config a suite builds
 * itself reaches it too. */
void fixture_token_make(fixture_token *t, const char *label);
/* Open token + keystore on it with a clock the test controls. */
typedef struct {
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_time now;
    unsigned psk_forms; /* m2mhsm_keystore_options.psk_forms; set before opening */
} fixture_store;
void fixture_store_open(fixture_store *fs, const fixture_token *t);
/* The token kind of this process ("softhsm" by default). */
const char *fixture_kind(void);
void fixture_store_close(fixture_store *fs);
m2mhsm_time fixture_clock(void *arg);

/* Store a Ke as enrolment would: RelativeKeID = `tag` x16, Ke = 00 01 .. 1f, MEF
 * mef.example.com, target maf.example.com, Enrolment Expiry `seconds`. */
m2mhsm_record fixture_enrol(fixture_store *fs, const char *kpm_id, const char *enrolee, uint8_t tag,
                            int64_t seconds);

/* A fixed 32-byte key 00 01 .. 1f. */
extern const uint8_t fixture_key32[32];

#endif
