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
# the container recipe's build step (docker/build.sh) and its YAML, without Docker
BUILD=build-release docker/build.sh "$BUILD/dist" >/dev/null
yamllint -d relaxed docker/compose.yaml docker/k8s/
echo "docker recipe: build.sh installed into $BUILD/dist, YAML lint clean"
# (sh has no pipefail: the status travels through a file)
{ meson test -C "$BUILD" --print-errorlogs --num-processes 2; echo $? >"$BUILD/test-status"; } |
    tee "$BUILD/test-summary.txt"
status=$(cat "$BUILD/test-status")
# one plain closing line with the counts, for readers that do not know meson
count() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$BUILD/test-summary.txt" | tail -1; }
ok=$(count Ok)
failed=$(( $(count Fail) + $(count Timeout) + $(count "Unexpected Pass") ))
echo "tests: ${ok:-0} passed, ${failed} failed, $(count Skipped) skipped"
exit $status
