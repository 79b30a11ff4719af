#!/usr/bin/env bash
#   Runs every Chorus test: installs what is needed, builds into a fresh
#   directory with AddressSanitizer and UndefinedBehaviorSanitizer, runs
#   ctest (unit, integration and browser tests), then a bounded fuzz smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/setup.sh

if [ -f tests/e2e/package.json ]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

build="$root/build-test"
rm -rf "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCHORUS_SANITIZE=ON >/dev/null
cmake --build "$build" -j "$(nproc)"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$build" && ctest --output-on-failure --timeout 900)

scripts/fuzz.sh "${CHORUS_FUZZ_SECONDS:-20}"
