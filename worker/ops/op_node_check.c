/* op_node_check.c: the operation node_check: `vclctl node check` run by a
 * worker, through the worker's own transport (its ssh key and known_hosts),
 * drivers and config, on the node the reservation names (reservation.node_id;
 * it has no computer). One stage, check: every item of nodecheck.h; the report
 * and the CPU probe go to the node row (vcl.node_check_record, fenced on the
 * lease). A check that finds a failed item fails the reservation, permanently
 * (running it again finds the same until someone fixes the node), with each
 * failed item and its fix in last_error.
 *
 * Killed at any instant it is safe to run again: the only things it makes on
 * the node are the CPU probe's transient domains, started with
 * VIR_DOMAIN_START_AUTODESTROY, which libvirt destroys when the killed
 * worker's connection closes, and the directory test files nodecheck.c
 * removes (a leftover is named .vcl-check-* and replaced by the next run). */
#include "ops/op_common.h"
#include "node/nodecheck.h"
#include "queue/job.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>

static bool st_check(void *opaque, char *detail, size_t dlen, vcl_error *e)
{
    job *j = opaque;
    if (!name_check("node", j->node, e))
        return false;
    node_check_report *rep = calloc(1, sizeof *rep);
    if (!rep)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
    node_check_target t = {
        .name = j->node, .libvirt_uri = j->libvirt_uri, .transport = j->transport_kind,
        .topts = job_transport_opts(j), .master_dir = j->master_dir, .cow_dir = j->cow_dir,
        .xml_dir = j->xml_dir, .cpu_mode = j->cpu_mode, .drivers = j->drivers,
        .emulator = j->cfg && j->cfg->qemu_emulator && j->cfg->qemu_emulator[0]
                        ? j->cfg->qemu_emulator : NULL,
    };
    node_check_run(&t, rep);
    bool ok = job_record_node_check(j, rep, e);
    if (ok) {
        node_check_summary(rep, detail, dlen);
        if (rep->failed) {
            log_warn("node %s: %s", j->node, detail);
            ok = vcl_error_set(e, VCL_ERR_PERMANENT, "node check: %s", detail);
        } else {
            log_info("node %s: %s", j->node, detail);
        }
    }
    free(rep);
    return ok;
}

static const stage_def node_check_stages[] = {
    { "check", st_check, "libvirt, driver, QEMU, qemu-img, directories, a probe domain per CPU "
                         "mode; the report goes to the node row" },
    { NULL, NULL, NULL },
};

const op_def op_node_check = { "node_check", node_check_stages,
                               "check a node (the preflight of vclctl node check) from a worker", NULL };
