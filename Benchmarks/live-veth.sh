#!/usr/bin/env bash
# Live capture benchmark on a veth pair inside a private network namespace (nothing leaves it).
#
# For 1 and 2 workers: replays a capture at top speed and at a ladder of --pps rates with tcpreplay,
# and reads the kernel's counters from the sensor's final spanwatch.stats events (pcap_stats per worker):
# received, kernel drops, drop fraction. Then bisects for the highest rate with zero kernel drops.
#
# Usage: Benchmarks/live-veth.sh [PCAP] [PACKETS]
#   PCAP     default /tmp/bench/bench.pcap
#   PACKETS  replay only the first N packets (editcap slice; default 0 = whole file). Keep it well above
#            what the rings hold (workers x BUFFER_MB), or the rings absorb the burst and nothing is measured.
# Environment: SENSOR (binary; default .build/release/sensor), WORKERS ("1 2"), RATES (pps ladder),
#   BUFFER_MB (ring per worker, default 64), BISECT (steps, default 4).
# Needs root, iproute2, tcpreplay, editcap (wireshark-common). Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
pcap=${1:-/tmp/bench/bench.pcap}
packets=${2:-0}
sensor=${SENSOR:-$PWD/.build/release/sensor}
workers_list=${WORKERS:-"1 2"}
rates=${RATES:-"25000 50000 100000 150000 200000 300000 400000"}
buffer=${BUFFER_MB:-64}
bisect_steps=${BISECT:-4}
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespace)" >&2; exit 2; }
[ -x "$sensor" ] || { echo "$sensor: build it first (swift build -c release --product sensor)" >&2; exit 2; }

ns=sensor-bench-$$
tmp=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" sh -ec '
  ip link set lo up
  ip link add vrep type veth peer name vcap
  ip link set vrep mtu 65535; ip link set vcap mtu 65535
  sysctl -qw net.ipv6.conf.all.disable_ipv6=1; sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  ip link set vrep up; ip link set vcap up'

input=$pcap
if [ "$packets" != 0 ]; then
  input=$tmp/slice.pcap
  editcap -r "$pcap" "$input" "1-$packets" >/dev/null
fi
total=$(capinfos -c -M "$input" | awk -F: '/Number of packets/ { gsub(/ /, "", $2); print $2 }')
echo "input: $input ($total packets), sensor: $sensor, ring ${buffer} MiB/worker, $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"

# run WORKERS RATE -> prints "sent_pps received dropped"
run() {
  local w=$1 rate=$2 out=$tmp/events-$w-$rate.ndjson err=$tmp/err-$w-$rate.txt
  # -K: preload the file so tcpreplay, not the disk, sets the pace.
  local rateargs=(-K --topspeed)
  [ "$rate" != top ] && rateargs=(-K --pps "$rate")
  ip netns exec "$ns" "$sensor" run --interface vcap --workers "$w" --allow-root --metrics off \
      --buffer-mb "$buffer" --stats-interval 3600 --output "file:$out" 2>"$err" &
  local pid=$!
  for _ in $(seq 100); do grep -q "capture started" "$err" 2>/dev/null && break; sleep 0.1; done
  sleep 0.3
  local rep
  rep=$(ip netns exec "$ns" tcpreplay -i vrep "${rateargs[@]}" "$input" 2>&1)
  sleep 1
  kill -TERM "$pid"; wait "$pid" || true
  local pps
  pps=$(echo "$rep" | awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /pps/) { print int($(i-1)); exit } }')
  grep '"spanwatch.stats"' "$out" | python3 -c '
import json, sys
last = {}
for line in sys.stdin:
    s = json.loads(line)["spanwatch"]["stats"]
    last[s.get("worker", 0)] = s["capture"]
r = sum(c["received"] for c in last.values()); d = sum(c["kernel_dropped"] for c in last.values())
print(r, d)' | { read -r r d; echo "${pps:-0} $r $d"; }
  rm -f "$out"
}

printf '%-8s %-10s %-12s %-10s %-10s %-8s\n' workers rate sent_pps received dropped drop%
for w in $workers_list; do
  best=0 worst=0
  for rate in top $rates; do
    read -r pps r d < <(run "$w" "$rate")
    frac=$(awk -v d="$d" -v r="$r" 'BEGIN { printf "%.3f", (r > 0 ? 100 * d / r : 0) }')
    printf '%-8s %-10s %-12s %-10s %-10s %-8s\n' "$w" "$rate" "$pps" "$r" "$d" "$frac"
    if [ "$rate" != top ]; then
      if [ "$d" -eq 0 ]; then best=$rate; elif [ "$worst" -eq 0 ]; then worst=$rate; fi
    fi
  done
  # Bisect between the highest clean rate and the lowest lossy one.
  if [ "$worst" -gt 0 ]; then
    lo=$best hi=$worst
    for _ in $(seq "$bisect_steps"); do
      mid=$(( (lo + hi) / 2 ))
      read -r pps r d < <(run "$w" "$mid")
      frac=$(awk -v d="$d" -v r="$r" 'BEGIN { printf "%.3f", (r > 0 ? 100 * d / r : 0) }')
      printf '%-8s %-10s %-12s %-10s %-10s %-8s\n' "$w" "$mid" "$pps" "$r" "$d" "$frac"
      if [ "$d" -eq 0 ]; then lo=$mid; else hi=$mid; fi
    done
    best=$lo
  fi
  if [ "$worst" -gt 0 ]; then
    echo "workers=$w: highest requested rate with 0 kernel drops: ${best} pps (lossy from ${worst} pps)"
  else
    echo "workers=$w: no kernel drop at any rate tried, top speed included (tcpreplay is the limit here)"
  fi
done
