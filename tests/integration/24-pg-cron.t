#!/usr/bin/env bash
# Periodic node_status checks with pg_cron: the README's recipe, as written
# there, in a cluster with pg_cron loaded (Debian: postgresql-15-cron,
# tools/install-deps). A cron job queues a node_status row per available
# computer with dedup_key node_status:<computer> (so rows never pile up
# while no worker runs them: a tick that finds one queued adds nothing); a
# worker runs them and writes node_status back. Skipped where pg_cron is not
# installed.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_vcl
libdir=$(psql_val "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'" 2>/dev/null)
[ -f "$libdir/pg_cron.so" ] || skip_all "pg_cron is not installed ($libdir/pg_cron.so; Debian: postgresql-15-cron)"

# pg_cron must be preloaded: restart the throwaway cluster with it
{
    echo "shared_preload_libraries = 'pg_cron'"
    echo "cron.database_name = '$PGDATABASE'"
    echo "cron.use_background_workers = on"   # no libpq connection (or password) needed
    echo "cron.log_run = on"
} >>"$WORLD/pg/data/postgresql.conf"
ok "restart with pg_cron preloaded" "$ROOT/tools/pg-throwaway" stop "$WORLD/pg"
ok "started" "$ROOT/tools/pg-throwaway" start "$WORLD/pg"
eval "$("$ROOT/tools/pg-throwaway" env "$WORLD/pg")"
ok "CREATE EXTENSION pg_cron" psql_val "CREATE EXTENSION pg_cron"
ok "node add" "$VCLCTL" node add n1 --uri test:///default --master-dir "$WORLD/m" --cow-dir "$WORLD/c" --xml-dir "$WORLD/x"
for i in 1 2 3; do
    ok "computer pc$i" "$VCLCTL" computer add pc$i --node n1 --mac 52:54:00:24:00:0$i
done
psql_val "UPDATE vcl.computer SET state = 'maintenance' WHERE name = 'pc3'" >/dev/null

# --- the README recipe (keep the two in step) ---------------------------------------
job=$(psql_val "SELECT cron.schedule('vcl-node-status', '* * * * *', \$\$
    INSERT INTO vcl.reservation (computer_id, operation, dedup_key)
    SELECT c.id, 'node_status', 'node_status:' || c.name
      FROM vcl.computer c
     WHERE c.state = 'available'
    ON CONFLICT DO NOTHING
\$\$)")
like "$job" '^[0-9]+$' "cron.schedule: job $job"

queued() { psql_val "SELECT count(*) FROM vcl.reservation WHERE operation = 'node_status'"; }
wait_rows() { [ "$(queued)" -ge 2 ]; }
ok "within a tick (a minute), the job queued node_status rows" wait_for "cron to queue rows" 150 wait_rows
is "$(psql_val "SELECT string_agg(c.name || ':' || r.dedup_key || ':' || r.state, ',' ORDER BY c.name)
                 FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id")" \
   "pc1:node_status:pc1:pending,pc2:node_status:pc2:pending" \
   "one per available computer (pc3 is in maintenance), with its dedup_key"
is "$(psql_val "SELECT status FROM cron.job_run_details WHERE jobid = $job ORDER BY runid LIMIT 1")" succeeded \
   "cron.job_run_details: succeeded"

# a second tick while they are still queued adds nothing
first=$(psql_val "SELECT count(*) FROM cron.job_run_details WHERE jobid = $job")
ticked() { [ "$(psql_val "SELECT count(*) FROM cron.job_run_details WHERE jobid = $job AND status = 'succeeded'")" -gt "$first" ]; }
ok "a second tick ran" wait_for "the next tick" 150 ticked
is "$(queued)" 2 "and queued nothing more: the rows were still pending (dedup_key)"

# a worker runs them
CFG=$(world_config w1)
"$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"
is "$(psql_val "SELECT string_agg(state, ',') FROM vcl.reservation WHERE operation = 'node_status'")" "done,done" \
   "a worker ran both"
is "$(psql_val "SELECT string_agg(name || ':' || coalesce(node_status, '-'), ',' ORDER BY name) FROM vcl.computer WHERE status_at > now() - interval '10 minutes'")" \
   "pc1:RELOAD,pc2:RELOAD" "and wrote node_status back (nothing loaded: RELOAD)"

ok "cron.unschedule" psql_val "SELECT cron.unschedule('vcl-node-status')"
done_testing
