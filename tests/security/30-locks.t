#!/usr/bin/env bash
# Reproductions of issue #12 item 6: nothing a reader login can do holds up
# or floods the queue.
#   1. a vcl_reader login holding every advisory lock key the worker ever
#      used (the node load-slot keys, the (node, image revision) copy keys):
#      loads that copy a master from the repository still complete, and the
#      node keeps its cap;
#   2. image_lock_timeout_seconds is honoured: a copy lock held by another
#      live lease makes the load wait that long, then retry;
#   3. a NOTIFY flood on vcl_reservation from the reader: the worker's claims
#      stay bounded (one per notify_min_gap_ms at most) and it still works.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 2     # node "$T-n1" capped at two loads, image "$T-blank" revision 1
as_worker() { PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" psql_val "$@"; }
psql_val "CREATE ROLE rdr LOGIN; GRANT vcl_reader TO rdr" >/dev/null
for img in a b; do   # two more images, so two masters are copied at once
    qemu-img create -q -f qcow2 "$WORLD/repo/$T-$img-v1.qcow2" 64M
    "$VCLCTL" image add "$T-$img" --os-type none >/dev/null &&
        "$VCLCTL" image revision-add "$T-$img" --revision 1 --file-stem "$T-$img-v1" >/dev/null ||
        bail "image $T-$img failed"
done
for i in 1 2 3 4; do
    "$VCLCTL" computer add "$T-pc$i" --node "$T-n1" --mac "52:54:00:$(printf %02x $((RANDOM % 256))):30:0$i" \
        --memory 128 --vcpus 1 >/dev/null || bail "computer add $T-pc$i failed"
done
node_id=$(psql_val "SELECT id FROM vcl.node WHERE name = '$T-n1'")
cfg=$(world_config w1)

# --- 1. a reader holds every advisory lock key ---------------------------------------------------
mkfifo "$WORLD/lock.fifo"
PGUSER=rdr psql -XAtq -v ON_ERROR_STOP=1 <"$WORLD/lock.fifo" >"$WORLD/lock.out" 2>&1 & lockpid=$!
world_track_pid "$lockpid"
exec 3>"$WORLD/lock.fifo"
# node load-slot keys ('vcln' << 32 | node id) and (node id, revision id) copy keys
cat >&3 <<SQL
SELECT count(pg_advisory_lock((1986225262::bigint << 32) | n)) FROM generate_series(1, 64) n;
SELECT count(pg_advisory_lock(n, r)) FROM generate_series(1, 16) n, generate_series(1, 64) r;
SQL
held() { [ "$(psql_val "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                        WHERE l.locktype = 'advisory' AND l.granted AND a.usename = 'rdr'")" = $((64 + 16 * 64)) ]; }
ok "the reader login holds every node and image lock key" wait_for "reader holds the keys" 30 held
a=$("$VCLCTL" load "$T-pc1" "$T-a:1")
b=$("$VCLCTL" load "$T-pc2" "$T-b:1")
c=$("$VCLCTL" load "$T-pc3" "$T-a:1")
timeout 600 "$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-1.log"
is "$(psql_val "SELECT string_agg(state, ',' ORDER BY id) FROM vcl.reservation WHERE id IN ($a, $b, $c)")" "done,done,done" \
   "three loads (two masters copied from the repository) complete while the reader holds the keys"
ok "master $T-a-v1 copied" test -f "$WORLD/master/$T-a-v1.qcow2"
ok "master $T-b-v1 copied" test -f "$WORLD/master/$T-b-v1.qcow2"
is "$(psql_val "SELECT count(*) FROM vcl.image_lock")" 0 "no copy lock left behind"
# the cap still holds: never more than 2 loads ran at once
is "$(psql_val "WITH s AS (SELECT r.id, min(s.started_at) a, max(s.finished_at) b FROM vcl.reservation r
                             JOIN vcl.reservation_stage s ON s.reservation_id = r.id WHERE r.id IN ($a, $b, $c) GROUP BY r.id)
                SELECT max((SELECT count(*) FROM s s2 WHERE s2.a <= s1.a AND s2.b > s1.a)) FROM s s1")" 2 \
   "at most max_concurrent_loads (2) ran at once"
echo "SELECT pg_advisory_unlock_all();" >&3
exec 3>&-

# --- 2. image_lock_timeout_seconds ---------------------------------------------------------------
qemu-img create -q -f qcow2 "$WORLD/repo/$T-c-v1.qcow2" 64M
ok "image $T-c" "$VCLCTL" image add "$T-c" --os-type none
ok "revision $T-c-v1" "$VCLCTL" image revision-add "$T-c" --revision 1 --file-stem "$T-c-v1"
rev_c=$(psql_val "SELECT id FROM vcl.image_revision WHERE file_stem = '$T-c-v1'")
# a live lease (a stand-in reservation of pc3) holds the copy lock of $T-c-v1
holder=$("$VCLCTL" enqueue "$T-pc3" noop)
htok=$(as_worker "UPDATE vcl.reservation SET state = 'running', worker_id = 0,
                         lease_token = nextval('vcl.lease_token_seq'), lease_expires_at = now() + interval '1 hour'
                   WHERE id = $holder RETURNING lease_token")
as_worker "INSERT INTO vcl.image_lock VALUES ($node_id, $rev_c, $holder, $htok)" >/dev/null
d=$("$VCLCTL" load "$T-pc4" "$T-c:1" --max-attempts 1)
cfg2=$(world_config w2 "image_lock_timeout_seconds: 3")
t0=$(date +%s)
timeout 300 "$WORKER" --config "$cfg2" --drain 2>"$WORLD/w2.log"
t1=$(date +%s)
is "$(psql_val "SELECT state || ' ' || failed_stage FROM vcl.reservation WHERE id = $d")" "failed pre_define" \
   "the load gave up waiting for the copy lock"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $d")" "held the copy lock for image $T-c-v1 .*for over 3 s" \
     "after image_lock_timeout_seconds (3 s), and says so"
ok "it did not wait 600 s ($((t1 - t0)) s)" test $((t1 - t0)) -lt 120
ok "nothing was copied" test ! -e "$WORLD/master/$T-c-v1.qcow2"
is "$(psql_val "SELECT reservation_id FROM vcl.image_lock WHERE image_revision_id = $rev_c")" "$holder" "the holder keeps its lock"
# the holder's lease runs out: the next taker gets the lock
as_worker "UPDATE vcl.reservation SET lease_expires_at = now() - interval '1 second' WHERE id = $holder" >/dev/null
psql_val "UPDATE vcl.reservation SET state = 'pending' WHERE id = $d" >/dev/null
timeout 300 "$WORKER" --config "$cfg2" --drain 2>"$WORLD/w2b.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $d")" done "once the holder's lease is gone, the load takes the lock over"
ok "and copied the master" test -f "$WORLD/master/$T-c-v1.qcow2"

# --- 3. a NOTIFY flood from the reader -----------------------------------------------------------
psql_val "ALTER SYSTEM SET track_functions = 'pl'" >/dev/null
psql_val "SELECT pg_reload_conf()" >/dev/null
sleep 1
psql_val "SELECT pg_stat_reset()" >/dev/null
GAP_MS=${GAP_MS:-50}
cfg3=$(world_config w3 "poll_seconds: 1" "notify_min_gap_ms: $GAP_MS")
s0=$(date +%s.%N)
"$WORKER" --config "$cfg3" 2>"$WORLD/w3.log" & wpid=$!
world_track_pid $wpid
listening() { [ "$(psql_val "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'w3'")" -ge 1 ]; }
ok "the worker is up" wait_for "worker connected" 30 listening
sleep 1
N=60000
f0=$(date +%s.%N)
ok "the reader sends $N notifications, one transaction each" \
    env PGUSER=rdr psql -XAtq -v ON_ERROR_STOP=1 -c \
    "DO \$\$ BEGIN FOR i IN 1..$N LOOP PERFORM pg_notify('vcl_reservation', i::text); COMMIT; END LOOP; END \$\$"
f1=$(date +%s.%N)
n=$("$VCLCTL" enqueue "$T-pc1" noop)
done_noop() { [ "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $n")" = done ]; }
ok "the worker still works after the flood" wait_for "noop done" 60 done_noop
kill -TERM $wpid
rc=0
wait $wpid || rc=$?
is "$rc" 0 "the worker stops cleanly"
s1=$(date +%s.%N)
sleep 2   # the worker's backends flush their function statistics at exit
claims=$(psql_val "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE schemaname = 'vcl' AND funcname = 'claim'")
flood=$(echo "$f1 - $f0" | bc)
total=$(echo "$s1 - $s0" | bc)
# one claim per notify_min_gap_ms (50) of flood at most, one per poll (1 s)
# otherwise, and some for the noop and start-up. (Without the debounce a
# claim followed each batch of notifications read: one per claim's latency,
# a few ms, several times the bound.)
bound=$(echo "($flood * 1000 / $GAP_MS + $total + 30) / 1" | bc)
diag "flood: $N notifications in $flood s; worker up $total s; vcl.claim calls: $claims (bound $bound)"
ok "claims stay bounded during the flood ($claims <= $bound)" test "$claims" -le "$bound"
ok "claims were counted at all" test "$claims" -ge 1
done_testing
