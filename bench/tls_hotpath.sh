#!/bin/sh
# What one TLS message costs the server beyond the plain path, counted
# rather than timed (repeatable on a shared machine): heap allocations
# (valgrind memcheck's summary) and instructions (callgrind), for the
# epoll echo server with and without TLS, 64-byte ping-pong on 10
# connections. Two runs of N and 2N messages each, differenced, so that
# start-up and the handshakes cancel out: per-message figures.
#
#   bench/tls_hotpath.sh IOPLEX [N]      (N: 10000)
set -eu
bin=${1:?usage: tls_hotpath.sh IOPLEX [N]}
n=${2:-10000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" \
    -out "$dir/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null

# run TOOL TLS MESSAGES: prints the count the tool's summary gives.
run() {
    tls_args="" bench_tls=""
    if [ "$2" = tls ]; then
        tls_args="--tls-cert $dir/cert.pem --tls-key $dir/key.pem"
        bench_tls=--tls
    fi
    if [ "$1" = memcheck ]; then
        vg="valgrind --log-file=$dir/vg.log"
    else
        vg="valgrind --tool=callgrind --callgrind-out-file=$dir/cg.out"
    fi
    : >"$dir/err"
    # shellcheck disable=SC2086
    $vg "$bin" serve -m epoll -S echo $tls_args 127.0.0.1 0 2>"$dir/err" &
    pid=$!
    i=0
    until grep -q '127.0.0.1:' "$dir/err"; do
        i=$((i + 1)); [ $i -gt 300 ] && { echo "tls_hotpath: no server" >&2; exit 1; }
        sleep 0.1
    done
    port=$(grep -o '127.0.0.1:[0-9]*' "$dir/err" | cut -d: -f2)
    # shellcheck disable=SC2086
    "$bin" bench -q $bench_tls -c 10 -n "$3" --warmup 0 127.0.0.1 "$port" >/dev/null
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if [ "$1" = memcheck ]; then
        sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$dir/vg.log" | tr -d ,
    else
        callgrind_annotate "$dir/cg.out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
    fi
}

printf '%-6s %18s %22s\n' path "allocs per message" "instructions per message"
for path in plain tls; do
    a1=$(run memcheck $path "$n") a2=$(run memcheck $path $((2 * n)))
    i1=$(run callgrind $path "$n") i2=$(run callgrind $path $((2 * n)))
    awk -v p=$path -v a1="$a1" -v a2="$a2" -v i1="$i1" -v i2="$i2" -v n="$n" \
        'BEGIN { printf "%-6s %18.2f %22.0f\n", p, (a2 - a1) / n, (i2 - i1) / n }'
done
