#!/usr/bin/env bash
# The journal and systemd's notify protocol, for real:
#  - a private systemd-journald (in a mount namespace of this test: tmpfs over
#    /run/systemd and /run/log, so the host has no journal and keeps none of
#    ours) takes the worker's events; the worker runs with its stderr on a
#    journal stream (systemd-cat) and JOURNAL_STREAM naming that stream, as
#    systemd sets it for a service; journalctl reads the fields and
#    priorities back: RESERVATION=, COMPUTER=, NODE=, STAGE=, OPERATION=,
#    WORKER=, PRIORITY 7/6/4/3 for debug/info/warn/error, and
#    `journalctl RESERVATION=N` finds one job's events;
#  - JOURNAL_STREAM that does not name fd 2 (stderr redirected to a file
#    since): logfmt lines as before, nothing in the journal;
#  - NOTIFY_SOCKET on a datagram socket of this test (a perl listener) and
#    WATCHDOG_USEC=1500000: READY=1 after the first claim (STATUS= names the
#    job claimed before it), STATUS= with the slots, WATCHDOG=1 again and
#    again, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM.
# Jobs run on libvirt's test:///default driver (and a node whose libvirt
# refuses connections, for an error), so no daemon is needed.
if [[ -z ${VCL_JOURNAL_NS:-} ]]; then
    . "$(dirname "$0")/../lib/tap.sh"
    ((EUID == 0)) || skip_all "needs root (a mount namespace for a private journald)"
    [[ -x /lib/systemd/systemd-journald ]] && command -v journalctl >/dev/null &&
        command -v systemd-cat >/dev/null || skip_all "systemd-journald/journalctl not installed"
    unshare -m --propagation private true 2>/dev/null || skip_all "unshare -m is not allowed here"
    VCL_JOURNAL_NS=1 exec unshare -m --propagation private "$BASH" "$0" "$@"
fi
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg
world_dirs

VCLCTL="$ROOT/bin/vclctl"
T="t${WORLD##*.}"

# --- a private journald ----------------------------------------------------
mount -t tmpfs tmpfs /run/systemd || bail "tmpfs on /run/systemd"
mount -t tmpfs tmpfs /run/log || bail "tmpfs on /run/log"
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald </dev/null >"$WORLD/journald.out" 2>&1 &
world_track_pid $!
wait_for "journald's socket" 20 test -S /run/systemd/journal/stdout || bail "journald did not start"
J() { journalctl --no-pager -q "$@"; }

ok "migrate" "$VCLCTL" migrate
ok "node add" "$VCLCTL" node add n1 --uri test:///default --master-dir "$WORLD/master" \
    --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
ok "node add (refuses connections)" "$VCLCTL" node add dead --uri "qemu+libssh2://127.0.0.1:1/system" \
    --master-dir "$WORLD/master" --cow-dir "$WORLD/cow" --xml-dir "$WORLD/xml" --repo "$WORLD/repo"
ok "computer $T-pc1" "$VCLCTL" computer add "$T-pc1" --node n1 --mac 52:54:00:9a:90:01 --memory 128 --vcpus 1
ok "computer $T-pc2" "$VCLCTL" computer add "$T-pc2" --node dead --mac 52:54:00:9a:90:02 --memory 128 --vcpus 1
first=$("$VCLCTL" enqueue "$T-pc1" node_status)
like "$first" '^[0-9]+$' "a node_status job queued before the worker starts ($first)"

# --- the notify listener ---------------------------------------------------
NOTIFY=$WORLD/notify.sock
perl -MIO::Socket::UNIX -MSocket -e '
    my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $ARGV[0]) or die "bind: $!";
    open my $out, ">>", $ARGV[1] or die; $out->autoflush(1);
    while (defined $s->recv(my $m, 65536)) { $m =~ s/\n/|/g; print $out "$m\n" }' \
    "$NOTIFY" "$WORLD/notify.log" &
world_track_pid $!
wait_for "the notify socket" 10 test -S "$NOTIFY" || bail "no notify listener"
touch "$WORLD/notify.log"

# --- the worker, its stderr on the journal ---------------------------------
CFG=$(world_config w1 'log_level: debug' 'slots: 2')
# As systemd does for StandardError=journal: JOURNAL_STREAM=DEVICE:INODE of
# the stream (the worker compares it with fstat(2)).
systemd-cat -t vcl-worker-test env NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC=1500000 \
    "$BASH" -c 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$@"' sh \
    "$ROOT/bin/vcl-worker" --config "$CFG" </dev/null &
W=$!
world_track_pid $W
registered() { J WORKER=w1 --grep "registered as id" >/dev/null; }
wait_for "the worker to register (journal)" 30 registered || bail "no worker in the journal: $(J -n 20)"

first_done() { [[ $(psql_val "SELECT state FROM vcl.reservation WHERE id = $first") == done ]]; }
ok "reservation $first done" wait_for "reservation $first" 60 first_done
failing=$("$VCLCTL" enqueue "$T-pc2" node_status --max-attempts 1)
failed() { [[ $(psql_val "SELECT state FROM vcl.reservation WHERE id = $failing") == failed ]]; }
ok "reservation $failing (node refuses connections) failed" wait_for "reservation $failing" 60 failed
failed_logged() { J RESERVATION="$failing" PRIORITY=3 >/dev/null; }
wait_for "its error in the journal" 20 failed_logged

# shown with prove -v (the README's example comes from here)
note "$(J RESERVATION="$first" -o short-iso)"
note "$(J RESERVATION="$failing" -p warning -o verbose -n 1 --output-fields=MESSAGE,PRIORITY,RESERVATION,COMPUTER,NODE,STAGE,OPERATION,WORKER,SYSLOG_IDENTIFIER)"
# one event, field by field
ev=$(J RESERVATION="$first" -o verbose --grep '^running node_status' -n 1)
like "$ev" $'\n    PRIORITY=6\n' "an info event has PRIORITY=6"
like "$ev" $'\n    RESERVATION='"$first"$'\n' "RESERVATION= the job"
like "$ev" $'\n    COMPUTER='"$T-pc1"$'\n' "COMPUTER= its computer"
like "$ev" $'\n    NODE=n1\n' "NODE= its node"
like "$ev" $'\n    OPERATION=node_status\n' "OPERATION= its operation"
like "$ev" $'\n    WORKER=w1\n' "WORKER= the worker's name"
like "$ev" $'\n    SYSLOG_IDENTIFIER=vcl-worker\n' "SYSLOG_IDENTIFIER=vcl-worker"
like "$ev" $'\n    _TRANSPORT=journal\n' "sent natively (sd_journal_send), not as a stderr line"
unlike "$ev" 'level=info' "MESSAGE is the message alone, not a logfmt line"
stages=$(J RESERVATION="$first" -o verbose | sed -n 's/^    STAGE=//p' | sort -u | tr '\n' ' ')
like "$stages" '[a-z]' "STAGE= is set on the job's stage events ($stages)"
err=$(J RESERVATION="$failing" -p err -o verbose --grep 'reservation failed in stage' -n 1)
like "$err" $'\n    PRIORITY=3\n' "an error event has PRIORITY=3"
like "$err" $'\n    STAGE=[a-z_]+\n' "and the stage it failed in"
like "$err" $'\n    NODE=dead\n' "and the node"
like "$(J PRIORITY=7 WORKER=w1 -o cat --grep "claimed reservation $first")" "claimed reservation $first" \
     "a debug event has PRIORITY=7"
is "$(J RESERVATION="$first" -o cat | grep -c .)" "$(J RESERVATION="$first" WORKER=w1 -o cat | grep -c .)" \
   "journalctl RESERVATION=N: every event of that job, all from w1"
is "$(J RESERVATION="$first" -p warning -o cat | grep -c .)" 0 "journalctl -p warning: no warning for the job that went well"
is "$(J -t vcl-worker-test _TRANSPORT=stdout -o cat | grep -c 'level=')" 0 "no logfmt line reached the journal through stderr"

# --- sd_notify ---------------------------------------------------------------
N() { cat "$WORLD/notify.log"; }
ready_line=$(grep -n '^READY=1$' "$WORLD/notify.log" | head -1 | cut -d: -f1)
like "$ready_line" '^[0-9]+$' "READY=1 sent"
status_before=$(head -n "$ready_line" "$WORLD/notify.log" | grep '^STATUS=' | tail -1)
like "$status_before" "^STATUS=[0-9] of 2 slots busy; last claim [0-9:]+ UTC \(reservation $first\)$" \
     "READY=1 after the first claim: the STATUS= before it names the job claimed"
ok "STATUS= follows the slots and the last claim" \
    grep -qE "^STATUS=0 of 2 slots busy; last claim [0-9:]+ UTC \(reservation $failing\)$" "$WORLD/notify.log"
pings() { grep -c '^WATCHDOG=1$' "$WORLD/notify.log"; }
p1=$(pings)
sleep 3
p2=$(pings)
ok "WATCHDOG=1 again and again with WATCHDOG_USEC=1.5 s ($p1, then $p2 after 3 s)" test $((p2 - p1)) -ge 3
like "$(J WORKER=w1 -o cat --grep watchdog)" "WATCHDOG=1 every 0.5 s" "the worker logs its watchdog interval"

# PostgreSQL away for longer than WatchdogSec: the worker keeps trying, says so
# in STATUS=, and keeps the watchdog fed (else systemd would kill it and the
# stages its slots run); back to work when the database is.
"$ROOT/tools/pg-throwaway" stop "$WORLD/pg" >/dev/null 2>&1 || bail "cannot stop PostgreSQL"
waiting_status() { grep -q '^STATUS=waiting for PostgreSQL: ' "$WORLD/notify.log"; }
ok "PostgreSQL stopped: STATUS= says the worker waits for it" wait_for "STATUS=waiting" 60 waiting_status
p1=$(pings)
sleep 4
p2=$(pings)
ok "WATCHDOG=1 goes on while PostgreSQL is away ($p1, then $p2 after 4 s)" test $((p2 - p1)) -ge 3
"$ROOT/tools/pg-throwaway" start "$WORLD/pg" >/dev/null 2>&1 || bail "cannot start PostgreSQL"
n_outage=$(N | wc -l)
again=$("$VCLCTL" enqueue "$T-pc1" node_status)
again_done() { [[ $(psql_val "SELECT state FROM vcl.reservation WHERE id = $again") == done ]]; }
ok "PostgreSQL back: reservation $again done" wait_for "reservation $again" 90 again_done
status_back() { N | tail -n +"$((n_outage + 1))" | grep -qE "^STATUS=[0-9] of 2 slots busy; last claim [0-9:]+ UTC"; }
ok "STATUS= shows the slots again" wait_for "STATUS= slots" 30 status_back

# SIGHUP: RELOADING=1, READY=1; a restart-only option changed: a warning
world_config w1 'log_level: debug' 'slots: 2' 'worker_name: w1-renamed' >/dev/null
n_before=$(N | wc -l)
kill -HUP $W
reloaded() { J WORKER=w1 --grep "configuration reloaded" >/dev/null; }
ok "SIGHUP reloaded" wait_for "the reload" 30 reloaded
after=$(tail -n +"$((n_before + 1))" "$WORLD/notify.log" | grep -v '^WATCHDOG=1$')
like "$after" '^RELOADING=1\|MONOTONIC_USEC=[0-9]+'$'\n''READY=1' "RELOADING=1 (with MONOTONIC_USEC), then READY=1"
warn=$(J WORKER=w1 -p warning -o verbose --grep 'takes effect only after a restart' -n 1)
like "$warn" $'\n    PRIORITY=4\n' "a warning has PRIORITY=4 (journalctl -p warning finds it)"

kill -TERM $W
exited() { ! kill -0 $W 2>/dev/null; }
ok "SIGTERM: the worker exits" wait_for "the worker to exit" 60 exited
like "$(N)" $'\nSTOPPING=1\\|STATUS=stopping' "STOPPING=1 on SIGTERM"
unlike "$(sed -n '/^STOPPING=1/,$p' "$WORLD/notify.log" | tail -n +2)" 'READY=1' "nothing READY after STOPPING"

# --- JOURNAL_STREAM that is not fd 2: lines on stderr as before -------------------
jsv=$(stat -L -c %d:%i /run/systemd/journal/stdout)
"$VCLCTL" enqueue "$T-pc1" node_status >/dev/null
JOURNAL_STREAM=$jsv timeout 60 "$ROOT/bin/vcl-worker" --config "$(world_config w2 'log_level: debug')" --drain \
    </dev/null >"$WORLD/w2.log" 2>&1
like "$(cat "$WORLD/w2.log")" 'level=info worker=w2 .*msg=' "stderr redirected: logfmt lines"
is "$(J WORKER=w2 -o cat | grep -c .)" 0 "and nothing of w2's in the journal"
done_testing
