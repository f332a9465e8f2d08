-- functions/workers.sql: a worker process's own row in vcl.worker (its
-- heartbeat is written by vcl.heartbeat, queue.sql).
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`, after the
-- numbered migrations, in the same transaction; every object here is
-- CREATE OR REPLACE.

CREATE OR REPLACE FUNCTION vcl.register_worker(p_name text, p_host text, p_pid int, p_slots int, p_version text)
    RETURNS bigint
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    INSERT INTO vcl.worker (name, host, pid, slots, version)
    VALUES (p_name, p_host, p_pid, p_slots, p_version)
    RETURNING id;
END;
COMMENT ON FUNCTION vcl.register_worker(text, text, int, int, text) IS
    'Record a starting worker process; returns its worker id (used in vcl.claim and vcl.heartbeat).';

CREATE OR REPLACE FUNCTION vcl.worker_stopped(p_worker_id bigint)
    RETURNS void
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    UPDATE vcl.worker SET stopped_at = now(), heartbeat_at = now() WHERE id = p_worker_id;
END;
COMMENT ON FUNCTION vcl.worker_stopped(bigint) IS 'Record a clean exit of the worker.';
