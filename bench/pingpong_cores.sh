#!/bin/sh
# Echo ping-pong, 64-byte messages, on a machine with cores to spare: the
# server alone on one core, the load (ioplex bench, several threads) on
# others, so that the generator is not what limits the server (unlike
# bench/pingpong.sh on two cores). Three figures per server and case:
#   - messages/s at saturation (closed loop, -c connections);
#   - the server's CPU time per message (user + system, /proc/PID/stat)
#     at a fixed offered rate below saturation (open loop, -R);
#   - and its CPU time per message during the saturated run (the server's
#     core busy: what a message costs when the server is the limit).
# Servers: the hand-written reference (bench/ref/epoll_echo, TCP only),
# and ioplex's epoll and uring models, from one or two ioplex binaries
# (BEFORE: an older build, to see a change; optional). Runs interleaved,
# repeated; medians with min-max.
#
#   bench/pingpong_cores.sh IOPLEX REF [BEFORE]
#   env: REPEATS (3) SECONDS_EACH (3) RATE (50000) SERVER_CORE (1)
#        LOAD_CORES (4-11) LOAD_THREADS (8) CASES ("tcp:100 tcp:1000 unix:1000")
set -eu
ioplex=${1:?usage: pingpong_cores.sh IOPLEX REF [BEFORE]}
ref=${2:?usage: pingpong_cores.sh IOPLEX REF [BEFORE]}
before=${3:-}
repeats=${REPEATS:-3}
secs=${SECONDS_EACH:-3}
rate=${RATE:-50000}
score=${SERVER_CORE:-1}
lcores=${LOAD_CORES:-4-11}
lthreads=${LOAD_THREADS:-8}
cases=${CASES:-"tcp:100 tcp:1000 unix:1000"}
out=$(mktemp)
dir=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out" "$dir"' EXIT

# start SERVER TRANSPORT: the server pinned to its core; sets pid and the
# bench target (args).
start() {
    bin=$ioplex model=${1#*-}
    case $1 in before-*) bin=$before ;; esac
    : >"$dir/err"
    if [ "$1" = ref ]; then
        taskset -c "$score" "$ref" 0 2>"$dir/err" &
    elif [ "$2" = unix ]; then
        rm -f "$dir/s"
        taskset -c "$score" "$bin" serve -q -m "$model" -S echo -U "$dir/s" 2>"$dir/err" &
    else
        taskset -c "$score" "$bin" serve -m "$model" -S echo 127.0.0.1 0 2>"$dir/err" &
    fi
    pid=$!
    i=0
    while :; do
        if [ "$2" = unix ]; then
            [ -S "$dir/s" ] && { target="-U $dir/s"; break; }
        else
            port=$(sed -n 's/.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/err" | head -1)
            [ -n "$port" ] && { target="127.0.0.1 $port"; break; }
        fi
        i=$((i + 1)); [ $i -gt 200 ] && { echo "pingpong_cores: $1 did not start" >&2; cat "$dir/err" >&2; exit 1; }
        sleep 0.05
    done
}

cpu() { awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / tck }' "/proc/$pid/stat"; }
json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

servers="ref epoll uring"
[ -n "$before" ] && servers="ref before-epoll epoll before-uring uring"
for r in $(seq 1 "$repeats"); do
    for k in $cases; do
        t=${k%%:*} c=${k#*:}
        for s in $servers; do
            [ "$s" = ref ] && [ "$t" = unix ] && continue
            start "$s" "$t"
            c0=$(cpu)
            # shellcheck disable=SC2086
            sat=$(taskset -c "$lcores" "$ioplex" bench -q --json -t "$lthreads" -c "$c" -s 64 \
                -d "$secs" --warmup 0 $target)
            c1=$(cpu)
            mps=$(echo "$sat" | json messages_per_s)
            n=$(echo "$sat" | json messages)
            sus=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { if (n > 0) printf "%.3f", (b - a) / n * 1e6; else print "nan" }')
            c0=$(cpu)
            # shellcheck disable=SC2086
            res=$(taskset -c "$lcores" "$ioplex" bench -q --json -t "$lthreads" -m rate -R "$rate" \
                -c "$c" -s 64 -d "$secs" --warmup 0 $target)
            c1=$(cpu)
            n=$(echo "$res" | json messages)
            us=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { if (n > 0) printf "%.3f", (b - a) / n * 1e6; else print "nan" }')
            echo "$s $t $c $mps $us $sus" >>"$out"
            kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
        done
    done
done

printf '%-13s %-5s %5s %24s %28s %26s\n' server trans conns "msg/s (min-max)" "CPU us/msg @ $rate/s (min-max)" "CPU us/msg saturated"
for k in $cases; do
    t=${k%%:*} c=${k#*:}
    for s in $servers; do
        awk -v s="$s" -v t="$t" -v c="$c" '
            $1 == s && $2 == t && $3 == c { m[++n] = $4; u[n] = $5; v[n] = $6 }
            function med(a, k,   i, j, x) {
                for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
                return a[int((k + 1) / 2)]
            }
            END {
                if (!n) exit
                mm = med(m, n); lo = m[1]; hi = m[n]; mu = med(u, n); ul = u[1]; uh = u[n]
                mv = med(v, n); vl = v[1]; vh = v[n]
                printf "%-13s %-5s %5d %10.0f (%.0f-%.0f) %12.2f (%.2f-%.2f) %12.2f (%.2f-%.2f)\n", s, t, c, mm, lo, hi, mu, ul, uh, mv, vl, vh
            }' "$out"
    done
done
