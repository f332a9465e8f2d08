/* cmd_queue.c: the queue: load, enqueue and capture queue a reservation;
 * list and show read them (show --follow is live.c); retry and cancel change
 * their state; workers lists who runs them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/db.h"
#include "base/error.h"
#include "vclctl.h"
#include "query.h"
#include "sql.h"

/* The vocabulary shared with the schema's CHECK constraints. */
static const char *const RESERVATION_STATES[] = { "pending", "running", "done", "failed",
                                                  "cancelled", NULL };
static const char *const OPERATIONS[] = {
    "load",           "capture",         "power_on",        "power_off",   "power_reset",
    "shutdown",       "delete",          "snapshot_create", "snapshot_delete",
    "snapshot_revert", "maintenance",    "node_status",     "noop",        NULL
};

/* ---- load, enqueue ---- */

const optspec OPTS_QUEUE[] = {
    { "priority", "N", 0, "higher runs first among claimable rows (default from the schema)" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { "args", "JSON", 0, "operation arguments as a JSON object (enqueue), "
                         "e.g. '{\"snapshot\":\"s1\"}'" },
    { "at", "TIME", 0, "run at TIME (any timestamptz PostgreSQL accepts: "
                       "'2026-12-24 18:00', 'tomorrow 06:00 UTC')" },
    { "in", "INTERVAL", 0, "run after INTERVAL from now (10m, 2h, '1 day')" },
    { "no-dedup", NULL, 0, "load: queue it even while a load of the computer is queued" },
    { NULL, NULL, 0, NULL },
};

const optspec OPTS_LOAD[] = {
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { "at", "TIME", 0, "run at TIME (any timestamptz PostgreSQL accepts)" },
    { "in", "INTERVAL", 0, "run after INTERVAL from now (10m, 2h, '1 day')" },
    { "no-dedup", NULL, 0, "queue it even while a load of the computer is queued" },
    { NULL, NULL, 0, NULL },
};

/* --at TIME or --in INTERVAL (commands that declare them): both checked by
 * PostgreSQL, which reads them, so a bad value is a usage error here rather
 * than a failed INSERT. *tmpl and *val are run_at's value expression and
 * parameter; *val stays NULL when neither was given. */
static int opt_run_at(ctl *c, const args *a, const char **tmpl, const char **val)
{
    const char *at = opt_declared(a, "at") ? opt_str(a, "at") : NULL;
    const char *in = opt_declared(a, "in") ? opt_str(a, "in") : NULL;
    const char *opt = at ? "--at" : "--in";
    vcl_error e;
    int rc;
    *tmpl = NULL;
    *val = NULL;
    if (at && in)
        return usage_error(c, "give --at TIME or --in INTERVAL, not both");
    if (!at && !in)
        return EXIT_OK;
    if ((rc = check_text(c, opt, at ? at : in, 200)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    const char *p[1] = { at ? at : in };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, at ? SQL_CHECK_AT : SQL_CHECK_IN, 1, p, &e);
    if (!r)
        return usage_error(c, "%s '%s': not %s PostgreSQL accepts (%s)", opt, p[0],
                           at ? "a time (timestamptz)" : "an interval", db_msg(&e));
    PQclear(r);
    *tmpl = at ? "?::timestamptz" : "now() + ?::interval";
    *val = p[0];
    return EXIT_OK;
}

/* The load already queued under the same dedup key: its id, printed as if
 * queued now (same revision), or a failure naming it (another revision).
 * EXIT_OK with *found false when no row holds the key any more (it ended
 * meanwhile: the caller inserts again). */
static int dedup_holder(ctl *c, const char *key, const char *computer,
                        const char *revision_ids, long long *id, bool *found)
{
    const char *p[2] = { key, revision_ids };
    vcl_error e;
    vcl_error_clear(&e);
    *found = false;
    PGresult *r = db_exec(c->db, SQL_DEDUP_HOLDER, 2, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read the reservation queued under '%s'", key);
    if (PQntuples(r) == 0) {
        PQclear(r);
        return EXIT_OK;
    }
    *found = true;
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    char state[32], image[160];
    snprintf(state, sizeof state, "%s", PQgetvalue(r, 0, 1));
    snprintf(image, sizeof image, "%s", PQgetvalue(r, 0, 2));
    bool same = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
    PQclear(r);
    if (!same)
        return fail("a load of computer '%s' (%s) is already queued as reservation %lld (%s): "
                    "not queued; cancel it first (%s cancel %lld) to load another image",
                    computer, image, *id, state, PROG, *id);
    /* not a note: --quiet scripts still learn their id is not a new row */
    fprintf(stderr, "%s: a load of computer '%s' (%s) is already queued as reservation %lld "
                    "(%s, dedup_key %s): not queued again\n", PROG, computer, image, *id, state, key);
    return EXIT_OK;
}

int enqueue(ctl *c, const args *a, const char *computer, const char *operation,
            const char *image, const char *json_args)
{
    colset s = { .n = 0 };
    image_ref ref;
    num prio, maxatt;
    long long computer_id = 0, revision_id = 0, id = 0;
    char computer_ids[32], revision_ids[32], key[NAME_MAX_LEN + 16] = "";
    const char *run_at_tmpl, *run_at;
    bool inserted = false, held = false;
    vcl_error e;
    int rc;
    if ((rc = check_name(c, "computer", computer)) != EXIT_OK ||
        (image && (rc = parse_image_ref(c, image, &ref)) != EXIT_OK) ||
        (rc = opt_num(c, a, "priority", -1000000, 1000000, &prio)) != EXIT_OK ||
        (rc = opt_num(c, a, "max-attempts", 1, 100, &maxatt)) != EXIT_OK ||
        (rc = check_text(c, "--args", json_args, 65536)) != EXIT_OK ||
        (rc = opt_run_at(c, a, &run_at_tmpl, &run_at)) != EXIT_OK)
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
    if (run_at)
        colset_add_expr(&s, "run_at", run_at_tmpl, run_at);
    /* A load is de-duplicated per computer (008_dedup.sql): while one is
     * queued, another returns its id. Tried a few times: the row holding
     * the key may end between the INSERT and the look-up. */
    if (strcmp(operation, "load") == 0 &&
        !(opt_declared(a, "no-dedup") && opt_flag(a, "no-dedup"))) {
        snprintf(key, sizeof key, "load:%s", computer);
        colset_add(&s, "dedup_key", key);
    }
    for (int tries = 0; !inserted && !held; tries++) {
        vcl_error_clear(&e);
        if (tries == 5)
            return fail("cannot queue %s on computer '%s': the row holding dedup_key %s keeps "
                        "changing; try again", operation, computer, key);
        if (!key[0]) {
            if (!colset_insert(c, "vcl.reservation", &s, &id, &e))
                return db_fail(c, &e, "cannot queue %s on computer '%s'", operation, computer);
            inserted = true;
        } else if (!colset_insert_new(c, "vcl.reservation", &s, &id, &inserted, &e)) {
            return db_fail(c, &e, "cannot queue %s on computer '%s'", operation, computer);
        } else if (!inserted &&
                   (rc = dedup_holder(c, key, computer, image ? revision_ids : NULL, &id, &held)) !=
                       EXIT_OK) {
            return rc;
        }
    }
    c->last_id = id;
    if (c->json)
        return print_row_json(c, SQL_ID_JSON, id, "the id");
    printf("%lld\n", id);
    return EXIT_OK;
}

int cmd_load(ctl *c, const args *a)
{
    return enqueue(c, a, a->pos[0], "load", a->pos[1], NULL);
}

int cmd_enqueue(ctl *c, const args *a)
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

const optspec OPTS_CAPTURE[] = {
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

int cmd_capture(ctl *c, const args *a)
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
    const char *p[3] = { opt_str(a, "after"), stem, NUM_PARAM(timeout) };
    PGresult *r;
    vcl_error_clear(&e);
    if (!(r = db_exec(c->db, SQL_CAPTURE_ARGS, 3, p, &e)))
        return db_fail(c, &e, "cannot build the capture's arguments");
    char json[512];
    snprintf(json, sizeof json, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return enqueue(c, a, a->pos[0], "capture", NULL, json);
}

/* ---- list, show ---- */

const optspec OPTS_LIST[] = {
    { "state", "STATE", 0, "only rows in STATE (pending, running, done, failed, cancelled)" },
    { "computer", "NAME", 0, "only rows of this computer" },
    { "limit", "N", 0, "the N most recent rows (default 50)" },
    { NULL, NULL, 0, NULL },
};

int cmd_list(ctl *c, const args *a)
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
        return print_json(c, JSON_ARRAY(SQL_RESERVATION_ROWS), 3, p, "reservations");
    return print_query_table(c, SQL_RESERVATION_LIST, 3, p, NULL, "reservations",
                             "no reservations");
}

const optspec OPTS_SHOW[] = {
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
    PGresult *r = db_exec(c->db, SQL_STAGE_LOG, 1, p, &e);
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
    PGresult *r = db_exec(c->db, SQL_RESERVATION_STATE, 1, p, &e);
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

/* The stored domain XML is long: `show` gives its size, `show --xml` the text. */
static void fmt_xml_size(const char *in, char *out, size_t size)
{
    snprintf(out, size, "%zu bytes (print it with --xml)", strlen(in));
}

static const colfmt SHOW_FMTS[] = { { "domain_xml", fmt_xml_size }, { NULL, NULL } };

int cmd_show(ctl *c, const args *a)
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
        PGresult *x = db_exec(c->db, SQL_RESERVATION_XML, 1, p, &e);
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
        return print_json(c, SQL_RESERVATION_JSON, 1, p, "the reservation");

    PGresult *r = db_exec(c->db, SQL_RESERVATION_DETAIL, 1, p, &e);
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
    printable(last_error, false);
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

const optspec OPTS_RETRY[] = {
    { "from-start", NULL, 0, "clear the checkpoint: rerun every stage" },
    { "failed", NULL, 0, "retry every failed reservation (narrowed by the options below)" },
    { "node", "NODE", 0, "--failed: only those on NODE (its computers, its node checks)" },
    { "operation", "OP", 0, "--failed: only those of operation OP" },
    { "since", "INTERVAL", 0, "--failed: only those that failed within INTERVAL (1h, '2 days')" },
    { "dry-run", NULL, 0, "--failed: list what would be retried, change nothing" },
    { NULL, NULL, 0, NULL },
};

static int print_id_state(ctl *c, const char *id, const char *state)
{
    if (c->json) {
        const char *p[2] = { id, state };
        return print_json(c, SQL_ID_STATE_JSON, 2, p, "the result");
    }
    printf("reservation %s: %s\n", id, state);
    return EXIT_OK;
}

/* retry --failed: pick the rows (SQL_RETRY_FAILED_PICK), set them pending
 * (unless --dry-run), print them and the count. */
static int retry_failed(ctl *c, const args *a)
{
    const char *node = opt_str(a, "node"), *op = opt_str(a, "operation");
    const char *since = opt_str(a, "since");
    bool dry = opt_flag(a, "dry-run"), from_start = opt_flag(a, "from-start");
    char node_ids[32], list[512];
    long long node_id = 0;
    vcl_error e;
    PGresult *r;
    int rc;
    if (a->npos > 0)
        return usage_error(c, "--failed takes no ID");
    if (node && (rc = check_name(c, "node", node)) != EXIT_OK)
        return rc;
    if (op && !one_of(op, OPERATIONS) && strcmp(op, "node_check") != 0 &&
        strcmp(op, "stage_image") != 0)
        return usage_error(c, "unknown operation '%s' (one of %s, node_check, stage_image)", op,
                           words_join(OPERATIONS, list, sizeof list));
    if (since && (rc = check_text(c, "--since", since, 200)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (since) {
        const char *p[1] = { since };
        vcl_error_clear(&e);
        if (!(r = db_exec(c->db, SQL_CHECK_IN, 1, p, &e)))
            return usage_error(c, "--since '%s': not an interval PostgreSQL accepts (%s)", since,
                               db_msg(&e));
        PQclear(r);
    }
    if (node && (rc = lookup_id(c, SQL_NODE_ID, "node", node, &node_id)) != EXIT_OK)
        return rc;
    snprintf(node_ids, sizeof node_ids, "%lld", node_id);
    /* pick, and (unless a dry run) update, in one transaction so the count
     * of skipped rows and the rows printed agree with what changed */
    vcl_error_clear(&e);
    if (!db_run(c->db, "BEGIN", 0, NULL, &e))
        return db_fail(c, &e, "cannot retry failed reservations");
    const char *pp[3] = { node ? node_ids : NULL, op, since };
    char *ids = NULL, held[32] = "0";
    if (!(r = db_exec(c->db, SQL_RETRY_FAILED_PICK, 3, pp, &e)))
        goto dberr;
    ids = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!ids) {
        rc = fail("out of memory");
        goto rollback;
    }
    const char *ph[4] = { pp[0], pp[1], pp[2], ids };
    if (!(r = db_exec(c->db, SQL_RETRY_FAILED_HELD, 4, ph, &e)))
        goto dberr;
    snprintf(held, sizeof held, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!dry) {
        const char *pu[2] = { ids, from_start ? "true" : "false" };
        if (!(r = db_exec(c->db, SQL_RETRY_IDS, 2, pu, &e)))
            goto dberr;
        free(ids);
        ids = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (!ids) {
            rc = fail("out of memory");
            goto rollback;
        }
    }
    if (!db_run(c->db, dry ? "ROLLBACK" : "COMMIT", 0, NULL, &e)) {
        rc = db_fail(c, &e, "cannot retry failed reservations");
        free(ids);
        return rc;
    }
    const char *pj[3] = { ids, dry ? "true" : "false", held };
    if (c->json) {
        rc = print_json(c, SQL_RETRY_FAILED_JSON, 3, pj, "the result");
    } else {
        rc = print_query_table(c, SQL_RETRY_FAILED_LIST, 1, pj, NULL, "reservations",
                               "no failed reservation matches");
        long long n = 0;
        for (const char *p = ids; *p; p++)
            n += *p == ',';
        n += strcmp(ids, "{}") != 0;
        if (rc == EXIT_OK)
            printf("%s %lld failed reservation%s\n", dry ? "would retry" : "retried", n,
                   n == 1 ? "" : "s");
        if (strcmp(held, "0") != 0)
            note(c, "%s more left failed: a pending or running reservation (or a newer failed "
                    "one) has the same dedup_key", held);
    }
    free(ids);
    return rc;
dberr:
    rc = db_fail(c, &e, "cannot retry failed reservations");
rollback:
    free(ids);
    vcl_error_clear(&e);
    db_run(c->db, "ROLLBACK", 0, NULL, &e);
    return rc;
}

int cmd_retry(ctl *c, const args *a)
{
    num id;
    vcl_error e;
    char state[64];
    int rc;
    if (opt_flag(a, "failed"))
        return retry_failed(c, a);
    if (opt_str(a, "node") || opt_str(a, "operation") || opt_str(a, "since") ||
        opt_flag(a, "dry-run"))
        return usage_error(c, "--node, --operation, --since and --dry-run go with --failed");
    if (a->npos != 1)
        return usage_error(c, "give a reservation ID, or --failed");
    if ((rc = arg_id(c, a->pos[0], &id)) != EXIT_OK)
        return rc;
    bool from_start = opt_flag(a, "from-start");
    if (!ctl_db(c))
        return EXIT_FAIL;
    /* The plain UPDATE a DBA would type (SQL_RETRY); the old state is for
     * the note below. */
    const char *p[2] = { id.s, from_start ? "true" : "false" };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_RETRY, 2, p, &e);
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

int cmd_cancel(ctl *c, const args *a)
{
    num id;
    vcl_error e;
    char before[64];
    int rc;
    if ((rc = reservation_arg(c, a, &id, before, sizeof before)) != EXIT_OK)
        return rc;
    const char *p[1] = { id.s };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_CANCEL, 1, p, &e);
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

/* ---- workers ---- */

const optspec OPTS_WORKERS[] = {
    { "all", NULL, 0, "also workers stopped (or silent) for more than a day" },
    { NULL, NULL, 0, NULL },
};

static const colfmt WORKER_FMTS[] = { { "heartbeat", fmt_age_s }, { NULL, NULL } };

int cmd_workers(ctl *c, const args *a)
{
    const char *p[1] = { opt_flag(a, "all") ? "true" : "false" };
    if (!ctl_db(c))
        return EXIT_FAIL;
    if (c->json)
        return print_json(c, JSON_ARRAY(SQL_WORKER_ROWS), 1, p, "workers");
    return print_query_table(c, SQL_WORKER_LIST, 1, p, WORKER_FMTS, "workers",
                             "no workers have registered");
}
