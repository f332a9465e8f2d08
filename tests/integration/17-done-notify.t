#!/usr/bin/env bash
# NOTIFY vcl_done for front ends (sql/functions/notify.sql, issue #15 item
# 4): when a reservation ends (done, failed, cancelled) one notification
# with a JSON payload {"id", "node", "state", "computer", "operation",
# "failed_stage"}:
#   - vcl.complete (one per row, in a batch too), vcl.fail permanent (with
#     failed_stage), vcl.cancel and a DBA's UPDATE to cancelled each send it;
#   - a retryable failure (back to pending), a claim and a heartbeat do not;
#   - a node_check row names its node and no computer;
#   - a real worker's completions reach a session that LISTENs.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_vcl
psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n1', 'test:///default');
          INSERT INTO vcl.computer (name, node_id, mac0)
          SELECT 'c' || g, 1, format('52:54:00:00:17:%s', lpad(to_hex(g), 2, '0')) FROM generate_series(1, 6) g" >/dev/null
cid() { psql_val "SELECT id FROM vcl.computer WHERE name = '$1'"; }
ins() { psql_val "INSERT INTO vcl.reservation (computer_id, operation) VALUES ($(cid "$1"), '$2') RETURNING id"; }
W=$(psql_val "SELECT vcl.register_worker('sql', 'h', 1, 1, 'x')")
claim() { psql_val "SELECT lease_token FROM vcl.claim($W, 10, 30) WHERE id = $1"; }
# the payloads a session that LISTENs gets while it runs the SQL $1
heard() {
    psql -X -q -v ON_ERROR_STOP=1 -c "LISTEN vcl_done" -c "$1" 2>&1 |
        sed -n 's/^Asynchronous notification "vcl_done" with payload "\(.*\)" received from server process with PID [0-9]*\.$/\1/p'
}

# --- done --------------------------------------------------------------------------
a=$(ins c1 noop)
ta=$(claim "$a")
is "$(heard "SELECT vcl.heartbeat($W, '{$a}', '{$ta}', 30)")" "" "a heartbeat sends nothing"
is "$(heard "SELECT vcl.complete('{$a}', '{$ta}')")" \
   "{\"id\": $a, \"node\": \"n1\", \"state\": \"done\", \"computer\": \"c1\", \"operation\": \"noop\", \"failed_stage\": null}" \
   "vcl.complete: vcl_done with id, node, state done, computer, operation"

# a batch: one per row
b1=$(ins c2 noop); b2=$(ins c3 noop); b3=$(ins c4 noop)
psql_val "SELECT count(*) FROM vcl.claim($W, 10, 30)" >/dev/null
tb=$(psql_val "SELECT array_agg(lease_token ORDER BY id) FROM vcl.reservation WHERE id IN ($b1, $b2, $b3)")
out=$(heard "SELECT vcl.complete('{$b1,$b2,$b3}', '$tb')")
is "$(printf '%s\n' "$out" | grep -c '"state": "done"')" 3 "a batch of three completions: three notifications"
like "$out" "\"id\": $b2, \"node\": \"n1\", \"state\": \"done\", \"computer\": \"c3\"" "each with its own id and computer"

# --- failed --------------------------------------------------------------------------
f=$(ins c5 noop)
tf=$(claim "$f")
is "$(heard "SELECT vcl.fail($f, $tf, 'libvirt busy', 'define', false, 0)")" "" \
   "a retryable failure (back to pending) sends nothing"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $f")" pending "(it is pending)"
tf=$(claim "$f")
is "$(heard "SELECT vcl.fail($f, $tf, 'bad name', 'define', true, 0)")" \
   "{\"id\": $f, \"node\": \"n1\", \"state\": \"failed\", \"computer\": \"c5\", \"operation\": \"noop\", \"failed_stage\": \"define\"}" \
   "a permanent failure: state failed, failed_stage"

# --- cancelled ---------------------------------------------------------------------
x=$(ins c6 noop)
like "$(heard "SELECT vcl.cancel($x)")" "\"id\": $x, .*\"state\": \"cancelled\"" "vcl.cancel: state cancelled"
y=$(ins c6 noop)
like "$(heard "UPDATE vcl.reservation SET state = 'cancelled' WHERE id = $y")" "\"id\": $y, .*\"state\": \"cancelled\"" \
     "a DBA's UPDATE to cancelled"
is "$(heard "UPDATE vcl.reservation SET state = 'pending' WHERE id = $y")" "" "a retry (to pending) sends nothing"
is "$(heard "UPDATE vcl.reservation SET priority = 5 WHERE id = $y")" "" "nor does another column's change"

# --- node_check: the node, no computer ----------------------------------------------
k=$(psql_val "INSERT INTO vcl.reservation (node_id, operation) VALUES (1, 'node_check') RETURNING id")
is "$(heard "SELECT vcl.cancel($k)")" \
   "{\"id\": $k, \"node\": \"n1\", \"state\": \"cancelled\", \"computer\": null, \"operation\": \"node_check\", \"failed_stage\": null}" \
   "a node_check row: node n1, computer null"
psql_val "UPDATE vcl.reservation SET state = 'cancelled' WHERE state = 'pending'" >/dev/null
# vcl.complete sends its rows' vcl_done itself (set-based, not the trigger):
# a node row names its node there too, and the trigger's own rows after it
# in the same transaction still send theirs
k2=$(psql_val "INSERT INTO vcl.reservation (node_id, operation) VALUES (1, 'node_check') RETURNING id")
tk2=$(claim "$k2")
z=$(ins c6 noop)
out=$(heard "BEGIN; SELECT vcl.complete('{$k2}', '{$tk2}'); SELECT vcl.cancel($z); COMMIT")
like "$out" "\"id\": $k2, \"node\": \"n1\", \"state\": \"done\", \"computer\": null, \"operation\": \"node_check\"" \
     "vcl.complete of a node_check row: node n1, computer null"
like "$out" "\"id\": $z, .*\"state\": \"cancelled\"" "a cancel after vcl.complete in the same transaction: its own vcl_done"
is "$(printf '%s\n' "$out" | grep -c '"id"')" 2 "one notification each"

# --- a real worker, a LISTENing session -----------------------------------------------
mkfifo "$WORLD/listen.in"
psql -X -q <"$WORLD/listen.in" >"$WORLD/listen.out" 2>&1 &
LPID=$!
world_on_exit kill "$LPID"
exec 7>"$WORLD/listen.in"
echo "LISTEN vcl_done;" >&7
r1=$("$VCLCTL" enqueue c1 noop)
r2=$("$VCLCTL" enqueue c2 noop)
CFG=$(world_config w1)
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(psql_val "SELECT string_agg(state, ',') FROM vcl.reservation WHERE id IN ($r1, $r2)")" "done,done" "the worker ran both"
got() { echo "SELECT 1;" >&7; [ "$(grep -c '"vcl_done" with payload' "$WORLD/listen.out")" -ge 2 ]; }
ok "the listening session heard two vcl_done" wait_for "two notifications" 60 got
like "$(cat "$WORLD/listen.out")" "payload \"\\{\"id\": $r1, \"node\": \"n1\", \"state\": \"done\", \"computer\": \"c1\", \"operation\": \"noop\"" \
     "the worker's completion of $r1"
like "$(cat "$WORLD/listen.out")" "payload \"\\{\"id\": $r2, .*\"computer\": \"c2\"" "and of $r2"
exec 7>&-
done_testing
