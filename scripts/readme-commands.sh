#!/usr/bin/env bash
# Runs README's top-level commands exactly as README prints them, from this checkout: the first
# of "Two commands" (scripts/demo.sh: a real deploy to the local fleet it starts), then every
# ```sh block README marks with `<!-- readme-commands: NAME -->`, in README's order, each in
# its own `bash -euo pipefail` (blocks marked `…: NAME in-new-dir` run in an empty temporary
# directory), and at the end `scripts/demo.sh stop`. The block marked `try-next` must also be
# what the demo itself prints as the next commands. `bash .ci/run` (the second of the two
# commands) is what runs this script, so it is the one line not run again.
#
#   scripts/readme-commands.sh          run them (as root, like the demo; `.ci/run` does)
#   scripts/readme-commands.sh --list   print the blocks it would run, run nothing
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'readme-commands: %s\n' "$*" >&2
    exit 1
}

# The lines of the ```sh block right after the marker line (comment-free, as README prints them).
block_after() { # LINE-NUMBER
    awk -v from="$1" 'NR <= from { next } /^```sh$/ && !open { open = 1; next } open && /^```$/ { exit } open { print }' README.md
}

markers=$(grep -n '^<!-- readme-commands: [a-z-]*\( in-new-dir\)\? -->$' README.md || true)
[ -n "$markers" ] || die "README.md marks no block with <!-- readme-commands: NAME -->"

# "Two commands": exactly the demo and the CI entry point, in that order.
two=$(awk '/^## Two commands$/ { s = 1; next } s && /^```sh$/ { o = 1; next } o && /^```$/ { exit } o { sub(/[ \t]+#.*/, ""); print }' README.md)
[ "$two" = "$(printf 'scripts/demo.sh\nbash .ci/run')" ] ||
    die "README's two commands are no longer \`scripts/demo.sh\` and \`bash .ci/run\`: update this script (found: $two)"

if [ "${1:-}" = --list ]; then
    echo "scripts/demo.sh"
    while IFS=: read -r line marker; do
        printf '# %s\n%s\n' "$marker" "$(block_after "$line")"
    done <<<"$markers"
    exit 0
fi

started=$(date +%s)
trap 'log "scripts/demo.sh stop"; scripts/demo.sh stop >/dev/null 2>&1 || true' EXIT
demo_log=$(mktemp)
log "scripts/demo.sh"
scripts/demo.sh 2>&1 | tee "$demo_log"
log "the demo was ready after $(($(date +%s) - started)) s"

while IFS=: read -r line marker; do
    name=${marker#<!-- readme-commands: }
    name=${name% -->}
    commands=$(block_after "$line")
    [ -n "$commands" ] || die "README.md line $line: the marker '$name' is not followed by a \`\`\`sh block"
    if [ "${name%% *}" = try-next ]; then
        # The demo prints these with $PWD expanded and without README's comments.
        expected=$(printf '%s\n' "$commands" | sed -e 's/[[:space:]]*#.*$//' -e "s|\$PWD|$repo|g")
        printed=$(awk '/^==> ready in /, /^==> stop it all/' "$demo_log" | sed -n 's/^    //p')
        [ "$(printf '%s\n' "$expected" | sed 's/\\//g')" = "$(printf '%s\n' "$printed" | sed 's/\\//g')" ] ||
            die "the demo prints other next commands than README's try-next block:
--- README
$expected
--- demo
$printed"
    fi
    dir=$repo
    [ "${name#* }" != in-new-dir ] || dir=$(mktemp -d)
    log "README block '${name%% *}' (README.md line $line), in $dir"
    printf '%s\n' "$commands" | sed 's/^/    $ /'
    (cd "$dir" && PATH="$repo/target/debug:$PATH" bash -euo pipefail -c "$commands") ||
        die "README block '${name%% *}' (README.md line $line) failed"
    [ "$dir" = "$repo" ] || rm -rf -- "$dir"
done <<<"$markers"
log "every README command ran as printed ($(($(date +%s) - started)) s in all)"
