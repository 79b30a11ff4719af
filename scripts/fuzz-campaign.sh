#!/usr/bin/env bash
#   A fuzz campaign that stops and resumes: one target, one binary, one
#   corpus, and a ledger of every run's executions, until the ledger holds
#   the runs asked for. For a target too slow to reach 10 million
#   executions in one sitting (fuzz_stateful: ~500 programs a second a
#   core under ASan and UBSan, about 3 hours on this machine).
#
#   The first call builds the fuzz targets (ASan + UBSan, as
#   scripts/reliability-deep.sh does) from the checked-out commit and copies
#   the target's binary into the campaign; later calls run that same binary,
#   whatever the checkout is then, so every execution counted tests one
#   commit (recorded in the ledger). Runs are slices of at most 10 minutes,
#   each added to the ledger when it ends; SIGTERM or SIGINT ends the slice
#   at once (the workers print their counts) and records it, so a campaign
#   can be paused for a benchmark and resumed. The workers (CHORUS_DEEP_FUZZ_WORKERS, default one a core)
#   run at nice 19, so they take only the CPU the machine leaves; started
#   in a session of its own (setsid), the script also sets that session's
#   scheduling group to nice 19 (with autogroups, nice counts only inside
#   a session).
#
#   Usage: scripts/fuzz-campaign.sh TARGET [--runs N] [--for SECONDS] [--dir DIR]
#     --runs: executions to reach (10,000,000); --for: stop after this many
#     seconds even if short (default: no limit); --dir: the campaign
#     (build-deep/campaign/TARGET). Prints one summary line:
#     DONE, PART (short of --runs) or FAIL; exits 0, 3 or 1.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ $# -ge 1 ] || { echo "usage: $0 TARGET [--runs N] [--for SECONDS] [--dir DIR]" >&2; exit 2; }
target=$1; shift
runs=10000000
limit_s=0
dir="$root/build-deep/campaign/$target"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift ;;
        --for) limit_s=$2; shift ;;
        --dir) dir=$2; shift ;;
        *) echo "usage: $0 TARGET [--runs N] [--for SECONDS] [--dir DIR]" >&2; exit 2 ;;
    esac
    shift
done
workers=${CHORUS_DEEP_FUZZ_WORKERS:-$(nproc)}
if [ "$(ps -o sid= -p $$ | tr -d ' ')" = "$$" ] && [ -w /proc/self/autogroup ]; then
    echo 19 > /proc/self/autogroup 2>/dev/null
fi
slice_s=${CHORUS_CAMPAIGN_SLICE_S:-600}
ledger="$dir/ledger"
. tests/fuzz/flags.sh

#  The binary: built once, at the campaign's start
if [ ! -x "$dir/$target" ]; then
    scripts/setup.sh >/dev/null
    fuzz="$root/build-fuzz-deep"
    CC=clang cmake -S . -B "$fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHORUS_FUZZ=ON >/dev/null
    cmake --build "$fuzz" -j "$(nproc)" --target fuzz_targets >/dev/null || exit 1
    [ -x "$fuzz/tests/fuzz/$target" ] || { echo "no fuzz target $target" >&2; exit 2; }
    mkdir -p "$dir/corpus" "$dir/crashes"
    cp "$fuzz/tests/fuzz/$target" "$dir/$target"
    cp -r "tests/fuzz/corpus/$target/." "$dir/corpus/" 2>/dev/null
    commit=$(git rev-parse --short HEAD)
    git diff --quiet HEAD -- . ':!BENCHMARKS.md' ':!docs' || commit="$commit+local changes"
    echo "# campaign $target: binary from $commit, built $(date -u '+%Y-%m-%d %H:%M UTC')" > "$ledger"
    echo "# start_utc end_utc workers executions result" >> "$ledger"
fi

done_so_far () {
    awk '!/^#/ { n += $6 } END { print n + 0 }' "$ledger"
}
summary () {
    local total; total=$(done_so_far)
    local slices; slices=$(grep -vc '^#' "$ledger")
    local first; first=$(awk '!/^#/ { print $1 " " $2; exit }' "$ledger")
    local last; last=$(awk '!/^#/ { s = $3 " " $4 } END { print s }' "$ledger")
    local state=PART
    grep -q ' FAIL$' "$ledger" && state=FAIL
    [ $state = PART ] && [ "$total" -ge "$runs" ] && state=DONE
    printf '%s campaign %s: %d of %d executions, %d slices, %s to %s, %s\n' \
        "$state" "$target" "$total" "$runs" "$slices" "${first:-none}" "${last:-none}" \
        "$(head -1 "$ledger" | sed 's/^# campaign [^:]*: //')"
    case $state in DONE) return 0 ;; FAIL) return 1 ;; *) return 3 ;; esac
}

grep -q ' FAIL$' "$ledger" && { summary; exit $?; }
start=$SECONDS
stopping=0
pids=()
trap 'stopping=1; [ ${#pids[@]} -gt 0 ] && kill -INT "${pids[@]}" 2>/dev/null' TERM INT
while [ $stopping = 0 ] && [ "$(done_so_far)" -lt "$runs" ]; do
    left_s=$slice_s
    if [ "$limit_s" -gt 0 ]; then
        left_s=$((limit_s - (SECONDS - start)))
        [ "$left_s" -gt "$slice_s" ] && left_s=$slice_s
        [ "$left_s" -ge 30 ] || break
    fi
    need=$(( (runs - $(done_so_far) + workers - 1) / workers ))
    slice_start=$(date -u '+%Y-%m-%d %H:%M:%S')
    pids=()
    for i in $(seq "$workers"); do
        nice -n 19 "$dir/$target" -runs="$need" -max_total_time="$left_s" \
            -rss_limit_mb=2048 -malloc_limit_mb=256 $(fuzz_flags "$target") \
            -print_final_stats=1 -artifact_prefix="$dir/crashes/" \
            "$dir/corpus" > "$dir/worker.$i.log" 2>&1 &
        pids+=($!)
    done
    #  libFuzzer exits 72 when interrupted (after printing its counts);
    #  wait returns early when a signal arrives, so wait again until gone
    result=PASS
    for pid in "${pids[@]}"; do
        while true; do
            wait "$pid"; rc=$?
            kill -0 "$pid" 2>/dev/null || break
        done
        [ $rc = 0 ] || [ $rc = 72 ] || result=FAIL
    done
    pids=()
    executed=0
    for i in $(seq "$workers"); do
        #  an interrupted worker may print its final stats twice: the last counts
        n=$(grep -oE 'number_of_executed_units: *[0-9]+' "$dir/worker.$i.log" | tail -1 | grep -oE '[0-9]+$')
        executed=$((executed + ${n:-0}))
        [ $result = FAIL ] && grep -q -E 'ERROR|fuzz_stateful:|deadly signal' "$dir/worker.$i.log" \
            && cp "$dir/worker.$i.log" "$dir/crashes/worker.$i.$(date +%s).log"
    done
    echo "$slice_start $(date -u '+%Y-%m-%d %H:%M:%S') $workers $executed $result" >> "$ledger"
    [ $result = FAIL ] && break
done
summary
