/* Shared by the libFuzzer targets: the entry point's prototype, a check
 * that aborts (so the fuzzer records the input) and the shared data dir. */
#ifndef T2_FUZZ_H
#define T2_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant the parser promised and broke: a bug, not a bad input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Whether [p, p+n) lies inside [base, base+size). */
static inline int fuzz_inside(const void *p, size_t n, const void *base, size_t size)
{
    const uint8_t *q = p, *b = base;
    return q >= b && q <= b + size && n <= (size_t)(b + size - q);
}

/* The shared test data directory: $T2_SHARED, else the one configured at
 * build time. */
static inline const char *fuzz_shared_dir(void)
{
    const char *d = getenv("T2_SHARED");
    return d && *d ? d : T2_FUZZ_SHARED;
}

#endif
