/* stage.h: the stage engine (pg_auto_failover's fsm.c, for provisioning).
 *
 * An operation is a fixed, ordered table of stages ending in a sentinel. The
 * engine walks the table from just after the reservation's checkpoint: before
 * each stage it writes a fenced stage-start row, runs the function, then a
 * fenced finish that advances the checkpoint only when the function returned
 * true (a finish that succeeded and the next stage's start: one write when
 * the hooks offer finish_start). Every stage function must be safe to run again after a crash at any
 * instant: it inspects the real state first.
 *
 * A stage function (or a hook) that fails with class VCL_ERR_LOST (a fenced
 * write found the lease gone) ends the run at once as STAGE_RUN_LOST: no
 * finish row is attempted, nothing more is written about the job.
 *
 * The engine knows nothing about PostgreSQL or libvirt: the hooks connect it
 * to the queue (and to fakes in unit tests). */
#ifndef VCL_STAGE_H
#define VCL_STAGE_H
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"

#define STAGE_DETAIL_LEN 1024

typedef struct stage_run_ctx stage_run_ctx;

/* A stage function gets the operation's context (opaque to the engine) and a
 * detail buffer for the stage log ("what it found, what it did"). */
typedef bool (*stage_fn)(void *job, char *detail, size_t detail_len, vcl_error *e);

typedef struct stage_def {
    const char *name;
    stage_fn fn;
    const char *help;
} stage_def;

typedef struct op_def {
    const char *name;
    const stage_def *stages;   /* ends with { NULL, NULL, NULL } */
    const char *help;
    /* What a cancel leaves to clean up (NULL: nothing; the job just stops at
     * the stage boundary). The pool runs it after a cancel fenced the job
     * out, on the job as loaded, while the computer is still kept for us
     * (vcl.cancel's blocks_until): undo what the operation may have half
     * made on the node. detail gets the reason recorded on the computer
     * row. It writes no row itself (the lease is gone): the pool records
     * the clean-up. false + e when it could not clean up (logged; the
     * computer's next load cleans up). */
    stage_fn on_cancel;
} op_def;

typedef struct stage_hooks {
    /* Write the fenced stage-start row; *row gets its id. false + e when the
     * write failed (e->cls VCL_ERR_LOST: fenced out, the lease is lost). */
    bool (*start)(void *ctx, const char *stage, long long *row, vcl_error *e);
    /* Fenced finish; checkpoint when ok. false as for start. */
    bool (*finish)(void *ctx, long long row, const char *stage, bool ok, const char *detail,
                   vcl_error *e);
    /* Polled at every stage boundary: 1 = lease lost or job cancelled (stop
     * touching the job), 2 = shutting down (hand the job back), 0 = go on. */
    int (*check)(void *ctx);
    void (*on_stage)(void *ctx, const char *stage); /* may be NULL (logging context) */
    /* May be NULL. The finish of stage (ok, checkpoint) and the start of
     * next in one write (one round trip, one commit instead of two); does
     * what on_stage(next) and start(next) would, *next_row gets next's row.
     * false as for start (VCL_ERR_LOST: fenced out, neither row written). The engine
     * uses it only when the stage succeeded, another follows, and check
     * says go on; otherwise finish, then check, on_stage and start. */
    bool (*finish_start)(void *ctx, long long row, const char *stage, const char *detail,
                         const char *next, long long *next_row, vcl_error *e);
} stage_hooks;

typedef enum {
    STAGE_RUN_DONE,      /* every stage finished */
    STAGE_RUN_FAILED,    /* a stage failed: e and failed_stage say which and why */
    STAGE_RUN_LOST,      /* fenced out (VCL_ERR_LOST) or cancelled: abandon, write nothing more */
    STAGE_RUN_STOPPED,   /* shutdown requested between stages: hand the job back */
    STAGE_RUN__COUNT
} stage_run_result;

const char *stage_run_result_name(stage_run_result r);

/* Index of the first stage to run given the checkpoint (name of the last
 * finished stage; NULL or "" = none). -1 when the checkpoint names no stage of
 * this operation (a hand-edited row): the caller fails the job permanently. */
int stage_resume_index(const op_def *op, const char *checkpoint);
size_t stage_count(const op_def *op);

stage_run_result stage_run(const op_def *op, const char *checkpoint, void *job,
                           const stage_hooks *hooks, void *ctx, char *failed_stage,
                           size_t failed_len, vcl_error *e);

/* After a cancel: run op's cancel step (op_def.on_cancel) on job.
 * STAGE_CANCEL_NONE when op is NULL or declares none (nothing to undo),
 * STAGE_CANCEL_DONE when it cleaned up (detail says what),
 * STAGE_CANCEL_FAILED with e when it could not. */
typedef enum {
    STAGE_CANCEL_NONE,
    STAGE_CANCEL_DONE,
    STAGE_CANCEL_FAILED,
    STAGE_CANCEL__COUNT
} stage_cancel_result;

stage_cancel_result stage_cancel(const op_def *op, void *job, char *detail, size_t detail_len,
                                 vcl_error *e);

/* Operation registry (ops.c). NULL when unknown. */
const op_def *ops_find(const char *name);
/* Every operation, NULL-terminated (for --help). */
const op_def *const *ops_all(void);
/* Is name a stage of some operation (config stage_timeouts)? */
bool ops_stage_known(const char *name);
#endif
