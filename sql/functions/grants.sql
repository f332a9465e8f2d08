-- functions/grants.sql: what the database roles may do (the roles
-- themselves are created by 001_baseline.sql and, vcl_submitter,
-- 005_trust_rows.sql).
--   vcl_worker  reads everything and writes only what a worker writes: the
--               queue through its functions, the stage log, its vcl.worker
--               row, the written-back columns of vcl.computer, captures.
--   vcl_submitter  queues work: SELECT on every table and view; INSERT of
--               the columns a submitter chooses on vcl.reservation (with
--               dedup_key); UPDATE
--               of the columns of a DBA's retry or cancel (state, stage,
--               run_at, priority, max_attempts). Which values it may write
--               there is the trigger's business (guard.sql), for every role.
--   vcl_reader  SELECT on every table and view of schema vcl; EXECUTE on the
--               read-only estimate functions; nothing else.
--
-- A live file (see ORDER), and the last one: re-applied by every `vclctl
-- migrate`, after the numbered migrations and the other live files, in the
-- same transaction. Every statement is idempotent, so running it again
-- changes nothing; it is also what makes the privileges right again after
-- views.sql made its views anew, after a live file added a function, after a
-- migration added a table, and after a DBA created the roles only after the
-- first migrate (each block is skipped, with a NOTICE, while its role does
-- not exist).
--
-- Functions: EXECUTE is granted to PUBLIC by default. The queue functions
-- are SECURITY INVOKER, so that gave no table access, but a read-only role
-- could still run them (as vcl_reader, `SELECT vcl.claim(NULL, NULL, NULL)`
-- ran without error, and the others failed only inside, at their first
-- write). So every function of schema vcl except trigger functions and the
-- pure check that vcl.node's CHECK constraint calls is executable by
-- vcl_worker only (and by superusers and the owner): any other role gets
-- "permission denied for function ..." before anything runs. A new function
-- needs nothing here: the loop below finds it.

DO $$
DECLARE
    f regprocedure;
    has_worker boolean := EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_worker');
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'vcl'
           AND p.prokind = 'f'
           AND p.prorettype <> 'trigger'::regtype
           -- CHECK (vcl.repository_paths_valid(...)) on vcl.node runs with the
           -- privileges of whoever inserts a node, and the WHEN of trigger
           -- reservation_guard (vcl.writer_is_worker) with those of whoever
           -- writes a reservation: they stay PUBLIC.
           AND p.proname NOT IN ('repository_paths_valid', 'writer_is_worker')
         ORDER BY 1
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        IF has_worker THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO vcl_worker', f);
        END IF;
    END LOOP;
    IF NOT has_worker THEN
        RAISE NOTICE 'role vcl_worker missing: queue functions are executable by their owner and superusers only';
    END IF;
END;
$$;
-- Trigger functions keep PUBLIC's EXECUTE (only their triggers call them),
-- but for this one, closed since it came (002_node_cpu).
REVOKE EXECUTE ON FUNCTION vcl.node_cpu_mode_changed() FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_worker') THEN
        RAISE NOTICE 'role vcl_worker missing: no grants made to it';
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA vcl TO vcl_worker;
    -- read everything (inventory, queue, views, schema_migrations)
    GRANT SELECT ON ALL TABLES IN SCHEMA vcl TO vcl_worker;
    -- queue writes (through the functions); DELETE for vcl.prune_history;
    -- row locks of vcl.claim / vcl.stage_start need UPDATE on reservation;
    -- INSERT for a capture's after=reload load.
    GRANT INSERT, UPDATE, DELETE ON vcl.reservation TO vcl_worker;
    GRANT INSERT, UPDATE ON vcl.reservation_stage TO vcl_worker;
    GRANT INSERT, UPDATE ON vcl.worker TO vcl_worker;
    -- write-back of node_status and what the computer now holds on its node
    GRANT UPDATE (node_status, current_revision_id, domain_name, domain_uuid, cow_path, master_path,
                  xml_path, post_load_at, status_reason, status_at, state)
          ON vcl.computer TO vcl_worker;
    -- capture: its target row, and the new revision the register stage adds
    GRANT INSERT, UPDATE ON vcl.capture TO vcl_worker;
    -- master copy locks (locks.sql): vcl_worker is the only writer
    GRANT INSERT, UPDATE, DELETE ON vcl.image_lock TO vcl_worker;
    -- recorded temp files (tempfiles.sql): vcl_worker is the only writer
    GRANT INSERT, UPDATE, DELETE ON vcl.temp_file TO vcl_worker;
    GRANT INSERT ON vcl.image_revision TO vcl_worker;
    -- vcl.claim locks rows through the view (FOR NO KEY UPDATE needs UPDATE
    -- on it; the view is security_invoker, so the caller's own table
    -- privileges still apply underneath)
    GRANT UPDATE ON vcl.claimable TO vcl_worker;
    -- what a CPU probe found (the node row is otherwise the operators')
    GRANT UPDATE (cpu_mode_resolved, cpu_probe, cpu_probed_at) ON vcl.node TO vcl_worker;
    -- and what a node_check reservation found
    GRANT UPDATE (checked_at, check_ok, check_report) ON vcl.node TO vcl_worker;
    GRANT USAGE, SELECT ON SEQUENCE vcl.lease_token_seq TO vcl_worker;
    -- vcl.lease_epoch: the first claim on a new primary bumps the epoch
    GRANT SELECT, INSERT, UPDATE ON vcl.epoch TO vcl_worker;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA vcl TO vcl_worker;
END;
$$;

-- What readers and submitters both may do: read.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['vcl_reader', 'vcl_submitter'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            RAISE NOTICE 'role % missing: no grants made to it', r;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA vcl TO %I', r);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA vcl TO %I', r);   -- tables and views
        -- the estimates only read, so DBAs (and vclctl show --follow as
        -- one) may call them
        EXECUTE format('GRANT EXECUTE ON FUNCTION vcl.stage_estimate(text, bigint, text, int, int, bigint), '
                       'vcl.reservation_estimates(bigint, text[]) TO %I', r);
        -- tables and views made later by the role that migrates (the next
        -- migrate grants them anyway; this covers the time in between)
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA vcl GRANT SELECT ON TABLES TO %I', r);
    END LOOP;
END;
$$;

-- What only submitters may do: queue work, retry and cancel it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_submitter') THEN
        RETURN;
    END IF;
    -- a new row: what to do, where, when, how urgently, how often to try
    -- (and under which de-duplication key: 008_dedup.sql)
    GRANT INSERT (computer_id, node_id, image_revision_id, operation, args, priority, run_at, max_attempts,
                  dedup_key)
          ON vcl.reservation TO vcl_submitter;
    -- a retry (state pending, stage NULL to rerun every stage), a cancel
    -- (state cancelled), rescheduling; guard.sql decides which values pass
    GRANT UPDATE (state, stage, run_at, priority, max_attempts) ON vcl.reservation TO vcl_submitter;
END;
$$;
