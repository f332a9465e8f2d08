/* migrate.h: the schema's migration runner (vclctl migrate).
 *
 * A SQL directory holds two kinds of files:
 *   NNN_name.sql          numbered migrations (tables, indexes, types,
 *                         sequences, data changes): applied once each, in
 *                         version order, and frozen: vcl.schema_migrations
 *                         keeps the sha256 of each as applied, and a file
 *                         that changed since is an error naming it.
 *   functions/ORDER       the live files (functions, views, triggers,
 *   functions/NAME.sql    grants): every run re-applies all of them, in the
 *                         order ORDER lists them (vcl.schema_live_files keeps
 *                         the sha256 of each as last applied).
 * One run is one transaction, under an advisory lock: the numbered files not
 * yet applied, then every live file. Either all of it commits or nothing
 * does; killed at any instant, it leaves the schema as it was, and the next
 * run starts over. Lock waits are bounded (lock_timeout); a run that loses a
 * deadlock or times out on a lock is tried again, twice. */
#ifndef VCL_MIGRATE_H
#define VCL_MIGRATE_H
#include <stdbool.h>
#include "queue/db.h"
#include "base/error.h"

/* The files of one SQL directory, read and checked (names, ORDER), not yet
 * compared with any database. */
typedef struct migrate_plan migrate_plan;

/* Read dir. NULL with e set when it cannot be read, holds no numbered
 * migration, has a file whose name is neither (a .sql file that is not
 * NNN_name.sql), two migrations of one version, or a functions/ORDER that
 * does not list exactly the functions/ *.sql files. */
migrate_plan *migrate_plan_new(const char *dir, vcl_error *e);
void migrate_plan_free(migrate_plan *p);

/* What a run did. Names point into the plan (valid until migrate_plan_free). */
typedef struct migrate_result {
    int version;                /* highest applied version afterwards */
    int napplied;               /* numbered migrations this run applied */
    const char **applied;       /* their file names, in order */
    int nlive;                  /* live files re-applied (every one) */
    const char **live;          /* "functions/queue.sql", in ORDER */
    bool *live_changed;         /* differs from the copy the last run applied (or is new) */
} migrate_result;
void migrate_result_clear(migrate_result *r);

/* Apply plan p to the database: refuses (nothing applied, e names the file
 * and both checksums) when an applied migration's file changed, was renamed
 * or is missing, or a new one is numbered below an applied one. */
bool migrate_apply(db_conn *db, const migrate_plan *p, migrate_result *r, vcl_error *e);

/* The SQL directory: $VCL_SQL_DIR, <exe>/../sql, <exe>/../share/vcl-worker/sql,
 * PREFIX/share/vcl-worker/sql. */
const char *migrate_default_dir(void);
#endif
