/* nodestatus.c: see nodestatus.h. */
#include "node/nodestatus.h"
#include "node/domxml.h"
#include "node/image.h"
#include "base/log.h"
#include "base/names.h"
#include "queue/statements.h"
#include "node/virt.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void node_status_decide(const node_status_facts *f, const char *cow, const char *master,
                        char *status, size_t status_len, char *reason, size_t reason_len)
{
    const char *st = "RELOAD";
    if (!f->recorded)
        snprintf(reason, reason_len, "no domain is recorded for this computer");
    else if (!f->domain_exists)
        snprintf(reason, reason_len, "the recorded domain does not exist on the node");
    else if (f->domain_state != VIR_DOMAIN_RUNNING && f->domain_state != VIR_DOMAIN_BLOCKED)
        snprintf(reason, reason_len, "the domain is %s, not running",
                 virt_state_name(f->domain_state));
    else if (!f->disk_matches)
        snprintf(reason, reason_len, "the domain's disk is '%s', not the recorded COW '%s'",
                 f->disk, cow);
    else if (!f->backing_matches)
        snprintf(reason, reason_len, "the COW '%s' is backed by '%s', not the master '%s'", cow,
                 f->backing[0] ? f->backing : "nothing", master);
    else if (!f->post_load_done) {
        st = "POST_LOAD";
        snprintf(reason, reason_len, "the domain runs the right disk but post_load has not run");
    } else {
        st = "READY";
        snprintf(reason, reason_len, "the domain runs on the COW backed by the expected master");
    }
    snprintf(status, status_len, "%s", st);
}

bool node_status_gather(virConnectPtr conn, vcl_transport *t, const char *uuid, const char *name,
                        const char *cow, const char *master, bool post_load_done,
                        node_status_facts *f, vcl_error *e)
{
    memset(f, 0, sizeof *f);
    f->post_load_done = post_load_done;
    f->recorded = (uuid && uuid[0]) || (name && name[0]);
    if (!f->recorded)
        return true;
    virDomainPtr dom = NULL;
    bool ok = false;
    char *xml = NULL, **disks = NULL;
    size_t nd = 0;
    if (!(uuid && uuid[0] ? virt_lookup_uuid(conn, uuid, &dom, e)
                          : virt_lookup_name(conn, name, &dom, e)))
        return false;
    if (!dom)
        return true;
    f->domain_exists = true;
    if (!virt_domain_state(dom, &f->domain_state, e) || !(xml = virt_domain_xml(dom, e)))
        goto cleanup;
    if (domxml_disk_files(xml, &disks, &nd) && nd > 0)
        snprintf(f->disk, sizeof f->disk, "%s", disks[0]);
    f->disk_matches = cow && cow[0] && strcmp(f->disk, cow) == 0;
    if (f->disk_matches && t) {
        qimg_info qi;
        vcl_error qe;
        vcl_error_clear(&qe);
        if (qimg_info_get(t, cow, &qi, &qe)) {
            snprintf(f->backing, sizeof f->backing, "%s", qi.backing_file);
            f->backing_matches = master && master[0] && strcmp(qi.backing_file, master) == 0;
        } else {
            snprintf(f->backing, sizeof f->backing, "(cannot inspect: %s)", qe.msg);
        }
    }
    ok = true;
cleanup:
    util_strv_free(disks, nd);
    free(xml);
    virDomainFree(dom);
    return ok;
}

bool node_status_check_computer(db_conn *db, const char *computer_name, node_status_report *out,
                                vcl_error *e)
{
    return node_status_check_computer_opts(db, computer_name, NULL, out, e);
}

bool node_status_check_computer_opts(db_conn *db, const char *computer_name,
                                     const transport_opts *ssh, node_status_report *out,
                                     vcl_error *e)
{
    memset(out, 0, sizeof *out);
    bool ok = false;
    virConnectPtr conn = NULL;
    vcl_transport *t = NULL;
    const char *p[1] = { computer_name };
    if (!name_check("computer", computer_name, e))
        return false;
    PGresult *r = db_exec(db, SQL_STATUS_FACTS, 1, p, e);
    if (!r)
        return false;
    if (PQntuples(r) != 1) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "no computer named '%s'", computer_name);
        goto cleanup;
    }
    snprintf(out->computer, sizeof out->computer, "%s", PQgetvalue(r, 0, 1));
    snprintf(out->domain, sizeof out->domain, "%s", PQgetvalue(r, 0, 2));
    const char *uuid = PQgetvalue(r, 0, 3), *cow = PQgetvalue(r, 0, 4),
               *master = PQgetvalue(r, 0, 5);
    bool post = db_get_bool(r, 0, 6);
    snprintf(out->node, sizeof out->node, "%s", PQgetvalue(r, 0, 7));
    snprintf(out->revision, sizeof out->revision, "%s", PQgetvalue(r, 0, 10));
    transport_opts to = { .host = PQgetvalue(r, 0, 11), .port = atoi(PQgetvalue(r, 0, 12)),
                          .user = PQgetvalue(r, 0, 13) };
    if (ssh) {
        to.private_key = ssh->private_key;
        to.known_hosts = ssh->known_hosts;
        to.connect_timeout_s = ssh->connect_timeout_s;
    }
    if (!(t = transport_new(PQgetvalue(r, 0, 9), &to, e))) {
        vcl_error_prefix(e, "node %s", out->node);
        goto cleanup;
    }
    if (!(conn = virt_open(PQgetvalue(r, 0, 8), e)))
        goto cleanup;
    node_status_facts f;
    if (!node_status_gather(conn, t, uuid, out->domain, cow, master, post, &f, e))
        goto cleanup;
    snprintf(out->domain_state, sizeof out->domain_state, "%s",
             !f.recorded ? "none" : !f.domain_exists ? "missing" : virt_state_name(f.domain_state));
    node_status_decide(&f, cow, master, out->status, sizeof out->status, out->reason,
                       sizeof out->reason);
    ok = true;
cleanup:
    PQclear(r);
    virt_close(conn);
    transport_free(t);
    return ok;
}
