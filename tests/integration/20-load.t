#!/usr/bin/env bash
# A load goes from a DBA's INSERT to READY on real libvirt; a second load
# replaces the first domain; a missing image fails permanently with a clear
# error; a DBA's plain-SQL reset retries it; two workers on 20 reservations
# never run one computer twice at once and finish them all.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_libvirt
world_dirs
[ "$VCL_TEST_LIBVIRT" = real ] || skip_all "no libvirt daemon can run here (loads need QEMU)"

VCLCTL="$ROOT/bin/vclctl"
WORKER="$ROOT/bin/vcl-worker"
URI="$VCL_TEST_URI"
V() { virsh -q -c "$URI" "$@"; }
# Names unique to this world: test runs sharing one libvirtd never collide.
T="t${WORLD##*.}"

ok "migrate" "$VCLCTL" migrate
ok "migrate again is a no-op" "$VCLCTL" migrate

qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v1.qcow2" 64M
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v2.qcow2" 64M
ok "node add" "$VCLCTL" node add node1 --uri "$URI" --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo" --max-loads 3
ok "node check node1 (preflight; probes the guest CPU once)" "$VCLCTL" node check node1
ok "image add" "$VCLCTL" image add $T-blank --os-type none
ok "revision 1" "$VCLCTL" image revision-add $T-blank --revision 1 --file-stem $T-blank-v1
ok "revision 2" "$VCLCTL" image revision-add $T-blank --revision 2 --file-stem $T-blank-v2
ok "revision 3 (file missing everywhere)" "$VCLCTL" image revision-add $T-blank --revision 3 --file-stem $T-blank-v3
for i in 1 2 3 4 5; do
    ok "computer $T-pc$i" "$VCLCTL" computer add "$T-pc$i" --node node1 --mac "52:54:00:$(printf %02x $((RANDOM % 256))):10:0$i" --memory 128 --vcpus 2
    world_track_domain "$T-pc$i:$T-blank-v1"
    world_track_domain "$T-pc$i:$T-blank-v2"
done
image_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")
cfg=$(world_config w1)

# --- 1. INSERT -> READY -----------------------------------------------------
id=$(psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id)
               SELECT c.id, ir.id FROM vcl.computer c, vcl.image_revision ir
                WHERE c.name = '$T-pc1' AND ir.file_stem = '$T-blank-v1' RETURNING id")
t0=$(date +%s.%N)
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-a.log"
t1=$(date +%s.%N)
diag "INSERT to READY: $(echo "$t1 - $t0" | bc) s (worker start included)"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "reservation $id is done"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc1'")" READY "computer written back READY"
is "$(psql_val "SELECT ir.file_stem FROM vcl.computer c JOIN vcl.image_revision ir ON ir.id = c.current_revision_id WHERE c.name = '$T-pc1'")" \
   $T-blank-v1 "current revision recorded"
is "$(psql_val "SELECT string_agg(stage || '=' || outcome, ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $id")" \
   "cleanup=ok generate_xml=ok pre_define=ok write_xml=ok define=ok power_on=ok post_load=ok node_status=ok" \
   "eight stages logged in order, all ok"
is "$(psql_val "SELECT count(*) FROM vcl.reservation_stage WHERE reservation_id = $id AND duration_ms IS NULL")" 0 "every stage has a duration"
is "$(V domstate "$T-pc1:$T-blank-v1" | head -1)" running "domain $T-pc1:$T-blank-v1 is running"
cow="$WORLD/cow/$T-pc1_${image_id}-v1.qcow2"
ok "COW disk exists at $cow" test -f "$cow"
ok "master copied from the repository" test -f "$WORLD/master/$T-blank-v1.qcow2"
is "$(qemu-img info -U --output=json "$cow" | sed -n 's/.*"full-backing-filename": "\(.*\)".*/\1/p')" \
   "$WORLD/master/$T-blank-v1.qcow2" "COW is backed by the master"
is "$(qemu-img info -U --output=json "$cow" | sed -n 's/.*"backing-filename-format": "\(.*\)".*/\1/p')" qcow2 "backing format recorded as qcow2 (-F)"
ok "XML written on the node" test -f "$WORLD/xml/$T-pc1_${image_id}-v1.xml"
xml=$(V dumpxml "$T-pc1:$T-blank-v1")
like "$xml" "$(psql_val "SELECT mac0 FROM vcl.computer WHERE name = '$T-pc1'")" "domain has the computer's MAC"
like "$xml" "<vcl:owner[^>]*computer=.$T-pc1." "domain metadata records the computer"
like "$xml" "reservation=.$id." "domain metadata records the reservation"
like "$xml" "<topology sockets=.1. dies=.1. cores=.2. threads=.1./>|<topology sockets=.1. cores=.2. threads=.1./>" "CPU topology matches 2 vCPUs"
is "$(ls "$WORLD/master" | grep -c tmp)" 0 "no temporary files left in the master dir"
out=$("$VCLCTL" status $T-pc1)
like "$out" "READY" "vclctl status says READY"

# --- 2. a second load replaces the first domain ------------------------------
id2=$("$VCLCTL" load $T-pc1 $T-blank:2)
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-b.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id2")" done "second load done"
is "$(V domstate "$T-pc1:$T-blank-v2" | head -1)" running "new domain running"
ok "old domain is gone" bash -c "! virsh -q -c '$URI' dominfo '$T-pc1:$T-blank-v1' >/dev/null 2>&1"
ok "old COW removed" test ! -e "$cow"
ok "old XML removed" test ! -e "$WORLD/xml/$T-pc1_${image_id}-v1.xml"
ok "new COW present" test -f "$WORLD/cow/$T-pc1_${image_id}-v2.qcow2"
ok "masters are never removed" test -f "$WORLD/master/$T-blank-v1.qcow2"
is "$(V list --all --name | grep -c "^$T-pc1:")" 1 "exactly one domain for $T-pc1"
like "$(psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $id2 AND stage = 'cleanup'")" \
     "removed 1 domain" "cleanup detail says what it removed"

# --- 2b. cleanup asks for the owner only in the computer's name space -------
# Two domains carrying pc1's owner metadata, defined by hand: one named
# "<computer>:..." (the only names vcl-worker gives) is pc1's and goes; one
# named otherwise is never asked (one metadata call per domain on the node
# was most of a cleanup's time) and stays.
owner="<metadata><vcl:owner xmlns:vcl='http://vcl-worker.apache.invalid/xmlns/domain/1' computer='$T-pc1' reservation='$id2' image-revision='1' file-stem='$T-blank-v1'/></metadata>"
for d in "$T-pc1:stray" "$T-stray-of-pc1"; do
    world_track_domain "$d"
    printf "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>%s</domain>\n" \
        "$d" "$owner" >"$WORLD/stray.xml"
    V define "$WORLD/stray.xml" >/dev/null
done
id2b=$("$VCLCTL" load $T-pc1 $T-blank:1)
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-b2.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id2b")" done "third load of $T-pc1 done"
ok "a domain named $T-pc1:... with $T-pc1's owner metadata is removed" \
   bash -c "! virsh -q -c '$URI' dominfo '$T-pc1:stray' >/dev/null 2>&1"
ok "a domain outside that name space is left alone" V dominfo "$T-stray-of-pc1"
like "$(psql_val "SELECT detail FROM vcl.reservation_stage WHERE reservation_id = $id2b AND stage = 'cleanup'")" \
     "removed 2 domain" "cleanup removed the v2 domain and the stray one"
is "$(V list --all --name | grep -c "^$T-pc1:")" 1 "exactly one domain for $T-pc1 again"

# --- 3. missing image: permanent failure, then a DBA retry -------------------
id3=$("$VCLCTL" load $T-pc2 $T-blank:3)
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-c.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id3")" failed "missing image fails"
is "$(psql_val "SELECT attempts FROM vcl.reservation WHERE id = $id3")" 1 "failed at once (permanent), no retries"
is "$(psql_val "SELECT failed_stage FROM vcl.reservation WHERE id = $id3")" pre_define "failing stage kept"
like "$(psql_val "SELECT last_error FROM vcl.reservation WHERE id = $id3")" "$T-blank-v3.*not found" "error names the image and says not found"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc2'")" RELOAD "computer stays RELOAD"
qemu-img create -q -f qcow2 "$WORLD/repo/$T-blank-v3.qcow2" 64M
world_track_domain "$T-pc2:$T-blank-v3"
psql_val "UPDATE vcl.reservation SET state = 'pending' WHERE id = $id3" >/dev/null
is "$(psql_val "SELECT attempts || ' ' || (run_at <= now()) FROM vcl.reservation WHERE id = $id3")" "0 true" "DBA reset: attempts cleared, runnable now"
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-d.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id3")" done "DBA retry finished the load"
is "$(psql_val "SELECT string_agg(stage, ',' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $id3
                AND lease_token = (SELECT lease_token FROM vcl.reservation WHERE id = $id3)")" \
   "pre_define,write_xml,define,power_on,post_load,node_status" "the retry resumed at pre_define (cleanup and generate_xml not rerun)"
is "$(psql_val "SELECT node_status FROM vcl.computer WHERE name = '$T-pc2'")" READY "$T-pc2 READY after the retry"

# --- 4. two workers, 20 reservations over 5 computers -------------------------
psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id)
          SELECT c.id, ir.id FROM generate_series(1, 4) g, vcl.computer c, vcl.image_revision ir
           WHERE ir.file_stem = CASE WHEN g % 2 = 0 THEN '$T-blank-v1' ELSE '$T-blank-v2' END
           ORDER BY g, c.name" >/dev/null
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'pending'")" 20 "20 reservations queued"
cfgA=$(world_config wA "slots: 2")
cfgB=$(world_config wB "slots: 2")
for round in 1 2 3 4 5; do
    "$WORKER" --config "$cfgA" --drain 2>>"$WORLD/wA.log" & a=$!; world_track_pid $a
    "$WORKER" --config "$cfgB" --drain 2>>"$WORLD/wB.log" & b=$!; world_track_pid $b
    wait $a $b
    [ "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state IN ('pending','running')")" = 0 ] && break
done
is "$(psql_val "SELECT count(*) FROM vcl.reservation WHERE state = 'done'")" 24 "all 20 (+4 earlier) reservations done"
is "$(psql_val "
  WITH spans AS (SELECT r.computer_id, r.id, min(s.started_at) a, max(s.finished_at) b
                   FROM vcl.reservation r JOIN vcl.reservation_stage s ON s.reservation_id = r.id
                  GROUP BY 1, 2)
  SELECT count(*) FROM spans x JOIN spans y ON x.computer_id = y.computer_id AND x.id < y.id
   WHERE x.a < y.b AND y.a < x.b")" 0 "no two reservations of one computer ever overlapped"
is "$(psql_val "
  SELECT count(*) FROM vcl.reservation x JOIN vcl.reservation y ON x.computer_id = y.computer_id
     AND x.id < y.id AND x.finished_at > y.started_at")" 0 "reservations of each computer ran in creation order"
diag "jobs per worker: $(psql_val "SELECT string_agg(w.name || '=' || n, ' ') FROM (SELECT worker_id, count(*) n FROM vcl.reservation GROUP BY 1) x JOIN vcl.worker w ON w.id = x.worker_id")"
for i in 1 2 3 4 5; do
    is "$(V list --all --name | grep -c "^$T-pc$i:")" 1 "exactly one domain for $T-pc$i"
done
is "$(ls "$WORLD/cow" | wc -l)" 5 "exactly one COW per computer"
is "$(find "$WORLD" -name '*.tmp-*' | wc -l)" 0 "no temporary files anywhere"
is "$(grep -ci deadlock "$WORLD"/wA.log "$WORLD"/wB.log | awk -F: '{s+=$2} END {print s+0}')" 0 "no deadlock errors in worker logs"
done_testing
