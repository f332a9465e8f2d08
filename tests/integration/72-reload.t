#!/usr/bin/env bash
# SIGHUP, again and again, on a real worker with jobs running: 70 reloads
# (past the old cap of 64 configs) each reloaded and logged, the slots count
# changing between them, node_status jobs running meanwhile, and one job held
# in its stage for all 70 (its node's libvirt "daemon" accepts and never
# answers) that finishes only afterwards, under the config it started with
# (retired 70 times over, freed only once its slot is done); then a reloadable option (log_level) takes effect at once,
# restart-only ones (worker_name, database) warn "KEY changed in FILE but
# takes effect only after a restart" and keep the running value (the worker
# stays registered under its name and keeps working on its database), a
# broken file keeps the running configuration, and SIGTERM still exits 0.
# Jobs run on libvirt's test:///default driver (no daemon, no domains
# started), so this runs on any host.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_dirs

VCLCTL="$ROOT/bin/vclctl"
T="t${WORLD##*.}"
URI=test:///default
N_RELOADS=70

ok "migrate" "$VCLCTL" migrate
ok "node add" "$VCLCTL" node add n1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
for i in 1 2 3 4; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node n1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):72:0$i" --memory 128 --vcpus 1
done
# A node whose libvirtd accepts connections and never answers: a job on it
# stays in its stage until this listener goes away. (Reached with
# qemu+libssh2://, whose handshake waits for the banner: qemu+tcp:// is not a
# URI the worker accepts.)
perl -MIO::Socket::INET -e '$| = 1;
    my $s = IO::Socket::INET->new(Listen => 16, LocalAddr => "127.0.0.1", LocalPort => 0,
                                  ReuseAddr => 1) or die "listen: $!";
    print $s->sockport, "\n";
    my @held;
    while (my $c = $s->accept) { push @held, $c }' >"$WORLD/silent.port" &
SILENT=$!
world_track_pid $SILENT
wait_for "the silent listener" 10 test -s "$WORLD/silent.port" || bail "no silent listener"
ok "node add silent" "$VCLCTL" node add silent --uri "qemu+libssh2://root@127.0.0.1:$(cat "$WORLD/silent.port")/system?keyfile=$WORLD/silent_key&known_hosts=$WORLD/silent_known_hosts&sshauth=privkey" \
    --master-dir "$WORLD/master" --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
ok "computer $T-held" "$VCLCTL" computer add "$T-held" --node silent \
    --mac "52:54:00:$(printf %02x $((RANDOM % 256))):72:09" --memory 128 --vcpus 1

# The worker's configuration, rewritten between SIGHUPs (same path); log_level
# info unless the arguments set it.
write_cfg() {
    local a lines=() level='log_level: info'
    for a in "$@"; do
        if [[ $a == log_level:* ]]; then level=$a; else lines+=("$a"); fi
    done
    world_config w1 "$level" "${lines[@]}" >/dev/null
}
CFG=$WORLD/w1.yaml
LOG=$WORLD/w1.log
write_cfg 'slots: 2'
world_worker w1
W=$WORLD_WORKER_PID
wait_for "the worker to register" 30 grep -q "registered as id" "$LOG" || bail "worker did not start: $(tail -n 5 "$LOG")"

reloads() { grep -c "SIGHUP: configuration reloaded" "$LOG"; }
at_least() { (($("$@") >= want)); }

# --- 1. 70 reloads while jobs run --------------------------------------------
held_running() { grep -q "reservation=$held .*running node_status" "$LOG"; }
ids=()
for r in $(seq 1 10); do
    for i in 1 2 3 4; do
        ids+=("$("$VCLCTL" enqueue "$T-pc$i" node_status)")
    done
done
is "${#ids[@]}" 40 "40 node_status jobs queued"
for ((k = 1; k <= N_RELOADS; k++)); do
    write_cfg "slots: $((k % 2 + 1))"
    kill -HUP "$W"
    # one reload per signal: wait for it before the next (signals that come
    # while one is pending coalesce)
    want=$k
    wait_for "reload $k" 30 at_least reloads || break
    if ((k == 1)); then
        # started under the first reloaded config (the one the worker started
        # with is kept until exit anyway): the next reload retires it
        held=$("$VCLCTL" enqueue "$T-held" node_status --max-attempts 1)
        ok "the held job starts after reload 1" wait_for "reservation $held to start" 30 held_running
    fi
done
is "$(reloads)" "$N_RELOADS" "$N_RELOADS SIGHUPs, $N_RELOADS reloads logged"
is "$(grep -c "no config file to reload" "$LOG")" 0 "never 'no config file to reload'"
like "$(grep "SIGHUP: configuration reloaded" "$LOG" | tail -1)" "slots $((N_RELOADS % 2 + 1)),.*changed: slots, claim_batch" \
     "the last reload applied its slots (and claim_batch, which follows it)"
ok "the worker is alive after $N_RELOADS reloads" kill -0 "$W"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $held")" running \
   "the held job is still running after $N_RELOADS reloads"
kill "$SILENT"
held_ended() { [[ $(psql_val "SELECT state FROM vcl.reservation WHERE id = $held") == failed ]]; }
ok "the node answers at last (connection closed): the held job ends, failed (one attempt)" \
    wait_for "reservation $held to end" 60 held_ended
like "$(grep "reservation=$held " "$LOG" | grep "reservation failed")" "reservation failed in stage" \
     "its slot recorded the outcome after the reloads (with the config it started with)"
all_done() {
    [[ $(psql_val "SELECT count(*) FROM vcl.reservation WHERE operation = 'node_status' AND state = 'done' AND id <> $held") == 40 ]]
}
wait_for "the 40 node_status jobs to finish" 120 all_done
is "$(psql_val "SELECT state || ' ' || count(*) FROM vcl.reservation WHERE operation = 'node_status' AND id <> $held GROUP BY state")" "done 40" \
   "every job run across the reloads is done"
is "$(psql_val "SELECT count(DISTINCT node_status) || ' ' || min(node_status) FROM vcl.computer WHERE name LIKE '$T-pc%'")" "1 RELOAD" \
   "and wrote node_status (no domain: RELOAD)"

# --- 2. a reloadable option takes effect ---------------------------------------
is "$(grep -c " level=debug " "$LOG")" 0 "log_level info: no debug line so far"
write_cfg 'slots: 2' 'log_level: debug'
want=$((N_RELOADS + 1))
kill -HUP "$W"
wait_for "reload $want" 30 at_least reloads
like "$(grep "SIGHUP: configuration reloaded" "$LOG" | tail -1)" "changed: .*log_level" \
     "the reload names log_level as changed"
debug_lines() { grep -c " level=debug " "$LOG"; }
want=1
ok "debug lines appear after log_level: debug is reloaded" wait_for "a debug line" 30 at_least debug_lines

# --- 3. restart-only options warn and keep their running value ----------------
write_cfg 'slots: 2' 'log_level: debug' "worker_name: $T-renamed"
want=$((N_RELOADS + 2))
kill -HUP "$W"
wait_for "reload $want" 30 at_least reloads
ok "worker_name: warned" grep -qF "worker_name changed in $CFG but takes effect only after a restart" "$LOG"
like "$(grep "SIGHUP: configuration reloaded" "$LOG" | tail -1)" "changed: nothing" \
     "nothing else changed (worker_name is not applied)"
is "$(psql_val "SELECT count(*) FROM vcl.worker WHERE name = '$T-renamed'")" 0 "no worker registered under the new name"
is "$(psql_val "SELECT count(*) FROM vcl.worker WHERE name = 'w1' AND stopped_at IS NULL")" 1 "still registered as w1"
like "$(tail -n 1 "$LOG")" " worker=w1 " "log lines still carry worker=w1"

write_cfg 'slots: 2' 'log_level: debug' 'database: "dbname=no_such_database_72"'
want=$((N_RELOADS + 3))
kill -HUP "$W"
wait_for "reload $want" 30 at_least reloads
ok "database: warned" grep -qF "database changed in $CFG but takes effect only after a restart" "$LOG"
id=$("$VCLCTL" enqueue "$T-pc1" node_status)
done_one() { [[ $(psql_val "SELECT state FROM vcl.reservation WHERE id = $id") == done ]]; }
ok "a job queued after the database change still runs (the running database is kept)" \
    wait_for "reservation $id" 60 done_one
unlike "$(cat "$LOG")" "no_such_database_72" "the new database value is not used (nor logged)"

# --- 4. a broken file keeps the running configuration --------------------------
printf 'slots: 2\nno_such_option: 1\n' >"$CFG"
kill -HUP "$W"
want=1
keeping() { grep -c "SIGHUP: keeping the running configuration" "$LOG"; }
ok "a broken file: the running configuration is kept (and the error says where)" \
    wait_for "the refusal" 30 at_least keeping
like "$(grep "SIGHUP: keeping the running configuration" "$LOG")" "w1.yaml:2:1: .*no_such_option" \
     "the refusal names file:line:col and the option"
ok "the worker is alive" kill -0 "$W"

# --- 5. the version the worker registered, and a clean stop ---------------------
is "$(psql_val "SELECT version FROM vcl.worker WHERE name = 'w1'")" \
   "$("$ROOT/bin/vcl-worker" --version | head -1 | cut -d' ' -f2)" "vcl.worker.version is vcl-worker --version"
kill -TERM "$W"
rc=0
world_worker_wait "$W" 60 || rc=$?
is "$rc" 0 "SIGTERM after $((N_RELOADS + 4)) SIGHUPs: exit 0"

done_testing
