/* config.h: the worker's YAML configuration (libyaml).
 * Every option is declared once in a table (key, type, default, bounds, help,
 * restart-only or not): loading, defaults, range checks, --print-config,
 * --help and the SIGHUP reload walk it.
 * Errors name file:line:column; unknown keys are errors. */
#ifndef VCL_CONFIG_H
#define VCL_CONFIG_H
#include <stdbool.h>
#include <stdio.h>
#include "base/error.h"

#define CONFIG_MAX_DRIVERS 16
/* At most this many options in the table (checked when config.c compiles). */
#define CONFIG_MAX_OPTIONS 64
#define CONFIG_MAX_STAGE_TIMEOUTS 32
#define CONFIG_STAGE_NAME_MAX 31

/* One entry of stage_timeouts: a stage name and its deadline (0 = none). */
typedef struct config_stage_timeout {
    char stage[CONFIG_STAGE_NAME_MAX + 1];
    int seconds;
} config_stage_timeout;

typedef struct vcl_config {
    char *database;            /* libpq conninfo; "" = PG* environment only */
    char *worker_name;         /* "" = <hostname>-<pid> */
    int slots;                 /* concurrent jobs, 1..256, default 4 */
    int claim_batch;           /* rows per claim, 1..1000, default = slots */
    int lease_seconds;         /* 5..3600, default 30 */
    int heartbeat_seconds;     /* 1..600, default 10; must be < lease_seconds */
    int poll_seconds;          /* 1..3600, default 30 */
    int notify_min_gap_ms;     /* NOTIFY wake-ups: one claim per this at most, 0..10000, default 10 */
    char *drivers_dir;         /* default <prefix>/lib/vcl-worker/drivers, or $VCL_DRIVERS_DIR */
    char *driver_order[CONFIG_MAX_DRIVERS]; /* default {"kvm","qemu"} */
    int n_driver_order;
    int retry_base_seconds;    /* 1..3600, default 5 */
    int retry_max_seconds;     /* 1..86400, default 600 */
    int max_attempts;          /* default for rows that do not set one: 1..100, default 5 */
    char *log_level;           /* debug|info|warn|error, default info */
    int command_timeout_seconds; /* node commands (qemu-img ...), default 7200 */
    int post_load_timeout_seconds; /* default 300 */
    int image_lock_timeout_seconds; /* default 600 */
    int shutdown_timeout_seconds; /* graceful shutdown, then destroy: 1..3600, default 120 */
    int watch_resync_seconds;  /* domain watcher resync: 0 (watcher off)..86400, default 60 */
    int history_retention_seconds; /* finished reservations kept this long; 0 = forever */
    int prune_batch;           /* rows deleted per statement by the maintenance pass */
    char *ssh_private_key;     /* ssh nodes: libssh2 transport_ssh.c (libvirt takes its own
                                  keyfile= from the node's URI); default "" */
    char *ssh_known_hosts;     /* verifies ssh nodes' host keys; default "" */
    char *qemu_emulator;       /* <emulator> of every domain; "" = libvirt's default */
    char *metrics_listen;      /* Prometheus endpoint (metrics.c); "" = off */
    char *log_format;          /* logfmt|json, default logfmt */
    char *prepared_statements; /* on|off (db.c statement cache), default on */
    int stage_timeout_seconds; /* deadline of one stage: 0 (none)..604800, default 900 */
    config_stage_timeout stage_timeouts[CONFIG_MAX_STAGE_TIMEOUTS]; /* per-stage deadlines,
                                  merged over the built-in ones (pre_define 7200, ...) */
    int n_stage_timeouts;
    int libvirt_keepalive_interval; /* seconds between keepalive pings: 0 (off)..600, default 5 */
    int libvirt_keepalive_count;    /* unanswered pings before the connection is closed: 1..100,
                                       default 3 */
    int libvirt_connect_timeout_seconds; /* opening a libvirt connection: 0 (no limit)..3600,
                                            default 30 */
} vcl_config;

/* The deadline in seconds of a stage by that name (stage_timeouts, else
 * stage_timeout_seconds); 0 = none. */
int config_stage_deadline(const vcl_config *c, const char *stage);

/* Set every option to its default. */
void config_defaults(vcl_config *c);
/* Load a YAML file over the defaults. false with e->msg "FILE:LINE:COL: ..." */
bool config_load(vcl_config *c, const char *path, vcl_error *e);
/* Cross-field checks (heartbeat < lease, ...). */
bool config_validate(const vcl_config *c, vcl_error *e);
void config_clear(vcl_config *c);
/* What a SIGHUP reload changed, from config_reload_merge. The keys are the
 * option table's own strings (never freed). */
typedef struct config_changes {
    const char *kept[CONFIG_MAX_OPTIONS];    /* restart-only options whose value changed in
                                              * the file: the running value stays */
    int n_kept;
    const char *applied[CONFIG_MAX_OPTIONS]; /* reloadable options whose value changed */
    int n_applied;
} config_changes;

/* A SIGHUP reload: next (loaded and validated from the file) is about to
 * replace running. Every restart-only option (--help column SIGHUP) whose
 * value differs gets running's value back in next and is listed in kept;
 * every other option that differs is listed in applied. */
void config_reload_merge(vcl_config *next, const vcl_config *running, config_changes *ch);
/* Does option key take effect only after a restart? false for unknown keys. */
bool config_needs_restart(const char *key);
/* Every option with its current value, as YAML that config_load accepts. */
void config_print(const vcl_config *c, FILE *f);
/* Every option with type, default, bounds, what SIGHUP does with it (reload or
 * restart) and help, for --help. */
void config_print_help(FILE *f);
/* The option table as man(7) tagged paragraphs (the CONFIGURATION section). */
void config_print_man(FILE *f);

/* The timeout of one command on a node: seconds when above zero, else the
 * default of command_timeout_seconds (for a job without a config, or an
 * image_req that leaves it 0). */
#define CONFIG_COMMAND_TIMEOUT_DEFAULT_S 7200
int config_command_timeout(int seconds);
/* An ssh private key must be readable by its owner only, as ssh demands:
 * false + permanent error ("chmod 600 ...") when path is readable or
 * writable by group or others, or is not a regular file. A missing file is
 * true here (whoever opens it says so). */
bool config_key_file_check(const char *path, vcl_error *e);
#endif
