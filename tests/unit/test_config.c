/* test_config.c: config defaults, loading (errors with file:line:col),
 * bounds, validation, print/load round-trip, password masking, reload.
 * Runs from the repo top (it loads config/vcl-worker.yaml). Clean under
 * valgrind --leak-check=full. */
#include "base/config.h"
#include "queue/db.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

#ifndef VCL_PREFIX
#define VCL_PREFIX "/usr/local"
#endif

/* ok() that shows the error message when the check fails */
#define ok_e(cond, err, ...) do { bool c_ = (cond); ok(c_, __VA_ARGS__); \
    if (!c_) diag("error: %s", (err).msg); } while (0)

#define MAX_TMP 512
static char *tmp_paths[MAX_TMP];
static int n_tmp;

/* Write content to a new temp file; the path is removed at exit. */
static const char *write_tmp(const char *content)
{
    const char *dir = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/vcl-config-test.XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        diag("mkstemp %s: %s", path, strerror(errno));
        exit(1);
    }
    size_t len = strlen(content);
    if (write(fd, content, len) != (ssize_t)len) {
        diag("write %s: %s", path, strerror(errno));
        exit(1);
    }
    close(fd);
    if (n_tmp >= MAX_TMP) {
        diag("too many temp files");
        exit(1);
    }
    tmp_paths[n_tmp] = strdup(path);
    return tmp_paths[n_tmp++];
}

static void remove_tmps(void)
{
    for (int i = 0; i < n_tmp; i++) {
        unlink(tmp_paths[i]);
        free(tmp_paths[i]);
    }
    n_tmp = 0;
}

/* Load content over a fresh config; the config is cleared afterwards. */
static bool load_text(const char *content, const char **path_out, vcl_error *e)
{
    vcl_config c = { 0 };
    const char *path = write_tmp(content);
    vcl_error_clear(e);
    bool r = config_load(&c, path, e);
    config_clear(&c);
    if (path_out)
        *path_out = path;
    return r;
}

/* Expect content to fail with exactly "<path>:<tail>". */
static void load_fails(const char *content, const char *tail, const char *name)
{
    vcl_error e;
    const char *path = NULL;
    char want[2048];
    bool r = load_text(content, &path, &e);
    ok(!r, "%s: load fails", name);
    snprintf(want, sizeof want, "%s:%s", path, tail);
    is_str(e.msg, want, "%s: message", name);
}

/* Expect content to fail with a message starting "<path>:<head>". */
static void load_fails_prefix(const char *content, const char *head, const char *name)
{
    vcl_error e;
    const char *path = NULL;
    char want[2048];
    bool r = load_text(content, &path, &e);
    ok(!r, "%s: load fails", name);
    snprintf(want, sizeof want, "%s:%s", path, head);
    ok(strncmp(e.msg, want, strlen(want)) == 0, "%s: message starts '%s'", name, head);
    if (strncmp(e.msg, want, strlen(want)) != 0)
        diag("got: %s", e.msg);
}

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Field-by-field; names the first difference in why. */
static bool cfg_equal(const vcl_config *a, const vcl_config *b, const char **why)
{
#define S(f) if (!str_eq(a->f, b->f)) { *why = #f; return false; }
#define I(f) if (a->f != b->f) { *why = #f; return false; }
    S(database) S(worker_name) I(slots) I(claim_batch) I(lease_seconds)
    I(heartbeat_seconds) I(poll_seconds) S(drivers_dir) I(n_driver_order)
    for (int i = 0; i < a->n_driver_order; i++)
        if (!str_eq(a->driver_order[i], b->driver_order[i])) {
            *why = "driver_order";
            return false;
        }
    I(retry_base_seconds) I(retry_max_seconds) I(max_attempts) S(log_level)
    I(command_timeout_seconds) I(post_load_timeout_seconds) I(image_lock_timeout_seconds)
    I(shutdown_timeout_seconds) I(watch_resync_seconds)
    S(ssh_private_key) S(ssh_known_hosts) S(metrics_listen) S(log_format)
    S(prepared_statements) I(stage_timeout_seconds) I(n_stage_timeouts)
    for (int i = 0; i < a->n_stage_timeouts; i++)
        if (!str_eq(a->stage_timeouts[i].stage, b->stage_timeouts[i].stage) ||
            a->stage_timeouts[i].seconds != b->stage_timeouts[i].seconds) {
            *why = "stage_timeouts";
            return false;
        }
    I(libvirt_keepalive_interval) I(libvirt_keepalive_count) I(libvirt_connect_timeout_seconds)
#undef S
#undef I
    *why = "";
    return true;
}

static void set_str(char **field, const char *v)
{
    free(*field);
    *field = strdup(v);
}

/* config_print into a malloc'd string (through a tmpfile). */
static char *print_to_string(const vcl_config *c)
{
    FILE *f = tmpfile();
    if (!f) {
        diag("tmpfile: %s", strerror(errno));
        exit(1);
    }
    config_print(c, f);
    long len = ftell(f);
    rewind(f);
    char *buf = calloc(1, (size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        diag("reading back config_print output failed");
        exit(1);
    }
    fclose(f);
    return buf;
}

/* ---- defaults ------------------------------------------------------------ */

static void test_defaults(void)
{
    vcl_config c;
    vcl_error e;

    setenv("VCL_DRIVERS_DIR", "/opt/vcl/drivers", 1);
    config_defaults(&c);
    is_str(c.database, "", "default database is \"\" (PG* environment)");
    is_str(c.worker_name, "", "default worker_name is \"\"");
    is_int(c.slots, 4, "default slots");
    is_int(c.claim_batch, 4, "default claim_batch = slots");
    is_int(c.lease_seconds, 30, "default lease_seconds");
    is_int(c.heartbeat_seconds, 10, "default heartbeat_seconds");
    is_int(c.poll_seconds, 30, "default poll_seconds");
    is_str(c.drivers_dir, "/opt/vcl/drivers", "drivers_dir from $VCL_DRIVERS_DIR");
    is_int(c.n_driver_order, 2, "default driver_order has 2 entries");
    is_str(c.driver_order[0], "kvm", "driver_order[0] kvm");
    is_str(c.driver_order[1], "qemu", "driver_order[1] qemu");
    is_int(c.retry_base_seconds, 5, "default retry_base_seconds");
    is_int(c.retry_max_seconds, 600, "default retry_max_seconds");
    is_int(c.max_attempts, 5, "default max_attempts");
    is_str(c.log_level, "info", "default log_level");
    is_int(c.command_timeout_seconds, 7200, "default command_timeout_seconds");
    is_int(c.post_load_timeout_seconds, 300, "default post_load_timeout_seconds");
    is_int(c.image_lock_timeout_seconds, 600, "default image_lock_timeout_seconds");
    is_int(c.shutdown_timeout_seconds, 120, "default shutdown_timeout_seconds");
    is_int(c.watch_resync_seconds, 60, "default watch_resync_seconds");
    is_str(c.ssh_private_key, "", "default ssh_private_key");
    is_str(c.ssh_known_hosts, "", "default ssh_known_hosts");
    is_str(c.metrics_listen, "", "default metrics_listen (off)");
    is_str(c.log_format, "logfmt", "default log_format");
    is_str(c.prepared_statements, "on", "default prepared_statements");
    is_int(c.stage_timeout_seconds, 900, "default stage_timeout_seconds");
    is_int(c.libvirt_keepalive_interval, 5, "default libvirt_keepalive_interval");
    is_int(c.libvirt_keepalive_count, 3, "default libvirt_keepalive_count");
    is_int(c.libvirt_connect_timeout_seconds, 30, "default libvirt_connect_timeout_seconds");
    is_int(config_stage_deadline(&c, "pre_define"), 7200, "built-in deadline of pre_define");
    is_int(config_stage_deadline(&c, "upload"), 7200, "built-in deadline of upload");
    is_int(config_stage_deadline(&c, "shutdown"), 3900, "built-in deadline of shutdown");
    is_int(config_stage_deadline(&c, "define"), 900, "other stages: stage_timeout_seconds");
    vcl_error_clear(&e);
    ok_e(config_validate(&c, &e), e, "defaults validate");
    config_clear(&c);
    ok(c.database == NULL && c.n_driver_order == 0, "config_clear empties the struct");
    config_clear(&c);
    config_clear(NULL);
    ok(1, "config_clear twice and on NULL is harmless");

    unsetenv("VCL_DRIVERS_DIR");
    config_defaults(&c);
    size_t n = strlen(c.drivers_dir), sfx = strlen("/lib/vcl-worker/drivers");
    ok(n > sfx && strcmp(c.drivers_dir + n - sfx, "/lib/vcl-worker/drivers") == 0,
       "drivers_dir without $VCL_DRIVERS_DIR ends in /lib/vcl-worker/drivers (%s)",
       c.drivers_dir);
    config_clear(&c);
}

/* Run a copy of this binary from <tmp>/bin with --print-drivers-dir; the
 * default must be <tmp>/lib/vcl-worker/drivers when it exists, else the
 * compiled-in prefix. */
static bool run_copy(const char *exe, char *out, size_t out_len)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return false;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        unsetenv("VCL_DRIVERS_DIR");
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        char *const argv[] = { (char *)exe, (char *)"--print-drivers-dir", NULL };
        execv(exe, argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < out_len && (r = read(pfd[0], out + got, out_len - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (got && out[got - 1] == '\n')
        out[got - 1] = '\0';
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static bool copy_file(const char *from, const char *to)
{
    bool okay = false;
    int in = open(from, O_RDONLY), outfd = -1;
    char buf[65536];
    ssize_t n;
    if (in < 0)
        goto cleanup;
    outfd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (outfd < 0)
        goto cleanup;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(outfd, buf, (size_t)n) != n)
            goto cleanup;
    okay = n == 0;
cleanup:
    if (in >= 0)
        close(in);
    if (outfd >= 0)
        close(outfd);
    return okay;
}

static void test_exe_relative_drivers_dir(void)
{
    char self[PATH_MAX], dir[] = "/tmp/vcl-config-exe.XXXXXX", p[PATH_MAX + 64],
         exe[PATH_MAX + 64], out[PATH_MAX + 64], want[PATH_MAX + 64], real[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || !mkdtemp(dir)) {
        diag("skip exe-relative drivers_dir: no /proc/self/exe or mkdtemp");
        return;
    }
    self[n] = '\0';
    snprintf(p, sizeof p, "%s/bin", dir);
    mkdir(p, 0755);
    snprintf(exe, sizeof exe, "%s/bin/test_config", dir);
    if (!copy_file(self, exe) || !run_copy(exe, out, sizeof out)) {
        diag("skip exe-relative drivers_dir: cannot run a copy in %s (noexec?)", dir);
        goto cleanup;
    }
    is_str(out, VCL_PREFIX "/lib/vcl-worker/drivers",
           "no <exe>/../lib/vcl-worker/drivers: drivers_dir is the prefix default");
    snprintf(p, sizeof p, "%s/lib", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/lib/vcl-worker", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/lib/vcl-worker/drivers", dir);
    mkdir(p, 0755);
    ok(realpath(p, real) != NULL, "realpath of the drivers dir");
    snprintf(want, sizeof want, "%s", real);
    ok(run_copy(exe, out, sizeof out), "copy runs");
    is_str(out, want, "drivers_dir defaults to <dir of exe>/../lib/vcl-worker/drivers");

cleanup:
    snprintf(p, sizeof p, "%s/lib/vcl-worker/drivers", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/lib/vcl-worker", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/lib", dir);
    rmdir(p);
    unlink(exe);
    snprintf(p, sizeof p, "%s/bin", dir);
    rmdir(p);
    rmdir(dir);
}

/* ---- good files ------------------------------------------------------------ */

static const char full_file[] =
    "# a full configuration\n"
    "database: \"host=db.example dbname=vcl user=vcl_worker\"\n"
    "worker_name: mn1.lab-a_2\n"
    "slots: 16\n"
    "claim_batch: 32\n"
    "lease_seconds: 60\n"
    "heartbeat_seconds: 20\n"
    "poll_seconds: 2\n"
    "drivers_dir: /opt/vcl/lib/drivers\n"
    "driver_order:\n"
    "  - qemu\n"
    "  - kvm\n"
    "  - my_driver-2\n"
    "retry_base_seconds: 10\n"
    "retry_max_seconds: 3600\n"
    "max_attempts: 9\n"
    "log_level: debug\n"
    "command_timeout_seconds: 900\n"
    "post_load_timeout_seconds: 120\n"
    "image_lock_timeout_seconds: 1800\n"
    "ssh_private_key: /etc/vcl-worker/id_ed25519\n"
    "ssh_known_hosts: '/etc/vcl-worker/known hosts'\n";

static void test_full_file(void)
{
    vcl_config c = { 0 };
    vcl_error e;
    const char *path = write_tmp(full_file);
    vcl_error_clear(&e);
    ok_e(config_load(&c, path, &e), e, "full file loads");
    is_str(c.database, "host=db.example dbname=vcl user=vcl_worker", "database");
    is_str(c.worker_name, "mn1.lab-a_2", "worker_name");
    is_int(c.slots, 16, "slots");
    is_int(c.claim_batch, 32, "claim_batch");
    is_int(c.lease_seconds, 60, "lease_seconds");
    is_int(c.heartbeat_seconds, 20, "heartbeat_seconds");
    is_int(c.poll_seconds, 2, "poll_seconds");
    is_str(c.drivers_dir, "/opt/vcl/lib/drivers", "drivers_dir");
    is_int(c.n_driver_order, 3, "driver_order count");
    is_str(c.driver_order[0], "qemu", "driver_order[0]");
    is_str(c.driver_order[1], "kvm", "driver_order[1]");
    is_str(c.driver_order[2], "my_driver-2", "driver_order[2]");
    is_int(c.retry_base_seconds, 10, "retry_base_seconds");
    is_int(c.retry_max_seconds, 3600, "retry_max_seconds");
    is_int(c.max_attempts, 9, "max_attempts");
    is_str(c.log_level, "debug", "log_level");
    is_int(c.command_timeout_seconds, 900, "command_timeout_seconds");
    is_int(c.post_load_timeout_seconds, 120, "post_load_timeout_seconds");
    is_int(c.image_lock_timeout_seconds, 1800, "image_lock_timeout_seconds");
    is_str(c.ssh_private_key, "/etc/vcl-worker/id_ed25519", "ssh_private_key");
    is_str(c.ssh_known_hosts, "/etc/vcl-worker/known hosts", "ssh_known_hosts (single quoted)");
    ok_e(config_validate(&c, &e), e, "full file validates");
    config_clear(&c);

    /* options left out keep their defaults; claim_batch follows slots */
    path = write_tmp("slots: 12\n");
    ok(config_load(&c, path, &e), "partial file loads");
    is_int(c.slots, 12, "slots set");
    is_int(c.claim_batch, 12, "claim_batch left out = slots");
    is_int(c.lease_seconds, 30, "lease_seconds left out = default");
    config_clear(&c);

    path = write_tmp("slots: 12\nclaim_batch: 0\n");
    ok(config_load(&c, path, &e), "claim_batch: 0 loads");
    is_int(c.claim_batch, 12, "claim_batch 0 = slots");
    config_clear(&c);

    /* flow mapping, null string, log level in capitals */
    path = write_tmp("{slots: 3, worker_name: ~, log_level: WARN, database: }\n");
    ok_e(config_load(&c, path, &e), e, "flow mapping loads");
    is_int(c.slots, 3, "flow mapping slots");
    is_str(c.worker_name, "", "worker_name ~ is \"\"");
    is_str(c.database, "", "empty database value is \"\"");
    is_str(c.log_level, "warn", "log_level WARN stored as warn");
    config_clear(&c);

    /* empty files are the defaults */
    const char *empties[] = { "", "# only a comment\n\n", "---\n", "--- # nothing\n...\n" };
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        vcl_config d;
        const char *why = "";
        config_defaults(&d);
        path = write_tmp(empties[i]);
        ok_e(config_load(&c, path, &e), e, "empty file %zu loads", i);
        ok(cfg_equal(&c, &d, &why), "empty file %zu is the defaults (%s)", i, why);
        config_clear(&c);
        config_clear(&d);
    }
}

static void test_example_file(void)
{
    vcl_config c = { 0 }, d;
    vcl_error e;
    const char *why = "";
    vcl_error_clear(&e);
    ok_e(config_load(&c, "config/vcl-worker.yaml", &e), e, "config/vcl-worker.yaml loads");
    ok_e(config_validate(&c, &e), e, "config/vcl-worker.yaml validates");
    config_defaults(&d);
    ok(cfg_equal(&c, &d, &why), "config/vcl-worker.yaml shows the defaults (differs: %s)", why);
    config_clear(&c);
    config_clear(&d);
}

/* ---- bounds ---------------------------------------------------------------- */

static const struct {
    const char *key;
    size_t off;
    int min, max;
} int_opts[] = {
    { "slots", offsetof(vcl_config, slots), 1, 256 },
    { "claim_batch", offsetof(vcl_config, claim_batch), 0, 1000 },
    { "lease_seconds", offsetof(vcl_config, lease_seconds), 5, 3600 },
    { "heartbeat_seconds", offsetof(vcl_config, heartbeat_seconds), 1, 600 },
    { "poll_seconds", offsetof(vcl_config, poll_seconds), 1, 3600 },
    { "retry_base_seconds", offsetof(vcl_config, retry_base_seconds), 1, 3600 },
    { "retry_max_seconds", offsetof(vcl_config, retry_max_seconds), 1, 86400 },
    { "max_attempts", offsetof(vcl_config, max_attempts), 1, 100 },
    { "command_timeout_seconds", offsetof(vcl_config, command_timeout_seconds), 1, 86400 },
    { "post_load_timeout_seconds", offsetof(vcl_config, post_load_timeout_seconds), 1, 86400 },
    { "image_lock_timeout_seconds", offsetof(vcl_config, image_lock_timeout_seconds), 1, 86400 },
    { "shutdown_timeout_seconds", offsetof(vcl_config, shutdown_timeout_seconds), 1, 3600 },
    { "watch_resync_seconds", offsetof(vcl_config, watch_resync_seconds), 0, 86400 },
    { "stage_timeout_seconds", offsetof(vcl_config, stage_timeout_seconds), 0, 604800 },
    { "libvirt_keepalive_interval", offsetof(vcl_config, libvirt_keepalive_interval), 0, 600 },
    { "libvirt_keepalive_count", offsetof(vcl_config, libvirt_keepalive_count), 1, 100 },
    { "libvirt_connect_timeout_seconds", offsetof(vcl_config, libvirt_connect_timeout_seconds),
      0, 3600 },
};

static void test_bounds(void)
{
    for (size_t i = 0; i < sizeof int_opts / sizeof int_opts[0]; i++) {
        const char *k = int_opts[i].key;
        int lo = int_opts[i].min, hi = int_opts[i].max;
        int col = (int)strlen(k) + 3;
        char text[128], tail[256], name[128];
        const int vals[2] = { lo, hi };

        for (int j = 0; j < 2; j++) {
            vcl_config c = { 0 };
            vcl_error e;
            snprintf(text, sizeof text, "%s: %d\n", k, vals[j]);
            const char *path = write_tmp(text);
            ok(config_load(&c, path, &e), "%s: %d (%s) loads", k, vals[j], j ? "max" : "min");
            int got = *(int *)(void *)((char *)&c + int_opts[i].off);
            int want = (vals[j] == 0 && int_opts[i].off == offsetof(vcl_config, claim_batch))
                       ? c.slots : vals[j];
            is_int(got, want, "%s: %d stored", k, vals[j]);
            config_clear(&c);
        }
        snprintf(text, sizeof text, "%s: %d\n", k, lo - 1);
        snprintf(tail, sizeof tail, "1:%d: option '%s' expects an integer between %d and %d, "
                 "got '%d'", col, k, lo, hi, lo - 1);
        snprintf(name, sizeof name, "%s below min", k);
        load_fails(text, tail, name);
        snprintf(text, sizeof text, "%s: %d\n", k, hi + 1);
        snprintf(tail, sizeof tail, "1:%d: option '%s' expects an integer between %d and %d, "
                 "got '%d'", col, k, lo, hi, hi + 1);
        snprintf(name, sizeof name, "%s above max", k);
        load_fails(text, tail, name);

        /* and config_validate on a config built by hand */
        vcl_config c;
        vcl_error e;
        config_defaults(&c);
        int *f = (int *)(void *)((char *)&c + int_opts[i].off);
        *f = hi + 1;
        ok(!config_validate(&c, &e), "validate: %s = %d fails", k, hi + 1);
        ok_e(strstr(e.msg, k) != NULL, e, "validate message names %s", k);
        *f = lo - 1;
        ok(!config_validate(&c, &e), "validate: %s = %d fails", k, lo - 1);
        config_clear(&c);
    }
}

/* ---- errors -------------------------------------------------------------- */

static void test_wrong_types(void)
{
    load_fails("slots: abc\n",
               "1:8: option 'slots' expects an integer between 1 and 256, got 'abc'",
               "slots: abc");
    load_fails("slots: 4.5\n",
               "1:8: option 'slots' expects an integer between 1 and 256, got '4.5'",
               "slots: 4.5");
    load_fails("slots: 0x10\n",
               "1:8: option 'slots' expects an integer between 1 and 256, got '0x10'",
               "slots: 0x10");
    load_fails("slots: ' 4'\n",
               "1:8: option 'slots' expects an integer between 1 and 256, got ' 4'",
               "slots with a leading space");
    load_fails("slots:\n",
               "1:7: option 'slots' expects an integer between 1 and 256, got ''",
               "slots with no value");
    load_fails("slots: 99999999999999999999\n",
               "1:8: option 'slots' expects an integer between 1 and 256, "
               "got '99999999999999999999'", "slots overflowing long long");
    load_fails("slots: [1, 2]\n",
               "1:8: option 'slots' expects an integer between 1 and 256, got a sequence",
               "slots: sequence");
    load_fails("poll_seconds: 3\ndatabase: {host: x}\n",
               "2:11: option 'database' expects a string, got a mapping",
               "database: mapping");
    load_fails("log_level: loud\n",
               "1:12: option 'log_level' expects one of debug, info, warn, error, got 'loud'",
               "log_level: loud");
    load_fails("log_level: [info]\n",
               "1:12: option 'log_level' expects one of debug, info, warn, error, "
               "got a sequence", "log_level: sequence");
    load_fails("worker_name: bad name!\n",
               "1:14: option 'worker_name' expects \"\" or 1..63 of [A-Za-z0-9._-], got "
               "'bad name!': only letters, digits, '.', '_' and '-' are allowed",
               "worker_name with a space");
    load_fails("drivers_dir: ''\n",
               "1:14: option 'drivers_dir' expects a non-empty string, got an empty value",
               "drivers_dir empty");
    load_fails("database: \"a\\0b\"\n",
               "1:11: option 'database' contains a NUL character", "NUL in a string");
    load_fails("slots: &n 4\nmax_attempts: *n\n",
               "2:15: option 'max_attempts': YAML aliases are not supported", "alias");
    load_fails("- slots\n- 4\n",
               "1:1: expected a mapping of 'option: value' lines at the top level, "
               "got a sequence", "top level sequence");
    load_fails("hello\n",
               "1:1: expected a mapping of 'option: value' lines at the top level, "
               "got a scalar", "top level scalar");
    load_fails("slots: 4\n---\nslots: 5\n", "2:1: only one YAML document is allowed",
               "two documents");
    load_fails("? [a, b]\n: 1\n", "1:3: an option name must be a plain word, got a sequence",
               "complex key");
}

static void test_metrics_options(void)
{
    load_fails("metrics_listen: \"1.2.3.4:0\"\n",
               "1:17: option 'metrics_listen' expects \"\", HOST:PORT, [IPV6]:PORT, :PORT or PORT, "
               "got '1.2.3.4:0': the port must be a number from 1 to 65535", "metrics_listen port 0");
    load_fails("prepared_statements: maybe\n",
               "1:22: option 'prepared_statements' expects one of on, off, got 'maybe'",
               "prepared_statements maybe");
    load_fails("log_format: text\n",
               "1:13: option 'log_format' expects one of logfmt, json, got 'text'", "log_format text");
    vcl_config c = { 0 };
    vcl_error e;
    const char *path = write_tmp("metrics_listen: \"[::1]:9187\"\nlog_format: JSON\n");
    ok_e(config_load(&c, path, &e), e, "metrics_listen [::1]:9187 and log_format JSON load");
    is_str(c.metrics_listen, "[::1]:9187", "metrics_listen value");
    is_str(c.log_format, "json", "log_format canonical spelling");
    config_clear(&c);
}

static void test_unknown_key(void)
{
    load_fails_prefix("slots: 4\n\n# a comment\n   \nfoo: 1\n",
                      "5:1: unknown option 'foo' (known options: database, worker_name, "
                      "slots, claim_batch,", "unknown key at line 5");
    load_fails_prefix("{slots: 4,   bogus: 1}\n", "1:14: unknown option 'bogus'",
                      "unknown key in a flow mapping: column");
    load_fails_prefix("slots: 4\n  # indented comment\nlease_seconds: 30\nSlots: 4\n",
                      "4:1: unknown option 'Slots'", "keys are case-sensitive");
    vcl_error e;
    load_text("nope: 1\n", NULL, &e);
    ok(strstr(e.msg, "libvirt_connect_timeout_seconds)") != NULL,
       "known options list ends with the last one");
    is_int(e.cls, VCL_ERR_PERMANENT, "config errors are permanent");
}

static void test_syntax_errors(void)
{
    load_fails("slots: 4\ndatabase: \"unterminated\n",
               "3:1: found unexpected end of stream (while scanning a quoted scalar at line 2, "
               "column 11)", "unterminated quote");
    load_fails("slots: 4\n\tpoll_seconds: 3\n",
               "2:1: found a tab character that violates indentation (while scanning a plain "
               "scalar at line 1, column 8)", "tab indentation");
    load_fails("slots: 4\ndatabase: a: b\n",
               "2:12: mapping values are not allowed in this context", "colon in a plain value");
    load_fails("slots: 4\nlease_seconds: 30\n  poll_seconds: 3\n",
               "2:16: option 'lease_seconds' expects an integer between 5 and 3600, "
               "got '30 poll_seconds'", "bad indentation folds into the value above");
    load_fails("driver_order: [kvm, qemu\nslots: 4\n",
               "2:6: did not find expected ',' or ']' (while parsing a flow sequence at line "
               "1, column 15)", "unclosed flow sequence");
    load_fails("slots: 4\ndatabase: \"\xc3\xa9\xff\"\n",
               "2:13: invalid leading UTF-8 octet: #FF at byte offset 22", "invalid UTF-8");
}

static void test_duplicates_and_missing(void)
{
    load_fails("slots: 4\npoll_seconds: 5\nslots: 8\n",
               "3:1: option 'slots' is set twice (first at line 1, column 1)", "duplicate key");
    load_fails("driver_order: kvm\n\ndriver_order: [qemu]\n",
               "3:1: option 'driver_order' is set twice (first at line 1, column 1)",
               "duplicate list key");

    vcl_config c = { 0 };
    vcl_error e;
    ok(!config_load(&c, "/nonexistent/vcl/worker.yaml", &e), "missing file fails");
    is_str(e.msg, "/nonexistent/vcl/worker.yaml: cannot open: No such file or directory",
           "missing file message");
    ok(!config_load(&c, "/tmp", &e), "a directory fails");
    is_str(e.msg, "/tmp: cannot open: Is a directory", "directory message");
    ok(!config_load(&c, NULL, &e), "NULL path fails");
    config_clear(&c);
}

/* ---- driver_order ---------------------------------------------------------- */

static void expect_drivers(const char *text, int n, const char *const *names, const char *name)
{
    vcl_config c = { 0 };
    vcl_error e;
    const char *path = write_tmp(text);
    vcl_error_clear(&e);
    ok_e(config_load(&c, path, &e), e, "%s: loads", name);
    is_int(c.n_driver_order, n, "%s: count", name);
    for (int i = 0; i < n && i < c.n_driver_order; i++)
        is_str(c.driver_order[i], names[i], "%s: item %d", name, i);
    config_clear(&c);
}

static void test_driver_order(void)
{
    const char *const qk[] = { "qemu", "kvm" };
    const char *const qkx[] = { "qemu", "kvm", "x_1" };
    const char *const one[] = { "qemu" };
    expect_drivers("driver_order: [qemu, kvm]\n", 2, qk, "flow sequence");
    expect_drivers("driver_order:\n  - qemu\n  - kvm\n  - x_1\n", 3, qkx, "block sequence");
    expect_drivers("driver_order: qemu, kvm\n", 2, qk, "comma string (plain)");
    expect_drivers("driver_order: \" qemu ,kvm,  x_1 \"\n", 3, qkx, "comma string (quoted)");
    expect_drivers("driver_order: qemu\n", 1, one, "single name");

    load_fails("driver_order: []\n",
               "1:15: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got an empty list", "empty sequence");
    load_fails("driver_order:\n",
               "1:14: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got an empty value", "no value");
    load_fails("driver_order: [kvm, qemu, kvm]\n",
               "1:27: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got 'kvm': listed twice", "duplicate driver");
    load_fails("driver_order: [kvm, ../evil]\n",
               "1:21: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got '../evil': a driver name has only letters, "
               "digits, '_' and '-'", "path in a driver name");
    load_fails("driver_order: kvm,,qemu\n",
               "1:15: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got 'kvm,,qemu': empty item in the list",
               "empty item in a comma string");
    load_fails("driver_order: [-kvm]\n",
               "1:16: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got '-kvm': a driver name may not start with '-'",
               "leading dash");
    load_fails("driver_order: [kvm, [a]]\n",
               "1:21: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got a sequence containing something other than "
               "names", "nested sequence");
    load_fails("driver_order: {kvm: 1}\n",
               "1:15: option 'driver_order' expects a list of 1 to 16 names (a YAML sequence "
               "or a comma-separated string), got a mapping", "mapping");
    load_fails_prefix("driver_order: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]\n",
                      "1:48: option 'driver_order' expects a list of 1 to 16 names",
                      "17 drivers (sequence)");
    load_fails_prefix("driver_order: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n",
                      "1:15: option 'driver_order' expects a list of 1 to 16 names",
                      "17 drivers (comma string)");
    const char *const sixteen[] = { "a", "b", "c", "d", "e", "f", "g", "h",
                                    "i", "j", "k", "l", "m", "n", "o", "p" };
    expect_drivers("driver_order: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p]\n", 16, sixteen,
                   "16 drivers");
}

/* ---- validate -------------------------------------------------------------- */

static void test_validate(void)
{
    vcl_config c = { 0 };
    vcl_error e;
    const char *path = write_tmp("lease_seconds: 30\nheartbeat_seconds: 30\n");

    ok(config_load(&c, path, &e), "heartbeat = lease loads (a cross-field check)");
    ok(!config_validate(&c, &e), "heartbeat = lease fails validate");
    ok_e(strstr(e.msg, "heartbeat_seconds (30) must be less than lease_seconds (30)") != NULL,
         e, "message says heartbeat must be less than lease");
    c.heartbeat_seconds = 45;
    ok(!config_validate(&c, &e), "heartbeat > lease fails validate");
    c.heartbeat_seconds = 29;
    ok(config_validate(&c, &e), "heartbeat < lease validates");

    c.retry_base_seconds = 601;
    c.retry_max_seconds = 600;
    ok(!config_validate(&c, &e), "retry_base > retry_max fails");
    ok_e(strstr(e.msg, "retry_base_seconds (601) must not be greater than retry_max_seconds (600)")
       != NULL, e, "retry message");
    c.retry_base_seconds = 600;
    ok(config_validate(&c, &e), "retry_base = retry_max validates");

    c.claim_batch = 0;
    ok(config_validate(&c, &e), "claim_batch 0 (= slots) validates");
    c.claim_batch = 4;

    set_str(&c.log_level, "loud");
    ok(!config_validate(&c, &e), "log_level loud fails");
    is_str(e.msg, "option 'log_level' expects one of debug, info, warn, error, got 'loud'",
           "log_level message");
    set_str(&c.log_level, "ERROR");
    ok(config_validate(&c, &e), "log_level ERROR validates (log_level_parse)");
    set_str(&c.log_level, "info");

    char name[80];
    memset(name, 'a', 63);
    name[63] = '\0';
    set_str(&c.worker_name, name);
    ok(config_validate(&c, &e), "63-character worker_name validates");
    name[63] = 'a';
    name[64] = '\0';
    set_str(&c.worker_name, name);
    ok(!config_validate(&c, &e), "64-character worker_name fails");
    ok_e(strstr(e.msg, "longer than 63") != NULL, e, "says too long");
    set_str(&c.worker_name, "mn-1.lab_x");
    ok(config_validate(&c, &e), "worker_name mn-1.lab_x validates");
    set_str(&c.worker_name, "mn/1");
    ok(!config_validate(&c, &e), "worker_name with '/' fails");
    set_str(&c.worker_name, "");
    ok(config_validate(&c, &e), "worker_name \"\" validates");
    free(c.worker_name);
    c.worker_name = NULL;
    ok(config_validate(&c, &e), "worker_name NULL validates as \"\"");

    set_str(&c.drivers_dir, "");
    ok(!config_validate(&c, &e), "empty drivers_dir fails");
    set_str(&c.drivers_dir, "/x");

    char *saved = c.driver_order[1];
    c.driver_order[1] = strdup("kvm");
    ok(!config_validate(&c, &e), "duplicate driver fails validate");
    free(c.driver_order[1]);
    c.driver_order[1] = saved;
    int n = c.n_driver_order;
    c.n_driver_order = 0;
    ok(!config_validate(&c, &e), "no drivers fails validate");
    c.n_driver_order = n;
    ok_e(config_validate(&c, &e), e, "restored config validates");
    ok(!config_validate(NULL, &e), "validate NULL fails");
    config_clear(&c);
}

/* ---- print ----------------------------------------------------------------- */

static void round_trip(const vcl_config *c, const char *name)
{
    vcl_config back = { 0 };
    vcl_error e;
    const char *why = "";
    char *text = print_to_string(c);
    const char *path = write_tmp(text);
    vcl_error_clear(&e);
    ok_e(config_load(&back, path, &e), e, "%s: printed config loads", name);
    ok(cfg_equal(c, &back, &why), "%s: round-trip equal (differs: %s)", name, why);
    if (*why)
        diag("printed:\n%s", text);
    free(text);
    config_clear(&back);
}

static void test_print(void)
{
    vcl_config c;
    config_defaults(&c);
    round_trip(&c, "defaults");

    char *text = print_to_string(&c);
    const char *keys[] = { "database", "worker_name", "slots", "claim_batch", "lease_seconds",
                           "heartbeat_seconds", "poll_seconds", "drivers_dir", "driver_order",
                           "retry_base_seconds", "retry_max_seconds", "max_attempts",
                           "log_level", "command_timeout_seconds", "post_load_timeout_seconds",
                           "image_lock_timeout_seconds", "shutdown_timeout_seconds",
                           "watch_resync_seconds", "ssh_private_key", "ssh_known_hosts",
                           "metrics_listen", "log_format", "prepared_statements",
                           "stage_timeout_seconds", "stage_timeouts",
                           "libvirt_keepalive_interval", "libvirt_keepalive_count",
                           "libvirt_connect_timeout_seconds" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char line[80];
        snprintf(line, sizeof line, "\n%s: ", keys[i]);
        ok(strstr(text, line) != NULL, "config_print shows %s", keys[i]);
    }
    ok(strstr(text, "driver_order: [\"kvm\", \"qemu\"]\n") != NULL, "driver_order as a list");
    free(text);
    config_clear(&c);

    /* strings that need YAML's double-quote escapes */
    vcl_config w = { 0 };
    vcl_error e;
    const char *path = write_tmp(full_file);
    ok(config_load(&w, path, &e), "full file loads for printing");
    set_str(&w.database, "host=db dbname='a b' application_name='x\\'y' sslmode=require");
    set_str(&w.drivers_dir, "/opt/dir with \"quotes\", \\backslash\\, tab\t, newline\n, # : - ");
    set_str(&w.ssh_private_key, "  leading and trailing spaces  ");
    set_str(&w.ssh_known_hosts, "~");
    round_trip(&w, "escapes");
    set_str(&w.ssh_known_hosts, "null");
    set_str(&w.ssh_private_key, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac NEL\xc2\x85 LS\xe2\x80\xa8 "
                                "PS\xe2\x80\xa9 BOM\xef\xbb\xbf ctl\x01\x1b\x7f c1\xc2\x9f end");
    set_str(&w.drivers_dir, "'single' \"double\" \r\n\n trailing\\");
    round_trip(&w, "unicode and control characters");
    set_str(&w.drivers_dir, "true");
    set_str(&w.ssh_private_key, "123");
    set_str(&w.ssh_known_hosts, "");
    round_trip(&w, "strings that look like other YAML types");
    config_clear(&w);
}

/* The database line as config_print writes it. */
static void printed_database(const char *db, char *out, size_t out_len)
{
    vcl_config c;
    config_defaults(&c);
    set_str(&c.database, db);
    char *text = print_to_string(&c);
    char *line = strstr(text, "\ndatabase: ");
    out[0] = '\0';
    if (line) {
        line += strlen("\ndatabase: ");
        size_t n = strcspn(line, "\n");
        snprintf(out, out_len, "%.*s", (int)n, line);
    }
    free(text);
    config_clear(&c);
}

/* --print-config and logs mask conninfo passwords with libpq's own parser
 * (db_conninfo_mask): every form libpq accepts, rebuilt as key=value pairs in
 * libpq's order when a secret is present, unchanged when none is, and wholly
 * masked when libpq cannot parse it. */
/* An ssh private key readable by group or others is refused (as ssh does). */
static void test_key_file_check(void)
{
    char path[] = "/tmp/vcl-key-test.XXXXXX";
    int fd = mkstemp(path);
    vcl_error e;
    ok(fd >= 0, "a key file");
    close(fd);
    chmod(path, 0600);
    vcl_error_clear(&e);
    ok(config_key_file_check(path, &e), "mode 0600: accepted (%s)", e.msg);
    chmod(path, 0644);
    vcl_error_clear(&e);
    ok(!config_key_file_check(path, &e) && e.cls == VCL_ERR_PERMANENT &&
           strstr(e.msg, "mode 0644") && strstr(e.msg, "chmod 600"),
       "mode 0644: refused, says how to fix it (%s)", e.msg);
    chmod(path, 0640);
    vcl_error_clear(&e);
    ok(!config_key_file_check(path, &e), "mode 0640: refused (%s)", e.msg);
    unlink(path);
    vcl_error_clear(&e);
    ok(config_key_file_check(path, &e), "a missing file is left to whoever opens it");
}

static void test_password_masking(void)
{
    static const struct {
        const char *in, *out, *secret;
    } cases[] = {
        /* key=value */
        { "host=db password=s3cret user=x", "user=x password=**** host=db", "s3cret" },
        { "password = 'a b\\' c' dbname=x", "password=**** dbname=x", "a b" },
        { "dbname=x password=", "password=**** dbname=x", NULL },
        { "host=x sslpassword=k3y port=5432", "host=x port=5432 sslpassword=****", "k3y" },
        { "host=x password=p4ss application_name='a b' options='-c x=\\'y\\''",
          "password=**** host=x options='-c x=\\'y\\'' application_name='a b'", "p4ss" },
        { "host=x password='p?@:w'", "password=**** host=x", "p?@:w" },
        /* URIs: user info, query parameters, percent-encoding */
        { "postgresql://u:secret@h:5432/db?sslmode=require&password=p2",
          "user=u password=**** dbname=db host=h port=5432 sslmode=require", "secret" },
        { "postgresql://u:secret@h:5432/db?sslmode=require&password=p2",
          "user=u password=**** dbname=db host=h port=5432 sslmode=require", "p2" },
        { "postgres://u@h/db?password=p2", "user=u password=**** dbname=db host=h", "p2" },
        { "postgresql://u:p%40ss@h,h2:5433/db",
          "user=u password=**** dbname=db host=h,h2 port=,5433", "p%40ss" },
        { "postgresql://h/db?%70assword=pw-enc", "password=**** dbname=db host=h", "pw-enc" },
        { "postgresql://h/db?%70ass%77ord=pw-enc2", "password=**** dbname=db host=h", "pw-enc2" },
        { "postgresql://u:a%3Fb%40c%3Ad@h/db", "user=u password=**** dbname=db host=h", "a%3Fb" },
        { "postgresql://u@h/db?password=q%3Fr%40s%3At", "user=u password=**** dbname=db host=h",
          "q%3Fr" },
        { "postgresql://u:se?cret@h/db", "user=u password=**** dbname=db host=h", "se?cret" },
        { "postgresql://u:se:cret@h/db", "user=u password=**** dbname=db host=h", "cret" },
        /* a raw '@' in the password: libpq reads "cret@h" as the host */
        { "postgresql://u:se@cret@h/db", "user=u password=**** dbname=db host=****", "cret" },
        { "postgresql://u:pw@[::1]:5432/db?sslpassword=k3y&application_name=a%20b",
          "user=u password=**** dbname=db host=::1 port=5432 application_name='a b' "
          "sslpassword=****", "k3y" },
        /* a raw '/' in the password: libpq reads host "u", port "pa", dbname "ss@db/vcl" */
        { "postgresql://u:pa/ss@db/vcl", "dbname=**** host=**** port=****", "ss" },
        { "postgresql://u:pa?ss@db/vcl", "user=u password=**** dbname=vcl host=db", "pa?ss" },
        /* a dbname that is itself a conninfo (libpq expands it) */
        { "dbname='postgresql://u:zz9@h/d'", "dbname='user=u password=**** dbname=d host=h'",
          "zz9" },
        { "dbname='host=h password=zz8'", "dbname='password=**** host=h'", "zz8" },
        /* no secret: shown as written */
        { "host=x dbname=y", "host=x dbname=y", NULL },
        { "passfile=/etc/pgpass host=x", "passfile=/etc/pgpass host=x", NULL },
        { "postgresql://u@h:5432/db?sslmode=require", "postgresql://u@h:5432/db?sslmode=require",
          NULL },
        { "", "", NULL },
        /* libpq cannot parse it: nothing is shown */
        { "host=x bogus=1 password=zz9", "****", "zz9" },
        { "postgresql://h/db?bogus=1&password=zz9", "****", "zz9" },
        { "password='unterminated", "****", "unterminated" },
    };
    char got[512], want[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *m = db_conninfo_mask(cases[i].in);
        is_str(m, cases[i].out, "db_conninfo_mask: %s", cases[i].in);
        if (cases[i].secret)
            ok(m && strstr(m, cases[i].secret) == NULL, "secret '%s' not shown",
               cases[i].secret);
        free(m);
        /* --print-config: the same, as a YAML double-quoted string */
        printed_database(cases[i].in, got, sizeof got);
        size_t w = 0;
        want[w++] = '"';
        for (const char *c = cases[i].out; *c && w + 3 < sizeof want; c++) {
            if (*c == '\\' || *c == '"')
                want[w++] = '\\'; /* YAML double-quoted escapes */
            want[w++] = *c;
        }
        want[w++] = '"';
        want[w] = '\0';
        is_str(got, want, "--print-config database: %s", cases[i].in);
    }
    char *m = db_conninfo_mask(NULL);
    is_str(m, "", "db_conninfo_mask(NULL) is \"\"");
    free(m);
}

static void test_help(void)
{
    FILE *f = tmpfile();
    config_print_help(f);
    long len = ftell(f);
    rewind(f);
    char *buf = calloc(1, (size_t)len + 1);
    if (fread(buf, 1, (size_t)len, f) != (size_t)len)
        diag("short read of help");
    fclose(f);
    ok(strncmp(buf, "OPTION", 6) == 0, "help starts with a header row");
    for (size_t i = 0; i < sizeof int_opts / sizeof int_opts[0]; i++) {
        char range[64];
        snprintf(range, sizeof range, "%d..%d", int_opts[i].min, int_opts[i].max);
        ok(strstr(buf, int_opts[i].key) && strstr(buf, range), "help lists %s with %s",
           int_opts[i].key, range);
    }
    ok(strstr(buf, "debug|info|warn|error") != NULL, "help lists log levels");
    ok(strstr(buf, "kvm,qemu") != NULL, "help shows the driver_order default");
    ok(strstr(buf, "ssh_known_hosts") != NULL, "help lists ssh_known_hosts");
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    /* one help line per option that config_print prints (counted, not hard-coded) */
    vcl_config pc;
    config_defaults(&pc);
    char *printed = print_to_string(&pc);
    int keys = 0;
    for (char *p = printed; p && *p; p++)
        if ((p == printed || p[-1] == '\n') && *p >= 'a' && *p <= 'z')
            keys++;
    free(printed);
    config_clear(&pc);
    ok(keys >= 18, "config_print shows every option (%d)", keys);
    is_int(lines, keys + 1, "help: header plus one line per option");
    free(buf);
}

/* ---- stage deadlines ------------------------------------------------------ */

static void test_stage_timeouts(void)
{
    vcl_config c = { 0 };
    vcl_error e;
    const char *path;

    path = write_tmp("stage_timeout_seconds: 60\n"
                     "stage_timeouts:\n  post_load: 1800\n  pre_define: 0\n  define: 8\n");
    ok_e(config_load(&c, path, &e), e, "stage_timeouts as a block mapping loads");
    is_int(config_stage_deadline(&c, "post_load"), 1800, "post_load set");
    is_int(config_stage_deadline(&c, "pre_define"), 0, "pre_define 0 = no deadline (replaces the built-in)");
    is_int(config_stage_deadline(&c, "define"), 8, "define set");
    is_int(config_stage_deadline(&c, "upload"), 7200, "upload keeps its built-in deadline");
    is_int(config_stage_deadline(&c, "cleanup"), 60, "cleanup: stage_timeout_seconds");
    is_int(config_stage_deadline(&c, NULL), 0, "no stage: no deadline");
    ok_e(config_validate(&c, &e), e, "validates");
    round_trip(&c, "stage_timeouts");
    config_clear(&c);

    path = write_tmp("stage_timeouts: {define: 8}\nstage_timeout_seconds: 0\n");
    ok_e(config_load(&c, path, &e), e, "flow mapping loads");
    is_int(config_stage_deadline(&c, "define"), 8, "define 8");
    is_int(config_stage_deadline(&c, "cleanup"), 0, "stage_timeout_seconds 0: no deadline");
    config_clear(&c);

    path = write_tmp("stage_timeouts:\n");
    ok_e(config_load(&c, path, &e), e, "an empty stage_timeouts loads");
    is_int(config_stage_deadline(&c, "pre_define"), 7200, "and keeps the built-in entries");
    config_clear(&c);

    load_fails("stage_timeouts: {post_lod: 5}\n",
               "1:18: option 'stage_timeouts' expects a mapping of stage names to seconds between 0 "
               "and 604800, e.g. {post_load: 1800}, got 'post_lod': no operation has a stage by "
               "that name (vcl-worker --help lists them)", "unknown stage");
    load_fails("stage_timeouts:\n  define: 5\n  define: 6\n",
               "3:3: option 'stage_timeouts' expects a mapping of stage names to seconds between 0 "
               "and 604800, e.g. {post_load: 1800}, got 'define': listed twice", "stage twice");
    load_fails("stage_timeouts: {define: -1}\n",
               "1:26: option 'stage_timeouts' expects a mapping of stage names to seconds between 0 "
               "and 604800, e.g. {post_load: 1800}, got '-1': not a number of seconds in range",
               "negative seconds");
    load_fails_prefix("stage_timeouts: {define: [1]}\n", "1:26: option 'stage_timeouts' expects",
                      "a sequence as a value");
    load_fails_prefix("stage_timeouts: 5\n", "1:17: option 'stage_timeouts' expects",
                      "a scalar instead of a mapping");
    load_fails_prefix("slots: {a: 1}\n", "1:8: option 'slots' expects", "a mapping for an integer");

    config_defaults(&c);
    c.stage_timeouts[0].seconds = -5;
    ok(!config_validate(&c, &e), "validate refuses a negative deadline");
    ok(strstr(e.msg, "stage_timeouts") && strstr(e.msg, "-5 seconds"), "and says which (%s)", e.msg);
    config_clear(&c);
}

/* ---- reload -------------------------------------------------------------- */

static void test_reload(void)
{
    vcl_config c;
    vcl_error e;
    const char *a = write_tmp(full_file);
    const char *b = write_tmp("database: \"dbname=other\"\ndriver_order: qemu\nslots: 2\n");
    const char *bad = write_tmp("slots: 2\nwhat: 1\n");

    config_defaults(&c); /* reload over defaults, then over loaded configs */
    ok(config_load(&c, a, &e), "first load");
    ok(config_load(&c, a, &e), "same file again");
    ok(config_load(&c, b, &e), "reload with another file");
    is_str(c.database, "dbname=other", "reloaded database");
    is_str(c.worker_name, "", "reloaded: an option left out returns to its default");
    is_int(c.n_driver_order, 1, "reloaded driver_order count");
    is_str(c.driver_order[0], "qemu", "reloaded driver_order");
    is_int(c.claim_batch, 2, "reloaded claim_batch follows slots");
    ok(!config_load(&c, bad, &e), "reload with a bad file fails");
    is_str(c.database, "dbname=other", "a failed reload keeps the running config");
    is_int(c.slots, 2, "a failed reload keeps slots");
    ok(!config_load(&c, "/nonexistent.yaml", &e), "reload with a missing file fails");
    is_str(c.driver_order[0], "qemu", "still the running config");
    for (int i = 0; i < 50; i++)
        config_load(&c, i % 2 ? a : b, &e);
    is_str(c.database, "host=db.example dbname=vcl user=vcl_worker", "after 50 reloads");
    config_clear(&c);
}

/* ---- SIGHUP: restart-only options ------------------------------------------ */

/* The options a SIGHUP does not apply, and why (the restart flag in opts[]). */
static const char *const restart_keys[] = {
    "database",             /* every connection (main, slots, watcher) uses one conninfo */
    "worker_name",          /* registered in vcl.worker at start, in every log line */
    "drivers_dir",          /* driver modules are loaded once */
    "driver_order",
    "watch_resync_seconds", /* the watcher thread starts (or not) with it */
    "metrics_listen",       /* the HTTP listener is bound once */
    "prepared_statements",  /* connections keep what they prepared */
};
#define N_RESTART (sizeof restart_keys / sizeof restart_keys[0])

static void list_keys(const char *const *keys, int n, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%s", i ? "," : "", keys[i]);
}

static void test_reload_merge(void)
{
    vcl_config run = { 0 }, next = { 0 };
    vcl_error e;
    config_changes ch;
    char got[1024];
    const char *a = write_tmp("database: \"dbname=a\"\nworker_name: w1\nslots: 4\n");
    const char *b = write_tmp("database: \"dbname=b password=x\"\n"
                              "worker_name: w2\n"
                              "slots: 8\n"
                              "lease_seconds: 60\n"
                              "heartbeat_seconds: 20\n"
                              "drivers_dir: /other/drivers\n"
                              "driver_order: [qemu]\n"
                              "log_level: debug\n"
                              "watch_resync_seconds: 0\n"
                              "metrics_listen: \":9187\"\n"
                              "prepared_statements: \"off\"\n");
    vcl_error_clear(&e);
    ok_e(config_load(&run, a, &e), e, "running config loads");
    ok_e(config_load(&next, a, &e), e, "the same file again");
    config_reload_merge(&next, &run, &ch);
    ok(ch.n_kept == 0 && ch.n_applied == 0, "reloading an unchanged file changes nothing");

    ok_e(config_load(&next, b, &e), e, "a file that changes options of both kinds loads");
    config_reload_merge(&next, &run, &ch);
    list_keys(ch.kept, ch.n_kept, got, sizeof got);
    is_str(got, "database,worker_name,drivers_dir,driver_order,watch_resync_seconds,"
                "metrics_listen,prepared_statements", "warned (restart-only and changed)");
    list_keys(ch.applied, ch.n_applied, got, sizeof got);
    is_str(got, "slots,claim_batch,lease_seconds,heartbeat_seconds,log_level",
           "applied (reloadable and changed; claim_batch follows slots)");
    is_str(next.database, "dbname=a", "database keeps the running value");
    is_str(next.worker_name, "w1", "worker_name keeps the running value");
    is_str(next.drivers_dir, run.drivers_dir, "drivers_dir keeps the running value");
    is_int(next.n_driver_order, 2, "driver_order keeps the running list");
    is_str(next.driver_order[0], "kvm", "driver_order[0] is the running one");
    is_str(next.driver_order[1], "qemu", "driver_order[1] is the running one");
    is_int(next.watch_resync_seconds, 60, "watch_resync_seconds keeps the running value");
    is_str(next.metrics_listen, "", "metrics_listen keeps the running value");
    is_str(next.prepared_statements, "on", "prepared_statements keeps the running value");
    is_int(next.slots, 8, "slots applies");
    is_int(next.claim_batch, 8, "claim_batch applies");
    is_int(next.lease_seconds, 60, "lease_seconds applies");
    is_str(next.log_level, "debug", "log_level applies");
    ok_e(config_validate(&next, &e), e, "the merged config validates");
    config_reload_merge(&next, &run, &ch);
    ok(ch.n_kept == 0, "merged again: the restart-only options now equal the running ones");

    /* a reload that only changes restart-only options applies nothing */
    config_clear(&next);
    const char *c = write_tmp("database: \"dbname=a\"\nworker_name: w3\nslots: 4\n");
    ok_e(config_load(&next, c, &e), e, "a file that changes only worker_name loads");
    config_reload_merge(&next, &run, &ch);
    list_keys(ch.kept, ch.n_kept, got, sizeof got);
    is_str(got, "worker_name", "only worker_name warns");
    is_int(ch.n_applied, 0, "nothing else changed");
    config_clear(&next);
    config_clear(&run);
    config_reload_merge(NULL, NULL, &ch);
    ok(ch.n_kept == 0 && ch.n_applied == 0, "NULL configs: no changes");

    for (size_t i = 0; i < N_RESTART; i++)
        ok(config_needs_restart(restart_keys[i]), "%s needs a restart", restart_keys[i]);
    const char *reloadable[] = { "slots", "claim_batch", "lease_seconds", "heartbeat_seconds",
                                 "poll_seconds", "log_level", "log_format",
                                 "retry_base_seconds", "command_timeout_seconds",
                                 "ssh_private_key", "history_retention_seconds" };
    for (size_t i = 0; i < sizeof reloadable / sizeof reloadable[0]; i++)
        ok(!config_needs_restart(reloadable[i]), "%s is reloadable", reloadable[i]);
    ok(!config_needs_restart("no_such_option") && !config_needs_restart(NULL),
       "unknown keys are not restart-only");
}

/* --help's SIGHUP column and the man page say which options need a restart. */
static void test_help_reload_column(void)
{
    FILE *f = tmpfile();
    char line[4096];
    int sighup_col = -1, rows = 0, right = 0;
    config_print_help(f);
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        if (sighup_col < 0) {
            char *h = strstr(line, "SIGHUP");
            sighup_col = h ? (int)(h - line) : -1;
            ok(h != NULL, "help header has a SIGHUP column");
            if (!h)
                break;
            continue;
        }
        char key[128];
        if (sscanf(line, "%127s", key) != 1 || (int)strlen(line) <= sighup_col)
            continue;
        rows++;
        const char *want = config_needs_restart(key) ? "restart" : "reload ";
        if (strncmp(line + sighup_col, want, strlen(want)) == 0)
            right++;
        else
            diag("help row %s: SIGHUP column is not '%s'", key, want);
    }
    fclose(f);
    ok(rows > 20 && right == rows, "every help row says reload or restart as the table does "
       "(%d of %d)", right, rows);

    f = tmpfile();
    config_print_man(f);
    long len = ftell(f);
    rewind(f);
    char *man = calloc(1, (size_t)len + 1);
    if (fread(man, 1, (size_t)len, f) != (size_t)len)
        diag("short read of the man text");
    fclose(f);
    for (size_t i = 0; i < N_RESTART; i++) {
        char head[160];
        snprintf(head, sizeof head, ".B %s\n", restart_keys[i]);
        const char *at = strstr(man, head);
        const char *next = at ? strstr(at + 1, ".TP") : NULL;
        const char *says = at ? strstr(at, "takes effect only after a restart") : NULL;
        ok(says && (!next || says < next), "man page: %s takes effect only after a restart",
           restart_keys[i]);
    }
    const char *at = strstr(man, ".B log_level\n");
    const char *next = at ? strstr(at + 1, ".TP") : NULL;
    const char *says = at ? strstr(at, "SIGHUP applies it") : NULL;
    ok(says && (!next || says < next), "man page: SIGHUP applies log_level");
    free(man);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-drivers-dir") == 0) {
        vcl_config c;
        config_defaults(&c);
        printf("%s\n", c.drivers_dir);
        config_clear(&c);
        return 0;
    }
    test_defaults();
    test_exe_relative_drivers_dir();
    test_full_file();
    test_example_file();
    test_bounds();
    test_wrong_types();
    test_unknown_key();
    test_metrics_options();
    test_syntax_errors();
    test_duplicates_and_missing();
    test_driver_order();
    test_validate();
    test_print();
    test_password_masking();
    test_key_file_check();
    test_help();
    test_stage_timeouts();
    test_reload();
    test_reload_merge();
    test_help_reload_column();
    remove_tmps();
    return done_testing();
}
