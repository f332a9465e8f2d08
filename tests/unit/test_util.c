/* test_util: the shared helpers of base/util.h, and config_command_timeout. */
#include "base/config.h"
#include "base/util.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void test_join_path(void)
{
    char out[64];
    ok(util_join_path(out, sizeof out, "/var/lib/vcl", "pc1_2-v3", "qcow2"), "join fits");
    is_str(out, "/var/lib/vcl/pc1_2-v3.qcow2", "dir + '/' + base + '.' + ext");
    ok(util_join_path(out, sizeof out, "/var/lib/vcl/", "pc1_2-v3", "xml"), "trailing '/' fits");
    is_str(out, "/var/lib/vcl/pc1_2-v3.xml", "a trailing '/' is not doubled");
    ok(util_join_path(out, sizeof out, "/", "x", NULL), "root dir");
    is_str(out, "/x", "root dir: one '/', no ext without a dot");
    ok(util_join_path(out, sizeof out, "/tmp", "pc1_2-v3", "console.log"), "ext with a dot");
    is_str(out, "/tmp/pc1_2-v3.console.log", "ext may hold a dot");

    /* exactly full (63 characters + NUL) fits, one more does not */
    char dir[64];
    memset(dir, 'd', sizeof dir);
    dir[0] = '/';
    dir[61] = '\0'; /* 61 + "/x" = 63 */
    ok(util_join_path(out, sizeof out, dir, "x", NULL), "63 characters fit in 64 bytes");
    is_int(strlen(out), 63, "the whole path was written");
    dir[61] = 'd';
    dir[62] = '\0'; /* 62 + "/x" = 64 */
    ok(!util_join_path(out, sizeof out, dir, "x", NULL), "64 characters do not fit: false");
    is_int(strlen(out), 63, "and out is truncated, NUL-terminated");
    ok(!util_join_path(out, sizeof out, "/a", "b", dir), "a long ext does not fit either");
}

static void test_all_zero(void)
{
    char buf[4096];
    memset(buf, 0, sizeof buf);
    ok(util_all_zero(buf, 0), "0 bytes are all zero");
    ok(util_all_zero(buf, 1), "1 zero byte");
    ok(util_all_zero(buf, sizeof buf), "4 KiB of zeros");
    buf[sizeof buf - 1] = 1;
    ok(!util_all_zero(buf, sizeof buf), "the last byte set");
    ok(util_all_zero(buf, sizeof buf - 1), "all but the last byte");
    buf[sizeof buf - 1] = 0;
    buf[0] = 1;
    ok(!util_all_zero(buf, sizeof buf), "the first byte set");
    memset(buf, 7, sizeof buf);
    ok(!util_all_zero(buf, sizeof buf), "equal bytes that are not zero");
}

static void test_pwrite_all(void)
{
    char path[] = "/tmp/vcl-test-util.XXXXXX", back[16] = "";
    int fd = mkstemp(path);
    ok(fd >= 0, "temp file");
    if (fd < 0)
        return;
    ok(util_pwrite_all(fd, "world", 5, 6), "pwrite at offset 6");
    ok(util_pwrite_all(fd, "hello ", 6, 0), "pwrite at offset 0");
    ok(util_pwrite_all(fd, "", 0, 100), "0 bytes: nothing to do");
    is_int(pread(fd, back, sizeof back - 1, 0), 11, "the file holds 11 bytes");
    is_str(back, "hello world", "both writes landed where they were aimed");
    close(fd);
    unlink(path);
    errno = 0;
    ok(!util_pwrite_all(fd, "x", 1, 0) && errno == EBADF, "a closed fd: false, errno EBADF");
}

static void test_strings(void)
{
    const char *in[] = { "qemu", "kvm", "a", "kvm2", "" };
    size_t n = sizeof in / sizeof in[0];
    char **v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = strdup(in[i]);
    qsort(v, n, sizeof *v, util_cmp_str);
    is_str(v[0], "", "sorted: empty first");
    is_str(v[1], "a", "sorted: a");
    is_str(v[2], "kvm", "sorted: kvm");
    is_str(v[3], "kvm2", "sorted: kvm2");
    is_str(v[4], "qemu", "sorted: qemu last");
    util_strv_free(v, n); /* the sanitizer build checks nothing leaks */
    util_strv_free(NULL, 0);
    ok(1, "util_strv_free(NULL, 0) is fine");
}

static void test_clock(void)
{
    double s0 = util_mono_s();
    int64_t m0 = util_mono_ms();
    struct timespec nap = { 0, 50 * 1000 * 1000 };
    nanosleep(&nap, NULL);
    double s1 = util_mono_s();
    int64_t m1 = util_mono_ms();
    ok(s1 - s0 >= 0.049, "util_mono_s advances across a 50 ms sleep (%.3f s)", s1 - s0);
    ok(m1 - m0 >= 49, "util_mono_ms advances across a 50 ms sleep (%lld ms)", (long long)(m1 - m0));
    /* the same clock: seconds and milliseconds agree (generous bound: a
     * loaded machine may be descheduled between the two calls) */
    ok(m1 / 1000.0 - s1 > -1 && m1 / 1000.0 - s1 < 1, "ms and s read the same clock");

    struct timespec now, in;
    clock_gettime(CLOCK_REALTIME, &now);
    in = util_realtime_in(2.75);
    double d = (double)(in.tv_sec - now.tv_sec) + (double)(in.tv_nsec - now.tv_nsec) / 1e9;
    ok(d > 2.7 && d < 3.75, "util_realtime_in(2.75) is 2.75 s from now (%.3f)", d);
    ok(in.tv_nsec >= 0 && in.tv_nsec < 1000000000L, "tv_nsec normalised (%ld)", in.tv_nsec);
    in = util_realtime_in(-5);
    d = (double)(in.tv_sec - now.tv_sec) + (double)(in.tv_nsec - now.tv_nsec) / 1e9;
    ok(d >= 0 && d < 1, "a negative wait is now (%.3f)", d);
}

static void test_exe_dir(void)
{
    char dir[PATH_MAX], tiny[4];
    ok(util_exe_dir(dir, sizeof dir), "util_exe_dir");
    size_t n = strlen(dir);
    ok(n > 0 && dir[0] == '/', "absolute: %s", dir);
    ok(n >= 6 && strcmp(dir + n - 6, "/tests") == 0, "this test runs from $(BUILD)/tests");
    char self[PATH_MAX + 16];
    snprintf(self, sizeof self, "%s/test_util", dir);
    ok(access(self, X_OK) == 0, "and this program is in it");
    ok(!util_exe_dir(tiny, sizeof tiny), "a buffer too small: false");
}

static void test_command_timeout(void)
{
    is_int(config_command_timeout(0), CONFIG_COMMAND_TIMEOUT_DEFAULT_S, "0: the default");
    is_int(config_command_timeout(-5), CONFIG_COMMAND_TIMEOUT_DEFAULT_S, "negative: the default");
    is_int(config_command_timeout(30), 30, "a set value wins");
    vcl_config c;
    config_defaults(&c);
    is_int(c.command_timeout_seconds, CONFIG_COMMAND_TIMEOUT_DEFAULT_S,
           "the option table's default is the same constant");
    config_clear(&c);
}

int main(void)
{
    test_join_path();
    test_all_zero();
    test_pwrite_all();
    test_strings();
    test_clock();
    test_exe_dir();
    test_command_timeout();
    return done_testing();
}
