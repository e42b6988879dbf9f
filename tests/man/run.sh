#!/bin/sh
# The manual pages (man/) against the tool and the header they describe:
#  - every page lints clean under mandoc: nothing at -W warning, and at
#    -W style nothing but "referenced manual not found" (the pages refer
#    to each other and to systemd's, which need not be installed here);
#    and groff, man-db's renderer, warns of nothing (-ww);
#  - every command `ioplex --help` lists has its page, ioplex-CMD.1, and
#    an entry in ioplex.1;
#  - every option `ioplex CMD --help` prints, long and short, has an entry
#    (an .It line with "Fl -name" or "Fl x") in ioplex-CMD.1;
#  - every IOPLEX_API function of include/ioplex.h is in libioplex.3's
#    SYNOPSIS, and the page's example program compiles against the header.
# Usage: run.sh SOURCE_DIR IOPLEX_BINARY C_COMPILER
set -eu
src=$1 ioplex=$2 cc=${3:-cc}
man=$src/man
T=$(mktemp -d "${TMPDIR:-/tmp}/ioplex-man.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM
bad=0
fail() { echo "man test: FAIL: $*" >&2; bad=1; }

command -v mandoc >/dev/null ||
    { echo "man test: FAIL: mandoc is not installed (apt-get install mandoc)" >&2; exit 1; }

# ---- lint ---------------------------------------------------------------
pages=$(ls "$man"/*.1 "$man"/*.3)
for p in $pages; do
    if ! mandoc -T lint -W warning "$p" >"$T/lint" 2>&1 || [ -s "$T/lint" ]; then
        fail "mandoc -T lint -W warning $p:"; sed 's/^/  | /' "$T/lint" >&2
    fi
    mandoc -T lint -W style "$p" 2>&1 |
        grep -v -e 'STYLE: referenced manual not found' -e 'mandoc\.db' >"$T/style" || true
    if [ -s "$T/style" ]; then
        fail "mandoc -T lint -W style $p:"; sed 's/^/  | /' "$T/style" >&2
    fi
done

# What man-db renders them with, groff: no warning either. groff comes with
# man-db (groff-base); where it is absent this part cannot run, and says so.
if command -v groff >/dev/null; then
    for p in $pages; do
        groff -mandoc -ww -z -Tutf8 "$p" >"$T/groff" 2>&1 || true
        if [ -s "$T/groff" ]; then
            fail "groff -mandoc -ww $p:"; sed 's/^/  | /' "$T/groff" >&2
        fi
    done
else
    echo "man test: groff is not installed: the pages were not rendered as man-db does"
fi

# ---- commands and options against --help ---------------------------------
# The options a --help text lists: on every line whose first word starts
# with "-", the words of the option column (up to the first gap of two
# spaces) that are options: "-m, --model NAME" gives -m and --model,
# "--send-proxy[=v1|v2]" gives --send-proxy.
help_options() {
    sed -n 's/^ *\(-.*\)$/\1/p' "$1" | sed 's/  .*//' | tr ', ' '\n\n' |
        sed -n 's/^\(--*[A-Za-z0-9][A-Za-z0-9-]*\).*$/\1/p' | sort -u
}
# Whether the page has an entry (.It line) for the option.
has_entry() { # PAGE OPTION
    opt=$(printf '%s' "$2" | sed 's/^-//')   # "-name" or "x", as after Fl
    grep -E '^\.It ' "$1" | grep -Eq "(^| )Fl $opt( |\$)"
}

"$ioplex" --help >"$T/help" || { fail "ioplex --help exited $?"; exit 1; }
cmds=$(sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z]*\) .*/\1/p' "$T/help")
[ -n "$cmds" ] || { fail "no commands found in ioplex --help"; exit 1; }
for o in --help --version; do
    grep -q -- "$o" "$T/help" || fail "ioplex --help no longer mentions $o (update this test)"
    has_entry "$man/ioplex.1" "$o" || fail "ioplex.1 has no entry for $o"
done
for c in $cmds; do
    grep -Eq "^\.It Cm $c( |\$)" "$man/ioplex.1" || fail "ioplex.1 has no entry for the command $c"
    page=$man/ioplex-$c.1
    [ -f "$page" ] || { fail "no page for ioplex $c: $page"; continue; }
    grep -q "Xr ioplex-$c 1" "$man/ioplex.1" || fail "ioplex.1 does not refer to ioplex-$c(1)"
    "$ioplex" "$c" --help >"$T/$c.help" 2>&1 || { fail "ioplex $c --help exited $?"; continue; }
    opts=$(help_options "$T/$c.help")
    echo "$opts" | grep -qx -- --help || { fail "found no --help in ioplex $c --help: the parser is wrong"; continue; }
    n=0 miss=0
    for o in $opts; do
        n=$((n + 1))
        has_entry "$page" "$o" ||
            { miss=$((miss + 1)); fail "ioplex $c --help lists $o, ioplex-$c.1 has no entry for it"; }
    done
    [ $miss -gt 0 ] ||
        echo "man test: ioplex-$c.1 has an entry for each of the $n options of ioplex $c --help"
done

# ---- the library page against the header ---------------------------------
lib=$man/libioplex.3
fns=$(sed -n 's/^IOPLEX_API[^(]*[ *]\(iop_[a-z0-9_]*\)(.*/\1/p' "$src/include/ioplex.h" | sort -u)
[ -n "$fns" ] || fail "no IOPLEX_API functions found in include/ioplex.h"
n=0 miss=0
for f in $fns; do
    n=$((n + 1))
    grep -Eq "^\.(Fn|Fo) $f( |\$)" "$lib" ||
        { miss=$((miss + 1)); fail "libioplex.3's SYNOPSIS lacks $f()"; }
done
[ $miss -gt 0 ] || echo "man test: libioplex.3 declares each of the $n IOPLEX_API functions"
# The example: the literal block after the line "A line echo server...".
awk '/^A line echo server/ { armed = 1; next }
     armed && /^\.Bd/ { inside = 1; next }
     inside && /^\.Ed/ { exit }
     inside { gsub(/\\e/, "\\"); print }' "$lib" >"$T/example.c"
if [ ! -s "$T/example.c" ]; then
    fail "libioplex.3 has no example program after \"A line echo server\""
elif ! "$cc" -std=c11 -Wall -Wextra -Werror -fsyntax-only -I "$src/include" \
        "$T/example.c" >"$T/cc.log" 2>&1; then
    fail "libioplex.3's example does not compile:"; sed 's/^/  | /' "$T/cc.log" >&2
fi

[ $bad -eq 0 ] || exit 1
echo "man test: passed ($(echo $pages | wc -w) pages)"
