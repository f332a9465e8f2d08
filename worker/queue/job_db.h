/* job_db.h: the typed row API, the one seam between the code that acts on
 * nodes and the database.
 *
 * Who owns which statement:
 *  - job.c stays the lifecycle module of a claimed reservation: it loads the
 *    reservation's rows (job_load) and makes the fenced writes every
 *    operation shares (job_store_xml, job_record_ownership, job_write_status,
 *    job_set_maintenance, progress, the CPU probe), and defines what "fenced
 *    out" means (job_fenced_ok, job_lost: VCL_ERR_LOST);
 *  - job_db.c (this module) owns every other statement that code under
 *    worker/ops/ and worker/node/ needs: the capture's rows, the recorded
 *    temp files, the facts row
 *    of the node_status check (also `vclctl status`), and the domain
 *    watcher's connection and queries;
 *  - pool.c keeps the queue's own statements (claim, heartbeat, stage rows,
 *    complete, fail, release, cancel), which are about the lease, not about
 *    what a job does.
 * Nothing under worker/ops/ or worker/node/ includes statements.h or db.h
 * or calls db_* (the image lock in op_load.c excepted, until it moves to
 * queue/locks.c): it calls these functions, which take and return C structs,
 * never a PGresult.
 *
 * Every write made for a job is fenced on its lease (id and token): a write
 * that matched no row returns false with e->cls VCL_ERR_LOST (job_lost).
 *
 * The seam for tests: the job-scoped functions (job_capture_*,
 * job_temp_*, job_status_row) dispatch through j->rows, a table of function pointers;
 * NULL (what job_load leaves) is job_rows_pg, the database. A unit test sets
 * j->rows to a fake of its own and drives an operation's stages with no
 * database at all; an entry the fake leaves NULL fails permanently ("not in
 * this fake"). The watcher's and vclctl's functions take the connection. */
#ifndef VCL_JOB_DB_H
#define VCL_JOB_DB_H
#include <stdbool.h>
#include <stddef.h>
#include "base/error.h"
#include "base/names.h"
#include "node/nodestatus.h"
#include "queue/job.h"

/* ---- capture (op_capture.c; the target is recorded in vcl.capture) ---- */

/* What the capture's rows say, read afresh by every stage. */
typedef struct capture_row {
    char after[64];              /* args->>'after' ("" = none) */
    char file_stem[256];         /* args->>'file_stem' */
    char shutdown_timeout[64];   /* args->>'shutdown_timeout', as text */
    long long source_revision_id; /* the revision loaded on the computer (0 = none) */
    long long image_id;          /* its image (0 = none) */
    char image[NAME_MAX_LEN + 1];
    bool planned;                /* the target is recorded */
    int revision;                /* the recorded target ... */
    char stem[256];
    long long new_revision_id;   /* 0 until registered */
    long long reload_id;         /* 0 until after=reload queued its load */
} capture_row;

/* The target a capture records, once. */
typedef struct capture_target {
    long long image_id;
    int revision;
    const char *stem;
    long long source_revision_id; /* 0 = none */
} capture_target;

/* Why recording a target failed on a unique key: another capture (or a
 * registered revision) took the revision or the stem meanwhile. */
typedef enum {
    CAPTURE_TAKEN_NONE = 0,
    CAPTURE_TAKEN_REVISION,
    CAPTURE_TAKEN_STEM,
    CAPTURE_TAKEN__COUNT
} capture_taken;

/* fallback_revision_id: the source when the computer row records none (the
 * domain's metadata), 0 = none. No row: permanent "vanished". */
bool job_capture_facts(job *j, long long fallback_revision_id, capture_row *out, vcl_error *e);
/* The next revision of the image, past every registered and reserved one. */
bool job_capture_next_revision(job *j, long long image_id, int *out, vcl_error *e);
/* What uses the stem already ("the file stem of img:3", "the target of
 * capture reservation 12"); "" when free. */
bool job_capture_stem_used(job *j, const char *stem, char *used, size_t len, vcl_error *e);
/* Record the target (fenced). false with *taken set when a unique key
 * refused it (e says which), LOST when fenced out, else an error as usual. */
bool job_capture_plan(job *j, const capture_target *t, capture_taken *taken, vcl_error *e);
/* Insert the recorded target's vcl.image_revision row (production false)
 * unless an earlier run did, then adopt the row that is exactly the target
 * (same image, revision and stem): *revision_id is its id, 0 when another
 * revision took that number or stem. */
bool job_capture_register(job *j, long long size_bytes, long long *revision_id, vcl_error *e);
/* Point the capture and the reservation at the registered revision (fenced). */
bool job_capture_link(job *j, long long revision_id, vcl_error *e);
/* after=reload: queue the load of the new revision and record its id, in
 * one statement (so once); *load_id gets it. LOST when fenced out. */
bool job_capture_queue_reload(job *j, long long *load_id, vcl_error *e);

/* ---- recorded temp files (vcl.temp_file; sql/functions/tempfiles.sql) ----
 * Every temp file a job writes on its node (names_temp: a master copy, its
 * "-conv", a COW, a capture's flatten and upload) is recorded BEFORE the
 * file is created and forgotten after it was renamed into place or removed;
 * a cleanup removes only recorded temps whose owner's lease is gone. Paths
 * are on the job's node (j->node_id). */

/* Record path for this job's lease (or adopt its own earlier lease's record
 * of it). LOST when fenced out; permanent when another reservation recorded
 * that exact path (a random name: never, short of a broken random source). */
bool job_temp_record(job *j, const char *path, vcl_error *e);
/* Forget path: this lease's record, or one whose owner's lease is gone. A
 * path with no such record is no error. */
bool job_temp_forget(job *j, const char *path, vcl_error *e);
/* The recorded temps of final whose owner no longer holds a live lease:
 * *paths malloc'd (util_strv_free), NULL when *n is 0. */
bool job_temp_stale(job *j, const char *final, char ***paths, size_t *n, vcl_error *e);
/* The newest temp of final this reservation recorded, under any of its
 * leases, into out (len bytes); "" when none. */
bool job_temp_mine(job *j, const char *final, char *out, size_t len, vcl_error *e);

/* ---- node_status (nodestatus.c decides; the facts row comes from here) ---- */

/* The facts row of the job's computer (op_stage_check_status). */
bool job_status_row(job *j, node_status_row *out, vcl_error *e);
/* The same for any computer by name (vclctl status). Unknown: permanent
 * "no computer named ...". */
bool node_status_row_fetch(db_conn *db, const char *computer, node_status_row *out,
                           vcl_error *e);

/* ---- the seam ---- */

typedef struct job_rows {
    bool (*capture_facts)(job *j, long long fallback_revision_id, capture_row *out,
                          vcl_error *e);
    bool (*capture_next_revision)(job *j, long long image_id, int *out, vcl_error *e);
    bool (*capture_stem_used)(job *j, const char *stem, char *used, size_t len, vcl_error *e);
    bool (*capture_plan)(job *j, const capture_target *t, capture_taken *taken, vcl_error *e);
    bool (*capture_register)(job *j, long long size_bytes, long long *revision_id,
                             vcl_error *e);
    bool (*capture_link)(job *j, long long revision_id, vcl_error *e);
    bool (*capture_queue_reload)(job *j, long long *load_id, vcl_error *e);
    bool (*status_row)(job *j, node_status_row *out, vcl_error *e);
    bool (*temp_record)(job *j, const char *path, vcl_error *e);
    bool (*temp_forget)(job *j, const char *path, vcl_error *e);
    bool (*temp_stale)(job *j, const char *final, char ***paths, size_t *n, vcl_error *e);
    bool (*temp_mine)(job *j, const char *final, char *out, size_t len, vcl_error *e);
} job_rows;

/* The database (j->db), what j->rows NULL means. */
extern const job_rows job_rows_pg;

/* ---- the domain watcher (watch.c) ---- */

typedef struct watch_node_row {
    long long id;
    char name[128];
    char uri[512];
} watch_node_row;

/* A loaded computer the watcher checks (READY or POST_LOAD, a domain
 * recorded, no reservation running). */
typedef struct watch_loaded_row {
    char computer[128];
    long long node_id;
    char uuid[40];
    char domain[256];
} watch_loaded_row;

/* The watcher's connection: opened (or reopened when broken) and LISTENing
 * on vcl_node. *fresh true when it was (re)connected now: NOTIFYs may have
 * been missed meanwhile. false + e when there is none. */
bool watch_db_ready(db_conn **db, const char *conninfo, const char *application_name,
                    bool *fresh, vcl_error *e);
/* A NOTIFY vcl_node arrived since the last call (db_notified). */
bool watch_db_notified(db_conn *db);
void watch_db_close(db_conn *db);
/* Every node, by id. *rows malloc'd (free it); NULL when *n is 0. */
bool watch_nodes_list(db_conn *db, watch_node_row **rows, int *n, vcl_error *e);
/* Every loaded computer, by node id. *rows malloc'd (free it). */
bool watch_loaded(db_conn *db, watch_loaded_row **rows, int *n, vcl_error *e);
/* The guarded UPDATE: a loaded computer of that domain on that node, with
 * no reservation running, goes RELOAD with reason. *computers (malloc'd,
 * util_strv_free) names the computers it changed. */
bool watch_mark_reload(db_conn *db, long long node_id, const char *uuid, const char *reason,
                       char ***computers, size_t *n, vcl_error *e);
#endif
