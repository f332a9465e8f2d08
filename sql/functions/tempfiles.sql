-- functions/tempfiles.sql: recorded temp files (vcl.temp_file,
-- sql/009_temp_files.sql), called by name from worker/queue/tempfiles.c.
--
-- A worker records a temp file's path before it creates the file (fenced:
-- only a job still running under its lease may), and forgets it after the
-- file was renamed into place or removed. A cleanup asks for the recorded
-- temps of a final path whose owner no longer holds a live lease
-- (vcl.lease_live, functions/locks.sql), removes those files and forgets
-- them; nothing else of the temp form is ever removed.
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`.

CREATE OR REPLACE FUNCTION vcl.temp_file_record(p_node bigint, p_path text, p_id bigint, p_token bigint)
    RETURNS boolean
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    -- fenced, the check job_check_ours makes: only a job still running
    -- under a live lease records a file it is about to create; the same
    -- reservation under a later lease adopts its own earlier record (a
    -- capture's temp file outlives a crash between its stages)
    WITH fence AS (
        SELECT r.id FROM vcl.reservation r
         WHERE r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
           AND r.lease_expires_at > now()),
    rec AS (
        INSERT INTO vcl.temp_file AS t (node_id, path, reservation_id, lease_token)
        SELECT p_node, p_path, fence.id, p_token FROM fence
        ON CONFLICT (node_id, path) DO UPDATE SET lease_token = excluded.lease_token
         WHERE t.reservation_id = excluded.reservation_id
        RETURNING 1)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM fence) THEN EXISTS (SELECT 1 FROM rec) END;
END;
COMMENT ON FUNCTION vcl.temp_file_record(bigint, text, bigint, bigint) IS
    'Record temp file p_path on node p_node for reservation p_id under lease p_token, before it is created: true '
    'when recorded (or already ours), false when another reservation recorded that path, NULL when p_id no longer '
    'runs under p_token (fenced out: create nothing).';

CREATE OR REPLACE FUNCTION vcl.temp_file_forget(p_node bigint, p_path text, p_id bigint, p_token bigint)
    RETURNS boolean LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH gone AS (
        DELETE FROM vcl.temp_file t
         WHERE t.node_id = p_node AND t.path = p_path
           AND ((t.reservation_id = p_id AND t.lease_token = p_token)
                OR NOT vcl.lease_live(t.reservation_id, t.lease_token))
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone);
END;
COMMENT ON FUNCTION vcl.temp_file_forget(bigint, text, bigint, bigint) IS
    'Forget temp file p_path of node p_node once it was renamed or removed: the record of reservation p_id under '
    'lease p_token, or one whose owner''s lease is gone (a cleanup removed it). True when a row went.';

CREATE OR REPLACE FUNCTION vcl.temp_file_stale(p_node bigint, p_final text)
    RETURNS SETOF text
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT t.path FROM vcl.temp_file t
     WHERE t.node_id = p_node
       AND left(t.path, length(p_final) + 9) = p_final || '.tmp-vcl+'
       AND NOT vcl.lease_live(t.reservation_id, t.lease_token)
     ORDER BY t.path;
END;
COMMENT ON FUNCTION vcl.temp_file_stale(bigint, text) IS
    'The recorded temp files of final path p_final on node p_node whose owner no longer holds a live lease: the only '
    'files a stale-temp cleanup may remove (then forget).';

CREATE OR REPLACE FUNCTION vcl.temp_file_mine(p_node bigint, p_final text, p_id bigint)
    RETURNS SETOF text
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT t.path FROM vcl.temp_file t
     WHERE t.node_id = p_node AND t.reservation_id = p_id
       AND left(t.path, length(p_final) + 9) = p_final || '.tmp-vcl+'
     ORDER BY t.created_at DESC, t.path;
END;
COMMENT ON FUNCTION vcl.temp_file_mine(bigint, text, bigint) IS
    'The temp files of final path p_final on node p_node that reservation p_id recorded, under any of its leases, '
    'newest first (a capture''s later stage finds the temp its flatten stage wrote).';
