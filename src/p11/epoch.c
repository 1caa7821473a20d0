/*
 * The write epoch: how a process knows that no process, on this host or another, has
 * changed the token since it last looked, so that an answer it keeps in memory (a record
 * found, an identity not found) is still the token's answer (docs/key-lifecycle.md,
 * "Answers from memory").
 *
 * Two carriers:
 * - the token's epoch object, a private CKO_DATA object that every writer sets to a fresh
 *   random value after each change. Every writer of every host updates it, so a value read
 *   again unchanged proves that nothing was written in between. Reading it is one call.
 * - the lock file: a counter that writers sharing the file bump under LOCK_EX, plus the
 *   value they last gave the epoch object. Reading it is no token call at all, but it only
 *   speaks for the processes that share the file. A write from outside it (another host,
 *   or a process configured with another lock file or none) leaves the epoch object with a
 *   value the file does not know: a writer sees that before its own update, a reader at
 *   its next check (every M2MHSM_EPOCH_CHECK_MS). From then on the file's counter answers
 *   nothing, every process sharing it reads the epoch object instead, and the program is
 *   told once (M2MHSM_TOKEN_LOCK_NOT_SHARED).
 */
#include "p11.h"
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>

#define EPOCH_APP "m2mhsm-epoch" /* CKA_APPLICATION of the epoch object */
#define EPOCH_LABEL_MAX 64
#define EPOCH_MAX_OBJECTS 4 /* two first writers at once may each create one */

/* The lock file's first bytes; an older binary knows the counter only. */
typedef struct {
    uint64_t counter; /* bumped by every writer sharing the file */
    uint64_t value;   /* the epoch object's value as this file's writers last set it */
    uint64_t foreign; /* nonzero: a write from outside the file was seen */
} file_epoch;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void file_read(const m2mhsm_objlock *l, file_epoch *e)
{
    memset(e, 0, sizeof(*e));
    ssize_t n = pread(l->fd, e, sizeof(*e), 0);
    if (n < (ssize_t)sizeof(e->counter))
        memset(e, 0, sizeof(*e)); /* a new, empty lock file */
    else if (n < (ssize_t)sizeof(*e))
        memset((char *)e + n, 0, sizeof(*e) - (size_t)n);
}

static void file_write(const m2mhsm_objlock *l, const file_epoch *e)
{
    /* A failed write leaves the file behind the epoch object: the next check takes that for
     * a write from outside the file, and its processes then confirm on the token. */
    if (pwrite(l->fd, e, sizeof(*e), 0) != (ssize_t)sizeof(*e))
        return;
}

/* Told once per process: the observer logs it. Caller does not hold tok->lock. */
static void note_foreign(m2mhsm_token *tok, const char *how)
{
    pthread_mutex_lock(&tok->lock);
    int first = !tok->epoch.foreign;
    tok->epoch.foreign = 1;
    m2mhsm_token_observer fn = tok->lost.fn;
    void *arg = tok->lost.arg;
    if (first && fn != NULL) {
        char detail[512];
        snprintf(detail, sizeof(detail), "lock file %s: %s", tok->objlock.path, how);
        fn(arg, M2MHSM_TOKEN_LOCK_NOT_SHARED, detail, 0);
    }
    pthread_mutex_unlock(&tok->lock);
}

/* Up to EPOCH_MAX_OBJECTS epoch objects; no locks taken (callers hold what they need). */
static m2mhsm_status find_objects(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *h,
                                  CK_ULONG *n)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)EPOCH_APP, strlen(EPOCH_APP)},
    };
    *n = 0;
    CK_RV rv = tok->fn->C_FindObjectsInit(s, tmpl, M2MHSM_ARRAY_LEN(tmpl));
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_FindObjectsInit(write epoch)", rv);
    rv = tok->fn->C_FindObjects(s, h, EPOCH_MAX_OBJECTS, n);
    CK_RV fin = tok->fn->C_FindObjectsFinal(s);
    if (fin != CKR_OK && !m2mhsm_ckr_lost(fin))
        tok->fn->C_FindObjectsFinal(s); /* a search left active would fail the session's next
                                           operation; the first failure is reported */
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_FindObjects(write epoch)", rv);
    return fin == CKR_OK ? M2MHSM_OK : m2mhsm_fail_ckr("C_FindObjectsFinal(write epoch)", fin);
}

/* The value is in the label, "m2mhsm-epoch:<16 hex>": PKCS#11 lets a label change after
 * creation (CKA_MODIFIABLE), not a data object's CKA_VALUE. */
static void make_label(uint64_t v, char label[EPOCH_LABEL_MAX])
{
    snprintf(label, EPOCH_LABEL_MAX, "%s:%016llx", EPOCH_APP, (unsigned long long)v);
}

/* M2MHSM_E_NOT_FOUND if the handle no longer names an epoch object. */
static m2mhsm_status read_value(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                                uint64_t *v)
{
    char label[EPOCH_LABEL_MAX];
    CK_ATTRIBUTE a = {CKA_LABEL, label, sizeof(label) - 1};
    CK_RV rv = tok->fn->C_GetAttributeValue(s, h, &a, 1);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        return M2MHSM_E_NOT_FOUND;
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_GetAttributeValue(write epoch)", rv);
    label[a.ulValueLen] = '\0';
    size_t prefix = strlen(EPOCH_APP);
    char *end = NULL;
    if (strncmp(label, EPOCH_APP ":", prefix + 1) != 0)
        return M2MHSM_E_NOT_FOUND; /* a reused handle: not ours after all */
    *v = strtoull(label + prefix + 1, &end, 16);
    return *end == '\0' ? M2MHSM_OK : M2MHSM_E_NOT_FOUND;
}

static m2mhsm_status create_object(m2mhsm_token *tok, CK_SESSION_HANDLE s, uint64_t v)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE;
    char label[EPOCH_LABEL_MAX];
    make_label(v, label);
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_MODIFIABLE, &t, sizeof(t)},
        {CKA_APPLICATION, (void *)EPOCH_APP, strlen(EPOCH_APP)},
        {CKA_LABEL, label, strlen(label)},
    };
    CK_OBJECT_HANDLE h;
    CK_RV rv = tok->fn->C_CreateObject(s, tmpl, M2MHSM_ARRAY_LEN(tmpl), &h);
    return rv == CKR_OK ? M2MHSM_OK : m2mhsm_fail_ckr("C_CreateObject(write epoch)", rv);
}

static m2mhsm_status set_all(m2mhsm_token *tok, CK_SESSION_HANDLE s, const CK_OBJECT_HANDLE *h,
                             CK_ULONG n, uint64_t v)
{
    char label[EPOCH_LABEL_MAX];
    make_label(v, label);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ATTRIBUTE a = {CKA_LABEL, label, strlen(label)};
        CK_RV rv = tok->fn->C_SetAttributeValue(s, h[i], &a, 1);
        if (rv == CKR_OBJECT_HANDLE_INVALID)
            return M2MHSM_E_NOT_FOUND;
        if (rv != CKR_OK)
            return m2mhsm_fail_ckr("C_SetAttributeValue(write epoch label)", rv);
    }
    return M2MHSM_OK;
}

static uint64_t fresh_value(void)
{
    uint64_t v = 0;
    while (v == 0)
        if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
            v = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 40); /* still unique enough */
    return v;
}

static CK_OBJECT_HANDLE cached_handle(m2mhsm_token *tok)
{
    unsigned gen = m2mhsm_token_generation(tok);
    pthread_mutex_lock(&tok->lock);
    CK_OBJECT_HANDLE h = tok->epoch.gen == gen ? tok->epoch.handle : CK_INVALID_HANDLE;
    pthread_mutex_unlock(&tok->lock);
    return h;
}

static void cache_handle(m2mhsm_token *tok, CK_OBJECT_HANDLE h)
{
    unsigned gen = m2mhsm_token_generation(tok);
    pthread_mutex_lock(&tok->lock);
    tok->epoch.handle = h;
    tok->epoch.gen = gen;
    pthread_mutex_unlock(&tok->lock);
}

/* One epoch object: two first writers at once may each have made one. All but the first
 * found go (a reader holding one of those finds the survivor again); two writers that
 * keep different ones leave none, and the next write makes one: readers answer nothing
 * from memory meanwhile. */
static m2mhsm_status find_one(m2mhsm_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_HANDLE found[EPOCH_MAX_OBJECTS];
    CK_ULONG n = 0;
    m2mhsm_status st = find_objects(tok, s, found, &n);
    *h = st == M2MHSM_OK && n > 0 ? found[0] : CK_INVALID_HANDLE;
    for (CK_ULONG i = 1; st == M2MHSM_OK && i < n; i++) {
        CK_RV rv = tok->fn->C_DestroyObject(s, found[i]);
        if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
            st = m2mhsm_fail_ckr("C_DestroyObject(second write epoch)", rv);
    }
    return st;
}

/* Inside a write section (write_begin held): give the epoch object a fresh value, or make
 * it. Through the handle used last: one call, two with a lock file (the value it held,
 * for m2mhsm_token_write_changed's check); a search only when that handle is void. */
static m2mhsm_status bump_object(m2mhsm_token *tok, CK_SESSION_HANDLE s, uint64_t v, uint64_t *was,
                                 int *had)
{
    CK_OBJECT_HANDLE h = cached_handle(tok);
    m2mhsm_status st = M2MHSM_E_NOT_FOUND;
    *had = 0;
    for (int pass = 0; pass < 2 && st == M2MHSM_E_NOT_FOUND; pass++) {
        if (pass == 1 || h == CK_INVALID_HANDLE) {
            if ((st = find_one(tok, s, &h)) != M2MHSM_OK)
                return st;
            if (h == CK_INVALID_HANDLE)
                break;
            cache_handle(tok, h);
        }
        st = tok->objlock.fd >= 0 ? read_value(tok, s, h, was) : M2MHSM_OK;
        *had = st == M2MHSM_OK && tok->objlock.fd >= 0;
        if (st == M2MHSM_OK)
            st = set_all(tok, s, &h, 1, v);
    }
    if (h != CK_INVALID_HANDLE)
        return st;
    if ((st = create_object(tok, s, v)) == M2MHSM_OK && (st = find_one(tok, s, &h)) == M2MHSM_OK)
        cache_handle(tok, h);
    return st;
}

void m2mhsm_token_write_changed(m2mhsm_token *tok, CK_SESSION_HANDLE s)
{
    m2mhsm_objlock *l = &tok->objlock;
    uint64_t v = fresh_value(), was = 0;
    int had = 0;
    /* The write's own outcome is what its caller reports: keep its error and lost-token
     * CKR. A bump that fails leaves other hosts' answers from memory one write behind
     * until the next write; it fails when the token does, which the failover then handles
     * (a lost-token CKR of the bump's own is kept for it). */
    char saved[512], op[64], bump_op[64];
    snprintf(saved, sizeof(saved), "%s", m2mhsm_last_error());
    CK_RV lost = m2mhsm_take_lost(op, sizeof(op));
    m2mhsm_status st = bump_object(tok, s, v, &was, &had);
    CK_RV bump_lost = m2mhsm_take_lost(bump_op, sizeof(bump_op));
    if (lost != CKR_OK)
        m2mhsm_fail_ckr(op, lost);
    else if (bump_lost != CKR_OK)
        m2mhsm_fail_ckr(bump_op, bump_lost);
    m2mhsm_fail(M2MHSM_OK, "%s", saved);
    if (st != M2MHSM_OK)
        v = 0;
    if (l->fd < 0)
        return;
    file_epoch fe;
    file_read(l, &fe);
    if (had && fe.value != 0 && was != fe.value && !fe.foreign) {
        fe.foreign = 1;
        note_foreign(tok, "the token was written by a process outside it");
    }
    fe.counter++;
    fe.value = v;
    file_write(l, &fe);
}

m2mhsm_status m2mhsm_token_epoch_ensure(m2mhsm_token *tok, CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE h[EPOCH_MAX_OBJECTS];
    CK_ULONG n = 0;
    m2mhsm_token_write_begin(tok);
    m2mhsm_status st = find_objects(tok, s, h, &n);
    uint64_t v = 0;
    int known = st == M2MHSM_OK && n > 0 && read_value(tok, s, h[0], &v) == M2MHSM_OK;
    m2mhsm_token_write_end(tok);
    if (st != M2MHSM_OK)
        return st;
    if (n == 0) { /* the first writer of this token: a write like any other */
        m2mhsm_token_write_begin(tok);
        m2mhsm_token_write_changed(tok, s);
        m2mhsm_token_write_end(tok);
        return M2MHSM_OK;
    }
    /* The lock file starts afresh from the token as it is: a new file (or one from before
     * the epoch object), a token restored from a backup, or a write from outside the file
     * since its writers last wrote. An unknown change counts as a write (the counter moves,
     * so no process sharing the file answers from memory what it saw before), and a flag
     * from an earlier misconfiguration is cleared: a write from outside that goes on is
     * noticed and reported again. */
    if (known && tok->objlock.fd >= 0) {
        m2mhsm_token_write_begin(tok);
        file_epoch fe;
        file_read(&tok->objlock, &fe);
        if (fe.value != v || fe.foreign) {
            fe.counter += fe.value != v;
            fe.value = v;
            fe.foreign = 0;
            file_write(&tok->objlock, &fe);
        }
        m2mhsm_token_write_end(tok);
    }
    return M2MHSM_OK;
}

/* The epoch object's value through the handle found last (found again when it is void).
 * No locks taken: callers bracket. */
static m2mhsm_status read_current(m2mhsm_token *tok, CK_SESSION_HANDLE s, uint64_t *v, int *present)
{
    unsigned gen = m2mhsm_token_generation(tok);
    pthread_mutex_lock(&tok->lock);
    CK_OBJECT_HANDLE h = tok->epoch.gen == gen ? tok->epoch.handle : CK_INVALID_HANDLE;
    pthread_mutex_unlock(&tok->lock);
    *present = 0;
    m2mhsm_status st = h != CK_INVALID_HANDLE ? read_value(tok, s, h, v) : M2MHSM_E_NOT_FOUND;
    if (st == M2MHSM_E_NOT_FOUND) { /* first read, a new generation, or it was replaced */
        CK_OBJECT_HANDLE found[EPOCH_MAX_OBJECTS];
        CK_ULONG n = 0;
        if ((st = find_objects(tok, s, found, &n)) != M2MHSM_OK)
            return st;
        if (n == 0)
            return M2MHSM_OK; /* no epoch object: nothing may be answered from memory */
        h = found[0];
        pthread_mutex_lock(&tok->lock);
        tok->epoch.handle = h;
        tok->epoch.gen = gen;
        pthread_mutex_unlock(&tok->lock);
        st = read_value(tok, s, h, v);
    }
    *present = st == M2MHSM_OK;
    return st == M2MHSM_E_NOT_FOUND ? M2MHSM_OK : st;
}

m2mhsm_status m2mhsm_token_epoch_read(m2mhsm_token *tok, CK_SESSION_HANDLE s, uint64_t *epoch,
                                      int *present)
{
    m2mhsm_token_search_begin(tok);
    m2mhsm_status st = read_current(tok, s, epoch, present);
    m2mhsm_token_search_end(tok);
    return st;
}

/* Every M2MHSM_EPOCH_CHECK_MS: does the epoch object still hold the value this lock file's
 * writers gave it? Read under LOCK_SH, so that none of them is between the two updates. */
static void check_shared(m2mhsm_token *tok)
{
    int64_t t = now_ms();
    pthread_mutex_lock(&tok->lock);
    int due = tok->epoch.checked_ms == 0 || t - tok->epoch.checked_ms >= M2MHSM_EPOCH_CHECK_MS;
    if (due)
        tok->epoch.checked_ms = t;
    pthread_mutex_unlock(&tok->lock);
    CK_SESSION_HANDLE s;
    if (!due || m2mhsm_token_session_get(tok, &s) != M2MHSM_OK)
        return; /* a token failure: the lookup that follows reports it */
    uint64_t v = 0;
    int present = 0;
    file_epoch fe;
    m2mhsm_token_search_begin(tok);
    file_read(&tok->objlock, &fe);
    m2mhsm_status st = read_current(tok, s, &v, &present);
    int foreign = st == M2MHSM_OK && present && fe.value != 0 && v != fe.value;
    if (foreign && !fe.foreign) {
        fe.foreign = 1;
        file_write(&tok->objlock, &fe);
    }
    m2mhsm_token_search_end(tok);
    m2mhsm_token_session_put(tok, s);
    if (foreign)
        note_foreign(tok, "the token was written by a process outside it");
}

int m2mhsm_token_shared_epoch(m2mhsm_token *tok, uint64_t *epoch)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (l->fd < 0)
        return 0;
    file_epoch fe;
    file_read(l, &fe);
    if (fe.foreign) {
        note_foreign(tok, "another process sharing it saw a write from outside it");
        return 0;
    }
    pthread_mutex_lock(&tok->lock);
    int foreign = tok->epoch.foreign;
    pthread_mutex_unlock(&tok->lock);
    if (foreign)
        return 0;
    check_shared(tok);
    pthread_mutex_lock(&tok->lock);
    foreign = tok->epoch.foreign;
    pthread_mutex_unlock(&tok->lock);
    *epoch = fe.counter;
    return !foreign;
}
