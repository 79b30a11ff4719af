#!/usr/bin/env bash
#   Power-loss durability check (deep; outside CI).
#
#   Builds the lose-unsynced LD_PRELOAD shim (tests/durability/lose_unsynced.c)
#   and runs cycles of: chorusd under the shim, paced sends from 3 users to 3
#   channels with a ledger, SIGKILL at a random moment (0.3-2 s), power loss
#   (tests/durability/apply_power_loss.py: unsynced bytes and never dir-synced
#   files thrown away), restart, verify: every acked message present exactly
#   once with its seq and body, seqs 1..head without gaps, unacked sends
#   re-sent with the same client_msg_id land exactly once.
#
#   Checks, one summary line each:
#     1. chorusd                        must lose nothing
#     2. chorusd_early_ack              negative control: MUST lose an acked message
#     3. chorusd, WAL fsync faked       negative control: kill -9 alone loses nothing
#        (shim LOSE_UNSYNCED_FAKE_SYNC)  (a process crash keeps the page cache)...
#     4.   ... and with power loss     MUST lose an acked message
#
#   Usage: scripts/powerloss.sh [--deep] [--cycles N] [--seed S]
#     default 20 cycles per check; --deep: 100, and every other power loss
#     keeps a random prefix of each unsynced tail (torn writes).
#   Binaries: $CHORUSD and $CHORUSD_EARLY_ACK, or built into build-powerloss/.
#   Every run is bounded (timeout per check), touches only its own temporary
#   directory and the processes it started. Exit status 0 when all 4 pass.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

cycles=20
deep=0
seed=${POWERLOSS_SEED:-$RANDOM}
while [ $# -gt 0 ]; do
    case "$1" in
        --deep) deep=1; cycles=100 ;;
        --cycles) cycles="$2"; shift ;;
        --seed) seed="$2"; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "powerloss.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

python=/usr/bin/python3
for tool in gcc "$python"; do
    command -v "$tool" >/dev/null || { echo "powerloss.sh: $tool is missing (scripts/setup.sh)" >&2; exit 2; }
done
"$python" -c 'import zmq, msgpack' 2>/dev/null || {
    echo "powerloss.sh: python3-zmq and python3-msgpack are needed (scripts/setup.sh)" >&2; exit 2; }

if [ -z "${CHORUSD:-}" ] || [ -z "${CHORUSD_EARLY_ACK:-}" ]; then
    build="$root/build-powerloss"
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j "$(nproc)" --target chorusd chorusd_early_ack >/dev/null
    CHORUSD="$build/chorusd"
    CHORUSD_EARLY_ACK="$build/tests/chorusd_early_ack"
fi
case "$(ldd "$CHORUSD" 2>/dev/null)" in
    *libasan*) echo "powerloss.sh: $CHORUSD is an ASan build; LD_PRELOAD needs a build without sanitizers" >&2; exit 2 ;;
esac

work=$(mktemp -d /tmp/chorus-powerloss.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -shared -fPIC -O1 -Wall -o "$work/lose_unsynced.so" tests/durability/lose_unsynced.c -ldl -lpthread

limit=$(( cycles * 30 + 120 ))         # seconds per check, at most
torn=()
[ "$deep" = 1 ] && torn=(--torn-cycles)
echo "powerloss.sh: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $cycles cycles per check, seed $seed$([ "$deep" = 1 ] && echo ', torn tails on every other cycle')"

failed=0
#  check NAME EXPECT(pass|lose) ARGS...: runs the driver, prints the verdict
check() {
    local name=$1 expect=$2; shift 2
    local out rc=0
    out=$(timeout --signal=INT --kill-after=30 "$limit" "$python" tests/durability/apply_power_loss.py \
              --shim "$work/lose_unsynced.so" --work "$work" --seed "$seed" --label "$name" "$@" 2>&1) || rc=$?
    local summary
    summary=$(printf '%s\n' "$out" | grep -E "^$name: " | tail -1 || true)
    if [ -z "$summary" ]; then
        echo "FAIL  $name: the driver died (exit $rc):"
        printf '%s\n' "$out" | tail -15 | sed 's/^/      /'
        failed=1
        return
    fi
    if [ "$expect" = pass ] && [ "$rc" = 0 ]; then
        echo "PASS  $summary"
    elif [ "$expect" = lose ] && [ "$rc" = 1 ] && printf '%s\n' "$out" | grep -qE "LOST|REPLACED"; then
        echo "PASS  (negative control caught) $summary"
    elif [ "$expect" = lose ]; then
        echo "FAIL  NEGATIVE CONTROL NOT CAUGHT: $summary"
        echo "      a server that acks unsynced writes lost nothing acked in $cycles power losses:"
        echo "      the check cannot tell it from chorusd; more cycles or more load are needed"
        failed=1
    else
        echo "FAIL  $summary"
    fi
    [ "$expect" = pass ] && [ "$rc" != 0 ] && failed=1
    printf '%s\n' "$out" | grep -E "^    " | head -5 || true
}

check chorusd pass --cycles "$cycles" --chorusd "$CHORUSD" "${torn[@]}"
check chorusd_early_ack lose --cycles "$cycles" --chorusd "$CHORUSD_EARLY_ACK" --stop-on-loss
check fake_wal_fsync_kill9_only pass --cycles "$(( cycles < 10 ? cycles : 10 ))" --chorusd "$CHORUSD" \
    --fake-sync '*messages/0*.log' --no-power-loss
check fake_wal_fsync lose --cycles "$cycles" --chorusd "$CHORUSD" --fake-sync '*messages/0*.log' --stop-on-loss

if [ "$failed" = 0 ]; then
    echo "powerloss.sh: all 4 checks passed"
else
    echo "powerloss.sh: FAILED"
fi
exit "$failed"
