/* tap.h: a tiny TAP producer for C unit tests, run by prove.
 * Use: plan-less; call ok()/is_int()/is_str() then return done_testing(). */
#ifndef VCL_TAP_H
#define VCL_TAP_H
#include <stdio.h>
#include <string.h>
#include <stdbool.h>

static int tap_n, tap_fail;

static inline bool tap_ok(bool cond, const char *file, int line, const char *name)
{
    tap_n++;
    printf("%sok %d - %s\n", cond ? "" : "not ", tap_n, name);
    if (!cond) {
        tap_fail++;
        printf("#   Failed test '%s'\n#   at %s line %d.\n", name, file, line);
    }
    fflush(stdout);
    return cond;
}
#define ok(cond, ...) do { char tap_nm_[512]; snprintf(tap_nm_, sizeof tap_nm_, __VA_ARGS__); \
    tap_ok((cond), __FILE__, __LINE__, tap_nm_); } while (0)
#define is_int(got, want, ...) do { long long g_ = (long long)(got), w_ = (long long)(want); \
    char tap_nm_[512]; snprintf(tap_nm_, sizeof tap_nm_, __VA_ARGS__); \
    if (!tap_ok(g_ == w_, __FILE__, __LINE__, tap_nm_)) printf("#          got: %lld\n#     expected: %lld\n", g_, w_); } while (0)
#define is_str(got, want, ...) do { const char *g_ = (got), *w_ = (want); \
    char tap_nm_[512]; snprintf(tap_nm_, sizeof tap_nm_, __VA_ARGS__); \
    bool e_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_; \
    if (!tap_ok(e_, __FILE__, __LINE__, tap_nm_)) printf("#          got: '%s'\n#     expected: '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } while (0)
#define diag(...) do { printf("# "); printf(__VA_ARGS__); printf("\n"); } while (0)

static inline int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_fail ? 1 : 0;
}
#endif
