-- 007_claim_fast.sql: a leaner claim, the claimable predicate written once,
-- and the rescue of a maintenance operation killed after its computer write.
--
-- 1. vcl.claimable: the one definition of "a worker may claim this row now"
--    (vcl.claim's load pass and its claim both read it; DBAs can too:
--    SELECT id, operation FROM vcl.claimable;).
-- 2. vcl.claim locks the chosen rows in one statement and updates them by
--    primary key (= ANY(array)) in the next: the old single statement joined
--    the picked rows back to the table, and the planner chose a hash join
--    over a sequential scan of the whole queue table, history included
--    (12 ms of a 256-row claim over a 20 000-row table).
-- 3. reservation.worker_id is a plain number (as reservation_stage.worker_id
--    already is), not a foreign key: the key check ran once per claimed row
--    (9 us each) and again on completion inside the claim's transaction.
--    Views join vcl.worker with LEFT JOIN, so a deleted worker row shows as
--    NULL there, as ON DELETE SET NULL did.
-- 4. The claimable-set indexes hold pending rows only: a claim (pending ->
--    running) adds entries to the primary key and the one-running-per-
--    computer index only, not to four indexes. Rescues (running rows whose
--    lease expired) are found through the running rows' own index and are
--    taken before new work.
-- 5. A computer in maintenance blocks every claim of its rows, rescues
--    included (an operator's "hands off"), except the rescue of a maintenance
--    operation: that one set the state itself, and a worker killed just after
--    used to leave the row running until an operator made the computer
--    available again.
-- 6. The batch functions a worker calls per job (complete, release,
--    heartbeat, stage_start) are PL/pgSQL, whose plans are cached per
--    session: as LANGUAGE sql they were planned again on every call
--    (0.3 ms of a one-row completion). They find rows by primary key
--    (= ANY(ids)) and check each row's token against its own pair: the old
--    join with unnest() was planned as a scan of every running row.
-- 7. Quiet when idle: a worker no longer polls every few seconds to notice
--    work that became claimable without an INSERT. vcl.next_due() tells it
--    when the next retry, lease expiry or cancel block falls due, and
--    NOTIFY vcl_reservation now also comes when a computer leaves
--    maintenance, a node becomes available, or a completed job leaves work
--    behind it (the computer's next row, a node's next load). NOTIFY
--    vcl_node tells the domain watchers that vcl.node changed.

ALTER TABLE vcl.reservation DROP CONSTRAINT IF EXISTS reservation_worker_id_fkey;
COMMENT ON COLUMN vcl.reservation.worker_id IS
    'Worker holding (or that last held) the lease: vcl.worker.id (a plain number, not a foreign key: '
    'worker rows may be deleted).';

-- Computers in maintenance, for the claimable check below: without it the
-- planner hashes the whole computer table on every claim (2 ms per claim at
-- 20 000 computers). Few rows: updates of other computers' state stay cheap.
CREATE INDEX computer_maintenance_idx ON vcl.computer (id) WHERE state = 'maintenance';

-- Pending rows only (see 4 above), in claim order; and per computer, for
-- "is there an earlier pending row of this computer?".
DROP INDEX vcl.reservation_claim_idx;
CREATE INDEX reservation_claim_idx ON vcl.reservation (priority DESC, run_at, id)
    WHERE state = 'pending';
DROP INDEX vcl.reservation_computer_active_idx;
CREATE INDEX reservation_computer_pending_idx ON vcl.reservation (computer_id, id)
    WHERE state = 'pending';

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
         AND NOT EXISTS (SELECT 1 FROM vcl.reservation o
                          WHERE o.computer_id = r.computer_id AND o.state = 'running'))
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
    'computer''s earliest unfinished row (nothing running on it), and running rows whose lease expired with '
    'attempts left; none of a computer in maintenance except the rescue of a maintenance operation. '
    'vcl.claim reads this view; so can a DBA.';

CREATE OR REPLACE FUNCTION vcl.claim(p_worker_id bigint, p_limit int, p_lease_seconds int)
    RETURNS SETOF vcl.reservation
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_lease      interval;
    v_node       bigint;
    v_nodes      bigint[] := '{}';
    v_load_ids   bigint[] := '{}';
    v_free_nodes bigint[];
    v_free_slots bigint[];
    v_ids        bigint[];
    v_rescued    bigint[];
    v_expired    boolean;
    v_loads      boolean;
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

    -- Expired leases and queued loads are rare: one cheap look at each (the
    -- running rows' index, the unfinished-loads index) spares the common
    -- claim the statements that handle them.
    SELECT EXISTS (SELECT 1 FROM vcl.reservation r
                    WHERE r.state = 'running' AND r.lease_expires_at < now()),
           EXISTS (SELECT 1 FROM vcl.reservation r
                    WHERE r.operation = 'load' AND r.state IN ('pending', 'running'))
      INTO v_expired, v_loads;

    -- 1. Poison rows: running, lease expired, and no attempt left. Failing
    -- them here means no separate sweeper is needed, and they are never
    -- claimed again. The stage that was running when the worker vanished is
    -- closed as 'abandoned' and named in the error. (Reads only running
    -- rows, through their partial unique index: as many as the pool's slots.)
    IF v_expired THEN
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
    END IF;

    -- 2. Loads are capped per node. Only when a load could be claimed, take a
    -- transaction-scoped try-lock per involved node (never waiting: a node
    -- another claimer holds is simply skipped this time, as SKIP LOCKED
    -- does). Two claimers therefore never count the same node's free slots
    -- at once. Starts from the unfinished loads (reservation_load_active_idx:
    -- empty when no load is queued, so other operations do not pay for this).
    IF v_loads THEN
        FOR v_node IN
            WITH loads AS MATERIALIZED (
                SELECT DISTINCT r.computer_id
                  FROM vcl.reservation r
                 WHERE r.operation = 'load'
                   AND r.state IN ('pending', 'running')
                   AND ((r.state = 'pending' AND r.run_at <= now())
                        OR (r.state = 'running' AND r.lease_expires_at < now() AND r.attempts < r.max_attempts))
            ), nodes AS MATERIALIZED (
                SELECT DISTINCT (SELECT c.node_id FROM vcl.computer c WHERE c.id = loads.computer_id) AS node_id
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
    END IF;

    -- 3. For the locked nodes, the loads this claim may take: per node, the
    -- first (max_concurrent_loads - loads holding a live lease) claimable
    -- loads in claim order. These are new statements, so their snapshots
    -- postdate the locks: they see every load an earlier holder of a lock
    -- claimed.
    IF cardinality(v_nodes) > 0 THEN
        -- 3a. free slots per locked node: max_concurrent_loads minus loads
        -- holding a live lease there: running ones, and ones cancelled while
        -- running (their worker may still be inside a stage until the old
        -- lease lapses).
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
              FROM (SELECT q.id, c.node_id,
                           row_number() OVER (PARTITION BY c.node_id
                                              ORDER BY q.priority DESC, q.run_at, q.id) AS rank
                      FROM vcl.computer c
                      JOIN vcl.claimable q ON q.computer_id = c.id
                     WHERE c.node_id = ANY (v_free_nodes)
                       AND q.operation = 'load') ranked
              JOIN unnest(v_free_nodes, v_free_slots) AS f(node_id, slots) ON f.node_id = ranked.node_id
             WHERE ranked.rank <= f.slots;
        END IF;
    END IF;

    -- 4. The claim: lock up to p_limit claimable rows with SKIP LOCKED (in
    -- MATERIALIZED CTEs: an inlined IN-subquery with LIMIT can lock more rows
    -- than the LIMIT), a load only if step 3 picked it: first rescues
    -- (running rows, found through their own small index), then pending rows
    -- in claim order. Only the earliest unfinished row of a computer (or its
    -- one running row) is claimable, so a claim takes at most one row per
    -- computer.
    v_rescued := '{}';
    IF v_expired THEN
        WITH picked AS MATERIALIZED (
            SELECT q.id
              FROM vcl.claimable q
             WHERE q.state = 'running'
               AND (q.operation <> 'load' OR q.id = ANY (v_load_ids))
             ORDER BY q.priority DESC, q.run_at, q.id
             LIMIT p_limit
               FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT coalesce(array_agg(picked.id), '{}') INTO v_rescued FROM picked;
    END IF;

    IF cardinality(v_rescued) < p_limit THEN
        WITH picked AS MATERIALIZED (
            SELECT q.id
              FROM vcl.claimable q
             WHERE q.state = 'pending'
               AND (q.operation <> 'load' OR q.id = ANY (v_load_ids))
             ORDER BY q.priority DESC, q.run_at, q.id
             LIMIT p_limit - cardinality(v_rescued)
               FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT coalesce(array_agg(picked.id), '{}') INTO v_ids FROM picked;
    ELSE
        v_ids := '{}';
    END IF;
    v_ids := v_rescued || v_ids;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    -- a rescued row: the stage its dead worker had started never finished
    IF cardinality(v_rescued) > 0 THEN
        UPDATE vcl.reservation_stage s
           SET outcome = 'abandoned', finished_at = clock_timestamp(),
               detail = concat_ws('; ', s.detail, 'lease expired: the job was taken over by another claim')
         WHERE s.reservation_id = ANY (v_rescued) AND s.outcome = 'running';
    END IF;

    -- by primary key; r.state on the right-hand side is the old state. The
    -- rows come back in no particular order. started_at is the clock now,
    -- not the statement's start: this statement's snapshot saw the
    -- completion of the computer's previous row committed, so its
    -- finished_at (that transaction's start) is always earlier.
    RETURN QUERY
        UPDATE vcl.reservation r
           SET state = 'running',
               worker_id = p_worker_id,
               lease_token = nextval('vcl.lease_token_seq'),
               lease_expires_at = now() + v_lease,
               attempts = r.attempts + 1,
               lease_expiries = r.lease_expiries + CASE WHEN r.state = 'running' THEN 1 ELSE 0 END,
               started_at = coalesce(r.started_at, clock_timestamp())
         WHERE r.id = ANY (v_ids)
     RETURNING r.*;
END;
$$;
COMMENT ON FUNCTION vcl.claim(bigint, int, int) IS
    'Claim up to p_limit rows of vcl.claimable for worker p_worker_id with a lease of p_lease_seconds: '
    'due pending rows and running rows whose lease expired (rescue); per computer one at a time in id order; '
    'loads only on available nodes and within max_concurrent_loads. Each claimed row gets a new lease_token '
    '(fencing token). Also fails running rows whose lease expired with no attempt left. Rows come back in no '
    'particular order. Run in READ COMMITTED.';

-- Plans of the claim's statements are generic: custom plans were made for
-- every call (the parameters never change the best plan) at ~0.5 ms each.
ALTER FUNCTION vcl.claim(bigint, int, int) SET plan_cache_mode = force_generic_plan;

-- ---------------------------------------------------------------------------
-- per-job calls: cached plans, primary-key lookups, pairwise fencing
-- ---------------------------------------------------------------------------

-- The token of reservation p_id in the (p_ids, p_tokens) pairs.
CREATE FUNCTION vcl.token_of(p_id bigint, p_ids bigint[], p_tokens bigint[])
    RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN p_tokens[array_position(p_ids, p_id)];
COMMENT ON FUNCTION vcl.token_of(bigint, bigint[], bigint[]) IS
    'The token paired with reservation p_id in parallel arrays (ids, tokens); NULL when p_id is not there.';

CREATE OR REPLACE FUNCTION vcl.release(p_ids bigint[], p_tokens bigint[])
    RETURNS SETOF bigint
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN QUERY
    WITH released AS (
        UPDATE vcl.reservation r
           SET state = 'pending', run_at = now(), attempts = greatest(r.attempts - 1, 0),
               lease_expires_at = NULL, worker_id = NULL
         WHERE r.id = ANY (p_ids)
           AND r.state = 'running'
           AND r.lease_token = vcl.token_of(r.id, p_ids, p_tokens)
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
$$;

CREATE OR REPLACE FUNCTION vcl.heartbeat(p_worker_id bigint, p_ids bigint[], p_tokens bigint[], p_lease_seconds int)
    RETURNS SETOF bigint
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 THEN
        RAISE EXCEPTION 'vcl.heartbeat: lease must be at least 1 second, got %', p_lease_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE vcl.worker SET heartbeat_at = now() WHERE id = p_worker_id;
    IF cardinality(p_ids) > 0 THEN
        RETURN QUERY
        WITH renewed AS (
            UPDATE vcl.reservation r
               SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
             WHERE r.id = ANY (p_ids)
               AND r.state = 'running'
               AND r.lease_token = vcl.token_of(r.id, p_ids, p_tokens)
         RETURNING r.id
        )
        SELECT renewed.id FROM renewed ORDER BY renewed.id;
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION vcl.stage_start(p_id bigint, p_token bigint, p_stage text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_row bigint;
BEGIN
    -- FOR SHARE: a concurrent takeover or cancel of the row waits for this
    -- insert, or (if it committed first) makes the fence fail here.
    INSERT INTO vcl.reservation_stage (reservation_id, attempt, lease_token, worker_id, stage)
    SELECT r.id, r.attempts, r.lease_token, r.worker_id, p_stage
      FROM vcl.reservation r
     WHERE r.id = p_id AND r.lease_token = p_token AND r.state = 'running'
       FOR SHARE
    RETURNING id INTO v_row;
    RETURN v_row;
END;
$$;

-- ---------------------------------------------------------------------------
-- wake-ups: when work becomes claimable without an INSERT
-- ---------------------------------------------------------------------------

-- Pending rows by due time, for vcl.next_due: holds only pending rows, so a
-- claim (pending -> running) adds nothing to it.
CREATE INDEX reservation_pending_run_at_idx ON vcl.reservation (run_at) WHERE state = 'pending';

CREATE FUNCTION vcl.next_due()
    RETURNS double precision
    LANGUAGE sql STABLE
    RETURN extract(epoch FROM least(
        (SELECT min(r.run_at) FROM vcl.reservation r
          WHERE r.state = 'pending' AND r.run_at > now()),
        (SELECT min(r.lease_expires_at) FROM vcl.reservation r
          WHERE r.state = 'running' AND r.lease_expires_at > now()),
        (SELECT min(r.blocks_until) FROM vcl.reservation r
          WHERE r.blocks_until IS NOT NULL AND r.blocks_until >= now())) - now());
COMMENT ON FUNCTION vcl.next_due() IS
    'Seconds from now until something may become claimable without a NOTIFY: the earliest future run_at '
    '(retry backoff, scheduled work), lease expiry (rescue) or end of a cancel block; NULL when nothing is '
    'scheduled. Only future times count (a row already due but not claimable, e.g. its computer in maintenance, '
    'waits for a NOTIFY or the poll). An idle worker sleeps until then (or its poll_seconds).';

CREATE OR REPLACE FUNCTION vcl.complete(p_ids bigint[], p_tokens bigint[])
    RETURNS SETOF bigint
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_done      bigint[];
    v_computers bigint[];
    v_loads     boolean;
BEGIN
    WITH done AS (
        UPDATE vcl.reservation r
           SET state = 'done', finished_at = now(), lease_expires_at = NULL
         WHERE r.id = ANY (p_ids)
           AND r.state = 'running'
           AND r.lease_token = vcl.token_of(r.id, p_ids, p_tokens)
     RETURNING r.id, r.computer_id, r.operation
    )
    SELECT array_agg(done.id ORDER BY done.id), array_agg(done.computer_id),
           coalesce(bool_or(done.operation = 'load'), false)
      INTO v_done, v_computers, v_loads
      FROM done;
    IF v_done IS NULL THEN
        RETURN;
    END IF;
    -- Work these jobs held back: the computers' next rows, or (a load
    -- finished) a node's next load. The worker that completed them claims
    -- again anyway; the NOTIFY is for the others (folded per transaction).
    IF EXISTS (SELECT 1 FROM vcl.reservation n
                WHERE n.computer_id = ANY (v_computers) AND n.state = 'pending')
       OR (v_loads AND EXISTS (SELECT 1 FROM vcl.reservation n
                                WHERE n.operation = 'load' AND n.state = 'pending')) THEN
        PERFORM pg_notify('vcl_reservation', 'next');
    END IF;
    RETURN QUERY SELECT unnest(v_done);
END;
$$;

-- One trigger function for the wake-ups below: NOTIFY channel TG_ARGV[0]
-- with payload TG_ARGV[1] (identical notifications of a transaction are
-- folded into one).
CREATE FUNCTION vcl.notify_trigger() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], TG_ARGV[1]);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION vcl.notify_trigger() IS
    'AFTER trigger: NOTIFY the channel named by the trigger''s first argument with its second as payload.';

-- A computer or node leaving maintenance: its queued work is claimable again.
CREATE TRIGGER computer_notify_available
    AFTER UPDATE OF state ON vcl.computer
    FOR EACH ROW
    WHEN (OLD.state = 'maintenance' AND NEW.state <> 'maintenance')
    EXECUTE FUNCTION vcl.notify_trigger('vcl_reservation', 'available');

CREATE TRIGGER node_notify_available
    AFTER UPDATE OF state ON vcl.node
    FOR EACH ROW
    WHEN (OLD.state = 'maintenance' AND NEW.state <> 'maintenance')
    EXECUTE FUNCTION vcl.notify_trigger('vcl_reservation', 'available');

-- Nodes added, removed, renamed or moved: the domain watchers re-read vcl.node.
CREATE TRIGGER node_notify_changed
    AFTER INSERT OR DELETE OR UPDATE OF name, libvirt_uri ON vcl.node
    FOR EACH STATEMENT
    EXECUTE FUNCTION vcl.notify_trigger('vcl_node', 'changed');

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_worker') THEN
        -- vcl.claim locks rows through the view (FOR NO KEY UPDATE needs UPDATE
        -- on it; the view is security_invoker, so the caller's own table
        -- privileges still apply underneath)
        GRANT SELECT, UPDATE ON vcl.claimable TO vcl_worker;
        GRANT EXECUTE ON FUNCTION vcl.next_due() TO vcl_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_reader') THEN
        GRANT SELECT ON vcl.claimable TO vcl_reader;
    END IF;
END;
$$;
