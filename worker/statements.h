/* statements.h: every SQL statement the worker sends, in one place.
 * Queue logic lives in SQL functions (sql/), called here by name. Every
 * write about a reservation is fenced on (id, lease_token, state='running'). */
#ifndef VCL_STATEMENTS_H
#define VCL_STATEMENTS_H

#define SQL_FENCE "r.id = $1 AND r.lease_token = $2 AND r.state = 'running'"

#define SQL_REGISTER_WORKER "SELECT vcl.register_worker($1, $2, $3::int, $4::int, $5)"
#define SQL_WORKER_STOPPED  "SELECT vcl.worker_stopped($1)"
#define SQL_CLAIM \
    "SELECT id, lease_token, operation FROM vcl.claim($1, $2::int, $3::int)"
#define SQL_HEARTBEAT \
    "SELECT vcl.heartbeat($1, $2::bigint[], $3::bigint[], $4::int)"
#define SQL_STAGE_START  "SELECT vcl.stage_start($1, $2, $3)"
#define SQL_STAGE_FINISH "SELECT vcl.stage_finish($1, $2, $3, $4::boolean, $5, true)"
#define SQL_COMPLETE     "SELECT vcl.complete($1::bigint[], $2::bigint[])"
#define SQL_FAIL         "SELECT vcl.fail($1, $2, $3, $4, $5::boolean, $6::double precision)"
#define SQL_RELEASE      "SELECT vcl.release($1::bigint[], $2::bigint[])"
#define SQL_PRUNE        "SELECT vcl.prune_history(make_interval(secs => $1::double precision), $2::int)"
#define SQL_LISTEN       "LISTEN vcl_reservation"
/* After a fenced-out job: was it cancelled while we held it? */
#define SQL_CANCELLED_BY_US \
    "SELECT 1 FROM vcl.reservation WHERE id = $1 AND lease_token = $2 AND state = 'cancelled'"
/* A cancelled load cleaned up its half-made domain: the computer is RELOAD. */
#define SQL_CANCEL_CLEANED \
    "UPDATE vcl.computer c SET domain_name = NULL, domain_uuid = NULL, cow_path = NULL," \
    "       master_path = NULL, xml_path = NULL, node_status = 'RELOAD', current_revision_id = NULL," \
    "       post_load_at = NULL, status_reason = $3, status_at = now()" \
    "  FROM vcl.reservation r WHERE r.id = $1 AND r.lease_token = $2 AND r.state = 'cancelled'" \
    "   AND c.id = r.computer_id"

#define SQL_JOB_LOAD \
    "SELECT r.attempts, r.max_attempts, r.operation, coalesce(r.stage, ''), r.domain_uuid::text," \
    "       r.domain_xml," \
    "       c.id, c.name, c.mac0, c.memory_mb, c.vcpus, coalesce(c.domain_name, '')," \
    "       coalesce(c.domain_uuid::text, ''), coalesce(c.cow_path, ''), coalesce(c.xml_path, '')," \
    "       n.id, n.name, n.libvirt_uri, n.transport, n.master_image_dir, n.cow_dir, n.xml_dir," \
    "       coalesce(n.network, ''), array_to_string(n.repository_paths, E'\\x1f')," \
    "       coalesce(i.id, 0), coalesce(ir.id, 0), coalesce(ir.revision, 0), coalesce(i.name, '')," \
    "       coalesce(i.os_type, 'none'), coalesce(ir.file_stem, '')," \
    "       coalesce(r.args->>'snapshot', ''), coalesce(r.args->>'description', '')," \
    "       coalesce(r.args->>'timeout', '')" \
    "  FROM vcl.reservation r" \
    "  JOIN vcl.computer c ON c.id = r.computer_id" \
    "  JOIN vcl.node n ON n.id = c.node_id" \
    "  LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id" \
    "  LEFT JOIN vcl.image i ON i.id = ir.image_id" \
    " WHERE r.id = $1"

#define SQL_STORE_XML \
    "UPDATE vcl.reservation r SET domain_xml = $3 WHERE " SQL_FENCE

#define SQL_RECORD_OWNERSHIP \
    "UPDATE vcl.computer c SET domain_name = $3, domain_uuid = $4::uuid, cow_path = $5," \
    "       master_path = $6, xml_path = $7, node_status = 'RELOAD', current_revision_id = NULL," \
    "       post_load_at = NULL, status_reason = $8, status_at = now()" \
    "  FROM vcl.reservation r WHERE " SQL_FENCE " AND c.id = r.computer_id"

#define SQL_CLEAR_OWNERSHIP \
    "UPDATE vcl.computer c SET domain_name = NULL, domain_uuid = NULL, cow_path = NULL," \
    "       master_path = NULL, xml_path = NULL, node_status = 'RELOAD', current_revision_id = NULL," \
    "       post_load_at = NULL, status_reason = $3, status_at = now()" \
    "  FROM vcl.reservation r WHERE " SQL_FENCE " AND c.id = r.computer_id"

#define SQL_MARK_POST_LOAD \
    "UPDATE vcl.computer c SET post_load_at = now()" \
    "  FROM vcl.reservation r WHERE " SQL_FENCE " AND c.id = r.computer_id"

#define SQL_WRITE_STATUS \
    "UPDATE vcl.computer c SET node_status = $3, status_reason = $4, status_at = now()," \
    "       current_revision_id = CASE WHEN $5::boolean THEN r.image_revision_id" \
    "                                  ELSE c.current_revision_id END" \
    "  FROM vcl.reservation r WHERE " SQL_FENCE " AND c.id = r.computer_id"

/* maintenance: the computer's state and the stage's own checkpoint in one
 * statement (so a rescue never repeats it after an operator put the
 * computer back); $3 stage name, $4 reason. */
#define SQL_SET_MAINTENANCE \
    "WITH r AS (UPDATE vcl.reservation r SET stage = $3 WHERE " SQL_FENCE \
    "           RETURNING r.computer_id)" \
    "UPDATE vcl.computer c SET state = 'maintenance', node_status = 'RELOAD', status_reason = $4," \
    "       status_at = now()" \
    "  FROM r WHERE c.id = r.computer_id"

/* node_status outside a job (vclctl status, the node_status check) */
#define SQL_STATUS_FACTS \
    "SELECT c.id, c.name, coalesce(c.domain_name, ''), coalesce(c.domain_uuid::text, '')," \
    "       coalesce(c.cow_path, ''), coalesce(c.master_path, ''), c.post_load_at IS NOT NULL," \
    "       n.name, n.libvirt_uri, n.transport," \
    "       coalesce(i.name || ':' || ir.revision, '')" \
    "  FROM vcl.computer c JOIN vcl.node n ON n.id = c.node_id" \
    "  LEFT JOIN vcl.image_revision ir ON ir.id = c.current_revision_id" \
    "  LEFT JOIN vcl.image i ON i.id = ir.image_id" \
    " WHERE c.name = $1"

#define SQL_IMAGE_LOCK   "SELECT pg_try_advisory_lock($1::int, $2::int)"
#define SQL_IMAGE_UNLOCK "SELECT pg_advisory_unlock($1::int, $2::int)"
#endif
