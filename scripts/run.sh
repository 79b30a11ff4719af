#!/usr/bin/env bash
#   Starts Chorus on the embedded default: one process, data under ./data,
#   integrator API on tcp://127.0.0.1:5555, web client on
#   http://127.0.0.1:8080, and a demo workspace (see README) on first start.
#   Extra arguments go to chorusd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
exec build/chorusd --data ./data --seed-demo "$@"
