#!/usr/bin/env bash
# The queue contract in SQL (sql/) against a real PostgreSQL, no worker:
# claim limits and ordering, one running row per computer, the per-node load
# cap (also between two concurrent claimers), lease rescue and fencing,
# heartbeat, retry/permanent/max_attempts, poison rows, hand-back, the DBA
# reset trigger, NOTIFY coalescing, cancel, constraints, retention, views and
# roles.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg

SQL_DIR="${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}/sql"
# This test stands in for the worker (it calls the queue functions and sets
# worker-owned columns by hand): its sessions write as one (vcl.writer,
# sql/functions/guard.sql). What everyone else may write: tests/security/.
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning -c vcl.writer=worker"

# Run SQL that must fail; print the error text (empty when it did not fail).
sql_err() {
    local out
    if out=$(psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1" 2>&1); then
        return 0
    fi
    printf '%s\n' "$out"
}
# Run SQL as a database role (SET ROLE in its own -c, so no command tag is printed).
as_role() {
    psql -X -A -t -q -v ON_ERROR_STOP=1 -c "SET ROLE $1" -c "$2" 2>&1
}
# Wait up to 15 s for a query to print "t".
wait_true() {
    local i
    for i in $(seq 150); do
        [ "$(psql_val "$1")" = t ] && return 0
        sleep 0.1
    done
    return 1
}

# --- migrations, by the runner ------------------------------------------------
ok "vclctl migrate applies sql/" "$ROOT/bin/vclctl" --quiet migrate --sql-dir "$SQL_DIR"
is "$(psql_val "SELECT count(*) > 0 FROM pg_proc WHERE proname = 'claim' AND pronamespace = 'vcl'::regnamespace")" t \
   "vcl.claim exists"

# --- fixtures (test-only helpers in schema t) -------------------------------
psql_val "
CREATE SCHEMA t;
CREATE SEQUENCE t.mac;
CREATE FUNCTION t.node(p_name text, p_cap int DEFAULT 2) RETURNS bigint LANGUAGE sql AS \$\$
    INSERT INTO vcl.node (name, libvirt_uri, max_concurrent_loads) VALUES (p_name, 'test:///default', p_cap) RETURNING id \$\$;
CREATE FUNCTION t.computer(p_name text, p_node text) RETURNS bigint LANGUAGE sql AS \$\$
    INSERT INTO vcl.computer (name, node_id, mac0)
    SELECT p_name, n.id, (SELECT format('52:54:00:%s:%s:%s', lpad(to_hex(v >> 16 & 255), 2, '0'),
                                        lpad(to_hex(v >> 8 & 255), 2, '0'), lpad(to_hex(v & 255), 2, '0'))
                            FROM nextval('t.mac') v)
      FROM vcl.node n WHERE n.name = p_node RETURNING id \$\$;
CREATE FUNCTION t.res(p_computer text, p_op text DEFAULT 'noop', p_max int DEFAULT 5, p_prio int DEFAULT 0)
    RETURNS bigint LANGUAGE sql AS \$\$
    INSERT INTO vcl.reservation (computer_id, operation, image_revision_id, max_attempts, priority)
    SELECT c.id, p_op, CASE WHEN p_op = 'load' THEN (SELECT id FROM vcl.image_revision WHERE file_stem = 'img-v1') END,
           p_max, p_prio
      FROM vcl.computer c WHERE c.name = p_computer RETURNING id \$\$;
CREATE FUNCTION t.expire(p_id bigint) RETURNS void LANGUAGE sql AS \$\$
    UPDATE vcl.reservation SET lease_expires_at = now() - interval '1 second' WHERE id = p_id \$\$;
CREATE FUNCTION t.token(p_id bigint) RETURNS bigint LANGUAGE sql AS \$\$
    SELECT lease_token FROM vcl.reservation WHERE id = p_id \$\$;
CREATE FUNCTION t.clean() RETURNS void LANGUAGE sql AS \$\$
    TRUNCATE vcl.reservation CASCADE;  -- and every table that references it
    UPDATE vcl.computer SET state = 'available' WHERE state <> 'available';
    UPDATE vcl.node SET state = 'available' WHERE state <> 'available' \$\$;
SELECT t.node('n1', 2), t.node('n2', 2), t.node('n3', 2);
INSERT INTO vcl.image (name) VALUES ('img');
INSERT INTO vcl.image_revision (image_id, revision, file_stem) SELECT id, 1, 'img-v1' FROM vcl.image;
SELECT t.computer('pc' || g, 'n1') FROM generate_series(1, 50) g;
SELECT t.computer('ld' || g, 'n2') FROM generate_series(1, 5) g;
SELECT t.computer('cc' || g, 'n3') FROM generate_series(1, 5) g;
SELECT t.computer('x' || g, 'n1') FROM generate_series(1, 9) g;
" >/dev/null
W1=$(psql_val "SELECT vcl.register_worker('w1', 'host-a', 101, 4, 'test')")
W2=$(psql_val "SELECT vcl.register_worker('w2', 'host-b', 102, 4, 'test')")
ok "two workers registered" test -n "$W1" -a -n "$W2" -a "$W1" != "$W2"

# --- constraints -------------------------------------------------------------
like "$(sql_err "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('a b', 'test:///default')")" \
     "name_t_pattern" "node name 'a b' rejected"
like "$(sql_err "SELECT t.computer('../x', 'n1')")" "name_t_pattern" "computer name '../x' rejected"
like "$(sql_err "SELECT t.computer('-x', 'n1')")" "name_t_pattern" "computer name '-x' rejected"
like "$(sql_err "INSERT INTO vcl.image (name) VALUES ('.hidden')")" "name_t_pattern" "image name '.hidden' rejected"
like "$(sql_err "INSERT INTO vcl.image_revision (image_id, revision, file_stem) SELECT id, 2, 'a/b' FROM vcl.image")" \
     "name_t_pattern" "file stem 'a/b' rejected"
like "$(sql_err "INSERT INTO vcl.node (name, libvirt_uri, cow_dir) VALUES ('nd', 'test:///default', '/var/../etc')")" \
     "dir_t_pattern" "directory with '..' rejected"
like "$(sql_err "INSERT INTO vcl.node (name, libvirt_uri, xml_dir) VALUES ('nd', 'test:///default', 'tmp/vcl')")" \
     "dir_t_pattern" "relative directory rejected"
like "$(sql_err "INSERT INTO vcl.node (name, libvirt_uri, repository_paths) VALUES ('nd', 'test:///default', '{/srv/*/img,/srv/../x}')")" \
     "node_repository_paths_valid" "repository path with '..' rejected"
is "$(sql_err "INSERT INTO vcl.node (name, libvirt_uri, repository_paths) VALUES ('nd', 'test:///default', '{/srv/*/img,/mnt/rep?/}')")" "" \
   "repository paths with wildcards accepted"
like "$(sql_err "INSERT INTO vcl.computer (name, node_id, mac0) SELECT 'm1', id, '52:54:00:00:00' FROM vcl.node WHERE name = 'n1'")" \
     "mac_t_format" "short MAC rejected"
like "$(sql_err "INSERT INTO vcl.computer (name, node_id, mac0) SELECT 'm1', id, '52:54:00:zz:00:01' FROM vcl.node WHERE name = 'n1'")" \
     "mac_t_format" "non-hex MAC rejected"
like "$(sql_err "INSERT INTO vcl.computer (name, node_id, mac0) SELECT 'm1', id, '01:00:5e:00:00:01' FROM vcl.node WHERE name = 'n1'")" \
     "mac_t_unicast" "multicast MAC rejected"
is "$(sql_err "INSERT INTO vcl.computer (name, node_id, mac0) SELECT 'mac1', id, '52:54:00:ab:cd:ef' FROM vcl.node WHERE name = 'n1'")" "" \
   "a lower-case MAC accepted"
like "$(sql_err "INSERT INTO vcl.computer (name, node_id, mac0) SELECT 'mac2', id, '52:54:00:AB:CD:EF' FROM vcl.node WHERE name = 'n1'")" \
     "computer_mac0_lower_key" "the same MAC in upper case rejected"
like "$(sql_err "INSERT INTO vcl.reservation (computer_id) SELECT id FROM vcl.computer WHERE name = 'pc1'")" \
     "reservation_load_needs_image" "a load without an image revision rejected"
like "$(sql_err "INSERT INTO vcl.reservation (computer_id, operation, state) SELECT id, 'noop', 'running' FROM vcl.computer WHERE name = 'pc1'")" \
     "reservation_running_has_lease" "a running row without a lease rejected"
like "$(sql_err "INSERT INTO vcl.reservation (computer_id, operation) SELECT id, 'reboot' FROM vcl.computer WHERE name = 'pc1'")" \
     "reservation_operation_valid" "unknown operation rejected"
like "$(sql_err "INSERT INTO vcl.node (name, libvirt_uri, transport) VALUES ('nd2', 'qemu:///system', 'ssh')")" \
     "node_ssh_needs_host" "ssh transport without a host rejected"
like "$(sql_err "UPDATE vcl.computer SET memory_mb = 32 WHERE name = 'pc1'")" "computer_memory_mb_range" "32 MB of RAM rejected"

# --- claim respects the limit ------------------------------------------------
psql_val "SELECT t.clean(); SELECT t.res('pc' || g) FROM generate_series(1, 50) g" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 10 "claim 10 of 50 returns 10 rows"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'running'")" 10 "exactly 10 running"
is "$(psql_val "SELECT count(DISTINCT lease_token) || ' ' || count(DISTINCT computer_id) || ' ' || bool_and(attempts = 1)
                  || ' ' || bool_and(worker_id = $W1) || ' ' || bool_and(lease_expires_at > now() + interval '50 s')
                  || ' ' || bool_and(started_at IS NOT NULL)
                FROM vcl.reservation WHERE state = 'running'")" \
   "10 10 true true true true" "distinct tokens and computers, attempts 1, worker, lease, started_at"
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) = (SELECT string_agg(id::text, ',') FROM (SELECT id FROM vcl.reservation ORDER BY id LIMIT 10) f)
                FROM vcl.reservation WHERE state = 'running'")" t "the 10 oldest were claimed (equal priority)"
# two claimers at once take disjoint rows (SKIP LOCKED)
psql -X -A -t -q -v ON_ERROR_STOP=1 >"$WORLD/bg-limit.out" 2>&1 <<EOF &
BEGIN;
SELECT count(*) FROM vcl.claim($W2, 10, 60);
SELECT pg_sleep(2);
COMMIT;
EOF
bg=$!
ok "background claim is holding its rows" wait_true \
   "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 10 "concurrent claim still gets 10 rows"
wait $bg
is "$(head -1 "$WORLD/bg-limit.out")" 10 "background claim got 10 rows"
is "$(psql_val "SELECT count(*) || ' ' || count(DISTINCT id) FROM vcl.reservation WHERE state = 'running'")" \
   "30 30" "30 distinct rows running after the concurrent claims"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 100, 60)")" 20 "the remaining 20 claimed"
is "$(psql_val "SELECT count(*) FROM vcl.complete((SELECT array_agg(id) FROM vcl.reservation),
                                                   (SELECT array_agg(lease_token) FROM vcl.reservation))")" 50 \
   "complete() finishes the batch of 50"
is "$(psql_val "SELECT count(*) FILTER (WHERE state = 'done' AND finished_at IS NOT NULL AND lease_expires_at IS NULL)
                FROM vcl.reservation")" 50 "all 50 done, finished_at set, lease cleared"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 0, 60)")" 0 "claim with limit 0 takes nothing"

# --- one row per computer, in order of creation ------------------------------
psql_val "SELECT t.clean()" >/dev/null
A=$(psql_val "SELECT t.res('pc1')")
B=$(psql_val "SELECT t.res('pc1', 'noop', 5, 10)")   # newer, higher priority: still waits for A
C=$(psql_val "SELECT t.res('pc2')")
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.claim($W1, 10, 60)")" "$A,$C" \
   "one row per computer: the older row of pc1 (despite priority) and pc2's"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "pc1's second row waits while the first runs"
like "$(sql_err "UPDATE vcl.reservation SET state = 'running', lease_token = 1, lease_expires_at = now() + interval '1 min' WHERE id = $B")" \
     "reservation_one_running_per_computer" "unique index: never two running rows for one computer"
is "$(psql_val "SELECT count(*) FROM vcl.complete(ARRAY[$A], ARRAY[t.token($A)])")" 1 "first row of pc1 completed"
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W1, 10, 60)")" "$B" "then pc1's next row is claimed"
# a computer in maintenance: nothing of it is claimed
psql_val "SELECT t.clean(); SELECT t.res('pc3'); UPDATE vcl.computer SET state = 'maintenance' WHERE name = 'pc3'" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "computer in maintenance: its row is not claimed"
psql_val "UPDATE vcl.computer SET state = 'available' WHERE name = 'pc3'" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 1 "available again: claimed"
# a running row whose lease expired is rescued even if a DBA reset an older row
psql_val "SELECT t.clean()" >/dev/null
OLD=$(psql_val "SELECT t.res('pc4')")
NEW=$(psql_val "SELECT t.res('pc4')")
psql_val "SELECT count(*) FROM vcl.claim($W1, 1, 60);
          SELECT vcl.complete(ARRAY[$OLD], ARRAY[t.token($OLD)]);
          SELECT count(*) FROM vcl.claim($W1, 1, 60);
          SELECT t.expire($NEW);
          UPDATE vcl.reservation SET state = 'pending' WHERE id = $OLD" >/dev/null
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W2, 10, 60)")" "$NEW" \
   "expired running row rescued first; the reset older row waits"
is "$(psql_val "SELECT string_agg(x::text, ',') FROM vcl.complete(ARRAY[$NEW], ARRAY[t.token($NEW)]) x")" "$NEW" "rescued row completed"
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W2, 10, 60)")" "$OLD" "then the reset row runs"

# --- the resume point: a claim's walk from just after a row --------------------
# vcl.claim p_after_* (the last row the caller's previous claim took, in claim
# order priority DESC, run_at, id): rows after it are walked, rows of a higher
# priority from their head, and rows behind it at the same priority are left
# to the caller's next walk from the head.
psql_val "SELECT t.clean()" >/dev/null
ids=$(psql_val "SELECT string_agg(t.res('pc' || (10 + g))::text, ' ' ORDER BY g) FROM generate_series(1, 4) g")
read -r R1 R2 R3 R4 <<<"$ids"
psql_val "UPDATE vcl.reservation SET run_at = now() - interval '1 day' + make_interval(mins => id::int % 1000)
           WHERE id IN ($R1, $R2, $R3, $R4)" >/dev/null
HI=$(psql_val "SELECT t.res('pc15', 'noop', 5, 7)")
LO=$(psql_val "SELECT t.res('pc16', 'noop', 5, -2)")
after() { # id: the resume point of that row, as p_after_priority, p_after_run_at, p_after_id
    psql_val "SELECT format('%s, %L::timestamptz, %s', priority, run_at, id) FROM vcl.reservation WHERE id = $1"
}
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.claim($W1, 2, 60, false, $(after "$R2"))")" "$(sort -n <<<"$HI"$'\n'"$R3" | paste -sd,)" \
   "after R2: the higher priority row first (walked from its head), then R3 (after the point)"
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.claim($W1, 5, 60, false, $(after "$R3"))")" "$(sort -n <<<"$R4"$'\n'"$LO" | paste -sd,)" \
   "after R3: R4, then the lower priority; R1 and R2, behind the point, are not walked"
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.reservation WHERE state = 'pending'")" "$R1,$R2" \
   "R1 and R2 still pending"
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.claim($W1, 5, 60, false, NULL, NULL, NULL)")" "$R1,$R2" \
   "a walk from the head (no point) takes them"
like "$(psql_val "SELECT pg_get_function_arguments('vcl.claim(bigint, int, int, boolean, int, timestamptz, bigint, boolean)'::regprocedure)")" \
     "p_after_id bigint DEFAULT NULL::bigint, p_loads boolean DEFAULT true" \
     "the point is optional (callers that omit it walk from the head), and so is p_loads (they look for loads)"

# --- per-node load cap ----------------------------------------------------------
psql_val "SELECT t.clean(); SELECT t.res('ld' || g, 'load') FROM generate_series(1, 5) g; SELECT t.res('pc5')" >/dev/null
is "$(psql_val "SELECT count(*) FILTER (WHERE operation = 'load') || ' ' || count(*) FILTER (WHERE operation = 'noop')
                FROM vcl.claim($W1, 10, 60, p_loads => false)")" "0 1" \
   "p_loads false: the other operations are claimed, no load"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60, true, p_loads => false)")" 0 \
   "nor with p_rescue: nothing else is claimable"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE operation = 'load' AND state = 'pending'")" 5 "the 5 loads wait, pending"
psql_val "SELECT t.res('pc6')" >/dev/null
is "$(psql_val "SELECT count(*) FILTER (WHERE operation = 'load') || ' ' || count(*) FILTER (WHERE operation = 'noop')
                FROM vcl.claim($W1, 10, 60)")" "2 1" "5 loads on a node with cap 2: 2 claimed (other operations unaffected)"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "cap reached: no more loads"
L1=$(psql_val "SELECT min(id) FROM vcl.reservation WHERE operation = 'load' AND state = 'running'")
psql_val "SELECT vcl.complete(ARRAY[$L1], ARRAY[t.token($L1)])" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 1 "one load done: one more claimed"
L2=$(psql_val "SELECT min(id) FROM vcl.reservation WHERE operation = 'load' AND state = 'running'")
psql_val "SELECT t.expire($L2)" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W2, 10, 60, true, p_loads => false)")" 0 \
   "p_loads false: an expired load is not rescued either"
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W2, 10, 60)")" "$L2" \
   "an expired load is rescued within the cap (not a third slot)"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE operation = 'load' AND state = 'running'")" 2 "still 2 loads running"
psql_val "SELECT vcl.complete(array_agg(id), array_agg(lease_token)) FROM vcl.reservation WHERE state = 'running';
          UPDATE vcl.node SET state = 'maintenance' WHERE name = 'n2'" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "node in maintenance: no load claimed"
psql_val "UPDATE vcl.node SET state = 'available' WHERE name = 'n2'" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 2 "node available again: the 2 remaining loads claimed"

# two concurrent claimers never take more than the cap between them: while a
# claim that took the node's 2 slots is still uncommitted, a higher-priority
# load arrives; a second claimer must not see 2 free slots and take it.
psql_val "SELECT t.clean(); SELECT t.res('cc' || g, 'load') FROM generate_series(1, 4) g" >/dev/null
psql -X -A -t -q -v ON_ERROR_STOP=1 >"$WORLD/bg-cap.out" 2>&1 <<EOF &
BEGIN;
SELECT count(*) FROM vcl.claim($W2, 10, 60);
SELECT pg_sleep(3);
COMMIT;
EOF
bg=$!
ok "background claim holds the node (its transaction is open)" wait_true \
   "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()"
psql_val "SELECT t.res('cc5', 'load', 5, 10)" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "concurrent claim takes no load on that node"
wait $bg
is "$(head -1 "$WORLD/bg-cap.out")" 2 "background claim took 2 loads"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "after its commit: still no slot"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'running'")" 2 "2 loads running on the node, never more"

# --- lease rescue and fencing ---------------------------------------------------
psql_val "SELECT t.clean()" >/dev/null
R=$(psql_val "SELECT t.res('pc6')")
psql_val "SELECT count(*) FROM vcl.claim($W1, 1, 60)" >/dev/null
T1=$(psql_val "SELECT t.token($R)")
S1=$(psql_val "SELECT vcl.stage_start($R, $T1, 'cleanup')")
ok "stage_start under the lease returns a row id" test -n "$S1"
is "$(psql_val "SELECT vcl.stage_finish($R, $T1, $S1, true, 'nothing to clean', true)")" t "stage_finish ok"
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $R")" cleanup "checkpoint advanced to cleanup"
is "$(psql_val "SELECT vcl.stage_finish($R, $T1, $S1, true, 'again', true)")" t "re-sent stage_finish is idempotent"
S2=$(psql_val "SELECT vcl.stage_start($R, $T1, 'generate_xml')")
is "$(psql_val "SELECT vcl.stage_finish($R, $T1, $S2, true, 'no checkpoint', false)")" t "stage_finish without checkpoint"
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $R")" cleanup "checkpoint unchanged when p_checkpoint is false"
S3=$(psql_val "SELECT vcl.stage_start($R, $T1, 'define')")
psql_val "SELECT t.expire($R)" >/dev/null
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W2, 10, 60)")" "$R" "expired lease rescued by w2"
T2=$(psql_val "SELECT t.token($R)")
ok "rescue has a higher token ($T2 > $T1)" test "$T2" -gt "$T1"
is "$(psql_val "SELECT attempts || ' ' || lease_expiries || ' ' || worker_id FROM vcl.reservation WHERE id = $R")" \
   "2 1 $W2" "attempt 2, one lease expiry, owned by w2"
is "$(psql_val "SELECT outcome FROM vcl.reservation_stage WHERE id = $S3")" abandoned "the dead worker's stage is logged abandoned"
is "$(psql_val "SELECT coalesce(vcl.stage_start($R, $T1, 'define')::text, 'NULL')")" NULL "old token: stage_start returns NULL"
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $R")" 3 "... and writes nothing"
is "$(psql_val "SELECT vcl.stage_finish($R, $T1, $S3, true, 'late', true)")" f "old token: stage_finish returns false"
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $R")" cleanup "... and the checkpoint is unchanged"
is "$(psql_val "SELECT count(*) FROM vcl.complete(ARRAY[$R], ARRAY[$T1])")" 0 "old token: complete returns nothing"
is "$(psql_val "SELECT coalesce(vcl.fail($R, $T1, 'late', 'define', true, 0), 'NULL')")" NULL "old token: fail returns NULL"
is "$(psql_val "SELECT count(*) FROM vcl.release(ARRAY[$R], ARRAY[$T1])")" 0 "old token: release returns nothing"
is "$(psql_val "SELECT count(*) FROM vcl.heartbeat($W1, ARRAY[$R], ARRAY[$T1], 60)")" 0 "old token: heartbeat returns nothing"
is "$(psql_val "SELECT state || ' ' || worker_id FROM vcl.reservation WHERE id = $R")" "running $W2" "row untouched by the old holder"
S4=$(psql_val "SELECT vcl.stage_start($R, $T2, 'define')")
is "$(psql_val "SELECT attempt || ' ' || lease_token || ' ' || worker_id FROM vcl.reservation_stage WHERE id = $S4")" \
   "2 $T2 $W2" "new holder's stage row records attempt, token and worker"
like "$(sql_err "SELECT vcl.stage_finish($R, $T2, $S3, true, '', true)")" "is not a stage of reservation" \
     "finishing another lease's stage row is an error"
is "$(psql_val "SELECT vcl.stage_finish($R, $T2, $S4, false, 'virDomainDefineXML: boom', true)")" t "stage_finish failed outcome"
is "$(psql_val "SELECT outcome || ' ' || (duration_ms >= 0) || ' ' || detail FROM vcl.reservation_stage WHERE id = $S4")" \
   "failed true virDomainDefineXML: boom" "failed stage logged with duration and detail"
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $R")" cleanup "a failed stage does not checkpoint"
# stage_next: a finish (ok, checkpoint) and the next start in one transaction
S5=$(psql_val "SELECT vcl.stage_start($R, $T2, 'define')")
S6=$(psql_val "SELECT vcl.stage_next($R, $T2, $S5, 'defined', 'power_on')")
ok "stage_next returns the next stage's row id" test -n "$S6" -a "$S6" -gt "$S5"
is "$(psql_val "SELECT outcome || ' ' || detail FROM vcl.reservation_stage WHERE id = $S5")" "ok defined" \
   "stage_next finished the stage"
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $R")" define "... advanced the checkpoint"
is "$(psql_val "SELECT stage || ' ' || outcome || ' ' || lease_token || ' ' || (started_at >= (SELECT finished_at FROM vcl.reservation_stage WHERE id = $S5))
                FROM vcl.reservation_stage WHERE id = $S6")" "power_on running $T2 true" \
   "... and started the next one under the same lease, after the finish"
n=$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $R")
is "$(psql_val "SELECT coalesce(vcl.stage_next($R, $T1, $S6, 'late', 'post_load')::text, 'NULL')")" NULL \
   "old token: stage_next returns NULL"
is "$(psql_val "SELECT count(*) || ' ' || (SELECT outcome FROM vcl.reservation_stage WHERE id = $S6)
                FROM vcl.reservation_stage WHERE reservation_id = $R")" "$n running" "... and writes nothing"
like "$(sql_err "SELECT vcl.stage_next($R, $T2, $S3, '', 'post_load')")" "is not a stage of reservation" \
     "stage_next of another lease's stage row is an error"
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $R")" "$n" "... that starts nothing"
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $R")" define "... nor moves the checkpoint"

# --- heartbeat --------------------------------------------------------------------
psql_val "SELECT t.clean()" >/dev/null
H1=$(psql_val "SELECT t.res('pc7')"); H2=$(psql_val "SELECT t.res('pc8')"); H3=$(psql_val "SELECT t.res('pc9')")
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 5); UPDATE vcl.worker SET heartbeat_at = now() - interval '1 hour' WHERE id = $W1" >/dev/null
is "$(psql_val "SELECT string_agg(x::text, ',') FROM vcl.heartbeat($W1, ARRAY[$H1, $H2, $H3, 999999],
                 ARRAY[t.token($H1), t.token($H2) + 1000, t.token($H3), 1], 600) x")" "$H1,$H3" \
   "heartbeat returns only the valid (id, token) pairs"
is "$(psql_val "SELECT string_agg((lease_expires_at > now() + interval '500 s')::text, ',' ORDER BY id)
                FROM vcl.reservation WHERE id IN ($H1, $H2, $H3)")" "true,false,true" "only those leases were extended"
is "$(psql_val "SELECT heartbeat_at > now() - interval '1 minute' FROM vcl.worker WHERE id = $W1")" t "worker heartbeat_at updated"
hot0=$(psql_val "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'vcl.reservation'::regclass")
psql_val "SELECT count(*) FROM vcl.heartbeat($W1, ARRAY[$H1, $H3], ARRAY[t.token($H1), t.token($H3)], 600)" >/dev/null
ok "heartbeats are HOT updates (no index entries; fillfactor 80)" wait_true \
   "SELECT n_tup_hot_upd >= $hot0 + 2 FROM pg_stat_user_tables WHERE relid = 'vcl.reservation'::regclass"

# --- fail: retry, permanent, max_attempts ----------------------------------------
psql_val "SELECT t.clean()" >/dev/null
F=$(psql_val "SELECT t.res('pc10', 'noop', 2)")
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)" >/dev/null
is "$(psql_val "SELECT vcl.fail($F, t.token($F), 'node unreachable', 'cleanup', false, 60)")" pending "retryable failure: pending"
is "$(psql_val "SELECT (run_at > now() + interval '50 s') || ' ' || last_error || ' ' || failed_stage || ' '
                       || (lease_expires_at IS NULL) || ' ' || (finished_at IS NULL)
                FROM vcl.reservation WHERE id = $F")" "true node unreachable cleanup true true" \
   "run_at in the future, error and stage kept, lease cleared"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "not claimable before run_at"
psql_val "UPDATE vcl.reservation SET run_at = now() WHERE id = $F" >/dev/null
is "$(psql_val "SELECT attempts FROM vcl.claim($W1, 10, 60)")" 2 "claimed again: attempt 2"
is "$(psql_val "SELECT vcl.fail($F, t.token($F), 'node unreachable', 'cleanup', false, 0)")" failed \
   "retryable failure at max_attempts: failed"
is "$(psql_val "SELECT state || ' ' || (finished_at IS NOT NULL) || ' ' || (lease_expires_at IS NULL) FROM vcl.reservation WHERE id = $F")" \
   "failed true true" "failed row has finished_at, no lease"
P=$(psql_val "SELECT t.res('pc11')")
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)" >/dev/null
is "$(psql_val "SELECT vcl.fail($P, t.token($P), 'invalid computer name', 'generate_xml', true, 60)")" failed \
   "permanent failure: failed at once"
is "$(psql_val "SELECT attempts || ' ' || failed_stage FROM vcl.reservation WHERE id = $P")" "1 generate_xml" "after one attempt"
is "$(psql_val "SELECT count(*) FROM vcl.failures WHERE id IN ($F, $P)")" 2 "both listed in vcl.failures"

# --- poison rows: a lease that keeps expiring ---------------------------------------
psql_val "SELECT t.clean()" >/dev/null
X=$(psql_val "SELECT t.res('pc12', 'noop', 2)")
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60);
          SELECT vcl.stage_start($X, t.token($X), 'define');
          SELECT t.expire($X)" >/dev/null
is "$(psql_val "SELECT attempts FROM vcl.claim($W2, 10, 60)")" 2 "first expiry: rescued (attempt 2 of 2)"
psql_val "SELECT vcl.stage_start($X, t.token($X), 'power_on'); SELECT t.expire($X)" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)")" 0 "second expiry at max_attempts: not claimed again"
is "$(psql_val "SELECT state || '|' || failed_stage || '|' || last_error || '|' || (finished_at IS NOT NULL) || '|' || (lease_expires_at IS NULL)
                FROM vcl.reservation WHERE id = $X")" \
   "failed|power_on|lease expired 2 times: the worker running it died or hung (last stage: power_on)|true|true" \
   "poison row failed with a clear error and the stage it died in"
is "$(psql_val "SELECT string_agg(stage || '=' || outcome, ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $X")" \
   "define=abandoned power_on=abandoned" "both unfinished stages logged abandoned"

# --- release: graceful hand-back ----------------------------------------------------
psql_val "SELECT t.clean()" >/dev/null
Y=$(psql_val "SELECT t.res('pc13')")
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)" >/dev/null
S=$(psql_val "SELECT vcl.stage_start($Y, t.token($Y), 'pre_define')")
is "$(psql_val "SELECT string_agg(x::text, ',') FROM vcl.release(ARRAY[$Y], ARRAY[t.token($Y)]) x")" "$Y" "release returns the id"
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || (worker_id IS NULL) || ' ' || (lease_expires_at IS NULL) || ' ' || (run_at <= now())
                FROM vcl.reservation WHERE id = $Y")" "pending 0 true true true" \
   "pending, attempt not counted, no worker, no lease, due now"
is "$(psql_val "SELECT outcome FROM vcl.reservation_stage WHERE id = $S")" abandoned "its unfinished stage logged abandoned"
is "$(psql_val "SELECT attempts FROM vcl.claim($W2, 10, 60)")" 1 "claimed again by another worker: attempt 1"

# --- DBA reset trigger ------------------------------------------------------------------
psql_val "SELECT t.clean()" >/dev/null
D=$(psql_val "SELECT t.res('pc14', 'noop', 3)")
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)" >/dev/null
psql_val "SELECT vcl.stage_finish($D, t.token($D), vcl.stage_start($D, t.token($D), 'define'), true, '', true);
          SELECT vcl.fail($D, t.token($D), 'boom', 'power_on', true, 0);
          UPDATE vcl.reservation SET run_at = now() - interval '1 day' WHERE id = $D" >/dev/null
psql_val "UPDATE vcl.reservation SET state = 'pending' WHERE id = $D" >/dev/null
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || (run_at > now() - interval '1 minute') || ' ' || (finished_at IS NULL)
                       || ' ' || (worker_id IS NULL) || ' ' || (lease_expires_at IS NULL) || ' ' || stage
                FROM vcl.reservation WHERE id = $D")" "pending 0 true true true true define" \
   "DBA reset: attempts 0, run_at now, finished_at cleared, checkpoint kept"
is "$(psql_val "SELECT attempts || ' ' || stage FROM vcl.claim($W1, 10, 60)")" "1 define" "claimed again, resumes after define"
psql_val "SELECT vcl.fail($D, t.token($D), 'boom', 'power_on', true, 0)" >/dev/null
psql_val "UPDATE vcl.reservation SET state = 'pending', stage = NULL WHERE id = $D" >/dev/null
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || coalesce(stage, 'NULL') FROM vcl.reservation WHERE id = $D")" \
   "pending 0 NULL" "reset with stage = NULL reruns every stage"
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60); SELECT vcl.fail($D, t.token($D), 'boom', 'x', true, 0)" >/dev/null
psql_val "UPDATE vcl.reservation SET state = 'pending', run_at = now() + interval '1 hour' WHERE id = $D" >/dev/null
is "$(psql_val "SELECT run_at > now() + interval '50 minutes' FROM vcl.reservation WHERE id = $D")" t \
   "reset that sets run_at keeps it"
psql_val "UPDATE vcl.reservation SET state = 'cancelled' WHERE id = $D" >/dev/null
is "$(psql_val "SELECT finished_at IS NOT NULL FROM vcl.reservation WHERE id = $D")" t "plain-SQL cancel gets finished_at"

# --- NOTIFY -------------------------------------------------------------------------------
psql_val "SELECT t.clean()" >/dev/null
out=$(psql -X -q -v ON_ERROR_STOP=1 2>&1 <<'EOF'
LISTEN vcl_reservation;
INSERT INTO vcl.reservation (computer_id, operation) SELECT id, 'noop' FROM vcl.computer, generate_series(1, 2) ORDER BY id LIMIT 100;
SELECT 1;
EOF
)
is "$(grep -c 'Asynchronous notification "vcl_reservation" with payload "insert"' <<<"$out")" 1 \
   "a 100-row INSERT sends one notification"
is "$(psql_val "SELECT count(*) FROM vcl.reservation")" 100 "(100 rows inserted)"
out=$(psql -X -q -v ON_ERROR_STOP=1 2>&1 <<'EOF'
UPDATE vcl.reservation SET state = 'failed' WHERE id IN (SELECT id FROM vcl.reservation ORDER BY id LIMIT 5);
LISTEN vcl_reservation;
UPDATE vcl.reservation SET state = 'pending' WHERE state = 'failed';
SELECT 1;
EOF
)
is "$(grep -c 'Asynchronous notification "vcl_reservation" with payload "pending"' <<<"$out")" 1 \
   "a bulk reset of 5 rows sends one 'pending' notification"
is "$(grep -c 'Asynchronous notification' <<<"$out")" 1 "and nothing else"
out=$(psql -X -q -v ON_ERROR_STOP=1 2>&1 <<EOF
LISTEN vcl_reservation;
SELECT count(*) FROM vcl.claim($W1, 3, 60);
SELECT vcl.release(array_agg(id), array_agg(lease_token)) FROM vcl.reservation WHERE state = 'running';
SELECT 1;
EOF
)
is "$(grep -c 'Asynchronous notification "vcl_reservation" with payload "pending"' <<<"$out")" 1 \
   "a hand-back wakes the other workers"

# --- cancel --------------------------------------------------------------------------------
psql_val "SELECT t.clean()" >/dev/null
K1=$(psql_val "SELECT t.res('pc15')")
is "$(psql_val "SELECT vcl.cancel($K1)")" cancelled "cancel a pending row"
is "$(psql_val "SELECT state || ' ' || (finished_at IS NOT NULL) FROM vcl.reservation WHERE id = $K1")" "cancelled true" \
   "cancelled with finished_at"
is "$(psql_val "SELECT vcl.cancel($K1)")" cancelled "cancel again: unchanged state returned"
is "$(psql_val "SELECT coalesce(vcl.cancel(-1), 'NULL')")" NULL "cancel of no such row: NULL"
K2=$(psql_val "SELECT t.res('pc16')")
K3=$(psql_val "SELECT t.res('pc16')")
psql_val "SELECT count(*) FROM vcl.claim($W1, 10, 60)" >/dev/null
TK=$(psql_val "SELECT t.token($K2)")
SK=$(psql_val "SELECT vcl.stage_start($K2, $TK, 'pre_define')")
is "$(psql_val "SELECT vcl.cancel($K2)")" cancelled "cancel a running row"
is "$(psql_val "SELECT coalesce(vcl.stage_start($K2, $TK, 'write_xml')::text, 'NULL')")" NULL \
   "its worker's next stage_start is fenced out"
is "$(psql_val "SELECT vcl.stage_finish($K2, $TK, $SK, true, '', true)")" f "... and stage_finish"
is "$(psql_val "SELECT count(*) FROM vcl.heartbeat($W1, ARRAY[$K2], ARRAY[$TK], 60)")" 0 "... and its heartbeat"
is "$(psql_val "SELECT count(*) FROM vcl.complete(ARRAY[$K2], ARRAY[$TK])")" 0 "... and complete"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $K2")" cancelled "still cancelled"
is "$(psql_val "SELECT outcome FROM vcl.reservation_stage WHERE id = $SK")" abandoned "its running stage logged abandoned"
is "$(psql_val "SELECT count(*) FROM vcl.claim($W2, 10, 60)")" 0 \
   "the computer's next row waits until the cancelled row's lease lapses"
is "$(psql_val "SELECT (blocks_until > now() + interval '50 s') || ' ' || (lease_expires_at IS NULL) FROM vcl.reservation WHERE id = $K2")" \
   "true true" "the cancelled row blocks its computer until its old lease would have expired (blocks_until)"
psql_val "UPDATE vcl.reservation SET blocks_until = now() - interval '1 second' WHERE id = $K2" >/dev/null
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claim($W2, 10, 60)")" "$K3" "lease lapsed: next row claimed"
psql_val "SELECT vcl.complete(ARRAY[$K3], ARRAY[t.token($K3)])" >/dev/null
is "$(psql_val "SELECT vcl.cancel($K3)")" done "cancel of a done row returns done"

# --- retention -------------------------------------------------------------------------------
psql_val "SELECT t.clean()" >/dev/null
psql_val "SELECT t.res('pc' || g) FROM generate_series(20, 26) g;
          SELECT count(*) FROM vcl.claim($W1, 10, 60);
          SELECT vcl.stage_start(id, lease_token, 'cleanup') FROM vcl.reservation;
          SELECT vcl.complete(array_agg(id), array_agg(lease_token)) FROM vcl.reservation WHERE id IN (SELECT id FROM vcl.reservation ORDER BY id LIMIT 4);
          SELECT vcl.fail(id, lease_token, 'x', 'y', true, 0) FROM vcl.reservation WHERE id = (SELECT min(id) + 4 FROM vcl.reservation);
          SELECT vcl.cancel(min(id) + 5) FROM vcl.reservation;
          UPDATE vcl.reservation SET blocks_until = NULL WHERE state = 'cancelled';
          UPDATE vcl.reservation SET finished_at = now() - interval '2 days', created_at = now() - interval '2 days'
           WHERE id IN (SELECT id FROM vcl.reservation ORDER BY id LIMIT 3) OR state IN ('failed', 'cancelled');
          UPDATE vcl.reservation SET created_at = now() - interval '3 days' WHERE state = 'running'" >/dev/null
# now: 3 done 2 days ago, 1 done now, 1 failed + 1 cancelled 2 days ago, 1 running (old created_at)
is "$(psql_val "SELECT vcl.prune_history(interval '1 day', 2)")" 2 "prune_history deletes at most a batch"
is "$(psql_val "SELECT vcl.prune_history(interval '1 day', 100)")" 3 "then the rest of the old finished rows"
is "$(psql_val "SELECT vcl.prune_history(interval '1 day', 100)")" 0 "then nothing"
is "$(psql_val "SELECT string_agg(state, ',' ORDER BY id) FROM vcl.reservation")" "done,running" \
   "the recent done row and the (old) running row are kept"
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage")" 2 "stage rows of pruned reservations are gone"

# --- views and roles -------------------------------------------------------------------------
for v in queue_summary failures running_jobs stage_timing workers; do
    ok "view vcl.$v selects" psql_val "SELECT count(*) FROM vcl.$v"
done
is "$(psql_val "SELECT current_stage || ' ' || worker FROM vcl.running_jobs")" "cleanup w1" "running_jobs shows the current stage and worker"
is "$(psql_val "SELECT string_agg(operation || ':' || state || ':' || reservations, ',' ORDER BY operation, state) FROM vcl.queue_summary")" \
   "noop:done:1,noop:running:1" "queue_summary counts per operation and state"
is "$(psql_val "SELECT count(*) FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.objsubid = 0
                WHERE c.relnamespace = 'vcl'::regnamespace AND c.relkind IN ('r', 'v')")" \
   "$(psql_val "SELECT count(*) FROM pg_class WHERE relnamespace = 'vcl'::regnamespace AND relkind IN ('r', 'v')")" \
   "every table and view has a COMMENT"
is "$(psql_val "SELECT count(*) FROM pg_roles WHERE rolname IN ('vcl_worker', 'vcl_reader') AND NOT rolcanlogin")" 2 \
   "roles vcl_worker and vcl_reader exist (NOLOGIN)"
psql_val "SELECT t.clean(); SELECT t.res('pc30')" >/dev/null
is "$(as_role vcl_worker "SELECT count(*) FROM (SELECT vcl.stage_finish(id, lease_token, vcl.stage_start(id, lease_token, 'cleanup'), true, '', true)
                                          FROM vcl.claim($W1, 10, 60)) s")" 1 "vcl_worker can claim and log stages"
is "$(as_role vcl_worker "SELECT count(*) FROM vcl.heartbeat($W1, (SELECT array_agg(id) FROM vcl.reservation),
                                                            (SELECT array_agg(lease_token) FROM vcl.reservation), 60)")" 1 \
   "vcl_worker can heartbeat"
is "$(as_role vcl_worker "SELECT count(*) FROM vcl.complete((SELECT array_agg(id) FROM vcl.reservation),
                                                           (SELECT array_agg(lease_token) FROM vcl.reservation))")" 1 \
   "vcl_worker can complete"
is "$(as_role vcl_worker "SELECT vcl.prune_history(interval '0', 10)")" 1 "vcl_worker can prune"
is "$(as_role vcl_reader "SELECT count(*) >= 0 FROM vcl.queue_summary")" t "vcl_reader can read the views"
like "$(as_role vcl_reader "UPDATE vcl.reservation SET priority = 1")" "permission denied" "vcl_reader cannot write"
like "$(as_role vcl_worker "UPDATE vcl.node SET max_concurrent_loads = 9")" "permission denied" \
     "vcl_worker cannot change the inventory"
like "$(sql_err "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM vcl.claim($W1, 1, 60)")" "READ COMMITTED" \
     "claim refuses to run outside READ COMMITTED"

ok "worker_stopped" psql_val "SELECT vcl.worker_stopped($W1)"
is "$(psql_val "SELECT stopped_at IS NOT NULL FROM vcl.worker WHERE id = $W1")" t "stopped_at recorded"

done_testing
