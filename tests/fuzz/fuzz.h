/* What the harnesses share: the libFuzzer entry point, a NUL-terminated copy of the input,
 * and a file holding the input for parsers that read a path. */
#ifndef M2MHSM_FUZZ_H
#define M2MHSM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* data[0..size) as a malloc'd C string (cut at the first NUL, as a C caller would see it). */
char *fuzz_cstr(const uint8_t *data, size_t size);

/* A path whose file holds exactly data[0..size): an in-memory file (memfd) reopened through
 * /proc/self/fd, so a run writes nothing to disk. The same path on every call. */
const char *fuzz_file(const uint8_t *data, size_t size);

/* Structured input: values taken one after another from the fuzzer's bytes; past the end
 * every value is 0 or empty. */
typedef struct {
    const uint8_t *p;
    size_t left;
} fuzz_in;
uint8_t fuzz_u8(fuzz_in *in);
/* Up to max bytes (the count is taken first); *len is how many. */
const uint8_t *fuzz_bytes(fuzz_in *in, size_t max, size_t *len);

/* A harness's own invariant does not hold: abort, which libFuzzer reports as a crash. */
void fuzz_fail(const char *what);

#endif
