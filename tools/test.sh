#!/bin/sh
# Installs dependencies, builds t2 and runs the whole test suite, in stages:
#   release   release build (build/): unit + integration tests
#   asan      ASan+UBSan build (build-asan/): the whole suite again
#   valgrind  memcheck over the unit tests and one server integration run
#   fuzz      every libFuzzer target for T2_FUZZ_SECONDS (default 15) s
#   docker    the container recipe's build step (docker/build.sh) + YAML lint
# Used verbatim by .ci/run. T2_SHARED overrides the test data location
# (default: ../shared beside the source tree); T2_STAGES picks stages
# (default: all five, in that order). Ends with one plain line of counts.
set -eu
cd "$(dirname "$0")/.."
run_t0=$(date +%s) stage_t0=$(date +%s)
./tools/install-deps.sh
# the openai npm package for tests/openai (integration_openai is skipped without it)
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    npm ci --prefix tests/openai --no-audit --no-fund ||
        echo "t2: npm ci --prefix tests/openai failed: integration_openai will be skipped" >&2
fi
BUILD=${BUILD:-build}
SHARED=${T2_SHARED:-$(pwd)/../shared}
STAGES=${T2_STAGES:-release asan valgrind fuzz docker}
LOG=$BUILD-stages
mkdir -p "$LOG"
: >"$LOG/summary"

# seconds since the last stage result (or the start, apt included): each
# stage's time, build included, for the closing lines
# (lap sets lap_s; no subshell, so that stage_t0 moves on)
lap() {
    now=$(date +%s)
    lap_s=$((now - stage_t0))
    stage_t0=$now
}

# setup DIR [meson options]: configure once, reconfigure after
setup() {
    dir=$1
    shift
    if [ -d "$dir/meson-private" ]; then
        meson setup --reconfigure "$dir" -Dshared_dir="${T2_SHARED:-}" -Dtests=true "$@" >/dev/null
    else
        meson setup "$dir" -Dshared_dir="${T2_SHARED:-}" "$@" >/dev/null
    fi
}

# meson_stage NAME DIR [meson test args]: runs meson test, keeps its
# counts for the closing line (sh has no pipefail: the status goes
# through a file)
meson_stage() {
    name=$1 dir=$2
    shift 2
    echo "== $name: meson test -C $dir $*"
    {
        st=0
        meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || st=$?
        echo $st >"$LOG/$name.status"
    } |
        tee "$LOG/$name.txt"
    count() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$LOG/$name.txt" | tail -1; }
    fails=$(( $(count Fail) + $(count Timeout) + $(count "Unexpected Pass") ))
    lap
    echo "$name $(cat "$LOG/$name.status") $(count Ok) $fails $(count Skipped) $lap_s" >>"$LOG/summary"
}

# plain_stage NAME COMMAND...: one check that passes or fails as a whole
plain_stage() {
    name=$1
    shift
    echo "== $name: $*"
    if "$@"; then st=0; else st=$?; fi
    lap
    echo "$name $st $([ $st -eq 0 ] && echo 1 || echo 0) $([ $st -eq 0 ] && echo 0 || echo 1) 0 $lap_s" \
        >>"$LOG/summary"
}

# the container recipe's build step on the release build's directory (the
# same compiler flags: nothing recompiles); the stage runs after the others,
# as it turns the tests off there
docker_recipe() {
    BUILD=$BUILD docker/build.sh "$BUILD/dist" >/dev/null &&
        yamllint -d relaxed docker/compose.yaml docker/k8s/ &&
        echo "docker recipe: build.sh installed into $BUILD/dist, YAML lint clean"
}

# The seedling's SVD takes minutes under valgrind: the valgrind stage's unit
# tests (quick mode, tests/test_util.h) and its server run share one SVD
# cache, filled natively here; prints its absolute path.
fill_svd_cache() {
    cache=$BUILD/valgrind-svd
    case $cache in /*) ;; *) cache=$(pwd)/$cache ;; esac
    rm -rf "$cache"
    "$BUILD/server/t2" generate --model "$SHARED/models/seedling" --experts "$SHARED/models/seedling/experts" \
        --expert math --svd-cache "$cache" --max-tokens 1 --prompt hi >/dev/null && echo "$cache"
}

# One server integration run under valgrind: the auth test (two servers,
# every endpoint kind with and without keys, uploads, generation) whose
# clean SIGTERM exit valgrind turns into 99 on any error or definite leak.
# OpenBLAS on its Sandy Bridge kernels, as in the unit tests' valgrind setup
# (tests/meson.build): memcheck runs its Haswell sgemm ~4x slower.
valgrind_server() {
    OPENBLAS_CORETYPE=Sandybridge T2_TEST_ARGS="--svd-cache $1" \
        T2_TEST_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite" \
        T2_SHARED="$SHARED" python3 tests/integration/test_auth.py "$BUILD/server/t2"
}

for stage in $STAGES; do
    case $stage in
    release)
        setup "$BUILD"
        ninja -C "$BUILD"
        meson_stage release "$BUILD"
        ;;
    docker)
        plain_stage docker docker_recipe
        ;;
    asan)
        setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
        ninja -C build-asan
        # UBSan stops at its first finding (gcc's default would only print);
        # the load test runs 15 s (its RSS bound is for the release build:
        # ASan's quarantine holds freed memory on purpose); test_adapt
        # evaluates 20 items per set (its accuracy tables run in full above)
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
            T2_TEST_ADAPT_ITEMS=20 T2_LOAD_SECONDS=15 T2_LOAD_RSS_MB=1024 \
            meson_stage asan build-asan
        ;;
    valgrind)
        [ -f "$BUILD/build.ninja" ] || { setup "$BUILD" && ninja -C "$BUILD"; }
        svd_cache=$(fill_svd_cache)
        T2_TEST_SVD_CACHE=$svd_cache meson_stage valgrind "$BUILD" --setup valgrind --suite unit --no-suite slow
        plain_stage valgrind-server valgrind_server "$svd_cache"
        ;;
    fuzz)
        plain_stage fuzz ./tools/fuzz.sh -j 2 "${T2_FUZZ_SECONDS:-15}"
        ;;
    *)
        echo "tools/test.sh: unknown stage '$stage'" >&2
        exit 2
        ;;
    esac
done

# closing lines: per stage, then one plain total for readers that do not know meson
status=0 passed=0 failed=0 skipped=0
while read -r name st ok fail skip secs; do
    echo "stage $name: $([ "$st" -eq 0 ] && echo ok || echo FAILED) (${ok:-0} passed, ${fail:-0} failed, ${skip:-0} skipped) in ${secs:-?} s"
    [ "$st" -eq 0 ] || status=1
    passed=$((passed + ${ok:-0})) failed=$((failed + ${fail:-0})) skipped=$((skipped + ${skip:-0}))
done <"$LOG/summary"
echo "time: $(($(date +%s) - run_t0)) s in all"
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
