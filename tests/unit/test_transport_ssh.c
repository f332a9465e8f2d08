/* test_transport_ssh.c: the "ssh" transport.
 *
 * Always: the quoting of argv for the remote shell (pure), and the errors of
 * transport_new("ssh") without options.
 * With a loopback sshd (tests/integration/50-ssh.t runs this with
 * VCL_SSH_PORT, VCL_SSH_KEY, VCL_SSH_KNOWN_HOSTS and VCL_SSHD_PID from
 * world_sshd): commands with hostile arguments, exit statuses, timeouts,
 * every file operation, glob compared with the local transport's glob of the
 * same tree (the node is this host), copy_in (sparse, resume, restart), 200
 * commands from 4 threads on a bounded number of sessions, a reconnect after
 * the node dropped the sessions, a node that stops answering in the middle
 * of a command (its sshd SIGSTOPped), unknown and changed host keys
 * (VCL_SSH_KH_UNKNOWN, VCL_SSH_KH_CHANGED). */
#include "tap.h"
#include "transport.h"
#include "transport_impl.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


static char dir[] = "/tmp/vclw-ssh-XXXXXX";
static transport_opts opts;
#include "helpers.h"

static void quote_is(const char *const argv[], const char *want, const char *name)
{
    char *got = transport_sh_quote_argv(argv);
    is_str(got, want, "quote: %s", name);
    free(got);
}

static void test_quote(void)
{
    const char *a1[] = { "ls", NULL };
    quote_is(a1, "'ls'", "one word");
    const char *a2[] = { "printf", "%s\\n", "a b", NULL };
    quote_is(a2, "'printf' '%s\\n' 'a b'", "spaces and backslash kept");
    const char *a3[] = { "echo", "it's", NULL };
    quote_is(a3, "'echo' 'it'\\''s'", "a quote closes, is escaped, reopens");
    const char *a4[] = { "x", "", "'", "''", NULL };
    quote_is(a4, "'x' '' ''\\''' ''\\'''\\'''", "empty and only quotes");
    const char *a5[] = { "x", "$(id)", "`id`", "; rm -rf /", "a\nb", "${IFS}", "*", "~", "!", NULL };
    quote_is(a5, "'x' '$(id)' '`id`' '; rm -rf /' 'a\nb' '${IFS}' '*' '~' '!'",
             "shell syntax stays inside single quotes");
    const char *none[] = { NULL };
    ok(transport_sh_quote_argv(none) == NULL, "quote: empty argv gives NULL");
    ok(transport_sh_quote_argv(NULL) == NULL, "quote: NULL argv gives NULL");
}

static void test_open_errors(void)
{
    vcl_error e;
    vcl_error_clear(&e);
    ok(transport_new("ssh", NULL, &e) == NULL && e.cls == VCL_ERR_PERMANENT,
       "ssh without options: permanent error");
    ok(strstr(e.msg, "needs a host") != NULL, "message says a host is needed: %s", e.msg);
    transport_opts o = { .host = "127.0.0.1", .port = 22 };
    vcl_error_clear(&e);
    ok_after(transport_new("ssh", &o, &e) == NULL && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "ssh_private_key"),
       "no key: permanent, names the config option (%s)", e.msg);
    o.private_key = "/nonexistent/key";
    vcl_error_clear(&e);
    ok_after(transport_new("ssh", &o, &e) == NULL && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "ssh_known_hosts"),
       "no known_hosts: permanent, names the config option (%s)", e.msg);
    o.known_hosts = "/nonexistent/known_hosts";
    vcl_error_clear(&e);
    ok_after(transport_new("ssh", &o, &e) == NULL && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "/nonexistent/key"),
       "unreadable key: permanent, names the file (%s)", e.msg);
}

/* ------------------------------------------------------------ live tests */

static void test_exec(vcl_transport *t)
{
    vcl_error e;
    transport_result r = { 0 };
    char p1[512], p2[512], p3[512], p4[512], p5[512], p6[512], p7[512];
    path_of(p1, sizeof p1, "inj1");
    path_of(p2, sizeof p2, "inj2");
    path_of(p3, sizeof p3, "inj3");
    path_of(p4, sizeof p4, "inj4");
    path_of(p5, sizeof p5, "inj5");
    path_of(p6, sizeof p6, "inj6");
    path_of(p7, sizeof p7, "inj7");
    char s1[600], s2[600], s3[600], s4[600], s5[600], s6[600], s7[600];
    snprintf(s1, sizeof s1, "$(touch %s)", p1);
    snprintf(s2, sizeof s2, "`touch %s`", p2);
    snprintf(s3, sizeof s3, "; touch %s", p3);
    snprintf(s4, sizeof s4, "' && touch %s '", p4);
    snprintf(s5, sizeof s5, "| touch %s", p5);
    snprintf(s6, sizeof s6, "\ntouch %s\n", p6);
    snprintf(s7, sizeof s7, "'\"'\"'; touch %s; '", p7);
    const char *argv[] = { "printf", "[%s]\\n", "a b", "it's", "'", "''", "\"dq\"", s1, s2, s3,
                           s4, s5, s6, s7, "$HOME", "${IFS}x", "*", "~", "\\", "", "-n", "%s",
                           "\t tab", "!", "#comment", "\xc3\xa9t\xc3\xa9", NULL };
    char want[8192] = "";
    for (int i = 2; argv[i]; i++) {
        size_t l = strlen(want);
        snprintf(want + l, sizeof want - l, "[%s]\n", argv[i]);
    }
    vcl_error_clear(&e);
    ok_after(transport_exec(t, argv, 30, &r, &e), "exec printf with hostile arguments (%s)", e.msg);
    is_int(r.status, 0, "printf exit 0");
    is_str(r.out, want, "every argument came back literally");
    ok(!exists("inj1") && !exists("inj2") && !exists("inj3") && !exists("inj4") &&
           !exists("inj5") && !exists("inj6") && !exists("inj7"),
       "no injection attempt created a file");
    transport_result_clear(&r);

    const char *a2[] = { "sh", "-c", "echo out; echo err >&2; exit 7", NULL };
    ok(transport_exec(t, a2, 10, &r, &e), "exec exit 7");
    is_int(r.status, 7, "exit status 7");
    is_str(r.out, "out\n", "stdout captured");
    is_str(r.err, "err\n", "stderr captured");
    transport_result_clear(&r);

    const char *a3[] = { "sh", "-c", "kill -9 $$", NULL };
    ok(transport_exec(t, a3, 10, &r, &e), "exec killed by a signal");
    is_int(r.status, 137, "status 128+9");
    transport_result_clear(&r);

    vcl_error_clear(&e);
    ok(transport_run(t, a2, 10, VCL_ERR_PERMANENT, NULL, &e) == false, "run: non-zero is an error");
    is_str(e.msg, "sh -c failed (exit 7): err", "run error names command, status, stderr");

    const char *a4[] = { "no-such-command-vcl", "x", NULL };
    vcl_error_clear(&e);
    ok_after(!transport_exec(t, a4, 10, &r, &e) && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "no-such-command-vcl") && strstr(e.msg, "not found"),
       "missing command: permanent error (%s)", e.msg);
    transport_result_clear(&r);

    const char *a5[] = { "-rf", NULL };
    vcl_error_clear(&e);
    ok(!transport_exec(t, a5, 10, &r, &e) && e.cls == VCL_ERR_PERMANENT, "argv[0] '-rf' refused");

    /* Large output: stdout capped at 1 MiB, the command still finishes. */
    const char *a6[] = { "head", "-c", "3000000", "/dev/zero", NULL };
    ok(transport_exec(t, a6, 30, &r, &e) && r.status == 0, "3 MB of stdout");
    transport_result_clear(&r);

    /* Timeout: the node kills the command; the worker gets a retryable error. */
    char marker[512];
    path_of(marker, sizeof marker, "after-timeout");
    char script[1024];
    snprintf(script, sizeof script, "sleep 4; touch %s", marker);
    const char *a7[] = { "sh", "-c", script, NULL };
    double t0 = now_s();
    vcl_error_clear(&e);
    ok(!transport_exec(t, a7, 1, &r, &e), "exec past its timeout fails");
    double dt = now_s() - t0;
    ok(dt < 3.5, "returned after the timeout (%.2fs)", dt);
    is_int(e.cls, VCL_ERR_RETRYABLE, "timeout: retryable");
    ok_after(strstr(e.msg, "timed out") != NULL, "timeout: message (%s)", e.msg);
    sleep(4);
    ok(!exists("after-timeout"), "the timed-out command was killed on the node");
}

static void test_files(vcl_transport *t)
{
    vcl_error e;
    char p[512], q[512], d[512];
    transport_stat_info st;
    char *data = NULL;
    size_t len = 0;

    path_of(p, sizeof p, "x/y/z");
    vcl_error_clear(&e);
    ok_after(transport_mkdir_p(t, p, 0755, &e), "mkdir -p x/y/z (%s)", e.msg);
    ok(transport_mkdir_p(t, p, 0755, &e), "mkdir -p again: fine");
    ok(transport_stat(t, p, &st, &e) && st.exists && st.is_dir, "stat: a directory");
    path_of(p, sizeof p, "x/y/z/f.xml");
    ok_after(transport_write_file(t, p, "<domain/>\n", 10, 0640, &e), "write_file (%s)", e.msg);
    ok(transport_read_file(t, p, &data, &len, &e), "read_file");
    is_str(data, "<domain/>\n", "content");
    is_int(len, 10, "length");
    free(data);
    struct stat sb;
    ok(stat(p, &sb) == 0 && (sb.st_mode & 07777) == 0640, "mode 0640 set exactly");
    ok_after(transport_write_file(t, p, "<domain type='kvm'/>\n", 21, 0600, &e),
       "write_file over an existing file (%s)", e.msg);
    ok(transport_read_file(t, p, &data, &len, &e) && strcmp(data, "<domain type='kvm'/>\n") == 0,
       "replaced content");
    free(data);
    ok(stat(p, &sb) == 0 && (sb.st_mode & 07777) == 0600, "mode 0600 after replace");
    char **names = NULL;
    size_t n = 0;
    path_of(d, sizeof d, "x/y/z");
    ok(transport_list_dir(t, d, &names, &n, &e) && n == 1 && strcmp(names[0], "f.xml") == 0,
       "no temporary file left next to it");
    transport_names_free(names, n);
    ok(transport_write_file(t, p, "", 0, 0644, &e), "write an empty file");
    ok(transport_stat(t, p, &st, &e) && st.exists && !st.is_dir && st.size == 0, "stat: empty file");

    path_of(q, sizeof q, "x/y/z/g.xml");
    ok_after(transport_rename(t, p, q, &e), "rename (%s)", e.msg);
    ok(transport_stat(t, p, &st, &e) && !st.exists, "old name gone");
    ok(transport_write_file(t, p, "new", 3, 0644, &e), "write a new f");
    ok_after(transport_rename(t, p, q, &e), "rename over an existing file (%s)", e.msg);
    ok(transport_read_file(t, q, &data, &len, &e) && strcmp(data, "new") == 0, "replaced by rename");
    free(data);
    ok(transport_write_file(t, p, "third", 5, 0644, &e), "write f again");
    bool existed = false;
    vcl_error_clear(&e);
    ok_after(!transport_rename_noreplace(t, p, q, &existed, &e) && existed && e.cls == VCL_ERR_PERMANENT,
       "rename_noreplace refuses an existing target (%s)", e.msg);
    ok(transport_read_file(t, q, &data, &len, &e) && strcmp(data, "new") == 0, "target untouched");
    free(data);
    ok(transport_stat(t, p, &st, &e) && st.exists, "source still there");
    ok(transport_remove(t, q, &e), "remove target");
    existed = true;
    ok(transport_rename_noreplace(t, p, q, &existed, &e) && !existed, "rename_noreplace to a free name");
    vcl_error_clear(&e);
    ok_after(!transport_rename(t, p, q, &e) && e.cls == VCL_ERR_PERMANENT, "rename of a missing file: permanent (%s)", e.msg);
    ok(transport_remove(t, q, &e), "remove");
    ok(transport_remove(t, q, &e), "remove a missing file: fine");
    path_of(p, sizeof p, "missing/file");
    ok(transport_stat(t, p, &st, &e) && !st.exists, "stat of a missing path: exists=false");
    vcl_error_clear(&e);
    ok_after(!transport_read_file(t, p, &data, &len, &e) && e.cls == VCL_ERR_PERMANENT,
       "read of a missing file: permanent (%s)", e.msg);
    ok(!transport_list_dir(t, p, &names, &n, &e) && n == 0, "list of a missing dir fails");

    /* mkdir -p through a file is refused. */
    path_of(p, sizeof p, "afile");
    ok(transport_write_file(t, p, "x", 1, 0644, &e), "a file");
    path_of(p, sizeof p, "afile/sub");
    vcl_error_clear(&e);
    ok_after(!transport_mkdir_p(t, p, 0755, &e) && e.cls == VCL_ERR_PERMANENT,
       "mkdir -p under a file: permanent (%s)", e.msg);
}

/* Files planted where the worker reads or writes over SFTP: a symbolic link
 * and a FIFO are refused without blocking (sftp-server itself opens without
 * O_NOFOLLOW: the transport lstats first), the link's target unchanged;
 * transport_dir_check and mkdir_p judge directories as for a local node. */
static void test_planted(vcl_transport *t)
{
    vcl_error e;
    char target[512], lnk[512], fifo[512], p[512], q[512], src[512], want[700];
    char *data = NULL;
    size_t len = 0;
    transport_dir_verdict v;
    transport_stat_info st;
    struct stat sb;

    signal(SIGALRM, on_alarm);
    alarm(120);
    path_of(target, sizeof target, "secret");
    put(target, "do not touch\n");
    struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
    utimensat(AT_FDCWD, target, old, 0);
    long long target_mtime = mtime_ns(target);
    path_of(lnk, sizeof lnk, "planted.xml");
    path_of(fifo, sizeof fifo, "planted.console.log");
    ok(symlink(target, lnk) == 0 && mkfifo(fifo, 0644) == 0, "a link and a FIFO planted");

    vcl_error_clear(&e);
    ok_after(!transport_read_file(t, lnk, &data, &len, &e) && e.cls == VCL_ERR_PERMANENT &&
                 strstr(e.msg, "is a symbolic link, not a regular file") && strstr(e.msg, lnk),
             "read_file over SFTP refuses a link (%s)", e.msg);
    double t0 = now_s();
    vcl_error_clear(&e);
    ok_after(!transport_read_file(t, fifo, &data, &len, &e) && strstr(e.msg, "is a FIFO") &&
                 now_s() - t0 < 30,
             "read_file over SFTP refuses a FIFO without blocking (%s)", e.msg);
    vcl_error_clear(&e);
    ok_after(!transport_write_file(t, lnk, "evil", 4, 0644, &e) && strstr(e.msg, "symbolic link"),
             "write_file refuses to replace a link (%s)", e.msg);
    vcl_error_clear(&e);
    ok_after(!transport_write_file(t, fifo, "evil", 4, 0644, &e) && strstr(e.msg, "FIFO"),
             "write_file refuses to replace a FIFO (%s)", e.msg);
    path_of(src, sizeof src, "source.img");
    put(src, "image bytes\n");
    vcl_error_clear(&e);
    ok_after(!transport_copy_in(t, src, lnk, NULL, NULL, &e) && strstr(e.msg, "symbolic link"),
             "copy_in refuses a link as destination (%s)", e.msg);
    vcl_error_clear(&e);
    ok_after(!transport_copy_in(t, src, fifo, NULL, NULL, &e) && strstr(e.msg, "FIFO"),
             "copy_in refuses a FIFO as destination (%s)", e.msg);
    path_of(p, sizeof p, "out.img");
    vcl_error_clear(&e);
    ok_after(!transport_copy_out(t, lnk, p, NULL, NULL, &e) && strstr(e.msg, "symbolic link"),
             "copy_out refuses a link as source (%s)", e.msg);
    vcl_error_clear(&e);
    ok_after(!transport_copy_out(t, fifo, p, NULL, NULL, &e) && strstr(e.msg, "FIFO"),
             "copy_out refuses a FIFO as source (%s)", e.msg);
    is_str(slurp(target), "do not touch\n", "the link's target kept its content");
    is_int(mtime_ns(target), target_mtime, "and its mtime");
    ok(transport_lstat(t, lnk, &st, &e) && st.is_link && !st.is_reg, "lstat over SFTP: a link");
    ok(transport_lstat(t, fifo, &st, &e) && S_ISFIFO(st.mode), "lstat over SFTP: a FIFO");
    ok(transport_stat(t, target, &st, &e) && st.is_reg && st.uid == 0 && st.size == 13,
       "stat over SFTP: owner and size");
    vcl_error_clear(&e);
    ok_after(!transport_check_file(t, lnk, NULL, &e) && strstr(e.msg, "symbolic link"),
             "check_file over SFTP refuses a link (%s)", e.msg);
    alarm(0);

    /* directories */
    vcl_error_clear(&e);
    ok_after(transport_dir_check(t, dir, &v, &e), "dir_check over SFTP (%s)", e.msg);
    ok(v.exists && v.is_dir && v.safe && v.writable && v.uid == 0 && v.mode == 0700 &&
           v.free_bytes > 0 && !v.problem[0],
       "the test dir: safe, writable, root's, 0700, %lld bytes free", v.free_bytes);
    path_of(p, sizeof p, "ww");
    ok(mkdir(p, 0755) == 0 && chmod(p, 0777) == 0, "a world-writable directory");
    ok_after(transport_dir_check(t, p, &v, &e) && !v.safe && strstr(v.problem, "world-writable"),
       "dir_check: not safe (%s)", v.problem);
    snprintf(want, sizeof want, "chmod o-w %s", p);
    is_str(v.fix, want, "fix");
    path_of(q, sizeof q, "ww/xml");
    vcl_error_clear(&e);
    ok_after(!transport_mkdir_p(t, q, 0755, &e) && e.cls == VCL_ERR_PERMANENT && strstr(e.msg, want),
             "mkdir_p below it is refused (%s)", e.msg);
    path_of(p, sizeof p, "nobodys");
    ok(mkdir(p, 0755) == 0 && chown(p, 65534, 65534) == 0, "a directory owned by uid 65534");
    ok_after(transport_dir_check(t, p, &v, &e) && !v.safe && strstr(v.problem, "uid 65534"),
       "dir_check: not safe (%s)", v.problem);
    snprintf(want, sizeof want, "chown root %s", p);
    is_str(v.fix, want, "fix names the ssh user");
    path_of(q, sizeof q, "nobodys/xml");
    vcl_error_clear(&e);
    ok_after(!transport_mkdir_p(t, q, 0755, &e) && strstr(e.msg, want) && !exists("nobodys/xml"),
             "mkdir_p below it is refused, nothing made (%s)", e.msg);
    path_of(p, sizeof p, "real");
    path_of(q, sizeof q, "link-dir");
    ok(mkdir(p, 0755) == 0 && symlink(p, q) == 0, "a link to a directory");
    vcl_error_clear(&e);
    ok_after(!transport_mkdir_p(t, q, 0755, &e) && strstr(e.msg, "symbolic link"),
             "mkdir_p refuses a link as the directory (%s)", e.msg);
    path_of(q, sizeof q, "link-dir/sub/deeper");
    ok_after(transport_mkdir_p(t, q, 0755, &e), "through a link on the way: fine (%s)", e.msg);
    ok(stat(q, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 07777) == 0755 && sb.st_uid == 0,
       "made 0755, owned by the ssh user");
    path_of(p, sizeof p, "made/by/sftp");
    ok_after(transport_mkdir_p(t, p, 0711, &e), "mkdir_p mode 0711 (%s)", e.msg);
    path_of(q, sizeof q, "made");
    ok(stat(q, &sb) == 0 && (sb.st_mode & 07777) == 0711 && stat(p, &sb) == 0 &&
           (sb.st_mode & 07777) == 0711, "exactly the mode asked, at every level");
    path_of(p, sizeof p, "absent/dir");
    ok(transport_dir_check(t, p, &v, &e) && !v.exists && v.safe && v.writable,
       "a missing directory: safe and creatable");
}

static bool same_list(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static void test_glob(vcl_transport *t)
{
    vcl_error e;
    vcl_transport *lt = transport_new("local", NULL, &e);
    char p[512];
    const char *files[] = { "g/repo1/win7-v1.qcow2", "g/repo1/win7-v2.qcow2", "g/repo2/win7-v3.qcow2",
                            "g/repo2/other.img", "g/rep[x]/win7-v9.qcow2", "g/repo3/.hidden.qcow2",
                            "g/repo3/sub/win7-v4.qcow2", "g/a b/win7-v5.qcow2", NULL };
    for (int i = 0; files[i]; i++) {
        char d[512];
        path_of(p, sizeof p, files[i]);
        snprintf(d, sizeof d, "%s", p);
        *strrchr(d, '/') = '\0';
        transport_mkdir_p(t, d, 0755, &e);
        transport_write_file(t, p, "x", 1, 0644, &e);
    }
    const char *patterns[] = { "g/repo*/win7-v*.qcow2", "g/*/win7-v?.qcow2", "g/repo[12]/*",
                               "g/repo3/*", "g/repo3/.*", "g/*/sub/*.qcow2", "g/*",
                               "g/repo1/win7-v1.qcow2", "g/repo1/nothing", "g/nothing*/x",
                               "g/rep\\[x\\]/*", "g/a b/*", "g/*/other.img", NULL };
    for (int i = 0; patterns[i]; i++) {
        char **a = NULL, **b = NULL;
        size_t na = 0, nb = 0;
        path_of(p, sizeof p, patterns[i]);
        vcl_error_clear(&e);
        bool ra = transport_glob(t, p, &a, &na, &e);
        bool rb = transport_glob(lt, p, &b, &nb, &e);
        ok(ra && rb && same_list(a, na, b, nb), "glob %s: %zu path(s) over ssh, as local glob(3) (%zu)",
           patterns[i], na, nb);
        transport_names_free(a, na);
        transport_names_free(b, nb);
    }
    transport_free(lt);
}

static long long last_done = -1, first_done = -1, progress_total = -1;
static int progress_calls;
static void on_progress(void *opaque, long long done, long long total)
{
    (void)opaque;
    if (progress_calls++ == 0)
        first_done = done;
    last_done = done;
    progress_total = total;
}

static void write_at(int fd, off_t off, size_t n, unsigned seed)
{
    char *buf = malloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (char)(seed >> 16);
    }
    if (pwrite(fd, buf, n, off) != (ssize_t)n)
        abort();
    free(buf);
}

static void test_copy_in(vcl_transport *t)
{
    vcl_error e;
    char src[512], dst[512];
    struct stat sb;
    path_of(src, sizeof src, "src.img");
    path_of(dst, sizeof dst, "dst.img");
    int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ok(fd >= 0 && ftruncate(fd, 256LL << 20) == 0, "256 MiB sparse source");
    write_at(fd, 0, 3 << 20, 1);
    write_at(fd, 100LL << 20, 5 << 20, 2);
    write_at(fd, (200LL << 20) + 12345, 1 << 20, 3);
    close(fd);

    progress_calls = 0;
    vcl_error_clear(&e);
    double t0 = now_s();
    ok_after(transport_copy_in(t, src, dst, on_progress, NULL, &e), "copy_in (%s)", e.msg);
    diag("copy_in of a 256 MiB sparse file with 9 MiB of data: %.2fs", now_s() - t0);
    ok(files_equal(src, dst), "copy is identical");
    ok(stat(dst, &sb) == 0 && sb.st_size == 256LL << 20, "copy has the full size");
    ok_after((long long)sb.st_blocks * 512 < 32LL << 20, "copy is sparse (%lld MiB allocated)",
             (long long)sb.st_blocks * 512 >> 20);
    is_int(last_done, 256LL << 20, "last progress: done = total");
    is_int(progress_total, 256LL << 20, "progress total");
    is_int(first_done, 0, "started from 0");

    /* A copy cut short: dst holds the first 101 MiB; copy_in resumes there. */
    ok(truncate(dst, 101LL << 20) == 0, "cut the copy at 101 MiB");
    progress_calls = 0;
    ok_after(transport_copy_in(t, src, dst, on_progress, NULL, &e), "copy_in again (%s)", e.msg);
    is_int(first_done, 101LL << 20, "resumed at 101 MiB (first progress)");
    ok(files_equal(src, dst), "resumed copy is identical");

    /* dst with other content: not a prefix, starts over. */
    fd = open(dst, O_WRONLY | O_TRUNC);
    write_at(fd, 0, 1 << 20, 99);
    close(fd);
    progress_calls = 0;
    ok(transport_copy_in(t, src, dst, on_progress, NULL, &e), "copy_in over foreign content");
    is_int(first_done, 0, "foreign content: started over");
    ok(files_equal(src, dst), "copy identical after starting over");

    /* dst longer than the source: starts over too. */
    ok(truncate(dst, 300LL << 20) == 0, "dst longer than source");
    progress_calls = 0;
    ok(transport_copy_in(t, src, dst, on_progress, NULL, &e) && first_done == 0 &&
           files_equal(src, dst),
       "longer dst: started over, identical");

    /* Dense data with zero runs inside it (not holes in the source):
     * aligned 64 KiB zero blocks become holes, unaligned zeros are sent. */
    fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write_at(fd, 0, 24 << 20, 7);
    char *z = calloc(1, 3 << 20);
    ok(pwrite(fd, z, 1 << 20, 4 << 20) == 1 << 20 && pwrite(fd, z, 100000, (9 << 20) + 12345) == 100000 &&
           pwrite(fd, z, 2 << 20, 22 << 20) == 2 << 20,
       "24 MiB of data with zero runs");
    free(z);
    close(fd);
    unlink(dst);
    ok_after(transport_copy_in(t, src, dst, NULL, NULL, &e), "copy_in of dense data (%s)", e.msg);
    ok(files_equal(src, dst), "dense copy identical");
    ok_after(stat(dst, &sb) == 0 && sb.st_size == 24 << 20 &&
                 (long long)sb.st_blocks * 512 <= (21LL << 20) &&
                 (long long)sb.st_blocks * 512 >= (20LL << 20),
             "aligned zero runs became holes (%lld KiB allocated of 24 MiB)",
             (long long)sb.st_blocks / 2);

    char missing[512];
    path_of(missing, sizeof missing, "no-such-source");
    vcl_error_clear(&e);
    ok(!transport_copy_in(t, missing, dst, NULL, NULL, &e) && e.cls == VCL_ERR_PERMANENT,
       "missing source: permanent");
    path_of(missing, sizeof missing, "no-such-dir/dst");
    vcl_error_clear(&e);
    ok_after(!transport_copy_in(t, src, missing, NULL, NULL, &e) && e.cls == VCL_ERR_PERMANENT,
       "missing target dir: permanent (%s)", e.msg);
    unlink(src);
    unlink(dst);
}

/* ---- threads: 200 commands from 4 threads ---- */

typedef struct thr_arg {
    vcl_transport *t;
    int id, fails;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    for (int i = 0; i < 50; i++) {
        char want[64];
        snprintf(want, sizeof want, "%d-%d", a->id, i);
        const char *argv[] = { "echo", want, NULL };
        transport_result r = { 0 };
        vcl_error e;
        vcl_error_clear(&e);
        if (!transport_exec(a->t, argv, 30, &r, &e) || r.status != 0 || strncmp(r.out, want, strlen(want)))
            a->fails++;
        transport_result_clear(&r);
        if (i % 10 == 0) {
            transport_stat_info st;
            if (!transport_stat(a->t, "/", &st, &e) || !st.is_dir)
                a->fails++;
        }
    }
    return NULL;
}

static int count_sockets(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[300], l[300];
        snprintf(p, sizeof p, "/proc/self/fd/%s", de->d_name);
        ssize_t k = readlink(p, l, sizeof l - 1);
        if (k > 0) {
            l[k] = '\0';
            n += strncmp(l, "socket:", 7) == 0;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* Processes whose parent is pid (sshd forks one per connection): counted,
 * and sent SIGKILL when kill_them. */
static int children_of(long pid, bool kill_them)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[300], buf[1024];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(p, sizeof p, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = '\0';
        char *rp = strrchr(buf, ')');
        long ppid = 0;
        char state;
        if (!rp || sscanf(rp + 2, "%c %ld", &state, &ppid) != 2 || ppid != pid)
            continue;
        n++;
        if (kill_them)
            kill((pid_t)atol(de->d_name), SIGKILL);
    }
    if (d)
        closedir(d);
    return n;
}

static int count_children(long pid)
{
    return children_of(pid, false);
}

static void kill_children(long pid)
{
    children_of(pid, true);
}

static void test_threads(vcl_transport *t, long sshd_pid)
{
    transport_ssh_close_idle();
    int base_sockets = count_sockets();
    transport_ssh_stats s0, s1;
    transport_ssh_stats_get(t, &s0);
    pthread_t th[4];
    thr_arg args[4];
    double t0 = now_s();
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){ .t = t, .id = i };
        pthread_create(&th[i], NULL, thr_main, &args[i]);
    }
    int fails = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        fails += args[i].fails;
    }
    double dt = now_s() - t0;
    transport_ssh_stats_get(t, &s1);
    is_int(fails, 0, "200 commands (+20 stats) from 4 threads all right");
    diag("4 threads x 50 commands: %.2fs (%.1f ms per command per thread); %lu new sessions, "
         "%lu uses", dt, dt * 1000 / 50, s1.connects - s0.connects, s1.uses - s0.uses);
    ok(s1.connects - s0.connects <= 4, "at most 4 sessions opened for 4 threads (%lu)",
       s1.connects - s0.connects);
    ok(s1.open <= 4 && s1.idle == s1.open, "after: %d sessions open, all idle", s1.open);
    int socks = count_sockets() - base_sockets;
    ok(socks <= 4 && socks == s1.open, "open sockets of this process: %d (= pooled sessions)", socks);
    if (sshd_pid > 0) {
        int kids = count_children(sshd_pid);
        ok(kids <= 4, "sshd has %d session processes (<= 4)", kids);
    }
    transport_ssh_close_idle();
    ok(count_sockets() == base_sockets, "close_idle: no socket left");
    if (sshd_pid > 0) {
        int kids = -1;
        for (int i = 0; i < 50 && (kids = count_children(sshd_pid)) > 0; i++)
            usleep(100 * 1000);
        is_int(kids, 0, "sshd: every session process gone");
    }
}

static void test_reconnect(vcl_transport *t, long sshd_pid)
{
    vcl_error e;
    transport_ssh_stats s0, s1;
    transport_stat_info st;
    transport_ssh_close_idle();
    ok(transport_stat(t, "/", &st, &e), "a session in the pool");
    transport_ssh_stats_get(t, &s0);
    is_int(s0.idle, 1, "one idle session");
    kill_children(sshd_pid);   /* the node drops every session */
    usleep(300 * 1000);
    const char *argv[] = { "echo", "again", NULL };
    transport_result r = { 0 };
    vcl_error_clear(&e);
    ok_after(transport_exec(t, argv, 10, &r, &e) && r.status == 0 && strcmp(r.out, "again\n") == 0,
       "exec after the node dropped the session works (%s)", e.msg);
    transport_result_clear(&r);
    transport_ssh_stats_get(t, &s1);
    is_int(s1.reconnects - s0.reconnects, 1, "one transparent reconnect");
    is_int(s1.open, 1, "one session open again");
}

/* Send sig to every descendant of pid (the sshd session processes and the
 * commands they run). */
static void signal_descendants(long pid, int sig)
{
    long kids[256];
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)) && n < 256) {
        char p[300], buf[1024];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(p, sizeof p, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = '\0';
        char *rp = strrchr(buf, ')');
        long ppid = 0;
        char state;
        if (rp && sscanf(rp + 2, "%c %ld", &state, &ppid) == 2 && ppid == pid)
            kids[n++] = atol(de->d_name);
    }
    if (d)
        closedir(d);
    for (int i = 0; i < n; i++) {
        kill((pid_t)kids[i], sig);
        signal_descendants(kids[i], sig);
    }
}

typedef struct stopper_arg {
    long sshd_pid;
} stopper_arg;

static void *stopper_main(void *arg)
{
    stopper_arg *a = arg;
    usleep(1500 * 1000);   /* the command is running by now */
    signal_descendants(a->sshd_pid, SIGSTOP);
    return NULL;
}

/* The node stops answering in the middle of a command (every sshd session
 * process SIGSTOPped: the kernel still ACKs, so TCP sees nothing wrong).
 * With a 1 s keepalive the command fails after about 4 s of silence, as
 * retryable, instead of waiting for its 60 s timeout. */
static void test_silent_node(long sshd_pid)
{
    transport_ssh_close_idle();
    transport_opts o = opts;
    o.keepalive_s = 1;
    vcl_error e;
    vcl_error_clear(&e);
    vcl_transport *t = transport_new("ssh", &o, &e);
    ok_after(t != NULL, "ssh transport with a 1 s keepalive (%s)", e.msg);
    if (!t)
        return;
    const char *argv[] = { "sleep", "50", NULL };
    transport_result r = { 0 };
    stopper_arg a = { sshd_pid };
    pthread_t th;
    pthread_create(&th, NULL, stopper_main, &a);
    double t0 = now_s();
    vcl_error_clear(&e);
    bool ran = transport_exec(t, argv, 60, &r, &e);
    double took = now_s() - t0;
    pthread_join(th, NULL);
    signal_descendants(sshd_pid, SIGCONT);
    ok(!ran && e.cls == VCL_ERR_RETRYABLE && strstr(e.msg, "stopped answering"),
       "a command on a node that stopped answering fails as retryable (%s)", e.msg);
    ok(took >= 4 && took < 20, "after about 4 keepalive periods of silence (%.1f s), not the "
       "command's 60 s timeout", took);
    transport_result_clear(&r);
    const char *echo[] = { "echo", "back", NULL };
    vcl_error_clear(&e);
    ok_after(transport_exec(t, echo, 10, &r, &e) && r.status == 0 && strcmp(r.out, "back\n") == 0,
             "the node answers again on a new session (%s)", e.msg);
    transport_result_clear(&r);
    transport_free(t);
    transport_ssh_close_idle();
}

static void test_host_keys(void)
{
    const char *unknown = getenv("VCL_SSH_KH_UNKNOWN"), *changed = getenv("VCL_SSH_KH_CHANGED");
    vcl_error e;
    if (unknown) {
        transport_opts o = opts;
        o.known_hosts = unknown;
        vcl_error_clear(&e);
        ok_after(transport_new("ssh", &o, &e) == NULL && e.cls == VCL_ERR_PERMANENT &&
               strstr(e.msg, "is not in the known_hosts file"),
           "unknown host key: permanent error (%s)", e.msg);
    }
    if (changed) {
        transport_opts o = opts;
        o.known_hosts = changed;
        vcl_error_clear(&e);
        ok_after(transport_new("ssh", &o, &e) == NULL && e.cls == VCL_ERR_PERMANENT &&
               strstr(e.msg, "does NOT match"),
           "changed host key: permanent error (%s)", e.msg);
    }
    transport_opts o = opts;
    o.port = 1;   /* nothing listens there */
    vcl_error_clear(&e);
    ok_after(transport_new("ssh", &o, &e) == NULL && e.cls == VCL_ERR_RETRYABLE &&
           strstr(e.msg, "cannot connect"),
       "closed port: retryable (%s)", e.msg);
    o = opts;
    o.user = "nobody-vcl-test";
    vcl_error_clear(&e);
    ok_after(transport_new("ssh", &o, &e) == NULL && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "authentication"),
       "refused user: permanent (%s)", e.msg);
}

int main(void)
{
    test_quote();
    test_open_errors();

    const char *port = getenv("VCL_SSH_PORT"), *key = getenv("VCL_SSH_KEY"),
               *kh = getenv("VCL_SSH_KNOWN_HOSTS"), *pid = getenv("VCL_SSHD_PID");
    if (!port || !key || !kh) {
        diag("no VCL_SSH_PORT/VCL_SSH_KEY/VCL_SSH_KNOWN_HOSTS: live ssh tests skipped "
             "(tests/integration/50-ssh.t runs them against a loopback sshd)");
        return done_testing();
    }
    opts = (transport_opts){ .host = "127.0.0.1", .port = atoi(port), .user = "root",
                             .private_key = key, .known_hosts = kh, .connect_timeout_s = 10 };
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    vcl_error e;
    vcl_error_clear(&e);
    vcl_transport *t = transport_new("ssh", &opts, &e);
    ok_after(t != NULL, "ssh transport to 127.0.0.1:%s (%s)", port, e.msg);
    if (!t)
        return done_testing();
    is_str(transport_kind(t), "ssh", "kind is ssh");
    test_exec(t);
    test_files(t);
    test_planted(t);
    test_glob(t);
    test_copy_in(t);
    test_threads(t, pid ? atol(pid) : 0);
    if (pid) {
        test_reconnect(t, atol(pid));
        test_silent_node(atol(pid));
    }
    test_host_keys();
    transport_free(t);

    vcl_transport *lt = transport_new("local", NULL, &e);
    const char *rm[] = { "rm", "-rf", "--", dir, NULL };
    transport_run(lt, rm, 60, VCL_ERR_RETRYABLE, NULL, &e);
    transport_free(lt);
    return done_testing();
}
