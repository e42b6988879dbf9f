#!/bin/sh
# The shared library exports exactly the public API: every function and
# object that include/ioplex.h declares, and nothing else (no iop__*
# internals, no helpers without the prefix). The library is built with
# -fvisibility=hidden and ioplex.h marks what it declares with IOPLEX_API;
# this checks that the two agree. Needs only the compiler (to preprocess
# the header), nm (binutils) and a POSIX awk.
# Usage: run.sh LIBIOPLEX_SO HEADER [CC] [NM]
#        run.sh --header HEADER [CC]   (only list what the header declares)
set -eu

fail() { echo "symbols: FAIL: $*" >&2; exit 1; }

# What HEADER declares at file scope, one name a line: functions, and
# objects (extern or not); not typedefs, struct/enum/union tags, enum
# constants, macros, static or inline definitions, or struct members.
# The preprocessor drops comments and #if'd-out text (the C++ guard); only
# the header's own lines are kept (its line markers), not its #includes'.
header_names() { # HEADER CC
    "$2" -E -x c "$1" | awk -v want="$1" '
        /^# [0-9]+ "/ { f = $3; gsub(/"/, "", f); mine = (f == want); next }
        /^#/ { next }
        mine { src = src " " $0 }
        # s with every "KW ( ... )" (balanced) removed
        function drop_calls(s, kw,   i, j, d, c, out) {
            out = ""
            while ((i = index(s, kw)) > 0) {
                out = out substr(s, 1, i - 1)
                s = substr(s, i + length(kw))
                j = index(s, "(")
                if (j == 0) break
                d = 0
                for (; j <= length(s); j++) {
                    c = substr(s, j, 1)
                    if (c == "(") d++
                    else if (c == ")" && --d == 0) break
                }
                s = substr(s, j + 1)
            }
            return out s
        }
        function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); gsub(/[ \t]+/, " ", s); return s }
        function declared(st,   t, g, name, rest, id, k) {
            st = trim(st)
            if (st == "" || st ~ /^(typedef|static)[ (]/ || st ~ /[{}]/) return
            # a function: the first identifier followed by "(" (a "(" that
            # opens "(*" groups a declarator instead)
            rest = st
            while (match(rest, /[A-Za-z_][A-Za-z0-9_]*[ ]*\(/)) {
                id = substr(rest, RSTART, RLENGTH)
                rest = substr(rest, RSTART + RLENGTH)
                sub(/[ ]*\($/, "", id)
                if (rest ~ /^[ ]*\*/ || id ~ /^(sizeof|_Atomic|_Alignas|alignas|typeof|__typeof__)$/) continue
                print id
                return
            }
            # an object: "T name", "T name[N]", "T (*name)(args)", "T name = v"
            if (match(st, /\([ ]*\*[^()]*\)/))
                st = substr(st, RSTART + 1, RLENGTH - 2)
            sub(/[[=].*$/, "", st)
            if (match(st, /[A-Za-z_][A-Za-z0-9_]*[ ]*$/))
                print trim(substr(st, RSTART, RLENGTH))
        }
        END {
            src = drop_calls(src, "__attribute__")
            gsub(/__extension__/, " ", src)
            st = ""; d = 0
            for (i = 1; i <= length(src); i++) {
                c = substr(src, i, 1)
                if (c == "{") d++
                if (c == "}") d--
                if (c == ";" && d == 0) { declared(st); st = ""; continue }
                st = st c
                # a body at file scope: a definition (static inline), no ";"
                if (c == "}" && d == 0 && st ~ /\)[ ]*{/) st = ""
            }
            declared(st)
        }' | sort -u
}

if [ "${1:-}" = "--header" ]; then
    header_names "${2:?header}" "${3:-cc}"
    exit 0
fi
lib=${1:?usage: run.sh LIBIOPLEX_SO HEADER [CC] [NM]}
header=${2:?usage: run.sh LIBIOPLEX_SO HEADER [CC] [NM]}
cc=${3:-cc}
nm=${4:-nm}
[ -f "$lib" ] || fail "no $lib"
[ -f "$header" ] || fail "no $header"

T=$(mktemp -d "${TMPDIR:-/tmp}/ioplex-symbols.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM

header_names "$header" "$cc" >"$T/declared" || fail "cannot preprocess $header with $cc"
# The dynamic symbols the library defines (global and weak), without a
# version suffix; not what older linkers add to every shared object.
"$nm" -D --defined-only "$lib" >"$T/nm" || fail "$nm -D $lib"
awk '$(NF-1) ~ /^[A-Zu]$/ { n = $NF; sub(/@.*/, "", n); print n }' "$T/nm" |
    grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u >"$T/exported" || true

nd=$(grep -c . "$T/declared" || true)
ne=$(grep -c . "$T/exported" || true)
echo "symbols: $header declares $nd functions and objects; $(basename "$lib") exports $ne"
[ "$nd" -gt 0 ] || fail "found no declaration in $header (parse failed?)"
[ "$ne" -gt 0 ] || fail "$lib exports nothing"

list() { # FILE: up to 25 names, indented
    sed -n '1,25s/^/  /p' "$1" >&2
    n=$(grep -c . "$1")
    [ "$n" -le 25 ] || echo "  ... and $((n - 25)) more" >&2
}
status=0
comm -23 "$T/exported" "$T/declared" >"$T/extra"
if [ -s "$T/extra" ]; then
    echo "symbols: FAIL: $(basename "$lib") exports $(grep -c . "$T/extra") symbols that $header does not declare (internal: only the public API carries IOPLEX_API):" >&2
    list "$T/extra"
    status=1
fi
comm -13 "$T/exported" "$T/declared" >"$T/missing"
if [ -s "$T/missing" ]; then
    echo "symbols: FAIL: $header declares $(grep -c . "$T/missing") that $(basename "$lib") does not export (no IOPLEX_API on the declaration, or not defined):" >&2
    list "$T/missing"
    status=1
fi
[ "$status" -eq 0 ] || exit 1
echo "symbols: passed: the exports are exactly the header's $nd"
