/* test_capture_plan: the capture's plan step (op_capture_plan_target, the
 * first thing stage shutdown does) against a fake of the job's rows
 * (job_db.h's job_rows table): no database. The node is a temp dir reached
 * through the local transport, so "a file already has the target's name"
 * is a real file.
 *
 * What it pins down is the race handling: another capture of the same
 * image takes the revision (or the default stem made from it) between our
 * facts and our plan; the loser takes the next revision at once, while a
 * stem the args named, a file that is someone else's and a lost lease are
 * never retried. */
#include "ops/op_capture.h"
#include "queue/job_db.h"
#include "node/transport.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/vclw-capplan-XXXXXX";
#include "helpers.h"

/* ---- the fake rows: the image's revisions and capture targets ---- */

#define MAX_STEMS 64
static struct {
    /* the rows */
    int max_revision;              /* highest registered or reserved revision */
    char stems[MAX_STEMS][64];     /* stems in use ... */
    char owners[MAX_STEMS][96];    /* ... and what uses them */
    int n_stems;
    char arg_stem[64];             /* the reservation's args file_stem */
    /* the races, scripted */
    int races_at_plan;     /* the INSERT hits the revision's unique key this many times */
    int races_at_look;     /* another capture takes the revision right after our look */
    int stem_race_at_plan; /* the INSERT hits the stem's unique key this many times */
    char appears[64];      /* stem a capture records after our first look at it (file race) */
    bool fenced;           /* the plan's fence matches no row */
    /* what happened */
    int looks, plans, stem_looks;
    bool planned;
    int rec_revision;
    char rec_stem[64];
} F;

static void fake_reset(void)
{
    memset(&F, 0, sizeof F);
    F.max_revision = 4;
}

static void take_stem(const char *stem, const char *owner)
{
    snprintf(F.stems[F.n_stems], sizeof F.stems[0], "%s", stem);
    snprintf(F.owners[F.n_stems], sizeof F.owners[0], "%s", owner);
    F.n_stems++;
}

static const char *stem_owner(const char *stem)
{
    for (int i = 0; i < F.n_stems; i++)
        if (strcmp(F.stems[i], stem) == 0)
            return F.owners[i];
    return NULL;
}

/* Another capture (reservation 99) takes revision rev of win10. */
static void rival_takes(int rev)
{
    char stem[64];
    snprintf(stem, sizeof stem, "win10-v%d", rev);
    F.max_revision = rev;
    take_stem(stem, "the target of capture reservation 99");
}

static bool fk_facts(job *j, long long fallback, capture_row *out, vcl_error *e)
{
    memset(out, 0, sizeof *out);
    snprintf(out->file_stem, sizeof out->file_stem, "%s", F.arg_stem);
    out->source_revision_id = 11;
    out->image_id = 3;
    snprintf(out->image, sizeof out->image, "win10");
    out->planned = F.planned;
    out->revision = F.rec_revision;
    snprintf(out->stem, sizeof out->stem, "%s", F.rec_stem);
    return true;
}

static bool fk_next_revision(job *j, long long image_id, int *out, vcl_error *e)
{
    F.looks++;
    *out = F.max_revision + 1;
    if (F.races_at_look > 0) {
        F.races_at_look--;
        rival_takes(*out);
    }
    return true;
}

static bool fk_stem_used(job *j, const char *stem, char *used, size_t len, vcl_error *e)
{
    F.stem_looks++;
    const char *o = stem_owner(stem);
    snprintf(used, len, "%s", o ? o : "");
    if (!o && F.appears[0] && strcmp(stem, F.appears) == 0) {
        /* another capture records this stem (and publishes its file) right
         * after our look */
        F.appears[0] = '\0';
        rival_takes(F.max_revision + 1);
    }
    return true;
}

static bool fk_plan(job *j, const capture_target *t, capture_taken *taken, vcl_error *e)
{
    F.plans++;
    if (F.fenced)
        return job_lost(j, e);
    if (F.races_at_plan > 0) {
        F.races_at_plan--;
        rival_takes(t->revision);
        *taken = CAPTURE_TAKEN_REVISION;
        return vcl_error_set(e, VCL_ERR_PERMANENT, "duplicate key value violates unique "
                             "constraint \"capture_image_id_revision_key\"");
    }
    if (F.stem_race_at_plan > 0) {
        F.stem_race_at_plan--;
        take_stem(t->stem, "the target of capture reservation 99");
        if (!F.arg_stem[0])
            F.max_revision = t->revision;
        *taken = CAPTURE_TAKEN_STEM;
        return vcl_error_set(e, VCL_ERR_PERMANENT, "duplicate key value violates unique "
                             "constraint \"capture_file_stem_key\"");
    }
    if (stem_owner(t->stem)) {
        *taken = CAPTURE_TAKEN_STEM;
        return vcl_error_set(e, VCL_ERR_PERMANENT, "duplicate key value violates unique "
                             "constraint \"capture_file_stem_key\"");
    }
    if (t->revision <= F.max_revision) {
        *taken = CAPTURE_TAKEN_REVISION;
        return vcl_error_set(e, VCL_ERR_PERMANENT, "duplicate key value violates unique "
                             "constraint \"capture_image_id_revision_key\"");
    }
    F.max_revision = t->revision;
    take_stem(t->stem, "the target of capture reservation 7");
    F.planned = true;
    F.rec_revision = t->revision;
    snprintf(F.rec_stem, sizeof F.rec_stem, "%s", t->stem);
    return true;
}

/* Only what the plan step may use: register, link and the rest are left
 * out, so a call to them fails the test ("not in this fake"). */
static const job_rows fake_rows = {
    .capture_facts = fk_facts,
    .capture_next_revision = fk_next_revision,
    .capture_stem_used = fk_stem_used,
    .capture_plan = fk_plan,
};

/* ---- the job ---- */

static job J;
static vcl_transport *T;

static void job_reset(void)
{
    memset(&J, 0, sizeof J);
    J.id = 7;
    J.token = 1;
    J.rows = &fake_rows;
    J.t = T;
    snprintf(J.computer, sizeof J.computer, "pc1");
    snprintf(J.node, sizeof J.node, "node1");
    snprintf(J.master_dir, sizeof J.master_dir, "%s", dir);
    snprintf(J.repo_location, sizeof J.repo_location, "node");
}

/* facts, then the plan: what stage shutdown does before touching the guest */
static bool plan(capture_facts *f, vcl_error *e)
{
    vcl_error_clear(e);
    job_reset();
    return op_capture_load_facts(&J, f, 0, e) && op_capture_plan_target(&J, f, e);
}

static void plant(const char *name)
{
    char p[512];
    path_of(p, sizeof p, name);
    FILE *fp = fopen(p, "w");
    if (fp) {
        fputs("not a qcow2\n", fp);
        fclose(fp);
    }
}

int main(void)
{
    capture_facts f;
    vcl_error e;
    char want[PATH_MAX];

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    vcl_error_clear(&e);
    T = transport_new("local", NULL, &e);
    ok(T != NULL, "local transport for the node dirs: %s", e.msg);

    /* no race: revision max + 1, stem <image>-v<rev>, recorded once */
    fake_reset();
    ok_after(plan(&f, &e), "plan without a race: %s", e.msg);
    is_int(f.revision, 5, "the next revision");
    is_str(f.stem, "win10-v5", "the default stem");
    ok(f.planned, "the target is planned");
    is_int(F.plans, 1, "one INSERT");
    is_str(F.rec_stem, "win10-v5", "what the rows recorded");
    snprintf(want, sizeof want, "%s/win10-v5.qcow2", dir);
    is_str(f.final, want, "the final path under the master dir");
    is_str(f.tmp, "", "no temp path until flatten records a random one");

    /* a rerun after the target was recorded reads it back and plans nothing */
    vcl_error_clear(&e);
    job_reset();
    ok_after(op_capture_load_facts(&J, &f, 0, &e), "facts of a planned capture: %s", e.msg);
    ok(f.planned && f.revision == 5 && strcmp(f.stem, "win10-v5") == 0,
       "a rerun reads the recorded target back (revision %d, stem %s)", f.revision, f.stem);

    /* the race at the INSERT: another capture took revision 5 between our
     * facts and our plan; we take 6 at once, no stage retry */
    fake_reset();
    F.races_at_plan = 1;
    ok_after(plan(&f, &e), "the race at the INSERT is handled: %s", e.msg);
    is_int(f.revision, 6, "the loser takes the next revision");
    is_str(f.stem, "win10-v6", "and the stem made from it");
    is_int(F.plans, 2, "two INSERTs: the lost one and ours");
    is_int(F.looks, 2, "the next revision was looked up again");
    is_str(stem_owner("win10-v5"), "the target of capture reservation 99",
           "revision 5 stays the rival's");

    /* the race at the look: the rival recorded the default stem before our
     * stem check: lost, and the next revision is taken without an INSERT */
    fake_reset();
    F.races_at_look = 2;
    ok_after(plan(&f, &e), "the race before the stem check is handled: %s", e.msg);
    is_int(f.revision, 7, "two revisions lost, the third is ours");
    is_int(F.plans, 1, "no INSERT for a stem already taken");

    /* the file race: the rival's master appears at our default target's
     * name after our look; its capture row says it is the rival's: lost */
    fake_reset();
    snprintf(F.appears, sizeof F.appears, "win10-v5");
    plant("win10-v5.qcow2");
    ok_after(plan(&f, &e), "a rival's file at the target: take the next revision: %s", e.msg);
    is_int(f.revision, 6, "revision 6");
    is_int(F.plans, 1, "one INSERT, for 6");
    unlink(f.final);
    char p5[512];
    path_of(p5, sizeof p5, "win10-v5.qcow2");
    unlink(p5);

    /* a file at the target that no capture owns is never overwritten:
     * permanent, nothing recorded */
    fake_reset();
    plant("win10-v5.qcow2");
    ok(!plan(&f, &e), "a stray file at the target fails the plan");
    is_int(e.cls, VCL_ERR_PERMANENT, "for good");
    ok(strstr(e.msg, "already exists on the node") != NULL, "it says where: %s", e.msg);
    is_int(F.plans, 0, "nothing recorded");
    unlink(p5);

    /* a free named stem is used as it is */
    fake_reset();
    snprintf(F.arg_stem, sizeof F.arg_stem, "golden");
    ok_after(plan(&f, &e), "a free named stem is planned: %s", e.msg);
    is_str(f.stem, "golden", "the args' stem");
    is_int(f.revision, 5, "at the next revision");

    /* a named stem already in use: for good, no other revision tried */
    fake_reset();
    snprintf(F.arg_stem, sizeof F.arg_stem, "golden");
    take_stem("golden", "the file stem of win10:2");
    ok(!plan(&f, &e), "a named stem already in use fails");
    is_int(e.cls, VCL_ERR_PERMANENT, "for good");
    ok(strstr(e.msg, "the file stem of win10:2") != NULL, "it names the user: %s", e.msg);
    is_int(F.plans, 0, "nothing recorded");
    is_int(F.looks, 1, "one look, no other revision tried");

    /* a named stem a rival records between our look and our INSERT (the
     * stem's unique key refuses it): for good */
    fake_reset();
    snprintf(F.arg_stem, sizeof F.arg_stem, "golden");
    F.stem_race_at_plan = 1;
    ok(!plan(&f, &e), "a named stem taken at the INSERT fails");
    is_int(e.cls, VCL_ERR_PERMANENT, "for good");
    is_int(F.plans, 1, "one INSERT, no retry");

    /* the default stem taken at the INSERT (made from a revision a rival
     * took): simply lost, the next revision is ours */
    fake_reset();
    F.stem_race_at_plan = 1;
    ok_after(plan(&f, &e), "a default stem taken at the INSERT: the next revision: %s", e.msg);
    is_int(f.revision, 6, "revision 6");
    is_str(f.stem, "win10-v6", "stem win10-v6");
    is_int(F.plans, 2, "two INSERTs");

    /* fenced out while recording: LOST comes out at once, never retried */
    fake_reset();
    F.fenced = true;
    ok(!plan(&f, &e), "a fenced-out plan fails");
    is_int(e.cls, VCL_ERR_LOST, "with class LOST (the lease is gone)");
    is_int(F.plans, 1, "one INSERT, no retry");

    /* rivals win every time: retryable after CAPTURE_PLAN_TRIES */
    fake_reset();
    F.races_at_plan = 1000;
    ok(!plan(&f, &e), "endless rivals: the plan gives up");
    is_int(e.cls, VCL_ERR_RETRYABLE, "retryable (the stage runs again later)");
    is_int(F.plans, CAPTURE_PLAN_TRIES, "after %d tries", CAPTURE_PLAN_TRIES);

    /* an entry the fake leaves out fails permanently */
    {
        static const job_rows empty = { .capture_facts = NULL };
        job_reset();
        J.rows = &empty;
        vcl_error_clear(&e);
        ok(!op_capture_load_facts(&J, &f, 0, &e), "an entry missing from a fake fails");
        ok(strstr(e.msg, "not in this fake") != NULL, "and says so: %s", e.msg);
    }

    transport_free(T);
    rmdir(dir);
    return done_testing();
}
