#!/usr/bin/env bash
# The libvirt daemon restarts in the middle of loads. Two loads, each held
# by a worker stopped (SIGSTOP, well within its lease) at a stage boundary:
#   A at define:stop-start   libvirtd is stopped, A continues: its define
#                            meets no daemon: the stage fails as retryable
#                            (attempts left, pending again), A exits (--drain);
#   B at node_status:stop-start (its domain already runs)
#                            libvirtd comes back (tools/libvirt-up, as a
#                            restart would), B continues with the connection
#                            it opened before: its check fails as retryable.
# A normal worker then finishes both. Both end done; the failed stage ran
# again and finished; B's domain survived the restart (same domain id, so
# the same QEMU process); one domain each, no temporary file.
#
# WARNING: every test on this machine shares the system libvirtd. This test
# stops it for a few seconds: other tests running at that moment may see
# libvirt errors. The daemon is started again on exit whatever happens.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 8
t_start=$SECONDS
fault_ops
NSTAGES=$(wc -w <<<"${STAGES[load]}")
[ "$URI" = qemu:///system ] || skip_all "needs the system libvirtd (qemu:///system), not $URI"
((EUID == 0)) || skip_all "stopping and starting libvirtd needs root"
world_on_exit "$ROOT/tools/libvirt-up"

libvirtd_pid() {
    local pid
    pid=$(head -n 1 /run/libvirtd.pid 2>/dev/null)
    [[ $pid =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == libvirtd ]] && echo "$pid"
}
libvirt_answers() { timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1; }
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }
ok "libvirtd runs (pid in /run/libvirtd.pid)" test -n "$(libvirtd_pid)"

# Start a faulty worker (--drain: it exits once its attempt is over) for one
# computer at a time, so each takes the reservation meant for it.
start_zombie() { # NAME FAULT COMPUTER ID
    # a lease long enough that it holds while the worker is stopped
    world_config "$1" "slots: 1" "lease_seconds: 30" "heartbeat_seconds: 2" >/dev/null
    set_state available "$3"
    world_worker "$1" --fault "$2" --drain
    wait_for "$1 stopped at $2" 60 stopped "$WORLD_WORKER_PID" || diag "$1: $(tail -n 3 "$WORLD/$1.log")"
    set_state maintenance "$3"
    is "$(psql_val "SELECT w.name FROM vcl.reservation r JOIN vcl.worker w ON w.id = r.worker_id WHERE r.id = $4")" \
       "$1" "$1 holds reservation $4"
}
new_computer; A=$NEWC
new_computer; B=$NEWC
idA=$(enqueue "$A" load)
idB=$(enqueue "$B" load)
start_zombie za define:stop-start "$A" "$idA"
pidA=$WORLD_WORKER_PID
start_zombie zb node_status:stop-start "$B" "$idB"
pidB=$WORLD_WORKER_PID
domB=$(dom_of "$B")
idB_before=$(timeout 30 virsh -q -c "$URI" domid "$domB")
like "$idB_before" '^[0-9]+$' "B's domain $domB runs (id $idB_before)"

# --- 1. libvirtd goes away; A's define meets no daemon --------------------------
t0=$(date +%s.%N)
pid=$(libvirtd_pid)
kill -TERM "$pid"
gone() { ! kill -0 "$pid" 2>/dev/null; }
wait_for "libvirtd $pid to exit" 15 gone || kill -KILL "$pid"
ok "libvirtd ($pid) stopped" wait_for "libvirtd gone" 10 gone
kill -CONT "$pidA"
rc=0
world_worker_wait "$pidA" 60 || rc=$?
is "$rc" 0 "A's worker gave its attempt up and exited"
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || failed_stage FROM vcl.reservation WHERE id = $idA")" \
   "pending 1 define" "A: define failed as retryable, pending again"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $idA")" "." "A: the error is recorded"
diag "A's error: $(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $idA")"

# --- 2. libvirtd comes back; B goes on with its old connection ------------------
"$ROOT/tools/libvirt-up" >>"$WORLD/libvirt-up.log" 2>&1
ok "libvirtd answers again" wait_for "libvirt back" 60 libvirt_answers
diag "libvirtd down and up again in $(echo "$(date +%s.%N) - $t0" | bc) s (pid $(libvirtd_pid))"
is "$(timeout 30 virsh -q -c "$URI" domid "$domB")" "$idB_before" "B's domain survived the restart (same id: same QEMU process)"
kill -CONT "$pidB"
rc=0
world_worker_wait "$pidB" 60 || rc=$?
is "$rc" 0 "B's worker gave its attempt up and exited"
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || failed_stage FROM vcl.reservation WHERE id = $idB")" \
   "pending 1 node_status" "B: node_status failed as retryable, pending again"
diag "B's error: $(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $idB")"

# --- 3. a normal worker finishes both ---------------------------------------------
set_state available "$A" "$B"
rescue 90 "$idA" "$idB" || true
for x in A B; do
    c=${!x} id=$(eval echo "\$id$x")
    is "$(res_state "$id")" done "$x: done"
    is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 2 "$x: in two attempts"
    is "$(psql_val "SELECT count(*) FROM (SELECT stage FROM vcl.reservation_stage WHERE reservation_id = $id
                     AND outcome = 'ok' GROUP BY 1 HAVING count(*) = 1) x")" "$NSTAGES" \
       "$x: every stage finished ok exactly once"
    is "$(dom_count "$c")" 1 "$x: one domain of $c"
    is "$(timeout 30 virsh -q -c "$URI" domstate "$(dom_of "$c")" | head -n 1)" running "$x: its domain runs"
    is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$c'")" READY "$x: $c READY"
done
is "$(psql_val "SELECT string_agg(outcome, ',' ORDER BY id) FROM vcl.reservation_stage
                WHERE reservation_id = $idA AND stage = 'define'")" "failed,ok" "A: define failed, then ran again"
is "$(psql_val "SELECT string_agg(outcome, ',' ORDER BY id) FROM vcl.reservation_stage
                WHERE reservation_id = $idB AND stage = 'node_status'")" "failed,ok" "B: node_status failed, then ran again"
is "$(timeout 30 virsh -q -c "$URI" domid "$domB")" "$idB_before" "B's domain is still the one started before the restart"
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
diag "whole file: $((SECONDS - t_start)) s"
done_testing
