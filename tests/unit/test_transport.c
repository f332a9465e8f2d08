/* test_transport.c: the "local" transport, for real, in a temp dir. */
#include "tap.h"
#include "node/transport.h"
#include "base/error.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/vclw-transport-XXXXXX";
#include "helpers.h"

static void rm_rf(const char *path)
{
    vcl_transport *t = transport_new("local", NULL, NULL);
    transport_result r = { 0 };
    const char *argv[] = { "rm", "-rf", "--", path, NULL };
    transport_exec(t, argv, 30, &r, NULL);
    transport_result_clear(&r);
    transport_free(t);
}

static void test_kinds(void)
{
    vcl_error e;
    vcl_error_clear(&e);
    vcl_transport *t = transport_new("ssh", NULL, &e);
    ok(t == NULL, "ssh transport without a host is refused (test_transport_ssh covers ssh)");
    is_int(e.cls, VCL_ERR_PERMANENT, "ssh: permanent error");
    is_str(e.msg, "ssh transport needs a host (the node's ssh_host column)", "ssh: message");
    vcl_error_clear(&e);
    t = transport_new("carrier-pigeon", NULL, &e);
    ok(t == NULL && e.cls == VCL_ERR_PERMANENT, "unknown kind refused");
    t = transport_new("local", NULL, &e);
    ok(t != NULL, "local transport");
    is_str(transport_kind(t), "local", "kind is local");
    transport_free(t);
    transport_free(NULL);
    transport_result_clear(NULL);
    util_strv_free(NULL, 0);
}

static void test_exec(vcl_transport *t)
{
    vcl_error e;
    transport_result r = { 0 };

    /* Arguments arrive literally: no shell ever sees them. */
    vcl_error_clear(&e);
    const char *a1[] = { "printf", "%s|", "a b", "it's \"quoted\"", "$(touch x)", "; touch y",
                         "`touch z`", "*", NULL };
    ok(transport_exec(t, a1, 10, &r, &e), "exec printf");
    is_int(r.status, 0, "printf exit 0");
    is_str(r.out, "a b|it's \"quoted\"|$(touch x)|; touch y|`touch z`|*|", "arguments passed literally");
    ok(!exists("x") && !exists("y") && !exists("z"), "no file x, y or z was created");
    transport_result_clear(&r);

    const char *a2[] = { "sh", "-c", "exit 7", NULL };
    ok(transport_exec(t, a2, 10, &r, &e), "exec sh -c 'exit 7'");
    is_int(r.status, 7, "exit status 7 captured");
    transport_result_clear(&r);

    const char *a3[] = { "sh", "-c", "echo out; echo first >&2; echo 'last line' >&2; echo >&2; exit 3", NULL };
    ok(transport_exec(t, a3, 10, &r, &e), "exec with stderr");
    is_str(r.out, "out\n", "stdout captured");
    is_str(r.err, "first\nlast line\n\n", "stderr captured");
    transport_result_clear(&r);

    vcl_error_clear(&e);
    ok(!transport_run(t, a3, 10, VCL_ERR_RETRYABLE, NULL, &e), "transport_run fails on exit 3");
    is_str(e.msg, "sh -c failed (exit 3): last line", "run error names command, status, last stderr line");
    is_int(e.cls, VCL_ERR_RETRYABLE, "run error has the class asked for");

    vcl_error_clear(&e);
    ok(!transport_run(t, a2, 10, VCL_ERR_PERMANENT, &r, &e), "transport_run keeps the result");
    is_int(r.status, 7, "result status kept for the caller");
    is_str(e.msg, "sh -c failed (exit 7): (no output)", "no output message");
    is_int(e.cls, VCL_ERR_PERMANENT, "permanent when asked");
    transport_result_clear(&r);

    /* a node's output in an error (last_error: PostgreSQL text, shown on
     * terminals): control characters become '?', tab a space, bytes that
     * are not UTF-8 '?', UTF-8 stays; a cut never splits a character */
    const char *argv_q[] = { "qemu-img", "info", NULL };
    char long_err[700];
    memset(long_err, 'a', 509);
    memcpy(long_err + 509, "\xc3\xa9\xc3\xa9\n", 6);
    const struct {
        const char *err, *want;
    } out_cases[] = {
        { "boom \x1b[31mred\x1b[0m\tend\n", "qemu-img info failed (exit 1): boom ?[31mred?[0m end" },
        { "caf\xc3\xa9 \xe9t\xe9 \xff\xc3\n", "qemu-img info failed (exit 1): caf\xc3\xa9 ?t? ??" },
        { "\x01\x7f\r\n", "qemu-img info failed (exit 1): ??" },
        { long_err, NULL },
    };
    for (size_t i = 0; i < sizeof out_cases / sizeof out_cases[0]; i++) {
        transport_result fake = { .status = 1, .err = (char *)out_cases[i].err };
        vcl_error_clear(&e);
        transport_status_error(argv_q, &fake, VCL_ERR_PERMANENT, &e);
        if (out_cases[i].want)
            is_str(e.msg, out_cases[i].want, "node output %zu made printable UTF-8", i);
        else
            ok(strlen(e.msg) > 500 && (unsigned char)e.msg[strlen(e.msg) - 1] == 0xa9,
               "a long line is cut between characters, not inside one: ...%s",
               e.msg + strlen(e.msg) - 4);
    }
    /* vcl_error_set: a value cut by byte count ("%.4s") leaves no half character */
    vcl_error_set(&e, VCL_ERR_PERMANENT, "name '%.3s'", "ab\xc3\xa9");
    is_str(e.msg, "name 'ab?'", "vcl_error_set: half a character becomes '?'");
    vcl_error_prefix(&e, "node \xff");
    is_str(e.msg, "node ?: name 'ab?'", "vcl_error_prefix: the same");

    const char *a4[] = { "true", NULL };
    vcl_error_clear(&e);
    ok(transport_run(t, a4, 0, VCL_ERR_RETRYABLE, NULL, &e), "transport_run true");

    const char *a5[] = { "sh", "-c", "kill -9 $$", NULL };
    ok(transport_exec(t, a5, 10, &r, &e), "exec of a command killed by a signal");
    is_int(r.status, 128 + 9, "killed by SIGKILL: status 137");
    transport_result_clear(&r);

    const char *a6[] = { "/nonexistent/vclw-no-such-command", "x", NULL };
    vcl_error_clear(&e);
    ok(!transport_exec(t, a6, 10, &r, &e), "missing command: false");
    ok(strstr(e.msg, "cannot run '/nonexistent/vclw-no-such-command'") != NULL, "missing command message");
    is_int(e.cls, VCL_ERR_PERMANENT, "missing command is permanent");
    ok(r.out == NULL && r.err == NULL, "no output on failure");

    /* stdin is /dev/null: cat ends at once. */
    const char *a7[] = { "cat", NULL };
    ok(transport_exec(t, a7, 5, &r, &e) && r.status == 0 && r.out[0] == '\0', "stdin is /dev/null");
    transport_result_clear(&r);

    /* Descriptors of the worker do not leak into commands. */
    int leak = open("/dev/null", O_RDONLY);
    int high = dup2(leak, 57);
    const char *a8[] = { "ls", "/proc/self/fd", NULL };
    ok(transport_exec(t, a8, 5, &r, &e) && r.status == 0, "ls /proc/self/fd");
    ok(r.out && strstr(r.out, "57") == NULL, "no inherited descriptor 57 in the child");
    transport_result_clear(&r);
    close(leak);
    if (high >= 0)
        close(high);

    /* Large output: no deadlock, stdout capped at 1 MiB. */
    const char *a9[] = { "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero | tr '\\0' b >&2", NULL };
    ok(transport_exec(t, a9, 30, &r, &e), "large output");
    is_int(r.out ? (long long)strlen(r.out) : -1, 1024 * 1024, "stdout truncated at 1 MiB");
    is_int(r.err ? (long long)strlen(r.err) : -1, 64 * 1024, "stderr keeps the last 64 KiB");
    transport_result_clear(&r);
}

static void test_timeout(vcl_transport *t)
{
    vcl_error e;
    transport_result r = { 0 };
    char pidfile[512], cmd[700];

    vcl_error_clear(&e);
    const char *a1[] = { "sleep", "30", NULL };
    double t0 = now_s();
    ok(!transport_exec(t, a1, 1, &r, &e), "sleep 30 with timeout 1: false");
    double took = now_s() - t0;
    ok(took >= 0.9 && took < 2.0, "killed within ~1 s of the limit (%.2f s)", took);
    is_int(e.cls, VCL_ERR_RETRYABLE, "timeout is retryable");
    is_str(e.msg, "command 'sleep' timed out after 1s", "timeout message");

    /* The whole process group dies, not only the direct child. */
    path_of(pidfile, sizeof pidfile, "grandchild.pid");
    snprintf(cmd, sizeof cmd, "sleep 30 & echo $! > %s; wait", pidfile);
    const char *a2[] = { "sh", "-c", cmd, NULL };
    vcl_error_clear(&e);
    t0 = now_s();
    ok(!transport_exec(t, a2, 1, &r, &e), "sh with a background sleep: timed out");
    took = now_s() - t0;
    ok(took < 2.0, "returned in %.2f s", took);
    char *pidtxt = NULL;
    size_t len = 0;
    ok(transport_read_file(t, pidfile, &pidtxt, &len, &e), "grandchild pid written");
    if (pidtxt) {
        int gpid = atoi(pidtxt);
        bool dead = false;
        for (int i = 0; i < 100 && !dead; i++) {
            char statp[64], *st = NULL;
            size_t sl;
            snprintf(statp, sizeof statp, "/proc/%d/stat", gpid);
            vcl_error e2;
            if (!transport_read_file(t, statp, &st, &sl, &e2))
                dead = true;                        /* gone */
            else {
                const char *rp = strrchr(st, ')');
                dead = rp && (rp[2] == 'Z' || rp[2] == 'X'); /* killed, waiting for a reaper */
            }
            free(st);
            if (!dead)
                usleep(10000);
        }
        ok(gpid > 0 && dead, "grandchild %d was killed with the group", gpid);
    }
    free(pidtxt);

    /* A child that closes its output but keeps running is still timed out. */
    const char *a3[] = { "sh", "-c", "exec >/dev/null 2>&1; sleep 30", NULL };
    vcl_error_clear(&e);
    t0 = now_s();
    ok(!transport_exec(t, a3, 1, &r, &e) && e.cls == VCL_ERR_RETRYABLE, "closed output, still timed out");
    ok(now_s() - t0 < 2.0, "in time");
}

static void test_files(vcl_transport *t)
{
    vcl_error e;
    char p[512], p2[512];
    struct stat sb;
    char *data = NULL;
    size_t len = 0;

    vcl_error_clear(&e);
    path_of(p, sizeof p, "file.xml");
    ok(transport_write_file(t, p, "<domain/>\n", 10, 0640, &e), "write_file");
    ok(stat(p, &sb) == 0 && (sb.st_mode & 07777) == 0640, "mode 0640");
    ok(transport_read_file(t, p, &data, &len, &e), "read_file");
    is_str(data, "<domain/>\n", "content");
    is_int(len, 10, "length");
    free(data);
    data = NULL;

    ino_t ino = sb.st_ino;
    ok(transport_write_file(t, p, "<domain type='kvm'/>\n", 21, 0600, &e), "overwrite");
    ok(stat(p, &sb) == 0 && sb.st_ino != ino && (sb.st_mode & 07777) == 0600,
       "replaced by rename (new inode, mode 0600)");
    ok(transport_read_file(t, p, &data, &len, &e) && strcmp(data, "<domain type='kvm'/>\n") == 0, "new content");
    free(data);
    data = NULL;

    ok(transport_write_file(t, p, NULL, 0, 0644, &e) && stat(p, &sb) == 0 && sb.st_size == 0, "empty file");

    char **names = NULL;
    size_t n = 0;
    ok(transport_list_dir(t, dir, &names, &n, &e), "list_dir");
    bool tmp_left = false;
    for (size_t i = 0; i < n; i++)
        if (strstr(names[i], ".tmp-"))
            tmp_left = true;
    ok(!tmp_left, "no temp file left behind");
    util_strv_free(names, n);

    vcl_error_clear(&e);
    path_of(p2, sizeof p2, "missing-dir/file");
    ok(!transport_write_file(t, p2, "x", 1, 0644, &e), "write into a missing dir fails");
    is_int(e.cls, VCL_ERR_PERMANENT, "permanent");
    ok(strstr(e.msg, "missing-dir") != NULL, "message names the path");

    vcl_error_clear(&e);
    ok(!transport_read_file(t, p2, &data, &len, &e) && data == NULL, "read of a missing file fails");

    /* remove */
    ok(transport_remove(t, p, &e) && access(p, F_OK) != 0, "remove");
    ok(transport_remove(t, p, &e), "remove of a missing file is success");

    /* stat */
    transport_stat_info si;
    ok(transport_stat(t, p, &si, &e) && !si.exists, "stat missing: exists=false");
    ok(transport_stat(t, dir, &si, &e) && si.exists && si.is_dir, "stat dir");
    path_of(p, sizeof p, "five");
    transport_write_file(t, p, "12345", 5, 0644, &e);
    ok(transport_stat(t, p, &si, &e) && si.exists && !si.is_dir && si.size == 5 && si.mtime > 0, "stat file");

    /* mkdir_p */
    path_of(p, sizeof p, "a/b/c/");
    ok(transport_mkdir_p(t, p, 0755, &e), "mkdir_p a/b/c");
    ok(stat(p, &sb) == 0 && S_ISDIR(sb.st_mode), "a/b/c is a directory");
    ok(transport_mkdir_p(t, p, 0755, &e), "mkdir_p again is success");
    path_of(p, sizeof p, "five/sub");
    vcl_error_clear(&e);
    ok(!transport_mkdir_p(t, p, 0755, &e) && e.cls == VCL_ERR_PERMANENT, "mkdir_p under a file fails");
    diag("%s", e.msg);

    /* list_dir */
    path_of(p, sizeof p, "a/b");
    path_of(p2, sizeof p2, "a/b/zz");
    transport_write_file(t, p2, "", 0, 0644, &e);
    path_of(p2, sizeof p2, "a/b/aa");
    transport_write_file(t, p2, "", 0, 0644, &e);
    ok(transport_list_dir(t, p, &names, &n, &e), "list_dir a/b");
    is_int(n, 3, "three names");
    if (n == 3) {
        is_str(names[0], "aa", "sorted 1");
        is_str(names[1], "c", "sorted 2");
        is_str(names[2], "zz", "sorted 3");
    }
    util_strv_free(names, n);
    path_of(p, sizeof p, "nope");
    vcl_error_clear(&e);
    ok(!transport_list_dir(t, p, &names, &n, &e) && names == NULL && n == 0, "list of a missing dir fails");

    /* rename / rename_noreplace */
    path_of(p, sizeof p, "a/b/aa");
    path_of(p2, sizeof p2, "a/b/zz");
    bool existed = false;
    vcl_error_clear(&e);
    ok(!transport_rename_noreplace(t, p, p2, &existed, &e), "rename_noreplace onto an existing file fails");
    ok(existed && access(p, F_OK) == 0, "existed is set, source kept");
    path_of(p2, sizeof p2, "a/b/new");
    ok(transport_rename_noreplace(t, p, p2, &existed, &e) && !existed && access(p2, F_OK) == 0 &&
       access(p, F_OK) != 0, "rename_noreplace to a new name");
    path_of(p, sizeof p, "a/b/zz");
    ok(transport_rename(t, p2, p, &e) && access(p2, F_OK) != 0, "rename replaces");

    /* glob */
    path_of(p, sizeof p, "a/*/zz");
    ok(transport_glob(t, p, &names, &n, &e) && n == 1, "glob a/*/zz");
    if (n == 1) {
        path_of(p2, sizeof p2, "a/b/zz");
        is_str(names[0], p2, "glob result");
    }
    util_strv_free(names, n);
    path_of(p, sizeof p, "a/*/nothing*");
    ok(transport_glob(t, p, &names, &n, &e) && n == 0 && names == NULL, "glob without match: empty");
}

static long long progress_calls, progress_last;
static void on_progress(void *opaque, long long done, long long total)
{
    (void)opaque;
    (void)total;
    progress_calls++;
    progress_last = done;
}

static void test_copy_in(vcl_transport *t)
{
    vcl_error e;
    char src[512], dst[512];
    struct stat sb;

    vcl_error_clear(&e);
    path_of(src, sizeof src, "sparse.img");
    path_of(dst, sizeof dst, "copy.img");
    int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const long long size = 64LL * 1024 * 1024;
    ok(fd >= 0 && ftruncate(fd, size) == 0, "64 MiB sparse source");
    static char block[1024 * 1024];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (char)(i * 7 + 3);
    ok(pwrite(fd, block, sizeof block, 20LL * 1024 * 1024) == (ssize_t)sizeof block, "1 MiB of data at 20 MiB");
    ok(pwrite(fd, "end", 3, size - 3) == 3, "3 bytes at the end");
    close(fd);

    ok(transport_copy_in(t, src, dst, on_progress, NULL, &e), "copy_in");
    ok(stat(dst, &sb) == 0 && sb.st_size == size, "same size");
    ok((long long)sb.st_blocks * 512 <= 3LL * 1024 * 1024, "still sparse (%lld bytes allocated)",
       (long long)sb.st_blocks * 512);
    ok(files_equal(src, dst), "byte-identical");
    ok(progress_calls >= 2 && progress_last == size, "progress reported (%lld calls, last %lld)",
       progress_calls, progress_last);

    vcl_error_clear(&e);
    path_of(src, sizeof src, "no-such-source");
    ok(!transport_copy_in(t, src, dst, NULL, NULL, &e) && e.cls == VCL_ERR_PERMANENT, "missing source: permanent");
}


/* Files planted where the worker reads or writes: a symbolic link and a FIFO
 * are refused (permanent, naming the path and what is there), nothing blocks
 * and a link's target is never changed. */
static void test_planted_files(vcl_transport *t)
{
    vcl_error e;
    char target[512], lnk[512], fifo[512], p[512], src[512], hard[512];
    char *data = NULL;
    size_t len = 0;
    transport_stat_info st;
    bool exists = true;

    signal(SIGALRM, on_alarm);
    alarm(60);
    path_of(target, sizeof target, "secret");
    put(target, "do not touch\n");
    struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
    utimensat(AT_FDCWD, target, old, 0);
    long long target_mtime = mtime_ns(target);
    path_of(lnk, sizeof lnk, "planted.console.log");
    ok(symlink(target, lnk) == 0, "a symbolic link planted at %s", lnk);
    path_of(fifo, sizeof fifo, "planted.fifo");
    ok(mkfifo(fifo, 0644) == 0, "a FIFO planted at %s", fifo);

    /* read_file */
    vcl_error_clear(&e);
    ok(!transport_read_file(t, lnk, &data, &len, &e) && !data, "read_file refuses a symbolic link");
    is_int(e.cls, VCL_ERR_PERMANENT, "permanent");
    ok_after(strstr(e.msg, lnk) && strstr(e.msg, "is a symbolic link, not a regular file"),
       "message names the path and says a link is there: %s", e.msg);
    double t0 = now_s();
    vcl_error_clear(&e);
    ok(!transport_read_file(t, fifo, &data, &len, &e) && !data, "read_file refuses a FIFO");
    ok(now_s() - t0 < 5, "without blocking (%.2f s)", now_s() - t0);
    ok_after(e.cls == VCL_ERR_PERMANENT && strstr(e.msg, "is a FIFO, not a regular file") &&
           strstr(e.msg, fifo), "message: %s", e.msg);
    vcl_error_clear(&e);
    ok_after(!transport_read_file(t, dir, &data, &len, &e) && strstr(e.msg, "is a directory"),
       "read_file refuses a directory: %s", e.msg);

    /* write_file (temp + rename) */
    vcl_error_clear(&e);
    ok(!transport_write_file(t, lnk, "evil", 4, 0644, &e), "write_file refuses to replace a link");
    ok_after(e.cls == VCL_ERR_PERMANENT && strstr(e.msg, "symbolic link") && strstr(e.msg, lnk),
       "message: %s", e.msg);
    vcl_error_clear(&e);
    t0 = now_s();
    ok_after(!transport_write_file(t, fifo, "evil", 4, 0644, &e) && strstr(e.msg, "is a FIFO"),
       "write_file refuses to replace a FIFO (%.2f s): %s", now_s() - t0, e.msg);

    /* copy_in (destination on the node) and copy_out (source on the node) */
    path_of(src, sizeof src, "source.img");
    put(src, "image bytes\n");
    vcl_error_clear(&e);
    ok_after(!transport_copy_in(t, src, lnk, NULL, NULL, &e) && strstr(e.msg, "symbolic link"),
       "copy_in refuses a link as destination: %s", e.msg);
    vcl_error_clear(&e);
    t0 = now_s();
    ok_after(!transport_copy_in(t, src, fifo, NULL, NULL, &e) && strstr(e.msg, "is a FIFO"),
       "copy_in refuses a FIFO as destination (%.2f s): %s", now_s() - t0, e.msg);
    path_of(hard, sizeof hard, "hard.img");
    ok(link(target, hard) == 0, "a hard link to the secret planted at %s", hard);
    vcl_error_clear(&e);
    ok_after(!transport_copy_in(t, src, hard, NULL, NULL, &e) && strstr(e.msg, "hard links"),
       "copy_in refuses a destination with another name: %s", e.msg);
    unlink(hard);
    path_of(p, sizeof p, "copy-out.img");
    vcl_error_clear(&e);
    ok_after(!transport_copy_out(t, lnk, p, NULL, NULL, &e) && strstr(e.msg, "symbolic link"),
       "copy_out refuses a link as source: %s", e.msg);
    vcl_error_clear(&e);
    t0 = now_s();
    ok_after(!transport_copy_out(t, fifo, p, NULL, NULL, &e) && strstr(e.msg, "is a FIFO"),
       "copy_out refuses a FIFO as source (%.2f s): %s", now_s() - t0, e.msg);

    is_str(slurp(target), "do not touch\n", "the link's target kept its content");
    is_int(mtime_ns(target), target_mtime, "and its mtime");
    ok(lstat(lnk, &(struct stat){ 0 }) == 0 && lstat(fifo, &(struct stat){ 0 }) == 0,
       "the planted link and FIFO are left for the operator to see");

    /* lstat and check_file */
    vcl_error_clear(&e);
    ok(transport_lstat(t, lnk, &st, &e) && st.exists && st.is_link && !st.is_reg && !st.is_dir,
       "lstat: a link is a link");
    ok(transport_stat(t, lnk, &st, &e) && st.exists && st.is_reg && !st.is_link,
       "stat: follows it to a regular file");
    ok(transport_lstat(t, fifo, &st, &e) && st.exists && !st.is_reg && S_ISFIFO(st.mode),
       "lstat: a FIFO, with its type in mode");
    struct stat tsb;
    ok(lstat(target, &tsb) == 0 && transport_lstat(t, target, &st, &e) && st.is_reg &&
           st.mode == (unsigned)tsb.st_mode && st.uid == (unsigned)geteuid() && st.size == 13,
       "lstat: mode, owner and size of a file");
    is_str(transport_file_kind(st.mode), "a regular file", "file kind");
    ok(transport_check_file(t, target, &exists, &e) && exists, "check_file: a regular file is fine");
    path_of(p, sizeof p, "not-there");
    ok(transport_check_file(t, p, &exists, &e) && !exists, "check_file: a missing file is fine");
    vcl_error_clear(&e);
    ok_after(!transport_check_file(t, lnk, &exists, &e) && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "symbolic link"), "check_file: a link is refused: %s", e.msg);
    vcl_error_clear(&e);
    ok(!transport_check_file(t, fifo, NULL, &e) && strstr(e.msg, "FIFO"), "check_file: a FIFO is refused");
    alarm(0);
}

/* transport_dir_check and what transport_mkdir_p refuses and makes. */
static void test_dirs(vcl_transport *t)
{
    vcl_error e;
    transport_dir_verdict v;
    char p[512], q[512], want[700];
    struct stat sb;
    bool root = geteuid() == 0;

    vcl_error_clear(&e);
    ok(transport_dir_check(t, dir, &v, &e), "dir_check of the test dir");
    ok(v.exists && v.is_dir && v.safe && v.writable, "exists, a directory, safe, writable");
    is_int(v.uid, geteuid(), "owner");
    is_int(v.mode, 0700, "mode 0700");
    ok(v.free_bytes > 0, "free bytes known (%lld)", v.free_bytes);
    is_str(v.problem, "", "no problem");
    is_str(v.fix, "", "nothing to fix");

    path_of(p, sizeof p, "not/yet/there");
    ok(transport_dir_check(t, p, &v, &e), "dir_check of a missing path");
    ok(!v.exists && !v.is_dir && v.safe && v.writable && v.free_bytes > 0,
       "missing: safe and creatable where it would be made");

    /* world-writable without the sticky bit: refused, here and below */
    path_of(p, sizeof p, "ww");
    ok(mkdir(p, 0755) == 0 && chmod(p, 0777) == 0, "a world-writable directory");
    ok(transport_dir_check(t, p, &v, &e), "dir_check ww");
    ok(v.exists && v.is_dir && !v.safe && v.mode == 0777, "not safe, mode 0777");
    ok_after(strstr(v.problem, "world-writable without the sticky bit") && strstr(v.problem, p),
       "problem: %s", v.problem);
    snprintf(want, sizeof want, "chmod o-w %s", p);
    is_str(v.fix, want, "fix");
    path_of(q, sizeof q, "ww/inner");
    ok(mkdir(q, 0755) == 0, "a directory inside it");
    ok_after(transport_dir_check(t, q, &v, &e) && v.exists && !v.safe && strstr(v.problem, p),
       "below a world-writable directory: not safe either (%s)", v.problem);
    path_of(q, sizeof q, "ww/new/dir");
    vcl_error_clear(&e);
    ok(!transport_mkdir_p(t, q, 0755, &e) && e.cls == VCL_ERR_PERMANENT, "mkdir_p below it: refused");
    ok_after(strstr(e.msg, "world-writable") && strstr(e.msg, want), "error says why and how to fix it: %s", e.msg);
    ok(!exists("ww/new"), "nothing was created");
    path_of(p, sizeof p, "sticky");
    ok(mkdir(p, 0755) == 0 && chmod(p, 01777) == 0, "a world-writable directory with the sticky bit");
    ok(transport_dir_check(t, p, &v, &e) && v.safe && v.mode == 01777, "is safe (like /tmp)");

    /* owned by another non-root user */
    if (root) {
        path_of(p, sizeof p, "nobodys");
        ok(mkdir(p, 0755) == 0 && chown(p, 65534, 65534) == 0, "a directory owned by uid 65534");
        ok(transport_dir_check(t, p, &v, &e) && v.exists && !v.safe && v.uid == 65534,
           "dir_check: not safe, uid 65534");
        ok_after(strstr(v.problem, "owned by") && strstr(v.problem, "uid 65534") && strstr(v.problem, p),
           "problem: %s", v.problem);
        snprintf(want, sizeof want, "chown root %s", p);
        is_str(v.fix, want, "fix");
        path_of(q, sizeof q, "nobodys/xml");
        vcl_error_clear(&e);
        ok_after(!transport_mkdir_p(t, q, 0755, &e) && e.cls == VCL_ERR_PERMANENT &&
               strstr(e.msg, "uid 65534") && strstr(e.msg, want),
           "mkdir_p below it: refused with the fix: %s", e.msg);
        ok(!exists("nobodys/xml"), "nothing was created");
        ok(chown(p, 0, 0) == 0 && transport_mkdir_p(t, q, 0755, &e), "after the fix: fine");
    } else {
        diag("not root: the directory owned by another user is not tested");
    }

    /* symbolic links: the directory itself must not be one; on the way, one
     * owned by root or the node user is followed and its target judged */
    path_of(p, sizeof p, "real");
    path_of(q, sizeof q, "link-to-real");
    ok(mkdir(p, 0755) == 0 && symlink(p, q) == 0, "a link to a directory");
    ok_after(transport_dir_check(t, q, &v, &e) && v.exists && !v.is_dir && !v.safe &&
           strstr(v.problem, "symbolic link"), "the directory is a link: not safe (%s)", v.problem);
    vcl_error_clear(&e);
    ok_after(!transport_mkdir_p(t, q, 0755, &e) && strstr(e.msg, "symbolic link"), "mkdir_p refuses it: %s", e.msg);
    path_of(q, sizeof q, "link-to-real/sub");
    ok(transport_mkdir_p(t, q, 0755, &e), "a directory through a link on the way: fine");
    ok(stat(q, &sb) == 0 && S_ISDIR(sb.st_mode) && exists("real/sub"), "made in the real directory");
    path_of(p, sizeof p, "ww/inner");
    path_of(q, sizeof q, "link-to-ww-inner");
    ok(symlink(p, q) == 0, "a link into a world-writable directory");
    path_of(q, sizeof q, "link-to-ww-inner/x");
    ok_after(transport_dir_check(t, q, &v, &e) && !v.safe && strstr(v.problem, "world-writable"),
       "a link on the way into an unsafe tree: not safe (%s)", v.problem);

    /* what mkdir_p makes: exactly the mode asked, whatever the umask, ours */
    mode_t old = umask(077);
    path_of(p, sizeof p, "made/by/mkdir");
    ok(transport_mkdir_p(t, p, 0755, &e), "mkdir_p with umask 077");
    umask(old);
    path_of(q, sizeof q, "made");
    ok(stat(q, &sb) == 0 && (sb.st_mode & 07777) == 0755 && sb.st_uid == geteuid(),
       "made: 0755, owned by the node user");
    ok(stat(p, &sb) == 0 && (sb.st_mode & 07777) == 0755 && sb.st_uid == geteuid(),
       "made/by/mkdir: 0755, owned by the node user");
    ok(transport_dir_check(t, p, &v, &e) && v.safe && v.mode == 0755 && v.uid == (unsigned)geteuid(),
       "and dir_check finds it safe");
    path_of(p, sizeof p, "made//by///mkdir2/");
    ok(transport_mkdir_p(t, p, 0755, &e) && exists("made/by/mkdir2"), "doubled and trailing slashes");

    /* a file on the way */
    path_of(p, sizeof p, "secret/sub");
    ok_after(transport_dir_check(t, p, &v, &e) && !v.safe && !v.exists && strstr(v.problem, "regular file"),
       "a file on the way: not safe (%s)", v.problem);
    vcl_error_clear(&e);
    ok(!transport_dir_check(t, "relative/dir", &v, &e) || (!v.safe && v.problem[0]),
       "a relative path is not judged safe");
}

int main(void)
{
    if (!mkdtemp(dir)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    if (chdir(dir) != 0) {
        printf("Bail out! chdir: %s\n", strerror(errno));
        return 1;
    }
    vcl_error e;
    test_kinds();
    vcl_transport *t = transport_new("local", NULL, &e);
    test_exec(t);
    test_timeout(t);
    test_files(t);
    test_copy_in(t);
    test_planted_files(t);
    test_dirs(t);
    transport_free(t);
    if (chdir("/") != 0)
        diag("chdir /: %s", strerror(errno));
    rm_rf(dir);
    return done_testing();
}
