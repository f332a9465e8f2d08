#!/usr/bin/env bash
# stage_image (issue #14 item 4; worker/ops/op_stage_image.c,
# sql/010_stage_image.sql): `vclctl image stage` puts a master on a node
# ahead of its loads, through a load's own pre_define code (image lock row,
# inspection, qemu-img check, rename):
#   - staged on a node: the master is there, the row done, its progress seen
#     while the copy runs and by `vclctl show --follow`;
#   - staged again: no second copy ("present on the node"), done; a second
#     `image stage` while one is queued queues nothing (dedup, its id shown);
#   - a load afterwards makes no copy (its pre_define says so);
#   - a load queued while a staging holds the image lock waits for it and
#     makes no copy of its own;
#   - a hostile repository file (a vmdk descriptor pointing at a host file):
#     failed at once, permanently, no file of it on the node;
#   - bad names, a nonexistent image, revision or node: a clear vclctl error
#     and nothing queued; the schema refuses a stage_image row without a
#     revision, or with a computer;
#   - --all-nodes: one row per node; --wait prints the outcome;
#   - SIGKILL right after the stage started, in the middle of the copy (a
#     temp file on the node) and right before its checkpoint: a rescuing
#     worker finishes it once, the master in place and checked, no temp file,
#     the lock row gone. (The per-computer matrix, tests/fault/10-sigkill-
#     matrix.t, lists stage_image as a node operation killed here.)
. "$(dirname "$0")/../lib/world.sh"
. "$(dirname "$0")/../lib/images.sh"
world_init
world_libvirt
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"
world_dirs
world_vcl
R="$WORLD/repo"
res() { psql_val "SELECT $1 FROM vcl.reservation WHERE id = $2"; }
detail_running() { psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = '$2' AND outcome = 'running'"; }
detail_ok() { psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $1 AND stage = '$2' AND outcome = 'ok' ORDER BY id DESC LIMIT 1"; }
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }
staged() { psql_val "SELECT count(*) FROM vcl.reservation WHERE operation = 'stage_image'"; }
drain() { "$WORKER" --config "$CFG" --drain 2>>"$WORLD/w1.log"; }

qemu-img create -q -f qcow2 "$R/$T-a-v1.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 16M" "$R/$T-a-v1.qcow2" >/dev/null
ok "node n1" "$VCLCTL" node add n1 --uri "$VCL_TEST_URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$R"
mkdir -p "$WORLD/n2"/{master,cow} && chmod 755 "$WORLD/n2" "$WORLD/n2"/*
ok "node n2" "$VCLCTL" node add n2 --uri "$VCL_TEST_URI" --master-dir "$WORLD/n2/master" \
    --cow-dir "$WORLD/n2/cow" --xml-dir "$WORLD/xml" --repo "$R"
ok "image a" "$VCLCTL" image add $T-a --os-type none
ok "a revision 1" "$VCLCTL" image revision-add $T-a --revision 1 --file-stem $T-a-v1
for i in 1 2; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node n1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):26:0$i" --memory 128 --vcpus 1
done
world_track_domains "$T-pc"
n1=$(psql_val "SELECT id FROM vcl.node WHERE name = 'n1'")
rev1=$(psql_val "SELECT ir.id FROM vcl.image_revision ir JOIN vcl.image i ON i.id = ir.image_id WHERE i.name = '$T-a' AND ir.revision = 1")
CFG=$(world_config w1)
M1="$WORLD/master/$T-a-v1.qcow2"

# --- 1. stage on n1: progress while it runs, the master, done -------------------
id=$("$VCLCTL" image stage $T-a --node n1)
like "$id" '^[0-9]+$' "image stage prints the reservation id"
is "$(res "operation || ' ' || coalesce(computer_id::text, 'none') || ' ' || node_id || ' ' || image_revision_id" "$id")" \
   "stage_image none $n1 $rev1" "the row names the node and the revision, no computer"
"$VCLCTL" show "$id" --follow >"$WORLD/follow.out" 2>"$WORLD/follow.err" &
fpid=$!
world_worker w1 --fault master:stop-finish --drain
wpid=$WORLD_WORKER_PID
wait_for "the worker stops after the master stage ran" 90 stopped "$wpid"
like "$(detail_running "$id" master)" \
     "^copied 64\.0 MiB of 64\.0 MiB \(100%\).*\(qemu-img convert on the node\)$" \
     "while the stage runs, its detail is the copy's progress"
kill -CONT "$wpid"
world_worker_wait "$wpid" 90
rc=0
wait "$fpid" || rc=$?
is "$rc" 0 "show --follow exits 0 when the staging ends done"
diag "$(sed 's/^/  /' "$WORLD/follow.out")"
like "$(cat "$WORLD/follow.out")" "stage master started \(est 30 s\)" "show --follow shows the stage (its default estimate: pre_define's)"
like "$(tail -1 "$WORLD/follow.out")" "#$id done in [0-9.]+ s$" "and that it ended done"
is "$(res state "$id")" done "stage_image done"
ok "the master is on the node" test -f "$M1"
is "$(qemu-img info --output=json "$M1" | grep -c '"backing-filename"')" 0 "it stands alone"
like "$(detail_ok "$id" master)" "^master=$M1 \(master converted from .*\); copied 64\.0 MiB of 64\.0 MiB \(100%\)" \
     "the stage log keeps how the master was made and the copy's last progress"
is "$(find "$WORLD/master" -name "*.tmp-*" | wc -l)" 0 "no temp file left"
is "$(psql_val "SELECT count(*) FROM vcl.image_lock WHERE node_id = $n1 AND image_revision_id = $rev1")" 0 \
   "the image lock row was released"
ino=$(stat -c '%i %Y' "$M1")

# --- 2. again: no second copy; a duplicate queues nothing ------------------------
id2=$("$VCLCTL" image stage "$T-a:1" --node n1)
like "$id2" '^[0-9]+$' "a second staging is queued (the first one is done)"
before=$(staged)
out=$("$VCLCTL" image stage "$T-a:1" --node n1 2>"$WORLD/dup.err")
is "$out" "$id2" "staging it once more while queued prints the queued id"
like "$(cat "$WORLD/dup.err")" "n1: $T-a:1 is already being staged there \(reservation $id2\)" "with a note"
is "$(staged)" "$before" "and queues nothing"
drain
is "$(res state "$id2")" done "the second staging is done"
like "$(detail_ok "$id2" master)" "\(master present on the node\)$" "it found the master: no copy"
is "$(stat -c '%i %Y' "$M1")" "$ino" "the master is the same file, untouched"

# --- 3. a load afterwards makes no copy ------------------------------------------
lid=$("$VCLCTL" load "$T-pc1" "$T-a:1")
drain
is "$(res state "$lid")" done "the load is done"
like "$(detail_ok "$lid" pre_define)" "\(master present on the node\)$" "its pre_define made no copy"
is "$(stat -c '%i %Y' "$M1")" "$ino" "the master was not replaced"

# --- 4. a load while a staging holds the image lock waits for it -----------------
qemu-img create -q -f raw "$R/$T-big-v1.raw" 1G
qemu-io -f raw -c "write -P 0x55 0 1G" "$R/$T-big-v1.raw" >/dev/null
ok "image big" "$VCLCTL" image add $T-big --os-type none
ok "big revision 1" "$VCLCTL" image revision-add $T-big --revision 1 --file-stem $T-big-v1
revb=$(psql_val "SELECT ir.id FROM vcl.image_revision ir JOIN vcl.image i ON i.id = ir.image_id WHERE i.name = '$T-big'")
sid=$("$VCLCTL" image stage $T-big --node n1)
world_worker w1
wpid=$WORLD_WORKER_PID
held() { [ "$(psql_val "SELECT reservation_id FROM vcl.image_lock WHERE node_id = $n1 AND image_revision_id = $revb")" = "$sid" ]; }
ok "the staging takes the image lock" wait_for "the staging's lock row" 60 held
lid2=$("$VCLCTL" load "$T-pc2" "$T-big:1")
wait_for "the load ends" 300 bash -c "[ \"\$(psql -XAtq -c \"SELECT state FROM vcl.reservation WHERE id = $lid2\")\" = done ]"
is "$(res state "$sid")" done "the staging is done"
is "$(res state "$lid2")" done "the load is done"
is "$(res attempts "$lid2")" 1 "the load did not fail meanwhile (one attempt)"
like "$(detail_ok "$sid" master)" "master converted from " "the staging made the copy"
like "$(detail_ok "$lid2" pre_define)" "\(master (made by another worker|present on the node)\)$" \
     "the load made none: it found the staging's master"
if grep -q "waiting for another worker copying $T-big-v1" "$WORLD/w1.log"; then
    pass "the load waited on the image lock (worker log)"
else
    pass "the load found the master in place (the staging finished before it reached pre_define)"
fi
world_workers_term 60 "the worker" "$wpid"

# --- 5. hostile repository file: vmdk descriptor pointing at a host file ----------
hostile_vmdk "$R/$T-vmdk.vmdk"
ok "image hostile" "$VCLCTL" image add $T-bad --os-type none
ok "hostile revision" "$VCLCTL" image revision-add $T-bad --revision 1 --file-stem $T-vmdk
before=$(find "$WORLD/master" "$WORLD/cow" -printf '%p %s %T@\n' | sort)
hid=$("$VCLCTL" image stage $T-bad --node n1)
drain
is "$(res "state || ' ' || attempts" "$hid")" "failed 1" "staging a vmdk with an outside extent fails at once"
like "$(res last_error "$hid")" "vmdk extent outside its own directory '/etc/shadow'" "the error names it"
is "$(find "$WORLD/master" -name "$T-vmdk*" | wc -l)" 0 "no file of it on the node (master or temp)"
is "$(find "$WORLD/master" "$WORLD/cow" -printf '%p %s %T@\n' | sort)" "$before" "nothing on the node changed"

# --- 6. bad input: clear errors, nothing queued ------------------------------------
before=$(staged)
out=$("$VCLCTL" image stage 'bad;name' --node n1 2>&1); rc=$?
is "$rc" 2 "a bad image name is a usage error"
like "$out" "invalid image name" "and says so"
out=$("$VCLCTL" image stage $T-a --node '../n1' 2>&1); rc=$?
is "$rc" 2 "a bad node name is a usage error"
like "$out" "invalid node name" "and says so"
out=$("$VCLCTL" image stage $T-nosuch --node n1 2>&1); rc=$?
is "$rc" 1 "a nonexistent image fails"
like "$out" "no image named '$T-nosuch'" "and names it"
out=$("$VCLCTL" image stage "$T-a:9" --node n1 2>&1); rc=$?
is "$rc" 1 "a nonexistent revision fails"
like "$out" "image $T-a has no revision 9" "and names it"
out=$("$VCLCTL" image stage $T-a --node nosuch 2>&1); rc=$?
is "$rc" 1 "a nonexistent node fails"
like "$out" "no node named 'nosuch'" "and names it"
out=$("$VCLCTL" image stage $T-a 2>&1); rc=$?
is "$rc" 2 "neither --node nor --all-nodes is a usage error"
like "$out" "give --node NODE or --all-nodes" "and says what to give"
out=$("$VCLCTL" image stage $T-a --node n1 --all-nodes 2>&1); rc=$?
is "$rc" 2 "both is a usage error too"
is "$(staged)" "$before" "nothing was queued by any of them"
like "$(psql -XAtq -c "INSERT INTO vcl.reservation (node_id, operation) VALUES ($n1, 'stage_image')" 2>&1)" \
     "reservation_target_valid" "the schema refuses a stage_image without a revision"
cid=$(psql_val "SELECT id FROM vcl.computer WHERE name = '$T-pc1'")
like "$(psql -XAtq -c "INSERT INTO vcl.reservation (computer_id, node_id, image_revision_id, operation) VALUES ($cid, $n1, $rev1, 'stage_image')" 2>&1)" \
     "reservation_target_valid" "and one that names a computer"
like "$(psql -XAtq -c "INSERT INTO vcl.reservation (computer_id, image_revision_id, operation) VALUES ($cid, $rev1, 'stage_image')" 2>&1)" \
     "reservation_target_valid" "and one that names a computer and no node"
is "$(staged)" "$before" "nothing was queued"

# --- 7. --all-nodes and --wait ------------------------------------------------------
world_worker w1
wpid=$WORLD_WORKER_PID
out=$(timeout 180 "$VCLCTL" image stage $T-a --all-nodes --wait 2>"$WORLD/all.err"); rc=$?
is "$rc" 0 "--all-nodes --wait exits 0 when every staging is done"
is "$(grep -c "^reservation [0-9]* done$" <<<"$out")" 2 "one outcome per node"
like "$out" "master: master=$WORLD/n2/master/$T-a-v1.qcow2 \(master converted from " "n2 got its copy"
like "$out" "master: master=$M1 \(master present on the node\)" "n1 already had it"
ok "the master is on n2" test -f "$WORLD/n2/master/$T-a-v1.qcow2"
is "$(psql_val "SELECT string_agg(n.name, ',' ORDER BY n.name) FROM vcl.reservation r JOIN vcl.node n ON n.id = r.node_id WHERE r.operation = 'stage_image' AND r.image_revision_id = $rev1 AND r.id > $id2")" \
   "n1,n2" "one stage_image per node"
json=$("$VCLCTL" --json image stage $T-a --all-nodes)
like "$json" '^\[\{"node" ?: ?"n1", ?"id" ?: ?[0-9]+' "--json prints the rows"
world_workers_term 60 "the worker" "$wpid"
drain   # the two rows --json queued: none may be left for the killed workers below

# --- 8. SIGKILL at the start, mid-copy, at the finish: rescued once --------------
# rescue_done ID: drain until the row has ended (its lease, 10 s, expires first)
rescue_done() {
    local id=$1 deadline=$((SECONDS + 120))
    while [ "$(res state "$id")" != done ] && ((SECONDS < deadline)); do
        sleep 1
        drain
    done
}
# killed_cell STEM WHAT ID: the rescue finished ID once, the master is whole
killed_cell() {
    local stem=$1 what=$2 id=$3 m="$WORLD/master/$1.qcow2" rv
    rescue_done "$id"
    is "$(res state "$id")" done "$what: rescued, done"
    is "$(psql_val "SELECT string_agg(outcome, ',' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $id")" \
       "abandoned,ok" "$what: the killed run abandoned, one ok run after it"
    ok "$what: the master is in place" test -f "$m"
    ok "$what: and passes qemu-img check" qemu-img check -q -f qcow2 "$m"
    is "$(find "$WORLD/master" -name "$stem*.tmp-*" | wc -l)" 0 "$what: no temp file left"
    rv=$(psql_val "SELECT image_revision_id FROM vcl.reservation WHERE id = $id")
    is "$(psql_val "SELECT count(*) FROM vcl.image_lock WHERE image_revision_id = $rv")" 0 "$what: no lock row left"
}
for point in start finish; do
    [ "$point" = start ] && rv=2 || rv=3
    cp "$R/$T-a-v1.qcow2" "$R/$T-a-v$rv.qcow2"
    ok "a revision $rv" "$VCLCTL" image revision-add $T-a --revision $rv --file-stem $T-a-v$rv
    kid=$("$VCLCTL" image stage "$T-a:$rv" --node n1)
    world_worker w1 --fault master:$point --drain
    rc=0
    world_worker_wait "$WORLD_WORKER_PID" 90 || rc=$?
    is "$rc" 137 "master:$point: the worker was killed there"
    if [ "$point" = start ]; then
        ok "master:start: killed before any copy" test ! -e "$WORLD/master/$T-a-v$rv.qcow2"
    else
        ok "master:finish: killed with the master in place" test -f "$WORLD/master/$T-a-v$rv.qcow2"
    fi
    killed_cell $T-a-v$rv "master:$point" "$kid"
done
# mid-copy: a 512 MiB convert, killed once its temp file is on the node
qemu-img create -q -f raw "$R/$T-big-v2.raw" 512M
qemu-io -f raw -c "write -P 0x66 0 512M" "$R/$T-big-v2.raw" >/dev/null
ok "big revision 2" "$VCLCTL" image revision-add $T-big --revision 2 --file-stem $T-big-v2
kid=$("$VCLCTL" image stage "$T-big:2" --node n1)
world_worker w1
wpid=$WORLD_WORKER_PID
tmp_there() { [ -n "$(find "$WORLD/master" -name "$T-big-v2.qcow2.tmp-*" -size +1M)" ]; }
ok "the copy's temp file appears on the node" wait_for "a temp file of the copy" 120 tmp_there
kill -KILL "$wpid"
world_worker_wait "$wpid" 30
ok "mid-copy: killed with a partial temp file and no master" test ! -e "$WORLD/master/$T-big-v2.qcow2"
killed_cell $T-big-v2 "mid-copy" "$kid"

done_testing
