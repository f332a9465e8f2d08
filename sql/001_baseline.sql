-- 001_baseline.sql: the tables of schema vcl, with their domains, indexes,
-- constraints, comments and the lease token sequence, the two database roles,
-- and the fixed rows of vcl.stage_default_estimate (PostgreSQL 15).
--
-- The baseline squashes the migrations 001-009 of the first development
-- months into the state they left (no database outside tests had been
-- migrated with them). tests/integration/12-schema.t proves that it and the
-- live files make exactly the schema those nine files made ("squash proof").
--
-- Numbered migrations (this file, and 002_... after it) hold tables, indexes,
-- types, sequences and data changes only, and are frozen once released: the
-- runner (worker/queue/migrate.c) records each file's sha256 and refuses to go on
-- when an applied file has changed. Functions, views, triggers and grants
-- are not here: they live once each in sql/functions/ (see its ORDER file)
-- and are re-applied by every `vclctl migrate`, after the numbered files, in
-- the same transaction.
--
-- Applied inside that one transaction, after the runner has created schema
-- vcl and its own tables (vcl.schema_migrations, vcl.schema_live_files): no
-- BEGIN/COMMIT here.
--
-- Column names are a contract with the C code and with DBAs: rename nothing.
-- Every object is schema-qualified; nothing depends on search_path.

-- ---------------------------------------------------------------------------
-- Domains: the same strict patterns as worker/base/names.c, so a bad name is a
-- readable constraint error at INSERT time, long before it could reach a
-- path, a command line, a domain name or XML on a node.
-- ---------------------------------------------------------------------------

-- node, image, computer, file stem, ssh user: letters, digits, '.', '_', '-';
-- no leading '.' or '-' (so never '.', '..' or an option); 1..100 characters.
CREATE DOMAIN vcl.name_t AS text
    CONSTRAINT name_t_pattern CHECK (VALUE ~ '^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$');
COMMENT ON DOMAIN vcl.name_t IS
    'A strict name (node, image, computer, file stem): letters, digits, ".", "_", "-"; '
    'first character not "." or "-"; 1..100 characters. Same rule as names.c.';

-- Absolute directory: every component is a name (so no "..", no ".", no empty
-- component), optional trailing '/'.
CREATE DOMAIN vcl.dir_t AS text
    CONSTRAINT dir_t_pattern CHECK (VALUE ~ '^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+/?$')
    CONSTRAINT dir_t_length CHECK (length(VALUE) < 4096);
COMMENT ON DOMAIN vcl.dir_t IS
    'An absolute directory: "/" then name components (no "." or ".." components), '
    'optional trailing "/", shorter than 4096 bytes.';

-- Absolute file path on a node (COW disk, master image, XML file): the same
-- components as vcl.dir_t, no trailing '/'.
CREATE DOMAIN vcl.path_t AS text
    CONSTRAINT path_t_pattern CHECK (VALUE ~ '^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$')
    CONSTRAINT path_t_length CHECK (length(VALUE) < 4096);
COMMENT ON DOMAIN vcl.path_t IS
    'An absolute file path on a node: name components as in vcl.dir_t, no trailing "/".';

-- MAC address: six hex octets with ':'; unicast (least significant bit of the
-- first octet clear: its second hex digit is even). Upper or lower case.
CREATE DOMAIN vcl.mac_t AS text
    CONSTRAINT mac_t_format CHECK (VALUE ~ '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$')
    CONSTRAINT mac_t_unicast CHECK (substr(VALUE, 2, 1) ~ '^[02468aceACE]$');
COMMENT ON DOMAIN vcl.mac_t IS
    'A unicast MAC address "52:54:00:ab:cd:ef" (hex, either case; first octet even).';

-- node.repository_paths: every element an absolute path whose components may
-- hold the wildcards * and ?; like vcl.dir_t no component may start with '.'
-- or '-', so ".." (and ".") can never be a component. CHECK constraints cannot
-- hold sub-queries, hence this immutable helper. It is the one function in a
-- numbered migration: vcl.node's CHECK constraint needs it before the table
-- exists, and changing what it accepts means checking the rows again, which
-- is a migration's job (a new function and a new constraint), not a live
-- file's.
CREATE FUNCTION vcl.repository_paths_valid(p text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (SELECT coalesce(bool_and(e IS NOT NULL
                                     AND e ~ '^(/[A-Za-z0-9_*?][A-Za-z0-9._*?-]*)+/?$'
                                     AND length(e) < 4096), true)
              FROM unnest(p) AS e);
COMMENT ON FUNCTION vcl.repository_paths_valid(text[]) IS
    'True when every element is an absolute path (wildcards * ? allowed) with no "." or ".." component.';

-- ---------------------------------------------------------------------------
-- Inventory
-- ---------------------------------------------------------------------------

CREATE TABLE vcl.node (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 vcl.name_t NOT NULL,
    libvirt_uri          text NOT NULL,
    transport            text NOT NULL DEFAULT 'local',
    ssh_host             text,
    ssh_port             int DEFAULT 22,
    ssh_user             vcl.name_t,
    master_image_dir     vcl.dir_t NOT NULL DEFAULT '/var/lib/libvirt/images',
    cow_dir              vcl.dir_t NOT NULL DEFAULT '/var/lib/libvirt/images',
    xml_dir              vcl.dir_t NOT NULL DEFAULT '/tmp/vcl',
    repository_paths     text[] NOT NULL DEFAULT '{}',
    max_concurrent_loads int NOT NULL DEFAULT 2,
    network              vcl.name_t,
    state                text NOT NULL DEFAULT 'available',
    created_at           timestamptz NOT NULL DEFAULT now(),
    repository_location  text NOT NULL DEFAULT 'node',
    CONSTRAINT node_name_key UNIQUE (name),
    CONSTRAINT node_transport_valid CHECK (transport IN ('local', 'ssh')),
    CONSTRAINT node_ssh_needs_host CHECK (transport <> 'ssh' OR ssh_host IS NOT NULL),
    -- a host name, IPv4 or IPv6 literal; never starts with '-' (no option injection)
    CONSTRAINT node_ssh_host_valid CHECK (ssh_host ~ '^[A-Za-z0-9_.:\[\]][A-Za-z0-9_.:\[\]-]{0,252}$'),
    CONSTRAINT node_ssh_port_valid CHECK (ssh_port BETWEEN 1 AND 65535),
    CONSTRAINT node_libvirt_uri_valid CHECK (libvirt_uri ~ '^[a-z][a-z0-9+.-]*:[^[:space:]]*$'),
    CONSTRAINT node_repository_paths_valid CHECK (vcl.repository_paths_valid(repository_paths)),
    CONSTRAINT node_max_concurrent_loads_positive CHECK (max_concurrent_loads > 0),
    CONSTRAINT node_state_valid CHECK (state IN ('available', 'maintenance')),
    CONSTRAINT node_repository_location_check CHECK (repository_location IN ('node', 'management'))
);
COMMENT ON TABLE vcl.node IS
    'A hypervisor host (VCL vmhost + vmprofile): how to reach its libvirt, where images live, '
    'how many loads it may run at once.';
COMMENT ON COLUMN vcl.node.name IS 'Strict name (vcl.name_t), unique.';
COMMENT ON COLUMN vcl.node.libvirt_uri IS
    'libvirt connection URI, e.g. qemu:///system, qemu+libssh2://user@host:22/system?keyfile=...&known_hosts=..., test:///default.';
COMMENT ON COLUMN vcl.node.transport IS
    'How the worker runs commands and moves files on the node: local (this host) or ssh (libssh2/SFTP).';
COMMENT ON COLUMN vcl.node.ssh_host IS 'ssh transport: host name or address (required when transport = ssh).';
COMMENT ON COLUMN vcl.node.ssh_port IS 'ssh transport: port (default 22).';
COMMENT ON COLUMN vcl.node.ssh_user IS 'ssh transport: user (NULL: the worker''s configured default).';
COMMENT ON COLUMN vcl.node.master_image_dir IS 'Where master images live on the node: <dir>/<file stem>.qcow2.';
COMMENT ON COLUMN vcl.node.cow_dir IS 'Where the computers'' copy-on-write disks live on the node.';
COMMENT ON COLUMN vcl.node.xml_dir IS 'Where domain definitions are written on the node (VCL: /tmp/vcl).';
COMMENT ON COLUMN vcl.node.repository_paths IS
    'Image repository search paths on the node, in order; absolute, may contain * and ? wildcards, '
    'no "." or ".." component. A master missing from master_image_dir is copied from the first match.';
COMMENT ON COLUMN vcl.node.max_concurrent_loads IS
    'At most this many load reservations run on the node at once (enforced by vcl.claim).';
COMMENT ON COLUMN vcl.node.network IS 'libvirt network the NICs attach to; NULL = user-mode networking.';
COMMENT ON COLUMN vcl.node.state IS
    'available, or maintenance: no new load is claimed for its computers (other operations still run).';
-- 'node': the paths are directories on the node; a missing master is
-- converted there with qemu-img convert, and a capture is uploaded there.
-- 'management': the paths are directories on the management host (the
-- worker's machine); a missing master is streamed to the node (SFTP for an
-- ssh node), converted on the node when the formats differ, verified and
-- renamed into place; a capture's new master is copied back from the node
-- into the first repository path here. Either way a file is written under a
-- temporary name, verified, and renamed; a partial file is never a master.
COMMENT ON COLUMN vcl.node.repository_location IS
    'Where repository_paths are: ''node'' (on the hypervisor node; masters are converted there) or '
    '''management'' (on the worker''s host; masters are streamed to the node over SFTP, captures '
    'copied back)';

CREATE TABLE vcl.image (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       vcl.name_t NOT NULL,
    os_type    text NOT NULL DEFAULT 'none',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT image_name_key UNIQUE (name),
    CONSTRAINT image_os_type_valid CHECK (os_type IN ('none', 'linux', 'windows'))
);
COMMENT ON TABLE vcl.image IS 'An image users can reserve; its bits are in vcl.image_revision.';
COMMENT ON COLUMN vcl.image.os_type IS
    'Selects the post_load hook: none (returns at once), linux, windows.';

CREATE TABLE vcl.image_revision (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    image_id   bigint NOT NULL REFERENCES vcl.image (id),
    revision   int NOT NULL,
    file_stem  vcl.name_t NOT NULL,
    size_bytes bigint,
    checksum   text,
    production boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT image_revision_file_stem_key UNIQUE (file_stem),
    CONSTRAINT image_revision_image_id_revision_key UNIQUE (image_id, revision),
    CONSTRAINT image_revision_revision_nonnegative CHECK (revision >= 0),
    CONSTRAINT image_revision_size_nonnegative CHECK (size_bytes >= 0)
);
COMMENT ON TABLE vcl.image_revision IS 'A numbered revision of an image: one master disk file.';
COMMENT ON COLUMN vcl.image_revision.file_stem IS
    'Base name of the master image file (VCL imagerevision.imagename): <master_image_dir>/<file_stem>.qcow2; '
    'also the second half of the domain name <computer>:<file_stem>.';
COMMENT ON COLUMN vcl.image_revision.size_bytes IS 'Size of the master image file, when known.';
COMMENT ON COLUMN vcl.image_revision.checksum IS 'Checksum of the master image file, when known (free form, e.g. sha256:<hex>).';
COMMENT ON COLUMN vcl.image_revision.production IS 'The revision users get by default.';

CREATE TABLE vcl.computer (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                vcl.name_t NOT NULL,
    node_id             bigint NOT NULL REFERENCES vcl.node (id),
    mac0                vcl.mac_t,
    memory_mb           int NOT NULL DEFAULT 512,
    vcpus               int NOT NULL DEFAULT 1,
    node_status         text NOT NULL DEFAULT 'RELOAD',
    current_revision_id bigint REFERENCES vcl.image_revision (id),
    state               text NOT NULL DEFAULT 'available',
    domain_name         text,
    domain_uuid         uuid,
    cow_path            vcl.path_t,
    master_path         vcl.path_t,
    xml_path            vcl.path_t,
    post_load_at        timestamptz,
    status_reason       text,
    status_at           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT computer_name_key UNIQUE (name),
    CONSTRAINT computer_mac0_key UNIQUE (mac0),
    CONSTRAINT computer_memory_mb_range CHECK (memory_mb BETWEEN 64 AND 4194304),
    CONSTRAINT computer_vcpus_range CHECK (vcpus BETWEEN 1 AND 1024),
    CONSTRAINT computer_node_status_valid CHECK (node_status IN ('READY', 'POST_LOAD', 'RELOAD')),
    CONSTRAINT computer_state_valid CHECK (state IN ('available', 'maintenance'))
);
-- The same MAC in another case is the same MAC: libvirt would refuse the
-- second domain at define time; refuse the row instead. (computer_mac0_key
-- stays for ON CONFLICT (mac0).)
CREATE UNIQUE INDEX computer_mac0_lower_key ON vcl.computer (lower(mac0));
-- Joins node -> computers (load cap per node, views).
CREATE INDEX computer_node_id_idx ON vcl.computer (node_id);
-- Computers in maintenance, for vcl.claimable: without it the planner hashes
-- the whole computer table on every claim (2 ms per claim at 20 000
-- computers). Few rows: updates of other computers' state stay cheap.
CREATE INDEX computer_maintenance_idx ON vcl.computer (id) WHERE state = 'maintenance';
COMMENT ON TABLE vcl.computer IS
    'A VM slot on a node (VCL computer): its hardware, and what the worker last found/made on the node.';
COMMENT ON COLUMN vcl.computer.mac0 IS 'MAC of the first NIC (unicast, unique regardless of case).';
COMMENT ON COLUMN vcl.computer.node_status IS
    'Written back by the worker: READY (domain runs the recorded COW of the expected master and post_load ran), '
    'POST_LOAD (all but post_load), RELOAD (anything else).';
COMMENT ON COLUMN vcl.computer.current_revision_id IS 'Image revision loaded on the computer, NULL when none.';
COMMENT ON COLUMN vcl.computer.state IS
    'available, or maintenance: none of its reservations is claimed (not even a rescue) until it is available again.';
COMMENT ON COLUMN vcl.computer.domain_name IS 'libvirt domain the worker defined for it (<computer>:<file stem>), NULL when none.';
COMMENT ON COLUMN vcl.computer.domain_uuid IS 'UUID of that domain (the reservation''s domain_uuid).';
COMMENT ON COLUMN vcl.computer.cow_path IS 'COW disk the computer owns on its node.';
COMMENT ON COLUMN vcl.computer.master_path IS 'Master image the COW disk is backed by.';
COMMENT ON COLUMN vcl.computer.xml_path IS 'Domain definition file written on the node.';
COMMENT ON COLUMN vcl.computer.post_load_at IS 'When the post_load hook last completed for the loaded image.';
COMMENT ON COLUMN vcl.computer.status_reason IS 'Why node_status is what it is (which check failed).';
COMMENT ON COLUMN vcl.computer.status_at IS 'When node_status was last written.';

-- ---------------------------------------------------------------------------
-- Workers
-- ---------------------------------------------------------------------------

CREATE TABLE vcl.worker (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,
    host         text,
    pid          int,
    slots        int,
    version      text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
)
-- Every heartbeat updates heartbeat_at (not indexed): leave room on each
-- page so those updates stay HOT.
WITH (fillfactor = 70);
COMMENT ON TABLE vcl.worker IS
    'One row per vcl-worker process start (vcl.register_worker); heartbeat_at shows it is alive.';
COMMENT ON COLUMN vcl.worker.name IS 'Configured worker name (also its application_name).';
COMMENT ON COLUMN vcl.worker.slots IS 'How many jobs it runs at once.';
COMMENT ON COLUMN vcl.worker.heartbeat_at IS 'Last vcl.heartbeat call: a worker whose heartbeat is old is dead or hung.';
COMMENT ON COLUMN vcl.worker.stopped_at IS 'Set by vcl.worker_stopped on a clean exit; NULL while running (or after a crash).';

-- ---------------------------------------------------------------------------
-- The queue
-- ---------------------------------------------------------------------------

-- Fencing tokens: every claim of a reservation row takes the next value, so a
-- token names one lease of one row and a later lease always has a larger one.
CREATE SEQUENCE vcl.lease_token_seq AS bigint NO CYCLE;
COMMENT ON SEQUENCE vcl.lease_token_seq IS
    'Fencing tokens: vcl.claim gives every lease the next value (strictly increasing).';

CREATE TABLE vcl.reservation (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    computer_id       bigint NOT NULL REFERENCES vcl.computer (id),
    image_revision_id bigint REFERENCES vcl.image_revision (id),
    operation         text NOT NULL DEFAULT 'load',
    state             text NOT NULL DEFAULT 'pending',
    stage             text,
    priority          int NOT NULL DEFAULT 0,
    run_at            timestamptz NOT NULL DEFAULT now(),
    attempts          int NOT NULL DEFAULT 0,
    max_attempts      int NOT NULL DEFAULT 5,
    lease_token       bigint,
    -- vcl.worker.id, but no foreign key: its check ran once per claimed row
    -- (9 us each) and again on completion inside the claim's transaction.
    -- Views join vcl.worker with LEFT JOIN, so a deleted worker row shows as
    -- NULL there.
    worker_id         bigint,
    lease_expires_at  timestamptz,
    last_error        text,
    failed_stage      text,
    domain_uuid       uuid NOT NULL DEFAULT gen_random_uuid(),
    domain_xml        text,
    args              jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    lease_expiries    int NOT NULL DEFAULT 0,
    blocks_until      timestamptz,
    CONSTRAINT reservation_operation_valid CHECK (operation IN (
        'load', 'capture', 'power_on', 'power_off', 'power_reset', 'shutdown', 'delete',
        'snapshot_create', 'snapshot_delete', 'snapshot_revert', 'maintenance', 'node_status', 'noop')),
    CONSTRAINT reservation_state_valid CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    CONSTRAINT reservation_load_needs_image CHECK (operation <> 'load' OR image_revision_id IS NOT NULL),
    CONSTRAINT reservation_running_has_lease CHECK (
        state <> 'running' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT reservation_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 100),
    CONSTRAINT reservation_attempts_nonnegative CHECK (attempts >= 0),
    CONSTRAINT reservation_args_object CHECK (jsonb_typeof(args) = 'object')
)
-- fillfactor 80: heartbeats (lease_expires_at) and checkpoints (stage) are
-- the most frequent updates and touch no indexed column (nor any column of
-- an index predicate), so with free space on the page they are HOT updates:
-- no new index entries, pruned without VACUUM. Keep it so: never index
-- lease_expires_at or stage, not even in a partial index's WHERE.
--
-- Autovacuum: claim and completion change `state` (in every partial index
-- predicate), so they are not HOT and leave dead index entries in the small
-- claimable-set index that every claim scans. Scale 0.01 + threshold 1000
-- vacuums after ~1000 dead rows plus 1% of the table instead of the default
-- 20%: the table also holds history (until vcl.prune_history removes it), and
-- the default would let a table of a million finished rows collect 200 000
-- dead ones before a vacuum. Vacuuming often is cheap here: history pages are
-- all-visible and skipped through the visibility map. Analyze as often, so
-- the planner's idea of how many rows are pending stays current.
WITH (fillfactor = 80,
      autovacuum_vacuum_scale_factor = 0.01,
      autovacuum_vacuum_threshold = 1000,
      autovacuum_vacuum_insert_scale_factor = 0.05,
      autovacuum_analyze_scale_factor = 0.02,
      autovacuum_analyze_threshold = 1000);

-- Pending rows only, in claim order: history never slows the claim, and a
-- claim (pending -> running) adds entries to the primary key and the
-- one-running-per-computer index only. Rescues (running rows whose lease
-- expired) are found through the running rows' own index below.
CREATE INDEX reservation_claim_idx ON vcl.reservation (priority DESC, run_at, id)
    WHERE state = 'pending';
-- Per computer: "is there an earlier pending row of this computer?"
CREATE INDEX reservation_computer_pending_idx ON vcl.reservation (computer_id, id)
    WHERE state = 'pending';
-- Pending rows by due time, for vcl.next_due: holds only pending rows, so a
-- claim adds nothing to it.
CREATE INDEX reservation_pending_run_at_idx ON vcl.reservation (run_at) WHERE state = 'pending';
-- Unfinished loads only: lets vcl.claim find the nodes it must lock, and count
-- running loads per node, without reading other operations; empty when no
-- load is queued, so claims of other operations do not pay for the cap.
CREATE INDEX reservation_load_active_idx ON vcl.reservation (computer_id, id)
    WHERE operation = 'load' AND state IN ('pending', 'running');
-- Hard backstop: never two running reservations for one computer, whatever
-- a claim, a DBA or a bug does.
CREATE UNIQUE INDEX reservation_one_running_per_computer ON vcl.reservation (computer_id)
    WHERE state = 'running';
-- Reservations cancelled while running: each blocks its computer until
-- blocks_until (see vcl.cancel). Small: only such rows, until pruned. (Not a
-- predicate on lease_expires_at: a column in any index or index predicate
-- would make every heartbeat a non-HOT update.)
CREATE INDEX reservation_blocks_idx ON vcl.reservation (computer_id)
    WHERE blocks_until IS NOT NULL;
-- Retention: vcl.prune_history deletes the oldest finished rows in batches.
CREATE INDEX reservation_finished_idx ON vcl.reservation (finished_at)
    WHERE state IN ('done', 'failed', 'cancelled');
-- (No full index on computer_id / image_revision_id / worker_id for the
-- foreign keys: deleting a computer, revision or worker row is rare, and each
-- extra index would be maintained by every claim and completion.)

COMMENT ON TABLE vcl.reservation IS
    'The queue: one unit of work (operation) on one computer. Insert a row to ask for work; '
    'reset a finished row with UPDATE ... SET state = ''pending'' to retry it from its checkpoint '
    '(also SET stage = NULL to rerun every stage).';
COMMENT ON COLUMN vcl.reservation.image_revision_id IS 'Image revision to load (required for load) or the capture target.';
COMMENT ON COLUMN vcl.reservation.operation IS
    'load, capture, power_on, power_off, power_reset, shutdown, delete (unload), snapshot_create, '
    'snapshot_delete, snapshot_revert, maintenance, node_status, noop.';
COMMENT ON COLUMN vcl.reservation.state IS
    'pending (waiting for run_at and a worker), running (leased by worker_id), done, failed, cancelled.';
COMMENT ON COLUMN vcl.reservation.stage IS
    'Checkpoint: name of the last FINISHED stage (NULL = none). A retry resumes after it; set NULL to rerun every stage.';
COMMENT ON COLUMN vcl.reservation.priority IS 'Higher first; then run_at, then id.';
COMMENT ON COLUMN vcl.reservation.run_at IS 'Not claimed before this time (retry backoff, scheduling).';
COMMENT ON COLUMN vcl.reservation.attempts IS 'Claims so far (a graceful hand-back does not count; a DBA reset sets 0).';
COMMENT ON COLUMN vcl.reservation.max_attempts IS 'After this many attempts a failure or an expired lease fails the row for good.';
COMMENT ON COLUMN vcl.reservation.lease_token IS
    'Fencing token of the current (or last) lease; every write by a worker must present it.';
COMMENT ON COLUMN vcl.reservation.worker_id IS
    'Worker holding (or that last held) the lease: vcl.worker.id (a plain number, not a foreign key: '
    'worker rows may be deleted).';
COMMENT ON COLUMN vcl.reservation.lease_expires_at IS
    'A running row whose lease expired is taken over by the next claim (its worker died or hung).';
COMMENT ON COLUMN vcl.reservation.last_error IS 'Last error, written by the worker (or the claim, for a lease that kept expiring).';
COMMENT ON COLUMN vcl.reservation.failed_stage IS 'Stage that was running when last_error happened.';
COMMENT ON COLUMN vcl.reservation.domain_uuid IS 'UUID of the libvirt domain this reservation defines: stable across retries.';
COMMENT ON COLUMN vcl.reservation.domain_xml IS 'Domain XML generated by the generate_xml stage.';
COMMENT ON COLUMN vcl.reservation.args IS 'Operation arguments (a JSON object), e.g. a snapshot name.';
COMMENT ON COLUMN vcl.reservation.started_at IS 'First claim.';
COMMENT ON COLUMN vcl.reservation.finished_at IS 'When it became done, failed or cancelled.';
COMMENT ON COLUMN vcl.reservation.blocks_until IS
    'Set when a running reservation is cancelled: the lease its worker held. Until then that worker may still be '
    'inside a stage, so the computer''s other reservations (and, for a load, the node''s load slot) wait.';
COMMENT ON COLUMN vcl.reservation.lease_expiries IS
    'How many times a lease on this row expired and the claim took it over (or failed it).';

CREATE TABLE vcl.reservation_stage (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reservation_id bigint NOT NULL REFERENCES vcl.reservation (id) ON DELETE CASCADE,
    attempt        int,
    lease_token    bigint,
    worker_id      bigint,
    stage          text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz,
    outcome        text NOT NULL DEFAULT 'running',
    detail         text,
    duration_ms    double precision
                   GENERATED ALWAYS AS (extract(epoch FROM finished_at - started_at) * 1000) STORED,
    CONSTRAINT reservation_stage_outcome_valid CHECK (outcome IN ('running', 'ok', 'failed', 'skipped', 'abandoned'))
)
-- Rows are inserted at stage start and updated once at its finish (no
-- indexed column changes): room for that HOT update.
WITH (fillfactor = 90);
CREATE INDEX reservation_stage_reservation_idx ON vcl.reservation_stage (reservation_id, id);
-- vcl.stage_estimate reads the newest runs of one stage through this index
-- (bounded cost, however long the log). Its columns never change after the
-- insert, so the stage finish stays a HOT update.
CREATE INDEX reservation_stage_stage_idx ON vcl.reservation_stage (stage, started_at);
COMMENT ON TABLE vcl.reservation_stage IS
    'Append-only stage log (VCL computerloadlog): one row per stage run, written by vcl.stage_start/vcl.stage_finish.';
COMMENT ON COLUMN vcl.reservation_stage.attempt IS 'reservation.attempts when the stage started.';
COMMENT ON COLUMN vcl.reservation_stage.lease_token IS 'Lease under which the stage ran.';
COMMENT ON COLUMN vcl.reservation_stage.worker_id IS 'Worker that ran it (a plain number: worker rows may be deleted).';
COMMENT ON COLUMN vcl.reservation_stage.outcome IS
    'running, ok, failed, skipped, or abandoned (its lease was lost or the reservation cancelled before it finished).';
COMMENT ON COLUMN vcl.reservation_stage.detail IS 'What the stage found and did, or its error.';
COMMENT ON COLUMN vcl.reservation_stage.duration_ms IS 'finished_at - started_at in milliseconds (NULL while running).';

-- ---------------------------------------------------------------------------
-- Captures
-- ---------------------------------------------------------------------------

-- What a capture reservation is making, reserved before any file is written
-- (worker/ops/op_capture.c). A capture turns a computer's disk into a new
-- revision of its image. Its first stage picks the target (revision = max + 1
-- for the image, file stem "<image>-v<revision>" unless the reservation's
-- args name one) and records it here, in the same fenced statement family as
-- every other worker write. Every later stage, and every rerun after a crash,
-- reads the target back from this row, so a capture registers exactly one
-- revision, however often it is retried. The unique keys make two captures of
-- one image pick different revisions and stems (the loser of a race retries
-- and picks the next number). A capture that fails for good keeps its
-- number: revisions can have holes, as sequences do, and its files never
-- collide with a later capture's.
CREATE TABLE vcl.capture (
    reservation_id        bigint PRIMARY KEY REFERENCES vcl.reservation (id) ON DELETE CASCADE,
    image_id              bigint NOT NULL REFERENCES vcl.image (id),
    revision              int NOT NULL,
    file_stem             vcl.name_t NOT NULL,
    source_revision_id    bigint REFERENCES vcl.image_revision (id) ON DELETE SET NULL,
    image_revision_id     bigint REFERENCES vcl.image_revision (id) ON DELETE SET NULL,
    reload_reservation_id bigint,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT capture_image_id_revision_key UNIQUE (image_id, revision),
    CONSTRAINT capture_file_stem_key UNIQUE (file_stem),
    CONSTRAINT capture_revision_positive CHECK (revision > 0)
);
COMMENT ON TABLE vcl.capture IS
    'The target of a capture reservation (one row per capture), recorded by its first stage before any '
    'file is written, so that reruns make and register the same revision.';
COMMENT ON COLUMN vcl.capture.revision IS 'The revision number the capture registers (max + 1 for the image when it started).';
COMMENT ON COLUMN vcl.capture.file_stem IS 'File stem of the new master: <master_image_dir>/<file_stem>.qcow2 and the repository copy.';
COMMENT ON COLUMN vcl.capture.source_revision_id IS 'The revision the computer had loaded when the capture started.';
COMMENT ON COLUMN vcl.capture.image_revision_id IS 'The vcl.image_revision row the register stage inserted (NULL until then).';
COMMENT ON COLUMN vcl.capture.reload_reservation_id IS
    'With args {"after": "reload"}: the load reservation queued for the new revision (NULL when none).';

-- ---------------------------------------------------------------------------
-- Stage estimates (vcl.stage_estimate in sql/functions/progress.sql)
-- ---------------------------------------------------------------------------

-- Fallbacks when a stage has no history yet (VCL used such fixed estimates
-- per load state). A DBA may edit them; the rows below are the defaults a
-- new database starts with.
CREATE TABLE vcl.stage_default_estimate (
    stage       text PRIMARY KEY,
    estimate_ms double precision NOT NULL CONSTRAINT stage_default_estimate_positive CHECK (estimate_ms >= 0)
);
COMMENT ON TABLE vcl.stage_default_estimate IS
    'Fallback duration per stage name when no operation has run it yet (stage ''*'': any other stage). '
    'A DBA may edit these; history replaces them as soon as a stage has run once.';

INSERT INTO vcl.stage_default_estimate (stage, estimate_ms) VALUES
    ('*',             1000),
    -- load
    ('cleanup',       2000),
    ('generate_xml',   100),
    ('pre_define',   30000),
    ('write_xml',      200),
    ('define',         500),
    ('power_on',      2000),
    ('post_load',    60000),
    ('node_status',    500),
    -- node_status, power, snapshots, delete, maintenance
    ('check',          500),
    ('power_off',     2000),
    ('shutdown',     30000),
    ('snapshot_create', 5000),
    ('snapshot_delete', 2000),
    ('snapshot_revert', 5000),
    -- capture
    ('flatten',     120000),
    ('verify',       20000),
    ('publish',       1000),
    ('upload',      120000),
    ('register',       200),
    ('remove',        3000),
    ('maintenance',    200),
    ('after',          500);

-- ---------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------

-- The two database roles of the design:
--   vcl_worker  what a vcl-worker needs (NOLOGIN: grant it to the login role
--               the worker connects as: GRANT vcl_worker TO vclw;)
--   vcl_reader  read-only, for DBAs and dashboards
-- Roles are cluster-wide: creating one is skipped with a NOTICE when it exists
-- already or the migrating user lacks CREATEROLE, so this never fails for
-- that. What each role may do is granted by sql/functions/grants.sql on
-- every migrate, whenever the role exists: a DBA who creates the roles after
-- the first migrate runs `vclctl migrate` again.
DO $$
DECLARE
    r text;
    can_create boolean;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO can_create FROM pg_roles WHERE rolname = current_user;
    FOREACH r IN ARRAY ARRAY['vcl_worker', 'vcl_reader'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            RAISE NOTICE 'role % exists already: not created', r;
        ELSIF NOT coalesce(can_create, false) THEN
            RAISE NOTICE 'role % not created: % lacks CREATEROLE (a DBA can: CREATE ROLE % NOLOGIN; then run vclctl migrate again)',
                r, current_user, r;
        ELSE
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            RAISE NOTICE 'role % created', r;
        END IF;
    END LOOP;
END;
$$;
