/* RFC 7512 pin-source handling through p11-kit. */
#include "p11.h"
#include "../internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* A PIN file must be a regular file that neither group nor others can read or write: a PIN
 * that other accounts can read is no longer a secret of the service's user, and one they can
 * write lets them choose the PIN this program presents (or lock the token with a wrong one).
 * A symlink is followed: what counts is the file that holds the PIN. */
static m2mhsm_status pin_file_private(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return m2mhsm_fail(M2MHSM_E_PIN, "pin-source %s: cannot read the file: %s", path,
                           strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return m2mhsm_fail(M2MHSM_E_PIN, "pin-source %s: not a regular file", path);
    if ((sb.st_mode & (S_IRWXG | S_IRWXO)) != 0)
        return m2mhsm_fail(M2MHSM_E_PIN,
                           "pin-source %s: mode %04o lets group or others read or write the PIN "
                           "(chmod 600 it)",
                           path, (unsigned)(sb.st_mode & 07777));
    return M2MHSM_OK;
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

    m2mhsm_status st = pin_file_private(path);
    if (st != M2MHSM_OK)
        return st;
    P11KitPin *p =
        p11_kit_pin_file_callback(path, NULL, token_uri, P11_KIT_PIN_FLAGS_USER_LOGIN, NULL);
    if (p == NULL)
        return m2mhsm_fail(M2MHSM_E_PIN, "pin-source %s: cannot read the file", path);
    size_t len = 0;
    const unsigned char *v = p11_kit_pin_get_value(p, &len);
    size_t n = len;
    while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r'))
        n--;
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
