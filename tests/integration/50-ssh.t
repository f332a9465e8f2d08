#!/usr/bin/env bash
# Remote nodes over ssh. A private sshd on loopback (world_sshd) stands for a
# hypervisor node reached as root@127.0.0.1:PORT: the node's transport is
# ssh and its libvirt URI is qemu+libssh2:// with the same key and
# known_hosts. The worker runs in a mount namespace where the node's
# directories are an empty tmpfs, so every file of the load can only have been
# made through SFTP and commands over ssh. Then: an unknown and a changed
# host key fail a load permanently with a clear message (and a DBA retry
# after fixing known_hosts finishes it); vclctl status over ssh; the C
# transport test against the same sshd (hostile argv round trip, SFTP file
# operations, glob, copy_in resume, 200 commands from 4 threads on <= 4
# sessions, reconnect, host keys); session reuse in the sshd log.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"
world_sshd || skip_all "no sshd can run here (world_sshd needs root and /usr/sbin/sshd)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
T="t${WORLD##*.}"
SSHD_LOG=$VCL_SSH_DIR/sshd.log
SSHD_PID=$(cat "$VCL_SSH_DIR/sshd.pid")
PORT=$VCL_SSH_PORT
V() { virsh -q -c "$VCL_TEST_URI" "$@"; }   # the test looks locally; the worker never does

# The node's directories ($N): on this host, but hidden from the worker (hidden CMD).
world_ssh_node
URI=$SSH_URI

ok "migrate" "$VCLCTL" migrate
qemu-img create -q -f qcow2 "$N/repo/$T-blank-v1.qcow2" 64M
ok "node add (ssh transport, qemu+libssh2 URI)" "$VCLCTL" node add sshnode --uri "$URI" \
    --transport ssh --ssh-host 127.0.0.1 --ssh-port "$PORT" --ssh-user root \
    --master-dir "$N/master" --cow-dir "$N/cow" --xml-dir "$N/xml" --repo "$N/repo" --max-loads 3
ok "image add" "$VCLCTL" image add "$T-blank" --os-type none
ok "revision 1" "$VCLCTL" image revision-add "$T-blank" --revision 1 --file-stem "$T-blank-v1"
for i in 1 2 3; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node sshnode \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):20:0$i" --memory 128 --vcpus 1
    world_track_domain "$T-pc$i:$T-blank-v1"
done
image_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")
cfg=$(world_config w1 "ssh_private_key: \"$VCL_SSH_KEY\"" "ssh_known_hosts: \"$VCL_SSH_KNOWN_HOSTS\"")

if ((HIDE)); then
    is "$(hidden ls -A "$N" | wc -l)" 0 "the worker's view of the node dirs is empty"
    ok "the repository image exists only for the node" test -f "$N/repo/$T-blank-v1.qcow2"
fi

# --- 1. a full load through ssh ---------------------------------------------
acc0=$(grep -c 'Accepted publickey' "$SSHD_LOG")
cmd0=$(grep -c 'Starting session: command' "$SSHD_LOG")
id=$("$VCLCTL" load "$T-pc1" "$T-blank:1")
t0=$(date +%s.%N)
hidden "$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-a.log"
t1=$(date +%s.%N)
diag "INSERT to READY over ssh: $(echo "$t1 - $t0" | bc) s (worker start included)"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "reservation $id is done" ||
    diag "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc1'")" READY "computer written back READY"
is "$(psql_val "SELECT string_agg(stage || '=' || outcome, ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $id")" \
   "cleanup=ok generate_xml=ok pre_define=ok write_xml=ok define=ok power_on=ok post_load=ok node_status=ok" \
   "eight stages logged in order, all ok"
is "$(V domstate "$T-pc1:$T-blank-v1" | head -1)" running "domain $T-pc1:$T-blank-v1 is running"
cow="$N/cow/$T-pc1_${image_id}-v1.qcow2"
xmlf="$N/xml/$T-pc1_${image_id}-v1.xml"
ok "COW disk made on the node" test -f "$cow"
ok "master copied from the node's repository" test -f "$N/master/$T-blank-v1.qcow2"
is "$(qemu-img info -U --output=json "$cow" | sed -n 's/.*"full-backing-filename": "\(.*\)".*/\1/p')" \
   "$N/master/$T-blank-v1.qcow2" "COW is backed by the master"
ok "XML written on the node" test -f "$xmlf"
like "$(V dumpxml "$T-pc1:$T-blank-v1")" "$cow" "the domain uses the COW"
wlog=$(cat "$WORLD/w1-a.log")
like "$wlog" "sftp write root@127\.0\.0\.1:$PORT: $xmlf" "worker log: the XML went through SFTP"
like "$wlog" "exec on ssh: qemu-img" "worker log: qemu-img ran over ssh"
unlike "$wlog" "exec on local" "worker log: nothing ran locally"
is "$(find "$N" -name '*.tmp-*' | wc -l)" 0 "no temporary files left on the node"
acc1=$(grep -c 'Accepted publickey' "$SSHD_LOG")
cmd1=$(grep -c 'Starting session: command' "$SSHD_LOG")
sessions=$((acc1 - acc0)) commands=$((cmd1 - cmd0))
diag "load over ssh: $sessions ssh sessions (worker transport + libvirt), $commands remote commands"
ok "sessions reused: $sessions sessions for $commands commands" test "$sessions" -le 3 -a "$commands" -ge 4

# --- 2. vclctl status over ssh ----------------------------------------------
out=$(env -u VCL_SSH_KEY -u VCL_SSH_KNOWN_HOSTS "$VCLCTL" status "$T-pc1" 2>&1) && rc=0 || rc=$?
is "$rc" 1 "vclctl status without a key fails"
like "$out" "ssh_private_key|--ssh-key" "and says how to give the key"
out=$(env -u VCL_SSH_KEY -u VCL_SSH_KNOWN_HOSTS "$VCLCTL" status "$T-pc1" --ssh-key "$VCL_SSH_KEY" --known-hosts "$VCL_SSH_KNOWN_HOSTS" 2>&1)
like "$out" "READY" "vclctl status --ssh-key --known-hosts: READY"
out=$(hidden "$VCLCTL" status "$T-pc1" 2>&1)
like "$out" "READY" "vclctl status with \$VCL_SSH_KEY/\$VCL_SSH_KNOWN_HOSTS (node dirs hidden): READY"

# --- 3. host keys: unknown and changed fail permanently ----------------------
ssh-keygen -q -t ed25519 -N '' -f "$VCL_SSH_DIR/other_host" >/dev/null
hostkey=$(cut -d' ' -f1,2 "$VCL_SSH_DIR/host_ed25519.pub")
otherkey=$(cut -d' ' -f1,2 "$VCL_SSH_DIR/other_host.pub")
printf '[127.0.0.2]:%s %s\n' "$PORT" "$hostkey" >"$VCL_SSH_DIR/kh_unknown"     # not this host
printf '[127.0.0.1]:%s %s\n' "$PORT" "$otherkey" >"$VCL_SSH_DIR/kh_changed"    # another key
cp "$VCL_SSH_DIR/kh_changed" "$VCL_SSH_DIR/kh_wrong"
fp=$(ssh-keygen -lf "$VCL_SSH_DIR/host_ed25519.pub" | awk '{print $2}')
cfg_unknown=$(world_config wu "ssh_private_key: \"$VCL_SSH_KEY\"" "ssh_known_hosts: \"$VCL_SSH_DIR/kh_unknown\"")
cfg_changed=$(world_config wc "ssh_private_key: \"$VCL_SSH_KEY\"" "ssh_known_hosts: \"$VCL_SSH_DIR/kh_changed\"")

id_u=$("$VCLCTL" load "$T-pc2" "$T-blank:1")
hidden "$WORKER" --config "$cfg_unknown" --drain 2>"$WORLD/wu.log"
is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $id_u")" "failed 1" \
   "unknown host key: failed at once (permanent)"
err=$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id_u")
like "$err" "sshnode.*host key of root@127\.0\.0\.1:$PORT .*is not in the known_hosts file .*kh_unknown" \
     "error names the node, the host and the file"
like "$err" "${fp//+/\\+}" "error shows the key's SHA256 fingerprint ($fp)"
is "$(V list --all --name | grep -c "^$T-pc2:")" 0 "no domain was made for $T-pc2"

id_c=$("$VCLCTL" load "$T-pc3" "$T-blank:1")
hidden "$WORKER" --config "$cfg_changed" --drain 2>"$WORLD/wc.log"
is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $id_c")" "failed 1" \
   "changed host key: failed at once (permanent)"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id_c")" \
     "host key of root@127\.0\.0\.1:$PORT .*does NOT match the key recorded for it in .*kh_changed" \
     "error says the key does not match"
is "$(V list --all --name | grep -c "^$T-pc3:")" 0 "no domain was made for $T-pc3"
is "$(cat "$VCL_SSH_DIR/kh_changed")" "[127.0.0.1]:$PORT $otherkey" "known_hosts was not modified"

# The operator checks the fingerprint and fixes the file; a DBA resets the row.
printf '[127.0.0.1]:%s %s\n' "$PORT" "$hostkey" >"$VCL_SSH_DIR/kh_changed"
psql_val "UPDATE vcl.reservation SET state = 'pending' WHERE id = $id_c" >/dev/null
hidden "$WORKER" --config "$cfg_changed" --drain 2>"$WORLD/wc2.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id_c")" done "after fixing known_hosts the retry finishes"
is "$(V domstate "$T-pc3:$T-blank-v1" | head -1)" running "$T-pc3 running"

# --- 4. the transport itself against this sshd --------------------------------
acc0=$(grep -c 'Accepted publickey' "$SSHD_LOG")
out=$(VCL_SSHD_PID=$SSHD_PID VCL_SSH_KH_UNKNOWN="$VCL_SSH_DIR/kh_unknown" \
      VCL_SSH_KH_CHANGED="$VCL_SSH_DIR/kh_wrong" "$ROOT/build/tests/test_transport_ssh" 2>&1) &&
    rc=0 || rc=$?
is "$rc" 0 "test_transport_ssh passes against the loopback sshd" || diag "$(grep -A3 '^not ok' <<<"$out")"
note "$(grep '^#' <<<"$out")"
while IFS='|' read -r name re; do
    like "$out" "ok [0-9]+ - ${re:-$name}" "transport: $name"
done <<'EOF'
every argument came back literally
no injection attempt created a file
the timed-out command was killed on the node
copy_in keeps holes|copy is sparse
copy_in resumes a partial copy|resumed at 101 MiB
at most 4 sessions opened for 4 threads
at most 4 sshd session processes after 200 commands|sshd has [0-4] session processes
at most 4 sockets open in the client|open sockets of this process: [0-4] 
one transparent reconnect
unknown host key: permanent error
changed host key: permanent error
EOF
unlike "$out" "not ok" "transport: no failed check"
acc1=$(grep -c 'Accepted publickey' "$SSHD_LOG")
diag "test_transport_ssh: $((acc1 - acc0)) ssh sessions for its ~300 operations"
ok "transport test used few sessions ($((acc1 - acc0)))" test $((acc1 - acc0)) -le 12

done_testing
