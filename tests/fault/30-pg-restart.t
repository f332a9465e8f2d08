#!/usr/bin/env bash
# PostgreSQL restarts under running workers: 8 loads (4 computers x 2, the
# second load of each computer replacing the first) with 2 workers x 2
# slots, while stages run: the cluster is restarted (tools/pg-throwaway stop
# + start: a fast shutdown that cuts every connection); later every worker
# connection is killed (pg_terminate_backend); later still the cluster
# crashes (SIGQUIT to the postmaster: immediate shutdown, crash recovery at
# the next start, any commit in flight may or may not be there). The workers
# reconnect and every job finishes; nothing is lost or run twice beyond an
# idempotent stage rerun: every reservation done, each stage finished ok
# exactly once per reservation, the reservations of one computer never
# overlapped and ran in order, exactly one domain and one COW disk per
# computer (the second load's), no temporary file.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 4
t_start=$SECONDS
fault_ops
NSTAGES=$(wc -w <<<"${STAGES[load]}")

qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v2.qcow2" 64M
ok "revision 2" "$VCLCTL" image revision-add "$T-blank" --revision 2 --file-stem "$T-blank-v2"
comps=()
for i in 1 2 3 4; do
    new_computer
    comps+=("$NEWC")
done
set_state available "${comps[@]}"
ids=()
for rev in 1 2; do
    for c in "${comps[@]}"; do
        ids+=("$(enqueue "$c" load "" "$T-blank:$rev")")
    done
done
is "${#ids[@]}" 8 "8 loads queued"
ID_LIST=$(IFS=,; echo "${ids[*]}")

pids=()
for w in w1 w2; do
    world_config "$w" "slots: 2" >/dev/null
    world_worker "$w"
    pids+=("$WORLD_WORKER_PID")
done

running_stages() {
    [ "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE outcome = 'running'")" -ge "${1:-1}" ]
}
done_at_least() {
    [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($ID_LIST) AND state = 'done'")" -ge "$1" ]
}
pg_restart() {
    local t0
    t0=$(date +%s.%N)
    "$ROOT/tools/pg-throwaway" stop "$WORLD/pg" >>"$WORLD/pg-restart.log" 2>&1 &&
        "$ROOT/tools/pg-throwaway" start "$WORLD/pg" >>"$WORLD/pg-restart.log" 2>&1 ||
        bail "restarting PostgreSQL failed: $(tail -n 3 "$WORLD/pg-restart.log")"
    diag "PostgreSQL down and up again in $(echo "$(date +%s.%N) - $t0" | bc) s"
}

# --- 1. restart while the first stages run ------------------------------------
ok "stages are running" wait_for "two stages running" 60 running_stages 2
running=$(psql_val "SELECT string_agg(reservation_id || ':' || stage, ' ') FROM vcl.reservation_stage WHERE outcome = 'running'")
pg_restart
diag "restart 1 cut these stages: $running"

# --- 2. every worker connection killed, the server stays up ------------------
ok "some loads done" wait_for "two loads done" 120 done_at_least 2
wait_for "a stage running" 30 running_stages 1 || true
running=$(psql_val "SELECT string_agg(reservation_id || ':' || stage, ' ') FROM vcl.reservation_stage WHERE outcome = 'running'")
killed=$(psql_val "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE application_name IN ('w1', 'w2')")
diag "pg_terminate_backend: $killed worker connection(s) killed, cutting these stages: $running"
ok "worker connections killed" test "$killed" -ge 2

# --- 3. a crash: immediate shutdown (SIGQUIT to the postmaster), then start -----
ok "more loads done" wait_for "four loads done" 120 done_at_least 4
wait_for "a stage running" 30 running_stages 1 || true
running=$(psql_val "SELECT string_agg(reservation_id || ':' || stage, ' ') FROM vcl.reservation_stage WHERE outcome = 'running'")
pm=$(head -n 1 "$WORLD/pg/data/postmaster.pid")
t0=$(date +%s.%N)
kill -QUIT "$pm"
pm_gone() { ! kill -0 "$pm" 2>/dev/null; }
ok "postmaster gone after SIGQUIT" wait_for "postmaster $pm to exit" 30 pm_gone
"$ROOT/tools/pg-throwaway" start "$WORLD/pg" >>"$WORLD/pg-restart.log" 2>&1 ||
    bail "starting PostgreSQL after the crash failed: $(tail -n 3 "$WORLD/pg-restart.log")"
diag "PostgreSQL crashed and recovered in $(echo "$(date +%s.%N) - $t0" | bc) s, cutting these stages: $running"

# --- 4. every job finishes ------------------------------------------------------------
ok "all 8 loads ended" wait_for "all 8 ended" 150 not_active "${ids[@]}"
for i in 0 1; do
    ok "worker w$((i + 1)) survived the restart, the killed connections and the crash" kill -0 "${pids[i]}"
done
world_workers_term 30 "worker w" "${pids[@]}"
like "$(cat "$WORLD"/w1.log "$WORLD"/w2.log)" "reconnect" "the workers' logs show the reconnection"
diag "drain time: $((SECONDS - t_start)) s for 8 loads, a restart, killed connections and a crash"

# --- 5. audit --------------------------------------------------------------------------
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($ID_LIST) AND state = 'done'")" 8 \
   "every reservation done" ||
    diag "not done: $(psql_val "SELECT string_agg(format('%s %s after %s attempt(s) in %s: %s', id, state, attempts,
                                failed_stage, last_error), '; ') FROM vcl.reservation
                                WHERE id IN ($ID_LIST) AND state <> 'done'")"
is "$(psql_val "SELECT count(*) FROM (SELECT reservation_id, stage FROM vcl.reservation_stage
                 WHERE reservation_id IN ($ID_LIST) AND outcome = 'ok'
                 GROUP BY 1, 2 HAVING count(*) <> 1) x")" 0 "no stage finished ok twice in one reservation"
is "$(psql_val "SELECT count(*) FROM vcl.reservation r WHERE r.id IN ($ID_LIST)
                 AND (SELECT count(DISTINCT stage) FROM vcl.reservation_stage s
                       WHERE s.reservation_id = r.id AND s.outcome = 'ok') <> $NSTAGES")" 0 \
   "every reservation has its $NSTAGES stages finished ok"
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id IN ($ID_LIST)
                 AND outcome NOT IN ('ok', 'abandoned', 'failed')")" 0 "no stage row left running"
diag "stage reruns (an abandoned or failed run, then ok): $(psql_val "SELECT coalesce(string_agg(reservation_id || ':' || stage || '=' || outcome, ' '), 'none')
       FROM vcl.reservation_stage WHERE reservation_id IN ($ID_LIST) AND outcome <> 'ok'")"
is "$(computer_overlaps "$ID_LIST")" 0 "no two reservations of one computer overlapped (stage spans)"
is "$(psql_val "
  SELECT count(*) FROM vcl.reservation x JOIN vcl.reservation y ON x.computer_id = y.computer_id
     AND x.id < y.id AND x.finished_at > y.started_at WHERE x.id IN ($ID_LIST) AND y.id IN ($ID_LIST)")" 0 \
   "the reservations of each computer ran in creation order"
for c in "${comps[@]}"; do
    is "$(timeout 30 virsh -q -c "$URI" list --all --name | grep "^$c:")" "$c:$T-blank-v2" \
       "exactly one domain of $c, the second load's"
    is "$(timeout 30 virsh -q -c "$URI" domstate "$c:$T-blank-v2" | head -n 1)" running "$c:$T-blank-v2 runs"
    is "$(find "$WORLD/cow" -maxdepth 1 -name "${c}_*" -printf '%f\n')" \
       "${c}_$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")-v2.qcow2" "exactly one COW disk of $c"
    is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$c'")" READY "$c READY"
done
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
is "$(grep -ci deadlock "$WORLD"/w1.log "$WORLD"/w2.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no deadlock in the worker logs"
diag "whole file: $((SECONDS - t_start)) s"
done_testing
