/* The pthread_atfork handlers behind m2mhsm_forksafe (internal.h). */
#include "internal.h"

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static m2mhsm_forksafe *entries; /* guarded by registry */
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;
static int handlers_rc;

static void take(m2mhsm_forksafe *f)
{
    pthread_mutex_lock(f->mutex);
    if (f->quiesce != NULL)
        f->quiesce(f->arg);
}

static void release(m2mhsm_forksafe *f, int in_child)
{
    if (!in_child && f->resume != NULL)
        f->resume(f->arg);
    pthread_mutex_unlock(f->mutex);
}

/* Lock order: the registry, then every registered lock rank by rank. Within a rank the
 * entries belong to different objects, which no other path ever holds two of at once. */
static void prepare(void)
{
    pthread_mutex_lock(&registry);
    for (int rank = 0; rank < M2MHSM_RANK_COUNT; rank++)
        for (m2mhsm_forksafe *f = entries; f != NULL; f = f->next)
            if (f->rank == (m2mhsm_lock_rank)rank)
                take(f);
}

static void release_all(int in_child)
{
    for (int rank = M2MHSM_RANK_COUNT - 1; rank >= 0; rank--)
        for (m2mhsm_forksafe *f = entries; f != NULL; f = f->next)
            if (f->rank == (m2mhsm_lock_rank)rank)
                release(f, in_child);
}

static void parent(void)
{
    release_all(0);
    pthread_mutex_unlock(&registry);
}

/* The forking thread, the child's only one, took every lock in prepare: it may release
 * the mutexes, and nothing can run between the release and the callbacks. */
static void child(void)
{
    release_all(1);
    for (m2mhsm_forksafe *f = entries; f != NULL; f = f->next)
        if (f->child != NULL)
            f->child(f->arg);
    pthread_mutex_unlock(&registry);
}

static void install_handlers(void)
{
    handlers_rc = pthread_atfork(prepare, parent, child);
}

int m2mhsm_forksafe_add(m2mhsm_forksafe *f)
{
    pthread_once(&handlers_once, install_handlers);
    if (handlers_rc != 0)
        return handlers_rc;
    pthread_mutex_lock(&registry);
    f->next = entries;
    entries = f;
    pthread_mutex_unlock(&registry);
    return 0;
}

void m2mhsm_forksafe_remove(m2mhsm_forksafe *f)
{
    pthread_mutex_lock(&registry);
    for (m2mhsm_forksafe **p = &entries; *p != NULL; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    pthread_mutex_unlock(&registry);
}
