/* The token object shared by src/p11/ files. */
#ifndef M2MHSM_P11_H
#define M2MHSM_P11_H

#include <pthread.h>
#include <sys/types.h>
#include <m2mhsm/token.h>

/* Set by CMake from where the build machine has SoftHSM; $M2MHSM_MODULE overrides it. */
#ifndef M2MHSM_DEFAULT_MODULE
#define M2MHSM_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

struct m2mhsm_token {
    CK_FUNCTION_LIST *fn;
    CK_SLOT_ID slot;
    char *module_path;
    char *token_uri;
    char *pin_source;
    m2mhsm_token_caps caps;

    int serialize_writes;
    /* If serialised: object writes exclusive, object reads shared (SoftHSMv2#573: creation
     * races with searches and attribute reads in the same process). */
    pthread_rwlock_t object_lock;
    pthread_mutex_t lock;         /* guards everything below */
    pid_t pid;                    /* process that initialised the module */
    unsigned generation;          /* bumped on re-initialisation after fork */
    CK_SESSION_HANDLE login_session; /* keeps the login alive while the pool is empty */
    CK_SESSION_HANDLE *idle;      /* pool of idle sessions */
    size_t idle_count, idle_cap;
};

/* Read the PIN from an RFC 7512 pin-source ("file:/path"). *pin is malloc'd; the caller
 * cleanses and frees it with m2mhsm_pin_free. */
m2mhsm_status m2mhsm_pin_read(const char *pin_source, const char *token_uri, char **pin,
                              size_t *pin_len);
void m2mhsm_pin_free(char *pin, size_t pin_len);

/* C_Initialize (through p11-kit), find the slot, probe, log in. Used at open and after
 * fork. Caller holds tok->lock or owns tok exclusively. */
m2mhsm_status m2mhsm_token_attach(m2mhsm_token *tok);

#endif
