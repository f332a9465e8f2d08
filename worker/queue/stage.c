/* stage.c: see stage.h. */
#include "queue/stage.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *stage_run_result_name(stage_run_result r)
{
    static const char *const names[STAGE_RUN__COUNT] = { "done", "failed", "lost", "stopped" };
    return (r >= 0 && r < STAGE_RUN__COUNT) ? names[r] : "?";
}

size_t stage_count(const op_def *op)
{
    size_t n = 0;
    while (op->stages[n].name)
        n++;
    return n;
}

int stage_resume_index(const op_def *op, const char *checkpoint)
{
    if (!checkpoint || !checkpoint[0])
        return 0;
    for (size_t i = 0; op->stages[i].name; i++)
        if (strcmp(op->stages[i].name, checkpoint) == 0)
            return (int)i + 1;
    return -1;
}

stage_run_result stage_run(const op_def *op, const char *checkpoint, void *job,
                           const stage_hooks *hooks, void *ctx, char *failed_stage,
                           size_t failed_len, vcl_error *e)
{
    failed_stage[0] = '\0';
    int first = stage_resume_index(op, checkpoint);
    if (first < 0) {
        snprintf(failed_stage, failed_len, "%s", checkpoint);
        vcl_error_set(e, VCL_ERR_PERMANENT,
                      "checkpoint '%s' is not a stage of operation '%s'; clear it "
                      "(vclctl retry ID --from-start) to rerun every stage",
                      checkpoint, op->name);
        return STAGE_RUN_FAILED;
    }
    if (first > 0)
        log_info("resuming %s after checkpoint %s", op->name, checkpoint);

    long long row = 0;
    bool started = false;   /* this stage's start row was written with the last finish */
    for (size_t i = (size_t)first; op->stages[i].name; i++) {
        const stage_def *st = &op->stages[i];
        if (!started) {
            int c = hooks->check(ctx);
            if (c == 1)
                return STAGE_RUN_LOST;
            if (c == 2)
                return STAGE_RUN_STOPPED;
            if (hooks->on_stage)
                hooks->on_stage(ctx, st->name);

            row = 0;
            vcl_error_clear(e);
            if (!hooks->start(ctx, st->name, &row, e)) {
                if (e->cls == VCL_ERR_LOST)
                    return STAGE_RUN_LOST;
                if (e->cls == VCL_ERR_NONE)
                    vcl_error_set(e, VCL_ERR_RETRYABLE, "stage %s: its start row was not written "
                                  "(no reason given)", st->name);
                snprintf(failed_stage, failed_len, "%s", st->name);
                return STAGE_RUN_FAILED;
            }
        }
        started = false;

        /* Re-check after the start row: a worker paused (SIGSTOP, a long GC of
         * the host...) between its fenced start and the stage body may have
         * lost the job meanwhile; it must not touch the node. */
        if (hooks->check(ctx) == 1)
            return STAGE_RUN_LOST;

        char detail[STAGE_DETAIL_LEN] = "";
        vcl_error serr;
        vcl_error_clear(&serr);
        double t0 = util_mono_s();
        bool ok = st->fn(job, detail, sizeof detail, &serr);
        double took = util_mono_s() - t0;
        if (!ok && serr.cls == VCL_ERR_LOST) {
            /* a fenced write inside the stage found the lease gone: the
             * finish would be fenced out too; stop without writing */
            log_warn("stage %s: %s", st->name, serr.msg);
            *e = serr;
            return STAGE_RUN_LOST;
        }
        if (!ok && serr.cls == VCL_ERR_NONE)
            vcl_error_set(&serr, VCL_ERR_RETRYABLE, "stage %s failed without a reason", st->name);
        if (!ok && !detail[0])
            snprintf(detail, sizeof detail, "%s", serr.msg);

        vcl_error ferr;
        vcl_error_clear(&ferr);
        /* finished ok with a stage to follow, and nothing says stop (the
         * check the next stage would make first): one write for both */
        const stage_def *next = &op->stages[i + 1];
        bool merge = ok && next->name && hooks->finish_start && hooks->check(ctx) == 0;
        long long next_row = 0;
        if (merge ? !hooks->finish_start(ctx, row, st->name, detail, next->name, &next_row, &ferr)
                  : !hooks->finish(ctx, row, st->name, ok, detail, &ferr)) {
            *e = ferr;
            if (ferr.cls == VCL_ERR_LOST)
                return STAGE_RUN_LOST;
            if (ferr.cls == VCL_ERR_NONE)
                vcl_error_set(e, VCL_ERR_RETRYABLE, "stage %s: its finish row was not written "
                              "(no reason given)", st->name);
            snprintf(failed_stage, failed_len, "%s", st->name);
            return STAGE_RUN_FAILED;
        }
        if (merge) {
            row = next_row;
            started = true;
        }
        /* the finish is recorded: one observation per finished stage-log row */
        metrics_stage_observe(op->name, st->name, took);
        if (!ok) {
            *e = serr;
            snprintf(failed_stage, failed_len, "%s", st->name);
            return STAGE_RUN_FAILED;
        }
    }
    if (hooks->on_stage)
        hooks->on_stage(ctx, NULL);
    return STAGE_RUN_DONE;
}

stage_cancel_result stage_cancel(const op_def *op, void *job, char *detail, size_t detail_len,
                                 vcl_error *e)
{
    detail[0] = '\0';
    vcl_error_clear(e);
    if (!op || !op->on_cancel)
        return STAGE_CANCEL_NONE;
    if (op->on_cancel(job, detail, detail_len, e))
        return STAGE_CANCEL_DONE;
    if (e->cls == VCL_ERR_NONE)
        vcl_error_set(e, VCL_ERR_RETRYABLE, "the cancel step of %s failed without a reason",
                      op->name);
    return STAGE_CANCEL_FAILED;
}
