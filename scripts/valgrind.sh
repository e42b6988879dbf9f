#!/bin/sh
# make test-valgrind: valgrind memcheck over a representative subset, on
# a normal (not sanitized) build:
#  - the unit tests, each run under valgrind;
#  - integration tests (model_exchange under iterative, thread, epoll and
#    fork; model_tls under epoll, one loop) whose every ioplex process (servers, the fork model's children)
#    runs under valgrind: IOPLEX_BIN names
#    scripts/valgrind-ioplex.sh, which the harness starts instead of ioplex.
# Zero errors and zero definite or indirect leaks, or the run fails. The
# verdict is read from every process's log (one per pid): a server a test
# ends with SIGKILL never reaches its leak check, so those are counted as
# "not checked" and shown, not passed silently.
#
#   sh scripts/valgrind.sh BUILD_DIR [CTEST_REGEX]
#
# The default set keeps the run near two minutes. Also clean when run by
# hand (CTEST_REGEX '^model_exchange\.(select|poll|prefork|pool|aio)$',
# about 1.5 min more). Left out:
#  - the uring model: valgrind does not see the kernel fill the provided
#    buffers, so every byte received reads as uninitialised (hundreds of
#    false reports), and the test overruns its 120 s bound; and a worker
#    waiting in io_uring_enter() can starve the other threads of
#    valgrind's one lock (test_post's ticks/uring hung so, though it passes
#    natively): the unit tests leave uring out under IOPLEX_VALGRIND;
#  - test_clients (the connect client): it bounds how long a client takes
#    (1.5 s for a datagram answer), which valgrind's start-up nearly uses.
set -eu

build=${1:?usage: valgrind.sh BUILD_DIR [CTEST_REGEX]}
tests=${2:-'^model_(exchange\.(iterative|thread|epoll|fork)|tls\.epoll)$'}
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
logs="$build/valgrind-logs"
rm -rf "$logs"
mkdir -p "$logs"

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind: not installed (make setup installs it)" >&2
    exit 1
fi
VG="valgrind --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
    --suppressions=$here/valgrind.supp"

status=0
start=$(date +%s)
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    # Bounded: a unit test that hangs under valgrind fails instead.
    # IOPLEX_VALGRIND: tests leave out what valgrind cannot follow (uring).
    # shellcheck disable=SC2086
    if ! IOPLEX_VALGRIND=1 timeout 300 $VG --log-file="$logs/unit.$name.%p.log" "$t" \
        >"$logs/unit.$name.out" 2>&1; then
        echo "valgrind: unit test $name failed (see $logs/unit.$name.*)" >&2
        status=1
    fi
done
echo "valgrind: unit tests done in $(($(date +%s) - start)) s"

start=$(date +%s)
if ! IOPLEX_BIN="$here/valgrind-ioplex.sh" IOPLEX_VG_REAL="$build/ioplex" \
    IOPLEX_VG_LOGS="$logs" ctest --test-dir "$build" --output-on-failure -j 2 \
    -R "$tests" >"$logs/ctest.out" 2>&1; then
    tail -n 40 "$logs/ctest.out" >&2
    echo "valgrind: integration tests failed under valgrind (see $logs/ctest.out)" >&2
    status=1
fi
grep -E 'tests passed|tests failed' "$logs/ctest.out" || true
echo "valgrind: integration tests done in $(($(date +%s) - start)) s"

# The verdict: every process's "ERROR SUMMARY" (leaks counted as errors
# by --errors-for-leak-kinds), and the processes that never got there.
checked=0 unchecked=0 bad=0
for f in "$logs"/*.log; do
    [ -e "$f" ] || continue
    n=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -n 1)
    if [ -z "$n" ]; then
        unchecked=$((unchecked + 1))
    elif [ "$n" -eq 0 ]; then
        checked=$((checked + 1))
    else
        checked=$((checked + 1))
        bad=$((bad + 1))
        echo "valgrind: $n errors in $f:" >&2
        grep -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|[0-9,]+ bytes in)' "$f" | head -n 5 >&2
    fi
done
leaks=$(cat "$logs"/*.log 2>/dev/null | grep -Ec 'are (definitely|indirectly) lost' || true)
echo "valgrind: $checked processes checked to their exit, $bad with errors," \
     "$leaks definite/indirect leak records; $unchecked ended before their leak check (killed)"
if [ "$bad" -ne 0 ] || [ "$status" -ne 0 ]; then
    echo "valgrind: FAILED" >&2
    exit 1
fi
echo "valgrind: clean"
