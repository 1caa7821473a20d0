/* Shared by the services m2m-mef, m2m-maf and the device m2m-enrolee: logging,
 * configuration files, opening the token, certificates whose keys stay in the token,
 * sockets, and the event-driven (D)TLS connection. */
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
/* The last library error and status as one value, "STATUS(message)", for app_log. */
const char *app_error(m2mhsm_status st);

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
/* jansson allocations are cleansed when freed: its strings may hold a credential. */
void app_json_cleansing_alloc(void);

/* ---- store.c: the token, key store and TLS context of a program ---- */
typedef struct {
    m2mhsm_token *tok;
    m2mhsm_keystore *ks;
    m2mhsm_tls *tls;
} app_store;
/* The members a "pkcs11" section may have. */
extern const char *const app_pkcs11_fields[];
/* Open from a "pkcs11" section {module, token, pin_source, lock_file}. Prints why not. */
int app_store_open(const json_t *pkcs11, app_store *out);
void app_store_close(app_store *s);

/* ---- certkey.c: X.509 TLS with the private key in the token (libp11) ---- */
typedef struct {
    const char *certificate; /* PEM file */
    const char *key_label;   /* CKA_LABEL of the private key on the store's token */
    const char *ca;          /* PEM file of the CA that signs the peers */
} app_certkey;
/* An SSL_CTX (TLS 1.2+) presenting certificate with its token-held key and requiring a peer
 * certificate from ca (mutual TLS). pkcs11 is the program's section; its store must be open
 * already: that login serves libp11's session too (PKCS#11 login state is per application).
 * Prints why not. */
SSL_CTX *app_certkey_ctx(const json_t *pkcs11, const app_certkey *ck, int server);
/* Release libp11 (after every SSL_CTX from app_certkey_ctx is freed). */
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

/* ---- service.c: what m2m-mef and m2m-maf do around their own listeners ---- */
typedef struct {
    struct event_base *base;
    m2mhsm_keystore *ks; /* swept every sweep_interval_s, and at once on SIGUSR1 */
    long long sweep_interval_s;
    app_conns *conns;        /* drained on SIGTERM/SIGINT */
    void (*stop)(void *arg); /* on SIGTERM/SIGINT: stop listening, fail pending work */
    void *arg;
} app_service;
/* --config FILE from argv: -1 to go on, else the exit status (usage printed). */
int app_service_args(int argc, char **argv, const char *prog, const char **config);
/* Arm the sweep and the signals, log "ready" with ready_fields, run the loop until a signal
 * has drained it, log "stopped". SIGUSR1 sweeps now and logs "swept". 0, or -1 if the
 * events could not be armed. */
int app_service_run(const app_service *s, const char *ready_fields);

#endif
