-- 005_capture.sql: what a capture reservation is making, reserved before any
-- file is written (worker/op_capture.c).
--
-- A capture turns a computer's disk into a new revision of its image. Its
-- first stage picks the target (revision = max + 1 for the image, file stem
-- "<image>-v<revision>" unless the reservation's args name one) and records
-- it here, in the same fenced statement family as every other worker write.
-- Every later stage, and every rerun after a crash, reads the target back
-- from this row, so a capture registers exactly one revision, however often
-- it is retried. The unique keys make two captures of one image pick
-- different revisions and stems (the loser of a race retries and picks the
-- next number). A capture that fails for good keeps its number: revisions
-- can have holes, as sequences do, and its files never collide with a later
-- capture's.

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

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_worker') THEN
        GRANT SELECT, INSERT, UPDATE ON vcl.capture TO vcl_worker;
        -- register: the new revision; after=reload: the load of it
        GRANT INSERT ON vcl.image_revision TO vcl_worker;
        GRANT INSERT ON vcl.reservation TO vcl_worker;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA vcl TO vcl_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_reader') THEN
        GRANT SELECT ON vcl.capture TO vcl_reader;
    END IF;
END;
$$;
