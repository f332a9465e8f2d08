#!/usr/bin/env bash
# Zombie workers: a worker stopped (SIGSTOP) in the middle of a load, at
# every stage (VCL_FAULT=<stage>:stop-start: right after the stage-start row
# is committed, before the stage runs; <stage>:stop-finish: after the stage
# ran, before its checkpoint), stays stopped until its lease has expired; a
# second worker takes the job over and finishes it; then the first gets
# SIGCONT. It must notice the lost lease (its fenced write fails, its log
# says so) and stop without touching the node again: the domain the second
# worker made is untouched (same UUID, same domain id, still running, no
# second domain), and so are the COW disk and the XML file; the job ends
# once (done, every stage ok exactly once under the second worker's lease,
# the zombie's stage abandoned and never finished).
#
# All 16 cells (8 stages x 2 points) run at once, one computer each.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 64
t_start=$SECONDS
fault_ops

cells=()
for s in ${STAGES[load]}; do
    for p in stop-start stop-finish; do
        n=${#C_OP[@]}
        new_computer
        C_OP[n]=load C_STAGE[n]=$s C_POINT[n]=$p C_COMP[n]=$NEWC
        C_ID[n]=$(enqueue "$NEWC" load) || bail "enqueue load failed"
        cells+=("$n")
    done
done
is "${#cells[@]}" 16 "16 cells: every load stage, stopped at its start and at its finish"

# --- 1. the zombies: claim, then stop ----------------------------------------
launch_group "${cells[@]}"
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }
for n in "${cells[@]}"; do
    wait_for "f$n stopped at ${C_STAGE[n]}:${C_POINT[n]}" 60 stopped "${C_PID[n]}" ||
        diag "f$n: $(tail -n 2 "$WORLD/f$n.log")"
done
t_stopped=$SECONDS
ids=()
comps=()
for n in "${cells[@]}"; do
    ids+=("${C_ID[n]}")
    comps+=("${C_COMP[n]}")
done
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage s JOIN vcl.reservation r ON r.id = s.reservation_id
                 WHERE r.id IN ($(IFS=,; echo "${ids[*]}")) AND s.outcome = 'running'
                   AND s.lease_token = r.lease_token")" 16 "every zombie stopped inside a stage (its stage row is running)"

# --- 2. a second worker takes over and finishes every job ---------------------
set_state available "${comps[@]}"
rescue 90 "${ids[@]}" || true
set_state maintenance "${comps[@]}"  # nothing left for a zombie to claim
diag "takeover: leases expired and jobs finished $((SECONDS - t_stopped)) s after the last stop"

# What the second worker left on the node, per cell.
# (The COW's inode, not its mtime: the running guest may write to it.)
snapshot() { # COMPUTER: uuid, domain id (a new one after a restart), state, COW and XML inodes
    local c=$1 d cow xml
    d=$(dom_of "$c")
    cow=$(find "$WORLD/cow" -maxdepth 1 -name "${c}_*.qcow2" | head -n 1)
    xml=$(find "$WORLD/xml" -maxdepth 1 -name "${c}_*.xml" | head -n 1)
    printf 'domain=%s uuid=%s id=%s state=%s cow=%s xml=%s\n' "$d" \
        "$(timeout 30 virsh -q -c "$URI" domuuid "$d" 2>/dev/null)" \
        "$(timeout 30 virsh -q -c "$URI" domid "$d" 2>/dev/null)" \
        "$(timeout 30 virsh -q -c "$URI" domstate "$d" 2>/dev/null | head -n 1)" \
        "$([ -n "$cow" ] && stat -c '%n:%i' "$cow")" "$([ -n "$xml" ] && stat -c '%n:%i:%y' "$xml")"
}
declare -A BEFORE=()
for n in "${cells[@]}"; do
    BEFORE[$n]=$(snapshot "${C_COMP[n]}")
done

# --- 3. SIGCONT the zombies ----------------------------------------------------
for n in "${cells[@]}"; do
    kill -CONT "${C_PID[n]}"
done
for n in "${cells[@]}"; do
    wait_for "f$n gives the job up" 60 grep -q "abandoning the job" "$WORLD/f$n.log" ||
        diag "f$n: $(tail -n 3 "$WORLD/f$n.log")"
done
sleep 2 # anything a zombie would still do to the node, it has done by now
for n in "${cells[@]}"; do
    kill -TERM "${C_PID[n]}"
done
for n in "${cells[@]}"; do
    C_RC[n]=0
    world_worker_wait "${C_PID[n]}" 30 || C_RC[n]=$?
done

# --- 4. per cell ------------------------------------------------------------------
for n in "${cells[@]}"; do
    id=${C_ID[n]} c=${C_COMP[n]} s=${C_STAGE[n]} p=${C_POINT[n]}
    what="load $s:$p ($c, reservation $id)"
    log=$WORLD/f$n.log
    ztoken=$(psql_val "SELECT min(lease_token) FROM vcl.reservation_stage WHERE reservation_id = $id")
    # after the SIGCONT line of the zombie's log
    after=$(sed -n '/continued/,$p' "$log")
    like "$after" "lease (of reservation $id )?lost|lease lost" "$what: the zombie's log says its lease was lost"
    unlike "$after" "stage [a-z_]+ (started|finished)" "$what: the zombie started or finished no stage after SIGCONT"
    is "${C_RC[n]}" 0 "$what: the zombie then exits cleanly on SIGTERM"
    is "$(res_state "$id")" done "$what: done"
    is "$(psql_val "SELECT stage || ' ' || outcome FROM vcl.reservation_stage
                    WHERE reservation_id = $id AND lease_token = $ztoken ORDER BY id DESC LIMIT 1")" \
       "$s abandoned" "$what: the zombie's last stage row stays abandoned (its fenced finish failed)"
    is "$(psql_val "SELECT string_agg(stage, ',' ORDER BY id) FROM vcl.reservation_stage
                    WHERE reservation_id = $id AND outcome = 'ok'")" "$(tr ' ' ',' <<<"${STAGES[load]}")" \
       "$what: every stage finished ok exactly once, in order"
    is "$(psql_val "SELECT count(DISTINCT lease_token) FROM vcl.reservation_stage WHERE reservation_id = $id")" 2 \
       "$what: two leases ran it: the zombie's and the second worker's"
    is "$(psql_val "SELECT w.name FROM vcl.reservation r JOIN vcl.worker w ON w.id = r.worker_id WHERE r.id = $id")" \
       rescue "$what: completed by the second worker"
    is "$(dom_count "$c")" 1 "$what: one domain of $c on the node"
    is "$(snapshot "$c")" "${BEFORE[$n]}" "$what: domain (uuid, id, state), COW and XML untouched by the zombie"
    like "${BEFORE[$n]}" "state=running " "$what: the domain runs"
    is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$c'")" READY "$what: $c READY"
done
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
is "$(grep -ci deadlock "$WORLD"/*.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no deadlock in any worker log"
diag "whole file: $((SECONDS - t_start)) s"
done_testing
