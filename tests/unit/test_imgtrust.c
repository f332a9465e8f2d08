/* test_imgtrust.c: the trust memory of imgtrust (imgtrust_inspect_known,
 * imgtrust_note_checked) with the real qemu-img on the local transport: an
 * unchanged master is not inspected again; a master replaced under the same
 * path (renamed over, or rewritten in place with its size and mtime put
 * back) is inspected again, and a bad one is refused. Skipped with a diag
 * when qemu-img is not installed. */
#include "tap.h"
#include "node/imgtrust.h"
#include "node/transport.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static vcl_transport *T;
static char base[] = "/tmp/vcl-test-imgtrust-XXXXXX";

static bool run(const char *const *argv)
{
    vcl_error e;
    transport_result res = { .status = -1 };
    bool ok = transport_exec(T, argv, 60, &res, &e) && res.status == 0;
    transport_result_clear(&res);
    return ok;
}

static void pathf(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", base, name);
}

static bool qcow2(const char *path, const char *backing)
{
    const char *plain[] = { "qemu-img", "create", "-q", "-f", "qcow2", "--", path, "16M", NULL };
    const char *over[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing,
                           "--", path, "16M", NULL };
    return run(backing ? over : plain);
}

static unsigned long hits(void)
{
    unsigned long h = 0;
    imgtrust_counts(&h, NULL);
    return h;
}

/* Rewrite dst in place with the bytes of src, then give it back its size
 * and its mtime: only its ctime tells that it changed. */
static bool rewrite_in_place(const char *dst, const char *src)
{
    struct stat before;
    char buf[65536];
    ssize_t n;
    bool ok = false;
    int in = -1, out = -1;
    if (stat(dst, &before) < 0 || (in = open(src, O_RDONLY)) < 0 ||
        (out = open(dst, O_WRONLY | O_TRUNC)) < 0)
        goto cleanup;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            goto cleanup;
    struct timespec ts[2] = { before.st_atim, before.st_mtim };
    ok = n == 0 && ftruncate(out, before.st_size) == 0 && futimens(out, ts) == 0;
cleanup:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return ok;
}

int main(void)
{
    vcl_error e;
    imgtrust_seen seen;
    char master[PATH_MAX], good2[PATH_MAX], bad[PATH_MAX], other[PATH_MAX];
    struct stat sb, sb2;

    T = transport_new("local", NULL, &e);
    const char *v[] = { "qemu-img", "--version", NULL };
    if (!T || !run(v)) {
        diag("qemu-img not available: skipping");
        transport_free(T);
        return done_testing();
    }
    if (!mkdtemp(base)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    pathf(master, sizeof master, "m.qcow2");
    pathf(good2, sizeof good2, "good2.qcow2");
    pathf(bad, sizeof bad, "bad.qcow2");
    pathf(other, sizeof other, "other.qcow2");
    ok(qcow2(master, NULL) && qcow2(good2, NULL) && qcow2(other, NULL) && qcow2(bad, other),
       "images made");

    /* first sight: inspected; second: remembered */
    vcl_error_clear(&e);
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && !seen.known &&
       !seen.checked, "a new master is inspected");
    ok(seen.st.has_id && seen.st.ino != 0, "the local transport gives the file's identity");
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && seen.known &&
       !seen.checked && hits() == 1, "unchanged: remembered, not inspected again");
    imgtrust_note_checked(T, master, "qcow2", &seen);
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && seen.known &&
       seen.checked, "its check is remembered too");
    ok(imgtrust_inspect_known(T, master, "raw", "master image", &seen, &e) && !seen.known,
       "the same file read as another format is inspected");

    /* replaced by rename: another inode; a bad one refused */
    ok(rename(bad, master) == 0, "a master with a backing file renamed over the master");
    vcl_error_clear(&e);
    ok(!imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) &&
       e.cls == VCL_ERR_PERMANENT && strstr(e.msg, "backing file"),
       "replaced by rename: inspected again and refused");
    vcl_error_clear(&e);
    ok(!imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e),
       "refused again: a refusal is never remembered");

    /* a good one again, remembered, then rewritten in place keeping inode,
     * size and mtime: the ctime changed, so inspected again and refused */
    ok(rename(good2, master) == 0 && qcow2(bad, other), "a good master in place again");
    vcl_error_clear(&e);
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && !seen.known,
       "inspected");
    imgtrust_note_checked(T, master, "qcow2", &seen);
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && seen.checked,
       "remembered as checked");
    ok(stat(master, &sb) == 0, "stat before");
    usleep(20000);   /* a ctime apart from the first one, whatever the clock's grain */
    ok(rewrite_in_place(master, bad), "rewritten in place with a master that has a backing file");
    ok(stat(master, &sb2) == 0 && sb2.st_ino == sb.st_ino && sb2.st_size == sb.st_size &&
       sb2.st_mtim.tv_sec == sb.st_mtim.tv_sec && sb2.st_mtim.tv_nsec == sb.st_mtim.tv_nsec,
       "same inode, size and mtime");
    vcl_error_clear(&e);
    ok(!imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) &&
       e.cls == VCL_ERR_PERMANENT, "rewritten in place: inspected again and refused");

    /* missing: the inspection's own error, nothing remembered */
    ok(unlink(master) == 0, "master removed");
    vcl_error_clear(&e);
    ok(!imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) &&
       e.cls != VCL_ERR_NONE, "a missing master fails as before");

    /* imgtrust_note_checked of a file that changed since it was seen: not
     * remembered as checked */
    ok(qcow2(master, NULL), "a new master");
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && !seen.known,
       "inspected");
    usleep(20000);
    ok(truncate(master, sb2.st_size + 65536) == 0, "it changes before its check is noted");
    imgtrust_note_checked(T, master, "qcow2", &seen);
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && !seen.checked,
       "not remembered as checked");

    imgtrust_forget();
    ok(imgtrust_inspect_known(T, master, "qcow2", "master image", &seen, &e) && !seen.known,
       "forgotten");

    const char *rm[] = { "rm", "-rf", "--", base, NULL };
    run(rm);
    transport_free(T);
    return done_testing();
}
