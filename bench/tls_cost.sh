#!/bin/sh
# What TLS costs, against what users run instead: HAProxy terminating TLS
# (mode tcp, ssl crt) in front of ioplex's plain echo. Measured in one run,
# interleaved, repeated; medians with min-max:
#   - CPU per message (user + system of the server processes, summed:
#     HAProxy + its backend) for 64-byte ping-pong at a fixed offered
#     rate below saturation (open loop, -R), C connections;
#   - CPU per full handshake: bench -m connect --tls, a new connection
#     and a full handshake per message, closed loop;
#   - ioplex epoll and uring with TLS side by side.
# Every server is pinned to its own core, HAProxy's backend to another;
# the load runs on the rest. One HAProxy thread, as the ioplex loop is one.
#
#   bench/tls_cost.sh IOPLEX [HAPROXY]
#   env: REPEATS (3) SECONDS_EACH (3) RATE (20000) CONNS (100)
#        SERVER_CORE (1) BACKEND_CORE (2) LOAD_CORES (4-11) LOAD_THREADS (8)
#        CERT_DIR (cert.pem, key.pem: made here with openssl if not given)
# HAPROXY may be a command line (a carried binary under its own loader:
# "lib/ld-linux-x86-64.so.2 --library-path lib ./haproxy").
set -eu
ioplex=${1:?usage: tls_cost.sh IOPLEX [HAPROXY]}
haproxy=${2:-haproxy}
repeats=${REPEATS:-3}
secs=${SECONDS_EACH:-3}
rate=${RATE:-20000}
conns=${CONNS:-100}
score=${SERVER_CORE:-1}
bcore=${BACKEND_CORE:-2}
lcores=${LOAD_CORES:-4-11}
lthreads=${LOAD_THREADS:-8}
dir=$(mktemp -d)
out=$dir/results
pids=""
trap 'for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$dir"' EXIT

if [ -n "${CERT_DIR:-}" ]; then
    cp "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem" "$dir/"
else
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" \
        -out "$dir/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null
fi
cat "$dir/cert.pem" "$dir/key.pem" >"$dir/both.pem"

# wait_port FILE: the port an ioplex server printed on its stderr.
wait_port() {
    i=0
    while :; do
        p=$(sed -n 's/.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$1" | head -1)
        [ -n "$p" ] && { echo "$p"; return; }
        i=$((i + 1)); [ $i -gt 200 ] && { echo "tls_cost: a server did not start" >&2; cat "$1" >&2; exit 1; }
        sleep 0.05
    done
}

# start KIND SERVICE: sets port and pids (the processes whose CPU is counted).
start() {
    case $1 in
    epoll|uring)
        taskset -c "$score" "$ioplex" serve -m "$1" -S "$2" --tls-cert "$dir/cert.pem" \
            --tls-key "$dir/key.pem" 127.0.0.1 0 2>"$dir/err" &
        pids=$!
        port=$(wait_port "$dir/err")
        ;;
    haproxy)
        taskset -c "$bcore" "$ioplex" serve -m epoll -S "$2" 127.0.0.1 0 2>"$dir/err" &
        pids=$!
        back=$(wait_port "$dir/err")
        port=$((20000 + $$ % 20000))
        cat >"$dir/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls
    bind 127.0.0.1:$port ssl crt $dir/both.pem
    default_backend echo
backend echo
    server s1 127.0.0.1:$back
CFG
        # shellcheck disable=SC2086
        taskset -c "$score" $haproxy -db -f "$dir/haproxy.cfg" 2>"$dir/haproxy.err" &
        pids="$pids $!"
        i=0
        hex=$(printf '%04X' "$port")
        until awk -v h=":$hex" '$2 ~ h"$" && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp; do
            i=$((i + 1)); [ $i -gt 200 ] && { echo "tls_cost: haproxy did not start" >&2; cat "$dir/haproxy.err" >&2; exit 1; }
            sleep 0.05
        done
        ;;
    esac
}

stop() { for p in $pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; pids=""; }
cpu() { for p in $pids; do awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / tck }' "/proc/$p/stat"; done | awk '{ s += $1 } END { print s }'; }
json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" | head -1; }
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n * 1e6; else print "nan" }'; }

for r in $(seq 1 "$repeats"); do
    for s in haproxy epoll uring; do
        start "$s" echo
        c0=$(cpu)
        n=$(taskset -c "$lcores" "$ioplex" bench -q --json --tls -t "$lthreads" -m rate -R "$rate" \
            -c "$conns" -s 64 -d "$secs" --warmup 0 127.0.0.1 "$port" | json messages)
        c1=$(cpu)
        echo "$s msg $(per "$c0" "$c1" "$n")" >>"$out"
        stop
        start "$s" bytes # connect mode: "64\n", 64 bytes back, close
        c0=$(cpu)
        n=$(taskset -c "$lcores" "$ioplex" bench -q --json --tls -t "$lthreads" -m connect \
            -c 16 -s 64 -d "$secs" --warmup 0 127.0.0.1 "$port" | json messages)
        c1=$(cpu)
        echo "$s handshake $(per "$c0" "$c1" "$n")" >>"$out"
        stop
    done
done

printf '%-8s %34s %30s\n' server "CPU us/msg, 64 B @ $rate/s, $conns conns" "CPU us/full handshake"
for s in haproxy epoll uring; do
    for k in msg handshake; do
        awk -v s="$s" -v k="$k" '$1 == s && $2 == k { v[++n] = $3 }
            END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
                  if (n) printf "%s %.2f (%.2f-%.2f)\n", k, v[int((n + 1) / 2)], v[1], v[n] }' "$out"
    done | paste -sd' ' | awk -v s="$s" '{ printf "%-8s %20s %-13s %16s %s\n", s, $2, $3, $5, $6 }'
done
echo "(haproxy: HAProxy's CPU and its plain ioplex backend's, summed)"
