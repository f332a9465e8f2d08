#!/usr/bin/env bash
# Watching progress: stage estimates from history (vcl.stage_estimate: the
# median on the node, else on any node, else a default), copy progress in the
# running stage's detail (qemu-img convert on the node, also while a 3 GiB one
# runs, and a stream from a repository on the management host),
# `vclctl show ID --follow` while a real
# worker runs real loads on libvirt (one line per change when stdout is not a
# terminal, a redrawn view with a bar on a pty), a failing load's follow
# (error, exit 1), and `vclctl top --once` against the SQL counts.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"
command -v script >/dev/null || skip_all "no script(1) here (bsdutils): tools/install-deps"

VCLCTL="$ROOT/bin/vclctl"
T="t${WORLD##*.}"
MREPO=$WORLD/mgmt-repo
mkdir -p "$MREPO" && chmod 755 "$MREPO"
detail_running() { psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = '$2' AND outcome = 'running'"; }
detail_ok() { psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = '$2' AND outcome = 'ok' ORDER BY id DESC LIMIT 1"; }
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }
LOAD_STAGES="cleanup generate_xml pre_define write_xml define power_on post_load node_status"

ok "migrate" "$VCLCTL" migrate
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
qemu-img create -q -f qcow2 "$MREPO/$T-blank-v1.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 24M" "$MREPO/$T-blank-v1.qcow2" >/dev/null
mkdir -p "$WORLD/master2" "$WORLD/cow2" && chmod 755 "$WORLD/master2" "$WORLD/cow2"
ok "node1 (repository on the node)" "$VCLCTL" node add node1 --uri "$VCL_TEST_URI" \
    --master-dir "$WORLD/master" --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
ok "node2 (repository on the management host)" "$VCLCTL" node add node2 --uri "$VCL_TEST_URI" \
    --master-dir "$WORLD/master2" --cow-dir "$WORLD/cow2" --xml-dir "$WORLD/xml" --repo "$MREPO" \
    --repo-location management
ok "image" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
ok "revision 2 (missing everywhere)" "$VCLCTL" image revision-add $T-blank --revision 2 --file-stem $T-blank-v2
for i in 1 2; do
    ok "computer $T-pc$i on node1" "$VCLCTL" computer add "$T-pc$i" --node node1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):75:0$i" --memory 128 --vcpus 1
done
for i in 3 4 5 6; do
    ok "computer $T-pc$i on node2" "$VCLCTL" computer add "$T-pc$i" --node node2 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):75:0$i" --memory 128 --vcpus 1
done
world_track_domains "$T-pc"
node1=$(psql_val "SELECT id FROM vcl.node WHERE name = 'node1'")
node2=$(psql_val "SELECT id FROM vcl.node WHERE name = 'node2'")
world_config w1 >/dev/null

# --- 1. estimates from history -------------------------------------------------
# A finished load on node2 with three define runs of 100, 300 and 900 ms (and a
# failed one of 50 s, which does not count).
# (history written as the worker would: the reservation guard makes any other
# writer's INSERT a new pending row)
hid=$(PGOPTIONS="-c vcl.writer=worker" psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, state, finished_at)
                SELECT c.id, ir.id, 'done', now() FROM vcl.computer c, vcl.image_revision ir
                 WHERE c.name = '$T-pc3' AND ir.file_stem = '$T-blank-v1' RETURNING id")
psql_val "INSERT INTO vcl.reservation_stage (reservation_id, attempt, lease_token, stage, started_at, finished_at, outcome)
          VALUES ($hid, 1, 1, 'define', now() - interval '10 s', now() - interval '10 s' + interval '100 ms', 'ok'),
                 ($hid, 1, 1, 'define', now() - interval '9 s', now() - interval '9 s' + interval '900 ms', 'ok'),
                 ($hid, 1, 1, 'define', now() - interval '8 s', now() - interval '8 s' + interval '50 s', 'failed'),
                 ($hid, 1, 1, 'define', now() - interval '7 s', now() - interval '7 s' + interval '300 ms', 'ok')" >/dev/null
is "$(psql_val "SELECT round(estimate_ms)::text || ' ' || source || ' ' || runs FROM vcl.stage_estimate('load', $node2, 'define')")" \
   "300 node 3" "define on node2: the median of its 3 successful runs (failed ones left out)"
is "$(psql_val "SELECT round(estimate_ms)::text || ' ' || source || ' ' || runs FROM vcl.stage_estimate('load', $node1, 'define')")" \
   "300 operation 3" "define on node1 (no history there): the median over every node"
is "$(psql_val "SELECT round(estimate_ms)::text || ' ' || source || ' ' || runs FROM vcl.stage_estimate('load', $node1, 'post_load')")" \
   "60000 default 0" "post_load, never run: the built-in default"
is "$(psql_val "SELECT round(estimate_ms)::text || ' ' || source FROM vcl.stage_estimate('power_on', $node2, 'define')")" \
   "500 default" "another operation's runs are not this one's history (define's default)"
is "$(psql_val "SELECT round(estimate_ms)::text || ' ' || source FROM vcl.stage_estimate('load', $node2, 'frobnicate')")" \
   "1000 default" "a stage with no default of its own: the '*' default"
is "$(psql_val "SELECT round(estimate_ms)::text || ' ' || source FROM vcl.stage_estimate('load', $node2, 'define', 50, 5000, $hid)")" \
   "500 default" "p_exclude_reservation leaves that reservation's own runs out"
is "$(psql_val "SELECT round(estimate_ms)::text || ' ' || source FROM vcl.stage_estimate('load', $node2, 'define', 2)")" \
   "600 node" "p_runs = 2: the median of the last two runs (300, 900)"
other=$(PGOPTIONS="-c vcl.writer=worker" psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, state)
                  SELECT c.id, ir.id, 'cancelled' FROM vcl.computer c, vcl.image_revision ir
                   WHERE c.name = '$T-pc4' AND ir.file_stem = '$T-blank-v1' RETURNING id")
is "$(psql_val "SELECT string_agg(stage || '=' || round(estimate_ms) || '/' || source, ' ' ORDER BY ord)
                  FROM vcl.reservation_estimates($other, '{cleanup,define}')")" \
   "cleanup=2000/default define=300/node" "reservation_estimates: per stage of the list, in order, on its node"
is "$(psql_val "SELECT string_agg(stage || '=' || round(estimate_ms) || '/' || source, ' ' ORDER BY ord)
                  FROM vcl.reservation_estimates($hid, '{define}')")" \
   "define=500/default" "reservation_estimates leaves the reservation's own runs out"
like "$(psql -XAtq -c "SET enable_seqscan = off" -c "SET enable_sort = off" -c "EXPLAIN SELECT id FROM vcl.reservation_stage WHERE stage = 'define' ORDER BY started_at DESC LIMIT 2000")" \
     "reservation_stage_stage_idx" "the (stage, started_at) index serves the history scan"
is "$(psql_val "SELECT has_function_privilege('vcl_worker', 'vcl.stage_progress(bigint,bigint,text)', 'EXECUTE')")" t \
   "vcl_worker may call vcl.stage_progress"
is "$(psql_val "SELECT vcl.stage_progress($hid, 1, 'x')")" f "stage_progress is fenced: a finished reservation is not written"

# --- 2. follow, not a terminal: a load on node1 (convert on the node) -------------
id=$("$VCLCTL" load "$T-pc1" "$T-blank:1")
"$VCLCTL" show "$id" --follow >"$WORLD/follow1.out" 2>"$WORLD/follow1.err" &
fpid=$!
wait_for "follow prints the pending state" 10 grep -q "load#$id pending" "$WORLD/follow1.out"
world_worker w1 --fault pre_define:stop-finish --drain
wpid=$WORLD_WORKER_PID
wait_for "the worker stops after pre_define ran" 60 stopped "$wpid"
like "$(detail_running "$id" pre_define)" \
     "^copied 64\.0 MiB of 64\.0 MiB \(100%\).*\(qemu-img convert on the node\)$" \
     "while pre_define runs, its detail is the copy's progress"
wait_for "follow saw pre_define start" 10 grep -q "stage pre_define started" "$WORLD/follow1.out"
kill -CONT "$wpid"
world_worker_wait "$wpid" 90
rc=0
wait "$fpid" || rc=$?
is "$rc" 0 "follow exits 0 when the load ends done"
out=$(cat "$WORLD/follow1.out")
diag "$(sed 's/^/  /' "$WORLD/follow1.out")"
is "$(grep -o 'stage [a-z_]* started' "$WORLD/follow1.out" | awk '{print $2}' | xargs)" "$LOAD_STAGES" \
   "one 'started' line per stage of load, in order"
is "$(grep -o 'stage [a-z_]* done in' "$WORLD/follow1.out" | awk '{print $2}' | xargs)" "$LOAD_STAGES" \
   "one 'done' line per stage of load, in order"
like "$out" "[0-9][0-9]:[0-9][0-9]:[0-9][0-9] load#$id stage define started \(est 0\.3 s\)" \
     "define's estimate is the median over every node (300 ms)"
like "$out" "load#$id stage post_load started \(est 1m00s\)" "post_load's estimate is the default (60 s)"
like "$out" "load#$id stage cleanup started \(est 2\.0 s\)" "cleanup: the default, not this load's own run"
like "$(tail -1 "$WORLD/follow1.out")" "load#$id done in [0-9.]+ s$" "the last line says done"
like "$out" "load#$id running on worker w1 \(attempt 1 of 5\)" "a line when a worker runs it"
like "$(detail_ok "$id" pre_define)" "converted from .*; copied 64\.0 MiB of 64\.0 MiB \(100%\)" \
     "the stage log keeps the copy's final progress in pre_define's detail"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "the load is done"
unlike "$(cat "$WORLD/w1.log")" "cannot write the stage's progress" "no progress write failed"

# --- 2b. a convert long enough to be watched: its progress moves ----------------
# A 3 GiB raw master of non-zero data: while qemu-img convert runs on the
# node, the stage detail shows how far it is. The watcher looks once a
# second; a quiet host with a fast disk converts 1 GiB in about a second, so
# with 1 GiB the copy could end before its first look (it did, here).
qemu-img create -q -f raw "$WORLD/repo/$T-big-v1.raw" 3G
# (qemu-io writes at most 2 GiB per request)
qemu-io -f raw -c "write -P 0x55 0 1G" -c "write -P 0x55 1G 1G" -c "write -P 0x55 2G 1G" \
    "$WORLD/repo/$T-big-v1.raw" >/dev/null
ok "image big" "$VCLCTL" image add $T-big --os-type none
ok "big revision 1" "$VCLCTL" image revision-add $T-big --revision 1 --file-stem $T-big-v1
ok "computer $T-pc7 on node1" "$VCLCTL" computer add "$T-pc7" --node node1 \
    --mac "52:54:00:$(printf %02x $((RANDOM % 256))):75:07" --memory 128 --vcpus 1
idb=$("$VCLCTL" load "$T-pc7" "$T-big:1")
world_worker w1 --drain
wpid=$WORLD_WORKER_PID
partial() { [[ $(detail_running "$idb" pre_define) =~ ^copied\ [0-9.]+\ [KMG]iB\ of\ 3\.0\ GiB\ \(([0-9]|[1-9][0-9])%\) ]]; }
ok "while qemu-img convert runs on the node, the detail shows a partial copy" \
   wait_for "a partial convert progress line" 60 partial
diag "seen: $(detail_running "$idb" pre_define)"
world_worker_wait "$wpid" 300
like "$(detail_ok "$idb" pre_define)" "copied 3\.0 GiB of 3\.0 GiB \(100%\)" "and the final line says all of it"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $idb")" done "the big load is done"
rm -f "$WORLD/repo/$T-big-v1.raw"

# --- 3. follow of a failing load: the error, exit 1 ------------------------------
id2=$("$VCLCTL" load "$T-pc2" "$T-blank:2")
"$VCLCTL" show "$id2" --follow >"$WORLD/follow2.out" 2>&1 &
fpid=$!
world_worker w1 --drain
world_worker_wait "$WORLD_WORKER_PID" 60
rc=0
wait "$fpid" || rc=$?
is "$rc" 1 "follow exits 1 when the load fails"
out=$(cat "$WORLD/follow2.out")
like "$out" "load#$id2 stage pre_define failed after [0-9.]+ s: .*$T-blank-v2.* not found" \
     "the failed stage's line has the error"
like "$(tail -1 "$WORLD/follow2.out")" "load#$id2 failed in stage pre_define \(attempt 1 of 5\): .*not found" \
     "the last line: failed, the stage, the error"

# --- 4. follow on a terminal: a load on node2 (streamed from the management host)
id3=$("$VCLCTL" load "$T-pc3" "$T-blank:1")
script -qec "stty cols 200 rows 50; $VCLCTL show $id3 --follow" "$WORLD/tty.raw" >/dev/null 2>&1 &
spid=$!
world_worker w1 --fault pre_define:stop-finish --drain
wpid=$WORLD_WORKER_PID
wait_for "the worker stops after pre_define ran" 60 stopped "$wpid"
like "$(detail_running "$id3" pre_define)" \
     "^copied 24\.[0-9] MiB of 24\.[0-9] MiB \(100%\), [0-9.]+ [KMGT]iB/s \(streamed from the management host\)$" \
     "a stream from the management host reports bytes copied, rate"
out=$("$VCLCTL" top --once)
diag "$(sed 's/^/  /' <<<"$out")"
like "$out" "0 pending \(0 due, oldest -\), 1 running" "top while the load is held: 1 running, nothing pending"
like "$out" $'\n'"$id3 +load +$T-pc3 +node2 +w1 +pre_define +[0-9.]+ s +[0-9.]+ s +copied 24\.[0-9] MiB of 24\.[0-9] MiB" \
     "top shows the running job: operation, computer, node, worker, stage, ages, its progress"
like "$out" $'\n''w1 +[^ ]+ +[0-9]+ +2 +1 +[0-9]+s ago' "top: w1 holds one job"
sleep 1   # the live view draws the held stage
kill -CONT "$wpid"
world_worker_wait "$wpid" 90
rc=0
wait "$spid" || rc=$?
is "$rc" 0 "follow on a pty exits 0 when the load ends done"
raw=$(cat "$WORLD/tty.raw")
like "$raw" $'\e\\[[0-9]+A' "it redraws in place (cursor up)"
like "$raw" $'\e\\[K' "and clears each line"
like "$raw" "\[#{30}\] 100%" "the bar ends full at 100%"
like "$raw" "\[#*-+\] +[0-9]+%.*ETA" "a partial bar with an ETA while it runs"
like "$raw" "running +pre_define .*copied 24\.[0-9] MiB of 24\.[0-9] MiB" "the running stage shows its copy progress"
miss=""
for s in $LOAD_STAGES; do [[ $raw =~ done\ +$s\  ]] || miss+=" $s"; done
is "$miss" "" "every stage of load is drawn done at the end"
like "$raw" "reservation $id3: load of $T-pc3 on node node2: done in" "the heading says done"
like "$(detail_ok "$id3" pre_define)" "streamed from the management host: .*; copied 24\.[0-9] MiB of 24\.[0-9] MiB \(100%\)" \
     "the stage log keeps the stream's final progress"

# a capture uploads its new master back to the management repository: the
# upload's final detail keeps its copy's progress
cid=$("$VCLCTL" capture "$T-pc3" --after off --shutdown-timeout 2)
world_worker w1 --drain
world_worker_wait "$WORLD_WORKER_PID" 120
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $cid")" done "capture $cid done" ||
    diag "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $cid")"
like "$(detail_ok "$cid" upload)" \
     "from the node to the management host: .*; copied [0-9.]+ [KMG]iB of [0-9.]+ [KMG]iB \(100%\).*\(from the node to the management repository\)$" \
     "the capture's upload detail keeps the copy's final progress"

# a failed load on a pty: the error under the stages
rc=0
script -qec "stty cols 200 rows 50; $VCLCTL show $id2 --follow" "$WORLD/tty2.raw" >/dev/null 2>&1 || rc=$?
is "$rc" 1 "follow of the failed load on a pty: exit 1"
like "$(cat "$WORLD/tty2.raw")" "failed +pre_define .*not found" "the failed stage is drawn with its error"
like "$(cat "$WORLD/tty2.raw")" "error: .*not found" "and the error below"

# --- 5. top --------------------------------------------------------------------
for i in 4 5 6; do
    # queued two minutes ago: created_at is the worker's column (the guard)
    PGOPTIONS="-c vcl.writer=worker" psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, run_at, created_at)
              SELECT c.id, ir.id, now() + interval '1 hour', now() - interval '2 minutes'
                FROM vcl.computer c, vcl.image_revision ir
               WHERE c.name = '$T-pc$i' AND ir.file_stem = '$T-blank-v1'" >/dev/null
done
world_config w2 >/dev/null
world_worker w2
wait_for "w2 registered" 20 bash -c "[ \"\$(psql -XAtqc \"SELECT count(*) FROM vcl.workers WHERE name = 'w2'\")\" = 1 ]"
out=$("$VCLCTL" top --once)
diag "$(sed 's/^/  /' <<<"$out")"
workers=$(psql_val "SELECT count(*) FROM vcl.workers")
pending=$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'pending'")
failed=$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'failed' AND finished_at >= now() - interval '1 hour'")
like "$out" "^vcl-worker pool at [0-9-]+ [0-9:]+: $workers workers, $pending pending \(0 due, oldest 2m0[0-9]s\), 0 running, $failed failed in the last hour" \
     "the summary line matches SQL ($workers workers, $pending pending, $failed failed)"
like "$out" $'\n''w2 +[^ ]+ +[0-9]+ +2 +0 +[0-9]+s ago +running' "the worker with its slots, jobs and heartbeat age"
like "$out" $'\n''load +node2 +3 +0 +0 +2m0[0-9]s' "queue per operation and node: 3 pending, 0 due, 0 running, oldest"
like "$out" "load +$T-pc2 +node1 +pre_define .*not found" "the failure of the last hour with its error"
like "$out" $'running:\n\\(nothing running\\)' "nothing running"
out2=$(timeout 10 "$VCLCTL" top | head -1)
like "$out2" "^vcl-worker pool at" "top with stdout not a terminal prints once and exits"
fails "top --json is a usage error" "$VCLCTL" --json top
fails "show --follow --xml is a usage error" "$VCLCTL" show "$id" --follow --xml

done_testing
