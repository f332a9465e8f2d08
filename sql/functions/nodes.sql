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
