/* job_db.c: see job_db.h. */
#include "queue/job_db.h"
#include "queue/db.h"
#include "queue/statements.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COPY UTIL_COPY

/* ---------------- capture ---------------- */

static bool pg_capture_facts(job *j, long long fallback_revision_id, capture_row *out,
                             vcl_error *e)
{
    memset(out, 0, sizeof *out);
    db_params p;
    db_params_init(&p);
    db_param_ll(&p, j->id);
    db_param_ll(&p, fallback_revision_id);
    PGresult *r = db_exec(j->db, SQL_CAPTURE_FACTS, p.n, p.v, e);
    if (!r)
        return false;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return vcl_error_set(e, VCL_ERR_PERMANENT, "reservation %lld vanished", j->id);
    }
    int c = 0;
    COPY(out->after, db_get_str(r, 0, c++));
    COPY(out->file_stem, db_get_str(r, 0, c++));
    COPY(out->shutdown_timeout, db_get_str(r, 0, c++));
    out->source_revision_id = db_get_ll(r, 0, c++);
    out->image_id = db_get_ll(r, 0, c++);
    COPY(out->image, db_get_str(r, 0, c++));
    out->planned = db_get_bool(r, 0, c++);
    out->revision = (int)db_get_ll(r, 0, c++);
    COPY(out->stem, db_get_str(r, 0, c++));
    out->new_revision_id = db_get_ll(r, 0, c++);
    out->reload_id = db_get_ll(r, 0, c++);
    PQclear(r);
    return true;
}

static bool pg_capture_next_revision(job *j, long long image_id, int *out, vcl_error *e)
{
    db_params p;
    long long next = 0;
    bool isnull = true;
    db_params_init(&p);
    db_param_ll(&p, image_id);
    if (!db_scalar_ll(j->db, SQL_CAPTURE_NEXT_REVISION, p.n, p.v, &next, &isnull, e))
        return false;
    *out = (int)next;
    return true;
}

static bool pg_capture_stem_used(job *j, const char *stem, char *used, size_t len, vcl_error *e)
{
    db_params p;
    PGresult *r;
    db_params_init(&p);
    db_param_str(&p, stem);
    if (!(r = db_exec(j->db, SQL_CAPTURE_STEM_USED, p.n, p.v, e)))
        return false;
    const char *u = PQntuples(r) == 1 ? db_get_str(r, 0, 0) : NULL;
    snprintf(used, len, "%s", u ? u : "");
    PQclear(r);
    return true;
}

static bool pg_capture_plan(job *j, const capture_target *t, capture_taken *taken, vcl_error *e)
{
    db_params p;
    *taken = CAPTURE_TAKEN_NONE;
    job_fence_params(j, &p);
    db_param_ll(&p, t->image_id);
    db_param_ll(&p, t->revision);
    db_param_str(&p, t->stem);
    db_param_ll(&p, t->source_revision_id);
    PGresult *r = db_exec(j->db, SQL_CAPTURE_PLAN, p.n, p.v, e);
    if (!r) {
        if (strcmp(db_sqlstate(j->db), "23505") == 0)
            *taken = strstr(e->msg, "capture_file_stem_key") ? CAPTURE_TAKEN_STEM
                                                             : CAPTURE_TAKEN_REVISION;
        return false;
    }
    return job_fenced_ok(j, r, e);
}

static bool pg_capture_register(job *j, long long size_bytes, long long *revision_id,
                                vcl_error *e)
{
    db_params p;
    PGresult *r;
    *revision_id = 0;
    job_fence_params(j, &p);
    db_param_ll(&p, size_bytes);
    if (!(r = db_exec(j->db, SQL_CAPTURE_REGISTER, p.n, p.v, e)))
        return false;
    PQclear(r);     /* 0 rows: fenced out (the link finds it), or registered by an earlier run */
    db_params_init(&p);
    db_param_ll(&p, j->id);
    if (!(r = db_exec(j->db, SQL_CAPTURE_REGISTERED, p.n, p.v, e)))
        return false;
    *revision_id = PQntuples(r) == 1 ? db_get_ll(r, 0, 0) : 0;
    PQclear(r);
    return true;
}

static bool pg_capture_link(job *j, long long revision_id, vcl_error *e)
{
    db_params p;
    job_fence_params(j, &p);
    db_param_ll(&p, revision_id);
    return job_fenced_ok(j, db_exec(j->db, SQL_CAPTURE_LINK, p.n, p.v, e), e);
}

static bool pg_capture_queue_reload(job *j, long long *load_id, vcl_error *e)
{
    db_params p;
    bool isnull = true;
    *load_id = 0;
    job_fence_params(j, &p);
    if (!db_scalar_ll(j->db, SQL_CAPTURE_QUEUE_RELOAD, p.n, p.v, load_id, &isnull, e))
        return false;
    return !isnull || job_lost(j, e);
}

/* ---------------- node_status ---------------- */

bool node_status_row_fetch(db_conn *db, const char *computer, node_status_row *out,
                           vcl_error *e)
{
    memset(out, 0, sizeof *out);
    if (!name_check("computer", computer, e))
        return false;
    const char *p[1] = { computer };
    PGresult *r = db_exec(db, SQL_STATUS_FACTS, 1, p, e);
    if (!r)
        return false;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return vcl_error_set(e, VCL_ERR_PERMANENT, "no computer named '%s'", computer);
    }
    COPY(out->computer, db_get_str(r, 0, 1));
    COPY(out->domain, db_get_str(r, 0, 2));
    COPY(out->domain_uuid, db_get_str(r, 0, 3));
    COPY(out->cow, db_get_str(r, 0, 4));
    COPY(out->master, db_get_str(r, 0, 5));
    out->post_load_done = db_get_bool(r, 0, 6);
    COPY(out->node, db_get_str(r, 0, 7));
    COPY(out->libvirt_uri, db_get_str(r, 0, 8));
    COPY(out->transport, db_get_str(r, 0, 9));
    COPY(out->revision, db_get_str(r, 0, 10));
    COPY(out->ssh_host, db_get_str(r, 0, 11));
    out->ssh_port = (int)db_get_ll(r, 0, 12);
    COPY(out->ssh_user, db_get_str(r, 0, 13));
    PQclear(r);
    return true;
}

static bool pg_status_row(job *j, node_status_row *out, vcl_error *e)
{
    return node_status_row_fetch(j->db, j->computer, out, e);
}

/* ---------------- recorded temp files ---------------- */

/* $1 node, $2 path, then ($3 reservation id, $4 lease token) as far as n. */
static void temp_params(const job *j, const char *path, int n, db_params *p)
{
    db_params_init(p);
    db_param_ll(p, j->node_id);
    db_param_str(p, path);
    if (n >= 3)
        db_param_ll(p, j->id);
    if (n >= 4)
        db_param_ll(p, j->token);
}

static bool pg_temp_record(job *j, const char *path, vcl_error *e)
{
    db_params p;
    temp_params(j, path, 4, &p);
    PGresult *r = db_exec(j->db, SQL_TEMP_FILE_RECORD, p.n, p.v, e);
    if (!r)
        return vcl_error_prefix(e, "recording temp file %s of node %s", path, j->node);
    bool fenced = PQntuples(r) != 1 || PQgetisnull(r, 0, 0);
    bool got = !fenced && db_get_bool(r, 0, 0);
    PQclear(r);
    if (fenced)
        return job_lost(j, e);
    if (!got)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "temp file %s of node %s is recorded by another "
                             "reservation: not writing it", path, j->node);
    return true;
}

static bool pg_temp_forget(job *j, const char *path, vcl_error *e)
{
    db_params p;
    temp_params(j, path, 4, &p);
    if (!db_run(j->db, SQL_TEMP_FILE_FORGET, p.n, p.v, e))
        return vcl_error_prefix(e, "forgetting temp file %s of node %s", path, j->node);
    return true;
}

static bool pg_temp_stale(job *j, const char *final, char ***paths, size_t *n, vcl_error *e)
{
    *paths = NULL;
    *n = 0;
    db_params p;
    temp_params(j, final, 2, &p);
    PGresult *r = db_exec(j->db, SQL_TEMP_FILE_STALE, p.n, p.v, e);
    if (!r)
        return vcl_error_prefix(e, "listing stale temp files of %s on node %s", final, j->node);
    int rows = PQntuples(r);
    bool ok = true;
    if (rows > 0) {
        *paths = calloc((size_t)rows, sizeof **paths);
        ok = *paths != NULL;
        for (int i = 0; ok && i < rows; i++) {
            const char *s = db_get_str(r, i, 0);
            if (!((*paths)[i] = strdup(s ? s : "")))
                ok = false;
            else
                (*n)++;
        }
    }
    PQclear(r);
    if (!ok) {
        util_strv_free(*paths, *n);
        *paths = NULL;
        *n = 0;
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
    }
    return true;
}

static bool pg_temp_mine(job *j, const char *final, char *out, size_t len, vcl_error *e)
{
    db_params p;
    temp_params(j, final, 3, &p);
    PGresult *r = db_exec(j->db, SQL_TEMP_FILE_MINE, p.n, p.v, e);
    if (!r)
        return vcl_error_prefix(e, "looking up the temp file of %s on node %s", final, j->node);
    const char *s = PQntuples(r) == 1 ? db_get_str(r, 0, 0) : NULL;
    bool fits = snprintf(out, len, "%s", s ? s : "") < (int)len;
    PQclear(r);
    if (!fits)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "temp file of %s: path too long", final);
    return true;
}

/* ---------------- the seam ---------------- */

const job_rows job_rows_pg = {
    .capture_facts = pg_capture_facts,
    .capture_next_revision = pg_capture_next_revision,
    .capture_stem_used = pg_capture_stem_used,
    .capture_plan = pg_capture_plan,
    .capture_register = pg_capture_register,
    .capture_link = pg_capture_link,
    .capture_queue_reload = pg_capture_queue_reload,
    .status_row = pg_status_row,
    .temp_record = pg_temp_record,
    .temp_forget = pg_temp_forget,
    .temp_stale = pg_temp_stale,
    .temp_mine = pg_temp_mine,
};

static const job_rows *rows_of(const job *j)
{
    return j->rows ? j->rows : &job_rows_pg;
}

static bool missing(const char *what, vcl_error *e)
{
    return vcl_error_set(e, VCL_ERR_PERMANENT, "%s: not in this fake of the job's rows", what);
}

/* Call the job's table entry, or fail when the table has none. */
#define ROWS_CALL(j, fn, e, ...) \
    (rows_of(j)->fn ? rows_of(j)->fn((j), __VA_ARGS__, (e)) : missing(#fn, (e)))

bool job_capture_facts(job *j, long long fallback_revision_id, capture_row *out, vcl_error *e)
{
    return ROWS_CALL(j, capture_facts, e, fallback_revision_id, out);
}

bool job_capture_next_revision(job *j, long long image_id, int *out, vcl_error *e)
{
    return ROWS_CALL(j, capture_next_revision, e, image_id, out);
}

bool job_capture_stem_used(job *j, const char *stem, char *used, size_t len, vcl_error *e)
{
    return ROWS_CALL(j, capture_stem_used, e, stem, used, len);
}

bool job_capture_plan(job *j, const capture_target *t, capture_taken *taken, vcl_error *e)
{
    *taken = CAPTURE_TAKEN_NONE;
    return ROWS_CALL(j, capture_plan, e, t, taken);
}

bool job_capture_register(job *j, long long size_bytes, long long *revision_id, vcl_error *e)
{
    return ROWS_CALL(j, capture_register, e, size_bytes, revision_id);
}

bool job_capture_link(job *j, long long revision_id, vcl_error *e)
{
    return ROWS_CALL(j, capture_link, e, revision_id);
}

bool job_capture_queue_reload(job *j, long long *load_id, vcl_error *e)
{
    return ROWS_CALL(j, capture_queue_reload, e, load_id);
}

bool job_status_row(job *j, node_status_row *out, vcl_error *e)
{
    return ROWS_CALL(j, status_row, e, out);
}

bool job_temp_record(job *j, const char *path, vcl_error *e)
{
    return ROWS_CALL(j, temp_record, e, path);
}

bool job_temp_forget(job *j, const char *path, vcl_error *e)
{
    return ROWS_CALL(j, temp_forget, e, path);
}

bool job_temp_stale(job *j, const char *final, char ***paths, size_t *n, vcl_error *e)
{
    return ROWS_CALL(j, temp_stale, e, final, paths, n);
}

bool job_temp_mine(job *j, const char *final, char *out, size_t len, vcl_error *e)
{
    return ROWS_CALL(j, temp_mine, e, final, out, len);
}

/* ---------------- the domain watcher ---------------- */

bool watch_db_ready(db_conn **db, const char *conninfo, const char *application_name,
                    bool *fresh, vcl_error *e)
{
    *fresh = false;
    if (*db && !db_is_broken(*db))
        return true;
    if (!*db)
        *db = db_connect(conninfo, application_name, e);
    else
        db_reconnect(*db, e);
    if (*db && !db_is_broken(*db) && db_run(*db, SQL_LISTEN_NODES, 0, NULL, e)) {
        *fresh = true;
        return true;
    }
    return false;
}

bool watch_db_notified(db_conn *db)
{
    return db_notified(db);
}

void watch_db_close(db_conn *db)
{
    db_close(db);
}

/* Run a statement without parameters and calloc one row struct (size
 * bytes) per result row: NULL result (and e) when either fails, else the
 * result with *rows and *n set (*rows NULL when there are none). */
static PGresult *query_rows(db_conn *db, const char *sql, size_t size, void **rows, int *n,
                            vcl_error *e)
{
    *rows = NULL;
    *n = 0;
    PGresult *r = db_exec(db, sql, 0, NULL, e);
    if (!r)
        return NULL;
    int count = PQntuples(r);
    if (count > 0 && !(*rows = calloc((size_t)count, size))) {
        PQclear(r);
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory reading %d rows", count);
        return NULL;
    }
    *n = count;
    return r;
}

bool watch_nodes_list(db_conn *db, watch_node_row **rows, int *n, vcl_error *e)
{
    void *v;
    PGresult *r = query_rows(db, SQL_WATCH_NODES, sizeof **rows, &v, n, e);
    if (!r)
        return false;
    *rows = v;
    for (int k = 0; k < *n; k++) {
        watch_node_row *w = &(*rows)[k];
        w->id = db_get_ll(r, k, 0);
        COPY(w->name, db_get_str(r, k, 1));
        COPY(w->uri, db_get_str(r, k, 2));
    }
    PQclear(r);
    return true;
}

bool watch_loaded(db_conn *db, watch_loaded_row **rows, int *n, vcl_error *e)
{
    void *v;
    PGresult *r = query_rows(db, SQL_WATCH_LOADED, sizeof **rows, &v, n, e);
    if (!r)
        return false;
    *rows = v;
    for (int k = 0; k < *n; k++) {
        watch_loaded_row *w = &(*rows)[k];
        COPY(w->computer, db_get_str(r, k, 0));
        w->node_id = db_get_ll(r, k, 1);
        COPY(w->uuid, db_get_str(r, k, 2));
        COPY(w->domain, db_get_str(r, k, 3));
    }
    PQclear(r);
    return true;
}

bool watch_mark_reload(db_conn *db, long long node_id, const char *uuid, const char *reason,
                       char ***computers, size_t *n, vcl_error *e)
{
    *computers = NULL;
    *n = 0;
    db_params p;
    db_params_init(&p);
    db_param_ll(&p, node_id);
    db_param_str(&p, uuid);
    db_param_str(&p, reason);
    PGresult *r = db_exec(db, SQL_WATCH_MARK_RELOAD, p.n, p.v, e);
    if (!r)
        return false;
    int count = PQntuples(r);
    if (count > 0 && (*computers = calloc((size_t)count, sizeof **computers)))
        for (int k = 0; k < count; k++)
            if (((*computers)[*n] = strdup(db_get_str(r, k, 0) ? db_get_str(r, k, 0) : "")))
                (*n)++;
    PQclear(r);
    return true;
}
