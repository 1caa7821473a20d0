/* Shared by the services m2m-mef, m2m-maf and the device m2m-enrolee: logging,
 * configuration files, opening the token, certificates whose keys stay in the token,
 * sockets, the event-driven (D)TLS connection, and the servers' metrics. */
#ifndef M2M_APP_H
#define M2M_APP_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <m2mhsm/tls.h>

struct event_base;

/* ---- log.c: one logfmt line per event on stderr, never a secret ---- */
typedef enum { APP_INFO, APP_WARN, APP_ERROR } app_level;
void app_log_init(const char *prog);
/* "time=… level=… prog=… event=<event> <fields>". fields is a printf format of key=value
 * pairs with %s and the integer conversions d i u x (with l, ll or z; no flags). Each %s right
 * after '=' is a value: written as it is when it is non-empty and only [A-Za-z0-9._:/@+_-],
 * else quoted, with '"' and '\' escaped by '\' and '=', control and non-ASCII bytes as \xNN,
 * and cut after 256 bytes ("..."). So a value from a peer can neither end the line nor read as
 * a key=value pair, and callers need not clean it first. Any other %s is a list of fields
 * built from checked values; its control bytes and quotes are escaped the same way. */
void app_log(app_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));
/* While a reload runs, what is printed on stderr (the configuration loaders' complaints) is
 * collected instead of written, so that the reload-failed line can carry it; app_log lines
 * still go out. _end puts the collected lines, joined by "; ", into why ("" if none). */
void app_log_capture_begin(void);
void app_log_capture_end(char *why, size_t cap);
/* The last library error and status as one value, "STATUS(message)", for app_log. */
const char *app_error(m2mhsm_status st);

/* ---- notify.c: what systemd (Type=notify) is told, when NOTIFY_SOCKET is set ---- */
/* Remember a listener (as its "listening" log line names it) for the readiness STATUS=. */
void app_notify_listener(const char *service, const char *transport, const char *address);
/* READY=1 with STATUS= naming ready_fields and the listeners. */
void app_notify_ready(const char *ready_fields);
/* STOPPING=1 with STATUS= naming the signal and the connections being drained. */
void app_notify_stopping(const char *signal_name, size_t open_connections);

/* ---- config.c: JSON files through jansson ---- */
/* Load FILE; on failure prints "config FILE: line L: why" and returns NULL. */
json_t *app_config_load(const char *path);
/* Members of obj at key; print "config: <section>.<key>: <why>" and return -1 when a
 * required one is missing or of the wrong type; 0 when present (or optional and absent). */
int app_cfg_str(const json_t *obj, const char *section, const char *key, int required,
                const char **out);
int app_cfg_int(const json_t *obj, const char *section, const char *key, long long min,
                long long max, long long *out);
int app_cfg_bool(const json_t *obj, const char *section, const char *key, int *out);
/* A "host:port" string member that app_addr_parse accepts (checked when the file is loaded,
 * so that a bad address stops a server before it changes its token). */
int app_cfg_addr(const json_t *obj, const char *section, const char *key, int required,
                 const char **out);
/* -1, printed as "config FILE: WHERE.FIELD: unknown field", if the object obj has a member
 * whose name is not in known (NULL-terminated): a misspelt optional setting would otherwise
 * be ignored without a word. where is the JSON path of obj, "" at the top level. */
int app_cfg_known(const json_t *obj, const char *file, const char *where, const char *const *known);
/* -1, printed as "config FILE: WHERE[i].KEY: "v" is listed twice (also WHERE[j])", when two
 * objects of the array list (at JSON path where) hold the same string at key. */
int app_cfg_unique(const json_t *list, const char *file, const char *where, const char *key);
/* At a reload: append to out (",section.key", the first without a comma) each of keys
 * (NULL-terminated; NULL: the section as a whole) whose value differs between the running
 * and the new file. These are the settings that only a restart puts into force. */
void app_cfg_restart_fields(const json_t *running, const json_t *next, const char *section,
                            const char *const *keys, char *out, size_t cap);
/* jansson allocations are cleansed when freed: its strings may hold a credential. */
void app_json_cleansing_alloc(void);

/* ---- store.c: the token, key store and TLS context of a program ---- */
typedef struct {
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_tls *tls;
} app_store;
/* The members a "pkcs11" section may have, and a "tls_key_pkcs11" section. */
extern const char *const app_pkcs11_fields[];
extern const char *const app_tls_key_fields[];
/* Open from a "pkcs11" section {module, module_init_args, token, pin_source, lock_file}.
 * Prints why not.
 * psk_forms: the forms of the PSK records the program writes (m2mhsm_keystore_options),
 * from the protocol it runs with them; 0 for a program that writes none (the MEF). */
int app_store_open(const json_t *pkcs11, unsigned psk_forms, app_store *out);
void app_store_close(app_store *s);
/* Log tok's failover (event=token_lost, token_back) and lock-file-not-shared lines, naming it
 * by its configuration section ("pkcs11", "tls_key_pkcs11") and URI. name must outlive tok. */
typedef struct {
    const char *section;
    char uri[256];
} app_token_name;
void app_token_observe(m2mhsm_token *tok, app_token_name *name, const char *section,
                       const char *uri);

/* ---- certkey.c: X.509 TLS with the private key in the token ---- */
typedef struct {
    const char *certificate; /* PEM file */
    const char *key_label;   /* CKA_LABEL of the private key on the store's token */
    const char *ca;          /* PEM file of the CA that signs the peers */
    /* The configuration's "tls_key_pkcs11" section {module, module_init_args, token,
     * pin_source, lock_file}: the key's own token; NULL: the key is on the store's token. */
    const json_t *tls_key_pkcs11;
} app_certkey;
/* An SSL_CTX (TLS 1.2+) presenting certificate with its token-held key and requiring a peer
 * certificate from ca (mutual TLS). The key signs (CKM_ECDSA) on the logged-in sessions of
 * the token of ck->tls_key_pkcs11 if set (for key stores on tokens without the certificate's
 * key type: opencryptoki's has no EC), opened once per process, else on tok's own, so it
 * follows tok through a failover. Prints why not. */
SSL_CTX *app_certkey_ctx(m2mhsm_token *tok, const app_certkey *ck, int server);
/* Release what the keys share, and the tls_key_pkcs11 token (after every SSL_CTX from
 * app_certkey_ctx is freed). */
void app_certkey_cleanup(void);

/* ---- net.c ---- */
/* "host:port" → address; the port is 1 to 65535 in plain decimal (docs/configuration.md).
 * Prints why not. */
int app_addr_parse(const char *hostport, struct sockaddr_storage *out, socklen_t *len);
/* The same, with errors printed as "<where>: \"<hostport>\": why". */
int app_addr_parse_in(const char *where, const char *hostport, struct sockaddr_storage *out,
                      socklen_t *len);
/* The port of "scheme://[userinfo@]host[:port][/…]" by the same rule: 0 with *port set, 1 when
 * the URL names no port, -1 (printed as "config: <where>: …") when it is not a valid one. */
int app_url_port(const char *where, const char *url, unsigned *port);
/* A non-blocking socket bound to addr (SOCK_STREAM listening, or SOCK_DGRAM). */
int app_listen(const struct sockaddr_storage *addr, socklen_t len, int type);
/* "ip:port" of a socket address. */
void app_addr_format(const struct sockaddr *sa, char *out, size_t cap);
/* Raise the soft descriptor limit to the hard one and return how many connections each of
 * `pools` connection pools may hold: wanted, or less (logged) if descriptors would run out. */
long long app_fd_budget(long long wanted, int pools);
struct evconnlistener;
/* Pause l for a second when accept() fails (out of descriptors) instead of spinning; undo
 * with app_listener_unguard before freeing l. At most 4 listeners per process. */
int app_listener_guard(struct event_base *base, struct evconnlistener *l);
void app_listener_unguard(struct evconnlistener *l);

/* ---- conn.c: one (D)TLS connection driven by the event loop ---- */
typedef struct app_conn app_conn;
typedef struct app_conns app_conns; /* the open connections of a server */
typedef struct {
    /* Handshake complete. */
    void (*established)(app_conn *c, void *arg);
    /* Application data arrived. */
    void (*data)(app_conn *c, void *arg, const uint8_t *buf, size_t len);
    /* About to be freed: why ("peer closed", "key expired", "handshake failed: …"). */
    void (*closed)(app_conn *c, void *arg, const char *why);
} app_conn_ops;

app_conns *app_conns_new(struct event_base *base, const app_conn_ops *ops, void *arg,
                         int handshake_timeout_s);
/* Ask every connection to close (close_notify where possible); the loop finishes them. */
void app_conns_shutdown(app_conns *set);
/* Shut down and end the loop of set's event base once every connection has closed, or
 * after grace_s seconds, whichever comes first (SIGTERM). */
void app_conns_drain(struct event_base *base, app_conns *set, int grace_s);
/* Close every connection of the set whose key leaves ks's token, whatever erased it: at
 * once for this process's erasures, at the next lookup or sweep for another process's
 * (m2mhsm_keystore_watch). ops->closed then gets APP_CONN_KEY_ERASED. 0, or -1. */
#define APP_CONN_KEY_ERASED "key erased"
int app_conns_watch(app_conns *set, m2mhsm_keystore *ks);
/* Free the set and whatever connection is still open. */
void app_conns_free(app_conns *set);
size_t app_conns_count(const app_conns *set);
/* Adopt ssl on the connected non-blocking socket fd (closed with the connection) and start
 * the handshake. dtls: fd is a connected UDP socket. */
app_conn *app_conn_start(app_conns *set, SSL *ssl, int fd, int dtls, const char *peer);
SSL *app_conn_ssl(app_conn *c);
const char *app_conn_peer(const app_conn *c);
/* Queue bytes to send (copied; at most 4 KiB pending). */
void app_conn_write(app_conn *c, const void *buf, size_t len);
/* Close after the pending bytes with close_notify; why is passed to ops->closed. */
void app_conn_close(app_conn *c, const char *why);
/* Close the connection when the wall clock reaches t (its key's expiry): TS-0003's CR, no
 * security association outlives the Enrolment Expiry. M2MHSM_NEVER: no deadline. */
void app_conn_deadline(app_conn *c, m2mhsm_time t, const char *why);
/* The connection of an SSL started by app_conn_start (its SSL app data). */
app_conn *app_conn_of(SSL *ssl);
/* Resume a handshake paused in an ASYNC job (a m2mhsm_tls_resolver that paused). */
void app_conn_resume(app_conn *c);
/* For a server's m2mhsm_tls_observer: what the PSK callback did with the handshake that is
 * being stepped now (the observer runs inside it), so that a handshake refused for an
 * unknown or expired identity is counted as such (m2m_handshakes_total) and not as failed. */
void app_conn_psk_seen(m2mhsm_tls_psk_event ev);

/* ---- dtls.c: a DTLS 1.2 service address (the MEF's bootstrap, the MAF) ---- */
typedef struct app_dtls app_dtls;
/* A peer returned a valid cookie (RFC 6347 4.2.1): ssl has read its ClientHello and reads
 * and writes fd, a UDP socket bound to the service address and connected to peer ("ip:port").
 * The callee owns both: app_conn_start(…, ssl, fd, 1, peer), or SSL_free and close. */
typedef void (*app_dtls_accept)(void *arg, SSL *ssl, int fd, const char *peer);
/* Serve DTLS handshakes of ctx (a server SSL_CTX for M2MHSM_DTLS_1_2; its cookie callbacks
 * are set here) on the UDP "host:port" address, on base's loop. NULL if the address is
 * refused (printed) or cannot be bound. */
app_dtls *app_dtls_listen(struct event_base *base, SSL_CTX *ctx, const char *address,
                          app_dtls_accept accept, void *arg);
/* Stop listening; associations already handed over are not affected. */
void app_dtls_free(app_dtls *d);

/* ---- service.c: what m2m-mef and m2m-maf do around their own listeners ---- */
typedef struct {
    struct event_base *base;
    m2mhsm_keystore *ks; /* swept every sweep_interval_s, and at once on SIGUSR1 */
    long long sweep_interval_s;
    app_conns *conns;        /* drained on SIGTERM/SIGINT */
    void (*stop)(void *arg); /* on SIGTERM/SIGINT: stop listening, fail pending work */
    void *arg;
    const char *metrics; /* "host:port" of the metrics listener, or NULL for none */
    /* SIGHUP: re-read the configuration file `config` without dropping connections. 0 once
     * the new settings are in force (it may change *sweep_interval_s), -1 if refused: the
     * old configuration stays. NULL: SIGHUP is ignored. */
    int (*reload)(void *arg, long long *sweep_interval_s);
    const char *config;
} app_service;
/* --config FILE from argv: -1 to go on, else the exit status (usage printed). */
int app_service_args(int argc, char **argv, const char *prog, const char **config);
/* Arm the sweep and the signals, compute the key gauges, open the metrics listener, log
 * "ready" with ready_fields (and notify READY=1), run the loop until a signal has drained it
 * (notified STOPPING=1), log "stopped". SIGUSR1 sweeps now and logs "swept"; every sweep
 * recomputes the key gauges; SIGHUP reloads and logs "reloaded", or "reload-failed" with the
 * reason. 0, or -1 if the events or the metrics listener could not be set up. */
int app_service_run(const app_service *s, const char *ready_fields);

/* ---- metrics.c: Prometheus text exposition of figures kept in memory ---- */
/* A registry of metric families, each with at most one label. The servers are one thread
 * each (OpenSSL's ASYNC jobs, in which the MAF's handshakes wait, are fibres on that same
 * thread), so figures need neither locks nor atomics; a registry is not thread-safe. */
typedef enum { APP_COUNTER, APP_GAUGE, APP_HISTOGRAM } app_metric_type;
typedef struct app_metrics app_metrics;
typedef struct app_metric app_metric;
#define APP_METRIC_BUCKETS_MAX 16
app_metrics *app_metrics_new(void);
void app_metrics_free(app_metrics *r);
/* A family in r. name and help are static strings; label is the name of its one label or
 * NULL; values (NULL-terminated, may be NULL) are the label values shown from the start, at
 * 0; a histogram has nbuckets ascending upper bounds (+Inf is added). NULL on bad input. */
app_metric *app_metric_add(app_metrics *r, const char *name, const char *help, app_metric_type type,
                           const char *label, const char *const *values, const double *buckets,
                           size_t nbuckets);
/* Update the series of label value `value` (NULL without a label): a counter or a gauge
 * grows by `by`, a gauge is set, a histogram observes. A value not seen before adds a series
 * (at most 16 a family; beyond that the update is dropped). */
void app_metric_inc(app_metric *m, const char *value, double by);
void app_metric_set(app_metric *m, const char *value, double v);
void app_metric_observe(app_metric *m, const char *value, double v);
/* The text exposition format 0.0.4 of every family: # HELP and # TYPE lines, label values
 * and help escaped, histogram buckets cumulative up to +Inf, then _sum and _count. malloc'd
 * and NUL-terminated (*len without the NUL); NULL when out of memory. */
char *app_metrics_format(const app_metrics *r, size_t *len);

/* The figures of this server (docs/architecture.md, "Metrics"). app_metrics_init makes
 * them; until then, and in m2m-enrolee, the functions below do nothing. enrolments: 1 for
 * the MEF (m2m_enrolments_total). 0, or -1 when out of memory. */
int app_metrics_init(int enrolments);
void app_metrics_cleanup(void);
/* The exposition of this server's figures (as app_metrics_format). */
char *app_metrics_text(size_t *len);
double app_clock(void);                                /* monotonic seconds: for durations */
void app_metrics_enrolment(const char *transport);     /* "tls", "dtls" */
void app_metrics_handshake(const char *result);        /* "ok", "unknown", "expired", "failed" */
void app_metrics_fetch(const char *result, double t0); /* t0 from app_clock, or <0: not timed */
void app_metrics_connections(int delta);
void app_metrics_token_error(const char *op);
/* Recompute m2m_keys and m2m_keys_expiring from one listing of the token. On the event loop
 * (start, after a sweep), never from the HTTP handler. */
void app_metrics_refresh_keys(m2mhsm_keystore *ks);
/* Time a call into the token and count its error (m2m_token_call_seconds{op},
 * m2m_token_errors_total{op}), giving back its status:
 *     st = APP_TOKEN("lookup", m2mhsm_keystore_lookup(ks, ...));
 * The comma operator starts the clock before the call; calls do not nest. */
#define APP_TOKEN(op, call) (app_token_begin(op), app_token_end(call))
void app_token_begin(const char *op);
m2mhsm_status app_token_end(m2mhsm_status st);
/* Serve GET /metrics over plain HTTP on addr ("host:port") with evhttp on base; the handler
 * only formats figures already in memory. 0, or -1 (logged). */
int app_metrics_serve(struct event_base *base, const char *addr);
void app_metrics_stop(void);

#endif
