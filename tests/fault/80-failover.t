#!/usr/bin/env bash
# Failover under running workers, with nothing lost or run twice at once.
#
# A throwaway primary and a streaming standby (tools/pg-throwaway standby),
# two workers with a multi-host conninfo (one says
# target_session_attrs=read-write and lists the primary first, the other
# lists the standby first and leaves target_session_attrs to the worker's
# default; vclctl the same), 72 mixed reservations per phase (loads on real libvirt, then
# node_status, power_off, power_on, noop on the 4 loaded computers; noop on
# 4 others). When a third of them are done, the primary's WAL sender is
# stopped for 3 s (SIGSTOP: a slow network), the primary is stopped hard
# (pg_ctl stop -m immediate; what its WAL sender had not sent is lost) and
# the standby promoted. Two phases:
#   async  the standby is asynchronous: the commits of those 3 s are lost,
#          acknowledged or not (claims, stage rows, completions);
#   sync   synchronous_standby_names names the standby (synchronous_commit
#          on): commits wait for it, so no acknowledged commit is lost.
# Each phase asserts: every reservation ends exactly once (done, or failed
# with a reason); no two stage rows of one reservation overlap in time (stage
# log spans) and no two reservations of one computer overlap; no fencing
# token value was handed out twice (every claim a worker was given, from its
# log, both phases: tokens carry the epoch, bumped by the promotion); the
# epoch went up at the failover; exactly one domain and one COW disk per
# loaded computer, none for the others, no temporary file. The differences
# between the phases (WAL lag at the crash, claims a worker acted on that
# the new primary lost, reservations claimed more than once) are printed.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 4
t_start=$SECONDS
PGT="$ROOT/tools/pg-throwaway"

pg_env() { eval "$("$PGT" env "$1")"; }   # psql_val talks to this cluster
port_of() { cat "$1/port"; }

NLOADED=4 NPLAIN=4
LOADED=() PLAIN=()
for ((i = 0; i < NLOADED; i++)); do new_computer; LOADED+=("$NEWC"); done
for ((i = 0; i < NPLAIN; i++)); do new_computer; PLAIN+=("$NEWC"); done
set_state available "${LOADED[@]}" "${PLAIN[@]}"

# enqueue_phase: the phase's reservations, ids in PHASE_IDS
enqueue_phase() {
    local c k op
    PHASE_IDS=()
    for c in "${LOADED[@]}"; do
        PHASE_IDS+=("$(enqueue "$c" load)")
        for op in node_status power_off power_on noop noop; do
            PHASE_IDS+=("$(enqueue "$c" "$op")")
        done
    done
    for c in "${PLAIN[@]}"; do
        for ((k = 0; k < 12; k++)); do
            PHASE_IDS+=("$(enqueue "$c" noop)")
        done
    done
}

# conninfo HOSTDIR...: every cluster of the list, in that order
conninfo() {
    local hosts ports d
    hosts=$(IFS=,; echo "$*")
    ports=$(for d in "$@"; do printf '%s,' "$(port_of "$d")"; done)
    echo "host=$hosts port=${ports%,} dbname=vcl user=$(id -un) connect_timeout=3"
}

# start_workers PRIMARYDIR STANDBYDIR: w1 says target_session_attrs=read-write
# and lists the primary first; w2 leaves target_session_attrs to the
# worker's default and lists the standby first (so it must skip it)
start_workers() {
    world_config "w1$PHASE" "worker_name: w1$PHASE" "slots: 3" \
        "database: \"$(conninfo "$1" "$2") target_session_attrs=read-write\"" >/dev/null
    world_config "w2$PHASE" "worker_name: w2$PHASE" "slots: 3" "database: \"$(conninfo "$2" "$1")\"" >/dev/null
    PIDS=()
    world_worker "w1$PHASE"; PIDS+=("$WORLD_WORKER_PID")
    world_worker "w2$PHASE"; PIDS+=("$WORLD_WORKER_PID")
}

stop_workers() {
    world_workers_term 60 "$PHASE: after the failover, worker" "${PIDS[@]}"
}

ids_sql() { local IFS=,; echo "${PHASE_IDS[*]}"; }
done_count() { psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($(ids_sql)) AND state IN ('done', 'failed')"; }
third_done() { [ "$(done_count)" -ge $((${#PHASE_IDS[@]} / 3)) ]; }
all_ended() { not_active "${PHASE_IDS[@]}"; }

# failover OLD NEW: stall the replication 3 s (SIGSTOP to OLD's WAL sender,
# as a slow network would), stop OLD hard (its WAL sender SIGKILLed: what it
# had not sent is gone), promote NEW
failover() {
    local old=$1 new=$2 ws lsn_old lsn_new t0
    pg_env "$old"
    ws=$(psql_val "SELECT pid FROM pg_stat_replication")
    [[ $ws =~ ^[0-9]+$ ]] || bail "$PHASE: no WAL sender on the primary"
    kill -STOP "$ws"
    sleep 3
    # with the synchronous standby stalled, a write would wait: read only
    lsn_old=$(psql_val "SELECT pg_current_wal_lsn()")
    OLD_EPOCH=$(psql_val "SELECT epoch FROM vcl.epoch")
    DONE_ON_OLD=$(done_count)
    t0=$(date +%s.%N)
    "$PGT" crash "$old" &
    local crash=$!
    sleep 0.3
    kill -KILL "$ws" 2>/dev/null
    wait "$crash"
    pg_env "$new"
    lsn_new=$(psql_val "SELECT pg_last_wal_receive_lsn()")
    "$PGT" promote "$new" || bail "$PHASE: promote failed"
    # every lease the new primary knows of, before it hands out any (the
    # first claim bumps the epoch and is fenced for a lease)
    psql_val "SELECT id || ' ' || lease_token FROM vcl.reservation WHERE lease_token IS NOT NULL
              UNION SELECT reservation_id || ' ' || lease_token FROM vcl.reservation_stage" >"$WORLD/kept-$PHASE"
    LAG=$(psql_val "SELECT pg_wal_lsn_diff('$lsn_old', '$lsn_new')")
    DONE_ON_NEW=$(done_count)
    diag "$PHASE: primary stopped hard and standby promoted in $(echo "$(date +%s.%N) - $t0" | bc) s;" \
         "the standby was $LAG bytes of WAL behind; done or failed: $DONE_ON_OLD on the old primary" \
         "(visible, not necessarily acknowledged), $DONE_ON_NEW on the new one"
}

# claims_in LOG...: "reservation token" of every claim the workers were given
claims_in() {
    sed -n 's/.*claimed reservation \([0-9]*\) (token \([0-9]*\)).*/\1 \2/p' "$@"
}

# stage_runs LOG...: "reservation start end worker" of every stage run the
# workers' logs show: from "stage X started" (its fenced start was
# acknowledged) to that worker's next word on the stage or the job (finished,
# failed, lease lost); a run with no end lasts forever. Times are ISO
# strings (they sort as text).
stage_runs() {
    awk '{
        w = ""; r = ""; t = substr($1, 4)
        for (i = 2; i <= NF; i++) {
            if ($i ~ /^worker=/) w = substr($i, 8)
            if ($i ~ /^reservation=/) r = substr($i, 13)
        }
        if (r == "") next
        k = w " " r
        if ($0 ~ /msg="stage [a-z_]+ started"/) { open[k] = t; next }
        if ((k in open) && $0 ~ /msg="(stage [a-z_]+ (finished|failed)|lease lost|reservation (done|finished))/) {
            print r, open[k], t, w; delete open[k]
        }
    } END { for (k in open) { split(k, a, " "); print a[2], open[k], "9999", a[1] } }' "$@"
}

# overlapping_runs LOG...: stage runs of one reservation that overlapped
overlapping_runs() {
    stage_runs "$@" | sort -k1,1n -k2,2 |
        awk '$1 == r && $2 < e { print r ": " w " until " e ", " $4 " from " $2 } { if ($1 != r || $3 > e) e = $3; r = $1; w = $4 }'
}

audit_phase() {
    local ids c img
    ids=$(ids_sql)
    is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($ids)
                     AND state NOT IN ('done', 'failed')")" 0 "$PHASE: every reservation ended"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($ids) AND finished_at IS NULL")" 0 \
       "$PHASE: every reservation has its finish time"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($ids)
                     AND state = 'failed' AND coalesce(last_error, '') = ''")" 0 \
       "$PHASE: every failed reservation says why"
    diag "$PHASE: $(psql_val "SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) n
                               FROM vcl.reservation WHERE id IN ($ids) GROUP BY 1) x")"
    diag "$PHASE: failed: $(psql_val "SELECT coalesce(string_agg(format('%s %s: %s', id, operation, last_error), '; '), 'none')
                            FROM vcl.reservation WHERE id IN ($ids) AND state = 'failed'")"
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id IN ($ids)
                     AND outcome = 'running'")" 0 "$PHASE: no stage row left running"
    is "$(psql_val "
      SELECT count(*) FROM vcl.reservation_stage x JOIN vcl.reservation_stage y
          ON x.reservation_id = y.reservation_id AND x.id < y.id
       WHERE x.reservation_id IN ($ids)
         AND x.started_at < coalesce(y.finished_at, 'infinity') AND y.started_at < coalesce(x.finished_at, 'infinity')")" 0 \
       "$PHASE: no two stage runs of one reservation overlapped (stage log spans)"
    is "$(computer_overlaps "$ids")" 0 "$PHASE: no two reservations of one computer overlapped"
    local over
    over=$(overlapping_runs "$WORLD/w1$PHASE.log" "$WORLD/w2$PHASE.log")
    is "$over" "" "$PHASE: no two stage runs of one reservation overlapped (the workers' logs, lost rows included)"
    diag "$PHASE: $(stage_runs "$WORLD/w1$PHASE.log" "$WORLD/w2$PHASE.log" | wc -l) stage runs in the logs"
    img=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")
    for c in "${LOADED[@]}"; do
        is "$(timeout 30 virsh -q -c "$URI" list --all --name | grep -c "^$c:")" 1 "$PHASE: one domain of $c"
        is "$(find "$WORLD/cow" -maxdepth 1 -name "${c}_*" -printf '%f\n')" "${c}_$img-v1.qcow2" \
           "$PHASE: one COW disk of $c"
        is "$(find "$WORLD/xml" -maxdepth 1 -name "${c}_*.xml" | wc -l)" 1 "$PHASE: one XML file of $c"
    done
    for c in "${PLAIN[@]}"; do
        is "$(dom_count "$c")$(find "$WORLD/cow" "$WORLD/xml" -maxdepth 1 -name "${c}_*" | wc -l)" 00 \
           "$PHASE: no domain nor file of $c (never loaded)"
    done
    is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "$PHASE: no temporary file"
}

# report_phase LOGS...: what the workers were given and lost
report_phase() {
    local ids
    ids=$(ids_sql)
    local claims twice lost
    claims=$(claims_in "$@" | wc -l)
    twice=$(claims_in "$@" | awk '{n[$1]++} END {for (r in n) if (n[r] > 1) c++; print c + 0}')
    # a claim a worker was given (from the old primary's epoch) that the new
    # primary had no trace of when it was promoted
    lost=$(claims_in "$@" | while read -r r tok; do
        ((tok >> 40 == OLD_EPOCH)) || continue
        grep -qx "$r $tok" "$WORLD/kept-$PHASE" || echo "$r:$tok"
    done)
    diag "$PHASE: $claims claims given to the workers; $twice reservation(s) claimed more than once;" \
         "claims acknowledged by the old primary that the new one never had:" \
         "$(echo "$lost" | grep -c . || true) ${lost:+($(echo $lost))}"
    diag "$PHASE: lease lost / abandoned in the worker logs: $(cat "$@" | grep -c 'lease lost\|lease was lost\|giving up reservation\|lease may have expired' || true)"
    PHASE_LOST=$(echo "$lost" | grep -c . || true)
}

epoch_now() { psql_val "SELECT epoch FROM vcl.epoch"; }

# --- the standby -------------------------------------------------------------
world_on_exit "$PGT" stop "$WORLD/sb1"
world_on_exit "$PGT" stop "$WORLD/sb2"
"$PGT" standby "$WORLD/sb1" "$WORLD/pg" >>"$WORLD/setup.log" 2>&1 || bail "standby sb1: $(tail -n 3 "$WORLD/setup.log")"
pg_env "$WORLD/pg"
is "$(psql_val "SELECT sync_state FROM pg_stat_replication")" async "async: sb1 streams asynchronously"

# --- phase async ------------------------------------------------------------
PHASE=async
enqueue_phase
diag "$PHASE: ${#PHASE_IDS[@]} reservations"
start_workers "$WORLD/pg" "$WORLD/sb1"
ok "$PHASE: a third done" wait_for "a third of the reservations done" 180 third_done
epoch_before=$(epoch_now)
failover "$WORLD/pg" "$WORLD/sb1"
pg_env "$WORLD/sb1"
ok "$PHASE: every reservation ended after the failover" wait_for "all ended" 240 all_ended
epoch_after=$(epoch_now)
ok "$PHASE: the epoch went up at the failover ($epoch_before -> $epoch_after)" test "$epoch_after" -gt "$epoch_before"
stop_workers
audit_phase
report_phase "$WORLD/w1async.log" "$WORLD/w2async.log"
like "$(cat "$WORLD/w1async.log" "$WORLD/w2async.log")" "reconnect" "$PHASE: the workers reconnected"
LOST_ASYNC=$PHASE_LOST

# --- phase sync: sb1 is the primary now; sb2 its synchronous standby ---------
PHASE=sync
"$PGT" standby "$WORLD/sb2" "$WORLD/sb1" >>"$WORLD/setup.log" 2>&1 || bail "standby sb2: $(tail -n 3 "$WORLD/setup.log")"
pg_env "$WORLD/sb1"
psql_val "ALTER SYSTEM SET synchronous_standby_names = 'sb2'" >/dev/null
psql_val "SELECT pg_reload_conf()" >/dev/null
is_sync() { [ "$(psql_val "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'sb2'")" = sync ]; }
ok "$PHASE: sb2 is a synchronous standby" wait_for "sb2 sync" 30 is_sync
enqueue_phase
# vclctl with the standby first and no target_session_attrs: it skips the
# standby by default; with target_session_attrs=any it lands there and fails
out=$("$VCLCTL" -q --db "$(conninfo "$WORLD/sb2" "$WORLD/sb1")" enqueue "${PLAIN[0]}" noop 2>&1)
ok "$PHASE: vclctl with host=standby,primary writes on the primary (target_session_attrs read-write by default)" \
    test "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id = 0${out//[^0-9]/}")" = 1 || diag "$out"
[[ $out =~ ^[0-9]+$ ]] && PHASE_IDS+=("$out")
out=$("$VCLCTL" -q --db "$(conninfo "$WORLD/sb2" "$WORLD/sb1") target_session_attrs=any" enqueue "${PLAIN[0]}" noop 2>&1)
like "$out" "read-only transaction" "$PHASE: ... and with target_session_attrs=any it lands on the standby and is refused"
diag "$PHASE: ${#PHASE_IDS[@]} reservations"
start_workers "$WORLD/sb1" "$WORLD/sb2"
ok "$PHASE: a third done" wait_for "a third of the reservations done" 180 third_done
epoch_before=$(epoch_now)
failover "$WORLD/sb1" "$WORLD/sb2"
pg_env "$WORLD/sb2"
# the new primary has no standby: it must not wait for one
psql_val "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null
psql_val "SELECT pg_reload_conf()" >/dev/null
ok "$PHASE: every reservation ended after the failover" wait_for "all ended" 240 all_ended
epoch_after=$(epoch_now)
ok "$PHASE: the epoch went up at the failover ($epoch_before -> $epoch_after)" test "$epoch_after" -gt "$epoch_before"
stop_workers
audit_phase
report_phase "$WORLD/w1sync.log" "$WORLD/w2sync.log"
LOST_SYNC=$PHASE_LOST

# --- both phases: one token, one lease ---------------------------------------
all_claims=$(claims_in "$WORLD"/w[12]async.log "$WORLD"/w[12]sync.log)
is "$(awk '{print $2}' <<<"$all_claims" | sort | uniq -d | wc -l)" 0 \
   "no fencing token value was handed out twice ($(wc -l <<<"$all_claims") claims, both failovers)"
ok "the workers' logs hold the claims" test "$(wc -l <<<"$all_claims")" -ge 100
is "$(psql_val "SELECT count(*) FROM (SELECT lease_token FROM vcl.reservation_stage GROUP BY 1
                                       HAVING count(DISTINCT reservation_id) > 1) x")" 0 \
   "no token in the stage log belongs to two reservations"
is "$LOST_SYNC" 0 "sync: no claim a worker acted on was lost"
diag "async lost $LOST_ASYNC acknowledged claim(s), sync lost $LOST_SYNC"
is "$(grep -ci deadlock "$WORLD"/w*.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no deadlock in the worker logs"
diag "whole file: $((SECONDS - t_start)) s"
done_testing
