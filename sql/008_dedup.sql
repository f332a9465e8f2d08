-- 008_dedup.sql: de-duplication of queued work (issue #15 item 4).
--
-- dedup_key is a submitter's name for "this piece of work": while one row
-- with a key is pending or running, a second INSERT with the same key is a
-- unique violation (SQLSTATE 23505), or nothing at all with
-- INSERT ... ON CONFLICT DO NOTHING (the README has the recipe that returns
-- the id of the row already queued). Finished rows (done, failed,
-- cancelled) keep their key for history but no longer hold it. `vclctl
-- load` sets 'load:<computer>'. NULL (the default) never conflicts.
--
-- The key is a submitter's column: sql/functions/guard.sql lets it through
-- and sql/functions/grants.sql grants vcl_submitter its INSERT.

ALTER TABLE vcl.reservation ADD COLUMN dedup_key text;
ALTER TABLE vcl.reservation ADD CONSTRAINT reservation_dedup_key_valid
    CHECK (dedup_key IS NULL OR length(dedup_key) BETWEEN 1 AND 200);
COMMENT ON COLUMN vcl.reservation.dedup_key IS
    'Submitter''s de-duplication key: at most one pending or running row per key (reservation_dedup_key_active); '
    'vclctl load sets load:<computer>. NULL: no de-duplication.';

-- Partial: only the queued rows hold a key, so history costs it nothing and
-- a finished row never blocks the next one. state is already in every
-- partial index predicate of this table (claims and completions are not
-- HOT updates anyway); dedup_key is written on INSERT only.
CREATE UNIQUE INDEX reservation_dedup_key_active ON vcl.reservation (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('pending', 'running');
