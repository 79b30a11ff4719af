#!/usr/bin/env bash
#   Builds the libFuzzer targets with clang and runs each for a bounded
#   time (seconds, first argument; default 20) from its committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-20}
build="$root/build-fuzz"
. tests/fuzz/flags.sh
rm -rf "$build"
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCHORUS_FUZZ=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_targets
status=0
for target in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$target" ] || continue
    name=$(basename "$target")
    corpus="$root/tests/fuzz/corpus/$name"
    work=$(mktemp -d)
    mkdir -p "$corpus"
    echo "fuzz: $name for ${seconds}s"
    #   -timeout=10: libFuzzer's alarm then fires every 6 s, so a short run
    #   also shows that a target's waits survive being interrupted by it
    if ! "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
            $(fuzz_flags "$name") -print_final_stats=1 "$work" "$corpus" > "$work.log" 2>&1; then
        echo "fuzz: $name FAILED"; tail -40 "$work.log"; status=1
    else
        grep -E "stat::number_of_executed_units" "$work.log" || true
    fi
    rm -rf "$work" "$work.log"
done
exit $status
