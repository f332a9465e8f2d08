-- functions/locks.sql: the per-(node, image revision) master copy lock,
-- as rows of vcl.image_lock (sql/005_trust_rows.sql), called by name from
-- worker/queue/locks.c.
--
-- Why rows, not pg_advisory_lock: advisory locks are PUBLIC, so any login,
-- vcl_reader included, could take a copy's key and hold it forever; and a
-- session lock vanished with a reconnect in the middle of a copy. A row of
-- vcl.image_lock can be written by vcl_worker only, and it belongs to one
-- lease of one reservation: it is held while that reservation runs under
-- that lease_token with a live lease (or, cancelled while running, until its
-- old lease would have expired: blocks_until). A holder that died, hung past
-- its lease or was fenced out loses it to the next taker, with no session
-- to wait for; a holder that reconnects keeps it.
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`.

-- Is the lease (p_id, p_token) alive right now?
CREATE OR REPLACE FUNCTION vcl.lease_live(p_id bigint, p_token bigint)
    RETURNS boolean
    LANGUAGE sql STABLE
    RETURN EXISTS (SELECT 1 FROM vcl.reservation r
                    WHERE r.id = p_id AND r.lease_token = p_token
                      AND ((r.state = 'running' AND r.lease_expires_at > now())
                           OR (r.state = 'cancelled' AND r.blocks_until > now())));
COMMENT ON FUNCTION vcl.lease_live(bigint, bigint) IS
    'True while reservation p_id runs under lease p_token with a live lease (or was cancelled while running and its '
    'old lease has not expired yet: its worker may still be inside a stage).';

CREATE OR REPLACE FUNCTION vcl.image_lock_take(p_node bigint, p_revision bigint, p_id bigint, p_token bigint)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_got boolean;
BEGIN
    -- fenced: only a job still running under its lease takes a lock
    IF NOT EXISTS (SELECT 1 FROM vcl.reservation r
                    WHERE r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
                      AND r.lease_expires_at > now()) THEN
        RETURN NULL;
    END IF;
    INSERT INTO vcl.image_lock AS l (node_id, image_revision_id, reservation_id, lease_token)
    VALUES (p_node, p_revision, p_id, p_token)
    ON CONFLICT (node_id, image_revision_id) DO UPDATE
       SET reservation_id = excluded.reservation_id, lease_token = excluded.lease_token,
           taken_at = CASE WHEN l.reservation_id = excluded.reservation_id
                            AND l.lease_token = excluded.lease_token THEN l.taken_at ELSE now() END
     WHERE (l.reservation_id = excluded.reservation_id AND l.lease_token = excluded.lease_token)
        OR NOT vcl.lease_live(l.reservation_id, l.lease_token)
    RETURNING true INTO v_got;
    RETURN coalesce(v_got, false);
END;
$$;
COMMENT ON FUNCTION vcl.image_lock_take(bigint, bigint, bigint, bigint) IS
    'Try once to take the copy lock of (node p_node, image revision p_revision) for reservation p_id under lease '
    'p_token: true when it holds it now (taken, taken over from a holder whose lease is gone, or held already), '
    'false when a live lease holds it, NULL when p_id no longer runs under p_token (fenced out).';

CREATE OR REPLACE FUNCTION vcl.image_lock_held(p_node bigint, p_revision bigint, p_id bigint, p_token bigint)
    RETURNS boolean
    LANGUAGE sql STABLE
    RETURN EXISTS (SELECT 1 FROM vcl.image_lock l
                    WHERE l.node_id = p_node AND l.image_revision_id = p_revision
                      AND l.reservation_id = p_id AND l.lease_token = p_token)
           AND EXISTS (SELECT 1 FROM vcl.reservation r
                        WHERE r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
                          AND r.lease_expires_at > now());
COMMENT ON FUNCTION vcl.image_lock_held(bigint, bigint, bigint, bigint) IS
    'True while reservation p_id, running under a live lease p_token, holds the copy lock of (p_node, p_revision): '
    'checked right before a copied master is renamed into place.';

CREATE OR REPLACE FUNCTION vcl.image_lock_release(p_node bigint, p_revision bigint, p_id bigint, p_token bigint)
    RETURNS boolean
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH gone AS (
        DELETE FROM vcl.image_lock l
         WHERE l.node_id = p_node AND l.image_revision_id = p_revision
           AND l.reservation_id = p_id AND l.lease_token = p_token
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone);
END;
COMMENT ON FUNCTION vcl.image_lock_release(bigint, bigint, bigint, bigint) IS
    'Release the copy lock of (p_node, p_revision) if reservation p_id under lease p_token holds it; true when it did.';
