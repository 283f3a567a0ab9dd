#!/bin/sh
# Builds t2 and installs it into a prefix: the Dockerfile's build stage runs
# exactly this, and so can anyone without Docker (CI included).
#   docker/build.sh [PREFIX]        (default PREFIX: ./dist)
# Needs the -dev packages of tools/install-deps.sh (INSTALL_DEPS=1 runs it first).
set -eu
cd "$(dirname "$0")/.."
PREFIX=$(realpath -m "${1:-dist}")
BUILD=${BUILD:-build-release}
if [ "${INSTALL_DEPS:-0}" = 1 ]; then
    ./tools/install-deps.sh
fi
if [ -d "$BUILD/meson-private" ]; then
    meson setup --reconfigure "$BUILD" --prefix "$PREFIX" --buildtype release -Dtests=false
else
    meson setup "$BUILD" --prefix "$PREFIX" --buildtype release -Dtests=false
fi
ninja -C "$BUILD"
meson install -C "$BUILD" --quiet
"$PREFIX/bin/t2" version
echo "t2 installed into $PREFIX"
