/* helpers.h: small helpers the unit tests of the transports share
 * (test_transport.c, test_transport_ssh.c). Header-only and static inline:
 * each test is its own program, linked with one module.
 *
 * The including file defines its temp dir first, as
 *     static char dir[] = "/tmp/vclw-...-XXXXXX";   (made with mkdtemp)
 * path_of() and exists() name files inside it. */
#ifndef VCL_TEST_HELPERS_H
#define VCL_TEST_HELPERS_H
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* dir/name into buf. */
static inline void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* Does dir/name exist? */
static inline bool exists(const char *name)
{
    char p[512];
    path_of(p, sizeof p, name);
    return access(p, F_OK) == 0;
}

/* Seconds on the monotonic clock. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Do files a and b hold the same bytes? false when either cannot be opened. */
static inline bool files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    char ba[65536], bb[65536];
    while (same) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        if (na != nb || memcmp(ba, bb, na) != 0)
            same = false;
        if (na == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}
#endif
