-- functions/nodes.sql: what keeps a node row consistent when it changes.
--
-- A live file (see ORDER): re-applied by every `vclctl migrate`, after the
-- numbered migrations, in the same transaction; every object here is
-- CREATE OR REPLACE.

-- A changed cpu_mode forgets the old probe, whoever changes it (vclctl or SQL).
CREATE OR REPLACE FUNCTION vcl.node_cpu_mode_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cpu_mode IS DISTINCT FROM OLD.cpu_mode THEN
        NEW.cpu_mode_resolved := NULL;
        NEW.cpu_probe := NULL;
        NEW.cpu_probed_at := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER node_cpu_mode_changed BEFORE UPDATE OF cpu_mode ON vcl.node
    FOR EACH ROW EXECUTE FUNCTION vcl.node_cpu_mode_changed();

-- The report of a node check (vclctl node check, or a worker's node_check
-- reservation) as stored in vcl.node.check_report: the items arrive as four
-- columns of \x1f-separated values (item names, t/f, what was found, the
-- fix), one value per item, in order.
CREATE OR REPLACE FUNCTION vcl.node_check_report(p_items text, p_ok text, p_detail text, p_fix text)
    RETURNS jsonb
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('item', t.item, 'ok', t.ok::boolean,
                                                 'detail', t.detail, 'fix', nullif(t.fix, ''))
                              ORDER BY t.ord), '[]'::jsonb)
      FROM unnest(string_to_array(p_items, E'\x1f'), string_to_array(p_ok, E'\x1f'),
                  string_to_array(p_detail, E'\x1f'), string_to_array(p_fix, E'\x1f'))
           WITH ORDINALITY AS t(item, ok, detail, fix, ord)
     WHERE p_items <> '';
$$;
COMMENT ON FUNCTION vcl.node_check_report(text, text, text, text) IS
    'A node check''s items (four \x1f-separated columns) as the jsonb array kept in vcl.node.check_report.';

-- Record a node check on its node: the report, whether every item passed,
-- and, when the CPU probe ran (p_probed), its findings: a fresh check
-- replaces the old probe, and an auto node resolves to what it found
-- (p_cpu_chosen; '' = nothing started). vclctl node check calls it
-- directly; a worker's node_check calls it fenced on its lease
-- (worker/queue/statements.h SQL_NODE_CHECKED). true when the node exists.
CREATE OR REPLACE FUNCTION vcl.node_check_record(p_node bigint, p_items text, p_ok text,
                                                 p_detail text, p_fix text, p_probed boolean,
                                                 p_cpu_chosen text, p_cpu_report text)
    RETURNS boolean
    LANGUAGE sql VOLATILE
AS $$
    UPDATE vcl.node n
       SET checked_at = now(),
           check_report = vcl.node_check_report(p_items, p_ok, p_detail, p_fix),
           check_ok = p_items <> '' AND NOT ('f' = ANY (string_to_array(p_ok, E'\x1f'))),
           cpu_probe = CASE WHEN p_probed THEN p_cpu_report ELSE n.cpu_probe END,
           cpu_probed_at = CASE WHEN p_probed THEN now() ELSE n.cpu_probed_at END,
           cpu_mode_resolved = CASE WHEN p_probed AND n.cpu_mode = 'auto' THEN nullif(p_cpu_chosen, '')
                                    ELSE n.cpu_mode_resolved END
     WHERE n.id = p_node
 RETURNING true;
$$;
COMMENT ON FUNCTION vcl.node_check_record(bigint, text, text, text, text, boolean, text, text) IS
    'Store a node check (report, check_ok, checked_at) and its CPU probe on the node row.';
