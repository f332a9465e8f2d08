#!/usr/bin/env bash
# No hung node can stall the pool. A node that stops answering in the middle
# of a stage (its libvirtd SIGSTOPped; or the sshd that reaches it) fails
# that reservation at the stage's deadline (stage_timeouts {define: 8}, far
# below the 30 s lease) with "node X did not answer within 8 s (stage
# define)", retryable; the worker's only slot is freed at once, and a load
# on another node runs in the same worker while the first node is still
# stopped; the watcher still delivers that other node's lifecycle events
# (one thread per node); libvirt keepalive (5 s x 3) ends the stuck call
# while the node is still stopped, and a new connection to it is given up
# after libvirt_connect_timeout_seconds (5). After SIGCONT the reservation is retried
# and done: exactly one domain, every stage ok exactly once, stage-log spans
# that never overlap, and nothing written by the abandoned thread.
#
#   part A  node n1: the system libvirtd (qemu:///system), SIGSTOPped
#           other node n2: a second, independent libvirtd (a session daemon
#           of the user vclhang, reached over the loopback sshd as that user)
#   part B  node n3: root over the loopback sshd (qemu+libssh2 to the system
#           libvirtd, ssh transport), its sshd processes SIGSTOPped
#           other node n1 (the system libvirtd, directly)
#
# WARNING: every test on this machine shares the system libvirtd. Part A
# stops it for up to ~40 s: other tests running then wait. It is continued
# on exit whatever happens, and by a detached watchdog after 150 s even if
# this script is killed.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 8
t_start=$SECONDS
[ "$URI" = qemu:///system ] || skip_all "needs the system libvirtd (qemu:///system), not $URI"
((EUID == 0)) || skip_all "stopping libvirtd and sshd needs root"
world_sshd || skip_all "no sshd can run here (world_sshd needs root and /usr/sbin/sshd)"
command -v runuser >/dev/null || skip_all "needs runuser"

# --- processes we stop are always continued --------------------------------------
STOPPED_LIST=$WORLD/stopped.pids
WATCHDOGS=$WORLD/watchdog.pids
cont_all() {
    local p
    [[ -f $STOPPED_LIST ]] && while read -r p; do kill -CONT "$p" 2>/dev/null; done <"$STOPPED_LIST"
    [[ -f $WATCHDOGS ]] && while read -r p; do kill "$p" 2>/dev/null; done <"$WATCHDOGS"
    return 0
}
world_on_exit cont_all
stop_pids() { # PID...: SIGSTOP them; continued on exit, and by a watchdog after 150 s
    local p
    for p in "$@"; do
        echo "$p" >>"$STOPPED_LIST"
        kill -STOP "$p"
    done
    setsid bash -c "sleep 150; kill -CONT $* 2>/dev/null" </dev/null >/dev/null 2>&1 &
    echo $! >>"$WATCHDOGS"
}
cont_pids() { local p; for p in "$@"; do kill -CONT "$p" 2>/dev/null; done; }
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }
libvirtd_pid() {
    local pid
    pid=$(head -n 1 /run/libvirtd.pid 2>/dev/null)
    [[ $pid =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == libvirtd ]] && echo "$pid"
}
sshd_pids() { # the loopback sshd and every sshd process under it (sessions)
    local root p
    root=$(cat "$VCL_SSH_DIR/sshd.pid")
    _desc() {
        local c
        [ "$(cat "/proc/$1/comm" 2>/dev/null)" = sshd ] && echo "$1"
        for c in $(ps -o pid= --ppid "$1"); do _desc "$c"; done
    }
    _desc "$root"
}
LVPID=$(libvirtd_pid)
[ -n "$LVPID" ] || skip_all "the system libvirtd's pid is not in /run/libvirtd.pid"

# --- node n2: a second libvirtd (session daemon of user vclhang, over ssh) -------
U=vclhang
id "$U" >/dev/null 2>&1 || useradd -m -s /bin/bash "$U" >/dev/null 2>&1 ||
    skip_all "cannot create the user $U for a second libvirtd"
getent group kvm >/dev/null && usermod -a -G kvm "$U" 2>/dev/null
usermod -p '*' "$U" 2>/dev/null # no password, but not locked: sshd refuses locked accounts
UH=$(getent passwd "$U" | cut -d: -f6)
V2() { timeout 60 runuser -u "$U" -- env -i HOME="$UH" PATH=/usr/sbin:/usr/bin:/sbin:/bin virsh -q -c qemu:///session "$@"; }
V() { timeout 30 virsh -q -c "$URI" "$@"; }
V2 version >/dev/null 2>&1 || skip_all "no session libvirtd for user $U"
drop_v2_domains() {
    local d
    for d in $(V2 list --all --name 2>/dev/null | grep "^$T-"); do
        V2 destroy "$d" >/dev/null 2>&1
        V2 undefine "$d" >/dev/null 2>&1
    done
    return 0
}
world_on_exit drop_v2_domains
# sshd reads authorized_keys as the user logging in
chmod 711 "$VCL_SSH_DIR"
chmod 644 "$VCL_SSH_DIR/authorized_keys"
PORT=$VCL_SSH_PORT
Q="keyfile=$VCL_SSH_KEY&known_hosts=$VCL_SSH_KNOWN_HOSTS&sshauth=privkey"
mkdir -p "$WORLD/n2"/{master,cow,xml,repo} "$WORLD/n3"/{master,cow,xml,repo}
cp "$WORLD/repo/$T-blank-v1.qcow2" "$WORLD/n2/repo/"
cp "$WORLD/repo/$T-blank-v1.qcow2" "$WORLD/n3/repo/"
chown -R "$U:" "$WORLD/n2"
chmod -R a+rX "$WORLD/n2" "$WORLD/n3"
{
    "$VCLCTL" node add "$T-n2" --transport ssh --ssh-host 127.0.0.1 --ssh-port "$PORT" --ssh-user "$U" \
        --uri "qemu+libssh2://$U@127.0.0.1:$PORT/session?$Q" --master-dir "$WORLD/n2/master" \
        --cow-dir "$WORLD/n2/cow" --xml-dir "$WORLD/n2/xml" --repo "$WORLD/n2/repo" --max-loads 8 &&
        "$VCLCTL" node add "$T-n3" --transport ssh --ssh-host 127.0.0.1 --ssh-port "$PORT" --ssh-user root \
            --uri "qemu+libssh2://root@127.0.0.1:$PORT/system?$Q" --master-dir "$WORLD/n3/master" \
            --cow-dir "$WORLD/n3/cow" --xml-dir "$WORLD/n3/xml" --repo "$WORLD/n3/repo" --max-loads 8
} >>"$WORLD/setup.log" 2>&1 || bail "node add failed: $(tail -n 3 "$WORLD/setup.log")"
# the preflight, as for n1: it settles each node's guest CPU mode before any worker runs
for n in n2 n3; do
    "$VCLCTL" node check "$T-$n" >>"$WORLD/setup.log" 2>&1 ||
        bail "vclctl node check $T-$n failed: $(grep -E 'FAIL|fix:' "$WORLD/setup.log" | head -n 4)"
done

NC=0
computer() { # NAME NODE
    NC=$((NC + 1))
    "$VCLCTL" -q computer add "$T-$1" --node "$T-$2" --mac "$(printf '52:54:00:45:00:%02x' "$NC")" \
        --memory 128 --vcpus 1 >/dev/null || bail "computer add $T-$1 failed"
}
computer a1 n1; computer a2 n2; computer a3 n2
computer b1 n3; computer b3 n1

load() { # COMPUTER: prints the reservation id (max_attempts 20: retries while a node is stopped)
    local id
    id=$("$VCLCTL" -q load "$T-$1" "$T-blank:1") || bail "load $1 failed"
    psql_val "UPDATE vcl.reservation SET max_attempts = 20 WHERE id = $id" >/dev/null
    echo "$id"
}
col() { psql_val "SELECT $2 FROM vcl.reservation WHERE id = $1"; }
ccol() { psql_val "SELECT $2 FROM vcl.computer WHERE name = '$T-$1'"; }
is_state() { [ "$(col "$1" state)" = "$2" ]; }
deadline_failed() { # ID NODE: failed at least once at the define deadline, pending again or running
    [ "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = 'define'
                    AND outcome = 'failed' AND detail = 'node $2 did not answer within 8 s (stage define)'")" -ge 1 ]
}
status_is() { [ "$(ccol "$1" node_status)" = "$2" ]; }
connect_gave_up() { # ID: a stage failed because libvirt did not even take the connection
    [ "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $1 AND outcome = 'failed'
                    AND detail LIKE 'libvirt at % did not answer within 5 s (connecting)'")" -ge 1 ]
}
ms() { date +%s%3N; }
worker_cfg() { # NAME
    world_config "$1" "slots: 1" "lease_seconds: 30" "heartbeat_seconds: 2" \
        "stage_timeout_seconds: 60" "stage_timeouts: {define: 8}" "watch_resync_seconds: 3600" \
        "libvirt_keepalive_interval: 5" "libvirt_keepalive_count: 3" "libvirt_connect_timeout_seconds: 5" \
        "ssh_private_key: \"$VCL_SSH_KEY\"" "ssh_known_hosts: \"$VCL_SSH_KNOWN_HOSTS\"" >/dev/null
}
# The checks after a reservation that met a stopped node was retried and done.
after_retry() { # ID COMPUTER NODE
    local id=$1 c=$2 node=$3 att failed_at
    # the first attempt failed at the deadline (normally attempt 1; a later one
    # when a test elsewhere restarted the shared libvirtd meanwhile)
    read -r att failed_at <<<"$(psql_val "SELECT attempt || ' ' || finished_at FROM vcl.reservation_stage
                                           WHERE reservation_id = $id AND stage = 'define'
                                             AND detail = 'node $node did not answer within 8 s (stage define)'
                                           ORDER BY id LIMIT 1")"
    is "$(col "$id" state)" done "$c: done after the node came back (attempt $(col "$id" attempts))"
    is "$(psql_val "SELECT count(*) FROM (SELECT stage FROM vcl.reservation_stage WHERE reservation_id = $id
                     AND outcome = 'ok' GROUP BY 1 HAVING count(*) = 1) x")" "$NSTAGES" \
       "$c: every stage finished ok exactly once"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id AND outcome = 'running'")" 0 \
       "$c: no stage row is left running"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage a JOIN vcl.reservation_stage b
                     ON a.reservation_id = b.reservation_id AND a.id < b.id
                    WHERE a.reservation_id = $id
                      AND tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)")" 0 \
       "$c: no two stages ever ran at once (stage-log spans never overlap)"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id AND attempt = ${att:-0}
                     AND (started_at > '$failed_at' OR finished_at > '$failed_at'::timestamptz + interval '1 s')")" 0 \
       "$c: the abandoned attempt (${att:-?}) wrote nothing after its deadline failure"
    [ "${att:-}" = 1 ] || diag "$c: attempt 1 did not meet the stopped node (attempt ${att:-?} did)"
}
fault_ops
NSTAGES=$(wc -w <<<"${STAGES[load]}")
export VCL_FAULT_ONCE=1   # the worker stops itself at the first define on its node only

# ================= part A: the system libvirtd stops =============================
worker_cfg wa
export VCL_FAULT_NODE=$T-n1
world_worker wa --fault define:stop-start
WA=$WORLD_WORKER_PID
wa_id() { psql_val "SELECT id FROM vcl.worker WHERE name = 'wa'"; }

ida2=$(load a2)
ok "A: a2 loads on the second libvirtd (n2, session daemon over ssh)" \
    wait_for "a2 done" 120 is_state "$ida2" done || diag "$(col "$ida2" last_error) $(tail -n 5 "$WORLD/wa.log")"
is "$(V2 domstate "$T-a2:$T-blank-v1" 2>/dev/null | head -n 1)" running "A: a2's domain runs on n2"

ida1=$(load a1)
ok "A: the worker reached stage define of a1 on n1 (stopped there by the test hook)" \
    wait_for "wa stopped at define" 90 stopped "$WA" || diag "$(tail -n 5 "$WORLD/wa.log")"
stop_pids "$LVPID"
ok "A: libvirtd ($LVPID) is stopped (SIGSTOP)" stopped "$LVPID"
t0=$(ms)
cont_pids "$WA"
ida3=$(load a3)
ok "A: a1 failed at its define deadline" wait_for "a1 deadline" 40 deadline_failed "$ida1" "$T-n1"
took=$(($(ms) - t0))
diag "A: stage define stuck on the stopped libvirtd: failed after $took ms (deadline 8 s, lease 30 s)"
ok "A: within the deadline, not the lease ($took ms < 25 s)" test "$took" -lt 25000
like "$(col "$ida1" last_error)" "^node $T-n1 did not answer within 8 s \(stage define\)$" "A: a1's error names the node, the time and the stage"
ok "A: a3 (n2) loads in the same worker while libvirtd is stopped" \
    wait_for "a3 done" 60 is_state "$ida3" done || diag "$(col "$ida3" last_error) $(tail -n 5 "$WORLD/wa.log")"
is "$(psql_val "SELECT count(DISTINCT worker_id) || ' ' || bool_and(worker_id = $(wa_id))
                FROM vcl.reservation_stage WHERE reservation_id IN ($ida1, $ida3)")" "1 true" \
   "A: a1 and a3 ran in the same worker (slots: 1): the slot was freed"
ok "A: libvirtd was stopped all along" stopped "$LVPID"

t1=$(ms)
ok "A: virsh destroy of a2's domain on n2" V2 destroy "$T-a2:$T-blank-v1"
ok "A: the watcher still gets n2's events: a2 RELOAD" wait_for "a2 RELOAD" 20 status_is a2 RELOAD
diag "A: destroy -> RELOAD on n2 in $(($(ms) - t1)) ms while n1 hangs"
is "$(ccol a2 status_reason)" "domain $T-a2:$T-blank-v1 stopped outside vcl-worker (destroyed)" "A: with the reason"
ok "A: libvirt keepalive ended the stuck call while libvirtd was still stopped" \
    wait_for "the abandoned thread returned" 45 grep -q "stage thread returned after its deadline" "$WORLD/wa.log"
diag "A: the stuck thread returned $(($(ms) - t0)) ms after it met the stopped daemon"
# a1's retry (claimed once a3 is done) opens a new connection: libvirt would
# wait forever, libvirt_connect_timeout_seconds gives up after 5 s
ok "A: a1's retry could not connect to the stopped libvirtd: given up after 5 s" \
    wait_for "a1's connect timeout" 40 connect_gave_up "$ida1"
ok "A: libvirtd was stopped all along" stopped "$LVPID"
is "$(grep -c 'lease of reservation .* lost' "$WORLD/wa.log")" 0 "A: no lease was lost"
cont_pids "$LVPID"
diag "A: libvirtd stopped for $(($(ms) - t0)) ms"
ok "A: libvirtd answers again" wait_for "libvirt back" 60 V version
ok "A: a1 is retried and done" wait_for "a1 done" 120 is_state "$ida1" done ||
    diag "$(col "$ida1" "state || ' ' || coalesce(last_error, '')") $(tail -n 5 "$WORLD/wa.log")"
after_retry "$ida1" a1 "$T-n1"
is "$(dom_count "$T-a1")" 1 "A: exactly one domain of a1 on n1"
is "$(ccol a1 node_status)" READY "A: a1 READY"
kill -TERM "$WA"
rc=0
world_worker_wait "$WA" 60 || rc=$?
is "$rc" 0 "A: the worker stops cleanly (SIGTERM)"

# ================= part B: the sshd of node n3 stops ============================
worker_cfg wb
export VCL_FAULT_NODE=$T-n3
world_worker wb --fault define:stop-start
WB=$WORLD_WORKER_PID
idb1=$(load b1)
ok "B: the worker reached stage define of b1 on n3 (over ssh)" \
    wait_for "wb stopped at define" 120 stopped "$WB" || diag "$(col "$idb1" last_error) $(tail -n 5 "$WORLD/wb.log")"
LVB=$(libvirtd_pid)
mapfile -t SPIDS < <(sshd_pids)
diag "B: stopping the loopback sshd: ${#SPIDS[@]} process(es)"
stop_pids "${SPIDS[@]}"
t0=$(ms)
cont_pids "$WB"
idb3=$(load b3)
ok "B: b1 failed at its define deadline" wait_for "b1 deadline" 40 deadline_failed "$idb1" "$T-n3"
took=$(($(ms) - t0))
diag "B: stage define stuck on the stopped sshd: failed after $took ms"
ok "B: within the deadline, not the lease ($took ms < 25 s)" test "$took" -lt 25000
like "$(col "$idb1" last_error)" "^node $T-n3 did not answer within 8 s \(stage define\)$" "B: b1's error names the node"
ok "B: b3 (n1) loads in the same worker while the sshd is stopped" \
    wait_for "b3 done" 60 is_state "$idb3" done || diag "$(col "$idb3" last_error) $(tail -n 5 "$WORLD/wb.log")"
is "$(psql_val "SELECT count(DISTINCT worker_id) FROM vcl.reservation_stage WHERE reservation_id IN ($idb1, $idb3)")" 1 \
   "B: b1 and b3 ran in the same worker"
t1=$(ms)
ok "B: virsh destroy of a1's domain on n1" V destroy "$T-a1:$T-blank-v1"
ok "B: the watcher still gets n1's events: a1 RELOAD" wait_for "a1 RELOAD" 20 status_is a1 RELOAD
diag "B: destroy -> RELOAD on n1 in $(($(ms) - t1)) ms while n2 and n3 hang"
if [ "$(libvirtd_pid)" = "$LVB" ]; then
    ok "B: libvirt keepalive ended the stuck call over ssh while the sshd was still stopped" \
        wait_for "the abandoned thread returned" 45 grep -q "stage thread returned after its deadline" "$WORLD/wb.log"
else
    # b1's connection was closed by the restart before define: its retry is
    # stuck opening a new one, which has no keepalive (the deadline covers it)
    skip "the shared libvirtd was restarted by another test meanwhile"
fi
ok "B: the sshd was stopped all along" stopped "${SPIDS[0]}"
cont_pids "${SPIDS[@]}"
diag "B: sshd stopped for $(($(ms) - t0)) ms"
ok "B: b1 is retried and done" wait_for "b1 done" 120 is_state "$idb1" done ||
    diag "$(col "$idb1" "state || ' ' || coalesce(last_error, '')") $(tail -n 5 "$WORLD/wb.log")"
after_retry "$idb1" b1 "$T-n3"
is "$(dom_count "$T-b1")" 1 "B: exactly one domain of b1"
is "$(ccol b1 node_status)" READY "B: b1 READY"
kill -TERM "$WB"
rc=0
world_worker_wait "$WB" 60 || rc=$?
is "$rc" 0 "B: the worker stops cleanly (SIGTERM)"
is "$(cat "$WORLD"/wa.log "$WORLD"/wb.log | grep -c 'level=error')" 0 "no errors in the worker logs"
diag "whole file: $((SECONDS - t_start)) s"
done_testing
