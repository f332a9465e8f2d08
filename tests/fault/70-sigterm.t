#!/usr/bin/env bash
# Graceful shutdown in the middle of a load: the worker is paused right
# after power_on's stage-start row (VCL_FAULT=power_on:stop-start), gets
# SIGTERM, then SIGCONT. It lets the running stage finish (power_on ok,
# checkpointed), hands the job back (pending, run now, the attempt not
# counted, no worker) and exits 0. Another worker then finishes the job
# without redoing finished stages: in the stage log cleanup..power_on appear
# once each, under the first lease; post_load and node_status under the
# second; the job counts one attempt.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 8
t_start=$SECONDS
fault_ops
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }

new_computer; A=$NEWC
set_state available "$A"
id=$(enqueue "$A" load)
world_config w1 "slots: 1" >/dev/null # lease 10 s, heartbeat 2 s
world_worker w1 --fault power_on:stop-start
pid=$WORLD_WORKER_PID
ok "the worker is paused at the start of power_on" wait_for "w1 stopped" 60 stopped "$pid"
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || coalesce(stage, '-') FROM vcl.reservation WHERE id = $id")" \
   "running 1 define" "$id runs (attempt 1), checkpoint define"
tok1=$(psql_val "SELECT lease_token FROM vcl.reservation WHERE id = $id")

kill -TERM "$pid"
kill -CONT "$pid"
rc=0
world_worker_wait "$pid" 60 || rc=$?
is "$rc" 0 "SIGTERM: the worker exits 0"
log=$(cat "$WORLD/w1.log")
like "$log" "stopping: no new claims" "its log says it is stopping"
like "$log" "handed the job back" "its log says it handed the job back"
is "$(psql_val "SELECT outcome FROM vcl.reservation_stage WHERE reservation_id = $id AND stage = 'power_on'")" ok \
   "the running stage (power_on) was let finish"
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || coalesce(stage, '-') || ' ' || (worker_id IS NULL)
                       || ' ' || (run_at <= now())
                  FROM vcl.reservation WHERE id = $id")" "pending 0 power_on true true" \
   "handed back: pending, attempt not counted, checkpoint power_on, no worker, runnable now"
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id AND outcome <> 'ok'")" 0 \
   "no stage abandoned or failed"
is "$(timeout 30 virsh -q -c "$URI" domstate "$(dom_of "$A")" | head -n 1)" running "the domain runs (power_on finished)"

# --- another worker finishes it --------------------------------------------------
rescue 60 "$id" || true
is "$(res_state "$id")" done "another worker finished $id"
is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 1 "one attempt counted in all"
is "$(psql_val "SELECT string_agg(stage, ',' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $id")" \
   "$(tr ' ' ',' <<<"${STAGES[load]}")" "every stage ran exactly once, in order (no finished stage redone)"
is "$(psql_val "SELECT string_agg(stage, ',' ORDER BY id) FROM vcl.reservation_stage
                 WHERE reservation_id = $id AND lease_token = $tok1")" \
   "$(tr ' ' '\n' <<<"${STAGES[load]}" | sed '/^power_on$/q' | paste -sd,)" \
   "cleanup..power_on ran under the first lease"
is "$(psql_val "SELECT w.name FROM vcl.reservation r JOIN vcl.worker w ON w.id = r.worker_id WHERE r.id = $id")" \
   rescue "completed by the other worker"
is "$(dom_count "$A")" 1 "one domain of $A"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$A'")" READY "$A READY"
diag "whole file: $((SECONDS - t_start)) s"
done_testing
