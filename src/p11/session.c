/* Session pool, fork detection, and token teardown. */
#include "p11.h"
#include "../internal.h"

#include <stdlib.h>
#include <unistd.h>
#include <p11-kit/p11-kit.h>

/*
 * PKCS#11 (section 6.7.1, "Applications and processes"): a child process must call
 * C_Initialize itself and may not use its parent's sessions or handles. We drop them
 * without closing (closing would act on the parent's state in some modules), re-initialise
 * and log in again. Caller holds tok->lock.
 */
static m2mhsm_status reattach_after_fork(m2mhsm_token *tok)
{
    tok->idle_count = 0;
    if (tok->initialized_pid != getpid())
        tok->login_session = CK_INVALID_HANDLE; /* the parent's: not ours to close */
    tok->generation++;
    m2mhsm_status st = m2mhsm_objlock_after_fork(&tok->objlock);
    return st != M2MHSM_OK ? st : m2mhsm_token_attach(tok);
}

static m2mhsm_status open_session(m2mhsm_token *tok, CK_SESSION_HANDLE *out)
{
    CK_RV rv =
        tok->fn->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out);
    if (rv != CKR_OK)
        return m2mhsm_fail_ckr("C_OpenSession", rv);
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_token_session_get(m2mhsm_token *tok, CK_SESSION_HANDLE *out)
{
    m2mhsm_status st = M2MHSM_OK;
    pthread_mutex_lock(&tok->lock);
    if (tok->pid != getpid())
        st = reattach_after_fork(tok);
    if (st == M2MHSM_OK)
        st = m2mhsm_token_up_locked(tok); /* a lost token: fail fast, or re-attach */
    if (st == M2MHSM_OK && tok->idle_count > 0) {
        *out = tok->idle[--tok->idle_count];
        pthread_mutex_unlock(&tok->lock);
        return M2MHSM_OK;
    }
    pthread_mutex_unlock(&tok->lock);
    if (st != M2MHSM_OK)
        return st;
    /* Sessions of a logged-in application are logged in too (PKCS#11 5.6). */
    return open_session(tok, out);
}

void m2mhsm_token_session_put(m2mhsm_token *tok, CK_SESSION_HANDLE s)
{
    if (m2mhsm_token_note_lost(tok))
        return; /* died with the token: a handle the next generation may reuse */
    pthread_mutex_lock(&tok->lock);
    if (tok->pid != getpid()) {
        /* Borrowed before a fork, returned in the child: meaningless here. */
        pthread_mutex_unlock(&tok->lock);
        return;
    }
    if (tok->idle_count == tok->idle_cap) {
        size_t cap = tok->idle_cap ? tok->idle_cap * 2 : 8;
        CK_SESSION_HANDLE *n = realloc(tok->idle, cap * sizeof(*n));
        if (n == NULL) {
            pthread_mutex_unlock(&tok->lock);
            tok->fn->C_CloseSession(s);
            return;
        }
        tok->idle = n;
        tok->idle_cap = cap;
    }
    tok->idle[tok->idle_count++] = s;
    pthread_mutex_unlock(&tok->lock);
}

m2mhsm_status m2mhsm_token_ensure_attached(m2mhsm_token *tok)
{
    m2mhsm_status st = M2MHSM_OK;
    pthread_mutex_lock(&tok->lock);
    if (tok->pid != getpid())
        st = reattach_after_fork(tok);
    if (st == M2MHSM_OK)
        st = m2mhsm_token_up_locked(tok);
    pthread_mutex_unlock(&tok->lock);
    return st;
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
    pthread_mutex_destroy(&tok->lock);
    m2mhsm_objlock_free(&tok->objlock);
    free(tok->idle);
    free(tok->module_path);
    free(tok->token_uri);
    free(tok->pin_source);
    free(tok->init_args);
    free(tok);
}
