#!/usr/bin/env bash
# fuzz.sh [SECONDS]: build every libFuzzer target (clang, ASan + UBSan) and run each for
# SECONDS (default 60) on a copy of its seed corpus (tests/fuzz/corpus/<name>). A crash is
# saved as fuzz-<name>-crash-* in the build folder and fails the run; add it to the corpus as
# a regression input once fixed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECONDS_EACH=${1:-60}
BUILD=${FS_FUZZ_BUILD:-build-fuzz}
mkdir -p "$BUILD"
if ! { cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFS_FUZZ=ON && cmake --build "$BUILD" -j"$(nproc)"; } >"$BUILD/fuzz-build.log" 2>&1; then
    echo "fuzz: the libFuzzer build failed (clang with -fsanitize=fuzzer is needed):"
    tail -30 "$BUILD/fuzz-build.log"
    exit 1
fi
status=0
for bin in "$BUILD"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    name=${name#fuzz_}
    work=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
    printf 'fuzz %-10s %3ss ... ' "$name" "$SECONDS_EACH"
    if "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$BUILD/fuzz-$name-" "$work" >"$BUILD/fuzz-$name.log" 2>&1; then
        runs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+|#[0-9]+' "$BUILD/fuzz-$name.log" |
            tail -1 | grep -Eo '[0-9]+$' || echo "?")
        echo "ok ($runs runs, no finding)"
    else
        echo "FINDING: see $BUILD/fuzz-$name.log and $BUILD/fuzz-$name-*"
        tail -30 "$BUILD/fuzz-$name.log"
        status=1
    fi
    rm -rf "$work"
done
exit "$status"
