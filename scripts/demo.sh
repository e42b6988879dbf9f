#!/bin/sh
# The course's exchange, scripted over every transport and model, with the
# server's side and the client's side of each shown. Until `ioplex compare`
# exists this is what `make demo` runs.
set -u
IOPLEX=${1:-build/ioplex}
dir=$(mktemp -d /tmp/ioplex-demo.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# start NAME ARGS...: run `ioplex serve ARGS` in the background and wait
# (at most 5 s) for the address it prints.
start() {
    name=$1; shift
    "$IOPLEX" serve "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
    pids="$pids $!"
    i=0
    while ! grep -q ' on ' "$dir/$name.err" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 50 ]; then echo "demo: server '$name' did not start:"; cat "$dir/$name.err"; exit 1; fi
        sleep 0.1
    done
    addr=$(sed -n 's/.* on \([^ ]*\) (model.*/\1/p' "$dir/$name.err")
}

show() { # show TITLE SERVER-NAME CLIENT-ARGS...
    title=$1; name=$2; shift 2
    echo "== $title"
    echo "   server: $(cat "$dir/$name.err")"
    echo "   \$ echo 'hello, server' | ioplex connect $*"
    echo 'hello, server' | "$IOPLEX" connect -w 5 "$@" | sed 's/^/   client got: /'
    sleep 0.2
    sed 's/^/   server printed: /' "$dir/$name.out"
    : >"$dir/$name.out"
    echo
}

port() { echo "$addr" | sed 's/.*:\([0-9]*\)$/\1/'; }

start tcp4 -m thread 127.0.0.1 0;      show "TCP over IPv4, thread per client" tcp4 127.0.0.1 "$(port)"
start tcp6 -m fork -6 ::1 0;           show "TCP over IPv6, a process per client (fork)" tcp6 -6 ::1 "$(port)"
start udp -m iterative -u 127.0.0.1 0; show "UDP, the iterative connectionless server" udp -u 127.0.0.1 "$(port)"
start unix -m iterative -U "$dir/s";   show "Unix-domain stream socket, iterative" unix -U "$dir/s"
start unixd -m iterative -u -U "$dir/d"; show "Unix-domain datagram socket" unixd -u -U "$dir/d"

echo "== The iterative server's drawback: a silent first client makes the second wait"
start iter -m iterative 127.0.0.1 0
p=$(port)
(sleep 3 | "$IOPLEX" connect 127.0.0.1 "$p" >/dev/null) & pids="$pids $!"
sleep 0.3
t0=$(date +%s.%N)
echo 'second client' | "$IOPLEX" connect 127.0.0.1 "$p" | sed 's/^/   second client got: /'
t1=$(date +%s.%N)
echo "   the second client waited $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s for the first to finish"
echo

echo "== Bad input gets one clear line and a distinct exit code"
start busy -m thread 127.0.0.1 0
for args in "serve 127.0.0.1 $(port)" "connect nosuchhost.invalid 80" \
            "serve -U /tmp/$(printf 'x%.0s' $(seq 1 120))" "serve -m fork -u 0" \
            "connect 127.0.0.1 1"; do
    short=$(echo "$args" | cut -c1-60)
    "$IOPLEX" $args >/dev/null 2>"$dir/err"
    echo "   \$ ioplex $short  -> exit $?: $(cat "$dir/err")"
done
