/* main.c: vcl-worker, the daemon. Options, config, then the pool. */
#include "base/config.h"
#include "queue/db.h"
#include "node/hvdriver.h"
#include "base/log.h"
#include "queue/pool.h"
#include "base/roff.h"
#include "queue/stage.h"
#include "base/version.h"
#include "base/journal.h"
#include "base/complete.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VCL_PREFIX
#define VCL_PREFIX "/usr/local"
#endif

/* The command line, once: getopt's table, --help and the manual page are all
 * made from it. */
typedef struct cli_opt {
    const char *name;
    int key;                  /* getopt value; a letter is also the short option */
    const char *arg;          /* NULL: takes no value */
    const char *help;         /* NULL: hidden (not in --help nor the manual) */
} cli_opt;

enum { OPT_CHECK = 256, OPT_PRINT, OPT_DRAIN, OPT_VERSION, OPT_HELP_MAN, OPT_HELP_COMPLETION };

static const cli_opt cli_opts[] = {
    { "config", 'c', "FILE", "YAML configuration (see config/vcl-worker.yaml)" },
    { "check-config", OPT_CHECK, NULL, "validate the configuration, load the drivers, exit (0 ok, 1 bad)" },
    { "print-config", OPT_PRINT, NULL, "print the effective configuration as YAML and exit" },
    { "drain", OPT_DRAIN, NULL, "exit once nothing is claimable and no job runs" },
    { "version", OPT_VERSION, NULL, "print the version (and the libraries') and exit" },
    { "help", 'h', NULL, "this help" },
    /* the manual page, vcl-worker(8), in man(7) roff (make builds it) */
    { "help-man", OPT_HELP_MAN, NULL, NULL },
    /* the bash completion script (make installs it) */
    { "help-completion", OPT_HELP_COMPLETION, NULL, NULL },
    { NULL, 0, NULL, NULL },
};

static const char SYNOPSIS[] = "--config FILE [--check-config] [--print-config] [--drain]";
static const char SYNOPSIS_INFO[] = "--version | --help";
static const char ABOUT[] =
    "A provisioning worker for a virtual computing lab: claims reservation rows\n"
    "from PostgreSQL (FOR UPDATE SKIP LOCKED), runs each operation as\n"
    "checkpointed stages on a libvirt node, and writes node_status back.\n";
static const char SIGNALS[] =
    "Signals: SIGTERM/SIGINT stop claiming, let running stages finish, hand\n"
    "unfinished jobs back and exit 0; SIGHUP reloads the configuration: jobs\n"
    "started after it use the new values, except for options marked \"restart\"\n"
    "(column SIGHUP), which keep their running value until a restart (a warning\n"
    "names each one that changed).\n";

static void usage(FILE *f)
{
    fprintf(f, "usage: vcl-worker %s\n       vcl-worker %s\n\n%s\n", SYNOPSIS, SYNOPSIS_INFO,
            ABOUT);
    for (const cli_opt *o = cli_opts; o->name; o++) {
        char shortopt[8] = "    ", left[64];
        if (!o->help)
            continue;
        if (o->key < 256)
            snprintf(shortopt, sizeof shortopt, "-%c, ", o->key);
        snprintf(left, sizeof left, "%s--%s%s%s", shortopt, o->name, o->arg ? " " : "",
                 o->arg ? o->arg : "");
        fprintf(f, "  %-20s %s\n", left, o->help);
    }
    fprintf(f, "\n%s\nOperations and their stages:\n", SIGNALS);
    for (const op_def *const *op = ops_all(); *op; op++) {
        fprintf(f, "  %-12s %s\n", (*op)->name, (*op)->help);
        for (size_t i = 0; (*op)->stages[i].name; i++)
            fprintf(f, "      %zu. %-13s %s\n", i + 1, (*op)->stages[i].name, (*op)->stages[i].help);
    }
    fprintf(f, "\nConfiguration options:\n");
    config_print_help(f);
}

/* vcl-worker(8): the same tables as usage(), as man(7). */
static void usage_man(FILE *f)
{
    char buf[512];
    snprintf(buf, sizeof buf, "vcl-worker %s", version_string());
    roff_header(f, "VCL-WORKER", "8", NULL, buf, "System Administration");
    fputs(".SH NAME\n", f);
    roff_line(f, "vcl-worker - provision lab VMs on KVM/QEMU nodes from a PostgreSQL queue");
    fputs(".SH SYNOPSIS\n", f);
    roff_macro(f, "B", "vcl-worker");
    roff_line(f, SYNOPSIS);
    fputs(".br\n", f);
    roff_macro(f, "B", "vcl-worker");
    roff_line(f, SYNOPSIS_INFO);
    fputs(".SH DESCRIPTION\n", f);
    roff_line(f, ABOUT);
    fputs(".PP\n", f);
    roff_line(f, "Any number of workers, on any number of hosts, share one queue; a worker holds "
                 "nothing that another could not rebuild from the rows, so killing one at any "
                 "instant is safe: another finishes its jobs from their last checkpoint.");
    fputs(".PP\n", f);
    roff_line(f, SIGNALS);
    fputs(".SH OPTIONS\n", f);
    for (const cli_opt *o = cli_opts; o->name; o++) {
        if (!o->help)
            continue;
        fputs(".TP\n", f);
        if (o->key < 256)
            snprintf(buf, sizeof buf, "-%c, --%s%s%s", o->key, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(buf, sizeof buf, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        roff_macro(f, "B", buf);
        roff_line(f, o->help);
    }
    fputs(".SH CONFIGURATION\n", f);
    roff_line(f, "One YAML file (the --config FILE); unknown keys are errors, which name the "
                 "file, line and column. Every key, with its type, default and range:");
    config_print_man(f);
    fputs(".SH OPERATIONS\n", f);
    roff_line(f, "A reservation's operation is one of these; each runs its stages in order, "
                 "and a retry resumes after the last finished one.");
    for (const op_def *const *op = ops_all(); *op; op++) {
        roff_item(f, "B", (*op)->name, (*op)->help);
        if (!(*op)->stages[0].name)
            continue;
        fputs(".RS\n", f);
        for (size_t i = 0; (*op)->stages[i].name; i++) {
            snprintf(buf, sizeof buf, "%zu. %s", i + 1, (*op)->stages[i].name);
            fputs(".TP 4\n", f);
            roff_macro(f, "I", buf);
            roff_line(f, (*op)->stages[i].help);
        }
        fputs(".RE\n", f);
    }
    fputs(".SH EXIT STATUS\n", f);
    roff_line(f, "0 after a clean stop (SIGTERM, SIGINT, --drain) or a valid --check-config; "
                 "1 on a bad configuration or a fatal error; 2 on a usage error.");
    fputs(".SH ENVIRONMENT\n", f);
    roff_item(f, "B", "VCL_DRIVERS_DIR", "default of drivers_dir");
    roff_item(f, "B", "PGHOST, PGDATABASE, PGUSER, PGPASSFILE, ...",
              "libpq reads them for what database does not set");
    roff_item(f, "B", "JOURNAL_STREAM",
              "set by systemd when stderr is the journal: if it names fd 2, each event goes to "
              "the journal with PRIORITY and the fields RESERVATION, COMPUTER, NODE, STAGE, "
              "OPERATION and WORKER (journalctl -u vcl-worker RESERVATION=42) instead of a line");
    roff_item(f, "B", "NOTIFY_SOCKET, WATCHDOG_USEC",
              "set by systemd for Type=notify and WatchdogSec=: READY=1 after the first claim, "
              "STATUS= (slots busy, last claim), WATCHDOG=1 from the main loop, RELOADING=1 on "
              "SIGHUP, STOPPING=1 on SIGTERM");
    fputs(".SH FILES\n", f);
    roff_item(f, "I", "/etc/vcl-worker/vcl-worker.yaml",
              "the configuration the systemd unit vcl-worker.service passes to --config "
              "(vcl-worker@NAME.service: /etc/vcl-worker/NAME.yaml)");
    roff_item(f, "I", VCL_PREFIX "/lib/vcl-worker/drivers/",
              "hypervisor driver modules (kvm.so, qemu.so)");
    roff_item(f, "I", VCL_PREFIX "/share/vcl-worker/sql/",
              "the schema: numbered migrations NNN_name.sql and the live SQL in functions/ "
              "(functions, views, triggers, grants), applied by vclctl migrate");
    roff_item(f, "I", VCL_PREFIX "/share/doc/vcl-worker/examples/vcl-worker.yaml",
              "an annotated configuration with every option at its default");
    fputs(".SH SEE ALSO\n", f);
    fputs(".BR vclctl (1),\n.BR systemd.service (5),\n.BR journalctl (1),\n.BR psql (1)\n", f);
}

/* Bash completion from cli_opts: the options --help shows. */
static int usage_completion(FILE *f)
{
    completion c;
    char name[64];
    complete_init(&c, "vcl-worker", f);
    complete_path(&c, "");
    for (const cli_opt *o = cli_opts; o->name; o++) {
        if (!o->help)
            continue;
        snprintf(name, sizeof name, "--%s", o->name);
        complete_option(&c, name, o->arg);
        if (o->key < 256) {
            snprintf(name, sizeof name, "-%c", o->key);
            complete_option(&c, name, o->arg);
        }
    }
    return complete_end(&c) ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct option longopts[sizeof cli_opts / sizeof cli_opts[0]];
    for (size_t i = 0; i < sizeof cli_opts / sizeof cli_opts[0]; i++)
        longopts[i] = (struct option){ cli_opts[i].name,
                                       cli_opts[i].arg ? required_argument : no_argument, NULL,
                                       cli_opts[i].key };
    const char *path = NULL;
    bool check = false, print = false, drain = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case OPT_CHECK: check = true; break;
        case OPT_PRINT: print = true; break;
        case OPT_DRAIN: drain = true; break;
        case OPT_VERSION: version_print(stdout, "vcl-worker"); return 0;
        case 'h': usage(stdout); return 0;
        case OPT_HELP_MAN: usage_man(stdout); return 0;
        case OPT_HELP_COMPLETION: return usage_completion(stdout);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vcl-worker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!path) {
        fprintf(stderr, "vcl-worker: --config FILE is required (see --help)\n");
        return 2;
    }
    vcl_config *cfg = calloc(1, sizeof *cfg);
    vcl_error e;
    vcl_error_clear(&e);
    config_defaults(cfg);
    if (!config_load(cfg, path, &e) || !config_validate(cfg, &e)) {
        fprintf(stderr, "vcl-worker: %s\n", e.msg);
        config_clear(cfg);
        free(cfg);
        return 1;
    }
    if (check) {
        /* The drivers too: an installed worker must find them (drivers_dir). */
        hvdriver_set *drivers = NULL;
        int rc = 0;
        if (!hvdriver_load_all(cfg->drivers_dir, cfg->driver_order, cfg->n_driver_order,
                               &drivers, &e)) {
            fprintf(stderr, "vcl-worker: %s: drivers: %s\n", path, e.msg);
            rc = 1;
        } else {
            printf("%s: configuration is valid\n", path);
            printf("drivers from %s:", cfg->drivers_dir);
            for (size_t i = 0; i < hvdriver_count(drivers); i++)
                printf(" %s", hvdriver_get(drivers, i)->name);
            printf("\n");
        }
        hvdriver_set_free(drivers);
        config_clear(cfg);
        free(cfg);
        return rc;
    }
    if (print) {
        config_print(cfg, stdout);
        config_clear(cfg);
        free(cfg);
        return 0;
    }
    log_level lvl;
    if (log_level_parse(cfg->log_level, &lvl))
        log_set_level(lvl);
    log_format lf;
    if (log_format_parse(cfg->log_format, &lf))
        log_set_format(lf);
    /* under systemd with stderr to the journal: events with fields */
    log_use_journal(journal_stderr_is_journal());
    db_set_prepare(strcmp(cfg->prepared_statements, "off") != 0);
    db_set_writer(true);   /* its connections write as the worker (guard.sql) */
    pool_opts o = { path, drain };
    /* pool_run owns cfg from here (frees it with every reloaded config) */
    return pool_run(cfg, &o);
}
