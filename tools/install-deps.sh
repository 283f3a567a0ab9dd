#!/bin/sh
# Installs the Debian 12 packages t2 needs to build, test and run.
#   tools/install-deps.sh          everything tools/test.sh needs (also valgrind,
#                                  clang + its libFuzzer runtime, nginx, node)
#   tools/install-deps.sh build    only what building t2 needs (the Dockerfile)
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential meson ninja-build pkg-config \
    libopenblas-dev liblapacke-dev libjansson-dev libmicrohttpd-dev libuv1-dev \
    libcmocka-dev libpcre2-dev ca-certificates >/dev/null
if [ "${1:-}" = build ]; then
    echo "t2: build dependencies installed"
    exit 0
fi
$SUDO apt-get install -y -qq --no-install-recommends \
    curl python3 yamllint valgrind clang libclang-rt-14-dev >/dev/null
# nginx is the load balancer of the replica test (tests/integration/test_balancer.py),
# which starts its own instance: keep the package's service from starting
# (policy-rc.d 101 = "not allowed"), it would take port 80.
if ! command -v nginx >/dev/null 2>&1 && [ ! -e /usr/sbin/nginx ]; then
    if [ -e /usr/sbin/policy-rc.d ]; then
        $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
    else
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null || rc=$?
        $SUDO rm -f /usr/sbin/policy-rc.d
        [ "${rc:-0}" -eq 0 ] || exit "$rc"
    fi
fi
# node + npm for tests/openai (the official openai npm package against t2);
# only when node is missing: CI machines already have NodeSource's node 20
if ! command -v node >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
echo "t2: build and test dependencies installed"
