/* The object lock: see m2mhsm_objlock in p11.h. */
#include "p11.h"
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static m2mhsm_status open_file(m2mhsm_objlock *l)
{
    l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->fd < 0)
        return m2mhsm_fail(M2MHSM_E_IO, "lock file %s: %s", l->path, strerror(errno));
    return M2MHSM_OK;
}

/* Writer-preferring, so a steady stream of handshakes cannot starve an enrolment. */
static void rw_init(m2mhsm_objlock *l)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&l->rw, &attr);
    pthread_rwlockattr_destroy(&attr);
}

m2mhsm_status m2mhsm_objlock_init(m2mhsm_objlock *l, int enabled, const char *path)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->enabled = enabled;
    rw_init(l);
    pthread_mutex_init(&l->count_lock, NULL);
    if (path == NULL)
        return M2MHSM_OK;
    if ((l->path = strdup(path)) == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    return open_file(l);
}

/* flock() locks belong to the open file description, which a child shares with its parent:
 * the child needs its own. The atfork prepare handler held the rwlock for writing, so no
 * reader holds the file lock; the rwlock starts afresh (src/fork.c says why). */
void m2mhsm_objlock_child(m2mhsm_objlock *l)
{
    rw_init(l);
    l->readers = 0;
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    if (l->path != NULL)
        l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
}

/* At re-attach in the child: a lock file the atfork handler could not reopen is an error
 * now, where it can be reported. */
m2mhsm_status m2mhsm_objlock_after_fork(m2mhsm_objlock *l)
{
    if (l->path == NULL || l->fd >= 0)
        return M2MHSM_OK;
    return open_file(l);
}

void m2mhsm_objlock_free(m2mhsm_objlock *l)
{
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    pthread_rwlock_destroy(&l->rw);
    pthread_mutex_destroy(&l->count_lock);
}

static void file_lock(m2mhsm_objlock *l, int op)
{
    /* Interrupted waits are retried; a failing flock on a valid descriptor leaves us with
     * the in-process lock alone, which is what a lock-free configuration has anyway. */
    while (flock(l->fd, op) != 0 && errno == EINTR)
        ;
}

/* Without the lock (concurrent_writes and no lock file) writers share the rwlock with
 * readers: it still tells the fork handlers when no thread is inside the module. */
void m2mhsm_token_write_begin(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (!l->enabled) {
        pthread_rwlock_rdlock(&l->rw);
        return;
    }
    pthread_rwlock_wrlock(&l->rw);
    if (l->fd >= 0)
        file_lock(l, LOCK_EX);
}

void m2mhsm_token_write_end(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (!l->enabled) {
        pthread_rwlock_unlock(&l->rw);
        return;
    }
    if (l->fd >= 0)
        file_lock(l, LOCK_UN);
    pthread_rwlock_unlock(&l->rw);
}

void m2mhsm_token_search_begin(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    pthread_rwlock_rdlock(&l->rw);
    if (!l->enabled || l->fd < 0)
        return;
    pthread_mutex_lock(&l->count_lock);
    if (l->readers++ == 0)
        file_lock(l, LOCK_SH);
    pthread_mutex_unlock(&l->count_lock);
}

void m2mhsm_token_search_end(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (l->enabled && l->fd >= 0) {
        pthread_mutex_lock(&l->count_lock);
        if (--l->readers == 0)
            file_lock(l, LOCK_UN);
        pthread_mutex_unlock(&l->count_lock);
    }
    pthread_rwlock_unlock(&l->rw);
}

/* Reading one object or signing needs only the in-process lock: the cross-process race is
 * between a creation and another process's enumeration (see p11.h). */
void m2mhsm_token_read_begin(m2mhsm_token *tok)
{
    pthread_rwlock_rdlock(&tok->objlock.rw);
}

void m2mhsm_token_read_end(m2mhsm_token *tok)
{
    pthread_rwlock_unlock(&tok->objlock.rw);
}

/*
 * The write epoch: a counter at the start of the lock file, bumped by every process under
 * LOCK_EX when it has created or destroyed token objects. A reader that saw the same epoch
 * before knows no process using the lock file has changed the token since, without asking
 * the module (docs/performance.md: the attribute read a lookup confirms hits with).
 */
void m2mhsm_token_write_changed(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    uint64_t epoch = 0;
    if (l->fd < 0)
        return;
    if (pread(l->fd, &epoch, sizeof(epoch), 0) != (ssize_t)sizeof(epoch))
        epoch = 0; /* a new, empty lock file */
    epoch++;
    if (pwrite(l->fd, &epoch, sizeof(epoch), 0) != (ssize_t)sizeof(epoch))
        return; /* readers then keep confirming on the token, as without a lock file */
}

int m2mhsm_token_shared_epoch(m2mhsm_token *tok, uint64_t *epoch)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (l->fd < 0)
        return 0;
    uint64_t v = 0;
    if (pread(l->fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = 0;
    *epoch = v;
    return 1;
}
