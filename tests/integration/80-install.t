#!/usr/bin/env bash
# make install / make uninstall, twice: `make install DESTDIR=D PREFIX=/usr/local`
# (a package build) from this tree, and a plain `make install PREFIX=P` from a
# copy of it (PREFIX is compiled in, so building for another prefix here would
# rebuild this tree's bin/). Every file lands with its mode; the installed
# binaries run; the installed vcl-worker finds its drivers and the installed
# vclctl migrates a throwaway PostgreSQL from the installed SQL; the man pages
# render, lint clean, and hold every config key, operation and vclctl command
# of the live --help output (so the pages cannot drift from --help); the
# systemd unit names the installed paths; uninstall leaves nothing behind.
. "$(dirname "$0")/../lib/world.sh"
world_init
world_pg

MAKE=(make --no-print-directory -s)
unset VCL_DRIVERS_DIR VCL_SQL_DIR

# The files an install must write under root $1 (prefix $2), with modes.
expected_files() {
    local root=$1 p=$2 f
    {
        printf '755 %s\n' "$root$p/bin/vcl-worker" "$root$p/bin/vclctl"
        for f in "$ROOT"/drivers/*.c; do
            f=${f##*/}
            printf '644 %s\n' "$root$p/lib/vcl-worker/drivers/${f%.c}.so"
        done
        for f in "$ROOT"/sql/*.sql "$ROOT"/sql/functions/ORDER "$ROOT"/sql/functions/*.sql; do
            printf '644 %s\n' "$root$p/share/vcl-worker/${f#"$ROOT"/}"
        done
        printf '644 %s\n' "$root$p/share/doc/vcl-worker/examples/vcl-worker.yaml" \
            "$root$p/share/doc/vcl-worker/examples/vcl-worker.rules.yml" \
            "$root$p/share/doc/vcl-worker/examples/postgres_exporter.yml" \
            "$root$p/share/doc/vcl-worker/examples/vcl-worker.json" \
            "$root$p/share/man/man1/vclctl.1" "$root$p/share/man/man8/vcl-worker.8" \
            "$root$p/lib/systemd/system/vcl-worker.service" \
            "$root$p/lib/systemd/system/vcl-worker@.service" \
            "$root$p/share/bash-completion/completions/vcl-worker" \
            "$root$p/share/bash-completion/completions/vclctl"
    } | sort -k2
}
files_under() { find "$1" -not -type d -printf '%m %p\n' | sort -k2; }

# Render a page as plain text, one long line per paragraph.
render() { LANG=C MANWIDTH=1000 man -l "$1" 2>&1 | col -b; }

# Every name the live --help output lists, one per line: config keys (first
# word of each row of the option table), operations, vclctl commands.
help_config_keys() {
    "$1" --help | sed -n '/^Configuration options:/,$p' | sed '1,2d' | awk '{ print $1 }'
}
help_operations() {
    "$1" --help | sed -n '/^Operations and their stages:/,/^$/p' |
        sed -n 's/^  \([a-z_]\{1,\}\) .*/\1/p'
}
help_commands() {
    # "  node add               add a hypervisor node": a group's subcommand is
    # two words; a command is one word followed by two or more spaces.
    "$1" --help | sed -n '/^commands:/,/^$/p' | sed '1d;/^$/d' |
        sed -E 's/^  ([a-z-]+( [a-z-]+)?)  .*/\1/; s/^  ([a-z-]+) .*/\1/'
}

# Assertions on one installation: root R (DESTDIR or ""), prefix P.
check_install() {
    local root=$1 p=$2 what=$3 bin=$1$2/bin cfg out page key missing n
    is "$(files_under "$root$p" | grep -v "/pre-existing")" "$(expected_files "$root" "$p")" \
       "$what: every file installed, with its mode, and nothing else"
    is "$(find "$root$p" -type d ! -perm 755 | wc -l)" 0 "$what: every directory is mode 755"

    out=$("$bin/vcl-worker" --help)
    like "$out" "Operations and their stages:" "$what: installed vcl-worker --help runs"
    out=$("$bin/vclctl" --help)
    like "$out" "commands:" "$what: installed vclctl --help runs"

    # drivers_dir left to its default: found next to the installed binary.
    cfg=$WORLD/$what-nodrivers.yaml
    printf 'database: ""\nworker_name: "install-test"\n' >"$cfg"
    out=$("$bin/vcl-worker" --config "$cfg" --check-config 2>&1)
    is "$out" "$cfg: configuration is valid
drivers from $root$p/lib/vcl-worker/drivers: kvm qemu" \
       "$what: installed vcl-worker --check-config loads its drivers from the installed path"
    out=$("$bin/vcl-worker" --config "$cfg" --print-config)
    like "$out" "drivers_dir: \"$root$p/lib/vcl-worker/drivers\"" "$what: --print-config shows that path"

    # vclctl migrate with no --sql-dir: the installed SQL, into a fresh database.
    local db="install_${what//[^a-z]/_}"
    psql_val "CREATE DATABASE $db" -d postgres
    n=$(ls "$ROOT"/sql/*.sql | wc -l)
    out=$(PGDATABASE=$db "$bin/vclctl" --json migrate 2>&1)
    like "$out" "\"sql_dir\" ?: ?\"$root$p/share/vcl-worker/sql\"" \
       "$what: vclctl migrate (no --sql-dir) reads the installed SQL dir" || diag "$out"
    is "$(PGDATABASE=$db psql_val "SELECT string_agg(version::text, ' ' ORDER BY version) FROM vcl.schema_migrations")" \
       "$(ls "$ROOT"/sql/*.sql | sed 's|.*/0*\([0-9]*\)_.*|\1|' | paste -sd' ')" \
       "$what: all $n migrations applied from the installed SQL"
    is "$(PGDATABASE=$db psql_val "SELECT string_agg(name, ' ' ORDER BY name) FROM vcl.schema_live_files")" \
       "$(cd "$ROOT/sql" && ls functions/*.sql | sort | paste -sd' ')" \
       "$what: every live SQL file applied from the installed SQL"
    is "$(PGDATABASE=$db psql_val "SELECT count(*) FROM pg_views WHERE schemaname = 'vcl' AND viewname = 'queue_summary'")" 1 \
       "$what: the migrated schema has its views"

    # Man pages: render, lint, and hold every name of the live --help.
    for page in "$root$p/share/man/man8/vcl-worker.8" "$root$p/share/man/man1/vclctl.1"; do
        out=$(render "$page")
        like "$out" "^(VCL-WORKER\(8\)|VCLCTL\(1\))" "$what: man -l ${page##*/} renders"
        for key in NAME SYNOPSIS DESCRIPTION OPTIONS 'EXIT STATUS' FILES 'SEE ALSO'; do
            like "$out" "
$key
" "$what: ${page##*/} has section $key" || true
        done
        is "$(mandoc -T lint -W warning "$page" 2>&1)" "" "$what: mandoc -T lint: no warnings in ${page##*/}"
    done
    out=$(render "$root$p/share/man/man8/vcl-worker.8")
    missing=""
    n=0
    for key in $(help_config_keys "$bin/vcl-worker"); do
        n=$((n + 1))
        grep -Eq "^ *$key( |\$)" <<<"$out" || missing+=" $key"
    done
    is "$missing" "" "$what: vcl-worker(8) CONFIGURATION has all $n option keys of --help"
    ((n >= 20)) || fail "$what: --help listed only $n config keys (parser broken?)"
    missing=""
    n=0
    for key in $(help_operations "$bin/vcl-worker"); do
        n=$((n + 1))
        grep -Eq "^ *$key( |\$)" <<<"$out" || missing+=" $key"
    done
    is "$missing" "" "$what: vcl-worker(8) OPERATIONS has all $n operations of --help"
    out=$(render "$root$p/share/man/man1/vclctl.1")
    missing=""
    n=0
    while IFS= read -r key; do
        n=$((n + 1))
        grep -q "^ *vclctl $key\( \|\$\)" <<<"$out" || missing+=" [$key]"
    done < <(help_commands "$bin/vclctl")
    is "$missing" "" "$what: vclctl(1) COMMANDS has all $n commands of vclctl --help"
    ((n >= 25)) || fail "$what: vclctl --help listed only $n commands (parser broken?)"

    # The unit points at this installation.
    out=$(cat "$root$p/lib/systemd/system/vcl-worker.service")
    like "$out" "
ExecStart=$p/bin/vcl-worker --config /etc/vcl-worker/vcl-worker.yaml
" "$what: unit ExecStart is the installed binary"
    like "$out" "Documentation=man:vcl-worker\(8\) file://$p/share/doc/vcl-worker/examples/vcl-worker.yaml" \
       "$what: unit Documentation names the man page and the installed example"
    is "$(grep -o '@[A-Z]*@' <<<"$out" | sort -u)" "" "$what: no @PLACEHOLDER@ left in the unit"
    like "$(cat "$root$p/lib/systemd/system/vcl-worker@.service")" "
ExecStart=$p/bin/vcl-worker --config /etc/vcl-worker/%i.yaml
" "$what: the template unit reads /etc/vcl-worker/INSTANCE.yaml"
    for key in 'Type=notify' 'NotifyAccess=main'; do
        grep -qxF "$key" <<<"$out" || fail "$what: unit lacks $key"
    done
    grep -qx 'WatchdogSec=[0-9].*' <<<"$out" || fail "$what: unit has no WatchdogSec"
    for key in 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
               'Restart=on-failure' 'KillSignal=SIGTERM' 'ExecReload=/bin/kill -HUP $MAINPID' \
               'User=vcl-worker'; do
        grep -qxF "$key" <<<"$out" || fail "$what: unit lacks $key"
    done
    # TimeoutStopSec must outlast the worker's own stop: its longest stages
    # by default (post_load_timeout_seconds, shutdown_timeout_seconds).
    local stop post shut
    stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' <<<"$out")
    post=$("$bin/vcl-worker" --help | awk '$1 == "post_load_timeout_seconds" { print $3 }')
    shut=$("$bin/vcl-worker" --help | awk '$1 == "shutdown_timeout_seconds" { print $3 }')
    ok "$what: TimeoutStopSec ($stop s) > post_load ($post s) + shutdown ($shut s) defaults" \
        test "${stop:-0}" -gt $((post + shut))
}

# Parse a unit file strictly enough to catch a typo: every line is a comment,
# a [Section] or Key=Value with a known section.
unit_parses() {
    awk '
        /^[[:space:]]*(#|;|$)/ { next }
        /^\[(Unit|Service|Install)\]$/ { sec = 1; next }
        /^[A-Za-z]+=/ && sec { next }
        { print "line " NR ": " $0; bad = 1 }
        END { exit bad }' "$1"
}

# --- 1. DESTDIR install from this tree ---------------------------------------
D=$WORLD/destdir
# An older install's SQL (a migration since squashed into the baseline, a
# retired live file): install removes it, or migrate would apply it.
mkdir -p "$D/usr/local/share/vcl-worker/sql/functions"
echo "CREATE TABLE vcl.stale (a int);" >"$D/usr/local/share/vcl-worker/sql/005_capture.sql"
echo "SELECT 1;" >"$D/usr/local/share/vcl-worker/sql/functions/retired.sql"
ok "make install DESTDIR=\$D PREFIX=/usr/local" "${MAKE[@]}" -C "$ROOT" install DESTDIR="$D" PREFIX=/usr/local
check_install "$D" /usr/local destdir
ok "unit parses (sections and Key=Value lines)" unit_parses "$D/usr/local/lib/systemd/system/vcl-worker.service"
ok "make uninstall DESTDIR=\$D PREFIX=/usr/local" "${MAKE[@]}" -C "$ROOT" uninstall DESTDIR="$D" PREFIX=/usr/local
is "$(find "$D" -not -type d)" "" "uninstall (DESTDIR) leaves no file behind"
is "$(find "$D" -path '*vcl-worker*')" "" "uninstall (DESTDIR) removes its own directories"

# --- 2. plain PREFIX install from a copy of the tree --------------------------
SRC=$WORLD/src
P=$WORLD/prefix
mkdir -p "$SRC" "$P/bin" "$P/share/man/man1"
tar -C "$ROOT" --exclude=./build --exclude=./bin --exclude=./lib --exclude=./.git -cf - . | tar -C "$SRC" -xf -
# Files of others already in the prefix: install and uninstall leave them be.
echo other >"$P/bin/pre-existing-tool"
echo other >"$P/share/man/man1/pre-existing.1"
before=$(files_under "$P")
t0=$(date +%s)
ok "make install PREFIX=\$P (build from scratch in a copy)" "${MAKE[@]}" -C "$SRC" -j2 install PREFIX="$P"
diag "build and install from scratch: $(($(date +%s) - t0)) s"
is "$(strings "$P/bin/vcl-worker" | grep -c "^$P/lib/vcl-worker/drivers")" 1 "PREFIX is compiled into the worker"
check_install "" "$P" prefix
unit=$P/lib/systemd/system/vcl-worker.service
if command -v systemd-analyze >/dev/null 2>&1; then
    # --man=no: the man page is not in man's search path here. The unit names
    # the real paths of this install, so its ExecStart is checked to exist.
    out=$(systemd-analyze verify --man=no "$unit" 2>&1)
    is "$(grep -v 'Unit .*\.target not found\|Failed to create .*/start\|sysinit.target\|Failed to load configuration\|pids cgroup\|Configuration file .* is marked' <<<"$out")" "" \
       "systemd-analyze verify: no complaint about the unit" || diag "$out"
else
    ok "unit parses (no systemd-analyze here)" unit_parses "$unit"
fi
ok "make uninstall PREFIX=\$P" "${MAKE[@]}" -C "$SRC" uninstall PREFIX="$P"
is "$(files_under "$P")" "$before" "uninstall (PREFIX) leaves exactly the files that were there before"
is "$(find "$P" -path '*vcl-worker*')" "" "uninstall (PREFIX) removes its own directories"

done_testing
