/* vclctl.h: what the files of vclctl share: the context of one run (ctl),
 * the exit codes, and the entry points of the commands that main.c's
 * command table lists.
 *
 * vclctl is the command line of vcl-worker for operators and DBAs. It
 * applies the SQL migrations, manages the inventory (nodes, images and their
 * revisions, computers), queues work (load and the other operations), shows
 * the queue and a reservation's stage log, retries and cancels, asks a
 * computer's node_status of libvirt, and lists the workers.
 *
 * Its files:
 *   main.c           the command table, help, --help-man, main()
 *   cli.c            arguments: optspec tables, parse_args(), usage errors
 *   output.c         aligned tables, "key: value", JSON, notes and failures
 *   query.c          statement text, given-columns INSERT/UPDATE, lookups
 *   sql.h            every fixed statement, named
 *   cmd_inventory.c  migrate, node, image, computer
 *   cmd_queue.c      load, enqueue, capture, list, show, retry, cancel, workers
 *   cmd_ops.c        status, power, snapshot, delete, maintenance, domains,
 *                    node check
 *   live.c           show --follow, top
 *
 * Rules kept throughout: every statement is a constant (or, for INSERT and
 * UPDATE of the options a user gave, built only from column names that are
 * constants in vclctl) and every value travels as a $n parameter; JSON is
 * always produced by PostgreSQL (json_agg, json_build_object), never escaped
 * by hand; names are checked with names.h before they are sent, so a typo
 * gets a clear message rather than a constraint violation.
 *
 * Exit status: 0 ok, 1 failed, 2 usage (bad option, missing or malformed
 * argument). */
#ifndef VCLCTL_H
#define VCLCTL_H
#include <stdbool.h>
#include <stdio.h>

#include "queue/db.h"
#include "cli.h"
#include "output.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define PROG "vclctl"

struct command;

struct ctl {
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
};

/* The connection, opened on first use. NULL (after a message) when it fails. */
db_conn *ctl_db(ctl *c);

/* ---- help (main.c), for usage errors and --help ---- */

/* "usage: vclctl <path> <usage>" */
void print_usage_line(FILE *f, const struct command *cmd, const char *path);
/* `vclctl help <path>`: usage, the one line, subcommands, options, notes. */
void print_command_help(FILE *f, const struct command *cmd, const char *path);

/* ---- the commands: cmd_*() run one, OPTS_* are their options ---- */

/* cmd_inventory.c */
extern const optspec OPTS_MIGRATE[], OPTS_NODE_ADD[], OPTS_NODE_SET[], OPTS_IMAGE_ADD[],
    OPTS_REVISION_ADD[], OPTS_IMAGE_WHERE[], OPTS_COMPUTER_ADD[], OPTS_COMPUTER_SET[];
int cmd_migrate(ctl *c, const args *a);
int cmd_node_add(ctl *c, const args *a);
int cmd_node_set(ctl *c, const args *a);
int cmd_node_list(ctl *c, const args *a);
int cmd_image_add(ctl *c, const args *a);
int cmd_image_revision_add(ctl *c, const args *a);
int cmd_image_list(ctl *c, const args *a);
int cmd_image_exists(ctl *c, const args *a);
int cmd_image_size(ctl *c, const args *a);
int cmd_computer_add(ctl *c, const args *a);
int cmd_computer_set(ctl *c, const args *a);
int cmd_computer_list(ctl *c, const args *a);
/* The revision IMAGE[:REV] means: REV when given, else the highest
 * production revision, else the highest revision. */
int resolve_revision(ctl *c, const image_ref *ref, long long *revision_id);

/* cmd_queue.c */
extern const optspec OPTS_LOAD[], OPTS_QUEUE[], OPTS_CAPTURE[], OPTS_LIST[], OPTS_SHOW[],
    OPTS_RETRY[], OPTS_WORKERS[];
int cmd_load(ctl *c, const args *a);
int cmd_enqueue(ctl *c, const args *a);
int cmd_capture(ctl *c, const args *a);
int cmd_list(ctl *c, const args *a);
int cmd_show(ctl *c, const args *a);
int cmd_retry(ctl *c, const args *a);
int cmd_cancel(ctl *c, const args *a);
int cmd_workers(ctl *c, const args *a);
/* Insert one reservation and print its id alone (or {"id": N}); the id is
 * also left in c->last_id. */
int enqueue(ctl *c, const args *a, const char *computer, const char *operation,
            const char *image, const char *json_args);

/* cmd_ops.c */
extern const optspec OPTS_POWER[], OPTS_SNAPSHOT[], OPTS_OP_WAIT[], OPTS_NODE_CHECK[],
    OPTS_IMAGE_STAGE[];
int cmd_status(ctl *c, const args *a);
int cmd_power(ctl *c, const args *a);
int cmd_snapshot(ctl *c, const args *a);
int cmd_delete(ctl *c, const args *a);
int cmd_maintenance(ctl *c, const args *a);
int cmd_domains(ctl *c, const args *a);
int cmd_node_check(ctl *c, const args *a);
int cmd_image_stage(ctl *c, const args *a);

/* live.c */
extern const optspec OPTS_TOP[];
int cmd_top(ctl *c, const args *a);
/* show ID --follow: redraw (terminal) or print changes (otherwise) until
 * the reservation ends; 0 when it ends done, 1 failed or cancelled. */
int show_follow(ctl *c, long long id);

#endif
