/* locks.c: see locks.h. */
#include "queue/locks.h"
#include "base/log.h"

#include <time.h>
#include <unistd.h>

/* The statements (sql/functions/locks.sql); kept here, with the only code
 * that sends them. */
#define SQL_LEASE_HELD \
    "SELECT EXISTS (SELECT 1 FROM vcl.reservation r WHERE r.id = $1 AND r.lease_token = $2" \
    "   AND CASE WHEN $3::boolean THEN r.state = 'cancelled' AND r.blocks_until > now()" \
    "            ELSE r.state = 'running' AND r.lease_expires_at > now() END)"
#define SQL_IMAGE_LOCK_TAKE    "SELECT vcl.image_lock_take($1, $2, $3, $4)"
#define SQL_IMAGE_LOCK_HELD    "SELECT vcl.image_lock_held($1, $2, $3, $4)"
#define SQL_IMAGE_LOCK_RELEASE "SELECT vcl.image_lock_release($1, $2, $3, $4)"

#define IMAGE_LOCK_DEFAULT_TIMEOUT_S 600

bool locks_lease_held(db_conn *db, long long id, long long token, bool cancelled, bool *ours,
                      vcl_error *e)
{
    db_params p;
    db_params_init(&p);
    db_param_ll(&p, id);
    db_param_ll(&p, token);
    db_param_bool(&p, cancelled);
    PGresult *r = db_exec(db, SQL_LEASE_HELD, p.n, p.v, e);
    if (!r)
        return false;
    *ours = PQntuples(r) == 1 && db_get_bool(r, 0, 0);
    PQclear(r);
    return true;
}

static void image_params(const locks_image *l, db_params *p)
{
    db_params_init(p);
    db_param_ll(p, l->node_id);
    db_param_ll(p, l->revision_id);
    db_param_ll(p, l->reservation_id);
    db_param_ll(p, l->token);
}

bool locks_image_take(db_conn *db, const locks_image *l, int timeout_s, vcl_error *e)
{
    if (timeout_s <= 0)
        timeout_s = IMAGE_LOCK_DEFAULT_TIMEOUT_S;
    db_params p;
    image_params(l, &p);
    time_t until = time(NULL) + timeout_s;
    for (bool logged = false;; logged = true) {
        PGresult *r = db_exec(db, SQL_IMAGE_LOCK_TAKE, p.n, p.v, e);
        if (!r)
            return false;
        bool fenced = PQntuples(r) != 1 || PQgetisnull(r, 0, 0);
        bool got = !fenced && db_get_bool(r, 0, 0);
        PQclear(r);
        if (fenced)
            return vcl_error_set(e, VCL_ERR_RETRYABLE, "reservation %lld no longer runs under lease %lld: "
                                 "not copying image %s to node %s", l->reservation_id, l->token,
                                 l->file_stem, l->node);
        if (got) {
            log_debug("took the copy lock of image %s on node %s", l->file_stem, l->node);
            return true;
        }
        if (!logged)
            log_info("waiting for another worker copying %s to node %s", l->file_stem, l->node);
        if (time(NULL) >= until)
            return vcl_error_set(e, VCL_ERR_RETRYABLE,
                                 "another worker has held the copy lock for image %s on node %s "
                                 "for over %d s (image_lock_timeout_seconds)", l->file_stem, l->node,
                                 timeout_s);
        sleep(1);
    }
}

bool locks_image_held(db_conn *db, const locks_image *l, vcl_error *e)
{
    db_params p;
    image_params(l, &p);
    PGresult *r = db_exec(db, SQL_IMAGE_LOCK_HELD, p.n, p.v, e);
    if (!r)
        return vcl_error_prefix(e, "checking the copy lock of image %s on node %s", l->file_stem,
                                l->node);
    bool held = PQntuples(r) == 1 && db_get_bool(r, 0, 0);
    PQclear(r);
    if (!held)
        return vcl_error_set(e, VCL_ERR_RETRYABLE, "lost the copy lock of image %s on node %s "
                             "(our lease ran out and another worker took it over): stopped before "
                             "renaming the copy into place", l->file_stem, l->node);
    return true;
}

void locks_image_release(db_conn *db, const locks_image *l)
{
    db_params p;
    image_params(l, &p);
    vcl_error e;
    vcl_error_clear(&e);
    if (!db_run(db, SQL_IMAGE_LOCK_RELEASE, p.n, p.v, &e))
        log_warn("releasing the copy lock of image %s on node %s: %s", l->file_stem, l->node, e.msg);
}
