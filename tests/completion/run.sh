#!/bin/bash
# Run the bash completion (completion/ioplex) the way bash does on Tab:
# bash-completion's own library loaded, COMP_WORDS, COMP_CWORD and
# COMP_LINE set, the function called, COMPREPLY checked.
# Usage: run.sh SOURCE_DIR IOPLEX_BINARY
set -u
src=$1 ioplex=$2
lib=/usr/share/bash-completion/bash_completion
[ -r "$lib" ] || { echo "completion test: FAIL: no $lib (apt-get install bash-completion)" >&2; exit 1; }
# bash_completion loads what it finds under these; keep the test to itself.
export BASH_COMPLETION_USER_DIR=/nonexistent BASH_COMPLETION_USER_FILE=/nonexistent
# shellcheck disable=SC1090
. "$lib"
. "$src/completion/ioplex"
[ "$(complete -p ioplex 2>/dev/null)" = "complete -F _ioplex ioplex" ] ||
    { echo "completion test: FAIL: completion/ioplex does not register _ioplex for ioplex" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/ioplex-completion.XXXXXX")
trap 'rm -rf "$T"' EXIT
bad=0 n=0

# complete WORD... : COMPREPLY, sorted, one a line, for the line
# "$ioplex WORD...", the cursor at the end of the last word.
complete_line() {
    COMP_WORDS=("$ioplex" "$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _ioplex ioplex "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" 2>"$T/err"
    [ ${#COMPREPLY[@]} -eq 0 ] || printf '%s\n' "${COMPREPLY[@]}" | sort
}
# expect "WANT" WORD... : COMPREPLY is exactly the words of WANT.
expect() {
    local want got
    want=$(printf '%s\n' $1 | sort)
    shift
    got=$(complete_line "$@")
    n=$((n + 1))
    if [ "$got" != "$want" ]; then
        echo "completion test: FAIL: ioplex $*<Tab>: want [$(echo $want)], got [$(echo $got)]" >&2
        [ -s "$T/err" ] && sed 's/^/  | /' "$T/err" >&2
        bad=1
    fi
}
# includes "WANT" WORD... : COMPREPLY holds every word of WANT (and maybe more).
includes() {
    local want=$1 w got
    shift
    got=$(complete_line "$@")
    n=$((n + 1))
    for w in $want; do
        printf '%s\n' "$got" | grep -qx -- "$w" ||
            { echo "completion test: FAIL: ioplex $*<Tab> does not offer $w (got [$(echo $got)])" >&2; bad=1; }
    done
}
excludes() {
    local unwanted=$1 w got
    shift
    got=$(complete_line "$@")
    n=$((n + 1))
    for w in $unwanted; do
        ! printf '%s\n' "$got" | grep -qx -- "$w" ||
            { echo "completion test: FAIL: ioplex $*<Tab> offers $w" >&2; bad=1; }
    done
}

# Commands and top-level options.
includes 'serve connect bench compare' ''
expect 'serve' se
expect 'compare connect' co
expect '--help --version' --
# Each command's options, as its --help lists them, and not another's.
includes '--model --service --framing --once --user --max-conns -m -S -U' serve -
expect '--max-frame --max-conns' serve --max-
excludes '--duplex --json' serve -
includes '--duplex --wait --udp --unix --help' connect --
includes '--mode --connections --json --hgrm --interval-file' bench --
includes '--quick --models --scenarios --repeat --out --peers' compare --
# Models: those compiled in (serve --help), the classic nine always, uring
# and kqueue where built, nothing else.
models=$(complete_line serve -m '')
for m in iterative fork prefork thread pool select poll epoll aio; do
    printf '%s\n' "$models" | grep -qx "$m" || { echo "completion test: FAIL: serve -m does not offer $m" >&2; bad=1; }
done
extra=$(printf '%s\n' $models | grep -vxE 'iterative|fork|prefork|thread|pool|select|poll|epoll|aio|uring|kqueue')
[ -z "$extra" ] || { echo "completion test: FAIL: serve -m offers $extra" >&2; bad=1; }
n=$((n + 1))
expect 'epoll' serve -m e
expect 'poll pool prefork' serve --model p
expect 'poll pool prefork' serve --model=p
expect 'ack echo discard daytime chargen bytes chat' serve -S ''
expect 'chargen chat' serve --service ch
expect 'raw line len32' serve -F ''
expect 'line len32' bench --framing l
includes 'root' serve --user ro
expect 'pingpong rate stream connect' bench -m ''
expect 'rate' bench --mode r
# compare: comma-separated lists, the last element completed.
expect 'epoll,poll epoll,pool epoll,prefork' compare -m epoll,p
expect 'pp1 pp100 pp1000' compare --scenarios pp1
expect 'stevens,stream' compare --scenarios stevens,str
# An option's number argument: nothing offered (not files, not options).
expect '' serve --max-frame ''
expect '' bench -c ''
# Files, and directories only where a directory is wanted.
mkdir "$T/d" "$T/d/sub"
: >"$T/d/cert.pem"
expect "$T/d/cert.pem $T/d/sub" serve --tls-cert "$T/d/"
expect "$T/d/cert.pem $T/d/sub" serve -U "$T/d/"
expect "$T/d/sub" compare -o "$T/d/"
expect "$T/d/cert.pem $T/d/sub" report "$T/d/"
# connect: the PROXY version after "=", hosts for the first operand only.
expect 'v1 v2' connect --send-proxy=
includes 'localhost' connect localh
includes 'localhost' connect -w 3 localh
expect '' connect localhost ''

# The framings and scenarios listed in completion/ioplex are --help's.
"$ioplex" serve --help | grep -E -- '--framing' >"$T/framing"
for f in raw line len32; do
    grep -qw "$f" "$T/framing" || { echo "completion test: FAIL: serve --help's --framing line has no $f" >&2; bad=1; }
done
"$ioplex" compare --help | sed -n '/^Scenarios:/,/^$/p' >"$T/scen"
for s in pp1 pp100 pp1000 stevens stream; do
    grep -qw "$s" "$T/scen" || { echo "completion test: FAIL: compare --help names no scenario $s" >&2; bad=1; }
done

[ $bad -eq 0 ] || exit 1
echo "completion test: passed ($n cases)"
