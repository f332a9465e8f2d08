-- 005_trust_rows.sql: the submitter role and the image copy lock table
-- (issue #12: trust boundaries for rows and locks).
--
-- vcl_submitter: whoever queues work (the web front end, a DBA's retry). It
-- may INSERT the columns a submitter chooses and make the state changes a
-- DBA may make; what it may do is granted by sql/functions/grants.sql, and
-- the trigger vcl.reservation_guard (sql/functions/guard.sql) holds every
-- other role, superusers included, to the same rules.
--
-- vcl.image_lock: one row per (node, image revision) whose master a worker
-- is copying. It replaces a session advisory lock, which any login could
-- take (pg_advisory_lock is PUBLIC) and hold forever. A row here can only be
-- written by vcl_worker, and it is held only while the reservation that took
-- it still runs under the same lease: a dead or fenced-out holder's row is
-- taken over (sql/functions/locks.sql), nothing waits on a session.

DO $$
DECLARE
    can_create boolean;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO can_create FROM pg_roles WHERE rolname = current_user;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_submitter') THEN
        RAISE NOTICE 'role vcl_submitter exists already: not created';
    ELSIF NOT coalesce(can_create, false) THEN
        RAISE NOTICE 'role vcl_submitter not created: % lacks CREATEROLE (a DBA can: CREATE ROLE vcl_submitter NOLOGIN; then run vclctl migrate again)',
            current_user;
    ELSE
        CREATE ROLE vcl_submitter NOLOGIN;
        RAISE NOTICE 'role vcl_submitter created';
    END IF;
END;
$$;

CREATE TABLE vcl.image_lock (
    node_id           bigint NOT NULL REFERENCES vcl.node (id) ON DELETE CASCADE,
    image_revision_id bigint NOT NULL REFERENCES vcl.image_revision (id) ON DELETE CASCADE,
    reservation_id    bigint NOT NULL,
    lease_token       bigint NOT NULL,
    taken_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, image_revision_id)
);
COMMENT ON TABLE vcl.image_lock IS
    'Master copies in progress: (node, image revision) -> the reservation and lease copying it. Held only while '
    'that reservation runs under that lease_token with a live lease (vcl.image_lock_take); written by vcl_worker only.';
COMMENT ON COLUMN vcl.image_lock.reservation_id IS 'The load copying the master (a plain number: history is pruned).';
COMMENT ON COLUMN vcl.image_lock.lease_token IS 'Its lease when it took the lock: a later lease of the same row does not hold it.';
