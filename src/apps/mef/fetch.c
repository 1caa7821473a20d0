/* "Use of Remotely Provisioned Credential" (TS-0003 8.3.2.1; project decision in the
 * TS-0003 notes §7): an Enrolment Target retrieves /fetchCredentials/<KeID>/<SUID> over
 * mutually authenticated HTTPS. The MEF checks that the authenticated originator is the
 * Enrolee's configured Enrolment Target, derives Km (SUID 21, 10.3.2) or Kpsa (SUID 22,
 * 10.3.3) on the token from Ke, and answers with the key and its lifetime (= Ke's expiry,
 * the CR). HTTP is libevent's evhttp over bufferevent_openssl; JSON is jansson. */
#include "mef.h"
#include "request.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

typedef struct {
    struct evhttp_request *req;
    mef_request r;
    int code; /* the status answered (m2m_fetches_total) */
} fetch_req;

static void body_free(const void *data, size_t len, void *extra)
{
    (void)extra;
    OPENSSL_cleanse((void *)data, len);
    free((void *)data);
}

/* The body goes out by reference and is wiped once sent: it may hold a credential. Returns
 * the status sent. */
static int send_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
    size_t n = body != NULL ? json_dumpb(body, NULL, 0, JSON_COMPACT) : 0;
    char *text = n > 0 ? malloc(n) : NULL;
    struct evbuffer *out = evbuffer_new();
    if (text != NULL && json_dumpb(body, text, n, JSON_COMPACT) != n) {
        free(text);
        text = NULL;
    }
    json_decref(body);
    if (text == NULL || out == NULL) {
        free(text);
        evbuffer_free(out);
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return HTTP_INTERNAL;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add_reference(out, text, n, body_free, NULL);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
    return code;
}

static void refuse(fetch_req *f, int code, const char *reason, const char *why)
{
    app_log(APP_WARN, "fetch-refused",
            "ke_id=%.79s originator=%.79s suid=%.79s status=%d reason=%s", f->r.ke_id, f->r.origin,
            f->r.suid != NULL ? f->r.suid : "-", code, why);
    f->code =
        send_json(f->req, code, reason, json_pack("{s:b,s:s}", "status", 0, "errorString", why));
}

/* The X.509 identity of the TLS peer (a DNS subjectAltName; never the subject CN, no
 * wildcards) must be the originator's FQDN: the MAF-ID itself, or the host part of an absolute
 * CSE-ID/AE-ID (//fqdn/...) for an Enrolee B. */
static int originator_authenticated(struct evhttp_request *req, const char *origin)
{
    char host[M2MHSM_FQDN_MAX + 1];
    size_t len = mef_origin_host(origin, host);
    if (len == 0)
        return 0;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(req));
    SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
    X509 *peer = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    return peer != NULL && SSL_get_verify_result(ssl) == X509_V_OK &&
           X509_check_host(peer, host, len,
                           X509_CHECK_FLAG_NO_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                           NULL) == 1;
}

/* "/fetchCredentials/<KeID>/<SUID>" → f; 0 on success, else a refusal was sent. */
static int parse_target(mef *m, fetch_req *f)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(f->req);
    mef_refusal no;
    if (mef_request_target(uri != NULL ? evhttp_uri_get_path(uri) : NULL, m->cfg.fqdn, &f->r,
                           &no) != 0) {
        refuse(f, no.code, no.reason, no.why);
        return -1;
    }
    return 0;
}

/* X-M2M-Origin: present, well-formed, and proven by the client certificate. */
static int parse_origin(fetch_req *f)
{
    const char *o = evhttp_find_header(evhttp_request_get_input_headers(f->req), "X-M2M-Origin");
    mef_refusal no;
    if (mef_request_origin(o, &f->r, &no) != 0) {
        refuse(f, no.code, no.reason, no.why);
        return -1;
    }
    if (!originator_authenticated(f->req, f->r.origin)) {
        refuse(f, 403, "Forbidden", "originator not authenticated by the client certificate");
        return -1;
    }
    return 0;
}

/* The Ke, valid, and this originator its Enrolment Target; 0 or a refusal was sent. */
static int authorise(mef *m, fetch_req *f, m2mhsm_record *ke)
{
    m2mhsm_status st =
        APP_TOKEN("lookup", m2mhsm_keystore_lookup(m->store.ks, M2MHSM_KIND_KE, f->r.ke_id,
                                                   strlen(f->r.ke_id), ke));
    if (st == M2MHSM_E_NOT_FOUND) {
        refuse(f, HTTP_NOTFOUND, "Not Found", "unknown KeID");
        return -1;
    }
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "token-error", "op=lookup error=%s", app_error(st));
        refuse(f, HTTP_INTERNAL, "Internal Server Error", "key store unavailable");
        return -1;
    }
    /* Only the Enrolee's own target learns that its enrolment expired (and triggers the
     * erase); anyone else is refused first. */
    if (strcmp(ke->target_id, f->r.origin) != 0) {
        refuse(f, 403, "Forbidden", "originator is not this Enrolee's Enrolment Target");
        return -1;
    }
    if (!m2mhsm_record_valid(m->store.ks, ke)) {
        mef_erase_expired(m, ke, "fetch");
        refuse(f, 410, "Gone", "Enrolment Expiry passed; the enrolment was erased");
        return -1;
    }
    int is_maf = m2mhsm_id_check_str(M2MHSM_ID_FQDN, f->r.origin) == M2MHSM_OK;
    if (is_maf != f->r.km) {
        refuse(f, HTTP_BADREQUEST, "Bad Request",
               is_maf ? "a MAF fetches SUID 21" : "an Enrolee B fetches SUID 22");
        return -1;
    }
    return 0;
}

static void deliver(mef *m, fetch_req *f, const m2mhsm_record *ke)
{
    uint8_t key[M2MHSM_KEY_LEN];
    char b64[4 * ((M2MHSM_KEY_LEN + 2) / 3) + 1], lifetime[M2MHSM_TIMESTAMP_LEN];
    m2mhsm_derivation which = f->r.km ? M2MHSM_DERIVE_KM : M2MHSM_DERIVE_KPSA;
    m2mhsm_status st =
        APP_TOKEN("derive", m2mhsm_keystore_derive(m->store.ks, ke, which, f->r.origin, key));
    if (st != M2MHSM_OK) {
        app_log(APP_ERROR, "token-error", "op=derive ke_id=%s error=%s", f->r.ke_id, app_error(st));
        refuse(f, HTTP_INTERNAL, "Internal Server Error", "derivation failed");
        return;
    }
    EVP_EncodeBlock((unsigned char *)b64, key, sizeof(key));
    OPENSSL_cleanse(key, sizeof(key));
    m2mhsm_timestamp_format(ke->expiry, lifetime, sizeof(lifetime));
    json_t *body = json_pack("{s:b,s:s,s:s,s:s}", "status", 1, "credential", b64, "enroleeID",
                             ke->enrolee_id, "lifetime", lifetime);
    OPENSSL_cleanse(b64, sizeof(b64));
    app_log(APP_INFO, "fetched", "ke_id=%s suid=%s originator=%s enrolee_id=%s lifetime=%s",
            f->r.ke_id, f->r.suid, f->r.origin, ke->enrolee_id, lifetime);
    f->code = send_json(f->req, HTTP_OK, "OK", body);
}

static void answer(mef *m, fetch_req *f)
{
    m2mhsm_record ke;
    if (evhttp_request_get_command(f->req) != EVHTTP_REQ_GET) {
        refuse(f, 405, "Method Not Allowed", "only GET");
        return;
    }
    if (parse_target(m, f) != 0 || parse_origin(f) != 0 || authorise(m, f, &ke) != 0)
        return;
    deliver(m, f, &ke);
}

/* m2m_fetches_total{result}: ok (200, a credential), error (5xx: the token or the server
 * failed), refused (any other answer); m2m_fetch_seconds: from the parsed request to the
 * queued answer. */
static void on_request(struct evhttp_request *req, void *arg)
{
    fetch_req f = {.req = req};
    double t0 = app_clock();
    answer(arg, &f);
    app_metrics_fetch(f.code == HTTP_OK ? "ok" : f.code >= 500 ? "error" : "refused", t0);
}

/* Every HTTPS connection ends at most HTTPS_DEADLINE_S after it was accepted, however slowly
 * its peer sends (evhttp's own timeout restarts with every byte), and at most max_connections
 * are open: the socket is shut down, evhttp sees the end and frees the connection, and with
 * it the SSL, whose ex_data free hook then drops the timer. */
#define HTTPS_DEADLINE_S 10

static int guard_index = -1;
static size_t https_open;

static void guard_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr == NULL)
        return;
    event_free(ptr);
    https_open--;
    app_metrics_connections(-1);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    int sfd = SSL_get_fd(arg);
    if (sfd >= 0)
        shutdown(sfd, SHUT_RDWR);
}

/* evhttp serves plain HTTP on a connection whose bevcb returns NULL: never let that happen. */
static void fatal(const char *what)
{
    app_log(APP_ERROR, "fatal", "reason=%s", what);
    exit(EXIT_FAILURE);
}

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    mef *m = arg;
    SSL *ssl = SSL_new(m->https_ctx);
    struct event *deadline = ssl != NULL ? evtimer_new(base, on_deadline, ssl) : NULL;
    if (deadline == NULL || !SSL_set_ex_data(ssl, guard_index, deadline))
        fatal("cannot set up an HTTPS connection");
    struct timeval tv = {HTTPS_DEADLINE_S, 0};
    app_metrics_connections(1);
    if (++https_open > (size_t)m->cfg.max_connections) {
        app_log(APP_WARN, "connection-refused", "service=https reason=max_connections limit=%lld",
                m->cfg.max_connections);
        tv.tv_sec = 0;
    }
    evtimer_add(deadline, &tv);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        fatal("cannot set up an HTTPS connection");
    return bev;
}

int mef_fetch_start(mef *m)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (guard_index < 0)
        guard_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, guard_free);
    if (guard_index < 0 || app_addr_parse(m->cfg.https, &ss, &sl) != 0 ||
        (m->https_ctx = app_certkey_ctx(m->store.tok, &m->cfg.ck, 1)) == NULL ||
        (m->http = evhttp_new(m->base)) == NULL)
        return -1;
    evhttp_set_bevcb(m->http, tls_bev, m);
    evhttp_set_gencb(m->http, on_request, m);
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(m->http, 8192);
    evhttp_set_max_body_size(m->http, 4096);
    evhttp_set_timeout(m->http, 10);
    int fd = app_listen(&ss, sl, SOCK_STREAM);
    struct evhttp_bound_socket *bound =
        fd >= 0 ? evhttp_accept_socket_with_handle(m->http, fd) : NULL;
    if (bound == NULL) {
        app_log(APP_ERROR, "listen-failed", "address=%s", m->cfg.https);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    m->https_listener = evhttp_bound_socket_get_listener(bound);
    if (app_listener_guard(m->base, m->https_listener) != 0)
        return -1;
    app_log(APP_INFO, "listening", "service=fetchCredentials transport=https address=%s",
            m->cfg.https);
    app_notify_listener("fetchCredentials", "https", m->cfg.https);
    return 0;
}

void mef_fetch_stop(mef *m)
{
    if (m->https_listener != NULL)
        app_listener_unguard(m->https_listener);
    m->https_listener = NULL;
    if (m->http != NULL)
        evhttp_free(m->http);
    m->http = NULL;
}
