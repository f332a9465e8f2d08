#!/usr/bin/env bash
# The image repository: `vclctl image exists/size` (VCL's does_image_exist /
# get_image_size) for qcow2, raw, a split vmdk set and side files that must be
# ignored, per node; two loads of a new image on one node copy it once (the
# per-node-and-image lock, re-checked after the lock); a stale partial
# "<master>.tmp-N" is never taken for a master, and never removed either: it
# is no temp file a worker recorded (vcl.temp_file; tests/security/40-temp-files.t);
# a corrupt master fails the load permanently and is left untouched.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="t${WORLD##*.}"
fsize() { stat -c %s "$1"; }
mb() { echo $(($1 / 1048576)); }

ok "migrate" "$VCLCTL" migrate
mkdir -p "$WORLD/master2" "$WORLD/repo/sub" && chmod 755 "$WORLD/master2" "$WORLD/repo/sub"
# node1 searches a path that does not exist, then a wildcard; node2 has no repository
ok "node1" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/not-mounted" \
    --repo "$WORLD/rep*/sub" --max-loads 4
ok "node2" "$VCLCTL" node add node2 --uri "$URI" --master-dir "$WORLD/master2" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml"

R="$WORLD/repo/sub"
for img in q r v x m s k c; do
    ok "image $T-$img" "$VCLCTL" image add "$T-$img"
    ok "revision $T-$img:1" "$VCLCTL" image revision-add "$T-$img" --revision 1 --file-stem "$T-$img-v1"
done

# --- 1. image exists / image size ---------------------------------------------
qemu-img create -q -f qcow2 "$R/$T-q-v1.qcow2" 64M
qemu-img create -q -f raw "$R/$T-r-v1.img" 3M
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$R/$T-v-v1.vmdk" 5G
touch "$R/$T-v-v1.xml" "$R/$T-v-v1.txt"
qemu-img create -q -f qcow2 "$R/$T-v-v1-v2.qcow2" 1M     # another image sharing the prefix
touch "$R/$T-x-v1.xml" "$R/$T-x-v1.txt" "$R/$T-x-v1.vmx"
qemu-img create -q -f qcow2 "$WORLD/master/$T-m-v1.qcow2" 16M

out=$("$VCLCTL" image exists "$T-q" --node node1); rc=$?
is "$rc" 0 "qcow2 in the repository: exists (exit 0)"
like "$out" "node1 +repository +$R/$T-q-v1.qcow2" "it says where: the repository file, through the wildcard path"
out=$("$VCLCTL" image size "$T-q:1" --node node1)
like "$out" "node1 +$(fsize "$R/$T-q-v1.qcow2") +0 +repository +1 +$R/$T-q-v1.qcow2" "qcow2 size: file bytes, MB, one file"

out=$("$VCLCTL" image size "$T-r" --node node1)
like "$out" "node1 +3145728 +3 +repository +1 +$R/$T-r-v1.img" "raw .img: 3145728 bytes = 3 MB"

vsum=0; vfiles=0
for f in "$R/$T-v-v1.vmdk" "$R/$T-v-v1"-s00?.vmdk; do vsum=$((vsum + $(fsize "$f"))); vfiles=$((vfiles + 1)); done
is "$vfiles" 4 "qemu-img wrote a split vmdk: descriptor + 3 extents"
out=$("$VCLCTL" image size "$T-v" --node node1)
like "$out" "node1 +$vsum +$(mb $vsum) +repository +4 +$R/$T-v-v1.vmdk" \
     "split vmdk: found by its descriptor, size is the sum of its 4 files ($vsum), not the other image's"
json=$("$VCLCTL" --json image size "$T-v" --node node1)
like "$json" "\"bytes\" *: *$vsum" "--json gives the same bytes"

"$VCLCTL" image exists "$T-x" --node node1 >"$WORLD/x.out" 2>&1; rc=$?
is "$rc" 1 ".xml/.txt/.vmx only: does not exist (exit 1)"
like "$(cat "$WORLD/x.out")" "node1 +missing" "it says missing"
"$VCLCTL" image size "$T-x" --node node1 >/dev/null 2>&1; rc=$?
is "$rc" 1 "size of a missing image: exit 1"

out=$("$VCLCTL" image size "$T-m" --node node1)
like "$out" "node1 +$(fsize "$WORLD/master/$T-m-v1.qcow2") +0 +node +1 +$WORLD/master/$T-m-v1.qcow2" \
     "a master on the node is found there first"

"$VCLCTL" image exists "$T-q" >"$WORLD/all.out" 2>&1; rc=$?
is "$rc" 1 "every node asked: node2 has no repository, so exit 1"
like "$(cat "$WORLD/all.out")" "node1 +repository" "node1: repository"
like "$(cat "$WORLD/all.out")" "node2 +missing" "node2: missing"
"$VCLCTL" image exists "$T-q:7" >/dev/null 2>&1; rc=$?
is "$rc" 1 "an unknown revision is an error"
"$VCLCTL" image exists "$T-q" --node nosuch >/dev/null 2>&1; rc=$?
is "$rc" 1 "an unknown node is an error"

# The same answers over the ssh transport (loopback sshd; vclctl takes the
# key and known_hosts from $VCL_SSH_KEY and $VCL_SSH_KNOWN_HOSTS).
if world_sshd; then
    ok "node3 (ssh)" "$VCLCTL" node add node3 --uri "$URI" --transport ssh --ssh-host 127.0.0.1 \
        --ssh-port "$VCL_SSH_PORT" --ssh-user root --master-dir "$WORLD/master" \
        --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/not-mounted" --repo "$WORLD/rep*/sub"
    like "$("$VCLCTL" image size "$T-v" --node node3)" "node3 +$vsum +$(mb $vsum) +repository +4 +$R/$T-v-v1.vmdk" \
         "over ssh: the split vmdk's descriptor, 4 files, the same sum"
    like "$("$VCLCTL" image exists "$T-m" --node node3)" "node3 +node +$WORLD/master/$T-m-v1.qcow2" \
         "over ssh: the master on the node"
    "$VCLCTL" image exists "$T-x" --node node3 >/dev/null 2>&1; rc=$?
    is "$rc" 1 "over ssh: side files only is missing"
    ok "node3 removed again" psql_val "DELETE FROM vcl.node WHERE name = 'node3'"
else
    skip "no sshd here: the ssh transport is not exercised" 4
fi

# --- 2. a partial <master>.tmp-N is not a master ------------------------------
qemu-img create -q -f qcow2 "$R/$T-s-v1.qcow2" 64M
head -c 65536 "$R/$T-s-v1.qcow2" >"$WORLD/master/$T-s-v1.qcow2.tmp-123"
like "$("$VCLCTL" image exists "$T-s" --node node1)" "node1 +repository" \
     "with only a partial temp file in the master dir, the image is in the repository, not on the node"

[ "$VCL_TEST_LIBVIRT" = real ] || { diag "no libvirt daemon: the load cases are skipped"; done_testing; }

for i in 1 2 3 4; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node node1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):55:0$i" --memory 128 --vcpus 1
    for img in s k c; do world_track_domain "$T-pc$i:$T-$img-v1"; done
done
cfg1=$(world_config w1 "slots: 1")
cfg2=$(world_config w2 "slots: 1")

id=$("$VCLCTL" load "$T-pc3" "$T-s")
"$WORKER" --config "$cfg1" --drain 2>"$WORLD/w-s.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "load with a stale partial: done"
ok "the unrecorded partial is left alone" test -e "$WORLD/master/$T-s-v1.qcow2.tmp-123"
like "$(cat "$WORLD/w-s.log")" "leaving .*$T-s-v1.qcow2.tmp-123 alone" "the worker says it left it alone"
ok "the master was copied and passes qemu-img check" qemu-img check -q -U "$WORLD/master/$T-s-v1.qcow2"
is "$(qemu-img info -U "$WORLD/master/$T-s-v1.qcow2" | sed -n 's/^virtual size: .*(\([0-9]*\) bytes)/\1/p')" 67108864 \
   "the master is the whole 64 MiB image, not the partial"
rm -f "$WORLD/master/$T-s-v1.qcow2.tmp-123"

# --- 3. a corrupt master fails for good and is never overwritten --------------
qemu-img create -q -f qcow2 "$R/$T-k-v1.qcow2" 64M
qemu-img create -q -f qcow2 "$WORLD/k-full.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 8M" "$WORLD/k-full.qcow2" >/dev/null
head -c 3000000 "$WORLD/k-full.qcow2" >"$WORLD/master/$T-k-v1.qcow2"   # truncated
before=$(stat -c '%i %Y %s' "$WORLD/master/$T-k-v1.qcow2")
id=$("$VCLCTL" load "$T-pc4" "$T-k")
"$WORKER" --config "$cfg1" --drain 2>"$WORLD/w-k.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" failed "load over a truncated master: failed"
is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id")" 1 "permanent: no retries"
is "$(psql_val "SELECT failed_stage FROM vcl.reservation WHERE id = $id")" pre_define "in pre_define"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" \
     "master image .*$T-k-v1.qcow2 exists but fails its check; it is never overwritten" "the error says why and what to do"
is "$(stat -c '%i %Y %s' "$WORLD/master/$T-k-v1.qcow2")" "$before" "the corrupt master is untouched (inode, mtime, size)"
is "$(V list --all --name | grep -c "^$T-pc4:")" 0 "no domain defined for it"

# --- 4. two loads of a new image on one node copy it once ---------------------
# The test holds the image's copy lock itself until both workers wait for
# it, so both really race for the copy. The lock is a vcl.image_lock row
# (sql/functions/locks.sql) held by a live lease: a stand-in reservation the
# test marks running as a worker would (vcl.writer, guard.sql).
qemu-img create -q -f raw "$WORLD/c.raw" 64M
qemu-io -f raw -c "write -P 0x33 0 32M" "$WORLD/c.raw" >/dev/null
qemu-img convert -f raw -O qcow2 "$WORLD/c.raw" "$R/$T-c-v1.qcow2"
node_id=$(psql_val "SELECT id FROM vcl.node WHERE name = 'node1'")
rev_id=$(psql_val "SELECT ir.id FROM vcl.image_revision ir WHERE ir.file_stem = '$T-c-v1'")
ok "computer $T-lk (holds the stand-in lease)" "$VCLCTL" computer add "$T-lk" --node node1 \
    --mac "52:54:00:$(printf %02x $((RANDOM % 256))):55:99" --memory 128 --vcpus 1
holder=$("$VCLCTL" enqueue "$T-lk" noop)
as_worker() { PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" psql_val "$@"; }
htok=$(as_worker "UPDATE vcl.reservation SET state = 'running', worker_id = 0,
                         lease_token = nextval('vcl.lease_token_seq'), lease_expires_at = now() + interval '1 hour'
                   WHERE id = $holder RETURNING lease_token")
as_worker "INSERT INTO vcl.image_lock (node_id, image_revision_id, reservation_id, lease_token)
           VALUES ($node_id, $rev_id, $holder, $htok)" >/dev/null
held() { [ "$(psql_val "SELECT count(*) FROM vcl.image_lock WHERE node_id = $node_id
                        AND image_revision_id = $rev_id AND reservation_id = $holder")" = 1 ]; }
ok "the test holds the copy lock of $T-c-v1 on node1" held

a=$("$VCLCTL" load "$T-pc1" "$T-c")
b=$("$VCLCTL" load "$T-pc2" "$T-c")
# Not --drain: a worker whose first claim finds the node locked by the
# other's claim would exit at once; these poll until stopped.
"$WORKER" --config "$cfg1" 2>"$WORLD/w1.log" & p1=$!; world_track_pid $p1
"$WORKER" --config "$cfg2" 2>"$WORLD/w2.log" & p2=$!; world_track_pid $p2
waiting() {
    grep -q "waiting for another worker copying $T-c-v1" "$WORLD/w1.log" &&
        grep -q "waiting for another worker copying $T-c-v1" "$WORLD/w2.log"
}
ok "both workers (one load each) wait for the copy lock" wait_for "both waiting" 60 waiting
ok "neither copied while the lock was held" test ! -e "$WORLD/master/$T-c-v1.qcow2"
as_worker "SELECT vcl.image_lock_release($node_id, $rev_id, $holder, $htok),
                  vcl.complete(ARRAY[$holder]::bigint[], ARRAY[$htok]::bigint[])" >/dev/null
finished() { [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($a, $b) AND state IN ('done', 'failed')")" = 2 ]; }
wait_for "both loads finished" 120 finished
kill -TERM $p1 $p2
wait $p1 $p2
is "$(psql_val "SELECT string_agg(state, ',') FROM vcl.reservation WHERE id IN ($a, $b)")" "done,done" "both loads done"
is "$(psql_val "SELECT string_agg(node_status, ',') FROM vcl.computer WHERE name IN ('$T-pc1', '$T-pc2')")" \
   "READY,READY" "both computers READY"
is "$(cat "$WORLD/w1.log" "$WORLD/w2.log" | grep -c "copying image $T-c-v1 ")" 1 "the repository copy happened once"
is "$(cat "$WORLD/w1.log" "$WORLD/w2.log" | grep -c "master .*$T-c-v1.qcow2 was made by another worker meanwhile")" 1 \
   "the other worker re-checked after the lock and used it"
m="$WORLD/master/$T-c-v1.qcow2"
ino=$(stat -c '%i %Y' "$m")
for pc in "$T-pc1" "$T-pc2"; do
    cow=$(psql_val "SELECT cow_path FROM vcl.computer WHERE name = '$pc'")
    is "$(qemu-img info -U --output=json "$cow" | sed -n 's/.*"full-backing-filename": "\(.*\)".*/\1/p')" "$m" \
       "$pc's COW is backed by the one master"
    is "$(V domstate "$pc:$T-c-v1" | head -1)" running "$pc runs"
done
ok "the master holds the repository's data" qemu-img compare -U -f qcow2 -F qcow2 "$m" "$R/$T-c-v1.qcow2"
is "$(stat -c '%i %Y' "$m")" "$ino" "the master was not rewritten afterwards (same inode and mtime)"
is "$(find "$WORLD/master" -name '*.tmp-*' | wc -l)" 0 "no temporary files in the master dir"
done_testing
