-- functions/stages.sql: the fenced stage log (VCL's computerloadlog, but one
-- that a retry resumes from): every stage start and finish of a job is a row
-- of vcl.reservation_stage, written under the job's lease, and the finish
-- advances the reservation's checkpoint in the same transaction.
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`, after the
-- numbered migrations, in the same transaction; every object here is
-- CREATE OR REPLACE.

CREATE OR REPLACE FUNCTION vcl.stage_start(p_id bigint, p_token bigint, p_stage text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_row bigint;
BEGIN
    -- FOR SHARE: a concurrent takeover or cancel of the row waits for this
    -- insert, or (if it committed first) makes the fence fail here.
    INSERT INTO vcl.reservation_stage (reservation_id, attempt, lease_token, worker_id, stage)
    SELECT r.id, r.attempts, r.lease_token, r.worker_id, p_stage
      FROM vcl.reservation r
     WHERE r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
       FOR SHARE
    RETURNING id INTO v_row;
    RETURN v_row;
END;
$$;
COMMENT ON FUNCTION vcl.stage_start(bigint, bigint, text) IS
    'Fenced: log the start of stage p_stage for reservation p_id under lease p_token; returns the stage row id, '
    'or NULL (nothing written) when the lease is lost.';

CREATE OR REPLACE FUNCTION vcl.stage_finish(p_id bigint, p_token bigint, p_stage_row bigint, p_ok boolean,
                                            p_detail text, p_checkpoint boolean)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_stage   text;
    v_outcome text;
BEGIN
    PERFORM set_config('vcl.writer', 'worker', true);  -- its writes are the worker's (guard.sql)
    PERFORM 1 FROM vcl.reservation r
     WHERE r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    SELECT s.stage, s.outcome INTO v_stage, v_outcome
      FROM vcl.reservation_stage s
     WHERE s.id = p_stage_row AND s.reservation_id = p_id AND s.lease_token = p_token;
    IF NOT FOUND THEN
        -- A failover without synchronous replication can lose the stage's
        -- start while the lease survived (sql/006_epoch.sql), and the new
        -- primary may even give the row id to another stage: a row that is
        -- missing, or that another epoch wrote, means this stage's record
        -- is gone: fenced out (the job is abandoned and rescued after its
        -- lease). Within one epoch it is a caller's mistake.
        IF NOT EXISTS (SELECT 1 FROM vcl.reservation_stage s
                        WHERE s.id = p_stage_row AND s.lease_token >> 40 = p_token >> 40) THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION 'vcl.stage_finish: stage row % is not a stage of reservation % under lease %',
            p_stage_row, p_id, p_token
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_outcome <> 'running' THEN
        -- Already finished: a re-sent call (e.g. after a lost connection
        -- whose COMMIT did go through). Same result again; change nothing.
        RETURN v_outcome = CASE WHEN p_ok THEN 'ok' ELSE 'failed' END;
    END IF;

    UPDATE vcl.reservation_stage
       SET finished_at = clock_timestamp(),
           outcome = CASE WHEN p_ok THEN 'ok' ELSE 'failed' END,
           detail = p_detail
     WHERE id = p_stage_row;
    IF p_ok AND p_checkpoint THEN
        UPDATE vcl.reservation SET stage = v_stage WHERE id = p_id;
    END IF;
    RETURN true;
END;
$$;
COMMENT ON FUNCTION vcl.stage_finish(bigint, bigint, bigint, boolean, text, boolean) IS
    'Fenced: finish stage row p_stage_row (ok or failed, with detail); when ok and p_checkpoint, also advance '
    'the reservation''s checkpoint (stage) to it, in the same transaction. false (nothing written) when the lease is lost, '
    'or the stage row is (a failover lost it: missing, or written in another fencing epoch).';

-- A stage that finished ok and the next one: one round trip and one commit
-- instead of two (each of them fsyncs its WAL), the same two rows as
-- vcl.stage_finish + vcl.stage_start. The finish is checked first; the start
-- is written only when the finish was (under the lock the finish took, so it
-- cannot be fenced out in between), and a crash before the commit leaves
-- neither: the stage log never shows a state the two calls could not.
CREATE OR REPLACE FUNCTION vcl.stage_next(p_id bigint, p_token bigint, p_stage_row bigint, p_detail text,
                                          p_next text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF NOT vcl.stage_finish(p_id, p_token, p_stage_row, true, p_detail, true) THEN
        RETURN NULL;
    END IF;
    RETURN vcl.stage_start(p_id, p_token, p_next);
END;
$$;
COMMENT ON FUNCTION vcl.stage_next(bigint, bigint, bigint, text, text) IS
    'Fenced: vcl.stage_finish(p_id, p_token, p_stage_row, ok, p_detail, checkpoint) then vcl.stage_start(p_id, p_token, '
    'p_next) in one transaction; returns the new stage row id, or NULL (nothing written) when the lease is lost or the '
    'stage row is (as vcl.stage_finish).';
