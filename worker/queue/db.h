/* db.h: the only libpq user. One choke point executes parameterised
 * statements, logs the SQL at debug level, keeps the SQLSTATE and recognises
 * lost connections (class 08, or a bad connection status) so callers can
 * reconnect. A statement run a second time on a connection is prepared
 * (protocol-level, named vclw_N; again after a reconnect). Which server a
 * connection reaches (primary only, no transaction pooling): dbroute.h.
 * Statements live in statements.h. */
#ifndef VCL_DB_H
#define VCL_DB_H
#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>
#include "base/error.h"

typedef struct db_conn db_conn;

/* conninfo "" = PG* environment only; multi-host (host=a,b) works, and
 * target_session_attrs defaults to read-write (dbroute.h). application_name
 * is set so DBAs see which worker is which in pg_stat_activity. NULL +
 * retryable error when the server cannot be reached. */
db_conn *db_connect(const char *conninfo, const char *application_name, vcl_error *e);
void db_close(db_conn *db);
/* Drop and reopen the connection (same conninfo). */
bool db_reconnect(db_conn *db, vcl_error *e);
/* Reconnect with capped exponential backoff until it works, *stop becomes
 * true, or max_wait_s passes (0 = forever). */
bool db_reconnect_backoff(db_conn *db, volatile int *stop, int max_wait_s,
                          void (*waiting)(const char *why), vcl_error *e);
bool db_is_broken(const db_conn *db);
/* Whether connections prepare repeated statements (default true; set once at
 * start, before connecting: config option prepared_statements). */
void db_set_prepare(bool on);
/* Whether new connections write as the worker (default false; the worker
 * sets it once at start, vclctl never): each sets vcl.writer = 'worker' for
 * its session, which, for a member of vcl_worker, lets it write the
 * worker-owned columns of vcl.reservation (sql/functions/guard.sql). */
void db_set_writer(bool on);
PGconn *db_pg(db_conn *db);
/* SQLSTATE of the last failed statement ("" if none). */
const char *db_sqlstate(const db_conn *db);
/* NOTIFYs for a LISTENing connection: read what arrived on its socket (no
 * query is sent) and drop the notifications. true when at least one came;
 * false when none did or the connection failed (the caller's next statement
 * finds it broken and reconnects). */
bool db_notified(db_conn *db);

/* Execute with text parameters (NULL entries are SQL NULL). Returns the
 * result (PGRES_TUPLES_OK / COMMAND_OK) or NULL with e filled: lost
 * connection (class 08 or a server that takes no writes, 25006: see
 * dbroute.h; the connection is marked broken) and serialization
 * or deadlock (40xxx), lock timeouts (55P03) are retryable; everything else is
 * permanent. PQclear the result. */
PGresult *db_exec(db_conn *db, const char *sql, int nparams, const char *const *params,
                  vcl_error *e);
/* db_exec for statements with no interesting result. */
bool db_run(db_conn *db, const char *sql, int nparams, const char *const *params, vcl_error *e);
/* Convenience: first column of first row as long long; *isnull set when NULL
 * or no rows. */
bool db_scalar_ll(db_conn *db, const char *sql, int nparams, const char *const *params,
                  long long *out, bool *isnull, vcl_error *e);

/* Helpers to format parameters: a small per-call buffer set. */
typedef struct db_params {
    const char *v[16];
    char buf[16][32];
    int n;
} db_params;
void db_params_init(db_params *p);
void db_param_str(db_params *p, const char *s);
void db_param_ll(db_params *p, long long v);
void db_param_double(db_params *p, double v);
void db_param_bool(db_params *p, bool b);

/* Parse helpers for result cells. */
long long db_get_ll(const PGresult *r, int row, int col);
const char *db_get_str(const PGresult *r, int row, int col); /* NULL when SQL NULL */
bool db_get_bool(const PGresult *r, int row, int col);

/* A conninfo fit to print (--print-config, logs): unchanged when it holds no
 * secret; with one, rebuilt as key=value pairs from what libpq's
 * PQconninfoParse read (key=value strings and postgresql:// URIs alike:
 * percent-encoded keys and values, user:password@ in the URI) with every
 * secret option (password, sslpassword: libpq's dispchar "*") as ****, and
 * host and port too when one holds an '@' (a URI password with a raw '@'
 * spills into them); "****" for a string libpq cannot parse. malloc'd; NULL when out of memory. */
char *db_conninfo_mask(const char *conninfo);

/* Run a script of one or more statements with the simple query protocol
 * (no parameters): a migration file. On failure e holds PostgreSQL's message
 * (classed and SQLSTATE kept as for db_exec) and *err_line the line of the
 * script it points at (0 when PostgreSQL gives no position). */
bool db_exec_script(db_conn *db, const char *sql, int *err_line, vcl_error *e);
/* Whether the session is inside a transaction block (a script that ran
 * COMMIT or ROLLBACK leaves it). */
bool db_in_transaction(db_conn *db);
/* sha256 of len bytes, as 64 lower-case hex digits (what sha256sum prints),
 * computed by the server: sha256(bytea). */
bool db_sha256_hex(db_conn *db, const void *data, size_t len, char out[65], vcl_error *e);
#endif
