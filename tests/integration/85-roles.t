#!/usr/bin/env bash
# The two database roles of the design, as a DBA would use them:
#   vclw_login (granted vcl_worker) runs a real worker through a real load, a
#   node_status check and a noop: every row ends done, nothing is denied;
#   dba_login (granted vcl_reader) can SELECT every table and view of schema
#   vcl, while every INSERT/UPDATE/DELETE/TRUNCATE on every table, nextval on
#   every sequence and every call of a write function fails with "permission
#   denied"; vclctl's read commands (list, show, status, workers) work as the
#   reader and its write commands are refused.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
T="t${WORLD##*.}"
# as the superuser that runs the migrations / as a login role
su_val() { psql_val "$@"; }
as_val() { local role=$1; shift; PGUSER=$role psql_val "$@"; }

ok "migrate (as the superuser)" "$VCLCTL" migrate
is "$(su_val "SELECT string_agg(rolname || ':' || rolcanlogin, ' ' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('vcl_worker', 'vcl_reader')")" \
   "vcl_reader:false vcl_worker:false" "migrations created vcl_worker and vcl_reader, both NOLOGIN"

# What the README tells a DBA to run.
ok "DBA creates the login roles" psql -XAtq -v ON_ERROR_STOP=1 <<'SQL'
CREATE ROLE vclw_login LOGIN;      -- add PASSWORD '...' (or use peer/cert auth)
GRANT vcl_worker TO vclw_login;
CREATE ROLE dba_login LOGIN;
GRANT vcl_reader TO dba_login;
SQL

# --- inventory (as the superuser, with vclctl) ---------------------------------
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 32M
ok "node add" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
ok "image add" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
ok "computer add" "$VCLCTL" computer add "$T-pc1" --node node1 --mac "52:54:00:$(printf %02x $((RANDOM % 256))):85:01" --memory 128 --vcpus 1
ok "computer add (noop target)" "$VCLCTL" computer add "$T-pc2" --node node1 --mac "52:54:00:$(printf %02x $((RANDOM % 256))):85:02" --memory 128 --vcpus 1
world_track_domain "$T-pc1:$T-blank-v1"

# --- 1. the worker as vclw_login ------------------------------------------------
ids=()
if [ "$VCL_TEST_LIBVIRT" = real ]; then
    ids+=("$("$VCLCTL" load "$T-pc1" "$T-blank:1")")
else
    skip "no libvirt daemon can run here: no load (noop and node_status only)"
fi
ids+=("$("$VCLCTL" enqueue "$T-pc2" noop)")
cfg=$(world_config w1 "database: \"user=vclw_login application_name=roles-test\"")
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1.log"
is "$?" 0 "worker as vclw_login drains the queue and exits 0"
for id in "${ids[@]}"; do
    is "$(su_val "SELECT operation || ':' || state || ':' || coalesce(last_error, '') FROM vcl.reservation WHERE id = $id")" \
       "$(su_val "SELECT operation FROM vcl.reservation WHERE id = $id"):done:" "reservation $id ends done as vclw_login"
done
if [ "$VCL_TEST_LIBVIRT" = real ]; then
    is "$(su_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc1'")" READY "the load wrote READY back as vclw_login"
    # node_status on its own: a read of libvirt and a write-back, as the worker role
    id=$("$VCLCTL" enqueue "$T-pc1" node_status)
    "$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-b.log"
    is "$(su_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "node_status reservation ends done as vclw_login"
    cat "$WORLD/w1-b.log" >>"$WORLD/w1.log"
fi
like "$(su_val "SELECT count(*) FROM vcl.worker WHERE name = 'w1' AND stopped_at IS NOT NULL")" '^[1-9]' \
     "the worker registered itself in vcl.worker and recorded its clean stop"
is "$(grep -ci 'permission denied\|must be owner' "$WORLD/w1.log")" 0 "no 'permission denied' in the worker's log" ||
    diag "$(grep -i 'permission denied\|must be owner' "$WORLD/w1.log" | head -5)"
# the history pass the worker runs once a minute (not in --drain runs)
like "$(as_val vclw_login "SELECT vcl.prune_history('100 years', 10)" 2>&1)" '^[0-9]+$' \
     "vclw_login may run the history pass (vcl.prune_history)"
# The conninfo user is the one that works: the same worker as the reader
# registers nothing and leaves its reservation pending.
id=$("$VCLCTL" enqueue "$T-pc2" noop)
cfg_r=$(world_config r1 "database: \"user=dba_login\"")
timeout 20 "$WORKER" --config "$cfg_r" --drain 2>"$WORLD/r1.log"
isnt "$?" 0 "the same worker as dba_login fails"
like "$(cat "$WORLD/r1.log")" "permission denied" "...with 'permission denied' in its log"
is "$(su_val "SELECT state || ':' || attempts FROM vcl.reservation WHERE id = $id")" "pending:0" "...and its reservation stays pending, untouched"
"$WORKER" --config "$cfg" --drain 2>>"$WORLD/w1.log"
is "$(su_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "vclw_login then runs it"
# what a worker must never do
like "$(as_val vclw_login "DELETE FROM vcl.node" 2>&1)" "permission denied" "vclw_login cannot delete nodes"
like "$(as_val vclw_login "INSERT INTO vcl.image (name) VALUES ('x')" 2>&1)" "permission denied" "vclw_login cannot add images"
like "$(as_val vclw_login "TRUNCATE vcl.reservation" 2>&1)" "permission denied" "vclw_login cannot truncate the queue"

# --- 2. the reader ----------------------------------------------------------------
relations=$(su_val "SELECT c.relname || ':' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'vcl' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1")
n_tables=0
n_views=0
bad_select=""
bad_write=""
for rel in $relations; do
    name=${rel%:*}
    kind=${rel#*:}
    want=$(su_val "SELECT count(*) FROM vcl.$name")
    got=$(as_val dba_login "SELECT count(*) FROM vcl.$name" 2>&1)
    [ "$got" = "$want" ] || bad_select+=" $name($got)"
    case $kind in v|m) n_views=$((n_views + 1)); continue ;; esac
    n_tables=$((n_tables + 1))
    # every column: a column-level UPDATE grant would show up here
    stmts=("INSERT INTO vcl.$name DEFAULT VALUES" "DELETE FROM vcl.$name WHERE false"
           "TRUNCATE vcl.$name" "SELECT 1 FROM vcl.$name FOR UPDATE")
    for col in $(su_val "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = 'vcl.$name'::regclass
                          AND attnum > 0 AND NOT attisdropped AND attidentity = '' AND attgenerated = ''"); do
        stmts+=("UPDATE vcl.$name SET $col = $col WHERE false")
    done
    for stmt in "${stmts[@]}"; do
        out=$(as_val dba_login "$stmt" 2>&1)
        [[ $out == *"permission denied"* ]] || bad_write+=" [$stmt: ${out:-no error}]"
    done
done
is "$bad_select" "" "dba_login can SELECT all $n_tables tables and $n_views views of schema vcl (same counts)"
is "$bad_write" "" "INSERT, UPDATE (each column), DELETE, TRUNCATE, FOR UPDATE on all $n_tables tables: permission denied for dba_login"
((n_tables >= 8 && n_views >= 5)) || fail "found only $n_tables tables and $n_views views in vcl"

bad_seq=""
for seq in $(su_val "SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'vcl' AND c.relkind = 'S'"); do
    out=$(as_val dba_login "SELECT nextval('$seq')" 2>&1)
    [[ $out == *"permission denied"* ]] || bad_seq+=" [$seq: $out]"
done
is "$bad_seq" "" "nextval on every sequence of vcl: permission denied for dba_login"

# Every function of vcl that is not a trigger function and not a pure check
# writes something: calling it must be refused outright (EXECUTE), whatever
# the arguments. A new write function left executable by PUBLIC fails this.
# 008: estimates read only; guard.sql: writer_is_worker, the WHEN of the
# reservation guard, which runs as whoever writes a reservation
READ_ONLY_FUNCTIONS="repository_paths_valid stage_estimate reservation_estimates writer_is_worker"
calls=$(su_val "SELECT p.proname || '|' || format('SELECT %s(%s)', p.oid::regproc,
                        coalesce((SELECT string_agg('NULL::' || format_type(t, NULL), ', ')
                                    FROM unnest(p.proargtypes) t), ''))
                  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'vcl' AND p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype
                 ORDER BY 1")
n_fn=0
bad_fn=""
while IFS='|' read -r fname call; do
    [[ " $READ_ONLY_FUNCTIONS " == *" $fname "* ]] && continue
    n_fn=$((n_fn + 1))
    out=$(as_val dba_login "$call" 2>&1)
    [[ $out == *"permission denied for function $fname"* ]] || bad_fn+=" [$call: ${out:-no error}]"
done <<<"$calls"
is "$bad_fn" "" "calling any of the $n_fn write functions (vcl.claim, ...) as dba_login: permission denied"
((n_fn >= 11)) || fail "found only $n_fn write functions in vcl"
like "$(as_val dba_login "SELECT source FROM vcl.stage_estimate('load', 1, 'define')" 2>&1)" "^(node|operation|default)$" \
     "the read-only estimates (sql/functions/progress.sql) run as dba_login"
# the real thing, with real arguments, is refused too
rid=${ids[-1]}
like "$(as_val dba_login "SELECT * FROM vcl.claim(1, 10, 30)" 2>&1)" "permission denied for function claim" "vcl.claim refused for dba_login"
like "$(as_val dba_login "SELECT vcl.cancel($rid)" 2>&1)" "permission denied for function cancel" "vcl.cancel refused for dba_login"
like "$(as_val dba_login "UPDATE vcl.reservation SET state = 'pending' WHERE id = $rid" 2>&1)" "permission denied" \
     "the DBA reset (UPDATE ... SET state = 'pending') is refused for the reader"

# --- 3. vclctl as the reader -----------------------------------------------------------
export VCL_DATABASE="user=dba_login"
out=$("$VCLCTL" list 2>&1)
like "$out" "noop" "vclctl list works as dba_login" || diag "$out"
out=$("$VCLCTL" --json list 2>&1)
like "$out" "\"state\" ?: ?\"done\"" "vclctl --json list works as dba_login"
out=$("$VCLCTL" show "$rid" 2>&1)
like "$out" "done" "vclctl show works as dba_login" || diag "$out"
if [ "$VCL_TEST_LIBVIRT" = real ]; then
    out=$("$VCLCTL" show "${ids[0]}" 2>&1)
    like "$out" "node_status" "vclctl show lists the load's stage log as dba_login"
fi
out=$("$VCLCTL" status "$T-pc2" 2>&1)
like "$out" "^$T-pc2: (READY|POST_LOAD|RELOAD) " "vclctl status works as dba_login" || diag "$out"
out=$("$VCLCTL" workers --all 2>&1)
like "$out" "w1" "vclctl workers works as dba_login" || diag "$out"
out=$("$VCLCTL" cancel "$rid" 2>&1)
like "$out" "permission denied" "vclctl cancel as dba_login: refused, and says why" || diag "$out"
out=$("$VCLCTL" computer add "$T-pc9" --node node1 --mac 52:54:00:00:85:09 2>&1)
like "$out" "permission denied" "vclctl computer add as dba_login: refused" || diag "$out"
unset VCL_DATABASE

done_testing
