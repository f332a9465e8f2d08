-- 007_trust_node.sql: what a node row may say (issue #12, node side; README
-- "Security model"). The worker checks the same in C before it acts
-- (names.c names_build, virt.c virt_uri_check), so a row written before this
-- migration, or by a role that bypasses it, is still refused there.
--
-- 1. Masters and COW disks never share a directory. The file stem
--    "pc2_7-v3" is a valid stem and exactly computer pc2's COW file base: in
--    one shared directory a load of that image would back pc1's disk with
--    pc2's live disk, and a delete of pc2 could remove a master. The COW
--    directory's default moves below the master directory (a stem holds no
--    '/', so no master can be named there).
-- 2. libvirt_uri: only the transports the worker supports, and no query
--    parameter that runs a program (command=, netcat=), picks a socket
--    (socket=) or switches host-key checks off (no_verify,
--    known_hosts_verify=ignore|auto). Escapes ('%'), ';' and '#' are refused
--    outright: libvirt unescapes names and values and splits on ';' too.
--
-- Both constraints are NOT VALID: a node row that breaks them stays (its
-- reservations fail with a clear error from the worker) and must be fixed
-- before it can be updated again; new and updated rows are checked.
-- `ALTER TABLE vcl.node VALIDATE CONSTRAINT ...` proves a database clean.

ALTER TABLE vcl.node ALTER COLUMN cow_dir SET DEFAULT '/var/lib/libvirt/images/vcl-cow';

ALTER TABLE vcl.node ADD CONSTRAINT node_cow_dir_not_master_dir
    CHECK (rtrim(cow_dir, '/') <> rtrim(master_image_dir, '/')) NOT VALID;

ALTER TABLE vcl.node ADD CONSTRAINT node_libvirt_uri_supported
    CHECK (libvirt_uri ~ ('^(qemu:///(system|session)'
                          '|test:///[^?#%;[:space:][:cntrl:]]*'
                          '|qemu\+(libssh2|ssh)://([A-Za-z0-9_][A-Za-z0-9._-]*@)?'
                          '([A-Za-z0-9_.][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/(system|session)'
                          '(\?((keyfile|known_hosts)=/[^&#%;[:space:][:cntrl:]]*'
                          '|known_hosts_verify=normal|(sshauth|no_tty)=[^&#%;[:space:][:cntrl:]]*)'
                          '(&((keyfile|known_hosts)=/[^&#%;[:space:][:cntrl:]]*'
                          '|known_hosts_verify=normal|(sshauth|no_tty)=[^&#%;[:space:][:cntrl:]]*))*)?'
                          ')$')) NOT VALID;

COMMENT ON COLUMN vcl.node.cow_dir IS
    'Where COW disks (<file base>.qcow2) live on the node; never the master image directory '
    '(node_cow_dir_not_master_dir): a file stem could name another computer''s COW disk. '
    'Default /var/lib/libvirt/images/vcl-cow.';
COMMENT ON COLUMN vcl.node.libvirt_uri IS
    'libvirt connection URI: qemu:///system, qemu:///session, '
    'qemu+libssh2://user@host:22/system?keyfile=...&known_hosts=...&sshauth=privkey (or qemu+ssh://), '
    'test:///default (tests). No command=, socket=, netcat=, no_verify, known_hosts_verify other '
    'than normal, no ext/unix/tcp/tls (node_libvirt_uri_supported; the worker checks the same).';
