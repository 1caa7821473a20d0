/* The servers' metrics: a small registry of counters, gauges and histograms kept in memory,
 * its Prometheus text exposition (format 0.0.4), the figures m2m-mef and m2m-maf keep, and
 * an evhttp listener that serves them. The HTTP handler only formats what is in memory: it
 * never calls the token, so a slow or failing HSM cannot stall a scrape, and a scrape
 * cannot stall the event loop on the token. Nothing secret is a label: no identity, KeID or
 * key; label values are the fixed words documented in docs/architecture.md. */
#include "app.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SERIES_MAX 16
#define VALUE_MAX 64

typedef struct {
    char value[VALUE_MAX]; /* the label's value ("" without a label) */
    double v;              /* counter, gauge */
    uint64_t count;        /* histogram: observations */
    double sum;
    uint64_t in_bucket[APP_METRIC_BUCKETS_MAX]; /* not cumulative: cumulated when written */
} series;

struct app_metric {
    app_metric *next;
    const char *name, *help, *label;
    app_metric_type type;
    double le[APP_METRIC_BUCKETS_MAX];
    size_t nle;
    series s[SERIES_MAX];
    size_t ns;
};

struct app_metrics {
    app_metric *head, *tail;
};

app_metrics *app_metrics_new(void)
{
    return calloc(1, sizeof(app_metrics));
}

void app_metrics_free(app_metrics *r)
{
    if (r == NULL)
        return;
    while (r->head != NULL) {
        app_metric *m = r->head;
        r->head = m->next;
        free(m);
    }
    free(r);
}

/* The series of a label value, added at 0 when new; NULL when the family is full. */
static series *series_of(app_metric *m, const char *value)
{
    if (value == NULL)
        value = "";
    for (size_t i = 0; i < m->ns; i++)
        if (strcmp(m->s[i].value, value) == 0)
            return &m->s[i];
    if (m->ns == SERIES_MAX || strlen(value) >= VALUE_MAX || (m->label == NULL) != (*value == 0))
        return NULL;
    series *s = &m->s[m->ns++];
    memset(s, 0, sizeof(*s));
    strcpy(s->value, value);
    return s;
}

app_metric *app_metric_add(app_metrics *r, const char *name, const char *help, app_metric_type type,
                           const char *label, const char *const *values, const double *buckets,
                           size_t nbuckets)
{
    if (r == NULL || name == NULL || help == NULL || nbuckets > APP_METRIC_BUCKETS_MAX ||
        (type == APP_HISTOGRAM) != (nbuckets > 0))
        return NULL;
    for (size_t i = 1; i < nbuckets; i++)
        if (!(buckets[i - 1] < buckets[i]))
            return NULL;
    app_metric *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->name = name;
    m->help = help;
    m->label = label;
    m->type = type;
    m->nle = nbuckets;
    if (nbuckets > 0)
        memcpy(m->le, buckets, nbuckets * sizeof(*buckets));
    if (label == NULL)
        series_of(m, NULL);
    for (size_t i = 0; label != NULL && values != NULL && values[i] != NULL; i++)
        series_of(m, values[i]);
    if (r->tail != NULL)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    return m;
}

void app_metric_inc(app_metric *m, const char *value, double by)
{
    series *s = m != NULL && m->type != APP_HISTOGRAM ? series_of(m, value) : NULL;
    if (s != NULL)
        s->v += by;
}

void app_metric_set(app_metric *m, const char *value, double v)
{
    series *s = m != NULL && m->type == APP_GAUGE ? series_of(m, value) : NULL;
    if (s != NULL)
        s->v = v;
}

void app_metric_observe(app_metric *m, const char *value, double v)
{
    series *s = m != NULL && m->type == APP_HISTOGRAM ? series_of(m, value) : NULL;
    if (s == NULL)
        return;
    s->count++;
    s->sum += v;
    for (size_t i = 0; i < m->nle; i++)
        if (v <= m->le[i]) {
            s->in_bucket[i]++;
            break;
        }
}

/* ---- the text format ---- */

/* The shortest of %.15g and %.17g that reads back as v; Prometheus' spellings otherwise. */
static const char *number(double v, char buf[32])
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(buf, 32, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, 32, "%.17g", v);
    return buf;
}

/* A label value: \ " and newline escaped as the format requires; HELP: \ and newline. */
static void escaped(FILE *f, const char *s, int quotes)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"' && quotes)
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

/* name{label="value",le="bound"} or name{label="value"} or name, without a space after. */
static void sample_name(FILE *f, const app_metric *m, const char *suffix, const series *s,
                        const char *le)
{
    fprintf(f, "%s%s", m->name, suffix);
    if (m->label == NULL && le == NULL)
        return;
    fputc('{', f);
    if (m->label != NULL) {
        fprintf(f, "%s=\"", m->label);
        escaped(f, s->value, 1);
        fputc('"', f);
    }
    if (le != NULL)
        fprintf(f, "%sle=\"%s\"", m->label != NULL ? "," : "", le);
    fputc('}', f);
}

static void write_histogram(FILE *f, const app_metric *m, const series *s)
{
    char b[32], n[32];
    uint64_t cumulative = 0;
    for (size_t i = 0; i < m->nle; i++) {
        cumulative += s->in_bucket[i];
        sample_name(f, m, "_bucket", s, number(m->le[i], b));
        fprintf(f, " %llu\n", (unsigned long long)cumulative);
    }
    sample_name(f, m, "_bucket", s, "+Inf");
    fprintf(f, " %llu\n", (unsigned long long)s->count);
    sample_name(f, m, "_sum", s, NULL);
    fprintf(f, " %s\n", number(s->sum, n));
    sample_name(f, m, "_count", s, NULL);
    fprintf(f, " %llu\n", (unsigned long long)s->count);
}

static void write_family(FILE *f, const app_metric *m)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    char n[32];
    fprintf(f, "# HELP %s ", m->name);
    escaped(f, m->help, 0);
    fprintf(f, "\n# TYPE %s %s\n", m->name, types[m->type]);
    for (size_t i = 0; i < m->ns; i++) {
        if (m->type == APP_HISTOGRAM) {
            write_histogram(f, m, &m->s[i]);
            continue;
        }
        sample_name(f, m, "", &m->s[i], NULL);
        fprintf(f, " %s\n", number(m->s[i].v, n));
    }
}

char *app_metrics_format(const app_metrics *r, size_t *len)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (f == NULL)
        return NULL;
    for (const app_metric *m = r != NULL ? r->head : NULL; m != NULL; m = m->next)
        write_family(f, m);
    if (ferror(f)) {
        fclose(f);
        free(text);
        return NULL;
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    *len = n;
    return text;
}

/* ---- the figures of a server ---- */

/* One registry per process: the figures belong to the process, as its log does. */
static struct {
    app_metrics *reg;
    app_metric *enrolments, *handshakes, *fetches, *fetch_seconds, *token_seconds, *token_errors,
        *keys, *keys_expiring, *keys_refreshed, *connections;
    const char *op; /* the token call being timed (APP_TOKEN) */
    double t0;
} fig;

#define EXPIRING_WITHIN_S 3600

static const double fetch_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double token_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
static const char *const transports[] = {"tls", "dtls", NULL};
static const char *const results[] = {"ok", "unknown", "expired", "failed", NULL};
static const char *const fetch_results[] = {"ok", "refused", "error", "skipped", NULL};
static const char *const ops[] = {"lookup", "store", "derive",    "erase",
                                  "sweep",  "list",  "configure", NULL};
static const char *const kinds[] = {"kpm", "enrolment", "ke", "km", "kpsa", NULL};
static const char *const within[] = {"3600", NULL};

int app_metrics_init(int enrolments)
{
    app_metrics *r = app_metrics_new();
    fig.reg = r;
    if (r == NULL)
        return -1;
    if (enrolments)
        fig.enrolments = app_metric_add(r, "m2m_enrolments_total",
                                        "Devices enrolled (Ke stored) by bootstrap transport.",
                                        APP_COUNTER, "transport", transports, NULL, 0);
    fig.handshakes = app_metric_add(
        r, "m2m_handshakes_total",
        "PSK handshakes ended: ok, unknown identity, expired key, or failed otherwise.",
        APP_COUNTER, "result", results, NULL, 0);
    fig.fetches = app_metric_add(
        r, "m2m_fetches_total",
        "fetchCredentials: MAF requests made (or skipped), MEF requests answered, by result.",
        APP_COUNTER, "result", fetch_results, NULL, 0);
    fig.fetch_seconds = app_metric_add(
        r, "m2m_fetch_seconds", "MAF: a fetch from request to reply; MEF: time to answer.",
        APP_HISTOGRAM, NULL, NULL, fetch_buckets, sizeof(fetch_buckets) / sizeof(double));
    fig.token_seconds = app_metric_add(
        r, "m2m_token_call_seconds", "Time of the key store calls this server makes, by op.",
        APP_HISTOGRAM, "op", ops, token_buckets, sizeof(token_buckets) / sizeof(double));
    fig.token_errors = app_metric_add(
        r, "m2m_token_errors_total",
        "Key store calls that failed with a token or library error (not a refusal), by op.",
        APP_COUNTER, "op", ops, NULL, 0);
    fig.keys = app_metric_add(r, "m2m_keys",
                              "Records on the token by kind, as of the last sweep or start.",
                              APP_GAUGE, "kind", kinds, NULL, 0);
    fig.keys_expiring = app_metric_add(
        r, "m2m_keys_expiring",
        "Records whose expiry is at most `within` seconds away, as of the last sweep or start.",
        APP_GAUGE, "within", within, NULL, 0);
    fig.keys_refreshed = app_metric_add(r, "m2m_keys_refresh_timestamp_seconds",
                                        "Unix time at which m2m_keys was last recomputed.",
                                        APP_GAUGE, NULL, NULL, NULL, 0);
    fig.connections = app_metric_add(r, "m2m_connections_open",
                                     "Connections accepted and open now (PSK and HTTPS).",
                                     APP_GAUGE, NULL, NULL, NULL, 0);
    if ((enrolments && fig.enrolments == NULL) || fig.handshakes == NULL || fig.fetches == NULL ||
        fig.fetch_seconds == NULL || fig.token_seconds == NULL || fig.token_errors == NULL ||
        fig.keys == NULL || fig.keys_expiring == NULL || fig.keys_refreshed == NULL ||
        fig.connections == NULL) {
        app_metrics_cleanup();
        return -1;
    }
    return 0;
}

void app_metrics_cleanup(void)
{
    app_metrics_free(fig.reg);
    memset(&fig, 0, sizeof(fig));
}

char *app_metrics_text(size_t *len)
{
    return app_metrics_format(fig.reg, len);
}

double app_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void app_metrics_enrolment(const char *transport)
{
    app_metric_inc(fig.enrolments, transport, 1);
}

void app_metrics_handshake(const char *result)
{
    app_metric_inc(fig.handshakes, result, 1);
}

void app_metrics_fetch(const char *result, double t0)
{
    app_metric_inc(fig.fetches, result, 1);
    if (t0 >= 0)
        app_metric_observe(fig.fetch_seconds, NULL, app_clock() - t0);
}

void app_metrics_connections(int delta)
{
    app_metric_inc(fig.connections, NULL, delta);
}

void app_metrics_token_error(const char *op)
{
    app_metric_inc(fig.token_errors, op, 1);
}

void app_token_begin(const char *op)
{
    fig.op = op;
    fig.t0 = app_clock();
}

/* Not found, expired, exists and bad input are answers about the request, not failures of
 * the token or the library. */
m2mhsm_status app_token_end(m2mhsm_status status)
{
    app_metric_observe(fig.token_seconds, fig.op, app_clock() - fig.t0);
    if (status != M2MHSM_OK && status != M2MHSM_E_NOT_FOUND && status != M2MHSM_E_EXPIRED &&
        status != M2MHSM_E_EXISTS && status != M2MHSM_E_INVALID_ARG)
        app_metrics_token_error(fig.op);
    return status;
}

void app_metrics_refresh_keys(m2mhsm_keystore *ks)
{
    m2mhsm_record *all = NULL;
    size_t n = 0;
    if (fig.reg == NULL)
        return;
    m2mhsm_status status = APP_TOKEN("list", m2mhsm_keystore_list(ks, &all, &n));
    if (status != M2MHSM_OK) {
        app_log(APP_ERROR, "token-error", "op=list error=%s", app_error(status));
        return; /* the gauges keep their last figures; the refresh time says how old */
    }
    m2mhsm_time now = m2mhsm_keystore_now(ks);
    size_t expiring = 0;
    for (size_t k = 0; kinds[k] != NULL; k++)
        app_metric_set(fig.keys, kinds[k], 0);
    for (size_t i = 0; i < n; i++) {
        app_metric_inc(fig.keys, m2mhsm_kind_name(all[i].kind), 1);
        if (all[i].expiry != M2MHSM_NEVER && all[i].expiry <= now + EXPIRING_WITHIN_S)
            expiring++;
    }
    free(all);
    app_metric_set(fig.keys_expiring, within[0], (double)expiring);
    app_metric_set(fig.keys_refreshed, NULL, (double)time(NULL));
}

/* ---- GET /metrics ---- */

static struct evhttp *http;
static struct evconnlistener *listener;

static void text_free(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)data);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (path == NULL || strcmp(path, "/metrics") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(h, "Allow", "GET, HEAD");
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    size_t len = 0;
    char *text = app_metrics_text(&len);
    struct evbuffer *out = text != NULL ? evbuffer_new() : NULL;
    if (out == NULL || evbuffer_add_reference(out, text, len, text_free, NULL) != 0) {
        if (out != NULL)
            evbuffer_free(out);
        free(text);
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

int app_metrics_serve(struct event_base *base, const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (addr == NULL)
        return 0;
    if (app_addr_parse(addr, &ss, &sl) != 0 || (http = evhttp_new(base)) == NULL)
        return -1;
    /* Every method reaches on_request, which answers 405 itself (evhttp would say 501). */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, on_request, NULL);
    evhttp_set_max_headers_size(http, 8192);
    evhttp_set_max_body_size(http, 1024);
    evhttp_set_timeout(http, 10);
    int fd = app_listen(&ss, sl, SOCK_STREAM);
    struct evhttp_bound_socket *bound = fd >= 0 ? evhttp_accept_socket_with_handle(http, fd) : NULL;
    if (bound == NULL) {
        app_log(APP_ERROR, "listen-failed", "address=%s", addr);
        if (fd >= 0)
            close(fd);
        app_metrics_stop();
        return -1;
    }
    listener = evhttp_bound_socket_get_listener(bound);
    if (app_listener_guard(base, listener) != 0) {
        listener = NULL;
        app_metrics_stop();
        return -1;
    }
    app_log(APP_INFO, "listening", "service=metrics transport=http address=%s", addr);
    app_notify_listener("metrics", "http", addr);
    return 0;
}

void app_metrics_stop(void)
{
    if (listener != NULL)
        app_listener_unguard(listener);
    listener = NULL;
    if (http != NULL)
        evhttp_free(http);
    http = NULL;
}
