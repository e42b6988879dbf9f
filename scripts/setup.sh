#!/bin/sh
# Install the Debian packages the build, the tests and the demo need.
# Runs apt-get as root; elsewhere it prints the exact command to run.
# Only gcc, make and cmake are assumed to be there already. liburing-dev
# gives the uring model; without it that model is left out.
set -eu

# clang + libclang-rt-14-dev: the libFuzzer targets (fuzz/); valgrind: the
# memcheck subset; iproute2 + nftables: the two-host tests in network
# namespaces (veth, tbf shaping, random drops); libssl-dev + openssl: TLS
# (and the test certificates); ncat, socat, haproxy: TLS interop and the
# PROXY protocol peer; systemd + openbsd-inetd: socket activation against
# the real tools; mandoc + bash-completion: the manual pages and completion;
# zlib1g-dev: HdrHistogram's compressed logs (bench --hlog, report).
PACKAGES="cmake pkg-config libcmocka-dev netcat-openbsd socat jq liburing-dev gnuplot-nox
clang libclang-rt-14-dev valgrind iproute2 nftables libssl-dev openssl ncat haproxy
systemd openbsd-inetd mandoc bash-completion zlib1g-dev"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
# nodejs + npm: the HdrHistogram interop test (tests/integration/test_hlog.c)
# installs hdr-histogram-js with npm. Checked by command, not by dpkg: a
# node from elsewhere (nodesource, nvm) does as well.
if ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ioplex needs these Debian packages:$missing" >&2
    echo "Install them as root with:  apt-get update && $cmd" >&2
    exit 1
fi
echo "setup: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
