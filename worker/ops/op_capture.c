/* op_capture.c: the capture operation (VCL's libvirt capture): turn a
 * computer's disk (its COW and the master under it) into a new, standalone
 * master image, publish it on the node and in the repository, and register
 * it as the next revision of the image.
 *
 *   shutdown  check the computer's recorded domain; pick the target (revision
 *             max + 1, stem "<image>-v<rev>" or args {"file_stem": ...}) and
 *             record it in vcl.capture before any file is written; then shut
 *             the guest down (ACPI every 5 s, destroy after args
 *             {"shutdown_timeout": N}, default 60 s)
 *   flatten   qemu-img convert of the COW with its backing chain into
 *             "<master dir>/<stem>.qcow2.tmp-vcl+<random>", recorded in
 *             vcl.temp_file before it is created (node/temps.h)
 *   verify    qemu-img check, qcow2, no backing file, the COW's virtual size
 *   publish   rename into "<master dir>/<stem>.qcow2", never over a file
 *   upload    into the first repository path the same way (temp, verify,
 *             no-replace rename); skipped when no repository is configured
 *   register  INSERT the vcl.image_revision row (production false)
 *   after     args {"after": "off"} (default): leave the domain off, computer
 *             RELOAD "captured into <stem>"; "reload": queue a load of the new
 *             revision on the computer
 *
 * Safe to rerun after a crash at any instant, because:
 *  - the target is chosen once: the first stage records it in vcl.capture
 *    (fenced) and every later stage and rerun reads it back; the check that
 *    no file of that name exists (on the node or in the repository) runs only
 *    before the row exists. From then on a file at the target path can only
 *    be ours: it is created by a no-replace rename of our own temp file,
 *    after verification, so a partial file is never at a final name;
 *  - flatten always rebuilds its temp file (a half-written qcow2 may pass
 *    `qemu-img check`) under a new recorded name unless the final master is
 *    already there; an earlier run's temp (its lease is gone) is removed by
 *    the stale-temp cleanup; verify and publish find the temp by its record
 *    (this reservation's, under any lease) and adopt it for their lease;
 *  - register inserts with ON CONFLICT DO NOTHING and then adopts the row
 *    only when it is exactly ours (same image, revision and stem);
 *  - after=reload queues its load in the statement that records its id in
 *    vcl.capture, so it is queued once.
 * Every write is fenced on the reservation's lease; the rows are read and
 * written through job_db.h (the seam unit tests fake). */
#include "node/domxml.h"
#include "node/image.h"
#include "queue/job.h"
#include "base/log.h"
#include "ops/op_capture.h"
#include "ops/op_common.h"
#include "queue/stage.h"
#include "queue/job_db.h"
#include "node/virt.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CAPTURE_SHUTDOWN_DEFAULT_S 60
#define CAPTURE_SHUTDOWN_MAX_S 3600

/* The args, checked: bad input is a permanent error that changes nothing. */
static bool parse_args(job *j, capture_facts *f, const char *after, const char *stem,
                       const char *timeout, vcl_error *e)
{
    if (!after[0] || strcmp(after, "off") == 0 || strcmp(after, "reload") == 0)
        snprintf(f->after, sizeof f->after, "%s", after[0] ? after : "off");
    else
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "invalid \"after\" '%.40s' in the capture's args: give \"off\" "
                             "(leave the computer off) or \"reload\" (load the new revision)",
                             after);
    if (stem[0] && !name_check("capture file stem", stem, e))
        return vcl_error_prefix(e, "reservation %lld args", j->id);
    snprintf(f->arg_stem, sizeof f->arg_stem, "%s", stem);
    f->shutdown_timeout = CAPTURE_SHUTDOWN_DEFAULT_S;
    if (timeout[0]) {
        size_t n = strspn(timeout, "0123456789");
        long v = n > 0 && n <= 4 && timeout[n] == '\0' ? strtol(timeout, NULL, 10) : -1;
        if (v < 0 || v > CAPTURE_SHUTDOWN_MAX_S)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "invalid shutdown_timeout '%.40s' in the capture's args: whole "
                                 "seconds from 0 (destroy at once) to %d", timeout,
                                 CAPTURE_SHUTDOWN_MAX_S);
        f->shutdown_timeout = (int)v;
    }
    return true;
}

/* <dir>/<stem>.<ext> into final (PATH_MAX bytes). A path that does not
 * fit is a permanent error, never a truncated path. Temp names are random
 * and recorded (node/temps.h: temps_name, temps_record). */
static bool target_paths(const char *dir, const char *stem, const char *ext, char *final,
                         vcl_error *e)
{
    if (!util_join_path(final, PATH_MAX, dir, stem, ext))
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "the path of '%s.%s' under '%.200s' would exceed %d bytes", stem, ext,
                             dir, PATH_MAX - 1);
    return true;
}

static bool set_paths(job *j, capture_facts *f, vcl_error *e)
{
    f->tmp[0] = '\0';
    return target_paths(j->master_dir, f->stem, f->ext, f->final, e);
}

bool op_capture_load_facts(job *j, capture_facts *f, long long fallback_revision_id,
                           vcl_error *e)
{
    capture_row row;
    memset(f, 0, sizeof *f);
    f->fmt = j->drv && j->drv->disk_format ? j->drv->disk_format(0) : "qcow2";
    f->ext = j->drv && j->drv->disk_extension ? j->drv->disk_extension(0) : "qcow2";
    if (!job_capture_facts(j, fallback_revision_id, &row, e))
        return false;
    f->source_revision_id = row.source_revision_id;
    f->image_id = row.image_id;
    snprintf(f->image, sizeof f->image, "%s", row.image);
    f->planned = row.planned;
    f->revision = row.revision;
    snprintf(f->stem, sizeof f->stem, "%s", row.stem);
    f->new_revision_id = row.new_revision_id;
    f->reload_id = row.reload_id;
    if (!parse_args(j, f, row.after, row.file_stem, row.shutdown_timeout, e))
        return false;
    if (f->planned) {
        if (!name_check("capture file stem", f->stem, e) || !set_paths(j, f, e))
            return false;
    }
    return true;
}

/* Facts for stages after the first: the target must have been recorded. */
static bool load_plan(job *j, capture_facts *f, vcl_error *e)
{
    if (!job_prepare(j, e) || !op_capture_load_facts(j, f, 0, e))
        return false;
    if (!f->planned)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "capture %lld has no recorded target (vcl.capture) although its "
                             "checkpoint is past shutdown; rerun every stage: vclctl retry %lld "
                             "--from-start", j->id, j->id);
    return true;
}

/* f->tmp = the temp of f->final this reservation recorded (flatten), under
 * any of its leases, adopted for the current one so that no cleanup takes it
 * while this lease lives; "" when none. */
static bool capture_temp(job *j, capture_facts *f, vcl_error *e)
{
    if (!job_temp_mine(j, f->final, f->tmp, sizeof f->tmp, e))
        return false;
    return !f->tmp[0] || job_temp_record(j, f->tmp, e);
}

/* ---- the domain and its disk ---- */

static bool domain_first_disk(job *j, virDomainPtr dom, char *disk, size_t len, vcl_error *e)
{
    char *xml = virt_domain_xml(dom, e);
    char **disks = NULL;
    size_t n = 0;
    if (!xml)
        return false;
    bool ok = domxml_disk_files(xml, &disks, &n);
    free(xml);
    if (!ok || n == 0) {
        util_strv_free(disks, n);
        return vcl_error_set(e, VCL_ERR_PERMANENT, "domain %s of computer %s has no disk file to "
                             "capture", virDomainGetName(dom), j->computer);
    }
    if (n > 1)
        log_warn("domain %s has %zu disks: capturing the first, %s", virDomainGetName(dom), n,
                 disks[0]);
    snprintf(disk, len, "%s", disks[0]);
    util_strv_free(disks, n);
    return true;
}

/* ---- files ---- */

/* Is path a finished master: passes qemu-img check, is a FMT image without
 * a backing file and (when want_vsize > 0) of that virtual size? *good false
 * with why in why. false only when the commands could not run. */
/* master_verify on transport tp (the node's, or this host's for a
 * management repository). */
static bool master_verify_on(job *j, vcl_transport *tp, const char *path, const char *fmt,
                             long long want_vsize, bool *good, qimg_info *qi, char *why,
                             size_t wlen, vcl_error *e);

static bool master_verify(job *j, const char *path, const char *fmt, long long want_vsize,
                          bool *good, qimg_info *qi, char *why, size_t wlen, vcl_error *e)
{
    return master_verify_on(j, j->t, path, fmt, want_vsize, good, qi, why, wlen, e);
}

static bool master_verify_on(job *j, vcl_transport *tp, const char *path, const char *fmt,
                             long long want_vsize, bool *good, qimg_info *qi, char *why,
                             size_t wlen, vcl_error *e)
{
    bool passed = false;
    vcl_error ce;
    vcl_error_clear(&ce);
    *good = false;
    why[0] = '\0';
    if (!qimg_check_path(tp, path, fmt, true, op_command_timeout(j), &passed, &ce)) {
        *e = ce;
        return false;
    }
    if (!passed) {
        snprintf(why, wlen, "%s", ce.msg);
        return true;
    }
    if (!qimg_info_get(tp, path, qi, e))
        return false;
    if (strcmp(qi->format, fmt) != 0)
        snprintf(why, wlen, "%s is %s, not %s", path, qi->format, fmt);
    else if (qi->backing_file[0])
        snprintf(why, wlen, "%s still has a backing file (%s)", path, qi->backing_file);
    else if (want_vsize > 0 && qi->virtual_size != want_vsize)
        snprintf(why, wlen, "%s has a virtual size of %lld bytes, the captured disk %lld", path,
                 qi->virtual_size, want_vsize);
    else
        *good = true;
    return true;
}

/* Virtual size of the disk being captured (0 when its domain or disk is
 * gone: a later load replaced them; then sizes are not compared). */
static bool source_vsize(job *j, long long *vsize, vcl_error *e)
{
    virDomainPtr dom = NULL;
    char disk[PATH_MAX];
    qimg_info qi;
    *vsize = 0;
    if (!op_recorded_domain(j, &dom, e))
        return false;
    if (!dom)
        return true;
    bool ok = domain_first_disk(j, dom, disk, sizeof disk, e);
    virDomainFree(dom);
    if (!ok)
        return false;
    transport_stat_info st;
    if (!transport_stat(j->t, disk, &st, e))
        return false;
    if (!st.exists)
        return true;
    if (!qimg_info_get(j->t, disk, &qi, e))
        return false;
    *vsize = qi.virtual_size;
    return true;
}

static bool file_exists(job *j, const char *path, bool *exists, vcl_error *e)
{
    transport_stat_info st;
    if (!transport_stat(j->t, path, &st, e))
        return false;
    *exists = st.exists;
    return true;
}

/* The directory uploads go to: the first repository path (its first match
 * when it holds wildcards). "" when the node has no repository. */
static bool repo_dir(job *j, char *dir, size_t len, vcl_error *e)
{
    dir[0] = '\0';
    if (j->n_repo == 0)
        return true;
    const char *first = j->repo_paths[0];
    if (!strpbrk(first, "*?[")) {
        snprintf(dir, len, "%s", first);
        return true;
    }
    char **paths = NULL;
    size_t n = 0;
    vcl_transport *rt = NULL;
    if (!job_repo_transport(j, &rt, e))
        return false;
    if (!rt)
        rt = j->t;
    if (!transport_glob(rt, first, &paths, &n, e))
        return false;
    for (size_t i = 0; i < n && !dir[0]; i++) {
        transport_stat_info st;
        if (!transport_stat(rt, paths[i], &st, e)) {
            util_strv_free(paths, n);
            return false;
        }
        if (st.exists && st.is_dir)
            snprintf(dir, len, "%s", paths[i]);
    }
    util_strv_free(paths, n);
    if (!dir[0])
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "the first repository path of node %s, %s, matches no directory: "
                             "nowhere to upload the capture", j->node, first);
    return true;
}

/* ---- stages ---- */

/* One try at picking the target: *lost true when another capture of the
 * image took that revision (or default stem) between our look and our insert. */
static bool plan_try(job *j, capture_facts *f, bool *lost, vcl_error *e)
{
    *lost = false;
    if (!job_capture_next_revision(j, f->image_id, &f->revision, e))
        return false;
    if (f->arg_stem[0])
        snprintf(f->stem, sizeof f->stem, "%s", f->arg_stem);
    else if (snprintf(f->stem, sizeof f->stem, "%s-v%d", f->image, f->revision) >=
             (int)sizeof f->stem)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "the file stem %s-v%d would be longer than %d characters: name one "
                             "(args {\"file_stem\": ...}, vclctl capture --file-stem)",
                             f->image, f->revision, NAME_MAX_LEN);
    if (!name_check("capture file stem", f->stem, e) || !set_paths(j, f, e))
        return false;

    /* the stem must be new in the database ... */
    char used[256] = "";
    if (!job_capture_stem_used(j, f->stem, used, sizeof used, e))
        return false;
    if (used[0]) {
        /* a stem made from a revision another capture just took: lost */
        *lost = !f->arg_stem[0];
        return vcl_error_set(e, *lost ? VCL_ERR_RETRYABLE : VCL_ERR_PERMANENT,
                             "cannot capture into file stem %s: it is already %s; choose another "
                             "(vclctl capture --file-stem)", f->stem, used);
    }
    /* ... and no file may have its name, on the node or in the repository */
    image_req req;
    image_location loc;
    memset(&req, 0, sizeof req);
    req.t = j->t;
    if (!job_repo_transport(j, &req.repo_t, e))
        return false;
    req.master_path = f->final;
    req.file_stem = f->stem;
    req.disk_format = f->fmt;
    req.repo_paths = (const char *const *)j->repo_paths;
    req.n_repo = j->n_repo;
    req.reservation_id = j->id;
    if (!image_locate(&req, &loc, e))
        return false;
    if (loc.at != IMAGE_AT_NONE && !f->arg_stem[0]) {
        /* Made by a capture that took this revision since we looked? */
        if (!job_capture_stem_used(j, f->stem, used, sizeof used, e))
            return false;
        if (used[0] && strstr(used, "capture")) {
            *lost = true;
            return vcl_error_set(e, VCL_ERR_RETRYABLE, "revision %d taken meanwhile",
                                 f->revision);
        }
    }
    if (loc.at != IMAGE_AT_NONE)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "the capture target %s already exists %s (%s); a capture never "
                             "overwrites an image: choose another file stem (vclctl capture "
                             "--file-stem) or remove that file", f->stem,
                             loc.at == IMAGE_AT_NODE ? "on the node"
                             : req.repo_t ? "in the repository on the management host"
                                          : "in the repository",
                             loc.path);

    capture_target t = { .image_id = f->image_id, .revision = f->revision, .stem = f->stem,
                         .source_revision_id = f->source_revision_id };
    capture_taken taken = CAPTURE_TAKEN_NONE;
    if (!job_capture_plan(j, &t, &taken, e)) {
        /* A stem the args named and someone else took is for good;
         * a revision (or the stem made from it) is simply lost. */
        if (taken == CAPTURE_TAKEN_STEM && f->arg_stem[0])
            e->cls = VCL_ERR_PERMANENT;
        else if (taken != CAPTURE_TAKEN_NONE)
            *lost = true;
        return false;
    }
    f->planned = true;
    return true;
}

/* See op_capture.h. */
bool op_capture_plan_target(job *j, capture_facts *f, vcl_error *e)
{
    bool lost = false;
    if (!f->image_id)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "computer %s has no loaded image revision recorded (computer "
                             "current_revision_id, or the domain's metadata): nothing says which "
                             "image to capture into; load it first", j->computer);
    for (int i = 1; i <= CAPTURE_PLAN_TRIES; i++) {
        if (plan_try(j, f, &lost, e)) {
            log_info("capture %lld: computer %s into %s:%d (file stem %s)", j->id, j->computer,
                     f->image, f->revision, f->stem);
            return true;
        }
        if (!lost)
            return false;
        log_info("capture %lld: revision %d of %s was just taken by another capture; picking "
                 "the next", j->id, f->revision, f->image);
    }
    return vcl_error_set(e, VCL_ERR_RETRYABLE,
                         "captures of image %s kept taking the next revision first (%d tries)",
                         f->image, CAPTURE_PLAN_TRIES);
}

/* 1. shutdown: the domain, the target, the guest off. */
static bool st_shutdown(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    capture_facts f;
    virDomainPtr dom = NULL;
    char how[512] = "", reason[512];
    bool ok = false;

    if (!job_prepare(j, e) || !op_capture_load_facts(j, &f, 0, e))
        return false;
    if (!op_require_domain(j, &dom, e))
        return false;
    if (!f.planned && !f.image_id) {
        /* No revision on the computer row (a load that did not reach
         * READY): the domain's metadata names the revision it was made from. */
        char *xml = virt_domain_xml(dom, e);
        domxml_owner o;
        bool have = xml && domxml_read_owner(xml, &o) && o.image_revision_id > 0;
        free(xml);
        if (have && !op_capture_load_facts(j, &f, o.image_revision_id, e))
            goto cleanup;
    }
    if (!f.planned && !op_capture_plan_target(j, &f, e))
        goto cleanup;
    snprintf(reason, sizeof reason, "capturing into %s (%s:%d) by reservation %lld", f.stem,
             f.image, f.revision, j->id);
    if (!job_write_status(j, "RELOAD", reason, false, e))
        goto cleanup;
    if (!op_shutdown_domain(j, dom, f.shutdown_timeout, how, sizeof how, e))
        goto cleanup;
    snprintf(detail, dlen, "target %s:%d file stem %s; %s", f.image, f.revision, f.stem, how);
    ok = true;
cleanup:
    virDomainFree(dom);
    return ok;
}

/* 2. flatten: COW + backing chain -> one standalone image (temp name). */
static bool st_flatten(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    capture_facts f;
    virDomainPtr dom = NULL;
    char disk[PATH_MAX], how[512], why[1024], dir[PATH_MAX];
    qimg_info src, out;
    bool ok = false, exists = false, good = false, tmp_made = false, tmp_rec = false;
    node_temps tt = op_temps(j);

    if (!load_plan(j, &f, e))
        return false;
    if (!file_exists(j, f.final, &exists, e))
        return false;
    if (exists) {
        if (!master_verify(j, f.final, f.fmt, 0, &good, &out, why, sizeof why, e))
            return false;
        if (!good)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "%s exists but is not a finished master (%s); it is never "
                                 "overwritten: inspect it", f.final, why);
        snprintf(detail, dlen, "%s already made (%lld bytes virtual): nothing to flatten", f.final,
                 out.virtual_size);
        return true;
    }
    if (!op_require_domain(j, &dom, e))
        return false;
    /* off, whatever happened since shutdown (someone may have started it) */
    if (!op_shutdown_domain(j, dom, f.shutdown_timeout, how, sizeof how, e) ||
        !domain_first_disk(j, dom, disk, sizeof disk, e))
        goto cleanup;
    /* qemu-img reads it: a regular file, never a link or FIFO put there */
    if (!transport_check_file(j->t, disk, NULL, e) || !qimg_info_get(j->t, disk, &src, e)) {
        vcl_error_prefix(e, "the disk to capture");
        goto cleanup;
    }
    snprintf(dir, sizeof dir, "%s", f.final);
    *strrchr(dir, '/') = '\0';
    if (!transport_mkdir_p(j->t, dir[0] ? dir : "/", 0755, e))
        goto cleanup;
    /* A temp file of an earlier run (its lease is gone) may be partial:
     * start over under a new name, recorded before it is created. A temp
     * this lease recorded in an earlier try of this stage was removed then. */
    if (!temps_remove_stale(j->t, &tt, f.final, e) ||
        !temps_name(f.final, "", f.tmp, sizeof f.tmp, e) ||
        !(tmp_rec = temps_record(&tt, f.tmp, e)))
        goto cleanup;
    log_info("capture %lld: flattening %s (%s, backing %s) into %s", j->id, disk, src.format,
             src.backing_file[0] ? src.backing_file : "none", f.tmp);
    const char *conv[] = { "qemu-img", "convert", "-t", "writeback", "-f", src.format, "-O", f.fmt,
                           "--", disk, f.tmp, NULL };
    tmp_made = true;
    if (!transport_run(j->t, conv, op_command_timeout(j), VCL_ERR_RETRYABLE, NULL, e))
        goto cleanup;
    tmp_made = false;
    snprintf(detail, dlen, "%s; flattened %s (backing %s) into %s", how, disk,
             src.backing_file[0] ? src.backing_file : "none", f.tmp);
    ok = true;
cleanup:
    if (tmp_made)   /* kept recorded when all went well: verify and publish use it */
        temps_done(j->t, &tt, f.tmp, true);
    else if (tmp_rec && !ok)
        temps_done(j->t, &tt, f.tmp, false);
    virDomainFree(dom);
    return ok;
}

/* 3. verify: the temp file (or the published master) is a sound,
 * standalone image of the captured disk's size. */
static bool st_verify(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    capture_facts f;
    char why[1024];
    qimg_info qi;
    long long vsize = 0;
    bool exists = false, good = false;
    const char *path;

    if (!load_plan(j, &f, e) || !source_vsize(j, &vsize, e))
        return false;
    if (!file_exists(j, f.final, &exists, e))
        return false;
    if (!exists && !capture_temp(j, &f, e))
        return false;
    path = exists ? f.final : f.tmp;
    if (!exists) {
        if (f.tmp[0] && !file_exists(j, f.tmp, &exists, e))
            return false;
        if (!exists)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "neither %s nor its temporary file %s exists; rerun every stage "
                                 "to flatten again: vclctl retry %lld --from-start", f.final,
                                 f.tmp[0] ? f.tmp : "(none recorded)", j->id);
    }
    if (!master_verify(j, path, f.fmt, vsize, &good, &qi, why, sizeof why, e))
        return false;
    if (!good) {
        if (path == f.tmp) {
            node_temps tt = op_temps(j);
            temps_done(j->t, &tt, f.tmp, true);
        }
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "the captured image fails verification: %s%s", why,
                             path == f.tmp ? "; removed it: rerun every stage to flatten again "
                                             "(vclctl retry ID --from-start)"
                                           : "");
    }
    transport_stat_info st;
    if (!transport_stat(j->t, path, &st, e))
        return false;
    snprintf(detail, dlen, "%s: qemu-img check passed, %s, no backing file, %lld bytes virtual, "
             "%lld bytes on disk", path, qi.format, qi.virtual_size, st.size);
    return true;
}

/* 4. publish: the temp file becomes the master, never over another file. */
static bool st_publish(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    capture_facts f;
    bool exists = false, tmp_exists = false, existed = false;
    node_temps tt = op_temps(j);

    if (!load_plan(j, &f, e) || !capture_temp(j, &f, e))
        return false;
    if (!file_exists(j, f.final, &exists, e) ||
        (f.tmp[0] && !file_exists(j, f.tmp, &tmp_exists, e)))
        return false;
    if (exists) {
        /* Ours: the no-replace rename below made it before a crash (the
         * target was free when it was recorded). */
        if (f.tmp[0])
            temps_done(j->t, &tt, f.tmp, tmp_exists);
        snprintf(detail, dlen, "%s already published", f.final);
        return true;
    }
    if (!tmp_exists)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "the temp file of %s (%s) is gone before it was published; rerun "
                             "every stage: vclctl retry %lld --from-start", f.final,
                             f.tmp[0] ? f.tmp : "none recorded", j->id);
    if (!transport_rename_noreplace(j->t, f.tmp, f.final, &existed, e)) {
        if (existed)
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s appeared while the capture ran; it is never overwritten (the "
                          "capture is left in %s)", f.final, f.tmp);
        return false;
    }
    temps_done(j->t, &tt, f.tmp, false);
    snprintf(detail, dlen, "published %s", f.final);
    return true;
}

/* upload for a repository on the management host: copy the published
 * master from the node into "<dir>/<stem>.<ext>.tmp-vcl+<random>" here
 * (recorded like a node's temp, under the job's node: the random name
 * cannot collide with one on the node; the stale ones of an earlier run
 * are removed here first)
 * (transport_copy_out: SFTP for an ssh node), compare sizes, verify with
 * qemu-img here, rename without replacing. */
static bool upload_to_management(job *j, capture_facts *f, const char *dir, char *detail,
                                 size_t dlen, vcl_error *e)
{
    char dst[PATH_MAX], tmp[PATH_MAX], why[1024];
    qimg_info mq, rq;
    transport_stat_info ns, ls;
    vcl_transport *rt = NULL;
    bool good = false, existed = false, tmp_made = false, tmp_rec = false, ok = false;
    node_temps tt = op_temps(j);

    if (!job_repo_transport(j, &rt, e))
        return false;
    if (!target_paths(dir, f->stem, f->ext, dst, e))
        return false;
    if (!qimg_info_get(j->t, f->final, &mq, e))
        return vcl_error_prefix(e, "the published master");
    if (!transport_stat(rt, dst, &ls, e))
        return false;
    if (ls.exists) {
        if (!master_verify_on(j, rt, dst, f->fmt, mq.virtual_size, &good, &rq, why, sizeof why, e))
            return false;
        if (!good)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "the management repository holds %s but it is not a copy of %s "
                                 "(%s); it is never overwritten: inspect it", dst, f->final, why);
        snprintf(detail, dlen, "%s already in the management repository (verified, %lld bytes "
                 "virtual)", dst, rq.virtual_size);
        return true;
    }
    if (!transport_mkdir_p(rt, dir, 0755, e) || !transport_stat(j->t, f->final, &ns, e) ||
        !temps_remove_stale(rt, &tt, dst, e) || !temps_name(dst, "", tmp, sizeof tmp, e) ||
        !(tmp_rec = temps_record(&tt, tmp, e)))
        goto cleanup;
    log_info("capture %lld: copying %s from node %s to the management repository: %s", j->id,
             f->final, j->node, dst);
    tmp_made = true;
    job_copy_progress prog;
    job_copy_progress_init(&prog, j, "from the node to the management repository");
    if (!transport_copy_out(j->t, f->final, tmp, job_copy_progress_fn, &prog, e)) {
        vcl_error_prefix(e, "copying %s from the node", f->final);
        goto cleanup;
    }
    if (!transport_stat(rt, tmp, &ls, e))
        goto cleanup;
    if (!ls.exists || ls.size != ns.size) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "the copy %s is %lld bytes, %s on the node %lld", tmp,
                      ls.exists ? ls.size : -1LL, f->final, ns.size);
        goto cleanup;
    }
    if (!master_verify_on(j, rt, tmp, f->fmt, mq.virtual_size, &good, &rq, why, sizeof why, e))
        goto cleanup;
    if (!good) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "the management repository copy fails verification: %s",
                      why);
        goto cleanup;
    }
    if (!transport_rename_noreplace(rt, tmp, dst, &existed, e)) {
        if (existed)
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s appeared in the management repository while the capture ran; it "
                          "is never overwritten", dst);
        goto cleanup;
    }
    tmp_made = false;
    snprintf(detail, dlen, "copied %s from the node to the management host: %s (verified, %lld "
             "bytes, %lld bytes virtual)%s%s", f->final, dst, ls.size, rq.virtual_size,
             prog.last[0] ? "; " : "", prog.last);
    ok = true;
cleanup:
    if (tmp_rec)
        temps_done(rt, &tt, tmp, tmp_made);
    return ok;
}

/* 5. upload: a copy in the first repository path (temp, verify, rename). */
static bool st_upload(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    capture_facts f;
    char dir[PATH_MAX], dst[PATH_MAX], tmp[PATH_MAX], why[1024];
    qimg_info mq, rq;
    bool exists = false, good = false, existed = false, tmp_made = false, tmp_rec = false;
    bool ok = false;
    node_temps tt = op_temps(j);

    if (!load_plan(j, &f, e) || !repo_dir(j, dir, sizeof dir, e))
        return false;
    if (!dir[0]) {
        snprintf(detail, dlen, "node %s has no repository path: nothing uploaded", j->node);
        return true;
    }
    if (strcmp(j->repo_location, "management") == 0)
        return upload_to_management(j, &f, dir, detail, dlen, e);
    if (!target_paths(dir, f.stem, f.ext, dst, e))
        return false;
    if (!qimg_info_get(j->t, f.final, &mq, e))
        return vcl_error_prefix(e, "the published master");
    if (!file_exists(j, dst, &exists, e))
        return false;
    if (exists) {
        if (!master_verify(j, dst, f.fmt, mq.virtual_size, &good, &rq, why, sizeof why, e))
            return false;
        if (!good)
            return vcl_error_set(e, VCL_ERR_PERMANENT,
                                 "the repository holds %s but it is not a copy of %s (%s); it is "
                                 "never overwritten: inspect it", dst, f.final, why);
        snprintf(detail, dlen, "%s already in the repository (verified, %lld bytes virtual)", dst,
                 rq.virtual_size);
        return true;
    }
    if (!transport_mkdir_p(j->t, dir, 0755, e) || !temps_remove_stale(j->t, &tt, dst, e) ||
        !temps_name(dst, "", tmp, sizeof tmp, e) || !(tmp_rec = temps_record(&tt, tmp, e)))
        goto cleanup;
    log_info("capture %lld: uploading %s to %s", j->id, f.final, dst);
    const char *conv[] = { "qemu-img", "convert", "-t", "writeback", "-f", f.fmt, "-O", f.fmt,
                           "--", f.final, tmp, NULL };
    tmp_made = true;
    /* qemu-img convert on the node tells nothing while it runs: the
     * detail says what it is doing and, at the end, how much and how fast. */
    job_copy_progress prog;
    char sz[32], line[256];
    job_copy_progress_init(&prog, j, "qemu-img convert on the node");
    progress_fmt_bytes(mq.virtual_size, sz, sizeof sz);
    snprintf(line, sizeof line, "converting %s (virtual size) into the repository with qemu-img "
             "convert on the node", sz);
    job_copy_progress_note(&prog, line);
    if (!transport_run(j->t, conv, op_command_timeout(j), VCL_ERR_RETRYABLE, NULL, e))
        goto cleanup;
    job_copy_progress_fn(&prog, mq.virtual_size, mq.virtual_size);
    if (!master_verify(j, tmp, f.fmt, mq.virtual_size, &good, &rq, why, sizeof why, e))
        goto cleanup;
    if (!good) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "the repository copy fails verification: %s", why);
        goto cleanup;
    }
    if (!transport_rename_noreplace(j->t, tmp, dst, &existed, e)) {
        if (existed)
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s appeared in the repository while the capture ran; it is never "
                          "overwritten", dst);
        goto cleanup;
    }
    tmp_made = false;
    snprintf(detail, dlen, "uploaded %s to %s (verified, %lld bytes virtual); %s", f.final, dst,
             rq.virtual_size, prog.last);
    ok = true;
cleanup:
    if (tmp_rec)
        temps_done(j->t, &tt, tmp, tmp_made);
    return ok;
}

/* 6. register: the new vcl.image_revision row, once. */
static bool st_register(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    capture_facts f;
    transport_stat_info st;
    long long id = 0;

    if (!load_plan(j, &f, e))
        return false;
    if (!transport_stat(j->t, f.final, &st, e))
        return false;
    if (!st.exists)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "%s is gone: nothing to register; rerun every stage: vclctl retry "
                             "%lld --from-start", f.final, j->id);
    /* Insert it unless an earlier run did; adopt the row only when it is
     * exactly ours, and point the capture and the reservation at it (fenced). */
    if (!job_capture_register(j, st.size, &id, e))
        return false;
    if (!id)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "cannot register %s:%d with file stem %s: another revision took that "
                             "number or stem meanwhile (see: vclctl image list); the captured "
                             "master stays in %s", f.image, f.revision, f.stem, f.final);
    if (!job_capture_link(j, id, e))
        return false;
    snprintf(detail, dlen, "registered %s:%d (file stem %s, %lld bytes, not production) as "
             "image revision %lld", f.image, f.revision, f.stem, st.size, id);
    return true;
}

/* 7. after: leave it off (RELOAD) or queue the load of the new revision. */
static bool st_after(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    capture_facts f;
    char reason[512];

    if (!load_plan(j, &f, e))
        return false;
    if (!f.new_revision_id)
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "capture %lld has no registered revision although register finished; "
                             "rerun every stage: vclctl retry %lld --from-start", j->id, j->id);
    if (strcmp(f.after, "reload") == 0) {
        long long load_id = f.reload_id;
        if (!load_id && !job_capture_queue_reload(j, &load_id, e))
            return false;
        snprintf(reason, sizeof reason, "captured into %s (%s:%d); reload queued as "
                 "reservation %lld", f.stem, f.image, f.revision, load_id);
        if (!job_write_status(j, "RELOAD", reason, false, e))
            return false;
        snprintf(detail, dlen, "load of %s:%d queued as reservation %lld%s", f.image, f.revision,
                 load_id, f.reload_id ? " (by an earlier run)" : "");
        return true;
    }
    snprintf(reason, sizeof reason, "captured into %s", f.stem);
    if (!job_write_status(j, "RELOAD", reason, false, e))
        return false;
    snprintf(detail, dlen, "computer %s left off, RELOAD: %s (%s:%d)", j->computer, reason,
             f.image, f.revision);
    return true;
}

static const stage_def capture_stages[] = {
    { "shutdown", st_shutdown,
      "record the target revision; ACPI shutdown every 5 s, destroy after shutdown_timeout" },
    { "flatten", st_flatten,
      "qemu-img convert the COW and its backing chain into <master dir>/<stem>.qcow2.tmp-vcl+<random> (recorded)" },
    { "verify", st_verify, "qemu-img check; qcow2, no backing file, the disk's virtual size" },
    { "publish", st_publish, "rename into <master dir>/<stem>.qcow2, never over a file" },
    { "upload", st_upload,
      "copy into the first repository path (temp name, verify, no-replace rename)" },
    { "register", st_register, "INSERT the new image revision (production false), once" },
    { "after", st_after,
      "after=off (default): leave it off, RELOAD; after=reload: queue its load" },
    { NULL, NULL, NULL },
};

const op_def op_capture = { "capture", capture_stages,
                            "capture a computer's disk as the next revision of its image", NULL };
