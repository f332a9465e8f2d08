/* main.c: vclctl's command table (one row per command: its function,
 * options, arguments and one line of help), the help and the manual page
 * made from that table, and main(). See vclctl.h for the other files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/db.h"
#include "base/error.h"
#include "base/log.h"
#include "base/roff.h"
#include "base/complete.h"
#include "base/version.h"
#include "vclctl.h"

/* The connection, opened on first use. NULL (after a message) when it fails. */
db_conn *ctl_db(ctl *c)
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
    { "check", cmd_node_check, NULL, OPTS_NODE_CHECK, 1, 1, "NAME [--config FILE] | NAME --queue [--wait]",
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
    { "stage", cmd_image_stage, NULL, OPTS_IMAGE_STAGE, 1, 1,
      "IMAGE[:REV] --node NODE | --all-nodes [--wait]",
      "queue a stage_image per node: copy the master there ahead of its loads (prints the ids; "
      "a node where one is queued already is skipped)" },
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
    { "image", NULL, IMAGE_CMDS, NULL, 0, 0, "add|revision-add|list|exists|size|stage ...",
      "manage images and their revisions" },
    { "computer", NULL, COMPUTER_CMDS, NULL, 0, 0, "add|list|set ...", "manage computers" },
    { "load", cmd_load, NULL, OPTS_LOAD, 2, 2,
      "COMPUTER IMAGE[:REV] [--priority N] [--max-attempts N] [--at TIME | --in INTERVAL] [--no-dedup]",
      "queue a load; prints the reservation id" },
    { "enqueue", cmd_enqueue, NULL, OPTS_QUEUE, 2, 3,
      "COMPUTER OPERATION [IMAGE[:REV]] [--priority N] [--max-attempts N] [--args JSON] "
      "[--at TIME | --in INTERVAL]",
      "queue any operation; prints the reservation id" },
    { "capture", cmd_capture, NULL, OPTS_CAPTURE, 1, 1,
      "COMPUTER [--after off|reload] [--file-stem STEM] [--shutdown-timeout S]",
      "queue a capture of the computer's disk as a new image revision; prints the id" },
    { "list", cmd_list, NULL, OPTS_LIST, 0, 0, "[--state S] [--computer C] [--limit N]",
      "list reservations, newest first" },
    { "show", cmd_show, NULL, OPTS_SHOW, 1, 1, "ID [--xml | --follow]",
      "show a reservation and its stage log" },
    { "retry", cmd_retry, NULL, OPTS_RETRY, 0, 1,
      "ID [--from-start] | --failed [--node N] [--operation OP] [--since INTERVAL] [--dry-run] [--from-start]",
      "queue a failed, cancelled or done reservation again; --failed: every failed one" },
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
      "Only the id is printed, so this works: id=$(vclctl load vclv1 win7)\n"
      "De-duplicated: the load is queued with dedup_key 'load:COMPUTER'; while a load\n"
      "of the computer is pending or running, the same load prints that reservation's\n"
      "id (and says so on stderr) instead of queueing a second one; a load of another\n"
      "image fails (exit 1) naming the queued one; --no-dedup queues it anyway\n"
      "(behind the other, without a key). --at TIME (any timestamptz\n"
      "PostgreSQL accepts) or --in INTERVAL (10m, 2h, '1 day') sets run_at." },
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
               "Only failed, cancelled or done reservations can be retried.\n"
               "--failed retries every failed reservation, narrowed by --node (its computers\n"
               "and node checks), --operation and --since (failed within INTERVAL), in one\n"
               "transaction, and prints them with the count; --dry-run only lists them.\n"
               "Of failed rows sharing a dedup_key only the newest is retried, and none whose\n"
               "key a pending or running row holds (a note counts those left failed)." },
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

void print_usage_line(FILE *f, const command *cmd, const char *path)
{
    fprintf(f, "usage: %s %s%s%s\n", PROG, path, cmd->usage[0] ? " " : "", cmd->usage);
}

void print_command_help(FILE *f, const command *cmd, const char *path)
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

/* The options of GLOBAL_HELP's entries ("  --ssh-key FILE, --known-hosts FILE",
 * "  -v, -vv        log ..."): each name with its placeholder. */
static void completion_global_options(completion *cp)
{
    for (const char *p = GLOBAL_HELP; *p;) {
        size_t n = strcspn(p, "\n");
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        p += n + (p[n] == '\n');
        if (strncmp(line, "  -", 3) != 0)
            continue;
        char *gap = strstr(line + 2, "  ");
        if (gap)
            *gap = '\0';
        char *save = NULL;
        for (char *tok = strtok_r(line + 2, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            tok += strspn(tok, " ");
            char *arg = strchr(tok, ' ');
            if (arg)
                *arg++ = '\0';
            complete_option(cp, tok, arg && *arg ? arg : NULL);
        }
    }
}

static void completion_command(completion *cp, const command *cmd, const char *path)
{
    complete_path(cp, path);
    if (cmd->sub)
        for (const command *s = cmd->sub; s->name; s++)
            complete_word(cp, s->name);
    for (const optspec *o = cmd->opts; o && o->name; o++) {
        char name[64];
        snprintf(name, sizeof name, "--%s", o->name);
        complete_option(cp, name, o->arg);
    }
    complete_word(cp, "--help");
    for (const command *s = cmd->sub; s && s->name; s++) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s %s", path, s->name);
        completion_command(cp, s, sub);
    }
}

/* Bash completion from COMMANDS, their optspecs and GLOBAL_HELP. */
static bool print_completion(FILE *f)
{
    completion cp;
    complete_init(&cp, PROG, f);
    complete_path(&cp, "");
    for (const command *cmd = COMMANDS; cmd->name; cmd++)
        complete_word(&cp, cmd->name);
    completion_global_options(&cp);
    complete_word(&cp, "--help");
    for (const command *cmd = COMMANDS; cmd->name; cmd++)
        completion_command(&cp, cmd, cmd->name);
    return complete_end(&cp);
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
        if (strcmp(argv[i], "--help-completion") == 0)   /* hidden: make writes it */
            return print_completion(stdout) ? EXIT_OK : EXIT_FAIL;
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
