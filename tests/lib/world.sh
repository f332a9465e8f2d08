# shellcheck shell=bash
# tests/lib/world.sh: a throwaway "world" for integration and fault tests: a
# temp dir, a private PostgreSQL, a libvirt URI, node dirs, worker configs,
# and cleanup of all of it on exit. Sources tests/lib/tap.sh.
#
#   . "$(dirname "$0")/../lib/world.sh"
#   world_init              ROOT (repo top), WORLD (mktemp -d /tmp/vcl-test.XXXXXX,
#                           mode 755), PATH gets $ROOT/bin; EXIT trap (also on
#                           INT/TERM/HUP) that runs the registered cleanups in
#                           reverse order, then removes $WORLD unless
#                           VCL_KEEP_WORLD=1; the script's exit status is kept
#   world_pg                tools/pg-throwaway start $WORLD/pg; exports PGHOST,
#                           PGPORT, PGDATABASE=vcl, PGUSER; stopped on exit
#   world_pg_stop           stop it now (idempotent)
#   world_libvirt           exports VCL_TEST_URI (from tools/libvirt-up, or
#                           test:///default when it exits non-zero) and
#                           VCL_TEST_LIBVIRT=real|test. Preset
#                           VCL_TEST_LIBVIRT=test to force the test driver,
#                           =real to bail out when no daemon can run.
#   world_libvirt_revive    restart libvirtd if it died (after bulk kills)
#   world_dirs              $WORLD/{master,cow,xml,repo}, mode 755 (QEMU runs
#                           as libvirt-qemu and must traverse them)
#   world_config NAME [extra yaml lines...]
#                           writes $WORLD/NAME.yaml for vcl-worker, prints its
#                           path; an extra "key: value" line replaces the
#                           default of that key
#   world_track_pid PID     on exit: SIGTERM, then SIGKILL after 5 s
#   world_track_domain NAME on exit: virsh destroy + undefine on $VCL_TEST_URI
#   world_on_exit CMD...    on exit: run CMD (any cleanup of your own)
#   world_vcl               world_pg, then VCLCTL and WORKER (bin/), T (a
#                           prefix unique to this world), PGOPTIONS without
#                           NOTICEs, and `vclctl migrate` as a test
#   psql_val "SQL" [psql args...]
#                           psql -XAtq -v ON_ERROR_STOP=1: prints the value(s)
#   wait_for "description" TIMEOUT_S cmd args...
#                           run cmd every 0.2 s until it exits 0 (returns 0) or
#                           TIMEOUT_S pass (diagnostics on stderr, returns 1)

[[ -n ${_WORLD_SH_LOADED:-} ]] && return 0
_WORLD_SH_LOADED=1

# shellcheck source=tests/lib/tap.sh
. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

_WORLD_CLEANUPS=()   # each entry: a command line, run with eval
_WORLD_EXITING=0

world_on_exit() {
    local q
    q=$(printf '%q ' "$@")
    _WORLD_CLEANUPS+=("$q")
}

_world_exit() {
    local rc=$1 i
    ((_WORLD_EXITING)) && return 0
    _WORLD_EXITING=1
    trap - INT TERM HUP
    set +e
    for ((i = ${#_WORLD_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${_WORLD_CLEANUPS[i]}" >/dev/null 2>&1 </dev/null
    done
    tap_exit_hook "$rc"
    if [[ -n ${WORLD:-} && -d $WORLD ]]; then
        if [[ ${VCL_KEEP_WORLD:-0} == 1 ]]; then
            diag "VCL_KEEP_WORLD=1: kept $WORLD"
        else
            rm -rf "$WORLD"
        fi
    fi
    exit "$rc"
}

world_init() {
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
    WORLD=$(mktemp -d /tmp/vcl-test.XXXXXX)
    chmod 755 "$WORLD"
    export ROOT WORLD
    export PATH="$ROOT/bin:$PATH"
    trap '_world_exit $?' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

_world_kill_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    # Reap it if it is our child (no-op otherwise).
    wait "$pid" 2>/dev/null
    return 0
}

world_track_pid() {
    world_on_exit _world_kill_pid "$1"
}

_world_drop_domain() {
    local name=$1 uri=${VCL_TEST_URI:-}
    [[ -n $uri ]] || return 0
    timeout 30 virsh -q -c "$uri" destroy "$name" >/dev/null 2>&1
    timeout 30 virsh -q -c "$uri" undefine --snapshots-metadata "$name" >/dev/null 2>&1 ||
        timeout 30 virsh -q -c "$uri" undefine "$name" >/dev/null 2>&1
    return 0
}

world_track_domain() {
    world_on_exit _world_drop_domain "$1"
}

world_pg() {
    local env
    world_on_exit world_pg_stop
    "$ROOT/tools/pg-throwaway" start "$WORLD/pg" >&2 || bail "tools/pg-throwaway start failed"
    env=$("$ROOT/tools/pg-throwaway" env "$WORLD/pg") || bail "tools/pg-throwaway env failed"
    eval "$env"
}

world_pg_stop() {
    [[ -d $WORLD/pg ]] || return 0
    "$ROOT/tools/pg-throwaway" stop "$WORLD/pg" >&2
}

world_libvirt() {
    if [[ ${VCL_TEST_LIBVIRT:-} == test ]]; then
        VCL_TEST_URI=test:///default
    else
        local uri rc=0
        uri=$("$ROOT/tools/libvirt-up" 2>"$WORLD/libvirt-up.log") || rc=$?
        if ((rc == 0)) && [[ -n $uri ]]; then
            VCL_TEST_URI=$uri
            VCL_TEST_LIBVIRT=real
        elif [[ ${VCL_TEST_LIBVIRT:-} == real ]]; then
            bail "VCL_TEST_LIBVIRT=real but tools/libvirt-up exited $rc: $(tail -n 3 "$WORLD/libvirt-up.log")"
        else
            diag "tools/libvirt-up exited $rc: using test:///default"
            [[ -s $WORLD/libvirt-up.log ]] && diag "$(tail -n 5 "$WORLD/libvirt-up.log")"
            VCL_TEST_URI=test:///default
            VCL_TEST_LIBVIRT="test"
        fi
    fi
    export VCL_TEST_URI VCL_TEST_LIBVIRT
}

# world_libvirt_revive: the system libvirtd (9.0) has segfaulted here when
# dozens of its clients were SIGKILLed at once (tests/fault/10-sigkill-matrix.t
# kills 32 workers per wave). That is libvirtd's crash, not the worker's: the
# guests (QEMU processes) live on and a restarted libvirtd finds them again.
# A test that kills workers in bulk calls this after the kills; it restarts
# libvirtd when it is gone, and says so.
world_libvirt_revive() {
    [[ ${VCL_TEST_LIBVIRT:-} == real ]] || return 0
    timeout 30 virsh -c "$VCL_TEST_URI" version >/dev/null 2>&1 && return 0
    diag "libvirtd does not answer after the kills ($(journalctl -k -n 200 --no-pager 2>/dev/null |
        grep -o 'libvirtd.*segfault.*' | tail -1)); restarting it (tools/libvirt-up)"
    "$ROOT/tools/libvirt-up" >>"$WORLD/libvirt-up.log" 2>&1 || bail "tools/libvirt-up failed: $(tail -n 3 "$WORLD/libvirt-up.log")"
}

world_dirs() {
    local d
    for d in master cow xml repo; do
        mkdir -p "$WORLD/$d"
        chmod 755 "$WORLD/$d"
    done
}

world_config() {
    local name=$1
    shift
    local path=$WORLD/$name.yaml line key
    local -A override=()
    # An extra "key: value" line replaces the default for that key (no
    # duplicate keys in the file).
    for line in "$@"; do
        if [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*): ]]; then
            override[${BASH_REMATCH[1]}]=1
        fi
    done
    {
        echo "# written by tests/lib/world.sh for $(basename "$0")"
        while IFS= read -r line; do
            key=${line%%:*}
            [[ -n ${override[$key]:-} ]] || printf '%s\n' "$line"
        done <<EOF
database: ""
worker_name: "$name"
slots: 2
lease_seconds: 10
heartbeat_seconds: 2
poll_seconds: 1
drivers_dir: "$ROOT/lib/vcl-worker/drivers"
retry_base_seconds: 1
retry_max_seconds: 2
log_level: debug
EOF
        for line in "$@"; do
            printf '%s\n' "$line"
        done
    } >"$path"
    printf '%s\n' "$path"
}

psql_val() {
    local sql=$1
    shift
    psql -XAtq -v ON_ERROR_STOP=1 -c "$sql" "$@"
}

wait_for() {
    local what=$1 timeout=$2
    shift 2
    local out rc start now deadline
    out=$(mktemp "${TMPDIR:-/tmp}/wait_for.XXXXXX")
    start=$(date +%s%N)
    # TIMEOUT_S may have a fraction (e.g. 0.5). "%.0f", not "%d": mawk's %d
    # clamps to 2^31-1 (2.1 s in nanoseconds).
    deadline=$((start + $(awk -v t="$timeout" 'BEGIN { printf "%.0f", t * 1e9 }')))
    while :; do
        rc=0
        "$@" >"$out" 2>&1 || rc=$?
        if ((rc == 0)); then
            rm -f "$out"
            return 0
        fi
        now=$(date +%s%N)
        ((now < deadline)) || break
        sleep 0.2
    done
    diag "timed out after ${timeout}s waiting for: $what"
    diag "last try: $* (exit $rc)"
    [[ -s $out ]] && diag "$(tail -n 10 "$out")"
    rm -f "$out"
    return 1
}

# world_sshd: a private sshd on loopback for the ssh transport, as root.
# Generates in $WORLD/ssh: host_ed25519 (host key), id_ed25519{,.pub} (the
# client key), authorized_keys, known_hosts (one line for [127.0.0.1]:PORT),
# sshd_config (Port PORT, ListenAddress 127.0.0.1, keys only, no PAM,
# PidFile $WORLD/ssh/sshd.pid, LogLevel VERBOSE: one "Accepted publickey"
# line per session and one "Starting session" line per command); starts
# `/usr/sbin/sshd -D -f $WORLD/ssh/sshd_config -E $WORLD/ssh/sshd.log` on a
# free port (retrying another when the bind loses a race), stops it on exit.
# Exports VCL_SSH_PORT, VCL_SSH_KEY, VCL_SSH_KNOWN_HOSTS, VCL_SSH_DIR.
# Returns 1 (with a diag) when no sshd can run here.
world_sshd() {
    local d=$WORLD/ssh port pid try
    [[ -x /usr/sbin/sshd ]] || { diag "world_sshd: /usr/sbin/sshd is not installed"; return 1; }
    ((EUID == 0)) || { diag "world_sshd: needs root (logs in as root over loopback)"; return 1; }
    mkdir -p "$d" /run/sshd
    chmod 700 "$d"
    ssh-keygen -q -t ed25519 -N '' -C "vcl-test-host" -f "$d/host_ed25519" >/dev/null || return 1
    ssh-keygen -q -t ed25519 -N '' -C "vcl-test-client" -f "$d/id_ed25519" >/dev/null || return 1
    cp "$d/id_ed25519.pub" "$d/authorized_keys"
    for try in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 30000))
        ss -Htln "sport = :$port" 2>/dev/null | grep -q . && continue
        cat >"$d/sshd_config" <<EOS
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_ed25519
AuthorizedKeysFile $d/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $d/sshd.pid
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 64
ClientAliveInterval 30
Subsystem sftp internal-sftp
# bash sources ~/.bashrc for commands run by sshd unless SHLVL says it is not
# the top-level shell: a heavy root .bashrc (pyenv init ...) would cost every
# remote command hundreds of ms and could print into its stdout.
SetEnv SHLVL=1
EOS
        : >"$d/sshd.log"
        /usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/sshd.log" </dev/null &
        pid=$!
        if wait_for "sshd listening on 127.0.0.1:$port" 10 \
            bash -c "grep -q 'Server listening' '$d/sshd.log' || ! kill -0 $pid 2>/dev/null" &&
            kill -0 "$pid" 2>/dev/null; then
            world_track_pid "$pid"
            printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >"$d/known_hosts"
            VCL_SSH_PORT=$port
            VCL_SSH_KEY=$d/id_ed25519
            VCL_SSH_KNOWN_HOSTS=$d/known_hosts
            VCL_SSH_DIR=$d
            export VCL_SSH_PORT VCL_SSH_KEY VCL_SSH_KNOWN_HOSTS VCL_SSH_DIR
            return 0
        fi
        _world_kill_pid "$pid"
        diag "world_sshd: sshd on port $port did not start: $(tail -n 2 "$d/sshd.log")"
    done
    return 1
}

# world_worker NAME [--fault STAGE:POINT] [ARGS...]
#     start a vcl-worker in the background with --config $WORLD/NAME.yaml
#     (write it first: world_config NAME ...) and ARGS; its stdout and stderr
#     are appended to $WORLD/NAME.log. Sets WORLD_WORKER_PID to the worker's
#     own pid (signal it directly: kill -STOP/-CONT/-TERM). It runs under a
#     small wrapper subshell that reaps it (so bash prints no "Killed" line
#     for a worker that SIGKILLs itself); world_worker_wait gets its exit
#     status. Tracked: on exit it gets SIGCONT (it may be stopped), SIGTERM,
#     then SIGKILL after 5 s. --fault runs build/test/vcl-worker (the same
#     code plus test hooks) with VCL_FAULT=STAGE:POINT (see fault_point() in
#     worker/queue/pool.c; VCL_FAULT_NODE, VCL_FAULT_ONCE and VCL_FAULT_HANG from
#     the environment refine it); otherwise $VCL_WORKER_BIN, default
#     bin/vcl-worker.
# world_worker_wait PID TIMEOUT_S
#     wait until the worker PID (from world_worker) exits, at most TIMEOUT_S
#     seconds; returns its exit status (137 = SIGKILL), or 255 (with a diag)
#     on timeout.
# world_workers_term TIMEOUT_S LABEL PID...
#     SIGTERM every worker PID (from world_worker) at once, then wait for
#     each (TIMEOUT_S): one test per worker, "LABEL N exits 0 on SIGTERM"
#     (N counts from 1 in the order given).
# world_track_domains PREFIX
#     on exit: destroy and undefine, in parallel, every domain on
#     $VCL_TEST_URI whose name starts with PREFIX (a prefix unique to this
#     world, e.g. "t${WORLD##*.}-"). Call it early: cleanups run in reverse,
#     so it runs after the workers started later are gone.
declare -A _WORLD_WRAPPER=()

world_worker() {
    local name=$1 bin=${VCL_WORKER_BIN:-$ROOT/bin/vcl-worker} fault="" pidf pid i
    shift
    if [[ ${1:-} == --fault ]]; then
        fault=$2
        bin=$ROOT/build/test/vcl-worker
        shift 2
    fi
    [[ -f $WORLD/$name.yaml ]] || bail "world_worker: no $WORLD/$name.yaml (world_config $name first)"
    [[ -x $bin ]] || bail "world_worker: $bin is not built (make)"
    pidf=$(mktemp "$WORLD/.worker-pid.XXXXXX")
    {
        if [[ -n $fault ]]; then
            VCL_FAULT=$fault "$bin" --config "$WORLD/$name.yaml" "$@" </dev/null >>"$WORLD/$name.log" 2>&1 &
        else
            env -u VCL_FAULT "$bin" --config "$WORLD/$name.yaml" "$@" </dev/null >>"$WORLD/$name.log" 2>&1 &
        fi
        echo $! >"$pidf"
        wait $!
    } 2>/dev/null &
    local wrapper=$!
    for ((i = 0; i < 100; i++)); do
        pid=$(cat "$pidf" 2>/dev/null)
        [[ -n $pid ]] && break
        sleep 0.05
    done
    rm -f "$pidf"
    [[ -n $pid ]] || bail "world_worker: $name did not start"
    _WORLD_WRAPPER[$pid]=$wrapper
    WORLD_WORKER_PID=$pid
    world_on_exit _world_kill_worker "$pid" "$wrapper"
}

_world_kill_worker() {
    kill -CONT "$1" 2>/dev/null
    _world_kill_pid "$1"
    wait "$2" 2>/dev/null
    return 0
}

world_worker_wait() {
    local pid=$1 timeout=$2 rc=0
    local wrapper=${_WORLD_WRAPPER[$pid]:-}
    [[ -n $wrapper ]] || { diag "world_worker_wait: $pid was not started by world_worker"; return 255; }
    wait_for "worker $pid to exit" "$timeout" bash -c "! kill -0 $wrapper 2>/dev/null || [ \"\$(awk '{print \$3}' /proc/$wrapper/stat 2>/dev/null)\" = Z ]" ||
        return 255
    wait "$wrapper" 2>/dev/null || rc=$?
    return "$rc"
}

world_workers_term() {
    local timeout=$1 label=$2 pid i=0 rc
    shift 2
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "$@"; do
        i=$((i + 1))
        rc=0
        world_worker_wait "$pid" "$timeout" || rc=$?
        is "$rc" 0 "$label $i exits 0 on SIGTERM"
    done
}

_world_drop_domains() {
    local prefix=$1 uri=${VCL_TEST_URI:-} d pids=()
    [[ -n $uri && -n $prefix ]] || return 0
    while IFS= read -r d; do
        [[ -n $d && $d == "$prefix"* ]] || continue
        _world_drop_domain "$d" &
        pids+=($!)
    done < <(timeout 30 virsh -q -c "$uri" list --all --name 2>/dev/null)
    ((${#pids[@]})) && wait "${pids[@]}"
    return 0
}

world_track_domains() {
    [[ -n ${1:-} ]] || bail "world_track_domains: empty prefix"
    world_on_exit _world_drop_domains "$1"
}

# world_ssh_node: after world_sshd, a node reached only over ssh. Creates the
# node's dirs in $N=$WORLD/node (master cow xml repo, traversable by qemu),
# sets $SSH_URI to the qemu+libssh2 URI of the loopback sshd, and defines
# `hidden CMD...`, which runs CMD where $N is an empty tmpfs (a private mount
# namespace), so a worker run through it can only reach the node's files over
# ssh. Where unshare/mount is not permitted, `hidden` runs CMD as it is (with
# a diag) and HIDE=0.
world_ssh_node() {
    N=$WORLD/node
    local d
    for d in master cow xml repo; do mkdir -p "$N/$d"; done
    chmod -R 755 "$N"
    SSH_URI="qemu+libssh2://root@127.0.0.1:$VCL_SSH_PORT/system?keyfile=$VCL_SSH_KEY&known_hosts=$VCL_SSH_KNOWN_HOSTS&sshauth=privkey"
    HIDE=0
    if unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=755 vcl-hidden "$1"' sh "$N" 2>/dev/null; then
        HIDE=1
    else
        diag "unshare/mount not permitted here: the worker runs without the hidden node dirs"
    fi
}
hidden() {
    if ((HIDE)); then
        unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=755 vcl-hidden "$1" && shift && exec "$@"' sh "$N" "$@"
    else
        "$@"
    fi
}

world_vcl() {
    world_pg
    VCLCTL="$ROOT/bin/vclctl"
    WORKER="$ROOT/bin/vcl-worker"
    T="t${WORLD##*.}"
    export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
    ok "migrate" "$VCLCTL" migrate
}
