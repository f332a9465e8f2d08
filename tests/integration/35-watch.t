#!/usr/bin/env bash
# The domain watcher: a worker running between reservations notices, through
# libvirt lifecycle events, a loaded domain destroyed or undefined behind its
# back and writes the computer RELOAD with a reason naming the domain; its
# resync finds a domain that vanished while no worker watched; a domain a
# reservation stops (power_off) keeps that reservation's reason; a healthy
# computer stays READY. w1's metrics count the watch's RELOADs per node
# (vclw_computer_reloads_total{source="watch"}) and each load's duration.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="t${WORLD##*.}"

"$VCLCTL" migrate >"$WORLD/migrate.log" 2>&1 || bail "vclctl migrate failed: $(tail -3 "$WORLD/migrate.log")"

# w1: events only in practice (its one resync runs at start); w2: resync every 2 s.
mport=$(perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die "$!"; print $s->sockport')
cfg1=$(world_config w1 "watch_resync_seconds: 3600" "metrics_listen: \"127.0.0.1:$mport\"")
# metric NAME{LABELS} of w1 ("" when absent)
metric() {
    curl -sS --max-time 5 "http://127.0.0.1:$mport/metrics" |
        awk -v k="$1" 'index($0, k " ") == 1 { print $2 }'
}
cfg2=$(world_config w2 "watch_resync_seconds: 2")
start_worker() { # NAME CONFIG: background worker (not --drain), tracked
    "$WORKER" --config "$2" 2>>"$WORLD/$1.log" &
    WPID=$!
    world_track_pid $WPID
}
stop_worker() {
    kill -TERM "$WPID" 2>/dev/null
    wait "$WPID" 2>/dev/null
}
start_worker w1 "$cfg1"
if ! wait_for "the worker to start its domain watcher" 15 grep -q "watch: watching domains" "$WORLD/w1.log"; then
    skip_all "this vcl-worker does not start the domain watcher (watch_start is not called from pool.c)"
fi

qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
ok "node add" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo" --max-loads 3
ok "image add" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
for i in 1 2 3 4; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node node1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):30:0$i" --memory 128 --vcpus 1
    world_track_domain "$T-pc$i:$T-blank-v1"
done
D1="$T-pc1:$T-blank-v1" D2="$T-pc2:$T-blank-v1" D3="$T-pc3:$T-blank-v1" D4="$T-pc4:$T-blank-v1"

col() { psql_val "SELECT $2 FROM vcl.computer WHERE name = '$1'"; }
status_is() { [ "$(col "$1" node_status)" = "$2" ]; }
finished() { [ "$(psql_val "SELECT state IN ('done','failed','cancelled') FROM vcl.reservation WHERE id = $1")" = t ]; }
ms() { date +%s%3N; }

# --- load four computers while the watcher runs ------------------------------
ids=()
for i in 1 2 3 4; do ids+=("$("$VCLCTL" load "$T-pc$i" $T-blank:1)"); done
for id in "${ids[@]}"; do wait_for "load $id" 120 finished "$id" || true; done
for i in 1 2 3 4; do
    is "$(col "$T-pc$i" node_status)" READY "$T-pc$i READY (its own load's domain events changed nothing)"
done
is "$(metric 'vclw_job_duration_seconds_count{operation="load",node="node1"}')" 4 "w1 observed 4 load durations on node1"
is "$(metric 'vclw_computer_reloads_total{node="node1",source="watch"}')" "" "no RELOAD counted for loads"

# The node was added after the worker started: the watcher re-reads the node
# table every few seconds and subscribes to the new node's events.
ok "the watcher subscribed to node1's domain events" \
    wait_for "subscription" 15 grep -q "subscribed to domain events of node node1" "$WORLD/w1.log"

# --- 1. destroyed behind the worker's back: the lifecycle event --------------
t0=$(ms)
ok "virsh destroy $D1" V destroy "$D1"
ok "node_status becomes RELOAD" wait_for "$T-pc1 RELOAD" 15 status_is $T-pc1 RELOAD
diag "destroy -> RELOAD: $(($(ms) - t0)) ms (event path; resync is an hour away)"
is "$(col $T-pc1 status_reason)" "domain $D1 stopped outside vcl-worker (destroyed)" "reason names the domain and what happened"
ok "status_at is fresh" test "$(psql_val "SELECT status_at > now() - interval '1 minute' FROM vcl.computer WHERE name = '$T-pc1'")" = t
is "$(col $T-pc1 domain_name)" "$D1" "ownership is kept (the next load cleans it up)"

# --- 2. undefined while running (now transient): disappeared -----------------
t0=$(ms)
ok "virsh undefine $D2 (keeps running as a transient domain)" V undefine "$D2"
ok "node_status becomes RELOAD" wait_for "$T-pc2 RELOAD" 15 status_is $T-pc2 RELOAD
diag "undefine -> RELOAD: $(($(ms) - t0)) ms"
is "$(col $T-pc2 status_reason)" "domain $D2 disappeared outside vcl-worker (undefined)" "reason: disappeared (undefined)"
V destroy "$D2" >/dev/null 2>&1
is "$(metric 'vclw_computer_reloads_total{node="node1",source="watch"}')" 2 "w1 counted 2 computers of node1 turned RELOAD by the watch"

# --- 3. a reservation stopping its own domain keeps its own reason -----------
out=$("$VCLCTL" power $T-pc4 off --wait 2>&1)
like "$out" "reservation [0-9]+ done" "power_off of $T-pc4 through the queue"
pid=$(head -1 <<<"$out")
sleep 2
is "$(col $T-pc4 status_reason)" "powered off by reservation $pid (power_off)" "the watcher left the reservation's reason alone"
is "$(metric 'vclw_computer_reloads_total{node="node1",source="watch"}')" 2 "a reservation's power_off is not counted"
# a node_status check of the destroyed one (its domain still recorded): RELOAD again, counted as the check's
ns=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation) SELECT id, 'node_status' FROM vcl.computer WHERE name = '$T-pc1' RETURNING id")
ok "node_status of $T-pc1 ends" wait_for "node_status $ns" 60 finished "$ns"
is "$(col $T-pc1 node_status)" RELOAD "the check finds $T-pc1 broken"
is "$(metric 'vclw_computer_reloads_total{node="node1",source="node_status"}')" 1 "counted with source node_status"

# --- 4. a healthy computer stays READY ----------------------------------------
is "$(col $T-pc3 node_status)" READY "$T-pc3 untouched so far"

# --- 5. gone while no worker watched: the resync at start finds it -----------
stop_worker
ok "virsh destroy $D3 (no worker running)" V destroy "$D3"
ok "virsh undefine $D3" V undefine "$D3"
is "$(col $T-pc3 node_status)" READY "nobody noticed yet"
t0=$(ms)
start_worker w2 "$cfg2"
ok "the resync at start makes $T-pc3 RELOAD" wait_for "$T-pc3 RELOAD" 20 status_is $T-pc3 RELOAD
diag "worker start -> RELOAD: $(($(ms) - t0)) ms"
is "$(col $T-pc3 status_reason)" "domain $D3 disappeared outside vcl-worker (resync: no such domain on node node1)" \
   "reason: disappeared, found by the resync"

# --- 6. reload; periodic resyncs leave a healthy computer alone ---------------
id=$("$VCLCTL" load $T-pc1 $T-blank:1)
ok "reload of $T-pc1" wait_for "load $id" 120 finished "$id"
is "$(col $T-pc1 node_status)" READY "$T-pc1 READY again after a load"
sleep 5
is "$(col $T-pc1 node_status)" READY "still READY after two resync periods"
ok "resyncs ran" grep -q "watch: resync checked" "$WORLD/w2.log"
# a shutdown inside the guest (here: a shut off by virsh with a clean reason)
ok "virsh destroy $D1 again" V destroy "$D1"
ok "RELOAD again" wait_for "$T-pc1 RELOAD" 15 status_is $T-pc1 RELOAD
like "$(col $T-pc1 status_reason)" "^domain $D1 stopped outside vcl-worker \((destroyed|resync: destroyed)\)$" "reason"

stop_worker
is "$(grep -c 'level=error' "$WORLD"/w1.log "$WORLD"/w2.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no errors in the worker logs"
done_testing
