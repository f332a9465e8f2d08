#!/usr/bin/env bash
# The version and the build flags. `vcl-worker --version` and `vclctl
# --version` print "PROG VERSION" and the libraries' versions, with no config
# and no database; --help and the man pages list --version and the pages carry
# the version. VERSION comes from `git describe` in a git tree (tag "v" dropped,
# "VERSION-gHASH" before the first tag) and from the Makefile's VERSION in a
# copy without .git; `make VCL_VERSION=...` rebuilds version.o alone and both
# programs say the new version. -Werror is on only with DEVELOPER=1.
. "$(dirname "$0")/../lib/world.sh"
world_init

# Nested makes here must not inherit this run's flags (`make check
# DEVELOPER=1` passes DEVELOPER down through MAKEFLAGS and the environment).
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u DEVELOPER -u VCL_VERSION make --no-print-directory "$@"; }
default_version=$(sed -n 's/^VERSION *= *//p' "$ROOT/Makefile")
like "$default_version" '^[0-9]+\.[0-9]+\.[0-9]+$' "the Makefile has a VERSION default ($default_version)"

# --- 1. this tree's programs -------------------------------------------------------
version=$(mk -s -C "$ROOT" version)
if tag=$(git -C "$ROOT" describe --tags --dirty 2>/dev/null); then
    want=${tag#v}
elif commit=$(git -C "$ROOT" describe --always --dirty 2>/dev/null); then
    want=$default_version-g$commit
else
    want=$default_version
fi
is "$version" "$want" "make version: from git describe ($version)"
# The programs say the version they were built with (build/.version): the
# tree may have changed since (a commit, an edit: -dirty).
built=$(cat "$ROOT/build/.version")
[[ $built == "$version" ]] || diag "the tree changed since the build ($built), now $version"

check_version() {   # PROG BINARY VERSION WHAT
    local out rc=0
    out=$(cd / && env -u PGHOST -u PGDATABASE "$2" --version 2>&1) || rc=$?
    is "$rc" 0 "$4: $1 --version exits 0 (no config, no database)"
    is "$(head -1 <<<"$out")" "$1 $3" "$4: $1 --version: first line"
    like "$(sed -n 2p <<<"$out")" '^libpq [0-9]+\.[0-9]+(\.[0-9]+)?, libvirt [0-9]+\.[0-9]+\.[0-9]+, libxml2 [0-9.]+, libssh2 [0-9.]+, libyaml [0-9.]+, libmicrohttpd [0-9.]+$' \
         "$4: $1 --version: the libraries on the second line"
    is "$(wc -l <<<"$out")" 2 "$4: $1 --version: two lines"
}
check_version vcl-worker "$ROOT/bin/vcl-worker" "$built" "tree"
check_version vclctl "$ROOT/bin/vclctl" "$built" "tree"
like "$("$ROOT/bin/vcl-worker" --help)" $'\n  +--version +print the version' "vcl-worker --help lists --version"
like "$("$ROOT/bin/vclctl" --help)" $'\n  +--version +print the version' "vclctl --help lists --version"
for page in "$ROOT/build/man/vcl-worker.8" "$ROOT/build/man/vclctl.1"; do
    prog=$(basename "${page%.*}")
    like "$(grep '^\.TH ' "$page")" "\"$prog $built\"" "$prog's man page: .TH names the version"
    ok "$prog's man page lists --version" grep -qF -- '\-\-version' "$page"
done

# --- 2. a copy without .git: the VERSION default; VCL_VERSION= rebuilds one object
SRC=$WORLD/src
mkdir -p "$SRC"
tar -C "$ROOT" --exclude=./build --exclude=./bin --exclude=./lib --exclude=./.git -cf - . | tar -C "$SRC" -xf -
is "$(mk -s -C "$SRC" version)" "$default_version" "no .git: make version is the VERSION default"
t0=$(date +%s)
ok "build the programs in the copy" mk -s -C "$SRC" -j2 bin/vcl-worker bin/vclctl
diag "build from scratch: $(($(date +%s) - t0)) s"
check_version vcl-worker "$SRC/bin/vcl-worker" "$default_version" "copy"
check_version vclctl "$SRC/bin/vclctl" "$default_version" "copy"
out=$(mk -C "$SRC" -j2 VCL_VERSION=9.8.7-test bin/vcl-worker bin/vclctl 2>&1)
is "$(grep -E '^cc .* -c ' <<<"$out" | sed 's/.* -c \([^ ]*\) .*/\1/')" "worker/base/version.c" \
   "VCL_VERSION changed: version.c is the only file compiled again" || diag "$out"
check_version vcl-worker "$SRC/bin/vcl-worker" 9.8.7-test "VCL_VERSION=9.8.7-test"
check_version vclctl "$SRC/bin/vclctl" 9.8.7-test "VCL_VERSION=9.8.7-test"
out=$(mk -C "$SRC" VCL_VERSION=9.8.7-test bin/vcl-worker bin/vclctl 2>&1)
is "$(grep -cE '^cc ' <<<"$out")" 0 "the same version again: nothing is compiled"

# --- 3. -Werror only with DEVELOPER=1 -------------------------------------------------
unlike "$(mk -n -B -C "$SRC" build/worker/base/names.o)" "-Werror" "a plain make: no -Werror"
like "$(mk -n -B -C "$SRC" DEVELOPER=1 build/worker/base/names.o)" "-Werror" "make DEVELOPER=1: -Werror"
like "$(cat "$ROOT/.ci/run")" $'\nexec make check DEVELOPER=1 ' "CI (.ci/run) builds with DEVELOPER=1"
# make check builds through a sub-make ($(MAKE) all); -n still runs it (dry)
out=$(mk -n -C "$SRC" DEVELOPER=1 check 2>&1)
cc_lines=$(grep -cE '^cc .* -c ' <<<"$out")
ok "make -n DEVELOPER=1 check: the sub-make compiles ($cc_lines cc lines)" test "$cc_lines" -gt 0
is "$(grep -E '^cc .* -c ' <<<"$out" | grep -vc -- '-Werror')" 0 \
   "make check DEVELOPER=1: every compile of the sub-make has -Werror"

done_testing
