/* sql.h: every fixed statement vclctl sends, named, in the order of the
 * commands (in the style of worker/statements.h). Values are always $n
 * parameters. The *_ROWS statements are a command's rows with every raw
 * column: --json prints them as they are (JSON_ARRAY), the table for people
 * selects and formats some of them (SQL_*_LIST ... FROM (*_ROWS) t).
 * INSERT and UPDATE of the options a user gave are built by query.h. */
#ifndef VCLCTL_SQL_H
#define VCLCTL_SQL_H

/* The JSON array of a query's rows, in its order. */
#define JSON_ARRAY(query) \
    "SELECT coalesce(json_agg(t), '[]'::json) FROM (" query ") t"

/* Id of a row by name ($1); no row: NULL. */
#define SQL_NODE_ID     "SELECT id FROM vcl.node WHERE name = $1"
#define SQL_IMAGE_ID    "SELECT id FROM vcl.image WHERE name = $1"
#define SQL_COMPUTER_ID "SELECT id FROM vcl.computer WHERE name = $1"

/* ---- migrate ---- */

/* $4 the migrations applied, $5 the live files, $6 "t"/"f" per live file
 * (changed since last applied): newline-separated lists. */
#define SQL_MIGRATE_JSON                                                                     \
    "SELECT json_build_object('applied', $1::int, 'version', $2::int, "                     \
    "'sql_dir', $3::text, "                                                                  \
    "'migrations', coalesce(string_to_array(nullif($4, ''), E'\\n'), '{}'), "               \
    "'live', (SELECT coalesce(json_agg(json_build_object('file', u.f, "                      \
    "'changed', u.c::boolean) ORDER BY u.o), '[]') "                                         \
    "FROM unnest(string_to_array(nullif($5, ''), E'\\n'), "                                 \
    "string_to_array(nullif($6, ''), E'\\n')) WITH ORDINALITY AS u(f, c, o)))"

/* ---- node ---- */

#define SQL_NODE_JSON "SELECT row_to_json(n) FROM vcl.node n WHERE n.id = $1"

#define SQL_NODE_ROWS                                                                      \
    "SELECT n.id, n.name, n.state, n.transport, n.libvirt_uri, n.ssh_host, n.ssh_port,"    \
    " n.ssh_user, n.master_image_dir, n.cow_dir, n.xml_dir, n.repository_paths,"           \
    " n.max_concurrent_loads, n.network, n.cpu_mode, n.cpu_mode_resolved, n.cpu_probe,"     \
    " n.cpu_probed_at, n.checked_at, n.check_ok,"                                          \
    " (SELECT count(*) FROM vcl.computer c WHERE c.node_id = n.id) AS computers"           \
    " FROM vcl.node n ORDER BY n.name"

#define SQL_NODE_LIST                                                                      \
    "SELECT name, state, transport, libvirt_uri AS uri,"                                   \
    " CASE WHEN transport = 'ssh' THEN concat(ssh_user || '@', ssh_host, ':' || ssh_port)" \
    " END AS ssh, max_concurrent_loads AS max_loads, network, computers,"                  \
    " CASE WHEN cpu_mode = 'auto' THEN 'auto: ' || coalesce(cpu_mode_resolved, 'not probed yet')" \
    " ELSE cpu_mode END AS cpu, cpu_probe,"                                                \
    " CASE WHEN check_ok THEN 'ok' WHEN NOT check_ok THEN 'FAIL' ELSE 'never' END"         \
    " || coalesce(to_char(checked_at, ' YYYY-MM-DD HH24:MI'), '') AS checked,"            \
    " master_image_dir AS master_dir, cow_dir, xml_dir,"                                   \
    " nullif(array_to_string(repository_paths, ','), '') AS repos"                         \
    " FROM (" SQL_NODE_ROWS ") t"

/* ---- image ---- */

#define SQL_IMAGE_JSON    "SELECT row_to_json(i) FROM vcl.image i WHERE i.id = $1"
#define SQL_REVISION_JSON "SELECT row_to_json(r) FROM vcl.image_revision r WHERE r.id = $1"

#define SQL_IMAGE_LIST_JSON                                                                \
    "SELECT coalesce(json_agg(json_build_object("                                          \
    " 'id', i.id, 'name', i.name, 'os_type', i.os_type,"                                   \
    " 'revisions', (SELECT coalesce(json_agg(r ORDER BY r.revision), '[]'::json)"          \
    "               FROM vcl.image_revision r WHERE r.image_id = i.id))"                   \
    " ORDER BY i.name), '[]'::json) FROM vcl.image i"

#define SQL_IMAGE_LIST                                                                     \
    "SELECT i.name AS image, i.os_type AS os, r.revision AS rev, r.file_stem,"             \
    " pg_size_pretty(r.size_bytes) AS size,"                                               \
    " CASE WHEN r.production THEN 'yes' WHEN r.id IS NOT NULL THEN 'no' END AS production," \
    " (SELECT string_agg(c.name, ',' ORDER BY c.name) FROM vcl.computer c"                 \
    "  WHERE c.current_revision_id = r.id) AS loaded_on"                                   \
    " FROM vcl.image i LEFT JOIN vcl.image_revision r ON r.image_id = i.id"                \
    " ORDER BY i.name, r.revision"

/* The revision IMAGE[:REV] means ($1 the image id, $2 REV or NULL). */
#define SQL_REVISION_OF_IMAGE                                                              \
    "SELECT id FROM vcl.image_revision WHERE image_id = $1"                                \
    " AND ($2::int IS NULL OR revision = $2::int)"                                         \
    " ORDER BY production DESC, revision DESC LIMIT 1"

#define SQL_REVISION_STEM "SELECT file_stem FROM vcl.image_revision WHERE id = $1"

/* image exists/size: the nodes to look on, with what image.c needs: $1
 * NULL = every node. */
#define SQL_IMAGE_NODES                                                                    \
    "SELECT n.name, n.transport, n.master_image_dir,"                                     \
    " array_to_string(n.repository_paths, E'\\x1f'), coalesce(n.ssh_host, ''),"           \
    " coalesce(n.ssh_port, 22), coalesce(n.ssh_user, ''), n.repository_location"          \
    " FROM vcl.node n WHERE $1::text IS NULL OR n.name = $1::text ORDER BY n.name"

/* Their answers: six \x1f-separated columns ($1..$6), one value per node. */
#define SQL_WHERE_ROWS                                                                     \
    "SELECT t.node, t.at, nullif(t.path, '') AS path, nullif(t.files, '')::int AS files,"  \
    " nullif(t.bytes, '')::bigint AS bytes, nullif(t.mb, '')::bigint AS mb"               \
    " FROM unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f'),"          \
    "             string_to_array($3, E'\\x1f'), string_to_array($4, E'\\x1f'),"          \
    "             string_to_array($5, E'\\x1f'), string_to_array($6, E'\\x1f'))"          \
    "      WITH ORDINALITY AS t(node, at, path, files, bytes, mb, ord) ORDER BY t.ord"

#define SQL_IMAGE_SIZE_LIST                                                                \
    "SELECT node, bytes, mb, at AS \"where\", files, path FROM (" SQL_WHERE_ROWS ") x"
#define SQL_IMAGE_EXISTS_LIST "SELECT node, at AS \"where\", path FROM (" SQL_WHERE_ROWS ") x"

/* ---- computer ---- */

#define SQL_COMPUTER_JSON "SELECT row_to_json(c) FROM vcl.computer c WHERE c.id = $1"

#define SQL_COMPUTER_ROWS                                                                   \
    "SELECT c.id, c.name, n.name AS node, c.state, c.node_status,"                          \
    " i.name || ':' || ir.revision AS loaded, c.mac0, c.memory_mb, c.vcpus,"               \
    " c.domain_name, c.domain_uuid, c.cow_path, c.master_path, c.xml_path, c.post_load_at," \
    " c.status_reason, c.status_at,"                                                        \
    " (SELECT r.operation || ' #' || r.id || ' ' || r.state FROM vcl.reservation r"         \
    "  WHERE r.computer_id = c.id AND r.state IN ('pending', 'running')"                    \
    "  ORDER BY r.id LIMIT 1) AS queued"                                                    \
    " FROM vcl.computer c JOIN vcl.node n ON n.id = c.node_id"                              \
    " LEFT JOIN vcl.image_revision ir ON ir.id = c.current_revision_id"                     \
    " LEFT JOIN vcl.image i ON i.id = ir.image_id"                                          \
    " ORDER BY c.name"

#define SQL_COMPUTER_LIST                                                                   \
    "SELECT name, node, node_status, loaded, state, queued, mac0 AS mac,"                   \
    " memory_mb, vcpus FROM (" SQL_COMPUTER_ROWS ") t"

/* ---- load, enqueue, capture ---- */

#define SQL_ID_JSON "SELECT json_build_object('id', $1::bigint)"

/* --at / --in: is $1 a time (an interval) PostgreSQL accepts? The value
 * back, as PostgreSQL reads it, for the note. */
#define SQL_CHECK_AT "SELECT $1::timestamptz::text"
#define SQL_CHECK_IN "SELECT (now() + $1::interval)::text"

/* The queued row holding dedup key $1: id, state, its revision (or NULL),
 * and whether that is revision $2 (a NULL $2 is "any"). */
#define SQL_DEDUP_HOLDER                                                                   \
    "SELECT r.id, r.state, coalesce(i.name || ':' || ir.revision, '-'),"                  \
    " ($2::bigint IS NULL OR r.image_revision_id IS NOT DISTINCT FROM $2::bigint)"         \
    " FROM vcl.reservation r"                                                              \
    " LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id"                      \
    " LEFT JOIN vcl.image i ON i.id = ir.image_id"                                         \
    " WHERE r.dedup_key = $1 AND r.state IN ('pending', 'running')"

/* The args object of a capture, made by PostgreSQL (absent options left out). */
#define SQL_CAPTURE_ARGS                                                                   \
    "SELECT jsonb_strip_nulls(jsonb_build_object('after', $1::text,"                       \
    " 'file_stem', $2::text, 'shutdown_timeout', $3::int))::text"

/* ---- list, show ---- */

/* $1 state or NULL, $2 computer name or NULL, $3 limit. */
#define SQL_RESERVATION_ROWS                                                               \
    "SELECT r.id, coalesce(c.name, (SELECT 'node:' || n.name FROM vcl.node n"              \
    "   WHERE n.id = r.node_id)) AS computer,"                                             \
    " r.operation, i.name || ':' || ir.revision AS image,"                                 \
    " r.state, r.stage, r.attempts, r.max_attempts, r.priority, r.run_at, r.finished_at,"  \
    " r.failed_stage, r.last_error, r.created_at,"                                         \
    " (SELECT s.stage FROM vcl.reservation_stage s WHERE s.reservation_id = r.id"          \
    "   AND s.lease_token = r.lease_token AND s.outcome = 'running'"                       \
    "   ORDER BY s.id DESC LIMIT 1) AS current_stage"                                      \
    " FROM vcl.reservation r LEFT JOIN vcl.computer c ON c.id = r.computer_id"             \
    " LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id"                      \
    " LEFT JOIN vcl.image i ON i.id = ir.image_id"                                         \
    " WHERE ($1::text IS NULL OR r.state = $1::text)"                                      \
    "   AND ($2::text IS NULL OR c.name = $2::text)"                                       \
    " ORDER BY r.id DESC LIMIT $3::int"

/* For people: "stage" is where the row is (running: the stage running now;
 * failed: the stage that failed; otherwise the checkpoint, the last finished
 * stage), "when" is run_at until the row has finished, then finished_at, and
 * the error of a row that ended done is history. */
#define SQL_RESERVATION_LIST                                                               \
    "SELECT id, computer, operation, image, state,"                                        \
    " CASE state WHEN 'running' THEN coalesce(current_stage, stage)"                       \
    "   WHEN 'failed' THEN coalesce(failed_stage, stage) ELSE stage END AS stage,"         \
    " attempts || '/' || max_attempts AS attempts,"                                        \
    " to_char(coalesce(finished_at, run_at), 'YYYY-MM-DD HH24:MI:SS') AS \"when\","        \
    " CASE WHEN state = 'done' THEN NULL"                                                  \
    "   WHEN length(last_error) > 60 THEN left(last_error, 57) || '...'"                   \
    "   ELSE last_error END AS error"                                                      \
    " FROM (" SQL_RESERVATION_ROWS ") t"

/* A reservation's stage log. A stage still marked 'running' is running only
 * while its reservation runs under the same lease; under an expired lease its
 * worker is dead or hung (the next claim rescues it); otherwise it was
 * interrupted and a later attempt resumed or will resume the job. */
#define SQL_STAGE_LOG                                                                      \
    "SELECT s.attempt, s.lease_token AS lease, s.stage,"                                   \
    " CASE WHEN s.outcome <> 'running' THEN s.outcome"                                     \
    "   WHEN r.state <> 'running' OR s.lease_token IS DISTINCT FROM r.lease_token"         \
    "   THEN 'interrupted'"                                                                \
    "   WHEN r.lease_expires_at < now() THEN 'lease-expired'"                              \
    "   ELSE 'running' END AS outcome,"                                                    \
    " to_char(s.started_at, 'YYYY-MM-DD HH24:MI:SS.MS') AS started_at,"                    \
    " round(coalesce(s.duration_ms, CASE WHEN s.outcome = 'running' AND r.state = 'running'" \
    "   THEN extract(epoch FROM clock_timestamp() - s.started_at) * 1000 END))::bigint"   \
    "   AS duration,"                                                                      \
    " s.detail"                                                                            \
    " FROM vcl.reservation_stage s JOIN vcl.reservation r ON r.id = s.reservation_id"      \
    " WHERE s.reservation_id = $1::bigint ORDER BY s.id"

#define SQL_RESERVATION_STATE "SELECT state FROM vcl.reservation WHERE id = $1::bigint"
#define SQL_RESERVATION_XML "SELECT domain_xml FROM vcl.reservation WHERE id = $1::bigint"

/* Reservation $1 with its computer, node, image revision and worker (show). */
#define SQL_RESERVATION_FROM                                                               \
    " FROM vcl.reservation r LEFT JOIN vcl.computer c ON c.id = r.computer_id"             \
    " JOIN vcl.node n ON n.id = coalesce(r.node_id, c.node_id)"                            \
    " LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id"                      \
    " LEFT JOIN vcl.image i ON i.id = ir.image_id"                                         \
    " LEFT JOIN vcl.worker w ON w.id = r.worker_id"                                        \
    " WHERE r.id = $1::bigint"

/* The reservation row for people: names joined in front of r.*. */
#define SQL_RESERVATION_DETAIL                                                             \
    "SELECT r.id, c.name AS computer, n.name AS node,"                                     \
    " i.name || ':' || ir.revision AS image, w.name AS worker, r.*"                        \
    SQL_RESERVATION_FROM

#define SQL_RESERVATION_JSON                                                               \
    "SELECT json_build_object('reservation', to_jsonb(r) || jsonb_build_object("           \
    "   'computer', c.name, 'node', n.name, 'worker', w.name,"                             \
    "   'image', i.name || ':' || ir.revision),"                                           \
    " 'stages', (SELECT coalesce(json_agg(s ORDER BY s.id), '[]'::json)"                   \
    "            FROM vcl.reservation_stage s WHERE s.reservation_id = r.id))"             \
    SQL_RESERVATION_FROM

/* ---- retry, cancel ---- */

#define SQL_ID_STATE_JSON "SELECT json_build_object('id', $1::bigint, 'state', $2::text)"

/* retry --failed: the failed rows to queue again. $1 node id, $2
 * operation, $3 --since interval (each NULL: any). One row per dedup key
 * (the newest), and none whose key a queued row holds: its retry would be
 * a unique violation (the count of those is SQL_RETRY_FAILED_HELD). */
#define SQL_RETRY_FAILED_SET                                                              \
    "SELECT r.id, r.dedup_key FROM vcl.reservation r"                                     \
    " LEFT JOIN vcl.computer co ON co.id = r.computer_id"                                  \
    " WHERE r.state = 'failed'"                                                            \
    " AND ($1::bigint IS NULL OR coalesce(r.node_id, co.node_id) = $1::bigint)"            \
    " AND ($2::text IS NULL OR r.operation = $2::text)"                                    \
    " AND ($3::interval IS NULL OR r.finished_at >= now() - $3::interval)"
#define SQL_RETRY_FAILED_PICK                                                              \
    "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM ("                              \
    " SELECT DISTINCT ON (coalesce(f.dedup_key, f.id::text)) f.id FROM ("                  \
    SQL_RETRY_FAILED_SET ") f"                                                         \
    " WHERE f.dedup_key IS NULL OR NOT EXISTS (SELECT 1 FROM vcl.reservation q"            \
    "  WHERE q.dedup_key = f.dedup_key AND q.state IN ('pending', 'running'))"             \
    " ORDER BY coalesce(f.dedup_key, f.id::text), f.id DESC) p"
#define SQL_RETRY_FAILED_HELD                                                              \
    "SELECT count(*) FROM (" SQL_RETRY_FAILED_SET ") f"                                \
    " WHERE NOT (f.id = ANY($4::bigint[]))"
/* The plain UPDATE of each picked row ($1 their ids, $2 --from-start); a
 * row that stopped being failed meanwhile is left alone. */
#define SQL_RETRY_IDS                                                                      \
    "WITH u AS (UPDATE vcl.reservation r SET state = 'pending',"                           \
    " stage = CASE WHEN $2::boolean THEN NULL ELSE r.stage END"                            \
    " WHERE r.id = ANY($1::bigint[]) AND r.state = 'failed' RETURNING r.id)"               \
    " SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM u"
/* What retry --failed prints: the rows $1, as they were when they failed. */
#define SQL_RETRY_FAILED_ROWS                                                              \
    "SELECT r.id, co.name AS computer, n.name AS node, r.operation, r.state,"              \
    " r.failed_stage, r.finished_at, r.attempts, r.last_error AS error"                    \
    " FROM vcl.reservation r"                                                              \
    " LEFT JOIN vcl.computer co ON co.id = r.computer_id"                                  \
    " LEFT JOIN vcl.node n ON n.id = coalesce(r.node_id, co.node_id)"                      \
    " WHERE r.id = ANY($1::bigint[]) ORDER BY r.id"
#define SQL_RETRY_FAILED_LIST                                                              \
    "SELECT id, computer, node, operation, state, failed_stage AS stage,"                       \
    " to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS') AS failed_at, left(error, 60) AS error"  \
    " FROM (" SQL_RETRY_FAILED_ROWS ") t"
#define SQL_RETRY_FAILED_JSON                                                              \
    "SELECT json_build_object('dry_run', $2::boolean, 'count', cardinality($1::bigint[]),"  \
    " 'skipped_queued_key', $3::bigint,"                                                   \
    " 'reservations', (SELECT coalesce(json_agg(t), '[]'::json) FROM ("                    \
    SQL_RETRY_FAILED_ROWS ") t))"

/* The same plain UPDATE a DBA would type; the schema's trigger resets
 * attempts and run_at and wakes the workers. The state condition makes the
 * check and the change one statement; the CTE reads the old state under the
 * row lock. $2: --from-start (clear the checkpoint). */
#define SQL_RETRY                                                                          \
    "WITH old AS (SELECT id, state FROM vcl.reservation"                                   \
    "             WHERE id = $1::bigint FOR UPDATE)"                                       \
    " UPDATE vcl.reservation r SET state = 'pending',"                                     \
    " stage = CASE WHEN $2::boolean THEN NULL ELSE r.stage END"                            \
    " FROM old WHERE r.id = old.id"                                                        \
    " AND old.state IN ('failed', 'cancelled', 'done')"                                    \
    " RETURNING r.state, r.stage, old.state"

#define SQL_CANCEL "SELECT vcl.cancel($1::bigint)"

/* ---- workers ---- */

/* $1: also workers stopped (or silent) for more than a day. */
#define SQL_WORKER_ROWS                                                                    \
    "SELECT w.id, w.name, w.host, w.pid, w.slots, w.version, w.started_at,"                \
    " w.heartbeat_at, w.stopped_at,"                                                       \
    " extract(epoch FROM now() - w.heartbeat_at)::bigint AS heartbeat_age_s,"              \
    " (SELECT count(*) FROM vcl.reservation r"                                             \
    "  WHERE r.worker_id = w.id AND r.state = 'running') AS running"                       \
    " FROM vcl.worker w"                                                                   \
    " WHERE $1::boolean OR coalesce(w.stopped_at, w.heartbeat_at) > now() - interval '1 day'" \
    " ORDER BY w.stopped_at IS NOT NULL, w.name, w.started_at DESC"

#define SQL_WORKER_LIST                                                                    \
    "SELECT name, host, pid, slots, running, version,"                                     \
    " to_char(started_at, 'YYYY-MM-DD HH24:MI:SS') AS started,"                            \
    " heartbeat_age_s AS heartbeat,"                                                       \
    " CASE WHEN stopped_at IS NOT NULL THEN 'stopped '"                                    \
    "   || to_char(stopped_at, 'YYYY-MM-DD HH24:MI:SS')"                                   \
    "   WHEN heartbeat_age_s > 60 THEN 'silent' ELSE 'running' END AS status"              \
    " FROM (" SQL_WORKER_ROWS ") t"

/* ---- status ---- */

#define SQL_STATUS_JSON                                                                    \
    "SELECT json_build_object('computer', $1::text, 'status', $2::text,"                   \
    " 'reason', $3::text, 'node', nullif($4::text, ''),"                                   \
    " 'domain', nullif($5::text, ''), 'state', nullif($6::text, ''),"                      \
    " 'revision', nullif($7::text, ''))"

/* ---- power, snapshot, delete, maintenance, domains ---- */

/* The args object of an operation (absent ones left out). */
#define SQL_OP_ARGS                                                                        \
    "SELECT jsonb_strip_nulls(jsonb_build_object('snapshot', $1::text,"                    \
    " 'description', $2::text, 'timeout', $3::int))::text"

/* A computer's recorded domain and its node's libvirt. */
#define SQL_COMPUTER_DOMAIN                                                                \
    "SELECT coalesce(c.domain_uuid::text, ''), coalesce(c.domain_name, ''),"               \
    " n.name, n.libvirt_uri FROM vcl.computer c"                                           \
    " JOIN vcl.node n ON n.id = c.node_id WHERE c.name = $1"

#define SQL_POWER_JSON                                                                     \
    "SELECT json_build_object('computer', $1::text, 'power', $2::text,"                    \
    " 'domain', nullif($3::text, ''), 'state', $4::text, 'node', $5::text)"

/* --wait: the reservation's state and its computer's, polled until it ends;
 * then its outcome (JSON, or the line for people and its stage details). */
#define SQL_WAIT_STATE                                                                     \
    "SELECT r.state, c.state FROM vcl.reservation r"                                       \
    " LEFT JOIN vcl.computer c ON c.id = r.computer_id WHERE r.id = $1::bigint"

#define SQL_WAIT_JSON                                                                      \
    "SELECT json_build_object('id', r.id, 'state', r.state, 'stage', r.stage,"             \
    " 'failed_stage', r.failed_stage, 'error', CASE WHEN r.state <> 'done'"                \
    " THEN r.last_error END, 'attempts', r.attempts, 'stages',"                            \
    " (SELECT coalesce(json_agg(json_build_object('stage', s.stage, 'outcome', s.outcome," \
    "  'detail', s.detail) ORDER BY s.id), '[]'::json) FROM vcl.reservation_stage s"       \
    "  WHERE s.reservation_id = r.id AND s.lease_token = r.lease_token))"                  \
    " FROM vcl.reservation r WHERE r.id = $1::bigint"

#define SQL_WAIT_OUTCOME                                                                   \
    "SELECT r.state, coalesce(r.failed_stage, ''), coalesce(r.last_error, ''),"            \
    " r.attempts, r.max_attempts FROM vcl.reservation r"                                   \
    " WHERE r.id = $1::bigint"

/* What each stage of the final run found and did. */
#define SQL_WAIT_STAGES                                                                    \
    "SELECT s.stage, coalesce(s.detail, '') FROM vcl.reservation_stage s"                  \
    " JOIN vcl.reservation r ON r.id = s.reservation_id"                                   \
    " WHERE s.reservation_id = $1::bigint AND s.lease_token = r.lease_token"               \
    " ORDER BY s.id"

/* snapshot list: the snapshots libvirt gave (vrows: the values of t). */
#define SQL_SNAPSHOTS_COLS "name, created, state, cur, description"
#define SQL_SNAPSHOTS_JSON                                                                 \
    "SELECT t.name, to_timestamp(t.created::bigint) AS created, t.state,"                  \
    " t.cur::boolean AS current, t.description"
#define SQL_SNAPSHOTS_LIST                                                                 \
    "SELECT t.name, to_char(to_timestamp(t.created::bigint),"                              \
    " 'YYYY-MM-DD HH24:MI:SS') AS created, t.state,"                                       \
    " CASE WHEN t.cur::boolean THEN '*' ELSE '' END AS current,"                           \
    " t.description"
#define SQL_SNAPSHOTS_TAIL "ORDER BY t.created::bigint NULLS FIRST, t.name"

/* domains: the domains libvirt gave (vrows: the values of t), with the
 * computer of the node ($1) that owns each. note: the domain the owner
 * records now; a leftover an old load left (the next load of that computer
 * removes it); a stranger. */
#define SQL_DOMAINS_NODE "SELECT id, libvirt_uri FROM vcl.node WHERE name = $1"
#define SQL_DOMAINS_COLS "domain, uuid, state, owner"
#define SQL_DOMAINS_JSON                                                                   \
    "SELECT t.domain, t.uuid, t.state, t.owner, c.name AS computer,"                       \
    " CASE WHEN c.id IS NULL THEN 'stranger'"                                              \
    " WHEN c.domain_uuid::text = t.uuid THEN 'current' ELSE 'leftover' END AS note"
#define SQL_DOMAINS_LIST                                                                   \
    "SELECT t.domain, t.state, coalesce(c.name, t.owner) AS owner,"                        \
    " CASE WHEN c.id IS NULL THEN 'stranger'"                                              \
    " WHEN c.domain_uuid::text = t.uuid THEN '' ELSE 'leftover' END AS note"
#define SQL_DOMAINS_TAIL                                                                   \
    "LEFT JOIN LATERAL (SELECT c.id, c.name, c.domain_uuid FROM vcl.computer c"            \
    " WHERE c.node_id = $1::bigint AND (c.domain_uuid::text = t.uuid OR c.name = t.owner)" \
    " ORDER BY c.domain_uuid::text = t.uuid DESC LIMIT 1) c ON true ORDER BY t.domain"

/* ---- node check ---- */

#define SQL_NODE_CHECK_NODE                                                                \
    "SELECT id, libvirt_uri, transport, coalesce(ssh_host, ''), coalesce(ssh_port, 22),"   \
    " coalesce(ssh_user, ''), master_image_dir, cow_dir, xml_dir, cpu_mode"                \
    " FROM vcl.node WHERE name = $1"

/* Record the check on the node row: $2-$5 the report's four columns,
 * $6 the CPU probe ran, $7 what auto resolves to, $8 the probe's report. */
#define SQL_NODE_CHECK_RECORD                                                              \
    "SELECT vcl.node_check_record($1::bigint, $2, $3, $4, $5, $6::boolean, $7, $8)"

/* Queue a node_check reservation for the node named $1. */
#define SQL_NODE_CHECK_QUEUE                                                               \
    "INSERT INTO vcl.reservation (node_id, operation)"                                     \
    " SELECT id, 'node_check' FROM vcl.node WHERE name = $1 RETURNING id"

/* ---- image stage ---- */

/* Queue a stage_image of revision $1 on node $2 (NULL: every node), one row
 * per node, with dedup_key 'stage_image:<node id>:<revision id>' (a node
 * where one is pending or running is skipped: ON CONFLICT DO NOTHING). One
 * line per node: name, the id (new or the one already queued), whether this
 * statement queued it. */
#define SQL_IMAGE_STAGE_QUEUE                                                              \
    "WITH ins AS (INSERT INTO vcl.reservation (node_id, image_revision_id, operation, dedup_key)" \
    "  SELECT n.id, $1::bigint, 'stage_image', format('stage_image:%s:%s', n.id, $1::bigint)" \
    "    FROM vcl.node n WHERE $2::text IS NULL OR n.name = $2::text ORDER BY n.id"          \
    "  ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('pending', 'running')" \
    "  DO NOTHING RETURNING id, node_id)"                                                  \
    " SELECT n.name, coalesce(ins.id, q.id), ins.id IS NOT NULL"                           \
    "   FROM vcl.node n LEFT JOIN ins ON ins.node_id = n.id"                               \
    "   LEFT JOIN vcl.reservation q ON q.dedup_key = format('stage_image:%s:%s', n.id, $1::bigint)" \
    "        AND q.state IN ('pending', 'running')"                                        \
    "  WHERE $2::text IS NULL OR n.name = $2::text ORDER BY n.name"

/* The stage_image rows $1 (a bigint[] literal) as JSON: [{"node", "id", "state"}]. */
#define SQL_IMAGE_STAGE_JSON                                                               \
    "SELECT coalesce(json_agg(json_build_object('node', n.name, 'id', r.id, 'state', r.state)" \
    "       ORDER BY n.name), '[]') FROM vcl.reservation r JOIN vcl.node n ON n.id = r.node_id" \
    " WHERE r.id = ANY ($1::bigint[])"

/* What the last node check found, after a queued one finished. */
#define SQL_NODE_CHECK_STORED                                                              \
    "SELECT t.item, t.ok, t.detail, t.fix"                                                 \
    " FROM vcl.node n, ROWS FROM (jsonb_to_recordset(n.check_report)"                     \
    "      AS (item text, ok boolean, detail text, fix text)) WITH ORDINALITY AS t(item, ok, detail, fix, ord)" \
    " WHERE n.name = $1 ORDER BY t.ord"

/* The items of the check: four \x1f-separated columns ($1..$4). */
#define SQL_NODE_CHECK_ROWS                                                                \
    "SELECT t.item, t.ok::boolean AS ok, t.detail, nullif(t.fix, '') AS fix"              \
    " FROM unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f'),"          \
    "             string_to_array($3, E'\\x1f'), string_to_array($4, E'\\x1f'))"          \
    "      WITH ORDINALITY AS t(item, ok, detail, fix, ord) ORDER BY t.ord"

/* ---- show --follow ---- */

#define SQL_FOLLOW_RESERVATION                                                             \
    "SELECT r.state, r.operation, coalesce(r.stage, ''), coalesce(r.lease_token, 0),"      \
    " coalesce(r.last_error, ''), coalesce(r.failed_stage, ''), c.name, n.name,"           \
    " coalesce(w.name, ''), r.attempts, r.max_attempts,"                                   \
    " extract(epoch FROM clock_timestamp()), extract(epoch FROM r.run_at),"                \
    " extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at)"       \
    " FROM vcl.reservation r LEFT JOIN vcl.computer c ON c.id = r.computer_id"             \
    " JOIN vcl.node n ON n.id = coalesce(r.node_id, c.node_id)"                            \
    " LEFT JOIN vcl.worker w ON w.id = r.worker_id"                                        \
    " WHERE r.id = $1::bigint"

#define SQL_FOLLOW_STAGES                                                                  \
    "SELECT s.id, s.stage, s.outcome, coalesce(s.lease_token, 0),"                         \
    " extract(epoch FROM s.started_at),"                                                   \
    " coalesce(s.duration_ms, extract(epoch FROM clock_timestamp() - s.started_at) * 1000)," \
    " coalesce(s.detail, '')"                                                              \
    " FROM vcl.reservation_stage s WHERE s.reservation_id = $1::bigint ORDER BY s.id"

/* $2: the operation's stages, as a text[] literal of names. */
#define SQL_FOLLOW_ESTIMATES                                                               \
    "SELECT ord, estimate_ms, source FROM vcl.reservation_estimates($1::bigint,"           \
    " $2::text[])"

/* ---- top ---- */

#define SQL_TOP_SUMMARY                                                                    \
    "SELECT to_char(now(), 'YYYY-MM-DD HH24:MI:SS'),"                                      \
    " (SELECT count(*) FROM vcl.workers),"                                                 \
    " count(*) FILTER (WHERE state = 'pending'),"                                          \
    " count(*) FILTER (WHERE state = 'pending' AND run_at <= now()),"                      \
    " count(*) FILTER (WHERE state = 'running'),"                                          \
    " (SELECT count(*) FROM vcl.reservation f WHERE f.state = 'failed'"                    \
    "    AND f.finished_at >= now() - interval '1 hour'),"                                 \
    " coalesce(round(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending')))," \
    "   0)::bigint"                                                                        \
    " FROM vcl.reservation WHERE state IN ('pending', 'running')"

#define SQL_TOP_WORKERS                                                                    \
    "SELECT w.name, w.host, w.pid, w.slots, w.running AS jobs,"                            \
    " extract(epoch FROM w.since_heartbeat)::bigint AS heartbeat,"                         \
    " CASE WHEN w.since_heartbeat > interval '60 seconds' THEN 'silent' ELSE 'running' END" \
    "   AS status"                                                                         \
    " FROM vcl.workers w ORDER BY w.name, w.id"

#define SQL_TOP_QUEUE                                                                      \
    "SELECT r.operation, n.name AS node,"                                                  \
    " count(*) FILTER (WHERE r.state = 'pending') AS pending,"                             \
    " count(*) FILTER (WHERE r.state = 'pending' AND r.run_at <= now()) AS due,"           \
    " count(*) FILTER (WHERE r.state = 'running') AS running,"                             \
    " round(extract(epoch FROM now() - min(r.created_at) FILTER (WHERE r.state = 'pending')))" \
    "   ::bigint AS oldest_pending"                                                        \
    " FROM vcl.reservation r LEFT JOIN vcl.computer c ON c.id = r.computer_id"             \
    " JOIN vcl.node n ON n.id = coalesce(r.node_id, c.node_id)"                            \
    " WHERE r.state IN ('pending', 'running')"                                             \
    " GROUP BY r.operation, n.name ORDER BY r.operation, n.name"

#define SQL_TOP_RUNNING                                                                    \
    "SELECT j.id, j.operation, j.computer, j.node, j.worker,"                              \
    " coalesce(j.current_stage, '(between stages)') AS stage,"                             \
    " round(extract(epoch FROM now() - j.current_stage_started_at), 1) AS stage_age,"      \
    " round(extract(epoch FROM j.age), 1) AS age,"                                         \
    " CASE WHEN j.lease_expired THEN 'lease expired' ELSE"                                 \
    "  (SELECT left(s.detail, 120) FROM vcl.reservation_stage s"                           \
    "    WHERE s.reservation_id = j.id AND s.lease_token = j.lease_token"                  \
    "      AND s.outcome = 'running' ORDER BY s.id DESC LIMIT 1) END AS detail"            \
    " FROM vcl.running_jobs j"

#define SQL_TOP_FAILED                                                                     \
    "SELECT f.id, f.operation, f.computer, f.node, f.failed_stage AS stage,"               \
    " to_char(f.finished_at, 'HH24:MI:SS') AS at, left(f.last_error, 80) AS error"         \
    " FROM vcl.failures f WHERE f.finished_at >= now() - interval '1 hour' LIMIT 5"

#endif
