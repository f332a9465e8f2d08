/* op_stage_image.c: the operation stage_image (`vclctl image stage`): put
 * an image revision's master on a node ahead of its loads, so that a class
 * of loads of a cold image does not wait inside the first one's pre_define.
 * The row names a node and an image revision, no computer
 * (sql/010_stage_image.sql).
 *
 * One stage, master: exactly the first half of a load's pre_define, through
 * the same function (image_ensure_master, node/image.h) with the same
 * request (op_master_init: the vcl.image_lock row of (node, revision) under
 * this job's lease, the repository search, imgtrust inspection, qemu-img
 * check, rename into place) and the same progress reporter, so `vclctl show
 * --follow` shows the copy as it shows a load's. A load of the image on the
 * node meanwhile waits on that lock row, then finds the master (its
 * pre_define says "made by another worker"); a load that took the lock
 * first copies, and this stage then finds the master there.
 *
 * Killed at any instant it is safe to run again: the master is renamed
 * into place only when whole and checked; a temp file left by a kill is
 * removed by the next holder of the lock (ours, after the lease of the
 * killed attempt has gone); a second run finds the master and is done. */
#include "ops/op_common.h"
#include "node/image.h"
#include "queue/job.h"
#include "base/log.h"

static bool st_master(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!j->revision_id)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "stage_image %lld names no image revision", j->id);
    if (!job_prepare(j, e))
        return false;
    op_master m;
    if (!op_master_init(j, &m, e) || !transport_mkdir_p(j->t, j->master_dir, 0755, e))
        return false;
    if (!image_ensure_master(&m.req, e))
        return vcl_error_prefix(e, "staging image %s revision %d on node %s", j->image, j->revision,
                                j->node);
    op_master_detail(j, &m, detail, dlen);
    log_info("node %s: image %s revision %d staged: %s", j->node, j->image, j->revision, detail);
    return true;
}

static const stage_def stage_image_stages[] = {
    { "master", st_master, "master image on the node from the repository (the image lock, "
                           "inspection, qemu-img check and rename of a load's pre_define)" },
    { NULL, NULL, NULL },
};

const op_def op_stage_image = { "stage_image", stage_image_stages,
                                "put an image revision's master on a node ahead of its loads",
                                NULL };
