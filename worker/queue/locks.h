/* locks.h: the worker's locks and its lease, as the database holds them,
 * none of which a login without write rights on schema vcl can take or
 * hold (issue #12; sql/functions/locks.sql):
 *   - the lease of a job (vcl.reservation: id, lease_token, lease_expires_at),
 *     checked in the database right before a destructive step;
 *   - the per-(node, image revision) master copy lock, a row of
 *     vcl.image_lock owned by one lease of one reservation (not an advisory
 *     lock: those are PUBLIC, and a session lock dies with a reconnect).
 * (The node load cap is a row lock inside vcl.claim, sql/functions/queue.sql.) */
#ifndef VCL_LOCKS_H
#define VCL_LOCKS_H
#include <stdbool.h>
#include "base/error.h"
#include "queue/db.h"

/* Does reservation id still run under lease token, with its lease not yet
 * expired, by the database's clock? With cancelled true: was it cancelled
 * while running under that token, its old lease not yet over (blocks_until:
 * the cleanup of a cancelled load). *ours false when not; false + e only
 * when the question could not be asked. */
bool locks_lease_held(db_conn *db, long long id, long long token, bool cancelled, bool *ours,
                      vcl_error *e);

/* Who is asking for an image lock, for what (names for logs and errors). */
typedef struct locks_image {
    long long node_id, revision_id;   /* the lock's key */
    long long reservation_id, token;  /* the lease that holds it */
    const char *node, *file_stem;
} locks_image;

/* Take the copy lock, trying once a second for up to timeout_s (<= 0: 600)
 * while another live lease holds it. false + retryable e when the wait ran
 * out, when the job's own lease is gone, or on a database error. */
bool locks_image_take(db_conn *db, const locks_image *l, int timeout_s, vcl_error *e);
/* Right before acting on what the lock protects (renaming a copied master
 * into place): do we still hold it, under a live lease? false + retryable e
 * when not (another worker took it over) or when that cannot be known. */
bool locks_image_held(db_conn *db, const locks_image *l, vcl_error *e);
/* Release it if we hold it (a failure is logged: the row is taken over
 * once our lease is gone). */
void locks_image_release(db_conn *db, const locks_image *l);
#endif
