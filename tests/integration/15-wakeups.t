#!/usr/bin/env bash
# Wake-ups instead of polling (sql/functions/notify.sql, vcl.next_due in
# sql/functions/queue.sql, worker/queue/pool.c): a real worker whose poll_seconds
# is an hour still claims promptly when
#   - a row is inserted (NOTIFY per INSERT statement),
#   - a row's run_at comes due (vcl.next_due() told the worker when),
#   - a computer leaves maintenance, or a node does (NOTIFY from triggers),
#   - a running job's lease expires (vcl.next_due(): the rescue).
# At the SQL level: vcl.next_due() values, NOTIFY 'next' when a completion
# leaves work behind, the vcl.claimable view, and the maintenance rule (no
# claim of a computer in maintenance, rescues included, except the rescue of
# a maintenance operation). The domain watcher re-reads vcl.node on NOTIFY
# vcl_node. An idle worker sends almost nothing. Statements a connection runs
# again are prepared, unless prepared_statements: off (PgBouncer before 1.21).
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg

VCLCTL="$ROOT/bin/vclctl"
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
ok "migrate" "$VCLCTL" migrate
T="t${WORLD##*.}"
psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n1', 'test:///default'), ('n2', 'test:///default');
          INSERT INTO vcl.computer (name, node_id, mac0)
          SELECT 'c' || g, 1, format('52:54:00:00:00:%s', lpad(to_hex(g), 2, '0')) FROM generate_series(1, 20) g;
          INSERT INTO vcl.computer (name, node_id, mac0) VALUES ('d1', 2, '52:54:00:00:01:01')" >/dev/null
cid() { psql_val "SELECT id FROM vcl.computer WHERE name = '$1'"; }
ins() { # computer operation [extra columns] [extra values]: prints the id
    psql_val "INSERT INTO vcl.reservation (computer_id, operation${3:+, $3}) VALUES ($(cid "$1"), '$2'${4:+, $4}) RETURNING id"
}
state_of() { psql_val "SELECT state FROM vcl.reservation WHERE id = $1"; }
# seconds from a reservation's $2 (a timestamptz column or expression) to its started_at
lag() { psql_val "SELECT round(extract(epoch FROM started_at - ($2))::numeric, 2) FROM vcl.reservation WHERE id = $1"; }
under() { [ "$(echo "$1 < $2" | bc -l)" = 1 ]; }

# --- SQL level ----------------------------------------------------------------
is "$(psql_val "SELECT vcl.next_due() IS NULL")" t "next_due: nothing scheduled on an empty queue"
a=$(ins c1 noop run_at "now() + interval '40 s'")
due=$(psql_val "SELECT round(vcl.next_due())")
ok "next_due: a row due in 40 s says ~40 (got $due)" bash -c "[ $due -ge 38 ] && [ $due -le 40 ]"
is "$(psql_val "SELECT count(*) FROM vcl.claimable")" 0 "claimable: a row not yet due is not claimable"
psql_val "UPDATE vcl.reservation SET run_at = now() WHERE id = $a" >/dev/null
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claimable")" "$a" "claimable: due now, it is"
b=$(ins c1 noop)
is "$(psql_val "SELECT string_agg(id::text, ',') FROM vcl.claimable")" "$a" \
   "claimable: a computer's second row waits for its first"
w=$(psql_val "SELECT vcl.register_worker('sql', 'h', 1, 1, 'x')")
tok=$(psql_val "SELECT lease_token FROM vcl.claim($w, 10, 30) WHERE id = $a")
ok "claim took the first row" test -n "$tok"
due=$(psql_val "SELECT round(vcl.next_due())")
ok "next_due: the running row's lease expiry, ~30 s (got $due)" bash -c "[ $due -ge 28 ] && [ $due -le 30 ]"
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "LISTEN vcl_reservation" -c "SELECT vcl.complete('{$a}', '{$tok}')" 2>&1)
like "$out" 'notification "vcl_reservation" with payload "next"' \
     "complete: NOTIFY 'next' when the computer has a row waiting behind the completed one"
tok=$(psql_val "SELECT lease_token FROM vcl.claim($w, 10, 30) WHERE id = $b")
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "LISTEN vcl_reservation" -c "SELECT vcl.complete('{$b}', '{$tok}')" 2>&1)
unlike "$out" 'notification' "complete: no NOTIFY when nothing waits behind it"
psql_val "UPDATE vcl.computer SET state = 'maintenance' WHERE name = 'c2'" >/dev/null
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "LISTEN vcl_reservation" \
      -c "UPDATE vcl.computer SET state = 'available' WHERE name = 'c2'" 2>&1)
like "$out" 'payload "available"' "a computer leaving maintenance sends NOTIFY 'available'"
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "LISTEN vcl_node" -c "UPDATE vcl.node SET libvirt_uri = libvirt_uri WHERE name = 'n2'" 2>&1)
like "$out" 'notification "vcl_node"' "a node's URI written sends NOTIFY vcl_node (the watchers re-read vcl.node)"

# maintenance: a running load of a computer in maintenance is not rescued; a
# running maintenance operation is
l=$(ins c3 delete max_attempts 3)
m=$(ins c4 maintenance max_attempts 3)
psql_val "SELECT count(*) FROM vcl.claim($w, 10, 1)" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($l, $m) AND state = 'running'")" 2 "two jobs running"
psql_val "UPDATE vcl.computer SET state = 'maintenance' WHERE name IN ('c3', 'c4')" >/dev/null
sleep 1.2
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.claimable")" "$m" \
   "claimable after the leases expired: the maintenance operation only (the computer in maintenance blocks the other)"
is "$(psql_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM vcl.claim($w, 10, 30)")" "$m" "the claim rescues it"
psql_val "UPDATE vcl.computer SET state = 'available' WHERE name IN ('c3', 'c4');
          UPDATE vcl.reservation SET state = 'cancelled' WHERE id IN ($l, $m)" >/dev/null

# --- a real worker that (nearly) never polls -----------------------------------
world_config w1 "poll_seconds: 3600" "watch_resync_seconds: 3600" "lease_seconds: 5" "heartbeat_seconds: 1" >/dev/null
world_worker w1
ok "worker registered" wait_for "worker w1" 10 \
   bash -c "[ \"\$(psql -XAtqc \"SELECT count(*) FROM vcl.worker WHERE name = 'w1' AND stopped_at IS NULL\")\" = 1 ]"
sleep 1
id=$(ins c5 noop)
ok "an INSERT is claimed at once" wait_for "reservation $id done" 5 bash -c "[ \"\$(psql -XAtqc 'SELECT state FROM vcl.reservation WHERE id = $id')\" = done ]"
l1=$(lag "$id" created_at)
ok "INSERT to claim took ${l1}s (a wake-up, not the hourly poll)" under "$l1" 3

id=$(ins c6 noop run_at "now() + interval '3 s'")  # its NOTIFY wakes the worker: nothing due yet
ok "a row due in 3 s is claimed when due" wait_for "reservation $id done" 8 \
   bash -c "[ \"\$(psql -XAtqc 'SELECT state FROM vcl.reservation WHERE id = $id')\" = done ]"
l2=$(lag "$id" run_at)
ok "claimed ${l2}s after its run_at (vcl.next_due, not the hourly poll)" under "$l2" 3

psql_val "UPDATE vcl.computer SET state = 'maintenance' WHERE name = 'c8'" >/dev/null
id=$(ins c8 noop)
sleep 1
is "$(state_of "$id")" pending "a row of a computer in maintenance waits"
t0=$(psql_val "SELECT now()")
psql_val "UPDATE vcl.computer SET state = 'available' WHERE name = 'c8'" >/dev/null
ok "claimed at once when the computer leaves maintenance" wait_for "reservation $id done" 5 \
   bash -c "[ \"\$(psql -XAtqc 'SELECT state FROM vcl.reservation WHERE id = $id')\" = done ]"
l3=$(lag "$id" "'$t0'::timestamptz")
ok "available to claim took ${l3}s (NOTIFY, not the hourly poll)" under "$l3" 3

# a dead worker's job: claimed by SQL with a 2 s lease, never renewed
ghost=$(psql_val "SELECT vcl.register_worker('ghost', 'h', 1, 1, 'x')")
# inserted and claimed in one transaction: the INSERT's NOTIFY reaches the
# worker only after the ghost holds the row
psql_val "INSERT INTO vcl.reservation (computer_id, operation) VALUES ($(cid c9), 'noop');
          SELECT count(*) FROM vcl.claim($ghost, 1, 2)" >/dev/null
id=$(psql_val "SELECT id FROM vcl.reservation WHERE computer_id = $(cid c9)")
is "$(psql_val "SELECT worker_id FROM vcl.reservation WHERE id = $id")" "$ghost" "the ghost worker holds it"
id2=$(ins c10 noop)  # (no NOTIFY for a claim:) this wakes the worker, which learns when the lease ends
ok "the expired lease is rescued when it expires" wait_for "reservation $id done" 8 \
   bash -c "[ \"\$(psql -XAtqc 'SELECT state FROM vcl.reservation WHERE id = $id')\" = done ]"
is "$(psql_val "SELECT lease_expiries FROM vcl.reservation WHERE id = $id")" 1 "as a rescue (one lease expired)"

# --- the watcher reads vcl.node on NOTIFY ---------------------------------------
world_config w2 "poll_seconds: 3600" "watch_resync_seconds: 3600" >/dev/null
world_worker w2
ok "watcher started" wait_for "watcher subscribed" 10 grep -q "subscribed to domain events of node n2" "$WORLD/w2.log"
psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n3', 'test:///default')" >/dev/null
ok "a node added while the watcher runs is watched within seconds" \
   wait_for "n3 subscribed" 5 grep -q "subscribed to domain events of node n3" "$WORLD/w2.log"

# --- idle: almost nothing --------------------------------------------------------
# (statistics of an idle backend reach pg_stat_database up to 10 s late: wait)
# Autovacuum's transactions count too, and it may pick this minute to visit
# the tables the earlier tests filled (once it made a window 16 instead of
# 6-9): the workers' idle cost is the same in every window and autovacuum
# only adds, so the least of up to three windows is the measure.
sleep 11
n=
for window in 1 2 3; do
    before=$(psql_val "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    sleep 15
    after=$(psql_val "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    w=$((after - before))
    diag "two idle workers, window $window: $w transactions in 15 s (this probe and autovacuum included)"
    { [[ -z $n ]] || ((w < n)); } && n=$w
    ((n <= 15)) && break
done
ok "two idle workers: at most 15 transactions in 15 s (got $n, the least of the windows)" test "$n" -le 15

# --- prepared statements, and prepared_statements: off ---------------------------
world_config w3 "prepared_statements: off" "poll_seconds: 3600" "watch_resync_seconds: 0" >/dev/null
world_worker w3
ok "w3 registered" wait_for "worker w3" 10 \
   bash -c "[ \"\$(psql -XAtqc \"SELECT count(*) FROM vcl.worker WHERE name = 'w3' AND stopped_at IS NULL\")\" = 1 ]"
psql -XAtq -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
for i in 11 12 13 14 15 16; do ins "c$i" noop >/dev/null; sleep 0.2; done
ok "the noops are done" wait_for "six noops done" 10 \
   bash -c "[ \"\$(psql -XAtqc \"SELECT count(*) FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id
                                  WHERE c.name IN ('c11','c12','c13','c14','c15','c16') AND r.state = 'done'\")\" = 6 ]"
w1pid=$(psql_val "SELECT pid FROM pg_stat_activity WHERE application_name = 'w1'")
w3pid=$(psql_val "SELECT pid FROM pg_stat_activity WHERE application_name = 'w3'")
psql -XAtq -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
pglog=$(find "$WORLD/pg" -maxdepth 1 -type f -name log)
ok "the PostgreSQL log is there" test -n "$pglog"
claims() { grep "\[$1\] " "$pglog" | grep -c "execute $2: SELECT id, lease_token, operation, .* FROM vcl.claim"; }
ok "w1 (prepared_statements: on) runs its claim as a prepared statement ($(claims "$w1pid" 'vclw_[0-9]*') times)" \
   test "$(claims "$w1pid" 'vclw_[0-9]*')" -gt 0
is "$(claims "$w3pid" 'vclw_[0-9]*')" 0 "w3 (prepared_statements: off) never does"
ok "w3 runs it unnamed ($(claims "$w3pid" '<unnamed>') times)" test "$(claims "$w3pid" '<unnamed>')" -gt 1
done_testing
