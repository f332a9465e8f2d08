/* cli.c: vclctl's arguments (cli.h): parsing argv against a command's
 * optspec table, and the checks of option values and arguments. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/virt.h"
#include "base/error.h"
#include "base/names.h"
#include "vclctl.h"

/* "vclctl: <command>: <problem>", the usage line and where to read more;
 * returns EXIT_USAGE. */
int usage_error(const ctl *c, const char *fmt, ...)
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

static int opt_index(const args *a, const char *name)
{
    for (int i = 0; a->spec && a->spec[i].name; i++)
        if (strcmp(a->spec[i].name, name) == 0)
            return i;
    /* a command asked for an option it does not declare: a bug here */
    fprintf(stderr, "%s: internal error: undeclared option --%s\n", PROG, name);
    abort();
}

bool opt_declared(const args *a, const char *name)
{
    for (int i = 0; a->spec && a->spec[i].name; i++)
        if (strcmp(a->spec[i].name, name) == 0)
            return true;
    return false;
}

/* The value of --name, NULL when not given. */
const char *opt_str(const args *a, const char *name)
{
    return a->val[opt_index(a, name)];
}

bool opt_flag(const args *a, const char *name)
{
    return a->val[opt_index(a, name)] != NULL;
}

/* Global options are accepted before the command and, for convenience,
 * after it too. Returns 1 when argv[*i] was one (consuming its value), 0 when
 * not, -1 on a usage error. */
int global_option(ctl *c, int argc, char **argv, int *i)
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

bool parse_args(ctl *c, const struct command *cmd, const optspec *spec, int argc, char **argv,
                args *a, int *rc)
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
int check_required(const ctl *c, const args *a)
{
    for (int j = 0; a->spec && a->spec[j].name; j++)
        if ((a->spec[j].flags & OPT_REQUIRED) && !a->val[j])
            return usage_error(c, "option '--%s %s' is required", a->spec[j].name,
                               a->spec[j].arg ? a->spec[j].arg : "");
    return EXIT_OK;
}

/* Strict integer: optional '-', digits only, within [min, max]. */
bool parse_ll(const char *s, long long min, long long max, long long *out)
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

int opt_num(const ctl *c, const args *a, const char *name, long long min, long long max,
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
int arg_id(const ctl *c, const char *s, num *out)
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
bool one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

/* "a|b|c" for messages. */
const char *words_join(const char *const *words, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; words[i] && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "|" : "", words[i]);
    return buf;
}

int opt_word(const ctl *c, const args *a, const char *name, const char *const *words)
{
    const char *s = opt_str(a, name);
    char list[256];
    if (s && !one_of(s, words))
        return usage_error(c, "--%s must be one of %s, not '%s'", name,
                           words_join(words, list, sizeof list), s);
    return EXIT_OK;
}

/* A name checked with names.h; invalid is a usage error. */
int check_name(const ctl *c, const char *what, const char *s)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (!name_check(what, s, &e))
        return usage_error(c, "%s", e.msg);
    return EXIT_OK;
}

int check_dir(const ctl *c, const char *what, const char *s)
{
    vcl_error e;
    vcl_error_clear(&e);
    if (s && !dir_check(what, s, &e))
        return usage_error(c, "%s", e.msg);
    return EXIT_OK;
}

/* Printable text without control characters, within a length bound (URIs,
 * host names, checksums: values that have no stricter pattern here). */
int check_text(const ctl *c, const char *what, const char *s, size_t max)
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
int check_host(const ctl *c, const char *s)
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
int check_uri(const ctl *c, const char *s)
{
    int rc;
    vcl_error e;
    if (!s)
        return EXIT_OK;
    if ((rc = check_text(c, "--uri", s, 1024)) != EXIT_OK)
        return rc;
    /* the worker's own rule (virt_uri_check), so what is added here is what
     * it will connect to */
    vcl_error_clear(&e);
    if (!virt_uri_check(s, &e))
        return usage_error(c, "--uri: %s", e.msg);
    return EXIT_OK;
}

/* Repository search path: like a directory, but components may hold the
 * wildcards '*' and '?' (vcl.repository_paths_valid). Checked by replacing
 * each wildcard with a letter and asking dir_check(). */
int check_repo(const ctl *c, const char *s)
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
int parse_image_ref(const ctl *c, const char *s, image_ref *out)
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
