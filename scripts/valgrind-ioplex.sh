#!/bin/sh
# Run ioplex under valgrind memcheck: what make test-valgrind puts in
# IOPLEX_BIN, so the integration tests start every server (and client)
# through it. Set by scripts/valgrind.sh:
#   IOPLEX_VG_REAL  the real ioplex binary
#   IOPLEX_VG_LOGS  a directory for one log per process (%p)
# The logs, not the exit code, are the verdict: a server stopped by a
# test may never reach exit, so scripts/valgrind.sh reads every log.
# Forked children (fork, prefork) are followed by valgrind as a matter of
# course; --trace-children follows exec too (compare, which runs itself).
dir=$(cd "$(dirname "$0")" && pwd)
exec valgrind --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --trace-children=yes --child-silent-after-fork=no \
    --suppressions="$dir/valgrind.supp" \
    --log-file="${IOPLEX_VG_LOGS:?}/ioplex.%p.log" \
    "${IOPLEX_VG_REAL:?}" "$@"
