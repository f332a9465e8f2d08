/* pool.c: see pool.h. */
#include "queue/pool.h"
#include "queue/claimpoint.h"
#include "base/backoff.h"
#include "queue/db.h"
#include "queue/dbroute.h"
#include "node/hvdriver.h"
#include "queue/job.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/sdnotify.h"
#include "queue/stage.h"
#include "queue/statements.h"
#include "base/version.h"
#include "node/virt.h"
#include "node/watch.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 256
/* At exit, wait this long for threads stuck on hung nodes to return. */
#define STUCK_EXIT_WAIT_S 3.0
/* Stop acting on a job this long before its lease could expire by our clock. */
#define LEASE_MARGIN_S 1.0

typedef enum { SLOT_IDLE, SLOT_RUNNING, SLOT_FINISHED } slot_state;

typedef struct pool pool;

/* Claimed jobs with no stages, waiting to be completed in one batch. */
#define DONE_BATCH 1000
typedef struct done_queue {
    long long id[DONE_BATCH], token[DONE_BATCH];
    const char *op[DONE_BATCH];
    int n;
    double first_at;
} done_queue;

/* The stage a slot's thread runs now and what the main thread needs to fail
 * the job when that stage passes its deadline (guarded by pool.mu; written
 * by the slot thread, read by the main thread). */
typedef struct slot_stage {
    char node[128];            /* the job's node ("" until the job is loaded) */
    char operation[32];
    int attempts, max_attempts;
    char stage[64];            /* the stage running now; "" between stages */
    long long row;             /* its stage-log row; 0 until written */
    int limit;                 /* its deadline in seconds; 0 = none */
    double deadline;           /* util_mono_s() time of that deadline; 0 = none */
} slot_stage;

typedef struct slot {
    pool *p;
    int index;
    pthread_t th;
    slot_state state;          /* guarded by pool.mu */
    long long id, token;       /* guarded by pool.mu */
    bool abandoned;            /* guarded by pool.mu: its stage passed its deadline, the main
                                * thread failed the job, and the slot counts as free; its
                                * thread (stuck in a call to a hung node) has not returned
                                * yet, so the struct is not reused until it has (reap_slots) */
    slot_stage cur;            /* guarded by pool.mu */
    atomic_int lost;           /* set by the heartbeat when the lease is gone */
    double job_began;          /* slot thread only: util_mono_s() when it took the job */
    _Atomic double lease_until;/* monotonic time our lease surely holds until (claim or
                                * renewal time + lease - margin); past it the job may
                                * already be someone else's: a SIGSTOPped worker that
                                * wakes up finds this expired before touching the node */
    db_conn *db;               /* the slot thread's own connection */
    const vcl_config *cfg;     /* config in force when the job started */
} slot;

/* Configurations and their lifetime. cfg is the one in force; a slot keeps a
 * pointer to the one in force when its job started (slot.cfg), so a SIGHUP
 * cannot free it under a running job. A replaced config is retired and freed
 * as soon as no running slot uses it (retire_unused, on the main thread,
 * which alone starts and reaps slots): at most one retired config per slot
 * is alive, however many SIGHUPs come. The config the worker started with
 * stays until exit: the watcher holds it (watch_start), and the restart-only
 * options it has are the ones every later config keeps. */
struct pool {
    vcl_config *cfg;
    vcl_config *first;         /* the config at start, freed at exit */
    vcl_config *retired[MAX_SLOTS + 1];
    int n_retired;
    const pool_opts *opts;
    char worker_name[128];
    long long worker_id;
    db_conn *db;
    hvdriver_set *drivers;
    slot slots[MAX_SLOTS];
    pthread_mutex_t mu;
    int wake_fd[2];
    double last_heartbeat_ok;
    double next_heartbeat;     /* util_mono_s() time of the next heartbeat */
    done_queue done;           /* claimed jobs with nothing to run, to complete */
    long long last_claim_id;   /* first reservation of the last claim (sdnotify STATUS=) */
    double next_due;           /* util_mono_s() time vcl.next_due() named after the last claim
                                * that left the queue drained; 0 = nothing scheduled */
    double next_rescue;        /* util_mono_s() time a claim next looks for expired leases */
    double next_loads;         /* util_mono_s() time a claim next looks for loads */
    claim_point resume;        /* where the next claim's walk may start (vcl.claim p_after_*) */
};

/* How often a claim looks for expired leases: that look reads every running
 * row (vcl.claim's p_rescue), so a busy worker makes it at most this often. A
 * rescue waits at most this much longer than the lease. */
#define RESCUE_CHECK_S 1.0

/* How often a claim whose predecessors all filled up looks for loads: that
 * look probes every node (vcl.claim's p_loads) and was most of a claim's
 * cost while loads waited behind their nodes' caps. A claim that took a
 * load looks again at the next one, and a claim that did not look and came
 * back short is followed at once by one that does, so a worker never goes
 * idle without having looked: a load waits at most this much longer, and
 * only while every claim fills up with other rows. */
#define LOAD_CHECK_S 0.25

static volatile sig_atomic_t sig_stop, sig_reload;
static int sig_wake_fd = -1;
static atomic_int stopping;

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP)
        sig_reload = 1;
    else
        sig_stop = 1;
    if (sig_wake_fd >= 0) {
        ssize_t w = write(sig_wake_fd, "s", 1);
        (void)w;
    }
    errno = saved;
}

static void wake(pool *p)
{
    ssize_t w = write(p->wake_fd[1], "w", 1);
    (void)w;
}

/* ---------------- slot side: one job ---------------- */

/* Run a statement on the slot's connection; on a lost connection reconnect
 * (up to one lease) and run it once more. */
static PGresult *slot_exec(slot *s, const char *sql, db_params *prm, vcl_error *e)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        if (!s->db || db_is_broken(s->db)) {
            vcl_error ce;
            vcl_error_clear(&ce);
            if (!s->db) {
                s->db = db_connect(s->cfg->database, s->p->worker_name, &ce);
                if (!s->db) {
                    *e = ce;
                    sleep(1);
                    continue;
                }
            } else if (!db_reconnect_backoff(s->db, NULL, s->cfg->lease_seconds, NULL, &ce)) {
                *e = ce;
                return NULL;
            }
        }
        PGresult *r = db_exec(s->db, sql, prm->n, prm->v, e);
        if (r || !db_is_broken(s->db))
            return r;
    }
    return NULL;
}

static bool lease_deadline_holds(void *ctx)
{
    slot *s = ctx;
    return util_mono_s() <= atomic_load(&s->lease_until);
}

/* For destructive steps inside a stage: is the job still ours right now? */
static bool job_still_ours(void *ctx)
{
    slot *s = ctx;
    return !atomic_load(&s->lost) && util_mono_s() <= atomic_load(&s->lease_until);
}

typedef struct hook_ctx {
    slot *s;
    job *j;
} hook_ctx;

#ifdef VCL_TEST_HOOKS
/* Test builds only (build/test/vcl-worker): VCL_FAULT="<stage>:<point>" kills
 * this process with SIGKILL at that point, so fault tests hit every stage
 * boundary reliably. point: "start" (just after the stage-start row is
 * committed, before the stage runs), "finish" (after the stage ran, just
 * before its checkpoint is written). "<stage>:stop-start" / "<stage>:stop-finish" instead
 * SIGSTOP the process there (a zombie worker; the test sends SIGCONT).
 * VCL_FAULT_NODE=<node> limits the fault to jobs on that node;
 * VCL_FAULT_ONCE=1 to its first hit in this process. */
static void fault_point(const char *stage, const char *point, const char *node)
{
    static atomic_int hits;
    const char *f = getenv("VCL_FAULT"), *only = getenv("VCL_FAULT_NODE"),
               *once = getenv("VCL_FAULT_ONCE"), *hf = getenv("VCL_FAULT_HANG");
    if (!f || !stage)
        return;
    size_t sl = strlen(stage);
    if (strncmp(f, stage, sl) != 0 || f[sl] != ':')
        return;
    const char *want = f + sl + 1;
    bool kill_it = strcmp(want, point) == 0;
    bool stop_it = strncmp(want, "stop-", 5) == 0 && strcmp(want + 5, point) == 0;
    bool hang_it = strncmp(want, "hang-", 5) == 0 && strcmp(want + 5, point) == 0 && hf && hf[0];
    if (!kill_it && !stop_it && !hang_it)
        return;
    if (only && only[0] && (!node || strcmp(node, only) != 0))
        return;
    if (once && strcmp(once, "1") == 0 && atomic_fetch_add(&hits, 1) > 0)
        return;
    if (kill_it) {
        log_warn("VCL_FAULT=%s: killing this worker with SIGKILL", f);
        raise(SIGKILL);
    }
    if (stop_it) {
        log_warn("VCL_FAULT=%s: stopping this worker with SIGSTOP", f);
        raise(SIGSTOP);
        log_warn("VCL_FAULT=%s: continued", f);
    }
    /* "hang-<point>": only this job's thread hangs (as in a call to a node
     * that never answers) while the file $VCL_FAULT_HANG exists, at most an
     * hour; the rest of the worker goes on. */
    if (hang_it) {
        log_warn("VCL_FAULT=%s: this job's thread hangs while %s exists", f, hf);
        for (int i = 0; i < 36000 && access(hf, F_OK) == 0; i++)
            usleep(100 * 1000);
        log_warn("VCL_FAULT=%s: the hang is over", f);
    }
}
#else
static void fault_point(const char *stage, const char *point, const char *node)
{
    (void)stage;
    (void)point;
    (void)node;
}
#endif

/* The slot thread enters stage (NULL: between stages, or done): its
 * deadline starts now (config_stage_deadline of the config in force when
 * the job started). */
static void slot_stage_set(slot *s, const char *stage)
{
    int limit = stage ? config_stage_deadline(s->cfg, stage) : 0;
    pthread_mutex_lock(&s->p->mu);
    snprintf(s->cur.stage, sizeof s->cur.stage, "%s", stage ? stage : "");
    s->cur.row = 0;
    s->cur.limit = limit;
    s->cur.deadline = limit > 0 ? util_mono_s() + limit : 0;
    pthread_mutex_unlock(&s->p->mu);
}

/* What the main thread needs to fail the job for this slot. */
static void slot_publish_job(slot *s, const job *j)
{
    pthread_mutex_lock(&s->p->mu);
    snprintf(s->cur.node, sizeof s->cur.node, "%s", j->node);
    snprintf(s->cur.operation, sizeof s->cur.operation, "%s", j->operation);
    s->cur.attempts = j->attempts;
    s->cur.max_attempts = j->max_attempts;
    pthread_mutex_unlock(&s->p->mu);
}

/* Run a fenced stage write that returns the (new) stage row id: NULL is a
 * fenced-out write (VCL_ERR_LOST, "its <what> was fenced out"). */
static bool stage_row_exec(hook_ctx *h, const char *sql, db_params *prm, const char *stage,
                           const char *what, long long *row, vcl_error *e)
{
    PGresult *r = slot_exec(h->s, sql, prm, e);
    if (!r)
        return false;
    bool fenced_out = PQgetisnull(r, 0, 0);
    *row = fenced_out ? 0 : db_get_ll(r, 0, 0);
    PQclear(r);
    if (fenced_out)
        return vcl_error_set(e, VCL_ERR_LOST, "stage %s of reservation %lld: this worker no "
                             "longer holds the lease (%s was fenced out)", stage, h->j->id, what);
    return true;
}

/* The start row of stage is written: the slot shows it. */
static void stage_started(hook_ctx *h, const char *stage, long long row)
{
    pthread_mutex_lock(&h->s->p->mu);
    h->s->cur.row = row;
    pthread_mutex_unlock(&h->s->p->mu);
    log_info("stage %s started", stage);
    fault_point(stage, "start", h->j->node);
}

static bool hook_start(void *ctx, const char *stage, long long *row, vcl_error *e)
{
    hook_ctx *h = ctx;
    db_params prm;
    db_params_init(&prm);
    db_param_ll(&prm, h->j->id);
    db_param_ll(&prm, h->j->token);
    db_param_str(&prm, stage);
    if (!stage_row_exec(h, SQL_STAGE_START, &prm, stage, "the start row", row, e))
        return false;
    stage_started(h, stage, *row);
    return true;
}

/* The finish of stage row is about to be written: its fault point, and the
 * parameters every finish starts with (reservation, lease token, row). */
static void stage_finishing(hook_ctx *h, const char *stage, long long row, db_params *prm)
{
    fault_point(stage, "finish", h->j->node);
    db_params_init(prm);
    db_param_ll(prm, h->j->id);
    db_param_ll(prm, h->j->token);
    db_param_ll(prm, row);
}

static bool hook_finish(void *ctx, long long row, const char *stage, bool ok, const char *detail,
                        vcl_error *e)
{
    hook_ctx *h = ctx;
    db_params prm;
    stage_finishing(h, stage, row, &prm);
    db_param_bool(&prm, ok);
    db_param_str(&prm, detail);
    PGresult *r = slot_exec(h->s, SQL_STAGE_FINISH, &prm, e);
    if (!r)
        return false;
    bool done = db_get_bool(r, 0, 0);
    PQclear(r);
    if (!done)
        return vcl_error_set(e, VCL_ERR_LOST, "stage %s of reservation %lld: this worker no "
                             "longer holds the lease (the finish row was fenced out)", stage,
                             h->j->id);
    slot_stage_set(h->s, NULL);   /* recorded: no deadline until the next stage */
    if (ok)
        log_info("stage %s finished: %s", stage, detail);
    else
        log_warn("stage %s failed: %s", stage, detail);
    return true;
}

static int hook_check(void *ctx)
{
    hook_ctx *h = ctx;
    if (atomic_load(&h->s->lost))
        return 1;
    if (util_mono_s() > atomic_load(&h->s->lease_until)) {
        if (!atomic_exchange(&h->s->lost, 1))
            log_warn("our lease may have expired (no renewal for %d s): stopping before touching "
                     "the node again", h->s->cfg->lease_seconds);
        return 1;
    }
    if (atomic_load(&stopping))
        return 2;
    return 0;
}

static void hook_on_stage(void *ctx, const char *stage)
{
    hook_ctx *h = ctx;
    slot_stage_set(h->s, stage);
    log_ctx_stage(stage);
}

/* hook_finish (ok) then hook_on_stage + hook_start of next, with one
 * statement (vcl.stage_next): the same rows, logs and fault points, in the
 * same order. */
static bool hook_finish_start(void *ctx, long long row, const char *stage, const char *detail,
                              const char *next, long long *next_row, vcl_error *e)
{
    hook_ctx *h = ctx;
    db_params prm;
    stage_finishing(h, stage, row, &prm);
    db_param_str(&prm, detail);
    db_param_str(&prm, next);
    if (!stage_row_exec(h, SQL_STAGE_NEXT, &prm, stage, "its finish", next_row, e))
        return false;
    log_info("stage %s finished: %s", stage, detail);
    hook_on_stage(ctx, next);
    stage_started(h, next, *next_row);
    return true;
}

static const stage_hooks engine_hooks = { hook_start, hook_finish, hook_check, hook_on_stage,
                                          hook_finish_start };

/* "{1,2,3}" into buf; cap must hold n * 21 + 3 bytes (ARRAY_LITERAL_CAP). */
#define ARRAY_LITERAL_CAP(n) ((size_t)(n) * 21 + 3)
static void array_literal(char *buf, size_t cap, const long long *v, int n)
{
    size_t len = 0;
    buf[len++] = '{';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", v[i]);
    snprintf(buf + len, cap - len, "}");
}

/* Fenced out because a DBA or vclctl cancelled the row (still under our
 * token), rather than taken over by another worker? */
static bool cancelled_by_us(slot *s, job *j)
{
    db_params prm;
    db_params_init(&prm);
    db_param_ll(&prm, j->id);
    db_param_ll(&prm, j->token);
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = slot_exec(s, SQL_CANCELLED_BY_US, &prm, &e);
    bool yes = r && PQntuples(r) == 1;
    PQclear(r);
    return yes;
}

/* The job was cancelled (vcl.cancel fenced it out): run the operation's
 * cancel step (op_def.on_cancel), if it has one, and record what it did on
 * the computer row. The computer's next reservation waits until our old
 * lease would have expired (vcl.cancel sets blocks_until), so nobody else
 * acts on this computer meanwhile. */
static void cleanup_cancelled(slot *s, job *j, const op_def *op)
{
    vcl_error e;
    char detail[STAGE_DETAIL_LEN];
    /* The heartbeat has marked the job lost (the row is no longer running),
     * but vcl.cancel keeps the computer to us until our old lease would have
     * expired (blocks_until): only that deadline limits the cleanup. */
    j->still_ours = lease_deadline_holds;
    j->still_ours_ctx = s;
    j->cancel_cleanup = true;
    switch (stage_cancel(op, j, detail, sizeof detail, &e)) {
    case STAGE_CANCEL_NONE:
        log_info("reservation cancelled: stopped at the stage boundary");
        return;
    case STAGE_CANCEL_FAILED:
        log_error("reservation cancelled, but cleaning up after it failed: %s "
                  "(the next load of this computer cleans up)", e.msg);
        return;
    default:
        break;
    }
    db_params prm;
    db_params_init(&prm);
    db_param_ll(&prm, j->id);
    db_param_ll(&prm, j->token);
    db_param_str(&prm, detail);
    PGresult *r = slot_exec(s, SQL_CANCEL_CLEANED, &prm, &e);
    PQclear(r);
    log_info("reservation cancelled: stopped at the stage boundary and cleaned up: %s", detail);
}

/* The parameters of vcl.fail (SQL_FAIL). */
static void fail_params(db_params *prm, long long id, long long token, const char *msg,
                        const char *stage, bool permanent, double delay)
{
    db_params_init(prm);
    db_param_ll(prm, id);
    db_param_ll(prm, token);
    db_param_str(prm, msg);
    db_param_str(prm, stage);
    db_param_bool(prm, permanent);
    db_param_double(prm, delay);
}

/* Log and count what vcl.fail answered in r: the row's new state (failed
 * for good, or pending for a retry), or no row when the lease was lost
 * meanwhile. r NULL (nothing written) logs nothing here. */
static void fail_outcome(PGresult *r, const char *operation, const char *stage,
                         vcl_err_class cls, int attempts, int max_attempts, double delay,
                         const char *msg)
{
    const char *st = r ? db_get_str(r, 0, 0) : NULL;
    if (st && strcmp(st, "failed") == 0) {
        log_error("reservation failed in stage %s (%s, attempt %d of %d): %s", stage,
                  vcl_err_class_name(cls), attempts, max_attempts, msg);
        metrics_job_failed(operation);
    } else if (st) {
        log_warn("stage %s failed (attempt %d of %d), retry in %.1fs: %s", stage, attempts,
                 max_attempts, delay, msg);
        metrics_job_retried(operation);
    } else if (r) {
        log_warn("stage %s failed, but the lease was lost: %s", stage, msg);
        metrics_lease_lost();
    }
}

static bool slot_is_abandoned(slot *s)
{
    pthread_mutex_lock(&s->p->mu);
    bool a = s->abandoned;
    pthread_mutex_unlock(&s->p->mu);
    return a;
}

static void slot_finish_job(slot *s, job *j, stage_run_result res, const char *failed_stage,
                            vcl_error *err)
{
    db_params prm;
    db_params_init(&prm);
    char ids[ARRAY_LITERAL_CAP(1)], toks[ARRAY_LITERAL_CAP(1)];
    vcl_error e;
    vcl_error_clear(&e);
    PGresult *r = NULL;
    switch (res) {
    case STAGE_RUN_DONE:
        array_literal(ids, sizeof ids, &j->id, 1);
        array_literal(toks, sizeof toks, &j->token, 1);
        db_param_str(&prm, ids);
        db_param_str(&prm, toks);
        r = slot_exec(s, SQL_COMPLETE, &prm, &e);
        if (r && PQntuples(r) == 1) {
            log_info("reservation done");
            metrics_job_done(j->operation);
            metrics_job_observe(j->operation, j->node, util_mono_s() - s->job_began);
        } else if (r) {
            log_warn("reservation finished but the lease was lost before completion was written");
            metrics_lease_lost();
        }
        break;
    case STAGE_RUN_FAILED: {
        double delay = backoff_seconds(j->attempts, s->cfg->retry_base_seconds,
                                       s->cfg->retry_max_seconds, backoff_random());
        fail_params(&prm, j->id, j->token, err->msg, failed_stage,
                    err->cls == VCL_ERR_PERMANENT, delay);
        r = slot_exec(s, SQL_FAIL, &prm, &e);
        fail_outcome(r, j->operation, failed_stage, err->cls, j->attempts, j->max_attempts, delay,
                     err->msg);
        break;
    }
    case STAGE_RUN_LOST:
        if (slot_is_abandoned(s)) {
            /* the main thread failed the job at the stage deadline: nothing
             * more from this thread (a cancel since then is not ours) */
            log_warn("stage thread returned after its deadline; the job was failed without it "
                     "and it wrote nothing more");
        } else if (cancelled_by_us(s, j)) {
            cleanup_cancelled(s, j, ops_find(j->operation));
        } else if (err->cls == VCL_ERR_LOST) {
            /* a fenced write found the lease gone: the row is someone else's */
            log_warn("lease lost: abandoning the job without touching it further (%s)", err->msg);
            metrics_lease_lost();
        } else {
            log_warn("lease lost: abandoning the job without touching it further");
            metrics_lease_lost();
        }
        break;
    case STAGE_RUN_STOPPED:
        array_literal(ids, sizeof ids, &j->id, 1);
        array_literal(toks, sizeof toks, &j->token, 1);
        db_param_str(&prm, ids);
        db_param_str(&prm, toks);
        r = slot_exec(s, SQL_RELEASE, &prm, &e);
        log_info("shutting down: handed the job back%s", r && PQntuples(r) ? "" : " (lease already lost)");
        break;
    default:
        break;
    }
    if (!r && e.cls != VCL_ERR_NONE)
        log_error("could not record the job's outcome (%s): %s; its lease will expire and "
                  "another worker will resume it", stage_run_result_name(res), e.msg);
    PQclear(r);
}

static void *slot_main(void *arg)
{
    slot *s = arg;
    pool *p = s->p;
    job j;
    memset(&j, 0, sizeof j);
    vcl_error e;
    vcl_error_clear(&e);
    char failed_stage[64] = "";
    stage_run_result res = STAGE_RUN_FAILED;
    s->job_began = util_mono_s();
    log_ctx_set(s->id, NULL, NULL);

    if (!s->db || db_is_broken(s->db)) {
        db_params none;
        db_params_init(&none);
        PGresult *r = slot_exec(s, "SELECT 1", &none, &e);
        PQclear(r);
        if (!r) {
            log_error("no database connection for the job: %s; its lease will expire", e.msg);
            goto out;
        }
    }
    if (!job_load(&j, s->db, s->id, s->token, &e)) {
        log_error("loading the reservation: %s", e.msg);
        snprintf(failed_stage, sizeof failed_stage, "%s", "claim");
        j.id = s->id;
        j.token = s->token;
        j.attempts = 1;
        slot_finish_job(s, &j, STAGE_RUN_FAILED, failed_stage, &e);
        goto out;
    }
    j.cfg = s->cfg;
    j.drivers = p->drivers;
    j.still_ours = job_still_ours;
    j.still_ours_ctx = s;
    slot_publish_job(s, &j);
    log_ctx_set(j.id, j.computer, j.node);
    log_ctx_operation(j.operation);
    const op_def *op = ops_find(j.operation);
    if (!op) {
        vcl_error_set(&e, VCL_ERR_PERMANENT,
                      "operation '%s' is not supported by this worker (version %s)",
                      j.operation, version_string());
        snprintf(failed_stage, sizeof failed_stage, "%s", j.operation);
        slot_finish_job(s, &j, STAGE_RUN_FAILED, failed_stage, &e);
        goto out;
    }
    log_info("running %s (attempt %d of %d)%s%s", op->name, j.attempts, j.max_attempts,
             j.checkpoint[0] ? ", checkpoint " : "", j.checkpoint);
    hook_ctx hc = { s, &j };
    res = stage_run(op, j.checkpoint, &j, &engine_hooks, &hc, failed_stage, sizeof failed_stage, &e);
    slot_stage_set(s, NULL);
    slot_finish_job(s, &j, res, failed_stage, &e);
out:
    job_clear(&j);
    log_ctx_clear();
    pthread_mutex_lock(&p->mu);
    bool abandoned = s->abandoned;
    s->state = SLOT_FINISHED;
    pthread_mutex_unlock(&p->mu);
    if (!abandoned)
        metrics_slot_busy(-1);   /* an abandoned slot was counted free already */
    wake(p);
    return NULL;
}

/* ---------------- main thread ---------------- */

/* Slots running a job (an abandoned slot is not: its job was failed and
 * the slot counts as free). */
static int slots_running(pool *p)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < MAX_SLOTS; i++)
        n += p->slots[i].state != SLOT_IDLE && !p->slots[i].abandoned;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Abandoned slots whose thread has not returned yet. */
static int slots_stuck(pool *p)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < MAX_SLOTS; i++)
        n += p->slots[i].state != SLOT_IDLE && p->slots[i].abandoned;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Slots free for new jobs. A stuck thread holds its slot struct (and its
 * connections) until it returns, so new jobs run in other structs; up to
 * `slots` stuck threads are tolerated on top of the running ones, beyond
 * that each further one keeps a slot busy (a bound on threads and
 * connections when many nodes hang at once). */
static int slots_free(pool *p, int running, int stuck)
{
    int over = stuck - p->cfg->slots, free_n = p->cfg->slots - running;
    if (over > 0)
        free_n -= over;
    if (free_n > MAX_SLOTS - running - stuck)
        free_n = MAX_SLOTS - running - stuck;
    return free_n > 0 ? free_n : 0;
}

static void reap_slots(pool *p)
{
    for (int i = 0; i < MAX_SLOTS; i++) {
        slot *s = &p->slots[i];
        pthread_mutex_lock(&p->mu);
        bool fin = s->state == SLOT_FINISHED;
        pthread_mutex_unlock(&p->mu);
        if (!fin)
            continue;
        pthread_join(s->th, NULL);
        pthread_mutex_lock(&p->mu);
        if (s->abandoned)
            log_info("the thread of reservation %lld, abandoned at its stage deadline, has "
                     "returned", s->id);
        s->state = SLOT_IDLE;
        s->id = s->token = 0;
        s->abandoned = false;
        memset(&s->cur, 0, sizeof s->cur);
        s->cfg = NULL;
        pthread_mutex_unlock(&p->mu);
    }
}

/* Free every retired config that no running slot uses. Main thread only. */
static void retire_unused(pool *p)
{
    int kept = 0;
    for (int k = 0; k < p->n_retired; k++) {
        vcl_config *c = p->retired[k];
        bool used = false;
        pthread_mutex_lock(&p->mu);
        for (int i = 0; i < MAX_SLOTS && !used; i++)
            used = p->slots[i].state != SLOT_IDLE && p->slots[i].cfg == c;
        pthread_mutex_unlock(&p->mu);
        if (used) {
            p->retired[kept++] = c;
        } else {
            config_clear(c);
            free(c);
        }
    }
    p->n_retired = kept;
}

/* c is in force from now on; the config it replaces is retired (the first
 * one stays until exit). */
static void config_replace(pool *p, vcl_config *c)
{
    retire_unused(p); /* now at most one retired config per running slot */
    if (p->cfg != p->first)
        p->retired[p->n_retired++] = p->cfg;
    p->cfg = c;
    retire_unused(p);
}

/* The main connection's session: not pooled per transaction (checked once,
 * at start), LISTEN, and the worker's row the first time. */
static bool main_session(pool *p, vcl_error *e)
{
    if (!p->worker_id && !dbroute_check_pooling(p->db, p->cfg->database, p->worker_name, e)) {
        log_error("%s", e->msg);
        return false;
    }
    if (!db_run(p->db, SQL_LISTEN, 0, NULL, e)) {
        log_error("LISTEN failed: %s", e->msg);
        return false;
    }
    if (!p->worker_id) {
        char host[128] = "", pid[16], slots[16];
        gethostname(host, sizeof host - 1);
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        snprintf(slots, sizeof slots, "%d", p->cfg->slots);
        const char *prm[5] = { p->worker_name, host, pid, slots, version_string() };
        bool isnull = true;
        vcl_error_clear(e);   /* a NULL id is no retryable error */
        if (!db_scalar_ll(p->db, SQL_REGISTER_WORKER, 5, prm, &p->worker_id, &isnull, e) || isnull) {
            log_error("registering the worker: %s", e->msg);
            return false;
        }
        log_info("worker %s registered as id %lld with %d slot(s)", p->worker_name, p->worker_id,
                 p->cfg->slots);
    }
    return true;
}

/* Connect (or reconnect) the main connection, LISTEN, and register the
 * worker the first time. A retryable failure after connecting (a failover:
 * the server went away again, or took no writes, 25006) starts over. */
static bool main_connect(pool *p)
{
    vcl_error e;
    vcl_error_clear(&e);
    claim_point_clear(&p->resume); /* perhaps another server now: walk from the head */
    for (;;) {
        if (!p->db)
            p->db = db_connect(p->cfg->database, p->worker_name, &e);
        else if (!db_reconnect_backoff(p->db, &sig_stop, 0, sdnotify_waiting, &e))
            return false;
        if (!p->db) {
            log_warn("%s (retrying)", e.msg);
            if (sig_stop)
                return false;
            sdnotify_waiting(e.msg);
            sleep(1);
            continue;
        }
        if (main_session(p, &e))
            return true;
        if (e.cls != VCL_ERR_RETRYABLE || sig_stop)
            return false;
        log_warn("%s (reconnecting)", e.msg);
        sdnotify_waiting(e.msg);
        sleep(1);
    }
}

/* Operations with no stages (noop) have nothing to run: they are done as
 * soon as they are claimed. Their completions queue up here and are written
 * in batches (one statement, one commit for up to DONE_BATCH rows), after the
 * claims that took them: batched completion is where queue throughput comes
 * from, and a claim stays one round trip. A worker that dies with completions
 * queued loses nothing: the rows are running with a lease, and the rescue
 * completes them (nothing to rerun). */
#define DONE_MAX_WAIT_S 0.01

static void done_add(pool *p, long long id, long long token, const char *op)
{
    done_queue *d = &p->done;
    if (d->n == DONE_BATCH)
        return; /* cannot happen: flushed before it fills; the lease expires and a rescue completes it */
    if (d->n == 0)
        d->first_at = util_mono_s();
    d->id[d->n] = id;
    d->token[d->n] = token;
    d->op[d->n++] = op;
}

/* Write the queued completions (one fenced statement). On failure they are
 * dropped: their leases expire and a rescue completes them. */
static void done_flush(pool *p)
{
    done_queue *d = &p->done;
    if (d->n == 0)
        return;
    vcl_error e;
    vcl_error_clear(&e);
    char *ids = malloc(ARRAY_LITERAL_CAP(d->n)), *toks = malloc(ARRAY_LITERAL_CAP(d->n));
    if (ids && toks) {
        array_literal(ids, ARRAY_LITERAL_CAP(d->n), d->id, d->n);
        array_literal(toks, ARRAY_LITERAL_CAP(d->n), d->token, d->n);
    }
    const char *prm[2] = { ids, toks };
    PGresult *r = ids && toks ? db_exec(p->db, SQL_COMPLETE, 2, prm, &e) : NULL;
    if (r) {
        log_debug("completed %d of %d job(s) with nothing to run", PQntuples(r), d->n);
        /* only the rows still ours were completed (the ids returned) */
        for (int g = 0; metrics_enabled() && g < PQntuples(r); g++) {
            long long id = db_get_ll(r, g, 0);
            for (int k = 0; k < d->n; k++)
                if (d->id[k] == id) {
                    metrics_job_done(d->op[k]);
                    break;
                }
        }
    } else {
        log_warn("completing %d job(s) with nothing to run: %s; their leases will expire and a "
                 "rescue completes them", d->n, ids && toks ? e.msg : "out of memory");
    }
    PQclear(r);
    free(ids);
    free(toks);
    d->n = 0;
}

static void start_slot(pool *p, long long id, long long token, double claimed_at)
{
    slot *s = NULL;
    pthread_mutex_lock(&p->mu);
    /* any idle struct: the first ones may be held by stuck threads */
    for (int i = 0; i < MAX_SLOTS && !s; i++)
        if (p->slots[i].state == SLOT_IDLE)
            s = &p->slots[i];
    if (s) {
        s->state = SLOT_RUNNING;
        s->id = id;
        s->token = token;
        s->abandoned = false;
        memset(&s->cur, 0, sizeof s->cur);
        atomic_store(&s->lost, 0);
        atomic_store(&s->lease_until, claimed_at + p->cfg->lease_seconds - LEASE_MARGIN_S);
        s->cfg = p->cfg;
    }
    pthread_mutex_unlock(&p->mu);
    if (!s) {
        log_error("claimed more rows than free slots (bug); the lease of reservation %lld will "
                  "expire", id);
        return;
    }
    log_debug("claimed reservation %lld (token %lld)", id, token);
    metrics_slot_busy(1);
    if (pthread_create(&s->th, NULL, slot_main, s) != 0) {
        log_error("cannot start a thread for reservation %lld; its lease will expire", id);
        metrics_slot_busy(-1);
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_IDLE;
        pthread_mutex_unlock(&p->mu);
    }
}

/* After a claim that drained the queue: when the next retry, lease expiry or
 * cancel block falls due, so the worker wakes then instead of polling. */
static void read_next_due(pool *p, double sent_at)
{
    vcl_error e;
    vcl_error_clear(&e);
    long long due_ms = 0;
    bool isnull = true;
    p->next_due = 0;
    if (!db_scalar_ll(p->db, SQL_NEXT_DUE, 0, NULL, &due_ms, &isnull, &e))
        log_warn("vcl.next_due: %s (polling every %d s)", e.msg, p->cfg->poll_seconds);
    else if (!isnull)
        p->next_due = sent_at + (double)(due_ms > 0 ? due_ms : 0) / 1000 + 0.01;
}

/* One statement, its own transaction: claim up to `want` rows, then hand
 * the ones with stages to slots (after the commit, so their fenced writes
 * see the claim) and queue the others' completion. The walk starts at the
 * resume point (claimpoint.h) unless this claim looks for expired leases
 * (then from the head, at least once a second); loads are looked for every
 * LOAD_CHECK_S. A claim that comes back short after it walked from the
 * point or did not look for loads is followed at once by one from the head
 * that looks (`all`), for what it skipped. Returns rows claimed, -1 on
 * error. */
static int claim(pool *p, int want, bool all)
{
    vcl_error e;
    vcl_error_clear(&e);
    db_params prm;
    db_params_init(&prm);
    db_param_ll(&prm, p->worker_id);
    db_param_ll(&prm, want);
    db_param_ll(&prm, p->cfg->lease_seconds);
    double sent_at = util_mono_s(); /* the lease runs from (no earlier than) here */
    bool rescue = sent_at >= p->next_rescue;
    db_param_str(&prm, rescue ? "true" : "false");
    if (rescue)
        p->next_rescue = sent_at + RESCUE_CHECK_S;
    bool loads = all || rescue || sent_at >= p->next_loads, took_load = false;
    if (loads)
        p->next_loads = sent_at + LOAD_CHECK_S;
    bool resumed = !all && !rescue && p->resume.set;
    if (resumed) {
        db_param_ll(&prm, p->resume.priority);
        db_param_ll(&prm, p->resume.run_at_us);
        db_param_ll(&prm, p->resume.id);
    } else {
        db_param_str(&prm, NULL);
        db_param_str(&prm, NULL);
        db_param_str(&prm, NULL);
        claim_point_clear(&p->resume);
    }
    db_param_str(&prm, loads ? "true" : "false");
    if (p->done.n + want > DONE_BATCH)
        done_flush(p);
    PGresult *r = db_exec(p->db, SQL_CLAIM, prm.n, prm.v, &e);
    if (!r) {
        claim_point_clear(&p->resume);
        if (strcmp(db_sqlstate(p->db), "23505") == 0) {
            log_debug("claim raced with another worker on one computer; trying again");
            return 0;
        }
        log_error("claim: %s", e.msg);
        return -1;
    }
    int got = PQntuples(r), started = 0;
    for (int k = 0; k < got; k++) {
        long long id = db_get_ll(r, k, 0), token = db_get_ll(r, k, 1);
        const char *opname = PQgetvalue(r, k, 2);
        const op_def *op = ops_find(opname);
        metrics_job_claimed(opname);
        if (k == 0)
            p->last_claim_id = id;
        /* the walk's rows only: loads come through their nodes' own index,
         * and a claim that rescued walked from the head anyway */
        if (strcmp(opname, "load") == 0)
            took_load = true;
        else if (!rescue && !PQgetisnull(r, k, 4))
            claim_point_advance(&p->resume, (int)db_get_ll(r, k, 3), db_get_ll(r, k, 4), id);
        if (op && stage_count(op) == 0) {
            log_debug("claimed reservation %lld (token %lld)", id, token);
            done_add(p, id, token, op->name);
        } else {
            start_slot(p, id, token, sent_at);
            started++;
        }
    }
    PQclear(r);
    if (took_load) /* more may be claimable now: look again at the next claim */
        p->next_loads = sent_at;
    /* an idle worker heartbeats less often: the leases it now holds need
     * the usual pace */
    if (started > 0 && p->next_heartbeat > util_mono_s() + p->cfg->heartbeat_seconds)
        p->next_heartbeat = util_mono_s() + p->cfg->heartbeat_seconds;
    if (got < want) {
        claim_point_clear(&p->resume);
        if (resumed || !loads) { /* what it skipped: look from the head, for loads too */
            int more = claim(p, want - got, true);
            return more < 0 ? (got > 0 ? got : -1) : got + more;
        }
        read_next_due(p, sent_at);
        /* next_due names only future expiries: a lease that expired while
         * this claim did not look is found by the next one that does */
        if (!rescue && (p->next_due == 0 || p->next_due > p->next_rescue))
            p->next_due = p->next_rescue;
    }
    return got;
}

/* Maintenance: delete finished reservations past the retention, in small
 * batches (each its own short transaction), a few batches per pass. */
static void prune(pool *p)
{
    if (p->cfg->history_retention_seconds <= 0)
        return;
    db_params prm;
    db_params_init(&prm);
    db_param_ll(&prm, p->cfg->history_retention_seconds);
    db_param_ll(&prm, p->cfg->prune_batch);
    long long total = 0;
    for (int pass = 0; pass < 20; pass++) {
        vcl_error e;
        vcl_error_clear(&e);
        long long n = 0;
        bool isnull = true;
        if (!db_scalar_ll(p->db, SQL_PRUNE, prm.n, prm.v, &n, &isnull, &e)) {
            log_warn("maintenance: pruning history failed: %s", e.msg);
            break;
        }
        total += n;
        if (n < p->cfg->prune_batch)
            break;
    }
    if (total)
        log_info("maintenance: deleted %lld finished reservation(s) older than %ds", total,
                 p->cfg->history_retention_seconds);
}

static void heartbeat(pool *p)
{
    char ids[ARRAY_LITERAL_CAP(MAX_SLOTS)], toks[ARRAY_LITERAL_CAP(MAX_SLOTS)];
    long long sent_id[MAX_SLOTS], sent_tok[MAX_SLOTS];
    int n = 0;
    double now = util_mono_s();
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < MAX_SLOTS; i++) {
        slot *s = &p->slots[i];
        /* Only while the running stage is inside its deadline: a stage stuck
         * on a hung node must not hold the job (and its computer and node
         * load slot) forever. enforce_deadlines() fails it; should that
         * write fail too, the lease runs out and another worker rescues it. */
        if (s->state != SLOT_RUNNING || s->abandoned ||
            (s->cur.deadline > 0 && now > s->cur.deadline))
            continue;
        sent_id[n] = s->id;
        sent_tok[n] = s->token;
        n++;
    }
    pthread_mutex_unlock(&p->mu);
    array_literal(ids, sizeof ids, sent_id, n);
    array_literal(toks, sizeof toks, sent_tok, n);

    vcl_error e;
    vcl_error_clear(&e);
    db_params prm;
    db_params_init(&prm);
    db_param_ll(&prm, p->worker_id);
    db_param_str(&prm, ids);
    db_param_str(&prm, toks);
    db_param_ll(&prm, p->cfg->lease_seconds);
    double sent_at = util_mono_s();
    PGresult *r = db_exec(p->db, SQL_HEARTBEAT, prm.n, prm.v, &e);
    if (!r) {
        log_warn("heartbeat failed: %s", e.msg);
        if (util_mono_s() - p->last_heartbeat_ok > p->cfg->lease_seconds) {
            /* We cannot renew: our leases are gone; stop touching the jobs. */
            pthread_mutex_lock(&p->mu);
            for (int i = 0; i < MAX_SLOTS; i++)
                if (p->slots[i].state == SLOT_RUNNING && !atomic_exchange(&p->slots[i].lost, 1))
                    log_warn("no heartbeat for over a lease: giving up reservation %lld",
                             p->slots[i].id);
            pthread_mutex_unlock(&p->mu);
        }
        return;
    }
    p->last_heartbeat_ok = util_mono_s();
    int got = PQntuples(r);
    pthread_mutex_lock(&p->mu);
    for (int k = 0; k < n; k++) {
        bool kept = false;
        for (int g = 0; g < got && !kept; g++)
            kept = db_get_ll(r, g, 0) == sent_id[k];
        if (kept) {
            for (int i = 0; i < MAX_SLOTS; i++) {
                slot *s = &p->slots[i];
                if (s->state == SLOT_RUNNING && s->id == sent_id[k] && s->token == sent_tok[k])
                    atomic_store(&s->lease_until,
                                 sent_at + p->cfg->lease_seconds - LEASE_MARGIN_S);
            }
            continue;
        }
        /* only the job we asked about, if the slot still runs it */
        for (int i = 0; i < MAX_SLOTS; i++) {
            slot *s = &p->slots[i];
            if (s->state == SLOT_RUNNING && s->id == sent_id[k] && s->token == sent_tok[k] &&
                !atomic_exchange(&s->lost, 1))
                log_warn("lease of reservation %lld lost (taken over, cancelled or finished "
                         "elsewhere)", s->id);
        }
    }
    pthread_mutex_unlock(&p->mu);
    PQclear(r);
}

/* A stage past its deadline (stage_timeout_seconds, stage_timeouts) is
 * stuck on a node that does not answer. Its thread cannot be interrupted
 * (it may be inside a libvirt or libssh2 call), so the main thread gives up
 * the job for it: the slot is marked lost (job_check_ours() and the
 * transport guard refuse every node action from then on; hook_check stops
 * the stage engine at its next boundary) and abandoned (counted free: new
 * jobs run in another slot struct, this one is reused once its thread has
 * returned), then the job is failed as retryable, exactly like a failed
 * stage, with its stage-log row closed. Every write the thread might still
 * attempt is fenced by its token: from now on the row is no longer running
 * under that token (vcl.fail), and a new claim brings a new one. */
typedef struct overdue {
    long long id, token;
    slot_stage cur;
} overdue;

static void enforce_deadlines(pool *p)
{
    overdue od[MAX_SLOTS];
    int n = 0;
    double now = util_mono_s();
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < MAX_SLOTS; i++) {
        slot *s = &p->slots[i];
        if (s->state != SLOT_RUNNING || s->abandoned || s->cur.deadline <= 0 ||
            now <= s->cur.deadline)
            continue;
        s->abandoned = true;
        atomic_store(&s->lost, 1);
        od[n].id = s->id;
        od[n].token = s->token;
        od[n].cur = s->cur;
        n++;
    }
    pthread_mutex_unlock(&p->mu);
    if (n == 0)
        return;
    int stuck = slots_stuck(p);
    metrics_slots_stuck(stuck);
    for (int k = 0; k < n; k++) {
        const slot_stage *c = &od[k].cur;
        char msg[512];
        vcl_error e;
        vcl_error_clear(&e);
        metrics_slot_busy(-1);
        metrics_stage_deadline(c->operation, c->stage);
        snprintf(msg, sizeof msg, "node %s did not answer within %d s (stage %s)", c->node,
                 c->limit, c->stage);
        log_ctx_set(od[k].id, NULL, c->node);
        log_ctx_stage(c->stage);
        log_ctx_operation(c->operation);
        log_warn("%s: failing the job and freeing its slot; its thread is abandoned (it writes "
                 "nothing and touches the node no more)", msg);
        if (c->row > 0) {
            db_params prm;
            db_params_init(&prm);
            db_param_ll(&prm, od[k].id);
            db_param_ll(&prm, od[k].token);
            db_param_ll(&prm, c->row);
            db_param_bool(&prm, false);
            db_param_str(&prm, msg);
            PQclear(db_exec(p->db, SQL_STAGE_FINISH, prm.n, prm.v, &e));
        }
        double delay = backoff_seconds(c->attempts, p->cfg->retry_base_seconds,
                                       p->cfg->retry_max_seconds, backoff_random());
        db_params prm;
        fail_params(&prm, od[k].id, od[k].token, msg, c->stage, false, delay);
        PGresult *r = db_exec(p->db, SQL_FAIL, prm.n, prm.v, &e);
        if (r)
            fail_outcome(r, c->operation, c->stage, VCL_ERR_RETRYABLE, c->attempts,
                         c->max_attempts, delay, msg);
        else
            log_error("could not record the failure (%s): the lease is no longer renewed, so "
                      "the job is rescued when it expires", e.msg);
        PQclear(r);
        log_ctx_clear();
    }
    if (stuck > p->cfg->slots)
        log_warn("%d job thread(s) are stuck on unresponsive nodes, more than slots (%d): "
                 "each further one keeps its slot busy until it returns", stuck, p->cfg->slots);
    else
        log_info("%d job thread(s) stuck on unresponsive nodes; their slots run new jobs", stuck);
}

/* util_mono_s() time of the earliest running stage deadline; 0 = none. */
static double next_deadline(pool *p)
{
    double first = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < MAX_SLOTS; i++) {
        const slot *s = &p->slots[i];
        if (s->state == SLOT_RUNNING && !s->abandoned && s->cur.deadline > 0 &&
            (first == 0 || s->cur.deadline < first))
            first = s->cur.deadline;
    }
    pthread_mutex_unlock(&p->mu);
    return first;
}

static void reload_config(pool *p)
{
    const char *path = p->opts->config_path;
    vcl_config *c = NULL;
    vcl_error e;
    config_changes ch;

    sig_reload = 0;
    vcl_error_clear(&e);
    if (!path) {
        log_warn("SIGHUP: no config file to reload (started without --config)");
        return;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        log_error("SIGHUP: keeping the running configuration: out of memory");
        return;
    }
    config_defaults(c);
    if (!config_load(c, path, &e) || !config_validate(c, &e)) {
        log_error("SIGHUP: keeping the running configuration: %s", e.msg);
        config_clear(c);
        free(c);
        return;
    }
    /* Restart-only options (the table's restart flag: connections, the
     * worker's name, drivers, watcher, metrics listener) keep the running
     * value; a warning names each one the file changed. */
    config_reload_merge(c, p->cfg, &ch);
    for (int i = 0; i < ch.n_kept; i++)
        log_warn("%s changed in %s but takes effect only after a restart", ch.kept[i], path);
    if (c->slots > MAX_SLOTS)
        c->slots = MAX_SLOTS;
    log_level lvl;
    if (log_level_parse(c->log_level, &lvl))
        log_set_level(lvl);
    log_format lf;
    if (log_format_parse(c->log_format, &lf))
        log_set_format(lf);
    metrics_slots(c->slots);
    virt_set_keepalive(c->libvirt_keepalive_interval, c->libvirt_keepalive_count);
    virt_set_connect_timeout(c->libvirt_connect_timeout_seconds);
    virt_set_ssh_keyfile(c->ssh_private_key);
    config_replace(p, c);
    char changed[512] = "";
    size_t n = 0;
    for (int i = 0; i < ch.n_applied && n < sizeof changed; i++)
        n += (size_t)snprintf(changed + n, sizeof changed - n, "%s%s", i ? ", " : "",
                              ch.applied[i]);
    log_info("SIGHUP: configuration reloaded from %s (slots %d, lease %ds, poll %ds); "
             "changed: %s", path, c->slots, c->lease_seconds, c->poll_seconds,
             ch.n_applied ? changed : "nothing");
}

int pool_run(vcl_config *cfg, const pool_opts *opts)
{
    static pool P;
    pool *p = &P;
    int rc = 1;
    vcl_error e;
    vcl_error_clear(&e);
    memset(p, 0, sizeof *p);
    p->cfg = p->first = cfg;
    p->opts = opts;
    pthread_mutex_init(&p->mu, NULL);
    for (int i = 0; i < MAX_SLOTS; i++) {
        p->slots[i].p = p;
        p->slots[i].index = i;
    }
    if (cfg->worker_name && cfg->worker_name[0])
        snprintf(p->worker_name, sizeof p->worker_name, "%s", cfg->worker_name);
    else {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(p->worker_name, sizeof p->worker_name, "%s-%d", host, (int)getpid());
    }
    log_set_worker(p->worker_name);
    sdnotify_init();

    if (pipe2(p->wake_fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        log_error("pipe: %s", strerror(errno));
        return 1;
    }
    sig_wake_fd = p->wake_fd[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    virt_init();
    virt_set_keepalive(cfg->libvirt_keepalive_interval, cfg->libvirt_keepalive_count);
    virt_set_connect_timeout(cfg->libvirt_connect_timeout_seconds);
    virt_set_ssh_keyfile(cfg->ssh_private_key);
    if (!hvdriver_load_all(cfg->drivers_dir, cfg->driver_order, cfg->n_driver_order, &p->drivers,
                           &e)) {
        log_error("drivers: %s", e.msg);
        goto cleanup;
    }
    if (cfg->metrics_listen[0]) {
        metrics_init(p->worker_name, version_string());
        for (const op_def *const *op = ops_all(); *op; op++)
            metrics_seed_operation((*op)->name);
        metrics_slots(cfg->slots);
        if (!metrics_serve(cfg->metrics_listen, &e)) {
            log_error("%s", e.msg);
            goto cleanup;
        }
    }
    if (!main_connect(p))
        goto cleanup;
    p->last_heartbeat_ok = util_mono_s();
    /* Between reservations, notice domains that stop outside vcl-worker.
     * Not for --drain runs (scripts and tests that exit when idle). */
    if (!opts->drain && !watch_start(cfg, p->worker_name, &e))
        log_warn("domain watcher not started: %s", e.msg);

    p->next_heartbeat = util_mono_s() + p->cfg->heartbeat_seconds;
    double next_prune = util_mono_s() + 5;
    double next_poll = 0;
    bool want_claim = true;
    bool claim_more = false;   /* the last claim was full: more may be waiting */
    bool claim_now = true;     /* a slot freed up, a signal, a reconnect: no debounce */
    double last_claim = 0;
    int idle_claims = 0;
    for (;;) {
        if (sig_reload) {
            sdnotify_reloading();
            reload_config(p);
            sdnotify_reloaded();
        }
        if (sig_stop && !atomic_load(&stopping)) {
            atomic_store(&stopping, 1);
            sdnotify_stopping();
            log_info("stopping: no new claims; running stages finish, then jobs are handed back");
        }
        reap_slots(p);
        if (p->n_retired)
            retire_unused(p);
        enforce_deadlines(p);
        int running = slots_running(p), stuck = slots_stuck(p);
        metrics_slots_stuck(stuck);
        sdnotify_tick(running, p->cfg->slots);
        if (atomic_load(&stopping) && running == 0)
            break;

        double now = util_mono_s();
        if (db_is_broken(p->db)) {
            log_warn("lost the database connection; reconnecting");
            if (!main_connect(p)) {
                if (sig_stop)
                    continue;
                goto cleanup;
            }
            want_claim = claim_now = true;
        }
        if (now >= p->next_heartbeat) {
            heartbeat(p);
            /* holding no job, only vcl.worker.heartbeat_at is renewed: as
             * often as a lease lasts is enough to show the worker lives */
            int every = p->cfg->heartbeat_seconds;
            if (running == 0 && p->cfg->lease_seconds > every)
                every = p->cfg->lease_seconds;
            p->next_heartbeat = now + every;
        }
        if (now >= next_prune && !opts->drain) {
            prune(p);
            next_prune = now + 60;
        }
        if (p->done.n > 0 && now - p->done.first_at >= DONE_MAX_WAIT_S)
            done_flush(p);
        int free_slots = slots_free(p, running, stuck);
        /* Debounce: NOTIFY vcl_reservation, which any login may send, costs
         * at most one claim per notify_min_gap_ms; a full batch, a freed
         * slot or a signal claims at once. */
        double gap = p->cfg->notify_min_gap_ms / 1000.0;
        bool gap_ok = claim_more || claim_now || now >= last_claim + gap;
        if (!atomic_load(&stopping) && free_slots > 0 && (want_claim || now >= next_poll) && gap_ok) {
            int want = free_slots < p->cfg->claim_batch ? free_slots : p->cfg->claim_batch;
            p->next_due = 0;
            int got = claim(p, want, false);
            last_claim = util_mono_s();
            claim_now = false;
            sdnotify_claimed(got, p->last_claim_id);
            next_poll = last_claim + p->cfg->poll_seconds;
            if (p->next_due > 0 && p->next_due < next_poll)
                next_poll = p->next_due;
            /* a full batch: there may be more; when draining, keep claiming
             * until a claim comes back empty rather than waiting for a poll */
            want_claim = claim_more = got == want || (opts->drain && got > 0);
            if (got > 0)
                idle_claims = 0;
            else if (got == 0 && running == 0)
                idle_claims++;
            /* Drained after two empty claims a moment apart: a single empty
             * claim can mean another worker held a node's load lock just
             * then, and that is not "nothing claimable". */
            if (opts->drain && got == 0 && running == 0 && idle_claims >= 2 && p->done.n == 0) {
                log_info("drained: nothing claimable and no job running");
                break;
            }
            if (opts->drain && got == 0 && running == 0)
                next_poll = util_mono_s() + 0.2;
            if (got > 0)
                continue;
        }

        done_flush(p); /* nothing more to claim right now: write what is queued */
        double until = p->next_heartbeat;
        if (!atomic_load(&stopping) && free_slots > 0 && next_poll < until)
            until = next_poll;
        if (!atomic_load(&stopping) && free_slots > 0 && want_claim && last_claim + gap < until)
            until = last_claim + gap;   /* a NOTIFY held back by the debounce */
        double deadline = next_deadline(p);
        if (deadline > 0 && deadline + 0.01 < until)
            until = deadline + 0.01;
        double watchdog = sdnotify_next_due();
        if (watchdog > 0 && watchdog < until)
            until = watchdog;
        int timeout_ms = (int)((until - util_mono_s()) * 1000);
        if (timeout_ms < 0)
            timeout_ms = 0;
        struct pollfd fds[2] = {
            { .fd = p->wake_fd[0], .events = POLLIN },
            { .fd = PQsocket(db_pg(p->db)), .events = POLLIN },
        };
        int pr = poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout_ms);
        if (pr > 0 && (fds[0].revents & POLLIN)) {
            char buf[64];
            while (read(p->wake_fd[0], buf, sizeof buf) > 0)
                ;
            want_claim = claim_now = true; /* a slot freed up, or a signal */
        }
        if (pr > 0 && fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (db_notified(p->db))
                want_claim = true;
        }
    }
    rc = 0;
cleanup:
    atomic_store(&stopping, 1);
    sdnotify_stopping();
    while (slots_running(p) > 0) {
        reap_slots(p);
        enforce_deadlines(p);
        usleep(20000);
    }
    /* Threads stuck on hung nodes: their jobs were failed already; give
     * them a moment, then exit without them (they write nothing more). What
     * they may still touch (their connections, the config, the drivers) is
     * left to the process exit. */
    for (double until = util_mono_s() + STUCK_EXIT_WAIT_S; slots_stuck(p) > 0 && util_mono_s() < until;) {
        reap_slots(p);
        usleep(20000);
    }
    int stuck_at_exit = slots_stuck(p);
    if (stuck_at_exit > 0)
        log_warn("exiting with %d job thread(s) still stuck on unresponsive nodes (their jobs "
                 "were failed and are retried elsewhere)", stuck_at_exit);
    watch_stop();
    metrics_stop();
    if (p->db && p->worker_id) {
        db_params prm;
        db_params_init(&prm);
        db_param_ll(&prm, p->worker_id);
        db_run(p->db, SQL_WORKER_STOPPED, prm.n, prm.v, &e);
    }
    for (int i = 0; i < MAX_SLOTS; i++)
        if (p->slots[i].state == SLOT_IDLE)
            db_close(p->slots[i].db);
    db_close(p->db);
    /* A thread still stuck on a hung node may use its config and the
     * drivers until the process exits: leave them then. */
    if (stuck_at_exit == 0) {
        hvdriver_set_free(p->drivers);
        /* every slot is reaped: nothing uses a retired config any more */
        retire_unused(p);
        if (p->cfg != p->first) {
            config_clear(p->cfg);
            free(p->cfg);
        }
        config_clear(p->first);
        free(p->first);
    }
    sig_wake_fd = -1;
    close(p->wake_fd[0]);
    close(p->wake_fd[1]);
    log_info("worker exits (%d)", rc);
    return rc;
}
