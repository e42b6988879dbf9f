#!/bin/sh
# Echo ping-pong, 64-byte messages: the reference epoll server (bench/ref)
# against ioplex's epoll and uring models. The server is pinned to core 0
# and the load (ioplex bench) to core 1. Two figures per server:
#   - messages/s at saturation (closed loop, -c connections);
#   - server CPU time per message (user + system from /proc/PID/stat) at a
#     fixed offered rate that does not saturate it (open loop, -R), which
#     stays meaningful when the load generator, not the server, is the
#     limit on a two-core machine.
# Runs are interleaved across servers and repeated; medians and min-max.
#   bench/pingpong.sh [BUILD_DIR] [REPEATS] [SECONDS] [RATE]
set -eu
build=${1:-build-bench}
repeats=${2:-5}
secs=${3:-5}
rate=${4:-20000}
ioplex=$build/ioplex
ref=$build/bench/epoll_echo
for f in "$ioplex" "$ref"; do
    [ -x "$f" ] || { echo "pingpong.sh: $f missing (make bench)" >&2; exit 1; }
done
out=$(mktemp)
dir=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out" "$dir"' EXIT

# start NAME: run the server pinned to core 0; sets pid and port.
start() {
    case $1 in
        ref) taskset -c 0 "$ref" 0 2>"$dir/err" & ;;
        *) taskset -c 0 "$ioplex" serve -m "$1" -S echo 127.0.0.1 0 2>"$dir/err" & ;;
    esac
    pid=$!
    i=0
    until port=$(sed -n 's/.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/err" | head -1) && [ -n "$port" ]; do
        i=$((i + 1)); [ $i -gt 100 ] && { echo "pingpong.sh: $1 did not start" >&2; cat "$dir/err" >&2; exit 1; }
        sleep 0.05
    done
}

# CPU seconds (user + system) of the server so far.
cpu() { awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / tck }' "/proc/$pid/stat"; }

json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

servers=${SERVERS:-ref epoll uring}
for r in $(seq 1 "$repeats"); do
    for c in 100 1000; do
        for s in $servers; do
            start "$s"
            # Saturation: closed loop.
            mps=$(taskset -c 1 "$ioplex" bench -q --json -c "$c" -s 64 -d "$secs" --warmup 1 127.0.0.1 "$port" | json messages_per_s)
            # CPU per message at a fixed rate.
            c0=$(cpu)
            res=$(taskset -c 1 "$ioplex" bench -q --json -m rate -R "$rate" -c "$c" -s 64 -d "$secs" --warmup 0 127.0.0.1 "$port")
            c1=$(cpu)
            n=$(echo "$res" | json messages)
            us=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { if (n > 0) printf "%.3f", (b - a) / n * 1e6; else print "nan" }')
            echo "$s $c $mps $us" >>"$out"
            kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
        done
    done
done

printf '%-7s %5s %22s %26s\n' server conns "msg/s (min-max)" "CPU us/msg @ $rate/s (min-max)"
for s in $servers; do
    for c in 100 1000; do
        awk -v s="$s" -v c="$c" '
            $1 == s && $2 == c { m[++n] = $3; u[n] = $4 }
            function med(a, k,   i, j, t) {
                for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                return a[int((k + 1) / 2)]
            }
            END {
                if (!n) exit
                mm = med(m, n); lo = m[1]; hi = m[n]; mu = med(u, n); ul = u[1]; uh = u[n]
                printf "%-7s %5d %10.0f (%.0f-%.0f) %12.2f (%.2f-%.2f)\n", s, c, mm, lo, hi, mu, ul, uh
            }' "$out"
    done
done
