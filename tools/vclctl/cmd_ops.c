/* cmd_ops.c: what is done to a computer or a node: status asks libvirt
 * now; power, snapshot, delete and maintenance queue a reservation (and
 * --wait for its outcome); domains and node check look at a node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libvirt/libvirt.h>
#include <libxml/parser.h>

#include "base/config.h"
#include "node/cpuprobe.h"
#include "queue/db.h"
#include "node/domxml.h"
#include "base/error.h"
#include "node/hvdriver.h"
#include "node/nodecheck.h"
#include "node/nodestatus.h"
#include "node/transport.h"
#include "node/virt.h"
#include "queue/job_db.h"
#include "vclctl.h"
#include "query.h"
#include "sql.h"

/* ---- status ---- */

int cmd_status(ctl *c, const args *a)
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
    node_status_row row;
    if (!node_status_row_fetch(c->db, name, &row, &e) ||
        !node_status_check(&row, &ssh, &rep, &e)) {
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
        return print_json(c, SQL_STATUS_JSON, 7, p, "the status");
    }
    printable(rep.reason, false); /* may quote libvirt or the node */
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

const optspec OPTS_POWER[] = {
    { "wait", NULL, 0, "wait until the reservation ends and print its outcome" },
    { "timeout", "SECONDS", 0, "shutdown: destroy the domain if the guest has not shut down "
                               "after this long (default: the worker's shutdown_timeout_seconds)" },
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

const optspec OPTS_SNAPSHOT[] = {
    { "wait", NULL, 0, "wait until the reservation ends and print its outcome" },
    { "description", "TEXT", 0, "create: a description stored with the snapshot" },
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

const optspec OPTS_OP_WAIT[] = {
    { "wait", NULL, 0, "wait until the reservation ends and print its outcome" },
    { "priority", "N", 0, "higher runs first among claimable rows" },
    { "max-attempts", "N", 0, "give up after N failed attempts" },
    { NULL, NULL, 0, NULL },
};

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
    PGresult *r = db_exec(c->db, SQL_COMPUTER_DOMAIN, 1, p, &e);
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
            rc = print_json(c, SQL_POWER_JSON, 5, p, "the power status");
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
        PGresult *r = db_exec(c->db, SQL_WAIT_STATE, 1, p, &e);
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
        int prc = print_json(c, SQL_WAIT_JSON, 1, p, "the outcome");
        return prc != EXIT_OK ? prc : rc;
    }
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_WAIT_OUTCOME, 1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read reservation %lld", id);
    if (strcmp(state, "done") == 0)
        printf("reservation %lld done\n", id);
    else if (strcmp(state, "failed") == 0) {
        printf("reservation %lld failed in stage %s (attempt %s of %s): ", id,
               PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4));
        put_clean(stdout, PQgetvalue(r, 0, 2)); /* last_error: node-originated text */
        fputc('\n', stdout);
    } else
        printf("reservation %lld was cancelled\n", id);
    PQclear(r);
    if (strcmp(state, "done") != 0)
        return rc;
    /* what each stage of the final run found and did */
    vcl_error_clear(&e);
    r = db_exec(c->db, SQL_WAIT_STAGES, 1, p, &e);
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
    PGresult *r = db_exec(c->db, SQL_OP_ARGS, 3, p, &e);
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

int cmd_power(ctl *c, const args *a)
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
    rc = vrows_print(c, &rows, c->json ? SQL_SNAPSHOTS_JSON : SQL_SNAPSHOTS_LIST,
                     SQL_SNAPSHOTS_COLS, SQL_SNAPSHOTS_TAIL, NULL, 0, "snapshots", empty);
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

int cmd_snapshot(ctl *c, const args *a)
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

int cmd_delete(ctl *c, const args *a)
{
    return queue_op(c, a, a->pos[0], "delete", NULL, NULL, NULL);
}

int cmd_maintenance(ctl *c, const args *a)
{
    return queue_op(c, a, a->pos[0], "maintenance", NULL, NULL, NULL);
}

/* ---- node check ---- */

const optspec OPTS_NODE_CHECK[] = {
    { "config", "FILE", 0, "the worker's config file: drivers_dir, driver_order, qemu_emulator "
                           "and, unless --ssh-key/--known-hosts say otherwise, its ssh key and "
                           "known_hosts" },
    { "queue", NULL, 0, "do not check from here: queue a node_check reservation, which a worker "
                        "runs through its own transport and config (prints the id)" },
    { "wait", NULL, 0, "with --queue: wait until it ends and print what it found" },
    { NULL, NULL, 0, NULL },
};

static void print_check_item(bool ok, const char *item, char *detail, char *fix)
{
    printable(detail, false);
    printable(fix, false);
    printf("  %-4s  %-11s %s\n", ok ? "ok" : "FAIL", item, detail);
    if (!ok && fix[0])
        printf("        %-11s fix: %s\n", "", fix);
}

/* vclctl node check NAME --queue [--wait]: a worker checks the node. */
static int node_check_queue(ctl *c, const args *a, const char *name)
{
    const char *p[1] = { name };
    long long id = 0;
    bool isnull = true;
    vcl_error e;
    vcl_error_clear(&e);
    if (!db_scalar_ll(c->db, SQL_NODE_CHECK_QUEUE, 1, p, &id, &isnull, &e))
        return db_fail(c, &e, "cannot queue a node check of '%s'", name);
    if (isnull || !id)
        return fail("no node named '%s' (see: %s node list)", name, PROG);
    if (!opt_flag(a, "wait")) {
        if (c->json)
            return print_row_json(c, SQL_ID_JSON, id, "the id");
        printf("%lld\n", id);
        return EXIT_OK;
    }
    int rc = wait_reservation(c, id);
    if (c->json)
        return rc;
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_NODE_CHECK_STORED, 1, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot read the check of node '%s'", name);
    for (int i = 0; i < PQntuples(r); i++)
        print_check_item(PQgetvalue(r, i, 1)[0] == 't', PQgetvalue(r, i, 0),
                         PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
    PQclear(r);
    return rc;
}

/* Everything a load needs from the node, through its real transport and
 * libvirt (nodecheck.h); the CPU probe's result is recorded on the node row
 * (what auto resolves to, and why the other modes were rejected). */
int cmd_node_check(ctl *c, const args *a)
{
    const char *name = a->pos[0], *cfg_path = opt_str(a, "config");
    vcl_config cfg;
    hvdriver_set *drivers = NULL;
    PGresult *r = NULL;
    vcl_error e;
    int rc;

    if ((rc = check_name(c, "node", name)) != EXIT_OK)
        return rc;
    if (opt_flag(a, "wait") && !opt_flag(a, "queue"))
        return usage_error(c, "--wait goes with --queue (a check from here always waits)");
    if (opt_flag(a, "queue")) {
        if (cfg_path)
            return usage_error(c, "--queue: the worker uses its own config; --config does not apply");
        return ctl_db(c) ? node_check_queue(c, a, name) : EXIT_FAIL;
    }
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
    if (!(r = db_exec(c->db, SQL_NODE_CHECK_NODE, 1, p1, &e))) {
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

    char report[1024] = "";
    char *cols[4] = { NULL, NULL, NULL, NULL };
    if (rep->cpu_probed) {
        cpu_probe_report(&rep->cpu, report, sizeof report);
        printable(report, false);
    }
    if (!node_check_columns(rep, cols)) {
        rc = fail("out of memory");
        goto cleanup;
    }
    const char *rp[8] = { PQgetvalue(r, 0, 0), cols[0], cols[1], cols[2], cols[3],
                          rep->cpu_probed ? "true" : "false", rep->cpu.chosen, report };
    vcl_error_clear(&e);
    if (!db_run(c->db, SQL_NODE_CHECK_RECORD, 8, rp, &e))
        note(c, "could not record the check on node %s: %s", name, db_msg(&e));

    if (c->json) {
        rc = print_json(c, JSON_ARRAY(SQL_NODE_CHECK_ROWS), 4, rp + 1, "the check");
        node_check_columns_free(cols);
        if (rc == EXIT_OK && rep->failed)
            rc = EXIT_FAIL;
        goto cleanup;
    }
    node_check_columns_free(cols);
    printf("node %s: %s (%s), cpu_mode %s\n", name, t.libvirt_uri, t.transport, t.cpu_mode);
    for (int i = 0; i < rep->n; i++) {
        node_check_item *it = &rep->items[i];
        print_check_item(it->ok, it->item, it->detail, it->fix);
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
int cmd_domains(ctl *c, const args *a)
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
    PGresult *r = db_exec(c->db, SQL_DOMAINS_NODE, 1, p, &e);
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
    rc = vrows_print(c, &rows, c->json ? SQL_DOMAINS_JSON : SQL_DOMAINS_LIST, SQL_DOMAINS_COLS,
                     SQL_DOMAINS_TAIL, fixed, 1, "domains", empty);
cleanup:
    for (int i = 0; i < n; i++)
        virDomainFree(doms[i]);
    free(doms);
    vrows_free(&rows);
    virt_close(conn);
    return rc;
}

/* ---- image stage ---- */

const optspec OPTS_IMAGE_STAGE[] = {
    { "node", "NODE", 0, "stage on this node" },
    { "all-nodes", NULL, 0, "stage on every node (one stage_image reservation each)" },
    { "wait", NULL, 0, "wait until each ends and print what it did (--json: one object per line)" },
    { NULL, NULL, 0, NULL },
};

/* vclctl image stage IMAGE[:REV] --node N | --all-nodes [--wait]: queue a
 * stage_image per node (sql/010_stage_image.sql), skipping a node where one
 * of that revision is pending or running already (its id is printed too,
 * with a note). */
int cmd_image_stage(ctl *c, const args *a)
{
    const char *node = opt_str(a, "node");
    bool all = opt_flag(a, "all-nodes");
    image_ref ref;
    long long revision_id = 0, node_id = 0;
    char rev_s[32], list[4096] = "{";
    long long ids[256];
    int n = 0, rc;
    vcl_error e;

    if ((rc = parse_image_ref(c, a->pos[0], &ref)) != EXIT_OK)
        return rc;
    if (!node == !all)
        return usage_error(c, "give --node NODE or --all-nodes (one of them)");
    if (node && (rc = check_name(c, "node", node)) != EXIT_OK)
        return rc;
    if (!ctl_db(c))
        return EXIT_FAIL;
    if ((rc = resolve_revision(c, &ref, &revision_id)) != EXIT_OK)
        return rc;
    if (node && (rc = lookup_id(c, SQL_NODE_ID, "node", node, &node_id)) != EXIT_OK)
        return rc;
    snprintf(rev_s, sizeof rev_s, "%lld", revision_id);
    const char *p[2] = { rev_s, node };
    vcl_error_clear(&e);
    PGresult *r = db_exec(c->db, SQL_IMAGE_STAGE_QUEUE, 2, p, &e);
    if (!r)
        return db_fail(c, &e, "cannot queue the staging of %s", a->pos[0]);
    if (PQntuples(r) == 0) {
        PQclear(r);
        return fail("no nodes to stage on (add one: %s node add NAME --uri URI)", PROG);
    }
    for (int i = 0; i < PQntuples(r) && n < (int)(sizeof ids / sizeof ids[0]); i++) {
        if (PQgetisnull(r, i, 1))
            continue;   /* finished between the conflict and the look-up: rare, harmless */
        ids[n] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        bool queued = PQgetvalue(r, i, 2)[0] == 't';
        if (!queued)
            note(c, "node %s: %s is already being staged there (reservation %lld)",
                 PQgetvalue(r, i, 0), a->pos[0], ids[n]);
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%lld", n ? "," : "", ids[n]);
        if (!c->json && !opt_flag(a, "wait"))
            printf("%lld\n", ids[n]);
        n++;
    }
    PQclear(r);
    size_t used = strlen(list);
    snprintf(list + used, sizeof list - used, "}");
    if (c->json && !opt_flag(a, "wait")) {
        const char *pj[1] = { list };
        return print_json(c, SQL_IMAGE_STAGE_JSON, 1, pj, "the reservations");
    }
    if (!opt_flag(a, "wait"))
        return EXIT_OK;
    rc = EXIT_OK;
    for (int i = 0; i < n; i++)
        if (wait_reservation(c, ids[i]) != EXIT_OK)
            rc = EXIT_FAIL;
    return rc;
}
