# shellcheck shell=bash
# tests/lib/fault.sh: shared machinery of the fault tests (tests/fault/*.t).
# Sources tests/lib/world.sh.
#
#   fault_world [MAX_LOADS]  world_init, world_pg, world_libvirt, world_dirs;
#                            skip_all without a libvirt daemon; bail without
#                            build/test/vcl-worker; migrate; node "$T-n1"
#                            (max loads MAX_LOADS, default 64) with the world's
#                            dirs; image "$T-blank" revision 1 (a 64 MiB empty
#                            qcow2 in the repository). Sets VCLCTL, WORKER,
#                            TWORKER (build/test/vcl-worker), URI, T (a name
#                            prefix unique to the world); every domain named
#                            "$T-..." is removed on exit.
#   fault_ops                OPS (operation names, in --help order) and
#                            STAGES[op] ("stage stage ..."), parsed from
#                            `vcl-worker --help`
#   new_computer             a new computer "$T-kN" on the node, in
#                            maintenance (nothing of it is claimed); NEWC = name
#   set_state STATE COMPUTER...   computer.state for these computers
#   enqueue COMPUTER OP [ARGS_JSON [IMAGE:REV]]   prints the reservation id
#   dom_of COMPUTER          name of the computer's (first) domain on the node
#   dom_count COMPUTER       how many domains of the computer the node has
#   res_state ID             the reservation's state
#   not_active ID...         true when none is pending or running
#   rescue TIMEOUT_S ID...   run normal workers (--drain, $RESCUE_CFG) in a
#                            loop until every ID has ended; gives up early (1)
#                            on a job nothing will ever claim again
#   launch_group N...        start the faulty workers of cells N... (see below)
#   computer_overlaps IDLIST how many pairs of reservations (of IDLIST, "1,2,...")
#                            of one computer overlapped in time (stage log spans)
#
# Cells: parallel arrays indexed by a cell number N: C_OP, C_STAGE, C_POINT
# (the fault: VCL_FAULT=C_STAGE:C_POINT), C_COMP and C_ID (computer and
# reservation; set by the caller, then remapped by launch_group), C_PID (the
# faulty worker, named fN, log $WORLD/fN.log), C_RC (its exit status, for
# the caller).

[[ -n ${_FAULT_SH_LOADED:-} ]] && return 0
_FAULT_SH_LOADED=1

# shellcheck source=tests/lib/world.sh
. "$(dirname "${BASH_SOURCE[0]}")/world.sh"

fault_world() {
    local max_loads=${1:-64}
    world_init
    world_pg
    world_libvirt
    world_dirs
    [ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"
    VCLCTL="$ROOT/bin/vclctl"
    WORKER="$ROOT/bin/vcl-worker"
    TWORKER="$ROOT/build/test/vcl-worker"
    [ -x "$TWORKER" ] || bail "$TWORKER is not built (make)"
    URI="$VCL_TEST_URI"
    # Names unique to this world: test runs sharing one libvirtd never collide.
    T="t${WORLD##*.}"
    world_track_domains "$T-"
    {
        "$VCLCTL" migrate &&
            qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M &&
            "$VCLCTL" node add "$T-n1" --uri "$URI" --master-dir "$WORLD/master" \
                --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo" --max-loads "$max_loads" &&
            "$VCLCTL" image add "$T-blank" --os-type none &&
            "$VCLCTL" image revision-add "$T-blank" --revision 1 --file-stem "$T-blank-v1"
    } >>"$WORLD/setup.log" 2>&1 || bail "setup failed: $(tail -n 3 "$WORLD/setup.log")"
    # The preflight, as an operator runs it after node add: it also settles
    # the node's guest CPU mode (cpu_mode auto) before any worker starts, so
    # no stage of a fault test waits for the probe.
    if [ "$VCL_TEST_LIBVIRT" = real ]; then
        "$VCLCTL" node check "$T-n1" >>"$WORLD/setup.log" 2>&1 ||
            bail "vclctl node check $T-n1 failed: $(grep -E 'FAIL|fix:' "$WORLD/setup.log" | head -n 4)"
    fi
    RESCUE_CFG=$(world_config rescue "slots: 32" "lease_seconds: 5" "heartbeat_seconds: 1")
}

fault_ops() {
    local line op=""
    OPS=()
    declare -gA STAGES=()
    while IFS= read -r line; do
        if [[ $line =~ ^\ \ ([a-z_]+)[[:space:]] ]]; then
            op=${BASH_REMATCH[1]}
            OPS+=("$op")
            STAGES[$op]=""
        elif [[ -n $op && $line =~ ^[[:space:]]+[0-9]+\.[[:space:]]+([a-z_]+) ]]; then
            STAGES[$op]+="${STAGES[$op]:+ }${BASH_REMATCH[1]}"
        fi
    done < <("$WORKER" --help | sed -n '/^Operations and their stages:/,/^Configuration options:/p')
}

NCOMP=0
new_computer() {
    NCOMP=$((NCOMP + 1))
    local c="$T-k$NCOMP"
    "$VCLCTL" -q computer add "$c" --node "$T-n1" \
        --mac "$(printf '52:54:00:fa:%02x:%02x' $((NCOMP / 256)) $((NCOMP % 256)))" \
        --memory 128 --vcpus 1 >/dev/null || bail "computer add $c failed"
    psql_val "UPDATE vcl.computer SET state = 'maintenance' WHERE name = '$c'" >/dev/null
    NEWC=$c
}

set_state() {
    local st=$1 names
    shift
    (($#)) || return 0
    names=$(printf "'%s'," "$@")
    psql_val "UPDATE vcl.computer SET state = '$st' WHERE name IN (${names%,})" >/dev/null
}

enqueue() {
    local c=$1 o=$2 a=${3:-} img=${4:-$T-blank:1}
    if [[ $o == load ]]; then
        # fault tests queue loads behind loads on purpose: no de-duplication
        "$VCLCTL" -q load --no-dedup "$c" "$img"
    elif [[ -n $a ]]; then
        "$VCLCTL" -q enqueue "$c" "$o" --args "$a"
    else
        "$VCLCTL" -q enqueue "$c" "$o"
    fi
}

dom_of() {
    timeout 30 virsh -q -c "$URI" list --all --name | grep -m1 "^$1:"
}

dom_count() {
    timeout 30 virsh -q -c "$URI" list --all --name | grep -c "^$1:"
}

res_state() {
    psql_val "SELECT state FROM vcl.reservation WHERE id = $1"
}

_fault_ids() {
    local IFS=,
    echo "$*"
}

not_active() {
    [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($(_fault_ids "$@"))
                    AND state IN ('pending','running')")" = 0 ]
}

# A drain finds nothing while the dead workers' leases run, so the loop goes
# on until they expire.
rescue() {
    local timeout=$1 deadline t_first=""
    shift
    deadline=$((SECONDS + timeout))
    while ! not_active "$@"; do
        ((SECONDS < deadline)) || { diag "rescue: still active after ${timeout}s"; return 1; }
        # A job whose lease expired 15 s ago while rescue workers kept
        # claiming for 15 s is stuck (nothing will ever claim it): stop waiting.
        if [[ -n $t_first ]] && ((SECONDS - t_first >= 15)) &&
            [ "$(psql_val "SELECT bool_and(state = 'running' AND lease_expires_at < now() - interval '15 s')
                            FROM vcl.reservation WHERE id IN ($(_fault_ids "$@"))
                             AND state IN ('pending', 'running')")" = t ]; then
            diag "rescue: stuck, never claimed again: $(psql_val "SELECT string_agg(format('reservation %s (%s, computer %s is %s, checkpoint %s)',
                      r.id, r.operation, c.name, c.state, coalesce(r.stage, 'none')), '; ')
                 FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id
                WHERE r.id IN ($(_fault_ids "$@")) AND r.state IN ('pending', 'running')")"
            return 1
        fi
        t_first=${t_first:-$SECONDS}
        "$WORKER" --config "$RESCUE_CFG" --drain >>"$WORLD/rescue.log" 2>&1 ||
            diag "rescue worker exited $?"
        not_active "$@" || sleep 0.5
    done
}

computer_overlaps() {
    psql_val "
      WITH spans AS (SELECT r.computer_id, s.reservation_id, min(s.started_at) a, max(s.finished_at) b
                       FROM vcl.reservation r JOIN vcl.reservation_stage s ON s.reservation_id = r.id
                      WHERE r.id IN ($1) GROUP BY 1, 2)
      SELECT count(*) FROM spans x JOIN spans y ON x.computer_id = y.computer_id AND x.reservation_id < y.reservation_id
       WHERE x.a < y.b AND y.a < x.b"
}

C_OP=() C_STAGE=() C_POINT=() C_COMP=() C_ID=() C_PID=() C_RC=()

# launch_group N...: cells of ONE operation, each with its computer (in
# maintenance) and its reservation enqueued. Their computers (only those)
# become available and all their faulty workers (build/test/vcl-worker,
# slots 1, lease 5 s, heartbeat 1 s, VCL_FAULT=C_STAGE:C_POINT) start at once;
# each claims one of the group's reservations. Which one does not matter
# (all are the same operation on equally prepared computers): once every
# reservation of the group is claimed, by as many workers, each cell learns
# which reservation (and computer) its worker took. Every 50 ms, each
# computer whose reservation is claimed goes back to maintenance, so that no
# faulty worker still starting can take over a job whose worker already died
# (after its 5 s lease): each job meets exactly one faulty worker. (The one
# exception, the rescue of a maintenance operation, which the claim allows on
# a computer in maintenance, needs a faulty worker that has not claimed for 5 s.)
launch_group() {
    local n ids comps=() deadline row
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
            read -r "C_ID[n]" "C_COMP[n]" <<<"$row"
        else
            diag "cell $n (${C_OP[n]} ${C_STAGE[n]}:${C_POINT[n]}): its worker claimed nothing; $(tail -n 3 "$WORLD/f$n.log")"
            C_ID[n]=0
        fi
    done
}
