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

m2mhsm_status m2mhsm_objlock_init(m2mhsm_objlock *l, int enabled, const char *path)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->enabled = enabled;
    /* Writer-preferring, so a steady stream of handshakes cannot starve an enrolment. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&l->rw, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&l->count_lock, NULL);
    if (path == NULL)
        return M2MHSM_OK;
    if ((l->path = strdup(path)) == NULL)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory");
    return open_file(l);
}

/* flock() locks belong to the open file description, which a child shares with its parent:
 * the child needs its own. */
m2mhsm_status m2mhsm_objlock_after_fork(m2mhsm_objlock *l)
{
    if (l->path == NULL)
        return M2MHSM_OK;
    if (l->fd >= 0)
        close(l->fd);
    l->readers = 0;
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

void m2mhsm_token_write_begin(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (!l->enabled)
        return;
    pthread_rwlock_wrlock(&l->rw);
    if (l->fd >= 0)
        file_lock(l, LOCK_EX);
}

void m2mhsm_token_write_end(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (!l->enabled)
        return;
    if (l->fd >= 0)
        file_lock(l, LOCK_UN);
    pthread_rwlock_unlock(&l->rw);
}

void m2mhsm_token_search_begin(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (!l->enabled)
        return;
    pthread_rwlock_rdlock(&l->rw);
    if (l->fd < 0)
        return;
    pthread_mutex_lock(&l->count_lock);
    if (l->readers++ == 0)
        file_lock(l, LOCK_SH);
    pthread_mutex_unlock(&l->count_lock);
}

void m2mhsm_token_search_end(m2mhsm_token *tok)
{
    m2mhsm_objlock *l = &tok->objlock;
    if (!l->enabled)
        return;
    if (l->fd >= 0) {
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
    if (tok->objlock.enabled)
        pthread_rwlock_rdlock(&tok->objlock.rw);
}

void m2mhsm_token_read_end(m2mhsm_token *tok)
{
    if (tok->objlock.enabled)
        pthread_rwlock_unlock(&tok->objlock.rw);
}
