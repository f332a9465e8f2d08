-- 009_role_grants.sql: what tests/integration/85-roles.t found missing in the
-- roles of 004_roles.sql (applied migrations are never edited; this one only
-- adds to them, and can run again).
--
-- 1. EXECUTE on the queue functions was left to PUBLIC. They are SECURITY
--    INVOKER, so that gave no table access, but a read-only role could still
--    run them: as vcl_reader, `SELECT vcl.claim(NULL, NULL, NULL)` ran without
--    error, and the others failed only inside, at their first write. Now every
--    function of schema vcl except trigger functions and pure checks used by
--    table constraints is executable by vcl_worker only (and by superusers and
--    the owner): any other role gets "permission denied for function ..."
--    before anything runs. A later migration that adds a function the worker
--    calls must GRANT EXECUTE on it to vcl_worker (and REVOKE it FROM PUBLIC).
-- 2. Both roles read every table and view, including those added after 004
--    by a role other than the one that ran 004's ALTER DEFAULT PRIVILEGES.

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
           -- privileges of whoever inserts a node: it stays PUBLIC.
           AND p.proname NOT IN ('repository_paths_valid')
         ORDER BY 1
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        IF has_worker THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO vcl_worker', f);
        END IF;
    END LOOP;
    IF NOT has_worker THEN
        RAISE NOTICE 'role vcl_worker missing: queue functions are now executable by their owner and superusers only';
    END IF;
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_worker') THEN
        GRANT USAGE ON SCHEMA vcl TO vcl_worker;
        GRANT SELECT ON ALL TABLES IN SCHEMA vcl TO vcl_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_reader') THEN
        GRANT USAGE ON SCHEMA vcl TO vcl_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA vcl TO vcl_reader;
    END IF;
END;
$$;
