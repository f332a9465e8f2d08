-- 006_repository_location.sql: where a node's repository paths live.
--
-- 'node' (the default, as before): the paths are directories on the node;
-- a missing master is converted there with qemu-img convert, and a capture
-- is uploaded there.
-- 'management': the paths are directories on the management host (the
-- worker's machine); a missing master is streamed to the node (SFTP for an
-- ssh node), converted on the node when the formats differ, verified and
-- renamed into place; a capture's new master is copied back from the node
-- into the first repository path here. Either way a file is written under a
-- temporary name, verified, and renamed; a partial file is never a master.

ALTER TABLE vcl.node
    ADD COLUMN repository_location text NOT NULL DEFAULT 'node'
        CONSTRAINT node_repository_location_check CHECK (repository_location IN ('node', 'management'));

COMMENT ON COLUMN vcl.node.repository_location IS
    'Where repository_paths are: ''node'' (on the hypervisor node; masters are converted there) or '
    '''management'' (on the worker''s host; masters are streamed to the node over SFTP, captures '
    'copied back)';
