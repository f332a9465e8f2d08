#!/usr/bin/env bash
# A repository on the management host (node.repository_location =
# 'management'): the worker looks the image up on its own host and streams it
# to an ssh node over SFTP under "<master>.tmp-vcl+<random>" (converted there when
# its format is not the master's), checks size and `qemu-img check`, and
# renames it into place; a capture copies the new master back from the node
# into the first repository path here (temp name, size, check, rename). The
# node is a private sshd on loopback (world_sshd), so "the node" is this host
# too: the worker runs with the node's directories hidden (as 50-ssh.t), and
# the stage details and the sftp log lines show the streaming path.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"
world_sshd || skip_all "no sshd can run here (world_sshd needs root and /usr/sbin/sshd)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
T="t${WORLD##*.}"
PORT=$VCL_SSH_PORT
V() { virsh -q -c "$VCL_TEST_URI" "$@"; }
stages() { psql_val "SELECT string_agg(stage || '=' || outcome, ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $1"; }
detail() { psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = '$2' AND outcome = 'ok' ORDER BY id DESC LIMIT 1"; }

world_ssh_node                    # $N, $SSH_URI, hidden CMD...
URI=$SSH_URI
MREPO=$WORLD/mgmt-repo            # the management host's repository (outside the node's dirs)
mkdir -p "$MREPO"
chmod 755 "$MREPO"

ok "migrate" "$VCLCTL" migrate
qemu-img create -q -f qcow2 "$MREPO/$T-blank-v1.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 1M" "$MREPO/$T-blank-v1.qcow2" >/dev/null
qemu-img create -q -f raw "$MREPO/$T-raw-v1.img" 32M
ok "node add --repo-location management" "$VCLCTL" node add mnode --uri "$URI" \
    --transport ssh --ssh-host 127.0.0.1 --ssh-port "$PORT" --ssh-user root \
    --master-dir "$N/master" --cow-dir "$N/cow" --xml-dir "$N/xml" --repo "$MREPO" \
    --repo-location management --max-loads 3
is "$(psql_val "SELECT repository_location FROM vcl.node WHERE name = 'mnode'")" management \
   "node row: repository_location = management"
fails "--repo-location elsewhere is a usage error" "$VCLCTL" node set mnode --repo-location elsewhere
ok "node set --repo-location node" "$VCLCTL" node set mnode --repo-location node
is "$(psql_val "SELECT repository_location FROM vcl.node WHERE name = 'mnode'")" node "set to node"
ok "node set --repo-location management" "$VCLCTL" node set mnode --repo-location management
fails "the schema refuses another value" psql_val "UPDATE vcl.node SET repository_location = 'x' WHERE name = 'mnode'"
for img in blank raw; do
    ok "image $T-$img" "$VCLCTL" image add "$T-$img" --os-type none
    ok "revision $T-$img:1" "$VCLCTL" image revision-add "$T-$img" --revision 1 --file-stem "$T-$img-v1"
done
for i in 1 2; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node mnode \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):57:0$i" --memory 128 --vcpus 1
    for s in blank-v1 blank-v2 raw-v1; do world_track_domain "$T-pc$i:$T-$s"; done
done
out=$("$VCLCTL" image exists "$T-blank" --node mnode 2>&1)
like "$out" "mnode +repository +$MREPO/$T-blank-v1\.qcow2" \
     "vclctl image exists: found in the management repository"
out=$("$VCLCTL" image size "$T-raw" --node mnode 2>&1)
like "$out" "mnode +33554432 +32 +repository +1 +$MREPO/$T-raw-v1\.img" "vclctl image size: the management copy's size"
cfg=$(world_config w1 "ssh_private_key: \"$VCL_SSH_KEY\"" "ssh_known_hosts: \"$VCL_SSH_KNOWN_HOSTS\"")
if ((HIDE)); then
    is "$(hidden ls -A "$N" | wc -l)" 0 "the worker's view of the node dirs is empty"
fi

# --- 1. load: the qcow2 master is streamed over SFTP ---------------------------
id=$("$VCLCTL" load "$T-pc1" "$T-blank:1")
hidden "$WORKER" --config "$cfg" --drain 2>"$WORLD/w1.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "load $id done" ||
    diag "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc1'")" READY "$T-pc1 READY"
is "$(V domstate "$T-pc1:$T-blank-v1" | head -1)" running "its domain is running"
master=$N/master/$T-blank-v1.qcow2
like "$(detail "$id" pre_define)" "master streamed from the management host: $MREPO/$T-blank-v1\.qcow2" \
     "pre_define detail: the master was streamed from the management host"
like "$(cat "$WORLD/w1.log")" "sftp copy root@127\.0\.0\.1:$PORT: $MREPO/$T-blank-v1\.qcow2 -> $master\.tmp-vcl\+[0-9a-f]{16}" \
     "worker log: the image went through SFTP to the temp name"
ok "the master is byte-identical to the management copy" cmp "$MREPO/$T-blank-v1.qcow2" "$master"
is "$(find "$N" "$MREPO" -name '*.tmp-*' | wc -l)" 0 "no temporary files left"

# --- 2. load: a raw image is streamed, then converted on the node --------------
id=$("$VCLCTL" load "$T-pc2" "$T-raw:1")
hidden "$WORKER" --config "$cfg" --drain 2>"$WORLD/w2.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "load $id (raw) done" ||
    diag "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")"
like "$(detail "$id" pre_define)" "streamed from the management host: $MREPO/$T-raw-v1\.img \(converted from raw on the node\)" \
     "pre_define detail: streamed, then converted on the node"
like "$(qemu-img info -U "$N/master/$T-raw-v1.qcow2")" "file format: qcow2" "the raw image became a qcow2 master"
ok "the master matches the management copy's content" \
   qemu-img compare -U -f raw -F qcow2 "$MREPO/$T-raw-v1.img" "$N/master/$T-raw-v1.qcow2"
is "$(find "$N" "$MREPO" -name '*.tmp-*' | wc -l)" 0 "no temporary files left"

# --- 3. capture --after off: the new revision is copied to the management host -
id=$("$VCLCTL" capture "$T-pc1" --after off --shutdown-timeout 2)
hidden "$WORKER" --config "$cfg" --drain 2>"$WORLD/w3.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "capture $id done" ||
    diag "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")"
is "$(stages "$id")" "shutdown=ok flatten=ok verify=ok publish=ok upload=ok register=ok after=ok" \
   "capture stages all ok"
up=$MREPO/$T-blank-v2.qcow2
like "$(detail "$id" upload)" "copied $N/master/$T-blank-v2\.qcow2 from the node to the management host: $up" \
     "upload detail: copied from the node to the management host"
like "$(cat "$WORLD/w3.log")" "sftp copy root@127\.0\.0\.1:$PORT: $N/master/$T-blank-v2\.qcow2 -> \(this host\) $up\.tmp-vcl\+[0-9a-f]{16}" \
     "worker log: the copy came back through SFTP"
ok "the new revision is in the management repository" test -f "$up"
ok "it passes qemu-img check" qemu-img check -q -U "$up"
ok "it has the same content as the node's master" \
   qemu-img compare -U -f qcow2 -F qcow2 "$N/master/$T-blank-v2.qcow2" "$up"
ok "it holds the old master's data" qemu-io -r -U -f qcow2 -c "read -P 0x5a 0 1M" "$up"
is "$(find "$N" "$MREPO" -name '*.tmp-*' | wc -l)" 0 "no temporary files left"

done_testing
