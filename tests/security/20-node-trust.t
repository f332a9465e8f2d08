#!/usr/bin/env bash
# Trust boundaries on the node side (issue #12 items 3, 4, 5, 7; README
# "Security model"): reproductions of each finding, each failing before the
# fix, each asserting that nothing on the node changed (files in the master,
# COW and XML directories, this world's domains) when the input is refused.
#   1. a vmdk descriptor whose extent is a host file (RW 100 FLAT "/etc/shadow" 0)
#   2. a qcow2 whose backing file is a host file
#   3. a .raw file with a qcow2 header: read as raw (its own bytes), loads
#   4. an image stem equal to another computer's COW name: a node whose COW and
#      master directories are one is refused (schema and worker); on a proper
#      node pc1's disk is backed by the master, and deleting pc2 leaves it
#   5. a libvirt URI with command= (schema, vclctl, worker): the command never runs
#   6. an ESC sequence in last_error: vclctl show, show --follow and list print none
#   7. a world-readable ssh private key: the worker refuses its configuration
. "$(dirname "$0")/../lib/world.sh"
. "$(dirname "$0")/../lib/images.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="s${WORLD##*.}"
R="$WORLD/repo"
# every domain of this world goes on exit (load() runs inside $(...), where a
# world_track_domain would be lost with the subshell)
world_track_domains "$T-"

ok "migrate" "$VCLCTL" migrate
ok "node add" "$VCLCTL" node add n1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$R"
for i in 1 2 3; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node n1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):20:0$i" --memory 128 --vcpus 1
done
ok "image add" "$VCLCTL" image add $T-img --os-type none
image_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-img'")
cfg=$(world_config w1)

# What "the node" is: every file under the node's directories (path, size,
# mtime) and every domain of this world.
node_state() {
    find "$WORLD/master" "$WORLD/cow" "$WORLD/xml" -printf '%p %s %T@\n' 2>/dev/null | sort
    V list --all --name | grep "^$T-" | sort
}
add_rev() { # STEM: a new revision of $T-img with that file stem; prints the revision
    local rev
    rev=$(psql_val "SELECT coalesce(max(revision), 0) + 1 FROM vcl.image_revision
                     WHERE image_id = $image_id")
    "$VCLCTL" -q image revision-add $T-img --revision "$rev" --file-stem "$1" >/dev/null || return 1
    echo "$rev"
}
# load COMPUTER REVISION STEM: queue a load and drain it; prints the reservation id
load() {
    local id
    id=$("$VCLCTL" load "$1" "$T-img:$2") || return 1
    "$WORKER" --config "$cfg" --drain 2>>"$WORLD/w1.log"
    echo "$id"
}
# refused_image STEM ERROR WHAT: a load of that stem on pc1 fails at once with
# ERROR, writes no master and changes nothing on the node
refused_image() {
    local r id before
    r=$(add_rev "$1")
    before=$(node_state)
    id=$(load $T-pc1 "$r" "$1")
    is "$(state_of "$id")" "failed 1" "$3: failed at once (permanent)"
    like "$(err_of "$id")" "$2" "the error names what it points at"
    ok "no master was written" test ! -e "$WORLD/master/$1.qcow2"
    is "$(node_state)" "$before" "nothing on the node changed"
}
state_of() { psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $1"; }
err_of() { psql_val "SELECT last_error FROM vcl.reservation WHERE id = $1"; }

# A host file that must never reach a master (stands for any file of the node).
head -c 1048576 /dev/zero >"$WORLD/host-secret.bin"
printf 'HOST-SECRET-%s\n' "$T" | dd of="$WORLD/host-secret.bin" conv=notrunc status=none
chmod 600 "$WORLD/host-secret.bin"

# --- 1. vmdk descriptor with a host file as its extent ---------------------------
hostile_vmdk "$R/$T-vmdk.vmdk"
refused_image $T-vmdk "vmdk extent outside its own directory '/etc/shadow'" \
    "vmdk with an extent on /etc/shadow"

# --- 2. qcow2 whose backing file is a host file ---------------------------------
qemu-img create -q -f qcow2 -F raw -b "$WORLD/host-secret.bin" "$R/$T-back.qcow2"
refused_image $T-back "has a backing file '$WORLD/host-secret.bin'" "qcow2 backed by a host file"

# --- 3. a .raw file with a qcow2 header: read as raw -----------------------------
qemu-img create -q -f qcow2 -F raw -b "$WORLD/host-secret.bin" "$R/$T-trick.raw"
r=$(add_rev $T-trick)
id=$(load $T-pc1 "$r" "$T-trick")
is "$(state_of "$id" | cut -d' ' -f1)" done ".raw with a qcow2 header: loaded (as raw)"
m="$WORLD/master/$T-trick.qcow2"
is "$(qemu-img info -U --output=json "$m" | grep -c backing-filename)" 0 "its master has no backing file"
ok "the master holds the .raw file's own bytes" qemu-img compare -q -U -f raw -F qcow2 "$R/$T-trick.raw" "$m"
qemu-img convert -U -f qcow2 -O raw "$m" "$WORLD/trick-master.bin"
ok "the master's bytes are the .raw file's own" cmp -s "$R/$T-trick.raw" <(head -c "$(stat -c %s "$R/$T-trick.raw")" "$WORLD/trick-master.bin")
ok "and hold nothing of the host file" bash -c "! grep -aq HOST-SECRET '$WORLD/trick-master.bin'"
rm -f "$WORLD/trick-master.bin"

# --- 4. the stem that is another computer's COW name ------------------------------
# A node whose COW and master directories are one: refused by the schema...
fails "node add with cow dir = master dir is refused" "$VCLCTL" -q node add n-same --uri "$URI" \
    --master-dir "$WORLD/same" --cow-dir "$WORLD/same/" --xml-dir "$WORLD/xml"
like "$(psql_val "INSERT INTO vcl.node (name, libvirt_uri, master_image_dir, cow_dir)
                  VALUES ('n-same', '$URI', '$WORLD/same', '$WORLD/same')" 2>&1)" \
     node_cow_dir_not_master_dir "plain SQL too"
# ... and by the worker for a row from before the check (NOT VALID keeps old rows).
mkdir -p "$WORLD/same"
psql_val "ALTER TABLE vcl.node DROP CONSTRAINT node_cow_dir_not_master_dir;
          INSERT INTO vcl.node (name, libvirt_uri, master_image_dir, cow_dir, xml_dir, repository_paths)
          VALUES ('n-old', '$URI', '$WORLD/same', '$WORLD/same', '$WORLD/xml', ARRAY['$R']);
          ALTER TABLE vcl.node ADD CONSTRAINT node_cow_dir_not_master_dir
            CHECK (rtrim(cow_dir, '/') <> rtrim(master_image_dir, '/')) NOT VALID" >/dev/null
ok "computer $T-old on the old node" "$VCLCTL" computer add "$T-old" --node n-old \
    --mac "52:54:00:$(printf %02x $((RANDOM % 256))):20:09" --memory 128 --vcpus 1
qemu-img create -q -f qcow2 "$R/$T-base.qcow2" 64M
rbase=$(add_rev $T-base)
before=$(node_state; find "$WORLD/same" | sort)
id=$(load $T-old "$rbase" "$T-base")
is "$(state_of "$id")" "failed 1" "a load on a node whose COW dir is its master dir fails at once"
like "$(err_of "$id")" "is the master image directory" "the error says why"
is "$(node_state; find "$WORLD/same" | sort)" "$before" "nothing on the node changed"

# On a proper node: pc2 loads the base image; then an image whose stem is
# exactly pc2's COW file base loads on pc1.
id=$(load $T-pc2 "$rbase" "$T-base")
is "$(state_of "$id" | cut -d' ' -f1)" done "$T-pc2 loaded"
cow2="$WORLD/cow/$T-pc2_${image_id}-v${rbase}.qcow2"
ok "$T-pc2's COW is $cow2" test -f "$cow2"
evil="$T-pc2_${image_id}-v${rbase}"
qemu-img create -q -f qcow2 "$R/$evil.qcow2" 64M
revil=$(add_rev "$evil")
id=$(load $T-pc1 "$revil" "$evil")
is "$(state_of "$id" | cut -d' ' -f1)" done "the stem '$evil' loads on $T-pc1"
cow1="$WORLD/cow/$T-pc1_${image_id}-v${revil}.qcow2"
is "$(qemu-img info -U --output=json "$cow1" | sed -n 's/.*"full-backing-filename": "\(.*\)".*/\1/p')" \
   "$WORLD/master/$evil.qcow2" "$T-pc1's disk is backed by the master, not by $T-pc2's COW"
before_master=$(stat -c '%s %Y' "$WORLD/master/$evil.qcow2")
before_pc1=$(stat -c '%s %Y' "$cow1")
id=$("$VCLCTL" delete $T-pc2)
"$WORKER" --config "$cfg" --drain 2>>"$WORLD/w1.log"
is "$(state_of "$id" | cut -d' ' -f1)" done "delete of $T-pc2 done"
ok "$T-pc2's COW is gone" test ! -e "$cow2"
is "$(stat -c '%s %Y' "$WORLD/master/$evil.qcow2")" "$before_master" "the master named like $T-pc2's COW survives"
is "$(stat -c '%s %Y' "$cow1")" "$before_pc1" "$T-pc1's COW is untouched"
is "$(V domstate "$T-pc1:$evil" | head -1)" running "$T-pc1's domain still runs"

# --- 5. a libvirt URI with command= ----------------------------------------------
cat >"$WORLD/evil.sh" <<EOF
#!/bin/sh
touch "$WORLD/pwned"
EOF
chmod 755 "$WORLD/evil.sh"
EVIL="qemu+ext:///system?command=$WORLD/evil.sh"
fails "vclctl node add with command= is refused" "$VCLCTL" -q node add n-evil --uri "$EVIL" \
    --master-dir "$WORLD/m2" --cow-dir "$WORLD/c2" --xml-dir "$WORLD/xml"
like "$(psql_val "INSERT INTO vcl.node (name, libvirt_uri) VALUES ('n-evil', '$EVIL')" 2>&1)" \
     node_libvirt_uri_supported "plain SQL too"
like "$(psql_val "INSERT INTO vcl.node (name, libvirt_uri)
                  VALUES ('n-evil', 'qemu+libssh2://h/system?known_hosts_verify=ignore')" 2>&1)" \
     node_libvirt_uri_supported "known_hosts_verify=ignore too"
psql_val "ALTER TABLE vcl.node DROP CONSTRAINT node_libvirt_uri_supported;
          INSERT INTO vcl.node (name, libvirt_uri, master_image_dir, cow_dir, xml_dir)
          VALUES ('n-evil', '$EVIL', '$WORLD/m2', '$WORLD/c2', '$WORLD/xml')" >/dev/null
ok "computer $T-ev on the node with command=" "$VCLCTL" computer add "$T-ev" --node n-evil \
    --mac "52:54:00:$(printf %02x $((RANDOM % 256))):20:0a" --memory 128 --vcpus 1
before=$(node_state)
out=$("$VCLCTL" node check n-evil 2>&1)
like "$out" "refused.*only qemu:///system" "vclctl node check refuses the URI"
id=$(load $T-ev "$rbase" "$T-base")
is "$(state_of "$id")" "failed 1" "a load on that node fails at once (permanent)"
like "$(err_of "$id")" "libvirt URI .* refused" "the error says the URI is refused"
out=$("$VCLCTL" status $T-ev 2>&1)
like "$out" "refused" "vclctl status refuses it too"
ok "the command never ran" test ! -e "$WORLD/pwned"
is "$(node_state)" "$before" "nothing on the node changed"
psql_val "DELETE FROM vcl.reservation WHERE computer_id = (SELECT id FROM vcl.computer WHERE name = '$T-ev');
          DELETE FROM vcl.computer WHERE name = '$T-ev'; DELETE FROM vcl.node WHERE name = 'n-evil';
          ALTER TABLE vcl.node ADD CONSTRAINT node_libvirt_uri_supported CHECK (libvirt_uri <> '') NOT VALID" \
    >/dev/null

# --- 6. an ESC sequence in last_error ---------------------------------------------
id=$("$VCLCTL" load $T-pc3 "$T-img:$rbase")
# (written as the worker would: the reservation guard ignores a DBA's last_error)
PGOPTIONS="-c vcl.writer=worker" psql_val "UPDATE vcl.reservation SET state = 'failed', finished_at = now(),
                 last_error = E'node says \\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\r\\u009b1m done'
          WHERE id = $id" >/dev/null
show=$("$VCLCTL" show "$id" 2>&1)
like "$show" "node says .*red.* done" "vclctl show prints the error"
ok "vclctl show prints no ESC, BEL, CR or C1 control" \
    bash -c "! printf '%s' \"\$1\" | LC_ALL=C grep -q \$'[\\x1b\\x07\\r]\\|\\xc2\\x9b'" _ "$show"
follow=$(timeout 60 "$VCLCTL" show "$id" --follow 2>&1)
like "$follow" "node says" "show --follow prints the error"
ok "show --follow prints no ESC or BEL from the node" \
    bash -c "! printf '%s' \"\$1\" | LC_ALL=C grep -q \$'\\x07\\|\\x1b\\]0;owned\\|\\x1b\\[2J'" _ "$follow"
list=$("$VCLCTL" list 2>&1)
ok "vclctl list prints no ESC or BEL" bash -c "! printf '%s' \"\$1\" | LC_ALL=C grep -q \$'[\\x1b\\x07]'" _ "$list"

# --- 7. a world-readable ssh private key -------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$WORLD/loose_key" >/dev/null
chmod 644 "$WORLD/loose_key"
kcfg=$(world_config wk "ssh_private_key: $WORLD/loose_key")
out=$("$WORKER" --config "$kcfg" --check-config 2>&1); rc=$?
isnt "$rc" 0 "the worker refuses a configuration whose ssh key is world-readable"
like "$out" "ssh_private_key.*mode 0644.*chmod 600" "and says how to fix it"
chmod 600 "$WORLD/loose_key"
ok "with mode 0600 the same configuration is accepted" "$WORKER" --config "$kcfg" --check-config

is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
done_testing
