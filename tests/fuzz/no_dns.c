/* The configuration and address harnesses must not send fuzzed host names to a DNS server:
 * getaddrinfo is held to numeric hosts. A name is then refused as if it did not resolve,
 * which every caller already handles. */
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static getaddrinfo_fn real;
    if (real == NULL)
        real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    struct addrinfo h = {0};
    if (hints != NULL)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    return real(node, service, &h, res);
}
