-- 004_roles.sql: the two database roles of the design.
--   vcl_worker  what a vcl-worker needs (NOLOGIN: grant it to the login role
--               the worker connects as: GRANT vcl_worker TO vclw;)
--   vcl_reader  read-only, for DBAs and dashboards
-- Roles are cluster-wide: creating one is skipped with a NOTICE when it exists
-- already or the migrating user lacks CREATEROLE, so this migration never
-- fails for that. Grants are made whenever the role exists.
--
-- The queue functions are SECURITY INVOKER: EXECUTE (granted to PUBLIC by
-- default) gives nothing beyond the caller's own table privileges, so they
-- are left executable by PUBLIC and granted explicitly to vcl_worker.

DO $$
DECLARE
    r text;
    can_create boolean;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO can_create FROM pg_roles WHERE rolname = current_user;
    FOREACH r IN ARRAY ARRAY['vcl_worker', 'vcl_reader'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            RAISE NOTICE 'role % exists already: not created', r;
        ELSIF NOT coalesce(can_create, false) THEN
            RAISE NOTICE 'role % not created: % lacks CREATEROLE (a DBA can: CREATE ROLE % NOLOGIN; then rerun the grants in 004_roles.sql)',
                r, current_user, r;
        ELSE
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            RAISE NOTICE 'role % created', r;
        END IF;
    END LOOP;
END;
$$;

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
    -- row locks of vcl.claim / vcl.stage_start need UPDATE on reservation.
    GRANT UPDATE, DELETE ON vcl.reservation TO vcl_worker;
    GRANT INSERT, UPDATE ON vcl.reservation_stage TO vcl_worker;
    GRANT INSERT, UPDATE ON vcl.worker TO vcl_worker;
    -- write-back of node_status and what the computer now holds on its node
    GRANT UPDATE (node_status, current_revision_id, domain_name, domain_uuid, cow_path, master_path,
                  xml_path, post_load_at, status_reason, status_at, state)
          ON vcl.computer TO vcl_worker;
    GRANT USAGE, SELECT ON SEQUENCE vcl.lease_token_seq TO vcl_worker;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA vcl TO vcl_worker;
    GRANT EXECUTE ON FUNCTION
        vcl.claim(bigint, int, int),
        vcl.heartbeat(bigint, bigint[], bigint[], int),
        vcl.stage_start(bigint, bigint, text),
        vcl.stage_finish(bigint, bigint, bigint, boolean, text, boolean),
        vcl.complete(bigint[], bigint[]),
        vcl.fail(bigint, bigint, text, text, boolean, double precision),
        vcl.release(bigint[], bigint[]),
        vcl.cancel(bigint),
        vcl.register_worker(text, text, int, int, text),
        vcl.worker_stopped(bigint),
        vcl.prune_history(interval, int)
        TO vcl_worker;
END;
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_reader') THEN
        RAISE NOTICE 'role vcl_reader missing: no grants made to it';
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA vcl TO vcl_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA vcl TO vcl_reader;   -- tables and views
    -- tables and views added by later migrations (run by the same role)
    ALTER DEFAULT PRIVILEGES IN SCHEMA vcl GRANT SELECT ON TABLES TO vcl_reader;
END;
$$;
