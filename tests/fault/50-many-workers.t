#!/usr/bin/env bash
# Many workers on one queue: 4 worker processes x 4 slots drain 2,000 noop
# reservations over 50 computers (noop opens no libvirt; the node's URI is
# test:///default). Every reservation ends done exactly once (claimed once,
# by one worker; its stage log, if noop has stages, one ok row per stage),
# no computer ever ran two reservations at once and each computer's ran in
# creation order (lease tokens, which only grow, follow the ids), no
# deadlock in any log. Prints the drain time and the throughput.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg

VCLCTL="$ROOT/bin/vclctl"
T="t${WORLD##*.}"
N=2000
NCOMP=50

ok "migrate" "$VCLCTL" migrate
ok "node add" "$VCLCTL" node add "$T-n1" --uri test:///default --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml"
psql_val "INSERT INTO vcl.computer (name, node_id, mac0)
          SELECT format('$T-c%s', g), n.id, format('52:54:00:ee:%s:%s', lpad(to_hex(g / 256), 2, '0'), lpad(to_hex(g % 256), 2, '0'))
            FROM generate_series(1, $NCOMP) g, vcl.node n WHERE n.name = '$T-n1'" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.computer")" "$NCOMP" "$NCOMP computers"

stages=$("$ROOT/bin/vcl-worker" --help | sed -n '/^Operations and their stages:/,/^Configuration options:/p' |
    awk '/^  [a-z_]+ / {op = $1; next} op == "noop" && /^ +[0-9]+\. / {n++} END {print n + 0}')
diag "noop has $stages stage(s)"

# --- the workers, idle, then 2000 rows in one INSERT (one NOTIFY) -------------
pids=()
for w in w1 w2 w3 w4; do
    world_config "$w" "slots: 4" "log_level: info" >/dev/null
    world_worker "$w"
    pids+=("$WORLD_WORKER_PID")
done
all_registered() { [ "$(psql_val "SELECT count(*) FROM vcl.worker WHERE stopped_at IS NULL")" = 4 ]; }
ok "4 workers registered" wait_for "4 workers" 30 all_registered

t0=$(date +%s.%N)
psql_val "INSERT INTO vcl.reservation (computer_id, operation)
          SELECT c.id, 'noop' FROM generate_series(1, $N / $NCOMP) g, vcl.computer c ORDER BY g, c.id" >/dev/null
all_done() { [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'done'")" = "$N" ]; }
ok "all $N reservations done" wait_for "all done" 120 all_done
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc)
diag "drained $N noop reservations with 4 workers x 4 slots in $secs s: $(echo "$N / $secs" | bc) reservations/s (INSERT to the last one done, polled every 0.2 s)"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for i in 0 1 2 3; do
    rc=0
    world_worker_wait "${pids[i]}" 30 || rc=$?
    is "$rc" 0 "worker w$((i + 1)) exits 0 on SIGTERM"
done

# --- audit ----------------------------------------------------------------------------
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'done'")" "$N" "count(done) = $N"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state <> 'done' OR finished_at IS NULL
                 OR started_at IS NULL OR worker_id IS NULL OR lease_token IS NULL")" 0 \
   "every row finished, with its start, its worker and its lease"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE attempts <> 1 OR lease_expiries <> 0")" 0 \
   "every row claimed exactly once (attempts 1, no lease expired)"
is "$(psql_val "SELECT count(DISTINCT lease_token) FROM vcl.reservation")" "$N" "every claim had its own lease token"
is "$(psql_val "SELECT count(*) FROM vcl.reservation r
                 WHERE (SELECT count(*) FROM vcl.reservation_stage s WHERE s.reservation_id = r.id)
                    <> $stages
                    OR (SELECT count(*) FROM vcl.reservation_stage s WHERE s.reservation_id = r.id AND s.outcome = 'ok')
                    <> $stages")" 0 \
   "every row has exactly one stage row per stage of noop ($stages), all ok"
is "$(psql_val "SELECT count(*) FROM (SELECT computer_id, id, lease_token,
                        lag(lease_token) OVER (PARTITION BY computer_id ORDER BY id) AS prev
                   FROM vcl.reservation) x WHERE prev IS NOT NULL AND lease_token <= prev")" 0 \
   "per computer, claims followed creation order (lease tokens grow with the id)"
if ((stages == 0)); then
    # No stage log. started_at is the clock at the claim's update, after its
    # snapshot saw the previous row's completion committed; finished_at is
    # that completion's transaction start: so they must not overlap.
    is "$(psql_val "SELECT count(*) FROM vcl.reservation x JOIN vcl.reservation y
                     ON x.computer_id = y.computer_id AND x.id < y.id
                    WHERE x.started_at < y.finished_at AND y.started_at < x.finished_at")" 0 \
       "no two reservations of one computer ever overlapped (started_at..finished_at)"
    # and the database itself refuses a second running row of a computer
    is "$(psql_val "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                     WHERE c.relname = 'reservation_one_running_per_computer'
                       AND i.indisunique AND i.indisvalid
                       AND pg_get_indexdef(i.indexrelid) LIKE '%(computer_id) WHERE (state = ''running''::text)'")" 1 \
       "a valid unique index on computer_id WHERE state = 'running' is the backstop"
else
    # Stage rows carry clock_timestamp(): the first start of one reservation
    # must come after the last finish of the computer's previous one.
    is "$(psql_val "
      WITH spans AS (SELECT r.computer_id, s.reservation_id, min(s.started_at) a, max(s.finished_at) b
                       FROM vcl.reservation r JOIN vcl.reservation_stage s ON s.reservation_id = r.id GROUP BY 1, 2)
      SELECT count(*) FROM spans x JOIN spans y ON x.computer_id = y.computer_id AND x.reservation_id < y.reservation_id
       WHERE x.a < y.b AND y.a < x.b")" 0 "no two reservations of one computer ever overlapped (stage spans)"
fi
diag "per worker: $(psql_val "SELECT string_agg(w.name || '=' || n, ' ' ORDER BY w.name)
                               FROM (SELECT worker_id, count(*) n FROM vcl.reservation GROUP BY 1) x
                               JOIN vcl.worker w ON w.id = x.worker_id")"
is "$(psql_val "SELECT count(DISTINCT worker_id) FROM vcl.reservation")" 4 "all 4 workers took part"
is "$(grep -ci deadlock "$WORLD"/w*.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no deadlock in any worker log"
is "$(grep -c 'level=error' "$WORLD"/w*.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no error in any worker log"
done_testing
