/* A (D)TLS connection driven by libevent: the handshake, reads and writes step on socket
 * readiness; a handshake paused in an ASYNC job (a MAF fetching Km) resumes on a kick; a
 * deadline closes the connection when its key expires. Callbacks may close the connection;
 * it is freed on a later loop turn, never under the caller's feet. */
#include "app.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <openssl/err.h>

struct app_conns {
    struct event_base *base;
    const app_conn_ops *ops;
    void *arg;
    int handshake_timeout_s;
    app_conn *head;
    size_t count;
    m2mhsm_keystore *watched; /* app_conns_watch */
};

struct app_conn {
    app_conns *set;
    app_conn *prev, *next;
    SSL *ssl;
    int fd, dtls, established, closing, fatal;
    m2mhsm_tls_psk_event psk_event; /* what the PSK callback did (0: it has not run) */
    struct event *io, *timeout, *retransmit, *deadline, *kick;
    char peer[64];
    char why[160];
    char deadline_why[64];
    uint8_t out[4096];
    size_t out_len;
};

static void step(app_conn *c);

/* The connection whose handshake is being stepped: a server's PSK observer runs inside
 * SSL_do_handshake (in the MAF, inside that connection's ASYNC job, which is a fibre on this
 * same thread), so this says which connection the observer's verdict is about. */
static app_conn *stepping;

static int handshake(app_conn *c)
{
    app_conn *outer = stepping;
    stepping = c;
    int r = SSL_do_handshake(c->ssl);
    stepping = outer;
    return r;
}

void app_conn_psk_seen(m2mhsm_tls_psk_event ev)
{
    if (stepping != NULL)
        stepping->psk_event = ev;
    if (ev == M2MHSM_TLS_PSK_ERROR)
        app_metrics_token_error("lookup");
}

/* Every handshake is counted once: ok when it completes, else by why it ended. */
static const char *handshake_result(const app_conn *c)
{
    if (c->psk_event == M2MHSM_TLS_PSK_UNKNOWN)
        return "unknown";
    if (c->psk_event == M2MHSM_TLS_PSK_EXPIRED)
        return "expired";
    return "failed";
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    step(arg);
}

static void finish(app_conn *c)
{
    app_conns *set = c->set;
    /* A paused handshake job whose wait has been answered runs to its end first; the SSL
     * must not be freed under it. */
    if (SSL_waiting_for_async(c->ssl)) {
        ERR_clear_error();
        handshake(c);
        c->fatal = 1;
    }
    if (!c->established)
        app_metrics_handshake(handshake_result(c));
    app_metrics_connections(-1);
    /* close_notify only on a healthy connection (never after a fatal alert). */
    if (c->established && !c->fatal) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }
    if (set->ops->closed != NULL)
        set->ops->closed(c, set->arg, c->why);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        set->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    set->count--;
    event_free(c->io);
    event_free(c->timeout);
    event_free(c->retransmit);
    event_free(c->deadline);
    event_free(c->kick);
    SSL_free(c->ssl);
    close(c->fd);
    ERR_clear_error();
    free(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_conn *c = arg;
    if (!c->closing) {
        step(c);
        return;
    }
    /* A job paused in the handshake must run to its end before the SSL may be freed. */
    if (SSL_waiting_for_async(c->ssl)) {
        ERR_clear_error();
        handshake(c);
        if (SSL_waiting_for_async(c->ssl))
            return;
    }
    finish(c);
}

void app_conn_close(app_conn *c, const char *why)
{
    if (!c->closing) {
        c->closing = 1;
        snprintf(c->why, sizeof(c->why), "%s", why);
    }
    event_del(c->io);
    event_active(c->kick, EV_READ, 0);
}

void app_conn_resume(app_conn *c)
{
    event_active(c->kick, EV_READ, 0);
}

static void fail(app_conn *c, const char *what)
{
    char why[160];
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(why, sizeof(why), "%s: %s", what, reason != NULL ? reason : "connection lost");
    c->fatal = 1;
    app_conn_close(c, why);
}

static void arm_retransmit(app_conn *c)
{
    struct timeval tv;
    if (c->dtls && !c->established && DTLSv1_get_timeout(c->ssl, &tv) == 1)
        evtimer_add(c->retransmit, &tv);
}

/* After an SSL call returned r <= 0: wait for what it needs, or close. */
static void wait_for(app_conn *c, int r, const char *what)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        event_del(c->io);
        event_assign(c->io, c->set->base, c->fd, EV_READ, on_io, c);
        event_add(c->io, NULL);
        arm_retransmit(c);
        return;
    case SSL_ERROR_WANT_WRITE:
        event_del(c->io);
        event_assign(c->io, c->set->base, c->fd, EV_WRITE, on_io, c);
        event_add(c->io, NULL);
        return;
    case SSL_ERROR_WANT_ASYNC:
        /* Resumed by app_conn_resume. The peer's flight has arrived, so there is nothing to
         * retransmit meanwhile (and the SSL must not be driven under its paused job); the
         * timer is armed again when the handshake next waits for the peer. */
        event_del(c->io);
        evtimer_del(c->retransmit);
        return;
    case SSL_ERROR_ZERO_RETURN:
        app_conn_close(c, "peer closed");
        return;
    default:
        fail(c, what);
    }
}

static int flush(app_conn *c)
{
    if (c->out_len == 0)
        return 1;
    ERR_clear_error();
    int r = SSL_write(c->ssl, c->out, (int)c->out_len);
    if (r > 0) {
        c->out_len = 0;
        return 1;
    }
    wait_for(c, r, "write failed");
    return 0;
}

static void read_all(app_conn *c)
{
    uint8_t buf[4096];
    while (!c->closing && flush(c)) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r <= 0) {
            wait_for(c, r, "read failed");
            return;
        }
        if (c->set->ops->data != NULL)
            c->set->ops->data(c, c->set->arg, buf, (size_t)r);
    }
}

static void step(app_conn *c)
{
    if (c->closing)
        return;
    if (!c->established) {
        ERR_clear_error();
        int r = handshake(c);
        if (r != 1) {
            wait_for(c, r, "handshake failed");
            return;
        }
        c->established = 1;
        app_metrics_handshake("ok");
        evtimer_del(c->timeout);
        evtimer_del(c->retransmit);
        if (c->set->ops->established != NULL)
            c->set->ops->established(c, c->set->arg);
    }
    read_all(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_conn *c = arg;
    c->fatal = 1;
    app_conn_close(c, "handshake timeout");
}

static void on_retransmit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_conn *c = arg;
    if (DTLSv1_handle_timeout(c->ssl) < 0) {
        fail(c, "DTLS retransmission failed");
        return;
    }
    arm_retransmit(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_conn *c = arg;
    app_conn_close(c, c->deadline_why);
}

app_conns *app_conns_new(struct event_base *base, const app_conn_ops *ops, void *arg,
                         int handshake_timeout_s)
{
    app_conns *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return NULL;
    set->base = base;
    set->ops = ops;
    set->arg = arg;
    set->handshake_timeout_s = handshake_timeout_s;
    return set;
}

app_conn *app_conn_start(app_conns *set, SSL *ssl, int fd, int dtls, const char *peer)
{
    /* A DTLS SSL arrives from DTLSv1_listen with its BIO and in its accept state. */
    app_conn *c = dtls || SSL_set_fd(ssl, fd) == 1 ? calloc(1, sizeof(*c)) : NULL;
    if (!dtls) {
        /* Small writes after the last flight (a greeting) must not wait for the peer's
         * delayed ACK (Nagle): that alone cost 40 ms per connection. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SSL_set_accept_state(ssl);
    }
    if (c != NULL) {
        c->io = event_new(set->base, fd, EV_READ, on_io, c);
        c->timeout = evtimer_new(set->base, on_timeout, c);
        c->retransmit = evtimer_new(set->base, on_retransmit, c);
        c->deadline = evtimer_new(set->base, on_deadline, c);
        c->kick = event_new(set->base, -1, 0, on_kick, c);
    }
    if (c == NULL || c->io == NULL || c->timeout == NULL || c->retransmit == NULL ||
        c->deadline == NULL || c->kick == NULL) {
        if (c != NULL) {
            event_free(c->io);
            event_free(c->timeout);
            event_free(c->retransmit);
            event_free(c->deadline);
            event_free(c->kick);
            free(c);
        }
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    c->set = set;
    c->ssl = ssl;
    c->fd = fd;
    c->dtls = dtls;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    SSL_set_app_data(ssl, c);
    c->next = set->head;
    if (set->head != NULL)
        set->head->prev = c;
    set->head = c;
    set->count++;
    app_metrics_connections(1);
    struct timeval tv = {set->handshake_timeout_s, 0};
    evtimer_add(c->timeout, &tv);
    event_active(c->kick, EV_READ, 0);
    return c;
}

SSL *app_conn_ssl(app_conn *c)
{
    return c->ssl;
}

const char *app_conn_peer(const app_conn *c)
{
    return c->peer;
}

app_conn *app_conn_of(SSL *ssl)
{
    return SSL_get_app_data(ssl);
}

void app_conn_write(app_conn *c, const void *buf, size_t len)
{
    if (c->closing)
        return;
    if (len > sizeof(c->out) - c->out_len) {
        app_conn_close(c, "peer does not read");
        return;
    }
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    if (c->established)
        event_active(c->kick, EV_READ, 0);
}

void app_conn_deadline(app_conn *c, m2mhsm_time t, const char *why)
{
    struct timeval now, tv = {0, 0};
    snprintf(c->deadline_why, sizeof(c->deadline_why), "%s", why);
    if (t == M2MHSM_NEVER) {
        evtimer_del(c->deadline);
        return;
    }
    gettimeofday(&now, NULL);
    int64_t us = ((int64_t)t - now.tv_sec) * 1000000 - now.tv_usec;
    if (us > 0) {
        tv.tv_sec = us / 1000000;
        tv.tv_usec = us % 1000000;
    }
    evtimer_add(c->deadline, &tv);
}

size_t app_conns_count(const app_conns *set)
{
    return set->count;
}

void app_conns_shutdown(app_conns *set)
{
    for (app_conn *c = set->head; c != NULL; c = c->next)
        app_conn_close(c, "shutting down");
}

/* A record left the token: no connection runs on on its key any longer (the close happens
 * on a later loop turn, so this is safe inside another connection's handshake job). */
static void close_keyed(void *arg, const m2mhsm_record *rec, m2mhsm_gone how)
{
    app_conns *set = arg;
    (void)how;
    for (app_conn *c = set->head; c != NULL; c = c->next)
        if (!c->closing && m2mhsm_tls_ssl_keyed_with(c->ssl, rec->record_id))
            app_conn_close(c, APP_CONN_KEY_ERASED);
}

int app_conns_watch(app_conns *set, m2mhsm_keystore *ks)
{
    if (m2mhsm_keystore_watch(ks, close_keyed, set) != M2MHSM_OK)
        return -1;
    set->watched = ks;
    return 0;
}

void app_conns_free(app_conns *set)
{
    if (set == NULL)
        return;
    if (set->watched != NULL)
        m2mhsm_keystore_unwatch(set->watched, close_keyed, set);
    while (set->head != NULL) {
        if (!set->head->closing)
            snprintf(set->head->why, sizeof(set->head->why), "shutting down");
        set->head->closing = 1;
        finish(set->head);
    }
    free(set);
}

/* Graceful shutdown: the loop ends once every connection has closed, or after the grace. */
static struct {
    app_conns *set;
    struct timeval until;
} drain;

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct event_base *base = arg;
    struct timeval now, tick = {0, 50000};
    gettimeofday(&now, NULL);
    if (drain.set == NULL || drain.set->count == 0 || !timercmp(&now, &drain.until, <))
        event_base_loopexit(base, NULL);
    else
        event_base_once(base, -1, EV_TIMEOUT, drain_check, base, &tick);
}

void app_conns_drain(struct event_base *base, app_conns *set, int grace_s)
{
    struct timeval now, grace = {grace_s, 0};
    if (set != NULL)
        app_conns_shutdown(set);
    gettimeofday(&now, NULL);
    timeradd(&now, &grace, &drain.until);
    drain.set = set;
    drain_check(-1, 0, base);
}
