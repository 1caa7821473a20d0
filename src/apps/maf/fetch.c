/* Km from the MEF (TS-0003 8.3.2.1): GET /fetchCredentials/<KeID>/21 over mutually
 * authenticated HTTPS, X-M2M-Origin = this MAF-ID; an Enrolee B asks for Kpsa with SUID 22
 * and its CSE-ID/AE-ID as the originator. The reply's key goes into the token with a
 * lifetime no longer than the one received (the CR), and every handshake waiting for that
 * KeID resumes. One request per KeID however many handshakes wait; a bounded number in
 * flight, so unknown identities cannot flood the MEF.
 *
 * A fetch's life: fetch_for (inside the paused handshake) only records it and arms `start`;
 * start_request runs on the event loop, never in a handshake's job; libevent may report a
 * failure synchronously inside evhttp_make_request, which is noted (`starting`) and
 * completed after the call returns; complete() ends it exactly once. */
#include "maf.h"
#include "reply.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/async.h>

typedef struct maf_waiter {
    struct maf_waiter *next;
    app_conn *conn;
    int done, ok;
} maf_waiter;

struct maf_fetch {
    maf_fetch *next;
    maf *m;
    maf_mef mef; /* a copy: a reload may change the list while the fetch runs */
    char ke_id[M2MHSM_KE_ID_MAX + 1];
    maf_waiter *waiters;
    struct event *start;
    struct evhttp_connection *http; /* ours until the request is made; libevent's after */
    int starting, failed_early;
    /* m2m_fetches_total{result}: ok (key stored), refused (the MEF said no), error (no usable
     * reply: unreachable, TLS, timeout, malformed, not stored, or stopped at shutdown) */
    const char *result;
    double t0; /* app_clock() when the request started (m2m_fetch_seconds) */
};

static void complete(maf_fetch *f, int ok)
{
    maf *m = f->m;
    app_metrics_fetch(f->result, f->t0);
    event_free(f->start);
    for (maf_fetch **p = &m->fetches; *p != NULL; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    m->nfetches--;
    for (maf_waiter *w = f->waiters; w != NULL; w = w->next) {
        w->done = 1;
        w->ok = ok;
        app_conn_resume(w->conn);
    }
    free(f);
}

static int store(maf_fetch *f, const maf_reply *r)
{
    maf *m = f->m;
    m2mhsm_record rec;
    m2mhsm_time expiry;
    if (!maf_reply_expiry(r, m->cfg.max_lifetime_s, m2mhsm_keystore_now(m->store.ks), &expiry)) {
        app_log(APP_ERROR, "fetch-failed", "ke_id=%s reason=%s", f->ke_id,
                "no lifetime from the MEF and no max_lifetime: the key would never expire");
        return 0;
    }
    m2mhsm_fetched_key fk = {m->role->kind,    f->ke_id, r->enrolee_id,
                             m->cfg.target_id, expiry,   M2MHSM_NEVER};
    m2mhsm_status st = APP_TOKEN(
        "store", m2mhsm_keystore_store_fetched(m->store.ks, &fk, r->key, sizeof(r->key), &rec));
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "fetch-failed", "ke_id=%s reason=store error=%s", f->ke_id,
                app_error(st));
        return 0;
    }
    char ts[M2MHSM_TIMESTAMP_LEN], given[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_timestamp_format(rec.expiry, ts, sizeof(ts));
    if (r->has_lifetime)
        m2mhsm_timestamp_format(r->lifetime, given, sizeof(given));
    else
        strcpy(given, "-");
    app_log(APP_INFO, "fetched", "ke_id=%s enrolee_id=%s lifetime=%s expiry=%s key=%s", f->ke_id,
            rec.enrolee_id[0] ? rec.enrolee_id : "-", given, ts, m2mhsm_kind_name(rec.kind));
    return 1;
}

/* The MEF said no (unknown, expired, not ours): a replay of that KeID within the TTL is
 * refused here without asking again. */
static void remember_refusal(maf *m, const char *ke_id)
{
    maf_refused *r = &m->refused[m->refused_next];
    m->refused_next = (m->refused_next + 1) % MAF_REFUSED_SLOTS;
    strcpy(r->ke_id, ke_id);
    r->until = m2mhsm_keystore_now(m->store.ks) + MAF_REFUSED_TTL_S;
}

static int refused_recently(const maf *m, const char *ke_id)
{
    m2mhsm_time now = m2mhsm_keystore_now(m->store.ks);
    for (size_t i = 0; i < MAF_REFUSED_SLOTS; i++)
        if (m->refused[i].until > now && strcmp(m->refused[i].ke_id, ke_id) == 0)
            return 1;
    return 0;
}

/* The reply's status and body, parsed; the body is copied out and wiped in libevent's
 * buffers and ours: it carried Km in base64. */
static maf_reply_kind take_reply(struct evhttp_request *req, maf_reply *r)
{
    char body[MAF_REPLY_MAX];
    size_t len = 0;
    if (req == NULL)
        return maf_reply_parse(0, NULL, 0, r);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t got = evbuffer_get_length(in);
    if (got <= sizeof(body) && evbuffer_copyout(in, body, got) == (ev_ssize_t)got)
        len = got;
    maf_reply_kind kind = maf_reply_parse(evhttp_request_get_response_code(req), body, len, r);
    OPENSSL_cleanse(body, sizeof(body));
    struct evbuffer_iovec v[16];
    int n = evbuffer_peek(in, -1, NULL, v, 16);
    for (int i = 0; i < n && i < 16; i++)
        OPENSSL_cleanse(v[i].iov_base, v[i].iov_len);
    evbuffer_drain(in, got);
    return kind;
}

static void reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maf *m = arg;
    while (m->nspent > 0)
        evhttp_connection_free(m->spent[--m->nspent]);
}

/* A connection is freed after its request's callback has returned: libevent does not free it
 * after a failed connect, and must not be freed under its own callback. */
static void retire(maf *m, struct evhttp_connection *http)
{
    struct timeval now = {0, 0};
    if (m->nspent == m->capspent) {
        size_t cap = m->capspent ? 2 * m->capspent : 16;
        struct evhttp_connection **grown = realloc(m->spent, cap * sizeof(*grown));
        if (grown == NULL) {
            app_log(APP_ERROR, "fetch-leak", "reason=\"out of memory retiring a connection\"");
            return;
        }
        m->spent = grown;
        m->capspent = cap;
    }
    m->spent[m->nspent++] = http;
    evtimer_add(m->reaper, &now);
}

static void on_reply(struct evhttp_request *req, void *arg)
{
    maf_fetch *f = arg;
    maf_reply r;
    int ok = 0;
    maf_reply_kind kind = take_reply(req, &r);
    if (f->http != NULL)
        retire(f->m, f->http);
    f->http = NULL;
    if (kind == MAF_REPLY_KM) {
        ok = store(f, &r);
        f->result = ok ? "ok" : "error";
    } else if (kind == MAF_REPLY_MALFORMED) {
        app_log(APP_ERROR, "fetch-failed", "ke_id=%s reason=\"malformed reply\"", f->ke_id);
    } else {
        app_log(APP_WARN, "fetch-failed", "ke_id=%s status=%d reason=%s", f->ke_id, r.code,
                r.code == 0 ? "MEF unreachable or TLS failed" : r.why); /* app_log quotes it */
        if (maf_reply_is_refusal(r.code)) {
            remember_refusal(f->m, f->ke_id);
            f->result = "refused";
        }
    }
    maf_reply_clear(&r);
    if (f->starting)
        f->failed_early = 1; /* inside evhttp_make_request: start_request completes it */
    else
        complete(f, ok);
}

static const maf_mef *mef_for(const maf *m, const char *ke_id)
{
    const char *at = strchr(ke_id, '@');
    for (size_t i = 0; at != NULL && i < m->cfg.nmefs; i++)
        if (strcmp(m->cfg.mefs[i].fqdn, at + 1) == 0)
            return &m->cfg.mefs[i];
    return NULL;
}

static int request(maf_fetch *f, const maf_mef *mef)
{
    maf *m = f->m;
    char path[sizeof(f->ke_id) + 32];
    SSL *ssl = SSL_new(m->mef_ctx);
    if (ssl == NULL || !SSL_set_tlsext_host_name(ssl, mef->fqdn) ||
        !SSL_set1_host(ssl, mef->fqdn)) {
        SSL_free(ssl);
        return -1;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        m->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return -1; /* ssl was freed with it */
    /* mef->host is the numeric address resolved at start: no DNS on the event loop. */
    f->http = evhttp_connection_base_bufferevent_new(m->base, NULL, bev, mef->host,
                                                     (unsigned short)mef->port);
    if (f->http == NULL) {
        bufferevent_free(bev);
        return -1;
    }
    evhttp_connection_set_timeout(f->http, (int)m->cfg.fetch_timeout_s);
    evhttp_connection_set_max_body_size(f->http, MAF_REPLY_MAX);
    evhttp_connection_set_retries(f->http, 0);
    struct evhttp_request *req = evhttp_request_new(on_reply, f);
    struct evkeyvalq *h = req != NULL ? evhttp_request_get_output_headers(req) : NULL;
    snprintf(path, sizeof(path), "/fetchCredentials/%s/%s", f->ke_id, m->role->suid);
    if (h == NULL || evhttp_add_header(h, "Host", mef->fqdn) != 0 ||
        evhttp_add_header(h, "X-M2M-Origin", m->cfg.target_id) != 0 ||
        evhttp_add_header(h, "Accept", "application/json") != 0 ||
        /* One request per connection: the MEF closes it after replying, and retire()
         * frees it (and the SSL holding the token key's reference) right after. */
        evhttp_add_header(h, "Connection", "close") != 0 ||
        evhttp_make_request(f->http, req, EVHTTP_REQ_GET, path) != 0) {
        if (f->http != NULL) /* not handed over: a failed make_request frees only req */
            evhttp_connection_free(f->http);
        f->http = NULL;
        return -1;
    }
    return 0;
}

static void start_request(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maf_fetch *f = arg;
    f->starting = 1;
    f->t0 = app_clock();
    int rc = request(f, &f->mef);
    f->starting = 0;
    if (rc != 0)
        app_log(APP_ERROR, "fetch-failed", "ke_id=%s reason=\"cannot start request\"", f->ke_id);
    if (rc != 0 || f->failed_early)
        complete(f, 0);
}

static maf_fetch *fetch_for(maf *m, const char *ke_id)
{
    for (maf_fetch *f = m->fetches; f != NULL; f = f->next)
        if (strcmp(f->ke_id, ke_id) == 0)
            return f;
    if (refused_recently(m, ke_id)) {
        app_metrics_fetch("skipped", -1);
        app_log(APP_WARN, "fetch-skipped", "ke_id=%s reason=\"refused by the MEF recently\"",
                ke_id);
        return NULL;
    }
    const maf_mef *mef = mef_for(m, ke_id);
    if (mef == NULL) {
        app_metrics_fetch("skipped", -1);
        app_log(APP_WARN, "fetch-skipped", "ke_id=%s reason=\"KeID names no configured MEF\"",
                ke_id);
        return NULL;
    }
    if (m->nfetches >= (size_t)m->cfg.max_fetches) {
        app_metrics_fetch("skipped", -1);
        app_log(APP_WARN, "fetch-skipped", "ke_id=%s reason=\"too many fetches in flight\"", ke_id);
        return NULL;
    }
    maf_fetch *f = calloc(1, sizeof(*f));
    struct timeval now = {0, 0};
    if (f == NULL || (f->start = evtimer_new(m->base, start_request, f)) == NULL ||
        evtimer_add(f->start, &now) != 0) {
        if (f != NULL && f->start != NULL)
            event_free(f->start);
        free(f);
        return NULL;
    }
    f->m = m;
    f->mef = *mef;
    f->result = "error";
    f->t0 = -1;
    strcpy(f->ke_id, ke_id);
    f->next = m->fetches;
    m->fetches = f;
    m->nfetches++;
    return f;
}

int maf_fetch_resolve(void *arg, SSL *ssl, const char *identity)
{
    maf *m = arg;
    app_conn *c = app_conn_of(ssl);
    char ke_id[M2MHSM_KE_ID_MAX + 1];
    /* Outside an ASYNC job the handshake cannot wait: refuse (the device retries). */
    if (c == NULL || ASYNC_get_current_job() == NULL ||
        m2mhsm_id_canonical(M2MHSM_ID_KE, identity, strlen(identity), ke_id, sizeof(ke_id)) !=
            M2MHSM_OK)
        return 0;
    maf_fetch *f = fetch_for(m, ke_id);
    if (f == NULL)
        return 0;
    maf_waiter w = {.next = f->waiters, .conn = c};
    f->waiters = &w;
    while (!w.done)
        ASYNC_pause_job();
    return w.ok;
}

int maf_fetch_init(maf *m)
{
    m->mef_ctx = app_certkey_ctx(m->store.tok, &m->cfg.ck, 0);
    m->reaper = evtimer_new(m->base, reap, m);
    return m->mef_ctx != NULL && m->reaper != NULL ? 0 : -1;
}

void maf_fetch_stop(maf *m)
{
    while (m->fetches != NULL) {
        maf_fetch *f = m->fetches;
        if (f->http != NULL)
            evhttp_connection_free(f->http); /* pending request freed without callback */
        complete(f, 0);
    }
    reap(-1, 0, m);
}

void maf_fetch_free(maf *m)
{
    maf_fetch_stop(m);
    if (m->reaper != NULL)
        event_free(m->reaper);
    m->reaper = NULL;
    free(m->spent);
    m->spent = NULL;
}
