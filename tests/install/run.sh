#!/bin/sh
# Install ioplex into a fresh, staged prefix; check that the manual pages
# are where man finds them and the bash completion where bash-completion
# loads it from; then build the README's
# library example (the blocks marked "install-test") against it: with
# pkg-config and with find_package, shared and static, and run each build
# against the installed tool. Nothing from the environment helps: the
# consumers get only the .pc file's path or CMAKE_PREFIX_PATH.
# Usage: run.sh SOURCE_DIR BUILD_DIR
set -eu
src=$(cd "$1" && pwd -P)
bld=$(cd "$2" && pwd -P)
readme=$src/README.md

T=$(mktemp -d "${TMPDIR:-/tmp}/ioplex-install.XXXXXX")
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
fail() { echo "install test: FAIL: $*" >&2; exit 1; }
show() { sed 's/^/  | /' "$1" >&2; }

unset PKG_CONFIG_PATH LD_LIBRARY_PATH LIBRARY_PATH CPATH C_INCLUDE_PATH \
      CMAKE_PREFIX_PATH ioplex_DIR DESTDIR

# The prefix recorded at install does not exist: every file is staged
# under DESTDIR, and both packages must work from there, where they lie.
fake=/nonexistent/ioplex-install-test.$$
# lib, or lib/<multiarch> where the build was configured for /usr
lib=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$bld/CMakeCache.txt")
[ -n "$lib" ] || fail "no CMAKE_INSTALL_LIBDIR in $bld/CMakeCache.txt"
stage=$T/stage
P=$stage$fake
[ ! -e "$fake" ] || fail "$fake exists"
if [ "$bld" = "$src/build" ]; then
    # `make install`, without remaking what is built (-o build): the suite
    # tests this build and must not reconfigure it while other tests run.
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        make -s -C "$src" -o build install PREFIX="$fake" DESTDIR="$stage" \
        >"$T/install.log" 2>&1 || { show "$T/install.log"; fail "make install"; }
else
    echo "install test: $bld is not $src/build, which make install installs: using what it runs, cmake --install"
    DESTDIR=$stage cmake --install "$bld" --prefix "$fake" \
        >"$T/install.log" 2>&1 || { show "$T/install.log"; fail "cmake --install"; }
fi
[ ! -e "$fake" ] || fail "DESTDIR not honoured: files under $fake"
for f in bin/ioplex include/ioplex.h $lib/libioplex.so $lib/libioplex.a \
         $lib/pkgconfig/ioplex.pc $lib/cmake/ioplex/ioplexConfig.cmake \
         $lib/cmake/ioplex/ioplexConfigVersion.cmake; do
    [ -e "$P/$f" ] || { show "$T/install.log"; fail "not installed: $P/$f"; }
done
# The example systemd units, ExecStart= naming the tool where it was installed.
units=$P/share/doc/ioplex/examples/systemd
for u in ioplex-echo.socket ioplex-echo.service ioplex-ack.socket ioplex-ack@.service \
         ioplex.service; do
    [ -e "$units/$u" ] || { show "$T/install.log"; fail "not installed: $units/$u"; }
done
grep -q "^ExecStart=$fake/bin/ioplex serve" "$units/ioplex-echo.service" ||
    fail "ioplex-echo.service does not start $fake/bin/ioplex"
! grep -l /usr/local/bin "$units"/* || fail "an installed unit still names /usr/local/bin"
echo "install test: installed under DESTDIR=$stage PREFIX=$fake"

# The manual pages, where man finds them under the prefix.
# (GNUInstallDirs leaves these empty in the cache when they are defaults.)
dataroot=$(sed -n 's/^CMAKE_INSTALL_DATAROOTDIR:PATH=//p' "$bld/CMakeCache.txt")
dataroot=${dataroot:-share}
mandir=$(sed -n 's/^CMAKE_INSTALL_MANDIR:PATH=//p' "$bld/CMakeCache.txt")
mandir=${mandir:-$dataroot/man}
npages=0
for page in "$src"/man/*.[0-9]; do
    name=${page##*/} sect=${page##*.}
    [ -f "$P/$mandir/man$sect/$name" ] || fail "not installed: $P/$mandir/man$sect/$name"
    cmp -s "$page" "$P/$mandir/man$sect/$name" || fail "$P/$mandir/man$sect/$name is not man/$name"
    if command -v man >/dev/null; then
        found=$(man -M "$P/$mandir" -w "$sect" "${name%.*}" 2>/dev/null) ||
            fail "man -M $P/$mandir -w $sect ${name%.*} finds nothing"
        [ "$found" = "$P/$mandir/man$sect/$name" ] || fail "man finds ${name%.*}($sect) at $found"
    fi
    npages=$((npages + 1))
done
[ $npages -ge 7 ] || fail "only $npages pages in $src/man"
echo "install test: $npages manual pages under $P/$mandir"

# The bash completion, where bash-completion looks: its completionsdir
# relative to its own prefix, under ours. Loaded by bash-completion's own
# loader (XDG_DATA_DIRS names our share), then run against the installed
# tool.
bc_dir=$(pkg-config --variable=completionsdir bash-completion 2>/dev/null) || bc_dir=""
bc_prefix=$(pkg-config --variable=prefix bash-completion 2>/dev/null) || bc_prefix=""
case "$bc_dir" in
    "$bc_prefix"/?*) bc_rel=${bc_dir#"$bc_prefix"/} ;;
    *) bc_rel=share/bash-completion/completions ;;
esac
[ -f "$P/$bc_rel/ioplex" ] || fail "not installed: $P/$bc_rel/ioplex"
bash_completion=/usr/share/bash-completion/bash_completion
[ -r "$bash_completion" ] || fail "no $bash_completion (apt-get install bash-completion)"
got=$(XDG_DATA_DIRS=$P/$dataroot BASH_COMPLETION_USER_DIR=/nonexistent bash -c '
    . "$1"
    __load_completion ioplex || { echo "__load_completion ioplex found nothing"; exit 1; }
    complete -p ioplex
    COMP_WORDS=("$2" serve -m e) COMP_CWORD=3 COMP_LINE="$2 serve -m e" COMP_POINT=${#COMP_LINE}
    _ioplex ioplex e -m
    echo "offers: ${COMPREPLY[*]}"' sh "$bash_completion" "$P/bin/ioplex" 2>&1) ||
    fail "bash-completion does not load the installed completion: $got"
want="complete -F _ioplex ioplex
offers: epoll"
[ "$got" = "$want" ] || fail "the installed completion: got '$got', not '$want'"
echo "install test: bash-completion loads $P/$bc_rel/ioplex; ioplex serve -m e<Tab> gives epoll"

# The consumer, from the README's marked blocks.
extract() {
    awk -v name="$1" '
        $0 == "<!-- install-test: " name " -->" { armed = 1; next }
        armed && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$readme"
}
C=$T/consumer
mkdir "$C"
for b in mine.c CMakeLists.txt pkg-config.sh; do
    extract "$b" >"$C/$b"
    [ -s "$C/$b" ] || fail "README.md has no block marked <!-- install-test: $b -->"
done
# The README installs under /opt/ioplex (libdir lib); here that is $P.
sed -e "s|/opt/ioplex/lib/|$P/$lib/|g" -e "s|/opt/ioplex|$P|g" \
    "$C/pkg-config.sh" >"$C/pkg-config.run"

real() { (cd "$1" 2>/dev/null && pwd -P) || echo "$1 (missing)"; }
pc=$P/$lib/pkgconfig/ioplex.pc
inc=$(pkg-config --variable=includedir "$pc")
[ "$(real "$inc")" = "$(real "$P/include")" ] ||
    fail "ioplex.pc's includedir is $inc, not the installed $P/include"

# shared library: needs libioplex.so from the installed tree
shared_ok() {
    line=$(ldd "$1" | grep 'libioplex\.so') || fail "$1 does not use libioplex.so"
    case "$line" in
        *"=> $P/"*) ;;
        *) fail "$1 finds libioplex.so elsewhere: $line" ;;
    esac
}
static_ok() {
    ! ldd "$1" | grep -q 'libioplex\.so' || fail "$1 uses libioplex.so, not the archive"
}

# A build must print its address, echo one line to one client (the
# installed tool), and then exit 0 (cfg.once).
serve_once() { # BINARY LABEL
    out=$T/$2.out
    timeout 20 "$1" tcp://127.0.0.1:0 >"$out" 2>&1 &
    pid=$!
    pids="$pids $pid"
    addr="" i=0
    while [ -z "$addr" ] && [ $i -lt 100 ]; do
        sleep 0.1
        addr=$(sed -n 's|^serving on tcp://||p' "$out")
        i=$((i + 1))
    done
    [ -n "$addr" ] || { show "$out"; fail "$2: printed no address"; }
    want="hello from $2"
    got=$(echo "$want" | timeout 10 "$P/bin/ioplex" connect "${addr%:*}" "${addr##*:}") ||
        fail "$2: ioplex connect $addr failed ($?)"
    [ "$got" = "$want" ] || fail "$2: sent '$want', got '$got'"
    rc=0
    wait "$pid" || rc=$?
    [ $rc -eq 0 ] || { show "$out"; fail "$2: exit status $rc after its one client"; }
    echo "install test: $2: served '$want' and exited 0"
}

# pkg-config: the README's commands, as they are.
(cd "$C" && sh -ex pkg-config.run) >"$T/pc.log" 2>&1 ||
    { show "$T/pc.log"; fail "the README's pkg-config build"; }
shared_ok "$C/mine"
static_ok "$C/mine_static"
serve_once "$C/mine" pkg-config.shared
serve_once "$C/mine_static" pkg-config.static

# CMake: the README's CMakeLists.txt, the prefix given as CMAKE_PREFIX_PATH.
cmake -S "$C" -B "$C/build" -DCMAKE_PREFIX_PATH="$P" >"$T/cmake.log" 2>&1 ||
    { show "$T/cmake.log"; fail "find_package(ioplex) in the README's CMakeLists.txt"; }
dir=$(sed -n 's/^ioplex_DIR:PATH=//p' "$C/build/CMakeCache.txt")
[ "$(real "$dir")" = "$(real "$P/$lib/cmake/ioplex")" ] ||
    fail "find_package(ioplex) took $dir, not the installed $P/$lib/cmake/ioplex"
cmake --build "$C/build" >>"$T/cmake.log" 2>&1 ||
    { show "$T/cmake.log"; fail "building the README's CMake project"; }
shared_ok "$C/build/mine"
static_ok "$C/build/mine_static"
serve_once "$C/build/mine" cmake.shared
serve_once "$C/build/mine_static" cmake.static
echo "install test: passed"
