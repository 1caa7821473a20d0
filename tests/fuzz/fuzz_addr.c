/* "host:port" and "[v6]:port" addresses of the configuration files (app_addr_parse in
 * src/apps/common/net.c). Host names do not reach DNS (no_dns.c). */
#include "fuzz.h"

#include <stdlib.h>
#include "apps/common/app.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    struct sockaddr_storage ss;
    socklen_t len = 0;
    if (app_addr_parse(s, &ss, &len) == 0) {
        char text[80];
        if ((ss.ss_family != AF_INET && ss.ss_family != AF_INET6) || len == 0 || len > sizeof(ss))
            fuzz_fail("an accepted address that is neither IPv4 nor IPv6");
        app_addr_format((const struct sockaddr *)&ss, text, sizeof(text));
    }
    free(s);
    return 0;
}
