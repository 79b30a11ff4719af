#!/usr/bin/env bash
#   Chorus benchmarks: runs every scenario (or the ones named) against a
#   chorusd it builds and starts, with the limit (RocksDB) and the peers
#   (Redis appendfsync always, InspIRCd) measured in the same run, then
#   rewrites the figures section of BENCHMARKS.md.
#
#     scripts/bench.sh                  every scenario
#     scripts/bench.sh ingest fanout    some of them
#     scenarios: ingest fanout workspace connections history catchup profile
#
#   Everything runs on 127.0.0.1 under a temporary directory; every process
#   started here is stopped here, by PID. Every run is bounded in count and
#   time. Environment:
#     CHORUS_BENCH_BUILD   build directory (default /tmp/chorus-bench-build)
#     CHORUS_BENCH_CACHE   populations, the 10M-message history, results
#                          (default /var/tmp/chorus-bench)
#     CHORUS_BENCH_QUICK=1 shorter runs and a small population (smoke)
#     CHORUS_BENCH_NO_BUILD=1  use the binaries already in the build directory
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${CHORUS_BENCH_BUILD:-/tmp/chorus-bench-build}
cache=${CHORUS_BENCH_CACHE:-/var/tmp/chorus-bench}
quick=${CHORUS_BENCH_QUICK:-0}
py=/usr/bin/python3
results="$cache/results"
run=$(mktemp -d /tmp/chorus-bench-run.XXXXXX)
mkdir -p "$cache" "$results"
pids=()

log() { echo "bench: $*" >&2; }

cleanup() {
    for pid in "${pids[@]:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]:-}"; do
        [ -n "$pid" ] || continue
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

free_port() {
    $py -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"
}

forget_pid() {
    local keep=() p
    for p in "${pids[@]:-}"; do [ "$p" != "$1" ] && keep+=("$p"); done
    pids=("${keep[@]:-}")
}

#   Stops a process by PID: TERM, then KILL after 60 s
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# --------------------------------------------------------------------------
#   Packages, build

ensure_packages() {
    local missing=() p
    for p in redis-server redis-tools inspircd; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

build_all() {
    chorusd=$build/chorusd
    bench=$build/chorus-bench
    if [ "${CHORUS_BENCH_NO_BUILD:-0}" = 1 ] && [ -x "$chorusd" ] && [ -x "$bench" ]; then
        log "using the binaries in $build as they are (CHORUS_BENCH_NO_BUILD=1)"
        return 0
    fi
    log "building chorusd and chorus-bench (RelWithDebInfo) in $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHORUS_WERROR=OFF >/dev/null
    cmake --build "$build" -j "$(nproc)" --target chorusd >/dev/null
    if cmake --build "$build" --target help 2>/dev/null | grep -q chorus-bench; then
        cmake --build "$build" -j "$(nproc)" --target chorus-bench >/dev/null
    else
        gcc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -I"$root/include" "$root"/bench/*.c "$root"/proto/*.c \
            -lzmq -lmsgpackc -lrocksdb -lm -lpthread -o "$build/chorus-bench"
    fi
    chorusd=$build/chorusd
    bench=$build/chorus-bench
}

# --------------------------------------------------------------------------
#   chorusd

#   start_chorusd NAME DATA_DIR [extra options]: sets api, http, cpid
start_chorusd() {
    local name=$1 data=$2
    shift 2
    local api_port http_port
    api_port=$(free_port)
    http_port=$(free_port)
    api="tcp://127.0.0.1:$api_port"
    http="127.0.0.1:$http_port"
    clog="$run/$name.chorusd.log"
    #   The edge reaches the broker over inproc://chorus-front, which the
    #   broker binds only when --api lists it
    local front="$api,inproc://chorus-front" attempt
    for attempt in 1 2; do
        "$chorusd" --data "$data" --api "$front" --http "$http" \
            --rate 100000000 --burst 100000000 "$@" >"$clog" 2>&1 &
        cpid=$!
        pids+=("$cpid")
        for _ in $(seq 600); do
            grep -q "chorusd: running" "$clog" 2>/dev/null && break
            kill -0 "$cpid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$cpid" 2>/dev/null && grep -q "chorusd: running" "$clog" && break
        #   A chorusd that binds the edge's endpoint itself: without ours
        if grep -q "cannot bind inproc://chorus-front" "$clog" && [ "$attempt" = 1 ]; then
            stop_pid "$cpid"
            front=$api
            continue
        fi
        tail -20 "$clog" >&2
        return 1
    done
    log "$name: chorusd pid $cpid on $api, ws $http"
}

#   Stops chorusd; prints the average group commit batch ("sends commits")
stop_chorusd() {
    stop_pid "$cpid"
    local line
    line=$(grep -o "persistence: [0-9]* sends in [0-9]* commits" "$clog" | tail -1 || true)
    echo "$line" | awk '{ print $2, $5 }'
}

#   A fresh copy of the population (users, tokens, channels), made once
population() {
    local users=10000 key="pop-10000"
    [ "$quick" = 1 ] && users=1100 key="pop-1100"
    local dir="$cache/$key"
    if [ ! -f "$dir/pop.txt" ]; then
        log "making the population $key once (user_create hashes with argon2id: ~0.1 s per user)"
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp"
        start_chorusd populate "$dir.tmp/data" --stages broker,ingest,membership,persistence,fanout
        local started=$SECONDS wsize=100 wch=100
        [ "$quick" = 1 ] && wch=10
        "$bench" setup --api "$api" --admin-token-file "$dir.tmp/data/admin.token" \
            --out "$dir.tmp/pop.txt" --users "$users" --wchannels "$wch" --wsize "$wsize" \
            --fan 1000 --all --ingest-channels 100 --ingest-senders 64
        stop_chorusd >/dev/null
        echo "$((SECONDS - started))" > "$dir.tmp/seconds"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    pop_dir=$dir
}

#   fresh_data NAME: copies the population's data; sets data, pop
fresh_data() {
    population
    data="$run/$1.data"
    rm -rf "$data"
    cp -a "$pop_dir/data" "$data"
    pop="$pop_dir/pop.txt"
}

result() { echo "$results/$1"; }

# --------------------------------------------------------------------------
#   Peers

start_redis() {
    local dir="$run/redis"
    mkdir -p "$dir"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync always --save "" --daemonize no --protected-mode yes >"$dir/log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 100); do
        redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    log "redis did not start"; return 1
}

#   redis_xadd CLIENTS PIPELINE REQUESTS OUT.json
redis_xadd() {
    local body
    body=$(head -c 200 /dev/zero | tr '\0' 'x')
    redis-cli -p "$redis_port" del bench >/dev/null
    local csv
    csv=$(timeout 120 redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$1" -P "$2" -n "$3" --csv \
          XADD bench '*' body "$body" | tail -1)
    echo "$csv" | $py -c '
import sys, json, csv
row = next(csv.reader(sys.stdin))
keys = ["test","rps","avg","min","p50","p95","p99","max"]
d = dict(zip(keys, row))
print(json.dumps({"name": "redis", "clients": int(sys.argv[1]), "pipeline": int(sys.argv[2]),
    "acked_per_s": float(d["rps"]), "ack_ms": {"p50": float(d["p50"]), "p99": float(d["p99"]),
    "max": float(d["max"]), "mean": float(d["avg"])}}))' "$1" "$2" > "$4"
}

start_inspircd() {
    local dir="$run/inspircd"
    mkdir -p "$dir"
    irc_port=$(free_port)
    cat > "$dir/inspircd.conf" <<EOF
<server name="bench.local" description="bench" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="$irc_port" type="clients">
<connect allow="*" timeout="300" pingfreq="3600" threshold="1000000000" commandrate="1000000000"
         fakelag="no" hardsendq="256M" softsendq="256M" recvq="256M" localmax="100000"
         globalmax="100000" maxchans="1000" limit="100000" maxconnwarn="no"
         resolvehostnames="no" useconnectban="no" useconnflood="no">
<channels users="1000" opers="1000">
<dns server="127.0.0.1" timeout="1">
<pid file="$dir/inspircd.pid">
<options prefixquit="Quit: " syntaxhints="no" announcets="no" hostintopic="no" pingwarning="0">
<security hideserver="" userstats="Pu" maxtargets="20">
<performance softlimit="30000" somaxconn="4096" netbuffersize="65536" clonesonconnect="no" timeskipwarn="0">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="10" maxhost="64" maxquit="255"
        maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200" maxline="65535">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="$dir/ircd.log">
EOF
    inspircd --config "$dir/inspircd.conf" --nofork --runasroot >"$dir/out.log" 2>&1 &
    irc_pid=$!
    pids+=("$irc_pid")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$irc_port") 2>/dev/null && return 0
        sleep 0.1
    done
    log "inspircd did not start"; tail -20 "$dir/out.log" >&2; return 1
}

#   The fan-out limit: a minimal epoll relay speaking the same IRC subset
start_relay() {
    rm -f "$run/relay.port"
    "$bench" relay --portfile "$run/relay.port" --seconds 1800 >"$run/relay.log" 2>&1 &
    relay_pid=$!
    pids+=("$relay_pid")
    for _ in $(seq 100); do
        [ -s "$run/relay.port" ] && { relay_port=$(cat "$run/relay.port"); return 0; }
        sleep 0.1
    done
    log "relay did not start"; return 1
}

# --------------------------------------------------------------------------
#   Scenarios

#   The duration of measured windows
dur() { if [ "$quick" = 1 ]; then echo 3; else echo "$1"; fi; }

scenario_ingest() {
    local d; d=$(dur 10)
    local rdir="$results/ingest"; mkdir -p "$rdir"
    local window batch
    for window in 1 16; do
        fresh_data ingest
        start_chorusd ingest "$data"
        "$bench" run --pop "$pop" --api "$api" --proto zmq --channels 'i*' --senders 64 \
            --window "$window" --warmup 2 --duration "$d" --server-pid "$cpid" \
            --label "ingest zmq 64x$window" --json "$rdir/chorus-zmq-$window.json"
        batch=$(stop_chorusd)
        echo "$batch" > "$rdir/batch-zmq-$window.txt"
        log "ingest 64x$window: sends commits = $batch"
    done
    fresh_data ingest
    start_chorusd ingest "$data"
    "$bench" run --pop "$pop" --ws "$http" --proto ws --channels 'i*' --senders 64 --window 16 \
        --warmup 2 --duration "$d" --server-pid "$cpid" \
        --label "ingest ws 64x16" --json "$rdir/chorus-ws-16.json"
    batch=$(stop_chorusd)
    echo "$batch" > "$rdir/batch-ws-16.txt"
    #   The limit: RocksDB, one writer, the batch size group commit reached
    for window in 1 16; do
        batch=$(awk '{ if ($2 > 0) printf "%d", ($1 / $2) + 0.5; else print 1 }' "$rdir/batch-zmq-$window.txt")
        [ "$batch" -ge 1 ] 2>/dev/null || batch=1
        rm -rf "$run/rocks"
        "$bench" rocksdb --dir "$run/rocks" --batch "$batch" --puts 3 --value-size 300 --seconds "$(dur 5)" \
            --json "$rdir/rocksdb-$window.json"
        rm -rf "$run/rocks"
        "$bench" rocksdb --dir "$run/rocks" --batch "$batch" --puts 1 --value-size 300 --seconds "$(dur 5)" \
            --json "$rdir/rocksdb1-$window.json"
    done
    rm -rf "$run/rocks"
    #   The durable peer: Redis, AOF fsync on every write
    start_redis
    redis_xadd 64 1 "$(( quick == 1 ? 50000 : 500000 ))" "$rdir/redis-1.json"
    redis_xadd 64 16 "$(( quick == 1 ? 200000 : 2000000 ))" "$rdir/redis-16.json"
    stop_pid "$redis_pid"
}

scenario_fanout() {
    local d; d=$(dur 10)
    local rdir="$results/fanout"; mkdir -p "$rdir"
    fresh_data fanout
    start_chorusd fanout "$data"
    local common=(--pop "$pop" --channels fan --senders 4 --duration "$d" --warmup 2)
    "$bench" run "${common[@]}" --ws "$http" --window 16 --server-pid "$cpid" \
        --label "fanout ws closed 4x16" --json "$rdir/chorus-closed.json"
    "$bench" run "${common[@]}" --ws "$http" --rate 200 --server-pid "$cpid" \
        --label "fanout ws open 200/s" --json "$rdir/chorus-200.json"
    "$bench" run "${common[@]}" --ws "$http" --rate 1000 --server-pid "$cpid" \
        --label "fanout ws open 1000/s" --json "$rdir/chorus-1000.json"
    stop_chorusd >/dev/null
    start_inspircd
    "$bench" run "${common[@]}" --proto irc --irc "127.0.0.1:$irc_port" --window 16 \
        --server-pid "$irc_pid" --label "fanout irc closed 4x16" --json "$rdir/irc-closed.json"
    "$bench" run "${common[@]}" --proto irc --irc "127.0.0.1:$irc_port" --rate 200 \
        --server-pid "$irc_pid" --label "fanout irc open 200/s" --json "$rdir/irc-200.json"
    "$bench" run "${common[@]}" --proto irc --irc "127.0.0.1:$irc_port" --rate 1000 \
        --server-pid "$irc_pid" --label "fanout irc open 1000/s" --json "$rdir/irc-1000.json"
    stop_pid "$irc_pid"
    start_relay
    "$bench" run "${common[@]}" --proto irc --irc "127.0.0.1:$relay_port" --window 16 \
        --server-pid "$relay_pid" --label "fanout relay closed 4x16" --json "$rdir/relay-closed.json"
    "$bench" run "${common[@]}" --proto irc --irc "127.0.0.1:$relay_port" --rate 200 \
        --server-pid "$relay_pid" --label "fanout relay open 200/s" --json "$rdir/relay-200.json"
    "$bench" run "${common[@]}" --proto irc --irc "127.0.0.1:$relay_port" --rate 1000 \
        --server-pid "$relay_pid" --label "fanout relay open 1000/s" --json "$rdir/relay-1000.json"
    stop_pid "$relay_pid"
}

scenario_workspace() {
    local d; d=$(dur 10)
    local rdir="$results/workspace"; mkdir -p "$rdir"
    ulimit -n 20000 2>/dev/null || true
    fresh_data workspace
    start_chorusd workspace "$data"
    local senders=100
    [ "$quick" = 1 ] && senders=10
    "$bench" run --pop "$pop" --ws "$http" --channels 'w*' --senders "$senders" --rate 2000 \
        --warmup 3 --duration "$d" --server-pid "$cpid" --setup-timeout 300 \
        --label "workspace ws 2000/s" --json "$rdir/chorus.json"
    stop_chorusd >/dev/null
    start_inspircd
    "$bench" run --pop "$pop" --proto irc --irc "127.0.0.1:$irc_port" --channels 'w*' \
        --senders "$senders" --rate 2000 --warmup 3 --duration "$d" --server-pid "$irc_pid" \
        --setup-timeout 300 --label "workspace irc 2000/s" --json "$rdir/irc.json"
    stop_pid "$irc_pid"
    start_relay
    "$bench" run --pop "$pop" --proto irc --irc "127.0.0.1:$relay_port" --channels 'w*' \
        --senders "$senders" --rate 2000 --warmup 3 --duration "$d" --server-pid "$relay_pid" \
        --setup-timeout 300 --label "workspace relay 2000/s" --json "$rdir/relay.json"
    stop_pid "$relay_pid"
}

scenario_connections() {
    local rdir="$results/connections"; mkdir -p "$rdir"
    #   Each side needs a descriptor per session: raise the limit
    ulimit -Hn 65536 2>/dev/null || true
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
    log "file limit $(ulimit -n)"
    local sessions=15000 idle=60
    [ "$quick" = 1 ] && sessions=1500 idle=5
    fresh_data connections
    start_chorusd connections "$data"
    "$bench" run --pop "$pop" --ws "$http" --api "$api" --channels all --sessions "$sessions" \
        --send-proto zmq --senders 1 --max-sends 1 --start-delay "$idle" --warmup 0 --duration 5 \
        --drain 10 --setup-timeout 300 --server-pid "$cpid" \
        --label "connections $sessions idle, then one message to all" --json "$rdir/chorus.json"
    stop_chorusd >/dev/null
}

scenario_history() {
    local rdir="$results/history"; mkdir -p "$rdir"
    local count=10000000 api_count=200000
    [ "$quick" = 1 ] && count=100000 api_count=20000
    local hdir="$cache/hist-$count"
    if [ ! -f "$hdir/pop.txt" ]; then
        #   Through the API with pipelined sends first. The rate falls as the
        #   store grows (each send's dedupe lookup reads a filter block that
        #   the block cache does not keep: BENCHMARKS.md), so 10M through
        #   the API takes hours here; the rest is written straight into the
        #   stopped server's RocksDB in persistence's layout (gen-history).
        log "history: $api_count messages through the API, then up to $count written directly, once"
        rm -rf "$hdir.tmp"; mkdir -p "$hdir.tmp"
        start_chorusd history-fill "$hdir.tmp/data" --stages broker,ingest,membership,persistence,fanout
        "$bench" setup --api "$api" --admin-token-file "$hdir.tmp/data/admin.token" \
            --out "$hdir.tmp/pop.txt" --users 2 --hist
        "$bench" fill --api "$api" --pop "$hdir.tmp/pop.txt" --channel hist --count "$api_count" \
            --window 1024 --sessions 8 --json "$hdir.tmp/fill.json" 2>&1 | tee "$hdir.tmp/fill.log"
        stop_chorusd >/dev/null
        local t0=$SECONDS
        "$bench" gen-history --db "$hdir.tmp/data/messages" --pop "$hdir.tmp/pop.txt" --channel hist \
            --count "$((count - api_count))" | tee "$hdir.tmp/gen.log"
        echo "$((SECONDS - t0))" > "$hdir.tmp/gen_seconds"
        rm -rf "$hdir"; mv "$hdir.tmp" "$hdir"
    fi
    cp "$hdir/fill.json" "$rdir/fill.json"
    cp "$hdir/gen_seconds" "$rdir/gen_seconds" 2>/dev/null || true
    du -sm "$hdir/data/messages" | awk '{ print $1 }' > "$rdir/messages_mb.txt"
    #   Start-up time on that data: exec to the first answered ping
    local api_port http_port
    api_port=$(free_port); http_port=$(free_port)
    api="tcp://127.0.0.1:$api_port"
    clog="$run/history.chorusd.log"
    "$bench" wait-ready --api "$api" --pidfile "$run/history.pid" --log "$clog" --json "$rdir/startup.json" -- \
        "$chorusd" --data "$hdir/data" --api "$api" --http "127.0.0.1:$http_port" \
        --rate 100000000 --burst 100000000
    cpid=$(cat "$run/history.pid"); pids+=("$cpid")
    "$bench" history --api "$api" --pop "$hdir/pop.txt" --channel hist --count "$(( quick == 1 ? 200 : 2000 ))" \
        --json "$rdir/chorus.json"
    stop_chorusd >/dev/null
}

scenario_catchup() {
    local rdir="$results/catchup"; mkdir -p "$rdir"
    fresh_data catchup
    start_chorusd catchup "$data"
    #   The clients are offline while 100 messages go to their channel
    "$bench" fill --api "$api" --pop "$pop" --channel fan --user 0 --count 100 --window 100 \
        --sessions 1 --json "$rdir/fill.json"
    local head since
    head=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["head"])' "$rdir/fill.json")
    since=$((head - 100))
    "$bench" run --pop "$pop" --ws "$http" --channels fan --senders 0 --catchup "$since" \
        --connect-concurrency 1000 --setup-timeout 60 --server-pid "$cpid" \
        --label "catchup 1000 clients x 100 missed" --json "$rdir/chorus.json"
    stop_chorusd >/dev/null
}

#   Where the time goes. perf has no hardware counters on this machine
#   (`perf stat -e instructions true` says "not supported"), so: perf
#   sampling on the cpu-clock software event during a normal run (real
#   time, per thread, kernel included), and callgrind (instruction counts,
#   repeatable) on a short run of each.
profile_load() {
    local kind=$1 label=$2 json=$3
    if [ "$kind" = ingest ]; then
        "$bench" run --pop "$pop" --api "$api" --proto zmq --channels 'i*' --senders 64 --window 16 \
            --warmup 2 --duration 10 --setup-timeout 300 --label "$label" --json "$json" || true
    else
        "$bench" run --pop "$pop" --ws "$http" --channels fan --senders 4 --window 16 \
            --warmup 2 --duration 10 --setup-timeout 300 --label "$label" --json "$json" || true
    fi
}

scenario_profile() {
    local rdir="$results/profile"; mkdir -p "$rdir"
    local real=$chorusd kind
    for kind in ingest fanout; do
        if command -v perf >/dev/null; then
            fresh_data "perf-$kind"
            start_chorusd "perf-$kind" "$data"
            ( sleep 4; timeout 30 perf record -e cpu-clock -F 499 -g -p "$cpid" -o "$run/perf.$kind.data" \
                -- sleep 8 ) >/dev/null 2>&1 &
            local perf_job=$!
            profile_load "$kind" "profile $kind (perf)" "$rdir/perf-$kind-run.json"
            wait "$perf_job" || true
            stop_chorusd >/dev/null
            perf report -i "$run/perf.$kind.data" --no-children --sort pid --stdio -g none 2>/dev/null \
                | grep -E '^ +[0-9]' | head -20 > "$rdir/perf-$kind-threads.txt" || true
            perf report -i "$run/perf.$kind.data" --no-children --sort pid,dso,sym --stdio -g none 2>/dev/null \
                | grep -E '^ +[0-9]' | head -60 > "$rdir/perf-$kind-symbols.txt" || true
            perf report -i "$run/perf.$kind.data" --children --sort sym --stdio -g none 2>/dev/null \
                | grep -E '^ +[0-9]' | head -80 > "$rdir/perf-$kind-inclusive.txt" || true
        fi
        if command -v valgrind >/dev/null; then
            fresh_data "callgrind-$kind"
            chorusd="$run/callgrind-chorusd.sh"
            printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s "%s" "$@"\n' \
                "$run/callgrind.$kind.out" "$real" > "$chorusd"
            chmod +x "$chorusd"
            start_chorusd "callgrind-$kind" "$data"
            profile_load "$kind" "profile $kind (callgrind)" "$rdir/callgrind-$kind-run.json"
            stop_chorusd >/dev/null
            chorusd=$real
            callgrind_annotate --inclusive=no "$run/callgrind.$kind.out" 2>/dev/null | head -70 \
                > "$rdir/callgrind-$kind-self.txt" || true
            callgrind_annotate --inclusive=yes "$run/callgrind.$kind.out" 2>/dev/null | head -90 \
                > "$rdir/callgrind-$kind-inclusive.txt" || true
        fi
    done
}

# --------------------------------------------------------------------------
#   BENCHMARKS.md: the figures section is rewritten, the rest is kept

write_report() {
    local machine
    machine=$(printf 'nproc %s; %s; %s GiB memory; disk %s' "$(nproc)" \
        "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
        "$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" \
        "$(df -h "$cache" | awk 'NR == 2 { print $1 ", " $2 " (" $4 " free)" }')")
    CHORUS_BENCH_MACHINE="$machine" CHORUS_BENCH_COMMAND="scripts/bench.sh ${*:-}" \
        $py - "$results" "$root/BENCHMARKS.md" <<'PYEOF'
import json, os, sys, time, glob
results, path = sys.argv[1], sys.argv[2]

def load(rel):
    try:
        with open(os.path.join(results, rel)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def stamp(rel):
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(os.path.join(results, rel))))
    except OSError:
        return "-"

def f(x, digits=0):
    if x is None:
        return "-"
    if isinstance(x, (int, float)):
        return ("{:,.%df}" % digits).format(x)
    return str(x)

def ms(h, key):
    return f(h.get(key), 2) if h else "-"

def ratio(a, b):
    return "%.2f×" % (a / b) if a and b else "-"

def read_batch(rel):
    try:
        sends, commits = open(os.path.join(results, rel)).read().split()
        return int(sends) / max(int(commits), 1)
    except (OSError, ValueError):
        return None

def glance():
    """Every target beside its latest figure and the limit or peer of the same run"""
    rows = []
    def row(what, target, latest, beside, met, far=""):
        if latest is None:
            return
        status = "**met**" if met else "not met" + ((": " + far) if far else "")
        rows.append("| %s | %s | %s | %s | %s |" % (what, target, latest, beside or "-", status))
    z, lim, lim1, red = (load("ingest/chorus-zmq-16.json"), load("ingest/rocksdb-16.json"),
                         load("ingest/rocksdb1-16.json"), load("ingest/redis-16.json"))
    if z:
        a = z["acked_per_s"]
        row("durable acked sends/s (ZeroMQ 64×16)", "≥ 100,000", f(a),
            lim and "limit %s msgs/s (Chorus %s of it)" % (f(lim["msgs_per_s"]), ratio(a, lim["msgs_per_s"])),
            a >= 100000, "%s of the target" % ratio(a, 100000))
        if red:
            r = red["acked_per_s"]
            row("… against Redis `appendfsync always`, -c 64 -P 16", "≥ 2×", ratio(a, r),
                "Redis %s acked/s; RocksDB alone, one put a message: %s of 2× Redis" % (
                    f(r), ratio(lim1 and lim1["msgs_per_s"], 2 * r)),
                a >= 2 * r, "beyond the store on this disk")
    c, i, l = load("fanout/chorus-closed.json"), load("fanout/irc-closed.json"), load("fanout/relay-closed.json")
    if c:
        d = c["deliveries_per_s"]
        row("WebSocket deliveries/s, fan-out closed loop", "≥ 1,000,000 and ≥ InspIRCd", f(d),
            "InspIRCd %s (Chorus %s); limit relay %s (%s)" % (
                f(i and i["deliveries_per_s"]), ratio(d, i and i["deliveries_per_s"]),
                f(l and l["deliveries_per_s"]), ratio(d, l and l["deliveries_per_s"])),
            d >= 1e6 and (not i or d >= i["deliveries_per_s"]))
    c, i, l = load("fanout/chorus-200.json"), load("fanout/irc-200.json"), load("fanout/relay-200.json")
    if c:
        a, d = c["ack_ms"]["p99"], c["deliver_ms"]["p99"]
        row("fan-out 200 msgs/s: send→ack p99", "≤ 2 ms", f(a, 2) + " ms", "", a <= 2, "%.1f× the target" % (a / 2))
        row("fan-out 200 msgs/s: send→deliver p99", "≤ 5 ms", f(d, 2) + " ms",
            "InspIRCd %s ms, limit relay %s ms" % (ms(i and i["deliver_ms"], "p99"), ms(l and l["deliver_ms"], "p99")),
            d <= 5, "%.1f× the target" % (d / 5))
    c, i = load("fanout/chorus-1000.json"), load("fanout/irc-1000.json")
    if c:
        d = c["deliver_ms"]["p99"]
        row("fan-out 1,000 msgs/s: send→deliver p99", "≤ 25 ms and < InspIRCd", f(d, 2) + " ms",
            "InspIRCd %s ms (Chorus %s)" % (ms(i and i["deliver_ms"], "p99"), ratio(d, i and i["deliver_ms"]["p99"])),
            d <= 25 and (not i or d < i["deliver_ms"]["p99"]), "%.2f× the target" % (d / 25))
    c, i, l = load("workspace/chorus.json"), load("workspace/irc.json"), load("workspace/relay.json")
    if c:
        d = c["deliver_ms"]["p99"]
        row("workspace: send→deliver p99", "≤ 5 ms", f(d, 2) + " ms",
            "InspIRCd %s ms, limit relay %s ms" % (ms(i and i["deliver_ms"], "p99"), ms(l and l["deliver_ms"], "p99")),
            d <= 5, "%.0f× the target" % (d / 5))
    r = load("connections/chorus.json")
    if r:
        kib, cpu = r.get("server_rss_kb_per_session"), (r.get("server_idle") or {}).get("cpu_pct")
        row("15,000 idle sessions: RSS per session", "≤ 16 KiB", f(kib, 1) + " KiB",
            "%s / %s sessions ready" % (f(r["sessions_ready"]), f(r["sessions"])), kib is not None and kib <= 16)
        row("15,000 idle sessions: idle server CPU", "< 2 %", f(cpu, 2) + " %", "", cpu is not None and cpu < 2)
    r, st = load("history/chorus.json"), load("history/startup.json")
    if r:
        worst = max((r.get(k + "_ms") or {}).get("p99", 0) for k in ("newest", "oldest", "middle"))
        row("history page of 50, 10 M messages: p99, worst of newest / oldest / middle", "≤ 1 ms",
            f(worst, 2) + " ms", "", worst <= 1)
    if st:
        row("start-up on 10 M messages", "≤ 2 s", f(st["ready_ms"]) + " ms", "", st["ready_ms"] <= 2000)
    r = load("catchup/chorus.json")
    if r:
        done = r["catchup_all_s"]
        row("catch-up, 1,000 clients × 100 missed", "all within 2 s, none missing", "%s s, %s / %s clients, %s messages" % (
            f(done, 3), f(r["catchup_clients"]), f(r["sessions"]), f(r["catchup_messages"])), "",
            done <= 2 and r["catchup_clients"] == r["sessions"] and r["catchup_messages"] == 100 * r["sessions"])
    head = ["### Targets at a glance (the latest run of each scenario; what bounds the ones not met: \"What bounds these figures\" and \"What is left\")",
            "", "| figure | target | Chorus | beside it, same run | status |", "|---|---|---|---|---|"]
    return head + rows if rows else []

out = []
out.append("Last command: `%s` · machine: %s · written %s. Rows come from the latest run of each scenario; each says when it was measured."
           % (os.environ.get("CHORUS_BENCH_COMMAND", "scripts/bench.sh").strip(),
              os.environ.get("CHORUS_BENCH_MACHINE", "?"), time.strftime("%Y-%m-%d %H:%M %Z")))
out.append("")
out.extend(glance())
out.append("")

# Ingest
out.append("### Ingest: 64 senders over 100 channels, closed loop, 200-byte bodies, durable acks")
out.append("")
out.append("| transport × in flight | acked sends/s | send→ack p50 / p99 / p99.9 / max ms | errors | group commit batch | limit: RocksDB synced, same batch (3 puts / 1 put per msg) | vs limit | peer: Redis XADD appendfsync always, same -c/-P | vs Redis | server CPU | load avg | measured |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, window, rel in (("ZeroMQ 64×1", 1, "ingest/chorus-zmq-1.json"),
                          ("ZeroMQ 64×16", 16, "ingest/chorus-zmq-16.json"),
                          ("WebSocket 64×16", 16, "ingest/chorus-ws-16.json")):
    r = load(rel)
    if not r:
        continue
    kind = "zmq" if "zmq" in rel else "ws"
    batch = read_batch("ingest/batch-%s-%d.txt" % (kind, window))
    lim = load("ingest/rocksdb-%d.json" % window)
    lim1 = load("ingest/rocksdb1-%d.json" % window)
    red = load("ingest/redis-%d.json" % window)
    a = r["ack_ms"]
    out.append("| %s | **%s** | %s / %s / %s / %s | %s | %s | %s / %s msgs/s | %s | %s acked/s (p50 %s, p99 %s ms) | %s | %s%% | %s | %s |" % (
        name, f(r["acked_per_s"]), ms(a, "p50"), ms(a, "p99"), ms(a, "p999"), ms(a, "max"),
        f(r["errors"]) + ((" " + r["error_kinds"]) if r.get("error_kinds") else ""),
        f(batch, 1), f(lim and lim["msgs_per_s"]), f(lim1 and lim1["msgs_per_s"]),
        ratio(r["acked_per_s"], lim and lim["msgs_per_s"]),
        f(red and red["acked_per_s"]), red and f(red["ack_ms"]["p50"], 2) or "-",
        red and f(red["ack_ms"]["p99"], 2) or "-",
        ratio(r["acked_per_s"], red and red["acked_per_s"]),
        f(r["server"]["cpu_pct"] if r.get("server") else None), f(r.get("loadavg_start"), 1), stamp(rel)))
out.append("")
out.append("The WebSocket row is set beside the limit measured at the ZeroMQ 64×16 batch. Targets: ≥ 100,000 acked sends/s and ≥ 2× Redis at the same concurrency and in-flight count.")
out.append("")

# Fan-out
out.append("### Fan-out: one channel, 1,000 online members, 4 senders")
out.append("")
out.append("| run | system | sends/s | deliveries/s | send→ack p50 / p99 ms | send→deliver p50 / p99 / p99.9 / max ms | delivered / expected | errors | server CPU | client CPU | load avg | measured |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
for label, suffix in (("closed loop, 16 in flight per sender", "closed"), ("open loop 200 msgs/s", "200"),
                      ("open loop 1,000 msgs/s", "1000")):
    for system, prefix in (("Chorus (WebSocket)", "chorus"), ("peer: InspIRCd 3 (IRC relay, no persistence)", "irc"),
                           ("limit: minimal epoll relay (`chorus-bench relay`)", "relay")):
        rel = "fanout/%s-%s.json" % (prefix, suffix)
        r = load(rel)
        if not r:
            continue
        a, d = r["ack_ms"], r["deliver_ms"]
        out.append("| %s | %s | %s | **%s** | %s / %s | %s / %s / %s / %s | %s / %s | %s | %s%% | %s%% | %s | %s |" % (
            label, system, f(r["acked_per_s"]), f(r["deliveries_per_s"]), ms(a, "p50"), ms(a, "p99"),
            ms(d, "p50"), ms(d, "p99"), ms(d, "p999"), ms(d, "max"), f(r["deliveries"]),
            f(r["deliveries_expected"]), f(r["errors"]) + ((" " + r["error_kinds"]) if r.get("error_kinds") else ""),
            f(r["server"]["cpu_pct"] if r.get("server") else None),
            f(r["client"]["cpu_pct"] if r.get("client") else None), f(r.get("loadavg_start"), 1), stamp(rel)))
c, i, l = load("fanout/chorus-closed.json"), load("fanout/irc-closed.json"), load("fanout/relay-closed.json")
if c and i:
    out.append("")
    out.append("Deliveries/s, Chorus ÷ InspIRCd (closed loop): %s; ÷ the limit: %s; ÷ the 1,000,000 target: %s." % (
        ratio(c["deliveries_per_s"], i["deliveries_per_s"]), ratio(c["deliveries_per_s"], l and l["deliveries_per_s"]),
        ratio(c["deliveries_per_s"], 1e6)))
c, i = load("fanout/chorus-1000.json"), load("fanout/irc-1000.json")
if c and i:
    out.append("Send→deliver p99 at 1,000 msgs/s, Chorus ÷ InspIRCd: %s." % ratio(c["deliver_ms"]["p99"], i["deliver_ms"]["p99"]))
out.append("")
out.append("Targets: ≥ 1,000,000 deliveries/s and ≥ InspIRCd's; 200 msgs/s: ack p99 ≤ 2 ms, deliver p99 ≤ 5 ms; 1,000 msgs/s: deliver p99 ≤ 25 ms and below InspIRCd's.")
out.append("")

# Workspace
out.append("### Workspace: 100 channels × 100 members = 10,000 sessions, 2,000 msgs/s spread (100 senders, open loop)")
out.append("")
out.append("| system | sessions ready | sends/s | deliveries/s | send→ack p50 / p99 ms | send→deliver p50 / p99 / p99.9 / max ms | delivered / expected | errors | server CPU | server RSS | load avg | measured |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
for system, rel in (("Chorus (WebSocket)", "workspace/chorus.json"), ("peer: InspIRCd 3", "workspace/irc.json"),
                    ("limit: minimal epoll relay", "workspace/relay.json")):
    r = load(rel)
    if not r:
        continue
    a, d = r["ack_ms"], r["deliver_ms"]
    out.append("| %s | %s / %s | %s | %s | %s / %s | %s / **%s** / %s / %s | %s / %s | %s | %s%% | %s MiB | %s | %s |" % (
        system, f(r["sessions_ready"]), f(r["sessions"]), f(r["acked_per_s"]), f(r["deliveries_per_s"]),
        ms(a, "p50"), ms(a, "p99"), ms(d, "p50"), ms(d, "p99"), ms(d, "p999"), ms(d, "max"),
        f(r["deliveries"]), f(r["deliveries_expected"]),
        f(r["errors"]) + ((" " + r["error_kinds"]) if r.get("error_kinds") else ""),
        f(r["server"]["cpu_pct"] if r.get("server") else None),
        f(r["server"]["rss_kb_end"] / 1024 if r.get("server") else None), f(r.get("loadavg_start"), 1), stamp(rel)))
out.append("")
out.append("Target: send→deliver p99 ≤ 5 ms.")
out.append("")

# Connections
r = load("connections/chorus.json")
out.append("### Connections: idle WebSocket sessions for a minute, then one message to all")
out.append("")
if r:
    idle = r.get("server_idle") or {}
    d = r["deliver_ms"]
    out.append("| sessions ready | connect + auth time | server RSS before → after | RSS per session | idle server CPU | one message to all: delivered / expected | send→deliver p50 / p99 / max ms | disconnects | errors | load avg | measured |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    out.append("| %s / %s | %s s | %s → %s MiB | **%s KiB** | **%s%%** | %s / %s | %s / %s / %s | %s | %s | %s | %s |" % (
        f(r["sessions_ready"]), f(r["sessions"]), f(r["setup_s"], 1),
        f(r.get("server_rss_kb_before", 0) / 1024, 1), f(r.get("server_rss_kb_ready", 0) / 1024, 1),
        f(r.get("server_rss_kb_per_session"), 1), f(idle.get("cpu_pct"), 2),
        f(r["deliveries"]), f(r["deliveries_expected"]), ms(d, "p50"), ms(d, "p99"), ms(d, "max"),
        f(r["disconnects"]), f(r["errors"]) + ((" " + r["error_kinds"]) if r.get("error_kinds") else ""),
        f(r.get("loadavg_start"), 1), stamp("connections/chorus.json")))
    out.append("")
out.append("Targets: RSS ≤ 16 KiB per session, idle CPU < 2 %.")
out.append("")

# History
r, st, fill = load("history/chorus.json"), load("history/startup.json"), load("history/fill.json")
out.append("### History: one channel of 10,000,000 messages")
out.append("")
if r:
    try:
        mb = open(os.path.join(results, "history/messages_mb.txt")).read().strip()
    except OSError:
        mb = "?"
    out.append("| page of 50 | p50 ms | p99 ms | p99.9 ms | max ms |")
    out.append("|---|---|---|---|---|")
    for key in ("newest", "oldest", "middle"):
        h = r.get(key + "_ms")
        if h:
            out.append("| %s | %s | **%s** | %s | %s |" % (key, ms(h, "p50"), ms(h, "p99"), ms(h, "p999"), ms(h, "max")))
    out.append("")
    try:
        gen = open(os.path.join(results, "history/gen_seconds")).read().strip()
    except OSError:
        gen = "?"
    out.append("Head %s; first page after start %s ms; start-up (exec → first answered ping; warm page cache) **%s ms**; messages/ on disk %s MiB. The first %s messages went through the API with pipelined sends (1,024 in flight) at %s msgs/s on average; the rest were written straight into the stopped server's RocksDB in persistence's layout (%s s), because the API rate falls as the store grows (see the profile). Measured %s." % (
        f(r.get("head")), f(r.get("first_page_ms"), 2), f(st and st["ready_ms"]), mb,
        f(fill and fill["acked"]), f(fill and fill["acked_per_s"]), gen, stamp("history/chorus.json")))
    out.append("")
out.append("Targets: page p99 ≤ 1 ms; start-up on 10M ≤ 2 s.")
out.append("")

# Catch-up
r = load("catchup/chorus.json")
out.append("### Catch-up: 1,000 clients reconnect at once, each missed 100 messages, sync")
out.append("")
if r:
    c = r["catchup_ms"]
    out.append("| clients done | messages received | all done in | per client p50 / p99 ms | has_more | errors | measured |")
    out.append("|---|---|---|---|---|---|---|")
    out.append("| %s / %s | %s | **%s s** | %s / %s | %s | %s | %s |" % (
        f(r["catchup_clients"]), f(r["sessions"]), f(r["catchup_messages"]), f(r["catchup_all_s"], 3),
        ms(c, "p50"), ms(c, "p99"), f(r["catchup_has_more"]),
        f(r["errors"]) + ((" " + r["error_kinds"]) if r.get("error_kinds") else ""), stamp("catchup/chorus.json")))
    out.append("")
out.append("Target: all within 2 s (connect, WebSocket upgrade, auth and sync included).")
out.append("")

text = "\n".join(out)
begin, end = "<!-- bench:figures:begin -->", "<!-- bench:figures:end -->"
try:
    doc = open(path).read()
except OSError:
    doc = "# Chorus benchmarks\n\n%s\n%s\n" % (begin, end)
if begin not in doc:
    doc += "\n%s\n%s\n" % (begin, end)
head, rest = doc.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + "\n" + text + "\n" + end + tail)
PYEOF
    log "BENCHMARKS.md: figures rewritten"
}

# --------------------------------------------------------------------------

all=(ingest fanout workspace connections history catchup profile)
want=("$@")
[ ${#want[@]} -eq 0 ] && want=("${all[@]}")
for s in "${want[@]}"; do
    case " ${all[*]} report " in *" $s "*) ;; *) echo "unknown scenario $s (${all[*]})" >&2; exit 2 ;; esac
done
ensure_packages
build_all
for s in "${want[@]}"; do
    [ "$s" = report ] && continue
    log "=== $s ==="
    "scenario_$s" || log "$s failed (rc $?)"
done
if [ "$quick" = 1 ] && [ "${CHORUS_BENCH_REPORT:-0}" != 1 ]; then
    log "quick run: BENCHMARKS.md left as it is (CHORUS_BENCH_REPORT=1 to rewrite it)"
else
    write_report "$@"
fi
log "results in $results, logs in $run"
