#!/usr/bin/env bash
# tests/integration/00-world.t: the test world itself works: a throwaway
# PostgreSQL (psql, DDL), a libvirt URI that virsh can use, node dirs, a
# worker config; and after stopping, no postgres process is left.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/world.sh
. "$(dirname "$0")/../lib/world.sh"

world_init
world_pg
world_libvirt
world_dirs

is "$(psql_val 'select 1')" 1 "psql works (select 1)"
is "$PGDATABASE" vcl "PGDATABASE is vcl"
is "$(psql_val 'select current_user')" "$(id -un)" "connected as the invoking OS user"
ok "create a table" psql_val 'create table t (id bigserial primary key, v text not null)'
is "$(psql_val "insert into t (v) values ('a'), ('b') returning id" | tr '\n' ' ')" "1 2 " "insert returns ids"
is "$(psql_val 'select count(*) from t')" 2 "rows are there"
is "$(psql_val "select current_setting('fsync') || ' ' || current_setting('synchronous_commit')")" "on on" \
    "default durability (fsync, synchronous_commit on)"
fails "psql_val stops on error" psql_val 'select * from no_such_table'

like "$VCL_TEST_URI" '^(qemu:///(system|session)|test:///default)$' "VCL_TEST_URI is set ($VCL_TEST_URI)"
like "$VCL_TEST_LIBVIRT" '^(real|test)$' "VCL_TEST_LIBVIRT is real or test ($VCL_TEST_LIBVIRT)"
ok "virsh list --all works on $VCL_TEST_URI" virsh -q -c "$VCL_TEST_URI" list --all

for d in master cow xml repo; do
    is "$(stat -c %a "$WORLD/$d")" 755 "$d dir is 755"
done

cfg=$(world_config w00 "max_attempts: 3" "slots: 5")
is "$cfg" "$WORLD/w00.yaml" "world_config prints the path"
ok "config has worker_name" grep -qx 'worker_name: "w00"' "$cfg"
ok "config has the extra line" grep -qx 'max_attempts: 3' "$cfg"
is "$(grep -c '^slots:' "$cfg")" 1 "an extra key replaces the default"
ok "config has the overridden value" grep -qx 'slots: 5' "$cfg"
ok "config points at the drivers dir" grep -qF "drivers_dir: \"$ROOT/lib/vcl-worker/drivers\"" "$cfg"

ok "wait_for: a condition that becomes true" wait_for "a file" 5 test -e "$WORLD/pg/port"
start=$SECONDS
fails "wait_for: times out" wait_for "never" 0.5 false
ok "wait_for timed out quickly" test $((SECONDS - start)) -le 3

sleep 300 &
sleeper=$!
world_track_pid "$sleeper"

pm_pid=$(head -n 1 "$WORLD/pg/data/postmaster.pid")
ok "postmaster runs" kill -0 "$pm_pid"
world_pg_stop
fails "postmaster is gone after stop" kill -0 "$pm_pid"
fails "no postgres process uses $WORLD/pg" pgrep -f -- "$WORLD/pg/data"
ok "stop again is a no-op" world_pg_stop

done_testing
