#!/usr/bin/env bash
# The fuzz corpora, replayed once (issue #12 item 9): every file of
# tests/fuzz/corpus/<target>/ through build/fuzz-replay/fuzz_<target>, the
# harness tests/fuzz/fuzz_<target>.c linked with tests/fuzz/replay.c and
# built by gcc with -fsanitize=address,undefined (`make fuzz-replay`, which
# `make check` runs first). No clang, no libFuzzer, no services. A failed
# property, a sanitizer report or a crash input kept in the corpus that
# fails again is a failed test, with the input's name and the report.
. "$(dirname "$0")/../lib/tap.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/fuzz-replay
CORPUS=$ROOT/tests/fuzz/corpus

mapfile -t targets < <(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')
((${#targets[@]})) || bail "no harnesses in tests/fuzz"
for t in "${targets[@]}"; do
    if [[ ! -x $BIN/fuzz_$t ]]; then
        fail "$t: build/fuzz-replay/fuzz_$t is missing (run make fuzz-replay)"
        continue
    fi
    n=$(find "$CORPUS/$t" -maxdepth 1 -type f 2>/dev/null | wc -l)
    if ((n == 0)); then
        fail "$t: no seed corpus in tests/fuzz/corpus/$t"
        continue
    fi
    out=$(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
          "$BIN/fuzz_$t" "$CORPUS/$t" 2>&1)
    rc=$?
    if ((rc == 0)) && [[ $out == *"replayed $n inputs"* ]]; then
        pass "$t: $n corpus inputs replay clean under ASan and UBSan"
    else
        fail "$t: corpus replay (exit $rc)"
        # the last input named is the one that failed; then the report
        diag "$(grep '^replay: ' <<<"$out" | tail -1)"
        diag "$(grep -v '^replay: ' <<<"$out" | head -40)"
    fi
done
done_testing
