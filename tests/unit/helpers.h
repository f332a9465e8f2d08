/* helpers.h: small helpers the unit tests of the transports share
 * (test_transport.c, test_transport_ssh.c). Header-only and static inline:
 * each test is its own program, linked with one module.
 *
 * The including file defines its temp dir first, as
 *     static char dir[] = "/tmp/vclw-...-XXXXXX";   (made with mkdtemp)
 * path_of() and exists() name files inside it; put(), slurp() and mtime_ns()
 * plant and look at files with plain libc; on_alarm() is a watchdog for
 * calls that must not block (signal(SIGALRM, on_alarm); alarm(N)). */
#ifndef VCL_TEST_HELPERS_H
#define VCL_TEST_HELPERS_H
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Like ok(), but the condition runs first, so the name can show e.msg. */
#define ok_after(cond, ...) do { bool c_ = (cond); ok(c_, __VA_ARGS__); } while (0)

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

/* Write s to path (plain libc: the test plants files the worker must not trust). */
static inline void put(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
}

/* Content of a small file ("" when unreadable); static buffer. */
static inline const char *slurp(const char *path)
{
    static char buf[256];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

static inline long long mtime_ns(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) < 0)
        return -1;
    return (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
}

/* A watchdog: a call that blocks on a FIFO would hang the test; SIGALRM ends
 * it with a "not ok" visible to prove. */
static inline void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "not ok - a file operation blocked (watchdog fired)\n";
    if (write(STDOUT_FILENO, msg, sizeof msg - 1) < 0) {
        /* nothing to do */
    }
    _exit(1);
}

#endif
