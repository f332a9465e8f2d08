/* config.c: the worker's YAML configuration; see config.h.
 *
 * Every option is one row of opts[] (PgBouncer style): key, type, offset in
 * vcl_config, default, bounds, extra check, help, and whether a SIGHUP can
 * apply it (.restart = true when not: PgBouncer's CF_NO_RELOAD). Defaults,
 * loading, range checks, config_validate, config_print, config_print_help and
 * config_reload_merge all walk that table; adding an option means adding a
 * field to vcl_config and a row here (reloadable unless marked .restart).
 *
 * Loading uses the libyaml event API (not the document API) because events
 * carry the line and column of every scalar, which go into the error text.
 * A file is parsed into a private vcl_config built from the defaults; only
 * when the whole file is good does it replace *c (the old values are freed).
 * So a SIGHUP reload of a broken file keeps the running configuration, and
 * reloading never leaks.
 *
 * Contract on the vcl_config passed in: config_load and config_clear take a
 * struct that is zeroed, filled by config_defaults, or filled by an earlier
 * config_load. config_defaults overwrites without freeing (it cannot tell a
 * loaded struct from stack garbage): config_clear a loaded struct first. */
#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "queue/db.h"
#include "queue/stage.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/roff.h"
#include "base/util.h"

#ifndef VCL_PREFIX
#define VCL_PREFIX "/usr/local"
#endif

#define WORKER_NAME_MAX 63
#define DRIVER_NAME_MAX 63
#define SHOW_MAX 60 /* bytes of an offending value quoted in an error */

typedef enum {
    OPT_STRING,
    OPT_INT,
    OPT_STRLIST,
    OPT_ENUM,
    OPT_SECMAP,   /* mapping name -> seconds (config_stage_timeout[]), merged over the default */
    OPT__COUNT
} opt_type;

/* An extra check on a string value (or on each item of a list). Returns false
 * and a short reason in why when the value is not acceptable. */
typedef bool (*opt_check_fn)(const char *value, char *why, size_t why_len);

typedef struct opt_def {
    const char *key;
    opt_type type;
    size_t offset;            /* of the field in vcl_config */
    size_t count_offset;      /* OPT_STRLIST, OPT_SECMAP: of the int item count */
    const char *def_str;      /* STRING/ENUM default; STRLIST: comma list; SECMAP: "a=1,b=2" */
    char *(*def_fn)(void);    /* computed STRING default (malloc'd), or NULL */
    int def_int;              /* OPT_INT default */
    int min, max;             /* INT, SECMAP: value bounds; STRLIST: item count;
                               * STRING: min is the minimum length */
    const char *const *choices; /* OPT_ENUM, NULL-terminated */
    opt_check_fn check;       /* STRING, ENUM, STRLIST items, SECMAP keys; may be NULL */
    const char *check_text;   /* what check accepts, for messages and --help */
    bool secret;              /* libpq conninfo: mask passwords when printed */
    const char *help;
    bool restart;             /* true: read once at start; SIGHUP keeps the running value
                               * and warns (PgBouncer's CF_NO_RELOAD). false (the
                               * default): SIGHUP applies it (to jobs started after) */
} opt_def;

static bool check_worker_name(const char *v, char *why, size_t why_len);
static bool check_driver_name(const char *v, char *why, size_t why_len);
static bool check_log_level(const char *v, char *why, size_t why_len);
static bool check_stage_name(const char *v, char *why, size_t why_len);
static char *default_drivers_dir(void);

static const char *const log_level_choices[] = { "debug", "info", "warn", "error", NULL };
static const char *const log_format_choices[] = { "logfmt", "json", NULL };
static const char *const on_off_choices[] = { "on", "off", NULL };

static bool emulator_check(const char *v, char *why, size_t why_len)
{
    if (!v[0] || (v[0] == '/' && !strstr(v, "/../") && !strpbrk(v, "\n\r\t")))
        return true;
    snprintf(why, why_len, "'%s' is not an absolute path", v);
    return false;
}

static const opt_def opts[] = {
    { .key = "database", .type = OPT_STRING, .offset = offsetof(vcl_config, database),
      .def_str = "", .secret = true,
      .help = "libpq conninfo or URI; \"\" = PG* environment variables only "
              "(PGHOST, PGDATABASE, ...). Passwords are never printed",
      .restart = true },
    { .key = "worker_name", .type = OPT_STRING, .offset = offsetof(vcl_config, worker_name),
      .def_str = "", .check = check_worker_name,
      .check_text = "\"\" or 1..63 of [A-Za-z0-9._-]",
      .help = "name in vcl.worker and in logs; \"\" = <hostname>-<pid>",
      .restart = true },
    { .key = "slots", .type = OPT_INT, .offset = offsetof(vcl_config, slots),
      .def_int = 4, .min = 1, .max = 256,
      .help = "jobs this worker runs at once" },
    { .key = "claim_batch", .type = OPT_INT, .offset = offsetof(vcl_config, claim_batch),
      .def_int = 0, .min = 0, .max = 1000,
      .help = "rows claimed per statement; 0 = same as slots" },
    { .key = "lease_seconds", .type = OPT_INT, .offset = offsetof(vcl_config, lease_seconds),
      .def_int = 30, .min = 5, .max = 3600,
      .help = "another worker rescues a job this long after its last heartbeat" },
    { .key = "heartbeat_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, heartbeat_seconds),
      .def_int = 10, .min = 1, .max = 600,
      .help = "how often the leases are renewed; must be less than lease_seconds (a worker "
              "holding no job renews only its vcl.worker row, every lease_seconds)" },
    { .key = "poll_seconds", .type = OPT_INT, .offset = offsetof(vcl_config, poll_seconds),
      .def_int = 30, .min = 1, .max = 3600,
      .help = "look for work at least this often; NOTIFY (new, reset or released rows, a "
              "computer or node out of maintenance, work a finished job held back) and "
              "vcl.next_due() (the next retry, lease expiry or cancel block) wake the worker "
              "sooner, so an idle pool sends almost no queries" },
    { .key = "notify_min_gap_ms", .type = OPT_INT,
      .offset = offsetof(vcl_config, notify_min_gap_ms),
      .def_int = 10, .min = 0, .max = 10000,
      .help = "at most one claim per this many milliseconds when woken by NOTIFY vcl_reservation "
              "(any login may send it: a flood costs no more); a free slot or a full batch "
              "claims at once" },
    { .key = "drivers_dir", .type = OPT_STRING, .offset = offsetof(vcl_config, drivers_dir),
      .def_fn = default_drivers_dir, .min = 1,
      .help = "directory of driver modules (*.so); default $VCL_DRIVERS_DIR, else "
              "<dir of the executable>/../lib/vcl-worker/drivers if it exists, else "
              VCL_PREFIX "/lib/vcl-worker/drivers",
      .restart = true },
    { .key = "driver_order", .type = OPT_STRLIST, .offset = offsetof(vcl_config, driver_order),
      .count_offset = offsetof(vcl_config, n_driver_order),
      .def_str = "kvm,qemu", .min = 1, .max = CONFIG_MAX_DRIVERS,
      .check = check_driver_name, .check_text = "1..63 of [A-Za-z0-9_-], no leading '-'",
      .help = "drivers tried per node in this order (YAML sequence or \"a,b\"); "
              "the first whose initialize accepts the node is used",
      .restart = true },
    { .key = "retry_base_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, retry_base_seconds),
      .def_int = 5, .min = 1, .max = 3600,
      .help = "backoff after the first failure; doubles per attempt, with jitter" },
    { .key = "retry_max_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, retry_max_seconds),
      .def_int = 600, .min = 1, .max = 86400,
      .help = "cap on the retry backoff; must be >= retry_base_seconds" },
    { .key = "max_attempts", .type = OPT_INT, .offset = offsetof(vcl_config, max_attempts),
      .def_int = 5, .min = 1, .max = 100,
      .help = "attempts for reservations that do not set their own" },
    { .key = "log_level", .type = OPT_ENUM, .offset = offsetof(vcl_config, log_level),
      .def_str = "info", .choices = log_level_choices, .check = check_log_level,
      .help = "least severe level logged" },
    { .key = "command_timeout_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, command_timeout_seconds),
      .def_int = CONFIG_COMMAND_TIMEOUT_DEFAULT_S, .min = 1, .max = 86400,
      .help = "timeout of one command on a node (qemu-img, image copies)" },
    { .key = "post_load_timeout_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, post_load_timeout_seconds),
      .def_int = 300, .min = 1, .max = 86400,
      .help = "how long post_load waits for the guest to show it booted" },
    { .key = "image_lock_timeout_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, image_lock_timeout_seconds),
      .def_int = 600, .min = 1, .max = 86400,
      .help = "how long to wait for the per-node, per-image copy lock" },
    { .key = "shutdown_timeout_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, shutdown_timeout_seconds),
      .def_int = 120, .min = 1, .max = 3600,
      .help = "shutdown: ACPI shutdown (re-sent every 5 s) for this long, then destroy; "
              "a reservation's args {\"timeout\": N} overrides it" },
    { .key = "watch_resync_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, watch_resync_seconds),
      .def_int = 60, .min = 0, .max = 86400,
      .help = "domain watcher: libvirt lifecycle events, plus a full check this often; "
              "a loaded domain stopped outside vcl-worker makes its computer RELOAD; "
              "0 = no watcher",
      .restart = true },
    { .key = "history_retention_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, history_retention_seconds),
      .def_int = 604800, .min = 0, .max = 315360000,
      .help = "finished reservations (and their stage logs) are deleted this long after they "
              "end; 0 = keep forever" },
    { .key = "prune_batch", .type = OPT_INT, .offset = offsetof(vcl_config, prune_batch),
      .def_int = 500, .min = 1, .max = 100000,
      .help = "rows the maintenance pass deletes per statement (small batches keep locks short)" },
    { .key = "ssh_private_key", .type = OPT_STRING,
      .offset = offsetof(vcl_config, ssh_private_key), .def_str = "",
      .help = "private key file for ssh nodes (libssh2 and qemu+libssh2://)" },
    { .key = "ssh_known_hosts", .type = OPT_STRING,
      .offset = offsetof(vcl_config, ssh_known_hosts), .def_str = "",
      .help = "known_hosts file that verifies ssh nodes' host keys" },
    { .key = "qemu_emulator", .type = OPT_STRING, .offset = offsetof(vcl_config, qemu_emulator),
      .def_str = "", .check = emulator_check, .check_text = "\"\" or an absolute path",
      .help = "QEMU binary on the nodes, written as the domains' <emulator> (and used by the "
              "CPU probe); \"\" = libvirt's default for the domain type" },
    { .key = "metrics_listen", .type = OPT_STRING, .offset = offsetof(vcl_config, metrics_listen),
      .def_str = "", .check = metrics_check_listen,
      .check_text = "\"\", HOST:PORT, [IPV6]:PORT, :PORT or PORT",
      .help = "serve Prometheus metrics at http://<this>/metrics, e.g. \"127.0.0.1:9187\", "
              "\"[::1]:9187\"; \":9187\" or \"9187\" = loopback; \"0.0.0.0:9187\" = every "
              "interface; \"\" = off",
      .restart = true },
    { .key = "log_format", .type = OPT_ENUM, .offset = offsetof(vcl_config, log_format),
      .def_str = "logfmt", .choices = log_format_choices,
      .help = "stderr lines: logfmt (key=value) or json (one object per line, same keys)" },
    { .key = "prepared_statements", .type = OPT_ENUM,
      .offset = offsetof(vcl_config, prepared_statements),
      .def_str = "on", .choices = on_off_choices,
      .help = "prepare a statement the second time a connection runs it (protocol level, "
              "named vclw_N); \"off\" behind PgBouncer in transaction mode before 1.21 "
              "(or without max_prepared_statements)",
      .restart = true },
    { .key = "stage_timeout_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, stage_timeout_seconds),
      .def_int = 900, .min = 0, .max = 604800,
      .help = "deadline of one stage (stage_timeouts overrides it per stage): a stage still "
              "running after it fails as retryable (\"node X did not answer within N s (stage "
              "S)\"), its slot is freed at once and its lease no longer renewed, even when its "
              "thread is stuck in a call to a hung node; 0 = no deadline" },
    { .key = "stage_timeouts", .type = OPT_SECMAP,
      .offset = offsetof(vcl_config, stage_timeouts),
      .count_offset = offsetof(vcl_config, n_stage_timeouts),
      .def_str = "pre_define=7200,shutdown=3900,flatten=7200,verify=7200,upload=7200",
      .min = 0, .max = 604800, .check = check_stage_name,
      .check_text = "a stage name of some operation (vcl-worker --help)",
      .help = "per-stage deadlines as a YAML mapping {stage: seconds}, e.g. {post_load: 1800}; "
              "0 = no deadline for that stage; merged over the built-in {pre_define: 7200, "
              "shutdown: 3900, flatten: 7200, verify: 7200, upload: 7200} (image copies, "
              "graceful shutdowns); other stages get stage_timeout_seconds" },
    { .key = "libvirt_keepalive_interval", .type = OPT_INT,
      .offset = offsetof(vcl_config, libvirt_keepalive_interval),
      .def_int = 5, .min = 0, .max = 600,
      .help = "every libvirt connection (jobs, watcher) pings the daemon after this many "
              "seconds of silence; with libvirt_keepalive_count unanswered pings the "
              "connection is closed, so a hung or stopped libvirtd turns into an error "
              "instead of a hang; 0 = no keepalive" },
    { .key = "libvirt_keepalive_count", .type = OPT_INT,
      .offset = offsetof(vcl_config, libvirt_keepalive_count),
      .def_int = 3, .min = 1, .max = 100,
      .help = "unanswered keepalive pings before a libvirt connection is closed" },
    { .key = "libvirt_connect_timeout_seconds", .type = OPT_INT,
      .offset = offsetof(vcl_config, libvirt_connect_timeout_seconds),
      .def_int = 30, .min = 0, .max = 3600,
      .help = "opening a libvirt connection (which libvirt itself never gives up) fails as "
              "retryable after this long: \"libvirt at URI did not answer within N s "
              "(connecting)\"; 0 = wait forever" },
};
#define N_OPTS (sizeof opts / sizeof opts[0])
_Static_assert(N_OPTS <= CONFIG_MAX_OPTIONS, "config_changes cannot list every option");

static const char *const type_names[OPT__COUNT] = { "string", "integer", "list", "enum",
                                                    "mapping" };

/* ---- small helpers ---------------------------------------------------- */

/* Out of memory while building a configuration: nothing sensible to do in a
 * void function (config_defaults), so say so and stop. */
static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) {
        fputs("vcl-worker: out of memory in config\n", stderr);
        abort();
    }
    return d;
}

static char **field_str(vcl_config *c, const opt_def *o)
{
    return (char **)(void *)((char *)c + o->offset);
}

static const char *field_str_get(const vcl_config *c, const opt_def *o)
{
    const char *v = *(char *const *)(const void *)((const char *)c + o->offset);
    return v ? v : "";
}

static int *field_int(vcl_config *c, const opt_def *o)
{
    return (int *)(void *)((char *)c + o->offset);
}

static int field_int_get(const vcl_config *c, const opt_def *o)
{
    return *(const int *)(const void *)((const char *)c + o->offset);
}

static char **field_list(vcl_config *c, const opt_def *o)
{
    return (char **)(void *)((char *)c + o->offset);
}

static char *const *field_list_get(const vcl_config *c, const opt_def *o)
{
    return (char *const *)(const void *)((const char *)c + o->offset);
}

static int *field_count(vcl_config *c, const opt_def *o)
{
    return (int *)(void *)((char *)c + o->count_offset);
}

static int field_count_get(const vcl_config *c, const opt_def *o)
{
    return *(const int *)(const void *)((const char *)c + o->count_offset);
}

static config_stage_timeout *field_map(vcl_config *c, const opt_def *o)
{
    return (config_stage_timeout *)(void *)((char *)c + o->offset);
}

static const config_stage_timeout *field_map_get(const vcl_config *c, const opt_def *o)
{
    return (const config_stage_timeout *)(const void *)((const char *)c + o->offset);
}

/* Set name's value in a SECMAP option (replace or append). false (why
 * filled) when the map is full. */
static bool map_set(vcl_config *c, const opt_def *o, const char *name, int seconds, char *why,
                    size_t why_len)
{
    config_stage_timeout *m = field_map(c, o);
    int *n = field_count(c, o);
    for (int i = 0; i < *n; i++)
        if (strcmp(m[i].stage, name) == 0) {
            m[i].seconds = seconds;
            return true;
        }
    if (*n >= CONFIG_MAX_STAGE_TIMEOUTS) {
        snprintf(why, why_len, "more than %d entries", CONFIG_MAX_STAGE_TIMEOUTS);
        return false;
    }
    snprintf(m[*n].stage, sizeof m[*n].stage, "%s", name);
    m[*n].seconds = seconds;
    (*n)++;
    return true;
}

static const opt_def *opt_find(const char *key)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(opts[i].key, key) == 0)
            return &opts[i];
    return NULL;
}

static void list_free(char **items, int n)
{
    for (int i = 0; i < n; i++) {
        free(items[i]);
        items[i] = NULL;
    }
}

/* Replace a list option's items; takes ownership of items[0..n). */
static void list_set(vcl_config *c, const opt_def *o, char **items, int n)
{
    char **dst = field_list(c, o);
    int *cnt = field_count(c, o);
    list_free(dst, *cnt);
    for (int i = 0; i < n; i++)
        dst[i] = items[i];
    *cnt = n;
}

/* A value quoted in an error message: at most SHOW_MAX bytes, control
 * characters shown as '?', so a message stays one printable line. */
static void show_value(const char *v, char *out, size_t out_len)
{
    size_t n = 0, i = 0;
    for (; v[i] && i < SHOW_MAX && n + 1 < out_len; i++) {
        unsigned char ch = (unsigned char)v[i];
        out[n++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[n] = '\0';
    if (v[i] && n + 4 < out_len) {
        memcpy(out + n, "...", 4);
    }
}

/* What an option accepts, for "option 'x' expects <this>, got ...". */
static void expect_text(const opt_def *o, char *out, size_t out_len)
{
    switch (o->type) {
    case OPT_INT:
        snprintf(out, out_len, "an integer between %d and %d", o->min, o->max);
        break;
    case OPT_ENUM: {
        size_t n = (size_t)snprintf(out, out_len, "one of ");
        for (int i = 0; o->choices[i] && n < out_len; i++)
            n += (size_t)snprintf(out + n, out_len - n, "%s%s", i ? ", " : "", o->choices[i]);
        break;
    }
    case OPT_STRLIST:
        snprintf(out, out_len, "a list of %d to %d names (a YAML sequence or a "
                 "comma-separated string)", o->min, o->max);
        break;
    case OPT_SECMAP:
        snprintf(out, out_len, "a mapping of stage names to seconds between %d and %d, e.g. "
                 "{post_load: 1800}", o->min, o->max);
        break;
    case OPT_STRING:
    default:
        snprintf(out, out_len, "%s", o->min > 0 ? "a non-empty string" : "a string");
        break;
    }
}

/* ---- value checks (shared by loading and config_validate) ---------------- */

static bool check_worker_name(const char *v, char *why, size_t why_len)
{
    size_t n = strlen(v);
    if (n == 0)
        return true; /* "" = <hostname>-<pid> */
    if (n > WORKER_NAME_MAX) {
        snprintf(why, why_len, "longer than %d characters", WORKER_NAME_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-') {
            snprintf(why, why_len, "only letters, digits, '.', '_' and '-' are allowed");
            return false;
        }
    }
    return true;
}

/* Driver names become "<drivers_dir>/<name>.so": no dots, no leading dash. */
static bool check_driver_name(const char *v, char *why, size_t why_len)
{
    size_t n = strlen(v);
    if (n == 0 || n > DRIVER_NAME_MAX) {
        snprintf(why, why_len, "a driver name is 1 to %d characters", DRIVER_NAME_MAX);
        return false;
    }
    if (v[0] == '-') {
        snprintf(why, why_len, "a driver name may not start with '-'");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!isalnum(ch) && ch != '_' && ch != '-') {
            snprintf(why, why_len, "a driver name has only letters, digits, '_' and '-'");
            return false;
        }
    }
    return true;
}

/* stage_timeouts keys: a stage of some operation (a typo would otherwise
 * silently give that stage the default deadline). */
static bool check_stage_name(const char *v, char *why, size_t why_len)
{
    if (strlen(v) > CONFIG_STAGE_NAME_MAX || !ops_stage_known(v)) {
        snprintf(why, why_len, "no operation has a stage by that name (vcl-worker --help lists "
                 "them)");
        return false;
    }
    return true;
}

static bool check_log_level(const char *v, char *why, size_t why_len)
{
    log_level l;
    if (log_level_parse(v, &l))
        return true;
    snprintf(why, why_len, "not a log level");
    return false;
}

/* Is v one of o's choices (case-insensitive)? The canonical spelling in out. */
static bool enum_match(const opt_def *o, const char *v, const char **out)
{
    for (int i = 0; o->choices[i]; i++)
        if (strcasecmp(v, o->choices[i]) == 0) {
            *out = o->choices[i];
            return true;
        }
    return false;
}

/* Plain decimal integer, optional sign, nothing else. */
static bool parse_int(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || !end || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* ---- defaults ----------------------------------------------------------- */

/* drivers_dir: $VCL_DRIVERS_DIR (an explicit override wins); else
 * <dir of /proc/self/exe>/../lib/vcl-worker/drivers when that directory
 * exists (a worker run from the build tree, or installed under any prefix,
 * finds its drivers); else the compiled-in prefix. */
static char *default_drivers_dir(void)
{
    const char *env = getenv("VCL_DRIVERS_DIR");
    char exe[PATH_MAX];
    char cand[PATH_MAX + 64];
    char real[PATH_MAX];
    struct stat st;

    if (env && *env)
        return xstrdup(env);
    if (util_exe_dir(exe, sizeof exe)) {
        snprintf(cand, sizeof cand, "%s/../lib/vcl-worker/drivers", exe);
        if (realpath(cand, real) && stat(real, &st) == 0 && S_ISDIR(st.st_mode))
            return xstrdup(real);
    }
    return xstrdup(VCL_PREFIX "/lib/vcl-worker/drivers");
}

int config_command_timeout(int seconds)
{
    return seconds > 0 ? seconds : CONFIG_COMMAND_TIMEOUT_DEFAULT_S;
}

/* Split "a, b,c" into trimmed items. False (why filled) on an empty item or
 * too many; items are malloc'd into out[0..*n). */
static bool split_list(const opt_def *o, const char *s, char **out, int *n,
                       char *why, size_t why_len)
{
    bool ok = false;
    int cnt = 0;
    const char *p = s;

    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (b == e) {
            snprintf(why, why_len, "empty item in the list");
            goto cleanup;
        }
        if (cnt >= o->max) {
            snprintf(why, why_len, "more than %d items", o->max);
            goto cleanup;
        }
        out[cnt] = strndup(b, (size_t)(e - b));
        if (!out[cnt]) {
            snprintf(why, why_len, "out of memory");
            goto cleanup;
        }
        cnt++;
        if (!comma)
            break;
        p = comma + 1;
    }
    ok = true;

cleanup:
    if (!ok) {
        list_free(out, cnt);
        cnt = 0;
    }
    *n = cnt;
    return ok;
}

/* Defaults with claim_batch left at 0 ("= slots"), resolved after loading. */
static void defaults_raw(vcl_config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        switch (o->type) {
        case OPT_INT:
            *field_int(c, o) = o->def_int;
            break;
        case OPT_STRLIST: {
            char *items[CONFIG_MAX_DRIVERS];
            char why[128];
            int n = 0;
            if (!split_list(o, o->def_str, items, &n, why, sizeof why)) {
                fprintf(stderr, "vcl-worker: bad built-in default for %s: %s\n", o->key, why);
                abort();
            }
            list_set(c, o, items, n);
            break;
        }
        case OPT_SECMAP: {
            /* "name=seconds,..." (built in: a bad one is a bug, caught by the
             * unit tests) */
            char why[128];
            const char *p = o->def_str;
            while (p && *p) {
                char name[CONFIG_STAGE_NAME_MAX + 1];
                size_t nl = strcspn(p, "=");
                const char *eq = p + nl;
                if (*eq != '=' || nl == 0 || nl >= sizeof name) {
                    fprintf(stderr, "vcl-worker: bad built-in default for %s\n", o->key);
                    abort();
                }
                snprintf(name, sizeof name, "%.*s", (int)nl, p);
                int v = atoi(eq + 1);
                if (!map_set(c, o, name, v, why, sizeof why)) {
                    fprintf(stderr, "vcl-worker: bad built-in default for %s: %s\n", o->key, why);
                    abort();
                }
                p = strchr(eq, ',');
                if (p)
                    p++;
            }
            break;
        }
        case OPT_STRING:
        case OPT_ENUM:
        default:
            *field_str(c, o) = o->def_fn ? o->def_fn() : xstrdup(o->def_str);
            break;
        }
    }
}

int config_stage_deadline(const vcl_config *c, const char *stage)
{
    if (!c || !stage)
        return 0;
    for (int i = 0; i < c->n_stage_timeouts && i < CONFIG_MAX_STAGE_TIMEOUTS; i++)
        if (strcmp(c->stage_timeouts[i].stage, stage) == 0)
            return c->stage_timeouts[i].seconds;
    return c->stage_timeout_seconds;
}

static void resolve_derived(vcl_config *c)
{
    if (c->claim_batch == 0)
        c->claim_batch = c->slots;
}

void config_defaults(vcl_config *c)
{
    if (!c)
        return;
    defaults_raw(c);
    resolve_derived(c);
}

void config_clear(vcl_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        if (o->type == OPT_STRING || o->type == OPT_ENUM) {
            char **p = field_str(c, o);
            free(*p);
            *p = NULL;
        } else if (o->type == OPT_STRLIST) {
            int *cnt = field_count(c, o);
            int n = *cnt;
            if (n < 0 || n > o->max)
                n = o->max; /* a corrupted count: free every slot that is set */
            list_free(field_list(c, o), n);
            *cnt = 0;
        }
    }
    memset(c, 0, sizeof *c);
}

/* ---- loading ------------------------------------------------------------ */

typedef struct loader {
    const char *path;
    yaml_parser_t parser;
    vcl_config *c;
    vcl_error *e;
    bool seen[N_OPTS];
    yaml_mark_t seen_at[N_OPTS];
} loader;

static bool ld_fail(loader *ld, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool ld_fail(loader *ld, yaml_mark_t m, const char *fmt, ...)
{
    char msg[1000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vcl_error_set(ld->e, VCL_ERR_PERMANENT, "%s:%zu:%zu: %s", ld->path,
                         m.line + 1, m.column + 1, msg);
}

/* The 0-based line and column (in characters) of a byte offset in path. */
static yaml_mark_t offset_mark(const char *path, size_t offset)
{
    yaml_mark_t m;
    FILE *f = fopen(path, "rb");
    int ch;

    memset(&m, 0, sizeof m);
    m.index = offset;
    if (!f)
        goto cleanup;
    for (size_t i = 0; i < offset && (ch = fgetc(f)) != EOF; i++) {
        if (ch == '\n') {
            m.line++;
            m.column = 0;
        } else if ((ch & 0xc0) != 0x80) { /* not a UTF-8 continuation byte */
            m.column++;
        }
    }

cleanup:
    if (f)
        fclose(f);
    return m;
}

/* The libyaml problem text with file:line:column (1-based). */
static bool ld_syntax_error(loader *ld)
{
    yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem ? p->problem : "unknown YAML error";

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return vcl_error_set(ld->e, VCL_ERR_PERMANENT, "%s: out of memory while parsing YAML",
                             ld->path);
    case YAML_READER_ERROR: {
        /* The reader reports a byte offset, not a mark (it decodes ahead of
         * the scanner): turn the offset into a line and column. */
        yaml_mark_t m = offset_mark(ld->path, p->problem_offset);
        if (p->problem_value != -1)
            return ld_fail(ld, m, "%s: #%X at byte offset %zu", problem,
                           (unsigned)p->problem_value, p->problem_offset);
        return ld_fail(ld, m, "%s at byte offset %zu", problem, p->problem_offset);
    }
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
    default:
        if (p->context)
            return ld_fail(ld, p->problem_mark, "%s (%s at line %zu, column %zu)", problem,
                           p->context, p->context_mark.line + 1, p->context_mark.column + 1);
        return ld_fail(ld, p->problem_mark, "%s", problem);
    }
}

/* Next event into ev (the previous one in ev is freed first). */
static bool ld_next(loader *ld, yaml_event_t *ev)
{
    yaml_event_delete(ev);
    if (!yaml_parser_parse(&ld->parser, ev))
        return ld_syntax_error(ld);
    return true;
}

static const char *event_what(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return "a scalar";
    case YAML_SEQUENCE_START_EVENT: return "a sequence";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_ALIAS_EVENT: return "an alias";
    case YAML_DOCUMENT_START_EVENT: return "a second document";
    default: return "something else";
    }
}

static bool is_null_scalar(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static bool ld_type_error(loader *ld, const opt_def *o, yaml_mark_t m, const char *got)
{
    char want[160];
    expect_text(o, want, sizeof want);
    return ld_fail(ld, m, "option '%s' expects %s, got %s", o->key, want, got);
}

static bool ld_value_error(loader *ld, const opt_def *o, yaml_mark_t m, const char *value,
                           const char *why)
{
    char want[160], shown[SHOW_MAX + 8];
    expect_text(o, want, sizeof want);
    show_value(value, shown, sizeof shown);
    if (why && *why)
        return ld_fail(ld, m, "option '%s' expects %s, got '%s': %s", o->key, want, shown, why);
    return ld_fail(ld, m, "option '%s' expects %s, got '%s'", o->key, want, shown);
}

/* Check list items (count, names, duplicates) and store them; takes
 * ownership of items[0..n) whatever happens. marks[i] locates item i. */
static bool ld_store_list(loader *ld, const opt_def *o, char **items, int n,
                          const yaml_mark_t *marks, yaml_mark_t whole)
{
    bool ok = false;
    char why[160];

    if (n < o->min) {
        ld_type_error(ld, o, whole, n == 0 ? "an empty list" : "too few items");
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        if (o->check && !o->check(items[i], why, sizeof why)) {
            ld_value_error(ld, o, marks[i], items[i], why);
            goto cleanup;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(items[i], items[j]) == 0) {
                ld_value_error(ld, o, marks[i], items[i], "listed twice");
                goto cleanup;
            }
    }
    list_set(ld->c, o, items, n);
    n = 0;
    ok = true;

cleanup:
    list_free(items, n);
    return ok;
}

static bool ld_scalar(loader *ld, const opt_def *o, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    yaml_mark_t m = ev->start_mark;
    char why[160] = "";

    if (strlen(v) != ev->data.scalar.length)
        return ld_fail(ld, m, "option '%s' contains a NUL character", o->key);

    switch (o->type) {
    case OPT_INT: {
        long long n = 0;
        if (!parse_int(v, &n) || n < o->min || n > o->max)
            return ld_value_error(ld, o, m, v, NULL);
        *field_int(ld->c, o) = (int)n;
        return true;
    }
    case OPT_ENUM: {
        const char *canon = NULL;
        if (is_null_scalar(ev) || !enum_match(o, v, &canon) ||
            (o->check && !o->check(canon, why, sizeof why)))
            return ld_value_error(ld, o, m, v, NULL);
        char **dst = field_str(ld->c, o);
        free(*dst);
        *dst = xstrdup(canon);
        return true;
    }
    case OPT_STRLIST: {
        char *items[CONFIG_MAX_DRIVERS];
        yaml_mark_t marks[CONFIG_MAX_DRIVERS];
        int n = 0;
        if (is_null_scalar(ev))
            return ld_type_error(ld, o, m, "an empty value");
        if (!split_list(o, v, items, &n, why, sizeof why))
            return ld_value_error(ld, o, m, v, why);
        for (int i = 0; i < n; i++)
            marks[i] = m;
        return ld_store_list(ld, o, items, n, marks, m);
    }
    case OPT_SECMAP:
        /* "stage_timeouts:" with no value: the built-in entries stay */
        if (is_null_scalar(ev))
            return true;
        return ld_type_error(ld, o, m, "a scalar");
    case OPT_STRING:
    default: {
        const char *s = is_null_scalar(ev) ? "" : v;
        if (strlen(s) < (size_t)o->min)
            return ld_type_error(ld, o, m, "an empty value");
        if (o->check && !o->check(s, why, sizeof why)) {
            char shown[SHOW_MAX + 8];
            show_value(s, shown, sizeof shown);
            return ld_fail(ld, m, "option '%s' expects %s, got '%s': %s", o->key,
                           o->check_text ? o->check_text : "a valid value", shown, why);
        }
        char **dst = field_str(ld->c, o);
        free(*dst);
        *dst = xstrdup(s);
        return true;
    }
    }
}

/* After SEQUENCE_START of a list option: items up to SEQUENCE_END. */
static bool ld_sequence(loader *ld, const opt_def *o, yaml_mark_t start)
{
    bool ok = false;
    yaml_event_t ev = { 0 };
    char *items[CONFIG_MAX_DRIVERS];
    yaml_mark_t marks[CONFIG_MAX_DRIVERS];
    int n = 0;

    for (;;) {
        if (!ld_next(ld, &ev))
            goto cleanup;
        if (ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (ev.type != YAML_SCALAR_EVENT) {
            ld_type_error(ld, o, ev.start_mark, "a sequence containing "
                          "something other than names");
            goto cleanup;
        }
        if (n >= o->max) {
            ld_type_error(ld, o, ev.start_mark, "more items");
            goto cleanup;
        }
        items[n] = xstrdup(is_null_scalar(&ev) ? "" : (const char *)ev.data.scalar.value);
        marks[n] = ev.start_mark;
        n++;
    }
    ok = ld_store_list(ld, o, items, n, marks, start);
    n = 0;

cleanup:
    list_free(items, n);
    yaml_event_delete(&ev);
    return ok;
}

/* After MAPPING_START of a SECMAP option: "name: seconds" pairs up to
 * MAPPING_END, each merged over the built-in entries. */
static bool ld_secmap(loader *ld, const opt_def *o)
{
    bool ok = false;
    yaml_event_t ev = { 0 };
    char seen[CONFIG_MAX_STAGE_TIMEOUTS][CONFIG_STAGE_NAME_MAX + 1];
    int n_seen = 0;
    char why[160] = "";

    for (;;) {
        char name[CONFIG_STAGE_NAME_MAX + 1];
        long long v = 0;
        if (!ld_next(ld, &ev))
            goto cleanup;
        if (ev.type == YAML_MAPPING_END_EVENT)
            break;
        if (ev.type != YAML_SCALAR_EVENT) {
            ld_type_error(ld, o, ev.start_mark, "a mapping whose key is not a stage name");
            goto cleanup;
        }
        const char *k = (const char *)ev.data.scalar.value;
        if (strlen(k) != ev.data.scalar.length || (o->check && !o->check(k, why, sizeof why))) {
            ld_value_error(ld, o, ev.start_mark, k, why[0] ? why : "contains a NUL character");
            goto cleanup;
        }
        snprintf(name, sizeof name, "%s", k);
        for (int i = 0; i < n_seen; i++)
            if (strcmp(seen[i], name) == 0) {
                ld_value_error(ld, o, ev.start_mark, name, "listed twice");
                goto cleanup;
            }
        if (!ld_next(ld, &ev))
            goto cleanup;
        if (ev.type != YAML_SCALAR_EVENT) {
            ld_type_error(ld, o, ev.start_mark, event_what(&ev));
            goto cleanup;
        }
        const char *val = (const char *)ev.data.scalar.value;
        if (!parse_int(val, &v) || v < o->min || v > o->max) {
            ld_value_error(ld, o, ev.start_mark, val, "not a number of seconds in range");
            goto cleanup;
        }
        if (n_seen >= CONFIG_MAX_STAGE_TIMEOUTS ||
            !map_set(ld->c, o, name, (int)v, why, sizeof why)) {
            ld_value_error(ld, o, ev.start_mark, name, why[0] ? why : "too many entries");
            goto cleanup;
        }
        snprintf(seen[n_seen++], sizeof seen[0], "%s", name);
    }
    ok = true;

cleanup:
    yaml_event_delete(&ev);
    return ok;
}

static bool ld_value(loader *ld, const opt_def *o)
{
    bool ok = false;
    yaml_event_t ev = { 0 };

    if (!ld_next(ld, &ev))
        goto cleanup;
    switch (ev.type) {
    case YAML_SCALAR_EVENT:
        ok = ld_scalar(ld, o, &ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        if (o->type == OPT_STRLIST)
            ok = ld_sequence(ld, o, ev.start_mark);
        else
            ld_type_error(ld, o, ev.start_mark, "a sequence");
        break;
    case YAML_MAPPING_START_EVENT:
        if (o->type == OPT_SECMAP)
            ok = ld_secmap(ld, o);
        else
            ld_type_error(ld, o, ev.start_mark, "a mapping");
        break;
    case YAML_ALIAS_EVENT:
        ld_fail(ld, ev.start_mark, "option '%s': YAML aliases are not supported", o->key);
        break;
    default:
        ld_type_error(ld, o, ev.start_mark, event_what(&ev));
        break;
    }

cleanup:
    yaml_event_delete(&ev);
    return ok;
}

static void known_options(char *out, size_t out_len)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_OPTS && n < out_len; i++)
        n += (size_t)snprintf(out + n, out_len - n, "%s%s", i ? ", " : "", opts[i].key);
}

/* After the top-level MAPPING_START: key/value pairs up to MAPPING_END. */
static bool ld_mapping(loader *ld)
{
    bool ok = false;
    yaml_event_t ev = { 0 };

    for (;;) {
        if (!ld_next(ld, &ev))
            goto cleanup;
        if (ev.type == YAML_MAPPING_END_EVENT)
            break;
        if (ev.type != YAML_SCALAR_EVENT) {
            ld_fail(ld, ev.start_mark, "an option name must be a plain word, got %s",
                    event_what(&ev));
            goto cleanup;
        }
        const char *key = (const char *)ev.data.scalar.value;
        const opt_def *o = opt_find(key);
        if (!o) {
            char known[900], shown[SHOW_MAX + 8];
            known_options(known, sizeof known);
            show_value(key, shown, sizeof shown);
            ld_fail(ld, ev.start_mark, "unknown option '%s' (known options: %s)", shown, known);
            goto cleanup;
        }
        size_t idx = (size_t)(o - opts);
        if (ld->seen[idx]) {
            ld_fail(ld, ev.start_mark, "option '%s' is set twice (first at line %zu, column %zu)",
                    o->key, ld->seen_at[idx].line + 1, ld->seen_at[idx].column + 1);
            goto cleanup;
        }
        ld->seen[idx] = true;
        ld->seen_at[idx] = ev.start_mark;
        if (!ld_value(ld, o))
            goto cleanup;
    }
    ok = true;

cleanup:
    yaml_event_delete(&ev);
    return ok;
}

/* stream: zero documents, or one whose root is a mapping (or empty). */
static bool ld_stream(loader *ld)
{
    bool ok = false;
    yaml_event_t ev = { 0 };

    if (!ld_next(ld, &ev)) /* STREAM_START */
        goto cleanup;
    if (!ld_next(ld, &ev))
        goto cleanup;
    if (ev.type == YAML_STREAM_END_EVENT) { /* empty file or only comments */
        ok = true;
        goto cleanup;
    }
    /* DOCUMENT_START */
    if (!ld_next(ld, &ev))
        goto cleanup;
    if (ev.type == YAML_MAPPING_START_EVENT) {
        if (!ld_mapping(ld))
            goto cleanup;
    } else if (ev.type == YAML_SCALAR_EVENT && is_null_scalar(&ev)) {
        /* "---" alone: an empty document */
    } else {
        ld_fail(ld, ev.start_mark, "expected a mapping of 'option: value' lines at the top "
                "level, got %s", event_what(&ev));
        goto cleanup;
    }
    if (!ld_next(ld, &ev)) /* DOCUMENT_END */
        goto cleanup;
    if (!ld_next(ld, &ev))
        goto cleanup;
    if (ev.type != YAML_STREAM_END_EVENT) {
        ld_fail(ld, ev.start_mark, "only one YAML document is allowed");
        goto cleanup;
    }
    ok = true;

cleanup:
    yaml_event_delete(&ev);
    return ok;
}

bool config_load(vcl_config *c, const char *path, vcl_error *e)
{
    bool ok = false;
    bool parser_ready = false;
    FILE *f = NULL;
    struct stat st;
    vcl_config tmp;
    loader ld;

    defaults_raw(&tmp);
    memset(&ld, 0, sizeof ld);
    if (!c || !path) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "config_load: no config or no path");
        goto cleanup;
    }
    f = fopen(path, "rb");
    if (!f) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: cannot open: %s", path, strerror(EISDIR));
        goto cleanup;
    }
    if (!yaml_parser_initialize(&ld.parser)) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: out of memory while parsing YAML", path);
        goto cleanup;
    }
    parser_ready = true;
    yaml_parser_set_input_file(&ld.parser, f);
    ld.path = path;
    ld.c = &tmp;
    ld.e = e;
    if (!ld_stream(&ld))
        goto cleanup;
    if (ferror(f)) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: read error", path);
        goto cleanup;
    }
    resolve_derived(&tmp);
    if (st.st_mode & S_IROTH) {
        /* ssh warns about such keys; a password every local user can read
         * deserves at least a line */
        char *masked = tmp.database ? db_conninfo_mask(tmp.database) : NULL;
        if (masked && strstr(masked, "****"))
            log_warn("%s is readable by every user of this host (mode %04o) and holds a database "
                     "password: chmod o-r %s (640 or 600), or keep the password in a pgpass file",
                     path, (unsigned)(st.st_mode & 07777), path);
        free(masked);
    }
    config_clear(c);
    *c = tmp;
    memset(&tmp, 0, sizeof tmp);
    ok = true;

cleanup:
    if (parser_ready)
        yaml_parser_delete(&ld.parser);
    if (f)
        fclose(f);
    config_clear(&tmp);
    return ok;
}

/* ---- validation --------------------------------------------------------- */

static bool validate_option(const vcl_config *c, const opt_def *o, vcl_error *e)
{
    char want[160], why[160] = "", shown[SHOW_MAX + 8];

    expect_text(o, want, sizeof want);
    switch (o->type) {
    case OPT_INT: {
        int v = field_int_get(c, o);
        if (v < o->min || v > o->max)
            return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s' expects %s, got %d",
                                 o->key, want, v);
        return true;
    }
    case OPT_ENUM: {
        const char *v = field_str_get(c, o), *canon = NULL;
        if (!enum_match(o, v, &canon) || (o->check && !o->check(v, why, sizeof why))) {
            show_value(v, shown, sizeof shown);
            return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s' expects %s, got '%s'",
                                 o->key, want, shown);
        }
        return true;
    }
    case OPT_STRLIST: {
        int n = field_count_get(c, o);
        char *const *items = field_list_get(c, o);
        if (n < o->min || n > o->max)
            return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s' expects %s, got %d items",
                                 o->key, want, n);
        for (int i = 0; i < n; i++) {
            const char *it = items[i] ? items[i] : "";
            show_value(it, shown, sizeof shown);
            if (o->check && !o->check(it, why, sizeof why))
                return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s': item '%s': %s",
                                     o->key, shown, why);
            for (int j = 0; j < i; j++)
                if (items[j] && strcmp(it, items[j]) == 0)
                    return vcl_error_set(e, VCL_ERR_PERMANENT,
                                         "option '%s': item '%s' is listed twice", o->key, shown);
        }
        return true;
    }
    case OPT_SECMAP: {
        int n = field_count_get(c, o);
        const config_stage_timeout *m = field_map_get(c, o);
        if (n < 0 || n > CONFIG_MAX_STAGE_TIMEOUTS)
            return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s' has %d entries (at most %d)",
                                 o->key, n, CONFIG_MAX_STAGE_TIMEOUTS);
        for (int i = 0; i < n; i++) {
            show_value(m[i].stage, shown, sizeof shown);
            if (o->check && !o->check(m[i].stage, why, sizeof why))
                return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s': '%s': %s", o->key,
                                     shown, why);
            if (m[i].seconds < o->min || m[i].seconds > o->max)
                return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s': '%s': %d seconds is "
                                     "not between %d and %d", o->key, shown, m[i].seconds,
                                     o->min, o->max);
        }
        return true;
    }
    case OPT_STRING:
    default: {
        const char *v = field_str_get(c, o);
        if (strlen(v) < (size_t)o->min)
            return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s' expects %s, got ''",
                                 o->key, want);
        if (o->check && !o->check(v, why, sizeof why)) {
            show_value(v, shown, sizeof shown);
            return vcl_error_set(e, VCL_ERR_PERMANENT, "option '%s' expects %s, got '%s': %s",
                                 o->key, o->check_text ? o->check_text : "a valid value",
                                 shown, why);
        }
        return true;
    }
    }
}

bool config_validate(const vcl_config *c, vcl_error *e)
{
    if (!c)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "config_validate: no config");
    for (size_t i = 0; i < N_OPTS; i++) {
        /* claim_batch 0 means "= slots" (config_load resolves it; a caller
         * that builds a config by hand may leave it at 0). */
        if (opts[i].offset == offsetof(vcl_config, claim_batch) && c->claim_batch == 0)
            continue;
        if (!validate_option(c, &opts[i], e))
            return false;
    }
    if (c->ssh_private_key && c->ssh_private_key[0] &&
        !config_key_file_check(c->ssh_private_key, e))
        return vcl_error_prefix(e, "ssh_private_key");
    if (c->heartbeat_seconds >= c->lease_seconds)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "heartbeat_seconds (%d) must be less than lease_seconds (%d): the "
                             "heartbeat renews the lease, so with a heartbeat this slow the "
                             "lease runs out and other workers take over running jobs; a "
                             "third of the lease is a good heartbeat",
                             c->heartbeat_seconds, c->lease_seconds);
    if (c->retry_base_seconds > c->retry_max_seconds)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "retry_base_seconds (%d) must not be greater than "
                             "retry_max_seconds (%d): the first retry would wait longer than "
                             "the cap on every retry", c->retry_base_seconds,
                             c->retry_max_seconds);
    return true;
}

bool config_key_file_check(const char *path, vcl_error *e)
{
    struct stat st;
    if (!path || !path[0] || stat(path, &st) != 0)
        return true;
    if (!S_ISREG(st.st_mode))
        return vcl_error_set(e, VCL_ERR_PERMANENT, "ssh private key %s is not a regular file", path);
    if (st.st_mode & 077)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "ssh private key %s is accessible by group or others (mode %04o): "
                             "refused, as ssh refuses it; chmod 600 %s", path,
                             (unsigned)(st.st_mode & 07777), path);
    return true;
}

/* ---- reload --------------------------------------------------------------- */

/* Every type is listed, no default: a new option type that these two do not
 * handle is a -Wswitch warning (an error with DEVELOPER=1), not a value
 * compared or copied as the wrong type. */
static bool option_equal(const vcl_config *a, const vcl_config *b, const opt_def *o)
{
    switch (o->type) {
    case OPT_INT:
        return field_int_get(a, o) == field_int_get(b, o);
    case OPT_STRLIST: {
        int n = field_count_get(a, o);
        char *const *x = field_list_get(a, o), *const *y = field_list_get(b, o);
        if (n != field_count_get(b, o))
            return false;
        for (int i = 0; i < n; i++)
            if (strcmp(x[i] ? x[i] : "", y[i] ? y[i] : "") != 0)
                return false;
        return true;
    }
    case OPT_SECMAP: {
        /* the same stages with the same seconds, in any order */
        int n = field_count_get(a, o);
        const config_stage_timeout *x = field_map_get(a, o), *y = field_map_get(b, o);
        if (n != field_count_get(b, o))
            return false;
        for (int i = 0; i < n; i++) {
            bool found = false;
            for (int k = 0; k < n && !found; k++)
                found = strcmp(x[i].stage, y[k].stage) == 0 && x[i].seconds == y[k].seconds;
            if (!found)
                return false;
        }
        return true;
    }
    case OPT_STRING:
    case OPT_ENUM:
        return strcmp(field_str_get(a, o), field_str_get(b, o)) == 0;
    case OPT__COUNT:
        break;
    }
    return false;
}

/* dst's value of o becomes a copy of src's. */
static void option_copy(vcl_config *dst, const vcl_config *src, const opt_def *o)
{
    switch (o->type) {
    case OPT_INT:
        *field_int(dst, o) = field_int_get(src, o);
        break;
    case OPT_STRLIST: {
        char *items[CONFIG_MAX_DRIVERS];
        int n = field_count_get(src, o);
        char *const *from = field_list_get(src, o);
        for (int i = 0; i < n && i < o->max; i++)
            items[i] = xstrdup(from[i]);
        list_set(dst, o, items, n < o->max ? n : o->max);
        break;
    }
    case OPT_SECMAP:
        memcpy(field_map(dst, o), field_map_get(src, o),
               sizeof(config_stage_timeout) * CONFIG_MAX_STAGE_TIMEOUTS);
        *field_count(dst, o) = field_count_get(src, o);
        break;
    case OPT_STRING:
    case OPT_ENUM: {
        char **f = field_str(dst, o);
        char *v = xstrdup(field_str_get(src, o));
        free(*f);
        *f = v;
        break;
    }
    case OPT__COUNT:
        break;
    }
}

void config_reload_merge(vcl_config *next, const vcl_config *running, config_changes *ch)
{
    memset(ch, 0, sizeof *ch);
    if (!next || !running)
        return;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        if (option_equal(next, running, o))
            continue;
        if (o->restart) {
            option_copy(next, running, o);
            ch->kept[ch->n_kept++] = o->key;
        } else {
            ch->applied[ch->n_applied++] = o->key;
        }
    }
}

bool config_needs_restart(const char *key)
{
    for (size_t i = 0; key && i < N_OPTS; i++)
        if (strcmp(opts[i].key, key) == 0)
            return opts[i].restart;
    return false;
}

/* ---- printing ----------------------------------------------------------- */

/* A YAML double-quoted scalar that libyaml reads back to the same bytes.
 * Besides '"' and '\\', escape what a double-quoted scalar would fold or
 * reject: C0 controls, DEL, C1 controls (U+0080..U+009F, including NEL),
 * U+2028/U+2029 (line breaks to YAML 1.1) and U+FEFF. (Bytes that are not
 * UTF-8 cannot be written in YAML at all; a loaded config never has any.) */
static void print_quoted(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', f);
    for (; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); continue;
        case '\\': fputs("\\\\", f); continue;
        case '\n': fputs("\\n", f); continue;
        case '\t': fputs("\\t", f); continue;
        case '\r': fputs("\\r", f); continue;
        default: break;
        }
        if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            fprintf(f, "\\x%02x", p[1]);
            p++;
        } else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            fputs(p[2] == 0xa8 ? "\\L" : "\\P", f);
            p += 2;
        } else if (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
            fputs("\\uFEFF", f);
            p += 2;
        } else
            fputc(*p, f);
    }
    fputc('"', f);
}

void config_print(const vcl_config *c, FILE *f)
{
    if (!c || !f)
        return;
    fputs("# vcl-worker configuration (passwords are shown as ****)\n", f);
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        fprintf(f, "%s: ", o->key);
        switch (o->type) {
        case OPT_INT:
            fprintf(f, "%d", field_int_get(c, o));
            break;
        case OPT_STRLIST: {
            int n = field_count_get(c, o);
            char *const *items = field_list_get(c, o);
            fputc('[', f);
            for (int j = 0; j < n && j < o->max; j++) {
                if (j)
                    fputs(", ", f);
                print_quoted(f, items[j]);
            }
            fputc(']', f);
            break;
        }
        case OPT_SECMAP: {
            int n = field_count_get(c, o);
            const config_stage_timeout *m = field_map_get(c, o);
            fputc('{', f);
            for (int j = 0; j < n && j < CONFIG_MAX_STAGE_TIMEOUTS; j++) {
                fputs(j ? ", " : "", f);
                print_quoted(f, m[j].stage);
                fprintf(f, ": %d", m[j].seconds);
            }
            fputc('}', f);
            break;
        }
        case OPT_STRING:
        case OPT_ENUM:
        default:
            if (o->secret) {
                char *masked = db_conninfo_mask(field_str_get(c, o));
                /* out of memory: print nothing rather than the secret */
                print_quoted(f, masked ? masked : "");
                free(masked);
            } else
                print_quoted(f, field_str_get(c, o));
            break;
        }
        fputc('\n', f);
    }
}

static void help_default(const opt_def *o, char *out, size_t out_len)
{
    switch (o->type) {
    case OPT_INT:
        snprintf(out, out_len, "%d", o->def_int);
        break;
    case OPT_STRLIST:
    case OPT_ENUM:
        snprintf(out, out_len, "%s", o->def_str);
        break;
    case OPT_SECMAP:
        snprintf(out, out_len, "built-in");   /* the help text lists it */
        break;
    case OPT_STRING:
    default:
        if (o->def_fn) {
            char *v = o->def_fn();
            snprintf(out, out_len, "\"%s\"", v);
            free(v);
        } else
            snprintf(out, out_len, "\"%s\"", o->def_str);
        break;
    }
}

static void help_range(const opt_def *o, char *out, size_t out_len)
{
    switch (o->type) {
    case OPT_INT:
        snprintf(out, out_len, "%d..%d", o->min, o->max);
        break;
    case OPT_ENUM: {
        size_t n = 0;
        out[0] = '\0';
        for (int i = 0; o->choices[i] && n < out_len; i++)
            n += (size_t)snprintf(out + n, out_len - n, "%s%s", i ? "|" : "", o->choices[i]);
        break;
    }
    case OPT_STRLIST:
        snprintf(out, out_len, "%d..%d names", o->min, o->max);
        break;
    case OPT_SECMAP:
        snprintf(out, out_len, "stage: %d..%d", o->min, o->max);
        break;
    case OPT_STRING:
    default:
        snprintf(out, out_len, "%s", o->check_text ? o->check_text
                                     : o->min > 0 ? "non-empty" : "any");
        break;
    }
}

/* The SIGHUP column of --help: what a reload does with the option. */
static const char *reload_word(const opt_def *o)
{
    return o->restart ? "restart" : "reload";
}

void config_print_help(FILE *f)
{
    int wk = (int)strlen("OPTION"), wt = (int)strlen("TYPE"), wd = (int)strlen("DEFAULT"),
        wr = (int)strlen("RANGE"), ws = (int)strlen("SIGHUP");
    char def[PATH_MAX + 16], range[128];

    if (!f)
        return;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        help_default(o, def, sizeof def);
        help_range(o, range, sizeof range);
        if ((int)strlen(o->key) > wk) wk = (int)strlen(o->key);
        if ((int)strlen(type_names[o->type]) > wt) wt = (int)strlen(type_names[o->type]);
        if ((int)strlen(def) > wd) wd = (int)strlen(def);
        if ((int)strlen(range) > wr) wr = (int)strlen(range);
        if ((int)strlen(reload_word(o)) > ws) ws = (int)strlen(reload_word(o));
    }
    fprintf(f, "%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", wk, "OPTION", wt, "TYPE", wd, "DEFAULT",
            wr, "RANGE", ws, "SIGHUP", "DESCRIPTION");
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        help_default(o, def, sizeof def);
        help_range(o, range, sizeof range);
        fprintf(f, "%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", wk, o->key, wt, type_names[o->type], wd,
                def, wr, range, ws, reload_word(o), o->help);
    }
}

/* The same table for the manual page (vcl-worker --help-man): one tagged
 * paragraph per option. A computed default (drivers_dir) depends on where the
 * binary runs, so the page gives the rule from the help text, not a path. */
void config_print_man(FILE *f)
{
    char def[PATH_MAX + 16], range[128], line[PATH_MAX + 256];

    if (!f)
        return;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        if (o->def_fn)
            snprintf(def, sizeof def, "computed, see below");
        else
            help_default(o, def, sizeof def);
        help_range(o, range, sizeof range);
        fputs(".TP\n", f);
        roff_macro(f, "B", o->key);
        snprintf(line, sizeof line, "%s, default %s, %s; %s.", type_names[o->type], def, range,
                 o->restart ? "takes effect only after a restart (SIGHUP keeps the running "
                              "value)"
                            : "SIGHUP applies it");
        roff_line(f, line);
        fputs(".br\n", f);
        roff_line(f, o->help);
    }
}
