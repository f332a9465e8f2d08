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
