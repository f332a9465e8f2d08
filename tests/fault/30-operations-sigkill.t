#!/usr/bin/env bash
# SIGKILL a worker at the finish of each stage of the operations besides load
# (the stage's work is done, its checkpoint not written), let the lease
# expire, and check that a rescuing worker finishes the reservation once with
# the right end state: snapshot_create finds its snapshot and keeps it,
# power_off/shutdown find the domain off, power_reset resumes at either half
# (its power_on half is power_on's stage),
# snapshot_revert reverts again, snapshot_delete finds nothing to delete,
# delete/maintenance find nothing left. A kill right after maintenance's
# write leaves the computer in maintenance: the claim, which skips computers
# in maintenance, still rescues that maintenance operation and completes it
# without running a stage again.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (operations need QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
TWORKER="$ROOT/build/test/vcl-worker"
[ -x "$TWORKER" ] || bail "$TWORKER is not built (make)"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="t${WORLD##*.}"
D="$T-pc1:$T-blank-v1"

"$VCLCTL" migrate >"$WORLD/setup.log" 2>&1 || bail "migrate failed"
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
{
    "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" --cow-dir "$WORLD/cow" \
        --xml-dir "$WORLD/xml" --repo "$WORLD/repo" &&
        "$VCLCTL" image add $T-blank &&
        "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1 &&
        "$VCLCTL" computer add $T-pc1 --node node1 --mac "52:54:00:$(printf %02x $((RANDOM % 256))):40:01" --memory 128
} >>"$WORLD/setup.log" 2>&1 || bail "setup failed: $(tail -3 "$WORLD/setup.log")"
world_track_domain "$D"
cfg=$(world_config w1 "lease_seconds: 5" "heartbeat_seconds: 1" "watch_resync_seconds: 0")

drain() { "$WORKER" --config "$cfg" --drain 2>>"$WORLD/w.log"; }
# the test build of the worker, killed by its own VCL_FAULT hook; prints its exit status
killed_at() {
    bash -c 'VCL_FAULT=$1 "$2" --config "$3" --drain 2>>"$4"; echo $?' _ "$1" "$TWORKER" "$cfg" \
        "$WORLD/w.log" 2>/dev/null
}
col() { psql_val "SELECT $1 FROM vcl.computer WHERE name = '$T-pc1'"; }
stages() { psql_val "SELECT string_agg(stage || '=' || outcome, ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $1"; }

"$VCLCTL" load $T-pc1 $T-blank >/dev/null
drain
is "$(col node_status)" READY "$T-pc1 loaded"

# kill OPERATION ARGS STAGE: queue, kill at STAGE:finish, wait out the lease, rescue
kill_and_rescue() {
    local op=$1 args=$2 stage=$3 id
    id=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, args)
                   SELECT id, '$op', '$args'::jsonb FROM vcl.computer RETURNING id")
    is "$(killed_at "$stage:finish")" 137 "$op: worker killed at $stage:finish"
    is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" running "$op: left running (lease held by a dead worker)"
    sleep 5.5
    drain
    is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $id")" "done 2" "$op: rescued, done on the second attempt"
    RID=$id
}

kill_and_rescue snapshot_create '{"snapshot": "s1"}' snapshot_create
is "$(V snapshot-list "$D" --name | grep -c .)" 1 "exactly one snapshot"
like "$(psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $RID AND outcome = 'ok'")" \
     "already exists \(made at [0-9-]+ [0-9:]+ UTC\): kept" "the rescue found the snapshot and kept it"

kill_and_rescue power_off '{}' power_off
is "$(V domstate "$D" | head -1)" "shut off" "power_off: off"
is "$(col node_status)" RELOAD "power_off: RELOAD"

kill_and_rescue power_reset '{}' power_off
is "$(stages $RID)" "power_off=abandoned power_off=ok power_on=ok node_status=ok" "power_reset resumed at power_off"
is "$(V domstate "$D" | head -1)" running "power_reset: running"
kill_and_rescue power_reset '{}' power_on
is "$(stages $RID)" "power_off=ok power_on=abandoned power_on=ok node_status=ok" "power_reset resumed at power_on"
is "$(col node_status)" READY "power_reset: READY"

kill_and_rescue snapshot_revert '{"snapshot": "s1"}' snapshot_revert
is "$(V domstate "$D" | head -1)" running "snapshot_revert: running"
is "$(V snapshot-current "$D" --name)" s1 "snapshot_revert: s1 current"

kill_and_rescue shutdown '{"timeout": 2}' shutdown
is "$(V domstate "$D" | head -1)" "shut off" "shutdown: off"
ok "power on again" "$VCLCTL" power $T-pc1 on
drain
is "$(V domstate "$D" | head -1)" running "running again"

kill_and_rescue snapshot_delete '{"snapshot": "s1"}' snapshot_delete
is "$(V snapshot-list "$D" --name | grep -c .)" 0 "snapshot_delete: gone"

kill_and_rescue delete '{}' remove
ok "delete: no domain" bash -c "! virsh -q -c '$URI' dominfo '$D' >/dev/null 2>&1"
is "$(ls "$WORLD/cow" "$WORLD/xml" | grep -c "^$T-pc1_")" 0 "delete: no files"
is "$(col "node_status || ' ' || coalesce(domain_name, 'none')")" "RELOAD none" "delete: RELOAD, nothing recorded"

# maintenance, killed after its write
"$VCLCTL" load $T-pc1 $T-blank >/dev/null
drain
id=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation) SELECT id, 'maintenance' FROM vcl.computer RETURNING id")
is "$(killed_at maintenance:finish)" 137 "maintenance: worker killed after the maintenance write"
sleep 5.5
drain
is "$(psql_val "SELECT state || ' ' || stage FROM vcl.reservation WHERE id = $id")" "done maintenance" \
   "rescued and completed although its computer is in maintenance (checkpoint written with the state)"
is "$(stages $id)" "remove=ok maintenance=abandoned" "without running any stage again"
is "$(col state)" maintenance "the computer stays in maintenance"
ok "domain removed" bash -c "! virsh -q -c '$URI' dominfo '$D' >/dev/null 2>&1"
"$VCLCTL" computer set $T-pc1 --state available >/dev/null
done_testing
