/* vclctl: the command line of vcl-worker for operators and DBAs.
 *
 * It applies the SQL migrations, manages the inventory (nodes, images and
 * their revisions, computers), queues work (load and the other operations),
 * shows the queue and a reservation's stage log, retries and cancels, asks a
 * computer's node_status of libvirt, and lists the workers.
 *
 * Layout of this file:
 *   1. context, exit codes, messages     ctl, fail(), usage_error()
 *   2. arguments                         optspec tables, parse_args()
 *   3. output                            aligned tables, "key: value", JSON
 *   4. SQL helpers                       given-columns INSERT/UPDATE, lookups
 *   5. commands                          one cmd_*() per command
 *   6. the command table, help, main
 *
 * Rules kept throughout: every statement is a constant (or, for INSERT and
 * UPDATE of the options a user gave, built only from column names that are
 * constants in this file) and every value travels as a $n parameter; JSON is
 * always produced by PostgreSQL (json_agg, json_build_object), never escaped
 * by hand; names are checked with names.h before they are sent, so a typo
 * gets a clear message rather than a constraint violation.
 *
 * Exit status: 0 ok, 1 failed, 2 usage (bad option, missing or malformed
 * argument). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/db.h"
#include "base/error.h"
#include "node/image.h"
#include "base/log.h"
#include "base/names.h"
#include "queue/migrate.h"
#include "node/nodestatus.h"
#include "base/roff.h"
#include "node/virt.h"
#include "node/cpumode.h"
#include "base/config.h"
#include "node/nodecheck.h"
#include "node/domxml.h"
#include "base/progress.h"
#include "queue/stage.h"
#include "base/version.h"
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <libxml/parser.h>

/* ===================================================================== */
/* 1. Context, exit codes, messages                                      */
/* ===================================================================== */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define PROG "vclctl"

struct command;

typedef struct ctl {
    const char *conninfo;        /* --db, else $VCL_DATABASE, else "" (PG*) */
    bool json;                   /* --json: machine output from PostgreSQL */
    bool quiet;                  /* --quiet: no confirmations, only results */
    int verbose;                 /* -v: info logs, -vv: debug (SQL) */
    const char *ssh_key;         /* --ssh-key, else $VCL_SSH_KEY: ssh nodes (status) */
    const char *known_hosts;     /* --known-hosts, else $VCL_SSH_KNOWN_HOSTS */
    db_conn *db;                 /* opened on first use */
    const struct command *cmd;   /* the command running, for usage errors */
    char path[64];               /* its full name: "node add" */
    long long last_id;           /* id of the reservation enqueue() last queued */
} ctl;

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: %s", PROG, prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* "vclctl: <what failed>"; returns EXIT_FAIL. */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
    return EXIT_FAIL;
}

/* "vclctl: note: ..." on stderr, unless --quiet. */
static void note(const ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const ctl *c, const char *fmt, ...)
{
    if (c->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsay("note: ", fmt, ap);
    va_end(ap);
}

static void print_usage_line(FILE *f, const struct command *cmd, const char *path);

/* "vclctl: <command>: <problem>", the usage line and where to read more;
 * returns EXIT_USAGE. */
static int usage_error(const ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const ctl *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", PROG);
    if (c->path[0])
        fprintf(stderr, "%s: ", c->path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (c->cmd) {
        print_usage_line(stderr, c->cmd, c->path);
        fprintf(stderr, "see: %s help %s\n", PROG, c->path);
    } else {
        fprintf(stderr, "see: %s help\n", PROG);
    }
    return EXIT_USAGE;
}

/* The message of a database error without the "database: " and "ERROR:  "
 * noise (wherever a caller's prefix put it). One static buffer: vclctl is
 * single-threaded and prints it at once. */
static const char *db_msg(const vcl_error *e)
{
    static char buf[sizeof e->msg];
    const char *m = e->msg;
    size_t o = 0;
    if (strncmp(m, "database: ", 10) == 0)
        m += 10;
    while (*m && o + 1 < sizeof buf) {
        if (strncmp(m, "ERROR:", 6) == 0) {
            m += 6;
            m += strspn(m, " ");
            continue;
        }
        buf[o++] = *m++;
    }
    buf[o] = '\0';
    return buf;
}

/* A failed statement: "vclctl: <what>: <why>" and a hint for the SQLSTATEs
 * an operator can act on. Returns EXIT_FAIL. */
static int db_fail(const ctl *c, const vcl_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int db_fail(const ctl *c, const vcl_error *e, const char *fmt, ...)
{
    const char *state = c->db ? db_sqlstate(c->db) : "";
    va_list ap;
    fprintf(stderr, "%s: ", PROG);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", db_msg(e));
    if (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0 ||
        strcmp(state, "42883") == 0)
        fprintf(stderr, "%s: hint: is the schema there? run: %s migrate\n", PROG, PROG);
    else if (strncmp(state, "08", 2) == 0 || (c->db && db_is_broken(c->db)))
        fprintf(stderr, "%s: hint: the connection to PostgreSQL was lost; try again\n", PROG);
    else if (strcmp(state, "42501") == 0)
        fprintf(stderr, "%s: hint: this database role lacks the privilege; connect as the "
                        "schema owner (--db, VCL_DATABASE or PGUSER)\n", PROG);
    return EXIT_FAIL;
}

/* The connection, opened on first use. NULL (after a message) when it fails. */
static db_conn *ctl_db(ctl *c)
{
    vcl_error e;
    if (c->db)
        return c->db;
    vcl_error_clear(&e);
    c->db = db_connect(c->conninfo, PROG, &e);
    if (!c->db) {
        fail("%s", e.msg);
        fprintf(stderr, "%s: hint: pass --db CONNINFO, or set VCL_DATABASE or the PG* "
                        "variables (PGHOST, PGDATABASE, PGUSER, ...)\n", PROG);
    }
    return c->db;
}

/* ===================================================================== */
/* 2. Arguments                                                          */
/* ===================================================================== */

/* Options of one command, declared once: parsing, "required" checks and
 * the option list of `vclctl help CMD` all come from this table. */
enum { OPT_REQUIRED = 1, OPT_MULTI = 2 };

typedef struct optspec {
    const char *name;  /* long name without "--" */
    const char *arg;   /* value placeholder ("URI"); NULL for a flag */
    unsigned flags;    /* OPT_REQUIRED, OPT_MULTI */
    const char *help;
} optspec;

#define MAX_OPTS 24
#define MAX_POS 8
#define MAX_MULTI 32

typedef struct args {
    const optspec *spec;         /* NULL-name terminated, or NULL */
    const char *val[MAX_OPTS];   /* last value of each option; "" for a given flag */
    const char *multi[MAX_MULTI];/* every value of the (one) OPT_MULTI option */
    int nmulti;
    const char *pos[MAX_POS];    /* positional arguments */
    int npos;
} args;

static int opt_index(const args *a, const char *name)
{
    for (int i = 0; a->spec && a->spec[i].name; i++)
        if (strcmp(a->spec[i].name, name) == 0)
            return i;
    /* a command asked for an option it does not declare: a bug here */
    fprintf(stderr, "%s: internal error: undeclared option --%s\n", PROG, name);
    abort();
}

/* The value of --name, NULL when not given. */
static const char *opt_str(const args *a, const char *name)
{
    return a->val[opt_index(a, name)];
}

static bool opt_flag(const args *a, const char *name)
{
    return a->val[opt_index(a, name)] != NULL;
}

/* Global options are accepted before the command and, for convenience,
 * after it too. Returns 1 when argv[*i] was one (consuming its value), 0 when
 * not, -1 on a usage error. */
static int global_option(ctl *c, int argc, char **argv, int *i)
{
    const char *s = argv[*i];
    if (strcmp(s, "--json") == 0) {
        c->json = true;
    } else if (strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0) {
        c->quiet = true;
    } else if (strcmp(s, "--verbose") == 0 || strcmp(s, "-v") == 0) {
        c->verbose++;
    } else if (strcmp(s, "-vv") == 0) {
        c->verbose += 2;
    } else if (strncmp(s, "--db=", 5) == 0) {
        c->conninfo = s + 5;
    } else if (strcmp(s, "--db") == 0) {
        if (*i + 1 >= argc)
            return -1;
        c->conninfo = argv[++*i];
    } else if (strncmp(s, "--ssh-key=", 10) == 0) {
        c->ssh_key = s + 10;
    } else if (strncmp(s, "--known-hosts=", 14) == 0) {
        c->known_hosts = s + 14;
    } else if (strcmp(s, "--ssh-key") == 0 || strcmp(s, "--known-hosts") == 0) {
        if (*i + 1 >= argc)
            return -1;
        if (s[2] == 's')
            c->ssh_key = argv[++*i];
        else
            c->known_hosts = argv[++*i];
    } else {
        return 0;
    }
    return 1;
}

static void print_command_help(FILE *f, const struct command *cmd, const char *path);

/* Parse argv (argv[0] is the command's own name) against the command's
 * option table. Returns true to run the command; false with *rc set when
 * done (help shown: 0; usage error: 2). Required options are checked later
 * (check_required), after the positional arguments. */

static bool parse_args(ctl *c, const struct command *cmd, const optspec *spec, int argc,
                       char **argv, args *a, int *rc)
{
    bool only_pos = false;
    memset(a, 0, sizeof *a);
    a->spec = spec;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (only_pos || s[0] != '-' || s[1] == '\0') {
            if (a->npos == MAX_POS) {
                *rc = usage_error(c, "too many arguments");
                return false;
            }
            a->pos[a->npos++] = s;
            continue;
        }
        if (strcmp(s, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            print_command_help(stdout, cmd, c->path);
            *rc = EXIT_OK;
            return false;
        }
        int g = global_option(c, argc, argv, &i);
        if (g < 0) {
            *rc = usage_error(c, "option '%s' needs a value", argv[i]);
            return false;
        }
        if (g > 0)
            continue;
        if (s[1] != '-') {
            *rc = usage_error(c, "unknown option '%s'", s);
            return false;
        }
        const char *name = s + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = -1;
        for (int j = 0; spec && spec[j].name; j++)
            if (strlen(spec[j].name) == len && strncmp(spec[j].name, name, len) == 0)
                k = j;
        if (k < 0) {
            *rc = usage_error(c, "unknown option '--%.*s'", (int)len, name);
            return false;
        }
        if (k >= MAX_OPTS) {
            fprintf(stderr, "%s: internal error: more than %d options\n", PROG, MAX_OPTS);
            abort();
        }
        const char *v = "";
        if (spec[k].arg) {
            if (eq) {
                v = eq + 1;
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                *rc = usage_error(c, "option '--%s' needs a value %s", spec[k].name, spec[k].arg);
                return false;
            }
        } else if (eq) {
            *rc = usage_error(c, "option '--%s' takes no value", spec[k].name);
            return false;
        }
        if (spec[k].flags & OPT_MULTI) {
            if (a->nmulti == MAX_MULTI) {
                *rc = usage_error(c, "too many '--%s' options", spec[k].name);
                return false;
            }
            a->multi[a->nmulti++] = v;
        } else if (a->val[k]) {
            *rc = usage_error(c, "option '--%s' given twice", spec[k].name);
            return false;
        }
        a->val[k] = v;
    }
    return true;
}

/* The first OPT_REQUIRED option missing, as a usage error; EXIT_OK if none. */
static int check_required(const ctl *c, const args *a)
{
    for (int j = 0; a->spec && a->spec[j].name; j++)
        if ((a->spec[j].flags & OPT_REQUIRED) && !a->val[j])
            return usage_error(c, "option '--%s %s' is required", a->spec[j].name,
                               a->spec[j].arg ? a->spec[j].arg : "");
    return EXIT_OK;
}

/* Strict integer: optional '-', digits only, within [min, max]. */
static bool parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end;
    if (!s || !(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A numeric option, normalised to text for a parameter. */
typedef struct num {
    bool set;
    long long v;
    char s[32];
} num;

/* NULL when the option was not given, so colset_add() skips it. */
#define NUM_PARAM(n) ((n).set ? (n).s : NULL)

static int opt_num(const ctl *c, const args *a, const char *name, long long min, long long max,
                   num *out)
{
    const char *s = opt_str(a, name);
    memset(out, 0, sizeof *out);
    if (!s)
        return EXIT_OK;
    if (!parse_ll(s, min, max, &out->v))
        return usage_error(c, "--%s: '%s' is not a whole number from %lld to %lld", name, s,
                           min, max);
    out->set = true;
    snprintf(out->s, sizeof out->s, "%lld", out->v);
    return EXIT_OK;
}

/* A reservation id argument. */
static int arg_id(const ctl *c, const char *s, num *out)
{
    memset(out, 0, sizeof *out);
    if (!parse_ll(s, 1, 9223372036854775807LL, &out->v))
        return usage_error(c, "'%s' is not a reservation id (a positive number; see: %s list)",
                           s, PROG);
    out->set = true;
    snprintf(out->s, sizeof out->s, "%lld", out->v);
    return EXIT_OK;
}

/* Is s one of the NULL-terminated words? */
static bool one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

/* "a|b|c" for messages. */
static const char *words_join(const char *const *words, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; words[i] && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "|" : "", words[i]);
    return buf;
}

static int opt_word(const ctl *c, const args *a, const char *name, const char *const *words)
{
    const char *s = opt_str(a, name);
    char list[256];
    if (s && !one_of(s, words))
        return usage_error(c, "--%s must be one of %s, not '%s'", name,
                           words_join(words, list, sizeof list), s);
    return EXIT_OK;
}

/* A name checked with names.h; invalid is a usage error. */
static int check_name(const ctl *c, const char *what, const char *s)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (!name_check(what, s, &e))
        return usage_error(c, "%s", e.msg);
    return EXIT_OK;
}

static int check_dir(const ctl *c, const char *what, const char *s)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (s && !dir_check(what, s, &e))
        return usage_error(c, "%s", e.msg);
    return EXIT_OK;
}

/* Printable text without control characters, within a length bound (URIs,
 * host names, checksums: values that have no stricter pattern here). */
static int check_text(const ctl *c, const char *what, const char *s, size_t max)
{
    if (!s)
        return EXIT_OK;
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return usage_error(c, "%s must be 1 to %zu characters long", what, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return usage_error(c, "%s contains a control character", what);
    return EXIT_OK;
}

/* Host name or address: letters, digits, '.', '_', '-', ':' and '[]' (IPv6),
 * not starting with '-' (it would read as an option to ssh tools); the
 * schema's node_ssh_host_valid says the same. */
static int check_host(const ctl *c, const char *s)
{
    if (!s)
        return EXIT_OK;
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 253 && s[0] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || strchr("._:-[]", s[i]) != NULL;
    if (!ok)
        return usage_error(c, "invalid ssh host '%.64s': use a host name or address "
                              "(letters, digits, '.', '_', '-', ':', '[]')", s);
    return EXIT_OK;
}

/* libvirt URI: "scheme:" then no white space (node_libvirt_uri_valid). */
static int check_uri(const ctl *c, const char *s)
{
    int rc;
    if (!s)
        return EXIT_OK;
    if ((rc = check_text(c, "--uri", s, 1024)) != EXIT_OK)
        return rc;
    size_t i = 0;
    bool ok = islower((unsigned char)s[0]);
    for (i = 1; ok && s[i] && s[i] != ':'; i++)
        ok = islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
             strchr("+.-", s[i]) != NULL;
    ok = ok && s[i] == ':' && !strpbrk(s, " \t\n\r\v\f");
    if (!ok)
        return usage_error(c, "invalid libvirt URI '%.64s' (expected e.g. qemu:///system "
                              "or qemu+libssh2://user@host/system?...)", s);
    return EXIT_OK;
}

/* Repository search path: like a directory, but components may hold the
 * wildcards '*' and '?' (vcl.repository_paths_valid). Checked by replacing
 * each wildcard with a letter and asking dir_check(). */
static int check_repo(const ctl *c, const char *s)
{
    char copy[4096];
    vcl_error e;
    if (strlen(s) >= sizeof copy)
        return usage_error(c, "--repo path is too long");
    snprintf(copy, sizeof copy, "%s", s);
    for (char *p = copy; *p; p++)
        if (*p == '*' || *p == '?')
            *p = 'x';
    vcl_error_clear(&e);
    if (!dir_check("repository", copy, &e))
        return usage_error(c, "invalid repository path '%.64s': an absolute path of names "
                              "(letters, digits, '.', '_', '-', wildcards '*' '?'), "
                              "no '.' or '..' components", s);
    return EXIT_OK;
}

/* IMAGE[:REV] */
typedef struct image_ref {
    char name[NAME_MAX_LEN + 1];
    bool has_rev;
    long long rev;
    char rev_s[32];
} image_ref;

static int parse_image_ref(const ctl *c, const char *s, image_ref *out)
{
    const char *colon = strrchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);
    memset(out, 0, sizeof *out);
    if (len > NAME_MAX_LEN)
        return usage_error(c, "image name '%.40s...' is longer than %d characters", s,
                           NAME_MAX_LEN);
    memcpy(out->name, s, len);
    out->name[len] = '\0';
    int rc = check_name(c, "image", out->name);
    if (rc != EXIT_OK)
        return rc;
    if (colon) {
        if (!parse_ll(colon + 1, 0, 2147483647, &out->rev))
            return usage_error(c, "'%s': the revision after ':' must be a number "
                                  "(IMAGE or IMAGE:REV)", s);
        out->has_rev = true;
        snprintf(out->rev_s, sizeof out->rev_s, "%lld", out->rev);
    }
    return EXIT_OK;
}

/* ===================================================================== */
/* 3. Output                                                             */
/* ===================================================================== */

/* Column types that are right-aligned (pg_type OIDs; the catalog header is
 * a server header, not part of libpq). */
enum { OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

/* A cell formatter turns the raw text of a column into what people read. */
typedef void (*cell_fmt)(const char *in, char *out, size_t size);
typedef struct colfmt {
    const char *column;
    cell_fmt fmt;
} colfmt;

/* 1234 (ms) -> "1.2s"; 42 -> "42ms"; 125000 -> "2m05s". */
static void fmt_duration_ms(const char *in, char *out, size_t size)
{
    long long ms;
    if (!parse_ll(in, 0, 9223372036854775807LL, &ms))
        snprintf(out, size, "%s", in);
    else if (ms < 1000)
        snprintf(out, size, "%lldms", ms);
    else if (ms < 60000)
        snprintf(out, size, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, size, "%lldm%02llds", ms / 60000, ms / 1000 % 60);
    else
        snprintf(out, size, "%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
}

/* 75 (s) -> "1m15s ago" */
static void fmt_age_s(const char *in, char *out, size_t size)
{
    long long s;
    if (!parse_ll(in, -9223372036854775807LL, 9223372036854775807LL, &s))
        snprintf(out, size, "%s", in);
    else if (s < 0)
        snprintf(out, size, "in the future");
    else if (s < 60)
        snprintf(out, size, "%llds ago", s);
    else if (s < 3600)
        snprintf(out, size, "%lldm%02llds ago", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, size, "%lldh%02lldm ago", s / 3600, s / 60 % 60);
    else
        snprintf(out, size, "%lldd%02lldh ago", s / 86400, s / 3600 % 24);
}

static cell_fmt find_fmt(const colfmt *fmts, const char *column)
{
    for (; fmts && fmts->column; fmts++)
        if (strcmp(fmts->column, column) == 0)
            return fmts->fmt;
    return NULL;
}

/* The text people see for one cell: "-" for NULL, else the formatter's. */
static const char *cell_text(const PGresult *r, int row, int col, cell_fmt fmt, char *buf,
                             size_t size)
{
    if (PQgetisnull(r, row, col))
        return "-";
    if (!fmt)
        return PQgetvalue(r, row, col);
    fmt(PQgetvalue(r, row, col), buf, size);
    return buf;
}

/* Width on a terminal: UTF-8 continuation bytes take no column. */
static int text_width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* Write s on one line: control characters (newlines in an error message)
 * become spaces, so a table stays a table. */
static void put_clean(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s, f);
}

static void put_spaces(FILE *f, int n)
{
    for (; n > 0; n--)
        fputc(' ', f);
}

/* An aligned table with a header from the column names (upper case); two
 * spaces between columns, numbers right-aligned, the last column unpadded. */
static void print_table(FILE *f, const PGresult *r, const colfmt *fmts)
{
    int ncols = PQnfields(r), nrows = PQntuples(r);
    int width[64] = { 0 };
    bool right[64] = { false };
    char buf[256];
    if (ncols > 64)
        ncols = 64;
    for (int j = 0; j < ncols; j++) {
        Oid t = PQftype(r, j);
        right[j] = t == OID_INT8 || t == OID_INT2 || t == OID_INT4 || t == OID_FLOAT8 ||
                   t == OID_NUMERIC;
        width[j] = text_width(PQfname(r, j));
        cell_fmt fmt = find_fmt(fmts, PQfname(r, j));
        for (int i = 0; i < nrows; i++) {
            int w = text_width(cell_text(r, i, j, fmt, buf, sizeof buf));
            if (w > width[j])
                width[j] = w;
        }
    }
    for (int j = 0; j < ncols; j++) {
        const char *h = PQfname(r, j);
        int w = text_width(h);
        if (right[j] && j > 0)
            put_spaces(f, width[j] - w);
        for (; *h; h++)
            fputc(toupper((unsigned char)*h), f);
        if (j < ncols - 1)
            put_spaces(f, (right[j] && j > 0 ? 0 : width[j] - w) + 2);
    }
    fputc('\n', f);
    for (int i = 0; i < nrows; i++) {
        for (int j = 0; j < ncols; j++) {
            const char *s = cell_text(r, i, j, find_fmt(fmts, PQfname(r, j)), buf, sizeof buf);
            int w = text_width(s);
            if (right[j] && j > 0)
                put_spaces(f, width[j] - w);
            put_clean(f, s);
            if (j < ncols - 1)
                put_spaces(f, (right[j] && j > 0 ? 0 : width[j] - w) + 2);
        }
        fputc('\n', f);
    }
}

/* One row as aligned "key: value" lines. Columns named in skip, and any
 * column name already printed, are left out. Values spanning lines are
 * indented under the first one. */
static void print_kv(FILE *f, const PGresult *r, int row, const colfmt *fmts,
                     const char *const *skip)
{
    int ncols = PQnfields(r), keyw = 0;
    char buf[256];
    for (int j = 0; j < ncols; j++)
        if (text_width(PQfname(r, j)) > keyw)
            keyw = text_width(PQfname(r, j));
    for (int j = 0; j < ncols; j++) {
        const char *k = PQfname(r, j);
        bool seen = skip && one_of(k, skip);
        for (int p = 0; p < j && !seen; p++)
            seen = strcmp(PQfname(r, p), k) == 0;
        if (seen)
            continue;
        fprintf(f, "%s:", k);
        put_spaces(f, keyw - text_width(k) + 1);
        for (const char *s = cell_text(r, row, j, find_fmt(fmts, k), buf, sizeof buf); *s; s++) {
            if (*s == '\n') {
                fputc('\n', f);
                put_spaces(f, keyw + 2);
            } else if (*s != '\r') {
                fputc(*s, f);
            }
        }
        fputc('\n', f);
    }
}

/* Run a query whose single cell is JSON built by PostgreSQL and print it. */
static int print_json(ctl *c, const char *sql, int n, const char *const *params,
                      const char *what)
{
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, sql, n, params, &e);
    if (!r)
        return db_fail(c, &e, "cannot read %s", what);
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        printf("%s\n", PQgetvalue(r, 0, 0));
    else
        printf("null\n");
    PQclear(r);
    return EXIT_OK;
}

/* The JSON array of a query's rows, in its order. */
#define JSON_ARRAY(query) \
    "SELECT coalesce(json_agg(t), '[]'::json) FROM (" query ") t"

/* Run a text query and print it as a table; empty_msg when there is no row. */
static int print_query_table(ctl *c, const char *sql, int n, const char *const *params,
                             const colfmt *fmts, const char *what, const char *empty_msg)
{
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, sql, n, params, &e);
    if (!r)
        return db_fail(c, &e, "cannot list %s", what);
    if (PQntuples(r) == 0) {
        if (!c->quiet)
            printf("%s\n", empty_msg);
    } else {
        print_table(stdout, r, fmts);
    }
    PQclear(r);
    return EXIT_OK;
}

/* ===================================================================== */
/* 4. SQL helpers                                                        */
/* ===================================================================== */

/* Fixed-size statement text; overflow is checked, never truncated silently. */
typedef struct sbuf {
    char s[4096];
    size_t len;
    bool overflow;
} sbuf;

static void sb_add(sbuf *b, const char *str)
{
    size_t n = strlen(str);
    if (b->overflow || b->len + n >= sizeof b->s) {
        b->overflow = true;
        return;
    }
    memcpy(b->s + b->len, str, n + 1);
    b->len += n;
}

/* Append a value expression: tmpl with its '?' replaced by $n. */
static void sb_param(sbuf *b, const char *tmpl, int n)
{
    char ph[16];
    snprintf(ph, sizeof ph, "$%d", n);
    for (const char *p = tmpl; *p; p++) {
        if (*p == '?') {
            sb_add(b, ph);
        } else {
            char one[2] = { *p, '\0' };
            sb_add(b, one);
        }
    }
}

/* The columns an INSERT or UPDATE sets: only those the user gave, so the
 * table's defaults stay the single source of defaults. Column names and
 * expression templates are constants of this file; values are parameters. */
#define MAX_COLS 20
typedef struct colset {
    const char *col[MAX_COLS];
    const char *tmpl[MAX_COLS]; /* value expression, '?' is the parameter */
    const char *val[MAX_COLS];
    int n;
} colset;

static void colset_add_expr(colset *s, const char *col, const char *tmpl, const char *val)
{
    if (!val)
        return;
    if (s->n == MAX_COLS) {
        fprintf(stderr, "%s: internal error: too many columns\n", PROG);
        abort();
    }
    s->col[s->n] = col;
    s->tmpl[s->n] = tmpl;
    s->val[s->n] = val;
    s->n++;
}

static void colset_add(colset *s, const char *col, const char *val)
{
    colset_add_expr(s, col, "?", val);
}

/* INSERT INTO table (cols) VALUES ($1, ...) RETURNING id */
static bool colset_insert(ctl *c, const char *table, const colset *s, long long *id,
                          vcl_error *e)
{
    sbuf b = { .len = 0 };
    sb_add(&b, "INSERT INTO ");
    sb_add(&b, table);
    sb_add(&b, " (");
    for (int i = 0; i < s->n; i++) {
        sb_add(&b, i ? ", " : "");
        sb_add(&b, s->col[i]);
    }
    sb_add(&b, ") VALUES (");
    for (int i = 0; i < s->n; i++) {
        sb_add(&b, i ? ", " : "");
        sb_param(&b, s->tmpl[i], i + 1);
    }
    sb_add(&b, ") RETURNING id");
    if (b.overflow)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "statement too long");
    bool isnull;
    return db_scalar_ll(c->db, b.s, s->n, s->val, id, &isnull, e);
}

/* UPDATE table SET col = $1, ... WHERE key_col = $n RETURNING id; *found
 * false when no row has that key. */
static bool colset_update(ctl *c, const char *table, const colset *s, const char *key_col,
                          const char *key, long long *id, bool *found, vcl_error *e)
{
    sbuf b = { .len = 0 };
    const char *params[MAX_COLS + 1];
    sb_add(&b, "UPDATE ");
    sb_add(&b, table);
    sb_add(&b, " SET ");
    for (int i = 0; i < s->n; i++) {
        sb_add(&b, i ? ", " : "");
        sb_add(&b, s->col[i]);
        sb_add(&b, " = ");
        sb_param(&b, s->tmpl[i], i + 1);
        params[i] = s->val[i];
    }
    sb_add(&b, " WHERE ");
    sb_add(&b, key_col);
    sb_param(&b, " = ?", s->n + 1);
    sb_add(&b, " RETURNING id");
    params[s->n] = key;
    if (b.overflow)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "statement too long");
    bool isnull = true;
    if (!db_scalar_ll(c->db, b.s, s->n + 1, params, id, &isnull, e))
        return false;
    *found = !isnull;
    return true;
}

/* Id of the row named name; a clear "no <what> named" error otherwise.
 * sql takes the name as $1 and returns the id. */
static int lookup_id(ctl *c, const char *sql, const char *what, const char *name, long long *id)
{
    vcl_error e;
    bool isnull = true;
    const char *p[1] = { name };
    vcl_error_clear(&e);
    if (!db_scalar_ll(c->db, sql, 1, p, id, &isnull, &e))
        return db_fail(c, &e, "cannot look up %s '%s'", what, name);
    if (isnull)
        return fail("no %s named '%s' (see: %s %s list)", what, name, PROG, what);
    return EXIT_OK;
}

static const char SQL_NODE_ID[] = "SELECT id FROM vcl.node WHERE name = $1";
static const char SQL_IMAGE_ID[] = "SELECT id FROM vcl.image WHERE name = $1";
static const char SQL_COMPUTER_ID[] = "SELECT id FROM vcl.computer WHERE name = $1";

/* Explain why a named INSERT failed; unique violations say "already exists". */
static int insert_fail(ctl *c, const vcl_error *e, const char *what, const char *name)
{
    if (strcmp(db_sqlstate(c->db), "23505") == 0)
        return fail("cannot add %s '%s': %s (see: %s %s list)", what, name,
                    strstr(db_msg(e), "revision") ? "that revision already exists"
                                                  : "it already exists",
                    PROG, what);
    return db_fail(c, e, "cannot add %s '%s'", what, name);
}

/* ===================================================================== */
/* 5. Commands                                                           */
/* ===================================================================== */

/* The vocabulary shared with the schema's CHECK constraints. */
static const char *const TRANSPORTS[] = { "local", "ssh", NULL };
static const char *const REPO_LOCATIONS[] = { "node", "management", NULL };
static const char *const INVENTORY_STATES[] = { "available", "maintenance", NULL };
static const char *const OS_TYPES[] = { "none", "linux", "windows", NULL };
static const char *const RESERVATION_STATES[] = { "pending", "running", "done", "failed",
                                                  "cancelled", NULL };
static const char *const OPERATIONS[] = {
    "load",           "capture",         "power_on",        "power_off",   "power_reset",
    "shutdown",       "delete",          "snapshot_create", "snapshot_delete",
    "snapshot_revert", "maintenance",    "node_status",     "noop",        NULL
};

/* ---- migrate ---- */

static const optspec OPTS_MIGRATE[] = {
    { "sql-dir", "DIR", 0, "directory of the numbered migrations NNN_name.sql and of functions/ "
                           "(default: $VCL_SQL_DIR, else next to the program, else the installed "
                           "share dir)" },
    { NULL, NULL, 0, NULL },
};

/* The names of r, separated by newlines (for the JSON, which PostgreSQL
 * makes): names; or, with flags, "t"/"f" per name. NULL when out of memory. */
static char *join_lines(const char *const *names, const bool *flags, int n)
{
    size_t cap = 1, len = 0;
    for (int i = 0; i < n; i++)
        cap += (flags ? 1 : strlen(names[i])) + 1;
    char *s = calloc(1, cap);
    for (int i = 0; s && i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? "\n" : "",
                                flags ? (flags[i] ? "t" : "f") : names[i]);
    return s;
}

static int migrate_report(ctl *c, const char *dir, const migrate_result *r)
{
    if (c->json) {
        char na[32], nv[32];
        char *applied = join_lines(r->applied, NULL, r->napplied);
        char *live = join_lines(r->live, NULL, r->nlive);
        char *changed = join_lines(r->live, r->live_changed, r->nlive);
        int rc = EXIT_FAIL;
        snprintf(na, sizeof na, "%d", r->napplied);
        snprintf(nv, sizeof nv, "%d", r->version);
        const char *p[6] = { na, nv, dir, applied, live, changed };
        if (applied && live && changed)
            rc = print_json(c,
                            "SELECT json_build_object('applied', $1::int, 'version', $2::int, "
                            "'sql_dir', $3::text, "
                            "'migrations', coalesce(string_to_array(nullif($4, ''), E'\\n'), '{}'), "
                            "'live', (SELECT coalesce(json_agg(json_build_object('file', u.f, "
                            "'changed', u.c::boolean) ORDER BY u.o), '[]') "
                            "FROM unnest(string_to_array(nullif($5, ''), E'\\n'), "
                            "string_to_array(nullif($6, ''), E'\\n')) WITH ORDINALITY AS u(f, c, o)))",
                            6, p, "the result");
        else
            fail("out of memory");
        free(applied);
        free(live);
        free(changed);
        return rc;
    }
    if (c->quiet)
        return EXIT_OK;
    int changed = 0;
    for (int i = 0; i < r->napplied; i++)
        printf("applied     %s\n", r->applied[i]);
    for (int i = 0; i < r->nlive; i++) {
        printf("re-applied  %s%s\n", r->live[i], r->live_changed[i] ? " (changed)" : "");
        changed += r->live_changed[i];
    }
    printf("applied %d migration(s) and re-applied %d live file(s), %d changed; schema at "
           "version %d\n", r->napplied, r->nlive, changed, r->version);
    return EXIT_OK;
}

static int cmd_migrate(ctl *c, const args *a)
{
    const char *dir = opt_str(a, "sql-dir");
    char real[PATH_MAX];
    vcl_error e;
    migrate_result r = { 0 };
    int rc;
    if (!dir)
        dir = migrate_default_dir();
    if (realpath(dir, real))
        dir = real;
    vcl_error_clear(&e);
    migrate_plan *plan = migrate_plan_new(dir, &e);
    if (!plan) {
        fail("%s", e.msg);
        fprintf(stderr, "%s: hint: another SQL directory: --sql-dir DIR or VCL_SQL_DIR\n", PROG);
        return EXIT_FAIL;
    }
    if (!ctl_db(c)) {
        migrate_plan_free(plan);
        return EXIT_FAIL;
    }
    if (migrate_apply(c->db, plan, &r, &e)) {
        rc = migrate_report(c, dir, &r);
    } else {
        const char *state = db_sqlstate(c->db);
        rc = fail("migrate: nothing applied: %s", db_msg(&e));
        if (strcmp(state, "55P03") == 0)
            fprintf(stderr, "%s: hint: another session holds a lock the migration needs (see "
                            "pg_stat_activity); try again\n", PROG);
        else if (strcmp(state, "42501") == 0)
            fprintf(stderr, "%s: hint: migrate as the schema owner (--db, VCL_DATABASE or "
                            "PGUSER)\n", PROG);
    }
    migrate_result_clear(&r);
    migrate_plan_free(plan);
    return rc;
}

/* ---- node ---- */

#define NODE_FIELD_OPTS                                                                     \
    { "transport", "local|ssh", 0, "how the worker reaches the node (default local)" },     \
    { "ssh-host", "HOST", 0, "ssh: host name or address" },                                 \
    { "ssh-port", "PORT", 0, "ssh: port (default 22)" },                                    \
    { "ssh-user", "USER", 0, "ssh: user" },                                                 \
    { "master-dir", "DIR", 0, "master image directory on the node" },                       \
    { "cow-dir", "DIR", 0, "copy-on-write disk directory on the node" },                    \
    { "xml-dir", "DIR", 0, "domain XML and console log directory on the node (default "    \
                           "/var/lib/vcl-worker/xml; made 0755, must not be world-writable)" }, \
    { "repo", "PATH", OPT_MULTI, "image repository path searched for masters; repeat for " \
                                 "several (node set: replaces the list)" },                 \
    { "max-loads", "N", 0, "at most N loads at once on this node" },                        \
    { "repo-location", "node|management", 0, "where the --repo paths are: on the node "     \
                                              "(default) or on the worker's host" },         \
    { "network", "NAME", 0, "libvirt network the NICs attach to" },                       \
    { "cpu-mode", "MODE", 0, "guest CPU: auto (default: probed once on the node), "         \
                             "host-passthrough, host-model or custom:MODEL (e.g. "          \
                             "custom:EPYC, custom:qemu64)" }

static const optspec OPTS_NODE_ADD[] = {
    { "uri", "URI", OPT_REQUIRED, "libvirt connection URI (qemu:///system, "
                                  "qemu+libssh2://user@host/system?..., test:///default)" },
    NODE_FIELD_OPTS,
    { NULL, NULL, 0, NULL },
};

static const optspec OPTS_NODE_SET[] = {
    { "state", "available|maintenance", 0, "maintenance: the worker starts no new work here" },
    { "uri", "URI", 0, "libvirt connection URI" },
    NODE_FIELD_OPTS,
    { NULL, NULL, 0, NULL },
};

/* Check the node options shared by add and set; fill the columns. repos
 * receives the --repo values joined by newlines (sent as one parameter and
 * split by string_to_array: no array literal is ever built by hand). */
static int node_fields(ctl *c, const args *a, colset *s, num *port, num *loads, char *repos,
                       size_t repos_size)
{
    int rc;
    const char *uri = opt_str(a, "uri");
    if ((rc = opt_word(c, a, "transport", TRANSPORTS)) != EXIT_OK ||
        (rc = check_uri(c, uri)) != EXIT_OK ||
        (rc = check_host(c, opt_str(a, "ssh-host"))) != EXIT_OK ||
        (rc = opt_num(c, a, "ssh-port", 1, 65535, port)) != EXIT_OK ||
        (rc = opt_num(c, a, "max-loads", 1, 1000, loads)) != EXIT_OK ||
        (rc = opt_word(c, a, "repo-location", REPO_LOCATIONS)) != EXIT_OK ||
        (rc = check_dir(c, "master image", opt_str(a, "master-dir"))) != EXIT_OK ||
        (rc = check_dir(c, "COW", opt_str(a, "cow-dir"))) != EXIT_OK ||
        (rc = check_dir(c, "XML", opt_str(a, "xml-dir"))) != EXIT_OK)
        return rc;
    if (opt_str(a, "ssh-user") && (rc = check_name(c, "ssh user", opt_str(a, "ssh-user"))))
        return rc;
    if (opt_str(a, "network") && (rc = check_name(c, "network", opt_str(a, "network"))))
        return rc;
    if (opt_str(a, "cpu-mode")) {
        cpu_mode m;
        vcl_error e;
        vcl_error_clear(&e);
        if (!cpu_mode_parse(opt_str(a, "cpu-mode"), &m, &e))
            return usage_error(c, "--cpu-mode: %s", e.msg);
    }
    repos[0] = '\0';
    for (int i = 0, o = 0; i < a->nmulti; i++) {
        if ((rc = check_repo(c, a->multi[i])) != EXIT_OK)
            return rc;
        int w = snprintf(repos + o, repos_size - (size_t)o, "%s%s", i ? "\n" : "", a->multi[i]);
        if (w < 0 || (size_t)w >= repos_size - (size_t)o)
            return usage_error(c, "too many or too long --repo paths");
        o += w;
    }
    colset_add(s, "libvirt_uri", uri);
    colset_add(s, "transport", opt_str(a, "transport"));
    colset_add(s, "ssh_host", opt_str(a, "ssh-host"));
    colset_add_expr(s, "ssh_port", "?::int", NUM_PARAM(*port));
    colset_add(s, "ssh_user", opt_str(a, "ssh-user"));
    colset_add(s, "master_image_dir", opt_str(a, "master-dir"));
    colset_add(s, "cow_dir", opt_str(a, "cow-dir"));
    colset_add(s, "xml_dir", opt_str(a, "xml-dir"));
    colset_add_expr(s, "repository_paths", "string_to_array(?, chr(10))",
                    a->nmulti ? repos : NULL);
    colset_add_expr(s, "max_concurrent_loads", "?::int", NUM_PARAM(*loads));
    colset_add(s, "repository_location", opt_str(a, "repo-location"));
    colset_add(s, "network", opt_str(a, "network"));
    colset_add(s, "cpu_mode", opt_str(a, "cpu-mode"));
    return EXIT_OK;
}

static int print_row_json(ctl *c, const char *sql, long long id, const char *what)
{
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id);
    const char *p[1] = { ids };
    return print_json(c, sql, 1, p, what);
}

static const char SQL_NODE_JSON[] = "SELECT row_to_json(n) FROM vcl.node n WHERE n.id = $1";

/* A computer's MAC belongs to it alone (unique regardless of case). */
static bool mac_taken(ctl *c, const vcl_error *e)
{
    return strcmp(db_sqlstate(c->db), "23505") == 0 && strstr(e->msg, "mac0") != NULL;
}

/* The end of `node set` and `computer set`: --state joins the columns
 * already checked into s, the row of table vcl.<kind> named name is
 * updated, and the new row (json_sql) or a line is printed. mac, for a
 * computer, is the --mac value that a uniqueness error names. */
static int set_by_name(ctl *c, const args *a, const char *kind, const char *name, colset *s,
                       const char *json_sql, const char *mac)
{
    char table[32], what[32];
    long long id = 0;
    bool found = false;
    vcl_error e;
    snprintf(table, sizeof table, "vcl.%s", kind);
    colset_add(s, "state", opt_str(a, "state"));
    if (s->n == 0)
        return usage_error(c, "nothing to change: give at least one option");
    if (!ctl_db(c))
        return EXIT_FAIL;
    vcl_error_clear(&e);
    if (!colset_update(c, table, s, "name", name, &id, &found, &e)) {
        if (mac && mac_taken(c, &e))
            return fail("cannot update %s '%s': MAC %s is already used by another "
                        "computer (see: %s computer list)", kind, name, mac, PROG);
        return db_fail(c, &e, "cannot update %s '%s'", kind, name);
    }
    if (!found)
        return fail("no %s named '%s' (see: %s %s list)", kind, name, PROG, kind);
    if (c->json) {
        snprintf(what, sizeof what, "the %s", kind);
        return print_row_json(c, json_sql, id, what);
    }
    if (!c->quiet)
        printf("updated %s %s\n", kind, name);
    return EXIT_OK;
}

static int cmd_node_add(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    num port, loads;
    char repos[MAX_MULTI * 260];
    long long id = 0;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "node", name)) != EXIT_OK ||
        (rc = node_fields(c, a, &s, &port, &loads, repos, sizeof repos)) != EXIT_OK)
        return rc;
    bool ssh = opt_str(a, "transport") && strcmp(opt_str(a, "transport"), "ssh") == 0;
    if (ssh && !opt_str(a, "ssh-host"))
        return usage_error(c, "--transport ssh needs --ssh-host HOST");
    if (!ssh && (opt_str(a, "ssh-host") || port.set || opt_str(a, "ssh-user")))
        return usage_error(c, "--ssh-host/--ssh-port/--ssh-user need --transport ssh");
    colset_add(&s, "name", name);
    if (!ctl_db(c))
        return EXIT_FAIL;
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.node", &s, &id, &e))
        return insert_fail(c, &e, "node", name);
    if (c->json)
        return print_row_json(c, SQL_NODE_JSON, id, "the node");
    if (!c->quiet)
        printf("added node %s (id %lld)\n", name, id);
    return EXIT_OK;
}

static int cmd_node_set(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    num port, loads;
    char repos[MAX_MULTI * 260];
    int rc;
    if ((rc = check_name(c, "node", name)) != EXIT_OK ||
        (rc = opt_word(c, a, "state", INVENTORY_STATES)) != EXIT_OK ||
        (rc = node_fields(c, a, &s, &port, &loads, repos, sizeof repos)) != EXIT_OK)
        return rc;
    return set_by_name(c, a, "node", name, &s, SQL_NODE_JSON, NULL);
}

#define NODE_ROWS                                                                          \
    "SELECT n.id, n.name, n.state, n.transport, n.libvirt_uri, n.ssh_host, n.ssh_port,"    \
    " n.ssh_user, n.master_image_dir, n.cow_dir, n.xml_dir, n.repository_paths,"           \
    " n.max_concurrent_loads, n.network, n.cpu_mode, n.cpu_mode_resolved, n.cpu_probe,"     \
    " n.cpu_probed_at,"                                                                     \
    " (SELECT count(*) FROM vcl.computer c WHERE c.node_id = n.id) AS computers"           \
    " FROM vcl.node n ORDER BY n.name"

static int cmd_node_list(ctl *c, const args *a)
{
    (void)a;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(c, JSON_ARRAY(NODE_ROWS), 0, NULL, "nodes");
    return print_query_table(
        c,
        "SELECT name, state, transport, libvirt_uri AS uri,"
        " CASE WHEN transport = 'ssh' THEN concat(ssh_user || '@', ssh_host, ':' || ssh_port)"
        " END AS ssh, max_concurrent_loads AS max_loads, network, computers,"
        " CASE WHEN cpu_mode = 'auto' THEN 'auto: ' || coalesce(cpu_mode_resolved, 'not probed yet')"
        " ELSE cpu_mode END AS cpu, cpu_probe,"
        " master_image_dir AS master_dir, cow_dir, xml_dir,"
        " nullif(array_to_string(repository_paths, ','), '') AS repos"
        " FROM (" NODE_ROWS ") t",
        0, NULL, NULL, "nodes", "no nodes (add one: vclctl node add NAME --uri URI)");
}

/* ---- image ---- */

static const optspec OPTS_IMAGE_ADD[] = {
    { "os-type", "none|linux|windows", 0, "how post_load waits for the guest (default none)" },
    { NULL, NULL, 0, NULL },
};

static int cmd_image_add(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    long long id = 0;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "image", name)) != EXIT_OK ||
        (rc = opt_word(c, a, "os-type", OS_TYPES)) != EXIT_OK)
        return rc;
    colset_add(&s, "name", name);
    colset_add(&s, "os_type", opt_str(a, "os-type"));
    if (!ctl_db(c))
        return EXIT_FAIL;
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.image", &s, &id, &e))
        return insert_fail(c, &e, "image", name);
    if (c->json)
        return print_row_json(c, "SELECT row_to_json(i) FROM vcl.image i WHERE i.id = $1", id,
                              "the image");
    if (!c->quiet)
        printf("added image %s (id %lld)\n", name, id);
    return EXIT_OK;
}

static const optspec OPTS_REVISION_ADD[] = {
    { "revision", "N", OPT_REQUIRED, "revision number" },
    { "file-stem", "STEM", OPT_REQUIRED, "file name of the master without extension "
                                         "(<master dir>/<STEM>.qcow2)" },
    { "size", "BYTES", 0, "size of the master image" },
    { "checksum", "SUM", 0, "checksum of the master image" },
    { "production", NULL, 0, "mark as production (what IMAGE without :REV loads)" },
    { NULL, NULL, 0, NULL },
};

static int cmd_image_revision_add(ctl *c, const args *a)
{
    const char *image = a->pos[0], *stem = opt_str(a, "file-stem");
    colset s = { .n = 0 };
    num rev, size;
    long long image_id = 0, id = 0;
    char image_ids[32];
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "image", image)) != EXIT_OK ||
        (rc = opt_num(c, a, "revision", 0, 2147483647, &rev)) != EXIT_OK ||
        (rc = check_name(c, "file stem", stem)) != EXIT_OK ||
        (rc = opt_num(c, a, "size", 0, 9223372036854775807LL, &size)) != EXIT_OK ||
        (rc = check_text(c, "--checksum", opt_str(a, "checksum"), 256)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = lookup_id(c, SQL_IMAGE_ID, "image", image, &image_id)) != EXIT_OK)
        return rc;
    snprintf(image_ids, sizeof image_ids, "%lld", image_id);
    colset_add_expr(&s, "image_id", "?::bigint", image_ids);
    colset_add_expr(&s, "revision", "?::int", NUM_PARAM(rev));
    colset_add(&s, "file_stem", stem);
    colset_add_expr(&s, "size_bytes", "?::bigint", NUM_PARAM(size));
    colset_add(&s, "checksum", opt_str(a, "checksum"));
    colset_add_expr(&s, "production", "?::boolean", opt_flag(a, "production") ? "true" : NULL);
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.image_revision", &s, &id, &e)) {
        if (strcmp(db_sqlstate(c->db), "23505") == 0 && strstr(e.msg, "file_stem"))
            return fail("file stem '%s' is already used by another revision (each revision "
                        "has its own master file; see: %s image list)", stem, PROG);
        if (strcmp(db_sqlstate(c->db), "23505") == 0)
            return fail("image %s already has revision %lld (see: %s image list)", image, rev.v,
                        PROG);
        return db_fail(c, &e, "cannot add revision %lld of image '%s'", rev.v, image);
    }
    if (c->json)
        return print_row_json(
            c, "SELECT row_to_json(r) FROM vcl.image_revision r WHERE r.id = $1", id,
            "the revision");
    if (!c->quiet)
        printf("added %s:%lld (file stem %s%s)\n", image, rev.v, stem,
               opt_flag(a, "production") ? ", production" : "");
    return EXIT_OK;
}

static int cmd_image_list(ctl *c, const args *a)
{
    (void)a;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(
            c,
            "SELECT coalesce(json_agg(json_build_object("
            " 'id', i.id, 'name', i.name, 'os_type', i.os_type,"
            " 'revisions', (SELECT coalesce(json_agg(r ORDER BY r.revision), '[]'::json)"
            "               FROM vcl.image_revision r WHERE r.image_id = i.id))"
            " ORDER BY i.name), '[]'::json) FROM vcl.image i",
            0, NULL, "images");
    return print_query_table(
        c,
        "SELECT i.name AS image, i.os_type AS os, r.revision AS rev, r.file_stem,"
        " pg_size_pretty(r.size_bytes) AS size,"
        " CASE WHEN r.production THEN 'yes' WHEN r.id IS NOT NULL THEN 'no' END AS production,"
        " (SELECT string_agg(c.name, ',' ORDER BY c.name) FROM vcl.computer c"
        "  WHERE c.current_revision_id = r.id) AS loaded_on"
        " FROM vcl.image i LEFT JOIN vcl.image_revision r ON r.image_id = i.id"
        " ORDER BY i.name, r.revision",
        0, NULL, NULL, "images", "no images (add one: vclctl image add NAME)");
}

/* ---- image exists, image size (VCL's does_image_exist / get_image_size) ---- */

static const optspec OPTS_IMAGE_WHERE[] = {
    { "node", "NODE", 0, "look only for this node (default: every node, one line each)" },
    { NULL, NULL, 0, NULL },
};

/* The nodes to look on, with what image.c needs: $1 NULL = every node. */
#define IMAGE_NODES_SQL                                                                    \
    "SELECT n.name, n.transport, n.master_image_dir,"                                     \
    " array_to_string(n.repository_paths, E'\\x1f'), coalesce(n.ssh_host, ''),"           \
    " coalesce(n.ssh_port, 22), coalesce(n.ssh_user, ''), n.repository_location"          \
    " FROM vcl.node n WHERE $1::text IS NULL OR n.name = $1::text ORDER BY n.name"

/* One node's answer, joined into \x1f-separated columns for the query that
 * prints them (PostgreSQL makes the table and the JSON; nothing is escaped
 * here). A value holding \x1f itself cannot be passed: it is cut there. */
typedef struct where_cols {
    char node[8192], at[2048], path[65536], files[2048], bytes[4096], mb[4096];
    int n;
} where_cols;

static void where_add(where_cols *w, const char *node, const char *at, const char *path,
                      int files, long long bytes, long long mb)
{
    struct { char *buf; size_t size; char val[PATH_MAX + 1024]; } cols[6] = {
        { w->node, sizeof w->node, "" },   { w->at, sizeof w->at, "" },
        { w->path, sizeof w->path, "" },   { w->files, sizeof w->files, "" },
        { w->bytes, sizeof w->bytes, "" }, { w->mb, sizeof w->mb, "" },
    };
    snprintf(cols[0].val, sizeof cols[0].val, "%s", node);
    snprintf(cols[1].val, sizeof cols[1].val, "%s", at);
    snprintf(cols[2].val, sizeof cols[2].val, "%s", path);
    if (bytes >= 0) {
        snprintf(cols[3].val, sizeof cols[3].val, "%d", files);
        snprintf(cols[4].val, sizeof cols[4].val, "%lld", bytes);
        snprintf(cols[5].val, sizeof cols[5].val, "%lld", mb);
    }
    for (int i = 0; i < 6; i++) {
        cols[i].val[strcspn(cols[i].val, "\x1f")] = '\0';
        size_t used = strlen(cols[i].buf);
        snprintf(cols[i].buf + used, cols[i].size - used, "%s%s", w->n ? "\x1f" : "", cols[i].val);
    }
    w->n++;
}

#define WHERE_ROWS                                                                         \
    "SELECT t.node, t.at, nullif(t.path, '') AS path, nullif(t.files, '')::int AS files,"  \
    " nullif(t.bytes, '')::bigint AS bytes, nullif(t.mb, '')::bigint AS mb"               \
    " FROM unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f'),"          \
    "             string_to_array($3, E'\\x1f'), string_to_array($4, E'\\x1f'),"          \
    "             string_to_array($5, E'\\x1f'), string_to_array($6, E'\\x1f'))"          \
    "      WITH ORDINALITY AS t(node, at, path, files, bytes, mb, ord) ORDER BY t.ord"

static int resolve_revision(ctl *c, const image_ref *ref, long long *revision_id);

/* Look for IMAGE[:REV] on the chosen nodes. The master path a load would use
 * is <master dir>/<file stem>.qcow2 (the kvm and qemu drivers' extension). */
static int image_where(ctl *c, const args *a, bool want_size)
{
    image_ref ref;
    long long revision_id = 0;
    const char *node = opt_str(a, "node");
    char stem[NAME_MAX_LEN + 1] = "", ids[32];
    where_cols *w = NULL;
    PGresult *r = NULL;
    vcl_error e;
    int rc, missing = 0;

    if ((rc = parse_image_ref(c, a->pos[0], &ref)) != EXIT_OK ||
        (node && (rc = check_name(c, "node", node)) != EXIT_OK))
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = resolve_revision(c, &ref, &revision_id)) != EXIT_OK)
        return rc;
    if (node) {
        long long node_id;
        if ((rc = lookup_id(c, SQL_NODE_ID, "node", node, &node_id)) != EXIT_OK)
            return rc;
    }
    snprintf(ids, sizeof ids, "%lld", revision_id);
    {
        const char *p[1] = { ids };
        PGresult *sr;
        vcl_error_clear(&e);
        if (!(sr = db_exec(c->db, "SELECT file_stem FROM vcl.image_revision WHERE id = $1", 1, p,
                           &e)))
            return db_fail(c, &e, "cannot look up the file stem of %s", a->pos[0]);
        if (PQntuples(sr) == 1)
            snprintf(stem, sizeof stem, "%s", PQgetvalue(sr, 0, 0));
        PQclear(sr);
    }
    const char *np[1] = { node };
    vcl_error_clear(&e);
    if (!(r = db_exec(c->db, IMAGE_NODES_SQL, 1, np, &e)))
        return db_fail(c, &e, "cannot list the nodes");
    if (PQntuples(r) == 0) {
        PQclear(r);
        return fail("no nodes to look on (add one: %s node add NAME --uri URI)", PROG);
    }
    if (!(w = calloc(1, sizeof *w))) {
        PQclear(r);
        return fail("out of memory");
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *nname = PQgetvalue(r, i, 0), *kind = PQgetvalue(r, i, 1),
                   *mdir = PQgetvalue(r, i, 2), *repos = PQgetvalue(r, i, 3);
        char master[PATH_MAX], *dup = strdup(repos), *save = NULL;
        const char *paths[64];
        size_t np_ = 0;
        size_t ml = strlen(mdir);
        while (ml > 1 && mdir[ml - 1] == '/')
            ml--;
        snprintf(master, sizeof master, "%.*s/%s.qcow2", (int)ml, mdir, stem);
        for (char *tok = dup ? strtok_r(dup, "\x1f", &save) : NULL; tok && np_ < 64;
             tok = strtok_r(NULL, "\x1f", &save))
            paths[np_++] = tok;
        image_req req = { .master_path = master, .file_stem = stem, .disk_format = "qcow2",
                          .repo_paths = paths, .n_repo = np_ };
        image_location loc;
        /* ssh nodes: where from the node row; the key and known_hosts file
         * from --ssh-key/--known-hosts ($VCL_SSH_KEY, $VCL_SSH_KNOWN_HOSTS). */
        transport_opts to = { .host = PQgetvalue(r, i, 4), .port = atoi(PQgetvalue(r, i, 5)),
                              .user = PQgetvalue(r, i, 6)[0] ? PQgetvalue(r, i, 6) : NULL,
                              .private_key = c->ssh_key, .known_hosts = c->known_hosts };
        vcl_error_clear(&e);
        /* 'management': the repository paths are on this host. */
        bool mgmt = strcmp(PQgetvalue(r, i, 7), "management") == 0;
        if (!(req.t = transport_new(kind, &to, &e)) ||
            (mgmt && !(req.repo_t = transport_new("local", NULL, &e))) ||
            !image_locate(&req, &loc, &e)) {
            where_add(w, nname, "error", e.msg, 0, -1, -1);
            missing++;
        } else if (loc.at == IMAGE_AT_NONE) {
            where_add(w, nname, image_at_name(loc.at), "", 0, -1, -1);
            missing++;
        } else {
            where_add(w, nname, image_at_name(loc.at), loc.path, loc.n_files, loc.size_bytes,
                      loc.size_mb);
        }
        transport_free(req.repo_t);
        transport_free(req.t);
        free(dup);
    }
    PQclear(r);

    const char *p[6] = { w->node, w->at, w->path, w->files, w->bytes, w->mb };
    if (c->json)
        rc = print_json(c, JSON_ARRAY(WHERE_ROWS), 6, p, "the answer");
    else if (want_size)
        rc = print_query_table(c,
                               "SELECT node, bytes, mb, at AS \"where\", files, path"
                               " FROM (" WHERE_ROWS ") x",
                               6, p, NULL, "the answer", "");
    else
        rc = print_query_table(c, "SELECT node, at AS \"where\", path FROM (" WHERE_ROWS ") x", 6,
                               p, NULL, "the answer", "");
    free(w);
    if (rc != EXIT_OK)
        return rc;
    return missing ? EXIT_FAIL : EXIT_OK;
}

static int cmd_image_exists(ctl *c, const args *a)
{
    return image_where(c, a, false);
}

static int cmd_image_size(ctl *c, const args *a)
{
    return image_where(c, a, true);
}

/* ---- computer ---- */

static const optspec OPTS_COMPUTER_ADD[] = {
    { "node", "NODE", OPT_REQUIRED, "the node this VM slot lives on" },
    { "mac", "MAC", OPT_REQUIRED, "MAC address of the first NIC (52:54:00:xx:xx:xx)" },
    { "memory", "MB", 0, "memory in MiB" },
    { "vcpus", "N", 0, "virtual CPUs" },
    { NULL, NULL, 0, NULL },
};

static const optspec OPTS_COMPUTER_SET[] = {
    { "state", "available|maintenance", 0, "maintenance: the worker starts no new work here" },
    { "mac", "MAC", 0, "MAC address of the first NIC" },
    { "memory", "MB", 0, "memory in MiB (used by the next load)" },
    { "vcpus", "N", 0, "virtual CPUs (used by the next load)" },
    { NULL, NULL, 0, NULL },
};

/* MAC, memory and vCPUs, shared by add and set. mac is lower-cased into
 * macbuf. */
static int computer_fields(ctl *c, const args *a, colset *s, num *mem, num *cpus, char *macbuf,
                           size_t size)
{
    const char *mac = opt_str(a, "mac");
    vcl_error e;
    int rc;
    vcl_error_clear(&e);
    if (mac) {
        if (!mac_check(mac, &e))
            return usage_error(c, "%s", e.msg);
        snprintf(macbuf, size, "%s", mac);
        for (char *p = macbuf; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    if ((rc = opt_num(c, a, "memory", 64, 4194304, mem)) != EXIT_OK ||
        (rc = opt_num(c, a, "vcpus", 1, 1024, cpus)) != EXIT_OK)
        return rc;
    colset_add(s, "mac0", mac ? macbuf : NULL);
    colset_add_expr(s, "memory_mb", "?::int", NUM_PARAM(*mem));
    colset_add_expr(s, "vcpus", "?::int", NUM_PARAM(*cpus));
    return EXIT_OK;
}

static const char SQL_COMPUTER_JSON[] =
    "SELECT row_to_json(c) FROM vcl.computer c WHERE c.id = $1";

static int cmd_computer_add(ctl *c, const args *a)
{
    const char *name = a->pos[0], *node = opt_str(a, "node");
    colset s = { .n = 0 };
    num mem, cpus;
    char mac[32], node_ids[32];
    long long node_id = 0, id = 0;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "computer", name)) != EXIT_OK ||
        (rc = check_name(c, "node", node)) != EXIT_OK ||
        (rc = computer_fields(c, a, &s, &mem, &cpus, mac, sizeof mac)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = lookup_id(c, SQL_NODE_ID, "node", node, &node_id)) != EXIT_OK)
        return rc;
    snprintf(node_ids, sizeof node_ids, "%lld", node_id);
    colset_add(&s, "name", name);
    colset_add_expr(&s, "node_id", "?::bigint", node_ids);
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.computer", &s, &id, &e)) {
        if (mac_taken(c, &e))
            return fail("cannot add computer '%s': MAC %s is already used by another computer "
                        "(see: %s computer list)", name, mac, PROG);
        return insert_fail(c, &e, "computer", name);
    }
    if (c->json)
        return print_row_json(c, SQL_COMPUTER_JSON, id, "the computer");
    if (!c->quiet)
        printf("added computer %s on node %s (id %lld)\n", name, node, id);
    return EXIT_OK;
}

static int cmd_computer_set(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    colset s = { .n = 0 };
    num mem, cpus;
    char mac[32] = "";
    int rc;
    if ((rc = check_name(c, "computer", name)) != EXIT_OK ||
        (rc = opt_word(c, a, "state", INVENTORY_STATES)) != EXIT_OK ||
        (rc = computer_fields(c, a, &s, &mem, &cpus, mac, sizeof mac)) != EXIT_OK)
        return rc;
    return set_by_name(c, a, "computer", name, &s, SQL_COMPUTER_JSON, mac);
}

#define COMPUTER_ROWS                                                                       \
    "SELECT c.id, c.name, n.name AS node, c.state, c.node_status,"                          \
    " i.name || ':' || ir.revision AS loaded, c.mac0, c.memory_mb, c.vcpus,"               \
    " c.domain_name, c.domain_uuid, c.cow_path, c.master_path, c.xml_path, c.post_load_at," \
    " c.status_reason, c.status_at,"                                                        \
    " (SELECT r.operation || ' #' || r.id || ' ' || r.state FROM vcl.reservation r"         \
    "  WHERE r.computer_id = c.id AND r.state IN ('pending', 'running')"                    \
    "  ORDER BY r.id LIMIT 1) AS queued"                                                    \
    " FROM vcl.computer c JOIN vcl.node n ON n.id = c.node_id"                              \
    " LEFT JOIN vcl.image_revision ir ON ir.id = c.current_revision_id"                     \
    " LEFT JOIN vcl.image i ON i.id = ir.image_id"                                          \
    " ORDER BY c.name"

static int cmd_computer_list(ctl *c, const args *a)
{
    (void)a;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(c, JSON_ARRAY(COMPUTER_ROWS), 0, NULL, "computers");
    return print_query_table(c,
                             "SELECT name, node, node_status, loaded, state, queued, mac0 AS mac,"
                             " memory_mb, vcpus FROM (" COMPUTER_ROWS ") t",
                             0, NULL, NULL, "computers",
                             "no computers (add one: vclctl computer add NAME --node NODE "
                             "--mac MAC)");
}

/* ---- load, enqueue ---- */

static const optspec OPTS_QUEUE[] = {
    { "priority", "N", 0, "higher runs first among claimable rows (default from the schema)" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { "args", "JSON", 0, "operation arguments as a JSON object (enqueue), "
                         "e.g. '{\"snapshot\":\"s1\"}'" },
    { NULL, NULL, 0, NULL },
};

static const optspec OPTS_LOAD[] = {
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

/* The revision IMAGE[:REV] means: REV when given, else the highest
 * production revision, else the highest revision. */
static int resolve_revision(ctl *c, const image_ref *ref, long long *revision_id)
{
    vcl_error e;
    long long image_id = 0;
    bool isnull = true;
    int rc;
    if ((rc = lookup_id(c, SQL_IMAGE_ID, "image", ref->name, &image_id)) != EXIT_OK)
        return rc;
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", image_id);
    const char *p[2] = { ids, ref->has_rev ? ref->rev_s : NULL };
    vcl_error_clear(&e);
    if (!db_scalar_ll(c->db,
                      "SELECT id FROM vcl.image_revision WHERE image_id = $1"
                      " AND ($2::int IS NULL OR revision = $2::int)"
                      " ORDER BY production DESC, revision DESC LIMIT 1",
                      2, p, revision_id, &isnull, &e))
        return db_fail(c, &e, "cannot look up image '%s'", ref->name);
    if (isnull && ref->has_rev)
        return fail("image %s has no revision %lld (see: %s image list)", ref->name, ref->rev,
                    PROG);
    if (isnull)
        return fail("image %s has no revisions (add one: %s image revision-add %s "
                    "--revision N --file-stem STEM)", ref->name, PROG, ref->name);
    return EXIT_OK;
}

/* Insert one reservation and print its id alone (or {"id": N}). */
static int enqueue(ctl *c, const args *a, const char *computer, const char *operation,
                   const char *image, const char *json_args)
{
    colset s = { .n = 0 };
    image_ref ref;
    num prio, maxatt;
    long long computer_id = 0, revision_id = 0, id = 0;
    char computer_ids[32], revision_ids[32];
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "computer", computer)) != EXIT_OK ||
        (image && (rc = parse_image_ref(c, image, &ref)) != EXIT_OK) ||
        (rc = opt_num(c, a, "priority", -1000000, 1000000, &prio)) != EXIT_OK ||
        (rc = opt_num(c, a, "max-attempts", 1, 100, &maxatt)) != EXIT_OK ||
        (rc = check_text(c, "--args", json_args, 65536)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = lookup_id(c, SQL_COMPUTER_ID, "computer", computer, &computer_id)) != EXIT_OK)
        return rc;
    if (image && (rc = resolve_revision(c, &ref, &revision_id)) != EXIT_OK)
        return rc;
    snprintf(computer_ids, sizeof computer_ids, "%lld", computer_id);
    snprintf(revision_ids, sizeof revision_ids, "%lld", revision_id);
    colset_add_expr(&s, "computer_id", "?::bigint", computer_ids);
    colset_add_expr(&s, "image_revision_id", "?::bigint", image ? revision_ids : NULL);
    colset_add(&s, "operation", operation);
    colset_add_expr(&s, "priority", "?::int", NUM_PARAM(prio));
    colset_add_expr(&s, "max_attempts", "?::int", NUM_PARAM(maxatt));
    colset_add_expr(&s, "args", "?::jsonb", json_args);
    vcl_error_clear(&e);
    if (!colset_insert(c, "vcl.reservation", &s, &id, &e))
        return db_fail(c, &e, "cannot queue %s on computer '%s'", operation, computer);
    c->last_id = id;
    if (c->json)
        return print_row_json(c, "SELECT json_build_object('id', $1::bigint)", id, "the id");
    printf("%lld\n", id);
    return EXIT_OK;
}

static int cmd_load(ctl *c, const args *a)
{
    return enqueue(c, a, a->pos[0], "load", a->pos[1], NULL);
}

static int cmd_enqueue(ctl *c, const args *a)
{
    const char *op = a->pos[1], *json_args = opt_str(a, "args");
    char list[512];
    if (json_args && json_args[strspn(json_args, " \t\n")] != '{')
        return usage_error(c, "--args must be a JSON object, e.g. '{\"snapshot\":\"s1\"}'");
    if (!one_of(op, OPERATIONS))
        return usage_error(c, "unknown operation '%s' (one of %s)", op,
                           words_join(OPERATIONS, list, sizeof list));
    if (strcmp(op, "load") == 0 && a->npos < 3)
        return usage_error(c, "load needs IMAGE[:REV] (or use: %s load COMPUTER IMAGE[:REV])",
                           PROG);
    return enqueue(c, a, a->pos[0], op, a->npos > 2 ? a->pos[2] : NULL, json_args);
}

/* ---- capture ---- */

static const optspec OPTS_CAPTURE[] = {
    { "after", "off|reload", 0, "off (default): leave the computer off; reload: then load the "
                                "new revision on it" },
    { "file-stem", "STEM", 0, "file stem of the new master (default <image>-v<revision>)" },
    { "shutdown-timeout", "S", 0, "seconds the guest gets to shut down before it is destroyed "
                                  "(default 60)" },
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

static const char *const CAPTURE_AFTER[] = { "off", "reload", NULL };

static int cmd_capture(ctl *c, const args *a)
{
    const char *stem = opt_str(a, "file-stem");
    num timeout;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "computer", a->pos[0])) != EXIT_OK ||
        (rc = opt_word(c, a, "after", CAPTURE_AFTER)) != EXIT_OK ||
        (stem && (rc = check_name(c, "file stem", stem)) != EXIT_OK) ||
        (rc = opt_num(c, a, "shutdown-timeout", 0, 3600, &timeout)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    /* The args object, made by PostgreSQL (absent options left out). */
    const char *p[3] = { opt_str(a, "after"), stem, NUM_PARAM(timeout) };
    PGresult *r;
    vcl_error_clear(&e);
    if (!(r = db_exec(c->db,
                      "SELECT jsonb_strip_nulls(jsonb_build_object('after', $1::text,"
                      " 'file_stem', $2::text, 'shutdown_timeout', $3::int))::text",
                      3, p, &e)))
        return db_fail(c, &e, "cannot build the capture's arguments");
    char json[512];
    snprintf(json, sizeof json, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return enqueue(c, a, a->pos[0], "capture", NULL, json);
}

/* ---- list, show ---- */

static const optspec OPTS_LIST[] = {
    { "state", "STATE", 0, "only rows in STATE (pending, running, done, failed, cancelled)" },
    { "computer", "NAME", 0, "only rows of this computer" },
    { "limit", "N", 0, "the N most recent rows (default 50)" },
    { NULL, NULL, 0, NULL },
};

#define RESERVATION_ROWS                                                                   \
    "SELECT r.id, c.name AS computer, r.operation, i.name || ':' || ir.revision AS image," \
    " r.state, r.stage, r.attempts, r.max_attempts, r.priority, r.run_at, r.finished_at,"  \
    " r.failed_stage, r.last_error, r.created_at,"                                         \
    " (SELECT s.stage FROM vcl.reservation_stage s WHERE s.reservation_id = r.id"          \
    "   AND s.lease_token = r.lease_token AND s.outcome = 'running'"                       \
    "   ORDER BY s.id DESC LIMIT 1) AS current_stage"                                      \
    " FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id"                  \
    " LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id"                      \
    " LEFT JOIN vcl.image i ON i.id = ir.image_id"                                         \
    " WHERE ($1::text IS NULL OR r.state = $1::text)"                                      \
    "   AND ($2::text IS NULL OR c.name = $2::text)"                                       \
    " ORDER BY r.id DESC LIMIT $3::int"

static int cmd_list(ctl *c, const args *a)
{
    const char *state = opt_str(a, "state"), *computer = opt_str(a, "computer");
    num limit;
    long long computer_id;
    int rc;
    if ((rc = opt_word(c, a, "state", RESERVATION_STATES)) != EXIT_OK ||
        (computer && (rc = check_name(c, "computer", computer)) != EXIT_OK) ||
        (rc = opt_num(c, a, "limit", 1, 1000000, &limit)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (computer && (rc = lookup_id(c, SQL_COMPUTER_ID, "computer", computer, &computer_id)))
        return rc;
    const char *p[3] = { state, computer, limit.set ? limit.s : "50" };
    if (c->json)
        return print_json(c, JSON_ARRAY(RESERVATION_ROWS), 3, p, "reservations");
    /* For people: "stage" is where the row is (running: the stage running
     * now; failed: the stage that failed; otherwise the checkpoint, the last
     * finished stage), "when" is run_at until the row has finished, then
     * finished_at, and the error of a row that ended done is history. */
    return print_query_table(
        c,
        "SELECT id, computer, operation, image, state,"
        " CASE state WHEN 'running' THEN coalesce(current_stage, stage)"
        "   WHEN 'failed' THEN coalesce(failed_stage, stage) ELSE stage END AS stage,"
        " attempts || '/' || max_attempts AS attempts,"
        " to_char(coalesce(finished_at, run_at), 'YYYY-MM-DD HH24:MI:SS') AS \"when\","
        " CASE WHEN state = 'done' THEN NULL"
        "   WHEN length(last_error) > 60 THEN left(last_error, 57) || '...'"
        "   ELSE last_error END AS error"
        " FROM (" RESERVATION_ROWS ") t",
        3, p, NULL, "reservations", "no reservations");
}

static int show_follow(ctl *c, long long id);

static const optspec OPTS_SHOW[] = {
    { "xml", NULL, 0, "print only the stored domain XML" },
    { "follow", NULL, 0, "watch it live until it ends: stages, estimates, progress (exit 0 done, "
                         "1 failed or cancelled)" },
    { NULL, NULL, 0, NULL },
};

/* Which column lists are printed in the stage log, and how. */
static const colfmt STAGE_FMTS[] = { { "duration", fmt_duration_ms }, { NULL, NULL } };

static int show_stage_log(ctl *c, const char *id)
{
    vcl_error e;
    const char *p[1] = { id };
    vcl_error_clear(&e);
    /* A stage still marked 'running' is running only while its reservation
     * runs under the same lease; under an expired lease its worker is dead
     * or hung (the next claim rescues it); otherwise it was interrupted and
     * a later attempt resumed or will resume the job. */
    PGresult *r = db_exec(
        c->db,
        "SELECT s.attempt, s.lease_token AS lease, s.stage,"
        " CASE WHEN s.outcome <> 'running' THEN s.outcome"
        "   WHEN r.state <> 'running' OR s.lease_token IS DISTINCT FROM r.lease_token"
        "   THEN 'interrupted'"
        "   WHEN r.lease_expires_at < now() THEN 'lease-expired'"
        "   ELSE 'running' END AS outcome,"
        " to_char(s.started_at, 'YYYY-MM-DD HH24:MI:SS.MS') AS started_at,"
        " round(coalesce(s.duration_ms, CASE WHEN s.outcome = 'running' AND r.state = 'running'"
        "   THEN extract(epoch FROM clock_timestamp() - s.started_at) * 1000 END))::bigint"
        "   AS duration,"
        " s.detail"
        " FROM vcl.reservation_stage s JOIN vcl.reservation r ON r.id = s.reservation_id"
        " WHERE s.reservation_id = $1::bigint ORDER BY s.id",
        1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read the stage log of reservation %s", id);
    printf("\nstage log:\n");
    if (PQntuples(r) == 0)
        printf("(no stage has started)\n");
    else
        print_table(stdout, r, STAGE_FMTS);
    PQclear(r);
    return EXIT_OK;
}

/* The state of reservation id into buf; false + message when it does not
 * exist or cannot be read (*rc set). */
static bool reservation_state(ctl *c, const char *id, char *buf, size_t size, int *rc)
{
    vcl_error e;
    const char *p[1] = { id };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, "SELECT state FROM vcl.reservation WHERE id = $1::bigint", 1,
                          p, &e);
    if (!r) {
        *rc = db_fail(c, &e, "cannot read reservation %s", id);
        return false;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        *rc = fail("no reservation with id %s (see: %s list)", id, PROG);
        return false;
    }
    snprintf(buf, size, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return true;
}

/* The reservation the command's first argument names: its id checked, the
 * database open and its state read into state (show, cancel). */
static int reservation_arg(ctl *c, const args *a, num *id, char *state, size_t size)
{
    int rc;
    if ((rc = arg_id(c, a->pos[0], id)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (!reservation_state(c, id->s, state, size, &rc))
        return rc;
    return EXIT_OK;
}

/* The reservation row for people: names joined in front of r.*. */
#define RESERVATION_DETAIL                                                                 \
    "SELECT r.id, c.name AS computer, n.name AS node,"                                     \
    " i.name || ':' || ir.revision AS image, w.name AS worker, r.*"                        \
    " FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id"                  \
    " JOIN vcl.node n ON n.id = c.node_id"                                                 \
    " LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id"                      \
    " LEFT JOIN vcl.image i ON i.id = ir.image_id"                                         \
    " LEFT JOIN vcl.worker w ON w.id = r.worker_id"                                        \
    " WHERE r.id = $1::bigint"

/* The stored domain XML is long: `show` gives its size, `show --xml` the text. */
static void fmt_xml_size(const char *in, char *out, size_t size)
{
    snprintf(out, size, "%zu bytes (print it with --xml)", strlen(in));
}

static const colfmt SHOW_FMTS[] = { { "domain_xml", fmt_xml_size }, { NULL, NULL } };

static int cmd_show(ctl *c, const args *a)
{
    num id;
    vcl_error e;
    char state[64];
    int rc;
    if ((rc = reservation_arg(c, a, &id, state, sizeof state)) != EXIT_OK)
        return rc;
    const char *p[1] = { id.s };
    vcl_error_clear(&e);
    if (opt_flag(a, "follow")) {
        if (opt_flag(a, "xml") || c->json)
            return usage_error(c, "--follow is a live view for people: not with --xml or --json");
        return show_follow(c, id.v);
    }
    if (opt_flag(a, "xml")) {
        PGresult *x = db_exec(c->db, "SELECT domain_xml FROM vcl.reservation WHERE id = $1::bigint",
                              1, p, &e);
        if (!x)
            return db_fail(c, &e, "cannot read reservation %s", id.s);
        if (PQntuples(x) == 0 || PQgetisnull(x, 0, 0)) {
            PQclear(x);
            return fail("reservation %s has no domain XML (generate_xml has not run)", id.s);
        }
        const char *xml = PQgetvalue(x, 0, 0);
        fputs(xml, stdout);
        if (xml[0] && xml[strlen(xml) - 1] != '\n')
            fputc('\n', stdout);
        PQclear(x);
        return EXIT_OK;
    }
    if (c->json)
        return print_json(
            c,
            "SELECT json_build_object('reservation', to_jsonb(r) || jsonb_build_object("
            "   'computer', c.name, 'node', n.name, 'worker', w.name,"
            "   'image', i.name || ':' || ir.revision),"
            " 'stages', (SELECT coalesce(json_agg(s ORDER BY s.id), '[]'::json)"
            "            FROM vcl.reservation_stage s WHERE s.reservation_id = r.id))"
            " FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id"
            " JOIN vcl.node n ON n.id = c.node_id"
            " LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id"
            " LEFT JOIN vcl.image i ON i.id = ir.image_id"
            " LEFT JOIN vcl.worker w ON w.id = r.worker_id"
            " WHERE r.id = $1::bigint",
            1, p, "the reservation");

    PGresult *r = db_exec(c->db, RESERVATION_DETAIL, 1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read reservation %s", id.s);
    if (PQntuples(r) == 0) {
        PQclear(r);
        return fail("no reservation with id %s (see: %s list)", id.s, PROG);
    }
    print_kv(stdout, r, 0, SHOW_FMTS, NULL);
    int err = PQfnumber(r, "last_error");
    char last_error[1024] = "";
    if (err >= 0 && !PQgetisnull(r, 0, err))
        snprintf(last_error, sizeof last_error, "%s", PQgetvalue(r, 0, err));
    PQclear(r);
    if ((rc = show_stage_log(c, id.s)) != EXIT_OK)
        return rc;
    if (strcmp(state, "failed") == 0) {
        printf("\nerror: %s\n", last_error[0] ? last_error : "(no message recorded)");
        printf("retry with: %s retry %s\n", PROG, id.s);
    }
    return EXIT_OK;
}

/* ---- retry, cancel ---- */

static const optspec OPTS_RETRY[] = {
    { "from-start", NULL, 0, "clear the checkpoint: rerun every stage" },
    { NULL, NULL, 0, NULL },
};

static int print_id_state(ctl *c, const char *id, const char *state)
{
    if (c->json) {
        const char *p[2] = { id, state };
        return print_json(c, "SELECT json_build_object('id', $1::bigint, 'state', $2::text)", 2,
                          p, "the result");
    }
    printf("reservation %s: %s\n", id, state);
    return EXIT_OK;
}

static int cmd_retry(ctl *c, const args *a)
{
    num id;
    vcl_error e;
    char state[64];
    int rc;
    if ((rc = arg_id(c, a->pos[0], &id)) != EXIT_OK)
        return rc;
    bool from_start = opt_flag(a, "from-start");
    if (!ctl_db(c))
        return EXIT_FAIL;
    /* The same plain UPDATE a DBA would type; the schema's trigger resets
     * attempts and run_at and wakes the workers. The state condition makes
     * the check and the change one statement; the CTE reads the old state
     * under the row lock, for the note below. */
    const char *p[2] = { id.s, from_start ? "true" : "false" };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db,
                          "WITH old AS (SELECT id, state FROM vcl.reservation"
                          "             WHERE id = $1::bigint FOR UPDATE)"
                          " UPDATE vcl.reservation r SET state = 'pending',"
                          " stage = CASE WHEN $2::boolean THEN NULL ELSE r.stage END"
                          " FROM old WHERE r.id = old.id"
                          " AND old.state IN ('failed', 'cancelled', 'done')"
                          " RETURNING r.state, r.stage, old.state",
                          2, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot retry reservation %s", id.s);
    if (PQntuples(r) == 0) {
        PQclear(r);
        if (!reservation_state(c, id.s, state, sizeof state, &rc))
            return rc;
        if (strcmp(state, "running") == 0)
            return fail("reservation %s is running: only failed, cancelled or done reservations "
                        "can be retried (to stop it: %s cancel %s)", id.s, PROG, id.s);
        return fail("reservation %s is %s: only failed, cancelled or done reservations can be "
                    "retried", id.s, state);
    }
    char stage[64] = "", before[64];
    snprintf(state, sizeof state, "%s", PQgetvalue(r, 0, 0));
    if (!PQgetisnull(r, 0, 1))
        snprintf(stage, sizeof stage, "%s", PQgetvalue(r, 0, 1));
    snprintf(before, sizeof before, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    /* stage is the checkpoint: the last finished stage */
    if (stage[0] && strcmp(before, "done") == 0)
        note(c, "reservation %s was done: it resumes after its last finished stage (%s), so "
                "nothing may run again; --from-start reruns every stage", id.s, stage);
    else if (stage[0])
        note(c, "resumes after its last finished stage (%s); --from-start reruns every stage",
             stage);
    return print_id_state(c, id.s, state);
}

static int cmd_cancel(ctl *c, const args *a)
{
    num id;
    vcl_error e;
    char before[64];
    int rc;
    if ((rc = reservation_arg(c, a, &id, before, sizeof before)) != EXIT_OK)
        return rc;
    const char *p[1] = { id.s };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, "SELECT vcl.cancel($1::bigint)", 1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot cancel reservation %s", id.s);
    char after[64] = "";
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        snprintf(after, sizeof after, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!after[0])
        return fail("cannot cancel reservation %s: vcl.cancel returned nothing", id.s);
    if (strcmp(before, after) == 0)
        note(c, "reservation %s was already %s; nothing to cancel", id.s, before);
    return print_id_state(c, id.s, after);
}

/* ---- status ---- */

static int cmd_status(ctl *c, const args *a)
{
    const char *name = a->pos[0];
    node_status_report rep;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "computer", name)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    memset(&rep, 0, sizeof rep);
    vcl_error_clear(&e);
    transport_opts ssh = { .private_key = c->ssh_key, .known_hosts = c->known_hosts };
    if (!node_status_check_computer_opts(c->db, name, &ssh, &rep, &e)) {
        if (strstr(e.msg, "no computer") || strstr(e.msg, "unknown computer") ||
            strstr(e.msg, "not found")) {
            long long id;
            if ((rc = lookup_id(c, SQL_COMPUTER_ID, "computer", name, &id)) != EXIT_OK)
                return rc;
        }
        return fail("cannot check the status of %s: %s%s", name, e.msg,
                    e.cls == VCL_ERR_RETRYABLE ? " (temporary: try again)" : "");
    }
    if (c->json) {
        const char *p[7] = { name,       rep.status, rep.reason,      rep.node,
                             rep.domain, rep.domain_state, rep.revision };
        return print_json(c,
                          "SELECT json_build_object('computer', $1::text, 'status', $2::text,"
                          " 'reason', $3::text, 'node', nullif($4::text, ''),"
                          " 'domain', nullif($5::text, ''), 'state', nullif($6::text, ''),"
                          " 'revision', nullif($7::text, ''))",
                          7, p, "the status");
    }
    printf("%s: %s (%s)\n", name, rep.status, rep.reason);
    printf("node:     %s\n", rep.node[0] ? rep.node : "-");
    printf("domain:   %s\n", rep.domain[0] ? rep.domain : "-");
    printf("state:    %s\n", rep.domain_state[0] ? rep.domain_state : "-");
    printf("revision: %s\n", rep.revision[0] ? rep.revision : "-");
    return EXIT_OK;
}

/* ---- power, snapshot, delete, maintenance, domains ----
 *
 * What changes a computer is queued as a reservation (the worker does it,
 * staged and fenced like a load): the id is printed at once and, with
 * --wait, the outcome when the reservation ends. What only looks (power
 * status, snapshot list, domains) asks the node's libvirt directly. */

static const optspec OPTS_POWER[] = {
    { "wait", NULL, 0, "wait until the reservation ends and print its outcome" },
    { "timeout", "SECONDS", 0, "shutdown: destroy the domain if the guest has not shut down "
                               "after this long (default: the worker's shutdown_timeout_seconds)" },
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

static const optspec OPTS_SNAPSHOT[] = {
    { "wait", NULL, 0, "wait until the reservation ends and print its outcome" },
    { "description", "TEXT", 0, "create: a description stored with the snapshot" },
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

static const optspec OPTS_OP_WAIT[] = {
    { "wait", NULL, 0, "wait until the reservation ends and print its outcome" },
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

/* A growing statement text (VALUES lists of any length). Only constants and
 * $n placeholders are ever appended. */
typedef struct dstr {
    char *s;
    size_t len, cap;
    bool oom;
} dstr;

static void ds_add(dstr *d, const char *str)
{
    size_t n = strlen(str);
    if (d->oom)
        return;
    if (d->len + n + 1 > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->len + n + 1)
            cap *= 2;
        char *s = realloc(d->s, cap);
        if (!s) {
            d->oom = true;
            return;
        }
        d->s = s;
        d->cap = cap;
    }
    memcpy(d->s + d->len, str, n + 1);
    d->len += n;
}

static void ds_param(dstr *d, int n)
{
    char ph[16];
    snprintf(ph, sizeof ph, "$%d", n);
    ds_add(d, ph);
}

/* Rows gathered from libvirt, shown through PostgreSQL, so the table looks
 * like every other and the JSON is made by PostgreSQL:
 *   <select> FROM (VALUES ($k,...),...) AS t(<cols>) <tail>
 * with every value a parameter after the nfixed fixed ones ($1..). */
typedef struct vrows {
    int ncols, n, cap;
    const char **v;   /* n * ncols values (owned strings), NULL = SQL NULL */
} vrows;

static bool vrows_add(vrows *r, const char *const *vals)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        const char **v = realloc(r->v, sizeof *v * (size_t)cap * (size_t)r->ncols);
        if (!v)
            return false;
        r->v = v;
        r->cap = cap;
    }
    for (int j = 0; j < r->ncols; j++)
        r->v[r->n * r->ncols + j] = vals[j] ? strdup(vals[j]) : NULL;
    r->n++;
    return true;
}

static void vrows_free(vrows *r)
{
    for (int i = 0; i < r->n * r->ncols; i++)
        free((void *)r->v[i]);
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* json: wrap in JSON_ARRAY. Returns EXIT_*; empty_msg when there are no rows. */
static int vrows_print(ctl *c, const vrows *r, const char *select, const char *cols,
                       const char *tail, const char *const *fixed, int nfixed, const char *what,
                       const char *empty_msg)
{
    if (r->n == 0) {
        if (c->json)
            printf("[]\n");
        else if (!c->quiet)
            printf("%s\n", empty_msg);
        return EXIT_OK;
    }
    dstr d = { 0 };
    int np = nfixed + r->n * r->ncols, k = nfixed;
    const char **params = calloc((size_t)np, sizeof *params);
    if (!params)
        return fail("out of memory");
    for (int i = 0; i < nfixed; i++)
        params[i] = fixed[i];
    for (int i = 0; i < r->n * r->ncols; i++)
        params[nfixed + i] = r->v[i];
    if (c->json)
        ds_add(&d, "SELECT coalesce(json_agg(j), '[]'::json) FROM (");
    ds_add(&d, select);
    ds_add(&d, " FROM (VALUES ");
    for (int i = 0; i < r->n; i++) {
        ds_add(&d, i ? ", (" : "(");
        for (int j = 0; j < r->ncols; j++) {
            if (j)
                ds_add(&d, ", ");
            ds_param(&d, ++k);
        }
        ds_add(&d, ")");
    }
    ds_add(&d, ") AS t(");
    ds_add(&d, cols);
    ds_add(&d, ") ");
    ds_add(&d, tail);
    if (c->json)
        ds_add(&d, ") j");
    int rc;
    if (d.oom)
        rc = fail("out of memory");
    else if (c->json)
        rc = print_json(c, d.s, np, params, what);
    else
        rc = print_query_table(c, d.s, np, params, NULL, what, empty_msg);
    free(d.s);
    free(params);
    return rc;
}

/* The node's libvirt, from its row: for the commands that only look. */
static virConnectPtr open_node_libvirt(const char *node, const char *uri)
{
    vcl_error e;
    vcl_error_clear(&e);
    virConnectPtr conn = virt_open(uri, &e);
    if (!conn)
        fail("node %s: %s", node, e.msg);
    return conn;
}

/* A computer's recorded domain and its node's libvirt. *dom NULL (and
 * EXIT_OK) when none is recorded or it is gone; the caller closes *conn. */
static int computer_domain(ctl *c, const char *computer, virConnectPtr *conn, virDomainPtr *dom,
                           char *node, size_t nlen, char *recorded, size_t rlen)
{
    vcl_error e;
    const char *p[1] = { computer };
    *conn = NULL;
    *dom = NULL;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db,
                          "SELECT coalesce(c.domain_uuid::text, ''), coalesce(c.domain_name, ''),"
                          " n.name, n.libvirt_uri FROM vcl.computer c"
                          " JOIN vcl.node n ON n.id = c.node_id WHERE c.name = $1",
                          1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read computer '%s'", computer);
    if (PQntuples(r) == 0) {
        PQclear(r);
        return fail("no computer named '%s' (see: %s computer list)", computer, PROG);
    }
    const char *uuid = PQgetvalue(r, 0, 0), *name = PQgetvalue(r, 0, 1);
    snprintf(node, nlen, "%s", PQgetvalue(r, 0, 2));
    snprintf(recorded, rlen, "%s", name);
    int rc = EXIT_OK;
    if (!(*conn = open_node_libvirt(node, PQgetvalue(r, 0, 3)))) {
        rc = EXIT_FAIL;
    } else if (uuid[0] || name[0]) {
        bool found = uuid[0] ? virt_lookup_uuid(*conn, uuid, dom, &e)
                             : virt_lookup_name(*conn, name, dom, &e);
        if (!found)
            rc = fail("node %s: %s", node, e.msg);
    }
    PQclear(r);
    return rc;
}

/* on / off / suspended / crashed: what people ask of a power switch. */
static const char *power_word(int st)
{
    switch (st) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
    case VIR_DOMAIN_SHUTDOWN:
        return "on";
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
        return "suspended";
    case VIR_DOMAIN_CRASHED:
        return "crashed";
    default:
        return "off";
    }
}

static int power_status(ctl *c, const char *computer)
{
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    char node[128] = "", recorded[256] = "";
    int st = VIR_DOMAIN_SHUTOFF, reason = 0;
    int rc = computer_domain(c, computer, &conn, &dom, node, sizeof node, recorded,
                             sizeof recorded);
    if (rc == EXIT_OK && dom && virDomainGetState(dom, &st, &reason, 0) < 0) {
        vcl_error e;
        vcl_error_clear(&e);
        virt_error(&e, NULL, "reading the state of domain %s", virDomainGetName(dom));
        rc = fail("%s", e.msg);
    }
    if (rc == EXIT_OK) {
        const char *word = dom ? power_word(st) : "off";
        const char *dname = dom ? virDomainGetName(dom) : "";
        if (!dom)
            note(c, "computer %s has no domain on node %s%s%s", computer, node,
                 recorded[0] ? " (recorded: " : "", recorded[0] ? ")" : "");
        if (c->json) {
            const char *p[5] = { computer, word, dname, dom ? virt_state_name(st) : "missing",
                                 node };
            rc = print_json(c,
                            "SELECT json_build_object('computer', $1::text, 'power', $2::text,"
                            " 'domain', nullif($3::text, ''), 'state', $4::text, 'node', $5::text)",
                            5, p, "the power status");
        } else {
            printf("%s\n", word);
        }
    }
    if (dom)
        virDomainFree(dom);
    virt_close(conn);
    return rc;
}

/* The reservation's outcome, once it ends: the stage details of its last
 * lease (done), or the failing stage and error. 0 done, 1 otherwise. */
static int wait_reservation(ctl *c, long long id)
{
    char ids[32];
    snprintf(ids, sizeof ids, "%lld", id);
    const char *p[1] = { ids };
    char state[16] = "";
    bool noted = false;
    time_t start = time(NULL);
    for (;;) {
        vcl_error e;
        vcl_error_clear(&e);
        PGresult *r = db_exec(c->db,
                              "SELECT r.state, c.state FROM vcl.reservation r"
                              " JOIN vcl.computer c ON c.id = r.computer_id WHERE r.id = $1::bigint",
                              1, p, &e);
        if (!r)
            return db_fail(c, &e, "cannot read reservation %lld", id);
        if (PQntuples(r) == 0) {
            PQclear(r);
            return fail("reservation %lld vanished while waiting for it", id);
        }
        snprintf(state, sizeof state, "%s", PQgetvalue(r, 0, 0));
        bool maint = strcmp(PQgetvalue(r, 0, 1), "maintenance") == 0;
        PQclear(r);
        if (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
            strcmp(state, "cancelled") == 0)
            break;
        if (!noted && maint && strcmp(state, "pending") == 0) {
            note(c, "the computer is in maintenance: reservation %lld waits until it is "
                    "available again (%s computer set NAME --state available)", id, PROG);
            noted = true;
        } else if (!noted && time(NULL) - start >= 30) {
            note(c, "still %s after 30 s; is a worker running? (see: %s workers, %s show %lld)",
                 state, PROG, PROG, id);
            noted = true;
        }
        struct timespec ts = { 0, 200 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    int rc = strcmp(state, "done") == 0 ? EXIT_OK : EXIT_FAIL;
    if (c->json) {
        int prc = print_json(
            c,
            "SELECT json_build_object('id', r.id, 'state', r.state, 'stage', r.stage,"
            " 'failed_stage', r.failed_stage, 'error', CASE WHEN r.state <> 'done'"
            " THEN r.last_error END, 'attempts', r.attempts, 'stages',"
            " (SELECT coalesce(json_agg(json_build_object('stage', s.stage, 'outcome', s.outcome,"
            "  'detail', s.detail) ORDER BY s.id), '[]'::json) FROM vcl.reservation_stage s"
            "  WHERE s.reservation_id = r.id AND s.lease_token = r.lease_token))"
            " FROM vcl.reservation r WHERE r.id = $1::bigint",
            1, p, "the outcome");
        return prc != EXIT_OK ? prc : rc;
    }
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db,
                          "SELECT r.state, coalesce(r.failed_stage, ''), coalesce(r.last_error, ''),"
                          " r.attempts, r.max_attempts FROM vcl.reservation r"
                          " WHERE r.id = $1::bigint",
                          1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read reservation %lld", id);
    if (strcmp(state, "done") == 0)
        printf("reservation %lld done\n", id);
    else if (strcmp(state, "failed") == 0)
        printf("reservation %lld failed in stage %s (attempt %s of %s): %s\n", id,
               PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 2));
    else
        printf("reservation %lld was cancelled\n", id);
    PQclear(r);
    if (strcmp(state, "done") != 0)
        return rc;
    /* what each stage of the final run found and did */
    vcl_error_clear(&e);
    r = db_exec(c->db,
                "SELECT s.stage, coalesce(s.detail, '') FROM vcl.reservation_stage s"
                " JOIN vcl.reservation r ON r.id = s.reservation_id"
                " WHERE s.reservation_id = $1::bigint AND s.lease_token = r.lease_token"
                " ORDER BY s.id",
                1, p, &e);
    if (r) {
        for (int i = 0; i < PQntuples(r); i++) {
            printf("  %s: ", PQgetvalue(r, i, 0));
            put_clean(stdout, PQgetvalue(r, i, 1));
            fputc('\n', stdout);
        }
        PQclear(r);
    }
    return rc;
}

/* Queue an operation on a computer (args as JSON made by PostgreSQL from
 * the given pairs); with --wait, wait for the outcome. */
static int queue_op(ctl *c, const args *a, const char *computer, const char *operation,
                    const char *snapshot, const char *description, const char *timeout)
{
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "computer", computer)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    const char *p[3] = { snapshot, description, timeout };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db,
                          "SELECT jsonb_strip_nulls(jsonb_build_object('snapshot', $1::text,"
                          " 'description', $2::text, 'timeout', $3::int))::text",
                          3, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot build the arguments of %s", operation);
    char *json_args = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!json_args)
        return fail("out of memory");
    c->last_id = 0;
    rc = enqueue(c, a, computer, operation, NULL, json_args);
    free(json_args);
    if (rc != EXIT_OK || !opt_flag(a, "wait") || !c->last_id)
        return rc;
    fflush(stdout);
    return wait_reservation(c, c->last_id);
}

static int cmd_power(ctl *c, const args *a)
{
    static const char *const ACTIONS[] = { "on", "off", "reset", "shutdown", "status", NULL };
    static const char *const OPS[] = { "power_on", "power_off", "power_reset", "shutdown" };
    const char *computer = a->pos[0], *action = a->pos[1], *timeout = opt_str(a, "timeout");
    char list[128];
    num t;
    int rc;
    if (!one_of(action, ACTIONS))
        return usage_error(c, "unknown power action '%s' (one of %s)", action,
                           words_join(ACTIONS, list, sizeof list));
    if ((rc = opt_num(c, a, "timeout", 1, 3600, &t)) != EXIT_OK)
        return rc;
    if (timeout && strcmp(action, "shutdown") != 0)
        return usage_error(c, "--timeout goes with shutdown only");
    if (strcmp(action, "status") == 0) {
        if (opt_flag(a, "wait"))
            return usage_error(c, "status queues nothing: --wait does not apply");
        if ((rc = check_name(c, "computer", computer)) != EXIT_OK)
            return rc;
        if (!ctl_db(c))
            return EXIT_FAIL;
        return power_status(c, computer);
    }
    int k = 0;
    while (strcmp(ACTIONS[k], action) != 0)
        k++;
    return queue_op(c, a, computer, OPS[k], NULL, NULL, t.set ? t.s : NULL);
}

/* The text of <child> of the root element ("" when absent). */
static void xml_child_text(xmlNodePtr root, const char *child, char *out, size_t size)
{
    out[0] = '\0';
    for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE || xmlStrcmp(n->name, BAD_CAST child) != 0)
            continue;
        xmlChar *v = xmlNodeGetContent(n);
        snprintf(out, size, "%s", v ? (const char *)v : "");
        xmlFree(v);
        return;
    }
}

static int snapshot_list(ctl *c, const char *computer)
{
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    virDomainSnapshotPtr *snaps = NULL;
    char node[128] = "", recorded[256] = "";
    vrows rows = { .ncols = 5 };
    int n = 0;
    int rc = computer_domain(c, computer, &conn, &dom, node, sizeof node, recorded,
                             sizeof recorded);
    if (rc != EXIT_OK)
        goto cleanup;
    if (!dom) {
        rc = fail("computer %s has no loaded domain on node %s, so no snapshots", computer, node);
        goto cleanup;
    }
    if ((n = virDomainListAllSnapshots(dom, &snaps, 0)) < 0) {
        vcl_error e;
        vcl_error_clear(&e);
        virt_error(&e, NULL, "listing the snapshots of domain %s", virDomainGetName(dom));
        rc = fail("%s", e.msg);
        n = 0;
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        char *xml = virDomainSnapshotGetXMLDesc(snaps[i], 0);
        char created[32] = "", state[32] = "", desc[1024] = "";
        xmlDocPtr doc = xml ? xmlReadMemory(xml, (int)strlen(xml), "snapshot.xml", NULL,
                                            XML_PARSE_NONET)
                            : NULL;
        if (doc) {
            xmlNodePtr root = xmlDocGetRootElement(doc);
            xml_child_text(root, "creationTime", created, sizeof created);
            xml_child_text(root, "state", state, sizeof state);
            xml_child_text(root, "description", desc, sizeof desc);
            xmlFreeDoc(doc);
        }
        free(xml);
        int cur = virDomainSnapshotIsCurrent(snaps[i], 0);
        const char *vals[5] = { virDomainSnapshotGetName(snaps[i]), created[0] ? created : NULL,
                                state[0] ? state : NULL, cur == 1 ? "true" : "false",
                                desc[0] ? desc : NULL };
        if (!vrows_add(&rows, vals)) {
            rc = fail("out of memory");
            goto cleanup;
        }
    }
    char empty[512];
    snprintf(empty, sizeof empty, "no snapshots of %s (make one: %s snapshot %s create NAME)",
             virDomainGetName(dom), PROG, computer);
    rc = vrows_print(c, &rows,
                     c->json ? "SELECT t.name, to_timestamp(t.created::bigint) AS created, t.state,"
                               " t.cur::boolean AS current, t.description"
                             : "SELECT t.name, to_char(to_timestamp(t.created::bigint),"
                               " 'YYYY-MM-DD HH24:MI:SS') AS created, t.state,"
                               " CASE WHEN t.cur::boolean THEN '*' ELSE '' END AS current,"
                               " t.description",
                     "name, created, state, cur, description",
                     "ORDER BY t.created::bigint NULLS FIRST, t.name", NULL, 0, "snapshots",
                     empty);
cleanup:
    for (int i = 0; i < n; i++)
        virDomainSnapshotFree(snaps[i]);
    free(snaps);
    vrows_free(&rows);
    if (dom)
        virDomainFree(dom);
    virt_close(conn);
    return rc;
}

static int cmd_snapshot(ctl *c, const args *a)
{
    static const char *const ACTIONS[] = { "list", "create", "delete", "revert", NULL };
    static const char *const OPS[] = { NULL, "snapshot_create", "snapshot_delete",
                                       "snapshot_revert" };
    const char *computer = a->pos[0], *action = a->pos[1], *name = a->npos > 2 ? a->pos[2] : NULL;
    const char *desc = opt_str(a, "description");
    char list[128];
    int rc;
    if (!one_of(action, ACTIONS))
        return usage_error(c, "unknown snapshot action '%s' (one of %s)", action,
                           words_join(ACTIONS, list, sizeof list));
    if (strcmp(action, "list") == 0) {
        if (name)
            return usage_error(c, "list takes no NAME");
        if (desc || opt_flag(a, "wait"))
            return usage_error(c, "list queues nothing: --description and --wait do not apply");
        if ((rc = check_name(c, "computer", computer)) != EXIT_OK)
            return rc;
        if (!ctl_db(c))
            return EXIT_FAIL;
        return snapshot_list(c, computer);
    }
    if (!name)
        return usage_error(c, "%s needs the snapshot NAME", action);
    if ((rc = check_name(c, "snapshot", name)) != EXIT_OK)
        return rc;
    if (desc && strcmp(action, "create") != 0)
        return usage_error(c, "--description goes with create only");
    if ((rc = check_text(c, "--description", desc, 500)) != EXIT_OK)
        return rc;
    int k = 0;
    while (strcmp(ACTIONS[k], action) != 0)
        k++;
    return queue_op(c, a, computer, OPS[k], name, desc, NULL);
}

static int cmd_delete(ctl *c, const args *a)
{
    return queue_op(c, a, a->pos[0], "delete", NULL, NULL, NULL);
}

static int cmd_maintenance(ctl *c, const args *a)
{
    return queue_op(c, a, a->pos[0], "maintenance", NULL, NULL, NULL);
}

/* ---- node check ---- */

static const optspec OPTS_NODE_CHECK[] = {
    { "config", "FILE", 0, "the worker's config file: drivers_dir, driver_order, qemu_emulator "
                           "and, unless --ssh-key/--known-hosts say otherwise, its ssh key and "
                           "known_hosts" },
    { NULL, NULL, 0, NULL },
};

/* Node-originated text reaches a terminal: no control characters. */
static void printable(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

#define NODE_CHECK_ROWS                                                                    \
    "SELECT t.item, t.ok::boolean AS ok, t.detail, nullif(t.fix, '') AS fix"              \
    " FROM unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f'),"          \
    "             string_to_array($3, E'\\x1f'), string_to_array($4, E'\\x1f'))"          \
    "      WITH ORDINALITY AS t(item, ok, detail, fix, ord) ORDER BY t.ord"

/* Everything a load needs from the node, through its real transport and
 * libvirt (nodecheck.h); the CPU probe's result is recorded on the node row
 * (what auto resolves to, and why the other modes were rejected). */
static int cmd_node_check(ctl *c, const args *a)
{
    const char *name = a->pos[0], *cfg_path = opt_str(a, "config");
    vcl_config cfg;
    hvdriver_set *drivers = NULL;
    PGresult *r = NULL;
    vcl_error e;
    int rc;

    if ((rc = check_name(c, "node", name)) != EXIT_OK)
        return rc;
    config_defaults(&cfg);
    vcl_error_clear(&e);
    if (cfg_path && (!config_load(&cfg, cfg_path, &e) || !config_validate(&cfg, &e))) {
        config_clear(&cfg);
        return fail("%s", e.msg);
    }
    if (!ctl_db(c)) {
        config_clear(&cfg);
        return EXIT_FAIL;
    }
    const char *p1[1] = { name };
    if (!(r = db_exec(c->db,
                      "SELECT id, libvirt_uri, transport, coalesce(ssh_host, ''), coalesce(ssh_port, 22),"
                      " coalesce(ssh_user, ''), master_image_dir, cow_dir, xml_dir, cpu_mode"
                      " FROM vcl.node WHERE name = $1", 1, p1, &e))) {
        config_clear(&cfg);
        return db_fail(c, &e, "cannot read node '%s'", name);
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        config_clear(&cfg);
        return fail("no node named '%s' (see: %s node list)", name, PROG);
    }
    vcl_error_clear(&e);
    if (!hvdriver_load_all(cfg.drivers_dir, cfg.driver_order, cfg.n_driver_order, &drivers, &e))
        note(c, "no hypervisor drivers: %s", e.msg);
    transport_opts to = {
        .host = PQgetvalue(r, 0, 3), .port = atoi(PQgetvalue(r, 0, 4)),
        .user = PQgetvalue(r, 0, 5)[0] ? PQgetvalue(r, 0, 5) : NULL,
        .private_key = c->ssh_key ? c->ssh_key : cfg.ssh_private_key,
        .known_hosts = c->known_hosts ? c->known_hosts : cfg.ssh_known_hosts,
    };
    node_check_target t = {
        .name = name, .libvirt_uri = PQgetvalue(r, 0, 1), .transport = PQgetvalue(r, 0, 2),
        .topts = &to, .master_dir = PQgetvalue(r, 0, 6), .cow_dir = PQgetvalue(r, 0, 7),
        .xml_dir = PQgetvalue(r, 0, 8), .cpu_mode = PQgetvalue(r, 0, 9), .drivers = drivers,
        .emulator = cfg.qemu_emulator && cfg.qemu_emulator[0] ? cfg.qemu_emulator : NULL,
    };
    node_check_report *rep = calloc(1, sizeof *rep);
    if (!rep) {
        rc = fail("out of memory");
        goto cleanup;
    }
    node_check_run(&t, rep);

    if (rep->cpu_probed) {
        char report[1024];
        cpu_probe_report(&rep->cpu, report, sizeof report);
        printable(report);
        const char *pp[3] = { PQgetvalue(r, 0, 0), rep->cpu.chosen, report };
        vcl_error_clear(&e);
        if (!db_run(c->db,
                    "UPDATE vcl.node SET cpu_probe = $3, cpu_probed_at = now(),"
                    " cpu_mode_resolved = CASE WHEN cpu_mode = 'auto' THEN nullif($2, '')"
                    " ELSE cpu_mode_resolved END WHERE id = $1::bigint", 3, pp, &e))
            note(c, "could not record the CPU probe on node %s: %s", name, db_msg(&e));
    }

    if (c->json) {
        size_t cap = (size_t)rep->n * (sizeof rep->items[0].detail + sizeof rep->items[0].fix + 64);
        char *cols[4];
        size_t off[4] = { 0 };
        for (int k = 0; k < 4; k++)
            cols[k] = calloc(1, cap);
        for (int i = 0; i < rep->n && cols[0] && cols[1] && cols[2] && cols[3]; i++) {
            node_check_item *it = &rep->items[i];
            printable(it->detail);
            printable(it->fix);
            const char *v[4] = { it->item, it->ok ? "true" : "false", it->detail, it->fix };
            for (int k = 0; k < 4; k++)
                off[k] += (size_t)snprintf(cols[k] + off[k], cap - off[k], "%s%s", i ? "\x1f" : "", v[k]);
        }
        const char *pp[4] = { cols[0], cols[1], cols[2], cols[3] };
        rc = cols[0] && cols[1] && cols[2] && cols[3]
                 ? print_json(c, JSON_ARRAY(NODE_CHECK_ROWS), 4, pp, "the check")
                 : fail("out of memory");
        for (int k = 0; k < 4; k++)
            free(cols[k]);
        if (rc == EXIT_OK && rep->failed)
            rc = EXIT_FAIL;
        goto cleanup;
    }
    printf("node %s: %s (%s), cpu_mode %s\n", name, t.libvirt_uri, t.transport, t.cpu_mode);
    for (int i = 0; i < rep->n; i++) {
        node_check_item *it = &rep->items[i];
        printable(it->detail);
        printable(it->fix);
        printf("  %-4s  %-11s %s\n", it->ok ? "ok" : "FAIL", it->item, it->detail);
        if (!it->ok && it->fix[0])
            printf("        %-11s fix: %s\n", "", it->fix);
    }
    if (rep->failed)
        printf("%s: %d of %d checks failed\n", name, rep->failed, rep->n);
    else
        printf("%s: all %d checks passed; loads use CPU mode %s\n", name, rep->n, rep->cpu_use);
    rc = rep->failed ? EXIT_FAIL : EXIT_OK;

cleanup:
    free(rep);
    PQclear(r);
    hvdriver_set_free(drivers);
    config_clear(&cfg);
    return rc;
}

/* Every domain on a node, with its state and the computer that owns it
 * (by the <metadata> the worker writes, or by the UUID a computer row
 * records). A domain no computer of this node owns is a stranger. */
static int cmd_domains(ctl *c, const args *a)
{
    const char *node = a->pos[0];
    virConnectPtr conn = NULL;
    virDomainPtr *doms = NULL;
    vrows rows = { .ncols = 4 };
    int n = 0, rc;
    char node_ids[32];
    if ((rc = check_name(c, "node", node)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    vcl_error e;
    const char *p[1] = { node };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, "SELECT id, libvirt_uri FROM vcl.node WHERE name = $1", 1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read node '%s'", node);
    if (PQntuples(r) == 0) {
        PQclear(r);
        return fail("no node named '%s' (see: %s node list)", node, PROG);
    }
    snprintf(node_ids, sizeof node_ids, "%s", PQgetvalue(r, 0, 0));
    conn = open_node_libvirt(node, PQgetvalue(r, 0, 1));
    PQclear(r);
    if (!conn)
        return EXIT_FAIL;
    if ((n = virConnectListAllDomains(conn, &doms, 0)) < 0) {
        vcl_error_clear(&e);
        virt_error(&e, NULL, "listing the domains of node %s", node);
        rc = fail("%s", e.msg);
        n = 0;
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        char uuid[VIR_UUID_STRING_BUFLEN] = "";
        int st = 0, reason = 0;
        domxml_owner o;
        memset(&o, 0, sizeof o);
        virDomainGetUUIDString(doms[i], uuid);
        const char *state = virDomainGetState(doms[i], &st, &reason, 0) == 0 ? virt_state_name(st)
                                                                            : "unknown";
        char *xml = virDomainGetXMLDesc(doms[i], 0);
        bool owned = xml && domxml_read_owner(xml, &o);
        free(xml);
        const char *vals[4] = { virDomainGetName(doms[i]), uuid, state, owned ? o.computer : NULL };
        if (!vrows_add(&rows, vals)) {
            rc = fail("out of memory");
            goto cleanup;
        }
    }
    const char *fixed[1] = { node_ids };
    char empty[256];
    snprintf(empty, sizeof empty, "no domains on node %s", node);
    /* note: the domain the owner records now; a leftover an old load left
     * (the next load of that computer removes it); a stranger. */
    rc = vrows_print(
        c, &rows,
        c->json ? "SELECT t.domain, t.uuid, t.state, t.owner, c.name AS computer,"
                  " CASE WHEN c.id IS NULL THEN 'stranger'"
                  " WHEN c.domain_uuid::text = t.uuid THEN 'current' ELSE 'leftover' END AS note"
                : "SELECT t.domain, t.state, coalesce(c.name, t.owner) AS owner,"
                  " CASE WHEN c.id IS NULL THEN 'stranger'"
                  " WHEN c.domain_uuid::text = t.uuid THEN '' ELSE 'leftover' END AS note",
        "domain, uuid, state, owner",
        "LEFT JOIN LATERAL (SELECT c.id, c.name, c.domain_uuid FROM vcl.computer c"
        " WHERE c.node_id = $1::bigint AND (c.domain_uuid::text = t.uuid OR c.name = t.owner)"
        " ORDER BY c.domain_uuid::text = t.uuid DESC LIMIT 1) c ON true ORDER BY t.domain",
        fixed, 1, "domains", empty);
cleanup:
    for (int i = 0; i < n; i++)
        virDomainFree(doms[i]);
    free(doms);
    vrows_free(&rows);
    virt_close(conn);
    return rc;
}

/* ---- workers ---- */

static const optspec OPTS_WORKERS[] = {
    { "all", NULL, 0, "also workers stopped (or silent) for more than a day" },
    { NULL, NULL, 0, NULL },
};

#define WORKER_ROWS                                                                        \
    "SELECT w.id, w.name, w.host, w.pid, w.slots, w.version, w.started_at,"                \
    " w.heartbeat_at, w.stopped_at,"                                                       \
    " extract(epoch FROM now() - w.heartbeat_at)::bigint AS heartbeat_age_s,"              \
    " (SELECT count(*) FROM vcl.reservation r"                                             \
    "  WHERE r.worker_id = w.id AND r.state = 'running') AS running"                       \
    " FROM vcl.worker w"                                                                   \
    " WHERE $1::boolean OR coalesce(w.stopped_at, w.heartbeat_at) > now() - interval '1 day'" \
    " ORDER BY w.stopped_at IS NOT NULL, w.name, w.started_at DESC"

static const colfmt WORKER_FMTS[] = { { "heartbeat", fmt_age_s }, { NULL, NULL } };

static int cmd_workers(ctl *c, const args *a)
{
    const char *p[1] = { opt_flag(a, "all") ? "true" : "false" };
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(c, JSON_ARRAY(WORKER_ROWS), 1, p, "workers");
    return print_query_table(
        c,
        "SELECT name, host, pid, slots, running, version,"
        " to_char(started_at, 'YYYY-MM-DD HH24:MI:SS') AS started,"
        " heartbeat_age_s AS heartbeat,"
        " CASE WHEN stopped_at IS NOT NULL THEN 'stopped '"
        "   || to_char(stopped_at, 'YYYY-MM-DD HH24:MI:SS')"
        "   WHEN heartbeat_age_s > 60 THEN 'silent' ELSE 'running' END AS status"
        " FROM (" WORKER_ROWS ") t",
        1, p, WORKER_FMTS, "workers", "no workers have registered");
}

/* ---- show --follow, top: live views ---- */

/* One row of a reservation's stage log as the live view reads it. */
typedef struct follow_row {
    long long id;
    char stage[64];
    char outcome[16];
    long long lease;
    double started;        /* epoch seconds */
    double elapsed_ms;     /* duration, or so far while running */
    char detail[1024];
    char printed[16];      /* line mode: the outcome last printed ("" = none) */
    double detail_at;      /* line mode: when its detail was last printed */
    char detail_printed[1024];
} follow_row;

typedef struct follow {
    long long id;
    char ids[32];
    const op_def *op;
    char state[16], operation[32], checkpoint[64], last_error[1024], failed_stage[64];
    char computer[128], node[128], worker[128];
    long long lease;
    int attempts, max_attempts;
    double now, run_at, elapsed_s;   /* elapsed_s: since the first claim (or to finish) */
    follow_row *rows;
    size_t nrows, cap;
    /* estimates, in the operation's stage order (0 = unknown) */
    double est_ms[64];
    char est_src[64][12];
    bool est_read;                   /* estimates read ... */
    long long est_lease;             /* ... under this lease */
    bool est_failed;                 /* vcl.reservation_estimates missing (schema not migrated) */
    char printed_state[1400];        /* line mode: last reservation state line */
    int tty_lines;                   /* tty mode: lines drawn by the last frame */
} follow;

static double epoch_cell(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : atof(PQgetvalue(r, row, col));
}

static void copy_cell(char *dst, size_t n, const PGresult *r, int row, int col)
{
    snprintf(dst, n, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static follow_row *follow_find_row(follow *f, long long id)
{
    for (size_t i = 0; i < f->nrows; i++)
        if (f->rows[i].id == id)
            return &f->rows[i];
    return NULL;
}

/* Read the reservation and its stage log. false + message on error. */
static bool follow_poll(ctl *c, follow *f, int *rc)
{
    vcl_error e;
    const char *p[1] = { f->ids };
    vcl_error_clear(&e);
    PGresult *r = db_exec(
        c->db,
        "SELECT r.state, r.operation, coalesce(r.stage, ''), coalesce(r.lease_token, 0),"
        " coalesce(r.last_error, ''), coalesce(r.failed_stage, ''), c.name, n.name,"
        " coalesce(w.name, ''), r.attempts, r.max_attempts,"
        " extract(epoch FROM clock_timestamp()), extract(epoch FROM r.run_at),"
        " extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at)"
        " FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id"
        " JOIN vcl.node n ON n.id = c.node_id LEFT JOIN vcl.worker w ON w.id = r.worker_id"
        " WHERE r.id = $1::bigint",
        1, p, &e);
    if (!r) {
        *rc = db_fail(c, &e, "cannot read reservation %s", f->ids);
        return false;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        *rc = fail("reservation %s is gone (deleted while following it)", f->ids);
        return false;
    }
    copy_cell(f->state, sizeof f->state, r, 0, 0);
    copy_cell(f->operation, sizeof f->operation, r, 0, 1);
    copy_cell(f->checkpoint, sizeof f->checkpoint, r, 0, 2);
    f->lease = atoll(PQgetvalue(r, 0, 3));
    copy_cell(f->last_error, sizeof f->last_error, r, 0, 4);
    copy_cell(f->failed_stage, sizeof f->failed_stage, r, 0, 5);
    copy_cell(f->computer, sizeof f->computer, r, 0, 6);
    copy_cell(f->node, sizeof f->node, r, 0, 7);
    copy_cell(f->worker, sizeof f->worker, r, 0, 8);
    f->attempts = atoi(PQgetvalue(r, 0, 9));
    f->max_attempts = atoi(PQgetvalue(r, 0, 10));
    f->now = epoch_cell(r, 0, 11);
    f->run_at = epoch_cell(r, 0, 12);
    f->elapsed_s = PQgetisnull(r, 0, 13) ? -1 : atof(PQgetvalue(r, 0, 13));
    PQclear(r);
    f->op = ops_find(f->operation);

    vcl_error_clear(&e);
    r = db_exec(c->db,
                "SELECT s.id, s.stage, s.outcome, coalesce(s.lease_token, 0),"
                " extract(epoch FROM s.started_at),"
                " coalesce(s.duration_ms, extract(epoch FROM clock_timestamp() - s.started_at) * 1000),"
                " coalesce(s.detail, '')"
                " FROM vcl.reservation_stage s WHERE s.reservation_id = $1::bigint ORDER BY s.id",
                1, p, &e);
    if (!r) {
        *rc = db_fail(c, &e, "cannot read the stage log of reservation %s", f->ids);
        return false;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        long long id = atoll(PQgetvalue(r, i, 0));
        follow_row *w = follow_find_row(f, id);
        if (!w) {
            if (f->nrows == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 32;
                follow_row *n = realloc(f->rows, cap * sizeof *n);
                if (!n) {
                    PQclear(r);
                    *rc = fail("out of memory");
                    return false;
                }
                f->rows = n;
                f->cap = cap;
            }
            w = &f->rows[f->nrows++];
            memset(w, 0, sizeof *w);
            w->id = id;
        }
        copy_cell(w->stage, sizeof w->stage, r, i, 1);
        copy_cell(w->outcome, sizeof w->outcome, r, i, 2);
        w->lease = atoll(PQgetvalue(r, i, 3));
        w->started = epoch_cell(r, i, 4);
        w->elapsed_ms = epoch_cell(r, i, 5);
        copy_cell(w->detail, sizeof w->detail, r, i, 6);
    }
    PQclear(r);
    return true;
}

static int follow_stage_index(const follow *f, const char *stage)
{
    for (int i = 0; f->op && f->op->stages[i].name && i < 64; i++)
        if (strcmp(f->op->stages[i].name, stage) == 0)
            return i;
    return -1;
}

/* Estimates for every stage of the operation: read once, and again when a
 * new attempt starts (a new lease). Not after each stage: then the job's
 * own finished stages would become its own "history" on a node with none. */
static void follow_estimates(ctl *c, follow *f)
{
    if (!f->op || f->est_failed || (f->est_read && f->est_lease == f->lease))
        return;
    f->est_read = true;
    f->est_lease = f->lease;
    char stages[2048] = "{";
    size_t len = 1;
    for (int i = 0; f->op->stages[i].name && i < 64; i++) {
        int w = snprintf(stages + len, sizeof stages - len, "%s%s", i ? "," : "",
                         f->op->stages[i].name);
        len = w > 0 && (size_t)w < sizeof stages - len ? len + (size_t)w : len;
    }
    snprintf(stages + len, sizeof stages - len, "}");
    const char *p[2] = { f->ids, stages };
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db,
                          "SELECT ord, estimate_ms, source FROM vcl.reservation_estimates($1::bigint,"
                          " $2::text[])",
                          2, p, &e);
    if (!r) {
        f->est_failed = true;
        note(c, "no stage estimates (%s); is the schema current? run: %s migrate", db_msg(&e),
             PROG);
        return;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        int k = atoi(PQgetvalue(r, i, 0)) - 1;
        if (k < 0 || k >= 64)
            continue;
        f->est_ms[k] = atof(PQgetvalue(r, i, 1));
        copy_cell(f->est_src[k], sizeof f->est_src[k], r, i, 2);
    }
    PQclear(r);
}

static bool follow_ended(const follow *f)
{
    return strcmp(f->state, "done") == 0 || strcmp(f->state, "failed") == 0 ||
           strcmp(f->state, "cancelled") == 0;
}

/* The live state of each stage of the operation (see show --follow). */
static size_t follow_stages(const follow *f, progress_stage *st, const follow_row **rows,
                            size_t max)
{
    size_t n = 0;
    if (!f->op)
        return 0;
    int ci = stage_resume_index(f->op, f->checkpoint);
    if (ci < 0)
        ci = 0;
    for (; f->op->stages[n].name && n < max; n++) {
        const char *name = f->op->stages[n].name;
        const follow_row *last = NULL, *last_ok = NULL;
        for (size_t i = 0; i < f->nrows; i++) {
            if (strcmp(f->rows[i].stage, name) != 0)
                continue;
            last = &f->rows[i];
            if (strcmp(last->outcome, "ok") == 0)
                last_ok = last;
        }
        st[n].estimate_ms = f->est_ms[n];
        st[n].elapsed_ms = 0;
        st[n].state = PROGRESS_WAITING;
        rows[n] = last;
        if ((int)n < ci || strcmp(f->state, "done") == 0 ||
            (last && strcmp(last->outcome, "ok") == 0 && last->lease == f->lease)) {
            st[n].state = PROGRESS_DONE;
            st[n].elapsed_ms = last_ok ? last_ok->elapsed_ms : 0;
            rows[n] = last_ok;
        } else if (last && strcmp(last->outcome, "running") == 0 && last->lease == f->lease &&
                   strcmp(f->state, "running") == 0) {
            st[n].state = PROGRESS_RUNNING;
            st[n].elapsed_ms = last->elapsed_ms;
        } else if (last && last->lease == f->lease &&
                   (strcmp(last->outcome, "failed") == 0 ||
                    strcmp(last->outcome, "abandoned") == 0)) {
            st[n].state = PROGRESS_FAILED;
            st[n].elapsed_ms = last->elapsed_ms;
        }
    }
    return n;
}

static void fmt_clock(double epoch, char *out, size_t size)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, size, "%H:%M:%S", &tm);
}

static void fmt_ms(double ms, char *out, size_t size)
{
    progress_fmt_duration(ms / 1000.0, out, size);
}

/* What the reservation as a whole is doing, in one line. */
static void follow_state_line(const follow *f, char *out, size_t size)
{
    char t[32];
    if (strcmp(f->state, "running") == 0)
        snprintf(out, size, "running on worker %s (attempt %d of %d)", f->worker[0] ? f->worker : "?",
                 f->attempts, f->max_attempts);
    else if (strcmp(f->state, "pending") == 0 && f->attempts > 0) {
        fmt_clock(f->run_at, t, sizeof t);
        snprintf(out, size, "pending: attempt %d of %d failed%s%s, retry at %s", f->attempts,
                 f->max_attempts, f->failed_stage[0] ? " in stage " : "", f->failed_stage, t);
    } else if (strcmp(f->state, "pending") == 0) {
        if (f->run_at > f->now + 1) {
            fmt_clock(f->run_at, t, sizeof t);
            snprintf(out, size, "pending (runs at %s)", t);
        } else
            snprintf(out, size, "pending (waiting for a worker)");
    } else if (strcmp(f->state, "done") == 0) {
        progress_fmt_duration(f->elapsed_s, t, sizeof t);
        snprintf(out, size, "done in %s", t);
    } else if (strcmp(f->state, "failed") == 0)
        snprintf(out, size, "failed in stage %s (attempt %d of %d): %s",
                 f->failed_stage[0] ? f->failed_stage : "?", f->attempts, f->max_attempts,
                 f->last_error);
    else
        snprintf(out, size, "%s", f->state);
}

/* Line mode (stdout not a terminal): one line per change, in order. */
static void follow_print_state(follow *f, const char *tag)
{
    char t[32], line[1400];
    follow_state_line(f, line, sizeof line);
    if (strcmp(line, f->printed_state) == 0)
        return;
    fmt_clock(f->now, t, sizeof t);
    printf("%s %s ", t, tag);
    put_clean(stdout, line);
    fputc('\n', stdout);
    snprintf(f->printed_state, sizeof f->printed_state, "%s", line);
}

static void follow_print_lines(follow *f)
{
    char tag[64], t[32], a[32], b[32], line[1400];
    snprintf(tag, sizeof tag, "%s#%lld", f->operation, f->id);
    /* a new state first (running on ...), the end after the last stage */
    if (!follow_ended(f))
        follow_print_state(f, tag);
    for (size_t i = 0; i < f->nrows; i++) {
        follow_row *w = &f->rows[i];
        int k = follow_stage_index(f, w->stage);
        double est = k >= 0 ? f->est_ms[k] : 0;
        fmt_ms(est, b, sizeof b);
        if (!w->printed[0]) {
            fmt_clock(w->started, t, sizeof t);
            printf("%s %s stage %s started (est %s)\n", t, tag, w->stage, b);
            snprintf(w->printed, sizeof w->printed, "running");
            w->detail_at = f->now;
        }
        if (strcmp(w->outcome, "running") == 0 && w->detail[0] &&
            strcmp(w->detail, w->detail_printed) != 0 && f->now - w->detail_at >= 2.0) {
            fmt_clock(f->now, t, sizeof t);
            printf("%s %s stage %s: ", t, tag, w->stage);
            put_clean(stdout, w->detail);
            fputc('\n', stdout);
            snprintf(w->detail_printed, sizeof w->detail_printed, "%s", w->detail);
            w->detail_at = f->now;
        }
        if (strcmp(w->outcome, "running") != 0 && strcmp(w->printed, w->outcome) != 0) {
            fmt_clock(w->started + w->elapsed_ms / 1000.0, t, sizeof t);
            fmt_ms(w->elapsed_ms, a, sizeof a);
            if (strcmp(w->outcome, "ok") == 0)
                snprintf(line, sizeof line, "%s %s stage %s done in %s (est %s)", t, tag, w->stage,
                         a, b);
            else
                snprintf(line, sizeof line, "%s %s stage %s %s after %s: %s", t, tag, w->stage,
                         w->outcome, a, w->detail[0] ? w->detail : "(no detail)");
            put_clean(stdout, line);
            fputc('\n', stdout);
            snprintf(w->printed, sizeof w->printed, "%s", w->outcome);
        }
    }
    if (follow_ended(f))
        follow_print_state(f, tag);
    fflush(stdout);
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* Write a frame's text: each line cut to the terminal's width (so the
 * cursor moves stay right) and cleared to its end. Returns lines written. */
static int put_frame(const char *text, int width)
{
    int lines = 0, col = 0;
    for (const char *s = text; *s; s++) {
        if (*s == '\n') {
            fputs("\033[K\n", stdout);
            lines++;
            col = 0;
            continue;
        }
        if (((unsigned char)*s & 0xC0) != 0x80)
            col++;
        if (col < width)
            fputc(((unsigned char)*s < 0x20 && *s != '\033') ? ' ' : *s, stdout);
    }
    return lines;
}

/* Terminal mode: the whole view redrawn in place. */
static void follow_draw(follow *f)
{
    progress_stage st[64];
    const follow_row *rows[64];
    size_t n = follow_stages(f, st, rows, 64);
    double done_ms, total_ms, eta_s;
    double frac = progress_overall(st, n, &done_ms, &total_ms, &eta_s);
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return;
    char bar[64], a[32], b[32], c[32], line[1400];
    follow_state_line(f, line, sizeof line);
    fprintf(m, "reservation %lld: %s of %s on node %s: %s\n", f->id, f->operation, f->computer,
            f->node, line);
    if (strcmp(f->state, "done") == 0)
        frac = 1, eta_s = 0;
    progress_fmt_bar(frac, 30, bar, sizeof bar);
    fmt_ms(done_ms, a, sizeof a);
    fmt_ms(total_ms, b, sizeof b);
    progress_fmt_duration(eta_s, c, sizeof c);
    fprintf(m, "%s %3d%%  %s of about %s", bar, (int)(frac * 100), a, b);
    if (!follow_ended(f))
        fprintf(m, ", ETA %s", c);
    fputc('\n', m);
    if (!f->op)
        fprintf(m, "  (operation %s is unknown to this vclctl: no stage list)\n", f->operation);
    for (size_t i = 0; i < n; i++) {
        const char *name = f->op->stages[i].name;
        if (st[i].state == PROGRESS_WAITING)
            snprintf(a, sizeof a, "-");
        else
            fmt_ms(st[i].elapsed_ms, a, sizeof a);
        fmt_ms(st[i].estimate_ms, b, sizeof b);
        fprintf(m, "  %-8s %-16s %8s  est %s", progress_state_name(st[i].state), name, a, b);
        if ((st[i].state == PROGRESS_RUNNING || st[i].state == PROGRESS_FAILED) && rows[i] &&
            rows[i]->detail[0])
            fprintf(m, "%*s%s", 9 - (int)strlen(b), "", rows[i]->detail);
        fputc('\n', m);
    }
    if (strcmp(f->state, "failed") == 0)
        fprintf(m, "error: %s\n", f->last_error[0] ? f->last_error : "(no message recorded)");
    fclose(m);
    if (f->tty_lines > 0)
        printf("\033[%dA\r", f->tty_lines);
    int drawn = put_frame(text, term_width());
    /* a shorter frame than the last one: clear what is left below */
    for (int i = drawn; i < f->tty_lines; i++)
        fputs("\033[K\n", stdout);
    if (f->tty_lines > drawn)
        printf("\033[%dA", f->tty_lines - drawn);
    f->tty_lines = drawn;
    fflush(stdout);
    free(text);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* show ID --follow: redraw (terminal) or print changes (otherwise) until
 * the reservation ends; 0 when it ends done, 1 failed or cancelled. */
static int show_follow(ctl *c, long long id)
{
    follow f;
    int rc = EXIT_OK;
    bool tty = isatty(STDOUT_FILENO);
    memset(&f, 0, sizeof f);
    f.id = id;
    snprintf(f.ids, sizeof f.ids, "%lld", id);
    for (;;) {
        if (!follow_poll(c, &f, &rc))
            break;
        follow_estimates(c, &f);
        if (tty)
            follow_draw(&f);
        else
            follow_print_lines(&f);
        if (follow_ended(&f)) {
            rc = strcmp(f.state, "done") == 0 ? EXIT_OK : EXIT_FAIL;
            break;
        }
        sleep_ms(500);
    }
    free(f.rows);
    return rc;
}

/* ---- top ---- */

static const optspec OPTS_TOP[] = {
    { "once", NULL, 0, "print one screen and exit (also when stdout is not a terminal)" },
    { "interval", "SECONDS", 0, "seconds between refreshes (default 2)" },
    { NULL, NULL, 0, NULL },
};

static void fmt_secs(const char *in, char *out, size_t size)
{
    progress_fmt_duration(atof(in), out, size);
}

static const colfmt TOP_FMTS[] = {
    { "heartbeat", fmt_age_s }, { "oldest_pending", fmt_secs }, { "stage_age", fmt_secs },
    { "age", fmt_secs }, { NULL, NULL },
};

/* One screen of `top` into m; false + message on a database error. */
static bool top_screen(ctl *c, FILE *m, int *rc)
{
    static const struct {
        const char *title, *sql, *empty;
    } parts[] = {
        { "workers",
          "SELECT w.name, w.host, w.pid, w.slots, w.running AS jobs,"
          " extract(epoch FROM w.since_heartbeat)::bigint AS heartbeat,"
          " CASE WHEN w.since_heartbeat > interval '60 seconds' THEN 'silent' ELSE 'running' END"
          "   AS status"
          " FROM vcl.workers w ORDER BY w.name, w.id",
          "(no worker running)" },
        { "queue (pending and running, per operation and node)",
          "SELECT r.operation, n.name AS node,"
          " count(*) FILTER (WHERE r.state = 'pending') AS pending,"
          " count(*) FILTER (WHERE r.state = 'pending' AND r.run_at <= now()) AS due,"
          " count(*) FILTER (WHERE r.state = 'running') AS running,"
          " round(extract(epoch FROM now() - min(r.created_at) FILTER (WHERE r.state = 'pending')))"
          "   ::bigint AS oldest_pending"
          " FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id"
          " JOIN vcl.node n ON n.id = c.node_id"
          " WHERE r.state IN ('pending', 'running')"
          " GROUP BY r.operation, n.name ORDER BY r.operation, n.name",
          "(queue empty)" },
        { "running",
          "SELECT j.id, j.operation, j.computer, j.node, j.worker,"
          " coalesce(j.current_stage, '(between stages)') AS stage,"
          " round(extract(epoch FROM now() - j.current_stage_started_at), 1) AS stage_age,"
          " round(extract(epoch FROM j.age), 1) AS age,"
          " CASE WHEN j.lease_expired THEN 'lease expired' ELSE"
          "  (SELECT left(s.detail, 120) FROM vcl.reservation_stage s"
          "    WHERE s.reservation_id = j.id AND s.lease_token = j.lease_token"
          "      AND s.outcome = 'running' ORDER BY s.id DESC LIMIT 1) END AS detail"
          " FROM vcl.running_jobs j",
          "(nothing running)" },
        { "failed in the last hour (newest first, at most 5)",
          "SELECT f.id, f.operation, f.computer, f.node, f.failed_stage AS stage,"
          " to_char(f.finished_at, 'HH24:MI:SS') AS at, left(f.last_error, 80) AS error"
          " FROM vcl.failures f WHERE f.finished_at >= now() - interval '1 hour' LIMIT 5",
          "(none)" },
    };
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(
        c->db,
        "SELECT to_char(now(), 'YYYY-MM-DD HH24:MI:SS'),"
        " (SELECT count(*) FROM vcl.workers),"
        " count(*) FILTER (WHERE state = 'pending'),"
        " count(*) FILTER (WHERE state = 'pending' AND run_at <= now()),"
        " count(*) FILTER (WHERE state = 'running'),"
        " (SELECT count(*) FROM vcl.reservation f WHERE f.state = 'failed'"
        "    AND f.finished_at >= now() - interval '1 hour'),"
        " coalesce(round(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending'))),"
        "   0)::bigint"
        " FROM vcl.reservation WHERE state IN ('pending', 'running')",
        0, NULL, &e);
    if (!r) {
        *rc = db_fail(c, &e, "cannot read the queue");
        return false;
    }
    char age[32];
    progress_fmt_duration(atof(PQgetvalue(r, 0, 6)), age, sizeof age);
    fprintf(m, "vcl-worker pool at %s: %s workers, %s pending (%s due, oldest %s), %s running, "
               "%s failed in the last hour\n",
            PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
            atoll(PQgetvalue(r, 0, 2)) > 0 ? age : "-", PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5));
    PQclear(r);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        vcl_error_clear(&e);
        r = db_exec(c->db, parts[i].sql, 0, NULL, &e);
        if (!r) {
            *rc = db_fail(c, &e, "cannot read %s", parts[i].title);
            return false;
        }
        fprintf(m, "\n%s:\n", parts[i].title);
        if (PQntuples(r) == 0)
            fprintf(m, "%s\n", parts[i].empty);
        else
            print_table(m, r, TOP_FMTS);
        PQclear(r);
    }
    return true;
}

static int cmd_top(ctl *c, const args *a)
{
    num interval;
    int rc;
    if ((rc = opt_num(c, a, "interval", 1, 3600, &interval)) != EXIT_OK)
        return rc;
    if (!interval.set)
        interval.v = 2;
    if (c->json)
        return usage_error(c, "top is for people; scripts read the views vcl.workers, "
                              "vcl.queue_summary, vcl.running_jobs and vcl.failures");
    if (!ctl_db(c))
        return EXIT_FAIL;
    bool tty = isatty(STDOUT_FILENO);
    bool once = opt_flag(a, "once") || !tty;
    for (;;) {
        char *text = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&text, &len);
        if (!m)
            return fail("out of memory");
        rc = EXIT_OK;
        bool okay = top_screen(c, m, &rc);
        fclose(m);
        if (!okay) {
            free(text);
            return rc;
        }
        if (once) {
            fputs(text, stdout);
            free(text);
            return EXIT_OK;
        }
        fputs("\033[H", stdout);
        put_frame(text, term_width());
        fputs("\033[J", stdout);
        fflush(stdout);
        free(text);
        sleep_ms(interval.v * 1000);
    }
}

/* ===================================================================== */
/* 6. The command table, help, main                                      */
/* ===================================================================== */

typedef int (*cmd_fn)(ctl *c, const args *a);

typedef struct command {
    const char *name;
    cmd_fn fn;                   /* NULL for a group */
    const struct command *sub;   /* a group's subcommands */
    const optspec *opts;
    int min_pos, max_pos;        /* positional argument counts */
    const char *usage;           /* what follows the name */
    const char *help;            /* one line */
} command;

static const command NODE_CMDS[] = {
    { "add", cmd_node_add, NULL, OPTS_NODE_ADD, 1, 1,
      "NAME --uri URI [--transport local|ssh] [--ssh-host H --ssh-port P --ssh-user U] "
      "[--master-dir D] [--cow-dir D] [--xml-dir D] [--repo PATH]... "
      "[--repo-location node|management] [--max-loads N] [--network NAME] [--cpu-mode MODE]",
      "add a hypervisor node" },
    { "list", cmd_node_list, NULL, NULL, 0, 0, "", "list the nodes (with each one's CPU mode)" },
    { "check", cmd_node_check, NULL, OPTS_NODE_CHECK, 1, 1, "NAME [--config FILE]",
      "preflight a node: libvirt, driver, QEMU, qemu-img, directories, which CPU modes start a "
      "guest (recorded on the node); exit 1 when an item fails" },
    { "set", cmd_node_set, NULL, OPTS_NODE_SET, 1, 1,
      "NAME [--state available|maintenance] [--uri URI] [other node add options]",
      "change a node (state, URI, directories, ...)" },
    { NULL, NULL, NULL, NULL, 0, 0, NULL, NULL },
};

static const command IMAGE_CMDS[] = {
    { "add", cmd_image_add, NULL, OPTS_IMAGE_ADD, 1, 1, "NAME [--os-type none|linux|windows]",
      "add an image" },
    { "revision-add", cmd_image_revision_add, NULL, OPTS_REVISION_ADD, 1, 1,
      "IMAGE --revision N --file-stem STEM [--size BYTES] [--checksum SUM] [--production]",
      "add a revision of an image" },
    { "list", cmd_image_list, NULL, NULL, 0, 0, "", "list the images with their revisions" },
    { "exists", cmd_image_exists, NULL, OPTS_IMAGE_WHERE, 1, 1, "IMAGE[:REV] [--node NODE]",
      "is the master on the node, else in its repository? (exit 0 yes, 1 no)" },
    { "size", cmd_image_size, NULL, OPTS_IMAGE_WHERE, 1, 1, "IMAGE[:REV] [--node NODE]",
      "size of the master on the node, else of the repository copy (bytes, MB)" },
    { NULL, NULL, NULL, NULL, 0, 0, NULL, NULL },
};

static const command COMPUTER_CMDS[] = {
    { "add", cmd_computer_add, NULL, OPTS_COMPUTER_ADD, 1, 1,
      "NAME --node NODE --mac MAC [--memory MB] [--vcpus N]", "add a computer (a VM slot)" },
    { "list", cmd_computer_list, NULL, NULL, 0, 0, "",
      "list the computers: node, node_status, loaded image, state" },
    { "set", cmd_computer_set, NULL, OPTS_COMPUTER_SET, 1, 1,
      "NAME [--state available|maintenance] [--mac MAC] [--memory MB] [--vcpus N]",
      "change a computer" },
    { NULL, NULL, NULL, NULL, 0, 0, NULL, NULL },
};

static int cmd_help(ctl *c, const args *a);

static const command COMMANDS[] = {
    { "migrate", cmd_migrate, NULL, OPTS_MIGRATE, 0, 0, "[--sql-dir DIR]",
      "apply new migrations and re-apply the live SQL (one transaction)" },
    { "node", NULL, NODE_CMDS, NULL, 0, 0, "add|list|set|check ...", "manage hypervisor nodes" },
    { "image", NULL, IMAGE_CMDS, NULL, 0, 0, "add|revision-add|list|exists|size ...",
      "manage images and their revisions" },
    { "computer", NULL, COMPUTER_CMDS, NULL, 0, 0, "add|list|set ...", "manage computers" },
    { "load", cmd_load, NULL, OPTS_LOAD, 2, 2,
      "COMPUTER IMAGE[:REV] [--priority N] [--max-attempts N]",
      "queue a load; prints the reservation id" },
    { "enqueue", cmd_enqueue, NULL, OPTS_QUEUE, 2, 3,
      "COMPUTER OPERATION [IMAGE[:REV]] [--priority N] [--max-attempts N] [--args JSON]",
      "queue any operation; prints the reservation id" },
    { "capture", cmd_capture, NULL, OPTS_CAPTURE, 1, 1,
      "COMPUTER [--after off|reload] [--file-stem STEM] [--shutdown-timeout S]",
      "queue a capture of the computer's disk as a new image revision; prints the id" },
    { "list", cmd_list, NULL, OPTS_LIST, 0, 0, "[--state S] [--computer C] [--limit N]",
      "list reservations, newest first" },
    { "show", cmd_show, NULL, OPTS_SHOW, 1, 1, "ID [--xml | --follow]",
      "show a reservation and its stage log" },
    { "retry", cmd_retry, NULL, OPTS_RETRY, 1, 1, "ID [--from-start]",
      "queue a failed, cancelled or done reservation again" },
    { "cancel", cmd_cancel, NULL, NULL, 1, 1, "ID", "cancel a reservation" },
    { "status", cmd_status, NULL, NULL, 1, 1, "COMPUTER",
      "check a computer's node_status with libvirt (READY, POST_LOAD, RELOAD)" },
    { "power", cmd_power, NULL, OPTS_POWER, 2, 2,
      "COMPUTER on|off|reset|shutdown|status [--wait] [--timeout SECONDS]",
      "power a computer on, off (hard), reset, shut it down gracefully; or show its power" },
    { "snapshot", cmd_snapshot, NULL, OPTS_SNAPSHOT, 2, 3,
      "COMPUTER list|create|delete|revert [NAME] [--description TEXT] [--wait]",
      "list a computer's snapshots, or queue a create, delete or revert" },
    { "delete", cmd_delete, NULL, OPTS_OP_WAIT, 1, 1, "COMPUTER [--wait]",
      "unload a computer: remove its domains, snapshots and disks (RELOAD, no image)" },
    { "maintenance", cmd_maintenance, NULL, OPTS_OP_WAIT, 1, 1, "COMPUTER [--wait]",
      "unload a computer and put it in maintenance (nothing more runs on it)" },
    { "domains", cmd_domains, NULL, NULL, 1, 1, "NODE",
      "every domain on a node: state, owner computer; strangers flagged" },
    { "workers", cmd_workers, NULL, OPTS_WORKERS, 0, 0, "[--all]",
      "list the workers and their heartbeats" },
    { "top", cmd_top, NULL, OPTS_TOP, 0, 0, "[--once] [--interval SECONDS]",
      "live summary of the pool: workers, queue per operation and node, running jobs, failures" },
    { "help", cmd_help, NULL, NULL, 0, 2, "[COMMAND [SUBCOMMAND]]", "show help" },
    { NULL, NULL, NULL, NULL, 0, 0, NULL, NULL },
};

/* Extra text for `help CMD`, beyond usage, options and the one line. */
typedef struct command_notes {
    const char *path;
    const char *text;
} command_notes;

static const command_notes NOTES[] = {
    { "migrate",
      "One transaction: the numbered migrations DIR/NNN_name.sql not applied yet, in\n"
      "order, then every live file of DIR/functions/ (functions, views, triggers,\n"
      "grants) in the order DIR/functions/ORDER lists them; all of it or nothing.\n"
      "Prints each file it applied (a live file whose sha256 differs from the one\n"
      "applied last time is marked changed). vcl.schema_migrations keeps each\n"
      "migration's sha256: an applied migration whose file changed, was renamed or\n"
      "is missing, or a new one numbered below an applied one, is an error naming\n"
      "the file (and both checksums), and nothing is applied. Safe to run again,\n"
      "and while workers run: each lock is waited for at most 10 s (a deadlock or a\n"
      "lock timeout is tried again twice)." },
    { "load",
      "IMAGE without :REV loads the highest production revision, else the highest revision.\n"
      "Only the id is printed, so this works: id=$(vclctl load vclv1 win7)" },
    { "enqueue", "OPERATION is one of: load, capture, power_on, power_off, power_reset, "
                 "shutdown,\ndelete, snapshot_create, snapshot_delete, snapshot_revert, "
                 "maintenance,\nnode_status, noop." },
    { "capture", "The computer must have a loaded domain. The capture becomes the next revision\n"
                 "of the image loaded on it (not production), its master goes to the node's\n"
                 "master dir and its first repository path. A file stem that is taken, or a\n"
                 "file of that name on the node or in the repository, fails it for good:\n"
                 "nothing is ever overwritten." },
    { "image exists", "Looks on the node first (<master dir>/<file stem>.qcow2), then in the\n"
                      "node's repository paths (qcow2, img, raw, vmdk; .xml/.txt/.vmx ignored).\n"
                      "Without --node every node is asked. Exit 0 when every node asked has it\n"
                      "(on the node or in its repository), 1 otherwise." },
    { "image size", "The master's size on the node, else the repository file's; a split vmdk\n"
                    "(<stem>.vmdk and its -s001.vmdk... extents) counts all its files. MB is\n"
                    "bytes / 1048576, rounded down. Exit 1 when a node asked has it nowhere." },
    { "retry", "The same as the plain SQL a DBA may type:\n"
               "  UPDATE vcl.reservation SET state = 'pending' WHERE id = ID;\n"
               "which resumes from the last checkpoint (--from-start also sets stage = NULL).\n"
               "Only failed, cancelled or done reservations can be retried." },
    { "status", "Exit status 0 for any answer (READY, POST_LOAD or RELOAD); 1 when the check\n"
                "could not run (unknown computer, node unreachable)." },
    { "list", "STAGE is the stage running now for a running row, the stage that failed for\n"
              "a failed row, else the checkpoint (the last finished stage). WHEN is run_at\n"
              "until the row finishes, then finished_at. ERROR is the last error, not shown\n"
              "for rows that ended done. --json gives every raw field." },
    { "show", "The row (stage is the checkpoint: the last finished stage), then the stage\n"
              "log. LEASE is the fencing token of the claim that ran the stage: attempts\n"
              "restart at 0 after a retry, leases never repeat. A stage left 'running'\n"
              "shows 'interrupted' when its lease is gone (the worker died or the row was\n"
              "reset), 'lease-expired' while its lease has lapsed and no worker has\n"
              "rescued it yet. --xml prints the stored domain XML alone.\n"
              "--follow redraws a live view until the reservation ends: each stage of the\n"
              "operation (done, running, waiting, failed) with its time and its estimate\n"
              "(the median of its last 50 runs on this node, else on any node, else a\n"
              "default: vcl.stage_estimate), the running stage's detail (copy progress),\n"
              "a bar with the ETA of the whole reservation, and the error if it fails.\n"
              "When stdout is not a terminal it prints one line per change instead.\n"
              "Exit status 0 when it ends done, 1 when it fails or is cancelled." },
    { "top", "Refreshes every 2 s on a terminal (Ctrl-C quits); prints one screen and exits\n"
             "with --once or when stdout is not a terminal. Workers are those not known to\n"
             "have stopped (vcl.workers); HEARTBEAT is the time since the last one, 'silent'\n"
             "after a minute. Running jobs come from vcl.running_jobs, failures from\n"
             "vcl.failures." },
    { "power", "on, off, reset and shutdown queue a reservation (power_on, power_off,\n"
               "power_reset, shutdown) and print its id; --wait then waits for it and prints\n"
               "the outcome (exit 1 when it failed). off is a hard power-off; shutdown sends\n"
               "ACPI shutdown requests and destroys the domain after --timeout (default: the\n"
               "worker's shutdown_timeout_seconds). Already on / already off succeed.\n"
               "status asks the node's libvirt now and prints on, off, suspended or crashed." },
    { "snapshot", "create, delete and revert queue a reservation (snapshot_create, ...) with\n"
                  "args {\"snapshot\": NAME}; a create finding NAME there already keeps it.\n"
                  "list asks the node's libvirt now: name, creation time, state (the\n"
                  "domain's state when it was taken), * for the current snapshot." },
    { "delete", "VCL's unload: the worker destroys and undefines every domain of the\n"
                "computer with its snapshots, removes the disks and XML files it owns, and\n"
                "writes it back RELOAD with no current image." },
    { "maintenance", "As delete, then the computer's state becomes maintenance: nothing more is\n"
                     "claimed for it until: vclctl computer set NAME --state available" },
    { "domains", "OWNER is the computer named in the domain's vcl metadata (or whose row\n"
                 "records its UUID). NOTE: 'leftover' for a domain of a computer that now\n"
                 "records another one (its next load removes it), 'stranger' for a domain\n"
                 "no computer of this node owns: vcl-worker never touches those." },
    { "workers", "STATUS is 'stopped' after a clean exit, 'silent' when the last heartbeat is\n"
                 "more than a minute old (the default heartbeat is every 10 s): the worker\n"
                 "died or hangs, and other workers take its jobs over as their leases expire." },
    { NULL, NULL },
};

static const char GLOBAL_HELP[] =
    "global options (before the command, or after it):\n"
    "  --db CONNINFO  PostgreSQL connection string or URI (default: $VCL_DATABASE,\n"
    "                 else libpq's PG* environment)\n"
    "  --json         machine-readable output (JSON made by PostgreSQL)\n"
    "  --quiet, -q    no confirmations or notes; results and errors only\n"
    "  -v, -vv        log at info, debug (SQL) level on stderr\n"
    "  --ssh-key FILE, --known-hosts FILE\n"
    "                 private key and known_hosts file for nodes reached over ssh\n"
    "                 (status, image exists/size; default: $VCL_SSH_KEY,\n"
    "                 $VCL_SSH_KNOWN_HOSTS); host keys are always verified,\n"
    "                 unknown ones never accepted\n"
    "  --version      print the version (and the libraries') and exit\n"
    "exit status: 0 ok, 1 failed, 2 usage error\n";

static void print_usage_line(FILE *f, const command *cmd, const char *path)
{
    fprintf(f, "usage: %s %s%s%s\n", PROG, path, cmd->usage[0] ? " " : "", cmd->usage);
}

static void print_command_help(FILE *f, const command *cmd, const char *path)
{
    print_usage_line(f, cmd, path);
    fprintf(f, "\n%s\n", cmd->help);
    if (cmd->sub) {
        fprintf(f, "\ncommands:\n");
        for (const command *s = cmd->sub; s->name; s++)
            fprintf(f, "  %s %-14s %s\n", path, s->name, s->help);
    }
    if (cmd->opts && cmd->opts[0].name) {
        fprintf(f, "\noptions:\n");
        for (const optspec *o = cmd->opts; o->name; o++) {
            char left[96];
            snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
            fprintf(f, "  %-28s %s%s\n", left, o->help,
                    (o->flags & OPT_REQUIRED) ? " (required)" : "");
        }
    }
    for (const command_notes *n = NOTES; n->path; n++)
        if (strcmp(n->path, path) == 0)
            fprintf(f, "\n%s\n", n->text);
}

static void print_main_help(FILE *f)
{
    fprintf(f, "usage: %s [--db CONNINFO] [--json] [--quiet] [-v] COMMAND [ARGS]\n"
               "       %s --version | --help\n\n"
               "vclctl manages vcl-worker's PostgreSQL: inventory, queue, workers.\n\n"
               "commands:\n",
            PROG, PROG);
    for (const command *cmd = COMMANDS; cmd->name; cmd++) {
        if (cmd->sub) {
            for (const command *s = cmd->sub; s->name; s++) {
                char both[64];
                snprintf(both, sizeof both, "%s %s", cmd->name, s->name);
                fprintf(f, "  %-22s %s\n", both, s->help);
            }
        } else {
            fprintf(f, "  %-22s %s\n", cmd->name, cmd->help);
        }
    }
    fprintf(f, "\n%s\nsee: %s help COMMAND, or %s COMMAND --help\n", GLOBAL_HELP, PROG, PROG);
}

static const command *find_command(const command *table, const char *name)
{
    for (const command *cmd = table; cmd && cmd->name; cmd++)
        if (strcmp(cmd->name, name) == 0)
            return cmd;
    return NULL;
}

static int cmd_help(ctl *c, const args *a)
{
    const command *cmd;
    char path[64];
    if (a->npos == 0) {
        print_main_help(stdout);
        return EXIT_OK;
    }
    if (!(cmd = find_command(COMMANDS, a->pos[0])))
        return usage_error(c, "no command '%s'", a->pos[0]);
    snprintf(path, sizeof path, "%s", cmd->name);
    if (a->npos == 2) {
        const command *sub = find_command(cmd->sub, a->pos[1]);
        if (!sub)
            return usage_error(c, "no command '%s %s'", a->pos[0], a->pos[1]);
        snprintf(path, sizeof path, "%s %s", cmd->name, sub->name);
        cmd = sub;
    }
    print_command_help(stdout, cmd, path);
    return EXIT_OK;
}

/* ---- the manual page, vclctl(1): the same tables as help, as man(7) ---- */

/* A NOTES text: its lines are wrapped for a terminal, so plain lines are
 * filled again by roff; lines indented by two spaces are examples, kept as
 * they are. */
static void man_notes(FILE *f, const char *text)
{
    const char *p = text;
    fputs(".PP\n", f);
    while (*p) {
        size_t n = strcspn(p, "\n");
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        if (strncmp(line, "  ", 2) == 0)
            roff_block(f, line + 2);
        else
            roff_line(f, line);
        p += n;
        if (*p == '\n')
            p++;
    }
}

/* One command: its usage as the heading, then the one line, its options and
 * its notes, indented. */
static void man_command(FILE *f, const command *cmd, const char *path)
{
    char buf[128];
    fputs(".PP\n\\fB", f);
    snprintf(buf, sizeof buf, "%s %s", PROG, path);
    roff_text(f, buf);
    fputs("\\fR ", f);
    roff_line(f, cmd->usage);
    fputs(".RS\n", f);
    roff_line(f, cmd->help);
    for (const optspec *o = cmd->opts; o && o->name; o++) {
        snprintf(buf, sizeof buf, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fputs(".TP\n", f);
        roff_macro(f, "B", buf);
        roff_text(f, o->help);
        fputs((o->flags & OPT_REQUIRED) ? " (required)\n" : "\n", f);
    }
    for (const command_notes *n = NOTES; n->path; n++)
        if (strcmp(n->path, path) == 0)
            man_notes(f, n->text);
    fputs(".RE\n", f);
}

/* GLOBAL_HELP as tagged paragraphs: "  -x, --opt ARG  text" starts an entry
 * (a tag alone on its line is followed by indented text), indented lines
 * continue it; the heading and the exit status line have their own places. */
static void man_global_options(FILE *f)
{
    const char *p = GLOBAL_HELP;
    while (*p) {
        size_t n = strcspn(p, "\n");
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        p += n;
        if (*p == '\n')
            p++;
        if (strncmp(line, "  -", 3) == 0) {
            char *gap = strstr(line + 2, "  ");
            if (gap)
                *gap = '\0';
            fputs(".TP\n", f);
            roff_macro(f, "B", line + 2);
            if (gap)
                roff_line(f, gap + 2 + strspn(gap + 2, " "));
        } else if (line[0] == ' ') {
            roff_line(f, line + strspn(line, " "));
        }
    }
}

static void print_man(FILE *f)
{
    char path[64];
    char source[64];
    snprintf(source, sizeof source, "%s %s", PROG, version_string());
    roff_header(f, "VCLCTL", "1", NULL, source, "vcl-worker");
    fputs(".SH NAME\n", f);
    roff_line(f, "vclctl - manage vcl-worker's PostgreSQL: inventory, queue, workers");
    fputs(".SH SYNOPSIS\n", f);
    roff_macro(f, "B", PROG);
    roff_line(f, "[--db CONNINFO] [--json] [--quiet] [-v] COMMAND [ARGS]");
    fputs(".br\n", f);
    roff_macro(f, "B", PROG);
    roff_line(f, "--version | --help");
    fputs(".SH DESCRIPTION\n", f);
    roff_line(f, "vclctl applies the SQL migrations, manages the inventory (nodes, images and "
                 "their revisions, computers), queues work for vcl-worker(8) (load and the other "
                 "operations), shows the queue and a reservation's stage log, retries and "
                 "cancels, asks a computer's node_status of libvirt, and lists the workers. "
                 "Output is plain text for people; --json gives JSON made by PostgreSQL.");
    fputs(".SH OPTIONS\n", f);
    roff_line(f, "Global options go before the command, or after it.");
    man_global_options(f);
    fputs(".SH COMMANDS\n", f);
    roff_line(f, "Every command also takes --help; vclctl help COMMAND shows the same text.");
    for (const command *cmd = COMMANDS; cmd->name; cmd++) {
        if (cmd->sub) {
            for (const command *sub = cmd->sub; sub->name; sub++) {
                snprintf(path, sizeof path, "%s %s", cmd->name, sub->name);
                man_command(f, sub, path);
            }
        } else {
            man_command(f, cmd, cmd->name);
        }
    }
    fputs(".SH EXIT STATUS\n", f);
    roff_line(f, "0 ok, 1 failed, 2 usage error (bad option, missing or malformed argument).");
    fputs(".SH ENVIRONMENT\n", f);
    roff_item(f, "B", "VCL_DATABASE",
              "conninfo used without --db; else libpq's PG* variables (PGHOST, PGDATABASE, "
              "PGUSER, ...)");
    roff_item(f, "B", "VCL_SQL_DIR", "the SQL directory of migrate without --sql-dir");
    roff_item(f, "B", "VCL_SSH_KEY, VCL_SSH_KNOWN_HOSTS",
              "defaults of --ssh-key and --known-hosts");
    fputs(".SH FILES\n", f);
    roff_item(f, "I", VCL_PREFIX "/share/vcl-worker/sql/",
              "the schema: numbered migrations NNN_name.sql and the live SQL in functions/ "
              "(in the order of functions/ORDER), found next to the binary "
              "(<bin>/../share/vcl-worker/sql) first");
    fputs(".SH SEE ALSO\n", f);
    fputs(".BR vcl-worker (8),\n.BR psql (1)\n", f);
}

/* The name of positional argument k, from the usage text: its leading
 * words before the first option or optional part ("COMPUTER IMAGE[:REV]"). */
static const char *positional_name(const command *cmd, int k, char *buf, size_t size)
{
    const char *p = cmd->usage;
    snprintf(buf, size, "argument");
    for (int i = 0; *p && *p != '-' && *p != '['; i++) {
        size_t n = strcspn(p, " ");
        if (i == k) {
            snprintf(buf, size, "%.*s", (int)n, p);
            break;
        }
        p += n;
        p += strspn(p, " ");
    }
    return buf;
}

/* Find the command (and subcommand) in argv, parse its arguments, run it. */
static int dispatch(ctl *c, const command *table, int argc, char **argv)
{
    const command *cmd = find_command(table, argv[0]);
    size_t used = strlen(c->path);
    snprintf(c->path + used, sizeof c->path - used, "%s%s", used ? " " : "", argv[0]);
    if (!cmd) {
        const command *parent = c->cmd;
        c->cmd = NULL;
        if (parent) {
            c->path[used] = '\0';
            c->cmd = parent;
            return usage_error(c, "unknown command '%s' (%s)", argv[0], parent->usage);
        }
        c->path[0] = '\0';
        return usage_error(c, "no command '%s'", argv[0]);
    }
    c->cmd = cmd;
    if (cmd->sub) {
        if (argc < 2)
            return usage_error(c, "which one? (%s)", cmd->usage);
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            print_command_help(stdout, cmd, c->path);
            return EXIT_OK;
        }
        return dispatch(c, cmd->sub, argc - 1, argv + 1);
    }
    args a;
    int rc = EXIT_OK;
    if (!parse_args(c, cmd, cmd->opts, argc, argv, &a, &rc))
        return rc;
    if (a.npos < cmd->min_pos) {
        char missing[64];
        return usage_error(c, "missing %s", positional_name(cmd, a.npos, missing, sizeof missing));
    }
    if (a.npos > cmd->max_pos)
        return usage_error(c, "unexpected argument '%s'", a.pos[cmd->max_pos]);
    if ((rc = check_required(c, &a)) != EXIT_OK)
        return rc;
    if (c->verbose >= 2)
        log_set_level(LOG_LVL_DEBUG);
    else if (c->verbose == 1)
        log_set_level(LOG_LVL_INFO);
    else
        log_set_level(c->quiet ? LOG_LVL_ERROR : LOG_LVL_WARN);
    return cmd->fn(c, &a);
}

int main(int argc, char **argv)
{
    ctl c = { .conninfo = NULL };
    int i = 1, rc;
    const char *env = getenv("VCL_DATABASE");
    c.conninfo = env ? env : "";
    c.ssh_key = getenv("VCL_SSH_KEY");
    c.known_hosts = getenv("VCL_SSH_KNOWN_HOSTS");
    log_set_worker(NULL);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_main_help(stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            version_print(stdout, PROG);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--help-man") == 0) {   /* hidden: make builds vclctl.1 */
            print_man(stdout);
            return EXIT_OK;
        }
        int g = global_option(&c, argc, argv, &i);
        if (g < 0)
            return usage_error(&c, "option '%s' needs a value", argv[i]);
        if (g == 0)
            return usage_error(&c, "unknown option '%s'", argv[i]);
    }
    if (i >= argc) {
        print_main_help(stderr);
        return EXIT_USAGE;
    }
    rc = dispatch(&c, COMMANDS, argc - i, argv + i);
    db_close(c.db);
    fflush(stdout);
    if (ferror(stdout)) {
        fprintf(stderr, "%s: cannot write the output\n", PROG);
        return EXIT_FAIL;
    }
    return rc;
}
