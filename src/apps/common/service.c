/* What both servers do around their own listeners: the command line, the periodic sweep
 * (the CR: expired credentials go even when nobody asks for them again), SIGTERM/SIGINT
 * with a graceful drain, and the loop itself. */
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

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    const app_service *s = arg;
    size_t n = 0;
    m2mhsm_status st = m2mhsm_keystore_sweep(s->ks, &n);
    if (st != M2MHSM_OK)
        app_log(APP_ERROR, "sweep-failed", "error=%s", app_error(st));
    else if (n > 0)
        app_log(APP_INFO, "erased", "records=%zu reason=expired at=sweep", n);
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
    struct event *sweep = event_new(s->base, -1, EV_PERSIST, on_sweep, (void *)s);
    struct event *term = evsignal_new(s->base, SIGTERM, on_signal, (void *)s);
    struct event *intr = evsignal_new(s->base, SIGINT, on_signal, (void *)s);
    int rc = sweep != NULL && term != NULL && intr != NULL && event_add(sweep, &every) == 0 &&
                     event_add(term, NULL) == 0 && event_add(intr, NULL) == 0
                 ? 0
                 : -1;
    if (rc == 0) {
        app_log(APP_INFO, "ready", "%s", ready_fields);
        event_base_dispatch(s->base);
        app_log(APP_INFO, "stopped", "open_connections=%zu",
                s->conns != NULL ? app_conns_count(s->conns) : 0);
    }
    if (sweep != NULL)
        event_free(sweep);
    if (term != NULL)
        event_free(term);
    if (intr != NULL)
        event_free(intr);
    return rc;
}
