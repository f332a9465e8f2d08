/* migrate.c: see migrate.h. */
#include "queue/migrate.h"
#include "base/log.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LIVE_DIR "functions"
#define LIVE_ORDER LIVE_DIR "/ORDER"
#define MIGRATE_MAX_BYTES (16L * 1024 * 1024)
#define MIGRATE_ATTEMPTS 3

/* One transaction per run. The advisory lock (single key
 * 7223372036854775807: see sql/functions/queue.sql for the queue's keys)
 * makes concurrent runs wait for each other; then every lock wait is
 * bounded, so a run stuck behind a long transaction (a DBA's open psql
 * session reading a view) fails instead of stalling the queue's own
 * statements behind its lock request.
 *
 * The guard: a file that says COMMIT (a psql script's BEGIN ... COMMIT
 * pasted in) would commit the run half done. A deferred constraint trigger
 * on a temporary table fails every commit but the runner's own, which sets
 * vcl.migrate_commit first: such a COMMIT fails, and the whole run rolls
 * back. (A ROLLBACK in a file is caught after it ran: see run_file.) */
static const char SQL_BEGIN[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(7223372036854775807);"
    "SET LOCAL lock_timeout = '10s';"
    "CREATE OR REPLACE FUNCTION pg_temp.migrate_guard() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN"
    "  IF current_setting('vcl.migrate_commit', true) IS DISTINCT FROM 'yes' THEN"
    "   RAISE EXCEPTION 'a migration file ran COMMIT: a migrate is one transaction, and it is"
    " rolled back' USING ERRCODE = 'invalid_transaction_termination';"
    "  END IF;"
    "  RETURN NULL;"
    " END $$;"
    "CREATE TEMPORARY TABLE migrate_guard (x int) ON COMMIT DROP;"
    "CREATE CONSTRAINT TRIGGER migrate_guard AFTER INSERT ON pg_temp.migrate_guard"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.migrate_guard();"
    "INSERT INTO pg_temp.migrate_guard VALUES (1);"
    "CREATE SCHEMA IF NOT EXISTS vcl;"
    "CREATE TABLE IF NOT EXISTS vcl.schema_migrations ("
    " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS vcl.schema_live_files ("
    " name text PRIMARY KEY, checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

/* Databases migrated before checksums (the files 001_schema.sql to
 * 009_role_grants.sql, squashed into 001_baseline.sql) have no such column. */
static const char SQL_HAS_CHECKSUM[] =
    "SELECT count(*) FROM pg_attribute"
    " WHERE attrelid = 'vcl.schema_migrations'::regclass AND attname = 'checksum'"
    " AND NOT attisdropped";

static const char SQL_COMMENTS[] =
    "COMMENT ON TABLE vcl.schema_migrations IS 'Numbered migrations (sql/NNN_name.sql) applied by"
    " vclctl migrate, one row each, with the sha256 of the file as applied: a file that changed"
    " after it was applied is refused.';"
    "COMMENT ON TABLE vcl.schema_live_files IS 'Live SQL files (sql/functions/, in the order of its"
    " ORDER file) that every vclctl migrate re-applies: the sha256 of each as last applied, and"
    " when.'";

static const char SQL_APPLIED[] =
    "SELECT version, name, checksum FROM vcl.schema_migrations ORDER BY version";
static const char SQL_LIVE_SUMS[] = "SELECT name, checksum FROM vcl.schema_live_files";
static const char SQL_RECORD[] =
    "INSERT INTO vcl.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)";
static const char SQL_RECORD_LIVE[] =
    "INSERT INTO vcl.schema_live_files (name, checksum) VALUES ($1, $2)"
    " ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()";
/* $1: the live files of this plan, separated by spaces */
static const char SQL_FORGET_LIVE[] =
    "DELETE FROM vcl.schema_live_files WHERE name <> ALL (string_to_array($1, ' '))";
static const char SQL_VERSION[] = "SELECT coalesce(max(version), 0) FROM vcl.schema_migrations";

typedef struct mfile {
    char *name;       /* "001_baseline.sql", "functions/queue.sql" */
    int version;      /* numbered: 1..999; live: 0 */
    char *sql;        /* the file's bytes, NUL-terminated */
    size_t len;
} mfile;

struct migrate_plan {
    char *dir;
    mfile *num;       /* in version order */
    size_t nnum;
    mfile *live;      /* in ORDER's order */
    size_t nlive;
};

/* ---- reading the directory ---- */

/* name is n characters of [a-z0-9_] followed by ".sql" (n >= 1). */
static bool sql_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len < 5 || len > 128 || strcmp(name + len - 4, ".sql") != 0)
        return false;
    for (size_t i = 0; i < len - 4; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_'))
            return false;
    return true;
}

/* "NNN_name.sql": three digits, '_', then a sql_name_ok name. */
static bool numbered_name_ok(const char *name)
{
    return name[0] >= '0' && name[0] <= '9' && name[1] >= '0' && name[1] <= '9' &&
           name[2] >= '0' && name[2] <= '9' && name[3] == '_' && sql_name_ok(name + 4);
}

static bool has_sql_suffix(const char *name)
{
    size_t len = strlen(name);
    return len >= 4 && strcmp(name + len - 4, ".sql") == 0;
}

/* Read dir/rel into f (name rel, version 0). */
static bool read_file(const char *dir, const char *rel, mfile *f, vcl_error *e)
{
    char path[PATH_MAX];
    struct stat st;
    bool ok = false;
    FILE *in = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    memset(f, 0, sizeof *f);
    if (!(f->name = strdup(rel)))
        return vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
    if (!(in = fopen(path, "rb"))) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: not a regular file", path);
        goto cleanup;
    }
    if (st.st_size > MIGRATE_MAX_BYTES) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: larger than %ld bytes", path, MIGRATE_MAX_BYTES);
        goto cleanup;
    }
    if (!(f->sql = malloc((size_t)st.st_size + 1))) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
        goto cleanup;
    }
    f->len = fread(f->sql, 1, (size_t)st.st_size, in);
    f->sql[f->len] = '\0';
    if (ferror(in) || f->len != (size_t)st.st_size) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: cannot read", path);
        goto cleanup;
    }
    if (strlen(f->sql) != f->len) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: holds a NUL byte (not SQL text)", path);
        goto cleanup;
    }
    ok = true;
cleanup:
    if (in)
        fclose(in);
    return ok;
}

static void mfile_clear(mfile *f)
{
    free(f->name);
    free(f->sql);
    memset(f, 0, sizeof *f);
}

/* The names of the *.sql entries of dir, sorted; NULL (e set) on error. */
static char **list_sql(const char *dir, size_t *n, vcl_error *e)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t cap = 0;
    struct dirent *de;
    *n = 0;
    if (!d) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: cannot read the directory: %s", dir,
                      strerror(errno));
        return NULL;
    }
    while ((de = readdir(d))) {
        if (!has_sql_suffix(de->d_name))
            continue;
        if (*n + 1 >= cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn)
                goto oom;
            names = nn;
        }
        if (!(names[*n] = strdup(de->d_name)))
            goto oom;
        (*n)++;
    }
    closedir(d);
    if (!names && !(names = calloc(1, sizeof *names))) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
        return NULL;
    }
    qsort(names, *n, sizeof *names, util_cmp_str);
    return names;
oom:
    closedir(d);
    util_strv_free(names, *n);
    vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
    return NULL;
}

static bool load_numbered(migrate_plan *p, vcl_error *e)
{
    size_t n = 0;
    bool ok = false;
    char **names = list_sql(p->dir, &n, e);
    if (!names)
        return false;
    if (n == 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s: no migrations (NNN_name.sql)", p->dir);
        goto cleanup;
    }
    if (!(p->num = calloc(n, sizeof *p->num))) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        if (!numbered_name_ok(names[i])) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s/%s: not a migration name (NNN_name.sql: three digits, '_', then "
                          "lower-case letters, digits and '_'); functions, views, triggers and "
                          "grants go into %s/ and its ORDER", p->dir, names[i], LIVE_DIR);
            goto cleanup;
        }
        mfile *f = &p->num[p->nnum++];
        if (!read_file(p->dir, names[i], f, e))
            goto cleanup;
        f->version = atoi(names[i]);
        if (f->version < 1) {
            vcl_error_set(e, VCL_ERR_PERMANENT, "%s/%s: versions start at 001", p->dir, f->name);
            goto cleanup;
        }
        /* sorted by name, so versions come in order and a duplicate is next */
        if (i > 0 && p->num[i - 1].version == f->version) {
            vcl_error_set(e, VCL_ERR_PERMANENT, "%s: %s and %s have the same version %d", p->dir,
                          p->num[i - 1].name, f->name, f->version);
            goto cleanup;
        }
    }
    ok = true;
cleanup:
    util_strv_free(names, n);
    return ok;
}

/* functions/ORDER: one file name a line, '#' starts a comment. It lists
 * every functions/ *.sql file, once. */
static bool load_live(migrate_plan *p, vcl_error *e)
{
    char live_dir[PATH_MAX];
    mfile order;
    size_t n = 0, cap = 0;
    bool ok = false;
    char **names = NULL;
    snprintf(live_dir, sizeof live_dir, "%s/%s", p->dir, LIVE_DIR);
    if (!read_file(p->dir, LIVE_ORDER, &order, e)) {
        vcl_error_prefix(e, "the live SQL (functions, views, triggers, grants)");
        mfile_clear(&order);
        return false;
    }
    for (char *line = order.sql, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line[strcspn(line, "#")] = '\0';
        line += strspn(line, " \t\r");
        line[strcspn(line, " \t\r")] = '\0';
        if (!*line)
            continue;
        if (!sql_name_ok(line)) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s/%s: \"%s\" is not a live file name (name.sql: lower-case letters, "
                          "digits, '_')", p->dir, LIVE_ORDER, line);
            goto cleanup;
        }
        for (size_t i = 0; i < p->nlive; i++)
            if (strcmp(p->live[i].name + sizeof LIVE_DIR, line) == 0) {
                vcl_error_set(e, VCL_ERR_PERMANENT, "%s/%s lists %s twice", p->dir, LIVE_ORDER,
                              line);
                goto cleanup;
            }
        if (p->nlive == cap) {
            cap = cap ? cap * 2 : 16;
            mfile *nl = realloc(p->live, cap * sizeof *nl);
            if (!nl) {
                vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
                goto cleanup;
            }
            p->live = nl;
        }
        char rel[160];
        snprintf(rel, sizeof rel, "%s/%s", LIVE_DIR, line);
        if (!read_file(p->dir, rel, &p->live[p->nlive++], e)) {
            vcl_error_prefix(e, "listed in %s/%s", p->dir, LIVE_ORDER);
            goto cleanup;
        }
    }
    if (p->nlive == 0) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "%s/%s lists no file", p->dir, LIVE_ORDER);
        goto cleanup;
    }
    if (!(names = list_sql(live_dir, &n, e)))
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        bool listed = false;
        for (size_t k = 0; k < p->nlive && !listed; k++)
            listed = strcmp(p->live[k].name + sizeof LIVE_DIR, names[i]) == 0;
        if (!listed) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s/%s is not listed in %s/%s (add it where it belongs in the order)",
                          live_dir, names[i], p->dir, LIVE_ORDER);
            goto cleanup;
        }
    }
    ok = true;
cleanup:
    util_strv_free(names, n);
    mfile_clear(&order);
    return ok;
}

migrate_plan *migrate_plan_new(const char *dir, vcl_error *e)
{
    migrate_plan *p = calloc(1, sizeof *p);
    if (!p || !(p->dir = strdup(dir))) {
        free(p);
        vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
        return NULL;
    }
    if (!load_numbered(p, e) || !load_live(p, e)) {
        migrate_plan_free(p);
        return NULL;
    }
    return p;
}

void migrate_plan_free(migrate_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nnum; i++)
        mfile_clear(&p->num[i]);
    for (size_t i = 0; i < p->nlive; i++)
        mfile_clear(&p->live[i]);
    free(p->num);
    free(p->live);
    free(p->dir);
    free(p);
}

void migrate_result_clear(migrate_result *r)
{
    free(r->applied);
    free(r->live);
    free(r->live_changed);
    memset(r, 0, sizeof *r);
}

/* ---- applying ---- */

typedef char sha_hex[65];

/* Run file f of plan p inside the open transaction. */
static bool run_file(db_conn *db, const migrate_plan *p, const mfile *f, vcl_error *e)
{
    int line = 0;
    if (!db_exec_script(db, f->sql, &line, e)) {
        if (line > 0)
            vcl_error_prefix(e, "%s/%s:%d", p->dir, f->name, line);
        else
            vcl_error_prefix(e, "%s/%s", p->dir, f->name);
        return false;
    }
    if (!db_in_transaction(db))
        return vcl_error_set(e, VCL_ERR_PERMANENT,
                             "%s/%s ran ROLLBACK: the run so far is rolled back, but what the file "
                             "did after it was committed; no transaction control in migration "
                             "files (a migrate is one transaction)", p->dir, f->name);
    return true;
}

/* The rows of vcl.schema_migrations against the plan: every applied version
 * has its file, under the same name, with the same bytes; every file not
 * applied yet comes after the last applied one. */
static bool check_applied(db_conn *db, const migrate_plan *p, const sha_hex *sums, bool *applied,
                          vcl_error *e)
{
    PGresult *r = db_exec(db, SQL_APPLIED, 0, NULL, e);
    int last = 0;
    const char *last_name = NULL;
    bool ok = false;
    if (!r)
        return false;
    for (int row = 0; row < PQntuples(r); row++) {
        int version = (int)db_get_ll(r, row, 0);
        const char *name = db_get_str(r, row, 1), *sum = db_get_str(r, row, 2);
        size_t i = 0;
        while (i < p->nnum && p->num[i].version != version)
            i++;
        if (i == p->nnum) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "version %d (%s) is applied to this database, but %s has no migration "
                          "%03d: the database is newer than these files (an older vclctl, or the "
                          "wrong --sql-dir?)", version, name, p->dir, version);
            goto cleanup;
        }
        if (strcmp(name, p->num[i].name) != 0) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "version %d was applied as %s, but %s calls it %s: an applied "
                          "migration keeps its name", version, name, p->dir, p->num[i].name);
            goto cleanup;
        }
        if (strcmp(sum, sums[i]) != 0) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s/%s changed after it was applied (sha256 applied %s, file now %s): "
                          "applied migrations are frozen; undo the edit, and put the change in "
                          "a new migration (or, for functions, views, triggers and grants, in "
                          "%s/)", p->dir, name, sum, sums[i], LIVE_DIR);
            goto cleanup;
        }
        applied[i] = true;
        if (version > last) {
            last = version;
            last_name = p->num[i].name;
        }
    }
    for (size_t i = 0; i < p->nnum; i++)
        if (!applied[i] && p->num[i].version < last) {
            vcl_error_set(e, VCL_ERR_PERMANENT,
                          "%s/%s is numbered below %s, which is applied already: number a new "
                          "migration after the last applied one", p->dir, p->num[i].name,
                          last_name);
            goto cleanup;
        }
    ok = true;
cleanup:
    PQclear(r);
    return ok;
}

/* Whether live file name was last applied with checksum sum. */
static bool live_unchanged(const PGresult *stored, const char *name, const char *sum)
{
    for (int row = 0; row < PQntuples(stored); row++)
        if (strcmp(db_get_str(stored, row, 0), name) == 0)
            return strcmp(db_get_str(stored, row, 1), sum) == 0;
    return false;
}

/* One attempt: the whole run in one transaction (left open on failure). */
static bool apply_once(db_conn *db, const migrate_plan *p, const sha_hex *sums,
                       const sha_hex *live_sums, migrate_result *r, vcl_error *e)
{
    int line;
    long long n = 0, version = 0;
    bool ok = false, isnull;
    bool *applied = calloc(p->nnum ? p->nnum : 1, sizeof *applied);
    PGresult *stored = NULL;
    char *names = NULL;
    if (!applied)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
    if (!db_exec_script(db, SQL_BEGIN, &line, e) ||
        !db_scalar_ll(db, SQL_HAS_CHECKSUM, 0, NULL, &n, &isnull, e))
        goto cleanup;
    if (n != 1) {
        vcl_error_set(e, VCL_ERR_PERMANENT,
                      "vcl.schema_migrations has no checksum column: this database was migrated "
                      "with the files before 001_baseline.sql (001_schema.sql to "
                      "009_role_grants.sql), and there is no upgrade path from them (no "
                      "production database ever used them): DROP SCHEMA vcl CASCADE, then "
                      "migrate again");
        goto cleanup;
    }
    if (!db_exec_script(db, SQL_COMMENTS, &line, e) || !check_applied(db, p, sums, applied, e) ||
        !(stored = db_exec(db, SQL_LIVE_SUMS, 0, NULL, e)))
        goto cleanup;

    for (size_t i = 0; i < p->nnum; i++) {
        if (applied[i])
            continue;
        char v[16];
        snprintf(v, sizeof v, "%d", p->num[i].version);
        const char *prm[3] = { v, p->num[i].name, sums[i] };
        if (!run_file(db, p, &p->num[i], e) || !db_run(db, SQL_RECORD, 3, prm, e))
            goto cleanup;
        r->applied[r->napplied++] = p->num[i].name;
    }

    size_t cap = 1, len = 0;
    for (size_t i = 0; i < p->nlive; i++)
        cap += strlen(p->live[i].name) + 1;
    if (!(names = calloc(1, cap))) {
        vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < p->nlive; i++) {
        const char *prm[2] = { p->live[i].name, live_sums[i] };
        r->live_changed[r->nlive] = !live_unchanged(stored, p->live[i].name, live_sums[i]);
        if (!run_file(db, p, &p->live[i], e) || !db_run(db, SQL_RECORD_LIVE, 2, prm, e))
            goto cleanup;
        r->live[r->nlive++] = p->live[i].name;
        len += (size_t)snprintf(names + len, cap - len, "%s%s", i ? " " : "", p->live[i].name);
    }
    const char *prm[1] = { names };
    if (!db_run(db, SQL_FORGET_LIVE, 1, prm, e) ||
        !db_scalar_ll(db, SQL_VERSION, 0, NULL, &version, &isnull, e) ||
        !db_exec_script(db, "SET LOCAL vcl.migrate_commit = 'yes'; COMMIT", &line, e))
        goto cleanup;
    r->version = (int)version;
    ok = true;
cleanup:
    PQclear(stored);
    free(names);
    free(applied);
    return ok;
}

bool migrate_apply(db_conn *db, const migrate_plan *p, migrate_result *r, vcl_error *e)
{
    sha_hex *sums = calloc(p->nnum + p->nlive, sizeof *sums);
    bool ok = false;
    memset(r, 0, sizeof *r);
    if (!sums)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
    for (size_t i = 0; i < p->nnum + p->nlive; i++) {
        const mfile *f = i < p->nnum ? &p->num[i] : &p->live[i - p->nnum];
        if (!db_sha256_hex(db, f->sql, f->len, sums[i], e))
            goto cleanup;
    }
    for (int attempt = 1;; attempt++) {
        migrate_result_clear(r);
        r->applied = calloc(p->nnum, sizeof *r->applied);
        r->live = calloc(p->nlive, sizeof *r->live);
        r->live_changed = calloc(p->nlive, sizeof *r->live_changed);
        if (!r->applied || !r->live || !r->live_changed) {
            vcl_error_set(e, VCL_ERR_PERMANENT, "out of memory");
            goto cleanup;
        }
        if (apply_once(db, p, sums, sums + p->nnum, r, e)) {
            for (int i = 0; i < r->napplied; i++)
                log_info("applied migration %s", r->applied[i]);
            log_info("re-applied %d live SQL files; schema at version %d", r->nlive, r->version);
            ok = true;
            goto cleanup;
        }
        if (db_in_transaction(db)) {
            int line;
            vcl_error ignored;
            db_exec_script(db, "ROLLBACK", &line, &ignored);
        }
        /* A lost deadlock, a lock wait over lock_timeout, a serialization
         * failure: nothing was applied; try again (a lost connection: no). */
        if (e->cls != VCL_ERR_RETRYABLE || db_is_broken(db) || attempt >= MIGRATE_ATTEMPTS)
            goto cleanup;
        log_warn("migrate: %s; trying again (%d of %d)", e->msg, attempt + 1, MIGRATE_ATTEMPTS);
        struct timespec ts = { 1, 0 };
        nanosleep(&ts, NULL);
    }
cleanup:
    if (!ok) {
        r->napplied = 0;
        r->nlive = 0;
    }
    free(sums);
    return ok;
}

/* ---- where the files are ---- */

static bool dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *migrate_default_dir(void)
{
    static char buf[PATH_MAX + 64];
    const char *env = getenv("VCL_SQL_DIR");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    if (util_exe_dir(exe, sizeof exe)) {
        snprintf(buf, sizeof buf, "%s/../sql", exe);
        if (dir_exists(buf))
            return buf;
        snprintf(buf, sizeof buf, "%s/../share/vcl-worker/sql", exe);
        if (dir_exists(buf))
            return buf;
    }
    return VCL_PREFIX "/share/vcl-worker/sql";
}
