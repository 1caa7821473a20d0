/* "host:port" and "[v6]:port" addresses of the configuration files (app_addr_parse in
 * src/apps/common/net.c). Host names do not reach DNS (no_dns.c). */
#include "fuzz.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include "apps/common/app.h"

/* The decimal port after the last ':' of the text, or -1 when it is not 1 to 5 digits. */
static long text_port(const char *s)
{
    const char *c = strrchr(s, ':');
    size_t n = c != NULL ? strlen(c + 1) : 0;
    if (n == 0 || n > 5 || strspn(c + 1, "0123456789") != n)
        return -1;
    return strtol(c + 1, NULL, 10);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    struct sockaddr_storage ss;
    socklen_t len = 0;
    if (app_addr_parse(s, &ss, &len) == 0) {
        char text[80];
        if ((ss.ss_family != AF_INET && ss.ss_family != AF_INET6) || len == 0 || len > sizeof(ss))
            fuzz_fail("an accepted address that is neither IPv4 nor IPv6");
        unsigned port = ss.ss_family == AF_INET
                            ? ntohs(((const struct sockaddr_in *)&ss)->sin_port)
                            : ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
        /* Every port is 1-65535 and is the one written: none wraps modulo 65536. */
        if (port == 0 || (long)port != text_port(s))
            fuzz_fail("an accepted port outside 1-65535 or other than the one written");
        app_addr_format((const struct sockaddr *)&ss, text, sizeof(text));
    }
    free(s);
    return 0;
}
