/* cli.h: vclctl's arguments. Each command declares its options once, in an
 * optspec table: parsing, the "required" checks and the option list of
 * `vclctl help CMD` all come from it. The opt_* and check_* helpers read and
 * check the values; every problem is a usage error (exit 2) that names the
 * command, shows its usage line and where to read more. */
#ifndef VCLCTL_CLI_H
#define VCLCTL_CLI_H
#include <stdbool.h>
#include <stddef.h>

#include "base/names.h"

typedef struct ctl ctl;
struct command;

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

/* "vclctl: <command>: <problem>", the usage line and where to read more;
 * returns EXIT_USAGE. */
int usage_error(const ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Global options are accepted before the command and, for convenience,
 * after it too. Returns 1 when argv[*i] was one (consuming its value), 0 when
 * not, -1 on a usage error. */
int global_option(ctl *c, int argc, char **argv, int *i);

/* Parse argv (argv[0] is the command's own name) against the command's
 * option table. Returns true to run the command; false with *rc set when
 * done (help shown: 0; usage error: 2). Required options are checked later
 * (check_required), after the positional arguments. */
bool parse_args(ctl *c, const struct command *cmd, const optspec *spec, int argc, char **argv,
                args *a, int *rc);

/* The first OPT_REQUIRED option missing, as a usage error; EXIT_OK if none. */
int check_required(const ctl *c, const args *a);

/* The value of --name, NULL when not given. */
const char *opt_str(const args *a, const char *name);
bool opt_flag(const args *a, const char *name);
/* Does the command's option table have --name? (for helpers shared by
 * commands whose tables differ) */
bool opt_declared(const args *a, const char *name);

/* Strict integer: optional '-', digits only, within [min, max]. */
bool parse_ll(const char *s, long long min, long long max, long long *out);

/* A numeric option, normalised to text for a parameter. */
typedef struct num {
    bool set;
    long long v;
    char s[32];
} num;

/* NULL when the option was not given, so colset_add() skips it. */
#define NUM_PARAM(n) ((n).set ? (n).s : NULL)

int opt_num(const ctl *c, const args *a, const char *name, long long min, long long max,
            num *out);
/* A reservation id argument. */
int arg_id(const ctl *c, const char *s, num *out);

/* Is s one of the NULL-terminated words? */
bool one_of(const char *s, const char *const *words);
/* "a|b|c" for messages. */
const char *words_join(const char *const *words, char *buf, size_t size);
/* --name, when given, must be one of words. */
int opt_word(const ctl *c, const args *a, const char *name, const char *const *words);

/* A name checked with names.h; invalid is a usage error. */
int check_name(const ctl *c, const char *what, const char *s);
/* A directory (dir_check); NULL passes. */
int check_dir(const ctl *c, const char *what, const char *s);
/* Printable text without control characters, within a length bound (URIs,
 * host names, checksums: values that have no stricter pattern here). */
int check_text(const ctl *c, const char *what, const char *s, size_t max);
/* Host name or address: letters, digits, '.', '_', '-', ':' and '[]' (IPv6),
 * not starting with '-' (it would read as an option to ssh tools); the
 * schema's node_ssh_host_valid says the same. */
int check_host(const ctl *c, const char *s);
/* libvirt URI: one the worker accepts (virt_uri_check; node_libvirt_uri_supported). */
int check_uri(const ctl *c, const char *s);
/* Repository search path: like a directory, but components may hold the
 * wildcards '*' and '?' (vcl.repository_paths_valid). */
int check_repo(const ctl *c, const char *s);

/* IMAGE[:REV] */
typedef struct image_ref {
    char name[NAME_MAX_LEN + 1];
    bool has_rev;
    long long rev;
    char rev_s[32];
} image_ref;

int parse_image_ref(const ctl *c, const char *s, image_ref *out);

#endif
