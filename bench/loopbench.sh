#!/bin/sh
# The event-loop micro-benchmark (libevent's test/bench.c method) for every
# ioplex backend beside libevent and libev, at several N. Runs are
# interleaved across loops and repeated; each run prints the median of 25
# iterations, and this script reports the median of those medians with
# the min-max.
#   bench/loopbench.sh [BUILD_DIR] [REPEATS] [N...]
set -eu
dir=${1:-build-bench}/bench
repeats=${2:-5}
shift 2 2>/dev/null || shift $#
sizes=${*:-100 1000 5000 9900}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for n in $sizes; do
    for r in $(seq 1 "$repeats"); do
        for lib in ioplex libev libevent; do
            [ -x "$dir/loopbench_$lib" ] || continue
            for b in epoll poll select; do
                # select watches descriptors below FD_SETSIZE (1024) only
                [ "$b" = select ] && [ "$n" -gt 500 ] && continue
                # poll at N = 9,900 takes minutes per run: 5,000 shows the trend
                [ "$b" = poll ] && [ "$n" -gt 5000 ] && continue
                # poll and select cost O(N) per iteration, O(N^2) per run:
                # fewer runs keep large N within minutes
                runs=25
                [ "$b" != epoll ] && [ "$n" -gt 1000 ] && runs=5
                "$dir/loopbench_$lib" -n "$n" -b "$b" -r "$runs" >>"$out" 2>/dev/null || true
            done
        done
    done
done

printf '%-9s %-7s %7s %14s %22s\n' library backend N "median us/run" "min-max of medians"
sort -k3,3n -k2,2 -k1,1 "$out" | awk '
    { key = $1 " " $2 " " $3; v[key] = v[key] " " $6; order[key] = NR }
    END {
        for (k in v) {
            n = split(v[k], a, " ");
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            split(k, f, " ");
            printf "%-9s %-7s %7d %14.1f %10.1f-%-10.1f\n", f[1], f[2], f[3], a[int((n + 1) / 2)], a[1], a[n]
        }
    }' | sort -k3,3n -k2,2 -k1,1
