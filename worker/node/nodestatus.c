/* nodestatus.c: see nodestatus.h. */
#include "node/nodestatus.h"
#include "node/domxml.h"
#include "node/image.h"
#include "base/log.h"
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
                        const char *known_backing, node_status_facts *f, vcl_error *e)
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
    if (f->disk_matches && known_backing) {
        snprintf(f->backing, sizeof f->backing, "%s", known_backing);
        f->backing_matches = master && master[0] && strcmp(known_backing, master) == 0;
    } else if (f->disk_matches && t) {
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

bool node_status_check(const node_status_row *row, const transport_opts *ssh,
                       node_status_report *out, vcl_error *e)
{
    memset(out, 0, sizeof *out);
    bool ok = false;
    virConnectPtr conn = NULL;
    vcl_transport *t = NULL;
    snprintf(out->computer, sizeof out->computer, "%s", row->computer);
    snprintf(out->domain, sizeof out->domain, "%s", row->domain);
    snprintf(out->node, sizeof out->node, "%s", row->node);
    snprintf(out->revision, sizeof out->revision, "%s", row->revision);
    transport_opts to = { .host = row->ssh_host, .port = row->ssh_port, .user = row->ssh_user };
    if (ssh) {
        to.private_key = ssh->private_key;
        to.known_hosts = ssh->known_hosts;
        to.connect_timeout_s = ssh->connect_timeout_s;
    }
    if (!(t = transport_new(row->transport, &to, e))) {
        vcl_error_prefix(e, "node %s", out->node);
        goto cleanup;
    }
    if (!(conn = virt_open(row->libvirt_uri, e)))
        goto cleanup;
    node_status_facts f;
    if (!node_status_gather(conn, t, row->domain_uuid, row->domain, row->cow, row->master,
                            row->post_load_done, NULL, &f, e))
        goto cleanup;
    snprintf(out->domain_state, sizeof out->domain_state, "%s",
             !f.recorded ? "none" : !f.domain_exists ? "missing" : virt_state_name(f.domain_state));
    node_status_decide(&f, row->cow, row->master, out->status, sizeof out->status, out->reason,
                       sizeof out->reason);
    ok = true;
cleanup:
    virt_close(conn);
    transport_free(t);
    return ok;
}
