/* op_delete.c: delete (VCL's unload) and maintenance (VCL's
 * post_maintenance_action).
 *
 * delete: destroy and undefine every domain of the computer (by recorded
 * ownership and libvirt metadata, as the load's cleanup does), with their
 * snapshots, and remove the disks and XML files it owns; the computer
 * becomes RELOAD with no current image. A computer with nothing on its node
 * is a success.
 *
 * maintenance: the same, then computer.state = 'maintenance': nothing more is
 * claimed for it until an operator puts it back (vclctl computer set NAME
 * --state available). That write advances the reservation's checkpoint in
 * the same statement, so a rescue after a crash between the two never puts
 * the computer back into maintenance behind the operator's back. (If the
 * worker dies after that write but before the reservation is completed, the
 * claim, which otherwise skips computers in maintenance, rescues this
 * operation once its lease expires and completes it without running a
 * stage: vcl.claimable in sql/functions/views.sql.) */
#include "queue/job.h"
#include "base/log.h"
#include "ops/op_common.h"
#include "queue/stage.h"

#include <stdio.h>
#include <string.h>

static bool st_maintenance(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!job_set_maintenance(j, "maintenance", e))
        return false;
    snprintf(detail, dlen, "computer %s is in maintenance: nothing more is claimed for it until "
             "vclctl computer set %s --state available", j->computer, j->computer);
    log_info("computer %s put in maintenance", j->computer);
    return true;
}

static const stage_def delete_stages[] = {
    { "remove", op_stage_remove_domains, "destroy and undefine the computer's domains (with snapshots), "
                           "remove their disks and XML; RELOAD, no current image" },
    { NULL, NULL, NULL },
};
static const stage_def maintenance_stages[] = {
    { "remove", op_stage_remove_domains, "as delete" },
    { "maintenance", st_maintenance, "computer.state = maintenance (claims skip it)" },
    { NULL, NULL, NULL },
};

const op_def op_delete = { "delete", delete_stages,
                           "unload a computer: remove its domains, snapshots and disks", NULL };
const op_def op_maintenance = { "maintenance", maintenance_stages,
                                "unload a computer and put it in maintenance", NULL };
