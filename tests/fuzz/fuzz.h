/* fuzz.h: what the harnesses under tests/fuzz/ share.
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput and nothing else
 * global. It is linked either with libFuzzer (`make fuzz`: clang,
 * -fsanitize=fuzzer,address,undefined) or with tests/fuzz/replay.c (`make
 * check`: gcc, -fsanitize=address,undefined, every corpus file once).
 *
 * A harness checks properties, not only "does not crash": FUZZ_CHECK aborts
 * with a message when one fails, which both drivers report as a finding
 * (libFuzzer saves the input as crash-<sha1>). */
#ifndef VCL_FUZZ_H
#define VCL_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                   \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* Inputs larger than this are skipped: the parsers under test read lines,
 * names and documents of a few KiB; megabytes only slow the search. */
#define FUZZ_MAX_INPUT (64 * 1024)

/* The input as a NUL-terminated string (malloc'd; the C string ends at the
 * first NUL byte of the input, if any). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Split the input at NUL bytes into at most max strings (the last one takes
 * the rest, NULs and all, up to its first NUL). Missing fields are "".
 * *buf is the copy the fields point into: free it when done. */
static inline void fuzz_fields(const uint8_t *data, size_t size, char **buf, const char **out,
                               size_t max)
{
    char *s = fuzz_cstr(data, size);
    size_t i = 0, p = 0;
    while (i < max) {
        out[i++] = s + p;
        const char *nul = memchr(s + p, '\0', size - p);
        if (!nul || (size_t)(nul - s) >= size)
            break;
        p = (size_t)(nul - s) + 1;
    }
    while (i < max)
        out[i++] = "";
    *buf = s;
}

/* Every byte printable ASCII (what error messages quote from hostile input). */
static inline int fuzz_printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return 0;
    return 1;
}
#endif
