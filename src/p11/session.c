/* Session pool, fork detection, and token teardown. */
#include "p11.h"
#include "../internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <p11-kit/p11-kit.h>

#define DEFAULT_WAIT_MS 5000

/* In the child, after the atfork handlers released the locks (src/fork.c): the parent's
 * sessions are not ours to use or count, and its waiters do not exist here. tok->pid still
 * names the parent, so the first call re-attaches (reattach_after_fork). */
static void cond_init(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
}

static void objects_after_fork_child(void *arg)
{
    m2mhsm_objlock_child(arg);
}

static void pool_after_fork_child(void *arg)
{
    m2mhsm_token *tok = arg;
    tok->idle_count = 0;
    tok->open_count = 0;
    cond_init(&tok->returned);
}

m2mhsm_status m2mhsm_pool_init(m2mhsm_token *tok, const m2mhsm_token_config *cfg)
{
    if (cfg->max_sessions == 1)
        return m2mhsm_fail(M2MHSM_E_INVALID_ARG,
                           "max_sessions must be 0 (the module's limit) or at least 2: an "
                           "unwrap or an erase holds two sessions at once");
    tok->config_max = cfg->max_sessions;
    tok->max_open = tok->config_max;
    tok->wait_ms = cfg->session_wait_ms != 0 ? (long)cfg->session_wait_ms : DEFAULT_WAIT_MS;
    cond_init(&tok->returned);
    tok->fork_gate = (m2mhsm_forksafe){.rank = M2MHSM_RANK_OBJECTS,
                                       .mutex = &tok->objlock.gate,
                                       .quiesce = m2mhsm_objlock_quiesce,
                                       .resume = m2mhsm_objlock_resume,
                                       .child = objects_after_fork_child,
                                       .arg = &tok->objlock};
    tok->fork_count =
        (m2mhsm_forksafe){.rank = M2MHSM_RANK_OBJCOUNT, .mutex = &tok->objlock.count_lock};
    tok->fork_token = (m2mhsm_forksafe){
        .rank = M2MHSM_RANK_TOKEN, .mutex = &tok->lock, .child = pool_after_fork_child, .arg = tok};
    m2mhsm_forksafe *f[] = {&tok->fork_gate, &tok->fork_count, &tok->fork_token};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < M2MHSM_ARRAY_LEN(f); i++)
        if ((rc = m2mhsm_forksafe_add(f[i])) != 0)
            while (i-- > 0)
                m2mhsm_forksafe_remove(f[i]);
    if (rc != 0)
        return m2mhsm_fail(M2MHSM_E_NOMEM, "pthread_atfork: %s", strerror(rc));
    return M2MHSM_OK;
}

/* A limit of 0 (CK_EFFECTIVELY_INFINITE) or CK_UNAVAILABLE_INFORMATION is no limit. */
static size_t stated_limit(CK_ULONG n)
{
    return n == CK_EFFECTIVELY_INFINITE || n == CK_UNAVAILABLE_INFORMATION ? 0 : (size_t)n;
}

void m2mhsm_pool_set_limit(m2mhsm_token *tok, const CK_TOKEN_INFO *ti)
{
    /* Our sessions are read/write, so both counts bound them; one is the login session. */
    size_t all = stated_limit(ti->ulMaxSessionCount), rw = stated_limit(ti->ulMaxRwSessionCount);
    size_t limit = all == 0 || (rw != 0 && rw < all) ? rw : all;
    tok->module_max = limit == 0 ? 0 : limit > 1 ? limit - 1 : 1;
    tok->max_open = tok->config_max;
    if (tok->module_max != 0 && (tok->max_open == 0 || tok->module_max < tok->max_open))
        tok->max_open = tok->module_max;
}

/*
 * PKCS#11 (section 6.7.1, "Applications and processes"): a child process must call
 * C_Initialize itself and may not use its parent's sessions or handles. We drop them
 * without closing (closing would act on the parent's state in some modules), re-initialise
 * and log in again. Caller holds the object write section, then tok->lock (lock order,
 * p11.h).
 */
static m2mhsm_status reattach_after_fork(m2mhsm_token *tok)
{
    tok->idle_count = 0;
    tok->open_count = 0;
    if (tok->initialized_pid != getpid())
        tok->login_session = CK_INVALID_HANDLE; /* the parent's: not ours to close */
    tok->generation++;
    m2mhsm_status st = m2mhsm_objlock_after_fork(&tok->objlock);
    return st != M2MHSM_OK ? st : m2mhsm_token_attach_in_write(tok);
}

/* The first call in a forked child re-attaches. */
static m2mhsm_status attach_if_forked(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    int forked = tok->pid != getpid();
    pthread_mutex_unlock(&tok->lock);
    if (!forked)
        return M2MHSM_OK;
    /* Object lock before token lock (p11.h): attaching enumerates the token exclusively. */
    m2mhsm_token_write_begin(tok);
    pthread_mutex_lock(&tok->lock);
    m2mhsm_status st = tok->pid != getpid() ? reattach_after_fork(tok) : M2MHSM_OK;
    pthread_mutex_unlock(&tok->lock);
    m2mhsm_token_write_end(tok);
    return st;
}

static struct timespec deadline_after(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* An idle session (*opening = 0), or a reservation to open one (*opening = 1); when every
 * allowed session is out, wait for one to come back, up to tok->wait_ms. Caller holds
 * tok->lock. */
static m2mhsm_status take_or_reserve(m2mhsm_token *tok, CK_SESSION_HANDLE *out, int *opening)
{
    struct timespec deadline;
    int waited = 0, timed_out = 0;
    for (;;) {
        if (tok->idle_count > 0) {
            *out = tok->idle[--tok->idle_count];
            *opening = 0;
            return M2MHSM_OK;
        }
        if (tok->max_open == 0 || tok->open_count < tok->max_open) {
            tok->open_count++;
            *opening = 1;
            return M2MHSM_OK;
        }
        if (timed_out)
            break;
        if (!waited)
            deadline = deadline_after(tok->wait_ms);
        waited = 1;
        timed_out = pthread_cond_timedwait(&tok->returned, &tok->lock, &deadline) == ETIMEDOUT;
    }
    return m2mhsm_fail(M2MHSM_E_BUSY,
                       "no PKCS#11 session free: all %zu allowed (%s) are in use and none came "
                       "back within %ld ms",
                       tok->max_open,
                       tok->max_open == tok->config_max ? "max_sessions" : "the module's limit",
                       tok->wait_ms);
}

m2mhsm_status m2mhsm_token_session_get(m2mhsm_token *tok, CK_SESSION_HANDLE *out)
{
    m2mhsm_status st = attach_if_forked(tok);
    if (st == M2MHSM_OK)
        st = m2mhsm_token_up(tok); /* a lost token: fail fast, or re-attach */
    for (int opening = 1; st == M2MHSM_OK && opening;) {
        pthread_mutex_lock(&tok->lock);
        st = take_or_reserve(tok, out, &opening);
        pthread_mutex_unlock(&tok->lock);
        if (st != M2MHSM_OK || !opening)
            break;
        /* Sessions of a logged-in application are logged in too (PKCS#11 5.6). Inside an
         * object section like every module call, so that fork's prepare handler waits for it:
         * a module (or p11-kit's managed layer) holding its own lock at fork would deadlock
         * the child. */
        m2mhsm_token_read_begin(tok);
        CK_RV rv =
            tok->fn->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out);
        m2mhsm_token_read_end(tok);
        if (rv == CKR_OK)
            return M2MHSM_OK;
        pthread_mutex_lock(&tok->lock);
        tok->open_count--;
        /* Out of sessions while some of ours are out: other applications use the rest of
         * the module's sessions, so ours are the limit now, and a borrower waits for one. */
        int learnt = rv == CKR_SESSION_COUNT && tok->open_count > 0;
        if (learnt)
            tok->max_open = tok->open_count;
        pthread_cond_signal(&tok->returned);
        pthread_mutex_unlock(&tok->lock);
        if (!learnt)
            st = m2mhsm_fail_ckr("C_OpenSession", rv);
    }
    return st;
}

/* Closed rather than pooled: one fewer open, and a waiter may open another. */
static void close_unpooled(m2mhsm_token *tok, CK_SESSION_HANDLE s)
{
    pthread_mutex_unlock(&tok->lock);
    m2mhsm_token_read_begin(tok);
    tok->fn->C_CloseSession(s);
    m2mhsm_token_read_end(tok);
    pthread_mutex_lock(&tok->lock);
    tok->open_count--;
    pthread_cond_signal(&tok->returned);
}

void m2mhsm_token_session_put(m2mhsm_token *tok, CK_SESSION_HANDLE s)
{
    int lost = m2mhsm_token_note_lost(tok);
    pthread_mutex_lock(&tok->lock);
    if (lost) {
        /* Died with the token: not pooled, since the next generation may reuse its handle.
         * One fewer open, unless the re-attach already forgot it with the rest. */
        if (tok->open_count > tok->idle_count)
            tok->open_count--;
        pthread_cond_signal(&tok->returned);
        pthread_mutex_unlock(&tok->lock);
        return;
    }
    /* Borrowed before a fork and returned in the child: the parent's, meaningless here; so is
     * one beyond what this process opened since it re-attached. */
    if (tok->pid != getpid() || tok->idle_count >= tok->open_count) {
        pthread_mutex_unlock(&tok->lock);
        return;
    }
    if (tok->idle_count == tok->idle_cap) {
        size_t cap = tok->idle_cap ? tok->idle_cap * 2 : 8;
        CK_SESSION_HANDLE *n = realloc(tok->idle, cap * sizeof(*n));
        if (n == NULL) {
            close_unpooled(tok, s);
            pthread_mutex_unlock(&tok->lock);
            return;
        }
        tok->idle = n;
        tok->idle_cap = cap;
    }
    tok->idle[tok->idle_count++] = s;
    pthread_cond_signal(&tok->returned);
    pthread_mutex_unlock(&tok->lock);
}

m2mhsm_status m2mhsm_token_ensure_attached(m2mhsm_token *tok)
{
    m2mhsm_status st = attach_if_forked(tok);
    return st != M2MHSM_OK ? st : m2mhsm_token_up(tok);
}

unsigned m2mhsm_token_generation(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    unsigned g = tok->generation;
    pthread_mutex_unlock(&tok->lock);
    return g;
}

const m2mhsm_token_caps *m2mhsm_token_caps_get(const m2mhsm_token *tok)
{
    return &tok->caps;
}

CK_FUNCTION_LIST *m2mhsm_token_functions(const m2mhsm_token *tok)
{
    return tok->fn;
}

void m2mhsm_token_close(m2mhsm_token *tok)
{
    if (tok == NULL)
        return;
    m2mhsm_forksafe_remove(&tok->fork_token);
    m2mhsm_forksafe_remove(&tok->fork_count);
    m2mhsm_forksafe_remove(&tok->fork_gate);
    if (tok->fn != NULL && tok->initialized_pid == getpid()) {
        for (size_t i = 0; i < tok->idle_count; i++)
            tok->fn->C_CloseSession(tok->idle[i]);
        /* No C_Logout: login state is shared with other users of the module in this
         * process; closing our sessions and finalising our p11-kit handle is enough. */
        if (tok->login_session != CK_INVALID_HANDLE)
            tok->fn->C_CloseSession(tok->login_session);
        p11_kit_module_finalize(tok->fn);
    }
    if (tok->fn != NULL)
        p11_kit_module_release(tok->fn);
    pthread_cond_destroy(&tok->returned);
    pthread_mutex_destroy(&tok->lock);
    m2mhsm_objlock_free(&tok->objlock);
    free(tok->idle);
    free(tok->module_path);
    free(tok->init_args);
    free(tok->token_uri);
    free(tok->pin_source);
    free(tok);
}
