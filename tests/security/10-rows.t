#!/usr/bin/env bash
# Trust boundaries for reservation rows (issue #12 items 1, 2), in SQL only:
#   - vcl_submitter may INSERT the columns a submitter chooses and nothing
#     else, and UPDATE only the columns of a retry or cancel;
#   - for every role but the worker (a superuser's plain SQL included),
#     worker-owned columns are reset on INSERT and kept on UPDATE: a row
#     cannot bring its own checkpoint, domain XML, lease, attempts or
#     blocks_until;
#   - a running row cannot be reset to pending by hand: refused, with how to
#     cancel it; a cancel by plain SQL blocks the computer like vcl.cancel;
#   - a reader can take no lock the queue depends on (node rows, image locks).
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg

VCLCTL="$ROOT/bin/vclctl"
as_val() { local role=$1; shift; PGUSER=$role psql_val "$@"; }
sql_err() { psql -XAtq -v ON_ERROR_STOP=1 -c "$1" 2>&1 >/dev/null; }
as_err() { local role=$1; shift; PGUSER=$role psql -XAtq -v ON_ERROR_STOP=1 -c "$1" 2>&1 >/dev/null; }
as_worker() { PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" psql_val "$@"; }

ok "migrate" "$VCLCTL" --quiet migrate
is "$(psql_val "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'vcl_submitter'")" f "migrate created vcl_submitter (NOLOGIN)"
psql_val "CREATE ROLE web LOGIN; GRANT vcl_submitter TO web;
          CREATE ROLE dba LOGIN; GRANT vcl_reader TO dba;
          CREATE ROLE wk LOGIN; GRANT vcl_worker TO wk" >/dev/null

psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n1', 'test:///default');
          INSERT INTO vcl.computer (name, node_id, mac0) SELECT 'pc' || g, 1, format('52:54:00:00:10:%s', lpad(g::text, 2, '0'))
            FROM generate_series(1, 6) g;
          INSERT INTO vcl.image (name) VALUES ('img');
          INSERT INTO vcl.image_revision (image_id, revision, file_stem) VALUES (1, 1, 'img-v1')" >/dev/null
cid() { psql_val "SELECT id FROM vcl.computer WHERE name = '$1'"; }

# --- 1. vcl_submitter's column grants --------------------------------------------------------
id=$(as_val web "INSERT INTO vcl.reservation (computer_id, image_revision_id, operation, args, priority, run_at, max_attempts)
                 VALUES ($(cid pc1), 1, 'load', '{}', 5, now(), 3) RETURNING id")
like "$id" '^[0-9]+$' "vcl_submitter inserts a load with the submitter's columns"
for col in "stage" "domain_xml" "state" "lease_expires_at" "blocks_until" "attempts" "lease_token" "worker_id" "domain_uuid" \
    "load_node_id"; do
    val="NULL"
    case $col in
        stage) val="'generate_xml'" ;; domain_xml) val="'<domain/>'" ;; state) val="'pending'" ;;
        lease_expires_at | blocks_until) val="now() + interval '100 years'" ;;
        attempts | lease_token | worker_id | load_node_id) val=1 ;;
        domain_uuid) val="gen_random_uuid()" ;;
    esac
    like "$(as_err web "INSERT INTO vcl.reservation (computer_id, operation, $col) VALUES ($(cid pc2), 'noop', $val)")" \
         "permission denied" "vcl_submitter may not INSERT $col"
done
like "$(as_err web "UPDATE vcl.reservation SET blocks_until = now() + interval '1 year' WHERE id = $id")" \
     "permission denied" "vcl_submitter may not UPDATE blocks_until"
like "$(as_err web "UPDATE vcl.reservation SET domain_xml = '<domain/>' WHERE id = $id")" \
     "permission denied" "vcl_submitter may not UPDATE domain_xml"
like "$(as_err web "DELETE FROM vcl.reservation WHERE id = $id")" "permission denied" "vcl_submitter may not DELETE"
like "$(as_err web "INSERT INTO vcl.image_lock VALUES (1, 1, $id, 1)")" "permission denied" "vcl_submitter may not take an image lock"
is "$(as_val web "UPDATE vcl.reservation SET state = 'cancelled' WHERE id = $id RETURNING state")" cancelled \
   "vcl_submitter cancels a pending row"
is "$(as_val web "UPDATE vcl.reservation SET state = 'pending' WHERE id = $id RETURNING state || ' ' || attempts")" "pending 0" \
   "vcl_submitter retries it"

# --- 2. a hand-written row, as a superuser: worker-owned columns reset --------------------------
id=$(psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, operation, state, stage, domain_xml,
                                            attempts, lease_token, worker_id, lease_expires_at, blocks_until,
                                            last_error, started_at, finished_at, lease_expiries, domain_uuid)
               VALUES ($(cid pc3), 1, 'load', 'running', 'generate_xml', '<domain><name>x</name></domain>',
                       7, 999999, 42, now() + interval '100 years', now() + interval '100 years',
                       'x', now(), now(), 3, '00000000-0000-0000-0000-000000000001') RETURNING id")
is "$(psql_val "SELECT concat_ws(' ', state, coalesce(stage, '-'), coalesce(domain_xml, '-'), attempts,
                                 coalesce(lease_token::text, '-'), coalesce(worker_id::text, '-'),
                                 coalesce(lease_expires_at::text, '-'), coalesce(blocks_until::text, '-'),
                                 coalesce(last_error, '-'), coalesce(started_at::text, '-'),
                                 coalesce(finished_at::text, '-'), lease_expiries,
                                 domain_uuid <> '00000000-0000-0000-0000-000000000001')
                  FROM vcl.reservation WHERE id = $id")" \
   "pending - - 0 - - - - - - - 0 t" \
   "a superuser's INSERT with state, checkpoint, XML, lease, blocks_until, times: all reset"
# an UPDATE of worker-owned columns is ignored
psql_val "UPDATE vcl.reservation SET stage = 'define', domain_xml = '<domain/>', blocks_until = now() + interval '9 years',
                 attempts = 50, lease_expires_at = now() + interval '9 years', priority = 9 WHERE id = $id" >/dev/null
is "$(psql_val "SELECT concat_ws(' ', coalesce(stage, '-'), coalesce(domain_xml, '-'), coalesce(blocks_until::text, '-'),
                                 attempts, coalesce(lease_expires_at::text, '-'), priority)
                  FROM vcl.reservation WHERE id = $id")" "- - - 0 - 9" \
   "a superuser's UPDATE of worker-owned columns is ignored (priority, a submitter's column, changes)"
like "$(sql_err "UPDATE vcl.reservation SET state = 'done' WHERE id = $id")" "the worker's to make" \
     "pending -> done by hand is refused"
like "$(sql_err "UPDATE vcl.reservation SET state = 'running' WHERE id = $id")" "the worker's to make" \
     "pending -> running by hand is refused"
is "$(psql_val "SELECT count(*) FROM vcl.claimable WHERE id = $id")" 1 "the row is claimable like any other"

# --- 3. a running row: a reset is refused with how to cancel; a cancel blocks the computer ---------
W=$(as_worker "SELECT vcl.register_worker('t', 'h', 1, 4, 'x')")
got=$(as_worker "SELECT string_agg(id::text, ',') FROM vcl.claim($W, 10, 60)")
like ",$got," ",$id," "the worker claims it"
tok=$(psql_val "SELECT lease_token FROM vcl.reservation WHERE id = $id")
as_worker "SELECT vcl.stage_start($id, $tok, 'cleanup')" >/dev/null
err=$(sql_err "UPDATE vcl.reservation SET state = 'pending' WHERE id = $id")
like "$err" "reservation $id is running" "a DBA's reset of a running row is refused"
like "$err" "vclctl cancel $id" "... and the error says how to cancel it"
like "$(as_err web "UPDATE vcl.reservation SET state = 'pending', stage = NULL WHERE id = $id")" "is running" \
     "... as vcl_submitter too"
like "$(sql_err "UPDATE vcl.reservation SET computer_id = $(cid pc4) WHERE id = $id")" "is running" \
     "moving a running row to another computer is refused"
is "$(psql_val "SELECT state || ' ' || lease_token FROM vcl.reservation WHERE id = $id")" "running $tok" "the row still runs under its lease"
is "$(as_worker "SELECT vcl.stage_finish($id, $tok, (SELECT max(id) FROM vcl.reservation_stage WHERE reservation_id = $id), true, '', true)")" t \
   "its worker's fenced writes still succeed"
as_val web "UPDATE vcl.reservation SET state = 'cancelled' WHERE id = $id" >/dev/null
is "$(psql_val "SELECT state || ' ' || (blocks_until > now() + interval '50 s') || ' ' || (lease_expires_at IS NULL) || ' ' || (finished_at IS NOT NULL)
                  FROM vcl.reservation WHERE id = $id")" "cancelled true true true" \
   "a plain-SQL cancel of a running row blocks the computer until the old lease ends (as vcl.cancel)"
is "$(as_worker "SELECT vcl.stage_start($id, $tok, 'generate_xml') IS NULL")" t "its worker is fenced out"
next=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation) VALUES ($(cid pc3), 'noop') RETURNING id")
is "$(as_worker "SELECT count(*) FROM vcl.claim($W, 10, 60) WHERE id = $next")" 0 "the computer's next row waits for the old lease"
psql_val "UPDATE vcl.reservation SET state = 'pending' WHERE id = $id" >/dev/null
is "$(psql_val "SELECT state || ' ' || (run_at > now() + interval '50 s')  FROM vcl.reservation WHERE id = $id")" "pending true" \
   "a retry of the cancelled row is not due before its block ends"
ok "setting a checkpoint by hand: no error ..." psql_val "UPDATE vcl.reservation SET stage = 'node_status' WHERE id = $id"
is "$(psql_val "SELECT coalesce(stage, '-') FROM vcl.reservation WHERE id = $id")" cleanup "... but ignored (no stage can be skipped by hand)"
psql_val "UPDATE vcl.reservation SET stage = NULL WHERE id = $id" >/dev/null
is "$(psql_val "SELECT coalesce(stage, '-') FROM vcl.reservation WHERE id = $id")" - "clearing the checkpoint (rerun every stage) is allowed"

# --- 4. a reader can hold no lock the queue needs ----------------------------------------------
like "$(as_err dba "SELECT 1 FROM vcl.node FOR NO KEY UPDATE")" "permission denied" "vcl_reader cannot lock a node row (the load cap)"
like "$(as_err dba "INSERT INTO vcl.image_lock VALUES (1, 1, 1, 1)")" "permission denied" "vcl_reader cannot take an image lock"
like "$(as_err dba "SELECT vcl.image_lock_take(1, 1, 1, 1)")" "permission denied" "nor call the lock functions"
# the worker's own writes are the worker's only for a vcl_worker member: a
# submitter who sets vcl.writer gains nothing
id2=$(PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" as_val web \
      "INSERT INTO vcl.reservation (computer_id, operation) VALUES ($(cid pc5), 'noop') RETURNING id")
like "$(PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" as_err web "UPDATE vcl.reservation SET state = 'done' WHERE id = $id2")" \
     "the worker's to make" "vcl_submitter with vcl.writer=worker set is still not the worker"
# a vcl_worker login writing as the worker (its connections set vcl.writer) passes
tk2=$(PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" as_val wk "SELECT lease_token FROM vcl.claim($W, 10, 60) WHERE id = $id2")
like "$tk2" '^[0-9]+$' "a vcl_worker login claims"
is "$(PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" as_val wk "SELECT count(*) FROM vcl.complete(ARRAY[$id2]::bigint[], ARRAY[$tk2]::bigint[])")" 1 \
   "... and completes"
done_testing
