-- 010_stage_image.sql: the operation stage_image (issue #14 item 4): put an
-- image revision's master on a node ahead of time (`vclctl image stage`),
-- with the same lock, verification and rename as a load's pre_define, so
-- the first load of a class finds it there.
--
-- A stage_image row names a node (node_id) and an image revision
-- (image_revision_id), no computer. node_check keeps its rule (node, no
-- computer); every other operation still names a computer and no node.
--
-- Node rows are serialised per node, stage_image included: at most one
-- running row per node (reservation_one_running_per_node, 004) and, when
-- pending, only the node's earliest unfinished row is claimable
-- (vcl.claimable). Two stagings to one node would share its disk and its
-- link; in turn, the first master is in place after one copy's time
-- instead of all of them after n copies' time, and a load of the first
-- image does not wait behind the others. Loads are not node rows: they go on
-- beside a staging (a load of the image being staged waits on the image
-- lock row, vcl.image_lock, as it waits for another load's copy).
--
-- `vclctl image stage` sets dedup_key 'stage_image:<node id>:<revision id>'
-- (008): a second staging of the same revision on the same node is not
-- queued while one is pending or running.

ALTER TABLE vcl.reservation DROP CONSTRAINT reservation_operation_valid;
ALTER TABLE vcl.reservation ADD CONSTRAINT reservation_operation_valid CHECK (operation IN (
    'load', 'capture', 'power_on', 'power_off', 'power_reset', 'shutdown', 'delete',
    'snapshot_create', 'snapshot_delete', 'snapshot_revert', 'maintenance', 'node_status', 'noop',
    'node_check', 'stage_image'));
ALTER TABLE vcl.reservation DROP CONSTRAINT reservation_target_valid;
ALTER TABLE vcl.reservation ADD CONSTRAINT reservation_target_valid CHECK (
    CASE WHEN operation = 'node_check' THEN node_id IS NOT NULL AND computer_id IS NULL
         WHEN operation = 'stage_image' THEN node_id IS NOT NULL AND computer_id IS NULL
                                             AND image_revision_id IS NOT NULL
         ELSE computer_id IS NOT NULL AND node_id IS NULL END);
COMMENT ON COLUMN vcl.reservation.node_id IS
    'The node of a node_check or a stage_image (then computer_id is NULL); NULL for every operation on a computer.';

-- The estimate of its one stage before it has run anywhere (show --follow,
-- vcl.stage_estimate): pre_define's, whose copy it is.
INSERT INTO vcl.stage_default_estimate (stage, estimate_ms) VALUES ('master', 30000)
ON CONFLICT (stage) DO NOTHING;
