/* dbroute.h: which server a connection reaches, and whether it is the right
 * one. A worker writes on every statement, so it must talk to the primary,
 * over a session of its own:
 *   - a conninfo that does not choose target_session_attrs (nor does
 *     PGTARGETSESSIONATTRS) gets read-write: with a multi-host conninfo
 *     (host=pg1,pg2) libpq tries each host and keeps the one that accepts
 *     writes, so after a failover a reconnect finds the new primary;
 *   - an error that says "this server does not take writes" (SQLSTATE 25006,
 *     read-only transaction: a standby, or a primary demoted under us) is a
 *     lost connection, not a permanent error: reconnect, re-LISTEN,
 *     re-prepare (db.c's result_error asks dbroute_wrong_server);
 *   - a connection pooler that shares one server session between clients
 *     (PgBouncer pool_mode=transaction or statement) breaks LISTEN and the
 *     session-level locks: dbroute_check_pooling detects it at start.
 * Used by db.c (the only libpq user) and the pool at start. */
#ifndef VCL_DBROUTE_H
#define VCL_DBROUTE_H
#include <stdbool.h>
#include "base/error.h"

typedef struct db_conn db_conn;

/* The target_session_attrs a connection uses when neither the conninfo nor
 * the environment says. */
#define DBROUTE_DEFAULT_TSA "read-write"

/* Whether conninfo (key=value or URI; NULL or "" = environment only) leaves
 * target_session_attrs to us: it does not set it, and env_tsa (the value of
 * PGTARGETSESSIONATTRS, NULL when unset) is unset or empty. An unparsable
 * conninfo: false (libpq reports it). */
bool dbroute_wants_default_tsa(const char *conninfo, const char *env_tsa);

/* Whether SQLSTATE state means the server is the wrong one (it does not take
 * writes): the connection must be dropped and made again. */
bool dbroute_wrong_server(const char *state);

/* The pool mode a pooler gives this conninfo, judged from two connections
 * held open at once: in session mode each has its own server backend; a
 * pooler in transaction or statement mode hands the same backend to both in
 * turn (PgBouncer reuses server connections last-in first-out), and one
 * connection sees its backend change between statements. true when each
 * session is its own (direct, or session pooling); false with a permanent
 * error naming pool_mode when they are shared, or a retryable one when the
 * database cannot be reached. db is an open connection of conninfo. */
bool dbroute_check_pooling(db_conn *db, const char *conninfo, const char *application_name,
                           vcl_error *e);
#endif
