#!/usr/bin/env bash
# Scheduling from the command line (tools/vclctl/cmd_queue.c, issue #15 item
# 4): `vclctl load|enqueue --at TIME` (any timestamptz PostgreSQL accepts)
# and `--in INTERVAL` set run_at; bad values, and both at once, are usage
# errors (exit 2) that name the option and PostgreSQL's reason, and queue
# nothing; a worker does not run a row before its time.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_vcl
ok "node add" "$VCLCTL" node add n1 --uri test:///default --master-dir "$WORLD/m" --cow-dir "$WORLD/c" --xml-dir "$WORLD/x"
ok "image add" "$VCLCTL" image add $T-img --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-img --revision 1 --file-stem $T-img-v1
for i in 1 2 3 4 5; do
    ok "computer pc$i" "$VCLCTL" computer add pc$i --node n1 --mac 52:54:00:18:00:0$i
done
res() { psql_val "SELECT $1 FROM vcl.reservation WHERE id = $2"; }
count() { psql_val "SELECT count(*) FROM vcl.reservation"; }

id=$("$VCLCTL" load pc1 $T-img --at '2031-02-03 04:05:06+00')
like "$id" '^[0-9]+$' "load --at: the id"
is "$(res "run_at = '2031-02-03 04:05:06+00'" "$id")" t "run_at is that time"
id=$("$VCLCTL" enqueue pc2 noop --at 'tomorrow')
is "$(res "run_at = 'tomorrow'::timestamptz" "$id")" t "enqueue --at tomorrow (PostgreSQL's own words)"
id=$("$VCLCTL" enqueue pc3 noop --in 10m)
is "$(res "run_at BETWEEN now() + interval '9 min' AND now() + interval '10 min'" "$id")" t \
   "enqueue --in 10m: run_at about ten minutes from now"
id=$("$VCLCTL" load pc4 $T-img --in '1 day 2 hours')
is "$(res "run_at BETWEEN now() + interval '25 hours' AND now() + interval '26 hours'" "$id")" t "load --in '1 day 2 hours'"
id=$("$VCLCTL" enqueue pc5 noop)
is "$(res "run_at <= now()" "$id")" t "without --at/--in: due now (the schema's default)"

n=$(count)
out=$("$VCLCTL" load pc5 $T-img --at 'next tuesday-ish' 2>&1); rc=$?
is "$rc" 2 "--at with a bad time: exit 2"
like "$out" "load: --at 'next tuesday-ish': not a time \\(timestamptz\\) PostgreSQL accepts \\(invalid input syntax for type timestamp with time zone" \
     "the message names the option, the value and PostgreSQL's reason"
like "$out" "usage: vclctl load" "with the usage line"
out=$("$VCLCTL" enqueue pc5 noop --in 'ten minutes' 2>&1); rc=$?
is "$rc" 2 "--in with a bad interval: exit 2"
like "$out" "--in 'ten minutes': not an interval PostgreSQL accepts \\(invalid input syntax for type interval" \
     "names the option and the reason"
out=$("$VCLCTL" enqueue pc5 noop --in 10m --at tomorrow 2>&1); rc=$?
is "$rc" 2 "--at and --in together: exit 2"
like "$out" "give --at TIME or --in INTERVAL, not both" "says so"
out=$("$VCLCTL" enqueue pc5 noop --at "$(printf 'x\001y')" 2>&1); rc=$?
is "$rc" 2 "a control character: exit 2"
is "$(count)" "$n" "no bad value queued anything"

# a worker leaves the future rows alone and runs the due one
CFG=$(world_config w1)
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(psql_val "SELECT string_agg(state, ',' ORDER BY id) FROM vcl.reservation")" "pending,pending,pending,pending,done" \
   "the worker ran only the row that was due"
id=$("$VCLCTL" enqueue pc5 noop --in 1s)
ok "a row due in 1 s" test -n "$id"
sleep 1.5
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(res state "$id")" done "once due, it runs"

# Rows at the edges of claim order (priority DESC, run_at, id), as anyone
# who may queue can write them: run_at -infinity or far in the past, the
# smallest and largest priorities. A worker claiming one at a time (so each
# claim walks on from the last row it took: vcl.claim's resume point) runs
# them all, and nothing else is touched.
for i in 6 7 8 9; do
    ok "computer pc$i" "$VCLCTL" computer add pc$i --node n1 --mac 52:54:00:18:00:0$i
done
edge=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, run_at, priority)
                 SELECT c.id, 'noop', v.run_at, v.priority
                   FROM (VALUES ('pc6', '-infinity'::timestamptz, 2147483647),
                                ('pc7', '4713-01-01 00:00:00+00 BC', -2147483648),
                                ('pc8', '-infinity', -2147483648),
                                ('pc9', 'epoch', 0),
                                ('pc6', now(), 2147483647),
                                ('pc7', '-infinity', 0)) v(computer, run_at, priority)
                   JOIN vcl.computer c ON c.name = v.computer
                 RETURNING id" | paste -sd,)
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($edge)")" 6 "six rows at the edges queued"
CFG2=$(world_config w2 "slots: 1" "claim_batch: 1")
"$WORKER" --config "$CFG2" --drain 2>>"$WORLD/w2.log"
is "$(psql_val "SELECT string_agg(state, ',' ORDER BY id) FROM vcl.reservation WHERE id IN ($edge)")" \
   "done,done,done,done,done,done" "a worker claiming one at a time ran every one of them"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id NOT IN ($edge) AND state = 'pending'")" 4 \
   "the four future rows are still pending"
unlike "$(cat "$WORLD/w2.log")" "claim:" "no claim failed"
done_testing
