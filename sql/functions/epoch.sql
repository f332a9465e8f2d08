-- sql/functions/epoch.sql: the fencing-token epoch (see sql/006_epoch.sql).

-- The epoch of the tokens minted on this server now: the vcl.epoch row when
-- it names this server (system identifier and current WAL timeline), else
-- the row is bumped first, and fenced for a lease (NULL until fenced_until:
-- claim nothing yet; see sql/006_epoch.sql) (one statement, compare-and-set on the old epoch:
-- concurrent first claims on a new primary agree on one bump). On a standby
-- it raises read_only_sql_transaction (25006): the worker reconnects, and
-- with target_session_attrs=read-write finds the primary.
-- The timeline is the one WAL is inserted on (pg_walfile_name of the current
-- LSN), not pg_control_checkpoint()'s: after a promotion that one changes
-- only when the first checkpoint on the new timeline completes, while the
-- new primary already takes writes.
DROP FUNCTION IF EXISTS vcl.lease_epoch();
CREATE OR REPLACE FUNCTION vcl.lease_epoch(p_lease_seconds int)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_sysid     bigint;
    v_tl        bigint;
    v_epoch     bigint;
    v_base      bigint;
    v_row_sysid bigint;
    v_row_tl    bigint;
    v_fenced    timestamptz;
    v_new       bigint;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'vcl.lease_epoch: this server is a standby; leases are taken on the primary only'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Connect with target_session_attrs=read-write (the worker''s default).';
    END IF;
    v_tl := ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint;
    -- the system identifier cannot change under a session (a promoted
    -- standby keeps its primary's): read the control file once per session
    v_sysid := nullif(current_setting('vcl.lease_epoch_sysid', true), '')::bigint;
    IF v_sysid IS NULL THEN
        SELECT system_identifier INTO v_sysid FROM pg_control_system();
        PERFORM set_config('vcl.lease_epoch_sysid', v_sysid::text, false);
    END IF;
    LOOP
        SELECT e.epoch, e.base, e.system_identifier, e.timeline_id, e.fenced_until
          INTO v_epoch, v_base, v_row_sysid, v_row_tl, v_fenced
          FROM vcl.epoch e WHERE e.id;
        IF FOUND AND v_row_sysid = v_sysid AND v_row_tl = v_tl THEN
            RETURN CASE WHEN v_fenced > now() THEN NULL ELSE v_epoch END;
        END IF;
        IF NOT FOUND THEN
            INSERT INTO vcl.epoch (epoch, base, system_identifier, timeline_id)
            VALUES (v_tl, 0, v_sysid, v_tl)
            ON CONFLICT (id) DO NOTHING;
        ELSE
            v_new := CASE WHEN v_row_sysid = v_sysid
                          THEN greatest(v_epoch + 1, v_base + v_tl)
                          ELSE v_epoch + 1 END;
            UPDATE vcl.epoch
               SET epoch = v_new, base = v_new - v_tl, system_identifier = v_sysid,
                   timeline_id = v_tl, previous_epoch = v_epoch, changed_at = now(),
                   fenced_until = greatest(now() + make_interval(secs => greatest(p_lease_seconds, 1)),
                                           (SELECT max(r.lease_expires_at) FROM vcl.reservation r
                                             WHERE r.state = 'running'))
             WHERE id AND epoch = v_epoch;
            IF FOUND THEN
                RAISE LOG 'vcl.lease_epoch: new primary (system %, timeline %): fencing epoch % -> %',
                    v_sysid, v_tl, v_epoch, v_new;
            END IF;
        END IF;
        -- done or lost a race: the next look finds the row naming this server
    END LOOP;
END;
$$;
COMMENT ON FUNCTION vcl.lease_epoch(int) IS
    'The fencing-token epoch on this server, bumped first when the vcl.epoch row names another primary '
    '(system identifier or WAL timeline): tokens minted after a failover are larger than every token before it. '
    'NULL for one lease (p_lease_seconds, or the longest running lease) after a bump: claim nothing yet.';

-- When the fence after the last bump ends (NULL when it is over): for
-- vcl.next_due, so an idle worker wakes when claims may start again.
-- PL/pgSQL, so that a live file using it compiles before 006 made the table.
CREATE OR REPLACE FUNCTION vcl.epoch_fenced_until()
    RETURNS timestamptz
    LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (SELECT e.fenced_until FROM vcl.epoch e WHERE e.fenced_until > now());
END;
$$;
COMMENT ON FUNCTION vcl.epoch_fenced_until() IS
    'The end of the claim fence after a failover (vcl.epoch.fenced_until) while it lasts, else NULL.';
