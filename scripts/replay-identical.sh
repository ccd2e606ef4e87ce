#!/usr/bin/env bash
# Checks that a change kept replay output byte-identical: replays every capture under the shared pcaps
# (or the given directories/files) with this tree's sensor and with the sensor of a base revision, and
# compares their events line by line, in order. `spanwatch.stats` lines are left out (they carry the
# outputs' delivery counters so far, which depend on flush timing).
#
#   scripts/replay-identical.sh [--base REV | --base-binary PATH] [--binary PATH] [CAPTURE_OR_DIR...]
#
# REV defaults to HEAD~1; it is built (debug) in a worktree under .build-base/. Extra replay options
# go in REPLAY_OPTS (e.g. REPLAY_OPTS="--rules Rules"). Exit 0 when every capture gives the same events,
# 1 when any differs (the first differing lines are shown), 2 on usage or build errors.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
base=HEAD~1
base_bin=""
bin=""
inputs=()
while [ $# -gt 0 ]; do
    case $1 in
        --base) base=$2; shift 2 ;;
        --base-binary) base_bin=$2; shift 2 ;;
        --binary) bin=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) inputs+=("$1"); shift ;;
    esac
done
[ ${#inputs[@]} -gt 0 ] || inputs=("$root/../shared/data/pcaps")

if [ -z "$bin" ]; then
    swift build --product sensor 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' >&2 || true
    bin=$(swift build --show-bin-path)/sensor
fi
if [ -z "$base_bin" ]; then
    rev=$(git rev-parse --verify "$base^{commit}") || { echo "replay-identical: no revision $base" >&2; exit 2; }
    tree="$root/.build-base/$rev"
    if [ ! -d "$tree" ]; then
        mkdir -p "$root/.build-base"
        git worktree add --detach "$tree" "$rev" >&2
    fi
    echo "replay-identical: building $rev" >&2
    (cd "$tree" && swift build --product sensor 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' >&2 || true)
    base_bin=$(cd "$tree" && swift build --show-bin-path)/sensor
fi
[ -x "$bin" ] && [ -x "$base_bin" ] || { echo "replay-identical: missing binary ($bin, $base_bin)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Copies, so a rebuild during the run cannot swap a binary under it.
cp "$base_bin" "$work/sensor-base"; cp "$bin" "$work/sensor-new"
base_bin=$work/sensor-base; bin=$work/sensor-new
mapfile -t captures < <(for i in "${inputs[@]}"; do
    if [ -d "$i" ]; then find "$i" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \); else echo "$i"; fi
done | sort)
same=0; differ=0; events=0
for f in "${captures[@]}"; do
    # shellcheck disable=SC2086
    "$base_bin" replay --log-level critical ${REPLAY_OPTS:-} "$f" 2>/dev/null | grep -v '"dataset":"spanwatch.stats"' > "$work/base" || true
    # shellcheck disable=SC2086
    "$bin" replay --log-level critical ${REPLAY_OPTS:-} "$f" 2>/dev/null | grep -v '"dataset":"spanwatch.stats"' > "$work/new" || true
    n=$(wc -l < "$work/new")
    events=$((events + n))
    if cmp -s "$work/base" "$work/new"; then
        same=$((same + 1))
    else
        differ=$((differ + 1))
        echo "DIFFERS: $f ($(wc -l < "$work/base") → $n events)"
        diff "$work/base" "$work/new" | head -6 | cut -c1-400 || true
    fi
done
echo "replay-identical: ${#captures[@]} captures, $events events: $same identical, $differ differ"
[ "$differ" -eq 0 ]
