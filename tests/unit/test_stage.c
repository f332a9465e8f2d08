/* test_stage: the stage engine walking tables with fake hooks (no database)
 * and fake stages (no libvirt): order, checkpoints, resume, failure, fencing,
 * shutdown, and the real operation tables. */
#include "queue/stage.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>

typedef struct fake {
    char log[1024];          /* "start:a ok:a start:b fail:b ..." */
    char checkpoint[32];     /* advanced by finish(ok) like the SQL does */
    const char *fail_stage;  /* stage function that fails */
    vcl_err_class fail_cls;
    const char *fence_at;    /* start of this stage is fenced out */
    const char *fence_finish_at;
    int stop_after;          /* check() returns 2 after this many stages; -1 never */
    int lost_after;          /* check() returns 1 after this many stages; -1 never */
    int checks;
    int runs[8];
} fake;

static void add(fake *f, const char *what, const char *stage)
{
    size_t l = strlen(f->log);
    snprintf(f->log + l, sizeof f->log - l, "%s%s:%s", l ? " " : "", what, stage);
}

static bool f_start(void *ctx, const char *stage, long long *row, vcl_error *e)
{
    fake *f = ctx;
    if (f->fence_at && strcmp(stage, f->fence_at) == 0)
        return vcl_error_set(e, VCL_ERR_LOST, "start of %s fenced out", stage);
    add(f, "start", stage);
    *row = 100;
    return true;
}

static bool f_finish(void *ctx, long long row, const char *stage, bool ok, const char *detail,
                     vcl_error *e)
{
    fake *f = ctx;
    if (f->fence_finish_at && strcmp(stage, f->fence_finish_at) == 0)
        return vcl_error_set(e, VCL_ERR_LOST, "finish of %s fenced out", stage);
    add(f, ok ? "ok" : "fail", stage);
    if (ok)
        snprintf(f->checkpoint, sizeof f->checkpoint, "%s", stage);
    return row == 100;
}

static int f_check(void *ctx)
{
    fake *f = ctx;
    int n = f->checks++;
    if (f->lost_after >= 0 && n >= f->lost_after)
        return 1;
    if (f->stop_after >= 0 && n >= f->stop_after)
        return 2;
    return 0;
}

/* the merged write of the queue (vcl.stage_next): the same log as
 * f_finish(ok) + f_start, or nothing at all when fenced out */
static int merges;
static bool f_finish_start(void *ctx, long long row, const char *stage, const char *detail,
                           const char *next, long long *next_row, vcl_error *e)
{
    fake *f = ctx;
    (void)detail;
    if ((f->fence_finish_at && strcmp(stage, f->fence_finish_at) == 0) ||
        (f->fence_at && strcmp(next, f->fence_at) == 0))
        return vcl_error_set(e, VCL_ERR_LOST, "finish of %s / start of %s fenced out", stage, next);
    merges++;
    add(f, "ok", stage);
    snprintf(f->checkpoint, sizeof f->checkpoint, "%s", stage);
    add(f, "start", next);
    *next_row = 100;
    return row == 100;
}

static const stage_hooks hooks = { f_start, f_finish, f_check, NULL, NULL };
static const stage_hooks hooks_merged = { f_start, f_finish, f_check, NULL, f_finish_start };

static bool run_stage(fake *f, int idx, const char *name, char *detail, size_t dl, vcl_error *e)
{
    f->runs[idx]++;
    snprintf(detail, dl, "ran %s", name);
    if (f->fail_stage && strcmp(f->fail_stage, name) == 0)
        return vcl_error_set(e, f->fail_cls, "%s broke", name);
    return true;
}
static bool st_a(void *j, char *d, size_t dl, vcl_error *e) { return run_stage(j, 0, "a", d, dl, e); }
static bool st_b(void *j, char *d, size_t dl, vcl_error *e) { return run_stage(j, 1, "b", d, dl, e); }
static bool st_c(void *j, char *d, size_t dl, vcl_error *e) { return run_stage(j, 2, "c", d, dl, e); }

static const stage_def abc[] = {
    { "a", st_a, "first" }, { "b", st_b, "second" }, { "c", st_c, "third" }, { NULL, NULL, NULL },
};
static const op_def op_abc = { "abc", abc, "test op", NULL };

/* an operation with a cancel step: it records that it ran */
static int cancel_runs;
static bool cancel_fails;
static bool abc_on_cancel(void *j, char *detail, size_t dl, vcl_error *e)
{
    fake *f = j;
    cancel_runs++;
    add(f, "cancel", "abc");
    if (cancel_fails)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "node unreachable");
    snprintf(detail, dl, "undid what abc made");
    return true;
}
static const op_def op_abc_cancel = { "abc", abc, "test op with a cancel step", abc_on_cancel };

static void reset(fake *f)
{
    memset(f, 0, sizeof *f);
    f->stop_after = f->lost_after = -1;
}

int main(void)
{
    fake f;
    char failed[64];
    vcl_error e;

    reset(&f);
    stage_run_result r = stage_run(&op_abc, NULL, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_DONE, "fresh run completes");
    is_str(f.log, "start:a ok:a start:b ok:b start:c ok:c", "stages run in table order, each started then finished");
    is_str(f.checkpoint, "c", "checkpoint is the last stage");

    reset(&f);
    snprintf(f.checkpoint, sizeof f.checkpoint, "a");
    r = stage_run(&op_abc, "a", &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_DONE, "resume completes");
    is_str(f.log, "start:b ok:b start:c ok:c", "resume skips finished stages");
    is_int(f.runs[0], 0, "stage a not rerun");

    reset(&f);
    r = stage_run(&op_abc, "c", &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_DONE, "checkpoint at the last stage: nothing to do");
    is_str(f.log, "", "no stage runs");

    reset(&f);
    f.fail_stage = "b";
    f.fail_cls = VCL_ERR_RETRYABLE;
    r = stage_run(&op_abc, NULL, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_FAILED, "failing stage fails the run");
    is_str(failed, "b", "failed stage reported");
    is_int(e.cls, VCL_ERR_RETRYABLE, "error class kept");
    is_str(e.msg, "b broke", "error message kept");
    is_str(f.log, "start:a ok:a start:b fail:b", "failure logged as the stage's finish, c never started");
    is_str(f.checkpoint, "a", "checkpoint did not advance past the failed stage");
    /* retry from the checkpoint after the fault is gone */
    f.fail_stage = NULL;
    f.log[0] = '\0';
    r = stage_run(&op_abc, f.checkpoint, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_DONE, "retry from checkpoint completes");
    is_str(f.log, "start:b ok:b start:c ok:c", "retry reruns the failed stage, not the finished one");
    is_int(f.runs[1], 2, "stage b ran twice in all (idempotent rerun)");

    reset(&f);
    f.fail_stage = "a";
    f.fail_cls = VCL_ERR_PERMANENT;
    r = stage_run(&op_abc, NULL, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(e.cls, VCL_ERR_PERMANENT, "permanent class kept");

    reset(&f);
    f.fence_at = "b";
    r = stage_run(&op_abc, NULL, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_LOST, "fenced-out stage start: lost");
    is_int(f.runs[1], 0, "a fenced-out stage never runs");

    reset(&f);
    f.fence_finish_at = "a";
    r = stage_run(&op_abc, NULL, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_LOST, "fenced-out finish: lost");
    is_int(f.runs[1], 0, "nothing runs after a fenced-out finish");

    /* LOST out of a stage function (a fenced write inside it matched no
     * row): the run ends at once, and no finish row is written for it */
    reset(&f);
    f.fail_stage = "b";
    f.fail_cls = VCL_ERR_LOST;
    r = stage_run(&op_abc, NULL, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_LOST, "a stage failing with LOST: the run is lost");
    is_int(e.cls, VCL_ERR_LOST, "the LOST error comes out of the run");
    is_str(f.log, "start:a ok:a start:b", "no finish row written for the lost stage, c never started");
    is_str(f.checkpoint, "a", "checkpoint did not move");
    is_int(f.runs[2], 0, "nothing runs after a lost stage");

    /* a stage failing with no class at all is not mistaken for LOST */
    reset(&f);
    f.fail_stage = "a";
    f.fail_cls = VCL_ERR_NONE;
    r = stage_run(&op_abc, NULL, &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_FAILED, "a stage failing with class NONE fails (retryable), not lost");
    is_int(e.cls, VCL_ERR_RETRYABLE, "class NONE becomes retryable");
    is_str(f.log, "start:a fail:a", "its failure is written");

    /* with the merged write too: a stop or a lost lease seen before it
     * finishes the stage alone and starts nothing */
    for (int m = 0; m < 2; m++) {
        const stage_hooks *hk = m ? &hooks_merged : &hooks;
        const char *tag = m ? "merged: " : "";
        reset(&f);
        f.stop_after = 1;
        r = stage_run(&op_abc, NULL, &f, hk, &f, failed, sizeof failed, &e);
        is_int(r, STAGE_RUN_STOPPED, "%sshutdown between stages: stopped", tag);
        is_str(f.log, "start:a ok:a", "%sthe running stage finished before the hand-back", tag);

        reset(&f);
        f.lost_after = 2;
        r = stage_run(&op_abc, NULL, &f, hk, &f, failed, sizeof failed, &e);
        is_int(r, STAGE_RUN_LOST, "%slease lost (heartbeat) between stages: lost", tag);
        is_str(f.log, "start:a ok:a", "%sthe stage finished alone, the next not started", tag);
        is_int(f.runs[1], 0, "%sstage b not run after the lease was lost", tag);
    }

    reset(&f);
    r = stage_run(&op_abc, "zzz", &f, &hooks, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_FAILED, "unknown checkpoint fails");
    is_int(e.cls, VCL_ERR_PERMANENT, "unknown checkpoint is permanent");
    ok(strstr(e.msg, "--from-start") != NULL, "error says how to fix it: %s", e.msg);

    /* finish + next start in one write: the same rows in the same order;
     * only the finish of a success is merged, and never the last one */
    static const struct { const char *fail; stage_run_result r; const char *log, *checkpoint; int merges; } mc[] = {
        { NULL, STAGE_RUN_DONE, "start:a ok:a start:b ok:b start:c ok:c", "c", 2 },
        { "b", STAGE_RUN_FAILED, "start:a ok:a start:b fail:b", "a", 1 },
    };
    for (size_t i = 0; i < sizeof mc / sizeof mc[0]; i++) {
        reset(&f);
        merges = 0;
        f.fail_stage = mc[i].fail;
        f.fail_cls = VCL_ERR_RETRYABLE;
        r = stage_run(&op_abc, NULL, &f, &hooks_merged, &f, failed, sizeof failed, &e);
        is_int(r, mc[i].r, "merged, %s fails: run %s", mc[i].fail ? mc[i].fail : "none",
               stage_run_result_name(mc[i].r));
        is_str(f.log, mc[i].log, "merged: the same rows in the same order");
        is_int(merges, mc[i].merges, "merged: %d finish(es) written with the next start", mc[i].merges);
        is_str(f.checkpoint, mc[i].checkpoint, "merged: checkpoint %s", mc[i].checkpoint);
    }

    reset(&f);
    f.fence_finish_at = "a";
    r = stage_run(&op_abc, NULL, &f, &hooks_merged, &f, failed, sizeof failed, &e);
    is_int(r, STAGE_RUN_LOST, "merged: fenced-out finish: lost");
    is_str(f.log, "start:a", "merged: nothing written by the fenced-out write");
    is_int(f.runs[1], 0, "merged: nothing runs after it");


    is_int(stage_resume_index(&op_abc, ""), 0, "empty checkpoint starts at 0");
    is_int(stage_resume_index(&op_abc, "b"), 2, "after b comes index 2");

    /* on_cancel dispatch: the table's step runs, and only when there is one */
    char cdetail[256];
    reset(&f);
    is_int(stage_cancel(&op_abc, &f, cdetail, sizeof cdetail, &e), STAGE_CANCEL_NONE,
           "cancel of an operation without a cancel step: nothing to do");
    is_str(cdetail, "", "no detail");
    is_int(stage_cancel(NULL, &f, cdetail, sizeof cdetail, &e), STAGE_CANCEL_NONE,
           "cancel of an unknown operation: nothing to do");
    is_int(cancel_runs, 0, "no cancel step ran");
    is_int(stage_cancel(&op_abc_cancel, &f, cdetail, sizeof cdetail, &e), STAGE_CANCEL_DONE,
           "the operation's cancel step runs");
    is_int(cancel_runs, 1, "exactly once");
    is_str(f.log, "cancel:abc", "on the job it was given");
    is_str(cdetail, "undid what abc made", "its detail comes back for the computer row");
    cancel_fails = true;
    is_int(stage_cancel(&op_abc_cancel, &f, cdetail, sizeof cdetail, &e), STAGE_CANCEL_FAILED,
           "a failing cancel step is reported");
    is_str(e.msg, "node unreachable", "with its error");

    /* the real tables */
    const op_def *load = ops_find("load");
    ok(load != NULL, "load operation registered");
    const char *want[] = { "cleanup", "generate_xml", "pre_define", "write_xml", "define",
                           "power_on", "post_load", "node_status" };
    is_int(stage_count(load), 8, "load has eight stages");
    for (size_t i = 0; i < 8 && load; i++)
        is_str(load->stages[i].name, want[i], "load stage %zu is %s", i + 1, want[i]);
    ok(ops_find("noop") != NULL, "noop operation registered");
    ok(ops_find("node_status") != NULL, "node_status operation registered");
    ok(ops_find("nonsense") == NULL, "unknown operation not found");
    ok(load && load->on_cancel != NULL, "load declares a cancel step (remove its half-made domain)");
    for (const op_def *const *op = ops_all(); *op; op++)
        if (strcmp((*op)->name, "load") != 0)
            ok((*op)->on_cancel == NULL, "%s declares no cancel step (stops at the boundary)",
               (*op)->name);
    for (const op_def *const *op = ops_all(); *op; op++)
        for (size_t i = 0; (*op)->stages[i].name; i++)
            ok((*op)->stages[i].fn && (*op)->stages[i].help, "%s/%s has a function and help",
               (*op)->name, (*op)->stages[i].name);
    return done_testing();
}
