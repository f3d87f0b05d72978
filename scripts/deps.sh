#!/usr/bin/env bash
# deps.sh: install the Debian 12 packages flowscore needs, skipping those already present.
#   scripts/deps.sh [build|test|bench]   (default: test)
# build: compiler, CMake and the libraries; test: + what the tests use (clang for libFuzzer,
# python3, systemd-analyze, curl, wrk for the soak); bench: + the PyTorch peer.
set -euo pipefail
what=${1:-test}
pkgs=(build-essential cmake pkg-config libopenblas-dev zlib1g-dev libcjson-dev libsleef-dev
      libuv1-dev libmicrohttpd-dev libsystemd-dev libcsv-dev libcmocka-dev)
if [ "$what" = test ] || [ "$what" = bench ]; then
    pkgs+=(clang libclang-rt-14-dev python3 systemd curl openssl procps wrk)
fi
if [ "$what" = bench ]; then
    pkgs+=(python3-torch python3-sklearn)
fi
missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
