#!/usr/bin/env bash
# De-duplication of queued work (sql/008_dedup.sql, issue #15 item 4):
#   - dedup_key: at most one pending or running row per key (a partial
#     unique index): a second plain INSERT is a unique violation (23505);
#     finished rows no longer hold their key;
#   - the README recipe (INSERT ... ON CONFLICT DO NOTHING RETURNING, with
#     the fallback SELECT) returns the id of the row already queued;
#   - `vclctl load` sets load:<computer>: the same load again prints the
#     queued id and says so on stderr; a load of another image fails naming
#     it; once the first ended, a new load is a new row; --no-dedup queues
#     a second one anyway;
#   - vcl_submitter may set dedup_key (column grant, guard whitelist); the
#     guard keeps it; a retry that would hold a key twice is refused.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_vcl
ok "node add" "$VCLCTL" node add n1 --uri test:///default --master-dir "$WORLD/m" --cow-dir "$WORLD/c" --xml-dir "$WORLD/x"
ok "image add" "$VCLCTL" image add $T-img --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-img --revision 1 --file-stem $T-img-v1 --production
ok "revision 2" "$VCLCTL" image revision-add $T-img --revision 2 --file-stem $T-img-v2
ok "computer pc1" "$VCLCTL" computer add pc1 --node n1 --mac 52:54:00:16:00:01
ok "computer pc2" "$VCLCTL" computer add pc2 --node n1 --mac 52:54:00:16:00:02
cid() { psql_val "SELECT id FROM vcl.computer WHERE name = '$1'"; }
res() { psql_val "SELECT $1 FROM vcl.reservation WHERE id = $2"; }
nrows() { psql_val "SELECT count(*) FROM vcl.reservation WHERE $1"; }
PC2=$(cid pc2)

# --- SQL: the index -------------------------------------------------------------
a=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, dedup_key) VALUES ($PC2, 'noop', 'k1') RETURNING id")
like "$a" '^[0-9]+$' "a row with dedup_key k1"
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO vcl.reservation (computer_id, operation, dedup_key) VALUES ($PC2, 'noop', 'k1')" 2>&1)
like "$out" 'duplicate key value violates unique constraint "reservation_dedup_key_active"' \
     "a second pending row with the same key: unique violation"
is "$(psql -X -q -c "\\set VERBOSITY sqlstate" -c "INSERT INTO vcl.reservation (computer_id, operation, dedup_key) VALUES ($PC2, 'noop', 'k1')" 2>&1 | grep -o '23505')" \
   23505 "SQLSTATE 23505"
b=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, dedup_key) VALUES ($PC2, 'noop', 'k2') RETURNING id")
ok "another key is another row" test -n "$b"
c=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation) VALUES ($PC2, 'noop'), ($PC2, 'noop') RETURNING id" | wc -l)
is "$c" 2 "NULL keys never conflict"

# the README recipe: returns the queued row's id
recipe() {
    psql_val "WITH ins AS (
        INSERT INTO vcl.reservation (computer_id, operation, dedup_key)
        VALUES ((SELECT id FROM vcl.computer WHERE name = 'pc2'), 'noop', '$1')
        ON CONFLICT DO NOTHING
        RETURNING id)
      SELECT id FROM ins
      UNION ALL
      SELECT id FROM vcl.reservation
       WHERE dedup_key = '$1' AND state IN ('pending', 'running') AND NOT EXISTS (SELECT FROM ins)"
}
is "$(recipe k1)" "$a" "ON CONFLICT DO NOTHING recipe: the queued row's id"
is "$(nrows "dedup_key = 'k1'")" 1 "and no second row"
k3=$(recipe k3)
is "$(res dedup_key "$k3")" k3 "the recipe with a new key inserts it and returns the new id"

# a running row holds its key too; a finished one does not
psql_val "UPDATE vcl.reservation SET state = 'cancelled' WHERE id = $a" >/dev/null
a2=$(recipe k1)
isnt "$a2" "$a" "after the holder is cancelled, the same key queues a new row"
is "$(res state "$a2")" pending "the new row is pending"
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "UPDATE vcl.reservation SET state = 'pending' WHERE id = $a" 2>&1)
like "$out" 'reservation_dedup_key_active' "retrying the old row while its key is queued again: unique violation"
is "$(res state "$a")" cancelled "the old row stays cancelled"

# --- the submitter role ------------------------------------------------------------
sub=$(psql -X -qAt -v ON_ERROR_STOP=1 -c "SET ROLE vcl_submitter" \
      -c "INSERT INTO vcl.reservation (computer_id, operation, dedup_key) VALUES ($PC2, 'noop', 'sub1') ON CONFLICT DO NOTHING RETURNING id" 2>&1)
like "$sub" '^[0-9]+$' "vcl_submitter may INSERT dedup_key (with ON CONFLICT DO NOTHING)"
is "$(res dedup_key "$sub")" sub1 "the guard keeps the submitter's key"
sub2=$(psql -X -qAt -v ON_ERROR_STOP=1 -c "SET ROLE vcl_submitter" \
      -c "INSERT INTO vcl.reservation (computer_id, operation, dedup_key) VALUES ($PC2, 'noop', 'sub1') ON CONFLICT DO NOTHING RETURNING id" 2>&1)
is "$sub2" "" "as vcl_submitter, the same key again: no row (ON CONFLICT DO NOTHING)"
out=$(psql -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO vcl.reservation (computer_id, operation, dedup_key) VALUES ($PC2, 'noop', '')" 2>&1)
like "$out" 'reservation_dedup_key_valid' "an empty key is refused"
psql_val "UPDATE vcl.reservation SET state = 'cancelled' WHERE computer_id = $PC2 AND state = 'pending'" >/dev/null

# --- vclctl load ---------------------------------------------------------------------
id1=$("$VCLCTL" load pc1 $T-img 2>"$WORLD/e1")
like "$id1" '^[0-9]+$' "vclctl load prints the id"
is "$(res dedup_key "$id1")" "load:pc1" "with dedup_key load:pc1"
is "$(cat "$WORLD/e1")" "" "nothing on stderr"
id2=$("$VCLCTL" load pc1 $T-img:1 2>"$WORLD/e2"); rc=$?
is "$rc" 0 "the same load again: exit 0"
is "$id2" "$id1" "it prints the queued reservation's id"
like "$(cat "$WORLD/e2")" "already queued as reservation $id1 \\(pending, dedup_key load:pc1\\): not queued again" \
     "and says so on stderr"
is "$(nrows "computer_id = $(cid pc1)")" 1 "one row for pc1"
j=$("$VCLCTL" --json load pc1 $T-img 2>/dev/null)
is "$j" "{\"id\" : $id1}" "--json: the same id"
out=$("$VCLCTL" load pc1 $T-img:2 2>&1); rc=$?
is "$rc" 1 "a load of another revision while one is queued: exit 1"
like "$out" "already queued as reservation $id1 \\(pending\\): not queued; cancel it first \\(vclctl cancel $id1\\)" \
     "naming the queued one and how to replace it"
is "$(nrows "computer_id = $(cid pc1)")" 1 "still one row for pc1"
id3=$("$VCLCTL" enqueue pc1 load $T-img 2>/dev/null)
is "$id3" "$id1" "vclctl enqueue COMPUTER load is de-duplicated the same way"
nd=$("$VCLCTL" load pc1 $T-img --no-dedup 2>"$WORLD/end")
isnt "$nd" "$id1" "--no-dedup: a second load behind the first"
is "$(res "coalesce(dedup_key, 'none')" "$nd")" none "without a key"
is "$(cat "$WORLD/end")" "" "and without a note"
ok "cancel it" "$VCLCTL" -q cancel "$nd"
other=$("$VCLCTL" load pc2 $T-img 2>/dev/null)
isnt "$other" "$id1" "another computer's load is its own row"
ok "cancel the first" "$VCLCTL" -q cancel "$id1"
id4=$("$VCLCTL" load pc1 $T-img:2 2>"$WORLD/e4")
isnt "$id4" "$id1" "after it ended, a load is a new row"
is "$(cat "$WORLD/e4")" "" "without a note"
n=$("$VCLCTL" enqueue pc1 noop 2>/dev/null)
n2=$("$VCLCTL" enqueue pc1 noop 2>/dev/null)
isnt "$n2" "$n" "other operations are not de-duplicated"
done_testing
