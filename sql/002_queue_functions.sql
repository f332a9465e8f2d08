-- 002_queue_functions.sql: the queue contract as SQL functions (called by name
-- from worker/db.c with parameters) and the wake-up / DBA-reset triggers.
--
-- Fencing: a worker's write about a reservation names (id, lease_token) and
-- succeeds only while that row is still 'running' under that token. A lost
-- lease (rescued by another worker), a cancel, or a DBA reset all change that,
-- so the old holder's next write returns NULL / false / nothing, and the worker
-- abandons the job at once.
--
-- Every function is SECURITY INVOKER: it can do no more than the caller's own
-- table privileges allow (roles: 004_roles.sql).
--
-- vcl.claim must run in READ COMMITTED (the default): its load cap relies on
-- each statement taking a fresh snapshot after the node locks are held.
--
-- Advisory lock keys used here: the single-bigint form,
--   ('vcln' = 1986225262) << 32 | node id    a claim choosing loads for that node
-- (the two-int4 form is the worker's image-copy lock (node id, revision id);
-- the migration runner uses the single key 7223372036854775807).

-- ---------------------------------------------------------------------------
-- claim
-- ---------------------------------------------------------------------------

CREATE FUNCTION vcl.claim(p_worker_id bigint, p_limit int, p_lease_seconds int)
    RETURNS SETOF vcl.reservation
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_lease    interval;
    v_node     bigint;
    v_nodes    bigint[] := '{}';
    v_load_ids bigint[] := '{}';
    v_free_nodes bigint[];
    v_free_slots bigint[];
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RETURN;
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 THEN
        RAISE EXCEPTION 'vcl.claim: lease must be at least 1 second, got %', p_lease_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'vcl.claim must run in READ COMMITTED, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    v_lease := make_interval(secs => p_lease_seconds);

    -- 1. Poison rows: running, lease expired, and no attempt left. Failing
    -- them here means no separate sweeper is needed, and they are never
    -- claimed again. The stage that was running when the worker vanished is
    -- closed as 'abandoned' and named in the error.
    WITH dead AS MATERIALIZED (
        SELECT r.id
          FROM vcl.reservation r
         WHERE r.state = 'running'
           AND r.lease_expires_at < now()
           AND r.attempts >= r.max_attempts
           FOR NO KEY UPDATE SKIP LOCKED
    ), abandoned AS (
        UPDATE vcl.reservation_stage s
           SET outcome = 'abandoned', finished_at = clock_timestamp(),
               detail = concat_ws('; ', s.detail, 'lease expired: the worker running it died or hung')
          FROM dead
         WHERE s.reservation_id = dead.id AND s.outcome = 'running'
     RETURNING s.reservation_id, s.id, s.stage
    )
    UPDATE vcl.reservation r
       SET state = 'failed',
           finished_at = now(),
           lease_expires_at = NULL,
           lease_expiries = r.lease_expiries + 1,
           failed_stage = coalesce(a.stage, r.stage),
           last_error = format('lease expired %s times: the worker running it died or hung (last stage: %s)',
                               r.lease_expiries + 1, coalesce(a.stage, r.stage, 'none'))
      FROM dead
      LEFT JOIN LATERAL (SELECT ab.stage FROM abandoned ab
                          WHERE ab.reservation_id = dead.id
                          ORDER BY ab.id DESC LIMIT 1) a ON true
     WHERE r.id = dead.id;

    -- 2. Loads are capped per node. Only when a load could be claimed, take a
    -- transaction-scoped try-lock per involved node (never waiting: a node
    -- another claimer holds is simply skipped this time, as SKIP LOCKED
    -- does). Two claimers therefore never count the same node's free slots
    -- at once. An advisory lock rather than SELECT ... FOR UPDATE on vcl.node:
    -- same exclusion, but no write to the node row on every claim and no
    -- UPDATE privilege on vcl.node for the worker role.
    FOR v_node IN
        -- Start from the (small) set of due loads, never from every computer
        -- of every node: MATERIALIZED, and the computer looked up per row by
        -- its primary key (a scalar sub-select the planner cannot turn into
        -- a hash join over all computers).
        WITH loads AS MATERIALIZED (
            SELECT DISTINCT r.computer_id
              FROM vcl.reservation r
             WHERE r.operation = 'load'
               AND r.state IN ('pending', 'running')
               AND ((r.state = 'pending' AND r.run_at <= now())
                    OR (r.state = 'running' AND r.lease_expires_at < now() AND r.attempts < r.max_attempts))
        ), nodes AS MATERIALIZED (
            SELECT DISTINCT (SELECT c.node_id FROM vcl.computer c
                              WHERE c.id = loads.computer_id AND c.state <> 'maintenance') AS node_id
              FROM loads
        )
        SELECT n.id
          FROM nodes
          JOIN vcl.node n ON n.id = nodes.node_id
         WHERE n.state = 'available'
         ORDER BY n.id
    LOOP
        IF pg_try_advisory_xact_lock((1986225262::bigint << 32) | (v_node & 4294967295)) THEN
            v_nodes := v_nodes || v_node;
        END IF;
    END LOOP;

    -- 3. For the locked nodes, the loads this claim may take: per node, the
    -- first (max_concurrent_loads - loads holding a live lease) claimable
    -- loads in claim order. These are new statements, so their snapshots
    -- postdate the locks: they see every load an earlier holder of a lock
    -- claimed. (Keep the claimable predicate in sync with step 4.)
    IF cardinality(v_nodes) > 0 THEN
        -- 3a. free slots per locked node: max_concurrent_loads minus loads
        -- holding a live lease there: running ones, and ones cancelled while
        -- running (their worker may still be inside a stage until the old
        -- lease lapses). One pass over the running rows (few: bounded by the
        -- workers' slots).
        WITH busy AS MATERIALIZED (
            SELECT (SELECT oc.node_id FROM vcl.computer oc WHERE oc.id = o.computer_id) AS node_id,
                   count(*) AS loads
              FROM vcl.reservation o
             WHERE o.operation = 'load'
               AND ((o.state = 'running' AND o.lease_expires_at >= now())
                    OR (o.blocks_until IS NOT NULL AND o.blocks_until >= now()))
             GROUP BY 1
        )
        SELECT coalesce(array_agg(f.id), '{}'), coalesce(array_agg(f.slots), '{}')
          INTO v_free_nodes, v_free_slots
          FROM (SELECT n.id,
                       n.max_concurrent_loads
                       - coalesce((SELECT busy.loads FROM busy WHERE busy.node_id = n.id), 0) AS slots
                  FROM vcl.node n
                 WHERE n.id = ANY (v_nodes) AND n.state = 'available') f
         WHERE f.slots > 0;

        -- 3b. per node with free slots, its first <slots> claimable loads in
        -- claim order (computers found through computer_node_id_idx).
        IF cardinality(v_free_nodes) > 0 THEN
            SELECT coalesce(array_agg(ranked.id), '{}')
              INTO v_load_ids
              FROM (SELECT r.id, c.node_id,
                           row_number() OVER (PARTITION BY c.node_id
                                              ORDER BY r.priority DESC, r.run_at, r.id) AS rank
                      FROM vcl.computer c
                      JOIN vcl.reservation r ON r.computer_id = c.id
                     WHERE c.node_id = ANY (v_free_nodes)
                       AND c.state <> 'maintenance'
                       AND r.operation = 'load'
                       AND r.state IN ('pending', 'running')
                       AND ((r.state = 'pending' AND r.run_at <= now()
                             AND NOT EXISTS (SELECT 1 FROM vcl.reservation e
                                              WHERE e.computer_id = r.computer_id AND e.id < r.id
                                                AND e.state IN ('pending', 'running'))
                             AND NOT EXISTS (SELECT 1 FROM vcl.reservation o
                                              WHERE o.computer_id = r.computer_id
                                                AND o.state = 'running'))
                            OR (r.state = 'running' AND r.lease_expires_at < now()
                                AND r.attempts < r.max_attempts))
                       AND NOT EXISTS (SELECT 1 FROM vcl.reservation x
                                        WHERE x.computer_id = r.computer_id
                                          AND x.blocks_until IS NOT NULL AND x.blocks_until >= now())) ranked
              JOIN unnest(v_free_nodes, v_free_slots) AS f(node_id, slots) ON f.node_id = ranked.node_id
             WHERE ranked.rank <= f.slots;
        END IF;
    END IF;

    -- 4. The claim: one statement, rows locked with SKIP LOCKED in a
    -- MATERIALIZED CTE (an inlined IN-subquery with LIMIT can update more
    -- rows than the LIMIT), at most p_limit of them.
    --   pending rows:  due, the computer's earliest unfinished row, and the
    --                  computer has no running row;
    --   running rows:  lease expired and attempts left (a dead worker's job;
    --                  it goes on even if a DBA reset an older row meanwhile);
    --   either way:    computer not in maintenance, not blocked by a row
    --                  cancelled while running (blocks_until), and a load
    --                  only if step 3 picked it.
    -- Only the earliest unfinished row of a computer (or its one running
    -- row) can qualify, so a claim takes at most one row per computer.
    RETURN QUERY
    WITH picked AS MATERIALIZED (
        SELECT r.id, r.state AS was
          FROM vcl.reservation r
          JOIN vcl.computer c ON c.id = r.computer_id
         WHERE r.state IN ('pending', 'running')
           AND c.state <> 'maintenance'
           AND (r.operation <> 'load' OR r.id = ANY (v_load_ids))
           AND ((r.state = 'pending' AND r.run_at <= now()
                 AND NOT EXISTS (SELECT 1 FROM vcl.reservation e
                                  WHERE e.computer_id = r.computer_id AND e.id < r.id
                                    AND e.state IN ('pending', 'running'))
                 AND NOT EXISTS (SELECT 1 FROM vcl.reservation o
                                  WHERE o.computer_id = r.computer_id
                                    AND o.state = 'running'))
                OR (r.state = 'running' AND r.lease_expires_at < now()
                    AND r.attempts < r.max_attempts))
           AND NOT EXISTS (SELECT 1 FROM vcl.reservation x
                            WHERE x.computer_id = r.computer_id
                              AND x.blocks_until IS NOT NULL AND x.blocks_until >= now())
         ORDER BY r.priority DESC, r.run_at, r.id
         LIMIT p_limit
           FOR NO KEY UPDATE OF r SKIP LOCKED
    ), claimed AS (
        UPDATE vcl.reservation r
           SET state = 'running',
               worker_id = p_worker_id,
               lease_token = nextval('vcl.lease_token_seq'),
               lease_expires_at = now() + v_lease,
               attempts = r.attempts + 1,
               lease_expiries = r.lease_expiries + CASE WHEN picked.was = 'running' THEN 1 ELSE 0 END,
               started_at = coalesce(r.started_at, now())
          FROM picked
         WHERE r.id = picked.id
     RETURNING r.*
    ), abandoned AS (
        -- a rescued row: the stage its dead worker had started never finished
        UPDATE vcl.reservation_stage s
           SET outcome = 'abandoned', finished_at = clock_timestamp(),
               detail = concat_ws('; ', s.detail, 'lease expired: the job was taken over by another claim')
          FROM picked
         WHERE picked.was = 'running' AND s.reservation_id = picked.id AND s.outcome = 'running'
    )
    SELECT * FROM claimed ORDER BY claimed.priority DESC, claimed.run_at, claimed.id;
END;
$$;
COMMENT ON FUNCTION vcl.claim(bigint, int, int) IS
    'Claim up to p_limit claimable reservations for worker p_worker_id with a lease of p_lease_seconds: '
    'due pending rows and running rows whose lease expired (rescue); per computer one at a time in id order; '
    'no computer in maintenance; loads only on available nodes and within max_concurrent_loads. '
    'Each claimed row gets a new lease_token (fencing token). Also fails running rows whose lease expired '
    'with no attempt left. Run in READ COMMITTED.';

-- ---------------------------------------------------------------------------
-- heartbeat
-- ---------------------------------------------------------------------------

CREATE FUNCTION vcl.heartbeat(p_worker_id bigint, p_ids bigint[], p_tokens bigint[], p_lease_seconds int)
    RETURNS SETOF bigint
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 THEN
        RAISE EXCEPTION 'vcl.heartbeat: lease must be at least 1 second, got %', p_lease_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE vcl.worker SET heartbeat_at = now() WHERE id = p_worker_id;
    RETURN QUERY
    WITH renewed AS (
        UPDATE vcl.reservation r
           SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
          FROM unnest(p_ids, p_tokens) AS h(id, token)
         WHERE r.id = h.id AND r.lease_token = h.token AND r.state = 'running'
     RETURNING r.id
    )
    SELECT renewed.id FROM renewed ORDER BY renewed.id;
END;
$$;
COMMENT ON FUNCTION vcl.heartbeat(bigint, bigint[], bigint[], int) IS
    'Extend the leases of the (id, token) pairs still running under that token; returns the ids extended '
    '(a missing id has lost its lease: stop touching it). Also records the worker''s heartbeat_at.';

-- ---------------------------------------------------------------------------
-- stage log
-- ---------------------------------------------------------------------------

CREATE FUNCTION vcl.stage_start(p_id bigint, p_token bigint, p_stage text)
    RETURNS bigint
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    -- FOR SHARE: a concurrent takeover or cancel of the row waits for this
    -- insert, or (if it committed first) makes the fence fail here.
    INSERT INTO vcl.reservation_stage (reservation_id, attempt, lease_token, worker_id, stage)
    SELECT r.id, r.attempts, r.lease_token, r.worker_id, p_stage
      FROM vcl.reservation r
     WHERE r.id = p_id AND r.lease_token = p_token AND r.state = 'running'
       FOR SHARE
    RETURNING id;
END;
COMMENT ON FUNCTION vcl.stage_start(bigint, bigint, text) IS
    'Fenced: log the start of stage p_stage for reservation p_id under lease p_token; returns the stage row id, '
    'or NULL (nothing written) when the lease is lost.';

CREATE FUNCTION vcl.stage_finish(p_id bigint, p_token bigint, p_stage_row bigint, p_ok boolean,
                                 p_detail text, p_checkpoint boolean)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_stage   text;
    v_outcome text;
BEGIN
    PERFORM 1 FROM vcl.reservation r
     WHERE r.id = p_id AND r.lease_token = p_token AND r.state = 'running'
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    SELECT s.stage, s.outcome INTO v_stage, v_outcome
      FROM vcl.reservation_stage s
     WHERE s.id = p_stage_row AND s.reservation_id = p_id AND s.lease_token = p_token;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'vcl.stage_finish: stage row % is not a stage of reservation % under lease %',
            p_stage_row, p_id, p_token
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_outcome <> 'running' THEN
        -- Already finished: a re-sent call (e.g. after a lost connection
        -- whose COMMIT did go through). Same result again; change nothing.
        RETURN v_outcome = CASE WHEN p_ok THEN 'ok' ELSE 'failed' END;
    END IF;

    UPDATE vcl.reservation_stage
       SET finished_at = clock_timestamp(),
           outcome = CASE WHEN p_ok THEN 'ok' ELSE 'failed' END,
           detail = p_detail
     WHERE id = p_stage_row;
    IF p_ok AND p_checkpoint THEN
        UPDATE vcl.reservation SET stage = v_stage WHERE id = p_id;
    END IF;
    RETURN true;
END;
$$;
COMMENT ON FUNCTION vcl.stage_finish(bigint, bigint, bigint, boolean, text, boolean) IS
    'Fenced: finish stage row p_stage_row (ok or failed, with detail); when ok and p_checkpoint, also advance '
    'the reservation''s checkpoint (stage) to it, in the same transaction. false (nothing written) when the lease is lost.';

-- ---------------------------------------------------------------------------
-- results
-- ---------------------------------------------------------------------------

CREATE FUNCTION vcl.complete(p_ids bigint[], p_tokens bigint[])
    RETURNS SETOF bigint
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH done AS (
        UPDATE vcl.reservation r
           SET state = 'done', finished_at = now(), lease_expires_at = NULL
          FROM unnest(p_ids, p_tokens) AS c(id, token)
         WHERE r.id = c.id AND r.lease_token = c.token AND r.state = 'running'
     RETURNING r.id
    )
    SELECT done.id FROM done ORDER BY done.id;
END;
COMMENT ON FUNCTION vcl.complete(bigint[], bigint[]) IS
    'Fenced batch: mark each (id, token) still running under that token done; returns the ids completed.';

CREATE FUNCTION vcl.fail(p_id bigint, p_token bigint, p_error text, p_stage text, p_permanent boolean,
                         p_retry_in_seconds double precision)
    RETURNS text
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_state text;
BEGIN
    UPDATE vcl.reservation r
       SET state = CASE WHEN p_permanent OR r.attempts >= r.max_attempts THEN 'failed' ELSE 'pending' END,
           finished_at = CASE WHEN p_permanent OR r.attempts >= r.max_attempts THEN now() END,
           run_at = CASE WHEN p_permanent OR r.attempts >= r.max_attempts THEN r.run_at
                         ELSE now() + make_interval(secs => greatest(coalesce(p_retry_in_seconds, 0), 0)) END,
           lease_expires_at = NULL,
           last_error = p_error,
           failed_stage = p_stage
     WHERE r.id = p_id AND r.lease_token = p_token AND r.state = 'running'
    RETURNING r.state INTO v_state;
    IF v_state IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE vcl.reservation_stage s
       SET outcome = 'abandoned', finished_at = clock_timestamp(),
           detail = concat_ws('; ', s.detail, 'reservation failed before the stage finished')
     WHERE s.reservation_id = p_id AND s.lease_token = p_token AND s.outcome = 'running';
    RETURN v_state;
END;
$$;
COMMENT ON FUNCTION vcl.fail(bigint, bigint, text, text, boolean, double precision) IS
    'Fenced: record error p_error in stage p_stage. Permanent, or no attempt left: state failed. '
    'Otherwise pending again with run_at = now() + p_retry_in_seconds. Returns the new state, NULL when the lease is lost.';

CREATE FUNCTION vcl.release(p_ids bigint[], p_tokens bigint[])
    RETURNS SETOF bigint
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH released AS (
        UPDATE vcl.reservation r
           SET state = 'pending', run_at = now(), attempts = greatest(r.attempts - 1, 0),
               lease_expires_at = NULL, worker_id = NULL
          FROM unnest(p_ids, p_tokens) AS c(id, token)
         WHERE r.id = c.id AND r.lease_token = c.token AND r.state = 'running'
     RETURNING r.id, r.lease_token
    ), abandoned AS (
        UPDATE vcl.reservation_stage s
           SET outcome = 'abandoned', finished_at = clock_timestamp(),
               detail = concat_ws('; ', s.detail, 'handed back at shutdown before the stage finished')
          FROM released
         WHERE s.reservation_id = released.id AND s.lease_token = released.lease_token
           AND s.outcome = 'running'
    )
    SELECT released.id FROM released ORDER BY released.id;
END;
COMMENT ON FUNCTION vcl.release(bigint[], bigint[]) IS
    'Fenced batch hand-back at graceful shutdown: pending, run now, the attempt not counted; returns the ids released.';

CREATE FUNCTION vcl.cancel(p_id bigint)
    RETURNS text
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_state text;
BEGIN
    SELECT r.state INTO v_state FROM vcl.reservation r WHERE r.id = p_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_state NOT IN ('pending', 'running') THEN
        RETURN v_state;
    END IF;
    -- A running row: the worker's fenced writes and heartbeats now fail
    -- (state is no longer 'running'), so it stops at its next stage
    -- boundary. Until its lease would have expired it may still be inside a
    -- stage: blocks_until keeps the computer's next reservation (and, for a
    -- load, the node's slot) waiting until then, so two workers never act
    -- on one computer at once.
    UPDATE vcl.reservation
       SET state = 'cancelled', finished_at = now(),
           blocks_until = CASE WHEN v_state = 'running' THEN lease_expires_at END,
           lease_expires_at = NULL
     WHERE id = p_id;
    IF v_state = 'running' THEN
        UPDATE vcl.reservation_stage s
           SET outcome = 'abandoned', finished_at = clock_timestamp(),
               detail = concat_ws('; ', s.detail, 'reservation cancelled while the stage ran')
         WHERE s.reservation_id = p_id AND s.outcome = 'running';
    END IF;
    RETURN 'cancelled';
END;
$$;
COMMENT ON FUNCTION vcl.cancel(bigint) IS
    'Cancel a pending or running reservation (a running one stops at its worker''s next stage boundary); '
    'returns ''cancelled'', the unchanged state of an already finished row, or NULL for no such row.';

-- ---------------------------------------------------------------------------
-- workers
-- ---------------------------------------------------------------------------

CREATE FUNCTION vcl.register_worker(p_name text, p_host text, p_pid int, p_slots int, p_version text)
    RETURNS bigint
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    INSERT INTO vcl.worker (name, host, pid, slots, version)
    VALUES (p_name, p_host, p_pid, p_slots, p_version)
    RETURNING id;
END;
COMMENT ON FUNCTION vcl.register_worker(text, text, int, int, text) IS
    'Record a starting worker process; returns its worker id (used in vcl.claim and vcl.heartbeat).';

CREATE FUNCTION vcl.worker_stopped(p_worker_id bigint)
    RETURNS void
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    UPDATE vcl.worker SET stopped_at = now(), heartbeat_at = now() WHERE id = p_worker_id;
END;
COMMENT ON FUNCTION vcl.worker_stopped(bigint) IS 'Record a clean exit of the worker.';

-- ---------------------------------------------------------------------------
-- history
-- ---------------------------------------------------------------------------

CREATE FUNCTION vcl.prune_history(p_older_than interval, p_batch int)
    RETURNS int
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH doomed AS MATERIALIZED (
        SELECT r.id
          FROM vcl.reservation r
         WHERE r.state IN ('done', 'failed', 'cancelled')
           AND r.finished_at < now() - p_older_than
           -- a row cancelled while running blocks its computer until
           -- blocks_until: keep it until then
           AND NOT (r.blocks_until IS NOT NULL AND r.blocks_until >= now())
         ORDER BY r.finished_at
         LIMIT greatest(p_batch, 0)
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM vcl.reservation r USING doomed WHERE r.id = doomed.id RETURNING 1
    )
    SELECT count(*)::int FROM gone;
END;
COMMENT ON FUNCTION vcl.prune_history(interval, int) IS
    'Delete up to p_batch done/failed/cancelled reservations finished more than p_older_than ago '
    '(their stage rows go with them); returns how many. Call repeatedly until it returns less than p_batch.';

-- ---------------------------------------------------------------------------
-- triggers: wake-up and the DBA's plain-SQL retry
-- ---------------------------------------------------------------------------

CREATE FUNCTION vcl.reservation_notify_insert() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('vcl_reservation', 'insert');
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_notify_insert() IS
    'Statement trigger: one NOTIFY vcl_reservation ''insert'' per INSERT statement, however many rows.';

-- FOR EACH STATEMENT: a transaction that NOTIFYs takes a global lock at
-- commit; one notification per statement (not per row) keeps bulk inserts cheap.
CREATE TRIGGER reservation_notify_insert
    AFTER INSERT ON vcl.reservation
    FOR EACH STATEMENT EXECUTE FUNCTION vcl.reservation_notify_insert();

CREATE FUNCTION vcl.reservation_reset() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    -- UPDATE vcl.reservation SET state = 'pending' WHERE id = ... on a
    -- finished row: a fresh set of attempts, due now (unless the same UPDATE
    -- set run_at). The checkpoint stays: the retry resumes after it; a DBA
    -- who also sets stage = NULL reruns every stage. A row cancelled while
    -- running is not due before its blocks_until (its old worker may still
    -- be inside a stage).
    NEW.attempts := 0;
    NEW.lease_expiries := 0;
    NEW.worker_id := NULL;
    NEW.finished_at := NULL;
    IF NEW.run_at IS NOT DISTINCT FROM OLD.run_at THEN
        NEW.run_at := greatest(now(), OLD.blocks_until);
    END IF;
    NEW.lease_expires_at := NULL;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_reset() IS
    'BEFORE UPDATE trigger: a finished row set back to pending by hand starts over (attempts 0, due now), '
    'keeping its checkpoint.';

CREATE TRIGGER reservation_reset
    BEFORE UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.state = 'pending' AND OLD.state IN ('failed', 'cancelled', 'done'))
    EXECUTE FUNCTION vcl.reservation_reset();

CREATE FUNCTION vcl.reservation_finished_at() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.finished_at := now();
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_finished_at() IS
    'BEFORE UPDATE trigger: a row set to done/failed/cancelled by plain SQL gets finished_at (retention needs it).';

CREATE TRIGGER reservation_finished_at
    BEFORE UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.state IN ('done', 'failed', 'cancelled') AND NEW.finished_at IS NULL)
    EXECUTE FUNCTION vcl.reservation_finished_at();

CREATE FUNCTION vcl.reservation_notify_pending() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    -- Identical notifications in one transaction are folded by PostgreSQL:
    -- a bulk reset sends one.
    PERFORM pg_notify('vcl_reservation', 'pending');
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_notify_pending() IS
    'AFTER UPDATE trigger: NOTIFY vcl_reservation ''pending'' when a row becomes pending and due '
    '(DBA reset, hand-back, immediate retry).';

CREATE TRIGGER reservation_notify_pending
    AFTER UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.state = 'pending' AND OLD.state <> 'pending' AND NEW.run_at <= now())
    EXECUTE FUNCTION vcl.reservation_notify_pending();
