-- functions/queue.sql: the queue contract as SQL functions (called by name
-- from worker/queue/statements.h with parameters), and the triggers of the DBA's
-- plain-SQL retry: claim, heartbeat, complete, fail, release, cancel,
-- next_due, prune_history.
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`, after the
-- numbered migrations, in the same transaction; every object here is
-- CREATE OR REPLACE. A function whose arguments or result type change is
-- dropped first, here (DROP FUNCTION IF EXISTS vcl.f(old argument types)),
-- and grants.sql grants the new one.
--
-- Fencing: a worker's write about a reservation names (id, lease_token) and
-- succeeds only while that row is still 'running' under that token. A lost
-- lease (rescued by another worker), a cancel, or a DBA reset all change that,
-- so the old holder's next write returns NULL / false / nothing, and the worker
-- abandons the job at once.
--
-- Every function is SECURITY INVOKER: it can do no more than the caller's own
-- table privileges allow (roles: 001_baseline.sql, grants.sql).
--
-- vcl.claim must run in READ COMMITTED (the default): its load cap relies on
-- each statement taking a fresh snapshot after the node locks are held.
--
-- Locks: a claim choosing loads for a node holds that node's vcl.node row
-- (FOR NO KEY UPDATE SKIP LOCKED, until it commits); a master copy holds a
-- vcl.image_lock row (locks.sql). No queue decision depends on an advisory
-- lock: pg_advisory_lock is PUBLIC, so any login (vcl_reader too) could hold
-- one forever. (Only the migration runner uses one, key 7223372036854775807.)
--
-- The batch functions a worker calls per job (complete, release, heartbeat,
-- and stage_start in stages.sql) are PL/pgSQL, whose plans are cached per
-- session (as LANGUAGE sql they were planned again on every call: 0.3 ms of
-- a one-row completion). They find rows by primary key (= ANY(ids)) and check
-- each row's token against its own pair (vcl.token_of): a join with unnest()
-- was planned as a scan of every running row.

-- ---------------------------------------------------------------------------
-- claim
-- ---------------------------------------------------------------------------

-- The claimable predicate is written once, in the view vcl.claimable
-- (views.sql). The chosen rows are locked in one statement and updated by
-- primary key (= ANY(array)) in the next: a single statement that joined the
-- picked rows back to the table was planned as a hash join over a
-- sequential scan of the whole queue table, history included (12 ms of a
-- 256-row claim over a 20 000-row table). Its statements' plans are generic
-- (plan_cache_mode): custom plans were made for every call (the parameters
-- never change the best plan) at ~0.5 ms each.
--
-- Cost independent of depth and of the DBA's settings: jit is off for the
-- claim (at 100 000 queued rows its generic plan costs more than the
-- default jit_above_cost, and every claim then spent ~20 ms compiling for
-- 0.7 ms of execution; the worker's sessions also run with jit off, which
-- covers the completion and heartbeat paths).
--
-- p_rescue: look for expired leases (poison rows, rescues). That look reads
-- every running row (lease_expires_at is in no index, so heartbeats stay HOT
-- updates), so with thousands running its cost grew with them on every
-- claim; a worker passes true at most once a second (and whenever it was
-- idle), false otherwise. Callers that omit it (DBAs, older workers) look
-- every time.
--
-- p_loads: look for loads (queued, and with p_rescue expired). That look is
-- a probe per available node (step 2 below), the count of each locked
-- node's busy slots and a walk of its queued loads: most of a claim's cost
-- while loads wait behind their nodes' caps, and under a transaction that
-- holds back xmin it grew with every load claimed since (the dead entries
-- of those indexes cannot be removed). A worker whose claims keep filling
-- up passes true at most every 0.25 s, always with p_rescue, and at once
-- again whenever a claim without it came back short (pool.c); so a load
-- waits at most that long, and only while every claim fills up with other
-- rows. false: no load is claimed or rescued this time. Callers that omit
-- it look every time.
DROP FUNCTION IF EXISTS vcl.claim(bigint, int, int);
DROP FUNCTION IF EXISTS vcl.claim(bigint, int, int, boolean);
DROP FUNCTION IF EXISTS vcl.claim(bigint, int, int, boolean, int, timestamptz, bigint);
CREATE OR REPLACE FUNCTION vcl.claim(p_worker_id bigint, p_limit int, p_lease_seconds int,
                                     p_rescue boolean DEFAULT true,
                                     p_after_priority int DEFAULT NULL,
                                     p_after_run_at timestamptz DEFAULT NULL,
                                     p_after_id bigint DEFAULT NULL,
                                     p_loads boolean DEFAULT true)
    RETURNS SETOF vcl.reservation
    LANGUAGE plpgsql VOLATILE
    SET plan_cache_mode = force_generic_plan
    SET jit = off
AS $$
DECLARE
    v_lease      interval;
    v_nodes      bigint[] := '{}';
    v_load_ids   bigint[] := '{}';
    v_free_nodes bigint[];
    v_free_slots bigint[];
    v_ids        bigint[];
    v_rescued    bigint[];
    v_expired    boolean;
    v_loads      boolean;
    v_epoch      bigint;
    v_want       int;
    v_resume     boolean;
    v_others     bigint[];
    v_lo         int;
    v_hi         int;
    v_after_at   timestamptz;
    v_after_id   bigint;
BEGIN
    PERFORM set_config('vcl.writer', 'worker', true);  -- its writes are the worker's (guard.sql)
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
    SELECT p_rescue AND EXISTS (SELECT 1 FROM vcl.reservation r
                                 WHERE r.state = 'running' AND r.lease_expires_at < now()),
           p_loads AND EXISTS (SELECT 1 FROM vcl.reservation r
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

    -- 2. Loads are capped per node. Only when a load could be claimed, lock
    -- the vcl.node row (FOR NO KEY UPDATE SKIP LOCKED, until this claim
    -- commits) of every available node that has a due pending load (or,
    -- looking for rescues, an expired one): a node another claimer holds is
    -- skipped this time, as SKIP LOCKED does, so two claimers never count
    -- the same node's free slots at once. Only the node's row, never an
    -- advisory lock key: only a role with UPDATE on vcl.node (operators,
    -- vcl_worker) can hold it, never a reader. Per node one index probe
    -- (reservation_load_pending_idx on load_node_id, 011_load_node.sql):
    -- the cost follows the nodes, not the queued loads (this step read
    -- every due pending load before: 22 ms at 10,000 queued loads). OFFSET
    -- 0 keeps each EXISTS a probe per node: without it the generic plan
    -- hashed it (they sit inside an OR) and read every due pending row of
    -- the queue, loads or not, on each claim: a cost that grew with the
    -- queue, and, under a long transaction holding back xmin, with every
    -- row claimed since (tests/bench/scale --phases held).
    IF v_loads THEN
        WITH locked AS MATERIALIZED (
            SELECT n.id
              FROM vcl.node n
             WHERE n.state = 'available'
               AND (EXISTS (SELECT 1 FROM vcl.reservation r
                             WHERE r.load_node_id = n.id AND r.operation = 'load' AND r.state = 'pending'
                               AND r.run_at <= now()
                            OFFSET 0)
                    OR (v_expired
                        AND EXISTS (SELECT 1 FROM vcl.reservation r
                                     WHERE r.load_node_id = n.id AND r.operation = 'load'
                                       AND (r.state = 'running' OR r.blocks_until IS NOT NULL)
                                       AND r.state = 'running' AND r.lease_expires_at < now()
                                       AND r.attempts < r.max_attempts
                                    OFFSET 0)))
             ORDER BY n.id
               FOR NO KEY UPDATE OF n SKIP LOCKED
        )
        SELECT coalesce(array_agg(locked.id ORDER BY locked.id), '{}') INTO v_nodes FROM locked;
    END IF;

    -- 3. For the locked nodes, the loads this claim may take: per node, the
    -- first (max_concurrent_loads - loads holding a slot) claimable loads in
    -- claim order. These are new statements, so their snapshots postdate
    -- the locks: they see every load an earlier holder of a lock claimed.
    IF cardinality(v_nodes) > 0 THEN
        -- 3a. free slots per locked node: max_concurrent_loads minus the
        -- loads holding a slot there: running with a live lease, and
        -- cancelled while running (their worker may still be inside a
        -- stage until the old lease lapses). Through
        -- reservation_load_busy_idx: only those nodes' running and blocking
        -- loads are read, never their queued ones.
        SELECT coalesce(array_agg(f.id), '{}'), coalesce(array_agg(f.slots), '{}')
          INTO v_free_nodes, v_free_slots
          FROM (SELECT n.id, n.max_concurrent_loads - b.loads AS slots
                  FROM vcl.node n
                 CROSS JOIN LATERAL (SELECT count(*) AS loads
                                       FROM vcl.reservation o
                                      WHERE o.load_node_id = n.id
                                        AND o.operation = 'load'
                                        AND (o.state = 'running' OR o.blocks_until IS NOT NULL)
                                        AND ((o.state = 'running' AND o.lease_expires_at >= now())
                                             OR o.blocks_until >= now())) b
                 WHERE n.id = ANY (v_nodes) AND n.state = 'available') f
         WHERE f.slots > 0;

        -- 3b. per node with free slots, its first <slots> claimable loads in
        -- claim order: the first entries of its own run of
        -- reservation_load_pending_idx (and, looking for rescues, its
        -- running loads whose lease expired), so a node's loads are found
        -- however many loads other nodes have queued ahead of them.
        IF cardinality(v_free_nodes) > 0 THEN
            SELECT coalesce(array_agg(t.id), '{}')
              INTO v_load_ids
              FROM (SELECT p.id
                      FROM unnest(v_free_nodes, v_free_slots) AS f(node_id, slots)
                     CROSS JOIN LATERAL (
                           SELECT c.id, c.priority, c.run_at
                             FROM ((SELECT q.id, q.priority, q.run_at
                                      FROM vcl.claimable q
                                     WHERE q.load_node_id = f.node_id AND q.operation = 'load'
                                       AND q.state = 'pending'
                                     ORDER BY q.priority DESC, q.run_at, q.id
                                     LIMIT least(f.slots, p_limit))
                                   UNION ALL
                                   (SELECT q.id, q.priority, q.run_at
                                      FROM vcl.claimable q
                                     WHERE v_expired
                                       AND q.load_node_id = f.node_id AND q.operation = 'load'
                                       AND (q.state = 'running' OR q.blocks_until IS NOT NULL) AND q.state = 'running'
                                     ORDER BY q.priority DESC, q.run_at, q.id
                                     LIMIT least(f.slots, p_limit))) c
                            ORDER BY c.priority DESC, c.run_at, c.id
                            LIMIT least(f.slots, p_limit)) p
                     -- no more than the claim can take: the first p_limit
                     ORDER BY p.priority DESC, p.run_at, p.id
                     LIMIT p_limit) t;
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

    -- Pending rows: the other operations through reservation_claim_idx,
    -- which holds no loads (011_load_node.sql), and the loads step 3 picked,
    -- by primary key; each set locked with SKIP LOCKED, and the first
    -- (p_limit - rescues) of both together in claim order claimed. One walk
    -- of an index of every pending row stepped over each load of a capped
    -- node queued ahead: thousands on every claim once real loads wait
    -- behind their nodes' caps. A picked load that loses to the others
    -- stays locked, unclaimed, until this claim commits (and the other way
    -- round): at most as many rows as loads were picked.
    --
    -- The walk of the others starts at the head of reservation_claim_idx,
    -- or, given a resume point (p_after_*: the last row in claim order that
    -- this caller's previous claim took), right after it. A claimed row's
    -- entry stays in the index until VACUUM (a claim is no HOT update: the
    -- state is in the index's predicate), and while a long transaction
    -- holds back xmin nobody may remove it or mark it dead: every walk from
    -- the head then steps over (and reads the heap tuple of) every row
    -- claimed since, and a claim grows with the age of the oldest snapshot
    -- (tests/bench/scale --phases held). From a resume point a walk steps
    -- over only what other claimers took meanwhile. Rows behind the point
    -- are still found: a higher priority is always walked from its head
    -- (part 1 below); what was skipped at the same priority (a computer's
    -- next row, waiting while the one before it ran; a row a DBA reset with
    -- an old run_at) by the caller's next walk from the head. The worker
    -- (pool.c) walks from the head at least once a second and whenever a
    -- walk from its resume point came back short, so a row behind it waits
    -- at most a second, and only while every claim fills up.
    -- Each part is one range of the index: priority between v_lo and v_hi,
    -- (run_at, id) after (v_after_at, v_after_id); all index conditions,
    -- so the skipped entries are stepped over in the index alone.
    IF cardinality(v_rescued) < p_limit THEN
        v_want := p_limit - cardinality(v_rescued);
        v_others := '{}';
        v_resume := p_after_id IS NOT NULL AND p_after_priority IS NOT NULL AND p_after_run_at IS NOT NULL;
        FOR v_part IN CASE WHEN v_resume THEN 1 ELSE 0 END .. CASE WHEN v_resume THEN 3 ELSE 0 END LOOP
            EXIT WHEN cardinality(v_others) >= v_want;
            v_after_at := '-infinity';
            v_after_id := -9223372036854775808;
            IF v_part = 0 THEN          -- from the head: the whole index
                v_lo := -2147483648;
                v_hi := 2147483647;
            ELSIF v_part = 1 THEN       -- higher priorities, from their head
                CONTINUE WHEN p_after_priority = 2147483647;
                v_lo := p_after_priority + 1;
                v_hi := 2147483647;
            ELSIF v_part = 2 THEN       -- the same priority, after the point
                v_lo := p_after_priority;
                v_hi := p_after_priority;
                v_after_at := p_after_run_at;
                v_after_id := p_after_id;
            ELSE                        -- lower priorities
                CONTINUE WHEN p_after_priority = -2147483648;
                v_lo := -2147483648;
                v_hi := p_after_priority - 1;
            END IF;
            WITH others AS MATERIALIZED (
                SELECT q.id
                  FROM vcl.claimable q
                 WHERE q.state = 'pending' AND q.operation <> 'load'
                   AND q.priority >= v_lo AND q.priority <= v_hi
                   AND (q.run_at, q.id) > (v_after_at, v_after_id)
                 ORDER BY q.priority DESC, q.run_at, q.id
                 LIMIT v_want - cardinality(v_others)
                   FOR NO KEY UPDATE SKIP LOCKED
            )
            SELECT v_others || coalesce(array_agg(others.id), '{}') INTO v_others FROM others;
        END LOOP;
        IF cardinality(v_load_ids) = 0 THEN
            v_ids := v_others;
        ELSE
            WITH loads AS MATERIALIZED (
                SELECT q.id, q.priority, q.run_at
                  FROM vcl.claimable q
                 WHERE q.id = ANY (v_load_ids) AND q.state = 'pending' AND q.operation = 'load'
                 ORDER BY q.priority DESC, q.run_at, q.id
                 LIMIT v_want
                   FOR NO KEY UPDATE SKIP LOCKED
            )
            SELECT coalesce(array_agg(a.id), '{}') INTO v_ids
              FROM (SELECT r.id, r.priority, r.run_at FROM vcl.reservation r WHERE r.id = ANY (v_others)
                    UNION ALL
                    SELECT loads.id, loads.priority, loads.run_at FROM loads
                     ORDER BY 2 DESC, 3, 1
                     LIMIT v_want) a;
        END IF;
    ELSE
        v_ids := '{}';
    END IF;
    v_ids := v_rescued || v_ids;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    -- fencing tokens: (epoch << 40) | seq, the epoch bumped on a new primary
    -- (sql/006_epoch.sql); NULL for a lease after a failover: nothing yet
    v_epoch := vcl.lease_epoch(p_lease_seconds);
    IF v_epoch IS NULL THEN
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
               lease_token = (v_epoch << 40) | nextval('vcl.lease_token_seq'),
               lease_expires_at = now() + v_lease,
               attempts = r.attempts + 1,
               lease_expiries = r.lease_expiries + CASE WHEN r.state = 'running' THEN 1 ELSE 0 END,
               started_at = coalesce(r.started_at, clock_timestamp())
         WHERE r.id = ANY (v_ids)
     RETURNING r.*;
END;
$$;
COMMENT ON FUNCTION vcl.claim(bigint, int, int, boolean, int, timestamptz, bigint, boolean) IS
    'Claim up to p_limit rows of vcl.claimable for worker p_worker_id with a lease of p_lease_seconds: '
    'due pending rows and running rows whose lease expired (rescue); per computer one at a time in id order; '
    'loads only on available nodes and within max_concurrent_loads. Each claimed row gets a new lease_token '
    '(fencing token). Also fails running rows whose lease expired with no attempt left. Rows come back in no '
    'particular order. Run in READ COMMITTED. p_rescue false skips the look for expired leases (a worker looks '
    'at most once a second). p_after_priority/run_at/id: walk the other pending rows from just after that row in '
    'claim order (the last one the caller claimed) instead of from the head; rows of a higher priority are still '
    'walked from their head. p_loads false: claim (and rescue) no load this time.';

-- ---------------------------------------------------------------------------
-- per-job calls: cached plans, primary-key lookups, pairwise fencing
-- ---------------------------------------------------------------------------

-- The token of reservation p_id in the (p_ids, p_tokens) pairs.
CREATE OR REPLACE FUNCTION vcl.token_of(p_id bigint, p_ids bigint[], p_tokens bigint[])
    RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN p_tokens[array_position(p_ids, p_id)];
COMMENT ON FUNCTION vcl.token_of(bigint, bigint[], bigint[]) IS
    'The token paired with reservation p_id in parallel arrays (ids, tokens); NULL when p_id is not there.';

-- The fence of every per-job write: the row's lease token while it runs,
-- NULL otherwise, compared with the caller's token:
--     r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
-- means the same as "r.id = p_id AND r.lease_token = p_token AND r.state =
-- 'running'", but as one expression (the function is inlined into a CASE).
-- Written out as three clauses, the clause r.state = 'running' matches the
-- predicate of the partial indexes of running rows, and the cached generic
-- plan of a fenced statement walked all of reservation_one_running_per_computer
-- (every running row, and every dead entry not yet vacuumed) with the id as
-- a filter, instead of one probe of the primary key: the two cost the same
-- to the planner when the statistics say that no row runs. That walk cost
-- 60-80 buffer reads per fenced statement, and under a transaction holding
-- back xmin (nothing can be vacuumed) it grew with every row run since:
-- 1,550 per statement after 20,000 jobs (tests/bench/scale --phases held).
-- tests/integration/11-fence-plans.t checks the plans.
CREATE OR REPLACE FUNCTION vcl.running_token(p_state text, p_token bigint)
    RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN p_state = 'running' THEN p_token END;
COMMENT ON FUNCTION vcl.running_token(text, bigint) IS
    'A reservation''s lease token while it runs (p_state ''running''), NULL otherwise: the fence of every per-job '
    'write, as one expression so that a fenced lookup by id always probes the primary key.';

CREATE OR REPLACE FUNCTION vcl.heartbeat(p_worker_id bigint, p_ids bigint[], p_tokens bigint[], p_lease_seconds int)
    RETURNS SETOF bigint
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('vcl.writer', 'worker', true);  -- its writes are the worker's (guard.sql)
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
               AND vcl.running_token(r.state, r.lease_token) = vcl.token_of(r.id, p_ids, p_tokens)
         RETURNING r.id
        )
        SELECT renewed.id FROM renewed ORDER BY renewed.id;
    END IF;
END;
$$;
COMMENT ON FUNCTION vcl.heartbeat(bigint, bigint[], bigint[], int) IS
    'Extend the leases of the (id, token) pairs still running under that token; returns the ids extended '
    '(a missing id has lost its lease: stop touching it). Also records the worker''s heartbeat_at.';

-- Completing a job may leave work behind it that no INSERT announces: the
-- computer's next row, or (a load finished) a node's next load. The worker
-- that completed it claims again anyway; the NOTIFY is for the others.
--
-- vcl_done (notify.sql) for the rows it completes is sent here, in one
-- set-based statement, not by trigger reservation_notify_done: that trigger
-- is row level and SECURITY DEFINER, and was a third of PostgreSQL's CPU per
-- job in a drain of noops (37.7 against 24.8 us per job in batches of 256,
-- README "Performance"). The transaction-local setting vcl.done_notify =
-- 'complete' tells the trigger's WHEN to let this UPDATE pass; it is cleared
-- right after it (and an error rolls it back with the rest).
CREATE OR REPLACE FUNCTION vcl.complete(p_ids bigint[], p_tokens bigint[])
    RETURNS SETOF bigint
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_done      bigint[];
    v_computers bigint[];
    v_nodes     bigint[];
    v_loads     boolean;
BEGIN
    PERFORM set_config('vcl.writer', 'worker', true);  -- its writes are the worker's (guard.sql)
    PERFORM set_config('vcl.done_notify', 'complete', true);
    WITH done AS (
        UPDATE vcl.reservation r
           SET state = 'done', finished_at = now(), lease_expires_at = NULL
         WHERE r.id = ANY (p_ids)
           AND vcl.running_token(r.state, r.lease_token) = vcl.token_of(r.id, p_ids, p_tokens)
     RETURNING r.id, r.computer_id, r.node_id, r.operation
    )
    SELECT array_agg(done.id ORDER BY done.id), array_agg(done.computer_id),
           array_remove(array_agg(done.node_id), NULL),
           coalesce(bool_or(done.operation = 'load'), false)
      INTO v_done, v_computers, v_nodes, v_loads
      FROM done;
    PERFORM set_config('vcl.done_notify', '', true);
    IF v_done IS NULL THEN
        RETURN;
    END IF;
    -- vcl_done, as vcl.reservation_notify_done sends it, one per row
    PERFORM pg_notify('vcl_done', vcl.done_payload(r.id, r.operation, 'done', c.name,
                                                   coalesce(cn.name, rn.name), NULL))
       FROM vcl.reservation r
       LEFT JOIN vcl.computer c ON c.id = r.computer_id
       LEFT JOIN vcl.node cn ON cn.id = c.node_id
       LEFT JOIN vcl.node rn ON rn.id = r.node_id AND r.computer_id IS NULL
      WHERE r.id = ANY (v_done)
      ORDER BY r.id;
    -- Work these jobs held back: the computers' next rows, or (a load
    -- finished) a node's next load. The worker that completed them claims
    -- again anyway; the NOTIFY is for the others (folded per transaction).
    IF EXISTS (SELECT 1 FROM vcl.reservation n
                WHERE n.computer_id = ANY (v_computers) AND n.state = 'pending')
       OR (cardinality(v_nodes) > 0
           AND EXISTS (SELECT 1 FROM vcl.reservation n
                        WHERE n.node_id = ANY (v_nodes) AND n.state = 'pending'))
       OR (v_loads AND EXISTS (SELECT 1 FROM vcl.reservation n
                                WHERE n.operation = 'load' AND n.state = 'pending')) THEN
        PERFORM pg_notify('vcl_reservation', 'next');
    END IF;
    RETURN QUERY SELECT unnest(v_done);
END;
$$;
COMMENT ON FUNCTION vcl.complete(bigint[], bigint[]) IS
    'Fenced batch: mark each (id, token) still running under that token done; returns the ids completed.';

CREATE OR REPLACE FUNCTION vcl.fail(p_id bigint, p_token bigint, p_error text, p_stage text, p_permanent boolean,
                                    p_retry_in_seconds double precision)
    RETURNS text
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_state text;
BEGIN
    PERFORM set_config('vcl.writer', 'worker', true);  -- its writes are the worker's (guard.sql)
    UPDATE vcl.reservation r
       SET state = CASE WHEN p_permanent OR r.attempts >= r.max_attempts THEN 'failed' ELSE 'pending' END,
           finished_at = CASE WHEN p_permanent OR r.attempts >= r.max_attempts THEN now() END,
           run_at = CASE WHEN p_permanent OR r.attempts >= r.max_attempts THEN r.run_at
                         ELSE now() + make_interval(secs => greatest(coalesce(p_retry_in_seconds, 0), 0)) END,
           lease_expires_at = NULL,
           last_error = p_error,
           failed_stage = p_stage
     WHERE r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
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

CREATE OR REPLACE FUNCTION vcl.release(p_ids bigint[], p_tokens bigint[])
    RETURNS SETOF bigint
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('vcl.writer', 'worker', true);  -- its writes are the worker's (guard.sql)
    RETURN QUERY
    WITH released AS (
        UPDATE vcl.reservation r
           SET state = 'pending', run_at = now(), attempts = greatest(r.attempts - 1, 0),
               lease_expires_at = NULL, worker_id = NULL
         WHERE r.id = ANY (p_ids)
           AND vcl.running_token(r.state, r.lease_token) = vcl.token_of(r.id, p_ids, p_tokens)
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
COMMENT ON FUNCTION vcl.release(bigint[], bigint[]) IS
    'Fenced batch hand-back at graceful shutdown: pending, run now, the attempt not counted; returns the ids released.';

CREATE OR REPLACE FUNCTION vcl.cancel(p_id bigint)
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
-- when to look again
-- ---------------------------------------------------------------------------

-- Quiet when idle: a worker does not poll every few seconds to notice work
-- that became claimable without an INSERT. vcl.next_due() tells it when the
-- next retry, lease expiry or cancel block falls due (NOTIFY covers the rest:
-- notify.sql).
CREATE OR REPLACE FUNCTION vcl.next_due()
    RETURNS double precision
    LANGUAGE sql STABLE
    RETURN extract(epoch FROM least(
        (SELECT min(r.run_at) FROM vcl.reservation r
          WHERE r.state = 'pending' AND r.run_at > now()),
        (SELECT min(r.lease_expires_at) FROM vcl.reservation r
          WHERE r.state = 'running' AND r.lease_expires_at > now()),
        (SELECT min(r.blocks_until) FROM vcl.reservation r
          WHERE r.blocks_until IS NOT NULL AND r.blocks_until >= now()),
        vcl.epoch_fenced_until()) - now());
COMMENT ON FUNCTION vcl.next_due() IS
    'Seconds from now until something may become claimable without a NOTIFY: the earliest future run_at '
    '(retry backoff, scheduled work), lease expiry (rescue), end of a cancel block or of the fence after a '
    'failover (vcl.epoch.fenced_until); NULL when nothing is '
    'scheduled. Only future times count (a row already due but not claimable, e.g. its computer in maintenance, '
    'waits for a NOTIFY or the poll). An idle worker sleeps until then (or its poll_seconds).';

-- ---------------------------------------------------------------------------
-- history
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION vcl.prune_history(p_older_than interval, p_batch int)
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
-- triggers: the DBA's plain-SQL retry, and finished_at for plain-SQL ends
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION vcl.reservation_reset() RETURNS trigger
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

CREATE OR REPLACE TRIGGER reservation_reset
    BEFORE UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.state = 'pending' AND OLD.state IN ('failed', 'cancelled', 'done'))
    EXECUTE FUNCTION vcl.reservation_reset();

CREATE OR REPLACE FUNCTION vcl.reservation_finished_at() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.finished_at := now();
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_finished_at() IS
    'BEFORE UPDATE trigger: a row set to done/failed/cancelled by plain SQL gets finished_at (retention needs it).';

CREATE OR REPLACE TRIGGER reservation_finished_at
    BEFORE UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.state IN ('done', 'failed', 'cancelled') AND NEW.finished_at IS NULL)
    EXECUTE FUNCTION vcl.reservation_finished_at();


-- ---------------------------------------------------------------------------
-- triggers: the node of a load (load_node_id, 011_load_node.sql)
-- ---------------------------------------------------------------------------

-- A load's load_node_id is its computer's node_id, whoever writes the row
-- and whatever they write: set on INSERT, when computer_id or operation
-- changes, when a finished load is reset to pending (a computer may have
-- moved since: finished loads are not followed), and when anyone writes
-- load_node_id itself (vcl.computer_moved does, below; the guard passes a
-- non-worker's value on to here). The computer row is read FOR SHARE: it
-- conflicts with the UPDATE of a move (FOR NO KEY UPDATE), so a move either
-- committed before this read (which, a locking read, then sees the new
-- node) or waits until this row is committed, and vcl.computer_moved then
-- updates it. (FOR KEY SHARE, what the foreign key check takes, would let
-- an INSERT read the old node under an open move and keep it.) A write-back
-- to the computer (node_status) waits for an open INSERT of a load of it,
-- and the other way round. SECURITY DEFINER: the row lock needs a
-- privilege a submitter does not have.
CREATE OR REPLACE FUNCTION vcl.reservation_load_node() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.operation = 'load' THEN
        SELECT c.node_id INTO NEW.load_node_id
          FROM vcl.computer c
         WHERE c.id = NEW.computer_id
           FOR SHARE;
    ELSE
        NEW.load_node_id := NULL;
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_load_node() IS
    'BEFORE INSERT/UPDATE trigger: load_node_id of a load is its computer''s node_id (NULL for other operations), '
    'whatever the writer gave.';

-- Named to fire after reservation_guard (BEFORE triggers fire in name
-- order), which resets or keeps worker-owned columns for non-workers. The
-- WHENs keep every other write (claims, heartbeats, completions) free of it.
CREATE OR REPLACE TRIGGER reservation_load_node_insert
    BEFORE INSERT ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.operation = 'load' OR NEW.load_node_id IS NOT NULL)
    EXECUTE FUNCTION vcl.reservation_load_node();

CREATE OR REPLACE TRIGGER reservation_load_node_update
    BEFORE UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.load_node_id IS DISTINCT FROM OLD.load_node_id
          OR NEW.computer_id IS DISTINCT FROM OLD.computer_id
          OR NEW.operation IS DISTINCT FROM OLD.operation
          OR (NEW.operation = 'load' AND NEW.state = 'pending' AND OLD.state IN ('done', 'failed', 'cancelled')))
    EXECUTE FUNCTION vcl.reservation_load_node();

-- A computer moved to another node: its pending, running and blocking loads
-- now count against (and are claimed through) the new node, as they did
-- when the claim read the node through the computer. The UPDATE of the
-- computer row waited for every open INSERT of a load of it (each holds
-- FOR SHARE on it: vcl.reservation_load_node), so the UPDATE below, a new
-- statement with a new snapshot, sees those loads. Wakes the workers: the
-- new node may have a free slot. SECURITY INVOKER: only the inventory's
-- owner may change computer.node_id (grants.sql), and it may update the
-- reservations too.
CREATE OR REPLACE FUNCTION vcl.computer_moved() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE vcl.reservation r
       SET load_node_id = NEW.node_id
     WHERE r.computer_id = NEW.id
       AND r.operation = 'load'
       AND (r.state IN ('pending', 'running') OR r.blocks_until IS NOT NULL)
       AND r.load_node_id IS DISTINCT FROM NEW.node_id;
    IF FOUND THEN
        PERFORM pg_notify('vcl_reservation', 'moved');
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION vcl.computer_moved() IS
    'AFTER UPDATE OF node_id trigger on vcl.computer: the computer''s pending, running and blocking loads get the new '
    'node as load_node_id (the per-node load cap follows the computer).';

CREATE OR REPLACE TRIGGER computer_moved
    AFTER UPDATE OF node_id ON vcl.computer
    FOR EACH ROW
    WHEN (NEW.node_id IS DISTINCT FROM OLD.node_id)
    EXECUTE FUNCTION vcl.computer_moved();
