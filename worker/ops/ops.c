/* ops.c: the registry of operations (name -> stage table). Adding an
 * operation means adding its table here; the engine is shared. */
#include "node/nodestatus.h"
#include "ops/op_common.h"
#include "queue/stage.h"

#include <stdio.h>
#include <string.h>

/* noop: no stages at all. It exercises the queue itself (claim, lease,
 * batched completion) for tests and benchmarks: the claiming worker completes
 * it at once, in one statement with the rest of its batch, and it writes no
 * stage log. */
static const stage_def noop_stages[] = {
    { NULL, NULL, NULL },
};
static const op_def op_noop = { "noop", noop_stages,
                                "nothing: completed at claim (queue tests, benchmarks)", NULL };

/* node_status: VCL's check, written back to the computer row. */
static const stage_def node_status_stages[] = {
    { "check", op_stage_check_status, "ask libvirt: domain, state, disk, backing file, post_load" },
    { NULL, NULL, NULL },
};
static const op_def op_node_status = { "node_status", node_status_stages,
                                       "check a computer and write node_status back", NULL };

static const op_def *const all_ops[] = {
    &op_load,           &op_node_status,     &op_power_on,        &op_power_off,
    &op_power_reset,    &op_shutdown,        &op_snapshot_create, &op_snapshot_delete,
    &op_snapshot_revert, &op_delete,         &op_maintenance,     &op_noop,
    &op_capture,        &op_node_check,     &op_stage_image,
    NULL,
};

const op_def *ops_find(const char *name)
{
    for (size_t i = 0; all_ops[i]; i++)
        if (strcmp(all_ops[i]->name, name) == 0)
            return all_ops[i];
    return NULL;
}

const op_def *const *ops_all(void)
{
    return all_ops;
}

bool ops_stage_known(const char *name)
{
    for (size_t i = 0; all_ops[i]; i++)
        for (size_t k = 0; all_ops[i]->stages[k].name; k++)
            if (strcmp(all_ops[i]->stages[k].name, name) == 0)
                return true;
    return false;
}
