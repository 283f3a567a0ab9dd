#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan+UBSan), makes their
# seed corpora from the shared test data and runs each target for a fixed
# time. Prints one line per target (executions, corpus, result) and exits
# non-zero when any target crashed, leaked, timed out or ran out of memory;
# the input that did it is kept under BUILD/fuzz/artifacts/<target>/.
#
#   tools/fuzz.sh [-b BUILD_DIR] [-j 1|2] [-t TARGET]... [SECONDS]
#
#   SECONDS   per target (default 60)
#   -b DIR    build directory (default build-fuzz; configured if missing)
#   -j N      targets run at once (default 1; 2 on a 2-core machine)
#   -t NAME   run only this target (repeatable; default all)
#   -r MB     RSS limit per target (default 2048)
#
# The corpus each target grows is kept in BUILD/fuzz/corpus/<target> and
# reused by the next run; logs are in BUILD/fuzz/logs/<target>.log.
set -eu

cd "$(dirname "$0")/.."
build=build-fuzz
jobs=1
rss=2048
targets=""
while getopts b:j:t:r:h opt; do
    case $opt in
    b) build=$OPTARG ;;
    j) jobs=$OPTARG ;;
    t) targets="$targets $OPTARG" ;;
    r) rss=$OPTARG ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
seconds=${1:-60}
case $jobs in 1 | 2) ;; *) echo "fuzz.sh: -j must be 1 or 2" >&2; exit 2 ;; esac
shared=${T2_SHARED:-$(pwd)/../shared}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Dtests=false >"$build.setup.log" 2>&1 ||
        { cat "$build.setup.log" >&2; exit 1; }
    rm -f "$build.setup.log"
fi
all=$(sed -n "s/^ *'\(fuzz_[a-z0-9_]*\)',\$/\1/p" tests/fuzz/meson.build)
[ -n "$targets" ] || targets=$all
ninja -C "$build" $(for t in $targets; do printf 'tests/fuzz/%s ' "$t"; done) >/dev/null ||
    { echo "fuzz.sh: build failed (ninja -C $build)" >&2; exit 1; }

out=$build/fuzz
python3 tests/fuzz/make_seeds.py "$out/seeds" "$shared"
mkdir -p "$out/logs"

# UBSan findings must stop the run like ASan's (the build does not recover).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export T2_SHARED="$shared"

run_one() {
    t=$1
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t" "$out/seeds/$t"
    rm -f "$out/logs/$t.rc"
    dict=""
    case $t in fuzz_req_* | fuzz_profile | fuzz_tok_json) dict="-dict=tests/fuzz/json.dict" ;; esac
    set +e
    "$build/tests/fuzz/$t" -max_total_time="$seconds" -rss_limit_mb="$rss" -timeout=30 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" $dict \
        "$out/corpus/$t" "$out/seeds/$t" >"$out/logs/$t.log" 2>&1
    echo $? >"$out/logs/$t.rc"
    set -e
}

# A simple queue: at most $jobs targets at once.
running=0
for t in $targets; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    echo "fuzzing $t for ${seconds}s" >&2
    run_one "$t" &
    running=$((running + 1))
done
wait

failed=0
printf '%-22s %12s %9s %7s  %s\n' target executions exec/s corpus result
for t in $targets; do
    log=$out/logs/$t.log
    rc=$(cat "$out/logs/$t.rc" 2>/dev/null || echo "?")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corpus=$(find "$out/corpus/$t" -type f | wc -l)
    if [ "$rc" = 0 ]; then
        result=ok
    else
        failed=1
        kind=$(grep -o -m1 'ERROR: [A-Za-z]*: [a-z-]*\|runtime error\|fuzz check failed\|ERROR: libFuzzer: [a-z-]*' "$log" || true)
        art=$(sed -n 's/^artifact_prefix=.*; Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        result="FAILED (rc $rc${kind:+, $kind}) ${art:-see $log}"
    fi
    printf '%-22s %12s %9s %7s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done
exit $failed
