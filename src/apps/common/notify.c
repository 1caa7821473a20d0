/* Readiness and stopping for a service manager: systemd's Type=notify (sd_notify(3)) sends
 * these datagrams to $NOTIFY_SOCKET. Without NOTIFY_SOCKET, or in a build without
 * libsystemd (M2MHSM_SYSTEMD), every call does nothing and the services behave as before. */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef M2MHSM_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* The listeners the process opened, for the STATUS= that goes with READY=1. The services are
 * single-threaded and open their listeners before they are ready, so one buffer serves. */
static char listeners[512];

static void notify(const char *state)
{
#ifdef M2MHSM_HAVE_SYSTEMD
    /* 0: NOTIFY_SOCKET is not set. A failure does not stop the service: it serves, and the
     * manager's start timeout is what the operator will see, so the log says why. */
    int r = sd_notify(0, state);
    if (r < 0)
        app_log(APP_WARN, "notify-failed", "socket=%s error=%s", getenv("NOTIFY_SOCKET"),
                strerror(-r));
#else
    (void)state;
#endif
}

void app_notify_listener(const char *service, const char *transport, const char *address)
{
    size_t n = strlen(listeners);
    snprintf(listeners + n, sizeof(listeners) - n, "%s%s %s %s", n > 0 ? ", " : "", service,
             transport, address);
}

void app_notify_ready(const char *ready_fields)
{
    char state[sizeof(listeners) + 300];
    snprintf(state, sizeof(state), "READY=1\nSTATUS=ready %s; listening: %s", ready_fields,
             listeners[0] != '\0' ? listeners : "none");
    notify(state);
}

void app_notify_stopping(const char *signal_name, size_t open_connections)
{
    char state[160];
    snprintf(state, sizeof(state), "STOPPING=1\nSTATUS=stopping on %s, draining %zu connections",
             signal_name, open_connections);
    notify(state);
}
