#!/bin/sh
# Installs dependencies, builds t2 and runs the whole test suite.
# Used verbatim by .ci/run. T2_SHARED overrides the test data location
# (default: ../shared beside the source tree).
set -eu
cd "$(dirname "$0")/.."
./tools/install-deps.sh
BUILD=${BUILD:-build}
if [ -d "$BUILD/meson-private" ]; then
    meson setup --reconfigure "$BUILD" -Dshared_dir="${T2_SHARED:-}"
else
    meson setup "$BUILD" -Dshared_dir="${T2_SHARED:-}"
fi
ninja -C "$BUILD"
meson test -C "$BUILD" --print-errorlogs --num-processes 2
