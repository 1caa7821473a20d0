/* RFC 7512 pin-source handling through p11-kit. */
#include "p11.h"
#include "../internal.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <p11-kit/pin.h>

static const char *pin_source_path(const char *pin_source)
{
    /* RFC 7512 section 2.4: a pin-source is a URI; we accept only the file: scheme,
     * so a PIN can never arrive through argv or the environment. */
    if (strncmp(pin_source, "file:", 5) == 0)
        return pin_source + 5;
    return NULL;
}

m2mhsm_status m2mhsm_pin_read(const char *pin_source, const char *token_uri, char **pin,
                              size_t *pin_len)
{
    *pin = NULL;
    if (pin_source == NULL || pin_source[0] == '\0')
        return m2mhsm_fail(M2MHSM_E_PIN, "no pin-source given (use file:PATH)");
    const char *path = pin_source_path(pin_source);
    if (path == NULL || path[0] == '\0')
        return m2mhsm_fail(M2MHSM_E_PIN, "pin-source must be file:PATH");

    P11KitPin *p =
        p11_kit_pin_file_callback(path, NULL, token_uri, P11_KIT_PIN_FLAGS_USER_LOGIN, NULL);
    if (p == NULL)
        return m2mhsm_fail(M2MHSM_E_PIN, "pin-source %s: cannot read the file", path);
    size_t len = 0;
    const unsigned char *v = p11_kit_pin_get_value(p, &len);
    size_t n = len;
    while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r'))
        n--;
    m2mhsm_status st = M2MHSM_OK;
    if (n == 0 || memchr(v, '\0', n) != NULL) {
        st = m2mhsm_fail(M2MHSM_E_PIN, "pin-source %s: empty or not text", path);
    } else if ((*pin = malloc(n + 1)) == NULL) {
        st = m2mhsm_fail(M2MHSM_E_NOMEM, "out of memory reading the PIN");
    } else {
        memcpy(*pin, v, n);
        (*pin)[n] = '\0';
        *pin_len = n;
    }
    /* p11-kit frees its buffer without wiping it; the buffer is ours until unref. */
    OPENSSL_cleanse((void *)v, len);
    p11_kit_pin_unref(p);
    return st;
}

void m2mhsm_pin_free(char *pin, size_t pin_len)
{
    if (pin == NULL)
        return;
    OPENSSL_cleanse(pin, pin_len);
    free(pin);
}
