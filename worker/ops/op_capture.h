/* op_capture.h: the capture operation's plan step, exposed for unit tests
 * (tests/unit/test_capture_plan.c drives it against a fake of job_db.h's
 * rows). The operation itself is op_capture (op_common.h), a stage table;
 * op_capture.c says what each stage does and why a rerun is safe. */
#ifndef VCL_OP_CAPTURE_H
#define VCL_OP_CAPTURE_H
#include <limits.h>
#include <stdbool.h>
#include "base/error.h"
#include "base/names.h"
#include "queue/job.h"

/* Everything a capture stage needs beyond the job: read afresh by every
 * stage (job_capture_facts), so a stage acts on the rows as they are. */
typedef struct capture_facts {
    /* args */
    char after[16];              /* "off" or "reload" */
    char arg_stem[NAME_MAX_LEN + 1];
    int shutdown_timeout;
    /* the source: the revision loaded on the computer */
    long long source_revision_id;
    long long image_id;
    char image[NAME_MAX_LEN + 1];
    /* the target, once recorded */
    bool planned;
    int revision;
    char stem[NAME_MAX_LEN + 1];
    long long new_revision_id;   /* 0 until register */
    long long reload_id;         /* 0 until after=reload queued it */
    /* paths on the node (built from the target) */
    const char *fmt;             /* driver disk format ("qcow2") */
    const char *ext;             /* driver disk extension ("qcow2") */
    char final[PATH_MAX];        /* <master dir>/<stem>.<ext> */
    char tmp[PATH_MAX];          /* its recorded temp (vcl.temp_file, node/temps.h):
                                    "<final>.tmp-vcl+<random>", made and recorded by
                                    flatten, found again by verify and publish
                                    (capture_temp); "" when none */
} capture_facts;

/* Read the capture's rows (job_capture_facts) and check its args: bad input
 * is a permanent error that changes nothing. fallback_revision_id: the
 * revision named by the domain's metadata, used when the computer row
 * records none (0 = none). With a recorded target, its paths are set. */
bool op_capture_load_facts(job *j, capture_facts *f, long long fallback_revision_id,
                           vcl_error *e);
/* Pick the target and record it (fenced): revision max + 1, stem
 * "<image>-v<rev>" or the args' file stem, no file of that name on the node
 * or in the repository. Only here, before the row exists, is a file at the
 * target's name someone else's: then fail for good. Two captures of one
 * image racing for a revision: the loser picks the next one at once (no
 * stage retry, no attempt used), up to CAPTURE_PLAN_TRIES times. */
#define CAPTURE_PLAN_TRIES 20
bool op_capture_plan_target(job *j, capture_facts *f, vcl_error *e);
#endif
