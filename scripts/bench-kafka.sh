#!/usr/bin/env bash
# Events/s sustained into Kafka: one replay with flows on, into librdkafka's mock cluster on loopback.
# Usage: scripts/bench-kafka.sh CAPTURE [SCRATCH]   (SCRATCH: release build folder, default .build-release)
# Prints the replay's wall time, the events delivered (from the sensor's end-of-run delivery summary)
# and events/s, next to the same replay into /dev/null for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
capture=${1:?capture file}
scratch=${2:-.build-release}
swift build -c release --scratch-path "$scratch" --product sensor >/dev/null
swift build -c release --scratch-path "$scratch" --product kafka-mock-broker >/dev/null
bin="$scratch/release"
work=$(mktemp -d)
trap 'exec 3>&-; kill "$broker_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/cmd"
"$bin/kafka-mock-broker" --topic bench:6 <"$work/cmd" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
exec 3>"$work/cmd"
for _ in $(seq 50); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
boot=$(head -1 "$work/broker.out")
echo "mock cluster at $boot"

t0=$(date +%s.%N)
"$bin/sensor" replay --output stdout "$capture" >/dev/null 2>"$work/stdout.log"
t1=$(date +%s.%N)
events=$(grep -o 'events=[0-9]*' "$work/stdout.log" | head -1 | cut -d= -f2)
awk -v n="$events" -v a="$t0" -v b="$t1" 'BEGIN { printf "stdout (/dev/null): %d events in %.2f s = %.0f events/s\n", n, b - a, n / (b - a) }'

t0=$(date +%s.%N)
"$bin/sensor" replay --output "kafka://$boot/bench?spool=$work/spool&flush_timeout=300s" "$capture" >/dev/null 2>"$work/kafka.log"
t1=$(date +%s.%N)
grep 'output delivery' "$work/kafka.log"
delivered=$(grep 'output delivery' "$work/kafka.log" | grep -o 'delivered=[0-9]*' | cut -d= -f2)
awk -v n="$delivered" -v a="$t0" -v b="$t1" 'BEGIN { printf "kafka: %d events delivered in %.2f s = %.0f events/s\n", n, b - a, n / (b - a) }'
