#!/usr/bin/env bash
#   The deep versions of the reliability checks (not run in CI: hours).
#   Prints one summary line per check and exits non-zero if any failed.
#     100 SIGKILLs of the single process under load, and 100 of the
#     persistence stage split over tcp; the power-loss shim with its negative
#     control (100 cycles); the Nth-operation I/O sweep to 2,000; 10 million
#     executions of every fuzz target (or an hour each, whichever is first;
#     CHORUS_DEEP_FUZZ_MAX_S sets another cap), shared by one process a core
#     (CHORUS_DEEP_FUZZ_WORKERS sets another number).
#   Usage: scripts/reliability-deep.sh [--quick] [--only REGEX] [--resume-fuzz]
#     --quick: a tenth of each; --only: the checks whose names match REGEX
#     (grep -E), e.g. --only 'fuzz' or --only 'crash|tcp'; --resume-fuzz:
#     continue the fuzz campaigns of an earlier run (scripts/fuzz-campaign.sh)
#     instead of starting new ones, for a target that needs more than one
#     sitting (fuzz_stateful: about 3 hours on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scale=1
only=""
resume_fuzz=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) scale=10 ;;
        --only) only="$2"; shift ;;
        --resume-fuzz) resume_fuzz=1 ;;
        *) echo "usage: $0 [--quick] [--only REGEX] [--resume-fuzz]" >&2; exit 2 ;;
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
    summary+=("$(printf '%-4s %-28s %5ds  %s' "$result" "$name" $((SECONDS - start)) "$(grep -E 'passed|kills|checks|^(DONE|PART|FAIL) campaign' "$log" | tail -1)")")
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

#  Each target runs as a campaign (scripts/fuzz-campaign.sh: one process a
#  core on one corpus, recorded in a ledger slice by slice); a new one each
#  run unless --resume-fuzz, which continues the campaigns already there
#  (same binaries, whatever the checkout) up to the runs asked for.
fuzz_campaign () {
    local name="$1" campaign="$build/campaign/$1"
    [ "$resume_fuzz" = 1 ] || rm -rf "$campaign"
    CHORUS_DEEP_FUZZ_WORKERS="$workers" scripts/fuzz-campaign.sh "$name" \
        --runs "$runs" --for $((fuzz_max_s / scale)) --dir "$campaign"
}
for target in "$fuzz"/tests/fuzz/fuzz_*; do
    check "fuzz $(basename "$target")" fuzz_campaign "$(basename "$target")"
done
echo
printf '%s\n' "${summary[@]}"
exit $status
