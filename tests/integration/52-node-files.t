#!/usr/bin/env bash
# Files on a node are opened safely. Someone who can write a node directory
# plants, where a load writes or reads, a symbolic link (to a file the worker
# must never touch) or a FIFO (that would hang a reader or writer): at the
# console-log path and at the XML path, over the local and the ssh transport.
# Each load fails at once (permanent, one attempt, the worker never blocks)
# with an error naming the path and what is there, defines no domain, and the
# link's target keeps its content and mtime. Directories: one that is
# world-writable without the sticky bit, and one owned by another non-root
# user (nobody), are refused with the problem and the command that fixes it
# (chmod o-w DIR / chown USER DIR), and nothing is created below them; after
# the fix a DBA retry finishes the load, and the directories the worker made
# are 0755 and owned by the node user. A FIFO put at the console log while
# post_load reads it fails that stage at once. The workers prefer the qemu
# (TCG) driver, whose domains start even where KVM cannot (nested hosts).
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (the drivers need QEMU's domain types)"
((EUID == 0)) || skip_all "planting files owned by another user needs root"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="t${WORLD##*.}"

ok "migrate" "$VCLCTL" migrate
is "$(psql_val "SELECT column_default FROM information_schema.columns
                 WHERE table_schema = 'vcl' AND table_name = 'node' AND column_name = 'xml_dir'")" \
   "'/var/lib/vcl-worker/xml'::text" "the default xml_dir is /var/lib/vcl-worker/xml (migration 011)"
psql_val "INSERT INTO vcl.node (name, libvirt_uri, xml_dir) VALUES ('$T-old', 'test:///default', '/tmp/vcl')" >/dev/null
is "$(psql_val "SELECT xml_dir FROM vcl.node WHERE name = '$T-old'")" /tmp/vcl "a node row may still say /tmp/vcl"
psql_val "DELETE FROM vcl.node WHERE name = '$T-old'" >/dev/null

qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
ok "node1 (local)" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo" --max-loads 4
ok "image add" "$VCLCTL" image add "$T-blank" --os-type none
ok "revision 1" "$VCLCTL" image revision-add "$T-blank" --revision 1 --file-stem "$T-blank-v1"
image_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")
world_track_domains "$T-"
n_pc=0
# computer NAME NODE: add it (unique MAC)
computer() {
    n_pc=$((n_pc + 1))
    "$VCLCTL" computer add "$1" --node "$2" --mac "52:54:00:5e:$(printf %02x $((n_pc / 256))):$(printf %02x $((n_pc % 256)))" \
        --memory 128 --vcpus 1 >/dev/null
}
# qemu (TCG) first: its domains start even where KVM cannot (nested hosts).
cfg=$(world_config w1 "driver_order: [qemu, kvm]")

# The file no one may touch through a planted link.
SECRET=$WORLD/secret.txt
printf 'do not touch\n' >"$SECRET"
touch -d '2001-02-03 04:05:06' "$SECRET"
secret_mtime=$(stat -c %Y "$SECRET")

# run_load PC CFG: queue a load of PC, run a draining worker (bounded: a
# worker that blocks on a FIFO is killed after 180 s and the test fails);
# sets ID, RC (worker exit status) and TOOK (seconds).
run_load() {
    local pc=$1 conf=$2 t0
    ID=$("$VCLCTL" load "$pc" "$T-blank:1")
    t0=$SECONDS
    RC=0
    timeout -k 5 180 "$WORKER" --config "$conf" --drain 2>>"$WORLD/worker.log" || RC=$?
    TOOK=$((SECONDS - t0))
}

# refused WHAT REGEX STAGE: the load ID failed for good at STAGE with an
# error matching REGEX, quickly, without a domain.
refused() {
    local what=$1 re=$2 stage=$3 pc
    isnt "$RC" 124 "$what: the worker did not block (exit $RC after ${TOOK}s)"
    is "$(psql_val "SELECT r.state || ' ' || r.attempts || ' ' || coalesce(s.stage, '-')
                      FROM vcl.reservation r LEFT JOIN vcl.reservation_stage s
                        ON s.reservation_id = r.id AND s.outcome = 'failed'
                     WHERE r.id = $ID")" \
       "failed 1 $stage" "$what: failed at once (permanent) in $stage"
    like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $ID")" "$re" "$what: the error says what is wrong"
    pc=$(psql_val "SELECT c.name FROM vcl.reservation r JOIN vcl.computer c ON c.id = r.computer_id WHERE r.id = $ID")
    is "$(V list --all --name | grep -c "^$pc:")" 0 "$what: no domain was defined"
}

secret_untouched() {
    is "$(cat "$SECRET")" "do not touch" "$1: the link's target kept its content"
    is "$(stat -c %Y "$SECRET")" "$secret_mtime" "$1: and its mtime"
}

base() { echo "$1_${image_id}-v1"; }

# --- 1. local node: console log and XML paths -------------------------------
computer "$T-pc1" node1
computer "$T-pc2" node1
computer "$T-pc3" node1
computer "$T-pc4" node1

log1=$WORLD/xml/$(base "$T-pc1").console.log
ln -s "$SECRET" "$log1"
run_load "$T-pc1" "$cfg"
id_pc1=$ID
refused "link at the console log" "refusing to use '$log1': it is a symbolic link, not a regular file" write_xml
secret_untouched "link at the console log"
ok "the planted link is still a link (left for the operator)" test -L "$log1"
ok "no XML was written next to it" test ! -e "$WORLD/xml/$(base "$T-pc1").xml"

log2=$WORLD/xml/$(base "$T-pc2").console.log
mkfifo "$log2"
run_load "$T-pc2" "$cfg"
refused "FIFO at the console log" "refusing to use '$log2': it is a FIFO, not a regular file" write_xml

xml3=$WORLD/xml/$(base "$T-pc3").xml
ln -s "$SECRET" "$xml3"
run_load "$T-pc3" "$cfg"
refused "link at the XML path" "refusing to replace '$xml3': it is a symbolic link, not a regular file" write_xml
secret_untouched "link at the XML path"
ok "the link at the XML path was not replaced" test -L "$xml3"
is "$(find "$WORLD/xml" -name '*.tmp-*' | wc -l)" 0 "no temporary XML file left behind"

xml4=$WORLD/xml/$(base "$T-pc4").xml
mkfifo "$xml4"
run_load "$T-pc4" "$cfg"
refused "FIFO at the XML path" "refusing to replace '$xml4': it is a FIFO, not a regular file" write_xml
ok "the FIFO is still a FIFO" test -p "$xml4"

# stages_ok ID STAGE: STAGE finished ok for reservation ID (the run may stop
# later: on a host where QEMU cannot start, power_on fails).
stage_ok() {
    is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = '$2' AND outcome = 'ok'")" \
       1 "${3:-reservation $1}: $2 ok"
}
drain() { timeout -k 5 300 "$WORKER" --config "$1" --drain 2>>"$WORLD/worker.log" || true; }

# The operator removes what was planted; a DBA retry gets past write_xml.
rm -f "$log1"
ok "retry after removing the planted link" "$VCLCTL" retry "$id_pc1"
drain "$cfg"
stage_ok "$id_pc1" write_xml "after the fix"
ok "the XML was written" test -f "$WORLD/xml/$(base "$T-pc1").xml"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id_pc1")" done "after the fix: the load is done" ||
    diag "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id_pc1")"

# --- 2. local node: unsafe directories ---------------------------------------
# node2's XML dir is below a world-writable directory without the sticky bit;
# node3's COW dir below a directory owned by nobody (uid 65534).
mkdir -p "$WORLD/ww" "$WORLD/nob"
chmod 0777 "$WORLD/ww"
chown 65534:65534 "$WORLD/nob"
chmod 0755 "$WORLD/nob"
ok "node2 (XML dir below a world-writable dir)" "$VCLCTL" node add node2 --uri "$URI" \
    --master-dir "$WORLD/master" --cow-dir "$WORLD/cow" --xml-dir "$WORLD/ww/xml" --repo "$WORLD/repo"
ok "node3 (COW dir below nobody's dir)" "$VCLCTL" node add node3 --uri "$URI" \
    --master-dir "$WORLD/master" --cow-dir "$WORLD/nob/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
computer "$T-pc5" node2
computer "$T-pc6" node3

run_load "$T-pc5" "$cfg"
id_pc5=$ID
refused "world-writable directory" \
    "unsafe directory on the node for '$WORLD/ww/xml': directory $WORLD/ww is world-writable without the sticky bit \(mode 0777\)" \
    write_xml
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $ID")" "fix it on the node with: chmod o-w $WORLD/ww\$" \
     "world-writable directory: the error gives the command that fixes it"
ok "nothing was created below it" test ! -e "$WORLD/ww/xml"

run_load "$T-pc6" "$cfg"
id_pc6=$ID
refused "directory owned by nobody" \
    "unsafe directory on the node for '$WORLD/nob/cow': directory $WORLD/nob is owned by nobody \(uid 65534\), not by root or the node user root" \
    pre_define
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $ID")" "fix it on the node with: chown root $WORLD/nob\$" \
     "directory owned by nobody: the error gives the command that fixes it"
ok "nothing was created below it" test ! -e "$WORLD/nob/cow"

# The operator runs the fixes; DBA retries; the worker makes the directories.
chmod o-w "$WORLD/ww"
chown root "$WORLD/nob"
ok "retry the world-writable case" "$VCLCTL" retry "$id_pc5"
ok "retry the nobody case" "$VCLCTL" retry "$id_pc6"
umask_was=$(umask)
umask 077     # the worker's umask does not decide the mode of what it makes
drain "$cfg"
umask "$umask_was"
stage_ok "$id_pc5" write_xml "after chmod o-w"
stage_ok "$id_pc6" pre_define "after chown"
is "$(psql_val "SELECT string_agg(state, ' ' ORDER BY id) FROM vcl.reservation WHERE id IN ($id_pc5, $id_pc6)")" \
   "done done" "both loads are done after the fixes"
is "$(stat -c '%a %U' "$WORLD/ww/xml")" "755 root" "the XML dir the worker made is 0755, the node user's"
is "$(stat -c '%a %U' "$WORLD/nob/cow")" "755 root" "the COW dir the worker made is 0755, the node user's"

# --- 3. a FIFO put at the console log while post_load reads it ----------------
# Needs a running domain: on a host where QEMU cannot start, skipped.
ok "image linux (post_load waits for a ready line)" "$VCLCTL" image add "$T-lin" --os-type linux
cp "$WORLD/repo/$T-blank-v1.qcow2" "$WORLD/repo/$T-lin-v1.qcow2"
ok "revision lin:1" "$VCLCTL" image revision-add "$T-lin" --revision 1 --file-stem "$T-lin-v1"
computer "$T-pc10" node1
# The guest need not boot: post_load only has to be reading the console log.
pcfg=$(world_config wp "post_load_timeout_seconds: 240" "driver_order: [qemu, kvm]")
id_pl=$(psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, max_attempts)
                  SELECT c.id, ir.id, 1 FROM vcl.computer c JOIN vcl.image_revision ir ON true
                    JOIN vcl.image i ON i.id = ir.image_id
                   WHERE c.name = '$T-pc10' AND i.name = '$T-lin' RETURNING id")
world_worker wp
pl_state() {
    psql_val "SELECT CASE WHEN r.state IN ('failed', 'done') THEN r.state
                          WHEN EXISTS (SELECT 1 FROM vcl.reservation_stage s WHERE s.reservation_id = r.id
                                          AND s.stage = 'post_load' AND s.outcome = 'running') THEN 'post_load'
                          ELSE 'busy' END FROM vcl.reservation r WHERE r.id = $id_pl"
}
pl_reached() { [ "$(pl_state)" != busy ]; }
pl_failed() { [ "$(pl_state)" = failed ]; }
wait_for "the load of $T-pc10 reaches post_load or ends" 180 pl_reached || true
if [ "$(pl_state)" = post_load ]; then
    log10=$WORLD/xml/$T-pc10_$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-lin'")-v1.console.log
    rm -f "$log10"
    mkfifo "$log10"
    t0=$SECONDS
    ok "post_load gives up on the FIFO" wait_for "reservation $id_pl to fail" 60 pl_failed
    ok "within seconds, not at the post_load timeout ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -lt 60
    like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id_pl")" \
         "refusing to use '$log10': it is a FIFO, not a regular file" "post_load: the error names the FIFO"
    is "$(psql_val "SELECT stage FROM vcl.reservation_stage WHERE reservation_id = $id_pl AND outcome = 'failed'")" \
       post_load "post_load is the stage that failed"
    ok "the worker is still alive (it never blocked on the FIFO)" kill -0 "$WORLD_WORKER_PID"
else
    diag "post_load never ran here ($(psql_val "SELECT state || ': ' || coalesce(last_error, '') FROM vcl.reservation WHERE id = $id_pl" | head -n 1))"
    skip "no running domain on this host: the FIFO under post_load" 5
fi
kill -TERM "$WORLD_WORKER_PID" 2>/dev/null
world_worker_wait "$WORLD_WORKER_PID" 60 >/dev/null || true

# --- 4. ssh node -------------------------------------------------------------
if world_sshd; then
    N=$WORLD/node
    for d in master cow xml repo; do mkdir -p "$N/$d"; done
    chmod -R 755 "$N"
    cp "$WORLD/repo/$T-blank-v1.qcow2" "$N/repo/"
    SSH_URI="qemu+libssh2://root@127.0.0.1:$VCL_SSH_PORT/system?keyfile=$VCL_SSH_KEY&known_hosts=$VCL_SSH_KNOWN_HOSTS&sshauth=privkey"
    ok "sshnode" "$VCLCTL" node add sshnode --uri "$SSH_URI" --transport ssh --ssh-host 127.0.0.1 \
        --ssh-port "$VCL_SSH_PORT" --ssh-user root --master-dir "$N/master" --cow-dir "$N/cow" \
        --xml-dir "$N/xml/new" --repo "$N/repo"
    scfg=$(world_config ws "ssh_private_key: \"$VCL_SSH_KEY\"" "ssh_known_hosts: \"$VCL_SSH_KNOWN_HOSTS\"" \
        "driver_order: [qemu, kvm]")
    computer "$T-pc7" sshnode
    computer "$T-pc8" sshnode
    computer "$T-pc9" sshnode

    # the XML dir is below a world-writable dir: refused over SFTP too
    chmod 0777 "$N/xml"
    run_load "$T-pc7" "$scfg"
    id_pc7=$ID
    refused "ssh: world-writable directory" \
        "unsafe directory on the node for '$N/xml/new': directory $N/xml is world-writable without the sticky bit.*fix it on the node with: chmod o-w $N/xml\$" \
        write_xml
    ok "ssh: nothing was created below it" test ! -e "$N/xml/new"
    chmod o-w "$N/xml"

    mkdir -p "$N/xml/new"
    chmod 0755 "$N/xml/new"
    log8=$N/xml/new/$(base "$T-pc8").console.log
    ln -s "$SECRET" "$log8"
    run_load "$T-pc8" "$scfg"
    refused "ssh: link at the console log" "refusing to use '$log8': it is a symbolic link, not a regular file" write_xml
    secret_untouched "ssh: link at the console log"

    xml9=$N/xml/new/$(base "$T-pc9").xml
    mkfifo "$xml9"
    run_load "$T-pc9" "$scfg"
    refused "ssh: FIFO at the XML path" "refusing to replace '$xml9' on root@127\.0\.0\.1:$VCL_SSH_PORT: it is a FIFO, not a regular file" write_xml

    rm -rf "$N/xml/new"     # the operator clears what was planted
    ok "ssh: retry after chmod o-w" "$VCLCTL" retry "$id_pc7"
    drain "$scfg"
    stage_ok "$id_pc7" write_xml "ssh, after the fix"
    is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id_pc7")" done "ssh: the load is done after the fix"
    is "$(stat -c '%a %U' "$N/xml/new")" "755 root" "ssh: the XML dir made over SFTP is 0755, the ssh user's"
    ok "ssh: the XML was written over SFTP" test -f "$N/xml/new/$(base "$T-pc7").xml"
else
    skip "no sshd can run here: the ssh cases" 1
fi

like "$(cat "$WORLD/worker.log")" "refusing to" "the worker logged the refusals"
done_testing
