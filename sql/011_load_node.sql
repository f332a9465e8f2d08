-- 011_load_node.sql: the node of a load on the load's own row (issue #13
-- item 4: claim latency flat as the queue grows).
--
-- vcl.claim caps loads per node (max_concurrent_loads). To find the nodes
-- with a queued load, and each node's first loads in claim order, it used
-- to read every due pending load (through its computer, to learn the node)
-- and rank them all with row_number(): a claim cost O(queued loads), 22 ms
-- of a claim at 10,000 queued loads. With the node on the row, a claim asks
-- per node (an index probe each) and takes per node only as many loads as
-- it has free slots (LIMIT through reservation_load_pending_idx).
--
-- load_node_id is not reservation.node_id (the target of a node row:
-- node_check, stage_image; reservation_target_valid keeps it NULL for rows
-- with a computer). It is a copy of vcl.computer.node_id, worker-owned and
-- kept by triggers (sql/functions/queue.sql: vcl.reservation_load_node,
-- vcl.computer_moved): set on every load row when it is inserted, when its
-- computer_id changes and when a finished load is reset to pending; and on
-- a computer's pending, running and blocking loads when the computer moves
-- to another node (a load counts against the node its computer is on now,
-- as before). NULL for every other operation. Not a foreign key: finished
-- loads keep the node they last had (nothing reads it there) and must not
-- stop a node from being deleted.

ALTER TABLE vcl.reservation ADD COLUMN load_node_id bigint;
ALTER TABLE vcl.reservation ADD CONSTRAINT reservation_load_node_only_loads
    CHECK (load_node_id IS NULL OR operation = 'load');
COMMENT ON COLUMN vcl.reservation.load_node_id IS
    'For a load: the node of its computer (vcl.computer.node_id), kept by triggers while it is pending, running or '
    'blocking; the claim''s per-node load cap reads it. NULL for every other operation. Worker-owned: not '
    'taken from an INSERT or UPDATE.';

-- The queued loads a database already holds (finished ones need none). As
-- the worker: the guard trigger (guard.sql, applied after the numbered
-- migrations) would keep a worker-owned column unchanged for anyone else.
SELECT set_config('vcl.writer', 'worker', true);
UPDATE vcl.reservation r
   SET load_node_id = c.node_id
  FROM vcl.computer c
 WHERE c.id = r.computer_id
   AND r.operation = 'load'
   AND (r.state IN ('pending', 'running') OR r.blocks_until IS NOT NULL);
SELECT set_config('vcl.writer', '', true);

-- Per node, its pending loads in claim order: the claim walks a free node's
-- first entries (LIMIT its free slots), and asks whether a node has a due
-- load at all, without reading other nodes' loads.
CREATE INDEX reservation_load_pending_idx ON vcl.reservation (load_node_id, priority DESC, run_at, id)
    WHERE operation = 'load' AND state = 'pending';
-- Per node, the loads that may hold a slot: running (a live lease holds one;
-- an expired one is a rescue), and cancelled while running (blocks_until).
-- Small: at most a node's running loads and its recent cancels. (No
-- lease_expires_at in it: heartbeats stay HOT updates.)
CREATE INDEX reservation_load_busy_idx ON vcl.reservation (load_node_id)
    WHERE operation = 'load' AND (state = 'running' OR blocks_until IS NOT NULL);

-- The claim's walk of every other pending row in claim order no longer
-- holds the loads (the claim finds them per node above): a claim stepped
-- over every load queued ahead for a node at its cap, thousands of them
-- once real loads wait. Same name and columns as in 001_baseline.sql.
DROP INDEX vcl.reservation_claim_idx;
CREATE INDEX reservation_claim_idx ON vcl.reservation (priority DESC, run_at, id)
    WHERE state = 'pending' AND operation <> 'load';
