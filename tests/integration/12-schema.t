#!/usr/bin/env bash
# The schema's layout and its runner (sql/, worker/queue/migrate.c, vclctl migrate),
# against a real PostgreSQL, comparing `pg_dump --schema-only`:
#   1. a fresh migrate records every file with its sha256 and prints what it
#      applied; migrating again changes nothing;
#   2. every upgrade path (for each k: the numbered files 001..k plus the live
#      files, then all; and one database taken one step at a time) ends in the
#      schema of a fresh migrate;
#   3. refusals, each leaving the database exactly as it was: an applied
#      migration that changed (the file and both checksums named), renamed or
#      missing; a new one numbered below an applied one; two of one version; a
#      bad name; an ORDER that misses a file; a live file that fails; a file
#      that runs COMMIT; a database from before checksums. One transaction:
#      a migrate killed with SIGKILL in the middle applied nothing, and the
#      next run applies it all;
#   4. the baseline followed by later numbers with a gap (001, then 010, 011);
#   5. migrate again and again while two workers drain 3000 reservations;
#   6. SQUASH PROOF: the baseline and live files as first committed make
#      exactly the schema the nine migrations 001-009 (commit ca28f34) made.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg

VCLCTL="$ROOT/bin/vclctl"
SQL="$ROOT/sql"
export VCL_SQL_DIR=$SQL   # "migrate" without --sql-dir: this tree's
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

newdb() {
    psql_val "DROP DATABASE IF EXISTS $1" -d postgres >/dev/null
    psql_val "CREATE DATABASE $1" -d postgres >/dev/null
}
# migrate DB [vclctl migrate args...]
migrate() {
    local db=$1
    shift
    PGDATABASE=$db "$VCLCTL" migrate "$@"
}
dbval() {
    local db=$1
    shift
    PGDATABASE=$db psql_val "$@"
}

# pg_dump --schema-only [args], comparable between databases: without
# pg_dump's \restrict lines (a random key per dump), and with each object's
# GRANT lines sorted. PostgreSQL lists an object's privileges in the order
# they were granted, which is history (a view made again, a table made after
# ALTER DEFAULT PRIVILEGES): what is granted is the same set either way.
dump() {
    pg_dump --schema-only "$@" | grep -v '^\\\(un\)\{0,1\}restrict ' | awk '
        function flush(  i, j, t) {
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && acl[j - 1] > acl[j]; j--) {
                    t = acl[j]; acl[j] = acl[j - 1]; acl[j - 1] = t
                }
            for (i = 1; i <= n; i++)
                print acl[i]
            n = 0
        }
        /^(GRANT|REVOKE) / { acl[++n] = $0; next }
        { flush(); print }
        END { flush() }'
}
# same_schema NAME DB1 DB2 [pg_dump args]: the two databases dump the same
# schema (the first lines of the difference shown if not).
same_schema() {
    local name=$1 a=$2 b=$3
    shift 3
    dump -d "$a" "$@" >"$WORLD/dump-$a.sql"
    dump -d "$b" "$@" >"$WORLD/dump-$b.sql"
    if cmp -s "$WORLD/dump-$a.sql" "$WORLD/dump-$b.sql"; then
        pass "$name"
    else
        fail "$name"
        diag "$(diff -u "$WORLD/dump-$a.sql" "$WORLD/dump-$b.sql" | head -n 60)"
    fi
}
# The numbered migrations of a directory, in order.
numbered() { (cd "$1" && ls | grep -E '^[0-9]{3}_.*\.sql$' | sort); }
git_() { git -c safe.directory="*" -C "$ROOT" "$@"; }
# The commit whose live files a database at version K was migrated with: the
# newest commit whose numbered migrations are exactly today's first K (by
# name) and that has sql/functions/ORDER. Empty when there is none (no git
# history here, or no commit had exactly those, as when one commit added two
# migrations): today's live files stand in then.
live_commit() {
    local k=$1 want c
    want=$(numbered "$SQL" | head -n "$k")
    git_ rev-parse --git-dir >/dev/null 2>&1 || return 0
    for c in $(git_ log --full-history --format=%H -- sql/); do
        [[ $(git_ ls-tree --name-only "$c" sql/ | sed 's|^sql/||' | grep -E '^[0-9]{3}_.*\.sql$') == "$want" ]] &&
            git_ cat-file -e "$c:sql/functions/ORDER" 2>/dev/null && { echo "$c"; return 0; }
    done
}
# A directory holding today's first K numbered migrations and the live files
# of version K: those of live_commit K, today's for the last K (an upgrade
# from K runs after a migrate that used the live files of its day, and
# today's may need a column a later migration adds).
sql_upto() {
    local k=$1 dir=$WORLD/sql-upto-$1 c="" f
    rm -rf "$dir"
    mkdir -p "$dir/functions"
    numbered "$SQL" | head -n "$k" | while read -r f; do cp "$SQL/$f" "$dir/"; done
    ((k < ${#NUM[@]})) && c=$(live_commit "$k")
    if [[ -n $c ]]; then
        for f in $(git_ ls-tree --name-only "$c" sql/functions/); do
            git_ show "$c:$f" >"$dir/functions/${f#sql/functions/}"
        done
        diag "version $k: the live files of ${c:0:12}"
    else
        cp "$SQL"/functions/* "$dir/functions/"
    fi
    printf '%s\n' "$dir"
}
# The object and version counts that say "nothing changed".
state() {
    dbval "$1" "SELECT (SELECT string_agg(version || ':' || checksum, ' ' ORDER BY version) FROM vcl.schema_migrations)
                       || ' / ' || (SELECT count(*) FROM pg_class WHERE relnamespace = 'vcl'::regnamespace)
                       || ' / ' || coalesce(obj_description('vcl.next_due'::regproc), '')"
}

NUM=($(numbered "$SQL"))
LAST=$((10#${NUM[-1]%%_*}))
((${#NUM[@]} >= 1)) && [[ ${NUM[0]} == 001_baseline.sql ]] || bail "sql/ does not start with 001_baseline.sql"

# --- 1. fresh, and again -----------------------------------------------------------
newdb fresh
out=$(migrate fresh 2>&1)
is "$?" 0 "fresh migrate" || diag "$out"
for f in "${NUM[@]}"; do
    like "$out" "(^|
)applied +$f
" "it prints the migration it applied: $f"
done
live=($(sed 's/#.*//' "$SQL/functions/ORDER" | grep -o '[a-z0-9_]*\.sql'))
((${#live[@]} >= 5)) || fail "functions/ORDER lists only ${#live[@]} files (parser broken?)"
miss=""
for f in "${live[@]}"; do
    [[ $out == *"re-applied  functions/$f"* ]] || miss+=" $f"
done
is "$miss" "" "it prints every live file of ORDER it applied"
want=$(for f in "${NUM[@]}"; do printf '%d %s %s\n' "$((10#${f%%_*}))" "$f" "$(sha256sum <"$SQL/$f" | cut -d' ' -f1)"; done)
is "$(dbval fresh "SELECT version || ' ' || name || ' ' || checksum FROM vcl.schema_migrations ORDER BY version")" "$want" \
   "schema_migrations: every numbered file with the sha256 of its bytes (= sha256sum)"
want=$(cd "$SQL" && for f in "${live[@]}"; do printf 'functions/%s %s\n' "$f" "$(sha256sum <"functions/$f" | cut -d' ' -f1)"; done | sort)
is "$(dbval fresh "SELECT name || ' ' || checksum FROM vcl.schema_live_files ORDER BY name")" "$want" \
   "schema_live_files: every live file with its sha256"
like "$(dump -d fresh)" "CREATE FUNCTION vcl.claim\(" "the dump holds the schema (vcl.claim)"
newdb fresh_copy
ok "a second fresh database" migrate fresh_copy

out=$(migrate fresh 2>&1)
like "$out" "applied 0 migration\(s\) and re-applied ${#live[@]} live file\(s\), 0 changed; schema at version $LAST" \
     "migrate again: no migration, every live file re-applied, none changed"
same_schema "migrate again changes nothing (same dump as a database migrated once)" fresh fresh_copy
ok "change a column's comment by hand" dbval fresh_copy "COMMENT ON COLUMN vcl.node.network IS 'changed'"
dump -d fresh >"$WORLD/a.sql"
dump -d fresh_copy >"$WORLD/b.sql"
fails "the comparison is not blind: one changed comment makes the dumps differ" cmp -s "$WORLD/a.sql" "$WORLD/b.sql"
ok "change a function's comment and a view by hand" dbval fresh_copy \
    "COMMENT ON FUNCTION vcl.next_due() IS 'changed by hand';
     DROP VIEW vcl.workers;
     CREATE VIEW vcl.workers AS SELECT 1 AS id"
ok "the next migrate" migrate fresh_copy
is "$(dbval fresh_copy "SELECT obj_description('vcl.next_due'::regproc) <> 'changed by hand'
                              AND (SELECT count(*) FROM pg_attribute WHERE attrelid = 'vcl.workers'::regclass AND attnum > 0) > 1")" t \
   "puts the live files' objects back (a function's comment, a view changed by hand)"
is "$(dbval fresh_copy "SELECT col_description('vcl.node'::regclass, (SELECT attnum FROM pg_attribute WHERE attrelid = 'vcl.node'::regclass AND attname = 'network'))")" \
   changed "but leaves a table's comment alone (tables are the migrations' business)"
dbval fresh_copy "COMMENT ON COLUMN vcl.node.network IS \$\$$(dbval fresh "SELECT col_description('vcl.node'::regclass, (SELECT attnum FROM pg_attribute WHERE attrelid = 'vcl.node'::regclass AND attname = 'network'))")\$\$" >/dev/null
out=$(PGDATABASE=fresh "$VCLCTL" --json migrate 2>&1)
like "$out" "\"migrations\" : \[\]" "--json: no migration applied"
like "$out" "\"file\" : \"functions/${live[0]}\", \"changed\" : false" "--json: each live file, unchanged"

# --- 2. every upgrade path --------------------------------------------------------------
# A version no commit ever stood at (migrations that landed together, as
# 004-008 did in one merge): no database can be there, and there are no live
# files of its day to have migrated it with (today's may need a column a
# later migration adds). Without git history every version counts.
version_seen() {
    (($1 == ${#NUM[@]})) && return 0
    git_ rev-parse --git-dir >/dev/null 2>&1 || return 0
    [[ -n $(live_commit "$1") ]]
}
for ((k = 1; k <= ${#NUM[@]}; k++)); do
    if ! version_seen "$k"; then
        skip "no commit had exactly migrations 1..$k: no database was ever at version $k" 3
        continue
    fi
    dir=$(sql_upto "$k")
    newdb "up$k"
    ok "from version $k: migrate 001..$k (+ live files)" migrate "up$k" --sql-dir "$dir"
    ok "from version $k: then migrate all" migrate "up$k"
    same_schema "from version $k: same schema as a fresh migrate" fresh_copy "up$k"
done
newdb steps
for ((k = 1; k <= ${#NUM[@]}; k++)); do
    if ! version_seen "$k"; then
        skip "no commit had exactly migrations 1..$k: the steps go past version $k"
        continue
    fi
    ok "one database, step $k of ${#NUM[@]}" migrate steps --sql-dir "$(sql_upto "$k")"
done
same_schema "one database upgraded step by step: same schema as a fresh migrate" fresh_copy steps

# --- 3. refusals ------------------------------------------------------------------------
# X: a copy of sql/ to edit; database x migrated with it. New migrations get
# numbers after the real ones, with a gap (for "numbered below").
X=$WORLD/x
cp -r "$SQL" "$X"
newdb x
ok "x: migrate a copy of sql/" migrate x --sql-dir "$X"
N1=$(printf '%03d' $((LAST + 1)))
N2=$(printf '%03d' $((LAST + 2)))
N3=$(printf '%03d' $((LAST + 3)))
first=${NUM[0]}
sum_first=$(sha256sum <"$X/$first" | cut -d' ' -f1)
before=$(state x)

# an edited applied migration, next to a new migration and an edited live file
cp "$X/$first" "$WORLD/first.orig"
printf '\n-- an edit after release\n' >>"$X/$first"
sum_edited=$(sha256sum <"$X/$first" | cut -d' ' -f1)
printf 'CREATE TABLE vcl.t_extra (a int);\n' >"$X/${N2}_t_extra.sql"
printf "\nCOMMENT ON FUNCTION vcl.next_due() IS 'edited';\n" >>"$X/functions/queue.sql"
out=$(migrate x --sql-dir "$X" 2>&1)
is "$?" 1 "an edited applied migration: migrate fails (exit 1)"
like "$out" "$X/$first changed after it was applied \(sha256 applied $sum_first, file now $sum_edited\)" \
     "the error names the file, the stored and the current checksum" || diag "$out"
like "$out" "nothing applied" "and says nothing was applied"
is "$(state x)" "$before" "nothing applied: not the new migration, not the edited live file"
is "$(dbval x "SELECT to_regclass('vcl.t_extra') IS NULL")" t "the new migration's table does not exist"

cp "$WORLD/first.orig" "$X/$first"
out=$(migrate x --sql-dir "$X" 2>&1)
is "$?" 0 "the edit undone: migrate applies the rest" || diag "$out"
like "$out" "applied +${N2}_t_extra.sql" "it prints the new migration"
like "$out" "re-applied  functions/queue.sql \(changed\)" "it marks the edited live file changed"
is "$(dbval x "SELECT to_regclass('vcl.t_extra') IS NOT NULL AND obj_description('vcl.next_due'::regproc) = 'edited'")" t \
   "the new migration and the edited live file are applied"
is "$(dbval x "SELECT max(version) FROM vcl.schema_migrations")" "$((10#$N2))" "schema at version $N2 (a gap after $LAST is fine)"
before=$(state x)

# refused: each leaves the database as it was
refused() { # NAME PATTERN: migrate x fails, prints PATTERN, changes nothing
    local out rc=0
    out=$(migrate x --sql-dir "$X" 2>&1) || rc=$?
    is "$rc" 1 "$1: refused (exit 1)"
    like "$out" "$2" "$1: the error says why" || diag "$out"
    is "$(state x)" "$before" "$1: nothing applied"
}
mv "$X/${N2}_t_extra.sql" "$X/${N2}_t_renamed.sql"
refused "an applied migration renamed" "version $((10#$N2)) was applied as ${N2}_t_extra.sql, but $X calls it ${N2}_t_renamed.sql"
mv "$X/${N2}_t_renamed.sql" "$WORLD/"
refused "an applied migration missing" "version $((10#$N2)) \(${N2}_t_extra.sql\) is applied to this database, but $X has no migration $N2"
mv "$WORLD/${N2}_t_renamed.sql" "$X/${N2}_t_extra.sql"
printf 'CREATE TABLE vcl.t_gap (a int);\n' >"$X/${N1}_t_gap.sql"
refused "a new migration numbered below an applied one" "$X/${N1}_t_gap.sql is numbered below ${N2}_t_extra.sql, which is applied already"
mv "$X/${N1}_t_gap.sql" "$X/${N2}_t_dup.sql"
refused "two migrations of one version" "${N2}_t_dup.sql and ${N2}_t_extra.sql have the same version $((10#$N2))"
mv "$X/${N2}_t_dup.sql" "$X/12_short.sql"
refused "a file name that is not NNN_name.sql" "$X/12_short.sql: not a migration name"
rm "$X/12_short.sql"
printf 'SELECT 1;\n' >"$X/functions/t_unlisted.sql"
refused "a live file missing from ORDER" "$X/functions/t_unlisted.sql is not listed in $X/functions/ORDER"
rm "$X/functions/t_unlisted.sql"
cp "$X/functions/ORDER" "$WORLD/ORDER.orig"
printf 't_missing.sql\n' >>"$X/functions/ORDER"
refused "ORDER lists a file that is not there" "functions/t_missing.sql: cannot open"
{ cat "$WORLD/ORDER.orig"; printf '  queue.sql   # again\n'; } >"$X/functions/ORDER"
refused "ORDER lists a file twice" "$X/functions/ORDER lists queue.sql twice"
# a live file that fails, after a new numbered migration in the same run
printf 'CREATE TABLE vcl.t_more (a int);\n' >"$X/${N3}_t_more.sql"
printf -- '-- fails on its third line\n\nSELECT t_no_such_column FROM vcl.node;\n' >"$X/functions/t_fail.sql"
printf 't_fail.sql\n' >"$X/functions/ORDER.tmp"
{ cat "$WORLD/ORDER.orig"; cat "$X/functions/ORDER.tmp"; } >"$X/functions/ORDER"
rm "$X/functions/ORDER.tmp"
refused "a live file that fails rolls back the migration applied before it" "$X/functions/t_fail.sql:3: column \"t_no_such_column\" does not exist"
is "$(dbval x "SELECT to_regclass('vcl.t_more') IS NULL")" t "that migration's table does not exist"
cp "$WORLD/ORDER.orig" "$X/functions/ORDER"
rm "$X/functions/t_fail.sql"
# COMMIT in a file (a psql script pasted in): caught at that COMMIT
printf 'BEGIN;\nCREATE TABLE vcl.t_more (a int);\nCOMMIT;\nCREATE TABLE vcl.t_after (a int);\n' >"$X/${N3}_t_more.sql"
refused "a migration that runs COMMIT" "${N3}_t_more.sql: a migration file ran COMMIT: a migrate is one transaction, and it is rolled back"
is "$(dbval x "SELECT to_regclass('vcl.t_more') IS NULL AND to_regclass('vcl.t_after') IS NULL")" t \
   "neither its table nor the one after its COMMIT exists"

# SIGKILL in the middle: a live file that sleeps holds the run open after the
# new migration ran; vclctl is killed there; the backend sees the client gone
# and rolls back. The next run applies everything.
printf 'CREATE TABLE vcl.t_more (a int);\n' >"$X/${N3}_t_more.sql"
printf 'SELECT pg_sleep(2);\n' >"$X/functions/t_slow.sql"
{ cat "$WORLD/ORDER.orig"; printf 't_slow.sql\n'; } >"$X/functions/ORDER"
PGDATABASE=x "$VCLCTL" migrate --sql-dir "$X" >/dev/null 2>&1 &
kpid=$!
sleeping() { [[ $(dbval x "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(2)%'") == "$1" ]]; }
ok "the run reached the sleeping live file" wait_for "pg_sleep in the migrate" 60 sleeping 1
kill -KILL "$kpid"
wait "$kpid" 2>/dev/null
ok "its backend ends" wait_for "the killed migrate's backend to end" 60 sleeping 0
is "$(state x)" "$before" "migrate killed with SIGKILL mid-run: nothing applied"
is "$(dbval x "SELECT to_regclass('vcl.t_more') IS NULL")" t "not even the migration that ran before the kill"
out=$(migrate x --sql-dir "$X" 2>&1)
is "$?" 0 "the next run succeeds" || diag "$out"
like "$out" "applied +${N3}_t_more.sql" "and applies that migration"
is "$(dbval x "SELECT to_regclass('vcl.t_more') IS NOT NULL")" t "its table exists"

# a database migrated before checksums (001_schema.sql .. 009_role_grants.sql)
newdb prechecksum
dbval prechecksum "CREATE SCHEMA vcl;
    CREATE TABLE vcl.schema_migrations (version int PRIMARY KEY, name text NOT NULL,
                                        applied_at timestamptz NOT NULL DEFAULT now());
    INSERT INTO vcl.schema_migrations (version, name) VALUES (1, '001_schema.sql')" >/dev/null
out=$(migrate prechecksum 2>&1)
is "$?" 1 "a database from before checksums: refused"
like "$out" "vcl.schema_migrations has no checksum column.*DROP SCHEMA vcl CASCADE, then migrate again" \
     "the error says what it is and what to do" || diag "$out"
is "$(dbval prechecksum "SELECT count(*) FROM pg_class WHERE relnamespace = 'vcl'::regnamespace")" 2 \
   "and nothing was made there"

# --- 4. the baseline, then later numbers with a gap --------------------------------------
G1=$(printf '%03d' $((LAST + 9)))
G2=$(printf '%03d' $((LAST + 10)))
L=$WORLD/later
cp -r "$SQL" "$L"
printf 'ALTER TABLE vcl.node ADD COLUMN t_a text;\n' >"$L/${G1}_t_node_a.sql"
printf "ALTER TABLE vcl.node ADD COLUMN t_b text NOT NULL DEFAULT 'b';\n" >"$L/${G2}_t_node_b.sql"
newdb later_fresh
ok "fresh: baseline, then $G1 and $G2" migrate later_fresh --sql-dir "$L"
want=""
for f in "${NUM[@]}"; do want+="$((10#${f%%_*})) "; done
is "$(dbval later_fresh "SELECT string_agg(version::text, ' ' ORDER BY version) FROM vcl.schema_migrations")" \
   "$want$((10#$G1)) $((10#$G2))" "every version recorded, gap and all"
is "$(dbval later_fresh "SELECT string_agg(attname, ' ' ORDER BY attnum) FROM pg_attribute
                          WHERE attrelid = 'vcl.node'::regclass AND attname LIKE 't\_%'")" "t_a t_b" \
   "both later migrations applied, in order"
ok "upgrade: the fresh database of part 1 takes $G1 and $G2" migrate fresh --sql-dir "$L"
same_schema "baseline + later numbers: fresh and upgraded dump the same" later_fresh fresh
out=$(migrate later_fresh --sql-dir "$L" 2>&1)
like "$out" "applied 0 migration\(s\).*schema at version $((10#$G2))" "and again: nothing to apply"

# --- 5. migrate while workers run --------------------------------------------------------
# Every migrate re-applies the live files (views dropped and made again,
# functions replaced, triggers on the queue table) while workers claim and
# complete through them. 2 workers x 4 slots drain 3000 noop reservations
# while migrate runs again and again: every migrate succeeds (a deadlock it
# loses is tried again) and every reservation ends done, once.
newdb busy
ok "busy: migrate" migrate busy
T="t${WORLD##*.}"
(
    export PGDATABASE=busy
    "$VCLCTL" --quiet node add "$T-n1" --uri test:///default --master-dir "$WORLD" --cow-dir "$WORLD/cow" \
        --xml-dir "$WORLD" &&
    psql_val "INSERT INTO vcl.computer (name, node_id, mac0)
              SELECT format('$T-c%s', g), n.id, format('52:54:00:dd:00:%s', lpad(to_hex(g), 2, '0'))
                FROM generate_series(1, 30) g, vcl.node n"
) >/dev/null || bail "busy: inventory"
pids=()
for w in w1 w2; do
    world_config "$w" "slots: 4" "log_level: info" "database: \"dbname=busy\"" >/dev/null
    world_worker "$w"
    pids+=("$WORLD_WORKER_PID")
done
dbval busy "INSERT INTO vcl.reservation (computer_id, operation)
            SELECT c.id, 'noop' FROM generate_series(1, 100) g, vcl.computer c ORDER BY g, c.id" >/dev/null
fails=0
runs=0
ndone() { dbval busy "SELECT count(*) FROM vcl.reservation WHERE state = 'done'"; }
done0=$(ndone)
busy_done() { [[ $(dbval busy "SELECT count(*) FROM vcl.reservation WHERE state <> 'done'") == 0 ]]; }
while ! busy_done && ((runs < 40)); do
    runs=$((runs + 1))
    migrate busy --quiet >"$WORLD/busy-migrate.log" 2>&1 || {
        fails=$((fails + 1))
        diag "migrate $runs: $(cat "$WORLD/busy-migrate.log")"
    }
done
done1=$(ndone)
diag "$runs migrates ran while the workers completed $((done1 - done0)) reservations ($done0 done before, $done1 after)"
ok "the workers completed reservations while the migrates ran" test "$done1" -gt "$done0"
is "$fails" 0 "$runs migrates while 2 workers drained the queue: every one succeeded"
ok "every reservation ends done" wait_for "the queue to drain" 120 busy_done
is "$(dbval busy "SELECT count(*) || ' ' || count(DISTINCT lease_token) FROM vcl.reservation WHERE state = 'done'")" \
   "3000 3000" "3000 done, each under its own lease"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for i in 0 1; do
    rc=0
    world_worker_wait "${pids[i]}" 30 || rc=$?
    is "$rc" 0 "worker w$((i + 1)) exits 0 on SIGTERM"
done
unlike "$(cat "$WORLD/w1.log" "$WORLD/w2.log")" "level=(error|fatal)" "no error in the workers' logs" ||
    diag "$(grep -h 'level=\(error\|fatal\)' "$WORLD/w1.log" "$WORLD/w2.log" | head -n 5)"

# --- 6. SQUASH PROOF ----------------------------------------------------------------------
# The baseline replaced the nine migrations 001_schema.sql .. 009_role_grants.sql
# of commit ca28f34. A database migrated with those (the way their runner did:
# each file in its own transaction, in name order) and one migrated with the
# baseline and the live files, as the commit that added the baseline has them
# (live files change later; the schema of that moment is what the squash
# promised), dump the same schema, but for the runner's own tables.
OLD=ca28f34
if ! git_ cat-file -e "$OLD^{commit}" 2>/dev/null; then
    skip "squash proof: no git history here (commit $OLD)" 3
else
    SQUASH=$(git_ log --diff-filter=A --format=%H -- sql/001_baseline.sql | tail -n 1)
    mkdir -p "$WORLD/old-sql" "$WORLD/squash-sql/functions"
    for f in $(git_ ls-tree --name-only "$OLD" sql/); do
        git_ show "$OLD:$f" >"$WORLD/old-sql/${f#sql/}"
    done
    for f in $(git_ ls-tree -r --name-only "${SQUASH:-HEAD}" sql/); do
        git_ show "${SQUASH:-HEAD}:$f" >"$WORLD/squash-sql/${f#sql/}"
    done
    is "$(ls "$WORLD/old-sql" | paste -sd' ')" \
       "001_schema.sql 002_queue_functions.sql 003_views.sql 004_roles.sql 005_capture.sql 006_repository_location.sql 007_claim_fast.sql 008_progress.sql 009_role_grants.sql" \
       "squash proof: the nine old migrations from $OLD"
    newdb squash_old
    (
        set -e
        export PGDATABASE=squash_old
        psql_val "CREATE SCHEMA vcl;
                  CREATE TABLE vcl.schema_migrations (version int PRIMARY KEY, name text NOT NULL,
                                                      applied_at timestamptz NOT NULL DEFAULT now())"
        for f in "$WORLD"/old-sql/*.sql; do
            f=${f##*/}
            psql -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$WORLD/old-sql/$f"
            psql_val "INSERT INTO vcl.schema_migrations (version, name) VALUES ($((10#${f%%_*})), '$f')"
        done
    ) >"$WORLD/squash-old.log" 2>&1 || bail "squash proof: the old migrations did not apply: $(tail -n 5 "$WORLD/squash-old.log")"
    newdb squash_new
    ok "squash proof: migrate with the baseline and live files of ${SQUASH:0:12}" \
       migrate squash_new --sql-dir "$WORLD/squash-sql"
    same_schema "squash proof: the baseline and live files make exactly the schema 001-009 made" \
        squash_old squash_new -T vcl.schema_migrations -T vcl.schema_live_files
fi

done_testing
