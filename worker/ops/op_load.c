/* op_load.c: the load operation, in the order of VCL's libvirt module.
 * Every stage inspects the real state first, so it is safe to run again
 * after a crash at any instant. */
#include "node/domxml.h"
#include "node/image.h"
#include "queue/job.h"
#include "queue/locks.h"
#include "base/log.h"
#include "node/nodestatus.h"
#include "ops/op_common.h"
#include "queue/stage.h"
#include "node/virt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- image lock: a vcl.image_lock row per (node, image revision) ----
 * held by this job's lease (worker/queue/locks.c): workers on any
 * management host share it, a reader login cannot take it, and it passes to
 * the next taker once our lease is gone (a dead or fenced-out worker). */
static locks_image image_lock_key(const job *j)
{
    return (locks_image){ .node_id = j->node_id, .revision_id = j->revision_id,
                          .reservation_id = j->id, .token = j->token,
                          .node = j->node, .file_stem = j->file_stem };
}

static bool image_lock(void *opaque, bool acquire, int timeout_s, vcl_error *e)
{
    job *j = opaque;
    locks_image l = image_lock_key(j);
    if (!acquire) {
        locks_image_release(j->db, &l);
        return true;
    }
    return locks_image_take(j->db, &l, timeout_s, e);
}

static bool image_lock_held(void *opaque, vcl_error *e)
{
    job *j = opaque;
    locks_image l = image_lock_key(j);
    return locks_image_held(j->db, &l, e);
}

/* tt: storage for the job's recorded temp files, as long as r lives. */
static bool fill_image_req(job *j, image_req *r, node_temps *tt, vcl_error *e)
{
    memset(r, 0, sizeof *r);
    *tt = op_temps(j);
    r->temps = tt;
    r->t = j->t;
    /* 'management': the repository paths are on this host (repo_t local). */
    if (!job_repo_transport(j, &r->repo_t, e))
        return false;
    r->master_path = j->names.master_path;
    r->cow_path = j->names.cow_path;
    r->file_stem = j->file_stem;
    r->disk_format = j->drv->disk_format ? j->drv->disk_format(0) : "qcow2";
    r->repo_paths = (const char *const *)j->repo_paths;
    r->n_repo = j->n_repo;
    r->reservation_id = j->id;
    r->lock = image_lock;
    r->lock_held = image_lock_held;
    r->lock_opaque = j;
    r->lock_timeout_s = j->cfg ? j->cfg->image_lock_timeout_seconds : 0;
    r->command_timeout_s = op_command_timeout(j);
    return true;
}

/* image_req progress (image.c: "stream" = a copy from the management host
 * with transport_copy_in, "convert" = qemu-img convert on the node, reported
 * at its start, once a second from the size of its output, and at its end;
 * its other reports are steps, not copies) into the running stage's detail. */
static void load_copy_progress(void *opaque, const char *what, long long done, long long total)
{
    job_copy_progress *p = opaque;
    bool convert = strcmp(what, "convert") == 0;
    if (!convert && strcmp(what, "stream") != 0)
        return;   /* "check", "master", "cow": steps, not copies */
    const char *phase = convert ? "qemu-img convert on the node" : "streamed from the management host";
    /* a new phase (a resumed stream starts past 0): the clock starts again */
    if (strcmp(p->what, phase) != 0) {
        job_copy_progress_phase(p, phase);
        if (convert && done == 0) {
            char sz[32], line[256];
            progress_fmt_bytes(total, sz, sizeof sz);
            snprintf(line, sizeof line, "converting %s (virtual size) from the repository with "
                     "qemu-img convert on the node", sz);
            job_copy_progress_note(p, line);
            return;
        }
    }
    job_copy_progress_fn(p, done, total);
}

bool op_master_init(job *j, op_master *m, vcl_error *e)
{
    memset(m, 0, sizeof *m);
    if (!fill_image_req(j, &m->req, &m->temps, e))
        return false;
    m->req.how = m->how;
    m->req.how_len = sizeof m->how;
    job_copy_progress_init(&m->prog, j, "");
    m->req.progress = load_copy_progress;
    m->req.progress_opaque = &m->prog;
    return true;
}

void op_master_detail(const job *j, const op_master *m, char *detail, size_t dlen)
{
    /* a copy's last progress line stays in the log: how much, how fast */
    bool copied = m->how[0] && strncmp(m->prog.last, "copied", 6) == 0;
    snprintf(detail, dlen, "master=%s%s%s%s%s%s", j->names.master_path,
             m->how[0] ? " (master " : "", m->how, m->how[0] ? ")" : "", copied ? "; " : "",
             copied ? m->prog.last : "");
}

/* The domain XML of this load, built with libxml2 and the driver's hook
 * (deterministic: the same rows give the same document). *xml malloc'd;
 * summary (may be NULL) gets what it chose. */
static bool build_xml(job *j, char **xml, char *summary, size_t slen, vcl_error *e)
{
    bool ok = false;
    xmlDocPtr doc = NULL;
    *xml = NULL;
    if (!mac_check(j->mac0, e))
        return vcl_error_prefix(e, "computer %s", j->computer);
    cpu_mode cpu;
    if (!job_cpu_mode(j, &cpu, e))
        return false;
    domxml_spec spec = {
        .name = j->names.domain,
        .uuid = j->domain_uuid,
        .domain_type = j->drv->domain_type ? j->drv->domain_type(0) : "qemu",
        .memory_mb = (unsigned)j->memory_mb,
        .vcpus = (unsigned)j->vcpus,
        .disk_path = j->names.cow_path,
        .disk_driver = j->drv->disk_driver_name ? j->drv->disk_driver_name(0) : "qemu",
        .disk_format = j->drv->disk_format ? j->drv->disk_format(0) : "qcow2",
        .backing_path = j->names.master_path,
        .backing_format = j->drv->disk_format ? j->drv->disk_format(0) : "qcow2",
        .mac0 = j->mac0,
        .network = j->network[0] ? j->network : NULL,
        .serial_log = j->names.console_path,
        .cpu = &cpu,
        .emulator = j->cfg && j->cfg->qemu_emulator && j->cfg->qemu_emulator[0] ? j->cfg->qemu_emulator
                                                                                : NULL,
        .computer = j->computer,
        .reservation_id = j->id,
        .image_revision_id = j->revision_id,
        .file_stem = j->file_stem,
    };
    if (!(doc = domxml_build(&spec, e)))
        goto cleanup;
    if (j->drv->extend_domain_xml &&
        !j->drv->extend_domain_xml(hvdriver_host(), &j->dnode, doc, 0, e)) {
        vcl_error_prefix(e, "driver %s extend_domain_xml", j->drv->name);
        goto cleanup;
    }
    if (!(*xml = domxml_to_string(doc))) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "serialising domain XML failed");
        goto cleanup;
    }
    if (summary) {
        char cpu_s[CPU_MODE_STR_MAX];
        cpu_mode_format(&cpu, cpu_s, sizeof cpu_s);
        snprintf(summary, slen, "driver=%s type=%s domain=%s uuid=%s vcpus=%d memory=%dMiB cpu=%s",
                 j->drv->name, spec.domain_type, j->names.domain, j->domain_uuid, j->vcpus,
                 j->memory_mb, cpu_s);
    }
    ok = true;
cleanup:
    xmlFreeDoc(doc);
    return ok;
}

/* The XML the later stages write and define: always the worker's own. A
 * job resumed past generate_xml builds it again (job_load never takes
 * domain_xml from the row: a row is not trusted to carry a definition). */
static bool own_xml(job *j, vcl_error *e)
{
    if (j->domain_xml)
        return true;
    char *xml = NULL;
    if (!build_xml(j, &xml, NULL, 0, e))
        return false;
    j->domain_xml = xml;
    log_debug("domain XML of %s built again for this attempt (%zu bytes)", j->names.domain,
              strlen(xml));
    return true;
}

/* 2. generate_xml: libxml2, then the driver's hook; stored on the
 * reservation for people to read (the worker never reads it back). */
static bool st_generate_xml(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    char *xml = NULL;
    if (!job_prepare(j, e))
        return false;
    bool ok = build_xml(j, &xml, detail, dlen, e) && job_store_xml(j, xml, e);
    free(xml);
    return ok;
}

/* 3. pre_define: master on the node (from the repository if missing), COW. */
static bool st_pre_define(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_prepare(j, e))
        return false;
    /* Record what we are about to create before creating it, so a crash
     * leaves nothing that a later cleanup cannot find. */
    if (!job_record_ownership(j, e))
        return false;
    if (!j->drv->pre_define) {
        return vcl_error_set(e, VCL_ERR_PERMANENT, "driver %s does not support pre_define",
                             j->drv->name);
    }
    op_master m;
    if (!op_master_init(j, &m, e))
        return false;
    memset(&j->cow_made, 0, sizeof j->cow_made);
    m.req.cow_made = &j->cow_made;
    vcl_driver_load ld = {
        .node = &j->dnode,
        .computer = j->computer,
        .reservation_id = j->id,
        .image_revision_id = j->revision_id,
        .file_stem = j->file_stem,
        .master_path = j->names.master_path,
        .cow_path = j->names.cow_path,
        .disk_format = m.req.disk_format,
        .handle = &m.req,
    };
    if (!transport_mkdir_p(j->t, j->cow_dir, 0755, e) ||
        !transport_mkdir_p(j->t, j->master_dir, 0755, e))
        return false;
    if (!j->drv->pre_define(hvdriver_host(), &ld, 0, e))
        return false;
    /* "master=M cow=C (master how); last progress": the cow after the master */
    char md[PATH_MAX * 2 + 1024];
    op_master_detail(j, &m, md, sizeof md);
    size_t ml = strlen("master=") + strlen(j->names.master_path);
    snprintf(detail, dlen, "%.*s cow=%s%s", (int)ml, md, j->names.cow_path, md + ml);
    return true;
}

/* 4. write_xml: the definition next to the node's other VCL files. */
static bool st_write_xml(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_prepare(j, e) || !own_xml(j, e))
        return false;
    /* mkdir_p refuses an unsafe directory, write_file anything but a regular
     * file at the XML path; libvirt (often root) appends to the console log
     * when the domain starts: nothing planted there may be followed. */
    if (!transport_mkdir_p(j->t, j->xml_dir, 0755, e) ||
        !transport_check_file(j->t, j->names.console_path, NULL, e) ||
        !transport_write_file(j->t, j->names.xml_path, j->domain_xml, strlen(j->domain_xml), 0644, e))
        return false;
    snprintf(detail, dlen, "%s (%zu bytes)", j->names.xml_path, strlen(j->domain_xml));
    return true;
}

/* 5. define: virDomainDefineXML; same name and UUID updates in place. */
static bool st_define(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_prepare(j, e) || !own_xml(j, e))
        return false;
    virDomainPtr same = NULL;
    if (!virt_lookup_name(j->conn, j->names.domain, &same, e))
        return false;
    if (same) {
        char uuid[VIR_UUID_STRING_BUFLEN] = "";
        virDomainGetUUIDString(same, uuid);
        virDomainFree(same);
        if (strcmp(uuid, j->domain_uuid) != 0) {
            /* a leftover of an earlier load of this computer: remove it */
            op_cleanup_stats s;
            if (!op_remove_computer_domains(j, &s, e))
                return false;
            log_info("define: removed %d earlier domain(s) named like this load", s.domains);
        }
    }
    if (!job_check_ours(j, e))
        return false;
    virDomainPtr dom = virDomainDefineXML(j->conn, j->domain_xml);
    if (!dom) {
        virt_error(e, NULL, "defining domain %s on node %s", j->names.domain, j->node);
        job_cpu_start_failed(j, j->domain_xml, e);
        return false;
    }
    virDomainFree(dom);
    snprintf(detail, dlen, "defined %s (uuid %s)", j->names.domain, j->domain_uuid);
    return true;
}

/* 6. power_on: start unless running. A domain that vanished since define
 * (removed by hand, or by a node reboot of a transient leftover) is defined
 * again from the stored XML, as long as its COW disk is still there. */
static bool st_power_on(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_prepare(j, e))
        return false;
    virDomainPtr dom = NULL;
    bool redefined = false;
    if (!virt_lookup_uuid(j->conn, j->domain_uuid, &dom, e))
        return false;
    if (!dom) {
        transport_stat_info st;
        if (!transport_stat(j->t, j->names.cow_path, &st, e))
            return false;
        if (!st.exists)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "domain %s and its COW disk %s vanished from node %s after "
                                 "define; rerun every stage: vclctl retry %lld --from-start",
                                 j->names.domain, j->names.cow_path, j->node, j->id);
        if (!own_xml(j, e) || !job_check_ours(j, e))
            return false;
        if (!(dom = virDomainDefineXML(j->conn, j->domain_xml)))
            return virt_error(e, NULL, "redefining vanished domain %s on node %s",
                              j->names.domain, j->node);
        log_warn("domain %s had vanished since define: defined it again", j->names.domain);
        redefined = true;
    }
    int before = 0;
    /* libvirt opens the console log at start: look at it right before */
    if (!transport_check_file(j->t, j->names.console_path, NULL, e)) {
        virDomainFree(dom);
        return false;
    }
    bool ok = virt_domain_state(dom, &before, e) && job_check_ours(j, e) &&
              virt_domain_start(dom, e);
    if (!ok)
        job_cpu_start_failed(j, j->domain_xml, e);
    if (ok)
        snprintf(detail, dlen, "%s%s", redefined ? "redefined, " : "",
                 before == VIR_DOMAIN_RUNNING ? "already running" : "started");
    virDomainFree(dom);
    return ok;
}

/* 7. post_load: wait until the guest shows it booted (per OS type). */
static bool st_post_load(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_prepare(j, e))
        return false;
    if (!op_wait_booted(j, detail, dlen, e))
        return false;
    return job_mark_post_load(j, e);
}

/* 8. node_status: ask libvirt, then write READY and the loaded revision. */
static bool st_node_status(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_prepare(j, e))
        return false;
    node_status_facts f;
    char status[16], reason[512];
    /* The COW this attempt's pre_define created (or found) backed by the
     * master, still the same file (device and inode: a file renamed onto
     * the path is another one): its backing file name, in its header, is
     * what pre_define saw. Nothing rewrites that header in place while the
     * domain runs on it (QEMU holds its write lock; qemu-img rebase would
     * need it), so no qemu-img info again. A resumed attempt (no pre_define
     * in this process), a changed file or an ssh node (no inodes) asks. */
    const char *known_backing = NULL;
    if (j->cow_made.has_id) {
        transport_stat_info now;
        vcl_error ignore;
        vcl_error_clear(&ignore);
        if (transport_lstat(j->t, j->names.cow_path, &now, &ignore) && now.is_reg && now.has_id &&
            now.dev == j->cow_made.dev && now.ino == j->cow_made.ino)
            known_backing = j->names.master_path;
    }
    if (!node_status_gather(j->conn, j->t, j->domain_uuid, j->names.domain, j->names.cow_path,
                            j->names.master_path, true, known_backing, &f, e))
        return false;
    node_status_decide(&f, j->names.cow_path, j->names.master_path, status, sizeof status, reason,
                       sizeof reason);
    snprintf(detail, dlen, "%s: %s", status, reason);
    if (strcmp(status, "READY") != 0) {
        vcl_error ignore;
        vcl_error_clear(&ignore);
        job_write_status(j, status, reason, false, &ignore);
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "node_status is %s: %s", status, reason);
    }
    return job_write_status(j, "READY", reason, true, e);
}

static const stage_def load_stages[] = {
    { "cleanup", op_stage_remove_domains, "destroy and undefine this computer's domains, remove their disks" },
    { "generate_xml", st_generate_xml, "build the domain XML (libxml2) and the driver's additions" },
    { "pre_define", st_pre_define, "master image on the node (from the repository), COW disk" },
    { "write_xml", st_write_xml, "write <xml dir>/<file base>.xml on the node" },
    { "define", st_define, "virDomainDefineXML" },
    { "power_on", st_power_on, "virDomainCreate unless already running" },
    { "post_load", st_post_load, "wait until the guest shows it booted (per OS type)" },
    { "node_status", st_node_status, "check with libvirt and write READY back" },
    { NULL, NULL, NULL },
};

/* A load cancelled mid-way leaves the node clean: remove what it (and any
 * earlier load of the computer) made. */
static bool load_on_cancel(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    op_cleanup_stats st;
    if (!job_prepare(j, e) || !op_remove_computer_domains(j, &st, e))
        return false;
    snprintf(detail, dlen, "load cancelled (reservation %lld); removed %d domain(s), %d file(s)",
             j->id, st.domains, st.files);
    return true;
}

const op_def op_load = { "load", load_stages, "load an image revision onto a computer",
                         load_on_cancel };
