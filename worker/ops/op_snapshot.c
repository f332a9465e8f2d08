/* op_snapshot.c: snapshot_create, snapshot_delete and snapshot_revert of a
 * computer's recorded domain. The snapshot name comes from the reservation's
 * args {"snapshot": "NAME"} and is a strict name (names.h); the optional
 * {"description": "..."} goes into the snapshot XML, built with libxml2.
 *
 * Decisions (each makes a rerun after a crash at any instant safe):
 *  - snapshot_create finding a snapshot of that name already there succeeds
 *    and keeps it: after a crash between virDomainSnapshotCreateXML and the
 *    checkpoint the retry must succeed, and libvirt cannot tell which attempt
 *    (or which earlier reservation) made it. To replace a snapshot, delete it
 *    first. The stage detail says the snapshot was already there and when it
 *    was made.
 *  - snapshot_delete of a missing snapshot succeeds (nothing to do).
 *  - snapshot_revert keeps a running domain running (REVERT_RUNNING); a
 *    domain that is off takes the snapshot's own state. Reverting twice ends
 *    in the same state, so a rerun is harmless. The node_status check then
 *    runs and its result is written (the domain may now be off).
 *  - A computer with no domain is a permanent error for all three: "load it
 *    first". Snapshots are internal (inside the COW qcow2, with the memory
 *    when the domain runs): delete/unload removes them with the COW. */
#include "queue/job.h"
#include "base/log.h"
#include "base/names.h"
#include "node/nodestatus.h"
#include "ops/op_common.h"
#include "queue/stage.h"
#include "node/virt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

static bool snapshot_arg(const job *j, vcl_error *e)
{
    if (!j->arg_snapshot[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "%s needs a snapshot name in the reservation's args, e.g. "
                             "{\"snapshot\": \"before-exam\"}", j->operation);
    if (!name_check("snapshot", j->arg_snapshot, e))
        return vcl_error_prefix(e, "%s in the reservation's args", j->operation);
    if (strlen(j->arg_description) + 1 >= sizeof j->arg_description)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "the snapshot description in the reservation's args is too long "
                             "(at most %zu bytes)", sizeof j->arg_description - 2);
    return true;
}

/* Look the snapshot up: *snap NULL (and true) when there is none. */
static bool snapshot_lookup(virDomainPtr dom, const char *name, virDomainSnapshotPtr *snap,
                            vcl_error *e)
{
    const char *dname = virDomainGetName(dom);
    virResetLastError();
    *snap = virDomainSnapshotLookupByName(dom, name, 0);
    if (*snap)
        return true;
    virErrorPtr err = virGetLastError();
    if (err && err->code == VIR_ERR_NO_DOMAIN_SNAPSHOT)
        return true;
    return virt_error(e, NULL, "looking up snapshot %s of domain %s", name, dname);
}

/* <creationTime> of a snapshot (seconds since the epoch), 0 if unknown. */
static long long snapshot_ctime(virDomainSnapshotPtr snap)
{
    char *xml = virDomainSnapshotGetXMLDesc(snap, 0);
    long long t = 0;
    if (!xml)
        return 0;
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "snapshot.xml", NULL, XML_PARSE_NONET);
    free(xml);
    if (!doc)
        return 0;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next) {
        if (n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, BAD_CAST "creationTime") == 0) {
            xmlChar *v = xmlNodeGetContent(n);
            t = v ? strtoll((const char *)v, NULL, 10) : 0;
            xmlFree(v);
        }
    }
    xmlFreeDoc(doc);
    return t;
}

/* <domainsnapshot><name/><description/><memory snapshot=.../></domainsnapshot>;
 * memory 'internal' for a running domain (a full checkpoint), 'no' else. */
static char *snapshot_xml(const char *name, const char *description, bool running, vcl_error *e)
{
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr root = doc ? xmlNewNode(NULL, BAD_CAST "domainsnapshot") : NULL;
    xmlChar *buf = NULL;
    int len = 0;
    char *out = NULL;
    if (!root)
        goto cleanup;
    xmlDocSetRootElement(doc, root);
    if (!xmlNewTextChild(root, NULL, BAD_CAST "name", BAD_CAST name))
        goto cleanup;
    if (description && description[0] &&
        !xmlNewTextChild(root, NULL, BAD_CAST "description", BAD_CAST description))
        goto cleanup;
    xmlNodePtr mem = xmlNewChild(root, NULL, BAD_CAST "memory", NULL);
    if (!mem || !xmlNewProp(mem, BAD_CAST "snapshot", BAD_CAST(running ? "internal" : "no")))
        goto cleanup;
    xmlDocDumpMemory(doc, &buf, &len);
    if (buf)
        out = strdup((const char *)buf);
cleanup:
    xmlFree(buf);
    xmlFreeDoc(doc);
    if (!out)
        vcl_error_set(e, VCL_ERR_RETRYABLE, "building the snapshot XML failed (out of memory)");
    return out;
}

static bool st_create(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    virDomainPtr dom = NULL;
    virDomainSnapshotPtr snap = NULL;
    char *xml = NULL;
    int st = 0;
    bool ok = false;
    if (!snapshot_arg(j, e) || !job_prepare(j, e) || !op_require_domain(j, &dom, e))
        return false;
    const char *name = virDomainGetName(dom);
    if (!snapshot_lookup(dom, j->arg_snapshot, &snap, e))
        goto cleanup;
    if (snap) {
        time_t t = (time_t)snapshot_ctime(snap);
        char when[32] = "an unknown time";
        struct tm tm;
        if (t > 0 && gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
        snprintf(detail, dlen, "snapshot %s of %s already exists (made at %s): kept, not replaced",
                 j->arg_snapshot, name, when);
        log_info("snapshot %s of %s already exists: kept", j->arg_snapshot, name);
        ok = true;
        goto cleanup;
    }
    if (!virt_domain_state(dom, &st, e))
        goto cleanup;
    bool running = st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED || st == VIR_DOMAIN_PAUSED;
    if (!(xml = snapshot_xml(j->arg_snapshot, j->arg_description, running, e)))
        goto cleanup;
    if (!job_check_ours(j, e))
        goto cleanup;
    if (!(snap = virDomainSnapshotCreateXML(dom, xml, 0))) {
        virt_error(e, NULL, "creating snapshot %s of domain %s", j->arg_snapshot, name);
        goto cleanup;
    }
    snprintf(detail, dlen, "created snapshot %s of %s (%s)", j->arg_snapshot, name,
             running ? "running: disk and memory" : "off: disk only");
    ok = true;
cleanup:
    free(xml);
    if (snap)
        virDomainSnapshotFree(snap);
    virDomainFree(dom);
    return ok;
}

static bool st_delete(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    virDomainPtr dom = NULL;
    virDomainSnapshotPtr snap = NULL;
    bool ok = false;
    if (!snapshot_arg(j, e) || !job_prepare(j, e) || !op_require_domain(j, &dom, e))
        return false;
    const char *name = virDomainGetName(dom);
    if (!snapshot_lookup(dom, j->arg_snapshot, &snap, e))
        goto cleanup;
    if (!snap) {
        snprintf(detail, dlen, "%s has no snapshot %s: nothing to delete", name, j->arg_snapshot);
        ok = true;
        goto cleanup;
    }
    if (!job_check_ours(j, e))
        goto cleanup;
    if (virDomainSnapshotDelete(snap, 0) < 0) {
        int code = 0;
        virt_error(e, &code, "deleting snapshot %s of domain %s", j->arg_snapshot, name);
        if (code != VIR_ERR_NO_DOMAIN_SNAPSHOT)
            goto cleanup;
        vcl_error_clear(e); /* deleted meanwhile */
    }
    snprintf(detail, dlen, "deleted snapshot %s of %s", j->arg_snapshot, name);
    ok = true;
cleanup:
    if (snap)
        virDomainSnapshotFree(snap);
    virDomainFree(dom);
    return ok;
}

static bool st_revert(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    virDomainPtr dom = NULL;
    virDomainSnapshotPtr snap = NULL;
    int st = 0, after = 0;
    bool ok = false;
    if (!snapshot_arg(j, e) || !job_prepare(j, e) || !op_require_domain(j, &dom, e))
        return false;
    const char *name = virDomainGetName(dom);
    if (!snapshot_lookup(dom, j->arg_snapshot, &snap, e))
        goto cleanup;
    if (!snap) {
        vcl_error_set(e, VCL_ERR_PERMANENT,
                      "domain %s of computer %s has no snapshot %s (see: vclctl snapshot %s list)",
                      name, j->computer, j->arg_snapshot, j->computer);
        goto cleanup;
    }
    if (!virt_domain_state(dom, &st, e))
        goto cleanup;
    bool running = st == VIR_DOMAIN_RUNNING || st == VIR_DOMAIN_BLOCKED;
    if (!job_check_ours(j, e))
        goto cleanup;
    if (virDomainRevertToSnapshot(snap, running ? VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING : 0) < 0) {
        virt_error(e, NULL, "reverting domain %s to snapshot %s", name, j->arg_snapshot);
        goto cleanup;
    }
    virt_domain_state(dom, &after, &(vcl_error){ 0 });
    snprintf(detail, dlen, "reverted %s to snapshot %s (was %s, now %s)", name, j->arg_snapshot,
             virt_state_name(st), virt_state_name(after));
    ok = true;
cleanup:
    if (snap)
        virDomainSnapshotFree(snap);
    virDomainFree(dom);
    return ok;
}

static const stage_def create_stages[] = {
    { "snapshot_create", st_create, "snapshot the domain (args snapshot, description); "
                                    "an existing one of that name is kept" },
    { NULL, NULL, NULL },
};
static const stage_def delete_stages[] = {
    { "snapshot_delete", st_delete, "delete the snapshot (args snapshot); missing is success" },
    { NULL, NULL, NULL },
};
static const stage_def revert_stages[] = {
    { "snapshot_revert", st_revert, "revert to the snapshot (args snapshot); a running "
                                    "domain stays running" },
    { "node_status", op_stage_check_status, "check with libvirt and write node_status back" },
    { NULL, NULL, NULL },
};

const op_def op_snapshot_create = { "snapshot_create", create_stages,
                                    "snapshot a loaded computer", NULL };
const op_def op_snapshot_delete = { "snapshot_delete", delete_stages,
                                    "delete a snapshot of a loaded computer", NULL };
const op_def op_snapshot_revert = { "snapshot_revert", revert_stages,
                                    "revert a loaded computer to a snapshot", NULL };
