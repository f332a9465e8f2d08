#!/usr/bin/env bash
# SIGKILL matrix: for every stage of every operation (read from
# `vcl-worker --help`, so new operations are covered as they land), a worker
# (build/test/vcl-worker, VCL_FAULT=<stage>:start|finish) is killed right
# after the stage-start row is committed, and once more right before the
# stage's checkpoint is written. Then normal workers (--drain, in a bounded
# loop) rescue every job after its lease expires. Each job must end done
# exactly once: every stage finished ok exactly once, the killed stage shows
# the retry (an 'abandoned' row, then 'ok' under a later lease), the stages
# before it not rerun; the node holds exactly one domain and one COW disk per
# loaded computer and no temporary file anywhere.
#
# One computer per matrix cell, so all cells of a wave are killed
# concurrently. A cell is isolated without touching the worker: every
# computer is in maintenance (nothing of it is claimed, not even a rescue)
# except the one whose faulty worker is starting; once that worker has
# claimed its reservation the computer goes back to maintenance. All
# computers become available again for the rescue.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"
[ -x "$ROOT/build/test/vcl-worker" ] || bail "build/test/vcl-worker is not built (make)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
T="t${WORLD##*.}"
world_track_domains "$T-"
t_start=$SECONDS

ok "migrate" "$VCLCTL" migrate
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
ok "node add" "$VCLCTL" node add "$T-n1" --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo" --max-loads 64
ok "image add" "$VCLCTL" image add "$T-blank" --os-type none
ok "revision 1" "$VCLCTL" image revision-add "$T-blank" --revision 1 --file-stem "$T-blank-v1"

# --- the operations and their stages, from --help ----------------------------
OPS=()
declare -A STAGES=()
op=""
while IFS= read -r line; do
    if [[ $line =~ ^\ \ ([a-z_]+)[[:space:]] ]]; then
        op=${BASH_REMATCH[1]}
        OPS+=("$op")
        STAGES[$op]=""
    elif [[ -n $op && $line =~ ^[[:space:]]+[0-9]+\.[[:space:]]+([a-z_]+) ]]; then
        STAGES[$op]+="${STAGES[$op]:+ }${BASH_REMATCH[1]}"
    fi
done < <("$WORKER" --help | sed -n '/^Operations and their stages:/,/^Configuration options:/p')
like "${STAGES[load]:-}" "^cleanup .*node_status$" "--help lists the stages of load"
diag "operations: $(for o in "${OPS[@]}"; do printf '%s(%s) ' "$o" "$(wc -w <<<"${STAGES[$o]}")"; done)"

# --- machinery ---------------------------------------------------------------
NCOMP=0
new_computer() { # sets NEWC to the name of a new computer (in maintenance)
    NCOMP=$((NCOMP + 1))
    local c="$T-k$NCOMP"
    "$VCLCTL" -q computer add "$c" --node "$T-n1" \
        --mac "$(printf '52:54:00:fa:%02x:%02x' $((NCOMP / 256)) $((NCOMP % 256)))" \
        --memory 128 --vcpus 1 >/dev/null || bail "computer add $c failed"
    psql_val "UPDATE vcl.computer SET state = 'maintenance' WHERE name = '$c'" >/dev/null
    NEWC=$c
}
set_state() { # STATE COMPUTER...
    local st=$1 names
    shift
    (($#)) || return 0
    names=$(printf "'%s'," "$@")
    psql_val "UPDATE vcl.computer SET state = '$st' WHERE name IN (${names%,})" >/dev/null
}
enqueue() { # COMPUTER OPERATION [ARGS_JSON [IMAGE:REV]]: prints the reservation id
    local c=$1 o=$2 a=${3:-} img=${4:-$T-blank:1}
    if [[ $o == load ]]; then
        "$VCLCTL" -q load "$c" "$img"
    elif [[ -n $a ]]; then
        "$VCLCTL" -q enqueue "$c" "$o" --args "$a"
    else
        "$VCLCTL" -q enqueue "$c" "$o"
    fi
}
dom_of() { # COMPUTER: the name of its (first) domain on the node
    timeout 30 virsh -q -c "$URI" list --all --name | grep -m1 "^$1:"
}
res_state() { psql_val "SELECT state FROM vcl.reservation WHERE id = $1"; }
claimed_by() { # ID WORKER_NAME: the reservation runs under that worker
    [ "$(psql_val "SELECT r.state || ' ' || w.name FROM vcl.reservation r
                    JOIN vcl.worker w ON w.id = r.worker_id WHERE r.id = $1")" = "running $2" ]
}
not_active() { # ID...: none pending or running
    local ids
    ids=$(IFS=,; echo "$*")
    [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($ids) AND state IN ('pending','running')")" = 0 ]
}
# Rescue: normal workers (--drain) in a bounded loop until every given
# reservation has ended. A drain finds nothing while the dead workers' leases
# run, so the loop goes on until they expire.
rescue() { # TIMEOUT_S ID...
    local timeout=$1 deadline
    shift
    deadline=$((SECONDS + timeout))
    while ! not_active "$@"; do
        ((SECONDS < deadline)) || { diag "rescue: still active after ${timeout}s"; return 1; }
        # A job whose lease expired 15 s ago while rescue workers kept
        # claiming is stuck (nothing will ever claim it): stop waiting.
        if [ "$(psql_val "SELECT bool_and(state = 'running' AND lease_expires_at < now() - interval '15 s')
                            FROM vcl.reservation WHERE id IN ($(IFS=,; echo "$*"))
                             AND state IN ('pending', 'running')")" = t ]; then
            diag "rescue: stuck, never claimed again: $(psql_val "SELECT string_agg(format('reservation %s (%s, computer %s is %s, checkpoint %s)',
                      r.id, r.operation, c.name, c.state, coalesce(r.stage, 'none')), '; ')
                 FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id
                WHERE r.id IN ($(IFS=,; echo "$*")) AND r.state IN ('pending', 'running')")"
            return 1
        fi
        "$WORKER" --config "$RESCUE_CFG" --drain >>"$WORLD/rescue.log" 2>&1 ||
            diag "rescue worker exited $?"
        not_active "$@" || sleep 0.5
    done
}
RESCUE_CFG=$(world_config rescue "slots: 32" "lease_seconds: 5" "heartbeat_seconds: 1")
PREP_CFG=$(world_config prep "slots: 32" "lease_seconds: 5" "heartbeat_seconds: 1")

# Cells: parallel arrays, one entry per (operation, stage, point).
C_OP=() C_STAGE=() C_POINT=() C_COMP=() C_ID=() C_PID=() C_RC=()
# launch_group N...: cells of ONE operation, each with its computer and its
# reservation enqueued. Their computers (only those) become available and
# all their faulty workers (slots 1) start at once; each claims one of the
# group's reservations (which one does not matter: all are the same
# operation on equally prepared computers) and kills itself at its stage.
# Once every reservation of the group is claimed, by as many workers, the
# computers go back to maintenance and each cell learns which reservation
# (and computer) its worker took.
launch_group() {
    local n w ids comps=() deadline row
    ids=$(for n in "$@"; do printf '%s,' "${C_ID[n]}"; done)
    ids=${ids%,}
    for n in "$@"; do
        comps+=("${C_COMP[n]}")
        world_config "f$n" "slots: 1" "lease_seconds: 5" "heartbeat_seconds: 1" >/dev/null
    done
    set_state available "${comps[@]}"
    for n in "$@"; do
        world_worker "f$n" --fault "${C_STAGE[n]}:${C_POINT[n]}"
        C_PID[n]=$WORLD_WORKER_PID
    done
    # Every 50 ms: each computer whose reservation is claimed goes back to
    # maintenance at once, so that no faulty worker of the group still
    # starting can take over a job whose worker already died (5 s lease).
    deadline=$((SECONDS + 30))
    until [ "$(psql_val "
        WITH claimed AS (SELECT computer_id, worker_id FROM vcl.reservation
                          WHERE id IN ($ids) AND state = 'running' AND attempts = 1),
             m AS (UPDATE vcl.computer SET state = 'maintenance'
                    WHERE id IN (SELECT computer_id FROM claimed) AND state <> 'maintenance')
        SELECT count(*) || ' ' || count(DISTINCT worker_id) FROM claimed")" = "$# $#" ]; do
        ((SECONDS < deadline)) || { diag "launch of ${C_OP[$1]}: not every reservation claimed once within 30 s"; break; }
        sleep 0.05
    done
    set_state maintenance "${comps[@]}"
    for n in "$@"; do
        row=$(psql_val "SELECT r.id || ' ' || c.name FROM vcl.reservation r
                          JOIN vcl.worker w ON w.id = r.worker_id JOIN vcl.computer c ON c.id = r.computer_id
                         WHERE r.id IN ($ids) AND w.name = 'f$n'")
        if [[ -n $row ]]; then
            read -r C_ID[n] C_COMP[n] <<<"$row"
        else
            diag "cell $n (${C_OP[n]} ${C_STAGE[n]}:${C_POINT[n]}): its worker claimed nothing; $(tail -n 3 "$WORLD/f$n.log")"
            C_ID[n]=0
        fi
    done
}
# run_wave N...: launch the cells (grouped by operation), let every faulty
# worker die, make the computers available, rescue, then check each cell.
run_wave() {
    local n t0=$SECONDS comps=() ids=() group=() o
    for n in "$@" -; do
        if [[ $n == - || (${#group[@]} -gt 0 && ${C_OP[n]} != "$o") ]]; then
            launch_group "${group[@]}"
            group=()
        fi
        [[ $n == - ]] && break
        o=${C_OP[n]}
        group+=("$n")
    done
    local t_launched=$SECONDS
    for n in "$@"; do
        C_RC[n]=0
        world_worker_wait "${C_PID[n]}" 60 || C_RC[n]=$?
    done
    local t_killed=$SECONDS waiting=()
    for n in "$@"; do
        if waits_for_operator "$n"; then
            waiting+=("$n")
        else
            comps+=("${C_COMP[n]}")
            ids+=("${C_ID[n]}")
        fi
    done
    set_state available "${comps[@]}" "${EXTRA_COMPS[@]}"
    rescue 60 "${ids[@]}" "${EXTRA_IDS[@]}" || true
    diag "wave of $# cell(s): launched in $((t_launched - t0)) s, all dead $((t_killed - t_launched)) s later, rescued in $((SECONDS - t_killed)) s"
    # A job killed after its own stage put the computer in maintenance waits
    # (documented in worker/op_delete.c: the claim skips computers in
    # maintenance) until an operator puts the computer back; then the rescue
    # completes it without rerunning that stage.
    for n in "${waiting[@]}"; do
        local what="${C_OP[n]} ${C_STAGE[n]}:${C_POINT[n]} (${C_COMP[n]}, reservation ${C_ID[n]})"
        wait_for "lease of ${C_ID[n]} expired" 30 \
            test "$(psql_val "SELECT lease_expires_at < now() FROM vcl.reservation WHERE id = ${C_ID[n]}")" = t
        "$WORKER" --config "$RESCUE_CFG" --drain >>"$WORLD/rescue.log" 2>&1
        is "$(psql_val "SELECT r.state || ' ' || c.state FROM vcl.reservation r JOIN vcl.computer c
                         ON c.id = r.computer_id WHERE r.id = ${C_ID[n]}")" "running maintenance" \
           "$what: after its lease expired the job waits, its computer in maintenance"
        diag "KNOWN GAP: reservation ${C_ID[n]} (${C_OP[n]} killed at ${C_STAGE[n]}:${C_POINT[n]}) does not end until an operator makes ${C_COMP[n]} available"
        ok "$what: operator: vclctl computer set --state available" \
            "$VCLCTL" -q computer set "${C_COMP[n]}" --state available
        rescue 30 "${C_ID[n]}" || true
    done
    for n in "$@"; do
        check_cell "$n"
    done
}
waits_for_operator() { # N: cell killed right after its stage put the computer in maintenance
    [[ ${SETS_MAINTENANCE[${C_OP[$1]}]:-} == "${C_STAGE[$1]}" && ${C_POINT[$1]} == finish ]]
}

# What the computer must look like after each operation: domains of the
# computer on the node (and COW disks), the domain state ('' = any), the
# computer's state.
declare -A WANT_DOMS=([delete]=0 [maintenance]=0)
declare -A WANT_STATE=(
    [load]=running [power_on]=running [power_reset]=running [power_off]="shut off"
    [shutdown]="shut off" [snapshot_create]=running [snapshot_delete]=running
    [snapshot_revert]=running [capture]="shut off")
declare -A WANT_CSTATE=([maintenance]=maintenance)
declare -A OP_ARGS=(
    [snapshot_create]='{"snapshot":"fs1"}' [snapshot_delete]='{"snapshot":"fs1"}'
    [snapshot_revert]='{"snapshot":"fs1"}' [shutdown]='{"timeout":1}'
    [capture]='{"shutdown_timeout":1}')
# Operations run first (by a normal worker) so that the one under test has
# something to act on.
declare -A OP_PREREQ=([snapshot_delete]=snapshot_create [snapshot_revert]=snapshot_create
                      [power_on]=power_off)
# Operations whose computers each load an image of their own first: two
# captures of one image at once are a race of their own (revision numbers),
# not what this test is about.
declare -A OP_OWN_IMAGE=([capture]=1)
# Operations this test cannot set up generically (none at the moment; an
# entry here is reported as a skip).
declare -A OP_SKIP=()
# Stages that put the computer in maintenance themselves: a cell killed at
# their finish leaves it so (the rescue must cope; the test does not undo it).
declare -A SETS_MAINTENANCE=([maintenance]=maintenance)

check_cell() {
    local n=$1 id=${C_ID[n]} c=${C_COMP[n]} o=${C_OP[n]} s=${C_STAGE[n]} p=${C_POINT[n]}
    local what="$o $s:$p ($c, reservation $id)" all ok_stages want doms st
    is "${C_RC[n]}" 137 "$what: the faulty worker died of SIGKILL"
    is "$(res_state "$id")" done "$what: done after the rescue"
    all=$(tr ' ' ',' <<<"${STAGES[$o]}")
    if waits_for_operator "$n"; then
        is "$(psql_val "SELECT string_agg(outcome, ',' ORDER BY id) FROM vcl.reservation_stage
                        WHERE reservation_id = $id AND stage = '$s'")" "abandoned" \
           "$what: the killed stage was abandoned and (its write being done) not rerun"
        all=$(tr ' ' '\n' <<<"${STAGES[$o]}" | grep -vx "$s" | paste -sd,)
    else
        is "$(psql_val "SELECT string_agg(outcome, ',' ORDER BY id) FROM vcl.reservation_stage
                        WHERE reservation_id = $id AND stage = '$s'")" "abandoned,ok" \
           "$what: the killed stage was abandoned, then ran again and finished"
        is "$(psql_val "SELECT count(DISTINCT lease_token) FROM vcl.reservation_stage
                        WHERE reservation_id = $id AND stage = '$s'")" 2 \
           "$what: the two runs of $s were under two leases"
    fi
    ok_stages=$(psql_val "SELECT string_agg(stage, ',' ORDER BY id) FROM vcl.reservation_stage
                          WHERE reservation_id = $id AND outcome = 'ok'")
    is "$ok_stages" "$all" "$what: every stage (that had to run) finished ok exactly once, in order"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id
                    AND outcome NOT IN ('ok', 'abandoned')")" 0 "$what: no stage failed or is left running"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id
                    AND outcome = 'abandoned'")" 1 "$what: exactly one stage run abandoned (the killed one)"
    want=${WANT_DOMS[$o]:-1}
    doms=$(timeout 30 virsh -q -c "$URI" list --all --name | grep -c "^$c:" || true)
    is "$doms" "$want" "$what: $want domain(s) of $c on the node"
    is "$(find "$WORLD/cow" -maxdepth 1 -name "${c}_*" | wc -l)" "$want" "$what: $want COW disk(s) of $c"
    if [[ $want == 1 && -n ${WANT_STATE[$o]:-} ]]; then
        st=$(timeout 30 virsh -q -c "$URI" domstate "$(dom_of "$c")" 2>&1 | head -n 1)
        is "$st" "${WANT_STATE[$o]}" "$what: domain is ${WANT_STATE[$o]}"
    fi
    if [[ $o == load ]]; then
        is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$c'")" READY "$what: $c READY"
    fi
    want=${WANT_CSTATE[$o]:-available}
    waits_for_operator "$n" && want=available   # the operator's choice stands
    is "$(psql_val "SELECT state FROM vcl.computer WHERE name = '$c'")" "$want" "$what: computer $c is $want"
}

# --- 1. load: every stage, start and finish, all cells in one wave ------------
# Plus WIDTH more computers loaded by the rescue workers of this wave, so that
# the waves of the other operations can be wider.
WIDTH=32
EXTRA_COMPS=() EXTRA_IDS=()
cells=()
for s in ${STAGES[load]}; do
    for p in start finish; do
        n=${#C_OP[@]}
        new_computer
        C_OP[n]=load C_STAGE[n]=$s C_POINT[n]=$p C_COMP[n]=$NEWC
        C_ID[n]=$(enqueue "${C_COMP[n]}" load) || bail "enqueue load failed"
        cells+=("$n")
    done
done
while ((${#cells[@]} + ${#EXTRA_COMPS[@]} < WIDTH)); do
    new_computer
    EXTRA_COMPS+=("$NEWC")
    EXTRA_IDS+=("$(enqueue "$NEWC" load)")
done
run_wave "${cells[@]}"
LOADED=()
for n in "${cells[@]}"; do
    [ "$(res_state "${C_ID[n]}")" = done ] && LOADED+=("${C_COMP[n]}")
done
for n in "${!EXTRA_COMPS[@]}"; do
    [ "$(res_state "${EXTRA_IDS[n]}")" = done ] && LOADED+=("${EXTRA_COMPS[n]}")
done
is "${#LOADED[@]}" "$WIDTH" "$WIDTH computers loaded for the other operations"
EXTRA_COMPS=() EXTRA_IDS=()
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere in the world's dirs"
is "$(ls "$WORLD/master" | wc -l)" 1 "one master image on the node"

# --- 2. every other operation with stages, on loaded computers ----------------
todo=()
for o in "${OPS[@]}"; do
    [[ $o == load ]] && continue
    if [[ -z ${STAGES[$o]} ]]; then
        diag "operation $o has no stages: nothing to kill (it completes at claim)"
        continue
    fi
    if [[ -n ${OP_SKIP[$o]:-} ]]; then
        diag "SKIPPED operation $o: ${OP_SKIP[$o]}"
        skip "operation $o: ${OP_SKIP[$o]}"
        continue
    fi
    for s in ${STAGES[$o]}; do
        for p in start finish; do
            todo+=("$o:$s:$p")
        done
    done
done
((${#LOADED[@]} > 0)) || bail "no computer was loaded: cannot test the other operations"
# Waves of at most one cell per loaded computer.
while ((${#todo[@]} > 0)); do
    wave=() prereq_ids=() k=0
    while ((${#todo[@]} > 0 && k < ${#LOADED[@]})); do
        IFS=: read -r o s p <<<"${todo[0]}"
        todo=("${todo[@]:1}")
        n=${#C_OP[@]}
        C_OP[n]=$o C_STAGE[n]=$s C_POINT[n]=$p C_COMP[n]=${LOADED[k]}
        k=$((k + 1))
        wave+=("$n")
    done
    # Prerequisites, by a normal worker, with the wave's computers available:
    # a computer an earlier wave left without a running domain is loaded
    # again, then the operation's own prerequisite runs.
    for n in "${wave[@]}"; do
        o=${C_OP[n]}
        st=$(timeout 30 virsh -q -c "$URI" domstate "$(dom_of "${C_COMP[n]}")" 2>/dev/null | head -n 1)
        if [[ -n ${OP_OWN_IMAGE[$o]:-} ]]; then
            img="$T-i$n"
            qemu-img create -q -f qcow2 "$WORLD/repo/$img-v1.qcow2" 64M
            "$VCLCTL" -q image add "$img" --os-type none >/dev/null &&
                "$VCLCTL" -q image revision-add "$img" --revision 1 --file-stem "$img-v1" >/dev/null ||
                bail "image $img"
            prereq_ids+=("$(enqueue "${C_COMP[n]}" load "" "$img:1")")
        elif [[ $st != running ]]; then
            prereq_ids+=("$(enqueue "${C_COMP[n]}" load)")
        fi
        if [[ -n ${OP_PREREQ[$o]:-} ]]; then
            prereq_ids+=("$(enqueue "${C_COMP[n]}" "${OP_PREREQ[$o]}" "${OP_ARGS[${OP_PREREQ[$o]}]:-}")")
        fi
    done
    t0=$SECONDS
    if ((${#prereq_ids[@]} > 0)); then
        set_state available $(for n in "${wave[@]}"; do echo "${C_COMP[n]}"; done)
        for i in 1 2 3 4 5 6 7 8 9 10; do
            not_active "${prereq_ids[@]}" && break
            "$WORKER" --config "$PREP_CFG" --drain >>"$WORLD/prep.log" 2>&1
        done
        set_state maintenance $(for n in "${wave[@]}"; do echo "${C_COMP[n]}"; done)
        is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($(IFS=,; echo "${prereq_ids[*]}")) AND state <> 'done'")" 0 \
           "prerequisites of this wave done"
        diag "${#prereq_ids[@]} prerequisite reservation(s) in $((SECONDS - t0)) s"
    fi
    for n in "${wave[@]}"; do
        C_ID[n]=$(enqueue "${C_COMP[n]}" "${C_OP[n]}" "${OP_ARGS[${C_OP[n]}]:-}") ||
            bail "enqueue ${C_OP[n]} on ${C_COMP[n]} failed"
    done
    run_wave "${wave[@]}"
done

# --- 3. the whole world --------------------------------------------------------
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere in the world's dirs at the end"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state <> 'done'")" 0 "every reservation of this test is done"
is "$(psql_val "
  WITH spans AS (SELECT r.computer_id, s.reservation_id, s.id, s.started_at a, s.finished_at b, s.lease_token t
                   FROM vcl.reservation r JOIN vcl.reservation_stage s ON s.reservation_id = r.id
                  WHERE s.outcome = 'ok')
  SELECT count(*) FROM spans x JOIN spans y ON x.computer_id = y.computer_id AND x.id < y.id
   WHERE x.a < y.b AND y.a < x.b")" 0 "no two finished stages of one computer ever overlapped"
is "$(grep -ci deadlock "$WORLD"/*.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no deadlock in any worker log"
diag "whole file: $((SECONDS - t_start)) s, ${#C_OP[@]} cells"
done_testing
