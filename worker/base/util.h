/* util.h: the small helpers more than one module needs, each defined once
 * here instead of copied into every file that wants it: the monotonic clock,
 * condvar deadlines, the qsort comparator for C strings, freeing a vector of
 * strings, a zero block test, a pwrite that writes everything, joining a
 * directory and a file name with a length check, and where the running
 * program lives.
 *
 * What belongs here: pure, dependency-free helpers (libc only, no locks, no
 * global state, no logging, no vcl_error) whose behaviour is the same for
 * every caller. A helper that knows about the queue, a node or a config
 * option belongs to that module instead (a command timeout's default is
 * config_command_timeout in config.h, not here). Before writing a static
 * helper in a module, look here; when a second module needs one, move it
 * here rather than copy it. */
#ifndef VCL_UTIL_H
#define VCL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* CLOCK_MONOTONIC, for deadlines and durations (never for wall-clock time):
 * in seconds with a fraction, and in whole milliseconds. */
double util_mono_s(void);
int64_t util_mono_ms(void);

/* The CLOCK_REALTIME time seconds from now (a negative wait is now), as the
 * absolute deadline pthread_cond_timedwait and pthread_timedjoin_np take. */
struct timespec util_realtime_in(double seconds);

/* qsort comparator for an array of char * (strcmp order). */
int util_cmp_str(const void *a, const void *b);

/* Free v[0..n) and v itself; NULL is fine. For the string vectors returned
 * by transport_list_dir, transport_glob and domxml_disk_files. */
void util_strv_free(char **v, size_t n);

/* dst = src truncated to n - 1 bytes ("" for NULL: a SQL NULL cell).
 * UTIL_COPY for a char array field. */
void util_copy_str(char *dst, size_t n, const char *src);
#define UTIL_COPY(field, src) util_copy_str((field), sizeof(field), (src))

/* Every one of the n bytes at p is zero (true for n == 0). */
bool util_all_zero(const void *p, size_t n);

/* pwrite(2) all len bytes of p at offset off, again after EINTR and short
 * writes. false with errno set by the failing pwrite. */
bool util_pwrite_all(int fd, const void *p, size_t len, off_t off);

/* out = dir + '/' + base + (ext ? '.' + ext : ""), without doubling a
 * trailing '/' of dir. false, with out truncated, when it does not fit in
 * size bytes: callers turn that into an error, never use the path. */
bool util_join_path(char *out, size_t size, const char *dir, const char *base, const char *ext);

/* The directory of the running program (/proc/self/exe without its last
 * component: "/usr/local/bin"), for files installed next to it. false when
 * it cannot be read or does not fit in size bytes. */
bool util_exe_dir(char *out, size_t size);

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 1 for an ASCII byte (NUL
 * included), 0 when p does not start one. p is NUL-terminated or has at
 * least 4 readable bytes. */
size_t util_utf8_len(const unsigned char *p);

#endif
