-- 004_node_check.sql: a reservation may name a node instead of a computer,
-- for the operation node_check (the preflight of `vclctl node check`, run by
-- a worker through the node's real transport), and the node row keeps the
-- last check's report.
--
-- A node_check row has node_id and no computer_id; every other row has a
-- computer_id and no node_id (reservation_target_valid). Node rows are
-- claimed one at a time per node, as computer rows are per computer
-- (vcl.claimable, sql/functions/views.sql; reservation_one_running_per_node).

ALTER TABLE vcl.reservation ADD COLUMN node_id bigint REFERENCES vcl.node (id);
ALTER TABLE vcl.reservation ALTER COLUMN computer_id DROP NOT NULL;
ALTER TABLE vcl.reservation DROP CONSTRAINT reservation_operation_valid;
ALTER TABLE vcl.reservation ADD CONSTRAINT reservation_operation_valid CHECK (operation IN (
    'load', 'capture', 'power_on', 'power_off', 'power_reset', 'shutdown', 'delete',
    'snapshot_create', 'snapshot_delete', 'snapshot_revert', 'maintenance', 'node_status', 'noop',
    'node_check'));
ALTER TABLE vcl.reservation ADD CONSTRAINT reservation_target_valid CHECK (
    CASE WHEN operation = 'node_check' THEN node_id IS NOT NULL AND computer_id IS NULL
         ELSE computer_id IS NOT NULL AND node_id IS NULL END);
COMMENT ON COLUMN vcl.reservation.node_id IS
    'The node of a node_check (then computer_id is NULL); NULL for every operation on a computer.';

CREATE INDEX reservation_node_pending_idx ON vcl.reservation (node_id, id)
    WHERE node_id IS NOT NULL AND state IN ('pending', 'running');
CREATE UNIQUE INDEX reservation_one_running_per_node ON vcl.reservation (node_id)
    WHERE node_id IS NOT NULL AND state = 'running';

ALTER TABLE vcl.node ADD COLUMN checked_at timestamptz;
ALTER TABLE vcl.node ADD COLUMN check_ok boolean;
ALTER TABLE vcl.node ADD COLUMN check_report jsonb;
ALTER TABLE vcl.node ADD CONSTRAINT node_check_report_array
    CHECK (check_report IS NULL OR jsonb_typeof(check_report) = 'array');
COMMENT ON COLUMN vcl.node.checked_at IS 'When the last node check (vclctl node check, or a node_check reservation) ran.';
COMMENT ON COLUMN vcl.node.check_ok IS 'Whether every item of the last node check passed.';
COMMENT ON COLUMN vcl.node.check_report IS
    'The last node check, one object per item: {"item", "ok", "detail", "fix"} (what is wrong and the command that fixes it).';
