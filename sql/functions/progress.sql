-- functions/progress.sql: how long a stage will take, and what a running
-- stage is doing now (vclctl show --follow, vclctl top).
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`, after the
-- numbered migrations, in the same transaction; every object here is
-- CREATE OR REPLACE.
--
-- Estimates come from history: the median duration of the last p_runs
-- successful runs of (operation, node, stage); with none on that node, of
-- (operation, stage) on every node; with none at all, a built-in default per
-- stage kind (vcl.stage_default_estimate, editable by a DBA; VCL used such
-- fixed estimates per load state). The stage log is large, so the history
-- is read through an index on (stage, started_at) walking back from the
-- newest run and looking at most p_window rows of that stage: cost is
-- bounded, however long the log (about 6 ms a stage with p_window 2000 on
-- 1.2 million rows). The index is on columns that never change after the
-- insert, so the stage finish stays a HOT update.
--
-- vcl.stage_progress lets a long stage (a copy) report how far it is in
-- the running stage row's detail; its finish overwrites it with the result.

CREATE OR REPLACE FUNCTION vcl.stage_estimate(p_operation text, p_node_id bigint, p_stage text,
                                              p_runs int DEFAULT 50, p_window int DEFAULT 2000,
                                              p_exclude_reservation bigint DEFAULT NULL,
                                              OUT estimate_ms double precision, OUT source text, OUT runs int)
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_ms   double precision[];
    v_node bigint[];
BEGIN
    -- One pass over the newest p_window rows of this stage (any outcome, any
    -- operation), newest first. By started_at, not id: only the (stage,
    -- started_at) index gives that order, while "ORDER BY id" lets the
    -- planner walk the primary key backwards filtering on stage, which reads
    -- most of the log when the stage is rare among recent rows (measured:
    -- 100 ms instead of 6). The durations of this operation's successful
    -- runs and their nodes come back as two arrays in that order.
    WITH recent AS MATERIALIZED (
        SELECT s.reservation_id, s.outcome, s.duration_ms, s.started_at
          FROM vcl.reservation_stage s
         WHERE s.stage = p_stage
         ORDER BY s.started_at DESC
         LIMIT p_window)
    SELECT array_agg(x.duration_ms ORDER BY x.started_at DESC),
           array_agg(coalesce(r.node_id, c.node_id) ORDER BY x.started_at DESC)
      INTO v_ms, v_node
      FROM recent x
      JOIN vcl.reservation r ON r.id = x.reservation_id
      LEFT JOIN vcl.computer c ON c.id = r.computer_id
     WHERE x.outcome = 'ok' AND x.duration_ms IS NOT NULL AND r.operation = p_operation
       AND x.reservation_id IS DISTINCT FROM p_exclude_reservation;

    -- the last p_runs on this node
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY h.ms), count(*)
      INTO estimate_ms, runs
      FROM (SELECT u.ms FROM unnest(v_ms, v_node) WITH ORDINALITY AS u(ms, node, ord)
             WHERE u.node = p_node_id ORDER BY u.ord LIMIT p_runs) h;
    IF runs > 0 THEN
        source := 'node';
        RETURN;
    END IF;
    -- else the last p_runs on any node
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY h.ms), count(*)
      INTO estimate_ms, runs
      FROM (SELECT u.ms FROM unnest(v_ms) WITH ORDINALITY AS u(ms, ord)
             ORDER BY u.ord LIMIT p_runs) h;
    IF runs > 0 THEN
        source := 'operation';
        RETURN;
    END IF;

    runs := 0;
    source := 'default';
    SELECT d.estimate_ms INTO estimate_ms FROM vcl.stage_default_estimate d WHERE d.stage = p_stage;
    IF NOT FOUND THEN
        SELECT d.estimate_ms INTO estimate_ms FROM vcl.stage_default_estimate d WHERE d.stage = '*';
        estimate_ms := coalesce(estimate_ms, 1000);
    END IF;
END;
$$;
COMMENT ON FUNCTION vcl.stage_estimate(text, bigint, text, int, int, bigint) IS
    'Expected duration (ms) of stage p_stage of operation p_operation on node p_node_id: the median of the '
    'last p_runs successful runs there (source ''node''), else on any node (''operation''), else the '
    'built-in default (''default'', vcl.stage_default_estimate). Only the newest p_window rows of the stage '
    'are looked at, so the cost is bounded; p_exclude_reservation leaves one reservation''s own runs out. '
    'runs = how many runs the median is of.';

CREATE OR REPLACE FUNCTION vcl.reservation_estimates(p_id bigint, p_stages text[])
    RETURNS TABLE (ord int, stage text, estimate_ms double precision, source text, runs int)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT st.ord::int, st.stage, e.estimate_ms, e.source, e.runs
      FROM vcl.reservation r
      LEFT JOIN vcl.computer c ON c.id = r.computer_id
     CROSS JOIN LATERAL unnest(p_stages) WITH ORDINALITY AS st(stage, ord)
     CROSS JOIN LATERAL vcl.stage_estimate(r.operation, coalesce(r.node_id, c.node_id), st.stage,
                                           p_exclude_reservation => r.id) e
     WHERE r.id = p_id
     ORDER BY st.ord;
END;
COMMENT ON FUNCTION vcl.reservation_estimates(bigint, text[]) IS
    'vcl.stage_estimate for each stage of p_stages (the stages of reservation p_id''s operation, in order) '
    'on the reservation''s node, from the history of other reservations (its own runs left out).';

CREATE OR REPLACE FUNCTION vcl.stage_progress(p_id bigint, p_token bigint, p_detail text)
    RETURNS boolean
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    -- No row lock on the reservation: progress is information only, and a
    -- takeover (new token) or a cancel makes the fence fail from then on.
    WITH upd AS (
        UPDATE vcl.reservation_stage s
           SET detail = p_detail
          FROM vcl.reservation r
         WHERE r.id = p_id AND vcl.running_token(r.state, r.lease_token) = p_token
           AND s.reservation_id = r.id AND s.lease_token = r.lease_token AND s.outcome = 'running'
        RETURNING s.id)
    SELECT count(*) > 0 FROM upd;
END;
COMMENT ON FUNCTION vcl.stage_progress(bigint, bigint, text) IS
    'Fenced: set the detail of reservation p_id''s running stage row under lease p_token (a long stage '
    'reports its progress: "copied 1.2 GiB of 4.0 GiB (31%), ..."); its finish replaces it. false (nothing '
    'written) when the lease is lost or no stage runs.';
