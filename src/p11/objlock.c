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

static void gate_conds_init(m2mhsm_objlock *l)
{
    pthread_cond_init(&l->drained, NULL);
    pthread_cond_init(&l->resumed, NULL);
}

m2mhsm_status m2mhsm_objlock_init(m2mhsm_objlock *l, int enabled, const char *path)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->enabled = enabled;
    rw_init(l);
    pthread_mutex_init(&l->count_lock, NULL);
    pthread_mutex_init(&l->gate, NULL);
    gate_conds_init(l);
    if (path == NULL)
        return M2MHSM_OK;
    if ((l->path = strdup(path)) == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    return open_file(l);
}

/* Sections enter and leave the gate around the rwlock: while the atfork prepare handler
 * holds it with forking set, no thread is in a section, so none holds the rwlock, the lock
 * file or a module call, and none can start one. */
static void gate_enter(m2mhsm_objlock *l)
{
    pthread_mutex_lock(&l->gate);
    while (l->forking)
        pthread_cond_wait(&l->resumed, &l->gate);
    l->in_sections++;
    pthread_mutex_unlock(&l->gate);
}

static void gate_leave(m2mhsm_objlock *l)
{
    pthread_mutex_lock(&l->gate);
    if (--l->in_sections == 0 && l->forking)
        pthread_cond_signal(&l->drained);
    pthread_mutex_unlock(&l->gate);
}

void m2mhsm_objlock_quiesce(void *arg)
{
    m2mhsm_objlock *l = arg;
    l->forking = 1;
    while (l->in_sections > 0)
        pthread_cond_wait(&l->drained, &l->gate);
}

void m2mhsm_objlock_resume(void *arg)
{
    m2mhsm_objlock *l = arg;
    l->forking = 0;
    pthread_cond_broadcast(&l->resumed);
}

/* flock() locks belong to the open file description, which a child shares with its parent:
 * the child needs its own. No thread was in a section at fork (the gate), so the rwlock and
 * the reader count are free; the parent's waiters at the gate do not exist here. */
void m2mhsm_objlock_child(m2mhsm_objlock *l)
{
    l->forking = 0;
    gate_conds_init(l);
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
    pthread_mutex_destroy(&l->gate);
    pthread_cond_destroy(&l->drained);
    pthread_cond_destroy(&l->resumed);
}

/* Every section passes the gate; only with the lock enabled does it take the rwlock. */
static void rd_lock(m2mhsm_objlock *l)
{
    gate_enter(l);
    if (l->enabled)
        pthread_rwlock_rdlock(&l->rw);
}

static void wr_lock(m2mhsm_objlock *l)
{
    gate_enter(l);
    if (l->enabled)
        pthread_rwlock_wrlock(&l->rw);
}

static void rw_unlock(m2mhsm_objlock *l)
{
    if (l->enabled)
        pthread_rwlock_unlock(&l->rw);
    gate_leave(l);
}

static void file_lock(m2mhsm_objlock *l, int op)
{
    /* Interrupted waits are retried; a failing flock on a valid descriptor leaves us with
     * the in-process lock alone, which is what a lock-free configuration has anyway. */
    while (flock(l->fd, op) != 0 && errno == EINTR)
        ;
}

void m2mhsm_token_write_begin(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    wr_lock(l);
    if (l->enabled && l->fd >= 0)
        file_lock(l, LOCK_EX);
}

void m2mhsm_token_write_end(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (l->enabled && l->fd >= 0)
        file_lock(l, LOCK_UN);
    rw_unlock(l);
}

void m2mhsm_token_search_begin(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    rd_lock(l);
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
    rw_unlock(l);
}

/* Reading one object or signing needs only the in-process lock: the cross-process race is
 * between a creation and another process's enumeration (see p11.h). */
void m2mhsm_token_read_begin(m2mhsm_token *tok)
{
    rd_lock(&tok->objlock);
}

void m2mhsm_token_read_end(m2mhsm_token *tok)
{
    rw_unlock(&tok->objlock);
}
