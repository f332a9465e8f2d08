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
# concurrently (launch_group in tests/lib/fault.sh: computers stay in
# maintenance, so nothing of them is claimed, not even a rescue, except
# while the faulty workers of one operation claim; all become available
# again for the rescue, except one that a killed maintenance operation put
# in maintenance itself: the claim rescues that operation regardless). Operations that need something first (a snapshot
# to delete, a domain that is off) get it from a normal worker beforehand;
# a computer an earlier wave left without a running domain is loaded again.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 64
t_start=$SECONDS

fault_ops
like "${STAGES[load]:-}" "^cleanup .*node_status$" "--help lists the stages of load"
diag "operations: $(for o in "${OPS[@]}"; do printf '%s(%s) ' "$o" "$(wc -w <<<"${STAGES[$o]}")"; done)"

# run_wave N...: launch the cells (grouped by operation), let every faulty
# worker die, make the computers available, rescue, then check each cell.
run_wave() {
    local n t0=$SECONDS comps=() ids=() group=() o
    world_libvirt_revive   # a libvirtd the last wave's kills left hung: restarted before, not after, this wave
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
    local t_killed=$SECONDS
    world_libvirt_revive
    for n in "$@"; do
        # a computer its own killed stage put in maintenance stays so: the
        # claim rescues that maintenance operation all the same
        keeps_maintenance "$n" || comps+=("${C_COMP[n]}")
        ids+=("${C_ID[n]}")
    done
    set_state available "${comps[@]}" "${EXTRA_COMPS[@]}"
    rescue 60 "${ids[@]}" "${EXTRA_IDS[@]}" || true
    diag "wave of $# cell(s): launched in $((t_launched - t0)) s, all dead $((t_killed - t_launched)) s later, rescued in $((SECONDS - t_killed)) s"
    # name -> state of every domain of this world on the node
    declare -gA NODE_DOMS=()
    local id name st
    while read -r id name st; do
        [[ $name == "$T-"* ]] && NODE_DOMS[$name]=$st
    done < <(timeout 30 virsh -q -c "$URI" list --all)
    for n in "$@"; do
        check_cell "$n"
    done
}
keeps_maintenance() { # N: cell killed right after its stage put the computer in maintenance
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
# Operations on a node (reservation.node_id, no computer): this matrix is per
# computer; each names where it is killed and rescued instead.
declare -A NODE_OPS=([node_check]="killed in its check stage and rescued by tests/integration/23-node-check-op.t"
                      [stage_image]="killed at the start, mid-copy and at the finish of its master stage and rescued by tests/integration/26-stage-image.t")
# Stages that put the computer in maintenance themselves: a cell killed at
# their finish leaves it so (the rescue must cope; the test does not undo it).
declare -A SETS_MAINTENANCE=([maintenance]=maintenance)

check_cell() {
    local n=$1
    local id=${C_ID[n]} c=${C_COMP[n]} o=${C_OP[n]} s=${C_STAGE[n]} p=${C_POINT[n]}
    local what="$o $s:$p ($c, reservation $id)" all want
    local state killed tokens ok_stages bad abandoned nstatus cstate
    # Every fact from PostgreSQL in one query, the node's domains from one
    # `virsh list` per wave (NODE_DOMS, filled by run_wave).
    IFS='|' read -r state killed tokens ok_stages bad abandoned nstatus cstate < <(psql_val "
        SELECT r.state,
               (SELECT string_agg(outcome, ',' ORDER BY id) FROM vcl.reservation_stage
                 WHERE reservation_id = r.id AND stage = '$s'),
               (SELECT count(DISTINCT lease_token) FROM vcl.reservation_stage
                 WHERE reservation_id = r.id AND stage = '$s'),
               (SELECT string_agg(stage, ',' ORDER BY id) FROM vcl.reservation_stage
                 WHERE reservation_id = r.id AND outcome = 'ok'),
               (SELECT count(*) FROM vcl.reservation_stage
                 WHERE reservation_id = r.id AND outcome NOT IN ('ok', 'abandoned')),
               (SELECT count(*) FROM vcl.reservation_stage
                 WHERE reservation_id = r.id AND outcome = 'abandoned'),
               c.node_status, c.state
          FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id WHERE r.id = $id")
    is "${C_RC[n]}" 137 "$what: the faulty worker died of SIGKILL"
    is "$state" done "$what: done after the rescue"
    all=$(tr ' ' ',' <<<"${STAGES[$o]}")
    if keeps_maintenance "$n"; then
        is "$killed" "abandoned" "$what: the killed stage was abandoned and (its write being done) not rerun"
        all=$(tr ' ' '\n' <<<"${STAGES[$o]}" | grep -vx "$s" | paste -sd,)
    else
        is "$killed" "abandoned,ok" "$what: the killed stage was abandoned, then ran again and finished"
        is "$tokens" 2 "$what: the two runs of $s were under two leases"
    fi
    is "$ok_stages" "$all" "$what: every stage (that had to run) finished ok exactly once, in order"
    is "$bad" 0 "$what: no stage failed or is left running" ||
        diag "$(psql_val "SELECT string_agg(format('%s %s (lease %s): %s', stage, outcome, lease_token, detail), E'\n' ORDER BY id)
                           FROM vcl.reservation_stage WHERE reservation_id = $id AND outcome NOT IN ('ok', 'abandoned')")"
    is "$abandoned" 1 "$what: exactly one stage run abandoned (the killed one)"
    want=${WANT_DOMS[$o]:-1}
    is "$(printf '%s\n' "${!NODE_DOMS[@]}" | grep -c "^$c:")" "$want" "$what: $want domain(s) of $c on the node"
    is "$(find "$WORLD/cow" -maxdepth 1 -name "${c}_*" | wc -l)" "$want" "$what: $want COW disk(s) of $c"
    if [[ $want == 1 && -n ${WANT_STATE[$o]:-} ]]; then
        is "$(for d in "${!NODE_DOMS[@]}"; do [[ $d == "$c:"* ]] && echo "${NODE_DOMS[$d]}"; done)" \
           "${WANT_STATE[$o]}" "$what: domain is ${WANT_STATE[$o]}"
    fi
    if [[ $o == load ]]; then
        is "$nstatus" READY "$what: $c READY"
    fi
    want=${WANT_CSTATE[$o]:-available}
    is "$cstate" "$want" "$what: computer $c is $want"
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
    if [[ -n ${NODE_OPS[$o]:-} ]]; then
        diag "operation $o runs on a node, not a computer: ${NODE_OPS[$o]}"
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
        rescue 90 "${prereq_ids[@]}" || true
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
