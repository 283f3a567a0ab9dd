#!/bin/sh
# Installs dependencies, builds t2 and runs the whole test suite.
# Used verbatim by .ci/run. T2_SHARED overrides the test data location
# (default: ../shared beside the source tree).
set -eu
cd "$(dirname "$0")/.."
./tools/install-deps.sh
# the openai npm package for tests/openai (integration_openai is skipped without it)
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    npm ci --prefix tests/openai --no-audit --no-fund ||
        echo "t2: npm ci --prefix tests/openai failed: integration_openai will be skipped" >&2
fi
BUILD=${BUILD:-build}
if [ -d "$BUILD/meson-private" ]; then
    meson setup --reconfigure "$BUILD" -Dshared_dir="${T2_SHARED:-}"
else
    meson setup "$BUILD" -Dshared_dir="${T2_SHARED:-}"
fi
ninja -C "$BUILD"
meson test -C "$BUILD" --print-errorlogs --num-processes 2
