#!/usr/bin/env bash
# Reproductions of issue #12 items 1 and 2 on real libvirt: a row cannot
# bring what the worker defines, hold a node's load slot, or be reset while
# it runs; each case checks that nothing on the node changed that should not.
#   1. INSERT of a load with stage = 'generate_xml' and its own domain_xml (a
#      host file as the disk): the domain defined is the worker's XML;
#   2. resumed after generate_xml with domain_xml changed in the row (as if
#      by the worker's own role): the worker defines its own XML again;
#   3. a hand-written load with state, lease and a far-future blocks_until on
#      a node capped at one load: reset on INSERT, every load completes;
#   4. a DBA's reset of a running row while its worker is inside a stage:
#      refused with how to cancel; another worker claims nothing; one domain,
#      its disk intact, the row ends done.
. "$(dirname "$0")/../lib/fault.sh"
fault_world 1     # node "$T-n1" capped at one load, image "$T-blank" revision 1
V() { virsh -q -c "$URI" "$@"; }
as_worker() { PGOPTIONS="${PGOPTIONS:-} -c vcl.writer=worker" psql_val "$@"; }
sql_err() { psql -XAtq -v ON_ERROR_STOP=1 -c "$1" 2>&1 >/dev/null; }
for i in 1 2 3 4 5; do
    "$VCLCTL" computer add "$T-pc$i" --node "$T-n1" --mac "52:54:00:$(printf %02x $((RANDOM % 256))):20:0$i" \
        --memory 128 --vcpus 1 >/dev/null || bail "computer add $T-pc$i failed"
done
image_id=$(psql_val "SELECT id FROM vcl.image WHERE name = '$T-blank'")
rev_id=$(psql_val "SELECT id FROM vcl.image_revision WHERE file_stem = '$T-blank-v1'")
cfg=$(world_config w1)

# A "host file" a row would like to hand to a guest as its disk.
secret="$WORLD/secret.img"
head -c 1048576 /dev/urandom >"$secret"
chmod 644 "$secret"
secret_sum=$(sha256sum <"$secret")
evil_xml() {  # $1 computer: a definition with the worker's name but the host file as its disk
    cat <<XML
<domain type='qemu'><name>$1:$T-blank-v1</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$secret'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>
XML
}

# --- 1. INSERT with stage = 'generate_xml' and domain_xml --------------------------------------
id=$(psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, stage, domain_xml)
               SELECT c.id, $rev_id, 'generate_xml', \$x\$$(evil_xml "$T-pc1")\$x\$
                 FROM vcl.computer c WHERE c.name = '$T-pc1' RETURNING id")
is "$(psql_val "SELECT coalesce(stage, '-') || ' ' || (domain_xml IS NULL) FROM vcl.reservation WHERE id = $id")" "- true" \
   "the row's checkpoint and XML are dropped at INSERT"
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-1.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "the load is done"
like "$(psql_val "SELECT string_agg(stage, ' ' ORDER BY id) FROM vcl.reservation_stage WHERE reservation_id = $id")" \
     "^cleanup generate_xml pre_define" "every stage ran, generate_xml included"
xml=$(V dumpxml "$T-pc1:$T-blank-v1")
unlike "$xml" "secret.img" "the defined domain does not have the host file"
like "$xml" "$WORLD/cow/$T-pc1_${image_id}-v1.qcow2" "it has the worker's COW disk"
is "$(sha256sum <"$secret")" "$secret_sum" "the host file is unchanged"

# --- 2. resumed after generate_xml: the worker's own XML, built again ------------------------------
id=$("$VCLCTL" load "$T-pc2" "$T-blank:1")
{ VCL_FAULT="write_xml:start" "$TWORKER" --config "$cfg" --drain 2>"$WORLD/w1-2a.log"; } 2>/dev/null
is "$(psql_val "SELECT stage FROM vcl.reservation WHERE id = $id")" pre_define "killed at write_xml, checkpoint pre_define"
# the row's XML replaced (as the worker's role could; a submitter cannot), and the lease lapses
as_worker "UPDATE vcl.reservation SET domain_xml = \$x\$$(evil_xml "$T-pc2")\$x\$,
                  lease_expires_at = now() - interval '1 second' WHERE id = $id" >/dev/null
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-2b.log"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "the resumed load is done"
unlike "$(cat "$WORLD/xml/$T-pc2_${image_id}-v1.xml")" "secret.img" "the XML file written on the node is the worker's"
xml=$(V dumpxml "$T-pc2:$T-blank-v1")
unlike "$xml" "secret.img" "the defined domain is the worker's"
like "$xml" "$T-pc2_${image_id}-v1.qcow2" "with its COW disk"
is "$(sha256sum <"$secret")" "$secret_sum" "the host file is unchanged"

# --- 3. a hand-written row that would hold the node's only load slot forever ------------------------
held=$(psql_val "INSERT INTO vcl.reservation (computer_id, image_revision_id, state, finished_at, blocks_until,
                                              lease_token, lease_expires_at, attempts, worker_id)
                 SELECT c.id, $rev_id, 'cancelled', now(), now() + interval '100 years',
                        1, now() + interval '100 years', 1, 1
                   FROM vcl.computer c WHERE c.name = '$T-pc3' RETURNING id")
is "$(psql_val "SELECT concat_ws(' ', state, coalesce(blocks_until::text, '-'), coalesce(lease_expires_at::text, '-'),
                                 attempts, coalesce(lease_token::text, '-'))
                  FROM vcl.reservation WHERE id = $held")" "pending - - 0 -" "its state, block and lease are reset at INSERT"
other=$("$VCLCTL" load "$T-pc4" "$T-blank:1")
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-3.log"
is "$(psql_val "SELECT string_agg(state, ',' ORDER BY id) FROM vcl.reservation WHERE id IN ($held, $other)")" "done,done" \
   "both loads on the one-slot node completed"
is "$(V list --all --name | grep -c "^$T-pc[34]:")" 2 "one domain each"

# --- 4. a reset of a running row during a stage -------------------------------------------------
id=$("$VCLCTL" load "$T-pc5" "$T-blank:1")
slow=$(world_config slow "lease_seconds: 120" "heartbeat_seconds: 2")
VCL_FAULT="post_load:stop-start" "$TWORKER" --config "$slow" --drain 2>"$WORLD/w1-4.log" & zpid=$!
world_track_pid $zpid
stopped() { [ "$(ps -o stat= -p "$zpid" 2>/dev/null | cut -c1)" = T ]; }
ok "the worker stopped inside post_load (domain defined and started)" wait_for "worker stopped" 120 stopped
cow="$WORLD/cow/$T-pc5_${image_id}-v1.qcow2"
cow_id=$(stat -c '%i %s' "$cow")
err=$(sql_err "UPDATE vcl.reservation SET state = 'pending' WHERE id = $id")
like "$err" "is running" "the DBA's reset of the running row is refused"
like "$err" "vclctl cancel $id" "... with how to cancel it"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" running "the row still runs"
"$WORKER" --config "$cfg" --drain 2>"$WORLD/w1-4b.log"
unlike "$(cat "$WORLD/w1-4b.log")" "reservation $id|running load" "a second worker claims nothing meanwhile"
kill -CONT $zpid
rc=0
wait $zpid || rc=$?
is "$rc" 0 "the first worker finishes"
is "$(psql_val "SELECT state FROM vcl.reservation WHERE id = $id")" done "the load is done"
is "$(V list --all --name | grep -c "^$T-pc5:")" 1 "exactly one domain"
is "$(V domstate "$T-pc5:$T-blank-v1" | head -1)" running "it runs"
is "$(stat -c '%i %s' "$cow")" "$cow_id" "its COW disk is the same file, intact"
is "$(qemu-img info -U --output=json "$cow" | sed -n 's/.*"full-backing-filename": "\(.*\)".*/\1/p')" \
   "$WORLD/master/$T-blank-v1.qcow2" "still backed by the master"
done_testing
