/* main.c: vcl-worker, the daemon. Options, config, then the pool. */
#include "config.h"
#include "log.h"
#include "pool.h"
#include "stage.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vcl-worker --config FILE [--check-config] [--print-config] [--drain]\n"
            "\n"
            "A provisioning worker for a virtual computing lab: claims reservation rows\n"
            "from PostgreSQL (FOR UPDATE SKIP LOCKED), runs each operation as\n"
            "checkpointed stages on a libvirt node, and writes node_status back.\n"
            "\n"
            "  -c, --config FILE    YAML configuration (see config/vcl-worker.yaml)\n"
            "      --check-config   validate the configuration and exit (0 ok, 1 bad)\n"
            "      --print-config   print the effective configuration as YAML and exit\n"
            "      --drain          exit once nothing is claimable and no job runs\n"
            "  -h, --help           this help\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop claiming, let running stages finish, hand\n"
            "unfinished jobs back and exit 0; SIGHUP reloads the configuration.\n"
            "\n"
            "Operations and their stages:\n");
    for (const op_def *const *op = ops_all(); *op; op++) {
        fprintf(f, "  %-12s %s\n", (*op)->name, (*op)->help);
        for (size_t i = 0; (*op)->stages[i].name; i++)
            fprintf(f, "      %zu. %-13s %s\n", i + 1, (*op)->stages[i].name, (*op)->stages[i].help);
    }
    fprintf(f, "\nConfiguration options:\n");
    config_print_help(f);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'k' },
        { "print-config", no_argument, NULL, 'p' },
        { "drain", no_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = NULL;
    bool check = false, print = false, drain = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 'k': check = true; break;
        case 'p': print = true; break;
        case 'd': drain = true; break;
        case 'h': usage(stdout); return 0;
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
        printf("%s: configuration is valid\n", path);
        config_clear(cfg);
        free(cfg);
        return 0;
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
    pool_opts o = { path, drain };
    /* pool_run owns cfg from here (frees it with every reloaded config) */
    return pool_run(cfg, &o);
}
