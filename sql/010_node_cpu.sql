-- 010_node_cpu.sql: the guest CPU a node's domains get.
--
-- Hosts differ: host-passthrough and host-model crash QEMU at start on some
-- (nested or PVM kernels: "failed to set MSR 0x10a"), a named model may lack a
-- flag libvirt insists on. So the CPU is a node setting:
--   auto (default)     the worker probes once per node (a disk-less throwaway
--                      domain started with each candidate: host-passthrough,
--                      host-model, the hypervisor's baseline model, qemu64) and
--                      records the first that starts in cpu_mode_resolved,
--                      with why the others were rejected in cpu_probe;
--   host-passthrough, host-model, custom:<model>  forced; never probed.
-- Changing cpu_mode forgets the probe (trigger below): the next load or
-- `vclctl node check` probes again. A computer keeps the CPU it was loaded
-- with (its domain is never redefined behind its user's back) until its next
-- load.

ALTER TABLE vcl.node
    ADD COLUMN cpu_mode text NOT NULL DEFAULT 'auto'
        CONSTRAINT node_cpu_mode_valid
        CHECK (cpu_mode ~ '^(auto|host-passthrough|host-model|custom:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$'),
    ADD COLUMN cpu_mode_resolved text
        CONSTRAINT node_cpu_mode_resolved_valid
        CHECK (cpu_mode_resolved ~ '^(host-passthrough|host-model|custom:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$'),
    ADD COLUMN cpu_probe text,
    ADD COLUMN cpu_probed_at timestamptz;

COMMENT ON COLUMN vcl.node.cpu_mode IS
    'Guest CPU: auto (probed once per node, see cpu_mode_resolved), host-passthrough, host-model '
    'or custom:<model> (e.g. custom:EPYC, custom:qemu64; with check=none).';
COMMENT ON COLUMN vcl.node.cpu_mode_resolved IS
    'What auto resolved to on this node (NULL until probed; cleared when cpu_mode changes).';
COMMENT ON COLUMN vcl.node.cpu_probe IS
    'The last probe: each candidate CPU mode with "ok" or why it was rejected.';
COMMENT ON COLUMN vcl.node.cpu_probed_at IS 'When cpu_probe was written.';

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
REVOKE EXECUTE ON FUNCTION vcl.node_cpu_mode_changed() FROM PUBLIC;

CREATE TRIGGER node_cpu_mode_changed BEFORE UPDATE OF cpu_mode ON vcl.node
    FOR EACH ROW EXECUTE FUNCTION vcl.node_cpu_mode_changed();

-- The worker records what it probed (and nothing else of the node row).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vcl_worker') THEN
        GRANT UPDATE (cpu_mode_resolved, cpu_probe, cpu_probed_at) ON vcl.node TO vcl_worker;
    END IF;
END $$;
