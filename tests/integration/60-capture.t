#!/usr/bin/env bash
# capture: a loaded computer's disk (its COW over the master) becomes a new,
# standalone master, published on the node and in the repository and
# registered as the next revision of the image; the computer is left off
# (RELOAD) or reloaded from the new revision. A target that exists already
# fails for good and is never touched; bad input changes nothing; a worker
# killed just before any stage's checkpoint leaves a capture that a rerun
# finishes with exactly one new revision.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (captures need QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
FAULTY="$ROOT/build/test/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
T="t${WORLD##*.}"
M="$WORLD/master"
R="$WORLD/repo"
backing() { qemu-img info -U --output=json "$1" | sed -n 's/.*"backing-filename": "\(.*\)".*/\1/p'; }
vsize() { qemu-img info -U --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }
stages() { psql_val "SELECT string_agg(stage || '=' || outcome, ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $1"; }
drain() { "$WORKER" --config "$cfg" --drain 2>>"$WORLD/worker.log"; }

ok "migrate" "$VCLCTL" migrate
# The repository image holds data (0x5a in its first MiB): a capture that
# loses the backing chain would lose it.
qemu-img create -q -f qcow2 "$R/$T-blank-v1.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 1M" "$R/$T-blank-v1.qcow2" >/dev/null
ok "node add" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$M" --cow-dir "$WORLD/cow" \
    --xml-dir "$WORLD/xml" --repo "$R" --max-loads 3
ok "image add" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
for i in 1 2 3; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node node1 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):60:0$i" --memory 128 --vcpus 1
    for v in 1 2 3 4 5 6 7 8 9; do world_track_domain "$T-pc$i:$T-blank-v$v"; done
done
cfg=$(world_config w1)

id=$("$VCLCTL" load $T-pc1 $T-blank:1)
drain
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc1'")" READY "$T-pc1 loaded with $T-blank:1"
cow1=$(psql_val "SELECT cow_path FROM vcl.computer WHERE name = '$T-pc1'")
is "$(backing "$cow1")" "$M/$T-blank-v1.qcow2" "its COW is backed by the master"

# --- 1. capture: revision 2, left off ------------------------------------------
id=$("$VCLCTL" capture $T-pc1 --shutdown-timeout 2)
like "$id" '^[0-9]+$' "vclctl capture prints the reservation id"
is "$(psql_val "SELECT operation || ' ' || args::text FROM vcl.reservation WHERE id = $id")" \
   'capture {"shutdown_timeout": 2}' "queued as a capture with its args"
t0=$(date +%s.%N)
drain
diag "capture of a 64 MiB disk: $(echo "$(date +%s.%N) - $t0" | bc) s (worker start and a 2 s shutdown timeout included)"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "capture done"
is "$(stages $id)" "shutdown=ok flatten=ok verify=ok publish=ok upload=ok register=ok after=ok" \
   "seven stages, in order, all ok"
like "$(psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $id AND stage = 'shutdown'")" \
     "did not shut down within 2 s .*destroyed" "the blank guest ignores ACPI: destroyed after the timeout"
is "$(psql_val "SELECT revision || ' ' || file_stem || ' ' || production FROM vcl.image_revision
                 WHERE image_id = (SELECT id FROM vcl.image WHERE name = '$T-blank') ORDER BY revision DESC LIMIT 1")" \
   "2 $T-blank-v2 false" "new image_revision: revision 2, file stem $T-blank-v2, not production"
new=$M/$T-blank-v2.qcow2
ok "the new master exists" test -f "$new"
is "$(backing "$new")" "" "the new master has no backing file"
is "$(vsize "$new")" 67108864 "the new master's virtual size is the disk's (64 MiB)"
ok "the new master passes qemu-img check" qemu-img check -q -U "$new"
ok "the new master holds the data of the old master (flattened)" \
   qemu-io -r -U -f qcow2 -c "read -P 0x5a 0 1M" "$new"
is "$(psql_val "SELECT size_bytes FROM vcl.image_revision WHERE file_stem = '$T-blank-v2'")" "$(stat -c %s "$new")" \
   "size_bytes is the master's file size"
ok "the repository holds a copy" test -f "$R/$T-blank-v2.qcow2"
ok "the copy has the same content" qemu-img compare -U -f qcow2 -F qcow2 "$new" "$R/$T-blank-v2.qcow2"
is "$(backing "$R/$T-blank-v2.qcow2")" "" "the repository copy has no backing file"
is "$(psql_val "SELECT node_status || ': ' || status_reason FROM vcl.computer WHERE name = '$T-pc1'")" \
   "RELOAD: captured into $T-blank-v2" "the computer is RELOAD: captured into $T-blank-v2"
is "$(V domstate "$T-pc1:$T-blank-v1" | head -1)" "shut off" "its domain is left off"
is "$(psql_val "SELECT ir.file_stem FROM vcl.reservation r JOIN vcl.image_revision ir ON ir.id = r.image_revision_id WHERE r.id = $id")" \
   "$T-blank-v2" "the reservation points at the revision it made"
like "$("$VCLCTL" image exists $T-blank:2 --node node1)" "node1 +node +$new" "vclctl image exists finds it on the node"
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
is "$(psql_val "SELECT count(*) FROM vcl.temp_file")" 0 "and no recorded temp file rows (vcl.temp_file)"

# --- 2. the COW's own data is captured too: revision 3, then reloaded --------
qemu-io -f qcow2 -c "write -P 0x77 8M 1M" "$cow1" >/dev/null
id=$("$VCLCTL" capture $T-pc1 --after reload --shutdown-timeout 2)
drain
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "second capture done"
like "$(psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $id AND stage = 'shutdown'")" \
     "was already shut ?off" "the domain was already off"
is "$(psql_val "SELECT revision || ' ' || production FROM vcl.image_revision WHERE file_stem = '$T-blank-v3'")" \
   "3 false" "second capture: revision 3"
ok "revision 3 holds what the guest's disk had written (0x77 at 8 MiB)" \
   qemu-io -r -U -f qcow2 -c "read -P 0x77 8M 1M" "$M/$T-blank-v3.qcow2"
ok "and the old master's data" qemu-io -r -U -f qcow2 -c "read -P 0x5a 0 1M" "$M/$T-blank-v3.qcow2"
ok "revision 2 is unchanged (zeros at 8 MiB)" qemu-io -r -U -f qcow2 -c "read -P 0 8M 1M" "$new"
load=$(psql_val "SELECT reload_reservation_id FROM vcl.capture WHERE reservation_id = $id")
is "$(psql_val "SELECT operation || ' ' || state || ' ' || (args->>'after_capture') FROM vcl.reservation WHERE id = $load")" \
   "load done $id" "after=reload queued a load of the new revision (and drain ran it)"
is "$(psql_val "SELECT c.node_status || ' ' || ir.file_stem FROM vcl.computer c JOIN vcl.image_revision ir ON ir.id = c.current_revision_id WHERE c.name = '$T-pc1'")" \
   "READY $T-blank-v3" "$T-pc1 is READY with the captured revision"
is "$(V domstate "$T-pc1:$T-blank-v3" | head -1)" running "its new domain runs"
is "$(backing "$(psql_val "SELECT cow_path FROM vcl.computer WHERE name = '$T-pc1'")")" "$M/$T-blank-v3.qcow2" \
   "its new COW is backed by the captured master"

# --- 3. a target that exists already: permanent, untouched -------------------
echo "not an image" >"$M/$T-custom.qcow2"
before=$(stat -c '%i %Y %s' "$M/$T-custom.qcow2")
id=$("$VCLCTL" capture $T-pc1 --file-stem $T-custom --shutdown-timeout 2)
drain
is "$(psql_val "SELECT state || ' ' || attempts || ' ' || failed_stage FROM vcl.reservation WHERE id = $id")" \
   "failed 1 shutdown" "capture into an existing master file: failed at once (permanent)"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" \
     "capture target $T-custom already exists on the node \\($M/$T-custom.qcow2\\); a capture never overwrites" \
     "the error names the file and says it is never overwritten"
is "$(stat -c '%i %Y %s' "$M/$T-custom.qcow2")" "$before" "the existing file is untouched (inode, mtime, size)"
is "$(V domstate "$T-pc1:$T-blank-v3" | head -1)" running "the guest was not shut down"
is "$(psql_val "SELECT count(*) FROM vcl.capture WHERE reservation_id = $id")" 0 "no target recorded"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc1'")" READY "the computer is still READY"

qemu-img create -q -f qcow2 "$R/$T-blank-v4.qcow2" 1M
before=$(stat -c '%i %Y %s' "$R/$T-blank-v4.qcow2")
id=$("$VCLCTL" capture $T-pc1 --shutdown-timeout 2)
drain
is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $id")" "failed 1" \
   "next revision's file already in the repository: failed at once"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" \
     "$T-blank-v4 already exists in the repository \\($R/$T-blank-v4.qcow2\\)" "the error says where"
is "$(stat -c '%i %Y %s' "$R/$T-blank-v4.qcow2")" "$before" "the repository file is untouched"
is "$(psql_val "SELECT count(*) FROM vcl.image_revision WHERE image_id = (SELECT id FROM vcl.image WHERE name = '$T-blank')")" \
   3 "no revision registered by the failed captures"
rm -f "$R/$T-blank-v4.qcow2"

# --- 4. bad input: permanent, nothing changed ---------------------------------
id=$("$VCLCTL" capture $T-pc2)
drain
is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $id")" "failed 1" \
   "a computer without a loaded domain: failed at once"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" "no loaded domain|load it first" \
     "the error says to load it first"
id=$("$VCLCTL" enqueue $T-pc1 capture --args '{"after": "sideways"}')
drain
is "$(psql_val "SELECT state || ' ' || attempts FROM vcl.reservation WHERE id = $id")" "failed 1" "after=sideways: failed at once"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id")" 'invalid "after"' "the error names the argument"
is "$(V domstate "$T-pc1:$T-blank-v3" | head -1)" running "the guest still runs"
fails "vclctl capture --after sideways is a usage error" "$VCLCTL" capture $T-pc1 --after sideways
fails "vclctl capture --file-stem with a slash is a usage error" "$VCLCTL" capture $T-pc1 --file-stem a/b

# --- 5. killed just before each stage's checkpoint, then finished -------------
id=$("$VCLCTL" load $T-pc3 $T-blank:1)
drain
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc3'")" READY "$T-pc3 loaded"
id=$("$VCLCTL" capture $T-pc3 --after reload --shutdown-timeout 1 --max-attempts 20)
for st in shutdown flatten verify publish upload register after; do
    { VCL_FAULT="$st:finish" "$FAULTY" --config "$cfg" --drain 2>>"$WORLD/faulty.log"; } 2>/dev/null
    is "$(psql_val "SELECT outcome FROM vcl.reservation_stage WHERE reservation_id = $id ORDER BY id DESC LIMIT 1")" \
       "running" "killed after $st ran, before its checkpoint"
    # the lease of the dead worker lapses (sooner than waiting for it; a
    # worker-owned column, so written as the worker: sql/functions/guard.sql)
    PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" psql_val "UPDATE vcl.reservation SET lease_expires_at = now() - interval '1 second' WHERE id = $id" >/dev/null
done
drain
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "the capture finished after 7 kills"
is "$(psql_val "SELECT string_agg(DISTINCT stage, ',') FROM vcl.reservation_stage WHERE reservation_id = $id AND outcome = 'ok'")" \
   "after,flatten,publish,register,shutdown,upload,verify" "every stage finished once it was rerun"
rev=$(psql_val "SELECT revision FROM vcl.capture WHERE reservation_id = $id")
is "$rev" 4 "its target: revision 4 (the captures that failed took no number)"
is "$(psql_val "SELECT count(*) FROM vcl.image_revision WHERE file_stem = '$T-blank-v$rev'")" 1 "registered exactly once"
is "$(psql_val "SELECT count(*) FROM vcl.image_revision WHERE image_id = (SELECT id FROM vcl.image WHERE name = '$T-blank')")" \
   4 "one new revision in all"
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE args->>'after_capture' = '$id'")" 1 "its reload queued exactly once"
is "$(backing "$M/$T-blank-v$rev.qcow2")" "" "the master has no backing file"
ok "the repository copy matches" qemu-img compare -U -f qcow2 -F qcow2 "$M/$T-blank-v$rev.qcow2" "$R/$T-blank-v$rev.qcow2"
is "$(psql_val "SELECT c.node_status || ' ' || ir.file_stem FROM vcl.computer c JOIN vcl.image_revision ir ON ir.id = c.current_revision_id WHERE c.name = '$T-pc3'")" \
   "READY $T-blank-v$rev" "$T-pc3 reloaded from its capture"
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
is "$(psql_val "SELECT count(*) FROM vcl.temp_file")" 0 "and no recorded temp file rows (vcl.temp_file)"
is "$(V list --all --name | grep -c "^$T-pc3:")" 1 "exactly one domain for $T-pc3"

# --- 6. the same over the ssh transport (loopback sshd) -----------------------
if world_sshd; then
    mkdir -p "$WORLD/master2" && chmod 755 "$WORLD/master2"
    ok "node2 (ssh)" "$VCLCTL" node add node2 --uri "$URI" --transport ssh --ssh-host 127.0.0.1 \
        --ssh-port "$VCL_SSH_PORT" --ssh-user root --master-dir "$WORLD/master2" \
        --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$R"
    ok "computer $T-pc4 on node2" "$VCLCTL" computer add "$T-pc4" --node node2 \
        --mac "52:54:00:$(printf %02x $((RANDOM % 256))):60:04" --memory 128 --vcpus 1
    for v in 1 2 3 4 5 6; do world_track_domain "$T-pc4:$T-blank-v$v"; done
    cfg_ssh=$(world_config wssh "ssh_private_key: \"$VCL_SSH_KEY\"" "ssh_known_hosts: \"$VCL_SSH_KNOWN_HOSTS\"")
    "$VCLCTL" load $T-pc4 $T-blank:1 >/dev/null
    "$WORKER" --config "$cfg_ssh" --drain 2>>"$WORLD/wssh.log"
    is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc4'")" READY "$T-pc4 loaded over ssh"
    id=$("$VCLCTL" capture $T-pc4 --shutdown-timeout 1)
    "$WORKER" --config "$cfg_ssh" --drain 2>>"$WORLD/wssh.log"
    is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "capture over ssh done"
    rev=$(psql_val "SELECT revision FROM vcl.capture WHERE reservation_id = $id")
    is "$rev" 5 "revision 5"
    is "$(backing "$WORLD/master2/$T-blank-v$rev.qcow2")" "" "its master on node2 has no backing file"
    ok "its repository copy matches" qemu-img compare -U -f qcow2 -F qcow2 "$WORLD/master2/$T-blank-v$rev.qcow2" "$R/$T-blank-v$rev.qcow2"
else
    skip "no sshd here: capture over the ssh transport not exercised" 7
fi

# --- 7. two captures of one image at once, by two workers ----------------------
before=$(psql_val "SELECT count(*) FROM vcl.image_revision WHERE image_id = (SELECT id FROM vcl.image WHERE name = '$T-blank')")
c1=$("$VCLCTL" capture $T-pc1 --shutdown-timeout 1)
c3=$("$VCLCTL" capture $T-pc3 --shutdown-timeout 1)
cfgA=$(world_config wA "slots: 1")
cfgB=$(world_config wB "slots: 1")
"$WORKER" --config "$cfgA" 2>"$WORLD/wA.log" & pa=$!; world_track_pid $pa
"$WORKER" --config "$cfgB" 2>"$WORLD/wB.log" & pb=$!; world_track_pid $pb
both_done() { [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE id IN ($c1, $c3) AND state IN ('done', 'failed')")" = 2 ]; }
wait_for "both captures finished" 120 both_done
kill -TERM $pa $pb; wait $pa $pb
is "$(psql_val "SELECT string_agg(state || '/' || attempts, ',' ORDER BY id) FROM vcl.reservation WHERE id IN ($c1, $c3)")" \
   "done/1,done/1" "both done, first attempt each"
is "$(psql_val "SELECT count(DISTINCT w.name) FROM vcl.reservation r JOIN vcl.worker w ON w.id = r.worker_id WHERE r.id IN ($c1, $c3)")" \
   2 "by two workers"
is "$(psql_val "SELECT count(DISTINCT revision) FROM vcl.capture WHERE reservation_id IN ($c1, $c3)")" 2 "two different revisions"
is "$(psql_val "SELECT count(*) FROM vcl.image_revision WHERE image_id = (SELECT id FROM vcl.image WHERE name = '$T-blank')")" \
   $((before + 2)) "two new revisions registered, no more"
for c in $c1 $c3; do
    stem=$(psql_val "SELECT file_stem FROM vcl.capture WHERE reservation_id = $c")
    ok "$stem: master and repository copy match" qemu-img compare -U -f qcow2 -F qcow2 "$M/$stem.qcow2" "$R/$stem.qcow2"
done
diag "revision race lost and retried: $(cat "$WORLD/wA.log" "$WORLD/wB.log" | grep -c 'was just taken by another capture') time(s)"

# --- 8. the race made certain: another capture's uncommitted target ----------
# A transaction of the test's reserves the next revision and stays open: the
# worker does not see it, picks the same number, its INSERT waits on the
# unique key; at COMMIT it loses and must take the next number at once.
img_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")
next=$(psql_val "SELECT greatest((SELECT max(revision) FROM vcl.image_revision WHERE image_id = $img_id),
                                 (SELECT max(revision) FROM vcl.capture WHERE image_id = $img_id)) + 1")
dummy=$(psql_val "INSERT INTO vcl.reservation (computer_id, operation, state)
                  SELECT id, 'noop', 'done' FROM vcl.computer WHERE name = '$T-pc2' RETURNING id")
mkfifo "$WORLD/race.fifo"
psql -XAtq -v ON_ERROR_STOP=1 <"$WORLD/race.fifo" >"$WORLD/race.out" 2>&1 & rpid=$!; world_track_pid $rpid
exec 4>"$WORLD/race.fifo"
echo "BEGIN; INSERT INTO vcl.capture (reservation_id, image_id, revision, file_stem) VALUES ($dummy, $img_id, $next, '$T-race');" >&4
c=$("$VCLCTL" capture $T-pc1 --shutdown-timeout 1)
"$WORKER" --config "$cfg" --drain 2>"$WORLD/race-worker.log" & wpid=$!; world_track_pid $wpid
blocked() { [ "$(psql_val "SELECT count(*) FROM pg_locks WHERE NOT granted")" -ge 1 ]; }
ok "the worker's target insert waits on the test's uncommitted revision $next" wait_for "insert blocked" 30 blocked
echo "COMMIT;" >&4
exec 4>&-
wait $wpid
is "$(psql_val "SELECT state || '/' || attempts FROM vcl.reservation WHERE id = $c")" "done/1" \
   "the capture lost the race and still finished in its first attempt"
is "$(psql_val "SELECT revision FROM vcl.capture WHERE reservation_id = $c")" $((next + 1)) "it took the next revision, $((next + 1))"
like "$(cat "$WORLD/race-worker.log")" "revision $next of $T-blank was just taken by another capture; picking the next" \
     "the worker says it lost revision $next"
is "$(psql_val "SELECT count(*) FROM vcl.image_revision WHERE image_id = $img_id AND revision = $next")" 0 \
   "nothing registered as the other's revision"
done_testing
