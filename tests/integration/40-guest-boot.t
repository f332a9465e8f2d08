#!/usr/bin/env bash
# The guest really boots: a tiny Linux guest built by tools/make-test-guest
# (Debian kernel + busybox initramfs on a syslinux FAT disk) is the master of
# an os_type 'linux' image. A load reaches READY only after post_load saw the
# guest's ready line on its serial console (under KVM when the host can boot
# it, and under TCG); a guest that never prints it fails in post_load with a
# timeout error and its computer is not READY.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (booting a guest needs QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="t${WORLD##*.}"
TCG_LIMIT=60   # seconds; a slower TCG load is skipped, not failed

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- the guests ----------------------------------------------------------------
t0=$(now)
if ! "$ROOT/tools/make-test-guest" "$WORLD/repo/$T-guest-v1.qcow2" >"$WORLD/guest.log" 2>&1; then
    fail "tools/make-test-guest built the guest"
    diag "$(tail -n 10 "$WORLD/guest.log")"
    done_testing
fi
pass "tools/make-test-guest built the guest"
diag "guest build: $(since "$t0") s ($(tail -n 1 "$WORLD/guest.log"))"
ok "tools/make-test-guest --no-ready built the silent guest" \
    "$ROOT/tools/make-test-guest" "$WORLD/repo/$T-noready-v1.qcow2" --no-ready
size=$(stat -c %s "$WORLD/repo/$T-guest-v1.qcow2")
ok "guest image is small ($((size / 1024 / 1024)) MiB < 64 MiB)" test "$size" -lt $((64 * 1024 * 1024))
is "$(qemu-img info --output=json "$WORLD/repo/$T-guest-v1.qcow2" | sed -n 's/.*"format": "\(.*\)".*/\1/p' | head -n 1)" \
   qcow2 "guest image is qcow2"

ok "migrate" "$VCLCTL" migrate
ok "node add" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo" --max-loads 3
ok "image $T-guest (linux)" "$VCLCTL" image add "$T-guest" --os-type linux
ok "revision 1 of $T-guest" "$VCLCTL" image revision-add "$T-guest" --revision 1 --file-stem "$T-guest-v1"
ok "image $T-noready (linux)" "$VCLCTL" image add "$T-noready" --os-type linux
ok "revision 1 of $T-noready" "$VCLCTL" image revision-add "$T-noready" --revision 1 --file-stem "$T-noready-v1"
n=0
for c in kvm tcg; do
    n=$((n + 1))
    ok "computer $T-$c" "$VCLCTL" computer add "$T-$c" --node node1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):$(printf %02x $((RANDOM % 256))):4$n" --memory 128 --vcpus 1
    world_track_domain "$T-$c:$T-guest-v1"
    world_track_domain "$T-$c:$T-noready-v1"
done
guest_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-guest'")
noready_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-noready'")

# queue COMPUTER STEM: a load with one attempt; prints its id
queue() {
    psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, max_attempts)
              SELECT c.id, ir.id, 1 FROM vcl.computer c, vcl.image_revision ir
               WHERE c.name = '$1' AND ir.file_stem = '$2' RETURNING id"
}
stage_times() { psql_val "SELECT string_agg(stage || '=' || coalesce(duration_ms::bigint::text, '?') || 'ms', ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $1"; }
stage_val() { psql_val "SELECT $3 FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = '$2' ORDER BY id DESC LIMIT 1"; }

# check_booted ID COMPUTER DOMAIN_TYPE: the load ended READY after the ready line
check_booted() {
    local id=$1 c=$2 type=$3 log
    log="$WORLD/xml/${c}_${guest_id}-v1.console.log"
    is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" "done" "$type: reservation $id is done"
    is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$c'")" READY "$type: $c is READY"
    is "$(psql_val "SELECT post_load_at IS NOT NULL FROM vcl.computer WHERE name = '$c'")" t "$type: computer.post_load_at is set"
    like "$(stage_val "$id" post_load detail)" "booted after [0-9]+s: ready line 'VCL-READY' in .*\\.console\\.log" \
         "$type: post_load detail quotes the guest's ready line"
    is "$(psql_val "SELECT (p.started_at >= o.finished_at) AND (p.finished_at > o.finished_at)
                      FROM vcl.reservation_stage p, vcl.reservation_stage o
                     WHERE p.reservation_id = $id AND p.stage = 'post_load' AND p.outcome = 'ok'
                       AND o.reservation_id = $id AND o.stage = 'power_on' AND o.outcome = 'ok'")" t \
       "$type: post_load ran and finished after power_on"
    is "$(psql_val "SELECT c.post_load_at >= s.started_at FROM vcl.computer c, vcl.reservation_stage s
                     WHERE c.name = '$c' AND s.reservation_id = $id AND s.stage = 'post_load'")" t \
       "$type: post_load_at was written by this post_load"
    ok "$type: console log $log has VCL-READY at the start of a line" \
        bash -c "tr -d '\\r' <'$log' | grep -q '^VCL-READY\$'"
    like "$(tr -d '\r' <"$log")" "Linux version 6\\." "$type: the console log shows the Debian kernel booting"
    like "$(V dumpxml "$c:$T-guest-v1" | head -n 1)" "<domain type=.$type." "$type: domain type is $type"
    is "$(V domstate "$c:$T-guest-v1" | head -n 1)" running "$type: domain is running"
    diag "$type stages: $(stage_times "$id")"
}

main_id="" main_c="" main_cfg=""

# --- 1. KVM ------------------------------------------------------------------
# This guest boots in a few seconds under a working KVM. Where the host's KVM
# cannot run the firmware's and boot loader's code (a nested or paravirtual
# "PVM" KVM: "emulation failure" in the QEMU log) the guest pauses, or crawls
# without ever reaching the kernel: then the KVM part is skipped, not failed.
KVM_LIMIT=20
caps=$(V capabilities 2>/dev/null || true)
if [[ $caps == *"<domain type='kvm'"* && -c /dev/kvm ]]; then
    cfg_kvm=$(world_config wk "driver_order: kvm" "post_load_timeout_seconds: $KVM_LIMIT")
    id=$(queue "$T-kvm" "$T-guest-v1")
    t0=$(now)
    "$WORKER" --config "$cfg_kvm" --drain 2>"$WORLD/wk.log"
    secs=$(since "$t0")
    state=$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")
    err=$(psql_val "SELECT coalesce(last_error, '') FROM vcl.reservation WHERE id = $id")
    if [[ $state == "done" ]]; then
        diag "KVM: INSERT to READY: $secs s (worker start and master copy included)"
        check_booted "$id" "$T-kvm" kvm
        main_id=$id main_c=$T-kvm main_cfg=$cfg_kvm
    elif [[ $err =~ stopped\ while\ booting\ \(state\ paused || $err =~ (no\ console\ log\ yet|the\ console\ log\ is\ empty)\; ]]; then
        qlog=/var/log/libvirt/qemu/$T-kvm:$T-guest-v1.log
        diag "KVM cannot boot the guest on this host ($secs s): $err"
        diag "KVM stages: $(stage_times "$id")"
        [[ -r $qlog ]] && diag "QEMU log: $(grep -m 1 -i 'emulation failure\|error' "$qlog" || tail -n 1 "$qlog")"
        is "$(psql_val "SELECT failed_stage FROM vcl.reservation WHERE id = $id")" post_load \
           "KVM: a guest that does not boot fails in post_load"
        isnt "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-kvm'")" READY "KVM: its computer is not READY"
        skip "KVM cannot boot a stock kernel on this host" 8
    else
        fail "KVM: load $id reached READY (state $state after $secs s)"
        diag "error: $err"
        diag "KVM stages: $(stage_times "$id")"
        diag "$(tail -n 5 "$WORLD/wk.log")"
    fi
else
    skip "no KVM on this host" 10
fi

# --- 2. TCG (domain type qemu) ------------------------------------------------
cfg_tcg=$(world_config wt "driver_order: qemu" "post_load_timeout_seconds: $TCG_LIMIT")
id=$(queue "$T-tcg" "$T-guest-v1")
t0=$(now)
"$WORKER" --config "$cfg_tcg" --drain 2>"$WORLD/wt.log"
secs=$(since "$t0")
state=$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")
if [[ $state == "done" ]]; then
    diag "TCG: INSERT to READY: $secs s (worker start and master copy included)"
    check_booted "$id" "$T-tcg" qemu
    [[ -n $main_id ]] || main_id=$id main_c=$T-tcg main_cfg=$cfg_tcg
elif awk -v s="$secs" -v l="$TCG_LIMIT" 'BEGIN { exit !(s >= l) }'; then
    diag "TCG: no READY within $TCG_LIMIT s ($secs s): $(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")"
    skip "TCG boot takes over $TCG_LIMIT s on this host" 10
else
    fail "TCG: load $id reached READY (state $state after $secs s)"
    diag "error: $(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")"
    diag "$(tail -n 5 "$WORLD/wt.log")"
fi

# --- 3. a guest that never prints the ready line -------------------------------
# On the computer that booted (READY): its next load is the silent guest.
if [[ -n $main_id ]]; then
    c=$main_c
    driver=$(sed -n 's/^driver_order: //p' "$main_cfg")
    cfg_nr=$(world_config wn "driver_order: $driver" "post_load_timeout_seconds: 8")
    id=$(queue "$c" "$T-noready-v1")
    t0=$(now)
    "$WORKER" --config "$cfg_nr" --drain 2>"$WORLD/wn.log"
    diag "silent guest: INSERT to failed: $(since "$t0") s"
    is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" failed "silent guest: the load failed"
    is "$(psql_val "SELECT failed_stage FROM vcl.reservation WHERE id = $id")" post_load "silent guest: failed in post_load"
    is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 1 "silent guest: one attempt (max_attempts 1)"
    err=$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")
    like "$err" "^timeout: the linux guest did not print a ready line .* within 8 s \\(post_load_timeout_seconds\\)" \
         "silent guest: the error names the timeout"
    like "$err" "(last console line: '.+'|the console log is empty); console log $WORLD/xml/${c}_${noready_id}-v1\\.console\\.log" \
         "silent guest: the error quotes the console and names its log"
    diag "error: $err"
    is "$(psql_val "SELECT duration_ms >= 8000 FROM vcl.reservation_stage WHERE reservation_id = $id AND stage = 'post_load'")" t \
       "silent guest: post_load waited the full 8 s"
    isnt "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$c'")" READY "silent guest: $c is not READY"
    is "$(psql_val "SELECT post_load_at IS NULL FROM vcl.computer WHERE name = '$c'")" t "silent guest: post_load_at cleared"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id AND stage = 'node_status'")" 0 \
       "silent guest: node_status never ran"
    log="$WORLD/xml/${c}_${noready_id}-v1.console.log"
    ok "silent guest: its console log exists" test -f "$log"
    ok "silent guest: no VCL-READY line in its console log" \
        bash -c "! tr -d '\\r' <'$log' | grep -q '^VCL-READY'"
    is "$(V domstate "$c:$T-noready-v1" | head -n 1)" running "silent guest: its domain still runs (only the guest is silent)"
else
    skip "no guest booted under KVM or TCG here" 12
fi
done_testing
