-- 009_temp_files.sql: recorded temp files (issue #12 item 4, "Names").
--
-- Every temp file a worker writes on a node ("<final>.tmp-vcl+<16 random
-- hex digits>[-conv]": a master copy, its conversion, a COW, a capture) is
-- recorded here, fenced on the lease, BEFORE the file is created, and
-- forgotten after it was renamed into place or removed. A stale-temp
-- cleanup removes only recorded temps whose owner no longer holds a live
-- lease (vcl.temp_file_stale); a file that merely has the temp form is
-- never removed. A row without a file is harmless (the cleanup forgets it);
-- a file without a row is never made by a worker.
--
-- Written by vcl_worker only (sql/functions/grants.sql), through the
-- functions of sql/functions/tempfiles.sql.

CREATE TABLE vcl.temp_file (
    node_id        bigint NOT NULL REFERENCES vcl.node (id) ON DELETE CASCADE,
    path           text NOT NULL,
    reservation_id bigint NOT NULL,
    lease_token    bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, path),
    CONSTRAINT temp_file_path_valid
        CHECK (left(path, 1) = '/' AND length(path) < 4096 AND position('.tmp-vcl+' IN path) > 0)
);
CREATE INDEX temp_file_reservation ON vcl.temp_file (reservation_id);
COMMENT ON TABLE vcl.temp_file IS
    'Temp files workers write on nodes, recorded before each is created: (node, path) -> the reservation and lease '
    'that own it. Only a recorded temp whose owner''s lease is gone may be removed by a cleanup '
    '(vcl.temp_file_stale); written by vcl_worker only.';
COMMENT ON COLUMN vcl.temp_file.path IS 'Absolute path on the node: <final path>.tmp-vcl+<16 hex>[-conv].';
COMMENT ON COLUMN vcl.temp_file.reservation_id IS 'The job that writes it (a plain number: history is pruned).';
COMMENT ON COLUMN vcl.temp_file.lease_token IS 'Its lease when it recorded the file: a later lease of the same row does not own it.';
