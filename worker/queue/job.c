/* job.c: see job.h. */
#include "queue/job.h"
#include "node/nodecheck.h"
#include "queue/locks.h"
#include "node/cpuprobe.h"
#include "base/log.h"
#include "queue/statements.h"
#include "node/virt.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COPY UTIL_COPY

/* Repository paths: absolute, no "..", and only characters that are safe on a
 * command line even before quoting, plus glob wildcards. */
static bool repo_path_check(const char *p, vcl_error *e)
{
    if (p[0] != '/' || strstr(p, "/../") || (strlen(p) >= 3 && !strcmp(p + strlen(p) - 3, "/..")))
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "invalid repository path '%s' on the node row: it must be absolute "
                             "and have no '..' component", p);
    for (const char *c = p; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("/._-*?[]", *c)))
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "invalid repository path '%s' on the node row: character '%c' is "
                                 "not allowed", p, *c);
    return true;
}

bool job_load(job *j, db_conn *db, long long id, long long token, vcl_error *e)
{
    memset(j, 0, sizeof *j);
    j->id = id;
    j->token = token;
    j->db = db;
    db_params p;
    db_params_init(&p);
    db_param_ll(&p, id);
    PGresult *r = db_exec(db, SQL_JOB_LOAD, p.n, p.v, e);
    if (!r)
        return false;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return vcl_error_set(e, VCL_ERR_PERMANENT, "reservation %lld vanished", id);
    }
    int c = 0;
    j->attempts = (int)db_get_ll(r, 0, c++);
    j->max_attempts = (int)db_get_ll(r, 0, c++);
    COPY(j->operation, db_get_str(r, 0, c++));
    COPY(j->checkpoint, db_get_str(r, 0, c++));
    COPY(j->domain_uuid, db_get_str(r, 0, c++));
    /* reservation.domain_xml is never read back: a row is not trusted to
     * carry a domain definition; op_load builds its own (own_xml) */
    c++;
    j->domain_xml = NULL;
    j->computer_id = db_get_ll(r, 0, c++);
    COPY(j->computer, db_get_str(r, 0, c++));
    COPY(j->mac0, db_get_str(r, 0, c++));
    j->memory_mb = (int)db_get_ll(r, 0, c++);
    j->vcpus = (int)db_get_ll(r, 0, c++);
    COPY(j->rec_domain_name, db_get_str(r, 0, c++));
    COPY(j->rec_domain_uuid, db_get_str(r, 0, c++));
    COPY(j->rec_cow_path, db_get_str(r, 0, c++));
    COPY(j->rec_xml_path, db_get_str(r, 0, c++));
    j->node_id = db_get_ll(r, 0, c++);
    COPY(j->node, db_get_str(r, 0, c++));
    COPY(j->libvirt_uri, db_get_str(r, 0, c++));
    COPY(j->transport_kind, db_get_str(r, 0, c++));
    COPY(j->master_dir, db_get_str(r, 0, c++));
    COPY(j->cow_dir, db_get_str(r, 0, c++));
    COPY(j->xml_dir, db_get_str(r, 0, c++));
    COPY(j->network, db_get_str(r, 0, c++));
    const char *repos = db_get_str(r, 0, c++);
    j->image_id = db_get_ll(r, 0, c++);
    j->revision_id = db_get_ll(r, 0, c++);
    j->revision = (int)db_get_ll(r, 0, c++);
    COPY(j->image, db_get_str(r, 0, c++));
    COPY(j->os_type, db_get_str(r, 0, c++));
    COPY(j->file_stem, db_get_str(r, 0, c++));
    COPY(j->arg_snapshot, db_get_str(r, 0, c++));
    COPY(j->arg_description, db_get_str(r, 0, c++));
    COPY(j->arg_timeout, db_get_str(r, 0, c++));
    COPY(j->ssh_host, db_get_str(r, 0, c++));
    j->ssh_port = (int)db_get_ll(r, 0, c++);
    COPY(j->ssh_user, db_get_str(r, 0, c++));
    COPY(j->repo_location, db_get_str(r, 0, c++));
    COPY(j->cpu_mode, db_get_str(r, 0, c++));
    COPY(j->cpu_mode_resolved, db_get_str(r, 0, c++));

    if (repos && repos[0]) {
        size_t n = 1;
        for (const char *q = repos; *q; q++)
            n += *q == '\x1f';
        j->repo_paths = calloc(n, sizeof *j->repo_paths);
        char *dup = strdup(repos), *save = NULL;
        for (char *tok = strtok_r(dup, "\x1f", &save); tok && j->repo_paths;
             tok = strtok_r(NULL, "\x1f", &save))
            j->repo_paths[j->n_repo++] = strdup(tok);
        free(dup);
    }
    PQclear(r);
    return true;
}

void job_clear(job *j)
{
    if (!j)
        return;
    free(j->domain_xml);
    for (size_t i = 0; i < j->n_repo; i++)
        free(j->repo_paths[i]);
    free(j->repo_paths);
    virt_close(j->conn);
    transport_free(j->repo_t);
    transport_free(j->t);
    memset(j, 0, sizeof *j);
}

const transport_opts *job_transport_opts(job *j)
{
    j->topts = (transport_opts){ .host = j->ssh_host, .port = j->ssh_port, .user = j->ssh_user,
                                 .private_key = j->cfg ? j->cfg->ssh_private_key : NULL,
                                 .known_hosts = j->cfg ? j->cfg->ssh_known_hosts : NULL };
    return &j->topts;
}

/* transport guard: nothing changes on the node (or in the management
 * repository) once the job may no longer be ours */
static bool job_guard(void *ctx, vcl_error *e)
{
    return job_check_ours(ctx, e);
}

bool job_repo_transport(job *j, vcl_transport **out, vcl_error *e)
{
    *out = NULL;
    if (strcmp(j->repo_location, "management") != 0)
        return true;
    if (!j->repo_t && !(j->repo_t = transport_new("local", NULL, e)))
        return vcl_error_prefix(e, "node %s: the management repository", j->node);
    transport_set_guard(j->repo_t, job_guard, j);
    *out = j->repo_t;
    return true;
}

bool job_prepare(job *j, vcl_error *e)
{
    if (j->prepared)
        return true;
    /* a node's row (stage_image) has no computer: only the master's name */
    if ((j->computer_id && !name_check("computer", j->computer, e)) || !name_check("node", j->node, e))
        return false;
    for (size_t i = 0; i < j->n_repo; i++)
        if (!repo_path_check(j->repo_paths[i], e))
            return false;
    if (!j->t) {
        if (!(j->t = transport_new(j->transport_kind, job_transport_opts(j), e)))
            return vcl_error_prefix(e, "node %s", j->node);
        transport_set_guard(j->t, job_guard, j);
    }
    if (!j->conn && !(j->conn = virt_open(j->libvirt_uri, e)))
        return false;
    j->nh.t = j->t;
    j->nh.conn = j->conn;
    j->dnode.name = j->node;
    j->dnode.libvirt_uri = j->libvirt_uri;
    j->dnode.transport = j->transport_kind;
    j->dnode.handle = &j->nh;
    if (!j->drv && !(j->drv = hvdriver_select(j->drivers, &j->dnode, e)))
        return vcl_error_prefix(e, "no hypervisor driver accepts node %s", j->node);
    if (j->revision_id) {
        const char *ext = j->drv->disk_extension ? j->drv->disk_extension(0) : "qcow2";
        if (!j->computer_id) {
            memset(&j->names, 0, sizeof j->names);
            if (!names_master(j->file_stem, j->master_dir, ext, j->names.master_path,
                              sizeof j->names.master_path, e))
                return false;
        } else if (!names_build(j->computer, j->image_id, j->revision, j->file_stem, j->xml_dir,
                                j->cow_dir, j->master_dir, ext, &j->names, e))
            return false;
    }
    j->prepared = true;
    return true;
}

static bool record_cpu_probe(job *j, const char *chosen, const char *report, bool forget,
                             vcl_error *e)
{
    db_params p;
    db_params_init(&p);
    db_param_ll(&p, j->node_id);
    db_param_str(&p, chosen);
    db_param_str(&p, report);
    db_param_str(&p, forget ? "true" : "false");
    return db_run(j->db, SQL_NODE_CPU_PROBED, p.n, p.v, e);
}

bool job_cpu_mode(job *j, cpu_mode *out, vcl_error *e)
{
    if (!cpu_mode_parse(j->cpu_mode, out, e))
        return vcl_error_prefix(e, "node %s", j->node);
    if (out->kind != CPU_MODE_AUTO)
        return true;
    if (j->cpu_mode_resolved[0] && cpu_mode_parse(j->cpu_mode_resolved, out, &(vcl_error){ 0 }) &&
        out->kind != CPU_MODE_AUTO)
        return true;
    if (!job_prepare(j, e))
        return false;
    const char *type = j->drv->domain_type ? j->drv->domain_type(0) : "qemu";
    const char *emu = j->cfg && j->cfg->qemu_emulator && j->cfg->qemu_emulator[0]
                          ? j->cfg->qemu_emulator : NULL;
    cpu_probe_result pr;
    char report[1024];
    log_info("node %s: cpu_mode auto, not probed yet: probing which CPU mode starts a guest",
             j->node);
    cpu_probe_target pt = { .conn = j->conn, .node = j->node, .domain_type = type, .emulator = emu };
    if (!cpu_probe_auto(&pt, false, &pr, e))
        return vcl_error_prefix(e, "node %s", j->node);
    cpu_probe_report(&pr, report, sizeof report);
    vcl_error we;
    vcl_error_clear(&we);
    if (j->db && !record_cpu_probe(j, pr.chosen, report, false, &we))
        log_warn("node %s: recording the CPU probe failed: %s", j->node, we.msg);
    if (!pr.chosen[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "node %s: no CPU mode starts a guest (%s); run `vclctl node check %s`",
                             j->node, report, j->node);
    log_info("node %s: cpu_mode auto resolved to %s (%s)", j->node, pr.chosen, report);
    snprintf(j->cpu_mode_resolved, sizeof j->cpu_mode_resolved, "%s", pr.chosen);
    return cpu_mode_parse(pr.chosen, out, e);
}

void job_cpu_start_failed(job *j, const char *domain_xml, vcl_error *e)
{
    char used[CPU_MODE_STR_MAX];
    cpu_mode_from_domain_xml(domain_xml, used, sizeof used);
    if (!cpu_start_error(e, 0, j->node, used))
        return;
    if (strcmp(j->cpu_mode, "auto") == 0 && j->db) {
        char report[512];
        vcl_error we;
        vcl_error_clear(&we);
        snprintf(report, sizeof report, "%s: chosen by the probe, then a guest failed to start "
                 "with it (reservation %lld); probed again at the next load", used, j->id);
        if (!record_cpu_probe(j, "", report, true, &we))
            log_warn("node %s: forgetting the CPU probe failed: %s", j->node, we.msg);
    }
}

bool job_check_ours(job *j, vcl_error *e)
{
    if (!j->still_ours)
        return true;   /* not run by the pool (tests, vclctl) */
    if (!j->still_ours(j->still_ours_ctx)) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "reservation %lld is no longer ours (lease lost or stage "
                      "deadline passed): stopped before touching node %s", j->id, j->node);
        return false;
    }
    /* The fencing token, in the database, right before a destructive step:
     * a cancel, a takeover or a lease that ran out between heartbeats. */
    bool ours = false;
    vcl_error de;
    vcl_error_clear(&de);
    if (!j->db || !locks_lease_held(j->db, j->id, j->token, j->cancel_cleanup, &ours, &de)) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "reservation %lld: cannot check its lease in the database "
                      "(%s): stopped before touching node %s", j->id, j->db ? de.msg : "no connection",
                      j->node);
        return false;
    }
    if (!ours) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "reservation %lld no longer runs under lease %lld in the "
                      "database (cancelled, reset or taken over): stopped before touching node %s",
                      j->id, j->token, j->node);
        return false;
    }
    return true;
}

bool job_lost(const job *j, vcl_error *e)
{
    return vcl_error_set(e, VCL_ERR_LOST, "reservation %lld: this worker no longer holds the "
                         "lease (a fenced write matched no row): stopped without writing", j->id);
}

bool job_fenced_ok(job *j, PGresult *r, vcl_error *e)
{
    if (!r)
        return false;
    bool ok = atoi(PQcmdTuples(r)) > 0;
    PQclear(r);
    return ok || job_lost(j, e);
}

static bool fenced(job *j, const char *sql, db_params *p, vcl_error *e)
{
    return job_fenced_ok(j, db_exec(j->db, sql, p->n, p->v, e), e);
}

void job_fence_params(const job *j, db_params *p)
{
    db_params_init(p);
    db_param_ll(p, j->id);
    db_param_ll(p, j->token);
}

bool job_store_xml(job *j, const char *xml, vcl_error *e)
{
    db_params p;
    job_fence_params(j, &p);
    db_param_str(&p, xml);
    if (!fenced(j, SQL_STORE_XML, &p, e))
        return false;
    free(j->domain_xml);
    j->domain_xml = strdup(xml);
    return true;
}

bool job_record_ownership(job *j, vcl_error *e)
{
    char reason[256];
    snprintf(reason, sizeof reason, "loading %s:%d (reservation %lld)", j->image, j->revision, j->id);
    db_params p;
    job_fence_params(j, &p);
    db_param_str(&p, j->names.domain);
    db_param_str(&p, j->domain_uuid);
    db_param_str(&p, j->names.cow_path);
    db_param_str(&p, j->names.master_path);
    db_param_str(&p, j->names.xml_path);
    db_param_str(&p, reason);
    return fenced(j, SQL_RECORD_OWNERSHIP, &p, e);
}

bool job_clear_ownership(job *j, vcl_error *e)
{
    char reason[256];
    snprintf(reason, sizeof reason, "domains removed by reservation %lld (%s)", j->id, j->operation);
    db_params p;
    job_fence_params(j, &p);
    db_param_str(&p, reason);
    return fenced(j, SQL_CLEAR_OWNERSHIP, &p, e);
}

bool job_mark_post_load(job *j, vcl_error *e)
{
    db_params p;
    job_fence_params(j, &p);
    return fenced(j, SQL_MARK_POST_LOAD, &p, e);
}

bool job_write_status(job *j, const char *status, const char *reason, bool set_revision,
                      vcl_error *e)
{
    db_params p;
    job_fence_params(j, &p);
    db_param_str(&p, status);
    db_param_str(&p, reason);
    db_param_bool(&p, set_revision);
    return fenced(j, SQL_WRITE_STATUS, &p, e);
}

bool job_set_maintenance(job *j, const char *stage, vcl_error *e)
{
    char reason[256];
    snprintf(reason, sizeof reason, "in maintenance since reservation %lld (vclctl computer set %s "
             "--state available puts it back)", j->id, j->computer);
    db_params p;
    job_fence_params(j, &p);
    db_param_str(&p, stage);
    db_param_str(&p, reason);
    return fenced(j, SQL_SET_MAINTENANCE, &p, e);
}

bool job_record_node_check(job *j, const node_check_report *rep, vcl_error *e)
{
    char report[1024] = "";
    char *cols[4] = { NULL, NULL, NULL, NULL };
    if (rep->cpu_probed)
        cpu_probe_report(&rep->cpu, report, sizeof report);
    for (char *q = report; *q; q++)
        if ((unsigned char)*q < 0x20)
            *q = ' ';
    if (!node_check_columns(rep, cols))
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
    db_params p;
    job_fence_params(j, &p);
    for (int k = 0; k < 4; k++)
        db_param_str(&p, cols[k]);
    db_param_str(&p, rep->cpu_probed ? "true" : "false");
    db_param_str(&p, rep->cpu.chosen);
    db_param_str(&p, report);
    bool ok = fenced(j, SQL_NODE_CHECKED, &p, e);
    node_check_columns_free(cols);
    return ok;
}

/* ---------------- progress of the running stage ---------------- */

static bool progress_write(job *j, const char *detail, bool *warned)
{
    if (!j || !j->db || db_is_broken(j->db))
        return false;   /* the stage's next fenced write reconnects */
    db_params p;
    vcl_error e;
    vcl_error_clear(&e);
    job_fence_params(j, &p);
    db_param_str(&p, detail);
    PGresult *r = db_exec(j->db, SQL_STAGE_PROGRESS, p.n, p.v, &e);
    if (!r) {
        if (!warned || !*warned)
            log_warn("cannot write the stage's progress (the stage goes on): %s", e.msg);
        if (warned)
            *warned = true;
        return false;
    }
    bool written = db_get_bool(r, 0, 0);
    PQclear(r);
    return written;
}

bool job_progress(job *j, const char *detail)
{
    return progress_write(j, detail, NULL);
}

void job_copy_progress_init(job_copy_progress *p, job *j, const char *what)
{
    memset(p, 0, sizeof *p);
    p->j = j;
    COPY(p->what, what);
    p->from = -1;
    progress_meter_init(&p->m, util_mono_s(), 1.0);
}

void job_copy_progress_phase(job_copy_progress *p, const char *what)
{
    COPY(p->what, what);
    p->from = -1;
    progress_meter_init(&p->m, util_mono_s(), 1.0);
}

void job_copy_progress_note(job_copy_progress *p, const char *line)
{
    COPY(p->last, line);
    if (progress_write(p->j, line, &p->warned))
        p->writes++;
}

void job_copy_progress_fn(void *opaque, long long done, long long total)
{
    job_copy_progress *p = opaque;
    double now = util_mono_s();
    if (!progress_meter_due(&p->m, now, done, total))
        return;
    char line[512];
    if (p->from < 0)
        p->from = done;   /* the first call: where this copy starts (resume) */
    progress_copy_line(done, total, p->from, now - p->m.start, line, sizeof line);
    if (p->what[0]) {
        size_t n = strlen(line);
        snprintf(line + n, sizeof line - n, " (%s)", p->what);
    }
    job_copy_progress_note(p, line);
}
