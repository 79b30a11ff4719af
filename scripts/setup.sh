#!/usr/bin/env bash
#   Installs every Debian package Chorus needs to build, test and run.
#   Idempotent and non-interactive: installs only what is missing.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libzmq3-dev libczmq-dev libmsgpack-dev librocksdb-dev
    libwebsockets-dev libcmocka-dev libsodium-dev
    clang libclang-rt-14-dev
    python3 python3-zmq python3-msgpack python3-websockets
    chromium strace curl fiu-utils libfiu-dev
)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "setup: all packages present"
fi
