/* A throwaway NSS softokn database (PKCS#11 3.0, with CKM_HKDF_DERIVE and the copy-then-wrap
 * leak) for the suites that need a second module beside SoftHSM. */
#ifndef M2MHSM_TEST_SOFTOKN_H
#define M2MHSM_TEST_SOFTOKN_H

#include "p11/handles.h"

#define SOFTOKN_MODULE "/usr/lib/x86_64-linux-gnu/libsoftokn3.so"
#define SOFTOKN_URI "pkcs11:token=NSS%20Certificate%20DB"

typedef struct {
    char dir[480];
    char pin_source[600];
    char init_args[800]; /* CK_C_INITIALIZE_ARGS.pReserved naming the database */
} softokn_db;

/* Make a database under FIXTURE_ROOT with certutil -N (a user PIN, from a 0600 file). */
void softokn_db_make(softokn_db *db, const char *suite);
/* Open it (fails the test on error). */
m2mhsm_token *softokn_open(const softokn_db *db);

#endif
