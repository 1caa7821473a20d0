/* The token object shared by src/p11/ files. */
#ifndef M2MHSM_P11_H
#define M2MHSM_P11_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <m2mhsm/token.h>
#include "../internal.h"
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
    /* The fork gate (objlock.c): threads in sections, and whether fork() is draining them. */
    pthread_mutex_t gate;
    pthread_cond_t drained, resumed;
    unsigned in_sections;
    int forking;
} m2mhsm_objlock;

m2mhsm_status m2mhsm_objlock_init(m2mhsm_objlock *l, int enabled, const char *path);
m2mhsm_status m2mhsm_objlock_after_fork(m2mhsm_objlock *l);
/* The atfork handlers' side of the gate (gate held): wait until no thread is in a section
 * and keep new ones out; let them in again (parent); in the child, reset the gate and take
 * a lock file description of the child's own. */
void m2mhsm_objlock_quiesce(void *l);
void m2mhsm_objlock_resume(void *l);
void m2mhsm_objlock_child(m2mhsm_objlock *l);
void m2mhsm_objlock_free(m2mhsm_objlock *l);

/* Set by CMake from where the build machine has SoftHSM; $M2MHSM_MODULE overrides it. */
#ifndef M2MHSM_DEFAULT_MODULE
#define M2MHSM_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

/*
 * Lock order (docs/architecture.md, "Lock order"). A thread that holds one of these may take
 * only those below it, never one above:
 *
 *   1. the fork registry (src/fork.c; only its atfork handlers and (de)registration)
 *   2. a provider handle registry's lock (engine/handle.c)
 *   3. a key store's lock (m2mhsm_keystore.lock)
 *   4. the object lock's fork gate (objlock.gate, only around entering and leaving a
 *      section), the rwlock (objlock.rw), then the lock file's flock()
 *   5. the object lock's reader count (objlock.count_lock)
 *   6. the token lock (m2mhsm_token.lock): token state and the session pool; a borrower
 *      waiting for a session sleeps on tok->returned with it released
 *
 * No path holds the locks of two tokens (or two key stores, or two handle registries) at
 * once, except the atfork prepare handler, which takes them in registration order. A
 * borrowed session is not a lock, but a thread waiting for one must hold no object lock
 * (4, 5): the sessions it waits for are returned by threads that may need one. Object
 * sections do not nest (the rwlock prefers writers: a nested read would deadlock against a
 * waiting writer).
 *
 * Every call into the module is made inside an object section (read, search or write),
 * and every section passes the fork gate, even when the object lock is off
 * (concurrent_writes without a lock file). Before fork() the prepare
 * handler (src/fork.c) takes locks 2 to 6 in this order, and at the gate waits until no
 * thread is in a section: the child inherits memory nobody was changing and a module nobody
 * was inside (a module's own mutexes, held by a thread that does not exist in the child,
 * would deadlock its first call). Both processes release them after fork; the child drops
 * the parent's sessions and lock file description, and re-attaches the token (C_Initialize,
 * login) at its first call. A thread must not fork() from inside a section (no callback of
 * the library runs inside one): the prepare handler would wait for it. The rwlock itself is
 * never held across fork: glibc knows its
 * writer by thread id, which a child's thread does not share, and ThreadSanitizer would
 * count it held in the child for ever.
 */
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
    struct {                     /* the write epoch (epoch.c), under lock */
        CK_OBJECT_HANDLE handle; /* the epoch object found last, in generation gen */
        unsigned gen;
        int64_t checked_ms; /* last check of the lock file's counter against the object */
        int foreign;        /* a write from outside the lock file was seen */
    } epoch;
    struct { /* sign.c: the last private key signed with, under lock */
        char label[64];
        CK_OBJECT_HANDLE key;
        unsigned generation;
    } signer;
    size_t open_count;       /* pool sessions open, idle or borrowed (login session apart) */
    size_t module_max;       /* the module's session limit less the login session; 0: none */
    size_t config_max;       /* m2mhsm_token_config.max_sessions; 0: none */
    size_t max_open;         /* the smaller of the two that are set; 0: unbounded */
    long wait_ms;            /* how long a borrower waits for a session when all are out */
    pthread_cond_t returned; /* a session came back to the pool, or closed */
    m2mhsm_forksafe fork_token, fork_count, fork_gate;
};

/* Read the PIN from an RFC 7512 pin-source ("file:/path"). *pin is malloc'd; the caller
 * cleanses and frees it with m2mhsm_pin_free. */
m2mhsm_status m2mhsm_pin_read(const char *pin_source, const char *token_uri, char **pin,
                              size_t *pin_len);
void m2mhsm_pin_free(char *pin, size_t pin_len);

/* C_Initialize (through p11-kit), find the slot, probe, log in. Used at open and after
 * fork. Caller holds tok->lock or owns tok exclusively. m2mhsm_token_attach takes the object
 * write section itself; m2mhsm_token_attach_in_write expects the caller to hold it. */
m2mhsm_status m2mhsm_token_attach(m2mhsm_token *tok);
m2mhsm_status m2mhsm_token_attach_in_write(m2mhsm_token *tok);

/* The session pool (session.c). Set up the pool's locks and fork handlers, from cfg; a
 * status on failure. Take the module's session limit from the token's CK_TOKEN_INFO (at
 * attach, tok->lock held or tok owned). */
m2mhsm_status m2mhsm_pool_init(m2mhsm_token *tok, const m2mhsm_token_config *cfg);
void m2mhsm_pool_set_limit(m2mhsm_token *tok, const CK_TOKEN_INFO *ti);

/* Failover (recover.c). After a call on a borrowed session: if this thread's last failure
 * was a lost-token CKR, mark the token down (told once to the observer) and return 1: the
 * session is dead and must not go back to the pool. */
int m2mhsm_token_note_lost(m2mhsm_token *tok);
/* While the token is down: one reconnect attempt when one is due, else fail at once.
 * M2MHSM_OK when the token is up (then in a new generation if it was down). Takes the object
 * write section, then tok->lock: the caller holds neither. */
m2mhsm_status m2mhsm_token_up(m2mhsm_token *tok);

#endif
