#!/usr/bin/env bash
# Every provisioning operation besides load, queued both by vclctl and by a
# DBA's plain INSERT into vcl.reservation (operation, args), run by a worker
# in the background, and checked on the node with virsh/qemu-io and on the
# computer row: power_on/power_off/power_reset/shutdown (already-on and
# already-off succeed; a guest that ignores ACPI is destroyed after the
# timeout), snapshot create/list/revert/delete (revert really rolls the disk
# back), delete (no domain, COW or XML left), maintenance (a following load
# stays pending until the computer is available again), `vclctl domains`
# (a hand-made stranger is flagged), and bad input (permanent, clear, and
# nothing else changes).
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (operations need QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
# Names unique to this world: test runs sharing one libvirtd never collide.
T="t${WORLD##*.}"

ok "migrate" "$VCLCTL" migrate
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
ok "node add" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo" --max-loads 4
ok "image add" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
for i in 1 2 3 4 5; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node node1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):20:0$i" --memory 128 --vcpus 1
    world_track_domain "$T-pc$i:$T-blank-v1"
done
image_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")
D1="$T-pc1:$T-blank-v1" D2="$T-pc2:$T-blank-v1" D3="$T-pc3:$T-blank-v1" D4="$T-pc4:$T-blank-v1"

# One worker in the background for the whole test (the watcher is off here:
# 35-watch.t tests it; these operations write node_status themselves).
cfg=$(world_config w1 "watch_resync_seconds: 0" "shutdown_timeout_seconds: 30")
"$WORKER" --config "$cfg" 2>"$WORLD/w1.log" &
world_track_pid $!

# helpers ---------------------------------------------------------------------
finished() { [ "$(psql_val "SELECT state IN ('done','failed','cancelled') FROM vcl.reservation WHERE id = $1")" = t ]; }
wait_end() { wait_for "reservation $1 to end" "${2:-90}" finished "$1"; }
state_of() { psql_val "SELECT state FROM vcl.reservation WHERE id = $1"; }
# sql_op COMPUTER OPERATION [ARGS-JSON]: a DBA's INSERT; prints the id
sql_op() {
    local args=${3:-"{}"}
    psql_val "INSERT INTO vcl.reservation (computer_id, operation, args)
              SELECT id, '$2', '$args'::jsonb FROM vcl.computer WHERE name = '$1' RETURNING id"
}
detail_of() { psql_val "SELECT coalesce(string_agg(stage || ': ' || coalesce(detail, ''), ' | ' ORDER BY id), '')
                         FROM vcl.reservation_stage WHERE reservation_id = $1"; }
col() { psql_val "SELECT $2 FROM vcl.computer WHERE name = '$1'"; }
domstate() { V domstate "$1" 2>/dev/null | head -1; }
domid() { V domid "$1" 2>/dev/null | head -1; }

# --- 0. load four computers ---------------------------------------------------
ids=()
for i in 1 2 3 4; do ids+=("$("$VCLCTL" load "$T-pc$i" $T-blank:1)"); done
for id in "${ids[@]}"; do wait_end "$id" 120 || true; done
for i in 1 2 3 4; do
    is "$(col "$T-pc$i" node_status)" READY "$T-pc$i loaded and READY"
done

# --- 1. power -------------------------------------------------------------------
out=$("$VCLCTL" power $T-pc1 on --wait 2>&1); rc=$?
is "$rc" 0 "power on --wait of a running computer exits 0"
like "$out" "^[0-9]+"$'\n'"reservation [0-9]+ done" "vclctl prints the id, then the outcome"
like "$out" "power_on: $D1 was already running" "already on is a success, and says so"
is "$(domstate "$D1")" running "$D1 still running"
is "$(col $T-pc1 node_status)" READY "node_status written READY by the check"

out=$("$VCLCTL" power $T-pc1 off --wait 2>&1); rc=$?
is "$rc" 0 "power off --wait exits 0"
id=$(head -1 <<<"$out")
is "$(domstate "$D1")" "shut off" "power_off: $D1 is shut off"
is "$(col $T-pc1 node_status)" RELOAD "power_off: node_status RELOAD"
is "$(col $T-pc1 status_reason)" "powered off by reservation $id (power_off)" "power_off: reason names the reservation"
is "$("$VCLCTL" power $T-pc1 status)" off "power status reads libvirt: off"

id=$(sql_op $T-pc1 power_off)
wait_end "$id"
is "$(state_of "$id")" done "already-off power_off (plain INSERT) is done"
like "$(detail_of "$id")" "was already off" "already off is a success, and says so"

id=$(sql_op $T-pc1 power_on)
wait_end "$id"
is "$(state_of "$id")" done "power_on (plain INSERT) is done"
is "$(domstate "$D1")" running "power_on: $D1 runs again"
is "$(col $T-pc1 node_status)" READY "power_on: the node_status check wrote READY"
is "$("$VCLCTL" power $T-pc1 status)" on "power status: on"
like "$("$VCLCTL" --json power $T-pc1 status)" '"power" : "on"' "power status --json"

before=$(domid "$D1")
out=$("$VCLCTL" power $T-pc1 reset --wait 2>&1); rc=$?
is "$rc" 0 "power reset --wait exits 0"
like "$out" "power_off: .*destroyed.*power_on: .*started" "reset is power_off then power_on (VCL's order)" || diag "$out"
after=$(domid "$D1")
is "$(domstate "$D1")" running "reset: running afterwards"
isnt "$after" "$before" "reset: a new QEMU process (domain id $before -> $after)"
is "$(col $T-pc1 node_status)" READY "reset: READY"

# shutdown of a guest with no OS: it ignores ACPI, so after the timeout it is destroyed
id=$(sql_op $T-pc1 shutdown '{"timeout": 3}')
wait_end "$id" 60
is "$(state_of "$id")" done "shutdown with args timeout 3 is done"
is "$(domstate "$D1")" "shut off" "shutdown: the guest that ignored ACPI is off"
like "$(detail_of "$id")" "did not shut down within 3 s \([0-9]+ ACPI request\(s\)\): destroyed" "shutdown: destroyed after the timeout"
secs=$(psql_val "SELECT round(duration_ms / 1000) FROM vcl.reservation_stage WHERE reservation_id = $id AND stage = 'shutdown'")
ok "shutdown waited the timeout (${secs}s)" test "$secs" -ge 3 -a "$secs" -le 15
is "$(col $T-pc1 node_status)" RELOAD "shutdown: RELOAD"
like "$(col $T-pc1 status_reason)" "powered off by reservation $id \(shutdown\)" "shutdown: reason"

out=$("$VCLCTL" power $T-pc1 shutdown --timeout 3 --wait 2>&1); rc=$?
is "$rc" 0 "shutdown of an off computer succeeds"
like "$out" "was already shutoff" "and says it was off"
id=$(sql_op $T-pc1 shutdown '{"timeout": "soon"}')
wait_end "$id"
is "$(state_of "$id")" failed "shutdown with a bad timeout fails"
is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 1 "bad timeout: permanent, no retries"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" "invalid timeout 'soon'" "bad timeout: clear error"
ok "power on again" "$VCLCTL" power $T-pc1 on --wait
is "$(domstate "$D1")" running "$D1 running"

# --- 2. a computer with no domain ---------------------------------------------
id=$(sql_op $T-pc5 power_on)
wait_end "$id"
is "$(state_of "$id")" failed "power_on without a loaded domain fails"
is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 1 "permanently (one attempt)"
is "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" \
   "computer $T-pc5 has no loaded domain; load it first" "with a clear error"
out=$("$VCLCTL" power $T-pc5 off --wait 2>&1); rc=$?
is "$rc" 0 "power_off without a domain succeeds"
like "$out" "nothing to power off" "nothing to do"
out=$("$VCLCTL" power $T-pc5 status 2>"$WORLD/err")
is "$out" off "power status of a computer without a domain: off"
like "$(cat "$WORLD/err")" "note: computer $T-pc5 has no domain on node node1" "with a note on stderr"
out=$("$VCLCTL" snapshot $T-pc5 create s1 --wait 2>&1); rc=$?
is "$rc" 1 "snapshot of a computer without a domain: vclctl --wait exits 1"
like "$out" "failed in stage snapshot_create .*no loaded domain; load it first" "and prints why"

# --- 3. snapshots -------------------------------------------------------------
out=$("$VCLCTL" snapshot $T-pc2 create s1 --description "first one" --wait 2>&1); rc=$?
is "$rc" 0 "snapshot create --wait exits 0"
like "$out" "created snapshot s1 of $D2 \(running: disk and memory\)" "create: detail"
is "$(V snapshot-list "$D2" --name | grep -c '^s1$')" 1 "virsh lists snapshot s1"
list=$("$VCLCTL" snapshot $T-pc2 list)
like "$list" "s1 +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +running +\* +first one" "snapshot list: name, time, state, current, description"
like "$("$VCLCTL" --json snapshot $T-pc2 list)" '"name":"s1"' "snapshot list --json"
id=$(sql_op $T-pc2 snapshot_create '{"snapshot": "s1"}')
wait_end "$id"
is "$(state_of "$id")" done "create of an existing name (plain INSERT) succeeds"
like "$(detail_of "$id")" "already exists .*kept, not replaced" "and keeps it"
is "$(V snapshot-list "$D2" --name | grep -c .)" 1 "still one snapshot"

ok "power off $T-pc2" "$VCLCTL" power $T-pc2 off --wait
id=$(sql_op $T-pc2 snapshot_create '{"snapshot": "clean", "description": "disk only"}')
wait_end "$id"
is "$(state_of "$id")" done "snapshot of an off domain"
like "$(detail_of "$id")" "off: disk only" "disk-only snapshot"
cow2="$WORLD/cow/$T-pc2_${image_id}-v1.qcow2"
ok "write a pattern into the COW while off" qemu-io -f qcow2 -c "write -P 0xab 0 64k" "$cow2"
ok "the pattern is there" qemu-io -f qcow2 -c "read -P 0xab 0 64k" "$cow2"
id=$(sql_op $T-pc2 snapshot_revert '{"snapshot": "clean"}')
wait_end "$id"
is "$(state_of "$id")" done "revert to clean (plain INSERT)"
ok "revert really rolled the disk back (zeros again)" qemu-io -f qcow2 -c "read -P 0 0 64k" "$cow2"
is "$(domstate "$D2")" "shut off" "reverted to an off snapshot of an off domain: still off"
is "$(col $T-pc2 node_status)" RELOAD "revert wrote the check's result: RELOAD while off"
out=$("$VCLCTL" snapshot $T-pc2 revert s1 --wait 2>&1); rc=$?
is "$rc" 0 "revert to s1 --wait"
is "$(domstate "$D2")" running "reverted to a running snapshot: running"
is "$(V snapshot-current "$D2" --name)" s1 "s1 is the current snapshot"
is "$(col $T-pc2 node_status)" READY "revert: READY again"
out=$("$VCLCTL" snapshot $T-pc2 delete clean --wait 2>&1); rc=$?
is "$rc" 0 "snapshot delete --wait"
is "$(V snapshot-list "$D2" --name | grep -c '^clean$')" 0 "clean is gone"
id=$(sql_op $T-pc2 snapshot_delete '{"snapshot": "clean"}')
wait_end "$id"
is "$(state_of "$id")" done "deleting a missing snapshot succeeds"
like "$(detail_of "$id")" "nothing to delete" "and says so"
id=$(sql_op $T-pc2 snapshot_revert '{"snapshot": "nope"}')
wait_end "$id"
is "$(state_of "$id")" failed "revert to a missing snapshot fails"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" "has no snapshot nope" "clearly"

# bad input: permanent, clear, nothing changed
id=$(sql_op $T-pc2 snapshot_create '{"snapshot": "a b"}')
wait_end "$id"
is "$(state_of "$id")" failed "snapshot name 'a b' fails"
is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 1 "permanently (one attempt)"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" "invalid snapshot name 'a b'" "error names the bad name"
id=$(sql_op $T-pc2 snapshot_create '{}')
wait_end "$id"
like "$(psql_val "SELECT state || ': ' || last_error FROM vcl.reservation WHERE id = $id")" \
     "failed: snapshot_create needs a snapshot name" "no name: clear permanent error"
is "$(V snapshot-list "$D2" --name | grep -c .)" 1 "bad input changed nothing: one snapshot (s1)"
is "$(domstate "$D2")" running "bad input changed nothing: still running"
"$VCLCTL" snapshot $T-pc2 create "a b" >/dev/null 2>&1; rc=$?
is "$rc" 2 "vclctl refuses the bad name itself (usage error)"
"$VCLCTL" power $T-pc2 sideways >/dev/null 2>&1; rc=$?
is "$rc" 2 "unknown power action: usage error"

# --- 4. delete ------------------------------------------------------------------
id=$(sql_op $T-pc3 snapshot_create '{"snapshot": "doomed"}')
wait_end "$id"
is "$(state_of "$id")" done "a snapshot on $T-pc3 (delete must take it too)"
cow3="$WORLD/cow/$T-pc3_${image_id}-v1.qcow2"
xml3="$WORLD/xml/$T-pc3_${image_id}-v1.xml"
ok "COW and XML of $T-pc3 exist before delete" test -f "$cow3" -a -f "$xml3"
out=$("$VCLCTL" delete $T-pc3 --wait 2>&1); rc=$?
is "$rc" 0 "vclctl delete --wait"
like "$out" "remove: removed 1 domain\(s\): $D3" "delete: detail names the domain"
ok "delete: no domain left" bash -c "! virsh -q -c '$URI' dominfo '$D3' >/dev/null 2>&1"
ok "delete: COW removed" test ! -e "$cow3"
ok "delete: XML removed" test ! -e "$xml3"
ok "delete: no file of $T-pc3 anywhere" bash -c "! ls '$WORLD/cow' '$WORLD/xml' | grep -q '^$T-pc3_'"
ok "delete: masters stay" test -f "$WORLD/master/$T-blank-v1.qcow2"
is "$(psql_val "SELECT node_status || ' ' || coalesce(current_revision_id::text, 'none') || ' ' || coalesce(domain_name, 'none') FROM vcl.computer WHERE name = '$T-pc3'")" \
   "RELOAD none none" "delete: RELOAD, no current image, no domain recorded"
like "$(col $T-pc3 status_reason)" "domains removed by reservation [0-9]+ \(delete\)" "delete: reason"
id=$(sql_op $T-pc3 delete)
wait_end "$id"
is "$(state_of "$id")" done "delete of an empty computer (plain INSERT) succeeds"
like "$(detail_of "$id")" "removed 0 domain" "nothing to remove"

# --- 5. maintenance ---------------------------------------------------------------
id=$(sql_op $T-pc4 maintenance)
wait_end "$id"
is "$(state_of "$id")" done "maintenance (plain INSERT) is done"
is "$(col $T-pc4 state)" maintenance "computer.state = maintenance"
ok "maintenance: domain removed" bash -c "! virsh -q -c '$URI' dominfo '$D4' >/dev/null 2>&1"
ok "maintenance: COW removed" test ! -e "$WORLD/cow/$T-pc4_${image_id}-v1.qcow2"
is "$(col $T-pc4 node_status)" RELOAD "maintenance: RELOAD"
lid=$("$VCLCTL" load $T-pc4 $T-blank:1)
sleep 4
is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $lid")" "pending 0" \
   "a load of a computer in maintenance stays pending (4 s, worker polling every 1 s)"
ok "computer set --state available" "$VCLCTL" computer set $T-pc4 --state available
wait_end "$lid" 90
is "$(state_of "$lid")" done "then the load runs"
is "$(col $T-pc4 node_status)" READY "and the computer is READY"
is "$(domstate "$D4")" running "$D4 running"
out=$("$VCLCTL" maintenance $T-pc4 --wait 2>&1); rc=$?
is "$rc" 0 "vclctl maintenance --wait"
is "$(col $T-pc4 state)" maintenance "maintenance again"
ok "domain removed again" bash -c "! virsh -q -c '$URI' dominfo '$D4' >/dev/null 2>&1"
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $(head -1 <<<"$out")")" maintenance "checkpoint at the last stage"

# --- 6. domains ---------------------------------------------------------------
cat >"$WORLD/stranger.xml" <<EOF
<domain type='qemu'>
  <name>$T-stranger</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64'>hvm</type></os>
</domain>
EOF
world_track_domain "$T-stranger"
ok "define a stranger domain by hand" V define "$WORLD/stranger.xml"
out=$("$VCLCTL" domains node1)
like "$out" "(^|"$'\n'")$T-stranger +shutoff +- +stranger" "domains flags the stranger"
like "$out" "(^|"$'\n'")$D1 +running +$T-pc1 *("$'\n'"|$)" "domains: $D1 running, owned by $T-pc1, no note"
like "$out" "(^|"$'\n'")$D2 +running +$T-pc2" "domains: $D2 owned by $T-pc2"
unlike "$out" "$D3" "the deleted domain is not there"
json=$("$VCLCTL" --json domains node1)
like "$json" "\"domain\":\"$T-stranger\"[^}]*\"note\":\"stranger\"" "domains --json: stranger"
like "$json" "\"domain\":\"$D1\"[^}]*\"computer\":\"$T-pc1\",\"note\":\"current\"" "domains --json: owner"
ok "the stranger is untouched" V dominfo "$T-stranger"

is "$(grep 'level=error' "$WORLD/w1.log" | grep -vc 'reservation failed in stage')" 0 \
   "no error in the worker log besides the reservations that were meant to fail"
done_testing
