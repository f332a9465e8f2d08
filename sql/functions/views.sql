-- functions/views.sql: the read-only views for DBAs and operators (vclctl
-- reads them too), and vcl.claimable, the one definition of "a worker may
-- claim this row now". Each is a plain view over the tables: no state of its
-- own.
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`, after the
-- numbered migrations, in the same transaction. CREATE OR REPLACE VIEW can
-- only append columns, so every view is dropped and created again (no
-- CASCADE: an object that depends on a view, such as a DBA's own view over
-- vcl.failures or a SQL-standard function body reading one, makes the drop
-- fail loudly instead of vanishing; functions that read views are PL/pgSQL,
-- which records no such dependency). Their privileges are granted again by
-- grants.sql. A numbered migration that changes a column a view reads drops
-- that view first (DROP VIEW IF EXISTS vcl.x); this file makes it again.

DROP VIEW IF EXISTS vcl.metrics;
DROP VIEW IF EXISTS vcl.queue_summary;
DROP VIEW IF EXISTS vcl.failures;
DROP VIEW IF EXISTS vcl.running_jobs;
DROP VIEW IF EXISTS vcl.stage_timing;
DROP VIEW IF EXISTS vcl.workers;
DROP VIEW IF EXISTS vcl.claimable;

CREATE VIEW vcl.queue_summary AS
SELECT r.operation,
       r.state,
       count(*)                                                       AS reservations,
       min(r.created_at)                                              AS oldest_created_at,
       min(r.run_at) FILTER (WHERE r.state = 'pending')               AS oldest_pending_run_at,
       count(*) FILTER (WHERE r.state = 'pending' AND r.run_at <= now()) AS due_now,
       count(*) FILTER (WHERE r.state = 'running' AND r.lease_expires_at < now()) AS lease_expired,
       count(*) FILTER (WHERE r.state IN ('done', 'failed', 'cancelled')
                          AND r.finished_at >= now() - interval '1 hour') AS finished_last_hour
  FROM vcl.reservation r
 GROUP BY r.operation, r.state
 ORDER BY r.operation, r.state;
COMMENT ON VIEW vcl.queue_summary IS
    'Per operation and state: how many reservations, the oldest created_at, the oldest run_at of pending rows '
    '(and how many are due now), running rows whose lease expired (awaiting rescue), and rows that finished '
    '(done/failed/cancelled) in the last hour.';

CREATE VIEW vcl.failures AS
SELECT r.id,
       c.name          AS computer,
       n.name          AS node,
       i.name          AS image,
       ir.revision     AS revision,
       r.operation,
       r.failed_stage,
       r.last_error,
       r.attempts,
       r.max_attempts,
       r.created_at,
       r.finished_at
  FROM vcl.reservation r
  LEFT JOIN vcl.computer c ON c.id = r.computer_id
  JOIN vcl.node n ON n.id = coalesce(r.node_id, c.node_id)
  LEFT JOIN vcl.image_revision ir ON ir.id = r.image_revision_id
  LEFT JOIN vcl.image i ON i.id = ir.image_id
 WHERE r.state = 'failed'
 ORDER BY r.finished_at DESC, r.id DESC;
COMMENT ON VIEW vcl.failures IS
    'Failed reservations, newest first: which computer, node, image and revision, the stage that failed and the error. '
    'Retry one with UPDATE vcl.reservation SET state = ''pending'' WHERE id = ... (add stage = NULL to rerun every stage).';

CREATE VIEW vcl.running_jobs AS
SELECT r.id,
       c.name                         AS computer,
       n.name                         AS node,
       r.operation,
       r.stage                        AS checkpoint,
       cur.stage                      AS current_stage,
       cur.started_at                 AS current_stage_started_at,
       w.name                         AS worker,
       w.host                         AS worker_host,
       r.attempts,
       r.lease_token,
       r.lease_expires_at,
       r.lease_expires_at < now()     AS lease_expired,
       now() - r.started_at           AS age
  FROM vcl.reservation r
  LEFT JOIN vcl.computer c ON c.id = r.computer_id
  JOIN vcl.node n ON n.id = coalesce(r.node_id, c.node_id)
  LEFT JOIN vcl.worker w ON w.id = r.worker_id
  LEFT JOIN LATERAL (SELECT s.stage, s.started_at
                       FROM vcl.reservation_stage s
                      WHERE s.reservation_id = r.id
                        AND s.lease_token = r.lease_token
                        AND s.outcome = 'running'
                      ORDER BY s.id DESC
                      LIMIT 1) cur ON true
 WHERE r.state = 'running'
 ORDER BY r.started_at, r.id;
COMMENT ON VIEW vcl.running_jobs IS
    'Running reservations: computer, node, operation, checkpoint (last finished stage), the stage running now '
    '(from the stage log), worker, lease expiry and age since first claim. lease_expired rows await rescue by the next claim.';

CREATE VIEW vcl.stage_timing AS
SELECT n.name                                                          AS node,
       r.operation,
       s.stage,
       count(*)                                                        AS runs,
       percentile_cont(0.5)  WITHIN GROUP (ORDER BY s.duration_ms)     AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.duration_ms)     AS p95_ms,
       max(s.duration_ms)                                              AS max_ms
  FROM vcl.reservation_stage s
  JOIN vcl.reservation r ON r.id = s.reservation_id
  LEFT JOIN vcl.computer c ON c.id = r.computer_id
  JOIN vcl.node n ON n.id = coalesce(r.node_id, c.node_id)
 WHERE s.outcome = 'ok'
 GROUP BY n.name, r.operation, s.stage
 ORDER BY n.name, r.operation, s.stage;
COMMENT ON VIEW vcl.stage_timing IS
    'Per node, operation and stage: how many successful runs, median, 95th percentile and max duration in ms '
    '(over the history still kept).';

CREATE VIEW vcl.workers AS
SELECT w.id,
       w.name,
       w.host,
       w.pid,
       w.slots,
       w.version,
       w.started_at,
       w.heartbeat_at,
       w.stopped_at,
       now() - w.heartbeat_at AS since_heartbeat,
       (SELECT count(*) FROM vcl.reservation r
         WHERE r.worker_id = w.id AND r.state = 'running') AS running
  FROM vcl.worker w
 WHERE w.stopped_at IS NULL
 ORDER BY w.id;
COMMENT ON VIEW vcl.workers IS
    'Workers not known to have stopped: last heartbeat, time since, and how many reservations they hold. '
    'A large since_heartbeat means a crashed or hung worker (its leases expire and are taken over).';

-- vcl.claimable: vcl.claim's load pass and its claim both read it; DBAs can
-- too: SELECT id, operation FROM vcl.claimable;
-- A computer in maintenance blocks every claim of its rows, rescues included
-- (an operator's "hands off"), except the rescue of a maintenance operation:
-- that one set the state itself, and a worker killed just after would
-- otherwise leave the row running until an operator made the computer
-- available again.
CREATE VIEW vcl.claimable WITH (security_invoker = true) AS
SELECT r.*
  FROM vcl.reservation r
 WHERE r.state IN ('pending', 'running')
   AND (
        -- pending: due, the computer's earliest unfinished row (no earlier
        -- pending row, no running row), so one at a time per computer
        (r.state = 'pending'
         AND r.run_at <= now()
         AND NOT EXISTS (SELECT 1 FROM vcl.reservation e
                          WHERE e.computer_id = r.computer_id AND e.id < r.id
                            AND e.state = 'pending')
         -- OFFSET 0: a probe of reservation_one_running_per_computer per
         -- candidate row. Without it the planner may hash this NOT EXISTS
         -- (it sits inside an OR) and read every running row on every
         -- claim: the claim then grew with the running jobs (issue #13
         -- item 6; tests/bench/scale --phases running).
         AND NOT EXISTS (SELECT 1 FROM vcl.reservation o
                          WHERE o.computer_id = r.computer_id AND o.state = 'running'
                         OFFSET 0)
         -- a node row (node_check, stage_image: no computer): the same, per node
         AND (r.node_id IS NULL
              OR NOT EXISTS (SELECT 1 FROM vcl.reservation e
                              WHERE e.node_id = r.node_id AND e.node_id IS NOT NULL
                                AND e.state IN ('pending', 'running')
                                AND (e.state = 'running' OR e.id < r.id))))
        -- running: its lease expired with attempts left (rescue of a dead
        -- worker's job; it goes on even if a DBA reset an older row meanwhile)
        OR (r.state = 'running'
            AND r.lease_expires_at < now()
            AND r.attempts < r.max_attempts))
   -- the computer is not in maintenance, unless this is the rescue of the
   -- maintenance operation that put it there
   AND (NOT EXISTS (SELECT 1 FROM vcl.computer c
                     WHERE c.id = r.computer_id AND c.state = 'maintenance')
        OR (r.state = 'running' AND r.operation = 'maintenance'))
   -- not blocked by a row cancelled while running
   AND NOT EXISTS (SELECT 1 FROM vcl.reservation x
                    WHERE x.computer_id = r.computer_id
                      AND x.blocks_until IS NOT NULL AND x.blocks_until >= now());
COMMENT ON VIEW vcl.claimable IS
    'Reservations a worker may claim now, before the per-node load cap: due pending rows that are their '
    'computer''s (a node_check or stage_image: their node''s) earliest unfinished row (nothing running on it), and running rows whose lease expired with '
    'attempts left; none of a computer in maintenance except the rescue of a maintenance operation. '
    'vcl.claim reads this view; so can a DBA.';

-- vcl.metrics: the queue-wide gauges for Prometheus, from one place. A
-- worker exports only its own counters (GET /metrics); what is about the
-- whole queue is read here by one PostgreSQL exporter
-- (config/prometheus/postgres_exporter.yml), so sum() is never N times the
-- truth. One row per series: metric name, labels (a JSON object of text
-- values) and value. Every branch is a constant metric name, so a WHERE
-- metric = '...' reads only its own tables. Series with nothing to count are
-- absent except where a 0 means something (vclw_oldest_pending_seconds, and
-- each node's three node_status values).
CREATE VIEW vcl.metrics AS
-- reservations pending and running, per operation and state
SELECT 'vclw_queue_depth'::text AS metric,
       jsonb_build_object('operation', r.operation, 'state', r.state) AS labels,
       count(*)::double precision AS value
  FROM vcl.reservation r
 WHERE r.state IN ('pending', 'running')
 GROUP BY r.operation, r.state
UNION ALL
-- pending and due now (run_at passed): what workers should be running
SELECT 'vclw_pending_due', jsonb_build_object('operation', r.operation), count(*)
  FROM vcl.reservation r
 WHERE r.state = 'pending' AND r.run_at <= now()
 GROUP BY r.operation
UNION ALL
-- how long the oldest due pending reservation has waited (0 when none)
SELECT 'vclw_oldest_pending_seconds', '{}'::jsonb,
       coalesce(extract(epoch FROM now() - min(r.run_at)), 0)::double precision
  FROM vcl.reservation r
 WHERE r.state = 'pending' AND r.run_at <= now()
UNION ALL
-- running rows whose lease expired: their worker died or hangs (the next
-- claim rescues those with attempts left)
SELECT 'vclw_running_lease_expired', jsonb_build_object('operation', r.operation), count(*)
  FROM vcl.reservation r
 WHERE r.state = 'running' AND r.lease_expires_at < now()
 GROUP BY r.operation
UNION ALL
-- failed for good in the last hour, per operation and the stage that failed
SELECT 'vclw_jobs_failed_last_hour',
       jsonb_build_object('operation', r.operation, 'stage', coalesce(r.failed_stage, 'unknown')),
       count(*)
  FROM vcl.reservation r
 WHERE r.state = 'failed' AND r.finished_at >= now() - interval '1 hour'
 GROUP BY r.operation, r.failed_stage
UNION ALL
-- computers per node and node_status (0 included: each node, each status)
SELECT 'vclw_computers', jsonb_build_object('node', n.name, 'node_status', st.s),
       (SELECT count(*) FROM vcl.computer c WHERE c.node_id = n.id AND c.node_status = st.s)
  FROM vcl.node n
 CROSS JOIN (VALUES ('READY'), ('POST_LOAD'), ('RELOAD')) st(s)
UNION ALL
-- seconds since each worker's last heartbeat: its newest registration per
-- name (a restart registers anew), unless it stopped cleanly. A worker that
-- holds no job renews it every lease_seconds; more than twice that means
-- it is dead or hung.
SELECT 'vclw_worker_heartbeat_age_seconds', jsonb_build_object('worker', w.name),
       extract(epoch FROM now() - w.heartbeat_at)::double precision
  FROM (SELECT DISTINCT ON (name) name, heartbeat_at, stopped_at
          FROM vcl.worker
         ORDER BY name, started_at DESC, id DESC) w
 WHERE w.stopped_at IS NULL;
COMMENT ON VIEW vcl.metrics IS
    'Queue-wide gauges for Prometheus (metric, labels, value), scraped through a PostgreSQL exporter '
    '(config/prometheus/postgres_exporter.yml): queue depth per operation and state, due pending rows, '
    'age of the oldest due pending row, expired leases, failures in the last hour per stage, computers per '
    'node and node_status, and seconds since each worker''s heartbeat. Workers do not export these.';
