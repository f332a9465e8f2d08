# shellcheck shell=bash
# tests/lib/tap.sh: TAP (Test Anything Protocol) helpers for bash tests run by
# `prove`. Source it: `. "$(dirname "$0")/../lib/tap.sh"` (tests/lib/world.sh
# sources it for you).
#
#   plan N                     optional: announce N tests up front
#   ok "name" cmd args...      run cmd (stdout+stderr captured); pass if it exits 0
#   fails "name" cmd args...   run cmd; pass if it exits non-zero
#   is "$got" "$want" "name"   pass if the strings are equal
#   isnt "$got" "$bad" "name"  pass if the strings differ
#   like "$got" "regex" "name" pass if got matches the bash (ERE) regex
#   unlike "$got" "regex" "name"
#   pass "name" / fail "name"  record a result directly
#   skip "why" [N]             record N (default 1) skipped tests
#   diag "msg"...              print "# msg" on stderr (shown by prove)
#   note "msg"...              print "# msg" on stdout (shown by prove -v)
#   skip_all "why"             print "1..0 # SKIP why" and exit 0
#   bail "why"                 print "Bail out! why" and exit 255 (prove stops)
#   done_testing               print "1..N" (unless planned) and exit:
#                              0 if all passed, else the number failed (max 254)
#
# Each assertion returns 0 when it passed and 1 when it failed, like
# Test::More. Under `set -e` a failed assertion therefore ends the script
# (after printing its diagnostics); prove then reports the failure. Write
# `is ... || true` to go on after a failure. On failure, got/expected (and a
# command's output) are printed as `#` comments.
#
# If the script exits before done_testing, tap_exit_hook (run from an EXIT
# trap: tap.sh installs one unless the caller already has its own; world.sh
# calls it from its trap) says so on stderr; no plan is printed then, so prove
# counts the script as failed.

[[ -n ${_TAP_SH_LOADED:-} ]] && return 0
_TAP_SH_LOADED=1

_TAP_N=0          # tests run so far
_TAP_FAILED=0     # tests failed so far
_TAP_PLANNED=""   # N when plan was called
_TAP_DONE=0       # done_testing/skip_all/bail ran

# Print each line of stdin as a "#" comment on stderr.
_tap_comment_stream() {
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '#   %s\n' "$line" >&2
    done
}

_tap_result() {
    local passed=$1 name=$2
    _TAP_N=$((_TAP_N + 1))
    # A "#" in a name would start a TAP directive: escape it.
    name=${name//\#/\\#}
    if ((passed)); then
        printf 'ok %d - %s\n' "$_TAP_N" "$name"
        return 0
    fi
    _TAP_FAILED=$((_TAP_FAILED + 1))
    printf 'not ok %d - %s\n' "$_TAP_N" "$name"
    printf '#   Failed test %s\n' "'$2'" >&2
    if [[ -n ${BASH_SOURCE[2]:-} ]]; then
        printf '#   at %s line %s.\n' "${BASH_SOURCE[2]}" "${BASH_LINENO[1]}" >&2
    fi
    return 1
}

plan() {
    _TAP_PLANNED=$1
    printf '1..%d\n' "$1"
}

pass() { _tap_result 1 "$1"; }
fail() { _tap_result 0 "$1"; }

ok() {
    local name=$1
    shift
    local out rc=0
    out=$(mktemp "${TMPDIR:-/tmp}/tap-ok.XXXXXX")
    # Run in this shell (so functions and variables work); output captured.
    "$@" >"$out" 2>&1 || rc=$?
    if ((rc == 0)); then
        rm -f "$out"
        _tap_result 1 "$name"
        return 0
    fi
    _tap_result 0 "$name" || true
    printf '#   command: %s\n' "$*" >&2
    printf '#   exit status: %d\n' "$rc" >&2
    if [[ -s $out ]]; then
        printf '#   output (last 30 lines):\n' >&2
        tail -n 30 "$out" | _tap_comment_stream
    fi
    rm -f "$out"
    return 1
}

fails() {
    local name=$1
    shift
    local out rc=0
    out=$(mktemp "${TMPDIR:-/tmp}/tap-fails.XXXXXX")
    "$@" >"$out" 2>&1 || rc=$?
    if ((rc != 0)); then
        rm -f "$out"
        _tap_result 1 "$name"
        return 0
    fi
    _tap_result 0 "$name" || true
    printf '#   command: %s\n' "$*" >&2
    printf '#   exited 0, expected a failure\n' >&2
    if [[ -s $out ]]; then
        printf '#   output (last 30 lines):\n' >&2
        tail -n 30 "$out" | _tap_comment_stream
    fi
    rm -f "$out"
    return 1
}

is() {
    local got=$1 want=$2 name=${3:-}
    if [[ "$got" == "$want" ]]; then
        _tap_result 1 "$name"
        return 0
    fi
    _tap_result 0 "$name" || true
    printf '#          got: %s\n' "'$got'" >&2
    printf '#     expected: %s\n' "'$want'" >&2
    return 1
}

isnt() {
    local got=$1 bad=$2 name=${3:-}
    if [[ "$got" != "$bad" ]]; then
        _tap_result 1 "$name"
        return 0
    fi
    _tap_result 0 "$name" || true
    printf '#          got: %s\n' "'$got'" >&2
    printf '#     expected: anything else\n' >&2
    return 1
}

like() {
    local got=$1 re=$2 name=${3:-}
    if [[ "$got" =~ $re ]]; then
        _tap_result 1 "$name"
        return 0
    fi
    _tap_result 0 "$name" || true
    printf '#                   %s\n' "'$got'" >&2
    printf '#     does not match %s\n' "'$re'" >&2
    return 1
}

unlike() {
    local got=$1 re=$2 name=${3:-}
    if ! [[ "$got" =~ $re ]]; then
        _tap_result 1 "$name"
        return 0
    fi
    _tap_result 0 "$name" || true
    printf '#                   %s\n' "'$got'" >&2
    printf '#           matches %s\n' "'$re'" >&2
    return 1
}

skip() {
    local why=$1 n=${2:-1} i
    for ((i = 0; i < n; i++)); do
        _TAP_N=$((_TAP_N + 1))
        printf 'ok %d # skip %s\n' "$_TAP_N" "$why"
    done
}

diag() {
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '# %s\n' "$line" >&2
    done <<<"$*"
}

note() {
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '# %s\n' "$line"
    done <<<"$*"
}

skip_all() {
    _TAP_DONE=1
    printf '1..0 # SKIP %s\n' "$*"
    exit 0
}

bail() {
    _TAP_DONE=1
    printf 'Bail out! %s\n' "$*"
    exit 255
}

done_testing() {
    _TAP_DONE=1
    if [[ -z $_TAP_PLANNED ]]; then
        printf '1..%d\n' "$_TAP_N"
    elif ((_TAP_PLANNED != _TAP_N)); then
        diag "Looks like you planned $_TAP_PLANNED tests but ran $_TAP_N."
        exit 255
    fi
    if ((_TAP_N == 0)); then
        diag "No tests run!"
        exit 255
    fi
    if ((_TAP_FAILED > 0)); then
        diag "Looks like you failed $_TAP_FAILED test(s) of $_TAP_N."
        exit $((_TAP_FAILED > 254 ? 254 : _TAP_FAILED))
    fi
    exit 0
}

# To run from an EXIT trap: report a premature exit. Returns 0.
tap_exit_hook() {
    local rc=${1:-0}
    if ((!_TAP_DONE && (_TAP_N > 0 || rc != 0))); then
        diag "Looks like your test exited with $rc before done_testing (ran $_TAP_N, failed $_TAP_FAILED)."
    fi
    return 0
}

# Install our EXIT trap only if the caller has none (world.sh has its own and
# calls tap_exit_hook from it).
if [[ -z $(trap -p EXIT) ]]; then
    trap 'tap_exit_hook $?' EXIT
fi
