#!/bin/sh
# Installs the Debian 12 packages t2 needs to build, test and run.
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential meson ninja-build pkg-config \
    libopenblas-dev liblapacke-dev libjansson-dev libmicrohttpd-dev libuv1-dev \
    libcmocka-dev libpcre2-dev \
    ca-certificates curl python3 yamllint >/dev/null
# node + npm for tests/openai (the official openai npm package against t2);
# only when node is missing: CI machines already have NodeSource's node 20
if ! command -v node >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
echo "t2: build dependencies installed"
