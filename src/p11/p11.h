/* The token object shared by src/p11/ files. */
#ifndef M2MHSM_P11_H
#define M2MHSM_P11_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <m2mhsm/token.h>
#include "handles.h"

/*
 * Object writes (create, destroy, unwrap) exclusive against object reads (find, attribute
 * read, sign): within the process by a rwlock, across processes by flock() on an optional
 * lock file. SoftHSM 2.6.1 needs both: a creation racing a search in the same process fails
 * (softhsm/SoftHSMv2#573), and one racing another process's enumeration can lose the new
 * object's attributes (tests/token/test_open.c, test_repair_never_destroys_...).
 */
typedef struct {
    int enabled;
    pthread_rwlock_t rw;
    char *path; /* lock file shared by the processes using the token, or NULL */
    int fd;
    pthread_mutex_t count_lock; /* guards readers: the first takes LOCK_SH, the last drops it */
    unsigned readers;
} m2mhsm_objlock;

m2mhsm_status m2mhsm_objlock_init(m2mhsm_objlock *l, int enabled, const char *path);
m2mhsm_status m2mhsm_objlock_after_fork(m2mhsm_objlock *l);
void m2mhsm_objlock_free(m2mhsm_objlock *l);

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
    char *init_args; /* CK_C_INITIALIZE_ARGS.pReserved, or NULL */
    m2mhsm_token_caps caps;

    m2mhsm_objlock objlock;
    pthread_mutex_t lock;            /* guards everything below */
    pid_t pid;                       /* process in which the token is attached and logged in */
    pid_t initialized_pid;           /* process that called C_Initialize */
    unsigned generation;             /* bumped on re-initialisation after fork */
    CK_SESSION_HANDLE login_session; /* keeps the login alive while the pool is empty */
    CK_SESSION_HANDLE *idle;         /* pool of idle sessions */
    size_t idle_count, idle_cap;
    struct {                      /* failover (recover.c), under lock */
        int down;                 /* a call failed with a lost-token CKR; not re-attached */
        CK_RV rv;                 /* that CKR */
        int64_t since_ms;         /* monotonic time it was seen */
        int64_t next_attempt_ms;  /* no reconnect attempt before this */
        m2mhsm_token_observer fn; /* told of token_lost / token_back */
        void *arg;
    } lost;
    struct { /* sign.c: the last private key signed with, under lock */
        char label[64];
        CK_OBJECT_HANDLE key;
        unsigned generation;
    } signer;
};

/* Read the PIN from an RFC 7512 pin-source ("file:/path"). *pin is malloc'd; the caller
 * cleanses and frees it with m2mhsm_pin_free. */
m2mhsm_status m2mhsm_pin_read(const char *pin_source, const char *token_uri, char **pin,
                              size_t *pin_len);
void m2mhsm_pin_free(char *pin, size_t pin_len);

/* C_Initialize (through p11-kit), find the slot, probe, log in. Used at open and after
 * fork. Caller holds tok->lock or owns tok exclusively. */
m2mhsm_status m2mhsm_token_attach(m2mhsm_token *tok);

/* Failover (recover.c). After a call on a borrowed session: if this thread's last failure
 * was a lost-token CKR, mark the token down (told once to the observer) and return 1: the
 * session is dead and must not go back to the pool. */
int m2mhsm_token_note_lost(m2mhsm_token *tok);
/* While the token is down: one reconnect attempt when one is due, else fail at once.
 * M2MHSM_OK when the token is up (then in a new generation if it was down). Caller holds
 * tok->lock. */
m2mhsm_status m2mhsm_token_up_locked(m2mhsm_token *tok);

#endif
