/* Addresses and listening sockets. */
#include "app.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int app_addr_parse(const char *hostport, struct sockaddr_storage *out, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    size_t hlen = colon != NULL ? (size_t)(colon - hostport) : 0;
    if (colon == NULL || hlen == 0 || hlen >= sizeof(host) || colon[1] == '\0') {
        fprintf(stderr, "address \"%s\": expected host:port\n", hostport);
        return -1;
    }
    memcpy(host, hostport, hlen);
    host[hlen] = '\0';
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') { /* [::1]:port */
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_flags = AI_NUMERICSERV}, *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "address \"%s\": %s\n", hostport, gai_strerror(rc));
        return -1;
    }
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int app_listen(const struct sockaddr_storage *addr, socklen_t len, int type)
{
    int one = 1;
    int fd = socket(addr->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* UDP: each DTLS association gets its own socket connected to the peer on this same
     * address, which needs SO_REUSEADDR/SO_REUSEPORT on all of them. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (type == SOCK_DGRAM && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(fd, (const struct sockaddr *)addr, len) != 0 ||
        (type == SOCK_STREAM && listen(fd, 1024) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

void app_addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, cap, "%s:%u", ip, port);
}

/* Descriptors a process keeps for itself beyond its connections (token files, logs, the
 * listeners, the MAF's connections to MEFs). */
#define FD_RESERVE 64

long long app_fd_budget(long long wanted, int pools)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return wanted;
    if (rl.rlim_cur < rl.rlim_max) { /* a server may use what its hard limit allows */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    long long budget =
        rl.rlim_cur == RLIM_INFINITY ? wanted : ((long long)rl.rlim_cur - FD_RESERVE) / pools;
    if (budget < 1)
        budget = 1;
    if (budget >= wanted)
        return wanted;
    app_log(APP_WARN, "max-connections-clamped", "configured=%lld allowed=%lld nofile=%llu", wanted,
            budget, (unsigned long long)rl.rlim_cur);
    return budget;
}

/* When accept() fails (EMFILE/ENFILE: out of descriptors) libevent retries at once, which
 * spins and floods the log; the listener pauses for a second instead. */
#define MAX_GUARDED 4
static struct {
    struct evconnlistener *l;
    struct event *resume;
} guarded[MAX_GUARDED];

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval pause = {1, 0};
    for (size_t i = 0; i < MAX_GUARDED; i++)
        if (guarded[i].l == l && !evtimer_pending(guarded[i].resume, NULL)) {
            app_log(APP_WARN, "accept-paused", "reason=\"%s\" for_s=1",
                    evutil_socket_error_to_string(err));
            evconnlistener_disable(l);
            evtimer_add(guarded[i].resume, &pause);
        }
}

int app_listener_guard(struct event_base *base, struct evconnlistener *l)
{
    for (size_t i = 0; i < MAX_GUARDED; i++)
        if (guarded[i].l == NULL) {
            if ((guarded[i].resume = evtimer_new(base, on_resume, l)) == NULL)
                return -1;
            guarded[i].l = l;
            evconnlistener_set_error_cb(l, on_accept_error);
            return 0;
        }
    return -1;
}

void app_listener_unguard(struct evconnlistener *l)
{
    for (size_t i = 0; i < MAX_GUARDED; i++)
        if (guarded[i].l == l) {
            event_free(guarded[i].resume);
            guarded[i].l = NULL;
            guarded[i].resume = NULL;
        }
}
