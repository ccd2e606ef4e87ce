#!/usr/bin/env bash
# Checks Deploy/sensor.service with systemd's own tools, offline (no systemd needs to be running):
#   systemd-analyze verify    the unit parses and every directive is known
#   systemd-analyze security  the exposure score stays at or below MAX (default 2.5 of 10)
# Usage: Deploy/check-unit.sh [SENSOR_BINARY] [MAX]
# ExecStart must name an existing executable for `verify`, so the unit is checked with the path
# replaced by SENSOR_BINARY (default: the debug build). The man pages its Documentation= names come with
# the package (scripts/package-deb.sh; PackageTests verifies the installed unit with them), so they are
# not looked up here.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-$PWD/.build/debug/sensor}
max=${2:-2.5}
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 2; }
[ -x "$bin" ] || { echo "$bin: not an executable (build first)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/bin/sensor#$bin#g" Deploy/sensor.service > "$tmp/sensor.service"
systemd-analyze verify --man=no "$tmp/sensor.service"
threshold=$(awk -v m="$max" 'BEGIN { printf "%d", m * 10 }')
out=$(systemd-analyze security --offline=true --threshold="$threshold" "$tmp/sensor.service" 2>&1) || {
  echo "$out" >&2
  echo "exposure above $max" >&2
  exit 1
}
echo "$out" | grep "Overall exposure level"
