/* Library-internal declarations shared between src/ files. Not installed. */
#ifndef M2MHSM_INTERNAL_H
#define M2MHSM_INTERNAL_H

#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <m2mhsm/errors.h>
#include "p11compat.h"

/* Record an error detail for the calling thread and return st. */
m2mhsm_status m2mhsm_fail(m2mhsm_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Record "op: CKR_NAME" and map the CKR to a status (PIN errors to M2MHSM_E_PIN). */
m2mhsm_status m2mhsm_fail_ckr(const char *op, CK_RV rv);
/* The CKR of the thread's last error if m2mhsm_fail_ckr reported it, else CKR_OK. */
CK_RV m2mhsm_last_ckr(void);
void m2mhsm_clear_error(void);
/* 1 for the CKRs of a lost token: device removed or failing, session or login gone,
 * module no longer initialised (docs/deployment-hsm.md, "Failover"). */
int m2mhsm_ckr_lost(CK_RV rv);
/* The last such CKR m2mhsm_fail_ckr recorded on this thread since the last take (CKR_OK:
 * none), with its operation in op; clears it. */
CK_RV m2mhsm_take_lost(char *op, size_t cap);

/* Bracket C_CreateObject/C_DestroyObject/C_UnwrapKey sequences (see
 * m2mhsm_token_config.concurrent_writes). */
struct m2mhsm_token;
void m2mhsm_token_write_begin(struct m2mhsm_token *tok);
void m2mhsm_token_write_end(struct m2mhsm_token *tok);
/* Inside a write section that created or destroyed token objects, on session s: give the
 * token's epoch object a fresh value and bump the lock file's counter (src/p11/epoch.c). */
void m2mhsm_token_write_changed(struct m2mhsm_token *tok, CK_SESSION_HANDLE s);
/* The lock file's write counter, if there is a lock file and no write from outside it has
 * been seen (returns 1; checked against the epoch object every M2MHSM_EPOCH_CHECK_MS); 0:
 * the counter proves nothing, read the epoch object (m2mhsm_token_epoch_read). */
#define M2MHSM_EPOCH_CHECK_MS 1000
int m2mhsm_token_shared_epoch(struct m2mhsm_token *tok, uint64_t *epoch);
/* The token's epoch object's value (*present 0: there is none, so nothing may be answered
 * from memory): one C_GetAttributeValue. */
m2mhsm_status m2mhsm_token_epoch_read(struct m2mhsm_token *tok, CK_SESSION_HANDLE s,
                                      uint64_t *epoch, int *present);
/* A writer's open: make the epoch object if the token has none, and let a new lock file
 * adopt its value. */
m2mhsm_status m2mhsm_token_epoch_ensure(struct m2mhsm_token *tok, CK_SESSION_HANDLE s);
/* Bracket C_FindObjects* sequences likewise: shared with each other, exclusive with
 * writes, within the process and (with a lock file) across processes. */
void m2mhsm_token_search_begin(struct m2mhsm_token *tok);
void m2mhsm_token_search_end(struct m2mhsm_token *tok);
/* Bracket calls that read one object (C_GetAttributeValue, C_SignInit/C_Sign), and every
 * other module call outside a search or write section (C_OpenSession, C_CloseSession):
 * shared, exclusive with writes, within the process. Every module call is inside a section,
 * so the atfork handlers know when no thread is inside the module (src/p11/p11.h). Sections
 * do not nest. */
void m2mhsm_token_read_begin(struct m2mhsm_token *tok);
void m2mhsm_token_read_end(struct m2mhsm_token *tok);

/* Re-initialise in a forked child (a no-op in the process that opened the token). */
m2mhsm_status m2mhsm_token_ensure_attached(struct m2mhsm_token *tok);

/* src/p11/templates.c. A CKR that can mean "the module does not take this template". */
int m2mhsm_ckr_template_class(CK_RV rv);
/* What the token takes, and the correction a refused stored write brings. Thread-safe. */
int m2mhsm_token_takes_copyable(struct m2mhsm_token *tok);
void m2mhsm_token_note_no_copyable(struct m2mhsm_token *tok);
int m2mhsm_token_takes_private_data(struct m2mhsm_token *tok);
void m2mhsm_token_note_no_private_data(struct m2mhsm_token *tok);
int m2mhsm_token_needs_distinct_ids(struct m2mhsm_token *tok);
void m2mhsm_token_note_distinct_ids(struct m2mhsm_token *tok);

/* HKDF-Extract on the token (src/p11/hkdf.c), on a session the caller holds, inside its
 * write section: a session key holding data (CKA_DERIVE, sensitive); HMAC(salt_key, ikm)
 * into a new key made from tmpl (salt_key CK_INVALID_HANDLE: HashLen zeros); and
 * HMAC(key, msg) into a new key, the message's session key destroyed on every path. */
m2mhsm_status m2mhsm_p11_data_key(struct m2mhsm_token *tok, CK_SESSION_HANDLE s,
                                  const uint8_t *data, size_t len, CK_OBJECT_HANDLE *out);
m2mhsm_status m2mhsm_p11_hkdf_extract(struct m2mhsm_token *tok, CK_SESSION_HANDLE s,
                                      CK_OBJECT_HANDLE salt_key, CK_OBJECT_HANDLE ikm,
                                      const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out);
m2mhsm_status m2mhsm_p11_hmac_derive(struct m2mhsm_token *tok, CK_SESSION_HANDLE s,
                                     CK_OBJECT_HANDLE key, const uint8_t *msg, size_t msg_len,
                                     const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out);

/*
 * Fork safety (src/fork.c). Every lock that guards memory a forked child goes on using, and
 * each token's fork gate, which every token call passes, is registered here with
 * its place in the lock order (src/p11/p11.h): the pthread_atfork prepare handler takes all
 * of them, rank by rank, so no thread is half-way through changing what they guard, nor
 * inside the module (whose own locks a child would inherit held), when fork() copies the
 * process; both processes release them afterwards, and the child then runs each entry's
 * child callback (forget the parent's sessions and lock file description). The handlers are
 * registered once per process, at the first registration.
 */
typedef enum {
    M2MHSM_RANK_HANDLES,  /* engine/handle.c: the provider's PSK handle registry */
    M2MHSM_RANK_KEYSTORE, /* m2mhsm_keystore.lock: the index */
    M2MHSM_RANK_OBJECTS,  /* m2mhsm_objlock.gate: no thread in a token call (quiesce) */
    M2MHSM_RANK_OBJCOUNT, /* m2mhsm_objlock.count_lock: the lock file's reader count */
    M2MHSM_RANK_TOKEN,    /* m2mhsm_token.lock: token state and the session pool */
    M2MHSM_RANK_COUNT
} m2mhsm_lock_rank;

typedef struct m2mhsm_forksafe {
    m2mhsm_lock_rank rank;
    pthread_mutex_t *mutex;
    /* May be NULL. quiesce: in prepare, with the mutex held (it may wait on a condition
     * variable with it); resume: in the parent, before the mutex is released; child: in the
     * child, after every mutex is released. */
    void (*quiesce)(void *arg);
    void (*resume)(void *arg);
    void (*child)(void *arg);
    void *arg;
    struct m2mhsm_forksafe *next;
} m2mhsm_forksafe;

/* Register f (owned by the caller until removed). 0, or an errno from pthread_atfork. */
int m2mhsm_forksafe_add(m2mhsm_forksafe *f);
void m2mhsm_forksafe_remove(m2mhsm_forksafe *f);

#define M2MHSM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
