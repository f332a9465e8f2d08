#!/usr/bin/env bash
# Every per-job write is fenced on (id, lease token, state running) and must
# find its row with one probe of the primary key. Written as three clauses,
# "r.state = 'running'" matched the predicate of the partial indexes of
# running rows, and when the statistics said that no row runs (a quiet
# queue after ANALYZE) the cached generic plan walked all of
# reservation_one_running_per_computer (every running row and every dead
# entry not yet vacuumed: thousands under a transaction that holds back
# xmin) with the id as a mere filter. The fence is now one expression,
# vcl.running_token(state, lease_token) (sql/functions/queue.sql).
#
# Here, with exactly those statistics, auto_explain logs the generic plan of
# every statement (nested ones too) of: the SQL functions a job calls
# (stage log, progress, temp files, copy lock, heartbeat, fail, complete,
# release), called by hand, and a real worker's own statements
# (worker/queue/statements.h) running noop, node_status and power_off jobs
# on libvirt's test driver. No plan may look a reservation up by id through
# any index but the primary key, and the primary key probes must be there
# (so a silent auto_explain cannot pass the test).
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
PGLOG=$WORLD/pg/log

ok "migrate" "$ROOT/bin/vclctl" --quiet migrate
psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n1', 'test:///default');
          INSERT INTO vcl.computer (name, node_id, mac0)
          SELECT 'c' || g, n.id, format('52:54:00:00:01:%s', lpad(to_hex(g), 2, '0'))
            FROM generate_series(1, 40) g, vcl.node n;
          INSERT INTO vcl.image (name) VALUES ('img');
          INSERT INTO vcl.image_revision (image_id, revision, file_stem, production)
          SELECT id, 1, 'img-v1', true FROM vcl.image" >/dev/null
REV=$(psql_val "SELECT id FROM vcl.image_revision")
cfg=$(world_config w1 "slots: 4" "poll_seconds: 1" "heartbeat_seconds: 1" "watch_resync_seconds: 0")

# A queue's history: 400 finished rows, nothing running, then the
# statistics of exactly that (the running rows' indexes: no row).
psql_val "INSERT INTO vcl.reservation (computer_id, operation)
          SELECT (g - 1) % 40 + 1, 'noop' FROM generate_series(1, 400) g" >/dev/null
world_worker w1
wait_for "400 noops done" 60 bash -c "[ \"\$(psql -XAtqc \"SELECT count(*) FROM vcl.reservation WHERE state = 'done'\")\" = 400 ]" ||
    fail_note="the history did not finish"
kill -TERM "$WORLD_WORKER_PID"
world_worker_wait "$WORLD_WORKER_PID" 30 >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'done'")" 400 "the history: 400 rows done ${fail_note:-}"
psql_val "VACUUM (ANALYZE) vcl.reservation" >/dev/null
is "$(psql_val "SELECT reltuples FROM pg_class WHERE relname = 'reservation_one_running_per_computer'")" 0 \
   "the statistics say that no row runs"

# bad_lookups FILE: every scan of vcl.reservation through an index other
# than the primary key whose first condition line filters on id (a lookup by
# id that walks another index), one per line.
bad_lookups() {
    awk '/(Index|Index Only|Bitmap Index) Scan using [a-z_]+ on reservation( |$)/ {
             scan = $0; idx = $0; sub(/.*Scan using /, "", idx); sub(/ .*/, "", idx); next }
         scan != "" && /(Filter|Index Cond|Recheck Cond): .*[( ]id = / && idx != "reservation_pkey" {
             gsub(/^[ \t]+/, "", scan); print scan " / " $0; scan = ""; next }
         { scan = "" }' "$1"
}
pkey_lookups() { grep -c 'Index Cond: (id = ' "$1" || true; }

explain_settings="LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET plan_cache_mode = force_generic_plan;"

# --- the SQL functions a job calls, by hand ---------------------------------------
W=$(psql_val "SELECT vcl.register_worker('by-hand', 'host-a', 1, 4, 'test')")
psql_val "INSERT INTO vcl.reservation (computer_id, operation)
          SELECT id, 'noop' FROM vcl.computer WHERE name IN ('c1', 'c2', 'c3', 'c4')" >/dev/null
read -r -a J < <(psql_val "SELECT string_agg(id || ' ' || lease_token, ' ' ORDER BY id) FROM vcl.claim($W, 4, 60)")
is "${#J[@]}" 8 "four rows claimed by hand"
R1=${J[0]} T1=${J[1]} R2=${J[2]} T2=${J[3]} R3=${J[4]} T3=${J[5]} R4=${J[6]} T4=${J[7]}
psql -XAtq -v ON_ERROR_STOP=1 >"$WORLD/by-hand.out" 2>"$WORLD/by-hand.plans" <<SQL
$explain_settings
SET client_min_messages = log;
SET auto_explain.log_level = log;
SELECT vcl.heartbeat($W, '{$R1,$R2,$R3,$R4}', '{$T1,$T2,$T3,$T4}', 60);
SELECT vcl.stage_start($R1, $T1, 'one') AS s \gset
SELECT vcl.stage_progress($R1, $T1, 'half way');
SELECT vcl.temp_file_record(1, '/nowhere/x.tmp-vcl+1', $R1, $T1);
SELECT vcl.image_lock_take(1, $REV, $R1, $T1);
SELECT vcl.image_lock_held(1, $REV, $R1, $T1);
SELECT vcl.image_lock_release(1, $REV, $R1, $T1);
SELECT vcl.stage_next($R1, $T1, :s, 'done', 'two') AS s2 \gset
SELECT vcl.stage_finish($R1, $T1, :s2, true, 'done', true);
SELECT vcl.complete('{$R1}', '{$T1}');
SELECT vcl.fail($R2, $T2, 'broken', 'x', true, 0);
SELECT vcl.release('{$R3}', '{$T3}');
SELECT vcl.stage_start($R4, $T4 + 1, 'fenced out');
SQL
rc=$?
is "$rc" 0 "the calls ran (psql exit $rc: $(grep -m1 ERROR "$WORLD/by-hand.plans"))"
is "$(psql_val "SELECT string_agg(state, ' ' ORDER BY id) FROM vcl.reservation WHERE id IN ($R1, $R2, $R3, $R4)")" \
   "done failed pending running" "and did their work: done, failed, released, untouched (the fenced-out call)"
is "$(bad_lookups "$WORLD/by-hand.plans")" "" "no function looks a reservation up by id through another index"
n=$(pkey_lookups "$WORLD/by-hand.plans")
ok "the plans were logged, with primary-key probes ($n)" test "$n" -ge 12

# --- a real worker's own statements ------------------------------------------------
psql_val "SELECT vcl.complete('{$R4}', '{$T4}')" >/dev/null
psql_val "VACUUM (ANALYZE) vcl.reservation" >/dev/null
psql_val "ALTER DATABASE vcl SET session_preload_libraries = 'auto_explain';
          ALTER DATABASE vcl SET auto_explain.log_min_duration = 0;
          ALTER DATABASE vcl SET auto_explain.log_nested_statements = on;
          ALTER DATABASE vcl SET plan_cache_mode = force_generic_plan" >/dev/null
off=$(stat -c %s "$PGLOG")
psql_val "INSERT INTO vcl.reservation (computer_id, operation)
          SELECT (g - 1) % 40 + 1, CASE g % 3 WHEN 0 THEN 'noop' WHEN 1 THEN 'node_status' ELSE 'power_off' END
            FROM generate_series(1, 30) g" >/dev/null
world_worker w1
wait_for "the 30 jobs finished" 60 bash -c "[ \"\$(psql -XAtqc \"SELECT count(*) FROM vcl.reservation WHERE state IN ('pending', 'running')\")\" = 0 ]" || true
kill -TERM "$WORLD_WORKER_PID"
world_worker_wait "$WORLD_WORKER_PID" 30 >/dev/null
psql_val "ALTER DATABASE vcl RESET ALL" >/dev/null
is "$(psql_val "SELECT string_agg(operation || ' ' || state || ' ' || n, ', ' ORDER BY operation, state)
                  FROM (SELECT operation, state, count(*) n FROM vcl.reservation
                         WHERE id > $R4 GROUP BY 1, 2) t")" \
   "node_status done 10, noop done 10, power_off failed 10" \
   "the worker ran them: node_status and noop done, power_off failed (no driver on test:///)"
tail -c +"$((off + 1))" "$PGLOG" >"$WORLD/worker.plans"
is "$(bad_lookups "$WORLD/worker.plans")" "" "no statement of the worker looks a reservation up by id through another index"
n=$(pkey_lookups "$WORLD/worker.plans")
ok "the worker's plans were logged, with primary-key probes ($n)" test "$n" -ge 30
ok "among them the node_status write-back (SQL_WRITE_STATUS)" grep -q 'Update on computer' "$WORLD/worker.plans"

done_testing
