/* What both servers do around their own listeners: the command line, the periodic sweep
 * (the CR: expired credentials go even when nobody asks for them again) and the sweep on
 * demand (SIGUSR1), SIGTERM/SIGINT with a graceful drain, and the loop itself. */
#include "app.h"

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define SHUTDOWN_GRACE_S 2

int app_service_args(int argc, char **argv, const char *prog, const char **config)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    *config = NULL;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (o != 'c') {
            fprintf(o == 'h' ? stdout : stderr,
                    "usage: %s --config FILE   (docs/configuration.md)\n", prog);
            return o == 'h' ? 0 : 2;
        }
        *config = optarg;
    }
    if (*config == NULL || optind != argc) {
        fprintf(stderr, "usage: %s --config FILE   (docs/configuration.md)\n", prog);
        return 2;
    }
    return -1;
}

static size_t sweep_now(const app_service *s)
{
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_sweep(s->ks, &n);
    if (st != M2MHSM_OK)
        app_log(APP_ERROR, "sweep-failed", "error=%s", app_error(st));
    else if (n > 0)
        app_log(APP_INFO, "erased", "records=%zu reason=expired at=sweep", n);
    return n;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep_now(arg);
}

/* An operator (or a test) wants expired keys gone now, not at the next interval: the
 * "swept" line says when it has happened, even when nothing had expired. */
static void on_sweep_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    size_t n = sweep_now(arg);
    app_log(APP_INFO, "swept", "records=%zu trigger=SIGUSR1", n);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    const app_service *s = arg;
    app_log(APP_INFO, "stopping", "signal=%s open_connections=%zu", strsignal((int)sig),
            s->conns != NULL ? app_conns_count(s->conns) : 0);
    s->stop(s->arg);
    app_conns_drain(s->base, s->conns, SHUTDOWN_GRACE_S);
}

int app_service_run(const app_service *s, const char *ready_fields)
{
    struct timeval every = {s->sweep_interval_s, 0};
    struct event *ev[4] = {
        event_new(s->base, -1, EV_PERSIST, on_sweep, (void *)s),
        evsignal_new(s->base, SIGUSR1, on_sweep_signal, (void *)s),
        evsignal_new(s->base, SIGTERM, on_signal, (void *)s),
        evsignal_new(s->base, SIGINT, on_signal, (void *)s),
    };
    int rc = 0;
    for (size_t i = 0; i < 4; i++)
        if (ev[i] == NULL || event_add(ev[i], i == 0 ? &every : NULL) != 0)
            rc = -1;
    if (rc == 0) {
        app_log(APP_INFO, "ready", "%s", ready_fields);
        event_base_dispatch(s->base);
        app_log(APP_INFO, "stopped", "open_connections=%zu",
                s->conns != NULL ? app_conns_count(s->conns) : 0);
    }
    for (size_t i = 0; i < 4; i++)
        if (ev[i] != NULL)
            event_free(ev[i]);
    return rc;
}
