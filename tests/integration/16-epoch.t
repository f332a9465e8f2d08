#!/usr/bin/env bash
# Fencing tokens carry an epoch (sql/006_epoch.sql, sql/functions/epoch.sql):
# lease_token = (epoch << 40) | seq. On one server the epoch is its WAL
# timeline; a claim on "another primary" (the vcl.epoch row made to name
# another system identifier, or an older timeline: what a restore or a
# promotion looks like to it) bumps the epoch, hands out nothing for one
# lease (next_due says when that ends), and every token after it is larger
# than every token before. A stage row lost to a failover (missing, or of
# another epoch) fences the job out; within one epoch it is an error. The
# sequence stops at 2^40 - 1 rather than spill into the epoch bits. The real
# promotion is tests/fault/80-failover.t.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

ok "migrate" "$ROOT/bin/vclctl" --quiet migrate
psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n1', 'test:///default');
          INSERT INTO vcl.computer (name, node_id, mac0)
          SELECT 'c' || g, n.id, format('52:54:00:00:00:%s', lpad(to_hex(g), 2, '0'))
            FROM generate_series(1, 9) g, vcl.node n" >/dev/null
W=$(psql_val "SELECT vcl.register_worker('w1', 'host-a', 101, 4, 'test')")
res() { psql_val "INSERT INTO vcl.reservation (computer_id, operation) SELECT id, 'noop' FROM vcl.computer WHERE name = '$1' RETURNING id"; }
claim() { psql_val "SELECT coalesce(string_agg(lease_token::text, ' '), 'none') FROM vcl.claim($W, 1, 30)"; }

tl=$(psql_val "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint")
sysid=$(psql_val "SELECT system_identifier FROM pg_control_system()")
is "$(psql_val "SELECT count(*) FROM vcl.epoch")" 0 "no epoch before the first claim"

# --- first claim: epoch = timeline ---------------------------------------------
R1=$(res c1)
T1=$(claim)
is "$((T1 >> 40))" "$tl" "the first token's epoch is the timeline ($tl)"
ok "its sequence part (the low 40 bits) is the sequence value, positive" test "$((T1 & ((1 << 40) - 1)))" -gt 0
is "$(psql_val "SELECT epoch || ' ' || base || ' ' || system_identifier || ' ' || timeline_id || ' ' || (fenced_until IS NULL) FROM vcl.epoch")" \
   "$tl 0 $sysid $tl true" "vcl.epoch names this server, no fence"
R2=$(res c2)
T2=$(claim)
ok "the next token is larger, same epoch" test "$T2" -gt "$T1" -a "$((T2 >> 40))" = "$tl"

# --- another system identifier: a bump by one, fenced for a lease ----------------
psql_val "UPDATE vcl.epoch SET system_identifier = 42" >/dev/null
R3=$(res c3)
is "$(claim)" none "the first claim on 'another primary' hands out nothing (the fence)"
is "$(psql_val "SELECT epoch || ' ' || previous_epoch || ' ' || system_identifier || ' ' || (base = epoch - timeline_id)
                 FROM vcl.epoch")" "$((tl + 1)) $tl $sysid true" "the epoch went up by one and names this server again"
is "$(psql_val "SELECT fenced_until BETWEEN now() + interval '25 s' AND now() + interval '31 s' FROM vcl.epoch")" t \
   "fenced for the claimer's lease (30 s)"
is "$(psql_val "SELECT vcl.next_due() BETWEEN 25 AND 31")" t "vcl.next_due() wakes the workers when the fence ends"
is "$(claim)" none "still fenced: nothing claimed"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $R3")" pending "the row waits, pending"
psql_val "UPDATE vcl.epoch SET fenced_until = now() - interval '1 s'" >/dev/null
T3=$(claim)
is "$((T3 >> 40))" "$((tl + 1))" "after the fence: the new epoch"
ok "every token after the bump is larger than every one before" test "$T3" -gt "$T2"

# --- same system, a new timeline after a lost bump: at least base + timeline ------
# (as if the row had been left behind by an earlier primary of timeline 0
# whose own bump was lost: base 5 makes base + timeline the larger)
psql_val "UPDATE vcl.epoch SET timeline_id = 0, base = 5" >/dev/null
R4=$(res c4)
is "$(claim)" none "a new timeline: fenced again"
is "$(psql_val "SELECT epoch FROM vcl.epoch")" "$((5 + tl > tl + 2 ? 5 + tl : tl + 2))" \
   "epoch = greatest(epoch + 1, base + timeline)"
psql_val "UPDATE vcl.epoch SET fenced_until = NULL" >/dev/null
T4=$(claim)
ok "larger again" test "$T4" -gt "$T3"

# --- a stage row a failover lost --------------------------------------------------
S=$(psql_val "SELECT vcl.stage_start($R4, $T4, 'x')")
ok "a stage started" test -n "$S"
is "$(psql_val "SELECT vcl.stage_finish($R4, $T4, $S + 1000, true, '', true)")" f \
   "finishing a stage row that does not exist (lost): fenced out, false"
psql_val "UPDATE vcl.reservation_stage SET lease_token = $T1 WHERE id = $S" >/dev/null
is "$(psql_val "SELECT vcl.stage_finish($R4, $T4, $S, true, '', true)")" f \
   "finishing a row of another epoch (its id reused after a failover): fenced out, false"
psql_val "UPDATE vcl.reservation_stage SET lease_token = $T4 + 1 WHERE id = $S" >/dev/null
like "$(psql -XAtq -c "SELECT vcl.stage_finish($R4, $T4, $S, true, '', true)" 2>&1)" "is not a stage of reservation" \
     "a row of another lease of the same epoch: still an error (a caller's mistake)"

# --- the sequence never spills into the epoch bits ------------------------------
psql_val "SELECT setval('vcl.lease_token_seq', 1099511627775)" >/dev/null
R5=$(res c5)
like "$(psql -XAtq -c "SELECT lease_token FROM vcl.claim($W, 1, 30)" 2>&1)" "reached maximum value" \
     "past 2^40 - 1 the claim fails rather than mint a token of the next epoch"
done_testing
