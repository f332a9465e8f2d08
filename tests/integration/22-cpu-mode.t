#!/usr/bin/env bash
# The guest CPU is a node setting with a probed default, and the fallback is
# walked on every host:
#   - `vclctl node check` on the real node probes each CPU mode, records what
#     auto resolves to (and why the others were rejected), and a load there
#     reaches READY with exactly that <cpu>;
#   - with a QEMU that dies like the nested AMD hosts do for every CPU but
#     qemu64 (qemu_emulator points at a wrapper around the real QEMU: the
#     failure goes through real libvirt and a real QEMU process), a node whose
#     forced mode cannot start fails its load permanently, once, with the
#     `vclctl node check` hint, and an auto node on the same "host" falls back
#     to custom:qemu64 and reaches READY;
#   - a computer keeps the CPU it was loaded with when the node's mode changes;
#     changing the mode (vclctl or plain SQL) forgets the probe;
#   - node check reports each broken item with its fix (missing directory,
#     missing qemu-img) and exits 1; bad --cpu-mode values never reach a row.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (CPU modes need QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="t${WORLD##*.}"
QEMU=$(command -v qemu-system-x86_64) || bail "qemu-system-x86_64 not installed"

ok "migrate" "$VCLCTL" migrate
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
ok "image add" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
node_add() {
    local name=$1
    shift
    mkdir -p "$WORLD/$name"/{master,cow,xml}
    chmod 755 "$WORLD/$name" "$WORLD/$name"/*
    "$VCLCTL" node add "$name" --uri "$URI" --master-dir "$WORLD/$name/master" \
        --cow-dir "$WORLD/$name/cow" --xml-dir "$WORLD/$name/xml" --repo "$WORLD/repo" "$@"
}
pc_add() {
    ok "computer $1 on $2" "$VCLCTL" computer add "$1" --node "$2" \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):$(printf %02x $((RANDOM % 256))):$3" --memory 128 --vcpus 2
    world_track_domain "$1:$T-blank-v1"
}
load() { # COMPUTER CONFIG -> reservation id (after the worker drained)
    local id
    id=$("$VCLCTL" load "$1" $T-blank:1)
    "$WORKER" --config "$2" --drain 2>>"$WORLD/$(basename "$2" .yaml).log"
    echo "$id"
}
row() { psql_val "SELECT $1 FROM vcl.node WHERE name = '$2'"; }
domcpu() { # the <cpu> of a running domain, in node.cpu_mode spelling
    local xml
    xml=$(V dumpxml "$1")
    if [[ $xml =~ \<cpu\ mode=.custom[^\>]*\>[[:space:]]*\<model[^\>]*\>([^\<]+)\< ]]; then
        echo "custom:${BASH_REMATCH[1]}"
    elif [[ $xml =~ \<cpu\ mode=.(host-passthrough|host-model) ]]; then
        echo "${BASH_REMATCH[1]}"
    fi
}

# --- 1. the real node: check, record, load --------------------------------------
ok "node add $T-nreal (cpu_mode defaults to auto)" node_add $T-nreal
is "$(row cpu_mode $T-nreal)" auto "cpu_mode defaults to auto"
is "$(row "coalesce(cpu_mode_resolved, 'NULL')" $T-nreal)" NULL "not probed before anything asks"
out=$("$VCLCTL" node check $T-nreal 2>&1)
rc=$?
diag "$out"
is "$rc" 0 "node check $T-nreal passes on this host"
like "$out" "ok +libvirt +$URI reachable in [0-9]+ ms; libvirt [0-9.]+" "libvirt item with version and timing"
like "$out" "ok +driver +(kvm|qemu) accepts the node" "driver item names the driver"
like "$out" "ok +qemu-img +qemu-img version" "qemu-img item"
like "$out" "ok +cpu +auto resolves to " "cpu item says what auto resolves to"
resolved=$(row cpu_mode_resolved $T-nreal)
ok "auto resolved to a concrete mode: $resolved" test -n "$resolved"
probe=$(row cpu_probe $T-nreal)
like "$probe" "^host-passthrough: " "the probe tried host-passthrough first"
like "$probe" "(^|; )$resolved: ok" "the resolved mode is the first that started"
ok "probe time recorded" test -n "$(row cpu_probed_at $T-nreal)"
out=$("$VCLCTL" node list)
like "$out" "auto: $resolved" "node list shows what auto resolved to"
ok "no probe domain left behind" wait_for "probe domains gone" 10 bash -c "! virsh -q -c '$URI' list --all --name | grep -q '^vcl-cpu-probe-$T-'"

pc_add $T-r1 $T-nreal 01
real_cfg=$(world_config wreal)
id=$(load $T-r1 "$real_cfg")
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "load on $T-nreal done"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-r1'")" READY "READY"
is "$(domcpu "$T-r1:$T-blank-v1")" "$resolved" "the domain runs with the resolved CPU mode"
like "$(psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $id AND stage = 'generate_xml'")" \
    "cpu=$resolved" "generate_xml's detail names the CPU mode"

# --- 2. a host where only qemu64 starts -------------------------------------------
mkdir -p "$WORLD/emu"
chmod 755 "$WORLD/emu"
cat >"$WORLD/emu/qemu-crashy" <<EOF
#!/bin/sh
# tests/integration/22-cpu-mode.t: the real QEMU, except that every -cpu but
# qemu64 dies at start the way nested AMD/PVM hosts do.
prev=
for a in "\$@"; do
    if [ "\$prev" = "-cpu" ]; then
        case "\$a" in
        qemu64 | qemu64,*) ;;
        *)
            echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
            echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed." >&2
            exit 134
            ;;
        esac
    fi
    prev=\$a
done
exec "$QEMU" "\$@"
EOF
chmod 755 "$WORLD/emu/qemu-crashy"
crash_cfg=$(world_config wcrash "qemu_emulator: \"$WORLD/emu/qemu-crashy\"")

ok "node add $T-nforced --cpu-mode host-passthrough" node_add $T-nforced --cpu-mode host-passthrough
ok "node add $T-nauto (auto)" node_add $T-nauto
pc_add $T-f1 $T-nforced 02
pc_add $T-a1 $T-nauto 03

id=$(load $T-f1 "$crash_cfg")
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" failed "forced mode that cannot start: failed"
is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 1 "permanent: one attempt, not five identical retries"
is "$(psql_val "SELECT failed_stage FROM vcl.reservation WHERE id = $id")" power_on "failed at power_on"
err=$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")
like "$err" "node $T-nforced cannot start a guest with CPU mode host-passthrough: failed to set MSR 0x10a to 0x69" \
    "the error names the node, the mode and QEMU's reason"
like "$err" "run \`vclctl node check $T-nforced\`" "the error says to run node check"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-f1'")" RELOAD "the computer is RELOAD"
unlike "$(V domstate "$T-f1:$T-blank-v1" 2>&1)" "^running" "nothing runs for it"
is "$(row "coalesce(cpu_mode_resolved, 'NULL')" $T-nforced)" NULL "a forced mode is never probed behind the operator's back"

id=$(load $T-a1 "$crash_cfg")
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "auto on the same host: done"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-a1'")" READY "READY"
is "$(row cpu_mode_resolved $T-nauto)" custom:qemu64 "auto fell back to custom:qemu64"
probe=$(row cpu_probe $T-nauto)
like "$probe" "^host-passthrough: rejected \([^)]+\); host-model: rejected \([^)]+\);" \
    "host-passthrough and host-model rejected, each with a reason"
like "$probe" "rejected \(failed to set MSR 0x10a to 0x69\)" "QEMU's reason is kept"
like "$probe" "custom:qemu64: ok$" "qemu64 started"
is "$(domcpu "$T-a1:$T-blank-v1")" custom:qemu64 "the domain runs with custom:qemu64"
xml=$(V dumpxml --inactive "$T-a1:$T-blank-v1")
like "$xml" "<cpu mode=.custom. match=.exact. check=.none.>" "check='none' (qemu64 on a host libvirt thinks lacks a flag)"
like "$xml" "<emulator>$WORLD/emu/qemu-crashy</emulator>" "qemu_emulator is the domain's emulator"
ok "no probe domain left behind" wait_for "probe domains gone" 10 bash -c "! virsh -q -c '$URI' list --all --name | grep -q '^vcl-cpu-probe-$T-'"

out=$("$VCLCTL" node check $T-nforced --config "$crash_cfg" 2>&1)
is "$?" 1 "node check of the forced node fails"
like "$out" "FAIL +cpu +host-passthrough \(forced\) does not start a guest: failed to set MSR" "and says why"
like "$out" "fix: vclctl node set $T-nforced --cpu-mode auto" "with the fix"
like "$out" "custom:qemu64: ok" "and what auto would find"

# --- 3. a computer keeps its CPU; a changed mode forgets the probe ---------------
ok "node set $T-nauto --cpu-mode host-model" "$VCLCTL" node set $T-nauto --cpu-mode host-model
is "$(row "coalesce(cpu_mode_resolved, 'NULL') || ' ' || coalesce(cpu_probe, 'NULL')" $T-nauto)" "NULL NULL" \
    "changing cpu_mode forgets the probe"
ok "power off $T-a1 queued" "$VCLCTL" power $T-a1 off
"$WORKER" --config "$crash_cfg" --drain 2>>"$WORLD/wcrash.log"
is "$(V domstate "$T-a1:$T-blank-v1" | head -1)" "shut off" "it is off"
ok "power on $T-a1 queued" "$VCLCTL" power $T-a1 on
"$WORKER" --config "$crash_cfg" --drain 2>>"$WORLD/wcrash.log"
is "$(V domstate "$T-a1:$T-blank-v1" | head -1)" running "it runs again"
is "$(domcpu "$T-a1:$T-blank-v1")" custom:qemu64 "with the CPU it was loaded with (never redefined behind its user)"
psql_val "UPDATE vcl.node SET cpu_mode_resolved = 'custom:qemu64', cpu_probe = 'x' WHERE name = '$T-nforced'" >/dev/null
psql_val "UPDATE vcl.node SET cpu_mode = 'auto' WHERE name = '$T-nforced'" >/dev/null
is "$(row "coalesce(cpu_mode_resolved, 'NULL')" $T-nforced)" NULL "a plain-SQL change of cpu_mode forgets the probe too"

# --- 4. bad values never reach a row ----------------------------------------------
before=$(psql_val "SELECT cpu_mode FROM vcl.node WHERE name = '$T-nreal'")
for bad in "host" "custom:" "custom:a b" "custom:x'/><qemu:commandline" "custom:-x" "AUTO"; do
    out=$("$VCLCTL" node set $T-nreal --cpu-mode "$bad" 2>&1)
    is "$?" 2 "--cpu-mode '$bad' is a usage error"
    like "$out" "CPU mode" "and says what a CPU mode is"
done
out=$(psql -XAtq -c "UPDATE vcl.node SET cpu_mode = 'custom:x''/><qemu:commandline' WHERE name = '$T-nreal'" 2>&1)
like "$out" "node_cpu_mode_valid" "the schema refuses a hostile cpu_mode written in SQL"
out=$(psql -XAtq -c "UPDATE vcl.node SET cpu_mode_resolved = 'host-passthrough check=none' WHERE name = '$T-nreal'" 2>&1)
like "$out" "node_cpu_mode_resolved_valid" "and a hostile resolved mode"
is "$(psql_val "SELECT cpu_mode FROM vcl.node WHERE name = '$T-nreal'")" "$before" "$T-nreal unchanged"

# --- 5. node check reports each broken item ---------------------------------------
touch "$WORLD/afile"
mkdir -p "$WORLD/wwdir" "$WORLD/newparent"
chmod 777 "$WORLD/wwdir"
chmod 755 "$WORLD/newparent"
ok "node add $T-nbroken" "$VCLCTL" node add $T-nbroken --uri "$URI" --master-dir "$WORLD/afile/master" \
    --cow-dir "$WORLD/wwdir" --xml-dir "$WORLD/newparent/xml"
mkdir -p "$WORLD/nobin"
ln -s "$(type -P true)" "$WORLD/nobin/true"
out=$(PATH="$WORLD/nobin" "$VCLCTL" node check $T-nbroken 2>&1)
is "$?" 1 "node check exits 1 when an item fails"
diag "$out"
like "$out" "FAIL +qemu-img +qemu-img cannot run on the node" "missing qemu-img reported"
like "$out" "fix: install it on the node: apt-get install qemu-utils" "with its fix"
like "$out" "FAIL +master dir +$WORLD/afile/master: $WORLD/afile is a regular file" \
    "a master dir that cannot exist (a file on the way) reported"
like "$out" "FAIL +cow dir +$WORLD/wwdir: directory $WORLD/wwdir is world-writable without the sticky bit" \
    "a world-writable dir reported"
like "$out" "fix: chmod o-w $WORLD/wwdir" "with its fix"
like "$out" "ok +xml dir +$WORLD/newparent/xml does not exist yet: the worker creates it" \
    "a missing dir the worker can create is fine"
like "$out" "$T-nbroken: 3 of [0-9]+ checks failed" "summary counts the failures"
ok "node check changed nothing on the node" test ! -e "$WORLD/newparent/xml" -a "$(stat -c %a "$WORLD/wwdir")" = 777
json=$(PATH="$WORLD/nobin" "$VCLCTL" --json node check $T-nbroken 2>/dev/null)
is "$(psql -XAtq -v j="$json" <<<"SELECT string_agg(e->>'item', ',' ORDER BY e->>'item') FROM json_array_elements(:'j'::json) e WHERE NOT (e->>'ok')::boolean")" \
    "cow dir,master dir,qemu-img" "--json lists exactly the failed items"
ok "node check of an unknown node fails" bash -c "! '$VCLCTL' node check no-such-node 2>/dev/null"
done_testing
