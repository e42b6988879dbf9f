#!/bin/sh
# Build the libFuzzer targets (clang, ASan + UBSan), replay the kept
# crashes (fuzz/regressions/<target>/) and the seed corpus
# (fuzz/corpus/<target>/), then fuzz every target for SECONDS, JOBS at a
# time. Fails on any crash, leak, sanitizer report, timeout or broken
# property. Prints each target's executions (libFuzzer's final stats).
#
#   sh fuzz/run.sh BUILD_DIR SECONDS [JOBS]
#
# What a run finds is kept in BUILD_DIR/work/<target>/ (the growing
# corpus, reused by the next run) and, for a crash, BUILD_DIR/artifacts/
# <target>/crash-*: fix it, then copy the input to fuzz/regressions/<target>/.
set -eu

build=${1:?usage: run.sh BUILD_DIR SECONDS [JOBS]}
seconds=${2:?usage: run.sh BUILD_DIR SECONDS [JOBS]}
jobs=${3:-2}
src=$(cd "$(dirname "$0")" && pwd)
TARGETS="fuzz_framing fuzz_dispatch fuzz_addr fuzz_cli_values fuzz_bench_pattern
fuzz_tls_input fuzz_proxy_header fuzz_hlog"

cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz: $cc not found (make setup installs clang and libclang-rt-14-dev)" >&2
    exit 1
fi
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DIOPLEX_FUZZ=ON >/dev/null
cmake --build "$build" -j "$jobs" >/dev/null

# The sanitizers stop at the first report; leaks are errors.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
FLAGS="-max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1"

status=0
for t in $TARGETS; do
    mkdir -p "$build/work/$t" "$build/artifacts/$t"
    reg=$(find "$src/regressions/$t" -type f 2>/dev/null | sort)
    # shellcheck disable=SC2086
    if [ -n "$reg" ] && ! "$build/$t" $reg >"$build/artifacts/$t/replay.log" 2>&1; then
        echo "fuzz: $t fails a kept regression input (see $build/artifacts/$t/replay.log)" >&2
        status=1
    fi
    if ! "$build/$t" -runs=0 "$src/corpus/$t" >>"$build/artifacts/$t/replay.log" 2>&1; then
        echo "fuzz: $t fails on its seed corpus (see $build/artifacts/$t/replay.log)" >&2
        status=1
    fi
    n=$(printf '%s\n' $reg | grep -c . || true)
    echo "fuzz: $t: $n regression inputs and $(ls "$src/corpus/$t" | wc -l) seeds replayed"
done
[ "$status" -eq 0 ] || exit 1

# One target: fuzz from the work corpus (new inputs go there) and the
# committed seeds (read only); its log in artifacts/<target>/fuzz.log.
fuzz_one() {
    t=$1
    log="$build/artifacts/$t/fuzz.log"
    # shellcheck disable=SC2086
    if "$build/$t" $FLAGS -max_total_time="$seconds" \
        -artifact_prefix="$build/artifacts/$t/" \
        "$build/work/$t" "$src/corpus/$t" >"$log" 2>&1; then
        rc=0
    else
        rc=$?
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    if [ "$rc" -eq 0 ]; then
        echo "fuzz: $t: ${execs:-?} executions in ${seconds} s, coverage ${cov:-?} edges, no crash"
    else
        echo "fuzz: $t: FAILED (exit $rc) after ${execs:-?} executions; log $log" >&2
        grep -E 'ERROR|runtime error|property broken|SUMMARY|Test unit written' "$log" | head -n 8 >&2
    fi
    return "$rc"
}

# JOBS targets at a time; every one runs even if another failed.
pids="" running=0 failed=0
for t in $TARGETS; do
    fuzz_one "$t" &
    pids="$pids $!"
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        for p in $pids; do
            wait "$p" || failed=1
        done
        pids="" running=0
    fi
done
for p in $pids; do
    wait "$p" || failed=1
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED" >&2
    exit 1
fi
echo "fuzz: all targets clean"
