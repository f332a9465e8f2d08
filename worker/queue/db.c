/* db.c: see db.h. */
#include "queue/db.h"
#include "queue/dbroute.h"
#include "base/log.h"
#include "base/metrics.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Statements run more than once on a connection are prepared (protocol
 * level: Parse once, then Bind/Execute): the worker's hot path (claim,
 * complete, heartbeat, stage log) skips parsing and planning its own SQL. */
#define DB_STMT_CACHE 64

typedef struct db_stmt {
    char *sql;
    int nparams;
    bool prepared;
} db_stmt;

struct db_conn {
    PGconn *pg;
    char *conninfo;
    char *appname;
    bool broken;
    char sqlstate[6];
    db_stmt stmt[DB_STMT_CACHE];
    int nstmt;
};

static bool prepare_on = true;
static bool writer_on = false;

void db_set_prepare(bool on) { prepare_on = on; }
void db_set_writer(bool on) { writer_on = on; }

/* Forget every prepared statement (a new session has none). */
static void stmt_cache_clear(db_conn *db)
{
    for (int i = 0; i < db->nstmt; i++)
        free(db->stmt[i].sql);
    db->nstmt = 0;
}

/* Run sql: prepared on its second use on this connection (cache slot i is
 * named "vclw_<i>"), unprepared otherwise. */
static PGresult *stmt_exec(db_conn *db, const char *sql, int nparams, const char *const *params)
{
    db_stmt *st = NULL;
    int i = 0;
    if (!prepare_on)
        return PQexecParams(db->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    for (; i < db->nstmt && !st; i++)
        if (db->stmt[i].nparams == nparams && strcmp(db->stmt[i].sql, sql) == 0)
            st = &db->stmt[i];
    if (!st) {
        if (db->nstmt < DB_STMT_CACHE && (db->stmt[db->nstmt].sql = strdup(sql))) {
            db->stmt[db->nstmt].nparams = nparams;
            db->stmt[db->nstmt++].prepared = false;
        }
        return PQexecParams(db->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    }
    char name[32];
    snprintf(name, sizeof name, "vclw_%d", i - 1);
    if (!st->prepared) {
        PGresult *r = PQprepare(db->pg, name, sql, nparams, NULL);
        st->prepared = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!st->prepared)
            return PQexecParams(db->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    }
    PGresult *r = PQexecPrepared(db->pg, name, nparams, params, NULL, NULL, 0);
    /* 0A000 "cached plan must not change result type": a migration changed
     * what the statement returns. Prepare it again, once. */
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "0A000") == 0 && PQtransactionStatus(db->pg) == PQTRANS_IDLE) {
        PQclear(r);
        char dealloc[64];
        snprintf(dealloc, sizeof dealloc, "DEALLOCATE %s", name);
        PQclear(PQexec(db->pg, dealloc));
        st->prepared = false;
        return PQexecParams(db->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    }
    return r;
}

static void notice_quiet(void *arg, const PGresult *res)
{
    (void)arg;
    log_debug("postgres: %s", PQresultErrorMessage(res));
}

static bool open_pg(db_conn *db, vcl_error *e)
{
    /* dbname may hold a whole conninfo string (expand_dbname=1); anything it
     * leaves unset comes from the PG* environment. Later entries override
     * earlier ones: target_session_attrs=read-write (dbroute.h) goes in
     * only when neither the conninfo nor PGTARGETSESSIONATTRS chooses. */
    const char *keys[4] = { "fallback_application_name", NULL, NULL, NULL };
    const char *vals[4] = { db->appname, NULL, NULL, NULL };
    int n = 1;
    if (dbroute_wants_default_tsa(db->conninfo, getenv("PGTARGETSESSIONATTRS"))) {
        keys[n] = "target_session_attrs";
        vals[n++] = DBROUTE_DEFAULT_TSA;
    }
    if (db->conninfo[0]) {
        keys[n] = "dbname";
        vals[n++] = db->conninfo;
    }
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        const char *m = pg ? PQerrorMessage(pg) : "out of memory";
        char msg[512];
        snprintf(msg, sizeof msg, "%s", m);
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(pg);
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot connect to PostgreSQL: %s", msg);
    }
    PQsetNoticeReceiver(pg, notice_quiet, NULL);
    /* application_name from the caller wins over one in the conninfo; jit
     * off: the queue's statements are short, and JIT compiling them costs
     * more than it saves whenever a deep queue pushes a plan's estimate past
     * the database's jit_above_cost (README "Performance"). */
    {
        const char *p[1] = { db->appname };
        PGresult *r = PQexecParams(pg, "SELECT set_config('application_name', $1, false),"
                                       "       set_config('jit', 'off', false)",
                                   1, NULL, p, NULL, NULL, 0);
        PQclear(r);
    }
    /* the worker's writes to vcl.reservation (sql/functions/guard.sql) */
    if (writer_on) {
        PGresult *r = PQexec(pg, "SELECT set_config('vcl.writer', 'worker', false)");
        bool set = r && PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (!set) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", PQerrorMessage(pg));
            msg[strcspn(msg, "\n")] = '\0';
            PQfinish(pg);
            return vcl_error_set(e, VCL_ERR_RETRYABLE, "cannot set vcl.writer on the new connection: %s", msg);
        }
    }
    db->pg = pg;
    db->broken = false;
    stmt_cache_clear(db);
    return true;
}

db_conn *db_connect(const char *conninfo, const char *application_name, vcl_error *e)
{
    db_conn *db = calloc(1, sizeof *db);
    if (!db) {
        vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
        return NULL;
    }
    db->conninfo = strdup(conninfo ? conninfo : "");
    db->appname = strdup(application_name ? application_name : "vcl-worker");
    if (!db->conninfo || !db->appname || !open_pg(db, e)) {
        if (!db->conninfo || !db->appname)
            vcl_error_set(e, VCL_ERR_RETRYABLE, "out of memory");
        db_close(db);
        return NULL;
    }
    return db;
}

void db_close(db_conn *db)
{
    if (!db)
        return;
    PQfinish(db->pg);
    stmt_cache_clear(db);
    free(db->conninfo);
    free(db->appname);
    free(db);
}

bool db_reconnect(db_conn *db, vcl_error *e)
{
    PQfinish(db->pg);
    db->pg = NULL;
    db->broken = true;
    if (!open_pg(db, e))
        return false;
    metrics_db_reconnect();
    return true;
}

bool db_reconnect_backoff(db_conn *db, volatile int *stop, int max_wait_s,
                          void (*waiting)(const char *why), vcl_error *e)
{
    double delay = 0.1;
    time_t start = time(NULL);
    for (int attempt = 1;; attempt++) {
        if (db_reconnect(db, e)) {
            if (attempt > 1)
                log_info("reconnected to PostgreSQL after %d attempts", attempt);
            return true;
        }
        if (attempt == 1 || attempt % 10 == 0)
            log_warn("%s (retrying)", e->msg);
        if ((stop && *stop) || (max_wait_s > 0 && time(NULL) - start >= max_wait_s))
            return false;
        /* sleep in slices: a stop is seen within one, and waiting() (the
         * systemd watchdog) is called often enough for any WatchdogSec */
        for (double left = delay; left > 0 && !(stop && *stop); left -= 0.25) {
            double d = left < 0.25 ? left : 0.25;
            if (waiting)
                waiting(e->msg);
            struct timespec ts = { 0, (long)(d * 1e9) };
            nanosleep(&ts, NULL);
        }
        delay = delay * 2 > 5.0 ? 5.0 : delay * 2;
    }
}

bool db_is_broken(const db_conn *db)
{
    return !db || db->broken || !db->pg || PQstatus(db->pg) != CONNECTION_OK;
}

PGconn *db_pg(db_conn *db) { return db ? db->pg : NULL; }
const char *db_sqlstate(const db_conn *db) { return db ? db->sqlstate : ""; }

bool db_notified(db_conn *db)
{
    bool any = false;
    if (!db || !PQconsumeInput(db->pg))
        return false;
    PGnotify *n;
    while ((n = PQnotifies(db->pg))) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

static void result_error(db_conn *db, const PGresult *r, const char *prefix, const char *msg,
                         vcl_error *e);

PGresult *db_exec(db_conn *db, const char *sql, int nparams, const char *const *params,
                  vcl_error *e)
{
    db->sqlstate[0] = '\0';
    if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
        db->broken = true;
        vcl_error_set(e, VCL_ERR_RETRYABLE, "database connection lost");
        return NULL;
    }
    if (log_get_level() <= LOG_LVL_DEBUG) {
        char one[160];
        snprintf(one, sizeof one, "%s", sql);
        for (char *p = one; *p; p++)
            if (*p == '\n' || *p == '\t')
                *p = ' ';
        log_debug("sql: %s", one);
    }
    PGresult *r = stmt_exec(db, sql, nparams, params);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    char msg[768];
    snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(db->pg));
    msg[strcspn(msg, "\n")] = '\0';
    result_error(db, r, "database: ", msg, e);
    PQclear(r);
    return NULL;
}

/* The failure of result r (NULL: libpq's own) into e, with msg as the text:
 * keeps the SQLSTATE, marks the connection broken when it is lost, and
 * classes the error (see db_exec in db.h). */
static void result_error(db_conn *db, const PGresult *r, const char *prefix, const char *msg,
                         vcl_error *e)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(db->sqlstate, sizeof db->sqlstate, "%s", state ? state : "");
    /* An error without a SQLSTATE comes from libpq itself, not the server:
     * "server closed the connection unexpectedly" after a crash reports no
     * SQLSTATE while PQstatus still says CONNECTION_OK. Treat it as a lost
     * connection. 57P01/57P02/57P03: admin shutdown, crash shutdown, cannot
     * connect now. */
    bool lost = PQstatus(db->pg) != CONNECTION_OK || !state || !state[0] ||
                strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                strcmp(state, "57P02") == 0 || dbroute_wrong_server(state);
    bool transient = lost || (state && state[0] && (strncmp(state, "40", 2) == 0 ||
                                        strcmp(state, "55P03") == 0 ||
                                        strcmp(state, "57014") == 0 ||
                                        strncmp(state, "53", 2) == 0 ||
                                        strcmp(state, "57P03") == 0));
    if (lost || PQstatus(db->pg) != CONNECTION_OK)
        db->broken = true;
    vcl_error_set(e, transient ? VCL_ERR_RETRYABLE : VCL_ERR_PERMANENT, "%s%s%s%s%s", prefix,
                  msg[0] ? msg : "unknown error", state ? " (SQLSTATE " : "", state ? state : "",
                  state ? ")" : "");
}

bool db_run(db_conn *db, const char *sql, int nparams, const char *const *params, vcl_error *e)
{
    PGresult *r = db_exec(db, sql, nparams, params, e);
    PQclear(r);
    return r != NULL;
}

bool db_scalar_ll(db_conn *db, const char *sql, int nparams, const char *const *params,
                  long long *out, bool *isnull, vcl_error *e)
{
    PGresult *r = db_exec(db, sql, nparams, params, e);
    if (!r)
        return false;
    bool null = PQntuples(r) == 0 || PQgetisnull(r, 0, 0);
    if (isnull)
        *isnull = null;
    if (out)
        *out = null ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return true;
}

void db_params_init(db_params *p) { memset(p, 0, sizeof *p); }

void db_param_str(db_params *p, const char *s)
{
    if (p->n < 16)
        p->v[p->n++] = s;
}

void db_param_ll(db_params *p, long long v)
{
    if (p->n >= 16)
        return;
    snprintf(p->buf[p->n], sizeof p->buf[p->n], "%lld", v);
    p->v[p->n] = p->buf[p->n];
    p->n++;
}

void db_param_double(db_params *p, double v)
{
    if (p->n >= 16)
        return;
    snprintf(p->buf[p->n], sizeof p->buf[p->n], "%.6f", v);
    p->v[p->n] = p->buf[p->n];
    p->n++;
}

void db_param_bool(db_params *p, bool b) { db_param_str(p, b ? "true" : "false"); }

long long db_get_ll(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *db_get_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

bool db_get_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

/* ---- scripts ---- */

/* 1-based line of character position pos (1-based, as PostgreSQL counts:
 * characters, not bytes, of a UTF-8 text) in sql. */
static int line_of_position(const char *sql, long pos)
{
    int line = 1;
    for (long chars = 0; *sql && chars < pos - 1; sql++) {
        if (((unsigned char)*sql & 0xC0) != 0x80)
            chars++;
        if (*sql == '\n')
            line++;
    }
    return line;
}

bool db_exec_script(db_conn *db, const char *sql, int *err_line, vcl_error *e)
{
    *err_line = 0;
    db->sqlstate[0] = '\0';
    if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
        db->broken = true;
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "database connection lost");
    }
    log_debug("sql script: %zu bytes, %.*s", strlen(sql), (int)strcspn(sql, "\n"), sql);
    PGresult *r = PQexec(db->pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        PQclear(r);
        return true;
    }
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
    char msg[768];
    if (primary)
        snprintf(msg, sizeof msg, "%s%s%s", primary, detail ? ": " : "", detail ? detail : "");
    else
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(db->pg));
    msg[strcspn(msg, "\n")] = '\0';
    if (pos)
        *err_line = line_of_position(sql, strtol(pos, NULL, 10));
    result_error(db, r, "", msg, e);
    PQclear(r);
    return false;
}

bool db_in_transaction(db_conn *db)
{
    PGTransactionStatusType t = db->pg ? PQtransactionStatus(db->pg) : PQTRANS_UNKNOWN;
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}

bool db_sha256_hex(db_conn *db, const void *data, size_t len, char out[65], vcl_error *e)
{
    /* The bytes travel as a binary bytea parameter: exactly the file's bytes,
     * whatever the encodings, so the result is what sha256sum prints. */
    const Oid types[1] = { 17 /* bytea */ };
    const char *values[1] = { len ? data : "" };
    const int lengths[1] = { (int)len };
    const int formats[1] = { 1 };
    out[0] = '\0';
    if (len > INT_MAX)
        return vcl_error_set(e, VCL_ERR_PERMANENT, "sha256: %zu bytes is too large", len);
    if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
        db->broken = true;
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "database connection lost");
    }
    PGresult *r = PQexecParams(db->pg, "SELECT encode(sha256($1), 'hex')", 1, types, values,
                               lengths, formats, 0);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
        PQgetlength(r, 0, 0) != 64) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(db->pg));
        msg[strcspn(msg, "\n")] = '\0';
        result_error(db, r, "database: sha256: ", msg, e);
        PQclear(r);
        return false;
    }
    memcpy(out, PQgetvalue(r, 0, 0), 65);
    PQclear(r);
    return true;
}

/* ---- conninfo masking ---------------------------------------------------- */

#define DB_MASK "****"

/* Append "key=value" (value quoted as libpq's key=value syntax wants when it
 * is empty or holds blanks, quotes or backslashes) to out at *len. out was
 * sized by the caller for the worst case. */
static void mask_append(char *out, size_t *len, const char *key, const char *value)
{
    bool quote = !*value || strpbrk(value, " \t\n\r\f\v'\\") != NULL;
    size_t n = *len;
    if (n)
        out[n++] = ' ';
    memcpy(out + n, key, strlen(key));
    n += strlen(key);
    out[n++] = '=';
    if (quote)
        out[n++] = '\'';
    for (const char *v = value; *v; v++) {
        if (quote && (*v == '\'' || *v == '\\'))
            out[n++] = '\\';
        out[n++] = *v;
    }
    if (quote)
        out[n++] = '\'';
    out[n] = '\0';
    *len = n;
}

/* Where a URI's user:password@ can spill over: an '@' in the password that
 * was not written %40 ends the user info early for libpq, and the rest of
 * the password lands in the host or port ("u:se@cret@h" -> host "cret@h").
 * A host or port with an '@' is masked along with the password. */
static bool is_authority(const char *keyword)
{
    return strcmp(keyword, "host") == 0 || strcmp(keyword, "hostaddr") == 0 ||
           strcmp(keyword, "port") == 0;
}

static bool is_uri(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

/* A value that may hold part of a URI's password: in a URI, a password with
 * a raw '@', '/' or '?' ends the user info early or never starts it ("u:pa/
 * ss@db" is host "u", port "pa", dbname "ss@db"): a host, port, user or
 * dbname with an '@', or a port that is not digits, is masked. */
static bool spilled(const char *keyword, const char *val)
{
    if (strcmp(keyword, "port") == 0 && val[strspn(val, "0123456789,")] != '\0')
        return true;
    return (is_authority(keyword) || strcmp(keyword, "user") == 0 ||
            strcmp(keyword, "dbname") == 0) && strchr(val, '@');
}

char *db_conninfo_mask(const char *conninfo)
{
    const char *s = conninfo ? conninfo : "";
    char *err = NULL, *out = NULL, *inner = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &err);
    bool secret = false, misread = false, uri = is_uri(s);
    size_t cap = 1, len = 0;

    if (!opts) {
        /* Not a conninfo libpq can read: nothing in it can be told apart
         * from a password, so none of it is shown. */
        PQfreemem(err);
        return strdup(DB_MASK);
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        bool hide = o->dispchar && strchr(o->dispchar, '*');
        secret |= hide;
        misread |= is_authority(o->keyword) && strchr(o->val, '@');
        misread |= uri && spilled(o->keyword, o->val);
        /* libpq reads a dbname that is itself a conninfo or URI ("expand_dbname") */
        if (strcmp(o->keyword, "dbname") == 0 && !inner &&
            (strchr(o->val, '=') || is_uri(o->val))) {
            inner = db_conninfo_mask(o->val);
            if (!inner)
                goto cleanup;
            secret |= strcmp(inner, o->val) != 0;
            cap += strlen(inner) * 2;
        }
        /* key, '=', value with every byte escaped, two quotes, a blank */
        cap += strlen(o->keyword) + 4 + (hide ? strlen(DB_MASK) : 2 * strlen(o->val));
    }
    if (!secret && !misread) {
        out = strdup(s);
        goto cleanup;
    }
    out = malloc(cap + strlen(DB_MASK) * 8);
    if (!out)
        goto cleanup;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        bool hide = (o->dispchar && strchr(o->dispchar, '*')) ||
                    (misread && is_authority(o->keyword)) || (uri && spilled(o->keyword, o->val));
        bool dbn = inner && strcmp(o->keyword, "dbname") == 0;
        mask_append(out, &len, o->keyword, hide ? DB_MASK : dbn ? inner : o->val);
    }

cleanup:
    free(inner);
    PQconninfoFree(opts);
    return out;
}
