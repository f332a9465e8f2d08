#!/usr/bin/env bash
# Cancel. A pending reservation cancelled with `vclctl cancel ID` leaves the
# queue: state cancelled, never claimed, nothing on the node, and the
# computer's next reservation runs. A running load cancelled while its
# worker is paused right after define (VCL_FAULT=define:stop-finish, then
# SIGCONT) stops at that stage boundary (no stage after define starts, its
# define is never checkpointed) and leaves the node clean: no domain, no COW
# disk, no XML file of that computer. The computer's next load, queued after
# the cancel, then runs normally.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 8
t_start=$SECONDS
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }
node_files() { find "$WORLD/cow" "$WORLD/xml" -maxdepth 1 -name "${1}_*" -printf '%f\n' | sort | paste -sd' '; }

# --- 1. a pending reservation ---------------------------------------------------
new_computer; A=$NEWC
set_state available "$A"
id1=$(enqueue "$A" load)
id2=$("$VCLCTL" -q load --no-dedup "$A" "$T-blank:1")   # a second load behind the first
out=$("$VCLCTL" cancel "$id1" 2>&1)
is "$?" 0 "vclctl cancel $id1 (pending) exits 0"
diag "vclctl cancel said: $out"
is "$(res_state "$id1")" cancelled "$id1 is cancelled"
rescue 90 "$id2" || true
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || (worker_id IS NULL) || ' ' || (lease_token IS NULL)
                 FROM vcl.reservation WHERE id = $id1")" "cancelled 0 true true" \
   "$id1 was never claimed (no attempt, no worker, no lease)"
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id1")" 0 "$id1 ran no stage"
is "$(res_state "$id2")" done "the computer's next reservation $id2 ran: done"
is "$(dom_count "$A")" 1 "one domain of $A (from $id2)"
out=$("$VCLCTL" cancel "$id2" 2>&1)
diag "cancelling a done reservation: exit $?, said: $out"
is "$(res_state "$id2")" done "cancelling a finished reservation changes nothing"

# --- 2. a running load, cancelled at define -----------------------------------------
new_computer; B=$NEWC
set_state available "$B"
id3=$(enqueue "$B" load)
world_config z "slots: 1" >/dev/null # lease 10 s, heartbeat 2 s
world_worker z --fault define:stop-finish --drain
zpid=$WORLD_WORKER_PID
ok "the worker is paused after define ran" wait_for "z stopped" 60 stopped "$zpid"
is "$(psql_val "SELECT state || ' ' || coalesce(stage, '-') FROM vcl.reservation WHERE id = $id3")" \
   "running write_xml" "$id3 runs, checkpoint write_xml (define ran, not yet checkpointed)"
is "$(dom_count "$B")" 1 "define made the domain of $B"
ok "vclctl cancel $id3 (running)" "$VCLCTL" cancel "$id3"
is "$(res_state "$id3")" cancelled "$id3 is cancelled at once"
kill -CONT "$zpid"
rc=0
world_worker_wait "$zpid" 60 || rc=$?
is "$rc" 0 "the worker went on, stopped the job and exited (--drain)"
like "$(cat "$WORLD/z.log")" "cancelled" "its log says the reservation was cancelled"
is "$(psql_val "SELECT string_agg(stage || '=' || outcome, ' ' ORDER BY id) FROM vcl.reservation_stage
                 WHERE reservation_id = $id3")" \
   "cleanup=ok generate_xml=ok pre_define=ok write_xml=ok define=abandoned" \
   "stopped at the stage boundary: define abandoned, no stage after it started"
is "$(psql_val "SELECT coalesce(stage, '-') FROM vcl.reservation WHERE id = $id3")" write_xml \
   "define was never checkpointed"
is "$(dom_count "$B")" 0 "no domain of $B left on the node"
is "$(node_files "$B")" "" "no COW disk, XML or console file of $B left on the node"
is "$(psql_val "SELECT coalesce(domain_name, '') || coalesce(cow_path, '') FROM vcl.computer WHERE name = '$B'")" "" \
   "the computer row owns nothing any more"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$B'")" RELOAD "$B is RELOAD"
is "$(res_state "$id3")" cancelled "$id3 stays cancelled"

# --- 3. the computer's next load runs, once the cancelled one's lease is over -------
id4=$(enqueue "$B" load)
rescue 90 "$id4" || true
is "$(res_state "$id4")" done "the next load $id4 of $B is done"
is "$(psql_val "SELECT (SELECT min(started_at) FROM vcl.reservation_stage WHERE reservation_id = $id4)
                       >= (SELECT blocks_until FROM vcl.reservation WHERE id = $id3)")" t \
   "it started only after the cancelled reservation's lease had run out (blocks_until)"
is "$(dom_count "$B")" 1 "one domain of $B"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$B'")" READY "$B READY"
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
diag "whole file: $((SECONDS - t_start)) s"
done_testing
