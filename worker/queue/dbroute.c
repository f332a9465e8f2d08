/* dbroute.c: see dbroute.h. */
#include "queue/dbroute.h"
#include "queue/db.h"
#include "base/log.h"

#include <libpq-fe.h>
#include <string.h>

bool dbroute_wants_default_tsa(const char *conninfo, const char *env_tsa)
{
    if (env_tsa && env_tsa[0])
        return false;
    if (!conninfo || !conninfo[0])
        return true;
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        PQfreemem(err);
        return false;
    }
    bool set = false;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "target_session_attrs") == 0 && o->val && o->val[0])
            set = true;
    PQconninfoFree(opts);
    return !set;
}

bool dbroute_wrong_server(const char *state)
{
    /* 25006 read_only_sql_transaction: "cannot execute INSERT in a read-only
     * transaction" on a hot standby, and also what LISTEN and the queue
     * functions raise there (vcl.lease_epoch raises it during recovery). */
    return state && strcmp(state, "25006") == 0;
}

/* The backend pid behind db now; 0 when the query fails. */
static long long backend_pid(db_conn *db, vcl_error *e)
{
    long long pid = 0;
    bool isnull = true;
    if (!db_scalar_ll(db, "SELECT pg_backend_pid()", 0, NULL, &pid, &isnull, e) || isnull)
        return 0;
    return pid;
}

bool dbroute_check_pooling(db_conn *db, const char *conninfo, const char *application_name,
                           vcl_error *e)
{
    bool ok = false;
    db_conn *other = NULL;
    long long a1 = 0, b = 0, a2 = 0;

    /* a, b, a: in session mode a's two answers agree and b's differs; a
     * pooler sharing backends gives b the backend a just released (LIFO),
     * or gives a another one the second time. */
    if (!(a1 = backend_pid(db, e)))
        goto cleanup;
    if (!(other = db_connect(conninfo, application_name, e)))
        goto cleanup;
    if (!(b = backend_pid(other, e)) || !(a2 = backend_pid(db, e)))
        goto cleanup;
    if (a1 == b || a2 == b || a1 != a2) {
        vcl_error_set(e, VCL_ERR_PERMANENT,
                      "the database connection is pooled per transaction: two open sessions "
                      "share a server backend (pids %lld, %lld, %lld). vcl-worker needs a session "
                      "of its own (LISTEN for wake-ups, session-level locks): connect to "
                      "PostgreSQL directly or set PgBouncer's pool_mode = session for this "
                      "database (README \"Behind PgBouncer\")",
                      a1, b, a2);
        goto cleanup;
    }
    log_debug("pooling check: sessions have backends %lld and %lld: not shared", a1, b);
    ok = true;

cleanup:
    db_close(other);
    return ok;
}
