/* statements.h: every SQL statement the worker sends, in one place.
 * Queue logic lives in SQL functions (sql/), called here by name. Every
 * write about a reservation is fenced on (id, lease_token, state='running').
 * Included only under worker/queue/ (pool.c, job.c, job_db.c, migrate.c):
 * operations and node code reach rows through job.h and job_db.h. */
#ifndef VCL_STATEMENTS_H
#define VCL_STATEMENTS_H

/* r.state = 'running' inside the one expression vcl.running_token
 * (sql/functions/queue.sql): as a clause of its own it let the cached plan
 * walk a partial index of running rows instead of the primary key. */
#define SQL_FENCE "r.id = $1 AND vcl.running_token(r.state, r.lease_token) = $2"

#define SQL_REGISTER_WORKER "SELECT vcl.register_worker($1, $2, $3::int, $4::int, $5)"
#define SQL_WORKER_STOPPED  "SELECT vcl.worker_stopped($1)"
/* $4: look for expired leases this time (pool.c: at most once a second).
 * $5-$7: the resume point (priority, run_at in microseconds since the Unix
 * epoch, id), NULL to walk from the head; the rows' own come back as
 * columns 3-4 (run_at in the same integer form: exact, whatever DateStyle;
 * NULL for -infinity, which comes before any point). $8: look for loads
 * this time (pool.c: at most every 0.25 s while claims fill up). */
#define SQL_CLAIM \
    "SELECT id, lease_token, operation, priority," \
    "       CASE WHEN isfinite(run_at) THEN (extract(epoch FROM run_at) * 1000000)::bigint END" \
    "  FROM vcl.claim($1, $2::int, $3::int, $4::boolean, $5::int," \
    "                 timestamptz 'epoch' + $6::bigint * interval '1 microsecond', $7::bigint," \
    "                 $8::boolean)"
#define SQL_HEARTBEAT \
    "SELECT vcl.heartbeat($1, $2::bigint[], $3::bigint[], $4::int)"
#define SQL_STAGE_START  "SELECT vcl.stage_start($1, $2, $3)"
#define SQL_STAGE_FINISH "SELECT vcl.stage_finish($1, $2, $3, $4::boolean, $5, true)"
#define SQL_STAGE_NEXT   "SELECT vcl.stage_next($1, $2, $3, $4, $5)"
#define SQL_STAGE_PROGRESS "SELECT vcl.stage_progress($1, $2, $3)"
#define SQL_COMPLETE     "SELECT vcl.complete($1::bigint[], $2::bigint[])"
#define SQL_FAIL         "SELECT vcl.fail($1, $2, $3, $4, $5::boolean, $6::double precision)"
#define SQL_RELEASE      "SELECT vcl.release($1::bigint[], $2::bigint[])"
#define SQL_PRUNE        "SELECT vcl.prune_history(make_interval(secs => $1::double precision), $2::int)"
#define SQL_LISTEN       "LISTEN vcl_reservation"
/* Milliseconds until the next retry / lease expiry / cancel block falls due (NULL: none). */
#define SQL_NEXT_DUE     "SELECT ceil(vcl.next_due() * 1000)::bigint"
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
    "       coalesce(c.id, 0), coalesce(c.name, ''), coalesce(c.mac0, '')," \
    "       coalesce(c.memory_mb, 0), coalesce(c.vcpus, 0), coalesce(c.domain_name, '')," \
    "       coalesce(c.domain_uuid::text, ''), coalesce(c.cow_path, ''), coalesce(c.xml_path, '')," \
    "       n.id, n.name, n.libvirt_uri, n.transport, n.master_image_dir, n.cow_dir, n.xml_dir," \
    "       coalesce(n.network, ''), array_to_string(n.repository_paths, E'\\x1f')," \
    "       coalesce(i.id, 0), coalesce(ir.id, 0), coalesce(ir.revision, 0), coalesce(i.name, '')," \
    "       coalesce(i.os_type, 'none'), coalesce(ir.file_stem, '')," \
    "       coalesce(r.args->>'snapshot', ''), coalesce(r.args->>'description', '')," \
    "       coalesce(r.args->>'timeout', '')," \
    "       coalesce(n.ssh_host, ''), coalesce(n.ssh_port, 22), coalesce(n.ssh_user, '')," \
    "       n.repository_location, n.cpu_mode, coalesce(n.cpu_mode_resolved, '')" \
    "  FROM vcl.reservation r" \
    "  LEFT JOIN vcl.computer c ON c.id = r.computer_id" \
    "  JOIN vcl.node n ON n.id = coalesce(r.node_id, c.node_id)" \
    "  LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id" \
    "  LEFT JOIN vcl.image i ON i.id = ir.image_id" \
    " WHERE r.id = $1"

/* What auto resolved to on a node (the first probe wins; a concurrent probe
 * of the same node found the same facts). $4 true: forget a resolved mode
 * that then failed to start a real guest, so the next load probes again. */
#define SQL_NODE_CPU_PROBED \
    "UPDATE vcl.node SET cpu_mode_resolved = CASE WHEN $4 THEN NULL" \
    "                        ELSE coalesce(cpu_mode_resolved, nullif($2, '')) END," \
    "       cpu_probe = $3, cpu_probed_at = now()" \
    " WHERE id = $1 AND cpu_mode = 'auto'"

/* A node_check's findings on its node (vcl.node_check_record,
 * sql/functions/nodes.sql): $3-$6 the report's four columns, $7 the CPU probe
 * ran, $8 what auto resolves to, $9 the probe's report. */
#define SQL_NODE_CHECKED \
    "SELECT vcl.node_check_record(r.node_id, $3, $4, $5, $6, $7::boolean, $8, $9)" \
    "  FROM vcl.reservation r WHERE " SQL_FENCE

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

/* the domain watcher (watch.c) */
#define SQL_WATCH_NODES "SELECT id, name, libvirt_uri FROM vcl.node ORDER BY id"
#define SQL_LISTEN_NODES "LISTEN vcl_node"
#define SQL_WATCH_LOADED \
    "SELECT c.name, c.node_id, c.domain_uuid::text, coalesce(c.domain_name, '')" \
    "  FROM vcl.computer c" \
    " WHERE c.node_status IN ('READY', 'POST_LOAD') AND c.domain_uuid IS NOT NULL" \
    "   AND NOT EXISTS (SELECT 1 FROM vcl.reservation r" \
    "                    WHERE r.computer_id = c.id AND r.state = 'running')" \
    " ORDER BY c.node_id, c.id"
/* $1 node id, $2 domain uuid, $3 reason. Guarded: only a loaded computer
 * of that domain, with no reservation running (a running one owns the
 * computer and writes node_status itself). */
#define SQL_WATCH_MARK_RELOAD \
    "UPDATE vcl.computer c SET node_status = 'RELOAD', status_reason = $3, status_at = now()" \
    " WHERE c.node_id = $1::bigint AND c.domain_uuid = $2::uuid" \
    "   AND c.node_status IN ('READY', 'POST_LOAD')" \
    "   AND NOT EXISTS (SELECT 1 FROM vcl.reservation r" \
    "                    WHERE r.computer_id = c.id AND r.state = 'running')" \
    " RETURNING c.name"

/* node_status outside a job (vclctl status, the node_status check) */
#define SQL_STATUS_FACTS \
    "SELECT c.id, c.name, coalesce(c.domain_name, ''), coalesce(c.domain_uuid::text, '')," \
    "       coalesce(c.cow_path, ''), coalesce(c.master_path, ''), c.post_load_at IS NOT NULL," \
    "       n.name, n.libvirt_uri, n.transport," \
    "       coalesce(i.name || ':' || ir.revision, '')," \
    "       coalesce(n.ssh_host, ''), coalesce(n.ssh_port, 22), coalesce(n.ssh_user, '')" \
    "  FROM vcl.computer c JOIN vcl.node n ON n.id = c.node_id" \
    "  LEFT JOIN vcl.image_revision ir ON ir.id = c.current_revision_id" \
    "  LEFT JOIN vcl.image i ON i.id = ir.image_id" \
    " WHERE c.name = $1"

/* capture (job_db.c for op_capture.c; the target is recorded in vcl.capture, sql/001_baseline.sql).
 * $1 reservation id, $2 a fallback source revision (0 = none): the args,
 * the source revision and image, and the recorded target if any. */
#define SQL_CAPTURE_FACTS \
    "SELECT coalesce(r.args->>'after', ''), coalesce(r.args->>'file_stem', '')," \
    "       coalesce(r.args->>'shutdown_timeout', '')," \
    "       coalesce(src.id, 0), coalesce(i.id, 0), coalesce(i.name, '')," \
    "       ct.reservation_id IS NOT NULL, coalesce(ct.revision, 0), coalesce(ct.file_stem, '')," \
    "       coalesce(ct.image_revision_id, 0), coalesce(ct.reload_reservation_id, 0)" \
    "  FROM vcl.reservation r" \
    "  JOIN vcl.computer c ON c.id = r.computer_id" \
    "  LEFT JOIN vcl.capture ct ON ct.reservation_id = r.id" \
    "  LEFT JOIN vcl.image_revision src ON src.id = CASE WHEN ct.reservation_id IS NOT NULL" \
    "       THEN ct.source_revision_id ELSE coalesce(c.current_revision_id, nullif($2::bigint, 0)) END" \
    "  LEFT JOIN vcl.image i ON i.id = coalesce(ct.image_id, src.image_id)" \
    " WHERE r.id = $1"
/* $1 image id: the next revision, past every registered and reserved one */
#define SQL_CAPTURE_NEXT_REVISION \
    "SELECT greatest(coalesce((SELECT max(revision) FROM vcl.image_revision WHERE image_id = $1), 0)," \
    "                coalesce((SELECT max(revision) FROM vcl.capture WHERE image_id = $1), 0)) + 1"
/* $1 file stem: what uses it already (no row: free) */
#define SQL_CAPTURE_STEM_USED \
    "SELECT 'the file stem of ' || i.name || ':' || ir.revision FROM vcl.image_revision ir" \
    "  JOIN vcl.image i ON i.id = ir.image_id WHERE ir.file_stem = $1" \
    " UNION ALL" \
    " SELECT 'the target of capture reservation ' || ct.reservation_id FROM vcl.capture ct" \
    "  WHERE ct.file_stem = $1 LIMIT 1"
/* $3 image id, $4 revision, $5 file stem, $6 source revision (0 = NULL) */
#define SQL_CAPTURE_PLAN \
    "INSERT INTO vcl.capture (reservation_id, image_id, revision, file_stem, source_revision_id)" \
    "SELECT r.id, $3::bigint, $4::int, $5, nullif($6::bigint, 0) FROM vcl.reservation r" \
    " WHERE " SQL_FENCE
/* $3 size in bytes. Nothing when registered already (or fenced out). */
#define SQL_CAPTURE_REGISTER \
    "INSERT INTO vcl.image_revision (image_id, revision, file_stem, size_bytes, production)" \
    "SELECT ct.image_id, ct.revision, ct.file_stem, $3::bigint, false" \
    "  FROM vcl.reservation r JOIN vcl.capture ct ON ct.reservation_id = r.id" \
    " WHERE " SQL_FENCE " AND ct.image_revision_id IS NULL" \
    " ON CONFLICT DO NOTHING"
/* $1 reservation id: the revision row that is exactly the recorded target */
#define SQL_CAPTURE_REGISTERED \
    "SELECT ir.id FROM vcl.capture ct JOIN vcl.image_revision ir ON ir.image_id = ct.image_id" \
    "   AND ir.revision = ct.revision AND ir.file_stem = ct.file_stem" \
    " WHERE ct.reservation_id = $1"
/* $3 image revision id: recorded on the capture and the reservation */
#define SQL_CAPTURE_LINK \
    "WITH ct AS (UPDATE vcl.capture ct SET image_revision_id = $3::bigint FROM vcl.reservation r" \
    "             WHERE ct.reservation_id = r.id AND " SQL_FENCE " RETURNING ct.reservation_id)" \
    "UPDATE vcl.reservation r SET image_revision_id = $3::bigint FROM ct" \
    " WHERE r.id = ct.reservation_id"
/* Recorded temp files (sql/functions/tempfiles.sql): $1 node id, $2 path
 * (record, forget) or final path (stale, mine), $3 reservation id, $4 lease
 * token. record: true, false (another reservation's path), NULL (fenced out). */
#define SQL_TEMP_FILE_RECORD "SELECT vcl.temp_file_record($1, $2, $3, $4)"
#define SQL_TEMP_FILE_FORGET "SELECT vcl.temp_file_forget($1, $2, $3, $4)"
#define SQL_TEMP_FILE_STALE  "SELECT p FROM vcl.temp_file_stale($1, $2) AS p"
#define SQL_TEMP_FILE_MINE   "SELECT p FROM vcl.temp_file_mine($1, $2, $3) AS p LIMIT 1"

/* after=reload: queue the load of the new revision and record its id, in
 * one statement (so once); returns that id, nothing when fenced out. */
#define SQL_CAPTURE_QUEUE_RELOAD \
    "WITH f AS (SELECT r.id, r.computer_id, r.priority FROM vcl.reservation r WHERE " SQL_FENCE ")," \
    " ct AS (SELECT ct.reservation_id, ct.image_revision_id FROM vcl.capture ct JOIN f" \
    "          ON f.id = ct.reservation_id" \
    "        WHERE ct.image_revision_id IS NOT NULL AND ct.reload_reservation_id IS NULL)," \
    " ins AS (INSERT INTO vcl.reservation (computer_id, image_revision_id, operation, priority, args)" \
    "         SELECT f.computer_id, ct.image_revision_id, 'load', f.priority," \
    "                jsonb_build_object('after_capture', f.id)" \
    "           FROM f JOIN ct ON ct.reservation_id = f.id RETURNING id)" \
    "UPDATE vcl.capture x SET reload_reservation_id = ins.id FROM ins WHERE x.reservation_id = $1" \
    " RETURNING x.reload_reservation_id"
#endif
