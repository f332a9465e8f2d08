#!/usr/bin/env bash
# The shipped monitoring config against the real thing (issue #15 item 3):
#   - promtool (Debian's prometheus package) accepts
#     config/prometheus/vcl-worker.rules.yml, and refuses a broken copy (the
#     check is real); its unit tests (tests/prometheus/, promtool test
#     rules) fire each alert on a series it is about, and not on others;
#   - config/grafana/vcl-worker.json is JSON;
#   - a real worker (metrics_listen) and a real prometheus-postgres-exporter
#     reading vcl.metrics with config/prometheus/postgres_exporter.yml, as a
#     login that is only a vcl_reader, over a queue that has a row of every
#     kind vcl.metrics counts (due pending, expired lease, failed in the last
#     hour, computers per node_status, a live worker);
#   - every metric of vcl.metrics reaches Prometheus through the exporter
#     with its labels and value, and the exporter invents none; the worker
#     exports none of them (so sum() over workers is right);
#   - every metric name an expression of the rules or the dashboard uses
#     (PromQL, and the metrics of the dashboard's variables) is exported by
#     the worker's /metrics or by the exporter;
#   - counters end in _total and nothing else does.
. "$(dirname "$0")/../lib/world.sh"
world_init
command -v promtool >/dev/null || bail "promtool is not installed (tools/install-deps: prometheus)"
EXPORTER=$(command -v prometheus-postgres-exporter) ||
    bail "prometheus-postgres-exporter is not installed (tools/install-deps)"
command -v curl >/dev/null || bail "curl is not installed (tools/install-deps)"
RULES="$ROOT/config/prometheus/vcl-worker.rules.yml"
DASH="$ROOT/config/grafana/vcl-worker.json"
QUERIES="$ROOT/config/prometheus/postgres_exporter.yml"
world_pg
world_libvirt
world_dirs
VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
T="t${WORLD##*.}"

# --- promtool ------------------------------------------------------------------
out=$(promtool check rules "$RULES" 2>&1); rc=$?
is "$rc" 0 "promtool check rules accepts vcl-worker.rules.yml"
like "$out" "SUCCESS: [0-9]+ rules found" "promtool found the rules: $(grep -o '[0-9]* rules found' <<<"$out")"
n_rules=$(grep -o '[0-9]* rules found' <<<"$out" | cut -d' ' -f1)
sed 's/expr: vclw_oldest_pending_seconds > 900/expr: vclw_oldest_pending_seconds > > 900/' "$RULES" >"$WORLD/broken.rules.yml"
out=$(promtool check rules "$WORLD/broken.rules.yml" 2>&1); rc=$?
isnt "$rc" 0 "promtool refuses a copy with a broken expression (the check is real)"
out=$(cd "$ROOT/tests/prometheus" && promtool test rules vcl-worker.rules.test.yml 2>&1); rc=$?
is "$rc" 0 "promtool test rules: each alert fires on what it is about, and not otherwise (tests/prometheus)" ||
    diag "$out"
ok "the dashboard is JSON" perl -MJSON::PP -e 'local $/; JSON::PP->new->decode(<STDIN>)' <"$DASH"

# --- the names the rules and the dashboard use ------------------------------------
# PromQL expressions: the rules' expr (one line, or a | block) and the
# dashboard's targets; its variables' label_values(METRIC, label).
rule_exprs=$(perl -ne '
    if ($in) { if (/^(\s*)\S/ && length($1) > $ind) { print; next } $in = 0; print "\n" }
    if (/^(\s*)expr:\s*(.*)$/) { ($ind, my $v) = (length($1), $2);
        if ($v =~ /^[|>]-?$/) { $in = 1 } else { print "$v\n\n" } }
    END { print "\n" if $in }' "$RULES")
is "$(grep -c '^ *expr:' "$RULES")" "$n_rules" "one expression per rule in the rules file"
ok "every one of them read" test "$(grep -c . <<<"$(perl -00 -ne 'print "x\n" if /\S/' <<<"$rule_exprs")")" = "$n_rules"
dash_exprs=$(perl -MJSON::PP -e '
    local $/; my $d = JSON::PP->new->decode(<STDIN>);
    sub walk { my $x = shift;
        if (ref $x eq "HASH") { for my $k (sort keys %$x) {
            print "$x->{$k}\n\n" if $k eq "expr" && !ref $x->{$k};
            print "$1\n\n" if $k eq "definition" && $x->{$k} =~ /label_values\(\s*([A-Za-z_:][\w:]*)/;
            walk($x->{$k}) } }
        elsif (ref $x eq "ARRAY") { walk($_) for @$x } }
    walk($d)' <"$DASH")
# metric names of PromQL text: drop strings, label matchers, ranges,
# grouping clauses and variables; what is left and not called is a metric
promql_names() {
    perl -0777 -ne '
        s/"(?:[^"\\]|\\.)*"//g; s/\x27(?:[^\x27\\]|\\.)*\x27//g;
        s/\{[^}]*\}//g; s/\[[^\]]*\]//g; s/\$\{?\w+\}?//g;
        s/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)//g;
        while (/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g) {
            next if defined $2;
            next if $1 =~ /^(?:and|or|unless|bool|offset|by|without|on|ignoring|group_left|group_right|inf|nan)$/i;
            print "$1\n" }' | LC_ALL=C sort -u
}
is "$(promql_names <<<'histogram_quantile(0.95, sum by (node, le) (rate(vclw_x_bucket{node=~"$node",a="b{"}[$__rate_interval]))) / on() group_left(w) vclw_y and vector(0)' | paste -sd' ')" \
   "vclw_x_bucket vclw_y" "the name reader keeps metrics and drops functions, labels, strings, ranges and variables"
used=$(printf '%s\n%s\n' "$rule_exprs" "$dash_exprs" | promql_names)
n_used=$(wc -l <<<"$used")
ok "the rules and the dashboard use metrics ($n_used names)" test "$n_used" -ge 15
for m in vclw_oldest_pending_seconds vclw_queue_depth vclw_stage_duration_seconds_bucket \
         vclw_job_duration_seconds_bucket vclw_worker_heartbeat_age_seconds vclw_computer_reloads_total \
         vclw_jobs_failed_last_hour process_cpu_seconds_total; do
    ok "$m is among them" grep -qx "$m" <<<"$used"
done

# --- a queue with a row of every kind vcl.metrics counts -----------------------------
ok "migrate" "$VCLCTL" migrate
ok "node add node1" "$VCLCTL" node add node1 --uri "$VCL_TEST_URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
ok "node add gone (libvirt cannot open it)" "$VCLCTL" node add gone --uri "test://$WORLD/no-such-fixture.xml" \
    --master-dir "$WORLD/master" --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
mac() { printf '52:54:00:%02x:71:%02x' $((RANDOM % 256)) "$1"; }
ok "computer $T-pc1" "$VCLCTL" computer add "$T-pc1" --node node1 --mac "$(mac 1)" --memory 128 --vcpus 1
ok "computer $T-held (maintenance)" "$VCLCTL" computer add "$T-held" --node node1 --mac "$(mac 2)" --memory 128 --vcpus 1
ok "computer $T-lost" "$VCLCTL" computer add "$T-lost" --node gone --mac "$(mac 3)" --memory 128 --vcpus 1
psql_val "UPDATE vcl.computer SET state = 'maintenance' WHERE name = '$T-held'" >/dev/null
# on the computer in maintenance nothing is claimed: a due pending row waits,
# and a running row whose lease expired with no attempt left stays (made by
# hand, as a dead worker would leave it: the guard trigger is off for it;
# attempts left, or the next claim would fail it for good)
psql_val "INSERT INTO vcl.reservation (computer_id, operation, run_at)
          SELECT id, 'power_off', now() - interval '2 minutes' FROM vcl.computer WHERE name = '$T-held'" >/dev/null
psql_val "SET session_replication_role = replica;
          INSERT INTO vcl.reservation (computer_id, operation, state, lease_token, lease_expires_at,
                                       attempts, max_attempts, started_at)
          SELECT id, 'power_on', 'running', nextval('vcl.lease_token_seq'), now() - interval '1 minute',
                 1, 5, now() - interval '5 minutes' FROM vcl.computer WHERE name = '$T-held'" >/dev/null

free_port() {
    perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die "$!"; print $s->sockport'
}
wport=$(free_port)
cfg=$(world_config w1 "metrics_listen: \"127.0.0.1:$wport\"" "slots: 2" "watch_resync_seconds: 0")
"$WORKER" --config "$cfg" 2>"$WORLD/w1.log" &
wpid=$!
world_track_pid $wpid
wscrape() { curl -sS --max-time 5 "http://127.0.0.1:$wport/metrics"; }
wait_for "the worker's metrics endpoint" 20 wscrape >/dev/null

finished() { [ "$(psql_val "SELECT state IN ('done','failed','cancelled') FROM vcl.reservation WHERE id = $1")" = t ]; }
sql_op() { # COMPUTER OPERATION [MAX_ATTEMPTS]
    psql_val "INSERT INTO vcl.reservation (computer_id, operation, max_attempts)
              SELECT id, '$2', ${3:-5} FROM vcl.computer WHERE name = '$1' RETURNING id"
}
ns=$(sql_op "$T-pc1" node_status)
ok "node_status of $T-pc1 ends" wait_for "reservation $ns" 60 finished "$ns"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $ns")" done "it is done (a job duration for node1)"
f1=$(sql_op "$T-lost" node_status 1)
ok "node_status of $T-lost ends" wait_for "reservation $f1" 60 finished "$f1"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $f1")" failed "it failed (a failure in the last hour)"

view_names=$(psql_val "SELECT DISTINCT metric FROM vcl.metrics ORDER BY 1" | LC_ALL=C sort)
is "$(wc -l <<<"$view_names")" 7 "vcl.metrics has a row of each of its 7 metrics: $(paste -sd' ' <<<"$view_names")"

# --- the exporter, as a login that is only a vcl_reader ---------------------------------
EROLE="vcl_exporter_${T,,}"
psql_val "SET client_min_messages = warning; DROP ROLE IF EXISTS $EROLE; CREATE ROLE $EROLE LOGIN IN ROLE vcl_reader" >/dev/null
is "$(psql_val "SELECT count(*) > 0 FROM vcl.metrics" -U "$EROLE")" t "a vcl_reader may read vcl.metrics"
world_on_exit psql -XAtqc "DROP ROLE IF EXISTS $EROLE"
eport=$(free_port)
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$EROLE dbname=$PGDATABASE sslmode=disable" \
    "$EXPORTER" --extend.query-path="$QUERIES" --disable-default-metrics --disable-settings-metrics \
    --web.listen-address="127.0.0.1:$eport" >"$WORLD/exporter.log" 2>&1 &
epid=$!
world_track_pid $epid
escrape() { curl -sS --max-time 10 "http://127.0.0.1:$eport/metrics"; }
has_vclw() { escrape | grep -q '^vclw_'; }
ok "the exporter serves vcl.metrics" wait_for "the exporter" 30 has_vclw ||
    diag "$(tail -5 "$WORLD/exporter.log")"
ebody=$(escrape)
wbody=$(wscrape)
exp_names=$(perl -ne 'print "$1\n" if /^(vclw_\w+)[{ ]/' <<<"$ebody" | LC_ALL=C sort -u)
is "$exp_names" "$view_names" "every vcl.metrics metric reaches Prometheus under its own name, and only those"
# the same labels and values: each row of the view is a sample of the exporter
view_rows=$(psql_val "SELECT metric || ' ' || coalesce((SELECT string_agg(format('%s=%s', k, v), ',' ORDER BY k)
                                                         FROM jsonb_each_text(labels) x(k, v)), '') || ' ' || value
                        FROM vcl.metrics WHERE metric NOT LIKE '%seconds'")
exp_rows=$(perl -ne 'next unless /^(vclw_\w+)(?:\{([^}]*)\})? (\S+)$/; next if $1 =~ /seconds$/;
                     my ($m, $l, $v) = ($1, $2 // "", $3);
                     my @l = sort grep { !/^server=/ } map { s/"//gr } split /,/, $l;
                     print "$m ", join(",", @l), " ", $v + 0, "\n"' <<<"$ebody" | LC_ALL=C sort)
is "$exp_rows" "$(LC_ALL=C sort <<<"$view_rows")" "the exporter's samples are vcl.metrics' rows: same labels, same values"
like "$ebody" 'vclw_pending_due\{[^}]*operation="power_off"[^}]*\} 1' "due pending power_off: 1"
like "$ebody" 'vclw_running_lease_expired\{[^}]*operation="power_on"[^}]*\} 1' "expired lease power_on: 1"
like "$ebody" 'vclw_jobs_failed_last_hour\{[^}]*operation="node_status"[^}]*stage="check"[^}]*\} 1' \
     "failed in the last hour: node_status in stage check"
oldest=$(perl -ne 'print $1 if /^vclw_oldest_pending_seconds(?:\{[^}]*\})? (\S+)$/' <<<"$ebody")
ok "vclw_oldest_pending_seconds is the due row's wait, about 2 minutes ($oldest)" \
   perl -e 'exit($ARGV[0] >= 110 && $ARGV[0] < 3600 ? 0 : 1)' "${oldest:-0}"
like "$ebody" 'vclw_worker_heartbeat_age_seconds\{[^}]*worker="w1"[^}]*\} ' "the live worker's heartbeat age"

# --- who exports what -------------------------------------------------------------
# the worker's families from its TYPE lines; a histogram's samples are
# NAME_bucket, NAME_sum, NAME_count
worker_names=$(perl -ne 'if (/^# TYPE (\S+) (\S+)/) { print "$1\n";
                          print "$1_bucket\n$1_sum\n$1_count\n" if $2 eq "histogram" }' <<<"$wbody" | LC_ALL=C sort -u)
ok "the worker exports process metrics" grep -qx process_resident_memory_bytes <<<"$worker_names"
both=$(LC_ALL=C comm -12 <(echo "$worker_names") <(echo "$exp_names"))
is "$both" "" "no metric comes from both the worker and vcl.metrics (sum() over workers is right)"
missing=$(LC_ALL=C comm -23 <(echo "$used") <(printf '%s\n%s\n' "$worker_names" "$exp_names" | LC_ALL=C sort -u))
is "$missing" "" "every metric the rules and the dashboard use is exported (by the worker or vcl.metrics)"
# naming: a counter ends in _total, and nothing else does
bad=$(perl -ne 'next unless /^# TYPE ((?:vclw|process)_\S+) (\S+)/; my ($n, $k) = ($1, $2);
                print "$n ($k)\n" if ($n =~ /_total$/ ? 1 : 0) != ($k eq "counter" ? 1 : 0)' <<<"$wbody$(printf '\n')$ebody")
is "$bad" "" "counters end in _total, gauges and histograms do not (vclw_*, process_*)"
like "$wbody" 'vclw_job_duration_seconds_count\{operation="node_status",node="node1"\} 1' \
     "the worker's job duration of the node_status on node1"
done_testing
