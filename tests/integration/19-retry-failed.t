#!/usr/bin/env bash
# Bulk retry (tools/vclctl/cmd_queue.c, issue #15 item 4):
#   vclctl retry --failed [--node N] [--operation OP] [--since INTERVAL]
#                [--dry-run] [--from-start]
#   - --dry-run lists exactly the rows a retry would take, with the count,
#     and changes nothing;
#   - each filter narrows it (node: its computers and its node checks;
#     operation; since: failed within the interval);
#   - the retry sets them pending (the plain UPDATE: the reset trigger
#     clears attempts), prints them and the count, and a worker runs them;
#   - of failed rows sharing a dedup_key only the newest is retried, none
#     whose key a queued row holds (a note counts those left);
#   - --json; usage errors; `retry ID` still works.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_vcl
psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n1', 'test:///default'), ('n2', 'test:///default');
          INSERT INTO vcl.computer (name, node_id, mac0) VALUES
            ('a1', 1, '52:54:00:00:19:01'), ('a2', 1, '52:54:00:00:19:02'),
            ('b1', 2, '52:54:00:00:19:03'), ('b2', 2, '52:54:00:00:19:04')" >/dev/null
W=$(psql_val "SELECT vcl.register_worker('sql', 'h', 1, 1, 'x')")
# a row of computer $1, operation $2 [dedup_key $3] that fails for good
failed() {
    local id tok key=NULL
    [ -n "${3:-}" ] && key="'$3'"
    id=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, dedup_key)
                   VALUES ((SELECT id FROM vcl.computer WHERE name = '$1'), '$2', $key) RETURNING id")
    tok=$(psql_val "SELECT lease_token FROM vcl.claim($W, 100, 30) WHERE id = $id")
    psql_val "SELECT vcl.fail($id, $tok, 'broken on purpose', 'stage_x', true, 0)" >/dev/null
    echo "$id"
}
st() { psql_val "SELECT string_agg(state, ',' ORDER BY id) FROM vcl.reservation WHERE id IN ($1)"; }
# the ids in the first column of a table's rows (the header and the count line skipped)
ids() { awk 'NR > 1 && $1 ~ /^[0-9]+$/ { printf "%s%s", sep, $1; sep = "," }'; }

f1=$(failed a1 noop); f2=$(failed a2 power_on); f3=$(failed b1 noop); f4=$(failed b2 power_off)
k=$(psql_val "INSERT INTO vcl.reservation (node_id, operation) VALUES (2, 'node_check') RETURNING id")
tok=$(psql_val "SELECT lease_token FROM vcl.claim($W, 100, 30) WHERE id = $k")
psql_val "SELECT vcl.fail($k, $tok, 'node down', 'check', true, 0)" >/dev/null
old=$(failed a1 noop)
# finished_at is the worker's column (guard.sql): written as the worker
psql_val "SET vcl.writer = 'worker'; UPDATE vcl.reservation SET finished_at = now() - interval '3 hours' WHERE id = $old" >/dev/null
is "$(st "$f1,$f2,$f3,$f4,$k,$old")" "failed,failed,failed,failed,failed,failed" "six failed rows"

# --- dry runs -------------------------------------------------------------------------
out=$("$VCLCTL" retry --failed --dry-run)
is "$(printf '%s\n' "$out" | ids)" "$f1,$f2,$f3,$f4,$k,$old" "--dry-run lists every failed row"
like "$out" "would retry 6 failed reservations" "with the count"
like "$out" "ID +COMPUTER +NODE +OPERATION +STATE +STAGE +FAILED_AT +ERROR" "as a table"
like "$out" "$k +- +n2 +node_check +failed +check " "a node check shows its node and no computer"
is "$(st "$f1,$f2,$f3,$f4,$k,$old")" "failed,failed,failed,failed,failed,failed" "and changes nothing"
is "$("$VCLCTL" retry --failed --dry-run --node n1 | ids)" "$f1,$f2,$old" "--node n1: its computers' rows"
is "$("$VCLCTL" retry --failed --dry-run --node n2 | ids)" "$f3,$f4,$k" "--node n2: with its node check"
is "$("$VCLCTL" retry --failed --dry-run --operation noop | ids)" "$f1,$f3,$old" "--operation noop"
is "$("$VCLCTL" retry --failed --dry-run --since 1h | ids)" "$f1,$f2,$f3,$f4,$k" "--since 1h leaves out the row failed 3 hours ago"
is "$("$VCLCTL" retry --failed --dry-run --since 1h --node n1 --operation noop | ids)" "$f1" "filters combine"
like "$("$VCLCTL" retry --failed --dry-run --node n1 --operation node_check)" "would retry 0 failed reservations" \
     "nothing matches: a count of 0"
j=$("$VCLCTL" --json retry --failed --dry-run --node n2)
is "$(psql_val "SELECT (j->>'dry_run') || ' ' || (j->>'count') || ' ' || (SELECT string_agg(x->>'id', ',') FROM json_array_elements(j->'reservations') x) FROM (SELECT '$j'::json AS j) t")" \
   "true 3 $f3,$f4,$k" "--json: dry_run, count and the rows"

# --- usage errors ---------------------------------------------------------------------
out=$("$VCLCTL" retry --failed --since 'an hour' 2>&1); rc=$?
is "$rc" 2 "--since with a bad interval: exit 2"
like "$out" "--since 'an hour': not an interval PostgreSQL accepts" "says why"
out=$("$VCLCTL" retry --failed --operation bogus 2>&1); rc=$?
is "$rc" 2 "an unknown operation: exit 2"
out=$("$VCLCTL" retry --failed --node nosuch 2>&1); rc=$?
is "$rc" 1 "an unknown node: exit 1"
like "$out" "nosuch" "naming it"
out=$("$VCLCTL" retry --node n1 2>&1); rc=$?
is "$rc" 2 "--node without --failed: exit 2"
out=$("$VCLCTL" retry 2>&1); rc=$?
is "$rc" 2 "neither an ID nor --failed: exit 2"
out=$("$VCLCTL" retry --failed "$f1" 2>&1); rc=$?
is "$rc" 2 "--failed with an ID: exit 2"
is "$(st "$f1,$f2,$f3,$f4,$k,$old")" "failed,failed,failed,failed,failed,failed" "still nothing changed"

# --- the retry ------------------------------------------------------------------------
out=$("$VCLCTL" retry --failed --node n1 --since 1h)
like "$out" "retried 2 failed reservations" "retry --failed --node n1 --since 1h: the count"
is "$(printf '%s\n' "$out" | ids)" "$f1,$f2" "and the rows"
is "$(st "$f1,$f2,$f3,$f4,$k,$old")" "pending,pending,failed,failed,failed,failed" "those two are pending, the rest untouched"
is "$(psql_val "SELECT string_agg(attempts::text || coalesce(stage, '-'), ',' ORDER BY id) FROM vcl.reservation WHERE id IN ($f1, $f2)")" \
   "0-,0-" "attempts reset (the reset trigger of the plain UPDATE)"
out=$("$VCLCTL" --json retry --failed --operation noop --from-start)
is "$(psql_val "SELECT (j->>'dry_run') || ' ' || (j->>'count') FROM (SELECT '$out'::json AS j) t")" "false 2" \
   "--json: the count of a real retry"
is "$(st "$f3,$old")" "pending,pending" "the noop rows of n2 and the old one"
CFG=$(world_config w1)
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(st "$f1,$f3,$old")" "done,done,done" "a worker ran the retried noops"

# --- dedup keys -------------------------------------------------------------------------
d1=$(failed a2 noop same); d2=$(failed a2 noop same)
d3=$(failed b1 noop held)
q=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, dedup_key, run_at) VALUES ((SELECT id FROM vcl.computer WHERE name = 'b2'), 'noop', 'held', now() + interval '1 day') RETURNING id")
out=$("$VCLCTL" retry --failed --operation noop 2>"$WORLD/err")
is "$(printf '%s\n' "$out" | ids)" "$d2" "of two failed rows with one key only the newest; none whose key is queued"
like "$(cat "$WORLD/err")" "2 more left failed: a pending or running reservation \\(or a newer failed one\\) has the same dedup_key" \
     "a note counts the rows left"
is "$(st "$d1,$d2,$d3,$q")" "failed,pending,failed,pending" "the rows are as it said"

# --- retry ID still works ---------------------------------------------------------------
like "$("$VCLCTL" retry "$f4")" "reservation $f4: pending" "retry ID"
out=$("$VCLCTL" retry "$f4" 2>&1); rc=$?
is "$rc" 1 "retry ID of a pending row: exit 1, as before"
done_testing
