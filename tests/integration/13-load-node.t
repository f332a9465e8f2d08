#!/usr/bin/env bash
# The node of a load on its row (sql/011_load_node.sql, issue #13 item 4), in
# SQL against a real PostgreSQL, no worker: load_node_id follows the
# computer (on INSERT whatever the writer gave, when the computer moves with
# loads queued or running, when a finished load is reset, under a
# concurrent move in either order); vcl.claim claims a free node's load
# while another node is capped with 1,000 loads ahead of it in claim order,
# and two claimers hammering at once never exceed a node's cap.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg

SQL_DIR="${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/sql"
# Stands in for the worker (claims, completes); DBA statements below are
# run with vcl.writer reset, as a DBA's session would be.
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning -c vcl.writer=worker"
dba() { PGOPTIONS="-c client_min_messages=warning" psql -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

ok "vclctl migrate applies sql/" "$ROOT/bin/vclctl" --quiet migrate --sql-dir "$SQL_DIR"

# 3 nodes (caps 2, 1, 2), 20 computers on each: a1..a20 on na, b1..b20 on
# nb, c1..c20 on nc; one image revision.
psql_val "
INSERT INTO vcl.node (name, libvirt_uri, max_concurrent_loads)
VALUES ('na', 'test:///default', 2), ('nb', 'test:///default', 1), ('nc', 'test:///default', 2);
INSERT INTO vcl.computer (name, node_id, mac0)
SELECT s.p || g, n.id, format('52:54:00:%s:00:%s', lpad(to_hex(n.id::int), 2, '0'), lpad(to_hex(g), 2, '0'))
  FROM (VALUES ('a', 'na'), ('b', 'nb'), ('c', 'nc')) s(p, node)
  JOIN vcl.node n ON n.name = s.node
 CROSS JOIN generate_series(1, 20) g;
INSERT INTO vcl.image (name) VALUES ('img');
INSERT INTO vcl.image_revision (image_id, revision, file_stem) SELECT id, 1, 'img-v1' FROM vcl.image;
CREATE SCHEMA t;
-- p_computer's loads (n of them), priority p_prio; returns the first id
CREATE FUNCTION t.load(p_computer text, p_n int DEFAULT 1, p_prio int DEFAULT 0) RETURNS bigint LANGUAGE sql AS \$\$
    INSERT INTO vcl.reservation (computer_id, operation, image_revision_id, priority)
    SELECT c.id, 'load', (SELECT id FROM vcl.image_revision), p_prio
      FROM vcl.computer c CROSS JOIN generate_series(1, p_n) WHERE c.name = p_computer
    RETURNING id \$\$;
CREATE FUNCTION t.node_of(p_id bigint) RETURNS text LANGUAGE sql AS \$\$
    SELECT coalesce((SELECT n.name FROM vcl.node n JOIN vcl.reservation r ON r.load_node_id = n.id WHERE r.id = p_id),
                    'none') \$\$;
CREATE FUNCTION t.running() RETURNS text LANGUAGE sql AS \$\$
    SELECT coalesce(string_agg(x, ' ' ORDER BY x), '') FROM (
        SELECT n.name || '=' || count(*) AS x
          FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id JOIN vcl.node n ON n.id = c.node_id
         WHERE r.state = 'running' AND r.operation = 'load' GROUP BY n.name) s \$\$;
CREATE FUNCTION t.done_all() RETURNS void LANGUAGE sql AS \$\$
    SELECT vcl.complete(array_agg(id), array_agg(lease_token)) FROM vcl.reservation WHERE state = 'running' \$\$;
CREATE FUNCTION t.clean() RETURNS void LANGUAGE sql AS \$\$
    TRUNCATE vcl.reservation CASCADE;
    UPDATE vcl.computer c SET node_id = (SELECT n.id FROM vcl.node n WHERE n.name = 'n' || left(c.name, 1))
     WHERE c.node_id <> (SELECT n.id FROM vcl.node n WHERE n.name = 'n' || left(c.name, 1)) \$\$;
" >/dev/null
W1=$(psql_val "SELECT vcl.register_worker('w1', 'host-a', 101, 4, 'test')")
W2=$(psql_val "SELECT vcl.register_worker('w2', 'host-b', 102, 4, 'test')")

# --- load_node_id is the computer's node, whoever writes ---------------------------------
L=$(psql_val "SELECT t.load('a1')")
is "$(psql_val "SELECT t.node_of($L)")" na "a load gets its computer's node"
N=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation) SELECT id, 'noop' FROM vcl.computer WHERE name = 'a2' RETURNING id")
is "$(psql_val "SELECT t.node_of($N)")" none "any other operation: none"
NB=$(psql_val "SELECT id FROM vcl.node WHERE name = 'nb'")
L=$(dba "INSERT INTO vcl.reservation (computer_id, operation, image_revision_id, load_node_id)
         SELECT id, 'load', (SELECT id FROM vcl.image_revision), $NB FROM vcl.computer WHERE name = 'a3' RETURNING id")
is "$(psql_val "SELECT t.node_of($L)")" na "a DBA's INSERT naming another node: the computer's node all the same"
L=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, image_revision_id, load_node_id)
              SELECT id, 'load', (SELECT id FROM vcl.image_revision), $NB FROM vcl.computer WHERE name = 'a4' RETURNING id")
is "$(psql_val "SELECT t.node_of($L)")" na "the worker's INSERT too"
dba "UPDATE vcl.reservation SET load_node_id = $NB WHERE id = $L" >/dev/null
is "$(psql_val "SELECT t.node_of($L)")" na "a DBA's UPDATE of load_node_id changes nothing"
like "$(dba "INSERT INTO vcl.reservation (computer_id, operation, load_node_id) SELECT id, 'noop', $NB FROM vcl.computer
             WHERE name = 'a5' RETURNING load_node_id IS NULL")" "^t$" "a noop naming a node: none"
dba "UPDATE vcl.reservation SET computer_id = (SELECT id FROM vcl.computer WHERE name = 'c1') WHERE id = $L" >/dev/null
is "$(psql_val "SELECT t.node_of($L)")" nc "a pending load moved to another computer: that computer's node"

# --- a computer moves to another node with loads queued and running -----------------------
psql_val "SELECT t.clean()" >/dev/null
R1=$(psql_val "SELECT t.load('b1')")
Q1=$(psql_val "SELECT t.load('b1', 3)")
psql_val "SELECT t.load('b2', 2)" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 1 "node nb (cap 1): one load claimed"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $R1")" running "b1's first load runs"
dba "UPDATE vcl.computer SET node_id = (SELECT id FROM vcl.node WHERE name = 'na') WHERE name = 'b1'" >/dev/null
is "$(psql_val "SELECT string_agg(DISTINCT t.node_of(id), ',') FROM vcl.reservation
                WHERE computer_id = (SELECT id FROM vcl.computer WHERE name = 'b1')")" na \
   "b1 moved to na: its running and queued loads follow it"
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W1, 10, 60)")" \
   "$(psql_val "SELECT min(id) FROM vcl.reservation WHERE computer_id = (SELECT id FROM vcl.computer WHERE name = 'b2')")" \
   "nb is free now: b2's first load claimed (b1's running load counts on na)"
psql_val "SELECT t.load('a1', 2)" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 1 "na (cap 2) holds b1's running load: one more load there"
is "$(psql_val "SELECT t.running()")" "na=2 nb=1" "running: na 2, nb 1 (each cap held)"
psql_val "SELECT t.done_all()" >/dev/null
dba "UPDATE vcl.node SET state = 'maintenance' WHERE name = 'nb'" >/dev/null
A2=$(psql_val "SELECT min(id) FROM vcl.reservation WHERE state = 'pending'
               AND computer_id = (SELECT id FROM vcl.computer WHERE name = 'a1')")
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.claim($W1, 10, 60)")" "$Q1,$A2" \
   "nb in maintenance: b1's next load is claimed on na (with a1's), b2's waits"
psql_val "SELECT t.done_all()" >/dev/null
# a finished load reset after its computer moved: the new node again
dba "UPDATE vcl.computer SET node_id = (SELECT id FROM vcl.node WHERE name = 'nc') WHERE name = 'b1'" >/dev/null
is "$(psql_val "SELECT t.node_of($R1)")" na "a finished load is not followed (na kept)"
dba "UPDATE vcl.reservation SET state = 'pending' WHERE id = $R1" >/dev/null
is "$(psql_val "SELECT t.node_of($R1)")" nc "reset to pending: its computer's node now (nc)"
dba "UPDATE vcl.node SET state = 'available' WHERE name = 'nb'" >/dev/null

# --- a move and an INSERT at once, in either order -----------------------------------------
# The INSERT holds FOR SHARE on the computer until it commits; the move
# waits for it, then its trigger updates the new load.
psql_val "SELECT t.clean()" >/dev/null
psql -XAtq -v ON_ERROR_STOP=1 >"$WORLD/bg-insert.out" 2>&1 <<EOF &
BEGIN;
SELECT t.load('c2');
SELECT pg_sleep(2);
COMMIT;
EOF
bg=$!
ok "an INSERT of c2's load is open" wait_for "the open INSERT" 15 \
   psql_val "SELECT 1/count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()"
dba "UPDATE vcl.computer SET node_id = (SELECT id FROM vcl.node WHERE name = 'na') WHERE name = 'c2'" >/dev/null
wait $bg
L=$(head -1 "$WORLD/bg-insert.out")
is "$(psql_val "SELECT t.node_of($L)")" na "c2 moved while its load's INSERT was open: the load follows it"
# the move open first: the INSERT waits for it and reads the new node
PGOPTIONS="-c client_min_messages=warning" psql -XAtq -v ON_ERROR_STOP=1 >"$WORLD/bg-move.out" 2>&1 <<EOF &
BEGIN;
UPDATE vcl.computer SET node_id = (SELECT id FROM vcl.node WHERE name = 'nb') WHERE name = 'c3';
SELECT pg_sleep(2);
COMMIT;
EOF
bg=$!
ok "a move of c3 is open" wait_for "the open move" 15 \
   psql_val "SELECT 1/count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()"
L=$(psql_val "SELECT t.load('c3')")
wait $bg
is "$(psql_val "SELECT t.node_of($L)")" nb "c3's load inserted while its move was open: the new node"

# --- no starvation: a capped node with 1,000 loads ahead in claim order --------------------
# nb (cap 1) runs one load and has 1,000 more queued at a higher priority
# over 20 computers; na's one load comes last in claim order. A claim of one
# row takes na's load.
psql_val "SELECT t.clean()" >/dev/null
psql_val "SELECT t.load('b1', 1, 10)" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 1, 60)")" 1 "nb's first load runs (nb capped)"
psql_val "SELECT t.load('b' || g, 50, 5) FROM generate_series(1, 20) g" >/dev/null
A=$(psql_val "SELECT t.load('a1')")
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'pending' AND operation = 'load'
                AND id < $A AND priority > 0")" 1000 "1,000 of nb's loads ahead of na's in claim order"
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W2, 1, 60)")" "$A" "a 1-row claim takes na's load"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W2, 16, 60)")" 0 "and nothing else: nb is capped, na has nothing left"
buf=$(psql_val "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM vcl.claim($W2, 16, 60)" |
      sed -n 's/.*"Shared Hit Blocks": \([0-9]*\).*/\1/p' | head -1)
note "shared buffers hit by a claim with 1,000 loads queued on a capped node: ${buf:-?}"

# --- two claimers at once never exceed a cap ----------------------------------------------
# 20 loads on each of 30 computers over the 3 nodes; two sessions each make
# 60 claims of 1-3 rows, each followed by the completion of one of its
# running rows, as fast as they can. A test trigger checks every claim that
# takes a load: under a transaction lock (so every claim checked before it
# has committed), it records the loads running per node, its own included.
# No node ever ran more than its cap, and every node reached it.
psql_val "SELECT t.clean();
CREATE TABLE t.seen (node bigint, running int, cap int);
CREATE FUNCTION t.check_cap() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE operation = 'load' AND state = 'running') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(4242);
    INSERT INTO t.seen
    SELECT r.load_node_id, count(*), (SELECT max_concurrent_loads FROM vcl.node WHERE id = r.load_node_id)
      FROM vcl.reservation r
     WHERE r.operation = 'load' AND r.state = 'running' AND r.lease_expires_at >= now()
     GROUP BY r.load_node_id;
    RETURN NULL;
END \$\$;
CREATE TRIGGER check_cap AFTER UPDATE ON vcl.reservation REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION t.check_cap();
SELECT t.load(c.name, 20) FROM vcl.computer c WHERE c.name ~ '^[abc]([1-9]|10)\$';" >/dev/null
claimer() {
    local w=$1 i
    for i in $(seq 60); do
        echo "SELECT count(*) FROM vcl.claim($w, $((i % 3 + 1)), 60);"
        echo "SELECT count(*) FROM (SELECT id, lease_token FROM vcl.reservation
              WHERE state = 'running' AND worker_id = $w ORDER BY random() LIMIT 1) s,
              vcl.complete(ARRAY[s.id], ARRAY[s.lease_token]);"
    done | psql -XAtq -v ON_ERROR_STOP=1 >"$WORLD/claimer-$w.out" 2>&1
}
claimer "$W1" & c1=$!
claimer "$W2" & c2=$!
wait $c1
wait $c2
is "$(cat "$WORLD/claimer-$W1.out" "$WORLD/claimer-$W2.out" | grep -vc '^[0-9]*$')" 0 "both claimers ran without error"
is "$(psql_val "SELECT count(*) > 20 FROM t.seen")" t "claims that took loads were checked"
is "$(psql_val "SELECT count(*) FROM t.seen WHERE running > cap")" 0 "no node ever ran more loads than its cap"
is "$(psql_val "SELECT count(DISTINCT node) FROM t.seen WHERE running = cap")" 3 "every node reached its cap"

done_testing
