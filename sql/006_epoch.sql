-- 006_epoch.sql: fencing tokens that stay unique across a failover.
--
-- A lease_token was nextval('vcl.lease_token_seq'). With asynchronous
-- replication a failover can lose the old primary's last commits, and with
-- them the sequence's advance: the new primary hands out a value the old one
-- already gave to a worker that still holds it. The fence the queue rests on
-- (DESIGN.md "Fencing") would see two leases with one token.
--
-- Now a token is (epoch << 40) | seq:
--   seq    nextval('vcl.lease_token_seq'), at most 2^40 - 1 (MAXVALUE below:
--          past it nextval fails rather than spill into the epoch bits);
--   epoch  the row of vcl.epoch below, 1 .. 2^23 - 1 (tokens stay positive
--          bigints). vcl.lease_epoch() (sql/functions/epoch.sql), called by
--          every claim that mints tokens, compares the server it runs on
--          (pg_control_system().system_identifier, and the timeline WAL is
--          written on now) with the row, and bumps the epoch at the first
--          claim on a new primary: a promotion always starts a new timeline,
--          so the new primary's tokens are all larger than any token the old
--          primary handed out, lost or not. Rules (epoch = base + timeline
--          within one system identifier):
--            same system, new timeline  epoch = greatest(epoch + 1, base + timeline)
--            another system (dump and restore, pg_upgrade, logical copy)
--                                       epoch = epoch + 1, base = epoch - timeline
--          Taking base + timeline, not only epoch + 1, matters when the bump
--          itself was lost: B promoted (timeline 2) bumps to epoch 2, then
--          dies before its standby C received that row; C promotes to
--          timeline 3 and takes base + 3 = 3, never 2 again.
-- After a bump, vcl.claim hands out nothing until fenced_until (the bumping
-- claim's lease, or the longest lease still running if later): without
-- synchronous replication the new primary may have lost claims whose
-- workers still run the job; they find their lease gone at their next
-- heartbeat and stop before anyone else is given the job.
-- Tokens minted before this migration are plain sequence values below 2^40:
-- epoch 0, smaller than every new one. One column, one comparison: every
-- fenced statement keeps comparing lease_token with =.

ALTER SEQUENCE vcl.lease_token_seq MAXVALUE 1099511627775;   -- 2^40 - 1
COMMENT ON SEQUENCE vcl.lease_token_seq IS
    'Fencing tokens, low 40 bits: vcl.claim gives every lease (vcl.lease_epoch() << 40) | nextval (strictly increasing).';

CREATE TABLE vcl.epoch (
    id                boolean PRIMARY KEY DEFAULT true CONSTRAINT epoch_one_row CHECK (id),
    epoch             bigint NOT NULL CONSTRAINT epoch_range CHECK (epoch BETWEEN 1 AND 8388607),
    base              bigint NOT NULL,
    system_identifier bigint NOT NULL,
    timeline_id       bigint NOT NULL,
    previous_epoch    bigint,
    fenced_until      timestamptz,
    changed_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vcl.epoch IS
    'One row: the fencing-token epoch (high bits of every lease_token) and the primary it belongs to '
    '(system_identifier from pg_control_system(), timeline_id its WAL timeline when the epoch was taken; '
    'base = epoch - timeline_id; previous_epoch before the last bump, at changed_at). vcl.lease_epoch() bumps it at the '
    'first claim on a new primary (another timeline or system identifier).';
COMMENT ON COLUMN vcl.epoch.epoch IS 'Current epoch: lease_token = epoch << 40 | nextval(vcl.lease_token_seq).';
COMMENT ON COLUMN vcl.epoch.fenced_until IS
    'After a bump, no claim before this time (one lease): a worker may still run a job whose claim the new '
    'primary lost; it notices at its next heartbeat and stops before anyone else gets the job.';
