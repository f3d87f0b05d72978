#!/usr/bin/env bash
# test.sh: install what is missing, build, and run every test: the Release build (all ctest
# labels), the AddressSanitizer + UndefinedBehaviorSanitizer build (all tests), the
# ThreadSanitizer build (label concurrency), and each libFuzzer target for a bounded time.
# The exit status is the result.
# After the Release tests, a short soak of the daemon under load and reloads (scripts/soak.sh)
# prints its summary.
#   FS_FUZZ_SECONDS   seconds per fuzz target (default 20; 0 skips the libFuzzer runs)
#   FS_SOAK_MINUTES   minutes of the soak (default 2; 0 skips it)
#   FS_TEST_JOBS      parallel ctest jobs (default: number of cores)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
JOBS=${FS_TEST_JOBS:-$(nproc)}
FUZZ_SECONDS=${FS_FUZZ_SECONDS:-20}
SOAK_MINUTES=${FS_SOAK_MINUTES:-2}
status=0

scripts/deps.sh test

step() { printf '\n==== %s ====\n' "$*"; }

build() { # dir, cmake args...
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)"
}

step "Release build and all tests"
build build-test -DCMAKE_BUILD_TYPE=Release
(cd build-test && ctest --output-on-failure -j"$JOBS") || status=1

if [ "$SOAK_MINUTES" != 0 ]; then
    step "Soak: ${SOAK_MINUTES} min of scoring under reloads, swaps, corrupt files, ingest and refits"
    FLOWSCORE_BIN=build-test/server/flowscore scripts/soak.sh "$SOAK_MINUTES" || status=1
fi

step "AddressSanitizer + UndefinedBehaviorSanitizer build and all tests"
build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFS_SANITIZE=address,undefined
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$JOBS" --timeout 1800) || status=1

step "ThreadSanitizer build and the concurrency tests"
build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFS_SANITIZE=thread
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$ROOT/tests/tsan.supp" \
    ctest --output-on-failure -L concurrency -j"$JOBS" --timeout 1800) || status=1

if [ "$FUZZ_SECONDS" != 0 ]; then
    step "libFuzzer targets, ${FUZZ_SECONDS}s each"
    FS_FUZZ_BUILD=build-fuzz scripts/fuzz.sh "$FUZZ_SECONDS" || status=1
fi

if [ "$status" = 0 ]; then
    step "all tests passed"
else
    step "FAILED"
fi
exit "$status"
