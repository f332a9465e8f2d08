#!/usr/bin/env bash
# Prometheus metrics and JSON logs of a real worker: metrics_listen on a free
# loopback port, a few real jobs (noops completed right after their claims, node_status
# against libvirt, node_status that fails on an unreachable node, with and
# without a retry, and a real load when a libvirt daemon can run here), then
# the scrape (curl) must say exactly what happened: job counters per
# operation, stage histogram counts equal to the finished rows of
# vcl.reservation_stage, a job duration per node for each job done, no
# queue-wide gauge from the worker (vcl.metrics has them, and equals the SQL
# counts), vclw_slots = the config, process_* metrics of the worker's own
# process. Anything but /metrics is 404; a bad
# metrics_listen or log_format is refused by --check-config with a clear
# message; with log_format: json every line the worker writes parses as JSON
# and job lines carry reservation, computer, node and stage.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
T="t${WORLD##*.}"
command -v curl >/dev/null || bail "curl is not installed (tools/install-deps)"

# --- configuration errors ----------------------------------------------------
bad=$(world_config bad1 'metrics_listen: "127.0.0.1:70000"')
out=$("$WORKER" --config "$bad" --check-config 2>&1); rc=$?
is "$rc" 1 "--check-config refuses metrics_listen with port 70000"
like "$out" "bad1.yaml:[0-9]+:[0-9]+: option 'metrics_listen' expects .*got '127.0.0.1:70000': the port must be a number from 1 to 65535" \
     "the message names file:line:col, the option, the value and what is wrong"
bad=$(world_config bad2 'metrics_listen: "::1:9187"')
like "$("$WORKER" --config "$bad" --check-config 2>&1)" "IPv6 address needs brackets: \[ADDRESS\]:PORT" \
     "an IPv6 address without brackets is refused with the right spelling"
bad=$(world_config bad3 'metrics_listen: "example.org:9187"')
like "$("$WORKER" --config "$bad" --check-config 2>&1)" "'example.org' is not an IPv4 address" \
     "a host name is refused (addresses only)"
bad=$(world_config bad4 'log_format: xml')
like "$("$WORKER" --config "$bad" --check-config 2>&1)" "option 'log_format' expects one of logfmt, json, got 'xml'" \
     "a bad log_format is refused"
good=$(world_config good1 'metrics_listen: "[::1]:9187"' 'log_format: json')
ok "[::1]:9187 and log_format json are accepted" "$WORKER" --config "$good" --check-config
good=$(world_config good2 'metrics_listen: ":9187"')
ok ":9187 is accepted" "$WORKER" --config "$good" --check-config

# --- the world ---------------------------------------------------------------
ok "migrate" "$VCLCTL" migrate
ok "node add node1" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
# libvirt cannot open this one: every job on it fails (retryable) at once
ok "node add gone" "$VCLCTL" node add gone --uri "test://$WORLD/no-such-fixture.xml" \
    --master-dir "$WORLD/master" --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
ok "image add" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
for i in 1 2 3; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node node1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):70:0$i" --memory 128 --vcpus 1
    world_track_domain "$T-pc$i:$T-blank-v1"
done
ok "computer $T-lost on the unreachable node" "$VCLCTL" computer add "$T-lost" --node gone \
    --mac "52:54:00:$(printf %02x $((RANDOM % 256))):70:09" --memory 128 --vcpus 1

port=$(perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die "$!"; print $s->sockport')
M="http://127.0.0.1:$port"
cfg=$(world_config w1 "metrics_listen: \"127.0.0.1:$port\"" "log_format: json" "slots: 3" \
                      "watch_resync_seconds: 0")
"$WORKER" --config "$cfg" 2>"$WORLD/w1.log" &
wpid=$!
world_track_pid $wpid

scrape() { curl -sS --max-time 5 "$M/metrics"; }
# metric NAME{LABELS}: its value in a fresh scrape ("" when absent)
metric() {
    scrape | awk -v k="$1" 'index($0, k " ") == 1 { print $2; found = 1 } END { exit !found }'
}
metric_is() { [ "$(metric "$1")" = "$2" ]; }
# a metric as an integer (counters are printed as %.17g: 5, not 5.0)
wait_for "the metrics endpoint to answer" 20 scrape
body=$(scrape)
like "$body" "# HELP vclw_jobs_claimed_total " "HELP lines"
like "$body" "# TYPE vclw_stage_duration_seconds histogram" "TYPE lines"
version=$("$WORKER" --version | head -1 | cut -d' ' -f2)
like "$body" "vclw_worker_info\{version=\"$version\",worker=\"w1\"\} 1" "worker info gauge with version (vcl-worker --version) and worker name"
is "$(metric vclw_slots)" 3 "vclw_slots matches the config (3)"
unlike "$body" "vclw_slots_total|vclw_queue_depth" "no vclw_slots_total (renamed vclw_slots), no queue-wide gauge (vcl.metrics)"
# the scrape's own connection is one more descriptor than ls sees
ok "process_open_fds is the worker's open descriptors (give or take the scrape's)" \
   perl -e 'exit(abs($ARGV[0] - $ARGV[1]) <= 3 ? 0 : 1)' "$(metric process_open_fds)" "$(ls /proc/$wpid/fd | wc -l)"
st=$(awk '{ print $22 }' /proc/$wpid/stat)
btime=$(awk '/^btime/ { print $2 }' /proc/stat)
want_start=$(echo "$btime + $st / $(getconf CLK_TCK)" | bc -l)
ok "process_start_time_seconds is the worker's start ($want_start)" \
   perl -e 'exit(abs($ARGV[0] - $ARGV[1]) < 1 ? 0 : 1)' "$(metric process_start_time_seconds)" "$want_start"
ok "process_resident_memory_bytes is the worker's RSS" \
   perl -e 'exit(abs($ARGV[0] - $ARGV[1] * 1024) < 8 * 1048576 ? 0 : 1)' "$(metric process_resident_memory_bytes)" \
   "$(awk '/^VmRSS/ { print $2 }' /proc/$wpid/status)"
like "$(metric process_cpu_seconds_total)" '^[0-9.e+-]+$' "process_cpu_seconds_total is a number"
is "$(metric 'vclw_jobs_claimed_total{operation="noop"}')" 0 "counters start at 0"
is "$(curl -sS -o /dev/null -w '%{http_code}' "$M/other")" 404 "/other is 404"
is "$(curl -sS -o /dev/null -w '%{http_code}' "$M/")" 404 "/ is 404"
is "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$M/metrics")" 405 "POST /metrics is 405"
like "$(curl -sS -D - -o /dev/null "$M/metrics" | tr -d '\r')" "Content-Type: text/plain; version=0.0.4" \
     "served as text exposition format 0.0.4"

finished() { [ "$(psql_val "SELECT state IN ('done','failed','cancelled') FROM vcl.reservation WHERE id = $1")" = t ]; }
wait_end() { wait_for "reservation $1 to end" "${2:-60}" finished "$1"; }
state_of() { psql_val "SELECT state FROM vcl.reservation WHERE id = $1"; }
sql_op() { # COMPUTER OPERATION [MAX_ATTEMPTS]
    psql_val "INSERT INTO vcl.reservation (computer_id, operation, max_attempts)
              SELECT id, '$2', ${3:-5} FROM vcl.computer WHERE name = '$1' RETURNING id"
}

# --- 5 noops: completed right after their claims ----------------------------
psql_val "INSERT INTO vcl.reservation (computer_id, operation)
          SELECT c.id, 'noop' FROM vcl.computer c, generate_series(1, 5) g
           WHERE c.name = '$T-pc1'" >/dev/null
wait_for "5 noops done" 30 bash -c "[ \"\$(psql -XAtqc \"SELECT count(*) FROM vcl.reservation WHERE operation = 'noop' AND state = 'done'\")\" = 5 ]"
ok "jobs_done{noop} == 5" wait_for "the noop counter" 5 metric_is 'vclw_jobs_done_total{operation="noop"}' 5
is "$(metric 'vclw_jobs_claimed_total{operation="noop"}')" 5 "jobs_claimed{noop} == 5"
is "$(metric 'vclw_jobs_failed_total{operation="noop"}')" 0 "jobs_failed{noop} == 0"

# --- node_status against libvirt: done ---------------------------------------
ns=$(sql_op "$T-pc2" node_status)
wait_end "$ns"
is "$(state_of "$ns")" done "node_status of $T-pc2 is done"
is "$(metric 'vclw_jobs_done_total{operation="node_status"}')" 1 "jobs_done{node_status} == 1"
is "$(metric 'vclw_job_duration_seconds_count{operation="node_status",node="node1"}')" 1 \
   "job duration histogram: one node_status done on node1"

# --- node_status on an unreachable node: failed (once), retried then failed ---
lib0=$(metric vclw_libvirt_errors_total)
f1=$(sql_op "$T-lost" node_status 1)
wait_end "$f1"
is "$(state_of "$f1")" failed "node_status on the unreachable node failed (max_attempts 1)"
is "$(metric 'vclw_jobs_failed_total{operation="node_status"}')" 1 "the failed job counted: jobs_failed{node_status} == 1"
is "$(metric 'vclw_jobs_retried_total{operation="node_status"}')" 0 "no retry counted for it"
f2=$(sql_op "$T-lost" node_status 2)
wait_end "$f2" 30
is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $f2")" "failed 2" \
   "with max_attempts 2 it failed after a retry"
is "$(metric 'vclw_jobs_retried_total{operation="node_status"}')" 1 "jobs_retried{node_status} == 1"
is "$(metric 'vclw_jobs_failed_total{operation="node_status"}')" 2 "jobs_failed{node_status} == 2"
is "$(metric 'vclw_jobs_claimed_total{operation="node_status"}')" 4 "jobs_claimed{node_status} == 4 (1 + 1 + 2 attempts)"
lib1=$(metric vclw_libvirt_errors_total)
ok "libvirt errors counted ($lib0 -> $lib1, at least one per failed attempt)" test "$lib1" -ge $((lib0 + 3))

# --- a real load --------------------------------------------------------------
if [ "$VCL_TEST_LIBVIRT" = real ]; then
    ld=$("$VCLCTL" load "$T-pc3" "$T-blank:1")
    wait_end "$ld" 120
    is "$(state_of "$ld")" done "load of $T-pc3 is done"
    is "$(metric 'vclw_jobs_done_total{operation="load"}')" 1 "jobs_done{load} == 1"
    is "$(metric 'vclw_stage_duration_seconds_count{operation="load",stage="define"}')" 1 \
       "stage histogram count{load,define} == 1"
    like "$(scrape)" 'vclw_stage_duration_seconds_bucket\{operation="load",stage="power_on",le="\+Inf"\} 1' \
         "histogram +Inf bucket"
else
    skip "no libvirt daemon can run here: no real load" 4
fi

# --- histograms == finished rows of the stage log -------------------------------
want=$(psql_val "SELECT string_agg(format('%s/%s=%s', operation, stage, n), ' ')
                   FROM (SELECT r.operation, s.stage, count(*) AS n
                           FROM vcl.reservation_stage s JOIN vcl.reservation r ON r.id = s.reservation_id
                          WHERE s.finished_at IS NOT NULL GROUP BY 1, 2) x")
got=$(scrape | perl -ne 'print "$1/$2=$3\n" if /^vclw_stage_duration_seconds_count\{operation="([^"]+)",stage="([^"]+)"\} (\d+)$/' |
      LC_ALL=C sort | paste -sd' ')
want=$(tr ' ' '\n' <<<"$want" | LC_ALL=C sort | paste -sd' ')
is "$got" "$want" "every stage histogram _count equals the finished rows in vcl.reservation_stage"
ok "some stages were observed" test -n "$want"
sum_ok=$(scrape | perl -ne '$s += $1 if /^vclw_stage_duration_seconds_sum\{[^}]*\} (\S+)$/; END { print $s > 0 ? 1 : 0 }')
is "$sum_ok" 1 "histogram sums are positive"

# --- queue-wide gauges: vcl.metrics, not the worker ----------------------------
psql_val "INSERT INTO vcl.reservation (computer_id, operation, run_at)
          SELECT c.id, 'power_on', now() + interval '1 hour' FROM vcl.computer c, generate_series(1, 3) g
           WHERE c.name = '$T-pc2'" >/dev/null
psql_val "INSERT INTO vcl.reservation (computer_id, operation, run_at)
          SELECT id, 'snapshot_create', now() + interval '1 hour' FROM vcl.computer WHERE name = '$T-pc1'" >/dev/null
view_matches() {
    local op st sql m
    for op in power_on snapshot_create noop load; do
        for st in pending running; do
            sql=$(psql_val "SELECT count(*) FROM vcl.reservation WHERE operation = '$op' AND state = '$st'")
            m=$(psql_val "SELECT coalesce(sum(value), 0) FROM vcl.metrics WHERE metric = 'vclw_queue_depth'
                            AND labels = jsonb_build_object('operation', '$op', 'state', '$st')")
            [ "$sql" = "$m" ] || { echo "$op/$st: sql $sql, vcl.metrics $m"; return 1; }
        done
    done
}
ok "vcl.metrics' queue depth equals the SQL counts" view_matches
is "$(psql_val "SELECT value FROM vcl.metrics WHERE metric = 'vclw_queue_depth' AND labels->>'operation' = 'power_on' AND labels->>'state' = 'pending'")" 3 \
   "vcl.metrics: queue depth {power_on, pending} == 3"
is "$(psql_val "SELECT count(*) FROM vcl.metrics WHERE metric = 'vclw_pending_due' AND labels->>'operation' = 'power_on'")" 0 \
   "rows due in an hour are not due now"
unlike "$(scrape)" "vclw_queue_depth" "the worker exports no queue depth"
psql_val "UPDATE vcl.reservation SET state = 'cancelled' WHERE operation = 'power_on' AND state = 'pending'" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.metrics WHERE metric = 'vclw_queue_depth' AND labels->>'operation' = 'power_on'")" 0 \
   "and it follows the queue when it drains"
is "$(psql_val "SELECT value FROM vcl.metrics WHERE metric = 'vclw_computers' AND labels = '{\"node\": \"node1\", \"node_status\": \"READY\"}'")" \
   "$(psql_val "SELECT count(*) FROM vcl.computer c JOIN vcl.node n ON n.id = c.node_id WHERE n.name = 'node1' AND c.node_status = 'READY'")" \
   "vcl.metrics: computers of node1 READY == SQL count"
ok "vcl.metrics: w1's heartbeat is recent" \
   test "$(psql_val "SELECT (value < 120)::int FROM vcl.metrics WHERE metric = 'vclw_worker_heartbeat_age_seconds' AND labels->>'worker' = 'w1'")" = 1
is "$(metric vclw_slots_busy)" 0 "slots_busy == 0 when idle"
is "$(metric vclw_lease_lost_total)" 0 "no lease lost"
is "$(metric vclw_db_reconnects_total)" 0 "no DB reconnect"

# --- a DB reconnect is counted ------------------------------------------------
psql_val "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'w1'" >/dev/null
ok "a killed DB session is counted as one reconnect" wait_for "db reconnect" 20 metric_is vclw_db_reconnects_total 1

# --- stop: the endpoint goes away, exit 0 ---------------------------------------
kill -TERM $wpid
wait $wpid; rc=$?
is "$rc" 0 "worker exits 0 on SIGTERM"
is "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$M/metrics")" 000 "the endpoint is closed after exit"

# --- JSON logs -----------------------------------------------------------------
lines=$(wc -l <"$WORLD/w1.log")
ok "the worker wrote log lines ($lines)" test "$lines" -gt 10
bad_json=$(perl -MJSON::PP -ne 'chomp; my $o = eval { JSON::PP->new->decode($_) }; print "$.: $_\n" unless ref $o eq "HASH" && defined $o->{ts} && defined $o->{level} && defined $o->{msg}' "$WORLD/w1.log")
is "$bad_json" "" "every stderr line is a JSON object with ts, level and msg"
stage_lines=$(perl -MJSON::PP -ne 'my $o = JSON::PP->new->decode($_); print "$o->{reservation} $o->{computer} $o->{node} $o->{stage}\n" if $o->{msg} =~ /^stage \S+ started$/' "$WORLD/w1.log")
like "$stage_lines" "$ns $T-pc2 node1 check" "job lines carry reservation, computer, node and stage"
missing=$(perl -MJSON::PP -ne 'my $o = JSON::PP->new->decode($_); print if $o->{msg} =~ /^stage / && !($o->{reservation} && $o->{computer} && $o->{node} && $o->{stage} && $o->{worker} eq "w1")' "$WORLD/w1.log")
is "$missing" "" "every stage line has reservation, computer, node, stage and worker"
is "$(perl -MJSON::PP -ne 'my $o = JSON::PP->new->decode($_); print ref(\$o->{reservation}) eq "SCALAR" && $o->{reservation} =~ /^\d+$/ ? "" : "x" if exists $o->{reservation}' "$WORLD/w1.log")" "" \
   "reservation is a number"
done_testing
