/* Failover: noticing that the token is gone (an HSM restart, a network HSM failing over, a
 * p11-kit server killed) and attaching to it again without a restart of the program. */
#include "p11.h"
#include "../internal.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <p11-kit/p11-kit.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void m2mhsm_token_observe(m2mhsm_token *tok, m2mhsm_token_observer fn, void *arg)
{
    pthread_mutex_lock(&tok->lock);
    tok->lost.fn = fn;
    tok->lost.arg = arg;
    pthread_mutex_unlock(&tok->lock);
}

/* Caller holds tok->lock. The first attempt is due at once: the token may be back already
 * (a failover shorter than the pause between two requests). */
static void mark_down(m2mhsm_token *tok, CK_RV rv, const char *op)
{
    if (tok->lost.down)
        return;
    tok->lost.down = 1;
    tok->lost.rv = rv;
    tok->lost.since_ms = now_ms();
    tok->lost.next_attempt_ms = tok->lost.since_ms;
    if (tok->lost.fn != NULL) {
        char detail[128];
        snprintf(detail, sizeof(detail), "%s: %s", op, m2mhsm_ckr_name(rv));
        tok->lost.fn(tok->lost.arg, M2MHSM_TOKEN_LOST, detail, 0);
    }
}

int m2mhsm_token_note_lost(m2mhsm_token *tok)
{
    char op[64];
    CK_RV rv = m2mhsm_take_lost(op, sizeof(op));
    if (rv == CKR_OK)
        return 0;
    pthread_mutex_lock(&tok->lock);
    mark_down(tok, rv, op);
    pthread_mutex_unlock(&tok->lock);
    return 1;
}

/* The module's sessions, login and object handles all died with the token: forget them
 * (closing them would only fail), finalise, and attach as at open. Caller holds the object
 * write section, then tok->lock.
 * A module that uses OpenSSL in this process (SoftHSM) may leave entries on the thread's
 * OpenSSL error queue while it finalises and initialises again ("DSO support routines::could
 * not load the shared library" from its configuration). The re-attach often runs inside a TLS
 * handshake (a certificate key's signature, a PSK lookup), and libssl reads any entry there
 * as the handshake's own failure (SSL_get_error): what the module left is dropped. */
static m2mhsm_status reattach_steps(m2mhsm_token *tok);

static m2mhsm_status reattach(m2mhsm_token *tok)
{
    ERR_set_mark();
    m2mhsm_status st = reattach_steps(tok);
    ERR_pop_to_mark();
    return st;
}

static m2mhsm_status reattach_steps(m2mhsm_token *tok)
{
    tok->idle_count = 0;
    tok->open_count = 0; /* the borrowed ones die with it (m2mhsm_token_session_put) */
    pthread_cond_broadcast(&tok->returned);
    tok->login_session = CK_INVALID_HANDLE;
    if (tok->initialized_pid == getpid()) {
        p11_kit_module_finalize(tok->fn);
        tok->initialized_pid = 0;
    }
    return m2mhsm_token_attach_in_write(tok);
}

/* Caller holds tok->lock. M2MHSM_OK with *due = 0 when the token is up; *due = 1 when it is
 * down and a reconnect attempt is due; else the fail-fast refusal. */
static m2mhsm_status down_state(m2mhsm_token *tok, int *due)
{
    *due = 0;
    if (!tok->lost.down)
        return M2MHSM_OK;
    int64_t now = now_ms();
    if (now >= tok->lost.next_attempt_ms) {
        *due = 1;
        return M2MHSM_OK;
    }
    return m2mhsm_fail(M2MHSM_E_TOKEN,
                       "token lost (%s) %lld ms ago; next reconnect attempt in %lld ms",
                       m2mhsm_ckr_name(tok->lost.rv), (long long)(now - tok->lost.since_ms),
                       (long long)(tok->lost.next_attempt_ms - now));
}

/* Caller holds the object write section, then tok->lock (lock order, p11.h): re-attaching
 * enumerates the token exclusively. Another thread may have attempted meanwhile, so the
 * state is read again. */
static m2mhsm_status up_in_write(m2mhsm_token *tok)
{
    int due;
    m2mhsm_status st = down_state(tok, &due);
    if (!due)
        return st;
    /* Attempts are spaced from their end: a module slow to refuse cannot take every call. */
    st = reattach(tok);
    int64_t now = now_ms();
    if (st != M2MHSM_OK) {
        tok->lost.next_attempt_ms = now + M2MHSM_RECONNECT_MS;
        char why[256];
        snprintf(why, sizeof(why), "%s", m2mhsm_last_error());
        m2mhsm_take_lost(NULL, 0); /* the attempt's own failures say nothing new */
        return m2mhsm_fail(M2MHSM_E_TOKEN, "token lost (%s) %lld ms ago; reconnect failed: %s",
                           m2mhsm_ckr_name(tok->lost.rv), (long long)(now - tok->lost.since_ms),
                           why);
    }
    tok->generation++;
    tok->lost.down = 0;
    if (tok->lost.fn != NULL)
        tok->lost.fn(tok->lost.arg, M2MHSM_TOKEN_BACK, m2mhsm_ckr_name(tok->lost.rv),
                     (long long)(now - tok->lost.since_ms));
    return M2MHSM_OK;
}

m2mhsm_status m2mhsm_token_up(m2mhsm_token *tok)
{
    int due;
    pthread_mutex_lock(&tok->lock);
    m2mhsm_status st = down_state(tok, &due);
    pthread_mutex_unlock(&tok->lock);
    if (!due)
        return st;
    m2mhsm_token_write_begin(tok);
    pthread_mutex_lock(&tok->lock);
    st = up_in_write(tok);
    pthread_mutex_unlock(&tok->lock);
    m2mhsm_token_write_end(tok);
    return st;
}

m2mhsm_status m2mhsm_token_recover(m2mhsm_token *tok, unsigned generation)
{
    char op[64];
    CK_RV rv = m2mhsm_take_lost(op, sizeof(op));
    pthread_mutex_lock(&tok->lock);
    if (rv != CKR_OK)
        mark_down(tok, rv, op);
    int moved = tok->generation != generation, down = tok->lost.down;
    pthread_mutex_unlock(&tok->lock);
    if (!down)
        return moved ? M2MHSM_OK        /* re-attached since the operation began */
                     : M2MHSM_E_PKCS11; /* not a lost token: the operation's own error stands */
    m2mhsm_status st = m2mhsm_token_up(tok);
    if (st == M2MHSM_OK && m2mhsm_token_generation(tok) == generation)
        st = M2MHSM_E_TOKEN; /* cannot happen: a re-attach bumps the generation */
    return st;
}

int m2mhsm_token_is_down(m2mhsm_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    int down = tok->lost.down;
    pthread_mutex_unlock(&tok->lock);
    return down;
}
