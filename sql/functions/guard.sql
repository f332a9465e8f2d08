-- functions/guard.sql: who may write which column of vcl.reservation
-- (issue #12, trust boundaries for rows).
--
-- A reservation row is written by two kinds of writers:
--   the worker     everything: the checkpoint (stage), the generated XML, the
--                  lease, attempts, times, results;
--   anyone else    (vcl_submitter: the web front end; a DBA, superusers
--                  included) the columns a submitter chooses on INSERT
--                  (computer_id, node_id, image_revision_id, operation, args,
--                  priority, run_at, max_attempts, dedup_key) and, on UPDATE,
--                  the dedup_key (a DBA may clear it) and the state
--                  changes a DBA may make: a finished row (done, failed,
--                  cancelled) back to pending, optionally clearing the
--                  checkpoint (stage = NULL: rerun every stage); a pending
--                  or running row to cancelled; priority, run_at,
--                  max_attempts.
-- The trigger vcl.reservation_guard holds "anyone else" to that, whatever
-- their table privileges: worker-owned columns are reset on INSERT and kept
-- on UPDATE (a row cannot bring its own domain XML, checkpoint, lease or
-- blocks_until), and a running row cannot be set back to pending or edited
-- by hand (it is refused with the way to cancel it: a second worker would
-- otherwise claim it while the first is still inside a stage).
--
-- Telling the worker apart (vcl.writer_is_worker): its connections set the
-- session setting vcl.writer = 'worker' (worker/queue/db.c, db_set_writer),
-- AND the role writing is a member of vcl_worker or the table's owner (who
-- has TRIGGER on it; a superuser is both). The
-- setting alone proves nothing (any login can SET a custom setting), the
-- role alone does not tell a superuser DBA's plain SQL from the worker's; a
-- row (INSERT/UPDATE values) can fake neither. A superuser who deliberately
-- runs SET vcl.writer = 'worker' acts as the worker, as one could also
-- disable the trigger: the guard stops mistakes and untrusted submitters,
-- not the cluster's owner. Tests that stand in for a worker do exactly that.
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`.

CREATE OR REPLACE FUNCTION vcl.writer_is_worker()
    RETURNS boolean
    LANGUAGE sql STABLE
    -- No sub-query (the WHEN of every row the worker writes runs it: it
    -- stays an inlined expression over the catalog caches). Superusers pass
    -- both role tests; TRIGGER on the table is its owner's (who could drop
    -- the guard anyway), so a worker may run as the owner where vcl_worker
    -- could not be created.
    RETURN coalesce(current_setting('vcl.writer', true), '') = 'worker'
           AND (coalesce(pg_catalog.pg_has_role(pg_catalog.to_regrole('vcl_worker')::oid, 'USAGE'), false)
                OR pg_catalog.has_table_privilege('vcl.reservation', 'TRIGGER'));
COMMENT ON FUNCTION vcl.writer_is_worker() IS
    'True when this session writes as a vcl-worker: setting vcl.writer = ''worker'' and the current role is a member '
    'of vcl_worker or may create triggers on vcl.reservation (its owner; superusers are both). Called by the WHEN of '
    'trigger reservation_guard (so executable by everyone).';

CREATE OR REPLACE FUNCTION vcl.reservation_guard() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cancel text;
    v_new    vcl.reservation;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- A new row starts from nothing, whatever the INSERT said: every
        -- column but the submitter's ones (a worker-owned column added
        -- later is added here too; the UPDATE below keeps them all).
        NEW.state := 'pending';
        NEW.stage := NULL;
        NEW.attempts := 0;
        NEW.lease_token := NULL;
        NEW.worker_id := NULL;
        NEW.lease_expires_at := NULL;
        NEW.lease_expiries := 0;
        NEW.blocks_until := NULL;
        NEW.load_node_id := NULL;  -- set from the computer next (reservation_load_node)
        NEW.last_error := NULL;
        NEW.failed_stage := NULL;
        NEW.domain_uuid := gen_random_uuid();
        NEW.domain_xml := NULL;
        NEW.created_at := now();
        NEW.started_at := NULL;
        NEW.finished_at := NULL;
        RETURN NEW;
    END IF;

    v_cancel := format('cancel it first: vclctl cancel %s (or UPDATE vcl.reservation SET state = ''cancelled'' '
                       'WHERE id = %s); a cancelled row can then be retried (SET state = ''pending'')',
                       OLD.id, OLD.id);
    -- The state changes a DBA may make.
    IF NEW.state IS DISTINCT FROM OLD.state
       AND NOT (NEW.state = 'cancelled' AND OLD.state IN ('pending', 'running'))
       AND NOT (NEW.state = 'pending' AND OLD.state IN ('done', 'failed', 'cancelled')) THEN
        IF OLD.state = 'running' THEN
            RAISE EXCEPTION 'reservation % is running (worker %, stage after %): it cannot be set to % by hand',
                OLD.id, coalesce(OLD.worker_id::text, '?'), coalesce(OLD.stage, 'none'), NEW.state
                USING ERRCODE = 'object_in_use',
                      HINT = 'Its worker may be inside a stage right now; ' || v_cancel || '.';
        END IF;
        RAISE EXCEPTION 'reservation %: the state change % -> % is the worker''s to make', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'By hand: a done, failed or cancelled row may be set to pending (retry), a pending or running '
                         'row to cancelled.';
    END IF;
    IF OLD.state = 'running'
       AND (NEW.computer_id, NEW.node_id, NEW.image_revision_id, NEW.operation, NEW.args, NEW.stage)
           IS DISTINCT FROM (OLD.computer_id, OLD.node_id, OLD.image_revision_id, OLD.operation, OLD.args, OLD.stage) THEN
        RAISE EXCEPTION 'reservation % is running: its computer, image, operation, args and checkpoint cannot change by hand',
            OLD.id
            USING ERRCODE = 'object_in_use', HINT = v_cancel || ', then change it.';
    END IF;

    -- Every column is the worker's but the submitter's ones (a column added
    -- later is the worker's too until it is named here): a DBA's values for
    -- the others are ignored. The checkpoint may only be cleared (rerun
    -- every stage), never set (skip stages).
    -- load_node_id (a load's node) is passed on, whatever its value, to
    -- trigger reservation_load_node, which fires next and sets it from the
    -- computer: so a DBA cannot point a load at another node, and a
    -- computer's move (vcl.computer_moved, running as this writer) reaches
    -- its loads.
    v_new := NEW;
    NEW := OLD;
    SELECT v_new.computer_id, v_new.node_id, v_new.image_revision_id, v_new.operation, v_new.args,
           v_new.priority, v_new.run_at, v_new.max_attempts, v_new.state, v_new.dedup_key,
           CASE WHEN v_new.stage IS NULL THEN NULL ELSE OLD.stage END, v_new.load_node_id
      INTO NEW.computer_id, NEW.node_id, NEW.image_revision_id, NEW.operation, NEW.args,
           NEW.priority, NEW.run_at, NEW.max_attempts, NEW.state, NEW.dedup_key, NEW.stage, NEW.load_node_id;

    -- What the allowed changes imply (the reset to pending: reservation_reset,
    -- which runs after this trigger: triggers fire in name order).
    IF NEW.state = 'cancelled' AND OLD.state <> 'cancelled' THEN
        NEW.finished_at := now();
        IF OLD.state = 'running' THEN
            -- As vcl.cancel: the worker may still be inside a stage until
            -- its lease would have expired; the computer waits until then.
            NEW.blocks_until := OLD.lease_expires_at;
            NEW.lease_expires_at := NULL;
            UPDATE vcl.reservation_stage s
               SET outcome = 'abandoned', finished_at = clock_timestamp(),
                   detail = concat_ws('; ', s.detail, 'reservation cancelled while the stage ran')
             WHERE s.reservation_id = OLD.id AND s.outcome = 'running';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_guard() IS
    'BEFORE INSERT/UPDATE trigger for every writer but the worker: resets worker-owned columns on INSERT, keeps them '
    'on UPDATE, allows only the DBA''s state changes (finished -> pending, pending/running -> cancelled) and refuses '
    'a hand-made change of a running row with the way to cancel it.';

-- Named so that it fires before reservation_reset (BEFORE triggers fire in
-- name order) and after reservation_finished_at (whose finished_at it
-- replaces with its own). The WHEN keeps the worker's own writes (claims,
-- heartbeats, checkpoints) free of the trigger's cost.
CREATE OR REPLACE TRIGGER reservation_guard
    BEFORE INSERT OR UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NOT vcl.writer_is_worker())
    EXECUTE FUNCTION vcl.reservation_guard();
