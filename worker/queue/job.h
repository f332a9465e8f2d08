/* job.h: one claimed reservation and everything a stage needs to act on it:
 * the rows it refers to (loaded in one query), the node's transport and
 * libvirt connection, the selected driver, the names on the node, and the
 * fenced writes every operation shares. job.c is the lifecycle module; the
 * statements of single operations (capture), of the node_status check and
 * of the watcher are job_db.h's typed row API, the seam that unit tests
 * fake. A fenced write that matches no row is VCL_ERR_LOST. */
#ifndef VCL_JOB_H
#define VCL_JOB_H
#include <limits.h>
#include <stdbool.h>
#include <libvirt/libvirt.h>
#include "base/config.h"
#include "node/cpumode.h"
#include "queue/db.h"
#include "driver.h"
#include "base/error.h"
#include "node/hvdriver.h"
#include "base/names.h"
#include "base/progress.h"
#include "node/transport.h"

typedef struct job {
    /* reservation */
    long long id;
    long long token;
    int attempts;
    int max_attempts;
    char operation[32];
    char checkpoint[64];
    char domain_uuid[40];
    char *domain_xml;          /* built by this attempt (op_load); never read from the row */
    /* computer */
    long long computer_id;
    char computer[128];
    char mac0[32];
    int memory_mb;
    int vcpus;
    char rec_domain_name[256]; /* recorded ownership on the computer row */
    char rec_domain_uuid[40];
    char rec_cow_path[PATH_MAX];
    char rec_xml_path[PATH_MAX];
    /* node */
    long long node_id;
    char node[128];
    char libvirt_uri[512];
    char transport_kind[16];
    char ssh_host[256];        /* ssh transport: node row ssh_host, ssh_port, ssh_user */
    int ssh_port;
    char ssh_user[64];         /* "" = the worker's own user */
    transport_opts topts;      /* filled by job_transport_opts() */
    char master_dir[PATH_MAX];
    char cow_dir[PATH_MAX];
    char xml_dir[PATH_MAX];
    char network[128];         /* "" = user-mode networking */
    char **repo_paths;
    size_t n_repo;
    char cpu_mode[80];         /* node.cpu_mode: auto, host-passthrough, host-model, custom:M */
    char cpu_mode_resolved[80];/* what auto resolved to ("" = not probed yet) */
    char repo_location[16];    /* "node": repo_paths are on the node; "management": on this host */
    /* image (loads) */
    long long image_id;
    long long revision_id;
    int revision;
    char image[128];
    char os_type[16];
    char file_stem[128];
    /* operation arguments (reservation.args; "" when absent) */
    char arg_snapshot[128];    /* args->>'snapshot' (checked with name_check before use) */
    char arg_description[512]; /* args->>'description' (snapshot_create) */
    char arg_timeout[32];      /* args->>'timeout', seconds as text (shutdown) */

    /* runtime */
    db_conn *db;
    /* The job's rows (job_db.h): NULL = the database (job_rows_pg); unit
     * tests put a fake here. */
    const struct job_rows *rows;
    const vcl_config *cfg;
    const hvdriver_set *drivers;
    vcl_transport *t;
    vcl_transport *repo_t;     /* local transport for a 'management' repository (job_repo_transport) */
    virConnectPtr conn;
    hv_node_handle nh;
    vcl_driver_node dnode;
    const vcl_driver_ops *drv;
    vcl_names names;
    bool prepared;             /* transport, libvirt, driver and names ready */
    /* The COW this attempt's pre_define created or found backed by the
     * master, as lstat saw it right after (image_req.cow_made): has_id
     * false when not (yet), or when the transport has no identities (ssh). */
    transport_stat_info cow_made;
    /* Set by the pool: false once the lease may have expired (checked before
     * destructive steps inside a stage). NULL = always ours (tests, vclctl). */
    bool (*still_ours)(void *ctx);
    void *still_ours_ctx;
    /* The cleanup of a load cancelled while running: the lease the database
     * must show is the cancelled row's old one (blocks_until not over). */
    bool cancel_cleanup;
} job;

/* Right before a destructive step: true unless the pool says the lease may
 * be gone or (for jobs the pool runs) the database no longer shows the
 * reservation running under our token with a live lease; then e is a
 * retryable error and the caller stops at once. Not VCL_ERR_LOST: nothing
 * has been fenced out yet, so the stage's fenced finish still records the
 * failure when the row is in fact still ours. */
bool job_check_ours(job *j, vcl_error *e);

/* Load the reservation's rows (by id); the token comes from the claim. */
bool job_load(job *j, db_conn *db, long long id, long long token, vcl_error *e);
/* Open the node transport and libvirt, pick the driver, build the names.
 * Idempotent. Bad names/paths are permanent errors. A node's row with an
 * image revision and no computer (stage_image) gets names.master_path only. */
bool job_prepare(job *j, vcl_error *e);
void job_clear(job *j);
/* How to reach the job's node over ssh: host, port, user from the node row,
 * key and known_hosts from the worker config (for transport_new and
 * node_status_check). Points into j (j->topts). */
const transport_opts *job_transport_opts(job *j);
/* The transport that reaches the repository paths: NULL (*out) when they are
 * on the node (use j->t), else a local transport owned by the job (freed by
 * job_clear). false + e only when it cannot be made. */
bool job_repo_transport(job *j, vcl_transport **out, vcl_error *e);

/* The concrete CPU mode for a new domain on the job's node: the forced
 * mode, or what auto resolved to, probing the node first (and recording the
 * result on the node row) when it never was. A node where nothing starts is
 * a permanent error naming each rejection. */
bool job_cpu_mode(job *j, cpu_mode *out, vcl_error *e);
/* A start (or define) of a domain (its XML: domain_xml) failed: when the CPU is why,
 * make e the permanent "cannot start a guest with CPU mode" error with the
 * `vclctl node check` hint, and have auto probe again next time. */
void job_cpu_start_failed(job *j, const char *domain_xml, vcl_error *e);

/* Fenced writes (condition: this reservation still runs under our token).
 * Each returns false + e->cls VCL_ERR_LOST ("this worker no longer holds the
 * lease") when fenced out: the caller stops and writes nothing more (a
 * stage returns it as it is; the engine ends the run as STAGE_RUN_LOST).
 * Any other false is a retryable or permanent error as usual.
 * job_fenced_ok: r (PQclear'd) changed at least one row, else LOST; false
 * with e as set by db_exec when r is NULL. job_lost: set e to LOST. */
bool job_fenced_ok(job *j, PGresult *r, vcl_error *e);
bool job_lost(const job *j, vcl_error *e);
/* $1 reservation id, $2 lease token: the fence of every fenced statement
 * (SQL_FENCE in statements.h); more parameters follow. */
void job_fence_params(const job *j, db_params *p);
bool job_store_xml(job *j, const char *xml, vcl_error *e);
/* Record ownership of the artifacts on the computer row before creating them. */
bool job_record_ownership(job *j, vcl_error *e);
bool job_clear_ownership(job *j, vcl_error *e);
bool job_mark_post_load(job *j, vcl_error *e);
/* Write node_status (and current revision when READY) with the reason. */
bool job_write_status(job *j, const char *status, const char *reason, bool set_revision,
                      vcl_error *e);
/* computer.state = 'maintenance' (nothing more is claimed for it until an
 * operator sets it available) and, in the same statement, the reservation's
 * checkpoint = stage: a rescue after a crash never sets it again. */
bool job_set_maintenance(job *j, const char *stage, vcl_error *e);
/* A node_check's findings (and its CPU probe) on the job's node row. */
struct node_check_report;
bool job_record_node_check(job *j, const struct node_check_report *rep, vcl_error *e);

/* Progress of the running stage (vcl.stage_progress,
 * sql/functions/progress.sql): detail of the stage row while it runs; the
 * finish replaces it. Never fails the stage: a write that cannot be made is
 * logged (once per reporter) and skipped; a lost lease is left for the stage's next fenced write to find.
 * false when nothing was written. */
bool job_progress(job *j, const char *detail);

/* A copy's progress as "copied 1.2 GiB of 4.0 GiB (31%), 210 MiB/s, ETA
 * 14 s (what)", written at most once a second and always at the end.
 * job_copy_progress_fn is a transport_progress_fn (opaque = the reporter). */
typedef struct job_copy_progress {
    job *j;
    progress_meter m;
    char what[128];       /* "" or what is copied where, appended in brackets */
    bool warned;          /* a failed write was logged already */
    long long from;       /* done at the first report of this phase (a resumed copy); -1 = none yet */
    int writes;           /* progress rows written (tests, logs) */
    char last[512];       /* the last line reported ("" = none): for the stage's final detail */
} job_copy_progress;

void job_copy_progress_init(job_copy_progress *p, job *j, const char *what);
void job_copy_progress_fn(void *opaque, long long done, long long total);
/* Write a line of its own through the reporter (no rate limit). */
void job_copy_progress_note(job_copy_progress *p, const char *line);
/* A new phase (another copy): the clock and the rate limit start again. */
void job_copy_progress_phase(job_copy_progress *p, const char *what);
#endif
