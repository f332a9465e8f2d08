-- functions/notify.sql: wake-ups. Idle workers LISTEN on vcl_reservation and
-- claim when it speaks (with vcl.next_due and a poll as fallback); the domain
-- watchers LISTEN on vcl_node. A transaction that sends NOTIFY takes a global
-- lock at commit, so never one NOTIFY per row of a bulk change: statement
-- triggers, and identical notifications of a transaction are folded by
-- PostgreSQL into one. (vcl.complete sends 'next' itself: queue.sql.)
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`, after the
-- numbered migrations, in the same transaction; every object here is
-- CREATE OR REPLACE.

CREATE OR REPLACE FUNCTION vcl.reservation_notify_insert() RETURNS trigger
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
CREATE OR REPLACE TRIGGER reservation_notify_insert
    AFTER INSERT ON vcl.reservation
    FOR EACH STATEMENT EXECUTE FUNCTION vcl.reservation_notify_insert();

CREATE OR REPLACE FUNCTION vcl.reservation_notify_pending() RETURNS trigger
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

CREATE OR REPLACE TRIGGER reservation_notify_pending
    AFTER UPDATE ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.state = 'pending' AND OLD.state <> 'pending' AND NEW.run_at <= now())
    EXECUTE FUNCTION vcl.reservation_notify_pending();

-- One trigger function for the wake-ups below: NOTIFY channel TG_ARGV[0]
-- with payload TG_ARGV[1] (identical notifications of a transaction are
-- folded into one).
CREATE OR REPLACE FUNCTION vcl.notify_trigger() RETURNS trigger
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
CREATE OR REPLACE TRIGGER computer_notify_available
    AFTER UPDATE OF state ON vcl.computer
    FOR EACH ROW
    WHEN (OLD.state = 'maintenance' AND NEW.state <> 'maintenance')
    EXECUTE FUNCTION vcl.notify_trigger('vcl_reservation', 'available');

CREATE OR REPLACE TRIGGER node_notify_available
    AFTER UPDATE OF state ON vcl.node
    FOR EACH ROW
    WHEN (OLD.state = 'maintenance' AND NEW.state <> 'maintenance')
    EXECUTE FUNCTION vcl.notify_trigger('vcl_reservation', 'available');

-- Nodes added, removed, renamed or moved: the domain watchers re-read vcl.node.
CREATE OR REPLACE TRIGGER node_notify_changed
    AFTER INSERT OR DELETE OR UPDATE OF name, libvirt_uri ON vcl.node
    FOR EACH STATEMENT
    EXECUTE FUNCTION vcl.notify_trigger('vcl_node', 'changed');

-- For front ends: NOTIFY vcl_done when a reservation ends (done, failed or
-- cancelled: by its worker, vcl.cancel, a claim giving up on it, or a DBA's
-- UPDATE). The payload is a JSON object:
--   {"id": 42, "node": "node1", "state": "done", "computer": "pc1",
--    "operation": "load", "failed_stage": null}
-- computer is null for a node row (node_check, stage_image); failed_stage is
-- the stage that failed, for a failed row. The error text is not in it (a
-- payload is at most 8000 bytes): read it from the row. One notification per
-- row that ends; they are not folded (each payload differs), but a
-- transaction pays the NOTIFY commit lock once, and the worker's completions
-- already send 'next' in the same transaction. The workers do not LISTEN on
-- vcl_done: anyone may NOTIFY it, so a front end treats it as a hint and
-- reads the row.
-- The payload, in one place: the trigger below and vcl.complete (queue.sql,
-- set-based for the worker's completions) both send it. A plain SQL
-- expression, so PostgreSQL inlines it into vcl.complete's statement.
CREATE OR REPLACE FUNCTION vcl.done_payload(p_id bigint, p_operation text, p_state text,
                                            p_computer text, p_node text, p_failed_stage text)
    RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('id', p_id, 'operation', p_operation, 'state', p_state,
                              'computer', p_computer, 'node', p_node,
                              'failed_stage', CASE WHEN p_state = 'failed' THEN p_failed_stage END)::text
$$;
COMMENT ON FUNCTION vcl.done_payload(bigint, text, text, text, text, text) IS
    'The vcl_done payload: {"id", "operation", "state", "computer", "node", "failed_stage"} '
    '(failed_stage only for a failed row).';

CREATE OR REPLACE FUNCTION vcl.reservation_notify_done() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_computer text;
    v_node     text;
BEGIN
    IF NEW.computer_id IS NOT NULL THEN
        SELECT c.name, n.name INTO v_computer, v_node
          FROM vcl.computer c JOIN vcl.node n ON n.id = c.node_id
         WHERE c.id = NEW.computer_id;
    ELSE
        SELECT n.name INTO v_node FROM vcl.node n WHERE n.id = NEW.node_id;
    END IF;
    PERFORM pg_notify('vcl_done', vcl.done_payload(NEW.id, NEW.operation, NEW.state, v_computer,
                                                   v_node, NEW.failed_stage));
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION vcl.reservation_notify_done() IS
    'AFTER UPDATE trigger: NOTIFY vcl_done with {"id", "operation", "state", "computer", "node", "failed_stage"} '
    'when a reservation becomes done, failed or cancelled (for front ends; the workers do not listen).';

-- Row level with a WHEN: heartbeats and checkpoints (most updates) never
-- call the function, nor do the worker's batched completions: vcl.complete
-- (queue.sql) sends their vcl_done itself, set-based, with the same payload,
-- and marks its UPDATE with the transaction-local vcl.done_notify =
-- 'complete' (a session that sets it itself only silences its own rows'
-- hints).
CREATE OR REPLACE TRIGGER reservation_notify_done
    AFTER UPDATE OF state ON vcl.reservation
    FOR EACH ROW
    WHEN (NEW.state IN ('done', 'failed', 'cancelled') AND OLD.state IS DISTINCT FROM NEW.state
          AND current_setting('vcl.done_notify', true) IS DISTINCT FROM 'complete')
    EXECUTE FUNCTION vcl.reservation_notify_done();
