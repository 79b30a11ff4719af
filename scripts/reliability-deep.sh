#!/usr/bin/env bash
#   The deep versions of the reliability checks (not run in CI: hours).
#   Prints one summary line per check and exits non-zero if any failed.
#     100 SIGKILLs of the single process under load, and 100 of the
#     persistence stage split over tcp; the power-loss shim with its negative
#     control (100 cycles); the Nth-operation I/O sweep to 2,000; 10 million
#     executions of every fuzz target (or an hour each, whichever is first;
#     CHORUS_DEEP_FUZZ_MAX_S sets another cap), shared by one process a core
#     (CHORUS_DEEP_FUZZ_WORKERS sets another number).
#   Usage: scripts/reliability-deep.sh [--quick] [--only REGEX]
#     --quick: a tenth of each; --only: the checks whose names match REGEX
#     (grep -E), e.g. --only 'fuzz' or --only 'crash|tcp'
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scale=1
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) scale=10 ;;
        --only) only="$2"; shift ;;
        *) echo "usage: $0 [--quick] [--only REGEX]" >&2; exit 2 ;;
    esac
    shift
done

scripts/setup.sh >/dev/null
build="$root/build-deep"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null || exit 1
export CHORUSD="$build/chorusd" CHORUSD_EARLY_ACK="$build/tests/chorusd_early_ack"
export PYTHONPATH="$root/tests/integration"
status=0
summary=()

#  Runs one check; keeps its last line as the summary
#  (its whole output stays in build-deep/logs/, for the figures behind it)
logs="$build/logs"
[ -z "$only" ] && rm -rf "$logs"; mkdir -p "$logs"
check () {
    local name="$1"; shift
    [ -n "$only" ] && ! echo "$name" | grep -qE "$only" && return
    local log; log="$logs/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-').log"
    local start=$SECONDS
    if "$@" > "$log" 2>&1; then result="PASS"; else result="FAIL"; status=1; fi
    summary+=("$(printf '%-4s %-28s %5ds  %s' "$result" "$name" $((SECONDS - start)) "$(grep -E 'passed|kills|checks|number_of_executed_units' "$log" | tail -1)")")
    echo "${summary[-1]}"
    grep -E '^(crash|kill point|channel_create kill point|figure: persistence_kill_(sends|recovery_max))' "$log" | sed 's/^/     /'
    [ "$result" = FAIL ] && tail -20 "$log"
}

echo "reliability-deep: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, scale 1/$scale${only:+, only /$only/}"
check "crash, single process" env CHORUS_CRASH_KILLS=$((100 / scale)) /usr/bin/python3 tests/integration/test_crash.py
check "persistence kills over tcp" env CHORUS_SF_KILLS=$((100 / scale)) CHORUS_SF_ONLY=test_persistence_sigkill_under_load \
      /usr/bin/python3 tests/integration/test_stage_faults.py
if [ "$scale" = 1 ]; then powerloss=(--deep); else powerloss=(--cycles 10); fi
check "power loss + control" scripts/powerloss.sh "${powerloss[@]}"
check "I/O Nth-operation sweep" env CHORUS_IO_SWEEP=$((2000 / scale)) /usr/bin/python3 tests/integration/test_io_faults.py
runs=$((10000000 / scale))
fuzz_max_s=${CHORUS_DEEP_FUZZ_MAX_S:-3600}
workers=${CHORUS_DEEP_FUZZ_WORKERS:-$(nproc)}
fuzz="$root/build-fuzz-deep"
CC=clang cmake -S . -B "$fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHORUS_FUZZ=ON >/dev/null
cmake --build "$fuzz" -j "$(nproc)" --target fuzz_targets >/dev/null || exit 1
. tests/fuzz/flags.sh

#  Runs one target as $workers processes, each with its share of the runs,
#  on one corpus directory (libFuzzer re-reads it every second, so what one
#  finds the others take up); the first to fail stops the others. Prints
#  each one's output (a failed one's last), then the totals: executions,
#  and inputs a second (the sum of each one's average).
fuzz_workers () {
    local target="$1" name="$2" work="$3"
    local share=$(( (runs + workers - 1) / workers )) failed=0 pid i n total=0 rate=0
    local -A pids=()
    for i in $(seq "$workers"); do
        "$target" -runs=$share -max_total_time=$((fuzz_max_s / scale)) -rss_limit_mb=2048 -malloc_limit_mb=256 \
            $(fuzz_flags "$name") -print_final_stats=1 "$work" "tests/fuzz/corpus/$name" > "$work.$i.log" 2>&1 &
        pids[$!]=$i
    done
    while [ ${#pids[@]} -gt 0 ]; do
        if ! wait -n -p pid "${!pids[@]}" && [ $failed = 0 ]; then
            failed=${pids[$pid]}
            for i in "${!pids[@]}"; do [ "$i" != "$pid" ] && kill "$i" 2>/dev/null; done
        fi
        unset "pids[$pid]"
    done
    local order; order=$(seq "$workers" | grep -vx "$failed")
    [ $failed = 0 ] || order="$order $failed"
    for i in $order; do
        echo "=== $name, worker $i of $workers$([ "$i" = $failed ] && echo ": FAILED")"
        cat "$work.$i.log"
        n=$(grep -oE 'number_of_executed_units: *[0-9]+' "$work.$i.log" | grep -oE '[0-9]+$')
        total=$((total + ${n:-0}))
        n=$(grep -oE 'average_exec_per_sec: *[0-9]+' "$work.$i.log" | grep -oE '[0-9]+$')
        rate=$((rate + ${n:-0}))
    done
    rm -f "$work".*.log
    echo "total: stat::average_exec_per_sec: $rate"
    echo "total: stat::number_of_executed_units: $total ($workers workers$([ $total -lt $runs ] && echo ", short of $runs"))"
    [ $failed = 0 ]
}
for target in "$fuzz"/tests/fuzz/fuzz_*; do
    name=$(basename "$target")
    work=$(mktemp -d)
    check "fuzz $name" fuzz_workers "$target" "$name" "$work"
    rm -rf "$work"
done
echo
printf '%s\n' "${summary[@]}"
exit $status
