#!/usr/bin/env bash
# The worker behind PgBouncer (Debian package pgbouncer).
#   session mode      a worker whose only database address is PgBouncer runs
#                     a full load on real libvirt (domain running, READY), and
#                     is woken by NOTIFY through PgBouncer: with poll_seconds
#                     300 and nothing scheduled, only the wake-up can make it
#                     run a reservation queued while it idles;
#   transaction mode  the worker detects at start that two of its sessions
#                     share one server backend, refuses with an error that
#                     names pool_mode, exits 1 and registers nothing.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 4
command -v pgbouncer >/dev/null || skip_all "pgbouncer is not installed (tools/install-deps)"
PGB_USER=$( ((EUID == 0)) && echo "${PG_THROWAWAY_USER:-postgres}" || id -un)

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 30000))
        ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
    done
    return 1
}

# pgbouncer_start NAME MODE: PgBouncer in $WORLD/NAME in front of the world's
# PostgreSQL (its unix socket), pool_mode MODE; sets PGB_PORT
pgbouncer_start() {
    local d=$WORLD/$1 mode=$2
    mkdir -p "$d"
    PGB_PORT=$(free_port) || bail "no free port for PgBouncer"
    printf '"%s" ""\n' "$(id -un)" >"$d/userlist.txt"
    cat >"$d/pgbouncer.ini" <<EOF
[databases]
vcl = host=$PGHOST port=$PGPORT dbname=vcl
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $d/userlist.txt
pool_mode = $mode
max_client_conn = 200
default_pool_size = 20
logfile = $d/pgbouncer.log
pidfile = $d/pgbouncer.pid
EOF
    ((EUID == 0)) && chown -R "$PGB_USER:" "$d"
    if ((EUID == 0)); then
        runuser -u "$PGB_USER" -- pgbouncer -d "$d/pgbouncer.ini" >>"$d/start.log" 2>&1
    else
        pgbouncer -d "$d/pgbouncer.ini" >>"$d/start.log" 2>&1
    fi || bail "pgbouncer ($mode) did not start: $(tail -n 3 "$d/start.log" "$d/pgbouncer.log" 2>/dev/null)"
    world_on_exit pgbouncer_stop "$d"
    pgb_up() { psql -XAtq -h 127.0.0.1 -p "$PGB_PORT" -d vcl -c 'SELECT 1' >/dev/null 2>&1; }
    wait_for "PgBouncer ($mode) on port $PGB_PORT" 20 pgb_up || bail "PgBouncer does not answer"
}

pgbouncer_stop() {
    local pid
    pid=$(cat "$1/pgbouncer.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null
    return 0
}

# --- session mode --------------------------------------------------------------
pgbouncer_start pgb-session session
diag "PgBouncer (session) on 127.0.0.1:$PGB_PORT"
new_computer
c=$NEWC
set_state available "$c"
world_config wsess "slots: 2" "poll_seconds: 300" \
    "database: \"host=127.0.0.1 port=$PGB_PORT dbname=vcl user=$(id -un)\"" >/dev/null
world_worker wsess
pid=$WORLD_WORKER_PID
registered() { [ "$(psql_val "SELECT count(*) FROM vcl.worker WHERE name = 'wsess' AND stopped_at IS NULL")" = 1 ]; }
ok "session: the worker registered through PgBouncer" wait_for "worker registered" 30 registered
is "$(psql_val "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wsess'
                 AND client_addr IS NULL AND backend_type = 'client backend'")" \
   "$(psql_val "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wsess'")" \
   "session: every session of the worker comes from PgBouncer (the unix socket), none direct"

lid=$(enqueue "$c" load)
ended() { not_active "$@"; }
ok "session: the load ended" wait_for "load $lid" 180 ended "$lid"
is "$(res_state "$lid")" done "session: load done" ||
    diag "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $lid")"
is "$(timeout 30 virsh -q -c "$URI" domstate "$(dom_of "$c")" | head -n 1)" running "session: the domain runs"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$c'")" READY "session: computer READY"

# wake-up: the worker idles (nothing pending, nothing scheduled, poll 300 s)
idle() { grep -q 'reservation done' "$WORLD/wsess.log" && [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state IN ('pending','running')")" = 0 ]; }
wait_for "worker idle" 30 idle || true
sleep 2
t0=$SECONDS
nid=$(enqueue "$c" node_status)
ok "session: a reservation queued while the worker idles runs at once (NOTIFY through PgBouncer)" \
    wait_for "node_status $nid" 60 ended "$nid"
is "$(res_state "$nid")" done "session: node_status done"
ok "session: woken well before the 300 s poll ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -lt 60
kill -TERM "$pid"
rc=0
world_worker_wait "$pid" 60 || rc=$?
is "$rc" 0 "session: the worker exits 0 on SIGTERM"

# --- transaction mode ------------------------------------------------------------
pgbouncer_start pgb-tx transaction
diag "PgBouncer (transaction) on 127.0.0.1:$PGB_PORT"
world_config wtx "slots: 2" \
    "database: \"host=127.0.0.1 port=$PGB_PORT dbname=vcl user=$(id -un)\"" >/dev/null
world_worker wtx
rc=0
world_worker_wait "$WORLD_WORKER_PID" 60 || rc=$?
is "$rc" 1 "transaction: the worker refuses to run (exit 1)"
like "$(cat "$WORLD/wtx.log")" "pool_mode = session" "transaction: the error names PgBouncer's pool_mode"
diag "$(grep -m1 'pooled per transaction' "$WORLD/wtx.log")"
is "$(psql_val "SELECT count(*) FROM vcl.worker WHERE name = 'wtx'")" 0 "transaction: no worker row registered"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state IN ('pending','running')")" 0 \
   "transaction: nothing was claimed"
done_testing
