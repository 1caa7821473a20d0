/* Shared by the harnesses (fuzz.h). */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

const char *fuzz_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("m2mhsm-fuzz", MFD_CLOEXEC);
        if (fd < 0)
            fuzz_fail("memfd_create");
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
        fuzz_fail("writing the input file");
    return path;
}

void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz invariant broken: %s\n", what);
    abort();
}

uint8_t fuzz_u8(fuzz_in *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

const uint8_t *fuzz_bytes(fuzz_in *in, size_t max, size_t *len)
{
    size_t n = (size_t)fuzz_u8(in) << 8 | fuzz_u8(in);
    n %= max + 1;
    if (n > in->left)
        n = in->left;
    const uint8_t *p = in->p;
    in->p += n;
    in->left -= n;
    *len = n;
    return p;
}
