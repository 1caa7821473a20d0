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

/* Why the text s[0..len) is not a port, or NULL with *port set. Decimal digits only: a sign,
 * a space, a leading zero or a sixth digit is a typo rather than a port, and values past 65535
 * must not wrap (99999 once bound 34463). Port 0 ("any") is refused too: every port we are
 * given is one that peers dial or that we dial, so it has to be a fixed one. */
static const char *port_why(const char *s, size_t len, unsigned *port)
{
    unsigned v = 0;
    if (len == 0)
        return "is empty";
    if (len > 5)
        return "has more than 5 digits";
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return "must be decimal digits only";
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (len > 1 && s[0] == '0')
        return "has a leading zero";
    if (v < 1 || v > 65535)
        return "is out of range";
    *port = v;
    return NULL;
}

int app_addr_parse(const char *hostport, struct sockaddr_storage *out, socklen_t *len)
{
    return app_addr_parse_in("address", hostport, out, len);
}

int app_addr_parse_in(const char *where, const char *hostport, struct sockaddr_storage *out,
                      socklen_t *len)
{
    char host[256];
    unsigned port;
    const char *colon = strrchr(hostport, ':');
    size_t hlen = colon != NULL ? (size_t)(colon - hostport) : 0;
    if (colon == NULL || hlen == 0 || hlen >= sizeof(host)) {
        fprintf(stderr, "%s: \"%s\": expected host:port\n", where, hostport);
        return -1;
    }
    const char *why = port_why(colon + 1, strlen(colon + 1), &port);
    if (why != NULL) {
        fprintf(stderr, "%s: \"%s\": the port %s (1 to 65535)\n", where, hostport, why);
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
        fprintf(stderr, "%s: \"%s\": %s\n", where, hostport, gai_strerror(rc));
        return -1;
    }
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int app_url_port(const char *where, const char *url, unsigned *port)
{
    const char *auth = strstr(url, "://");
    if (auth == NULL)
        return 1; /* not a URL with an authority: the URL parser refuses it */
    auth += 3;
    size_t alen = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', alen);
    if (at != NULL) { /* userinfo@ */
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    const char *host_end = auth;
    if (alen > 0 && auth[0] == '[') { /* [IPv6] */
        const char *close = memchr(auth, ']', alen);
        host_end = close != NULL ? close + 1 : auth + alen;
    }
    const char *colon = memchr(host_end, ':', alen - (size_t)(host_end - auth));
    if (colon == NULL)
        return 1;
    const char *why = port_why(colon + 1, alen - (size_t)(colon + 1 - auth), port);
    if (why != NULL) {
        fprintf(stderr, "config: %s: \"%s\": the port %s (1 to 65535)\n", where, url, why);
        return -1;
    }
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
            app_log(APP_WARN, "accept-paused", "reason=%s for_s=1",
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
