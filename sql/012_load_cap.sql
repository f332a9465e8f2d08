-- 012_load_cap.sql: a node's default load cap is 8, not 2 (issue #14 item 3).
-- Measured with tests/bench/load --phases burst on a 2-core nested KVM host
-- (README "Performance", Bursts): 60 loads took 121 / 111 / 79 / 46-53 s
-- started 1 / 2 / 4 / 8 at a time through the raw libvirt calls, and the
-- worker at 2 / 4 / 8 per node (two nodes on that host) 115 / 65 / 46 s:
-- starting a domain waits more than it computes, so a cap of 2 left the
-- host idle during a class's burst. Nodes that exist keep their value (a 2
-- may be an operator's choice): vclctl node set NODE --max-loads N.
ALTER TABLE vcl.node ALTER COLUMN max_concurrent_loads SET DEFAULT 8;
