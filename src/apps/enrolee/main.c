/*
 * m2m-enrolee — a reference oneM2M device.
 *   m2m-enrolee --config FILE bootstrap
 *   m2m-enrolee --config FILE connect [--message TEXT] [--hold SECONDS]
 *   m2m-enrolee --config FILE run --duration SECONDS
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include "enrolee.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: m2m-enrolee --config FILE bootstrap\n"
    "       m2m-enrolee --config FILE connect [--message TEXT] [--hold SECONDS]\n"
    "       m2m-enrolee --config FILE run --duration SECONDS\n"
    "(docs/configuration.md)\n";

static int cmd_bootstrap(enrolee *e)
{
    m2mhsm_record key;
    return enrolee_provision(e, "requested", &key) ? 0 : 1;
}

static int cmd_connect(enrolee *e, const char *message, double hold)
{
    enrolee_session_opts o = {message, hold, 0};
    return enrolee_connect(e, &o) == ENROLEE_DONE ? 0 : 1;
}

/* Stay connected for duration_s: reconnect whenever an association ends, renewing the key
 * a margin before it expires. Reports how often the target closed or refused. */
static int cmd_run(enrolee *e, double duration_s)
{
    unsigned sessions = 0, closed = 0, failed = 0;
    time_t end = time(NULL) + (time_t)duration_s;
    while (time(NULL) < end) {
        enrolee_session_opts o = {NULL, (double)(end - time(NULL)), 1};
        enrolee_result r = enrolee_connect(e, &o);
        sessions++;
        closed += r == ENROLEE_CLOSED_BY_TARGET;
        failed += r == ENROLEE_FAILED || r == ENROLEE_REJECTED;
        if (r == ENROLEE_FAILED)
            nanosleep(&(struct timespec){0, 200000000}, NULL);
    }
    app_log(APP_INFO, "summary", "sessions=%u closed_by_target=%u failed=%u reprovisions=%u",
            sessions, closed, failed, e->reprovisions);
    return closed + failed == 0 ? 0 : 1;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return *s != '\0' && *end == '\0' && *out >= 0 && *out <= 86400 * 366;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"message", required_argument, NULL, 'm'},
        {"hold", required_argument, NULL, 'H'},   {"duration", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *config = NULL, *message = NULL;
    double hold = 0, duration = -1;
    int o;
    while ((o = getopt_long(argc, argv, "c:m:H:d:h", opts, NULL)) != -1) {
        if ((o == 'H' && !parse_seconds(optarg, &hold)) ||
            (o == 'd' && !parse_seconds(optarg, &duration)) || o == '?' || o == 'h') {
            fputs(usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
        if (o == 'c')
            config = optarg;
        else if (o == 'm')
            message = optarg;
    }
    const char *cmd = optind + 1 == argc ? argv[optind] : NULL;
    if (config == NULL || cmd == NULL ||
        (strcmp(cmd, "bootstrap") != 0 && strcmp(cmd, "connect") != 0 && strcmp(cmd, "run") != 0) ||
        (strcmp(cmd, "run") == 0 && duration < 0)) {
        fputs(usage, stderr);
        return 2;
    }
    app_log_init("m2m-enrolee");
    signal(SIGPIPE, SIG_IGN);
    enrolee e = {0};
    int rc = 1;
    if (enrolee_config_load(&e, config) == 0 &&
        app_store_open(json_object_get(e.root, "pkcs11"), &e.store) == 0) {
        if (strcmp(cmd, "bootstrap") == 0)
            rc = cmd_bootstrap(&e);
        else if (strcmp(cmd, "connect") == 0)
            rc = cmd_connect(&e, message, hold);
        else
            rc = cmd_run(&e, duration);
        app_store_close(&e.store);
    }
    json_decref(e.root);
    return rc;
}
