#!/bin/sh
# Runs client.test.mjs (the official `openai` npm package against t2) with
# node's built-in test runner. meson registers it as integration_openai.
#   usage: tests/openai/run.sh PATH/TO/t2     (T2_SHARED: the shared data dir)
# Exit 77 (meson: SKIP) when node or the package is not installed; install
# it with `npm ci --prefix tests/openai` (tools/test.sh does).
set -u
DIR=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 PATH/TO/t2" >&2; exit 2; }
[ -x "$1" ] || { echo "FAIL: no t2 binary at $1"; exit 1; }
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed"
    exit 77
fi
if [ ! -f "$DIR/node_modules/openai/package.json" ]; then
    echo "SKIP: $DIR/node_modules/openai is missing (run: npm ci --prefix tests/openai)"
    exit 77
fi
echo "node $(node --version), openai $(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1])).version' "$DIR/node_modules/openai/package.json")"
T2_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export T2_BIN
exec node --test --test-reporter=spec "$DIR/client.test.mjs"
