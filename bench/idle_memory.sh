#!/bin/sh
# What an idle connection costs a server in resident memory: the RSS growth
# of `ioplex serve -m epoll -S echo` (and -m poll) holding N idle
# connections (default 10,000), divided by N; beside it, the same for the
# reference echo servers built in BUILD_DIR/bench (any executable named
# *_echo taking `PORT HOST`: bench/ref/), if there are any.
#   bench/idle_memory.sh [BUILD_DIR] [N]
# Kernel socket buffers are not in RSS: this is the server's own memory
# (connection state, descriptor tables). Loopback only; the servers are
# started here and stopped by PID.
set -eu
build=${1:-build-bench}
n=${2:-10000}
bin=$build/ioplex
if [ ! -x "$bin" ]; then
    echo "idle_memory: no $bin; build it first (make bench)" >&2
    exit 1
fi
client=$build/bench/idle_clients
if [ ! -x "$client" ] || [ bench/idle_clients.c -nt "$client" ]; then
    mkdir -p "$build/bench"
    ${CC:-cc} -O2 -Wall -Wextra -o "$client" bench/idle_clients.c
fi

# Room for N descriptors in the servers (inherited) and the client.
hard=$(ulimit -H -n)
if [ "$hard" != unlimited ] && [ "$hard" -lt $((n + 64)) ]; then
    n=$((hard - 64))
    echo "idle_memory: RLIMIT_NOFILE hard limit $hard: measuring $n connections" >&2
fi
ulimit -S -n "$hard"

tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Wait (up to 5 s) for a TCP listener on 127.0.0.1:$1.
wait_listen() {
    hex=$(printf '%04X' "$1")
    i=0
    while [ $i -lt 100 ]; do
        grep -q "0100007F:$hex 00000000:0000 0A" /proc/net/tcp && return 0
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}

# measure NAME: the server is $pid, listening on 127.0.0.1:$port.
measure() {
    if line=$("$client" -p "$pid" -a "127.0.0.1:$port" -n "$n" -t 120); then
        set -- "$1" $(echo "$line" | tr ' =' '\n\n' | sed -n '2p;4p;6p;8p')
        printf '%-22s %7s %10s %10s %10s\n' "$1" "$2" "$3" "$4" "$5"
    else
        printf '%-22s failed (see above)\n' "$1"
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}

printf '%-22s %7s %10s %10s %10s\n' server conns "RSS0 KiB" "RSS KiB" "B/conn"
for model in epoll poll; do
    "$bin" serve -m "$model" -S echo 127.0.0.1 0 2>"$tmp/err" &
    pid=$!
    port=
    i=0
    while [ -z "$port" ] && [ $i -lt 100 ]; do
        port=$(sed -n 's/.* on tcp:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/err")
        [ -n "$port" ] || sleep 0.05
        i=$((i + 1))
    done
    if [ -z "$port" ]; then
        echo "idle_memory: ioplex serve -m $model did not start:" >&2
        cat "$tmp/err" >&2
        exit 1
    fi
    measure "ioplex -m $model"
done

refs=0
for ref in "$build"/bench/*_echo; do
    [ -x "$ref" ] || continue
    refs=$((refs + 1))
    port=$("$client" --free-port)
    "$ref" "$port" 127.0.0.1 >/dev/null 2>&1 &
    pid=$!
    if ! wait_listen "$port"; then
        echo "idle_memory: $(basename "$ref") is not listening on $port; skipped" >&2
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
        continue
    fi
    measure "$(basename "$ref")"
done
[ "$refs" -gt 0 ] || echo "(no reference servers in $build/bench: bench/ref/ not built)"
