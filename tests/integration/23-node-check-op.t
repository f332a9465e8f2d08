#!/usr/bin/env bash
# The node check as an operation a worker runs (reservation.node_id, no
# computer; worker/ops/op_node_check.c): through the worker's own transport
# and config, one at a time per node, its report stored on the node row:
#   - `vclctl node check NODE --queue` and a DBA's plain INSERT queue it; a
#     worker runs it: done, the stage log says what it found, vcl.node has
#     check_ok, checked_at, check_report and the CPU probe; no probe domain
#     is left on the node;
#   - a broken node (a world-writable XML directory): failed once, permanently,
#     last_error names the item and its fix, check_ok false, and the directory
#     is as it was;
#   - hand-written rows that mix a node and a computer are refused by the
#     schema, and a node_check of a node that does not exist by vclctl;
#   - two checks of one node never run at once, even with two slots;
#   - SIGKILL in the middle of the check: no probe domain survives it (they
#     are AUTODESTROY), and the rescue finishes the job;
#   - `vclctl list` and `vclctl show` show node rows.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (the check starts probe domains)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
T="t${WORLD##*.}"
probes() { virsh -q -c "$URI" list --all --name 2>/dev/null | grep -c "^vcl-cpu-probe-$1-" || true; }
row() { psql_val "SELECT $1 FROM vcl.node WHERE name = '$2'"; }
res() { psql_val "SELECT $1 FROM vcl.reservation WHERE id = $2"; }
node_add() {
    local name=$1
    mkdir -p "$WORLD/$name"/{master,cow,xml}
    chmod 755 "$WORLD/$name" "$WORLD/$name"/*
    "$VCLCTL" node add "$name" --uri "$URI" --master-dir "$WORLD/$name/master" \
        --cow-dir "$WORLD/$name/cow" --xml-dir "$WORLD/$name/xml" --repo "$WORLD/repo"
}

ok "migrate" "$VCLCTL" migrate
ok "node add $T-a" node_add $T-a
ok "node add $T-b" node_add $T-b
CFG=$(world_config w1)

# --- 1. queued by vclctl, run by a worker ------------------------------------------
id=$("$VCLCTL" node check $T-a --queue)
like "$id" '^[0-9]+$' "node check --queue prints the reservation id"
is "$(res "operation || ' ' || coalesce(computer_id::text, 'none') || ' ' || (node_id = (SELECT id FROM vcl.node WHERE name = '$T-a'))" "$id")" \
   "node_check none true" "the row names the node and no computer"
is "$(row "coalesce(checked_at::text, 'never')" $T-a)" never "not checked before a worker runs it"
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(res state "$id")" done "a worker ran the node check: done"
is "$(psql_val "SELECT string_agg(stage || ':' || outcome, ',' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $id")" \
   "check:ok" "one stage, check, ok"
like "$(psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $id")" \
     "^all [0-9]+ checks passed; loads use CPU mode " "the stage detail is the summary"
is "$(row check_ok $T-a)" t "node.check_ok"
is "$(row "checked_at > now() - interval '5 minutes'" $T-a)" t "node.checked_at is recent"
is "$(row "jsonb_typeof(check_report)" $T-a)" array "check_report is an array"
items=$(psql_val "SELECT string_agg(x.e->>'item', ',' ORDER BY x.o) FROM vcl.node n, jsonb_array_elements(n.check_report) WITH ORDINALITY AS x(e, o) WHERE n.name = '$T-a'")
like "$items" "^libvirt,transport,driver,hypervisor,qemu-img,master dir,cow dir,xml dir,disk dirs,cpu$" "every item in order: $items"
is "$(psql_val "SELECT count(*) FROM vcl.node n, jsonb_array_elements(n.check_report) e WHERE n.name = '$T-a' AND NOT (e->>'ok')::boolean")" \
   0 "no item failed"
resolved=$(row "coalesce(cpu_mode_resolved, '')" $T-a)
ok "auto resolved by the worker's check: $resolved" test -n "$resolved"
like "$(row cpu_probe $T-a)" "^host-passthrough: " "the probe is recorded with why each mode was taken or not"
is "$(probes $T-a)" 0 "no probe domain left on the node"
ok "the worker logged the summary" grep -q "all [0-9]* checks passed" "$WORLD/w1.log"

# --- 2. a DBA's INSERT, and --queue --wait ---------------------------------------
id2=$(psql_val "INSERT INTO vcl.reservation (node_id, operation) SELECT id, 'node_check' FROM vcl.node WHERE name = '$T-a' RETURNING id")
like "$id2" '^[0-9]+$' "a plain INSERT queues a node check"
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(res state "$id2")" done "the DBA's node check ran"
world_worker w1
out=$(timeout 120 "$VCLCTL" node check $T-a --queue --wait 2>&1)
rc=$?
is "$rc" 0 "node check --queue --wait exits 0 when every item passes"
like "$out" "reservation [0-9]+ done" "--wait says the reservation is done"
like "$out" "ok +libvirt +" "--wait prints the items the worker found"
kill "$WORLD_WORKER_PID"
world_worker_wait "$WORLD_WORKER_PID" 30

# --- 3. a broken node: a world-writable XML directory -------------------------------
chmod 777 "$WORLD/$T-b/xml"
before=$(ls -la "$WORLD/$T-b/xml" | sort)
id3=$("$VCLCTL" node check $T-b --queue)
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(res "state || ' ' || attempts || ' ' || failed_stage" "$id3")" "failed 1 check" \
   "a node check that finds a broken item fails once, permanently, in stage check"
err=$(res last_error "$id3")
like "$err" "node check: 1 of [0-9]+ checks failed: xml dir: " "last_error names the failed item: $err"
like "$err" "fix: " "last_error carries the fix"
is "$(row check_ok $T-b)" f "node.check_ok false"
is "$(psql_val "SELECT e->>'ok' FROM vcl.node n, jsonb_array_elements(n.check_report) e WHERE n.name = '$T-b' AND e->>'item' = 'xml dir'")" \
   false "the report marks the xml dir item failed"
is "$(ls -la "$WORLD/$T-b/xml" | sort)" "$before" "the broken directory is as it was"
is "$(stat -c %a "$WORLD/$T-b/xml")" 777 "and keeps its mode (the check fixes nothing by itself)"
out=$("$VCLCTL" node list 2>&1)
like "$out" "$T-a .* ok [0-9]{4}-[0-9]{2}-[0-9]{2} " "node list: $T-a checked ok, with the time"
like "$out" "$T-b .* FAIL [0-9]{4}-[0-9]{2}-[0-9]{2} " "node list: $T-b's check failed"
out=$("$VCLCTL" list 2>&1)
like "$out" "$id3 +node:$T-b +node_check" "vclctl list shows the node row"
out=$("$VCLCTL" show "$id3" 2>&1)
like "$out" "$T-b" "vclctl show names the node"
chmod 755 "$WORLD/$T-b/xml"

# --- 4. hand-written rows that do not add up ------------------------------------------
pc_id=$( "$VCLCTL" computer add $T-pc --node $T-a --mac 52:54:00:aa:bb:01 --memory 128 --vcpus 1 >/dev/null && psql_val "SELECT id FROM vcl.computer WHERE name = '$T-pc'")
nid=$(row id $T-a)
n_before=$(psql_val "SELECT count(*) FROM vcl.reservation")
fails "node_check with a computer too is refused" psql_val "INSERT INTO vcl.reservation (node_id, computer_id, operation) VALUES ($nid, $pc_id, 'node_check')"
fails "node_check without a node is refused" psql_val "INSERT INTO vcl.reservation (operation) VALUES ('node_check')"
fails "a computer's operation with a node_id is refused" psql_val "INSERT INTO vcl.reservation (node_id, computer_id, operation) VALUES ($nid, $pc_id, 'power_on')"
fails "an operation without a computer is refused" psql_val "INSERT INTO vcl.reservation (operation) VALUES ('power_on')"
is "$(psql_val "SELECT count(*) FROM vcl.reservation")" "$n_before" "no row was added"
out=$("$VCLCTL" node check nosuchnode --queue 2>&1)
rc=$?
is "$rc" 1 "node check --queue of an unknown node exits 1"
like "$out" "no node named 'nosuchnode'" "and says why"
out=$("$VCLCTL" node check "bad name;" --queue 2>&1)
is "$?" 2 "a malformed node name is a usage error"
out=$("$VCLCTL" node check $T-a --wait 2>&1)
is "$?" 2 "--wait without --queue is a usage error"

# --- 5. one at a time per node ----------------------------------------------------------
a1=$("$VCLCTL" node check $T-a --queue)
a2=$("$VCLCTL" node check $T-a --queue)
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(psql_val "SELECT string_agg(state, ',' ORDER BY id) FROM vcl.reservation WHERE id IN ($a1, $a2)")" "done,done" "both checks of one node ran"
is "$(psql_val "SELECT s1.finished_at <= s2.started_at FROM vcl.reservation_stage s1, vcl.reservation_stage s2 WHERE s1.reservation_id = $a1 AND s2.reservation_id = $a2")" \
   t "the second started after the first finished (two slots, one node)"

# --- 6. SIGKILL in the middle of the check -------------------------------------------
CFGK=$(world_config wk "lease_seconds: 5" "heartbeat_seconds: 1")
k=$("$VCLCTL" node check $T-a --queue)
world_worker wk
wpid=$WORLD_WORKER_PID
wait_for "the check stage to run" 60 bash -c "[ \"\$(psql -XAtq -c \"SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $k AND outcome = 'running'\")\" = 1 ]"
wait_for "a probe domain to exist" 30 bash -c "virsh -q -c '$URI' list --all --name | grep -q '^vcl-cpu-probe-$T-a-'" ||
    diag "no probe domain seen (the probe may have been quick)"
kill -9 "$wpid"
world_worker_wait "$wpid" 30
ok "no probe domain survives the worker's death" wait_for "probe domains to go" 30 bash -c "! virsh -q -c '$URI' list --all --name | grep -q '^vcl-cpu-probe-$T-a-'"
is "$(res state "$k")" running "the killed check is still running (its lease runs out)"
sleep 6
"$WORKER" --config "$CFGK" --drain 2>>"$WORLD/wk.log"
is "$(res "state || ' ' || attempts" "$k")" "done 2" "the rescue finished the check (attempt 2)"
is "$(psql_val "SELECT string_agg(outcome, ',' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $k")" \
   "abandoned,ok" "the killed stage is abandoned, the rerun ok"
is "$(probes $T-a)" 0 "no probe domain left"
is "$(row check_ok $T-a)" t "the node row has the rescued check's result"

done_testing
