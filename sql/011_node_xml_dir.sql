-- 011_node_xml_dir.sql: the default XML directory of a node moves out of /tmp.
--
-- VCL wrote domain definitions to /tmp/vcl. In a world-writable /tmp any
-- user of the node can create /tmp/vcl first (or plant a link or FIFO in a
-- directory they own), and the worker, often root, would then write where
-- they chose. The default is now /var/lib/vcl-worker/xml: the worker makes
-- it 0755 and owned by the node user, and refuses a directory on the way that
-- is world-writable without the sticky bit or owned by another non-root user.
-- Only the default changes: existing rows keep their xml_dir, and a node row
-- that says /tmp/vcl keeps working (same checks).

ALTER TABLE vcl.node ALTER COLUMN xml_dir SET DEFAULT '/var/lib/vcl-worker/xml';

COMMENT ON COLUMN vcl.node.xml_dir IS
    'Where domain definitions (<file base>.xml) and console logs (<file base>.console.log) are '
    'written on the node; default /var/lib/vcl-worker/xml (VCL used /tmp/vcl, which still works). '
    'Made 0755 and owned by the node user when missing; refused when it or a directory above it is '
    'world-writable without the sticky bit or owned by a user other than root and the node user.';
